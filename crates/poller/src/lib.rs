//! `poller`, the pipeline's mail intake (docs/ARCHITECTURE.md): takes new mail from the mailbox,
//! assigns its priority 1–10 and publishes it to `email_exchange`/`classify`.
//!
//! Every message is first claimed in PostgreSQL (`mailbox_messages`, see [`ledger`]), keyed by
//! mailbox and the mailbox's own id, with the message id it will be published under. A restart
//! therefore never publishes a message under a second id and never skips one, and a second
//! poller on the same mailbox leaves a fresh claim of another poller alone. The one window left
//! — a crash after the confirmed publish and before the ledger says `published` — republishes
//! the same message (same `message_id` and `email_id`) once the claim times out; the classifier
//! records one verdict per email, so it has no further effect. A message that cannot be parsed
//! is recorded with its reason and set aside; it is never silently dropped. Within one pass the
//! backlog is published most urgent first (a Maildir backlog in parts of
//! [`maildir::PASS_PART`], each most urgent first, so the poller's memory stays bounded).
//!
//! Sources, each a [`Source`]: `maildir` (standard semantics: `new/` → `cur/` with the `S`
//! flag), `gmail` (the Gmail API: a full sync with a search query, then incremental sync from a
//! stored history id, see [`gmail_source`]) and `imap` (UID-based over TLS, optionally with
//! IDLE, see [`imap_source`]). Sources that keep a position store it in `mailbox_cursors`
//! ([`cursor`]). A [`Poller`] runs one source pass by pass and owns the waiting between passes:
//! the poll interval, exponential backoff after failures, the mailbox's own "retry after", and
//! a full stop when only an operator can help.
//!
//! Like every worker, the poller serves `/metrics`, `/healthz` and `/readyz` on `http.listen`.
//! It is ready while it is connected to the broker and its last mailbox pass succeeded;
//! otherwise `/readyz` says why ("mailbox unreachable: …", "mailbox needs re-authorisation:
//! …", "broker unavailable: …"). Its metrics ([`PollerMetrics`]) count what the passes did.

pub mod any_source;
pub mod authres;
pub mod cursor;
pub mod dedupe;
pub mod error;
pub mod gmail_source;
mod imap_folders;
mod imap_outcomes;
pub mod imap_source;
pub mod ledger;
pub mod maildir;
pub mod maildir_outcomes;
pub mod outcome;
pub mod person;
pub mod registry;
pub mod settings;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use mail_mime::ParsedEmail;
use pipeline_core::http::HealthServer;
use pipeline_core::messages::{EmailMetadata, EmailToClassify, IncomingEmail};
use pipeline_core::settings::DraftOrSend;
use pipeline_core::telemetry::RouteLabels;
use pipeline_core::topology::CLASSIFY;
use pipeline_core::{Producer, ProducerError, Settings, Telemetry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tracing::{error, info, warn};

pub use any_source::AnySource;
pub use error::SourceError;
pub use gmail_source::{GmailSource, GmailSourceSettings};
pub use imap_source::{ImapSettings, ImapSource};
pub use ledger::{Claim, Fetched, Ledger, Prepared, claim};
pub use maildir::MaildirSource;
pub use outcome::{Change, Outcome};
pub use settings::{ImapOutcomes, MailboxSettings, MarkRead};

/// The binary's name.
pub const NAME: &str = "poller";

/// Whether a mailbox message belongs to the configured sample. The decision hashes the
/// mailbox's own id, so it is the same on every pass, after a restart and on every poller, and
/// raising the rate only adds messages (10% ⊂ 50% ⊂ 100%).
pub fn in_sample(sample_rate: f64, mailbox_id: &str) -> bool {
    use sha2::Digest as _;
    if sample_rate >= 1.0 {
        return true;
    }
    if sample_rate <= 0.0 {
        return false;
    }
    let digest = sha2::Sha256::digest(mailbox_id.as_bytes());
    let bucket = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    f64::from(bucket) / f64::from(u32::MAX) < sample_rate
}

/// The priority 1–10 of `emails.to_classify` (docs/ARCHITECTURE.md): 5, +3 for an urgent word in
/// the subject, +2 for a listed sender or domain, +2 for Gmail's `IMPORTANT` label.
pub fn priority(settings: &MailboxSettings, email: &ParsedEmail, labels: &[String]) -> u8 {
    let subject = email.subject.to_lowercase();
    let words: Vec<&str> = subject.split(|c: char| !c.is_alphanumeric()).collect();
    let mut p: u8 = 5;
    if settings.urgent_words.iter().any(|w| words.contains(&w.to_lowercase().as_str())) {
        p += 3;
    }
    let from = email.from.to_lowercase();
    let domain = from.rsplit('@').next().unwrap_or_default();
    if settings.vip_senders.iter().any(|s| s.eq_ignore_ascii_case(&from))
        || settings.vip_domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    {
        p += 2;
    }
    if labels.iter().any(|l| l == "IMPORTANT") {
        p += 2;
    }
    p.clamp(1, 10)
}

/// The `emails.to_classify` message for a parsed email.
pub fn to_message(agent_email: &str, mailbox_id: &str, email: ParsedEmail, priority: u8) -> EmailToClassify {
    let thread_id = email.references.first().cloned().or_else(|| email.message_id.clone());
    EmailToClassify::new(
        IncomingEmail {
            email_id: mailbox_id.to_owned(),
            thread_id,
            from: email.from,
            to: email.to.first().cloned().unwrap_or_else(|| agent_email.to_owned()),
            subject: email.subject,
            body: email.body,
            headers: email.headers,
            labels: vec!["INBOX".into(), "UNREAD".into()],
            agent_email: agent_email.to_owned(),
            metadata: EmailMetadata {
                received_date: email.date.map(|d| d.to_rfc3339()),
                has_attachments: email.has_attachments,
            },
        },
        priority,
    )
}

/// Counts of one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    /// Published now.
    pub published: usize,
    /// Recorded as unparseable now.
    pub unparseable: usize,
    /// Left for another poller or a later pass.
    pub skipped: usize,
    /// Outcomes applied at the mailbox now (labels, keywords; see [`outcome`]).
    pub outcomes: usize,
}

impl ScanReport {
    /// Logs what a pass did, when it did anything.
    pub fn log(&self) {
        if self.published + self.unparseable + self.outcomes > 0 {
            info!(
                published = self.published,
                unparseable = self.unparseable,
                skipped = self.skipped,
                outcomes = self.outcomes,
                "Synced mailbox."
            );
        }
    }
}

/// A mailbox the poller can read. A pass lists what is new, claims each message in the
/// [`Ledger`], fetches and publishes what it claimed, acknowledges it at the mailbox (moves
/// it to `cur/`, labels it, sets `\Seen`) and only then moves its own cursor, if it has one.
pub trait Source: Send {
    /// The `mailbox.kind` this source implements, for logs.
    fn kind(&self) -> &'static str;

    /// One pass over the mailbox. An error leaves nothing half done that the next pass would
    /// not finish: claims of unpublished messages are released and the cursor stays.
    fn sync_once(&mut self, ledger: &Ledger) -> impl Future<Output = Result<ScanReport, SourceError>> + Send;

    /// Waits until the next pass is due after a successful one: `interval` unless the source
    /// can be told about new mail sooner (IMAP IDLE).
    fn wait_for_mail(&mut self, interval: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(interval)
    }

    /// Shows each message's new outcome at the mailbox (see [`outcome`]): its label, keyword or
    /// folder replaces the previous one, and it is marked read if `mailbox.mark_read` says so. Returns
    /// the mailbox ids done, including messages no longer in the mailbox; one left out is tried
    /// again next pass. Applying an outcome twice must change nothing.
    fn apply_outcomes(
        &mut self,
        ledger: &Ledger,
        changes: &[Change],
    ) -> impl Future<Output = Result<Vec<String>, SourceError>> + Send;

    /// Ends the session with the mailbox, if there is one.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }

    /// The mailbox's sent mail not yet recorded in `person_replies` (see [`person`]). Sources
    /// that cannot read sent mail return none.
    fn sent_mail(
        &mut self,
        _ledger: &Ledger,
    ) -> impl Future<Output = Result<Vec<mailroom_db::person_replies::SentMessage>, SourceError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }
}

/// What one [`Poller::step`] did.
#[derive(Debug)]
pub enum Step {
    /// A pass ran to the end.
    Synced(ScanReport),
    /// Still waiting out an earlier failure (a rate limit, say): the mailbox was not asked
    /// anything.
    BackingOff {
        /// Until the next pass may run.
        remaining: Duration,
    },
    /// The pass failed; the next one runs after `retry_in`.
    Failed {
        /// Why.
        error: SourceError,
        /// The backoff: at least what the mailbox asked for.
        retry_in: Duration,
    },
    /// Only an operator can help (the Gmail authorisation was revoked, the settings cannot
    /// work): this mailbox is no longer polled.
    Stopped {
        /// Why, with what to do.
        reason: String,
    },
}

/// Runs a [`Source`] pass by pass and decides when the next pass may run.
#[derive(Debug)]
pub struct Poller<S> {
    source: S,
    ledger: Ledger,
    failures: u32,
    not_before: Option<Instant>,
    stopped: Option<String>,
    /// When the next pass applies outcomes (`mailbox.outcome_interval_ms` after the last one).
    outcomes_due: Option<Instant>,
}

impl<S: Source> Poller<S> {
    /// A poller for `source`, publishing through `ledger`.
    pub fn new(source: S, ledger: Ledger) -> Self {
        Self { source, ledger, failures: 0, not_before: None, stopped: None, outcomes_due: None }
    }

    /// The ledger (its pool, settings and producer).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The source.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// One pass, now (see [`step_at`](Self::step_at)).
    pub async fn step(&mut self) -> Step {
        self.step_at(Instant::now()).await
    }

    /// One pass as if the time were `now`, unless an earlier failure's backoff has not run out
    /// by then or polling has stopped. Taking the time as an argument lets callers (and tests)
    /// see that a backoff is honoured without waiting it out. The pass applies new outcomes
    /// when `mailbox.outcome_interval_ms` has passed since the last pass that did (the first
    /// pass always does).
    pub async fn step_at(&mut self, now: Instant) -> Step {
        if let Some(reason) = &self.stopped {
            return Step::Stopped { reason: reason.clone() };
        }
        if let Some(remaining) = self.not_before.and_then(|t| t.checked_duration_since(now)).filter(|d| !d.is_zero()) {
            return Step::BackingOff { remaining };
        }
        let outcomes = self.outcomes_due.is_none_or(|due| now >= due);
        match pass(&mut self.source, &self.ledger, outcomes).await {
            Ok(report) => {
                self.failures = 0;
                self.not_before = None;
                if outcomes {
                    let interval = Duration::from_millis(self.ledger.settings().outcome_interval_ms);
                    // An interval too long to add (a typo of many digits) means "not for a year".
                    self.outcomes_due = now.checked_add(interval).or_else(|| now.checked_add(YEAR));
                }
                Step::Synced(report)
            }
            Err(e) if e.needs_operator() => {
                let agent_email = &self.ledger.settings().agent_email;
                let kind = self.source.kind();
                // Logged once, here: later steps return the same reason without a word.
                let reason = if matches!(e, SourceError::Gmail(_)) {
                    // A refused refresh token and a missing scope alike: only a new consent
                    // (`mailroom gmail authorize`) helps, and the error says which scope.
                    error!(%agent_email, kind, error = %e, "Mailbox needs re-authorisation; polling of this mailbox has stopped.");
                    let role = match &e {
                        SourceError::Gmail(gmail::GmailError::InsufficientScope { .. }) => {
                            " (the poller needs gmail.modify, or mail.google.com)"
                        }
                        _ => "",
                    };
                    format!("mailbox needs re-authorisation: {e}{role}")
                } else {
                    error!(%agent_email, kind, error = %e, "Mailbox settings cannot work; polling of this mailbox has stopped.");
                    format!("mailbox cannot be polled: {e}")
                };
                self.stopped = Some(reason.clone());
                Step::Stopped { reason }
            }
            Err(error) => {
                self.failures = self.failures.saturating_add(1);
                let retry_in = self.backoff().max(error.retry_after().unwrap_or_default());
                self.not_before = Some(now + retry_in);
                Step::Failed { error, retry_in }
            }
        }
    }

    /// Exponential backoff from the poll interval, capped at `max_backoff_secs`.
    fn backoff(&self) -> Duration {
        let settings = self.ledger.settings();
        let base = Duration::from_millis(settings.poll_interval_ms.max(1));
        let cap = Duration::from_secs(settings.max_backoff_secs).max(base);
        pipeline_core::backoff::exponential(base, cap, self.failures.saturating_sub(1))
    }

    /// Waits before the next step: `backoff` when the last step asked for it, otherwise until
    /// the source has new mail or the poll interval has passed.
    pub async fn wait(&mut self, backoff: Option<Duration>) {
        match backoff {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                let interval = Duration::from_millis(self.ledger.settings().poll_interval_ms);
                self.source.wait_for_mail(interval).await;
            }
        }
    }

    /// Ends the mailbox session and closes the broker connection.
    pub async fn close(&mut self) {
        self.source.close().await;
        self.ledger.producer().close().await;
    }
}

/// The longest wait for outcomes an `outcome_interval_ms` can ask for.
const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// One pass: new mail first, then (when `outcomes`) the outcomes the pipeline recorded since
/// the last pass that applied them.
async fn pass<S: Source>(source: &mut S, ledger: &Ledger, outcomes: bool) -> Result<ScanReport, SourceError> {
    // A person's replies first: a customer's follow-up published in this pass must already find
    // the reply it answers.
    person::record(source, ledger).await?;
    let mut report = source.sync_once(ledger).await?;
    if outcomes {
        report.outcomes = outcome::apply_pending(source, ledger).await?;
    }
    Ok(report)
}

/// Runs the poller until `shutdown`. The source's settings are checked before anything is
/// connected, so a misconfigured mailbox fails at once with the key to fix.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let mailbox: MailboxSettings = settings.section("mailbox")?;
    warn_about_authentication(&mailbox);
    let source = AnySource::open(&settings, &mailbox)?;
    info!(agent_email = %mailbox.agent_email, kind = source.kind(), "Poller starting.");
    serve(source, &settings, mailbox, shutdown).await
}

/// What the mailbox's sender-authentication settings mean for its replies, in one sentence,
/// and whether that needs the operator's attention (`None`: it is as it should be). Shared by
/// the poller's start and `mailroom doctor`.
pub fn authentication_warning(mailbox: &MailboxSettings) -> (String, Option<String>) {
    let trusted = mailbox.trusted_authserv_ids();
    match (mailbox.unauthenticated, trusted.is_empty()) {
        (DraftOrSend::Draft, false) => (
            format!(
                "replies to senders that {} did not authenticate (DMARC, or SPF or DKIM for the From domain) become drafts",
                trusted.join(" or ")
            ),
            None,
        ),
        (DraftOrSend::Draft, true) => (
            "no trusted authserv-id (mailbox.authserv_ids is empty), so no sender counts as authenticated and \
             every reply becomes a draft"
                .to_owned(),
            Some(
                "set mailbox.authserv_ids to the name your mail server writes first in its Authentication-Results \
                 headers (look at a delivered message), or mailbox.unauthenticated = \"send\" to send without \
                 checking senders"
                    .to_owned(),
            ),
        ),
        (DraftOrSend::Send, _) => (
            "mailbox.unauthenticated = \"send\": replies go to whatever From an email claims, spoofed or not"
                .to_owned(),
            Some(if trusted.is_empty() {
                "set mailbox.authserv_ids to your mail server's authserv-id and mailbox.unauthenticated = \"draft\""
                    .to_owned()
            } else {
                "set mailbox.unauthenticated = \"draft\"".to_owned()
            }),
        ),
    }
}

/// Logs at start what [`authentication_warning`] says: a warning when it needs attention.
pub(crate) fn warn_about_authentication(mailbox: &MailboxSettings) {
    let agent_email = &mailbox.agent_email;
    match authentication_warning(mailbox) {
        (said, None) => info!(%agent_email, "Sender authentication: {said}."),
        (said, Some(fix)) => warn!(%agent_email, "Sender authentication: {said}. To change it, {fix}."),
    }
}

/// Label of a failed pass: what failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `mailbox` (the mailbox could not be read or updated), `database` (the ledger),
    /// `publish` (the broker) or `needs_operator` (polling stopped).
    pub kind: &'static str,
}

/// The poller's metrics, on its `/metrics` beside the publisher's own
/// (`mailroom_messages_published_total{exchange="email_exchange",routing_key="classify"}` …).
#[derive(Debug, Clone, Default)]
pub struct PollerMetrics {
    /// Messages published to `emails.to_classify` and confirmed by the broker, also by passes
    /// that failed later on.
    pub published: Counter,
    /// Messages recorded as unparseable and set aside, counted when their pass completes.
    pub unparseable: Counter,
    /// Passes run, completed or failed (a pass skipped while backing off is none).
    pub passes: Counter,
    /// Passes that failed, by what failed.
    pub pass_failures: Family<FailureLabels, Counter>,
    /// New messages the last completed pass found: published, unparseable, or left to another
    /// poller. Above zero pass after pass, mail arrives faster than it is published.
    pub backlog: Gauge,
    /// Unix time of the last completed pass, for alerting on a poller that stopped getting
    /// through (a stale value while `up` is 1).
    pub last_success: Gauge,
}

impl PollerMetrics {
    /// Adds the metrics to the worker's registry (which prefixes `mailroom_`).
    pub fn register(&self, telemetry: &Telemetry) {
        let registry = &telemetry.metrics;
        registry.register("poller_published", "Messages published to emails.to_classify", self.published.clone());
        registry.register("poller_unparseable", "Messages recorded as unparseable", self.unparseable.clone());
        registry.register("poller_passes", "Mailbox passes run, completed or failed", self.passes.clone());
        registry.register("poller_pass_failures", "Mailbox passes that failed, by kind", self.pass_failures.clone());
        registry.register("poller_backlog", "New messages the last completed pass found", self.backlog.clone());
        registry.register(
            "poller_last_success_timestamp_seconds",
            "Unix time of the last completed mailbox pass",
            self.last_success.clone(),
        );
    }
}

/// The not-ready reason and failure kind of a failed pass.
fn failure(error: &SourceError) -> (&'static str, String) {
    match error {
        SourceError::Publish(e) => ("publish", format!("cannot publish: {e}")),
        SourceError::Database(_) => ("database", format!("ledger unavailable: {error}")),
        _ => ("mailbox", format!("mailbox unreachable: {error}")),
    }
}

/// Turns what the broker connection and each step did into metrics and readiness. Ready means
/// connected to the broker (the producer keeps that flag) and the last pass succeeded.
struct Observer {
    telemetry: Arc<Telemetry>,
    metrics: PollerMetrics,
    /// The publisher's confirmed publishes already added to `metrics.published`.
    confirmed: u64,
    /// Why the broker could not be reached at the last check.
    broker_error: Option<String>,
    /// Why the mailbox is not being polled successfully; `None` after a completed pass.
    mailbox_error: Option<String>,
}

impl Observer {
    fn new(telemetry: Arc<Telemetry>, metrics: PollerMetrics) -> Self {
        let observer = Self {
            telemetry,
            metrics,
            confirmed: 0,
            broker_error: None,
            mailbox_error: Some("starting: the first mailbox pass has not completed yet".to_owned()),
        };
        observer.report();
        observer
    }

    /// Records the result of connecting to the broker; logs only changes, as it runs every pass.
    fn broker(&mut self, result: Result<(), ProducerError>) {
        match (result, self.broker_error.is_some()) {
            (Ok(()), true) => {
                info!("Connected to the broker again.");
                self.broker_error = None;
            }
            (Ok(()), false) => {}
            (Err(e), was_down) => {
                if !was_down {
                    warn!(error = %e, "Broker unavailable; mail is published once it is back.");
                }
                self.broker_error = Some(e.to_string());
            }
        }
        self.report();
    }

    fn step(&mut self, step: &Step) {
        // The ledger publishes only through the producer, whose confirms are counted per route:
        // following that count also counts what a pass published before it failed.
        let route =
            RouteLabels { exchange: CLASSIFY.exchange.to_owned(), routing_key: CLASSIFY.routing_key.to_owned() };
        let confirmed = self.telemetry.metrics.published.get_or_create(&route).get();
        self.metrics.published.inc_by(confirmed.saturating_sub(self.confirmed));
        self.confirmed = confirmed;
        match step {
            Step::Synced(report) => {
                self.metrics.passes.inc();
                self.metrics.unparseable.inc_by(report.unparseable as u64);
                let found = report.published + report.unparseable + report.skipped;
                self.metrics.backlog.set(i64::try_from(found).unwrap_or(i64::MAX));
                let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                self.metrics.last_success.set(i64::try_from(now.as_secs()).unwrap_or(i64::MAX));
                self.mailbox_error = None;
            }
            Step::Failed { error, .. } => {
                let (kind, reason) = failure(error);
                self.metrics.passes.inc();
                self.metrics.pass_failures.get_or_create(&FailureLabels { kind }).inc();
                self.mailbox_error = Some(reason);
            }
            // Seen once: after it the poller only waits for shutdown.
            Step::Stopped { reason } => {
                self.metrics.passes.inc();
                self.metrics.pass_failures.get_or_create(&FailureLabels { kind: "needs_operator" }).inc();
                self.mailbox_error = Some(reason.clone());
            }
            // Nothing was asked of the mailbox: what the last pass said still holds.
            Step::BackingOff { .. } => {}
        }
        self.report();
    }

    /// Publishes readiness: the broker's reason first, as nothing can be published without it.
    fn report(&self) {
        let health = &self.telemetry.health;
        health.set_consuming(self.mailbox_error.is_none());
        health.set_reason(self.broker_error.clone().or_else(|| self.mailbox_error.clone()).unwrap_or_default());
    }
}

/// Serves the health endpoint, connects the ledger (database and broker) and polls `source`;
/// the endpoint is up first, so a slow database shows as not ready rather than as nothing.
async fn serve(
    source: AnySource,
    settings: &Settings,
    mailbox: MailboxSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let telemetry = Arc::new(Telemetry::default());
    let metrics = PollerMetrics::default();
    metrics.register(&telemetry);
    let mailbox_metrics = registry::MailboxMetrics::register(&telemetry);
    let observer = Observer::new(telemetry.clone(), metrics.clone());
    let listen = &settings.http.listen;
    let server =
        HealthServer::bind(listen, telemetry.clone()).await.with_context(|| format!("cannot listen on {listen}"))?;
    let addr = server.local_addr().with_context(|| format!("cannot listen on {listen}"))?;
    info!(worker = NAME, %addr, amqp = %settings.amqp.redacted_url(), "Serving /metrics, /healthz and /readyz.");
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = server.spawn(async move {
        let _ = http_stopped.await;
    });
    let result = async {
        let pool = mailroom_db::connect_and_migrate(&settings.database.url, settings.database.max_connections).await?;
        let registry: pipeline_core::mailbox_overlay::RegistrySettings = settings.section("registry")?;
        tokio::pin!(shutdown);
        let mut source = Some(source);
        let mut observer = Some(observer);
        loop {
            if registry::has_mailboxes(&pool).await? {
                match registry::serve(settings, &pool, &telemetry, &mailbox_metrics, &mut shutdown).await? {
                    registry::Ended::Shutdown => return Ok(()),
                    registry::Ended::Emptied => {
                        info!("The mailbox registry is empty; polling the mailbox of [mailbox] again.");
                        continue;
                    }
                }
            }
            // The one mailbox of `[mailbox]`, until shutdown or until a mailbox is registered.
            let source = match source.take() {
                Some(source) => source,
                None => AnySource::open(settings, &mailbox)?,
            };
            let observer = observer.take().unwrap_or_else(|| Observer::new(telemetry.clone(), metrics.clone()));
            // Naming the route lets connecting check its exchange (with `topology.declare =
            // false`), so readiness covers it before the first message.
            let producer = Producer::new(NAME, settings, telemetry.clone()).publishing_to(&[CLASSIFY]);
            let poller = Poller::new(source, Ledger::new(pool.clone(), producer, mailbox.clone()));
            let registered = async {
                loop {
                    tokio::time::sleep(registry.refresh()).await;
                    if registry::has_mailboxes(&pool).await.unwrap_or(false) {
                        info!("Mailboxes were registered; serving the registry instead of [mailbox].");
                        return;
                    }
                }
            };
            let mut shut_down = false;
            poll(poller, observer, async {
                tokio::select! {
                    () = &mut shutdown => shut_down = true,
                    () = registered => {}
                }
            })
            .await?;
            if shut_down {
                return Ok(());
            }
        }
    }
    .await;
    let _ = stop_http.send(());
    let _ = http.await;
    info!(worker = NAME, "Stopped.");
    result
}

/// Steps the poller until `shutdown`; after a stop it only waits for `shutdown`, so a
/// supervisor does not restart it into the same error over and over.
async fn poll<S: Source>(
    mut poller: Poller<S>,
    mut observer: Observer,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        // Cheap while connected (it only looks at the connection); otherwise it reconnects, so
        // readiness follows the broker even while there is nothing to publish. It is refreshed
        // once per pass: a long wait between passes (IMAP IDLE, a backoff) delays it.
        let connected = tokio::select! {
            () = &mut shutdown => break,
            result = poller.ledger().producer().connect() => result,
        };
        observer.broker(connected);
        let step = poller.step().await;
        observer.step(&step);
        let backoff = match step {
            Step::Synced(r) => {
                r.log();
                None
            }
            Step::BackingOff { remaining } => Some(remaining),
            Step::Failed { error, retry_in } => {
                warn!(error = %error, retry_in_ms = retry_in.as_millis() as u64, "Mailbox sync failed; retrying later.");
                Some(retry_in)
            }
            Step::Stopped { .. } => {
                (&mut shutdown).await;
                break;
            }
        };
        tokio::select! {
            () = &mut shutdown => break,
            () = poller.wait(backoff) => {}
        }
    }
    poller.close().await;
    Ok(())
}

#[cfg(test)]
mod sample_tests {
    use super::in_sample;

    #[test]
    fn the_sample_is_stable_nested_and_about_the_configured_fraction() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("1764150000.M{i}.host")).collect();
        let count = |rate: f64| ids.iter().filter(|id| in_sample(rate, id)).count();
        assert_eq!(count(1.0), 10_000);
        assert_eq!(count(0.0), 0);
        let tenth = count(0.1);
        assert!((850..=1150).contains(&tenth), "{tenth}");
        let half = count(0.5);
        assert!((4700..=5300).contains(&half), "{half}");
        // Raising the rate only adds messages; the same id always gets the same answer.
        assert!(ids.iter().all(|id| !in_sample(0.1, id) || in_sample(0.5, id)));
        assert!(ids.iter().all(|id| in_sample(0.3, id) == in_sample(0.3, id)));
    }
}
