//! One delivery, handled completely: decode, call the [`Handler`], publish its outputs with
//! confirms, then ack — or retry, defer or dead-letter by the error's fate. [`Processor::process`]
//! is the single step tests call without the consume loop; every delivery runs inside one
//! `delivery` span (worker, queue, message and correlation ids), so every log line of one email
//! can be found by its correlation id.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::AMQPValue;
use serde::de::DeserializeOwned;
use tracing::Instrument as _;
use tracing::{debug, error, warn};

use crate::dead_letter::{DeadLetter, FailureInfo};
use crate::error::{Fate, HandlerError};
use crate::publisher::{Outgoing, Publisher, RETRY_COUNT_HEADER, int_header};
use crate::telemetry::{DeadLetterLabels, QueueLabel, Telemetry};
use crate::topology::Route;
use crate::topology::{QueueSpec, RETRY_EXCHANGE, RetryStep};

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

    /// The routes the handler publishes its results to (a stage returns its entry in
    /// [`super::roles`], e.g. `CLASSIFIER.publishes`). A worker that may not declare checks, before
    /// it reports ready, that their exchanges exist.
    fn publishes(&self) -> &'static [Route];

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

    /// Handles one delivery completely: decode, handle, publish, then ack, retry or dead-letter,
    /// inside one `delivery` span carrying the worker, the queue and the message's ids.
    pub async fn process(&self, delivery: Delivery) -> Disposition {
        let meta = DeliveryMeta::of(&delivery);
        let span = tracing::info_span!(
            "delivery",
            worker = %self.consumer_id,
            queue = self.queue.name,
            message_id = meta.message_id.as_deref().unwrap_or("-"),
            correlation_id = meta.correlation_id.as_deref().unwrap_or("-"),
        );
        self.process_in_span(delivery).instrument(span).await
    }

    async fn process_in_span(&self, delivery: Delivery) -> Disposition {
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

        match outcome {
            Ok(published) => {
                debug!(published, "Handled message.");
                match delivery.acker.ack(BasicAckOptions::default()).await {
                    Ok(_) => {
                        metrics.acked.get_or_create(&label).inc();
                        Disposition::Completed { published }
                    }
                    Err(e) => {
                        warn!(error = %e, "Ack failed; the broker will redeliver.");
                        Disposition::Unacknowledged
                    }
                }
            }
            Err(HandlerError { fate: Fate::Defer(wait), .. }) => self.defer(delivery, wait).await,
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
        match self.publisher.send_raw(RETRY_EXCHANGE, &target.queue, &delivery.data, properties).await {
            Ok(()) => {
                warn!(
                    step = step + 1, delay_ms = target.delay.as_millis() as u64, error = %error,
                    "Transient failure; retrying later."
                );
                self.telemetry.metrics.retried.get_or_create(&QueueLabel { queue: self.queue.name.to_owned() }).inc();
                self.settle(delivery, Disposition::Retried { step }).await
            }
            Err(e) => self.requeue(delivery, &e).await,
        }
    }

    /// Parks the message in the delay queue closest to `wait` (the longest one not longer, or the
    /// shortest), keeping its retry count: waiting for a quota is not a failure.
    async fn defer(&self, delivery: Delivery, wait: Duration) -> Disposition {
        let Some(target) = self.ladder.iter().rev().find(|s| s.delay <= wait).or_else(|| self.ladder.first()) else {
            return self.requeue(delivery, &"no delay queue to defer to").await;
        };
        match self.publisher.send_raw(RETRY_EXCHANGE, &target.queue, &delivery.data, delivery.properties.clone()).await
        {
            Ok(()) => {
                let delay_ms = target.delay.as_millis() as u64;
                debug!(delay_ms, wait_ms = wait.as_millis() as u64, "Deferred message.");
                self.telemetry.metrics.deferred.get_or_create(&QueueLabel { queue: self.queue.name.to_owned() }).inc();
                self.settle(delivery, Disposition::Deferred { delay_ms }).await
            }
            Err(e) => self.requeue(delivery, &e).await,
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
            Err(e) => return self.requeue(delivery, &e).await,
        };
        match self.publisher.send(&out).await {
            Ok(()) => {
                error!(
                    error_type = %error.error_type, retry_count = meta.retry_count, error = %error.source,
                    "Dead-lettered message."
                );
                let labels =
                    DeadLetterLabels { queue: self.queue.name.to_owned(), error_type: error.error_type.to_string() };
                self.telemetry.metrics.dead_lettered.get_or_create(&labels).inc();
                let error_type = error.error_type.to_string();
                self.settle(delivery, Disposition::DeadLettered { error_type }).await
            }
            Err(e) => self.requeue(delivery, &e).await,
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
    async fn requeue(&self, delivery: Delivery, error: &(dyn std::fmt::Display + Sync)) -> Disposition {
        warn!(error = %error, "Could not retry or dead-letter; requeueing.");
        // A pause keeps a persistent broker-side problem from becoming a hot redelivery loop.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.telemetry.metrics.requeued.get_or_create(&QueueLabel { queue: self.queue.name.to_owned() }).inc();
        match delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await {
            Ok(_) => Disposition::Requeued,
            Err(_) => Disposition::Unacknowledged,
        }
    }
}
