//! Gemini's documented bodies (`generateContent`, `models.get`, and Google's error envelope).

use std::time::Duration;

use serde_json::{Value, json};

/// Google's message for a 429 of the free tier.
pub const QUOTA_MESSAGE: &str = "You exceeded your current quota, please check your plan and billing details. \
     For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.";

/// A `generateContent` answer whose one candidate has `parts`, with its `usageMetadata`
/// (12 prompt tokens, 5 candidate tokens).
pub fn text(parts: &[&str]) -> Value {
    let parts: Vec<Value> = parts.iter().map(|t| json!({"text": t})).collect();
    json!({
        "candidates": [{
            "content": {"parts": parts, "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
        "modelVersion": "gemini-2.0-flash"
    })
}

/// Google's error envelope (`google.rpc.Status`).
pub fn error(code: u16, status: &str, message: &str, details: Value) -> Value {
    json!({"error": {"code": code, "message": message, "status": status, "details": details}})
}

/// Google's 429: a `QuotaFailure` naming `quota_id`, a help link, and `RetryInfo` 37s.
pub fn quota_429(quota_id: &str) -> Value {
    quota_429_after(quota_id, Duration::from_secs(37))
}

/// [`quota_429`] with `RetryInfo` of `delay` (Google writes it as seconds, e.g. `"0.4s"`).
pub fn quota_429_after(quota_id: &str, delay: Duration) -> Value {
    error(
        429,
        "RESOURCE_EXHAUSTED",
        QUOTA_MESSAGE,
        json!([
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [{
                    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": "gemini-2.0-flash"},
                    "quotaValue": "15"
                }]
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [{
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits"
                }]
            },
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": format!("{}s", delay.as_secs_f64())}
        ]),
    )
}

/// The 404 for a model the API does not serve (a retired one, say), as `generateContent` and
/// `models.get` answer it.
pub fn model_not_found(model: &str) -> Value {
    error(
        404,
        "NOT_FOUND",
        &format!(
            "models/{model} is not found for API version v1beta, or is not supported for generateContent. \
             Call ListModels to see the list of available models and their supported methods."
        ),
        json!([]),
    )
}

/// The `models.get` resource of a served model.
pub fn model(model: &str) -> Value {
    json!({
        "name": format!("models/{model}"),
        "version": "001",
        "displayName": model,
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 65_536,
        "supportedGenerationMethods": ["generateContent", "countTokens"]
    })
}
