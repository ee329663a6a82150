//! Embeddings from any OpenAI-compatible `POST {base_url}/embeddings` endpoint: OpenAI itself,
//! Ollama, vLLM, llama.cpp's server and the like.
//!
//! Error bodies differ between these servers (`{"error":{"message":…}}`, `{"error":"…"}`,
//! vLLM's flat `{"message":…}`), so error parsing is lenient and falls back to quoting the body.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::transport::{self, Dimension, RawResponse};
use crate::{EmbedError, ProviderSettings};

const PROVIDER: &str = "openai";

/// OpenAI's limit on inputs per request; larger batches are split.
const MAX_INPUTS_PER_REQUEST: usize = 2048;

/// Embedder for OpenAI-compatible servers.
#[derive(Debug)]
pub struct OpenAiEmbedder {
    client: Result<reqwest::Client, String>,
    url: String,
    api_key: SecretString,
    model: String,
    dimensions: Option<usize>,
    dimension: Dimension,
    model_id: String,
}

impl OpenAiEmbedder {
    /// An embedder for `settings.model` at `settings.base_url` (e.g. `https://api.openai.com/v1`).
    /// `dimensions` is sent as the request's `dimensions` (only some models support it); without
    /// it the model's native size is used. `timeout` bounds each request; zero disables it.
    pub fn new(settings: &ProviderSettings, dimensions: Option<usize>, timeout: std::time::Duration) -> Self {
        let native = dimensions.or_else(|| native_dimension(&settings.model));
        let model_id = match native {
            Some(d) => format!("openai-{}-{d}", settings.model),
            None => format!("openai-{}-native", settings.model),
        };
        let url = format!("{}/embeddings", settings.base_url.trim_end_matches('/'));
        Self {
            client: transport::build_client(timeout),
            url,
            api_key: settings.api_key.clone(),
            model: settings.model.clone(),
            dimensions,
            dimension: Dimension::new(native),
            model_id,
        }
    }

    async fn embed_batch(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let client = self.client.as_ref().map_err(|e| transport::client_unavailable(PROVIDER, e))?;
        // Keys pasted from files or env vars often carry a trailing newline, which is not a
        // valid header character.
        let key = self.api_key.expose_secret().trim();
        let body = EmbeddingsRequest {
            model: &self.model,
            input: inputs,
            encoding_format: "float",
            dimensions: self.dimensions,
        };
        let mut request = client.post(&self.url).json(&body);
        // Local servers (Ollama, vLLM) need no key, and some reject an empty bearer token.
        if !key.is_empty() {
            request = request.bearer_auth(key);
        }
        tracing::debug!(provider = PROVIDER, model = %self.model, inputs = inputs.len(), "requesting embeddings");
        let parsed: EmbeddingsResponse = transport::call(PROVIDER, request, key, error_from_response).await?;
        let vectors = in_input_order(parsed.data, inputs.len())?;
        self.dimension.finish(PROVIDER, vectors)
    }
}

transport::impl_embedder!(OpenAiEmbedder, MAX_INPUTS_PER_REQUEST);

/// Native sizes of OpenAI's models, so `dimension()` is right before the first call.
fn native_dimension(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        _ => None,
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [&'a str],
    encoding_format: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    /// Some compatible servers omit it; their data is then taken in array order.
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

/// Orders the returned embeddings by their `index`: the API does not promise array order.
fn in_input_order(data: Vec<EmbeddingItem>, expected: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mismatch = |what: String| transport::permanent(PROVIDER, None, what);
    if data.len() != expected {
        return Err(mismatch(format!("the server returned {} embeddings for {expected} inputs", data.len())));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for (position, item) in data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        match slots.get_mut(index) {
            Some(slot @ None) => *slot = Some(item.embedding),
            Some(Some(_)) => return Err(mismatch(format!("the server returned index {index} twice"))),
            None => return Err(mismatch(format!("the server returned index {index} for {expected} inputs"))),
        }
    }
    // Cannot be short: the count matched and no index was repeated.
    slots.into_iter().collect::<Option<Vec<_>>>().ok_or_else(|| mismatch("the server skipped an index".to_owned()))
}

/// Classifies an error response ([`provider_http::OpenAiError`]). A 429 normally means "slow
/// down", but OpenAI also uses it for an exhausted balance or spend limit (`insufficient_quota`
/// and the other quota codes), which no amount of waiting fixes.
fn error_from_response(response: &RawResponse, api_key: &str) -> EmbedError {
    if let Some(error) = transport::redirect_error(PROVIDER, response, api_key) {
        return error;
    }
    let status = response.status;
    let error = provider_http::OpenAiError::parse(response);
    // Money or a wrong key or model: waiting will not help, whatever the status.
    let transient = transport::is_transient_status(status) && !error.quota_exhausted() && !error.misconfigured();
    let retry_after = if transient { transport::retry_after(&response.headers) } else { None };
    let message = error.message;
    transport::status_error(PROVIDER, status, transport::redact(&message, api_key), transient, retry_after)
}
