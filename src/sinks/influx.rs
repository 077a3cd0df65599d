//! Writing line protocol to an InfluxDB-compatible store over HTTP, v2 (`/api/v2/write`,
//! token) or v1 (`/write?db=`, basic auth), and classifying the answer.
//!
//! Both APIs go through one `reqwest` client rather than the `influxdb2` crate: influxdb2 0.5
//! turns every non-2xx answer into a status and body and drops the headers, so `Retry-After`
//! on 429/503 could not be honoured; it would also add a second HTTP stack (reqwest 0.11).

use std::io::Write as _;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};

use crate::config::{OutputApi, OutputConfig};
use crate::service::read_secret;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("output: {0}")]
    Config(String),
    #[error(transparent)]
    Secret(#[from] crate::service::SecretError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What to do after a write attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: the store has the data; acknowledge it.
    Written,
    /// 429/503 (honour `after` if given), other 5xx, timeouts, connection errors.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// 400/422: the data itself is bad; retrying cannot help. Dead-letter it.
    BadData { status: u16, body: String },
    /// 413: split into smaller requests.
    TooLarge,
    /// 401/403/404 and other 4xx: the operator must fix credentials, org, bucket or db.
    /// Keep the data, retry slowly.
    Operator { status: u16, body: String },
}

/// Pure classification of an HTTP answer.
pub fn classify(status: u16, retry_after: Option<&str>, body: &str) -> Outcome {
    let body: String = body.chars().take(512).collect();
    match status {
        200..=299 => Outcome::Written,
        400 | 422 => Outcome::BadData { status, body },
        413 => Outcome::TooLarge,
        429 | 503 => Outcome::Retry {
            after: retry_after.and_then(parse_retry_after),
            reason: format!("HTTP {status}"),
        },
        500..=599 => Outcome::Retry {
            after: None,
            reason: format!("HTTP {status}: {body}"),
        },
        _ => Outcome::Operator { status, body },
    }
}

/// `Retry-After` as delta-seconds (the form InfluxDB sends). HTTP dates are not used by
/// stores and are ignored (plain backoff then applies).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// An HTTP writer for one configured store.
#[derive(Debug, Clone)]
pub struct Writer {
    client: reqwest::Client,
    url: String,
    auth: Option<HeaderValue>,
    gzip: bool,
}

impl Writer {
    pub fn build(cfg: &OutputConfig) -> Result<Writer, SinkError> {
        let base = cfg
            .url
            .as_deref()
            .ok_or_else(|| SinkError::Config("url missing".into()))?
            .trim_end_matches('/');
        let enc = |s: &str| {
            let mut out = String::new();
            for b in s.bytes() {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        };
        let (url, auth) = match cfg.api {
            OutputApi::V2 => {
                let org = cfg.org.as_deref().unwrap_or("citysense");
                let bucket = cfg.bucket.as_deref().unwrap_or_default();
                let token = match (&cfg.token, &cfg.token_file) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(f)) => Some(read_secret(f)?),
                    (None, None) => None,
                };
                let url = format!(
                    "{base}/api/v2/write?org={}&bucket={}&precision=ns",
                    enc(org),
                    enc(bucket)
                );
                (url, token.map(|t| format!("Token {t}")))
            }
            OutputApi::V1 => {
                let db = cfg.db.as_deref().unwrap_or_default();
                let mut url = format!("{base}/write?db={}&precision=ns", enc(db));
                if let Some(rp) = &cfg.rp {
                    url.push_str(&format!("&rp={}", enc(rp)));
                }
                let password = match (&cfg.password, &cfg.password_file) {
                    (Some(p), _) => Some(p.clone()),
                    (None, Some(f)) => Some(read_secret(f)?),
                    (None, None) => None,
                };
                let auth = cfg.username.as_ref().map(|u| {
                    let raw = format!("{u}:{}", password.unwrap_or_default());
                    format!("Basic {}", base64(raw.as_bytes()))
                });
                (url, auth)
            }
            OutputApi::Stdout => return Err(SinkError::Config("stdout has no writer".into())),
        };
        let auth = auth
            .map(|a| {
                let mut v = HeaderValue::from_str(&a).map_err(|_| {
                    SinkError::Config("credential contains invalid characters".into())
                })?;
                v.set_sensitive(true);
                Ok::<_, SinkError>(v)
            })
            .transpose()?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.timeout_secs.min(10)))
            .user_agent(concat!("citysense/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Writer {
            client,
            url,
            auth,
            gzip: cfg.gzip,
        })
    }

    /// The write URL (without credentials), for logs.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request whose body is `parts` (line protocol) one after the other, and
    /// classifies the answer. The parts are the spooled batches as read: compressing them
    /// straight from there saves a copy of the whole request (megabytes at 10k series).
    pub async fn write(&self, parts: &[&[u8]]) -> Outcome {
        let mut req = self
            .client
            .post(&self.url)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        let compressed = if self.gzip { gzip(parts).ok() } else { None };
        req = match compressed {
            Some(compressed) => req.header(CONTENT_ENCODING, "gzip").body(compressed),
            None => req.body(parts.concat()),
        };
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let text = if (200..300).contains(&status) {
                    String::new()
                } else {
                    resp.text().await.unwrap_or_default()
                };
                classify(status, retry_after.as_deref(), &text)
            }
            Err(e) => Outcome::Retry {
                after: None,
                reason: error_chain(&e),
            },
        }
    }
}

fn gzip(parts: &[&[u8]]) -> std::io::Result<Vec<u8>> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(len / 4 + 64),
        flate2::Compression::fast(),
    );
    for part in parts {
        enc.write_all(part)?;
    }
    enc.finish()
}

/// "error: cause: cause" — reqwest's top-level message alone hides e.g. "connection refused".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Standard base64 with padding, for the Basic auth header only.
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_write_api() {
        assert_eq!(classify(204, None, ""), Outcome::Written);
        assert!(matches!(
            classify(400, None, "bad"),
            Outcome::BadData { status: 400, .. }
        ));
        assert!(matches!(
            classify(422, None, ""),
            Outcome::BadData { status: 422, .. }
        ));
        assert_eq!(classify(413, None, ""), Outcome::TooLarge);
        assert_eq!(
            classify(429, Some("2"), ""),
            Outcome::Retry {
                after: Some(Duration::from_secs(2)),
                reason: "HTTP 429".into()
            }
        );
        assert!(matches!(
            classify(503, Some("x"), ""),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(
            classify(500, None, ""),
            Outcome::Retry { after: None, .. }
        ));
        for s in [401, 403, 404] {
            assert!(
                matches!(classify(s, None, ""), Outcome::Operator { .. }),
                "{s}"
            );
        }
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn urls_are_encoded() {
        let cfg: OutputConfig = toml::from_str(
            "api = \"v2\"\nurl = \"http://127.0.0.1:8086/\"\norg = \"gemeente utrecht\"\nbucket = \"a&b\"\ntoken = \"t\"",
        )
        .unwrap();
        let w = Writer::build(&cfg).unwrap();
        assert_eq!(
            w.url(),
            "http://127.0.0.1:8086/api/v2/write?org=gemeente%20utrecht&bucket=a%26b&precision=ns"
        );
        let cfg: OutputConfig = toml::from_str(
            "api = \"v1\"\nurl = \"http://h:8086\"\ndb = \"city\"\nrp = \"week\"\nusername = \"u\"\npassword = \"p\"",
        )
        .unwrap();
        let w = Writer::build(&cfg).unwrap();
        assert_eq!(w.url(), "http://h:8086/write?db=city&precision=ns&rp=week");
        assert_eq!(w.auth.unwrap().to_str().unwrap(), "Basic dTpw");
    }
}
