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
    Secret(#[from] crate::service::SecretError),
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
