//! Batching options and their validation.

use std::time::Duration;

use ephemeral::SignalSink;

use super::BatchConfigError;

/// The largest `buffer` (the channel under the batcher counts its room in a semaphore,
/// which holds at most this many permits).
pub(crate) const MAX_BUFFER: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// How a [`Batcher`](super::Batcher) groups items.
///
/// | option | default | meaning |
/// |---|---|---|
/// | `max_size` | (required) | most items in one batch; a full batch is flushed at once |
/// | `flush_interval` | (required) | longest an item waits for its batch to fill (an interval past what the clock can hold, such as `Duration::MAX`, never flushes by time) |
/// | `buffer` | 4 × `max_size` | items accepted and waiting for the batcher's task (besides the batch being filled); `push` waits beyond (at most `usize::MAX >> 3`) |
/// | `max_retained_failures` | 1024 | failed batches kept for [`close`](super::Batcher::close) |
/// | `signals` | none | sink for `batch.flushed` and `batch.failed` |
/// | `name` | none | key of those signals |
#[derive(Debug, Clone)]
#[must_use]
pub struct BatchOptions {
    pub(crate) max_size: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) buffer: Option<usize>,
    pub(crate) max_retained_failures: usize,
    pub(crate) sink: Option<SignalSink>,
    pub(crate) name: Option<String>,
}

impl BatchOptions {
    /// Batches of at most `max_size` items, flushed at the latest `flush_interval` after the
    /// first item of the batch was pushed (or, when the handler is still busy with the
    /// previous batch then, as soon as it returns: the batch then takes every item waiting,
    /// up to `max_size`, so a slow handler gets full batches, not one item each).
    pub fn new(max_size: usize, flush_interval: Duration) -> Self {
        Self {
            max_size,
            flush_interval,
            buffer: None,
            max_retained_failures: 1024,
            sink: None,
            name: None,
        }
    }

    /// Items accepted but not yet handed to a batch (at least 1).
    pub fn buffer(mut self, items: usize) -> Self {
        self.buffer = Some(items);
        self
    }

    /// Failed batches remembered for [`close`](super::Batcher::close) and
    /// [`take_failures`](super::Batcher::take_failures); beyond it the oldest are dropped from
    /// the list (still signalled and counted in the stats).
    pub fn max_retained_failures(mut self, n: usize) -> Self {
        self.max_retained_failures = n;
        self
    }

    /// Raises `batch.flushed` (headers `size`, `reason`) and `batch.failed` (headers
    /// `size`, `error`: at most 256 bytes, cut with `…`, whole in the failures kept and the
    /// log; `panicked`) into `sink`.
    pub fn signals(mut self, sink: SignalSink) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Names this batcher; its signals carry the name as their key.
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub(crate) fn validate(&self) -> Result<usize, BatchConfigError> {
        if self.max_size == 0 {
            return Err(BatchConfigError::ZeroMaxSize);
        }
        if self.flush_interval.is_zero() {
            return Err(BatchConfigError::ZeroInterval);
        }
        let buffer = self
            .buffer
            .unwrap_or_else(|| self.max_size.saturating_mul(4));
        if buffer == 0 {
            return Err(BatchConfigError::ZeroBuffer);
        }
        if buffer > MAX_BUFFER {
            return Err(BatchConfigError::BufferTooLarge {
                buffer,
                max: MAX_BUFFER,
            });
        }
        Ok(buffer)
    }
}
