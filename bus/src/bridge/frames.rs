//! How bridges carry signals on the bus: the classifier and builder other tools share.

use std::time::Duration;

use ephemeral::HeaderValue;

use super::{
    HOLD_HEADER, HOPS_HEADER, KEY_HEADER, ORIGIN_HEADER, RELEASE_HEADER, SEQ_HEADER, VIA_HEADER,
};
use crate::{BusError, Message, Outgoing};

/// The headers bridges use for their own bookkeeping (origin, hops, route, sequence, hold
/// lease and release, key); a tool showing a message's user headers leaves these out.
pub const BRIDGE_HEADERS: [&str; 7] = [
    HOLD_HEADER,
    HOPS_HEADER,
    KEY_HEADER,
    ORIGIN_HEADER,
    RELEASE_HEADER,
    SEQ_HEADER,
    VIA_HEADER,
];

/// What a bridged message stands for in a signal sink, as bridges publish it (see
/// [`Bridge`](crate::Bridge)).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_bus::Bridged;
///
/// // What `ephemeral hold` publishes every third of its lease:
/// let refresh = Bridged::Hold { seq: 1, lease: Duration::from_secs(1) }.outgoing("circuit.open")?;
/// # let _ = refresh;
/// # Ok::<(), ephemeral_bus::BusError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Bridged {
    /// A raised signal: an event that lives for the message's time to live.
    Signal {
        /// The signal's sequence number in its origin sink.
        seq: u64,
    },
    /// A hold's refresh: the condition stays live while refreshes come, for `lease` after
    /// each (a hold lapses when no refresh came for a whole lease).
    Hold {
        /// The hold's sequence number in its origin sink.
        seq: u64,
        /// How long this refresh keeps the hold.
        lease: Duration,
    },
    /// A hold's release by its holder.
    Release {
        /// The released hold's sequence number in its origin sink.
        seq: u64,
    },
}

fn int(message: &Message, key: &str) -> Option<u64> {
    match message.header(key) {
        // The u64 values travel as the bits of an i64 header.
        Some(HeaderValue::Int(i)) => Some(*i as u64),
        _ => None,
    }
}

impl Bridged {
    /// What `message` stands for, if a bridge (or a tool speaking as one) published it.
    /// Together with the message's origin, the sequence identifies a hold across refreshes.
    #[must_use]
    pub fn of(message: &Message) -> Option<Self> {
        if let Some(seq) = int(message, RELEASE_HEADER) {
            return Some(Bridged::Release { seq });
        }
        let seq = int(message, SEQ_HEADER)?;
        match int(message, HOLD_HEADER) {
            Some(lease_ms) => Some(Bridged::Hold {
                seq,
                lease: Duration::from_millis(lease_ms.max(1)),
            }),
            None => Some(Bridged::Signal { seq }),
        }
    }

    /// The message a bridge publishes for this on `topic` (the signal name); add the key
    /// ([`KEY_HEADER`]), payload, headers and, for a signal, a time to live.
    ///
    /// # Errors
    ///
    /// [`BusError::Name`] when `topic` is not a valid signal name.
    pub fn outgoing(self, topic: &str) -> Result<Outgoing, BusError> {
        let out = Outgoing::new(topic)?;
        Ok(match self {
            Bridged::Signal { seq } => out.header(SEQ_HEADER, seq as i64),
            Bridged::Hold { seq, lease } => out.header(SEQ_HEADER, seq as i64).header(
                HOLD_HEADER,
                i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1),
            ),
            Bridged::Release { seq } => out.header(RELEASE_HEADER, seq as i64),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;

    fn message_of(out: Outgoing) -> Message {
        Message {
            route: None,
            topic: out.topic,
            payload: Arc::from(&[][..]),
            headers: out.headers.into(),
            id: 1,
            origin: 2,
            hops: 0,
            timestamp: SystemTime::now(),
            ttl: None,
        }
    }

    #[test]
    fn what_is_built_is_classified_back() {
        for bridged in [
            Bridged::Signal { seq: 3 },
            Bridged::Hold {
                seq: u64::MAX,
                lease: Duration::from_millis(1500),
            },
            Bridged::Release { seq: 9 },
        ] {
            let message = message_of(bridged.outgoing("circuit.open").unwrap());
            assert_eq!(Bridged::of(&message), Some(bridged));
            assert!(
                message
                    .headers()
                    .iter()
                    .all(|(k, _)| BRIDGE_HEADERS.contains(&&**k))
            );
        }
        let plain = message_of(Outgoing::new("orders.created").unwrap().header("x", 1));
        assert_eq!(Bridged::of(&plain), None);
    }
}
