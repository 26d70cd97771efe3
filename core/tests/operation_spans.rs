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
