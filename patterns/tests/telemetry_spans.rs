//! Telemetry: every operation runs in a `tracing` span named `operation` that carries the
//! coordinator, the id and, once it ends, the outcome — what a `tracing-opentelemetry` layer
//! exports as OpenTelemetry spans. Checked with a minimal recording subscriber.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// A span's name and its recorded fields.
type SpanRecord = (String, HashMap<String, String>);

#[derive(Default)]
struct Recorder {
    next: AtomicU64,
    spans: Mutex<HashMap<u64, SpanRecord>>,
}

struct Fields<'a>(&'a mut HashMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

#[derive(Clone, Default)]
struct Shared(Arc<Recorder>);

impl Subscriber for Shared {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let id = self.0.next.fetch_add(1, Ordering::SeqCst) + 1;
        let mut fields = HashMap::new();
        span.record(&mut Fields(&mut fields));
        self.0
            .spans
            .lock()
            .unwrap()
            .insert(id, (span.metadata().name().to_owned(), fields));
        Id::from_u64(id)
    }
    fn record(&self, span: &Id, values: &Record<'_>) {
        if let Some((_, fields)) = self.0.spans.lock().unwrap().get_mut(&span.into_u64()) {
            values.record(&mut Fields(fields));
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(start_paused = true)]
async fn each_operation_has_a_span_with_its_outcome() {
    let recorder = Shared::default();
    let _guard = tracing::subscriber::set_default(recorder.clone());
    let coordinator = EphemeralWorkCoordinator::new(
        |n: u32, _ctx| async move {
            if n.is_multiple_of(2) {
                Ok(())
            } else {
                Err(format!("odd {n}"))
            }
        },
        EphemeralOptions::default()
            .name("orders")
            .max_concurrency(2),
    )
    .unwrap();
    for n in 0..6 {
        coordinator.enqueue(n).await.unwrap();
    }
    coordinator.drain().await.unwrap();

    let spans = recorder.0.spans.lock().unwrap();
    let operations: Vec<_> = spans
        .values()
        .filter(|(name, _)| name == "operation")
        .map(|(_, fields)| fields.clone())
        .collect();
    assert_eq!(operations.len(), 6, "{operations:?}");
    let mut outcomes: Vec<_> = operations
        .iter()
        .map(|f| f.get("outcome").cloned().unwrap_or_default())
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            "completed",
            "completed",
            "completed",
            "failed",
            "failed",
            "failed"
        ]
    );
    assert!(
        operations
            .iter()
            .all(|f| f.get("coordinator").map(String::as_str) == Some("orders"))
    );
    assert!(operations.iter().all(|f| f.contains_key("id")));
}
