//! What a provider's error response says, read once for every client that speaks the wire
//! format: the OpenAI shape (`{"error":{"message","type","code"}}`, used by every
//! OpenAI-compatible server, for chat completions and embeddings alike) and the Google RPC
//! shape (`{"error":{"code","message","status","details"}}`, some front ends wrap it in a
//! one-element array; Gemini generation and embeddings alike).
//!
//! Each crate still maps the result into its own error type (the LLM chain knows more classes
//! than the embedders), but which codes mean "quota exhausted" or "wrong key" is decided here,
//! so the two cannot drift apart.

use std::time::Duration;

use serde_json::Value;

use crate::{RawResponse, body_excerpt, parse_proto_duration};

/// OpenAI error codes (or types) that mean money, not rate: a 429 `insufficient_quota` will not
/// clear by waiting.
pub const OPENAI_QUOTA_CODES: &[&str] = &["insufficient_quota", "billing_hard_limit_reached", "billing_not_active"];

/// OpenAI error codes that name a configuration error whatever status a compatible server
/// sends with them.
pub const OPENAI_MISCONFIGURATION_CODES: &[&str] = &["invalid_api_key", "model_not_found"];

/// Phrases of a Google 429 message that mean money, not rate: a spending cap or depleted
/// prepaid credits (lower-case). Every Gemini 429 says "check your plan and billing details", so
/// "billing" alone does not count.
pub const GOOGLE_QUOTA_PHRASES: &[&str] = &[
    "spending cap",
    "spend cap",
    "spending limit",
    "spend limit",
    "credits are depleted",
    "billing account",
    "billing is disabled",
    "billing has been disabled",
    "billing is not enabled",
];

/// An OpenAI-shaped error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiError {
    /// The provider's message with its code appended (`… (insufficient_quota)`), or an excerpt
    /// of the body. Not redacted.
    pub message: String,
    /// `error.code`.
    pub code: Option<String>,
    /// `error.type`.
    pub kind: Option<String>,
}

impl OpenAiError {
    /// Reads the body of an error response.
    pub fn parse(response: &RawResponse) -> Self {
        let body = response.json();
        let error = body.as_ref().and_then(|b| b.get("error"));
        let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str).map(str::to_owned);
        let message = field("message")
            .or_else(|| error.and_then(Value::as_str).map(str::to_owned))
            .or_else(|| body.as_ref().and_then(|b| b.get("message")).and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| body_excerpt(response.status, &response.body));
        let (code, kind) = (field("code"), field("type"));
        let message = match code.as_deref().or(kind.as_deref()) {
            Some(code) => format!("{message} ({code})"),
            None => message,
        };
        Self { message, code, kind }
    }

    fn has_code(&self, codes: &[&str]) -> bool {
        [&self.code, &self.kind].into_iter().flatten().any(|c| codes.contains(&c.as_str()))
    }

    /// The balance or spend limit is exhausted: waiting will not help.
    pub fn quota_exhausted(&self) -> bool {
        self.has_code(OPENAI_QUOTA_CODES)
    }

    /// A wrong key or model, named by its code.
    pub fn misconfigured(&self) -> bool {
        self.has_code(OPENAI_MISCONFIGURATION_CODES)
    }
}

/// A Google-RPC-shaped error response.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleError {
    /// The provider's message with the RPC status appended (`… (RESOURCE_EXHAUSTED)`), or an
    /// excerpt of the body. Not redacted.
    pub message: String,
    /// `error.details`.
    pub details: Vec<Value>,
    status: u16,
}

impl GoogleError {
    /// Reads the body of an error response.
    pub fn parse(response: &RawResponse) -> Self {
        let body = response.json();
        let error =
            body.as_ref().and_then(|b| b.get("error").or_else(|| b.get(0).and_then(|first| first.get("error"))));
        let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str);
        let mut message =
            field("message").map(str::to_owned).unwrap_or_else(|| body_excerpt(response.status, &response.body));
        if let Some(rpc_status) = field("status") {
            message = format!("{message} ({rpc_status})");
        }
        let details = error.and_then(|e| e.get("details")).and_then(Value::as_array).cloned().unwrap_or_default();
        Self { message, details, status: response.status }
    }

    /// The details of one `@type` (e.g. `google.rpc.RetryInfo`).
    pub fn detail(&self, kind: &'static str) -> impl Iterator<Item = &Value> {
        self.details.iter().filter(move |d| d.get("@type").and_then(Value::as_str).is_some_and(|t| t.ends_with(kind)))
    }

    /// A wrong key: a 400 INVALID_ARGUMENT whose `ErrorInfo` says `API_KEY_INVALID`.
    pub fn key_invalid(&self) -> bool {
        self.detail("google.rpc.ErrorInfo")
            .any(|info| info.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
            || self.message.starts_with("API key not valid")
    }

    /// A 429 whose `QuotaFailure` names a per-day quota (its id): it will not clear for hours.
    pub fn daily_quota(&self) -> Option<String> {
        if self.status != 429 {
            return None;
        }
        daily_quota_violation(self.detail("google.rpc.QuotaFailure"))
    }

    /// A 429 whose message speaks of a spending cap or depleted credits.
    pub fn spending_cap(&self) -> bool {
        let message = self.message.to_lowercase();
        self.status == 429 && GOOGLE_QUOTA_PHRASES.iter().any(|p| message.contains(p))
    }

    /// The `RetryInfo` delay, when the error carries one.
    pub fn retry_delay(&self) -> Option<Duration> {
        self.detail("google.rpc.RetryInfo")
            .find_map(|info| info.get("retryDelay").and_then(Value::as_str))
            .and_then(parse_proto_duration)
    }
}

/// The id of the first per-day quota among `QuotaFailure` violations (`quotaId` such as
/// `GenerateRequestsPerDayPerProjectPerModel-FreeTier`, or a `quotaMetric`/`description` that
/// says so).
fn daily_quota_violation<'a>(failures: impl Iterator<Item = &'a Value>) -> Option<String> {
    failures
        .flat_map(|failure| failure.get("violations").and_then(Value::as_array).into_iter().flatten())
        .find(|violation| {
            ["quotaId", "quotaMetric", "description"].iter().any(|field| {
                violation.get(*field).and_then(Value::as_str).is_some_and(|text| {
                    let text = text.to_lowercase();
                    text.contains("perday") || text.contains("per_day") || text.contains("per day")
                })
            })
        })
        .map(|violation| {
            violation
                .get("quotaId")
                .or_else(|| violation.get("quotaMetric"))
                .and_then(Value::as_str)
                .unwrap_or("per day")
                .to_owned()
        })
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderMap;
    use serde_json::json;

    use super::*;

    fn response(status: u16, body: Value) -> RawResponse {
        RawResponse { status, headers: HeaderMap::new(), body: body.to_string().into_bytes() }
    }

    #[test]
    fn openai_codes_name_quota_and_configuration_errors() {
        for code in OPENAI_QUOTA_CODES {
            let e = OpenAiError::parse(&response(429, json!({"error": {"message": "m", "type": code, "code": null}})));
            assert!(e.quota_exhausted() && !e.misconfigured(), "{code}");
        }
        let e = OpenAiError::parse(&response(
            401,
            json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        ));
        assert!(e.misconfigured() && !e.quota_exhausted());
        assert_eq!(e.message, "Incorrect API key provided (invalid_api_key)");
        let plain =
            OpenAiError::parse(&RawResponse { status: 502, headers: HeaderMap::new(), body: b"bad gateway".to_vec() });
        assert_eq!((plain.message.as_str(), plain.code), ("bad gateway", None));
    }

    #[test]
    fn google_errors_say_whether_the_key_or_the_daily_quota_is_the_problem() {
        let key = GoogleError::parse(&response(
            400,
            json!([{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}}]),
        ));
        assert!(key.key_invalid());
        assert_eq!(key.message, "API key not valid. Please pass a valid API key. (INVALID_ARGUMENT)");
        let daily = GoogleError::parse(&response(
            429,
            json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED", "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier"}]},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"}]}}),
        ));
        assert_eq!(daily.daily_quota().as_deref(), Some("GenerateRequestsPerDayPerProjectPerModel-FreeTier"));
        assert_eq!(daily.retry_delay(), Some(Duration::from_secs(37)));
        let rate = GoogleError::parse(&response(
            429,
            json!({"error": {"code": 429, "message": "Resource exhausted. Please check your plan and billing details.", "status": "RESOURCE_EXHAUSTED"}}),
        ));
        assert_eq!((rate.daily_quota(), rate.spending_cap()), (None, false));
        let cap = GoogleError::parse(&response(
            429,
            json!({"error": {"code": 429, "message": "Your project has exceeded its monthly spending cap.", "status": "RESOURCE_EXHAUSTED"}}),
        ));
        assert!(cap.spending_cap());
    }
}
