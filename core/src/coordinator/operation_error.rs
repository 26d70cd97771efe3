//! [`OperationError`]: the error an operation failed with, kept as the body returned it.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The error an operation failed with: the body's own error value, kept as it was returned
/// (inspect it with [`downcast_ref`](Self::downcast_ref)), and its `Display` text, rendered
/// once when the operation failed.
///
/// It dereferences to the text, so `snapshot.error.as_deref() == Some("card declined")` and
/// `error.contains("timeout")` read as they would on a string; equality compares the text.
/// A panic has its message as text and no value. Cloning shares the value (an `Arc`).
///
/// # Examples
///
/// ```
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
///
/// #[derive(Debug)]
/// enum PaymentError {
///     Declined { code: u16 },
/// }
///
/// impl std::fmt::Display for PaymentError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         match self {
///             Self::Declined { code } => write!(f, "card declined ({code})"),
///         }
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let payments = EphemeralWorkCoordinator::new(
///     |_order: u32, _ctx: OperationContext| async { Err(PaymentError::Declined { code: 51 }) },
///     EphemeralOptions::default(),
/// )?;
/// payments.enqueue(7).await?;
/// payments.drain().await?;
///
/// let error = payments.failed()[0].error.clone().expect("it failed");
/// assert_eq!(&*error, "card declined (51)"); // the text
/// assert!(matches!(
///     error.downcast_ref::<PaymentError>(), // the value
///     Some(PaymentError::Declined { code: 51 })
/// ));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct OperationError(Arc<dyn Kept>);

/// The erased error: its text and, unless it came from a panic, its value.
trait Kept: Send + Sync {
    fn text(&self) -> &str;
    fn value(&self) -> Option<&(dyn Any + Send + Sync)>;
}

/// A body's error with its rendered text.
struct Value<E> {
    text: Box<str>,
    value: E,
}

impl<E: Any + Send + Sync> Kept for Value<E> {
    fn text(&self) -> &str {
        &self.text
    }

    fn value(&self) -> Option<&(dyn Any + Send + Sync)> {
        Some(&self.value)
    }
}

/// Text alone: a panic's message, or an error read back from serialized form.
struct Text(Arc<str>);

impl Kept for Text {
    fn text(&self) -> &str {
        &self.0
    }

    fn value(&self) -> Option<&(dyn Any + Send + Sync)> {
        None
    }
}

impl OperationError {
    /// Keeps `error` with its `Display` text (an `OperationError` is kept as it is, not
    /// wrapped again).
    pub fn new<E: fmt::Display + Any + Send + Sync>(error: E) -> Self {
        if let Some(kept) = (&error as &dyn Any).downcast_ref::<Self>() {
            return kept.clone();
        }
        let text = error.to_string().into_boxed_str();
        Self(Arc::new(Value { text, value: error }))
    }

    /// An error that is only text (a panic's message), with no value to downcast.
    pub fn from_message(message: impl Into<Arc<str>>) -> Self {
        Self(Arc::new(Text(message.into())))
    }

    /// The error's text: the `Display` of the body's error, or the panic message.
    #[must_use]
    pub fn message(&self) -> &str {
        self.0.text()
    }

    /// The body's error value, if it is an `E`.
    #[must_use]
    pub fn downcast_ref<E: Any>(&self) -> Option<&E> {
        let value: &dyn Any = self.0.value()?;
        value.downcast_ref()
    }

    /// Whether the body's error value is an `E`.
    #[must_use]
    pub fn is<E: Any>(&self) -> bool {
        self.downcast_ref::<E>().is_some()
    }
}

impl Deref for OperationError {
    type Target = str;

    fn deref(&self) -> &str {
        self.message()
    }
}

impl AsRef<str> for OperationError {
    fn as_ref(&self) -> &str {
        self.message()
    }
}

impl fmt::Display for OperationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl fmt::Debug for OperationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OperationError")
            .field(&self.message())
            .finish()
    }
}

impl std::error::Error for OperationError {}

impl PartialEq for OperationError {
    /// Equal when the texts are.
    fn eq(&self, other: &Self) -> bool {
        self.message() == other.message()
    }
}

impl Eq for OperationError {}

impl PartialEq<str> for OperationError {
    fn eq(&self, other: &str) -> bool {
        self.message() == other
    }
}

impl PartialEq<&str> for OperationError {
    fn eq(&self, other: &&str) -> bool {
        self.message() == *other
    }
}

impl From<&str> for OperationError {
    fn from(message: &str) -> Self {
        Self::from_message(message)
    }
}

impl From<Arc<str>> for OperationError {
    fn from(message: Arc<str>) -> Self {
        Self::from_message(message)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for OperationError {
    /// As its text.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.message())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for OperationError {
    /// From its text (the value does not travel).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <Arc<str> as serde::Deserialize>::deserialize(deserializer)?;
        Ok(Self::from_message(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_value_and_the_text() {
        let error = OperationError::new(std::io::Error::other("disk full"));
        assert_eq!(error.message(), "disk full");
        assert_eq!(
            error
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind),
            Some(std::io::ErrorKind::Other)
        );
        assert!(!error.is::<String>());
    }

    #[test]
    fn an_operation_error_is_not_wrapped_again() {
        let inner = OperationError::new(std::io::Error::other("disk full"));
        let outer = OperationError::new(inner);
        assert!(outer.is::<std::io::Error>());
    }

    #[test]
    fn text_alone_has_no_value() {
        let panic = OperationError::from_message("boom");
        assert_eq!(&*panic, "boom");
        assert!(panic.downcast_ref::<String>().is_none());
        assert_eq!(panic, OperationError::new(String::from("boom")));
    }
}
