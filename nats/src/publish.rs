//! `publish` and `publish_with`.

use std::time::SystemTime;

use async_nats::client::PublishErrorKind;

use crate::message::PayloadBytes;
use crate::subject::{self, MESSAGES};
use crate::{Nats, NatsError, Outgoing, headers};

impl Nats {
    /// Publishes `payload` on `topic` to every subscriber whose pattern matches, on every
    /// machine connected to the cluster (this handle included). At most once: NATS keeps
    /// nothing for subscribers that are not there.
    ///
    /// # Errors
    ///
    /// [`NatsError::Name`] for a bad topic, [`NatsError::PayloadTooLarge`] past the server's
    /// `max_payload` (checked before sending), [`NatsError::Disconnected`] while the
    /// connection is down (nothing was sent), [`NatsError::Closed`] once the client is closed.
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<PayloadBytes>,
    ) -> Result<(), NatsError> {
        self.publish_with(Outgoing::new(topic)?.payload(payload.into()))
            .await
    }

    /// Publishes a message with headers and a time to live.
    ///
    /// The time to live travels as the remaining milliseconds (clocks need not agree);
    /// a subscriber counts it from arrival and never delivers the message after it ran out.
    ///
    /// # Errors
    ///
    /// As [`publish`](Self::publish).
    #[tracing::instrument(level = "debug", name = "nats.publish", skip_all, fields(topic = tracing::field::Empty, bytes = tracing::field::Empty))]
    pub async fn publish_with(&self, out: Outgoing) -> Result<(), NatsError> {
        let inner = &self.inner;
        let out = out.into_parts();
        crate::request::record_sizes(&out);
        let mut map = headers::encode(&out, SystemTime::now());
        let len = out.payload.len() + headers::wire_len(&map) + headers::PUB_MAX_LEN;
        let max = inner.client.max_payload();
        if len > max {
            return Err(NatsError::PayloadTooLarge { len, max });
        }
        if !inner.state.is_connected() {
            return Err(inner.state.down(&out.topic));
        }
        let subject = subject::subject(&inner.prefix, MESSAGES, &out.topic);
        // Held until the message is queued in the client, so messages of one topic are
        // queued in the order of their numbers (concurrent publishes through clones of this
        // handle would otherwise overtake each other and look like a loss).
        let mut numbering = inner.numbering.lock().await;
        let (publisher, n) = numbering.next(&out.topic);
        headers::number(&mut map, publisher, n);
        let sent = inner
            .client
            .publish_with_headers(subject, map, out.payload)
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => NatsError::PayloadTooLarge {
                    len,
                    max: inner.client.max_payload(),
                },
                PublishErrorKind::Send => NatsError::Closed,
                _ => NatsError::Client {
                    op: "publish",
                    message: e.to_string(),
                },
            });
        drop(numbering);
        sent
    }
}
