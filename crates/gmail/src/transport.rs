//! What the Gmail client adds to [`provider_http`]: mapping its failures into [`GmailError`]
//! with the operation named, redaction of several secrets at once (client secret, refresh and
//! access tokens), the `Retry-After` header alone as the retry hint, and Gmail's own messages
//! for redirects and unexpected bodies.

use std::time::Duration;

use provider_http::{SendError, parse_retry_after};
use reqwest::header::{HeaderMap, HeaderValue};

pub(crate) use provider_http::{RawResponse, body_excerpt, excerpt, is_transient_status};

use crate::GmailError;

/// Builds the HTTP client (see [`provider_http::build_client`]: TLS ≥ 1.2, no redirects, a
/// zero timeout meaning none).
pub(crate) fn build_client(timeout: Duration) -> Result<reqwest::Client, GmailError> {
    provider_http::build_client(timeout).map_err(|message| GmailError::Permanent { status: None, message })
}

/// A sensitive header value (see [`provider_http::secret_header`]); callers pass the trimmed
/// value.
pub(crate) fn secret_header(value: &str) -> Result<HeaderValue, GmailError> {
    provider_http::secret_header(value).map_err(|_| GmailError::Permanent {
        status: None,
        // Deliberately does not quote the value.
        message: "the access token contains characters not allowed in a header".to_owned(),
    })
}

/// Sends the request and reads the whole body, turning transport failures into typed errors:
/// timeouts and connection problems may go away, malformed requests will not.
pub(crate) async fn send(
    operation: &str,
    request: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Result<RawResponse, GmailError> {
    // No key for provider_http to redact: the message is redacted here, of every secret.
    provider_http::send(request, "").await.map_err(|error| {
        let describe = |chain: String| redact(&format!("{operation}: {chain}"), secrets);
        match error {
            SendError::InvalidRequest(chain) => GmailError::Permanent {
                status: None,
                message: format!("invalid request (check the URLs): {}", describe(chain)),
            },
            SendError::TimedOut(chain) => GmailError::Transient {
                status: None,
                message: format!("request timed out: {}", describe(chain)),
                retry_after: None,
            },
            SendError::Failed(chain) => {
                GmailError::Transient { status: None, message: describe(chain), retry_after: None }
            }
        }
    })
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

/// Removes every secret from a message (see [`provider_http::redact`]). Servers sometimes
/// echo a credential back in "invalid client" errors, and messages end up in logs and
/// dead-letter headers.
pub(crate) fn redact(message: &str, secrets: &[&str]) -> String {
    secrets.iter().fold(message.to_owned(), |message, secret| provider_http::redact(&message, secret))
}

/// The `Retry-After` hint of a response, as seconds or an HTTP date (Google sends no
/// `retry-after-ms`, so unlike [`provider_http::retry_after`] only this header counts).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after)
}

#[cfg(test)]
mod tests {
    use provider_http::MAX_QUOTED_BODY_CHARS;

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
