//! How this crate's `serde` support writes time (feature `serde`).
//!
//! One rule for every type: a [`Duration`] is a whole number of **milliseconds** (a JSON
//! number, field names ending in `_ms`), which `jq` and every language read without a parser;
//! sub-millisecond parts are truncated. An [`Instant`] of tokio's clock means nothing outside
//! the process, so it is written as its **age**: milliseconds between it and the moment the
//! value was serialized (`enqueued_ms_ago`), or for an instant still to come the milliseconds
//! left (`expires_in_ms`), rounded up so that something still to come never reads 0. Types
//! holding instants are therefore `Serialize` only.
//!
//! The functions here are the `#[serde(with = "...")]` helpers the crate uses, public so that
//! the bus and your own types write time the same way.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Probe {
//!     #[serde(with = "ephemeral::serde_ms::duration")]
//!     timeout_ms: Duration,
//! }
//!
//! let json = serde_json::to_string(&Probe { timeout_ms: Duration::from_millis(1500) })?;
//! assert_eq!(json, r#"{"timeout_ms":1500}"#);
//! let back: Probe = serde_json::from_str(&json)?;
//! assert_eq!(back.timeout_ms, Duration::from_millis(1500));
//! # Ok::<(), serde_json::Error>(())
//! ```

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};
use tokio::time::Instant;

/// Whole milliseconds, saturating at `u64::MAX` (585 million years).
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The milliseconds since `t` (0 for an instant in the future).
#[must_use]
pub fn age_ms(t: Instant) -> u64 {
    millis(Instant::now().saturating_duration_since(t))
}

/// The milliseconds until `t`, rounded **up** (0 only for an instant now or past): what is
/// still to come never reads 0, which would say it has passed. A signal written in its last
/// millisecond so reads back with 1 ms to live, not as a zero time to live that the raise
/// refuses.
#[must_use]
pub fn remaining_ms(t: Instant) -> u64 {
    let left = t.saturating_duration_since(Instant::now());
    let ms = millis(left);
    // A part of a millisecond left counts as one (saturating: `u64::MAX` stays).
    if left > Duration::from_millis(ms) {
        ms.saturating_add(1)
    } else {
        ms
    }
}

/// A [`Duration`] as whole milliseconds.
pub mod duration {
    use super::*;

    /// Writes `d` as whole milliseconds.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(millis(*d))
    }

    /// Reads whole milliseconds.
    ///
    /// # Errors
    ///
    /// When the value is not an unsigned integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// An `Option<Duration>` as whole milliseconds or `null`.
pub mod option_duration {
    use super::*;

    /// Writes `d` as whole milliseconds, or none.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&millis(*d)),
            None => s.serialize_none(),
        }
    }

    /// Reads whole milliseconds or none.
    ///
    /// # Errors
    ///
    /// When the value is neither an unsigned integer nor none.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(d).map(|ms| ms.map(Duration::from_millis))
    }
}

/// An [`Instant`] written as its age in milliseconds (serialize only).
pub mod age {
    use super::*;

    /// Writes the milliseconds since `t`.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(age_ms(*t))
    }
}

/// An `Option<Instant>` written as its age in milliseconds or `null` (serialize only).
pub mod option_age {
    use super::*;

    /// Writes the milliseconds since `t`, or none.
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    pub fn serialize<S: Serializer>(t: &Option<Instant>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&age_ms(*t)),
            None => s.serialize_none(),
        }
    }
}

/// An [`Instant`] still to come, written as the milliseconds left, rounded up (serialize
/// only).
pub mod remaining {
    use super::*;

    /// Writes the milliseconds until `t`, rounded up ([`remaining_ms`]).
    ///
    /// # Errors
    ///
    /// Whatever the serializer reports.
    pub fn serialize<S: Serializer>(t: &Instant, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(remaining_ms(*t))
    }
}
