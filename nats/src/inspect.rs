//! `ephemeral top` across machines: [`StateTransport`] for [`Nats`].
//!
//! Coordinators and sinks publish their state over NATS exactly as over the bus
//! (`coordinator.publish_state(&nats, "payments")`), and `ephemeral top --nats URL` watches
//! every publisher of the cluster. Polls and frames travel on the prefix's internal subjects
//! (`<prefix>.i._inspect.poll`, `<prefix>.i._inspect.state`), never on message subjects, so
//! `subscribe("*")` sees none of them.
//!
//! NATS cannot say how many subscribers a message reached, so a poll's count is unknown and
//! [`StateWatcher::collect`](ephemeral_bus::inspect::StateWatcher::collect) waits its whole
//! timeout.

use bytes::Bytes;
use ephemeral_bus::inspect::{InspectError, POLL_TOPIC, STATE_TOPIC, StateTransport};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::subject::{self, INTERNAL};
use crate::{Nats, NatsError};

/// The payload of a poll (publishers read nothing from it).
const POLL_PAYLOAD: &[u8] = b"{\"version\":1}";

impl Nats {
    /// The internal subject of `topic`.
    fn internal(&self, topic: &str) -> String {
        subject::subject(&self.inner.prefix, INTERNAL, topic)
    }

    async fn listen_internal(&self, topic: &str) -> Result<async_nats::Subscriber, InspectError> {
        let subscriber = self
            .inner
            .client
            .subscribe(self.internal(topic))
            .await
            .map_err(|e| InspectError::transport(NatsError::subscribe("subscribe", &e)))?;
        // Known to the server before this returns, so the next poll or frame reaches it.
        self.round_trip().await;
        Ok(subscriber)
    }

    async fn send_internal(&self, topic: &str, payload: Bytes) -> Result<(), InspectError> {
        if !self.is_connected() {
            return Err(InspectError::transport(self.inner.state.down(topic)));
        }
        let max = self.max_payload();
        if payload.len() > max {
            return Err(InspectError::transport(NatsError::PayloadTooLarge {
                len: payload.len(),
                max,
            }));
        }
        self.inner
            .client
            .publish(self.internal(topic), payload)
            .await
            .map_err(|e| {
                InspectError::transport(NatsError::Client {
                    op: "publish",
                    message: e.to_string(),
                })
            })
    }
}

impl StateTransport for Nats {
    async fn listen_polls(&self) -> Result<BoxStream<'static, ()>, InspectError> {
        Ok(self.listen_internal(POLL_TOPIC).await?.map(|_| ()).boxed())
    }

    async fn send_state(&self, frame: Vec<u8>) -> Result<Option<usize>, InspectError> {
        self.send_internal(STATE_TOPIC, Bytes::from(frame)).await?;
        Ok(None)
    }

    async fn listen_states(&self) -> Result<BoxStream<'static, Bytes>, InspectError> {
        Ok(self
            .listen_internal(STATE_TOPIC)
            .await?
            .map(|m| m.payload)
            .boxed())
    }

    async fn send_poll(&self) -> Result<Option<usize>, InspectError> {
        self.send_internal(POLL_TOPIC, Bytes::from_static(POLL_PAYLOAD))
            .await?;
        Ok(None)
    }

    fn max_frame(&self) -> Option<usize> {
        Some(self.max_payload())
    }
}
