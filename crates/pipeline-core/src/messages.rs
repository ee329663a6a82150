//! The JSON bodies that travel on each queue, field for field as docs/ARCHITECTURE.md gives their
//! schemas. Unknown fields are accepted and ignored so that newer producers never break older
//! consumers; a missing required field or a wrong type is a decode error, which the consumer
//! runtime treats as a permanent failure.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer, de::DeserializeOwned};
use uuid::Uuid;

use crate::topology::{self, Route};

/// Priority used when a producer does not say (the middle of the 1–10 range).
pub const DEFAULT_PRIORITY: u8 = 5;
/// Highest priority `emails.to_classify` honours (its `x-max-priority`).
pub const MAX_PRIORITY: u8 = 10;

/// A message body that belongs to one queue of the pipeline.
pub trait PipelineMessage: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Where this message is published: exchange and routing key.
    const ROUTE: Route;

    /// The body's `message_id`, also used as the AMQP `message_id` property.
    fn message_id(&self) -> &str;

    /// AMQP priority for the publish, for queues that have one.
    fn priority(&self) -> Option<u8> {
        None
    }
}

/// A fresh message id (UUID v4), as every producer makes them (docs/ARCHITECTURE.md).
pub fn new_message_id() -> String {
    Uuid::new_v4().to_string()
}

/// Now, at the millisecond precision timestamps are written with (so a message survives a
/// round trip through JSON unchanged).
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

/// Timestamps are written as RFC 3339 in UTC with millisecond precision and a `Z` suffix.
/// The canonical form of a support mailbox's address: trimmed and lower-cased. Mailbox addresses
/// are matched case-insensitively everywhere (`Support@x` and `support@x` are one agent, with one
/// set of documents, one quota and one ledger), so every boundary where an address enters —
/// message bodies, upload requests, settings — stores and compares this form only.
pub fn agent_address(address: &str) -> String {
    address.trim().to_lowercase()
}

/// Deserialises an `agent_email` field into its [`agent_address`] form.
pub fn deserialize_agent_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|a| agent_address(&a))
}

pub(crate) fn serialize_timestamp<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// `metadata` of an `emails.to_classify` message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EmailMetadata {
    /// When the mailbox received the message (RFC 3339, or Gmail's epoch-milliseconds string).
    #[serde(default)]
    pub received_date: Option<String>,
    /// Whether the email carried attachments.
    #[serde(default)]
    pub has_attachments: bool,
}

/// Body of `emails.to_classify`: a new email waiting for classification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailToClassify {
    /// Unique id of this message (UUID v4).
    pub message_id: String,
    /// When the message was produced.
    #[serde(serialize_with = "serialize_timestamp")]
    pub timestamp: DateTime<Utc>,
    /// The mailbox's id for the email (Gmail id, Maildir unique name, IMAP UID…).
    pub email_id: String,
    /// The mailbox's conversation id, when it has one.
    #[serde(default)]
    pub thread_id: Option<String>,
    /// Sender address.
    pub from: String,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// Original headers by name.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Mailbox labels (Gmail) or flags.
    #[serde(default)]
    pub labels: Vec<String>,
    /// The support mailbox the email was sent to.
    #[serde(deserialize_with = "deserialize_agent_address")]
    pub agent_email: String,
    /// Priority 1–10; higher is more urgent.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Received date and attachment flag.
    #[serde(default)]
    pub metadata: EmailMetadata,
}

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

/// The fields of an incoming email, before it gets a message id.
#[derive(Debug, Clone, Default)]
pub struct IncomingEmail {
    /// The mailbox's id for the email.
    pub email_id: String,
    /// The mailbox's conversation id.
    pub thread_id: Option<String>,
    /// Sender address.
    pub from: String,
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// Original headers by name.
    pub headers: BTreeMap<String, String>,
    /// Mailbox labels.
    pub labels: Vec<String>,
    /// The support mailbox.
    pub agent_email: String,
    /// Received date and attachment flag.
    pub metadata: EmailMetadata,
}

impl EmailToClassify {
    /// An original header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Builds the message with a fresh id and timestamp; the priority is clamped to 1–10.
    pub fn new(email: IncomingEmail, priority: u8) -> Self {
        Self {
            message_id: new_message_id(),
            timestamp: now(),
            email_id: email.email_id,
            thread_id: email.thread_id,
            from: email.from,
            to: email.to,
            subject: email.subject,
            body: email.body,
            headers: email.headers,
            labels: email.labels,
            agent_email: email.agent_email,
            priority: priority.clamp(1, MAX_PRIORITY),
            metadata: email.metadata,
        }
    }
}

impl PipelineMessage for EmailToClassify {
    const ROUTE: Route = topology::CLASSIFY;

    fn message_id(&self) -> &str {
        &self.message_id
    }

    fn priority(&self) -> Option<u8> {
        Some(self.priority.clamp(1, MAX_PRIORITY))
    }
}

/// The classifier's verdict, carried in `emails.to_respond`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Whether the email is a customer-support inquiry.
    pub is_support_inquiry: bool,
    /// Category, e.g. `product_question`, `automated`.
    pub category: String,
    /// Confidence 0.0–1.0.
    pub confidence: f64,
    /// Which provider produced the classification (`gemini`, `local`, …).
    pub llm_provider: String,
    /// The confidence is below the mailbox's `classifier.auto_answer_min_confidence`: the reply
    /// must be a draft for a person, never sent automatically. Absent in older messages, which
    /// predate the threshold and were answered as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub needs_review: bool,
}

/// Body of `emails.to_respond`: a support inquiry waiting for a grounded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailToRespond {
    /// Unique id of this message.
    pub message_id: String,
    /// When the message was produced.
    #[serde(serialize_with = "serialize_timestamp")]
    pub timestamp: DateTime<Utc>,
    /// `message_id` of the `emails.to_classify` message this came from.
    pub original_message_id: String,
    /// The mailbox's id for the email.
    pub email_id: String,
    /// The mailbox's conversation id.
    #[serde(default)]
    pub thread_id: Option<String>,
    /// Customer address.
    pub from: String,
    /// Support mailbox address the customer wrote to.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// The classifier's verdict.
    pub classification: Classification,
    /// The support mailbox whose documents answer the email.
    #[serde(deserialize_with = "deserialize_agent_address")]
    pub agent_email: String,
    /// Mailroom addition: the customer message's `Message-ID`, for the reply's `In-Reply-To`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// Mailroom addition: the customer message's `References`, for the reply's `References`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
}

impl EmailToRespond {
    /// Builds the message for a classified email, with a fresh id and timestamp.
    pub fn new(source: &EmailToClassify, classification: Classification) -> Self {
        Self {
            message_id: new_message_id(),
            timestamp: now(),
            original_message_id: source.message_id.clone(),
            email_id: source.email_id.clone(),
            thread_id: source.thread_id.clone(),
            from: source.from.clone(),
            to: source.to.clone(),
            subject: source.subject.clone(),
            body: source.body.clone(),
            classification,
            agent_email: source.agent_email.clone(),
            in_reply_to: source.header("Message-ID").and_then(|v| split_message_ids(v).into_iter().next()),
            references: source.header("References").map(split_message_ids).unwrap_or_default(),
        }
    }
}

/// The message ids in a `Message-ID`/`References` header value (`<a@b> <c@d>`), without angle
/// brackets; a bare id without brackets is taken whole.
pub fn split_message_ids(value: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let Some(len) = rest[start..].find('>') else { break };
        let id = rest[start + 1..start + len].trim();
        if !id.is_empty() {
            ids.push(id.to_owned());
        }
        rest = &rest[start + len + 1..];
    }
    if ids.is_empty() {
        ids.extend(value.split_whitespace().filter(|v| v.contains('@')).map(str::to_owned));
    }
    ids
}

impl PipelineMessage for EmailToRespond {
    const ROUTE: Route = topology::RESPOND;

    fn message_id(&self) -> &str {
        &self.message_id
    }
}

/// One retrieved passage that grounded a reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextUsed {
    /// Document the passage came from (its file name).
    pub source: String,
    /// The passage text.
    pub chunk: String,
    /// Cosine similarity between the question and the passage.
    pub similarity_score: f64,
}

/// Body of `emails.to_send`: a drafted reply ready for delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailToSend {
    /// Unique id of this message.
    pub message_id: String,
    /// When the message was produced.
    #[serde(serialize_with = "serialize_timestamp")]
    pub timestamp: DateTime<Utc>,
    /// `message_id` of the `emails.to_respond` message this came from.
    pub original_message_id: String,
    /// The mailbox's id for the email being answered.
    pub email_id: String,
    /// The mailbox's conversation id.
    #[serde(default)]
    pub thread_id: Option<String>,
    /// Customer address the reply goes to.
    pub to: String,
    /// Support mailbox address replies should come back to.
    pub reply_to: String,
    /// Reply subject (`Re: …`).
    pub subject: String,
    /// The reply text.
    pub generated_response: String,
    /// Passages the reply was grounded on.
    #[serde(default)]
    pub context_used: Vec<ContextUsed>,
    /// The support mailbox sending the reply.
    #[serde(deserialize_with = "deserialize_agent_address")]
    pub agent_email: String,
    /// Mailroom addition: the generator could not ground an answer, so the sender must make a
    /// draft for a human instead of sending.
    #[serde(default)]
    pub escalate: bool,
    /// Mailroom addition: why it was escalated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_reason: Option<String>,
    /// Mailroom addition: `Message-ID` of the email being answered (the reply's `In-Reply-To`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
    /// Mailroom addition: `References` of the email being answered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// Mailroom addition: the customer's subject as written (`subject` is already `Re: …`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_subject: Option<String>,
}

/// `Re: <subject>`, without stacking prefixes (`Re: Re:`, `RE:`, `Aw:`, `Fwd:` stay single).
pub fn reply_subject(subject: &str) -> String {
    let mut rest = subject.trim();
    loop {
        let lower = rest.to_ascii_lowercase();
        let stripped = ["re:", "aw:", "sv:", "antw:", "re :"].iter().find(|p| lower.starts_with(*p));
        match stripped {
            Some(p) => rest = rest[p.len()..].trim_start(),
            None => break,
        }
    }
    if rest.is_empty() { "Re: your message".to_owned() } else { format!("Re: {rest}") }
}

impl PipelineMessage for EmailToSend {
    const ROUTE: Route = topology::SEND;

    fn message_id(&self) -> &str {
        &self.message_id
    }
}

/// `metadata` of a `documents.to_ingest` message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentMetadata {
    /// Where the upload came from (`web_dashboard`, `cli`, …).
    #[serde(default)]
    pub upload_source: Option<String>,
    /// MIME type detected at upload.
    #[serde(default)]
    pub content_type: Option<String>,
}

/// Body of `documents.to_ingest`: an uploaded document waiting to be extracted and embedded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentToIngest {
    /// Unique id of this message.
    pub message_id: String,
    /// When the message was produced.
    #[serde(serialize_with = "serialize_timestamp")]
    pub timestamp: DateTime<Utc>,
    /// The document's id.
    pub document_id: String,
    /// The user's file name (metadata only).
    pub filename: String,
    /// Where the stored upload lives.
    pub file_path: String,
    /// Size of the stored file.
    pub file_size_bytes: u64,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// The support mailbox the document belongs to.
    #[serde(deserialize_with = "deserialize_agent_address")]
    pub agent_email: String,
    /// Upload source and content type.
    pub metadata: DocumentMetadata,
}

impl PipelineMessage for DocumentToIngest {
    const ROUTE: Route = topology::INGEST;

    fn message_id(&self) -> &str {
        &self.message_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_seed_example_and_ignores_unknown_fields() {
        let body = r#"{
          "message_id": "uuid-v4", "timestamp": "2025-12-06T17:00:00Z",
          "email_id": "gmail-message-id", "thread_id": "gmail-thread-id",
          "from": "customer@example.com", "to": "support@company.com",
          "subject": "Product inquiry", "body": "email body text", "headers": {},
          "labels": ["INBOX", "UNREAD"], "agent_email": "support@company.com", "priority": 5,
          "metadata": {"received_date": "2025-12-06T16:00:00Z", "has_attachments": false},
          "added_by_a_newer_producer": {"x": 1}
        }"#;
        let msg: EmailToClassify = serde_json::from_str(body).expect("seed example decodes");
        assert_eq!(msg.from, "customer@example.com");
        assert_eq!(msg.labels, vec!["INBOX", "UNREAD"]);
        let json = serde_json::to_value(&msg).expect("encodes");
        assert_eq!(json["from"], "customer@example.com");
        assert_eq!(json["timestamp"], "2025-12-06T17:00:00.000Z");
        assert!(json.get("added_by_a_newer_producer").is_none());
    }

    #[test]
    fn python_isoformat_timestamps_decode() {
        let body = r#"{"message_id":"m","timestamp":"2025-12-06T17:00:00.123456Z",
            "original_message_id":"o","email_id":"e","thread_id":null,"to":"c@x","reply_to":"s@x",
            "subject":"Re: hi","generated_response":"hello","context_used":[
            {"source":"a.pdf","chunk":"text","similarity_score":0.89}],"agent_email":"s@x"}"#;
        let msg: EmailToSend = serde_json::from_str(body).expect("decodes");
        assert_eq!(msg.context_used[0].source, "a.pdf");
        assert_eq!(msg.thread_id, None);
    }

    #[test]
    fn missing_field_and_wrong_type_are_errors() {
        let missing = r#"{"message_id":"m","timestamp":"2025-12-06T17:00:00Z","email_id":"e"}"#;
        assert!(serde_json::from_str::<EmailToClassify>(missing).is_err());
        let wrong = r#"{"message_id":"m","timestamp":"2025-12-06T17:00:00Z","document_id":"d",
            "filename":"f","file_path":"p","file_size_bytes":"big","uploaded_by":"u",
            "agent_email":"a","metadata":{}}"#;
        assert!(serde_json::from_str::<DocumentToIngest>(wrong).is_err());
    }

    #[test]
    fn constructors_fill_id_timestamp_and_clamp_priority() {
        let email = IncomingEmail {
            email_id: "e1".into(),
            from: "c@example.com".into(),
            agent_email: "s@example.com".into(),
            ..Default::default()
        };
        let a = EmailToClassify::new(email.clone(), 42);
        let b = EmailToClassify::new(email, 0);
        assert_ne!(a.message_id, b.message_id);
        assert!(Uuid::parse_str(&a.message_id).is_ok());
        assert_eq!(a.priority, 10);
        assert_eq!(b.priority, 1);
        let respond = EmailToRespond::new(
            &a,
            Classification {
                is_support_inquiry: true,
                category: "product_question".into(),
                confidence: 0.9,
                llm_provider: "local".into(),
                needs_review: false,
            },
        );
        assert_eq!(respond.original_message_id, a.message_id);
        assert_eq!(respond.email_id, "e1");
    }

    #[test]
    fn reply_subjects_do_not_stack() {
        assert_eq!(reply_subject("Where is my order?"), "Re: Where is my order?");
        assert_eq!(reply_subject("Re: Re: RE: Where is my order?"), "Re: Where is my order?");
        assert_eq!(reply_subject("AW: Frage"), "Re: Frage");
        assert_eq!(reply_subject("  "), "Re: your message");
    }
}
