//! [`GmailError`] and the classification of Gmail's error responses: Google's JSON error body
//! (`{"error":{"code","message","errors":[{"domain","reason","message"}],"status","details"}}`)
//! says whether a 403 is a rate limit, an exhausted quota or a scope the access token lacks
//! (`insufficientPermissions`, detail `ACCESS_TOKEN_SCOPE_INSUFFICIENT`, with the accepted
//! scopes in the `WWW-Authenticate` header), and Gmail puts the time a rate limit lifts in the
//! message text ("Retry after 2024-05-01T12:00:00.000Z").

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::scopes;
use crate::transport::{self, RawResponse};

/// How long to wait after an exhausted daily quota when Gmail gives no time: the quota resets
/// once a day, so retrying within minutes only burns requests.
pub(crate) const QUOTA_RETRY: Duration = Duration::from_secs(60 * 60);

/// A Gmail call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GmailError {
    /// Google refused the refresh token (`invalid_grant`: expired, revoked, or the password
    /// changed). Nothing retries this away: an operator has to re-authorise the mailbox.
    #[error(
        "Gmail authorisation lost ({message}); re-authorise the mailbox (run the OAuth consent flow again) \
         and update gmail.refresh_token"
    )]
    ReauthorizationRequired {
        /// Google's explanation.
        message: String,
    },
    /// The access token lacks a scope the call needs: Google answered 403
    /// `insufficientPermissions` (`ACCESS_TOKEN_SCOPE_INSUFFICIENT`), or refused a search or a
    /// raw message because `gmail.metadata` was granted. A configuration error of the mailbox,
    /// not of one message: nothing retries it away, an operator re-authorises the mailbox with
    /// one of the accepted scopes.
    #[error(
        "Gmail refused {operation}: the refresh token was not granted a scope it accepts ({}); re-authorise the \
         mailbox with one of them (`mailroom gmail authorize --scope …`) and update the refresh token ({message})",
        scopes::describe(accepted)
    )]
    InsufficientScope {
        /// The call refused (`users.drafts.create`, …).
        operation: String,
        /// Scopes Google accepts for it: from its `WWW-Authenticate` header, or the API
        /// reference when the header is missing.
        accepted: Vec<String>,
        /// Google's explanation.
        message: String,
    },
    /// The API still answered 401 with a freshly refreshed access token.
    #[error("Gmail rejected the access token even after a refresh (HTTP 401): {message}")]
    Unauthorized {
        /// Gmail's message.
        message: String,
    },
    /// `users.history.list` answered 404: the start history id is older than the history Gmail
    /// keeps (about a week), so the caller must do a full sync.
    #[error("Gmail history from {start_history_id} is no longer available; a full resync is needed")]
    HistoryExpired {
        /// The cursor that expired.
        start_history_id: String,
    },
    /// The message, draft or label does not exist (HTTP 404).
    #[error("Gmail found nothing there (HTTP 404): {message}")]
    NotFound {
        /// Gmail's message.
        message: String,
    },
    /// Per-user or per-project rate limit (429, or 403 `rateLimitExceeded` /
    /// `userRateLimitExceeded`); retry later.
    #[error("Gmail rate limit exceeded (HTTP {status}){}: {message}", retry_suffix(*retry_after))]
    RateLimited {
        /// HTTP status.
        status: u16,
        /// Gmail's message.
        message: String,
        /// When the limit lifts, from the message text or the `Retry-After` header.
        retry_after: Option<Duration>,
    },
    /// Daily quota exhausted (403 `dailyLimitExceeded`, `quotaExceeded`); retry much later.
    #[error("Gmail quota exhausted (HTTP {status}), retry in {}s: {message}", retry_after.as_secs())]
    QuotaExhausted {
        /// HTTP status.
        status: u16,
        /// Gmail's message.
        message: String,
        /// Gmail's time if it gave one, otherwise an hour.
        retry_after: Duration,
    },
    /// Worth retrying: 5xx, timeouts, connection failures.
    #[error("Gmail temporarily unavailable{}: {message}", status_suffix(*status))]
    Transient {
        /// HTTP status, if there was a response.
        status: Option<u16>,
        /// What went wrong.
        message: String,
        /// The server's retry hint.
        retry_after: Option<Duration>,
    },
    /// Will never work as sent: 400, 403 without permission, 409, a redirect, a body that is
    /// not Gmail's, an OAuth2 client the token endpoint does not accept, bad settings.
    #[error("Gmail refused the request{}: {message}", status_suffix(*status))]
    Permanent {
        /// HTTP status, if there was a response.
        status: Option<u16>,
        /// What went wrong.
        message: String,
    },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn retry_suffix(retry_after: Option<Duration>) -> String {
    retry_after.map(|d| format!(", retry in {}s", d.as_secs())).unwrap_or_default()
}

impl GmailError {
    /// Whether only an operator can fix this (a refused refresh token or a missing scope): the
    /// mailbox's authorisation is wrong for every message, not for this one.
    pub fn needs_reauthorization(&self) -> bool {
        matches!(self, Self::ReauthorizationRequired { .. } | Self::InsufficientScope { .. })
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::RateLimited { .. } | Self::QuotaExhausted { .. } | Self::Transient { .. })
    }

    /// How long to wait before retrying, when Gmail said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after, .. } | Self::Transient { retry_after, .. } => *retry_after,
            Self::QuotaExhausted { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The HTTP status of the response that failed, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::HistoryExpired { .. } | Self::NotFound { .. } => Some(404),
            Self::InsufficientScope { .. } => Some(403),
            Self::RateLimited { status, .. } | Self::QuotaExhausted { status, .. } => Some(*status),
            Self::Transient { status, .. } | Self::Permanent { status, .. } => *status,
            Self::ReauthorizationRequired { .. } => None,
        }
    }
}

/// Google's error envelope.
#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: GoogleError,
}

#[derive(Debug, Default, Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorItem>,
    #[serde(default)]
    status: String,
    /// `google.rpc` details; an `ErrorInfo` carries the machine-readable reason.
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Deserialize)]
struct ErrorItem {
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
}

/// The error for a non-success API response other than 401 (handled by the caller, which
/// refreshes the token). `operation` names the call for the message; `secrets` are removed
/// from it.
pub(crate) fn api_error(operation: &str, response: &RawResponse, secrets: &[&str]) -> GmailError {
    let status = response.status;
    let parsed = serde_json::from_slice::<ErrorEnvelope>(&response.body).ok().map(|e| e.error);
    let detail = match &parsed {
        Some(error) if !error.message.trim().is_empty() => transport::excerpt(error.message.trim()),
        _ => transport::body_excerpt(status, &response.body),
    };
    let message = transport::redact(&format!("{operation}: {detail}"), secrets);
    let error = parsed.unwrap_or_default();
    let reasons: Vec<&str> = error.errors.iter().map(|item| item.reason.as_str()).collect();
    let has_reason = |wanted: &[&str]| reasons.iter().any(|reason| wanted.contains(reason));
    // Gmail states when a sending limit lifts only in the text, in the top-level message or in
    // an item's; the header is the generic fallback.
    let hinted = || {
        std::iter::once(error.message.as_str())
            .chain(error.errors.iter().map(|item| item.message.as_str()))
            .find_map(|text| retry_after_from_message(text, Utc::now()))
            .or_else(|| transport::retry_after(&response.headers))
    };

    if let Some(redirect) = transport::redirect_error(response, secrets) {
        return redirect;
    }
    if status == 403
        && let Some(scope_error) =
            scope_error(operation, &error, &response.headers, transport::redact(&detail, secrets))
    {
        return scope_error;
    }
    match status {
        429 => GmailError::RateLimited { status, message, retry_after: hinted() },
        403 if has_reason(&["rateLimitExceeded", "userRateLimitExceeded"]) => {
            GmailError::RateLimited { status, message, retry_after: hinted() }
        }
        403 if has_reason(&["dailyLimitExceeded", "dailyLimitExceededUnreg", "quotaExceeded"])
            || error.status == "RESOURCE_EXHAUSTED" =>
        {
            GmailError::QuotaExhausted { status, message, retry_after: hinted().unwrap_or(QUOTA_RETRY) }
        }
        404 => GmailError::NotFound { message },
        _ if transport::is_transient_status(status) => {
            GmailError::Transient { status: Some(status), message, retry_after: hinted() }
        }
        _ => GmailError::Permanent { status: Some(status), message },
    }
}

/// The error for a 403 about scopes, if it is one: Google's `insufficientPermissions` (with the
/// `ACCESS_TOKEN_SCOPE_INSUFFICIENT` detail and `WWW-Authenticate: … error="insufficient_scope",
/// scope="…"`), or its refusal of a search or raw body under `gmail.metadata` ("Metadata scope
/// does not support 'q' parameter", "Metadata scope doesn't allow format RAW").
fn scope_error(operation: &str, error: &GoogleError, headers: &HeaderMap, message: String) -> Option<GmailError> {
    let challenge = headers.get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let insufficient = error.errors.iter().any(|item| item.reason == "insufficientPermissions")
        || error.details.iter().any(|detail| detail.reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
        || challenge.contains("insufficient_scope");
    let metadata = error.message.to_ascii_lowercase().starts_with("metadata scope");
    if !insufficient && !metadata {
        return None;
    }
    let reference = || scopes::accepted_by(operation).iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    if metadata {
        let accepted = reference().into_iter().filter(|s| s != scopes::METADATA).collect();
        let message = format!(
            "{message}; gmail.metadata was granted, and Gmail refuses this with it even beside broader scopes: \
             authorise without it"
        );
        return Some(GmailError::InsufficientScope { operation: operation.to_owned(), accepted, message });
    }
    let announced = challenge_param(challenge, "scope").map(|list| scopes::parse_list(&list)).unwrap_or_default();
    let accepted = if announced.is_empty() { reference() } else { announced };
    Some(GmailError::InsufficientScope { operation: operation.to_owned(), accepted, message })
}

/// A parameter of a `WWW-Authenticate` challenge (RFC 6750 §3), quoted or not.
fn challenge_param(challenge: &str, name: &str) -> Option<String> {
    let key = format!("{name}=");
    // The key at the start of a parameter, not inside another one (`error="insufficient_scope"`).
    let start = challenge
        .match_indices(&key)
        .map(|(at, _)| at)
        .find(|&at| challenge[..at].chars().next_back().is_none_or(|c| c == ' ' || c == ','))?
        + key.len();
    let rest = &challenge[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().map(str::to_owned),
        None => rest.split([',', ' ']).next().map(str::to_owned),
    }
}

/// The wait Gmail announces in a message like "User-rate limit exceeded.  Retry after
/// 2024-05-01T12:00:00.000Z": the time until then, zero if it has passed.
pub(crate) fn retry_after_from_message(message: &str, now: DateTime<Utc>) -> Option<Duration> {
    const MARKER: &str = "retry after";
    // ASCII lower-casing keeps byte offsets, so the index is valid in the original text.
    let start = message.to_ascii_lowercase().find(MARKER)? + MARKER.len();
    let token = message[start..].split_whitespace().next()?;
    // The time may end the sentence: "…000Z." or be quoted.
    let token = token.trim_end_matches(['.', ',', ';', ')', '"', '\'']).trim_start_matches(['(', '"', '\'']);
    let when = DateTime::parse_from_rfc3339(token).ok()?;
    let millis = when.timestamp_millis().saturating_sub(now.timestamp_millis());
    Some(Duration::from_millis(u64::try_from(millis).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2024-05-01T11:58:00Z").expect("valid time").with_timezone(&Utc)
    }

    #[test]
    fn challenge_parameters_quoted_or_not() {
        let google = r#"Bearer realm="https://accounts.google.com/", error="insufficient_scope", scope="https://mail.google.com/ https://www.googleapis.com/auth/gmail.send""#;
        assert_eq!(
            challenge_param(google, "scope").as_deref(),
            Some("https://mail.google.com/ https://www.googleapis.com/auth/gmail.send")
        );
        assert_eq!(challenge_param(google, "error").as_deref(), Some("insufficient_scope"));
        let bare = "Bearer realm=\"x\", error=insufficient_scope, scope=gmail";
        assert_eq!(challenge_param(bare, "error").as_deref(), Some("insufficient_scope"));
        assert_eq!(challenge_param(bare, "scope").as_deref(), Some("gmail"));
        assert_eq!(challenge_param("Bearer realm=\"x\"", "scope"), None);
    }

    #[test]
    fn retry_time_in_gmail_message_text() {
        let text = "User-rate limit exceeded.  Retry after 2024-05-01T12:00:00.000Z";
        assert_eq!(retry_after_from_message(text, now()), Some(Duration::from_secs(120)));
        let text = "Rate limit exceeded. retry after 2024-05-01T11:58:01.500Z.";
        assert_eq!(retry_after_from_message(text, now()), Some(Duration::from_millis(1500)));
        let text = "User-rate limit exceeded.  Retry after 2024-05-01T14:00:00+02:00";
        assert_eq!(retry_after_from_message(text, now()), Some(Duration::from_secs(120)));
        let past = "User-rate limit exceeded.  Retry after 2024-05-01T11:00:00.000Z";
        assert_eq!(retry_after_from_message(past, now()), Some(Duration::ZERO));
        for text in ["User Rate Limit Exceeded", "Retry after", "Retry after tomorrow", ""] {
            assert_eq!(retry_after_from_message(text, now()), None, "{text:?}");
        }
    }
}
