//! Anthropic's Messages API: `POST {base_url}/messages` with `x-api-key` and
//! `anthropic-version: 2023-06-01`.
//!
//! The API has no JSON mode, so JSON answers are requested in the system prompt (with the
//! schema) and parsed leniently with [`json::extract_json`]: Claude tends to add a sentence or
//! a code fence around the object.

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

use crate::transport::{self, ErrorClass, RawResponse};
use crate::{GenerateRequest, Generated, LlmError, LlmProvider, ProviderSettings, Usage, json};

const PROVIDER: &str = "anthropic";

/// The public endpoint, used when `base_url` is empty.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";

/// The API version this client speaks.
pub const API_VERSION: &str = "2023-06-01";

/// Phrases of error messages that mean money, not rate: Anthropic reports an empty credit
/// balance or a reached spend limit as a 400 `invalid_request_error`, which would otherwise
/// look like a problem with this one request.
const QUOTA_PHRASES: &[&str] =
    &["credit balance", "spend limit", "spending limit", "billing", "purchase credits", "api usage limits"];

/// The Anthropic Messages API.
#[derive(Debug)]
pub struct AnthropicProvider {
    client: Result<reqwest::Client, String>,
    url: String,
    /// `GET /models/{model}` (the Models API).
    model_url: String,
    api_key: SecretString,
    model: String,
}

impl AnthropicProvider {
    /// A provider for `settings.model` at `settings.base_url` (empty: [`DEFAULT_BASE_URL`]).
    /// `timeout` bounds each request; zero disables it.
    pub fn new(settings: &ProviderSettings, timeout: std::time::Duration) -> Self {
        Self {
            client: transport::build_client(timeout),
            url: transport::endpoint(&settings.base_url, DEFAULT_BASE_URL, "messages"),
            model_url: transport::endpoint(
                &settings.base_url,
                DEFAULT_BASE_URL,
                &format!("models/{}", settings.model.trim()),
            ),
            api_key: settings.api_key.clone(),
            model: settings.model.trim().to_owned(),
        }
    }

    async fn call(&self, request: &GenerateRequest, system: &str) -> Result<Generated<String>, LlmError> {
        let client = transport::client(&self.client, PROVIDER)?;
        let key = self.api_key.expose_secret().trim();
        let body = Body {
            model: &self.model,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            // The API rejects an empty system text, and no system prompt means the same.
            system: (!system.is_empty()).then_some(system),
            messages: [Message { role: "user", content: &request.user }],
        };
        let mut http = client.post(&self.url).header("anthropic-version", API_VERSION).json(&body);
        if !key.is_empty() {
            http = http.header("x-api-key", transport::secret_header(PROVIDER, key)?);
        }
        tracing::debug!(provider = PROVIDER, model = %self.model, "calling the LLM");
        transport::exchange(PROVIDER, http, key, |response| error_from_response(response, key), answer_text, usage)
            .await
    }
}

impl LlmProvider for AnthropicProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    fn generate<'a>(&'a self, request: &'a GenerateRequest) -> BoxFuture<'a, Result<Generated<String>, LlmError>> {
        Box::pin(self.call(request, &request.system))
    }

    fn generate_json<'a>(
        &'a self,
        request: &'a GenerateRequest,
        schema: &'a Value,
    ) -> BoxFuture<'a, Result<Generated<Value>, LlmError>> {
        Box::pin(async move {
            let system = json::system_with_schema(&request.system, schema);
            let answer = self.call(request, &system).await?;
            transport::parse_json(PROVIDER, answer, self.api_key.expose_secret())
        })
    }

    fn check_model(&self) -> BoxFuture<'_, Result<String, LlmError>> {
        Box::pin(async move {
            let client = transport::client(&self.client, PROVIDER)?;
            let key = self.api_key.expose_secret().trim();
            let mut http = client.get(&self.model_url).header("anthropic-version", API_VERSION);
            if !key.is_empty() {
                http = http.header("x-api-key", transport::secret_header(PROVIDER, key)?);
            }
            transport::lookup(
                PROVIDER,
                http,
                key,
                |r| error_from_response(r, key),
                |body| {
                    let id = body.get("id").and_then(Value::as_str).ok_or("the model lookup named no model")?;
                    Ok(format!("{id} is served"))
                },
            )
            .await
        })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<&'a str>,
    messages: [Message<'a>; 1],
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

/// The answer's text: the concatenated `text` blocks of `content`. A `refusal` stop, or no
/// text at all, is an unusable answer.
fn answer_text(body: &Value) -> Result<String, String> {
    let Some(blocks) = body.get("content").and_then(Value::as_array) else {
        return Err("the response has no content".to_owned());
    };
    let stop_reason = body.get("stop_reason").and_then(Value::as_str);
    if stop_reason == Some("refusal") {
        return Err("the model refused to answer (stop_reason refusal)".to_owned());
    }
    let text: String = blocks
        .iter()
        .filter(|block| block.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|block| block.get("text").and_then(Value::as_str))
        .collect();
    if !text.trim().is_empty() {
        return Ok(text);
    }
    Err(match stop_reason {
        Some(reason) => format!("the answer has no text (stop_reason {reason})"),
        None => "the answer has no text".to_owned(),
    })
}

/// The call's tokens from `usage`: `input_tokens` plus the prompt cache's
/// `cache_creation_input_tokens` and `cache_read_input_tokens` in (together the whole prompt),
/// `output_tokens` out.
fn usage(body: &Value) -> Option<Usage> {
    Usage::from_fields(
        body.get("usage"),
        &["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"],
        &["output_tokens"],
    )
}

/// Classifies an error (`{"type":"error","error":{"type","message"}}`): 429 and the 5xx family
/// (500 `api_error`, 529 `overloaded_error`) are transient, honouring `retry-after`; a 400 (or
/// 402/429) about credit or a spend limit is quota exhaustion; other 4xx are permanent.
fn error_from_response(response: &RawResponse, api_key: &str) -> LlmError {
    if let Some(error) = transport::redirect_error(PROVIDER, response, api_key) {
        return error;
    }
    let status = response.status;
    let body = response.json();
    let error = body.as_ref().and_then(|b| b.get("error"));
    let field = |name: &str| error.and_then(|e| e.get(name)).and_then(Value::as_str);
    let mut message =
        field("message").map(str::to_owned).unwrap_or_else(|| transport::body_excerpt(status, &response.body));
    if let Some(kind) = field("type") {
        message = format!("{message} ({kind})");
    }
    let class = if matches!(status, 400 | 402 | 429) && transport::mentions(&message, QUOTA_PHRASES) {
        ErrorClass::QuotaExhausted
    } else if transport::is_transient_status(status) {
        ErrorClass::Transient(transport::retry_after(&response.headers))
    } else {
        ErrorClass::Permanent
    };
    transport::status_error(PROVIDER, response, &message, class, api_key)
}
