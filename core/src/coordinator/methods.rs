//! `coordinator_methods!`: the lifecycle and query methods every coordinator type shares,
//! written once and delegated to the engine.

/// Generates the lifecycle and query methods of a coordinator wrapping `self.engine`.
macro_rules! coordinator_methods {
    () => {
        /// Stops accepting items; what was accepted still runs. Idempotent. After it every
        /// enqueue fails with [`EnqueueError::Closed`](crate::EnqueueError::Closed).
        pub fn complete(&self) {
            self.engine.complete();
        }

        /// Completes, then waits until every accepted item has ended and the `on_finalized`
        /// and `on_evicted` calls made for what ended so far have returned (on any thread).
        /// Idempotent; any number of callers may await it.
        ///
        /// # Errors
        ///
        /// The first error of an intake stream, if one failed.
        pub async fn drain(&self) -> Result<(), crate::coordinator::IntakeError> {
            self.engine.drain().await
        }

        /// [`drain`](Self::drain) for at most `timeout`.
        ///
        /// An intake stream's error is not reported here (`Ok` means everything accepted
        /// ended): [`drain`](Self::drain) afterwards returns it at once.
        ///
        /// # Errors
        ///
        /// On timeout, the snapshots of every operation not finished yet (running, pending
        /// and deferred, by id), so a paused or deferred backlog shows too.
        pub async fn drain_timeout(
            &self,
            timeout: std::time::Duration,
        ) -> Result<(), Vec<crate::coordinator::OperationSnapshot>> {
            self.engine.drain_timeout(timeout).await
        }

        /// Cancels everything: refuses new items, ends pending ones `Cancelled(Shutdown)`,
        /// and cancels running bodies through their tokens (a body that ignores its token is
        /// dropped after the grace period and recorded `Cancelled(Aborted)`). Dropping the
        /// last handle does the same.
        pub fn cancel(&self) {
            self.engine.cancel();
        }

        /// Whether the coordinator is completed and every accepted item has ended.
        #[must_use]
        pub fn is_done(&self) -> bool {
            self.engine.is_done()
        }

        /// A future that resolves once the coordinator is done ([`is_done`](Self::is_done)):
        /// unlike [`drain`](Self::drain) it does not complete the coordinator, so it waits
        /// for whoever does (a `complete` elsewhere, a drain signal, `cancel`). It holds no
        /// handle: it does not keep the coordinator alive, and it resolves too if the last
        /// handle is dropped.
        ///
        /// # Examples
        ///
        /// ```
        /// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let coordinator = EphemeralWorkCoordinator::new(
        ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
        ///     EphemeralOptions::default(),
        /// )?;
        /// let done = tokio::spawn(coordinator.done());
        /// coordinator.enqueue(1).await?;
        /// assert!(!done.is_finished()); // still taking items
        /// coordinator.complete(); // say, from another part of the program
        /// done.await?;
        /// assert!(coordinator.is_done());
        /// # Ok(())
        /// # }
        /// ```
        pub fn done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
            self.engine.done()
        }

        /// Whether intake is closed: [`complete`](Self::complete), [`drain`](Self::drain),
        /// [`cancel`](Self::cancel) or a drain signal was seen, so every enqueue fails from now
        /// on. True as soon as intake closes, even while accepted work still runs (that is
        /// [`is_done`](Self::is_done)).
        ///
        /// # Examples
        ///
        /// ```
        /// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let coordinator = EphemeralWorkCoordinator::new(
        ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
        ///     EphemeralOptions::default(),
        /// )?;
        /// coordinator.pause();
        /// coordinator.enqueue(1).await?;
        /// coordinator.complete();
        /// assert!(coordinator.is_closed() && !coordinator.is_done()); // one item still waits
        /// coordinator.resume();
        /// coordinator.drain().await?;
        /// assert!(coordinator.is_closed() && coordinator.is_done());
        /// # Ok(())
        /// # }
        /// ```
        #[must_use]
        pub fn is_closed(&self) -> bool {
            self.engine.is_closed()
        }

        /// Whether starts are paused by [`pause`](Self::pause) (until
        /// [`resume`](Self::resume)).
        ///
        /// # Examples
        ///
        /// ```
        /// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
        ///
        /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
        /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let coordinator = EphemeralWorkCoordinator::new(
        ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
        ///     EphemeralOptions::default(),
        /// )?;
        /// coordinator.pause();
        /// assert!(coordinator.is_paused());
        /// coordinator.resume();
        /// assert!(!coordinator.is_paused());
        /// # Ok(())
        /// # }
        /// ```
        #[must_use]
        pub fn is_paused(&self) -> bool {
            self.engine.is_paused()
        }

        /// Stops starting items (running ones go on) until [`resume`](Self::resume).
        pub fn pause(&self) {
            self.engine.pause();
        }

        /// Starts items again after [`pause`](Self::pause).
        pub fn resume(&self) {
            self.engine.resume();
        }

        /// Changes the concurrency limit. Raising it starts waiting items at once; lowering it
        /// lets running bodies finish and starts nothing until fewer than `n` run.
        ///
        /// # Errors
        ///
        /// [`OptionsError::Zero`](crate::coordinator::OptionsError::Zero) for 0.
        pub fn set_max_concurrency(
            &self,
            n: usize,
        ) -> Result<(), crate::coordinator::OptionsError> {
            self.engine.set_max_concurrency(n)
        }

        /// The concurrency limit now.
        #[must_use]
        pub fn max_concurrency(&self) -> usize {
            self.engine.max_concurrency()
        }

        /// Every tracked operation, by id.
        #[must_use]
        pub fn snapshot(&self) -> Vec<crate::coordinator::OperationSnapshot> {
            self.engine.filter(|_| true)
        }

        /// The operation `id`, with its live signals, if tracked.
        #[must_use]
        pub fn operation(
            &self,
            id: crate::OperationId,
        ) -> Option<crate::coordinator::OperationSnapshot> {
            self.engine.get(id)
        }

        /// Tracked operations that are running.
        #[must_use]
        pub fn running(&self) -> Vec<crate::coordinator::OperationSnapshot> {
            self.engine
                .filter(|s| matches!(s, crate::coordinator::OperationState::Running))
        }

        /// Tracked operations that completed.
        #[must_use]
        pub fn completed(&self) -> Vec<crate::coordinator::OperationSnapshot> {
            self.engine
                .filter(|s| matches!(s, crate::coordinator::OperationState::Completed))
        }

        /// Tracked operations that failed (errors and panics).
        #[must_use]
        pub fn failed(&self) -> Vec<crate::coordinator::OperationSnapshot> {
            self.engine
                .filter(|s| matches!(s, crate::coordinator::OperationState::Failed))
        }

        /// Tracked operations that were cancelled.
        #[must_use]
        pub fn cancelled(&self) -> Vec<crate::coordinator::OperationSnapshot> {
            self.engine
                .filter(|s| matches!(s, crate::coordinator::OperationState::Cancelled(_)))
        }

        /// Accepted items not started yet.
        #[must_use]
        pub fn pending_count(&self) -> usize {
            self.engine.pending_count()
        }

        /// Items taken by a worker and not finished.
        #[must_use]
        pub fn active_count(&self) -> usize {
            self.engine.active_count()
        }

        /// One consistent snapshot of the counters.
        #[must_use]
        pub fn stats(&self) -> crate::coordinator::CoordinatorStats {
            self.engine.stats()
        }

        /// The echoes of evicted operations, oldest eviction first: every evicted operation
        /// leaves one (see [`Echo`](crate::coordinator::Echo)), within the echo bounds.
        #[must_use]
        pub fn echoes(&self) -> Vec<crate::coordinator::Echo> {
            self.engine.echoes()
        }

        /// Keeps `id` in the window until unpinned (pending and running ones too).
        ///
        /// # Errors
        ///
        /// [`PinError`](crate::coordinator::PinError) for an unknown id or past `max_tracked`.
        pub fn pin(&self, id: crate::OperationId) -> Result<(), crate::coordinator::PinError> {
            self.engine.pin(id)
        }

        /// Unpins `id`; returns whether it was pinned.
        pub fn unpin(&self, id: crate::OperationId) -> bool {
            self.engine.unpin(id)
        }

        /// Evicts a finished, unpinned operation now (it leaves an echo and is reported to
        /// `on_evicted`); returns whether it did. Pending, running and pinned operations stay.
        pub fn evict(&self, id: crate::OperationId) -> bool {
            self.engine.evict(id)
        }

        /// Cancels one operation: a pending one ends `Cancelled(Explicit)` at once (one put
        /// aside by an admission hook's `Defer` as soon as its waiting task runs), a running
        /// one has its token cancelled. Returns whether the id was pending or running.
        pub fn cancel_operation(&self, id: crate::OperationId) -> bool {
            self.engine.cancel_operation(id)
        }

        /// The sink this coordinator reads and raises into.
        #[must_use]
        pub fn sink(&self) -> &crate::SignalSink {
            self.engine.sink()
        }

        /// The coordinator id (addressed by `coordinator.drain.id`).
        #[must_use]
        pub fn id(&self) -> &str {
            self.engine.id()
        }
    };
}

pub(crate) use coordinator_methods;
