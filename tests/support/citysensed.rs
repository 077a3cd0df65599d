//! The real `citysensed` binary as a child process, for tests that need a process boundary
//! (SIGKILL, SIGTERM, logs on stderr): config file in a dir the caller keeps, stderr
//! collected line by line by a reader thread, `/metrics` scraped over HTTP.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http;

/// One run of the daemon. Drop kills it.
pub struct Citysensed {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub config: PathBuf,
}

impl Citysensed {
    /// Writes `config` to `dir/citysense.toml` and runs `citysensed run -c` on it.
    /// `log_filter` is `CITYSENSE_LOG` (e.g. "info" or "info,citysense=debug").
    pub fn spawn(config: &str, dir: &Path, log_filter: &str) -> Citysensed {
        std::fs::create_dir_all(dir).expect("config dir");
        let path = dir.join("citysense.toml");
        std::fs::write(&path, config).expect("write config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_citysensed"))
            .args(["run", "-c"])
            .arg(&path)
            .env("CITYSENSE_LOG", log_filter)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn citysensed");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let mut l = sink.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        Citysensed {
            child: Some(child),
            log,
            reader: Some(reader),
            config: path,
        }
    }

    /// Everything logged so far (complete lines only).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The process id (0 once reaped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, reap, and return the whole log (the pipe is read to its end).
    pub fn kill(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.join_reader();
        self.log()
    }

    /// SIGTERM (the orderly stop) and wait up to `timeout`; panics if it does not exit 0.
    pub async fn terminate(&mut self, timeout: Duration) -> String {
        let mut c = self.child.take().expect("running");
        let kill = super::find_binary("kill", "procps");
        let sent = Command::new(kill)
            .args(["-TERM", &c.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        let deadline = Instant::now() + timeout;
        let status: ExitStatus = loop {
            if let Ok(Some(s)) = c.try_wait() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "citysensed did not stop within {timeout:?}:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.join_reader();
        let log = self.log();
        assert!(status.success(), "citysensed exited {status}:\n{log}");
        log
    }

    fn join_reader(&mut self) {
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Citysensed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// [`scrape`], or an empty map while the endpoint does not answer yet.
pub async fn try_scrape(port: u16) -> BTreeMap<String, f64> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let Ok(resp) = http().get(&url).send().await else {
        return BTreeMap::new();
    };
    parse_metrics(&resp.text().await.unwrap_or_default())
}

/// `/metrics` of a daemon listening on `127.0.0.1:port`, as name{labels} -> value.
pub async fn scrape(port: u16) -> BTreeMap<String, f64> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let body = http()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"));
    parse_metrics(&body)
}

fn parse_metrics(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}
