//! A builder for the daemon's TOML config, so tests state only what they are about instead of
//! each copying a full template. Defaults are what most tests want: spool dir `{spool}` (filled
//! in by [`super::Daemon`]) with `fsync = false`, `[metrics] listen = ""`, no `[health]` table.
//! Keys the builder has no method for go in as raw TOML lines (`*_line`, [`Config::section`]).
//!
//! ```ignore
//! let text = Config::new("gw-test")
//!     .window(2)
//!     .grace(1)
//!     .stats(&["mean", "count"])
//!     .mqtt(port, "cs-test")
//!     .subscription("city/{sensor}/air", "json")
//!     .timestamp("ts", "unix_ms")
//!     .output_v2(&vm.write_url())
//!     .no_health()
//!     .to_toml();
//! ```

use std::fmt::Write as _;
use std::path::Path;

/// One daemon config under construction; [`Config::to_toml`] renders it.
#[derive(Clone, Debug)]
pub struct Config {
    gateway: Vec<String>,
    aggregation: Vec<String>,
    sections: Vec<String>,
    mqtt: Option<Vec<String>>,
    subscriptions: Vec<Vec<String>>,
    output: Vec<String>,
    spool: Vec<String>,
    metrics_listen: String,
    metrics_lines: Vec<String>,
    health_disabled: bool,
}

/// A TOML basic string (quotes and backslashes escaped).
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Config {
    /// A config for gateway `id` with the defaults above and no source or output yet.
    pub fn new(id: &str) -> Config {
        Config {
            gateway: vec![format!("id = {}", quoted(id))],
            aggregation: Vec::new(),
            sections: Vec::new(),
            mqtt: None,
            subscriptions: Vec::new(),
            output: Vec::new(),
            spool: vec!["dir = \"{spool}\"".into(), "fsync = false".into()],
            metrics_listen: String::new(),
            metrics_lines: Vec::new(),
            health_disabled: false,
        }
    }

    /// `[gateway] site`.
    pub fn site(mut self, site: &str) -> Config {
        self.gateway.push(format!("site = {}", quoted(site)));
        self
    }

    /// `[aggregation] window_secs`.
    pub fn window(mut self, window_secs: impl std::fmt::Display) -> Config {
        self.aggregation
            .push(format!("window_secs = {window_secs}"));
        self
    }

    /// `[aggregation] grace_secs`.
    pub fn grace(mut self, grace_secs: impl std::fmt::Display) -> Config {
        self.aggregation.push(format!("grace_secs = {grace_secs}"));
        self
    }

    /// `[aggregation] stats`.
    pub fn stats(mut self, stats: &[&str]) -> Config {
        let list: Vec<String> = stats.iter().map(|s| quoted(s)).collect();
        self.aggregation
            .push(format!("stats = [{}]", list.join(", ")));
        self
    }

    /// A raw line in `[aggregation]` (e.g. `close_delay_secs = 1`).
    pub fn aggregation_line(mut self, line: &str) -> Config {
        self.aggregation.push(line.into());
        self
    }

    /// The `[[mqtt]]` broker: `port` on 127.0.0.1 (the default host), `client_id`.
    pub fn mqtt(mut self, port: u16, client_id: &str) -> Config {
        self.mqtt = Some(vec![
            format!("port = {port}"),
            format!("client_id = {}", quoted(client_id)),
        ]);
        self
    }

    /// Raw lines in `[[mqtt]]` (e.g. `keep_alive_secs = 5`); call after [`Config::mqtt`].
    pub fn mqtt_line(mut self, line: &str) -> Config {
        self.mqtt
            .as_mut()
            .expect("Config::mqtt before Config::mqtt_line")
            .push(line.into());
        self
    }

    /// A `[[mqtt.subscription]]` on `topic` (placeholders like `{sensor}` as written) in `format`;
    /// `format` "" leaves the key out (the daemon's default).
    pub fn subscription(mut self, topic: &str, format: &str) -> Config {
        let mut lines = vec![format!("topic = {}", quoted(topic))];
        if !format.is_empty() {
            lines.push(format!("format = {}", quoted(format)));
        }
        self.subscriptions.push(lines);
        self
    }

    /// `timestamp_path` and `timestamp_format` of the last subscription.
    pub fn timestamp(self, path: &str, format: &str) -> Config {
        self.subscription_line(&format!("timestamp_path = {}", quoted(path)))
            .subscription_line(&format!("timestamp_format = {}", quoted(format)))
    }

    /// A raw line in the last subscription (e.g. `measurement = "footfall"`).
    pub fn subscription_line(mut self, line: &str) -> Config {
        self.subscriptions
            .last_mut()
            .expect("Config::subscription before a subscription line")
            .push(line.into());
        self
    }

    /// `[output]` to an InfluxDB v2 API (`/api/v2/write`) at `url`, bucket "b".
    pub fn output_v2(mut self, url: &str) -> Config {
        self.output = vec![
            "api = \"v2\"".into(),
            format!("url = {}", quoted(url)),
            "bucket = \"b\"".into(),
        ];
        self
    }

    /// `[output]` to an InfluxDB 1.x API (`/write`) at `url`, database "city".
    pub fn output_v1(mut self, url: &str) -> Config {
        self.output = vec![
            "api = \"v1\"".into(),
            format!("url = {}", quoted(url)),
            "db = \"city\"".into(),
        ];
        self
    }

    /// A raw line in `[output]` (e.g. `max_backoff_secs = 1`).
    pub fn output_line(mut self, line: &str) -> Config {
        self.output.push(line.into());
        self
    }

    /// `[spool] dir` (instead of the `{spool}` placeholder).
    pub fn spool_dir(mut self, dir: &Path) -> Config {
        self.spool[0] = format!("dir = {}", quoted(&dir.display().to_string()));
        self
    }

    /// `[spool] fsync` (false by default here; the daemon's own default is true).
    pub fn fsync(mut self, fsync: bool) -> Config {
        self.spool[1] = format!("fsync = {fsync}");
        self
    }

    /// A raw line in `[spool]` (e.g. `max_bytes = 1048576`).
    pub fn spool_line(mut self, line: &str) -> Config {
        self.spool.push(line.into());
        self
    }

    /// `[metrics] listen` ("" by default: no HTTP endpoint).
    pub fn metrics(mut self, listen: &str) -> Config {
        self.metrics_listen = listen.into();
        self
    }

    /// Another `[metrics]` line, e.g. `token_file = "..."`.
    pub fn metrics_line(mut self, line: &str) -> Config {
        self.metrics_lines.push(line.into());
        self
    }

    /// `[health]` and `[gateway_health]` `enabled = false`: no `sensor_health` or
    /// `gateway_health` points, for exact point counts.
    pub fn no_health(mut self) -> Config {
        self.health_disabled = true;
        self
    }

    /// `[simulator]` with `air_sensors` air-quality sensors and `counters` people counters,
    /// each read every `interval_ms`.
    pub fn simulator(self, air_sensors: u32, counters: u32, interval_ms: u64) -> Config {
        self.section(&format!(
            "[simulator]\nair_sensors = {air_sensors}\ncounters = {counters}\n\
             interval_ms = {interval_ms}"
        ))
    }

    /// `[clock] sync = "assume"`: test hosts often report an unsynchronised kernel clock, and
    /// only the clock tests are about that.
    pub fn assume_clock_synced(self) -> Config {
        self.section("[clock]\nsync = \"assume\"")
    }

    /// Any other table(s), as raw TOML (e.g. `[[serial]]`, `[privacy]`, `[aqi]`).
    pub fn section(mut self, toml: &str) -> Config {
        self.sections.push(toml.trim().into());
        self
    }

    /// The config text.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        table(&mut out, "[gateway]", &self.gateway);
        if !self.aggregation.is_empty() {
            table(&mut out, "[aggregation]", &self.aggregation);
        }
        for s in &self.sections {
            let _ = writeln!(out, "{s}\n");
        }
        if let Some(mqtt) = &self.mqtt {
            table(&mut out, "[[mqtt]]", mqtt);
        }
        for sub in &self.subscriptions {
            table(&mut out, "[[mqtt.subscription]]", sub);
        }
        if !self.output.is_empty() {
            table(&mut out, "[output]", &self.output);
        }
        table(&mut out, "[spool]", &self.spool);
        let mut metrics = vec![format!("listen = {}", quoted(&self.metrics_listen))];
        metrics.extend(self.metrics_lines.iter().cloned());
        table(&mut out, "[metrics]", &metrics);
        if self.health_disabled {
            table(&mut out, "[health]", &["enabled = false".to_string()]);
            table(
                &mut out,
                "[gateway_health]",
                &["enabled = false".to_string()],
            );
        }
        out
    }
}

fn table(out: &mut String, header: &str, lines: &[String]) {
    let _ = writeln!(out, "{header}");
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
    out.push('\n');
}
