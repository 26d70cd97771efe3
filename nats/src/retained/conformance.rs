//! `Nats` as a backend of the shared retained-state test bodies.

use ephemeral_bus::retained::StoreError;
use ephemeral_bus::retained::conformance::Backend;

use super::fail;
use crate::{Nats, NatsOptions};

/// The server's URL, for a child.
const URL_ENV: &str = "EPHEMERAL_CONFORMANCE_NATS_URL";
/// The subject prefix, for a child.
const PREFIX_ENV: &str = "EPHEMERAL_CONFORMANCE_NATS_PREFIX";

async fn connect(url: &str, prefix: &str) -> Result<Nats, StoreError> {
    Nats::connect_with(url, NatsOptions::default().prefix(prefix))
        .await
        .map_err(|e| fail("connect")(&e))
}

impl Backend for Nats {
    async fn from_env() -> Result<Self, StoreError> {
        let url = std::env::var(URL_ENV)
            .map_err(|_| fail("connect")(&format!("{URL_ENV} is not set")))?;
        let prefix = std::env::var(PREFIX_ENV).unwrap_or_else(|_| crate::DEFAULT_PREFIX.to_owned());
        connect(&url, &prefix).await
    }

    fn child_env(&self) -> Vec<(String, String)> {
        vec![
            (URL_ENV.to_owned(), self.url().to_owned()),
            (PREFIX_ENV.to_owned(), self.prefix().to_owned()),
        ]
    }

    async fn connect_again(&self) -> Result<Self, StoreError> {
        connect(self.url(), self.prefix()).await
    }

    async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), StoreError> {
        Nats::publish(self, topic, payload.to_vec())
            .await
            .map_err(|e| fail("publish")(&e))?;
        // Core NATS: make sure the server has it before the caller goes on (or exits).
        self.client().flush().await.map_err(|e| fail("publish")(&e))
    }
}
