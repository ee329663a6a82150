//! Replaying a dead letter: the publish ([`ReplayPlan`]) that sends it back to the queue it
//! failed in, as a fresh start.

use std::collections::BTreeMap;

use chrono::Utc;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::Value;

use super::envelope::{as_envelope, original_bytes};
use super::{DeadLetterInfo, ORIGINAL_QUEUE_HEADER, REPLAYED_FROM_HEADER, Shape};
use crate::messages::MAX_PRIORITY;
use crate::publisher::RETRY_COUNT_HEADER;
use crate::topology::{QueueSpec, Route, WORK_QUEUES};

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

/// Why a dead letter cannot be replayed; it stays where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReplayable {
    /// Neither the envelope nor the broker's headers name the queue it failed in.
    #[error("the original queue is unknown")]
    UnknownQueue,
    /// The queue it names is not one the pipeline consumes.
    #[error("{0} is not a work queue of the topology")]
    NotAWorkQueue(String),
    /// Decoded as an envelope, yet its body no longer reads as one.
    #[error("the envelope does not decode")]
    EnvelopeUndecodable,
    /// The envelope has no original message, or an `original_message_base64` that is not base64.
    #[error("the envelope holds no original message")]
    NoOriginalMessage,
}

/// Properties for a message republished by an operator tool (replay): persistent JSON.
pub fn replay_properties(original: &BasicProperties) -> BasicProperties {
    original.clone().with_delivery_mode(2)
}

/// Headers that describe the failed attempt; a replay is a fresh start without them.
fn is_failure_header(name: &str) -> bool {
    name == RETRY_COUNT_HEADER
        || name == ORIGINAL_QUEUE_HEADER
        || name == "x-death"
        || name.starts_with("x-first-death-")
        || name.starts_with("x-last-death-")
}

/// Works out where and how a dead letter is replayed, from what [`decode`](fn@super::decode) made of
/// it and the message as it was read.
pub fn plan_replay(
    info: &DeadLetterInfo,
    properties: &BasicProperties,
    body: &[u8],
) -> Result<ReplayPlan, NotReplayable> {
    let Some(name) = info.original_queue.as_deref() else {
        return Err(NotReplayable::UnknownQueue);
    };
    let Some(queue) = WORK_QUEUES.iter().copied().find(|q| q.name == name) else {
        return Err(NotReplayable::NotAWorkQueue(name.to_owned()));
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
            let map = as_envelope(body).ok_or(NotReplayable::EnvelopeUndecodable)?;
            let original =
                original_bytes(map.get("original_message"), map.get("original_message_base64").and_then(Value::as_str))
                    .ok_or(NotReplayable::NoOriginalMessage)?;
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
    let properties = replay_properties(&base).with_headers(FieldTable::from(headers));
    Ok(ReplayPlan { queue, route, body, properties })
}
