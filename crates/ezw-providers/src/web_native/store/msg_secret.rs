//! Outbound message secrets (for decrypting replies, reactions, poll votes and edits).

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{
    merge_msg_secret_expiry, merge_msg_secret_message_ts, MsgSecretEntry, MsgSecretStore,
};

use super::{json_error, kind, pair_key, EzwBackend};

/// The stored value; the expiry is the record's stamp.
#[derive(Serialize, Deserialize)]
struct Stored {
    secret: Vec<u8>,
    message_ts: i64,
}

#[async_trait]
impl MsgSecretStore for EzwBackend {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let stored = entries.len();
        if entries.is_empty() {
            return Ok(0);
        }
        let _guard = self.rmw.lock().await;
        // Merge with what is stored (and among repeats within the batch), then write once.
        let keys: Vec<String> = entries.iter().map(|e| pair_key(&e.sender, &e.msg_id)).collect();
        let existing = self.get_many_with_stamps(kind::MSG_SECRET, None, Some(&keys)).await?;
        let mut merged: HashMap<(String, String), (Vec<u8>, i64, i64)> = HashMap::new();
        for (scope, key, value, stamp) in existing {
            let s: Stored = serde_json::from_slice(&value).map_err(json_error)?;
            merged.insert((scope, key), (s.secret, stamp, s.message_ts));
        }
        let mut touched = Vec::new();
        for (entry, key) in entries.iter().zip(keys) {
            let address = (entry.chat.to_string(), key);
            let row = match merged.remove(&address) {
                Some((_, expires_at, message_ts)) => (
                    entry.secret.to_vec(),
                    merge_msg_secret_expiry(expires_at, entry.expires_at),
                    merge_msg_secret_message_ts(message_ts, entry.message_ts),
                ),
                None => (entry.secret.to_vec(), entry.expires_at, entry.message_ts),
            };
            if !touched.contains(&address) {
                touched.push(address.clone());
            }
            merged.insert(address, row);
        }
        let records = touched
            .iter()
            .map(|address| {
                let (secret, expires_at, message_ts) = &merged[address];
                let value = serde_json::to_vec(&Stored { secret: secret.clone(), message_ts: *message_ts })
                    .map_err(json_error)?;
                Ok(self.seal(kind::MSG_SECRET, &address.0, &address.1, &value, *expires_at))
            })
            .collect::<Result<Vec<_>>>()?;
        self.put(&records).await?;
        Ok(stored)
    }

    async fn get_msg_secret(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get_msg_secret_with_ts(chat, sender, msg_id).await?.map(|(secret, _)| secret))
    }

    async fn get_msg_secret_with_ts(&self, chat: &str, sender: &str, msg_id: &str) -> Result<Option<(Vec<u8>, i64)>> {
        match self.get_one(kind::MSG_SECRET, chat, &pair_key(sender, msg_id)).await? {
            Some(value) => {
                let s: Stored = serde_json::from_slice(&value).map_err(json_error)?;
                Ok(Some((s.secret, s.message_ts)))
            }
            None => Ok(None),
        }
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        // Non-zero expiry at or before the cutoff: 0 < stamp < cutoff + 1.
        self.delete_before(kind::MSG_SECRET, cutoff_timestamp.saturating_add(1)).await
    }
}
