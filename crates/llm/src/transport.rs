//! What the three HTTP providers share beyond [`provider_http`]: mapping its failures and the
//! providers' error classification into [`LlmError`], taking the answer and its token usage
//! from a success, and endpoint joining.

use reqwest::header::HeaderValue;

pub(crate) use provider_http::{
    RawResponse, body_excerpt, build_client, excerpt, is_transient_status, redact, retry_after,
};

use crate::LlmError;
use crate::usage::{Generated, Usage};

/// The client, or the error a call returns when there is none (constructors are infallible
/// by interface, so the reason is kept until the first call).
pub(crate) fn client<'a>(
    client: &'a Result<reqwest::Client, String>,
    provider: &str,
) -> Result<&'a reqwest::Client, LlmError> {
    client.as_ref().map_err(|reason| misconfigured(provider, None, reason.clone()))
}

/// A sensitive header value holding the (trimmed) API key (see [`provider_http::secret_header`]).
pub(crate) fn secret_header(provider: &str, value: &str) -> Result<HeaderValue, LlmError> {
    provider_http::secret_header(value).map_err(|e| misconfigured(provider, None, e.to_string()))
}

/// Sends the request and reads the whole body; timeouts and connection problems are
/// transient; a request that cannot be sent at all (a malformed `base_url`) is configuration.
pub(crate) async fn send(
    provider: &str,
    request: reqwest::RequestBuilder,
    api_key: &str,
) -> Result<RawResponse, LlmError> {
    provider_http::send(request, api_key).await.map_err(|e| {
        let message = e.to_string();
        if e.is_transient() {
            LlmError::Transient { provider: provider.to_owned(), status: None, message, retry_after: None }
        } else {
            misconfigured(provider, None, message)
        }
    })
}

/// One call: send, classify a non-success answer with `on_error`, and take the answer's text
/// from a success with `answer` (an error there is unusable output) and its token usage with
/// `usage`. The key is redacted from every message.
pub(crate) async fn exchange(
    provider: &str,
    request: reqwest::RequestBuilder,
    api_key: &str,
    on_error: impl FnOnce(&RawResponse) -> LlmError,
    answer: impl FnOnce(&serde_json::Value) -> Result<String, String>,
    usage: impl FnOnce(&serde_json::Value) -> Option<Usage>,
) -> Result<Generated<String>, LlmError> {
    let (_, body) = json_body(provider, request, api_key, on_error).await?;
    let usage = usage(&body);
    match answer(&body) {
        Ok(value) => Ok(Generated { value, usage }),
        Err(message) => Err(invalid_output(provider, redact(&message, api_key), usage)),
    }
}

/// Sends the request and returns the status and JSON body of a success; a failure is classified
/// by `on_error`, a success that is not JSON is a configuration error ([`unexpected_body`]).
async fn json_body(
    provider: &str,
    request: reqwest::RequestBuilder,
    api_key: &str,
    on_error: impl FnOnce(&RawResponse) -> LlmError,
) -> Result<(u16, serde_json::Value), LlmError> {
    let response = send(provider, request, api_key).await?;
    if !response.is_success() {
        return Err(on_error(&response));
    }
    let body = response.json().ok_or_else(|| unexpected_body(provider, &response, api_key))?;
    Ok((response.status, body))
}

/// The JSON value in a model's text answer ([`crate::json::extract_json`]), with the answer's
/// usage; text that holds none is unusable output of that provider (whose tokens were spent
/// all the same).
pub(crate) fn parse_json(
    provider: &str,
    answer: Generated<String>,
    api_key: &str,
) -> Result<Generated<serde_json::Value>, LlmError> {
    match crate::json::extract_json(&answer.value) {
        Ok(value) => Ok(Generated { value, usage: answer.usage }),
        Err(e) => Err(invalid_output(provider, redact(&e, api_key), answer.usage)),
    }
}

/// The error for a redirect (see [`provider_http::redirect_message`]); `None` for any other
/// status.
pub(crate) fn redirect_error(provider: &str, response: &RawResponse, api_key: &str) -> Option<LlmError> {
    provider_http::redirect_message(response, api_key)
        .map(|message| misconfigured(provider, Some(response.status), message))
}

/// Shorthand for a configuration error.
pub(crate) fn misconfigured(provider: &str, status: Option<u16>, message: String) -> LlmError {
    LlmError::Misconfigured { provider: provider.to_owned(), status, message }
}

/// Shorthand for an unusable answer that cost `usage`. `message` must already be redacted.
pub(crate) fn invalid_output(provider: &str, message: String, usage: Option<Usage>) -> LlmError {
    LlmError::InvalidOutput { provider: provider.to_owned(), message, usage }
}

/// The error for a 2xx response whose body is not the documented shape: usually a wrong
/// `base_url` that reaches some other web server, hence configuration.
pub(crate) fn unexpected_body(provider: &str, response: &RawResponse, api_key: &str) -> LlmError {
    let message = format!("unexpected response body: {}", body_excerpt(response.status, &response.body));
    misconfigured(provider, Some(response.status), redact(&message, api_key))
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
        // Whatever the provider's own words, these statuses refuse every request alike.
        ErrorClass::Permanent if matches!(response.status, 401 | 403 | 404) => {
            LlmError::Misconfigured { provider, status, message }
        }
        ErrorClass::Permanent => LlmError::Permanent { provider, status, message },
        ErrorClass::Misconfigured => LlmError::Misconfigured { provider, status, message },
    }
}

/// How a provider classified an error response.
pub(crate) enum ErrorClass {
    /// Retry later, after the hint if there is one.
    Transient(Option<std::time::Duration>),
    /// Out of money or quota.
    QuotaExhausted,
    /// Will never work as sent (401, 403 and 404 are made [`ErrorClass::Misconfigured`]).
    Permanent,
    /// No request will work until the configuration is fixed.
    Misconfigured,
}

/// Whether any of `needles` (lower case) occurs in `haystack`, ignoring case.
pub(crate) fn mentions(haystack: &str, needles: &[&str]) -> bool {
    let haystack = haystack.to_lowercase();
    needles.iter().any(|needle| haystack.contains(needle))
}

/// A model lookup (`GET`): sends `request`, classifies a non-success answer with `on_error`,
/// and checks the body with `found` (an error there means the model is not served: a
/// configuration error, like a 404).
pub(crate) async fn lookup(
    provider: &str,
    request: reqwest::RequestBuilder,
    api_key: &str,
    on_error: impl FnOnce(&RawResponse) -> LlmError,
    found: impl FnOnce(&serde_json::Value) -> Result<String, String>,
) -> Result<String, LlmError> {
    let (status, body) = json_body(provider, request, api_key, on_error).await?;
    found(&body).map_err(|message| misconfigured(provider, Some(status), redact(&message, api_key)))
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
    fn endpoints() {
        assert_eq!(endpoint("http://h/v1/", "https://d", "/messages"), "http://h/v1/messages");
        assert_eq!(endpoint(" ", "https://d/v1", "messages"), "https://d/v1/messages");
    }
}
