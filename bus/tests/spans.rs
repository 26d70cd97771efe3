//! The bus's `debug` spans: `bus.publish`, `bus.request` and `bus.serve`, with the topic and
//! sizes, recorded by a subscriber that keeps every span it is shown.

mod support;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// One span as it was opened: its name, level and fields (as text).
#[derive(Debug, Clone)]
struct Seen {
    name: &'static str,
    level: tracing::Level,
    fields: HashMap<&'static str, String>,
}

/// A subscriber that records every span opened while it is the default, with the values
/// recorded into it later.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<Seen>>>,
}

struct Fields<'a>(&'a mut HashMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        spans.push(Seen {
            name: attrs.metadata().name(),
            level: *attrs.metadata().level(),
            fields,
        });
        // The id is the span's place in `spans`, plus one (ids are non-zero).
        Id::from_u64(spans.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut spans = self.spans.lock().unwrap();
        if let Some(seen) = spans.get_mut(id.into_u64() as usize - 1) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

impl Recorder {
    fn named(&self, name: &str) -> Vec<Seen> {
        let spans = self.spans.lock().unwrap();
        spans.iter().filter(|s| s.name == name).cloned().collect()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn publish_request_and_serve_open_debug_spans_with_topic_and_sizes() {
    let recorder = Recorder::default();
    // Current-thread runtime: the server's tasks run on this thread, under this default.
    let _default = tracing::subscriber::set_default(recorder.clone());
    let dir = tempfile::tempdir().unwrap();
    let bus = support::open(dir.path(), "spans").await;

    bus.publish("orders.created", b"12345").await.unwrap();
    let publish = recorder.named("bus.publish");
    assert_eq!(publish.len(), 1, "{publish:?}");
    assert_eq!(publish[0].level, tracing::Level::DEBUG);
    assert_eq!(publish[0].fields["topic"], "orders.created");
    assert_eq!(publish[0].fields["bytes"], "5");

    let _server = bus
        .serve(
            "price.get",
            |request| async move { request.payload().to_vec() },
        )
        .await
        .unwrap();
    let reply = bus
        .request("price.get", b"abc", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply.payload(), b"abc");

    let request = recorder.named("bus.request");
    assert_eq!(request.len(), 1, "{request:?}");
    assert_eq!(request[0].level, tracing::Level::DEBUG);
    assert_eq!(request[0].fields["topic"], "price.get");
    assert_eq!(request[0].fields["bytes"], "3");
    assert_eq!(request[0].fields["timeout_ms"], "5000");

    let serve = recorder.named("bus.serve");
    assert_eq!(serve.len(), 1, "{serve:?}");
    assert_eq!(serve[0].level, tracing::Level::DEBUG);
    assert_eq!(serve[0].fields["topic"], "price.get");
    assert_eq!(serve[0].fields["bytes"], "3");
}
