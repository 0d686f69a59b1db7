//! [`EzwBackend`]: `whatsapp-rust`'s storage traits on EZW's [`SessionStore`], scoped by
//! organization and line, every value sealed at rest with [`SecretCipher`].
//!
//! Each thing the crate stores becomes one [`SessionStateRecord`] addressed by
//! `(kind, scope, key)` within the line (see [`kind`] for the table). Keys are plain (addresses,
//! ids) so records can be selected without decrypting; values are sealed, and each sealed value
//! carries a digest of its full address (organization, line, kind, scope, key), so a value copied
//! to another address, line or organization does not open.
//!
//! Read-modify-write operations the crate asks to be atomic (message-secret and trusted-contact
//! token merges, the LID/phone index, marking pre-keys uploaded) run under one lock per backend.
//! That is enough because a line's session runs on exactly one node at a time (its session
//! lease) and one backend serves it there.

mod app_sync;
mod device;
mod msg_secret;
mod protocol;
mod signal;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ezw_core::crypto::{sha256_hex, SecretCipher};
use ezw_core::ids::{LineId, OrganizationId};
use ezw_core::ports::{SessionStateRecord, SessionStore, StateSelector};
use ezw_core::Secret;
use whatsapp_rust::wacore::store::error::{Result, StoreError};

/// The record kinds the backend writes (the `kind` column of the session state).
pub mod kind {
    /// The device: our keys, account and registration (one record, serialized with serde).
    pub const DEVICE: &str = "device";
    /// A remote address's identity key (key: the Signal address).
    pub const IDENTITY: &str = "identity";
    /// A Signal session (key: the Signal address).
    pub const SESSION: &str = "session";
    /// A one-time pre-key (key: the zero-padded id; the value's first byte is the uploaded flag).
    pub const PREKEY: &str = "prekey";
    /// A signed pre-key (key: the zero-padded id).
    pub const SIGNED_PREKEY: &str = "signed_prekey";
    /// A group sender key (key: the sender key address).
    pub const SENDER_KEY: &str = "sender_key";
    /// An app-state sync key (key: hex of the key id; value: JSON).
    pub const SYNC_KEY: &str = "sync_key";
    /// The id of the most recently stored sync key (one record).
    pub const SYNC_KEY_LATEST: &str = "sync_key_latest";
    /// An app-state collection's version and hash (key: the collection name; value: JSON).
    pub const APP_VERSION: &str = "app_version";
    /// An app-state mutation MAC (scope: the collection; key: hex of the index MAC).
    pub const MUTATION_MAC: &str = "mutation_mac";
    /// Whether a group device holds our sender key (scope: the group; key: the device JID).
    pub const SENDER_KEY_DEVICE: &str = "skd";
    /// A LID to phone-number mapping (key: the LID user; value: JSON).
    pub const LID: &str = "lid";
    /// The reverse index of [`LID`] (key: the phone number; value: the LID).
    pub const PN: &str = "pn";
    /// A retry collision base key (scope: the address; key: the message id).
    pub const BASE_KEY: &str = "base_key";
    /// A user's device list (key: the user; value: JSON).
    pub const DEVICE_LIST: &str = "device_list";
    /// A group's metadata blob (key: the group JID).
    pub const GROUP_META: &str = "group_meta";
    /// A trusted-contact token (key: the JID; value: JSON).
    pub const TC_TOKEN: &str = "tc_token";
    /// A sent message kept for retries (scope: the chat; key: the message id; stamp: when).
    pub const SENT_MSG: &str = "sent_msg";
    /// A decrypted inbound message awaiting its durability commit (scope: the chat; key: the
    /// sender and id; stamp: when).
    pub const PENDING_INBOUND: &str = "pending_inbound";
    /// An outbound message secret (scope: the chat; key: the sender and id; stamp: its expiry).
    pub const MSG_SECRET: &str = "msg_secret";
}

/// `whatsapp-rust`'s storage backend on EZW's storage, for one line of one organization.
/// Everything it writes is sealed with the server's [`SecretCipher`].
pub struct EzwBackend {
    store: Arc<dyn SessionStore>,
    cipher: SecretCipher,
    org: OrganizationId,
    line: LineId,
    /// Serializes the read-modify-write operations (see the module documentation).
    rmw: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for EzwBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EzwBackend")
            .field("organization", &self.org)
            .field("line", &self.line)
            .field("cipher", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// One record as read back and opened.
struct Opened {
    scope: String,
    key: String,
    value: Vec<u8>,
}

fn db_error(e: ezw_core::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Validation(format!("stored session state is unreadable: {what}"))
}

fn json_error(e: serde_json::Error) -> StoreError {
    StoreError::Serialization(Box::new(e))
}

/// A key that joins two strings without ambiguity (`<len of a>:<a><b>`).
fn pair_key(a: &str, b: &str) -> String {
    format!("{}:{a}{b}", a.len())
}

/// A numeric id as a key that sorts like the number.
fn id_key(id: u32) -> String {
    format!("{id:010}")
}

fn lower_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 0xF)]));
    }
    out
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

impl EzwBackend {
    /// A backend for `line` of `org` on `store`, sealing with `cipher`.
    #[must_use]
    pub fn new(store: Arc<dyn SessionStore>, cipher: SecretCipher, org: OrganizationId, line: LineId) -> Self {
        Self { store, cipher, org, line, rmw: tokio::sync::Mutex::new(()) }
    }

    /// The organization whose line this backend serves.
    #[must_use]
    pub fn organization_id(&self) -> &OrganizationId {
        &self.org
    }

    /// The line this backend serves.
    #[must_use]
    pub fn line_id(&self) -> &LineId {
        &self.line
    }

    /// Deletes every record of the line (before a new pairing, after a logout).
    ///
    /// # Errors
    /// A storage error.
    pub async fn clear(&self) -> ezw_core::Result<u64> {
        self.store.clear_session_state(&self.org, &self.line).await
    }

    /// The digest binding a sealed value to its address.
    fn tag(&self, kind: &str, scope: &str, key: &str) -> String {
        let address = [self.org.as_str(), self.line.as_str(), kind, scope, key].join("\u{0}");
        sha256_hex(address.as_bytes())
    }

    /// A record holding `value` sealed.
    fn seal(&self, kind: &str, scope: &str, key: &str, value: &[u8], stamp: i64) -> SessionStateRecord {
        let plain = format!("{}:{}", self.tag(kind, scope, key), STANDARD.encode(value));
        let sealed = self.cipher.seal(&Secret::new(plain));
        SessionStateRecord {
            kind: kind.to_owned(),
            scope: scope.to_owned(),
            key: key.to_owned(),
            value: sealed.into_bytes(),
            stamp,
        }
    }

    /// The value of a stored record, checked against its address.
    fn open(&self, record: &SessionStateRecord) -> Result<Vec<u8>> {
        let sealed = std::str::from_utf8(&record.value).map_err(|_| corrupt("not a sealed value"))?;
        let plain = self.cipher.open(sealed).map_err(|_| corrupt("sealed with another key"))?;
        let (tag, data) = plain.expose().split_once(':').ok_or_else(|| corrupt("no address tag"))?;
        if tag != self.tag(&record.kind, &record.scope, &record.key) {
            return Err(corrupt("sealed for another address"));
        }
        STANDARD.decode(data).map_err(|_| corrupt("bad encoding"))
    }

    async fn get_many(&self, kind: &str, scope: Option<&str>, keys: Option<&[String]>) -> Result<Vec<Opened>> {
        let select = StateSelector { kind, scope, keys };
        let records = self.store.get_session_state(&self.org, &self.line, select).await.map_err(db_error)?;
        records
            .iter()
            .map(|r| Ok(Opened { value: self.open(r)?, scope: r.scope.clone(), key: r.key.clone() }))
            .collect()
    }

    /// Like [`Self::get_many`], with each record's scope, key, value and stamp.
    async fn get_many_with_stamps(
        &self,
        kind: &str,
        scope: Option<&str>,
        keys: Option<&[String]>,
    ) -> Result<Vec<(String, String, Vec<u8>, i64)>> {
        let select = StateSelector { kind, scope, keys };
        let records = self.store.get_session_state(&self.org, &self.line, select).await.map_err(db_error)?;
        records
            .into_iter()
            .map(|r| Ok((self.open(&r)?, r)))
            .map(|o| o.map(|(v, r)| (r.scope, r.key, v, r.stamp)))
            .collect()
    }

    async fn get_one(&self, kind: &str, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let keys = [key.to_owned()];
        let found = self.get_many(kind, Some(scope), Some(&keys)).await?;
        Ok(found.into_iter().find(|o| o.scope == scope && o.key == key).map(|o| o.value))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, kind: &str, key: &str) -> Result<Option<T>> {
        match self.get_one(kind, "", key).await? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(json_error),
            None => Ok(None),
        }
    }

    async fn put(&self, records: &[SessionStateRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.store.put_session_state(&self.org, &self.line, records).await.map_err(db_error)
    }

    async fn put_one(&self, kind: &str, scope: &str, key: &str, value: &[u8]) -> Result<()> {
        self.put(&[self.seal(kind, scope, key, value, 0)]).await
    }

    fn json_record<T: serde::Serialize>(&self, kind: &str, key: &str, value: &T) -> Result<SessionStateRecord> {
        let bytes = serde_json::to_vec(value).map_err(json_error)?;
        Ok(self.seal(kind, "", key, &bytes, 0))
    }

    async fn delete(&self, kind: &str, scope: Option<&str>, keys: Option<&[String]>) -> Result<u64> {
        let select = StateSelector { kind, scope, keys };
        self.store.delete_session_state(&self.org, &self.line, select).await.map_err(db_error)
    }

    async fn delete_one(&self, kind: &str, scope: &str, key: &str) -> Result<()> {
        self.delete(kind, Some(scope), Some(&[key.to_owned()])).await.map(|_| ())
    }

    async fn delete_before(&self, kind: &str, cutoff: i64) -> Result<u32> {
        let n = self.store.delete_session_state_before(&self.org, &self.line, kind, cutoff).await.map_err(db_error)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn take(&self, kind: &str, scope: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let taken = self.store.take_session_state(&self.org, &self.line, kind, scope, key).await.map_err(db_error)?;
        taken.map(|r| self.open(&r)).transpose()
    }
}
