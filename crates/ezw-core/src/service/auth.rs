//! Authentication: password login, ID tokens, line API tokens.

use serde::Serialize;

use crate::crypto::{random_token, sha256_hex};
use crate::error::{Error, Result};
use crate::ids::{OrganizationId, SessionId, UserId};
use crate::model::{MembershipStatus, Organization, Role, User};
use crate::ports::{IdClaims, SessionRecord};
use crate::principal::{LinePrincipal, Principal, UserPrincipal};
use crate::secret::Secret;

use super::runtime::Inner;

/// The prefix of line API tokens.
pub const LINE_TOKEN_PREFIX: &str = "ezw_line_";

/// A login attempt.
#[derive(Debug, Clone)]
pub struct LoginRequest {
    /// Email (case-insensitive).
    pub email: String,
    /// Password.
    pub password: Secret,
    /// The organization to act in, when the user belongs to several.
    pub organization_id: Option<OrganizationId>,
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
    /// # Errors
    /// `invalid_credentials` (401) for an unknown email or wrong password;
    /// `organization_required` (400) when the user belongs to several organizations and none
    /// was chosen; `not_found` (404) for an organization the user is not an active member of.
    pub async fn login(&self, req: LoginRequest) -> Result<LoginResponse> {
        let email = req.email.trim().to_lowercase();
        let user = self.inner.store.find_user_by_email(&email).await?;
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let hasher = self.inner.hasher.clone();
        let password = req.password.clone();
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(h) => hasher.verify(password.expose(), &h),
            None => {
                // Same work for unknown users, so timing does not reveal which emails exist.
                let _ = hasher.hash(password.expose());
                false
            }
        })
        .await
        .map_err(|e| Error::internal(format!("password check task failed: {e}")))?;
        let invalid =
            || Error::new(crate::ErrorKind::Unauthenticated, "invalid_credentials", "email or password is wrong");
        let Some(user) = user.filter(|_| ok) else { return Err(invalid()) };

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

        let now = self.inner.clock.now();
        let refresh_token = random_token("ezw_rt_", 32);
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
        let ttl = self.inner.config.id_token_ttl;
        let claims = IdClaims {
            sub: user.id.clone(),
            org: organization.id.clone(),
            sid: session.id,
            iat: now.unix_secs(),
            exp: now.plus(ttl).unix_secs(),
        };
        Ok(LoginResponse {
            id_token: self.inner.signer.sign(&claims),
            refresh_token,
            expires_in: ttl.as_secs(),
            user,
            role: membership.role,
            organization,
        })
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

    /// Whether `password` is the user's current password.
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
