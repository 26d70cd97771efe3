//! Forwarding matching signals from one sink into another, guarded against loops.

use std::sync::Arc;

use super::listener::Listener;
use crate::{SignalBuilder, SignalSink};

impl SignalSink {
    /// Raises every signal matching `pattern` on this sink into `target` too.
    ///
    /// The forwarded copy keeps name, key, operation, payload, headers and the time it had
    /// left to live. Leaf signals are never forwarded. Each forwarded signal remembers the
    /// sinks it passed through, so sinks forwarding to each other (in a pair or a ring) never
    /// loop: a signal is not forwarded into a sink it has already been raised on. Dropping the
    /// returned [`Listener`] stops forwarding; forwarding holds `target` weakly, so it also
    /// stops when every handle of `target` is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::SignalSink;
    ///
    /// let a = SignalSink::default();
    /// let b = SignalSink::default();
    /// let _ab = a.forward_to(&b, "*");
    /// let _ba = b.forward_to(&a, "*");
    /// a.raise("error.db")?;
    /// assert_eq!(a.count("error.db"), 1);
    /// assert_eq!(b.count("error.db"), 1);
    /// # Ok::<(), ephemeral::RaiseError>(())
    /// ```
    pub fn forward_to(&self, target: &SignalSink, pattern: &str) -> Listener {
        let source_id = self.inner.id;
        let target_id = target.inner.id;
        let target = Arc::downgrade(&target.inner);
        self.on_signal(pattern, move |signal| {
            if signal.is_leaf() {
                return;
            }
            let visited = signal
                .rare
                .as_deref()
                .and_then(|r| r.route.as_deref())
                .unwrap_or(&[]);
            if visited.contains(&target_id) {
                return;
            }
            let Some(target) = target.upgrade() else {
                return;
            };
            let mut route: Vec<u64> = visited.to_vec();
            if !route.contains(&source_id) {
                route.push(source_id);
            }
            let mut builder = SignalBuilder::from(signal);
            builder.route = Some(Arc::from(route));
            // The copy already passed every check of the source sink; a refusal here (e.g. a
            // smaller max_payload on the target) is reported, not propagated into `raise`.
            if let Err(e) = SignalSink::from_inner(target).raise_with(builder) {
                tracing::warn!(signal = %signal.name(), error = %e, "forwarding a signal failed");
            }
        })
    }
}
