//! The consumer runtime, publisher and topology against a real RabbitMQ: each test gets its own
//! vhost, so they run in parallel and leave nothing behind.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mailroom_tests::{TestVhost, example_path, mgmt, signal, spawn, wait_for};
use pipeline_core::consumer::roles::CLASSIFIER;
use pipeline_core::dead_letter::DeadLetter;
use pipeline_core::messages::{EmailToClassify, EmailToRespond, IncomingEmail};
use pipeline_core::topology::{self, EMAILS_TO_CLASSIFY, Topology};
use pipeline_core::worker_env::{WorkerEnv, env_var};
use pipeline_core::{
    DeliveryMeta, Disposition, Handler, HandlerError, Outgoing, PublishError, Publisher, Settings, Telemetry, Worker,
};
use tokio::sync::oneshot;

/// Settings for `vhost` with `extra` settings (by key) on top.
fn settings(vhost: &TestVhost, extra: &[(&str, &str)]) -> Settings {
    let env = extra.iter().fold(WorkerEnv::new().set("amqp.url", vhost.amqp_url()), |env, (k, v)| env.set(k, *v));
    Settings::load_from(None, env.owned()).expect("settings")
}

async fn connect(vhost: &TestVhost) -> Connection {
    Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await.expect("connect")
}

async fn apply(vhost: &TestVhost, s: &Settings) -> Connection {
    let conn = connect(vhost).await;
    let ch = conn.create_channel().await.expect("channel");
    Topology::new(&s.topology.retry_delays_ms).declare(&ch).await.expect("declare");
    conn
}

fn email(n: usize) -> EmailToClassify {
    EmailToClassify::new(
        IncomingEmail {
            email_id: format!("email-{n}"),
            from: "customer@example.com".into(),
            to: "support@example.com".into(),
            subject: format!("Question {n}"),
            body: "How do I reset my password?".into(),
            agent_email: "support@example.com".into(),
            ..Default::default()
        },
        5,
    )
}

async fn publish_emails(publisher: &Publisher, n: usize) -> Vec<EmailToClassify> {
    let emails: Vec<_> = (0..n).map(email).collect();
    let sends = emails.iter().map(|e| publisher.publish(e));
    for r in futures_util::future::join_all(sends).await {
        r.expect("publish confirmed");
    }
    emails
}

/// Messages ready in a queue, read over AMQP (the management API's figures lag by seconds).
async fn ready(ch: &Channel, queue: &str) -> u32 {
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    ch.queue_declare(queue.into(), passive, FieldTable::default()).await.expect("passive declare").message_count()
}

/// Takes every message currently in `queue` (acking them).
async fn drain_queue(channel: &Channel, queue: &str) -> Vec<lapin::message::Delivery> {
    let mut out = Vec::new();
    while let Some(msg) = channel.basic_get(queue.into(), BasicGetOptions::default()).await.expect("get") {
        msg.delivery.acker.ack(BasicAckOptions::default()).await.expect("ack");
        out.push(msg.delivery);
    }
    out
}

/// Starts a worker in-process; the returned sender stops it.
fn start_worker<H: Handler>(
    s: &Settings,
    handler: Arc<H>,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>, Arc<Telemetry>) {
    let telemetry = Arc::new(Telemetry::default());
    let worker = Worker::new("test-worker", &EMAILS_TO_CLASSIFY, handler, s, telemetry.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        worker
            .run(async move {
                let _ = rx.await;
            })
            .await
            .expect("worker ran");
    });
    (tx, task, telemetry)
}

fn respond_to(email: &EmailToClassify) -> Result<Vec<Outgoing>, HandlerError> {
    let verdict = pipeline_core::messages::Classification {
        is_support_inquiry: true,
        category: "test".into(),
        confidence: 1.0,
        llm_provider: "test".into(),
        needs_review: false,
    };
    Ok(vec![Outgoing::message(&EmailToRespond::new(email, verdict)).expect("encodes")])
}

/// Fails transiently a fixed number of times per email, recording when each attempt came.
struct Flaky {
    failures: usize,
    attempts: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Handler for Flaky {
    type Input = EmailToClassify;

    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        CLASSIFIER.publishes
    }

    async fn handle(&self, email: EmailToClassify, _meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        let n = {
            let mut attempts = self.attempts.lock().expect("lock");
            let list = attempts.entry(email.email_id.clone()).or_default();
            list.push(Instant::now());
            list.len()
        };
        if n <= self.failures {
            return Err(HandlerError::transient("QuotaExceededError", "LLM quota exceeded for all providers"));
        }
        respond_to(&email)
    }
}

#[tokio::test]
async fn transient_failures_climb_the_ladder_with_growing_delays_then_succeed_once() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[("topology.retry_delays_ms", "200,600,1200")]);
    let conn = apply(&vhost, &s).await;
    let handler = Arc::new(Flaky { failures: 2, attempts: Mutex::default() });
    let (stop, task, _) = start_worker(&s, handler.clone());
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let sent = publish_emails(&publisher, 1).await;

    let ch = conn.create_channel().await.expect("channel");
    let out = wait_for(Duration::from_secs(20), "the output", || async {
        let msgs = drain_queue(&ch, "emails.to_respond").await;
        (!msgs.is_empty()).then_some(msgs)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let late = drain_queue(&ch, "emails.to_respond").await;
    assert_eq!(out.len() + late.len(), 1, "output published exactly once");
    let body: EmailToRespond = serde_json::from_slice(&out[0].data).expect("output decodes");
    assert_eq!(body.original_message_id, sent[0].message_id);
    // The correlation id follows the email across stages.
    assert_eq!(out[0].properties.correlation_id().as_ref().map(|c| c.to_string()), Some(sent[0].message_id.clone()));

    let attempts = handler.attempts.lock().expect("lock")["email-0"].clone();
    assert_eq!(attempts.len(), 3, "delivered N+1 times");
    let first_gap = attempts[1] - attempts[0];
    let second_gap = attempts[2] - attempts[1];
    assert!(first_gap >= Duration::from_millis(200), "{first_gap:?}");
    assert!(second_gap >= Duration::from_millis(600), "{second_gap:?}");
    assert!(second_gap > first_gap, "delays increase: {first_gap:?} then {second_gap:?}");
    assert!(drain_queue(&ch, "dead_letter_queue").await.is_empty());
    let _ = stop.send(());
    task.await.expect("worker stopped");
}

#[tokio::test]
async fn past_the_ladder_a_message_is_dead_lettered_in_the_seed_envelope() {
    let vhost = TestVhost::create().await;
    let s = settings(
        &vhost,
        &[("topology.retry_delays_ms", "100,100,100"), ("consumer.consumer_id", "classifier-worker-1")],
    );
    let conn = apply(&vhost, &s).await;
    let handler = Arc::new(Flaky { failures: usize::MAX, attempts: Mutex::default() });
    let (stop, task, telemetry) = start_worker(&s, handler.clone());
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let sent = publish_emails(&publisher, 1).await;

    let ch = conn.create_channel().await.expect("channel");
    let dead = wait_for(Duration::from_secs(20), "the dead letter", || async {
        let msgs = drain_queue(&ch, "dead_letter_queue").await;
        (!msgs.is_empty()).then_some(msgs)
    })
    .await;
    assert_eq!(dead.len(), 1);
    let envelope: DeadLetter = serde_json::from_slice(&dead[0].data).expect("seed envelope");
    assert_eq!(envelope.original_queue, "emails.to_classify");
    assert_eq!(envelope.failure_info.retry_count, 3, "retry_count equals the ladder length");
    assert_eq!(envelope.failure_info.error_type, "QuotaExceededError");
    assert_eq!(envelope.failure_info.error_message, "LLM quota exceeded for all providers");
    assert_eq!(envelope.failure_info.consumer_id, "classifier-worker-1");
    assert!(envelope.failure_info.stack_trace.contains("QuotaExceededError"));
    let original: EmailToClassify = serde_json::from_value(envelope.original_message).expect("original kept");
    assert_eq!(original, sent[0]);
    assert_eq!(handler.attempts.lock().expect("lock")["email-0"].len(), 4);
    assert!(drain_queue(&ch, "emails.to_respond").await.is_empty());
    let metrics = telemetry.metrics.encode();
    assert!(metrics.contains("mailroom_messages_retried_total{queue=\"emails.to_classify\"} 3"), "{metrics}");
    assert!(metrics.contains("error_type=\"QuotaExceededError\""), "{metrics}");
    let _ = stop.send(());
    task.await.expect("worker stopped");
}

/// Rejects emails whose subject says so; counts calls.
struct Picky {
    calls: AtomicUsize,
}

impl Handler for Picky {
    type Input = EmailToClassify;

    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        CLASSIFIER.publishes
    }

    async fn handle(&self, email: EmailToClassify, _meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if email.subject.contains("reject") {
            return Err(HandlerError::permanent("ValidationError", "subject asks to be rejected"));
        }
        if email.subject.contains("panic") {
            panic!("handler bug triggered by {}", email.email_id);
        }
        respond_to(&email)
    }
}

#[tokio::test]
async fn permanent_errors_panics_and_unparseable_bodies_go_straight_to_the_dead_letter_queue() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[("topology.retry_delays_ms", "100")]);
    let conn = apply(&vhost, &s).await;
    let handler = Arc::new(Picky { calls: AtomicUsize::new(0) });
    let (stop, task, _) = start_worker(&s, handler.clone());
    let publisher = Publisher::open(&conn, None).await.expect("publisher");

    let mut reject = email(1);
    reject.subject = "please reject".into();
    let mut boom = email(2);
    boom.subject = "panic".into();
    publisher.publish(&reject).await.expect("publish");
    publisher.publish(&boom).await.expect("publish");
    let raw = |body: &'static [u8]| {
        let p = publisher.clone();
        async move {
            p.send_raw("email_exchange", "classify", body, BasicProperties::default().with_delivery_mode(2))
                .await
                .expect("raw publish")
        }
    };
    raw(b"this is not json").await;
    raw(br#"{"message_id": "m", "timestamp": "2025-12-06T17:00:00Z"}"#).await;
    raw(&[0xff, 0xfe, b'{']).await;
    publisher.publish(&email(3)).await.expect("good traffic");

    let ch = conn.create_channel().await.expect("channel");
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while dead.len() < 5 {
        assert!(Instant::now() < deadline, "only {} dead letters arrived", dead.len());
        dead.extend(drain_queue(&ch, "dead_letter_queue").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let envelopes: Vec<DeadLetter> = dead.iter().map(|d| serde_json::from_slice(&d.data).expect("envelope")).collect();
    let types: HashSet<_> = envelopes.iter().map(|e| e.failure_info.error_type.as_str()).collect();
    assert_eq!(types, HashSet::from(["ValidationError", "HandlerPanicked", "InvalidJson", "InvalidMessage"]));
    assert!(envelopes.iter().all(|e| e.failure_info.retry_count == 0), "permanent failures skip the ladder");
    let not_json = envelopes.iter().find(|e| e.original_message == "this is not json").expect("text kept");
    assert_eq!(not_json.failure_info.error_type, "InvalidJson");
    let binary = envelopes.iter().find(|e| e.original_message_base64.is_some()).expect("bytes kept");
    assert_eq!(binary.original_body(), vec![0xff, 0xfe, b'{']);
    let missing = envelopes.iter().find(|e| e.failure_info.error_type == "InvalidMessage").expect("schema error");
    assert!(missing.failure_info.error_message.contains("missing field"), "{}", missing.failure_info.error_message);
    let panicked = envelopes.iter().find(|e| e.failure_info.error_type == "HandlerPanicked").expect("panic");
    assert!(panicked.failure_info.error_message.contains("handler bug"));

    // The worker survived all of that and still handles good traffic.
    let good = wait_for(Duration::from_secs(10), "the good email", || async {
        let msgs = drain_queue(&ch, "emails.to_respond").await;
        (!msgs.is_empty()).then_some(msgs)
    })
    .await;
    assert_eq!(good.len(), 1);
    // Decode failures never reach the handler: reject, panic and the good one did.
    assert_eq!(handler.calls.load(Ordering::SeqCst), 3);
    let _ = stop.send(());
    task.await.expect("worker stopped");
}

/// Fails transiently on ~10% of attempts (deterministically by message and attempt), and tracks
/// how many handlers run at once.
struct Unreliable {
    attempts: Mutex<HashMap<String, u32>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Handler for Unreliable {
    type Input = EmailToClassify;

    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        CLASSIFIER.publishes
    }

    async fn handle(&self, email: EmailToClassify, _meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        let attempt = {
            let mut a = self.attempts.lock().expect("lock");
            let n = a.entry(email.message_id.clone()).or_default();
            *n += 1;
            *n
        };
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        let mut rng = fastrand::Rng::with_seed(
            email.message_id.bytes().fold(u64::from(attempt), |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b))),
        );
        if rng.f64() < 0.10 {
            return Err(HandlerError::transient("UpstreamTimeout", "simulated transient failure"));
        }
        respond_to(&email)
    }
}

#[tokio::test]
async fn a_thousand_messages_with_ten_percent_transient_failures_are_neither_lost_nor_duplicated() {
    let vhost = TestVhost::create().await;
    let s = settings(
        &vhost,
        &[("topology.retry_delays_ms", "50,100,200"), ("consumer.prefetch", "64"), ("consumer.concurrency", "16")],
    );
    let conn = apply(&vhost, &s).await;
    let handler = Arc::new(Unreliable {
        attempts: Mutex::default(),
        running: AtomicUsize::new(0),
        max_running: AtomicUsize::new(0),
    });
    let (stop, task, _) = start_worker(&s, handler.clone());
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let sent = publish_emails(&publisher, 1000).await;

    let ch = conn.create_channel().await.expect("channel");
    let mut outputs = Vec::new();
    let mut dead = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while outputs.len() + dead.len() < 1000 {
        assert!(Instant::now() < deadline, "only {} outcomes arrived", outputs.len() + dead.len());
        outputs.extend(drain_queue(&ch, "emails.to_respond").await);
        dead.extend(drain_queue(&ch, "dead_letter_queue").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything still in flight would show up now as a duplicate.
    tokio::time::sleep(Duration::from_millis(800)).await;
    outputs.extend(drain_queue(&ch, "emails.to_respond").await);
    dead.extend(drain_queue(&ch, "dead_letter_queue").await);

    let mut seen = HashSet::new();
    for d in &outputs {
        let body: EmailToRespond = serde_json::from_slice(&d.data).expect("output");
        assert!(seen.insert(body.original_message_id.clone()), "duplicate output for {}", body.original_message_id);
    }
    for d in &dead {
        let env: DeadLetter = serde_json::from_slice(&d.data).expect("envelope");
        assert_eq!(env.failure_info.retry_count, 3);
        let original: EmailToClassify = serde_json::from_value(env.original_message).expect("original");
        assert!(seen.insert(original.message_id.clone()), "dead-lettered and answered: {}", original.message_id);
    }
    let expected: HashSet<_> = sent.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(seen, expected, "every message reached exactly one outcome");
    let retried: u32 = handler.attempts.lock().expect("lock").values().map(|n| n - 1).sum();
    assert!(retried > 50, "about 10% of attempts failed and were retried ({retried})");
    let max = handler.max_running.load(Ordering::SeqCst);
    assert!(max > 1 && max <= 16, "handlers ran concurrently within the limit (max {max})");
    // Once the worker is gone, anything it held unacked would be back in its queue.
    let _ = stop.send(());
    task.await.expect("worker stopped");
    assert_eq!(ready(&ch, "emails.to_classify").await, 0);
    for step in Topology::new(&s.topology.retry_delays_ms).retry_ladder(&EMAILS_TO_CLASSIFY) {
        assert_eq!(ready(&ch, &step.queue).await, 0, "{} is empty", step.queue);
    }
}

#[tokio::test]
async fn a_message_that_outlives_its_ttl_is_dead_lettered_by_the_broker_with_x_death() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[]);
    let conn = apply(&vhost, &s).await;
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    // The queue's own TTL is an hour; a per-message expiration takes the same dead-letter path.
    let out = Outgoing::message(&email(1)).expect("encodes");
    publisher
        .send_raw("email_exchange", "classify", &out.body, out.properties().with_expiration("50".into()))
        .await
        .expect("publish");
    let ch = conn.create_channel().await.expect("channel");
    let dead = wait_for(Duration::from_secs(10), "the expired message", || async {
        let msgs = drain_queue(&ch, "dead_letter_queue").await;
        (!msgs.is_empty()).then_some(msgs)
    })
    .await;
    let headers = dead[0].properties.headers().clone().expect("headers");
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("x-death header missing: {headers:?}");
    };
    let Some(AMQPValue::FieldTable(first)) = deaths.as_slice().first() else { panic!("empty x-death") };
    let get = |k: &str| first.inner().get(k).cloned();
    assert_eq!(get("queue"), Some(AMQPValue::LongString("emails.to_classify".into())));
    assert_eq!(get("reason"), Some(AMQPValue::LongString("expired".into())));
    assert_eq!(dead[0].data, out.body, "the body is untouched");
}

#[tokio::test]
async fn an_unroutable_publish_is_an_error_not_a_drop() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[]);
    let conn = apply(&vhost, &s).await;
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let err = publisher
        .send_raw(topology::EMAIL_EXCHANGE, "no-such-key", b"{}", BasicProperties::default())
        .await
        .expect_err("unroutable must fail");
    assert!(matches!(err, PublishError::Unroutable { .. }), "{err}");
    assert!(err.to_string().contains("NO_ROUTE"), "{err}");
    // The channel stays usable for routable messages.
    publisher.publish(&email(1)).await.expect("routable publish confirmed");
    let err = publisher
        .send_raw("no_such_exchange", "x", b"{}", BasicProperties::default())
        .await
        .expect_err("missing exchange must fail");
    assert!(matches!(err, PublishError::Amqp { .. }), "{err}");
}

#[tokio::test]
async fn the_single_step_processor_handles_one_delivery_without_the_loop() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[("topology.retry_delays_ms", "100")]);
    let conn = apply(&vhost, &s).await;
    let telemetry = Arc::new(Telemetry::default());
    let publisher = Publisher::open(&conn, Some(telemetry.clone())).await.expect("publisher");
    let handler = Arc::new(Flaky { failures: 1, attempts: Mutex::default() });
    let processor = pipeline_core::Processor::new(
        handler,
        publisher.clone(),
        &EMAILS_TO_CLASSIFY,
        Topology::new(&[100]).retry_ladder(&EMAILS_TO_CLASSIFY),
        "step-test",
        telemetry,
    );
    publish_emails(&publisher, 1).await;
    let ch = conn.create_channel().await.expect("channel");
    let get = |ch: Channel| async move {
        wait_for(Duration::from_secs(5), "a message", || {
            let ch = ch.clone();
            async move { ch.basic_get("emails.to_classify".into(), BasicGetOptions::default()).await.expect("get") }
        })
        .await
        .delivery
    };
    assert_eq!(processor.process(get(ch.clone()).await).await, Disposition::Retried { step: 0 });
    // The delay queue sends it back after its TTL.
    assert_eq!(processor.process(get(ch.clone()).await).await, Disposition::Completed { published: 1 });
    assert_eq!(drain_queue(&ch, "emails.to_respond").await.len(), 1);
}

async fn relay_connection(vhost: &TestVhost) -> Option<String> {
    let conns = mgmt().connections(&vhost.name).await.ok()?;
    conns.into_iter().find(|c| c.client_name().is_some_and(|n| n.starts_with("relay-"))).map(|c| c.name)
}

/// Collects outputs from `emails.to_respond` with a consumer, returning distinct ids and the total.
async fn collect_outputs(ch: &Channel, n: usize) -> (HashSet<String>, usize) {
    let mut consumer = ch
        .basic_consume(
            "emails.to_respond".into(),
            "collector".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut ids = HashSet::new();
    let mut total = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while ids.len() < n {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(Ok(d))) = tokio::time::timeout(remaining, consumer.next()).await else {
            panic!("only {} of {n} outputs arrived", ids.len());
        };
        let body: EmailToRespond = serde_json::from_slice(&d.data).expect("output");
        ids.insert(body.original_message_id);
        total += 1;
        d.acker.ack(BasicAckOptions::default()).await.expect("ack");
    }
    (ids, total)
}

fn relay_env(vhost: &TestVhost) -> Vec<(&'static str, String)> {
    WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("consumer.concurrency", "4")
        .set("consumer.prefetch", "8")
        .set("consumer.drain_timeout_secs", "10")
        .build()
}

#[tokio::test]
async fn sigterm_during_processing_finishes_in_flight_work_and_loses_nothing() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[]);
    let conn = apply(&vhost, &s).await;
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let sent = publish_emails(&publisher, 60).await;

    let ch = conn.create_channel().await.expect("channel");
    let mut relay = spawn(&example_path("relay"), &["--delay-ms", "150"], &relay_env(&vhost));
    // Let it get going, so handlers are mid-flight when the signal arrives.
    wait_for(Duration::from_secs(20), "some progress", || async {
        (ready(&ch, "emails.to_respond").await >= 4).then_some(())
    })
    .await;
    signal(&relay, "TERM");
    let status = tokio::time::timeout(Duration::from_secs(20), relay.wait()).await.expect("exits").expect("status");
    assert!(status.success(), "graceful exit: {status:?}");
    // In-flight handlers finished (their outputs are there) and the rest went back to the queue:
    // nothing is missing and nothing is stuck unacked.
    let left = ready(&ch, "emails.to_classify").await as usize;
    let done = ready(&ch, "emails.to_respond").await as usize;
    assert!(left > 0, "the worker stopped before the backlog was done");
    assert_eq!(left + done, sent.len(), "{left} left + {done} done");

    // A new worker picks up what the first one did not finish.
    let _relay = spawn(&example_path("relay"), &[], &relay_env(&vhost));
    let (ids, _total) = collect_outputs(&ch, sent.len()).await;
    let expected: HashSet<_> = sent.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(ids, expected, "every email was relayed");
}

#[tokio::test]
async fn a_worker_whose_connection_the_broker_closes_reconnects_and_loses_nothing() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[]);
    let conn = apply(&vhost, &s).await;
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let mut env = relay_env(&vhost);
    env.push((env_var("http.listen"), "127.0.0.1:0".into()));
    let _relay = spawn(&example_path("relay"), &["--delay-ms", "20"], &env);
    let first = wait_for(Duration::from_secs(20), "the relay's connection", || relay_connection(&vhost)).await;

    let mut sent = publish_emails(&publisher, 40).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    mgmt().close_connection(&first).await.expect("close connection");
    sent.extend(publish_emails(&publisher, 40).await);
    let second = wait_for(Duration::from_secs(30), "a new connection", || async {
        relay_connection(&vhost).await.filter(|name| *name != first)
    })
    .await;
    assert_ne!(first, second);
    sent.extend(publish_emails(&publisher, 40).await);

    let ch = conn.create_channel().await.expect("channel");
    let (ids, _) = collect_outputs(&ch, sent.len()).await;
    let expected: HashSet<_> = sent.iter().map(|e| e.message_id.clone()).collect();
    assert_eq!(ids, expected, "all 120 emails relayed across the reconnection");
}

#[tokio::test]
async fn metrics_and_readiness_are_served_over_http() {
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[]);
    let conn = apply(&vhost, &s).await;
    let telemetry = Arc::new(Telemetry::default());
    let server = pipeline_core::http::HealthServer::bind("127.0.0.1:0", telemetry.clone()).await.expect("bind");
    let addr = server.local_addr().expect("addr");
    let (stop_http, stopped) = oneshot::channel::<()>();
    let http = server.spawn(async move {
        let _ = stopped.await;
    });
    let client = reqwest::Client::new();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let r = client.get(format!("http://{addr}{path}")).send().await.expect("http");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/readyz").await.0, 503, "not ready before consuming");

    let worker =
        Worker::new("test-worker", &EMAILS_TO_CLASSIFY, Arc::new(Picky { calls: AtomicUsize::new(0) }), &s, telemetry);
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async move {
        let _ = rx.await;
    }));
    wait_for(Duration::from_secs(10), "readiness", || async { (get("/readyz").await.0 == 200).then_some(()) }).await;
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    publish_emails(&publisher, 3).await;
    let ch = conn.create_channel().await.expect("channel");
    wait_for(Duration::from_secs(10), "outputs", || async {
        (ready(&ch, "emails.to_respond").await == 3).then_some(())
    })
    .await;
    // Outputs are confirmed before the input is acked, so the ack count may trail a moment.
    let (status, text) = wait_for(Duration::from_secs(10), "three acks", || async {
        let (status, text) = get("/metrics").await;
        text.contains("mailroom_messages_acked_total{queue=\"emails.to_classify\"} 3").then_some((status, text))
    })
    .await;
    assert_eq!(status, 200);
    for line in [
        "mailroom_messages_consumed_total{queue=\"emails.to_classify\"} 3",
        "mailroom_messages_acked_total{queue=\"emails.to_classify\"} 3",
        "mailroom_messages_in_flight{queue=\"emails.to_classify\"} 0",
        "mailroom_handler_duration_seconds_count{queue=\"emails.to_classify\"} 3",
        "mailroom_messages_published_total{exchange=\"email_exchange\",routing_key=\"respond\"} 3",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    let _ = stop.send(());
    task.await.expect("join").expect("worker ran");
    assert_eq!(get("/readyz").await.0, 503, "not ready after stopping");
    let _ = stop_http.send(());
    http.await.expect("join").expect("served");
    drop(ch);
}

#[tokio::test]
async fn mandatory_publish_with_confirms_reports_nothing_lost_on_a_busy_channel() {
    // Many concurrent publishes on one confirm channel each get their own confirmation.
    let vhost = TestVhost::create().await;
    let s = settings(&vhost, &[]);
    let conn = apply(&vhost, &s).await;
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let ch = conn.create_channel().await.expect("channel");
    let body = serde_json::to_vec(&email(1)).expect("encodes");
    let sends = (0..500).map(|i| {
        let p = publisher.clone();
        let body = body.clone();
        async move {
            let key = if i % 50 == 0 { "nowhere" } else { "classify" };
            p.send_raw("email_exchange", key, &body, BasicProperties::default()).await
        }
    });
    let results = futures_util::future::join_all(sends).await;
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(failed, 10, "exactly the unroutable ones fail");
    assert_eq!(ready(&ch, "emails.to_classify").await, 490);
}

/// Asks to wait `waits` times (as a sender does while the send quota is spent), then succeeds.
struct Waiting {
    waits: usize,
    seen: Mutex<Vec<u32>>,
}

impl Handler for Waiting {
    type Input = EmailToClassify;

    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        CLASSIFIER.publishes
    }

    async fn handle(&self, email: EmailToClassify, meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        let n = {
            let mut seen = self.seen.lock().expect("lock");
            seen.push(meta.retry_count);
            seen.len()
        };
        if n <= self.waits {
            return Err(HandlerError::defer(Duration::from_millis(450), "RateLimited", "send quota spent"));
        }
        respond_to(&email)
    }
}

#[tokio::test]
async fn a_deferred_message_waits_in_a_delay_queue_without_spending_retries() {
    let vhost = TestVhost::create().await;
    let delays = [100, 400, 5000];
    let s = settings(&vhost, &[("topology.retry_delays_ms", "100,400,5000")]);
    let conn = apply(&vhost, &s).await;
    let telemetry = Arc::new(Telemetry::default());
    let publisher = Publisher::open(&conn, Some(telemetry.clone())).await.expect("publisher");
    // More waits than the ladder has steps: a retry would have dead-lettered it by now.
    let handler = Arc::new(Waiting { waits: 5, seen: Mutex::default() });
    let processor = pipeline_core::Processor::new(
        handler.clone(),
        publisher.clone(),
        &EMAILS_TO_CLASSIFY,
        Topology::new(&delays).retry_ladder(&EMAILS_TO_CLASSIFY),
        "defer-test",
        telemetry.clone(),
    );
    publish_emails(&publisher, 1).await;
    let ch = conn.create_channel().await.expect("channel");
    for _ in 0..5 {
        let delivery = wait_for(Duration::from_secs(5), "a message", || {
            let ch = ch.clone();
            async move { ch.basic_get("emails.to_classify".into(), BasicGetOptions::default()).await.expect("get") }
        })
        .await
        .delivery;
        // 450 ms of wait goes to the 400 ms queue: the longest not longer than the wait.
        assert_eq!(processor.process(delivery).await, Disposition::Deferred { delay_ms: 400 });
    }
    let delivery = wait_for(Duration::from_secs(5), "a message", || {
        let ch = ch.clone();
        async move { ch.basic_get("emails.to_classify".into(), BasicGetOptions::default()).await.expect("get") }
    })
    .await
    .delivery;
    assert_eq!(processor.process(delivery).await, Disposition::Completed { published: 1 });
    assert_eq!(*handler.seen.lock().expect("lock"), vec![0; 6], "no retry was spent on waiting");
    assert_eq!(drain_queue(&ch, "dead_letter_queue").await.len(), 0);
    assert!(telemetry.metrics.encode().contains("mailroom_messages_deferred_total{queue=\"emails.to_classify\"} 5"));
}
