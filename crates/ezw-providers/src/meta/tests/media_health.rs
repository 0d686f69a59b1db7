//! Media download and health against the local mock.

use ezw_core::model::{LifecycleState, MediaKind, MediaRef};
use ezw_core::ports::{LineProvider, ProviderErrorKind};
use serde_json::json;

use super::{line, provider, PNID, TOKEN};
use crate::mock::{MockServer, Reply};

fn inbound_media(id: Option<&str>) -> MediaRef {
    MediaRef {
        kind: MediaKind::Image,
        url: None,
        attachment_id: None,
        provider_media_id: id.map(str::to_owned),
        sha256: None,
        caption: None,
        filename: None,
        mime_type: Some("image/jpeg".into()),
    }
}

#[tokio::test]
async fn media_is_fetched_in_two_steps_with_the_bearer_token() {
    let mock = MockServer::start().await;
    mock.reply(Reply::json(
        200,
        json!({
            "url": format!("{}/whatsapp_business/attachments/?mid=1003383421387256&ext=1&hash=abc", mock.url()),
            "mime_type": "image/jpeg",
            "sha256": "SfInY0gGKTsJlUWbwxC1k+FAD0FZHvzwfpvO0zX0GUI=",
            "file_size": "5",
            "id": "1003383421387256",
            "messaging_product": "whatsapp",
        }),
    ));
    mock.reply(Reply::bytes(200, "application/octet-stream", b"\xff\xd8abc"));
    let fetched = provider().fetch_media(&line(&mock.url()), &inbound_media(Some("1003383421387256"))).await.unwrap();
    assert_eq!(fetched.bytes, b"\xff\xd8abc");
    assert_eq!(fetched.content_type, "image/jpeg");
    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!((requests[0].method.as_str(), requests[0].path.as_str()), ("GET", "/v23.0/1003383421387256"));
    assert_eq!(requests[0].header("authorization"), Some(bearer.as_str()));
    assert_eq!((requests[1].method.as_str(), requests[1].path.as_str()), ("GET", "/whatsapp_business/attachments/"));
    assert_eq!(requests[1].query.as_deref(), Some("mid=1003383421387256&ext=1&hash=abc"));
    assert_eq!(requests[1].header("authorization"), Some(bearer.as_str()));
}

#[tokio::test]
async fn media_content_type_falls_back_to_the_download_header() {
    let mock = MockServer::start().await;
    mock.reply(Reply::json(200, json!({"url": format!("{}/dl", mock.url()), "id": "42"})));
    mock.reply(Reply::bytes(200, "audio/ogg", b"OggS"));
    let fetched = provider().fetch_media(&line(&mock.url()), &inbound_media(Some("42"))).await.unwrap();
    assert_eq!((fetched.bytes.as_slice(), fetched.content_type.as_str()), (b"OggS".as_slice(), "audio/ogg"));
}

#[tokio::test]
async fn oversized_missing_or_bad_media_is_refused() {
    let mock = MockServer::start().await;
    let l = line(&mock.url());
    mock.reply(Reply::json(200, json!({"url": format!("{}/dl", mock.url()), "file_size": 104_857_601, "id": "42"})));
    let e = provider().fetch_media(&l, &inbound_media(Some("42"))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "media_too_large"));
    assert_eq!(mock.requests().len(), 1, "the download itself is never started");
    let e = provider().fetch_media(&l, &inbound_media(None)).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "missing_media_id"));
    let e = provider().fetch_media(&l, &inbound_media(Some("../../me"))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "invalid_media_id"));
    mock.reply(Reply::json(404, json!({"error": {"message": "Unsupported get request.", "type": "GraphMethodException", "code": 100, "error_subcode": 33}})));
    let e = provider().fetch_media(&l, &inbound_media(Some("43"))).await.unwrap_err();
    assert_eq!((e.kind, e.code.as_str()), (ProviderErrorKind::Permanent, "100"));
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn health_with_wakeup_asks_meta() {
    let mock = MockServer::start().await;
    let l = line(&mock.url());
    mock.reply(Reply::json(
        200,
        json!({"status": "CONNECTED", "quality_rating": "GREEN", "name_status": "APPROVED", "id": PNID}),
    ));
    let h = provider().health(&l, true).await.unwrap();
    assert_eq!((h.lifecycle_state, h.reason), (LifecycleState::Connected, None));
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", format!("/v23.0/{PNID}").as_str()));
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(r.query.as_deref().unwrap_or("").as_bytes()).into_owned().collect();
    assert_eq!(query, vec![("fields".to_owned(), "status,quality_rating,name_status".to_owned())]);
    assert_eq!(r.header("authorization"), Some(format!("Bearer {TOKEN}").as_str()));
    assert!(r.body.is_empty() && r.form().is_empty(), "a GET carries no body");

    for (status, state) in [
        ("FLAGGED", LifecycleState::Restricted),
        ("RESTRICTED", LifecycleState::Restricted),
        ("RATE_LIMITED", LifecycleState::Restricted),
        ("BANNED", LifecycleState::Blocked),
        ("DISCONNECTED", LifecycleState::Blocked),
        ("DELETED", LifecycleState::Blocked),
        ("MIGRATED", LifecycleState::Blocked),
    ] {
        mock.reply(Reply::json(200, json!({"status": status, "quality_rating": "RED", "id": PNID})));
        let h = provider().health(&l, true).await.unwrap();
        assert_eq!(h.lifecycle_state, state, "{status}");
        assert_eq!(h.reason.as_deref(), Some(format!("status {status}, quality_rating RED").as_str()));
    }

    mock.reply(Reply::json(
        401,
        json!({"error": {"message": "Error validating access token", "type": "OAuthException", "code": 190}}),
    ));
    let h = provider().health(&l, true).await.unwrap();
    assert_eq!(h.lifecycle_state, LifecycleState::AuthFailed);
    assert!(h.reason.unwrap().contains("access token"));

    mock.reply(Reply::bytes(502, "text/html", b"bad gateway"));
    let e = provider().health(&l, true).await.unwrap_err();
    assert_eq!(e.kind, ProviderErrorKind::Retryable);
}

#[tokio::test]
async fn health_without_wakeup_makes_no_request() {
    let mock = MockServer::start().await;
    let mut l = line(&mock.url());
    l.lifecycle_state = LifecycleState::Restricted;
    l.state_reason = Some("status FLAGGED".into());
    let h = provider().health(&l, false).await.unwrap();
    assert_eq!((h.lifecycle_state, h.reason.as_deref()), (LifecycleState::Restricted, Some("status FLAGGED")));
    assert!(mock.requests().is_empty());
}
