//! The upstream's admission hook: defers items while the reporter is throttled.

use std::fmt;
use std::sync::Arc;

use ephemeral::{Admission, AdmissionRequest, Decision};
use futures::future::BoxFuture;

use super::Backpressure;

/// Defers every item while its [`Backpressure`] is throttled.
struct Throttle {
    pressure: Backpressure,
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackpressureThrottle")
            .field("signal", self.pressure.signal_name())
            .finish()
    }
}

impl Admission for Throttle {
    fn admit<'a>(&'a self, _request: &'a AdmissionRequest) -> BoxFuture<'a, Decision> {
        let mut throttled = self.pressure.inner.throttled.subscribe();
        Box::pin(async move {
            if !*throttled.borrow_and_update() {
                return Decision::Admit;
            }
            Decision::defer(async move {
                // The hook holds a clone of the reporter, so the sender outlives this wait;
                // were it gone, the item would simply be asked again.
                let _ = throttled.wait_for(|held| !*held).await;
            })
        })
    }
}

impl Backpressure {
    /// An [`Admission`] hook for the *upstream* coordinator: while this reporter is throttled
    /// ([`is_held`](Self::is_held)) its items are deferred, holding no slot, and they start
    /// the moment it is released. Pass it to `with_admission`.
    ///
    /// Unlike `defer_on("backpressure.<name>")`, which waits on the sink's hold, it waits on
    /// the reporter's own state, so the upstream is throttled even when the sink refuses the
    /// hold (for example with its `max_holds` reached).
    ///
    /// The upstream's `max_defer` bounds the wait: under `DeferPolicy::Run` (core's rule) an
    /// item held that long starts although the reporter is still throttled; under
    /// `DeferPolicy::Cancel` it ends `Cancelled(DeferTimeout)`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext, SignalSink};
    /// use ephemeral_patterns::backpressure::Backpressure;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let sink = SignalSink::default();
    /// let pressure = Backpressure::new(&sink, "db", 100, 20)?;
    /// let upstream = EphemeralWorkCoordinator::with_admission(
    ///     |_row: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
    ///     EphemeralOptions::default(),
    ///     vec![pressure.throttle()],
    /// )?;
    /// pressure.update(150); // the downstream is behind: upstream items wait
    /// upstream.enqueue(1).await?;
    /// tokio::task::yield_now().await;
    /// assert_eq!(upstream.stats().completed, 0);
    /// pressure.update(10); // caught up: they start at once
    /// upstream.drain().await?;
    /// assert_eq!(upstream.stats().completed, 1);
    /// # Ok(())
    /// # }
    /// ```
    #[must_use]
    pub fn throttle(&self) -> Arc<dyn Admission> {
        Arc::new(Throttle {
            pressure: self.clone(),
        })
    }
}
