//! The shared test bodies of retained state: every backend runs the same ones.
//!
//! A backend's test binary (`harness = false`) is one line —
//! `ephemeral_bus::retained::conformance::main(|| async { (backend, guard) })` — and gets
//! every scenario below, run against its backend with real child processes: the binary
//! re-executes itself with [`ROLE_ENV`] naming a child's role, and the child connects to
//! the same backend through the environment [`Backend::child_env`] gives it.
//!
//! | scenario | what it shows |
//! |---|---|
//! | `store_semantics` | set, get, entry, delete, clear, entries, history, stats; bad input refused |
//! | `store_values_at_their_maximum` | a value or room message of exactly the reported maximum is accepted (with a time to live, owned), one byte more is `ValueTooLarge` |
//! | `store_ttl_past_the_clock` | `Duration::MAX` as a time to live never expires; 10,000 years keeps its exact expiry |
//! | `watch_sees_changes_in_order` | set / deleted events in revision order, filtered by pattern |
//! | `watch_skips_a_set_expired_unread` | a set whose value expired before the watcher read it is never handed out |
//! | `room_history_then_live` | a late joiner gets the history, then live messages |
//! | `room_joiner_told_what_the_count_bound_dropped` | the start is fixed when `join` returns: what the count bound drops before the first read is `Lagged(n)`, then the rest |
//! | `room_joiner_told_what_the_age_bound_dropped` | the same for a (short) max age: a message sent after `join` and aged out unread is `Lagged` |
//! | `room_short_and_zero_max_age` | a zero max age refused alike; one below NATS's 100 ms floor hides older messages alike |
//! | `room_clear_removes_the_history` | `clear` says how many it removed; sequence numbers carry on; a joiner from before gets each removed message delivered or counted in a `Lagged`, one from after only the new ones |
//! | `durable_ack_and_redelivery` | unacknowledged messages come again, acknowledged ones never |
//! | `durable_acknowledged_ahead_is_not_lagged` | messages acknowledged before they are read (a backlog skipped with `ack_sequence(u64::MAX)`) are passed over without a `Lagged`, also those the reader had already fetched |
//! | `durable_loss_reported_once_across_attaches` | a `Lagged` handed out is not reported again on the next attach (the unacknowledged messages are); one never handed out is |
//! | `durable_bad_input_and_short_max_age` | an empty pattern or a zero max age refused alike; a short max age drops as `Lagged` alike |
//! | `values_cross_processes` | values set in one process are read in another, both ways |
//! | `ttl_honoured_across_processes` | a value is never returned after its expiry; watchers see it expire |
//! | `sigkill_mid_write_keeps_acknowledged_values` | a writer killed mid-write: store readable, every acknowledged value intact, writable again |
//! | `owned_values_of_a_dead_process_are_reclaimed` | owned values go when their process is killed; others stay |
//! | `room_four_senders_thousand_each` | 4 processes × 1,000 sends: early, racing and late joiners each see all 4,000 in per-sender order, no gap, no duplicate |
//! | `durable_away_for_a_thousand` | a subscriber stopped while 1,000 are published gets all 1,000 on return |
//! | `durable_overflow_is_lagged` | beyond its bound: `Lagged(n)` first, then the newest kept |
//!
//! Times are generous (a busy 2-core machine); times to live are at least a second (the
//! NATS floor). Run one scenario by passing part of its name as the first argument.

mod bus;
mod child;
mod durable;
mod room;
mod store;

use std::future::Future;
use std::time::Duration;

use futures::future::BoxFuture;

use super::{Retained, StoreError};

pub use child::{ARGS_ENV, ROLE_ENV};

/// A generous bound for anything that happens in another process.
pub const LONG: Duration = Duration::from_secs(30);

/// A backend under test, as the shared bodies reach it.
pub trait Backend: Retained + Clone + Send + Sync + Sized + 'static {
    /// Connects a child process to the backend its parent described in the environment
    /// (see [`child_env`](Self::child_env)).
    fn from_env() -> impl Future<Output = Result<Self, StoreError>> + Send;

    /// The environment a child process needs to reach this same backend.
    fn child_env(&self) -> Vec<(String, String)>;

    /// Another connection of this process (another peer, another owner).
    fn connect_again(&self) -> impl Future<Output = Result<Self, StoreError>> + Send;

    /// Publishes a message on `topic` (what durable subscriptions keep).
    fn publish(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// One named scenario.
pub type Scenario<B> = (&'static str, fn(B) -> BoxFuture<'static, ()>);

/// Every scenario, in the order they run.
#[must_use]
pub fn scenarios<B: Backend>() -> Vec<Scenario<B>> {
    vec![
        ("store_semantics", |b| Box::pin(store::semantics(b))),
        ("store_expiry_ends_the_key", |b| {
            Box::pin(store::expiry_ends_the_key(b))
        }),
        ("store_delete_of_an_expired_value_is_its_expiry", |b| {
            Box::pin(store::delete_of_an_expired_value_is_its_expiry(b))
        }),
        ("store_values_at_their_maximum", |b| {
            Box::pin(store::values_at_their_maximum(b))
        }),
        ("store_ttl_past_the_clock", |b| {
            Box::pin(store::ttl_past_the_clock(b))
        }),
        ("watch_sees_changes_in_order", |b| {
            Box::pin(store::watch_order(b))
        }),
        ("watch_skips_a_set_expired_unread", |b| {
            Box::pin(store::watch_skips_a_set_expired_unread(b))
        }),
        ("room_history_then_live", |b| {
            Box::pin(room::history_then_live(b))
        }),
        ("room_joiner_told_what_the_count_bound_dropped", |b| {
            Box::pin(room::joiner_told_what_the_count_bound_dropped(b))
        }),
        ("room_joiner_told_what_the_age_bound_dropped", |b| {
            Box::pin(room::joiner_told_what_the_age_bound_dropped(b))
        }),
        ("room_short_and_zero_max_age", |b| {
            Box::pin(room::short_max_age(b))
        }),
        ("room_clear_removes_the_history", |b| {
            Box::pin(room::clear_removes_the_history(b))
        }),
        ("durable_ack_and_redelivery", |b| {
            Box::pin(durable::ack_and_redelivery(b))
        }),
        ("durable_acknowledged_ahead_is_not_lagged", |b| {
            Box::pin(durable::acknowledged_ahead_is_not_lagged(b))
        }),
        ("durable_loss_reported_once_across_attaches", |b| {
            Box::pin(durable::loss_reported_once_across_attaches(b))
        }),
        ("durable_bad_input_and_short_max_age", |b| {
            Box::pin(durable::bad_input_and_short_max_age(b))
        }),
        ("values_cross_processes", |b| {
            Box::pin(store::values_cross_processes(b))
        }),
        ("ttl_honoured_across_processes", |b| {
            Box::pin(store::ttl_across_processes(b))
        }),
        ("sigkill_mid_write_keeps_acknowledged_values", |b| {
            Box::pin(store::sigkill_mid_write(b))
        }),
        ("owned_values_of_a_dead_process_are_reclaimed", |b| {
            Box::pin(store::owned_reclaimed(b))
        }),
        ("room_four_senders_thousand_each", |b| {
            Box::pin(room::four_senders(b))
        }),
        ("durable_away_for_a_thousand", |b| {
            Box::pin(durable::away_for_a_thousand(b))
        }),
        ("durable_overflow_is_lagged", |b| {
            Box::pin(durable::overflow_is_lagged(b))
        }),
    ]
}

/// The whole test binary. In a child (with [`ROLE_ENV`] set): connects with
/// [`Backend::from_env`], runs the role and exits with its code. In the parent: `make`
/// starts the backend (and returns a guard kept until the end: a temporary directory, a
/// server), then every scenario runs (those containing the first argument, if one is
/// given); a failure panics, a scenario hung for 5 minutes fails the run.
pub fn main<B, G, F, Fut>(make: F)
where
    B: Backend,
    F: FnOnce() -> Fut,
    Fut: Future<Output = (B, G)>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Ok(role) = std::env::var(ROLE_ENV) {
        let code = runtime.block_on(async {
            match B::from_env().await {
                Ok(backend) => child::run(&backend, &role).await,
                Err(e) => {
                    println!("bad: cannot connect: {e}");
                    2
                }
            }
        });
        std::process::exit(code);
    }
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(300));
        eprintln!("conformance: watchdog: a scenario hung for 300 s");
        std::process::exit(3);
    });
    let filter = std::env::args().nth(1).filter(|a| !a.starts_with('-'));
    runtime.block_on(async {
        let (backend, guard) = make().await;
        let mut ran = 0;
        for (name, scenario) in scenarios::<B>() {
            if filter.as_deref().is_some_and(|f| !name.contains(f)) {
                continue;
            }
            print!("test {name} ... ");
            std::io::Write::flush(&mut std::io::stdout()).ok();
            let started = std::time::Instant::now();
            scenario(backend.clone()).await;
            println!("ok ({:.1} s)", started.elapsed().as_secs_f64());
            ran += 1;
        }
        drop(guard);
        println!(
            "\ntest result: ok. {ran} passed (shared retained-state bodies, real child processes)"
        );
    });
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
pub(crate) async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A name unique to this run, so scenarios never share state with an earlier run.
pub(crate) fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{base}-{}-{nanos:x}", std::process::id())
}

/// The next item of a stream within [`LONG`], or a panic naming `what`.
pub(crate) async fn next<S>(stream: &mut S, what: &str) -> S::Item
where
    S: futures::Stream + Unpin,
{
    match tokio::time::timeout(LONG, futures::StreamExt::next(stream)).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("{what}: the stream ended"),
        Err(_) => panic!("{what}: nothing within {LONG:?}"),
    }
}
