//! The ordered failover list of providers (`llm.providers`; docs/ARCHITECTURE.md, design
//! decisions).
//!
//! Entries are tried in order. A provider that fails in a way that will last (rate limit,
//! outage, exhausted quota, wrong key) is put in a cool-down and skipped until it ends, so a
//! burst of messages does not hammer a provider that just said "slow down". A failure tied to
//! this one request (a 400, an unusable answer) moves on without a cool-down. The `local` entry
//! ends the walk: it tells the caller to use its own offline model.
//!
//! When nothing answered, the outcome is transient (`QuotaExceededError`: the message goes
//! back through the retry ladder) unless every provider rejected the request itself, which no
//! retry will fix.
//!
//! Each entry counts its answers, failures and skips, and the tokens its responses reported
//! ([`ProviderChain::stats`]). With [`ProviderChain::with_metrics`] the walk also records each
//! request's outcome and latency, the tokens, each skip and each failover in [`LlmMetrics`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::time::Instant;

use provider_http::ProviderHealth;

use crate::anthropic::AnthropicProvider;
use crate::gemini::GeminiProvider;
use crate::metrics::{self, FailoverLabels, LlmMetrics, NO_PROVIDER_LEFT, ProviderLabels, RequestLabels, TokenLabels};
use crate::openai::{self, OpenAiProvider};
use crate::usage::{Generated, TokenCounters, TokenStats, Usage};
use crate::{GenerateRequest, LlmError, LlmProvider, LlmSettings};

/// The name of the offline entry.
pub const LOCAL: &str = "local";

/// A retry hint longer than this is not believed: a buggy or hostile `retry-after` must not
/// disable a provider for days. Exhausted quotas have their own, longer cool-down.
const MAX_HINTED_COOLDOWN: Duration = Duration::from_secs(3600);

/// How much longer than the normal cool-down an exhausted quota is skipped.
const QUOTA_COOLDOWN_FACTOR: u32 = 10;

/// One entry of the chain.
pub enum Entry {
    /// A remote model.
    Remote(Box<dyn LlmProvider>),
    /// The caller's offline model; reaching it ends the walk with [`ChainOutcome::UseLocal`].
    Local,
}

impl Entry {
    /// The provider's name, `local` for the offline entry.
    pub fn name(&self) -> &str {
        match self {
            Entry::Remote(provider) => provider.name(),
            Entry::Local => LOCAL,
        }
    }
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Remote(provider) => f.debug_tuple("Remote").field(&provider.name()).finish(),
            Entry::Local => f.write_str("Local"),
        }
    }
}

/// What the chain produced.
#[derive(Debug, Clone, PartialEq)]
pub enum ChainOutcome<T> {
    /// A remote provider answered.
    Answered {
        /// The answer.
        value: T,
        /// The provider that gave it.
        provider: String,
    },
    /// The walk reached the `local` entry: the caller computes the answer offline.
    UseLocal,
}

/// No entry answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChainError {
    /// Providers failed, are out of quota or cooling down: retry later.
    #[error("LLM quota exceeded for all providers: {}", summary(errors))]
    AllFailed {
        /// Each provider's error, in chain order (a skipped provider has a transient error
        /// saying how long it still cools down).
        errors: Vec<LlmError>,
    },
    /// Every provider refused this request as malformed (HTTP 400): retrying will not help.
    #[error("every LLM provider rejected the request: {}", summary(errors))]
    Rejected {
        /// Each provider's error, in chain order.
        errors: Vec<LlmError>,
    },
}

fn summary(errors: &[LlmError]) -> String {
    if errors.is_empty() {
        return "no provider is configured".to_owned();
    }
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl pipeline_core::Classify for ChainError {
    fn fate(&self) -> pipeline_core::Fate {
        pipeline_core::Fate::retry_if(self.is_transient())
    }

    fn error_type(&self) -> &'static str {
        ChainError::error_type(self)
    }
}

impl ChainError {
    /// The error type recorded with a failed message: `QuotaExceededError` (the dead-letter
    /// contract's name) or `LlmRequestRejected`.
    pub fn error_type(&self) -> &'static str {
        match self {
            ChainError::AllFailed { .. } => "QuotaExceededError",
            ChainError::Rejected { .. } => "LlmRequestRejected",
        }
    }

    /// Whether retrying later can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, ChainError::AllFailed { .. })
    }

    /// The smallest retry hint among the errors (a provider's `retry-after`, or the rest of a
    /// cool-down), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ChainError::AllFailed { errors } => errors.iter().filter_map(LlmError::retry_after).min(),
            ChainError::Rejected { .. } => None,
        }
    }

    /// The providers' errors, in chain order.
    pub fn errors(&self) -> &[LlmError] {
        match self {
            ChainError::AllFailed { errors } | ChainError::Rejected { errors } => errors,
        }
    }
}

/// The configuration names a provider the chain does not know, or none at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownProvider {
    /// Not one of `gemini`, `anthropic`, `openai`, `local`.
    #[error("unknown LLM provider {name:?} in llm.providers (expected gemini, anthropic, openai or local)")]
    Name {
        /// The configured name.
        name: String,
    },
    /// `llm.providers` is empty.
    #[error("llm.providers is empty; list at least one of gemini, anthropic, openai, local")]
    Empty,
}

/// Counters for metrics, per entry name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainStats {
    /// Answers given (for `local`: walks that ended there).
    pub answered_by: HashMap<String, u64>,
    /// Calls that failed.
    pub failures_by: HashMap<String, u64>,
    /// Times the entry was skipped because it was cooling down.
    pub skipped_by: HashMap<String, u64>,
    /// Tokens the entry's responses reported (all zero for `local`, which spends none).
    pub tokens_by: HashMap<String, TokenStats>,
}

struct Slot {
    name: String,
    entry: Entry,
    /// Skipped until then.
    cooling_until: Mutex<Option<Instant>>,
    answered: AtomicU64,
    failures: AtomicU64,
    skipped: AtomicU64,
    tokens: TokenCounters,
}

impl Slot {
    /// How much longer the entry cools down, if it does.
    fn cooling_for(&self, now: Instant) -> Option<Duration> {
        let until = *self.cooling_until.lock().unwrap_or_else(PoisonError::into_inner);
        until.filter(|until| *until > now).map(|until| until - now)
    }

    /// Starts (or extends, never shortens) a cool-down.
    fn cool_down(&self, duration: Duration) {
        let now = Instant::now();
        let Some(until) = now.checked_add(duration) else { return };
        let mut current = self.cooling_until.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_none_or(|current| current < until) {
            *current = Some(until);
        }
    }
}

/// The metrics a chain records, and the `operation` label of its requests.
struct Recorder {
    metrics: LlmMetrics,
    operation: String,
}

impl Recorder {
    fn provider(&self, name: &str) -> ProviderLabels {
        ProviderLabels { provider: name.to_owned(), operation: self.operation.clone() }
    }

    fn request(&self, name: &str, outcome: &'static str, seconds: f64) {
        self.metrics.request_seconds.get_or_create(&self.provider(name)).observe(seconds);
        let labels = RequestLabels { provider: name.to_owned(), operation: self.operation.clone(), outcome };
        self.metrics.requests.get_or_create(&labels).inc();
    }

    fn tokens(&self, name: &str, usage: Usage) {
        for (direction, tokens) in [("input", usage.input_tokens), ("output", usage.output_tokens)] {
            let labels = TokenLabels { provider: name.to_owned(), operation: self.operation.clone(), direction };
            self.metrics.tokens.get_or_create(&labels).inc_by(tokens);
        }
    }

    fn failover(&self, from: &str, to: &str) {
        self.metrics.failovers.get_or_create(&FailoverLabels { from: from.to_owned(), to: to.to_owned() }).inc();
    }
}

/// The ordered failover list. Cool-downs and counters belong to the instance and are safe to
/// share between concurrent calls.
pub struct ProviderChain {
    slots: Vec<Slot>,
    cooldown: Duration,
    recorder: Option<Recorder>,
    /// Where configuration errors are reported, and the operation they are reported under.
    health: Option<(ProviderHealth, String)>,
}

impl fmt::Debug for ProviderChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderChain").field("entries", &self.names()).field("cooldown", &self.cooldown).finish()
    }
}

impl ProviderChain {
    /// A chain over `entries`, in order. `cooldown` is how long a failing provider is skipped
    /// (longer when its retry hint says so, ten times longer when its quota is exhausted).
    pub fn new(entries: Vec<Entry>, cooldown: Duration) -> Self {
        let slots = entries
            .into_iter()
            .map(|entry| Slot {
                name: entry.name().to_owned(),
                entry,
                cooling_until: Mutex::new(None),
                answered: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                tokens: TokenCounters::default(),
            })
            .collect();
        Self { slots, cooldown, recorder: None, health: None }
    }

    /// Reports every configuration error (a wrong key, a permission, a retired model: see
    /// [`LlmError::Misconfigured`]) to `health` under `operation`, and every answer as that
    /// provider's recovery. The walk still fails over to the next entry for this request.
    pub fn with_health(mut self, health: &ProviderHealth, operation: impl Into<String>) -> Self {
        self.health = Some((health.clone(), operation.into()));
        self
    }

    /// Records this chain's requests in `metrics`, labelled with `operation` (what the chain is
    /// used for: `classify`, `generate`). Several chains may share one [`LlmMetrics`].
    pub fn with_metrics(mut self, metrics: &LlmMetrics, operation: impl Into<String>) -> Self {
        self.recorder = Some(Recorder { metrics: metrics.clone(), operation: operation.into() });
        self
    }

    /// The chain of `[llm]` settings: `providers` lists `gemini`, `anthropic`, `openai` and
    /// `local` (case-insensitive) in failover order.
    pub fn from_settings(settings: &LlmSettings) -> Result<Self, UnknownProvider> {
        if settings.providers.is_empty() {
            return Err(UnknownProvider::Empty);
        }
        let timeout = Duration::from_secs(settings.timeout_secs);
        let entries = settings
            .providers
            .iter()
            .map(|name| {
                Ok(match name.trim().to_ascii_lowercase().as_str() {
                    "gemini" => Entry::Remote(Box::new(GeminiProvider::new(&settings.gemini, timeout))),
                    "anthropic" => Entry::Remote(Box::new(AnthropicProvider::new(&settings.anthropic, timeout))),
                    "openai" => {
                        Entry::Remote(Box::new(OpenAiProvider::new(openai::DEFAULT_NAME, &settings.openai, timeout)))
                    }
                    LOCAL => Entry::Local,
                    _ => return Err(UnknownProvider::Name { name: name.clone() }),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(entries, Duration::from_secs(settings.cooldown_secs)))
    }

    /// The chain a worker runs: [`ProviderChain::from_settings`], its requests recorded in
    /// `metrics` and its configuration errors reported to `health`, both under `operation`.
    pub fn for_worker(
        settings: &LlmSettings,
        operation: &str,
        metrics: &LlmMetrics,
        health: &ProviderHealth,
    ) -> Result<Self, UnknownProvider> {
        Ok(Self::from_settings(settings)?.with_metrics(metrics, operation).with_health(health, operation))
    }

    /// How many remote entries come before `local`: when this is not zero, reaching `local`
    /// means every configured remote provider failed or was cooling down.
    pub fn remotes_before_local(&self) -> usize {
        self.slots.iter().take_while(|slot| !matches!(slot.entry, Entry::Local)).count()
    }

    /// Asks every remote entry for its model ([`LlmProvider::check_model`]), in chain order:
    /// `(name, outcome)` for each (`mailroom doctor`).
    pub async fn check_models(&self) -> Vec<(String, Result<String, LlmError>)> {
        let mut out = Vec::new();
        for slot in &self.slots {
            if let Entry::Remote(provider) = &slot.entry {
                out.push((slot.name.clone(), provider.check_model().await));
            }
        }
        out
    }

    /// The entries' names, in order.
    pub fn names(&self) -> Vec<String> {
        self.slots.iter().map(|slot| slot.name.clone()).collect()
    }

    /// The counters so far.
    pub fn stats(&self) -> ChainStats {
        let mut stats = ChainStats::default();
        for slot in &self.slots {
            // Summed, in case a name appears twice.
            *stats.answered_by.entry(slot.name.clone()).or_default() += slot.answered.load(Ordering::Relaxed);
            *stats.failures_by.entry(slot.name.clone()).or_default() += slot.failures.load(Ordering::Relaxed);
            *stats.skipped_by.entry(slot.name.clone()).or_default() += slot.skipped.load(Ordering::Relaxed);
            stats.tokens_by.entry(slot.name.clone()).or_default().add(slot.tokens.snapshot());
        }
        stats
    }

    /// Free text from the first provider that gives it.
    pub async fn generate(&self, request: &GenerateRequest) -> Result<ChainOutcome<String>, ChainError> {
        self.walk(|provider| provider.generate(request)).await
    }

    /// A JSON value from the first provider whose answer parses and passes `validate`; an
    /// answer that does not is treated as unusable and the next provider is asked.
    pub async fn generate_json(
        &self,
        request: &GenerateRequest,
        schema: &Value,
        validate: &(dyn Fn(&Value) -> Result<(), String> + Send + Sync),
    ) -> Result<ChainOutcome<Value>, ChainError> {
        self.walk(|provider| {
            Box::pin(async move {
                let answer = provider.generate_json(request, schema).await?;
                validate(&answer.value).map_err(|reason| LlmError::InvalidOutput {
                    provider: provider.name().to_owned(),
                    message: format!("the answer does not match the expected shape: {reason}"),
                    usage: answer.usage,
                })?;
                Ok(answer)
            })
        })
        .await
    }

    /// The walk itself; `call` asks one provider. Its future may borrow the provider and the
    /// caller's request for `'a`, the duration of the walk.
    async fn walk<'a, T, F>(&'a self, call: F) -> Result<ChainOutcome<T>, ChainError>
    where
        F: Fn(&'a dyn LlmProvider) -> BoxFuture<'a, Result<Generated<T>, LlmError>>,
    {
        let mut errors = Vec::new();
        // The provider whose request failed last: the next entry the walk uses is where it
        // failed over to.
        let mut failed_from: Option<&str> = None;
        for slot in &self.slots {
            let provider = match &slot.entry {
                Entry::Local => {
                    if let (Some(recorder), Some(from)) = (&self.recorder, failed_from) {
                        recorder.failover(from, LOCAL);
                    }
                    slot.answered.fetch_add(1, Ordering::Relaxed);
                    if !errors.is_empty() {
                        tracing::info!(failed = errors.len(), "remote LLM providers failed; using the local model");
                    }
                    return Ok(ChainOutcome::UseLocal);
                }
                Entry::Remote(provider) => provider.as_ref(),
            };
            let name = slot.name.as_str();
            if let Some(remaining) = slot.cooling_for(Instant::now()) {
                slot.skipped.fetch_add(1, Ordering::Relaxed);
                if let Some(recorder) = &self.recorder {
                    recorder.metrics.skipped.get_or_create(&recorder.provider(name)).inc();
                }
                tracing::debug!(
                    provider = name,
                    remaining_secs = remaining.as_secs_f64(),
                    "skipping a cooling-down LLM provider"
                );
                errors.push(LlmError::Transient {
                    provider: name.to_owned(),
                    status: None,
                    message: format!(
                        "skipped: cooling down for another {:.1}s after a failure",
                        remaining.as_secs_f64()
                    ),
                    retry_after: Some(remaining),
                });
                continue;
            }
            if let (Some(recorder), Some(from)) = (&self.recorder, failed_from.take()) {
                recorder.failover(from, name);
            }
            let started = Instant::now();
            let result = call(provider).await;
            if let Some(recorder) = &self.recorder {
                let outcome = result.as_ref().map_or_else(metrics::outcome, |_| "ok");
                recorder.request(name, outcome, started.elapsed().as_secs_f64());
            }
            self.report_health(name, &result);
            self.count_tokens(slot, &result);
            match result {
                Ok(Generated { value, .. }) => {
                    slot.answered.fetch_add(1, Ordering::Relaxed);
                    return Ok(ChainOutcome::Answered { value, provider: slot.name.clone() });
                }
                Err(error) => {
                    slot.failures.fetch_add(1, Ordering::Relaxed);
                    failed_from = Some(name);
                    let cooldown = self.cooldown_after(&error);
                    if let Some(cooldown) = cooldown {
                        slot.cool_down(cooldown);
                    }
                    let cooldown_secs = cooldown.unwrap_or_default().as_secs_f64();
                    tracing::warn!(
                        provider = name,
                        error = %error,
                        cooldown_secs,
                        "LLM provider failed; trying the next one"
                    );
                    errors.push(error);
                }
            }
        }
        if let (Some(recorder), Some(from)) = (&self.recorder, failed_from) {
            recorder.failover(from, NO_PROVIDER_LEFT);
        }
        if !errors.is_empty() && errors.iter().all(is_request_rejection) {
            Err(ChainError::Rejected { errors })
        } else {
            Err(ChainError::AllFailed { errors })
        }
    }

    /// Counts the tokens of a response that came back: an answer, or an unusable one (billed
    /// too). A failed request got no answer and spent nothing.
    fn count_tokens<T>(&self, slot: &Slot, result: &Result<Generated<T>, LlmError>) {
        let usage = match result {
            Ok(answer) => answer.usage,
            Err(LlmError::InvalidOutput { usage, .. }) => *usage,
            Err(_) => return,
        };
        slot.tokens.record(usage);
        if let (Some(recorder), Some(usage)) = (&self.recorder, usage) {
            recorder.tokens(&slot.name, usage);
        }
    }

    /// Tells the health registry and the `misconfigured` gauge how a request went.
    fn report_health<T>(&self, name: &str, result: &Result<T, LlmError>) {
        let misconfigured = match result {
            Ok(_) => false,
            Err(LlmError::Misconfigured { .. }) => true,
            // Other failures say nothing about the configuration.
            Err(_) => return,
        };
        if let Some(recorder) = &self.recorder {
            recorder.metrics.misconfigured.get_or_create(&recorder.provider(name)).set(i64::from(misconfigured));
        }
        let Some((health, operation)) = &self.health else { return };
        match result {
            Err(LlmError::Misconfigured { status, message, .. }) => {
                health.misconfigured(name, operation, *status, message);
            }
            _ => health.succeeded(name, operation),
        }
    }

    /// How long a provider is skipped after `error`; `None` for failures tied to the request
    /// or to one answer, which say nothing about the next request.
    fn cooldown_after(&self, error: &LlmError) -> Option<Duration> {
        match error {
            LlmError::Transient { retry_after, .. } => {
                Some(self.cooldown.max(retry_after.unwrap_or_default().min(MAX_HINTED_COOLDOWN)))
            }
            LlmError::QuotaExhausted { .. } => Some(self.cooldown.saturating_mul(QUOTA_COOLDOWN_FACTOR)),
            // A wrong key, permission or model name (401/403/404), a redirect or an unusable
            // client: every request would fail the same way.
            LlmError::Misconfigured { .. } => Some(self.cooldown),
            LlmError::Permanent { .. } if !is_request_rejection(error) => Some(self.cooldown),
            LlmError::Permanent { .. } | LlmError::InvalidOutput { .. } => None,
        }
    }
}

/// Whether the provider refused this particular request (400, and the 413/422 some
/// OpenAI-compatible servers use for the same), as opposed to refusing every request.
fn is_request_rejection(error: &LlmError) -> bool {
    matches!(error, LlmError::Permanent { status: Some(400 | 413 | 422), .. })
}
