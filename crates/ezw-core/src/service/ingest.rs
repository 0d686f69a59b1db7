//! Vendor webhooks: the provider verifies and parses; the events are stored before the vendor
//! gets its answer, so an acknowledged webhook is never lost.

use crate::error::{Error, ErrorKind, Result};
use crate::ids::LineId;
use crate::model::ProviderKind;
use crate::ports::{InboundRequest, IngestResponse, ProviderErrorKind};

use super::events::apply_events;
use super::runtime::Inner;

/// Webhook ingress service.
#[derive(Clone, Copy)]
pub struct IngestService<'a> {
    pub(crate) inner: &'a Inner,
}

impl IngestService<'_> {
    /// Handles one webhook for a `kind` line: verify (signature first), parse, store every event,
    /// then return what to answer the vendor.
    ///
    /// # Errors
    /// `not_found` (404) for an unknown line or one of another provider kind; the provider's
    /// code with 401 for a missing or wrong signature (nothing is stored); 400 for a payload that
    /// cannot be parsed; 503 when storage is unavailable (the vendor retries).
    pub async fn handle(
        &self,
        kind: ProviderKind,
        line_id: &LineId,
        request: &InboundRequest,
    ) -> Result<IngestResponse> {
        let line = self
            .inner
            .store
            .get_line_unscoped(line_id)
            .await?
            .filter(|l| l.provider_kind == kind)
            .ok_or_else(|| Error::not_found("line"))?;
        let provider = self.inner.provider(kind)?;
        let outcome = provider.ingest(&line, request).await.map_err(|e| {
            let kind = match e.kind {
                ProviderErrorKind::Unauthorized => ErrorKind::Unauthenticated,
                ProviderErrorKind::Permanent => ErrorKind::InvalidInput,
                ProviderErrorKind::Unsupported => ErrorKind::Unsupported,
                _ => ErrorKind::Temporary,
            };
            if kind == ErrorKind::Unauthenticated {
                tracing::warn!(line = %line.id, code = %e.code, "webhook rejected");
            }
            Error::new(kind, e.code, e.message)
        })?;
        apply_events(self.inner, outcome.events).await?;
        Ok(outcome.response)
    }
}
