//! [`PublishState`]: `publish_state` on every coordinator type and on the signal sink.

use std::future::Future;

use ephemeral::{
    CoordinatorStats, EphemeralKeyedWorkCoordinator, EphemeralResultCoordinator,
    EphemeralWorkCoordinator, OperationSnapshot, PriorityWorkCoordinator, SignalSink,
};

use super::coordinator::{CoordinatorSampler, CoordinatorView};
use super::publisher::{self, PublishOptions, StatePublisher};
use super::sink::SinkSampler;
use super::{InspectError, StateTransport};

/// Publishes live state for `ephemeral top` and other watchers: implemented for the four
/// coordinator types and for [`SignalSink`].
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::convert::Infallible;
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
/// use ephemeral_bus::Bus;
/// use ephemeral_bus::inspect::{PublishState, StateWatcher};
///
/// let bus = Bus::open("doc-publish-state").await?;
/// let payments = EphemeralWorkCoordinator::new(
///     |_order: u32, _ctx: OperationContext| async { Ok::<_, Infallible>(()) },
///     EphemeralOptions::default(),
/// )?;
/// // Costs nothing until someone watches; stops when `_top` is dropped.
/// let _top = payments.publish_state(&bus, "payments").await?;
/// payments.enqueue(1).await?;
/// payments.drain().await?;
///
/// // What `ephemeral top --once` does: poll once and gather the answers.
/// let mut watcher = StateWatcher::new(&bus).await?;
/// let frames = watcher.collect(std::time::Duration::from_secs(5)).await?;
/// let state = frames[0].coordinator().unwrap();
/// assert_eq!((frames[0].publisher.name.as_str(), state.counts.completed), ("payments", 1));
/// # Ok(())
/// # }
/// ```
pub trait PublishState {
    /// Publishes this state under `name` with the default [`PublishOptions`] (at most one
    /// frame every 250 ms, and only while someone watches).
    ///
    /// # Errors
    ///
    /// [`InspectError::Name`] for a bad name, [`InspectError::NoRuntime`] outside a tokio
    /// runtime, and the transport's errors when it cannot listen for polls.
    fn publish_state<T: StateTransport>(
        &self,
        transport: &T,
        name: &str,
    ) -> impl Future<Output = Result<StatePublisher, InspectError>> + Send {
        self.publish_state_with(transport, name, PublishOptions::default())
    }

    /// [`publish_state`](Self::publish_state) with explicit options.
    ///
    /// # Errors
    ///
    /// As [`publish_state`](Self::publish_state), and [`InspectError::ZeroInterval`].
    fn publish_state_with<T: StateTransport>(
        &self,
        transport: &T,
        name: &str,
        options: PublishOptions,
    ) -> impl Future<Output = Result<StatePublisher, InspectError>> + Send;
}

impl PublishState for SignalSink {
    fn publish_state_with<T: StateTransport>(
        &self,
        transport: &T,
        name: &str,
        options: PublishOptions,
    ) -> impl Future<Output = Result<StatePublisher, InspectError>> + Send {
        publisher::start(transport, name, options, SinkSampler::new(self.clone()))
    }
}

/// Implements [`CoordinatorView`] and [`PublishState`] for one coordinator type through its
/// public methods.
macro_rules! coordinator {
    ($type_name:literal, $ty:ty, [$($bounds:tt)*]) => {
        impl<$($bounds)*> CoordinatorView for $ty {
            const TYPE: &'static str = $type_name;
            fn stats(&self) -> CoordinatorStats {
                <$ty>::stats(self)
            }
            fn snapshot(&self) -> Vec<OperationSnapshot> {
                <$ty>::snapshot(self)
            }
            fn sink(&self) -> &SignalSink {
                <$ty>::sink(self)
            }
            fn id(&self) -> &str {
                <$ty>::id(self)
            }
            fn is_done(&self) -> bool {
                <$ty>::is_done(self)
            }
        }

        impl<$($bounds)*> PublishState for $ty {
            fn publish_state_with<Tr: StateTransport>(
                &self,
                transport: &Tr,
                name: &str,
                options: PublishOptions,
            ) -> impl Future<Output = Result<StatePublisher, InspectError>> + Send {
                publisher::start(transport, name, options, CoordinatorSampler::new(self.clone()))
            }
        }
    };
}

coordinator!("work", EphemeralWorkCoordinator<T>, [T: Send + 'static]);
coordinator!(
    "keyed",
    EphemeralKeyedWorkCoordinator<K, T>,
    [K: std::hash::Hash + Eq + Clone + std::fmt::Display + Send + 'static, T: Send + 'static]
);
coordinator!(
    "result",
    EphemeralResultCoordinator<T, R>,
    [T: Send + 'static, R: Clone + Send + 'static]
);
coordinator!("priority", PriorityWorkCoordinator<T>, [T: Send + 'static]);
