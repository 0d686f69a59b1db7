//! The team inbox over HTTP: line permissions, default assignee, archiving, line creation gates,
//! the filtered conversation list, claims and assignments under `expectedVersion` (20 operators
//! at once), contact names and internal notes.

use std::time::Duration;

use ezw::model::{Membership, MembershipStatus, Role, User};
use ezw::ports::PasswordHasher;
use ezw::{LineId, PhoneNumber, UserId};
use serde_json::{json, Value};

use crate::support::{eventually, new_org, TestServer};

const OPERATOR_PASSWORD: &str = "operator-pass";

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

async fn call(t: &TestServer, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = t.http.request(method, t.url(path)).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn post(t: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(t, reqwest::Method::POST, path, token, Some(body)).await
}

async fn put(t: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(t, reqwest::Method::PUT, path, token, Some(body)).await
}

async fn patch(t: &TestServer, path: &str, token: &str, body: Value) -> (u16, Value) {
    call(t, reqwest::Method::PATCH, path, token, Some(body)).await
}

async fn delete(t: &TestServer, path: &str, token: &str) -> u16 {
    call(t, reqwest::Method::DELETE, path, token, None).await.0
}

/// Creates users who are members of the demo organization with `role` and `status` (one
/// password hash for all), returning their ids.
async fn add_members(t: &TestServer, prefix: &str, n: usize, role: Role, status: MembershipStatus) -> Vec<UserId> {
    let ezw = &t.server().ezw;
    let hash = ezw::ports::Argon2Hasher.hash(OPERATOR_PASSWORD).unwrap();
    let now = ezw.clock().now();
    let org = ezw::OrganizationId::from_raw(t.demo.organization_id.clone());
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let user = User {
            id: UserId::generate(now.unix_ms()),
            email: format!("{prefix}{i}@demo.ezw.local"),
            display_name: format!("{prefix} {i}"),
            password_hash: Some(hash.clone()),
            created_at: now,
        };
        ezw.store().insert_user(&user).await.unwrap();
        let membership =
            Membership { organization_id: org.clone(), user_id: user.id.clone(), role, status, created_at: now };
        ezw.store().upsert_membership(&membership).await.unwrap();
        ids.push(user.id);
    }
    ids
}

/// One active operator of the demo organization: (id, ID token).
async fn operator(t: &TestServer, prefix: &str) -> (String, String) {
    let id = add_members(t, prefix, 1, Role::Operator, MembershipStatus::Active).await.remove(0);
    (id.to_string(), t.login_as(&format!("{prefix}0@demo.ezw.local"), OPERATOR_PASSWORD).await)
}

/// A conversation on the demo line, opened by a send to `to`; returns its id.
async fn conversation_to(t: &TestServer, to: &str) -> String {
    let (status, m) = t.send_text(&t.demo.line_token, None, json!({"to": to, "body": "hello"})).await;
    assert_eq!(status, 202, "{m}");
    m["conversationId"].as_str().unwrap().to_owned()
}

async fn conversation(t: &TestServer, token: &str, id: &str) -> Value {
    let (status, conv) = t.get_json(&format!("/api/conversations/{id}"), token).await;
    assert_eq!(status, 200, "{conv}");
    conv
}

/// Customer `from` writes to `line` (the simulator injects it); waits until the message is
/// recorded and returns its conversation (owner's view).
async fn customer_writes(t: &TestServer, owner: &str, line: &str, from: &str, profile: Option<&str>) -> Value {
    let ezw = &t.server().ezw;
    let principal = ezw.auth().authenticate_id_token(owner).await.unwrap();
    let line = ezw.lines().get(&principal, &LineId::parse(line).unwrap()).await.unwrap();
    let provider_id = t.server().sim.inject_inbound(&line, &PhoneNumber::parse(from).unwrap(), profile, "hi there");
    let path = format!("/api/conversations?lineId={}&limit=200", line.id);
    eventually(&t.clock, Duration::from_millis(10), || async {
        let (_, list) = t.get_json(&path, owner).await;
        let conv = list["conversations"].as_array().unwrap().iter().find(|c| c["contactPhone"] == from).cloned()?;
        let messages = t.messages(owner, conv["id"].as_str().unwrap()).await;
        messages.iter().any(|m| m["providerMessageId"] == provider_id.as_str()).then_some(conv)
    })
    .await
}

fn ids(list: &Value) -> Vec<String> {
    list["conversations"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect()
}

async fn list(t: &TestServer, token: &str, query: &str) -> Vec<String> {
    let (status, body) = t.get_json(&format!("/api/conversations?limit=200&{query}"), token).await;
    assert_eq!(status, 200, "{query}: {body}");
    assert!(body["nextCursor"].is_null(), "{query}: one page");
    ids(&body)
}

async fn create_line(t: &TestServer, token: &str, phone: &str, key: Option<&str>) -> (u16, Value) {
    let mut body = json!({"displayName": "Sales", "phoneNumber": phone, "provider": {"kind": "simulator"}});
    if let Some(key) = key {
        body["idempotencyKey"] = key.into();
    }
    post(t, "/api/lines", token, body).await
}

async fn audit_actions(t: &TestServer, token: &str, family: &str) -> Vec<Value> {
    let (status, audit) = t.get_json(&format!("/api/audit-logs?eventType={family}"), token).await;
    assert_eq!(status, 200, "{audit}");
    audit["events"].as_array().unwrap().clone()
}

/// Runs one request per token at once (spawned tasks): `(status, body)` in token order.
async fn all_at_once(t: &TestServer, path: &str, tokens: &[String], body: Value) -> Vec<(u16, Value)> {
    let tasks: Vec<_> = tokens
        .iter()
        .map(|token| {
            let (http, url, token, body) = (t.http.clone(), t.url(path), token.clone(), body.clone());
            tokio::spawn(async move {
                let res = http.post(url).bearer_auth(token).json(&body).send().await.unwrap();
                (res.status().as_u16(), res.json::<Value>().await.unwrap_or(Value::Null))
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_operators_claim_one_conversation_and_exactly_one_wins() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let conv = conversation_to(&t, "+972501230001").await;
    assert_eq!(conversation(&t, &owner, &conv).await["version"], 1);

    let operators = add_members(&t, "claimer", 20, Role::Operator, MembershipStatus::Active).await;
    let mut tokens = Vec::with_capacity(20);
    for i in 0..20 {
        tokens.push(t.login_as(&format!("claimer{i}@demo.ezw.local"), OPERATOR_PASSWORD).await);
    }

    let results =
        all_at_once(&t, &format!("/api/conversations/{conv}/claim"), &tokens, json!({"expectedVersion": 1})).await;
    let winners: Vec<usize> = (0..20).filter(|&i| results[i].0 == 200).collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {results:?}");
    let (claimed, winner_id) = (&results[winners[0]].1, operators[winners[0]].to_string());
    assert_eq!((claimed["version"].as_i64(), claimed["assigneeId"].as_str()), (Some(2), Some(winner_id.as_str())));
    for (status, body) in results.iter().filter(|(s, _)| *s != 200) {
        assert_eq!((*status, code(body)), (409, Some("stale_version")), "{body}");
        assert_eq!(body["error"]["currentVersion"], 2, "the losers learn the winner's version: {body}");
        assert_eq!(body["error"]["assigneeId"], winner_id.as_str(), "and the winner: {body}");
    }
    let now = conversation(&t, &owner, &conv).await;
    assert_eq!((now["version"].as_i64(), now["assigneeId"].as_str()), (Some(2), Some(winner_id.as_str())));
}

#[tokio::test]
async fn claims_and_assignments_check_versions_and_assignees() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let conv = conversation_to(&t, "+972501230002").await;
    let (op_id, op) = operator(&t, "assignee").await;
    let (hidden_id, _) = operator(&t, "hidden").await;
    let disabled = add_members(&t, "disabled", 1, Role::Operator, MembershipStatus::Disabled).await.remove(0);
    let claim = format!("/api/conversations/{conv}/claim");
    let assign = format!("/api/conversations/{conv}/assign");

    for body in
        [json!({}), json!({"expectedVersion": "1"}), json!({"expectedVersion": 0}), json!({"expectedVersion": 1.5})]
    {
        let (s, e) = post(&t, &claim, &owner, body.clone()).await;
        assert_eq!((s, code(&e)), (400, Some("invalid_expected_version")), "{body}: {e}");
    }
    let (s, e) = post(&t, &claim, &owner, json!({"expectedVersion": 1, "extra": true})).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_request")), "{e}");
    let (s, claimed) = post(&t, &claim, &op, json!({"expectedVersion": 1})).await;
    assert_eq!((s, claimed["version"].as_i64(), claimed["assigneeId"].as_str()), (200, Some(2), Some(op_id.as_str())));
    let (s, e) = post(&t, &claim, &owner, json!({"expectedVersion": 1})).await;
    assert_eq!((s, code(&e), e["error"]["currentVersion"].as_i64()), (409, Some("stale_version"), Some(2)), "{e}");

    // The target must be an active member who may view the line.
    let line = &t.demo.line_id;
    let (s, _) = put(
        &t,
        &format!("/api/lines/{line}/permissions/{hidden_id}"),
        &owner,
        json!({"canView": false, "canSend": false}),
    )
    .await;
    assert_eq!(s, 200);
    for (target, status, want) in [
        (json!(hidden_id), 409, "assignee_cannot_view_line"),
        (json!(disabled.to_string()), 409, "assignee_cannot_view_line"),
        (json!(UserId::generate(0).to_string()), 404, "not_found"),
        (json!("bob"), 400, "invalid_user_id"),
    ] {
        let (s, e) = post(&t, &assign, &owner, json!({"targetUserId": target, "expectedVersion": 2})).await;
        assert_eq!((s, code(&e)), (status, Some(want)), "{target}: {e}");
    }
    let (s, e) = post(&t, &assign, &owner, json!({"expectedVersion": 2})).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_request")), "targetUserId is required: {e}");

    // Operators may assign; null unassigns; each change bumps the version.
    let (s, to_owner) = post(&t, &assign, &op, json!({"targetUserId": owner_id(&t).await, "expectedVersion": 2})).await;
    assert_eq!((s, to_owner["version"].as_i64()), (200, Some(3)), "{to_owner}");
    let (s, none) = post(&t, &assign, &owner, json!({"targetUserId": null, "expectedVersion": 3})).await;
    assert_eq!((s, none["version"].as_i64(), &none["assigneeId"]), (200, Some(4), &Value::Null), "{none}");

    // A hidden conversation is a 404 for the operator who cannot view its line.
    let hidden = t.login_as("hidden0@demo.ezw.local", OPERATOR_PASSWORD).await;
    let (s, _) = post(&t, &claim, &hidden, json!({"expectedVersion": 4})).await;
    assert_eq!(s, 404);
    // Line tokens cannot claim (the workspace API refuses them; so does the SDK).
    let (s, _) = post(&t, &claim, &t.demo.line_token, json!({"expectedVersion": 4})).await;
    assert_eq!(s, 401);
    let ezw = &t.server().ezw;
    let line_principal = ezw.auth().authenticate_line_token(&t.demo.line_token).await.unwrap();
    let conv_id = ezw::ConversationId::parse(&conv).unwrap();
    let err = ezw.inbox().claim(&line_principal, &conv_id, Some(4)).await.unwrap_err();
    assert_eq!(err.kind(), ezw::ErrorKind::Forbidden);
    assert_eq!(conversation(&t, &owner, &conv).await["version"], 4, "nothing else changed it");
}

/// The demo owner's user id.
async fn owner_id(t: &TestServer) -> String {
    let store = t.server().ezw.store();
    store.find_user_by_email(ezw::http::demo::DEMO_EMAIL).await.unwrap().unwrap().id.to_string()
}

#[tokio::test]
async fn line_permissions_hide_lines_and_deny_sends() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let (op_id, op) = operator(&t, "perm").await;
    let demo_line = t.demo.line_id.clone();
    let (s, line2) = create_line(&t, &owner, "+15550100077", None).await;
    assert_eq!(s, 201, "{line2}");
    let line2 = line2["id"].as_str().unwrap().to_owned();
    let (s, rotated) = post(&t, &format!("/api/lines/{line2}/api-token"), &owner, json!({})).await;
    assert_eq!(s, 201, "{rotated}");
    let token2 = rotated["token"].as_str().unwrap().to_owned();
    let (s, m) = t.send_text(&token2, None, json!({"to": "+972501230003", "body": "on line 2"})).await;
    assert_eq!(s, 202, "{m}");
    let conv2 = m["conversationId"].as_str().unwrap().to_owned();
    let conv1 = conversation_to(&t, "+972501230004").await;
    let perms = format!("/api/lines/{line2}/permissions");

    let (s, body) = t.get_json(&perms, &owner).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body, json!({"lineId": line2, "default": {"canView": true, "canSend": true}, "permissions": []}));
    assert_eq!(list(&t, &op, "").await.len(), 2, "by default an operator sees every line");

    // Without view: the line and everything on it are 404 for the operator.
    let (s, p) = put(&t, &format!("{perms}/{op_id}"), &owner, json!({"canView": false, "canSend": false})).await;
    assert_eq!(s, 200, "{p}");
    assert_eq!((p["lineId"].as_str(), p["userId"].as_str()), (Some(line2.as_str()), Some(op_id.as_str())));
    assert_eq!((p["canView"].as_bool(), p["canSend"].as_bool()), (Some(false), Some(false)));
    assert!(p["updatedAt"].is_string() && p["updatedBy"].is_string(), "{p}");
    let (_, lines) = t.get_json("/api/lines", &op).await;
    let visible: Vec<&str> = lines["lines"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(visible, [demo_line.as_str()], "GET /api/lines lists only visible lines");
    assert_eq!(list(&t, &op, "").await, vec![conv1.clone()], "the inbox shows only visible lines");
    for path in [
        format!("/api/lines/{line2}"),
        format!("/api/conversations/{conv2}"),
        format!("/api/conversations/{conv2}/messages"),
        format!("/api/conversations/{conv2}/notes"),
        format!("/api/conversations?lineId={line2}"),
    ] {
        let (s, e) = t.get_json(&path, &op).await;
        assert_eq!(s, 404, "{path}: {e}");
    }
    let (s, _) = post(&t, &format!("/api/conversations/{conv2}/notes"), &op, json!({"body": "x"})).await;
    assert_eq!(s, 404);
    let send2 = format!("/api/lines/{line2}/send");
    let sent = t.http.post(t.url(&send2)).bearer_auth(&op).header("Idempotency-Key", "perm-1");
    let res = sent.json(&json!({"to": "+972501230005", "bodyText": "hidden"})).send().await.unwrap();
    assert_eq!(res.status(), 404, "sending from a hidden line");
    assert_eq!(list(&t, &owner, "").await.len(), 2, "owners always see every line");

    // View without send: reads work, sends are 403 line_send_denied.
    let (s, _) = put(&t, &format!("{perms}/{op_id}"), &owner, json!({"canView": true, "canSend": false})).await;
    assert_eq!(s, 200);
    assert_eq!(list(&t, &op, "").await.len(), 2);
    let sent = t.http.post(t.url(&send2)).bearer_auth(&op).header("Idempotency-Key", "perm-2");
    let res = sent.json(&json!({"to": "+972501230005", "bodyText": "denied"})).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let e: Value = res.json().await.unwrap();
    assert_eq!(code(&e), Some("line_send_denied"), "{e}");

    // Bad permissions, managers, unknown users, operators and other organizations.
    let (s, e) = put(&t, &format!("{perms}/{op_id}"), &owner, json!({"canView": false, "canSend": true})).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_permission")), "{e}");
    let (s, e) = put(&t, &format!("{perms}/{op_id}"), &owner, json!({"canView": true})).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_request")), "{e}");
    let owner_id = owner_id(&t).await;
    let (s, e) = put(&t, &format!("{perms}/{owner_id}"), &owner, json!({"canView": false, "canSend": false})).await;
    assert_eq!((s, code(&e)), (409, Some("manager_has_full_access")), "{e}");
    let stranger = UserId::generate(0);
    let (s, _) = put(&t, &format!("{perms}/{stranger}"), &owner, json!({"canView": true, "canSend": true})).await;
    assert_eq!(s, 404);
    let (s, _) = put(&t, &format!("{perms}/not-a-user"), &owner, json!({"canView": true, "canSend": true})).await;
    assert_eq!(s, 404);
    let (s, _) = put(&t, &format!("{perms}/{op_id}"), &op, json!({"canView": true, "canSend": true})).await;
    assert_eq!(s, 403, "operators cannot change permissions");
    let (s, _) = t.get_json(&perms, &op).await;
    assert_eq!(s, 403);
    new_org(&t.server().ezw, "Other", "boss@perm.example").await;
    let boss = t.login_as("boss@perm.example", "owner-password").await;
    let (s, _) = t.get_json(&perms, &boss).await;
    assert_eq!(s, 404, "another organization's line");

    let (s, body) = t.get_json(&perms, &owner).await;
    assert_eq!(s, 200);
    assert_eq!(body["permissions"].as_array().unwrap().len(), 1, "{body}");

    // Clearing goes back to the default; it is idempotent.
    assert_eq!(delete(&t, &format!("{perms}/{op_id}"), &owner).await, 204);
    assert_eq!(delete(&t, &format!("{perms}/{op_id}"), &owner).await, 204);
    let res = t.http.post(t.url(&send2)).bearer_auth(&op).header("Idempotency-Key", "perm-3");
    let res = res.json(&json!({"to": "+972501230005", "bodyText": "allowed again"})).send().await.unwrap();
    assert_eq!(res.status(), 202);

    let audit = audit_actions(&t, &owner, "line_permission.").await;
    let trail: Vec<(&str, &Value, &Value)> =
        audit.iter().map(|a| (a["action"].as_str().unwrap(), &a["before"], &a["after"])).collect();
    let (view_only, hidden) = (json!({"canView": true, "canSend": false}), json!({"canView": false, "canSend": false}));
    assert_eq!(
        trail,
        [
            ("line_permission.cleared", &view_only, &Value::Null),
            ("line_permission.set", &hidden, &view_only),
            ("line_permission.set", &Value::Null, &hidden),
        ],
        "set, set, cleared, with before and after"
    );
}

#[tokio::test]
async fn the_inbox_list_filters_searches_and_paginates() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let line = t.demo.line_id.clone();
    let (op_id, op) = operator(&t, "filter").await;
    let dana = customer_writes(&t, &owner, &line, "+972501231001", Some("Dana Levi")).await;
    let ben = customer_writes(&t, &owner, &line, "+972501231002", Some("Ben")).await;
    let shop = conversation_to(&t, "+972501231003").await;
    let (dana, ben) = (dana["id"].as_str().unwrap().to_owned(), ben["id"].as_str().unwrap().to_owned());
    let (s, _) =
        patch(&t, &format!("/api/conversations/{shop}/contact"), &owner, json!({"displayName": "100% Shop_"})).await;
    assert_eq!(s, 200);
    let (s, _) = post(&t, &format!("/api/conversations/{dana}/claim"), &owner, json!({"expectedVersion": 1})).await;
    assert_eq!(s, 200);
    let (s, _) = post(
        &t,
        &format!("/api/conversations/{ben}/assign"),
        &owner,
        json!({"targetUserId": op_id, "expectedVersion": 1}),
    )
    .await;
    assert_eq!(s, 200);

    let (s, body) = t.get_json("/api/conversations", &owner).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(ids(&body), [shop.clone(), ben.clone(), dana.clone()], "most recently active first");
    let items = body["conversations"].as_array().unwrap();
    assert_eq!(
        (items[0]["contactDisplayName"].as_str(), &items[0]["contactProfileName"]),
        (Some("100% Shop_"), &Value::Null)
    );
    assert_eq!(
        (&items[2]["contactDisplayName"], items[2]["contactProfileName"].as_str()),
        (&Value::Null, Some("Dana Levi"))
    );
    assert_eq!(items[2]["assigneeId"], owner_id(&t).await.as_str(), "the conversation's own fields");

    assert_eq!(list(&t, &owner, "assigneeId=me").await, vec![dana.clone()]);
    assert_eq!(list(&t, &op, "assigneeId=me").await, vec![ben.clone()]);
    assert_eq!(list(&t, &owner, &format!("assigneeId={op_id}")).await, vec![ben.clone()]);
    assert_eq!(list(&t, &owner, "unassigned=true").await, vec![shop.clone()]);
    assert_eq!(list(&t, &owner, "unassigned=false").await.len(), 3);
    assert_eq!(list(&t, &owner, &format!("lineId={line}&unassigned=true")).await, vec![shop.clone()]);
    assert!(list(&t, &owner, "status=lead").await.is_empty(), "no conversation is on the board");
    assert_eq!(list(&t, &owner, "q=dana").await, vec![dana.clone()], "profile name, case-insensitive");
    assert_eq!(list(&t, &owner, "q=%25%20shop").await, vec![shop.clone()], "display name, % literal");
    assert!(list(&t, &owner, "q=_%25").await.is_empty(), "wildcards are literal");
    assert_eq!(list(&t, &owner, "q=1002").await, vec![ben.clone()], "phone digits");
    assert_eq!(list(&t, &owner, "q=dana&assigneeId=me").await, vec![dana.clone()], "filters combine");
    assert!(list(&t, &owner, "q=dana&unassigned=true").await.is_empty(), "filters combine (AND)");

    for (query, want) in [
        ("assigneeId=me&unassigned=true", "conflicting_filters"),
        ("assigneeId=bob", "invalid_assignee_id"),
        ("q=", "invalid_search"),
        (&format!("q={}", "x".repeat(101)) as &str, "invalid_search"),
        ("status=", "invalid_status"),
        ("cursor=garbage", "invalid_cursor"),
        ("limit=0", "invalid_limit"),
        ("limit=201", "invalid_limit"),
        ("unassigned=maybe", "invalid_query"),
    ] {
        let (s, e) = t.get_json(&format!("/api/conversations?{query}"), &owner).await;
        assert_eq!((s, code(&e)), (400, Some(want)), "{query}: {e}");
    }
    let (s, _) = t.get_json("/api/conversations?lineId=line_01JZZZZZZZZZZZZZZZZZZZZZZZ", &owner).await;
    assert_eq!(s, 404);

    // Cursor pagination walks every conversation once.
    let mut seen = Vec::new();
    let mut path = "/api/conversations?limit=1".to_owned();
    loop {
        let (s, page) = t.get_json(&path, &owner).await;
        assert_eq!(s, 200, "{page}");
        seen.extend(ids(&page));
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/conversations?limit=1&cursor={c}"),
            None => break,
        }
        assert!(seen.len() <= 3, "the cursor ends");
    }
    assert_eq!(seen, [shop, ben, dana]);
}

#[tokio::test]
async fn notes_are_internal_and_contact_names_are_edited() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let conv = conversation_to(&t, "+972501232001").await;
    let notes = format!("/api/conversations/{conv}/notes");
    let calls_before = eventually(&t.clock, Duration::from_millis(10), || async {
        let calls = t.server().sim.calls();
        (calls == 1).then_some(calls)
    })
    .await;
    let messages_before = t.messages(&owner, &conv).await.len();

    let mut created = Vec::new();
    for i in 0..3 {
        let (s, n) = post(&t, &notes, &owner, json!({"body": format!("  note {i}  ")})).await;
        assert_eq!(s, 201, "{n}");
        assert!(n["id"].as_str().unwrap().starts_with("note_"));
        assert_eq!(
            (n["conversationId"].as_str(), n["lineId"].as_str()),
            (Some(conv.as_str()), Some(t.demo.line_id.as_str()))
        );
        assert_eq!(n["authorId"], owner_id(&t).await.as_str());
        assert_eq!(n["body"], format!("note {i}"), "trimmed");
        assert!(n["createdAt"].is_string());
        assert_eq!(n.as_object().unwrap().len(), 6, "exactly the documented fields: {n}");
        created.push(n["id"].as_str().unwrap().to_owned());
        t.clock.advance(Duration::from_secs(1));
    }
    let (s, page) = t.get_json(&format!("{notes}?limit=2"), &owner).await;
    assert_eq!(s, 200);
    let first: Vec<&str> = page["notes"].as_array().unwrap().iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(first, [created[2].as_str(), created[1].as_str()], "newest first");
    let cursor = page["nextCursor"].as_str().unwrap();
    let (_, page) = t.get_json(&format!("{notes}?limit=2&cursor={cursor}"), &owner).await;
    assert_eq!(page["notes"][0]["id"], created[0].as_str());
    assert!(page["nextCursor"].is_null());
    for body in [json!({"body": "   "}), json!({"body": "x".repeat(4001)})] {
        let (s, e) = post(&t, &notes, &owner, body).await;
        assert_eq!((s, code(&e)), (400, Some("invalid_note_body")), "{e}");
    }
    let (s, e) = post(&t, &notes, &owner, json!({"body": 5})).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_request")), "{e}");
    let (s, e) = t.get_json(&format!("{notes}?cursor=abc"), &owner).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_cursor")), "{e}");
    let (s, _) = post(&t, &notes, &owner, json!({"body": "x".repeat(4000)})).await;
    assert_eq!(s, 201, "4000 characters are fine");

    // Internal only: not in the timeline, never handed to the provider.
    assert_eq!(t.messages(&owner, &conv).await.len(), messages_before, "notes are not messages");
    assert_eq!(t.server().ezw.store().outbox_depth().await.unwrap(), 0, "notes are never queued");
    assert_eq!(t.server().sim.calls(), calls_before, "nor sent");
    let ezw = &t.server().ezw;
    let line_principal = ezw.auth().authenticate_line_token(&t.demo.line_token).await.unwrap();
    let conv_id = ezw::ConversationId::parse(&conv).unwrap();
    let err = ezw.inbox().add_note(&line_principal, &conv_id, "from a token").await.unwrap_err();
    assert_eq!(err.kind(), ezw::ErrorKind::Forbidden, "line tokens cannot write notes");

    // Contact names: trimmed, empty clears, at most 120 characters.
    let contact = format!("/api/conversations/{conv}/contact");
    let (s, c) = patch(&t, &contact, &owner, json!({"displayName": "  VIP Customer "})).await;
    assert_eq!(
        (s, c["displayName"].as_str(), c["phoneNumber"].as_str()),
        (200, Some("VIP Customer"), Some("+972501232001"))
    );
    let (_, listed) = t.get_json("/api/conversations", &owner).await;
    assert_eq!(listed["conversations"][0]["contactDisplayName"], "VIP Customer");
    let (s, c) = patch(&t, &contact, &owner, json!({"displayName": ""})).await;
    assert_eq!((s, &c["displayName"]), (200, &Value::Null));
    let (s, c) = patch(&t, &contact, &owner, json!({"displayName": "x".repeat(120)})).await;
    assert_eq!(s, 200, "{c}");
    let (s, e) = patch(&t, &contact, &owner, json!({"displayName": "x".repeat(121)})).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_display_name")), "{e}");
    let (s, e) = patch(&t, &contact, &owner, json!({})).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_request")), "{e}");
    let (s, c) = patch(&t, &contact, &owner, json!({"displayName": null})).await;
    assert_eq!((s, &c["displayName"]), (200, &Value::Null));
    let (s, _) =
        patch(&t, "/api/conversations/conv_01JZZZZZZZZZZZZZZZZZZZZZZZ/contact", &owner, json!({"displayName": "x"}))
            .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn the_default_assignee_gets_new_inbound_conversations() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let line = t.demo.line_id.clone();
    let (op_id, op) = operator(&t, "routed").await;
    let (hidden_id, _) = operator(&t, "unseen").await;
    let assignment = format!("/api/lines/{line}/assignment");

    let (s, body) = put(&t, &assignment, &owner, json!({"userId": op_id})).await;
    assert_eq!((s, body["defaultAssigneeId"].as_str()), (200, Some(op_id.as_str())), "{body}");
    assert_eq!(body["id"], line.as_str(), "the line");
    let first = customer_writes(&t, &owner, &line, "+972501233001", Some("New Customer")).await;
    assert_eq!(first["assigneeId"], op_id.as_str(), "a new inbound conversation is routed");
    assert_eq!(list(&t, &op, "assigneeId=me").await, [first["id"].as_str().unwrap().to_owned()]);

    // Ownership changes stay; later messages never change the assignee.
    let conv = first["id"].as_str().unwrap().to_owned();
    let (s, _) = post(&t, &format!("/api/conversations/{conv}/claim"), &owner, json!({"expectedVersion": 1})).await;
    assert_eq!(s, 200);
    customer_writes(&t, &owner, &line, "+972501233001", Some("New Customer")).await;
    let ms = eventually(&t.clock, Duration::from_millis(10), || async {
        let ms = t.messages(&owner, &conv).await;
        (ms.len() == 2).then_some(ms)
    })
    .await;
    assert_eq!(ms.len(), 2);
    let now = conversation(&t, &owner, &conv).await;
    assert_eq!((now["assigneeId"].as_str(), now["version"].as_i64()), (Some(owner_id(&t).await.as_str()), Some(2)));

    // Who may be the default assignee.
    let (s, _) = put(
        &t,
        &format!("/api/lines/{line}/permissions/{hidden_id}"),
        &owner,
        json!({"canView": false, "canSend": false}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, e) = put(&t, &assignment, &owner, json!({"userId": hidden_id})).await;
    assert_eq!((s, code(&e)), (409, Some("assignee_cannot_view_line")), "{e}");
    let (s, e) = put(&t, &assignment, &owner, json!({"userId": UserId::generate(0).to_string()})).await;
    assert_eq!((s, code(&e)), (404, Some("not_found")), "{e}");
    let (s, e) = put(&t, &assignment, &owner, json!({})).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_request")), "{e}");
    let (s, _) = put(&t, &assignment, &op, json!({"userId": null})).await;
    assert_eq!(s, 403, "operators cannot set it");
    let (s, body) = put(&t, &assignment, &owner, json!({"userId": null})).await;
    assert_eq!((s, &body["defaultAssigneeId"]), (200, &Value::Null));
    let second = customer_writes(&t, &owner, &line, "+972501233002", None).await;
    assert_eq!(second["assigneeId"], Value::Null, "no default assignee: unassigned");

    let audit = audit_actions(&t, &owner, "line.default_assignee_changed").await;
    let afters: Vec<&Value> = audit.iter().map(|a| &a["after"]["defaultAssigneeId"]).collect();
    assert_eq!(afters, [&Value::Null, &json!(op_id)], "set then cleared, newest first");
    assert_eq!(audit[0]["before"]["defaultAssigneeId"], op_id.as_str());
}

#[tokio::test]
async fn an_archived_line_takes_no_new_work_but_keeps_its_history() {
    let t = TestServer::start().await;
    let owner = t.login().await;
    let line = t.demo.line_id.clone();
    let token = t.demo.line_token.clone();
    let (op_id, op) = operator(&t, "archiver").await;

    // A message waiting for its retry is queued (not in a provider call) when the line is archived.
    t.server().sim.fail_next(1, ezw::providers::sim::SimFailure::Transient);
    let (s, m) = t.send_text(&token, None, json!({"to": "+972501234001", "body": "will never go"})).await;
    assert_eq!(s, 202);
    let id = m["id"].as_str().unwrap().to_owned();
    eventually(&t.clock, Duration::from_millis(1), || async {
        let (_, m) = t.get_json(&format!("/api/v1/messages/{id}"), &token).await;
        (m["attempts"] == 1 && m["status"] == "queued").then_some(())
    })
    .await;

    let archive = format!("/api/lines/{line}/archive");
    let (s, _) = post(&t, &archive, &op, json!({})).await;
    assert_eq!(s, 403, "operators cannot archive");
    let (s, archived) = post(&t, &archive, &owner, json!({})).await;
    assert_eq!(s, 200, "{archived}");
    assert_eq!(
        (archived["lifecycleState"].as_str(), archived["effectiveSendState"].as_str()),
        (Some("archived"), Some("archived"))
    );
    assert_eq!(archived["sendable"], false);
    let (s, again) = post(&t, &archive, &owner, json!({})).await;
    assert_eq!((s, again["lifecycleState"].as_str()), (200, Some("archived")), "idempotent");

    let (_, m) = t.get_json(&format!("/api/v1/messages/{id}"), &token).await;
    assert_eq!((m["status"].as_str(), m["error"]["code"].as_str()), (Some("failed"), Some("line_archived")), "{m}");
    let stats = t.server().ezw.store().outbox_stats().await.unwrap();
    assert!(stats.depth_by_line.iter().all(|(l, _)| l.as_str() != line), "no job of the line is left: {stats:?}");

    // No new work: sends, token rotation, permission and assignment changes.
    let (s, e) = t.send_text(&token, None, json!({"to": "+972501234001", "body": "new"})).await;
    assert_eq!((s, code(&e)), (409, Some("line_not_sendable")), "{e}");
    let (s, e) = post(&t, &format!("/api/lines/{line}/api-token"), &owner, json!({})).await;
    assert_eq!((s, code(&e)), (409, Some("line_archived")), "{e}");
    let (s, e) =
        put(&t, &format!("/api/lines/{line}/permissions/{op_id}"), &owner, json!({"canView": true, "canSend": false}))
            .await;
    assert_eq!((s, code(&e)), (409, Some("line_archived")), "{e}");
    assert_eq!(delete(&t, &format!("/api/lines/{line}/permissions/{op_id}"), &owner).await, 409);
    let (s, e) = put(&t, &format!("/api/lines/{line}/assignment"), &owner, json!({"userId": op_id})).await;
    assert_eq!((s, code(&e)), (409, Some("line_archived")), "{e}");

    // Customers' messages are still recorded; history stays readable; the line is still listed.
    let conv = customer_writes(&t, &owner, &line, "+972501234002", Some("Late Customer")).await;
    assert_eq!(conv["lineId"], line.as_str());
    let (s, lines) = t.get_json("/api/lines", &owner).await;
    assert_eq!((s, lines["lines"][0]["lifecycleState"].as_str()), (200, Some("archived")));
    let (s, health) = t.get_json("/api/v1/health?wakeup=true", &token).await;
    assert_eq!(s, 200, "{health}");
    let (_, lines) = t.get_json("/api/lines", &owner).await;
    assert_eq!(lines["lines"][0]["lifecycleState"], "archived", "a wake-up does not revive it");

    let audit = audit_actions(&t, &owner, "line.archived").await;
    assert_eq!(audit.len(), 1, "archived once");
    assert_eq!(
        (audit[0]["before"]["lifecycleState"].as_str(), audit[0]["after"]["lifecycleState"].as_str()),
        (Some("connected"), Some("archived"))
    );
}

#[tokio::test]
async fn line_creation_is_idempotent_and_gated_by_slots_and_billing() {
    let t = TestServer::start().await;
    let owner = t.login().await;

    let (s, first) = create_line(&t, &owner, "+15550100101", Some("create-1")).await;
    assert_eq!(s, 201, "{first}");
    let (s, again) = create_line(&t, &owner, "+15550100101", Some("create-1")).await;
    assert_eq!((s, &again["id"]), (200, &first["id"]), "same key, same request: the same line");
    let (s, e) = create_line(&t, &owner, "+15550100102", Some("create-1")).await;
    assert_eq!((s, code(&e), &e["error"]["lineId"]), (409, Some("idempotency_key_reused"), &first["id"]), "{e}");
    let (s, e) = create_line(&t, &owner, "+15550100102", Some("has space")).await;
    assert_eq!((s, code(&e)), (400, Some("invalid_idempotency_key")), "{e}");
    let (s, e) = create_line(&t, &owner, "+15550100101", None).await;
    assert_eq!((s, code(&e)), (409, Some("line_exists")), "{e}");
    let (_, lines) = t.get_json("/api/lines", &owner).await;
    assert_eq!(lines["lines"].as_array().unwrap().len(), 2, "the demo line and one more");

    // Token rotation is audited by token id, never the token.
    let line_id = first["id"].as_str().unwrap();
    let (s, rotated) = post(&t, &format!("/api/lines/{line_id}/api-token"), &owner, json!({})).await;
    assert_eq!(s, 201);
    let created = audit_actions(&t, &owner, "line.created").await;
    assert!(created.iter().any(|a| a["targetId"] == line_id), "{created:?}");
    let rotations = audit_actions(&t, &owner, "line.token_rotated").await;
    assert_eq!(rotations[0]["after"]["tokenId"], rotated["tokenId"]);
    let (_, everything) = t.get_json("/api/audit-logs?limit=200", &owner).await;
    assert!(!everything.to_string().contains(rotated["token"].as_str().unwrap()), "the token is never audited");

    // Slots: another organization with two.
    let ezw = &t.server().ezw;
    let (org, _) = new_org(ezw, "Slots", "boss@slots.example").await;
    let boss = t.login_as("boss@slots.example", "owner-password").await;
    let (s, a) = create_line(&t, &boss, "+15550100201", None).await;
    assert_eq!(s, 201);
    assert_eq!(create_line(&t, &boss, "+15550100202", None).await.0, 201);
    let (s, e) = create_line(&t, &boss, "+15550100203", Some("slot-3")).await;
    assert_eq!((s, code(&e)), (409, Some("line_slots_exhausted")), "{e}");
    let (s, _) = post(&t, &format!("/api/lines/{}/archive", a["id"].as_str().unwrap()), &boss, json!({})).await;
    assert_eq!(s, 200);
    let (s, third) = create_line(&t, &boss, "+15550100203", Some("slot-3")).await;
    assert_eq!(s, 201, "an archived line frees its slot: {third}");

    // A restricted organization cannot add lines.
    let conn = rusqlite::Connection::open(t.dir.path().join("ezw.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn.execute("UPDATE organizations SET billing_state = 'restricted' WHERE id = ?1", [org.id.as_str()]).unwrap();
    let (s, e) = create_line(&t, &boss, "+15550100204", None).await;
    assert_eq!((s, code(&e)), (409, Some("billing_restricted")), "{e}");
    let (s, _) = create_line(&t, &owner, "+15550100205", None).await;
    assert_eq!(s, 201, "other organizations are not affected");
}
