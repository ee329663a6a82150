//! Gmail's resources as the client returns them. Ids and history ids are 64-bit numbers that
//! Gmail sends as JSON strings (JavaScript could not hold them as numbers); they stay strings,
//! and a number where a string was expected is accepted and turned into its decimal text so a
//! proxy or fake that re-encodes them does not break parsing. Lists Gmail omits when empty
//! deserialize as empty.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer};

/// A message as listed: ids, plus labels where Gmail includes them (history, send, modify).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    /// Message id.
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// Thread id.
    #[serde(deserialize_with = "id_string")]
    pub thread_id: String,
    /// Label ids (`INBOX`, `UNREAD`, `SENT`, `Label_12`…); empty where Gmail omits them.
    #[serde(default)]
    pub label_ids: Vec<String>,
}

/// One page of `users.messages.list`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagesPage {
    /// The messages, newest first; Gmail omits the field when there are none.
    #[serde(default)]
    pub messages: Vec<MessageRef>,
    /// Token for the next page, if any.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// Gmail's estimate of the total number of matches.
    #[serde(default, deserialize_with = "opt_count")]
    pub result_size_estimate: Option<u64>,
}

/// One page of `users.history.list`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// Changes after the start history id, oldest first; Gmail omits the field when there are
    /// none.
    #[serde(default)]
    pub history: Vec<HistoryRecord>,
    /// The mailbox's current history id: the next cursor once every page is handled.
    #[serde(deserialize_with = "id_string")]
    pub history_id: String,
    /// Token for the next page, if any.
    #[serde(default)]
    pub next_page_token: Option<String>,
}

impl HistoryPage {
    /// The messages added on this page, in order, each once (a message can appear in several
    /// records).
    pub fn added_messages(&self) -> Vec<&MessageRef> {
        let mut seen = std::collections::HashSet::new();
        self.history
            .iter()
            .flat_map(|record| &record.messages_added)
            .map(|added| &added.message)
            .filter(|message| seen.insert(message.id.as_str()))
            .collect()
    }
}

/// One history record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRecord {
    /// The record's history id.
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// Messages added by this change; omitted by Gmail for other kinds of change.
    #[serde(default)]
    pub messages_added: Vec<MessageAdded>,
}

/// An entry of `messagesAdded`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageAdded {
    /// The message, with its labels at the time.
    pub message: MessageRef,
}

/// A message fetched with `format=raw`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawMessage {
    /// Message id.
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// Thread id.
    #[serde(deserialize_with = "id_string")]
    pub thread_id: String,
    /// Label ids.
    #[serde(default)]
    pub label_ids: Vec<String>,
    /// Gmail's short plain-text excerpt.
    #[serde(default)]
    pub snippet: String,
    /// History id of the message's last change.
    #[serde(default, deserialize_with = "opt_id_string")]
    pub history_id: Option<String>,
    /// When Gmail received the message, in milliseconds since the epoch, as Gmail sends it.
    #[serde(default, deserialize_with = "opt_id_string")]
    pub internal_date: Option<String>,
    /// Gmail's size estimate in bytes.
    #[serde(default, deserialize_with = "opt_count")]
    pub size_estimate: Option<u64>,
    /// The RFC 822 message, decoded from Gmail's base64url.
    #[serde(deserialize_with = "base64url")]
    pub raw: Vec<u8>,
}

impl RawMessage {
    /// [`internal_date`](Self::internal_date) as a time.
    pub fn received_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_millis(self.internal_date.as_deref()?.trim().parse().ok()?)
    }
}

/// The mailbox's profile.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// The mailbox's address.
    pub email_address: String,
    /// Number of messages.
    #[serde(default, deserialize_with = "opt_count")]
    pub messages_total: Option<u64>,
    /// Number of threads.
    #[serde(default, deserialize_with = "opt_count")]
    pub threads_total: Option<u64>,
    /// The mailbox's current history id: where an incremental sync starts after a full one.
    #[serde(deserialize_with = "id_string")]
    pub history_id: String,
}

/// A label.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Label {
    /// Label id (`INBOX`, `Label_12`…), what message label lists hold.
    pub id: String,
    /// Display name; `/` nests labels.
    pub name: String,
    /// `system` or `user`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// A draft.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Draft {
    /// Draft id (distinct from its message's id).
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// The draft's message.
    pub message: MessageRef,
}

/// A draft fetched with `format=raw` (`users.drafts.get`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RawDraft {
    /// Draft id (it stays when a person edits the draft; its message's id changes).
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// The draft's message as it is now.
    pub message: RawMessage,
}

/// Moves a history cursor forward to `candidate` when it is numerically later, and says
/// whether it moved. History ids are compared as numbers, not text ("999" < "1000"); a
/// candidate that is not a number never replaces the cursor, and a cursor that is not one is
/// replaced by any valid candidate.
pub fn advance_history_cursor(cursor: &mut Option<String>, candidate: &str) -> bool {
    let Ok(new) = candidate.trim().parse::<u64>() else {
        return false;
    };
    let later = match cursor.as_deref().map(|current| current.trim().parse::<u64>()) {
        Some(Ok(current)) => new.cmp(&current) == Ordering::Greater,
        Some(Err(_)) | None => true,
    };
    if later {
        *cursor = Some(new.to_string());
    }
    later
}

/// A JSON string or number, as a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(u64),
}

impl From<StringOrNumber> for String {
    fn from(value: StringOrNumber) -> Self {
        match value {
            StringOrNumber::String(text) => text,
            StringOrNumber::Number(number) => number.to_string(),
        }
    }
}

fn id_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    StringOrNumber::deserialize(deserializer).map(String::from)
}

fn opt_id_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<StringOrNumber>::deserialize(deserializer)?.map(String::from))
}

/// Gmail's base64url, with or without `=` padding: the API documents only "base64url" and
/// both forms occur in practice, so rejecting either would drop real mail.
fn base64url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text = String::deserialize(deserializer)?;
    URL_SAFE_ANY_PADDING
        .decode(text.trim())
        .map_err(|e| serde::de::Error::custom(format!("`raw` is not base64url: {e}")))
}

/// A count Gmail sends as a number (int32) or, for 64-bit fields, a string; one that does not
/// parse is dropped rather than failing the whole response over a statistic.
fn opt_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<StringOrNumber>::deserialize(deserializer)? {
        Some(StringOrNumber::Number(number)) => Some(number),
        Some(StringOrNumber::String(text)) => text.trim().parse().ok(),
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_moves_forward_numerically() {
        let mut cursor = None;
        assert!(advance_history_cursor(&mut cursor, "999"));
        assert!(advance_history_cursor(&mut cursor, "1000"), "1000 > 999 although it sorts first as text");
        assert!(!advance_history_cursor(&mut cursor, "999"));
        assert!(!advance_history_cursor(&mut cursor, "1000"));
        assert!(!advance_history_cursor(&mut cursor, "not a number"));
        assert_eq!(cursor.as_deref(), Some("1000"));
        assert!(advance_history_cursor(&mut cursor, "18446744073709551615"));
        assert_eq!(cursor.as_deref(), Some("18446744073709551615"));
        let mut broken = Some("garbage".to_owned());
        assert!(advance_history_cursor(&mut broken, "5"));
        assert_eq!(broken.as_deref(), Some("5"));
    }

    #[test]
    fn numbers_accepted_where_strings_expected() {
        let page: HistoryPage = serde_json::from_str(r#"{"historyId": 42}"#).expect("parses");
        assert_eq!(page.history_id, "42");
        assert!(page.history.is_empty());
        let page: MessagesPage = serde_json::from_str(r#"{"resultSizeEstimate": "7"}"#).expect("parses");
        assert_eq!(page.result_size_estimate, Some(7));
        assert!(page.messages.is_empty());
    }
}
