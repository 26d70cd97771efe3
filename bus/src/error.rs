//! `BusError`: everything that can go wrong when opening or using a bus.

use std::io;
use std::path::PathBuf;

use ephemeral::NameError;

use crate::BusNameError;

/// An error from the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A topic is not a valid name.
    #[error("invalid topic: {0}")]
    Name(#[from] NameError),
    /// The bus name is not one path-safe word (see [`BusName`](crate::BusName)); nothing
    /// was created.
    #[error("invalid bus name: {0}")]
    BusName(#[from] BusNameError),
    /// The bus directory's path is too long for the Unix sockets it holds; nothing was
    /// created.
    #[error(
        "bus directory {path} is too long ({len} bytes; at most {max}) for the Unix sockets in it: use a shorter parent directory (EPHEMERAL_BUS_DIR or BusOptions::dir) or a shorter bus name"
    )]
    PathTooLong {
        /// The bus directory.
        path: std::path::PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest bus directory that fits.
        max: usize,
    },
    /// The bus directory belongs to another user.
    #[error(
        "bus directory {path} is owned by uid {owner}, not by this process's uid {me}: only the owning user may open a bus; remove it or choose another directory"
    )]
    NotOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        me: u32,
    },
    /// The bus directory is open to group or others.
    #[error(
        "bus directory {path} has mode {mode:o}, open to group or others: a bus directory must be mode 700; fix it with `chmod 700` or remove it"
    )]
    Permissions {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The payload is larger than the bus allows.
    #[error(
        "payload of {len} bytes is larger than the bus maximum of {max} bytes: split it or raise BusOptions::max_payload"
    )]
    PayloadTooLarge {
        /// The payload's size.
        len: usize,
        /// The maximum ([`BusOptions::max_payload`](crate::BusOptions::max_payload)).
        max: usize,
    },
    /// A message's headers do not fit a bus frame, which carries at most
    /// [`MAX_HEADERS`](crate::MAX_HEADERS) headers, keys of at most
    /// [`MAX_HEADER_KEY`](crate::MAX_HEADER_KEY) bytes, string values of at most
    /// [`MAX_HEADER_STR`](crate::MAX_HEADER_STR) bytes, and headers that, encoded with the
    /// topic and payload, take at most [`BusOptions::max_payload`](crate::BusOptions::max_payload)
    /// plus 1 MiB; nothing was sent.
    #[error(
        "{what} is {len}, more than a bus frame carries ({max}): send fewer or shorter headers, or put the data in the payload"
    )]
    HeadersTooLarge {
        /// What was over its limit: `"the number of headers"`, `"the length of header key
        /// `k`"`, `"the length of string header `k`"` or `"the encoded size of the
        /// headers"`.
        what: String,
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Nobody serves the topic of a request.
    #[error("no peer serves `{topic}`: start a server with Bus::serve first")]
    NoServer {
        /// The request topic.
        topic: String,
    },
    /// No reply came in time.
    #[error(
        "request on `{topic}` got no reply within {after:?}: the server is slow or stuck; retry or raise the timeout"
    )]
    Timeout {
        /// The request topic.
        topic: String,
        /// The timeout.
        after: std::time::Duration,
    },
    /// The server handling the request left the bus, died or stopped serving before its
    /// final reply.
    #[error(
        "the server handling `{topic}` stopped or left the bus before its last reply: retry, another server may answer"
    )]
    PeerGone {
        /// The request topic.
        topic: String,
    },
    /// The server was running and queueing as many requests as it allows (see
    /// [`ServeOptions`](crate::ServeOptions)) and refused this one.
    #[error(
        "the server for `{topic}` is busy (running and queueing as many requests as it allows): retry later, or start more servers"
    )]
    ServerBusy {
        /// The request topic.
        topic: String,
    },
    /// The server's handler panicked, or its reply was over the bus's max payload.
    #[error("the server's handler for `{topic}` failed: {message}")]
    ServerFailed {
        /// The request topic.
        topic: String,
        /// The panic message, or what was wrong with the reply.
        message: String,
    },
    /// A message could not be kept for the durable subscriptions its topic matches (the
    /// bus's database failed); it was not published.
    #[error("the message could not be kept for a durable subscription: {0}")]
    Retained(#[source] Box<crate::retained::StoreError>),
    /// A subscription's, an observer's or a bridge's pattern matches no name
    /// ([`Pattern::is_empty`](ephemeral::Pattern::is_empty): empty, or every alternative holds
    /// whitespace or a control character), so it would receive or bridge nothing;
    /// `Nats::subscribe` and `Nats::bridge` refuse it alike.
    #[error(
        "pattern `{pattern}` matches no valid name (it is empty, or every alternative holds whitespace or a control character): give a pattern such as `orders.*`"
    )]
    EmptyPattern {
        /// The pattern.
        pattern: String,
    },
    /// The bus was closed.
    #[error("the bus is closed: open it again")]
    Closed,
    /// An operating-system error on a bus file. A permission denied (this user may not
    /// create, enter or read the directory: its parent is another user's, say) and a file
    /// where a directory should be (`EPHEMERAL_BUS_DIR` naming a file) say so, and what to
    /// do.
    #[error("bus i/o error on {path}: {source}{}", io_hint(.source))]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// What to do about an i/o error, where the error alone does not say.
fn io_hint(source: &io::Error) -> &'static str {
    match source.kind() {
        io::ErrorKind::PermissionDenied => {
            ": this user may not use it: open the bus as the user who owns it, or choose a parent directory this user can write (EPHEMERAL_BUS_DIR or BusOptions::dir)"
        }
        // A file where the parent directory (or one above it) should be.
        io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => {
            ": a file stands where a directory should be: point EPHEMERAL_BUS_DIR (or BusOptions::dir) at a directory, or remove the file"
        }
        _ => "",
    }
}

impl BusError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| BusError::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A permission denied on the bus directory (its parent is another user's, say) said
    /// only `Permission denied (os error 13)`, nothing about what to do.
    #[test]
    fn a_permission_denied_or_a_file_in_the_way_says_what_to_do() {
        let e = BusError::Io {
            path: "/srv/buses/ephemeral-shop".into(),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("bus i/o error on /srv/buses/ephemeral-shop: ")
                && text.contains("as the user who owns it")
                && text.contains("EPHEMERAL_BUS_DIR"),
            "{text}"
        );
        // A file where the parent directory should be said `File exists (os error 17)`.
        for kind in [io::ErrorKind::NotADirectory, io::ErrorKind::AlreadyExists] {
            let e = BusError::Io {
                path: "/srv/buses".into(),
                source: io::Error::from(kind),
            };
            let text = e.to_string();
            assert!(
                text.contains("a file stands where a directory should be")
                    && text.contains("EPHEMERAL_BUS_DIR"),
                "{text}"
            );
        }
        let other = BusError::Io {
            path: "/x".into(),
            source: io::Error::from(io::ErrorKind::StorageFull),
        };
        assert!(!other.to_string().contains("owns"), "{other}");
    }
}
