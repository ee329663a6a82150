//! Mailroom's MIME layer: turns inbound raw mail into a [`ParsedEmail`] and builds the raw
//! RFC 5322 auto-reply for the sender.
//!
//! - [`parse`] / [`parse_with_limit`]: decode any common charset and transfer encoding (via
//!   mail-parser), prefer `text/plain`, fall back to HTML converted to text ([`html_to_text`]),
//!   keep every header for the classifier's loop rules, and reject input that is not mail with a
//!   [`ParseError`] that says why. Never panics, even if mail-parser does.
//! - [`quoting`]: the sender's own text of a body, without quoted history and signature.
//! - [`ParsedEmail::content_digest`]: what a message says (sender and decoded body) as a hash.
//! - [`build_reply`]: a threaded, auto-reply-marked, quoted-printable UTF-8 reply that no header
//!   value can inject into.

mod build;
mod digest;
mod encode;
mod html;
mod parse;
pub mod quoting;

pub use build::{BuildError, BuiltReply, ReplySpec, build_reply, build_reply_at, reply_subject};
pub use digest::hex;
pub use encode::{encode_quoted_printable, encode_words};
pub use html::{decode_entities, html_to_text};
pub use parse::{BodySource, DEFAULT_MAX_BODY_CHARS, ParseError, ParsedEmail, parse, parse_with_limit};
