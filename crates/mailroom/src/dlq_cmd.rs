//! `mailroom dlq list|show|replay|purge`: the operator's view of `dead_letter_queue`.
//!
//! Two shapes of dead letter arrive there and both are read:
//! - **envelopes** that a worker published after giving up (DESIGN.md §3): a JSON body with
//!   `original_queue`, `original_message` (or `original_message_base64`) and `failure_info`,
//!   plus the `x-original-queue` header. Their id is the envelope's `message_id`.
//! - **broker-dead-lettered** messages (TTL expiry, a reject without requeue): the body is the
//!   original message as it was, and the `x-death` header names the queue and the reason. Their
//!   id is the AMQP `message_id` property, or `sha256:<16 hex digits>` of the body without one.
//!
//! Reading happens over AMQP on one channel: `basic.get` without auto-ack, at most as many
//! messages as the queue held when the command started (so dead letters that arrive meanwhile —
//! a replayed message failing again, say — are not read back in the same run and cannot make it
//! loop). Every message read stays unacknowledged, and therefore invisible to other readers,
//! until the command decides: replayed or purged ones are acked, everything else is returned by
//! closing the channel, which puts the messages back in their original order. A command that
//! dies, even by SIGKILL, returns them the same way, because the broker requeues the unacked
//! messages of a closed connection.
//!
//! Replay is at-least-once: each dead letter is republished to its original queue's exchange
//! and routing key (from [`pipeline_core::topology`]), with publisher confirms and `mandatory`,
//! and acked in the dead-letter queue only after the broker confirmed the copy. A crash between
//! the two leaves both, so that message is replayed again by the next run — a duplicate, which
//! the workers' idempotent handlers absorb — but never lost.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use clap::{Args, Subcommand};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};
use pipeline_core::Settings;
use pipeline_core::messages::MAX_PRIORITY;
use pipeline_core::publisher::{Publisher, RETRY_COUNT_HEADER, int_header};
use pipeline_core::topology::{DEAD_LETTER_QUEUE, QueueSpec, Route, WORK_QUEUES};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

/// Header our envelopes carry besides `original_queue` in the body.
pub const ORIGINAL_QUEUE_HEADER: &str = "x-original-queue";
/// Header a replayed message carries: the id of the dead letter it came from (for tracing a
/// message through a replay; workers ignore it).
pub const REPLAYED_FROM_HEADER: &str = "x-mailroom-replayed-from";

/// `mailroom dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List dead letters, oldest first, without removing them.
    List {
        /// Which dead letters.
        #[command(flatten)]
        filter: Filter,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one dead letter in full (envelope, AMQP properties and headers) as pretty JSON.
    Show {
        /// Its id, as `list` prints it.
        id: String,
    },
    /// Republish dead letters to their original queue (retry count reset), then remove them.
    Replay {
        /// Ids of the dead letters to replay.
        ids: Vec<String>,
        /// Which dead letters (combined with the ids when both are given).
        #[command(flatten)]
        filter: Filter,
        /// Replay every dead letter.
        #[arg(long, conflicts_with_all = ["ids", "queue", "error_type", "older_than"])]
        all: bool,
        /// At most this many messages per second, to spare a downstream that just recovered.
        #[arg(long, value_name = "PER_SECOND")]
        rate: Option<f64>,
    },
    /// Delete dead letters for good, after a confirmation.
    Purge {
        /// Ids of the dead letters to delete.
        ids: Vec<String>,
        /// Which dead letters (combined with the ids when both are given).
        #[command(flatten)]
        filter: Filter,
        /// Delete every dead letter.
        #[arg(long, conflicts_with_all = ["ids", "queue", "error_type", "older_than"])]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Filters shared by `list`, `replay` and `purge`; all given filters must match.
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// Only dead letters that failed in this queue (e.g. documents.to_ingest).
    #[arg(long, value_name = "ORIGINAL_QUEUE")]
    pub queue: Option<String>,
    /// Only dead letters with this error type (`failure_info.error_type`, or the broker's
    /// reason such as `expired` or `rejected`).
    #[arg(long)]
    pub error_type: Option<String>,
    /// Only dead letters older than this: 90s, 10m, 2h, 1d, 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.queue.is_none() && self.error_type.is_none() && self.older_than.is_none()
    }
}

/// Parses `90s`, `10m`, `2h`, `1d`, `1h30m` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(format!("invalid duration {text:?}: unknown unit {c:?} (use s, m, h or d)")),
        };
        let n: u64 = digits.parse().map_err(|_| format!("invalid duration {text:?}: a number must precede {c:?}"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("invalid duration {text:?}: {digits} has no unit"));
    }
    Ok(Duration::from_secs(total))
}

/// How a dead letter got into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// Published by a worker inside the seed's envelope.
    Envelope,
    /// Dead-lettered by the broker (`x-death` header), body untouched.
    XDeath,
    /// Neither: something published straight to the dead-letter exchange.
    Unknown,
}

/// A dead letter decoded from either shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterInfo {
    /// Id by which the commands select it.
    pub id: String,
    /// Envelope, broker-dead-lettered, or unknown.
    pub shape: Shape,
    /// Queue the message failed in.
    pub original_queue: Option<String>,
    /// `failure_info.error_type`, or the broker's reason (`expired`, `rejected`, `maxlen`, …).
    pub error_type: String,
    /// Human-readable reason.
    pub error_message: String,
    /// Retries spent before it was dead-lettered (`failure_info.retry_count`, or our retry
    /// header on a broker-dead-lettered message).
    pub retry_count: Option<u64>,
    /// Times the broker dead-lettered it from that queue (`x-death` count).
    pub death_count: Option<u64>,
    /// When it was dead-lettered.
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// Worker that gave up (envelope only).
    pub consumer_id: Option<String>,
    /// `message_id` of the original message.
    pub original_message_id: Option<String>,
    /// Whether the broker has delivered it before (someone read it and returned it).
    pub redelivered: bool,
}

/// Converts an AMQP field value to JSON, for display.
fn amqp_to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        AMQPValue::DecimalValue(d) => json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => json!(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(amqp_to_json).collect()),
        AMQPValue::Timestamp(t) => {
            let at = i64::try_from(*t).ok().and_then(|t| DateTime::from_timestamp(t, 0));
            at.map_or_else(|| json!(t), |at| json!(at.to_rfc3339()))
        }
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::ByteArray(b) => json!(base64::engine::general_purpose::STANDARD.encode(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

fn table_to_json(table: &FieldTable) -> Value {
    Value::Object(table.inner().iter().map(|(k, v)| (k.as_str().to_owned(), amqp_to_json(v))).collect())
}

fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// The most recent `x-death` entry: the broker keeps the latest dead-lettering first.
fn last_death(headers: Option<&FieldTable>) -> Option<&FieldTable> {
    match headers?.inner().get("x-death")? {
        AMQPValue::FieldArray(entries) => entries.as_slice().iter().find_map(|e| match e {
            AMQPValue::FieldTable(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

fn table_u64(table: &FieldTable, name: &str) -> Option<u64> {
    match table.inner().get(name)? {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::Timestamp(n) => Some(*n),
        _ => None,
    }
}

fn content_id(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let mut hex = String::with_capacity(16);
    for b in &digest[..8] {
        let _ = write!(hex, "{b:02x}");
    }
    format!("sha256:{hex}")
}

/// Timestamps as our producers write them (RFC 3339) or as Python's `isoformat()` does
/// (no offset: UTC by the seed's convention).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc()))
}

fn unix_time(seconds: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(seconds).ok()?, 0)
}

/// A JSON body that is one of our (or the seed's) envelopes.
fn as_envelope(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else { return None };
    let is_envelope = map.get("original_queue").is_some_and(Value::is_string)
        && map.get("failure_info").is_some_and(Value::is_object)
        && (map.contains_key("original_message") || map.contains_key("original_message_base64"));
    is_envelope.then_some(map)
}

/// Decodes a dead letter of either shape. Never fails: what cannot be understood is shown as
/// `unknown` so that it can still be listed and purged.
pub fn decode(properties: &BasicProperties, body: &[u8], redelivered: bool) -> DeadLetterInfo {
    let headers = properties.headers().as_ref();
    let amqp_id = properties.message_id().as_ref().map(|id| id.as_str().to_owned()).filter(|id| !id.is_empty());
    let amqp_time = properties.timestamp().and_then(unix_time);
    if let Some(map) = as_envelope(body) {
        let info = &map["failure_info"];
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        return DeadLetterInfo {
            id: map
                .get("message_id")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or(amqp_id)
                .unwrap_or_else(|| content_id(body)),
            shape: Shape::Envelope,
            original_queue: map["original_queue"].as_str().map(str::to_owned),
            error_type: text(info, "error_type").unwrap_or_else(|| "unknown".to_owned()),
            error_message: text(info, "error_message").unwrap_or_default(),
            retry_count: info.get("retry_count").and_then(Value::as_u64),
            death_count: None,
            dead_lettered_at: map.get("timestamp").and_then(Value::as_str).and_then(parse_time).or(amqp_time),
            consumer_id: text(info, "consumer_id"),
            original_message_id: map.get("original_message").and_then(|m| text(m, "message_id")),
            redelivered,
        };
    }
    if let Some(death) = last_death(headers) {
        let field = |name: &str| header_str(Some(death), name);
        let queue = field("queue").or_else(|| header_str(headers, "x-last-death-queue"));
        let reason = field("reason").unwrap_or_else(|| "unknown".to_owned());
        let count = table_u64(death, "count");
        let original_message_id = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("message_id").and_then(Value::as_str).map(str::to_owned))
            .or_else(|| amqp_id.clone());
        return DeadLetterInfo {
            id: amqp_id.unwrap_or_else(|| content_id(body)),
            shape: Shape::XDeath,
            error_message: format!(
                "dead-lettered by the broker ({reason}) from {}, {} time(s)",
                queue.as_deref().unwrap_or("an unknown queue"),
                count.unwrap_or(1)
            ),
            original_queue: queue,
            error_type: reason,
            retry_count: int_header(headers, RETRY_COUNT_HEADER).and_then(|n| u64::try_from(n).ok()),
            death_count: count,
            dead_lettered_at: table_u64(death, "time").and_then(unix_time).or(amqp_time),
            consumer_id: None,
            original_message_id,
            redelivered,
        };
    }
    DeadLetterInfo {
        id: amqp_id.unwrap_or_else(|| content_id(body)),
        shape: Shape::Unknown,
        original_queue: header_str(headers, ORIGINAL_QUEUE_HEADER),
        error_type: "unknown".to_owned(),
        error_message: "neither an envelope nor dead-lettered by the broker".to_owned(),
        retry_count: int_header(headers, RETRY_COUNT_HEADER).and_then(|n| u64::try_from(n).ok()),
        death_count: None,
        dead_lettered_at: amqp_time,
        consumer_id: None,
        original_message_id: None,
        redelivered,
    }
}

/// The whole of a dead letter as JSON, for `show`: the decoded summary, the AMQP properties
/// and headers, and the body (the envelope, or the original message of an x-death letter).
pub fn full_json(info: &DeadLetterInfo, properties: &BasicProperties, body: &[u8]) -> Value {
    let mut props = serde_json::Map::new();
    let short = |v: &Option<ShortString>| v.as_ref().map(|s| json!(s.as_str()));
    for (key, value) in [
        ("message_id", short(properties.message_id())),
        ("correlation_id", short(properties.correlation_id())),
        ("content_type", short(properties.content_type())),
        ("app_id", short(properties.app_id())),
        ("delivery_mode", properties.delivery_mode().map(|v| json!(v))),
        ("priority", properties.priority().map(|v| json!(v))),
        ("timestamp", properties.timestamp().and_then(unix_time).map(|t| json!(t.to_rfc3339()))),
        ("headers", properties.headers().as_ref().map(table_to_json)),
    ] {
        if let Some(value) = value {
            props.insert(key.to_owned(), value);
        }
    }
    let body = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(_) => match std::str::from_utf8(body) {
            Ok(text) => json!(text),
            Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(body) }),
        },
    };
    let key = if info.shape == Shape::Envelope { "envelope" } else { "original_message" };
    let mut out = serde_json::to_value(info).unwrap_or_default();
    if let Value::Object(map) = &mut out {
        map.insert("properties".to_owned(), Value::Object(props));
        map.insert(key.to_owned(), body);
    }
    out
}

/// A republish of a dead letter to where it failed.
#[derive(Debug, Clone)]
pub struct ReplayPlan {
    /// The original queue's spec.
    pub queue: &'static QueueSpec,
    /// Its exchange and routing key.
    pub route: Route,
    /// The original body.
    pub body: Vec<u8>,
    /// Properties: persistent, retry count reset, broker dead-letter headers removed.
    pub properties: BasicProperties,
}

/// The original body inside an envelope, byte for byte when it was not JSON (base64), else
/// the embedded JSON or text.
fn envelope_body(map: &serde_json::Map<String, Value>) -> Option<Vec<u8>> {
    if let Some(encoded) = map.get("original_message_base64").and_then(Value::as_str) {
        return base64::engine::general_purpose::STANDARD.decode(encoded).ok();
    }
    match map.get("original_message")? {
        Value::String(text) => Some(text.clone().into_bytes()),
        Value::Null => None,
        other => Some(other.to_string().into_bytes()),
    }
}

/// Headers that describe the failed attempt; a replay is a fresh start without them.
fn is_failure_header(name: &str) -> bool {
    name == RETRY_COUNT_HEADER
        || name == ORIGINAL_QUEUE_HEADER
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// Works out where and how a dead letter is replayed; `Err` says why it cannot be.
pub fn plan_replay(info: &DeadLetterInfo, properties: &BasicProperties, body: &[u8]) -> Result<ReplayPlan, String> {
    let Some(name) = info.original_queue.as_deref() else {
        return Err("the original queue is unknown".to_owned());
    };
    let Some(queue) = WORK_QUEUES.iter().copied().find(|q| q.name == name) else {
        return Err(format!("{name} is not a work queue of the topology"));
    };
    let route = queue.route();
    let mut headers: BTreeMap<ShortString, AMQPValue> = properties
        .headers()
        .as_ref()
        .map(|h| h.inner().iter().filter(|(k, _)| !is_failure_header(k.as_str())).map(|(k, v)| (k.clone(), v.clone())))
        .into_iter()
        .flatten()
        .collect();
    headers.insert(REPLAYED_FROM_HEADER.into(), AMQPValue::LongString(info.id.as_str().into()));
    let (body, base) = match info.shape {
        Shape::Envelope => {
            let map = as_envelope(body).ok_or("the envelope does not decode")?;
            let original = envelope_body(&map).ok_or("the envelope holds no original message")?;
            // The envelope was published with its own message id; the replay gets the original
            // one back, plus the original correlation id, which the envelope kept.
            let message_id = info.original_message_id.clone().unwrap_or_else(|| info.id.clone());
            let mut props = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_message_id(message_id.as_str().into())
                .with_timestamp(u64::try_from(Utc::now().timestamp()).unwrap_or_default())
                .with_app_id("mailroom".into());
            if let Some(correlation) = properties.correlation_id() {
                props = props.with_correlation_id(correlation.clone());
            }
            let priority = map.get("original_message").and_then(|m| m.get("priority")).and_then(Value::as_u64);
            if let (Some(_), Some(p)) = (queue.max_priority, priority) {
                props = props.with_priority(u8::try_from(p.clamp(1, u64::from(MAX_PRIORITY))).unwrap_or(MAX_PRIORITY));
            }
            (original, props)
        }
        // The broker left the message as it was: same body, same properties.
        Shape::XDeath | Shape::Unknown => (body.to_vec(), properties.clone()),
    };
    let properties = pipeline_core::consumer::replay_properties(&base).with_headers(FieldTable::from(headers));
    Ok(ReplayPlan { queue, route, body, properties })
}

/// A dead-letter command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The broker could not be reached.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        /// Redacted AMQP URL.
        url: String,
        /// Why.
        source: pipeline_core::amqp::ConnectError,
    },
    /// The dead-letter queue does not exist.
    #[error("queue {queue} does not exist in vhost {vhost:?} (run `mailroom topology apply`): {source}")]
    NoQueue {
        /// Queue name.
        queue: &'static str,
        /// Vhost.
        vhost: String,
        /// The broker's answer.
        source: lapin::Error,
    },
    /// A channel operation failed.
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
}

/// A dead letter read and not yet settled.
#[derive(Debug)]
pub struct Held {
    /// What it is.
    pub info: DeadLetterInfo,
    /// The delivery, to ack.
    pub delivery: Delivery,
}

/// Reads `dead_letter_queue` on one channel, holding every message unacked until it is acked
/// or the reader is closed.
pub struct DlqReader {
    connection: Connection,
    channel: Channel,
    budget: u32,
    queued: u32,
}

impl DlqReader {
    /// Connects (the connection is named `mailroom-dlq-<purpose>`, visible in the management
    /// UI) and notes how many messages the queue holds now: no more than that are read.
    pub async fn open(settings: &Settings, purpose: &str) -> Result<Self, DlqError> {
        let connection = pipeline_core::amqp::connect(&settings.amqp, &format!("mailroom-dlq-{purpose}"))
            .await
            .map_err(|source| DlqError::Connect { url: settings.amqp.redacted_url(), source })?;
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let queue =
            channel.queue_declare(DEAD_LETTER_QUEUE.name.into(), passive, FieldTable::default()).await.map_err(
                |source| DlqError::NoQueue { queue: DEAD_LETTER_QUEUE.name, vhost: settings.amqp.vhost(), source },
            )?;
        let queued = queue.message_count();
        Ok(Self { connection, channel, budget: queued, queued })
    }

    /// Messages ready in the queue when the reader opened.
    pub fn queued(&self) -> u32 {
        self.queued
    }

    /// The reader's connection (replay publishes on a channel of its own on it).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The next dead letter, or `None` when the messages present at the start are all read.
    pub async fn next(&mut self) -> Result<Option<Held>, DlqError> {
        if self.budget == 0 {
            return Ok(None);
        }
        let got = self.channel.basic_get(DEAD_LETTER_QUEUE.name.into(), BasicGetOptions { no_ack: false }).await?;
        let Some(got) = got else {
            self.budget = 0;
            return Ok(None);
        };
        self.budget -= 1;
        let delivery = got.delivery;
        let info = decode(&delivery.properties, &delivery.data, delivery.redelivered);
        Ok(Some(Held { info, delivery }))
    }

    /// Reads everything (up to `limit`) without settling anything.
    pub async fn read_all(&mut self, limit: Option<usize>) -> Result<Vec<Held>, DlqError> {
        let mut out = Vec::new();
        while limit.is_none_or(|l| out.len() < l) {
            match self.next().await? {
                Some(held) => out.push(held),
                None => break,
            }
        }
        Ok(out)
    }

    /// Returns every unacked message to the queue (closing the channel requeues them in their
    /// original order, in one step) and disconnects.
    pub async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// Which dead letters a command acts on.
#[derive(Debug, Clone)]
pub struct Selection {
    ids: HashSet<String>,
    filter: Filter,
    now: DateTime<Utc>,
}

impl Selection {
    /// Ids (any of them) and filters (all of them); empty ids means any id.
    pub fn new(ids: &[String], filter: Filter) -> Result<Self, String> {
        if let Some(queue) = &filter.queue
            && !WORK_QUEUES.iter().any(|q| q.name == queue)
        {
            let known: Vec<&str> = WORK_QUEUES.iter().map(|q| q.name).collect();
            return Err(format!("unknown queue {queue:?}; dead letters come from {}", known.join(", ")));
        }
        Ok(Self { ids: ids.iter().cloned().collect(), filter, now: Utc::now() })
    }

    /// Whether `info` is selected. A dead letter whose time is unknown is never "older than".
    pub fn matches(&self, info: &DeadLetterInfo) -> bool {
        (self.ids.is_empty() || self.ids.contains(&info.id))
            && self.filter.queue.as_ref().is_none_or(|q| info.original_queue.as_ref() == Some(q))
            && self.filter.error_type.as_ref().is_none_or(|t| &info.error_type == t)
            && self.filter.older_than.is_none_or(|age| {
                info.dead_lettered_at
                    .is_some_and(|at| self.now.signed_duration_since(at).to_std().is_ok_and(|elapsed| elapsed >= age))
            })
    }
}

/// Runs a `dlq` subcommand.
pub async fn run(settings: &Settings, action: DlqAction) -> anyhow::Result<ExitCode> {
    // A `DlqError`'s message already quotes its cause; printed as a chain it would repeat it
    // two or three times over, so it leaves as one line.
    run_action(settings, action).await.map_err(|e| match e.downcast::<DlqError>() {
        Ok(e) => anyhow::Error::msg(e.to_string()),
        Err(e) => e,
    })
}

async fn run_action(settings: &Settings, action: DlqAction) -> anyhow::Result<ExitCode> {
    match action {
        DlqAction::List { filter, json } => list(settings, filter, json).await,
        DlqAction::Show { id } => show(settings, &id).await,
        DlqAction::Replay { ids, filter, all, rate } => {
            if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                anyhow::bail!("--rate must be a positive number of messages per second");
            }
            require_selector(&ids, &filter, all, "replay")?;
            replay(settings, Selection::new(&ids, filter).map_err(anyhow::Error::msg)?, &ids, rate).await
        }
        DlqAction::Purge { ids, filter, all, yes } => {
            require_selector(&ids, &filter, all, "purge")?;
            purge(settings, Selection::new(&ids, filter).map_err(anyhow::Error::msg)?, yes).await
        }
    }
}

/// Replay and purge act on nothing by default: the operator names ids, filters, or `--all`.
fn require_selector(ids: &[String], filter: &Filter, all: bool, verb: &str) -> anyhow::Result<()> {
    if ids.is_empty() && filter.is_empty() && !all {
        anyhow::bail!("say which dead letters to {verb}: ids, --queue/--error-type/--older-than, or --all");
    }
    Ok(())
}

fn age(at: Option<DateTime<Utc>>) -> String {
    let Some(at) = at else { return "?".to_owned() };
    let secs = Utc::now().signed_duration_since(at).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m", secs / 60),
        3_600..86_400 => format!("{}h{:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{:02}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

fn truncate(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r'], " ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut out: String = one_line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

async fn list(settings: &Settings, filter: Filter, json: bool) -> anyhow::Result<ExitCode> {
    let selection = Selection::new(&[], filter).map_err(anyhow::Error::msg)?;
    let mut reader = DlqReader::open(settings, "list").await?;
    let read = reader.read_all(None).await;
    let queued = reader.queued();
    // Whatever happened, everything goes back before we print.
    reader.close().await;
    let infos: Vec<DeadLetterInfo> = read?.into_iter().map(|h| h.info).filter(|info| selection.matches(info)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(ExitCode::SUCCESS);
    }
    if infos.is_empty() {
        println!("No matching dead letters ({queued} in {}).", DEAD_LETTER_QUEUE.name);
        return Ok(ExitCode::SUCCESS);
    }
    let id_width = infos.iter().map(|i| i.id.chars().count()).max().unwrap_or(2).max(2);
    let queue_width = infos.iter().map(|i| i.original_queue.as_deref().unwrap_or("?").len()).max().unwrap_or(5).max(5);
    let type_width = infos.iter().map(|i| i.error_type.len()).max().unwrap_or(10).max(10);
    println!(
        "{:<id_width$}  {:<queue_width$}  {:<type_width$}  {:>7}  {:>7}  {:<8}  ERROR",
        "ID", "QUEUE", "ERROR TYPE", "AGE", "RETRIES", "SHAPE"
    );
    for info in &infos {
        let shape = match info.shape {
            Shape::Envelope => "envelope",
            Shape::XDeath => "x-death",
            Shape::Unknown => "unknown",
        };
        println!(
            "{:<id_width$}  {:<queue_width$}  {:<type_width$}  {:>7}  {:>7}  {:<8}  {}",
            info.id,
            info.original_queue.as_deref().unwrap_or("?"),
            info.error_type,
            age(info.dead_lettered_at),
            info.retry_count.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            shape,
            truncate(&info.error_message, 80)
        );
    }
    println!("{} of {queued} dead letter(s) shown.", infos.len());
    Ok(ExitCode::SUCCESS)
}

async fn show(settings: &Settings, id: &str) -> anyhow::Result<ExitCode> {
    let mut reader = DlqReader::open(settings, "show").await?;
    let mut found = None;
    let mut result = Ok(());
    loop {
        match reader.next().await {
            Ok(Some(held)) if held.info.id == id => {
                found = Some(full_json(&held.info, &held.delivery.properties, &held.delivery.data));
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    reader.close().await;
    result?;
    match found {
        Some(value) => {
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("No dead letter with id {id} in {}.", DEAD_LETTER_QUEUE.name);
            Ok(ExitCode::from(1))
        }
    }
}

/// What a replay did.
#[derive(Debug, Default)]
struct ReplayReport {
    replayed: BTreeMap<&'static str, u64>,
    not_replayable: Vec<(String, String)>,
    seen_ids: HashSet<String>,
    failure: Option<String>,
}

async fn replay(
    settings: &Settings,
    selection: Selection,
    ids: &[String],
    rate: Option<f64>,
) -> anyhow::Result<ExitCode> {
    let mut reader = DlqReader::open(settings, "replay").await?;
    let publisher = match Publisher::open(reader.connection(), None).await {
        Ok(p) => p,
        Err(e) => {
            reader.close().await;
            return Err(DlqError::Amqp(e).into());
        }
    };
    let pace = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let mut report = ReplayReport::default();
    // Dead letters not selected (or not replayable) stay unacked until the end: returning them
    // one by one would put them back at the head of the queue, where the next basic.get would
    // find them again.
    let mut kept: Vec<Held> = Vec::new();
    loop {
        let held = match reader.next().await {
            Ok(Some(held)) => held,
            Ok(None) => break,
            Err(e) => {
                report.failure = Some(e.to_string());
                break;
            }
        };
        if !selection.matches(&held.info) {
            kept.push(held);
            continue;
        }
        report.seen_ids.insert(held.info.id.clone());
        let started = Instant::now();
        let plan = match plan_replay(&held.info, &held.delivery.properties, &held.delivery.data) {
            Ok(plan) => plan,
            Err(reason) => {
                warn!(dead_letter_id = %held.info.id, %reason, "Cannot replay; leaving it in the queue.");
                report.not_replayable.push((held.info.id.clone(), reason));
                kept.push(held);
                continue;
            }
        };
        let Route { exchange, routing_key } = plan.route;
        if let Err(e) = publisher.send_raw(exchange, routing_key, &plan.body, plan.properties).await {
            // Not confirmed, so not acked: the dead letter stays. A broker that refuses one
            // publish will refuse the next, so stop here.
            report.failure = Some(format!("republishing {} failed: {e}", held.info.id));
            kept.push(held);
            break;
        }
        // The copy is safe in the original queue; only now may the dead letter go. Dying right
        // here replays it once more next time (a duplicate), never zero times.
        if let Err(e) = held.delivery.acker.ack(BasicAckOptions::default()).await {
            report.failure = Some(format!(
                "{} was replayed but could not be removed ({e}); it stays and will be replayed again",
                held.info.id
            ));
            break;
        }
        info!(
            dead_letter_id = %held.info.id, original_queue = plan.queue.name, exchange, routing_key,
            "Replayed dead letter."
        );
        *report.replayed.entry(plan.queue.name).or_default() += 1;
        if let Some(pace) = pace {
            tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
        }
    }
    let queued = reader.queued();
    reader.close().await;
    drop(kept);

    let total: u64 = report.replayed.values().sum();
    let per_queue: Vec<String> = report.replayed.iter().map(|(q, n)| format!("{n} to {q}")).collect();
    if total == 0 {
        println!("Replayed nothing ({queued} dead letter(s) examined).");
    } else {
        println!("Replayed {total} dead letter(s): {}.", per_queue.join(", "));
    }
    let missing: Vec<&String> = ids.iter().filter(|id| !report.seen_ids.contains(*id)).collect();
    for id in &missing {
        println!("Not found: {id}.");
    }
    for (id, reason) in &report.not_replayable {
        println!("Kept {id}: {reason}.");
    }
    if let Some(failure) = &report.failure {
        println!("Stopped: {failure}. Whatever was not replayed is still in {}.", DEAD_LETTER_QUEUE.name);
    }
    let clean = report.failure.is_none() && report.not_replayable.is_empty() && missing.is_empty();
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Asks on the terminal; anything but y/yes (including end of input) is a no.
async fn confirm(question: String) -> bool {
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        print!("{question} [y/N] ");
        let _ = std::io::stdout().flush();
        let mut answer = String::new();
        match std::io::stdin().read_line(&mut answer) {
            Ok(n) if n > 0 => matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
            _ => false,
        }
    })
    .await
    .unwrap_or(false)
}

async fn purge(settings: &Settings, selection: Selection, yes: bool) -> anyhow::Result<ExitCode> {
    let mut reader = DlqReader::open(settings, "purge").await?;
    let read = reader.read_all(None).await;
    let held = match read {
        Ok(held) => held,
        Err(e) => {
            reader.close().await;
            return Err(e.into());
        }
    };
    let (chosen, _kept): (Vec<Held>, Vec<Held>) = held.into_iter().partition(|h| selection.matches(&h.info));
    if chosen.is_empty() {
        reader.close().await;
        println!("No matching dead letters; nothing purged.");
        return Ok(ExitCode::SUCCESS);
    }
    let mut by_kind: BTreeMap<(String, String), u64> = BTreeMap::new();
    for h in &chosen {
        let queue = h.info.original_queue.clone().unwrap_or_else(|| "?".to_owned());
        *by_kind.entry((queue, h.info.error_type.clone())).or_default() += 1;
    }
    let summary: Vec<String> = by_kind.iter().map(|((q, t), n)| format!("{n} {t} from {q}")).collect();
    // The messages stay unacked (held by us) while the operator thinks: exactly these are
    // deleted, never one that arrived after the question was asked.
    if !yes && !confirm(format!("Delete {} dead letter(s) for good ({})?", chosen.len(), summary.join(", "))).await {
        reader.close().await;
        println!("Nothing purged.");
        return Ok(ExitCode::from(1));
    }
    let mut purged = 0u64;
    let mut failure = None;
    for h in &chosen {
        match h.delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => purged += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    reader.close().await;
    info!(purged, "Purged dead letters.");
    match failure {
        None => {
            println!("Purged {purged} dead letter(s).");
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            println!("Purged {purged} of {} dead letter(s); stopped: {e}.", chosen.len());
            Ok(ExitCode::from(1))
        }
    }
}

/// Dead letters grouped by original queue and error type, for `mailroom status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetterSummary {
    /// Messages ready in the queue.
    pub total: u64,
    /// How many were read to count them (at most the limit).
    pub examined: u64,
    /// `(original queue, error type) → count`, sorted.
    pub by_error_type: Vec<DeadLetterCount>,
}

/// One group of [`DeadLetterSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterCount {
    /// Queue the messages failed in (`?` when unknown).
    pub original_queue: String,
    /// Error type.
    pub error_type: String,
    /// How many.
    pub count: u64,
}

/// Reads up to `limit` dead letters, counts them by queue and error type, and returns them all.
pub async fn summarize(settings: &Settings, limit: usize) -> Result<DeadLetterSummary, DlqError> {
    let mut reader = DlqReader::open(settings, "status").await?;
    let read = reader.read_all(Some(limit)).await;
    let total = u64::from(reader.queued());
    reader.close().await;
    let held = read?;
    let mut groups: BTreeMap<(String, String), u64> = BTreeMap::new();
    for h in &held {
        let queue = h.info.original_queue.clone().unwrap_or_else(|| "?".to_owned());
        *groups.entry((queue, h.info.error_type.clone())).or_default() += 1;
    }
    Ok(DeadLetterSummary {
        total,
        examined: held.len() as u64,
        by_error_type: groups
            .into_iter()
            .map(|((original_queue, error_type), count)| DeadLetterCount { original_queue, error_type, count })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};
    use pipeline_core::messages::{DeadLetter, FailureInfo};
    use pipeline_core::topology::{DOCUMENTS_TO_INGEST, EMAILS_TO_CLASSIFY};

    fn failure(error_type: &str) -> FailureInfo {
        FailureInfo {
            error_message: "boom".into(),
            error_type: error_type.into(),
            retry_count: 2,
            stack_trace: String::new(),
            consumer_id: "doc-ingester-1".into(),
        }
    }

    fn x_death(queue: &str, reason: &str, time: u64) -> FieldTable {
        let mut entry = FieldTable::default();
        entry.insert("queue".into(), AMQPValue::LongString(LongString::from(queue)));
        entry.insert("reason".into(), AMQPValue::LongString(LongString::from(reason)));
        entry.insert("count".into(), AMQPValue::LongLongInt(1));
        entry.insert("time".into(), AMQPValue::Timestamp(time));
        let mut headers = FieldTable::default();
        headers.insert("x-death".into(), AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(entry)])));
        headers.insert("x-first-death-queue".into(), AMQPValue::LongString(LongString::from(queue)));
        headers.insert(RETRY_COUNT_HEADER.into(), AMQPValue::LongInt(3));
        headers.insert("x-custom".into(), AMQPValue::LongString(LongString::from("kept")));
        headers
    }

    #[test]
    fn durations_parse_in_operator_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("10m5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn envelopes_decode_and_replay_their_original_message() {
        let original = br#"{"message_id":"orig-1","priority":9,"email_id":"e"}"#;
        let envelope = DeadLetter::new(EMAILS_TO_CLASSIFY.name, original, failure("QuotaExceededError"));
        let body = serde_json::to_vec(&envelope).expect("encodes");
        let mut headers = FieldTable::default();
        headers.insert(ORIGINAL_QUEUE_HEADER.into(), AMQPValue::LongString(EMAILS_TO_CLASSIFY.name.into()));
        let props = BasicProperties::default()
            .with_message_id(envelope.message_id.as_str().into())
            .with_correlation_id("corr-1".into())
            .with_headers(headers);
        let info = decode(&props, &body, false);
        assert_eq!(info.id, envelope.message_id);
        assert_eq!(info.shape, Shape::Envelope);
        assert_eq!(info.original_queue.as_deref(), Some(EMAILS_TO_CLASSIFY.name));
        assert_eq!(info.error_type, "QuotaExceededError");
        assert_eq!(info.retry_count, Some(2));
        assert_eq!(info.original_message_id.as_deref(), Some("orig-1"));
        assert!(info.dead_lettered_at.is_some());

        let plan = plan_replay(&info, &props, &body).expect("replayable");
        assert_eq!(plan.route, EMAILS_TO_CLASSIFY.route());
        assert_eq!(serde_json::from_slice::<Value>(&plan.body).ok(), serde_json::from_slice::<Value>(original).ok());
        assert_eq!(plan.properties.message_id().as_ref().map(|s| s.as_str()), Some("orig-1"));
        assert_eq!(plan.properties.correlation_id().as_ref().map(|s| s.as_str()), Some("corr-1"));
        assert_eq!(*plan.properties.priority(), Some(9));
        assert_eq!(*plan.properties.delivery_mode(), Some(2));
        let headers = plan.properties.headers().clone().unwrap_or_default();
        assert!(!headers.contains_key(ORIGINAL_QUEUE_HEADER));
        assert!(!headers.contains_key(RETRY_COUNT_HEADER));
        assert_eq!(header_str(Some(&headers), REPLAYED_FROM_HEADER).as_deref(), Some(envelope.message_id.as_str()));
    }

    #[test]
    fn non_utf8_envelopes_replay_byte_for_byte() {
        let original = [0xff, 0xfe, 0x00, 0x41];
        let envelope = DeadLetter::new(DOCUMENTS_TO_INGEST.name, &original, failure("InvalidJson"));
        let body = serde_json::to_vec(&envelope).expect("encodes");
        let info = decode(&BasicProperties::default(), &body, false);
        let plan = plan_replay(&info, &BasicProperties::default(), &body).expect("replayable");
        assert_eq!(plan.body, original);
        assert_eq!(plan.route, DOCUMENTS_TO_INGEST.route());
    }

    #[test]
    fn broker_dead_letters_decode_from_x_death_and_replay_as_they_were() {
        let body = br#"{"message_id":"m-7","document_id":"d"}"#;
        let props = BasicProperties::default().with_message_id("m-7".into()).with_priority(4).with_headers(x_death(
            DOCUMENTS_TO_INGEST.name,
            "expired",
            1_700_000_000,
        ));
        let info = decode(&props, body, true);
        assert_eq!(info.id, "m-7");
        assert_eq!(info.shape, Shape::XDeath);
        assert_eq!(info.original_queue.as_deref(), Some(DOCUMENTS_TO_INGEST.name));
        assert_eq!(info.error_type, "expired");
        assert_eq!(info.dead_lettered_at, DateTime::from_timestamp(1_700_000_000, 0));
        assert_eq!((info.retry_count, info.death_count), (Some(3), Some(1)));
        assert!(info.redelivered);

        let plan = plan_replay(&info, &props, body).expect("replayable");
        assert_eq!(plan.body, body);
        assert_eq!(plan.route, DOCUMENTS_TO_INGEST.route());
        assert_eq!(*plan.properties.priority(), Some(4));
        let headers = plan.properties.headers().clone().unwrap_or_default();
        for gone in ["x-death", "x-first-death-queue", RETRY_COUNT_HEADER] {
            assert!(!headers.contains_key(gone), "{gone} must be removed");
        }
        assert!(headers.contains_key("x-custom"), "unrelated headers survive");

        // Without a message id the content names it, the same way every time.
        let anonymous = BasicProperties::default().with_headers(x_death(EMAILS_TO_CLASSIFY.name, "rejected", 1));
        let a = decode(&anonymous, b"not json", false);
        assert!(a.id.starts_with("sha256:") && a.id.len() == 23, "{}", a.id);
        assert_eq!(a.id, decode(&anonymous, b"not json", false).id);
        assert_ne!(a.id, decode(&anonymous, b"other", false).id);
    }

    #[test]
    fn unknown_messages_are_listed_but_not_replayed() {
        let info = decode(&BasicProperties::default(), b"hello", false);
        assert_eq!(info.shape, Shape::Unknown);
        assert!(plan_replay(&info, &BasicProperties::default(), b"hello").is_err());
        // An envelope naming a queue outside the topology is not replayed either.
        let envelope = DeadLetter::new("some.other.queue", b"{}", failure("X"));
        let body = serde_json::to_vec(&envelope).expect("encodes");
        let info = decode(&BasicProperties::default(), &body, false);
        assert!(
            plan_replay(&info, &BasicProperties::default(), &body)
                .expect_err("not replayable")
                .contains("not a work queue")
        );
    }

    #[test]
    fn selection_combines_ids_and_filters() {
        let now = Utc::now();
        let info = DeadLetterInfo {
            id: "a".into(),
            shape: Shape::Envelope,
            original_queue: Some(DOCUMENTS_TO_INGEST.name.into()),
            error_type: "FileMissing".into(),
            error_message: String::new(),
            retry_count: Some(0),
            death_count: None,
            dead_lettered_at: Some(now - chrono::Duration::minutes(20)),
            consumer_id: None,
            original_message_id: None,
            redelivered: false,
        };
        let select = |ids: &[&str], filter: Filter| {
            let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
            Selection::new(&ids, filter).expect("valid").matches(&info)
        };
        assert!(select(&[], Filter::default()));
        assert!(select(&["a", "b"], Filter::default()));
        assert!(!select(&["b"], Filter::default()));
        let queue = |q: &str| Filter { queue: Some(q.into()), ..Filter::default() };
        assert!(select(&[], queue(DOCUMENTS_TO_INGEST.name)));
        assert!(!select(&[], queue(EMAILS_TO_CLASSIFY.name)));
        assert!(select(&[], Filter { error_type: Some("FileMissing".into()), ..Filter::default() }));
        assert!(!select(&["a"], Filter { error_type: Some("Other".into()), ..Filter::default() }));
        let older = |mins: u64| Filter { older_than: Some(Duration::from_secs(mins * 60)), ..Filter::default() };
        assert!(select(&[], older(10)));
        assert!(!select(&[], older(30)));
        assert!(Selection::new(&[], queue("emails.typo")).is_err());
    }
}
