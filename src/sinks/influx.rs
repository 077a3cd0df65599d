//! Writing line protocol to an InfluxDB-compatible store over HTTP, v2 (`/api/v2/write`,
//! token) or v1 (`/write?db=`, basic auth), and classifying the answer.
//!
//! Both APIs go through one `reqwest` client rather than the `influxdb2` crate: influxdb2 0.5
//! turns every non-2xx answer into a status and body and drops the headers, so `Retry-After`
//! on 429/503 could not be honoured; it would also add a second HTTP stack (reqwest 0.11).
//!
//! Redirects: only 307/308 (which keep the method and body) are followed, at most
//! [`MAX_REDIRECTS`] hops and never from https to http. Any other 3xx comes back as
//! [`Outcome::Redirect`]: a 301/302 would turn the POST into a GET, and the 200 a captive
//! portal gives that GET must not count as delivered.
//!
//! Credentials never leave this file in text: the URL kept for logs and errors
//! ([`Writer::url`]) has no userinfo and its secret query parameters masked ([`redact`]).

use std::io::Write as _;
use std::time::Duration;

use reqwest::header::{
    HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LOCATION, RETRY_AFTER,
};
use reqwest::{redirect, Url};

use super::connect::{self, TlsFailure};
use crate::config::{OutputApi, OutputConfig};
use crate::fs_limits::read_secret_file as read_secret;

/// Most 307/308 hops followed for one write.
pub const MAX_REDIRECTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("output: {0}")]
    Config(String),
    #[error(transparent)]
    Secret(#[from] crate::fs_limits::SecretError),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// What to do after a write attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx to the POST itself (or to its 307/308 re-POST): the store has the data.
    Written,
    /// 429/503 (honour `after` if given), other 5xx, timeouts, connection errors.
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// 400/422: the store refuses (some of) the data; retrying the same request cannot help.
    /// `dropped`: how many points it refused, when it says so (InfluxDB's `dropped=N`).
    BadData {
        status: u16,
        body: String,
        dropped: Option<u64>,
    },
    /// 413: the request is too big for the store or a proxy in front of it.
    TooLarge,
    /// A 3xx that was not followed (anything but 307/308, too many hops, https to http):
    /// the URL is wrong or a captive portal is in the way. Keep the data, retry slowly.
    Redirect { status: u16, location: String },
    /// 401/403/404 and other 4xx: the operator must fix credentials, org, bucket or db.
    /// Keep the data, retry slowly.
    Operator { status: u16, body: String },
    /// TLS refused: the store's certificate is not trusted, or it wants a client certificate
    /// or refused ours (in the handshake, or as nginx's 400 page). Keep the data, retry slowly.
    Tls { failure: TlsFailure, detail: String },
}

/// Pure classification of an HTTP answer; `location` is the (redacted) `Location` header.
pub fn classify(
    status: u16,
    retry_after: Option<&str>,
    location: Option<&str>,
    body: &str,
) -> Outcome {
    let dropped = parse_dropped(body);
    let body: String = body.chars().take(512).collect();
    if connect::client_certificate_refused(status, &body) {
        return Outcome::Tls {
            failure: TlsFailure::ClientCertificate,
            detail: format!("HTTP {status}: {}", first_line_of_title(&body)),
        };
    }
    match status {
        200..=299 => Outcome::Written,
        300..=399 => Outcome::Redirect {
            status,
            location: location.unwrap_or("(no Location header)").to_string(),
        },
        400 | 422 => Outcome::BadData {
            status,
            body,
            dropped,
        },
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

/// The `<title>` of an HTML error page (nginx's says it all), else the body's first line.
fn first_line_of_title(body: &str) -> &str {
    let title = body
        .split_once("<title>")
        .and_then(|(_, rest)| rest.split_once("</title>"))
        .map(|(t, _)| t);
    title
        .or_else(|| body.lines().next())
        .unwrap_or_default()
        .trim()
}

/// `Retry-After` as delta-seconds (the form InfluxDB sends). HTTP dates are not used by
/// stores and are ignored (plain backoff then applies).
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The `dropped=N` InfluxDB 1.x and 2.x append to a partial-write error: how many of the
/// request's points were not stored.
pub fn parse_dropped(body: &str) -> Option<u64> {
    let (_, rest) = body.rsplit_once("dropped=")?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest.get(..digits)?.parse().ok()
}

/// `url` fit for a log line: userinfo removed, the values of query parameters that may
/// hold a secret (InfluxDB 1.x `p`, `token`, `password`, ...) replaced by `redacted`.
pub fn redact(url: &Url) -> String {
    let mut url = url.clone();
    // Cannot fail for http(s) URLs; a URL without a host has no userinfo to hide.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    "redacted".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    matches!(
        k.as_str(),
        "p" | "pw" | "pwd" | "auth" | "key" | "sig" | "signature"
    ) || [
        "pass",
        "token",
        "secret",
        "auth",
        "apikey",
        "api_key",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The only redirects followed: 307/308 keep the method and body, so the store at the new
/// location gets the same POST. Everything else is handed back as the 3xx answer itself.
fn redirect_policy() -> redirect::Policy {
    redirect::Policy::custom(|attempt| {
        let keeps_post = matches!(attempt.status().as_u16(), 307 | 308);
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if keeps_post && !downgrade && attempt.previous().len() <= MAX_REDIRECTS {
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// How requests authenticate. `Debug` shows the kind only.
#[derive(Clone)]
enum Auth {
    None,
    /// A ready header: v2 `Token ...`, or Basic from the URL's userinfo.
    Header(HeaderValue),
    /// v1 `username` / `password`.
    Basic {
        user: String,
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "None",
            Auth::Header(_) => "Header(..)",
            Auth::Basic { .. } => "Basic(..)",
        })
    }
}

/// An HTTP writer for one configured store.
#[derive(Debug, Clone)]
pub struct Writer {
    client: reqwest::Client,
    /// The write URL without userinfo (that became `auth`).
    url: Url,
    /// `url` redacted, for logs and errors.
    shown: String,
    auth: Auth,
    gzip: bool,
}

impl Writer {
    pub fn build(cfg: &OutputConfig) -> Result<Writer, SinkError> {
        let client = connect::client(cfg, redirect_policy())?;
        let mut url = write_url(cfg)?;
        let from_url = userinfo_auth(&client, &mut url)?;
        let auth = match (explicit_auth(cfg)?, from_url) {
            (Auth::None, Some(header)) => Auth::Header(header),
            (auth, Some(_)) => {
                tracing::warn!("output.url carries a user and password, but the output section sets credentials too; the ones in the URL are ignored");
                auth
            }
            (auth, None) => auth,
        };
        Ok(Writer {
            client,
            shown: redact(&url),
            url,
            auth,
            gzip: cfg.gzip,
        })
    }

    /// The write URL, redacted (no credentials), for logs.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The POST for a body, with its headers (kept separate so tests can inspect it).
    fn request(&self, body: Vec<u8>, gzipped: bool) -> reqwest::RequestBuilder {
        let mut req = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        req = match &self.auth {
            Auth::None => req,
            Auth::Header(v) => req.header(AUTHORIZATION, v.clone()),
            Auth::Basic { user, password } => req.basic_auth(user, Some(password)),
        };
        if gzipped {
            req = req.header(CONTENT_ENCODING, "gzip");
        }
        req.body(body)
    }

    /// Sends one request whose body is `parts` (line protocol) one after the other, and
    /// classifies the answer. The parts are the spooled batches as read: compressing them
    /// straight from there saves a copy of the whole request (megabytes at 10k series).
    pub async fn write(&self, parts: &[&[u8]]) -> Outcome {
        let compressed = if self.gzip { gzip(parts).ok() } else { None };
        let req = match compressed {
            Some(compressed) => self.request(compressed, true),
            None => self.request(parts.concat(), false),
        };
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let header = |name| {
                    resp.headers()
                        .get(name)
                        .and_then(|v: &HeaderValue| v.to_str().ok())
                        .map(str::to_string)
                };
                let retry_after = header(RETRY_AFTER);
                // Relative locations resolve against the URL that answered.
                let location = header(LOCATION)
                    .and_then(|l| resp.url().join(&l).ok())
                    .map(|u| redact(&u));
                let text = if (200..400).contains(&status) {
                    String::new()
                } else {
                    resp.text().await.unwrap_or_default()
                };
                classify(status, retry_after.as_deref(), location.as_deref(), &text)
            }
            Err(e) => {
                // reqwest's message names the URL; ours (redacted) is logged beside it.
                let e = e.without_url();
                match connect::tls_failure(&e) {
                    Some(failure) => Outcome::Tls {
                        failure,
                        detail: error_chain(&e),
                    },
                    None => Outcome::Retry {
                        after: None,
                        reason: error_chain(&e),
                    },
                }
            }
        }
    }
}

/// `<url>/api/v2/write?org=&bucket=&precision=ns` or `<url>/write?db=&precision=ns[&rp=]`,
/// keeping any path prefix (a reverse proxy's) and query the configured URL has.
fn write_url(cfg: &OutputConfig) -> Result<Url, SinkError> {
    let base = cfg
        .url
        .as_deref()
        .ok_or_else(|| SinkError::Config("url missing".into()))?;
    // The parse error names the problem, not the URL (which may hold a password).
    let mut url =
        Url::parse(base).map_err(|e| SinkError::Config(format!("url is not valid: {e}")))?;
    let path: &[&str] = match cfg.api {
        OutputApi::V2 => &["api", "v2", "write"],
        OutputApi::V1 => &["write"],
        OutputApi::Stdout | OutputApi::Mqtt => {
            return Err(SinkError::Config("this output has no HTTP writer".into()))
        }
    };
    url.path_segments_mut()
        .map_err(|()| SinkError::Config("url cannot be a base URL".into()))?
        .pop_if_empty()
        .extend(path);
    {
        let mut q = url.query_pairs_mut();
        match cfg.api {
            OutputApi::V2 => {
                q.append_pair("org", cfg.org.as_deref().unwrap_or("citysense"));
                q.append_pair("bucket", cfg.bucket.as_deref().unwrap_or_default());
            }
            _ => {
                q.append_pair("db", cfg.db.as_deref().unwrap_or_default());
                if let Some(rp) = &cfg.rp {
                    q.append_pair("rp", rp);
                }
            }
        }
        q.append_pair("precision", "ns");
    }
    Ok(url)
}

/// Credentials from the output section: v2 token, v1 username and password.
fn explicit_auth(cfg: &OutputConfig) -> Result<Auth, SinkError> {
    let secret = |value: &Option<String>, file: &Option<std::path::PathBuf>| match (value, file) {
        (Some(v), _) => Ok::<_, SinkError>(Some(v.clone())),
        (None, Some(f)) => Ok(Some(read_secret(f)?)),
        (None, None) => Ok(None),
    };
    Ok(match cfg.api {
        OutputApi::V2 => match secret(&cfg.token, &cfg.token_file)? {
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Token {t}"))
                    .map_err(|_| SinkError::Config("token contains invalid characters".into()))?;
                v.set_sensitive(true);
                Auth::Header(v)
            }
            None => Auth::None,
        },
        _ => match &cfg.username {
            Some(user) => Auth::Basic {
                user: user.clone(),
                password: secret(&cfg.password, &cfg.password_file)?.unwrap_or_default(),
            },
            None => Auth::None,
        },
    })
}

/// Moves `user:password@` out of `url` into a Basic header; reqwest does the decoding.
fn userinfo_auth(
    client: &reqwest::Client,
    url: &mut Url,
) -> Result<Option<HeaderValue>, SinkError> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let req = client
        .post(url.clone())
        .build()
        .map_err(|e| SinkError::Client(e.without_url()))?;
    *url = req.url().clone();
    Ok(req.headers().get(AUTHORIZATION).cloned())
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

#[cfg(test)]
#[path = "influx_tests.rs"]
mod tests;
