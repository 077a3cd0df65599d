//! Captures every log line of this test binary at TRACE, `tracing` events and `log` records
//! (rumqttc logs through `log`) alike, into one in-memory buffer: what the daemon would have
//! written to the journal with `CITYSENSE_LOG=trace`. One global subscriber per test binary.

use std::io;
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut b = self.0.lock().unwrap_or_else(|e| e.into_inner());
        b.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing subscriber (once); call before starting the daemon.
pub fn capture() {
    BUFFER.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        // With the daemon's log-tail layer, as `citysensed` installs it (`/api/v1/status`).
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(writer.clone()))
            .finish()
            .with(citysense::telemetry::log_ring::RingLayer)
            .try_init()
            .expect("no other global subscriber in this test binary");
        buf
    });
}

/// Everything logged since [`capture`].
pub fn text() -> String {
    let buf = BUFFER.get().expect("logs::capture() was called");
    let b = buf.lock().unwrap_or_else(|e| e.into_inner());
    String::from_utf8_lossy(&b).into_owned()
}
