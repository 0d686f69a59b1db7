//! Conformance cases for the access-control part of the store (issue 6): refresh-token
//! rotation and reuse detection, invitations, membership changes under their guards, billing.

use ezw_core::model::Checkout;
use ezw_core::ports::{InvitationAcceptance, MembershipUpdate, NewInvitation, RefreshRotation};

use super::*;

/// An audit entry for `target` in `org` (the store keeps it in the same write as the change).
fn audit(org: &OrganizationId, action: &str, target: &str, at: Timestamp) -> AuditEvent {
    AuditEvent {
        id: AuditEventId::generate(at.unix_ms()),
        organization_id: org.clone(),
        actor: AuditActor::system(),
        action: action.into(),
        target_kind: "membership".into(),
        target_id: target.into(),
        details: serde_json::json!({ "conformance": true }),
        before: Some(serde_json::json!({ "before": action })),
        after: Some(serde_json::json!({ "after": action })),
        created_at: at,
    }
}

/// The audit actions recorded in `org` for `family` (`membership.`), oldest first.
async fn actions(store: &dyn Store, org: &OrganizationId, family: &str) -> Vec<String> {
    let page = store.list_audit(org, Some(family), None, 200).await.must("list_audit");
    page.items.into_iter().rev().map(|e| e.action).collect()
}

/// A live session of `user` in `org` whose current refresh token hash is `hash(token)`.
async fn session_with(store: &dyn Store, org: &OrganizationId, user: &UserId, token: &str) -> SessionRecord {
    let session = SessionRecord {
        id: SessionId::generate(secs(1).unix_ms()),
        user_id: user.clone(),
        organization_id: org.clone(),
        refresh_token_hash: sha256_hex(token.as_bytes()),
        created_at: secs(1),
        expires_at: secs(1000),
        revoked_at: None,
    };
    store.insert_session(&session).await.must("insert_session");
    session
}

/// A fresh token string (refresh-token hashes are unique across the whole store).
fn token(label: &str) -> String {
    format!("{label}-{}", UserId::generate(secs(0).unix_ms()).as_str())
}

async fn rotate(store: &dyn Store, presented: &str, next: &str, now: Timestamp) -> RefreshRotation {
    store
        .rotate_refresh_token(&sha256_hex(presented.as_bytes()), &sha256_hex(next.as_bytes()), now)
        .await
        .must("rotate_refresh_token")
}

/// Rotation swaps the session's current hash; the old token is then "used", the new one works.
pub async fn refresh_tokens_rotate_to_a_new_hash(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let (first, second, third) = (token("rt1"), token("rt2"), token("rt3"));
    let session = session_with(s, &t.org.id, &t.owner.id, &first).await;

    match rotate(s, &first, &second, secs(10)).await {
        RefreshRotation::Rotated(after) => {
            assert_eq!(after.id, session.id, "the same session (chain) continues");
            assert_eq!(after.refresh_token_hash, sha256_hex(second.as_bytes()), "Rotated carries the new hash");
            assert_eq!(after.expires_at, session.expires_at, "rotation keeps the session's expiry");
            assert_eq!(after.revoked_at, None);
        }
        other => panic!("rotating the current token: expected Rotated, got {other:?}"),
    }
    let stored = s.get_session(&session.id).await.must("get_session").expect("session exists");
    assert_eq!(stored.refresh_token_hash, sha256_hex(second.as_bytes()), "the new hash is stored");
    assert!(
        matches!(rotate(s, &second, &third, secs(11)).await, RefreshRotation::Rotated(_)),
        "the new token rotates in turn"
    );
    assert!(matches!(rotate(s, &token("never"), &token("x"), secs(12)).await, RefreshRotation::Unknown));
}

/// Presenting a token that was already rotated revokes the whole session; its current token
/// then answers `Revoked`.
pub async fn a_reused_refresh_token_revokes_the_session(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let (first, second) = (token("rt1"), token("rt2"));
    let session = session_with(s, &t.org.id, &t.owner.id, &first).await;
    assert!(matches!(rotate(s, &first, &second, secs(10)).await, RefreshRotation::Rotated(_)));

    match rotate(s, &first, &token("attacker"), secs(20)).await {
        RefreshRotation::Reused(id) => assert_eq!(id, session.id, "Reused names the session"),
        other => panic!("replaying a rotated token: expected Reused, got {other:?}"),
    }
    let stored = s.get_session(&session.id).await.must("get_session").expect("session exists");
    assert_eq!(stored.revoked_at, Some(secs(20)), "reuse revokes the session at once");
    assert_eq!(stored.refresh_token_hash, sha256_hex(second.as_bytes()), "reuse does not rotate");
    match rotate(s, &second, &token("rt3"), secs(21)).await {
        RefreshRotation::Revoked(id) => assert_eq!(id, session.id),
        other => panic!("the chain's current token after reuse: expected Revoked, got {other:?}"),
    }
    assert!(matches!(rotate(s, &first, &token("again"), secs(30)).await, RefreshRotation::Reused(_)));
    let stored = s.get_session(&session.id).await.must("get_session").expect("session exists");
    assert_eq!(stored.revoked_at, Some(secs(20)), "revoking again keeps the first revocation time");
}

/// An expired session does not rotate; a revoked one (logout) neither; `revoke_session` keeps
/// the first revocation time and reports unknown sessions.
pub async fn expired_and_revoked_sessions_do_not_rotate(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let expiring = token("exp");
    let session = session_with(s, &t.org.id, &t.owner.id, &expiring).await;
    match rotate(s, &expiring, &token("n"), session.expires_at).await {
        RefreshRotation::Expired(id) => assert_eq!(id, session.id),
        other => panic!("rotating at the expiry: expected Expired, got {other:?}"),
    }
    let stored = s.get_session(&session.id).await.must("get_session").expect("session exists");
    assert_eq!(stored.refresh_token_hash, sha256_hex(expiring.as_bytes()), "an expired session keeps its hash");

    let live = token("live");
    let session = session_with(s, &t.org.id, &t.owner.id, &live).await;
    assert!(s.revoke_session(&session.id, secs(50)).await.must("revoke_session"), "revoking a known session");
    assert!(s.revoke_session(&session.id, secs(60)).await.must("revoke_session"));
    let stored = s.get_session(&session.id).await.must("get_session").expect("session exists");
    assert_eq!(stored.revoked_at, Some(secs(50)), "revoke_session keeps the first time");
    assert!(matches!(rotate(s, &live, &token("n"), secs(70)).await, RefreshRotation::Revoked(_)));
    let unknown = SessionId::generate(secs(1).unix_ms());
    assert!(!s.revoke_session(&unknown, secs(1)).await.must("revoke_session"), "unknown session");
}

/// Used hashes are remembered while their session lives; a rotation of the user's next session
/// forgets those of expired sessions.
pub async fn used_hashes_of_expired_sessions_are_forgotten(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let (old1, old2) = (token("old1"), token("old2"));
    let old = session_with(s, &t.org.id, &t.owner.id, &old1).await;
    assert!(matches!(rotate(s, &old1, &old2, secs(10)).await, RefreshRotation::Rotated(_)));
    let (new1, new2) = (token("new1"), token("new2"));
    session_with(s, &t.org.id, &t.owner.id, &new1).await;
    let later = SessionRecord {
        id: SessionId::generate(secs(2).unix_ms()),
        refresh_token_hash: sha256_hex(new2.as_bytes()),
        expires_at: old.expires_at.plus(Duration::from_secs(3600)),
        ..old.clone()
    };
    s.insert_session(&later).await.must("insert_session");
    // Before the old session expires, its used hash is still recognised.
    assert!(matches!(rotate(s, &new1, &token("n"), secs(20)).await, RefreshRotation::Rotated(_)));
    assert!(matches!(rotate(s, &old1, &token("r"), secs(21)).await, RefreshRotation::Reused(_)));
    // After it expired, the next rotation of the user forgets it.
    assert!(matches!(rotate(s, &new2, &token("m"), old.expires_at).await, RefreshRotation::Rotated(_)));
    assert!(matches!(rotate(s, &old1, &token("q"), old.expires_at).await, RefreshRotation::Unknown));
}

/// Of many concurrent rotations of one token, exactly one succeeds; the others see the token
/// as used (and so revoke the chain).
pub async fn concurrent_refreshes_with_one_token_rotate_once(store: Arc<dyn Store>) {
    let t = tenant(&*store).await;
    let shared = token("shared");
    let session = session_with(&*store, &t.org.id, &t.owner.id, &shared).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (store, shared) = (store.clone(), shared.clone());
            tokio::spawn(async move { rotate(&*store, &shared, &token(&format!("next{i}")), secs(10)).await })
        })
        .collect();
    let mut rotated = 0;
    for task in tasks {
        match task.await.expect("rotation task") {
            RefreshRotation::Rotated(_) => rotated += 1,
            RefreshRotation::Reused(id) | RefreshRotation::Revoked(id) => assert_eq!(id, session.id),
            other => panic!("concurrent rotation: unexpected {other:?}"),
        }
    }
    assert_eq!(rotated, 1, "exactly one concurrent rotation succeeds");
    let stored = s_session(&*store, &session.id).await;
    assert!(stored.revoked_at.is_some(), "the losers presented a used token: the session is revoked");
}

async fn s_session(store: &dyn Store, id: &SessionId) -> SessionRecord {
    store.get_session(id).await.must("get_session").expect("session exists")
}

fn invitation(t: &Tenant, user: &User, new_user: bool, role: Role, token: &str, at: Timestamp) -> NewInvitation {
    NewInvitation {
        organization_id: t.org.id.clone(),
        user_id: user.id.clone(),
        new_user: new_user.then(|| User { password_hash: None, ..user.clone() }),
        expected: None,
        role,
        token_hash: sha256_hex(token.as_bytes()),
        expires_at: at.plus(Duration::from_secs(7 * 86_400)),
        invited_by: Some(t.owner.id.clone()),
        created_at: at,
    }
}

fn acceptance(t: &Tenant, user: &User, token: &str, at: Timestamp) -> InvitationAcceptance {
    InvitationAcceptance {
        token_hash: sha256_hex(token.as_bytes()),
        organization_id: t.org.id.clone(),
        user_id: user.id.clone(),
        password_hash: Some("$argon2id$v=19$accepted".into()),
        display_name: Some("Accepted Name".into()),
        at,
    }
}

/// Inviting an unknown email creates the user (no password) and an `invited` membership; a
/// second invitation replaces the token; accepting consumes it once, activates the membership,
/// sets the password and name, and audits in the same write.
pub async fn invitations_create_users_replace_tokens_and_are_accepted_once(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let invitee = new_user(secs(5));
    let (first, second) = (token("inv1"), token("inv2"));
    let inv = invitation(&t, &invitee, true, Role::Operator, &first, secs(5));
    let member = s
        .invite_member(&inv, &audit(&t.org.id, "membership.invited", invitee.id.as_str(), secs(5)))
        .await
        .must("invite_member");
    assert_eq!((member.role, member.status), (Role::Operator, MembershipStatus::Invited));
    assert_eq!((&member.user_id, &member.email), (&invitee.id, &invitee.email));
    assert_eq!((member.created_at, member.updated_at), (secs(5), secs(5)));
    let user = s.get_user(&invitee.id).await.must("get_user").expect("invite_member creates the user");
    assert_eq!(user.password_hash, None, "an invited user has no password yet");

    let found = s.find_invitation(&sha256_hex(first.as_bytes())).await.must("find_invitation");
    let found = found.expect("the invitation is found by its token hash");
    assert_eq!((&found.organization_id, &found.user_id), (&t.org.id, &invitee.id));
    assert_eq!(found.expires_at, inv.expires_at);

    let again = NewInvitation {
        new_user: None,
        expected: Some((Role::Operator, MembershipStatus::Invited)),
        role: Role::Admin,
        ..invitation(&t, &invitee, false, Role::Admin, &second, secs(6))
    };
    let member =
        s.invite_member(&again, &audit(&t.org.id, "membership.invited", "again", secs(6))).await.must("re-invite");
    assert_eq!((member.role, member.updated_at), (Role::Admin, secs(6)), "a new invitation updates the role");
    assert!(s.find_invitation(&sha256_hex(first.as_bytes())).await.must("find_invitation").is_none(), "replaced");

    let stale = acceptance(&t, &invitee, &first, secs(7));
    let none = s.accept_invitation(&stale, &audit(&t.org.id, "x.stale", "x", secs(7))).await.must("accept");
    assert!(none.is_none(), "a replaced token accepts nothing");

    let accept = acceptance(&t, &invitee, &second, secs(8));
    let accepted_audit = audit(&t.org.id, "membership.invitation_accepted", invitee.id.as_str(), secs(8));
    let member = s.accept_invitation(&accept, &accepted_audit).await.must("accept_invitation");
    let member = member.expect("a valid token is accepted");
    assert_eq!((member.role, member.status), (Role::Admin, MembershipStatus::Active));
    assert_eq!(member.display_name, "Accepted Name");
    let user = s.get_user(&invitee.id).await.must("get_user").expect("user");
    assert_eq!(user.password_hash.as_deref(), Some("$argon2id$v=19$accepted"), "the password is set");

    let twice = s.accept_invitation(&accept, &audit(&t.org.id, "x.twice", "x", secs(9))).await.must("accept");
    assert!(twice.is_none(), "a token is accepted once");
    assert_eq!(
        actions(s, &t.org.id, "membership.").await,
        ["membership.invited", "membership.invited", "membership.invitation_accepted"],
        "each change wrote its audit entry; the refused ones wrote none"
    );
    assert!(actions(s, &t.org.id, "x.").await.is_empty(), "refused acceptances are not audited");
}

/// Inviting an active member is `already_member`; a stale `expected` is `membership_changed`;
/// neither changes anything. Accepting never overwrites an existing password; an expired token
/// accepts nothing.
pub async fn invitation_guards_hold(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let inv = NewInvitation {
        expected: Some((Role::Owner, MembershipStatus::Active)),
        ..invitation(&t, &t.owner, false, Role::Operator, &token("own"), secs(5))
    };
    let r = s.invite_member(&inv, &audit(&t.org.id, "membership.invited", "o", secs(5))).await;
    expect_error(r, ErrorKind::Conflict, Some("already_member"), "inviting an active member");

    let existing = new_user(secs(6));
    s.insert_user(&existing).await.must("insert_user");
    let stale = NewInvitation {
        expected: Some((Role::Admin, MembershipStatus::Disabled)),
        ..invitation(&t, &existing, false, Role::Operator, &token("stale"), secs(6))
    };
    let r = s.invite_member(&stale, &audit(&t.org.id, "membership.invited", "s", secs(6))).await;
    expect_error(r, ErrorKind::Conflict, Some("membership_changed"), "invite with a stale expected state");
    assert!(s.get_membership(&t.org.id, &existing.id).await.must("get_membership").is_none());
    let taken = invitation(&t, &existing, true, Role::Operator, &token("taken"), secs(6));
    let r = s.invite_member(&taken, &audit(&t.org.id, "membership.invited", "t", secs(6))).await;
    expect_error(r, ErrorKind::Conflict, Some("email_taken"), "invite creating a user whose email exists");
    assert!(actions(s, &t.org.id, "membership.").await.is_empty(), "refused invitations are not audited");

    let tok = token("pw");
    let inv = invitation(&t, &existing, false, Role::Operator, &tok, secs(7));
    s.invite_member(&inv, &audit(&t.org.id, "membership.invited", "e", secs(7))).await.must("invite existing user");
    let late = acceptance(&t, &existing, &tok, inv.expires_at);
    assert!(s.accept_invitation(&late, &audit(&t.org.id, "x.late", "x", secs(8))).await.must("accept").is_none());
    let ok = acceptance(&t, &existing, &tok, secs(8));
    s.accept_invitation(&ok, &audit(&t.org.id, "membership.invitation_accepted", "e", secs(8)))
        .await
        .must("accept")
        .expect("accepted before expiry");
    let user = s.get_user(&existing.id).await.must("get_user").expect("user");
    assert_eq!(user.password_hash, existing.password_hash, "an existing password is never replaced");
}

/// `update_membership` compares the expected state, keeps an active owner when asked, revokes
/// the member's sessions in that organization only when disabling, and audits in its write.
pub async fn membership_updates_guard_the_last_owner_and_revoke_sessions(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let up = |user: &UserId, expected, role, status, keep, revoke, at| MembershipUpdate {
        organization_id: t.org.id.clone(),
        user_id: user.clone(),
        expected,
        role,
        status,
        keep_an_owner: keep,
        revoke_sessions: revoke,
        at,
    };
    let owner = (Role::Owner, MembershipStatus::Active);
    let demote = up(&t.owner.id, owner, Role::Admin, MembershipStatus::Active, true, false, secs(10));
    let r = s.update_membership(&demote, &[audit(&t.org.id, "membership.role_changed", "o", secs(10))]).await;
    expect_error(r, ErrorKind::Conflict, Some("last_owner"), "demoting the only owner");

    let second = new_user(secs(11));
    s.insert_user(&second).await.must("insert_user");
    let membership = Membership {
        organization_id: t.org.id.clone(),
        user_id: second.id.clone(),
        role: Role::Owner,
        status: MembershipStatus::Active,
        created_at: secs(11),
    };
    s.upsert_membership(&membership).await.must("upsert_membership");
    let stale = up(
        &second.id,
        (Role::Admin, MembershipStatus::Active),
        Role::Operator,
        membership.status,
        false,
        false,
        secs(12),
    );
    let r = s.update_membership(&stale, &[]).await;
    expect_error(r, ErrorKind::Conflict, Some("membership_changed"), "update with a stale expected state");

    // The second owner's sessions: one in this organization, one in another.
    let other = tenant(s).await;
    s.upsert_membership(&Membership { organization_id: other.org.id.clone(), ..membership.clone() })
        .await
        .must("upsert_membership");
    let here = session_with(s, &t.org.id, &second.id, &token("here")).await;
    let there = session_with(s, &other.org.id, &second.id, &token("there")).await;

    let disable = up(&second.id, owner, Role::Owner, MembershipStatus::Disabled, true, true, secs(20));
    let member = s
        .update_membership(&disable, &[audit(&t.org.id, "membership.disabled", second.id.as_str(), secs(20))])
        .await
        .must("disable the second owner")
        .expect("member exists");
    assert_eq!((member.role, member.status, member.updated_at), (Role::Owner, MembershipStatus::Disabled, secs(20)));
    assert_eq!(s_session(s, &here.id).await.revoked_at, Some(secs(20)), "sessions in the organization are revoked");
    assert_eq!(s_session(s, &there.id).await.revoked_at, None, "sessions in other organizations are not");

    // Now the first owner is the last active one again.
    let r = s.update_membership(&demote, &[audit(&t.org.id, "membership.role_changed", "o", secs(21))]).await;
    expect_error(r, ErrorKind::Conflict, Some("last_owner"), "a disabled owner does not count");
    let promote = up(&t.owner.id, owner, Role::Owner, MembershipStatus::Active, false, false, secs(22));
    assert!(s.update_membership(&promote, &[]).await.must("no-op update").is_some());
    let missing = up(&UserId::generate(1), owner, Role::Admin, MembershipStatus::Active, false, false, secs(23));
    assert!(s.update_membership(&missing, &[]).await.must("update of a non-member").is_none());
    assert_eq!(
        actions(s, &t.org.id, "membership.").await,
        ["membership.disabled"],
        "only the applied change is audited"
    );
}

/// `list_members` joins users, filters by status, orders by membership age and stays in its
/// organization; `get_member` too.
pub async fn members_are_listed_by_status_and_scoped(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant(s).await;
    let other = tenant(s).await;
    let invitee = new_user(secs(5));
    let inv = invitation(&t, &invitee, true, Role::Operator, &token("l"), secs(5));
    s.invite_member(&inv, &audit(&t.org.id, "membership.invited", "i", secs(5))).await.must("invite_member");

    let all = s.list_members(&t.org.id, None).await.must("list_members");
    let ids: Vec<_> = all.iter().map(|m| m.user_id.clone()).collect();
    assert_eq!(ids, [t.owner.id.clone(), invitee.id.clone()], "oldest membership first");
    assert_eq!(all[0].email, t.owner.email);
    assert_eq!(all[0].display_name, t.owner.display_name);
    let invited = s.list_members(&t.org.id, Some(MembershipStatus::Invited)).await.must("list_members");
    assert_eq!(invited.iter().map(|m| &m.user_id).collect::<Vec<_>>(), [&invitee.id]);
    let disabled = s.list_members(&t.org.id, Some(MembershipStatus::Disabled)).await.must("list_members");
    assert!(disabled.is_empty());
    let theirs = s.list_members(&other.org.id, None).await.must("list_members");
    assert_eq!(theirs.iter().map(|m| &m.user_id).collect::<Vec<_>>(), [&other.owner.id], "scoped");
    assert!(s.get_member(&other.org.id, &invitee.id).await.must("get_member").is_none(), "scoped");
    let got = s.get_member(&t.org.id, &invitee.id).await.must("get_member").expect("member");
    assert_eq!(got.status, MembershipStatus::Invited);
}

fn checkout(org: &OrganizationId, id: &str, at: Timestamp) -> Checkout {
    Checkout {
        id: id.into(),
        organization_id: org.clone(),
        plan: "standard".into(),
        line_slots: 5,
        status: "awaiting_operator".into(),
        url: None,
        instructions: Some("call us".into()),
        created_at: at,
        settled_at: None,
    }
}

/// `billing_usage` counts lines that are not archived, active and invited seats, and shows the
/// newest open checkout; organizations have the `standard` plan by default.
pub async fn billing_usage_counts_lines_seats_and_the_open_checkout(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant_with(s, BillingState::Restricted).await;
    let org = s.get_organization(&t.org.id).await.must("get_organization").expect("org");
    assert_eq!(org.plan, "standard");
    add_line(s, &t.org.id, "+15550100001", secs(1)).await;
    let archived = add_line(s, &t.org.id, "+15550100002", secs(2)).await;
    s.set_line_state(&t.org.id, &archived.id, LifecycleState::Archived, None, secs(3)).await.must("archive");
    let invitee = new_user(secs(4));
    let inv = invitation(&t, &invitee, true, Role::Operator, &token("b"), secs(4));
    s.invite_member(&inv, &audit(&t.org.id, "membership.invited", "i", secs(4))).await.must("invite_member");

    let usage = s.billing_usage(&t.org.id).await.must("billing_usage");
    assert_eq!((usage.lines_used, usage.active_seats, usage.invited_seats), (1, 1, 1));
    assert!(usage.open_checkout.is_none());

    let first = format!("chk_{}", t.org.id.as_str());
    let newer = format!("{first}_2");
    for (id, at) in [(&first, secs(5)), (&newer, secs(6))] {
        let a = audit(&t.org.id, "billing.checkout_created", id, at);
        s.insert_checkout(&checkout(&t.org.id, id, at), &a).await.must("insert_checkout");
    }
    let usage = s.billing_usage(&t.org.id).await.must("billing_usage");
    let open = usage.open_checkout.expect("an open checkout is shown");
    assert_eq!((open.id.as_str(), open.instructions.as_deref()), (newer.as_str(), Some("call us")));
    let dup = s.insert_checkout(&checkout(&t.org.id, &first, secs(7)), &audit(&t.org.id, "x.dup", "x", secs(7))).await;
    expect_error(dup, ErrorKind::Conflict, Some("checkout_exists"), "a checkout id is stored once");
    let other = tenant(s).await;
    let theirs = s.billing_usage(&other.org.id).await.must("billing_usage");
    assert!(theirs.open_checkout.is_none() && theirs.lines_used == 0, "usage is per organization");
    assert_eq!(actions(s, &t.org.id, "billing.").await.len(), 2, "each checkout is audited");
}

/// Settling an open checkout marks it settled and the organization active, once; the billing
/// state can also be set directly; both audit in their write.
pub async fn settling_a_checkout_activates_the_organization_once(store: Arc<dyn Store>) {
    let s = &*store;
    let t = tenant_with(s, BillingState::Restricted).await;
    let id = format!("chk_settle_{}", t.org.id.as_str());
    s.insert_checkout(&checkout(&t.org.id, &id, secs(1)), &audit(&t.org.id, "billing.checkout_created", &id, secs(1)))
        .await
        .must("insert_checkout");
    let got = s.get_checkout(&id).await.must("get_checkout").expect("checkout by id");
    assert_eq!((got.organization_id.clone(), got.settled_at), (t.org.id.clone(), None));

    let audits = [
        audit(&t.org.id, "billing.checkout_settled", &id, secs(2)),
        audit(&t.org.id, "billing.state_changed", t.org.id.as_str(), secs(2)),
    ];
    let (settled, org) = s.settle_checkout(&id, secs(2), &audits).await.must("settle_checkout").expect("found");
    assert_eq!((settled.status.as_str(), settled.settled_at), (Checkout::SETTLED, Some(secs(2))));
    assert_eq!(org.billing_state, BillingState::Active);
    let usage = s.billing_usage(&t.org.id).await.must("billing_usage");
    assert!(usage.open_checkout.is_none(), "a settled checkout is no longer open");
    let again = s.settle_checkout(&id, secs(3), &audits).await;
    expect_error(again, ErrorKind::Conflict, Some("checkout_settled"), "settling twice");
    assert!(s.settle_checkout("chk_unknown_conformance", secs(3), &[]).await.must("settle unknown").is_none());

    let a = audit(&t.org.id, "billing.state_changed", t.org.id.as_str(), secs(4));
    let org = s.set_billing_state(&t.org.id, BillingState::Restricted, &a).await.must("set_billing_state");
    assert_eq!(org.expect("org").billing_state, BillingState::Restricted);
    let stored = s.get_organization(&t.org.id).await.must("get_organization").expect("org");
    assert_eq!(stored.billing_state, BillingState::Restricted);
    let unknown = OrganizationId::generate(1);
    assert!(s.set_billing_state(&unknown, BillingState::Active, &a).await.must("set unknown").is_none());
    assert_eq!(
        actions(s, &t.org.id, "billing.").await,
        ["billing.checkout_created", "billing.checkout_settled", "billing.state_changed", "billing.state_changed"]
    );
}
