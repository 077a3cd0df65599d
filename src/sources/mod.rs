//! Sources: tasks that turn the outside world into [`Reading`]s.
//! Each has `run(self, out, shutdown)`; dispatch is a plain enum match.

pub mod mqtt;
pub mod serial;
pub mod simulator;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::reading::Reading;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Secret(#[from] crate::fs_limits::SecretError),
}

/// Every kind of source, ready to run.
pub enum Source {
    Mqtt(Box<mqtt::MqttSource>),
    Simulator(simulator::Simulator),
    /// Boxed like `Mqtt`: it carries its profile and decoder, far larger than the others.
    Serial(Box<serial::SerialSource>),
}

impl Source {
    pub fn name(&self) -> String {
        match self {
            Source::Mqtt(m) => format!("mqtt {}", m.name()),
            Source::Simulator(_) => "simulator".into(),
            Source::Serial(s) => format!("serial {}", s.name()),
        }
    }

    /// The source's own counters (the simulator keeps none): the aggregator reports them as
    /// per-source `sensor_health` points.
    pub fn counts(&self) -> Option<std::sync::Arc<crate::telemetry::SourceMetrics>> {
        match self {
            Source::Mqtt(m) => Some(m.counts()),
            Source::Simulator(_) => None,
            Source::Serial(s) => Some(s.counts()),
        }
    }

    pub async fn run(
        self,
        out: mpsc::Sender<Reading>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        match self {
            Source::Mqtt(m) => m.run(out, shutdown).await,
            Source::Simulator(s) => s.run(out, shutdown).await,
            Source::Serial(s) => s.run(out, shutdown).await,
        }
    }
}
