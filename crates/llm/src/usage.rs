//! Token usage as the providers report it, and its running totals per chain entry.
//!
//! Each API returns the tokens a call spent in its own object: Gemini's `usageMetadata`
//! (`promptTokenCount`, `candidatesTokenCount`, `thoughtsTokenCount` for thinking models),
//! Anthropic's `usage` (`input_tokens`, `output_tokens`, and the prompt-cache fields
//! `cache_creation_input_tokens`/`cache_read_input_tokens`, billed as input), and the OpenAI
//! chat completions `usage` (`prompt_tokens`, `completion_tokens`). Some OpenAI-compatible
//! servers send none: then the usage is unknown ([`None`]), never zero.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

/// Tokens one provider call spent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The prompt (system text and the user's input), cached parts included.
    pub input_tokens: u64,
    /// The answer, a thinking model's thoughts included (they are billed as output).
    pub output_tokens: u64,
}

impl Usage {
    /// The usage in `object` (a response's usage object): `input` and `output` name the
    /// integer fields summed into each direction; a missing field counts as 0. `None` when
    /// there is no object or it holds none of the fields.
    pub(crate) fn from_fields(object: Option<&Value>, input: &[&str], output: &[&str]) -> Option<Self> {
        let object = object?.as_object()?;
        let mut found = false;
        let mut sum = |fields: &[&str]| -> u64 {
            fields
                .iter()
                .filter_map(|field| object.get(*field).and_then(Value::as_u64))
                .inspect(|_| found = true)
                .fold(0u64, u64::saturating_add)
        };
        let usage = Usage { input_tokens: sum(input), output_tokens: sum(output) };
        found.then_some(usage)
    }
}

/// A provider's answer and the tokens it says the call spent (`None`: the response carried no
/// usage).
#[derive(Debug, Clone, PartialEq)]
pub struct Generated<T> {
    /// The answer.
    pub value: T,
    /// What the call cost, if the provider said.
    pub usage: Option<Usage>,
}

impl<T> Generated<T> {
    /// The same usage with another value.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Generated<U> {
        Generated { value: f(self.value), usage: self.usage }
    }
}

/// The tokens of one chain entry so far, over every response it got back (answers, and answers
/// that were unusable — they are billed too). Failed requests (429, 5xx, timeouts) return no
/// answer and count nowhere here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenStats {
    /// Input tokens of the responses that reported usage.
    pub input_tokens: u64,
    /// Output tokens of the responses that reported usage.
    pub output_tokens: u64,
    /// Responses that reported usage.
    pub reported: u64,
    /// Responses without usage: their tokens are unknown.
    pub unreported: u64,
}

impl TokenStats {
    /// The input tokens, or `None` when responses came back and none said what it cost.
    pub fn input(&self) -> Option<u64> {
        self.known().then_some(self.input_tokens)
    }

    /// The output tokens, or `None` when responses came back and none said what it cost.
    pub fn output(&self) -> Option<u64> {
        self.known().then_some(self.output_tokens)
    }

    fn known(&self) -> bool {
        self.reported > 0 || self.unreported == 0
    }

    /// Adds `other` (the same entry name appearing twice in a chain).
    pub(crate) fn add(&mut self, other: TokenStats) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.reported += other.reported;
        self.unreported += other.unreported;
    }
}

/// [`TokenStats`] shared between concurrent calls.
#[derive(Debug, Default)]
pub(crate) struct TokenCounters {
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    reported: AtomicU64,
    unreported: AtomicU64,
}

impl TokenCounters {
    /// Counts one response.
    pub(crate) fn record(&self, usage: Option<Usage>) {
        match usage {
            Some(usage) => {
                self.input_tokens.fetch_add(usage.input_tokens, Ordering::Relaxed);
                self.output_tokens.fetch_add(usage.output_tokens, Ordering::Relaxed);
                self.reported.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.unreported.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The totals so far.
    pub(crate) fn snapshot(&self) -> TokenStats {
        TokenStats {
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            reported: self.reported.load(Ordering::Relaxed),
            unreported: self.unreported.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fields_are_summed_per_direction_and_absence_is_unknown() {
        let body = json!({"usage": {"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 3}});
        let usage = Usage::from_fields(
            body.get("usage"),
            &["input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"],
            &["output_tokens"],
        );
        assert_eq!(usage, Some(Usage { input_tokens: 15, output_tokens: 3 }));
        assert_eq!(Usage::from_fields(None, &["a"], &["b"]), None);
        assert_eq!(Usage::from_fields(Some(&Value::Null), &["a"], &["b"]), None);
        assert_eq!(Usage::from_fields(Some(&json!({"other": 1})), &["a"], &["b"]), None);
        assert_eq!(
            Usage::from_fields(Some(&json!({"b": 2})), &["a"], &["b"]),
            Some(Usage { input_tokens: 0, output_tokens: 2 })
        );
    }

    #[test]
    fn stats_are_unknown_only_when_no_response_reported_usage() {
        let counters = TokenCounters::default();
        assert_eq!(
            (counters.snapshot().input(), counters.snapshot().output()),
            (Some(0), Some(0)),
            "nothing came back"
        );
        counters.record(None);
        assert_eq!((counters.snapshot().input(), counters.snapshot().output()), (None, None));
        counters.record(Some(Usage { input_tokens: 7, output_tokens: 2 }));
        let stats = counters.snapshot();
        assert_eq!((stats.input(), stats.output(), stats.reported, stats.unreported), (Some(7), Some(2), 1, 1));
    }
}
