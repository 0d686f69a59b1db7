//! Organization scope and roles: another organization's resource is a 404; operators cannot
//! manage lines.

use ezw::model::{Membership, MembershipStatus, Role, User};
use ezw::{Secret, UserId};
use serde_json::json;

use crate::support::{new_org, new_sim_line, TestServer};

#[tokio::test]
async fn another_organization_sees_nothing() {
    let t = TestServer::start().await;
    let (_, m) = t.send_text(&t.demo.line_token, None, json!({"to": "+972501234567", "body": "private"})).await;
    let (msg_id, conv_id) = (m["id"].as_str().unwrap(), m["conversationId"].as_str().unwrap());

    let ezw = &t.server().ezw;
    let (_, p2) = new_org(ezw, "Other Co", "boss@other.example").await;
    // The same phone number as the demo line is fine in another organization.
    let line2 = new_sim_line(ezw, &p2, "+15550100001", json!({})).await;
    let token2 = ezw.lines().rotate_api_token(&p2, &line2.id).await.unwrap().token;

    let id2 = t.login_as("boss@other.example", "owner-password").await;
    let (s, e) = t.get_json(&format!("/api/conversations/{conv_id}/messages"), &id2).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = t.get_json(&format!("/api/conversations/{conv_id}"), &id2).await;
    assert_eq!(s, 404);
    let (s, list) = t.get_json("/api/conversations", &id2).await;
    assert_eq!(s, 200);
    assert_eq!(list["conversations"].as_array().unwrap().len(), 0);
    let (s, _) = t.get_json(&format!("/api/conversations?lineId={}", t.demo.line_id), &id2).await;
    assert_eq!(s, 404);
    let (s, lines) = t.get_json("/api/lines", &id2).await;
    assert_eq!(s, 200);
    assert_eq!(lines["lines"].as_array().unwrap().len(), 1);
    assert_eq!(lines["lines"][0]["id"], line2.id.as_str());
    let res =
        t.http.post(t.url(&format!("/api/lines/{}/api-token", t.demo.line_id))).bearer_auth(&id2).send().await.unwrap();
    assert_eq!(res.status(), 404);

    // Another line's token cannot read this line's message, or send into its conversation.
    let (s, _) = t.get_json(&format!("/api/v1/messages/{msg_id}"), token2.expose()).await;
    assert_eq!(s, 404);
    let (s, e) = t.send_text(token2.expose(), None, json!({"conversationId": conv_id, "body": "hijack"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn operators_work_conversations_but_cannot_manage_lines() {
    let t = TestServer::start().await;
    let ezw = &t.server().ezw;
    let org = ezw.store().find_organization_by_slug("demo").await.unwrap().unwrap();
    let now = ezw.clock().now();
    let operator = User {
        id: UserId::generate(now.unix_ms()),
        email: "op@demo.ezw.local".into(),
        display_name: "Op".into(),
        password_hash: None,
        created_at: now,
    };
    ezw.store().insert_user(&operator).await.unwrap();
    ezw.orgs().set_password(&operator.id, &Secret::new("operator-pass")).await.unwrap();
    ezw.store()
        .upsert_membership(&Membership {
            organization_id: org.id.clone(),
            user_id: operator.id.clone(),
            role: Role::Operator,
            status: MembershipStatus::Active,
            created_at: now,
        })
        .await
        .unwrap();
    let op_token = t.login_as("op@demo.ezw.local", "operator-pass").await;
    let (s, session) = t.get_json("/api/auth/session", &op_token).await;
    assert_eq!((s, session["role"].as_str()), (200, Some("operator")));
    let res = t
        .http
        .post(t.url(&format!("/api/lines/{}/api-token", t.demo.line_id)))
        .bearer_auth(&op_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = t
        .http
        .post(t.url("/api/lines"))
        .bearer_auth(&op_token)
        .json(&json!({"displayName": "X", "phoneNumber": "+15550100009", "provider": {"kind": "simulator"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let (s, _) = t.get_json("/api/conversations", &op_token).await;
    assert_eq!(s, 200);

    // Disabling the membership ends the operator's access at once.
    ezw.store()
        .upsert_membership(&Membership {
            organization_id: org.id,
            user_id: operator.id,
            role: Role::Operator,
            status: MembershipStatus::Disabled,
            created_at: now,
        })
        .await
        .unwrap();
    let (s, _) = t.get_json("/api/conversations", &op_token).await;
    assert_eq!(s, 401);
}
