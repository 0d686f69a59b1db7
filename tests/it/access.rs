//! Access control end to end: refresh-token rotation and reuse, logout, login and signup
//! throttling, signup and multi-organization login, invitations, roles and disabling, billing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ezw::model::BillingState;
use ezw::ports::{InvitationMail, Mailer};
use ezw::{ManualClock, Timestamp};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{new_org, TestServer};

/// An HTTP answer: status, `Retry-After` header, JSON body.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn call(t: &TestServer, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
    let mut req = t.http.request(method, t.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let retry_after = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    Answer { status, retry_after, body: res.json().await.unwrap_or(Value::Null) }
}

async fn post(t: &TestServer, path: &str, token: Option<&str>, body: Value) -> Answer {
    call(t, Method::POST, path, token, Some(body)).await
}

fn code(a: &Answer) -> (u16, &str) {
    (a.status, a.body["error"]["code"].as_str().unwrap_or(""))
}

async fn login(t: &TestServer, email: &str, password: &str) -> Answer {
    post(t, "/api/auth/login", None, json!({ "email": email, "password": password })).await
}

async fn refresh(t: &TestServer, refresh_token: &str) -> Answer {
    post(t, "/api/auth/refresh", None, json!({ "refreshToken": refresh_token })).await
}

/// Status of `GET /api/auth/session` with `id_token`.
async fn session_status(t: &TestServer, id_token: &str) -> u16 {
    t.get_json("/api/auth/session", id_token).await.0
}

/// The audit entries of the demo organization for an action (or family), newest first.
async fn audit(t: &TestServer, owner_token: &str, event_type: &str) -> Vec<Value> {
    let (s, body) = t.get_json(&format!("/api/audit-logs?eventType={event_type}&limit=200"), owner_token).await;
    assert_eq!(s, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// A mailer that keeps every invitation it is handed.
#[derive(Clone, Default)]
struct CapturingMailer(Arc<Mutex<Vec<InvitationMail>>>);

#[async_trait::async_trait]
impl Mailer for CapturingMailer {
    async fn send_invitation(&self, mail: &InvitationMail) -> ezw::Result<()> {
        self.0.lock().unwrap().push(mail.clone());
        Ok(())
    }
}

async fn start_with_mailer() -> (TestServer, CapturingMailer) {
    let mailer = CapturingMailer::default();
    let clock = ManualClock::new(Timestamp::from_unix_ms(1_795_000_000_000));
    let m = mailer.clone();
    let t = TestServer::start_with(tempfile::tempdir().unwrap(), clock, move |o| o.mailer(Arc::new(m))).await;
    (t, mailer)
}

/// Invites `email` with `role` as `inviter`; returns the invitation answer's body.
async fn invite(t: &TestServer, inviter: &str, email: &str, role: &str) -> Answer {
    post(t, "/api/memberships", Some(inviter), json!({ "email": email, "role": role })).await
}

/// Invites a new person and accepts for them; returns their user id and ID token.
async fn add_member(t: &TestServer, owner: &str, email: &str, role: &str) -> (String, String) {
    let inv = invite(t, owner, email, role).await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let token = inv.body["invitationToken"].as_str().unwrap();
    let accepted =
        post(t, "/api/auth/accept-invitation", None, json!({ "token": token, "password": "member-password" })).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    (accepted.body["user"]["id"].as_str().unwrap().to_owned(), accepted.body["idToken"].as_str().unwrap().to_owned())
}

async fn patch_member(t: &TestServer, token: &str, user: &str, body: Value) -> Answer {
    call(t, Method::PATCH, &format!("/api/memberships/{user}"), Some(token), Some(body)).await
}

async fn delete_member(t: &TestServer, token: &str, user: &str) -> Answer {
    call(t, Method::DELETE, &format!("/api/memberships/{user}"), Some(token), None).await
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_session() {
    let t = TestServer::start().await;
    let first = login(&t, &t.demo.email, &t.demo.password).await;
    assert_eq!(first.status, 200);
    let rt1 = first.body["refreshToken"].as_str().unwrap().to_owned();
    assert!(rt1.starts_with("ezw_rt_"));

    let second = refresh(&t, &rt1).await;
    assert_eq!(second.status, 200, "{}", second.body);
    for field in ["idToken", "refreshToken", "expiresIn", "user", "organization", "role"] {
        assert!(!second.body[field].is_null(), "refresh answers like login: {field} missing");
    }
    assert_eq!(second.body["role"], "owner");
    assert_eq!(second.body["organization"]["id"], t.demo.organization_id.as_str());
    let rt2 = second.body["refreshToken"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt2, "each refresh hands out a new refresh token");
    let id2 = second.body["idToken"].as_str().unwrap().to_owned();
    assert_eq!(session_status(&t, &id2).await, 200);

    let third = refresh(&t, &rt2).await;
    assert_eq!(third.status, 200);
    let rt3 = third.body["refreshToken"].as_str().unwrap().to_owned();
    let id3 = third.body["idToken"].as_str().unwrap().to_owned();

    // rt1 was rotated away: presenting it again means it leaked; the whole chain ends.
    assert_eq!(code(&refresh(&t, &rt1).await), (401, "refresh_token_reused"));
    assert_eq!(code(&refresh(&t, &rt3).await), (401, "session_revoked"), "the current token died with the chain");
    assert_eq!(session_status(&t, &id3).await, 401, "ID tokens of the chain stop working at once");
    assert_eq!(session_status(&t, first.body["idToken"].as_str().unwrap()).await, 401);

    // A new login is a new, independent chain.
    let again = login(&t, &t.demo.email, &t.demo.password).await;
    assert_eq!(refresh(&t, again.body["refreshToken"].as_str().unwrap()).await.status, 200);

    assert_eq!(code(&refresh(&t, "ezw_rt_unknown").await), (401, "invalid_refresh_token"));
    assert_eq!(code(&refresh(&t, "not-a-refresh-token").await), (401, "invalid_refresh_token"));
    assert_eq!(code(&post(&t, "/api/auth/refresh", None, json!({})).await), (400, "invalid_request"));
}

#[tokio::test]
async fn refresh_tokens_expire_with_their_session() {
    let t = TestServer::start().await;
    let first = login(&t, &t.demo.email, &t.demo.password).await;
    let rt = first.body["refreshToken"].as_str().unwrap();
    t.clock.advance(Duration::from_secs(29 * 86_400));
    let renewed = refresh(&t, rt).await;
    assert_eq!(renewed.status, 200, "still within 30 days");
    t.clock.advance(Duration::from_secs(86_400));
    let rt2 = renewed.body["refreshToken"].as_str().unwrap();
    assert_eq!(code(&refresh(&t, rt2).await), (401, "session_expired"), "rotation does not extend the session");
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_succeed_once() {
    let t = TestServer::start().await;
    let first = login(&t, &t.demo.email, &t.demo.password).await;
    let rt = first.body["refreshToken"].as_str().unwrap().to_owned();
    let answers = refresh_concurrently(&t, &rt, 8).await;
    let ok = answers.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "exactly one of the concurrent refreshes rotates: {answers:?}");
    assert!(answers.iter().all(|(s, c)| *s == 200 || (*s == 401 && c == "refresh_token_reused")), "{answers:?}");
}

/// Sends `n` refreshes with one token at once.
async fn refresh_concurrently(t: &TestServer, rt: &str, n: usize) -> Vec<(u16, String)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (http, url, rt) = (t.http.clone(), t.url("/api/auth/refresh"), rt.to_owned());
            tokio::spawn(async move {
                let res = http.post(url).json(&json!({ "refreshToken": rt })).send().await.unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap();
                (status, body["error"]["code"].as_str().unwrap_or("").to_owned())
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test]
async fn logout_ends_the_session_at_once() {
    let t = TestServer::start().await;
    let first = login(&t, &t.demo.email, &t.demo.password).await;
    let id = first.body["idToken"].as_str().unwrap();
    let other = t.login().await;
    assert_eq!(session_status(&t, id).await, 200);

    let res = t.http.post(t.url("/api/auth/logout")).bearer_auth(id).send().await.unwrap();
    assert_eq!(res.status(), 204);
    assert_eq!(session_status(&t, id).await, 401, "the ID token stops working at once");
    assert_eq!(code(&refresh(&t, first.body["refreshToken"].as_str().unwrap()).await), (401, "session_revoked"));
    assert_eq!(session_status(&t, &other).await, 200, "other sessions of the user are not affected");
    let res = t.http.post(t.url("/api/auth/logout")).send().await.unwrap();
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn failed_logins_are_throttled_per_account_until_the_window_passes() {
    let t = TestServer::start().await;
    let email = t.demo.email.clone();
    // A success starts the account's count over: 4 failures, a success, 4 failures, a success.
    for _ in 0..2 {
        for _ in 0..4 {
            assert_eq!(code(&login(&t, &email, "wrong-password").await), (401, "invalid_credentials"));
        }
        assert_eq!(login(&t, &email, &t.demo.password).await.status, 200);
    }
    for _ in 0..5 {
        assert_eq!(login(&t, &email, "wrong-password").await.status, 401);
    }
    // The sixth attempt is refused without looking at the password, even the right one.
    let refused = login(&t, &format!("  {}  ", email.to_uppercase()), &t.demo.password).await;
    assert_eq!(code(&refused), (429, "too_many_login_attempts"), "the email is normalised");
    assert_eq!(refused.retry_after.as_deref(), Some("900"));
    assert_eq!(refused.body["error"]["retryAfterSeconds"], 900);

    t.clock.advance(Duration::from_secs(600));
    let later = login(&t, &email, &t.demo.password).await;
    assert_eq!(code(&later), (429, "too_many_login_attempts"));
    assert_eq!(later.body["error"]["retryAfterSeconds"], 300);
    t.clock.advance(Duration::from_secs(300));
    assert_eq!(login(&t, &email, &t.demo.password).await.status, 200, "unlocked once the failures left the window");
}

#[tokio::test]
async fn failed_logins_are_throttled_per_client_address() {
    let t = TestServer::start().await;
    // 20 failures spread over accounts (4 each, under the account limit) from one address.
    for i in 0..20 {
        let a = login(&t, &format!("nobody{}@example.com", i / 4), "wrong-password").await;
        assert_eq!(a.status, 401);
    }
    let refused = login(&t, &t.demo.email, &t.demo.password).await;
    assert_eq!(code(&refused), (429, "too_many_login_attempts"), "the address limit holds for every account");
    assert!(refused.retry_after.is_some());
    t.clock.advance(Duration::from_secs(15 * 60));
    assert_eq!(login(&t, &t.demo.email, &t.demo.password).await.status, 200);
}

fn signup_body(org: &str, email: &str, password: &str, line_slots: Option<u32>) -> Value {
    let mut body = json!({ "organizationName": org, "ownerName": "Sam Owner", "email": email, "password": password });
    if let Some(n) = line_slots {
        body["lineSlots"] = json!(n);
    }
    body
}

#[tokio::test]
async fn signup_creates_a_pending_workspace_and_a_second_one_for_the_same_account() {
    let t = TestServer::start().await;
    let first =
        post(&t, "/api/signup/organization", None, signup_body("Acme", "sam@acme.example", "sam-password", Some(3)))
            .await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.body["role"], "owner");
    assert_eq!(first.body["organization"]["billingState"], "pending");
    assert_eq!(first.body["organization"]["lineSlots"], 3);
    assert_eq!(first.body["organization"]["plan"], "standard");
    assert_eq!(first.body["user"]["email"], "sam@acme.example");
    let acme = first.body["organization"]["id"].as_str().unwrap().to_owned();
    let token = first.body["idToken"].as_str().unwrap();
    let (s, status) = t.get_json("/api/billing/status", token).await;
    assert_eq!(
        (s, status["state"].as_str(), status["lineSlots"]["allocated"].as_u64()),
        (200, Some("pending"), Some(3))
    );
    assert_eq!(refresh(&t, first.body["refreshToken"].as_str().unwrap()).await.status, 200);

    let single = login(&t, "sam@acme.example", "sam-password").await;
    assert_eq!((single.status, single.body["organization"]["id"].as_str()), (200, Some(acme.as_str())));

    let taken =
        post(&t, "/api/signup/organization", None, signup_body("Evil", "sam@acme.example", "other-pass", None)).await;
    assert_eq!(code(&taken), (409, "email_taken"));
    let second =
        post(&t, "/api/signup/organization", None, signup_body("Acme EU", "SAM@acme.example", "sam-password", None))
            .await;
    assert_eq!(second.status, 201, "same account, same password: a second organization");
    assert_eq!(second.body["organization"]["lineSlots"], 1, "one line slot by default");
    let eu = second.body["organization"]["id"].as_str().unwrap().to_owned();
    assert_eq!(second.body["user"]["id"], first.body["user"]["id"]);

    let ambiguous = login(&t, "sam@acme.example", "sam-password").await;
    assert_eq!(code(&ambiguous), (400, "organization_required"));
    let ids = ambiguous.body["error"]["organizationIds"].as_array().unwrap().clone();
    assert_eq!(ids, [json!(acme), json!(eu)]);
    let chosen = post(
        &t,
        "/api/auth/login",
        None,
        json!({ "email": "sam@acme.example", "password": "sam-password", "organizationId": eu }),
    )
    .await;
    assert_eq!((chosen.status, chosen.body["organization"]["id"].as_str()), (200, Some(eu.as_str())));

    for (slots, what) in [(0, "zero"), (51, "over 50")] {
        let bad =
            post(&t, "/api/signup/organization", None, signup_body("X", "x@x.example", "x-password", Some(slots)))
                .await;
        assert_eq!(code(&bad), (400, "invalid_line_slots"), "{what} line slots");
    }
    let weak = post(&t, "/api/signup/organization", None, signup_body("X", "x@x.example", "short", None)).await;
    assert_eq!(code(&weak), (400, "weak_password"));
    let bad_email =
        post(&t, "/api/signup/organization", None, signup_body("X", "not-an-email", "x-password", None)).await;
    assert_eq!(code(&bad_email), (400, "invalid_email"));
}

#[tokio::test]
async fn signups_are_throttled_per_client_address() {
    let t = TestServer::start().await;
    // Every signup counts, also refused ones (here: cheap, refused for their line slots).
    for _ in 0..10 {
        let a =
            post(&t, "/api/signup/organization", None, signup_body("X", "x@x.example", "x-password", Some(0))).await;
        assert_eq!(code(&a), (400, "invalid_line_slots"));
    }
    let refused = post(&t, "/api/signup/organization", None, signup_body("Y", "y@y.example", "y-password", None)).await;
    assert_eq!(code(&refused), (429, "too_many_signups"));
    assert_eq!(refused.retry_after.as_deref(), Some("3600"));
    assert_eq!(refused.body["error"]["retryAfterSeconds"], 3600);
    t.clock.advance(Duration::from_secs(3600));
    let ok = post(&t, "/api/signup/organization", None, signup_body("Y", "y@y.example", "y-password", None)).await;
    assert_eq!(ok.status, 201);
}

#[tokio::test]
async fn invitations_are_mailed_accepted_once_and_audited() {
    let (t, mailer) = start_with_mailer().await;
    let owner = t.login().await;

    let inv =
        post(&t, "/api/memberships", Some(&owner), json!({ "email": " Op@Example.com ", "role": "operator" })).await;
    assert_eq!(inv.status, 201, "{}", inv.body);
    let member = &inv.body["member"];
    assert_eq!((member["email"].as_str(), member["role"].as_str()), (Some("op@example.com"), Some("operator")));
    assert_eq!((member["status"].as_str(), member["displayName"].as_str()), (Some("invited"), Some("op")));
    let token = inv.body["invitationToken"].as_str().unwrap().to_owned();
    assert!(token.starts_with("ezw_inv_"));
    assert!(inv.body["invitationExpiresAt"].as_str().is_some());
    {
        let mails = mailer.0.lock().unwrap();
        assert_eq!(mails.len(), 1, "the mailer got the invitation");
        assert_eq!(mails[0].token.expose(), token, "the mailer got the same token as the response");
        assert_eq!((mails[0].email.as_str(), mails[0].role.as_str()), ("op@example.com", "operator"));
        assert_eq!(mails[0].organization.id.as_str(), t.demo.organization_id);
    }
    let user_id = member["userId"].as_str().unwrap().to_owned();
    let (s, invited) = t.get_json("/api/memberships?status=invited", &owner).await;
    assert_eq!((s, invited["members"].as_array().unwrap().len()), (200, 1));
    assert_eq!(code(&login(&t, "op@example.com", "anything-at-all").await), (401, "invalid_credentials"));

    let accept = |body: Value| post(&t, "/api/auth/accept-invitation", None, body);
    assert_eq!(code(&accept(json!({ "token": token })).await), (400, "weak_password"), "a new user must set one");
    assert_eq!(code(&accept(json!({ "token": token, "password": "short" })).await), (400, "weak_password"));
    let accepted = accept(json!({ "token": token, "password": "operator-pass", "displayName": "Olive Op" })).await;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    assert_eq!(
        (accepted.body["role"].as_str(), accepted.body["user"]["displayName"].as_str()),
        (Some("operator"), Some("Olive Op"))
    );
    assert_eq!(session_status(&t, accepted.body["idToken"].as_str().unwrap()).await, 200);
    assert_eq!(
        code(&accept(json!({ "token": token, "password": "operator-pass" })).await),
        (400, "invalid_invitation")
    );
    assert_eq!(code(&accept(json!({ "token": "ezw_inv_forged" })).await), (400, "invalid_invitation"));

    let op = login(&t, "op@example.com", "operator-pass").await;
    assert_eq!((op.status, op.body["role"].as_str()), (200, Some("operator")));
    let (_, active) = t.get_json("/api/memberships?status=active", op.body["idToken"].as_str().unwrap()).await;
    assert_eq!(active["members"].as_array().unwrap().len(), 2, "any member may list members");
    assert_eq!(code(&invite(&t, &owner, "op@example.com", "admin").await), (409, "already_member"));

    let invited_entry = &audit(&t, &owner, "membership.invited").await[0];
    assert_eq!(invited_entry["targetId"], user_id.as_str());
    assert_eq!(invited_entry["after"], json!({ "role": "operator", "status": "invited" }));
    assert!(!invited_entry.to_string().contains(&token), "the audit trail never holds the token");
    let accepted_entry = &audit(&t, &owner, "membership.invitation_accepted").await[0];
    assert_eq!(accepted_entry["actor"], json!({ "kind": "user", "id": user_id }));
    assert_eq!(accepted_entry["before"], json!({ "role": "operator", "status": "invited" }));
    assert_eq!(accepted_entry["after"], json!({ "role": "operator", "status": "active" }));
}

#[tokio::test]
async fn invitation_tokens_are_replaced_expire_and_never_open_an_existing_account() {
    let (t, _mailer) = start_with_mailer().await;
    let owner = t.login().await;
    let accept = |body: Value| post(&t, "/api/auth/accept-invitation", None, body);

    let old = invite(&t, &owner, "late@example.com", "operator").await.body["invitationToken"].clone();
    let new = invite(&t, &owner, "late@example.com", "admin").await;
    assert_eq!(new.body["member"]["role"], "admin", "a new invitation replaces the old one and its role");
    assert_eq!(code(&accept(json!({ "token": old, "password": "late-password" })).await), (400, "invalid_invitation"));
    t.clock.advance(Duration::from_secs(7 * 86_400));
    let owner = t.login().await;
    let expired = accept(json!({ "token": new.body["invitationToken"], "password": "late-password" })).await;
    assert_eq!(code(&expired), (400, "invalid_invitation"), "invitations expire after 7 days");

    // Someone who already has an account (here: an owner elsewhere) confirms with their password.
    let ezw = &t.server().ezw;
    new_org(ezw, "Elsewhere", "boss@elsewhere.example").await;
    let inv = invite(&t, &owner, "boss@elsewhere.example", "operator").await;
    assert_eq!(inv.status, 201);
    let token = inv.body["invitationToken"].clone();
    assert_eq!(code(&accept(json!({ "token": token })).await), (401, "invalid_credentials"));
    let wrong = accept(json!({ "token": token, "password": "not-the-password" })).await;
    assert_eq!(code(&wrong), (401, "invalid_credentials"), "the token alone never opens an existing account");
    let ok = accept(json!({ "token": token, "password": "owner-password" })).await;
    assert_eq!((ok.status, ok.body["organization"]["id"].as_str()), (200, Some(t.demo.organization_id.as_str())));
    let both = login(&t, "boss@elsewhere.example", "owner-password").await;
    assert_eq!(code(&both), (400, "organization_required"), "the account keeps its password and has two organizations");
}

#[tokio::test]
async fn only_owners_manage_owners_and_the_last_owner_stays() {
    let (t, _mailer) = start_with_mailer().await;
    let owner = t.login().await;
    let owner_id = t.get_json("/api/auth/session", &owner).await.1["user"]["id"].as_str().unwrap().to_owned();
    let (admin_id, admin) = add_member(&t, &owner, "admin@example.com", "admin").await;
    let (op_id, operator) = add_member(&t, &owner, "op@example.com", "operator").await;

    assert_eq!(code(&invite(&t, &admin, "new.owner@example.com", "owner").await), (403, "owner_role_required"));
    assert_eq!(code(&patch_member(&t, &admin, &op_id, json!({ "role": "owner" })).await), (403, "owner_role_required"));
    assert_eq!(
        code(&patch_member(&t, &admin, &owner_id, json!({ "role": "admin" })).await),
        (403, "owner_role_required")
    );
    assert_eq!(code(&delete_member(&t, &admin, &owner_id).await), (403, "owner_role_required"));
    assert_eq!(code(&patch_member(&t, &operator, &admin_id, json!({ "role": "operator" })).await), (403, "forbidden"));
    assert_eq!(code(&delete_member(&t, &operator, &admin_id).await), (403, "forbidden"));
    assert_eq!(code(&invite(&t, &operator, "x@example.com", "operator").await), (403, "forbidden"));
    let by_admin = patch_member(&t, &admin, &op_id, json!({ "role": "admin" })).await;
    assert_eq!((by_admin.status, by_admin.body["role"].as_str()), (200, Some("admin")), "admins manage non-owners");

    assert_eq!(code(&patch_member(&t, &owner, &owner_id, json!({ "role": "admin" })).await), (409, "last_owner"));
    assert_eq!(code(&delete_member(&t, &owner, &owner_id).await), (409, "last_owner"));
    assert_eq!(code(&patch_member(&t, &owner, &owner_id, json!({ "status": "disabled" })).await), (409, "last_owner"));

    let promoted = patch_member(&t, &owner, &admin_id, json!({ "role": "owner" })).await;
    assert_eq!((promoted.status, promoted.body["role"].as_str()), (200, Some("owner")));
    let stepped_down = patch_member(&t, &owner, &owner_id, json!({ "role": "admin" })).await;
    assert_eq!(
        (stepped_down.status, stepped_down.body["role"].as_str()),
        (200, Some("admin")),
        "another owner remains"
    );
    assert_eq!(session_status(&t, &owner).await, 200, "a role change keeps the session; the role is read fresh");
    let (_, session) = t.get_json("/api/auth/session", &owner).await;
    assert_eq!(session["role"], "admin");

    let changes = audit(&t, &admin, "membership.role_changed").await;
    assert_eq!(changes.len(), 3, "one entry per applied change, none for refused ones");
    let stepped = changes.iter().find(|e| e["targetId"] == owner_id.as_str()).expect("the owner's step down");
    assert_eq!(stepped["actor"], json!({ "kind": "user", "id": owner_id }));
    assert_eq!(stepped["targetKind"], "membership");
    assert_eq!(stepped["before"], json!({ "role": "owner", "status": "active" }));
    assert_eq!(stepped["after"], json!({ "role": "admin", "status": "active" }));

    assert_eq!(code(&patch_member(&t, &admin, &op_id, json!({})).await), (400, "empty_change"));
    assert_eq!(code(&patch_member(&t, &admin, &op_id, json!({ "role": "boss" })).await), (400, "invalid_role"));
    assert_eq!(code(&patch_member(&t, &admin, &op_id, json!({ "status": "invited" })).await), (400, "invalid_status"));
    let (s, _) = t.get_json("/api/memberships?status=gone", &admin).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn disabling_a_member_ends_their_tokens_at_once_and_is_audited() {
    let (t, _mailer) = start_with_mailer().await;
    let owner = t.login().await;
    let (op_id, op_token) = add_member(&t, &owner, "op@example.com", "operator").await;
    let op_login = login(&t, "op@example.com", "member-password").await;
    assert_eq!(session_status(&t, &op_token).await, 200);
    let mut hints = t.server().ezw.live().subscribe();

    // Audit entries are ordered by time: let the clock move between the changes.
    t.clock.advance(Duration::from_secs(1));
    let disabled = delete_member(&t, &owner, &op_id).await;
    assert_eq!((disabled.status, disabled.body["status"].as_str()), (200, Some("disabled")));
    assert_eq!(session_status(&t, &op_token).await, 401, "existing ID tokens fail at once");
    let again = refresh(&t, op_login.body["refreshToken"].as_str().unwrap()).await;
    assert_eq!(code(&again), (401, "session_revoked"), "the member's sessions were revoked in the same write");
    assert_eq!(login(&t, "op@example.com", "member-password").await.status, 403, "no active organization left");
    let hint = hints.recv().await.unwrap();
    assert_eq!(
        (hint.hint.kind, hint.hint.user_id.as_ref().map(|u| u.as_str())),
        ("access.changed", Some(op_id.as_str()))
    );

    let twice = delete_member(&t, &owner, &op_id).await;
    assert_eq!((twice.status, twice.body["status"].as_str()), (200, Some("disabled")), "disabling is idempotent");
    t.clock.advance(Duration::from_secs(1));
    let owner = t.login().await;
    let enabled = patch_member(&t, &owner, &op_id, json!({ "status": "active" })).await;
    assert_eq!((enabled.status, enabled.body["status"].as_str()), (200, Some("active")));
    assert_eq!(login(&t, "op@example.com", "member-password").await.status, 200);

    let entries = audit(&t, &owner, "membership.").await;
    let actions: Vec<_> = entries.iter().take(2).map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["membership.enabled", "membership.disabled"], "one entry per change, none for the repeat");
    assert_eq!(entries[1]["before"], json!({ "role": "operator", "status": "active" }));
    assert_eq!(entries[1]["after"], json!({ "role": "operator", "status": "disabled" }));
    assert_eq!(entries[0]["before"], json!({ "role": "operator", "status": "disabled" }));
}

#[tokio::test]
async fn another_organizations_member_is_not_found_and_line_tokens_cannot_manage() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let ezw = &t.server().ezw;
    let (_, other) = new_org(ezw, "Other Co", "boss@other.example").await;
    let other_user = other.user_id().unwrap().to_string();
    for path_user in [other_user.as_str(), "usr_01ZZZZZZZZZZZZZZZZZZZZZZZZ", "not-an-id"] {
        assert_eq!(code(&delete_member(&t, &owner, path_user).await), (404, "not_found"), "{path_user}");
        let patched = patch_member(&t, &owner, path_user, json!({ "role": "admin" })).await;
        assert_eq!(code(&patched), (404, "not_found"), "{path_user}");
    }
    let (_, members) = t.get_json("/api/memberships", &owner).await;
    let emails: Vec<_> = members["members"].as_array().unwrap().iter().map(|m| m["email"].clone()).collect();
    assert_eq!(emails, [json!(t.demo.email)], "only the caller's organization is listed");

    let (s, e) = t.get_json("/api/memberships", &t.demo.line_token).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("wrong_token_type")));
    let line = ezw.auth().authenticate_line_token(&t.demo.line_token).await.unwrap();
    let err = ezw.members().list(&line, None).await.unwrap_err();
    assert_eq!(err.kind(), ezw::ErrorKind::Forbidden, "line tokens are refused by the service too");
    let err = ezw.members().disable(&line, other.user_id().unwrap()).await.unwrap_err();
    assert_eq!(err.kind(), ezw::ErrorKind::Forbidden);
}

async fn checkout(t: &TestServer, token: &str) -> Answer {
    post(t, "/api/billing/recovery/checkout", Some(token), json!({})).await
}

#[tokio::test]
async fn billing_status_recovery_checkout_and_settlement() {
    let (t, _mailer) = start_with_mailer().await;
    let owner = t.login().await;
    let (_, admin) = add_member(&t, &owner, "admin@example.com", "admin").await;
    invite(&t, &owner, "pending@example.com", "operator").await;

    let (s, status) = t.get_json("/api/billing/status", &admin).await;
    assert_eq!(s, 200, "any member reads billing status");
    assert_eq!(
        status,
        json!({
            "state": "active",
            "plan": "standard",
            "policy": { "canSend": true, "canAddLines": true },
            "lineSlots": { "allocated": 10, "used": 1, "available": 9 },
            "seats": { "active": 2, "invited": 1 },
            "checkout": null
        })
    );
    assert_eq!(code(&checkout(&t, &owner).await), (409, "billing_not_restricted"));
    assert_eq!(code(&checkout(&t, &admin).await), (403, "owner_role_required"));

    let ezw = &t.server().ezw;
    let org_id = ezw::OrganizationId::parse(&t.demo.organization_id).unwrap();
    t.clock.advance(Duration::from_secs(1));
    let org = ezw.billing().set_state(&org_id, BillingState::Restricted).await.unwrap();
    assert_eq!(org.billing_state, BillingState::Restricted);
    let (_, status) = t.get_json("/api/billing/status", &owner).await;
    assert_eq!(
        (status["state"].as_str(), &status["policy"]),
        (Some("restricted"), &json!({ "canSend": false, "canAddLines": false }))
    );

    t.clock.advance(Duration::from_secs(1));
    let created = checkout(&t, &owner).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chk_"));
    assert_eq!((created.body["status"].as_str(), &created.body["url"]), (Some("awaiting_operator"), &Value::Null));
    assert!(created.body["instructions"].as_str().unwrap().contains(&id), "the instructions name the checkout");
    let (_, status) = t.get_json("/api/billing/status", &admin).await;
    assert_eq!(status["checkout"], created.body, "the open checkout is shown to members");

    t.clock.advance(Duration::from_secs(1));
    let (settled, org) = ezw.billing().settle_checkout(&id).await.unwrap();
    assert_eq!((settled.status.as_str(), org.billing_state), ("settled", BillingState::Active));
    let err = ezw.billing().settle_checkout(&id).await.unwrap_err();
    assert_eq!(err.code(), "checkout_settled");
    assert_eq!(ezw.billing().settle_checkout("chk_unknown").await.unwrap_err().code(), "not_found");
    let (_, status) = t.get_json("/api/billing/status", &owner).await;
    assert_eq!((status["state"].as_str(), &status["checkout"]), (Some("active"), &Value::Null));
    assert_eq!(status["policy"]["canSend"], true);

    let owner = t.login().await;
    let entries = audit(&t, &owner, "billing.").await;
    let actions: Vec<_> = entries.iter().map(|e| e["action"].as_str().unwrap()).collect();
    // The settlement's two entries share one write and one time; their order is not defined.
    let mut settlement = actions[..2].to_vec();
    settlement.sort_unstable();
    assert_eq!(settlement, ["billing.checkout_settled", "billing.state_changed"]);
    assert_eq!(actions[2..], ["billing.checkout_created", "billing.state_changed"]);
    let activated = entries[..2].iter().find(|e| e["action"] == "billing.state_changed").unwrap();
    assert_eq!(activated["actor"], json!({ "kind": "system", "id": null }));
    assert_eq!(activated["before"], json!({ "state": "restricted" }));
    assert_eq!(activated["after"], json!({ "state": "active" }));
    assert_eq!(
        (entries[2]["actor"]["kind"].as_str(), entries[2]["targetId"].as_str()),
        (Some("user"), Some(id.as_str()))
    );
    assert_eq!(entries[3]["actor"]["kind"], "system");
    assert_eq!(entries[3]["after"], json!({ "state": "restricted" }));
}
