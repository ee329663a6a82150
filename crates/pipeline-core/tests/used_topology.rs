//! With `topology.declare = false`, a worker and a producer check only the part of the topology
//! they use, against a real RabbitMQ: in a vhost holding nothing else (as a least-privilege
//! role sees it on RabbitMQ 4.2.6+, where the rest is off limits) they become ready, and what
//! they do use being missing still makes them not ready with the reason.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use mailroom_tests::TestVhost;
use pipeline_core::consumer::UsedTopology;
use pipeline_core::consumer::roles::CLASSIFIER;
use pipeline_core::messages::{EmailToClassify, IncomingEmail};
use pipeline_core::topology::{self, EMAILS_TO_CLASSIFY, QueueSpec};
use pipeline_core::worker_env::WorkerEnv;
use pipeline_core::{DeliveryMeta, Handler, HandlerError, Outgoing, Producer, Settings, Telemetry, Worker};

fn settings(vhost: &TestVhost) -> Settings {
    Settings::load_from(
        None,
        WorkerEnv::new()
            .set("amqp.url", vhost.amqp_url())
            .set("topology.declare", "false")
            .set("amqp.reconnect_initial_ms", "100")
            .set("amqp.reconnect_max_ms", "300")
            .owned(),
    )
    .expect("settings")
}

async fn connect(vhost: &TestVhost) -> Connection {
    Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await.expect("connect")
}

/// Declares exactly `used`, as the topology (docs/ARCHITECTURE.md) has it, and nothing more:
/// exchanges durable direct, queues with their arguments and bound to their route (its exchange
/// must be in `used`).
async fn declare_only(conn: &Connection, used: &UsedTopology) {
    let channel = conn.create_channel().await.expect("channel");
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    for exchange in &used.exchanges {
        channel
            .exchange_declare((*exchange).into(), ExchangeKind::Direct, durable, FieldTable::default())
            .await
            .expect("declare exchange");
    }
    let topology = topology::Topology::new(&topology::DEFAULT_RETRY_DELAYS_MS);
    for queue in &used.queues {
        let decl = topology.queues.iter().find(|q| q.name == *queue).expect("a queue of the topology");
        let mut arguments = FieldTable::default();
        for (key, value) in &decl.arguments {
            let value = match value {
                topology::ArgValue::Int(n) => AMQPValue::LongInt(*n),
                topology::ArgValue::Str(s) => AMQPValue::LongString(s.as_str().into()),
            };
            arguments.insert(key.as_str().into(), value);
        }
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        channel.queue_declare((*queue).into(), durable, arguments).await.expect("declare queue");
        let route = QueueSpec::by_name(queue).expect("a queue of the seed").route();
        channel
            .queue_bind(
                (*queue).into(),
                route.exchange.into(),
                route.routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
    }
}

/// A handler that does nothing: only the session setup is under test.
struct Idle;

impl Handler for Idle {
    type Input = serde_json::Value;

    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        CLASSIFIER.publishes
    }

    async fn handle(&self, _input: serde_json::Value, _meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        Ok(Vec::new())
    }
}

/// Runs a classifier-queue worker until it is ready or `within` has passed; returns whether it
/// became ready and its last not-ready reason.
async fn worker_readiness(s: &Settings, within: Duration) -> (bool, String) {
    let telemetry = Arc::new(Telemetry::default());
    let worker = Worker::new("classifier", &EMAILS_TO_CLASSIFY, Arc::new(Idle), s, telemetry.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let ready = tokio::time::timeout(within, async {
        while !telemetry.health.is_ready() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok();
    let reason = telemetry.health.reason();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await;
    (ready, reason)
}

#[tokio::test]
async fn a_worker_needs_only_its_queue_and_the_exchanges_it_publishes_to() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost);
    let conn = connect(&vhost).await;
    let used = CLASSIFIER.used_topology();

    // Its exchanges but not its queue: not ready, and the reason names what is missing.
    declare_only(&conn, &UsedTopology { queues: Default::default(), ..used.clone() }).await;
    let (ready, reason) = worker_readiness(&s, Duration::from_secs(2)).await;
    assert!(!ready, "ready without its queue");
    assert!(reason.contains("topology missing") && reason.contains("emails.to_classify"), "{reason}");

    // Its queue too, and nothing else of the topology (no other queue, no document_exchange,
    // no delay queue): ready.
    declare_only(&conn, &used).await;
    let (ready, reason) = worker_readiness(&s, Duration::from_secs(20)).await;
    assert!(ready, "not ready with everything it uses declared: {reason}");
    let _ = conn.close(200, "done".into()).await;
}

fn email() -> EmailToClassify {
    EmailToClassify::new(
        IncomingEmail {
            email_id: "used-topology".into(),
            from: "customer@example.com".into(),
            to: "support@example.com".into(),
            subject: "Question".into(),
            body: "How do I reset my password?".into(),
            agent_email: "support@example.com".into(),
            ..Default::default()
        },
        5,
    )
}

#[tokio::test]
async fn a_producer_checks_the_exchanges_it_publishes_to_and_no_other() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost);

    // Nothing declared: a producer that named its route is not even connected; one that did
    // not connects, and its first publish says what is missing.
    let named = Producer::new("poller", &s, Arc::new(Telemetry::default())).publishing_to(&[topology::CLASSIFY]);
    let error = named.connect().await.expect_err("email_exchange is missing");
    assert!(error.to_string().contains("topology missing"), "{error}");
    let unnamed = Producer::new("poller", &s, Arc::new(Telemetry::default()));
    unnamed.connect().await.expect("nothing to check up front");
    let error = unnamed.publish(&email()).await.expect_err("email_exchange is missing");
    assert!(error.to_string().contains("topology missing") && error.to_string().contains("email_exchange"), "{error}");

    // Only the classify route: both publish, though the rest of the topology does not exist.
    let conn = connect(&vhost).await;
    declare_only(
        &conn,
        &UsedTopology { queues: [EMAILS_TO_CLASSIFY.name].into(), ..UsedTopology::producer(&[topology::CLASSIFY]) },
    )
    .await;
    named.connect().await.expect("its exchange exists now");
    for producer in [&named, &unnamed] {
        producer.publish(&email()).await.expect("published and confirmed");
        producer.close().await;
    }
    let _ = conn.close(200, "done".into()).await;
}
