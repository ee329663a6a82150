//! Prometheus metrics of the failover chain: each provider request with its outcome and
//! latency, the tokens the providers report, the cool-down skips, and every failover from one
//! entry to the next.
//!
//! The families are plain `prometheus-client` ones, so this crate needs no part of
//! `pipeline-core`: a binary creates one [`LlmMetrics`], registers it in its worker's registry
//! with [`LlmMetrics::register`] (which takes any `Fn(name, help, metric)`, such as a closure
//! around `pipeline_core::Telemetry`'s `metrics.register`) and hands it to
//! [`ProviderChain::with_metrics`](crate::ProviderChain::with_metrics). The registry adds the
//! `mailroom_` prefix, and counters get `_total`:
//!
//! - `mailroom_llm_requests_total{provider, operation, outcome}`
//! - `mailroom_llm_request_duration_seconds{provider, operation}` (histogram)
//! - `mailroom_llm_skipped_total{provider, operation}` (not asked: cooling down)
//! - `mailroom_llm_failovers_total{from, to}`
//! - `mailroom_llm_tokens_total{provider, operation, direction}` (`direction` `input` or
//!   `output`: the tokens the provider reported for its answers, unusable ones included; an
//!   answer without usage adds nothing, and the `local` model spends none)
//! - `mailroom_llm_provider_misconfigured{provider, operation}` (gauge: 1 while the provider's
//!   last answer was a configuration error — a wrong key, a permission, a retired model)

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Metric;

use crate::LlmError;

/// `to` of a failover after which no entry was left to ask.
pub const NO_PROVIDER_LEFT: &str = "none";

/// Labels of a provider request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The entry's name (`gemini`, `anthropic`, `openai`, …).
    pub provider: String,
    /// What the chain was used for (`classify`, `generate`).
    pub operation: String,
    /// [`outcome`] of the request: `ok`, or how it failed.
    pub outcome: &'static str,
}

/// Labels of the latency histogram and of the skip counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The entry's name.
    pub provider: String,
    /// What the chain was used for.
    pub operation: String,
}

/// Labels of the token counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// The entry's name.
    pub provider: String,
    /// What the chain was used for.
    pub operation: String,
    /// `input` (the prompt) or `output` (the answer).
    pub direction: &'static str,
}

/// Labels of a failover.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailoverLabels {
    /// The provider whose request failed.
    pub from: String,
    /// The next entry the walk used (`local` included), or [`NO_PROVIDER_LEFT`].
    pub to: String,
}

/// The `outcome` label of a failed request. Rate limits and outages are told apart because they
/// call for different actions (a bigger quota, or waiting for the provider).
pub fn outcome(error: &LlmError) -> &'static str {
    match error {
        LlmError::Transient { status: Some(429), .. } => "rate_limited",
        LlmError::Transient { .. } => "unavailable",
        LlmError::QuotaExhausted { .. } => "quota_exhausted",
        // 400 and the 413/422 some servers use for it: this request is refused, not every one.
        LlmError::Permanent { status: Some(400 | 413 | 422), .. } => "rejected",
        // A wrong key, permission or model name: an operator has to act.
        LlmError::Misconfigured { .. } => "misconfigured",
        LlmError::Permanent { .. } => "rejected",
        LlmError::InvalidOutput { .. } => "invalid_response",
    }
}

/// LLM latency goes from tens of milliseconds (a local server) to minutes (a long answer from
/// an overloaded provider): 50 ms doubling to about 100 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

/// The chain's metric families. Clones share their values, so the copy registered and the copy
/// the chain updates are the same metrics.
#[derive(Debug, Clone)]
pub struct LlmMetrics {
    /// Requests by provider, operation and outcome.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by provider and operation, failed requests included.
    pub request_seconds: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    /// Entries not asked because they were cooling down after a failure.
    pub skipped: Family<ProviderLabels, Counter>,
    /// Walks that moved on from a failed provider, by where they went.
    pub failovers: Family<FailoverLabels, Counter>,
    /// 1 while a provider's last answer was a configuration error, 0 once it answers.
    pub misconfigured: Family<ProviderLabels, Gauge>,
    /// Tokens the providers reported spending, by provider, operation and direction.
    pub tokens: Family<TokenLabels, Counter>,
}

impl Default for LlmMetrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            skipped: Family::default(),
            failovers: Family::default(),
            misconfigured: Family::default(),
            tokens: Family::default(),
        }
    }
}

/// Where metrics are registered. Any `Fn(name, help, metric)` is one, so a binary passes a
/// closure around its registry's own `register`; names are given without the registry's prefix.
pub trait MetricRegistry {
    /// Registers one metric family.
    fn register(&self, name: &str, help: &str, metric: SharedMetric);
}

impl<F: Fn(&str, &str, SharedMetric)> MetricRegistry for F {
    fn register(&self, name: &str, help: &str, metric: SharedMetric) {
        self(name, help, metric);
    }
}

/// One of [`LlmMetrics`]' families, type-erased so that a single callback can register them
/// all; it encodes exactly as the family it holds.
#[derive(Debug)]
pub struct SharedMetric(Box<dyn Metric>);

impl EncodeMetric for SharedMetric {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl LlmMetrics {
    /// Registers every family in `registry`.
    pub fn register(&self, registry: &impl MetricRegistry) {
        registry.register(
            "llm_requests",
            "LLM provider requests by provider, operation and outcome",
            SharedMetric(Box::new(self.requests.clone())),
        );
        registry.register(
            "llm_request_duration_seconds",
            "LLM provider request latency, failed requests included",
            SharedMetric(Box::new(self.request_seconds.clone())),
        );
        registry.register(
            "llm_skipped",
            "LLM providers not asked because they were cooling down after a failure",
            SharedMetric(Box::new(self.skipped.clone())),
        );
        registry.register(
            "llm_failovers",
            "Moves from a failed LLM provider to the next entry of the chain (to=\"none\": none was left)",
            SharedMetric(Box::new(self.failovers.clone())),
        );
        registry.register(
            "llm_provider_misconfigured",
            "1 while an LLM provider's last answer was a configuration error (wrong key, permission, retired model)",
            SharedMetric(Box::new(self.misconfigured.clone())),
        );
        registry.register(
            "llm_tokens",
            "Tokens LLM providers reported for their answers, by direction (input: the prompt, output: the answer)",
            SharedMetric(Box::new(self.tokens.clone())),
        );
    }
}
