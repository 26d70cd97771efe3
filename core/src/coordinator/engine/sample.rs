//! The `sample` throttle: a finished operation at most once per interval, leading and
//! trailing edge, composed with `on_finalized` into one callback.

use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::time::Instant;

use super::super::options::{EphemeralOptions, FinalizedCallback};
use super::super::snapshot::OperationSnapshot;
use super::body::panic_message;
use crate::sync::{Mutex, lock};

/// The options' `on_finalized` callback, followed by the rate-limited `sample` callback.
pub(crate) fn finalized_callback(
    options: &EphemeralOptions,
    runtime: &Handle,
) -> Option<FinalizedCallback> {
    let Some((every, sample)) = options.sample.clone() else {
        return options.on_finalized.clone();
    };
    let each = options.on_finalized.clone();
    let sampler = Arc::new(Sampler {
        every,
        callback: sample,
        runtime: runtime.clone(),
        state: Mutex::new(SampleState::default()),
    });
    Some(Arc::new(move |snap: &OperationSnapshot| {
        if let Some(each) = &each {
            each(snap);
        }
        sampler.offer(snap);
    }))
}

/// The `sample` throttle, leading and trailing edge: the first operation to finish after a
/// quiet interval is delivered at once; later ones within the interval are held (the latest
/// replaces the one before), and the latest is delivered when the interval ends, which
/// starts the next interval. At most one call per interval, and the last finish of a busy
/// spell is never left out.
struct Sampler {
    every: Duration,
    callback: FinalizedCallback,
    runtime: Handle,
    state: Mutex<SampleState>,
}

#[derive(Default)]
struct SampleState {
    /// When the callback last ran.
    last: Option<Instant>,
    /// The latest finish held for the end of the interval.
    held: Option<OperationSnapshot>,
    /// Whether a timer will deliver `held`.
    armed: bool,
}

impl Sampler {
    fn offer(self: &Arc<Self>, snap: &OperationSnapshot) {
        let now = Instant::now();
        let mut state = lock(&self.state);
        if state.armed {
            state.held = Some(snap.clone());
            return;
        }
        let due = match state.last {
            None => Some(now),
            Some(last) => last.checked_add(self.every),
        };
        let Some(due) = due else {
            // An interval too long for the clock: nothing is delivered again.
            return;
        };
        if due <= now {
            state.last = Some(now);
            drop(state);
            (self.callback)(snap);
            return;
        }
        state.held = Some(snap.clone());
        state.armed = true;
        drop(state);
        let sampler = self.clone();
        self.runtime.spawn(async move {
            tokio::time::sleep_until(due).await;
            sampler.trailing();
        });
    }

    fn trailing(&self) {
        let mut state = lock(&self.state);
        state.armed = false;
        let Some(snap) = state.held.take() else {
            return;
        };
        state.last = Some(Instant::now());
        drop(state);
        let call = std::panic::AssertUnwindSafe(|| (self.callback)(&snap));
        if let Err(panic) = std::panic::catch_unwind(call) {
            tracing::error!(
                id = %snap.id,
                panic = %panic_message(&*panic),
                "the sample callback panicked",
            );
        }
    }
}
