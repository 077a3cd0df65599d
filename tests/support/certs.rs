//! Test certificates made by `openssl` (EC P-256, valid two days) in a directory the test
//! keeps: a CA (`ca.pem`, `ca.key`), a server certificate for 127.0.0.1 signed by it
//! (`server.pem`, `server.key`), and client certificates (`<name>.pem`, `<name>.key`).

use std::path::Path;
use std::process::Command;

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Runs `openssl args` in `dir`; panics with its stderr on failure.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is needed for the TLS tests: apt-get install -y openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
pub fn make_certs(dir: &Path) {
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=citysense test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ];
    ca.extend(EC);
    openssl(dir, &ca);
    sign(
        dir,
        "server",
        "/CN=127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    );
}

/// A client certificate `<name>.pem` with key `<name>.key`, signed by the CA in `dir`.
pub fn make_client_cert(dir: &Path, name: &str) {
    let subject = format!("/CN={name}");
    sign(
        dir,
        name,
        &subject,
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    );
}

/// `<name>.pem` and `<name>.key` for `subject`, signed by `ca.pem` with extensions `ext`.
fn sign(dir: &Path, name: &str, subject: &str, ext: &str) {
    let (key, csr, pem, cnf) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.cnf"),
    );
    let mut req = vec!["req", "-subj", subject, "-keyout", &key, "-out", &csr];
    req.extend(EC);
    openssl(dir, &req);
    std::fs::write(dir.join(&cnf), ext).expect("write extensions file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &cnf,
            "-out",
            &pem,
        ],
    );
}
