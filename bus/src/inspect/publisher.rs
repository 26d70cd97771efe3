//! The publisher: answers polls with frames, at most one per interval.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use ephemeral::{Name, Pattern};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::format::{FORMAT_VERSION, ProcessInfo, PublisherInfo, State, StateFrame};
use super::{InspectError, StateTransport};

/// How a state is published: its rate and the bounds of its samples.
///
/// | option | default |
/// |---|---|
/// | [`interval`](Self::interval) | 250 ms: at most one frame per interval |
/// | [`max_operations`](Self::max_operations) | 64 operations per frame |
/// | [`max_failures`](Self::max_failures) | 16 recent failures per frame |
/// | [`max_signals`](Self::max_signals) | 128 signals per frame |
/// | [`deferred_by`](Self::deferred_by) | none |
#[derive(Debug, Clone)]
#[must_use]
pub struct PublishOptions {
    pub(crate) interval: Duration,
    pub(crate) max_operations: usize,
    pub(crate) max_failures: usize,
    pub(crate) max_signals: usize,
    pub(crate) deferred_by: Option<Pattern>,
}

impl Default for PublishOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(250),
            max_operations: 64,
            max_failures: 16,
            max_signals: 128,
            deferred_by: None,
        }
    }
}

impl PublishOptions {
    /// The shortest time between two frames (default 250 ms). Polls that come faster are
    /// answered together, by one frame at the end of the interval; the first poll after a
    /// quiet spell (no frame for two intervals) is answered after one interval, the window
    /// its rates are measured over.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// At most this many operations in a coordinator's frame (default 64).
    ///
    /// Whatever the bounds, a frame is cut to fit the transport's largest message (the bus's
    /// `BusOptions::max_payload`, 1 MiB by default; the NATS server's `max_payload`): its
    /// longest sample is halved until it fits, and what was cut is counted in
    /// `operations_omitted` or `signals_omitted`.
    pub fn max_operations(mut self, n: usize) -> Self {
        self.max_operations = n;
        self
    }

    /// At most this many recent failures in a coordinator's frame (default 16).
    pub fn max_failures(mut self, n: usize) -> Self {
        self.max_failures = n;
        self
    }

    /// At most this many live signals in a sink's frame (default 128).
    pub fn max_signals(mut self, n: usize) -> Self {
        self.max_signals = n;
        self
    }

    /// The pattern the coordinator defers on (its `defer_on`): each frame then lists the live
    /// signals of the coordinator's sink that match it as `deferred_by`. (A coordinator does
    /// not expose its options, so the publisher is told.)
    pub fn deferred_by(mut self, pattern: &str) -> Self {
        self.deferred_by = Some(Pattern::new(pattern));
        self
    }
}

/// What a publisher samples: a coordinator or a sink.
pub(crate) trait Sampler: Send + 'static {
    /// Starts a new rate window now (the next sample's rates are measured from here).
    fn rebase(&mut self);
    /// The state now; its rates cover the time since the previous sample or rebase.
    fn sample(&mut self, options: &PublishOptions) -> State;
}

#[derive(Debug, Default)]
struct Counters {
    polls: AtomicU64,
    frames: AtomicU64,
    errors: AtomicU64,
}

/// Publishes a coordinator's or a sink's state while someone watches; stops when dropped.
///
/// Returned by [`PublishState::publish_state`](super::PublishState::publish_state). The
/// publisher does nothing until a watcher polls; then it samples and sends one frame (after
/// one interval, over which it measures the rates), and at most one per interval however
/// many watchers poll. With no watcher it costs one idle
/// subscription and a parked task, and no timer.
///
/// It holds a handle of what it publishes, so a coordinator stays alive (and is not
/// cancelled by the drop of its last other handle) until the publisher is dropped too.
/// Dropping it stops at once; watchers that saw it recently get a last `stopped` frame so
/// they forget it without waiting.
#[must_use = "the publisher stops when dropped"]
pub struct StatePublisher {
    info: PublisherInfo,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl StatePublisher {
    /// The publisher's unique id (the `publisher.id` of its frames).
    #[must_use]
    pub fn id(&self) -> &str {
        &self.info.id
    }

    /// The name it publishes under.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.info.name
    }

    /// Polls received so far.
    #[must_use]
    pub fn polls_received(&self) -> u64 {
        self.counters.polls.load(Ordering::Relaxed)
    }

    /// Frames sent so far (the `stopped` frame not included).
    #[must_use]
    pub fn frames_sent(&self) -> u64 {
        self.counters.frames.load(Ordering::Relaxed)
    }

    /// Frames the transport refused so far.
    #[must_use]
    pub fn send_errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// Stops, and waits until the last `stopped` frame (if one is due) has been sent.
    pub async fn stop(mut self) {
        self.stop.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl fmt::Debug for StatePublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatePublisher")
            .field("id", &self.info.id)
            .field("name", &self.info.name)
            .field("polls", &self.polls_received())
            .field("frames", &self.frames_sent())
            .finish_non_exhaustive()
    }
}

impl Drop for StatePublisher {
    fn drop(&mut self) {
        // Dropping the sender wakes the task, which sends its `stopped` frame and ends.
        self.stop.take();
    }
}

/// Starts publishing `sampler` under `name`.
pub(crate) async fn start<T: StateTransport>(
    transport: &T,
    name: &str,
    options: PublishOptions,
    sampler: impl Sampler,
) -> Result<StatePublisher, InspectError> {
    let name = Name::new(name)?;
    if options.interval.is_zero() {
        return Err(InspectError::ZeroInterval);
    }
    tokio::runtime::Handle::try_current().map_err(|_| InspectError::NoRuntime)?;
    let polls = transport.listen_polls().await?;
    let info = PublisherInfo {
        id: format!("{:016x}", random_id()),
        name: name.as_str().to_owned(),
        process: process_info(),
    };
    let counters = Arc::new(Counters::default());
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(
        Loop {
            transport: transport.clone(),
            polls,
            info: info.clone(),
            options,
            counters: Arc::clone(&counters),
            sequence: 0,
        }
        .run(sampler, stopped),
    );
    Ok(StatePublisher {
        info,
        counters,
        stop: Some(stop),
        task: Some(task),
    })
}

struct Loop<T> {
    transport: T,
    polls: BoxStream<'static, ()>,
    info: PublisherInfo,
    options: PublishOptions,
    counters: Arc<Counters>,
    sequence: u64,
}

impl<T: StateTransport> Loop<T> {
    async fn run(mut self, mut sampler: impl Sampler, mut stopped: oneshot::Receiver<()>) {
        let interval = self.options.interval;
        let mut last_sent: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                poll = self.polls.next() => match poll {
                    // Relaxed: statistics only.
                    Some(()) => self.counters.polls.fetch_add(1, Ordering::Relaxed),
                    // The transport closed: nobody can poll any more.
                    None => return,
                },
            };
            // Watched without a break, the next frame is due one interval after the last.
            // After a quiet spell, the rates would average over all of it: start a fresh
            // window now and answer at its end, so every frame's rates are recent.
            let watched = last_sent.is_some_and(|t| t.elapsed() <= interval.saturating_mul(2));
            let due = if watched {
                last_sent.and_then(|t| t.checked_add(interval))
            } else {
                sampler.rebase();
                Instant::now().checked_add(interval)
            };
            if let Some(due) = due
                && Instant::now() < due
            {
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            // Polls that came meanwhile are answered by this same frame.
            while let Some(Some(())) = self.polls.next().now_or_never() {
                self.counters.polls.fetch_add(1, Ordering::Relaxed);
            }
            let state = sampler.sample(&self.options);
            self.send(state).await;
            self.counters.frames.fetch_add(1, Ordering::Relaxed);
            last_sent = Some(Instant::now());
        }
        // Watchers that saw a frame lately would keep the row until it went stale: tell them.
        let recent = interval.saturating_mul(4);
        if last_sent.is_some_and(|t| t.elapsed() < recent) {
            self.send(State::Stopped).await;
        }
    }

    async fn send(&mut self, state: State) {
        let mut frame = StateFrame {
            version: FORMAT_VERSION,
            publisher: self.info.clone(),
            sent_at_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            interval_ms: millis(self.options.interval),
            sequence: self.sequence,
            state,
        };
        self.sequence += 1;
        let mut bytes = frame.encode();
        if let Some(max) = self.transport.max_frame() {
            // Cut the samples until the frame fits: a frame the transport refuses would
            // make the publisher vanish from every view.
            while bytes.len() > max && shrink(&mut frame.state) {
                bytes = frame.encode();
            }
        }
        if self.transport.send_state(bytes).await.is_err() {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Halves the longest sample of `state` (operations, recent failures or signals), counting
/// what it leaves out; `false` when there is nothing left to cut.
fn shrink(state: &mut State) -> bool {
    fn halve<T>(list: &mut Vec<T>) -> u64 {
        let before = list.len();
        list.truncate(before / 2);
        (before - list.len()) as u64
    }
    match state {
        State::Coordinator(c) if c.operations.is_empty() && c.recent_failures.is_empty() => false,
        State::Coordinator(c) => {
            if c.operations.len() >= c.recent_failures.len() {
                c.operations_omitted += halve(&mut c.operations);
            } else {
                halve(&mut c.recent_failures);
            }
            true
        }
        State::Sink(s) if !s.signals.is_empty() => {
            s.signals_omitted += halve(&mut s.signals);
            true
        }
        _ => false,
    }
}

/// Whole milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A random 64-bit id from the standard library's randomly seeded hasher (unique, not
/// secret), salted with a process-wide counter so two ids of one instant differ.
fn random_id() -> u64 {
    // Relaxed: the counter only makes values distinct.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.finish()
}

fn process_info() -> ProcessInfo {
    static PROGRAM: OnceLock<String> = OnceLock::new();
    let program = PROGRAM.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "unknown".to_owned())
    });
    ProcessInfo {
        pid: std::process::id(),
        program: program.clone(),
        origin: format!("{:016x}", crate::process_origin()),
    }
}
