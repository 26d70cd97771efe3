//! Service host: dependency order, restarts with backoff, giving up, graceful shutdown.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral::SignalSink;
use ephemeral_atoms::service::{
    HostError, HostOptions, HostStatus, Service, ServiceContext, ServiceError, ServiceHost,
    ServiceState, ShutdownReason, Step,
};
use tokio::time::Instant;

type Log = Arc<Mutex<Vec<String>>>;

/// A service that logs its hooks and idles in its work step until asked to stop.
struct Logged {
    name: &'static str,
    deps: Vec<String>,
    log: Log,
}

impl Logged {
    fn new(name: &'static str, deps: &[&str], log: &Log) -> Self {
        Self {
            name,
            deps: deps.iter().map(|d| d.to_string()).collect(),
            log: Arc::clone(log),
        }
    }
}

impl Service for Logged {
    fn name(&self) -> &str {
        self.name
    }
    fn dependencies(&self) -> Vec<String> {
        self.deps.clone()
    }
    async fn start(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
        Ok(())
    }
    async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
        ctx.cancelled().await;
        Ok(Step::Continue)
    }
    async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        // A stop that takes a while: the next service must not be stopped before it ends.
        tokio::time::sleep(Duration::from_millis(10)).await;
        self.log.lock().unwrap().push(format!("stop {}", self.name));
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn services_start_in_dependency_order_and_stop_in_reverse() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(Logged::new("api", &["db", "cache"], &log))
        .unwrap()
        .add(Logged::new("db", &[], &log))
        .unwrap()
        .add(Logged::new("cache", &["db"], &log))
        .unwrap();
    let token = host.shutdown_token();
    let run = tokio::spawn(host.run());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        *log.lock().unwrap(),
        vec!["start db", "start cache", "start api"]
    );
    token.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec![
            "start db",
            "start cache",
            "start api",
            "stop api",
            "stop cache",
            "stop db"
        ]
    );
    assert_eq!(report.reason, ShutdownReason::Cancelled);
    let names: Vec<_> = report.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db", "cache", "api"]);
    assert!(
        report
            .services
            .iter()
            .all(|s| s.state == ServiceState::Stopped)
    );
}

#[tokio::test]
async fn a_dependency_cycle_is_a_typed_error() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(Logged::new("a", &["c"], &log)).unwrap();
    host.add(Logged::new("b", &["a"], &log)).unwrap();
    host.add(Logged::new("c", &["b"], &log)).unwrap();
    let err = host.run().await.unwrap_err();
    match &err {
        HostError::Cycle(path) => assert_eq!(path, &["a", "c", "b", "a"]),
        other => panic!("expected a cycle, got {other:?}"),
    }
    assert!(err.to_string().contains("a -> c -> b -> a"));
    assert!(log.lock().unwrap().is_empty(), "nothing may start");
}

#[tokio::test]
async fn unknown_dependencies_duplicates_and_bad_names_are_refused() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(Logged::new("a", &["ghost"], &log)).unwrap();
    assert!(matches!(
        host.add(Logged::new("a", &[], &log)),
        Err(HostError::Duplicate(_))
    ));
    assert!(matches!(
        host.add(Logged::new("bad name", &[], &log)),
        Err(HostError::InvalidName { .. })
    ));
    let err = host.run().await.unwrap_err();
    assert!(
        matches!(err, HostError::UnknownDependency { ref dependency, .. } if dependency == "ghost")
    );
}

/// Fails its first `failures` work steps, then finishes; records when each step ran.
struct Flaky {
    failures: u32,
    attempts: Arc<Mutex<Vec<Instant>>>,
    panics: bool,
}

impl Service for Flaky {
    fn name(&self) -> &str {
        "flaky"
    }
    async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
        self.attempts.lock().unwrap().push(Instant::now());
        if self.failures > 0 {
            self.failures -= 1;
            if self.panics {
                panic!("downstream exploded");
            }
            return Err(ServiceError::new("downstream unavailable"));
        }
        Ok(Step::Done)
    }
}

#[tokio::test(start_paused = true)]
async fn a_work_step_failing_three_times_is_restarted_with_backoff_and_reported() {
    let sink = SignalSink::default();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let mut host = ServiceHost::new(
        HostOptions::default()
            .backoff(Duration::from_millis(100), Duration::from_secs(5))
            .max_restarts(5)
            .signals(sink.clone()),
    );
    host.add(Flaky {
        failures: 3,
        attempts: Arc::clone(&attempts),
        panics: false,
    })
    .unwrap();
    let report = host.run().await.unwrap();

    let attempts = attempts.lock().unwrap();
    let gaps: Vec<_> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [100, 200, 400].map(Duration::from_millis),
        "exponential backoff between attempts"
    );
    let flaky = report.service("flaky").unwrap();
    assert_eq!(flaky.state, ServiceState::Finished);
    assert_eq!((flaky.failures, flaky.restarts), (3, 3));
    assert_eq!(flaky.last_error.as_deref(), Some("downstream unavailable"));
    assert_eq!(report.reason, ShutdownReason::AllEnded);
    assert_eq!(sink.count("service.flaky.failed"), 3);
    assert_eq!(sink.count("service.flaky.restarting"), 3);
    assert_eq!(sink.count("service.flaky.started"), 1);
    assert_eq!(sink.count("service.flaky.stopped"), 1);
}

#[tokio::test(start_paused = true)]
async fn the_host_gives_up_after_the_limit_and_says_why() {
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let mut host = ServiceHost::new(
        HostOptions::default()
            .max_restarts(2)
            .backoff(Duration::from_millis(10), Duration::from_millis(15)),
    );
    host.add(Flaky {
        failures: u32::MAX,
        attempts: Arc::clone(&attempts),
        panics: true,
    })
    .unwrap();
    let report = host.run().await.unwrap();
    let flaky = report.service("flaky").unwrap();
    assert_eq!(flaky.state, ServiceState::GaveUp);
    assert_eq!((flaky.failures, flaky.restarts), (3, 2));
    assert_eq!(
        flaky.last_error.as_deref(),
        Some("panicked: downstream exploded")
    );
    let attempts = attempts.lock().unwrap();
    let gaps: Vec<_> = attempts.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        [10, 15].map(Duration::from_millis),
        "backoff is capped"
    );
}

#[tokio::test(start_paused = true)]
async fn stop_all_on_give_up_stops_the_others() {
    let log = Log::default();
    let mut host = ServiceHost::new(
        HostOptions::default()
            .max_restarts(0)
            .stop_all_on_give_up(true),
    );
    host.add(Logged::new("steady", &[], &log)).unwrap();
    host.add(Flaky {
        failures: 1,
        attempts: Arc::default(),
        panics: false,
    })
    .unwrap();
    let report = host.run().await.unwrap();
    assert_eq!(report.reason, ShutdownReason::ServiceGaveUp("flaky".into()));
    assert_eq!(
        report.service("steady").unwrap().state,
        ServiceState::Stopped
    );
}

/// A service whose work step always fails, logging its start and stop hooks.
struct Failing {
    name: &'static str,
    log: Log,
}

impl Service for Failing {
    fn name(&self) -> &str {
        self.name
    }
    async fn start(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
        Ok(())
    }
    async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(ServiceError::new("down"))
    }
    async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        self.log.lock().unwrap().push(format!("stop {}", self.name));
        Ok(())
    }
}

/// A service that gives up takes what depends on it down first (a dependency is stopped
/// after its dependents, and a dependent never runs without it); the others keep running.
#[tokio::test(start_paused = true)]
async fn a_service_that_gives_up_is_stopped_after_its_dependents() {
    let log = Log::default();
    let token = tokio_util::sync::CancellationToken::new();
    let mut host = ServiceHost::new(
        HostOptions::default()
            .max_restarts(0)
            .cancel_on(token.clone()),
    );
    host.add(Failing {
        name: "db",
        log: Arc::clone(&log),
    })
    .unwrap();
    host.add(Logged::new("web", &["db"], &log)).unwrap();
    host.add(Logged::new("api", &["web"], &log)).unwrap();
    host.add(Logged::new("other", &[], &log)).unwrap();
    let stop_later = token.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        stop_later.cancel();
    });
    let report = host.run().await.unwrap();
    let log = log.lock().unwrap().clone();
    let at = |entry: &str| log.iter().position(|e| e == entry);
    let db_stop = at("stop db").expect("db stopped");
    for dependent in ["web", "api"] {
        assert!(at(&format!("start {dependent}")).is_some(), "{log:?}");
        let stopped = at(&format!("stop {dependent}")).expect("stopped");
        assert!(stopped < db_stop, "{dependent} stops before db: {log:?}");
        assert_eq!(
            report.service(dependent).unwrap().state,
            ServiceState::Stopped
        );
    }
    assert!(at("stop api") < at("stop web"), "{log:?}");
    assert_eq!(
        log.last().map(String::as_str),
        Some("stop other"),
        "{log:?}"
    );
    assert_eq!(report.service("db").unwrap().state, ServiceState::GaveUp);
    assert_eq!(report.reason, ShutdownReason::Cancelled);
}

/// A service whose dependency gave up before its turn to start is not started.
#[tokio::test(start_paused = true)]
async fn a_service_whose_dependency_gave_up_first_does_not_start() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default().max_restarts(0));
    host.add(Failing {
        name: "db",
        log: Arc::clone(&log),
    })
    .unwrap();
    host.add(Slow::new("cache", &log)).unwrap();
    host.add(Logged::new("web", &["db", "cache"], &log))
        .unwrap();
    let report = host.run().await.unwrap();
    let log = log.lock().unwrap().clone();
    assert!(!log.contains(&"start web".to_owned()), "{log:?}");
    assert_eq!(
        report.service("web").unwrap().state,
        ServiceState::NotStarted
    );
    assert_eq!(report.service("db").unwrap().state, ServiceState::GaveUp);
}

/// A service whose start takes a second, then ends its work at once.
struct Slow {
    name: &'static str,
    log: Log,
}

impl Slow {
    fn new(name: &'static str, log: &Log) -> Self {
        Self {
            name,
            log: Arc::clone(log),
        }
    }
}

impl Service for Slow {
    fn name(&self) -> &str {
        self.name
    }
    async fn start(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.log
            .lock()
            .unwrap()
            .push(format!("start {}", self.name));
        Ok(())
    }
    async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
        Ok(Step::Done)
    }
}

/// A service whose stop hook never finishes.
struct Stuck;

impl Service for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
        ctx.cancelled().await;
        Ok(Step::Continue)
    }
    async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        std::future::pending::<()>().await;
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn a_service_that_does_not_stop_is_aborted_at_the_deadline_and_named() {
    let log = Log::default();
    let token = tokio_util::sync::CancellationToken::new();
    let mut host = ServiceHost::new(
        HostOptions::default()
            .shutdown_timeout(Duration::from_secs(3))
            .abort_grace(Duration::from_millis(500))
            .cancel_on(token.clone()),
    );
    host.add(Logged::new("db", &[], &log)).unwrap();
    host.add(Stuck).unwrap();
    host.add(Logged::new("api", &[], &log)).unwrap();
    let run = tokio::spawn(host.run());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let began = Instant::now();
    token.cancel();
    let report = run.await.unwrap().unwrap();
    // 3 s deadline waiting for `stuck`, then `db` stops within the grace (10 ms).
    assert_eq!(began.elapsed(), Duration::from_millis(3010));
    assert_eq!(report.did_not_stop(), ["stuck"]);
    assert_eq!(report.service("api").unwrap().state, ServiceState::Stopped);
    assert_eq!(report.service("db").unwrap().state, ServiceState::Stopped);
    assert_eq!(
        *log.lock().unwrap(),
        vec!["start db", "start api", "stop api", "stop db"]
    );
}

/// A service whose start fails.
struct Broken;

impl Service for Broken {
    fn name(&self) -> &str {
        "broken"
    }
    fn dependencies(&self) -> Vec<String> {
        vec!["db".into()]
    }
    async fn start(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        Err("no config file".into())
    }
    async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
        Ok(Step::Done)
    }
}

#[tokio::test(start_paused = true)]
async fn a_failed_start_stops_what_was_started_and_is_a_typed_error() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(Broken).unwrap();
    host.add(Logged::new("db", &[], &log)).unwrap();
    host.add(Logged::new("api", &["broken"], &log)).unwrap();
    let err = host.run().await.unwrap_err();
    let HostError::StartFailed {
        service,
        reason,
        report,
    } = err
    else {
        panic!("expected StartFailed");
    };
    assert_eq!(
        (service.as_str(), reason.as_str()),
        ("broken", "no config file")
    );
    assert_eq!(*log.lock().unwrap(), vec!["start db", "stop db"]);
    assert_eq!(
        report.service("api").unwrap().state,
        ServiceState::NotStarted
    );
    assert_eq!(
        report.service("broken").unwrap().state,
        ServiceState::StartFailed
    );
}

#[test]
fn run_outside_a_runtime_is_a_typed_error() {
    let host = ServiceHost::new(HostOptions::default());
    // No runtime, so no executor either: poll once by hand; the check comes first.
    let mut run = std::pin::pin!(host.run());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match std::future::Future::poll(run.as_mut(), &mut cx) {
        std::task::Poll::Ready(Err(HostError::NoRuntime)) => {}
        other => panic!("expected NoRuntime, got {other:?}"),
    }
}

/// Raises its own signal while working, then finishes; panics in start when told to.
struct Reporter {
    panic_in_start: bool,
}

impl Service for Reporter {
    fn name(&self) -> &str {
        "reporter"
    }
    async fn start(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        if self.panic_in_start {
            panic!("bad wiring");
        }
        Ok(())
    }
    async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
        ctx.raise("report.ready")
            .map_err(|e| ServiceError::from_error(&e))?;
        assert!(ctx.raise("bad name").is_err());
        Ok(Step::Done)
    }
}

#[tokio::test(start_paused = true)]
async fn services_raise_their_own_signals_into_the_hosts_sink() {
    let sink = SignalSink::default();
    let mut host = ServiceHost::new(HostOptions::default().signals(sink.clone()));
    host.add(Reporter {
        panic_in_start: false,
    })
    .unwrap();
    let report = host.run().await.unwrap();
    assert_eq!(
        report.service("reporter").unwrap().state,
        ServiceState::Finished
    );
    assert!(sink.has_signal("report.ready"));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_start_is_a_start_failure_with_the_message() {
    let sink = SignalSink::default();
    let mut host = ServiceHost::new(HostOptions::default().signals(sink.clone()));
    host.add(Reporter {
        panic_in_start: true,
    })
    .unwrap();
    match host.run().await.unwrap_err() {
        HostError::StartFailed { reason, .. } => assert_eq!(reason, "panicked: bad wiring"),
        other => panic!("expected StartFailed, got {other:?}"),
    }
    assert_eq!(sink.count("service.reporter.failed"), 1);
    assert!(!sink.has_signal("service.reporter.started"));
}

/// Panics in the synchronous part of one of its methods, before returning the future:
/// `start` at once, `work` on its second call, `stop` at once (each when told to).
struct PanicsEarly {
    in_start: bool,
    in_work: bool,
    in_stop: bool,
    works: u32,
    log: Log,
}

impl PanicsEarly {
    fn new(log: &Log) -> Self {
        Self {
            in_start: false,
            in_work: false,
            in_stop: false,
            works: 0,
            log: Arc::clone(log),
        }
    }
}

impl Service for PanicsEarly {
    fn name(&self) -> &str {
        "early"
    }
    fn start(
        &mut self,
        _ctx: &ServiceContext,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        assert!(!self.in_start, "config missing");
        async { Ok(()) }
    }
    fn work(
        &mut self,
        _ctx: &ServiceContext,
    ) -> impl Future<Output = Result<Step, ServiceError>> + Send {
        self.works += 1;
        assert!(!(self.in_work && self.works == 2), "bad state");
        let works = self.works;
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(if works >= 3 {
                Step::Done
            } else {
                Step::Continue
            })
        }
    }
    fn stop(
        &mut self,
        _ctx: &ServiceContext,
    ) -> impl Future<Output = Result<(), ServiceError>> + Send {
        self.log.lock().unwrap().push("stop early".to_owned());
        assert!(!self.in_stop, "stop blew up");
        async { Ok(()) }
    }
}

/// A `start` that panics before returning its future is a start failure naming the service.
#[tokio::test(start_paused = true)]
async fn a_start_panicking_before_its_future_is_a_start_failure() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(PanicsEarly {
        in_start: true,
        ..PanicsEarly::new(&log)
    })
    .unwrap();
    let run = tokio::time::timeout(Duration::from_secs(3600), host.run());
    match run.await.expect("the run ends") {
        Err(HostError::StartFailed {
            service,
            reason,
            report,
        }) => {
            assert_eq!(service, "early");
            assert_eq!(reason, "panicked: config missing");
            assert_eq!(
                report.service("early").unwrap().state,
                ServiceState::StartFailed
            );
        }
        other => panic!("expected StartFailed, got {other:?}"),
    }
}

/// A `work` that panics before returning its future is a failed step: counted, restarted
/// after the backoff, and the service goes on.
#[tokio::test(start_paused = true)]
async fn a_work_step_panicking_before_its_future_is_restarted() {
    let log = Log::default();
    let mut host = ServiceHost::new(
        HostOptions::default().backoff(Duration::from_millis(100), Duration::from_secs(1)),
    );
    host.add(PanicsEarly {
        in_work: true,
        ..PanicsEarly::new(&log)
    })
    .unwrap();
    let run = tokio::time::timeout(Duration::from_secs(3600), host.run());
    let report = run.await.expect("the run ends").unwrap();
    assert_eq!(report.reason, ShutdownReason::AllEnded);
    let early = report.service("early").unwrap();
    assert_eq!(early.state, ServiceState::Finished);
    assert_eq!((early.failures, early.restarts), (1, 1));
    assert_eq!(early.last_error.as_deref(), Some("panicked: bad state"));
    assert_eq!(*log.lock().unwrap(), vec!["stop early"]);
}

/// A `stop` that panics before returning its future is a stop error; the run still ends.
#[tokio::test(start_paused = true)]
async fn a_stop_panicking_before_its_future_is_a_stop_error() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(PanicsEarly {
        in_stop: true,
        ..PanicsEarly::new(&log)
    })
    .unwrap();
    let run = tokio::time::timeout(Duration::from_secs(3600), host.run());
    let report = run.await.expect("the run ends").unwrap();
    assert_eq!(report.reason, ShutdownReason::AllEnded);
    let early = report.service("early").unwrap();
    assert_eq!(early.state, ServiceState::Finished);
    assert_eq!(early.stop_error.as_deref(), Some("panicked: stop blew up"));
}

/// Counts its work steps (one a second) and whether its stop hook ran and it was dropped.
struct Ticking {
    ticks: Arc<Mutex<u32>>,
    stopped: Arc<Mutex<bool>>,
    dropped: Arc<Mutex<bool>>,
}

impl Service for Ticking {
    fn name(&self) -> &str {
        "ticking"
    }
    async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        *self.ticks.lock().unwrap() += 1;
        Ok(Step::Continue)
    }
    async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        *self.stopped.lock().unwrap() = true;
        Ok(())
    }
}

impl Drop for Ticking {
    fn drop(&mut self) {
        *self.dropped.lock().unwrap() = true;
    }
}

/// Dropping the run's future aborts the services (dropping them) without their stop hooks.
#[tokio::test(start_paused = true)]
async fn dropping_the_run_future_aborts_the_services() {
    let ticks = Arc::new(Mutex::new(0));
    let stopped = Arc::new(Mutex::new(false));
    let dropped = Arc::new(Mutex::new(false));
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(Ticking {
        ticks: Arc::clone(&ticks),
        stopped: Arc::clone(&stopped),
        dropped: Arc::clone(&dropped),
    })
    .unwrap();
    let token = host.shutdown_token();
    let run = tokio::time::timeout(Duration::from_millis(5500), host.run());
    assert!(run.await.is_err(), "the run does not end by itself");
    let ticks_at_drop = *ticks.lock().unwrap();
    assert_eq!(ticks_at_drop, 5);
    token.cancel();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(
        *ticks.lock().unwrap(),
        ticks_at_drop,
        "no work after the drop"
    );
    assert!(*dropped.lock().unwrap(), "the service was dropped");
    assert!(!*stopped.lock().unwrap(), "no stop hook");
}

/// Idles in its work step until asked to stop, or finishes after `finishes_after`; its stop
/// hook takes `stop_takes`.
struct Lingering {
    name: &'static str,
    deps: Vec<String>,
    finishes_after: Option<Duration>,
    stop_takes: Duration,
    log: Log,
}

impl Lingering {
    fn new(name: &'static str, deps: &[&str], log: &Log) -> Self {
        Self {
            name,
            deps: deps.iter().map(|d| d.to_string()).collect(),
            finishes_after: None,
            stop_takes: Duration::ZERO,
            log: Arc::clone(log),
        }
    }
}

impl Service for Lingering {
    fn name(&self) -> &str {
        self.name
    }
    fn dependencies(&self) -> Vec<String> {
        self.deps.clone()
    }
    async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
        match self.finishes_after {
            Some(after) => {
                tokio::time::sleep(after).await;
                Ok(Step::Done)
            }
            None => {
                ctx.cancelled().await;
                Ok(Step::Continue)
            }
        }
    }
    async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        self.log
            .lock()
            .unwrap()
            .push(format!("stop {} begins", self.name));
        tokio::time::sleep(self.stop_takes).await;
        self.log
            .lock()
            .unwrap()
            .push(format!("stop {} ends", self.name));
        Ok(())
    }
}

/// A shutdown requested while the host stops the dependents of a service that gave up
/// begins at once, and `shutdown_timeout` bounds it from the cancel.
#[tokio::test(start_paused = true)]
async fn a_cancel_while_dependents_stop_shuts_down_at_once_within_the_deadline() {
    let log = Log::default();
    let token = tokio_util::sync::CancellationToken::new();
    let mut host = ServiceHost::new(
        HostOptions::default()
            .max_restarts(0)
            .shutdown_timeout(Duration::from_secs(30))
            .cancel_on(token.clone()),
    );
    host.add(Failing {
        name: "db",
        log: Arc::clone(&log),
    })
    .unwrap();
    host.add(Lingering {
        stop_takes: Duration::from_secs(60),
        ..Lingering::new("api", &["db"], &log)
    })
    .unwrap();
    host.add(Logged::new("other", &[], &log)).unwrap();
    let run = tokio::spawn(tokio::time::timeout(Duration::from_secs(3600), host.run()));
    // db gives up after 50 ms; the host is then waiting for api's 60 s stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(log.lock().unwrap().contains(&"stop api begins".to_owned()));
    let began = Instant::now();
    token.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        log.lock().unwrap().contains(&"stop other".to_owned()),
        "other is asked to stop at once: {:?}",
        log.lock().unwrap()
    );
    let report = run.await.unwrap().expect("the run ends").unwrap();
    assert_eq!(began.elapsed(), Duration::from_secs(30));
    assert_eq!(report.reason, ShutdownReason::Cancelled);
    assert_eq!(report.did_not_stop(), ["api"]);
    assert_eq!(report.service("db").unwrap().state, ServiceState::GaveUp);
    assert_eq!(
        report.service("other").unwrap().state,
        ServiceState::Stopped
    );
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log.last().map(String::as_str),
        Some("stop db"),
        "db stops last, once api was aborted: {log:?}"
    );
}

/// A host whose token is cancelled before `run` starts nothing.
#[tokio::test(start_paused = true)]
async fn a_run_cancelled_before_it_begins_starts_nothing() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(Logged::new("api", &["db"], &log)).unwrap();
    host.add(Logged::new("db", &[], &log)).unwrap();
    host.shutdown_token().cancel();
    let report = host.run().await.unwrap();
    assert!(log.lock().unwrap().is_empty(), "{:?}", log.lock().unwrap());
    assert_eq!(report.reason, ShutdownReason::Cancelled);
    let states: Vec<_> = report
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.state.clone()))
        .collect();
    assert_eq!(
        states,
        [
            ("db", ServiceState::NotStarted),
            ("api", ServiceState::NotStarted)
        ]
    );
}

/// `max_restarts(n)` gives up after `n + 1` failures in a row: the first try and n restarts.
#[tokio::test(start_paused = true)]
async fn max_restarts_n_gives_up_after_n_plus_one_failures() {
    for n in [0, 1, 3] {
        let attempts = Arc::new(Mutex::new(Vec::new()));
        let mut host = ServiceHost::new(HostOptions::default().max_restarts(n));
        host.add(Flaky {
            failures: u32::MAX,
            attempts: Arc::clone(&attempts),
            panics: false,
        })
        .unwrap();
        let report = host.run().await.unwrap();
        let flaky = report.service("flaky").unwrap();
        assert_eq!(flaky.state, ServiceState::GaveUp, "max_restarts({n})");
        assert_eq!(
            (flaky.failures, flaky.restarts),
            (n + 1, n),
            "max_restarts({n})"
        );
        assert_eq!(
            attempts.lock().unwrap().len(),
            n as usize + 1,
            "max_restarts({n})"
        );
    }
}

/// A dependency that finishes by itself (`Step::Done`) runs its stop hook at once; the
/// services that depend on it keep running until shutdown.
#[tokio::test(start_paused = true)]
async fn a_finished_dependency_stops_at_once_and_its_dependents_keep_running() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(Lingering {
        finishes_after: Some(Duration::from_secs(1)),
        ..Lingering::new("migrate", &[], &log)
    })
    .unwrap();
    host.add(Lingering::new("api", &["migrate"], &log)).unwrap();
    let token = host.shutdown_token();
    let run = tokio::spawn(host.run());
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        *log.lock().unwrap(),
        vec!["stop migrate begins", "stop migrate ends"],
        "api is still running"
    );
    token.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        report.service("migrate").unwrap().state,
        ServiceState::Finished
    );
    assert_eq!(report.service("api").unwrap().state, ServiceState::Stopped);
    assert_eq!(
        log.lock().unwrap()[2..],
        ["stop api begins", "stop api ends"]
    );
}

/// When a service gives up and a dependent's stop outlasts `shutdown_timeout`, the deadline
/// wins: the stop hook of the one that gave up runs while the dependent is still stopping.
#[tokio::test(start_paused = true)]
async fn a_service_that_gave_up_stops_at_the_deadline_while_a_dependent_still_stops() {
    let log = Log::default();
    let mut host = ServiceHost::new(
        HostOptions::default()
            .max_restarts(0)
            .shutdown_timeout(Duration::from_secs(5)),
    );
    host.add(Failing {
        name: "db",
        log: Arc::clone(&log),
    })
    .unwrap();
    host.add(Lingering {
        stop_takes: Duration::from_secs(20),
        ..Lingering::new("api", &["db"], &log)
    })
    .unwrap();
    let token = host.shutdown_token();
    let run = tokio::spawn(host.run());
    // db gives up at 50 ms; api's stop runs until 20.05 s; the deadline is 5.05 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        *log.lock().unwrap(),
        vec!["start db", "stop api begins", "stop db"]
    );
    tokio::time::sleep(Duration::from_secs(20)).await;
    token.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        vec!["start db", "stop api begins", "stop db", "stop api ends"]
    );
    assert_eq!(report.service("db").unwrap().state, ServiceState::GaveUp);
    assert_eq!(report.service("api").unwrap().state, ServiceState::Stopped);
}

/// A work step that completes without waiting (it polls something and returns
/// `Step::Continue`); counts its steps.
struct Spinner {
    steps: Arc<std::sync::atomic::AtomicU64>,
}

impl Service for Spinner {
    fn name(&self) -> &str {
        "spinner"
    }
    async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
        self.steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Step::Continue)
    }
}

/// A work step that never waits does not take the runtime over: on a current-thread
/// runtime the task that cancels the host still runs, and the host shuts down.
#[test]
fn a_work_step_that_never_waits_does_not_starve_the_shutdown() {
    let steps = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&steps);
    let (done, report) = std::sync::mpsc::channel();
    // The host runs on its own thread, so that a starved runtime fails this test instead of
    // hanging the test binary.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let result = runtime.block_on(async move {
            let mut host = ServiceHost::new(HostOptions::default());
            host.add(Spinner { steps: counted }).unwrap();
            let token = host.shutdown_token();
            let watched = Arc::clone(&steps);
            tokio::spawn(async move {
                while watched.load(std::sync::atomic::Ordering::Relaxed) < 1_000 {
                    tokio::task::yield_now().await;
                }
                token.cancel();
            });
            host.run().await
        });
        let _ = done.send(result);
    });
    // Real time, only as a guard against the hang this test is about.
    let report = report
        .recv_timeout(Duration::from_secs(30))
        .expect("the host did not shut down: the spinning work step starved the runtime")
        .unwrap();
    assert_eq!(report.reason, ShutdownReason::Cancelled);
    assert_eq!(
        report.service("spinner").unwrap().state,
        ServiceState::Stopped
    );
}

/// A service whose start waits for its dependency (here: up to 30 s, or until it is asked
/// to stop, which its start then reports as `start_error`, if any).
struct Waiting {
    name: &'static str,
    deps: Vec<String>,
    start_error: Option<&'static str>,
    log: Log,
}

impl Waiting {
    fn new(name: &'static str, deps: &[&str], log: &Log) -> Self {
        Self {
            name,
            deps: deps.iter().map(|d| d.to_string()).collect(),
            start_error: None,
            log: Arc::clone(log),
        }
    }
}

impl Service for Waiting {
    fn name(&self) -> &str {
        self.name
    }
    fn dependencies(&self) -> Vec<String> {
        self.deps.clone()
    }
    async fn start(&mut self, ctx: &ServiceContext) -> Result<(), ServiceError> {
        tokio::select! {
            () = ctx.cancelled() => {
                self.log.lock().unwrap().push(format!("start {} cancelled", self.name));
                match self.start_error {
                    Some(e) => Err(e.into()),
                    None => Ok(()),
                }
            }
            () = tokio::time::sleep(Duration::from_secs(30)) => {
                self.log.lock().unwrap().push(format!("start {}", self.name));
                Ok(())
            }
        }
    }
    async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
        ctx.cancelled().await;
        Ok(Step::Continue)
    }
    async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        self.log.lock().unwrap().push(format!("stop {}", self.name));
        Ok(())
    }
}

/// With `stop_all_on_give_up`, a service that gives up while another one is still starting
/// shuts the host down at once: the starting one is asked to stop then, not 29 s later.
#[tokio::test(start_paused = true)]
async fn a_give_up_during_a_start_shuts_down_at_once_with_stop_all() {
    let log = Log::default();
    let mut host = ServiceHost::new(
        HostOptions::default()
            .max_restarts(0)
            .stop_all_on_give_up(true),
    );
    host.add(Lingering {
        finishes_after: None,
        ..Lingering::new("db", &[], &log)
    })
    .unwrap();
    host.add(Failing {
        name: "queue",
        log: Arc::clone(&log),
    })
    .unwrap();
    host.add(Waiting::new("api", &["db"], &log)).unwrap();
    let began = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(3600), host.run());
    let report = run.await.expect("the run ends").unwrap();
    // queue fails (and gives up) 50 ms in, while api's start waits.
    assert_eq!(began.elapsed(), Duration::from_millis(50));
    assert_eq!(report.reason, ShutdownReason::ServiceGaveUp("queue".into()));
    assert_eq!(report.service("queue").unwrap().state, ServiceState::GaveUp);
    assert_eq!(report.service("api").unwrap().state, ServiceState::Stopped);
    assert_eq!(report.service("db").unwrap().state, ServiceState::Stopped);
    let log = log.lock().unwrap().clone();
    assert_eq!(log[..3], ["start queue", "start api cancelled", "stop api"]);
}

/// A service that gives up while a service depending on it is still starting: the starting
/// one is asked to stop at once, and the one that gave up stops right after it. A start that
/// then fails (it was asked to stop) does not abort the host's start-up: the services after
/// it still start.
#[tokio::test(start_paused = true)]
async fn a_give_up_during_a_dependents_start_stops_that_dependent_at_once() {
    for start_error in [None, Some("db went away")] {
        let log = Log::default();
        let mut host = ServiceHost::new(HostOptions::default().max_restarts(0));
        host.add(Failing {
            name: "db",
            log: Arc::clone(&log),
        })
        .unwrap();
        host.add(Waiting {
            start_error,
            ..Waiting::new("api", &["db"], &log)
        })
        .unwrap();
        host.add(Logged::new("other", &[], &log)).unwrap();
        let token = host.shutdown_token();
        let run = tokio::spawn(host.run());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut expected = vec!["start db", "start api cancelled"];
        if start_error.is_none() {
            expected.push("stop api");
        }
        expected.extend(["stop db", "start other"]);
        assert_eq!(*log.lock().unwrap(), expected, "{start_error:?}");
        token.cancel();
        let report = run.await.unwrap().unwrap();
        assert_eq!(report.reason, ShutdownReason::Cancelled, "{start_error:?}");
        assert_eq!(report.service("db").unwrap().state, ServiceState::GaveUp);
        assert_eq!(
            report.service("api").unwrap().state,
            if start_error.is_some() {
                ServiceState::StartFailed
            } else {
                ServiceState::Stopped
            }
        );
        assert_eq!(
            report.service("other").unwrap().state,
            ServiceState::Stopped
        );
    }
}

/// A service with any name, doing nothing.
struct Named(String);

impl Service for Named {
    fn name(&self) -> &str {
        &self.0
    }
    async fn work(&mut self, _ctx: &ServiceContext) -> Result<Step, ServiceError> {
        Ok(Step::Done)
    }
}

/// A bad service name is refused with what is wrong with the name itself: an empty name,
/// the offset of a bad character within the service name, and the length limit of a service
/// name (236 bytes, so that `service.<name>.restarting` fits in 255).
#[test]
fn bad_service_names_are_refused_with_what_is_wrong_with_them() {
    let mut host = ServiceHost::new(HostOptions::default());
    let refused = |host: &mut ServiceHost, name: &str| match host.add(Named(name.to_owned())) {
        Err(e) => e,
        Ok(_) => panic!("`{name}` was accepted"),
    };
    let empty = refused(&mut host, "");
    assert!(
        matches!(
            &empty,
            HostError::InvalidName {
                reason: ephemeral::NameError::Empty,
                ..
            }
        ),
        "{empty:?}"
    );
    let space = refused(&mut host, "bad name");
    assert!(
        matches!(
            &space,
            HostError::InvalidName {
                reason: ephemeral::NameError::Whitespace { at: 3 },
                ..
            }
        ),
        "{space:?}"
    );
    assert!(space.to_string().contains("at byte 3"), "{space}");
    let long = "n".repeat(237);
    let too_long = refused(&mut host, &long);
    assert!(
        matches!(
            &too_long,
            HostError::NameTooLong {
                len: 237,
                max: 236,
                ..
            }
        ),
        "{too_long:?}"
    );
    let message = too_long.to_string();
    assert!(
        message.contains("237 bytes") && message.contains("236"),
        "{message}"
    );
    host.add(Named("n".repeat(236))).unwrap();
    host.add(Named("db.primary".to_owned())).unwrap();
}

/// The report's text shows a failed stop hook, not only the work step's last error.
#[tokio::test(start_paused = true)]
async fn the_printed_report_shows_stop_errors() {
    let log = Log::default();
    let mut host = ServiceHost::new(HostOptions::default());
    host.add(PanicsEarly {
        in_stop: true,
        ..PanicsEarly::new(&log)
    })
    .unwrap();
    let report = host.run().await.unwrap();
    let text = report.to_string();
    assert!(
        text.contains("stop error: panicked: stop blew up"),
        "{text}"
    );
}

/// A restart still waiting out its backoff when the host shuts down never happens, so it is
/// not counted: `restarts` is how often the work step really ran again.
#[tokio::test(start_paused = true)]
async fn a_restart_cut_short_by_shutdown_is_not_counted() {
    let sink = SignalSink::default();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let mut host = ServiceHost::new(
        HostOptions::default()
            .backoff(Duration::from_secs(10), Duration::from_secs(10))
            .signals(sink.clone()),
    );
    host.add(Flaky {
        failures: u32::MAX,
        attempts: Arc::clone(&attempts),
        panics: false,
    })
    .unwrap();
    let token = host.shutdown_token();
    let run = tokio::spawn(host.run());
    // The first step fails at once; the restart would come 10 s later.
    tokio::time::sleep(Duration::from_secs(1)).await;
    token.cancel();
    let report = run.await.unwrap().unwrap();
    assert_eq!(attempts.lock().unwrap().len(), 1);
    let flaky = report.service("flaky").unwrap();
    assert_eq!(flaky.state, ServiceState::Stopped);
    assert_eq!((flaky.failures, flaky.restarts), (1, 0));
    assert_eq!(
        sink.count("service.flaky.restarting"),
        1,
        "it was restarting"
    );
}

/// The lifecycle signals say what happened: a failure its phase, its error and how many in
/// a row, and whether the service gives up; a restart its count; a stop the state the
/// service ended in; a start failure and a service aborted at the deadline a `.failed` with
/// their phase (the aborted one raises no `.stopped`).
#[tokio::test(start_paused = true)]
async fn lifecycle_signals_carry_what_happened() {
    let sink = SignalSink::default();
    let mut failed = sink.subscribe("service.*.failed");
    let mut host = ServiceHost::new(
        HostOptions::default()
            .max_restarts(1)
            .backoff(Duration::from_millis(10), Duration::from_millis(10))
            .signals(sink.clone()),
    );
    host.add(Flaky {
        failures: u32::MAX,
        attempts: Arc::default(),
        panics: false,
    })
    .unwrap();
    let report = tokio::time::timeout(Duration::from_secs(600), host.run())
        .await
        .expect("flaky host ends")
        .unwrap();
    assert_eq!(report.service("flaky").unwrap().state, ServiceState::GaveUp);
    let text = |s: &ephemeral::Signal, key: &str| s.header(key).map(ToString::to_string);
    for (in_a_row, gave_up) in [(1, "false"), (2, "true")] {
        let signal = tokio::time::timeout(Duration::from_secs(60), failed.recv())
            .await
            .expect("a failed signal")
            .unwrap()
            .expect("no lag");
        assert_eq!(text(&signal, "phase").as_deref(), Some("work"));
        assert_eq!(
            text(&signal, "error").as_deref(),
            Some("downstream unavailable")
        );
        assert_eq!(text(&signal, "in_a_row"), Some(in_a_row.to_string()));
        assert_eq!(text(&signal, "gave_up").as_deref(), Some(gave_up));
    }
    let restarting = sink.latest("service.flaky.restarting").unwrap();
    assert_eq!(text(&restarting, "in_a_row").as_deref(), Some("1"));
    let stopped = sink.latest("service.flaky.stopped").unwrap();
    assert_eq!(text(&stopped, "state").as_deref(), Some("gave_up"));

    let mut host = ServiceHost::new(HostOptions::default().signals(sink.clone()));
    host.add(Broken).unwrap();
    host.add(Logged::new("db", &[], &Log::default())).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(600), host.run())
        .await
        .expect("broken host ends");
    let signal = tokio::time::timeout(Duration::from_secs(60), failed.recv())
        .await
        .expect("a failed signal")
        .unwrap()
        .expect("no lag");
    assert_eq!(text(&signal, "phase").as_deref(), Some("start"));
    assert!(text(&signal, "error").is_some_and(|e| !e.is_empty()));

    let token = tokio_util::sync::CancellationToken::new();
    let mut host = ServiceHost::new(
        HostOptions::default()
            .shutdown_timeout(Duration::from_secs(1))
            .cancel_on(token.clone())
            .signals(sink.clone()),
    );
    host.add(Stuck).unwrap();
    let run = tokio::spawn(host.run());
    tokio::time::sleep(Duration::from_millis(100)).await;
    token.cancel();
    tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("stuck host ends")
        .unwrap()
        .unwrap();
    let signal = tokio::time::timeout(Duration::from_secs(60), failed.recv())
        .await
        .expect("a failed signal")
        .unwrap()
        .expect("no lag");
    assert_eq!(signal.name().as_str(), "service.stuck.failed");
    assert_eq!(text(&signal, "phase").as_deref(), Some("stop"));
    assert!(!sink.has_signal("service.stuck.stopped"));
}

/// The printed report says why the host stopped and each service's state in words, not as
/// Rust debug output (`OsSignal("SIGTERM")`, `GaveUp`).
#[tokio::test(start_paused = true)]
async fn the_printed_report_says_why_in_words() {
    let mut host = ServiceHost::new(
        HostOptions::default()
            .max_restarts(0)
            .stop_all_on_give_up(true),
    );
    host.add(Flaky {
        failures: u32::MAX,
        attempts: Arc::default(),
        panics: false,
    })
    .unwrap();
    let report = host.run().await.unwrap();
    let text = report.to_string();
    assert!(
        text.starts_with("shutdown: service `flaky` gave up\n"),
        "{text}"
    );
    assert!(
        text.contains("  flaky: gave_up, 0 restart(s), 1 failure(s)"),
        "{text}"
    );
    assert_eq!(
        ShutdownReason::OsSignal("SIGTERM").to_string(),
        "SIGTERM received"
    );
    assert_eq!(
        ShutdownReason::StartFailed("no config file".into()).to_string(),
        "a start hook failed: no config file"
    );
}

/// Takes a second to start, then idles until asked to stop.
struct SlowStart(&'static str);

impl Service for SlowStart {
    fn name(&self) -> &str {
        self.0
    }
    async fn start(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }
    async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
        ctx.cancelled().await;
        Ok(Step::Continue)
    }
}

/// What each service reads as, by name, in the order added.
fn states(status: &HostStatus) -> Vec<(String, ServiceState, u32, u32)> {
    status
        .services()
        .into_iter()
        .map(|s| (s.name, s.state, s.failures, s.restarts))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_status_shows_each_service_as_it_stands_while_the_host_runs() {
    let log = Log::default();
    let mut host = ServiceHost::new(
        HostOptions::default()
            .backoff(Duration::from_millis(100), Duration::from_secs(5))
            .max_restarts(5),
    );
    host.add(Flaky {
        failures: 3,
        attempts: Arc::default(),
        panics: false,
    })
    .unwrap();
    host.add(SlowStart("db")).unwrap();
    host.add(Logged::new("api", &["db"], &log)).unwrap();
    let (status, shutdown) = (host.status(), host.shutdown_token());
    let row = |name: &str, state, failures, restarts| (name.to_owned(), state, failures, restarts);
    assert_eq!(
        states(&status),
        [
            row("flaky", ServiceState::NotStarted, 0, 0),
            row("db", ServiceState::NotStarted, 0, 0),
            row("api", ServiceState::NotStarted, 0, 0),
        ],
        "before run: added, not started"
    );
    let running = tokio::spawn(host.run());

    // Flaky's steps fail at 0, 0.1 and 0.3 s and succeed at 0.7 s; db starts until 1 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        states(&status),
        [
            row("flaky", ServiceState::Running, 3, 2),
            row("db", ServiceState::NotStarted, 0, 0),
            row("api", ServiceState::NotStarted, 0, 0),
        ],
        "at 0.5 s: flaky between restarts, db still starting"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        states(&status),
        [
            row("flaky", ServiceState::Finished, 3, 3),
            row("db", ServiceState::Running, 0, 0),
            row("api", ServiceState::Running, 0, 0),
        ],
        "at 2.5 s"
    );

    shutdown.cancel();
    let report = running.await.unwrap().unwrap();
    for service in status.services() {
        assert_eq!(
            Some(&service),
            report.service(&service.name),
            "after run: as the report"
        );
    }
    assert_eq!(status.service("api").unwrap().state, ServiceState::Stopped);
    assert_eq!(status.service("ghost"), None);
}

/// Durations past what the clock holds (`Duration::MAX` for the shutdown deadline, the abort
/// grace and the restart backoff) do no overflowing arithmetic: a failed step waits for its
/// restart until the shutdown, which waits for every stop hook.
#[tokio::test(start_paused = true)]
async fn durations_past_the_clock_wait_without_overflow() {
    struct FailsOnce(bool);
    impl Service for FailsOnce {
        fn name(&self) -> &str {
            "fails-once"
        }
        async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
            if !self.0 {
                self.0 = true;
                return Err("down".into());
            }
            ctx.cancelled().await;
            Ok(Step::Continue)
        }
        async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
    }
    let mut host = ServiceHost::new(
        HostOptions::default()
            .shutdown_timeout(Duration::MAX)
            .abort_grace(Duration::MAX)
            .backoff(Duration::MAX, Duration::MAX),
    );
    host.add(FailsOnce(false)).unwrap();
    let token = host.shutdown_token();
    let status = host.status();
    let run = tokio::spawn(host.run());
    tokio::time::sleep(Duration::from_secs(365 * 86_400)).await;
    let now = status.service("fails-once").unwrap();
    assert_eq!(
        (now.failures, now.restarts),
        (1, 0),
        "still waiting to restart"
    );
    token.cancel();
    let stopping = Instant::now();
    let report = run.await.unwrap().unwrap();
    assert_eq!(
        stopping.elapsed(),
        Duration::from_secs(3600),
        "the stop hook ran whole"
    );
    let service = report.service("fails-once").unwrap();
    assert_eq!(
        (&service.state, service.restarts),
        (&ServiceState::Stopped, 0)
    );
}
