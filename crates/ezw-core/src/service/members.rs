//! Team administration: members, invitations, roles, disabling.
//!
//! Rules: owners and admins manage members; only owners invite owners or change an owner's
//! membership (role or status); the last active owner cannot be demoted or disabled; disabling a
//! member revokes their sessions in the organization in the same write. Every change is audited
//! in that write and announced with an `access.changed` live hint.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};

use crate::crypto::{random_token, sha256_hex};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{OrganizationId, UserId};
use crate::model::{AuditActor, AuditEvent, Member, MembershipStatus, Role, User};
use crate::ports::{InvitationAcceptance, InvitationMail, LiveHint, MembershipUpdate, NewInvitation};
use crate::principal::{Principal, UserPrincipal};
use crate::secret::Secret;

use super::audit::{actor_of, entry, Change};
use super::auth::{hash_password, verify_password, AuthService, LoginResponse, MAX_TOKEN_LEN};
use super::orgs::normalize_email;
use super::runtime::Inner;

/// The prefix of invitation tokens.
pub const INVITATION_TOKEN_PREFIX: &str = "ezw_inv_";

/// How long an invitation token works (7 days).
pub const INVITATION_TTL: Duration = Duration::from_secs(7 * 86_400);

/// How often a change is retried when the membership changed under it.
const ATTEMPTS: usize = 3;

/// An invitation to send.
#[derive(Debug, Clone)]
pub struct InviteMember {
    /// The invitee's email (a user is created when nobody has it yet).
    pub email: String,
    /// The role offered.
    pub role: Role,
    /// The display name of a new user (default: the email's local part); ignored for existing users.
    pub display_name: Option<String>,
}

/// An issued invitation.
#[derive(Debug, Clone)]
pub struct Invitation {
    /// The member, now `invited`.
    pub member: Member,
    /// The token (`ezw_inv_...`), shown once to the inviting admin and handed to the mailer.
    pub token: Secret,
    /// When the token stops working.
    pub expires_at: crate::time::Timestamp,
}

/// A change to a member: a new role, a new status (`active` or `disabled`), or both.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemberChange {
    /// The new role.
    pub role: Option<Role>,
    /// The new status.
    pub status: Option<MembershipStatus>,
}

/// Accepting an invitation.
#[derive(Debug, Clone)]
pub struct AcceptInvitation {
    /// The invitation token.
    pub token: Secret,
    /// A new user's password (required, at least 8 characters), or an existing user's current
    /// password (required: it proves the account holder accepts).
    pub password: Option<Secret>,
    /// A new display name.
    pub display_name: Option<String>,
    /// The client's network address (password guesses are throttled), when known.
    pub client_addr: Option<IpAddr>,
}

/// Team administration service.
#[derive(Clone, Copy)]
pub struct MembersService<'a> {
    pub(crate) inner: &'a Inner,
}

fn owner_role_required() -> Error {
    Error::new(ErrorKind::Forbidden, "owner_role_required", "only owners can grant, change or take away the owner role")
}

fn membership_changed() -> Error {
    Error::conflict("membership_changed", "the membership changed while it was being updated; try again")
}

/// An owner or admin acting for their organization.
fn manager(principal: &Principal) -> Result<&UserPrincipal> {
    match principal {
        Principal::User(u) if u.role.is_manager() => Ok(u),
        Principal::User(_) => Err(Error::forbidden("only owners and admins can manage members")),
        Principal::Line(_) => Err(Error::forbidden("line tokens cannot manage members")),
    }
}

fn state(role: Role, status: MembershipStatus) -> Value {
    json!({ "role": role.as_str(), "status": status.as_str() })
}

fn display_name(raw: Option<String>) -> Result<Option<String>> {
    match raw.as_deref().map(str::trim) {
        None => Ok(None),
        Some(n) if n.is_empty() || n.chars().count() > 120 => {
            Err(Error::invalid("invalid_display_name", "displayName must be 1 to 120 characters"))
        }
        Some(n) => Ok(Some(n.to_owned())),
    }
}

impl MembersService<'_> {
    /// The organization's members, optionally of one status (any member may look).
    ///
    /// # Errors
    /// 403 for line tokens.
    pub async fn list(&self, principal: &Principal, status: Option<MembershipStatus>) -> Result<Vec<Member>> {
        if matches!(principal, Principal::Line(_)) {
            return Err(Error::forbidden("line tokens cannot list members"));
        }
        self.inner.store.list_members(principal.organization_id(), status).await
    }

    /// Invites someone (owners and admins; only owners invite owners). The user is created when
    /// the email is unknown; a pending invitation is replaced by the new one. The token goes to
    /// the [`Mailer`](crate::ports::Mailer) and is returned once to the caller.
    ///
    /// # Errors
    /// 403 `forbidden` for operators and line tokens, `owner_role_required`; 400
    /// `invalid_email`, `invalid_display_name`; 409 `already_member` for an active member.
    pub async fn invite(&self, principal: &Principal, req: InviteMember) -> Result<Invitation> {
        let actor = manager(principal)?;
        if req.role == Role::Owner && actor.role != Role::Owner {
            return Err(owner_role_required());
        }
        let email = normalize_email(&req.email)?;
        let name = display_name(req.display_name)?;
        let org_id = &actor.organization_id;
        let organization =
            self.inner.store.get_organization(org_id).await?.ok_or_else(|| Error::not_found("organization"))?;
        for _ in 0..ATTEMPTS {
            let now = self.inner.clock.now();
            let (user_id, new_user) = match self.inner.store.find_user_by_email(&email).await? {
                Some(user) => (user.id, None),
                None => {
                    let local = email.split('@').next().unwrap_or(&email).to_owned();
                    let user = User {
                        id: UserId::generate(now.unix_ms()),
                        email: email.clone(),
                        display_name: name.clone().unwrap_or(local),
                        password_hash: None,
                        created_at: now,
                    };
                    (user.id.clone(), Some(user))
                }
            };
            let current = match new_user {
                Some(_) => None,
                None => self.inner.store.get_membership(org_id, &user_id).await?,
            };
            if let Some(m) = &current {
                if m.status == MembershipStatus::Active {
                    return Err(Error::conflict("already_member", "this person is already an active member"));
                }
                if m.role == Role::Owner && actor.role != Role::Owner {
                    return Err(owner_role_required());
                }
            }
            let token = random_token(INVITATION_TOKEN_PREFIX, 32);
            let expires_at = now.plus(INVITATION_TTL);
            let audit = entry(
                org_id,
                actor_of(principal),
                Change {
                    action: "membership.invited",
                    target_kind: "membership",
                    target_id: user_id.to_string(),
                    before: current.as_ref().map(|m| state(m.role, m.status)),
                    after: Some(state(req.role, MembershipStatus::Invited)),
                    details: json!({ "email": email, "expiresAt": expires_at, "newUser": new_user.is_some() }),
                },
                now,
            );
            let creates_user = new_user.is_some();
            let invite = NewInvitation {
                organization_id: org_id.clone(),
                user_id: user_id.clone(),
                new_user,
                expected: current.as_ref().map(|m| (m.role, m.status)),
                role: req.role,
                token_hash: sha256_hex(token.as_bytes()),
                expires_at,
                invited_by: Some(actor.user_id.clone()),
                created_at: now,
            };
            let member = match self.inner.store.invite_member(&invite, &audit).await {
                Ok(member) => member,
                Err(e) if e.code() == "membership_changed" || (creates_user && e.code() == "email_taken") => continue,
                Err(e) => return Err(e),
            };
            self.changed(org_id, &user_id);
            let mail = InvitationMail {
                organization: organization.clone(),
                email: email.clone(),
                role: req.role,
                token: Secret::new(token),
                expires_at,
            };
            if let Err(e) = self.inner.mailer.send_invitation(&mail).await {
                tracing::warn!(organization = %org_id, user = %user_id, code = e.code(), error = %e,
                    "the mailer could not send an invitation; the inviting admin has the token");
            }
            return Ok(Invitation { member, token: mail.token, expires_at });
        }
        Err(membership_changed())
    }

    /// Changes a member's role and/or status (owners and admins). Only owners grant or take away
    /// the owner role, or change an owner's status; the last active owner cannot be demoted or
    /// disabled. Disabling revokes the member's sessions at once. No change: the member as is.
    ///
    /// # Errors
    /// 400 `empty_change`, `invalid_status` (only `active` and `disabled` can be set); 403
    /// `forbidden`, `owner_role_required`; 404 for a user who is not a member of the caller's
    /// organization; 409 `last_owner`, `invitation_pending` (an invited member becomes active by
    /// accepting).
    pub async fn update(&self, principal: &Principal, target: &UserId, change: MemberChange) -> Result<Member> {
        let actor = manager(principal)?;
        if change.role.is_none() && change.status.is_none() {
            return Err(Error::invalid("empty_change", "give a new role, a new status, or both"));
        }
        if change.status == Some(MembershipStatus::Invited) {
            return Err(Error::invalid("invalid_status", "status must be active or disabled"));
        }
        let org_id = &actor.organization_id;
        for _ in 0..ATTEMPTS {
            let current =
                self.inner.store.get_membership(org_id, target).await?.ok_or_else(|| Error::not_found("member"))?;
            let role = change.role.unwrap_or(current.role);
            let status = change.status.unwrap_or(current.status);
            if (role, status) == (current.role, current.status) {
                return self.inner.store.get_member(org_id, target).await?.ok_or_else(|| Error::not_found("member"));
            }
            if (current.role == Role::Owner || role == Role::Owner) && actor.role != Role::Owner {
                return Err(owner_role_required());
            }
            if current.status == MembershipStatus::Invited && status == MembershipStatus::Active {
                return Err(Error::conflict(
                    "invitation_pending",
                    "an invited member becomes active by accepting the invitation",
                ));
            }
            let now = self.inner.clock.now();
            let before = state(current.role, current.status);
            let after = state(role, status);
            let mut actions = Vec::new();
            if role != current.role {
                actions.push("membership.role_changed");
            }
            if status != current.status {
                actions.push(match status {
                    MembershipStatus::Disabled => "membership.disabled",
                    _ => "membership.enabled",
                });
            }
            let audits: Vec<AuditEvent> = actions
                .into_iter()
                .map(|action| {
                    let change = Change {
                        action,
                        target_kind: "membership",
                        target_id: target.to_string(),
                        before: Some(before.clone()),
                        after: Some(after.clone()),
                        details: json!({}),
                    };
                    entry(org_id, actor_of(principal), change, now)
                })
                .collect();
            let was_owner = current.role == Role::Owner && current.status == MembershipStatus::Active;
            let stays_owner = role == Role::Owner && status == MembershipStatus::Active;
            let update = MembershipUpdate {
                organization_id: org_id.clone(),
                user_id: target.clone(),
                expected: (current.role, current.status),
                role,
                status,
                keep_an_owner: was_owner && !stays_owner,
                revoke_sessions: status == MembershipStatus::Disabled,
                at: now,
            };
            match self.inner.store.update_membership(&update, &audits).await {
                Ok(Some(member)) => {
                    self.changed(org_id, target);
                    return Ok(member);
                }
                Ok(None) => return Err(Error::not_found("member")),
                Err(e) if e.code() == "membership_changed" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(membership_changed())
    }

    /// Disables a member (idempotent), under the rules of [`MembersService::update`].
    ///
    /// # Errors
    /// As [`MembersService::update`].
    pub async fn disable(&self, principal: &Principal, target: &UserId) -> Result<Member> {
        self.update(principal, target, MemberChange { role: None, status: Some(MembershipStatus::Disabled) }).await
    }

    /// Accepts an invitation (no principal: the token is the credential) and logs the member in
    /// to the organization. A user without a password sets one; a user with a password confirms
    /// it (the token is also shown to the inviting admin, so it alone never opens an existing
    /// account).
    ///
    /// # Errors
    /// 400 `invalid_invitation` (unknown, expired, used, or the membership is no longer
    /// invited), `weak_password`, `invalid_display_name`; 401 `invalid_credentials` (an existing
    /// account's password missing or wrong); 429 `too_many_login_attempts`.
    pub async fn accept_invitation(&self, req: AcceptInvitation) -> Result<LoginResponse> {
        let invalid = || Error::invalid("invalid_invitation", "the invitation is unknown, expired or was already used");
        let token = req.token.expose();
        if !token.starts_with(INVITATION_TOKEN_PREFIX) || token.len() > MAX_TOKEN_LEN {
            return Err(invalid());
        }
        let token_hash = sha256_hex(token.as_bytes());
        let now = self.inner.clock.now();
        let invitation = self.inner.store.find_invitation(&token_hash).await?.ok_or_else(invalid)?;
        if invitation.expires_at <= now {
            return Err(invalid());
        }
        let org_id = &invitation.organization_id;
        let membership = self
            .inner
            .store
            .get_membership(org_id, &invitation.user_id)
            .await?
            .filter(|m| m.status == MembershipStatus::Invited)
            .ok_or_else(invalid)?;
        let user = self.inner.store.get_user(&invitation.user_id).await?.ok_or_else(invalid)?;
        let name = display_name(req.display_name)?;
        let password_hash = match &user.password_hash {
            Some(hash) => {
                let wrong =
                    || Error::new(ErrorKind::Unauthenticated, "invalid_credentials", "the account's password is wrong");
                let Some(password) = &req.password else {
                    return Err(Error::new(
                        ErrorKind::Unauthenticated,
                        "invalid_credentials",
                        "this account has a password: give it to accept the invitation",
                    ));
                };
                let attempt = self.inner.throttle.begin_login(&user.email, req.client_addr, now)?;
                if !verify_password(self.inner, Some(hash.clone()), password).await? {
                    return Err(wrong());
                }
                self.inner.throttle.login_succeeded(attempt);
                None
            }
            None => match &req.password {
                Some(p) if p.expose().chars().count() >= 8 => Some(hash_password(self.inner, p).await?),
                _ => return Err(Error::invalid("weak_password", "set a password of at least 8 characters")),
            },
        };
        let audit = entry(
            org_id,
            AuditActor { kind: "user", id: Some(user.id.to_string()) },
            Change {
                action: "membership.invitation_accepted",
                target_kind: "membership",
                target_id: user.id.to_string(),
                before: Some(state(membership.role, MembershipStatus::Invited)),
                after: Some(state(membership.role, MembershipStatus::Active)),
                details: json!({}),
            },
            now,
        );
        let acceptance = InvitationAcceptance {
            token_hash,
            organization_id: org_id.clone(),
            user_id: user.id.clone(),
            password_hash,
            display_name: name,
            at: now,
        };
        let member = self.inner.store.accept_invitation(&acceptance, &audit).await?.ok_or_else(invalid)?;
        self.changed(org_id, &user.id);
        let user = self.inner.store.get_user(&user.id).await?.ok_or_else(invalid)?;
        let organization =
            self.inner.store.get_organization(org_id).await?.ok_or_else(|| Error::not_found("organization"))?;
        AuthService { inner: self.inner }.start_session(user, organization, member.role).await
    }

    fn changed(&self, org: &OrganizationId, user: &UserId) {
        self.inner
            .live
            .publish(LiveHint { user_id: Some(user.clone()), ..LiveHint::new("access.changed", org.clone()) });
    }
}
