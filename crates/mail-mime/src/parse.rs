//! Parsing inbound mail into a [`ParsedEmail`]: addresses, threading ids, decoded subject and a
//! readable text body.
//!
//! MIME structure, transfer encodings and charsets are mail-parser's job (with its `full_encoding`
//! feature, so Shift_JIS, GB2312, Big5 and friends decode too). This module decides what the rest of
//! Mailroom sees: which body to use, how headers are keyed, and which inputs are not mail at all.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, Utc};
use mail_parser::{HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

use crate::html::html_to_text;

/// Default cap on the extracted body, in characters: 5 MiB worth, so any realistic support
/// message is kept whole while a multi-gigabyte paste cannot exhaust memory downstream.
pub const DEFAULT_MAX_BODY_CHARS: usize = 5 * 1024 * 1024;

/// Where [`ParsedEmail::body`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BodySource {
    /// A `text/plain` part, decoded.
    Plain,
    /// No usable `text/plain` part: the `text/html` part converted to text.
    HtmlConverted,
    /// The message has no readable text at all (attachments only, or empty parts).
    Empty,
}

/// The parts of an inbound message that Mailroom works with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedEmail {
    /// `Message-ID` without the angle brackets.
    pub message_id: Option<String>,
    /// First id of `In-Reply-To`, without angle brackets.
    pub in_reply_to: Option<String>,
    /// `References` ids in header order, without angle brackets.
    pub references: Vec<String>,
    /// Bare sender address from `From`, domain lowercased (the local part is case-sensitive by
    /// RFC 5321 and kept as written).
    pub from: String,
    /// Sender display name, if any.
    pub from_name: Option<String>,
    /// Bare `To` addresses, domains lowercased.
    pub to: Vec<String>,
    /// Subject with RFC 2047 encoded words decoded; empty if absent.
    pub subject: String,
    /// `Date`, if present and valid.
    pub date: Option<DateTime<Utc>>,
    /// Readable body text with `\n` line endings and no trailing whitespace.
    pub body: String,
    /// Which part the body came from.
    pub body_source: BodySource,
    /// `body` was cut at the configured character limit.
    pub body_truncated: bool,
    /// The message has at least one attachment (including inline images and, for bounces,
    /// the returned message and delivery report).
    pub has_attachments: bool,
    /// Every top-level header by canonical name (`Message-ID`, `List-Unsubscribe`,
    /// `X-Auto-Response-Suppress`…), unfolded, encoded words decoded; repeated headers (`Received`)
    /// are joined with `\n` in message order.
    pub headers: BTreeMap<String, String>,
    /// The value of every top-level `Authentication-Results` field (RFC 8601), topmost first,
    /// unfolded but otherwise as written: the format never uses encoded words, and decoding them
    /// (as [`headers`](Self::headers) does) would let one field's text pose as a second field.
    #[serde(default)]
    pub authentication_results: Vec<String>,
}

/// Why an input is not a usable email.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Zero bytes, or only whitespace.
    #[error("empty message: the input has no content")]
    Empty,
    /// The input is binary data, not an RFC 5322 message.
    #[error("not an email: {0}")]
    NotAnEmail(String),
    /// The input does not start with a header block.
    #[error("no headers: the input does not start with RFC 5322 header fields")]
    NoHeaders,
    /// No `From` header, or one without an address.
    #[error("no sender: {0}")]
    MissingFrom(String),
    /// The MIME structure is unusable.
    #[error("broken MIME structure: {0}")]
    BrokenMime(String),
    /// mail-parser panicked; the input is hostile or hit a parser bug.
    #[error("the MIME parser crashed on this input: {0}")]
    ParserPanic(String),
}

/// Parses a raw RFC 5322 message with the default body limit ([`DEFAULT_MAX_BODY_CHARS`]).
pub fn parse(raw: &[u8]) -> Result<ParsedEmail, ParseError> {
    parse_with_limit(raw, DEFAULT_MAX_BODY_CHARS)
}

/// Parses a raw RFC 5322 message, cutting the extracted body after `max_body_chars` characters
/// (and setting [`ParsedEmail::body_truncated`]).
pub fn parse_with_limit(raw: &[u8], max_body_chars: usize) -> Result<ParsedEmail, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    check_header_block(raw)?;
    // mail-parser is fuzzed and meant to be panic-free, but this runs on mail from strangers: a
    // panic must become an error for this one message, not take down the poller.
    catch_unwind(AssertUnwindSafe(|| extract(raw, max_body_chars))).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        tracing::warn!(panic = %what, "mail-parser panicked; rejecting message");
        Err(ParseError::ParserPanic(what))
    })
}

/// Rejects binary data before mail-parser turns it into garbage header names.
fn check_header_block(raw: &[u8]) -> Result<(), ParseError> {
    let header_end = find_blank_line(raw).unwrap_or(raw.len());
    let header_block = &raw[..header_end.min(64 * 1024)];
    if header_block.contains(&0) {
        return Err(ParseError::NotAnEmail("NUL bytes in the header block (binary data)".to_owned()));
    }
    let first_line =
        header_block.split(|b| *b == b'\n').find(|line| !line.iter().all(u8::is_ascii_whitespace)).unwrap_or_default();
    // An mbox envelope line ("From sender date") may precede the headers.
    if first_line.starts_with(b"From ") {
        return Ok(());
    }
    let valid_name = first_line.iter().position(|b| *b == b':').is_some_and(|colon| {
        // Whitespace between name and colon is obsolete syntax but still seen (`Subject : x`).
        let name = first_line[..colon].trim_ascii_end();
        !name.is_empty() && name.iter().all(|b| is_field_name_byte(*b))
    });
    if !valid_name {
        return Err(ParseError::NoHeaders);
    }
    Ok(())
}

fn find_blank_line(raw: &[u8]) -> Option<usize> {
    raw.windows(2).position(|w| w == b"\n\n").into_iter().chain(raw.windows(4).position(|w| w == b"\r\n\r\n")).min()
}

/// RFC 5322 `ftext`: printable US-ASCII except `:`.
fn is_field_name_byte(b: u8) -> bool {
    (33..=126).contains(&b) && b != b':'
}

fn extract(raw: &[u8], max_body_chars: usize) -> Result<ParsedEmail, ParseError> {
    let message = MessageParser::default().parse(raw).ok_or(ParseError::NoHeaders)?;
    let result = extract_fields(&message, max_body_chars);
    drop_flat(message);
    result
}

/// Drops a message without recursion.
///
/// mail-parser nests each `message/rfc822` part as a `Message` inside its parent, and the derived
/// `Drop` recurses once per level: a few thousand nested forwards (a few hundred KiB of hostile
/// input) overflow the stack, which aborts the process and cannot be caught. Detaching nested
/// messages onto a heap stack first keeps every drop shallow.
fn drop_flat(message: Message<'_>) {
    let mut pending = vec![message];
    while let Some(mut message) = pending.pop() {
        for part in &mut message.parts {
            if let PartType::Message(nested) = std::mem::take(&mut part.body) {
                pending.push(nested);
            }
        }
    }
}

fn extract_fields(message: &Message<'_>, max_body_chars: usize) -> Result<ParsedEmail, ParseError> {
    let root = message.root_part();
    if root.headers.is_empty() {
        return Err(ParseError::NoHeaders);
    }
    check_multipart(root)?;

    let from_addr = message.from().and_then(|a| a.first()).ok_or_else(|| {
        ParseError::MissingFrom(if message.header(HeaderName::From).is_some() {
            "the From header has no address".to_owned()
        } else {
            "the message has no From header".to_owned()
        })
    })?;
    let from = from_addr
        .address()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(normalize_address)
        .ok_or_else(|| ParseError::MissingFrom("the From header has no address".to_owned()))?;
    let from_name = from_addr.name().map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned);

    let to = message
        .all_to()
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(normalize_address)
        .collect();

    let date =
        message.date().filter(|d| d.is_valid()).and_then(|d| DateTime::<Utc>::from_timestamp(d.to_timestamp(), 0));

    let (body, body_source) = extract_body(message);
    let (body, body_truncated) = truncate_chars(body, max_body_chars);
    if body_truncated {
        tracing::debug!(max_body_chars, "email body truncated");
    }

    // Decoded text never carries NUL (an encoded word or QP `=00` can produce one): nothing
    // downstream — PostgreSQL text and jsonb among it — can store it, and it has no meaning.
    let body = strip_nul(body);
    let mut headers = collect_headers(message);
    for value in headers.values_mut() {
        *value = strip_nul(std::mem::take(value));
    }
    let authentication_results = raw_values(message, &HeaderName::AuthenticationResults);
    Ok(ParsedEmail {
        message_id: message.message_id().and_then(clean_id),
        in_reply_to: ids(message.in_reply_to()).into_iter().next(),
        references: ids(message.references()),
        from,
        from_name,
        to,
        subject: strip_nul(message.subject().map(str::trim).unwrap_or_default().to_owned()),
        date,
        body,
        body_source,
        body_truncated,
        has_attachments: message.attachment_count() > 0,
        headers,
        authentication_results,
    })
}

/// The values of the top-level fields called `name`, in message order, unfolded (line breaks
/// removed: a fold is a line break followed by whitespace, which stays) and not decoded.
fn raw_values(message: &Message<'_>, name: &HeaderName<'_>) -> Vec<String> {
    let raw = message.raw_message.as_ref();
    message
        .root_part()
        .headers
        .iter()
        .filter(|header| header.name == *name)
        .map(|header| {
            let bytes = raw.get(header.offset_start as usize..header.offset_end as usize).unwrap_or_default();
            let text: String =
                String::from_utf8_lossy(bytes).chars().filter(|c| !matches!(c, '\r' | '\n' | '\0')).collect();
            text.trim().to_owned()
        })
        .collect()
}

fn strip_nul(text: String) -> String {
    if text.contains('\0') { text.replace('\0', "") } else { text }
}

/// A multipart whose boundary never occurs leaves mail-parser with one opaque blob: the text is
/// still MIME-encoded parts we cannot trust, so the message is reported instead of misread.
fn check_multipart(root: &MessagePart<'_>) -> Result<(), ParseError> {
    let Some(content_type) = root.content_type() else { return Ok(()) };
    if !content_type.ctype().eq_ignore_ascii_case("multipart") {
        return Ok(());
    }
    let subtype = content_type.subtype().unwrap_or("?");
    let Some(boundary) = content_type.attribute("boundary") else {
        return Err(ParseError::BrokenMime(format!("multipart/{subtype} without a boundary parameter")));
    };
    match &root.body {
        PartType::Multipart(parts) if !parts.is_empty() => Ok(()),
        _ => Err(ParseError::BrokenMime(format!(
            "multipart/{subtype} declares boundary {boundary:?} but no part uses it"
        ))),
    }
}

/// Picks the body: all inline `text/plain` parts, else all `text/html` parts converted to text.
fn extract_body(message: &Message<'_>) -> (String, BodySource) {
    let plain = join_parts(message.text_body.iter().filter_map(|id| match &message.parts.get(*id as usize)?.body {
        PartType::Text(text) => Some(normalize_newlines(text)),
        _ => None,
    }));
    if !plain.is_empty() {
        return (plain, BodySource::Plain);
    }
    let html = join_parts(message.html_body.iter().filter_map(|id| match &message.parts.get(*id as usize)?.body {
        PartType::Html(html) => Some(html_to_text(html)),
        _ => None,
    }));
    if !html.is_empty() {
        return (html, BodySource::HtmlConverted);
    }
    (String::new(), BodySource::Empty)
}

/// Joins body parts (a client may split text around an inline image) with a blank line.
fn join_parts(parts: impl Iterator<Item = String>) -> String {
    let mut body = String::new();
    for part in parts {
        let part = part.trim_start_matches('\u{FEFF}').trim_end();
        if part.trim().is_empty() {
            continue;
        }
        if !body.is_empty() {
            body.push_str("\n\n");
        }
        body.push_str(part);
    }
    body
}

fn normalize_newlines(text: &str) -> String {
    if text.contains('\r') { text.replace("\r\n", "\n").replace('\r', "\n") } else { text.to_owned() }
}

fn truncate_chars(mut text: String, max_chars: usize) -> (String, bool) {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => {
            text.truncate(cut);
            (text, true)
        }
        None => (text, false),
    }
}

/// `Local@Example.COM` → `Local@example.com`: domains are case-insensitive, local parts are not.
fn normalize_address(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => address.to_owned(),
    }
}

/// Message ids from an id header, which mail-parser gives as text or a list.
fn ids(value: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match value {
        mail_parser::HeaderValue::Text(id) => clean_id(id).into_iter().collect(),
        mail_parser::HeaderValue::TextList(list) => list.iter().filter_map(|id| clean_id(id)).collect(),
        _ => Vec::new(),
    }
}

fn clean_id(id: &str) -> Option<String> {
    let id = id.trim().trim_start_matches('<').trim_end_matches('>').trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// All top-level headers, keyed by canonical name, values taken from the raw message so that
/// nothing mail-parser's typed parsers drop (`Return-Path: <>`, comments) is lost.
fn collect_headers(message: &Message<'_>) -> BTreeMap<String, String> {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let raw = message.raw_message.as_ref();
    for header in &message.root_part().headers {
        let name = canonical_name(&header.name);
        if name.is_empty() || !name.bytes().all(is_field_name_byte) {
            continue;
        }
        let value = raw
            .get(header.offset_start as usize..header.offset_end as usize)
            .map(decode_header_value)
            .unwrap_or_default();
        headers
            .entry(name)
            .and_modify(|existing| {
                existing.push('\n');
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    headers
}

/// Unfolds a raw header value and decodes RFC 2047 encoded words in it.
fn decode_header_value(raw: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(raw.len() + 1);
    bytes.extend_from_slice(raw);
    // mail-parser's unstructured parser stops at the newline that ends the field.
    bytes.push(b'\n');
    match mail_parser::parsers::MessageStream::new(&bytes).parse_unstructured() {
        mail_parser::HeaderValue::Text(text) => text.trim().to_owned(),
        _ => String::new(),
    }
}

/// mail-parser's spelling for registered headers (`Message-ID`, `List-ID`, `MIME-Version`);
/// others are title-cased per `-` segment so that `x-auto-response-suppress` and
/// `X-AUTO-RESPONSE-SUPPRESS` land under one key.
fn canonical_name(name: &HeaderName<'_>) -> String {
    if let HeaderName::Other(other) = name {
        return other.trim().split('-').map(title_case_segment).collect::<Vec<_>>().join("-");
    }
    name.as_str().to_owned()
}

fn title_case_segment(segment: &str) -> String {
    const ACRONYMS: &[&str] = &["ID", "MS", "DKIM", "ARC", "SPF", "MIME", "UID", "IP", "URL", "PGP"];
    if let Some(acronym) = ACRONYMS.iter().find(|a| a.eq_ignore_ascii_case(segment)) {
        return (*acronym).to_owned();
    }
    let mut chars = segment.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        let name = |s: &str| canonical_name(&HeaderName::Other(s.to_owned().into()));
        assert_eq!(name("x-auto-response-suppress"), "X-Auto-Response-Suppress");
        assert_eq!(name("DKIM-SIGNATURE"), "DKIM-Signature");
        assert_eq!(name("feedback-id"), "Feedback-ID");
        assert_eq!(canonical_name(&HeaderName::MessageId), "Message-ID");
    }

    #[test]
    fn addresses_and_ids() {
        assert_eq!(normalize_address("Anna.Schmidt@GMAIL.Com"), "Anna.Schmidt@gmail.com");
        assert_eq!(normalize_address("MAILER-DAEMON"), "MAILER-DAEMON");
        assert_eq!(clean_id(" <a@b> "), Some("a@b".to_owned()));
        assert_eq!(clean_id("<>"), None);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("ééé".to_owned(), 2), ("éé".to_owned(), true));
        assert_eq!(truncate_chars("ééé".to_owned(), 3), ("ééé".to_owned(), false));
        assert_eq!(truncate_chars("abc".to_owned(), 0), (String::new(), true));
    }

    #[test]
    fn header_block_checks() {
        assert_eq!(check_header_block(b"Hello there\n\nbody"), Err(ParseError::NoHeaders));
        assert_eq!(check_header_block(b"Dear team: hello\n\nbody"), Err(ParseError::NoHeaders));
        assert_eq!(check_header_block(b"Subject : hi\nFrom: a@b\n\nbody"), Ok(()));
        assert!(matches!(check_header_block(b"From: a@b\0\n\nbody"), Err(ParseError::NotAnEmail(_))));
        assert_eq!(check_header_block(b"\r\nFrom: a@b\r\n\r\nbody"), Ok(()));
        assert_eq!(check_header_block(b"From a@b Mon Jan 1 00:00:00 2024\nFrom: a@b\n\nx"), Ok(()));
    }

    #[test]
    fn authentication_results_are_kept_raw_topmost_first_and_unfolded() {
        let raw = b"Authentication-Results: mx.northwind.example;\r\n\tspf=pass smtp.mailfrom=a@customer.example;\r\n dmarc=pass header.from=customer.example\r\n\
            Received: from mail.customer.example by mx.northwind.example\r\n\
            authentication-results: =?utf-8?q?x=0Amx.northwind.example=3B_dmarc=3Dpass?=\r\n\
            From: Ana <a@customer.example>\r\nSubject: Hi\r\n\r\nHello\r\n";
        let parsed = parse(raw).expect("parses");
        assert_eq!(
            parsed.authentication_results,
            [
                "mx.northwind.example;\tspf=pass smtp.mailfrom=a@customer.example; dmarc=pass header.from=customer.example",
                // Not decoded: an encoded word cannot pose as a second field.
                "=?utf-8?q?x=0Amx.northwind.example=3B_dmarc=3Dpass?=",
            ]
        );
        assert!(parse(b"From: a@b.example\r\n\r\nx").expect("parses").authentication_results.is_empty());
    }
}
