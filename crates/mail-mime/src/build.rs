//! Building the RFC 5322 auto-reply that the sender delivers.
//!
//! The reply threads under the customer's message (`In-Reply-To`, `References`), marks itself as
//! automatic (`Auto-Submitted: auto-replied`, RFC 3834, plus our own `X-Mailroom-Auto-Reply`) so
//! that other robots and our own classifier never answer it, and carries a UTF-8 text body in
//! quoted-printable, which survives any transport. Every header value that came from outside is
//! either validated (addresses, ids, extra headers: rejected when invalid) or sanitised (subject and
//! display names: line breaks and control characters become spaces), so no input can inject a
//! header or a MIME part.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::encode::{
    ENCODED_LINE_MAX, encode_quoted_printable, encode_words_fitting, fold_header, is_plain_header_text,
    unstructured_words,
};

/// What to reply, to whom, and in which thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplySpec {
    /// Agent (support mailbox) address, bare: `support@example.com`.
    pub from: String,
    /// Agent display name, e.g. `Example Support`.
    pub from_name: Option<String>,
    /// Customer address, bare.
    pub to: String,
    /// Subject of the message being answered; `Re: ` is added without stacking.
    pub subject: String,
    /// Reply text; any line ending style, sent as CRLF.
    pub body: String,
    /// `Message-ID` of the message being answered, with or without angle brackets.
    pub in_reply_to: Option<String>,
    /// `References` of the message being answered, with or without angle brackets.
    pub references: Vec<String>,
    /// Further headers (`Reply-To`, `X-…`); the headers this builder sets itself are refused.
    pub extra_headers: Vec<(String, String)>,
    /// The reply's own `Message-ID` (without angle brackets). `None` makes a fresh
    /// `uuid@agent-domain`; a stable id lets a sender find a reply it may already have
    /// delivered before a crash.
    pub message_id: Option<String>,
}

/// A built reply, ready for SMTP `DATA` or an API's raw-message upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuiltReply {
    /// The reply's `Message-ID` without angle brackets (`uuid@agent-domain`), to store for
    /// threading the customer's next answer.
    pub message_id: String,
    /// The whole message, CRLF line endings.
    pub raw: Vec<u8>,
}

/// Why a reply could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A `from`/`to` address is not a plain `local@domain`.
    #[error("invalid {field} address {value:?}: {reason}")]
    InvalidAddress {
        /// `from` or `to`.
        field: &'static str,
        /// The address as given (control characters escaped by `{:?}`).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An `in_reply_to` or `references` entry is not a usable message id.
    #[error("invalid message id {value:?} in {field}: {reason}")]
    InvalidMessageId {
        /// `in_reply_to` or `references`.
        field: &'static str,
        /// The id as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An extra header's name is not a valid field name.
    #[error("invalid extra header name {0:?}")]
    InvalidHeaderName(String),
    /// An extra header would replace one this builder controls.
    #[error("extra header {0:?} is set by the reply builder and cannot be overridden")]
    ReservedHeader(String),
    /// A header value contains CR, LF or NUL, which could start a new header or body.
    #[error("header {0:?} contains a line break or NUL (header injection)")]
    HeaderInjection(String),
    /// A header value cannot be folded into 998-character lines.
    #[error("header {0:?} has a word too long for a mail header line")]
    HeaderTooLong(String),
}

/// Headers the builder writes itself; extra headers may not repeat them.
const RESERVED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "to",
    "cc",
    "bcc",
    "subject",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "auto-submitted",
    "x-mailroom-auto-reply",
    "return-path",
];

/// Most `References` ids kept: the thread root plus the most recent ones, as RFC 5322 §3.6.4
/// allows trimming and some servers reject very long headers.
const MAX_REFERENCES: usize = 40;

/// Longest message id accepted, so a single id always fits in one header line.
const MAX_ID_LEN: usize = 900;

/// Builds the reply, dated now.
pub fn build_reply(spec: ReplySpec) -> Result<BuiltReply, BuildError> {
    build_reply_at(spec, Utc::now())
}

/// Builds the reply with an explicit `Date` (for tests and for re-sending a stored reply).
pub fn build_reply_at(spec: ReplySpec, date: DateTime<Utc>) -> Result<BuiltReply, BuildError> {
    let from = validate_address("from", &spec.from)?;
    let to = validate_address("to", &spec.to)?;
    let domain = from.rsplit_once('@').map_or(from.as_str(), |(_, d)| d).to_ascii_lowercase();
    let message_id = match &spec.message_id {
        Some(id) => validate_id("message_id", id)?,
        None => format!("{}@{domain}", uuid::Uuid::new_v4()),
    };

    let in_reply_to = spec.in_reply_to.as_deref().map(|id| validate_id("in_reply_to", id)).transpose()?;
    let mut references = Vec::with_capacity(spec.references.len() + 1);
    for id in &spec.references {
        // Empty entries are what splitting an empty header gives; they are not worth failing over.
        if !id.trim().is_empty() {
            references.push(validate_id("references", id)?);
        }
    }
    if let Some(parent) = &in_reply_to {
        references.push(parent.clone());
    }
    let references = trim_references(dedup(references));

    let mut head = String::with_capacity(1024);
    let mut push = |name: &str, words: Vec<String>| -> Result<(), BuildError> {
        head.push_str(&fold_header(name, &words).ok_or_else(|| BuildError::HeaderTooLong(name.to_owned()))?);
        Ok(())
    };
    push("Date", vec![date.to_rfc2822()])?;
    push("From", mailbox_words(spec.from_name.as_deref(), &from))?;
    push("To", vec![to])?;
    push("Subject", subject_words(&reply_subject(&spec.subject)))?;
    push("Message-ID", vec![format!("<{message_id}>")])?;
    if let Some(parent) = &in_reply_to {
        push("In-Reply-To", vec![format!("<{parent}>")])?;
    }
    if !references.is_empty() {
        push("References", references.iter().map(|id| format!("<{id}>")).collect())?;
    }
    push("MIME-Version", vec!["1.0".to_owned()])?;
    push("Content-Type", vec!["text/plain;".to_owned(), "charset=utf-8".to_owned()])?;
    push("Content-Transfer-Encoding", vec!["quoted-printable".to_owned()])?;
    push("Auto-Submitted", vec!["auto-replied".to_owned()])?;
    push("X-Mailroom-Auto-Reply", vec!["yes".to_owned()])?;
    for (name, value) in &spec.extra_headers {
        let name = validate_extra_name(name)?;
        if value.contains(['\r', '\n', '\0']) {
            return Err(BuildError::HeaderInjection(name.to_owned()));
        }
        push(name, unstructured_words(value.trim(), name.len() + 2))?;
    }

    let mut raw = head.into_bytes();
    raw.extend_from_slice(b"\r\n");
    raw.extend_from_slice(encode_quoted_printable(&spec.body).as_bytes());
    raw.extend_from_slice(b"\r\n");
    Ok(BuiltReply { message_id, raw })
}

/// `Re: ` plus the subject with any stack of `Re:`/`RE:`/`Aw:`/`Sv:` prefixes (also `Re[2]:` and
/// `Re(2):` counters) removed, so threads read `Re: Topic`, not `Re: Re: AW: Topic`.
///
/// Line breaks and control characters become spaces: the subject comes from the customer, and an
/// RFC 2047 word can hide a CR LF that would otherwise start a new header.
pub fn reply_subject(subject: &str) -> String {
    let clean = sanitize_text(subject);
    let mut rest = clean.trim();
    while let Some(stripped) = strip_reply_prefix(rest) {
        rest = stripped.trim_start();
    }
    if rest.is_empty() { "Re:".to_owned() } else { format!("Re: {rest}") }
}

/// `s` after one leading `Re:`/`Aw:`/`Sv:` prefix (with an optional `[2]`/`(2)` counter).
pub(crate) fn strip_reply_prefix(s: &str) -> Option<&str> {
    let word_len = s.bytes().take_while(u8::is_ascii_alphabetic).count();
    let word = &s[..word_len];
    if !["re", "aw", "sv"].iter().any(|p| word.eq_ignore_ascii_case(p)) {
        return None;
    }
    let mut rest = &s[word_len..];
    // Counters some clients add: "Re[2]:", "Re(3):".
    for (open, close) in [('[', ']'), ('(', ')')] {
        if let Some(inner) = rest.strip_prefix(open)
            && let Some(end) = inner.find(close)
            && end > 0
            && inner[..end].bytes().all(|b| b.is_ascii_digit())
        {
            rest = &inner[end + 1..];
        }
    }
    rest.trim_start_matches([' ', '\t']).strip_prefix(':')
}

/// Subject words: a literal `Re:` followed by the rest, encoded if it needs to be, so that
/// mail clients that show raw headers still read `Re:` and the text stays exact.
fn subject_words(subject: &str) -> Vec<String> {
    match subject.strip_prefix("Re: ") {
        Some(rest) if !is_plain_header_text(subject) => {
            let mut words = vec!["Re:".to_owned()];
            words.extend(unstructured_words(rest, "Subject: Re: ".len()));
            words
        }
        _ => unstructured_words(subject, "Subject: ".len()),
    }
}

/// Control characters (CR and LF included) to spaces, for text that becomes header text.
fn sanitize_text(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// `Name <addr>` as header words: an atom phrase as is, other ASCII quoted, non-ASCII or long
/// names as RFC 2047 words.
fn mailbox_words(name: Option<&str>, address: &str) -> Vec<String> {
    let name = name.map(sanitize_text);
    let name = name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let mut words = match name {
        None => Vec::new(),
        Some(name) if name.len() <= 60 && is_plain_header_text(name) => {
            if name.split(' ').all(|w| w.bytes().all(is_atext)) {
                name.split(' ').map(str::to_owned).collect()
            } else {
                vec![format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))]
            }
        }
        Some(name) => encode_words_fitting(name, ENCODED_LINE_MAX - "From: ".len()),
    };
    words.push(format!("<{address}>"));
    words
}

/// RFC 5322 `atext`.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// Accepts a bare `local@domain` (dot-atom local part, hostname domain); returns it trimmed.
fn validate_address(field: &'static str, address: &str) -> Result<String, BuildError> {
    let fail = |reason| Err(BuildError::InvalidAddress { field, value: address.to_owned(), reason });
    // Checked before trimming: a line break anywhere means the value was built carelessly or
    // maliciously, and "trim it off" is not a safe way to find out which.
    if address.contains(['\r', '\n', '\0']) {
        return fail("contains a line break or NUL");
    }
    let trimmed = address.trim();
    let Some((local, domain)) = trimmed.rsplit_once('@') else {
        return fail("no @");
    };
    if local.is_empty() || local.len() > 64 {
        return fail("local part empty or longer than 64 characters");
    }
    if !local.bytes().all(|b| is_atext(b) || b == b'.') || local.starts_with('.') || local.ends_with('.') {
        return fail("local part is not a plain dot-atom");
    }
    if domain.is_empty() || domain.len() > 253 {
        return fail("domain empty or longer than 253 characters");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !domain.split('.').all(label_ok) {
        return fail("domain is not a hostname (use punycode for international domains)");
    }
    Ok(trimmed.to_owned())
}

/// Accepts `<id>` or `id` made of printable ASCII without spaces or brackets; returns the bare id.
fn validate_id(field: &'static str, id: &str) -> Result<String, BuildError> {
    let fail = |reason| Err(BuildError::InvalidMessageId { field, value: id.to_owned(), reason });
    if id.contains(['\r', '\n', '\0']) {
        return fail("contains a line break or NUL (header injection)");
    }
    let trimmed = id.trim();
    let bare = trimmed.strip_prefix('<').and_then(|s| s.strip_suffix('>')).unwrap_or(trimmed);
    if bare.is_empty() {
        return fail("empty");
    }
    if bare.len() > MAX_ID_LEN {
        return fail("longer than 900 characters");
    }
    if !bare.bytes().all(|b| (33..=126).contains(&b) && b != b'<' && b != b'>') {
        return fail("not printable ASCII without spaces and angle brackets");
    }
    Ok(bare.to_owned())
}

fn validate_extra_name(name: &str) -> Result<&str, BuildError> {
    let valid = !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
    if !valid {
        return Err(if name.contains(['\r', '\n']) {
            BuildError::HeaderInjection(name.to_owned())
        } else {
            BuildError::InvalidHeaderName(name.to_owned())
        });
    }
    if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(BuildError::ReservedHeader(name.to_owned()));
    }
    Ok(name)
}

/// Drops repeated ids, keeping the first occurrence (thread order).
fn dedup(ids: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.into_iter().filter(|id| seen.insert(id.clone())).collect()
}

/// Keeps the thread root and the most recent ids when the chain is very long.
fn trim_references(mut ids: Vec<String>) -> Vec<String> {
    if ids.len() > MAX_REFERENCES {
        let drop_end = ids.len() - (MAX_REFERENCES - 1);
        ids.drain(1..drop_end);
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_prefixes_do_not_stack() {
        assert_eq!(reply_subject("Hello"), "Re: Hello");
        assert_eq!(reply_subject("Re: Hello"), "Re: Hello");
        assert_eq!(reply_subject("RE: re:Aw: SV : Hello"), "Re: Hello");
        assert_eq!(reply_subject("Re[2]: Re(3): AW: Hello"), "Re: Hello");
        assert_eq!(reply_subject("Fwd: Hello"), "Re: Fwd: Hello");
        assert_eq!(reply_subject("Regarding: invoices"), "Re: Regarding: invoices");
        assert_eq!(reply_subject("Reply needed"), "Re: Reply needed");
        assert_eq!(reply_subject("  "), "Re:");
        assert_eq!(reply_subject("Re:"), "Re:");
        assert_eq!(reply_subject("a\r\nBcc: evil@x.example"), "Re: a  Bcc: evil@x.example");
    }

    #[test]
    fn addresses() {
        assert!(validate_address("to", "anna.schmidt@gmail.com").is_ok());
        assert!(validate_address("to", "o'brien+tag@mail.example.co.uk").is_ok());
        for bad in [
            "",
            "no-at",
            "@x.com",
            "a@",
            "a b@x.com",
            "a@x .com",
            "a@-x.com",
            "Name <a@x.com>",
            "a@x.com\r\nBcc: b@y.com",
            "ü@x.com",
            "a@bücher.de",
            ".a@x.com",
        ] {
            assert!(validate_address("to", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn ids() {
        assert_eq!(validate_id("f", "<a@b>").expect("valid"), "a@b");
        assert_eq!(validate_id("f", " a@b ").expect("valid"), "a@b");
        for bad in ["", "<>", "a b@c", "a@b>\r\nBcc: x@y", "<a<b>", "日本@x"] {
            assert!(validate_id("f", bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_names() {
        assert_eq!(mailbox_words(Some("Example Support"), "s@x.com"), ["Example", "Support", "<s@x.com>"]);
        assert_eq!(mailbox_words(Some("Support, Example"), "s@x.com"), ["\"Support, Example\"", "<s@x.com>"]);
        assert_eq!(mailbox_words(Some("Say \"hi\""), "s@x.com"), ["\"Say \\\"hi\\\"\"", "<s@x.com>"]);
        assert_eq!(mailbox_words(None, "s@x.com"), ["<s@x.com>"]);
        assert_eq!(mailbox_words(Some(" \r\n "), "s@x.com"), ["<s@x.com>"]);
        let words = mailbox_words(Some("Kundendienst Müller"), "s@x.com");
        assert!(words[0].starts_with("=?utf-8?B?"));
    }

    #[test]
    fn references_are_deduplicated_and_trimmed() {
        let ids: Vec<String> = (0..100).map(|i| format!("id{i}@x")).collect();
        let trimmed = trim_references(ids.clone());
        assert_eq!(trimmed.len(), MAX_REFERENCES);
        assert_eq!(trimmed[0], "id0@x");
        assert_eq!(trimmed[1], "id61@x");
        assert_eq!(trimmed.last().map(String::as_str), Some("id99@x"));
        assert_eq!(dedup(vec!["a".into(), "b".into(), "a".into()]), ["a", "b"]);
    }
}
