//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>`
//! with the key being the base64 part of a `whsec_` secret.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::crypto::{constant_time_eq, hmac_sha256};
use crate::secret::Secret;
use crate::{Error, Result};

/// The prefix of every signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Random bytes in a generated secret (the standard asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// How far a signature's timestamp may be from the verifier's clock (seconds).
pub const TOLERANCE_SECS: i64 = 300;

/// A webhook signing secret (`whsec_` + base64 of its key bytes). Prints `[redacted]`.
#[derive(Clone)]
pub struct SigningSecret {
    text: Secret,
    key: Vec<u8>,
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

impl SigningSecret {
    /// A new random secret.
    #[must_use]
    pub fn generate() -> Self {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
        let text = format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes));
        Self { text: Secret::new(text), key: bytes.to_vec() }
    }

    /// Parses `whsec_<base64>`; the key must be 24 to 64 bytes.
    ///
    /// # Errors
    /// `invalid_webhook_secret` when the prefix, the base64 or the length is wrong.
    pub fn parse(text: &str) -> Result<Self> {
        let bad =
            || Error::invalid("invalid_webhook_secret", "a webhook secret is whsec_ followed by base64 of 24-64 bytes");
        let b64 = text.strip_prefix(SECRET_PREFIX).ok_or_else(bad)?;
        let key = STANDARD.decode(b64).map_err(|_| bad())?;
        if !(24..=64).contains(&key.len()) {
            return Err(bad());
        }
        Ok(Self { text: Secret::new(text), key })
    }

    /// The full `whsec_...` text (to show once to those who manage the webhook).
    #[must_use]
    pub fn expose(&self) -> &str {
        self.text.expose()
    }

    /// As a [`Secret`] (for sealing at rest).
    #[must_use]
    pub fn as_secret(&self) -> &Secret {
        &self.text
    }

    /// `v1,<base64>` for one message.
    #[must_use]
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        format!("v1,{}", STANDARD.encode(self.mac(id, timestamp, body)))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
        let mut content = Vec::with_capacity(id.len() + body.len() + 24);
        content.extend_from_slice(id.as_bytes());
        content.push(b'.');
        content.extend_from_slice(timestamp.to_string().as_bytes());
        content.push(b'.');
        content.extend_from_slice(body);
        hmac_sha256(&self.key, &content)
    }
}

/// The `webhook-signature` header value for a message signed with every given secret
/// (space-separated, as during a key rotation).
#[must_use]
pub fn signature_header(secrets: &[SigningSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| s.sign(id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The timestamp is more than [`TOLERANCE_SECS`] away from now.
    #[error("the webhook timestamp is outside the tolerance")]
    Timestamp,
    /// No `v1` signature matched.
    #[error("no matching webhook signature")]
    Signature,
}

/// Verifies a message as a receiver would: the timestamp within tolerance of `now_secs`, and at
/// least one `v1,` entry of `header` matching (other versions are ignored).
///
/// # Errors
/// [`VerifyError`] saying which check failed.
pub fn verify(
    secret: &SigningSecret,
    id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now_secs: i64,
) -> std::result::Result<(), VerifyError> {
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        return Err(VerifyError::Timestamp);
    }
    let expected = secret.mac(id, timestamp, body);
    let matched = header
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|sig| STANDARD.decode(sig).is_ok_and(|bytes| constant_time_eq(&bytes, &expected)));
    if matched {
        Ok(())
    } else {
        Err(VerifyError::Signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published Standard Webhooks vectors (`../shared/specs/README.md`).
    const VECTORS: [(&str, &str, i64, &str, &str); 2] = [
        (
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            r#"{"email":"test@example.com","username":"test_user"}"#,
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        ),
    ];

    #[test]
    fn signs_the_published_vectors() {
        for (secret, id, ts, body, want) in VECTORS {
            let secret = SigningSecret::parse(secret).unwrap();
            assert_eq!(secret.sign(id, ts, body.as_bytes()), want);
            assert_eq!(verify(&secret, id, ts, body.as_bytes(), want, ts), Ok(()));
        }
    }

    #[test]
    fn rejects_a_changed_signature_body_or_id() {
        let (secret, id, ts, body, _) = VECTORS[0];
        let secret = SigningSecret::parse(secret).unwrap();
        let changed = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(verify(&secret, id, ts, body.as_bytes(), changed, ts), Err(VerifyError::Signature));
        let good = VECTORS[0].4;
        assert_eq!(verify(&secret, id, ts, br#"{"test": 2432232315}"#, good, ts), Err(VerifyError::Signature));
        assert_eq!(verify(&secret, "msg_other", ts, body.as_bytes(), good, ts), Err(VerifyError::Signature));
    }

    #[test]
    fn ignores_other_versions_and_accepts_any_matching_entry() {
        let (secret, id, ts, body, good) = VECTORS[0];
        let secret = SigningSecret::parse(secret).unwrap();
        let v2_only = good.replacen("v1,", "v2,", 1);
        assert_eq!(verify(&secret, id, ts, body.as_bytes(), &v2_only, ts), Err(VerifyError::Signature));
        let rotated = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {v2_only} {good}");
        assert_eq!(verify(&secret, id, ts, body.as_bytes(), &rotated, ts), Ok(()));
    }

    #[test]
    fn rejects_timestamps_outside_five_minutes() {
        let (secret, id, ts, body, good) = VECTORS[0];
        let secret = SigningSecret::parse(secret).unwrap();
        assert_eq!(verify(&secret, id, ts, body.as_bytes(), good, ts + 300), Ok(()));
        assert_eq!(verify(&secret, id, ts, body.as_bytes(), good, ts + 301), Err(VerifyError::Timestamp));
        assert_eq!(verify(&secret, id, ts, body.as_bytes(), good, ts - 301), Err(VerifyError::Timestamp));
    }

    #[test]
    fn generated_secrets_round_trip_and_sign_for_both_during_rotation() {
        let (old, new) = (SigningSecret::generate(), SigningSecret::generate());
        assert!(old.expose().starts_with("whsec_"));
        assert_eq!(SigningSecret::parse(old.expose()).unwrap().sign("dlv_1", 5, b"{}"), old.sign("dlv_1", 5, b"{}"));
        let header = signature_header(&[new.clone(), old.clone()], "dlv_1", 5, b"{}");
        assert_eq!(header.split(' ').count(), 2);
        assert_eq!(verify(&old, "dlv_1", 5, b"{}", &header, 5), Ok(()));
        assert_eq!(verify(&new, "dlv_1", 5, b"{}", &header, 5), Ok(()));
        assert!(format!("{old:?}").contains("[redacted]") && !format!("{old:?}").contains("whsec_"));
    }

    #[test]
    fn parse_rejects_bad_secrets() {
        for bad in ["MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_c2hvcnQ="] {
            assert_eq!(SigningSecret::parse(bad).unwrap_err().code(), "invalid_webhook_secret");
        }
    }
}
