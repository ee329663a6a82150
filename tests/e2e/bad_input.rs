//! The bad-input corpus (`tests/fixtures/bad_input/`, see its README) driven through the real
//! worker binaries, one test per entry point:
//!
//! - AMQP bodies published straight to each work queue (not JSON, wrong types, missing fields,
//!   10 MiB, invalid UTF-8, 100,000 nested brackets, out-of-range priorities, …);
//! - files dropped into the poller's Maildir (header injection, broken MIME and encodings,
//!   unknown charsets, invisible characters, prompt injections, 5 MiB and deeply nested mail);
//! - requests to the upload API (missing and wrong tokens, content that contradicts its name,
//!   image-only PDFs, decompression bombs, malformed forms).
//!
//! Each case must meet the fate its manifest names — a dead letter whose envelope carries the
//! expected `error_type`, a non-empty `error_message` and the original body; an `unparseable`
//! ledger entry with a reason; a 4xx with a JSON error naming the problem; or normal
//! processing. Good traffic is mixed in all along, because a worker that survives bad input
//! but stops serving good input has failed just the same: it must reach its terminal state
//! promptly, every work queue must drain, and every worker process must still be running (with
//! no panic in its log) at the end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, history, repo_root, run, spawn_logged, wait_for};
use pipeline_core::Publisher;
use pipeline_core::dead_letter::DeadLetter;
use pipeline_core::messages::{
    Classification, DocumentMetadata, DocumentToIngest, EmailToClassify, EmailToRespond, EmailToSend, IncomingEmail,
    new_message_id, now,
};
use pipeline_core::topology::{self, Route};
use pipeline_core::worker_env::{WorkerEnv, env_var};
use sender::sink::MaildirSink;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::Child;

use crate::stack::{AGENT_A, Stack, TOKEN, knowledge, start};

// ---------------------------------------------------------------------------------------------
// Shared with secrets.rs: processes, logs, dead letters, outbox, Redis keys
// ---------------------------------------------------------------------------------------------

/// A worker process and the file its output goes to.
pub(crate) struct Worker {
    pub(crate) name: String,
    pub(crate) child: Child,
    pub(crate) log: PathBuf,
}

/// Starts a workspace binary with `env`, keeping its log path.
pub(crate) fn worker(name: &str, env: &[(&str, String)]) -> Worker {
    let (child, log) = spawn_logged(&bin_path(name), &[], env);
    Worker { name: name.to_owned(), child, log }
}

/// Every worker is still running, and none logged a panic: a crash that a supervisor would
/// quietly restart is still a crash.
pub(crate) fn assert_alive_without_panics(workers: &mut [Worker]) {
    for w in workers.iter_mut() {
        let status = w.child.try_wait().expect("process status");
        let log = std::fs::read_to_string(&w.log).unwrap_or_default();
        assert!(status.is_none(), "{} exited ({status:?}); its log ({}):\n{}", w.name, w.log.display(), tail(&log));
        assert!(!log.contains("panicked at"), "{} panicked; its log ({}):\n{}", w.name, w.log.display(), tail(&log));
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// One message taken from `dead_letter_queue`.
#[derive(Debug, Clone)]
pub(crate) struct Dead {
    /// The AMQP `correlation_id` (the id of the first message of the email or case).
    pub(crate) correlation_id: Option<String>,
    /// The envelope as JSON.
    pub(crate) envelope: Value,
    /// The envelope decoded (`None` if it is not one of ours: a broker dead letter).
    pub(crate) decoded: Option<DeadLetter>,
}

/// Takes everything now in `dead_letter_queue`.
pub(crate) async fn drain_dead_letters(ch: &lapin::Channel) -> Vec<Dead> {
    let mut out = Vec::new();
    while let Some(m) =
        ch.basic_get("dead_letter_queue".into(), BasicGetOptions { no_ack: true }).await.expect("basic.get")
    {
        let correlation_id = m.delivery.properties.correlation_id().as_ref().map(ToString::to_string);
        let envelope: Value = serde_json::from_slice(&m.delivery.data).unwrap_or(Value::Null);
        let decoded = serde_json::from_slice(&m.delivery.data).ok();
        out.push(Dead { correlation_id, envelope, decoded });
    }
    out
}

/// Files of a Maildir (`new/`, `cur/`) and of its `.Drafts` folder.
pub(crate) fn outbox_files(outbox: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for folder in [outbox.to_path_buf(), outbox.join(".Drafts")] {
        for sub in ["new", "cur"] {
            if let Ok(entries) = std::fs::read_dir(folder.join(sub)) {
                out.extend(entries.filter_map(Result::ok).map(|e| e.path()));
            }
        }
    }
    out
}

/// The header fields of a raw message, unfolded, as (lowercase name, value).
fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        } else {
            // A line in the header block that is neither a field nor a continuation: the
            // block was broken open.
            fields.push((format!("<broken line: {line}>"), String::new()));
        }
    }
    fields
}

/// No reply in the outbox carries a header the customer's input tried to inject (see
/// [`assert_reply_clean`]). Returns how many replies were checked.
pub(crate) fn assert_outbox_clean(outbox: &Path) -> usize {
    let files = outbox_files(outbox);
    files.iter().for_each(|file| assert_reply_clean(file));
    files.len()
}

/// The reply files (sent or drafted) in the outbox for the email `email_id` of `agent`: the
/// files whose names carry the key of the reply's `Message-ID`.
fn replies_to(outbox: &Path, agent: &str, email_id: &str) -> Vec<PathBuf> {
    let key = MaildirSink::reply_key(&sender::reply_message_id(agent, email_id));
    [outbox.to_path_buf(), outbox.join(".Drafts")]
        .iter()
        .flat_map(|folder| MaildirSink::deliveries(folder).expect("read the outbox"))
        .filter(|file| file.key.as_ref() == Some(&key))
        .map(|file| file.path)
        .collect()
}

/// A case marked `outbox_clean`: its own reply is in the outbox, once, and carries nothing
/// injected.
fn assert_case_reply_clean(case: &str, outbox: &Path, agent: &str, email_id: &str) {
    let files = replies_to(outbox, agent, email_id);
    assert_eq!(files.len(), 1, "{case} (outbox_clean): one reply in the outbox, found {files:?}");
    assert_reply_clean(&files[0]);
}

/// The reply in `file` carries no header the customer's input tried to inject: no Bcc or Cc,
/// exactly one To naming no injected address, a plain-text single part, every header line a
/// real field.
fn assert_reply_clean(file: &Path) {
    let raw = std::fs::read(file).expect("read reply");
    let fields = header_fields(&raw);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    let show = || String::from_utf8_lossy(&raw[..raw.len().min(3000)]).into_owned();
    assert!(names.iter().all(|n| !n.starts_with("<broken")), "broken header block in {}:\n{}", file.display(), show());
    assert!(
        !names.contains(&"bcc") && !names.contains(&"cc"),
        "injected recipients in {}:\n{}",
        file.display(),
        show()
    );
    assert!(!names.iter().any(|n| n.starts_with("x-injected")), "injected header in {}:\n{}", file.display(), show());
    let to: Vec<&String> = fields.iter().filter(|(n, _)| n == "to").map(|(_, v)| v).collect();
    assert_eq!(to.len(), 1, "one To in {}:\n{}", file.display(), show());
    assert!(!to[0].contains("evil.example") && !to[0].contains(','), "To of {}: {}", file.display(), to[0]);
    for (name, value) in &fields {
        if name != "subject" {
            assert!(!value.contains("evil.example"), "{name}: {value} in {}", file.display());
        }
    }
    let content_type = fields.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.as_str()).unwrap_or("");
    assert!(content_type.starts_with("text/plain"), "single text part in {}: {content_type}", file.display());
}

/// Keys under a Redis prefix (the sender's quota and throttle), deleted on drop.
pub(crate) struct RedisPrefix(pub(crate) String);

impl RedisPrefix {
    pub(crate) fn new() -> Self {
        Self(format!("mailroom-test:{}", uuid::Uuid::new_v4().simple()))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async move {
                let Ok(client) =
                    mailroom_redis::client(&pipeline_core::settings::RedisSettings::from_url("redis://127.0.0.1:6379"))
                else {
                    return;
                };
                let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return };
                let keys: Vec<String> =
                    redis::AsyncCommands::keys(&mut conn, format!("{prefix}:*")).await.unwrap_or_default();
                for k in keys {
                    let _: Result<(), _> = redis::AsyncCommands::del(&mut conn, k).await;
                }
            });
        })
        .join();
    }
}

/// Sender settings that never make good traffic wait: a quota far above the test's volume.
pub(crate) fn sender_env(outbox: &Path, prefix: &RedisPrefix) -> Vec<(&'static str, String)> {
    WorkerEnv::new()
        .set("outbox.maildir", outbox.display().to_string())
        .set("sender.rate_limit", "100000")
        .set("sender.rate_window_secs", "1")
        .set("sender.rate_burst", "100000")
        .set("sender.redis_prefix", prefix.0.clone())
        // Questions the documents do not cover still get a (holding) reply, so every support
        // email ends in the outbox.
        .set("rag.no_context", "holding_reply")
        .build()
}

/// The terminal state an email reached, if it reached one: not support; a reply (sent or
/// drafted); or a dead letter of a later stage (its error type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    NotSupport,
    Replied,
    DeadLetter(String),
}

/// Where each email (by `email_id`) has got to, from the database and the dead letters so far.
pub(crate) async fn email_ends(pool: &PgPool, dead: &[Dead]) -> HashMap<String, End> {
    let mut out = HashMap::new();
    let classified: Vec<(String, bool)> = sqlx::query_as("SELECT email_id, is_support_inquiry FROM classifications")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    for (id, support) in classified {
        if !support {
            out.insert(id, End::NotSupport);
        }
    }
    let replies: Vec<(String, String)> =
        sqlx::query_as("SELECT email_id, state FROM replies WHERE state IN ('sent', 'drafted')")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    for (id, _state) in replies {
        out.insert(id, End::Replied);
    }
    for d in dead {
        let Some(letter) = &d.decoded else { continue };
        if let Some(id) = letter.original_message.get("email_id").and_then(Value::as_str) {
            out.entry(id.to_owned()).or_insert_with(|| End::DeadLetter(letter.failure_info.error_type.clone()));
        }
    }
    out
}

/// Every work queue is empty: nothing stuck, nothing waiting in a loop.
pub(crate) async fn wait_for_drained_queues(vhost: &TestVhost) {
    wait_for(Duration::from_secs(30), "every work queue to drain", || async {
        for q in topology::WORK_QUEUES {
            if vhost.depth(q.name).await != (0, 0) {
                return None;
            }
        }
        Some(())
    })
    .await;
}

fn corpus() -> PathBuf {
    repo_root().join("tests/fixtures/bad_input")
}

fn manifest(folder: &str) -> Vec<Value> {
    let path = corpus().join(folder).join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    let cases = doc["cases"].as_array().expect("cases").clone();
    for case in &cases {
        assert!(case["why"].as_str().is_some_and(|w| !w.is_empty()), "every case says why: {case}");
        assert!(case["expect"].is_object(), "every case has an expectation: {case}");
    }
    cases
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect()).unwrap_or_default()
}

/// A string of about `bytes` bytes of words (real text wraps and folds; one endless token is a
/// different case, with its own entry).
fn words(bytes: usize) -> String {
    const WORDS: &str = "desk lift error panel motor cable order return warranty shipping ";
    WORDS.repeat(bytes / WORDS.len() + 1)[..bytes].to_owned()
}

/// `bytes` of random hex: text that, unlike words, does not compress.
fn random_text(bytes: usize) -> String {
    let mut s = String::with_capacity(bytes + 32);
    while s.len() < bytes {
        s.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    s.truncate(bytes);
    s
}

// ---------------------------------------------------------------------------------------------
// AMQP bodies on every work queue
// ---------------------------------------------------------------------------------------------

/// One AMQP case, expanded to one queue.
struct AmqpCase {
    id: String,
    queue: &'static str,
    body: Vec<u8>,
    amqp_priority: Option<u8>,
    expect: Value,
    /// The email or document id a valid base message of this case carries.
    record_id: String,
}

fn route_of(queue: &str) -> Route {
    match queue {
        "emails.to_classify" => topology::CLASSIFY,
        "emails.to_respond" => topology::RESPOND,
        "emails.to_send" => topology::SEND,
        "documents.to_ingest" => topology::INGEST,
        other => panic!("not a work queue: {other}"),
    }
}

/// An uploaded document a case can point at.
#[derive(Clone)]
struct Doc {
    id: String,
    path: String,
    filename: String,
    size: u64,
}

fn question(n: usize) -> (String, String) {
    (
        format!("App will not pair over Bluetooth ({n})"),
        "Hello, the Northwind Desk app does not find my Lift Pro desk when I try Bluetooth pairing. \
         What should I do?"
            .to_owned(),
    )
}

fn classify_message(email_id: &str, from: &str) -> EmailToClassify {
    let (subject, body) = question(0);
    EmailToClassify::new(
        IncomingEmail {
            email_id: email_id.to_owned(),
            from: from.to_owned(),
            to: AGENT_A.to_owned(),
            subject,
            body,
            agent_email: AGENT_A.to_owned(),
            headers: BTreeMap::from([("Message-ID".to_owned(), format!("<{email_id}@customer.example>"))]),
            ..Default::default()
        },
        5,
    )
}

/// The history the pipeline would have recorded before a case's message reached `queue`
/// ([`mailroom_tests::history`]): the poller's ledger row for its email and, for
/// `emails.to_send`, the generator's stored reply, so that each case tests what its stage does
/// with the body (a body PostgreSQL cannot store has no stored reply, and is refused as forged).
async fn record_history(pool: &sqlx::PgPool, queue: &str, body: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else { return };
    let (Some(email_id), Some(agent)) = (v["email_id"].as_str(), v["agent_email"].as_str()) else { return };
    if queue == "emails.to_send" {
        // Stored as the generator would store it: what it made, without fields it does not know.
        if let Ok(reply) = serde_json::from_slice::<EmailToSend>(body) {
            let _ = history::try_record_reply(pool, &serde_json::to_value(reply).expect("encode")).await;
        }
    } else {
        let _ = history::try_record_received(pool, agent, email_id, v["from"].as_str().unwrap_or_default()).await;
    }
}

/// A valid message for `queue`, as JSON, for the case numbered `n`.
fn valid_message(queue: &str, record_id: &str, n: usize, base_doc: &Doc) -> Value {
    let from = format!("case{n}@customer.example");
    let classify = classify_message(record_id, &from);
    let value = match queue {
        "emails.to_classify" => serde_json::to_value(&classify),
        "emails.to_respond" => serde_json::to_value(EmailToRespond::new(
            &classify,
            Classification {
                is_support_inquiry: true,
                category: "technical_issue".into(),
                confidence: 0.9,
                llm_provider: "local".into(),
                needs_review: false,
            },
        )),
        "emails.to_send" => serde_json::to_value(EmailToSend {
            message_id: new_message_id(),
            timestamp: now(),
            original_message_id: new_message_id(),
            email_id: record_id.to_owned(),
            thread_id: None,
            to: from.clone(),
            reply_to: AGENT_A.into(),
            subject: "Re: Pairing".into(),
            generated_response: "Hello,\n\nhold the pairing button for three seconds.\n\nThe Support Team".into(),
            context_used: Vec::new(),
            agent_email: AGENT_A.into(),
            escalate: false,
            escalation_reason: None,
            in_reply_to: Some(format!("{record_id}@customer.example")),
            references: Vec::new(),
            original_subject: Some("Pairing".into()),
        }),
        "documents.to_ingest" => serde_json::to_value(DocumentToIngest {
            message_id: new_message_id(),
            timestamp: now(),
            document_id: base_doc.id.clone(),
            filename: base_doc.filename.clone(),
            file_path: base_doc.path.clone(),
            file_size_bytes: base_doc.size,
            uploaded_by: AGENT_A.into(),
            agent_email: AGENT_A.into(),
            metadata: DocumentMetadata {
                upload_source: Some("bad_input".into()),
                content_type: Some("text/plain".into()),
            },
        }),
        other => panic!("not a work queue: {other}"),
    };
    value.expect("encode")
}

/// Replaces the placeholders of a manifest value.
fn substitute(v: &Value, doc: Option<&Doc>, storage: &Path) -> Value {
    match v {
        Value::String(s) => {
            let s = s.replace("$STORAGE", &storage.display().to_string());
            let s = match doc {
                Some(d) => s.replace("$DOC_ID", &d.id),
                None => s,
            };
            Value::String(s.replace("$RANDOM_UUID", &uuid::Uuid::new_v4().to_string()))
        }
        other => other.clone(),
    }
}

/// Builds the body of a case from its manifest entry.
fn amqp_body(
    case: &Value,
    queue: &str,
    record_id: &str,
    n: usize,
    base: &Doc,
    doc: Option<&Doc>,
    storage: &Path,
) -> Vec<u8> {
    let dir = corpus().join("amqp");
    if let Some(text) = case["text"].as_str() {
        return text.as_bytes().to_vec();
    }
    if let Some(file) = case["file"].as_str() {
        return std::fs::read(dir.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
    }
    if let Some(repeat) = case.get("repeat") {
        let times = repeat["times"].as_u64().expect("times") as usize;
        let mut body = repeat["text"].as_str().expect("text").repeat(times);
        if let Some(suffix) = repeat["suffix_repeat"].as_str() {
            body.push_str(&suffix.repeat(times));
        }
        return body.into_bytes();
    }
    assert_eq!(case["valid"], true, "a case needs text, file, repeat or valid: {case}");
    let mut msg = valid_message(queue, record_id, n, base);
    let obj = msg.as_object_mut().expect("object");
    if let Some(d) = doc {
        obj.insert("document_id".into(), json!(d.id));
        obj.insert("file_path".into(), json!(d.path));
        obj.insert("file_size_bytes".into(), json!(d.size));
    }
    for (k, v) in case["set"].as_object().into_iter().flatten() {
        obj.insert(k.clone(), substitute(v, doc, storage));
    }
    for k in strings(&case["remove"]) {
        obj.remove(&k);
    }
    for (k, v) in case["huge"].as_object().into_iter().flatten() {
        obj.insert(k.clone(), json!(words(v.as_u64().expect("bytes") as usize)));
    }
    for (k, v) in case["huge_random"].as_object().into_iter().flatten() {
        obj.insert(k.clone(), json!(random_text(v.as_u64().expect("bytes") as usize)));
    }
    if let Some(count) = case["generate_headers"].as_u64() {
        let headers: serde_json::Map<String, Value> =
            (0..count).map(|i| (format!("X-Header-{i:05}"), json!(format!("value {i}")))).collect();
        obj.insert("headers".into(), Value::Object(headers));
    }
    let mut body = serde_json::to_vec(&msg).expect("encode");
    if let Some(fraction) = case["truncate"].as_f64() {
        body.truncate((body.len() as f64 * fraction) as usize);
    }
    if let Some(text) = case["append"].as_str() {
        body.extend_from_slice(text.as_bytes());
    }
    if let Some(text) = case["append_inside"].as_str() {
        assert_eq!(body.pop(), Some(b'}'));
        body.extend_from_slice(text.as_bytes());
        body.push(b'}');
    }
    body
}

async fn upload_doc(stack: &Stack, name: &str, text: &str) -> Doc {
    let (status, body) = stack.upload(AGENT_A, name, text.as_bytes().to_vec()).await;
    assert_eq!(status, 202, "{body}");
    let id = body["document_id"].as_str().expect("id").to_owned();
    let pool = stack.pool().await;
    let path: String = sqlx::query_scalar("SELECT stored_path FROM documents WHERE document_id = $1::uuid")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .expect("stored path");
    Doc { id, path, filename: name.to_owned(), size: text.len() as u64 }
}

/// Whether the stage's record of a processed case exists.
async fn stage_record(pool: &PgPool, queue: &str, record_id: &str) -> bool {
    let sql = match queue {
        "emails.to_classify" => "SELECT count(*) FROM classifications WHERE email_id = $1",
        "emails.to_respond" => "SELECT count(*) FROM responses WHERE email_id = $1",
        "emails.to_send" => "SELECT count(*) FROM replies WHERE email_id = $1 AND state IN ('sent', 'drafted')",
        "documents.to_ingest" => "SELECT count(*) FROM documents WHERE document_id::text = $1 AND status = 'ready'",
        other => panic!("not a work queue: {other}"),
    };
    sqlx::query_scalar::<_, i64>(sql).bind(record_id).fetch_one(pool).await.unwrap_or(0) > 0
}

#[tokio::test]
async fn amqp_bodies_on_every_work_queue_are_dead_lettered_with_a_reason_or_processed() {
    let outbox = TestDir::create();
    let prefix = RedisPrefix::new();
    let mut stack = start(sender_env(&outbox.path, &prefix)).await;
    let env: Vec<(&str, String)> = stack.env();
    let mut workers: Vec<Worker> =
        ["classifier", "rag-generator", "sender"].iter().map(|name| worker(name, &env)).collect();
    let pool = stack.pool().await;

    // The agent's knowledge (so good questions get real answers), the document valid ingest
    // messages point at, and one document per case that names "$DOC_ID" (those cases may mark
    // their document failed).
    let (status, body) = stack.upload_file(AGENT_A, &knowledge("app-troubleshooting.txt")).await;
    assert_eq!(status, 202, "{body}");
    let knowledge_id = body["document_id"].as_str().expect("id").to_owned();
    let base = upload_doc(&stack, "base.txt", "Northwind support hours are 9 to 5, Monday to Friday.\n").await;
    let cases = manifest("amqp");
    let mut docs: HashMap<String, Doc> = HashMap::new();
    for case in &cases {
        if case["set"].to_string().contains("$DOC_ID") {
            let name = case["name"].as_str().expect("name");
            let doc = upload_doc(&stack, &format!("{name}.txt"), &format!("Document for the {name} case.\n")).await;
            docs.insert(name.to_owned(), doc);
        }
    }
    for id in std::iter::once(&knowledge_id).chain(std::iter::once(&base.id)).chain(docs.values().map(|d| &d.id)) {
        assert_eq!(stack.settled(id).await["status"], "ready");
    }

    // Expand the manifest: "all" runs a case on every work queue.
    let mut expanded = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().expect("name");
        let queues: Vec<&'static str> = match (case["queues"].as_str(), case["queue"].as_str()) {
            (Some("all"), _) => topology::WORK_QUEUES.iter().map(|q| q.name).collect(),
            (None, Some(q)) => vec![topology::WORK_QUEUES.iter().find(|w| w.name == q).expect("work queue").name],
            _ => panic!("case {name} needs queue or queues: \"all\""),
        };
        for queue in queues {
            let n = expanded.len();
            let record_id = if queue == "documents.to_ingest" {
                docs.get(name).unwrap_or(&base).id.clone()
            } else {
                format!("bad-{n:03}-{name}")
            };
            let body = amqp_body(case, queue, &record_id, n, &base, docs.get(name), &stack.storage.path);
            // A case may replace the id itself; its record is then under that one.
            let key = if queue == "documents.to_ingest" { "document_id" } else { "email_id" };
            let record_id = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get(key).and_then(Value::as_str).map(str::to_owned))
                .unwrap_or(record_id);
            if case["unrecorded"] != true {
                record_history(&pool, queue, &body).await;
            }
            let amqp_priority = case["amqp_priority"].as_u64().map(|p| u8::try_from(p).expect("0-255"));
            expanded.push(AmqpCase {
                id: format!("bad-input:{name}@{queue}"),
                queue,
                body,
                amqp_priority,
                expect: case["expect"].clone(),
                record_id,
            });
        }
    }
    assert!(expanded.len() >= 150, "the corpus has {} AMQP cases", expanded.len());
    assert_eq!(
        topology::WORK_QUEUES.iter().filter(|q| expanded.iter().any(|c| c.queue == q.name)).count(),
        4,
        "every work queue gets bad input"
    );

    // Publish the corpus with 50 good emails interleaved, as a producer would between them.
    let conn = Connection::connect(&stack.vhost.amqp_url(), ConnectionProperties::default()).await.expect("amqp");
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let good_every = expanded.len() / 50;
    let mut good = Vec::new();
    let started = Instant::now();
    for (i, case) in expanded.iter().enumerate() {
        let route = route_of(case.queue);
        let mut props = BasicProperties::default()
            .with_message_id(case.id.as_str().into())
            .with_correlation_id(case.id.as_str().into())
            .with_content_type("application/json".into())
            .with_delivery_mode(2);
        if let Some(p) = case.amqp_priority {
            props = props.with_priority(p);
        }
        publisher.send_raw(route.exchange, route.routing_key, &case.body, props).await.expect("publish a case");
        if i % good_every == 0 && good.len() < 50 {
            let n = good.len();
            let mut msg = classify_message(&format!("good-{n:02}"), &format!("good{n}@customer.example"));
            (msg.subject, msg.body) = question(n);
            let props = BasicProperties::default()
                .with_message_id(msg.message_id.as_str().into())
                .with_correlation_id(format!("good:{n}").into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_priority(5);
            let body = serde_json::to_vec(&msg).expect("encode");
            history::record_received(&pool, AGENT_A, &msg.email_id, &msg.from).await;
            publisher.send_raw("email_exchange", "classify", &body, props).await.expect("publish good");
            good.push(msg.email_id);
        }
    }
    assert_eq!(good.len(), 50);

    // Good traffic first: it must not wait behind the corpus, so it gets a deadline of its
    // own (the corpus is published in well under a second).
    let ch = conn.create_channel().await.expect("channel");
    let mut dead: Vec<Dead> = Vec::new();
    wait_for(Duration::from_secs(60), "the 50 good emails to be answered", || async {
        let replied: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM replies WHERE email_id LIKE 'good-%' AND state IN ('sent', 'drafted')",
        )
        .fetch_one(&pool)
        .await
        .unwrap_or(0);
        (replied == 50).then_some(())
    })
    .await;
    let good_took = started.elapsed();

    // Every dead-letter case has its envelope; processed ones have their stage's record (for
    // documents.to_ingest that record, the base document being ready, predates the case: what
    // shows the case was processed there is that its queue drains without a dead letter).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        dead.extend(drain_dead_letters(&ch).await);
        let seen: HashSet<&str> = dead.iter().filter_map(|d| d.correlation_id.as_deref()).collect();
        let mut missing = Vec::new();
        for case in &expanded {
            let done = match case.expect["fate"].as_str().expect("fate") {
                "dead_letter" => seen.contains(case.id.as_str()),
                "processed" => stage_record(&pool, case.queue, &case.record_id).await,
                "ignored" => true,
                other => panic!("unknown fate {other}"),
            };
            if !done {
                missing.push(case.id.as_str());
            }
        }
        if missing.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            // Say what did happen to each, for whoever reads the failure.
            let happened: Vec<String> = missing
                .iter()
                .map(|id| {
                    let letters: Vec<String> = dead
                        .iter()
                        .filter(|d| d.correlation_id.as_deref() == Some(*id))
                        .map(|d| {
                            format!("{}: {}", d.envelope["original_queue"], d.envelope["failure_info"]["error_type"])
                        })
                        .collect();
                    format!("{id} (dead letters: {letters:?})")
                })
                .collect();
            panic!("{} cases never met their fate: {happened:#?}", missing.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_for_drained_queues(&stack.vhost).await;
    // Whatever a later stage dead-letters for a processed case has had time to arrive.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    dead.extend(drain_dead_letters(&ch).await);

    // Each dead letter: its case's queue, an expected type, a reason, and the body unchanged.
    // Mismatches are collected, so one run shows all of them.
    let by_case: HashMap<&str, &AmqpCase> = expanded.iter().map(|c| (c.id.as_str(), c)).collect();
    let mut per_case: HashMap<&str, usize> = HashMap::new();
    let mut wrong: Vec<String> = Vec::new();
    for d in &dead {
        let letter = d.decoded.as_ref().unwrap_or_else(|| panic!("not an envelope: {}", d.envelope));
        let info = &letter.failure_info;
        let corr = d.correlation_id.as_deref().unwrap_or("-");
        assert!(!info.error_message.trim().is_empty(), "empty error_message: {}", d.envelope);
        assert!(!info.consumer_id.is_empty(), "no consumer_id: {}", d.envelope);
        assert!(!corr.starts_with("good:"), "a good email was dead-lettered: {}", d.envelope);
        let case = by_case.get(corr).unwrap_or_else(|| panic!("dead letter of no case: {}", d.envelope));
        if letter.original_queue != case.queue {
            // A later stage's dead letter for a case its own queue processed.
            if !strings(&case.expect["downstream"]).contains(&info.error_type) {
                wrong.push(format!(
                    "{}: unexpected dead letter from {} ({}: {})",
                    case.id, letter.original_queue, info.error_type, info.error_message
                ));
            }
            continue;
        }
        *per_case.entry(corr).or_default() += 1;
        let types = strings(&case.expect["error_type"]);
        if case.expect["fate"] != "dead_letter" {
            wrong.push(format!("{} was to be processed: {}: {}", case.id, info.error_type, info.error_message));
        } else if !types.contains(&info.error_type) {
            wrong.push(format!("{}: {} ({}), expected {types:?}", case.id, info.error_type, info.error_message));
        }
        let kept = match serde_json::from_slice::<Value>(&case.body) {
            Ok(json) => letter.original_message == json,
            Err(_) => letter.original_body() == case.body,
        };
        if !kept {
            wrong.push(format!("{}: the dead letter does not keep the original body", case.id));
        }
    }
    for case in &expanded {
        let count = per_case.get(case.id.as_str()).copied().unwrap_or(0);
        let expected = usize::from(case.expect["fate"] == "dead_letter");
        if count != expected {
            wrong.push(format!("{}: {count} dead letters from its queue, expected {expected}", case.id));
        }
    }
    assert!(wrong.is_empty(), "{} of {} cases went wrong:\n{}", wrong.len(), expanded.len(), wrong.join("\n"));

    // Replies carry nothing injected — each case marked so has its own reply, checked — and
    // every process is still up.
    for case in expanded.iter().filter(|c| c.expect["outbox_clean"] == true) {
        assert!(case.queue.starts_with("emails."), "{}: outbox_clean on a queue that makes no reply", case.id);
        let body: Value = serde_json::from_slice(&case.body).unwrap_or(Value::Null);
        let agent = body["agent_email"].as_str().unwrap_or(AGENT_A);
        assert_case_reply_clean(&case.id, &outbox.path, agent, &case.record_id);
    }
    let replies = assert_outbox_clean(&outbox.path);
    assert!(replies >= 50, "{replies} replies in the outbox");
    assert!(stack.api.try_wait().expect("status").is_none(), "the upload API still runs");
    assert!(stack.ingester.try_wait().expect("status").is_none(), "the ingester still runs");
    assert_alive_without_panics(&mut workers);
    let dead_cases = expanded.iter().filter(|c| c.expect["fate"] == "dead_letter").count();
    eprintln!(
        "{} AMQP cases ({dead_cases} dead-lettered, {} processed or ignored), 50 good emails answered in {good_took:?}",
        expanded.len(),
        expanded.len() - dead_cases
    );
}

// ---------------------------------------------------------------------------------------------
// The poller's Maildir
// ---------------------------------------------------------------------------------------------

fn generated_email(spec: &Value, name: &str) -> Vec<u8> {
    let id = name.trim_end_matches(".eml");
    let head = |subject: &str| {
        format!(
            "From: Generated <gen-{id}@example.com>\nTo: {AGENT_A}\nSubject: {subject}\nMessage-ID: <{id}@example.com>\n\
             Date: Thu, 26 Nov 2026 10:00:00 +0000\n"
        )
    };
    let question = "My desk shows error E04, how do I fix it?\n";
    let size = |key: &str| spec[key].as_u64().expect("size") as usize;
    let text = match spec["kind"].as_str().expect("kind") {
        "big_body" => format!("{}\n{question}{}\n", head("Big body"), words(size("bytes"))),
        "long_line" => format!("{}\n{question}{}\n", head("Long line"), "x".repeat(size("bytes"))),
        "long_subject" => format!("{}\n{question}", head(&words(size("bytes")))),
        "many_headers" => {
            let extra: String = (0..size("count")).map(|i| format!("X-Header-{i:05}: value {i}\n")).collect();
            format!("{}{extra}\n{question}", head("Many headers"))
        }
        "nested_multipart" => {
            let depth = size("depth");
            let mut s =
                format!("{}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b0\"\n\n", head("Nested"));
            for i in 0..depth {
                s.push_str(&format!("--b{i}\nContent-Type: multipart/mixed; boundary=\"b{}\"\n\n", i + 1));
            }
            s.push_str(&format!("--b{depth}\nContent-Type: text/plain\n\n{question}--b{depth}--\n"));
            for i in (0..depth).rev() {
                s.push_str(&format!("--b{i}--\n"));
            }
            s
        }
        "nested_rfc822" => {
            let mut s = format!(
                "{}MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"outer\"\n\n--outer\n\
                 Content-Type: text/plain\n\n{question}--outer\nContent-Type: message/rfc822\n\n",
                head("Nested forwards")
            );
            for _ in 0..size("depth") {
                s.push_str("From: fwd@example.com\nSubject: Fwd\nContent-Type: message/rfc822\n\n");
            }
            s.push_str("From: inner@example.com\nSubject: inner\n\nThe innermost message.\n--outer--\n");
            s
        }
        other => panic!("unknown generator {other}"),
    };
    text.into_bytes()
}

/// Delivers a message the Maildir way: written to `tmp/`, then renamed into `new/`, so the
/// poller never reads half a file.
fn deliver(maildir: &Path, id: &str, raw: &[u8]) {
    let tmp = maildir.join("tmp").join(id);
    std::fs::write(&tmp, raw).expect("write to tmp/");
    std::fs::rename(&tmp, maildir.join("new").join(id)).expect("move to new/");
}

#[tokio::test]
async fn hostile_and_broken_mail_in_the_maildir_is_set_aside_with_a_reason_or_answered_safely() {
    let (vhost, db, dir) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
    let (maildir, outbox) = (dir.path.join("inbox"), dir.path.join("outbox"));
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let prefix = RedisPrefix::new();
    let mut env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("mailbox.maildir", maildir.display().to_string())
        .set("mailbox.agent_email", AGENT_A.to_owned())
        .set("mailbox.poll_interval_ms", "200")
        .set("topology.retry_delays_ms", "200,400")
        .build();
    env.extend(sender_env(&outbox, &prefix));
    // The dead-letter queue must exist before the test reads it.
    let (code, out) = run(&bin_path("mailroom"), &["topology", "apply"], &env).await;
    assert_eq!(code, 0, "{out}");
    let mut workers: Vec<Worker> =
        pipeline_core::consumer::MAIL_STAGES.iter().map(|stage| worker(stage.name, &env)).collect();

    // The corpus, with a good support email after every case or so (50 in all).
    let cases = manifest("maildir");
    let mut expected: Vec<(String, Value)> = Vec::new();
    let mut good = Vec::new();
    let started = Instant::now();
    for (i, case) in cases.iter().enumerate() {
        let (name, raw) = match (case["file"].as_str(), case.get("generate")) {
            (Some(file), _) => {
                (file.to_owned(), std::fs::read(corpus().join("maildir").join(file)).expect("read case"))
            }
            (None, Some(spec)) => {
                let name = case["name"].as_str().expect("generated cases have a name").to_owned();
                let raw = generated_email(spec, &name);
                (name, raw)
            }
            _ => panic!("a case needs file or generate: {case}"),
        };
        let id = format!("1764150000.M{i:03}B.{}", name.trim_end_matches(".eml"));
        deliver(&maildir, &id, &raw);
        expected.push((id, case["expect"].clone()));
        let goods_now = if i + 1 == cases.len() { 50 - good.len() } else { 1 + usize::from(i % 4 == 0) };
        for _ in 0..goods_now.min(50 - good.len()) {
            let n = good.len();
            let id = format!("1764150000.M{i:03}G{n:02}.good");
            let (subject, body) = question(n);
            let raw = format!(
                "From: Good Customer {n} <good{n}@customer.example>\nTo: {AGENT_A}\nSubject: {subject}\n\
                 Message-ID: <good{n}@customer.example>\nDate: Thu, 26 Nov 2026 10:00:00 +0000\n\n{body}\n"
            );
            deliver(&maildir, &id, raw.as_bytes());
            good.push(id);
        }
    }
    assert_eq!(good.len(), 50);
    assert!(expected.len() >= 40, "{} Maildir cases", expected.len());

    let pool = PgPool::connect(&db.url()).await.expect("pool");
    let conn = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let mut dead: Vec<Dead> = Vec::new();

    // Every message leaves new/ and gets a ledger entry; every published one reaches its end.
    let deadline = Instant::now() + Duration::from_secs(75);
    let (ledger, ends) = loop {
        dead.extend(drain_dead_letters(&ch).await);
        let rows: Vec<(String, String, String, Option<String>)> =
            sqlx::query_as("SELECT mailbox_id, message_id, state, reason FROM mailbox_messages")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        let ledger: HashMap<String, (String, String, Option<String>)> =
            rows.into_iter().map(|(id, m, s, r)| (id, (m, s, r))).collect();
        let ends = email_ends(&pool, &dead).await;
        let pending: Vec<&String> = expected
            .iter()
            .map(|(id, _)| id)
            .chain(good.iter())
            .filter(|id| match ledger.get(*id).map(|(_, s, _)| s.as_str()) {
                Some("unparseable") => false,
                Some("published") => !ends.contains_key(*id),
                _ => true,
            })
            .collect();
        if pending.is_empty() {
            break (ledger, ends);
        }
        assert!(Instant::now() < deadline, "{} messages never reached an end: {pending:?}", pending.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let good_took = started.elapsed();
    wait_for_drained_queues(&vhost).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    dead.extend(drain_dead_letters(&ch).await);
    assert_eq!(std::fs::read_dir(maildir.join("new")).expect("new/").count(), 0, "new/ is empty");

    let unparseable_letters: HashMap<String, &DeadLetter> = dead
        .iter()
        .filter_map(|d| d.decoded.as_ref())
        .filter(|l| l.failure_info.error_type == "UnparseableEmail")
        .map(|l| (l.message_id.clone(), l))
        .collect();
    let mut no_end = Vec::new();
    for (id, expect) in &expected {
        let (message_id, state, reason) = &ledger[id];
        match expect["fate"].as_str().expect("fate") {
            "unparseable" => {
                let want = expect["reason"].as_str().expect("reason");
                assert_eq!(state, "unparseable", "{id} was to be set aside");
                let reason = reason.as_deref().unwrap_or_default();
                assert!(reason.contains(want), "{id}: reason {reason:?} lacks {want:?}");
                let letter = unparseable_letters.get(message_id).unwrap_or_else(|| panic!("{id}: no dead letter"));
                assert!(
                    letter.failure_info.error_message.contains(want),
                    "{id}: {}",
                    letter.failure_info.error_message
                );
                // Set aside in cur/, still unread for the team (no `S` flag), with its outcome.
                let prefix = format!("{id}:2,");
                let file = std::fs::read_dir(maildir.join("cur"))
                    .expect("cur/")
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .find(|name| name.starts_with(&prefix))
                    .unwrap_or_else(|| panic!("{id}: not moved to cur/"));
                assert!(!file[prefix.len()..].contains('S'), "{id}: set-aside mail stays unread: {file}");
                let raw = std::fs::read(maildir.join("cur").join(&file)).expect("read from cur/");
                assert!(letter.original_body() == raw, "{id}: the dead letter keeps the raw message");
            }
            "processed" => {
                assert_eq!(state, "published", "{id} was to be published ({reason:?})");
                let end = &ends[id];
                match expect["end"].as_str() {
                    None => no_end.push(format!("{id} ended {end:?}")),
                    Some("replied") => assert!(matches!(end, End::Replied), "{id} ended {end:?}"),
                    Some("not_support") => assert!(matches!(end, End::NotSupport), "{id} ended {end:?}"),
                    Some("dead_letter") => {
                        let types = strings(&expect["error_type"]);
                        assert!(
                            matches!(end, End::DeadLetter(t) if types.contains(t)),
                            "{id} ended {end:?}, expected {types:?}"
                        );
                    }
                    Some(other) => panic!("unknown end {other}"),
                }
                if expect["outbox_clean"] == true {
                    assert_case_reply_clean(id, &outbox, AGENT_A, id);
                }
            }
            other => panic!("unknown fate {other}"),
        }
    }
    assert!(no_end.is_empty(), "every processed case names its end; these do not:\n{}", no_end.join("\n"));
    // Every dead letter is accounted for: set-aside mail, or a case that expects one.
    for d in &dead {
        let letter = d.decoded.as_ref().unwrap_or_else(|| panic!("not an envelope: {}", d.envelope));
        assert!(!letter.failure_info.error_message.trim().is_empty(), "{}", d.envelope);
        if letter.failure_info.error_type == "UnparseableEmail" {
            continue;
        }
        let email_id = letter.original_message["email_id"].as_str().unwrap_or_default();
        let case = expected.iter().find(|(id, _)| id == email_id);
        assert!(
            case.is_some_and(|(_, e)| e["end"] == "dead_letter"),
            "unexpected dead letter for {email_id}: {}: {}",
            letter.failure_info.error_type,
            letter.failure_info.error_message
        );
    }
    for id in &good {
        assert!(matches!(ends[id], End::Replied), "good email {id} ended {:?}", ends[id]);
    }
    let replies = assert_outbox_clean(&outbox);
    assert!(replies >= 50, "{replies} replies");
    assert_alive_without_panics(&mut workers);
    eprintln!("{} Maildir cases and 50 good emails handled in {good_took:?}", expected.len());
}

// ---------------------------------------------------------------------------------------------
// The upload API
// ---------------------------------------------------------------------------------------------

/// Sends one upload-API case; returns the status and the JSON body.
async fn upload_case(stack: &Stack, case: &Value) -> (u16, Value) {
    let http = &stack.http;
    let dir = corpus().join("uploads");
    let (bytes, default_name) = if let Some(file) = case["file"].as_str() {
        let path = dir.join(file);
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        (std::fs::read(&path).unwrap_or_else(|e| panic!("read {file}: {e}")), name)
    } else if let Some(text) = case["text"].as_str() {
        (text.as_bytes().to_vec(), "upload.txt".to_owned())
    } else if let Some(spec) = case.get("generate") {
        let byte = spec["byte"].as_str().expect("byte").as_bytes()[0];
        (vec![byte; spec["bytes"].as_u64().expect("bytes") as usize], "generated.txt".to_owned())
    } else {
        (Vec::new(), "none".to_owned())
    };
    let filename = match case["filename"].as_str() {
        Some("$LONG_NAME") => format!("{}.txt", "n".repeat(10_000)),
        Some(name) => name.to_owned(),
        None => default_name,
    };
    let agent = match case["agent_email"].as_str() {
        Some("$LONG_AGENT") => format!("{}@northwind.example", "a".repeat(2048)),
        Some(a) => a.to_owned(),
        None => AGENT_A.to_owned(),
    };
    let request = case["request"].as_str().unwrap_or("upload");
    let mut url = format!("{}/documents", stack.base);
    let builder = match request {
        "get" | "delete" => {
            url = format!("{}{}", stack.base, case["path"].as_str().expect("path"));
            if request == "get" { http.get(&url) } else { http.delete(&url) }
        }
        "not_multipart" => http.post(&url).json(&json!({"agent_email": agent, "file": "aGVsbG8="})),
        "truncated_multipart" => http
            .post(&url)
            .header("content-type", "multipart/form-data; boundary=XyZ")
            .body("--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\r\nhalf of a fi"),
        "upload" | "no_file_field" | "no_agent_field" => {
            let mut form = reqwest::multipart::Form::new();
            if request != "no_agent_field" {
                form = form.text("agent_email", agent);
            }
            if request != "no_file_field" {
                form = form.part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename));
            }
            http.post(&url).multipart(form)
        }
        other => panic!("unknown request {other}"),
    };
    let builder = match case["token"].as_str().unwrap_or("valid") {
        "valid" => builder.bearer_auth(TOKEN),
        "missing" => builder,
        "wrong" => builder.bearer_auth("not-the-token"),
        "prefix" => builder.bearer_auth(&TOKEN[..TOKEN.len() - 1]),
        "basic" => builder.basic_auth("upload", Some(TOKEN)),
        "query" => builder.query(&[("token", TOKEN)]),
        other => panic!("unknown token kind {other}"),
    };
    let response = builder.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn hostile_uploads_get_a_clear_answer_or_fail_with_a_reason_and_good_documents_still_go_through() {
    let mut stack = start(vec![(env_var("upload_api.max_upload_mb"), "2".to_owned())]).await;
    let cases = manifest("uploads");
    let mut accepted: Vec<(String, Value, String)> = Vec::new();
    let mut good = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let name = case["name"].as_str().expect("name");
        let expect = &case["expect"];
        let (status, body) = upload_case(&stack, case).await;
        assert_eq!(u64::from(status), expect["status"].as_u64().expect("status"), "{name}: {body}");
        if status >= 400 {
            let error = body["error"].as_str().unwrap_or_else(|| panic!("{name}: no JSON error in {body}"));
            let want = expect["error"].as_str().expect("error substring");
            assert!(error.contains(want), "{name}: error {error:?} lacks {want:?}");
        } else {
            let id = body["document_id"].as_str().unwrap_or_else(|| panic!("{name}: {body}")).to_owned();
            if let Some(ct) = expect["content_type"].as_str() {
                assert_eq!(body["content_type"], ct, "{name}");
            }
            if let Some(filename) = expect["filename"].as_str() {
                assert_eq!(body["filename"], filename, "{name}");
            }
            if let Some(max) = expect["filename_max_chars"].as_u64() {
                let chars = body["filename"].as_str().expect("filename").chars().count() as u64;
                assert!(chars <= max, "{name}: a {chars}-character name is kept");
            }
            accepted.push((name.to_owned(), expect.clone(), id));
        }
        // A good document after every other case.
        if i % 2 == 0 {
            let text = format!("Northwind good document {i}: desks are assembled in 20 minutes with one tool.\n");
            let (status, body) = stack.upload(AGENT_A, &format!("good-{i}.txt"), text.into_bytes()).await;
            assert_eq!(status, 202, "{body}");
            good.push(body["document_id"].as_str().expect("id").to_owned());
        }
    }
    assert!(cases.len() >= 35, "{} upload cases", cases.len());

    let mut failed = HashMap::new();
    for (name, expect, id) in &accepted {
        let doc = stack.settled(id).await;
        let want = expect["document"].as_str().expect("document fate");
        assert_eq!(doc["status"], want, "{name}: {doc}");
        if want == "failed" {
            let error_type = doc["error_type"].as_str().expect("error_type").to_owned();
            assert!(strings(&expect["error_type"]).contains(&error_type), "{name}: {error_type} ({doc})");
            assert!(doc["error"].as_str().is_some_and(|e| !e.trim().is_empty()), "{name}: a reason ({doc})");
            failed.insert(id.clone(), error_type);
        } else {
            assert!(doc["chunk_count"].as_i64().unwrap_or(0) > 0, "{name}: {doc}");
        }
    }
    for id in &good {
        assert_eq!(stack.settled(id).await["status"], "ready", "good document {id}");
    }

    // Every failed document is also a dead letter with the same reason; nothing else is.
    let conn = Connection::connect(&stack.vhost.amqp_url(), ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    wait_for_drained_queues(&stack.vhost).await;
    let dead = drain_dead_letters(&ch).await;
    let mut lettered = HashMap::new();
    for d in &dead {
        let letter = d.decoded.as_ref().unwrap_or_else(|| panic!("not an envelope: {}", d.envelope));
        assert_eq!(letter.original_queue, "documents.to_ingest");
        assert!(!letter.failure_info.error_message.trim().is_empty());
        let id = letter.original_message["document_id"].as_str().expect("document_id").to_owned();
        lettered.insert(id, letter.failure_info.error_type.clone());
    }
    assert_eq!(lettered, failed, "one dead letter per failed document, with its error_type");
    assert!(stack.api.try_wait().expect("status").is_none(), "the upload API still runs");
    assert!(stack.ingester.try_wait().expect("status").is_none(), "the ingester still runs");
    eprintln!(
        "{} upload cases ({} accepted, {} failed with a reason), {} good documents ready",
        cases.len(),
        accepted.len(),
        failed.len(),
        good.len()
    );
}
