//! Text embedders behind one trait, so the ingester and the generator embed the same way:
//! `hashing` (the offline default: deterministic, normalised feature hashing of words and
//! character n-grams), `openai` (any OpenAI-compatible `/v1/embeddings` server) and `gemini`
//! (`batchEmbedContents`). Provider errors are typed: 429 and 5xx are transient (with the
//! provider's retry hint when it gives one), other 4xx are permanent.

use std::time::Duration;

use futures_util::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

pub mod gemini;
pub mod hashing;
pub mod openai;
pub mod script;
mod transport;

pub use gemini::GeminiEmbedder;
pub use hashing::HashingEmbedder;
pub use openai::OpenAiEmbedder;

/// An embedding call failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Worth retrying later: rate limit, server error, timeout, connection failure.
    #[error("{provider} embeddings temporarily unavailable{}: {message}", status_suffix(*status))]
    Transient {
        /// Provider name.
        provider: &'static str,
        /// HTTP status, when there was one.
        status: Option<u16>,
        /// The provider's message.
        message: String,
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Will never succeed as sent: bad request, bad key, permission denied.
    #[error("{provider} embeddings refused the request{}: {message}", status_suffix(*status))]
    Permanent {
        /// Provider name.
        provider: &'static str,
        /// HTTP status, when there was one.
        status: Option<u16>,
        /// The provider's message.
        message: String,
    },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

/// Every embedding failure is recorded as `EmbeddingFailed`, retried when transient.
impl pipeline_core::Classify for EmbedError {
    fn fate(&self) -> pipeline_core::Fate {
        pipeline_core::Fate::retry_if(self.is_transient())
    }

    fn error_type(&self) -> &'static str {
        "EmbeddingFailed"
    }
}

impl EmbedError {
    /// Whether retrying can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, EmbedError::Transient { .. })
    }

    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            EmbedError::Transient { status, .. } | EmbedError::Permanent { status, .. } => *status,
        }
    }

    /// Whether no request can succeed until an operator fixes the configuration: a wrong key
    /// (401), a permission (403), a model that does not exist (404), a redirect (a wrong
    /// `base_url`), or a request that cannot be sent at all.
    pub fn is_misconfiguration(&self) -> bool {
        matches!(self, EmbedError::Permanent { status: None | Some(300..=399 | 401 | 403 | 404), .. })
    }

    /// The provider's retry hint, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EmbedError::Transient { retry_after, .. } => *retry_after,
            EmbedError::Permanent { .. } => None,
        }
    }
}

/// Turns texts into vectors.
pub trait Embedder: Send + Sync {
    /// Identifies provider, model and dimension, e.g. `hashing-384`; used in cache keys so
    /// vectors of different models never mix.
    fn model_id(&self) -> &str;

    /// Length of every vector this embedder returns.
    fn dimension(&self) -> usize;

    /// Embeds a batch; the result has one vector per text, in order, each L2-normalised.
    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>>;
}

/// `[embeddings]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingSettings {
    /// `hashing` (default), `openai` or `gemini`.
    pub provider: String,
    /// Vector dimension (hashing: any; openai: passed as `dimensions`; gemini: `outputDimensionality`).
    pub dimension: usize,
    /// Texts per request.
    pub batch_size: usize,
    /// Per-request timeout.
    pub timeout_secs: u64,
    /// OpenAI-compatible server.
    pub openai: ProviderSettings,
    /// Gemini.
    pub gemini: ProviderSettings,
}

/// Endpoint, key and model of one HTTP provider.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    /// Base URL (e.g. `https://api.openai.com/v1`).
    pub base_url: String,
    /// API key (secret; may be empty for local servers such as Ollama).
    pub api_key: SecretString,
    /// Model name.
    pub model: String,
}

/// Unknown provider name in settings.
#[derive(Debug, thiserror::Error)]
#[error("unknown embeddings provider {0:?} (expected hashing, openai or gemini)")]
pub struct UnknownProvider(pub String);

/// Builds the configured embedder.
pub fn from_settings(settings: &EmbeddingSettings) -> Result<Box<dyn Embedder>, UnknownProvider> {
    let timeout = Duration::from_secs(settings.timeout_secs);
    match settings.provider.as_str() {
        "hashing" => Ok(Box::new(HashingEmbedder::new(settings.dimension))),
        "openai" => Ok(Box::new(OpenAiEmbedder::new(&settings.openai, Some(settings.dimension), timeout))),
        "gemini" => Ok(Box::new(GeminiEmbedder::new(&settings.gemini, Some(settings.dimension), timeout))),
        other => Err(UnknownProvider(other.to_owned())),
    }
}

/// Scales a vector to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
