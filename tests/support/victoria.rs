//! A real single-node VictoriaMetrics (Debian 1.79) on 127.0.0.1 for tests: it takes InfluxDB
//! line protocol on `/write` and `/api/v2/write`; readback via force_flush + `/api/v1/export`.
use super::process::{NotReady, ServerProcess};
use super::{find_binary, free_port, http, READY_TIMEOUT};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

const START_ATTEMPTS: u32 = 3;

/// A running VictoriaMetrics. Drop kills it and removes its data dir.
pub struct Victoria {
    pub port: u16,
    /// How long the last (re)start took until `/health` answered 200.
    pub ready_in: Duration,
    process: ServerProcess,
    client: reqwest::Client,
    // Declared last so the process is killed before its dir is removed.
    dir: TempDir,
}

/// One series from `/api/v1/export`.
#[derive(Debug, Clone)]
pub struct ExportedSeries {
    /// Labels including `__name__` (`<measurement>_<field>` for line protocol).
    pub metric: BTreeMap<String, String>,
    pub values: Vec<f64>,
    /// Milliseconds since the epoch (VictoriaMetrics truncates ns to ms).
    pub timestamps: Vec<i64>,
}

impl Victoria {
    /// A fresh instance on a free port with an empty temp data dir.
    pub async fn start() -> Victoria {
        let bin = find_binary("victoria-metrics", "victoria-metrics");
        for attempt in 1..=START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("citysense-victoria-")
                .tempdir()
                .expect("temp dir");
            let port = free_port();
            let mut process = spawn(&bin, dir.path(), port);
            let client = http();
            match wait_healthy(&mut process, &client, port, dir.path()).await {
                Ok(ready_in) => {
                    return Victoria {
                        port,
                        ready_in,
                        process,
                        client,
                        dir,
                    }
                }
                Err(NotReady::Exited(_)) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "victoria-metrics exited during start-up, retrying on another port:\n{}",
                        process.log()
                    );
                }
                Err(why) => process.fail("GET /health, /flags", &why),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// Base URL for writes: append `/write?db=..` or `/api/v2/write?org=..&bucket=..`.
    pub fn write_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Flushes pending rows and exports every series matching `selector` (e.g. `air_pm25` or
    /// `{__name__=~"air_.*"}`), sorted by labels.
    pub async fn export(&self, selector: &str) -> Vec<ExportedSeries> {
        self.export_with(selector, &[]).await
    }

    /// [`Victoria::export`] with extra query parameters, e.g. `("end", "<unix s>")` to see
    /// points in the future (the default range ends now).
    pub async fn export_with(
        &self,
        selector: &str,
        params: &[(&str, &str)],
    ) -> Vec<ExportedSeries> {
        self.force_flush().await;
        let url = format!("{}/api/v1/export", self.write_url());
        let resp = self
            .client
            .get(&url)
            .query(&[("match[]", selector)])
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = resp.status();
        let body = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url} body: {e}"));
        assert!(
            status.is_success(),
            "GET {url} match[]={selector}: {status}: {body}"
        );
        let mut series: Vec<ExportedSeries> = body
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_line)
            .collect();
        series.sort_by(|a, b| a.metric.cmp(&b.metric));
        series
    }

    /// Readings per sensor: the sum of `<measurement>_pm2_5_count` over its windows, a
    /// re-emitted window counted once (its latest, largest count, as the store shows after
    /// overwriting).
    pub async fn pm2_5_counts(&self) -> BTreeMap<String, u64> {
        self.force_flush().await;
        let mut per_window: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for s in self.export(r#"{__name__=~".*_pm2_5_count"}"#).await {
            let sensor = s.metric.get("sensor").cloned().unwrap_or_default();
            for (t, v) in s.timestamps.iter().zip(&s.values) {
                let e = per_window.entry((sensor.clone(), *t)).or_default();
                *e = (*e).max(*v as u64);
            }
        }
        let mut out = BTreeMap::new();
        for ((sensor, _), n) in per_window {
            *out.entry(sensor).or_default() += n;
        }
        out
    }

    /// Makes just-written rows visible to export/query at once.
    pub async fn force_flush(&self) {
        let url = format!("{}/internal/force_flush", self.write_url());
        let resp = self
            .client
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        assert!(resp.status().is_success(), "POST {url}: {}", resp.status());
    }

    /// SIGTERM and wait: the outage part of an outage test (data dir and port are kept).
    pub async fn stop(&mut self) {
        self.process.terminate().await;
    }

    /// Starts again on the same port with the same data dir (stops first if still running).
    pub async fn restart(&mut self) {
        self.process.terminate().await;
        let bin = find_binary("victoria-metrics", "victoria-metrics");
        self.process = spawn(&bin, self.dir.path(), self.port);
        match wait_healthy(&mut self.process, &self.client, self.port, self.dir.path()).await {
            Ok(ready_in) => self.ready_in = ready_in,
            Err(why) => self.process.fail("GET /health after restart", &why),
        }
    }

    /// `vm_rows_inserted_total{type="influx"}`: rows accepted over line protocol since start.
    pub async fn rows_inserted(&self) -> u64 {
        let url = format!("{}/metrics", self.write_url());
        let resp = self
            .client
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let body = resp
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {url} body: {e}"));
        let value = body
            .lines()
            .find_map(|l| l.strip_prefix("vm_rows_inserted_total{type=\"influx\"} "))
            .unwrap_or_else(|| panic!("no vm_rows_inserted_total{{type=\"influx\"}} in {url}"));
        // Exposition values are floats in general; this counter is integral.
        value
            .trim()
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("bad counter value {value:?}: {e}")) as u64
    }

    /// The server's stdout/stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// `-retentionPeriod=100y`: 1.79 takes h/d/w/y suffixes (a bare number means months); a long
/// retention lets tests use fixed timestamps from years ago. Rows more than ~2 days in the
/// future are still rejected (logged, while the HTTP write answers 204).
fn spawn(bin: &Path, dir: &Path, port: u16) -> ServerProcess {
    let args = vec![
        format!("-storageDataPath={}", data_path(dir).display()),
        format!("-httpListenAddr=127.0.0.1:{port}"),
        "-retentionPeriod=100y".to_owned(),
        "-search.latencyOffset=0".to_owned(),
    ];
    ServerProcess::spawn(
        "victoria-metrics",
        bin,
        &args,
        &dir.join("victoria-metrics.log"),
    )
}

/// Ready = `/health` answers 200 and `/flags` shows our data dir, so a server from another
/// test that happens to hold the port cannot pass for ours.
async fn wait_healthy(
    process: &mut ServerProcess,
    client: &reqwest::Client,
    port: u16,
    dir: &Path,
) -> Result<Duration, NotReady> {
    let base = format!("http://127.0.0.1:{port}");
    let ours = format!("-storageDataPath=\"{}\"", data_path(dir).display());
    process
        .wait_ready(READY_TIMEOUT, || {
            let (client, base, ours) = (client.clone(), base.clone(), ours.clone());
            async move {
                get_text(&client, &format!("{base}/health")).await.is_some()
                    && get_text(&client, &format!("{base}/flags"))
                        .await
                        .is_some_and(|f| f.contains(&ours))
            }
        })
        .await
}

/// The body of a 200 answer, or None.
async fn get_text(client: &reqwest::Client, url: &str) -> Option<String> {
    let resp = client
        .get(url)
        .timeout(Duration::from_secs(1))
        .send()
        .await
        .ok()?;
    if resp.status() != reqwest::StatusCode::OK {
        return None;
    }
    resp.text().await.ok()
}

fn data_path(dir: &Path) -> std::path::PathBuf {
    dir.join("data")
}

fn parse_line(line: &str) -> ExportedSeries {
    let v: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("export line is not JSON ({e}): {line}"));
    let metric = v["metric"]
        .as_object()
        .unwrap_or_else(|| panic!("export line without metric: {line}"))
        .iter()
        .map(|(k, val)| (k.clone(), val.as_str().unwrap_or_default().to_owned()))
        .collect();
    let values = json_array(&v, "values", line)
        .iter()
        .map(|x| number(x, line))
        .collect();
    let timestamps = json_array(&v, "timestamps", line)
        .iter()
        .map(|x| {
            x.as_i64()
                .unwrap_or_else(|| panic!("bad timestamp {x} in {line}"))
        })
        .collect();
    ExportedSeries {
        metric,
        values,
        timestamps,
    }
}

fn json_array<'a>(v: &'a serde_json::Value, key: &str, line: &str) -> &'a Vec<serde_json::Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("export line without {key}: {line}"))
}

/// Values are JSON numbers; non-finite ones may come as strings such as "NaN".
fn number(x: &serde_json::Value, line: &str) -> f64 {
    x.as_f64()
        .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("bad value {x} in {line}"))
}
