//! Embeddings from the Gemini API's `models/{model}:batchEmbedContents`.
//!
//! The key travels in the `x-goog-api-key` header, never in the `?key=` query parameter the
//! API also accepts: URLs end up in error messages, proxy logs and traces.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::transport::{self, Dimension, RawResponse};
use crate::{EmbedError, ProviderSettings};

const PROVIDER: &str = "gemini";

/// The API's limit on requests per `batchEmbedContents` call; larger batches are split.
const MAX_REQUESTS_PER_BATCH: usize = 100;

/// The same embedder serves documents and queries; RETRIEVAL_DOCUMENT keeps both in one space.
const TASK_TYPE: &str = "RETRIEVAL_DOCUMENT";

/// Embedder for the Gemini API.
#[derive(Debug)]
pub struct GeminiEmbedder {
    client: Result<reqwest::Client, String>,
    url: String,
    /// `models/{model}`, as each request in the batch must name it.
    model_path: String,
    api_key: SecretString,
    output_dimensionality: Option<usize>,
    dimension: Dimension,
    model_id: String,
}

impl GeminiEmbedder {
    /// An embedder for `settings.model` (with or without the `models/` prefix) at
    /// `settings.base_url` (e.g. `https://generativelanguage.googleapis.com/v1beta`).
    /// `dimensions` is sent as `outputDimensionality`; without it the model's native size is
    /// used. `timeout` bounds each request; zero disables it.
    pub fn new(settings: &ProviderSettings, dimensions: Option<usize>, timeout: std::time::Duration) -> Self {
        let model = settings.model.strip_prefix("models/").unwrap_or(&settings.model);
        let native = dimensions.or_else(|| native_dimension(model));
        let model_id = match native {
            Some(d) => format!("gemini-{model}-{d}"),
            None => format!("gemini-{model}-native"),
        };
        let url = format!("{}/models/{model}:batchEmbedContents", settings.base_url.trim_end_matches('/'));
        Self {
            client: transport::build_client(timeout),
            url,
            model_path: format!("models/{model}"),
            api_key: settings.api_key.clone(),
            output_dimensionality: dimensions,
            dimension: Dimension::new(native),
            model_id,
        }
    }

    async fn embed_batch(&self, inputs: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let client = self.client.as_ref().map_err(|e| transport::client_unavailable(PROVIDER, e))?;
        let key = self.api_key.expose_secret().trim();
        let body = BatchRequest {
            requests: inputs
                .iter()
                .map(|text| EmbedRequest {
                    model: &self.model_path,
                    content: Content { parts: [Part { text }] },
                    task_type: TASK_TYPE,
                    output_dimensionality: self.output_dimensionality,
                })
                .collect(),
        };
        let mut request = client.post(&self.url).json(&body);
        if !key.is_empty() {
            request = request.header("x-goog-api-key", transport::secret_header(PROVIDER, key)?);
        }
        tracing::debug!(provider = PROVIDER, model = %self.model_path, inputs = inputs.len(), "requesting embeddings");
        let parsed: BatchResponse = transport::call(PROVIDER, request, key, error_from_response).await?;
        if parsed.embeddings.len() != inputs.len() {
            return Err(transport::permanent(
                PROVIDER,
                None,
                format!("the server returned {} embeddings for {} inputs", parsed.embeddings.len(), inputs.len()),
            ));
        }
        self.dimension.finish(PROVIDER, parsed.embeddings.into_iter().map(|e| e.values).collect())
    }
}

transport::impl_embedder!(GeminiEmbedder, MAX_REQUESTS_PER_BATCH);

/// Native sizes of Google's embedding models, so `dimension()` is right before the first call.
fn native_dimension(model: &str) -> Option<usize> {
    match model {
        "text-embedding-004" | "embedding-001" => Some(768),
        "gemini-embedding-001" => Some(3072),
        _ => None,
    }
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    requests: Vec<EmbedRequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmbedRequest<'a> {
    model: &'a str,
    content: Content<'a>,
    task_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<usize>,
}

#[derive(Serialize)]
struct Content<'a> {
    parts: [Part<'a>; 1],
}

#[derive(Serialize)]
struct Part<'a> {
    text: &'a str,
}

#[derive(Deserialize)]
struct BatchResponse {
    embeddings: Vec<ContentEmbedding>,
}

#[derive(Deserialize)]
struct ContentEmbedding {
    values: Vec<f32>,
}

/// Classifies a Google RPC style error ([`provider_http::GoogleError`]). The retry hint comes
/// from the `RetryInfo` detail, else from a `retry-after` header; a per-day quota, a spending
/// cap or a wrong key is permanent.
fn error_from_response(response: &RawResponse, api_key: &str) -> EmbedError {
    if let Some(error) = transport::redirect_error(PROVIDER, response, api_key) {
        return error;
    }
    let status = response.status;
    let error = provider_http::GoogleError::parse(response);
    let mut message = error.message.clone();
    // A per-day quota or a spending cap will not clear for hours, a wrong key never.
    let quota = error.daily_quota();
    if let Some(quota) = &quota {
        message = format!("{message} [quota {quota}]");
    }
    let transient =
        transport::is_transient_status(status) && quota.is_none() && !error.spending_cap() && !error.key_invalid();
    let retry_after =
        if transient { error.retry_delay().or_else(|| transport::retry_after(&response.headers)) } else { None };
    transport::status_error(PROVIDER, status, transport::redact(&message, api_key), transient, retry_after)
}
