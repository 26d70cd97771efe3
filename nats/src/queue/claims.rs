//! `Claims`: an idempotency helper for bodies with side effects.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;

use super::error::{QueueError, jetstream};

/// Claims on job ids in a JetStream key-value bucket, each kept for a time to live: the
/// guard for side effects under at-least-once delivery.
///
/// A job runs again when its node dies (or loses touch with the server) before the job is
/// acknowledged. A body whose side effect must not happen twice claims the job id first:
/// [`claim`](Self::claim) is true for exactly one caller per id within the time to live,
/// across every node.
///
/// What this buys, stated plainly: claiming *before* the side effect makes it happen **at
/// most once** (a node that dies between the claim and the effect leaves it undone; call
/// [`release`](Self::release) when the effect failed, so a retry can claim again). Exactly
/// once is not possible with at-least-once delivery alone; an effect that can be made
/// idempotent at its destination (an upsert keyed by the job id) needs no claim.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ephemeral_nats::testing::NatsServer::start().await;
/// use std::time::Duration;
/// use ephemeral_nats::Nats;
/// use ephemeral_nats::queue::WorkQueueOptions;
///
/// let nats = Nats::connect(&server.url()).await?;
/// let queue = nats.work_queue("emails", WorkQueueOptions::default()).await?;
/// let claims = queue.claims(Duration::from_secs(3600)).await?;
/// assert!(claims.claim("welcome-42").await?); // first: send the email
/// assert!(!claims.claim("welcome-42").await?); // a redelivery: skip it
/// claims.release("welcome-42").await?; // (the send failed: let a retry claim it)
/// assert!(claims.claim("welcome-42").await?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Claims {
    store: kv::Store,
    bucket: String,
    ttl: Duration,
}

impl Claims {
    pub(crate) async fn open(
        js: &async_nats::jetstream::Context,
        bucket: String,
        ttl: Duration,
        storage: async_nats::jetstream::stream::StorageType,
    ) -> Result<Self, QueueError> {
        if ttl.is_zero() {
            return Err(QueueError::Options {
                option: "claims ttl",
                rule: "a positive duration",
            });
        }
        let store = match js.get_key_value(&bucket).await {
            // A bucket keeps its claims for the time to live it was created with, whatever
            // a later opener asks: a claim lasting longer or shorter than `ttl` says would
            // break the caller's reasoning, so another ttl is refused, never taken silently.
            Ok(store) => {
                let status = store
                    .status()
                    .await
                    .map_err(|e| jetstream("read the claims bucket", &e))?;
                if status.max_age() != ttl {
                    return Err(QueueError::Incompatible {
                        stream: status.info.config.name.clone(),
                        problem: format!(
                            "it keeps claims for {:?}, not the {ttl:?} asked for (open the claims with a ttl of {:?}, as the other nodes do)",
                            status.max_age(),
                            status.max_age()
                        ),
                    });
                }
                store
            }
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    max_age: ttl,
                    storage,
                    ..Default::default()
                })
                .await
                .map_err(|e| jetstream("create the claims bucket", &e))?,
        };
        Ok(Self { store, bucket, ttl })
    }

    /// Claims `id`: true for the first caller within the time to live, false for every
    /// other (on any node).
    ///
    /// # Errors
    ///
    /// The server could not be asked.
    pub async fn claim(&self, id: &str) -> Result<bool, QueueError> {
        match self.store.create(kv_key(id), Bytes::new()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(jetstream("claim a job id", &e).into()),
        }
    }

    /// Whether `id` is claimed now.
    ///
    /// # Errors
    ///
    /// The server could not be asked.
    pub async fn is_claimed(&self, id: &str) -> Result<bool, QueueError> {
        match self.store.get(kv_key(id)).await {
            Ok(value) => Ok(value.is_some()),
            Err(e) => Err(jetstream("read a claim", &e).into()),
        }
    }

    /// Gives up the claim on `id`, so the next [`claim`](Self::claim) succeeds.
    ///
    /// # Errors
    ///
    /// The server could not be asked.
    pub async fn release(&self, id: &str) -> Result<(), QueueError> {
        self.store
            .purge(kv_key(id))
            .await
            .map_err(|e| jetstream("release a claim", &e).into())
    }

    /// How long a claim lasts.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Claims")
            .field("bucket", &self.bucket)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// A job id as a KV key (`[-_a-zA-Z0-9]`, everything else and `=` itself as `=XX`).
fn kv_key(id: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "={b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_valid_distinct_keys() {
        assert_eq!(kv_key("order-42"), "order-42");
        assert_eq!(kv_key("a.b"), "a=2Eb");
        assert_eq!(kv_key("a=2Eb"), "a=3D2Eb");
        assert_eq!(kv_key("é"), "=C3=A9");
    }
}
