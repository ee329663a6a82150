//! Plumbing shared by the three HTTP providers: client construction, classification of
//! transport failures, retry hints, key redaction and error-body excerpts. Adapted from the
//! embedders crate's transport so both crates treat providers the same way.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;

use crate::LlmError;

/// Longest provider error body quoted in an error message; HTML error pages from proxies can
/// be many kilobytes.
const MAX_QUOTED_BODY_CHARS: usize = 500;

/// A response as far as the providers need it; the body is read in full so that a failure
/// while reading it is classified like any other transport failure.
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl RawResponse {
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON, if it is JSON.
    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Builds the HTTP client.
///
/// Redirects are not followed: a redirected POST turns into a GET and loses its body (and a
/// redirect to another host would carry the key there), so a redirect always means a wrong
/// `base_url`, better reported as such. A zero timeout means no timeout (rather than failing
/// every request).
pub(crate) fn build_client(timeout: Duration) -> Result<reqwest::Client, String> {
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

/// The client, or the error a call returns when there is none (constructors are infallible
/// by interface, so the reason is kept until the first call).
pub(crate) fn client<'a>(
    client: &'a Result<reqwest::Client, String>,
    provider: &str,
) -> Result<&'a reqwest::Client, LlmError> {
    client.as_ref().map_err(|reason| permanent(provider, None, reason.clone()))
}

/// A header value holding a secret: marked sensitive so it never shows in reqwest's Debug
/// output. Keys pasted from files or env vars often carry a trailing newline, which is not a
/// valid header character, so callers pass the trimmed key.
pub(crate) fn secret_header(provider: &str, value: &str) -> Result<HeaderValue, LlmError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| {
        // The error deliberately does not quote the value.
        permanent(provider, None, "the API key contains characters not allowed in a header".to_owned())
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// Sends the request and reads the whole body, turning transport failures into typed errors.
pub(crate) async fn send(
    provider: &str,
    request: reqwest::RequestBuilder,
    api_key: &str,
) -> Result<RawResponse, LlmError> {
    let response = request.send().await.map_err(|e| request_error(provider, &e, api_key))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| request_error(provider, &e, api_key))?;
    Ok(RawResponse { status, headers, body: body.to_vec() })
}

/// Classifies a failure to get a response: timeouts and connection problems may go away,
/// malformed requests will not.
fn request_error(provider: &str, error: &reqwest::Error, api_key: &str) -> LlmError {
    let message = redact(&error_chain(error), api_key);
    if error.is_builder() {
        return permanent(provider, None, format!("invalid request (check base_url): {message}"));
    }
    let message = if error.is_timeout() { format!("request timed out: {message}") } else { message };
    LlmError::Transient { provider: provider.to_owned(), status: None, message, retry_after: None }
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
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || ((500..=599).contains(&status) && status != 501 && status != 505)
}

/// The error for a redirect, which always means a wrong `base_url` (redirects are not
/// followed, see [`build_client`]); `None` for any other status.
pub(crate) fn redirect_error(provider: &str, response: &RawResponse, api_key: &str) -> Option<LlmError> {
    if !(300..400).contains(&response.status) {
        return None;
    }
    let location = response.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("an unknown location");
    let message = format!("unexpected redirect to {location}; check base_url");
    Some(permanent(provider, Some(response.status), redact(&message, api_key)))
}

/// Shorthand for a permanent error.
pub(crate) fn permanent(provider: &str, status: Option<u16>, message: String) -> LlmError {
    LlmError::Permanent { provider: provider.to_owned(), status, message }
}

/// Shorthand for an unusable answer. `message` must already be redacted.
pub(crate) fn invalid_output(provider: &str, message: String) -> LlmError {
    LlmError::InvalidOutput { provider: provider.to_owned(), message }
}

/// The error for a 2xx response whose body is not the documented shape: usually a wrong
/// `base_url` that reaches some other web server, hence permanent.
pub(crate) fn unexpected_body(provider: &str, response: &RawResponse, api_key: &str) -> LlmError {
    let message = format!("unexpected response body: {}", body_excerpt(response.status, &response.body));
    permanent(provider, Some(response.status), redact(&message, api_key))
}

/// Builds the error for a non-success status from its parts. `message` is redacted here.
pub(crate) fn status_error(
    provider: &str,
    response: &RawResponse,
    message: &str,
    class: ErrorClass,
    api_key: &str,
) -> LlmError {
    let provider = provider.to_owned();
    let status = Some(response.status);
    let message = redact(message, api_key);
    match class {
        ErrorClass::Transient(retry_after) => LlmError::Transient { provider, status, message, retry_after },
        ErrorClass::QuotaExhausted => LlmError::QuotaExhausted { provider, status, message },
        ErrorClass::Permanent => LlmError::Permanent { provider, status, message },
    }
}

/// How a provider classified an error response.
pub(crate) enum ErrorClass {
    /// Retry later, after the hint if there is one.
    Transient(Option<Duration>),
    /// Out of money or quota.
    QuotaExhausted,
    /// Will never work as sent.
    Permanent,
}

/// The body quoted for an error without a structured message, or the status's reason phrase
/// when the body is empty.
pub(crate) fn body_excerpt(status: u16, body: &[u8]) -> String {
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

/// At most [`MAX_QUOTED_BODY_CHARS`] characters of `text`, marked when cut.
pub(crate) fn excerpt(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_BODY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Removes the API key from a message. Providers sometimes echo the key back (or a prefix of
/// it) in "invalid key" errors, and messages end up in logs and dead-letter headers.
pub(crate) fn redact(message: &str, api_key: &str) -> String {
    let api_key = api_key.trim();
    if api_key.is_empty() { message.to_owned() } else { message.replace(api_key, "[REDACTED]") }
}

/// The retry hint of a response: `retry-after-ms` (OpenAI's precise variant) first, then
/// `retry-after` as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = header("retry-after-ms").and_then(parse_seconds) {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    header("retry-after").and_then(parse_retry_after)
}

/// Parses a `Retry-After` value: delay seconds (fractional accepted, as some providers send
/// them) or an HTTP date; a date in the past means "now".
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Some(seconds) = parse_seconds(value) {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    let when = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let millis = when.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    Some(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}

/// Parses a protobuf `Duration` in its JSON form ("37s", "1.5s"), as in `google.rpc.RetryInfo`.
pub(crate) fn parse_proto_duration(value: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(parse_seconds(value.trim().strip_suffix('s')?)?).ok()
}

fn parse_seconds(value: &str) -> Option<f64> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some(seconds)
}

/// Whether any of `needles` (lower case) occurs in `haystack`, ignoring case.
pub(crate) fn mentions(haystack: &str, needles: &[&str]) -> bool {
    let haystack = haystack.to_lowercase();
    needles.iter().any(|needle| haystack.contains(needle))
}

/// Joins a base URL and a path without doubling or dropping the slash; an empty base means
/// the provider's public endpoint.
pub(crate) fn endpoint(base_url: &str, default_base: &str, path: &str) -> String {
    let base = base_url.trim();
    let base = if base.is_empty() { default_base } else { base };
    format!("{}/{}", base.trim_end_matches('/'), path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_fractions_and_dates() {
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
        assert_eq!(parse_proto_duration("37"), None);
        assert_eq!(parse_proto_duration("-3s"), None);
    }

    #[test]
    fn transient_statuses() {
        for status in [408, 429, 500, 502, 503, 504, 529] {
            assert!(is_transient_status(status), "{status}");
        }
        for status in [400, 401, 403, 404, 422, 501, 505] {
            assert!(!is_transient_status(status), "{status}");
        }
    }

    #[test]
    fn redaction_excerpts_and_endpoints() {
        assert_eq!(redact("bad key sk-123 given", "sk-123\n"), "bad key [REDACTED] given");
        assert_eq!(redact("nothing to hide", ""), "nothing to hide");
        assert_eq!(body_excerpt(502, b""), "Bad Gateway");
        let long = "é".repeat(2000);
        assert_eq!(body_excerpt(500, long.as_bytes()).chars().count(), MAX_QUOTED_BODY_CHARS + 1);
        assert_eq!(endpoint("http://h/v1/", "https://d", "/messages"), "http://h/v1/messages");
        assert_eq!(endpoint(" ", "https://d/v1", "messages"), "https://d/v1/messages");
    }
}
