//! The send log in PostgreSQL (`replies`): claim → sent/drafted, one row per answered email.
//!
//! A sender claims the email before it delivers and completes the row after. Whoever finds a
//! completed row does nothing (redelivery, a replayed dead letter, a duplicate publish); whoever
//! finds a fresh claim of another sender waits (two senders racing); whoever finds a claim older
//! than the lease takes it over with a new token, because its holder died mid-delivery — and
//! then asks the sink whether the reply went out before delivering again.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// Ours to deliver; `takeover` when a dead sender's stale claim was taken over.
    Claimed {
        /// Proves ownership when completing or releasing.
        token: Uuid,
        /// The reply's `Message-ID` fixed at the first claim.
        reply_message_id: String,
        /// Whether a previous holder may have delivered already.
        takeover: bool,
    },
    /// Already finished in this state (`sent`, `drafted`, `dry_run`, `in_doubt`).
    Done(String),
    /// Another sender holds a fresh claim; it expires in about this long.
    Busy(Duration),
}

/// The row a sender inserts when it claims an email.
#[derive(Debug, Clone)]
pub struct NewClaim<'a> {
    /// Agent mailbox.
    pub agent_email: &'a str,
    /// The mailbox's id for the answered email.
    pub email_id: &'a str,
    /// The `emails.to_send` message making the claim.
    pub message_id: &'a str,
    /// Sink name.
    pub sink: &'a str,
    /// Customer address.
    pub recipient: &'a str,
    /// Reply subject.
    pub subject: &'a str,
    /// The reply's `Message-ID`.
    pub reply_message_id: &'a str,
    /// Which sender process claims it.
    pub claimed_by: &'a str,
}

/// Claims an email for delivery.
pub async fn claim(pool: &PgPool, new: &NewClaim<'_>, lease: Duration) -> Result<ClaimOutcome, sqlx::Error> {
    // A released claim can vanish between the statements; the loop then simply tries again.
    for _ in 0..3 {
        let token = Uuid::new_v4();
        let inserted: Option<String> = sqlx::query_scalar(
            "INSERT INTO replies (agent_email, email_id, message_id, state, sink, recipient, subject, \
             reply_message_id, claim_token, claimed_by) VALUES ($1, $2, $3, 'claimed', $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (agent_email, email_id) DO NOTHING RETURNING reply_message_id",
        )
        .bind(new.agent_email)
        .bind(new.email_id)
        .bind(new.message_id)
        .bind(new.sink)
        .bind(new.recipient)
        .bind(new.subject)
        .bind(new.reply_message_id)
        .bind(token)
        .bind(new.claimed_by)
        .fetch_optional(pool)
        .await?;
        if let Some(reply_message_id) = inserted {
            return Ok(ClaimOutcome::Claimed { token, reply_message_id, takeover: false });
        }
        let taken: Option<String> = sqlx::query_scalar(
            "UPDATE replies SET claim_token = $3, claimed_by = $4, message_id = $5, claimed_at = now() \
             WHERE agent_email = $1 AND email_id = $2 AND state = 'claimed' \
             AND claimed_at < now() - make_interval(secs => $6) RETURNING reply_message_id",
        )
        .bind(new.agent_email)
        .bind(new.email_id)
        .bind(token)
        .bind(new.claimed_by)
        .bind(new.message_id)
        .bind(lease.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        if let Some(reply_message_id) = taken {
            return Ok(ClaimOutcome::Claimed { token, reply_message_id, takeover: true });
        }
        let row: Option<(String, f64)> = sqlx::query_as(
            "SELECT state, GREATEST(0, $3 - EXTRACT(EPOCH FROM now() - claimed_at))::float8 FROM replies \
             WHERE agent_email = $1 AND email_id = $2",
        )
        .bind(new.agent_email)
        .bind(new.email_id)
        .bind(lease.as_secs_f64())
        .fetch_optional(pool)
        .await?;
        match row {
            Some((state, remaining)) if state == "claimed" => {
                return Ok(ClaimOutcome::Busy(Duration::from_secs_f64(remaining.max(0.0))));
            }
            Some((state, _)) => return Ok(ClaimOutcome::Done(state)),
            None => {}
        }
    }
    // Claimed and released three times in a row by others: try again shortly.
    Ok(ClaimOutcome::Busy(Duration::from_millis(100)))
}

/// How a claimed email ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Final {
    /// Delivered.
    Sent,
    /// Left as a draft.
    Drafted,
    /// Dry-run: logged, not delivered.
    DryRun,
    /// A taken-over claim whose first delivery cannot be checked: drafted for a human.
    InDoubt,
}

impl Final {
    /// The `replies.state` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Drafted => "drafted",
            Self::DryRun => "dry_run",
            Self::InDoubt => "in_doubt",
        }
    }
}

/// How a claim ends: its final state and what the sink said.
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The final state.
    pub state: Final,
    /// The sink's id for the delivery (Maildir file, Gmail message or draft id).
    pub provider_message_id: Option<&'a str>,
    /// Why it is a draft.
    pub draft_reason: Option<&'a str>,
    /// For a draft: the content digest of what was left for a person, which tells later
    /// whether a person edited it.
    pub draft_digest: Option<&'a str>,
}

/// Completes our claim; `false` when another sender took it over meanwhile.
pub async fn complete(
    pool: &PgPool,
    agent_email: &str,
    email_id: &str,
    token: Uuid,
    done: &Completion<'_>,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "UPDATE replies SET state = $4, provider_message_id = $5, draft_reason = $6, draft_digest = $7, \
         completed_at = now() WHERE agent_email = $1 AND email_id = $2 AND claim_token = $3 AND state = 'claimed'",
    )
    .bind(agent_email)
    .bind(email_id)
    .bind(token)
    .bind(done.state.as_str())
    .bind(done.provider_message_id)
    .bind(done.draft_reason)
    .bind(done.draft_digest)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Gives our claim back (nothing was delivered: the quota said wait, or the sink failed).
pub async fn release(pool: &PgPool, agent_email: &str, email_id: &str, token: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM replies WHERE agent_email = $1 AND email_id = $2 AND claim_token = $3 AND state = 'claimed'",
    )
    .bind(agent_email)
    .bind(email_id)
    .bind(token)
    .execute(pool)
    .await
    .map(drop)
}
