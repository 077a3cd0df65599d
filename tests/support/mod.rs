//! Integration-test support: starts real peer servers (mosquitto, VictoriaMetrics, influxd 1.x,
//! socat pseudo-terminals) on 127.0.0.1 with free ports and temp dirs, waits until they are ready,
//! and offers publish/query helpers.
//!
//! Rules every helper follows:
//! - only 127.0.0.1 is ever contacted (the HTTP client ignores proxy variables);
//! - a missing server binary fails the test with the apt package to install, it never skips;
//! - each server's stdout/stderr goes to a log file in its temp dir, and readiness failures print it;
//! - dropping a handle kills the process and removes its temp dir.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code, unused_imports)]

pub mod certs;
pub mod chromium;
pub mod citysensed;
pub mod config;
pub mod daemon;
pub mod fake_store;
pub mod fault_proxy;
pub mod influxd;
pub mod logs;
pub mod mosquitto;
pub mod nginx;
pub mod process;
pub mod pty;
pub mod tunnel;
pub mod victoria;

pub use citysensed::Citysensed;
pub use daemon::Daemon;
pub use fake_store::{FakeStore, Reply};
pub use influxd::Influxd;
pub use mosquitto::{publish, subscribe, Mosquitto, Subscriber};
pub use pty::PtyPair;
pub use victoria::{ExportedSeries, Victoria};

use std::collections::BTreeSet;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server gets to become ready before the test fails with its log.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A port that was free a moment ago on 127.0.0.1 (the OS picks it; we release it at once).
/// Never the same port twice in one test binary, so parallel tests cannot race for one port;
/// the servers' readiness checks also confirm that the answering server is the one we started.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("local_addr of 127.0.0.1:0")
            .port();
        if handed_out.insert(port) {
            return port;
        }
    }
}

/// Polls `f` every 100 ms until it returns true; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wall-clock time in ms since the epoch (VictoriaMetrics' timestamp unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// An HTTP client for the test servers. Proxies are disabled so that a `http_proxy` variable in
/// the environment can never route a request away from 127.0.0.1.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("build reqwest client")
}

/// Finds `name` on PATH or in the usual system dirs (root's PATH may lack /usr/sbin, where
/// Debian puts mosquitto). Panics with the apt package to install when it is missing.
pub fn find_binary(name: &str, apt_package: &str) -> PathBuf {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let fixed = [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/bin",
        "/usr/local/sbin",
    ];
    from_path
        .into_iter()
        .chain(fixed.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is required by this test but was not found on PATH, /usr/sbin or /usr/bin: \
                 install with: apt-get install -y {apt_package}"
            )
        })
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
