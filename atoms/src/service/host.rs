//! `ServiceHost`: starts services in dependency order, restarts failing work steps, and
//! stops everything in reverse order within a deadline.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use crate::header::error_header;
use ephemeral::{HeaderValue, Signal, SignalSink};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::dynamic::DynService;
use super::error::HostError;
use super::options::HostOptions;
use super::order::start_order;
use super::report::{HostReport, ServiceReport, ServiceState, ShutdownReason};
use super::service::{Service, ServiceContext, Step};
use super::status::{HostStatus, Record, lock};

/// The longest service name: its longest lifecycle signal, `service.<name>.restarting`,
/// must be a valid signal name.
const MAX_SERVICE_NAME_LEN: usize =
    ephemeral::MAX_NAME_LEN - "service.".len() - ".restarting".len();

/// Runs a set of [`Service`]s: starts them in dependency order, restarts a failing work step
/// with backoff (giving up after a limit, with the reason), and on shutdown stops them in
/// reverse order within a deadline, aborting and naming any service that did not stop.
///
/// Shutdown begins when the token in [`HostOptions::cancel_on`] (also
/// [`shutdown_token`](Self::shutdown_token)) is cancelled, on Ctrl-C / SIGTERM when
/// [`HostOptions::shutdown_on_os_signals`] is set, or when every service has ended by itself.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use ephemeral_atoms::service::{
///     HostOptions, Service, ServiceContext, ServiceError, ServiceHost, ServiceState, Step,
/// };
///
/// struct Countdown(u32);
///
/// impl Service for Countdown {
///     fn name(&self) -> &str {
///         "countdown"
///     }
///     async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
///         tokio::time::sleep(Duration::from_millis(10)).await;
///         self.0 -= 1;
///         Ok(if self.0 == 0 { Step::Done } else { Step::Continue })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut host = ServiceHost::new(HostOptions::default());
/// host.add(Countdown(3))?;
/// let report = host.run().await?;
/// assert_eq!(report.service("countdown").unwrap().state, ServiceState::Finished);
/// # Ok(())
/// # }
/// ```
pub struct ServiceHost {
    options: HostOptions,
    services: Vec<Box<dyn DynService>>,
    /// The services' records, in the order added (see [`status`](Self::status)).
    status: HostStatus,
}

impl ServiceHost {
    /// A host with these options and no services yet.
    pub fn new(options: HostOptions) -> Self {
        Self {
            options,
            services: Vec::new(),
            status: HostStatus::default(),
        }
    }

    /// Adds a service.
    ///
    /// # Errors
    ///
    /// [`HostError::Duplicate`] when a service of that name was already added;
    /// [`HostError::InvalidName`] when the name breaks the signal naming rule (an empty
    /// name included); [`HostError::NameTooLong`] past 236 bytes.
    pub fn add(&mut self, service: impl Service) -> Result<&mut Self, HostError> {
        let name = service.name().to_owned();
        if self.services.iter().any(|s| s.name() == name) {
            return Err(HostError::Duplicate(name));
        }
        // The name is checked on its own, so that an error's offset is within it (not
        // within `service.<name>.restarting`) and an empty name is refused, and its
        // length against what is left of a signal name around it.
        if let Err(reason) = ephemeral::validate_name(&name) {
            return Err(HostError::InvalidName { name, reason });
        }
        if name.len() > MAX_SERVICE_NAME_LEN {
            return Err(HostError::NameTooLong {
                len: name.len(),
                max: MAX_SERVICE_NAME_LEN,
                name,
            });
        }
        self.status
            .push(Arc::new(Mutex::new(ServiceReport::new(&name))));
        self.services.push(Box::new(service));
        Ok(self)
    }

    /// A live view of the services: take it before [`run`](Self::run) (which consumes the
    /// host) and read it while the host runs and after (see [`HostStatus`]).
    #[must_use]
    pub fn status(&self) -> HostStatus {
        self.status.clone()
    }

    /// The token that shuts this host down gracefully when cancelled.
    #[must_use]
    pub fn shutdown_token(&self) -> CancellationToken {
        self.options.token.clone()
    }

    /// Starts every service in dependency order, runs them until shutdown, stops them in
    /// reverse order, and reports what happened to each.
    ///
    /// A service is started only if no shutdown has been requested by its turn: with the
    /// token already cancelled, `run` starts nothing and reports every service
    /// [`NotStarted`](ServiceState::NotStarted).
    ///
    /// To stop gracefully, cancel the [`shutdown_token`](Self::shutdown_token) and await
    /// `run`. Dropping the future instead (for example when a `select!` or a timeout around
    /// it ends first) aborts every service at its next `.await`, without running its stop
    /// hook.
    ///
    /// # Errors
    ///
    /// [`HostError::UnknownDependency`] or [`HostError::Cycle`] before anything starts;
    /// [`HostError::StartFailed`] when a start hook fails (the services already started are
    /// stopped first, in reverse order); [`HostError::NoRuntime`] outside a tokio runtime.
    pub async fn run(self) -> Result<HostReport, HostError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(HostError::NoRuntime);
        }
        let names: Vec<String> = self.services.iter().map(|s| s.name().to_owned()).collect();
        let deps: Vec<Vec<String>> = self.services.iter().map(|s| s.dependencies()).collect();
        let order = start_order(&names, &deps)?;

        let options = Arc::new(self.options);
        let mut services: Vec<Option<Box<dyn DynService>>> =
            self.services.into_iter().map(Some).collect();
        let mut os_signal = os_signals(options.os_signals);
        let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
        let mut slots: Vec<Slot> = Vec::with_capacity(order.len());
        let mut reason = None;
        let mut ends = Ends::default();

        for &i in &order {
            // A service gave up meanwhile: its dependents stop first (and never start).
            while let Ok(message) = ended_rx.try_recv() {
                reason = ends
                    .take(message, &mut slots, &names, &deps, &options, &mut os_signal)
                    .await;
                // A shutdown's trigger may have fired: it must not be polled again.
                if reason.is_some() {
                    break;
                }
            }
            if reason.is_some() {
                break;
            }
            // A shutdown requested before this service's turn (even before `run`): it and
            // the ones after it are not started.
            if let Some(why) = trigger(&options.token, &mut os_signal).now_or_never() {
                reason = Some(why);
                break;
            }
            if depends_on_any(i, &ends.given_up, &names, &deps) {
                continue;
            }
            let Some(service) = services[i].take() else {
                continue;
            };
            let Some(record) = self.status.record(i) else {
                continue;
            };
            let (slot, mut started) = Slot::spawn(service, i, record, &options, ended_tx.clone());
            let asked_to_stop = slot.token.clone();
            slots.push(slot);
            ends.running += 1;
            // While it starts (which may take long, or wait for a dependency), a service
            // that gives up is dealt with at once, as after start-up: with
            // `stop_all_on_give_up` the shutdown begins now, else its dependents stop, this
            // one included when it depends on it.
            let start = loop {
                tokio::select! {
                    biased;
                    why = trigger(&options.token, &mut os_signal) => break Err(why),
                    result = &mut started => {
                        break Ok(result.unwrap_or_else(|_| Err("its task ended".to_owned())));
                    }
                    Some(message) = ended_rx.recv() => {
                        let taken = ends.take(message, &mut slots, &names, &deps, &options, &mut os_signal);
                        if let Some(why) = taken.await {
                            break Err(why);
                        }
                    }
                }
            };
            match start {
                Err(why) => {
                    reason = Some(why);
                    break;
                }
                // A start that fails after its service was asked to stop (a dependency gave
                // up meanwhile) is that service's end, not a failed start-up.
                Ok(Err(e)) if !asked_to_stop.is_cancelled() => {
                    reason = Some(ShutdownReason::StartFailed(e));
                    break;
                }
                Ok(_) => {}
            }
        }

        if reason.is_none() {
            reason = Some(loop {
                if ends.running == 0 {
                    break ShutdownReason::AllEnded;
                }
                tokio::select! {
                    biased;
                    why = trigger(&options.token, &mut os_signal) => break why,
                    Some(message) = ended_rx.recv() => {
                        let taken = ends.take(message, &mut slots, &names, &deps, &options, &mut os_signal);
                        if let Some(why) = taken.await {
                            break why;
                        }
                    }
                }
            });
        }
        let reason = reason.unwrap_or(ShutdownReason::AllEnded);
        if let ShutdownReason::OsSignal(signal) = &reason {
            tracing::info!(signal, "shutting services down");
        }

        shutdown(&mut slots, &options).await;
        drop(ends);

        let mut reports: Vec<ServiceReport> = slots.iter().map(Slot::report).collect();
        for &i in &order {
            if services[i].is_some() {
                // Never started: its record (the status's too) says so as it was added.
                reports.push(self.status.record(i).map_or_else(
                    || ServiceReport::new(&names[i]),
                    |record| lock(&record).clone(),
                ));
            }
        }
        let report = HostReport {
            services: reports,
            reason,
        };
        if let ShutdownReason::StartFailed(why) = &report.reason {
            // The failed start-up is the last service started (an earlier one may have failed
            // its start after a dependency gave up, which did not end the start-up).
            let failed = report
                .services
                .iter()
                .rev()
                .find(|s| s.state == ServiceState::StartFailed)
                .map_or_else(String::new, |s| s.name.clone());
            return Err(HostError::StartFailed {
                service: failed,
                reason: why.clone(),
                report: Box::new(report),
            });
        }
        Ok(report)
    }
}

impl fmt::Debug for ServiceHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.services.iter().map(|s| s.name()).collect();
        f.debug_struct("ServiceHost")
            .field("services", &names)
            .field("options", &self.options)
            .finish()
    }
}

/// One started service: its index among the host's services, its stop token, its record,
/// its task, and a token cancelled when the task has run its stop hook.
struct Slot {
    index: usize,
    token: CancellationToken,
    record: Record,
    /// Aborted when dropped, so dropping the run's future does not leave services running.
    task: AbortOnDropHandle<()>,
    ended: CancellationToken,
}

/// What a service's task tells the host.
enum Ended {
    /// It gave up (past `max_restarts`); its stop hook waits for `ack`, sent once the
    /// services that depend on it have stopped.
    GivingUp {
        index: usize,
        ack: oneshot::Sender<()>,
    },
    /// It ended (its stop hook ran, or its start failed).
    Done,
}

type Started = oneshot::Receiver<Result<(), String>>;

impl Slot {
    fn spawn(
        service: Box<dyn DynService>,
        index: usize,
        record: Record,
        options: &Arc<HostOptions>,
        ended: mpsc::UnboundedSender<Ended>,
    ) -> (Self, Started) {
        let name = service.name().to_owned();
        // Each service has its own token (not a child of the host's), so the host can ask
        // them to stop one at a time, in reverse start order.
        let token = CancellationToken::new();
        let ctx = ServiceContext {
            name,
            token: token.clone(),
            sink: options.sink.clone(),
        };
        let (started_tx, started_rx) = oneshot::channel();
        let done = CancellationToken::new();
        let task = AbortOnDropHandle::new(tokio::spawn(run_service(
            service,
            ctx,
            Arc::clone(options),
            Arc::clone(&record),
            started_tx,
            Report {
                index,
                to_host: ended,
                done: done.clone(),
            },
        )));
        (
            Self {
                index,
                token,
                record,
                task,
                ended: done,
            },
            started_rx,
        )
    }

    fn report(&self) -> ServiceReport {
        lock(&self.record).clone()
    }

    /// Records that the service did not stop in time and was aborted, and says so with
    /// `service.<name>.failed` (`phase` `stop`): it will raise no `.stopped`.
    fn mark_aborted(&self, sink: Option<&SignalSink>) {
        let name = {
            let mut r = lock(&self.record);
            r.state = ServiceState::DidNotStop;
            r.name.clone()
        };
        let headers = [
            ("phase", "stop".into()),
            ("error", "did not stop in time: aborted".into()),
        ];
        lifecycle(sink, &name, "failed", &headers);
    }
}

/// Raises `service.<name>.<event>` with `headers` (see [`HostOptions::signals`]).
fn lifecycle(
    sink: Option<&SignalSink>,
    name: &str,
    event: &str,
    headers: &[(&'static str, HeaderValue)],
) {
    let Some(sink) = sink else {
        return;
    };
    // The name was validated when the service was added.
    let builder = match Signal::build(&format!("service.{name}.{event}")) {
        Ok(builder) => builder,
        Err(e) => {
            tracing::warn!(service = name, error = %e, "could not raise a lifecycle signal");
            return;
        }
    };
    let builder = headers
        .iter()
        .fold(builder, |b, (key, value)| b.header(key, value.clone()));
    if let Err(e) = sink.raise_with(builder) {
        tracing::warn!(service = name, error = %e, "could not raise a lifecycle signal");
    }
}

/// What the host keeps of its services' ends: how many still run, which gave up, and the
/// acknowledgements their stop hooks wait for while the host keeps them
/// (`stop_all_on_give_up`: their dependents stop first, at shutdown).
#[derive(Default)]
struct Ends {
    running: usize,
    given_up: Vec<usize>,
    held_acks: Vec<oneshot::Sender<()>>,
}

impl Ends {
    /// Takes one message of a service's task: counts an end; for a service giving up, stops
    /// what depends on it and lets it stop, or, with `stop_all_on_give_up`, keeps it waiting
    /// and returns the shutdown's reason. A shutdown requested while its dependents stop
    /// also keeps it waiting and returns that shutdown's reason at once: the shutdown then
    /// stops everything, its deadline counted from the request.
    async fn take(
        &mut self,
        message: Ended,
        slots: &mut [Slot],
        names: &[String],
        deps: &[Vec<String>],
        options: &HostOptions,
        os_signal: &mut BoxFuture<'static, &'static str>,
    ) -> Option<ShutdownReason> {
        let Ended::GivingUp { index, ack } = message else {
            self.running -= 1;
            return None;
        };
        self.given_up.push(index);
        if options.stop_all_on_give_up {
            self.held_acks.push(ack);
            return Some(ShutdownReason::ServiceGaveUp(names[index].clone()));
        }
        tokio::select! {
            biased;
            why = trigger(&options.token, os_signal) => {
                self.held_acks.push(ack);
                Some(why)
            }
            () = stop_dependents(slots, index, names, deps, options) => {
                let _ = ack.send(());
                None
            }
        }
    }
}

/// How a service's task reports to the host.
struct Report {
    index: usize,
    to_host: mpsc::UnboundedSender<Ended>,
    /// Cancelled once the task has run its stop hook (or its start failed).
    done: CancellationToken,
}

impl Report {
    fn done(&self) {
        self.done.cancel();
        let _ = self.to_host.send(Ended::Done);
    }
}

async fn run_service(
    mut service: Box<dyn DynService>,
    ctx: ServiceContext,
    options: Arc<HostOptions>,
    record: Arc<Mutex<ServiceReport>>,
    started: oneshot::Sender<Result<(), String>>,
    ended: Report,
) {
    let sink = options.sink.as_ref();
    let name = ctx.name.clone();
    // Each hook is called inside the guard (in an `async` block), so a panic before it
    // returns its future is caught like one inside the future.
    let start = AssertUnwindSafe(async { service.start(&ctx).await })
        .catch_unwind()
        .await;
    let start = match start {
        Ok(result) => result.map_err(|e| e.message().to_owned()),
        Err(panic) => Err(format!("panicked: {}", panic_message(panic.as_ref()))),
    };
    if let Err(e) = start {
        {
            let mut r = lock(&record);
            r.state = ServiceState::StartFailed;
            r.last_error = Some(e.clone());
        }
        let headers = [("phase", "start".into()), ("error", error_header(&e))];
        lifecycle(sink, &name, "failed", &headers);
        let _ = started.send(Err(e));
        ended.done();
        return;
    }
    lock(&record).state = ServiceState::Running;
    lifecycle(sink, &name, "started", &[]);
    let _ = started.send(Ok(()));

    let mut in_a_row = 0u32;
    let end = loop {
        let step = tokio::select! {
            biased;
            () = ctx.token.cancelled() => break ServiceState::Stopped,
            step = AssertUnwindSafe(async { service.work(&ctx).await }).catch_unwind() => step,
        };
        let error = match step {
            Ok(Ok(Step::Continue)) => {
                in_a_row = 0;
                // A step that completes without waiting (a poll that found nothing) would
                // otherwise loop here for ever without yielding: on a current-thread
                // runtime nothing else, not even the shutdown, would run again. Spending
                // the task's cooperative budget yields once it runs out.
                tokio::task::coop::consume_budget().await;
                continue;
            }
            Ok(Ok(Step::Done)) => break ServiceState::Finished,
            Ok(Err(e)) => e.message().to_owned(),
            Err(panic) => format!("panicked: {}", panic_message(panic.as_ref())),
        };
        in_a_row += 1;
        {
            let mut r = lock(&record);
            r.failures += 1;
            r.last_error = Some(error.clone());
        }
        tracing::warn!(service = %name, error = %error, in_a_row, "work step failed");
        let gives_up = in_a_row > options.max_restarts;
        let headers = [
            ("phase", "work".into()),
            ("error", error_header(&error)),
            ("in_a_row", HeaderValue::from(in_a_row)),
            ("gave_up", gives_up.into()),
        ];
        lifecycle(sink, &name, "failed", &headers);
        if gives_up {
            tracing::error!(service = %name, error = %error, "giving up after {} restarts", options.max_restarts);
            break ServiceState::GaveUp;
        }
        lifecycle(sink, &name, "restarting", &[("in_a_row", in_a_row.into())]);
        let wait = options.backoff_for(in_a_row);
        tokio::select! {
            biased;
            () = ctx.token.cancelled() => break ServiceState::Stopped,
            () = tokio::time::sleep(wait) => {}
        }
        // Counted once the backoff is over: a restart cut short by a stop never happened.
        lock(&record).restarts += 1;
    };

    if end == ServiceState::GaveUp {
        // The services that depend on this one stop first (a dependency is stopped after
        // its dependents); at shutdown, its own token says the host got to it.
        let (ack, acked) = oneshot::channel();
        let giving_up = Ended::GivingUp {
            index: ended.index,
            ack,
        };
        if ended.to_host.send(giving_up).is_ok() {
            tokio::select! {
                biased;
                Ok(()) = acked => {}
                () = ctx.token.cancelled() => {}
            }
        }
    }
    let stop = AssertUnwindSafe(async { service.stop(&ctx).await })
        .catch_unwind()
        .await;
    let stop_error = match stop {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.message().to_owned()),
        Err(panic) => Some(format!("panicked: {}", panic_message(panic.as_ref()))),
    };
    let mut headers = vec![("state", HeaderValue::from(end.as_str()))];
    if let Some(e) = &stop_error {
        headers.push(("stop_error", error_header(e)));
    }
    {
        let mut r = lock(&record);
        r.state = end.clone();
        r.stop_error = stop_error;
    }
    lifecycle(sink, &name, "stopped", &headers);
    ended.done();
}

/// Whether service `i` depends, directly or not, on one of `gone`.
fn depends_on_any(i: usize, gone: &[usize], names: &[String], deps: &[Vec<String>]) -> bool {
    !gone.is_empty()
        && gone
            .iter()
            .any(|&g| dependents(g, names, deps).contains(&i))
}

/// The services that depend on service `of`, directly or through others.
fn dependents(of: usize, names: &[String], deps: &[Vec<String>]) -> Vec<usize> {
    let mut found: Vec<usize> = Vec::new();
    let mut frontier = vec![of];
    while let Some(next) = frontier.pop() {
        for (i, needs) in deps.iter().enumerate() {
            if needs.contains(&names[next]) && i != of && !found.contains(&i) {
                found.push(i);
                frontier.push(i);
            }
        }
    }
    found
}

/// Stops, in reverse start order, the started services that depend on service `of` (which
/// gave up), each within the shutdown timeout; one that does not stop in time is left to
/// the host's shutdown.
async fn stop_dependents(
    slots: &mut [Slot],
    of: usize,
    names: &[String],
    deps: &[Vec<String>],
    options: &HostOptions,
) {
    let dependents = dependents(of, names, deps);
    for slot in slots.iter().rev() {
        if !dependents.contains(&slot.index) || slot.ended.is_cancelled() {
            continue;
        }
        tracing::warn!(
            service = %names[slot.index],
            gave_up = %names[of],
            "stopping a service whose dependency gave up"
        );
        slot.token.cancel();
        let ended = slot.ended.cancelled();
        if tokio::time::timeout(options.shutdown_timeout, ended)
            .await
            .is_err()
        {
            tracing::error!(service = %names[slot.index], "did not stop in time after its dependency gave up");
        }
    }
}

/// Asks services to stop one at a time in reverse start order, all within the deadline;
/// past it, the one being waited for is aborted and the rest get `abort_grace` together.
async fn shutdown(slots: &mut [Slot], options: &HostOptions) {
    let deadline = Instant::now().checked_add(options.shutdown_timeout);
    let mut late = None;
    for (i, slot) in slots.iter_mut().enumerate().rev() {
        slot.token.cancel();
        let stopped = match deadline {
            Some(at) => tokio::time::timeout_at(at, &mut slot.task).await.is_ok(),
            None => {
                let _ = (&mut slot.task).await;
                true
            }
        };
        if !stopped {
            late = Some(i);
            break;
        }
    }
    let Some(late) = late else {
        return;
    };
    let overdue = &mut slots[late];
    overdue.task.abort();
    let _ = (&mut overdue.task).await;
    overdue.mark_aborted(options.sink.as_ref());
    tracing::error!(service = %overdue.report().name, "did not stop within the shutdown deadline; aborted");

    let rest = &mut slots[..late];
    for slot in rest.iter() {
        slot.token.cancel();
    }
    let grace = Instant::now().checked_add(options.abort_grace);
    for slot in rest.iter_mut().rev() {
        let stopped = match grace {
            Some(at) => tokio::time::timeout_at(at, &mut slot.task).await.is_ok(),
            None => {
                let _ = (&mut slot.task).await;
                true
            }
        };
        if !stopped {
            slot.task.abort();
            let _ = (&mut slot.task).await;
            slot.mark_aborted(options.sink.as_ref());
            tracing::error!(service = %slot.report().name, "did not stop within the grace period; aborted");
        }
    }
}

async fn trigger(
    token: &CancellationToken,
    os_signal: &mut BoxFuture<'static, &'static str>,
) -> ShutdownReason {
    tokio::select! {
        biased;
        () = token.cancelled() => ShutdownReason::Cancelled,
        signal = os_signal => ShutdownReason::OsSignal(signal),
    }
}

/// Resolves with the signal's name on Ctrl-C or SIGTERM. The handlers are registered here,
/// before any service starts, so a signal during start-up is not missed.
fn os_signals(enabled: bool) -> BoxFuture<'static, &'static str> {
    if !enabled {
        return Box::pin(std::future::pending());
    }
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => Box::pin(async move {
                tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                }
            }),
            (int, term) => {
                let error = int.err().or(term.err()).map(|e| e.to_string());
                tracing::warn!(?error, "could not listen for OS signals; use the token");
                Box::pin(std::future::pending())
            }
        }
    }
    #[cfg(not(unix))]
    {
        Box::pin(async {
            match tokio::signal::ctrl_c().await {
                Ok(()) => "Ctrl-C",
                Err(_) => std::future::pending().await,
            }
        })
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
