//! Plumbing shared by the HTTP embedders: client construction, classification of transport
//! failures and HTTP statuses, retry hints, key redaction, and the batch bookkeeping (blank
//! texts, dimension checks, normalisation) that both providers need in the same way.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::{EmbedError, normalize};

/// Longest provider error body quoted in an error message; HTML error pages from proxies can
/// be many kilobytes.
const MAX_QUOTED_BODY_CHARS: usize = 500;

/// A response as far as the embedders need it; the body is read in full so that a failure
/// while reading it is classified like any other transport failure.
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

/// Builds the HTTP client.
///
/// Redirects are not followed: a redirected POST turns into a GET and loses its body, so a
/// redirect always means a wrong `base_url`, better reported as such. A zero timeout means no
/// timeout (rather than failing every request).
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

/// The error `embed` returns when there is no client (constructors are infallible by
/// interface, so the reason is kept until the first call).
pub(crate) fn client_unavailable(provider: &'static str, reason: &str) -> EmbedError {
    permanent(provider, None, reason.to_owned())
}

/// Sends the request and reads the whole body, turning transport failures into typed errors.
pub(crate) async fn send(
    provider: &'static str,
    request: reqwest::RequestBuilder,
    api_key: &str,
) -> Result<RawResponse, EmbedError> {
    let response = request.send().await.map_err(|e| request_error(provider, &e, api_key))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(|e| request_error(provider, &e, api_key))?;
    Ok(RawResponse { status, headers, body: body.to_vec() })
}

/// Classifies a failure to get a response: timeouts and connection problems may go away,
/// malformed requests will not.
fn request_error(provider: &'static str, error: &reqwest::Error, api_key: &str) -> EmbedError {
    let message = redact(&error_chain(error), api_key);
    if error.is_builder() {
        return permanent(provider, None, format!("invalid request (check base_url): {message}"));
    }
    let message = if error.is_timeout() { format!("request timed out: {message}") } else { message };
    EmbedError::Transient { provider, status: None, message, retry_after: None }
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

/// Builds the error for a non-success status. `message` must already be redacted.
pub(crate) fn status_error(
    provider: &'static str,
    status: u16,
    message: String,
    transient: bool,
    retry_after: Option<Duration>,
) -> EmbedError {
    if transient {
        EmbedError::Transient { provider, status: Some(status), message, retry_after }
    } else {
        permanent(provider, Some(status), message)
    }
}

/// The error for a redirect, which always means a wrong `base_url` (redirects are not
/// followed, see [`build_client`]); `None` for any other status.
pub(crate) fn redirect_error(provider: &'static str, response: &RawResponse, api_key: &str) -> Option<EmbedError> {
    if !(300..400).contains(&response.status) {
        return None;
    }
    let location = response.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("an unknown location");
    let message = format!("unexpected redirect to {location}; check base_url");
    Some(permanent(provider, Some(response.status), redact(&message, api_key)))
}

/// Shorthand for a permanent error.
pub(crate) fn permanent(provider: &'static str, status: Option<u16>, message: String) -> EmbedError {
    EmbedError::Permanent { provider, status, message }
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

/// Positions of the texts worth sending. Providers reject empty inputs with a 400, which would
/// fail the whole batch for one blank chunk; blank texts get a zero vector instead, as the
/// hashing embedder gives them.
pub(crate) fn non_blank(texts: &[String]) -> Vec<usize> {
    texts.iter().enumerate().filter(|(_, t)| !t.trim().is_empty()).map(|(i, _)| i).collect()
}

/// Puts the vectors of the sent texts back at their positions, zero vectors elsewhere.
pub(crate) fn assemble(count: usize, sent: &[usize], vectors: Vec<Vec<f32>>, dimension: usize) -> Vec<Vec<f32>> {
    let mut out = vec![Vec::new(); count];
    for (&i, vector) in sent.iter().zip(vectors) {
        out[i] = vector;
    }
    for slot in out.iter_mut().filter(|v| v.is_empty()) {
        *slot = vec![0.0; dimension];
    }
    out
}

/// The vector length an HTTP embedder promises: the requested one, else the model's known
/// native size, else whatever the first response had (then pinned, so one embedder never
/// returns vectors of two sizes).
#[derive(Debug)]
pub(crate) struct Dimension {
    fixed: Option<usize>,
    learned: OnceLock<usize>,
}

impl Dimension {
    pub(crate) fn new(fixed: Option<usize>) -> Self {
        Self { fixed, learned: OnceLock::new() }
    }

    /// The dimension, or 0 while it is still unknown.
    pub(crate) fn get(&self) -> usize {
        self.fixed.or_else(|| self.learned.get().copied()).unwrap_or(0)
    }

    /// Checks each vector's length and values, then normalises it: a provider that silently
    /// ignores the requested dimension would otherwise corrupt the vector store.
    pub(crate) fn finish(
        &self,
        provider: &'static str,
        mut vectors: Vec<Vec<f32>>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        for vector in &mut vectors {
            let got = vector.len();
            let expected = self.fixed.unwrap_or_else(|| *self.learned.get_or_init(|| got));
            if got != expected {
                return Err(permanent(
                    provider,
                    None,
                    format!(
                        "the model returned {got}-dimensional vectors but {expected} were expected; \
                         set the embeddings dimension to one the model supports"
                    ),
                ));
            }
            if got == 0 || vector.iter().any(|x| !x.is_finite()) {
                return Err(permanent(provider, None, "the model returned an empty or non-finite vector".to_owned()));
            }
            normalize(vector);
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_fractions_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let soon = (chrono::Utc::now() + chrono::TimeDelta::seconds(120)).to_rfc2822();
        let parsed = parse_retry_after(&soon).expect("future HTTP date parses");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120), "{parsed:?}");
        for bad in ["", "soon", "-1", "NaN", "inf"] {
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
        for status in [408, 429, 500, 502, 503, 504, 520] {
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
    }

    #[test]
    fn blanks_get_zero_vectors_in_place() {
        let texts: Vec<String> = ["a", " ", "b", ""].iter().map(|s| (*s).to_owned()).collect();
        let sent = non_blank(&texts);
        assert_eq!(sent, [0, 2]);
        let out = assemble(texts.len(), &sent, vec![vec![1.0, 0.0], vec![0.0, 1.0]], 2);
        assert_eq!(out, [vec![1.0, 0.0], vec![0.0, 0.0], vec![0.0, 1.0], vec![0.0, 0.0]]);
    }

    #[test]
    fn unknown_dimension_is_learned_then_enforced() {
        let dimension = Dimension::new(None);
        assert_eq!(dimension.get(), 0);
        let out = dimension.finish("test", vec![vec![3.0, 4.0]]).expect("first response sets the dimension");
        assert_eq!(out, [vec![0.6, 0.8]]);
        assert_eq!(dimension.get(), 2);
        let err = dimension.finish("test", vec![vec![1.0, 0.0, 0.0]]).expect_err("size changed");
        assert!(!err.is_transient());
        let err = Dimension::new(Some(2)).finish("test", vec![vec![f32::NAN, 1.0]]).expect_err("NaN");
        assert!(!err.is_transient());
    }
}
