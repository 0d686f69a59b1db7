//! Conformance cases for QR session lines (issue 8): lifecycle transitions by compare-and-set
//! and their recorded history, pairing requests with idempotency keys, and the opaque
//! per-line session state a web session backend keeps.

use ezw_core::ids::{AuditEventId, PairingId};
use ezw_core::model::{LineTransition, Pairing, PairingMethod, PairingStatus, RecordedTransition};
use ezw_core::ports::{PairingRequestOutcome, SessionStateRecord, StateSelector, TransitionOutcome};

use super::*;

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

fn transition(
    from: LifecycleState,
    to: LifecycleState,
    trigger: &str,
    reason: Option<&str>,
    at: Timestamp,
) -> LineTransition {
    LineTransition { from, to, trigger: trigger.into(), reason: reason.map(str::to_owned), at }
}

#[track_caller]
fn applied(outcome: TransitionOutcome, what: &str) -> Line {
    match outcome {
        TransitionOutcome::Applied(line) => *line,
        other => panic!("{what}: expected Applied, got {other:?}"),
    }
}

#[track_caller]
fn stale(outcome: TransitionOutcome, what: &str) -> Line {
    match outcome {
        TransitionOutcome::Stale(line) => *line,
        other => panic!("{what}: expected Stale, got {other:?}"),
    }
}

async fn history(store: &dyn Store, org: &OrganizationId, line: &LineId) -> Vec<RecordedTransition> {
    store.list_line_transitions(org, line, None, 1000).await.must("list_line_transitions")
}

async fn history_of(store: &dyn Store, org: &OrganizationId, line: &LineId) -> Vec<LineTransition> {
    history(store, org, line).await.into_iter().map(|r| r.transition).collect()
}

fn audit_archive(line: &Line, at: Timestamp) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::generate(at.unix_ms()),
        organization_id: line.organization_id.clone(),
        actor: AuditActor { kind: "user", id: Some("usr_conformance".into()) },
        action: "line.archived".into(),
        target_kind: "line".into(),
        target_id: line.id.to_string(),
        details: serde_json::json!({}),
        before: None,
        after: None,
        created_at: at,
    }
}

/// A QR pairing request of `line`, as the service builds it.
fn qr_pairing(line: &Line, key: Option<&str>, at: Timestamp) -> Pairing {
    Pairing {
        id: PairingId::generate(at.unix_ms()),
        organization_id: line.organization_id.clone(),
        line_id: line.id.clone(),
        method: PairingMethod::Qr,
        status: PairingStatus::Requested,
        idempotency_key: key.map(str::to_owned),
        qr_code: None,
        phone_code: None,
        rotation: 0,
        expires_at: None,
        reason: None,
        requested_by: None,
        requested_at: at,
        updated_at: at,
    }
}

#[track_caller]
fn created_pairing(outcome: PairingRequestOutcome, what: &str) -> Pairing {
    match outcome {
        PairingRequestOutcome::Created(p) => *p,
        other => panic!("{what}: expected Created, got {other:?}"),
    }
}

async fn current(store: &dyn Store, line: &Line) -> Option<Pairing> {
    store.get_pairing(&line.organization_id, &line.id).await.must("get_pairing")
}

fn rec(kind: &str, scope: &str, key: &str, value: &[u8], stamp: i64) -> SessionStateRecord {
    SessionStateRecord { kind: kind.into(), scope: scope.into(), key: key.into(), value: value.to_vec(), stamp }
}

fn keys(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| (*k).to_owned()).collect()
}

fn sel<'a>(kind: &'a str, scope: Option<&'a str>, keys: Option<&'a [String]>) -> StateSelector<'a> {
    StateSelector { kind, scope, keys }
}

/// The selected records, sorted by scope and key (the port returns them in any order).
async fn state(store: &dyn Store, line: &Line, select: StateSelector<'_>) -> Vec<SessionStateRecord> {
    state_in(store, &line.organization_id, &line.id, select).await
}

async fn state_in(
    store: &dyn Store,
    org: &OrganizationId,
    line: &LineId,
    select: StateSelector<'_>,
) -> Vec<SessionStateRecord> {
    let mut found = store.get_session_state(org, line, select).await.must("get_session_state");
    found.sort_by(|a, b| (&a.scope, &a.key).cmp(&(&b.scope, &b.key)));
    found
}

async fn put(store: &dyn Store, line: &Line, records: &[SessionStateRecord]) {
    store.put_session_state(&line.organization_id, &line.id, records).await.must("put_session_state");
}

// ---------------------------------------------------------------------------------------------
// transitions
// ---------------------------------------------------------------------------------------------

/// `transition_line` is a compare-and-set: it applies when the line is in `from` (setting the
/// state, the reason and `updated_at`), answers `Stale` with the line as it is otherwise, never
/// moves a line out of `archived`, and answers `NotFound` for an unknown line or another
/// organization's. Applied transitions are listed newest first, page by `before_seq`, and only
/// in the line's organization.
pub async fn line_transitions_are_compare_and_set_and_recorded(store: Arc<dyn Store>) {
    use LifecycleState::*;
    let s = &*store;
    let (a, b) = (tenant(s).await, tenant(s).await);
    let line = add_line(s, &a.org.id, "+14155550801", secs(0)).await;
    let org = &a.org.id;

    let t1 = transition(Created, Pairing, "pairing_requested", None, secs(1));
    let now = applied(s.transition_line(org, &line.id, &t1).await.must("transition"), "created -> pairing");
    assert_eq!((now.lifecycle_state, now.state_reason.as_deref(), now.updated_at), (Pairing, None, secs(1)));
    assert_eq!((&now.id, now.created_at, &now.phone_number), (&line.id, line.created_at, &line.phone_number));
    let read = s.get_line(org, &line.id).await.must("get_line").expect("the line exists");
    assert_same_line(&read, &now, "get_line after transition_line");

    // Another writer moved it first: nothing changes.
    let late = transition(Created, Connected, "paired", None, secs(2));
    let seen = stale(s.transition_line(org, &line.id, &late).await.must("transition"), "from a state it left");
    assert_eq!((seen.lifecycle_state, seen.updated_at), (Pairing, secs(1)), "Stale carries the line as it is");
    let read = s.get_line(org, &line.id).await.must("get_line").expect("the line exists");
    assert_eq!((read.lifecycle_state, read.updated_at), (Pairing, secs(1)), "a stale transition changes nothing");

    let t2 = transition(Pairing, Connected, "paired", Some("scanned on the phone"), secs(2));
    let now = applied(s.transition_line(org, &line.id, &t2).await.must("transition"), "pairing -> connected");
    assert_eq!(now.state_reason.as_deref(), Some("scanned on the phone"), "the transition's reason is stored");

    // Another organization's id, or an unknown line: NotFound, and nothing changes.
    let foreign = transition(Connected, QrRequired, "logged_out", None, secs(3));
    assert!(matches!(
        s.transition_line(&b.org.id, &line.id, &foreign).await.must("foreign"),
        TransitionOutcome::NotFound
    ));
    let unknown = LineId::generate(secs(3).unix_ms());
    assert!(matches!(s.transition_line(org, &unknown, &foreign).await.must("unknown"), TransitionOutcome::NotFound));
    let read = s.get_line(org, &line.id).await.must("get_line").expect("the line exists");
    assert_eq!((read.lifecycle_state, read.updated_at), (Connected, secs(2)), "NotFound changed nothing");

    let t3 = transition(Connected, Reconnecting, "network_lost", Some("socket closed"), secs(3));
    let t4 = transition(Reconnecting, Connected, "reconnected", None, secs(4));
    let t5 = transition(Connected, Archived, "archived", None, secs(5));
    for t in [&t3, &t4, &t5] {
        let now = applied(s.transition_line(org, &line.id, t).await.must("transition"), &t.trigger);
        assert_eq!((now.lifecycle_state, &now.state_reason), (t.to, &t.reason), "{}", t.trigger);
    }
    // Never out of archived, even when asked from `archived`.
    let revive = transition(Archived, Created, "revived", None, secs(6));
    let seen = stale(s.transition_line(org, &line.id, &revive).await.must("transition"), "out of archived");
    assert_eq!(seen.lifecycle_state, Archived);

    let all = history(s, org, &line.id).await;
    let expected = [&t5, &t4, &t3, &t2, &t1];
    assert_eq!(all.len(), 5, "only applied transitions are recorded: {all:?}");
    for (got, want) in all.iter().zip(expected) {
        assert_eq!(&got.transition, want, "newest first, as recorded");
        assert_eq!(got.line_id, line.id);
    }
    assert!(all.windows(2).all(|w| w[0].seq > w[1].seq), "seq decreases down the list: {all:?}");

    // Paging: `before_seq` continues after the last item of a page.
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        let page = s.list_line_transitions(org, &line.id, before, 2).await.must("list_line_transitions");
        assert!(page.len() <= 2, "a page holds at most `limit`");
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        pages.push(page);
        assert!(pages.len() <= 10, "paging never ends");
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
    assert_eq!(pages.concat(), all, "the pages are the whole history");

    assert!(history(s, &b.org.id, &line.id).await.is_empty(), "another organization sees no history");
    let other = add_line(s, org, "+14155550802", secs(7)).await;
    assert!(history(s, org, &other.id).await.is_empty(), "a new line has no history (creation is not a transition)");
}

/// `set_line_state` records a `provider_report` transition when the state changes (not when it
/// stays), and `archive_line` an `archived` one; nothing is recorded for an archived line or
/// another organization's call.
pub async fn line_state_changes_and_archiving_are_recorded(store: Arc<dyn Store>) {
    use LifecycleState::*;
    let s = &*store;
    let (a, b) = (tenant(s).await, tenant(s).await);
    let org = &a.org.id;
    let line = add_line(s, org, "+14155550811", secs(0)).await;

    s.set_line_state(org, &line.id, Connected, Some("session up"), secs(1)).await.must("set_line_state");
    s.set_line_state(org, &line.id, Connected, Some("still up"), secs(2)).await.must("set_line_state");
    s.set_line_state(org, &line.id, QrRequired, None, secs(3)).await.must("set_line_state");
    s.set_line_state(&b.org.id, &line.id, Blocked, Some("foreign"), secs(4)).await.must("foreign set_line_state");
    let archived = s.archive_line(org, &line.id, secs(5), &audit_archive(&line, secs(5))).await;
    assert!(archived.must("archive_line").expect("the line exists").newly_archived);
    let again = s.archive_line(org, &line.id, secs(6), &audit_archive(&line, secs(6))).await;
    assert!(!again.must("archive_line").expect("the line exists").newly_archived);
    s.set_line_state(org, &line.id, Connected, Some("late report"), secs(7)).await.must("set_line_state");

    assert_eq!(
        history_of(s, org, &line.id).await,
        [
            transition(QrRequired, Archived, "archived", None, secs(5)),
            transition(Connected, QrRequired, "provider_report", None, secs(3)),
            transition(Created, Connected, "provider_report", Some("session up"), secs(1)),
        ],
        "one record per change of state, newest first"
    );
}

/// An applied transition queues `channel.patch` for the line's subscribed webhooks in the same
/// write; a stale one queues nothing.
pub async fn transition_line_queues_a_channel_patch_event(store: Arc<dyn Store>) {
    use LifecycleState::*;
    let _lock = shared().await;
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+14155550821", secs(0)).await;
    let hook = add_webhook(s, &line, "https://r.example/session", &[WebhookEventKind::ChannelPatch]).await;

    let t1 = transition(Created, Pairing, "pairing_requested", Some("qr issued"), secs(1));
    applied(s.transition_line(&t.org.id, &line.id, &t1).await.must("transition"), "created -> pairing");
    let stale_one = transition(Created, Connected, "paired", None, secs(2));
    stale(s.transition_line(&t.org.id, &line.id, &stale_one).await.must("transition"), "stale");

    let deliveries = deliveries_of(s, &hook).await;
    assert_eq!(deliveries.len(), 1, "one event for the applied transition: {deliveries:?}");
    assert_eq!(deliveries[0].event, WebhookEventKind::ChannelPatch);
    let body: serde_json::Value = serde_json::from_str(&deliveries[0].body).expect("the body is JSON");
    assert_eq!(body["type"], "channel.patch");
    assert_eq!(body["data"]["previousState"], "created");
    assert_eq!(body["data"]["lifecycleState"], "pairing");
    assert_eq!(body["data"]["reason"], "qr issued");

    let t2 = transition(Pairing, Connected, "paired", None, secs(3));
    applied(s.transition_line(&t.org.id, &line.id, &t2).await.must("transition"), "pairing -> connected");
    let deliveries = deliveries_of(s, &hook).await;
    assert_eq!(deliveries.len(), 2, "another event: {deliveries:?}");
    let states: HashSet<String> = deliveries
        .iter()
        .map(|d| {
            serde_json::from_str::<serde_json::Value>(&d.body).expect("JSON")["data"]["lifecycleState"].to_string()
        })
        .collect();
    assert!(states.contains("\"connected\""), "{states:?}");
}

// ---------------------------------------------------------------------------------------------
// pairings
// ---------------------------------------------------------------------------------------------

/// `request_pairing` stores the line's current pairing; the same idempotency key and
/// fingerprint replay it, the same key with another fingerprint is `KeyReused`; a request
/// without the current one's key replaces it, whatever its status; another organization's line
/// is not found.
pub async fn pairing_requests_are_idempotent_and_replace_the_current_one(store: Arc<dyn Store>) {
    let s = &*store;
    let (a, b) = (tenant(s).await, tenant(s).await);
    let line = add_line(s, &a.org.id, "+14155550831", secs(0)).await;
    assert!(current(s, &line).await.is_none(), "no pairing at first");

    let mut p1 = qr_pairing(&line, Some("key-1"), secs(1));
    p1.requested_by = Some(a.owner.id.clone());
    let stored = created_pairing(s.request_pairing(&p1, "fp-qr").await.must("request_pairing"), "first request");
    assert_eq!(stored, p1, "Created returns the pairing as stored");
    assert_eq!(current(s, &line).await, Some(p1.clone()), "get_pairing returns it field for field");

    let retry = qr_pairing(&line, Some("key-1"), secs(2));
    match s.request_pairing(&retry, "fp-qr").await.must("request_pairing") {
        PairingRequestOutcome::Replayed(p) => assert_eq!(*p, p1, "the replay returns the first pairing"),
        other => panic!("same key and fingerprint: expected Replayed, got {other:?}"),
    }
    match s.request_pairing(&retry, "fp-other").await.must("request_pairing") {
        PairingRequestOutcome::KeyReused(p) => assert_eq!(p.id, p1.id, "KeyReused names the current pairing"),
        other => panic!("same key, another fingerprint: expected KeyReused, got {other:?}"),
    }
    assert_eq!(current(s, &line).await, Some(p1.clone()), "replays change nothing");

    // Another key (or none) replaces the open request.
    let phone_pairing = Pairing {
        method: PairingMethod::PhoneCode { phone: line.phone_number.clone() },
        ..qr_pairing(&line, None, secs(3))
    };
    let p2 = created_pairing(s.request_pairing(&phone_pairing, "fp-phone").await.must("request"), "no key");
    assert_eq!(current(s, &line).await, Some(p2.clone()), "the phone-code request replaced it");
    let p3 = created_pairing(s.request_pairing(&phone_pairing, "fp-phone").await.must("request"), "no key again");
    assert_eq!(p3, p2, "without a key, a request never replays; it is stored again");

    // A request replaces a finished pairing too, and an old key is forgotten once replaced.
    let paired = Pairing { status: PairingStatus::Paired, updated_at: secs(4), ..p2.clone() };
    assert!(s.update_pairing(&paired, PairingStatus::Requested).await.must("update_pairing"));
    let again = qr_pairing(&line, Some("key-1"), secs(5));
    let p4 = created_pairing(s.request_pairing(&again, "fp-qr").await.must("request"), "key-1 after replacement");
    assert_eq!(current(s, &line).await, Some(p4));

    // Another organization's line.
    let foreign = Pairing { organization_id: b.org.id.clone(), ..qr_pairing(&line, Some("key-x"), secs(6)) };
    expect_error(s.request_pairing(&foreign, "fp-qr").await, ErrorKind::NotFound, None, "foreign request_pairing");
    assert!(s.get_pairing(&b.org.id, &line.id).await.must("get_pairing").is_none(), "another org sees no pairing");
    assert_eq!(current(s, &line).await.map(|p| p.id), Some(again.id), "the foreign request changed nothing");
}

/// Concurrent requests with one idempotency key store one pairing; the others replay it.
pub async fn concurrent_pairing_requests_with_one_key_store_one(store: Arc<dyn Store>) {
    let t = tenant(store.as_ref()).await;
    let line = add_line(store.as_ref(), &t.org.id, "+14155550832", secs(0)).await;
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (store, p) = (store.clone(), qr_pairing(&line, Some("same-key"), secs(n)));
        tasks.push(tokio::spawn(async move { store.request_pairing(&p, "fp-qr").await.must("request_pairing") }));
    }
    let (mut created, mut replayed) = (Vec::new(), Vec::new());
    for task in tasks {
        match task.await.expect("task") {
            PairingRequestOutcome::Created(p) => created.push(p.id),
            PairingRequestOutcome::Replayed(p) => replayed.push(p.id),
            other => panic!("expected Created or Replayed, got {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one request stores the pairing: {created:?}");
    assert!(replayed.iter().all(|id| id == &created[0]), "the others replay it: {replayed:?}");
    assert_eq!(current(store.as_ref(), &line).await.map(|p| p.id), Some(created[0].clone()));
}

/// `update_pairing` replaces the stored fields only while the pairing is the line's current one
/// (same id, same organization) and in the expected status.
pub async fn pairing_updates_are_guarded_by_id_and_status(store: Arc<dyn Store>) {
    let s = &*store;
    let (a, b) = (tenant(s).await, tenant(s).await);
    let line = add_line(s, &a.org.id, "+14155550841", secs(0)).await;
    let p =
        created_pairing(s.request_pairing(&qr_pairing(&line, None, secs(1)), "fp").await.must("request"), "request");

    let active = Pairing {
        status: PairingStatus::Active,
        qr_code: Some("2@AbC/dEf+123==,k1==,k2==,k3==".into()),
        rotation: 1,
        expires_at: Some(secs(61)),
        updated_at: secs(1),
        ..p.clone()
    };
    assert!(s.update_pairing(&active, PairingStatus::Requested).await.must("update_pairing"), "requested -> active");
    assert_eq!(current(s, &line).await, Some(active.clone()), "every changed field is stored");

    let rotated =
        Pairing { qr_code: Some("2@second".into()), rotation: 2, expires_at: Some(secs(81)), ..active.clone() };
    assert!(!s.update_pairing(&rotated, PairingStatus::Requested).await.must("update"), "wrong expected status");
    assert_eq!(current(s, &line).await, Some(active.clone()), "a refused update changes nothing");
    assert!(s.update_pairing(&rotated, PairingStatus::Active).await.must("update"), "rotation while active");

    let ended = Pairing {
        status: PairingStatus::Exhausted,
        qr_code: None,
        expires_at: None,
        reason: Some("qr_codes_exhausted".into()),
        updated_at: secs(90),
        ..rotated.clone()
    };
    assert!(s.update_pairing(&ended, PairingStatus::Active).await.must("update"));
    assert!(!s.update_pairing(&ended, PairingStatus::Active).await.must("update"), "no longer active");
    assert_eq!(current(s, &line).await, Some(ended.clone()));

    // Another organization, or a pairing that is no longer the current one.
    let foreign = Pairing { organization_id: b.org.id.clone(), status: PairingStatus::Failed, ..ended.clone() };
    assert!(!s.update_pairing(&foreign, PairingStatus::Exhausted).await.must("update"), "another organization");
    let phone = Pairing {
        method: PairingMethod::PhoneCode { phone: line.phone_number.clone() },
        ..qr_pairing(&line, None, secs(100))
    };
    let newer = created_pairing(s.request_pairing(&phone, "fp-phone").await.must("request"), "replacement");
    let old = Pairing { status: PairingStatus::Cancelled, ..ended.clone() };
    assert!(!s.update_pairing(&old, PairingStatus::Requested).await.must("update"), "a replaced pairing");
    assert_eq!(current(s, &line).await, Some(newer.clone()), "the current pairing is untouched");

    let code = Pairing {
        status: PairingStatus::Active,
        phone_code: Some("ABCD-EFGH".into()),
        rotation: 1,
        expires_at: Some(secs(160)),
        updated_at: secs(101),
        ..newer
    };
    assert!(s.update_pairing(&code, PairingStatus::Requested).await.must("update"));
    assert_eq!(current(s, &line).await, Some(code), "a phone code round-trips with its method");
}

/// `list_requested_pairings` lists the pairings in status `requested` of the lines whose
/// session lease the holder holds, across organizations, oldest request first.
pub async fn requested_pairings_are_listed_by_lease_holder(store: Arc<dyn Store>) {
    let s = &*store;
    let (a, b) = (tenant(s).await, tenant(s).await);
    // Holder names unique to this case: cases may share a database.
    let (node_a, node_b) = (format!("node-a-{}", a.org.id), format!("node-b-{}", a.org.id));
    let l1 = add_line(s, &a.org.id, "+14155550851", secs(0)).await;
    let l2 = add_line(s, &a.org.id, "+14155550852", secs(0)).await;
    let l3 = add_line(s, &b.org.id, "+14155550853", secs(0)).await;
    let l4 = add_line(s, &a.org.id, "+14155550854", secs(0)).await;
    let l5 = add_line(s, &b.org.id, "+14155550855", secs(0)).await;
    for (line, holder) in [(&l1, &node_a), (&l2, &node_b), (&l3, &node_a), (&l5, &node_a)] {
        s.acquire_session_lease(&line.id, holder, secs(0), secs(30)).await.must("acquire_session_lease");
    }
    let mut requested = Vec::new();
    for (line, at) in [(&l1, 3), (&l2, 1), (&l3, 2), (&l4, 4), (&l5, 5)] {
        let p = qr_pairing(line, None, secs(at));
        requested.push(created_pairing(s.request_pairing(&p, "fp").await.must("request"), "request"));
    }
    // l5's pairing is already showing a code.
    let active = Pairing { status: PairingStatus::Active, qr_code: Some("2@x".into()), ..requested[4].clone() };
    assert!(s.update_pairing(&active, PairingStatus::Requested).await.must("update_pairing"));

    let listed = s.list_requested_pairings(&node_a).await.must("list_requested_pairings");
    assert_eq!(listed, [requested[2].clone(), requested[0].clone()], "node a: l3 then l1, oldest request first");
    let listed = s.list_requested_pairings(&node_b).await.must("list_requested_pairings");
    assert_eq!(listed, [requested[1].clone()], "node b: l2");
    let nobody = format!("nobody-{}", a.org.id);
    assert!(s.list_requested_pairings(&nobody).await.must("list").is_empty(), "a node without leases: none");
}

// ---------------------------------------------------------------------------------------------
// session state
// ---------------------------------------------------------------------------------------------

/// Records round-trip byte for byte (every byte value, and empty values); they are selected by
/// kind, scope and key lists (long ones too); a put replaces a record and a batch's last record
/// for an address wins.
pub async fn session_state_round_trips_by_kind_scope_and_keys(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+14155550861", secs(0)).await;
    let every_byte: Vec<u8> = (0..=255u8).collect();
    let identity = rec("identity", "", "own", &every_byte, 0);
    let alice = rec("session", "", "alice.1", b"s-alice", 0);
    let bob = rec("session", "", "bob.1", b"s-bob", 0);
    let empty = rec("device", "", "empty", b"", 0);
    let regular = rec("app_state", "regular", "k1", b"\x00regular\xff", 7);
    let critical = rec("app_state", "critical_block", "k1", b"\x00critical\xff", 8);
    put(s, &line, &[identity.clone(), alice.clone(), bob.clone(), empty.clone(), regular.clone(), critical.clone()])
        .await;

    assert_eq!(state(s, &line, sel("identity", None, None)).await, vec![identity.clone()]);
    assert_eq!(state(s, &line, sel("identity", None, None)).await[0].value, every_byte, "every byte value");
    assert_eq!(state(s, &line, sel("device", None, None)).await, [empty], "an empty value round-trips");
    assert_eq!(state(s, &line, sel("session", None, None)).await, [alice.clone(), bob.clone()]);
    let wanted = keys(&["bob.1", "carol.1"]);
    assert_eq!(state(s, &line, sel("session", Some(""), Some(&wanted))).await, vec![bob.clone()], "by keys");
    assert_eq!(state(s, &line, sel("session", None, Some(&wanted))).await, vec![bob.clone()], "by keys, any scope");
    assert!(state(s, &line, sel("session", None, Some(&[]))).await.is_empty(), "no keys select nothing");
    assert!(state(s, &line, sel("session", Some("other"), None)).await.is_empty(), "another scope");
    assert!(state(s, &line, sel("prekey", None, None)).await.is_empty(), "another kind");
    assert_eq!(state(s, &line, sel("app_state", Some("regular"), None)).await, vec![regular.clone()], "by scope");
    let k1 = keys(&["k1"]);
    assert_eq!(
        state(s, &line, sel("app_state", None, Some(&k1))).await,
        [critical.clone(), regular.clone()],
        "one key in two scopes"
    );

    // A put replaces; within a batch the last record for an address wins.
    let alice2 = rec("session", "", "alice.1", b"s-alice-2", 42);
    put(s, &line, &[rec("session", "", "alice.1", b"first", 1), alice2.clone()]).await;
    assert_eq!(state(s, &line, sel("session", None, None)).await, [alice2, bob], "replaced, not added");
    s.put_session_state(&t.org.id, &line.id, &[]).await.must("an empty put");

    // Long batches and long key lists.
    let prekeys: Vec<SessionStateRecord> =
        (0..1500).map(|n| rec("prekey", "", &format!("{n:05}"), format!("pk-{n}").as_bytes(), n)).collect();
    put(s, &line, &prekeys).await;
    let wanted: Vec<String> = (0..1200).map(|n| format!("{:05}", n * 2)).collect();
    let found = state(s, &line, sel("prekey", Some(""), Some(&wanted))).await;
    assert_eq!(found.len(), 750, "the even keys below 1500 of 1200 asked for");
    assert!(found.iter().all(|r| r.value == format!("pk-{}", r.stamp).into_bytes()), "each its own value");
    assert_eq!(state(s, &line, sel("prekey", None, None)).await.len(), 1500);
}

/// Deletes by selector and by stamp, atomic take, and clear; each returns what it removed.
pub async fn session_state_deletes_take_and_clear(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let line = add_line(s, &t.org.id, "+14155550871", secs(0)).await;
    let prekeys: Vec<SessionStateRecord> = [0, 100, 200, 300, 0, 400]
        .iter()
        .enumerate()
        .map(|(n, &stamp)| rec("prekey", "", &n.to_string(), b"pk", stamp))
        .collect();
    put(s, &line, &prekeys).await;
    put(s, &line, &[rec("sender_key", "", "g1", b"old", 150), rec("sender_key", "", "g2", b"new", 900)]).await;
    put(s, &line, &[rec("app_state", "regular", "a", b"1", 0), rec("app_state", "regular", "b", b"2", 0)]).await;
    put(s, &line, &[rec("app_state", "critical", "a", b"3", 0)]).await;

    // Stamps above 0 and below the cutoff, of the kind only.
    let n = s.delete_session_state_before(&t.org.id, &line.id, "prekey", 250).await.must("delete_before");
    assert_eq!(n, 2, "stamps 100 and 200");
    let left: Vec<String> = state(s, &line, sel("prekey", None, None)).await.into_iter().map(|r| r.key).collect();
    assert_eq!(left, ["0", "3", "4", "5"], "stamp 0 means none and is kept");
    assert_eq!(state(s, &line, sel("sender_key", None, None)).await.len(), 2, "another kind is kept");

    let n = s
        .delete_session_state(&t.org.id, &line.id, sel("prekey", Some(""), Some(&keys(&["3", "missing"]))))
        .await
        .must("delete by keys");
    assert_eq!(n, 1);
    let n = s.delete_session_state(&t.org.id, &line.id, sel("prekey", None, Some(&[]))).await.must("no keys");
    assert_eq!(n, 0, "no keys delete nothing");
    let n = s.delete_session_state(&t.org.id, &line.id, sel("app_state", Some("regular"), None)).await.must("scope");
    assert_eq!(n, 2);
    assert_eq!(state(s, &line, sel("app_state", None, None)).await, [rec("app_state", "critical", "a", b"3", 0)]);
    let n = s.delete_session_state(&t.org.id, &line.id, sel("prekey", None, None)).await.must("kind");
    assert_eq!(n, 3, "prekeys 0, 4 and 5");

    // Take: read and delete once.
    let taken = s.take_session_state(&t.org.id, &line.id, "sender_key", "", "g1").await.must("take");
    assert_eq!(taken, Some(rec("sender_key", "", "g1", b"old", 150)));
    let again = s.take_session_state(&t.org.id, &line.id, "sender_key", "", "g1").await.must("take again");
    assert_eq!(again, None, "a second take finds nothing");
    assert_eq!(state(s, &line, sel("sender_key", None, None)).await, [rec("sender_key", "", "g2", b"new", 900)]);
    let wrong_scope = s.take_session_state(&t.org.id, &line.id, "sender_key", "x", "g2").await.must("take");
    assert_eq!(wrong_scope, None, "take matches kind, scope and key");

    assert_eq!(s.clear_session_state(&t.org.id, &line.id).await.must("clear"), 2, "g2 and the critical record");
    assert!(state(s, &line, sel("sender_key", None, None)).await.is_empty());
    assert!(state(s, &line, sel("app_state", None, None)).await.is_empty());
    assert_eq!(s.clear_session_state(&t.org.id, &line.id).await.must("clear again"), 0);
}

/// Concurrent takes of one record: exactly one gets it.
pub async fn concurrent_session_state_takes_return_the_record_once(store: Arc<dyn Store>) {
    let t = tenant(store.as_ref()).await;
    let line = add_line(store.as_ref(), &t.org.id, "+14155550881", secs(0)).await;
    put(store.as_ref(), &line, &[rec("prekey", "", "7", b"once", 0)]).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, org, line) = (store.clone(), t.org.id.clone(), line.id.clone());
        tasks.push(tokio::spawn(async move {
            store.take_session_state(&org, &line, "prekey", "", "7").await.must("take_session_state")
        }));
    }
    let mut got = Vec::new();
    for task in tasks {
        got.extend(task.await.expect("task"));
    }
    assert_eq!(got, [rec("prekey", "", "7", b"once", 0)], "exactly one take returns the record");
}

/// Session state is per line and per organization: another line keeps its own records, and
/// another organization reads nothing, deletes nothing and cannot write to the line.
pub async fn session_state_is_scoped_to_the_line_and_organization(store: Arc<dyn Store>) {
    let s = &*store;
    let (a, b) = (tenant(s).await, tenant(s).await);
    let l1 = add_line(s, &a.org.id, "+14155550891", secs(0)).await;
    let l2 = add_line(s, &a.org.id, "+14155550892", secs(0)).await;
    let one = rec("session", "", "alice.1", b"line one", 10);
    let two = rec("session", "", "alice.1", b"line two", 10);
    put(s, &l1, std::slice::from_ref(&one)).await;
    put(s, &l2, std::slice::from_ref(&two)).await;
    assert_eq!(state(s, &l1, sel("session", None, None)).await, vec![one.clone()]);
    assert_eq!(state(s, &l2, sel("session", None, None)).await, vec![two.clone()]);

    let (other, id) = (&b.org.id, &l1.id);
    let wanted = keys(&["alice.1"]);
    assert!(state_in(s, other, id, sel("session", None, None)).await.is_empty(), "another org reads nothing");
    assert!(state_in(s, other, id, sel("session", Some(""), Some(&wanted))).await.is_empty());
    assert_eq!(s.delete_session_state(other, id, sel("session", None, None)).await.must("delete"), 0);
    assert_eq!(s.delete_session_state_before(other, id, "session", 100).await.must("delete_before"), 0);
    assert_eq!(s.take_session_state(other, id, "session", "", "alice.1").await.must("take"), None);
    assert_eq!(s.clear_session_state(other, id).await.must("clear"), 0);
    let forged = rec("session", "", "alice.1", b"forged", 10);
    expect_error(s.put_session_state(other, id, &[forged]).await, ErrorKind::NotFound, None, "put to a foreign line");
    let unknown = LineId::generate(secs(1).unix_ms());
    let put_unknown = s.put_session_state(&a.org.id, &unknown, std::slice::from_ref(&one)).await;
    expect_error(put_unknown, ErrorKind::NotFound, None, "put to an unknown line");
    assert_eq!(state(s, &l1, sel("session", None, None)).await, [one], "the line's state is untouched");

    assert_eq!(s.clear_session_state(&a.org.id, &l1.id).await.must("clear"), 1);
    assert_eq!(state(s, &l2, sel("session", None, None)).await, [two], "clearing one line leaves the other");
}
