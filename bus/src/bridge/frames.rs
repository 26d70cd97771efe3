//! How bridges carry signals on the bus: the classifier and builder other tools share.

use std::time::Duration;

use ephemeral::HeaderValue;

use super::mirrors::next_refresh;
use super::{
    BRIDGE_ID_HEADER, HOLD_HEADER, HOPS_HEADER, KEY_HEADER, ORIGIN_HEADER, REFRESH_HEADER,
    RELEASE_HEADER, SEQ_HEADER, VIA_HEADER,
};
use crate::{BusError, Message, Outgoing};

/// The headers bridges use for their own bookkeeping (origin, hops, route, sequence, hold
/// lease, refresh number and release, key, the publishing bridge); a tool showing a
/// message's user headers leaves these out.
pub const BRIDGE_HEADERS: [&str; 9] = [
    BRIDGE_ID_HEADER,
    HOLD_HEADER,
    HOPS_HEADER,
    KEY_HEADER,
    ORIGIN_HEADER,
    REFRESH_HEADER,
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
/// // What `ephemeral hold` publishes every third of its lease (a fresh refresh number each
/// // time):
/// let refresh = Bridged::hold(1, Duration::from_secs(1)).outgoing("circuit.open")?;
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
    /// each (a hold lapses when no new refresh came for a whole lease).
    Hold {
        /// The hold's sequence number in its origin sink.
        seq: u64,
        /// How long this refresh keeps the hold.
        lease: Duration,
        /// The holder's refresh number, increasing with every refresh it sends (forwarders
        /// pass it on unchanged): only a newer one extends a mirror, so copies coming
        /// around a loop keep nothing alive. `None` (a sender without numbers) counts as
        /// new every time.
        refresh: Option<u64>,
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
    /// A refresh of the hold `seq` for `lease`, with this process's next refresh number:
    /// what a holder sends every third of its lease.
    #[must_use]
    pub fn hold(seq: u64, lease: Duration) -> Self {
        Bridged::Hold {
            seq,
            lease,
            refresh: Some(next_refresh()),
        }
    }

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
                refresh: int(message, REFRESH_HEADER),
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
        Ok(self.stamp(Outgoing::new(topic)?))
    }

    /// Adds the headers that make `out` stand for this.
    pub(crate) fn stamp(self, out: Outgoing) -> Outgoing {
        match self {
            Bridged::Signal { seq } => out.header(SEQ_HEADER, seq as i64),
            Bridged::Hold {
                seq,
                lease,
                refresh,
            } => {
                let out = out.header(SEQ_HEADER, seq as i64).header(
                    HOLD_HEADER,
                    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).max(1),
                );
                match refresh {
                    // The u64 values travel as the bits of an i64 header.
                    Some(n) => out.header(REFRESH_HEADER, n as i64),
                    None => out,
                }
            }
            Bridged::Release { seq } => out.header(RELEASE_HEADER, seq as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of(out: Outgoing) -> Message {
        let out = out.into_parts();
        Message::new(out.topic, Vec::new())
            .with_headers(out.headers.into())
            .with_id(2, 1)
    }

    #[test]
    fn what_is_built_is_classified_back() {
        for bridged in [
            Bridged::Signal { seq: 3 },
            Bridged::Hold {
                seq: u64::MAX,
                lease: Duration::from_millis(1500),
                refresh: Some(u64::MAX - 1),
            },
            Bridged::Hold {
                seq: 4,
                lease: Duration::from_millis(1),
                refresh: None,
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
