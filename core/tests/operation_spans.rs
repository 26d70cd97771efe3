//! An operation's `debug` span follows from the span that enqueued its item, and records
//! the outcome.

use std::sync::{Arc, Mutex};

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
use tracing::Subscriber;
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// Records `(follower, followed)` span names for every follows-from link, and the names of
/// the spans opened.
#[derive(Clone, Default)]
struct Links {
    follows: Arc<Mutex<Vec<(String, String)>>>,
    opened: Arc<Mutex<Vec<String>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Links {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        self.opened
            .lock()
            .unwrap()
            .push(attrs.metadata().name().to_owned());
    }

    fn on_follows_from(&self, span: &Id, follows: &Id, ctx: Context<'_, S>) {
        let name = |id: &Id| {
            ctx.span(id)
                .map(|s| s.name().to_owned())
                .unwrap_or_default()
        };
        self.follows
            .lock()
            .unwrap()
            .push((name(span), name(follows)));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn operation_span_follows_from_the_enqueuing_span() {
    let links = Links::default();
    let subscriber = tracing_subscriber::registry().with(links.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let coordinator = EphemeralWorkCoordinator::new(
        |_n: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    {
        let request = tracing::info_span!("http.request");
        let _entered = request.enter();
        coordinator.enqueue(1).await.expect("accepted");
    }
    coordinator.drain().await.expect("drained");

    let follows = links.follows.lock().unwrap().clone();
    assert_eq!(
        follows,
        [("operation".to_owned(), "http.request".to_owned())],
        "one link, from the operation to the request"
    );
    let opened = links.opened.lock().unwrap().clone();
    assert_eq!(
        opened.iter().filter(|n| *n == "operation").count(),
        1,
        "{opened:?}"
    );
}

/// Records the `outcome` each `operation` span was given, by span id, and which were opened.
#[derive(Clone, Default)]
struct Outcomes {
    opened: Arc<Mutex<Vec<u64>>>,
    outcomes: Arc<Mutex<std::collections::HashMap<u64, String>>>,
}

struct OutcomeField<'a>(&'a mut Option<String>);

impl tracing::field::Visit for OutcomeField<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "outcome" {
            *self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _field: &tracing::field::Field, _value: &dyn std::fmt::Debug) {}
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Outcomes {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() == "operation" {
            self.opened.lock().unwrap().push(id.into_u64());
        }
    }

    fn on_record(&self, id: &Id, values: &tracing::span::Record<'_>, _ctx: Context<'_, S>) {
        let mut outcome = None;
        values.record(&mut OutcomeField(&mut outcome));
        if let Some(outcome) = outcome {
            self.outcomes.lock().unwrap().insert(id.into_u64(), outcome);
        }
    }
}

/// Every operation span gets its outcome, also when the operation ends without starting
/// (cancelled while queued, or by the shutdown) or stops on its cancelled token.
#[tokio::test(flavor = "current_thread")]
async fn operations_cancelled_before_or_while_running_record_cancelled_on_their_spans() {
    let outcomes = Outcomes::default();
    let subscriber = tracing_subscriber::registry().with(outcomes.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let started = Arc::new(tokio::sync::Notify::new());
    let coordinator = {
        let started = started.clone();
        EphemeralWorkCoordinator::new(
            move |_n: u32, ctx: OperationContext| {
                let started = started.clone();
                async move {
                    started.notify_one();
                    ctx.token().cancelled().await;
                    Err::<(), _>("stopped: cancelled".to_owned())
                }
            },
            EphemeralOptions::default().max_concurrency(1),
        )
        .expect("coordinator")
    };
    coordinator.enqueue(1).await.expect("accepted");
    let queued = coordinator.enqueue(2).await.expect("accepted");
    coordinator.enqueue(3).await.expect("accepted");
    started.notified().await;
    // One cancelled while queued, then the shutdown: the running one stops on its token, the
    // other queued one ends without starting.
    assert!(coordinator.cancel_operation(queued));
    coordinator.cancel();
    coordinator.drain().await.expect("drained");
    let stats = coordinator.stats();
    assert_eq!(stats.cancelled, 3, "{stats:?}");

    let opened = outcomes.opened.lock().unwrap().clone();
    assert_eq!(opened.len(), 3, "one span per operation");
    let recorded = outcomes.outcomes.lock().unwrap().clone();
    for id in &opened {
        assert_eq!(
            recorded.get(id).map(String::as_str),
            Some("cancelled"),
            "span {id}: {recorded:?}"
        );
    }
}

/// Records, for every event, the name of the span it was emitted in (`""` for none).
#[derive(Clone, Default)]
struct EventSpans(Arc<Mutex<Vec<String>>>);

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for EventSpans {
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let span = ctx
            .event_span(event)
            .map(|s| s.name().to_owned())
            .unwrap_or_default();
        self.0.lock().unwrap().push(span);
    }
}

/// With a subscriber that wants the spans, a body runs inside its operation's span, on every
/// poll (before and after it yields), and the span gets its outcome.
#[tokio::test(flavor = "current_thread")]
async fn a_body_runs_inside_its_operation_span_when_a_subscriber_wants_it() {
    let events = EventSpans::default();
    let outcomes = Outcomes::default();
    let subscriber = tracing_subscriber::registry()
        .with(events.clone())
        .with(outcomes.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let coordinator = EphemeralWorkCoordinator::new(
        |n: u32, _ctx: OperationContext| async move {
            tracing::info!(n, "before the yield");
            tokio::task::yield_now().await;
            tracing::info!(n, "after the yield");
            Ok::<(), String>(())
        },
        EphemeralOptions::default().max_concurrency(2),
    )
    .expect("coordinator");
    coordinator.enqueue_many([1, 2]).await.expect("accepted");
    coordinator.drain().await.expect("drained");

    let seen = events.0.lock().unwrap().clone();
    let in_operation = seen.iter().filter(|s| *s == "operation").count();
    assert_eq!(in_operation, 4, "every body event in its span: {seen:?}");
    let recorded = outcomes.outcomes.lock().unwrap().clone();
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert!(recorded.values().all(|o| o == "completed"), "{recorded:?}");
}

/// Emits an event when dropped.
struct LogsOnDrop(&'static str);

impl Drop for LogsOnDrop {
    fn drop(&mut self) {
        tracing::info!(step = self.0, "dropped");
    }
}

/// What a body's future reports while it is dropped belongs to its operation too: a local
/// dropped as the body completes, and the whole future dropped when a body that ignores its
/// token is aborted after the grace period.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn what_a_body_reports_while_dropped_is_inside_its_operation_span() {
    let events = EventSpans::default();
    let subscriber = tracing_subscriber::registry().with(events.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let started = Arc::new(tokio::sync::Notify::new());
    let coordinator = {
        let started = started.clone();
        EphemeralWorkCoordinator::new(
            move |stuck: bool, _ctx: OperationContext| {
                let started = started.clone();
                async move {
                    let _guard = LogsOnDrop(if stuck { "stuck" } else { "done" });
                    if stuck {
                        started.notify_one();
                        // Ignores its token: only the abort after the grace period ends it.
                        std::future::pending::<()>().await;
                    }
                    Ok::<(), String>(())
                }
            },
            EphemeralOptions::default()
                .max_concurrency(2)
                .abort_grace(std::time::Duration::from_millis(50)),
        )
        .expect("coordinator")
    };
    coordinator.enqueue(false).await.expect("accepted");
    coordinator.enqueue(true).await.expect("accepted");
    started.notified().await;
    coordinator.cancel();
    coordinator.drain().await.expect("drained");
    let stats = coordinator.stats();
    assert_eq!((stats.completed, stats.cancelled), (1, 1), "{stats:?}");

    let seen = events.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        ["operation", "operation"],
        "both drops in their spans"
    );
}

/// Records the `key` field of every `operation` span opened.
#[derive(Clone, Default)]
struct Keys(Arc<Mutex<Vec<String>>>);

struct KeyField<'a>(&'a mut Option<String>);

impl tracing::field::Visit for KeyField<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "key" {
            *self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "key" {
            *self.0 = Some(format!("{value:?}"));
        }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Keys {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() == "operation" {
            let mut key = None;
            attrs.record(&mut KeyField(&mut key));
            self.0.lock().unwrap().push(key.unwrap_or_default());
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_operation_span_carries_its_key_as_displayed() {
    let keys = Keys::default();
    let subscriber = tracing_subscriber::registry().with(keys.clone());
    let _default = tracing::subscriber::set_default(subscriber);

    let coordinator = ephemeral::EphemeralKeyedWorkCoordinator::new(
        |_n: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    coordinator.enqueue(-42i32, 1).await.expect("accepted");
    coordinator.enqueue(7i32, 2).await.expect("accepted");
    coordinator.drain().await.expect("drained");
    let text = ephemeral::EphemeralKeyedWorkCoordinator::new(
        |_n: u32, _ctx: OperationContext| async { Ok::<_, String>(()) },
        EphemeralOptions::default(),
    )
    .expect("coordinator");
    text.enqueue("alice".to_owned(), 3).await.expect("accepted");
    text.drain().await.expect("drained");

    assert_eq!(*keys.0.lock().unwrap(), ["-42", "7", "alice"]);
}
