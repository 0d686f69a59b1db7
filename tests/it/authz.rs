//! The authorization matrix: every endpoint against every kind of principal.
//!
//! Each table below has one row per endpoint (method, path template, request body) and one
//! expected answer per principal, in the column order of [`Who::ALL`]. A fixture ([`World`])
//! builds one workspace per test: the demo organization (made `pending`, so its owner may start a
//! checkout) with a second line, an admin and four operators who joined through the memberships
//! API, an inbound conversation, an image message, messages in status `unknown`, a webhook with a
//! delivery, and a second organization with its own line. Rows run in order and each principal in
//! column order; rows that change things act on per-principal or throwaway targets, and the rows
//! that end something (token rotation, archiving, logout) come last in their table.
//!
//! Besides the status (and the error `code` of every 4xx cell), every successful answer to
//! another organization's owner must not mention the target organization or line, and every
//! successful answer to the operator who may not view the line, or to the other line's token,
//! must not mention the target line. All contradictions of a table are reported together.

use std::collections::BTreeSet;
use std::time::Duration;

use ezw::{LineId, OrganizationId, PhoneNumber};
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{eventually, new_org, new_sim_line, TestServer};

/// The principals, in column order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    /// The demo organization's owner.
    Owner,
    /// An admin of the demo organization.
    Admin,
    /// An operator with an explicit view + send permission on the target line.
    OpSend,
    /// An operator with an explicit `canView: false` on the target line.
    OpNoView,
    /// The API token of another line of the demo organization.
    OtherLine,
    /// The owner of another organization.
    OtherOrg,
    /// No `Authorization` header.
    NoToken,
    /// The demo owner's ID token, past its one-hour lifetime.
    Expired,
    /// The target line's own API token (the Channel API's rightful caller).
    Line,
}

impl Who {
    const ALL: [Who; 9] = [
        Who::Owner,
        Who::Admin,
        Who::OpSend,
        Who::OpNoView,
        Who::OtherLine,
        Who::OtherOrg,
        Who::NoToken,
        Who::Expired,
        Who::Line,
    ];

    fn name(self) -> &'static str {
        match self {
            Who::Owner => "owner",
            Who::Admin => "admin",
            Who::OpSend => "operator with view+send",
            Who::OpNoView => "operator without view",
            Who::OtherLine => "another line's token",
            Who::OtherOrg => "another organization's owner",
            Who::NoToken => "no token",
            Who::Expired => "expired ID token",
            Who::Line => "the target line's token",
        }
    }
}

/// One expected answer: a status, and for errors the `error.code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cell {
    status: u16,
    code: Option<&'static str>,
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} {code}", self.status),
            None => write!(f, "{}", self.status),
        }
    }
}

const fn ok(status: u16) -> Cell {
    Cell { status, code: None }
}

const fn err(status: u16, code: &'static str) -> Cell {
    Cell { status, code: Some(code) }
}

// The legend of the tables.
/// 200.
const OK: Cell = ok(200);
/// 201.
const CR: Cell = ok(201);
/// 202.
const AC: Cell = ok(202);
/// 204.
const NC: Cell = ok(204);
/// 404 `not_found`: another organization's resource, another line's (for a line token), or a
/// line the caller may not view and everything on it.
const NF: Cell = err(404, "not_found");
/// 403 `forbidden`: a manager-only route.
const FB: Cell = err(403, "forbidden");
/// 403 `owner_role_required`: an owner-only route.
const OR: Cell = err(403, "owner_role_required");
/// 409 `billing_not_restricted`: a checkout for a paid-up workspace.
const NR: Cell = err(409, "billing_not_restricted");
/// 401 `wrong_token_type`: a line token on the Workspace API.
const WT: Cell = err(401, "wrong_token_type");
/// 401 `missing_token`.
const MT: Cell = err(401, "missing_token");
/// 401 `token_expired`.
const EX: Cell = err(401, "token_expired");
/// 401 `invalid_line_token`: an ID token (or an expired one) on the Channel API.
const IL: Cell = err(401, "invalid_line_token");
/// 409 `line_not_qr_paired`: the QR API on a line that is not paired by QR code.
const NQ: Cell = err(409, "line_not_qr_paired");
/// 409 `no_pairing`: the simulator's scan on a line that shows no code.
const NP: Cell = err(409, "no_pairing");

/// How a row's request body is built.
#[derive(Clone, Copy)]
enum Body {
    Empty,
    /// JSON for this principal.
    Json(fn(&World, Who) -> Value),
    /// JSON around the target conversation's current `version`, read just before the request.
    Versioned(fn(i64) -> Value),
    /// A `multipart/form-data` image send to the target conversation.
    Image,
}

struct Row {
    method: Method,
    /// The path, with placeholders (see [`World::path`]).
    path: &'static str,
    body: Body,
    /// Only the response head is read on success (a stream that does not end).
    head_only: bool,
    /// In the column order of [`Who::ALL`].
    expect: [Cell; 9],
}

fn row(method: Method, path: &'static str, body: Body, expect: [Cell; 9]) -> Row {
    Row { method, path, body, head_only: false, expect }
}

// Request bodies.

fn new_line(_: &World, who: Who) -> Value {
    let phone = format!("+1555010960{}", who as usize);
    json!({"displayName": "Authz line", "phoneNumber": phone, "provider": {"kind": "simulator"}})
}

fn scan_code(_: &World, _: Who) -> Value {
    json!({"code": "2@authz"})
}

fn full_rights(_: &World, _: Who) -> Value {
    json!({"canView": true, "canSend": true})
}

fn no_assignee(_: &World, _: Who) -> Value {
    json!({"userId": null})
}

fn invitation(_: &World, who: Who) -> Value {
    json!({"email": format!("invitee{}@authz.example", who as usize), "role": "operator"})
}

/// The owner promotes the spare operator and the admin demotes them again: two real changes.
fn role_change(_: &World, who: Who) -> Value {
    json!({"role": if who == Who::Owner { "admin" } else { "operator" }})
}

fn claim(version: i64) -> Value {
    json!({"expectedVersion": version})
}

fn unassign(version: i64) -> Value {
    json!({"targetUserId": null, "expectedVersion": version})
}

fn contact_name(_: &World, who: Who) -> Value {
    json!({"displayName": format!("Seen by {}", who.name())})
}

fn note(_: &World, who: Who) -> Value {
    json!({"body": format!("note by {}", who.name())})
}

fn workspace_text(w: &World, who: Who) -> Value {
    json!({"conversationId": w.conversation, "bodyText": format!("hello from {}", who.name())})
}

fn resolve_sent(_: &World, _: Who) -> Value {
    json!({"action": "sent"})
}

fn new_webhook(w: &World, who: Who) -> Value {
    json!({"targetUrl": format!("{}/new-{}", w.receiver, who as usize), "enabled": false})
}

fn webhook_change(_: &World, _: Who) -> Value {
    json!({"persistent": true})
}

fn channel_text(w: &World, _: Who) -> Value {
    json!({"conversationId": w.conversation, "body": "hello from the Channel API"})
}

fn channel_media(w: &World, _: Who) -> Value {
    json!({"conversationId": w.conversation, "type": "image", "url": "https://example.com/authz.png"})
}

// The tables. Columns (the order of `Who::ALL`): O owner, A admin, S operator with view+send,
// N operator without view, L2 another line's token, X another organization's owner, - no token,
// E expired ID token, L the target line's own token.

/// Sessions, lines, line permissions, members, billing, audit; token rotation, archiving and
/// logout last.
fn lines_members_billing_rows() -> Vec<Row> {
    use Body::{Empty, Json};
    #[rustfmt::skip]
    let rows = vec![
        //                                                                  O   A   S   N   L2  X   -   E   L
        row(Method::GET, "/api/auth/session", Empty,                       [OK, OK, OK, OK, WT, OK, MT, EX, WT]),
        row(Method::GET, "/api/openapi.json", Empty,                       [OK, OK, OK, OK, OK, OK, OK, OK, OK]),
        row(Method::GET, "/api/lines", Empty,                              [OK, OK, OK, OK, WT, OK, MT, EX, WT]),
        row(Method::POST, "/api/lines", Json(new_line),                    [CR, CR, FB, FB, WT, CR, MT, EX, WT]),
        row(Method::GET, "/api/lines/{lineId}", Empty,                     [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/lines/{lineId}/permissions", Empty,         [OK, OK, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::PUT, "/api/lines/{lineId}/permissions/{spareUserId}", Json(full_rights),
                                                                           [OK, OK, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::DELETE, "/api/lines/{lineId}/permissions/{spareUserId}", Empty,
                                                                           [NC, NC, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::PUT, "/api/lines/{lineId}/assignment", Json(no_assignee),
                                                                           [OK, OK, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/memberships", Empty,                        [OK, OK, OK, OK, WT, OK, MT, EX, WT]),
        row(Method::POST, "/api/memberships", Json(invitation),            [CR, CR, FB, FB, WT, CR, MT, EX, WT]),
        row(Method::PATCH, "/api/memberships/{spareUserId}", Json(role_change),
                                                                           [OK, OK, FB, FB, WT, NF, MT, EX, WT]),
        row(Method::DELETE, "/api/memberships/{victimUserId}", Empty,      [OK, OK, FB, FB, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/billing/status", Empty,                     [OK, OK, OK, OK, WT, OK, MT, EX, WT]),
        row(Method::POST, "/api/billing/recovery/checkout", Empty,         [CR, OR, OR, OR, WT, NR, MT, EX, WT]),
        row(Method::GET, "/api/audit-logs", Empty,                         [OK, OK, FB, FB, WT, OK, MT, EX, WT]),
        row(Method::GET, "/api/lines/{lineId}/qr", Empty,                  [NQ, NQ, NQ, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/lines/{lineId}/qr", Empty,                 [NQ, NQ, NQ, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/lines/{lineId}/transitions", Empty,         [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/lines/{lineId}/simulator/scan", Json(scan_code),
                                                                           [NP, NP, NP, NF, WT, NF, MT, EX, WT]),
        // Last: these end the line's token, the line's work, and each caller's session.
        row(Method::POST, "/api/lines/{lineId}/api-token", Empty,          [CR, CR, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/lines/{lineId}/archive", Empty,            [OK, OK, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/auth/logout", Empty,                       [NC, NC, NC, NC, WT, NC, MT, EX, WT]),
    ];
    rows
}

/// The inbox (conversations, claims, contact, notes), workspace sends, media URLs, unknown
/// messages and the live stream.
fn inbox_sends_media_rows() -> Vec<Row> {
    use Body::{Empty, Image, Json, Versioned};
    #[rustfmt::skip]
    let rows = vec![
        //                                                                  O   A   S   N   L2  X   -   E   L
        row(Method::GET, "/api/conversations?limit=200", Empty,            [OK, OK, OK, OK, WT, OK, MT, EX, WT]),
        row(Method::GET, "/api/conversations?lineId={lineId}", Empty,      [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/conversations/{conversationId}", Empty,     [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/conversations/{conversationId}/messages", Empty,
                                                                           [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/conversations/{conversationId}/claim", Versioned(claim),
                                                                           [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/conversations/{conversationId}/assign", Versioned(unassign),
                                                                           [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::PATCH, "/api/conversations/{conversationId}/contact", Json(contact_name),
                                                                           [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/conversations/{conversationId}/notes", Empty,
                                                                           [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/conversations/{conversationId}/notes", Json(note),
                                                                           [CR, CR, CR, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/lines/{lineId}/send", Json(workspace_text),
                                                                           [AC, AC, AC, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/lines/{lineId}/send", Image,               [AC, AC, AC, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/attachments/{attachmentId}/url", Empty,     [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/messages/{unknownMessageId}/resolve", Json(resolve_sent),
                                                                           [OK, OK, OK, NF, WT, NF, MT, EX, WT]),
        Row { head_only: true, ..row(Method::GET, "/api/live/stream", Empty,
                                                                           [OK, OK, OK, OK, WT, OK, MT, EX, WT]) },
    ];
    rows
}

/// Outgoing webhooks under both bases, and the rest of the Channel API.
fn webhooks_and_channel_rows() -> Vec<Row> {
    use Body::{Empty, Json};
    #[rustfmt::skip]
    let rows = vec![
        //                                                                  O   A   S   N   L2  X   -   E   L
        row(Method::GET, "/api/lines/{lineId}/webhooks", Empty,            [OK, OK, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/lines/{lineId}/webhooks", Json(new_webhook),
                                                                           [CR, CR, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/lines/{lineId}/webhooks/{webhookId}", Empty,
                                                                           [OK, OK, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::PATCH, "/api/lines/{lineId}/webhooks/{webhookId}", Json(webhook_change),
                                                                           [CR, CR, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/lines/{lineId}/webhooks/{webhookId}/secret", Empty,
                                                                           [CR, CR, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/lines/{lineId}/webhooks/{webhookId}/deliveries", Empty,
                                                                           [OK, OK, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/lines/{lineId}/webhooks/{webhookId}/deliveries/{deliveryId}", Empty,
                                                                           [OK, OK, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::POST, "/api/lines/{lineId}/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", Empty,
                                                                           [AC, AC, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::DELETE, "/api/lines/{lineId}/webhooks/{ownWebhookId}", Empty,
                                                                           [NC, NC, FB, NF, WT, NF, MT, EX, WT]),
        row(Method::GET, "/api/v1/webhooks", Empty,                        [IL, IL, IL, IL, OK, IL, MT, IL, OK]),
        row(Method::POST, "/api/v1/webhooks", Json(new_webhook),           [IL, IL, IL, IL, CR, IL, MT, IL, CR]),
        row(Method::GET, "/api/v1/webhooks/{webhookId}", Empty,            [IL, IL, IL, IL, NF, IL, MT, IL, OK]),
        row(Method::PATCH, "/api/v1/webhooks/{webhookId}", Json(webhook_change),
                                                                           [IL, IL, IL, IL, NF, IL, MT, IL, CR]),
        row(Method::POST, "/api/v1/webhooks/{webhookId}/secret", Empty,    [IL, IL, IL, IL, NF, IL, MT, IL, CR]),
        row(Method::GET, "/api/v1/webhooks/{webhookId}/deliveries", Empty, [IL, IL, IL, IL, NF, IL, MT, IL, OK]),
        row(Method::GET, "/api/v1/webhooks/{webhookId}/deliveries/{deliveryId}", Empty,
                                                                           [IL, IL, IL, IL, NF, IL, MT, IL, OK]),
        row(Method::POST, "/api/v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver", Empty,
                                                                           [IL, IL, IL, IL, NF, IL, MT, IL, AC]),
        row(Method::DELETE, "/api/v1/webhooks/{ownWebhookId}", Empty,      [IL, IL, IL, IL, NF, IL, MT, IL, NC]),
        row(Method::GET, "/api/v1/health", Empty,                          [IL, IL, IL, IL, OK, IL, MT, IL, OK]),
        row(Method::POST, "/api/v1/messages/text", Json(channel_text),     [IL, IL, IL, IL, NF, IL, MT, IL, AC]),
        row(Method::POST, "/api/v1/messages/media", Json(channel_media),   [IL, IL, IL, IL, NF, IL, MT, IL, AC]),
        row(Method::GET, "/api/v1/messages/{messageId}", Empty,            [IL, IL, IL, IL, NF, IL, MT, IL, OK]),
    ];
    rows
}

// The fixture.

const PASSWORD: &str = "authz-password";
const OTHER_OWNER: &str = "owner@elsewhere.example";
const CUSTOMER: &str = "+972501239001";

/// Everything the rows refer to, and one token per principal.
struct World {
    tokens: [Option<String>; 9],
    org: String,
    line: String,
    conversation: String,
    /// The customer's inbound message on the target line.
    message: String,
    attachment: String,
    webhook: String,
    delivery: String,
    /// An operator whose line permission, membership role and assignment the rows change.
    spare_user: String,
    /// A member the rows disable.
    victim_user: String,
    /// A disabled webhook of the target line for each principal to delete.
    own_webhooks: [String; 9],
    /// Messages in status `unknown`: one for each principal allowed to resolve, then one that
    /// must stay unknown.
    unknown: [String; 4],
    /// Base URL of a local webhook receiver.
    receiver: String,
}

impl World {
    fn token(&self, who: Who) -> Option<&str> {
        self.tokens[who as usize].as_deref()
    }

    /// The path of `template` for `who`.
    fn path(&self, template: &str, who: Who) -> String {
        let unknown = match who {
            Who::Owner => &self.unknown[0],
            Who::Admin => &self.unknown[1],
            Who::OpSend => &self.unknown[2],
            _ => &self.unknown[3],
        };
        template
            .replace("{lineId}", &self.line)
            .replace("{conversationId}", &self.conversation)
            .replace("{messageId}", &self.message)
            .replace("{unknownMessageId}", unknown)
            .replace("{attachmentId}", &self.attachment)
            .replace("{webhookId}", &self.webhook)
            .replace("{ownWebhookId}", &self.own_webhooks[who as usize])
            .replace("{deliveryId}", &self.delivery)
            .replace("{spareUserId}", &self.spare_user)
            .replace("{victimUserId}", &self.victim_user)
    }

    /// What a successful answer to `who` must not contain.
    fn leak(&self, who: Who, text: &str) -> Option<&str> {
        let hidden: Vec<&str> = match who {
            Who::OtherOrg => vec![&self.org, &self.line],
            Who::OpNoView | Who::OtherLine => vec![&self.line],
            _ => Vec::new(),
        };
        hidden.into_iter().find(|id| text.contains(id))
    }

    async fn build(t: &TestServer) -> World {
        let ezw = &t.server().ezw;
        let owner = t.login().await;
        let org = t.demo.organization_id.clone();
        let line = t.demo.line_id.clone();
        ezw.billing()
            .set_state(&OrganizationId::from_raw(org.clone()), ezw::model::BillingState::Pending)
            .await
            .unwrap();

        // A second line of the demo organization, with its own token.
        let (s, second) = call(
            t,
            Method::POST,
            "/api/lines",
            Some(&owner),
            Some(json!({"displayName": "Second", "phoneNumber": "+15550109001", "provider": {"kind": "simulator"}})),
        )
        .await;
        assert_eq!(s, 201, "{second}");
        let path = format!("/api/lines/{}/api-token", second["id"].as_str().unwrap());
        let (s, rotated) = call(t, Method::POST, &path, Some(&owner), None).await;
        assert_eq!(s, 201, "{rotated}");
        let other_line_token = rotated["token"].as_str().unwrap().to_owned();

        // Members through the memberships API; the operators' permissions on the target line.
        join(t, &owner, "admin@authz.example", "admin").await;
        let op_send = join(t, &owner, "sender@authz.example", "operator").await;
        let op_no_view = join(t, &owner, "blind@authz.example", "operator").await;
        let spare_user = join(t, &owner, "spare@authz.example", "operator").await;
        let victim_user = join(t, &owner, "victim@authz.example", "operator").await;
        for (user, rights) in [
            (&op_send, json!({"canView": true, "canSend": true})),
            (&op_no_view, json!({"canView": false, "canSend": false})),
        ] {
            let path = format!("/api/lines/{line}/permissions/{user}");
            let (s, p) = call(t, Method::PUT, &path, Some(&owner), Some(rights)).await;
            assert_eq!(s, 200, "{p}");
        }

        // Another organization with its own line.
        let (_, other_owner) = new_org(ezw, "Elsewhere", OTHER_OWNER).await;
        new_sim_line(ezw, &other_owner, "+15550109901", json!({})).await;

        // A webhook (before the traffic, so the traffic gives it deliveries) and one disabled
        // webhook per principal to delete.
        let receiver = receiver().await;
        let path = format!("/api/lines/{line}/webhooks");
        let body = json!({"targetUrl": format!("{receiver}/hook"), "events": ["messages.post"]});
        let (s, hook) = call(t, Method::POST, &path, Some(&owner), Some(body)).await;
        assert_eq!(s, 201, "{hook}");
        let webhook = hook["id"].as_str().unwrap().to_owned();
        let mut own_webhooks: [String; 9] = Default::default();
        for who in Who::ALL {
            let body = json!({"targetUrl": format!("{receiver}/own-{}", who as usize), "enabled": false});
            let (s, hook) = call(t, Method::POST, &path, Some(&owner), Some(body)).await;
            assert_eq!(s, 201, "{hook}");
            own_webhooks[who as usize] = hook["id"].as_str().unwrap().to_owned();
        }

        // A customer writes to the target line.
        let (conversation, message) = customer_writes(t, &owner, &line).await;
        let path = format!("/api/lines/{line}/webhooks/{webhook}/deliveries");
        let (s, deliveries) = call(t, Method::GET, &path, Some(&owner), None).await;
        assert_eq!(s, 200, "{deliveries}");
        let delivery = deliveries["deliveries"][0]["id"].as_str().expect("the inbound message's delivery").to_owned();

        // An image message with a stored attachment.
        let (content_type, bytes) = image_form(&conversation);
        let res = t
            .http
            .post(t.url(&format!("/api/lines/{line}/send")))
            .bearer_auth(&owner)
            .header("Idempotency-Key", "authz-fixture-image")
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let image: Value = res.json().await.unwrap();
        let attachment = image["media"]["attachmentId"].as_str().unwrap().to_owned();

        let unknown = unknown_messages(t, &owner, &line, &conversation).await;

        // The expired token: log in, let an hour pass, then log everyone else in.
        let expired = t.login().await;
        t.clock.advance(Duration::from_secs(3_601));
        let mut tokens: [Option<String>; 9] = Default::default();
        tokens[Who::Owner as usize] = Some(t.login().await);
        tokens[Who::Admin as usize] = Some(t.login_as("admin@authz.example", PASSWORD).await);
        tokens[Who::OpSend as usize] = Some(t.login_as("sender@authz.example", PASSWORD).await);
        tokens[Who::OpNoView as usize] = Some(t.login_as("blind@authz.example", PASSWORD).await);
        tokens[Who::OtherLine as usize] = Some(other_line_token);
        tokens[Who::OtherOrg as usize] = Some(t.login_as(OTHER_OWNER, "owner-password").await);
        tokens[Who::Expired as usize] = Some(expired);
        tokens[Who::Line as usize] = Some(t.demo.line_token.clone());

        World {
            tokens,
            org,
            line,
            conversation,
            message,
            attachment,
            webhook,
            delivery,
            spare_user,
            victim_user,
            own_webhooks,
            unknown,
            receiver,
        }
    }
}

async fn call(t: &TestServer, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut req = t.http.request(method, t.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// Invites `email` with `role` and accepts the invitation with [`PASSWORD`]; returns the user id.
async fn join(t: &TestServer, owner: &str, email: &str, role: &str) -> String {
    let body = json!({"email": email, "role": role});
    let (s, invited) = call(t, Method::POST, "/api/memberships", Some(owner), Some(body)).await;
    assert_eq!(s, 201, "{invited}");
    let accept = json!({"token": invited["invitationToken"], "password": PASSWORD});
    let (s, accepted) = call(t, Method::POST, "/api/auth/accept-invitation", None, Some(accept)).await;
    assert_eq!(s, 200, "{accepted}");
    invited["member"]["userId"].as_str().unwrap().to_owned()
}

/// A local webhook receiver answering 200; returns its base URL.
async fn receiver() -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// The simulator delivers a customer's message to `line`; waits until it is recorded and returns
/// its conversation and message ids.
async fn customer_writes(t: &TestServer, owner: &str, line: &str) -> (String, String) {
    let ezw = &t.server().ezw;
    let principal = ezw.auth().authenticate_id_token(owner).await.unwrap();
    let line = ezw.lines().get(&principal, &LineId::parse(line).unwrap()).await.unwrap();
    let provider_id = t.server().sim.inject_inbound(&line, &PhoneNumber::parse(CUSTOMER).unwrap(), None, "hello");
    let path = format!("/api/conversations?lineId={}", line.id);
    eventually(&t.clock, Duration::from_millis(10), || async {
        let (_, list) = call(t, Method::GET, &path, Some(owner), None).await;
        let conv = list["conversations"].as_array()?.iter().find(|c| c["contactPhone"] == CUSTOMER)?.clone();
        let conv = conv["id"].as_str()?.to_owned();
        let messages = t.messages(owner, &conv).await;
        let message = messages.iter().find(|m| m["providerMessageId"] == provider_id.as_str())?;
        Some((conv.clone(), message["id"].as_str()?.to_owned()))
    })
    .await
}

/// Four messages in status `unknown`. The simulator deduplicates sends, so the delivery worker
/// never leaves one of its messages unknown: these are sent, followed until the simulator has
/// nothing more to report (`read`), and then marked `unknown` in the database.
async fn unknown_messages(t: &TestServer, owner: &str, line: &str, conversation: &str) -> [String; 4] {
    let mut ids: [String; 4] = Default::default();
    for (i, id) in ids.iter_mut().enumerate() {
        let res = t
            .http
            .post(t.url(&format!("/api/lines/{line}/send")))
            .bearer_auth(owner)
            .header("Idempotency-Key", format!("authz-fixture-unknown-{i}"))
            .json(&json!({"conversationId": conversation, "bodyText": format!("unknown {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        let m: Value = res.json().await.unwrap();
        *id = m["id"].as_str().unwrap().to_owned();
    }
    for id in &ids {
        eventually(&t.clock, Duration::from_millis(250), || async {
            let (_, m) = t.get_json(&format!("/api/v1/messages/{id}"), &t.demo.line_token).await;
            (m["status"] == "read").then_some(())
        })
        .await;
    }
    let conn = rusqlite::Connection::open(t.dir.path().join("ezw.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    for id in &ids {
        let n = conn.execute("UPDATE messages SET status = 'unknown' WHERE id = ?1", [id]).unwrap();
        assert_eq!(n, 1);
    }
    ids
}

/// A `multipart/form-data` body with a small PNG for `conversation`: (content type, bytes).
fn image_form(conversation: &str) -> (String, Vec<u8>) {
    let boundary = "ezw-authz-boundary-5zVq2";
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.resize(256, 7);
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"conversationId\"\r\n\r\n{conversation}\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n\
             Content-Type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&png);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// The target conversation's current version.
async fn current_version(t: &TestServer, w: &World) -> i64 {
    let owner = w.token(Who::Owner).unwrap();
    let (s, conv) = call(t, Method::GET, &format!("/api/conversations/{}", w.conversation), Some(owner), None).await;
    assert_eq!(s, 200, "{conv}");
    conv["version"].as_i64().unwrap()
}

/// Runs every cell of `rows` in order; returns the contradictions, one line each.
async fn run(t: &TestServer, w: &World, rows: &[Row]) -> Vec<String> {
    let mut failures = Vec::new();
    for (n, row) in rows.iter().enumerate() {
        for who in Who::ALL {
            let expected = row.expect[who as usize];
            let path = w.path(row.path, who);
            let mut req = t.http.request(row.method.clone(), t.url(&path));
            if let Some(token) = w.token(who) {
                req = req.bearer_auth(token);
            }
            if row.method == Method::POST {
                // Sends need a fresh key per request; the other routes ignore the header.
                req = req.header("Idempotency-Key", format!("authz-{n}-{}", who as usize));
            }
            req = match row.body {
                Body::Empty => req,
                Body::Json(build) => req.json(&build(w, who)),
                Body::Versioned(build) => req.json(&build(current_version(t, w).await)),
                Body::Image => {
                    let (content_type, bytes) = image_form(&w.conversation);
                    req.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes)
                }
            };
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            let text = if row.head_only && res.status().is_success() {
                String::new()
            } else {
                res.text().await.unwrap_or_default()
            };
            let code =
                serde_json::from_str::<Value>(&text).ok().and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            let cell = format!("{} {} [{}] ({path})", row.method, row.path, who.name());
            let shown: String = text.chars().take(400).collect();
            if status != expected.status || (expected.code.is_some() && code.as_deref() != expected.code) {
                let got = code.as_deref().map_or(status.to_string(), |c| format!("{status} {c}"));
                failures.push(format!("{cell}: expected {expected}, got {got}: {shown}"));
            } else if (200..300).contains(&status) {
                if let Some(leaked) = w.leak(who, &text) {
                    failures.push(format!("{cell}: the answer mentions {leaked}: {shown}"));
                }
            }
        }
    }
    failures
}

fn assert_no_failures(table: &str, rows: &[Row], failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{table}: {} of {} cells contradict the documented matrix:\n{}",
        failures.len(),
        rows.len() * Who::ALL.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn lines_members_billing_and_sessions() {
    let t = TestServer::start().await;
    let w = World::build(&t).await;
    let rows = lines_members_billing_rows();
    let failures = run(&t, &w, &rows).await;
    assert_no_failures("lines, members, billing and sessions", &rows, &failures);
    // The logout row ended each caller's session.
    for who in [Who::Owner, Who::Admin, Who::OpSend, Who::OpNoView, Who::OtherOrg] {
        let (s, body) = t.get_json("/api/auth/session", w.token(who).unwrap()).await;
        assert_eq!(s, 401, "{} after logout: {body}", who.name());
    }
    // Refused cells changed nothing: only the owner's and the admin's lines and invitations
    // exist in the demo organization.
    let store = t.server().ezw.store();
    let org = OrganizationId::from_raw(w.org.clone());
    let mut phones: Vec<String> =
        store.list_lines(&org).await.unwrap().into_iter().map(|l| l.phone_number.to_string()).collect();
    phones.sort();
    assert_eq!(phones, ["+15550100001", "+15550109001", "+15550109600", "+15550109601"]);
    let mut invitees: Vec<String> = store
        .list_members(&org, Some(ezw::model::MembershipStatus::Invited))
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.email)
        .collect();
    invitees.sort();
    assert_eq!(invitees, ["invitee0@authz.example", "invitee1@authz.example"]);
}

#[tokio::test]
async fn inbox_sends_media_and_live() {
    let t = TestServer::start().await;
    let w = World::build(&t).await;
    let rows = inbox_sends_media_rows();
    let failures = run(&t, &w, &rows).await;
    assert_no_failures("inbox, sends, media and live", &rows, &failures);
    // The unknown message nobody was allowed to resolve is still unknown.
    let (s, m) = t.get_json(&format!("/api/v1/messages/{}", w.unknown[3]), &t.demo.line_token).await;
    assert_eq!((s, m["status"].as_str()), (200, Some("unknown")), "{m}");
    // Notes only by those allowed to write them.
    let owner = w.token(Who::Owner).unwrap();
    let (s, notes) = t.get_json(&format!("/api/conversations/{}/notes", w.conversation), owner).await;
    assert_eq!(s, 200, "{notes}");
    let mut bodies: Vec<&str> =
        notes["notes"].as_array().unwrap().iter().map(|n| n["body"].as_str().unwrap()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["note by admin", "note by operator with view+send", "note by owner"]);
}

#[tokio::test]
async fn webhooks_and_channel_api() {
    let t = TestServer::start().await;
    let w = World::build(&t).await;
    let rows = webhooks_and_channel_rows();
    let failures = run(&t, &w, &rows).await;
    assert_no_failures("webhooks and Channel API", &rows, &failures);
    // Only the owner, the admin and the line's own token deleted their webhooks.
    let (s, list) = t.get_json(&format!("/api/lines/{}/webhooks", w.line), w.token(Who::Owner).unwrap()).await;
    assert_eq!(s, 200, "{list}");
    let left: BTreeSet<&str> = list["webhooks"].as_array().unwrap().iter().map(|h| h["id"].as_str().unwrap()).collect();
    for who in Who::ALL {
        let deleted = matches!(who, Who::Owner | Who::Admin | Who::Line);
        let id = w.own_webhooks[who as usize].as_str();
        assert_eq!(!left.contains(id), deleted, "{}'s webhook {id}", who.name());
    }
}

/// Routes the matrix leaves out: no bearer token (login, refresh, invitations, signup), vendor
/// hooks, health, metrics and signed media.
fn out_of_scope(path: &str) -> bool {
    ["/api/auth/login", "/api/auth/refresh", "/api/auth/accept-invitation", "/api/signup/organization", "/healthz"]
        .contains(&path)
        || path == "/metrics"
        || path.starts_with("/hooks/")
        || path.starts_with("/media/")
}

/// A path with its query dropped and every `{param}` written `{}`.
fn shape(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.split('/').map(|segment| if segment.starts_with('{') { "{}" } else { segment }).collect::<Vec<_>>().join("/")
}

/// Every operation of `docs/openapi.json` (which the OpenAPI tests hold equal to the router) is
/// a row of the matrix, apart from the routes out of scope, and every row is a documented route.
#[test]
fn the_matrix_covers_every_route() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| !out_of_scope(path))
        .flat_map(|(path, item)| {
            let methods = ["get", "post", "put", "patch", "delete"];
            methods.into_iter().filter(|m| item.get(*m).is_some()).map(move |m| (m.to_uppercase(), shape(path)))
        })
        .collect();
    let covered: BTreeSet<(String, String)> =
        [lines_members_billing_rows(), inbox_sends_media_rows(), webhooks_and_channel_rows()]
            .iter()
            .flatten()
            .map(|row| (row.method.to_string(), shape(row.path)))
            .collect();
    let missing: Vec<_> = documented.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&documented).collect();
    assert!(missing.is_empty(), "routes without a row in the matrix: {missing:?}");
    assert!(unknown.is_empty(), "rows for routes the API does not document: {unknown:?}");
}
