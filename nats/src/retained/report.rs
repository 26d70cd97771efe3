//! A durable subscription's reported losses, recorded in its state so that no later
//! subscriber of the name is told one again.

use async_nats::jetstream::kv;
use bytes::Bytes;

/// Records, in the subscription's state, the highest sequence whose loss was handed out
/// (`reported.<id>`), so that no later subscriber is told it again. The subscriber's
/// `poll_next` sets the value as it hands a `Lagged` out (no wait, nothing to cancel);
/// this task writes it. When the subscriber goes, the last value is written before its
/// lock is released, so the next attach (which waits for the lock) reads it.
pub(crate) struct Reporter {
    pub(crate) handed: tokio::sync::watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Reporter {
    pub(crate) fn start(state: kv::Store, key: String, reported: u64) -> Self {
        let (handed, mut rx) = tokio::sync::watch::channel(reported);
        let task = tokio::spawn(async move {
            let mut written = reported;
            loop {
                let open = rx.changed().await.is_ok();
                let through = *rx.borrow_and_update();
                if through > written {
                    match state.put(&key, Bytes::from(through.to_string())).await {
                        Ok(_) => written = through,
                        // Not recorded: the next subscriber is told the loss again (never
                        // missed); said so.
                        Err(e) => tracing::warn!(
                            key = %key,
                            "recording a reported loss of a durable subscription failed: {e}"
                        ),
                    }
                }
                if !open {
                    break;
                }
            }
        });
        Self { handed, task }
    }

    /// Stops, once the last value handed out is written.
    pub(crate) async fn finish(self) {
        drop(self.handed);
        let _ = self.task.await;
    }
}
