//! Forwarding matching signals from one sink into another, guarded against loops.

use std::sync::Arc;

use tokio::time::Instant;

use super::listener::Listener;
use super::options::HandlerFailure;
use crate::{SignalBuilder, SignalSink};

impl SignalSink {
    /// Raises every signal matching `pattern` on this sink into `target` too.
    ///
    /// The forwarded copy keeps name, key, operation, payload, headers and the time it had
    /// left to live: its own expiry if it has one, else what this sink's max age leaves it
    /// (on the target, a time to live at or past the target's max age is no expiry of its
    /// own, as for any raise). A held condition ([`hold`](Self::hold)) is forwarded as a
    /// raised signal, an event: on the target it lives what this sink's max age allows from
    /// the moment it was taken, and its release is not forwarded. Removals are not forwarded
    /// either: a copy stays live on the target after this sink retracts or clears the
    /// original, until its own time runs out (a clear's `sink.cleared` is a leaf, so it does
    /// not travel). Leaf signals are never forwarded. Each forwarded signal
    /// remembers the sinks it passed through, so sinks forwarding to each other (in a pair or
    /// a ring) never loop: a signal is not forwarded into a sink it has already been raised
    /// on. Forwarding a sink into itself (or into another handle of the same sink) therefore
    /// does nothing. Dropping the returned [`Listener`] stops forwarding; forwarding holds
    /// `target` weakly, so it also stops when every handle of `target` is gone.
    ///
    /// A copy the target refuses (a payload over its `max_payload`, more headers than its
    /// `max_headers`, a propagation guard) is not lost silently: it is counted in this sink's
    /// [`SinkStats::forward_refused`](crate::SinkStats::forward_refused) and reported to this
    /// sink's error callback ([`SinkOptions::on_error`](crate::SinkOptions::on_error)) like a
    /// failing listener; `raise` on this sink still succeeds.
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
        // Weak: the listener lives in the source's own registry.
        let source = Arc::downgrade(&self.inner);
        let target = Arc::downgrade(&target.inner);
        let pattern_text = pattern.to_owned();
        self.on_signal(pattern, move |signal| {
            // The route lists the sinks a signal was forwarded *out of*; the sink it was
            // raised on joins it only at the first hop, so a self-forward must be caught here.
            if signal.is_leaf() || target_id == source_id {
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
            let (Some(target), Some(source)) = (target.upgrade(), source.upgrade()) else {
                return;
            };
            let mut route: Vec<u64> = visited.to_vec();
            if !route.contains(&source_id) {
                route.push(source_id);
            }
            let mut builder = SignalBuilder::from(signal);
            builder.route = Some(Arc::from(route));
            if builder.expires_in.is_none() {
                // Without its own expiry the signal dies at the source's max age; the copy
                // must not outlive it. The target drops a time to live at or past its own
                // max age, so this never lengthens a life there either.
                let max_age = source.lock().max_age;
                builder.expires_in = Some(signal.remaining(Instant::now(), max_age));
            }
            // Its life ran out on the way: nothing to forward (a zero time to live is refused).
            if builder.expires_in.is_some_and(|ttl| ttl.is_zero()) {
                return;
            }
            // The copy already passed every check of the source sink; a refusal here (e.g. a
            // smaller max_payload on the target) is counted and reported on the source, not
            // propagated into `raise`.
            if let Err(e) = SignalSink::from_inner(target).raise_with(builder) {
                source.count_forward_refused();
                source.report(HandlerFailure {
                    pattern: pattern_text.clone(),
                    signal: signal.name().to_string(),
                    panicked: false,
                    message: format!("forwarding into sink {target_id} refused: {e}"),
                });
            }
        })
    }
}
