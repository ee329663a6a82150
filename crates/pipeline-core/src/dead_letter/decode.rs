//! Reading a message of `dead_letter_queue`, whatever its shape, into a [`DeadLetterInfo`]; and
//! the whole of it as JSON ([`full_json`]) for a detailed view.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, NaiveDateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::ORIGINAL_QUEUE_HEADER;
use super::envelope::as_envelope;
use crate::publisher::{RETRY_COUNT_HEADER, int_header};

/// How a dead letter got into the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Shape {
    /// Published by a worker inside the dead-letter envelope.
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
    /// `email_id` of the original message, when it was one of the pipeline's (the email an
    /// operator traces).
    pub email_id: Option<String>,
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
        AMQPValue::ByteArray(b) => json!(BASE64.encode(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

fn table_to_json(table: &FieldTable) -> Value {
    Value::Object(table.inner().iter().map(|(k, v)| (k.as_str().to_owned(), amqp_to_json(v))).collect())
}

/// A string header (long or short), if present.
pub(super) fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
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
/// (no offset: UTC by the schemas' convention, docs/ARCHITECTURE.md).
fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc()))
}

fn unix_time(seconds: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(seconds).ok()?, 0)
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
            email_id: map.get("original_message").and_then(|m| text(m, "email_id")),
            redelivered,
        };
    }
    if let Some(death) = last_death(headers) {
        let field = |name: &str| header_str(Some(death), name);
        let queue = field("queue").or_else(|| header_str(headers, "x-last-death-queue"));
        let reason = field("reason").unwrap_or_else(|| "unknown".to_owned());
        let count = table_u64(death, "count");
        let original = serde_json::from_slice::<Value>(body).ok();
        let original_field = |name: &str| original.as_ref().and_then(|v| v.get(name)?.as_str().map(str::to_owned));
        let original_message_id = original_field("message_id").or_else(|| amqp_id.clone());
        let email_id = original_field("email_id");
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
            email_id,
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
        email_id: None,
        redelivered,
    }
}

/// The whole of a dead letter as JSON, for a detailed view: the decoded summary, the AMQP
/// properties and headers, and the body (the envelope, or the original message of an x-death
/// letter).
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
            Err(_) => json!({ "base64": BASE64.encode(body) }),
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
