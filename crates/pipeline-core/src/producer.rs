//! A publisher for processes that produce without consuming (the poller, the upload API): it
//! connects on first use, declares (or checks) the topology, and after any failure drops the
//! connection so the next publish reconnects. Each publish is still confirmed or an error.

use std::sync::Arc;

use lapin::Connection;
use tokio::sync::Mutex;

use crate::amqp;
use crate::messages::PipelineMessage;
use crate::publisher::{PublishError, Publisher};
use crate::settings::Settings;
use crate::telemetry::Telemetry;
use crate::topology::Topology;

/// Publishing failed: the broker is unreachable, or the publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    /// No connection could be made or the topology is missing.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The publish was nacked, returned or lost.
    #[error(transparent)]
    Publish(#[from] PublishError),
}

struct Session {
    connection: Connection,
    publisher: Publisher,
}

/// A lazily connecting, self-healing confirming publisher.
pub struct Producer {
    name: String,
    settings: Settings,
    topology: Topology,
    telemetry: Arc<Telemetry>,
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Producer {
    /// A producer named `name` (the broker connection's name).
    pub fn new(name: impl Into<String>, settings: &Settings, telemetry: Arc<Telemetry>) -> Self {
        Self {
            name: name.into(),
            topology: Topology::new(&settings.topology.retry_delays_ms),
            settings: settings.clone(),
            telemetry,
            session: Mutex::new(None),
        }
    }

    async fn open(&self) -> Result<Session, ProducerError> {
        let unavailable = |e: lapin::Error| ProducerError::Unavailable(e.to_string());
        let connection = amqp::connect(&self.settings.amqp, &self.name).await.map_err(|e| {
            ProducerError::Unavailable(format!("cannot connect to {}: {e}", self.settings.amqp.redacted_url()))
        })?;
        let setup = connection.create_channel().await.map_err(unavailable)?;
        if self.settings.topology.declare {
            self.topology.declare(&setup).await.map_err(unavailable)?;
        } else {
            self.topology.check_exists(&setup).await.map_err(|e| {
                ProducerError::Unavailable(format!("topology missing (run `mailroom topology apply`): {e}"))
            })?;
        }
        let _ = setup.close(200, "setup done".into()).await;
        let publisher = Publisher::open(&connection, Some(self.telemetry.clone())).await.map_err(unavailable)?;
        Ok(Session { connection, publisher })
    }

    /// Connects now (useful at start, to report readiness early).
    pub async fn connect(&self) -> Result<(), ProducerError> {
        self.publisher().await.map(drop)
    }

    async fn publisher(&self) -> Result<Publisher, ProducerError> {
        let mut session = self.session.lock().await;
        if let Some(s) = session.as_ref().filter(|s| s.connection.status().connected()) {
            return Ok(s.publisher.clone());
        }
        self.telemetry.health.set_connected(false);
        let fresh = tokio::time::timeout(amqp::SESSION_TIMEOUT, self.open()).await.map_err(|_| {
            ProducerError::Unavailable("the broker did not complete the session setup in time".into())
        })??;
        let publisher = fresh.publisher.clone();
        *session = Some(fresh);
        self.telemetry.health.set_connected(true);
        Ok(publisher)
    }

    /// Publishes a message to its route and waits for the confirm; after a failure the next call
    /// reconnects.
    pub async fn publish<M: PipelineMessage>(&self, message: &M) -> Result<(), ProducerError> {
        let publisher = self.publisher().await?;
        match publisher.publish(message).await {
            Ok(()) => Ok(()),
            Err(e) => {
                if matches!(e, PublishError::Amqp { .. }) {
                    self.telemetry.health.set_connected(false);
                    if let Some(s) = self.session.lock().await.take() {
                        let _ = s.connection.close(200, "reconnecting".into()).await;
                    }
                }
                Err(e.into())
            }
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        if let Some(s) = self.session.lock().await.take() {
            let _ = s.connection.close(200, "bye".into()).await;
        }
    }
}
