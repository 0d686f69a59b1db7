//! Organizations: the system-level bootstrap, self-service signup, passwords.

use std::net::IpAddr;

use crate::error::{Error, Result};
use crate::ids::{OrganizationId, UserId};
use crate::model::{BillingState, Organization, Role, User, DEFAULT_PLAN};
use crate::secret::Secret;

use super::auth::{hash_password, verify_password, AuthService, LoginResponse};
use super::runtime::Inner;

/// The most line slots a self-service signup may ask for.
pub const MAX_SIGNUP_LINE_SLOTS: u32 = 50;

/// A self-service signup: a new organization (billing `pending`) with its owner.
#[derive(Debug, Clone)]
pub struct SignupRequest {
    /// The organization's name (1 to 120 characters).
    pub organization_name: String,
    /// The owner's display name (1 to 120 characters).
    pub owner_name: String,
    /// The owner's email. An existing account with the same password gets another organization.
    pub email: String,
    /// The owner's password (at least 8 characters).
    pub password: Secret,
    /// Line slots, 1 to 50 (default 1).
    pub line_slots: Option<u32>,
    /// The client's network address (signups are throttled per address), when known.
    pub client_addr: Option<IpAddr>,
}

/// A new organization with its first owner.
#[derive(Debug, Clone)]
pub struct NewOrganization {
    /// Display name.
    pub name: String,
    /// Unique slug; derived from the name when `None`.
    pub slug: Option<String>,
    /// Owner's email.
    pub owner_email: String,
    /// Owner's display name.
    pub owner_name: String,
    /// Owner's password (at least 8 characters).
    pub owner_password: Secret,
    /// Initial billing state.
    pub billing_state: BillingState,
    /// Line slots.
    pub line_slots: u32,
}

/// Organization service.
#[derive(Clone, Copy)]
pub struct OrgsService<'a> {
    pub(crate) inner: &'a Inner,
}

/// Validates and normalizes an email address.
pub(crate) fn normalize_email(email: &str) -> Result<String> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(Error::invalid("invalid_email", "email is not a valid address"))
    }
}

fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').chars().take(40).collect()
}

impl OrgsService<'_> {
    /// Creates an organization and its owner (a new user, or an existing user when the email is
    /// known and the password matches). This is the system-level bootstrap used by signup and
    /// the demo workspace.
    ///
    /// # Errors
    /// `invalid_email`, `weak_password`, `invalid_name` (400); `email_taken` (409) when the
    /// email exists with another password; `slug_taken` (409).
    pub async fn create_organization(&self, new: NewOrganization) -> Result<(Organization, User)> {
        let name = new.name.trim();
        if name.is_empty() || name.chars().count() > 120 {
            return Err(Error::invalid("invalid_name", "organization name must be 1 to 120 characters"));
        }
        let email = normalize_email(&new.owner_email)?;
        if new.owner_password.expose().chars().count() < 8 {
            return Err(Error::invalid("weak_password", "passwords need at least 8 characters"));
        }
        let now = self.inner.clock.now();
        let id = OrganizationId::generate(now.unix_ms());
        let slug = match new.slug {
            Some(s) => s,
            None => {
                let base = slugify(name);
                let suffix = &id.as_str()[id.as_str().len() - 6..];
                format!("{}-{}", if base.is_empty() { "org" } else { &base }, suffix.to_lowercase())
            }
        };
        let org = Organization {
            id,
            name: name.to_owned(),
            slug,
            billing_state: new.billing_state,
            line_slots: new.line_slots,
            plan: DEFAULT_PLAN.to_owned(),
            created_at: now,
        };
        let existing = self.inner.store.find_user_by_email(&email).await?;
        let (user, new_user) = match existing {
            Some(user) => {
                let ok = verify_password(self.inner, user.password_hash.clone(), &new.owner_password).await?
                    && user.password_hash.is_some();
                if !ok {
                    return Err(Error::conflict("email_taken", "an account with this email already exists"));
                }
                (user, false)
            }
            None => {
                let hash = hash_password(self.inner, &new.owner_password).await?;
                let user = User {
                    id: UserId::generate(now.unix_ms()),
                    email,
                    display_name: new.owner_name.trim().to_owned(),
                    password_hash: Some(hash),
                    created_at: now,
                };
                (user, true)
            }
        };
        self.inner.store.create_organization(&org, &user, new_user).await?;
        Ok((org, user))
    }

    /// Sets a user's password (system-level; used by the demo bootstrap and password resets).
    ///
    /// # Errors
    /// `weak_password` (400); `not_found` (404) for an unknown user.
    pub async fn set_password(&self, user: &UserId, password: &Secret) -> Result<()> {
        if password.expose().chars().count() < 8 {
            return Err(Error::invalid("weak_password", "passwords need at least 8 characters"));
        }
        self.inner.store.get_user(user).await?.ok_or_else(|| Error::not_found("user"))?;
        let hash = hash_password(self.inner, password).await?;
        self.inner.store.set_password_hash(user, &hash).await
    }

    /// Self-service signup: creates an organization in billing state `pending` with the caller
    /// as its owner, and logs them in to it. An existing account keeps its password and gets
    /// another organization (login then asks which one).
    ///
    /// # Errors
    /// `too_many_signups` (429) past 10 signups per client address per hour; `invalid_name`,
    /// `invalid_owner_name`, `invalid_line_slots`, `invalid_email`, `weak_password` (400);
    /// `email_taken` (409) when the email exists with another password.
    pub async fn signup(&self, req: SignupRequest) -> Result<LoginResponse> {
        self.inner.throttle.signup(req.client_addr, self.inner.clock.now())?;
        let owner_name = req.owner_name.trim();
        if owner_name.is_empty() || owner_name.chars().count() > 120 {
            return Err(Error::invalid("invalid_owner_name", "ownerName must be 1 to 120 characters"));
        }
        let line_slots = req.line_slots.unwrap_or(1);
        if !(1..=MAX_SIGNUP_LINE_SLOTS).contains(&line_slots) {
            return Err(Error::invalid(
                "invalid_line_slots",
                format!("lineSlots must be between 1 and {MAX_SIGNUP_LINE_SLOTS}"),
            ));
        }
        let (organization, user) = self
            .create_organization(NewOrganization {
                name: req.organization_name,
                slug: None,
                owner_email: req.email,
                owner_name: owner_name.to_owned(),
                owner_password: req.password,
                billing_state: BillingState::Pending,
                line_slots,
            })
            .await?;
        AuthService { inner: self.inner }.start_session(user, organization, Role::Owner).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_emails() {
        assert_eq!(slugify("Acme Support, Inc."), "acme-support-inc");
        assert_eq!(normalize_email(" Owner@Example.COM ").unwrap(), "owner@example.com");
        assert!(normalize_email("nope").is_err());
        assert!(normalize_email("a@b").is_err());
    }
}
