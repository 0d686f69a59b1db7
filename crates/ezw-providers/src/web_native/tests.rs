//! The web session provider without WhatsApp's servers: the mapping of client events, receipts
//! and messages, JIDs, configuration, error classification, media handles and fetching, and the
//! provider's session calls that need no connection (no credentials, logout, pairing reset).

use std::sync::Arc;
use std::time::Duration;

use ezw_core::crypto::{derive_key, SecretCipher};
use ezw_core::ids::{LineId, OrganizationId};
use ezw_core::model::{LifecycleState, MediaKind, MessageKind, MessageStatus, Pacing, ProviderKind};
use ezw_core::ports::{EventSink, LineProvider, ProviderErrorKind, SessionSignal};
use ezw_core::{ManualClock, PhoneNumber, Timestamp};
use whatsapp_rust::chrono::{TimeZone, Utc};
use whatsapp_rust::prelude::{wa, Event, MessageField, SendError};
use whatsapp_rust::types::events::{
    ConnectFailure, ConnectFailureReason, Connected, Disconnected, LoggedOut, PairingCode, PairingQrCode,
    PairingQrCodesExhausted, Receipt, StreamError, TempBanReason, TemporaryBan,
};
use whatsapp_rust::types::message::{MessageInfo, MessageSource};
use whatsapp_rust::types::presence::ReceiptType;
use whatsapp_rust::wacore::net::DisconnectReason;
use whatsapp_rust::{ClientError, Jid};

use super::events::{inbound_message, receipt_statuses};
use super::media::{fetch_url, MediaHandle};
use super::provider::send_error;
use super::*;

fn cipher() -> SecretCipher {
    SecretCipher::new(&derive_key(b"master key", "ezw credentials v1"))
}

fn jid(s: &str) -> Jid {
    s.parse().expect("jid")
}

fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).expect("phone")
}

#[test]
fn phone_numbers_and_jids_map_both_ways() {
    assert_eq!(phone_to_jid(&phone("+15550100001")).to_string(), "15550100001@s.whatsapp.net");
    assert_eq!(jid_to_phone(&jid("15550100001@s.whatsapp.net")), Some(phone("+15550100001")));
    assert_eq!(jid_to_phone(&jid("15550100001:7@s.whatsapp.net")), Some(phone("+15550100001")), "device dropped");
    assert_eq!(jid_to_phone(&jid("100000012345678@lid")), None, "a LID is not a phone number");
    assert_eq!(jid_to_phone(&jid("120363000000000001@g.us")), None, "nor is a group");
    assert_eq!(account_of(&jid("972501234567:12@s.whatsapp.net")).as_deref(), Some("972501234567"));
}

#[test]
fn client_events_map_to_session_signals() {
    let qr = Event::PairingQrCode(
        PairingQrCode::builder().code("2@ref,noise,id,adv".into()).timeout(Duration::from_secs(60)).build(),
    );
    assert_eq!(
        session_signal(&qr, None),
        Some(SessionSignal::Qr { code: "2@ref,noise,id,adv".into(), ttl: Duration::from_secs(60) })
    );
    let code =
        Event::PairingCode(PairingCode::builder().code("ABCD-EFGH".into()).timeout(Duration::from_secs(180)).build());
    assert_eq!(
        session_signal(&code, None),
        Some(SessionSignal::PhoneCode { code: "ABCD-EFGH".into(), ttl: Duration::from_secs(180) })
    );
    let exhausted = Event::PairingQrCodesExhausted(PairingQrCodesExhausted::builder().disconnected(true).build());
    assert_eq!(session_signal(&exhausted, None), Some(SessionSignal::QrExhausted));
    let connected = Event::Connected(Connected::builder().build());
    assert_eq!(
        session_signal(&connected, Some("15550100001")),
        Some(SessionSignal::Connected { account: Some("15550100001".into()) })
    );
    let dropped = Event::Disconnected(Disconnected::builder().reason(DisconnectReason::StreamEnded).build());
    assert!(matches!(session_signal(&dropped, None), Some(SessionSignal::Disconnected { .. })));

    let unlinked =
        Event::LoggedOut(LoggedOut::builder().on_connect(true).reason(ConnectFailureReason::LoggedOut).build());
    assert!(matches!(session_signal(&unlinked, None), Some(SessionSignal::LoggedOut { .. })));
    let locked =
        Event::LoggedOut(LoggedOut::builder().on_connect(true).reason(ConnectFailureReason::AccountLocked).build());
    assert!(matches!(session_signal(&locked, None), Some(SessionSignal::Banned { .. })), "a locked account is banned");

    let ban = Event::TemporaryBan(
        TemporaryBan::builder()
            .code(TempBanReason::SentToTooManyPeople)
            .expire(whatsapp_rust::chrono::TimeDelta::seconds(3600))
            .build(),
    );
    match session_signal(&ban, None) {
        Some(SessionSignal::Restricted { reason }) => {
            assert!(reason.starts_with("temporary_ban") && reason.contains("3600s"), "{reason}");
        }
        other => panic!("a temporary ban restricts the line, got {other:?}"),
    }
    let slow_down = Event::StreamError(StreamError::builder().code("429".into()).build());
    assert!(matches!(session_signal(&slow_down, None), Some(SessionSignal::RateLimited { retry_after: None, .. })));
    let busy =
        Event::ConnectFailure(ConnectFailure::builder().reason(ConnectFailureReason::ServiceUnavailable).build());
    assert_eq!(session_signal(&busy, None), None, "a server hiccup is retried by the client itself");
    let refused = Event::ConnectFailure(
        ConnectFailure::builder().reason(ConnectFailureReason::TempBanned).message("too many messages".into()).build(),
    );
    assert!(
        matches!(session_signal(&refused, None), Some(SessionSignal::Restricted { reason }) if reason.contains("too many"))
    );
    let other = Event::StreamError(StreamError::builder().code("503".into()).build());
    assert_eq!(session_signal(&other, None), None);
}

fn source(chat: &str, sender: &str, from_me: bool) -> MessageSource {
    MessageSource { chat: jid(chat), sender: jid(sender), is_from_me: from_me, ..MessageSource::default() }
}

#[test]
fn receipts_map_to_statuses_of_our_messages() {
    let line = LineId::generate(1);
    let at = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
    let receipt = |kind: ReceiptType, from_me: bool| {
        Receipt::builder()
            .source(source("15550000001@s.whatsapp.net", "15550000001@s.whatsapp.net", from_me))
            .message_ids(vec!["3EB0A".into(), "3EB0B".into()])
            .timestamp(at)
            .r#type(kind)
            .offline(false)
            .build()
    };
    let delivered = receipt_statuses(&line, &receipt(ReceiptType::Delivered, false));
    assert_eq!(delivered.len(), 2);
    assert_eq!(
        (delivered[0].provider_message_id.as_str(), delivered[0].status, delivered[0].at),
        ("3EB0A", MessageStatus::Delivered, Timestamp::from_unix_ms(1_700_000_000_000))
    );
    assert_eq!(receipt_statuses(&line, &receipt(ReceiptType::Read, false))[1].status, MessageStatus::Read);
    assert_eq!(receipt_statuses(&line, &receipt(ReceiptType::Played, false))[0].status, MessageStatus::Read);
    assert!(receipt_statuses(&line, &receipt(ReceiptType::Read, true)).is_empty(), "our own devices' receipts");
    assert!(receipt_statuses(&line, &receipt(ReceiptType::Retry, false)).is_empty(), "retries are not statuses");
    assert_eq!(receipt_status(&ReceiptType::ReadSelf), None);
}

fn info(sender: &str, from_me: bool) -> MessageInfo {
    MessageInfo {
        source: source(sender, sender, from_me),
        id: "3EB0C0FFEE".into(),
        push_name: "Dana".into(),
        timestamp: Utc.timestamp_opt(1_700_000_100, 0).unwrap(),
        ..MessageInfo::default()
    }
}

#[test]
fn inbound_messages_map_to_new_inbound() {
    let (org, line, c) = (OrganizationId::generate(1), LineId::generate(1), cipher());
    let text = wa::Message { conversation: Some("hello".into()), ..Default::default() };
    let got = inbound_message(&org, &line, &text, &info("15550000001@s.whatsapp.net", false), &c).expect("inbound");
    assert_eq!(got.from, phone("+15550000001"));
    assert_eq!((got.kind, got.content.body.as_deref()), (MessageKind::Text, Some("hello")));
    assert_eq!((got.provider_message_id.as_str(), got.profile_name.as_deref()), ("3EB0C0FFEE", Some("Dana")));
    assert_eq!(got.received_at, Timestamp::from_unix_ms(1_700_000_100_000));

    // A reply, from a LID-addressed chat whose phone number is the alternate address.
    let reply = wa::Message {
        extended_text_message: MessageField::some(wa::message::ExtendedTextMessage {
            text: Some("yes".into()),
            context_info: MessageField::some(wa::ContextInfo {
                stanza_id: Some("3EB0QUOTED".into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut lid = info("100000012345678@lid", false);
    lid.source.sender_alt = Some(jid("15550000002@s.whatsapp.net"));
    let got = inbound_message(&org, &line, &reply, &lid, &c).expect("inbound");
    assert_eq!((got.from, got.content.reply_to.as_deref()), (phone("+15550000002"), Some("3EB0QUOTED")));
    assert!(
        inbound_message(&org, &line, &reply, &info("100000012345678@lid", false), &c).is_none(),
        "no phone: skipped"
    );

    // Media is named by a sealed handle that opens to what the download needs.
    let image = wa::Message {
        image_message: MessageField::some(wa::message::ImageMessage {
            direct_path: Some("/v/t62.7118-24/abc".into()),
            media_key: Some(vec![7; 32]),
            file_sha256: Some(vec![1; 32]),
            file_enc_sha256: Some(vec![2; 32]),
            file_length: Some(1234),
            mimetype: Some("image/jpeg".into()),
            caption: Some("receipt".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = inbound_message(&org, &line, &image, &info("15550000001@s.whatsapp.net", false), &c).expect("inbound");
    assert_eq!(got.kind, MessageKind::Image);
    let media = got.content.media.expect("media");
    assert_eq!(
        (media.kind, media.caption.as_deref(), media.mime_type.as_deref()),
        (MediaKind::Image, Some("receipt"), Some("image/jpeg"))
    );
    let sealed = media.provider_media_id.expect("handle");
    assert!(!sealed.contains("abc"), "the handle (with its media key) is sealed");
    let handle = MediaHandle::open(&sealed, &c).expect("opens");
    let params = handle.params();
    assert_eq!(
        (params.direct_path.as_str(), params.media_key.as_deref(), params.file_length),
        ("/v/t62.7118-24/abc", Some(&[7u8; 32][..]), 1234)
    );
    let other = SecretCipher::new(&derive_key(b"another key", "ezw credentials v1"));
    assert!(MediaHandle::open(&sealed, &other).is_none(), "another server key cannot open it");

    // Our own messages, groups and kinds EZW does not store are skipped.
    assert!(inbound_message(&org, &line, &text, &info("15550000001@s.whatsapp.net", true), &c).is_none());
    let mut group = info("120363000000000001@g.us", false);
    group.source.is_group = true;
    assert!(inbound_message(&org, &line, &text, &group, &c).is_none());
    let empty = wa::Message::default();
    assert!(inbound_message(&org, &line, &empty, &info("15550000001@s.whatsapp.net", false), &c).is_none());
}

#[test]
fn send_errors_are_classified() {
    assert_eq!(send_error(&SendError::NotLoggedIn).kind, ProviderErrorKind::LineUnavailable);
    assert_eq!(send_error(&SendError::Client(ClientError::NotConnected)).kind, ProviderErrorKind::LineUnavailable);
    assert_eq!(send_error(&SendError::InvalidRequest("bad jid".into())).kind, ProviderErrorKind::Permanent);
    let unknown = send_error(&SendError::Internal(whatsapp_rust::anyhow::anyhow!("socket closed mid-write")));
    assert_eq!(unknown.kind, ProviderErrorKind::Ambiguous, "it may have been written");
}

#[test]
fn config_is_validated() {
    assert_eq!(WebSessionConfig::from_json(&serde_json::json!(null)).unwrap().device_name(), DEFAULT_DEVICE_NAME);
    let named = WebSessionConfig::from_json(&serde_json::json!({ "deviceName": "Billing desk" })).unwrap();
    assert_eq!(named.device_name(), "Billing desk");
    assert_eq!(named.to_json(), serde_json::json!({ "deviceName": "Billing desk" }));
    for bad in [
        serde_json::json!({ "devicename": "x" }),
        serde_json::json!({ "deviceName": "" }),
        serde_json::json!({ "deviceName": "x".repeat(41) }),
        serde_json::json!({ "deviceName": 3 }),
    ] {
        let e = WebSessionConfig::from_json(&bad).unwrap_err();
        assert_eq!(e.code(), "invalid_provider_config", "{bad}");
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<dyn ezw_core::ports::Store>,
    provider: WebSessionProvider,
    line: ezw_core::model::Line,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ezw_core::ports::Store> =
        Arc::new(ezw_storage::sqlite::SqliteStore::open(dir.path().join("ezw.db")).expect("sqlite"));
    let (org, line_id) = super::store::tests::tenant(&*store, "+15550100001").await;
    let line = store.get_line(&org, &line_id).await.expect("get_line").expect("line");
    let (sink, _rx) = EventSink::channel();
    let provider = WebSessionProvider::new(WebSessionOptions {
        store: store.clone(),
        cipher: cipher(),
        clock: Arc::new(ManualClock::new(Timestamp::from_unix_ms(1_700_000_000_000))),
        sink,
        allow_private_media: false,
    });
    Setup { _dir: dir, store, provider, line }
}

#[tokio::test]
async fn provider_declares_a_paced_qr_provider() {
    let s = setup().await;
    let p = &s.provider;
    assert_eq!(p.kind(), ProviderKind::WebSession);
    let caps = p.capabilities();
    assert!(caps.qr_pairing && caps.phone_code_pairing && caps.text && caps.media_url && caps.status_events);
    assert!(!caps.deduplicates_sends && !caps.templates);
    assert!(p.runs_session(&s.line));
    assert_eq!(p.initial_state(&serde_json::json!({})), LifecycleState::Created);
    let pacing = p.default_pacing();
    pacing.validate().expect("the default pacing is valid");
    assert_eq!(pacing, Pacing { per_second: 0.2, media_per_second: Some(0.1), max_in_flight: 1, jitter_ms: 4000 });
    assert_eq!(p.validate_config(&serde_json::json!({})).unwrap(), serde_json::json!({}));
    assert!(p.validate_config(&serde_json::json!({ "token": "x" })).is_err());
}

#[tokio::test]
async fn a_line_without_credentials_needs_a_new_pairing() {
    let s = setup().await;
    s.provider.open_session(&s.line).await.expect("open_session");
    let e = s.provider.reconnect(&s.line).await.expect_err("nothing to reconnect with");
    assert_eq!(
        (e.kind, e.code.as_str(), e.line_state),
        (ProviderErrorKind::LineUnavailable, "no_credentials", Some(LifecycleState::QrRequired))
    );

    // A device that never paired (no phone number) is no credentials either.
    let backend = s.provider.backend(&s.line);
    whatsapp_rust::wacore::store::traits::DeviceStore::create(&*backend).await.expect("create");
    let e = s.provider.reconnect(&s.line).await.expect_err("unpaired device");
    assert_eq!(e.line_state, Some(LifecycleState::QrRequired));

    // No client runs, so nothing can be sent or downloaded; the line is unavailable, not failed.
    let e = s
        .provider
        .fetch_media(
            &s.line,
            &ezw_core::model::MediaRef {
                kind: MediaKind::Image,
                url: None,
                attachment_id: None,
                provider_media_id: Some("not a handle".into()),
                sha256: None,
                caption: None,
                filename: None,
                mime_type: None,
            },
        )
        .await
        .expect_err("unknown handle");
    assert_eq!(e.code, "media_not_found");
    s.provider.close_session(&s.line).await;
}

#[tokio::test]
async fn logout_deletes_the_stored_session() {
    let s = setup().await;
    let backend = s.provider.backend(&s.line);
    whatsapp_rust::wacore::store::traits::DeviceStore::create(&*backend).await.expect("create");
    whatsapp_rust::wacore::store::traits::SignalStore::put_session(&*backend, "peer.0:1", b"s").await.expect("put");
    s.provider.logout(&s.line).await.expect("logout");
    let left = ezw_core::ports::SessionStore::get_session_state(
        &*s.store,
        &s.line.organization_id,
        &s.line.id,
        ezw_core::ports::StateSelector { kind: kind::DEVICE, scope: None, keys: None },
    )
    .await
    .expect("get");
    assert!(left.is_empty(), "the device is gone");
    assert!(!whatsapp_rust::wacore::store::traits::SignalStore::has_session(&*backend, "peer.0:1").await.unwrap());
}

#[tokio::test]
async fn media_urls_on_internal_addresses_are_refused() {
    for url in ["http://127.0.0.1:9/a.jpg", "http://10.0.0.1/a.jpg", "http://[::1]/a.jpg", "file:///etc/passwd", "nope"]
    {
        let e = fetch_url(url, false).await.expect_err(url);
        assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "media_url_refused"), "{url}");
    }
}

#[tokio::test]
async fn media_urls_are_fetched_with_a_size_cap() {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/a.png", get(|| async { ([("content-type", "image/png; charset=binary")], vec![1u8, 2, 3]) }))
        .route("/big", get(|| async { vec![0u8; super::media::MAX_MEDIA_BYTES + 1] }))
        .route("/gone", get(|| async { (axum::http::StatusCode::NOT_FOUND, "no") }))
        .route("/down", get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "later") }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (bytes, content_type) = fetch_url(&format!("http://{addr}/a.png"), true).await.expect("fetched");
    assert_eq!((bytes, content_type.as_deref()), (vec![1, 2, 3], Some("image/png")));
    let e = fetch_url(&format!("http://{addr}/big"), true).await.expect_err("too big");
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "media_too_large"));
    let e = fetch_url(&format!("http://{addr}/gone"), true).await.expect_err("404");
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "media_fetch_failed"));
    let e = fetch_url(&format!("http://{addr}/down"), true).await.expect_err("503");
    assert_eq!(e.kind, ProviderErrorKind::Retryable);
}

#[tokio::test]
async fn pairing_starts_a_client_on_a_fresh_device_in_ezw_storage() {
    use whatsapp_rust::wacore::store::traits::{DeviceStore, SignalStore};
    let s = setup().await;
    let backend = s.provider.backend(&s.line);
    backend.put_session("peer.0:1", b"old").await.expect("put");
    s.provider.open_session(&s.line).await.expect("open_session");

    // The client is built on `EzwBackend`: the crate creates its device in EZW's storage. It
    // cannot reach WhatsApp here, so no code arrives; stopping the pairing stops it.
    s.provider.start_pairing(&s.line, &ezw_core::model::PairingMethod::Qr).await.expect("start_pairing");
    assert!(!backend.has_session("peer.0:1").await.unwrap(), "a new pairing starts from a clean state");
    let device = backend.load().await.unwrap().expect("the client created its device");
    assert!(device.pn.is_none(), "not paired");
    let e = s.provider.send(&s.line, &outbound()).await.expect_err("not connected");
    assert_eq!(e.kind, ProviderErrorKind::LineUnavailable);
    s.provider.stop_pairing(&s.line).await;
    s.provider.close_session(&s.line).await;
    assert!(backend.exists().await.unwrap(), "closing keeps the state for the next holder");
}

fn outbound() -> ezw_core::ports::OutboundMessage {
    let at = Timestamp::from_unix_ms(1_700_000_000_000);
    let org = OrganizationId::generate(1);
    ezw_core::ports::OutboundMessage {
        message: ezw_core::model::Message {
            id: ezw_core::ids::MessageId::generate(1),
            organization_id: org,
            line_id: LineId::generate(1),
            conversation_id: ezw_core::ids::ConversationId::generate(1),
            direction: ezw_core::model::Direction::Outbound,
            kind: MessageKind::Text,
            content: ezw_core::model::MessageContent { body: Some("hi".into()), ..Default::default() },
            status: MessageStatus::Queued,
            status_timestamps: ezw_core::model::StatusTimestamps::default(),
            provider_message_id: None,
            error: None,
            attempts: 0,
            sent_by_user_id: None,
            idempotency_key: None,
            created_at: at,
        },
        to: phone("+15550000001"),
        attempt: 1,
    }
}
