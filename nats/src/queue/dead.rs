//! Dead letters: jobs that did not complete on their last delivery, kept in their own
//! stream with why.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_nats::HeaderMap;
use async_nats::jetstream::stream::Stream as JsStream;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;

use super::error::{QueueError, jetstream, js_err, no_message};
use super::names::Names;

/// The header naming why a job was dead-lettered (`failed`, `cancelled`, `shutdown`,
/// `handed back`, `max deliveries`).
pub const DEAD_REASON: &str = "Ephemeral-Dead-Reason";
/// The header with the last error (or cancellation) text, cut to its first 1024 bytes.
pub const DEAD_ERROR: &str = "Ephemeral-Dead-Error";
/// The header with the number of deliveries the job had.
pub const DEAD_DELIVERIES: &str = "Ephemeral-Dead-Deliveries";
/// The header with the job's subject in the work stream.
pub const DEAD_SUBJECT: &str = "Ephemeral-Dead-Subject";
/// The header with the job's sequence number in the work stream.
pub const DEAD_SEQUENCE: &str = "Ephemeral-Dead-Sequence";
/// The header with the job's id (its `Nats-Msg-Id` when it was pushed).
pub const JOB_ID: &str = "Ephemeral-Job-Id";

/// The most bytes of error text a dead letter keeps ([`DEAD_ERROR`]); a longer text is
/// cut (on a character boundary), so a dead letter's headers have a known bound.
pub(crate) const DEAD_ERROR_MAX: usize = 1024;
/// The most bytes of a dead letter's reason ([`DEAD_REASON`]; the longest, `max
/// deliveries`, has 14).
const DEAD_REASON_MAX: usize = 16;

/// `text` as a header value of at most `max` bytes: header values may not hold CR or LF
/// (every control character becomes a space), and a dead letter's must stay within its
/// bound ([`overhead`]).
fn header_text(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > max {
        let mut end = max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// The most bytes the headers of a dead letter take on the wire, counted as the server
/// counts them against its `max_payload` (`NATS/1.0\r\n`, `Name: value\r\n` each, `\r\n`),
/// for a job pushed under `id` and stored in `stream` under a subject of at most
/// `subject_len` bytes: the id ([`JOB_ID`]), the dead letter's own id (`<stream>:<seq>`),
/// the reason, the error text (at most [`DEAD_ERROR_MAX`] bytes), the delivery count, the
/// subject and the sequence. A job whose payload fits the server's `max_payload` less
/// this can always be dead-lettered. The push's own headers (the id as `Nats-Msg-Id`) are
/// smaller, so such a job can be pushed too.
pub(crate) fn overhead(id: &str, stream: &str, subject_len: usize) -> usize {
    const FRAME: usize = "NATS/1.0\r\n".len() + "\r\n".len();
    // `Name: value\r\n`
    const fn line(name: &str, value: usize) -> usize {
        name.len() + 4 + value
    }
    // u64 and u32 in decimal, at most.
    const SEQ_DIGITS: usize = 20;
    const DELIVERIES_DIGITS: usize = 10;
    FRAME
        + line(JOB_ID, id.len())
        + line("Nats-Msg-Id", stream.len() + 1 + SEQ_DIGITS)
        + line(DEAD_REASON, DEAD_REASON_MAX)
        + line(DEAD_ERROR, DEAD_ERROR_MAX)
        + line(DEAD_DELIVERIES, DELIVERIES_DIGITS)
        + line(DEAD_SUBJECT, subject_len)
        + line(DEAD_SEQUENCE, SEQ_DIGITS)
}

/// The headers of a dead letter: the job's own (its `Nats-Msg-Id` moved to
/// [`JOB_ID`]), plus why, and `Nats-Msg-Id = <stream>:<seq>` so that a second dead letter
/// of the same job (the worker's and the janitor's) is refused as a duplicate.
pub(crate) fn headers(
    original: HeaderMap,
    stream: &str,
    seq: u64,
    subject: &str,
    deliveries: u32,
    reason: &str,
    error: &str,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, values) in original.iter() {
        if AsRef::<[u8]>::as_ref(name) == b"Nats-Msg-Id" {
            for value in values {
                headers.insert(JOB_ID, value.as_str());
            }
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{stream}:{seq}").as_str(),
    );
    headers.insert(DEAD_REASON, header_text(reason, DEAD_REASON_MAX).as_str());
    headers.insert(DEAD_ERROR, header_text(error, DEAD_ERROR_MAX).as_str());
    headers.insert(DEAD_DELIVERIES, deliveries.to_string().as_str());
    headers.insert(DEAD_SUBJECT, subject);
    headers.insert(DEAD_SEQUENCE, seq.to_string().as_str());
    headers
}

/// A job that did not complete on its last delivery.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let server = ephemeral_nats::testing::NatsServer::start().await;
/// use std::time::Duration;
/// use ephemeral::{EphemeralOptions, OperationContext};
/// use ephemeral_nats::Nats;
/// use ephemeral_nats::queue::{IntakeOptions, Job, WorkQueueOptions};
/// use futures::StreamExt;
///
/// let nats = Nats::connect(&server.url()).await?;
/// let options = WorkQueueOptions::default()
///     .max_deliver(2)
///     .backoff([Duration::from_millis(50)]);
/// let queue = nats.work_queue("invoices", options).await?;
/// queue.push("inv-7", "broken").await?;
/// let (_coordinator, intake) = queue
///     .work_coordinator(
///         |_job: Job, _ctx: OperationContext| async { Err::<(), _>("no such customer") },
///         EphemeralOptions::default(),
///         IntakeOptions::default(),
///     )
///     .await?;
/// while queue.stats().await?.dead == 0 {
///     tokio::time::sleep(Duration::from_millis(10)).await;
/// }
/// drop(intake);
/// let dead: Vec<_> = queue.dead_letters().await?.collect().await;
/// let letter = dead.into_iter().next().unwrap()?;
/// assert_eq!((&*letter.id, letter.deliveries), ("inv-7", 2));
/// assert_eq!((letter.reason.as_str(), letter.error.as_str()), ("failed", "no such customer"));
/// queue.remove_dead_letter(letter.sequence).await?; // handled
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct DeadLetter {
    /// Its sequence number in the dead-letter stream (for
    /// [`remove_dead_letter`](super::WorkQueue::remove_dead_letter)).
    pub sequence: u64,
    /// The job id.
    pub id: Arc<str>,
    /// The job key, on a keyed queue.
    pub key: Option<String>,
    /// Why: `failed`, `cancelled`, `shutdown`, `handed back` or `max deliveries` (its
    /// worker stopped answering on its last delivery).
    pub reason: String,
    /// The last error, or what cancelled it: its first 1024 bytes at most (cut on a
    /// character boundary), control characters as spaces.
    pub error: String,
    /// How many times it was delivered.
    pub deliveries: u32,
    /// Its subject in the work stream.
    pub subject: String,
    /// Its sequence number in the work stream.
    pub stream_sequence: u64,
    /// The payload.
    pub payload: Bytes,
    /// The headers (the job's own and the `Ephemeral-Dead-*` ones).
    pub headers: HeaderMap,
}

impl DeadLetter {
    fn from_message(names: &Names, sequence: u64, headers: HeaderMap, payload: Bytes) -> Self {
        let text = |name: &str| {
            headers
                .get(name)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        let subject = text(DEAD_SUBJECT);
        Self {
            sequence,
            id: Arc::from(text(JOB_ID)),
            key: names.key_of(&subject),
            reason: text(DEAD_REASON),
            error: text(DEAD_ERROR),
            deliveries: text(DEAD_DELIVERIES).parse().unwrap_or(0),
            stream_sequence: text(DEAD_SEQUENCE).parse().unwrap_or(0),
            subject,
            payload,
            headers,
        }
    }

    /// The payload, decoded from JSON.
    ///
    /// # Errors
    ///
    /// [`QueueError::Json`] when it is not a `T` in JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, QueueError> {
        Ok(serde_json::from_slice(&self.payload)?)
    }
}

impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("sequence", &self.sequence)
            .field("id", &self.id)
            .field("key", &self.key)
            .field("reason", &self.reason)
            .field("error", &self.error)
            .field("deliveries", &self.deliveries)
            .field("stream_sequence", &self.stream_sequence)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// The dead letters kept when [`WorkQueue::dead_letters`](super::WorkQueue::dead_letters)
/// was called, oldest first; a finite [`Stream`].
///
/// Read one letter per request to the server, each asking for the first letter at or after
/// a sequence number: sequences removed since (letters handled and removed, or aged out)
/// cost nothing, so listing 1,000 letters left among 100,000 removed takes about 1,000
/// requests, not 100,000. A letter removed while the listing runs is skipped; one added
/// meanwhile is not listed.
#[must_use = "a stream does nothing unless polled"]
pub struct DeadLetters {
    inner: BoxStream<'static, Result<DeadLetter, QueueError>>,
}

impl DeadLetters {
    pub(crate) async fn read(names: Names, mut stream: JsStream) -> Result<Self, QueueError> {
        let state = stream
            .info()
            .await
            .map_err(|e| jetstream("read dead letters", &e))?
            .state
            .clone();
        let (first, last) = (state.first_sequence, state.last_sequence);
        let empty = state.messages == 0;
        let subject = names.dead();
        let names = Arc::new(names);
        let inner = futures::stream::unfold(first, move |from| {
            let stream = stream.clone();
            let names = Arc::clone(&names);
            let subject = subject.clone();
            async move {
                if empty || from > last {
                    return None;
                }
                // The first letter at or after `from` (the stream holds only dead letters,
                // on one subject): deleted sequences are skipped by the server.
                let next = stream
                    .raw_message_builder()
                    .sequence(from)
                    .next_by_subject(subject)
                    .send()
                    .await;
                match next {
                    // Added after the listing began: not part of it.
                    Ok(m) if m.sequence > last => None,
                    Ok(m) => {
                        let seq = m.sequence;
                        let letter = DeadLetter::from_message(&names, seq, m.headers, m.payload);
                        Some((Ok(letter), seq.saturating_add(1)))
                    }
                    // None left (removed by hand or by age since the listing began).
                    Err(e) if no_message(&e) => None,
                    Err(e) => Some((
                        Err(js_err("read dead letters", &e).into()),
                        last.saturating_add(1),
                    )),
                }
            }
        });
        Ok(Self {
            inner: Box::pin(inner),
        })
    }
}

impl Stream for DeadLetters {
    type Item = Result<DeadLetter, QueueError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DeadLetters")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_headers_keep_the_job_and_say_why() {
        let mut original = HeaderMap::new();
        original.insert(async_nats::header::NATS_MESSAGE_ID, "job-7");
        original.insert("Trace", "abc");
        let h = headers(
            original,
            "S",
            42,
            "e.wq.q.j",
            3,
            "failed",
            "boom\r\nInjected: yes",
        );
        assert_eq!(h.get(JOB_ID).unwrap().as_str(), "job-7");
        assert_eq!(
            h.get(async_nats::header::NATS_MESSAGE_ID).unwrap().as_str(),
            "S:42"
        );
        assert_eq!(h.get("Trace").unwrap().as_str(), "abc");
        assert_eq!(h.get(DEAD_ERROR).unwrap().as_str(), "boom  Injected: yes");
        assert_eq!(h.get(DEAD_DELIVERIES).unwrap().as_str(), "3");
        let names = Names::new("e", "q").unwrap();
        let letter = DeadLetter::from_message(&names, 1, h, Bytes::from_static(b"x"));
        assert_eq!(
            (&*letter.id, letter.deliveries, letter.stream_sequence),
            ("job-7", 3, 42)
        );
        assert_eq!(letter.reason, "failed");
    }

    #[test]
    fn the_dead_letter_overhead_is_as_documented() {
        // `WorkQueue::push` and the README state these numbers.
        assert_eq!(overhead("", "", 0), 1269);
        let names = Names::new("ephemeral", "orders").unwrap();
        assert_eq!(
            overhead("", &names.stream, names.stored_len(&names.jobs())),
            1309
        );
    }

    #[test]
    fn the_headers_of_a_dead_letter_stay_within_their_bound() {
        let names = Names::new("e", "q").unwrap();
        for (id, error) in [
            ("j", String::new()),
            ("j", "é".repeat(2000)),
            (&*"i".repeat(1024), "x".repeat(5000)),
        ] {
            let mut original = HeaderMap::new();
            original.insert(async_nats::header::NATS_MESSAGE_ID, id);
            let subject = names.jobs();
            let h = headers(
                original,
                &names.stream,
                u64::MAX,
                &subject,
                u32::MAX,
                "max deliveries",
                &error,
            );
            assert!(h.get(DEAD_ERROR).unwrap().as_str().len() <= DEAD_ERROR_MAX);
            let len = crate::headers::wire_len(&h);
            let bound = overhead(id, &names.stream, subject.len());
            assert!(len <= bound, "{len} > {bound}");
            // Tight: the bound is what the longest error takes, give or take the reason.
            if error.len() >= DEAD_ERROR_MAX {
                assert!(bound - len < 32, "{bound} - {len}");
            }
        }
    }
}
