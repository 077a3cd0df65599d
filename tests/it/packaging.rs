//! The configuration the `.deb` installs as `/etc/citysense/citysense.toml`
//! (`packaging/deb/citysense.toml`): it passes the real binary's `validate` as shipped, each
//! commented example block still validates once uncommented (so the examples cannot rot), and
//! the daemon on the shipped file (no source) runs idle and healthy until stopped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{citysensed::try_scrape, free_port, wait_until, Citysensed};

/// The packaged configuration.
pub const PACKAGED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/deb/citysense.toml");
/// The line the store block replaces.
const STDOUT_LINE: &str = "api = \"stdout\"";
/// The blocks the file must offer, by marker name.
const BLOCKS: [&str; 3] = ["MQTT", "serial sensors", "store"];

fn packaged() -> String {
    std::fs::read_to_string(PACKAGED).unwrap_or_else(|e| panic!("{PACKAGED}: {e}"))
}

/// The name of a block opened by `line` (`# ---- NAME: ... uncomment from here ----`).
fn block_start(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("# ---- ")?;
    rest.ends_with("uncomment from here ----")
        .then(|| rest.split_once(':').map(|(name, _)| name))
        .flatten()
}

/// `text` with the marked blocks named in `names` uncommented the way the file's header tells
/// an operator to: the first "#" of each line goes, with the space after it, so "## " lines
/// stay comments. Uncommenting the store block also deletes `api = "stdout"`.
fn uncomment(text: &str, names: &[&str]) -> String {
    let mut out = Vec::new();
    let mut open: Option<&str> = None;
    let mut seen = Vec::new();
    for line in text.lines() {
        if let Some(name) = block_start(line) {
            assert!(open.is_none(), "block {name} opens inside {open:?}");
            open = Some(name);
            seen.push(name);
        } else if let Some(name) = open.filter(|n| line == format!("# ---- {n}: to here ----")) {
            assert!(seen.contains(&name));
            open = None;
        } else if open.is_some_and(|n| names.contains(&n)) {
            let code = line.strip_prefix("# ").or_else(|| line.strip_prefix('#'));
            out.push(code.unwrap_or_else(|| panic!("not a commented line in a block: {line:?}")));
            continue;
        } else if line == STDOUT_LINE && names.contains(&"store") {
            continue;
        }
        out.push(line);
    }
    assert!(open.is_none(), "block {open:?} is not closed");
    for name in names {
        assert!(seen.contains(name), "no block {name:?} in {PACKAGED}");
    }
    out.join("\n") + "\n"
}

/// `citysensed validate -c` on `text`, with a token in `$CREDENTIALS_DIRECTORY` and the spool
/// under `$STATE_DIRECTORY`, as the unit gives them.
fn validate(text: &str, dir: &Path) -> Output {
    let path: PathBuf = dir.join("citysense.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.join("influx-token"), "token\n").unwrap();
    Command::new(env!("CARGO_BIN_EXE_citysensed"))
        .args(["validate", "-c"])
        .arg(&path)
        .env("CREDENTIALS_DIRECTORY", dir)
        .env("STATE_DIRECTORY", dir)
        .output()
        .unwrap()
}

#[test]
fn packaged_config_validates_as_shipped() {
    // Exactly as installed: no credentials directory, no state directory.
    let out = Command::new(env!("CARGO_BIN_EXE_citysensed"))
        .args(["validate", "-c", PACKAGED])
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: no source configured"), "{err}");
    assert!(err.contains("warning: output.api = \"stdout\""), "{err}");
}

#[test]
fn every_commented_block_validates_uncommented() {
    let text = packaged();
    let mut cases: Vec<Vec<&str>> = BLOCKS.iter().map(|b| vec![*b]).collect();
    cases.push(BLOCKS.to_vec());
    for names in cases {
        let dir = tempfile::tempdir().unwrap();
        let edited = uncomment(&text, &names);
        assert_ne!(edited, text, "{names:?} changed nothing");
        let out = validate(&edited, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{names:?} uncommented:\n{err}\n{edited}"
        );
        if names.contains(&"MQTT") || names.contains(&"serial sensors") {
            assert!(!err.contains("no source configured"), "{names:?}: {err}");
        }
        if names.contains(&"store") {
            assert!(!err.contains("stdout"), "{names:?}: {err}");
        }
    }
}

#[test]
fn uncommenting_keeps_double_hash_lines_as_comments() {
    let text =
        "a = 1\n# ---- X: uncomment from here ----\n# b = 2\n## note\n#\n# ---- X: to here ----\n";
    let done = text
        .replace("\n# b", "\nb")
        .replace("## note\n#\n", "# note\n\n");
    assert_eq!(uncomment(text, &["X"]), done);
    assert_eq!(uncomment(text, &[]), text, "other blocks stay as they are");
}

#[tokio::test]
async fn packaged_config_runs_idle_until_stopped() {
    // With no source the daemon must not end its pipeline (the watchdog would then kill it):
    // it warns once, keeps the aggregator alive for /healthz and the watchdog, and stops
    // cleanly on SIGTERM.
    let port = free_port();
    let text = packaged().replace("127.0.0.1:9273", &format!("127.0.0.1:{port}"));
    assert!(
        text.contains(&format!("127.0.0.1:{port}")),
        "metrics listen line"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Citysensed::spawn(&text, dir.path(), "info");
    let heartbeat = "citysense_aggregator_heartbeat_seconds";
    wait_until(Duration::from_secs(10), "metrics endpoint", || async {
        try_scrape(port).await.contains_key(heartbeat)
    })
    .await;
    let first = try_scrape(port).await[heartbeat];
    // The heartbeat has seconds resolution and the loop ticks every 200 ms.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(daemon.alive(), "exited:\n{}", daemon.log());
    let later = try_scrape(port)
        .await
        .get(heartbeat)
        .copied()
        .unwrap_or(0.0);
    assert!(
        later > first,
        "aggregator heartbeat stuck at {first} ({later})"
    );
    let health = crate::support::http()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let log = daemon.terminate(Duration::from_secs(10)).await;
    assert_eq!(log.matches("no source configured").count(), 1, "{log}");
}
