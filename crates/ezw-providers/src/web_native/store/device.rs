//! The device record: our identity, noise and pre-keys, the paired account.

use async_trait::async_trait;
use whatsapp_rust::wacore::store::error::Result;
use whatsapp_rust::wacore::store::traits::DeviceStore;
use whatsapp_rust::wacore::store::Device;
use whatsapp_rust::StorageResourceReport;

use super::{json_error, kind, EzwBackend};

#[async_trait]
impl DeviceStore for EzwBackend {
    async fn save(&self, device: &Device) -> Result<()> {
        let record = self.json_record(kind::DEVICE, "", device)?;
        self.put(&[record]).await
    }

    async fn load(&self) -> Result<Option<Device>> {
        self.get_json(kind::DEVICE, "").await
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self.get_one(kind::DEVICE, "", "").await?.is_some())
    }

    async fn create(&self) -> Result<i32> {
        // One device per line: materialize a fresh one unless it exists.
        let _guard = self.rmw.lock().await;
        if self.get_one(kind::DEVICE, "", "").await?.is_none() {
            let bytes = serde_json::to_vec(&Device::new()).map_err(json_error)?;
            self.put(&[self.seal(kind::DEVICE, "", "", &bytes, 0)]).await?;
        }
        Ok(1)
    }

    async fn resource_report(&self) -> StorageResourceReport {
        // The state lives in EZW's database, not in this process.
        StorageResourceReport { memory_bytes: Some(0), ..StorageResourceReport::default() }
    }
}
