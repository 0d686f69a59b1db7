//! Reading vendor response bodies with a size cap, shared by every HTTP-based provider.

use ezw_core::ports::ProviderError;

/// Reads a body of at most `limit` bytes: `exceeded` is the error for a larger one (announced by
/// `Content-Length` or found while reading), `failed` classifies a transport failure mid-body.
pub(crate) async fn read_limited(
    mut response: reqwest::Response,
    limit: u64,
    exceeded: impl Fn() -> ProviderError,
    failed: impl Fn(reqwest::Error) -> ProviderError,
) -> Result<Vec<u8>, ProviderError> {
    if response.content_length().is_some_and(|n| n > limit) {
        return Err(exceeded());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(&failed)? {
        if (bytes.len() + chunk.len()) as u64 > limit {
            return Err(exceeded());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The response's `Content-Type`, when it has a non-empty one.
#[cfg(any(feature = "twilio", feature = "waha"))]
pub(crate) fn content_type(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|s| !s.is_empty())
}
