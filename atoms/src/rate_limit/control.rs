//! Live control of a limiter by command signals.

use std::sync::Arc;

use ephemeral::{Listener, NameError, Signal, SignalSink, command};

use super::Tunable;

/// Steers `limiter` from command signals raised into `sink`, until the returned
/// [`Listener`] is dropped.
///
/// With `prefix` = `rate.limit` (any valid name works, to steer several limiters apart):
///
/// | signal | effect |
/// |---|---|
/// | `rate.limit.set:<n>` | rate = n per second |
/// | `rate.limit.increase:<n>` | rate += n |
/// | `rate.limit.decrease:<n>` | rate -= n (refused if that leaves no rate) |
/// | `rate.limit.burst:<n>` | burst = n |
///
/// Each command is confirmed by a leaf signal `rate.limit.applied` with headers `command`,
/// `rate` and `burst`, or answered by `rate.limit.rejected` with headers `command` and
/// `reason` (no payload, as in `rate.limit.set`; a payload that is not a number; a rate that
/// would not be positive). These replies are not commands, so nothing can loop (the .NET
/// original's reset recurses forever). The change applies to the next permit.
///
/// # Errors
///
/// [`ControlError`] when `prefix` is not a valid name, holds a `:` (which starts a
/// command's payload, so no command would match), or is longer than 244 bytes (its
/// commands, `<prefix>.increase:<n>`, would not fit in a name; at 244 bytes they fit with
/// a one-byte payload, and a command too long to be a name is refused when raised).
///
/// # Examples
///
/// ```
/// use ephemeral::SignalSink;
/// use ephemeral_atoms::rate_limit::{GcraLimiter, Tunable, control};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sink = SignalSink::default();
/// let limiter = GcraLimiter::new(10.0, 5)?;
/// let _control = control(&sink, "rate.limit", limiter.clone())?;
///
/// sink.raise("rate.limit.set:20")?;
/// assert_eq!(limiter.rate(), 20.0);
/// assert!(sink.has_signal("rate.limit.applied"));
///
/// sink.raise("rate.limit.decrease:50")?; // would leave no rate
/// assert_eq!(limiter.rate(), 20.0);
/// assert!(sink.has_signal("rate.limit.rejected"));
/// # Ok(())
/// # }
/// ```
pub fn control(
    sink: &SignalSink,
    prefix: &str,
    limiter: impl Tunable + 'static,
) -> Result<Listener, ControlError> {
    if let Err(reason) = ephemeral::validate_name(prefix) {
        return Err(ControlError::Name {
            prefix: prefix.to_owned(),
            reason,
        });
    }
    // A command is what comes before the first `:`; past it, the payload.
    if prefix.contains(':') {
        return Err(ControlError::Colon {
            prefix: prefix.to_owned(),
        });
    }
    if prefix.len() > MAX_PREFIX_LEN {
        return Err(ControlError::TooLong {
            prefix: prefix.to_owned(),
            len: prefix.len(),
            max: MAX_PREFIX_LEN,
        });
    }
    let limiter: Arc<dyn Tunable> = Arc::new(limiter);
    let commands = Commands {
        set: format!("{prefix}.set"),
        increase: format!("{prefix}.increase"),
        decrease: format!("{prefix}.decrease"),
        burst: format!("{prefix}.burst"),
        applied: format!("{prefix}.applied"),
        rejected: format!("{prefix}.rejected"),
    };
    let replies = sink.clone();
    Ok(sink.on_signal(&format!("{prefix}.*"), move |signal| {
        commands.handle(&replies, limiter.as_ref(), signal);
    }))
}

/// The longest prefix: its longest commands with a payload of one byte
/// (`<prefix>.increase:5`, `<prefix>.decrease:5`) must be valid names.
const MAX_PREFIX_LEN: usize = ephemeral::MAX_NAME_LEN - ".increase:5".len();

/// Why [`control()`] refused its prefix. Each case would have left the limiter deaf to
/// every command (or to some of them), so it is refused up front.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The prefix breaks the signal naming rule.
    #[error("rate limit control prefix `{prefix}` is not a valid name: {reason}")]
    Name {
        /// The prefix.
        prefix: String,
        /// Which naming rule it broke.
        reason: NameError,
    },
    /// The prefix holds a `:`, which starts a command's payload: `rate:limit.set:20` is the
    /// command `rate`, so no command of this prefix would ever match.
    #[error(
        "rate limit control prefix `{prefix}` holds a `:`, which starts a command's payload, so no command would ever match: use a dotted name such as `rate.limit`"
    )]
    Colon {
        /// The prefix.
        prefix: String,
    },
    /// The prefix is too long for its commands (`<prefix>.increase:<n>`) to be names.
    #[error(
        "rate limit control prefix is {len} bytes long, more than the {max} that leave room for its commands (`<prefix>.increase:<n>` must fit in {} bytes): shorten it",
        ephemeral::MAX_NAME_LEN
    )]
    TooLong {
        /// The prefix.
        prefix: String,
        /// Its length in bytes.
        len: usize,
        /// The longest prefix, in bytes.
        max: usize,
    },
}

struct Commands {
    set: String,
    increase: String,
    decrease: String,
    burst: String,
    applied: String,
    rejected: String,
}

impl Commands {
    fn handle(&self, sink: &SignalSink, limiter: &dyn Tunable, signal: &Signal) {
        let name = signal.name().as_str();
        // Only a name that *starts* with the prefix is ours; `x.rate.limit.set:1` is not. A
        // command without a payload (`rate.limit.set`) is still ours, to be rejected; the
        // replies have no payload either, but match no command.
        let head = command::split(name).map_or(name, |(head, _)| head);
        let outcome = if head == self.set {
            number::<f64>(name, &self.set).and_then(|n| set(limiter, n))
        } else if head == self.increase {
            number::<f64>(name, &self.increase).and_then(|n| set(limiter, limiter.rate() + n))
        } else if head == self.decrease {
            number::<f64>(name, &self.decrease).and_then(|n| set(limiter, limiter.rate() - n))
        } else if head == self.burst {
            number::<u32>(name, &self.burst)
                .and_then(|n| limiter.set_burst(n).map_err(|e| e.to_string()))
        } else {
            return;
        };
        let reply = match outcome {
            Ok(()) => Signal::build(&self.applied).map(|b| {
                b.header("rate", limiter.rate())
                    .header("burst", i64::from(limiter.burst()))
            }),
            Err(reason) => Signal::build(&self.rejected).map(|b| b.header("reason", reason)),
        };
        if let Ok(reply) = reply {
            // The reply is a leaf: a reaction to it cannot start a chain. A failure to reply
            // (a full sink's header limit) must not undo the change already applied.
            let _ = sink.raise_with(reply.header("command", name).leaf());
        }
    }
}

fn number<T>(name: &str, command: &str) -> Result<T, String>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match command::parse::<T>(name, command) {
        Ok(Some(n)) => Ok(n),
        Ok(None) => Err(format!("`{name}` has no payload")),
        Err(e) => Err(e.to_string()),
    }
}

fn set(limiter: &dyn Tunable, rate: f64) -> Result<(), String> {
    limiter.set_rate(rate).map_err(|e| e.to_string())
}
