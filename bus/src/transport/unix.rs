//! The one-machine transport: a Unix stream socket per pair of peers, in the bus directory.
//!
//! Every peer listens on `<dir>/<peer>.sock`. A joining peer connects to every live peer
//! while it holds the bus lock, so each pair has exactly one connection, used both ways. The
//! first frame each way is `Hello` (peer id and subscriptions); later subscription changes are
//! `Subscriptions` frames, acknowledged, so that publishers filter by topic and `publish` can
//! say how many subscribers it reached. Messages from one publisher to one peer travel on one
//! stream through one queue, which is what makes ordering per publisher.

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arc_swap::ArcSwap;
use ephemeral::{Name, Pattern};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use super::outbound::{LagTopic, Outbound, Pushed};
use super::{Encoded, Transport};
use crate::frame::{Announced, Frame, FrameCodec, FramingError, Interest};
use crate::message::{Leg, Route};
use crate::router::{Locals, Routed};
use crate::sync::Mutex;
use crate::topics::TopicCounters;
use crate::{BusError, BusOptions, Deadline, Message, PeerInfo, ReplyStatus, dir};

/// Room for the topic, headers and fixed fields of a frame, on top of the payload maximum.
pub(crate) const FRAME_OVERHEAD: usize = 1024 * 1024;

/// The read buffer of a connection, in bytes (see [`UnixTransport::reader`]).
const READ_BUFFER: usize = 64 * 1024;

/// A connection's incoming frames.
type Reader = FramedRead<OwnedReadHalf, FrameCodec>;

struct Peer {
    id: u64,
    subs: ArcSwap<Routes>,
    out: Outbound,
    /// The highest subscriptions sequence the peer acknowledged (`u64::MAX` once gone).
    acked: watch::Sender<u64>,
    /// Whether the peer's `Hello` arrived (true once gone, so nobody waits for it).
    greeted: watch::Sender<bool>,
    gone: AtomicBool,
    /// The peer did not answer a hello or an announcement within the handshake timeout
    /// (stopped, say): announcements do not wait for it again until it answers one.
    late: AtomicBool,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// What one peer announced, compiled for routing.
#[derive(Default)]
struct Routes {
    /// Its subscriptions' patterns: published messages go where these match.
    messages: Vec<Pattern>,
    /// The topics it serves: requests go to one of these peers.
    serves: Vec<String>,
    /// Its observers' patterns: copies of requests and replies go where these match.
    observes: Vec<Pattern>,
    /// Its internal subscriptions' patterns: the bus's own broadcasts go where these match.
    internals: Vec<Pattern>,
}

impl Routes {
    fn compile(announced: Vec<Announced>) -> Self {
        let mut routes = Routes::default();
        for (interest, pattern) in announced {
            match interest {
                Interest::Messages => routes.messages.push(Pattern::new(&pattern)),
                Interest::Serve => routes.serves.push(pattern),
                Interest::Observe => routes.observes.push(Pattern::new(&pattern)),
                Interest::Internal => routes.internals.push(Pattern::new(&pattern)),
            }
        }
        routes
    }
}

impl Peer {
    fn matching(&self, topic: &str) -> usize {
        self.subs
            .load()
            .messages
            .iter()
            .filter(|p| p.matches(topic))
            .count()
    }

    /// Which of its subscriptions `topic` reaches (their indices in its announcement): the
    /// ones a lag report on `topic` reaches.
    fn readers(&self, topic: &str) -> Box<[u32]> {
        (0u32..)
            .zip(self.subs.load().messages.iter())
            .filter(|(_, p)| p.matches(topic))
            .map(|(i, _)| i)
            .collect()
    }
}

pub(crate) struct UnixTransport {
    me: u64,
    dir: PathBuf,
    options: BusOptions,
    locals: Arc<Locals>,
    peers: ArcSwap<Vec<Arc<Peer>>>,
    /// Serialises every change to the peer table and every subscription announcement, so a
    /// peer never receives an older subscription list after a newer one.
    control: Mutex<()>,
    subs_seq: AtomicU64,
    tasks: Mutex<Vec<AbortHandle>>,
    corrupt: AtomicU64,
    dropped: AtomicU64,
    peer_lock: Mutex<Option<File>>,
    closed: AtomicBool,
}

impl UnixTransport {
    /// Joins the bus in `dir` as peer `me`: takes the bus lock, reclaims dead peers, creates
    /// this peer's files, connects to every live peer and waits (bounded) for their hellos.
    pub(crate) async fn join(
        dir: PathBuf,
        me: u64,
        options: BusOptions,
        locals: Arc<Locals>,
    ) -> Result<Arc<Self>, BusError> {
        let blocking_dir = dir.clone();
        let (peer_lock, listener, conns) =
            tokio::task::spawn_blocking(move || join_blocking(&blocking_dir, me))
                .await
                .map_err(|e| BusError::io(&dir)(io::Error::other(e)))??;
        let listener = UnixListener::from_std(listener).map_err(BusError::io(&dir))?;
        let transport = Arc::new(Self {
            me,
            dir: dir.clone(),
            options,
            locals,
            peers: ArcSwap::default(),
            control: Mutex::new(()),
            subs_seq: AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
            corrupt: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            peer_lock: Mutex::new(Some(peer_lock)),
            closed: AtomicBool::new(false),
        });
        let mut waiting = Vec::new();
        for (id, stream) in conns {
            let Ok(stream) = UnixStream::from_std(stream) else {
                continue;
            };
            let (read, write) = stream.into_split();
            let reader = transport.reader(read);
            let peer = transport.add_peer(id, None, reader, write);
            let greeted = peer.greeted.subscribe();
            waiting.push((peer, greeted));
        }
        let accept = tokio::spawn(Arc::clone(&transport).accept_loop(listener));
        transport.tasks.lock().push(accept.abort_handle());
        let deadline = crate::after(transport.options.handshake_timeout);
        for (peer, mut rx) in waiting {
            if tokio::time::timeout_at(deadline, rx.wait_for(|g| *g))
                .await
                .is_err()
            {
                // Relaxed: a hint; at worst one more bounded wait, or one fewer.
                peer.late.store(true, Ordering::Relaxed);
            }
        }
        Ok(transport)
    }

    async fn accept_loop(self: Arc<Self>, listener: UnixListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors, say: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let this = Arc::clone(&self);
            let task = tokio::spawn(async move {
                let (read, write) = stream.into_split();
                let mut reader = this.reader(read);
                let first = tokio::time::timeout(this.options.handshake_timeout, reader.next());
                match first.await {
                    Ok(Some(Ok(Ok(Frame::Hello {
                        peer,
                        subscriptions,
                    })))) => {
                        this.add_peer(peer, Some(subscriptions), reader, write);
                    }
                    Ok(Some(Ok(_) | Err(FramingError::TooLong { .. }))) => {
                        this.corrupt.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            });
            let mut tasks = self.tasks.lock();
            tasks.retain(|t| !t.is_finished());
            tasks.push(task.abort_handle());
        }
    }

    fn max_frame(&self) -> usize {
        self.options.max_payload.saturating_add(FRAME_OVERHEAD)
    }

    /// The frame reader of a connection. Its buffer is where received payloads live (they
    /// are slices of it): a fresh block of this size is taken whenever the previous one is
    /// full and still shared with messages not yet dropped.
    fn reader(&self, read: OwnedReadHalf) -> Reader {
        FramedRead::with_capacity(read, FrameCodec::new(self.max_frame()), READ_BUFFER)
    }

    /// Registers a connected peer, sends it our hello and starts its reader and writer.
    fn add_peer(
        self: &Arc<Self>,
        id: u64,
        subscriptions: Option<Vec<Announced>>,
        reader: Reader,
        writer: OwnedWriteHalf,
    ) -> Arc<Peer> {
        let greeted = subscriptions.is_some();
        let peer = Arc::new(Peer {
            id,
            subs: ArcSwap::from_pointee(Routes::compile(subscriptions.unwrap_or_default())),
            out: Outbound::new(self.options.peer_queue_bytes),
            acked: watch::Sender::new(0),
            greeted: watch::Sender::new(greeted),
            gone: AtomicBool::new(false),
            late: AtomicBool::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        {
            let _control = self.control.lock();
            let mut next = Vec::clone(&self.peers.load());
            next.retain(|p| p.id != id);
            next.push(Arc::clone(&peer));
            self.peers.store(Arc::new(next));
            peer.out.push_control(&Frame::Hello {
                peer: self.me,
                subscriptions: self.locals.patterns(),
            });
        }
        let read = tokio::spawn(Arc::clone(self).read_loop(Arc::clone(&peer), reader));
        let write = tokio::spawn(Arc::clone(self).write_loop(Arc::clone(&peer), writer));
        peer.tasks
            .lock()
            .extend([read.abort_handle(), write.abort_handle()]);
        peer
    }

    async fn read_loop(self: Arc<Self>, peer: Arc<Peer>, mut reader: Reader) {
        let mut counted: Option<(Name, Arc<TopicCounters>)> = None;
        loop {
            match reader.next().await {
                Some(Ok(Ok(Frame::Message(m)))) if m.route.is_none() => {
                    let same = counted.as_ref().is_some_and(|(n, _)| *n == m.topic);
                    if !same {
                        counted = Some((m.topic.clone(), self.locals.topics.counters(&m.topic)));
                    }
                    if let Some((_, c)) = &counted {
                        c.received.fetch_add(1, Ordering::Relaxed);
                    }
                    // The common case delivers here, with no future per message; a full
                    // `Wait` subscription is waited for: the socket fills and the publisher's
                    // bounded wait takes over.
                    if let Err(blocked) = self.locals.dispatch_now(m) {
                        self.locals.dispatch_blocked(blocked).await;
                    }
                }
                Some(Ok(Ok(frame))) => self.handle(&peer, frame).await,
                Some(Ok(Err(_))) => {
                    // Refused and counted; the length prefix was sound, so the stream is
                    // still in step and the next frame can be read.
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                }
                Some(Err(FramingError::TooLong { .. })) => {
                    // An oversized length: the stream cannot be trusted any more.
                    self.corrupt.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                // The peer left (a clean end, or one inside a frame: it died mid-write).
                Some(Err(_)) | None => break,
            }
        }
        self.peer_gone(&peer);
    }

    async fn handle(&self, peer: &Peer, frame: Frame) {
        match frame {
            Frame::Message(message) if message.is_broadcast() => {
                self.locals.broadcast(&message, None).await;
            }
            Frame::Message(message) if message.route.is_some() => {
                match self.locals.route(&message, None).await {
                    Routed::Done => {}
                    Routed::NoServer => self.bounce(peer, &message),
                    Routed::Unwanted => self.stop_stream(peer, &message),
                }
            }
            Frame::Message(message) => {
                // Waits while a `Wait` subscription is full: the socket fills and the
                // publisher's bounded wait takes over.
                if let Err(blocked) = self.locals.dispatch_now(message) {
                    self.locals.dispatch_blocked(blocked).await;
                }
            }
            Frame::Hello { subscriptions, .. } => {
                peer.subs.store(Arc::new(Routes::compile(subscriptions)));
                peer.late.store(false, Ordering::Relaxed);
                peer.greeted.send_replace(true);
            }
            Frame::Subscriptions {
                sequence,
                subscriptions,
            } => {
                peer.subs.store(Arc::new(Routes::compile(subscriptions)));
                peer.out.push_control(&Frame::SubscriptionsAck { sequence });
            }
            Frame::SubscriptionsAck { sequence } => {
                // Relaxed: a hint (see `announce`).
                peer.late.store(false, Ordering::Relaxed);
                peer.acked.send_modify(|a| *a = (*a).max(sequence));
            }
            Frame::Lag { topic, count } => self.locals.lag(&topic, count),
        }
    }

    /// Answers a request that found no server here (it stopped after the requester chose
    /// this peer): a `Gone` reply, so the requester fails at once instead of timing out.
    fn bounce(&self, peer: &Peer, request: &Message) {
        if let Some(route) = request.route().filter(|r| r.leg == Leg::Request) {
            self.answer(peer, request, &route, Leg::Reply(ReplyStatus::Gone));
        }
    }

    /// Answers a stream item nobody here waits for with a cancel, so that its server stops
    /// the stream (the requester gave up without dropping a `ReplyStream`, which would have
    /// sent one).
    fn stop_stream(&self, peer: &Peer, item: &Message) {
        if let Some(route) = item.route() {
            self.answer(peer, item, &route, Leg::Cancel);
        }
    }

    /// Sends `peer` an empty control message on `message`'s topic and correlation, back to
    /// its sender, as `leg`.
    fn answer(&self, peer: &Peer, message: &Message, route: &Route, leg: Leg) {
        let answer = Message {
            route: Some(Box::new(Route {
                to: route.from,
                from: self.me,
                correlation: route.correlation,
                leg,
            })),
            topic: message.topic.clone(),
            payload: bytes::Bytes::new(),
            headers: Vec::new().into(),
            id: self.locals.next_id(),
            origin: crate::process_origin(),
            hops: 0,
            timestamp: std::time::SystemTime::now(),
            ttl: None,
        };
        peer.out.push_control(&Frame::Message(answer));
    }

    async fn write_loop(self: Arc<Self>, peer: Arc<Peer>, mut writer: OwnedWriteHalf) {
        let mut spare = Vec::with_capacity(64 * 1024);
        while let Some(batch) = peer.out.take(std::mem::take(&mut spare)) {
            if batch.is_empty() {
                spare = batch;
                peer.out.data.notified().await;
                continue;
            }
            if writer.write_all(&batch).await.is_err() {
                break;
            }
            peer.out.progressed();
            spare = batch;
            spare.clear();
        }
        self.peer_gone(&peer);
    }

    /// The connection ended (the peer left or died): forget it, release whoever waits on it,
    /// and reclaim its files if it died without cleaning up.
    fn peer_gone(self: &Arc<Self>, peer: &Arc<Peer>) {
        if peer.gone.swap(true, Ordering::AcqRel) {
            return;
        }
        peer.out.close();
        peer.acked.send_replace(u64::MAX);
        peer.greeted.send_replace(true);
        {
            let _control = self.control.lock();
            let mut next = Vec::clone(&self.peers.load());
            next.retain(|p| !Arc::ptr_eq(p, peer));
            self.peers.store(Arc::new(next));
        }
        if !self.closed.load(Ordering::Acquire) {
            let this = Arc::clone(self);
            tokio::task::spawn_blocking(move || {
                if this.closed.load(Ordering::Acquire) {
                    return;
                }
                if let Ok(Some(lock)) = dir::lock_existing_bus(&this.dir) {
                    let _ = dir::reclaim(&this.dir, Some(this.me));
                    drop(lock);
                }
            });
        }
        for task in peer.tasks.lock().drain(..) {
            task.abort();
        }
    }

    fn push_subscriptions(&self) -> (u64, Vec<Arc<Peer>>) {
        let _control = self.control.lock();
        let sequence = self.subs_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = Frame::Subscriptions {
            sequence,
            subscriptions: self.locals.patterns(),
        };
        let peers = self.peers.load_full();
        for peer in peers.iter() {
            peer.out.push_control(&frame);
        }
        (sequence, Vec::clone(&peers))
    }
}

impl Transport for UnixTransport {
    async fn send(&self, topic: &Name, frame: Encoded<'_>, deadline: &Deadline) -> usize {
        let peers = self.peers.load_full();
        let mut reached = 0;
        for peer in peers.iter() {
            let n = peer.matching(topic);
            if n == 0 {
                continue;
            }
            let readers = |topic: &Name| peer.readers(topic.as_str());
            let lag = LagTopic {
                topic,
                readers: &readers,
            };
            // Most pushes find room: only a full queue builds the waiting future.
            let pushed = match peer.out.try_push(frame, Some(lag)) {
                Some(pushed) => pushed,
                None => peer.out.push_message(frame, Some(lag), deadline.at()).await,
            };
            match pushed {
                Pushed::Queued => reached += n,
                Pushed::Dropped => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Pushed::Closed => {}
            }
        }
        reached
    }

    fn servers_of(&self, topic: &Name) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .peers
            .load()
            .iter()
            .filter(|p| p.subs.load().serves.iter().any(|s| s == topic.as_str()))
            .map(|p| p.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    async fn send_copies(
        &self,
        topic: &Name,
        frame: &[u8],
        deadline: Instant,
        except: u64,
    ) -> usize {
        let peers = self.peers.load_full();
        let mut reached = 0;
        for peer in peers
            .iter()
            .filter(|p| p.id != except && p.subs.load().observes.iter().any(|o| o.matches(topic)))
        {
            match peer
                .out
                .push_message(Encoded::Bytes(frame), None, deadline)
                .await
            {
                Pushed::Queued => reached += 1,
                Pushed::Dropped => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Pushed::Closed => {}
            }
        }
        reached
    }

    async fn send_internal(&self, topic: &Name, frame: &[u8], deadline: Instant) -> usize {
        let peers = self.peers.load_full();
        let mut reached = 0;
        for peer in peers.iter() {
            let n = peer
                .subs
                .load()
                .internals
                .iter()
                .filter(|p| p.matches(topic))
                .count();
            if n == 0 {
                continue;
            }
            // No topic: a loss is not reported as lag to the peer's user subscriptions.
            match peer
                .out
                .push_message(Encoded::Bytes(frame), None, deadline)
                .await
            {
                Pushed::Queued => reached += n,
                Pushed::Dropped => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Pushed::Closed => {}
            }
        }
        reached
    }

    fn peer_list(&self) -> Vec<PeerInfo> {
        let mut list: Vec<PeerInfo> = self
            .peers
            .load()
            .iter()
            .map(|p| {
                let routes = p.subs.load();
                PeerInfo {
                    id: p.id,
                    subscriptions: routes
                        .messages
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect(),
                    serves: routes.serves.clone(),
                    observes: routes
                        .observes
                        .iter()
                        .map(|p| p.as_str().to_owned())
                        .collect(),
                }
            })
            .collect();
        list.sort_by_key(|p| p.id);
        list
    }

    async fn send_to(&self, peer: u64, frame: &[u8], deadline: Instant) -> bool {
        let Some(peer) = self.peers.load().iter().find(|p| p.id == peer).cloned() else {
            return false;
        };
        match peer
            .out
            .push_message(Encoded::Bytes(frame), None, deadline)
            .await
        {
            Pushed::Queued => true,
            Pushed::Dropped => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
            Pushed::Closed => false,
        }
    }

    fn gone(&self, peer: u64) -> impl Future<Output = ()> + Send + 'static {
        let rx = self
            .peers
            .load()
            .iter()
            .find(|p| p.id == peer)
            .map(|p| p.acked.subscribe());
        async move {
            if let Some(mut rx) = rx {
                // `acked` becomes u64::MAX when the connection ends.
                let _ = rx.wait_for(|a| *a == u64::MAX).await;
            }
        }
    }

    async fn announce(&self) {
        let (sequence, peers) = self.push_subscriptions();
        let deadline = crate::after(self.options.handshake_timeout);
        for peer in peers {
            // A peer that missed a handshake is sent the announcement but not waited for
            // until it answers again: a stopped peer costs one bounded wait, not one per
            // subscribe or flush. Relaxed: a hint; a stale read costs one wait more or less.
            if peer.late.load(Ordering::Relaxed) {
                continue;
            }
            let mut rx = peer.acked.subscribe();
            if tokio::time::timeout_at(deadline, rx.wait_for(|a| *a >= sequence))
                .await
                .is_err()
            {
                peer.late.store(true, Ordering::Relaxed);
            }
        }
    }

    fn announce_now(&self) {
        if !self.closed.load(Ordering::Acquire) {
            self.push_subscriptions();
        }
    }

    fn peer_count(&self) -> usize {
        self.peers.load().len()
    }

    fn counters(&self) -> (u64, u64) {
        (
            self.corrupt.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        )
    }

    fn close(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
        for peer in self.peers.swap(Arc::default()).iter() {
            peer.gone.store(true, Ordering::Release);
            peer.out.close();
            peer.acked.send_replace(u64::MAX);
            for task in peer.tasks.lock().drain(..) {
                task.abort();
            }
        }
        self.locals.close_all();
        if let Some(lock) = self.peer_lock.lock().take() {
            dir::leave(&self.dir, self.me, lock);
        }
    }
}

type Joined = (File, StdListener, Vec<(u64, StdStream)>);

fn join_blocking(dir: &std::path::Path, me: u64) -> Result<Joined, BusError> {
    let lock = dir::lock_bus(dir)?;
    let live = dir::reclaim(dir, Some(me))?;
    let peer_lock = dir::create_peer_lock(dir, me)?;
    let sock = dir::socket_path(dir, me);
    let _ = std::fs::remove_file(&sock);
    let listener = StdListener::bind(&sock).map_err(BusError::io(&sock))?;
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o600))
        .map_err(BusError::io(&sock))?;
    listener
        .set_nonblocking(true)
        .map_err(BusError::io(&sock))?;
    let mut conns = Vec::new();
    for peer in live {
        // A live peer always has its socket bound: it binds before releasing the bus lock.
        if let Ok(stream) = StdStream::connect(dir::socket_path(dir, peer))
            && stream.set_nonblocking(true).is_ok()
        {
            conns.push((peer, stream));
        }
    }
    drop(lock);
    Ok((peer_lock, listener, conns))
}
