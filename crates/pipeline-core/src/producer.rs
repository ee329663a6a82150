//! A publisher for processes that produce without consuming (the poller, the upload API): it
//! connects on first use, declares (or checks) the topology, and after any failure drops the
//! connection so the next publish reconnects. Each publish is still confirmed or an error.
//!
//! With `topology.declare = false` (a role user that may not configure) it checks only the
//! exchanges it publishes to: those named with [`Producer::publishing_to`] when it connects,
//! and any other one before its first publish there. A role user has no permission on the rest
//! of the topology, which RabbitMQ 4.2.6 and later require even for a passive declare.

use std::collections::BTreeSet;
use std::sync::Arc;

use lapin::Connection;
use tokio::sync::Mutex;

use crate::amqp;
use crate::consumer::UsedTopology;
use crate::messages::PipelineMessage;
use crate::publisher::{PublishError, Publisher};
use crate::settings::Settings;
use crate::telemetry::Telemetry;
use crate::topology::{Route, Topology};

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
    /// Exchanges known to exist on this connection (checked or declared).
    checked: BTreeSet<&'static str>,
}

/// The error of a passive check: the topology is not there (or the role may not see it).
fn topology_missing(e: lapin::Error) -> ProducerError {
    ProducerError::Unavailable(format!("topology missing (run `mailroom topology apply` as the admin role): {e}"))
}

/// A lazily connecting, self-healing confirming publisher.
pub struct Producer {
    name: String,
    settings: Settings,
    topology: Topology,
    routes: Vec<Route>,
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
            routes: Vec::new(),
            telemetry,
            session: Mutex::new(None),
        }
    }

    /// Names the routes this producer publishes to, so that connecting (and so readiness)
    /// already checks their exchanges when it may not declare. Without it an exchange is
    /// checked before the first publish to it.
    pub fn publishing_to(mut self, routes: &[Route]) -> Self {
        self.routes = routes.to_vec();
        self
    }

    async fn open(&self) -> Result<Session, ProducerError> {
        let unavailable = |e: lapin::Error| ProducerError::Unavailable(e.to_string());
        let connection = amqp::connect(&self.settings.amqp, &self.name).await.map_err(|e| {
            ProducerError::Unavailable(format!("cannot connect to {}: {e}", self.settings.amqp.redacted_url()))
        })?;
        let setup = connection.create_channel().await.map_err(unavailable)?;
        let checked = if self.settings.topology.declare {
            self.topology.declare(&setup).await.map_err(unavailable)?;
            // Everything was declared: nothing is ever checked on this connection.
            BTreeSet::new()
        } else {
            let used = UsedTopology::producer(&self.routes);
            used.check_exists(&setup).await.map_err(topology_missing)?;
            used.exchanges
        };
        let _ = setup.close(200, "setup done".into()).await;
        let publisher = Publisher::open(&connection, Some(self.telemetry.clone())).await.map_err(unavailable)?;
        Ok(Session { connection, publisher, checked })
    }

    /// Connects now (useful at start, to report readiness early).
    pub async fn connect(&self) -> Result<(), ProducerError> {
        self.publisher(None).await.map(drop)
    }

    /// The session's publisher, connecting first if needed; with `route`, also makes sure its
    /// exchange has been checked on this connection.
    async fn publisher(&self, route: Option<Route>) -> Result<Publisher, ProducerError> {
        let mut session = self.session.lock().await;
        let current = match session.take().filter(|s| s.connection.status().connected()) {
            Some(s) => s,
            None => {
                self.telemetry.health.set_connected(false);
                let fresh = tokio::time::timeout(amqp::SESSION_TIMEOUT, self.open()).await.map_err(|_| {
                    ProducerError::Unavailable("the broker did not complete the session setup in time".into())
                })??;
                self.telemetry.health.set_connected(true);
                fresh
            }
        };
        let current = session.insert(current);
        if let Some(route) = route.filter(|r| !self.settings.topology.declare && !current.checked.contains(r.exchange))
        {
            let used = UsedTopology::producer(&[route]);
            let check = async {
                let channel = current.connection.create_channel().await?;
                used.check_exists(&channel).await?;
                let _ = channel.close(200, "check done".into()).await;
                Ok::<_, lapin::Error>(())
            };
            tokio::time::timeout(amqp::SESSION_TIMEOUT, check)
                .await
                .map_err(|_| ProducerError::Unavailable("the broker did not answer the topology check in time".into()))?
                .map_err(topology_missing)?;
            current.checked.insert(route.exchange);
        }
        Ok(current.publisher.clone())
    }

    /// Publishes a message to its route and waits for the confirm; after a failure the next call
    /// reconnects.
    pub async fn publish<M: PipelineMessage>(&self, message: &M) -> Result<(), ProducerError> {
        let publisher = self.publisher(Some(M::ROUTE)).await?;
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
