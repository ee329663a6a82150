//! `poller`, the seed's Email Poller Service: takes new mail from the mailbox, assigns the
//! seed's priority 1–10 and publishes it to `email_exchange`/`classify`.
//!
//! Every message is first claimed in PostgreSQL (`mailbox_messages`), keyed by mailbox and the
//! mailbox's own id, with the message id it will be published under. A restart therefore never
//! publishes a message under a second id and never skips one, and a second poller on the same
//! Maildir leaves a fresh claim of another poller alone. The one window left — a crash after the
//! confirmed publish and before the ledger says `published` — republishes the same message
//! (same `message_id` and `email_id`) once the claim times out; the classifier records one
//! verdict per email, so it has no further effect. A message that cannot be parsed is
//! recorded with its reason and moved aside; it is never silently dropped. Within one scan the
//! backlog is published most urgent first.
//!
//! Sources: `maildir` (standard semantics: `new/` → `cur/` with the `S` flag). Gmail and IMAP
//! sources are not built yet.

pub mod maildir;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mail_mime::ParsedEmail;
use pipeline_core::messages::{EmailMetadata, EmailToClassify, IncomingEmail, new_message_id};
use pipeline_core::{Producer, Settings, Telemetry};
use serde::Deserialize;
use sqlx::PgPool;
use tracing::{info, warn};

/// The binary's name.
pub const NAME: &str = "poller";

/// `[mailbox]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct MailboxSettings {
    /// Source kind (`maildir`).
    pub kind: String,
    /// Maildir path.
    pub maildir: PathBuf,
    /// The support mailbox the messages belong to.
    pub agent_email: String,
    /// Scan interval.
    pub poll_interval_ms: u64,
    /// Subject words that make a message urgent.
    pub urgent_words: Vec<String>,
    /// Senders whose mail is more urgent.
    pub vip_senders: Vec<String>,
    /// Sender domains whose mail is more urgent.
    pub vip_domains: Vec<String>,
    /// A claim older than this is taken over: its poller died between claim and publish.
    pub claim_timeout_secs: u64,
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

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to publish, under this message id.
    Publish(String),
    /// Already published (a crash came between publish and the move): only move the file.
    AlreadyPublished,
    /// Another poller holds a fresh claim: leave it.
    Busy,
    /// Recorded as unparseable earlier: only move the file.
    Unparseable,
}

/// Claims a mailbox message in the ledger.
pub async fn claim(
    pool: &PgPool,
    agent_email: &str,
    mailbox_id: &str,
    claim_timeout_secs: u64,
) -> Result<Claim, sqlx::Error> {
    let fresh = new_message_id();
    let inserted: Option<String> = sqlx::query_scalar(
        "INSERT INTO mailbox_messages (agent_email, mailbox_id, message_id, state) VALUES ($1, $2, $3, 'claimed') \
         ON CONFLICT (agent_email, mailbox_id) DO NOTHING RETURNING message_id",
    )
    .bind(agent_email)
    .bind(mailbox_id)
    .bind(&fresh)
    .fetch_optional(pool)
    .await?;
    if let Some(id) = inserted {
        return Ok(Claim::Publish(id));
    }
    let taken_over: Option<String> = sqlx::query_scalar(
        "UPDATE mailbox_messages SET updated_at = now() WHERE agent_email = $1 AND mailbox_id = $2 \
         AND state = 'claimed' AND updated_at < now() - make_interval(secs => $3) RETURNING message_id",
    )
    .bind(agent_email)
    .bind(mailbox_id)
    .bind(claim_timeout_secs as f64)
    .fetch_optional(pool)
    .await?;
    if let Some(id) = taken_over {
        return Ok(Claim::Publish(id));
    }
    let state: String =
        sqlx::query_scalar("SELECT state FROM mailbox_messages WHERE agent_email = $1 AND mailbox_id = $2")
            .bind(agent_email)
            .bind(mailbox_id)
            .fetch_one(pool)
            .await?;
    Ok(match state.as_str() {
        "published" => Claim::AlreadyPublished,
        "unparseable" => Claim::Unparseable,
        _ => Claim::Busy,
    })
}

async fn set_state(
    pool: &PgPool,
    agent_email: &str,
    mailbox_id: &str,
    state: &str,
    priority: Option<u8>,
    reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mailbox_messages SET state = $3, priority = $4, reason = $5, updated_at = now() \
         WHERE agent_email = $1 AND mailbox_id = $2",
    )
    .bind(agent_email)
    .bind(mailbox_id)
    .bind(state)
    .bind(priority.map(i16::from))
    .bind(reason)
    .execute(pool)
    .await
    .map(drop)
}

/// Counts of one scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    /// Published now.
    pub published: usize,
    /// Recorded as unparseable now.
    pub unparseable: usize,
    /// Left for another poller or a later scan.
    pub skipped: usize,
}

/// One scan of the Maildir: claim, parse, publish (most urgent first), mark, move. Failures to
/// publish leave the message in `new/` for the next scan.
pub async fn scan_once(
    settings: &MailboxSettings,
    pool: &PgPool,
    producer: &Producer,
) -> Result<ScanReport, anyhow::Error> {
    let agent = settings.agent_email.as_str();
    let mut report = ScanReport::default();
    let mut ready = Vec::new();
    for entry in maildir::new_messages(&settings.maildir)? {
        match claim(pool, agent, &entry.id, settings.claim_timeout_secs).await? {
            Claim::Busy => report.skipped += 1,
            Claim::AlreadyPublished | Claim::Unparseable => maildir::mark_seen(&settings.maildir, &entry)?,
            Claim::Publish(message_id) => {
                let raw = match std::fs::read(&entry.path) {
                    Ok(raw) => raw,
                    // Another poller moved it after our listing.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                match mail_mime::parse(&raw) {
                    Ok(parsed) => {
                        let p = priority(settings, &parsed, &[]);
                        let mut message = to_message(agent, &entry.id, parsed, p);
                        message.message_id = message_id;
                        ready.push((entry, message));
                    }
                    Err(e) => {
                        warn!(mailbox_id = %entry.id, error = %e, "Unparseable message; recorded and set aside.");
                        set_state(pool, agent, &entry.id, "unparseable", None, Some(&e.to_string())).await?;
                        maildir::mark_seen(&settings.maildir, &entry)?;
                        report.unparseable += 1;
                    }
                }
            }
        }
    }
    // The backlog goes out most urgent first (the queue orders by priority too, but only what
    // it already holds).
    ready.sort_by(|a, b| b.1.priority.cmp(&a.1.priority).then(a.0.id.cmp(&b.0.id)));
    for (entry, message) in ready {
        if let Err(e) = producer.publish(&message).await {
            warn!(mailbox_id = %entry.id, error = %e, "Publish failed; the message stays in new/ for the next scan.");
            report.skipped += 1;
            continue;
        }
        set_state(pool, agent, &entry.id, "published", Some(message.priority), None).await?;
        maildir::mark_seen(&settings.maildir, &entry)?;
        info!(message_id = %message.message_id, mailbox_id = %entry.id, priority = message.priority, "Published email.");
        report.published += 1;
    }
    Ok(report)
}

/// Runs the poller until `shutdown`.
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
    let mailbox: MailboxSettings = settings.section("mailbox")?;
    if mailbox.kind != "maildir" {
        anyhow::bail!("mailbox.kind {:?} is not supported yet (only \"maildir\")", mailbox.kind);
    }
    maildir::ensure(&mailbox.maildir)?;
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, settings.database.max_connections).await?;
    let telemetry = Arc::new(Telemetry::default());
    let producer = Producer::new(NAME, &settings, telemetry);
    info!(maildir = %mailbox.maildir.display(), agent_email = %mailbox.agent_email, "Poller starting.");
    tokio::pin!(shutdown);
    loop {
        match scan_once(&mailbox, &pool, &producer).await {
            Ok(r) if r.published + r.unparseable > 0 => {
                info!(published = r.published, unparseable = r.unparseable, skipped = r.skipped, "Scanned mailbox.");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %format!("{e:#}"), "Scan failed; retrying."),
        }
        tokio::select! {
            () = &mut shutdown => break,
            () = tokio::time::sleep(Duration::from_millis(mailbox.poll_interval_ms)) => {}
        }
    }
    producer.close().await;
    Ok(())
}
