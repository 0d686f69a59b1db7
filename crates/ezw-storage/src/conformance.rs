//! The storage conformance suite: the behaviour every backend of the [`Store`] port must show,
//! written against the trait alone (no SQL), so SQLite, PostgreSQL and any later backend are
//! held to the same contract.
//!
//! A backend's test file supplies a factory and invokes [`conformance_suite!`](crate::conformance_suite):
//!
//! ```ignore
//! async fn sqlite() -> ezw_storage::conformance::Harness {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = ezw_storage::sqlite::SqliteStore::open(dir.path().join("ezw.db")).unwrap();
//!     ezw_storage::conformance::Harness::new(store, dir)
//! }
//! ezw_storage::conformance_suite!(sqlite);
//! ```
//!
//! The macro generates one `#[tokio::test]` per case (multi-threaded runtime), so the calling
//! crate needs `tokio` with the `macros` and `rt-multi-thread` features.
//!
//! # Independence on a shared database
//!
//! Every case creates its own organizations, users and lines with fresh ids, so cases may run
//! concurrently against one database. Two parts of the port are global, though: the outbox
//! ([`Store::claim_outbox`] claims due jobs of every organization, [`Store::outbox_depth`] counts
//! them all) and [`Store::purge_idempotency`]. Cases that use those take a process-wide
//! exclusive lock; cases that only add outbox jobs or idempotency records take it shared; cases
//! that touch neither take nothing. Claiming cases use a large claim limit and then look only at
//! their own organization's jobs, so jobs left behind by other cases (or earlier runs on a
//! persistent database) do not disturb them. The suite assumes no other process uses the
//! database while it runs.
//!
//! Time never comes from a clock: every case passes explicit [`Timestamp`]s, so no case sleeps.

use std::any::Any;
use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ezw_core::crypto::sha256_hex;
use ezw_core::ids::{
    AuditEventId, ConversationId, DeliveryId, LineId, LineTokenId, MessageId, OrganizationId, SessionId, UserId,
    WebhookId,
};
use ezw_core::model::{
    AuditActor, AuditEvent, BillingState, Conversation, DeliveryAttempt, DeliveryStatus, Direction, LifecycleState,
    Line, LineTokenRecord, MediaKind, MediaRef, Membership, MembershipStatus, Message, MessageContent, MessageError,
    MessageKind, MessageStatus, Organization, PayloadFormat, ProviderKind, Role, User, Webhook, WebhookDelivery,
    WebhookEventKind,
};
use ezw_core::ports::{
    AttemptOutcome, AttemptRecord, ConversationQuery, DeliveryJob, DeliveryOutcome, DeliveryResult, EnqueueOutcome,
    IdempotencyClaim, InboundOutcome, JobDisposition, JobResult, MessageChange, NewInbound, NewOutbound, OutboxJob,
    SendTarget, SessionRecord, StatusUpdate, Store,
};
use ezw_core::{ErrorKind, PhoneNumber, Result, Timestamp};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

mod access;
mod cluster;
mod session;
mod workspace;
pub use access::*;
pub use cluster::*;
pub use session::*;
pub use workspace::*;

/// A store under test, plus whatever must live as long as it (a temporary directory, a
/// database handle...).
pub struct Harness {
    /// The store under test.
    pub store: Arc<dyn Store>,
    /// Dropped after the store when the case ends.
    pub guard: Box<dyn Any + Send>,
}

impl Harness {
    /// A harness for `store`, keeping `guard` alive until the case ends.
    pub fn new(store: impl Store, guard: impl Any + Send) -> Self {
        Self { store: Arc::new(store), guard: Box::new(guard) }
    }
}

/// Generates one `#[tokio::test]` per conformance case, each with a fresh [`Harness`] from
/// `factory` (a path to an `async fn() -> Harness`).
///
/// [`Harness`]: crate::conformance::Harness
///
/// ```ignore
/// ezw_storage::conformance_suite!(my_factory);
/// ```
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@cases $factory;
            // organizations, users, memberships, sessions
            create_organization_adds_active_owner,
            duplicate_slug_is_slug_taken,
            duplicate_email_is_email_taken,
            users_are_found_by_email_and_password_hash_is_replaced,
            memberships_are_upserted_and_listed,
            sessions_round_trip,
            // lines and tokens
            lines_are_organization_scoped,
            duplicate_line_number_is_line_exists,
            set_line_state_returns_the_updated_line,
            line_context_carries_billing_state_and_is_scoped,
            line_tokens_rotate,
            // sends
            enqueue_to_phone_creates_contact_conversation_and_job,
            idempotent_replay_returns_the_same_message,
            idempotency_key_reused_with_a_different_request,
            idempotency_keys_are_per_line,
            expired_idempotency_record_is_replaced,
            purge_idempotency_deletes_expired_records,
            concurrent_sends_with_one_key_create_one_message,
            enqueue_to_a_foreign_conversation_is_not_found,
            // the outbox
            claim_takes_the_oldest_job_per_conversation,
            claim_respects_the_limit,
            expired_lease_is_reclaimed_and_stale_lease_is_ignored,
            only_dispatched_jobs_come_back_possibly_sent,
            accepted_job_marks_the_message_sent,
            retry_reschedules_and_counts_the_attempt,
            hold_reschedules_without_counting_an_attempt,
            failed_job_marks_the_message_failed,
            unknown_job_marks_the_message_unknown,
            // provider statuses
            status_updates_only_move_forward,
            late_lower_status_fills_its_missing_timestamp,
            early_status_is_applied_when_the_provider_id_is_recorded,
            // inbound
            inbound_creates_contact_conversation_and_message,
            inbound_duplicates_change_nothing,
            inbound_joins_the_outbound_conversation,
            // reads
            messages_paginate_newest_first,
            conversations_are_ordered_filtered_and_paginated,
            reads_are_organization_scoped,
            // webhooks and audit
            webhook_config_round_trips_and_is_scoped,
            state_changes_queue_deliveries_for_subscribers_in_the_same_write,
            webhook_deliveries_lease_retry_finish_and_disable,
            // access control (conformance/access.rs)
            refresh_tokens_rotate_to_a_new_hash,
            a_reused_refresh_token_revokes_the_session,
            expired_and_revoked_sessions_do_not_rotate,
            used_hashes_of_expired_sessions_are_forgotten,
            concurrent_refreshes_with_one_token_rotate_once,
            invitations_create_users_replace_tokens_and_are_accepted_once,
            invitation_guards_hold,
            membership_updates_guard_the_last_owner_and_revoke_sessions,
            members_are_listed_by_status_and_scoped,
            billing_usage_counts_lines_seats_and_the_open_checkout,
            settling_a_checkout_activates_the_organization_once,
            // team inbox (conformance/workspace.rs)
            line_permissions_round_trip_and_are_scoped,
            visible_line_ids_follow_view_permissions,
            line_creation_is_idempotent_and_respects_slots,
            line_token_rotation_is_audited,
            default_assignee_routes_new_conversations,
            archive_line_fails_queued_work_and_stays_archived,
            inbox_list_filters_search_and_paginates,
            assignment_is_compare_and_set,
            contact_names_are_set_and_scoped,
            notes_are_listed_newest_first_and_scoped,
            // several nodes (conformance/cluster.rs)
            session_leases_are_exclusive_renewable_and_expire,
            concurrent_session_lease_acquisitions_have_one_winner,
            session_lines_are_listed_by_provider_kind,
            // QR session lines (conformance/session.rs)
            line_transitions_are_compare_and_set_and_recorded,
            line_state_changes_and_archiving_are_recorded,
            transition_line_queues_a_channel_patch_event,
            pairing_requests_are_idempotent_and_replace_the_current_one,
            concurrent_pairing_requests_with_one_key_store_one,
            pairing_updates_are_guarded_by_id_and_status,
            requested_pairings_are_listed_by_lease_holder,
            session_state_round_trips_by_kind_scope_and_keys,
            session_state_deletes_take_and_clear,
            concurrent_session_state_takes_return_the_record_once,
            session_state_is_scoped_to_the_line_and_organization,
        );
    };
    (@cases $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let harness: $crate::conformance::Harness = $factory().await;
                $crate::conformance::$case(::std::sync::Arc::clone(&harness.store)).await;
                drop(harness);
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/// Asserts two domain values are equal through their serialized form (most domain types have
/// no `PartialEq`). Fields marked `#[serde(skip)]` must be compared separately.
macro_rules! assert_same {
    ($actual:expr, $expected:expr, $($what:tt)+) => {
        assert_eq!(
            serde_json::to_value(&$actual).expect("domain values serialize"),
            serde_json::to_value(&$expected).expect("domain values serialize"),
            $($what)+
        )
    };
}

/// 2026-01-01T00:00:00Z: every case's times are offsets from here.
const T0: i64 = 1_767_225_600_000;
/// The lease every claim takes.
const LEASE: Duration = Duration::from_secs(30);
/// Claim limit that takes every due job (other cases' jobs are filtered out afterwards).
const CLAIM_ALL: u32 = 10_000;

/// `T0` plus `s` seconds.
fn secs(s: i64) -> Timestamp {
    Timestamp::from_unix_ms(T0 + s * 1000)
}

fn outbox_lock() -> &'static RwLock<()> {
    static LOCK: OnceLock<RwLock<()>> = OnceLock::new();
    LOCK.get_or_init(|| RwLock::new(()))
}

/// Held by cases that add outbox jobs or idempotency records but read no global state.
async fn shared() -> RwLockReadGuard<'static, ()> {
    outbox_lock().read().await
}

/// Held by cases that claim, count the outbox or purge idempotency records.
async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    outbox_lock().write().await
}

trait Must<T> {
    /// The value, or a panic naming the operation and the error.
    fn must(self, what: &str) -> T;
}

impl<T> Must<T> for Result<T> {
    #[track_caller]
    fn must(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{what}: unexpected error {e:?}"),
        }
    }
}

#[track_caller]
fn expect_error<T: Debug>(result: Result<T>, kind: ErrorKind, code: Option<&str>, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected a {kind:?} error, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(e.kind(), kind, "{what}: wrong error kind in {e:?}");
            if let Some(code) = code {
                assert_eq!(e.code(), code, "{what}: wrong error code in {e:?}");
            }
        }
    }
}

fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).expect("test phone numbers are valid E.164")
}

fn new_user(at: Timestamp) -> User {
    let id = UserId::generate(at.unix_ms());
    User {
        email: format!("{}@conformance.example", id.as_str().to_ascii_lowercase()),
        display_name: "Conformance User".into(),
        password_hash: Some("$argon2id$v=19$conformance-initial".into()),
        created_at: at,
        id,
    }
}

fn new_org(at: Timestamp, billing_state: BillingState) -> Organization {
    let id = OrganizationId::generate(at.unix_ms());
    Organization {
        name: "Conformance Org".into(),
        slug: format!("conf-{}", id.as_str().to_ascii_lowercase()),
        billing_state,
        line_slots: 5,
        plan: ezw_core::model::DEFAULT_PLAN.into(),
        created_at: at,
        id,
    }
}

/// An organization with its owner.
struct Tenant {
    org: Organization,
    owner: User,
}

async fn tenant_with(store: &dyn Store, billing_state: BillingState) -> Tenant {
    let at = secs(0);
    let org = new_org(at, billing_state);
    let owner = new_user(at);
    store.create_organization(&org, &owner, true).await.must("create_organization");
    Tenant { org, owner }
}

async fn tenant(store: &dyn Store) -> Tenant {
    tenant_with(store, BillingState::Active).await
}

fn new_line(org: &OrganizationId, number: &str, at: Timestamp) -> Line {
    Line {
        id: LineId::generate(at.unix_ms()),
        organization_id: org.clone(),
        display_name: format!("Line {number}"),
        phone_number: phone(number),
        provider_kind: ProviderKind::Simulator,
        provider_config: serde_json::json!({ "conformance": true, "number": number }),
        lifecycle_state: LifecycleState::Created,
        state_reason: None,
        default_assignee_id: None,
        pacing: None,
        created_at: at,
        updated_at: at,
    }
}

async fn add_line(store: &dyn Store, org: &OrganizationId, number: &str, at: Timestamp) -> Line {
    let line = new_line(org, number, at);
    store.insert_line(&line).await.must("insert_line");
    line
}

#[track_caller]
fn assert_same_line(actual: &Line, expected: &Line, what: &str) {
    assert_same!(actual, expected, "{what}: line fields");
    assert_eq!(actual.provider_config, expected.provider_config, "{what}: provider_config");
}

fn text(body: &str) -> MessageContent {
    MessageContent { body: Some(body.into()), ..MessageContent::default() }
}

fn outbound(line: &Line, target: SendTarget, at: Timestamp, body: &str) -> NewOutbound {
    NewOutbound {
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        target,
        message_id: MessageId::generate(at.unix_ms()),
        kind: MessageKind::Text,
        content: text(body),
        sent_by_user_id: None,
        idempotency: None,
        created_at: at,
    }
}

fn keyed(mut send: NewOutbound, key: &str, fingerprint: &str, expires_at: Timestamp) -> NewOutbound {
    send.idempotency = Some(IdempotencyClaim { key: key.into(), fingerprint: fingerprint.into(), expires_at });
    send
}

#[track_caller]
fn created(outcome: EnqueueOutcome, what: &str) -> Message {
    match outcome {
        EnqueueOutcome::Created(m) => m,
        other => panic!("{what}: expected Created, got {other:?}"),
    }
}

async fn send_new(store: &dyn Store, send: NewOutbound) -> Message {
    created(store.enqueue_outbound(send).await.must("enqueue_outbound"), "enqueue_outbound")
}

async fn send_text(store: &dyn Store, line: &Line, to: &PhoneNumber, at: Timestamp, body: &str) -> Message {
    send_new(store, outbound(line, SendTarget::Phone(to.clone()), at, body)).await
}

fn inbound(line: &Line, from: &PhoneNumber, provider_id: &str, at: Timestamp, body: &str) -> NewInbound {
    NewInbound {
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        from: from.clone(),
        profile_name: Some("Dana Customer".into()),
        provider_message_id: provider_id.into(),
        kind: MessageKind::Text,
        content: text(body),
        received_at: at,
    }
}

async fn receive(store: &dyn Store, msg: NewInbound) -> (Message, Conversation) {
    let mut out = store.record_inbound(vec![msg]).await.must("record_inbound");
    assert_eq!(out.len(), 1, "record_inbound: one outcome per message");
    match out.remove(0) {
        InboundOutcome::Created { message, conversation } => (*message, *conversation),
        InboundOutcome::Duplicate => panic!("record_inbound: a new provider id was reported as Duplicate"),
    }
}

async fn message(store: &dyn Store, org: &OrganizationId, id: &MessageId) -> Message {
    store.get_message(org, id).await.must("get_message").unwrap_or_else(|| panic!("get_message: {id} is missing"))
}

async fn conversation(store: &dyn Store, org: &OrganizationId, id: &ConversationId) -> Conversation {
    store
        .get_conversation(org, id)
        .await
        .must("get_conversation")
        .unwrap_or_else(|| panic!("get_conversation: {id} is missing"))
}

async fn depth(store: &dyn Store) -> u64 {
    store.outbox_depth().await.must("outbox_depth")
}

/// Claims every due job and keeps the ones of `org`.
async fn claim_own(store: &dyn Store, org: &OrganizationId, now: Timestamp) -> Vec<OutboxJob> {
    store
        .claim_outbox(now, LEASE, CLAIM_ALL)
        .await
        .must("claim_outbox")
        .into_iter()
        .filter(|j| &j.message.organization_id == org)
        .collect()
}

/// Claims due jobs and returns the one for `id`, panicking when it is not claimable.
async fn claim_one(store: &dyn Store, org: &OrganizationId, id: &MessageId, now: Timestamp) -> OutboxJob {
    claim_own(store, org, now)
        .await
        .into_iter()
        .find(|j| &j.message.id == id)
        .unwrap_or_else(|| panic!("claim_outbox at {now}: the job of {id} was not claimed"))
}

fn ids(jobs: &[OutboxJob]) -> HashSet<MessageId> {
    jobs.iter().map(|j| j.message.id.clone()).collect()
}

fn attempt_for(disposition: &JobDisposition, started_at: Timestamp) -> Option<AttemptRecord> {
    let (outcome, error) = match disposition {
        JobDisposition::Hold { .. } => return None,
        JobDisposition::Accepted { .. } => (AttemptOutcome::Accepted, None),
        JobDisposition::Retry { .. } => (AttemptOutcome::Retry, Some("try again".to_owned())),
        JobDisposition::Failed { error, .. } => (AttemptOutcome::Failed, Some(error.message.clone())),
        JobDisposition::Unknown { .. } => (AttemptOutcome::Unknown, Some("timed out".to_owned())),
    };
    Some(AttemptRecord { started_at, outcome, provider_code: None, error, latency: Duration::from_millis(42) })
}

/// Finishes `job` under its lease; a provider attempt is recorded except for `Hold`.
async fn finish(store: &dyn Store, job: &OutboxJob, lease_id: &str, disposition: JobDisposition) -> Vec<Message> {
    let attempt = attempt_for(&disposition, job.message.created_at);
    let changes = store
        .finish_outbox(vec![JobResult {
            message_id: job.message.id.clone(),
            lease_id: lease_id.to_owned(),
            attempt,
            disposition,
        }])
        .await
        .must("finish_outbox");
    resolve_changes(store, changes).await
}

/// Sends a message, claims it and records it as accepted under `provider_id`: status `sent`.
async fn accepted_message(
    store: &dyn Store,
    line: &Line,
    to: &PhoneNumber,
    at: Timestamp,
    provider_id: &str,
) -> Message {
    let m = send_text(store, line, to, at, "to be accepted").await;
    let job = claim_one(store, &line.organization_id, &m.id, at).await;
    let changed =
        finish(store, &job, &job.lease_id, JobDisposition::Accepted { provider_message_id: provider_id.into(), at })
            .await;
    assert_eq!(changed.len(), 1, "finish_outbox(Accepted) returns the message that became sent");
    assert_eq!(changed[0].status, MessageStatus::Sent, "an accepted message is sent");
    changed.into_iter().next().expect("one message")
}

fn status(line: &Line, provider_id: &str, status: MessageStatus, at: Timestamp) -> StatusUpdate {
    StatusUpdate {
        line_id: line.id.clone(),
        provider_message_id: provider_id.into(),
        message_id: None,
        status,
        at,
        error: None,
    }
}

async fn apply(store: &dyn Store, updates: Vec<StatusUpdate>) -> Vec<Message> {
    let changes = store.apply_status_updates(updates).await.must("apply_status_updates");
    resolve_changes(store, changes).await
}

/// Reads the messages a change list names, checking each change record against the stored row.
async fn resolve_changes(store: &dyn Store, changes: Vec<MessageChange>) -> Vec<Message> {
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        let m =
            store.get_message(&c.organization_id, &c.id).await.must("get_message").expect("a changed message exists");
        assert_eq!(m.status, c.status, "the change record carries the message's new status");
        assert_eq!(
            (&m.line_id, &m.conversation_id),
            (&c.line_id, &c.conversation_id),
            "the change names its line and conversation"
        );
        out.push(m);
    }
    out
}

fn message_ids(messages: &[Message]) -> Vec<MessageId> {
    messages.iter().map(|m| m.id.clone()).collect()
}

/// Walks every page of a conversation's messages.
async fn message_pages(
    store: &dyn Store,
    org: &OrganizationId,
    conv: &ConversationId,
    limit: u32,
) -> Vec<Vec<Message>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_messages(org, conv, cursor.as_deref(), limit).await.must("list_messages");
        pages.push(page.items);
        match page.next_cursor {
            Some(next) => {
                assert!(pages.len() <= 1000, "list_messages: the cursor never reaches the last page");
                cursor = Some(next);
            }
            None => return pages,
        }
    }
}

/// Walks every page of a conversation listing.
async fn conversation_pages(
    store: &dyn Store,
    org: &OrganizationId,
    mut query: ConversationQuery,
) -> Vec<Vec<ConversationId>> {
    let mut pages = Vec::new();
    loop {
        let page = store.list_conversations(org, &query).await.must("list_conversations");
        pages.push(page.items.into_iter().map(|c| c.id).collect());
        match page.next_cursor {
            Some(next) => {
                assert!(pages.len() <= 1000, "list_conversations: the cursor never reaches the last page");
                query.cursor = Some(next);
            }
            None => return pages,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// organizations, users, memberships, sessions
// ---------------------------------------------------------------------------------------------

/// `create_organization` stores the organization and its new owner and gives the owner an
/// active `Owner` membership; the organization is found by id and by slug.
pub async fn create_organization_adds_active_owner(store: Arc<dyn Store>) {
    let s = &*store;
    let at = secs(0);
    let org = new_org(at, BillingState::Pending);
    let owner = new_user(at);
    s.create_organization(&org, &owner, true).await.must("create_organization");

    let got = s.get_organization(&org.id).await.must("get_organization");
    let got = got.expect("get_organization: the new organization is missing");
    assert_same!(got, org, "get_organization returns the organization as created");
    let by_slug = s.find_organization_by_slug(&org.slug).await.must("find_organization_by_slug");
    let by_slug = by_slug.expect("find_organization_by_slug: the new organization is not found by its slug");
    assert_same!(by_slug, org, "find_organization_by_slug returns the organization as created");
    let missing = s.find_organization_by_slug(&format!("{}-missing", org.slug)).await.must("find_organization_by_slug");
    assert!(missing.is_none(), "find_organization_by_slug: an unknown slug must find nothing");
    let missing = s.get_organization(&OrganizationId::generate(at.unix_ms())).await.must("get_organization");
    assert!(missing.is_none(), "get_organization: an unknown id must find nothing");

    let user = s.get_user(&owner.id).await.must("get_user").expect("create_organization(new_user) stores the owner");
    assert_same!(user, owner, "get_user returns the owner as created");
    assert_eq!(user.password_hash, owner.password_hash, "get_user: password hash");

    let m = s.get_membership(&org.id, &owner.id).await.must("get_membership");
    let m = m.expect("create_organization gives the owner a membership");
    assert_eq!(m.role, Role::Owner, "the creating user is an owner");
    assert_eq!(m.status, MembershipStatus::Active, "the owner membership is active");
    assert_eq!((&m.organization_id, &m.user_id), (&org.id, &owner.id), "membership keys");

    let all = s.list_user_memberships(&owner.id).await.must("list_user_memberships");
    assert_eq!(all.len(), 1, "list_user_memberships: the new owner has exactly one membership");
    assert_eq!(all[0].organization_id, org.id);
    assert_eq!(all[0].role, Role::Owner);
}

/// A second organization with a taken slug fails with `Conflict` `slug_taken` and stores
/// nothing, not even its new owner.
pub async fn duplicate_slug_is_slug_taken(store: Arc<dyn Store>) {
    let s = &*store;
    let first = tenant(s).await;
    let mut org = new_org(secs(1), BillingState::Active);
    org.slug.clone_from(&first.org.slug);
    let owner = new_user(secs(1));

    let result = s.create_organization(&org, &owner, true).await;
    expect_error(result, ErrorKind::Conflict, Some("slug_taken"), "create_organization with a taken slug");

    assert!(s.get_organization(&org.id).await.must("get_organization").is_none(), "the rejected org is not stored");
    let user = s.find_user_by_email(&owner.email).await.must("find_user_by_email");
    assert!(user.is_none(), "a rejected create_organization must not leave its new owner behind");
    let by_slug = s.find_organization_by_slug(&first.org.slug).await.must("find_organization_by_slug");
    assert_eq!(by_slug.map(|o| o.id), Some(first.org.id), "the slug still belongs to the first organization");
}

/// `insert_user` with a taken email fails with `Conflict` `email_taken`; so does
/// `create_organization` with a new owner whose email is taken, storing no organization.
pub async fn duplicate_email_is_email_taken(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let mut dup = new_user(secs(1));
    dup.email.clone_from(&t.owner.email);

    expect_error(s.insert_user(&dup).await, ErrorKind::Conflict, Some("email_taken"), "insert_user with a taken email");
    assert!(s.get_user(&dup.id).await.must("get_user").is_none(), "the rejected user is not stored");

    let org = new_org(secs(2), BillingState::Active);
    let result = s.create_organization(&org, &dup, true).await;
    expect_error(result, ErrorKind::Conflict, Some("email_taken"), "create_organization with a taken owner email");
    assert!(
        s.get_organization(&org.id).await.must("get_organization").is_none(),
        "create_organization is atomic: no organization without its owner"
    );
    let by_slug = s.find_organization_by_slug(&org.slug).await.must("find_organization_by_slug");
    assert!(by_slug.is_none(), "create_organization is atomic: the slug stays free");

    let found = s.find_user_by_email(&t.owner.email).await.must("find_user_by_email");
    assert_eq!(found.map(|u| u.id), Some(t.owner.id), "the email still belongs to the first user");
}

/// Users are found by id and email; `set_password_hash` replaces only the hash.
pub async fn users_are_found_by_email_and_password_hash_is_replaced(store: Arc<dyn Store>) {
    let s = &*store;
    let u = new_user(secs(0));
    s.insert_user(&u).await.must("insert_user");

    let by_email = s.find_user_by_email(&u.email).await.must("find_user_by_email");
    let by_email = by_email.expect("find_user_by_email: the new user is not found");
    assert_same!(by_email, u, "find_user_by_email returns the user as inserted");
    assert_eq!(by_email.password_hash, u.password_hash, "find_user_by_email: password hash");
    let by_id = s.get_user(&u.id).await.must("get_user").expect("get_user: the new user is missing");
    assert_same!(by_id, u, "get_user returns the user as inserted");

    s.set_password_hash(&u.id, "$argon2id$v=19$conformance-replaced").await.must("set_password_hash");
    let after = s.get_user(&u.id).await.must("get_user").expect("user still exists");
    assert_eq!(after.password_hash.as_deref(), Some("$argon2id$v=19$conformance-replaced"), "hash replaced");
    assert_same!(after, u, "set_password_hash changes nothing but the hash");
    let after = s.find_user_by_email(&u.email).await.must("find_user_by_email").expect("user still found");
    assert_eq!(after.password_hash.as_deref(), Some("$argon2id$v=19$conformance-replaced"));

    let other = new_user(secs(1));
    assert!(s.find_user_by_email(&other.email).await.must("find_user_by_email").is_none(), "unknown email");
    assert!(s.get_user(&other.id).await.must("get_user").is_none(), "unknown user id");
}

/// An existing user can own a second organization (`new_user = false`); `upsert_membership`
/// inserts, then updates role and status in place; `list_user_memberships` lists them all.
pub async fn memberships_are_upserted_and_listed(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s).await;
    let org_b = new_org(secs(10), BillingState::Active);
    s.create_organization(&org_b, &a.owner, false).await.must("create_organization with an existing owner");

    let m = s.get_membership(&org_b.id, &a.owner.id).await.must("get_membership");
    let m = m.expect("the existing user owns the second organization");
    assert_eq!((m.role, m.status), (Role::Owner, MembershipStatus::Active));
    let all = s.list_user_memberships(&a.owner.id).await.must("list_user_memberships");
    let orgs: HashSet<_> = all.iter().map(|m| m.organization_id.clone()).collect();
    assert_eq!(orgs, HashSet::from([a.org.id.clone(), org_b.id.clone()]), "both memberships are listed");
    assert_eq!(all.len(), 2, "list_user_memberships: one entry per organization");
    assert!(all.iter().all(|m| m.user_id == a.owner.id && m.role == Role::Owner));

    let member = new_user(secs(20));
    s.insert_user(&member).await.must("insert_user");
    let invite = Membership {
        organization_id: a.org.id.clone(),
        user_id: member.id.clone(),
        role: Role::Operator,
        status: MembershipStatus::Invited,
        created_at: secs(20),
    };
    s.upsert_membership(&invite).await.must("upsert_membership (insert)");
    let got = s.get_membership(&a.org.id, &member.id).await.must("get_membership").expect("membership inserted");
    assert_eq!((got.role, got.status), (Role::Operator, MembershipStatus::Invited));

    let promoted = Membership { role: Role::Admin, status: MembershipStatus::Disabled, created_at: secs(30), ..invite };
    s.upsert_membership(&promoted).await.must("upsert_membership (update)");
    let got = s.get_membership(&a.org.id, &member.id).await.must("get_membership").expect("membership still there");
    assert_eq!((got.role, got.status), (Role::Admin, MembershipStatus::Disabled), "upsert updates role and status");
    let all = s.list_user_memberships(&member.id).await.must("list_user_memberships");
    assert_eq!(all.len(), 1, "upsert_membership replaces; it does not add a second membership");
    assert_eq!((all[0].role, all[0].status), (Role::Admin, MembershipStatus::Disabled));
    assert!(s.get_membership(&org_b.id, &member.id).await.must("get_membership").is_none(), "not a member of B");
}

/// Sessions are stored and read back with every field; unknown ids find nothing.
pub async fn sessions_round_trip(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let session = |created: i64, revoked: Option<Timestamp>| {
        let id = SessionId::generate(secs(created).unix_ms());
        SessionRecord {
            refresh_token_hash: sha256_hex(id.as_str().as_bytes()),
            id,
            user_id: t.owner.id.clone(),
            organization_id: t.org.id.clone(),
            created_at: secs(created),
            expires_at: secs(created + 86_400),
            revoked_at: revoked,
        }
    };
    for record in [session(1, None), session(2, Some(secs(3)))] {
        s.insert_session(&record).await.must("insert_session");
        let got = s.get_session(&record.id).await.must("get_session").expect("get_session: stored session missing");
        assert_eq!(got.id, record.id);
        assert_eq!(got.user_id, record.user_id, "session user");
        assert_eq!(got.organization_id, record.organization_id, "session organization");
        assert_eq!(got.refresh_token_hash, record.refresh_token_hash, "session refresh token hash");
        assert_eq!(got.created_at, record.created_at, "session created_at");
        assert_eq!(got.expires_at, record.expires_at, "session expires_at");
        assert_eq!(got.revoked_at, record.revoked_at, "session revoked_at");
    }
    let unknown = SessionId::generate(secs(4).unix_ms());
    assert!(s.get_session(&unknown).await.must("get_session").is_none(), "unknown session id");
}

// ---------------------------------------------------------------------------------------------
// lines and tokens
// ---------------------------------------------------------------------------------------------

/// `get_line` and `list_lines` see only the caller's organization (oldest line first);
/// `get_line_unscoped` finds any line by id.
pub async fn lines_are_organization_scoped(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s).await;
    let b = tenant(s).await;
    let a1 = add_line(s, &a.org.id, "+15550100001", secs(1)).await;
    let mut a2 = new_line(&a.org.id, "+15550100002", secs(2));
    a2.default_assignee_id = Some(a.owner.id.clone());
    a2.lifecycle_state = LifecycleState::Connected;
    a2.state_reason = Some("paired by conformance".into());
    a2.provider_kind = ProviderKind::Meta;
    s.insert_line(&a2).await.must("insert_line");
    let b1 = add_line(s, &b.org.id, "+15550100003", secs(3)).await;

    for line in [&a1, &a2] {
        let got = s.get_line(&a.org.id, &line.id).await.must("get_line");
        assert_same_line(&got.expect("get_line: own line missing"), line, "get_line");
    }
    assert!(s.get_line(&a.org.id, &b1.id).await.must("get_line").is_none(), "get_line: another org's line is None");
    assert!(s.get_line(&b.org.id, &a1.id).await.must("get_line").is_none(), "get_line: another org's line is None");

    let listed: Vec<LineId> = s.list_lines(&a.org.id).await.must("list_lines").into_iter().map(|l| l.id).collect();
    assert_eq!(listed, vec![a1.id.clone(), a2.id.clone()], "list_lines: only the org's lines, oldest first");
    let listed: Vec<LineId> = s.list_lines(&b.org.id).await.must("list_lines").into_iter().map(|l| l.id).collect();
    assert_eq!(listed, vec![b1.id.clone()], "list_lines: only the org's lines");

    let unscoped = s.get_line_unscoped(&b1.id).await.must("get_line_unscoped");
    assert_same_line(&unscoped.expect("get_line_unscoped finds any line"), &b1, "get_line_unscoped");
    let unknown = LineId::generate(secs(4).unix_ms());
    assert!(s.get_line_unscoped(&unknown).await.must("get_line_unscoped").is_none(), "unknown line id");
}

/// A second line with the same number in one organization fails with `Conflict`
/// `line_exists`; the same number in another organization is fine.
pub async fn duplicate_line_number_is_line_exists(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s).await;
    let b = tenant(s).await;
    let number = "+15550200001";
    add_line(s, &a.org.id, number, secs(1)).await;
    let dup = new_line(&a.org.id, number, secs(2));
    expect_error(
        s.insert_line(&dup).await,
        ErrorKind::Conflict,
        Some("line_exists"),
        "insert_line with a taken number",
    );
    assert!(s.get_line(&a.org.id, &dup.id).await.must("get_line").is_none(), "the rejected line is not stored");
    assert_eq!(s.list_lines(&a.org.id).await.must("list_lines").len(), 1, "still one line");

    let other = add_line(s, &b.org.id, number, secs(3)).await;
    assert!(s.get_line(&b.org.id, &other.id).await.must("get_line").is_some(), "same number, other org: stored");
}

/// `set_line_state` returns the line as it now is; it cannot touch another organization's
/// line (returns `None`, changes nothing).
pub async fn set_line_state_returns_the_updated_line(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant(s).await;
    let b = tenant(s).await;
    let line = add_line(s, &a.org.id, "+15550300001", secs(1)).await;

    let updated = s.set_line_state(&a.org.id, &line.id, LifecycleState::Connected, Some("paired"), secs(5)).await;
    let updated = updated.must("set_line_state").expect("set_line_state returns the updated line");
    assert_eq!(updated.lifecycle_state, LifecycleState::Connected, "new state");
    assert_eq!(updated.state_reason.as_deref(), Some("paired"), "new reason");
    assert_eq!(updated.updated_at, secs(5), "updated_at is the change time");
    assert_eq!((&updated.id, updated.created_at), (&line.id, line.created_at), "identity unchanged");
    assert_eq!(updated.phone_number, line.phone_number);
    let read = s.get_line(&a.org.id, &line.id).await.must("get_line").expect("line exists");
    assert_same_line(&read, &updated, "get_line after set_line_state");

    let updated = s.set_line_state(&a.org.id, &line.id, LifecycleState::Reconnecting, None, secs(6)).await;
    let updated = updated.must("set_line_state").expect("set_line_state returns the updated line");
    assert_eq!(updated.lifecycle_state, LifecycleState::Reconnecting);
    assert_eq!(updated.state_reason, None, "a state without a reason clears the old reason");

    let foreign = s.set_line_state(&b.org.id, &line.id, LifecycleState::Archived, Some("x"), secs(7)).await;
    assert!(foreign.must("set_line_state").is_none(), "set_line_state with another org's id returns None");
    let read = s.get_line(&a.org.id, &line.id).await.must("get_line").expect("line exists");
    assert_eq!(read.lifecycle_state, LifecycleState::Reconnecting, "another org cannot change the line's state");
    assert_eq!(read.updated_at, secs(6));

    let unknown = LineId::generate(secs(8).unix_ms());
    let missing = s.set_line_state(&a.org.id, &unknown, LifecycleState::Connected, None, secs(8)).await;
    assert!(missing.must("set_line_state").is_none(), "set_line_state on an unknown line returns None");
}

/// `get_line_context` returns an organization's line as it now is, with the organization's
/// billing state; another organization's id (or an unknown line) finds nothing.
pub async fn line_context_carries_billing_state_and_is_scoped(store: Arc<dyn Store>) {
    let s = &*store;
    let a = tenant_with(s, BillingState::Restricted).await;
    let b = tenant(s).await;
    let line = add_line(s, &a.org.id, "+15553000001", secs(1)).await;

    let ctx = s.get_line_context(&a.org.id, &line.id).await.must("get_line_context");
    let ctx = ctx.expect("get_line_context: own line missing");
    assert_same_line(&ctx.line, &line, "get_line_context");
    assert_eq!(ctx.billing_state, BillingState::Restricted, "get_line_context carries the org's billing state");

    s.set_line_state(&a.org.id, &line.id, LifecycleState::Connected, None, secs(2)).await.must("set_line_state");
    let ctx = s.get_line_context(&a.org.id, &line.id).await.must("get_line_context").expect("line exists");
    assert_eq!(ctx.line.lifecycle_state, LifecycleState::Connected, "get_line_context reads the current state");

    let foreign = s.get_line_context(&b.org.id, &line.id).await.must("get_line_context");
    assert!(foreign.is_none(), "get_line_context with another org's id is None");
    let unknown = LineId::generate(secs(3).unix_ms());
    assert!(s.get_line_context(&a.org.id, &unknown).await.must("get_line_context").is_none(), "unknown line");
}

fn line_token(t: &Tenant, line: &Line, at: Timestamp) -> LineTokenRecord {
    let id = LineTokenId::generate(at.unix_ms());
    LineTokenRecord {
        token_hash: sha256_hex(id.as_str().as_bytes()),
        last_four: id.as_str()[id.as_str().len() - 4..].to_owned(),
        id,
        organization_id: t.org.id.clone(),
        line_id: line.id.clone(),
        created_by: Some(t.owner.id.clone()),
        created_at: at,
    }
}

/// `replace_line_token` returns `false` for a line's first token and `true` when it rotates
/// one; only the current token resolves (with its line and the org's billing state), and
/// tokens of other lines are untouched.
pub async fn line_tokens_rotate(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant_with(s, BillingState::Pending).await;
    let line = add_line(s, &t.org.id, "+15550400001", secs(1)).await;
    let other_line = add_line(s, &t.org.id, "+15550400002", secs(1)).await;

    let first = line_token(&t, &line, secs(2));
    assert!(!s.replace_line_token(&first).await.must("replace_line_token"), "the first token revokes nothing");
    let found = s.find_line_token(&first.token_hash).await.must("find_line_token");
    let found = found.expect("find_line_token resolves the active token");
    assert_eq!(found.token_id, first.id, "token id");
    assert_same_line(&found.line, &line, "find_line_token line");
    assert_eq!(found.billing_state, BillingState::Pending, "find_line_token carries the org's billing state");

    let other = line_token(&t, &other_line, secs(3));
    assert!(!s.replace_line_token(&other).await.must("replace_line_token"), "another line's token is not revoked");

    let second = line_token(&t, &line, secs(4));
    assert!(s.replace_line_token(&second).await.must("replace_line_token"), "rotation revokes the old token");
    assert!(
        s.find_line_token(&first.token_hash).await.must("find_line_token").is_none(),
        "a revoked token no longer resolves"
    );
    let found = s.find_line_token(&second.token_hash).await.must("find_line_token").expect("the new token resolves");
    assert_eq!((found.token_id, found.line.id), (second.id, line.id.clone()), "new token, same line");
    let found = s.find_line_token(&other.token_hash).await.must("find_line_token");
    assert_eq!(found.map(|f| f.line.id), Some(other_line.id), "rotating one line's token leaves others active");

    let unknown = sha256_hex(b"conformance: never issued");
    assert!(s.find_line_token(&unknown).await.must("find_line_token").is_none(), "unknown hash");
}

// ---------------------------------------------------------------------------------------------
// sends
// ---------------------------------------------------------------------------------------------

/// A send to a phone creates the contact, the conversation, a `queued` message and its outbox
/// job; a second send to the same phone reuses the conversation.
pub async fn enqueue_to_phone_creates_contact_conversation_and_job(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15550500001", secs(0)).await;
    let to = phone("+447700900001");
    assert!(s.find_contact_id(&t.org.id, &to).await.must("find_contact_id").is_none(), "no contact yet");
    let depth0 = depth(s).await;

    let mut send = outbound(&line, SendTarget::Phone(to.clone()), secs(1), "hello");
    send.sent_by_user_id = Some(t.owner.id.clone());
    send.kind = MessageKind::Image;
    send.content.media = Some(MediaRef {
        kind: MediaKind::Image,
        url: Some("https://example.com/a.png".into()),
        attachment_id: None,
        provider_media_id: None,
        sha256: None,
        caption: Some("hello".into()),
        filename: None,
        mime_type: Some("image/png".into()),
    });
    let expected_id = send.message_id.clone();
    let expected_content = send.content.clone();
    let m = send_new(s, send).await;
    assert_eq!(m.id, expected_id, "the message gets the id of the request");
    assert_eq!(m.status, MessageStatus::Queued, "a new send is queued");
    assert_eq!(m.direction, Direction::Outbound);
    assert_eq!(m.kind, MessageKind::Image);
    assert_eq!(m.content, expected_content, "content is stored as given");
    assert_eq!((&m.organization_id, &m.line_id), (&t.org.id, &line.id));
    assert_eq!(m.status_timestamps.queued_at, Some(secs(1)), "queued_at is the acceptance time");
    assert_eq!(m.status_timestamps.sent_at, None);
    assert_eq!(m.attempts, 0);
    assert_eq!(m.provider_message_id, None);
    assert_eq!(m.sent_by_user_id.as_ref(), Some(&t.owner.id));
    assert_eq!(m.idempotency_key, None);
    assert_eq!(m.created_at, secs(1));
    assert_eq!(depth(s).await, depth0 + 1, "the send adds one outbox job");

    assert_same!(message(s, &t.org.id, &m.id).await, m, "get_message returns the queued message");
    let conv = conversation(s, &t.org.id, &m.conversation_id).await;
    assert_eq!((&conv.organization_id, &conv.line_id), (&t.org.id, &line.id), "conversation belongs to the line");
    assert_eq!(conv.contact_phone, to, "conversation contact phone");
    assert_eq!(conv.last_message_at, Some(secs(1)), "last_message_at is the send time");
    assert_eq!(conv.last_inbound_at, None, "no inbound message yet");
    let contact = s.find_contact_id(&t.org.id, &to).await.must("find_contact_id");
    assert_eq!(contact.as_ref(), Some(&conv.contact_id), "the send created the contact of the conversation");

    let page = s.list_messages(&t.org.id, &conv.id, None, 50).await.must("list_messages");
    assert_eq!(message_ids(&page.items), vec![m.id.clone()], "list_messages shows the queued message");
    assert!(page.next_cursor.is_none(), "a single page has no next cursor");

    let m2 = send_text(s, &line, &to, secs(2), "again").await;
    assert_eq!(m2.conversation_id, conv.id, "a second send to the same phone reuses the conversation");
    assert_eq!(depth(s).await, depth0 + 2, "each send adds one outbox job");
    let contact2 = s.find_contact_id(&t.org.id, &to).await.must("find_contact_id");
    assert_eq!(contact2, contact, "the contact is reused");
    let conv = conversation(s, &t.org.id, &conv.id).await;
    assert_eq!(conv.last_message_at, Some(secs(2)), "last_message_at follows the newest message");
    let page = s.list_messages(&t.org.id, &conv.id, None, 50).await.must("list_messages");
    assert_eq!(message_ids(&page.items), vec![m2.id.clone(), m.id.clone()], "both messages, newest first");

    let m3 = send_text(s, &line, &phone("+447700900002"), secs(3), "someone else").await;
    assert_ne!(m3.conversation_id, conv.id, "another phone gets another conversation");
}

/// The same key with the same fingerprint replays the first message; no second message or
/// job is created.
pub async fn idempotent_replay_returns_the_same_message(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15550600001", secs(0)).await;
    let to = SendTarget::Phone(phone("+447700900011"));

    let first = keyed(outbound(&line, to.clone(), secs(1), "once"), "order-1", "fp-a", secs(3600));
    let first = send_new(s, first).await;
    assert_eq!(first.idempotency_key.as_deref(), Some("order-1"), "the message records its key");

    let again = keyed(outbound(&line, to, secs(2), "once"), "order-1", "fp-a", secs(3600));
    let again_id = again.message_id.clone();
    match s.enqueue_outbound(again).await.must("enqueue_outbound (replay)") {
        EnqueueOutcome::Replayed(m) => {
            assert_eq!(m.id, first.id, "a replay returns the first message");
            assert_eq!(m.conversation_id, first.conversation_id);
            assert_eq!(m.idempotency_key.as_deref(), Some("order-1"));
        }
        other => panic!("same key and fingerprint: expected Replayed, got {other:?}"),
    }
    assert!(s.get_message(&t.org.id, &again_id).await.must("get_message").is_none(), "the replay stores nothing");
    let page = s.list_messages(&t.org.id, &first.conversation_id, None, 50).await.must("list_messages");
    assert_eq!(message_ids(&page.items), vec![first.id], "still one message");
}

/// The same key with a different fingerprint is `KeyReused` naming the first message.
pub async fn idempotency_key_reused_with_a_different_request(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15550700001", secs(0)).await;
    let to = SendTarget::Phone(phone("+447700900021"));

    let first = send_new(s, keyed(outbound(&line, to.clone(), secs(1), "a"), "k", "fp-a", secs(3600))).await;
    let other = keyed(outbound(&line, to, secs(2), "b"), "k", "fp-b", secs(3600));
    let other_id = other.message_id.clone();
    match s.enqueue_outbound(other).await.must("enqueue_outbound (reused key)") {
        EnqueueOutcome::KeyReused { message_id } => assert_eq!(message_id, first.id, "KeyReused names the first"),
        other => panic!("same key, different fingerprint: expected KeyReused, got {other:?}"),
    }
    assert!(s.get_message(&t.org.id, &other_id).await.must("get_message").is_none(), "nothing stored");
    let page = s.list_messages(&t.org.id, &first.conversation_id, None, 50).await.must("list_messages");
    assert_eq!(page.items.len(), 1, "still one message");
}

/// Idempotency keys are per line: the same key and fingerprint on another line creates a new
/// message.
pub async fn idempotency_keys_are_per_line(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let line_a = add_line(s, &t.org.id, "+15550800001", secs(0)).await;
    let line_b = add_line(s, &t.org.id, "+15550800002", secs(0)).await;
    let to = SendTarget::Phone(phone("+447700900031"));

    let a = send_new(s, keyed(outbound(&line_a, to.clone(), secs(1), "x"), "shared-key", "fp", secs(3600))).await;
    let b = keyed(outbound(&line_b, to, secs(2), "x"), "shared-key", "fp", secs(3600));
    let b = created(s.enqueue_outbound(b).await.must("enqueue_outbound"), "the same key on another line");
    assert_ne!(a.id, b.id, "two messages");
    assert_eq!(b.line_id, line_b.id);
    assert_ne!(a.conversation_id, b.conversation_id, "each line has its own conversation");
}

/// A record whose `expires_at` is at or before the new send's `created_at` no longer counts:
/// the send is created and the key now belongs to the new message.
pub async fn expired_idempotency_record_is_replaced(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15550900001", secs(0)).await;
    let to = SendTarget::Phone(phone("+447700900041"));

    let first = send_new(s, keyed(outbound(&line, to.clone(), secs(1), "a"), "k", "fp-a", secs(10))).await;
    let early = keyed(outbound(&line, to.clone(), secs(9), "b"), "k", "fp-b", secs(100));
    match s.enqueue_outbound(early).await.must("enqueue_outbound before expiry") {
        EnqueueOutcome::KeyReused { message_id } => assert_eq!(message_id, first.id),
        other => panic!("before expiry the record holds: expected KeyReused, got {other:?}"),
    }

    let at_expiry = keyed(outbound(&line, to.clone(), secs(10), "b"), "k", "fp-b", secs(100));
    let second = created(s.enqueue_outbound(at_expiry).await.must("enqueue_outbound"), "send at expires_at");
    assert_ne!(second.id, first.id, "a new message replaces the expired record");

    let replay = keyed(outbound(&line, to.clone(), secs(11), "b"), "k", "fp-b", secs(100));
    match s.enqueue_outbound(replay).await.must("enqueue_outbound (replay)") {
        EnqueueOutcome::Replayed(m) => assert_eq!(m.id, second.id, "the key now belongs to the new message"),
        other => panic!("expected Replayed of the replacing message, got {other:?}"),
    }
    let old_fp = keyed(outbound(&line, to, secs(12), "a"), "k", "fp-a", secs(100));
    match s.enqueue_outbound(old_fp).await.must("enqueue_outbound (old fingerprint)") {
        EnqueueOutcome::KeyReused { message_id } => assert_eq!(message_id, second.id),
        other => panic!("the old fingerprint no longer matches: expected KeyReused, got {other:?}"),
    }
}

/// `purge_idempotency(now)` deletes the records that expired by `now`, returns how many, and
/// keeps the others.
pub async fn purge_idempotency_deletes_expired_records(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551000001", secs(0)).await;
    let to = SendTarget::Phone(phone("+447700900051"));
    let now = secs(1000);
    // Other cases may have left records that are expired by `now`; start from none.
    s.purge_idempotency(now).await.must("purge_idempotency");

    send_new(s, keyed(outbound(&line, to.clone(), secs(1), "1"), "k1", "fp", secs(500))).await;
    send_new(s, keyed(outbound(&line, to.clone(), secs(2), "2"), "k2", "fp", secs(999))).await;
    let kept = send_new(s, keyed(outbound(&line, to.clone(), secs(3), "3"), "k3", "fp", secs(5000))).await;

    assert_eq!(s.purge_idempotency(now).await.must("purge_idempotency"), 2, "two records expired before now");
    assert_eq!(s.purge_idempotency(now).await.must("purge_idempotency"), 0, "nothing left to purge");

    // k1 is gone: even before its old expiry a different request with it is created.
    let reuse = keyed(outbound(&line, to.clone(), secs(4), "other"), "k1", "fp-other", secs(5000));
    created(s.enqueue_outbound(reuse).await.must("enqueue_outbound"), "a purged key is free again");
    // k3 is kept.
    let reuse = keyed(outbound(&line, to, secs(5), "other"), "k3", "fp-other", secs(5000));
    match s.enqueue_outbound(reuse).await.must("enqueue_outbound") {
        EnqueueOutcome::KeyReused { message_id } => assert_eq!(message_id, kept.id, "unexpired record survives"),
        other => panic!("purge must keep unexpired records: expected KeyReused, got {other:?}"),
    }
}

/// 50 concurrent sends with one key and fingerprint: exactly one is created, 49 replay it,
/// and the outbox grows by exactly one job.
pub async fn concurrent_sends_with_one_key_create_one_message(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551100001", secs(0)).await;
    let to = phone("+447700900061");
    let depth0 = depth(s).await;

    let handles: Vec<_> = (0..50)
        .map(|_| {
            let store = Arc::clone(&store);
            let send = outbound(&line, SendTarget::Phone(to.clone()), secs(1), "same request");
            let send = keyed(send, "concurrent-key", "fp-same", secs(3600));
            tokio::spawn(async move { store.enqueue_outbound(send).await })
        })
        .collect();
    let (mut fresh, mut replayed) = (Vec::new(), Vec::new());
    for h in handles {
        match h.await.expect("an enqueue task panicked").must("concurrent enqueue_outbound") {
            EnqueueOutcome::Created(m) => fresh.push(m),
            EnqueueOutcome::Replayed(m) => replayed.push(m),
            EnqueueOutcome::KeyReused { message_id } => {
                panic!("same fingerprint must never be KeyReused (message {message_id})")
            }
        }
    }
    assert_eq!(fresh.len(), 1, "exactly one concurrent send creates the message");
    assert_eq!(replayed.len(), 49, "every other concurrent send replays it");
    let id = &fresh[0].id;
    assert!(replayed.iter().all(|m| &m.id == id), "every replay returns the created message");
    assert_eq!(depth(s).await, depth0 + 1, "exactly one outbox job");
    let page = s.list_messages(&t.org.id, &fresh[0].conversation_id, None, 100).await.must("list_messages");
    assert_eq!(message_ids(&page.items), vec![id.clone()], "exactly one message stored");
}

/// Sending to a conversation of another organization, of another line, or to an unknown one
/// is `NotFound` and stores nothing (not even the idempotency key).
pub async fn enqueue_to_a_foreign_conversation_is_not_found(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let a = tenant(s).await;
    let b = tenant(s).await;
    let a1 = add_line(s, &a.org.id, "+15551200001", secs(0)).await;
    let a2 = add_line(s, &a.org.id, "+15551200002", secs(0)).await;
    let b1 = add_line(s, &b.org.id, "+15551200003", secs(0)).await;
    let to = phone("+447700900071");
    let conv_a2 = send_text(s, &a2, &to, secs(1), "a2").await.conversation_id;
    let conv_b = send_text(s, &b1, &to, secs(1), "b1").await.conversation_id;

    let targets = [
        (conv_b.clone(), "a conversation of another organization"),
        (conv_a2.clone(), "a conversation of another line of the same organization"),
        (ConversationId::generate(secs(2).unix_ms()), "an unknown conversation"),
    ];
    for (conv, what) in targets {
        let send = keyed(outbound(&a1, SendTarget::Conversation(conv), secs(2), "x"), "foreign", "fp", secs(3600));
        let id = send.message_id.clone();
        expect_error(s.enqueue_outbound(send).await, ErrorKind::NotFound, None, what);
        assert!(s.get_message(&a.org.id, &id).await.must("get_message").is_none(), "{what}: nothing stored");
    }
    assert_eq!(s.list_messages(&a.org.id, &conv_a2, None, 50).await.must("list_messages").items.len(), 1);
    assert_eq!(s.list_messages(&b.org.id, &conv_b, None, 50).await.must("list_messages").items.len(), 1);

    // The failed sends did not consume the key.
    let send = keyed(outbound(&a1, SendTarget::Phone(to), secs(3), "y"), "foreign", "fp-other", secs(3600));
    created(s.enqueue_outbound(send).await.must("enqueue_outbound"), "a key used only by failed sends is free");
    // The line's own conversation is a valid target.
    let own = outbound(&a2, SendTarget::Conversation(conv_a2.clone()), secs(4), "own");
    let own = created(s.enqueue_outbound(own).await.must("enqueue_outbound"), "send to the line's own conversation");
    assert_eq!(own.conversation_id, conv_a2, "the message joins the target conversation");
}

// ---------------------------------------------------------------------------------------------
// the outbox
// ---------------------------------------------------------------------------------------------

/// A claim takes at most one job per conversation, the oldest; leased jobs are not claimed
/// again; once the first job of a conversation is done, the next one is claimable.
pub async fn claim_takes_the_oldest_job_per_conversation(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551300001", secs(0)).await;
    let (pa, pb) = (phone("+447700900081"), phone("+447700900082"));
    let a1 = send_text(s, &line, &pa, secs(1), "a1").await;
    let a2 = send_new(s, outbound(&line, SendTarget::Conversation(a1.conversation_id.clone()), secs(2), "a2")).await;
    let b = send_text(s, &line, &pb, secs(3), "b").await;

    let jobs = claim_own(s, &t.org.id, secs(10)).await;
    assert_eq!(jobs.len(), 2, "one job per conversation: {:?}", ids(&jobs));
    assert_eq!(ids(&jobs), HashSet::from([a1.id.clone(), b.id.clone()]), "the oldest job of each conversation");
    let job_a1 = jobs.iter().find(|j| j.message.id == a1.id).expect("a1 claimed");
    let job_b = jobs.iter().find(|j| j.message.id == b.id).expect("b claimed");
    assert_eq!(job_a1.recipient, pa, "job recipient");
    assert_eq!(job_b.recipient, pb, "job recipient");
    assert_eq!((job_a1.attempts, job_a1.message.status), (0, MessageStatus::Queued), "first claim: no attempts yet");
    assert!(!job_a1.lease_id.is_empty() && job_a1.lease_id != job_b.lease_id, "each claim has its own lease");
    assert_same!(job_a1.message, a1, "the claimed job carries the queued message");

    assert!(claim_own(s, &t.org.id, secs(10)).await.is_empty(), "leased jobs are not claimed again");

    let accepted = JobDisposition::Accepted { provider_message_id: "wamid.claim-a1".into(), at: secs(11) };
    finish(s, job_a1, &job_a1.lease_id, accepted).await;
    let jobs = claim_own(s, &t.org.id, secs(11)).await;
    assert_eq!(ids(&jobs), HashSet::from([a2.id.clone()]), "after a1 is done, a2 is next; b is still leased");
    assert_eq!(jobs[0].recipient, pa, "a send to a conversation goes to its contact's phone");
}

/// A claim returns no more than `limit` jobs; the rest stay claimable.
pub async fn claim_respects_the_limit(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551400001", secs(0)).await;
    let mut all = HashSet::new();
    for (i, number) in ["+447700900091", "+447700900092", "+447700900093"].into_iter().enumerate() {
        let i = i64::try_from(i).expect("small");
        all.insert(send_text(s, &line, &phone(number), secs(1 + i), "limited").await.id);
    }

    let first = s.claim_outbox(secs(10), LEASE, 2).await.must("claim_outbox");
    assert_eq!(first.len(), 2, "claim_outbox(limit 2) with at least 3 due jobs returns 2");
    let first: Vec<OutboxJob> = first.into_iter().filter(|j| j.message.organization_id == t.org.id).collect();
    let rest = claim_own(s, &t.org.id, secs(10)).await;
    let (first, rest) = (ids(&first), ids(&rest));
    assert!(first.is_disjoint(&rest), "no job is claimed twice");
    assert_eq!(&first | &rest, all, "every job is claimed exactly once across the two claims");
}

/// A job whose lease expired is claimed again with a new lease; results under the stale lease
/// are ignored.
pub async fn expired_lease_is_reclaimed_and_stale_lease_is_ignored(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551500001", secs(0)).await;
    let m = send_text(s, &line, &phone("+447700900101"), secs(1), "lease").await;

    let first = claim_one(s, &t.org.id, &m.id, secs(1)).await;
    assert!(claim_own(s, &t.org.id, secs(1).plus(LEASE / 2)).await.is_empty(), "the job is leased");
    let after_lease = secs(1).plus(LEASE).plus(Duration::from_secs(1));
    let second = claim_one(s, &t.org.id, &m.id, after_lease).await;
    assert_ne!(second.lease_id, first.lease_id, "a reclaimed job gets a new lease");
    assert_eq!(second.attempts, 0, "an expired lease is not an attempt");
    let depth_before = depth(s).await;

    let stale = JobDisposition::Accepted { provider_message_id: "wamid.stale".into(), at: after_lease };
    let changed = finish(s, &first, &first.lease_id, stale).await;
    assert!(changed.is_empty(), "a result under a stale lease is ignored");
    let now = message(s, &t.org.id, &m.id).await;
    assert_eq!(now.status, MessageStatus::Queued, "stale result: status unchanged");
    assert_eq!(now.provider_message_id, None, "stale result: no provider id recorded");
    assert_eq!(now.attempts, 0, "stale result: no attempt counted");
    assert_eq!(depth(s).await, depth_before, "stale result: the job stays");
    assert!(claim_own(s, &t.org.id, after_lease).await.is_empty(), "the job is still held by the new lease");

    let ok = JobDisposition::Accepted { provider_message_id: "wamid.fresh".into(), at: after_lease };
    let changed = finish(s, &second, &second.lease_id, ok).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()], "the current lease holder's result counts");
    assert_eq!(changed[0].provider_message_id.as_deref(), Some("wamid.fresh"));
}

/// A job whose lease ran out before it was dispatched comes back clean; one dispatched under the
/// lost lease comes back `possibly_sent`; a stale lease cannot be marked dispatched.
pub async fn only_dispatched_jobs_come_back_possibly_sent(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551500002", secs(0)).await;
    let m = send_text(s, &line, &phone("+447700900102"), secs(1), "dispatch").await;

    let first = claim_one(s, &t.org.id, &m.id, secs(1)).await;
    assert!(!first.possibly_sent, "a first claim is not possibly sent");
    let t2 = secs(1).plus(LEASE).plus(Duration::from_secs(1));
    let second = claim_one(s, &t.org.id, &m.id, t2).await;
    assert!(!second.possibly_sent, "a lease that ran out before dispatch: never sent");

    let held = s.mark_dispatched(vec![(m.id.clone(), second.lease_id.clone())], t2).await.must("mark_dispatched");
    assert_eq!(held, vec![true], "the current lease can be marked");
    let stale = s.mark_dispatched(vec![(m.id.clone(), first.lease_id.clone())], t2).await.must("mark_dispatched");
    assert_eq!(stale, vec![false], "a stale lease cannot be marked");

    let t3 = t2.plus(LEASE).plus(Duration::from_secs(1));
    let third = claim_one(s, &t.org.id, &m.id, t3).await;
    assert!(third.possibly_sent, "dispatched under a lost lease: possibly sent");
    let t4 = t3.plus(LEASE).plus(Duration::from_secs(1));
    let fourth = claim_one(s, &t.org.id, &m.id, t4).await;
    assert!(!fourth.possibly_sent, "the third claim was not dispatched: clean again");
}

/// `Accepted`: the message becomes `sent` with `sent_at` and the provider id, one attempt is
/// counted, and the job is gone.
pub async fn accepted_job_marks_the_message_sent(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551600001", secs(0)).await;
    let m = send_text(s, &line, &phone("+447700900111"), secs(1), "accept me").await;
    let job = claim_one(s, &t.org.id, &m.id, secs(1)).await;
    let depth0 = depth(s).await;

    let disposition = JobDisposition::Accepted { provider_message_id: "wamid.accepted".into(), at: secs(2) };
    let changed = finish(s, &job, &job.lease_id, disposition).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()], "finish_outbox returns the message that changed");
    let sent = &changed[0];
    assert_eq!(sent.status, MessageStatus::Sent, "accepted: sent");
    assert_eq!(sent.status_timestamps.sent_at, Some(secs(2)), "sent_at is the acceptance time");
    assert_eq!(sent.status_timestamps.queued_at, Some(secs(1)), "queued_at unchanged");
    assert_eq!(sent.provider_message_id.as_deref(), Some("wamid.accepted"), "provider id recorded");
    assert_eq!(sent.attempts, 1, "one attempt counted");
    assert_eq!(sent.error, None);
    assert_same!(message(s, &t.org.id, &m.id).await, sent, "get_message shows the sent message");
    assert_eq!(depth(s).await, depth0 - 1, "the job is done");
    assert!(claim_own(s, &t.org.id, secs(100_000)).await.is_empty(), "a finished job is never claimed again");
}

/// `Retry { at }`: the job is not claimable before `at`, is claimable at `at`, and the attempt
/// counts on the job and the message; the status does not change.
pub async fn retry_reschedules_and_counts_the_attempt(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551700001", secs(0)).await;
    let m = send_text(s, &line, &phone("+447700900121"), secs(1), "retry me").await;
    let job = claim_one(s, &t.org.id, &m.id, secs(1)).await;
    let depth0 = depth(s).await;

    // Retry sooner than the lease would expire: the lease must be released.
    let retry_at = secs(11);
    let changed = finish(s, &job, &job.lease_id, JobDisposition::Retry { at: retry_at }).await;
    assert!(changed.is_empty(), "a retry changes no status");
    let now = message(s, &t.org.id, &m.id).await;
    assert_eq!((now.status, now.attempts), (MessageStatus::Queued, 1), "still queued, one attempt counted");
    assert_eq!(depth(s).await, depth0, "the job stays in the outbox");

    let just_before = Timestamp::from_unix_ms(retry_at.unix_ms() - 1);
    assert!(claim_own(s, &t.org.id, just_before).await.is_empty(), "not claimable before the retry time");
    let again = claim_one(s, &t.org.id, &m.id, retry_at).await;
    assert_eq!(again.attempts, 1, "the job carries the attempts made");
    assert_eq!(again.message.attempts, 1);
    assert_ne!(again.lease_id, job.lease_id, "a new lease");
}

/// `Hold { until }`: the job is not claimable before `until`, is claimable at `until`, and no
/// attempt is counted.
pub async fn hold_reschedules_without_counting_an_attempt(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551800001", secs(0)).await;
    let m = send_text(s, &line, &phone("+447700900131"), secs(1), "hold me").await;
    let job = claim_one(s, &t.org.id, &m.id, secs(1)).await;
    let depth0 = depth(s).await;

    let until = secs(11);
    let changed = finish(s, &job, &job.lease_id, JobDisposition::Hold { until }).await;
    assert!(changed.is_empty(), "a hold changes no status");
    let now = message(s, &t.org.id, &m.id).await;
    assert_eq!((now.status, now.attempts), (MessageStatus::Queued, 0), "still queued, no attempt counted");
    assert_eq!(depth(s).await, depth0, "the job stays in the outbox");

    let just_before = Timestamp::from_unix_ms(until.unix_ms() - 1);
    assert!(claim_own(s, &t.org.id, just_before).await.is_empty(), "not claimable before `until`");
    let again = claim_one(s, &t.org.id, &m.id, until).await;
    assert_eq!((again.attempts, again.message.attempts), (0, 0), "a hold is not an attempt");
}

/// `Failed`: the message becomes `failed` with the error and `failed_at`; the job is gone.
pub async fn failed_job_marks_the_message_failed(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15551900001", secs(0)).await;
    let m = send_text(s, &line, &phone("+447700900141"), secs(1), "fail me").await;
    let job = claim_one(s, &t.org.id, &m.id, secs(1)).await;
    let depth0 = depth(s).await;

    let error = MessageError { code: "131026".into(), message: "receiver is not on WhatsApp".into() };
    let changed = finish(s, &job, &job.lease_id, JobDisposition::Failed { error: error.clone(), at: secs(2) }).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()], "finish_outbox returns the failed message");
    let failed = &changed[0];
    assert_eq!(failed.status, MessageStatus::Failed, "failed");
    assert_eq!(failed.error.as_ref(), Some(&error), "error code and message recorded");
    assert_eq!(failed.status_timestamps.failed_at, Some(secs(2)), "failed_at");
    assert_eq!(failed.attempts, 1, "the attempt counts");
    assert_same!(message(s, &t.org.id, &m.id).await, failed, "get_message shows the failure");
    assert_eq!(depth(s).await, depth0 - 1, "the job is done");
    assert!(claim_own(s, &t.org.id, secs(100_000)).await.is_empty(), "a failed job is never claimed again");
}

/// `Unknown`: the message becomes `unknown` and the job is gone (no blind re-send).
pub async fn unknown_job_marks_the_message_unknown(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552000001", secs(0)).await;
    let m = send_text(s, &line, &phone("+447700900151"), secs(1), "maybe sent").await;
    let job = claim_one(s, &t.org.id, &m.id, secs(1)).await;
    let depth0 = depth(s).await;

    let changed = finish(s, &job, &job.lease_id, JobDisposition::Unknown { at: secs(2) }).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()], "finish_outbox returns the message that changed");
    assert_eq!(changed[0].status, MessageStatus::Unknown, "unknown");
    assert_eq!(changed[0].attempts, 1, "the attempt counts");
    assert_eq!(message(s, &t.org.id, &m.id).await.status, MessageStatus::Unknown);
    assert_eq!(depth(s).await, depth0 - 1, "the job is done");
    assert!(claim_own(s, &t.org.id, secs(100_000)).await.is_empty(), "an unknown job is not re-sent blindly");
}

// ---------------------------------------------------------------------------------------------
// provider statuses
// ---------------------------------------------------------------------------------------------

/// Status reports (keyed by line and provider id) move a message forward only: sent ->
/// delivered -> read; repeats, lower statuses with their timestamp already set, and `failed`
/// after delivery change nothing; only changed messages are returned; another line's report
/// with the same provider id does not touch the message.
pub async fn status_updates_only_move_forward(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552100001", secs(0)).await;
    let other_line = add_line(s, &t.org.id, "+15552100002", secs(0)).await;
    let m = accepted_message(s, &line, &phone("+447700900161"), secs(1), "wamid.fwd-1").await;
    let pid = "wamid.fwd-1";

    let changed = apply(s, vec![status(&line, pid, MessageStatus::Delivered, secs(10))]).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()], "delivered: the message changed");
    assert_eq!(changed[0].status, MessageStatus::Delivered);
    assert_eq!(changed[0].status_timestamps.delivered_at, Some(secs(10)), "delivered_at");
    assert_eq!(changed[0].status_timestamps.sent_at, Some(secs(1)), "sent_at kept");

    let changed = apply(s, vec![status(&line, pid, MessageStatus::Sent, secs(11))]).await;
    assert!(changed.is_empty(), "a repeated lower status changes nothing");
    assert_eq!(message(s, &t.org.id, &m.id).await.status, MessageStatus::Delivered, "never backwards");

    let changed = apply(s, vec![status(&line, pid, MessageStatus::Read, secs(12))]).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()], "read: the message changed");
    assert_eq!(changed[0].status, MessageStatus::Read);
    assert_eq!(changed[0].status_timestamps.read_at, Some(secs(12)), "read_at");

    let changed = apply(s, vec![status(&line, pid, MessageStatus::Delivered, secs(13))]).await;
    assert!(changed.is_empty(), "a late delivered with delivered_at already set changes nothing");
    let now = message(s, &t.org.id, &m.id).await;
    assert_eq!(now.status, MessageStatus::Read, "still read");
    assert_eq!(now.status_timestamps.delivered_at, Some(secs(10)), "delivered_at not overwritten");

    let mut failed = status(&line, pid, MessageStatus::Failed, secs(14));
    failed.error = Some(MessageError { code: "late".into(), message: "late failure".into() });
    assert!(apply(s, vec![failed]).await.is_empty(), "failed after delivery is ignored");
    let now = message(s, &t.org.id, &m.id).await;
    assert_eq!(now.status, MessageStatus::Read, "failed never overrides read");
    assert_eq!((now.error, now.status_timestamps.failed_at), (None, None), "no error recorded");

    // Scoping by line, and only changed messages returned from a batch.
    let m2 = accepted_message(s, &line, &phone("+447700900162"), secs(20), "wamid.fwd-2").await;
    let foreign = apply(s, vec![status(&other_line, "wamid.fwd-2", MessageStatus::Delivered, secs(21))]).await;
    assert!(foreign.is_empty(), "another line's report matches no message of this line");
    assert_eq!(message(s, &t.org.id, &m2.id).await.status, MessageStatus::Sent, "untouched by another line");
    let batch = vec![
        status(&line, pid, MessageStatus::Delivered, secs(22)),
        status(&line, "wamid.fwd-2", MessageStatus::Delivered, secs(22)),
        status(&line, pid, MessageStatus::Sent, secs(22)),
    ];
    let changed = apply(s, batch).await;
    assert_eq!(message_ids(&changed), vec![m2.id.clone()], "only messages that changed are returned");
    assert_eq!(changed[0].status, MessageStatus::Delivered);

    // Failure is still a forward move from sent.
    let m3 = accepted_message(s, &line, &phone("+447700900163"), secs(30), "wamid.fwd-3").await;
    let mut failed = status(&line, "wamid.fwd-3", MessageStatus::Failed, secs(31));
    failed.error = Some(MessageError { code: "131047".into(), message: "re-engagement required".into() });
    let changed = apply(s, vec![failed.clone()]).await;
    assert_eq!(message_ids(&changed), vec![m3.id.clone()], "sent -> failed changes the message");
    assert_eq!(changed[0].status, MessageStatus::Failed);
    assert_eq!(changed[0].error, failed.error, "the reported error is recorded");
    assert_eq!(changed[0].status_timestamps.failed_at, Some(secs(31)));
}

/// A lower status that arrives after a higher one keeps the higher status but fills its own
/// timestamp when that was empty (read before delivered).
pub async fn late_lower_status_fills_its_missing_timestamp(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552200001", secs(0)).await;
    let m = accepted_message(s, &line, &phone("+447700900171"), secs(1), "wamid.late-1").await;

    let changed = apply(s, vec![status(&line, "wamid.late-1", MessageStatus::Read, secs(5))]).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()]);
    assert_eq!(changed[0].status, MessageStatus::Read, "sent -> read directly");
    assert_eq!(changed[0].status_timestamps.delivered_at, None, "delivered not reported yet");

    let changed = apply(s, vec![status(&line, "wamid.late-1", MessageStatus::Delivered, secs(4))]).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()], "filling delivered_at is a change");
    assert_eq!(changed[0].status, MessageStatus::Read, "the status stays read");
    assert_eq!(changed[0].status_timestamps.delivered_at, Some(secs(4)), "delivered_at filled");
    assert_eq!(changed[0].status_timestamps.read_at, Some(secs(5)), "read_at kept");

    let changed = apply(s, vec![status(&line, "wamid.late-1", MessageStatus::Delivered, secs(6))]).await;
    assert!(changed.is_empty(), "delivered_at is filled only once");
    let now = message(s, &t.org.id, &m.id).await;
    assert_eq!(now.status_timestamps.delivered_at, Some(secs(4)), "delivered_at not overwritten");
}

/// A status report for a provider id not recorded yet is kept, and applied when
/// `finish_outbox` records that provider id (on that line) as accepted.
pub async fn early_status_is_applied_when_the_provider_id_is_recorded(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552300001", secs(0)).await;
    let other_line = add_line(s, &t.org.id, "+15552300002", secs(0)).await;

    let early = apply(s, vec![status(&line, "wamid.early", MessageStatus::Delivered, secs(5))]).await;
    assert!(early.is_empty(), "a report for an unknown provider id changes no message (yet)");
    let elsewhere = apply(s, vec![status(&other_line, "wamid.early-2", MessageStatus::Read, secs(5))]).await;
    assert!(elsewhere.is_empty());

    let m = send_text(s, &line, &phone("+447700900181"), secs(1), "race").await;
    let job = claim_one(s, &t.org.id, &m.id, secs(1)).await;
    let accepted = JobDisposition::Accepted { provider_message_id: "wamid.early".into(), at: secs(3) };
    let changed = finish(s, &job, &job.lease_id, accepted).await;
    assert_eq!(message_ids(&changed), vec![m.id.clone()]);
    assert_eq!(changed[0].status, MessageStatus::Delivered, "the kept report is applied on acceptance");
    assert_eq!(changed[0].status_timestamps.delivered_at, Some(secs(5)), "with its own time");
    assert_eq!(changed[0].status_timestamps.sent_at, Some(secs(3)), "sent_at is the acceptance time");
    let now = message(s, &t.org.id, &m.id).await;
    assert_eq!(now.status, MessageStatus::Delivered, "get_message agrees");

    // A report kept for another line does not apply to this line's provider id.
    let m2 = send_text(s, &line, &phone("+447700900182"), secs(6), "no race").await;
    let job = claim_one(s, &t.org.id, &m2.id, secs(6)).await;
    let accepted = JobDisposition::Accepted { provider_message_id: "wamid.early-2".into(), at: secs(7) };
    let changed = finish(s, &job, &job.lease_id, accepted).await;
    assert_eq!(changed[0].status, MessageStatus::Sent, "another line's kept report is not applied");
    assert_eq!(changed[0].status_timestamps.read_at, None);
}

// ---------------------------------------------------------------------------------------------
// inbound
// ---------------------------------------------------------------------------------------------

/// An inbound message creates the contact and the conversation (assigned to the line's
/// default assignee) and a `received` inbound message; `last_inbound_at` is set.
pub async fn inbound_creates_contact_conversation_and_message(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let mut line = new_line(&t.org.id, "+15552400001", secs(0));
    line.default_assignee_id = Some(t.owner.id.clone());
    s.insert_line(&line).await.must("insert_line");
    let from = phone("+447700900191");
    let msg = inbound(&line, &from, "wamid.in-1", secs(5), "hi there");

    let (m, conv) = receive(s, msg.clone()).await;
    assert_eq!(m.direction, Direction::Inbound, "direction");
    assert_eq!(m.status, MessageStatus::Received, "status");
    assert_eq!((&m.organization_id, &m.line_id), (&t.org.id, &line.id));
    assert_eq!(m.conversation_id, conv.id, "the message is in the returned conversation");
    assert_eq!(m.kind, MessageKind::Text);
    assert_eq!(m.content, msg.content, "content stored as given");
    assert_eq!(m.provider_message_id.as_deref(), Some("wamid.in-1"), "provider id recorded");
    assert_eq!(m.status_timestamps.queued_at, Some(secs(5)), "queued_at is the receive time for inbound");
    assert_eq!(m.created_at, secs(5));
    assert_eq!(m.sent_by_user_id, None);

    assert_eq!((&conv.organization_id, &conv.line_id), (&t.org.id, &line.id));
    assert_eq!(conv.contact_phone, from);
    assert_eq!(conv.assignee_id.as_ref(), Some(&t.owner.id), "new conversation gets the line's default assignee");
    assert_eq!(conv.last_inbound_at, Some(secs(5)), "last_inbound_at");
    assert_eq!(conv.last_message_at, Some(secs(5)), "last_message_at");
    let contact = s.find_contact_id(&t.org.id, &from).await.must("find_contact_id");
    assert_eq!(contact.as_ref(), Some(&conv.contact_id), "the contact was created");

    assert_same!(message(s, &t.org.id, &m.id).await, m, "get_message returns the inbound message");
    assert_same!(conversation(s, &t.org.id, &conv.id).await, conv, "get_conversation agrees with the outcome");
}

/// Recording the same (line, provider id) again is `Duplicate` and changes nothing, also
/// within one batch; the same provider id on another line is a different message.
pub async fn inbound_duplicates_change_nothing(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552500001", secs(0)).await;
    let other_line = add_line(s, &t.org.id, "+15552500002", secs(0)).await;
    let from = phone("+447700900201");
    let (first, conv) = receive(s, inbound(&line, &from, "wamid.dup-1", secs(5), "one")).await;

    let again = s.record_inbound(vec![inbound(&line, &from, "wamid.dup-1", secs(9), "one")]).await;
    let again = again.must("record_inbound");
    assert!(matches!(again.as_slice(), [InboundOutcome::Duplicate]), "redelivery is Duplicate: {again:?}");
    let page = s.list_messages(&t.org.id, &conv.id, None, 50).await.must("list_messages");
    assert_eq!(message_ids(&page.items), vec![first.id.clone()], "no second message");
    let after = conversation(s, &t.org.id, &conv.id).await;
    assert_eq!(after.last_message_at, Some(secs(5)), "a duplicate does not touch the conversation");
    assert_eq!(after.last_inbound_at, Some(secs(5)), "a duplicate does not touch last_inbound_at");

    let batch = vec![
        inbound(&line, &from, "wamid.dup-2", secs(10), "two"),
        inbound(&line, &from, "wamid.dup-2", secs(10), "two"),
    ];
    let outcomes = s.record_inbound(batch).await.must("record_inbound");
    assert_eq!(outcomes.len(), 2, "one outcome per message, in order");
    assert!(matches!(outcomes[0], InboundOutcome::Created { .. }), "the first of the batch is created");
    assert!(matches!(outcomes[1], InboundOutcome::Duplicate), "its repeat in the same batch is Duplicate");

    let (elsewhere, other_conv) = receive(s, inbound(&other_line, &from, "wamid.dup-1", secs(11), "one")).await;
    assert_ne!(elsewhere.id, first.id, "the same provider id on another line is another message");
    assert_ne!(other_conv.id, conv.id, "each line has its own conversation");
    assert_eq!(other_conv.contact_id, conv.contact_id, "one contact per organization and phone");
}

/// Inbound from a phone the line already wrote to joins that conversation and sets
/// `last_inbound_at`.
pub async fn inbound_joins_the_outbound_conversation(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552600001", secs(0)).await;
    let to = phone("+447700900211");
    let out = send_text(s, &line, &to, secs(1), "hello").await;
    let before = conversation(s, &t.org.id, &out.conversation_id).await;

    let (m, conv) = receive(s, inbound(&line, &to, "wamid.reply-1", secs(7), "hi back")).await;
    assert_eq!(conv.id, out.conversation_id, "the reply joins the existing conversation");
    assert_eq!(m.conversation_id, out.conversation_id);
    assert_eq!(conv.contact_id, before.contact_id, "same contact");
    assert_eq!(conv.last_inbound_at, Some(secs(7)), "last_inbound_at set by the reply");
    assert_eq!(conv.last_message_at, Some(secs(7)), "last_message_at follows the reply");
    assert_eq!(conv.created_at, before.created_at, "not a new conversation");
    let page = s.list_messages(&t.org.id, &conv.id, None, 50).await.must("list_messages");
    assert_eq!(message_ids(&page.items), vec![m.id, out.id], "both messages, newest first");
}

// ---------------------------------------------------------------------------------------------
// reads
// ---------------------------------------------------------------------------------------------

/// `list_messages` returns a conversation's messages newest first; following `next_cursor`
/// visits every message exactly once and the last page has no cursor, for any page size.
pub async fn messages_paginate_newest_first(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552700001", secs(0)).await;
    let to = phone("+447700900221");
    let mut oldest_first = Vec::new();
    let mut conv = None;
    for i in 0..7_i64 {
        let at = secs(10 + i);
        let id = if i % 3 == 1 {
            let (m, c) = receive(s, inbound(&line, &to, &format!("wamid.page-{i}"), at, "in")).await;
            conv = Some(c.id);
            m.id
        } else {
            let m = send_text(s, &line, &to, at, &format!("out {i}")).await;
            conv = Some(m.conversation_id);
            m.id
        };
        oldest_first.push(id);
    }
    let conv = conv.expect("messages were created");
    let newest_first: Vec<MessageId> = oldest_first.iter().rev().cloned().collect();

    for limit in [1_u32, 2, 3, 7, 50] {
        let pages = message_pages(s, &t.org.id, &conv, limit).await;
        let walked: Vec<MessageId> = pages.iter().flat_map(|p| message_ids(p)).collect();
        assert_eq!(walked, newest_first, "limit {limit}: every message once, newest first");
        let expected_pages = 7_usize.div_ceil(limit as usize);
        assert_eq!(pages.len(), expected_pages, "limit {limit}: page count (the last page has no cursor)");
        for page in &pages[..pages.len() - 1] {
            assert_eq!(page.len(), limit as usize, "limit {limit}: every page but the last is full");
        }
    }
}

/// `list_conversations` orders by last activity (newest first), filters by `line_id` and
/// `visible_lines` (an empty list sees nothing), and paginates with its cursor.
pub async fn conversations_are_ordered_filtered_and_paginated(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let l1 = add_line(s, &t.org.id, "+15552800001", secs(0)).await;
    let l2 = add_line(s, &t.org.id, "+15552800002", secs(0)).await;
    let c1 = send_text(s, &l1, &phone("+447700900231"), secs(1), "c1").await.conversation_id;
    let c2 = receive(s, inbound(&l2, &phone("+447700900232"), "wamid.conv-2", secs(2), "c2")).await.1.id;
    let c3 = send_text(s, &l1, &phone("+447700900233"), secs(3), "c3").await.conversation_id;
    // New activity moves c1 to the top.
    let bump = receive(s, inbound(&l1, &phone("+447700900231"), "wamid.conv-1b", secs(4), "c1 again")).await;
    assert_eq!(bump.1.id, c1);

    let query = |line_id: Option<&LineId>, visible: Option<Vec<LineId>>, limit: u32| ConversationQuery {
        line_id: line_id.cloned(),
        visible_lines: visible,
        limit,
        ..ConversationQuery::default()
    };
    let flat = |pages: Vec<Vec<ConversationId>>| pages.into_iter().flatten().collect::<Vec<_>>();

    let all = s.list_conversations(&t.org.id, &query(None, None, 50)).await.must("list_conversations");
    let all_ids: Vec<_> = all.items.iter().map(|c| c.id.clone()).collect();
    assert_eq!(all_ids, vec![c1.clone(), c3.clone(), c2.clone()], "most recently active first");
    assert!(all.next_cursor.is_none(), "one page");

    let on_l1 = flat(conversation_pages(s, &t.org.id, query(Some(&l1.id), None, 50)).await);
    assert_eq!(on_l1, vec![c1.clone(), c3.clone()], "line_id filter");
    let visible = flat(conversation_pages(s, &t.org.id, query(None, Some(vec![l2.id.clone()]), 50)).await);
    assert_eq!(visible, vec![c2.clone()], "visible_lines filter");
    let both = flat(conversation_pages(s, &t.org.id, query(None, Some(vec![l1.id.clone(), l2.id.clone()]), 50)).await);
    assert_eq!(both, vec![c1.clone(), c3.clone(), c2.clone()], "visible_lines with every line");
    let none = s.list_conversations(&t.org.id, &query(None, Some(Vec::new()), 50)).await.must("list_conversations");
    assert!(none.items.is_empty() && none.next_cursor.is_none(), "empty visible_lines sees nothing");
    let crossed = flat(conversation_pages(s, &t.org.id, query(Some(&l1.id), Some(vec![l2.id.clone()]), 50)).await);
    assert!(crossed.is_empty(), "line_id and visible_lines both apply");

    let pages = conversation_pages(s, &t.org.id, query(None, None, 2)).await;
    assert_eq!(pages, vec![vec![c1.clone(), c3.clone()], vec![c2.clone()]], "limit 2: two pages in order");
    let pages = conversation_pages(s, &t.org.id, query(None, None, 1)).await;
    assert_eq!(pages, vec![vec![c1.clone()], vec![c3.clone()], vec![c2.clone()]], "limit 1: one per page");
    let pages = conversation_pages(s, &t.org.id, query(Some(&l1.id), None, 1)).await;
    assert_eq!(pages, vec![vec![c1], vec![c3]], "the cursor keeps the line filter");
    let pages = conversation_pages(s, &t.org.id, query(None, None, 3)).await;
    assert_eq!(pages.len(), 1, "an exactly full last page has no cursor");
}

/// Messages, conversations and contacts of one organization are invisible to another.
pub async fn reads_are_organization_scoped(store: Arc<dyn Store>) {
    let _lock = shared().await;
    let s = &*store;
    let a = tenant(s).await;
    let b = tenant(s).await;
    let line = add_line(s, &a.org.id, "+15552900001", secs(0)).await;
    let to = phone("+447700900241");
    let out = send_text(s, &line, &to, secs(1), "private").await;
    let (inb, conv) = receive(s, inbound(&line, &to, "wamid.scope-1", secs(2), "also private")).await;

    for id in [&out.id, &inb.id] {
        assert!(s.get_message(&b.org.id, id).await.must("get_message").is_none(), "get_message: another org's");
        assert!(s.get_message(&a.org.id, id).await.must("get_message").is_some(), "get_message: own");
    }
    assert!(s.get_conversation(&b.org.id, &conv.id).await.must("get_conversation").is_none(), "get_conversation");
    let page = s.list_messages(&b.org.id, &conv.id, None, 50).await.must("list_messages");
    assert!(page.items.is_empty() && page.next_cursor.is_none(), "list_messages: another org's conversation");
    assert!(s.find_contact_id(&b.org.id, &to).await.must("find_contact_id").is_none(), "find_contact_id");
    let q = ConversationQuery { limit: 50, ..ConversationQuery::default() };
    let listed = s.list_conversations(&b.org.id, &q).await.must("list_conversations");
    assert!(listed.items.is_empty(), "list_conversations: a fresh org sees no other org's conversations");
    let q = ConversationQuery { line_id: Some(line.id.clone()), limit: 50, ..ConversationQuery::default() };
    let listed = s.list_conversations(&b.org.id, &q).await.must("list_conversations");
    assert!(listed.items.is_empty(), "list_conversations: another org's line_id finds nothing");
}

// ---------------------------------------------------------------------------------------------
// webhooks and audit
// ---------------------------------------------------------------------------------------------

fn new_webhook(line: &Line, url: &str, events: &[WebhookEventKind], at: Timestamp) -> Webhook {
    Webhook {
        id: WebhookId::generate(at.unix_ms()),
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        target_url: url.into(),
        events: events.to_vec(),
        payload_format: PayloadFormat::Ezw,
        enabled: true,
        persistent: true,
        max_concurrency: 8,
        rate_per_second: None,
        disabled_reason: None,
        failing_since: None,
        previous_secret_expires_at: None,
        created_at: at,
        updated_at: at,
    }
}

fn audit_of(w: &Webhook, action: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::generate(at.unix_ms()),
        organization_id: w.organization_id.clone(),
        actor: AuditActor { kind: "user", id: Some("usr_conformance".into()) },
        action: action.into(),
        target_kind: "webhook".into(),
        target_id: w.id.to_string(),
        details: serde_json::json!({ "targetUrl": w.target_url }),
        before: None,
        after: Some(serde_json::json!({ "targetUrl": w.target_url })),
        created_at: at,
    }
}

async fn add_webhook(store: &dyn Store, line: &Line, url: &str, events: &[WebhookEventKind]) -> Webhook {
    let w = new_webhook(line, url, events, secs(0));
    store.insert_webhook(&w, "enc:v1:sealed", &audit_of(&w, "webhook.created", secs(0))).await.must("insert_webhook");
    w
}

async fn deliveries_of(store: &dyn Store, w: &Webhook) -> Vec<WebhookDelivery> {
    let page = store.list_webhook_deliveries(&w.organization_id, &w.id, None, 200).await.must("list deliveries");
    page.items
}

fn events_of(deliveries: &[WebhookDelivery]) -> Vec<WebhookEventKind> {
    let mut kinds: Vec<WebhookEventKind> = deliveries.iter().map(|d| d.event).collect();
    kinds.sort();
    kinds
}

/// Claims deliveries until this webhook's show up (other cases' deliveries are put back).
async fn claim_webhook(store: &dyn Store, w: &Webhook, now: Timestamp) -> Vec<DeliveryJob> {
    let claimed = store.claim_webhook_deliveries(now, LEASE, CLAIM_ALL).await.must("claim_webhook_deliveries");
    claimed.into_iter().filter(|j| j.webhook.webhook.id == w.id).collect()
}

fn result_of(job: &DeliveryJob, at: Timestamp, status: Option<u16>, outcome: DeliveryOutcome) -> DeliveryResult {
    DeliveryResult {
        delivery_id: job.delivery.id.clone(),
        lease_id: job.lease_id.clone(),
        webhook_id: job.webhook.webhook.id.clone(),
        attempt: Some(DeliveryAttempt {
            number: job.delivery.attempts + 1,
            started_at: at,
            http_status: status,
            latency_ms: 12,
            response_excerpt: status.map(|s| format!("answered {s}")),
            error: status.is_none().then(|| "connect: refused".to_owned()),
        }),
        outcome,
        disable_webhook: None,
    }
}

/// Webhooks are stored, listed, updated, rotated and deleted within their organization; a
/// second webhook for the same target is a conflict; every change is in the audit trail.
pub async fn webhook_config_round_trips_and_is_scoped(store: Arc<dyn Store>) {
    let s = &*store;
    let (t, other) = (tenant(s).await, tenant(s).await);
    let line = add_line(s, &t.org.id, "+15552600001", secs(0)).await;
    let w = add_webhook(s, &line, "https://receiver.example/a", &[WebhookEventKind::MessagesPost]).await;
    let got = s.get_webhook(&t.org.id, &w.id).await.must("get_webhook").expect("stored");
    assert_same!(got.webhook, w, "get_webhook returns what was stored");
    assert_eq!(got.secret, "enc:v1:sealed", "the sealed secret is kept as given");
    assert_eq!(got.previous_secret, None);
    assert!(s.get_webhook(&other.org.id, &w.id).await.must("get_webhook").is_none(), "another org sees nothing");
    assert!(s.list_webhooks(&other.org.id, &line.id).await.must("list").is_empty(), "another org lists nothing");
    let dup = new_webhook(&line, "https://receiver.example/a", &[WebhookEventKind::StatusesPost], secs(1));
    expect_error(
        s.insert_webhook(&dup, "enc:v1:x", &audit_of(&dup, "webhook.created", secs(1))).await,
        ErrorKind::Conflict,
        Some("webhook_exists"),
        "same target twice",
    );

    let mut changed = w.clone();
    changed.events = vec![WebhookEventKind::MessagesPost, WebhookEventKind::ChannelPatch];
    changed.payload_format = PayloadFormat::Whapi;
    changed.rate_per_second = Some(5.0);
    changed.updated_at = secs(2);
    assert!(s.update_webhook(&changed, &audit_of(&changed, "webhook.updated", secs(2))).await.must("update"));
    let listed = s.list_webhooks(&t.org.id, &line.id).await.must("list_webhooks");
    assert_eq!(listed.len(), 1);
    assert_same!(listed[0].webhook, changed, "the update is stored");
    let mut foreign = changed.clone();
    foreign.organization_id = other.org.id.clone();
    assert!(!s.update_webhook(&foreign, &audit_of(&foreign, "webhook.updated", secs(2))).await.must("update"));

    let rotated = s
        .rotate_webhook_secret(
            &t.org.id,
            &w.id,
            "enc:v1:new",
            secs(100),
            &audit_of(&w, "webhook.secret_rotated", secs(3)),
        )
        .await
        .must("rotate");
    assert!(rotated);
    let got = s.get_webhook(&t.org.id, &w.id).await.must("get").expect("stored");
    assert_eq!((got.secret.as_str(), got.previous_secret.as_deref()), ("enc:v1:new", Some("enc:v1:sealed")));
    assert_eq!(got.webhook.previous_secret_expires_at, Some(secs(100)));

    assert!(!s.delete_webhook(&other.org.id, &w.id, &audit_of(&w, "webhook.deleted", secs(4))).await.must("delete"));
    assert!(s.delete_webhook(&t.org.id, &w.id, &audit_of(&w, "webhook.deleted", secs(4))).await.must("delete"));
    assert!(s.get_webhook(&t.org.id, &w.id).await.must("get").is_none(), "deleted");

    let audit = s.list_audit(&t.org.id, None, None, 50).await.must("list_audit").items;
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["webhook.deleted", "webhook.secret_rotated", "webhook.updated", "webhook.created"]);
    assert!(s.list_audit(&other.org.id, None, None, 50).await.must("list_audit").items.is_empty(), "audit is per org");
    let first = s.list_audit(&t.org.id, None, None, 3).await.must("list_audit");
    let rest = s.list_audit(&t.org.id, None, first.next_cursor.clone(), 3).await.must("list_audit");
    assert_eq!((first.items.len(), rest.items.len(), rest.next_cursor), (3, 1, None), "audit pages");
    let created = &audit[3];
    assert_eq!(created.after, Some(serde_json::json!({ "targetUrl": w.target_url })), "after is kept");
    assert_eq!(created.before, None);
    let family = s.list_audit(&t.org.id, Some("webhook."), None, 50).await.must("list_audit by family").items;
    assert_eq!(family.len(), 4, "an action family matches by prefix");
    let one = s.list_audit(&t.org.id, Some("webhook.updated"), None, 50).await.must("list_audit by action").items;
    assert_eq!(one.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["webhook.updated"]);
    let none = s.list_audit(&t.org.id, Some("webhook"), None, 50).await.must("list_audit without dot").items;
    assert!(none.is_empty(), "an action without a trailing dot is matched exactly");
}

/// Sends, provider outcomes, status reports, inbound messages and line state changes write
/// deliveries for the enabled webhooks of their line subscribed to the event, and only those.
pub async fn state_changes_queue_deliveries_for_subscribers_in_the_same_write(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552600101", secs(0)).await;
    let quiet = add_line(s, &t.org.id, "+15552600102", secs(0)).await;
    use WebhookEventKind::*;
    let all =
        add_webhook(s, &line, "https://r.example/all", &[MessagesPost, StatusesPost, ChatsPost, ChannelPatch]).await;
    let statuses = add_webhook(s, &line, "https://r.example/statuses", &[StatusesPost]).await;
    let mut off = add_webhook(s, &line, "https://r.example/off", &[MessagesPost, StatusesPost]).await;
    off.enabled = false;
    off.updated_at = secs(0);
    assert!(s.update_webhook(&off, &audit_of(&off, "webhook.updated", secs(0))).await.must("disable"));
    let other_line = add_webhook(s, &quiet, "https://r.example/quiet", &[MessagesPost]).await;

    let m = accepted_message(s, &line, &phone("+447700900301"), secs(1), "wamid.wh-1").await;
    let kinds = events_of(&deliveries_of(s, &all).await);
    assert_eq!(kinds, [MessagesPost, StatusesPost, ChatsPost], "a send opens a chat and is sent: {kinds:?}");
    let created = deliveries_of(s, &all).await.into_iter().find(|d| d.event == MessagesPost).expect("messages.post");
    assert_eq!(created.status, DeliveryStatus::Pending);
    assert_eq!((created.attempts, created.next_attempt_at), (0, Some(secs(1))), "due at once");
    let body: serde_json::Value = serde_json::from_str(&created.body).expect("the body is JSON");
    assert_eq!(body["type"], "messages.post");
    assert_eq!(body["data"]["message"]["id"], m.id.as_str());
    assert_eq!(body["data"]["message"]["status"], "queued", "the body is the event as it happened");

    apply(s, vec![status(&line, "wamid.wh-1", MessageStatus::Delivered, secs(3))]).await;
    // A report that changes nothing queues nothing.
    apply(s, vec![status(&line, "wamid.wh-1", MessageStatus::Delivered, secs(3))]).await;
    let st: Vec<String> = deliveries_of(s, &statuses)
        .await
        .iter()
        .map(|d| serde_json::from_str::<serde_json::Value>(&d.body).unwrap()["data"]["message"]["status"].to_string())
        .collect();
    assert_eq!(st.len(), 2, "sent and delivered: {st:?}");
    assert!(st.contains(&"\"sent\"".to_owned()) && st.contains(&"\"delivered\"".to_owned()), "{st:?}");

    receive(s, inbound(&line, &phone("+447700900301"), "wamid.in-wh", secs(4), "reply")).await;
    s.set_line_state(&t.org.id, &line.id, LifecycleState::QrRequired, Some("logged out"), secs(5)).await.must("state");
    s.set_line_state(&t.org.id, &line.id, LifecycleState::QrRequired, Some("still"), secs(6)).await.must("state");
    let kinds = events_of(&deliveries_of(s, &all).await);
    assert_eq!(kinds, [MessagesPost, MessagesPost, StatusesPost, StatusesPost, ChatsPost, ChannelPatch], "{kinds:?}");
    let channel = deliveries_of(s, &all).await.into_iter().find(|d| d.event == ChannelPatch).unwrap();
    let body: serde_json::Value = serde_json::from_str(&channel.body).unwrap();
    assert_eq!(body["data"]["lifecycleState"], "qr_required");
    assert_eq!(body["data"]["status"]["code"], 3);
    assert!(deliveries_of(s, &off).await.is_empty(), "a disabled webhook gets nothing");
    assert!(deliveries_of(s, &other_line).await.is_empty(), "another line's webhook gets nothing");
    // Deliveries of one event share its id.
    let ids: HashSet<_> = deliveries_of(s, &all).await.iter().map(|d| d.event_id.clone()).collect();
    assert_eq!(ids.len(), 6);
}

/// Due deliveries are claimed under a lease, come back after it, ignore stale results, retry,
/// succeed, fail, are held while their webhook is disabled and can be redelivered.
pub async fn webhook_deliveries_lease_retry_finish_and_disable(store: Arc<dyn Store>) {
    let _lock = exclusive().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+15552600201", secs(0)).await;
    let w = add_webhook(s, &line, "https://r.example/lease", &[WebhookEventKind::MessagesPost]).await;
    for i in 0..3 {
        send_text(s, &line, &phone(&format!("+44770090040{i}")), secs(1), "x").await;
    }
    assert!(claim_webhook(s, &w, secs(0)).await.is_empty(), "nothing is due before the event");
    let jobs = claim_webhook(s, &w, secs(1)).await;
    assert_eq!(jobs.len(), 3, "all three are due");
    assert_eq!(jobs[0].webhook.secret, "enc:v1:sealed", "the claim carries the sealed secret");
    assert!(claim_webhook(s, &w, secs(2)).await.is_empty(), "leased");
    let again = claim_webhook(s, &w, secs(1).plus(LEASE).plus(Duration::from_secs(1))).await;
    assert_eq!(again.len(), 3, "an expired lease comes back");
    let at = secs(100);
    // A result under the first, lost lease is ignored.
    s.finish_webhook_deliveries(vec![result_of(&jobs[0], at, Some(200), DeliveryOutcome::Succeeded)])
        .await
        .must("finish");
    let (d, attempts) = s.get_webhook_delivery(&t.org.id, &jobs[0].delivery.id).await.must("get").expect("exists");
    assert_eq!((d.status, d.attempts, attempts.len()), (DeliveryStatus::Pending, 0, 0), "stale result ignored");

    let by_id = |id: &DeliveryId| again.iter().find(|j| &j.delivery.id == id).unwrap().clone();
    let (a, b, c) = (by_id(&jobs[0].delivery.id), by_id(&jobs[1].delivery.id), by_id(&jobs[2].delivery.id));
    s.finish_webhook_deliveries(vec![
        result_of(&a, at, Some(204), DeliveryOutcome::Succeeded),
        result_of(&b, at, Some(503), DeliveryOutcome::Retry(secs(200))),
        result_of(&c, at, None, DeliveryOutcome::Failed),
    ])
    .await
    .must("finish");
    let (d, log) = s.get_webhook_delivery(&t.org.id, &a.delivery.id).await.must("get").unwrap();
    assert_eq!((d.status, d.attempts, d.last_http_status), (DeliveryStatus::Succeeded, 1, Some(204)));
    assert_eq!(d.delivered_at, Some(at.plus(Duration::from_millis(12))));
    assert_eq!(log, vec![result_of(&a, at, Some(204), DeliveryOutcome::Succeeded).attempt.unwrap()]);
    let (d, _) = s.get_webhook_delivery(&t.org.id, &b.delivery.id).await.must("get").unwrap();
    assert_eq!((d.status, d.attempts, d.next_attempt_at), (DeliveryStatus::Pending, 1, Some(secs(200))));
    let (d, _) = s.get_webhook_delivery(&t.org.id, &c.delivery.id).await.must("get").unwrap();
    assert_eq!((d.status, d.last_error.as_deref()), (DeliveryStatus::Failed, Some("connect: refused")));
    let failing = s.get_webhook(&t.org.id, &w.id).await.must("get").unwrap().webhook.failing_since;
    assert_eq!(failing, Some(at), "results apply in order: the failures after the success start a new streak");
    assert!(claim_webhook(s, &w, secs(199)).await.is_empty(), "the retry is not due yet");

    // The retry fails and disables the webhook: its pending deliveries are held, audited.
    let retry = claim_webhook(s, &w, secs(200)).await;
    assert_eq!(retry.len(), 1);
    let mut gone = result_of(&retry[0], secs(200), Some(410), DeliveryOutcome::Failed);
    gone.disable_webhook = Some(("gone".into(), audit_of(&w, "webhook.disabled", secs(200))));
    send_text(s, &line, &phone("+447700900409"), secs(200), "queued before the disable").await;
    s.finish_webhook_deliveries(vec![gone]).await.must("finish");
    let now = s.get_webhook(&t.org.id, &w.id).await.must("get").unwrap().webhook;
    assert_eq!((now.enabled, now.disabled_reason.as_deref()), (false, Some("gone")));
    assert_eq!(now.failing_since, Some(at), "still failing since the earlier failure");
    let held: Vec<DeliveryStatus> = deliveries_of(s, &w).await.iter().map(|d| d.status).collect();
    assert_eq!(held.iter().filter(|st| **st == DeliveryStatus::Held).count(), 1, "{held:?}");
    assert!(claim_webhook(s, &w, secs(300)).await.is_empty(), "held deliveries are not claimed");
    assert_eq!(s.list_audit(&t.org.id, None, None, 1).await.must("audit").items[0].action, "webhook.disabled");

    // Redelivering a failed delivery re-queues it with its id and history.
    let again = s.redeliver_webhook_delivery(&t.org.id, &c.delivery.id, secs(300)).await.must("redeliver").unwrap();
    assert_eq!((again.id.clone(), again.status, again.attempts), (c.delivery.id.clone(), DeliveryStatus::Pending, 1));
    assert!(s.redeliver_webhook_delivery(&tenant(s).await.org.id, &c.delivery.id, secs(300)).await.must("r").is_none());
    // Enabled again: held deliveries are due at the update time.
    let mut on = now.clone();
    on.enabled = true;
    on.disabled_reason = None;
    on.updated_at = secs(400);
    assert!(s.update_webhook(&on, &audit_of(&on, "webhook.updated", secs(400))).await.must("enable"));
    let claimed = claim_webhook(s, &w, secs(400)).await;
    assert_eq!(claimed.len(), 2, "the redelivered and the released delivery");
}
