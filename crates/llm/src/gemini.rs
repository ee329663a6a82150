//! Google's Gemini API: `POST {base_url}/models/{model}:generateContent`.
//!
//! The key travels in the `x-goog-api-key` header, never in the `?key=` query parameter the
//! API also accepts: URLs end up in error messages, proxy logs and traces. JSON answers use the
//! API's native structured output (`responseMimeType` + `responseSchema`), which accepts only
//! an OpenAPI subset of JSON Schema, so the caller's schema is converted first.

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::transport::{self, ErrorClass, RawResponse};
use crate::{GenerateRequest, Generated, LlmError, LlmProvider, ProviderSettings, Usage};

const PROVIDER: &str = "gemini";

/// The public endpoint, used when `base_url` is empty.
pub const DEFAULT_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta";

/// The Gemini API.
#[derive(Debug)]
pub struct GeminiProvider {
    client: Result<reqwest::Client, String>,
    url: String,
    /// `models.get` of the model.
    model_url: String,
    api_key: SecretString,
}

impl GeminiProvider {
    /// A provider for `settings.model` (with or without the `models/` prefix) at
    /// `settings.base_url` (empty: [`DEFAULT_BASE_URL`]). `timeout` bounds each request; zero
    /// disables it.
    pub fn new(settings: &ProviderSettings, timeout: std::time::Duration) -> Self {
        let model = settings.model.trim();
        let model = model.strip_prefix("models/").unwrap_or(model);
        Self {
            client: transport::build_client(timeout),
            url: transport::endpoint(&settings.base_url, DEFAULT_BASE_URL, &format!("models/{model}:generateContent")),
            model_url: transport::endpoint(&settings.base_url, DEFAULT_BASE_URL, &format!("models/{model}")),
            api_key: settings.api_key.clone(),
        }
    }

    async fn call(&self, request: &GenerateRequest, schema: Option<&Value>) -> Result<Generated<String>, LlmError> {
        let client = transport::client(&self.client, PROVIDER)?;
        let key = self.api_key.expose_secret().trim();
        let response_schema = schema.map(to_gemini_schema);
        let body = Body {
            system_instruction: (!request.system.is_empty())
                .then(|| Content { role: None, parts: [Part { text: &request.system }] }),
            contents: [Content { role: Some("user"), parts: [Part { text: &request.user }] }],
            generation_config: GenerationConfig {
                max_output_tokens: request.max_tokens,
                temperature: request.temperature,
                response_mime_type: schema.map(|_| "application/json"),
                response_schema: response_schema.as_ref(),
            },
        };
        let mut http = client.post(&self.url).json(&body);
        if !key.is_empty() {
            http = http.header("x-goog-api-key", transport::secret_header(PROVIDER, key)?);
        }
        tracing::debug!(provider = PROVIDER, url = %self.url, json = schema.is_some(), "calling the LLM");
        transport::exchange(PROVIDER, http, key, |response| error_from_response(response, key), answer_text, usage)
            .await
    }
}

impl LlmProvider for GeminiProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn generate<'a>(&'a self, request: &'a GenerateRequest) -> BoxFuture<'a, Result<Generated<String>, LlmError>> {
        Box::pin(self.call(request, None))
    }

    fn generate_json<'a>(
        &'a self,
        request: &'a GenerateRequest,
        schema: &'a Value,
    ) -> BoxFuture<'a, Result<Generated<Value>, LlmError>> {
        Box::pin(async move {
            let answer = self.call(request, Some(schema)).await?;
            transport::parse_json(PROVIDER, answer, self.api_key.expose_secret())
        })
    }

    fn check_model(&self) -> BoxFuture<'_, Result<String, LlmError>> {
        Box::pin(async move {
            let client = transport::client(&self.client, PROVIDER)?;
            let key = self.api_key.expose_secret().trim();
            let mut http = client.get(&self.model_url);
            if !key.is_empty() {
                http = http.header("x-goog-api-key", transport::secret_header(PROVIDER, key)?);
            }
            // `models.get` answers the model resource; a retired model is a 404.
            transport::lookup(
                PROVIDER,
                http,
                key,
                |r| error_from_response(r, key),
                |body| {
                    let name = body.get("name").and_then(Value::as_str).ok_or("the model lookup named no model")?;
                    let methods = body.get("supportedGenerationMethods").and_then(Value::as_array);
                    if methods.is_some_and(|m| !m.iter().any(|m| m.as_str() == Some("generateContent"))) {
                        return Err(format!("{name} does not support generateContent"));
                    }
                    Ok(format!("{name} is served"))
                },
            )
            .await
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<Content<'a>>,
    contents: [Content<'a>; 1],
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    max_output_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<&'a Value>,
}

/// The answer's text: the concatenated text parts of the first candidate. A blocked prompt
/// (no candidates, `promptFeedback.blockReason`) or a candidate stopped for safety or
/// recitation without text is an unusable answer, not an error of the request.
fn answer_text(body: &Value) -> Result<String, String> {
    let candidate = body.get("candidates").and_then(Value::as_array).and_then(|c| c.first());
    let Some(candidate) = candidate else {
        let feedback = body.get("promptFeedback");
        return Err(match feedback.and_then(|f| f.get("blockReason")).and_then(Value::as_str) {
            Some(reason) => {
                let detail = feedback.and_then(|f| f.get("blockReasonMessage")).and_then(Value::as_str);
                match detail {
                    Some(detail) => format!("the prompt was blocked ({reason}): {detail}"),
                    None => format!("the prompt was blocked ({reason})"),
                }
            }
            None => "the response has no candidates".to_owned(),
        });
    };
    let text: String = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        // Thinking models may include their thoughts as parts marked `thought`; they are not
        // the answer.
        .filter(|part| !part.get("thought").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|part| part.get("text").and_then(Value::as_str))
        .collect();
    if !text.trim().is_empty() {
        return Ok(text);
    }
    Err(match candidate.get("finishReason").and_then(Value::as_str) {
        Some(reason) if reason != "STOP" => format!("no text in the answer (finishReason {reason})"),
        _ => "the answer has no text".to_owned(),
    })
}

/// The call's tokens from `usageMetadata`: `promptTokenCount` in (cached content included),
/// `candidatesTokenCount` plus a thinking model's `thoughtsTokenCount` out. A blocked prompt
/// reports only its prompt.
fn usage(body: &Value) -> Option<Usage> {
    Usage::from_fields(
        body.get("usageMetadata"),
        &["promptTokenCount"],
        &["candidatesTokenCount", "thoughtsTokenCount"],
    )
}

/// Converts a JSON Schema to the OpenAPI subset `responseSchema` accepts: keeps `type`,
/// `properties`, `required`, `items`, `enum`, `description`, `nullable`, `minItems`,
/// `maxItems`; drops everything else (`additionalProperties`, `$schema`, `title`, `format`, …),
/// which the API rejects with a 400. `"type": ["string", "null"]` becomes `STRING` +
/// `nullable`; type names are upper-cased as in the API's `Type` enum.
pub fn to_gemini_schema(schema: &Value) -> Value {
    let Some(object) = schema.as_object() else {
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    let mut nullable = object.get("nullable").and_then(Value::as_bool).unwrap_or(false);
    let mut kind = None;
    match object.get("type") {
        Some(Value::String(t)) => kind = Some(t.as_str()),
        Some(Value::Array(types)) => {
            for t in types.iter().filter_map(Value::as_str) {
                if t == "null" {
                    nullable = true;
                } else if kind.is_none() {
                    kind = Some(t);
                }
            }
        }
        _ => {}
    }
    // Gemini's enums are strings only; an enum of other values cannot be expressed, so it is
    // dropped (the caller's validation still checks it).
    let string_enum = object
        .get("enum")
        .and_then(Value::as_array)
        .filter(|values| !values.is_empty() && values.iter().all(Value::is_string));
    if kind.is_none() && string_enum.is_some() {
        kind = Some("string");
    }
    if kind.is_none() && object.contains_key("properties") {
        kind = Some("object");
    }
    if kind.is_none() && object.contains_key("items") {
        kind = Some("array");
    }
    if let Some(kind) = kind {
        out.insert("type".to_owned(), Value::String(kind.to_uppercase()));
    }
    if let Some(description) = object.get("description").filter(|d| d.is_string()) {
        out.insert("description".to_owned(), description.clone());
    }
    if nullable {
        out.insert("nullable".to_owned(), Value::Bool(true));
    }
    if let Some(values) = string_enum {
        out.insert("enum".to_owned(), Value::Array(values.clone()));
    }
    if let Some(properties) = object.get("properties").and_then(Value::as_object) {
        let converted: Map<String, Value> =
            properties.iter().map(|(name, sub)| (name.clone(), to_gemini_schema(sub))).collect();
        // The API rejects `required` names that are not properties.
        if let Some(required) = object.get("required").and_then(Value::as_array) {
            let required: Vec<Value> =
                required.iter().filter(|r| r.as_str().is_some_and(|r| converted.contains_key(r))).cloned().collect();
            if !required.is_empty() {
                out.insert("required".to_owned(), Value::Array(required));
            }
        }
        out.insert("properties".to_owned(), Value::Object(converted));
    }
    if let Some(items) = object.get("items").filter(|i| i.is_object()) {
        out.insert("items".to_owned(), to_gemini_schema(items));
    }
    for bound in ["minItems", "maxItems"] {
        if let Some(n) = object.get(bound).filter(|n| n.is_u64()) {
            out.insert(bound.to_owned(), n.clone());
        }
    }
    Value::Object(out)
}

/// Classifies a Google RPC style error (`{"error":{"code","message","status","details"}}`; some
/// front ends wrap it in a one-element array).
///
/// A 429 is normally a rate limit (per minute), worth retrying after the `RetryInfo` delay (else
/// the `retry-after` header). But a 429 whose `QuotaFailure` names a per-day quota, or whose
/// message speaks of a spending cap, will not clear for hours: quota exhausted.
fn error_from_response(response: &RawResponse, api_key: &str) -> LlmError {
    if let Some(error) = transport::redirect_error(PROVIDER, response, api_key) {
        return error;
    }
    let error = provider_http::GoogleError::parse(response);
    let mut message = error.message.clone();
    let class = if error.key_invalid() {
        ErrorClass::Misconfigured
    } else if let Some(quota) = error.daily_quota() {
        message = format!("{message} [quota {quota}]");
        ErrorClass::QuotaExhausted
    } else if error.spending_cap() {
        ErrorClass::QuotaExhausted
    } else if transport::is_transient_status(response.status) {
        ErrorClass::Transient(error.retry_delay().or_else(|| transport::retry_after(&response.headers)))
    } else {
        ErrorClass::Permanent
    };
    transport::status_error(PROVIDER, response, &message, class, api_key)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn schema_conversion_keeps_the_supported_subset() {
        let schema = json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "Classification",
            "type": "object",
            "additionalProperties": false,
            "properties": {
                "category": {"type": "string", "enum": ["billing", "technical"], "description": "The topic"},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "tags": {"type": "array", "items": {"type": "string", "format": "email"}, "maxItems": 3},
                "note": {"type": ["string", "null"]},
                "level": {"enum": [1, 2, 3]}
            },
            "required": ["category", "confidence", "missing"]
        });
        assert_eq!(
            to_gemini_schema(&schema),
            json!({
                "type": "OBJECT",
                "properties": {
                    "category": {"type": "STRING", "enum": ["billing", "technical"], "description": "The topic"},
                    "confidence": {"type": "NUMBER"},
                    "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 3},
                    "note": {"type": "STRING", "nullable": true},
                    "level": {}
                },
                "required": ["category", "confidence"]
            })
        );
    }

    #[test]
    fn answer_text_concatenates_parts_and_skips_thoughts() {
        let body = json!({"candidates": [{"content": {"parts": [
            {"text": "thinking…", "thought": true}, {"text": "Hello, "}, {"text": "world"}
        ]}, "finishReason": "STOP"}]});
        assert_eq!(answer_text(&body), Ok("Hello, world".to_owned()));
        let cut = json!({"candidates": [{"content": {"parts": []}, "finishReason": "MAX_TOKENS"}]});
        assert!(answer_text(&cut).expect_err("no text").contains("MAX_TOKENS"));
        assert!(answer_text(&json!({})).expect_err("no candidates").contains("no candidates"));
    }
}
