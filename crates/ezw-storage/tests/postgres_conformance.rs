//! The storage conformance suite against PostgreSQL (`EZW_TEST_POSTGRES_URL`, for example
//! `postgres://postgres@127.0.0.1:5432/test`). Every case gets its own schema, dropped when the
//! case ends. Without the variable the cases fail: CI must not pass by skipping them.

use ezw_storage::conformance::Harness;
use ezw_storage::postgres::{PgOptions, PgStore};

/// Drops the case's schema when the case ends.
struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Dropped inside the case's runtime: do the blocking work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            rt.block_on(async move {
                if let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
                }
            });
        })
        .join();
    }
}

async fn postgres() -> Harness {
    let url = std::env::var("EZW_TEST_POSTGRES_URL")
        .expect("EZW_TEST_POSTGRES_URL must point at a PostgreSQL database (see docs/operations.md)");
    let schema = format!("ezw_conf_{}_{}", std::process::id(), rand_suffix());
    let store = PgStore::connect(PgOptions::new(url.clone()).schema(schema.clone()).pool_size(4))
        .await
        .expect("connecting to PostgreSQL at EZW_TEST_POSTGRES_URL");
    Harness::new(store, DropSchema { url, schema })
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{}_{}", NEXT.fetch_add(1, Ordering::Relaxed), nanos)
}

ezw_storage::conformance_suite!(postgres);

/// A pairing request on one node wakes the session supervisors of every node on the database
/// (`Wake::Sessions` over `LISTEN/NOTIFY`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_requests_wake_the_other_nodes() {
    use ezw_core::ids::{LineId, OrganizationId, PairingId, UserId};
    use ezw_core::model::{
        BillingState, LifecycleState, Line, Organization, Pairing, PairingMethod, PairingStatus, ProviderKind, User,
    };
    use ezw_core::ports::{PairingRequestOutcome, Wake, WakeSource};
    use ezw_core::{PhoneNumber, Timestamp};

    let harness = postgres().await;
    let url = std::env::var("EZW_TEST_POSTGRES_URL").expect("EZW_TEST_POSTGRES_URL");
    let schema = {
        let guard = harness.guard.downcast_ref::<DropSchema>().expect("the harness guard is the schema");
        guard.schema.clone()
    };
    let other_node = PgStore::connect(PgOptions::new(url).schema(schema).pool_size(2)).await.expect("second node");
    let mut wakes = other_node.wake_source().subscribe();

    let at = Timestamp::from_unix_ms(1_767_225_600_000);
    let org_id = OrganizationId::generate(at.unix_ms());
    let org = Organization {
        name: "Wake Org".into(),
        slug: format!("wake-{}", org_id.as_str().to_ascii_lowercase()),
        billing_state: BillingState::Active,
        line_slots: 5,
        plan: ezw_core::model::DEFAULT_PLAN.into(),
        created_at: at,
        id: org_id.clone(),
    };
    let user_id = UserId::generate(at.unix_ms());
    let owner = User {
        email: format!("{}@wake.example", user_id.as_str().to_ascii_lowercase()),
        display_name: "Wake".into(),
        password_hash: None,
        created_at: at,
        id: user_id,
    };
    let store = &harness.store;
    store.create_organization(&org, &owner, true).await.expect("create_organization");
    let line = Line {
        id: LineId::generate(at.unix_ms()),
        organization_id: org_id.clone(),
        display_name: "QR".into(),
        phone_number: PhoneNumber::parse("+14155550901").expect("phone"),
        provider_kind: ProviderKind::Simulator,
        provider_config: serde_json::json!({ "pairing": "qr" }),
        lifecycle_state: LifecycleState::Created,
        state_reason: None,
        default_assignee_id: None,
        pacing: None,
        created_at: at,
        updated_at: at,
    };
    store.insert_line(&line).await.expect("insert_line");
    let pairing = Pairing {
        id: PairingId::generate(at.unix_ms()),
        organization_id: org_id,
        line_id: line.id.clone(),
        method: PairingMethod::Qr,
        status: PairingStatus::Requested,
        idempotency_key: None,
        qr_code: None,
        phone_code: None,
        rotation: 0,
        expires_at: None,
        reason: None,
        requested_by: None,
        requested_at: at,
        updated_at: at,
    };
    let outcome = store.request_pairing(&pairing, "fp").await.expect("request_pairing");
    assert!(matches!(outcome, PairingRequestOutcome::Created(_)));
    // Waits for the notification (other wake-ups may arrive first); fails after 20 s.
    let woken = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        loop {
            match wakes.recv().await {
                Ok(Wake::Sessions) => return true,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
            }
        }
    })
    .await;
    assert_eq!(woken, Ok(true), "the other node got Wake::Sessions");
    drop(other_node);
}
