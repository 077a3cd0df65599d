//! `citysensed validate` (and `run`) against the files a configuration names: bounded reads
//! of the config and secrets, secret lookup, TLS files, the spool directory. Each refusal must
//! name the config file, line and key. The binary runs with a 512 MiB address-space limit and
//! a deadline, so an unbounded read fails the test instead of the machine.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Address space the binary may use: far above what validating needs (~30 MiB).
const MEMORY_LIMIT: u64 = 512 << 20;
const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `citysensed <args>` bounded in memory and time; panics past the deadline.
fn citysensed(args: &[&str], cfg: &Path, env: &[(&str, &Path)]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = crate::support::citysensed::command();
    cmd.args(args)
        .arg(cfg)
        .env_remove("CREDENTIALS_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("citysensed {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn validate(cfg: &Path) -> Output {
    citysensed(&["validate", "-c"], cfg, &[])
}

/// Asserts a refusal (exit 2) whose stderr contains `want`.
fn refused(out: &Output, want: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(want), "want {want:?} in:\n{err}");
}

/// A v2 config whose `[output]` ends with `extra` (line 7 onwards), its spool in `dir`.
fn v2_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = format!(
        "[gateway]\nid = \"gw\"\n[simulator]\n[output]\napi = \"v2\"\nurl = \"http://127.0.0.1:8086\"\nbucket = \"b\"\n{extra}\n[spool]\ndir = \"{}\"\n",
        dir.join("spool").display()
    );
    let path = dir.join("citysense.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn config_from_dev_zero_is_refused_at_once() {
    let start = Instant::now();
    let out = validate(Path::new("/dev/zero"));
    refused(
        &out,
        "/dev/zero: cannot read: not a regular file (a character device)",
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn config_over_one_mib_is_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.toml");
    // Sparse: 64 MiB of NULs that take no disk.
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let out = validate(&path);
    refused(
        &out,
        &format!(
            "{}: cannot read: larger than the limit of 1 MiB for a configuration file",
            path.display()
        ),
    );
}

#[test]
fn token_file_dev_zero_is_refused_by_validate_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = v2_config(dir.path(), "token_file = \"/dev/zero\"");
    let want = format!(
        "{}:8: key `output.token_file`: cannot read secret /dev/zero: not a regular file (a character device)",
        cfg.display()
    );
    refused(&validate(&cfg), &want);
    refused(&citysensed(&["run", "-c"], &cfg, &[]), &want);
}

#[test]
fn unreadable_token_files_are_refused_with_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("a-dir")).unwrap();
    std::os::unix::fs::symlink(p.join("loop-b"), p.join("loop-a")).unwrap();
    std::os::unix::fs::symlink(p.join("loop-a"), p.join("loop-b")).unwrap();
    std::fs::write(p.join("big"), vec![b'x'; (64 << 10) + 1]).unwrap();
    let cases = [
        ("missing", "No such file or directory"),
        ("a-dir", "not a regular file (a directory)"),
        ("loop-a", "Too many levels of symbolic links"),
        ("big", "larger than the limit of 64 KiB for a secret"),
    ];
    for (name, why) in cases {
        let secret = p.join(name);
        let cfg = v2_config(p, &format!("token_file = \"{}\"", secret.display()));
        let want = format!(
            "{}:8: key `output.token_file`: cannot read secret {}: {why}",
            cfg.display(),
            secret.display()
        );
        refused(&validate(&cfg), &want);
    }
}

#[test]
fn password_files_of_v1_and_mqtt_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::create_dir(p.join("a-dir")).unwrap();
    let text = format!(
        "[gateway]\nid = \"gw\"\n[[mqtt]]\nusername = \"u\"\npassword_file = \"{}\"\n[[mqtt.subscription]]\ntopic = \"a/{{quantity}}\"\n[output]\napi = \"v1\"\nurl = \"http://127.0.0.1:8086\"\ndb = \"d\"\npassword_file = \"{}\"\n[spool]\ndir = \"{}\"\n",
        p.join("missing").display(),
        p.join("a-dir").display(),
        p.join("spool").display()
    );
    let cfg = p.join("citysense.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = validate(&cfg);
    let file = cfg.display();
    refused(
        &out,
        &format!("{file}:12: key `output.password_file`: cannot read secret"),
    );
    refused(&out, "a-dir: not a regular file (a directory)");
    refused(
        &out,
        &format!("{file}:5: key `mqtt[0].password_file`: cannot read secret"),
    );
    refused(&out, "2 error(s)");
}

#[test]
fn relative_secret_is_looked_up_in_the_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    let creds = tempfile::tempdir().unwrap();
    let cfg = v2_config(dir.path(), "token_file = \"influx-token\"");
    std::fs::write(creds.path().join("influx-token"), "t0ken\n").unwrap();
    let out = citysensed(
        &["validate", "-c"],
        &cfg,
        &[("CREDENTIALS_DIRECTORY", creds.path())],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the directory the name is relative to the working directory: not there.
    refused(
        &validate(&cfg),
        "key `output.token_file`: cannot read secret influx-token: No such file or directory",
    );
    // A credential that is a directory is reported at its place in the credentials directory.
    std::fs::remove_file(creds.path().join("influx-token")).unwrap();
    std::fs::create_dir(creds.path().join("influx-token")).unwrap();
    let out = citysensed(
        &["validate", "-c"],
        &cfg,
        &[("CREDENTIALS_DIRECTORY", creds.path())],
    );
    refused(
        &out,
        &format!(
            "key `output.token_file`: cannot read secret {}: not a regular file (a directory)",
            creds.path().join("influx-token").display()
        ),
    );
}

#[test]
fn token_with_a_newline_inside_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("token");
    std::fs::write(&secret, "line one\nline two\n").unwrap();
    let cfg = v2_config(
        dir.path(),
        &format!("token_file = \"{}\"", secret.display()),
    );
    refused(
        &validate(&cfg),
        &format!(
            "{}:8: key `output.token_file`: {}: contains control characters",
            cfg.display(),
            secret.display()
        ),
    );
}

#[test]
fn spool_path_that_is_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = v2_config(dir.path(), "token = \"t\"");
    std::fs::write(dir.path().join("spool"), "").unwrap();
    refused(
        &validate(&cfg),
        &format!(
            "{}:10: key `spool.dir`: spool directory {}: exists and is not a directory",
            cfg.display(),
            dir.path().join("spool").display()
        ),
    );
    // Under a regular file it cannot be created either.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("/spool\"", "/spool/inner\""),
    )
    .unwrap();
    refused(&validate(&cfg), "cannot be created: ");
}

/// A self-signed certificate and its key, made by openssl.
fn make_cert(dir: &Path) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args([
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
            "-subj",
            "/CN=citysense-test",
        ])
        .output()
        .expect("openssl is needed: apt-get install -y openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn mqtt_tls_config(dir: &Path, tls: &str) -> std::path::PathBuf {
    let text = format!(
        "[gateway]\nid = \"gw\"\n[[mqtt]]\n[mqtt.tls]\n{tls}\n[[mqtt.subscription]]\ntopic = \"a/{{quantity}}\"\n[output]\napi = \"stdout\"\n"
    );
    let path = dir.join("citysense.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn tls_files_are_parsed_as_the_source_parses_them() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    make_cert(p);
    std::fs::write(p.join("garbage.pem"), "this is not a certificate\n").unwrap();
    let good = format!(
        "ca_file = \"{0}/cert.pem\"\nclient_cert_file = \"{0}/cert.pem\"\nclient_key_file = \"{0}/key.pem\"",
        p.display()
    );
    let out = validate(&mqtt_tls_config(p, &good));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases = [
        (
            format!("ca_file = \"{}/missing.pem\"", p.display()),
            "5: key `mqtt[0].tls.ca_file`: cannot read",
        ),
        (
            format!("ca_file = \"{}/garbage.pem\"", p.display()),
            "5: key `mqtt[0].tls.ca_file`: ",
        ),
        (
            good.replace("key.pem", "garbage.pem"),
            "7: key `mqtt[0].tls.client_key_file`: ",
        ),
        (
            format!("ca_file = \"{}/cert.pem\"\nclient_cert_file = \"{0}/cert.pem\"", p.display()),
            "6: key `mqtt[0].tls.client_cert_file`: client_cert_file and client_key_file go together",
        ),
    ];
    for (tls, want) in cases {
        let cfg = mqtt_tls_config(p, &tls);
        refused(&validate(&cfg), &format!("{}:{want}", cfg.display()));
    }
    let cfg = mqtt_tls_config(p, &format!("ca_file = \"{}/garbage.pem\"", p.display()));
    refused(&validate(&cfg), "garbage.pem: no PEM certificate in it");
}
