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
        // A durable subscription's stream stores a core publish after the server has it, on
        // its own time: under load a scenario could read the stream's end before the
        // message was stored (an ack "of everything" then left it to come). So when a stream
        // keeps this topic, wait for it to have stored one more message, as the bus does
        // within `publish`.
        let js = self.jetstream();
        let subject = crate::subject::subject(self.prefix(), crate::subject::MESSAGES, topic);
        let kept = match js.stream_by_subject(subject).await {
            Ok(name) => {
                let mut stream = js
                    .get_stream(&name)
                    .await
                    .map_err(|e| fail("publish")(&e))?;
                let before = stream
                    .info()
                    .await
                    .map_err(|e| fail("publish")(&e))?
                    .state
                    .last_sequence;
                Some((stream, before))
            }
            Err(_) => None,
        };
        Nats::publish(self, topic, payload.to_vec())
            .await
            .map_err(|e| fail("publish")(&e))?;
        // Core NATS: make sure the server has it before the caller goes on (or exits).
        self.client()
            .flush()
            .await
            .map_err(|e| fail("publish")(&e))?;
        if let Some((mut stream, before)) = kept {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
            while stream
                .info()
                .await
                .map_err(|e| fail("publish")(&e))?
                .state
                .last_sequence
                <= before
            {
                if tokio::time::Instant::now() >= deadline {
                    return Err(fail("publish")(
                        &"the durable stream did not store the message within 10 s",
                    ));
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
        Ok(())
    }
}
