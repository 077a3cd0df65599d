//! `systemd/citysense.service` checked without a running systemd: `systemd-analyze verify` on a
//! copy whose paths point at the built binary, `systemd-analyze security --offline=yes` for the
//! exposure score and the settings a serial gateway needs, and the sd_notify protocol of the
//! real binary (READY, WATCHDOG at half of `WATCHDOG_USEC`, STOPPING) on a socket we bind.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const UNIT: &str = include_str!("../../systemd/citysense.service");
/// Where the unit expects the binary (Debian package layout).
const INSTALLED_BIN: &str = "/usr/bin/citysensed";
/// Measured 1.3 with systemd 252 (Debian 12); README "Running it" explains each check the
/// unit leaves open. (2.0 before `~@privileged @resources` and `PrivateUsers=`, 1.7 before
/// `ProtectClock=yes`.)
const MAX_EXPOSURE: f64 = 1.3;
/// The unit plus README's `IPAddressAllow=` drop-in, for gateways whose peers are fixed.
const MAX_EXPOSURE_IP_ALLOW: f64 = 1.2;
/// The unit plus README's drop-in that lets `clock.sync = "kernel"` read adjtimex (chrony,
/// ntpd): it gives back what `ProtectClock=yes` took.
const MAX_EXPOSURE_CLOCK_READ: f64 = 1.7;
const README: &str = include_str!("../../README.md");

/// A copy of the unit in a temp dir, `ExecStart*` pointing at `bin`.
fn unit_copy(dir: &Path, bin: &str) -> PathBuf {
    let path = dir.join("citysense.service");
    std::fs::write(&path, UNIT.replace(INSTALLED_BIN, bin)).expect("write unit copy");
    path
}

/// The overall exposure `systemd-analyze security --offline=yes` gives `unit`.
fn exposure(unit: &Path) -> f64 {
    let out = analyze(&["security", "--offline=yes", "--no-pager"], unit);
    let report = text(&out.stdout);
    report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for citysense.service:")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{report}{}", text(&out.stderr)))
}

fn analyze(args: &[&str], unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .unwrap_or_else(|e| panic!("systemd-analyze not runnable ({e}): apt-get install systemd"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every `Key=value` of the unit for `key`, in order.
fn values<'a>(key: &str) -> Vec<&'a str> {
    UNIT.lines()
        .filter_map(|l| l.trim().strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
        .collect()
}

fn seconds(key: &str) -> u64 {
    let v = values(key);
    let [one] = v.as_slice() else {
        panic!("{key}= must be set once, found {v:?}");
    };
    one.parse()
        .unwrap_or_else(|_| panic!("{key}={one}: expected plain seconds"))
}

#[test]
fn verify_is_clean_with_the_built_binary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_copy(dir.path(), env!("CARGO_BIN_EXE_citysensed"));
    let out = analyze(&["verify"], &unit);
    let stderr = text(&out.stderr);
    let about_us: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("citysense.service"))
        .collect();
    assert!(
        out.status.success() && about_us.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );

    // The check has teeth: a missing binary is reported.
    let missing = dir.path().join("no-such-citysensed");
    let unit = unit_copy(dir.path(), &missing.display().to_string());
    let out = analyze(&["verify"], &unit);
    assert!(
        !out.status.success() && text(&out.stderr).contains("no-such-citysensed"),
        "verify did not notice a missing ExecStart binary: {}",
        text(&out.stderr)
    );
}

#[test]
fn security_exposure_is_low_and_serial_ports_stay_reachable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_copy(dir.path(), env!("CARGO_BIN_EXE_citysensed"));
    let score = exposure(&unit);
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}");
    // The figure README quotes.
    assert!(
        README.contains(&format!("exposure {score}")),
        "README does not quote exposure {score}"
    );

    let out = analyze(&["security", "--offline=yes", "--json=short"], &unit);
    let checks: Vec<serde_json::Value> =
        serde_json::from_slice(&out.stdout).expect("security --json is a JSON array");
    let set = |name: &str| -> bool {
        let c = checks
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no security check {name}"));
        c["set"].as_bool().expect("`set` is a bool")
    };
    // PrivateDevices=yes would hide /dev/ttyUSB0 and friends from the serial sources.
    assert!(!set("PrivateDevices="), "PrivateDevices must stay off");
    // ProtectClock= refuses even the read-only adjtimex: clock.sync = "auto" then reads
    // systemd-timesyncd's flag (README, "Clock sync under the sandbox").
    for must in [
        "ProtectClock=",
        "SystemCallFilter=~@clock",
        "NoNewPrivileges=",
        "ProtectSystem=",
        "RestrictNamespaces=~user",
        "SystemCallFilter=~@resources",
        "PrivateUsers=",
    ] {
        assert!(set(must), "{must} lost");
    }

    assert_eq!(values("DevicePolicy"), ["closed"]);
    let allowed = values("DeviceAllow");
    for tty in ["ttyUSB", "ttyACM", "ttyAMA"] {
        let want = format!("char-{tty} rw");
        assert!(allowed.contains(&want.as_str()), "no DeviceAllow={want}");
    }
    assert!(values("PrivateDevices").iter().all(|v| *v == "no"));
}

/// The README block that starts with the comment line `marker`, up to its closing fence.
fn readme_block(marker: &str) -> &'static str {
    README
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("README has no block starting `{marker}`"))
}

/// The exposure of the unit with `block` appended, as systemd reads a drop-in (after the
/// unit).
fn exposure_with(block: &str) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let unit = unit_copy(dir.path(), env!("CARGO_BIN_EXE_citysensed"));
    let mut text = std::fs::read_to_string(&unit).expect("read unit copy");
    text.push_str(block);
    std::fs::write(&unit, text).expect("write unit copy");
    exposure(&unit)
}

/// README's drop-in for fixed store and broker addresses gives the figure README quotes.
#[test]
fn readme_ip_allow_drop_in_lowers_the_exposure() {
    let block = readme_block("# /etc/systemd/system/citysense.service.d/network.conf");
    assert!(block.contains("IPAddressDeny=any") && block.contains("IPAddressAllow="));
    let score = exposure_with(block);
    assert!(score <= MAX_EXPOSURE_IP_ALLOW, "exposure {score}");
    assert!(README.contains(&format!("exposure {score} with this drop-in")));
}

/// README's drop-in for chrony or ntpd lets adjtimex through again, at the figure README
/// quotes for it.
#[test]
fn readme_clock_read_drop_in_allows_adjtimex() {
    let block = readme_block("# /etc/systemd/system/citysense.service.d/clock.conf");
    let score = exposure_with(block);
    assert!(score <= MAX_EXPOSURE_CLOCK_READ, "exposure {score}");
    assert!(README.contains(&format!("exposure {score} with the clock drop-in")));
    assert!(block.contains("ProtectClock=no") && block.contains("SystemCallFilter=adjtimex"));
}

#[test]
fn notify_settings_match_the_code() {
    assert_eq!(values("Type"), ["notify"], "the daemon sends READY=1");
    assert!(values("NotifyAccess").iter().all(|v| *v == "main"));
    // The watchdog is pinged at half WatchdogSec, only while the aggregator heartbeat is at
    // most STALE_AFTER_SECS old: a shorter watchdog would kill a daemon /healthz calls alive.
    let watchdog = seconds("WatchdogSec");
    let stale = citysense::service::STALE_AFTER_SECS as u64;
    assert!(watchdog > stale, "WatchdogSec={watchdog} <= {stale}");
    // SIGTERM: drain for STOP_DEADLINE, then 2 s for the other tasks, before systemd kills.
    let stop = seconds("TimeoutStopSec");
    let drain = citysense::STOP_DEADLINE.as_secs() + 2;
    assert!(stop > drain, "TimeoutStopSec={stop} <= {drain} s drain");
    let pre = values("ExecStartPre");
    assert!(pre.iter().any(|p| p.contains(" validate ")), "{pre:?}");
}

/// The binary under a fake service manager: READY, then WATCHDOG about every half of
/// WATCHDOG_USEC, then STOPPING on SIGTERM, all from the main PID.
#[test]
fn binary_speaks_sd_notify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("socket timeout");
    let config = dir.path().join("citysense.toml");
    let spool = dir.path().join("spool");
    std::fs::write(
        &config,
        format!(
            "[gateway]\nid = \"notify-test\"\n[aggregation]\nwindow_secs = 1\n\
             [clock]\nsync = \"assume\"\n[simulator]\nair_sensors = 1\ncounters = 0\n\
             [output]\napi = \"stdout\"\n[spool]\ndir = \"{}\"\n[metrics]\nlisten = \"\"\n",
            spool.display()
        ),
    )
    .expect("write config");
    // systemd sets WATCHDOG_PID to the main PID; `exec` keeps the shell's `$$`.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" run -c \"$1\"")
        .arg(env!("CARGO_BIN_EXE_citysensed"))
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env("CITYSENSE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn citysensed");
    let pid = child.id() as libc::pid_t;

    let mut got: Vec<(Instant, String)> = Vec::new();
    let start = Instant::now();
    let mut term_sent = false;
    while start.elapsed() < Duration::from_secs(15) {
        let mut buf = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            got.push((Instant::now(), text(&buf[..n])));
        }
        let pings = got.iter().filter(|(_, m)| m.contains("WATCHDOG=1")).count();
        if !term_sent && pings >= 4 {
            // SAFETY: plain kill(2) on our own child's pid.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
            term_sent = true;
        }
        if got.iter().any(|(_, m)| m.contains("STOPPING=1")) {
            break;
        }
    }
    if !term_sent {
        // No watchdog pings: end the child so the assertions below can report why.
        let _ = child.kill();
    }
    let status = child.wait().expect("wait citysensed");
    let log: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
    assert!(status.success(), "exit {status}; notifications {log:?}");
    let ready = log.iter().position(|m| m.lines().any(|l| l == "READY=1"));
    let first_ping = log
        .iter()
        .position(|m| m.lines().any(|l| l == "WATCHDOG=1"));
    let stopping = log
        .iter()
        .position(|m| m.lines().any(|l| l == "STOPPING=1"));
    let (Some(ready), Some(first_ping), Some(stopping)) = (ready, first_ping, stopping) else {
        panic!("missing READY/WATCHDOG/STOPPING in {log:?}");
    };
    assert!(ready < first_ping && first_ping < stopping, "{log:?}");
    // Pings come every WATCHDOG_USEC / 2 (0.5 s here): never late enough to trip the watchdog.
    let pings: Vec<Instant> = got
        .iter()
        .filter(|(_, m)| m.contains("WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    for gap in pings.windows(2).map(|w| w[1] - w[0]) {
        assert!(
            gap > Duration::from_millis(300) && gap < Duration::from_millis(900),
            "watchdog gap {gap:?}, want about 500 ms; {log:?}"
        );
    }
}
