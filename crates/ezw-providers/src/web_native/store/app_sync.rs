//! App-state synchronization: sync keys, collection versions, mutation MACs.

use std::collections::HashMap;

use async_trait::async_trait;
use whatsapp_rust::wacore::appstate::hash::HashState;
use whatsapp_rust::wacore::appstate::processor::AppStateMutationMAC;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::{AppStateSyncKey, AppSyncStore};

use super::{corrupt, from_hex, kind, lower_hex, EzwBackend};

#[async_trait]
impl AppSyncStore for EzwBackend {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.get_json(kind::SYNC_KEY, &lower_hex(key_id)).await
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        // The key and the "latest" pointer in one transaction.
        let records = [
            self.json_record(kind::SYNC_KEY, &lower_hex(key_id), &key)?,
            self.seal(kind::SYNC_KEY_LATEST, "", "", key_id, 0),
        ];
        self.put(&records).await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        Ok(self.get_json(kind::APP_VERSION, name).await?.unwrap_or_default())
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        let record = self.json_record(kind::APP_VERSION, name, &state)?;
        self.put(&[record]).await
    }

    async fn put_mutation_macs(&self, name: &str, _version: u64, mutations: &[AppStateMutationMAC]) -> Result<()> {
        let records: Vec<_> = mutations
            .iter()
            .map(|m| self.seal(kind::MUTATION_MAC, name, &lower_hex(&m.index_mac), &m.value_mac, 0))
            .collect();
        self.put(&records).await
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_one(kind::MUTATION_MAC, name, &lower_hex(index_mac)).await
    }

    async fn get_mutation_macs(&self, name: &str, index_macs: &[[u8; 32]]) -> Result<HashMap<[u8; 32], Vec<u8>>> {
        if index_macs.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<String> = index_macs.iter().map(|m| lower_hex(m)).collect();
        let found = self.get_many(kind::MUTATION_MAC, Some(name), Some(&keys)).await?;
        found
            .into_iter()
            .map(|o| {
                let index: [u8; 32] = from_hex(&o.key)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| corrupt("bad mutation MAC index"))?;
                Ok((index, o.value))
            })
            .collect()
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        if index_macs.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = index_macs.iter().map(|m| lower_hex(m)).collect();
        self.delete(kind::MUTATION_MAC, Some(name), Some(&keys)).await.map(|_| ())
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.delete(kind::MUTATION_MAC, Some(name), None).await.map(|_| ())
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        self.get_one(kind::SYNC_KEY_LATEST, "", "").await
    }
}
