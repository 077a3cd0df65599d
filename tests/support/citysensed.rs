//! The real `citysensed` binary as a child process, for tests that need a process boundary
//! (SIGKILL, SIGTERM, logs on stderr): config file in a dir the caller keeps, stderr
//! collected line by line by a reader thread, `/metrics` scraped over HTTP.
//!
//! [`command`] is the one place that says which binary runs. By default it is the one cargo
//! built for this test run. Two environment variables swap in another, e.g. a cross-built ARM
//! binary under qemu-user (see `tests/it/arch.rs`):
//! - `CITYSENSE_BIN`: path of the `citysensed` to run instead;
//! - `CITYSENSE_RUNNER`: a command prefix, split on whitespace, that runs it (e.g.
//!   `qemu-aarch64 -L /usr/aarch64-linux-gnu`). qemu-user runs the guest in its own process,
//!   so the child's pid, SIGTERM and SIGKILL are the daemon's.
//!
//! Unset or empty, each changes nothing.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::http;

/// The `citysensed` under test: `CITYSENSE_BIN` if set, else the one cargo built.
/// Panics if `CITYSENSE_BIN` names no file, so a typo cannot test the wrong binary.
pub fn binary() -> PathBuf {
    match std::env::var_os("CITYSENSE_BIN").filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "CITYSENSE_BIN={} is not a file",
                path.display()
            );
            path
        }
        None => PathBuf::from(env!("CARGO_BIN_EXE_citysensed")),
    }
}

/// `CITYSENSE_RUNNER` split on whitespace (empty when unset).
pub fn runner() -> Vec<OsString> {
    std::env::var("CITYSENSE_RUNNER")
        .unwrap_or_default()
        .split_whitespace()
        .map(OsString::from)
        .collect()
}

/// What runs, for messages: the runner's words, then the binary.
pub fn describe() -> String {
    let mut words: Vec<String> = runner()
        .iter()
        .map(|w| w.to_string_lossy().into_owned())
        .collect();
    words.push(binary().display().to_string());
    words.join(" ")
}

/// A `Command` that runs the `citysensed` under test (behind the runner, if any); add the
/// subcommand and its arguments.
pub fn command() -> Command {
    let bin = binary();
    let runner = runner();
    match runner.split_first() {
        None => Command::new(bin),
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(bin);
            cmd
        }
    }
}

/// Runs `cmd` to its end with stdout and stderr captured; kills it and panics with what it
/// printed if it is still running after `timeout` (an emulated binary can be slow, never hung).
pub fn output_within(cmd: &mut Command, timeout: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe()));
    // Drained on threads, so a child writing more than a pipe holds cannot stall.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for citysensed") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (stdout.join(), stderr.join());
            let text = |r: std::thread::Result<Vec<u8>>| {
                String::from_utf8_lossy(&r.unwrap_or_default()).into_owned()
            };
            panic!(
                "{} {:?} still running after {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                describe(),
                cmd.get_args().collect::<Vec<_>>(),
                text(out),
                text(err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// The proxy variables reqwest reads, in lower case (the upper-case ones too).
const PROXY_VARS: [&str; 4] = ["http_proxy", "https_proxy", "all_proxy", "no_proxy"];

/// One run of the daemon. Drop kills it.
pub struct Citysensed {
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    pub config: PathBuf,
}

impl Citysensed {
    /// Writes `config` to `dir/citysense.toml` and runs `citysensed run -c` on it. A `{spool}`
    /// in the text becomes `dir/spool` (as [`super::Daemon`] does with its own temp dir).
    /// `log_filter` is `CITYSENSE_LOG` (e.g. "info" or "info,citysense=debug").
    pub fn spawn(config: &str, dir: &Path, log_filter: &str) -> Citysensed {
        Self::spawn_env(config, dir, log_filter, &[])
    }

    /// [`Citysensed::spawn`] with `env` set for the daemon, and none of the proxy variables
    /// of the test's own environment (only those in `env` apply).
    pub fn spawn_env(
        config: &str,
        dir: &Path,
        log_filter: &str,
        env: &[(&str, String)],
    ) -> Citysensed {
        std::fs::create_dir_all(dir).expect("config dir");
        let path = dir.join("citysense.toml");
        let config = config.replace("{spool}", &dir.join("spool").display().to_string());
        std::fs::write(&path, config).expect("write config");
        let mut cmd = command();
        for var in PROXY_VARS {
            cmd.env_remove(var).env_remove(var.to_uppercase());
        }
        let mut child = cmd
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(["run", "-c"])
            .arg(&path)
            .env("CITYSENSE_LOG", log_filter)
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", describe()));
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

    /// Scrapes `/metrics` on `port` every 100 ms until `done` holds for what it shows. Panics
    /// naming `what` after `timeout`, or as soon as the daemon exits, with its log and the last
    /// scrape.
    pub async fn wait_metrics<F>(&mut self, port: u16, timeout: Duration, what: &str, done: F)
    where
        F: Fn(&BTreeMap<String, f64>) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let m = try_scrape(port).await;
            if done(&m) {
                return;
            }
            let why = if !self.alive() {
                "citysensed exited"
            } else if Instant::now() > deadline {
                "timed out"
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            // Reaped and read to the end, so the log shows the daemon's last words.
            let log = self.kill();
            panic!(
                "{why} waiting until {what} ({timeout:?}; {}):\nlast /metrics: {m:#?}\nlog:\n{log}",
                describe()
            );
        }
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
    parse_metrics(&metrics_text(port).await)
}

/// The text `/metrics` of a daemon listening on `127.0.0.1:port` answers.
pub async fn metrics_text(port: u16) -> String {
    let url = format!("http://127.0.0.1:{port}/metrics");
    http()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"))
}

/// Sum of every series of `name` (all label sets), 0 when absent.
pub fn total(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| *k == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .map(|(_, v)| *v)
        .sum()
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
