//! Command signals: names that carry a payload after a colon, such as `rate.limit.set:20`.
//!
//! A command signal is an ordinary [`Name`](crate::Name) whose part after the first `:` is a
//! payload. A command matches only at a segment boundary: `rate.limit.set:20` and
//! `api.rate.limit.set:20` are the command `rate.limit.set`, but `xrate.limit.set:20` is not.
//!
//! ```
//! use std::time::Duration;
//! use ephemeral::command;
//!
//! assert_eq!(command::payload("rate.limit.set:20", "rate.limit.set"), Some("20"));
//! assert_eq!(command::payload("xrate.limit.set:20", "rate.limit.set"), None);
//! assert_eq!(command::parse::<u32>("rate.limit.set:20", "rate.limit.set"), Ok(Some(20)));
//! assert_eq!(
//!     command::duration("rate-limit:1m 30s", "rate-limit"),
//!     Ok(Some(Duration::from_secs(90)))
//! );
//! ```

use std::str::FromStr;
use std::time::Duration;

/// A command payload that does not parse as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command `{command}` has payload `{payload}`, which is not {expected}: {reason}")]
pub struct CommandError {
    /// The command that matched.
    pub command: String,
    /// The payload as found.
    pub payload: String,
    /// What was expected ("a number", "a duration such as `250ms` or `1m 30s`").
    pub expected: &'static str,
    /// Why parsing failed.
    pub reason: String,
}

/// Splits a name at its first `:` into the command part and the payload.
///
/// Returns `None` when the name has no `:`.
#[must_use]
pub fn split(name: &str) -> Option<(&str, &str)> {
    name.split_once(':')
}

/// The payload of `name` if it is the command `command` (at a segment boundary).
#[must_use]
pub fn payload<'a>(name: &'a str, command: &str) -> Option<&'a str> {
    let (head, payload) = split(name)?;
    if command.is_empty() {
        return None;
    }
    let boundary = match head.strip_suffix(command)? {
        "" => true,
        prefix => prefix.ends_with('.'),
    };
    boundary.then_some(payload)
}

/// Whether `name` is the command `command`, with or without a payload.
#[must_use]
pub fn is_command(name: &str, command: &str) -> bool {
    let head = split(name).map_or(name, |(head, _)| head);
    match head.strip_suffix(command) {
        Some("") => !command.is_empty(),
        Some(prefix) => prefix.ends_with('.') && !command.is_empty(),
        None => false,
    }
}

/// The payload of the command `command` in `name`, parsed as `T`.
///
/// `Ok(None)` when `name` is not that command.
///
/// # Errors
///
/// Returns a [`CommandError`] when the payload does not parse as `T`.
pub fn parse<T>(name: &str, command: &str) -> Result<Option<T>, CommandError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    let Some(raw) = payload(name, command) else {
        return Ok(None);
    };
    raw.trim().parse::<T>().map(Some).map_err(|e| CommandError {
        command: command.to_owned(),
        payload: raw.to_owned(),
        expected: "a value of the expected type",
        reason: e.to_string(),
    })
}

/// The payload of the command `command` in `name`, parsed as a duration with `humantime`
/// (`250ms`, `5s`, `1m 30s`).
///
/// `Ok(None)` when `name` is not that command.
///
/// # Errors
///
/// Returns a [`CommandError`] when the payload is not a duration.
pub fn duration(name: &str, command: &str) -> Result<Option<Duration>, CommandError> {
    let Some(raw) = payload(name, command) else {
        return Ok(None);
    };
    parse_duration(raw)
        .map(Some)
        .map_err(|reason| CommandError {
            command: command.to_owned(),
            payload: raw.to_owned(),
            expected: "a duration such as `250ms` or `1m 30s`",
            reason,
        })
}

/// Parses a human duration (`250ms`, `5s`, `1m 30s`); a bare number is seconds.
///
/// # Errors
///
/// Returns the parser's message when `text` is not a duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    humantime::parse_duration(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_at_segment_boundaries() {
        assert_eq!(payload("window.size.set:5", "window.size.set"), Some("5"));
        assert_eq!(
            payload("app.window.size.set:5", "window.size.set"),
            Some("5")
        );
        assert_eq!(payload("xwindow.size.set:5", "window.size.set"), None);
        assert_eq!(payload("window.size.set", "window.size.set"), None);
        assert_eq!(payload("window.size.set:", "window.size.set"), Some(""));
        assert_eq!(payload("a:b:c", "a"), Some("b:c"));
        assert_eq!(payload("a:1", ""), None);
        assert!(is_command("window.size.set", "window.size.set"));
        assert!(is_command("window.size.set:9", "window.size.set"));
        assert!(!is_command("xwindow.size.set:9", "window.size.set"));
    }

    #[test]
    fn typed_payloads() {
        assert_eq!(
            parse::<u32>("rate.limit.set:20", "rate.limit.set"),
            Ok(Some(20))
        );
        assert_eq!(parse::<u32>("other:20", "rate.limit.set"), Ok(None));
        let err = parse::<u32>("rate.limit.set:many", "rate.limit.set").unwrap_err();
        assert!(err.to_string().contains("many"), "{err}");
        assert_eq!(
            duration("rate-limit:250ms", "rate-limit"),
            Ok(Some(Duration::from_millis(250)))
        );
        assert_eq!(
            duration("rate-limit:2", "rate-limit"),
            Ok(Some(Duration::from_secs(2)))
        );
        assert!(duration("rate-limit:soon", "rate-limit").is_err());
        assert!(duration("rate-limit:-1", "rate-limit").is_err());
    }
}
