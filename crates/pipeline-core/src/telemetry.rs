//! Logs, metrics and health: `tracing` set up for human or JSON output, the Prometheus
//! registry every worker shares, and the readiness flags `/readyz` reports.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, TelemetrySettings};

/// Installs the global `tracing` subscriber. `RUST_LOG` overrides the configured level.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init_tracing(settings: &TelemetrySettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let ansi = use_colour(&std::io::stderr(), std::env::var_os("NO_COLOR").as_deref());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Human => builder.try_init(),
    };
}

/// Whether output to `stream` may carry ANSI colour codes: only on a terminal, and only while
/// `NO_COLOR` (its value, passed in) is unset or empty (<https://no-color.org>). Logs piped to a
/// file, `jq` or `grep`, or collected by `mailroom up`, must stay plain text.
pub fn use_colour(stream: &impl IsTerminal, no_color: Option<&std::ffi::OsStr>) -> bool {
    colour_allowed(stream.is_terminal(), no_color)
}

fn colour_allowed(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Label set of per-queue metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    /// Queue name.
    pub queue: String,
}

/// Label set of dead-letter metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLetterLabels {
    /// Queue the message was consumed from.
    pub queue: String,
    /// `failure_info.error_type`.
    pub error_type: String,
}

/// Label set of publish metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Exchange.
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
}

/// The consumer runtime's and publisher's metrics, plus a registry other crates can add to.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Deliveries taken from a queue.
    pub consumed: Family<QueueLabel, Counter>,
    /// Deliveries acknowledged after success.
    pub acked: Family<QueueLabel, Counter>,
    /// Deliveries sent to a retry delay queue.
    pub retried: Family<QueueLabel, Counter>,
    /// Deliveries parked in a delay queue without spending a retry (quota waits).
    pub deferred: Family<QueueLabel, Counter>,
    /// Deliveries dead-lettered, by error type.
    pub dead_lettered: Family<DeadLetterLabels, Counter>,
    /// Deliveries returned to the queue because even dead-lettering failed.
    pub requeued: Family<QueueLabel, Counter>,
    /// Handler latency in seconds.
    pub handler_seconds: Family<QueueLabel, Histogram>,
    /// Deliveries being handled now.
    pub in_flight: Family<QueueLabel, Gauge>,
    /// Confirmed publishes.
    pub published: Family<RouteLabels, Counter>,
    /// Failed publishes (nack, return, connection).
    pub publish_failures: Family<RouteLabels, Counter>,
    /// Reconnections to the broker.
    pub reconnects: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("mailroom");
        let consumed = Family::default();
        let acked = Family::default();
        let retried = Family::default();
        let deferred = Family::default();
        let dead_lettered = Family::default();
        let requeued = Family::default();
        let handler_seconds =
            Family::<QueueLabel, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let in_flight = Family::default();
        let published = Family::default();
        let publish_failures = Family::default();
        let reconnects = Counter::default();
        registry.register("messages_consumed", "Deliveries taken from a queue", consumed.clone());
        registry.register("messages_acked", "Deliveries acknowledged after success", acked.clone());
        registry.register("messages_retried", "Deliveries sent to a retry delay queue", retried.clone());
        registry.register("messages_deferred", "Deliveries parked in a delay queue to wait", deferred.clone());
        registry.register("messages_dead_lettered", "Deliveries dead-lettered", dead_lettered.clone());
        registry.register("messages_requeued", "Deliveries returned to their queue unhandled", requeued.clone());
        registry.register("handler_duration_seconds", "Handler latency", handler_seconds.clone());
        registry.register("messages_in_flight", "Deliveries being handled", in_flight.clone());
        registry.register("messages_published", "Confirmed publishes", published.clone());
        registry.register("publish_failures", "Publishes nacked, returned or lost", publish_failures.clone());
        registry.register("amqp_reconnects", "Reconnections to the broker", reconnects.clone());
        Self {
            registry: Mutex::new(registry),
            consumed,
            acked,
            retried,
            deferred,
            dead_lettered,
            requeued,
            handler_seconds,
            in_flight,
            published,
            publish_failures,
            reconnects,
        }
    }
}

impl Metrics {
    /// Adds a metric of another component (LLM latency, send quota, …) to the same endpoint.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().unwrap_or_else(|p| p.into_inner()).register(name, help, metric);
    }

    /// Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// Liveness and readiness of a worker.
#[derive(Debug, Default)]
pub struct Health {
    connected: AtomicBool,
    consuming: AtomicBool,
    reason: Mutex<String>,
    /// Problems that do not stop the worker but need an operator, by source.
    details: Mutex<std::collections::BTreeMap<String, String>>,
    /// A problem outside the broker that holds the work up until an operator acts.
    blocked: Mutex<Option<String>>,
}

impl Health {
    /// Records whether the broker connection is up. Readiness needs this and
    /// [`Health::set_consuming`]; the two are independent, so one component's reconnect cannot
    /// clear what another reported.
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::SeqCst);
    }

    /// Records whether the worker is consuming (for the upload API: serving).
    pub fn set_consuming(&self, on: bool) {
        self.consuming.store(on, Ordering::SeqCst);
    }

    /// Records why the worker is not ready (shown by `/readyz`).
    pub fn set_reason(&self, reason: impl Into<String>) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.into();
    }

    /// Records (`Some`) or clears (`None`) a problem under `source` that leaves the worker
    /// working but needs an operator — a remote provider that refuses the configured key or
    /// model while the chain answers from the next one. `/readyz` lists them as `degraded:`
    /// lines; they do not make the worker unready.
    pub fn set_detail(&self, source: &str, detail: Option<String>) {
        let mut details = self.details.lock().unwrap_or_else(|p| p.into_inner());
        match detail {
            Some(detail) => details.insert(source.to_owned(), detail),
            None => details.remove(source),
        };
    }

    /// The problems recorded with [`Health::set_detail`], by source.
    pub fn details(&self) -> Vec<String> {
        self.details.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// Records a problem outside the broker that holds the worker's work up until an operator
    /// acts (a mail sink whose credentials lack a permission), or clears it with `None`. Kept
    /// apart from the broker flags, so a reconnect does not hide it. The worker is not ready
    /// while one is recorded, and `/readyz` shows it.
    pub fn set_blocked(&self, problem: Option<String>) {
        *self.blocked.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }

    /// Ready only while connected, consuming and not blocked.
    pub fn is_ready(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
            && self.consuming.load(Ordering::SeqCst)
            && self.blocked.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    /// Whether the broker connection is up.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Why the worker is not ready: the broker's reason first (nothing works without it), then
    /// what blocks the work.
    pub fn reason(&self) -> String {
        let reason = self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !reason.is_empty() {
            return reason;
        }
        self.blocked.lock().unwrap_or_else(|p| p.into_inner()).clone().unwrap_or_default()
    }
}

/// What a worker's HTTP endpoint shows: its metrics and its health.
#[derive(Debug, Default)]
pub struct Telemetry {
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Readiness.
    pub health: Health,
}

#[cfg(test)]
mod colour_tests {
    use super::{colour_allowed, use_colour};

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour_allowed(true, None));
        assert!(colour_allowed(true, Some("".as_ref())), "an empty NO_COLOR does not count");
        assert!(!colour_allowed(true, Some("1".as_ref())));
        assert!(!colour_allowed(false, None));
    }

    #[test]
    fn a_file_is_not_a_terminal() {
        // /dev/null is a character device but not a terminal, like a redirected stderr.
        let file = std::fs::File::open("/dev/null").expect("/dev/null");
        assert!(!use_colour(&file, None));
    }
}

#[cfg(test)]
mod health_tests {
    use super::Health;

    #[test]
    fn a_blocked_worker_is_not_ready_and_says_why_after_the_broker() {
        let health = Health::default();
        health.set_connected(true);
        health.set_consuming(true);
        assert!(health.is_ready());
        health.set_blocked(Some("outbox needs re-authorisation".into()));
        assert!(!health.is_ready());
        assert_eq!(health.reason(), "outbox needs re-authorisation");
        // A broker problem comes first; a reconnect does not clear the block.
        health.set_reason("broker down");
        assert_eq!(health.reason(), "broker down");
        health.set_reason(String::new());
        assert_eq!(health.reason(), "outbox needs re-authorisation");
        health.set_blocked(None);
        assert!(health.is_ready());
        assert_eq!(health.reason(), "");
    }
}
