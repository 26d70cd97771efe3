//! `Watch`: wake up on every change to the set of live signals matching a pattern.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::registration::Registration;
use crate::{Pattern, SignalSink};

pub(crate) struct WatchShared {
    pub(crate) pattern: Pattern,
    /// Made by [`SignalSink::watch_holds`]: only held conditions count.
    holds_only: bool,
    version: AtomicU64,
    notify: Notify,
}

impl WatchShared {
    pub(crate) fn new(pattern: Pattern, holds_only: bool) -> Self {
        Self {
            pattern,
            holds_only,
            version: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    /// Records a change to a held condition (`held`) or to a window signal: a watch of holds
    /// ignores the latter.
    #[inline]
    pub(crate) fn bump_for(&self, held: bool) {
        if held || !self.holds_only {
            self.bump();
        }
    }

    /// Wakes every waiter without recording a change, so that it computes again when its
    /// matches expire (the max age changed): `changed` returns only for a real change.
    pub(crate) fn rearm(&self) {
        self.notify.notify_waiters();
    }

    /// Records one change and wakes every waiter.
    pub(crate) fn bump(&self) {
        // Release pairs with the Acquire load in `changed`: a waiter that sees the new version
        // also sees the sink state that changed before it (it re-reads that under the lock
        // anyway; the ordering only has to make the version itself visible).
        self.version.fetch_add(1, Ordering::Release);
        self.notify.notify_waiters();
    }
}

/// Notified on every change to the set of live signals matching a pattern: a raise, a hold,
/// a retract, a clear, a release, an eviction or an expiry. A watch made by
/// [`SignalSink::watch_holds`] looks at held conditions only: it is notified when one is
/// taken or released, never for a raise, an eviction or an expiry, and its
/// [`has_match`](Self::has_match) (so its waits) asks whether a held condition matches.
///
/// Create the watch *before* you evaluate the condition you wait on; then a change that lands
/// between your evaluation and your `changed().await` is not missed. Expiries are noticed
/// without polling: while waiting, the watch sleeps until the earliest expiry among its
/// matches (on tokio's clock), computed again when
/// [`set_max_age`](SignalSink::set_max_age) changes it.
///
/// That sleep is on tokio's timer, so the waits ([`changed`](Self::changed),
/// [`wait_until_clear`](Self::wait_until_clear), [`wait_for_match`](Self::wait_for_match))
/// must be polled inside a tokio runtime with timers enabled whenever a match can expire:
/// polled by another executor they panic there, as `tokio::time::sleep` does (they return
/// nothing an error could travel in). A watch of holds ([`SignalSink::watch_holds`]) never
/// sleeps on the clock, so any executor may drive it.
///
/// A watch does not keep the sink alive. When the last handle that does is gone, every signal
/// is gone with it: the watch sees that as one last change, [`has_match`](Self::has_match) is
/// false from then on (so [`wait_until_clear`](Self::wait_until_clear) returns), and
/// [`changed`](Self::changed) never returns again (nor does
/// [`wait_for_match`](Self::wait_for_match): nothing can match any more).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral::SignalSink;
///
/// let sink = SignalSink::default();
/// let hold = sink.hold("backpressure.db")?;
///
/// let mut watch = sink.watch("backpressure.*");
/// let waiter = tokio::spawn(async move {
///     watch.wait_until_clear().await;
/// });
/// drop(hold);
/// waiter.await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a watch does nothing unless awaited"]
pub struct Watch {
    pub(crate) shared: Arc<WatchShared>,
    pub(crate) registration: Registration,
    pub(crate) seen: u64,
}

impl Watch {
    /// Waits for the next change to the live matches since the watch was created or
    /// `changed` last returned.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as are [`wait_until_clear`](Self::wait_until_clear) and
    /// [`wait_for_match`](Self::wait_for_match): a change counts as seen only when `changed`
    /// returns, so a future dropped in a `tokio::select!` leaves it for the next call.
    pub async fn changed(&mut self) {
        loop {
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            // Enabled before reading the version, so a bump in between still wakes us.
            notified.as_mut().enable();
            let version = self.shared.version.load(Ordering::Acquire);
            if version != self.seen {
                self.seen = version;
                return;
            }
            match self.next_expiry() {
                Some(at) => {
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(at) => self.purge(),
                    }
                }
                // Nothing expires on its own: only a notification changes anything (and once
                // the sink is gone, nothing ever will).
                None => notified.await,
            }
        }
    }

    /// The sink, while some handle keeps it alive.
    fn sink(&self) -> Option<SignalSink> {
        self.registration.sink().map(SignalSink::from_inner)
    }

    fn next_expiry(&self) -> Option<Instant> {
        if self.shared.holds_only {
            // Held conditions never expire.
            return None;
        }
        self.sink()?.next_expiry(self.shared.pattern.as_str())
    }

    fn purge(&self) {
        if let Some(sink) = self.sink() {
            sink.purge_now();
        }
    }

    /// Whether any live signal matches now (never, once the sink is gone); for a watch of
    /// holds ([`SignalSink::watch_holds`]), whether a held condition does.
    #[must_use]
    pub fn has_match(&self) -> bool {
        let pattern = self.shared.pattern.as_str();
        self.sink().is_some_and(|sink| {
            if self.shared.holds_only {
                sink.has_hold(pattern)
            } else {
                sink.has_signal(pattern)
            }
        })
    }

    /// Whether this watch looks at held conditions only ([`SignalSink::watch_holds`]).
    #[must_use]
    pub fn is_holds_only(&self) -> bool {
        self.shared.holds_only
    }

    /// Returns once no live signal matches (at once if none does now).
    pub async fn wait_until_clear(&mut self) {
        while self.has_match() {
            self.changed().await;
        }
    }

    /// Returns once some live signal matches (at once if one does now).
    pub async fn wait_for_match(&mut self) {
        while !self.has_match() {
            self.changed().await;
        }
    }

    /// The pattern watched.
    #[must_use]
    pub fn pattern(&self) -> &Pattern {
        &self.shared.pattern
    }
}

impl fmt::Debug for Watch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Watch")
            .field("pattern", &self.shared.pattern)
            .field("holds_only", &self.shared.holds_only)
            .field("seen", &self.seen)
            .finish()
    }
}
