//! `QueueError`: what can go wrong with a work queue, each with what to do about it.

use crate::NatsError;

/// An error from a [`WorkQueue`](super::WorkQueue) or its intake.
///
/// Server and connection failures are [`QueueError::Nats`] (a [`NatsError`], JetStream
/// failures as [`NatsError::JetStream`] with the server's codes); the rest are about the
/// queue's own rules.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The connection or the server failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The queue name cannot name a stream.
    #[error(
        "invalid work queue name `{name}`: {reason}: use 1 to 64 letters, digits, `-` and `_`, not ending in `_DEAD`, such as `orders`"
    )]
    BadName {
        /// The name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A job id cannot be used.
    #[error(
        "invalid job id `{id}`: {reason}: use a non-empty id of at most 1024 bytes without control characters or leading or trailing whitespace, unique per job (it is how duplicates are found)"
    )]
    BadId {
        /// The id (shortened when long).
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A job's payload leaves no room for the headers of its dead letter within the
    /// server's `max_payload`: it could be pushed, but not dead-lettered if it fails, so it
    /// is refused. `max` is the largest payload this job (its id, and key) can have.
    #[error(
        "job `{id}` has a payload of {len} bytes, too large for work queue `{queue}`: at most {max} bytes fit (the server's max_payload of {max_payload} bytes less {overhead} bytes for the headers of its dead letter: its id, subject and an error text of up to 1024 bytes); split the job, or raise max_payload in the server's configuration"
    )]
    JobTooLarge {
        /// The queue.
        queue: String,
        /// The job id (shortened when long).
        id: String,
        /// The payload's size.
        len: usize,
        /// The largest payload this job can have.
        max: usize,
        /// The server's `max_payload`.
        max_payload: usize,
        /// The bytes kept for the dead letter's headers.
        overhead: usize,
    },
    /// A key cannot be used.
    #[error("invalid job key `{key}`: {reason}: use a key of at most 255 bytes")]
    BadKey {
        /// The key (shortened when long).
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A push got no confirmation from the server within `push_timeout` (it retried with
    /// the same id meanwhile). The job may be queued anyway: the server may have stored it
    /// and its answer been lost.
    #[error(
        "job `{id}` pushed to work queue `{queue}` got no confirmation within {after:?} (last: {last}): it may be queued anyway; push it again with the same id once the server answers: a job already queued is reported as a duplicate, never queued twice"
    )]
    PushUnconfirmed {
        /// The queue.
        queue: String,
        /// The job id (shortened when long).
        id: String,
        /// The push timeout.
        after: std::time::Duration,
        /// The last attempt's failure.
        last: Box<NatsError>,
    },
    /// A plain call on a keyed queue, or a keyed call on a plain queue.
    #[error("work queue `{queue}` {problem}")]
    WrongKind {
        /// The queue.
        queue: String,
        /// What does not fit.
        problem: &'static str,
    },
    /// The stream exists with settings this queue cannot work with.
    #[error(
        "stream `{stream}` exists but {problem}: delete it (nats stream rm {stream}) or use another queue name"
    )]
    Incompatible {
        /// The stream.
        stream: String,
        /// What does not fit.
        problem: String,
    },
    /// An option is out of range.
    #[error("work queue option `{option}` must be {rule}")]
    Options {
        /// The option.
        option: &'static str,
        /// The accepted range.
        rule: &'static str,
    },
    /// A payload could not be decoded as JSON ([`Job::json`](super::Job::json),
    /// [`DeadLetter::json`](super::DeadLetter::json)).
    #[error("job payload is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A value given to [`push_json`](super::WorkQueue::push_json) or
    /// [`push_keyed_json`](super::WorkQueue::push_keyed_json) could not be encoded as JSON;
    /// nothing was pushed.
    #[error(
        "job `{id}` cannot be pushed as JSON: {source}: give a value serde_json can encode (a map's keys must be strings or integers), or encode it yourself and push the bytes"
    )]
    Encode {
        /// The job id (shortened when long).
        id: String,
        /// Why serde_json refused it.
        source: serde_json::Error,
    },
    /// The coordinator could not be created.
    #[error(transparent)]
    Coordinator(#[from] ephemeral::CoordinatorError),
}

/// `s`, cut to at most 64 bytes (on a character boundary) for an error message.
pub(crate) fn shorten(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_owned();
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A JetStream error (anywhere in `error`'s source chain) as [`NatsError::JetStream`], or
/// the failure as [`NatsError::Client`] when the server gave no JetStream error.
pub(crate) fn jetstream(op: &'static str, error: &(dyn std::error::Error + 'static)) -> NatsError {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return from_js(op, js);
        }
        current = e.source();
    }
    NatsError::Client {
        op,
        message: error.to_string(),
    }
}

/// The JetStream error code in `error`'s source chain, if any.
pub(crate) fn jetstream_code(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(js) = e.downcast_ref::<async_nats::jetstream::Error>() {
            return Some(js.error_code().0);
        }
        current = e.source();
    }
    None
}

/// Client errors that carry the server's JetStream error in their kind rather than their
/// source.
pub(crate) trait JsKind: std::error::Error + 'static {
    /// The server's error, if the failure was one.
    fn js_error(&self) -> Option<async_nats::jetstream::Error>;
}

macro_rules! js_kind {
    ($($error:ty => $kind:path),* $(,)?) => {
        $(impl JsKind for $error {
            fn js_error(&self) -> Option<async_nats::jetstream::Error> {
                match self.kind() {
                    $kind(e) => Some(e),
                    _ => None,
                }
            }
        })*
    };
}

use async_nats::jetstream::context as js_context;
use async_nats::jetstream::stream as js_stream;

js_kind! {
    js_context::GetStreamError => js_context::GetStreamErrorKind::JetStream,
    js_context::CreateStreamError => js_context::CreateStreamErrorKind::JetStream,
    js_context::ConsumerInfoError => js_context::ConsumerInfoErrorKind::JetStream,
    js_stream::ConsumerError => js_stream::ConsumerErrorKind::JetStream,
    js_stream::RawMessageError => js_stream::LastRawMessageErrorKind::JetStream,
    js_stream::DeleteMessageError => js_stream::DeleteMessageErrorKind::JetStream,
}

/// [`jetstream`] for an error that may carry the server's error in its kind.
pub(crate) fn js_err<E: JsKind>(op: &'static str, error: &E) -> NatsError {
    match error.js_error() {
        Some(js) => from_js(op, &js),
        None => jetstream(op, error),
    }
}

/// The server's JetStream error code of `error`, if any.
pub(crate) fn js_code<E: JsKind>(error: &E) -> Option<u64> {
    error
        .js_error()
        .map(|e| e.error_code().0)
        .or_else(|| jetstream_code(error))
}

fn from_js(op: &'static str, js: &async_nats::jetstream::Error) -> NatsError {
    NatsError::JetStream {
        op,
        code: u16::try_from(js.code()).unwrap_or(0),
        err_code: js.error_code().0,
        // The description field is private; its serialized form is not.
        description: serde_json::to_value(js)
            .ok()
            .and_then(|v| v.get("description")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "no description".to_owned()),
    }
}

/// Whether a raw-message read failed because the message is not in the stream.
pub(crate) fn no_message(error: &async_nats::jetstream::stream::RawMessageError) -> bool {
    error.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound
        || js_code(error) == Some(NO_MESSAGE_FOUND)
}

/// JetStream's "no message found" error code.
pub(crate) const NO_MESSAGE_FOUND: u64 = 10037;
