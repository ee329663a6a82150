//! HTTP plumbing shared by the provider clients of the `embedders` and `llm` crates, so both
//! talk to remote APIs the same way:
//!
//! - [`build_client`]: a `reqwest` client that refuses TLS below 1.2 and follows no redirects;
//! - [`secret_header`]: header values for API keys, marked sensitive;
//! - [`send`]: sends a request and reads the whole body into a [`RawResponse`], classifying a
//!   failure to get one ([`SendError`]: a request that can never be sent versus a timeout or
//!   connection failure that may go away);
//! - [`is_transient_status`], [`retry_after`], [`parse_retry_after`], [`parse_proto_duration`]:
//!   which statuses are worth retrying and after how long;
//! - [`redact`], [`body_excerpt`], [`excerpt`], [`redirect_message`]: error messages that quote
//!   the provider without leaking the key or kilobytes of HTML.
//!
//! - [`error_body`]: what an OpenAI- or Google-shaped error body says (quota exhausted, wrong
//!   key), one reading for the LLM and embedding clients;
//! - [`health`]: configuration errors (401, 403, model not found) kept, logged loudly and
//!   handed to the worker's readiness, metrics and `mailroom status`.
//!
//! Mapping these into each crate's own error type stays in that crate.

use std::time::Duration;

pub mod error_body;
pub mod health;

pub use error_body::{GoogleError, OpenAiError};
pub use health::{HealthEvent, ProviderHealth, ProviderProblem};

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

/// Longest provider error body quoted in an error message; HTML error pages from proxies can
/// be many kilobytes.
pub const MAX_QUOTED_BODY_CHARS: usize = 500;

/// What replaces the API key in redacted messages.
const REDACTED: &str = "[REDACTED]";

/// A response as far as the providers need it; the body is read in full so that a failure
/// while reading it is classified like any other transport failure.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// HTTP status code.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Builds the HTTP client.
///
/// Redirects are not followed: a redirected POST turns into a GET and loses its body (and a
/// redirect to another host would carry the key there), so a redirect always means a wrong
/// `base_url`, better reported as such (see [`redirect_message`]). A zero timeout means no
/// timeout (rather than failing every request).
///
/// The error is a message meant to be kept until the first call: provider constructors are
/// infallible by interface.
pub fn build_client(timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Besides refusing obsolete TLS, this only compiles while reqwest has a TLS backend.
        // That matters: a reqwest without one does not reject https URLs but sends the request,
        // API key included, in plain text to port 443.
        .min_tls_version(reqwest::tls::Version::TLS_1_2);
    if !timeout.is_zero() {
        builder = builder.timeout(timeout);
    }
    builder.build().map_err(|e| format!("could not build the HTTP client: {}", error_chain(&e)))
}

/// An API key that cannot travel in a header. The message deliberately does not quote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the API key contains characters not allowed in a header")]
pub struct InvalidSecretHeader;

/// A header value holding a secret: marked sensitive so it never shows in reqwest's Debug
/// output. Keys pasted from files or env vars often carry a trailing newline, which is not a
/// valid header character, so callers pass the trimmed key.
pub fn secret_header(value: &str) -> Result<HeaderValue, InvalidSecretHeader> {
    let mut header = HeaderValue::from_str(value).map_err(|_| InvalidSecretHeader)?;
    header.set_sensitive(true);
    Ok(header)
}

/// A request that got no (complete) response. Messages are already redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The request could not be built, typically from a malformed `base_url`; it will never
    /// work as sent.
    #[error("invalid request (check base_url): {0}")]
    InvalidRequest(String),
    /// The request or the body download exceeded the client's timeout.
    #[error("request timed out: {0}")]
    TimedOut(String),
    /// Connection refused or reset, DNS failure, TLS failure, broken body, …
    #[error("{0}")]
    Failed(String),
}

impl SendError {
    /// Whether the failure may go away by itself (timeouts and connection problems do,
    /// malformed requests do not).
    pub fn is_transient(&self) -> bool {
        !matches!(self, SendError::InvalidRequest(_))
    }
}

/// Sends the request and reads the whole body, classifying transport failures. `api_key` is
/// redacted from the error messages (reqwest quotes the URL, which may carry it).
pub async fn send(request: reqwest::RequestBuilder, api_key: &str) -> Result<RawResponse, SendError> {
    let response = request.send().await.map_err(|e| send_error(&e, api_key))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| send_error(&e, api_key))?;
    Ok(RawResponse { status, headers, body: body.to_vec() })
}

/// Classifies a failure to get a response.
fn send_error(error: &reqwest::Error, api_key: &str) -> SendError {
    let message = redact(&error_chain(error), api_key);
    if error.is_builder() {
        SendError::InvalidRequest(message)
    } else if error.is_timeout() {
        SendError::TimedOut(message)
    } else {
        SendError::Failed(message)
    }
}

/// The display of an error and all its sources; reqwest's own display hides the actual cause
/// (e.g. "Connection refused") in the source chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Whether a status is worth retrying: timeouts, rate limits and server errors (Anthropic's
/// 529 included), except the 5xx codes that describe a permanent mismatch (501 Not
/// Implemented, 505 HTTP Version).
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || ((500..=599).contains(&status) && status != 501 && status != 505)
}

/// The message for a redirect, which always means a wrong `base_url` (redirects are not
/// followed, see [`build_client`]); `None` for any other status. The message is redacted.
pub fn redirect_message(response: &RawResponse, api_key: &str) -> Option<String> {
    if !(300..400).contains(&response.status) {
        return None;
    }
    let location = response.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("an unknown location");
    Some(redact(&format!("unexpected redirect to {location}; check base_url"), api_key))
}

/// The body quoted for an error without a structured message, or the status's reason phrase
/// when the body is empty. Not redacted.
pub fn body_excerpt(status: u16, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("no response body")
            .to_owned();
    }
    excerpt(text)
}

/// At most [`MAX_QUOTED_BODY_CHARS`] characters of `text`, marked with `…` when cut.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Removes the API key from a message. Providers sometimes echo the key back (or a prefix of
/// it) in "invalid key" errors, and messages end up in logs and dead-letter headers.
pub fn redact(message: &str, api_key: &str) -> String {
    let api_key = api_key.trim();
    if api_key.is_empty() { message.to_owned() } else { message.replace(api_key, REDACTED) }
}

/// The retry hint of a response: `retry-after-ms` (OpenAI's precise variant) first, then
/// `retry-after` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(parse_seconds) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    header("retry-after").and_then(parse_retry_after)
}

/// Parses a `Retry-After` value: delay seconds (fractional accepted, as some providers send
/// them) or an HTTP date; a date in the past means "now".
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Some(seconds) = parse_seconds(value) {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let millis = when.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}

/// Parses a protobuf `Duration` in its JSON form ("37s", "1.5s"), as in `google.rpc.RetryInfo`'s
/// `retryDelay`.
pub fn parse_proto_duration(value: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(parse_seconds(value.trim().strip_suffix('s')?)?).ok()
}

/// A finite, non-negative number of seconds.
fn parse_seconds(value: &str) -> Option<f64> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_fractions_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(120)).to_rfc2822();
        let parsed = parse_retry_after(&soon).expect("future HTTP date parses");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        for bad in ["", "soon", "-1", "NaN", "inf", "1e400"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_ms_header_wins() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "20".parse().expect("valid header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(20)));
        headers.insert("retry-after-ms", "250".parse().expect("valid header"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn proto_durations() {
        assert_eq!(parse_proto_duration("37s"), Some(Duration::from_secs(37)));
        assert_eq!(parse_proto_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_proto_duration("0.000000001s"), Some(Duration::from_nanos(1)));
        assert_eq!(parse_proto_duration("37"), None);
        assert_eq!(parse_proto_duration("-3s"), None);
    }

    #[test]
    fn transient_statuses() {
        for status in [408, 425, 429, 500, 502, 503, 504, 520, 529] {
            assert!(is_transient_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 422, 501, 505] {
            assert!(!is_transient_status(status), "{status}");
        }
    }

    #[test]
    fn redaction_and_excerpts() {
        assert_eq!(redact("bad key sk-123 given", "sk-123\n"), "bad key [REDACTED] given");
        assert_eq!(redact("nothing to hide", ""), "nothing to hide");
        assert_eq!(body_excerpt(502, b""), "Bad Gateway");
        let long = "é".repeat(2000);
        let excerpt = body_excerpt(500, long.as_bytes());
        assert_eq!(excerpt.chars().count(), MAX_QUOTED_BODY_CHARS + 1);
        assert!(excerpt.ends_with('…'));
        assert_eq!(body_excerpt(400, b"  short  "), "short");
    }

    #[test]
    fn redirects_name_the_location_without_the_key() {
        let mut response = RawResponse { status: 200, headers: HeaderMap::new(), body: Vec::new() };
        assert_eq!(redirect_message(&response, "sk-1"), None);
        response.status = 301;
        assert_eq!(
            redirect_message(&response, "sk-1").as_deref(),
            Some("unexpected redirect to an unknown location; check base_url")
        );
        response.headers.insert("location", "https://elsewhere/?key=sk-1".parse().expect("valid header"));
        assert_eq!(
            redirect_message(&response, "sk-1").as_deref(),
            Some("unexpected redirect to https://elsewhere/?key=[REDACTED]; check base_url")
        );
    }

    #[test]
    fn raw_response_helpers() {
        let response = RawResponse { status: 204, headers: HeaderMap::new(), body: br#"{"a":1}"#.to_vec() };
        assert!(response.is_success());
        assert_eq!(response.json(), Some(serde_json::json!({"a": 1})));
        let response = RawResponse { status: 302, headers: HeaderMap::new(), body: b"<html>".to_vec() };
        assert!(!response.is_success());
        assert_eq!(response.json(), None);
    }

    #[test]
    fn secret_headers_are_sensitive_and_reject_control_characters() {
        let header = secret_header("Bearer sk-123").expect("a valid header value");
        assert!(header.is_sensitive());
        assert!(!format!("{header:?}").contains("sk-123"));
        let error = secret_header("sk-123\n").expect_err("newline is not allowed");
        assert!(!error.to_string().contains("sk-123"));
    }

    #[tokio::test]
    async fn malformed_urls_are_permanent() {
        let client = build_client(Duration::ZERO).expect("client builds");
        let error = send(client.get("not a url"), "sk-1").await.expect_err("no URL to send to");
        assert!(matches!(error, SendError::InvalidRequest(_)), "{error:?}");
        assert!(!error.is_transient());
        assert!(error.to_string().starts_with("invalid request (check base_url): "), "{error}");
    }

    #[tokio::test]
    async fn refused_connections_are_transient_and_redacted() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("bound socket has an address");
        drop(listener);
        let client = build_client(Duration::from_secs(10)).expect("client builds");
        let error = send(client.get(format!("http://{addr}/?key=sk-secret")), "sk-secret")
            .await
            .expect_err("nothing listens there");
        assert!(matches!(error, SendError::Failed(_)), "{error:?}");
        assert!(error.is_transient());
        let message = error.to_string();
        assert!(!message.contains("sk-secret") && message.contains("[REDACTED]"), "{message}");
    }

    #[tokio::test]
    async fn timeouts_are_transient() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("bound socket has an address");
        // Accept the connection and never answer.
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept the client");
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        });
        let client = build_client(Duration::from_millis(200)).expect("client builds");
        let error = send(client.get(format!("http://{addr}/")), "").await.expect_err("the server never answers");
        server.abort();
        assert!(matches!(error, SendError::TimedOut(_)), "{error:?}");
        assert!(error.is_transient());
        assert!(error.to_string().starts_with("request timed out: "), "{error}");
    }
}
