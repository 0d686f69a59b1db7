//! Authentication: password login (throttled), refresh-token rotation, logout, ID tokens, line
//! API tokens.

use std::net::IpAddr;

use serde::Serialize;

use crate::crypto::{random_token, sha256_hex};
use crate::error::{Error, Result};
use crate::ids::{OrganizationId, SessionId, UserId};
use crate::model::{MembershipStatus, Organization, Role, User};
use crate::ports::{IdClaims, RefreshRotation, SessionRecord};
use crate::principal::{LinePrincipal, Principal, UserPrincipal};
use crate::secret::Secret;

use super::runtime::Inner;

/// The prefix of line API tokens.
pub const LINE_TOKEN_PREFIX: &str = "ezw_line_";

/// The prefix of refresh tokens.
pub const REFRESH_TOKEN_PREFIX: &str = "ezw_rt_";

/// The longest token of any kind accepted before it is looked up.
pub(crate) const MAX_TOKEN_LEN: usize = 128;

/// A login attempt.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    /// Email (case-insensitive).
    pub email: String,
    /// Password.
    pub password: Secret,
    /// The organization to act in, when the user belongs to several.
    pub organization_id: Option<OrganizationId>,
    /// The client's network address (failed logins are also counted per address), when known.
    pub client_addr: Option<IpAddr>,
}

/// A successful login.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// Signed, short-lived ID token (bearer token for the Workspace API).
    pub id_token: String,
    /// Refresh token (stored only as a hash).
    pub refresh_token: String,
    /// ID token lifetime in seconds.
    pub expires_in: u64,
    /// The user.
    pub user: User,
    /// The organization chosen.
    pub organization: Organization,
    /// The user's role there.
    pub role: Role,
}

/// What a bearer token resolves to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The user.
    pub user: User,
    /// The organization.
    pub organization: Organization,
    /// The role.
    pub role: Role,
}

/// Authentication service.
#[derive(Clone, Copy)]
pub struct AuthService<'a> {
    pub(crate) inner: &'a Inner,
}

impl AuthService<'_> {
    /// Exchanges email and password for tokens.
    ///
    /// Failed logins are throttled per account (normalised email) and per client address: past
    /// the limits (5 and 20 in 15 minutes by default) the password is not checked at all. A
    /// successful login starts the account's count over.
    ///
    /// # Errors
    /// `invalid_credentials` (401) for an unknown email or wrong password;
    /// `too_many_login_attempts` (429, with `retryAfterSeconds` and a retry-after) when throttled;
    /// `organization_required` (400) when the user belongs to several organizations and none
    /// was chosen; `not_found` (404) for an organization the user is not an active member of.
    pub async fn login(&self, req: LoginRequest) -> Result<LoginResponse> {
        let email = req.email.trim().to_lowercase();
        let attempt = self.inner.throttle.begin_login(&email, req.client_addr, self.inner.clock.now())?;
        let user = self.inner.store.find_user_by_email(&email).await?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let ok = verify_password(self.inner, hash, &req.password).await?;
        let invalid =
            || Error::new(crate::ErrorKind::Unauthenticated, "invalid_credentials", "email or password is wrong");
        let Some(user) = user.filter(|_| ok) else { return Err(invalid()) };
        self.inner.throttle.login_succeeded(attempt);

        let memberships: Vec<_> = self
            .inner
            .store
            .list_user_memberships(&user.id)
            .await?
            .into_iter()
            .filter(|m| m.status == MembershipStatus::Active)
            .collect();
        let membership = match (&req.organization_id, memberships.len()) {
            (Some(org), _) => memberships
                .iter()
                .find(|m| &m.organization_id == org)
                .ok_or_else(|| Error::not_found("organization"))?,
            (None, 0) => return Err(Error::forbidden("this account is not an active member of any organization")),
            (None, 1) => &memberships[0],
            (None, _) => {
                let ids: Vec<_> = memberships.iter().map(|m| m.organization_id.to_string()).collect();
                return Err(Error::invalid(
                    "organization_required",
                    "this account belongs to several organizations: choose one with organizationId",
                )
                .with_detail("organizationIds", ids));
            }
        };
        let organization = self
            .inner
            .store
            .get_organization(&membership.organization_id)
            .await?
            .ok_or_else(|| Error::internal("membership without organization"))?;
        self.start_session(user, organization, membership.role).await
    }

    /// Starts a session (a new refresh-token chain) for an active member and issues its tokens.
    pub(crate) async fn start_session(
        &self,
        user: User,
        organization: Organization,
        role: Role,
    ) -> Result<LoginResponse> {
        let now = self.inner.clock.now();
        let refresh_token = random_token(REFRESH_TOKEN_PREFIX, 32);
        let session = SessionRecord {
            id: SessionId::generate(now.unix_ms()),
            user_id: user.id.clone(),
            organization_id: organization.id.clone(),
            refresh_token_hash: sha256_hex(refresh_token.as_bytes()),
            created_at: now,
            expires_at: now.plus(self.inner.config.refresh_token_ttl),
            revoked_at: None,
        };
        self.inner.store.insert_session(&session).await?;
        Ok(self.tokens(&session, refresh_token, user, organization, role))
    }

    /// The login answer for `session`: a fresh ID token beside `refresh_token`.
    fn tokens(
        &self,
        session: &SessionRecord,
        refresh_token: String,
        user: User,
        organization: Organization,
        role: Role,
    ) -> LoginResponse {
        let now = self.inner.clock.now();
        let ttl = self.inner.config.id_token_ttl;
        let claims = IdClaims {
            sub: session.user_id.clone(),
            org: session.organization_id.clone(),
            sid: session.id.clone(),
            iat: now.unix_secs(),
            exp: now.plus(ttl).unix_secs(),
        };
        LoginResponse {
            id_token: self.inner.signer.sign(&claims),
            refresh_token,
            expires_in: ttl.as_secs(),
            user,
            organization,
            role,
        }
    }

    /// Exchanges a refresh token for a new ID token and a new refresh token (rotation). The
    /// presented token is used up: presenting it again means it was copied, so the whole session
    /// is revoked, and every token of it stops working.
    ///
    /// # Errors
    /// 401 with `invalid_refresh_token` (unknown or malformed), `refresh_token_reused` (the
    /// session is now revoked), `session_revoked`, `session_expired`, or `membership_inactive`
    /// (the member was disabled or removed).
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<LoginResponse> {
        let unauthenticated =
            |code: &'static str, message: &str| Error::new(crate::ErrorKind::Unauthenticated, code, message.to_owned());
        let presented = refresh_token.expose();
        if !presented.starts_with(REFRESH_TOKEN_PREFIX) || presented.len() > MAX_TOKEN_LEN {
            return Err(unauthenticated("invalid_refresh_token", "the refresh token is unknown"));
        }
        let now = self.inner.clock.now();
        let next = random_token(REFRESH_TOKEN_PREFIX, 32);
        let rotation = self
            .inner
            .store
            .rotate_refresh_token(&sha256_hex(presented.as_bytes()), &sha256_hex(next.as_bytes()), now)
            .await?;
        let session = match rotation {
            RefreshRotation::Rotated(session) => session,
            RefreshRotation::Reused(id) => {
                tracing::warn!(session = %id, "a rotated refresh token was presented again: session revoked");
                return Err(unauthenticated(
                    "refresh_token_reused",
                    "this refresh token was already used; the session has been revoked, log in again",
                ));
            }
            RefreshRotation::Revoked(_) => {
                return Err(unauthenticated("session_revoked", "the session was revoked; log in again"))
            }
            RefreshRotation::Expired(_) => {
                return Err(unauthenticated("session_expired", "the session has expired; log in again"))
            }
            RefreshRotation::Unknown => {
                return Err(unauthenticated("invalid_refresh_token", "the refresh token is unknown"))
            }
        };
        let inactive = || unauthenticated("membership_inactive", "not an active member of this organization");
        let Ok(Principal::User(member)) = self.member_principal(&session.organization_id, &session.user_id).await
        else {
            return Err(inactive());
        };
        let user = self.inner.store.get_user(&session.user_id).await?.ok_or_else(inactive)?;
        let organization = self.inner.store.get_organization(&session.organization_id).await?.ok_or_else(inactive)?;
        Ok(self.tokens(&session, next, user, organization, member.role))
    }

    /// Ends the caller's session: its refresh token and every ID token of it stop working at once.
    ///
    /// # Errors
    /// `no_session` (400) for a principal that was not authenticated by an ID token.
    pub async fn logout(&self, principal: &Principal) -> Result<()> {
        let Principal::User(UserPrincipal { session_id: Some(session), .. }) = principal else {
            return Err(Error::invalid("no_session", "only a principal authenticated by an ID token can log out"));
        };
        self.inner.store.revoke_session(session, self.inner.clock.now()).await?;
        Ok(())
    }

    /// Resolves a Workspace API bearer token (an ID token) to a user principal. The role is read
    /// fresh, so role changes and disabled memberships take effect at once.
    ///
    /// # Errors
    /// `Unauthenticated` (401) for a malformed, forged or expired token, a revoked session or a
    /// membership that is no longer active.
    pub async fn authenticate_id_token(&self, token: &str) -> Result<Principal> {
        let claims = self.inner.signer.verify(token)?;
        if claims.exp <= self.inner.clock.now().unix_secs() {
            return Err(Error::new(crate::ErrorKind::Unauthenticated, "token_expired", "the ID token has expired"));
        }
        let session = self.inner.store.get_session(&claims.sid).await?;
        if !session.is_some_and(|s| s.revoked_at.is_none() && s.user_id == claims.sub) {
            return Err(Error::unauthenticated("the session has ended"));
        }
        self.member_principal(&claims.org, &claims.sub).await.map(|p| match p {
            Principal::User(mut u) => {
                u.session_id = Some(claims.sid);
                Principal::User(u)
            }
            other => other,
        })
    }

    /// A principal for an active member, for embedding apps that authenticate users themselves.
    ///
    /// # Errors
    /// `Unauthenticated` when the user is not an active member of the organization.
    pub async fn member_principal(&self, org: &OrganizationId, user: &UserId) -> Result<Principal> {
        let membership = self.inner.store.get_membership(org, user).await?;
        match membership {
            Some(m) if m.status == MembershipStatus::Active => Ok(Principal::User(UserPrincipal {
                user_id: user.clone(),
                organization_id: org.clone(),
                role: m.role,
                session_id: None,
            })),
            _ => Err(Error::unauthenticated("not an active member of this organization")),
        }
    }

    /// Whether `password` is the user's current password (runs the hash on this thread).
    #[must_use]
    pub fn password_matches(&self, user: &User, password: &str) -> bool {
        user.password_hash.as_deref().is_some_and(|h| self.inner.hasher.verify(password, h))
    }

    /// Resolves a Channel API bearer token (`ezw_line_...`) to its line.
    ///
    /// # Errors
    /// `invalid_line_token` (401) for an unknown, malformed or rotated token.
    pub async fn authenticate_line_token(&self, token: &str) -> Result<Principal> {
        let invalid = || {
            Error::new(
                crate::ErrorKind::Unauthenticated,
                "invalid_line_token",
                "the line API token is unknown or was rotated",
            )
        };
        if !token.starts_with(LINE_TOKEN_PREFIX) || token.len() > 128 {
            return Err(invalid());
        }
        let found = self.inner.store.find_line_token(&sha256_hex(token.as_bytes())).await?.ok_or_else(invalid)?;
        Ok(Principal::Line(LinePrincipal {
            organization_id: found.line.organization_id,
            line_id: found.line.id,
            token_id: found.token_id,
        }))
    }

    /// The user, organization and role behind a user principal.
    ///
    /// # Errors
    /// `Forbidden` for line principals.
    pub async fn session(&self, principal: &Principal) -> Result<SessionInfo> {
        let Principal::User(u) = principal else {
            return Err(Error::forbidden("line tokens have no workspace session"));
        };
        let user =
            self.inner.store.get_user(&u.user_id).await?.ok_or_else(|| Error::unauthenticated("user not found"))?;
        let organization = self
            .inner
            .store
            .get_organization(&u.organization_id)
            .await?
            .ok_or_else(|| Error::unauthenticated("organization not found"))?;
        Ok(SessionInfo { user, organization, role: u.role })
    }
}

/// Checks `password` against `hash` on the blocking pool; with no hash, does the same work and
/// answers false, so timing does not reveal which accounts exist or have a password.
pub(crate) async fn verify_password(inner: &Inner, hash: Option<String>, password: &Secret) -> Result<bool> {
    let hasher = inner.hasher.clone();
    let password = password.clone();
    tokio::task::spawn_blocking(move || match hash {
        Some(h) => hasher.verify(password.expose(), &h),
        None => {
            let _ = hasher.hash(password.expose());
            false
        }
    })
    .await
    .map_err(|e| Error::internal(format!("password check task failed: {e}")))
}

/// Hashes a password on the blocking pool.
pub(crate) async fn hash_password(inner: &Inner, password: &Secret) -> Result<String> {
    let hasher = inner.hasher.clone();
    let password = password.clone();
    tokio::task::spawn_blocking(move || hasher.hash(password.expose()))
        .await
        .map_err(|e| Error::internal(format!("password hashing task failed: {e}")))?
}
