//! Run with: `cargo run --example embedded_quickstart`
//!
//! EZW as a library, no HTTP: open the SQLite store, create an organization and a simulator
//! line, send a message idempotently, and print its status as it moves queued -> sent ->
//! delivered -> read.

use std::sync::Arc;
use std::time::Duration;

use ezw::model::{BillingState, MessageStatus, ProviderKind};
use ezw::providers::sim::SimProvider;
use ezw::service::{NewLine, NewOrganization, SendRequest, SendTargetInput};
use ezw::storage::sqlite::SqliteStore;
use ezw::{Ezw, Secret, SystemClock};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile_dir()?;
    let store = Arc::new(SqliteStore::open(dir.join("ezw.db"))?);

    // Wire the runtime: storage, the simulator provider, a signing key for ID tokens.
    let clock = Arc::new(SystemClock);
    let builder = Ezw::builder(store).clock(clock.clone());
    let sim = SimProvider::new(clock, builder.event_sink());
    let ezw = builder.provider(Arc::new(sim)).signing_key(&ezw::core::crypto::random_key()).build()?;
    let workers = ezw.start()?;

    let (org, owner) = ezw
        .orgs()
        .create_organization(NewOrganization {
            name: "Acme Support".into(),
            slug: None,
            owner_email: "owner@acme.example".into(),
            owner_name: "Ada Owner".into(),
            owner_password: Secret::new("correct horse battery"),
            billing_state: BillingState::Active,
            line_slots: 3,
        })
        .await?;
    let owner = ezw.auth().member_principal(&org.id, &owner.id).await?;

    let line = ezw
        .lines()
        .create_line(
            &owner,
            NewLine {
                display_name: "Support".into(),
                phone_number: "+15550100001".into(),
                provider_kind: ProviderKind::Simulator,
                provider_config: serde_json::json!({ "deliveredAfterMs": 400, "readAfterMs": 1200 }),
                pacing: None,
            },
        )
        .await?;
    println!("line {} ({}) is {:?}", line.id, line.phone_number, line.lifecycle_state);

    let mut hints = ezw.live().subscribe();
    let request = SendRequest {
        target: SendTargetInput { to: Some("+972501234567".into()), conversation_id: None },
        body: Some("Your order is ready".into()),
        idempotency_key: Some("order-123".into()),
        ..SendRequest::default()
    };
    let sent = ezw.messages().send(&owner, &line.id, request.clone()).await?;
    println!("{}: {:?}", sent.message.id, sent.message.status);

    // The same key and request again: the same message, not a second one.
    let again = ezw.messages().send(&owner, &line.id, request).await?;
    assert_eq!(again.message.id, sent.message.id);
    println!("retry with the same Idempotency-Key -> same message (replayed: {})", again.replayed);

    // Live hints say "something changed"; the store is the truth.
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_secs(5), hints.recv()).await {
        if event.hint.message_id.as_ref() != Some(&sent.message.id) {
            continue;
        }
        let m = ezw.messages().get(&owner, &sent.message.id).await?;
        println!("{}: {:?} (attempts {})", m.id, m.status, m.attempts);
        if m.status == MessageStatus::Read {
            break;
        }
    }
    workers.shutdown(Duration::from_secs(5)).await;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ezw-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
