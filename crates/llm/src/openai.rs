//! Any OpenAI-compatible `POST {base_url}/chat/completions` endpoint: OpenAI itself, Ollama,
//! vLLM, llama.cpp's server and the like.
//!
//! JSON answers use `response_format: {"type": "json_object"}` (the most widely supported JSON
//! mode; `json_schema` is not), with the schema in the system message — OpenAI rejects JSON
//! mode unless the word "JSON" appears in the messages. Error bodies differ between servers
//! (`{"error":{"message":…}}`, `{"error":"…"}`, a flat `{"message":…}`), so error parsing is
//! lenient and falls back to quoting the body.

use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::Value;

use crate::transport::{self, ErrorClass, RawResponse};
use crate::{GenerateRequest, Generated, LlmError, LlmProvider, ProviderSettings, Usage, json};

/// The name used when none is configured.
pub const DEFAULT_NAME: &str = "openai";

/// The public endpoint, used when `base_url` is empty.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// An OpenAI-compatible chat completions server.
#[derive(Debug)]
pub struct OpenAiProvider {
    name: String,
    client: Result<reqwest::Client, String>,
    url: String,
    /// The model list (`GET /models`), which every compatible server (vLLM, Ollama,
    /// llama.cpp) serves, unlike the single-model lookup.
    models_url: String,
    api_key: SecretString,
    model: String,
}

impl OpenAiProvider {
    /// A provider named `name` (e.g. `ollama`; empty: [`DEFAULT_NAME`]) for `settings.model` at
    /// `settings.base_url` (empty: [`DEFAULT_BASE_URL`]). An empty key sends no
    /// `Authorization` header, as local servers expect. `timeout` bounds each request; zero
    /// disables it.
    pub fn new(name: &str, settings: &ProviderSettings, timeout: std::time::Duration) -> Self {
        let name = name.trim();
        Self {
            name: if name.is_empty() { DEFAULT_NAME.to_owned() } else { name.to_owned() },
            client: transport::build_client(timeout),
            url: transport::endpoint(&settings.base_url, DEFAULT_BASE_URL, "chat/completions"),
            models_url: transport::endpoint(&settings.base_url, DEFAULT_BASE_URL, "models"),
            api_key: settings.api_key.clone(),
            model: settings.model.trim().to_owned(),
        }
    }

    async fn call(&self, request: &GenerateRequest, schema: Option<&Value>) -> Result<Generated<String>, LlmError> {
        let provider = self.name.as_str();
        let client = transport::client(&self.client, provider)?;
        let key = self.api_key.expose_secret().trim();
        let system = match schema {
            Some(schema) => json::system_with_schema(&request.system, schema),
            None => request.system.clone(),
        };
        let mut messages = Vec::with_capacity(2);
        if !system.is_empty() {
            messages.push(Message { role: "system", content: &system });
        }
        messages.push(Message { role: "user", content: &request.user });
        let body = Body {
            model: &self.model,
            messages,
            max_tokens: request.max_tokens,
            temperature: request.temperature,
            response_format: schema.map(|_| ResponseFormat { kind: "json_object" }),
        };
        let mut http = client.post(&self.url).json(&body);
        // Local servers (Ollama, vLLM) need no key, and some reject an empty bearer token.
        if !key.is_empty() {
            let value = transport::secret_header(provider, &format!("Bearer {key}"))?;
            http = http.header(reqwest::header::AUTHORIZATION, value);
        }
        tracing::debug!(provider, model = %self.model, json = schema.is_some(), "calling the LLM");
        transport::exchange(
            provider,
            http,
            key,
            |response| error_from_response(provider, response, key),
            answer_text,
            usage,
        )
        .await
    }
}

impl LlmProvider for OpenAiProvider {
    fn name(&self) -> &str {
        &self.name
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
            transport::parse_json(&self.name, answer, self.api_key.expose_secret())
        })
    }

    fn check_model(&self) -> BoxFuture<'_, Result<String, LlmError>> {
        Box::pin(async move {
            let provider = self.name.as_str();
            let client = transport::client(&self.client, provider)?;
            let key = self.api_key.expose_secret().trim();
            let mut http = client.get(&self.models_url);
            if !key.is_empty() {
                let value = transport::secret_header(provider, &format!("Bearer {key}"))?;
                http = http.header(reqwest::header::AUTHORIZATION, value);
            }
            let model = self.model.as_str();
            transport::lookup(
                provider,
                http,
                key,
                |r| error_from_response(provider, r, key),
                |body| {
                    let ids: Vec<&str> = body
                        .get("data")
                        .and_then(Value::as_array)
                        .ok_or("the model list has no `data`")?
                        .iter()
                        .filter_map(|m| m.get("id").and_then(Value::as_str))
                        .collect();
                    if ids.contains(&model) {
                        Ok(format!("{model} is served"))
                    } else {
                        let some: Vec<&str> = ids.iter().take(8).copied().collect();
                        Err(format!(
                            "model {model} is not served here (model_not_found); it serves {}",
                            some.join(", ")
                        ))
                    }
                },
            )
            .await
        })
    }
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Vec<Message<'a>>,
    max_tokens: u32,
    temperature: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat>,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The answer's text: `choices[0].message.content`. A content filter stop, a refusal, or a
/// missing or empty content is an unusable answer.
fn answer_text(body: &Value) -> Result<String, String> {
    let Some(choice) = body.get("choices").and_then(Value::as_array).and_then(|c| c.first()) else {
        return Err("the response has no choices".to_owned());
    };
    let finish_reason = choice.get("finish_reason").and_then(Value::as_str);
    if finish_reason == Some("content_filter") {
        return Err("the answer was withheld by the content filter (finish_reason content_filter)".to_owned());
    }
    let message = choice.get("message");
    if let Some(refusal) = message.and_then(|m| m.get("refusal")).and_then(Value::as_str) {
        return Err(format!("the model refused to answer: {}", transport::excerpt(refusal)));
    }
    match message.and_then(|m| m.get("content")).and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => Ok(text.to_owned()),
        _ => Err(match finish_reason {
            Some(reason) => format!("the answer has no content (finish_reason {reason})"),
            None => "the answer has no content".to_owned(),
        }),
    }
}

/// The call's tokens from `usage`: `prompt_tokens` in, `completion_tokens` (reasoning tokens
/// included) out. Some compatible servers send no `usage`, or `null`: unknown.
fn usage(body: &Value) -> Option<Usage> {
    Usage::from_fields(body.get("usage"), &["prompt_tokens"], &["completion_tokens"])
}

/// Classifies an error response. A 429 normally means "slow down", but OpenAI also uses it for
/// an exhausted balance (`insufficient_quota`), which no amount of waiting fixes.
fn error_from_response(provider: &str, response: &RawResponse, api_key: &str) -> LlmError {
    if let Some(error) = transport::redirect_error(provider, response, api_key) {
        return error;
    }
    let error = provider_http::OpenAiError::parse(response);
    // A wrong key or model is named by its code whatever the status a compatible server uses.
    let class = if error.quota_exhausted() {
        ErrorClass::QuotaExhausted
    } else if error.misconfigured() {
        ErrorClass::Misconfigured
    } else if transport::is_transient_status(response.status) {
        ErrorClass::Transient(transport::retry_after(&response.headers))
    } else {
        ErrorClass::Permanent
    };
    let message = error.message;
    transport::status_error(provider, response, &message, class, api_key)
}
