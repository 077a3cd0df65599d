//! A pair of linked pseudo-terminals made by socat, standing in for a USB serial adapter:
//! the daemon opens one end, the test plays the sensor on the other. Both ends are raw with
//! echo off, so bytes pass unchanged; baud rate settings are accepted and ignored.
use super::find_binary;
use super::process::{NotReady, ServerProcess};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long socat gets to create both links.
const PTY_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// socat logs this (with `-d -d`) once both ends are open and it is copying bytes.
const READY_LINE: &str = "starting data transfer loop";

/// Two linked ptys at stable paths `a` and `b`. Drop kills socat and removes the links.
pub struct PtyPair {
    pub a: PathBuf,
    pub b: PathBuf,
    /// How long the last (re)start took.
    pub ready_in: Duration,
    process: ServerProcess,
    starts: u32,
    // Declared last so socat is gone before its dir is removed.
    dir: TempDir,
}

impl PtyPair {
    /// Starts socat and waits until both links exist and it is copying.
    pub fn start() -> PtyPair {
        let dir = tempfile::Builder::new()
            .prefix("citysense-pty-")
            .tempdir()
            .expect("temp dir");
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let (process, ready_in) = spawn_ready(dir.path(), &a, &b, 1);
        PtyPair {
            a,
            b,
            ready_in,
            process,
            starts: 1,
            dir,
        }
    }

    /// Unplug and replug: socat is stopped (whoever has a pty open gets EOF/EIO and the links
    /// vanish), then started again with the same link paths (they point at new /dev/pts nodes).
    pub fn restart(&mut self) {
        self.unplug();
        self.starts += 1;
        let (process, ready_in) = spawn_ready(self.dir.path(), &self.a, &self.b, self.starts);
        self.process = process;
        self.ready_in = ready_in;
    }

    /// Stops socat, leaving the links absent until [`restart`](Self::restart).
    pub fn unplug(&mut self) {
        self.process.terminate_blocking();
        // socat removes its links on SIGTERM; after a SIGKILL fallback they would dangle.
        for link in [&self.a, &self.b] {
            let _ = std::fs::remove_file(link);
        }
    }

    /// socat's logs of all starts so far.
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.path().join(format!("socat-{n}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("")
    }
}

fn spawn_ready(dir: &Path, a: &Path, b: &Path, start: u32) -> (ServerProcess, Duration) {
    let bin = find_binary("socat", "socat");
    let args = vec![
        "-d".to_owned(),
        "-d".to_owned(),
        format!("pty,raw,echo=0,link={}", a.display()),
        format!("pty,raw,echo=0,link={}", b.display()),
    ];
    // One log per start, so the ready line of an earlier start cannot be mistaken for this one's.
    let log = dir.join(format!("socat-{start}.log"));
    let mut process = ServerProcess::spawn("socat", &bin, &args, &log);
    let started = Instant::now();
    loop {
        let copying = std::fs::read_to_string(&log).is_ok_and(|l| l.contains(READY_LINE));
        if copying && a.exists() && b.exists() {
            return (process, started.elapsed());
        }
        if let Some(status) = process.exit_status() {
            process.fail("pty links", &NotReady::Exited(status));
        }
        if started.elapsed() >= PTY_READY_TIMEOUT {
            process.fail("pty links", &NotReady::Timeout(PTY_READY_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
