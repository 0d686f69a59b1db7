//! The mock, the client and the fixtures checked against WAHA's OpenAPI spec
//! (`../shared/specs/waha-openapi.json`, WAHA 2026.7.1).
//!
//! `fixtures/waha-openapi.subset.json` holds the operations and webhooks EZW uses with every
//! schema they reference (descriptions and examples dropped), so the checks run where the full
//! spec is not checked out; when it is (or `EZW_WAHA_SPEC` names it), a test asserts the subset
//! is exactly what the full spec says.
//!
//! Checked: every call the client makes is an operation of the spec, with its required query
//! parameters and the `X-Api-Key` security header; every request body has the schema's required
//! properties and only known ones; every mock answer and webhook fixture has what the schemas
//! require, with the declared types.

use ezw_core::model::{LifecycleState, MediaKind, MediaRef, MessageContent, MessageKind, PairingMethod};
use ezw_core::ports::LineProvider;
use ezw_core::PhoneNumber;
use serde_json::{json, Map, Value};

use super::mock::WahaMock;
use super::{harness, line, next_event, outbound, until, webhook_fixtures, ACCOUNT, API_KEY, POLL, SESSION};

/// Keys dropped from the subset (outside `properties` maps, where they would be property names).
const DROPPED: [&str; 5] = ["example", "examples", "description", "summary", "tags"];

/// Where the spec has a defect its own examples contradict: the value's type is not checked.
/// `WebhookConfig.events` items are typed `object` but are event names (the spec's example sends
/// `["message", "session.status"]`); webhook `event` is typed `object` with a string `enum` (the
/// enum is still checked).
const SPEC_DEFECTS: [&str; 2] = ["$.config.webhooks[].events[]", "$.event"];

fn subset() -> Value {
    serde_json::from_str(&super::fixture("waha-openapi.subset.json")).expect("subset is JSON")
}

fn full_spec() -> Option<Value> {
    let path = std::env::var("EZW_WAHA_SPEC")
        .unwrap_or_else(|_| format!("{}/../../../shared/specs/waha-openapi.json", env!("CARGO_MANIFEST_DIR")));
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).expect("the WAHA spec is JSON"))
}

fn strip(value: &Value, in_properties: bool) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| in_properties || !DROPPED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), strip(v, !in_properties && k == "properties")))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| strip(v, false)).collect()),
        other => other.clone(),
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.rsplit('/').next().unwrap().to_owned()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The subset of `spec` covering the operations and webhooks the subset names.
fn extract(spec: &Value, like: &Value) -> Value {
    let mut paths = Map::new();
    let mut refs = Vec::new();
    for (path, ops) in like["paths"].as_object().unwrap() {
        let mut kept = Map::new();
        for method in ops.as_object().unwrap().keys() {
            let op = spec["paths"][path][method].clone();
            assert!(!op.is_null(), "{method} {path} is not in the spec");
            collect_refs(&op, &mut refs);
            kept.insert(method.clone(), op);
        }
        paths.insert(path.clone(), Value::Object(kept));
    }
    let mut webhooks = Map::new();
    for name in like["webhooks"].as_object().unwrap().keys() {
        let hook = spec["webhooks"][name].clone();
        collect_refs(&hook, &mut refs);
        webhooks.insert(name.clone(), hook);
    }
    let mut schemas = Map::new();
    while let Some(name) = refs.pop() {
        if schemas.contains_key(&name) {
            continue;
        }
        let schema = spec["components"]["schemas"][&name].clone();
        collect_refs(&schema, &mut refs);
        schemas.insert(name, schema);
    }
    let body = json!({"paths": paths, "webhooks": webhooks, "components": {"schemas": schemas}});
    let mut out = strip(&body, false);
    out["info"] = json!({"title": spec["info"]["title"], "version": spec["info"]["version"]});
    out
}

#[test]
fn the_subset_is_exactly_what_the_published_spec_says() {
    let subset = subset();
    assert_eq!(subset["info"]["version"], "2026.7.1");
    let Some(spec) = full_spec() else {
        eprintln!("the full WAHA spec is not checked out here; the subset was checked where it is");
        return;
    };
    assert_eq!(extract(&spec, &subset), subset);
}

/// A minimal JSON-schema check for the OpenAPI subset WAHA uses.
struct Check<'a> {
    spec: &'a Value,
    /// Requests EZW sends: unknown properties and nulls are errors.
    strict: bool,
    errors: Vec<String>,
}

impl<'a> Check<'a> {
    fn run(spec: &'a Value, schema: &Value, value: &Value, strict: bool) -> Vec<String> {
        Self::run_at(spec, schema, value, strict, "$")
    }

    fn value(&mut self, schema: &Value, value: &Value, at: &str) {
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let spec = self.spec;
            let name = r.rsplit('/').next().unwrap();
            let resolved = &spec["components"]["schemas"][name];
            assert!(!resolved.is_null(), "{at}: unknown schema {name}");
            return self.value(resolved, value, at);
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for s in all {
                self.value(s, value, at);
            }
        }
        if let Some(any) = schema.get("oneOf").or_else(|| schema.get("anyOf")).and_then(Value::as_array) {
            let spec = self.spec;
            let fits = any.iter().any(|s| Check::run_at(spec, s, value, self.strict, at).is_empty());
            if !fits {
                self.errors.push(format!("{at}: matches none of the alternatives"));
            }
        }
        if value.is_null() {
            let nullable = schema.get("nullable").and_then(Value::as_bool).unwrap_or(false);
            if self.strict && !nullable {
                self.errors.push(format!("{at}: null"));
            }
            return;
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.contains(value) {
                self.errors.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if SPEC_DEFECTS.contains(&at) {
            return;
        }
        let ok = match schema.get("type").and_then(Value::as_str) {
            Some("object") => self.object(schema, value, at),
            Some("array") => {
                if let (Some(items), Some(values)) = (schema.get("items"), value.as_array()) {
                    for v in values {
                        self.value(items, v, &format!("{at}[]"));
                    }
                }
                value.is_array()
            }
            Some("string") => value.is_string(),
            Some("number") => value.is_number(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("boolean") => value.is_boolean(),
            _ => true,
        };
        if !ok {
            self.errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
        }
    }

    fn run_at(spec: &'a Value, schema: &Value, value: &Value, strict: bool, at: &str) -> Vec<String> {
        let mut check = Check { spec, strict, errors: Vec::new() };
        check.value(schema, value, at);
        check.errors
    }

    fn object(&mut self, schema: &Value, value: &Value, at: &str) -> bool {
        let Some(map) = value.as_object() else { return false };
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !map.contains_key(name) {
                    self.errors.push(format!("{at}: required property '{name}' is missing"));
                }
            }
        }
        if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
            for (name, v) in map {
                match properties.get(name) {
                    Some(s) => self.value(s, v, &format!("{at}.{name}")),
                    None if self.strict => self.errors.push(format!("{at}: unknown property '{name}'")),
                    None => {}
                }
            }
        }
        true
    }
}

/// The spec operation for a call: its path template and definition.
fn operation<'s>(spec: &'s Value, method: &str, path: &str) -> Option<(&'s str, &'s Value)> {
    let segments: Vec<&str> = path.split('/').collect();
    spec["paths"].as_object()?.iter().find_map(|(template, ops)| {
        let parts: Vec<&str> = template.split('/').collect();
        let fits = parts.len() == segments.len()
            && parts.iter().zip(&segments).all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s);
        let op = ops.get(method.to_ascii_lowercase())?;
        fits.then_some((template.as_str(), op))
    })
}

fn image(url: &str) -> MessageContent {
    MessageContent {
        media: Some(MediaRef {
            kind: MediaKind::Image,
            url: Some(url.into()),
            attachment_id: None,
            provider_media_id: None,
            sha256: None,
            caption: Some("Your receipt".into()),
            filename: None,
            mime_type: None,
        }),
        ..MessageContent::default()
    }
}

/// Drives every call the provider makes against the mock.
async fn every_call(mock: &WahaMock) {
    let mut h = harness();
    let connected = line(&h.provider, &mock.url(), LifecycleState::Connected);
    // Session upkeep: create (PUT answers 404 first), then update; a paired line starts.
    h.provider.open_session(&connected).await.unwrap();
    h.provider.open_session(&connected).await.unwrap();
    // QR pairing: logout, start, then the watcher reads the status and the QR.
    let pairing = line(&h.provider, &mock.url(), LifecycleState::Pairing);
    h.provider.start_pairing(&pairing, &PairingMethod::Qr).await.unwrap();
    next_event(&mut h.events).await;
    mock.pair(SESSION, ACCOUNT);
    until(|| h.clock.pending_sleepers() == 1).await;
    h.clock.advance(POLL);
    next_event(&mut h.events).await;
    // Phone-code pairing, then giving it up.
    let phone = PhoneNumber::from_raw(format!("+{ACCOUNT}"));
    h.provider.start_pairing(&pairing, &PairingMethod::PhoneCode { phone }).await.unwrap();
    h.provider.stop_pairing(&pairing).await;
    // Reconnect, sends of every shape, health.
    mock.pair(SESSION, ACCOUNT);
    h.provider.reconnect(&connected).await.unwrap();
    let text = MessageContent { body: Some("Hello".into()), ..MessageContent::default() };
    h.provider.send(&connected, &outbound(MessageKind::Text, text)).await.unwrap();
    let reply = MessageContent {
        body: Some("Yes".into()),
        reply_to: Some("false_972501234567@c.us_3EB0A1B2C3D4E5F60718".into()),
        ..MessageContent::default()
    };
    h.provider.send(&connected, &outbound(MessageKind::Text, reply)).await.unwrap();
    h.provider.send(&connected, &outbound(MessageKind::Image, image("https://cdn.example.com/r.png"))).await.unwrap();
    let mut doc = image("https://cdn.example.com/invoice.pdf");
    let media = doc.media.as_mut().unwrap();
    media.kind = MediaKind::Document;
    media.filename = Some("invoice.pdf".into());
    media.mime_type = Some("application/pdf".into());
    h.provider.send(&connected, &outbound(MessageKind::Document, doc)).await.unwrap();
    h.provider.health(&connected, true).await.unwrap();
    // A message from a privacy id: the number is looked up.
    mock.add_lid("204863123456789@lid", "972501234567@c.us");
    let lid = super::signed(&super::fixture("event_message_lid.json"));
    assert_eq!(h.provider.ingest(&connected, &lid).await.unwrap().events.len(), 1);
    // Forget the credentials.
    h.provider.logout(&connected).await.unwrap();
}

#[tokio::test]
async fn every_call_the_client_makes_is_a_spec_operation_with_a_valid_request() {
    let spec = subset();
    let mock = WahaMock::start(Some(API_KEY)).await;
    every_call(&mock).await;
    let exchanges = mock.exchanges();
    let mut seen = std::collections::BTreeSet::new();
    for e in &exchanges {
        let call = format!("{} {}", e.method, e.path);
        let (template, op) =
            operation(&spec, &e.method, &e.path).unwrap_or_else(|| panic!("{call} is not in the spec"));
        seen.insert(format!("{} {template}", e.method));
        // Security: `api_key` is the `X-Api-Key` header.
        assert_eq!(op["security"], json!([{"api_key": []}]), "{call}");
        assert_eq!(e.header("x-api-key"), Some(API_KEY), "{call} without X-Api-Key");
        // Required query parameters, with their enums.
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(e.query.as_deref().unwrap_or("").as_bytes()).into_owned().collect();
        for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "query") {
            let given = query.iter().find(|(k, _)| p["name"] == json!(k));
            if p["required"] == json!(true) {
                let (_, v) = given.unwrap_or_else(|| panic!("{call}: missing query parameter {}", p["name"]));
                let errors = Check::run(&spec, &p["schema"], &json!(v), true);
                assert!(errors.is_empty(), "{call}: {errors:?}");
            }
        }
        // The body against the request schema: required properties, only known ones.
        match op["requestBody"]["content"]["application/json"]["schema"].as_object() {
            Some(_) => {
                let schema = &op["requestBody"]["content"]["application/json"]["schema"];
                let errors = Check::run(&spec, schema, &e.json(), true);
                assert!(errors.is_empty(), "{call} body {}: {errors:?}", e.json());
            }
            None => assert!(e.body.is_empty(), "{call} sends a body the spec does not describe"),
        }
    }
    let expected = [
        "POST /api/sessions",
        "GET /api/sessions/{session}",
        "PUT /api/sessions/{session}",
        "POST /api/sessions/{session}/start",
        "POST /api/sessions/{session}/stop",
        "POST /api/sessions/{session}/logout",
        "GET /api/{session}/auth/qr",
        "POST /api/{session}/auth/request-code",
        "POST /api/sendText",
        "POST /api/sendImage",
        "POST /api/sendFile",
        "GET /api/{session}/lids/{lid}",
    ];
    let expected: std::collections::BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(seen, expected, "the scenario covers every operation the provider uses");
}

#[tokio::test]
async fn the_mocks_answers_are_what_the_spec_says_waha_answers() {
    let spec = subset();
    let mock = WahaMock::start(Some(API_KEY)).await;
    every_call(&mock).await;
    let mut checked = 0;
    for e in mock.exchanges() {
        let call = format!("{} {}", e.method, e.path);
        let (_, op) = operation(&spec, &e.method, &e.path).unwrap();
        if !(200..300).contains(&e.status) {
            // Errors are not described by the spec; the mock answers NestJS-style bodies.
            assert!(e.response["statusCode"] == json!(e.status), "{call}: {}", e.response);
            continue;
        }
        let declared = op["responses"].as_object().unwrap();
        let answer = declared.get(&e.status.to_string()).unwrap_or_else(|| {
            panic!("{call} answered {} but the spec declares {:?}", e.status, declared.keys().collect::<Vec<_>>())
        });
        if let Some(schema) = answer["content"]["application/json"].get("schema") {
            let errors = Check::run(&spec, schema, &e.response, false);
            assert!(errors.is_empty(), "{call} answer {}: {errors:?}", e.response);
            checked += 1;
        }
    }
    assert!(checked >= 11, "only {checked} answers checked");
}

#[test]
fn the_webhook_fixtures_are_what_the_spec_says_waha_posts() {
    let spec = subset();
    let mut checked = 0;
    for (name, body) in webhook_fixtures() {
        let event: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Some(hook) = spec["webhooks"].get(event["event"].as_str().unwrap()) else {
            // Events EZW does not subscribe to (they must still be ignored safely).
            continue;
        };
        let schema = &hook["post"]["requestBody"]["content"]["application/json"]["schema"];
        let errors = Check::run(&spec, schema, &event, false);
        assert!(errors.is_empty(), "{name}: {errors:?}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} fixtures checked");
}

#[test]
fn the_checker_catches_what_it_should() {
    let spec = subset();
    let text = json!({"$ref": "#/components/schemas/MessageTextRequest"});
    let ok = json!({"session": "s", "chatId": "1@c.us", "text": "hi"});
    assert!(Check::run(&spec, &text, &ok, true).is_empty());
    let missing = json!({"session": "s", "text": "hi"});
    assert_eq!(Check::run(&spec, &text, &missing, true), ["$: required property 'chatId' is missing"]);
    let unknown = json!({"session": "s", "chatId": "1@c.us", "text": "hi", "replyTo": "x"});
    assert_eq!(Check::run(&spec, &text, &unknown, true), ["$: unknown property 'replyTo'"]);
    let wrong_type = json!({"session": "s", "chatId": 1, "text": "hi"});
    assert_eq!(Check::run(&spec, &text, &wrong_type, true).len(), 1);
    // oneOf: a remote file needs its URL and MIME type.
    let image = json!({"$ref": "#/components/schemas/MessageImageRequest"});
    let no_mime = json!({"session": "s", "chatId": "1@c.us", "file": {"url": "https://x/y.png"}});
    assert_eq!(Check::run(&spec, &image, &no_mime, true), ["$.file: matches none of the alternatives"]);
    // Enums.
    let dto = json!({"$ref": "#/components/schemas/SessionDTO"});
    assert_eq!(Check::run(&spec, &dto, &json!({"name": "s", "status": "PAIRED"}), false).len(), 1);
}
