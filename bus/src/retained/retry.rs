//! What a reading stream (a room joiner, a durable subscriber) does when a read of the
//! database fails.
//!
//! The streams' items are `Result<_, Lagged>`: there is no error item. A failed read is
//! therefore retried, with a growing pause (10 ms, doubling, at most 1 s), and logged as a
//! `tracing` warning each time; a read that still fails after [`MAX_FAILURES`] attempts in a
//! row (about 1.3 s of pauses) ends the stream, logged as a `tracing` error with the database's
//! message. A stream never ends on a read error without both.

use std::time::Duration;

use super::StoreError;

/// Failed reads in a row after which a stream gives up.
pub(crate) const MAX_FAILURES: u32 = 8;

/// Consecutive read failures of one stream.
#[derive(Debug, Default)]
pub(crate) struct ReadRetry {
    failures: u32,
}

impl ReadRetry {
    /// A read succeeded: the count starts over.
    pub(crate) fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// A read failed: waits and returns `true` to retry, or logs the end and returns
    /// `false` once [`MAX_FAILURES`] reads in a row failed.
    pub(crate) async fn failed(&mut self, what: &str, name: &str, error: &StoreError) -> bool {
        self.failures += 1;
        if self.failures >= MAX_FAILURES {
            tracing::error!(
                target: "ephemeral_bus::retained",
                %error, failures = self.failures,
                "{what} `{name}` ends: its reads of the retained-state database keep failing"
            );
            return false;
        }
        tracing::warn!(
            target: "ephemeral_bus::retained",
            %error, failures = self.failures,
            "{what} `{name}`: a read of the retained-state database failed; retrying"
        );
        let pause =
            Duration::from_millis(10 << (self.failures - 1).min(7)).min(Duration::from_secs(1));
        tokio::time::sleep(pause).await;
        true
    }
}

/// A failed read, or the injected failure of tests.
pub(crate) fn check(name: &str) -> Result<(), StoreError> {
    #[cfg(test)]
    if inject::take(name) {
        return Err(StoreError::Database {
            path: std::path::PathBuf::from("injected"),
            op: "read (injected by a test)",
            message: "injected failure".to_owned(),
        });
    }
    let _ = name;
    Ok(())
}

/// Test hook: read failures to inject per stream name (rooms and durable subscriptions).
#[cfg(test)]
pub(crate) mod inject {
    use std::collections::HashMap;
    use std::sync::Mutex;

    static FAILURES: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

    /// The next `n` reads of the stream named `name` fail.
    pub(crate) fn fail_reads(name: &str, n: u32) {
        if let Ok(mut map) = FAILURES.lock() {
            map.get_or_insert_with(HashMap::new)
                .insert(name.to_owned(), n);
        }
    }

    /// Whether this read of `name` is to fail (counting it down).
    pub(crate) fn take(name: &str) -> bool {
        let Ok(mut map) = FAILURES.lock() else {
            return false;
        };
        match map.as_mut().and_then(|m| m.get_mut(name)) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        }
    }
}
