//! Shared handler state.

use ezw_core::Ezw;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The EZW runtime.
    pub ezw: Ezw,
    /// The public base URL vendors reach this server at (webhook signatures cover it).
    pub public_url: url::Url,
    /// The simulator, when this server runs one (its "scan" route pairs simulated QR lines).
    pub sim: Option<ezw_providers::sim::SimProvider>,
}
