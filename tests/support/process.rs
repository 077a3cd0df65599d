//! A child server process owned by a test: output to a log file, readiness polling, SIGTERM stop,
//! and SIGKILL + reap on drop so no server outlives its handle (even when the test panics).
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long SIGTERM gets before we fall back to SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Why a server did not become ready.
#[derive(Debug)]
pub enum NotReady {
    /// The process ended during start-up (e.g. its port was taken meanwhile).
    Exited(ExitStatus),
    /// The readiness check kept failing until the deadline.
    Timeout(Duration),
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::Exited(status) => write!(f, "it exited during start-up ({status})"),
            NotReady::Timeout(after) => write!(f, "still not ready after {after:?}"),
        }
    }
}

/// One running (or stopped) server process.
pub struct ServerProcess {
    name: String,
    child: Option<Child>,
    log_path: PathBuf,
    /// Further logs the server writes itself (shown after the stdout/stderr log).
    extra_logs: Vec<PathBuf>,
}

impl ServerProcess {
    /// Spawns `bin args`, appending stdout and stderr to `log_path`.
    pub fn spawn(name: &str, bin: &Path, args: &[String], log_path: &Path) -> ServerProcess {
        let log = open_log(log_path);
        let log_err = log.try_clone().expect("clone log file handle");
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", bin.display()));
        ServerProcess {
            name: name.to_owned(),
            child: Some(child),
            log_path: log_path.to_owned(),
            extra_logs: Vec::new(),
        }
    }

    /// Adds a log file the server writes itself, so [`log`](Self::log) shows it too.
    pub fn with_extra_log(mut self, path: &Path) -> ServerProcess {
        self.extra_logs.push(path.to_owned());
        self
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process wrote so far (stdout/stderr, then its own log files).
    pub fn log(&self) -> String {
        std::iter::once(&self.log_path)
            .chain(&self.extra_logs)
            .map(|path| {
                let text =
                    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<unreadable: {e}>"));
                format!("== {} ==\n{text}", path.display())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls `ready` every 20 ms until it is true, the process exits, or `timeout` passes.
    /// Returns how long start-up took.
    pub async fn wait_ready<F, Fut>(
        &mut self,
        timeout: Duration,
        mut ready: F,
    ) -> Result<Duration, NotReady>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let started = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Err(NotReady::Exited(status));
            }
            if ready().await {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= timeout {
                return Err(NotReady::Timeout(timeout));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The message for a readiness failure, with the server's log.
    pub fn failure(&self, what: &str, why: &NotReady) -> String {
        format!(
            "{} did not become ready (checked: {what}): {why}\n----- {} log -----\n{}\n----- end of log -----",
            self.name,
            self.name,
            self.log()
        )
    }

    /// Panics with [`failure`](Self::failure).
    pub fn fail(&self, what: &str, why: &NotReady) -> ! {
        panic!("{}", self.failure(what, why))
    }

    /// Exit status if the process has ended (reaps it).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().ok().flatten()
    }

    /// SIGTERM, then wait up to [`STOP_GRACE`] without blocking the runtime; SIGKILL after that.
    pub async fn terminate(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_sigterm(&child);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        eprintln!(
            "{} ignored SIGTERM for {STOP_GRACE:?}; killing it",
            self.name
        );
        kill_and_reap(&mut child);
    }

    /// Like [`terminate`](Self::terminate) for sync callers (blocks the current thread).
    pub fn terminate_blocking(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_sigterm(&child);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} ignored SIGTERM for {STOP_GRACE:?}; killing it",
            self.name
        );
        kill_and_reap(&mut child);
    }

    /// SIGKILL and reap at once (a simulated crash or power cut).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open log file {}: {e}", path.display()))
}

/// std has no SIGTERM and the style forbids `unsafe`, so ask `kill(1)` to send it.
fn send_sigterm(child: &Child) {
    let kill = super::find_binary("kill", "procps");
    let status = Command::new(kill)
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = status {
        eprintln!("cannot run kill -TERM {}: {e}", child.id());
    }
}

fn kill_and_reap(child: &mut Child) {
    // Err means it already exited; wait() reaps it either way so no zombie is left behind.
    let _ = child.kill();
    let _ = child.wait();
}
