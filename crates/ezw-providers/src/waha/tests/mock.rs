//! A local WAHA sidecar speaking WAHA's wire format (checked against the spec in `spec.rs`):
//! sessions with their status life cycle, QR and phone-code pairing, sends, media files. Tests
//! drive it ("the phone scans", "WAHA rotates the QR", failures) and read every exchange.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

/// One exchange: the request as received and the answer given.
#[derive(Debug, Clone)]
pub(crate) struct Exchange {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    pub(crate) status: u16,
    pub(crate) response: Value,
}

impl Exchange {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

/// How sends answer with the message id (engines differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdStyle {
    /// `"id": "true_...@c.us_ID"` (NOWEB, GOWS).
    String,
    /// `"id": {"_serialized": "true_...@c.us_ID", ...}` (WEBJS).
    Serialized,
    /// Only `"key": {"id": "ID", ...}`.
    Key,
}

#[derive(Debug, Clone)]
struct Session {
    status: String,
    config: Value,
    /// Credentials: the phone paired this session.
    account: Option<String>,
}

struct Inner {
    api_key: Option<String>,
    sessions: HashMap<String, Session>,
    qr: String,
    phone_code: String,
    /// Overrides the status `start` leads to.
    start_status: Option<String>,
    id_style: IdStyle,
    next_id: u64,
    /// Scripted failures: (path, status, body), each answered once.
    failures: VecDeque<(String, u16, Value)>,
    delay: Option<(String, Duration)>,
    files: HashMap<String, (String, Vec<u8>)>,
    lids: HashMap<String, String>,
    exchanges: Vec<Exchange>,
}

/// The mock sidecar; dropped with the test's runtime.
#[derive(Clone)]
pub(crate) struct WahaMock {
    pub(crate) addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl WahaMock {
    /// A sidecar requiring `api_key` (when given) on every call.
    pub(crate) async fn start(api_key: Option<&str>) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            api_key: api_key.map(str::to_owned),
            sessions: HashMap::new(),
            qr: "2@first-qr-reference,pubkey,identity,adv".into(),
            phone_code: "ABCD-EFGH".into(),
            start_status: None,
            id_style: IdStyle::String,
            next_id: 0,
            failures: VecDeque::new(),
            delay: None,
            files: HashMap::new(),
            lids: HashMap::new(),
            exchanges: Vec::new(),
        }));
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mock");
        let addr = listener.local_addr().expect("mock addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, inner }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every exchange so far.
    pub(crate) fn exchanges(&self) -> Vec<Exchange> {
        self.lock().exchanges.clone()
    }

    /// `METHOD path` of every exchange so far.
    pub(crate) fn calls(&self) -> Vec<String> {
        self.lock().exchanges.iter().map(|e| format!("{} {}", e.method, e.path)).collect()
    }

    /// Forgets the exchanges so far.
    pub(crate) fn clear(&self) {
        self.lock().exchanges.clear();
    }

    /// A session as if created earlier, in `status`, paired to `account` (digits) when given.
    pub(crate) fn add_session(&self, name: &str, status: &str, account: Option<&str>) {
        let session = Session { status: status.into(), config: json!({}), account: account.map(str::to_owned) };
        self.lock().sessions.insert(name.into(), session);
    }

    /// The session's status.
    pub(crate) fn status(&self, name: &str) -> Option<String> {
        self.lock().sessions.get(name).map(|s| s.status.clone())
    }

    /// Sets the session's status (WAHA moved on by itself).
    pub(crate) fn set_status(&self, name: &str, status: &str) {
        if let Some(s) = self.lock().sessions.get_mut(name) {
            s.status = status.into();
        }
    }

    /// The session's config as last created or updated.
    pub(crate) fn config(&self, name: &str) -> Option<Value> {
        self.lock().sessions.get(name).map(|s| s.config.clone())
    }

    /// WAHA rotates the QR code.
    pub(crate) fn set_qr(&self, value: &str) {
        self.lock().qr = value.into();
    }

    /// The phone scans the code (or types the phone code): the session works as `account`.
    pub(crate) fn pair(&self, name: &str, account: &str) {
        if let Some(s) = self.lock().sessions.get_mut(name) {
            s.account = Some(account.into());
            s.status = "WORKING".into();
        }
    }

    /// `start` leads to `status` instead of `WORKING` / `SCAN_QR_CODE`.
    pub(crate) fn start_leads_to(&self, status: &str) {
        self.lock().start_status = Some(status.into());
    }

    pub(crate) fn id_style(&self, style: IdStyle) {
        self.lock().id_style = style;
    }

    /// The next call to `path` answers `status` with `body`.
    pub(crate) fn fail(&self, path: &str, status: u16, body: Value) {
        self.lock().failures.push_back((path.into(), status, body));
    }

    /// Calls to `path` answer after `delay`.
    pub(crate) fn delay(&self, path: &str, delay: Duration) {
        self.lock().delay = Some((path.into(), delay));
    }

    /// WAHA knows the phone chat id (`pn`) behind a privacy id.
    pub(crate) fn add_lid(&self, lid: &str, pn: &str) {
        self.lock().lids.insert(lid.into(), pn.into());
    }

    /// Serves a media file at `/api/files/{name}`.
    pub(crate) fn add_file(&self, name: &str, content_type: &str, bytes: &[u8]) {
        self.lock().files.insert(name.into(), (content_type.into(), bytes.to_vec()));
    }
}

fn error(status: u16, message: &str) -> (u16, Value) {
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    (status, json!({"statusCode": status, "message": message, "error": reason}))
}

fn not_found(name: &str) -> (u16, Value) {
    error(404, &format!("Session \"{name}\" does not exist"))
}

fn not_as_expected(name: &str, status: &str, expected: &str) -> (u16, Value) {
    (
        422,
        json!({
            "statusCode": 422,
            "message": "Session status is not as expected. Try again later or restart the session",
            "session": name,
            "status": status,
            "expected": [expected],
        }),
    )
}

fn session_dto(name: &str, s: &Session) -> Value {
    json!({"name": name, "status": s.status, "config": s.config})
}

fn me(account: &str) -> Value {
    json!({"id": format!("{account}@c.us"), "pushName": "EZW Line"})
}

impl Inner {
    fn started(&self, s: &Session) -> String {
        self.start_status.clone().unwrap_or_else(|| if s.account.is_some() { "WORKING" } else { "SCAN_QR_CODE" }.into())
    }

    fn sent(&mut self, session: &str, request: &Value) -> (u16, Value) {
        let Some(s) = self.sessions.get(session) else { return not_found(session) };
        if s.status != "WORKING" {
            return not_as_expected(session, &s.status, "WORKING");
        }
        let account = s.account.clone().unwrap_or_default();
        self.next_id += 1;
        let key = format!("3EB0{:016X}", self.next_id);
        let chat = request["chatId"].as_str().unwrap_or_default().to_owned();
        let serialized = format!("true_{chat}_{key}");
        let mut message = json!({
            "timestamp": 1_767_225_600,
            "from": format!("{account}@c.us"),
            "fromMe": true,
            "source": "api",
            "to": chat,
            "participant": "",
            "body": request.get("text").or_else(|| request.get("caption")).cloned().unwrap_or(json!("")),
            "hasMedia": request.get("file").is_some(),
            "mediaUrl": "",
            "ack": 1,
            "ackName": "SERVER",
        });
        match self.id_style {
            IdStyle::String => message["id"] = json!(serialized),
            IdStyle::Serialized => {
                message["id"] = json!({"fromMe": true, "remote": chat, "id": key, "_serialized": serialized});
            }
            IdStyle::Key => message["key"] = json!({"remoteJid": chat, "fromMe": true, "id": key}),
        }
        (201, message)
    }

    fn route(&mut self, method: &Method, path: &str, query: Option<&str>, body: &[u8]) -> (u16, Value) {
        let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method.as_str(), segments.as_slice()) {
            ("POST", ["api", "sessions"]) => {
                let name = request["name"].as_str().unwrap_or("default").to_owned();
                if self.sessions.contains_key(&name) {
                    return error(422, &format!("Session '{name}' already exists. Use PUT to update it."));
                }
                let mut s = Session { status: "STOPPED".into(), config: request["config"].clone(), account: None };
                if request["start"].as_bool().unwrap_or(true) {
                    s.status = self.started(&s);
                }
                let dto = session_dto(&name, &s);
                self.sessions.insert(name, s);
                (201, dto)
            }
            ("GET", ["api", "sessions", name]) => match self.sessions.get(*name) {
                None => not_found(name),
                Some(s) => {
                    let mut info = session_dto(name, s);
                    info["presence"] = json!({});
                    info["timestamps"] = json!({"activity": null});
                    if let (Some(account), "WORKING") = (&s.account, s.status.as_str()) {
                        info["me"] = me(account);
                    }
                    (200, info)
                }
            },
            ("PUT", ["api", "sessions", name]) => match self.sessions.get_mut(*name) {
                None => not_found(name),
                Some(s) => {
                    s.config = request["config"].clone();
                    (200, session_dto(name, s))
                }
            },
            ("POST", ["api", "sessions", name, action]) => {
                let Some(mut s) = self.sessions.get(*name).cloned() else { return not_found(name) };
                match *action {
                    "start" => s.status = self.started(&s),
                    "stop" => s.status = "STOPPED".into(),
                    // Logout drops the credentials and restarts a running session.
                    "logout" => {
                        s.account = None;
                        if s.status != "STOPPED" {
                            s.status = self.started(&s);
                        }
                    }
                    _ => return error(404, "Cannot POST"),
                }
                let dto = session_dto(name, &s);
                self.sessions.insert((*name).to_owned(), s);
                (201, dto)
            }
            ("GET", ["api", name, "auth", "qr"]) => {
                if query != Some("format=raw") {
                    return error(400, "this mock serves format=raw only");
                }
                match self.sessions.get(*name) {
                    None => not_found(name),
                    Some(s) if s.status != "SCAN_QR_CODE" => not_as_expected(name, &s.status, "SCAN_QR_CODE"),
                    Some(_) => (200, json!({"value": self.qr})),
                }
            }
            ("POST", ["api", name, "auth", "request-code"]) => match self.sessions.get(*name) {
                None => not_found(name),
                Some(s) if s.status != "SCAN_QR_CODE" => not_as_expected(name, &s.status, "SCAN_QR_CODE"),
                Some(_) if request["phoneNumber"].as_str().is_none_or(|p| !p.bytes().all(|b| b.is_ascii_digit())) => {
                    error(400, "phoneNumber must be digits")
                }
                Some(_) => (201, json!({"code": self.phone_code})),
            },
            ("GET", ["api", name, "lids", lid]) => match self.sessions.get(*name) {
                None => not_found(name),
                Some(_) => (200, json!({"lid": lid, "pn": self.lids.get(*lid)})),
            },
            ("POST", ["api", "sendText" | "sendImage" | "sendFile"]) => {
                let session = request["session"].as_str().unwrap_or("default").to_owned();
                self.sent(&session, &request)
            }
            _ => error(404, &format!("Cannot {method} {path}")),
        }
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let delay = inner.lock().unwrap().delay.clone().filter(|(p, _)| *p == path).map(|(_, d)| d);
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let headers: Vec<(String, String)> =
        headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    let mut inner = inner.lock().unwrap();
    let key_ok = inner.api_key.as_deref().is_none_or(|key| headers.iter().any(|(k, v)| k == "x-api-key" && v == key));
    let file = path.strip_prefix("/api/files/").and_then(|name| inner.files.get(name).cloned());
    let failure = inner.failures.iter().position(|(p, _, _)| *p == path).and_then(|i| inner.failures.remove(i));
    let (status, response, raw) = if !key_ok {
        let (s, b) = error(401, "Unauthorized");
        (s, b, None)
    } else if let Some((_, status, body)) = failure {
        (status, body, None)
    } else if let (Some((content_type, bytes)), "GET") = (file, method.as_str()) {
        (200, Value::Null, Some((content_type, bytes)))
    } else {
        let (s, b) = inner.route(&method, &path, uri.query(), &body);
        (s, b, None)
    };
    inner.exchanges.push(Exchange {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        headers,
        body: body.to_vec(),
        status,
        response: response.clone(),
    });
    let code = StatusCode::from_u16(status).unwrap();
    match raw {
        Some((content_type, bytes)) => (code, [("content-type", content_type)], bytes).into_response(),
        None => (code, [("content-type", "application/json".to_owned())], response.to_string()).into_response(),
    }
}
