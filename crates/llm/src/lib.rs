//! LLM providers behind one trait, over their real wire formats — Gemini `generateContent`,
//! Anthropic Messages, OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp) — and
//! [`ProviderChain`], the ordered failover list of providers (docs/ARCHITECTURE.md): a provider
//! that is out of quota or failing is skipped for a cool-down and the next one is tried; when every
//! provider fails the error is transient (`QuotaExceededError`), so the retry ladder and then the
//! dead-letter queue take over. The offline default, `local`, is an entry of the chain that tells
//! the caller to use its own local model (rules and lexical scoring in the classifier, extractive
//! answers in the generator).
//!
//! Every answer comes with the tokens the provider reports spending ([`Usage`], `None` when the
//! response carries none), which the chain adds up per provider ([`ChainStats::tokens_by`],
//! `mailroom_llm_tokens_total`).

use std::time::Duration;

use futures_util::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

pub mod anthropic;
pub mod chain;
pub mod gemini;
pub mod json;
pub mod metrics;
pub mod openai;
mod transport;
pub mod usage;

pub use anthropic::AnthropicProvider;
pub use chain::{ChainError, ChainOutcome, ChainStats, Entry, ProviderChain, UnknownProvider};
pub use gemini::GeminiProvider;
pub use metrics::LlmMetrics;
pub use openai::OpenAiProvider;
pub use provider_http::{ProviderHealth, ProviderProblem};
pub use usage::{Generated, TokenStats, Usage};

/// One generation request. Untrusted text (a customer's email) belongs in `user`, framed as
/// data by the caller; `system` carries the instructions.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    /// Instructions.
    pub system: String,
    /// The task input.
    pub user: String,
    /// Upper bound on the answer's length.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
}

/// A provider call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    /// Worth retrying later: 429 (rate limit), 500/503/529 (overloaded), timeouts, connection
    /// failures.
    #[error("{provider} temporarily unavailable{}: {message}", status_suffix(*status))]
    Transient {
        /// Provider name.
        provider: String,
        /// HTTP status, if any.
        status: Option<u16>,
        /// The provider's message.
        message: String,
        /// The provider's retry hint (`retry-after`, Gemini `RetryInfo.retryDelay`).
        retry_after: Option<Duration>,
    },
    /// Out of money or quota for good (a spend-limit 429, `insufficient_quota`): do not retry
    /// this provider soon, but another may answer.
    #[error("{provider} quota exhausted{}: {message}", status_suffix(*status))]
    QuotaExhausted {
        /// Provider name.
        provider: String,
        /// HTTP status, if any.
        status: Option<u16>,
        /// The provider's message.
        message: String,
    },
    /// This request will never succeed with this provider: 400 (and the 413/422 some servers use
    /// for it), or another refusal tied to the request.
    #[error("{provider} refused the request{}: {message}", status_suffix(*status))]
    Permanent {
        /// Provider name.
        provider: String,
        /// HTTP status, if any.
        status: Option<u16>,
        /// The provider's message.
        message: String,
    },
    /// No request will succeed until an operator fixes the configuration: a wrong or revoked key
    /// (401, Gemini's `API_KEY_INVALID`), a permission (403), a model that does not exist or was
    /// retired (404), a `base_url` that redirects or answers something else, an unusable client.
    /// Reported loudly (see [`ProviderChain::with_health`]), not retried as an outage.
    #[error("{provider} is misconfigured{}: {message}", status_suffix(*status))]
    Misconfigured {
        /// Provider name.
        provider: String,
        /// HTTP status, if any.
        status: Option<u16>,
        /// The provider's message.
        message: String,
    },
    /// The answer could not be used: blocked prompt (no candidates), empty text, or JSON that
    /// does not parse or validate. Transient for this provider — another try or provider may do
    /// better.
    #[error("{provider} gave an unusable answer: {message}")]
    InvalidOutput {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
        /// The tokens the unusable answer cost, if the response said (they are billed all the
        /// same).
        usage: Option<Usage>,
    },
}

fn status_suffix(status: Option<u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

impl LlmError {
    /// The provider that failed.
    pub fn provider(&self) -> &str {
        match self {
            LlmError::Transient { provider, .. }
            | LlmError::QuotaExhausted { provider, .. }
            | LlmError::Permanent { provider, .. }
            | LlmError::Misconfigured { provider, .. }
            | LlmError::InvalidOutput { provider, .. } => provider,
        }
    }

    /// The provider's retry hint.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A remote model.
pub trait LlmProvider: Send + Sync {
    /// `gemini`, `anthropic`, `openai` (or the configured name of an OpenAI-compatible server).
    fn name(&self) -> &str;

    /// Free text, with the tokens the call spent when the response says.
    fn generate<'a>(&'a self, request: &'a GenerateRequest) -> BoxFuture<'a, Result<Generated<String>, LlmError>>;

    /// A JSON value, with the tokens the call spent when the response says. `schema` is a JSON Schema object the provider is asked to follow (natively
    /// where the API supports it); the answer is parsed robustly (code fences, surrounding
    /// prose) with [`json::extract_json`] — an answer that is not JSON is `InvalidOutput`.
    fn generate_json<'a>(
        &'a self,
        request: &'a GenerateRequest,
        schema: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<Generated<serde_json::Value>, LlmError>>;

    /// A cheap call that proves the endpoint, the key and the model without spending tokens: the
    /// provider's model lookup (`mailroom doctor`). `Ok` describes what the provider said. A
    /// wrong key or a retired model is [`LlmError::Misconfigured`].
    fn check_model(&self) -> BoxFuture<'_, Result<String, LlmError>>;
}

/// Endpoint, key and model of one provider.
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderSettings {
    /// Base URL (`https://generativelanguage.googleapis.com/v1beta`, `https://api.anthropic.com/v1`,
    /// `https://api.openai.com/v1`, `http://localhost:11434/v1`, …).
    pub base_url: String,
    /// API key (secret; empty for local servers that need none).
    pub api_key: SecretString,
    /// Model name.
    pub model: String,
}

/// `[llm]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct LlmSettings {
    /// Ordered failover list: `gemini`, `anthropic`, `openai`, `local`.
    pub providers: Vec<String>,
    /// How long a failing or exhausted provider is skipped.
    pub cooldown_secs: u64,
    /// Per-request timeout.
    pub timeout_secs: u64,
    /// Gemini.
    pub gemini: ProviderSettings,
    /// Anthropic.
    pub anthropic: ProviderSettings,
    /// OpenAI-compatible server.
    pub openai: ProviderSettings,
}
