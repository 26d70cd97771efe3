//! Helpers shared by the CLI tests: a bus in a temporary directory and the built binary.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use ephemeral_bus::{Bus, BusOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The generous bound for anything that crosses processes on a loaded 2-core machine.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A bus named `name` in `dir`, opened by the test process.
pub async fn bus(dir: &Path, name: &str) -> Bus {
    Bus::open_with(name, BusOptions::default().dir(dir))
        .await
        .expect("open the test bus")
}

/// The `ephemeral` binary, pointed at buses under `dir`.
pub fn cli(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ephemeral"));
    command
        .env("EPHEMERAL_BUS_DIR", dir)
        .env_remove("EPHEMERAL_BUS")
        .env_remove("EPHEMERAL_NATS")
        .env_remove("EPHEMERAL_NATS_PREFIX")
        .env_remove("EPHEMERAL_NATS_CREDS")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs the binary to completion (at most `PATIENCE`): exit code, stdout, stderr.
pub async fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = tokio::time::timeout(PATIENCE, cli(dir).args(args).output())
        .await
        .unwrap_or_else(|_| panic!("`ephemeral {}` did not finish", args.join(" ")))
        .expect("run the binary");
    (
        output
            .status
            .code()
            .expect("exited with a code, not a signal"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Spawns the binary with piped output and waits until its stderr prints a line containing
/// `ready` (the reader is returned, for later lines).
pub async fn spawn_ready(
    dir: &Path,
    args: &[&str],
    ready: &str,
) -> (Child, BufReader<tokio::process::ChildStderr>) {
    let mut child = spawn_piped(dir, args);
    let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
    (child, wait_for_line(stderr, args, ready).await)
}

/// [`spawn_ready`] for a command that prints its ready line on stdout (`hold`).
pub async fn spawn_ready_stdout(
    dir: &Path,
    args: &[&str],
    ready: &str,
) -> (Child, BufReader<tokio::process::ChildStdout>) {
    let mut child = spawn_piped(dir, args);
    let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    (child, wait_for_line(stdout, args, ready).await)
}

fn spawn_piped(dir: &Path, args: &[&str]) -> Child {
    cli(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the binary")
}

/// Reads lines until one contains `ready` (at most `PATIENCE`).
pub async fn wait_for_line<R: tokio::io::AsyncBufRead + Unpin>(
    mut stderr: R,
    args: &[&str],
    ready: &str,
) -> R {
    let mut line = String::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            line.clear();
            let n = stderr.read_line(&mut line).await.expect("read output");
            assert!(
                n > 0,
                "`ephemeral {}` exited before `{ready}`",
                args.join(" ")
            );
            if line.contains(ready) {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("`ephemeral {}` never printed `{ready}`", args.join(" ")));
    stderr
}

/// Polls `condition` every 20 ms until it holds or `PATIENCE` runs out.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The binary spawned in a fresh pseudo-terminal (stdout is a terminal) on the bus
/// directory `dir`, with no bus or NATS variable of the caller's environment: the child,
/// a reader of everything it writes, and the terminal's master side (kept open until the
/// reading ends).
fn spawn_in_pty(
    dir: &Path,
    args: &[&str],
) -> (
    Box<dyn portable_pty::Child + Send + Sync>,
    Box<dyn std::io::Read + Send>,
    Box<dyn portable_pty::MasterPty + Send>,
) {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 200,
            pixel_width: 0,
            pixel_height: 0,
        })
        .expect("a pty");
    let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_ephemeral"));
    command.args(args);
    command.env("EPHEMERAL_BUS_DIR", dir);
    for var in [
        "EPHEMERAL_BUS",
        "EPHEMERAL_NATS",
        "EPHEMERAL_NATS_PREFIX",
        "EPHEMERAL_NATS_CREDS",
    ] {
        command.env_remove(var);
    }
    let child = pair.slave.spawn_command(command).expect("spawn in the pty");
    drop(pair.slave);
    let reader = pair.master.try_clone_reader().expect("pty reader");
    (child, reader, pair.master)
}

/// Runs the binary in a pseudo-terminal (stdout is a terminal) to completion, at most
/// `PATIENCE`: exit code and every byte it wrote to the terminal.
pub async fn run_in_pty(dir: &Path, args: &[&str]) -> (u32, Vec<u8>) {
    let (mut child, mut reader, master) = spawn_in_pty(dir, args);
    let what = args.join(" ");
    let read = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        // Ends at end of file or EIO, once the child has exited and closed the terminal.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        let code = child.wait().expect("wait").exit_code();
        (code, out)
    });
    let result = tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("`ephemeral {what}` did not finish in a terminal"))
        .expect("the reader thread");
    drop(master);
    result
}

/// Runs the binary in a pseudo-terminal until it has written `lines` line breaks, then
/// kills it (for commands that run until interrupted): every byte written until then, at
/// most `PATIENCE`.
pub async fn run_in_pty_for_lines(dir: &Path, args: &[&str], lines: usize) -> Vec<u8> {
    let (mut child, mut reader, master) = spawn_in_pty(dir, args);
    let what = args.join(" ");
    let read = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while out.iter().filter(|&&b| b == b'\n').count() < lines {
            match reader.read(&mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        out
    });
    let out = tokio::time::timeout(PATIENCE, read)
        .await
        .unwrap_or_else(|_| panic!("`ephemeral {what}` wrote no {lines} lines in a terminal"))
        .expect("the reader thread");
    drop(master);
    out
}
