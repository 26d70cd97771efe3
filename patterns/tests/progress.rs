//! Progress: signals for a byte stream.

use ephemeral::SignalSink;
use ephemeral_patterns::progress::{Progress, ProgressError};
use futures::StreamExt as _;

fn chunks(sizes: &[usize]) -> impl futures::Stream<Item = Result<Vec<u8>, String>> + use<> {
    futures::stream::iter(sizes.iter().map(|n| Ok(vec![7u8; *n])).collect::<Vec<_>>())
}

fn percents(sink: &SignalSink, name: &str) -> Vec<String> {
    sink.sense(&format!("progress.{name}.percent:*"))
        .iter()
        .map(|s| s.name().to_string())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn reports_each_step_once_even_across_big_chunks() {
    let sink = SignalSink::default();
    let mut stream = Progress::new(chunks(&[5, 40, 10, 45]), &sink, "file", Some(100))
        .unwrap()
        .step(20)
        .unwrap();
    let mut total = 0;
    while let Some(chunk) = stream.next().await {
        total += chunk.unwrap().len();
    }
    assert_eq!(total, 100);
    assert_eq!(stream.bytes(), 100);
    assert_eq!(
        percents(&sink, "file"),
        [
            "progress.file.percent:20",
            "progress.file.percent:40",
            "progress.file.percent:60",
            "progress.file.percent:80",
            "progress.file.percent:100"
        ]
    );
    let done = sink.latest("progress.file.done").unwrap();
    assert_eq!(done.header("bytes"), Some(&100i64.into()));
    assert_eq!(sink.count("progress.file.started"), 1);
    assert_eq!(sink.count("progress.file.failed"), 0);
    drop(stream);
    assert_eq!(
        sink.count("progress.file.failed"),
        0,
        "a finished stream is not a failure"
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_total_reports_start_and_end_only() {
    let sink = SignalSink::default();
    let stream = Progress::new(chunks(&[3, 3]), &sink, "x", None).unwrap();
    let items: Vec<_> = stream.collect().await;
    assert_eq!(items.len(), 2);
    assert!(percents(&sink, "x").is_empty());
    assert_eq!(
        sink.latest("progress.x.done").unwrap().header("bytes"),
        Some(&6i64.into())
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_item_raises_failed_with_the_message() {
    let sink = SignalSink::default();
    let source = futures::stream::iter(vec![Ok(vec![1u8; 10]), Err("connection reset".to_owned())]);
    let mut stream = Progress::new(source, &sink, "dl", Some(20)).unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    assert!(stream.next().await.unwrap().is_err());
    assert!(stream.next().await.is_none());
    let failed = sink.latest("progress.dl.failed").unwrap();
    assert_eq!(failed.header("error"), Some(&"connection reset".into()));
    assert_eq!(sink.count("progress.dl.done"), 0);
    assert_eq!(
        percents(&sink, "dl"),
        [
            "progress.dl.percent:10",
            "progress.dl.percent:20",
            "progress.dl.percent:30",
            "progress.dl.percent:40",
            "progress.dl.percent:50"
        ]
    );
}

/// The wrapper never changes the stream: items after an error pass through; `failed` is
/// raised once, and nothing else after it.
#[tokio::test(start_paused = true)]
async fn items_after_an_error_pass_through_and_failed_is_the_last_signal() {
    let sink = SignalSink::default();
    let source = futures::stream::iter(vec![
        Ok(vec![1u8; 5]),
        Err("blip".to_owned()),
        Ok(vec![1u8; 5]),
        Err("again".to_owned()),
        Ok(vec![1u8; 10]),
    ]);
    let stream = Progress::new(source, &sink, "up", Some(20)).unwrap();
    let items: Vec<_> = stream.collect().await;
    assert_eq!(
        items,
        [
            Ok(vec![1u8; 5]),
            Err("blip".to_owned()),
            Ok(vec![1u8; 5]),
            Err("again".to_owned()),
            Ok(vec![1u8; 10]),
        ]
    );
    assert_eq!(sink.count("progress.up.failed"), 1);
    let failed = sink.latest("progress.up.failed").unwrap();
    assert_eq!(failed.header("error"), Some(&"blip".into()));
    assert_eq!(sink.count("progress.up.done"), 0);
    assert_eq!(
        percents(&sink, "up"),
        ["progress.up.percent:10", "progress.up.percent:20"]
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_mid_stream_raises_failed_dropped() {
    let sink = SignalSink::default();
    let mut stream = Progress::new(chunks(&[1, 1, 1]), &sink, "copy", Some(3)).unwrap();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    let failed = sink.latest("progress.copy.failed").unwrap();
    assert_eq!(failed.header("error"), Some(&"dropped".into()));
}

/// Only a started stream can fail by being dropped: one dropped before its first poll raises
/// nothing, not even `failed`.
#[tokio::test(start_paused = true)]
async fn dropping_before_the_first_poll_raises_nothing() {
    let sink = SignalSink::default();
    let stream = Progress::new(chunks(&[1, 1, 1]), &sink, "copy", Some(3)).unwrap();
    drop(stream);
    assert_eq!(sink.count("progress.*"), 0);

    // Polled once, even with nothing ready yet, it has started, and dropping it fails it.
    let mut pending = Progress::new(
        futures::stream::pending::<Result<Vec<u8>, String>>(),
        &sink,
        "copy",
        Some(3),
    )
    .unwrap();
    assert!(futures::poll!(pending.next()).is_pending());
    drop(pending);
    assert!(sink.has_signal("progress.copy.started"));
    let failed = sink.latest("progress.copy.failed").unwrap();
    assert_eq!(failed.header("error"), Some(&"dropped".into()));
}

#[test]
fn invalid_settings_are_typed_errors() {
    let sink = SignalSink::default();
    assert!(matches!(
        Progress::new(chunks(&[]), &sink, "bad name", None).unwrap_err(),
        ProgressError::Name(_)
    ));
    // An empty name would report as `progress..done`, which says nothing about the stream.
    let err = Progress::new(chunks(&[]), &sink, "", None).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!(err, ProgressError::EmptyName);
    let err = Progress::new(chunks(&[]), &sink, "ok", None)
        .unwrap()
        .step(0)
        .unwrap_err();
    assert_eq!(err, ProgressError::Step(0));
    assert!(
        Progress::new(chunks(&[]), &sink, "ok", None)
            .unwrap()
            .step(101)
            .is_err()
    );
}

/// A name that starts or ends with a dot used to be accepted, and the stream reported as
/// `progress.report..done`, which a reader of `progress.report.done` never sees: refused.
#[test]
fn a_name_starting_or_ending_with_a_dot_is_refused() {
    let sink = SignalSink::default();
    for name in ["report.", ".report", "."] {
        let err = Progress::new(chunks(&[]), &sink, name, None).unwrap_err();
        assert_eq!(err, ProgressError::NameDot(name.to_owned()));
        assert!(err.to_string().contains("give the segments alone"), "{err}");
    }
    assert!(Progress::new(chunks(&[]), &sink, "exports.report", None).is_ok());
}

/// A sink that takes no header still gets `done` and `failed` (without their header): the
/// signals a reader waits for are never lost to the header limit.
#[tokio::test(start_paused = true)]
async fn a_sink_without_headers_still_gets_done_and_failed() {
    let sink = SignalSink::new(ephemeral::SinkOptions::default().max_headers(0)).unwrap();
    let mut done = Progress::new(chunks(&[10, 10]), &sink, "ok", Some(20)).unwrap();
    while done.next().await.is_some() {}
    assert!(sink.has_signal("progress.ok.done"));
    let mut failing = Progress::new(
        futures::stream::iter(vec![Ok(vec![1u8]), Err("boom".to_owned())]),
        &sink,
        "bad",
        None,
    )
    .unwrap();
    while failing.next().await.is_some() {}
    assert!(sink.has_signal("progress.bad.failed"));
}
