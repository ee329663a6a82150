//! `sender`, the pipeline's last stage (docs/ARCHITECTURE.md): consumes `emails.to_send` and
//! delivers each reply exactly once in effect, under the agent mailbox's sending quota.
//!
//! For each message the [`SendHandler`]:
//! 0. checks it against what the pipeline recorded in the database ([`provenance`]): a reply
//!    that is not the generator's answer to an email this mailbox received, going to that
//!    email's sender, is dead-lettered as `ForgedReply` and nothing is sent;
//! 1. builds the reply (`In-Reply-To`, `References`, `Re:` without stacking, a `Message-ID`
//!    derived from the answered email, `Auto-Submitted: auto-replied`) — a reply that cannot be
//!    built is dead-lettered, it will never build;
//! 2. claims the email in the send log ([`sendlog`]); an email already answered is acked and
//!    nothing is sent, one another sender is delivering waits;
//! 3. decides send or draft: escalations, `sender.mode = "draft"`, recipients the receiving
//!    server did not authenticate (`mailbox.unauthenticated = "draft"`, the default; the
//!    verdict is the poller's, see `poller::authres`) and recipients past the reply throttle
//!    ([`throttle`]) get a draft for a human, with every reason that applies;
//! 4. takes a token from the mailbox's bucket ([`ratelimit`]) for a send; when there is none the
//!    message waits in a delay queue (no retry spent, nothing lost, other mailboxes unaffected);
//! 5. delivers through the sink ([`sink`]) and completes the send log with the provider's id.
//!
//! A sink that refuses a reply for a configuration error — Google refused the refresh token, or
//! it lacks the scope the call needs (`gmail.send` alone cannot save drafts) — fails every reply
//! of that kind alike, so none is dead-lettered: the error is logged once, `/readyz` says what
//! to fix, and the replies wait in the delay queues (deferred, no retry spent). For
//! `misconfigured_retry_secs` the others are deferred without asking the sink; then one tries
//! again, and the first success clears the problem.
//!
//! A sender that dies between delivering and completing leaves a claim; after the lease another
//! sender takes it over and first asks the sink whether the reply with that `Message-ID` exists
//! (Maildir and Gmail can tell; SMTP cannot, so such a reply becomes an `in_doubt` draft for a
//! human rather than a possible second send).

pub mod draft_review;
pub mod mailboxes;
pub mod provenance;
pub mod ratelimit;
pub mod sendlog;
pub mod settings;
pub mod sink;
pub mod throttle;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use mail_mime::ReplySpec;
use mailroom_db::QueryFailed;
use mailroom_db::pipeline::SenderAuth;
use pipeline_core::messages::EmailToSend;
use pipeline_core::settings::DraftOrSend;
use pipeline_core::telemetry::Health;
use pipeline_core::topology::EMAILS_TO_SEND;
use pipeline_core::{DeliveryMeta, Handler, HandlerError, Outgoing, Settings, Telemetry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tracing::{debug, error, info, warn};

use crate::provenance::{Served, Verified};
use crate::ratelimit::{Permit, RateLimiter};
use crate::sendlog::{ClaimOutcome, Final, NewClaim};
use crate::settings::{Mode, SenderSettings};
use crate::sink::{Kind, Lookup, OutgoingReply, Sink, SinkError};
use crate::throttle::ReplyThrottle;

/// The binary's name.
pub const NAME: &str = "sender";

/// Redis could not be used.
#[derive(Debug, thiserror::Error)]
#[error("Redis unavailable: {0}")]
pub struct LimitError(#[from] pub redis::RedisError);

/// How one `emails.to_send` message ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered; the provider's id.
    Sent(String),
    /// Left as a draft for a human; the provider's id and why.
    Drafted {
        /// Provider id of the draft.
        id: String,
        /// Why it is a draft.
        reason: String,
    },
    /// Dry-run: everything but the delivery; what it would have been.
    DryRun(Kind),
    /// This email was already answered (state of its send log row); nothing was done.
    Duplicate(String),
    /// A taken-over delivery that may have happened: drafted for a human to check.
    InDoubt(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Self::Sent(_) => "sent",
            Self::Drafted { .. } => "drafted",
            Self::DryRun(_) => "dry_run",
            Self::Duplicate(_) => "duplicate",
            Self::InDoubt(_) => "in_doubt",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

/// The sender's own metrics, on the worker's `/metrics`: registered once per process and shared
/// by the handlers of every mailbox it serves.
#[derive(Debug, Clone, Default)]
pub struct SenderMetrics {
    replies: Family<OutcomeLabel, Counter>,
    deferred: Family<ReasonLabel, Counter>,
    forged: Family<ReasonLabel, Counter>,
}

impl SenderMetrics {
    /// Adds them to the worker's registry.
    pub fn register(telemetry: &Telemetry) -> Self {
        let m = Self::default();
        telemetry.metrics.register(
            "replies",
            "Replies by outcome (sent, drafted, dry_run, duplicate, in_doubt)",
            m.replies.clone(),
        );
        telemetry.metrics.register(
            "send_deferred",
            "Replies that had to wait (rate_limit, claimed_elsewhere, provider_quota, sink_misconfigured)",
            m.deferred.clone(),
        );
        telemetry.metrics.register(
            "forged_replies",
            "emails.to_send messages refused and dead-lettered as ForgedReply, by what did not match the database \
             (unknown_mailbox, not_received, not_answered, altered, wrong_recipient)",
            m.forged.clone(),
        );
        m
    }

    /// Counts a reply refused as forged.
    pub fn forged(&self, reason: &str) {
        self.forged.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }

    fn defer(&self, reason: &str) {
        self.deferred.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc();
    }
}

/// The reply's `Message-ID`, derived from the answered email so every attempt (and a sender
/// taking over after a crash) writes the same one.
pub fn reply_message_id(agent_email: &str, email_id: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{email_id}", agent_email.to_ascii_lowercase()).as_bytes());
    let hex = mail_mime::hex(&digest[..16]);
    let domain = agent_email.rsplit_once('@').map_or("mailroom.invalid", |(_, d)| d).to_ascii_lowercase();
    format!("mailroom.{hex}@{domain}")
}

fn limit_error(e: LimitError) -> HandlerError {
    HandlerError::transient("RedisUnavailable", e)
}

/// A kind of delivery the sink refused for a configuration error.
#[derive(Debug, Clone)]
struct Block {
    /// Until then replies of this kind are deferred without asking the sink.
    until: Instant,
    error_type: &'static str,
    /// What `/readyz` and each deferral say.
    reason: String,
}

/// Handles `emails.to_send`.
pub struct SendHandler<S> {
    pool: PgPool,
    sink: S,
    limiter: RateLimiter,
    throttle: ReplyThrottle,
    settings: SenderSettings,
    served: Served,
    policy: ReplyPolicy,
    claimed_by: String,
    metrics: SenderMetrics,
    telemetry: Arc<Telemetry>,
    /// Kinds of delivery the sink refused for a configuration error, until one succeeds.
    blocks: Mutex<HashMap<Kind, Block>>,
}

impl<S: Sink> SendHandler<S> {
    /// A handler sending as the mailboxes `served` through `sink`, with the quota and throttle
    /// in `redis`; `unauthenticated` is what becomes of a reply to a sender the receiving
    /// server did not authenticate (`mailbox.unauthenticated`).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        pool: PgPool,
        sink: S,
        redis: redis::aio::ConnectionManager,
        settings: SenderSettings,
        served: Served,
        policy: impl Into<ReplyPolicy>,
        claimed_by: impl Into<String>,
        telemetry: &Arc<Telemetry>,
    ) -> Self {
        Self::with_metrics(
            pool,
            sink,
            redis,
            settings,
            served,
            policy.into(),
            claimed_by,
            telemetry,
            SenderMetrics::register(telemetry),
        )
    }

    /// [`SendHandler::new`] with metrics registered already (one mailbox among several): the
    /// handler reports its sink's configuration errors on `health`'s telemetry.
    #[allow(clippy::too_many_arguments)]
    pub fn with_metrics(
        pool: PgPool,
        sink: S,
        redis: redis::aio::ConnectionManager,
        settings: SenderSettings,
        served: Served,
        policy: ReplyPolicy,
        claimed_by: impl Into<String>,
        health: &Arc<Telemetry>,
        metrics: SenderMetrics,
    ) -> Self {
        let limiter = RateLimiter::new(
            redis.clone(),
            &format!("{}:quota", settings.redis_prefix),
            settings.rate_limit,
            settings.rate_window(),
            settings.rate_burst,
        );
        let throttle = ReplyThrottle::new(
            redis,
            &format!("{}:throttle", settings.redis_prefix),
            settings.throttle_max_replies,
            settings.throttle_window(),
        );
        Self {
            pool,
            sink,
            limiter,
            throttle,
            settings,
            served,
            policy,
            claimed_by: claimed_by.into(),
            metrics,
            telemetry: health.clone(),
            blocks: Mutex::new(HashMap::new()),
        }
    }

    /// The sink in use.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The worker's readiness, which a sink configuration error holds down.
    pub fn health(&self) -> &Health {
        &self.telemetry.health
    }

    /// Builds the reply for `msg` under `message_id`.
    pub fn build(&self, msg: &EmailToSend, message_id: &str) -> Result<OutgoingReply, HandlerError> {
        let spec = ReplySpec {
            from: msg.agent_email.clone(),
            from_name: Some(self.settings.from_name.clone()).filter(|n| !n.trim().is_empty()),
            to: msg.to.clone(),
            subject: msg.original_subject.clone().unwrap_or_else(|| msg.subject.clone()),
            body: msg.generated_response.clone(),
            in_reply_to: msg.in_reply_to.clone(),
            references: msg.references.clone(),
            extra_headers: Vec::new(),
            message_id: Some(message_id.to_owned()),
        };
        let built = match mail_mime::build_reply(spec.clone()) {
            Ok(built) => built,
            // An id the builder refuses (obsolete syntax, not an injection: those fail on the
            // addresses too) costs the threading headers, not the reply.
            Err(e @ mail_mime::BuildError::InvalidMessageId { field: "in_reply_to" | "references", .. })
                if !msg.in_reply_to.iter().chain(&msg.references).any(|id| id.contains(['\r', '\n', '\0'])) =>
            {
                warn!(error = %e, "Unusable message id; replying without threading headers.");
                mail_mime::build_reply(ReplySpec { in_reply_to: None, references: Vec::new(), ..spec })
                    .map_err(|e| HandlerError::permanent("InvalidReply", e))?
            }
            Err(e) => return Err(HandlerError::permanent("InvalidReply", e)),
        };
        Ok(OutgoingReply {
            message_id: built.message_id,
            raw: built.raw,
            from: msg.agent_email.clone(),
            to: msg.to.clone(),
            thread_id: msg.thread_id.clone(),
        })
    }

    /// Send or draft, and why a draft: every reason that applies, joined with `; ` (a person
    /// finishing an escalated reply must also see that its recipient may be spoofed). Asking
    /// the throttle counts the reply against the recipient (once per email, however often
    /// asked), so it is asked only when nothing else makes the reply a draft.
    async fn decide(&self, msg: &EmailToSend, verified: &Verified) -> Result<(Kind, Option<String>), HandlerError> {
        let mut reasons = Vec::new();
        if let Some(why) = unauthenticated_reason(self.policy.unauthenticated, verified) {
            reasons.push(why);
        }
        if self.policy.after_person_reply == DraftOrSend::Draft {
            let refs: Vec<String> = msg.in_reply_to.iter().chain(&msg.references).cloned().collect();
            let replied = mailroom_db::person_replies::replied_in_thread(
                &self.pool,
                &msg.agent_email,
                &refs,
                msg.thread_id.as_deref(),
            )
            .await
            .map_err(QueryFailed)?;
            if replied {
                reasons.push("a person of the mailbox has replied in this thread (mailbox.after_person_reply)".into());
            } else if reasons.is_empty() && !msg.escalate && self.settings.mode != Mode::Draft {
                // Reading drafts back costs sink calls: only when it can change the decision.
                if let Some(why) = draft_review::reviewed_draft(&self.pool, &self.sink, msg).await? {
                    reasons.push(why);
                }
            }
        }
        if msg.escalate {
            let why = msg.escalation_reason.clone().unwrap_or_else(|| "escalated by the generator".into());
            reasons.push(format!("escalated: {why}"));
        }
        if self.settings.mode == Mode::Draft {
            reasons.push("sender.mode = \"draft\"".into());
        }
        if !reasons.is_empty() {
            return Ok((Kind::Draft, Some(reasons.join("; "))));
        }
        let allowed = self.throttle.allow(&msg.agent_email, &msg.to, &msg.email_id).await.map_err(limit_error)?;
        if !allowed {
            return Ok((
                Kind::Draft,
                Some(format!(
                    "reply throttle: more than {} automatic replies to {} within {} s",
                    self.settings.throttle_max_replies, msg.to, self.settings.throttle_window_secs
                )),
            ));
        }
        Ok((Kind::Send, None))
    }

    /// Handles one message completely (the single step tests call without the consume loop).
    pub async fn send_one(&self, msg: &EmailToSend) -> Result<Outcome, HandlerError> {
        let outcome = self.send_inner(msg).await?;
        self.metrics.replies.get_or_create(&OutcomeLabel { outcome: outcome.label().to_owned() }).inc();
        Ok(outcome)
    }

    async fn send_inner(&self, msg: &EmailToSend) -> Result<Outcome, HandlerError> {
        let (agent, email_id, message_id) = (msg.agent_email.as_str(), msg.email_id.as_str(), msg.message_id.as_str());
        let verified = match provenance::verify(&self.pool, &self.served, msg).await.map_err(QueryFailed)? {
            Ok(verified) => verified,
            Err(forgery) => {
                self.metrics.forged(forgery.kind());
                error!(email_id, to = %msg.to, agent, reason = forgery.kind(), error = %forgery,
                    "Refused a reply the pipeline did not make; dead-lettered as ForgedReply, nothing sent.");
                return Err(HandlerError::permanent("ForgedReply", forgery));
            }
        };
        // Built before claiming: a reply that can never be built must not leave a claim behind.
        let reply = self.build(msg, &reply_message_id(agent, email_id))?;
        let claim = NewClaim {
            agent_email: agent,
            email_id,
            message_id,
            sink: self.sink.name(),
            recipient: &msg.to,
            subject: &msg.subject,
            reply_message_id: &reply.message_id,
            claimed_by: &self.claimed_by,
        };
        let (token, takeover) =
            match sendlog::claim(&self.pool, &claim, self.settings.claim_lease()).await.map_err(QueryFailed)? {
                ClaimOutcome::Done(state) => {
                    info!(email_id, state, "Email already answered; nothing sent.");
                    return Ok(Outcome::Duplicate(state));
                }
                ClaimOutcome::Busy(remaining) => {
                    self.metrics.defer("claimed_elsewhere");
                    return Err(HandlerError::defer(
                        remaining.max(Duration::from_millis(100)),
                        "ClaimedElsewhere",
                        format!("another sender is delivering the reply to {email_id}"),
                    ));
                }
                ClaimOutcome::Claimed { token, takeover, .. } => (token, takeover),
            };
        let (kind, reason) = match self.decide(msg, &verified).await {
            Ok(d) => d,
            Err(e) => {
                self.release(agent, email_id, token).await;
                return Err(e);
            }
        };
        if let Some((wait, block)) = self.blocked(kind) {
            self.release(agent, email_id, token).await;
            self.metrics.defer("sink_misconfigured");
            debug!(email_id, wait_ms = wait.as_millis() as u64, "Outbox misconfigured; reply deferred.");
            return Err(HandlerError::defer(wait, block.error_type, block.reason));
        }
        if takeover {
            match self.sink.find(&reply, kind).await {
                Ok(Lookup::Delivered(id)) => {
                    info!(email_id, provider_id = %id, "Found the reply a crashed sender delivered.");
                    let state = if kind == Kind::Send { Final::Sent } else { Final::Drafted };
                    self.complete(msg, token, &reply, state, Some(&id), reason.as_deref()).await?;
                    return Ok(match kind {
                        Kind::Send => Outcome::Sent(id),
                        Kind::Draft => Outcome::Drafted { id, reason: reason.unwrap_or_default() },
                    });
                }
                Ok(Lookup::Absent) => {}
                Ok(Lookup::Unknown) if self.settings.mode == Mode::DryRun => {}
                Ok(Lookup::Unknown) => return self.in_doubt(msg, &reply, token).await,
                Err(e) => {
                    self.release(agent, email_id, token).await;
                    return Err(self.sink_error(e, kind));
                }
            }
        }
        if kind == Kind::Send {
            match self.limiter.try_acquire(agent).await {
                Ok(Permit::Granted) => {}
                Ok(Permit::Wait(wait)) => {
                    self.release(agent, email_id, token).await;
                    self.metrics.defer("rate_limit");
                    return Err(HandlerError::defer(
                        wait,
                        "RateLimited",
                        format!("send quota of {agent} spent; next send in {} ms", wait.as_millis()),
                    ));
                }
                Err(e) => {
                    self.release(agent, email_id, token).await;
                    return Err(limit_error(LimitError(e.0)));
                }
            }
        }
        if self.settings.mode == Mode::DryRun {
            self.complete(msg, token, &reply, Final::DryRun, None, reason.as_deref()).await?;
            info!(email_id, would = kind.as_str(), to = %msg.to, "Dry run: reply logged, not delivered.");
            return Ok(Outcome::DryRun(kind));
        }
        match self.sink.deliver(&reply, kind).await {
            Ok(id) => {
                self.sink_works(kind);
                let state = if kind == Kind::Send { Final::Sent } else { Final::Drafted };
                self.complete(msg, token, &reply, state, Some(&id), reason.as_deref()).await?;
                match kind {
                    Kind::Send => {
                        info!(email_id, sink = self.sink.name(), provider_id = %id, "Sent reply.");
                        Ok(Outcome::Sent(id))
                    }
                    Kind::Draft => {
                        let reason = reason.unwrap_or_default();
                        info!(email_id, sink = self.sink.name(), provider_id = %id, %reason, "Saved reply as a draft.");
                        Ok(Outcome::Drafted { id, reason })
                    }
                }
            }
            Err(e) => {
                self.release(agent, email_id, token).await;
                Err(self.sink_error(e, kind))
            }
        }
    }

    /// A sink failure's fate: a configuration error holds every reply of its kind up (deferred,
    /// never dead-lettered), provider quota waits without spending retries, the rest by kind.
    fn sink_error(&self, e: SinkError, kind: Kind) -> HandlerError {
        if e.needs_operator() {
            return self.misconfigured(e, kind);
        }
        match e.retry_after() {
            Some(wait) if e.is_transient() => {
                self.metrics.defer("provider_quota");
                HandlerError::defer(wait, e.error_type(), e)
            }
            _ => e.into(),
        }
    }

    /// Records a sink configuration error: logged once per pause (not per reply), shown by
    /// `/readyz`, and the reply deferred.
    fn misconfigured(&self, e: SinkError, kind: Kind) -> HandlerError {
        let wait = self.settings.misconfigured_retry();
        let role = match &e {
            SinkError::Gmail(gmail::GmailError::InsufficientScope { .. }) => {
                " (the sender needs gmail.compose and gmail.readonly, or gmail.modify)"
            }
            _ => "",
        };
        let reason = format!("outbox needs re-authorisation: {e}{role}");
        let block = Block { until: Instant::now() + wait, error_type: e.error_type(), reason: reason.clone() };
        let kinds: &[Kind] = if e.blocks_every_kind() { &[Kind::Send, Kind::Draft] } else { &[kind] };
        let now = Instant::now();
        let fresh = {
            let mut blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh = kinds.iter().any(|k| blocks.get(k).is_none_or(|b| b.until <= now));
            for k in kinds {
                blocks.insert(*k, block.clone());
            }
            fresh
        };
        if fresh {
            error!(sink = self.sink.name(), kind = kind.as_str(), error = %e, retry_secs = wait.as_secs(),
                "The outbox refused a reply for a configuration error; replies wait (deferred, not dead-lettered) until an operator fixes it.");
        }
        self.health().set_blocked(Some(reason));
        self.metrics.defer("sink_misconfigured");
        HandlerError::defer(wait, e.error_type(), e)
    }

    /// Replies of `kind` are held up by a sink configuration error: how much longer, and why.
    fn blocked(&self, kind: Kind) -> Option<(Duration, Block)> {
        let blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
        let block = blocks.get(&kind)?;
        let wait = block.until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        Some((wait, block.clone()))
    }

    /// The sink delivered a reply of `kind`: whatever held that kind up is fixed.
    fn sink_works(&self, kind: Kind) {
        let mut blocks = self.blocks.lock().unwrap_or_else(PoisonError::into_inner);
        if blocks.remove(&kind).is_some() {
            info!(sink = self.sink.name(), kind = kind.as_str(), "The outbox accepts replies of this kind again.");
            self.health().set_blocked(blocks.values().next().map(|b| b.reason.clone()));
        }
    }

    /// The previous holder may have delivered and the sink cannot say: a draft for a human.
    async fn in_doubt(
        &self,
        msg: &EmailToSend,
        reply: &OutgoingReply,
        token: uuid::Uuid,
    ) -> Result<Outcome, HandlerError> {
        let reason = "delivery in doubt: a sender stopped mid-delivery and the sink cannot tell whether the reply went out; \
                      check the sent mail before sending this draft";
        warn!(email_id = %msg.email_id, "Delivery in doubt; saving a draft instead of sending twice.");
        match self.sink.deliver(reply, Kind::Draft).await {
            Ok(id) => {
                self.sink_works(Kind::Draft);
                self.complete(msg, token, reply, Final::InDoubt, Some(&id), Some(reason)).await?;
                Ok(Outcome::InDoubt(id))
            }
            Err(e) => {
                self.release(&msg.agent_email, &msg.email_id, token).await;
                Err(self.sink_error(e, Kind::Draft))
            }
        }
    }

    /// Completes our claim. A draft keeps the digest of what it holds, by which a later reply
    /// in the thread sees whether a person edited it ([`SendHandler::reviewed_draft`]).
    async fn complete(
        &self,
        msg: &EmailToSend,
        token: uuid::Uuid,
        reply: &OutgoingReply,
        state: Final,
        provider_id: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(), HandlerError> {
        let digest = matches!(state, Final::Drafted | Final::InDoubt)
            .then(|| mail_mime::parse(&reply.raw).ok().map(|p| p.content_digest_hex()))
            .flatten();
        let done = sendlog::Completion {
            state,
            provider_message_id: provider_id,
            draft_reason: reason,
            draft_digest: digest.as_deref(),
        };
        let ours =
            sendlog::complete(&self.pool, &msg.agent_email, &msg.email_id, token, &done).await.map_err(QueryFailed)?;
        if !ours {
            warn!(email_id = %msg.email_id,
                "Claim was taken over while delivering (lease too short for this sink?).");
        }
        Ok(())
    }

    /// Best effort: a claim that cannot be released expires after the lease.
    async fn release(&self, agent: &str, email_id: &str, token: uuid::Uuid) {
        if let Err(e) = sendlog::release(&self.pool, agent, email_id, token).await {
            warn!(email_id, error = %e, "Could not release the claim; it expires after the lease.");
        }
    }
}

impl<S: Sink> Handler for SendHandler<S> {
    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        pipeline_core::consumer::roles::SENDER.publishes
    }
    type Input = EmailToSend;

    async fn handle(&self, msg: EmailToSend, _meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        self.send_one(&msg).await.map(|_| Vec::new())
    }
}

/// How the sender's Redis connection reconnects: up to 5 attempts, 1 s apart, then 2 s (an
/// exponential backoff from 1 s, doubling, capped at 2 s, with jitter). Without the cap a Redis
/// restart of more than a second left every send blocked for a minute or more (found by the
/// fault-injection suite: redis-rs 0.32's defaults waited 1 s, then 60 s). A dead connection or
/// an unanswered command fails within seconds (connect 2 s, response 5 s), so the handler gets a
/// transient error (retry ladder) instead of hanging.
pub fn redis_config() -> redis::aio::ConnectionManagerConfig {
    redis::aio::ConnectionManagerConfig::new()
        .set_min_delay(Duration::from_secs(1))
        .set_exponent_base(2.0)
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(5)
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
}

/// The sender's Redis could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum RedisConnectError {
    /// The settings do not make a client (bad URL, unusable `[redis.tls]` files): waiting will
    /// not help.
    #[error(transparent)]
    Client(#[from] mailroom_redis::ClientError),
    /// The server did not answer, refused us, or its certificate is not trusted.
    #[error("cannot connect to Redis at {url}: {}", mailroom_redis::describe(source))]
    Connect {
        /// The URL, password masked.
        url: String,
        /// The client's error.
        source: redis::RedisError,
    },
}

/// One connection attempt with the sender's reconnection policy ([`redis_config`]), through the
/// shared client constructor (TLS from `[redis.tls]`).
pub async fn redis_connection(
    redis: &pipeline_core::settings::RedisSettings,
) -> Result<redis::aio::ConnectionManager, RedisConnectError> {
    let client = mailroom_redis::client(redis)?;
    redis::aio::ConnectionManager::new_with_config(client, redis_config())
        .await
        .map_err(|source| RedisConnectError::Connect { url: redis.redacted_url(), source })
}

/// Connects to Redis, retrying until it answers (the caller stops waiting at shutdown). Only
/// settings that cannot work are returned as an error at once.
async fn connect_redis(
    redis: &pipeline_core::settings::RedisSettings,
) -> Result<redis::aio::ConnectionManager, RedisConnectError> {
    let mut delay = Duration::from_millis(200);
    loop {
        match redis_connection(redis).await {
            Ok(c) => return Ok(c),
            Err(RedisConnectError::Client(e)) => return Err(e.into()),
            Err(e) => {
                warn!(error = %e, delay_ms = delay.as_millis() as u64, "Redis unavailable; retrying.");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// What a mailbox's policy does with replies it holds back (`[mailbox]`'s `unauthenticated` and
/// `after_person_reply`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplyPolicy {
    /// A reply to a sender the receiving server did not authenticate.
    pub unauthenticated: DraftOrSend,
    /// A reply in a thread a person of the mailbox has answered.
    pub after_person_reply: DraftOrSend,
}

impl From<DraftOrSend> for ReplyPolicy {
    /// `unauthenticated` as given, the person-reply policy at its default (draft).
    fn from(unauthenticated: DraftOrSend) -> Self {
        Self { unauthenticated, ..Self::default() }
    }
}

/// Why a reply must be a draft under `policy` because its recipient was not authenticated, if
/// it must: the poller's reason, or that no verdict was recorded (mail taken in before the
/// poller recorded one).
pub fn unauthenticated_reason(policy: DraftOrSend, verified: &Verified) -> Option<String> {
    if policy == DraftOrSend::Send {
        return None;
    }
    match &verified.sender_auth {
        Some(SenderAuth::Pass { .. }) => None,
        Some(SenderAuth::Fail { reason }) => Some(format!("unauthenticated sender: {reason}")),
        None => Some("unauthenticated sender: no authentication verdict was recorded for this email".into()),
    }
}

/// Runs the sender until `shutdown`: for every enabled mailbox of the registry, or for the one
/// mailbox of `[mailbox]`/`[outbox]` when the registry is empty ([`mailboxes`]).
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, settings.database.max_connections).await?;
    tokio::pin!(shutdown);
    let redis = tokio::select! {
        r = connect_redis(&settings.redis) => r?,
        () = &mut shutdown => return Ok(()),
    };
    let telemetry = Arc::new(Telemetry::default());
    let senders = Arc::new(mailboxes::MailboxSenders::new(settings.clone(), pool.clone(), redis, &telemetry));
    // The first read fails the start when the settings cannot work (a single mailbox's outbox).
    senders.refresh().await?;
    let registry = settings.section::<pipeline_core::mailbox_overlay::RegistrySettings>("registry")?;
    let refresher = mailroom_db::mailboxes::keep_reading(senders.clone(), settings.clone(), pool.clone(), &registry);
    let result = pipeline_core::serve_worker_with(NAME, &EMAILS_TO_SEND, senders, &settings, telemetry, shutdown).await;
    refresher.abort();
    result?;
    Ok(())
}
