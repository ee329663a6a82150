//! The ledger every source goes through (`mailbox_messages`): a message is claimed, keyed by
//! mailbox and the mailbox's own id, with the message id it will be published under, before
//! anything is published; it is marked `published` only after the broker confirmed it, or
//! `unparseable` with the reason. Sources differ in how they list, fetch and acknowledge mail;
//! the claim → publish → published order, and so "never twice, never skipped", is here once.

use std::cmp::Reverse;
use std::collections::HashMap;

use mail_mime::ParsedEmail;
use pipeline_core::messages::{EmailToClassify, new_message_id};
use pipeline_core::{Producer, ProducerError};
use sqlx::PgPool;
use tracing::{debug, info, warn};

use mailroom_db::pipeline::SenderAuth;

use crate::{MailboxSettings, priority, to_message};

/// Messages [`Ledger::publish`] has in flight at once (issued before their confirms are
/// awaited).
pub const PUBLISH_WINDOW: usize = 128;

/// What a claim attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to publish, under this message id.
    Publish(String),
    /// Already published (a crash came between publish and the acknowledgement at the
    /// mailbox): only acknowledge it.
    AlreadyPublished,
    /// Another poller holds a fresh claim: leave it.
    Busy,
    /// Recorded as unparseable earlier: only acknowledge it.
    Unparseable,
    /// Outside `mailbox.sample_rate`: leave it untouched (not recorded, not acknowledged).
    OutOfSample,
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
        // A duplicate copy is acknowledged as its published copy was.
        "published" | "duplicate" => Claim::AlreadyPublished,
        "unparseable" => Claim::Unparseable,
        _ => Claim::Busy,
    })
}

/// A raw message a source fetched, with what the mailbox knows about it beyond the RFC 822
/// text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The mailbox's id for the message (the ledger key and the published `email_id`).
    pub mailbox_id: String,
    /// The RFC 822 message.
    pub raw: Vec<u8>,
    /// The mailbox's conversation id (Gmail's `threadId`); `None` derives one from the
    /// `References`/`Message-ID` headers.
    pub thread_id: Option<String>,
    /// Labels or flags as the mailbox has them (Gmail's `IMPORTANT` raises the priority).
    pub labels: Vec<String>,
}

/// What [`Ledger::prepare`] made of a fetched message.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Ready to publish (boxed: the other outcomes are small).
    Ready(Box<EmailToClassify>),
    /// Not an email: dead-lettered and recorded as `unparseable`; a person must look at it.
    Unparseable,
    /// A copy of an email this mailbox already published (mailbox id `of`): recorded as a
    /// duplicate and not published; acknowledge it as the published copy was.
    Duplicate {
        /// Mailbox id of the published copy.
        of: String,
    },
    /// Not handled now (a dead letter could not go out yet, or pollers kept racing for copies
    /// of it): the claim is released and the next pass takes the message again.
    Released,
}

/// What recording an email's receipt found.
enum Receipt {
    Recorded,
    Duplicate(String),
    /// The fingerprint changed hands on every try (pollers racing): try again next pass.
    Contended,
}

/// What an email's ledger row holds once its receipt is written.
#[derive(Clone, Copy)]
enum Holds<'a> {
    /// The email's fingerprint: this copy is the one published.
    Fingerprint(&'a str),
    /// Nothing: it is a duplicate of this copy.
    DuplicateOf(&'a str),
}

/// What became of a batch handed to [`Ledger::publish`].
#[derive(Debug)]
pub struct Published {
    /// Mailbox ids published and marked `published`, in publishing order.
    pub mailbox_ids: Vec<String>,
    /// The failure that stopped the batch; the claims of everything not published were
    /// released, so the next pass takes them at once.
    pub error: Option<ProducerError>,
}

/// The ledger and the publisher, for one support mailbox.
#[derive(Debug)]
pub struct Ledger {
    pool: PgPool,
    producer: Producer,
    settings: MailboxSettings,
    /// `settings.trusted_authserv_ids()`, once.
    trusted: Vec<String>,
}

impl Ledger {
    /// A ledger for `settings.agent_email`'s mailbox (the pool must be migrated).
    pub fn new(pool: PgPool, producer: Producer, settings: MailboxSettings) -> Self {
        let trusted = settings.trusted_authserv_ids();
        Self { pool, producer, settings, trusted }
    }

    /// The database (sources keep their cursors there too).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The `[mailbox]` settings.
    pub fn settings(&self) -> &MailboxSettings {
        &self.settings
    }

    /// The publisher.
    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Claims a message (see [`claim`]).
    pub async fn claim(&self, mailbox_id: &str) -> Result<Claim, sqlx::Error> {
        if !crate::in_sample(self.settings.sample_rate, mailbox_id) {
            return Ok(Claim::OutOfSample);
        }
        claim(&self.pool, &self.settings.agent_email, mailbox_id, self.settings.claim_timeout_secs).await
    }

    /// Claims many messages at once, in the order given: every message new to the ledger in one
    /// statement (a Maildir pass finds the whole backlog at once, and one round trip per
    /// message was most of the poller's time), the rest one by one as [`claim`] does.
    pub async fn claim_many(&self, mailbox_ids: &[String]) -> Result<Vec<Claim>, sqlx::Error> {
        let (ids, fresh): (Vec<&str>, Vec<String>) = mailbox_ids
            .iter()
            .filter(|id| crate::in_sample(self.settings.sample_rate, id))
            .map(|id| (id.as_str(), new_message_id()))
            .unzip();
        let inserted: Vec<(String, String)> = if ids.is_empty() {
            Vec::new()
        } else {
            sqlx::query_as(
                "INSERT INTO mailbox_messages (agent_email, mailbox_id, message_id, state) \
                 SELECT $1, m.mailbox_id, m.message_id, 'claimed' FROM unnest($2::text[], $3::text[]) \
                 AS m(mailbox_id, message_id) ON CONFLICT (agent_email, mailbox_id) DO NOTHING \
                 RETURNING mailbox_id, message_id",
            )
            .bind(&self.settings.agent_email)
            .bind(&ids)
            .bind(&fresh)
            .fetch_all(&self.pool)
            .await?
        };
        let mut claimed: HashMap<String, String> = inserted.into_iter().collect();
        let mut out = Vec::with_capacity(mailbox_ids.len());
        for id in mailbox_ids {
            out.push(match claimed.remove(id) {
                Some(message_id) => Claim::Publish(message_id),
                // Out of the sample, already known, or listed twice: the one-by-one path decides.
                None => self.claim(id).await?,
            });
        }
        Ok(out)
    }

    /// Gives up our claim without publishing, keeping its message id: the next claim takes it
    /// over at once instead of after the claim timeout, under the same id (a publish whose
    /// confirm was lost may still have reached the queue, so the id must not change).
    pub async fn release(&self, mailbox_id: &str, message_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE mailbox_messages SET updated_at = '-infinity' \
             WHERE agent_email = $1 AND mailbox_id = $2 AND message_id = $3 AND state = 'claimed'",
        )
        .bind(&self.settings.agent_email)
        .bind(mailbox_id)
        .bind(message_id)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Drops our claim of a message that vanished from the mailbox before it could be
    /// fetched: nothing was published, and a claim nobody will ever finish would only mislead.
    pub async fn forget(&self, mailbox_id: &str, message_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "DELETE FROM mailbox_messages \
             WHERE agent_email = $1 AND mailbox_id = $2 AND message_id = $3 AND state = 'claimed'",
        )
        .bind(&self.settings.agent_email)
        .bind(mailbox_id)
        .bind(message_id)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Turns a claimed, fetched message into what is published under `message_id`: records
    /// what the later stages check the email against (its sender, whether the receiving server
    /// authenticated that sender — see [`crate::authres`] — and its `Message-ID`) and its
    /// [fingerprint](crate::dedupe), so that a copy of an email already published is recorded
    /// as a duplicate of it instead of being published again. A message that cannot be parsed
    /// is dead-lettered and recorded as `unparseable` with the reason.
    pub async fn prepare(&self, fetched: Fetched, message_id: String) -> Result<Prepared, sqlx::Error> {
        let parsed: ParsedEmail = match mail_mime::parse(&fetched.raw) {
            Ok(parsed) => parsed,
            Err(e) => {
                let reason = e.to_string();
                // The dead letter goes out first: if it cannot, the claim is released and the
                // message is tried again, so it is never set aside without a trace.
                let envelope = Unparseable::new(&fetched.mailbox_id, &message_id, &fetched.raw, &reason);
                if let Err(e) = self.producer.publish(&envelope).await {
                    warn!(mailbox_id = %fetched.mailbox_id, error = %e, "Cannot dead-letter an unparseable message yet; retrying next pass.");
                    self.release(&fetched.mailbox_id, &message_id).await?;
                    return Ok(Prepared::Released);
                }
                warn!(mailbox_id = %fetched.mailbox_id, error = %reason, "Unparseable message; dead-lettered and set aside.");
                self.set_state(&fetched.mailbox_id, "unparseable", None, Some(&reason)).await?;
                return Ok(Prepared::Unparseable);
            }
        };
        match self.record_receipt(&fetched.mailbox_id, &parsed).await? {
            Receipt::Recorded => {}
            Receipt::Duplicate(of) => {
                info!(mailbox_id = %fetched.mailbox_id, duplicate_of = %of,
                    "A copy of an email already taken in; recorded as a duplicate, not published.");
                return Ok(Prepared::Duplicate { of });
            }
            Receipt::Contended => {
                debug!(mailbox_id = %fetched.mailbox_id, "Copies of this email kept changing hands; retrying next pass.");
                self.release(&fetched.mailbox_id, &message_id).await?;
                return Ok(Prepared::Released);
            }
        }
        let p = priority(&self.settings, &parsed, &fetched.labels);
        let mut message = to_message(&self.settings.agent_email, &fetched.mailbox_id, parsed, p);
        message.message_id = message_id;
        if let Some(thread_id) = fetched.thread_id {
            message.thread_id = Some(thread_id);
        }
        message.labels = fetched.labels;
        Ok(Prepared::Ready(Box::new(message)))
    }

    /// Records the sender, its authentication verdict, the `Message-ID` and the fingerprint of
    /// our claimed message, unless another message of this mailbox holds the fingerprint: then
    /// ours is its duplicate, whether that one is published or still being published (in this
    /// pass, or by another poller; if its publish fails it is retried, and the duplicate shows
    /// its outcome when it is done). A holder whose claim is older than the claim timeout is
    /// taken over, as [`claim`] takes over the message itself, so an email whose first copy
    /// vanished mid-publish is still answered. The unique index on the fingerprint decides
    /// between two pollers preparing two copies at once.
    async fn record_receipt(&self, mailbox_id: &str, parsed: &ParsedEmail) -> Result<Receipt, sqlx::Error> {
        let fingerprint = crate::dedupe::fingerprint(parsed);
        let auth = crate::authres::verdict(&parsed.authentication_results, &self.trusted, &parsed.from);
        let agent = &self.settings.agent_email;
        let mut taken_from = None;
        for _ in 0..3 {
            let holder: Option<(String, String, bool)> = sqlx::query_as(
                "SELECT mailbox_id, state, updated_at < now() - make_interval(secs => $4) FROM mailbox_messages \
                 WHERE agent_email = $1 AND fingerprint = $2 AND mailbox_id <> $3",
            )
            .bind(agent)
            .bind(&fingerprint)
            .bind(mailbox_id)
            .bind(self.settings.claim_timeout_secs as f64)
            .fetch_optional(&self.pool)
            .await?;
            match holder {
                Some((of, state, true)) if state == "claimed" => {
                    // A stale claim (its poller died between fetching and publishing, or the
                    // copy vanished): ours takes the fingerprint over.
                    sqlx::query(
                        "UPDATE mailbox_messages SET fingerprint = NULL \
                         WHERE agent_email = $1 AND mailbox_id = $2 AND fingerprint = $3 AND state = 'claimed'",
                    )
                    .bind(agent)
                    .bind(&of)
                    .bind(&fingerprint)
                    .execute(&self.pool)
                    .await?;
                    taken_from = Some(of);
                }
                Some((of, _, _)) => {
                    self.write_receipt(mailbox_id, parsed, &auth, Holds::DuplicateOf(&of)).await?;
                    // Copies that were made duplicates of ours while it held the fingerprint
                    // (before its claim went stale) follow it to the holder.
                    self.repoint_duplicates(mailbox_id, &of).await?;
                    return Ok(Receipt::Duplicate(of));
                }
                None => {
                    let recorded =
                        self.write_receipt(mailbox_id, parsed, &auth, Holds::Fingerprint(&fingerprint)).await;
                    match recorded {
                        Ok(_) => {
                            if let Some(stale) = taken_from {
                                self.repoint_duplicates(&stale, mailbox_id).await?;
                            }
                            return Ok(Receipt::Recorded);
                        }
                        // Another copy took the fingerprint since we looked: look again.
                        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(Receipt::Contended)
    }

    /// Writes what the poller read of the email into its ledger row — the sender's address,
    /// `Message-ID` and authentication verdict, which the sender checks replies against — and
    /// what the row holds: the fingerprint, or the copy it duplicates.
    async fn write_receipt(
        &self,
        mailbox_id: &str,
        parsed: &ParsedEmail,
        auth: &SenderAuth,
        holds: Holds<'_>,
    ) -> Result<(), sqlx::Error> {
        let (set, value) = match holds {
            Holds::Fingerprint(fingerprint) => ("fingerprint = $7", fingerprint),
            Holds::DuplicateOf(of) => ("state = 'duplicate', duplicate_of = $7, reason = NULL, updated_at = now()", of),
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE mailbox_messages SET {set}, sender_address = $3, rfc_message_id = $4, sender_auth = $5, \
             sender_auth_detail = $6 WHERE agent_email = $1 AND mailbox_id = $2"
        )))
        .bind(&self.settings.agent_email)
        .bind(mailbox_id)
        .bind(&parsed.from)
        .bind(&parsed.message_id)
        .bind(auth.verdict())
        .bind(auth.detail())
        .bind(value)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Makes the duplicates of `from` duplicates of `to`, so that every duplicate names the copy
    /// that holds the fingerprint (and shows its outcome).
    async fn repoint_duplicates(&self, from: &str, to: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE mailbox_messages SET duplicate_of = $3 WHERE agent_email = $1 AND duplicate_of = $2 AND state = 'duplicate'",
        )
        .bind(&self.settings.agent_email)
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Publishes a batch most urgent first (the queue orders by priority too, but only what it
    /// already holds), marking each `published` once the broker confirmed it. Ties keep the
    /// order given. Messages go out in windows of [`PUBLISH_WINDOW`] whose confirms are awaited
    /// together and recorded in one statement: waiting for each confirm and each update in turn
    /// held the poller to a few hundred messages a second. After a window with a failure nothing
    /// more is published; what was confirmed is recorded, the claims of the rest are released.
    pub async fn publish(&self, mut batch: Vec<EmailToClassify>) -> Result<Published, sqlx::Error> {
        batch.sort_by_key(|m| Reverse(m.priority));
        let mut mailbox_ids = Vec::with_capacity(batch.len());
        let mut pending = batch.into_iter().peekable();
        while pending.peek().is_some() {
            let window: Vec<EmailToClassify> = pending.by_ref().take(PUBLISH_WINDOW).collect();
            // Connected first, once: otherwise every publish of the window would try to connect
            // in turn while the broker is away.
            if let Err(e) = self.producer.connect().await {
                warn!(error = %e, "Broker unavailable; the messages are retried next pass.");
                for unpublished in window.into_iter().chain(pending) {
                    self.release(&unpublished.email_id, &unpublished.message_id).await?;
                }
                return Ok(Published { mailbox_ids, error: Some(e) });
            }
            // Each publish is issued (its frames queued on the channel) when first polled, in
            // window order, before any confirm is awaited.
            let results = futures_util::future::join_all(window.iter().map(|m| self.producer.publish(m))).await;
            let mut confirmed = Vec::with_capacity(window.len());
            let mut failed = Vec::new();
            let mut error = None;
            for (message, result) in window.into_iter().zip(results) {
                match result {
                    Ok(()) => confirmed.push(message),
                    Err(e) => {
                        warn!(mailbox_id = %message.email_id, error = %e, "Publish failed; the message is retried next pass.");
                        error.get_or_insert(e);
                        failed.push(message);
                    }
                }
            }
            self.mark_published(&confirmed).await?;
            for message in confirmed {
                info!(
                    message_id = %message.message_id,
                    mailbox_id = %message.email_id,
                    thread_id = message.thread_id.as_deref().unwrap_or_default(),
                    priority = message.priority,
                    "Published email."
                );
                mailbox_ids.push(message.email_id);
            }
            if let Some(e) = error {
                for unpublished in failed.into_iter().chain(pending) {
                    self.release(&unpublished.email_id, &unpublished.message_id).await?;
                }
                return Ok(Published { mailbox_ids, error: Some(e) });
            }
        }
        Ok(Published { mailbox_ids, error: None })
    }

    /// Marks confirmed messages `published` with their priority, in one statement.
    async fn mark_published(&self, messages: &[EmailToClassify]) -> Result<(), sqlx::Error> {
        if messages.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = messages.iter().map(|m| m.email_id.as_str()).collect();
        let priorities: Vec<i16> = messages.iter().map(|m| i16::from(m.priority)).collect();
        sqlx::query(
            "UPDATE mailbox_messages AS m SET state = 'published', priority = p.priority, reason = NULL, \
             updated_at = now() FROM unnest($2::text[], $3::int2[]) AS p(mailbox_id, priority) \
             WHERE m.agent_email = $1 AND m.mailbox_id = p.mailbox_id",
        )
        .bind(&self.settings.agent_email)
        .bind(&ids)
        .bind(&priorities)
        .execute(&self.pool)
        .await
        .map(drop)
    }

    /// Releases the claims of prepared messages a failed pass will not publish.
    pub async fn release_all(&self, batch: &[EmailToClassify]) -> Result<(), sqlx::Error> {
        for message in batch {
            self.release(&message.email_id, &message.message_id).await?;
        }
        Ok(())
    }

    async fn set_state(
        &self,
        mailbox_id: &str,
        state: &str,
        priority: Option<u8>,
        reason: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE mailbox_messages SET state = $3, priority = $4, reason = $5, updated_at = now() \
             WHERE agent_email = $1 AND mailbox_id = $2",
        )
        .bind(&self.settings.agent_email)
        .bind(mailbox_id)
        .bind(state)
        .bind(priority.map(i16::from))
        .bind(reason)
        .execute(&self.pool)
        .await
        .map(drop)
    }
}

/// The dead letter of a mailbox message that is not an email: the dead-letter envelope
/// (docs/ARCHITECTURE.md) around the raw bytes (as text, or base64 when they are not UTF-8), with
/// the ledger's message id as its id so operators can match it to `mailbox_messages`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Unparseable(pub pipeline_core::dead_letter::DeadLetter);

impl Unparseable {
    /// The envelope for `raw`, which failed to parse for `reason`.
    pub fn new(mailbox_id: &str, message_id: &str, raw: &[u8], reason: &str) -> Self {
        let info = pipeline_core::dead_letter::FailureInfo {
            error_message: format!("{reason} (mailbox id {mailbox_id})"),
            error_type: "UnparseableEmail".into(),
            retry_count: 0,
            stack_trace: format!("UnparseableEmail: {reason}"),
            consumer_id: crate::NAME.into(),
        };
        let mut envelope =
            pipeline_core::dead_letter::DeadLetter::new(pipeline_core::topology::EMAILS_TO_CLASSIFY.name, raw, info);
        envelope.message_id = message_id.to_owned();
        Self(envelope)
    }
}

impl pipeline_core::messages::PipelineMessage for Unparseable {
    const ROUTE: pipeline_core::topology::Route = pipeline_core::topology::UNPARSEABLE_EMAILS;

    fn message_id(&self) -> &str {
        &self.0.message_id
    }
}
