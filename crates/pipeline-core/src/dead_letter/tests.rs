//! Encoding and decoding together: what a worker writes is what the readers read back.

use chrono::DateTime;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString};
use serde_json::Value;

use super::decode::header_str;
use super::*;
use crate::publisher::RETRY_COUNT_HEADER;
use crate::topology::{DOCUMENTS_TO_INGEST, EMAILS_TO_CLASSIFY};

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

/// The properties a worker publishes an envelope with (as the publisher sets them from
/// [`DeadLetter::outgoing`]).
fn published(envelope: &DeadLetter, correlation_id: &str) -> (BasicProperties, Vec<u8>) {
    let out = envelope.outgoing(EMAILS_TO_CLASSIFY.failure_route(), Some(correlation_id.to_owned())).expect("encodes");
    let props = BasicProperties::default()
        .with_message_id(out.message_id.as_str().into())
        .with_correlation_id(correlation_id.into())
        .with_headers(out.headers);
    (props, out.body)
}

#[test]
fn dead_letter_keeps_every_kind_of_body() {
    let info = FailureInfo {
        error_message: "bad".into(),
        error_type: "InvalidJson".into(),
        retry_count: 0,
        stack_trace: String::new(),
        consumer_id: "t".into(),
    };
    for body in [&b"{\"a\":1}"[..], b"not json", &[0xff, 0xfe, 0x00]] {
        let dl = DeadLetter::new("emails.to_classify", body, info.clone());
        let round: DeadLetter = serde_json::from_slice(&serde_json::to_vec(&dl).expect("encodes")).expect("decodes");
        assert_eq!(round.original_body(), body);
    }
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
            .to_string()
            .contains("not a work queue")
    );
}

/// What a worker publishes ([`DeadLetter::outgoing`]) is what [`decode`] reads: the header and
/// the body name the same queue, and the envelope's id is the AMQP message id.
#[test]
fn published_envelopes_decode_as_written() {
    let envelope = DeadLetter::new(EMAILS_TO_CLASSIFY.name, br#"{"message_id":"orig-2"}"#, failure("Boom"));
    let out = envelope.outgoing(EMAILS_TO_CLASSIFY.failure_route(), Some("corr-2".into())).expect("encodes");
    assert_eq!(out.route, EMAILS_TO_CLASSIFY.failure_route());
    assert_eq!(out.message_id, envelope.message_id);
    assert_eq!(out.correlation_id.as_deref(), Some("corr-2"));
    assert_eq!(header_str(Some(&out.headers), ORIGINAL_QUEUE_HEADER).as_deref(), Some(EMAILS_TO_CLASSIFY.name));
    let (props, body) = published(&envelope, "corr-2");
    let info = decode(&props, &body, false);
    assert_eq!((info.id.as_str(), info.shape), (envelope.message_id.as_str(), Shape::Envelope));
    assert_eq!(info.original_queue.as_deref(), Some(EMAILS_TO_CLASSIFY.name));
    assert_eq!(info.dead_lettered_at, Some(envelope.timestamp));
    assert_eq!(info.consumer_id.as_deref(), Some("doc-ingester-1"));
    assert_eq!(info.original_message_id.as_deref(), Some("orig-2"));
}

/// Drift fixed on the move: the encoder embeds a body of JSON `null` as `null`, and
/// [`DeadLetter::original_body`] gave `null` back, but the replay read it as "no original
/// message" and refused it.
#[test]
fn a_null_body_replays_as_null() {
    let envelope = DeadLetter::new(DOCUMENTS_TO_INGEST.name, b"null", failure("InvalidMessage"));
    assert_eq!(envelope.original_body(), b"null");
    let (props, body) = published(&envelope, "corr-3");
    let info = decode(&props, &body, false);
    let plan = plan_replay(&info, &props, &body).expect("replayable");
    assert_eq!(plan.body, b"null");
    assert_eq!(plan.route, DOCUMENTS_TO_INGEST.route());
}

/// Drift fixed on the move: a body that is a JSON string (`"hi"`, quotes included) was embedded
/// as the string it holds and read back without its quotes, so the replay sent another body.
/// `original_message` still holds the JSON string.
#[test]
fn a_json_string_body_keeps_its_quotes() {
    let original = br#""hi""#;
    let envelope = DeadLetter::new(EMAILS_TO_CLASSIFY.name, original, failure("InvalidMessage"));
    assert_eq!(envelope.original_message, "hi");
    let round: DeadLetter = serde_json::from_slice(&serde_json::to_vec(&envelope).expect("encodes")).expect("decodes");
    assert_eq!(round.original_body(), original);
    let (props, body) = published(&envelope, "corr-4");
    let plan = plan_replay(&decode(&props, &body, false), &props, &body).expect("replayable");
    assert_eq!(plan.body, original);
}

#[test]
fn envelopes_without_a_readable_original_are_kept() {
    let mut envelope = DeadLetter::new(DOCUMENTS_TO_INGEST.name, &[0xff], failure("InvalidJson"));
    envelope.original_message_base64 = Some("not base64!".into());
    let body = serde_json::to_vec(&envelope).expect("encodes");
    let info = decode(&BasicProperties::default(), &body, false);
    assert_eq!(info.shape, Shape::Envelope);
    assert_eq!(
        plan_replay(&info, &BasicProperties::default(), &body).expect_err("not replayable"),
        NotReplayable::NoOriginalMessage
    );
}
