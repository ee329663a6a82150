//! Dead letters, both ways: what a worker publishes when it gives up on a message, and how any
//! message found in `dead_letter_queue` is read back and replayed.
//!
//! Two shapes of dead letter arrive in that queue, and both are decoded into one
//! [`DeadLetterInfo`]:
//! - **envelopes** ([`DeadLetter`]) that a worker published after giving up (docs/ARCHITECTURE.md):
//!   a JSON body with `original_queue`, `original_message` (or `original_message_base64`) and
//!   `failure_info`, plus the [`ORIGINAL_QUEUE_HEADER`] header. Their id is the envelope's
//!   `message_id`.
//! - **broker-dead-lettered** messages (TTL expiry, a reject without requeue): the body is the
//!   original message as it was, and the `x-death` header names the queue and the reason. Their
//!   id is the AMQP `message_id` property, or `sha256:<16 hex digits>` of the body without one.
//!
//! [`plan_replay`] works out the publish that sends a dead letter back to where it failed: the
//! original queue's exchange and routing key, the original body, and properties without the
//! headers that describe the failed attempt. Reading the queue and publishing are the caller's
//! (`mailroom dlq`, a console): nothing here talks to the broker.

mod decode;
mod envelope;
mod replay;
#[cfg(test)]
mod tests;

pub use decode::{DeadLetterInfo, Shape, decode, full_json};
pub use envelope::{DeadLetter, FailureInfo};
pub use replay::{NotReplayable, ReplayPlan, plan_replay, replay_properties};

/// Header an envelope carries besides `original_queue` in its body: the queue the message failed
/// in.
pub const ORIGINAL_QUEUE_HEADER: &str = "x-original-queue";
/// Header a replayed message carries: the id of the dead letter it came from (for tracing a
/// message through a replay; workers ignore it).
pub const REPLAYED_FROM_HEADER: &str = "x-mailroom-replayed-from";
