//! A real InfluxDB 1.x (Debian's influxd 1.6.7) on 127.0.0.1 for tests: `/write?db=` takes line
//! protocol, `/query` answers InfluxQL. There is no `/api/v2/write` in 1.6 (404).
use super::process::{NotReady, ServerProcess};
use super::{find_binary, free_port, http, READY_TIMEOUT};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

const START_ATTEMPTS: u32 = 3;

/// A running influxd. Drop kills it and removes its meta/data/wal dirs.
pub struct Influxd {
    pub port: u16,
    /// How long start-up took until `/ping` answered 204.
    pub ready_in: Duration,
    process: ServerProcess,
    client: reqwest::Client,
    // Declared last so the process is killed before its dir is removed.
    dir: TempDir,
}

impl Influxd {
    /// A fresh server (HTTP and RPC on free ports) with empty temp storage and no databases.
    pub async fn start() -> Influxd {
        let bin = find_binary("influxd", "influxdb");
        for attempt in 1..=START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("citysense-influxd-")
                .tempdir()
                .expect("temp dir");
            let (port, rpc_port) = two_free_ports();
            let conf = dir.path().join("influxdb.conf");
            std::fs::write(&conf, config(dir.path(), port, rpc_port)).expect("write influxdb.conf");
            let args = vec!["-config".to_owned(), conf.display().to_string()];
            let mut process =
                ServerProcess::spawn("influxd", &bin, &args, &dir.path().join("influxd.log"));
            let client = http();
            match wait_ping(&mut process, &client, port, &conf).await {
                Ok(ready_in) => {
                    return Influxd {
                        port,
                        ready_in,
                        process,
                        client,
                        dir,
                    }
                }
                Err(NotReady::Exited(_)) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "influxd exited during start-up, retrying on other ports:\n{}",
                        process.log()
                    );
                }
                Err(why) => process.fail("GET /ping, /debug/vars", &why),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Base URL: append `/write?db=..` or `/query`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `CREATE DATABASE db`; panics on any error.
    pub async fn create_db(&self, db: &str) {
        let q = format!(
            "CREATE DATABASE \"{}\"",
            db.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let v = self.query(db, &q).await;
        if let Some(err) = statement_error(&v) {
            panic!("{q}: {err}");
        }
    }

    /// Runs InfluxQL `q` against `db` (POST, so statements that change data work too) with
    /// timestamps as integer ns. Panics on a non-200 answer; statement errors stay in the JSON.
    pub async fn query(&self, db: &str, q: &str) -> Value {
        let url = format!("{}/query", self.url());
        let resp = self
            .client
            .post(&url)
            .query(&[("db", db), ("q", q), ("epoch", "ns")])
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url} q={q}: {e}"));
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("POST {url} body: {e}"));
        assert!(
            status.is_success(),
            "POST {url} q={q}: {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "POST {url} q={q}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        })
    }

    /// Runs `q` and flattens every series into rows: one map per value row, keyed by column
    /// (`time` in ns, fields) plus the series' tags (from `GROUP BY`). Panics on a statement error.
    pub async fn query_rows(&self, db: &str, q: &str) -> Vec<BTreeMap<String, Value>> {
        let v = self.query(db, q).await;
        if let Some(err) = statement_error(&v) {
            panic!("{q}: {err}");
        }
        flatten(&v)
    }

    /// The server's stdout/stderr so far (including the HTTP access log).
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// Only the keys we need; influxd fills in its built-in defaults for the rest. We do not start
/// from `influxd config`, because that merges /etc/influxdb/influxdb.conf of the host.
/// Upstream 1.6 reads `reporting-disabled`; Debian's build shows `reporting-enabled` instead,
/// and unknown keys are ignored, so both are set.
fn config(dir: &Path, port: u16, rpc_port: u16) -> String {
    let d = dir.display();
    format!(
        "reporting-disabled = true\n\
         reporting-enabled = false\n\
         bind-address = \"127.0.0.1:{rpc_port}\"\n\
         [meta]\n  dir = \"{d}/meta\"\n\
         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
         [monitor]\n  store-enabled = false\n\
         [http]\n  bind-address = \"127.0.0.1:{port}\"\n\
         [logging]\n  suppress-logo = true\n"
    )
}

fn two_free_ports() -> (u16, u16) {
    let port = free_port();
    let rpc_port = std::iter::repeat_with(free_port)
        .find(|p| *p != port)
        .unwrap_or(port);
    (port, rpc_port)
}

/// Ready = `/ping` answers 204 and `/debug/vars` shows our config path on the command line, so
/// a server from another test that happens to hold the port cannot pass for ours.
async fn wait_ping(
    process: &mut ServerProcess,
    client: &reqwest::Client,
    port: u16,
    conf: &Path,
) -> Result<Duration, NotReady> {
    let base = format!("http://127.0.0.1:{port}");
    let ours = conf.display().to_string();
    process
        .wait_ready(READY_TIMEOUT, || {
            let (client, base, ours) = (client.clone(), base.clone(), ours.clone());
            async move { ping(&client, &base).await && cmdline_mentions(&client, &base, &ours).await }
        })
        .await
}

async fn ping(client: &reqwest::Client, base: &str) -> bool {
    let resp = client
        .get(format!("{base}/ping"))
        .timeout(Duration::from_secs(1))
        .send()
        .await;
    resp.is_ok_and(|r| r.status() == reqwest::StatusCode::NO_CONTENT)
}

async fn cmdline_mentions(client: &reqwest::Client, base: &str, needle: &str) -> bool {
    let Ok(resp) = client
        .get(format!("{base}/debug/vars"))
        .timeout(Duration::from_secs(1))
        .send()
        .await
    else {
        return false;
    };
    resp.text().await.is_ok_and(|vars| vars.contains(needle))
}

fn statement_error(v: &Value) -> Option<String> {
    if let Some(err) = v["error"].as_str() {
        return Some(err.to_owned());
    }
    v["results"]
        .as_array()?
        .iter()
        .find_map(|r| r["error"].as_str().map(str::to_owned))
}

fn flatten(v: &Value) -> Vec<BTreeMap<String, Value>> {
    let mut rows = Vec::new();
    let results = v["results"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for series in results
        .iter()
        .filter_map(|r| r["series"].as_array())
        .flatten()
    {
        let columns: Vec<&str> = series["columns"]
            .as_array()
            .map(|c| c.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let tags = series["tags"].as_object();
        for values in series["values"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let mut row: BTreeMap<String, Value> = tags
                .into_iter()
                .flatten()
                .map(|(k, tag)| (k.clone(), tag.clone()))
                .collect();
            let cells = values.as_array().map(Vec::as_slice).unwrap_or_default();
            row.extend(
                columns
                    .iter()
                    .zip(cells)
                    .map(|(c, cell)| ((*c).to_owned(), cell.clone())),
            );
            rows.push(row);
        }
    }
    rows
}
