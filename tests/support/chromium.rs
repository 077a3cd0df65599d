//! A real headless Chromium driven through chromedriver's WebDriver HTTP API (W3C), with the
//! reqwest and serde_json the tests already have. Debian's `chromium` and `chromium-driver`
//! must be installed (`scripts/test.sh` installs them); a missing one fails the test loudly.
//! Chromium runs as root here, hence `--no-sandbox`; a fresh profile per browser; nothing
//! phones home (background networking, component updates, sync off).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::process::ServerProcess;
use super::{find_binary, free_port, http, READY_TIMEOUT};

/// A browser session; dropping it stops chromedriver (and with it Chromium).
pub struct Browser {
    base: String,
    session: String,
    _profile: tempfile::TempDir,
    driver: ServerProcess,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at `width` x `height` pixels.
    pub async fn start(width: u32, height: u32) -> Browser {
        let chromium = find_binary("chromium", "chromium");
        let driver_bin = find_binary("chromedriver", "chromium-driver");
        let profile = tempfile::tempdir().expect("profile dir");
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let args = [format!("--port={port}"), "--allowed-ips=127.0.0.1".into()];
        let mut driver = ServerProcess::spawn("chromedriver", &driver_bin, &args, &log);
        let base = format!("http://127.0.0.1:{port}");
        let status = format!("{base}/status");
        let ready = driver
            .wait_ready(READY_TIMEOUT, || {
                let url = status.clone();
                async move { http().get(url).send().await.is_ok() }
            })
            .await;
        if let Err(why) = ready {
            driver.fail("GET /status", &why);
        }
        let session = new_session(&base, &chromium, profile.path(), width, height, &driver).await;
        Browser {
            base,
            session,
            _profile: profile,
            driver,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}/{path}", self.base, self.session)
    }

    async fn call(&self, path: &str, body: Value) -> Value {
        let resp = post(self.url(path), &body).await;
        answer(resp, path, &self.driver).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call("url", json!({ "url": url })).await;
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub async fn eval(&self, script: &str) -> Value {
        self.call("execute/sync", json!({ "script": script, "args": [] }))
            .await
    }

    /// A PNG of the viewport, saved to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let resp = http().get(self.url("screenshot")).send().await;
        let b64 = answer(resp, "screenshot", &self.driver).await;
        let png = decode_base64(b64.as_str().expect("screenshot is base64 text"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Best effort: closing the session quits Chromium; the driver is killed with its handle.
        let url = format!("{}/session/{}", self.base, self.session);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    let req = http().delete(url).timeout(Duration::from_secs(5)).send();
                    let _ = req.await;
                });
            }
        })
        .join();
    }
}

async fn new_session(
    base: &str,
    chromium: &Path,
    profile: &Path,
    width: u32,
    height: u32,
    driver: &ServerProcess,
) -> String {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    .iter()
    .map(|a| a.to_string())
    .chain([
        format!("--user-data-dir={}", profile.join("chromium").display()),
        format!("--window-size={width},{height}"),
    ])
    .collect::<Vec<_>>();
    let mut options = json!({ "binary": chromium, "args": args });
    if width < 500 {
        // A desktop window is never narrower than 500 px: a phone's viewport is emulated.
        let metrics = json!({ "width": width, "height": height, "pixelRatio": 1.0 });
        options["mobileEmulation"] = json!({ "deviceMetrics": metrics });
    }
    let caps = json!({ "capabilities": { "alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": options,
    }}});
    let resp = post(format!("{base}/session"), &caps).await;
    let value = answer(resp, "session", driver).await;
    value["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session id in {value}"))
        .to_string()
}

/// POSTs `body` as JSON (reqwest's `json` feature is off in this tree).
async fn post(url: String, body: &Value) -> reqwest::Result<reqwest::Response> {
    http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
}

/// The `value` of a WebDriver answer; any error fails the test with the driver's log.
async fn answer(
    resp: reqwest::Result<reqwest::Response>,
    what: &str,
    driver: &ServerProcess,
) -> Value {
    let resp = resp.unwrap_or_else(|e| panic!("WebDriver {what}: {e}\n{}", driver.log()));
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert!(
        status.is_success(),
        "WebDriver {what}: {status} {text}\n{}",
        driver.log()
    );
    body["value"].clone()
}

/// Standard base64 (with padding), as WebDriver sends screenshots.
fn decode_base64(text: &str) -> Vec<u8> {
    let sextet = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let clean: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for chunk in clean.chunks(4) {
        let data: Vec<u8> = chunk.iter().copied().filter(|c| *c != b'=').collect();
        let n = data
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, c)| acc | sextet(*c) << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..data.len().saturating_sub(1)]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert_eq!(decode_base64("aGk="), b"hi");
    assert_eq!(decode_base64("YWJj"), b"abc");
}
