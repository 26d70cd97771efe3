//! `Hold`: a condition that stays live until its guard is dropped or released.

use std::fmt;
use std::sync::Arc;

use super::inner::Inner;
use crate::Signal;

/// A held condition such as `circuit.open` or `backpressure.db`.
///
/// A raised signal is an event: it expires with the window. A condition that holds until
/// something changes is a `Hold`: its signal stays live, exempt from age and capacity
/// eviction, until the guard is dropped or [`released`](Hold::release). Holds are counted
/// against the sink's separate [`max_holds`](crate::SinkOptions::max_holds) bound.
/// [`SignalSink::watch`](crate::SignalSink::watch) reports both the hold and its release.
///
/// A hold keeps its sink alive, like a [`SignalSink`](crate::SignalSink) handle: the condition
/// is part of the sink's contents until it is released.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral::SignalSink;
///
/// let sink = SignalSink::default();
/// let open = sink.hold("circuit.open")?;
/// assert!(sink.has_signal("circuit.*"));
///
/// open.release();
/// assert!(!sink.has_signal("circuit.*"));
/// # Ok(())
/// # }
/// ```
#[must_use = "a hold is released as soon as it is dropped"]
pub struct Hold {
    pub(crate) inner: Arc<Inner>,
    pub(crate) signal: Signal,
    pub(crate) released: bool,
}

impl Hold {
    /// The held signal.
    #[must_use]
    pub fn signal(&self) -> &Signal {
        &self.signal
    }

    /// Releases the condition now (dropping the guard does the same).
    pub fn release(mut self) {
        self.release_inner();
    }

    fn release_inner(&mut self) {
        if !self.released {
            self.released = true;
            self.inner.release(self.signal.sequence);
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release_inner();
    }
}

impl fmt::Debug for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hold")
            .field("signal", &self.signal)
            .field("released", &self.released)
            .finish()
    }
}
