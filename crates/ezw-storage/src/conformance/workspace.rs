//! Conformance cases for the team-inbox part of the store (issue 6): line permissions and
//! visibility, line creation with idempotency and slots, audited token rotation, default
//! assignees, archiving, the inbox list, assignment by compare-and-set, contacts and notes.

use ezw_core::ids::{ContactId, NoteId};
use ezw_core::model::{InboxConversation, LinePermission, Note};
use ezw_core::ports::{
    ArchivedLine, AssignConversation, AssignOutcome, CreateLine, CreateLineOutcome, LineIdempotency, Page,
};

use super::*;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// A user with a membership of `org` in `role` and `status`.
async fn team_member(store: &dyn Store, org: &OrganizationId, role: Role, status: MembershipStatus) -> User {
    let user = new_user(secs(0));
    store.insert_user(&user).await.must("insert_user");
    let membership =
        Membership { organization_id: org.clone(), user_id: user.id.clone(), role, status, created_at: secs(0) };
    store.upsert_membership(&membership).await.must("upsert_membership");
    user
}

async fn operator(store: &dyn Store, org: &OrganizationId) -> User {
    team_member(store, org, Role::Operator, MembershipStatus::Active).await
}

fn audit_entry(org: &OrganizationId, action: &str, target: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::generate(at.unix_ms()),
        organization_id: org.clone(),
        actor: AuditActor { kind: "user", id: Some("usr_conformance".into()) },
        action: action.into(),
        target_kind: "line".into(),
        target_id: target.into(),
        details: serde_json::json!({}),
        before: None,
        after: Some(serde_json::json!({ "case": action })),
        created_at: at,
    }
}

/// The organization's audit entries of `action`, newest first.
async fn audited(store: &dyn Store, org: &OrganizationId, action: &str) -> Vec<AuditEvent> {
    store.list_audit(org, Some(action), None, 200).await.must("list_audit").items
}

fn permission(line: &Line, user: &UserId, can_view: bool, can_send: bool, at: Timestamp) -> LinePermission {
    LinePermission {
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        user_id: user.clone(),
        can_view,
        can_send,
        updated_at: at,
        updated_by: Some(UserId::from_raw("usr_conformance")),
    }
}

async fn permit(store: &dyn Store, line: &Line, user: &UserId, can_view: bool, can_send: bool, at: Timestamp) {
    let p = permission(line, user, can_view, can_send, at);
    let audit = audit_entry(&line.organization_id, "line_permission.set", line.id.as_str(), at);
    store.set_line_permission(&p, &audit).await.must("set_line_permission");
}

fn inbound_from(line: &Line, from: &str, profile: Option<&str>, provider_id: &str, at: Timestamp) -> NewInbound {
    NewInbound { profile_name: profile.map(str::to_owned), ..inbound(line, &phone(from), provider_id, at, "hello") }
}

fn assignment(conv: &Conversation, expected: i64, assignee: Option<&UserId>, at: Timestamp) -> AssignConversation {
    AssignConversation {
        organization_id: conv.organization_id.clone(),
        conversation_id: conv.id.clone(),
        expected_version: expected,
        assignee_id: assignee.cloned(),
        by: Some(UserId::from_raw("usr_conformance")),
        at,
    }
}

#[track_caller]
fn assigned(outcome: AssignOutcome, what: &str) -> Conversation {
    match outcome {
        AssignOutcome::Assigned { after, .. } => *after,
        other => panic!("{what}: expected Assigned, got {other:?}"),
    }
}

fn conversation_ids(page: &Page<InboxConversation>) -> Vec<ConversationId> {
    page.items.iter().map(|c| c.conversation.id.clone()).collect()
}

async fn inbox(store: &dyn Store, org: &OrganizationId, query: ConversationQuery) -> Vec<ConversationId> {
    let query = ConversationQuery { limit: 200, ..query };
    let page = store.list_inbox(org, &query).await.must("list_inbox");
    assert!(page.next_cursor.is_none(), "list_inbox: everything fits one page of 200");
    conversation_ids(&page)
}

/// Walks every page of the inbox with `limit` per page.
async fn inbox_pages(store: &dyn Store, org: &OrganizationId, query: ConversationQuery) -> Vec<Vec<ConversationId>> {
    let mut query = query;
    let mut pages = Vec::new();
    loop {
        let page = store.list_inbox(org, &query).await.must("list_inbox");
        pages.push(conversation_ids(&page));
        match page.next_cursor {
            Some(next) => {
                assert!(pages.len() <= 1000, "list_inbox: the cursor never reaches the last page");
                query.cursor = Some(next);
            }
            None => return pages,
        }
    }
}

fn create_line_request(line: Line, key: Option<(&str, &str)>, slots: u32) -> CreateLine {
    let audit = audit_entry(&line.organization_id, "line.created", line.id.as_str(), line.created_at);
    CreateLine {
        idempotency: key.map(|(key, fingerprint)| LineIdempotency { key: key.into(), fingerprint: fingerprint.into() }),
        max_active_lines: slots,
        audit,
        line,
    }
}

async fn archive(store: &dyn Store, line: &Line, at: Timestamp) -> ArchivedLine {
    let audit = audit_entry(&line.organization_id, "line.archived", line.id.as_str(), at);
    store
        .archive_line(&line.organization_id, &line.id, at, &audit)
        .await
        .must("archive_line")
        .expect("archive_line: the organization's line exists")
}

fn note(conv: &Conversation, author: &UserId, body: &str, at: Timestamp) -> Note {
    Note {
        id: NoteId::generate(at.unix_ms()),
        organization_id: conv.organization_id.clone(),
        conversation_id: conv.id.clone(),
        line_id: conv.line_id.clone(),
        author_id: author.clone(),
        body: body.into(),
        created_at: at,
    }
}

// ---------------------------------------------------------------------------------------------
// line permissions and visibility
// ---------------------------------------------------------------------------------------------

/// Explicit permissions are upserted, read, listed and cleared (each write with its audit entry,
/// a clear that finds nothing writes none); `get_line_access` reads the line, billing state and
/// the user's permission together; another organization sees none of it and cannot write it.
pub async fn line_permissions_round_trip_and_are_scoped(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant_with(s, BillingState::Pending).await;
    let other = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15553000001", secs(0)).await;
    let op = operator(s, &t.org.id).await;

    let access = s.get_line_access(&t.org.id, &line.id, &op.id).await.must("get_line_access");
    let access = access.expect("get_line_access: the organization's line");
    assert_same_line(&access.context.line, &line, "get_line_access");
    assert_eq!(access.context.billing_state, BillingState::Pending, "get_line_access carries billing state");
    assert!(access.permission.is_none(), "no explicit permission yet");
    assert!(s.get_line_access(&other.org.id, &line.id, &op.id).await.must("get_line_access").is_none(), "scoped");
    assert!(s.list_line_permissions(&t.org.id, &line.id).await.must("list").is_empty());

    let p1 = permission(&line, &op.id, true, false, secs(1));
    let audit = audit_entry(&t.org.id, "line_permission.set", line.id.as_str(), secs(1));
    s.set_line_permission(&p1, &audit).await.must("set_line_permission");
    let got = s.get_line_permission(&t.org.id, &line.id, &op.id).await.must("get_line_permission");
    assert_eq!(got.as_ref(), Some(&p1), "get_line_permission returns it as set");
    let access = s.get_line_access(&t.org.id, &line.id, &op.id).await.must("get_line_access").expect("line");
    assert_eq!(access.permission.as_ref(), Some(&p1), "get_line_access carries the permission");
    let owner_access = s.get_line_access(&t.org.id, &line.id, &t.owner.id).await.must("get_line_access");
    assert!(owner_access.expect("line").permission.is_none(), "another user's permission is not theirs");

    let p2 = permission(&line, &op.id, false, false, secs(2));
    let audit = audit_entry(&t.org.id, "line_permission.set", line.id.as_str(), secs(2));
    s.set_line_permission(&p2, &audit).await.must("set_line_permission (replace)");
    assert_eq!(s.list_line_permissions(&t.org.id, &line.id).await.must("list"), vec![p2.clone()], "replaced");

    // Another organization can neither read nor write the line's permissions.
    assert!(s.get_line_permission(&other.org.id, &line.id, &op.id).await.must("get").is_none());
    assert!(s.list_line_permissions(&other.org.id, &line.id).await.must("list").is_empty());
    let foreign =
        LinePermission { organization_id: other.org.id.clone(), ..permission(&line, &op.id, true, true, secs(3)) };
    let audit = audit_entry(&other.org.id, "line_permission.set", line.id.as_str(), secs(3));
    expect_error(s.set_line_permission(&foreign, &audit).await, ErrorKind::NotFound, None, "foreign line");
    assert_eq!(s.list_line_permissions(&t.org.id, &line.id).await.must("list"), vec![p2], "foreign write: no change");
    let audit = audit_entry(&other.org.id, "line_permission.cleared", line.id.as_str(), secs(3));
    assert!(!s.clear_line_permission(&other.org.id, &line.id, &op.id, &audit).await.must("clear"), "foreign clear");

    let audit = audit_entry(&t.org.id, "line_permission.cleared", line.id.as_str(), secs(4));
    assert!(s.clear_line_permission(&t.org.id, &line.id, &op.id, &audit).await.must("clear"), "cleared");
    let audit = audit_entry(&t.org.id, "line_permission.cleared", line.id.as_str(), secs(5));
    assert!(!s.clear_line_permission(&t.org.id, &line.id, &op.id, &audit).await.must("clear"), "nothing to clear");
    assert!(s.get_line_permission(&t.org.id, &line.id, &op.id).await.must("get").is_none(), "back to the default");

    let actions: Vec<String> = audited(s, &t.org.id, "line_permission.").await.into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["line_permission.cleared", "line_permission.set", "line_permission.set"], "audit trail");
    assert!(audited(s, &other.org.id, "line_permission.").await.is_empty(), "failed writes leave no audit entry");
}

/// `visible_line_ids` is `None` until a permission of the user hides a line, then lists the
/// other lines oldest first; it is per user and per organization.
pub async fn visible_line_ids_follow_view_permissions(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let l1 = add_line(s, &t.org.id, "+15553100001", secs(1)).await;
    let l2 = add_line(s, &t.org.id, "+15553100002", secs(2)).await;
    let l3 = add_line(s, &t.org.id, "+15553100003", secs(3)).await;
    add_line(s, &other.org.id, "+15553100001", secs(1)).await;
    let op = operator(s, &t.org.id).await;
    let op2 = operator(s, &t.org.id).await;

    assert_eq!(s.visible_line_ids(&t.org.id, &op.id).await.must("visible"), None, "no permissions: every line");
    permit(s, &l2, &op.id, true, false, secs(4)).await;
    assert_eq!(s.visible_line_ids(&t.org.id, &op.id).await.must("visible"), None, "view-only hides nothing");
    permit(s, &l1, &op.id, false, false, secs(5)).await;
    let visible = s.visible_line_ids(&t.org.id, &op.id).await.must("visible");
    assert_eq!(visible, Some(vec![l2.id.clone(), l3.id.clone()]), "the hidden line is left out, oldest first");
    assert_eq!(s.visible_line_ids(&t.org.id, &op2.id).await.must("visible"), None, "per user");
    assert_eq!(s.visible_line_ids(&other.org.id, &op.id).await.must("visible"), None, "per organization");

    let audit = audit_entry(&t.org.id, "line_permission.cleared", l1.id.as_str(), secs(6));
    s.clear_line_permission(&t.org.id, &l1.id, &op.id, &audit).await.must("clear");
    assert_eq!(s.visible_line_ids(&t.org.id, &op.id).await.must("visible"), None, "cleared: every line again");
}

// ---------------------------------------------------------------------------------------------
// lines
// ---------------------------------------------------------------------------------------------

/// `create_line`: a key replays the first line for the same fingerprint and is `KeyReused` for
/// another (keys are per organization, and a failed creation records none); lines that are not
/// archived are held to the slots; a duplicate number is `line_exists`; each creation is audited.
pub async fn line_creation_is_idempotent_and_respects_slots(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let org = &t.org.id;

    let first = new_line(org, "+15553200001", secs(1));
    let created = s.create_line(&create_line_request(first.clone(), Some(("k1", "f1")), 2)).await.must("create_line");
    let CreateLineOutcome::Created(got) = created else { panic!("create_line: expected Created, got {created:?}") };
    assert_same_line(&got, &first, "create_line returns the line");
    let stored = s.get_line(org, &first.id).await.must("get_line").expect("the line is stored");
    assert_same_line(&stored, &first, "get_line after create_line");

    // The same key and fingerprint: the first line, whatever line the retry carries.
    let retry = new_line(org, "+15553200009", secs(2));
    let outcome = s.create_line(&create_line_request(retry.clone(), Some(("k1", "f1")), 2)).await.must("replay");
    let CreateLineOutcome::Replayed(got) = outcome else { panic!("expected Replayed, got {outcome:?}") };
    assert_eq!(got.id, first.id, "the replay is the first line");
    assert!(s.get_line(org, &retry.id).await.must("get_line").is_none(), "a replay creates nothing");
    let outcome = s.create_line(&create_line_request(retry.clone(), Some(("k1", "f2")), 2)).await.must("reuse");
    assert!(matches!(outcome, CreateLineOutcome::KeyReused { ref line_id } if *line_id == first.id), "{outcome:?}");
    let theirs = new_line(&other.org.id, "+15553200001", secs(2));
    let outcome = s.create_line(&create_line_request(theirs, Some(("k1", "f9")), 2)).await.must("other org");
    assert!(matches!(outcome, CreateLineOutcome::Created(_)), "keys are per organization: {outcome:?}");

    let second = new_line(org, "+15553200002", secs(3));
    let outcome = s.create_line(&create_line_request(second.clone(), None, 2)).await.must("second");
    assert!(matches!(outcome, CreateLineOutcome::Created(_)), "{outcome:?}");
    let third = new_line(org, "+15553200003", secs(4));
    let outcome = s.create_line(&create_line_request(third.clone(), Some(("k3", "f3")), 2)).await.must("third");
    assert!(matches!(outcome, CreateLineOutcome::SlotsExhausted), "two active lines fill two slots: {outcome:?}");
    assert!(s.get_line(org, &third.id).await.must("get_line").is_none(), "nothing stored");

    archive(s, &second, secs(5)).await;
    let duplicate = new_line(org, "+15553200001", secs(6));
    let result = s.create_line(&create_line_request(duplicate, Some(("k3", "f-dup")), 2)).await;
    expect_error(result, ErrorKind::Conflict, Some("line_exists"), "a number the organization has");
    let outcome = s.create_line(&create_line_request(third.clone(), Some(("k3", "f3")), 2)).await.must("third again");
    assert!(matches!(outcome, CreateLineOutcome::Created(_)), "archived lines free their slot: {outcome:?}");

    let created: Vec<String> = audited(s, org, "line.created").await.into_iter().map(|a| a.target_id).collect();
    assert_eq!(created, [third.id.to_string(), second.id.to_string(), first.id.to_string()], "one entry per line");
}

/// `rotate_line_token` rotates like `replace_line_token` and writes its audit entry.
pub async fn line_token_rotation_is_audited(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15553300001", secs(0)).await;
    let token = |at: i64| {
        let id = LineTokenId::generate(secs(at).unix_ms());
        LineTokenRecord {
            token_hash: sha256_hex(id.as_str().as_bytes()),
            last_four: "abcd".into(),
            id,
            organization_id: t.org.id.clone(),
            line_id: line.id.clone(),
            created_by: Some(t.owner.id.clone()),
            created_at: secs(at),
        }
    };
    let (first, second) = (token(1), token(2));
    let audit = audit_entry(&t.org.id, "line.token_rotated", line.id.as_str(), secs(1));
    assert!(!s.rotate_line_token(&first, &audit).await.must("rotate_line_token"), "nothing to revoke");
    let audit = audit_entry(&t.org.id, "line.token_rotated", line.id.as_str(), secs(2));
    assert!(s.rotate_line_token(&second, &audit).await.must("rotate_line_token"), "the first is revoked");
    assert!(s.find_line_token(&first.token_hash).await.must("find").is_none(), "old token gone");
    assert!(s.find_line_token(&second.token_hash).await.must("find").is_some(), "new token works");
    assert_eq!(audited(s, &t.org.id, "line.token_rotated").await.len(), 2, "one audit entry per rotation");
}

/// The default assignee is set and cleared (audited); conversations the line opens later start
/// with it while the user is an active member who may view the line; an existing conversation
/// keeps its assignee; another organization cannot set it.
pub async fn default_assignee_routes_new_conversations(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let org = &t.org.id;
    let line = add_line(s, org, "+15553400001", secs(0)).await;
    let op = operator(s, org).await;
    let disabled = team_member(s, org, Role::Operator, MembershipStatus::Disabled).await;
    let set = |assignee: Option<UserId>, at: i64| {
        let audit = audit_entry(org, "line.default_assignee_changed", line.id.as_str(), secs(at));
        let line_id = line.id.clone();
        async move {
            s.set_default_assignee(org, &line_id, assignee.as_ref(), secs(at), &audit)
                .await
                .must("set_default_assignee")
                .expect("set_default_assignee: the organization's line")
        }
    };

    let updated = set(Some(op.id.clone()), 1).await;
    assert_eq!(updated.default_assignee_id.as_ref(), Some(&op.id), "returns the line as it now is");
    let audit = audit_entry(&other.org.id, "line.default_assignee_changed", line.id.as_str(), secs(1));
    let foreign = s.set_default_assignee(&other.org.id, &line.id, None, secs(1), &audit).await.must("foreign");
    assert!(foreign.is_none(), "another organization's line is not found");

    let (_, a) = receive(s, inbound_from(&line, "+447700900501", None, "wamid.da-1", secs(2))).await;
    assert_eq!(a.assignee_id.as_ref(), Some(&op.id), "a new inbound conversation gets the default assignee");
    set(Some(t.owner.id.clone()), 3).await;
    let (_, again) = receive(s, inbound_from(&line, "+447700900501", None, "wamid.da-2", secs(4))).await;
    assert_eq!(again.assignee_id.as_ref(), Some(&op.id), "later messages never change the assignee");
    let out = send_text(s, &line, &phone("+447700900502"), secs(5), "hi").await;
    let b = conversation(s, org, &out.conversation_id).await;
    assert_eq!(b.assignee_id.as_ref(), Some(&t.owner.id), "a conversation opened by a send gets it too");

    set(Some(op.id.clone()), 6).await;
    permit(s, &line, &op.id, false, false, secs(6)).await;
    let (_, c) = receive(s, inbound_from(&line, "+447700900503", None, "wamid.da-3", secs(7))).await;
    assert_eq!(c.assignee_id, None, "a default assignee who may not view the line gets nothing");
    set(Some(disabled.id.clone()), 8).await;
    let (_, d) = receive(s, inbound_from(&line, "+447700900504", None, "wamid.da-4", secs(9))).await;
    assert_eq!(d.assignee_id, None, "a disabled member gets nothing");
    let cleared = set(None, 10).await;
    assert_eq!(cleared.default_assignee_id, None, "cleared");
    let (_, e) = receive(s, inbound_from(&line, "+447700900505", None, "wamid.da-5", secs(11))).await;
    assert_eq!(e.assignee_id, None, "no default assignee");
    assert_eq!(audited(s, org, "line.default_assignee_changed").await.len(), 5, "every change is audited");
}

/// `archive_line` archives the line (a later `set_line_state` leaves it archived), fails its
/// queued messages that are not in a provider call with `line_archived` (a dispatched one is left
/// to finish), queues `channel.patch` and `statuses.post`, and is audited once; inbound messages
/// are still recorded; another organization cannot archive the line.
pub async fn archive_line_fails_queued_work_and_stays_archived(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let org = &t.org.id;
    let line = add_line(s, org, "+15553500001", secs(0)).await;
    let busy = add_line(s, org, "+15553500002", secs(0)).await;
    use WebhookEventKind::*;
    let hook = add_webhook(s, &line, "https://r.example/archive", &[StatusesPost, ChannelPatch]).await;

    let (a, b) = (phone("+447700900511"), phone("+447700900512"));
    let m1 = send_text(s, &line, &a, secs(1), "in a provider call").await;
    let m2 = send_text(s, &line, &b, secs(1), "claimed, not dispatched").await;
    let m3 = send_text(s, &line, &a, secs(2), "queued behind m1").await;
    let m4 = send_text(s, &busy, &a, secs(2), "another line").await;
    let jobs = claim_own(s, org, secs(3)).await;
    assert_eq!(ids(&jobs), HashSet::from([m1.id.clone(), m2.id.clone(), m4.id.clone()]), "the heads are claimed");
    let job = |id: &MessageId| jobs.iter().find(|j| &j.message.id == id).expect("claimed").clone();
    let (j1, j2) = (job(&m1.id), job(&m2.id));
    let held = s.mark_dispatched(vec![(m1.id.clone(), j1.lease_id.clone())], secs(3)).await.must("mark_dispatched");
    assert_eq!(held, [true]);

    let foreign = audit_entry(&other.org.id, "line.archived", line.id.as_str(), secs(4));
    assert!(s.archive_line(&other.org.id, &line.id, secs(4), &foreign).await.must("archive_line").is_none());
    let archived = archive(s, &line, secs(4)).await;
    assert!(archived.newly_archived, "newly archived");
    assert_eq!(archived.line.lifecycle_state, LifecycleState::Archived);
    let failed: HashSet<MessageId> = archived.failed.iter().map(|c| c.id.clone()).collect();
    assert_eq!(failed, HashSet::from([m2.id.clone(), m3.id.clone()]), "queued messages not in a provider call fail");
    for m in resolve_changes(s, archived.failed).await {
        assert_eq!(m.status, MessageStatus::Failed);
        assert_eq!(m.error.map(|e| e.code).as_deref(), Some("line_archived"), "error code");
        assert_eq!(m.status_timestamps.failed_at, Some(secs(4)));
    }
    assert_eq!(message(s, org, &m1.id).await.status, MessageStatus::Queued, "the dispatched message is left");
    assert_eq!(message(s, org, &m4.id).await.status, MessageStatus::Queued, "another line is untouched");

    // The failed job's lease is gone; the dispatched one finishes normally.
    let stale =
        finish(s, &j2, &j2.lease_id, JobDisposition::Accepted { provider_message_id: "p2".into(), at: secs(5) });
    assert!(stale.await.is_empty(), "a result for a failed job is ignored");
    let accepted = JobDisposition::Accepted { provider_message_id: "p1".into(), at: secs(5) };
    let sent = finish(s, &j1, &j1.lease_id, accepted).await;
    assert_eq!(sent.len(), 1, "the dispatched message is recorded");
    assert_eq!(sent[0].status, MessageStatus::Sent);
    let later: Vec<MessageId> = claim_own(s, org, secs(1000)).await.into_iter().map(|j| j.message.id).collect();
    assert!(!later.contains(&m3.id) && !later.contains(&m2.id), "failed messages are never claimed: {later:?}");

    let line_now = s.set_line_state(org, &line.id, LifecycleState::Connected, None, secs(6)).await.must("state");
    assert_eq!(line_now.map(|l| l.lifecycle_state), Some(LifecycleState::Archived), "archived lines stay archived");
    let again = archive(s, &line, secs(7)).await;
    assert!(!again.newly_archived && again.failed.is_empty(), "archiving again changes nothing");
    let (m, _) = receive(s, inbound(&line, &a, "wamid.after-archive", secs(8), "still there?")).await;
    assert_eq!(m.line_id, line.id, "inbound messages of an archived line are recorded");

    assert_eq!(audited(s, org, "line.archived").await.len(), 1, "audited once");
    let deliveries = deliveries_of(s, &hook).await;
    let channel: Vec<&WebhookDelivery> = deliveries.iter().filter(|d| d.event == ChannelPatch).collect();
    assert_eq!(channel.len(), 1, "one channel.patch");
    let body: serde_json::Value = serde_json::from_str(&channel[0].body).expect("JSON body");
    assert_eq!(body["data"]["lifecycleState"], "archived");
    let statuses = deliveries.iter().filter(|d| d.event == StatusesPost).count();
    assert_eq!(statuses, 3, "statuses.post for the two failed messages and the sent one");
}

// ---------------------------------------------------------------------------------------------
// the inbox list
// ---------------------------------------------------------------------------------------------

/// `list_inbox`: most recently active first with the contacts' names; assignee, unassigned,
/// status, search (names case-insensitive and literal, phone digits), line and visibility filters
/// combine; the cursor walks every page of every shape; another organization sees nothing.
pub async fn inbox_list_filters_search_and_paginates(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let org = &t.org.id;
    let l1 = add_line(s, org, "+15553600001", secs(0)).await;
    let l2 = add_line(s, org, "+15553600002", secs(0)).await;
    let l3 = add_line(s, org, "+15553600003", secs(0)).await;
    let op = operator(s, org).await;

    let (_, c1) = receive(s, inbound_from(&l1, "+447700900601", Some("Dana Customer"), "wamid.l-1", secs(1))).await;
    let (_, c2) = receive(s, inbound_from(&l2, "+447700900602", Some("Ben O'Brien"), "wamid.l-2", secs(2))).await;
    let c3 =
        conversation(s, org, &send_text(s, &l1, &phone("+447700900603"), secs(3), "hi").await.conversation_id).await;
    let (_, c4) = receive(s, inbound_from(&l3, "+447700900604", Some("dana two"), "wamid.l-4", secs(4))).await;
    let named = s.set_contact_display_name(org, &c3.contact_id, Some("50%_Off Ltd"), secs(5)).await.must("name");
    assert!(named.is_some());
    assigned(s.assign_conversation(&assignment(&c2, 1, Some(&op.id), secs(6))).await.must("assign"), "assign c2");
    let (c1, c2, c3, c4) = (c1.id, c2.id, c3.id, c4.id);

    let page = s.list_inbox(org, &ConversationQuery { limit: 10, ..ConversationQuery::default() }).await.must("list");
    assert_eq!(conversation_ids(&page), [c4.clone(), c3.clone(), c2.clone(), c1.clone()], "newest activity first");
    let names: Vec<(Option<&str>, Option<&str>)> =
        page.items.iter().map(|c| (c.contact_display_name.as_deref(), c.contact_profile_name.as_deref())).collect();
    assert_eq!(
        names,
        [
            (None, Some("dana two")),
            (Some("50%_Off Ltd"), None),
            (None, Some("Ben O'Brien")),
            (None, Some("Dana Customer"))
        ],
        "each item carries its contact's names"
    );
    assert_eq!(page.items[2].conversation.assignee_id.as_ref(), Some(&op.id), "the conversation itself");

    let q = ConversationQuery::default;
    assert_eq!(inbox(s, org, ConversationQuery { assignee_id: Some(op.id.clone()), ..q() }).await, vec![c2.clone()]);
    assert_eq!(
        inbox(s, org, ConversationQuery { unassigned: true, ..q() }).await,
        [c4.clone(), c3.clone(), c1.clone()]
    );
    let on_l1 = ConversationQuery { line_id: Some(l1.id.clone()), ..q() };
    assert_eq!(inbox(s, org, ConversationQuery { unassigned: true, ..on_l1.clone() }).await, [c3.clone(), c1.clone()]);
    assert!(inbox(s, org, ConversationQuery { assignee_id: Some(op.id.clone()), ..on_l1.clone() }).await.is_empty());
    assert!(inbox(s, org, ConversationQuery { status_key: Some("lead".into()), ..q() }).await.is_empty(), "status");

    let search = |text: &str| ConversationQuery { search: Some(text.into()), ..q() };
    assert_eq!(inbox(s, org, search("dana")).await, [c4.clone(), c1.clone()], "profile names, any case");
    assert_eq!(inbox(s, org, search("DANA c")).await, vec![c1.clone()], "case-insensitive");
    assert_eq!(inbox(s, org, search("off ltd")).await, vec![c3.clone()], "display names");
    assert_eq!(inbox(s, org, search("%")).await, vec![c3.clone()], "% is literal");
    assert_eq!(inbox(s, org, search("%_o")).await, vec![c3.clone()], "with its neighbours");
    assert!(inbox(s, org, search("_%")).await.is_empty(), "_ is literal too");
    assert_eq!(inbox(s, org, search("0602")).await, vec![c2.clone()], "phone digits");
    assert_eq!(inbox(s, org, search("+44 7700 900603")).await, vec![c3.clone()], "digits of a formatted number");
    assert!(inbox(s, org, search("nobody")).await.is_empty());
    assert_eq!(
        inbox(s, org, ConversationQuery { unassigned: true, ..search("dana") }).await,
        [c4.clone(), c1.clone()],
        "search with another filter"
    );

    let visible = |lines: Vec<LineId>| ConversationQuery { visible_lines: Some(lines), ..q() };
    assert_eq!(inbox(s, org, visible(vec![l1.id.clone(), l3.id.clone()])).await, [c4.clone(), c3.clone(), c1.clone()]);
    assert!(inbox(s, org, visible(Vec::new())).await.is_empty(), "no visible line: nothing");
    let crossed = ConversationQuery { line_id: Some(l2.id.clone()), ..visible(vec![l1.id.clone()]) };
    assert!(inbox(s, org, crossed).await.is_empty(), "line and visibility both apply");
    // Many visible lines (some unknown) are read another way; the result is the same.
    let mut many = vec![l1.id.clone(), l3.id.clone()];
    many.extend((0..20).map(|i| LineId::generate(secs(i).unix_ms())));
    assert_eq!(inbox(s, org, visible(many.clone())).await, [c4.clone(), c3.clone(), c1.clone()]);

    for (shape, query) in [
        ("organization", q()),
        ("two visible lines", visible(vec![l1.id.clone(), l2.id.clone(), l3.id.clone()])),
        ("many visible lines", visible(many)),
        ("unassigned", ConversationQuery { unassigned: true, ..q() }),
    ] {
        let all = inbox(s, org, query.clone()).await;
        for limit in [1, 2, 3] {
            let pages = inbox_pages(s, org, ConversationQuery { limit, ..query.clone() }).await;
            assert_eq!(pages.len(), all.len().div_ceil(limit as usize).max(1), "{shape}, limit {limit}: pages");
            assert_eq!(pages.concat(), all, "{shape}, limit {limit}: every conversation once, in order");
        }
    }
    let bad = ConversationQuery { cursor: Some("not-a-cursor".into()), limit: 10, ..q() };
    expect_error(s.list_inbox(org, &bad).await, ErrorKind::InvalidInput, Some("invalid_cursor"), "bad cursor");

    assert!(inbox(s, &other.org.id, q()).await.is_empty(), "another organization sees nothing");
    assert!(inbox(s, &other.org.id, on_l1).await.is_empty(), "not even with the line id");
    let listed = s.list_conversations(org, &ConversationQuery { unassigned: true, limit: 10, ..q() }).await;
    let listed: Vec<ConversationId> = listed.must("list_conversations").items.into_iter().map(|c| c.id).collect();
    assert_eq!(listed, [c4, c3, c1], "list_conversations applies the same filters");
}

// ---------------------------------------------------------------------------------------------
// assignment, contacts, notes
// ---------------------------------------------------------------------------------------------

/// `assign_conversation` applies only at the expected version (bumping it and queueing
/// `chats.patch`), answers `Stale` with the current conversation otherwise and `NotFound` for
/// another organization; of 20 concurrent assignments at one version exactly one applies.
pub async fn assignment_is_compare_and_set(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15553700001", secs(0)).await;
    let hook = add_webhook(s, &line, "https://r.example/chats", &[WebhookEventKind::ChatsPatch]).await;
    let op = operator(s, &t.org.id).await;
    let (_, conv) = receive(s, inbound_from(&line, "+447700900701", None, "wamid.cas-1", secs(1))).await;
    assert_eq!((conv.version, conv.assignee_id.as_ref()), (1, None));

    let outcome = s.assign_conversation(&assignment(&conv, 1, Some(&t.owner.id), secs(2))).await.must("assign");
    let AssignOutcome::Assigned { before, after } = outcome else { panic!("expected Assigned, got {outcome:?}") };
    assert_eq!((before.version, before.assignee_id), (1, None), "before");
    assert_eq!((after.version, after.assignee_id.as_ref()), (2, Some(&t.owner.id)), "after: version + 1");
    let stored = serde_json::to_value(conversation(s, &t.org.id, &conv.id).await).expect("serializes");
    assert_eq!(stored, serde_json::to_value(&*after).expect("serializes"), "stored as returned");

    let stale = s.assign_conversation(&assignment(&conv, 1, Some(&op.id), secs(3))).await.must("stale");
    let AssignOutcome::Stale(current) = stale else { panic!("expected Stale, got {stale:?}") };
    assert_eq!((current.version, current.assignee_id.as_ref()), (2, Some(&t.owner.id)), "the current conversation");
    let foreign = AssignConversation { organization_id: other.org.id.clone(), ..assignment(&conv, 2, None, secs(3)) };
    assert!(matches!(s.assign_conversation(&foreign).await.must("foreign"), AssignOutcome::NotFound));
    let unknown = AssignConversation {
        conversation_id: ConversationId::generate(secs(3).unix_ms()),
        ..assignment(&conv, 2, None, secs(3))
    };
    assert!(matches!(s.assign_conversation(&unknown).await.must("unknown"), AssignOutcome::NotFound));

    let unassigned = assigned(s.assign_conversation(&assignment(&conv, 2, None, secs(4))).await.must("x"), "unassign");
    assert_eq!((unassigned.version, unassigned.assignee_id), (3, None), "None unassigns");
    receive(s, inbound_from(&line, "+447700900701", None, "wamid.cas-2", secs(5))).await;
    assert_eq!(conversation(s, &t.org.id, &conv.id).await.version, 3, "messages do not bump the version");

    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, conv) = (Arc::clone(&store), conv.clone());
        let user = UserId::generate(secs(10 + i).unix_ms());
        tasks.push(tokio::spawn(async move {
            let outcome = store.assign_conversation(&assignment(&conv, 3, Some(&user), secs(10))).await;
            (user, outcome.must("concurrent assign"))
        }));
    }
    let mut winners = Vec::new();
    let mut stale_seen = Vec::new();
    for task in tasks {
        match task.await.expect("task") {
            (user, AssignOutcome::Assigned { after, .. }) => winners.push((user, *after)),
            (_, AssignOutcome::Stale(current)) => stale_seen.push(*current),
            (_, AssignOutcome::NotFound) => panic!("the conversation exists"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one concurrent assignment applies");
    let (winner, after) = &winners[0];
    assert_eq!((after.version, after.assignee_id.as_ref()), (4, Some(winner)));
    for current in stale_seen {
        assert_eq!((current.version, current.assignee_id.as_ref()), (4, Some(winner)), "losers see the winner");
    }

    let deliveries = deliveries_of(s, &hook).await;
    assert_eq!(deliveries.len(), 3, "one chats.patch per applied assignment");
    let bodies: Vec<serde_json::Value> =
        deliveries.iter().map(|d| serde_json::from_str(&d.body).expect("JSON body")).collect();
    let body = bodies.iter().find(|b| b["data"]["conversation"]["version"] == 2).expect("the first assignment");
    assert_eq!(body["type"], "chats.patch");
    assert_eq!(body["data"]["conversation"]["assigneeId"], t.owner.id.as_str());
    assert_eq!(body["data"]["previous"]["assigneeId"], serde_json::Value::Null);
    assert_eq!(body["data"]["changes"], serde_json::json!(["assigneeId"]));
    assert_eq!(body["data"]["changedBy"], "usr_conformance");
}

/// A contact's display name is set, read and cleared within its organization only.
pub async fn contact_names_are_set_and_scoped(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15553800001", secs(0)).await;
    let (_, conv) = receive(s, inbound_from(&line, "+447700900801", Some("Dana"), "wamid.ct-1", secs(1))).await;
    let id = &conv.contact_id;

    let contact = s.get_contact(&t.org.id, id).await.must("get_contact").expect("the contact exists");
    assert_eq!((&contact.id, &contact.organization_id), (id, &t.org.id));
    assert_eq!(contact.phone_number, phone("+447700900801"));
    assert_eq!((contact.display_name.as_deref(), contact.profile_name.as_deref()), (None, Some("Dana")));
    assert_eq!(contact.created_at, secs(1));

    let named = s.set_contact_display_name(&t.org.id, id, Some("VIP Dana"), secs(2)).await.must("set name");
    assert_eq!(named.and_then(|c| c.display_name).as_deref(), Some("VIP Dana"), "returns the contact as it is");
    assert!(s.get_contact(&other.org.id, id).await.must("get_contact").is_none(), "another organization's");
    let foreign = s.set_contact_display_name(&other.org.id, id, Some("Hijack"), secs(3)).await.must("foreign");
    assert!(foreign.is_none(), "another organization cannot rename it");
    let unknown = ContactId::generate(secs(3).unix_ms());
    assert!(s.set_contact_display_name(&t.org.id, &unknown, Some("x"), secs(3)).await.must("unknown").is_none());
    let got = s.get_contact(&t.org.id, id).await.must("get_contact").expect("exists");
    assert_eq!(got.display_name.as_deref(), Some("VIP Dana"), "unchanged by the foreign write");

    let cleared = s.set_contact_display_name(&t.org.id, id, None, secs(4)).await.must("clear").expect("exists");
    assert_eq!(cleared.display_name, None, "None clears the name");
    assert_eq!(cleared.profile_name.as_deref(), Some("Dana"), "the profile name stays");
}

/// Notes are stored and listed newest first with a cursor; a note must name its conversation's
/// organization and line; another organization lists none; notes never reach webhooks.
pub async fn notes_are_listed_newest_first_and_scoped(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15553900001", secs(0)).await;
    let other_line = add_line(s, &t.org.id, "+15553900002", secs(0)).await;
    use WebhookEventKind::*;
    let hook =
        add_webhook(s, &line, "https://r.example/notes", &[MessagesPost, StatusesPost, ChatsPost, ChatsPatch]).await;
    let (_, conv) = receive(s, inbound_from(&line, "+447700900901", None, "wamid.n-1", secs(1))).await;
    let before = deliveries_of(s, &hook).await.len();

    let mut notes = Vec::new();
    for i in 0..5 {
        let n = note(&conv, &t.owner.id, &format!("note {i}"), secs(2 + i));
        s.insert_note(&n).await.must("insert_note");
        notes.push(n);
    }
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s.list_notes(&t.org.id, &conv.id, cursor.as_deref(), 2).await.must("list_notes");
        pages.push(page.items);
        match page.next_cursor {
            Some(next) if pages.len() < 10 => cursor = Some(next),
            Some(_) => panic!("list_notes: the cursor never ends"),
            None => break,
        }
    }
    let expected: Vec<Note> = notes.iter().rev().cloned().collect();
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1], "pages of 2");
    assert_eq!(pages.concat(), expected, "every note once, newest first, as stored");

    let foreign = Note { organization_id: other.org.id.clone(), ..note(&conv, &t.owner.id, "x", secs(9)) };
    expect_error(s.insert_note(&foreign).await, ErrorKind::NotFound, None, "another organization's conversation");
    let wrong_line = Note { line_id: other_line.id.clone(), ..note(&conv, &t.owner.id, "x", secs(9)) };
    expect_error(s.insert_note(&wrong_line).await, ErrorKind::NotFound, None, "a line that is not the conversation's");
    let page = s.list_notes(&other.org.id, &conv.id, None, 50).await.must("list_notes");
    assert!(page.items.is_empty() && page.next_cursor.is_none(), "another organization lists none");
    let all = s.list_notes(&t.org.id, &conv.id, None, 50).await.must("list_notes").items;
    assert_eq!(all.len(), 5, "the refused notes were not stored");
    expect_error(
        s.list_notes(&t.org.id, &conv.id, Some("x"), 5).await,
        ErrorKind::InvalidInput,
        Some("invalid_cursor"),
        "cursor",
    );
    assert_eq!(deliveries_of(s, &hook).await.len(), before, "notes never reach webhooks");
}
