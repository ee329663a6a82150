//! `mailroom topology apply|verify` and `mailroom migrate` against the real broker and database.

use std::path::Path;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Connection, ConnectionProperties};
use mailroom_tests::{TestDb, TestVhost, mgmt, run};
use pipeline_core::worker_env::env_var;

fn mailroom() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom"))
}

fn env_for(vhost: &TestVhost) -> Vec<(&'static str, String)> {
    vec![(env_var("amqp.url"), vhost.amqp_url()), (env_var("management.url"), mailroom_tests::mgmt_url())]
}

/// The contract's queue declarations as a Python client makes them (docs/ARCHITECTURE.md), with
/// the argument types pika sends: signed 32-bit integers and long strings.
fn seed_arguments(ttl: i32, priority: Option<i32>, dlrk: &str) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(p) = priority {
        args.insert("x-max-priority".into(), AMQPValue::LongInt(p));
    }
    args.insert("x-message-ttl".into(), AMQPValue::LongInt(ttl));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from("dead_letter_exchange")));
    args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(LongString::from(dlrk)));
    args
}

#[tokio::test]
async fn apply_creates_the_seed_topology_and_verify_detects_drift() {
    let vhost = TestVhost::create().await;
    let env = env_for(&vhost);

    let (code, out) = run(mailroom(), &["topology", "verify"], &env).await;
    assert_eq!(code, 1, "verify on an empty vhost must fail: {out}");
    assert!(out.contains("queue emails.to_classify: missing"), "{out}");

    // An earlier version's direct retry exchange, which apply removes.
    let conn = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let durable = lapin::options::ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare("retry_exchange".into(), lapin::ExchangeKind::Direct, durable, FieldTable::default())
        .await
        .expect("legacy retry exchange");
    let _ = conn.close(200, "done".into()).await;

    let (code, out) = run(mailroom(), &["topology", "apply"], &env).await;
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(mailroom(), &["topology", "verify"], &env).await;
    assert_eq!(code, 0, "{out}");

    // Exactly the contract's queues with its argument values (plus our retry queues).
    let client = mgmt();
    let queues = client.queues(&vhost.name).await.expect("queues");
    let classify = queues.iter().find(|q| q.name == "emails.to_classify").expect("classify queue");
    assert!(classify.durable);
    assert_eq!(classify.arguments["x-max-priority"], 10);
    assert_eq!(classify.arguments["x-message-ttl"], 3_600_000);
    assert_eq!(classify.arguments["x-dead-letter-exchange"], "dead_letter_exchange");
    assert_eq!(classify.arguments["x-dead-letter-routing-key"], "failed_emails");
    let respond = queues.iter().find(|q| q.name == "emails.to_respond").expect("respond queue");
    assert_eq!(respond.arguments["x-message-ttl"], 7_200_000);
    let ingest = queues.iter().find(|q| q.name == "documents.to_ingest").expect("ingest queue");
    assert_eq!(ingest.arguments["x-message-ttl"], 1_800_000);
    assert_eq!(ingest.arguments["x-dead-letter-routing-key"], "failed_documents");
    let dlq = queues.iter().find(|q| q.name == "dead_letter_queue").expect("dlq");
    assert!(dlq.arguments.is_empty());
    let mut names: Vec<_> = queues.iter().map(|q| q.name.as_str()).filter(|n| !n.contains(".retry.")).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["dead_letter_queue", "documents.to_ingest", "emails.to_classify", "emails.to_respond", "emails.to_send"]
    );
    let exchanges = client.exchanges(&vhost.name).await.expect("exchanges");
    for name in ["email_exchange", "document_exchange", "dead_letter_exchange"] {
        let e = exchanges.iter().find(|e| e.name == name).expect("exchange exists");
        assert_eq!(e.kind, "direct");
        assert!(e.durable);
    }
    let retry = exchanges.iter().find(|e| e.name == "retry_topic_exchange").expect("retry exchange");
    assert_eq!((retry.kind.as_str(), retry.durable), ("topic", true), "routing keys can be authorised on it");
    assert!(exchanges.iter().all(|e| e.name != "retry_exchange"), "the legacy retry exchange is deleted");
    let bindings = client.bindings(&vhost.name).await.expect("bindings");
    for (source, key, dest) in [
        ("email_exchange", "classify", "emails.to_classify"),
        ("email_exchange", "respond", "emails.to_respond"),
        ("email_exchange", "send", "emails.to_send"),
        ("document_exchange", "ingest", "documents.to_ingest"),
        ("dead_letter_exchange", "failed_emails", "dead_letter_queue"),
        ("dead_letter_exchange", "failed_documents", "dead_letter_queue"),
    ] {
        assert!(
            bindings.iter().any(|b| b.source == source && b.routing_key == key && b.destination == dest),
            "binding {source} -[{key}]-> {dest} missing"
        );
    }

    // Applying twice changes nothing.
    let before = client.queues(&vhost.name).await.expect("queues").len();
    let (code, out) = run(mailroom(), &["topology", "apply"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(client.queues(&vhost.name).await.expect("queues").len(), before);
    let (code, _) = run(mailroom(), &["topology", "verify"], &env).await;
    assert_eq!(code, 0);

    // A client written from the contract re-declares our queues with pika's argument types.
    let conn = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await.expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    for (queue, args) in [
        ("emails.to_classify", seed_arguments(3_600_000, Some(10), "failed_emails")),
        ("emails.to_respond", seed_arguments(7_200_000, None, "failed_emails")),
        ("emails.to_send", seed_arguments(3_600_000, None, "failed_emails")),
        ("documents.to_ingest", seed_arguments(1_800_000, None, "failed_documents")),
        ("dead_letter_queue", FieldTable::default()),
    ] {
        channel.queue_declare(queue.into(), durable, args).await.unwrap_or_else(|e| panic!("re-declare {queue}: {e}"));
    }

    // Drift: a deleted queue, and a queue re-created with other arguments.
    client.delete_queue(&vhost.name, "emails.to_send").await.expect("delete");
    client.delete_queue(&vhost.name, "emails.to_respond").await.expect("delete");
    let mut other = FieldTable::default();
    other.insert("x-message-ttl".into(), AMQPValue::LongInt(60_000));
    channel.queue_declare("emails.to_respond".into(), durable, other).await.expect("re-create with other args");
    conn.close(200, "bye".into()).await.expect("close");

    let (code, out) = run(mailroom(), &["topology", "verify"], &env).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("queue emails.to_send: missing"), "{out}");
    assert!(out.contains("queue emails.to_respond: argument x-message-ttl expected 7200000 found 60000"), "{out}");
    assert!(out.contains("queue emails.to_respond: argument x-dead-letter-exchange"), "{out}");
}

#[tokio::test]
async fn verify_reports_an_unreachable_management_api_clearly() {
    let vhost = TestVhost::create().await;
    let mut env = env_for(&vhost);
    env[1].1 = "http://127.0.0.1:9".to_owned();
    let (code, out) = run(mailroom(), &["topology", "verify"], &env).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("`mailroom topology verify` (queue arguments) needs the RabbitMQ management API, which is not reachable at http://127.0.0.1:9; enable it with `rabbitmq-plugins enable rabbitmq_management`"),
        "{out}"
    );
    assert_eq!(out.trim().lines().count(), 1, "one line, not the HTTP client's error chain: {out}");
}

#[tokio::test]
async fn migrate_creates_the_database_and_is_idempotent() {
    let db = TestDb::create().await;
    // A database name that does not exist yet: `migrate` must create it.
    let fresh = format!("{}_fresh", db.name);
    let url = db.url().replace(&db.name, &fresh);
    let env = vec![(env_var("database.url"), url.clone())];
    let (code, out) = run(mailroom(), &["migrate"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("applied now"), "{out}");
    let (code, out) = run(mailroom(), &["migrate"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 migration(s) applied now"), "{out}");

    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&url).await.expect("fresh database exists");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM emails").fetch_one(&mut conn).await.expect("emails table");
    assert_eq!(n, 0);
    conn.close().await.expect("close");
    mailroom_db::drop_database(&url.into()).await.expect("drop");
}
