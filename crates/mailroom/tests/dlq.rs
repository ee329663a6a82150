//! `mailroom dlq …` and `mailroom status` against the real broker and database: dead letters of
//! both shapes (our envelopes and broker-dead-lettered `x-death` messages) listed, shown,
//! purged and replayed; and the acceptance test of issue 6 — documents dead-lettered by the real
//! `doc-ingester` are replayed after the cause is fixed, and killing the replay midway loses
//! none of them.
//!
//! The acceptance test runs the `doc-ingester` binary: build it first
//! (`cargo build --workspace --bins`, as for the end-to-end tests).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, run, signal, spawn, wait_for};
use pipeline_core::dead_letter::{DeadLetter, FailureInfo};
use pipeline_core::messages::{DocumentMetadata, DocumentToIngest, new_message_id, now};
use pipeline_core::publisher::{Outgoing, Publisher, RETRY_COUNT_HEADER};
use pipeline_core::topology::{
    DEAD_LETTER_QUEUE, DOCUMENTS_TO_INGEST, EMAILS_TO_CLASSIFY, EMAILS_TO_SEND, QueueSpec, Route,
};
use pipeline_core::worker_env::{WorkerEnv, env_var};
use serde_json::{Value, json};

fn mailroom() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom"))
}

/// Retry delays every process of a test shares, so they all declare the same delay queues.
const RETRY_DELAYS: &str = "200,400";

fn env_for(vhost: &TestVhost) -> Vec<(&'static str, String)> {
    WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("management.url", mailroom_tests::mgmt_url())
        .set("topology.retry_delays_ms", RETRY_DELAYS.to_owned())
        .build()
}

async fn connect(vhost: &TestVhost) -> Connection {
    Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await.expect("connect")
}

/// Ready messages in a queue, from the broker itself (the management API's counts lag by
/// seconds).
async fn ready(conn: &Connection, queue: &QueueSpec) -> u32 {
    let ch = conn.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let q = ch.queue_declare(queue.name.into(), passive, FieldTable::default()).await.expect("queue exists");
    let _ = ch.close(200, "bye".into()).await;
    q.message_count()
}

fn failure(error_type: &str) -> FailureInfo {
    FailureInfo {
        error_message: format!("{error_type} happened"),
        error_type: error_type.to_owned(),
        retry_count: 1,
        stack_trace: "cause chain".to_owned(),
        consumer_id: "test-worker-1".to_owned(),
    }
}

/// Publishes an envelope the way the consumer runtime does: through the queue's failure route,
/// with the `x-original-queue` header and the original correlation id.
async fn publish_envelope(publisher: &Publisher, envelope: &DeadLetter, queue: &QueueSpec) {
    let mut out = Outgoing {
        route: queue.failure_route(),
        body: serde_json::to_vec(envelope).expect("encode"),
        message_id: envelope.message_id.clone(),
        priority: None,
        correlation_id: Some(format!("corr-{}", envelope.message_id)),
        headers: FieldTable::default(),
    };
    out.headers.insert("x-original-queue".into(), AMQPValue::LongString(queue.name.into()));
    publisher.send(&out).await.expect("envelope confirmed");
}

async fn publish_raw(publisher: &Publisher, route: Route, body: &[u8], props: BasicProperties) {
    publisher.send_raw(route.exchange, route.routing_key, body, props).await.expect("confirmed");
}

async fn json_of(args: &[&str], env: &[(&str, String)]) -> Value {
    let (code, out) = run(mailroom(), args, env).await;
    assert_eq!(code, 0, "mailroom {args:?}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("mailroom {args:?} printed no JSON ({e}): {out}"))
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().expect("array").iter().map(|d| d["id"].as_str().expect("id").to_owned()).collect()
}

/// Five dead letters: three envelopes (one two hours old), one message that expired in
/// `emails.to_send` and one rejected from `emails.to_classify` (no message id).
struct Mix {
    file_missing: DeadLetter,
    quota: DeadLetter,
    old: DeadLetter,
    expired_body: Vec<u8>,
    rejected_body: Vec<u8>,
}

async fn dead_letter_mix(conn: &Connection) -> Mix {
    let publisher = Publisher::open(conn, None).await.expect("publisher");
    let doc = json!({"message_id": "doc-msg-1", "document_id": "d-1", "file_path": "/nowhere"});
    let file_missing = DeadLetter::new(DOCUMENTS_TO_INGEST.name, doc.to_string().as_bytes(), failure("FileMissing"));
    publish_envelope(&publisher, &file_missing, &DOCUMENTS_TO_INGEST).await;
    let email = json!({"message_id": "email-msg-1", "email_id": "e-1", "priority": 7, "subject": "Help"});
    let quota = DeadLetter::new(EMAILS_TO_CLASSIFY.name, email.to_string().as_bytes(), failure("QuotaExceededError"));
    publish_envelope(&publisher, &quota, &EMAILS_TO_CLASSIFY).await;
    let mut old = DeadLetter::new(DOCUMENTS_TO_INGEST.name, b"not json at all", failure("InvalidJson"));
    old.timestamp = now() - chrono::Duration::hours(2);
    publish_envelope(&publisher, &old, &DOCUMENTS_TO_INGEST).await;

    // Broker-dead-lettered: a message that expires in emails.to_send (with a retry count that
    // a replay must reset) …
    let expired_body =
        json!({"message_id": "expired-1", "email_id": "e-2", "generated_response": "Hi"}).to_string().into_bytes();
    let mut headers = FieldTable::default();
    headers.insert(RETRY_COUNT_HEADER.into(), AMQPValue::LongInt(2));
    headers.insert("x-custom".into(), AMQPValue::LongString(LongString::from("kept")));
    let props = BasicProperties::default()
        .with_message_id("expired-1".into())
        .with_correlation_id("corr-expired".into())
        .with_expiration("1".into())
        .with_headers(headers);
    publish_raw(&publisher, EMAILS_TO_SEND.route(), &expired_body, props).await;
    // … and one a consumer rejected without requeue, which has no message id.
    let rejected_body = b"{\"email_id\": \"e-3\"}".to_vec();
    publish_raw(&publisher, EMAILS_TO_CLASSIFY.route(), &rejected_body, BasicProperties::default()).await;
    let ch = conn.create_channel().await.expect("channel");
    let got = ch
        .basic_get(EMAILS_TO_CLASSIFY.name.into(), BasicGetOptions::default())
        .await
        .expect("get")
        .expect("the message is there");
    got.delivery.acker.reject(BasicRejectOptions { requeue: false }).await.expect("reject");
    wait_for(Duration::from_secs(20), "five dead letters", || async {
        (ready(conn, &DEAD_LETTER_QUEUE).await == 5).then_some(())
    })
    .await;
    Mix { file_missing, quota, old, expired_body, rejected_body }
}

#[tokio::test]
async fn list_show_and_purge_read_envelopes_and_broker_dead_letters_alike() {
    let vhost = TestVhost::create().await;
    let env = env_for(&vhost);
    let (code, out) = run(mailroom(), &["topology", "apply"], &env).await;
    assert_eq!(code, 0, "{out}");
    let conn = connect(&vhost).await;
    let mix = dead_letter_mix(&conn).await;

    // Listing reads everything and gives it all back, in the same order.
    let list = json_of(&["dlq", "list", "--json"], &env).await;
    let entries = list.as_array().expect("array");
    assert_eq!(entries.len(), 5, "{list:#}");
    let by_id = |id: &str| entries.iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("{id} listed: {list:#}"));
    let e = by_id(&mix.file_missing.message_id);
    assert_eq!((e["shape"].as_str(), e["original_queue"].as_str()), (Some("envelope"), Some(DOCUMENTS_TO_INGEST.name)));
    assert_eq!(e["error_type"], "FileMissing");
    assert_eq!(e["original_message_id"], "doc-msg-1");
    assert_eq!(e["consumer_id"], "test-worker-1");
    let e = by_id("expired-1");
    assert_eq!((e["shape"].as_str(), e["original_queue"].as_str()), (Some("x-death"), Some(EMAILS_TO_SEND.name)));
    assert_eq!(e["error_type"], "expired");
    let rejected = entries.iter().find(|e| e["error_type"] == "rejected").expect("rejected one listed");
    assert_eq!(rejected["original_queue"], EMAILS_TO_CLASSIFY.name);
    let rejected_id = rejected["id"].as_str().expect("id").to_owned();
    assert!(rejected_id.starts_with("sha256:"), "no message id: named by content: {rejected_id}");
    let again = json_of(&["dlq", "list", "--json"], &env).await;
    assert_eq!(ids(&again), ids(&list), "a listing changes neither content nor order");
    assert_eq!(ready(&conn, &DEAD_LETTER_QUEUE).await, 5);

    // Filters.
    let only = |args: &'static [&'static str]| {
        let env = env.clone();
        async move {
            let mut full = vec!["dlq", "list", "--json"];
            full.extend_from_slice(args);
            ids(&json_of(&full, &env).await)
        }
    };
    assert_eq!(only(&["--queue", "emails.to_send"]).await, ["expired-1"]);
    assert_eq!(only(&["--error-type", "rejected"]).await, [rejected_id.as_str()]);
    assert_eq!(only(&["--older-than", "1h"]).await, [mix.old.message_id.as_str()]);
    let mut docs = only(&["--queue", "documents.to_ingest"]).await;
    docs.sort();
    let mut expected = vec![mix.file_missing.message_id.clone(), mix.old.message_id.clone()];
    expected.sort();
    assert_eq!(docs, expected);
    let (code, out) = run(mailroom(), &["dlq", "list", "--queue", "emails.nope"], &env).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown queue"), "{out}");

    // The table names every dead letter and its shape.
    let (code, table) = run(mailroom(), &["dlq", "list"], &env).await;
    assert_eq!(code, 0, "{table}");
    for id in ids(&list) {
        assert!(table.contains(&id), "{id} in {table}");
    }
    assert!(table.contains("x-death") && table.contains("envelope") && table.contains("5 of 5"), "{table}");

    // Show: the whole envelope, or the original message with its x-death header.
    let shown = json_of(&["dlq", "show", &mix.file_missing.message_id], &env).await;
    assert_eq!(shown["envelope"]["failure_info"]["error_type"], "FileMissing");
    assert_eq!(shown["envelope"]["failure_info"]["stack_trace"], "cause chain");
    assert_eq!(shown["envelope"]["original_message"]["document_id"], "d-1");
    assert_eq!(shown["properties"]["headers"]["x-original-queue"], DOCUMENTS_TO_INGEST.name);
    let shown = json_of(&["dlq", "show", "expired-1"], &env).await;
    assert_eq!(shown["original_message"]["generated_response"], "Hi");
    assert_eq!(shown["properties"]["headers"]["x-death"][0]["reason"], "expired");
    assert_eq!(shown["properties"]["headers"]["x-death"][0]["queue"], EMAILS_TO_SEND.name);
    let shown = json_of(&["dlq", "show", &rejected_id], &env).await;
    assert_eq!(shown["original_message"], serde_json::from_slice::<Value>(&mix.rejected_body).expect("json"));
    assert_eq!(shown["properties"]["headers"]["x-death"][0]["reason"], "rejected");
    let (code, out) = run(mailroom(), &["dlq", "show", "no-such-id"], &env).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("No dead letter with id no-such-id"), "{out}");
    assert_eq!(ready(&conn, &DEAD_LETTER_QUEUE).await, 5, "show consumes nothing");

    // Purge asks first; no answer (stdin is empty) is a no.
    let (code, out) = run(mailroom(), &["dlq", "purge"], &env).await;
    assert_eq!(code, 2, "a purge needs ids, filters or --all: {out}");
    let (code, out) = run(mailroom(), &["dlq", "purge", "--error-type", "rejected"], &env).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("Delete 1 dead letter(s)") && out.contains("Nothing purged"), "{out}");
    assert_eq!(ready(&conn, &DEAD_LETTER_QUEUE).await, 5);
    // Answering yes on the terminal purges exactly the selection.
    let (code, out) = answer(&["dlq", "purge", "--error-type", "rejected"], &env, "y\n").await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Purged 1 dead letter(s)"), "{out}");
    let left = json_of(&["dlq", "list", "--json"], &env).await;
    assert_eq!(left.as_array().expect("array").len(), 4);
    assert!(!ids(&left).contains(&rejected_id));
    // --yes skips the question.
    let (code, out) = run(mailroom(), &["dlq", "purge", "--yes", "--older-than", "1h"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(!ids(&json_of(&["dlq", "list", "--json"], &env).await).contains(&mix.old.message_id));

    // Replay by id: an x-death letter goes back as it was, minus the failure headers …
    let (code, out) = run(mailroom(), &["dlq", "replay", "expired-1"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Replayed 1 dead letter(s): 1 to emails.to_send"), "{out}");
    let ch = conn.create_channel().await.expect("channel");
    let got = ch
        .basic_get(EMAILS_TO_SEND.name.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("replayed into emails.to_send");
    assert_eq!(got.delivery.data, mix.expired_body);
    let props = &got.delivery.properties;
    assert_eq!(props.message_id().as_ref().map(|s| s.as_str()), Some("expired-1"));
    assert_eq!(props.correlation_id().as_ref().map(|s| s.as_str()), Some("corr-expired"));
    assert_eq!(*props.delivery_mode(), Some(2));
    let headers = props.headers().clone().unwrap_or_default();
    assert!(!headers.contains_key(RETRY_COUNT_HEADER), "retry count reset: {headers:?}");
    assert!(!headers.contains_key("x-death"), "{headers:?}");
    assert!(headers.contains_key("x-custom"), "{headers:?}");
    // … and an envelope's original message goes to its queue with its own id and priority.
    let (code, out) = run(mailroom(), &["dlq", "replay", &mix.quota.message_id, "nope"], &env).await;
    assert_eq!(code, 1, "an id that is not there is reported: {out}");
    assert!(out.contains("Replayed 1") && out.contains("Not found: nope"), "{out}");
    let got = ch
        .basic_get(EMAILS_TO_CLASSIFY.name.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("get")
        .expect("replayed into emails.to_classify");
    let body: Value = serde_json::from_slice(&got.delivery.data).expect("json");
    assert_eq!(body["subject"], "Help");
    let props = &got.delivery.properties;
    assert_eq!(props.message_id().as_ref().map(|s| s.as_str()), Some("email-msg-1"));
    assert_eq!(*props.priority(), Some(7));
    assert_eq!(
        props.correlation_id().as_ref().map(|s| s.as_str().to_owned()),
        Some(format!("corr-{}", mix.quota.message_id))
    );
    assert_eq!(ids(&json_of(&["dlq", "list", "--json"], &env).await), [mix.file_missing.message_id.as_str()]);

    let (code, out) = run(mailroom(), &["dlq", "purge", "--all", "--yes"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(ready(&conn, &DEAD_LETTER_QUEUE).await, 0);
    conn.close(200, "bye".into()).await.expect("close");
}

/// Runs `mailroom` with `input` on stdin (the harness's `run` gives it an empty stdin).
async fn answer(args: &[&str], env: &[(&str, String)], input: &str) -> (i32, String) {
    use tokio::io::AsyncWriteExt as _;
    let mut cmd = tokio::process::Command::new(mailroom());
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("MAILROOM")) {
        cmd.env_remove(key);
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let mut child = cmd.spawn().expect("spawn mailroom");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).await.expect("answer");
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("finished in time")
        .expect("ran");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test]
async fn status_reports_queues_dead_letters_documents_and_emails() {
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let mut env = env_for(&vhost);
    env.push((env_var("database.url"), db.url()));
    for args in [&["topology", "apply"][..], &["migrate"]] {
        let (code, out) = run(mailroom(), args, &env).await;
        assert_eq!(code, 0, "{out}");
    }
    let conn = connect(&vhost).await;
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    for _ in 0..2 {
        let dl = DeadLetter::new(DOCUMENTS_TO_INGEST.name, b"{}", failure("FileMissing"));
        publish_envelope(&publisher, &dl, &DOCUMENTS_TO_INGEST).await;
    }
    let dl = DeadLetter::new(EMAILS_TO_CLASSIFY.name, b"{}", failure("QuotaExceededError"));
    publish_envelope(&publisher, &dl, &EMAILS_TO_CLASSIFY).await;
    for _ in 0..4 {
        publish_raw(&publisher, EMAILS_TO_SEND.route(), b"{}", BasicProperties::default()).await;
    }

    let pool = mailroom_db::connect(&secrecy::SecretString::from(db.url()), 2).await.expect("pool");
    for (status, n) in [("ready", 2), ("failed", 1), ("queued", 1)] {
        for _ in 0..n {
            let id = uuid::Uuid::new_v4();
            let doc = mailroom_db::documents::NewDocument {
                document_id: id,
                agent_email: "support@example.com",
                filename: "a.txt",
                stored_path: "/tmp/a.txt",
                content_type: "text/plain",
                size_bytes: 1,
                message_id: "m",
            };
            mailroom_db::documents::insert(&pool, &doc).await.expect("insert");
            match status {
                "ready" => mailroom_db::documents::mark_ready(&pool, id, 3).await.expect("ready"),
                "failed" => mailroom_db::documents::mark_failed(&pool, id, "FileMissing", "gone").await.expect("fail"),
                _ => {}
            }
        }
    }
    for (sql, what) in [
        (
            "INSERT INTO mailbox_messages (agent_email, mailbox_id, message_id, state) VALUES \
             ('s@x', '1', 'm1', 'published'), ('s@x', '2', 'm2', 'published'), ('s@x', '3', 'm3', 'unparseable')",
            "mailbox",
        ),
        (
            "INSERT INTO classifications (agent_email, email_id, message_id, is_support_inquiry, category, \
             confidence, llm_provider) VALUES ('s@x', '1', 'm1', true, 'product_question', 0.9, 'local'), \
             ('s@x', '2', 'm2', false, 'automated', 0.8, 'rules')",
            "classifications",
        ),
        (
            "INSERT INTO responses (agent_email, email_id, respond_message_id, send_message_id, send_message, \
             llm_provider) VALUES ('s@x', '1', 'r1', 's1', '{}', 'local')",
            "responses",
        ),
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    }
    // The send log comes with another change; without its migration, status must say the table
    // is absent rather than fail. With it, a reply is counted by state.
    let has_replies: bool =
        sqlx::query_scalar("SELECT to_regclass('replies') IS NOT NULL").fetch_one(&pool).await.expect("regclass");
    // Written against the send log's schema as of its first migration; if that schema moves on,
    // only the exact counts below are skipped.
    let replies_written = has_replies
        && sqlx::query(
            "INSERT INTO replies (agent_email, email_id, message_id, state, sink, recipient, subject, \
             reply_message_id, claim_token, claimed_by) SELECT 's@x', n::text, 'm', s, 'maildir', 'c@x', 'Re: hi', \
             '<r@x>', gen_random_uuid(), 'sender-1' FROM (VALUES (1, 'sent'), (2, 'sent'), (3, 'in_doubt')) AS v(n, s)",
        )
        .execute(&pool)
        .await
        .is_ok();

    // The management API's counters refresh every few seconds.
    wait_for(Duration::from_secs(30), "the management API to count the messages", || async {
        let q = mailroom_tests::mgmt().queue(&vhost.name, DEAD_LETTER_QUEUE.name).await.ok()?;
        let send = mailroom_tests::mgmt().queue(&vhost.name, EMAILS_TO_SEND.name).await.ok()?;
        (q.messages_ready == 3 && send.messages_ready == 4).then_some(())
    })
    .await;

    let status = json_of(&["status", "--json"], &env).await;
    let queues = status["broker"]["queues"].as_array().expect("queues");
    let queue = |name: &str| queues.iter().find(|q| q["name"] == name).unwrap_or_else(|| panic!("{name}: {status:#}"));
    assert_eq!(queue(DEAD_LETTER_QUEUE.name)["ready"], 3);
    assert_eq!(queue(EMAILS_TO_SEND.name)["ready"], 4);
    assert_eq!(queue(EMAILS_TO_SEND.name)["consumers"], 0);
    assert_eq!(queue(EMAILS_TO_CLASSIFY.name)["exists"], true);
    assert!(queue(EMAILS_TO_SEND.name).get("publish_rate").is_some());
    assert!(status["broker"]["error"].is_null(), "{status:#}");

    let dead = &status["dead_letters"];
    assert!(dead["error"].is_null(), "{status:#}");
    assert_eq!(dead["total"], 3);
    let groups = dead["by_error_type"].as_array().expect("groups");
    assert!(
        groups.contains(&json!({"original_queue": "documents.to_ingest", "error_type": "FileMissing", "count": 2})),
        "{groups:?}"
    );
    assert!(
        groups
            .contains(&json!({"original_queue": "emails.to_classify", "error_type": "QuotaExceededError", "count": 1})),
        "{groups:?}"
    );

    let database = &status["database"];
    assert!(database["error"].is_null(), "{status:#}");
    assert_eq!(database["documents"], json!({"failed": 1, "queued": 1, "ready": 2}));
    let stage = |name: &str| {
        database["emails"].as_array().expect("emails").iter().find(|s| s["stage"] == name).cloned().expect("stage")
    };
    assert_eq!(stage("mailbox")["counts"], json!({"published": 2, "unparseable": 1}));
    assert_eq!(stage("classified")["counts"], json!({"support": 1, "not_support": 1}));
    assert_eq!(stage("responses")["counts"], json!({"drafted": 1}));
    if replies_written {
        assert_eq!(stage("replies")["counts"], json!({"in_doubt": 1, "sent": 2}));
    } else if has_replies {
        assert!(stage("replies")["counts"].is_object(), "{status:#}");
    } else {
        assert!(stage("replies")["counts"].is_null(), "{status:#}");
    }
    assert_eq!(ready(&conn, &DEAD_LETTER_QUEUE).await, 3, "status consumed no dead letter");

    // The same as tables.
    let (code, out) = run(mailroom(), &["status"], &env).await;
    assert_eq!(code, 0, "{out}");
    for needle in ["emails.to_send", "FileMissing", "QuotaExceededError", "ready 2", "published 2", "support 1"] {
        assert!(out.contains(needle), "{needle} in {out}");
    }
    pool.close().await;
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn status_says_which_service_is_unreachable_and_where_it_looked() {
    let env = WorkerEnv::new()
        .set("amqp.url", "amqp://guest:s3cret@127.0.0.1:9/%2f")
        .set("management.url", "http://127.0.0.1:9")
        .set("database.url", "postgres://postgres:s3cret@127.0.0.1:9/mailroom")
        .build();
    let (code, out) = run(mailroom(), &["status"], &env).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "unacked counts and rates need the RabbitMQ management API, which is not reachable at http://127.0.0.1:9"
        ),
        "{out}"
    );
    assert!(out.contains("cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:9"), "{out}");
    assert!(out.contains("cannot connect to PostgreSQL at postgres://postgres:***@127.0.0.1:9/mailroom"), "{out}");
    assert!(!out.contains("s3cret"), "no password in the output: {out}");
    let (code, out) = run(mailroom(), &["status", "--json"], &env).await;
    assert_eq!(code, 1, "{out}");
    let status: Value = serde_json::from_str(&out).expect("JSON even when unreachable");
    for part in ["broker", "dead_letters", "database"] {
        assert!(status[part]["error"].is_string(), "{part}: {status:#}");
    }
    let (code, out) = run(mailroom(), &["dlq", "list"], &env).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot connect to RabbitMQ at amqp://guest:***@127.0.0.1:9"), "{out}");
}

#[tokio::test]
async fn status_reads_queue_depths_over_amqp_when_the_management_api_is_off() {
    let vhost = TestVhost::create().await;
    let mut env = env_for(&vhost);
    let (code, out) = run(mailroom(), &["topology", "apply"], &env).await;
    assert_eq!(code, 0, "{out}");
    let conn = connect(&vhost).await;
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    for _ in 0..4 {
        publish_raw(&publisher, EMAILS_TO_SEND.route(), b"{}", BasicProperties::default()).await;
    }
    // As on a fresh install: nothing listens where the management API should be.
    let closed = format!("http://127.0.0.1:{}", mailroom_tests::free_port());
    env.retain(|(k, _)| *k != env_var("management.url"));
    env.push((env_var("management.url"), closed.clone()));

    let (code, out) = run(mailroom(), &["status", "--json"], &env).await;
    assert_eq!(code, 1, "the report lacks unacked counts and rates: {out}");
    let status: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("no JSON ({e}): {out}"));
    let broker = &status["broker"];
    assert!(broker["error"].is_null(), "the depths came over AMQP: {status:#}");
    let queue = |name: &str| {
        broker["queues"].as_array().expect("queues").iter().find(|q| q["name"] == name).cloned().expect(name)
    };
    // Exact at once, no waiting for the management API's sampling.
    assert_eq!(queue(EMAILS_TO_SEND.name)["ready"], 4, "{status:#}");
    assert_eq!(queue(EMAILS_TO_SEND.name)["exists"], true);
    assert!(queue(EMAILS_TO_SEND.name)["unacked"].is_null(), "AMQP does not report unacked: {status:#}");
    assert_eq!(queue(DEAD_LETTER_QUEUE.name)["ready"], 0);
    let missing = broker["management_error"].as_str().expect("says what is missing");
    assert!(missing.contains(&closed) && missing.contains("rabbitmq-plugins enable rabbitmq_management"), "{missing}");

    let (code, out) = run(mailroom(), &["status"], &env).await;
    assert_eq!(code, 1, "the report lacks unacked counts and rates: {out}");
    assert_eq!(out.matches("rabbitmq-plugins enable rabbitmq_management").count(), 1, "one line: {out}");
    assert!(!out.contains("error sending request") && !out.contains("ERROR"), "no error chain or log noise: {out}");
    let send_row = out.lines().find(|l| l.trim_start().starts_with(EMAILS_TO_SEND.name)).expect("row");
    assert_eq!(send_row.split_whitespace().collect::<Vec<_>>()[1..3], ["4", "-"], "{send_row}");
    // `dlq` reads over AMQP only and does not notice.
    let (code, out) = run(mailroom(), &["dlq", "list"], &env).await;
    assert_eq!(code, 0, "{out}");
    conn.close(200, "bye".into()).await.expect("close");
}

/// Inserts `n` text documents whose files are not in `storage` yet and publishes their ingest
/// messages; returns their ids and where their files belong.
async fn documents_without_files(
    pool: &sqlx::PgPool,
    conn: &Connection,
    storage: &Path,
    n: usize,
) -> Vec<(uuid::Uuid, PathBuf)> {
    let publisher = Publisher::open(conn, None).await.expect("publisher");
    let mut docs = Vec::with_capacity(n);
    for i in 0..n {
        let id = uuid::Uuid::new_v4();
        let path = storage.join(format!("{id}.txt"));
        let message_id = new_message_id();
        let filename = format!("manual-{i}.txt");
        let stored = path.display().to_string();
        let doc = mailroom_db::documents::NewDocument {
            document_id: id,
            agent_email: "support@example.com",
            filename: &filename,
            stored_path: &stored,
            content_type: "text/plain",
            size_bytes: 100,
            message_id: &message_id,
        };
        mailroom_db::documents::insert(pool, &doc).await.expect("insert document");
        let msg = DocumentToIngest {
            message_id,
            timestamp: now(),
            document_id: id.to_string(),
            filename,
            file_path: stored,
            file_size_bytes: 100,
            uploaded_by: "test".to_owned(),
            agent_email: "support@example.com".to_owned(),
            metadata: DocumentMetadata {
                upload_source: Some("test".to_owned()),
                content_type: Some("text/plain".to_owned()),
            },
        };
        publisher.publish(&msg).await.expect("ingest message confirmed");
        docs.push((id, path));
    }
    docs
}

async fn count_status(pool: &sqlx::PgPool, status: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM documents WHERE status = $1")
        .bind(status)
        .fetch_one(pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn dead_letters_of_a_failing_handler_are_replayed_after_the_fix_and_a_killed_replay_loses_none() {
    const N: usize = 240;
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let storage = TestDir::create();
    let mut env = env_for(&vhost);
    env.extend([(env_var("database.url"), db.url()), (env_var("storage.dir"), storage.path.display().to_string())]);
    for args in [&["topology", "apply"][..], &["migrate"]] {
        let (code, out) = run(mailroom(), args, &env).await;
        assert_eq!(code, 0, "{out}");
    }
    let conn = connect(&vhost).await;
    let pool = sqlx::PgPool::connect(&db.url()).await.expect("pool");

    // The failure: every document's file is missing, which the ingester treats as permanent.
    let docs = documents_without_files(&pool, &conn, &storage.path, N).await;
    let _ingester = spawn(&bin_path("doc-ingester"), &[], &env);
    wait_for(Duration::from_secs(120), "every document to be dead-lettered", || async {
        (ready(&conn, &DEAD_LETTER_QUEUE).await as usize == N).then_some(())
    })
    .await;
    assert_eq!(count_status(&pool, "failed").await, N as i64);
    let list = json_of(&["dlq", "list", "--json", "--error-type", "FileMissing"], &env).await;
    let listed = list.as_array().expect("array");
    assert_eq!(listed.len(), N);
    assert!(listed.iter().all(|d| d["original_queue"] == DOCUMENTS_TO_INGEST.name && d["shape"] == "envelope"));

    // The fix: the files appear.
    for (i, (_, path)) in docs.iter().enumerate() {
        let text = format!(
            "Manual {i}. The Lift Pro carries up to 150 kg. Error E04 means the control box receives no \
             signal: check the cable, then hold the reset button for five seconds."
        );
        std::fs::write(path, text).expect("write file");
    }

    // A throttled replay, killed (SIGKILL: no chance to clean up) once it is well under way.
    let mut replay = spawn(mailroom(), &["dlq", "replay", "--all", "--rate", "40"], &env);
    wait_for(Duration::from_secs(60), "the replay to be under way", || async {
        (ready(&conn, &DEAD_LETTER_QUEUE).await as usize <= N - 60).then_some(())
    })
    .await;
    signal(&replay, "KILL");
    let _ = replay.wait().await;
    // The broker returns what the dead process held; some dead letters are left, some replayed.
    wait_for(Duration::from_secs(30), "the killed replay's connection to close", || async {
        let connections = mailroom_tests::mgmt().connections(&vhost.name).await.ok()?;
        let gone = !connections.iter().any(|c| c.client_name().is_some_and(|n| n.starts_with("mailroom-dlq")));
        gone.then_some(())
    })
    .await;
    let remaining = ready(&conn, &DEAD_LETTER_QUEUE).await as usize;
    assert!(remaining > 0 && remaining < N, "killed midway: {remaining} of {N} dead letters left");

    // Run it again, to completion.
    let (code, out) = run(mailroom(), &["dlq", "replay", "--all"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("to documents.to_ingest"), "{out}");

    // Every document completes, the dead-letter queue ends empty, nothing is duplicated.
    wait_for(Duration::from_secs(180), "every replayed document to be ingested", || async {
        (count_status(&pool, "ready").await == N as i64).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "the work queue to drain", || async {
        (ready(&conn, &DOCUMENTS_TO_INGEST).await == 0).then_some(())
    })
    .await;
    assert_eq!(ready(&conn, &DEAD_LETTER_QUEUE).await, 0, "nothing failed again");
    let rows: Vec<(uuid::Uuid, String, i16, i32)> =
        sqlx::query_as("SELECT document_id, status, progress, chunk_count FROM documents")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(rows.len(), N);
    for (id, status, progress, chunks) in &rows {
        assert_eq!((status.as_str(), *progress), ("ready", 100), "{id}");
        assert!(*chunks > 0, "{id} has chunks");
    }
    let (total, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (document_id, chunk_index)) FROM chunks")
            .fetch_one(&pool)
            .await
            .expect("chunks");
    let expected: i64 = rows.iter().map(|r| i64::from(r.3)).sum();
    assert_eq!((total, distinct), (expected, expected), "a document replayed twice replaced its chunks");
    pool.close().await;
    conn.close(200, "bye".into()).await.expect("close");
}
