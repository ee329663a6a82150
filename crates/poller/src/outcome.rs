//! What became of each published message, shown at the mailbox.
//!
//! The later stages already record everything needed: the classifier's verdict
//! (`classifications`), the sender's send log (`replies`). After a successful pass (at most once
//! per `mailbox.outcome_interval_ms`) the poller, which holds the mailbox connection, derives
//! every message's [`Outcome`] from them ([`pending`]) and applies the new ones at the mailbox
//! through its [`Source`] — a Gmail label, an IMAP keyword or folder (`mailbox.imap_outcomes`),
//! a Maildir keyword — then records them in the ledger (`mailbox_messages.outcome`,
//! [`record`]), so each is applied once. Only answered mail is marked read by default
//! ([`MarkRead`](crate::MarkRead)); everything else stays unread, with its label, for the team.
//!
//! A message the pipeline never finished gets an outcome too, after `mailbox.outcome_timeout_secs`:
//! `failed` when it was never classified (dead-lettered, expired, stuck), `needs-person` when it
//! was a support inquiry left without a reply. `needs-person` and `failed` are looked at again on
//! every such pass (a replayed dead letter may still be answered: the label then changes); the
//! other outcomes are final.

use sqlx::PgPool;

use crate::{Ledger, Source, SourceError};

/// Messages whose outcome one pass looks at, at most (the rest wait for the next pass).
pub const PER_PASS: i64 = 1000;

/// Outcomes handed to the source at once; each batch is recorded before the next, so a
/// failure part way repeats at most one batch (applying an outcome twice changes nothing).
pub const BATCH: usize = 50;

/// The outcome of one email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A reply was sent.
    Answered,
    /// A draft reply waits for a person to review and send it.
    Drafted,
    /// A support inquiry no reply or draft was made for: a person must answer it.
    NeedsPerson,
    /// The classifier said it is not a support inquiry; it stays unread so that a person sees
    /// what the classifier set aside.
    NotSupport,
    /// The pipeline could not handle it (unparseable, dead-lettered, never classified).
    Failed,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Self; 5] = [Self::Answered, Self::Drafted, Self::NeedsPerson, Self::NotSupport, Self::Failed];

    /// As stored in `mailbox_messages.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Drafted => "drafted",
            Self::NeedsPerson => "needs-person",
            Self::NotSupport => "not-support",
            Self::Failed => "failed",
        }
    }

    /// The stored name back.
    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == stored)
    }

    /// The name a person reads: `Needs person`. The last part of the Gmail label and of the
    /// IMAP outcome folder.
    pub fn display_name(self) -> &'static str {
        match self {
            Self::Answered => "Answered",
            Self::Drafted => "Drafted",
            Self::NeedsPerson => "Needs person",
            Self::NotSupport => "Not support",
            Self::Failed => "Failed",
        }
    }

    /// The Gmail label under `parent`: `Mailroom/Needs person`.
    pub fn label(self, parent: &str) -> String {
        format!("{parent}/{}", self.display_name())
    }

    /// The IMAP (and Maildir) keyword under `parent`: `$Mailroom-NeedsPerson`. An IMAP atom: no
    /// spaces (the parent is checked by [`MailboxSettings::validate`](crate::MailboxSettings::validate)).
    pub fn keyword(self, parent: &str) -> String {
        let name = match self {
            Self::Answered => "Answered",
            Self::Drafted => "Drafted",
            Self::NeedsPerson => "NeedsPerson",
            Self::NotSupport => "NotSupport",
            Self::Failed => "Failed",
        };
        format!("${parent}-{name}")
    }
}

/// A message whose outcome changed since it was last applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The mailbox's id for the message (the ledger key).
    pub mailbox_id: String,
    /// The outcome applied before, whose label the new one replaces.
    pub previous: Option<Outcome>,
    /// The outcome to apply.
    pub outcome: Outcome,
}

/// The messages of `agent_email`'s mailbox whose derived outcome differs from the applied one,
/// oldest first. The rules, first match wins: unparseable → failed; a sent reply → answered; a
/// draft → drafted; a reply in doubt or a dry run (nothing was sent) → needs-person; classified
/// not support → not-support; then, only after `timeout_secs`: never classified → failed,
/// otherwise → needs-person. A duplicate copy shows the outcome of the copy that was published
/// ([`crate::dedupe`]).
pub async fn pending(
    pool: &PgPool,
    agent_email: &str,
    timeout_secs: u64,
    limit: i64,
) -> Result<Vec<Change>, sqlx::Error> {
    // The copy's classification and reply are each looked up by their full key, as scalar
    // subqueries behind `OFFSET 0` (which keeps the planner from inlining them and evaluating
    // them once per use in the CASE). As joins, a plan made while the tables were still small
    // (a new database, before its first ANALYZE) scanned all of the agent's replies for every
    // message, and kept doing so as they grew: 546 rows read per message a pass in the bench.
    // The open messages are few and have their own partial index
    // (mailbox_messages_open_outcome_idx), but statistics taken while most messages were in
    // flight (a new mailbox, a burst) made the planner read the whole table instead, on every
    // pass: 16 ms a pass at 5,000 messages against 0.24 ms. The scan is ruled out for this one
    // statement, in a transaction of its own.
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await?;
    let rows: Vec<(String, Option<String>, String)> = sqlx::query_as(
        "SELECT m.mailbox_id, m.outcome, d.outcome FROM mailbox_messages m \
         CROSS JOIN LATERAL (SELECT \
             (SELECT r.state FROM replies r \
              WHERE r.agent_email = m.agent_email AND r.email_id = COALESCE(m.duplicate_of, m.mailbox_id)) AS reply, \
             (SELECT c.is_support_inquiry FROM classifications c \
              WHERE c.agent_email = m.agent_email AND c.email_id = COALESCE(m.duplicate_of, m.mailbox_id)) AS support \
             OFFSET 0) k \
         CROSS JOIN LATERAL (SELECT CASE \
             WHEN m.state = 'unparseable' THEN 'failed' \
             WHEN k.reply = 'sent' THEN 'answered' \
             WHEN k.reply = 'drafted' THEN 'drafted' \
             WHEN k.reply IN ('in_doubt', 'dry_run') THEN 'needs-person' \
             WHEN k.support = false THEN 'not-support' \
             WHEN m.created_at > now() - make_interval(secs => $2) THEN NULL \
             WHEN k.support IS NULL THEN 'failed' \
             ELSE 'needs-person' END AS outcome) d \
         WHERE m.agent_email = $1 AND m.state IN ('published', 'unparseable', 'duplicate') \
           AND (m.outcome IS NULL OR m.outcome IN ('needs-person', 'failed')) \
           AND d.outcome IS NOT NULL AND d.outcome IS DISTINCT FROM m.outcome \
         ORDER BY m.created_at, m.mailbox_id LIMIT $3",
    )
    .bind(agent_email)
    .bind(timeout_secs as f64)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .filter_map(|(mailbox_id, previous, outcome)| {
            Some(Change {
                mailbox_id,
                previous: previous.as_deref().and_then(Outcome::parse),
                outcome: Outcome::parse(&outcome)?,
            })
        })
        .collect())
}

/// Records outcomes as applied, in one statement.
pub async fn record(pool: &PgPool, agent_email: &str, applied: &[&Change]) -> Result<(), sqlx::Error> {
    if applied.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = applied.iter().map(|c| c.mailbox_id.as_str()).collect();
    let outcomes: Vec<&str> = applied.iter().map(|c| c.outcome.as_str()).collect();
    sqlx::query(
        "UPDATE mailbox_messages AS m SET outcome = o.outcome, outcome_at = now() \
         FROM unnest($2::text[], $3::text[]) AS o(mailbox_id, outcome) \
         WHERE m.agent_email = $1 AND m.mailbox_id = o.mailbox_id",
    )
    .bind(agent_email)
    .bind(&ids)
    .bind(&outcomes)
    .execute(pool)
    .await
    .map(drop)
}

/// Applies every new outcome of the mailbox through `source` and records what it applied;
/// returns how many. A source leaves out of its answer what it cannot apply yet (a Maildir
/// message still in `new/`); those are tried again next pass.
pub async fn apply_pending<S: Source>(source: &mut S, ledger: &Ledger) -> Result<usize, SourceError> {
    let settings = ledger.settings();
    let changes = pending(ledger.pool(), &settings.agent_email, settings.outcome_timeout_secs, PER_PASS).await?;
    let mut applied = 0;
    for batch in changes.chunks(BATCH) {
        let done = source.apply_outcomes(ledger, batch).await?;
        let done: Vec<&Change> = batch.iter().filter(|c| done.contains(&c.mailbox_id)).collect();
        record(ledger.pool(), &settings.agent_email, &done).await?;
        applied += done.len();
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MarkRead;

    #[test]
    fn outcomes_round_trip_and_name_labels_and_keywords() {
        for outcome in Outcome::ALL {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
            assert!(outcome.label("Mailroom").starts_with("Mailroom/"));
            let keyword = outcome.keyword("Mailroom");
            assert!(keyword.starts_with("$Mailroom-") && !keyword.contains(' '), "{keyword}");
        }
        assert_eq!(Outcome::NeedsPerson.label("Support"), "Support/Needs person");
        assert_eq!(Outcome::NotSupport.keyword("Mailroom"), "$Mailroom-NotSupport");
        assert_eq!(Outcome::parse("unknown"), None);
    }

    #[test]
    fn by_default_only_answered_mail_is_marked_read() {
        let default = MarkRead::default();
        assert!(!default.at_publish());
        assert!(default.on_outcome(Outcome::Answered));
        assert!(Outcome::ALL.into_iter().filter(|o| default.on_outcome(*o)).eq([Outcome::Answered]));
        assert!(MarkRead::Published.at_publish() && !MarkRead::Published.on_outcome(Outcome::Answered));
        assert!(!MarkRead::Never.at_publish() && !MarkRead::Never.on_outcome(Outcome::Answered));
    }
}
