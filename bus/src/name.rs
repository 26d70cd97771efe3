//! `BusName`: the name of a bus, one path-safe word.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The longest bus name, in bytes. The bus directory `<parent>/ephemeral-<name>` holds Unix
/// sockets named `<16 hex digits>.sock`, and a socket path must fit in 108 bytes: 32 leaves
/// about 40 bytes for the parent (`/dev/shm` takes 8; a temporary directory about 20).
pub const MAX_BUS_NAME_LEN: usize = 32;

/// The rule every bus name follows, as one sentence for error messages and help texts.
pub const BUS_NAME_RULE: &str =
    "a bus name is one word of ASCII letters, digits, `-` and `_`, 1 to 32 bytes";

/// The name of a bus: one path-safe word of ASCII letters, digits, `-` and `_`, at most
/// [`MAX_BUS_NAME_LEN`] bytes.
///
/// The bus named `n` lives in the directory `<parent>/ephemeral-<n>`. With no `/`, no `.` and
/// nothing but these characters, a name can never reach outside the parent directory, never
/// names a hidden file, and reads the same in every shell. A bus name is also a valid
/// signal [`Name`](ephemeral::Name).
///
/// # Examples
///
/// ```
/// use ephemeral_bus::BusName;
///
/// assert_eq!(BusName::new("shop-eu_1")?.as_str(), "shop-eu_1");
/// assert!(BusName::new("../elsewhere").is_err());
/// assert!(BusName::new("a/b").is_err());
/// assert!(BusName::new("").is_err());
/// # Ok::<(), ephemeral_bus::BusNameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BusName(Arc<str>);

/// Why a string is not a bus name; the message states the rule ([`BUS_NAME_RULE`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BusNameError {
    /// The name was empty.
    #[error("bus name is empty: {BUS_NAME_RULE}, such as `shop`")]
    Empty,
    /// The name is longer than [`MAX_BUS_NAME_LEN`].
    #[error("bus name is {len} bytes long, more than {MAX_BUS_NAME_LEN}: {BUS_NAME_RULE}")]
    TooLong {
        /// The name's length in bytes.
        len: usize,
    },
    /// The name holds a character outside the rule.
    #[error("bus name `{name}` has {found:?} at byte {at}: {BUS_NAME_RULE}")]
    Char {
        /// The refused name, with control characters escaped.
        name: String,
        /// The first character outside the rule.
        found: char,
        /// Its byte offset.
        at: usize,
    },
}

impl BusName {
    /// Checks `name` against the rule.
    ///
    /// # Errors
    ///
    /// A [`BusNameError`] saying which part of the rule `name` broke.
    pub fn new(name: &str) -> Result<Self, BusNameError> {
        validate(name)?;
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a bus name without keeping it.
fn validate(name: &str) -> Result<(), BusNameError> {
    if name.is_empty() {
        return Err(BusNameError::Empty);
    }
    if name.len() > MAX_BUS_NAME_LEN {
        return Err(BusNameError::TooLong { len: name.len() });
    }
    match name
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        Some((at, found)) => Err(BusNameError::Char {
            name: name.escape_debug().to_string(),
            found,
            at,
        }),
        None => Ok(()),
    }
}

impl fmt::Display for BusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for BusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for BusName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for BusName {
    type Err = BusNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_tricks_and_odd_characters_are_refused() {
        for bad in [
            "x/../../elsewhere",
            "a/b",
            "../escape",
            "..",
            ".",
            ".hidden",
            "a.b",
            "a b",
            "a\0b",
            "ünicode",
            "tab\t",
            "star*",
            "/abs",
            "back\\slash",
        ] {
            assert!(BusName::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(BusName::new(""), Err(BusNameError::Empty));
        let long = "a".repeat(MAX_BUS_NAME_LEN + 1);
        assert_eq!(
            BusName::new(&long),
            Err(BusNameError::TooLong {
                len: MAX_BUS_NAME_LEN + 1
            })
        );
        assert!(BusName::new(&"a".repeat(MAX_BUS_NAME_LEN)).is_ok());
    }

    #[test]
    fn the_message_names_the_rule_and_the_character() {
        let err = BusName::new("a/b").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("'/' at byte 1"), "{text}");
        assert!(text.contains(BUS_NAME_RULE), "{text}");
        let err = BusName::new("a\0b").unwrap_err().to_string();
        assert!(err.contains("a\\0b"), "control characters escaped: {err}");
    }

    #[test]
    fn every_bus_name_is_a_signal_name() {
        for good in ["shop", "shop-eu_1", "A", "0", "-", "_private"] {
            let name = BusName::new(good).unwrap();
            assert!(ephemeral::Name::new(name.as_str()).is_ok(), "{good}");
        }
    }
}
