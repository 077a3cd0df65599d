//! One `[[output]]` (or the single `[output]` table): the store windows are written to. The
//! list, names and filters are in `outputs.rs`.

use std::path::PathBuf;

use serde::Deserialize;

use super::{OutputFilter, TlsConfig};

/// Which write API the store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputApi {
    /// `POST /api/v2/write` with a token: InfluxDB 2.x/3.x, 1.8+ compat, VictoriaMetrics.
    V2,
    /// `POST /write?db=`: InfluxDB 1.x, VictoriaMetrics, sensor.community-style stores.
    V1,
    /// Print line protocol on standard output (the demo, debugging). Nothing is spooled.
    Stdout,
    /// Publish each point to an MQTT broker (QoS 1), for partners and street displays.
    Mqtt,
}

/// What an MQTT output publishes per point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MqttPayload {
    /// One JSON object per point (schema in the README).
    #[default]
    Json,
    /// The point's line of InfluxDB line protocol.
    LineProtocol,
}

/// `[[output]]` (or `[output]`)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// Unique name: the `output` label of its metrics, its delivery position in the spool.
    /// Required in `[[output]]`; an `[output]` table is named "default".
    #[serde(default)]
    pub name: Option<String>,
    /// Which points this output receives. Default: all.
    #[serde(default)]
    pub filter: Option<OutputFilter>,
    /// "v2", "v1" or "stdout". Required.
    pub api: OutputApi,
    /// Base URL of the store, e.g. "http://127.0.0.1:8086". Required for v1/v2.
    #[serde(default)]
    pub url: Option<String>,
    /// v2: organisation. Default: "citysense".
    #[serde(default)]
    pub org: Option<String>,
    /// v2: bucket. Required for v2.
    #[serde(default)]
    pub bucket: Option<String>,
    /// v2: API token. Prefer `token_file`. Default: none.
    #[serde(default)]
    pub token: Option<String>,
    /// v2: file holding the token; a relative name is looked up in `$CREDENTIALS_DIRECTORY`
    /// first (systemd `LoadCredential=`). Default: none.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// v1: database. Required for v1.
    #[serde(default)]
    pub db: Option<String>,
    /// v1: retention policy. Default: the database's default.
    #[serde(default)]
    pub rp: Option<String>,
    /// v1: user (basic auth). Default: none.
    #[serde(default)]
    pub username: Option<String>,
    /// v1: password. Prefer `password_file`. Default: none.
    #[serde(default)]
    pub password: Option<String>,
    /// v1: file holding the password. Default: none.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Most bytes of line protocol in one request (replays merge spooled batches up to
    /// this; 4 MiB replays ~1.6x faster than 1 MiB and stays far below the stores' body
    /// limits). Default: 4194304.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// gzip request bodies. Default: true.
    #[serde(default = "default_true")]
    pub gzip: bool,
    /// Request timeout in seconds. Default: 10.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Longest wait between retries in seconds (also caps `Retry-After`). Default: 60.
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Proxy for the store: an `http://` or `https://` URL (credentials in it are sent as
    /// proxy Basic auth and never logged), or "none" to connect directly whatever the
    /// environment says. Default: the environment (`https_proxy`, `http_proxy`, `all_proxy`,
    /// `no_proxy`, upper or lower case).
    #[serde(default)]
    pub proxy: Option<String>,
    /// `[output.tls]`: CA file, client certificate and key for an `https://` store, as in
    /// `[mqtt.tls]`. Default: the system CAs and no client certificate.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// mqtt: broker host. Required for mqtt.
    #[serde(default)]
    pub host: Option<String>,
    /// mqtt: broker port. Default: 1883, 8883 with `tls`.
    #[serde(default)]
    pub port: Option<u16>,
    /// mqtt: client id, stable across restarts. Default: `citysense-<gateway>-<name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// mqtt: topic per point; `{measurement}` and `{<tag>}` are replaced (a missing tag by
    /// `_`). Default: `citysense/{gateway}/{measurement}/{sensor}`.
    #[serde(default)]
    pub topic: Option<String>,
    /// mqtt: publish points retained, so a display that connects sees the latest window at
    /// once. Default: false.
    #[serde(default)]
    pub retain: bool,
    /// mqtt: `json` or `line_protocol`. Default: json.
    #[serde(default)]
    pub payload: MqttPayload,
    /// mqtt: status topic: retained `online` after connecting, `offline` as the last will
    /// and at stop. Default: `citysense/<gateway>/status`.
    #[serde(default)]
    pub status_topic: Option<String>,
}

/// `proxy` value that turns proxies off, the environment's included.
pub const PROXY_NONE: &str = "none";

const fn default_max_request_bytes() -> usize {
    4 << 20
}
const fn default_true() -> bool {
    true
}
const fn default_timeout_secs() -> u64 {
    10
}
const fn default_max_backoff_secs() -> u64 {
    60
}

impl OutputConfig {
    /// Checks one output whose key path is `at` (`output` or `output[i]`).
    pub(super) fn check(&self, at: &str, errs: &mut Vec<(String, String)>) {
        let need = |errs: &mut Vec<(String, String)>, v: &Option<String>, key: &str| {
            if v.as_deref().is_none_or(|s| s.trim().is_empty()) {
                errs.push((
                    format!("{at}.{key}"),
                    format!("required for api = {:?}", self.api).to_lowercase(),
                ));
            }
        };
        match self.api {
            OutputApi::Stdout => return,
            OutputApi::Mqtt => return self.check_mqtt(at, errs),
            OutputApi::V2 => {
                need(errs, &self.bucket, "bucket");
                if self.token.is_some() && self.token_file.is_some() {
                    errs.push((
                        format!("{at}.token_file"),
                        "set either token or token_file, not both".into(),
                    ));
                }
            }
            OutputApi::V1 => {
                need(errs, &self.db, "db");
                if self.password.is_some() && self.password_file.is_some() {
                    errs.push((
                        format!("{at}.password_file"),
                        "set either password or password_file, not both".into(),
                    ));
                }
            }
        }
        need(errs, &self.url, "url");
        if let Some(url) = &self.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                errs.push((
                    format!("{at}.url"),
                    "must start with http:// or https://".into(),
                ));
            }
        }
        if self.max_request_bytes < 4096 {
            errs.push((
                format!("{at}.max_request_bytes"),
                "must be at least 4096".into(),
            ));
        }
        if self.timeout_secs == 0 {
            errs.push((format!("{at}.timeout_secs"), "must be > 0".into()));
        }
        if self.tls.is_some()
            && self
                .url
                .as_deref()
                .is_some_and(|u| u.starts_with("http://"))
        {
            errs.push((
                format!("{at}.tls"),
                format!("applies to an https:// url only; {at}.url is http://"),
            ));
        }
        if let Some(p) = self.proxy.as_deref().and_then(proxy_problem) {
            errs.push((format!("{at}.proxy"), p));
        }
    }
}

impl OutputConfig {
    /// Checks of an `api = "mqtt"` output.
    fn check_mqtt(&self, at: &str, errs: &mut Vec<(String, String)>) {
        if self.host.as_deref().is_none_or(|h| h.trim().is_empty()) {
            errs.push((format!("{at}.host"), "required for api = \"mqtt\"".into()));
        }
        if self.url.is_some() {
            let msg = "not used by api = \"mqtt\" (set host and port)";
            errs.push((format!("{at}.url"), msg.into()));
        }
        if self.password.is_some() && self.password_file.is_some() {
            let msg = "set either password or password_file, not both";
            errs.push((format!("{at}.password_file"), msg.into()));
        }
        for (key, t) in [("topic", &self.topic), ("status_topic", &self.status_topic)] {
            let bad = t.as_deref().is_some_and(|t| {
                t.is_empty()
                    || t.contains(['+', '#', '\0'])
                    || t.matches('{').count() != t.matches('}').count()
            });
            if bad {
                let msg = "must be a topic without wildcards (+, #), with balanced {placeholders}";
                errs.push((format!("{at}.{key}"), msg.into()));
            }
        }
    }
}

/// Why `proxy` cannot be used. The message never repeats the URL: it may hold a password.
fn proxy_problem(proxy: &str) -> Option<String> {
    if proxy == PROXY_NONE {
        return None;
    }
    match reqwest::Url::parse(proxy) {
        Err(e) => Some(format!(
            "not a valid URL ({e}); use http://host:port or \"none\""
        )),
        Ok(u) if !matches!(u.scheme(), "http" | "https") => Some(format!(
            "scheme {}: must be http:// or https:// (or \"none\")",
            u.scheme()
        )),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => Some("has no host".into()),
        Ok(_) => None,
    }
}
