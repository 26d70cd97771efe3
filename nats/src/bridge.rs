//! The sink bridge across machines: [`Nats`] as a [`Link`], and [`Nats::bridge`].
//!
//! The bridge is the bus's own ([`ephemeral_bus::Bridge`]), so headers, origin and hop
//! count, de-duplication, holds as leases and loop prevention are one code path on one
//! machine and across many, and a topology mixing buses and NATS never loops. What NATS
//! adds is the medium: core NATS pub/sub (at most once), each handle numbering what it
//! publishes per topic so that a loss shows up as [`Lagged`](crate::Lagged) at the receiver
//! (counted in [`Bridge::lagged`]), and a longer default hold lease (3 s): a network has
//! longer hiccups than a machine.

use std::time::Duration;

use ephemeral::{Name, Pattern, SignalSink};
use ephemeral_bus::link::{Link, via_of};
use ephemeral_bus::{Bridge, BridgeOptions, Outgoing};

use crate::connection::{CONNECTED_SIGNAL, DISCONNECTED_SIGNAL, OFFLINE_SIGNAL};
use crate::{Nats, NatsError, Subscription};

/// How long a hold mirrored over NATS lives without a refresh, unless
/// [`BridgeOptions::hold_lease`] says otherwise: holders refresh every second, and a
/// mirror lapses 2 to 4 s after its holder dies or the network between them breaks.
pub const DEFAULT_HOLD_LEASE: Duration = Duration::from_secs(3);

impl Link for Nats {
    type Error = NatsError;
    type Subscription = Subscription;

    /// The cluster as this handle reaches it (its URL) and the subject prefix: handles
    /// with the same URL and prefix carry the same traffic.
    fn via(&self) -> u64 {
        via_of(("nats", &*self.inner.url, &*self.inner.prefix))
    }

    fn default_hold_lease(&self) -> Duration {
        DEFAULT_HOLD_LEASE
    }

    /// The connection signals ([`Nats::connection_signals`]) are about this process's
    /// connection: `nats.offline` here says nothing about another machine's.
    fn is_local_signal(&self, name: &Name) -> bool {
        matches!(
            name.as_str(),
            CONNECTED_SIGNAL | DISCONNECTED_SIGNAL | OFFLINE_SIGNAL
        )
    }

    async fn publish(&self, out: Outgoing) -> Result<(), NatsError> {
        self.publish_with(out).await
    }

    async fn subscribe(&self, pattern: &Pattern) -> Result<Subscription, NatsError> {
        Nats::subscribe(self, pattern.as_str()).await
    }
}

impl Nats {
    /// Joins `sink` to every sink bridged on this NATS cluster (with the same prefix) for
    /// the signals matching `pattern`, both ways: local signals are published, remote ones
    /// raised locally. See [`Bridge`] for the rules; in short:
    ///
    /// * a signal keeps its key, payload, typed headers and *remaining* time to live;
    /// * a retract (or `clear`) is local: the copies elsewhere live out their time to
    ///   live; hold a condition that can end early (its release crosses at once);
    /// * a hold is mirrored as a lease (3 s by default, refreshed every second): it ends
    ///   at once when its holder releases it, and 2 to 4 s after its holder dies or the
    ///   network breaks — then it comes back with the next refresh once the network does;
    /// * losses are never silent: a publish while disconnected counts in
    ///   [`Bridge::failed`], a message lost on the way (a reconnect, a slow consumer) in
    ///   [`Bridge::lagged`] at the receiver;
    /// * any topology of buses and NATS delivers a signal once per sink, and never loops;
    /// * the connection signals (`nats.connected`, `nats.disconnected`, `nats.offline`)
    ///   stay local.
    ///
    /// Returns once the subscription is known to the server.
    ///
    /// # Errors
    ///
    /// [`NatsError::EmptyPattern`] for a pattern that matches no name, and the errors of
    /// [`subscribe`](Self::subscribe).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let server = ephemeral_nats::testing::NatsServer::start().await;
    /// use std::time::Duration;
    /// use ephemeral::SignalSink;
    /// use ephemeral_nats::Nats;
    ///
    /// // Two services, as if on two machines.
    /// let (here, there) = (SignalSink::default(), SignalSink::default());
    /// let _a = Nats::connect(&server.url()).await?.bridge(&here, "circuit.*").await?;
    /// let _b = Nats::connect(&server.url()).await?.bridge(&there, "circuit.*").await?;
    ///
    /// let open = here.hold("circuit.open")?;
    /// while !there.has_signal("circuit.open") {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// drop(open); // released here: released there at once
    /// while there.has_signal("circuit.open") {
    ///     tokio::time::sleep(Duration::from_millis(5)).await;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn bridge(&self, sink: &SignalSink, pattern: &str) -> Result<Bridge, NatsError> {
        self.bridge_with(sink, pattern, BridgeOptions::default())
            .await
    }

    /// [`bridge`](Self::bridge) with options: [`BridgeOptions::max_hops`] (8) and
    /// [`BridgeOptions::hold_lease`] ([`DEFAULT_HOLD_LEASE`], 3 s).
    ///
    /// # Errors
    ///
    /// As [`bridge`](Self::bridge).
    pub async fn bridge_with(
        &self,
        sink: &SignalSink,
        pattern: &str,
        options: BridgeOptions,
    ) -> Result<Bridge, NatsError> {
        Bridge::start(self, sink, pattern, options).await
    }
}
