//! `GET /api/live/stream`: hints filtered to the caller's organization and lines, heartbeats
//! on the runtime clock, and `Last-Event-ID` resume within the replay window.

use std::time::Duration;

use ezw::core::ports::LiveHint;
use ezw::core::OrganizationId;
use serde_json::{json, Value};

use crate::support::TestServer;

/// One SSE frame.
#[derive(Debug, Default)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: String,
    comment: Option<String>,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// A minimal SSE reader over a streaming response.
struct Sse {
    res: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(t: &TestServer, token: &str, last_event_id: Option<&str>) -> Self {
        let mut req = t.http.get(t.url("/api/live/stream")).bearer_auth(token);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut sse = Self { res, buf: String::new() };
        let ready = sse.next().await.expect("a ready event");
        assert_eq!(ready.event.as_deref(), Some("ready"), "{ready:?}");
        sse
    }

    /// The next frame, or `None` when the server ended the stream. Gives up after 30 s.
    async fn next(&mut self) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let mut frame = Frame::default();
                for line in raw.lines() {
                    if let Some(c) = line.strip_prefix(':') {
                        frame.comment = Some(c.trim().to_owned());
                    } else if let Some((field, value)) = line.split_once(':') {
                        let value = value.strip_prefix(' ').unwrap_or(value);
                        match field {
                            "id" => frame.id = Some(value.to_owned()),
                            "event" => frame.event = Some(value.to_owned()),
                            "data" => frame.data.push_str(value),
                            _ => {}
                        }
                    }
                }
                return Some(frame);
            }
            let chunk = tokio::time::timeout_at(deadline, self.res.chunk()).await.expect("an SSE frame within 30 s");
            match chunk.unwrap() {
                Some(bytes) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// The next frame that is an event (not a heartbeat comment).
    async fn next_event(&mut self) -> Frame {
        loop {
            let frame = self.next().await.expect("the stream is open");
            if frame.comment.is_none() {
                return frame;
            }
        }
    }
}

fn hint(kind: &'static str, org: &str, version: i64) -> LiveHint {
    LiveHint { version: Some(version), ..LiveHint::new(kind, OrganizationId::from_raw(org)) }
}

#[tokio::test]
async fn a_send_shows_up_as_a_hint_with_a_resumable_id() {
    let t = TestServer::start().await;
    let token = t.login().await;
    let mut sse = Sse::open(&t, &token, None).await;
    let (status, sent) =
        t.send_text(&t.demo.line_token, Some("live-1"), json!({ "to": "+972501234567", "body": "hello" })).await;
    assert_eq!(status, 202, "{sent}");
    let frame = sse.next_event().await;
    assert_eq!(frame.event.as_deref(), Some("message.created"), "{frame:?}");
    let data = frame.json();
    assert_eq!(data["messageId"], sent["id"]);
    assert_eq!(data["lineId"], t.demo.line_id.as_str());
    assert_eq!(data["type"], "message.created");
    assert!(frame.id.as_deref().is_some_and(|id| id.contains('.')), "events carry ids: {frame:?}");
}

#[tokio::test]
async fn hints_of_another_organization_are_never_delivered() {
    let t = TestServer::start().await;
    let ezw = &t.server().ezw;
    let (org2, _) = ezw
        .orgs()
        .create_organization(ezw::core::service::NewOrganization {
            name: "Other".into(),
            slug: None,
            owner_email: "other@example.com".into(),
            owner_name: "Other".into(),
            owner_password: ezw::core::Secret::new("other-password"),
            billing_state: ezw::core::model::BillingState::Active,
            line_slots: 1,
        })
        .await
        .unwrap();
    let demo_token = t.login().await;
    let other_token = t.login_as("other@example.com", "other-password").await;
    let mut demo = Sse::open(&t, &demo_token, None).await;
    let mut other = Sse::open(&t, &other_token, None).await;

    let live = ezw.live();
    live.publish(hint("line.updated", &t.demo.organization_id, 1));
    live.publish(hint("line.updated", org2.id.as_str(), 2));
    live.publish(hint("line.updated", &t.demo.organization_id, 3));

    let first = other.next_event().await;
    assert_eq!(first.json()["version"], 2, "the other org's first event is its own: {first:?}");
    assert_eq!(demo.next_event().await.json()["version"], 1);
    assert_eq!(demo.next_event().await.json()["version"], 3, "the demo stream skips org2's hint");
}

#[tokio::test]
async fn heartbeats_follow_the_runtime_clock() {
    let t = TestServer::start().await;
    let token = t.login().await;
    let mut sse = Sse::open(&t, &token, None).await;
    // The stream registers its heartbeat timer when it starts waiting; advance until it fires.
    let mut beat = None;
    for _ in 0..50 {
        t.clock.advance(Duration::from_secs(15));
        let next = tokio::time::timeout(Duration::from_millis(200), sse.next()).await;
        if let Ok(frame) = next {
            beat = frame;
            break;
        }
    }
    let beat = beat.expect("a heartbeat after 15 s of silence");
    assert_eq!(beat.comment.as_deref(), Some("heartbeat"), "{beat:?}");
}

#[tokio::test]
async fn last_event_id_resumes_within_the_window_and_resets_beyond_it() {
    let t = TestServer::start().await;
    let token = t.login().await;
    let org = t.demo.organization_id.clone();
    let live = t.server().ezw.live().clone();

    let mut sse = Sse::open(&t, &token, None).await;
    live.publish(hint("conversation.updated", &org, 1));
    live.publish(hint("conversation.updated", &org, 2));
    let first = sse.next_event().await;
    let second = sse.next_event().await;
    assert_eq!((first.json()["version"].as_i64(), second.json()["version"].as_i64()), (Some(1), Some(2)));
    drop(sse);

    // Missed while disconnected: replayed in order after the last id seen.
    live.publish(hint("conversation.updated", &org, 3));
    live.publish(hint("conversation.updated", &org, 4));
    let mut resumed = Sse::open(&t, &token, second.id.as_deref()).await;
    let third = resumed.next_event().await;
    let fourth = resumed.next_event().await;
    assert_eq!((third.json()["version"].as_i64(), fourth.json()["version"].as_i64()), (Some(3), Some(4)));
    live.publish(hint("conversation.updated", &org, 5));
    assert_eq!(resumed.next_event().await.json()["version"], 5, "then live hints, none repeated");
    drop(resumed);

    // An id the server never issued: reset.
    let mut bogus = Sse::open(&t, &token, Some("not-an-id")).await;
    let reset = bogus.next_event().await;
    assert_eq!((reset.event.as_deref(), reset.json()["reason"].as_str()), (Some("reset"), Some("unknown_event_id")));
    drop(bogus);

    // Older than the five-minute window: reset, then live hints as usual.
    t.clock.advance(Duration::from_secs(301));
    live.publish(hint("conversation.updated", &org, 6));
    let mut late = Sse::open(&t, &token, third.id.as_deref()).await;
    let reset = late.next_event().await;
    assert_eq!(
        (reset.event.as_deref(), reset.json()["reason"].as_str()),
        (Some("reset"), Some("resume_window_passed")),
        "{reset:?}"
    );
    live.publish(hint("conversation.updated", &org, 7));
    assert_eq!(late.next_event().await.json()["version"], 7);
}

#[tokio::test]
async fn line_tokens_and_missing_tokens_are_refused() {
    let t = TestServer::start().await;
    let res = t.http.get(t.url("/api/live/stream")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = t.http.get(t.url("/api/live/stream")).bearer_auth(&t.demo.line_token).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "wrong_token_type");
}

#[tokio::test]
async fn a_revoked_session_ends_the_stream_at_the_next_heartbeat() {
    let t = TestServer::start().await;
    let token = t.login().await;
    let mut sse = Sse::open(&t, &token, None).await;
    let res = t.http.post(t.url("/api/auth/logout")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 204);
    let mut ended = false;
    for _ in 0..50 {
        t.clock.advance(Duration::from_secs(15));
        match tokio::time::timeout(Duration::from_millis(200), sse.next()).await {
            Ok(None) => {
                ended = true;
                break;
            }
            Ok(Some(frame)) => assert!(frame.comment.is_none(), "no heartbeat for a revoked session: {frame:?}"),
            Err(_) => {}
        }
    }
    assert!(ended, "the server closed the stream");
}
