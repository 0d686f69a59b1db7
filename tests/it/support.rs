//! Test support: an in-process `ezw-server` on loopback with a manual clock, and helpers.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ezw::http::demo::DemoInfo;
use ezw::http::{RunningServer, ServerOptions};
use ezw::{ManualClock, Timestamp};
use serde_json::Value;

pub(crate) struct TestServer {
    pub(crate) server: Option<RunningServer>,
    pub(crate) demo: DemoInfo,
    pub(crate) clock: ManualClock,
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    pub(crate) dir: tempfile::TempDir,
}

impl TestServer {
    /// A server with the demo workspace and a manual clock.
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, ManualClock::new(Timestamp::from_unix_ms(1_795_000_000_000))).await
    }

    pub(crate) async fn start_in(dir: tempfile::TempDir, clock: ManualClock) -> Self {
        Self::start_with(dir, clock, |o| o).await
    }

    /// A server on `dir` and `clock` with options adjusted by `adjust`. Webhooks may target
    /// loopback (the tests' receivers) unless `adjust` says otherwise.
    pub(crate) async fn start_with(
        dir: tempfile::TempDir,
        clock: ManualClock,
        adjust: impl FnOnce(ServerOptions) -> ServerOptions,
    ) -> Self {
        let options = ServerOptions::new("127.0.0.1:0".parse().unwrap(), dir.path())
            .demo(true)
            .clock(Arc::new(clock.clone()))
            .shutdown_grace(Duration::from_secs(5))
            .allow_private_webhook_targets(true);
        let options = adjust(options);
        let server = ezw::http::start(options).await.expect("server starts");
        let demo = server.demo.clone().unwrap();
        let base = format!("http://{}", server.addr);
        Self { server: Some(server), demo, clock, http: reqwest::Client::new(), base, dir }
    }

    pub(crate) fn server(&self) -> &RunningServer {
        self.server.as_ref().unwrap()
    }

    /// Stops the server and returns its data directory and clock for a restart.
    pub(crate) async fn stop(mut self) -> (tempfile::TempDir, ManualClock) {
        self.server.take().unwrap().shutdown().await;
        (self.dir, self.clock)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in as the demo owner; returns the ID token.
    pub(crate) async fn login(&self) -> String {
        self.login_as(&self.demo.email, &self.demo.password).await
    }

    /// Logs in with email and password; returns the ID token.
    pub(crate) async fn login_as(&self, email: &str, password: &str) -> String {
        let res = self
            .http
            .post(self.url("/api/auth/login"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: Value = res.json().await.unwrap();
        body["idToken"].as_str().unwrap().to_owned()
    }

    /// POSTs JSON with a line token and an optional idempotency key.
    pub(crate) async fn send_text(&self, token: &str, key: Option<&str>, body: Value) -> (u16, Value) {
        let mut req = self.http.post(self.url("/api/v1/messages/text")).bearer_auth(token).json(&body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        let res = self.http.get(self.url(path)).bearer_auth(token).send().await.unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// The messages of a conversation (workspace token).
    pub(crate) async fn messages(&self, id_token: &str, conversation: &str) -> Vec<Value> {
        let (status, body) =
            self.get_json(&format!("/api/conversations/{conversation}/messages?limit=200"), id_token).await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().unwrap().clone()
    }
}

/// Polls `check` until it returns `Some`, advancing the manual clock by `step` between polls
/// (background workers run on real tasks; this waits for them, it does not time them: it gives up
/// only after 30 s of real time, so a loaded machine slows a test down rather than failing it).
pub(crate) async fn eventually<T, F, Fut>(clock: &ManualClock, step: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Some(v) = check().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        clock.advance(step);
    }
    panic!("condition not reached");
}

/// Creates an organization whose owner has `email` (password `owner-password`, 2 line slots);
/// returns it with the owner's principal.
pub(crate) async fn new_org(ezw: &ezw::Ezw, name: &str, email: &str) -> (ezw::model::Organization, ezw::Principal) {
    let (org, owner) = ezw
        .orgs()
        .create_organization(ezw::service::NewOrganization {
            name: name.into(),
            slug: None,
            owner_email: email.into(),
            owner_name: "Owner".into(),
            owner_password: ezw::Secret::new("owner-password"),
            billing_state: ezw::model::BillingState::Active,
            line_slots: 2,
        })
        .await
        .unwrap();
    let principal = ezw.auth().member_principal(&org.id, &owner.id).await.unwrap();
    (org, principal)
}

/// Creates a simulator line with `config` for the principal's organization.
pub(crate) async fn new_sim_line(
    ezw: &ezw::Ezw,
    principal: &ezw::Principal,
    phone: &str,
    config: Value,
) -> ezw::model::Line {
    ezw.lines()
        .create_line(
            principal,
            ezw::service::NewLine {
                display_name: "Line".into(),
                phone_number: phone.into(),
                provider_kind: ezw::model::ProviderKind::Simulator,
                provider_config: config,
                pacing: None,
            },
        )
        .await
        .unwrap()
}
