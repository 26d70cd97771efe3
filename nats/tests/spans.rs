//! The NATS `debug` spans: `nats.publish`, `nats.request` and `nats.serve`, with the topic
//! and sizes, recorded by a subscriber that keeps every span it is shown; against a real
//! server.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral_nats::Nats;
use ephemeral_nats::testing::NatsServer;

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// One span as it was opened: its name, level and fields (as text).
#[derive(Debug, Clone)]
struct Seen {
    name: &'static str,
    level: tracing::Level,
    fields: HashMap<&'static str, String>,
}

/// A layer that records every span opened, with the values recorded into it later. Under
/// the registry, as real subscribers are, so `Span::current()` works.
#[derive(Clone, Default)]
struct Recorder {
    /// Every span opened, and where the span now holding each id is (the registry reuses
    /// the ids of closed spans).
    spans: Arc<Mutex<Spans>>,
}

/// Every span opened, and the index of the span holding each id now.
type Spans = (Vec<Seen>, HashMap<u64, usize>);

struct Fields<'a>(&'a mut HashMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }
}

impl<S: Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut fields = HashMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.spans.lock().unwrap();
        let (seen, ids) = &mut *spans;
        ids.insert(id.into_u64(), seen.len());
        seen.push(Seen {
            name: attrs.metadata().name(),
            level: *attrs.metadata().level(),
            fields,
        });
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        let mut spans = self.spans.lock().unwrap();
        let (seen, ids) = &mut *spans;
        if let Some(at) = ids.get(&id.into_u64()) {
            values.record(&mut Fields(&mut seen[*at].fields));
        }
    }
}

impl Recorder {
    fn named(&self, name: &str) -> Vec<Seen> {
        let spans = self.spans.lock().unwrap();
        spans.0.iter().filter(|s| s.name == name).cloned().collect()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn publish_request_and_serve_open_debug_spans_with_topic_and_sizes() {
    let server = NatsServer::start().await;
    let recorder = Recorder::default();
    // Current-thread runtime: the server's tasks run on this thread, under this default.
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));
    let nats = Nats::connect(&server.url()).await.unwrap();

    nats.publish("orders.created", "12345").await.unwrap();
    let publish = recorder.named("nats.publish");
    assert_eq!(publish.len(), 1, "{publish:?}");
    assert_eq!(publish[0].level, tracing::Level::DEBUG);
    assert_eq!(publish[0].fields["topic"], "orders.created");
    assert_eq!(publish[0].fields["bytes"], "5");

    let _server = nats
        .serve("price.get", |request| async move {
            Ok::<_, &str>(request.payload_str().unwrap_or("").to_owned())
        })
        .await
        .unwrap();
    let reply = nats
        .request("price.get", "abc", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply.payload_str(), Some("abc"));

    let request = recorder.named("nats.request");
    assert_eq!(request.len(), 1, "{request:?}");
    assert_eq!(request[0].fields["topic"], "price.get");
    assert_eq!(request[0].fields["bytes"], "3");
    assert_eq!(request[0].fields["timeout_ms"], "10000");

    let serve = recorder.named("nats.serve");
    assert_eq!(serve.len(), 1, "{serve:?}");
    assert_eq!(serve[0].level, tracing::Level::DEBUG);
    assert_eq!(serve[0].fields["topic"], "price.get");
    assert_eq!(serve[0].fields["bytes"], "3");
}
