//! Hashing, random tokens, key derivation, and [`SecretCipher`] for credentials at rest.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::secret::Secret;

/// Lower-case hex SHA-256 of `data`.
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xF)]));
    }
    out
}

/// 32 bytes from the operating system's CSPRNG (a fresh signing or encryption key).
#[must_use]
pub fn random_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// `prefix` followed by `bytes` random bytes in URL-safe base64 (no padding).
#[must_use]
pub fn random_token(prefix: &str, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(buf))
}

/// A purpose-specific 32-byte key derived from a master key: HMAC-SHA256(master, purpose).
#[must_use]
pub fn derive_key(master: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master).expect("HMAC accepts any key length");
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Lower-case hex HMAC-SHA256 of `data` with `key`.
#[must_use]
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two byte strings.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The prefix of sealed values.
const SEALED_PREFIX: &str = "enc:v1:";

/// Encrypts credentials at rest (XChaCha20-Poly1305, random 192-bit nonce per value). Sealed
/// values are strings `enc:v1:<base64(nonce || ciphertext)>`, safe to store and to print.
#[derive(Clone)]
pub struct SecretCipher {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretCipher([redacted])")
    }
}

impl SecretCipher {
    /// A cipher with a 32-byte key (derive it with [`derive_key`]).
    #[must_use]
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: XChaCha20Poly1305::new(key.into()) }
    }

    /// Whether a string is a sealed value.
    #[must_use]
    pub fn is_sealed(value: &str) -> bool {
        value.starts_with(SEALED_PREFIX)
    }

    /// Encrypts a secret.
    #[must_use]
    pub fn seal(&self, secret: &Secret) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), secret.expose().as_bytes())
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(out))
    }

    /// Decrypts a sealed value.
    ///
    /// # Errors
    /// `Internal` (`credentials_unreadable`) when the value is not sealed or was sealed with
    /// another key (a lost or replaced server key).
    pub fn open(&self, sealed: &str) -> Result<Secret> {
        let bad = || {
            Error::new(
                crate::ErrorKind::Internal,
                "credentials_unreadable",
                "stored credentials cannot be decrypted with this server key",
            )
        };
        let raw = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(bad)?;
        let bytes = STANDARD.decode(raw).map_err(|_| bad())?;
        if bytes.len() < 24 {
            return Err(bad());
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plain = self.cipher.decrypt(XNonce::from_slice(nonce), ciphertext).map_err(|_| bad())?;
        String::from_utf8(plain).map(Secret::new).map_err(|_| bad())
    }
}

/// A masked view of a secret for display: `…` and its last four characters.
#[must_use]
pub fn mask(secret: &Secret) -> String {
    let chars: Vec<char> = secret.expose().chars().collect();
    if chars.len() <= 8 {
        return "…".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_round_trip_and_resist_tampering() {
        let cipher = SecretCipher::new(&derive_key(b"master key", "credentials"));
        let sealed = cipher.seal(&Secret::new("EAAG-token-1234"));
        assert!(SecretCipher::is_sealed(&sealed));
        assert!(!sealed.contains("EAAG"));
        assert_ne!(sealed, cipher.seal(&Secret::new("EAAG-token-1234")), "fresh nonce per seal");
        assert_eq!(cipher.open(&sealed).unwrap().expose(), "EAAG-token-1234");
        let other = SecretCipher::new(&derive_key(b"other key", "credentials"));
        assert_eq!(other.open(&sealed).unwrap_err().code(), "credentials_unreadable");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(cipher.open(&tampered).is_err());
        assert_eq!(mask(&Secret::new("EAAG-token-1234")), "…1234");
        assert_eq!(mask(&Secret::new("short")), "…");
        assert!(
            constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd") && !constant_time_eq(b"ab", b"abc")
        );
    }

    #[test]
    fn sha256_known_vector() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn tokens_are_prefixed_and_distinct() {
        let a = random_token("ezw_line_", 24);
        assert!(a.starts_with("ezw_line_") && a.len() == 9 + 32);
        assert_ne!(a, random_token("ezw_line_", 24));
    }
}
