//! `SignalAware<T>`: a FIFO coordinator whose intake follows ambient signals.

use std::fmt;

use ephemeral::{
    CoordinatorError, CoordinatorStats, EphemeralOptions, EphemeralWorkCoordinator, IntakeError,
    OperationContext, OperationId, Pattern, SignalSink,
};

use super::error::SignalAwareError;

type Build<T> = Box<
    dyn FnOnce(EphemeralOptions) -> Result<EphemeralWorkCoordinator<T>, CoordinatorError> + Send,
>;

/// A first-in, first-out work coordinator that reads the signals of a shared sink at intake:
///
/// * **Refuse** ([`refuse_on`](SignalAwareBuilder::refuse_on)): while a live signal matches,
///   [`enqueue`](Self::enqueue) returns [`SignalAwareError::Refused`] at once, with the item
///   and the signal's name. It accepts again as soon as the signal expires or is retracted.
/// * **Defer** ([`defer_on`](SignalAwareBuilder::defer_on) /
///   [`resume_on`](SignalAwareBuilder::resume_on)): items are accepted but none starts while
///   a defer signal is live, and they start as soon as it ends or a newer resume signal is
///   raised — the coordinator's own event-driven deferral, nothing polled.
///
/// Refusal is decided when `enqueue` is called: an item already accepted is never refused
/// afterwards (use `defer_on` or the coordinator's `cancel_on` for that).
///
/// When to use it: intake that must back off under ambient conditions other code raises —
/// `maintenance.*` refuses, `backpressure.high` defers. Use [`EphemeralWorkCoordinator`]
/// directly when you need cancel rules, admission hooks or keys; [`inner`](Self::inner) hands
/// it out.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral::{OperationContext, Signal, SignalSink};
/// use ephemeral_atoms::presets::{SignalAware, SignalAwareError};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let intake = SignalAware::new(|_order: u32, _ctx: OperationContext| async {
///     Ok::<_, std::convert::Infallible>(())
/// }, sink.clone())
/// .refuse_on("maintenance.*")
/// .build()?;
///
/// sink.raise_with(Signal::build("maintenance.db")?.expires_in(Duration::from_secs(30)))?;
/// match intake.enqueue(1).await {
///     Err(SignalAwareError::Refused { item, signal, .. }) => {
///         assert_eq!((item, signal.as_str()), (1, "maintenance.db"));
///     }
///     other => panic!("expected a refusal, got {other:?}"),
/// }
///
/// tokio::time::sleep(Duration::from_secs(31)).await; // the signal expired
/// intake.enqueue(1).await?;
/// intake.drain().await?;
/// assert_eq!(intake.stats().completed, 1);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the last handle cancels the coordinator's work"]
pub struct SignalAware<T: Send + 'static> {
    inner: EphemeralWorkCoordinator<T>,
    sink: SignalSink,
    refuse_on: Vec<Pattern>,
}

impl<T: Send + 'static> Clone for SignalAware<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            sink: self.sink.clone(),
            refuse_on: self.refuse_on.clone(),
        }
    }
}

/// Configures a [`SignalAware`]; made by [`SignalAware::new`], finished by
/// [`build`](Self::build).
#[must_use = "call build() to create the coordinator"]
pub struct SignalAwareBuilder<T: Send + 'static> {
    build: Build<T>,
    sink: SignalSink,
    options: EphemeralOptions,
    refuse_on: Vec<Pattern>,
    defer_on: Option<String>,
    resume_on: Option<String>,
}

impl<T: Send + 'static> SignalAware<T> {
    /// Starts configuring a coordinator running `body`, reading (and raising into) `sink`.
    #[expect(
        clippy::new_ret_no_self,
        reason = "the name users look for; the rules must be known before the coordinator exists"
    )]
    pub fn new<F, Fut, E>(body: F, sink: SignalSink) -> SignalAwareBuilder<T>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        SignalAwareBuilder {
            build: Box::new(move |options| EphemeralWorkCoordinator::new(body, options)),
            sink,
            options: EphemeralOptions::default(),
            refuse_on: Vec::new(),
            defer_on: None,
            resume_on: None,
        }
    }

    /// The name of the latest live signal matching any `refuse_on` pattern (the highest
    /// sequence number across them), with the pattern it matched.
    fn refusal(&self) -> Option<(String, String)> {
        self.refuse_on
            .iter()
            .filter_map(|pattern| self.sink.latest(pattern.as_str()).map(|s| (s, pattern)))
            .max_by_key(|(signal, _)| signal.sequence())
            .map(|(signal, pattern)| (signal.name().to_string(), pattern.as_str().to_string()))
    }

    /// Whether `enqueue` would refuse now (a `refuse_on` signal is live).
    #[must_use]
    pub fn is_refusing(&self) -> bool {
        self.refusal().is_some()
    }

    /// Accepts `item` unless a `refuse_on` signal is live, waiting while the pending queue is
    /// full.
    ///
    /// # Errors
    ///
    /// [`SignalAwareError::Refused`] while a `refuse_on` signal is live;
    /// [`SignalAwareError::Enqueue`] after `complete`, `drain` or `cancel`. Both give the
    /// item back.
    pub async fn enqueue(&self, item: T) -> Result<OperationId, SignalAwareError<T>> {
        if let Some((signal, pattern)) = self.refusal() {
            return Err(SignalAwareError::Refused {
                item,
                signal,
                pattern,
            });
        }
        Ok(self.inner.enqueue(item).await?)
    }

    /// Accepts `item` if no `refuse_on` signal is live and there is room now.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Self::enqueue), plus [`EnqueueError::Full`](ephemeral::EnqueueError::Full)
    /// inside [`SignalAwareError::Enqueue`].
    pub fn try_enqueue(&self, item: T) -> Result<OperationId, SignalAwareError<T>> {
        if let Some((signal, pattern)) = self.refusal() {
            return Err(SignalAwareError::Refused {
                item,
                signal,
                pattern,
            });
        }
        Ok(self.inner.try_enqueue(item)?)
    }

    /// Stops accepting items and waits until every accepted one has ended (deferred items
    /// wait for their deferral to end).
    ///
    /// # Errors
    ///
    /// The first error of an intake stream fed through [`inner`](Self::inner).
    pub async fn drain(&self) -> Result<(), IntakeError> {
        self.inner.drain().await
    }

    /// Cancels everything (see [`EphemeralWorkCoordinator::cancel`]).
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// One consistent snapshot of the counters (refused items were never accepted, so they
    /// are not counted).
    #[must_use]
    pub fn stats(&self) -> CoordinatorStats {
        self.inner.stats()
    }

    /// The sink this coordinator reads and raises into.
    #[must_use]
    pub fn sink(&self) -> &SignalSink {
        &self.sink
    }

    /// The coordinator underneath, for everything this preset does not expose.
    pub fn inner(&self) -> &EphemeralWorkCoordinator<T> {
        &self.inner
    }
}

impl<T: Send + 'static> SignalAwareBuilder<T> {
    /// Refuses intake while a live signal matches `pattern` (may be given several times).
    ///
    /// Every string is a pattern (as for the coordinator's `cancel_on` and `defer_on`), so
    /// one that can match no name (`""`, `"a b"`: see [`Pattern::is_empty`]) is accepted
    /// and never refuses anything.
    pub fn refuse_on(mut self, pattern: &str) -> Self {
        self.refuse_on.push(Pattern::new(pattern));
        self
    }

    /// Accepted items wait, holding no slot, while a live signal matches `pattern`
    /// ([`EphemeralOptions::defer_on`]).
    pub fn defer_on(mut self, pattern: &str) -> Self {
        self.defer_on = Some(pattern.to_string());
        self
    }

    /// A signal matching `pattern`, raised after the latest defer signal, ends the deferral
    /// ([`EphemeralOptions::resume_on`]).
    pub fn resume_on(mut self, pattern: &str) -> Self {
        self.resume_on = Some(pattern.to_string());
        self
    }

    /// Base options (concurrency, window, cancel rules...), in any order with the other
    /// builder methods: `defer_on` / `resume_on` given here override the options' own, and
    /// the sink is always the one given to [`SignalAware::new`].
    pub fn options(mut self, options: EphemeralOptions) -> Self {
        self.options = options;
        self
    }

    /// Creates the coordinator.
    ///
    /// # Errors
    ///
    /// [`CoordinatorError::NoRuntime`] outside a tokio runtime, or a bad option.
    pub fn build(self) -> Result<SignalAware<T>, CoordinatorError> {
        let mut options = self.options.signals(self.sink.clone());
        if let Some(pattern) = &self.defer_on {
            options = options.defer_on(pattern);
        }
        if let Some(pattern) = &self.resume_on {
            options = options.resume_on(pattern);
        }
        Ok(SignalAware {
            inner: (self.build)(options)?,
            sink: self.sink,
            refuse_on: self.refuse_on,
        })
    }
}

impl<T: Send + 'static> fmt::Debug for SignalAware<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalAware")
            .field("refuse_on", &self.refuse_on)
            .field("inner", &self.inner)
            .finish()
    }
}

impl<T: Send + 'static> fmt::Debug for SignalAwareBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalAwareBuilder")
            .field("refuse_on", &self.refuse_on)
            .field("defer_on", &self.defer_on)
            .field("resume_on", &self.resume_on)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}
