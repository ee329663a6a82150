//! The reconnecting consume loop around a [`Processor`], and `serve_worker`, the way every
//! stage binary runs it with its health endpoint.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt as _;
use lapin::Connection;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::amqp;
use crate::backoff::Backoff;
use crate::publisher::Publisher;
use crate::settings::{ConsumerSettings, Settings};
use crate::telemetry::Telemetry;
use crate::topology::{QueueSpec, Topology};

use super::processor::{Handler, Processor};
use super::roles::UsedTopology;

/// The worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The retry ladder is empty or the concurrency is zero.
    #[error("invalid worker configuration: {0}")]
    Config(String),
}

/// A consuming worker: reconnecting consume loop around a [`Processor`].
pub struct Worker<H> {
    name: String,
    queue: &'static QueueSpec,
    handler: Arc<H>,
    settings: Settings,
    consumer: ConsumerSettings,
    topology: Topology,
    telemetry: Arc<Telemetry>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

struct Session<H> {
    connection: Connection,
    consumer: lapin::Consumer,
    consume_channel: lapin::Channel,
    processor: Processor<H>,
}

impl<H: Handler> Worker<H> {
    /// A worker named `name` (the binary name: it selects `[workers.<name>]` overrides and names
    /// the broker connection) consuming `queue`.
    pub fn new(
        name: impl Into<String>,
        queue: &'static QueueSpec,
        handler: Arc<H>,
        settings: &Settings,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        let name = name.into();
        let consumer = settings.consumer_for(&name);
        let topology = Topology::new(&settings.topology.retry_delays_ms);
        Self { name, queue, handler, settings: settings.clone(), consumer, topology, telemetry }
    }

    /// What this worker uses of the topology, and so checks when it may not declare.
    pub fn used_topology(&self) -> UsedTopology {
        UsedTopology::consumer(self.queue, self.handler.publishes())
    }

    /// Consumes until `shutdown` completes, reconnecting whenever the connection is lost.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), WorkerError> {
        if self.consumer.concurrency == 0 || self.consumer.prefetch == 0 {
            return Err(WorkerError::Config("consumer.concurrency and consumer.prefetch must be at least 1".into()));
        }
        tokio::pin!(shutdown);
        let health = &self.telemetry.health;
        let mut backoff = Backoff::from_settings(&self.settings.amqp);
        loop {
            let attempt = tokio::select! {
                () = &mut shutdown => return Ok(()),
                s = tokio::time::timeout(amqp::SESSION_TIMEOUT, self.open_session()) => {
                    s.unwrap_or_else(|_| Err("the broker did not complete the session setup in time".into()))
                }
            };
            let reason = match attempt {
                Ok(session) => {
                    backoff.reset();
                    match self.consume(session, &mut shutdown).await {
                        SessionEnd::Shutdown => return Ok(()),
                        SessionEnd::Lost(reason) => {
                            self.telemetry.metrics.reconnects.inc();
                            reason
                        }
                    }
                }
                Err(reason) => reason,
            };
            health.set_connected(false);
            health.set_reason(reason.clone());
            let delay = backoff.next_delay();
            warn!(worker = %self.name, queue = self.queue.name, delay_ms = delay.as_millis() as u64, %reason,
                "Broker session unavailable; reconnecting.");
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn open_session(&self) -> Result<Session<H>, String> {
        let connection = amqp::connect(&self.settings.amqp, &self.consumer.consumer_id)
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.settings.amqp.redacted_url()))?;
        self.telemetry.health.set_connected(true);
        let setup = connection.create_channel().await.map_err(|e| e.to_string())?;
        if self.settings.topology.declare {
            self.topology.declare(&setup).await.map_err(|e| format!("cannot declare topology: {e}"))?;
        } else {
            // Only what this worker uses: a role user may not even look at the rest.
            self.used_topology()
                .check_exists(&setup)
                .await
                .map_err(|e| format!("topology missing (run `mailroom topology apply` as the admin role): {e}"))?;
        }
        let _ = setup.close(200, "setup done".into()).await;
        let consume_channel = connection.create_channel().await.map_err(|e| e.to_string())?;
        consume_channel
            .basic_qos(self.consumer.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| e.to_string())?;
        let publisher = Publisher::open(&connection, Some(self.telemetry.clone())).await.map_err(|e| e.to_string())?;
        let consumer = consume_channel
            .basic_consume(
                self.queue.name.into(),
                self.consumer.consumer_id.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("cannot consume {}: {e}", self.queue.name))?;
        let processor = Processor::new(
            self.handler.clone(),
            publisher,
            self.queue,
            self.topology.retry_ladder(self.queue),
            self.consumer.consumer_id.as_str(),
            self.telemetry.clone(),
        );
        Ok(Session { connection, consumer, consume_channel, processor })
    }

    async fn consume<F: Future<Output = ()>>(
        &self,
        mut session: Session<H>,
        shutdown: &mut std::pin::Pin<&mut F>,
    ) -> SessionEnd {
        let health = &self.telemetry.health;
        health.set_consuming(true);
        health.set_reason(String::new());
        info!(worker = %self.name, queue = self.queue.name, prefetch = self.consumer.prefetch,
            concurrency = self.consumer.concurrency, "Consuming.");
        let slots = Arc::new(Semaphore::new(self.consumer.concurrency));
        let end = loop {
            let permit = tokio::select! {
                biased;
                () = shutdown.as_mut() => break SessionEnd::Shutdown,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break SessionEnd::Lost("slots closed".into()),
                },
            };
            let next = tokio::select! {
                biased;
                () = shutdown.as_mut() => break SessionEnd::Shutdown,
                n = session.consumer.next() => n,
            };
            match next {
                Some(Ok(delivery)) => {
                    let processor = session.processor.clone();
                    tokio::spawn(async move {
                        processor.process(delivery).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => break SessionEnd::Lost(format!("consumer failed: {e}")),
                None => break SessionEnd::Lost("consumer cancelled or connection closed".into()),
            }
        };
        health.set_consuming(false);
        if let SessionEnd::Shutdown = end {
            self.drain(&session, &slots).await;
        }
        let _ = session.connection.close(200, "bye".into()).await;
        end
    }

    /// Stops deliveries, then waits for in-flight handlers up to the drain deadline.
    async fn drain(&self, session: &Session<H>, slots: &Arc<Semaphore>) {
        let tag = self.consumer.consumer_id.as_str();
        let _ = session.consume_channel.basic_cancel(tag.into(), BasicCancelOptions::default()).await;
        let total = u32::try_from(self.consumer.concurrency).unwrap_or(u32::MAX);
        let in_flight = self.consumer.concurrency - slots.available_permits();
        info!(worker = %self.name, in_flight, "Draining in-flight messages.");
        match tokio::time::timeout(self.consumer.drain_timeout(), slots.acquire_many(total)).await {
            Ok(_) => info!(worker = %self.name, "Drained; stopping."),
            Err(_) => warn!(
                worker = %self.name,
                unfinished = self.consumer.concurrency - slots.available_permits(),
                "Drain deadline passed; unfinished messages will be redelivered."
            ),
        }
    }
}

/// Runs a consuming worker the way every stage binary does: serves `/metrics`, `/healthz` and
/// `/readyz` on `http.listen`, consumes until `shutdown`, drains, then stops the endpoint.
pub async fn serve_worker<H: Handler>(
    name: &str,
    queue: &'static QueueSpec,
    handler: Arc<H>,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    serve_worker_with(name, queue, handler, settings, Arc::new(Telemetry::default()), shutdown).await
}

/// [`serve_worker`] with a telemetry the handler has already registered its own metrics in.
pub async fn serve_worker_with<H: Handler>(
    name: &str,
    queue: &'static QueueSpec,
    handler: Arc<H>,
    settings: &Settings,
    telemetry: Arc<Telemetry>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let server = crate::http::HealthServer::bind(&settings.http.listen, telemetry.clone())
        .await
        .map_err(|e| ServeError::Http(settings.http.listen.clone(), e))?;
    let addr = server.local_addr().map_err(|e| ServeError::Http(settings.http.listen.clone(), e))?;
    info!(worker = name, %addr, amqp = %settings.amqp.redacted_url(), "Serving /metrics, /healthz and /readyz.");
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = server.spawn(async move {
        let _ = http_stopped.await;
    });
    let result = Worker::new(name, queue, handler, settings, telemetry).run(shutdown).await;
    let _ = stop_http.send(());
    let _ = http.await;
    info!(worker = name, "Stopped.");
    result.map_err(ServeError::Worker)
}

/// A worker binary could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The health endpoint could not bind.
    #[error("cannot listen on {0}: {1}")]
    Http(String, std::io::Error),
    /// The worker is misconfigured.
    #[error(transparent)]
    Worker(#[from] WorkerError),
}
