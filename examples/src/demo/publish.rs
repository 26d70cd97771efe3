//! `--bus NAME`: the demo's coordinators and sink publish their live state on a bus, so
//! `ephemeral top --bus NAME` in another terminal shows them.

use ephemeral::{EphemeralKeyedWorkCoordinator, EphemeralWorkCoordinator, SignalSink};
use ephemeral_bus::Bus;
use ephemeral_bus::inspect::{PublishOptions, PublishState, StatePublisher};

use super::{Customer, DemoError, Order};

/// The publishers; dropping this stops them (and leaves the bus).
#[derive(Debug)]
pub(crate) struct Published {
    _publishers: Vec<StatePublisher>,
    _bus: Bus,
}

/// Publishes the three coordinators (each with the pattern it defers on, so the view shows
/// what holds it back) and the shared sink (as `signals`).
pub(crate) async fn publish(
    bus: &str,
    sink: &SignalSink,
    intake: &EphemeralWorkCoordinator<Order>,
    payments: &EphemeralKeyedWorkCoordinator<Customer, Order>,
    notifications: &EphemeralWorkCoordinator<u64>,
) -> Result<Published, DemoError> {
    let bus = Bus::open(bus).await?;
    let defer = |pattern| PublishOptions::default().deferred_by(pattern);
    let publishers = vec![
        intake
            .publish_state_with(&bus, "intake", defer("backpressure.*"))
            .await?,
        payments
            .publish_state_with(&bus, "payments", defer("circuit.open"))
            .await?,
        notifications.publish_state(&bus, "notifications").await?,
        sink.publish_state(&bus, "signals").await?,
    ];
    Ok(Published {
        _publishers: publishers,
        _bus: bus,
    })
}
