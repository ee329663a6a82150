//! HTTP plumbing: client construction (TLS ≥ 1.2, no redirects), classification of transport
//! failures, retry hints, secret redaction and error-body excerpts. Adapted from the llm
//! crate's transport so every outbound client of the project behaves the same way.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};

use crate::GmailError;

/// Longest error body quoted in an error message; HTML error pages from proxies can be many
/// kilobytes.
const MAX_QUOTED_BODY_CHARS: usize = 500;

/// A response as far as the client needs it; the body is read in full so that a failure
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
}

/// Builds the HTTP client.
///
/// Redirects are not followed: a redirected POST turns into a GET and loses its body (and a
/// redirect to another host would carry the bearer token there), so a redirect always means a
/// wrong `api_base` or `token_url`, better reported as such. A zero timeout means no timeout
/// (rather than failing every request).
pub(crate) fn build_client(timeout: Duration) -> Result<reqwest::Client, GmailError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Besides refusing obsolete TLS, this only compiles while reqwest has a TLS backend.
        // That matters: a reqwest without one does not reject https URLs but sends the request,
        // tokens included, in plain text to port 443.
        .min_tls_version(reqwest::tls::Version::TLS_1_2);
    if !timeout.is_zero() {
        builder = builder.timeout(timeout);
    }
    builder.build().map_err(|e| GmailError::Permanent {
        status: None,
        message: format!("could not build the HTTP client: {}", error_chain(&e)),
    })
}

/// A header value holding a secret: marked sensitive so it never shows in reqwest's Debug
/// output. Tokens pasted from files or env vars often carry a trailing newline, which is not a
/// valid header character, so callers pass the trimmed value.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, GmailError> {
    let mut header = HeaderValue::from_str(value).map_err(|_| GmailError::Permanent {
        status: None,
        // Deliberately does not quote the value.
        message: "the access token contains characters not allowed in a header".to_owned(),
    })?;
    header.set_sensitive(true);
    Ok(header)
}

/// Sends the request and reads the whole body, turning transport failures into typed errors.
pub(crate) async fn send(
    operation: &str,
    request: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Result<RawResponse, GmailError> {
    let response = request.send().await.map_err(|e| request_error(operation, &e, secrets))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| request_error(operation, &e, secrets))?;
    Ok(RawResponse { status, headers, body: body.to_vec() })
}

/// Classifies a failure to get a response: timeouts and connection problems may go away,
/// malformed requests will not.
fn request_error(operation: &str, error: &reqwest::Error, secrets: &[&str]) -> GmailError {
    let message = redact(&format!("{operation}: {}", error_chain(error)), secrets);
    if error.is_builder() {
        return GmailError::Permanent { status: None, message: format!("invalid request (check the URLs): {message}") };
    }
    let message = if error.is_timeout() { format!("request timed out: {message}") } else { message };
    GmailError::Transient { status: None, message, retry_after: None }
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

/// Whether a status is worth retrying: timeouts, rate limits and server errors, except the
/// 5xx codes that describe a permanent mismatch (501 Not Implemented, 505 HTTP Version).
pub(crate) fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429) || ((500..=599).contains(&status) && status != 501 && status != 505)
}

/// The error for a redirect, which always means a wrong URL (redirects are not followed, see
/// [`build_client`]); `None` for any other status.
pub(crate) fn redirect_error(response: &RawResponse, secrets: &[&str]) -> Option<GmailError> {
    if !(300..400).contains(&response.status) {
        return None;
    }
    let location = response.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("an unknown location");
    let message = format!("unexpected redirect to {location}; check api_base and token_url");
    Some(GmailError::Permanent { status: Some(response.status), message: redact(&message, secrets) })
}

/// The error for a 2xx response whose body is not the documented shape: usually a wrong
/// `api_base` that reaches some other web server, hence permanent.
pub(crate) fn unexpected_body(operation: &str, response: &RawResponse, secrets: &[&str]) -> GmailError {
    let message = format!("{operation}: unexpected response body: {}", body_excerpt(response.status, &response.body));
    GmailError::Permanent { status: Some(response.status), message: redact(&message, secrets) }
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

/// Removes secrets from a message. Servers sometimes echo a credential back in "invalid
/// client" errors, and messages end up in logs and dead-letter headers.
pub(crate) fn redact(message: &str, secrets: &[&str]) -> String {
    let mut message = message.to_owned();
    for secret in secrets {
        let secret = secret.trim();
        if !secret.is_empty() {
            message = message.replace(secret, "[REDACTED]");
        }
    }
    message
}

/// The `Retry-After` hint of a response, as seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after)
}

/// Parses a `Retry-After` value: delay seconds (fractional accepted) or an HTTP date; a date
/// in the past means "now".
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<f64>() {
        return if seconds.is_finite() && seconds >= 0.0 { Duration::try_from_secs_f64(seconds).ok() } else { None };
    }
    let when = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let millis = when.timestamp_millis().saturating_sub(chrono::Utc::now().timestamp_millis());
    Some(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_fractions_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        for bad in ["", "soon", "-1", "NaN", "inf", "1e400"] {
            assert_eq!(parse_retry_after(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn redaction_and_excerpts() {
        assert_eq!(redact("secret s3 and t0k", &["s3\n", "t0k", ""]), "secret [REDACTED] and [REDACTED]");
        assert_eq!(body_excerpt(502, b""), "Bad Gateway");
        let long = "é".repeat(2000);
        assert_eq!(body_excerpt(500, long.as_bytes()).chars().count(), MAX_QUOTED_BODY_CHARS + 1);
    }
}
