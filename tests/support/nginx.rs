//! A real nginx (Debian package `nginx`) on 127.0.0.1 terminating TLS in front of a store:
//! server certificate and key, `ssl_verify_client on` against a client CA, and every request
//! passed to `http://127.0.0.1:<upstream>`. The config is generated into a temp dir with every
//! path nginx writes (pid, logs, temp files) inside it, so it needs no system directory.
use super::process::ServerProcess;
use super::{find_binary, free_port, READY_TIMEOUT};
use std::path::Path;
use tempfile::TempDir;

/// A running nginx. Drop kills it and removes its dir.
pub struct Nginx {
    pub port: u16,
    process: ServerProcess,
    // Declared last so the process is killed before its dir is removed.
    dir: TempDir,
}

/// The files nginx's TLS server block uses.
pub struct TlsFront<'a> {
    pub cert: &'a Path,
    pub key: &'a Path,
    /// CA that client certificates must chain to (`ssl_client_certificate`).
    pub client_ca: &'a Path,
}

impl Nginx {
    /// nginx with mutual TLS on a free port, proxying to `upstream_port` on 127.0.0.1.
    pub async fn start_mutual_tls(tls: &TlsFront<'_>, upstream_port: u16) -> Nginx {
        let bin = find_binary("nginx", "nginx");
        let dir = tempfile::Builder::new()
            .prefix("citysense-nginx-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let d = dir.path();
        let conf = d.join("nginx.conf");
        std::fs::write(&conf, config(d, port, tls, upstream_port)).expect("write nginx.conf");
        let error_log = d.join("error.log");
        let args: Vec<String> = [
            "-p",
            &d.display().to_string(),
            "-c",
            &conf.display().to_string(),
            "-e",
            &error_log.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut process = ServerProcess::spawn("nginx", &bin, &args, &d.join("stdout.log"))
            .with_extra_log(&error_log)
            .with_extra_log(&d.join("access.log"));
        // nginx writes its pid file after binding its listeners: our pid there means the port
        // is ours, not another server's.
        let pid_file = d.join("nginx.pid");
        let pid = process.pid().unwrap_or(0).to_string();
        let ready = process
            .wait_ready(READY_TIMEOUT, || {
                let (pid_file, pid) = (pid_file.clone(), pid.clone());
                async move {
                    std::fs::read_to_string(&pid_file).is_ok_and(|p| p.trim() == pid)
                        && tokio::net::TcpStream::connect(("127.0.0.1", port))
                            .await
                            .is_ok()
                }
            })
            .await;
        if let Err(why) = ready {
            process.fail("pid file written, TCP connect", &why);
        }
        Nginx { port, process, dir }
    }

    /// The store URL through nginx.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// nginx's error and access logs so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn config(dir: &Path, port: u16, tls: &TlsFront<'_>, upstream: u16) -> String {
    let d = dir.display();
    format!(
        "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 16m;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_client_certificate {ca};
        ssl_verify_client on;
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
        }}
    }}
}}
",
        cert = tls.cert.display(),
        key = tls.key.display(),
        ca = tls.client_ca.display(),
    )
}
