//! `mailroom status`: one look at the whole deployment — queue depths and consumers (over AMQP,
//! exact), unacked counts and rates (management API), dead letters by error type (read over AMQP
//! and returned untouched), documents by ingestion status, emails by stage and the remote
//! providers that refuse their configuration — a wrong key, a permission, a retired model —
//! as the workers met them (PostgreSQL, `provider_problems`).
//!
//! The sources are asked concurrently and independently: when one is unreachable the report
//! still shows the others and says which one failed and at which address, and the command exits
//! 1 so that scripts notice. Without the management plugin (a fresh install) the queue depths
//! are still shown; one line says that unacked counts and rates need it and how to enable it.

use std::collections::BTreeMap;
use std::process::ExitCode;

use pipeline_core::Settings;
use pipeline_core::settings::redact_url;
use pipeline_core::topology::{DEAD_LETTER_QUEUE, Topology, WORK_QUEUES};
use secrecy::ExposeSecret as _;
use serde::Serialize;

use mailroom_db::provider_problems::ProviderProblemRow;

use crate::broker_admin::{self, management_needed};
use crate::dlq_cmd::{self, DeadLetterSummary};
use crate::topology_cmd::management;

/// At most this many dead letters are read to count them by type: each one read is held
/// unacked for the duration, so an enormous backlog is sampled rather than walked.
pub const DEAD_LETTER_SAMPLE: usize = 10_000;

/// How long connecting to PostgreSQL may take before the report says it did not answer.
pub const DATABASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// One queue of the topology as the broker reports it.
#[derive(Debug, Clone, Serialize)]
pub struct QueueRow {
    /// Queue name.
    pub name: String,
    /// Whether the queue exists in the vhost.
    pub exists: bool,
    /// Messages ready for delivery.
    pub ready: u64,
    /// Messages delivered and not yet acknowledged (`None` without the management API: AMQP does
    /// not report them).
    pub unacked: Option<u64>,
    /// Consumers attached.
    pub consumers: u64,
    /// Publishes per second (`None` until the broker has sampled the queue).
    pub publish_rate: Option<f64>,
    /// Deliveries per second (`None` until the broker has sampled the queue).
    pub deliver_rate: Option<f64>,
}

/// The broker part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct BrokerStatus {
    /// AMQP URL the depths were read over (password redacted).
    pub amqp_url: String,
    /// Management API base URL that was asked for unacked counts and rates.
    pub management_url: String,
    /// Vhost.
    pub vhost: String,
    /// Why the queues could not be read over AMQP, if they could not.
    pub error: Option<String>,
    /// Why the management API's part (unacked counts, rates) is missing, if it is.
    pub management_error: Option<String>,
    /// The topology's queues, in topology order.
    pub queues: Vec<QueueRow>,
}

/// The dead-letter part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterStatus {
    /// AMQP URL that was used (password redacted).
    pub amqp_url: String,
    /// Why it could not be read, if it could not.
    pub error: Option<String>,
    /// The counts, when read.
    #[serde(flatten)]
    pub summary: Option<DeadLetterSummary>,
}

/// The database part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    /// Database URL that was used (password redacted).
    pub url: String,
    /// Why it could not be read, if it could not.
    pub error: Option<String>,
    /// Documents by status (`None`: no `documents` table).
    pub documents: Option<BTreeMap<String, i64>>,
    /// Emails by stage and state.
    pub emails: Vec<mailroom_db::status::StateCounts>,
    /// Remote providers whose last answer was a configuration error (`None`: no
    /// `provider_problems` table in this database).
    pub provider_problems: Option<Vec<ProviderProblemRow>>,
    /// Each mailbox: registered or not, its poller and last pass, its mail (`None`: no
    /// registry table in this database).
    pub mailboxes: Option<Vec<mailroom_db::status::MailboxState>>,
}

/// The whole report, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Queues.
    pub broker: BrokerStatus,
    /// Dead letters.
    pub dead_letters: DeadLetterStatus,
    /// Documents and emails.
    pub database: DatabaseStatus,
}

impl Status {
    /// Whether every source answered.
    pub fn complete(&self) -> bool {
        self.broker.error.is_none()
            && self.broker.management_error.is_none()
            && self.dead_letters.error.is_none()
            && self.database.error.is_none()
    }
}

async fn broker(settings: &Settings) -> BrokerStatus {
    let client = management(settings);
    let vhost = settings.amqp.vhost();
    let topology = Topology::new(&settings.topology.retry_delays_ms);
    let names: Vec<&str> = topology.queues.iter().map(|q| q.name.as_str()).collect();
    let (depths, managed) = tokio::join!(broker_admin::queue_depths(&settings.amqp, &names), client.queues(&vhost));
    let mut status = BrokerStatus {
        amqp_url: settings.amqp.redacted_url(),
        management_url: client.base_url().to_owned(),
        vhost,
        error: None,
        management_error: None,
        queues: vec![],
    };
    let managed = match managed {
        Ok(queues) => queues,
        Err(e) => {
            status.management_error =
                Some(management_needed("unacked counts and rates need", &e).unwrap_or_else(|| e.to_string()));
            Vec::new()
        }
    };
    let depths = match depths {
        Ok(depths) => depths,
        Err(e) => {
            status.error = Some(e.to_string());
            return status;
        }
    };
    status.queues = topology
        .queues
        .iter()
        .zip(depths)
        .map(|(decl, depth)| {
            let extra = managed.iter().find(|q| q.name == decl.name);
            QueueRow {
                name: decl.name.clone(),
                exists: depth.is_some(),
                ready: depth.map_or(0, |d| u64::from(d.ready)),
                unacked: extra.map(|q| q.messages_unacknowledged),
                consumers: depth.map_or(0, |d| u64::from(d.consumers)),
                publish_rate: extra.and_then(|q| q.publish_rate()),
                deliver_rate: extra.and_then(|q| q.deliver_rate()),
            }
        })
        .collect();
    status
}

async fn dead_letters(settings: &Settings) -> DeadLetterStatus {
    let amqp_url = settings.amqp.redacted_url();
    match dlq_cmd::summarize(settings, DEAD_LETTER_SAMPLE).await {
        Ok(summary) => DeadLetterStatus { amqp_url, error: None, summary: Some(summary) },
        Err(e) => DeadLetterStatus { amqp_url, error: Some(e.to_string()), summary: None },
    }
}

async fn database(settings: &Settings) -> DatabaseStatus {
    let url = redact_url(settings.database.url.expose_secret());
    let mut status = DatabaseStatus {
        url,
        error: None,
        documents: None,
        emails: Vec::new(),
        provider_problems: None,
        mailboxes: None,
    };
    // A server that accepts the TCP connection and never answers must not hang the report.
    let connect = tokio::time::timeout(DATABASE_TIMEOUT, mailroom_db::status::connect_existing(&settings.database.url));
    let pool = match connect.await {
        Ok(Ok(pool)) => pool,
        Ok(Err(e)) => {
            status.error = Some(e.to_string());
            return status;
        }
        Err(_) => {
            status.error =
                Some(format!("no answer from PostgreSQL at {} within {} s", status.url, DATABASE_TIMEOUT.as_secs()));
            return status;
        }
    };
    let documents = mailroom_db::status::document_counts(&pool).await;
    let emails = mailroom_db::status::email_counts(&pool).await;
    let problems = mailroom_db::provider_problems::list(&pool).await;
    let mailboxes = mailroom_db::status::mailbox_states(&pool).await;
    pool.close().await;
    match (documents, emails, problems, mailboxes) {
        (Ok(documents), Ok(emails), Ok(problems), Ok(mailboxes)) => {
            status.documents = documents;
            status.emails = emails;
            status.provider_problems = problems;
            status.mailboxes = mailboxes;
        }
        (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
            status.error = Some(format!("query failed: {e}"));
        }
    }
    status
}

/// Gathers the report from all three sources at once.
pub async fn gather(settings: &Settings) -> Status {
    // Queue depths first: reading the dead letters holds them unacknowledged for a moment, and a
    // passive declare in that moment counts them as not ready (the DLQ would read 0).
    let (broker, database) = tokio::join!(broker(settings), database(settings));
    let dead_letters = dead_letters(settings).await;
    Status { broker, dead_letters, database }
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}"))
}

fn counts(list: &BTreeMap<String, i64>) -> String {
    if list.is_empty() {
        return "none".to_owned();
    }
    list.iter().map(|(state, n)| format!("{state} {n}")).collect::<Vec<_>>().join(", ")
}

/// Prints the human-readable report.
pub fn print(status: &Status) {
    let b = &status.broker;
    println!("RabbitMQ vhost {:?} ({}; management API {})", b.vhost, b.amqp_url, b.management_url);
    match &b.error {
        Some(e) => println!("  unreachable: {e}"),
        None => {
            let width = b.queues.iter().map(|q| q.name.len()).max().unwrap_or(5).max(5);
            println!(
                "  {:<width$}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}",
                "QUEUE", "READY", "UNACKED", "CONSUMERS", "PUBLISH/s", "DELIVER/s"
            );
            // Retry delay queues are listed only when they hold something (or are missing):
            // twelve rows of zeros would hide the queues that matter.
            let is_retry = |q: &QueueRow| !WORK_QUEUES.iter().chain([&&DEAD_LETTER_QUEUE]).any(|w| w.name == q.name);
            let idle = |q: &QueueRow| is_retry(q) && q.exists && q.ready + q.unacked.unwrap_or(0) == 0;
            let idle_retry = b.queues.iter().filter(|q| idle(q)).count();
            for q in b.queues.iter().filter(|q| !idle(q)) {
                if q.exists {
                    println!(
                        "  {:<width$}  {:>8}  {:>8}  {:>9}  {:>9}  {:>9}",
                        q.name,
                        q.ready,
                        q.unacked.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                        q.consumers,
                        rate(q.publish_rate),
                        rate(q.deliver_rate)
                    );
                } else {
                    println!("  {:<width$}  missing (run `mailroom topology apply`)", q.name);
                }
            }
            if idle_retry > 0 {
                println!("  ({idle_retry} retry delay queues empty)");
            }
        }
    }
    if let Some(e) = &b.management_error {
        println!("  {e}");
    }
    let d = &status.dead_letters;
    println!();
    match (&d.error, &d.summary) {
        (Some(e), _) => println!("Dead letters ({}): unreachable: {e}", d.amqp_url),
        (None, Some(s)) => {
            let sampled = if s.examined < s.total { format!(", first {} examined", s.examined) } else { String::new() };
            println!("Dead letters: {} in {} ({}{sampled})", s.total, DEAD_LETTER_QUEUE.name, d.amqp_url);
            if !s.by_error_type.is_empty() {
                let qw = s.by_error_type.iter().map(|c| c.original_queue.len()).max().unwrap_or(5).max(14);
                let tw = s.by_error_type.iter().map(|c| c.error_type.len()).max().unwrap_or(5).max(10);
                println!("  {:<qw$}  {:<tw$}  {:>7}", "ORIGINAL QUEUE", "ERROR TYPE", "COUNT");
                for c in &s.by_error_type {
                    println!("  {:<qw$}  {:<tw$}  {:>7}", c.original_queue, c.error_type, c.count);
                }
                println!("  (`mailroom dlq list` for details, `mailroom dlq replay` once the cause is fixed)");
            }
        }
        (None, None) => {}
    }
    let db = &status.database;
    println!();
    println!("PostgreSQL {}", db.url);
    if let Some(e) = &db.error {
        println!("  unavailable: {e}");
        return;
    }
    match &db.documents {
        Some(list) => println!("  documents: {}", counts(list)),
        None => println!("  documents: no documents table (run `mailroom migrate`)"),
    }
    println!("  emails:");
    for stage in &db.emails {
        let text = match &stage.counts {
            Some(list) => counts(list),
            None => format!("no {} table in this database", stage.table),
        };
        println!("    {:<11} {text}", stage.stage);
    }
    if let Some(mailboxes) = &db.mailboxes {
        print_mailboxes(mailboxes);
    }
    match &db.provider_problems {
        Some(problems) if problems.is_empty() => println!("  providers: no configuration error reported"),
        Some(problems) => {
            println!("  providers: MISCONFIGURED (every request to them fails; the chain answers from the next entry)");
            for p in problems {
                let status = p.status.map(|s| format!(" HTTP {s}")).unwrap_or_default();
                println!(
                    "    {} ({}, {}){status}: {} — {} times since {}, last {}",
                    p.provider,
                    p.operation,
                    p.worker,
                    p.message,
                    p.occurrences,
                    p.first_seen.format("%Y-%m-%d %H:%M:%S UTC"),
                    p.last_seen.format("%Y-%m-%d %H:%M:%S UTC"),
                );
            }
            println!("    (fix the key, permission or model id; the next answer clears the entry)");
        }
        None => {}
    }
}

/// The mailboxes part: one line each, with its problem when it has one.
fn print_mailboxes(mailboxes: &[mailroom_db::status::MailboxState]) {
    let registry_empty = mailboxes.iter().all(|m| !m.registered);
    if registry_empty {
        println!("  mailboxes: the registry is empty; the poller and sender serve the mailbox of [mailbox]");
    } else {
        println!("  mailboxes (registry):");
    }
    for m in mailboxes {
        let state = match (m.registered, m.enabled, &m.last_error) {
            (false, _, _) if registry_empty => "[mailbox]".to_owned(),
            (false, _, _) => "not registered".to_owned(),
            (true, false, _) => "disabled".to_owned(),
            (true, true, Some(e)) => format!("FAILING: {e}"),
            (true, true, None) if m.poller.is_none() => "no poller holds it".to_owned(),
            (true, true, None) => match m.last_pass_at {
                Some(at) => format!("ok, last pass {}", at.format("%Y-%m-%d %H:%M:%S UTC")),
                None => "starting".to_owned(),
            },
        };
        let poller = m.poller.as_deref().map(|p| format!(" poller {p};")).unwrap_or_default();
        let outbox = m.sender_problem.as_deref().map(|p| format!(" outbox FAILING: {p};")).unwrap_or_default();
        println!(
            "    {}: {state};{outbox}{poller} published {}, duplicates {}, unparseable {}, sent {}, drafted {}",
            m.address, m.published, m.duplicates, m.unparseable, m.sent, m.drafted
        );
    }
}

/// `mailroom status [--json]`: exit 0 when every source answered, 1 otherwise.
pub async fn status(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let status = gather(settings).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print(&status);
    }
    Ok(if status.complete() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
