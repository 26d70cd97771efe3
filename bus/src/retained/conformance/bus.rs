//! The bus as a conformance backend.

use std::future::Future;

use super::Backend;
use crate::retained::StoreError;
use crate::{BUS_DIR_ENV, Bus, BusOptions};

/// The environment variable that names the bus to a child.
const BUS_NAME_ENV: &str = "EPHEMERAL_CONFORMANCE_BUS";

fn parent(bus: &Bus) -> std::path::PathBuf {
    bus.dir()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}

impl Backend for Bus {
    async fn from_env() -> Result<Self, StoreError> {
        let name = std::env::var(BUS_NAME_ENV).map_err(|_| StoreError::Backend {
            backend: "bus",
            op: "connect",
            message: format!("{BUS_NAME_ENV} is not set"),
        })?;
        // The parent directory comes from EPHEMERAL_BUS_DIR, as for any program.
        Ok(Bus::open(&name).await?)
    }

    fn child_env(&self) -> Vec<(String, String)> {
        vec![
            (
                BUS_DIR_ENV.to_owned(),
                parent(self).to_string_lossy().into_owned(),
            ),
            (BUS_NAME_ENV.to_owned(), self.name().to_string()),
        ]
    }

    fn connect_again(&self) -> impl Future<Output = Result<Self, StoreError>> + Send {
        let (name, dir) = (self.name().to_string(), parent(self));
        async move { Ok(Bus::open_with(&name, BusOptions::default().dir(dir)).await?) }
    }

    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let (bus, topic, payload) = (self.clone(), topic.to_owned(), payload.to_vec());
        async move {
            bus.publish(&topic, payload).await?;
            Ok(())
        }
    }
}
