//! [`IntakeSink`]: a coordinator's intake as a [`futures::Sink`], so
//! `stream.forward(coordinator.intake_sink())` feeds it with back-pressure.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::future::BoxFuture;

use super::error::EnqueueError;
use super::keyed::EphemeralKeyedWorkCoordinator;
use super::result::EphemeralResultCoordinator;
use super::work::EphemeralWorkCoordinator;
use crate::OperationId;

/// Room reserved for one item, type-erased: accepts the item without waiting.
type Permit<I> = Box<dyn FnOnce(I) -> Result<OperationId, EnqueueError<I>> + Send>;

/// Waits for room and hands back a [`Permit`].
type Reserve<I> =
    Arc<dyn Fn() -> BoxFuture<'static, Result<Permit<I>, EnqueueError<()>>> + Send + Sync>;

/// Why an [`IntakeSink`] did not take an item.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum IntakeSinkError<I> {
    /// The coordinator stopped accepting items (`complete`, `drain` or `cancel`) while the
    /// sink waited for room; no item was taken from the caller.
    #[error(
        "the coordinator no longer accepts items: it was completed, drained or cancelled (by a call, a drain signal, or the shutdown of its runtime); stop sending"
    )]
    Closed,
    /// The item was refused after room was reserved (the coordinator was cancelled
    /// meanwhile); the error gives it back.
    #[error(transparent)]
    Refused(EnqueueError<I>),
    /// [`start_send`](futures::Sink::start_send) without room reserved: `poll_ready` was not
    /// called, or did not return ready, before it (the `Sink` contract asks for it;
    /// `SinkExt::send` and `feed` do it). The item was not accepted and is given back.
    #[error(
        "start_send without room reserved: call poll_ready until it is ready first (SinkExt::send and feed do); the item was not accepted and is given back (IntakeSinkError::into_item)"
    )]
    NotReady(I),
}

impl<I> IntakeSinkError<I> {
    /// The refused item, if the error carries one.
    pub fn into_item(self) -> Option<I> {
        match self {
            Self::Closed => None,
            Self::Refused(e) => Some(e.into_inner()),
            Self::NotReady(item) => Some(item),
        }
    }
}

impl<I> fmt::Debug for IntakeSinkError<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("Closed"),
            Self::Refused(e) => f.debug_tuple("Refused").field(e).finish(),
            Self::NotReady(_) => f.write_str("NotReady(..)"),
        }
    }
}

/// A coordinator's intake as a [`futures::Sink`]: `poll_ready` waits for room among
/// `max_pending` (holding it, as [`reserve`](EphemeralWorkCoordinator::reserve) does), and
/// `start_send` accepts the item into that room without waiting (an item sent without room
/// reserved first is refused with [`IntakeSinkError::NotReady`], and given back).
///
/// Made by `intake_sink()` on the work, result and keyed coordinators (the keyed one takes
/// `(key, item)` pairs). Flushing is immediate: an item is "sent" once the coordinator
/// accepted it (it is then tracked and will end in a terminal state); closing the sink gives
/// back reserved room but does **not** complete the coordinator, since other producers may
/// still feed it — call `complete()` or `drain()` for that. The operation ids are not
/// reported; the operations show in the coordinator's snapshots like any other.
///
/// # Examples
///
/// ```
/// use ephemeral::{EphemeralOptions, EphemeralWorkCoordinator, OperationContext};
/// use futures::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let coordinator = EphemeralWorkCoordinator::new(
///     |_n: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
///     EphemeralOptions::default().max_pending(4),
/// )?;
/// // Back-pressure: the stream is polled only as fast as the coordinator takes items.
/// futures::stream::iter(0..100u32)
///     .map(Ok)
///     .forward(coordinator.intake_sink())
///     .await?;
/// coordinator.drain().await?;
/// assert_eq!(coordinator.stats().completed, 100);
/// # Ok(())
/// # }
/// ```
#[must_use = "a sink does nothing unless items are sent into it"]
pub struct IntakeSink<I> {
    reserve: Reserve<I>,
    reserving: Option<BoxFuture<'static, Result<Permit<I>, EnqueueError<()>>>>,
    permit: Option<Permit<I>>,
}

impl<I: Send + 'static> IntakeSink<I> {
    fn new(reserve: Reserve<I>) -> Self {
        Self {
            reserve,
            reserving: None,
            permit: None,
        }
    }
}

impl<I> Clone for IntakeSink<I> {
    /// Another sink into the same coordinator, holding no room yet.
    fn clone(&self) -> Self {
        Self {
            reserve: self.reserve.clone(),
            reserving: None,
            permit: None,
        }
    }
}

impl<I> fmt::Debug for IntakeSink<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntakeSink")
            .field("ready", &self.permit.is_some())
            .finish_non_exhaustive()
    }
}

// No field is structurally pinned: the futures are boxed.
impl<I> Unpin for IntakeSink<I> {}

impl<I: Send + 'static> futures::Sink<I> for IntakeSink<I> {
    type Error = IntakeSinkError<I>;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.permit.is_some() {
            return Poll::Ready(Ok(()));
        }
        let reserve = self.reserve.clone();
        let reserving = self.reserving.get_or_insert_with(|| reserve());
        let reserved = ready!(reserving.as_mut().poll(cx));
        self.reserving = None;
        match reserved {
            Ok(permit) => {
                self.permit = Some(permit);
                Poll::Ready(Ok(()))
            }
            Err(_) => Poll::Ready(Err(IntakeSinkError::Closed)),
        }
    }

    fn start_send(mut self: Pin<&mut Self>, item: I) -> Result<(), Self::Error> {
        match self.permit.take() {
            Some(permit) => permit(item).map(drop).map_err(IntakeSinkError::Refused),
            // The `Sink` contract requires `poll_ready` first; an item sent without room is
            // given back rather than queued past the bound.
            None => Err(IntakeSinkError::NotReady(item)),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Result<(), Self::Error>> {
        // Reserved room goes back; the coordinator itself stays open.
        self.permit = None;
        self.reserving = None;
        Poll::Ready(Ok(()))
    }
}

impl<T: Send + 'static> EphemeralWorkCoordinator<T> {
    /// The intake as a [`futures::Sink`] of items (see [`IntakeSink`]).
    pub fn intake_sink(&self) -> IntakeSink<T> {
        let coordinator = self.clone();
        IntakeSink::new(Arc::new(move || {
            let coordinator = coordinator.clone();
            Box::pin(async move {
                let permit = coordinator.reserve().await?;
                Ok(Box::new(move |item| permit.send(item)) as Permit<T>)
            })
        }))
    }
}

impl<T: Send + 'static, R: Clone + Send + 'static> EphemeralResultCoordinator<T, R> {
    /// The intake as a [`futures::Sink`] of items (see [`IntakeSink`]); results are read
    /// from the window as usual.
    pub fn intake_sink(&self) -> IntakeSink<T> {
        let coordinator = self.clone();
        IntakeSink::new(Arc::new(move || {
            let coordinator = coordinator.clone();
            Box::pin(async move {
                let permit = coordinator.reserve().await?;
                Ok(Box::new(move |item| permit.send(item)) as Permit<T>)
            })
        }))
    }
}

impl<K, T> EphemeralKeyedWorkCoordinator<K, T>
where
    K: std::hash::Hash + Eq + Clone + fmt::Display + Send + 'static,
    T: Send + 'static,
{
    /// The intake as a [`futures::Sink`] of `(key, item)` pairs (see [`IntakeSink`]).
    pub fn intake_sink(&self) -> IntakeSink<(K, T)> {
        let coordinator = self.clone();
        IntakeSink::new(Arc::new(move || {
            let coordinator = coordinator.clone();
            Box::pin(async move {
                let permit = coordinator.reserve().await?;
                Ok(Box::new(move |(key, item): (K, T)| {
                    let kept = key.clone();
                    permit
                        .send(key, item)
                        .map_err(|e| e.map(|item| (kept, item)))
                }) as Permit<(K, T)>)
            })
        }))
    }
}
