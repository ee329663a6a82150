//! The consumer runtime every worker is built on.
//!
//! A [`Worker`] connects, declares (or checks) the topology, consumes one work queue with a
//! configurable prefetch and runs up to `concurrency` handlers at once. For each delivery the
//! [`Processor`] decodes the body, calls the [`Handler`], publishes its outputs with confirms and
//! only then acks the input. Failures are typed: a transient one goes to the next delay queue of
//! the retry ladder (and comes back to the work queue when its TTL expires), a permanent one —
//! or a transient one past the last step — is wrapped in the seed's dead-letter envelope,
//! published to `dead_letter_exchange`, and only then acked. If even that publish fails the
//! delivery is returned to the queue, so nothing is ever dropped.
//!
//! Connection loss ends the session; the worker reconnects with backoff and jitter, re-declares
//! and resumes. On shutdown it stops consuming, lets in-flight handlers finish within the drain
//! deadline and closes the connection, so whatever did not finish is redelivered.
//!
//! A worker that may not declare (`topology.declare = false`, running as its role's broker user)
//! checks passively only what it uses ([`UsedTopology`]): its own queue and the exchanges it
//! publishes to. Checking the whole topology would need a permission on every queue and
//! exchange from RabbitMQ 4.2.6 on, which a least-privilege role does not have.

use std::collections::BTreeSet;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt as _, StreamExt as _};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tracing::{debug, error, info, warn};

use crate::amqp;
use crate::backoff::Backoff;
use crate::dead_letter::{DeadLetter, FailureInfo};
use crate::error::{Fate, HandlerError};
use crate::publisher::{Outgoing, Publisher, RETRY_COUNT_HEADER, int_header};
use crate::settings::{ConsumerSettings, Settings};
use crate::telemetry::{DeadLetterLabels, QueueLabel, Telemetry};
use crate::topology::{
    self, EMAILS_TO_CLASSIFY, EMAILS_TO_RESPOND, QueueSpec, RETRY_EXCHANGE, RetryStep, Route, Topology,
};

/// What a handler learns about a delivery besides its body.
#[derive(Debug, Clone, Default)]
pub struct DeliveryMeta {
    /// AMQP `message_id`.
    pub message_id: Option<String>,
    /// AMQP `correlation_id` (the id of the email's first message), or the message id.
    pub correlation_id: Option<String>,
    /// How many retry steps this message has been through.
    pub retry_count: u32,
    /// Whether the broker redelivered it (a previous attempt may have had effects).
    pub redelivered: bool,
    /// AMQP priority.
    pub priority: Option<u8>,
    /// Length of the retry ladder: a transient failure now is final when
    /// `retry_count >= max_retries`.
    pub max_retries: u32,
}

impl DeliveryMeta {
    /// Reads the meta of a delivery.
    pub fn of(delivery: &Delivery) -> Self {
        let props = &delivery.properties;
        let message_id = props.message_id().as_ref().map(ToString::to_string);
        let correlation_id = props.correlation_id().as_ref().map(ToString::to_string).or_else(|| message_id.clone());
        let retry_count =
            int_header(props.headers().as_ref(), RETRY_COUNT_HEADER).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        Self {
            message_id,
            correlation_id,
            retry_count,
            redelivered: delivery.redelivered,
            priority: *props.priority(),
            max_retries: 0,
        }
    }

    /// Whether a transient failure of this attempt would be dead-lettered rather than retried
    /// (handlers use it to record a final state, e.g. a document `failed`).
    pub fn is_last_attempt(&self) -> bool {
        self.retry_count >= self.max_retries
    }
}

/// Handles the messages of one queue.
pub trait Handler: Send + Sync + 'static {
    /// The decoded body. A body that does not decode is dead-lettered without calling the handler.
    type Input: DeserializeOwned + Send + 'static;

    /// Handles one message and returns what to publish for it. The runtime publishes the
    /// outputs with confirms and acks the input only when all are confirmed.
    fn handle(
        &self,
        input: Self::Input,
        meta: &DeliveryMeta,
    ) -> impl Future<Output = Result<Vec<Outgoing>, HandlerError>> + Send;
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled; outputs confirmed; input acked.
    Completed {
        /// Number of outputs published.
        published: usize,
    },
    /// Parked in a delay queue without spending a retry (the handler asked to wait).
    Deferred {
        /// The delay queue's delay.
        delay_ms: u64,
    },
    /// Sent to a retry delay queue.
    Retried {
        /// Zero-based ladder step.
        step: usize,
    },
    /// Dead-lettered with this `error_type`.
    DeadLettered {
        /// `failure_info.error_type`.
        error_type: String,
    },
    /// Returned to its queue (the broker was unavailable for the retry or dead-letter publish).
    Requeued,
    /// The final ack or nack failed (connection lost): the broker will redeliver.
    Unacknowledged,
}

/// The single-step part of the runtime: turns one delivery into one [`Disposition`]. Tests can
/// call [`Processor::process`] with a delivery from `basic_get`, without the consume loop.
pub struct Processor<H> {
    handler: Arc<H>,
    publisher: Publisher,
    queue: &'static QueueSpec,
    ladder: Arc<[RetryStep]>,
    consumer_id: Arc<str>,
    telemetry: Arc<Telemetry>,
}

impl<H> Clone for Processor<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
            publisher: self.publisher.clone(),
            queue: self.queue,
            ladder: self.ladder.clone(),
            consumer_id: self.consumer_id.clone(),
            telemetry: self.telemetry.clone(),
        }
    }
}

/// Error type of a body that did not decode.
fn decode_error_type(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Data => "InvalidMessage",
        _ => "InvalidJson",
    }
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "handler panicked".to_owned()
    }
}

/// Decrements the in-flight gauge however processing ends.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl<H: Handler> Processor<H> {
    /// A processor for `queue`, publishing through `publisher`.
    pub fn new(
        handler: Arc<H>,
        publisher: Publisher,
        queue: &'static QueueSpec,
        ladder: Vec<RetryStep>,
        consumer_id: impl Into<Arc<str>>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self { handler, publisher, queue, ladder: ladder.into(), consumer_id: consumer_id.into(), telemetry }
    }

    /// Handles one delivery completely: decode, handle, publish, then ack, retry or dead-letter.
    pub async fn process(&self, delivery: Delivery) -> Disposition {
        let metrics = &self.telemetry.metrics;
        let label = QueueLabel { queue: self.queue.name.to_owned() };
        metrics.consumed.get_or_create(&label).inc();
        let gauge = metrics.in_flight.get_or_create(&label).clone();
        gauge.inc();
        let _in_flight = InFlight(&gauge);
        let mut meta = DeliveryMeta::of(&delivery);
        meta.max_retries = u32::try_from(self.ladder.len()).unwrap_or(u32::MAX);

        let started = Instant::now();
        let outcome = self.run_handler(&delivery, &meta).await;
        metrics.handler_seconds.get_or_create(&label).observe(started.elapsed().as_secs_f64());

        let message_id = meta.message_id.as_deref().unwrap_or("-");
        match outcome {
            Ok(published) => {
                debug!(message_id, queue = self.queue.name, published, "Handled message.");
                match delivery.acker.ack(BasicAckOptions::default()).await {
                    Ok(_) => {
                        metrics.acked.get_or_create(&label).inc();
                        Disposition::Completed { published }
                    }
                    Err(e) => {
                        warn!(message_id, queue = self.queue.name, error = %e, "Ack failed; the broker will redeliver.");
                        Disposition::Unacknowledged
                    }
                }
            }
            Err(HandlerError { fate: Fate::Defer(wait), .. }) => self.defer(delivery, &meta, wait).await,
            Err(e) if e.is_transient() && (meta.retry_count as usize) < self.ladder.len() => {
                self.retry(delivery, &meta, &e).await
            }
            Err(e) => self.dead_letter(delivery, &meta, &e).await,
        }
    }

    /// Decodes and handles, then publishes the outputs; panics become permanent failures.
    async fn run_handler(&self, delivery: &Delivery, meta: &DeliveryMeta) -> Result<usize, HandlerError> {
        let input: H::Input =
            serde_json::from_slice(&delivery.data).map_err(|e| HandlerError::permanent(decode_error_type(&e), e))?;
        let outputs = AssertUnwindSafe(self.handler.handle(input, meta))
            .catch_unwind()
            .await
            .map_err(|panic| HandlerError::permanent("HandlerPanicked", panic_message(panic)))??;
        let sends = outputs.into_iter().map(|mut out| {
            if out.correlation_id.is_none() {
                out.correlation_id.clone_from(&meta.correlation_id);
            }
            async move { self.publisher.send(&out).await }
        });
        let results = futures_util::future::join_all(sends).await;
        let published = results.len();
        results.into_iter().collect::<Result<Vec<()>, _>>().map_err(|e| HandlerError::transient("PublishFailed", e))?;
        Ok(published)
    }

    async fn retry(&self, delivery: Delivery, meta: &DeliveryMeta, error: &HandlerError) -> Disposition {
        let step = meta.retry_count as usize;
        let target = &self.ladder[step];
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(RETRY_COUNT_HEADER.into(), AMQPValue::LongInt(i32::try_from(step + 1).unwrap_or(i32::MAX)));
        let properties = delivery.properties.clone().with_headers(headers);
        let message_id = meta.message_id.as_deref().unwrap_or("-");
        match self.publisher.send_raw(RETRY_EXCHANGE, &target.queue, &delivery.data, properties).await {
            Ok(()) => {
                warn!(
                    message_id, queue = self.queue.name, step = step + 1, delay_ms = target.delay.as_millis() as u64,
                    error = %error, "Transient failure; retrying later."
                );
                self.telemetry.metrics.retried.get_or_create(&QueueLabel { queue: self.queue.name.to_owned() }).inc();
                self.settle(delivery, Disposition::Retried { step }).await
            }
            Err(e) => self.requeue(delivery, meta, &e).await,
        }
    }

    /// Parks the message in the delay queue closest to `wait` (the longest one not longer, or the
    /// shortest), keeping its retry count: waiting for a quota is not a failure.
    async fn defer(&self, delivery: Delivery, meta: &DeliveryMeta, wait: Duration) -> Disposition {
        let Some(target) = self.ladder.iter().rev().find(|s| s.delay <= wait).or_else(|| self.ladder.first()) else {
            return self.requeue(delivery, meta, &"no delay queue to defer to").await;
        };
        let message_id = meta.message_id.as_deref().unwrap_or("-");
        match self.publisher.send_raw(RETRY_EXCHANGE, &target.queue, &delivery.data, delivery.properties.clone()).await
        {
            Ok(()) => {
                let delay_ms = target.delay.as_millis() as u64;
                debug!(
                    message_id,
                    queue = self.queue.name,
                    delay_ms,
                    wait_ms = wait.as_millis() as u64,
                    "Deferred message."
                );
                self.telemetry.metrics.deferred.get_or_create(&QueueLabel { queue: self.queue.name.to_owned() }).inc();
                self.settle(delivery, Disposition::Deferred { delay_ms }).await
            }
            Err(e) => self.requeue(delivery, meta, &e).await,
        }
    }

    async fn dead_letter(&self, delivery: Delivery, meta: &DeliveryMeta, error: &HandlerError) -> Disposition {
        let info = FailureInfo {
            error_message: error.source.to_string(),
            error_type: error.error_type.to_string(),
            retry_count: meta.retry_count,
            stack_trace: error.chain(),
            consumer_id: self.consumer_id.to_string(),
        };
        let envelope = DeadLetter::new(self.queue.name, &delivery.data, info);
        let out = match envelope.outgoing(self.queue.failure_route(), meta.correlation_id.clone()) {
            Ok(out) => out,
            Err(e) => return self.requeue(delivery, meta, &e).await,
        };
        let message_id = meta.message_id.as_deref().unwrap_or("-");
        match self.publisher.send(&out).await {
            Ok(()) => {
                error!(
                    message_id, queue = self.queue.name, error_type = %error.error_type,
                    retry_count = meta.retry_count, error = %error.source, "Dead-lettered message."
                );
                let labels =
                    DeadLetterLabels { queue: self.queue.name.to_owned(), error_type: error.error_type.to_string() };
                self.telemetry.metrics.dead_lettered.get_or_create(&labels).inc();
                let error_type = error.error_type.to_string();
                self.settle(delivery, Disposition::DeadLettered { error_type }).await
            }
            Err(e) => self.requeue(delivery, meta, &e).await,
        }
    }

    /// Acks after a successful hand-over to a retry or dead-letter queue.
    async fn settle(&self, delivery: Delivery, disposition: Disposition) -> Disposition {
        match delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => disposition,
            Err(_) => Disposition::Unacknowledged,
        }
    }

    /// The hand-over itself failed: give the message back to the broker rather than lose it.
    async fn requeue(
        &self,
        delivery: Delivery,
        meta: &DeliveryMeta,
        error: &(dyn std::fmt::Display + Sync),
    ) -> Disposition {
        let message_id = meta.message_id.as_deref().unwrap_or("-");
        warn!(message_id, queue = self.queue.name, error = %error, "Could not retry or dead-letter; requeueing.");
        // A pause keeps a persistent broker-side problem from becoming a hot redelivery loop.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.telemetry.metrics.requeued.get_or_create(&QueueLabel { queue: self.queue.name.to_owned() }).inc();
        match delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await {
            Ok(_) => Disposition::Requeued,
            Err(_) => Disposition::Unacknowledged,
        }
    }
}

/// The worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The retry ladder is empty or the concurrency is zero.
    #[error("invalid worker configuration: {0}")]
    Config(String),
}

/// The part of the topology one process uses: the queues it consumes and the exchanges it
/// publishes to. A process that may not declare checks that these exist, and only these:
/// RabbitMQ 4.2.6 and later check permissions on passive declares too (4.2.6 and 4.3.0 demand
/// configure, later releases any permission on the resource), and a role user has read on its
/// own queue and write on its exchanges, nothing on the rest.
///
/// Not checked: the retry delay queues behind `retry_exchange` and the queues behind the other
/// exchanges, on which the role has no permission. Every publish is mandatory and confirmed, so
/// a missing one still shows up, as a returned publish that the runtime retries or requeues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsedTopology {
    /// Exchanges published to.
    pub exchanges: BTreeSet<&'static str>,
    /// Queues consumed.
    pub queues: BTreeSet<&'static str>,
}

impl UsedTopology {
    /// What a consumer of `queue` uses: the queue, `retry_exchange` (its retry ladder), the
    /// exchange its failures are dead-lettered through, and the exchanges of `publishes` (the
    /// routes its handler sends results to).
    pub fn consumer(queue: &'static QueueSpec, publishes: &[Route]) -> Self {
        let mut used = Self::producer(publishes);
        used.queues.insert(queue.name);
        used.exchanges.insert(RETRY_EXCHANGE);
        used.exchanges.insert(queue.failure_route().exchange);
        used
    }

    /// What a producer publishing to `routes` uses: their exchanges.
    pub fn producer(routes: &[Route]) -> Self {
        Self { exchanges: routes.iter().map(|r| r.exchange).collect(), queues: BTreeSet::new() }
    }

    /// Checks, without creating anything, that each exchange and queue exists (passive
    /// declares). Fails with the broker's `NOT_FOUND` (or, on a broker that wants more
    /// permission than the role has, `ACCESS_REFUSED`) for the first one that does not.
    pub async fn check_exists(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
        for exchange in &self.exchanges {
            channel.exchange_declare((*exchange).into(), ExchangeKind::Direct, passive, FieldTable::default()).await?;
        }
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        for queue in &self.queues {
            channel.queue_declare((*queue).into(), passive, FieldTable::default()).await?;
        }
        Ok(())
    }
}

/// What each binary of the pipeline uses on the broker, by binary name: the poller and the
/// upload API publish (new emails, uploaded documents); the four stages consume their queue and
/// publish their results, retries and dead letters. `None` for a name that is no worker.
/// `mailroom doctor --role` checks a broker user's permissions against it.
pub fn used_by(worker: &str) -> Option<UsedTopology> {
    Some(match worker {
        "poller" => UsedTopology::producer(&[topology::CLASSIFY]),
        "upload-api" => UsedTopology::producer(&[topology::INGEST]),
        "classifier" => UsedTopology::consumer(&EMAILS_TO_CLASSIFY, next_stage_routes(&EMAILS_TO_CLASSIFY)),
        "rag-generator" => UsedTopology::consumer(&EMAILS_TO_RESPOND, next_stage_routes(&EMAILS_TO_RESPOND)),
        "sender" => UsedTopology::consumer(&topology::EMAILS_TO_SEND, next_stage_routes(&topology::EMAILS_TO_SEND)),
        "doc-ingester" => {
            UsedTopology::consumer(&topology::DOCUMENTS_TO_INGEST, next_stage_routes(&topology::DOCUMENTS_TO_INGEST))
        }
        _ => return None,
    })
}

/// The binaries [`used_by`] knows, in pipeline order.
pub const PIPELINE_BINARIES: [&str; 6] =
    ["poller", "upload-api", "classifier", "rag-generator", "sender", "doc-ingester"];

impl UsedTopology {
    /// Everything `workers` use together (one broker user shared by several binaries).
    pub fn union<'a>(workers: impl IntoIterator<Item = &'a str>) -> Self {
        let mut all = Self { exchanges: BTreeSet::new(), queues: BTreeSet::new() };
        for used in workers.into_iter().filter_map(used_by) {
            all.exchanges.extend(used.exchanges);
            all.queues.extend(used.queues);
        }
        all
    }
}

/// Where the stage consuming `queue` sends its results, by the pipeline's order: the
/// classifier (`emails.to_classify`) to `respond`, the RAG generator (`emails.to_respond`) to
/// `send`; the sender and the document ingester publish no results. The default of
/// [`Worker::publishing_to`].
pub fn next_stage_routes(queue: &QueueSpec) -> &'static [Route] {
    if *queue == EMAILS_TO_CLASSIFY {
        &[topology::RESPOND]
    } else if *queue == EMAILS_TO_RESPOND {
        &[topology::SEND]
    } else {
        &[]
    }
}

/// A consuming worker: reconnecting consume loop around a [`Processor`].
pub struct Worker<H> {
    name: String,
    queue: &'static QueueSpec,
    handler: Arc<H>,
    settings: Settings,
    consumer: ConsumerSettings,
    topology: Topology,
    publishes: Vec<Route>,
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
        let publishes = next_stage_routes(queue).to_vec();
        Self { name, queue, handler, settings: settings.clone(), consumer, topology, publishes, telemetry }
    }

    /// Sets the routes the handler publishes its results to (default: [`next_stage_routes`] of
    /// the queue). Only used to check, when the worker may not declare, that their exchanges
    /// exist before it reports ready; publishing elsewhere still works.
    pub fn publishing_to(mut self, routes: &[Route]) -> Self {
        self.publishes = routes.to_vec();
        self
    }

    /// What this worker uses of the topology, and so checks when it may not declare.
    pub fn used_topology(&self) -> UsedTopology {
        UsedTopology::consumer(self.queue, &self.publishes)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{DOCUMENTS_TO_INGEST, EMAILS_TO_SEND};

    #[test]
    fn a_stage_uses_its_queue_its_retry_and_dead_letter_exchanges_and_its_next_stage() {
        let classifier = UsedTopology::consumer(&EMAILS_TO_CLASSIFY, next_stage_routes(&EMAILS_TO_CLASSIFY));
        assert_eq!(classifier.queues, BTreeSet::from(["emails.to_classify"]));
        assert_eq!(classifier.exchanges, BTreeSet::from(["dead_letter_exchange", "email_exchange", "retry_exchange"]));

        let sender = UsedTopology::consumer(&EMAILS_TO_SEND, next_stage_routes(&EMAILS_TO_SEND));
        assert_eq!(sender.queues, BTreeSet::from(["emails.to_send"]));
        assert_eq!(sender.exchanges, BTreeSet::from(["dead_letter_exchange", "retry_exchange"]));

        let ingester = UsedTopology::consumer(&DOCUMENTS_TO_INGEST, next_stage_routes(&DOCUMENTS_TO_INGEST));
        assert_eq!(ingester.queues, BTreeSet::from(["documents.to_ingest"]));
        assert_eq!(ingester.exchanges, BTreeSet::from(["dead_letter_exchange", "retry_exchange"]));

        assert_eq!(next_stage_routes(&EMAILS_TO_RESPOND), [topology::SEND]);
        let poller = UsedTopology::producer(&[topology::CLASSIFY]);
        assert_eq!(poller.exchanges, BTreeSet::from(["email_exchange"]));
        assert!(poller.queues.is_empty(), "a producer consumes nothing");
    }
}
