//! An operation's key as the coordinator keeps it: rendered through `Display` only when
//! someone looks.

use std::any::Any;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// A keyed operation's key (or a priority lane's name), kept from enqueue to eviction.
///
/// Keys appear in snapshots, echoes, admission requests, the operation's context and its
/// span as their `Display` rendering. Integer keys are kept as numbers and rendered only when
/// one of those asks (most operations are never looked at: rendering at enqueue cost a
/// formatter pass and an allocation per item). `Arc<str>` keys are shared, `String` and
/// `&'static str` keys copied once, and any other key is rendered at enqueue as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyLabel {
    /// Text already rendered (or a lane's name).
    Text(Arc<str>),
    /// A signed integer key, rendered on demand.
    Signed(i64),
    /// An unsigned integer key, rendered on demand.
    Unsigned(u64),
}

impl KeyLabel {
    /// The label of `key`: its `Display` rendering, now or later.
    pub(crate) fn of<K: fmt::Display + 'static>(key: &K) -> Self {
        // The type checks fold away once `K` is known: each key type compiles to one arm.
        let any: &dyn Any = key;
        macro_rules! numbers {
            ($variant:ident: $wide:ty: $($t:ty),*) => {$(
                if let Some(&n) = any.downcast_ref::<$t>()
                    && let Ok(n) = <$wide>::try_from(n)
                {
                    return Self::$variant(n);
                }
            )*};
        }
        numbers!(Unsigned: u64: u8, u16, u32, u64, usize);
        numbers!(Signed: i64: i8, i16, i32, i64, isize);
        if let Some(text) = any.downcast_ref::<Arc<str>>() {
            return Self::Text(text.clone());
        }
        if let Some(text) = any.downcast_ref::<String>() {
            return Self::Text(Arc::from(text.as_str()));
        }
        if let Some(text) = any.downcast_ref::<&'static str>() {
            return Self::Text(Arc::from(*text));
        }
        Self::Text(render(key))
    }

    /// The rendered text (allocates for a number).
    pub(crate) fn text(&self) -> Arc<str> {
        match self {
            Self::Text(text) => text.clone(),
            Self::Signed(n) => render(n),
            Self::Unsigned(n) => render(n),
        }
    }

    /// Whether the rendering is `text` (no allocation).
    pub(crate) fn renders_as(&self, text: &str) -> bool {
        match self {
            Self::Text(own) => **own == *text,
            Self::Signed(n) => Stack::render(n).is_some_and(|s| s.as_str() == text),
            Self::Unsigned(n) => Stack::render(n).is_some_and(|s| s.as_str() == text),
        }
    }
}

impl fmt::Display for KeyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => f.write_str(text),
            Self::Signed(n) => fmt::Display::fmt(n, f),
            Self::Unsigned(n) => fmt::Display::fmt(n, f),
        }
    }
}

/// A fixed buffer that fails the write once full.
struct Stack {
    buf: [u8; 64],
    len: usize,
}

impl Stack {
    /// `value` rendered on the stack, if it fits in 64 bytes.
    fn render(value: &impl fmt::Display) -> Option<Self> {
        let mut stack = Self {
            buf: [0; 64],
            len: 0,
        };
        fmt::Write::write_fmt(&mut stack, format_args!("{value}")).ok()?;
        Some(stack)
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are written, so the bytes are UTF-8; checked rather than trusted.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

impl fmt::Write for Stack {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// What a key whose `Display` fails (returns an error or panics) is shown as.
pub(crate) const UNRENDERABLE: &str = "<unrenderable key>";

/// `value` through `Display`, in one allocation (the `Arc`) for values that render in up to
/// 64 bytes; [`UNRENDERABLE`] if its `Display` returns an error or panics (a key only
/// labels an operation: a broken rendering must not refuse the item or unwind through the
/// caller's `enqueue`).
pub(crate) fn render(value: &impl fmt::Display) -> Arc<str> {
    let rendered = std::panic::catch_unwind(AssertUnwindSafe(|| {
        if let Some(stack) = Stack::render(value) {
            return Some(Arc::from(stack.as_str()));
        }
        // Longer than the stack buffer, or its `Display` failed: `to_string` would panic on
        // the failure, so the error is taken here.
        let mut text = String::new();
        fmt::Write::write_fmt(&mut text, format_args!("{value}")).ok()?;
        Some(Arc::from(text))
    }));
    match rendered {
        Ok(Some(text)) => text,
        Ok(None) | Err(_) => {
            tracing::warn!(
                "a key's Display returned an error or panicked: the operation is labelled {UNRENDERABLE}"
            );
            Arc::from(UNRENDERABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyLabel, render};
    use std::sync::Arc;

    #[test]
    fn short_and_long_keys_render_as_display_does() {
        assert_eq!(&*render(&42usize), "42");
        assert_eq!(&*render(&"alice"), "alice");
        let long = "k".repeat(64);
        assert_eq!(&*render(&long), long.as_str());
        let longer = "é".repeat(40); // 80 bytes: past the stack buffer
        assert_eq!(&*render(&longer), longer.as_str());
        assert_eq!(&*render(&""), "");
    }

    /// A key type with its own rendering, to check the fallback.
    #[derive(Clone)]
    struct Tenant(u32);

    impl std::fmt::Display for Tenant {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "tenant-{}", self.0)
        }
    }

    #[test]
    fn every_kind_of_key_renders_as_its_display() {
        fn check<K: std::fmt::Display + 'static>(key: K) {
            let label = KeyLabel::of(&key);
            let shown = key.to_string();
            assert_eq!(&*label.text(), shown.as_str());
            assert_eq!(label.to_string(), shown);
            assert!(label.renders_as(&shown));
            assert!(!label.renders_as(&format!("{shown}x")));
        }
        check(7u8);
        check(u16::MAX);
        check(u32::MAX);
        check(u64::MAX);
        check(usize::MAX);
        check(i8::MIN);
        check(-3i16);
        check(i32::MIN);
        check(i64::MIN);
        check(isize::MIN);
        check(u128::MAX); // wider than the numeric labels: rendered at once
        check(i128::MIN);
        check(String::from("alice"));
        check("bob");
        check(Arc::<str>::from("carol"));
        check(Tenant(9));
        check('x');
    }

    #[test]
    fn integers_wait_to_be_rendered_and_text_is_shared() {
        assert_eq!(KeyLabel::of(&42u32), KeyLabel::Unsigned(42));
        assert_eq!(KeyLabel::of(&-42i64), KeyLabel::Signed(-42));
        let shared: Arc<str> = Arc::from("orders");
        let KeyLabel::Text(kept) = KeyLabel::of(&shared) else {
            panic!("an Arc<str> key is kept as text");
        };
        assert!(Arc::ptr_eq(&kept, &shared));
        assert_eq!(KeyLabel::of(&"x"), KeyLabel::Text(Arc::from("x")));
        let wide = u128::MAX.to_string();
        assert_eq!(
            KeyLabel::of(&u128::MAX),
            KeyLabel::Text(Arc::from(wide.as_str()))
        );
    }
}
