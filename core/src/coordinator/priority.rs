//! `PriorityWorkCoordinator<T>`: named lanes, highest priority starts first.

use std::fmt;
use std::sync::Arc;

use super::admission::Admission;
use super::context::OperationContext;
use super::engine::Reserved;
use super::engine::{Engine, enqueue_each, user_body};
use super::error::{CoordinatorError, EnqueueError, EnqueueManyError, LaneError};
use super::key_label::KeyLabel;
use super::lane::Lane;
use super::methods::coordinator_methods;
use super::options::EphemeralOptions;
use super::queue::LaneQueue;
use crate::OperationId;

/// A work coordinator with named lanes: whenever a slot frees up, the next item comes from the
/// highest-priority lane that has one and is not deferred. Priority decides which item
/// *starts* next; it never preempts a running body. Lanes of equal priority share it by
/// arrival: the item accepted first starts first, whichever of them holds it.
///
/// Priority is strict: while a higher lane always has an item waiting, a lower lane starts
/// nothing (no ageing, no quota). Where low-priority work must progress under a steady
/// high-priority load, bound the high lane (`max_depth`, a defer rule), or give the low work
/// a coordinator of its own.
///
/// Each lane may cap its depth (a full lane refuses with [`EnqueueError::Refused`]) and has
/// its own cancel and defer rules; a deferred lane is skipped, so it never stalls the other
/// lanes. `drain` waits for every accepted item, a deferred lane's included: lift the
/// deferral (or `cancel`) to finish.
///
/// # Examples
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use ephemeral::{EphemeralOptions, Lane, OperationContext, PriorityWorkCoordinator};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let order = Arc::new(Mutex::new(Vec::new()));
/// let seen = order.clone();
/// let coordinator = PriorityWorkCoordinator::new(
///     move |job: &'static str, _ctx: OperationContext| {
///         let seen = seen.clone();
///         async move { seen.lock().unwrap().push(job); Ok::<_, std::convert::Infallible>(()) }
///     },
///     vec![Lane::new("low", 1), Lane::new("high", 10)],
///     EphemeralOptions::default().max_concurrency(1),
/// )?;
/// coordinator.pause();
/// coordinator.enqueue("low", "report").await?;
/// coordinator.enqueue("high", "login").await?;
/// coordinator.resume();
/// coordinator.drain().await?;
/// assert_eq!(*order.lock().unwrap(), ["login", "report"]);
/// # Ok(())
/// # }
/// ```
#[must_use = "dropping the last handle shuts the coordinator down (pending items are cancelled)"]
pub struct PriorityWorkCoordinator<T: Send + 'static> {
    engine: Engine<T, (), LaneQueue<T>>,
    /// Lane names in route order (highest priority first).
    lanes: Arc<[Arc<str>]>,
}

impl<T: Send + 'static> Clone for PriorityWorkCoordinator<T> {
    fn clone(&self) -> Self {
        Self {
            engine: self.engine.clone(),
            lanes: self.lanes.clone(),
        }
    }
}

impl<T: Send + 'static> PriorityWorkCoordinator<T> {
    /// A coordinator with `lanes` (any order; distinct names).
    ///
    /// # Errors
    ///
    /// [`CoordinatorError::Lanes`] for no lanes, an empty or blank lane name
    /// ([`LaneError::EmptyName`]), a repeated one, or a lane with `max_depth(0)`,
    /// [`CoordinatorError::NoRuntime`] outside a tokio runtime, or a bad option.
    pub fn new<F, Fut, E>(
        body: F,
        lanes: Vec<Lane>,
        options: EphemeralOptions,
    ) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        Self::with_admission(body, lanes, options, Vec::new())
    }

    /// [`new`](Self::new) with [`Admission`] hooks.
    ///
    /// # Errors
    ///
    /// As [`new`](Self::new).
    pub fn with_admission<F, Fut, E>(
        body: F,
        mut lanes: Vec<Lane>,
        options: EphemeralOptions,
        hooks: Vec<Arc<dyn Admission>>,
    ) -> Result<Self, CoordinatorError>
    where
        F: Fn(T, OperationContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + Sync + 'static,
    {
        if lanes.is_empty() {
            return Err(LaneError::NoLanes.into());
        }
        lanes.sort_by_key(|l| std::cmp::Reverse(l.priority));
        let names: Arc<[Arc<str>]> = lanes.iter().map(|l| l.name.clone()).collect();
        for (i, name) in names.iter().enumerate() {
            if name.trim().is_empty() {
                return Err(LaneError::EmptyName.into());
            }
            if lanes[i].max_depth == Some(0) {
                return Err(LaneError::ZeroDepth(name.clone()).into());
            }
            if names[..i].contains(name) {
                return Err(LaneError::DuplicateName(name.clone()).into());
            }
        }
        let watch = lanes
            .iter()
            .flat_map(|l| [l.defer_on.clone(), l.resume_on.clone()])
            .flatten()
            .collect();
        let engine = Engine::new(
            user_body(body),
            options,
            LaneQueue::new(lanes),
            hooks,
            watch,
        )?;
        Ok(Self {
            engine,
            lanes: names,
        })
    }

    fn route(&self, lane: &str) -> Option<usize> {
        route_of(&self.lanes, lane)
    }

    /// Accepts `item` into `lane`, waiting while `max_pending` items wait to start.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] after `complete`, `drain` or `cancel` (whatever the lane,
    /// an unknown one included), else [`EnqueueError::Refused`] for an unknown lane or a
    /// full one; each with the item.
    pub async fn enqueue(&self, lane: &str, item: T) -> Result<OperationId, EnqueueError<T>> {
        let Some(route) = self.route(lane) else {
            return Err(unknown(&self.lanes, lane, item, self.engine.is_closed()));
        };
        let key = Some(KeyLabel::Text(self.lanes[route].clone()));
        self.engine.enqueue(item, route, key).await
    }

    /// Accepts `item` into `lane` if there is room now.
    ///
    /// # Errors
    ///
    /// As [`enqueue`](Self::enqueue), plus [`EnqueueError::Full`].
    pub fn try_enqueue(&self, lane: &str, item: T) -> Result<OperationId, EnqueueError<T>> {
        let Some(route) = self.route(lane) else {
            return Err(unknown(&self.lanes, lane, item, self.engine.is_closed()));
        };
        let key = Some(KeyLabel::Text(self.lanes[route].clone()));
        self.engine.try_enqueue(item, route, key)
    }

    /// Waits for room for one item and holds it: [`LaneEnqueuePermit::send`] never waits,
    /// and dropping the permit (say, when another `select!` branch won) gives the room back.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] after `complete`, `drain` or `cancel`.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralOptions, Lane, OperationContext, PriorityWorkCoordinator};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let coordinator = PriorityWorkCoordinator::new(
    ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     vec![Lane::new("high", 10), Lane::new("low", 0)],
    ///     EphemeralOptions::default(),
    /// )?;
    /// let permit = coordinator.reserve().await?; // the room is held from here on
    /// let id = permit.send("high", 1)?; // never waits
    /// coordinator.drain().await?;
    /// assert_eq!(coordinator.operation(id).unwrap().key.as_deref(), Some("high"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reserve(&self) -> Result<LaneEnqueuePermit<T>, EnqueueError<()>> {
        Ok(LaneEnqueuePermit {
            reserved: self.engine.reserve().await?,
            lanes: self.lanes.clone(),
        })
    }

    /// Enqueues every `(lane, item)` pair in order, waiting for room as
    /// [`enqueue`](Self::enqueue) does.
    ///
    /// # Errors
    ///
    /// Stops at the first refused pair (closed, an unknown lane or a full one):
    /// [`EnqueueManyError`] holds the ids of the pairs accepted before it, and gives back the
    /// refused pair and every pair after it.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EnqueueError, EphemeralOptions, Lane, OperationContext, PriorityWorkCoordinator};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let coordinator = PriorityWorkCoordinator::new(
    ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     vec![Lane::new("high", 10).max_depth(1), Lane::new("low", 0)],
    ///     EphemeralOptions::default(),
    /// )?;
    /// coordinator.pause();
    /// let err = coordinator
    ///     .enqueue_many([("low", 1), ("high", 2), ("high", 3), ("low", 4)])
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.accepted.len(), 2);
    /// assert!(matches!(err.refused, EnqueueError::Refused { .. })); // `high` holds one item
    /// assert_eq!(err.into_inner(), [("high", 3), ("low", 4)]);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn enqueue_many<L>(
        &self,
        items: impl IntoIterator<Item = (L, T)>,
    ) -> Result<Vec<OperationId>, EnqueueManyError<(L, T)>>
    where
        L: AsRef<str>,
    {
        enqueue_each(items, |(lane, item)| async move {
            self.enqueue(lane.as_ref(), item)
                .await
                .map_err(|e| e.map(|item| (lane, item)))
        })
        .await
    }

    /// Feeds a stream of `(lane, item)` pairs into the coordinator on a task;
    /// [`drain`](Self::drain) waits for the stream to end. An item for an unknown or full
    /// lane stops the intake (the item is dropped) with an error that
    /// [`drain`](Self::drain) returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use ephemeral::{EphemeralOptions, Lane, OperationContext, PriorityWorkCoordinator};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let coordinator = PriorityWorkCoordinator::new(
    ///     |_: u32, _ctx: OperationContext| async { Ok::<_, std::convert::Infallible>(()) },
    ///     vec![Lane::new("high", 10), Lane::new("low", 0)],
    ///     EphemeralOptions::default(),
    /// )?;
    /// coordinator.intake(futures::stream::iter([("low", 1), ("high", 2), ("hgih", 3)]));
    /// let err = coordinator.drain().await.unwrap_err();
    /// assert!(err.to_string().contains("hgih"), "{err}");
    /// assert_eq!(coordinator.stats().completed, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn intake<S, L>(&self, stream: S)
    where
        S: futures::Stream<Item = (L, T)> + Send + 'static,
        L: AsRef<str> + Send + 'static,
    {
        use futures::StreamExt;
        self.intake_results(stream.map(Ok::<(L, T), std::convert::Infallible>));
    }

    /// Feeds a fallible stream of `(lane, item)` pairs; the first error stops it and is
    /// returned by [`drain`](Self::drain), as is an item for an unknown or full lane.
    pub fn intake_results<S, L, E>(&self, stream: S)
    where
        S: futures::Stream<Item = Result<(L, T), E>> + Send + 'static,
        L: AsRef<str> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let lanes = self.lanes.clone();
        self.engine.intake(stream, move |(lane, item): (L, T)| {
            let lane = lane.as_ref();
            match route_of(&lanes, lane) {
                Some(route) => Ok((item, route, Some(KeyLabel::Text(lanes[route].clone())))),
                None => Err(Arc::from(format!(
                    "no lane is named `{lane}`, so the intake stopped (the lanes are {})",
                    lane_list(&lanes)
                ))),
            }
        });
    }

    /// Items waiting in `lane`, those an admission hook put aside included (0 for an
    /// unknown lane).
    #[must_use]
    pub fn lane_depth(&self, lane: &str) -> usize {
        self.route(lane)
            .map_or(0, |r| self.engine.with_queue(|q| q.depth(r)))
    }

    coordinator_methods!();
}

/// The route (index, highest priority first) of the lane named `lane`.
fn route_of(lanes: &[Arc<str>], lane: &str) -> Option<usize> {
    lanes.iter().position(|l| &**l == lane)
}

/// The refusal of an item for a lane no lane is named: [`EnqueueError::Closed`] once the
/// coordinator stopped taking items (a closed coordinator says so whatever the lane, as it
/// does for a known one), else [`EnqueueError::Refused`], whose reason names the lanes there
/// are (a typo is then plain to see).
fn unknown<T>(lanes: &[Arc<str>], lane: &str, item: T, closed: bool) -> EnqueueError<T> {
    if closed {
        return EnqueueError::Closed(item);
    }
    EnqueueError::Refused {
        item,
        lane: Arc::from(lane),
        reason: Arc::from(format!(
            "no lane has this name: enqueue into one of {}",
            lane_list(lanes)
        )),
    }
}

/// The lane names for a message, highest priority first: `` `high`, `low` ``.
fn lane_list(lanes: &[Arc<str>]) -> String {
    lanes
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl<T: Send + 'static> fmt::Debug for PriorityWorkCoordinator<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PriorityWorkCoordinator")
            .field("lanes", &self.lanes)
            .field("engine", &self.engine)
            .finish()
    }
}

/// Room for one item, reserved by [`PriorityWorkCoordinator::reserve`].
#[must_use = "dropping the permit gives the room back"]
pub struct LaneEnqueuePermit<T: Send + 'static> {
    reserved: Reserved<T, (), LaneQueue<T>>,
    lanes: Arc<[Arc<str>]>,
}

impl<T: Send + 'static> LaneEnqueuePermit<T> {
    /// Accepts `item` into `lane`, in the reserved room.
    ///
    /// # Errors
    ///
    /// [`EnqueueError::Closed`] if the coordinator stopped taking items meanwhile
    /// (`complete`, `drain` or `cancel`; whatever the lane), else [`EnqueueError::Refused`]
    /// for an unknown or full lane (the room is given back); each with the item.
    pub fn send(self, lane: &str, item: T) -> Result<OperationId, EnqueueError<T>> {
        let Some(route) = route_of(&self.lanes, lane) else {
            return Err(unknown(&self.lanes, lane, item, self.reserved.is_closed()));
        };
        let key = Some(KeyLabel::Text(self.lanes[route].clone()));
        self.reserved.send(item, route, key)
    }
}

impl<T: Send + 'static> fmt::Debug for LaneEnqueuePermit<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LaneEnqueuePermit")
            .field("lanes", &self.lanes)
            .finish_non_exhaustive()
    }
}
