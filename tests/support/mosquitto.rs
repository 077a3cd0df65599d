//! A real mosquitto broker on 127.0.0.1 for tests, plus MQTT publish/subscribe helpers built on
//! rumqttc (each with its own event-loop task).
use super::process::{NotReady, ServerProcess};
use super::{find_binary, free_port, READY_TIMEOUT};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Start attempts when our free port was taken by someone else before the broker bound it.
const START_ATTEMPTS: u32 = 3;
/// Topic of the QoS 1 message that proves all earlier publishes reached the broker.
const BARRIER_TOPIC: &str = "citysense-test/barrier";

/// A running mosquitto 2.x broker. Drop kills it and removes its temp dir.
pub struct Mosquitto {
    pub port: u16,
    /// How long start-up took until the log said "running" and a TCP connect succeeded.
    pub ready_in: Duration,
    process: ServerProcess,
    persistence: Option<PathBuf>,
    // Declared last so the process is killed before its dir is removed.
    dir: TempDir,
}

impl Mosquitto {
    /// A non-persistent broker on a free port.
    pub async fn start() -> Mosquitto {
        for attempt in 1..=START_ATTEMPTS {
            match Self::try_start(None, free_port(), "").await {
                Ok(broker) => return broker,
                Err((NotReady::Exited(_), failure)) if attempt < START_ATTEMPTS => {
                    eprintln!("{failure}\nretrying on another port");
                }
                Err((_, failure)) => panic!("{failure}"),
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// A broker that persists its state to `dir` (keep `dir` and `port` for a restart test:
    /// stop it, then start it again with the same arguments).
    pub async fn start_persistent(dir: &Path, port: u16) -> Mosquitto {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        match Self::try_start(Some(dir.to_owned()), port, "").await {
            Ok(broker) => broker,
            Err((_, failure)) => panic!("{failure}"),
        }
    }

    /// A non-persistent broker with `extra` lines appended to its config (e.g. a
    /// `password_file`: anonymous clients are still let in, named ones are checked).
    pub async fn start_with(extra: &str) -> Mosquitto {
        match Self::try_start(None, free_port(), extra).await {
            Ok(broker) => broker,
            Err((_, failure)) => panic!("{failure}"),
        }
    }

    /// A broker with a plain listener (`port`, for the test's publisher) and a second,
    /// TLS-only listener on `tls_port` using `cert`/`key` signed by `ca` (all PEM files).
    pub async fn start_tls(tls_port: u16, ca: &Path, cert: &Path, key: &Path) -> Mosquitto {
        let extra = format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca.display(),
            cert.display(),
            key.display()
        );
        match Self::try_start(None, free_port(), &extra).await {
            Ok(broker) => broker,
            Err((_, failure)) => panic!("{failure}"),
        }
    }

    /// Starts a broker; on failure returns why, with the log read before the temp dir goes.
    async fn try_start(
        persistence: Option<PathBuf>,
        port: u16,
        extra: &str,
    ) -> Result<Mosquitto, (NotReady, String)> {
        let bin = find_binary("mosquitto", "mosquitto");
        let dir = tempfile::Builder::new()
            .prefix("citysense-mosquitto-")
            .tempdir()
            .expect("temp dir");
        let conf = dir.path().join("mosquitto.conf");
        let broker_log = dir.path().join("mosquitto.log");
        std::fs::write(
            &conf,
            config(port, &broker_log, persistence.as_deref()) + extra,
        )
        .expect("write mosquitto.conf");
        let args = vec!["-c".to_owned(), conf.display().to_string()];
        let mut process =
            ServerProcess::spawn("mosquitto", &bin, &args, &dir.path().join("stdout.log"))
                .with_extra_log(&broker_log);
        // "running" is logged after all listeners are bound, and only our broker writes this
        // log, so another server that grabbed the port cannot pass for ours.
        let ready = process
            .wait_ready(READY_TIMEOUT, || {
                let log = broker_log.clone();
                async move {
                    let running =
                        std::fs::read_to_string(&log).is_ok_and(|l| l.contains(" running"));
                    running
                        && tokio::net::TcpStream::connect(("127.0.0.1", port))
                            .await
                            .is_ok()
                }
            })
            .await;
        match ready {
            Ok(ready_in) => Ok(Mosquitto {
                port,
                ready_in,
                process,
                persistence,
                dir,
            }),
            Err(why) => {
                let failure = process.failure("log says running, TCP connect", &why);
                Err((why, failure))
            }
        }
    }

    /// SIGTERM and wait (a persistent broker writes its database on the way out).
    pub fn stop(&mut self) {
        self.process.terminate_blocking();
    }

    /// SIGKILL: a broker crash (a persistent broker loses what it had not saved yet).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// The broker's own log and its stdout/stderr.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The persistence dir, for a persistent broker.
    pub fn persistence_dir(&self) -> Option<&Path> {
        self.persistence.as_deref()
    }

    /// The temp dir holding config and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The broker config. `user root`: started as root, mosquitto would otherwise drop to user
/// `mosquitto`, which cannot write into our root-owned temp dir. The broker's own file log is
/// flushed per line (stdout to a file is block-buffered), so a failure can print it.
fn config(port: u16, log: &Path, persistence: Option<&Path>) -> String {
    let persistence = match persistence {
        // The trailing slash matters: mosquitto appends the file name to the location as is.
        Some(dir) => format!(
            "persistence true\npersistence_location {}/\n",
            dir.display()
        ),
        None => "persistence false\n".to_owned(),
    };
    format!(
        "listener {port} 127.0.0.1\n\
         allow_anonymous true\n\
         {persistence}\
         log_dest file {}\n\
         log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
         connection_messages true\n\
         max_queued_messages 100000\n\
         user root\n",
        log.display()
    )
}

fn unique_client_id(role: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "citysense-test-{role}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn options(role: &str, port: u16) -> MqttOptions {
    let mut opts = MqttOptions::new(unique_client_id(role), "127.0.0.1", port);
    opts.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    opts.set_keep_alive(Duration::from_secs(30));
    opts
}

fn qos(level: u8) -> QoS {
    match level {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        other => panic!("MQTT QoS must be 0, 1 or 2, not {other}"),
    }
}

/// Publishes `msgs` (topic, payload, QoS) in order on one connection and returns once the
/// broker has them all: every QoS 1/2 message is acknowledged, and a final QoS 1 barrier
/// message is acknowledged after the QoS 0 ones (the broker handles one connection in order).
pub async fn publish(port: u16, msgs: &[(String, Vec<u8>, u8)]) {
    let (client, eventloop) = AsyncClient::new(options("pub", port), 1024);
    let acks_expected = msgs.iter().filter(|(_, _, q)| *q > 0).count() + 1;
    let (acked_tx, acked_rx) = oneshot::channel();
    let driver = tokio::spawn(drive_publisher(eventloop, acks_expected, acked_tx));
    let timeout = Duration::from_secs(30) + Duration::from_millis(msgs.len() as u64);
    let sent = tokio::time::timeout(timeout, async {
        for (topic, payload, level) in msgs {
            let publish = client.publish(topic.as_str(), qos(*level), false, payload.clone());
            publish
                .await
                .map_err(|e| format!("cannot publish to {topic:?}: {e}"))?;
        }
        let barrier = client.publish(BARRIER_TOPIC, QoS::AtLeastOnce, false, b"barrier".to_vec());
        barrier
            .await
            .map_err(|e| format!("cannot publish the barrier: {e}"))?;
        acked_rx
            .await
            .map_err(|_| "not all acks arrived".to_owned())
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!(
            "publish to 127.0.0.1:{port}: {e}; event loop: {}",
            driver_error(driver).await
        ),
        Err(_) => {
            driver.abort();
            panic!(
                "publish of {} messages to 127.0.0.1:{port} timed out after {timeout:?}",
                msgs.len()
            )
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), driver).await;
}

/// What became of the event loop after a failed publish (stops it if it still runs).
async fn driver_error(mut driver: JoinHandle<Result<(), String>>) -> String {
    match tokio::time::timeout(Duration::from_secs(1), &mut driver).await {
        Ok(Ok(Err(e))) => e,
        Ok(Ok(Ok(()))) => "ended".to_owned(),
        Ok(Err(join)) => format!("task failed: {join}"),
        Err(_) => {
            driver.abort();
            "still connected".to_owned()
        }
    }
}

/// Polls the publisher's event loop, counting final acks; stops after our DISCONNECT is sent.
async fn drive_publisher(
    mut eventloop: EventLoop,
    expected: usize,
    acked: oneshot::Sender<()>,
) -> Result<(), String> {
    let mut acks = 0;
    let mut acked = Some(acked);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_))) => {
                acks += 1;
                if acks >= expected {
                    if let Some(tx) = acked.take() {
                        let _ = tx.send(());
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(format!("{e} (after {acks} of {expected} acks)")),
        }
    }
}

/// An MQTT subscription with its own event-loop task; received messages queue up unbounded.
pub struct Subscriber {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: JoinHandle<()>,
}

/// Subscribes to `filter` at QoS `level` and returns once the broker's SUBACK arrived, so
/// anything published afterwards is delivered.
pub async fn subscribe(port: u16, filter: &str, level: u8) -> Subscriber {
    let (client, eventloop) = AsyncClient::new(options("sub", port), 64);
    let (tx, rx) = mpsc::unbounded_channel();
    let (subacked_tx, subacked_rx) = oneshot::channel();
    let task = tokio::spawn(drive_subscriber(eventloop, tx, subacked_tx));
    client
        .subscribe(filter, qos(level))
        .await
        .unwrap_or_else(|e| panic!("subscribe {filter}: {e}"));
    match tokio::time::timeout(Duration::from_secs(10), subacked_rx).await {
        Ok(Ok(())) => Subscriber { client, rx, task },
        Ok(Err(_)) => panic!("subscriber connection to 127.0.0.1:{port} failed before SUBACK"),
        Err(_) => panic!("no SUBACK for {filter} from 127.0.0.1:{port} within 10 s"),
    }
}

async fn drive_subscriber(
    mut eventloop: EventLoop,
    tx: mpsc::UnboundedSender<(String, Vec<u8>)>,
    subacked: oneshot::Sender<()>,
) {
    let mut subacked = Some(subacked);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx.send((p.topic, p.payload.to_vec())).is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(s) = subacked.take() {
                    let _ = s.send(());
                }
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("test subscriber: {e}");
                return;
            }
        }
    }
}

impl Subscriber {
    /// The next message, or None if none arrives within `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<(String, Vec<u8>)> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// The client, e.g. to subscribe to more filters.
    pub fn client(&self) -> &AsyncClient {
        &self.client
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}
