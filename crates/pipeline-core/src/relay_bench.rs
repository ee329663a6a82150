//! The three-hop relay measurement: how many ~1 KiB persistent messages per second the broker
//! moves through three chained relays (consume, publish with confirms and `mandatory`, ack after
//! confirm), either written directly against lapin ([`run_plain`]: the broker's limit for this
//! shape) or built on the consumer runtime ([`run_runtime`]).
//!
//! It lives in the library, not only in `examples/relay_bench.rs`, so that `mailroom bench` can
//! print the same baseline beside the full pipeline's figures without copying the code. Nothing
//! in a worker uses it.
//!
//! Everything happens in the vhost of the given URL: a direct exchange `bench_exchange` and four
//! durable queues `bench.hop0` … `bench.hop3`. N messages are loaded into the first queue; the
//! figure is N divided by the time from starting the relays to the last arrival at the fourth.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Semaphore, oneshot};

use crate::messages::{EmailToClassify, IncomingEmail};
use crate::topology::{FAILED_EMAILS, QueueSpec, Route, Topology};
use crate::{DeliveryMeta, Handler, HandlerError, Outgoing, Publisher, Settings, Telemetry, Worker};

const EXCHANGE: &str = "bench_exchange";
const KEYS: [&str; 4] = ["hop0", "hop1", "hop2", "hop3"];
/// The four queues, first to last.
pub const QUEUE_NAMES: [&str; 4] = ["bench.hop0", "bench.hop1", "bench.hop2", "bench.hop3"];

static HOPS: [QueueSpec; 4] = [
    hop(0, &[Route { exchange: EXCHANGE, routing_key: KEYS[0] }]),
    hop(1, &[Route { exchange: EXCHANGE, routing_key: KEYS[1] }]),
    hop(2, &[Route { exchange: EXCHANGE, routing_key: KEYS[2] }]),
    hop(3, &[Route { exchange: EXCHANGE, routing_key: KEYS[3] }]),
];

const fn hop(i: usize, bound_from: &'static [Route]) -> QueueSpec {
    QueueSpec {
        name: QUEUE_NAMES[i],
        max_priority: None,
        message_ttl_ms: None,
        dead_letter: Some(FAILED_EMAILS),
        bound_from,
    }
}

/// A relay measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayBenchError {
    /// The broker refused or dropped something.
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    /// A preload publish was not confirmed.
    #[error(transparent)]
    Publish(#[from] crate::PublishError),
    /// The runtime's settings could not be built.
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    /// A relay built on the runtime stopped with an error.
    #[error("runtime relay failed: {0}")]
    Worker(#[from] crate::consumer::WorkerError),
    /// The counting consumer at the last queue stopped early.
    #[error("sink stopped after {seen} of {expected} messages: {reason}")]
    Sink {
        /// Arrivals counted.
        seen: usize,
        /// Arrivals expected.
        expected: usize,
        /// What ended the stream.
        reason: String,
    },
    /// A spawned task panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The result of one measurement.
#[derive(Debug, Clone, Copy)]
pub struct RelayFigure {
    /// Messages moved.
    pub messages: usize,
    /// From starting the relays to the last arrival.
    pub elapsed: Duration,
}

impl RelayFigure {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The trivial handler: pass the decoded body on to the next hop.
struct Forward {
    next: Route,
}

impl Handler for Forward {
    // Its outputs go to the next hop's own exchange, which the bench declares itself.
    fn publishes(&self) -> &'static [crate::topology::Route] {
        &[]
    }
    type Input = serde_json::Value;

    async fn handle(&self, body: serde_json::Value, meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        let body = serde_json::to_vec(&body).map_err(|e| HandlerError::permanent("EncodeError", e))?;
        Ok(vec![Outgoing {
            route: self.next,
            body,
            message_id: meta.message_id.clone().unwrap_or_default(),
            priority: None,
            correlation_id: None,
            headers: FieldTable::default(),
        }])
    }
}

/// Declares the pipeline topology (the runtime relays dead-letter through it) and the bench's
/// exchange and four queues in the vhost of `conn`, and empties the queues.
pub async fn declare(conn: &Connection) -> Result<(), RelayBenchError> {
    let ch = conn.create_channel().await?;
    Topology::new(&[1000]).declare(&ch).await?;
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(EXCHANGE.into(), ExchangeKind::Direct, durable, FieldTable::default()).await?;
    for spec in &HOPS {
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(spec.name.into(), durable, FieldTable::default()).await?;
        let r = spec.route();
        ch.queue_bind(
            spec.name.into(),
            r.exchange.into(),
            r.routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        ch.queue_purge(spec.name.into(), QueuePurgeOptions::default()).await?;
    }
    let _ = ch.close(200, "declared".into()).await;
    Ok(())
}

/// Loads `n` persistent `emails.to_classify`-shaped emails (~1 KiB each) into the first queue,
/// confirmed.
pub async fn preload(conn: &Connection, n: usize) -> Result<(), RelayBenchError> {
    let publisher = Publisher::open(conn, None).await?;
    let email = EmailToClassify::new(
        IncomingEmail {
            email_id: "bench".into(),
            thread_id: Some("thread".into()),
            from: "customer@example.com".into(),
            to: "support@example.com".into(),
            subject: "Where is my order?".into(),
            body: "Hello, I ordered a standing desk two weeks ago and it has not arrived. ".repeat(12),
            agent_email: "support@example.com".into(),
            ..Default::default()
        },
        5,
    );
    let template = Outgoing { route: HOPS[0].route(), ..Outgoing::message(&email).map_err(crate::PublishError::from)? };
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let sends = chunk.iter().map(|i| {
            let mut out = template.clone();
            out.message_id = format!("bench-{i}");
            let p = publisher.clone();
            async move { p.send(&out).await }
        });
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
    }
    let _ = publisher.channel().close(200, "preloaded".into()).await;
    Ok(())
}

/// Counts arrivals at the last queue; resolves when `n` have arrived.
async fn sink(url: String, n: usize) -> Result<(), RelayBenchError> {
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let options = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumer = ch.basic_consume(QUEUE_NAMES[3].into(), "sink".into(), options, FieldTable::default()).await?;
    let mut seen = 0;
    while seen < n {
        match consumer.next().await {
            Some(Ok(_)) => seen += 1,
            other => return Err(RelayBenchError::Sink { seen, expected: n, reason: format!("{other:?}") }),
        }
    }
    conn.close(200, "done".into()).await?;
    Ok(())
}

/// Moves the `n` preloaded messages through three relays built on the consumer runtime
/// ([`Worker`]: JSON decode, handler, metrics, retry machinery).
pub async fn run_runtime(
    url: &str,
    n: usize,
    prefetch: u16,
    concurrency: usize,
) -> Result<RelayFigure, RelayBenchError> {
    let settings = Settings::load_from(
        None,
        [
            ("MAILROOM__AMQP__URL".to_owned(), url.to_owned()),
            ("MAILROOM__CONSUMER__PREFETCH".to_owned(), prefetch.to_string()),
            ("MAILROOM__CONSUMER__CONCURRENCY".to_owned(), concurrency.to_string()),
        ],
    )?;
    let sink = tokio::spawn(sink(url.to_owned(), n));
    let started = Instant::now();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..3 {
        let handler = Arc::new(Forward { next: HOPS[i + 1].route() });
        let worker = Worker::new(format!("relay{i}"), &HOPS[i], handler, &settings, Arc::new(Telemetry::default()));
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        tasks.push(tokio::spawn(worker.run(async move {
            let _ = rx.await;
        })));
    }
    sink.await??;
    let elapsed = started.elapsed();
    for s in stops {
        let _ = s.send(());
    }
    for t in tasks {
        t.await??;
    }
    Ok(RelayFigure { messages: n, elapsed })
}

/// One hop in plain lapin: consume with prefetch, publish with confirms, ack after confirm,
/// `concurrency` deliveries at a time.
async fn plain_relay(url: String, from: usize, prefetch: u16, concurrency: usize) -> Result<(), RelayBenchError> {
    let conn = Connection::connect(&url, ConnectionProperties::default()).await?;
    let consume = conn.create_channel().await?;
    consume.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let publish = conn.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut consumer = consume
        .basic_consume(QUEUE_NAMES[from].into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let slots = Arc::new(Semaphore::new(concurrency));
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(permit) = slots.clone().acquire_owned().await else { break };
        let publish = publish.clone();
        tokio::spawn(async move {
            let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
            let options = BasicPublishOptions { mandatory: true, ..Default::default() };
            // A failure here leaves the delivery unacked and the sink short, which the caller
            // sees as a measurement that never finishes; the relays run only inside a bench.
            if let Ok(confirm) =
                publish.basic_publish(EXCHANGE.into(), KEYS[from + 1].into(), options, &delivery.data, props).await
                && matches!(confirm.await, Ok(Confirmation::Ack(None)))
            {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
            drop(permit);
        });
    }
    Ok(())
}

/// Moves the `n` preloaded messages through three relays written directly against lapin, with
/// the same prefetch and concurrency: the broker's limit for this shape.
pub async fn run_plain(url: &str, n: usize, prefetch: u16, concurrency: usize) -> Result<RelayFigure, RelayBenchError> {
    let sink = tokio::spawn(sink(url.to_owned(), n));
    let started = Instant::now();
    let relays: Vec<_> = (0..3).map(|i| tokio::spawn(plain_relay(url.to_owned(), i, prefetch, concurrency))).collect();
    let result = sink.await;
    let elapsed = started.elapsed();
    for r in relays {
        r.abort();
    }
    result??;
    Ok(RelayFigure { messages: n, elapsed })
}

/// Declares, preloads `n` messages and measures the plain-lapin relays once, in the vhost of
/// `url`: what `mailroom bench` reports as the broker's limit.
pub async fn plain_figure(
    url: &str,
    n: usize,
    prefetch: u16,
    concurrency: usize,
) -> Result<RelayFigure, RelayBenchError> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    declare(&conn).await?;
    preload(&conn, n).await?;
    let figure = run_plain(url, n, prefetch, concurrency).await;
    let _ = conn.close(200, "done".into()).await;
    figure
}
