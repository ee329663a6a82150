//! The error a handler returns, and the decision it carries: transient failures climb the retry
//! ladder, permanent ones go straight to the dead-letter queue.

use std::borrow::Cow;
use std::fmt;

/// Whether retrying can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Timeouts, 429/5xx, broker or database unavailable: retry later.
    Transient,
    /// Bad input, a 4xx that will never succeed: dead-letter now.
    Permanent,
    /// Not a failure: the message cannot be handled yet (a send quota, a claim another worker
    /// holds). It waits about this long in a delay queue without spending a retry.
    Defer(std::time::Duration),
}

/// A failed handling of one message.
#[derive(Debug)]
pub struct HandlerError {
    /// Retry or dead-letter.
    pub fate: Fate,
    /// Machine-readable kind, written to `failure_info.error_type`.
    pub error_type: Cow<'static, str>,
    /// The error, whose `Display` and source chain fill `error_message` and `stack_trace`.
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl HandlerError {
    /// A failure that may succeed later.
    pub fn transient(
        error_type: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self { fate: Fate::Transient, error_type: error_type.into(), source: source.into() }
    }

    /// A failure that will never succeed.
    pub fn permanent(
        error_type: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self { fate: Fate::Permanent, error_type: error_type.into(), source: source.into() }
    }

    /// The message must wait about `wait` before it can be handled; no retry is spent, so a
    /// message may be deferred any number of times.
    pub fn defer(
        wait: std::time::Duration,
        error_type: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        Self { fate: Fate::Defer(wait), error_type: error_type.into(), source: source.into() }
    }

    /// Whether the retry ladder applies.
    pub fn is_transient(&self) -> bool {
        self.fate == Fate::Transient
    }

    /// The error and each of its causes, one per line: the closest thing to a stack trace a
    /// Rust error carries.
    pub fn chain(&self) -> String {
        let mut lines = vec![format!("{}: {}", self.error_type, self.source)];
        let mut cause = self.source.source();
        while let Some(c) = cause {
            lines.push(format!("caused by: {c}"));
            cause = c.source();
        }
        lines.join("\n")
    }
}

/// An adapter's error that knows its own fate. Each library error implements it once; `?` (or
/// `.map_err(HandlerError::from)`) then turns it into a [`HandlerError`] with that fate and
/// type, so no handler decides an adapter's fate again by hand.
pub trait Classify: std::error::Error + Send + Sync + 'static {
    /// Retry, dead-letter or wait.
    fn fate(&self) -> Fate;
    /// Machine-readable kind for `failure_info.error_type` (e.g. `DatabaseUnavailable`).
    fn error_type(&self) -> &'static str;
}

impl<E: Classify> From<E> for HandlerError {
    fn from(e: E) -> Self {
        Self { fate: e.fate(), error_type: e.error_type().into(), source: Box::new(e) }
    }
}

impl Fate {
    /// `Transient` when `transient`, else `Permanent`: the usual mapping of an adapter's own
    /// `is_transient()`.
    pub fn retry_if(transient: bool) -> Self {
        if transient { Fate::Transient } else { Fate::Permanent }
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?}): {}", self.error_type, self.fate, self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_lists_causes() {
        let e = HandlerError::transient("Timeout", Outer(std::io::Error::other("inner")));
        assert!(e.is_transient());
        assert_eq!(e.chain(), "Timeout: outer\ncaused by: inner");
        assert!(!HandlerError::permanent("Bad", "nope").is_transient());
    }
}
