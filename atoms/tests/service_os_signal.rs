//! SIGTERM shuts the host down gracefully. In its own test binary: once a handler is
//! installed the process keeps it, and a stray SIGTERM must never hit another test.

#![cfg(unix)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ephemeral_atoms::service::{
    HostOptions, Service, ServiceContext, ServiceError, ServiceHost, ServiceState, ShutdownReason,
    Step,
};

struct Worker {
    stopped: Arc<Mutex<bool>>,
}

impl Service for Worker {
    fn name(&self) -> &str {
        "worker"
    }
    async fn start(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        // The host installs its handlers before starting services, so this is safe.
        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .map_err(|e| ServiceError::from_error(&e))?;
        if status.success() {
            Ok(())
        } else {
            Err("kill failed".into())
        }
    }
    async fn work(&mut self, ctx: &ServiceContext) -> Result<Step, ServiceError> {
        ctx.cancelled().await;
        Ok(Step::Continue)
    }
    async fn stop(&mut self, _ctx: &ServiceContext) -> Result<(), ServiceError> {
        *self.stopped.lock().unwrap() = true;
        Ok(())
    }
}

#[tokio::test]
async fn sigterm_shuts_the_host_down_gracefully() {
    let stopped = Arc::new(Mutex::new(false));
    let mut host = ServiceHost::new(HostOptions::default().shutdown_on_os_signals(true));
    host.add(Worker {
        stopped: Arc::clone(&stopped),
    })
    .unwrap();
    // Real time here (a real signal); the bound is generous and only guards against a hang.
    let report = tokio::time::timeout(Duration::from_secs(30), host.run())
        .await
        .expect("the host did not shut down on SIGTERM")
        .unwrap();
    assert_eq!(report.reason, ShutdownReason::OsSignal("SIGTERM"));
    assert_eq!(
        report.service("worker").unwrap().state,
        ServiceState::Stopped
    );
    assert!(*stopped.lock().unwrap());
}
