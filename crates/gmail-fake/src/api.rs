//! The Gmail API under `/gmail/v1/users/{user}/`: the calls the project makes, each checked as
//! Gmail does — a valid access token (401 otherwise), one of the scopes the method accepts
//! (403 `insufficientPermissions` otherwise), and with `gmail.metadata` granted no search and
//! no raw body — before it is answered in Gmail's wire format: string ids and history ids, lists
//! omitted when empty, base64url bodies with or without padding, 404 for an expired history
//! cursor or an unknown message, thread or label.

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Value, json};

use crate::http::{Recorded, Reply};
use crate::mailbox::{Mailbox, NewMessage};
use crate::scope::{COMPOSE, FULL, LABELS, METADATA, MODIFY, READONLY, SEND};
use crate::{ADDRESS, API_PATH};

/// Decodes base64url as Gmail does: padding optional.
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A Gmail method: its RPC name in 403 details, and the scopes its reference page accepts.
struct Method {
    rpc: &'static str,
    accepted: &'static [&'static str],
}

const GET_PROFILE: Method = Method { rpc: "GetProfile", accepted: &[FULL, MODIFY, COMPOSE, READONLY, METADATA] };
const LIST_LABELS: Method = Method { rpc: "ListLabels", accepted: &[FULL, MODIFY, READONLY, LABELS, METADATA] };
const CREATE_LABEL: Method = Method { rpc: "CreateLabel", accepted: &[FULL, MODIFY, LABELS] };
const LIST_MESSAGES: Method = Method { rpc: "ListMessages", accepted: &[FULL, MODIFY, READONLY, METADATA] };
const GET_MESSAGE: Method = Method { rpc: "GetMessage", accepted: &[FULL, MODIFY, READONLY, METADATA] };
const MODIFY_MESSAGE: Method = Method { rpc: "ModifyMessage", accepted: &[FULL, MODIFY] };
const LIST_HISTORY: Method = Method { rpc: "ListHistory", accepted: &[FULL, MODIFY, READONLY, METADATA] };
const SEND_MESSAGE: Method = Method { rpc: "SendMessage", accepted: &[FULL, MODIFY, COMPOSE, SEND] };
const CREATE_DRAFT: Method = Method { rpc: "CreateDraft", accepted: &[FULL, MODIFY, COMPOSE] };
const GET_DRAFT: Method = Method { rpc: "GetDraft", accepted: &[FULL, MODIFY, COMPOSE, READONLY] };

/// Answers a request under [`API_PATH`]; `granted` are the scopes of its access token (`None`
/// when it has no valid one).
pub(crate) fn answer(mailbox: &mut Mailbox, granted: Option<&Vec<String>>, request: &Recorded) -> Reply {
    let Some(rest) = request.path.strip_prefix(API_PATH).and_then(|rest| rest.strip_prefix("/users/")) else {
        return Reply::text(
            404,
            "text/html; charset=UTF-8",
            "<html><title>Error 404 (Not Found)!!1</title></html>".to_owned(),
        );
    };
    let Some(granted) = granted else {
        return Reply::unauthenticated();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let Some((user, segments)) = segments.split_first() else {
        return Reply::not_found();
    };
    if *user != "me" && !user.eq_ignore_ascii_case(ADDRESS) {
        return Reply::google(
            403,
            "PERMISSION_DENIED",
            "forbidden",
            "global",
            &format!("Delegation denied for {user}"),
        );
    }
    let get = request.method == "GET";
    let post = request.method == "POST";
    let method = match segments {
        ["profile"] if get => GET_PROFILE,
        ["labels"] if get => LIST_LABELS,
        ["labels"] if post => CREATE_LABEL,
        ["messages"] if get => LIST_MESSAGES,
        ["messages", "send"] if post => SEND_MESSAGE,
        ["messages", _] if get => GET_MESSAGE,
        ["messages", _, "modify"] if post => MODIFY_MESSAGE,
        ["history"] if get => LIST_HISTORY,
        ["drafts"] if post => CREATE_DRAFT,
        ["drafts", _] if get => GET_DRAFT,
        _ => return Reply::not_found(),
    };
    if !method.accepted.iter().any(|scope| granted.iter().any(|g| g == scope)) {
        return Reply::insufficient_scope(&format!("caribou.api.proto.MailboxService.{}", method.rpc), method.accepted);
    }
    // Gmail applies gmail.metadata's limits whenever it was granted, even beside broader scopes.
    let metadata = granted.iter().any(|g| g == METADATA);
    if metadata && method.rpc == "ListMessages" && request.param("q").is_some() {
        return Reply::metadata_forbidden("Metadata scope does not support 'q' parameter");
    }
    if metadata && method.rpc == "GetMessage" && matches!(request.param("format"), Some("raw" | "full") | None) {
        let format = request.param("format").unwrap_or("full").to_ascii_uppercase();
        return Reply::metadata_forbidden(&format!("Metadata scope doesn't allow format {format}"));
    }
    match segments {
        ["profile"] => Reply::json(
            200,
            json!({
                "emailAddress": ADDRESS,
                "messagesTotal": mailbox.messages.len(),
                "threadsTotal": mailbox.messages.iter().map(|m| &m.thread_id).collect::<HashSet<_>>().len(),
                "historyId": mailbox.history_id.to_string(),
            }),
        ),
        ["labels"] if get => {
            let labels: Vec<Value> =
                mailbox.labels.iter().map(|l| json!({"id": l.id, "name": l.name, "type": l.kind})).collect();
            Reply::json(200, json!({ "labels": labels }))
        }
        ["labels"] => create_label(mailbox, &request.json()),
        ["messages"] => list_messages(mailbox, request),
        ["messages", "send"] => match store_outgoing(mailbox, &request.json(), "SENT") {
            Ok(m) => Reply::json(200, json!({"id": m.id, "threadId": m.thread_id, "labelIds": m.label_ids})),
            Err(reply) => reply,
        },
        ["messages", id] => get_message(mailbox, id, request),
        ["messages", id, "modify"] => modify(mailbox, id, &request.json()),
        ["history"] => list_history(mailbox, request),
        ["drafts", id] => get_draft(mailbox, id, request),
        _ => create_draft(mailbox, &request.json()),
    }
}

fn create_label(mailbox: &mut Mailbox, body: &Value) -> Reply {
    let Some(name) = body["name"].as_str().filter(|name| !name.trim().is_empty()) else {
        return Reply::invalid_argument("Invalid label name");
    };
    if mailbox.label_id(name).is_some() {
        return Reply::google(409, "ABORTED", "duplicate", "global", "Label name exists or conflicts");
    }
    let id = format!("Label_{}", 40 + mailbox.labels.len());
    mailbox.labels.push(crate::FakeLabel { id: id.clone(), name: name.to_owned(), kind: "user" });
    Reply::json(
        200,
        json!({
            "id": id,
            "name": name,
            "messageListVisibility": body["messageListVisibility"],
            "labelListVisibility": body["labelListVisibility"],
            "type": "user",
        }),
    )
}

fn get_message(mailbox: &Mailbox, id: &str, request: &Recorded) -> Reply {
    if !id.chars().all(|c| c.is_ascii_hexdigit()) {
        return Reply::invalid_argument("Invalid id value");
    }
    let Some(message) = mailbox.find(id) else {
        return Reply::not_found();
    };
    if request.param("format") != Some("raw") {
        return Reply::invalid_argument("this fake serves format=raw only");
    }
    Reply::json(200, raw_message(message))
}

/// A message resource in `format=raw`.
fn raw_message(message: &crate::FakeMessage) -> Value {
    let raw = if message.padded { URL_SAFE.encode(&message.raw) } else { URL_SAFE_NO_PAD.encode(&message.raw) };
    let text = String::from_utf8_lossy(&message.raw);
    let body = text.split_once("\r\n\r\n").map_or(text.as_ref(), |(_, body)| body);
    let snippet: String = body.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(100).collect();
    json!({
        "id": message.id,
        "threadId": message.thread_id,
        "labelIds": message.label_ids,
        "snippet": snippet,
        "historyId": message.history_id.to_string(),
        "internalDate": message.internal_date_ms.to_string(),
        "sizeEstimate": message.raw.len(),
        "raw": raw,
    })
}

/// `users.drafts.get`: the draft with its message; 404 for a draft that was sent or deleted.
fn get_draft(mailbox: &Mailbox, id: &str, request: &Recorded) -> Reply {
    let Some((_, message_id)) = mailbox.drafts.iter().find(|(draft, _)| draft == id) else {
        return Reply::not_found();
    };
    let Some(message) = mailbox.find(message_id) else {
        return Reply::not_found();
    };
    if request.param("format") != Some("raw") {
        return Reply::invalid_argument("this fake serves format=raw only");
    }
    Reply::json(200, json!({ "id": id, "message": raw_message(message) }))
}

fn list_messages(mailbox: &Mailbox, request: &Recorded) -> Reply {
    let include = request.param("includeSpamTrash") == Some("true");
    let matching = mailbox.search(request.param("q").unwrap_or_default(), include);
    let (offset, size) = match page(request) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(size)
        .map(|message| json!({"id": message.id, "threadId": message.thread_id}))
        .collect();
    let mut body = json!({ "resultSizeEstimate": matching.len() });
    // Gmail omits `messages` altogether when there are none.
    if !page.is_empty() {
        body["messages"] = Value::Array(page);
    }
    if offset + size < matching.len() {
        body["nextPageToken"] = Value::String((offset + size).to_string());
    }
    Reply::json(200, body)
}

fn list_history(mailbox: &Mailbox, request: &Recorded) -> Reply {
    let Some(start) = request.param("startHistoryId") else {
        return Reply::invalid_argument("Missing required field: startHistoryId");
    };
    let Ok(start) = start.parse::<u64>() else {
        return Reply::invalid_argument("Invalid startHistoryId");
    };
    if start < mailbox.oldest_history_id {
        return Reply::not_found();
    }
    if request.param("historyTypes") != Some("messageAdded") {
        return Reply::invalid_argument("this fake records messageAdded only");
    }
    let label = request.param("labelId");
    let records: Vec<Value> = mailbox
        .added
        .iter()
        .filter(|added| added.history_id > start && label.is_none_or(|label| added.labels.iter().any(|l| l == label)))
        .filter_map(|added| {
            let thread_id = &mailbox.find(&added.message_id)?.thread_id;
            Some(json!({
                "id": added.history_id.to_string(),
                "messages": [{"id": added.message_id, "threadId": thread_id}],
                "messagesAdded": [{"message": {"id": added.message_id, "threadId": thread_id, "labelIds": added.labels}}],
            }))
        })
        .collect();
    let (offset, size) = match page(request) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    let page: Vec<Value> = records.iter().skip(offset).take(size).cloned().collect();
    let mut body = json!({ "historyId": mailbox.history_id.to_string() });
    // Gmail omits `history` altogether when nothing changed.
    if !page.is_empty() {
        body["history"] = Value::Array(page);
    }
    if offset + size < records.len() {
        body["nextPageToken"] = Value::String((offset + size).to_string());
    }
    Reply::json(200, body)
}

/// (offset, page size) from `pageToken` (an offset here; Gmail's tokens are opaque) and
/// `maxResults`. Offsets shift when labelling takes messages out of a query, so a client that
/// labelled between pages would skip mail here, as it could at Gmail.
fn page(request: &Recorded) -> Result<(usize, usize), Reply> {
    let offset = match request.param("pageToken") {
        Some(token) => token.parse().map_err(|_| Reply::invalid_argument("Invalid pageToken"))?,
        None => 0,
    };
    let size = match request.param("maxResults") {
        Some(size) => size.parse::<usize>().map_err(|_| Reply::invalid_argument("Invalid maxResults"))?.min(500),
        None => 100,
    };
    Ok((offset, size))
}

fn modify(mailbox: &mut Mailbox, id: &str, body: &Value) -> Reply {
    let ids = |field: &str| -> Vec<String> {
        body[field]
            .as_array()
            .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let (add, remove) = (ids("addLabelIds"), ids("removeLabelIds"));
    if let Some(unknown) = add.iter().chain(&remove).find(|label| !mailbox.labels.iter().any(|l| &&l.id == label)) {
        return Reply::invalid_argument(&format!("Invalid label: {unknown}"));
    }
    if mailbox.find(id).is_none() {
        return Reply::not_found();
    }
    // Label changes are history too (labelAdded/labelRemoved): the history id moves.
    let history_id = mailbox.bump();
    let Some(message) = mailbox.find_mut(id) else {
        return Reply::not_found();
    };
    message.label_ids.retain(|label| !remove.contains(label));
    for label in add {
        if !message.label_ids.contains(&label) {
            message.label_ids.push(label);
        }
    }
    message.history_id = history_id;
    Reply::json(200, json!({"id": message.id, "threadId": message.thread_id, "labelIds": message.label_ids}))
}

fn create_draft(mailbox: &mut Mailbox, body: &Value) -> Reply {
    match store_outgoing(mailbox, &body["message"], "DRAFT") {
        Ok(message) => {
            let draft_id = mailbox.new_draft(&message.id);
            Reply::json(
                200,
                json!({
                    "id": draft_id,
                    "message": {"id": message.id, "threadId": message.thread_id, "labelIds": message.label_ids},
                }),
            )
        }
        Err(reply) => reply,
    }
}

/// Stores a message from a `{"raw","threadId"}` resource, as send and drafts.create do; an
/// unknown thread is 404.
fn store_outgoing(mailbox: &mut Mailbox, message: &Value, label: &str) -> Result<crate::FakeMessage, Reply> {
    let raw = message["raw"].as_str().ok_or_else(|| {
        Reply::invalid_argument("'raw' RFC822 payload message string or uploading message via /upload/* URL required")
    })?;
    let raw = URL_SAFE_ANY_PADDING.decode(raw).map_err(|_| Reply::invalid_argument("Invalid value for ByteString"))?;
    let mut new = NewMessage::new(raw, &[label]);
    if let Some(thread_id) = message.get("threadId").and_then(Value::as_str) {
        if !mailbox.has_thread(thread_id) {
            return Err(Reply::not_found());
        }
        new = new.thread(thread_id);
    }
    Ok(mailbox.add(new))
}
