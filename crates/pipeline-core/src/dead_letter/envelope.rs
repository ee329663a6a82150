//! The envelope a worker wraps a message in when it gives up on it: [`DeadLetter::new`] and
//! [`DeadLetter::outgoing`] write it, [`as_envelope`] and [`original_bytes`] read it back
//! (leniently, so that envelopes of the same shape from other producers are read too).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ORIGINAL_QUEUE_HEADER;
use crate::messages::{new_message_id, now, serialize_timestamp};
use crate::publisher::Outgoing;
use crate::topology::Route;

/// `failure_info` of a dead letter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureInfo {
    /// Human-readable reason.
    pub error_message: String,
    /// Machine-readable kind (`QuotaExceededError`, `InvalidJson`, …).
    pub error_type: String,
    /// How many retries were spent before giving up.
    pub retry_count: u32,
    /// The error's cause chain (Rust errors carry no stack; the chain is what explains them).
    pub stack_trace: String,
    /// Which worker gave up.
    pub consumer_id: String,
}

/// Body of `dead_letter_queue`: the original message inside an envelope saying why it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Unique id of this envelope.
    pub message_id: String,
    /// When the message was dead-lettered.
    #[serde(serialize_with = "serialize_timestamp")]
    pub timestamp: DateTime<Utc>,
    /// The queue the original message was consumed from.
    pub original_queue: String,
    /// The original body: its JSON when it was JSON, else its text.
    pub original_message: Value,
    /// The original body, base64-encoded, when it was not valid UTF-8 or was a bare JSON string
    /// (which `original_message` gives back without its quotes), so replay loses nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_message_base64: Option<String>,
    /// Why it failed.
    pub failure_info: FailureInfo,
}

impl DeadLetter {
    /// Wraps a raw body: JSON bodies are embedded as JSON, anything else as text or base64.
    pub fn new(original_queue: &str, body: &[u8], failure_info: FailureInfo) -> Self {
        let (original_message, original_message_base64) = match serde_json::from_slice::<Value>(body) {
            // `"hi"` embeds as the string `hi`, which reads back as another body: the bytes go
            // along.
            Ok(value @ Value::String(_)) => (value, Some(BASE64.encode(body))),
            Ok(value) => (value, None),
            Err(_) => match std::str::from_utf8(body) {
                Ok(text) => (Value::String(text.to_owned()), None),
                Err(_) => (Value::Null, Some(BASE64.encode(body))),
            },
        };
        Self {
            message_id: new_message_id(),
            timestamp: now(),
            original_queue: original_queue.to_owned(),
            original_message,
            original_message_base64,
            failure_info,
        }
    }

    /// The original body's bytes, as they were consumed (JSON is re-serialised compactly); empty
    /// when `original_message_base64` is not base64, which [`DeadLetter::new`] never writes.
    pub fn original_body(&self) -> Vec<u8> {
        original_bytes(Some(&self.original_message), self.original_message_base64.as_deref()).unwrap_or_default()
    }

    /// The publish of this envelope to `route` (the failed queue's
    /// [`failure_route`](crate::topology::QueueSpec::failure_route)): its own message id, the
    /// failed message's correlation id, and the [`ORIGINAL_QUEUE_HEADER`] header.
    pub fn outgoing(&self, route: Route, correlation_id: Option<String>) -> Result<Outgoing, serde_json::Error> {
        let mut headers = FieldTable::default();
        headers.insert(ORIGINAL_QUEUE_HEADER.into(), AMQPValue::LongString(self.original_queue.as_str().into()));
        Ok(Outgoing {
            route,
            body: serde_json::to_vec(self)?,
            message_id: self.message_id.clone(),
            priority: None,
            correlation_id,
            headers,
        })
    }
}

/// A JSON body that is one of our envelopes (or another producer's of the same shape), read
/// leniently: only `original_queue`, `failure_info` and one of the two original-message fields are
/// required.
pub(super) fn as_envelope(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else { return None };
    let is_envelope = map.get("original_queue").is_some_and(Value::is_string)
        && map.get("failure_info").is_some_and(Value::is_object)
        && (map.contains_key("original_message") || map.contains_key("original_message_base64"));
    is_envelope.then_some(map)
}

/// The original body inside an envelope: byte for byte from `original_message_base64` when that
/// is given (`None` if it is not base64), else the text of a string `original_message`, else the
/// JSON of any other `original_message` (`null` included); `None` without either field.
pub(super) fn original_bytes(original_message: Option<&Value>, base64: Option<&str>) -> Option<Vec<u8>> {
    if let Some(encoded) = base64 {
        return BASE64.decode(encoded).ok();
    }
    match original_message? {
        Value::String(text) => Some(text.clone().into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}
