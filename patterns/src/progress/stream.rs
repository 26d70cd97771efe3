//! The stream wrapper.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use ephemeral::{Name, NameError, RaiseError, SignalBuilder, SignalSink};
use futures::Stream;
use pin_project::{pin_project, pinned_drop};

/// Why a [`Progress`] wrapper could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProgressError {
    /// `progress.<name>` does not make valid signal names.
    #[error("progress name does not make valid signal names: {0}")]
    Name(#[source] NameError),
    /// The name was empty: the signals would be `progress..started`, `progress..done`, which
    /// no reader could tell from another unnamed stream's.
    #[error(
        "the progress name is empty: give the stream a name, such as `report` for `progress.report.done`"
    )]
    EmptyName,
    /// The name starts or ends with a dot (`report.`, `.report`): the signals would hold an
    /// empty segment (`progress.report..done`). Inner dots are fine (`exports.report`).
    #[error(
        "the progress name `{0}` starts or ends with a dot, which would leave an empty segment (`progress.report..done`): give the segments alone, such as `report` or `exports.report`"
    )]
    NameDot(String),
    /// The percent step was 0 or above 100.
    #[error("percent step {0} is outside 1..=100")]
    Step(u8),
}

/// A byte stream that raises progress signals as it is consumed.
///
/// # Examples
///
/// ```
/// use ephemeral::SignalSink;
/// use ephemeral_patterns::progress::Progress;
/// use futures::StreamExt as _;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let chunks = futures::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![0u8; 50])));
/// let mut download = Progress::new(chunks, &sink, "report", Some(200))?.step(25)?;
/// while let Some(chunk) = download.next().await {
///     let _bytes = chunk?;
/// }
/// assert!(sink.has_signal("progress.report.started"));
/// assert_eq!(sink.count("progress.report.percent:*"), 4); // 25, 50, 75, 100
/// assert!(sink.has_signal("progress.report.done"));
/// # Ok(())
/// # }
/// ```
#[pin_project(PinnedDrop)]
#[must_use = "streams do nothing unless polled"]
pub struct Progress<S> {
    #[pin]
    inner: S,
    sink: SignalSink,
    prefix: String,
    total: Option<u64>,
    step: u8,
    bytes: u64,
    /// The last percent reported (a multiple of `step`).
    reported: u8,
    started: bool,
    /// `failed` was raised (an error item): later items pass through with no signal.
    failed: bool,
    /// The inner stream ended.
    finished: bool,
}

impl<S> Progress<S> {
    /// Wraps `inner`, reporting as `progress.<name>.*` on `sink`; `total` is the expected
    /// size in bytes, if known (for percentages). The default step is 10 percent.
    ///
    /// # Errors
    ///
    /// [`ProgressError::EmptyName`] for an empty `name`; [`ProgressError::NameDot`] for one
    /// that starts or ends with a dot; [`ProgressError::Name`] when
    /// `progress.<name>.percent:100` is not a valid name (whitespace, a wildcard, ...).
    pub fn new(
        inner: S,
        sink: &SignalSink,
        name: &str,
        total: Option<u64>,
    ) -> Result<Self, ProgressError> {
        if name.is_empty() {
            return Err(ProgressError::EmptyName);
        }
        if name.starts_with('.') || name.ends_with('.') {
            return Err(ProgressError::NameDot(name.to_owned()));
        }
        let prefix = format!("progress.{name}");
        for suffix in ["started", "percent:100", "done", "failed"] {
            Name::new(&format!("{prefix}.{suffix}")).map_err(ProgressError::Name)?;
        }
        Ok(Self {
            inner,
            sink: sink.clone(),
            prefix,
            total,
            step: 10,
            bytes: 0,
            reported: 0,
            started: false,
            failed: false,
            finished: false,
        })
    }

    /// Reports every `step` percent instead of every 10.
    ///
    /// # Errors
    ///
    /// [`ProgressError::Step`] when `step` is 0 or above 100.
    pub fn step(mut self, step: u8) -> Result<Self, ProgressError> {
        if step == 0 || step > 100 {
            return Err(ProgressError::Step(step));
        }
        self.step = step;
        Ok(self)
    }

    /// Bytes seen so far.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// Raises one of the wrapper's signals. A sink that takes no header (`max_headers(0)`) gets
/// the signal without its header: `done` and `failed` end the stream's story, and a reader
/// waiting for them must not wait for ever. Any other refusal loses only a progress report,
/// never data, so it is ignored by design.
fn raise(sink: &SignalSink, name: &str, header: Option<(&str, ephemeral::HeaderValue)>) {
    let Ok(name) = Name::new(name) else { return };
    let mut signal = SignalBuilder::new(name.clone());
    if let Some((key, value)) = header {
        signal = signal.header(key, value);
    }
    if let Err(RaiseError::TooManyHeaders { .. }) = sink.raise_with(signal) {
        let _ = sink.raise_with(SignalBuilder::new(name));
    }
}

impl<S, B, E> Stream for Progress<S>
where
    S: Stream<Item = Result<B, E>>,
    B: AsRef<[u8]>,
    E: fmt::Display,
{
    type Item = Result<B, E>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        if *this.finished {
            return Poll::Ready(None);
        }
        if !*this.started {
            *this.started = true;
            raise(this.sink, &format!("{}.started", this.prefix), None);
        }
        let item = match this.inner.poll_next(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(item) => item,
        };
        match &item {
            // After a failure the items pass through unchanged, with no further signal.
            Some(_) if *this.failed => {}
            Some(Ok(chunk)) => {
                *this.bytes = this.bytes.saturating_add(chunk.as_ref().len() as u64);
                if let Some(total) = *this.total
                    && total > 0
                {
                    let percent = (this.bytes.saturating_mul(100) / total).min(100) as u8;
                    let due = percent / *this.step * *this.step;
                    // One signal per step passed, even if a big chunk passes several.
                    while *this.reported + *this.step <= due {
                        *this.reported += *this.step;
                        raise(
                            this.sink,
                            &format!("{}.percent:{}", this.prefix, this.reported),
                            None,
                        );
                    }
                }
            }
            Some(Err(e)) => {
                *this.failed = true;
                raise(
                    this.sink,
                    &format!("{}.failed", this.prefix),
                    Some(("error", e.to_string().into())),
                );
            }
            None if *this.failed => *this.finished = true,
            None => {
                *this.finished = true;
                let bytes = i64::try_from(*this.bytes).unwrap_or(i64::MAX);
                raise(
                    this.sink,
                    &format!("{}.done", this.prefix),
                    Some(("bytes", bytes.into())),
                );
            }
        }
        Poll::Ready(item)
    }
}

#[pinned_drop]
impl<S> PinnedDrop for Progress<S> {
    fn drop(self: Pin<&mut Self>) {
        let this = self.project();
        if *this.started && !*this.finished && !*this.failed {
            raise(
                this.sink,
                &format!("{}.failed", this.prefix),
                Some(("error", "dropped".into())),
            );
        }
    }
}

impl<S> fmt::Debug for Progress<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Progress")
            .field("name", &self.prefix)
            .field("bytes", &self.bytes)
            .field("total", &self.total)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}
