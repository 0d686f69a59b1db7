//! A vendor mock for end-to-end tests: answers by method and path, records every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: HashMap<String, String>,
    pub(crate) body: Vec<u8>,
}

impl Seen {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub(crate) fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body).into_owned().collect()
    }
}

type Routes = HashMap<(String, String), (u16, String, Vec<u8>)>;

#[derive(Default)]
struct Inner {
    routes: Routes,
    seen: Vec<Seen>,
}

pub(crate) struct VendorMock {
    pub(crate) url: String,
    inner: Arc<Mutex<Inner>>,
}

impl VendorMock {
    pub(crate) async fn start() -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().fallback(answer).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner }
    }

    /// Answers `method path` with `status` and a body of `content_type`.
    pub(crate) fn route(&self, method: &str, path: &str, status: u16, content_type: &str, body: impl Into<Vec<u8>>) {
        self.inner
            .lock()
            .unwrap()
            .routes
            .insert((method.to_owned(), path.to_owned()), (status, content_type.to_owned(), body.into()));
    }

    pub(crate) fn json(&self, method: &str, path: &str, status: u16, body: serde_json::Value) {
        self.route(method, path, status, "application/json", body.to_string());
    }

    /// Requests seen for `path`.
    pub(crate) fn seen(&self, path: &str) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.iter().filter(|s| s.path == path).cloned().collect()
    }
}

async fn answer(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = inner.lock().unwrap();
    inner.seen.push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned())).collect(),
        body: body.to_vec(),
    });
    match inner.routes.get(&(method.to_string(), uri.path().to_owned())) {
        Some((status, ct, body)) => {
            (StatusCode::from_u16(*status).unwrap(), [("content-type", ct.clone())], body.clone()).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no route in mock").into_response(),
    }
}
