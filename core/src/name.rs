//! Signal names: the one naming rule shared by the sink, the bus and the CLI.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

use smol_str::SmolStr;

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// A validated signal name such as `error.db.timeout` or `rate.limit.set:20`.
///
/// The rule, applied everywhere a name enters the system:
///
/// * non-empty and at most [`MAX_NAME_LEN`] (255) bytes;
/// * no whitespace, no control characters (Unicode category Cc) and no invisible format
///   characters (category Cf: soft hyphen, zero-width space and joiners, bidirectional
///   controls such as U+202E, the byte-order mark U+FEFF, …), so two names that print
///   alike are the same name;
/// * none of the pattern characters `*`, `?` and `,`;
/// * no dot-separated segment that is exactly `+` (that is the one-segment wildcard).
///
/// Dots separate segments; a `:` may carry a command payload (`rate.limit.set:20`, see
/// [`crate::command`]). A name of up to 23 bytes is stored inline, so cloning it copies 24
/// bytes and touches no shared reference count; a longer one is shared, and cloning it is
/// one reference-count increment.
///
/// # Examples
///
/// ```
/// use ephemeral::{Name, NameError};
///
/// let name = Name::new("error.db.timeout")?;
/// assert_eq!(name.as_str(), "error.db.timeout");
/// assert_eq!(name.segments().count(), 3);
///
/// assert!(matches!(Name::new("error.*"), Err(NameError::Wildcard { .. })));
/// assert!(matches!(Name::new(""), Err(NameError::Empty)));
/// # Ok::<(), NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(SmolStr);

/// Why a string is not a valid [`Name`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The string was empty.
    #[error("signal name is empty: give a dotted name such as `error.db.timeout`")]
    Empty,
    /// The string was longer than [`MAX_NAME_LEN`] bytes.
    #[error("signal name is {len} bytes long, more than the limit of {max}: shorten it")]
    TooLong {
        /// The length of the rejected string, in bytes.
        len: usize,
        /// The limit ([`MAX_NAME_LEN`]).
        max: usize,
    },
    /// The string contained whitespace.
    #[error("signal name contains whitespace at byte {at}: names are single words joined by dots")]
    Whitespace {
        /// Byte offset of the offending character.
        at: usize,
    },
    /// The string contained a control character.
    #[error("signal name contains a control character at byte {at}: remove it")]
    Control {
        /// Byte offset of the offending character.
        at: usize,
    },
    /// The string contained an invisible format character (Unicode category Cf, such as a
    /// zero-width space, a bidirectional control or a byte-order mark).
    #[error(
        "signal name contains the invisible format character U+{code:04X} at byte {at}: names must print as they are compared, remove it"
    )]
    Format {
        /// The offending character's code point.
        code: u32,
        /// Byte offset of the offending character.
        at: usize,
    },
    /// The string contained a pattern character (`*`, `?` or `,`).
    #[error(
        "signal name contains the pattern character `{ch}` at byte {at}: wildcards and commas belong in patterns, not names"
    )]
    Wildcard {
        /// The offending character.
        ch: char,
        /// Byte offset of the offending character.
        at: usize,
    },
    /// A dot-separated segment was exactly `+`.
    #[error(
        "signal name has a segment that is exactly `+` at byte {at}: `+` as a whole segment is the one-segment wildcard of patterns"
    )]
    PlusSegment {
        /// Byte offset of the segment.
        at: usize,
    },
}

/// Checks `s` against the naming rule without allocating.
///
/// This is the check [`Name::new`] performs; use it where only a verdict is needed.
///
/// # Errors
///
/// Returns the first rule `s` breaks, as a [`NameError`].
pub fn validate(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            len: s.len(),
            max: MAX_NAME_LEN,
        });
    }
    // Fast path: printable ASCII with no wildcard and no `+`, which is nearly every real name.
    // Anything else takes the full check below, which says which rule was broken. One table
    // load and one `and` per byte, no branch until the end (a name is at most 255 bytes).
    if s.bytes().fold(1, |all, b| all & FAST[usize::from(b)]) == 1 {
        return Ok(());
    }
    check_chars(s)
}

/// The character rules (wildcards, `+` segments, whitespace, control characters), each
/// with its error: the whole check for a name of valid length.
fn check_chars(s: &str) -> Result<(), NameError> {
    let mut segment_start = 0;
    for (at, ch) in s.char_indices() {
        match ch {
            '*' | '?' | ',' => return Err(NameError::Wildcard { ch, at }),
            '.' => {
                if &s[segment_start..at] == "+" {
                    return Err(NameError::PlusSegment { at: segment_start });
                }
                segment_start = at + 1;
            }
            c if c.is_whitespace() => return Err(NameError::Whitespace { at }),
            c if c.is_control() => return Err(NameError::Control { at }),
            c if is_format(c) => {
                return Err(NameError::Format {
                    code: u32::from(c),
                    at,
                });
            }
            _ => {}
        }
    }
    if &s[segment_start..] == "+" {
        return Err(NameError::PlusSegment { at: segment_start });
    }
    Ok(())
}

/// Whether `c` is a Unicode format character (general category Cf, Unicode 15): invisible,
/// it changes how text around it displays (joins, direction) without showing itself.
///
/// Listed by hand, as the standard library has no category tables and the crate takes no
/// dependency for one rule; all are outside ASCII, so the ASCII fast path never sees them.
pub(crate) fn is_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// A printable ASCII byte that is not a space or a wildcard (`*`, `?`, `,`).
const fn plain_byte(b: u8) -> bool {
    b > b' ' && b < 0x7f && b != b'*' && b != b'?' && b != b','
}

/// `1` for the bytes of [`validate`]'s fast path ([`plain_byte`]s other than `+`), else `0`.
const FAST: [u8; 256] = {
    let mut table = [0; 256];
    let mut b = 0;
    while b < table.len() {
        // `b` < 256: the cast is exact.
        #[allow(clippy::cast_possible_truncation)]
        let byte = b as u8;
        if plain_byte(byte) && byte != b'+' {
            table[b] = 1;
        }
        b += 1;
    }
    table
};

impl Name {
    /// Validates `name` and wraps it.
    ///
    /// # Errors
    ///
    /// Returns a [`NameError`] naming the rule the string breaks.
    pub fn new(name: &str) -> Result<Self, NameError> {
        validate(name)?;
        Ok(Self(SmolStr::new(name)))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The dot-separated segments of the name.
    pub fn segments(&self) -> std::str::Split<'_, char> {
        self.0.split('.')
    }

    /// An empty name, never handed out: what a free entry of the sink's name table holds
    /// (it owns no memory).
    pub(crate) const fn placeholder() -> Name {
        Name(SmolStr::new_inline(""))
    }
}

impl TryFrom<&str> for Name {
    type Error = NameError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for Name {
    type Error = NameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        validate(&value)?;
        Ok(Self(SmolStr::from(value)))
    }
}

impl std::str::FromStr for Name {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in [
            "a",
            "error.db.timeout",
            "rate.limit.set:20",
            "news.sports+eu",
            "+a",
            "a.+b",
            "ünïcödé.ok",
            "a..b",
        ] {
            assert!(Name::new(ok).is_ok(), "{ok} should be valid");
        }
        assert!(Name::new(&"x".repeat(MAX_NAME_LEN)).is_ok());
    }

    #[test]
    fn each_rule_has_its_error() {
        assert_eq!(Name::new(""), Err(NameError::Empty));
        assert_eq!(
            Name::new(&"x".repeat(256)),
            Err(NameError::TooLong { len: 256, max: 255 })
        );
        assert_eq!(Name::new("a b"), Err(NameError::Whitespace { at: 1 }));
        assert_eq!(Name::new("a\u{7}"), Err(NameError::Control { at: 1 }));
        assert_eq!(
            Name::new("a.*"),
            Err(NameError::Wildcard { ch: '*', at: 2 })
        );
        assert_eq!(Name::new("a?"), Err(NameError::Wildcard { ch: '?', at: 1 }));
        assert_eq!(
            Name::new("a,b"),
            Err(NameError::Wildcard { ch: ',', at: 1 })
        );
        assert_eq!(Name::new("a.+"), Err(NameError::PlusSegment { at: 2 }));
        assert_eq!(Name::new("+.a"), Err(NameError::PlusSegment { at: 0 }));
        assert_eq!(Name::new("a.+.b"), Err(NameError::PlusSegment { at: 2 }));
    }

    /// `validate` answers as the full character check does: its fast path accepts nothing
    /// the full check refuses (and hands everything else to it). Every byte, alone and
    /// inside a name.
    #[test]
    fn the_fast_path_agrees_with_the_full_check_on_every_byte() {
        for b in 0..=u8::MAX {
            let byte = [b];
            let names: Vec<String> = match std::str::from_utf8(&byte) {
                Ok(c) => vec![format!("a{c}b"), c.to_owned(), format!("x.{c}")],
                // Not ASCII: as part of a character (`é` has 0xC3, 0xA9).
                Err(_) => vec!["café".to_owned(), "a.é".to_owned()],
            };
            for name in names {
                assert_eq!(
                    validate(&name),
                    check_chars(&name),
                    "{name:?} (byte {b:#04x})"
                );
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn validate_is_the_full_check_for_any_string(s in "\\PC{1,40}|[a-z.+*?, \\t]{1,20}") {
            proptest::prop_assert_eq!(validate(&s), check_chars(&s));
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        let msg = Name::new("a b").unwrap_err().to_string();
        assert!(msg.contains("whitespace"), "{msg}");
        assert!(!msg.ends_with('.'), "{msg}");
    }
}
