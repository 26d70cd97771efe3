//! `SignalSink`: the shared, bounded, expiring window of signals.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::error::{PropagationError, RaiseError};
use super::hold::Hold;
use super::inner::Inner;
use super::options::{SinkConfigError, SinkOptions, validate_age};
use super::registration::Registration;
use super::routes::Target;
use super::signal::Lineage;
use super::stamp::Stamp;
use super::state::Removal;
use super::stats::{SinkStats, SubscriberStats};
use super::subscription::{SubShared, Subscription};
use super::watch::{Watch, WatchShared};
use crate::lag::Ring;
use crate::{Buffer, Name, OperationId, Overflow, Pattern, Signal, SignalBuilder};

/// A shared, bounded, expiring window of short-lived named signals.
///
/// Anyone [`raise`](Self::raise)s signals; anyone asks [`has_signal`](Self::has_signal),
/// [`count`](Self::count)s them, [`watch`](Self::watch)es a pattern or
/// [`subscribe`](Self::subscribe)s to a stream of them. `SignalSink` is a cheap `Clone`
/// handle: clones share one window.
///
/// * **Bounded and exact.** At most [`capacity`](SinkOptions::capacity) raised signals are
///   live (the oldest is evicted first) and a signal is live while `now - timestamp <
///   max_age` and before its own expiry. A query never sees an expired signal.
/// * **Fast queries.** A query never scans the window: an exact name is `O(1)`; a pattern
///   costs at most the number of distinct live names, with match results memoised per
///   pattern. Raising a name already known allocates nothing.
/// * **Conditions.** [`hold`](Self::hold) keeps a signal live until its guard is dropped,
///   exempt from age and capacity.
/// * **Bounded tables.** Interned names, the pattern memo and the routes are all bounded and
///   reclaimed (see [`SinkOptions`]).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use ephemeral::{SignalSink, SinkOptions};
///
/// let sink = SignalSink::new(SinkOptions::default().max_age(Duration::from_secs(30)))?;
/// sink.raise("error.db.timeout")?;
/// sink.raise("error.http.502")?;
/// assert!(sink.has_signal("error.*"));
/// assert_eq!(sink.count("error.db.*"), 1);
///
/// tokio::time::advance(Duration::from_secs(30)).await;
/// assert!(!sink.has_signal("error.*")); // expired, exactly on time
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct SignalSink {
    pub(crate) inner: Arc<Inner>,
}

impl Default for SignalSink {
    /// A sink with [`SinkOptions::default`]: capacity 1000, max age 60 s.
    fn default() -> Self {
        Self::build(SinkOptions::default())
    }
}

impl SignalSink {
    /// A sink configured by `options`.
    ///
    /// # Errors
    ///
    /// Returns a [`SinkConfigError`] for a zero capacity, age or bound.
    pub fn new(options: SinkOptions) -> Result<Self, SinkConfigError> {
        options.validate()?;
        Ok(Self::build(options))
    }

    fn build(options: SinkOptions) -> Self {
        Self {
            inner: Arc::new(Inner::new(options)),
        }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// Raises the signal `name` with no optional parts.
    ///
    /// # Errors
    ///
    /// [`RaiseError::Name`] when `name` breaks the naming rule.
    pub fn raise(&self, name: &str) -> Result<Signal, RaiseError> {
        // The name is validated under the lock, only when it is not interned yet: an interned
        // name was validated when it was interned.
        let key = self.inner.key(name, None);
        let now = Instant::now();
        let stamp = Stamp::of(now);
        let (signal, route) = self.inner.lock().insert(now, stamp, key, None)?;
        self.inner.run_listeners(&signal, route);
        Ok(signal)
    }

    /// Raises a signal with optional parts (key, operation, expiry, payload, headers).
    ///
    /// # Errors
    ///
    /// [`RaiseError::PayloadTooLarge`] or [`RaiseError::TooManyHeaders`] past the sink's
    /// limits.
    pub fn raise_with(&self, signal: impl Into<SignalBuilder>) -> Result<Signal, RaiseError> {
        let (name, extras) = self.inner.split(signal.into())?;
        let now = Instant::now();
        let stamp = Stamp::of(now);
        let key = self.inner.key(name.as_str(), Some(&name));
        let (signal, route) = self.inner.lock().insert(now, stamp, key, Some(extras))?;
        self.inner.run_listeners(&signal, route);
        Ok(signal)
    }

    /// Raises `signal` as caused by `cause`, refusing what would let reactions loop forever.
    ///
    /// # Errors
    ///
    /// [`RaiseError::Propagation`] when the chain would pass the sink's max depth (10 by
    /// default), when `signal`'s name is already among its causes (a cycle), or when `cause`
    /// is terminal or a leaf; otherwise as [`raise_with`](Self::raise_with).
    pub fn raise_caused(
        &self,
        signal: impl Into<SignalBuilder>,
        cause: &Signal,
    ) -> Result<Signal, RaiseError> {
        let mut builder = signal.into();
        let name = builder.name.clone();
        if cause.is_terminal() {
            return Err(PropagationError::AfterTerminal {
                name,
                cause: cause.name.clone(),
            }
            .into());
        }
        if cause.is_leaf() {
            return Err(PropagationError::FromLeaf {
                name,
                cause: cause.name.clone(),
            }
            .into());
        }
        let mut ancestors: Vec<Name> = cause.causes().to_vec();
        ancestors.push(cause.name.clone());
        if ancestors.contains(&name) {
            return Err(PropagationError::Cycle { name }.into());
        }
        // The new signal's depth: its causes plus itself (see `Signal::depth`).
        let depth = ancestors.len() + 1;
        if depth > self.inner.max_depth {
            return Err(PropagationError::TooDeep {
                name,
                depth,
                max: self.inner.max_depth,
            }
            .into());
        }
        builder.lineage = Some(Lineage {
            ancestors: ancestors.into(),
        });
        self.raise_with(builder)
    }

    /// Holds the condition `name` until the returned guard is dropped or released.
    ///
    /// # Errors
    ///
    /// [`RaiseError::Name`] for a bad name; [`RaiseError::TooManyHolds`] when the sink already
    /// holds [`max_holds`](SinkOptions::max_holds) conditions.
    pub fn hold(&self, name: &str) -> Result<Hold, RaiseError> {
        self.hold_with(Signal::build(name)?)
    }

    /// Holds a condition with optional parts (key, operation, payload, headers; an expiry is
    /// ignored: a hold lasts until released).
    ///
    /// # Errors
    ///
    /// As [`hold`](Self::hold) and [`raise_with`](Self::raise_with).
    pub fn hold_with(&self, signal: impl Into<SignalBuilder>) -> Result<Hold, RaiseError> {
        let mut builder = signal.into();
        // Ignored, so not checked either: a zero time to live does not refuse a hold.
        builder.expires_in = None;
        let (name, extras) = self.inner.split(builder)?;
        let key = self.inner.key(name.as_str(), Some(&name));
        let now = Instant::now();
        let inserted = self.inner.lock().insert_hold(now, key, extras)?;
        let Some((signal, route)) = inserted else {
            return Err(RaiseError::TooManyHolds {
                max: self.inner.lock().max_holds,
            });
        };
        self.inner.run_listeners(&signal, route);
        Ok(Hold {
            inner: self.inner.clone(),
            signal,
            released: false,
        })
    }

    /// Whether any live signal (raised or held) matches `pattern`.
    #[must_use]
    pub fn has_signal(&self, pattern: &str) -> bool {
        self.inner.lock().has_signal(Instant::now(), pattern)
    }

    /// How many live signals (raised or held) match `pattern`.
    #[must_use]
    pub fn count(&self, pattern: &str) -> usize {
        self.inner.lock().count(Instant::now(), pattern)
    }

    /// How many live signals matching `pattern` were raised at or after `since`.
    #[must_use]
    pub fn count_since(&self, pattern: &str, since: Instant) -> usize {
        self.inner
            .lock()
            .count_since(Instant::now(), pattern, since)
    }

    /// Copies of the live signals matching `pattern`, oldest (lowest sequence) first.
    #[must_use]
    pub fn sense(&self, pattern: &str) -> Vec<Signal> {
        self.inner.lock().sense(Instant::now(), pattern)
    }

    /// Copies of the held conditions ([`hold`](Self::hold)) matching `pattern`, oldest
    /// first: what [`sense`](Self::sense) returns with the raised signals left out, at a
    /// cost that grows with the matching names and holds, not with the window.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::SignalSink;
    ///
    /// let sink = SignalSink::default();
    /// let _open = sink.hold("circuit.open")?;
    /// sink.raise("circuit.probe")?;
    /// let held: Vec<_> = sink.holds("circuit.*").iter().map(|s| s.name().to_string()).collect();
    /// assert_eq!(held, ["circuit.open"]);
    /// # Ok::<(), ephemeral::RaiseError>(())
    /// ```
    #[must_use]
    pub fn holds(&self, pattern: &str) -> Vec<Signal> {
        self.inner.lock().holds(pattern)
    }

    /// Whether a held condition matches `pattern`.
    pub(crate) fn has_hold(&self, pattern: &str) -> bool {
        self.inner.lock().has_hold(pattern)
    }

    /// The latest (highest sequence) live signal matching `pattern`.
    #[must_use]
    pub fn latest(&self, pattern: &str) -> Option<Signal> {
        self.inner.lock().latest(Instant::now(), pattern)
    }

    /// The live signals raised by (or held for) operation `id`, oldest first.
    #[must_use]
    pub fn signals_of(&self, id: OperationId) -> Vec<Signal> {
        self.inner.lock().signals_of(Instant::now(), id)
    }

    /// This sink's id, unique within the process (clones share it). The bus uses it to tell
    /// sinks apart when bridging, so a signal never comes back to the sink it started from.
    #[must_use]
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// The highest sequence number handed out so far (0 before the first signal).
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.inner.lock().seq
    }

    /// Live raised signals plus held conditions.
    #[must_use]
    pub fn len(&self) -> usize {
        let mut state = self.inner.lock();
        state.purge(Instant::now());
        state.live + state.holds.len()
    }

    /// Whether no signal is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Retracts every live raised signal named exactly `name` (holds are released by their
    /// guards). Returns how many were removed; a string that is not a valid name (a pattern
    /// such as `error.*`, say) names no signal and removes none: use
    /// [`clear_matching`](Self::clear_matching) to remove by pattern. Retracting raises
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::SignalSink;
    ///
    /// let sink = SignalSink::default();
    /// sink.raise("error.db")?;
    /// sink.raise("error.net")?;
    /// assert_eq!(sink.retract("error.*"), 0); // a pattern, not a name
    /// assert_eq!(sink.retract("error.db"), 1);
    /// assert_eq!(sink.count("error.*"), 1);
    /// # Ok::<(), ephemeral::RaiseError>(())
    /// ```
    pub fn retract(&self, name: &str) -> usize {
        self.remove_named(name, |_| true)
    }

    /// Retracts the live raised signals named exactly `name` carrying `key` (as
    /// [`retract`](Self::retract): a pattern removes none).
    pub fn retract_key(&self, name: &str, key: &str) -> usize {
        self.remove_named(name, |s| s.key() == Some(key))
    }

    /// Retracts the live raised signals named `name` that `select` picks; none for a string
    /// that is not a valid name. A valid name holds no wildcard, so the lookup is exact.
    fn remove_named(&self, name: &str, select: impl Fn(&Signal) -> bool) -> usize {
        if crate::name::validate(name).is_err() {
            return 0;
        }
        self.remove(name, Removal::Retracted, select)
    }

    /// Retracts the live raised signals of operation `id`.
    pub fn retract_operation(&self, id: OperationId) -> usize {
        let mut state = self.inner.lock();
        state.purge(Instant::now());
        let seqs = state.ops.get(&id).cloned().unwrap_or_default();
        state.remove_where(seqs, Removal::Retracted, |_| true)
    }

    /// Retracts the live raised signals named `name` that operation `id` raised. Returns how
    /// many were removed.
    pub fn retract_operation_named(&self, id: OperationId, name: &str) -> usize {
        let mut state = self.inner.lock();
        state.purge(Instant::now());
        let seqs = state.ops.get(&id).cloned().unwrap_or_default();
        state.remove_where(seqs, Removal::Retracted, |s| s.name().as_str() == name)
    }

    /// Removes every live raised signal; held conditions stay. Returns how many were removed
    /// and, when that is more than zero, raises the leaf signal `sink.cleared` with a `count`
    /// header.
    pub fn clear(&self) -> usize {
        self.clear_matching("*")
    }

    /// Removes the live raised signals matching `pattern`, as [`clear`](Self::clear) does.
    pub fn clear_matching(&self, pattern: &str) -> usize {
        let removed = self.remove(pattern, Removal::Cleared, |_| true);
        if removed > 0 {
            let cleared = Signal::build(super::SINK_CLEARED)
                .map(|b| b.leaf().header("count", removed as i64));
            if let Ok(builder) = cleared {
                // Within every limit by construction; nothing useful to do with an error.
                let _ = self.raise_with(builder);
            }
        }
        removed
    }

    fn remove(&self, pattern: &str, why: Removal, select: impl Fn(&Signal) -> bool) -> usize {
        let mut state = self.inner.lock();
        let seqs = state.window_seqs(Instant::now(), pattern);
        state.remove_where(seqs, why, select)
    }

    /// A [`Watch`] over the live matches of `pattern`.
    pub fn watch(&self, pattern: &str) -> Watch {
        self.watch_of(pattern, false)
    }

    /// A [`Watch`] over the held conditions matching `pattern` only: notified when one is
    /// taken or released (and once when the sink is gone), never for a raise, an eviction
    /// or an expiry. What mirrors holds elsewhere wants: a plain [`watch`](Self::watch) of a
    /// busy pattern wakes its task at every raise.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use ephemeral::SignalSink;
    ///
    /// let sink = SignalSink::default();
    /// let mut holds = sink.watch_holds("circuit.*");
    /// sink.raise("circuit.probe")?; // not a hold: the watch sleeps on
    /// let open = sink.hold("circuit.open")?;
    /// holds.changed().await; // taken
    /// assert!(holds.has_match());
    /// drop(open);
    /// holds.wait_until_clear().await; // released
    /// assert!(sink.has_signal("circuit.*")); // the probe is still live
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch_holds(&self, pattern: &str) -> Watch {
        self.watch_of(pattern, true)
    }

    fn watch_of(&self, pattern: &str, holds_only: bool) -> Watch {
        let pattern = Pattern::new(pattern);
        let shared = Arc::new(WatchShared::new(pattern.clone(), holds_only));
        let registration = Registration::new(&self.inner, pattern, Target::Watcher(shared.clone()));
        Watch {
            shared,
            registration,
            seen: 0,
        }
    }

    /// A [`Subscription`] to signals matching `pattern`, with the sink's default buffer.
    ///
    /// It receives what is raised (and the holds taken) after this call, not the signals
    /// already live. To start from those too, subscribe first, then read them with
    /// [`sense`](Self::sense), and skip in the stream what `sense` gave (a sequence number
    /// at or below the highest it returned): nothing falls between the two.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use ephemeral::SignalSink;
    ///
    /// let sink = SignalSink::default();
    /// sink.raise("error.before")?;
    /// let mut errors = sink.subscribe("error.*");
    /// let live = sink.sense("error.*"); // what was live when the subscription began
    /// let seen = live.last().map_or(0, |s| s.sequence());
    /// sink.raise("error.after")?;
    /// assert_eq!(live[0].name(), "error.before");
    /// let next = errors.recv().await.expect("sink is alive")?;
    /// assert!(next.sequence() > seen);
    /// assert_eq!(next.name(), "error.after");
    /// # Ok(())
    /// # }
    /// ```
    pub fn subscribe(&self, pattern: &str) -> Subscription {
        self.subscribe_with(pattern, self.inner.subscription_buffer)
    }

    /// A [`Subscription`] with its own buffer size.
    pub fn subscribe_with(&self, pattern: &str, buffer: Buffer) -> Subscription {
        let pattern = Pattern::new(pattern);
        let mut state = self.inner.lock();
        // Subscriptions with the same pattern and buffer share one ring, each at its own
        // cursor: a raise pushes the signal once for all of them. Joined under the sink's
        // lock, which every push into the ring is made under: the new cursor sees every
        // signal raised after this call, and none before.
        let shared_ring = state
            .registry
            .targets()
            .find_map(|(_, target)| match target {
                Target::Subscriber(sub)
                    if sub.pattern == pattern
                        && sub.ring.buffer() == buffer
                        && !sub.ring.is_closed() =>
                {
                    Some(Arc::clone(&sub.ring))
                }
                _ => None,
            });
        // Always `DropOldest`: `raise` delivers under the sink's lock and never waits.
        let ring = shared_ring.unwrap_or_else(|| Arc::new(Ring::new(buffer, Overflow::DropOldest)));
        let cursor = ring.cursor();
        let shared = Arc::new(SubShared {
            pattern: pattern.clone(),
            ring,
            reader: cursor.tally(),
        });
        let id = state
            .registry
            .add(pattern, Target::Subscriber(shared.clone()));
        drop(state);
        Subscription {
            cursor,
            shared,
            _registration: Registration::registered(&self.inner, id),
        }
    }

    /// The current capacity.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity
    }

    /// The current max age.
    #[must_use]
    pub fn max_age(&self) -> Duration {
        self.inner.lock().max_age
    }

    /// Changes the capacity at run time; the oldest signals beyond it are evicted at once.
    ///
    /// # Errors
    ///
    /// [`SinkConfigError::Zero`] for zero.
    pub fn set_capacity(&self, capacity: usize) -> Result<(), SinkConfigError> {
        if capacity == 0 {
            return Err(SinkConfigError::Zero { option: "capacity" });
        }
        self.inner.lock().set_capacity(capacity);
        Ok(())
    }

    /// Changes the max age at run time; signals older than the new age expire at once.
    ///
    /// A longer age applies to the signals live at the change: they stay live until they are
    /// as old as the new age (or reach their own expiry). Signals that had reached the old age
    /// before the change stay expired, whether or not anything looked at the sink in between.
    /// A [`Watch`] waiting for a change hears the expiries the new age brings, when they come.
    /// A signal raised with a time to live at or past the max age then in force has no expiry
    /// of its own ([`Signal::expires_at`] is `None`), so it lives as long as the max age
    /// allows, like one raised without a time to live.
    ///
    /// # Errors
    ///
    /// [`SinkConfigError::ZeroAge`] for zero, [`SinkConfigError::AgeTooLong`] past 100 years.
    pub fn set_max_age(&self, max_age: Duration) -> Result<(), SinkConfigError> {
        validate_age(max_age)?;
        let now = Instant::now();
        let mut state = self.inner.lock();
        // What expired under the old age goes first: expired signals leave the window only
        // when something touches the sink, and a longer age must not bring them back.
        state.purge(now);
        state.max_age = max_age;
        state.purge(now);
        // Waiting watches sleep until their matches' earliest expiry under the old age.
        for (_, target) in state.registry.targets() {
            if let Target::Watcher(watch) = target {
                watch.rearm();
            }
        }
        Ok(())
    }

    /// One consistent snapshot of the sink's counters and table sizes.
    #[must_use]
    pub fn stats(&self) -> SinkStats {
        let mut state = self.inner.lock();
        state.purge(Instant::now());
        let (subscriptions, watches, listeners) = state.registry.counts();
        let subscribers: Vec<SubscriberStats> = state
            .registry
            .targets()
            .filter_map(|(pattern, target)| match target {
                Target::Subscriber(sub) => {
                    let ring = sub.ring.reader_stats(&sub.reader);
                    Some(SubscriberStats {
                        pattern: pattern.to_string(),
                        delivered: ring.pushed,
                        dropped: ring.dropped,
                        expired: ring.expired,
                        buffered: ring.buffered,
                    })
                }
                _ => None,
            })
            .collect();
        let c = &state.counters;
        let subscriber_dropped = subscribers
            .iter()
            .fold(c.closed_subscriber_dropped, |sum, s| sum + s.dropped);
        let (handler_failures, handler_dropped, forward_refused) = self.inner.handler_counts();
        SinkStats {
            raised: c.raised,
            expired: c.expired,
            evicted: c.evicted,
            retracted: c.retracted,
            cleared: c.cleared,
            live: state.live,
            held: state.holds.len(),
            holds_acquired: c.holds_acquired,
            holds_released: c.holds_released,
            window_slots: state.window.len(),
            expiry_entries: state.expiries.len(),
            interned_names: state.names.len(),
            idle_names: state.idle_names,
            names_reclaimed: c.names_reclaimed,
            memo_entries: state.memo.len(),
            memo_recomputes: c.memo_recomputes,
            memo_resets: c.memo_resets,
            subscriptions,
            watches,
            listeners,
            handler_failures,
            handler_dropped,
            forward_refused,
            subscriber_dropped,
            subscribers,
        }
    }

    pub(crate) fn next_expiry(&self, pattern: &str) -> Option<Instant> {
        self.inner.lock().next_expiry(Instant::now(), pattern)
    }

    pub(crate) fn purge_now(&self) {
        self.inner.lock().purge(Instant::now());
    }
}

impl fmt::Debug for SignalSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.inner.lock();
        f.debug_struct("SignalSink")
            .field("id", &self.inner.id)
            .field("capacity", &state.capacity)
            .field("max_age", &state.max_age)
            .field("live", &state.live)
            .field("held", &state.holds.len())
            .field("sequence", &state.seq)
            .finish()
    }
}
