//! Configuration errors of remote providers, reported loudly.
//!
//! A provider that answers 401, 403 or "model not found" will refuse every request until an
//! operator fixes the key, the permission or the model id. The failover chain may still answer
//! each email from the next provider, which is exactly why such an error must not pass
//! quietly: the deployment would run on its fallback forever. [`ProviderHealth`] keeps the
//! current problem of each provider and operation, logs every occurrence at `error` level —
//! rate-limited to one line per provider and operation per interval, the next line saying how
//! many were folded into it — and tells its listeners (the worker's readiness detail, the
//! `provider_problems` table that `mailroom status` reads, a metric) when a problem appears, is
//! seen again, or clears after a success.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

/// How often one provider's configuration error is logged at most, by default.
pub const DEFAULT_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The current configuration error of one provider for one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderProblem {
    /// The provider (`gemini`, `anthropic`, `openai`, …).
    pub provider: String,
    /// What it was used for (`classify`, `generate`, `embed`).
    pub operation: String,
    /// The HTTP status of the last occurrence, if there was one.
    pub status: Option<u16>,
    /// The last occurrence's message (already redacted by the client).
    pub message: String,
    /// Occurrences since the problem appeared.
    pub occurrences: u64,
    /// When it appeared.
    pub first_seen: SystemTime,
    /// When it was last seen.
    pub last_seen: SystemTime,
}

impl fmt::Display for ProviderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.provider, self.operation)?;
        if let Some(status) = self.status {
            write!(f, " HTTP {status}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// What a listener is told.
#[derive(Debug, Clone, Copy)]
pub enum HealthEvent<'a> {
    /// A configuration error occurred (first time or again).
    Misconfigured(&'a ProviderProblem),
    /// The provider answered again for this operation: its problem is gone.
    Recovered {
        /// The provider.
        provider: &'a str,
        /// The operation.
        operation: &'a str,
    },
}

type Listener = Arc<dyn Fn(&ProviderHealth, HealthEvent<'_>) + Send + Sync>;

struct Entry {
    problem: ProviderProblem,
    last_logged: Instant,
    /// Occurrences not logged since `last_logged`.
    suppressed: u64,
}

struct Inner {
    log_interval: Duration,
    problems: Mutex<BTreeMap<(String, String), Entry>>,
    listeners: Mutex<Vec<Listener>>,
}

/// The providers' configuration errors of one process. Clones share their state.
#[derive(Clone)]
pub struct ProviderHealth {
    inner: Arc<Inner>,
}

impl Default for ProviderHealth {
    fn default() -> Self {
        Self::new(DEFAULT_LOG_INTERVAL)
    }
}

impl fmt::Debug for ProviderHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderHealth").field("problems", &self.problems()).finish_non_exhaustive()
    }
}

impl ProviderHealth {
    /// Logs each provider's configuration error at most once per `log_interval`.
    pub fn new(log_interval: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                log_interval,
                problems: Mutex::new(BTreeMap::new()),
                listeners: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Calls `listener` on every event, after the state is updated (so it may read
    /// [`ProviderHealth::problems`]). Listeners must not block: they run on the caller's task.
    pub fn on_event(&self, listener: impl Fn(&ProviderHealth, HealthEvent<'_>) + Send + Sync + 'static) {
        self.inner.listeners.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::new(listener));
    }

    /// Records a configuration error of `provider` used for `operation`: logs it (rate-limited)
    /// and tells the listeners.
    pub fn misconfigured(&self, provider: &str, operation: &str, status: Option<u16>, message: &str) {
        let now = SystemTime::now();
        let problem = {
            let mut problems = self.inner.problems.lock().unwrap_or_else(PoisonError::into_inner);
            let key = (provider.to_owned(), operation.to_owned());
            let entry = problems.entry(key).or_insert_with(|| Entry {
                problem: ProviderProblem {
                    provider: provider.to_owned(),
                    operation: operation.to_owned(),
                    status,
                    message: message.to_owned(),
                    occurrences: 0,
                    first_seen: now,
                    last_seen: now,
                },
                // Far enough in the past that the first occurrence is logged.
                last_logged: Instant::now().checked_sub(self.inner.log_interval).unwrap_or_else(Instant::now),
                suppressed: 0,
            });
            entry.problem.status = status;
            entry.problem.message = message.to_owned();
            entry.problem.occurrences += 1;
            entry.problem.last_seen = now;
            let first = entry.problem.occurrences == 1;
            if first || entry.last_logged.elapsed() >= self.inner.log_interval {
                tracing::error!(
                    provider,
                    operation,
                    status,
                    occurrences = entry.problem.occurrences,
                    suppressed = entry.suppressed,
                    error = message,
                    "LLM or embedding provider is misconfigured: fix its key, permission or model id; \
                     every request to it fails until then"
                );
                entry.last_logged = Instant::now();
                entry.suppressed = 0;
            } else {
                entry.suppressed += 1;
            }
            entry.problem.clone()
        };
        self.notify(HealthEvent::Misconfigured(&problem));
    }

    /// Records that `provider` answered for `operation`; clears its problem, if it had one.
    pub fn succeeded(&self, provider: &str, operation: &str) {
        let removed = {
            let mut problems = self.inner.problems.lock().unwrap_or_else(PoisonError::into_inner);
            // Cheap when there is no problem: the common case on every successful request.
            if problems.is_empty() {
                return;
            }
            problems.remove(&(provider.to_owned(), operation.to_owned()))
        };
        if let Some(entry) = removed {
            tracing::info!(
                provider,
                operation,
                occurrences = entry.problem.occurrences,
                "LLM or embedding provider answers again; its configuration error is cleared"
            );
            self.notify(HealthEvent::Recovered { provider, operation });
        }
    }

    /// The current problems, by provider and operation.
    pub fn problems(&self) -> Vec<ProviderProblem> {
        let problems = self.inner.problems.lock().unwrap_or_else(PoisonError::into_inner);
        problems.values().map(|entry| entry.problem.clone()).collect()
    }

    /// One line for a readiness detail, `None` when every provider is fine.
    pub fn summary(&self) -> Option<String> {
        let problems = self.problems();
        if problems.is_empty() {
            return None;
        }
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        Some(format!("misconfigured provider: {}", lines.join("; ")))
    }

    fn notify(&self, event: HealthEvent<'_>) {
        let listeners = self.inner.listeners.lock().unwrap_or_else(PoisonError::into_inner).clone();
        for listener in listeners {
            listener(self, event);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_problem_is_kept_counted_and_cleared_by_a_success() {
        let health = ProviderHealth::new(Duration::from_secs(3600));
        let events = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&events);
        health.on_event(move |_, _| {
            seen.fetch_add(1, Ordering::Relaxed);
        });
        health.succeeded("gemini", "generate");
        assert_eq!(events.load(Ordering::Relaxed), 0, "a success without a problem is no event");

        health.misconfigured("gemini", "generate", Some(401), "API key not valid");
        health.misconfigured("gemini", "generate", Some(404), "models/gemini-9 is not found");
        let problems = health.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].occurrences, problems[0].status), (2, Some(404)));
        let summary = health.summary().expect("a summary");
        assert!(summary.contains("gemini (generate) HTTP 404: models/gemini-9 is not found"), "{summary}");

        health.succeeded("gemini", "classify");
        assert_eq!(health.problems().len(), 1, "another operation's success does not clear it");
        health.succeeded("gemini", "generate");
        assert!(health.problems().is_empty());
        assert_eq!(health.summary(), None);
        assert_eq!(events.load(Ordering::Relaxed), 3, "two occurrences and one recovery");
    }
}
