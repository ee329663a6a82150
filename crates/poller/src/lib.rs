//! `poller`, the seed's Email Poller Service: takes new mail from the mailbox, assigns the
//! seed's priority 1–10 and publishes it to `email_exchange`/`classify`.
//!
//! Every message is first claimed in PostgreSQL (`mailbox_messages`, see [`ledger`]), keyed by
//! mailbox and the mailbox's own id, with the message id it will be published under. A restart
//! therefore never publishes a message under a second id and never skips one, and a second
//! poller on the same mailbox leaves a fresh claim of another poller alone. The one window left
//! — a crash after the confirmed publish and before the ledger says `published` — republishes
//! the same message (same `message_id` and `email_id`) once the claim times out; the classifier
//! records one verdict per email, so it has no further effect. A message that cannot be parsed
//! is recorded with its reason and set aside; it is never silently dropped. Within one pass the
//! backlog is published most urgent first.
//!
//! Sources, each a [`Source`]: `maildir` (standard semantics: `new/` → `cur/` with the `S`
//! flag), `gmail` (the Gmail API: a full sync with a search query, then incremental sync from a
//! stored history id, see [`gmail_source`]) and `imap` (UID-based over TLS, optionally with
//! IDLE, see [`imap_source`]). Sources that keep a position store it in `mailbox_cursors`
//! ([`cursor`]). A [`Poller`] runs one source pass by pass and owns the waiting between passes:
//! the poll interval, exponential backoff after failures, the mailbox's own "retry after", and
//! a full stop when only an operator can help.

pub mod cursor;
pub mod error;
pub mod gmail_source;
pub mod imap_source;
pub mod ledger;
pub mod maildir;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mail_mime::ParsedEmail;
use pipeline_core::messages::{EmailMetadata, EmailToClassify, IncomingEmail};
use pipeline_core::{Producer, Settings, Telemetry};
use serde::Deserialize;
use tracing::{error, info, warn};

pub use error::SourceError;
pub use gmail_source::{GmailSource, GmailSourceSettings};
pub use imap_source::{ImapSettings, ImapSource};
pub use ledger::{Claim, Fetched, Ledger, claim};
pub use maildir::MaildirSource;

/// The binary's name.
pub const NAME: &str = "poller";

/// `[mailbox]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct MailboxSettings {
    /// Source kind: `maildir`, `gmail` (settings in `[mailbox.gmail]`) or `imap`
    /// (`[mailbox.imap]`).
    pub kind: String,
    /// Maildir path (`maildir` source).
    pub maildir: PathBuf,
    /// The support mailbox the messages belong to.
    pub agent_email: String,
    /// Time between passes (and the first step of the backoff after a failure).
    pub poll_interval_ms: u64,
    /// Subject words that make a message urgent.
    pub urgent_words: Vec<String>,
    /// Senders whose mail is more urgent.
    pub vip_senders: Vec<String>,
    /// Sender domains whose mail is more urgent.
    pub vip_domains: Vec<String>,
    /// A claim older than this is taken over: its poller died between claim and publish.
    pub claim_timeout_secs: u64,
    /// The longest wait between passes after repeated failures (the mailbox's own "retry
    /// after" can be longer, and is honoured).
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
}

fn default_max_backoff_secs() -> u64 {
    300
}

/// The seed's priority 1–10: 5, +3 for an urgent word in the subject, +2 for a listed sender
/// or domain, +2 for Gmail's `IMPORTANT` label.
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

    /// Ends the session with the mailbox, if there is one.
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
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
}

impl<S: Source> Poller<S> {
    /// A poller for `source`, publishing through `ledger`.
    pub fn new(source: S, ledger: Ledger) -> Self {
        Self { source, ledger, failures: 0, not_before: None, stopped: None }
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
    /// see that a backoff is honoured without waiting it out.
    pub async fn step_at(&mut self, now: Instant) -> Step {
        if let Some(reason) = &self.stopped {
            return Step::Stopped { reason: reason.clone() };
        }
        if let Some(remaining) = self.not_before.and_then(|t| t.checked_duration_since(now)).filter(|d| !d.is_zero()) {
            return Step::BackingOff { remaining };
        }
        match self.source.sync_once(&self.ledger).await {
            Ok(report) => {
                self.failures = 0;
                self.not_before = None;
                Step::Synced(report)
            }
            Err(e) if e.needs_operator() => {
                let agent_email = &self.ledger.settings().agent_email;
                let kind = self.source.kind();
                // Logged once, here: later steps return the same reason without a word.
                let reason = if matches!(e, SourceError::Gmail(_)) {
                    error!(%agent_email, kind, error = %e, "Mailbox needs re-authorisation; polling of this mailbox has stopped.");
                    format!("mailbox needs re-authorisation: {e}")
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
        let doublings = self.failures.saturating_sub(1).min(20);
        base.saturating_mul(1 << doublings).min(cap)
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

/// Runs the poller until `shutdown`. The source's settings are checked before anything is
/// connected, so a misconfigured mailbox fails at once with the key to fix.
pub async fn run(settings: Settings, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let mailbox: MailboxSettings = settings.section("mailbox")?;
    let agent_email = mailbox.agent_email.as_str();
    match mailbox.kind.as_str() {
        "maildir" => {
            let source = MaildirSource::new(&mailbox.maildir)?;
            info!(maildir = %mailbox.maildir.display(), %agent_email, "Poller starting.");
            serve(source, &settings, mailbox, shutdown).await
        }
        "gmail" => {
            let gmail: GmailSourceSettings = settings.section("mailbox.gmail")?;
            let source = GmailSource::new(agent_email, &gmail)?;
            info!(user = %gmail.user, %agent_email, query = %gmail.query, "Poller starting on Gmail.");
            serve(source, &settings, mailbox, shutdown).await
        }
        "imap" => {
            let imap: ImapSettings = settings.section("mailbox.imap")?;
            let source = ImapSource::new(agent_email, &imap)?;
            info!(host = %imap.host, folder = %imap.folder, idle = imap.idle, %agent_email, "Poller starting on IMAP.");
            serve(source, &settings, mailbox, shutdown).await
        }
        other => anyhow::bail!("mailbox.kind {other:?} is not supported (\"maildir\", \"gmail\" or \"imap\")"),
    }
}

/// Connects the ledger (database and broker) and polls `source`.
async fn serve<S: Source>(
    source: S,
    settings: &Settings,
    mailbox: MailboxSettings,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, settings.database.max_connections).await?;
    let producer = Producer::new(NAME, settings, Arc::new(Telemetry::default()));
    poll(Poller::new(source, Ledger::new(pool, producer, mailbox)), shutdown).await
}

/// Steps the poller until `shutdown`; after a stop it only waits for `shutdown`, so a
/// supervisor does not restart it into the same error over and over.
async fn poll<S: Source>(mut poller: Poller<S>, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let backoff = match poller.step().await {
            Step::Synced(r) => {
                if r.published + r.unparseable > 0 {
                    info!(published = r.published, unparseable = r.unparseable, skipped = r.skipped, "Synced mailbox.");
                }
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
