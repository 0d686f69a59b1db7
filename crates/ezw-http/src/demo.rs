//! The demo workspace (`--demo`): an organization, an owner with a generated password, one
//! simulator line already paired, and its API token, written to `<data-dir>/demo.json`.

use std::path::Path;

use ezw_core::model::{BillingState, LifecycleState, ProviderKind};
use ezw_core::service::{NewLine, NewOrganization};
use ezw_core::{Error, Ezw, Result, Secret};
use serde::{Deserialize, Serialize};

/// The demo organization's slug.
pub const DEMO_SLUG: &str = "demo";
/// The demo owner's email.
pub const DEMO_EMAIL: &str = "owner@demo.ezw.local";
const DEMO_LINE_PHONE: &str = "+15550100001";

/// What `demo.json` holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoInfo {
    /// Owner email.
    pub email: String,
    /// Owner password.
    pub password: String,
    /// Organization id.
    pub organization_id: String,
    /// The simulator line.
    pub line_id: String,
    /// The line's API token.
    pub line_token: String,
    /// Where the server listens.
    pub base_url: String,
}

impl std::fmt::Debug for DemoInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoInfo")
            .field("email", &self.email)
            .field("organization_id", &self.organization_id)
            .field("line_id", &self.line_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn generated_password() -> String {
    ezw_core::crypto::random_token("demo-", 12)
}

/// Creates the demo workspace, or reuses it: the organization and line are kept; the password
/// and token from an earlier `demo.json` are kept when they still work, else re-issued.
///
/// # Errors
/// Storage errors, or an unwritable data directory.
pub async fn ensure_demo(ezw: &Ezw, data_dir: &Path, base_url: &str) -> Result<DemoInfo> {
    let path = data_dir.join("demo.json");
    let previous: Option<DemoInfo> = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let store = ezw.store();
    let (org, owner, mut password) = match store.find_organization_by_slug(DEMO_SLUG).await? {
        Some(org) => {
            let owner =
                store.find_user_by_email(DEMO_EMAIL).await?.ok_or_else(|| Error::internal("demo owner missing"))?;
            (org, owner, previous.as_ref().map(|p| p.password.clone()))
        }
        None => {
            let password = generated_password();
            let (org, owner) = ezw
                .orgs()
                .create_organization(NewOrganization {
                    name: "EZW Demo".into(),
                    slug: Some(DEMO_SLUG.into()),
                    owner_email: DEMO_EMAIL.into(),
                    owner_name: "Demo Owner".into(),
                    owner_password: Secret::new(password.clone()),
                    billing_state: BillingState::Active,
                    line_slots: 10,
                })
                .await?;
            (org, owner, Some(password))
        }
    };
    let principal = ezw.auth().member_principal(&org.id, &owner.id).await?;
    let still_valid = password.as_deref().is_some_and(|p| ezw.auth().password_matches(&owner, p));
    if !still_valid {
        let fresh = generated_password();
        ezw.orgs().set_password(&owner.id, &Secret::new(fresh.clone())).await?;
        password = Some(fresh);
    }
    let lines = store.list_lines(&org.id).await?;
    let line = match lines
        .into_iter()
        .find(|l| l.provider_kind == ProviderKind::Simulator && l.lifecycle_state != LifecycleState::Archived)
    {
        Some(line) => line,
        None => {
            ezw.lines()
                .create_line(
                    &principal,
                    NewLine {
                        display_name: "Demo line".into(),
                        phone_number: DEMO_LINE_PHONE.into(),
                        provider_kind: ProviderKind::Simulator,
                        provider_config: serde_json::json!({}),
                        pacing: None,
                    },
                )
                .await?
        }
    };
    let token = match previous.as_ref().filter(|p| p.line_id == line.id.as_str()) {
        Some(p) if ezw.auth().authenticate_line_token(&p.line_token).await.is_ok() => p.line_token.clone(),
        _ => ezw.lines().rotate_api_token(&principal, &line.id).await?.token.expose().to_owned(),
    };
    let info = DemoInfo {
        email: owner.email,
        password: password.unwrap_or_default(),
        organization_id: org.id.to_string(),
        line_id: line.id.to_string(),
        line_token: token,
        base_url: base_url.to_owned(),
    };
    write_private(&path, &serde_json::to_vec_pretty(&info).unwrap_or_default())?;
    let env = format!(
        "export EZW_BASE_URL='{}'\nexport EZW_EMAIL='{}'\nexport EZW_PASSWORD='{}'\nexport EZW_ORG_ID='{}'\nexport EZW_LINE_ID='{}'\nexport EZW_LINE_TOKEN='{}'\n",
        info.base_url, info.email, info.password, info.organization_id, info.line_id, info.line_token
    );
    write_private(&data_dir.join("demo.env"), env.as_bytes())?;
    Ok(info)
}

/// Writes a file readable only by its owner.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
    file.write_all(bytes).map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
    Ok(())
}
