//! Throughput of the consumer runtime against plain lapin, on the same broker, in one run.
//!
//! `cargo run --release -p pipeline-core --example relay_bench -- [N] [PREFETCH] [CONCURRENCY]`
//!
//! N persistent messages (a ~1 KiB seed-shaped email each) are loaded into the first of four
//! queues of a throw-away vhost; three relays then move them hop to hop (publish with confirms,
//! `mandatory`, ack after confirm) while a sink counts arrivals at the fourth queue. The figure is
//! N divided by the time from starting the relays to the last arrival. The same is done twice:
//! relays built on `pipeline_core::Worker` (JSON decode, handler, metrics, retry machinery), and
//! relays written directly against lapin with the same prefetch and concurrency.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use mailroom_tests::TestVhost;
use pipeline_core::messages::{EmailToClassify, IncomingEmail};
use pipeline_core::topology::{FAILED_EMAILS, QueueSpec, Route};
use pipeline_core::{DeliveryMeta, Handler, HandlerError, Outgoing, Publisher, Settings, Telemetry, Worker};
use tokio::sync::{Semaphore, oneshot};

const EXCHANGE: &str = "bench_exchange";
const KEYS: [&str; 4] = ["hop0", "hop1", "hop2", "hop3"];
const QUEUE_NAMES: [&str; 4] = ["bench.hop0", "bench.hop1", "bench.hop2", "bench.hop3"];

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

/// The trivial handler: pass the decoded body on to the next hop.
struct Forward {
    next: Route,
}

impl Handler for Forward {
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

async fn declare(conn: &Connection) -> anyhow::Result<()> {
    let ch = conn.create_channel().await?;
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
    Ok(())
}

async fn preload(conn: &Connection, n: usize) -> anyhow::Result<()> {
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
    let body = serde_json::to_vec(&email)?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let sends = chunk.iter().map(|i| {
            let mut out = Outgoing::message(&email).expect("encodes");
            out.route = HOPS[0].route();
            out.message_id = format!("bench-{i}");
            out.body.clone_from(&body);
            let p = publisher.clone();
            async move { p.send(&out).await }
        });
        for r in futures_util::future::join_all(sends).await {
            r?;
        }
    }
    Ok(())
}

/// Counts arrivals at the last queue; resolves when `n` have arrived.
async fn sink(url: &str, n: usize) -> anyhow::Result<()> {
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let ch = conn.create_channel().await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let options = BasicConsumeOptions { no_ack: true, ..Default::default() };
    let mut consumer = ch.basic_consume(QUEUE_NAMES[3].into(), "sink".into(), options, FieldTable::default()).await?;
    let mut seen = 0;
    while seen < n {
        match consumer.next().await {
            Some(Ok(_)) => seen += 1,
            other => anyhow::bail!("sink stopped after {seen}: {other:?}"),
        }
    }
    conn.close(200, "done".into()).await?;
    Ok(())
}

async fn run_runtime(vhost: &TestVhost, n: usize, prefetch: u16, concurrency: usize) -> anyhow::Result<Duration> {
    let settings = Settings::load_from(
        None,
        [
            ("MAILROOM__AMQP__URL".to_owned(), vhost.amqp_url()),
            ("MAILROOM__CONSUMER__PREFETCH".to_owned(), prefetch.to_string()),
            ("MAILROOM__CONSUMER__CONCURRENCY".to_owned(), concurrency.to_string()),
        ],
    )?;
    let sink = tokio::spawn({
        let url = vhost.amqp_url();
        async move { sink(&url, n).await }
    });
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
    Ok(elapsed)
}

/// One hop in plain lapin: consume with prefetch, publish with confirms, ack after confirm,
/// `concurrency` deliveries at a time.
async fn plain_relay(url: String, from: usize, prefetch: u16, concurrency: usize) -> anyhow::Result<()> {
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
        let permit = slots.clone().acquire_owned().await?;
        let publish = publish.clone();
        tokio::spawn(async move {
            let props = BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into());
            let options = BasicPublishOptions { mandatory: true, ..Default::default() };
            let confirm = publish
                .basic_publish(EXCHANGE.into(), KEYS[from + 1].into(), options, &delivery.data, props)
                .await
                .expect("publish");
            assert!(matches!(confirm.await.expect("confirm"), Confirmation::Ack(None)));
            delivery.acker.ack(BasicAckOptions::default()).await.expect("ack");
            drop(permit);
        });
    }
    Ok(())
}

async fn run_plain(vhost: &TestVhost, n: usize, prefetch: u16, concurrency: usize) -> anyhow::Result<Duration> {
    let sink = tokio::spawn({
        let url = vhost.amqp_url();
        async move { sink(&url, n).await }
    });
    let started = Instant::now();
    let relays: Vec<_> =
        (0..3).map(|i| tokio::spawn(plain_relay(vhost.amqp_url(), i, prefetch, concurrency))).collect();
    sink.await??;
    let elapsed = started.elapsed();
    for r in relays {
        r.abort();
    }
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(20_000);
    let prefetch: u16 = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(64);
    let concurrency: usize = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(32);
    let vhost = TestVhost::create().await;
    let conn = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await?;
    pipeline_core::Topology::new(&[1000]).declare(&conn.create_channel().await?).await?;
    declare(&conn).await?;
    println!(
        "relay_bench: {n} persistent messages through 3 chained relays, prefetch {prefetch}, concurrency {concurrency}"
    );

    let mut results = Vec::new();
    // Plain first, then the runtime, then plain again: the broker's state drifts during a run
    // (queue index, memory), so the average of the two plain runs is the fair baseline.
    for label in ["plain lapin", "pipeline-core runtime", "plain lapin"] {
        preload(&conn, n).await?;
        let elapsed = if label == "plain lapin" {
            run_plain(&vhost, n, prefetch, concurrency).await?
        } else {
            run_runtime(&vhost, n, prefetch, concurrency).await?
        };
        let rate = n as f64 / elapsed.as_secs_f64();
        println!("  {label:<22} {rate:>8.0} emails/s  ({:.2} s)", elapsed.as_secs_f64());
        results.push(rate);
    }
    let plain = (results[0] + results[2]) / 2.0;
    let runtime = results[1];
    println!("  runtime / plain        {:>8.1} %  (target: at least 80 %)", 100.0 * runtime / plain);
    conn.close(200, "done".into()).await?;
    Ok(())
}
