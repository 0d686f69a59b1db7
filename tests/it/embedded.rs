//! The SDK without HTTP: store, runtime, simulator, services.

use std::sync::Arc;
use std::time::Duration;

use ezw::model::{BillingState, MessageStatus, ProviderKind};
use ezw::providers::sim::SimProvider;
use ezw::service::{NewLine, NewOrganization, SendRequest, SendTargetInput};
use ezw::storage::sqlite::SqliteStore;
use ezw::{Ezw, ManualClock, Secret, Timestamp};

#[tokio::test]
async fn embedded_send_progresses_on_the_manual_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_unix_ms(1_795_000_000_000));
    let store = Arc::new(SqliteStore::open(dir.path().join("ezw.db")).unwrap());
    let builder = Ezw::builder(store).clock(Arc::new(clock.clone()));
    let sim = SimProvider::new(Arc::new(clock.clone()), builder.event_sink());
    let ezw = builder.provider(Arc::new(sim.clone())).signing_key(&[9u8; 32]).build().unwrap();
    let workers = ezw.start().unwrap();

    let (org, owner) = ezw
        .orgs()
        .create_organization(NewOrganization {
            name: "Embedded".into(),
            slug: None,
            owner_email: "me@embedded.example".into(),
            owner_name: "Me".into(),
            owner_password: Secret::new("embedded-pass"),
            billing_state: BillingState::Active,
            line_slots: 1,
        })
        .await
        .unwrap();
    let principal = ezw.auth().member_principal(&org.id, &owner.id).await.unwrap();
    let line = ezw
        .lines()
        .create_line(
            &principal,
            NewLine {
                display_name: "Support".into(),
                phone_number: "+15550100001".into(),
                provider_kind: ProviderKind::Simulator,
                provider_config: serde_json::json!({"deliveredAfterMs": 2000, "readAfterMs": 5000}),
                pacing: None,
            },
        )
        .await
        .unwrap();
    // Line slots are enforced.
    let second = ezw
        .lines()
        .create_line(
            &principal,
            NewLine {
                display_name: "Two".into(),
                phone_number: "+15550100002".into(),
                provider_kind: ProviderKind::Simulator,
                provider_config: serde_json::json!({}),
                pacing: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(second.code(), "line_slots_exhausted");

    let sent = ezw
        .messages()
        .send(
            &principal,
            &line.id,
            SendRequest {
                target: SendTargetInput { to: Some("+972501234567".into()), conversation_id: None },
                body: Some("hello from the SDK".into()),
                ..SendRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(sent.message.status, MessageStatus::Queued);
    assert_eq!(sent.message.sent_by_user_id.as_ref(), Some(&owner.id));

    let status = |want: MessageStatus| {
        let (ezw, principal, id) = (ezw.clone(), principal.clone(), sent.message.id.clone());
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                let m = ezw.messages().get(&principal, &id).await.unwrap();
                if m.status == want {
                    return m;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            panic!("never reached {want:?}");
        }
    };
    let m = status(MessageStatus::Sent).await;
    assert_eq!(m.status_timestamps.delivered_at, None);
    // Nothing is delivered before the configured delay on the manual clock.
    while clock.pending_sleepers() < 2 {
        tokio::task::yield_now().await;
    }
    clock.advance(Duration::from_millis(1999));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(ezw.messages().get(&principal, &m.id).await.unwrap().status, MessageStatus::Sent);
    clock.advance(Duration::from_millis(1));
    let delivered = status(MessageStatus::Delivered).await;
    assert_eq!(
        delivered.status_timestamps.delivered_at.unwrap().since(delivered.status_timestamps.sent_at.unwrap()),
        Duration::from_millis(2000)
    );
    clock.advance(Duration::from_secs(3));
    let read = status(MessageStatus::Read).await;
    assert!(read.status_timestamps.read_at.is_some());
    assert!(workers.shutdown(Duration::from_secs(5)).await);
}
