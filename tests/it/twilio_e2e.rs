//! Twilio lines end to end through the server: signed form webhooks (inbound and status),
//! sends to a local Twilio API mock.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};

use crate::support::{eventually, TestServer};
use crate::vendor_mock::VendorMock;

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "fedcba9876543210fedcba9876543210";

/// Twilio's signature: base64 HMAC-SHA1 over the URL and the sorted params, computed here
/// independently of the code under test.
fn sign(url: &str, params: &[(&str, &str)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(AUTH_TOKEN.as_bytes()).unwrap();
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn form(params: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish()
}

struct TwilioLine {
    t: TestServer,
    api: VendorMock,
    id_token: String,
    line_id: String,
    line_token: String,
}

async fn twilio_line() -> TwilioLine {
    let t = TestServer::start().await;
    let api = VendorMock::start().await;
    let id_token = t.login().await;
    let res = t
        .http
        .post(t.url("/api/lines"))
        .bearer_auth(&id_token)
        .json(&json!({
            "displayName": "Twilio support",
            "phoneNumber": "+14155238886",
            "provider": {"kind": "twilio", "accountSid": ACCOUNT_SID, "authToken": AUTH_TOKEN,
                         "from": "whatsapp:+14155238886", "apiBaseUrl": api.url}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let line: Value = res.json().await.unwrap();
    assert!(!line.to_string().contains(AUTH_TOKEN));
    assert_eq!(line["provider"]["accountSid"], ACCOUNT_SID);
    let line_id = line["id"].as_str().unwrap().to_owned();
    let res =
        t.http.post(t.url(&format!("/api/lines/{line_id}/api-token"))).bearer_auth(&id_token).send().await.unwrap();
    let line_token = res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    TwilioLine { t, api, id_token, line_id, line_token }
}

impl TwilioLine {
    async fn post(&self, route: &str, params: &[(&str, &str)], signature: Option<String>) -> u16 {
        let path = format!("/hooks/twilio/{}{route}", self.line_id);
        let mut req = self
            .t
            .http
            .post(self.t.url(&path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(params));
        if let Some(sig) = signature {
            req = req.header("x-twilio-signature", sig);
        }
        req.send().await.unwrap().status().as_u16()
    }

    fn url(&self, route: &str) -> String {
        self.t.url(&format!("/hooks/twilio/{}{route}", self.line_id))
    }

    async fn conversations(&self) -> Vec<Value> {
        let (_, body) = self.t.get_json(&format!("/api/conversations?lineId={}", self.line_id), &self.id_token).await;
        body["conversations"].as_array().unwrap().clone()
    }
}

fn inbound<'a>(sid: &'a str, body: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ProfileName", "Dana"),
        ("MessageType", "text"),
        ("SmsSid", sid),
        ("WaId", "972501234567"),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", "whatsapp:+14155238886"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", "whatsapp:+972501234567"),
        ("ApiVersion", "2010-04-01"),
    ]
}

#[tokio::test]
async fn signed_inbound_form_creates_conversation_and_message() {
    let l = twilio_line().await;
    let params = inbound("SM11111111111111111111111111111111", "Hi, is my order ready?");
    let sig = sign(&l.url(""), &params);
    assert_eq!(l.post("", &params, Some(sig.clone())).await, 200);
    let convs = l.conversations().await;
    assert_eq!(convs.len(), 1);
    assert_eq!(convs[0]["contactPhone"], "+972501234567");
    let messages = l.t.messages(&l.id_token, convs[0]["id"].as_str().unwrap()).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["body"], "Hi, is my order ready?");
    assert_eq!(messages[0]["providerMessageId"], "SM11111111111111111111111111111111");
    // A retried webhook changes nothing.
    assert_eq!(l.post("", &params, Some(sig)).await, 200);
    assert_eq!(l.t.messages(&l.id_token, convs[0]["id"].as_str().unwrap()).await.len(), 1);
}

#[tokio::test]
async fn forged_or_missing_signatures_store_nothing() {
    let l = twilio_line().await;
    let params = inbound("SM22222222222222222222222222222222", "forged");
    assert_eq!(l.post("", &params, None).await, 401);
    let mut tampered = params.clone();
    let sig = sign(&l.url(""), &params);
    tampered[7] = ("Body", "tampered");
    assert_eq!(l.post("", &tampered, Some(sig)).await, 401);
    // Signed for another URL (the status route) is not valid here.
    assert_eq!(l.post("", &params, Some(sign(&l.url("/status"), &params))).await, 401);
    assert!(l.conversations().await.is_empty());
}

#[tokio::test]
async fn sends_use_the_twilio_api_and_status_callbacks_move_them_forward() {
    let l = twilio_line().await;
    let path = format!("/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json");
    l.api.json(
        "POST",
        &path,
        201,
        json!({
            "sid": "SM33333333333333333333333333333333", "status": "queued", "account_sid": ACCOUNT_SID,
            "to": "whatsapp:+972501234567", "from": "whatsapp:+14155238886", "body": "Your order is ready",
            "error_code": null, "error_message": null
        }),
    );
    let (s, msg) =
        l.t.send_text(&l.line_token, None, json!({"to": "+972501234567", "body": "Your order is ready"})).await;
    assert_eq!(s, 202);
    let id = msg["id"].as_str().unwrap().to_owned();
    eventually(&l.t.clock, Duration::from_millis(10), || async {
        let (_, m) = l.t.get_json(&format!("/api/v1/messages/{id}"), &l.line_token).await;
        (m["status"] == "sent").then_some(m)
    })
    .await;
    let seen = l.api.seen(&path);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].headers["content-type"], "application/x-www-form-urlencoded");
    let expected_auth =
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}")));
    assert_eq!(seen[0].headers["authorization"], expected_auth);
    let f = seen[0].form();
    assert_eq!(f["To"], "whatsapp:+972501234567");
    assert_eq!(f["From"], "whatsapp:+14155238886");
    assert_eq!(f["Body"], "Your order is ready");
    assert_eq!(f["StatusCallback"], format!("{}?message_id={id}", l.url("/status")), "the callback names our message");

    for st in ["delivered", "read"] {
        let params: BTreeMap<&str, &str> = [
            ("MessageSid", "SM33333333333333333333333333333333"),
            ("MessageStatus", st),
            ("AccountSid", ACCOUNT_SID),
            ("To", "whatsapp:+972501234567"),
            ("From", "whatsapp:+14155238886"),
            ("ApiVersion", "2010-04-01"),
        ]
        .into_iter()
        .collect();
        let params: Vec<(&str, &str)> = params.into_iter().collect();
        let sig = sign(&l.url("/status"), &params);
        assert_eq!(l.post("/status", &params, Some(sig)).await, 200, "{st}");
        let (_, m) = l.t.get_json(&format!("/api/v1/messages/{id}"), &l.line_token).await;
        assert_eq!(m["status"], st);
    }
}

#[tokio::test]
async fn cta_buttons_are_refused_on_twilio_lines_at_accept_time() {
    let l = twilio_line().await;
    let (s, e) = l
        .t
        .send_text(
            &l.line_token,
            None,
            json!({"to": "+972501234567", "body": "x", "ctaUrlButton": {"displayText": "Open", "url": "https://example.com"}}),
        )
        .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("unsupported_by_provider")));
}
