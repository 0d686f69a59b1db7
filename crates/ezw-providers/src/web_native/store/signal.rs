//! Signal protocol state: identities, sessions, pre-keys, signed pre-keys, sender keys.

use std::sync::Arc;

use async_trait::async_trait;
use whatsapp_rust::bytes::Bytes;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::SignalStore;

use super::{corrupt, id_key, kind, EzwBackend};

/// A pre-key's stored value: the uploaded flag, then the record.
fn prekey_value(record: &[u8], uploaded: bool) -> Vec<u8> {
    let mut value = Vec::with_capacity(record.len() + 1);
    value.push(u8::from(uploaded));
    value.extend_from_slice(record);
    value
}

fn prekey_record(value: &[u8]) -> Result<Bytes> {
    match value.split_first() {
        Some((_, record)) => Ok(Bytes::copy_from_slice(record)),
        None => Err(corrupt("empty pre-key")),
    }
}

fn parse_id(key: &str) -> Result<u32> {
    key.parse().map_err(|_| corrupt("bad pre-key id"))
}

#[async_trait]
impl SignalStore for EzwBackend {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.put_one(kind::IDENTITY, "", address, &key).await
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let records: Vec<_> = identities.iter().map(|(a, k)| self.seal(kind::IDENTITY, "", a, k, 0)).collect();
        self.put(&records).await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        match self.get_one(kind::IDENTITY, "", address).await? {
            Some(v) => v.try_into().map(Some).map_err(|_| corrupt("identity key is not 32 bytes")),
            None => Ok(None),
        }
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.delete_one(kind::IDENTITY, "", address).await
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self.get_one(kind::SESSION, "", address).await?.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put_one(kind::SESSION, "", address, session).await
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let records: Vec<_> = sessions.iter().map(|(a, s)| self.seal(kind::SESSION, "", a, s, 0)).collect();
        self.put(&records).await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.delete_one(kind::SESSION, "", address).await
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        let _guard = self.rmw.lock().await;
        self.put_one(kind::PREKEY, "", &id_key(id), &prekey_value(record, uploaded)).await
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let records: Vec<_> = keys
            .iter()
            .map(|(id, r)| self.seal(kind::PREKEY, "", &id_key(*id), &prekey_value(r, uploaded), 0))
            .collect();
        let _guard = self.rmw.lock().await;
        self.put(&records).await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        self.get_one(kind::PREKEY, "", &id_key(id)).await?.map(|v| prekey_record(&v)).transpose()
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        let keys: Vec<String> = ids.iter().map(|id| id_key(*id)).collect();
        let found = self.get_many(kind::PREKEY, Some(""), Some(&keys)).await?;
        let mut out = Vec::with_capacity(found.len());
        // In the order asked for, like the trait's default.
        for id in ids {
            let key = id_key(*id);
            if let Some(o) = found.iter().find(|o| o.key == key) {
                out.push((*id, prekey_record(&o.value)?));
            }
        }
        Ok(out)
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        let keys: Vec<String> = ids.iter().map(|id| id_key(*id)).collect();
        // Under the lock that `remove_prekey` takes, so a key consumed meanwhile stays deleted.
        let _guard = self.rmw.lock().await;
        let found = self.get_many(kind::PREKEY, Some(""), Some(&keys)).await?;
        let records: Vec<_> = found
            .iter()
            .filter(|o| o.value.first() == Some(&0))
            .map(|o| {
                let mut value = o.value.clone();
                value[0] = 1;
                self.seal(kind::PREKEY, "", &o.key, &value, 0)
            })
            .collect();
        self.put(&records).await
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        let _guard = self.rmw.lock().await;
        self.delete_one(kind::PREKEY, "", &id_key(id)).await
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let all = self.get_many(kind::PREKEY, Some(""), None).await?;
        all.iter().map(|o| parse_id(&o.key)).try_fold(0, |max, id| id.map(|id| max.max(id)))
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put_one(kind::SIGNED_PREKEY, "", &id_key(id), record).await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.get_one(kind::SIGNED_PREKEY, "", &id_key(id)).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        let all = self.get_many(kind::SIGNED_PREKEY, Some(""), None).await?;
        let mut out = all.into_iter().map(|o| Ok((parse_id(&o.key)?, o.value))).collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|(id, _)| *id);
        Ok(out)
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.delete_one(kind::SIGNED_PREKEY, "", &id_key(id)).await
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.put_one(kind::SENDER_KEY, "", address, record).await
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        let records: Vec<_> = sender_keys.iter().map(|(a, r)| self.seal(kind::SENDER_KEY, "", a, r, 0)).collect();
        self.put(&records).await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.get_one(kind::SENDER_KEY, "", address).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.delete_one(kind::SENDER_KEY, "", address).await
    }
}
