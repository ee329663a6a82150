//! `mailroom dlq list|show|replay|purge`: the operator's view of `dead_letter_queue`.
//!
//! What a dead letter is — an envelope a worker published, or a message the broker
//! dead-lettered with an `x-death` header — and how it is decoded and replayed lives in
//! [`pipeline_core::dead_letter`]; this module is the command around it: arguments and
//! selection here, reading the queue in `reader`, printing in `view`, replay and purge in
//! `settle`.
//!
//! Reading happens over AMQP on one channel: `basic.get` without auto-ack, at most as many
//! messages as the queue held when the command started (so dead letters that arrive meanwhile —
//! a replayed message failing again, say — are not read back in the same run and cannot make it
//! loop). Every message read stays unacknowledged, and therefore invisible to other readers,
//! until the command decides: replayed or purged ones are acked, everything else is returned by
//! closing the channel, which puts the messages back in their original order. A command that
//! dies, even by SIGKILL, returns them the same way, because the broker requeues the unacked
//! messages of a closed connection.
//!
//! Replay is at-least-once: each dead letter is republished to its original queue's exchange
//! and routing key (from [`pipeline_core::topology`]), with publisher confirms and `mandatory`,
//! and acked in the dead-letter queue only after the broker confirmed the copy. A crash between
//! the two leaves both, so that message is replayed again by the next run — a duplicate, which
//! the workers' idempotent handlers absorb — but never lost.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use pipeline_core::Settings;
use pipeline_core::dead_letter::DeadLetterInfo;
use pipeline_core::topology::WORK_QUEUES;

mod reader;
mod settle;
mod view;

pub use reader::{DeadLetterCount, DeadLetterSummary, DlqError, DlqReader, Held, summarize};

/// `mailroom dlq …`.
#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List dead letters, oldest first, without removing them.
    List {
        /// Which dead letters.
        #[command(flatten)]
        filter: Filter,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one dead letter in full (envelope, AMQP properties and headers) as pretty JSON.
    Show {
        /// Its id, as `list` prints it.
        id: String,
    },
    /// Republish dead letters to their original queue (retry count reset), then remove them.
    Replay {
        /// Ids of the dead letters to replay.
        ids: Vec<String>,
        /// Which dead letters (combined with the ids when both are given).
        #[command(flatten)]
        filter: Filter,
        /// Replay every dead letter.
        #[arg(long, conflicts_with_all = ["ids", "queue", "error_type", "older_than"])]
        all: bool,
        /// At most this many messages per second, to spare a downstream that just recovered.
        #[arg(long, value_name = "PER_SECOND")]
        rate: Option<f64>,
    },
    /// Delete dead letters for good, after a confirmation.
    Purge {
        /// Ids of the dead letters to delete.
        ids: Vec<String>,
        /// Which dead letters (combined with the ids when both are given).
        #[command(flatten)]
        filter: Filter,
        /// Delete every dead letter.
        #[arg(long, conflicts_with_all = ["ids", "queue", "error_type", "older_than"])]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Filters shared by `list`, `replay` and `purge`; all given filters must match.
#[derive(Debug, Clone, Default, Args)]
pub struct Filter {
    /// Only dead letters that failed in this queue (e.g. documents.to_ingest).
    #[arg(long, value_name = "ORIGINAL_QUEUE")]
    pub queue: Option<String>,
    /// Only dead letters with this error type (`failure_info.error_type`, or the broker's
    /// reason such as `expired` or `rejected`).
    #[arg(long)]
    pub error_type: Option<String>,
    /// Only dead letters older than this: 90s, 10m, 2h, 1d, 1h30m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.queue.is_none() && self.error_type.is_none() && self.older_than.is_none()
    }
}

/// Parses `90s`, `10m`, `2h`, `1d`, `1h30m` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".to_owned());
    }
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            _ => return Err(format!("invalid duration {text:?}: unknown unit {c:?} (use s, m, h or d)")),
        };
        let n: u64 = digits.parse().map_err(|_| format!("invalid duration {text:?}: a number must precede {c:?}"))?;
        total = total.saturating_add(n.saturating_mul(unit));
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("invalid duration {text:?}: {digits} has no unit"));
    }
    Ok(Duration::from_secs(total))
}

/// Which dead letters a command acts on.
#[derive(Debug, Clone)]
pub struct Selection {
    ids: HashSet<String>,
    filter: Filter,
    now: DateTime<Utc>,
}

impl Selection {
    /// Ids (any of them) and filters (all of them); empty ids means any id.
    pub fn new(ids: &[String], filter: Filter) -> Result<Self, String> {
        if let Some(queue) = &filter.queue
            && !WORK_QUEUES.iter().any(|q| q.name == queue)
        {
            let known: Vec<&str> = WORK_QUEUES.iter().map(|q| q.name).collect();
            return Err(format!("unknown queue {queue:?}; dead letters come from {}", known.join(", ")));
        }
        Ok(Self { ids: ids.iter().cloned().collect(), filter, now: Utc::now() })
    }

    /// Whether `info` is selected. A dead letter whose time is unknown is never "older than".
    pub fn matches(&self, info: &DeadLetterInfo) -> bool {
        (self.ids.is_empty() || self.ids.contains(&info.id))
            && self.filter.queue.as_ref().is_none_or(|q| info.original_queue.as_ref() == Some(q))
            && self.filter.error_type.as_ref().is_none_or(|t| &info.error_type == t)
            && self.filter.older_than.is_none_or(|age| {
                info.dead_lettered_at
                    .is_some_and(|at| self.now.signed_duration_since(at).to_std().is_ok_and(|elapsed| elapsed >= age))
            })
    }
}

/// Runs a `dlq` subcommand.
pub async fn run(settings: &Settings, action: DlqAction) -> anyhow::Result<ExitCode> {
    // A `DlqError`'s message already quotes its cause; printed as a chain it would repeat it
    // two or three times over, so it leaves as one line.
    run_action(settings, action).await.map_err(|e| match e.downcast::<DlqError>() {
        Ok(e) => anyhow::Error::msg(e.to_string()),
        Err(e) => e,
    })
}

async fn run_action(settings: &Settings, action: DlqAction) -> anyhow::Result<ExitCode> {
    match action {
        DlqAction::List { filter, json } => view::list(settings, filter, json).await,
        DlqAction::Show { id } => view::show(settings, &id).await,
        DlqAction::Replay { ids, filter, all, rate } => {
            if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                anyhow::bail!("--rate must be a positive number of messages per second");
            }
            require_selector(&ids, &filter, all, "replay")?;
            settle::replay(settings, Selection::new(&ids, filter).map_err(anyhow::Error::msg)?, &ids, rate).await
        }
        DlqAction::Purge { ids, filter, all, yes } => {
            require_selector(&ids, &filter, all, "purge")?;
            settle::purge(settings, Selection::new(&ids, filter).map_err(anyhow::Error::msg)?, yes).await
        }
    }
}

/// Replay and purge act on nothing by default: the operator names ids, filters, or `--all`.
fn require_selector(ids: &[String], filter: &Filter, all: bool, verb: &str) -> anyhow::Result<()> {
    if ids.is_empty() && filter.is_empty() && !all {
        anyhow::bail!("say which dead letters to {verb}: ids, --queue/--error-type/--older-than, or --all");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline_core::dead_letter::Shape;
    use pipeline_core::topology::{DOCUMENTS_TO_INGEST, EMAILS_TO_CLASSIFY};

    #[test]
    fn durations_parse_in_operator_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("10m5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn selection_combines_ids_and_filters() {
        let now = Utc::now();
        let info = DeadLetterInfo {
            id: "a".into(),
            shape: Shape::Envelope,
            original_queue: Some(DOCUMENTS_TO_INGEST.name.into()),
            error_type: "FileMissing".into(),
            error_message: String::new(),
            retry_count: Some(0),
            death_count: None,
            dead_lettered_at: Some(now - chrono::Duration::minutes(20)),
            consumer_id: None,
            original_message_id: None,
            email_id: None,
            redelivered: false,
        };
        let select = |ids: &[&str], filter: Filter| {
            let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
            Selection::new(&ids, filter).expect("valid").matches(&info)
        };
        assert!(select(&[], Filter::default()));
        assert!(select(&["a", "b"], Filter::default()));
        assert!(!select(&["b"], Filter::default()));
        let queue = |q: &str| Filter { queue: Some(q.into()), ..Filter::default() };
        assert!(select(&[], queue(DOCUMENTS_TO_INGEST.name)));
        assert!(!select(&[], queue(EMAILS_TO_CLASSIFY.name)));
        assert!(select(&[], Filter { error_type: Some("FileMissing".into()), ..Filter::default() }));
        assert!(!select(&["a"], Filter { error_type: Some("Other".into()), ..Filter::default() }));
        let older = |mins: u64| Filter { older_than: Some(Duration::from_secs(mins * 60)), ..Filter::default() };
        assert!(select(&[], older(10)));
        assert!(!select(&[], older(30)));
        assert!(Selection::new(&[], queue("emails.typo")).is_err());
    }
}
