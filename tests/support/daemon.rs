//! Runs citysense in-process (the public `run_with`) on a config text, with its spool in a
//! temp dir, and stops it the way SIGTERM does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use citysense::clock::{Clock, SyncMode};
use citysense::config::Config;
use citysense::service::metrics::Metrics;
use tokio_util::sync::CancellationToken;

pub struct Daemon {
    pub metrics: Arc<Metrics>,
    pub spool_dir: PathBuf,
    token: CancellationToken,
    handle: Option<tokio::task::JoinHandle<Result<(), citysense::RunError>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    /// Starts the daemon on `config` (TOML). `{spool}` in the text is replaced by a fresh
    /// temp dir unless the text sets `[spool] dir` itself.
    pub fn start(config: &str) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("citysense-daemon-")
            .tempdir()
            .expect("temp dir");
        let spool = dir.path().join("spool");
        let mut d = Daemon::start_with_spool(config, &spool);
        d._dir = Some(dir);
        d
    }

    /// Starts the daemon with its spool in `spool` (kept by the caller across restarts).
    pub fn start_with_spool(config: &str, spool: &Path) -> Daemon {
        let text = config.replace("{spool}", &spool.display().to_string());
        let cfg = Config::parse(&text, Path::new("test.toml"))
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}\n---\n{text}"));
        // Test hosts (containers especially) often report an unsynchronised clock; tests that
        // are not about the clock run as on a gateway with an RTC unless they say otherwise.
        let clock = match text.contains("[clock]") {
            true => Clock::System(cfg.clock.sync),
            false => Clock::System(SyncMode::Assume),
        };
        Daemon::start_with_clock(cfg, spool, clock)
    }

    /// Starts the daemon on a parsed config with the given clock (e.g. [`Clock::Manual`]).
    pub fn start_with_clock(cfg: Config, spool: &Path, clock: Clock) -> Daemon {
        let metrics = Metrics::new();
        let token = CancellationToken::new();
        let handle = tokio::spawn(citysense::run_with_clock(
            cfg,
            token.clone(),
            metrics.clone(),
            clock,
        ));
        Daemon {
            metrics,
            spool_dir: spool.to_path_buf(),
            token,
            handle: Some(handle),
            _dir: None,
        }
    }

    /// Waits until every MQTT source is connected, then a moment more: subscriptions go out
    /// right after ConnAck and the broker must register them before the test publishes.
    pub async fn wait_connected(&self, sources: usize) {
        let m = self.metrics.clone();
        super::wait_until(
            Duration::from_secs(15),
            "daemon connected to the broker",
            || {
                let m = m.clone();
                async move { m.sources_connected() == sources }
            },
        )
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    /// Waits until the store has accepted at least `points` points from this daemon.
    pub async fn wait_points_sent(&self, points: u64) {
        let m = self.metrics.clone();
        let what = format!("{points} points delivered");
        super::wait_until(Duration::from_secs(20), &what, || {
            let m = m.clone();
            async move {
                m.sink
                    .uplink_points_sent
                    .load(std::sync::atomic::Ordering::Relaxed)
                    >= points
            }
        })
        .await;
    }

    /// SIGTERM-equivalent: cancel, wait for the orderly stop (flush, spool, drain).
    pub async fn stop(&mut self) {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(30), h)
                .await
                .expect("daemon stops within 30 s")
                .expect("daemon task did not panic")
                .expect("daemon run returned Ok");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
