//! Identity primitives: password hashing and signed ID tokens.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::ids::{OrganizationId, SessionId, UserId};

/// Hashes and verifies passwords.
pub trait PasswordHasher: Send + Sync + 'static {
    /// A PHC-format hash of `password`.
    ///
    /// # Errors
    /// `Internal` if hashing fails.
    fn hash(&self, password: &str) -> Result<String>;
    /// Whether `password` matches `hash`.
    fn verify(&self, password: &str, hash: &str) -> bool;
}

/// Argon2id with the `argon2` crate's default (OWASP) parameters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Argon2Hasher;

impl PasswordHasher for Argon2Hasher {
    fn hash(&self, password: &str) -> Result<String> {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| Error::internal(format!("salt encoding failed: {e}")))?;
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
    }

    fn verify(&self, password: &str, hash: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
        PasswordHash::new(hash)
            .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    }
}

/// The claims of an ID token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    /// User.
    pub sub: UserId,
    /// Organization chosen at login.
    pub org: OrganizationId,
    /// Session.
    pub sid: SessionId,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Signs and verifies ID tokens.
pub trait TokenSigner: Send + Sync + 'static {
    /// A signed token carrying `claims`.
    fn sign(&self, claims: &IdClaims) -> String;
    /// The claims of a token whose signature is valid (expiry is checked by the caller).
    ///
    /// # Errors
    /// `Unauthenticated` when the token is malformed or its signature is wrong.
    fn verify(&self, token: &str) -> Result<IdClaims>;
}

/// JWT (HS256) ID tokens signed with a server key.
#[derive(Clone)]
pub struct HmacTokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for HmacTokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacTokenSigner([redacted])")
    }
}

const JWT_HEADER: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; // {"alg":"HS256","typ":"JWT"}

impl HmacTokenSigner {
    /// A signer using `key` (at least 32 bytes recommended).
    #[must_use]
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, signing_input: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(signing_input.as_bytes());
        mac
    }
}

impl TokenSigner for HmacTokenSigner {
    fn sign(&self, claims: &IdClaims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let input = format!("{JWT_HEADER}.{payload}");
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&input).finalize().into_bytes());
        format!("{input}.{sig}")
    }

    fn verify(&self, token: &str) -> Result<IdClaims> {
        let bad = || Error::unauthenticated("invalid ID token");
        let (input, sig) = token.rsplit_once('.').ok_or_else(bad)?;
        let (header, payload) = input.split_once('.').ok_or_else(bad)?;
        if header != JWT_HEADER {
            return Err(bad());
        }
        let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| bad())?;
        self.mac(input).verify_slice(&sig).map_err(|_| bad())?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
        serde_json::from_slice(&payload).map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let signer = HmacTokenSigner::new(b"0123456789abcdef0123456789abcdef");
        let claims = IdClaims {
            sub: UserId::generate(1),
            org: OrganizationId::generate(1),
            sid: SessionId::generate(1),
            iat: 10,
            exp: 3610,
        };
        let token = signer.sign(&claims);
        assert_eq!(signer.verify(&token).unwrap(), claims);
        let mut tampered = token.clone();
        tampered.insert(JWT_HEADER.len() + 3, 'x');
        assert_eq!(signer.verify(&tampered).unwrap_err().code(), "unauthenticated");
        let other = HmacTokenSigner::new(b"another key another key another k");
        assert!(other.verify(&token).is_err());
        assert!(signer.verify("not.a.token").is_err());
    }

    #[test]
    fn argon2_hashes_verify() {
        let h = Argon2Hasher.hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(Argon2Hasher.verify("correct horse", &h));
        assert!(!Argon2Hasher.verify("wrong", &h));
        assert!(!Argon2Hasher.verify("x", "not a hash"));
    }
}
