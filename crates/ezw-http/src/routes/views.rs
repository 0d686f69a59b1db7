//! JSON shapes that differ from the domain types.

use ezw_core::model::{EffectiveSendState, Line, ProviderKind};
use serde::Serialize;

/// A line with its effective send state.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LineView {
    #[serde(flatten)]
    pub(crate) line: Line,
    pub(crate) effective_send_state: EffectiveSendState,
    pub(crate) sendable: bool,
    /// Provider kind, identifiers and masked secrets.
    pub(crate) provider: serde_json::Value,
    /// The pacing sends use: the line's own or the provider's defaults.
    pub(crate) effective_pacing: Option<ezw_core::model::Pacing>,
    /// Where the vendor must send webhooks for this line, when it uses them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) webhook_url: Option<String>,
}

impl LineView {
    pub(crate) fn new(line: Line, billing_allows: bool, state: &crate::state::AppState) -> Self {
        let effective = line.effective_send_state(billing_allows);
        let base = state.public_url.as_str().trim_end_matches('/');
        let webhook_url = match line.provider_kind {
            ProviderKind::Meta => Some(format!("{base}/hooks/meta/{}", line.id)),
            ProviderKind::Twilio => Some(format!("{base}/hooks/twilio/{}", line.id)),
            _ => None,
        };
        Self {
            provider: state.ezw.lines().provider_view(&line),
            effective_pacing: state.ezw.lines().effective_pacing(&line),
            webhook_url,
            line,
            effective_send_state: effective,
            sendable: effective == EffectiveSendState::Sendable,
        }
    }
}
