//! WhatsApp Web protocol state: sender-key distribution, LID/phone mappings, retry base keys,
//! device lists, group metadata, trusted-contact tokens, sent messages kept for retries and the
//! pending inbound buffer.

use std::collections::BTreeMap;

use async_trait::async_trait;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{
    DeviceListRecord, LidPnMappingEntry, PendingInboundKey, PendingInboundRow, ProtocolStore, TcTokenEntry,
};

use super::{corrupt, json_error, kind, pair_key, EzwBackend};

fn now_secs() -> i64 {
    whatsapp_rust::wacore::time::now_secs()
}

impl EzwBackend {
    /// Stores `entry` and its reverse index, dropping the index of the phone the LID had before.
    async fn put_lid_mapping_locked(&self, entry: &LidPnMappingEntry) -> Result<()> {
        let previous: Option<LidPnMappingEntry> = self.get_json(kind::LID, &entry.lid).await?;
        if let Some(old) = previous.filter(|old| old.phone_number != entry.phone_number) {
            self.delete_one(kind::PN, "", &old.phone_number).await?;
        }
        let records = [
            self.json_record(kind::LID, &entry.lid, entry)?,
            self.seal(kind::PN, "", &entry.phone_number, entry.lid.as_bytes(), 0),
        ];
        self.put(&records).await
    }

    async fn get_tc_token_unlocked(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.get_json(kind::TC_TOKEN, jid).await
    }

    async fn put_tc_token_unlocked(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        let record = self.json_record(kind::TC_TOKEN, jid, entry)?;
        self.put(&[record]).await
    }
}

#[async_trait]
impl ProtocolStore for EzwBackend {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        let found = self.get_many(kind::SENDER_KEY_DEVICE, Some(group_jid), None).await?;
        Ok(found.into_iter().map(|o| (o.key, o.value.first() == Some(&1))).collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let records: Vec<_> = entries
            .iter()
            .map(|(device, has_key)| self.seal(kind::SENDER_KEY_DEVICE, group_jid, device, &[u8::from(*has_key)], 0))
            .collect();
        self.put(&records).await
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.delete(kind::SENDER_KEY_DEVICE, Some(group_jid), None).await.map(|_| ())
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = device_jids.iter().map(|d| (*d).to_owned()).collect();
        // Every group (no scope).
        self.delete(kind::SENDER_KEY_DEVICE, None, Some(&keys)).await.map(|_| ())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        self.delete(kind::SENDER_KEY_DEVICE, None, None).await.map(|_| ())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.get_json(kind::LID, lid).await
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        let Some(lid) = self.get_one(kind::PN, "", phone).await? else { return Ok(None) };
        let lid = String::from_utf8(lid).map_err(|_| corrupt("bad LID index"))?;
        self.get_json(kind::LID, &lid).await
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        let _guard = self.rmw.lock().await;
        self.put_lid_mapping_locked(entry).await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        let _guard = self.rmw.lock().await;
        for entry in entries {
            self.put_lid_mapping_locked(entry).await?;
        }
        Ok(())
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        let found = self.get_many(kind::LID, Some(""), None).await?;
        found.into_iter().map(|o| serde_json::from_slice(&o.value).map_err(json_error)).collect()
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.put_one(kind::BASE_KEY, address, message_id, base_key).await
    }

    async fn has_same_base_key(&self, address: &str, message_id: &str, current_base_key: &[u8]) -> Result<bool> {
        Ok(self.get_one(kind::BASE_KEY, address, message_id).await?.is_some_and(|k| k == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.delete_one(kind::BASE_KEY, address, message_id).await
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        let record = self.json_record(kind::DEVICE_LIST, &record.user, &record)?;
        self.put(&[record]).await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let records =
            records.iter().map(|r| self.json_record(kind::DEVICE_LIST, &r.user, r)).collect::<Result<Vec<_>>>()?;
        self.put(&records).await
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.get_json(kind::DEVICE_LIST, user).await
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.delete_one(kind::DEVICE_LIST, "", user).await
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.get_one(kind::GROUP_META, "", group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.put_one(kind::GROUP_META, "", group_jid, blob).await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.delete_one(kind::GROUP_META, "", group_jid).await
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.get_tc_token_unlocked(jid).await
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        let _guard = self.rmw.lock().await;
        self.put_tc_token_unlocked(jid, entry).await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        let _guard = self.rmw.lock().await;
        self.delete_one(kind::TC_TOKEN, "", jid).await
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        let found = self.get_many(kind::TC_TOKEN, Some(""), None).await?;
        Ok(found.into_iter().map(|o| o.key).collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        let _guard = self.rmw.lock().await;
        let found = self.get_many(kind::TC_TOKEN, Some(""), None).await?;
        let mut stale = Vec::new();
        for o in found {
            let entry: TcTokenEntry = serde_json::from_slice(&o.value).map_err(json_error)?;
            let token_live = !entry.token.is_empty() && entry.token_timestamp >= token_cutoff;
            let sender_live = entry.sender_timestamp.is_some_and(|ts| ts >= sender_cutoff);
            if !token_live && !sender_live {
                stale.push(o.key);
            }
        }
        if stale.is_empty() {
            return Ok(0);
        }
        let n = self.delete(kind::TC_TOKEN, Some(""), Some(&stale)).await?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn touch_tc_token_sender_timestamp(&self, jid: &str, sender_timestamp: i64) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let entry = match self.get_tc_token_unlocked(jid).await? {
            Some(existing) => TcTokenEntry {
                sender_timestamp: Some(existing.sender_timestamp.map_or(sender_timestamp, |e| e.max(sender_timestamp))),
                ..existing
            },
            None => TcTokenEntry {
                token: Vec::new(),
                token_timestamp: sender_timestamp,
                sender_timestamp: Some(sender_timestamp),
            },
        };
        self.put_tc_token_unlocked(jid, &entry).await
    }

    async fn store_received_tc_token(&self, jid: &str, token: &[u8], token_timestamp: i64) -> Result<()> {
        let _guard = self.rmw.lock().await;
        let existing = self.get_tc_token_unlocked(jid).await?;
        // Newer wins; a byte-less placeholder never blocks the first real token.
        if existing.as_ref().is_some_and(|e| !e.token.is_empty() && token_timestamp < e.token_timestamp) {
            return Ok(());
        }
        let entry = TcTokenEntry {
            token: token.to_vec(),
            token_timestamp,
            sender_timestamp: existing.and_then(|e| e.sender_timestamp),
        };
        self.put_tc_token_unlocked(jid, &entry).await
    }

    async fn store_sent_message(&self, chat_jid: &str, message_id: &str, payload: &[u8]) -> Result<()> {
        self.put(&[self.seal(kind::SENT_MSG, chat_jid, message_id, payload, now_secs())]).await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        self.take(kind::SENT_MSG, chat_jid, message_id).await
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        // Older than the cutoff: stamp < cutoff.
        self.delete_before(kind::SENT_MSG, cutoff_timestamp).await
    }

    async fn store_pending_inbound(&self, chat: &str, sender: &str, id: &str, message: &[u8]) -> Result<()> {
        self.put(&[self.seal(kind::PENDING_INBOUND, chat, &pair_key(sender, id), message, now_secs())]).await
    }

    async fn get_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<Option<Vec<u8>>> {
        self.get_one(kind::PENDING_INBOUND, chat, &pair_key(sender, id)).await
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete_one(kind::PENDING_INBOUND, chat, &pair_key(sender, id)).await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.delete_before(kind::PENDING_INBOUND, cutoff_timestamp).await
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let now = now_secs();
        let records: Vec<_> = rows
            .iter()
            .map(|r| self.seal(kind::PENDING_INBOUND, r.chat, &pair_key(r.sender, r.id), r.message, now))
            .collect();
        self.put(&records).await
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let mut by_chat: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for k in keys {
            by_chat.entry(k.chat).or_default().push(pair_key(k.sender, k.id));
        }
        for (chat, keys) in by_chat {
            self.delete(kind::PENDING_INBOUND, Some(chat), Some(&keys)).await?;
        }
        Ok(())
    }
}
