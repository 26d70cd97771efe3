//! Intake: `enqueue`, `try_enqueue`, reserved room, `enqueue_many` and stream intake. Each
//! takes room among `max_pending` (the `room` semaphore) before the item is accepted.

use std::sync::Arc;

use tokio::sync::TryAcquireError;
use tokio::time::Instant;

use super::super::error::{EnqueueError, EnqueueManyError};
use super::super::key_label::KeyLabel;
use super::super::queue::{Job, Queue};
use super::inner::Inner;
use super::lifecycle::Engine;
use super::window::Reply;
use super::worker::operation_span;
use crate::OperationId;

/// An item ready for the queue: the item, its route and its key as kept (a [`KeyLabel`]).
pub(crate) type Routed<T, Route> = (T, Route, Option<KeyLabel>);

/// Enqueues `items` one by one with `one`; at the first refusal, gives back that item and
/// every one after it.
pub(crate) async fn enqueue_each<U, F, Fut>(
    items: impl IntoIterator<Item = U>,
    mut one: F,
) -> Result<Vec<OperationId>, EnqueueManyError<U>>
where
    F: FnMut(U) -> Fut,
    Fut: Future<Output = Result<OperationId, EnqueueError<U>>>,
{
    let mut ids = Vec::new();
    let mut items = items.into_iter();
    while let Some(item) = items.next() {
        match one(item).await {
            Ok(id) => ids.push(id),
            Err(refused) => return Err(EnqueueManyError::new(ids, refused, items)),
        }
    }
    Ok(ids)
}

/// What [`Inner::try_take_room`] found.
pub(crate) enum Room {
    /// Room for one item was taken (a forgotten permit).
    Taken,
    /// None free now.
    Full,
    /// The room is closed: intake is over.
    Closed,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Inner<T, R, Q> {
    /// Takes room for one item among `max_pending` if there is some now, and keeps it (a
    /// forgotten permit, given back when the item leaves the queue): one compare-and-swap.
    pub(crate) fn try_take_room(&self) -> Room {
        match self.room.try_acquire() {
            Ok(permit) => {
                permit.forget();
                Room::Taken
            }
            Err(TryAcquireError::NoPermits) => Room::Full,
            Err(TryAcquireError::Closed) => Room::Closed,
        }
    }

    /// Waits for room for one item and keeps it (as [`try_take_room`](Self::try_take_room));
    /// `false` once the room is closed.
    pub(crate) async fn take_room(&self) -> bool {
        // Without waiting first: `acquire` builds a waiter.
        match self.try_take_room() {
            Room::Taken => true,
            Room::Closed => false,
            Room::Full => self
                .room
                .acquire()
                .await
                .map(tokio::sync::SemaphorePermit::forget)
                .is_ok(),
        }
    }

    /// [`take_room`](Self::take_room) for a caller other than an intake stream: `false` as
    /// soon as the coordinator stops taking items, also while running intake streams keep
    /// the room open (they may still feed after `complete()`; nobody else may).
    pub(crate) async fn take_room_unless_closed(&self) -> bool {
        match self.try_take_room() {
            Room::Taken => true,
            Room::Closed => false,
            Room::Full => {
                // Registered before `closed` is read, so a close in between still wakes it.
                let closing = self.closing.notified();
                let mut closing = std::pin::pin!(closing);
                closing.as_mut().enable();
                if self.is_closed() {
                    return false;
                }
                tokio::select! {
                    biased;
                    () = closing => false,
                    permit = self.room.acquire() => {
                        permit.map(tokio::sync::SemaphorePermit::forget).is_ok()
                    }
                }
            }
        }
    }

    /// Accepts an item whose room (a forgotten `room` permit) the caller holds.
    pub(crate) fn accept(
        self: &Arc<Self>,
        item: T,
        route: Q::Route,
        key: Option<KeyLabel>,
        from_intake: bool,
    ) -> Result<OperationId, EnqueueError<T>> {
        self.accept_replying(item, route, key, from_intake, None)
    }

    /// [`accept`](Self::accept), registering `reply` for the operation's outcome under the
    /// same lock, so it is answered however soon the operation finishes.
    pub(crate) fn accept_replying(
        self: &Arc<Self>,
        item: T,
        route: Q::Route,
        key: Option<KeyLabel>,
        from_intake: bool,
        reply: Option<Reply<R>>,
    ) -> Result<OperationId, EnqueueError<T>> {
        let id = OperationId::next();
        let now = Instant::now();
        let mut job = Job::new(id, item, route, key);
        // Opened here, outside the lock, only when a subscriber wants `debug` spans (the
        // check is one atomic load on every enqueue): the operation's span follows from the
        // span that enqueued it, and its idle time includes the wait in the queue.
        if tracing::level_enabled!(tracing::Level::DEBUG) {
            let span = operation_span(&self.rules.name, id, job.key.as_ref());
            span.follows_from(tracing::Span::current());
            job.span = Some(Box::new(span));
        }
        // Every worker busy: left in the inbox, accepted without the lock (the next section
        // takes it in). A reply must be registered under the lock, so that call takes it.
        if reply.is_none() && self.lockfree() {
            match self.inbox.leave((job, now)) {
                Ok(true) => return Ok(id),
                Ok(false) => {
                    // A worker began to wait meanwhile and may not have seen it: a section
                    // takes it in and hands it over.
                    self.update(|_, _| ());
                    return Ok(id);
                }
                Err((back, _)) => job = back,
            }
        }
        let accepted = {
            let mut core = self.lock();
            let accepted = core.accept(job, reply, &self.ctx.sink, now, from_intake);
            // This item may be the backlog's first with every worker busy: the next ones
            // need not take the lock. (Accepting never shuts the inbox: it only wakes or
            // spawns a worker when one waits or is missing, and then it was shut already.)
            if self.lockfree() && core.inbox_may_open() {
                let _shut_with_items = self.inbox.set_open(true);
            }
            accepted
        };
        match accepted {
            Ok(accepted) => {
                self.accepted(accepted);
                Ok(id)
            }
            Err(refused) => {
                self.room.add_permits(1);
                Err(refused)
            }
        }
    }
}

/// Room reserved for one item; given back when dropped unused.
pub(crate) struct Reserved<T: Send + 'static, R: Send + 'static, Q: Queue<T>> {
    inner: Option<Arc<Inner<T, R, Q>>>,
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Reserved<T, R, Q> {
    /// Whether the coordinator stopped taking items since the room was reserved.
    pub(crate) fn is_closed(&self) -> bool {
        self.inner.as_ref().is_none_or(|inner| inner.is_closed())
    }

    pub(crate) fn send(
        mut self,
        item: T,
        route: Q::Route,
        key: Option<KeyLabel>,
    ) -> Result<OperationId, EnqueueError<T>> {
        match self.inner.take() {
            Some(inner) => inner.accept(item, route, key, false),
            None => Err(EnqueueError::Closed(item)),
        }
    }

    /// [`send`](Self::send), with `reply` called at the operation's finish.
    pub(crate) fn send_replying(
        mut self,
        item: T,
        route: Q::Route,
        key: Option<KeyLabel>,
        reply: Reply<R>,
    ) -> Result<OperationId, EnqueueError<T>> {
        match self.inner.take() {
            Some(inner) => inner.accept_replying(item, route, key, false, Some(reply)),
            None => Err(EnqueueError::Closed(item)),
        }
    }
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for Reserved<T, R, Q> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            inner.room.add_permits(1);
        }
    }
}

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Engine<T, R, Q> {
    pub(crate) async fn enqueue(
        &self,
        item: T,
        route: Q::Route,
        key: Option<KeyLabel>,
    ) -> Result<OperationId, EnqueueError<T>> {
        let inner = self.inner();
        // No lock here: a closed coordinator has closed `room` (or, while intakes run, a
        // wait for room ends at the close, and `accept` refuses under the lock and gives the
        // room back).
        if !inner.take_room_unless_closed().await {
            return Err(EnqueueError::Closed(item));
        }
        inner.accept(item, route, key, false)
    }

    pub(crate) fn try_enqueue(
        &self,
        item: T,
        route: Q::Route,
        key: Option<KeyLabel>,
    ) -> Result<OperationId, EnqueueError<T>> {
        let inner = self.inner();
        match inner.try_take_room() {
            Room::Taken => inner.accept(item, route, key, false),
            Room::Full if !inner.is_closed() => Err(EnqueueError::Full(item)),
            Room::Full | Room::Closed => Err(EnqueueError::Closed(item)),
        }
    }

    /// Room now, if there is any (`Ok(None)`: none free, wait with [`reserve`](Self::reserve));
    /// held until the permit is used or dropped.
    #[cfg(feature = "tower")]
    pub(crate) fn try_reserve(&self) -> Result<Option<Reserved<T, R, Q>>, EnqueueError<()>> {
        let inner = self.inner();
        // As `reserve`: a closed coordinator reserves nothing, even while its room is open.
        if inner.is_closed() {
            return Err(EnqueueError::Closed(()));
        }
        match inner.try_take_room() {
            Room::Taken => Ok(Some(Reserved {
                inner: Some(inner.clone()),
            })),
            Room::Full => Ok(None),
            Room::Closed => Err(EnqueueError::Closed(())),
        }
    }

    /// Waits for room; the room is held until the permit is used or dropped.
    pub(crate) async fn reserve(&self) -> Result<Reserved<T, R, Q>, EnqueueError<()>> {
        let inner = self.inner();
        if inner.is_closed() {
            return Err(EnqueueError::Closed(()));
        }
        if !inner.take_room_unless_closed().await {
            return Err(EnqueueError::Closed(()));
        }
        Ok(Reserved {
            inner: Some(inner.clone()),
        })
    }

    /// Feeds a stream into the coordinator on a task; `drain` waits for it. `split` turns a
    /// stream item into the item, its route and its key label, or refuses it with a
    /// message that stops the intake (surfaced by `drain`).
    pub(crate) fn intake<S, U, E>(
        &self,
        stream: S,
        split: impl Fn(U) -> Result<Routed<T, Q::Route>, Arc<str>> + Send + 'static,
    ) where
        S: futures::Stream<Item = Result<U, E>> + Send + 'static,
        U: Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let inner = self.inner().clone();
        if !inner.update(|core, _| core.start_intake()) {
            return;
        }
        let runtime = inner.runtime.clone();
        // Ends the intake however the task ends: a panic below, or the task dropped with its
        // runtime, also before its first poll when that runtime is gone already (`drain`
        // would otherwise wait for good for an intake that is gone).
        let ends = EndIntake(inner.clone(), false);
        runtime.spawn(async move {
            use futures::FutureExt;
            let mut ends = ends;
            ends.1 = true;
            let failed = |message: Arc<str>| inner.update(|core, _| core.intake_failed(message));
            // The stream, its error's `Display` and the split are the caller's code: a panic
            // in them stops the intake as a stream error does, and `drain` says so.
            let feed = std::panic::AssertUnwindSafe(feed(&inner, stream, split, failed));
            if let Err(panic) = feed.catch_unwind().await {
                let message = super::body::panic_message(&*panic);
                failed(Arc::from(format!("the intake stream panicked: {message}")));
            }
        });
    }
}

/// Ends its coordinator's intake when dropped (see [`Engine::intake`]); the flag says
/// whether its task ever ran. One dropped before that (its runtime was gone when it was
/// spawned) took no item: `drain` says so, rather than the stream's items vanishing.
struct EndIntake<T: Send + 'static, R: Send + 'static, Q: Queue<T>>(Arc<Inner<T, R, Q>>, bool);

impl<T: Send + 'static, R: Send + 'static, Q: Queue<T>> Drop for EndIntake<T, R, Q> {
    fn drop(&mut self) {
        let ran = self.1;
        self.0.update(|core, fx| {
            if !ran {
                core.intake_failed(Arc::from(
                    "the coordinator's runtime is gone, so the intake stream was never polled: use the coordinator inside the runtime that created it",
                ));
            }
            core.end_intake(fx);
        });
    }
}

/// Feeds `stream` into the coordinator until it ends, fails, or the coordinator stops
/// taking items (see [`Engine::intake`]).
async fn feed<T, R, Q, S, U, E>(
    inner: &Arc<Inner<T, R, Q>>,
    stream: S,
    split: impl Fn(U) -> Result<Routed<T, Q::Route>, Arc<str>>,
    failed: impl Fn(Arc<str>),
) where
    T: Send + 'static,
    R: Send + 'static,
    Q: Queue<T>,
    S: futures::Stream<Item = Result<U, E>>,
    E: std::fmt::Display,
{
    use futures::StreamExt;
    let mut stream = std::pin::pin!(stream);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = inner.root.cancelled() => None,
        };
        match next.map(|r| r.map(&split)) {
            Some(Ok(Ok((item, route, key)))) => {
                if !inner.take_room().await {
                    break;
                }
                match inner.accept(item, route, key, true) {
                    Ok(_) => {}
                    Err(EnqueueError::Refused { lane, reason, .. }) => {
                        failed(Arc::from(format!(
                            "lane `{lane}` refused an item, so the intake stopped: {reason}"
                        )));
                        break;
                    }
                    // Cancelled: the coordinator no longer takes anything.
                    Err(_) => break,
                }
            }
            Some(Ok(Err(message))) => {
                failed(message);
                break;
            }
            Some(Err(e)) => {
                failed(Arc::from(e.to_string()));
                break;
            }
            None => break,
        }
    }
}
