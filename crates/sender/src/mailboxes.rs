//! One sender process for every mailbox: a [`SendHandler`] per mailbox, each with its own sink,
//! credentials, sending policy (`mode`, quota, throttle, `from_name`) and sink problems, so one
//! mailbox's exhausted quota or refused SMTP login defers only its own replies.
//!
//! The mailboxes are those of the registry (`mailroom mailbox …`), each with its own tables laid
//! over the process's settings ([`Settings::for_mailbox`]), read again every
//! `registry.refresh_secs`; when the registry is empty, the one mailbox of `[mailbox]` and
//! `[outbox]`, as before the registry existed. A reply is handled by the handler of its
//! `agent_email`: a mailbox the sender does not serve (not registered, or disabled) gets no
//! reply — it is refused as `ForgedReply` — and a registered mailbox whose settings cannot work
//! now (a secret reference that does not resolve, an unusable outbox) has its replies deferred
//! until they do.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pipeline_core::mailbox_overlay::{RegistrySettings, Version};
use pipeline_core::messages::EmailToSend;
use pipeline_core::settings::DraftOrSend;
use pipeline_core::{DeliveryMeta, Handler, HandlerError, Outgoing, Settings, Telemetry};
use serde::Deserialize;
use sqlx::PgPool;
use tracing::{error, info, warn};

use crate::provenance::{Forgery, Served};
use crate::settings::{OutboxSettings, SenderSettings};
use crate::sink::AnySink;
use crate::{NAME, SendHandler, SenderMetrics};

/// The keys of `[mailbox]` the sender reads: the mailbox it sends as (single-mailbox mode), and
/// what becomes of a reply to a sender the receiving server did not authenticate.
#[derive(Deserialize)]
struct ServedMailbox {
    agent_email: String,
    #[serde(default)]
    unauthenticated: DraftOrSend,
    #[serde(default)]
    after_person_reply: DraftOrSend,
}

/// One mailbox's handler.
type MailboxHandler = Arc<SendHandler<AnySink>>;

/// What the sender has for one mailbox.
enum Entry {
    /// Its handler, and the registry version it was built from (`None`: `[mailbox]`).
    Ready { handler: Arc<SendHandler<AnySink>>, version: Option<Version> },
    /// Its settings cannot work now: its replies wait.
    Broken { reason: String, version: Option<Version> },
}

impl Entry {
    fn version(&self) -> Option<Version> {
        match self {
            Self::Ready { version, .. } | Self::Broken { version, .. } => *version,
        }
    }
}

/// The handlers of every mailbox the sender serves, by address.
pub struct MailboxSenders {
    settings: Settings,
    pool: PgPool,
    redis: redis::aio::ConnectionManager,
    telemetry: Arc<Telemetry>,
    metrics: SenderMetrics,
    claimed_by: String,
    refresh: Duration,
    entries: RwLock<HashMap<String, Entry>>,
}

/// Why the mailboxes could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The settings of `[mailbox]`/`[outbox]`/`[sender]` cannot work.
    #[error("{0}")]
    Settings(String),
    /// The registry could not be read.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl MailboxSenders {
    /// Senders for the mailboxes of `settings` (none until [`MailboxSenders::refresh`]).
    pub fn new(
        settings: Settings,
        pool: PgPool,
        redis: redis::aio::ConnectionManager,
        telemetry: &Arc<Telemetry>,
    ) -> Self {
        let refresh =
            settings.section::<RegistrySettings>("registry").map(|r| r.refresh()).unwrap_or(Duration::from_secs(10));
        Self {
            claimed_by: settings.consumer_for(NAME).consumer_id,
            metrics: SenderMetrics::register(telemetry),
            telemetry: telemetry.clone(),
            settings,
            pool,
            redis,
            refresh,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Reads the registry and brings the handlers up to date: new and changed mailboxes get a
    /// new handler, disabled and removed ones none. With an empty registry, the mailbox of
    /// `[mailbox]`; its settings failing is an error (the process cannot serve anything).
    pub async fn refresh(&self) -> Result<(), SetupError> {
        let rows = mailroom_db::mailboxes::list(&self.pool).await?;
        if rows.is_empty() {
            let agent = self
                .settings
                .section::<ServedMailbox>("mailbox")
                .map_err(|e| SetupError::Settings(e.to_string()))?
                .agent_email;
            let agent = pipeline_core::messages::agent_address(&agent);
            if self.version_of(&agent).is_some_and(|v| v.is_none()) && self.len() == 1 {
                return Ok(());
            }
            // The process's own telemetry: a sink problem of the one mailbox is the worker's.
            let handler = self.build(&agent, &self.settings, &self.telemetry).map_err(SetupError::Settings)?;
            info!(mailbox = %agent, "Sending for the mailbox of [mailbox] (the registry is empty).");
            self.replace(HashMap::from([(agent, Entry::Ready { handler: Arc::new(handler), version: None })]));
            return Ok(());
        }
        // The handlers that still fit their registry entry are kept (a broken mailbox is tried
        // again: a file its secret names may exist now).
        let ready: HashMap<String, (MailboxHandler, Option<Version>)> = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter_map(|(address, entry)| match entry {
                Entry::Ready { handler, version } => Some((address.clone(), (handler.clone(), *version))),
                Entry::Broken { .. } => None,
            })
            .collect();
        let mut next = HashMap::new();
        for row in rows.into_iter().filter(|r| r.enabled) {
            let version = Some(Version::of(row.updated_at, &row.settings));
            if let Some((handler, v)) = ready.get(&row.address)
                && *v == version
            {
                next.insert(row.address.clone(), Entry::Ready { handler: handler.clone(), version });
                continue;
            }
            let built = self
                .settings
                .for_mailbox(&row.address, &row.settings)
                .map_err(|e| e.to_string())
                .and_then(|settings| self.build(&row.address, &settings, &Arc::new(Telemetry::default())));
            let entry = match built {
                Ok(handler) => {
                    info!(mailbox = %row.address, "Sending for the mailbox.");
                    self.telemetry.health.set_detail(&row.address, None);
                    Entry::Ready { handler: Arc::new(handler), version }
                }
                Err(reason) => {
                    // Logged when it starts or changes, not at every read of the registry.
                    if !matches!(self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&row.address),
                        Some(Entry::Broken { reason: before, .. }) if *before == reason)
                    {
                        error!(mailbox = %row.address, error = %reason, "The mailbox's settings cannot work; its replies wait.");
                    }
                    self.telemetry.health.set_detail(&row.address, Some(format!("mailbox {}: {reason}", row.address)));
                    Entry::Broken { reason, version }
                }
            };
            next.insert(row.address, entry);
        }
        // Each mailbox's sending problem, shown by the worker's /readyz without failing it, and
        // recorded for `mailroom status`.
        for (address, entry) in &next {
            let problem = match entry {
                Entry::Ready { handler, .. } => {
                    let reason = handler.health().reason();
                    (!handler.health().is_ready() && !reason.is_empty()).then_some(reason)
                }
                Entry::Broken { reason, .. } => Some(reason.clone()),
            };
            if let Entry::Ready { .. } = entry {
                self.telemetry.health.set_detail(address, problem.as_ref().map(|p| format!("mailbox {address}: {p}")));
            }
            if let Err(e) =
                mailroom_db::mailboxes::record_sender(&self.pool, address, &self.claimed_by, problem.as_deref()).await
            {
                warn!(mailbox = %address, error = %e, "Cannot record the mailbox's sending state.");
            }
        }
        self.replace(next);
        Ok(())
    }

    fn build(&self, agent: &str, settings: &Settings, health: &Arc<Telemetry>) -> Result<SendHandler<AnySink>, String> {
        let sender: SenderSettings = settings.section("sender").map_err(|e| e.to_string())?;
        let mailbox: ServedMailbox = settings.section("mailbox").map_err(|e| e.to_string())?;
        let outbox: OutboxSettings = settings.section("outbox").map_err(|e| e.to_string())?;
        let sink = AnySink::from_settings(&outbox).map_err(|e| format!("outbox: {e}"))?;
        // The quota and throttle keys are the process's, whatever a mailbox says.
        let sender = SenderSettings { redis_prefix: self.redis_prefix(), ..sender };
        Ok(SendHandler::with_metrics(
            self.pool.clone(),
            sink,
            self.redis.clone(),
            sender,
            Served::single(agent),
            crate::ReplyPolicy {
                unauthenticated: mailbox.unauthenticated,
                after_person_reply: mailbox.after_person_reply,
            },
            self.claimed_by.clone(),
            health,
            self.metrics.clone(),
        ))
    }

    fn redis_prefix(&self) -> String {
        self.settings.section::<SenderSettings>("sender").map(|s| s.redis_prefix).unwrap_or_else(|_| "mailroom".into())
    }

    fn version_of(&self, address: &str) -> Option<Option<Version>> {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(address).map(Entry::version)
    }

    fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner).len()
    }

    fn replace(&self, next: HashMap<String, Entry>) {
        *self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
    }

    /// The handler of `agent`, or what to do instead.
    fn handler_for(&self, agent: &str) -> Result<Arc<SendHandler<AnySink>>, Option<String>> {
        let entries = self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        match entries.get(&pipeline_core::messages::agent_address(agent)) {
            Some(Entry::Ready { handler, .. }) => Ok(handler.clone()),
            Some(Entry::Broken { reason, .. }) => Err(Some(reason.clone())),
            None => Err(None),
        }
    }

    /// Handles one reply: by its mailbox's handler, deferred while that mailbox's settings
    /// cannot work, refused when the sender does not serve the mailbox.
    pub async fn send_one(&self, msg: &EmailToSend) -> Result<crate::Outcome, HandlerError> {
        let mut found = self.handler_for(&msg.agent_email);
        if matches!(found, Err(None)) {
            // A mailbox added or enabled moments ago: the poller may have taken its first mail
            // in (and the generator answered it) before this process read the registry again.
            // Read it now rather than refuse a genuine reply.
            if let Err(e) = self.refresh().await {
                warn!(error = %e, "Cannot read the mailbox registry.");
            }
            found = self.handler_for(&msg.agent_email);
        }
        match found {
            Ok(handler) => handler.send_one(msg).await,
            Err(Some(reason)) => Err(HandlerError::defer(
                self.refresh,
                "MailboxMisconfigured",
                format!("the settings of mailbox {} cannot work: {reason}", msg.agent_email),
            )),
            Err(None) => {
                let forgery = Forgery::UnknownMailbox { agent: msg.agent_email.clone() };
                self.metrics.forged(forgery.kind());
                error!(email_id = %msg.email_id, to = %msg.to, agent = %msg.agent_email, reason = forgery.kind(), error = %forgery,
                    "Refused a reply for a mailbox this sender does not serve; dead-lettered as ForgedReply, nothing sent.");
                Err(HandlerError::permanent("ForgedReply", forgery))
            }
        }
    }
}

impl mailroom_db::mailboxes::ReadsRegistry for MailboxSenders {
    type Error = SetupError;
    const WHAT: &'static str = "mailboxes";

    /// [`MailboxSenders::refresh`], with the settings and pool the senders were made with.
    fn read(&self, _: &Settings, _: &PgPool) -> impl std::future::Future<Output = Result<(), SetupError>> + Send {
        self.refresh()
    }
}

impl Handler for MailboxSenders {
    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        pipeline_core::consumer::roles::SENDER.publishes
    }
    type Input = EmailToSend;

    async fn handle(&self, msg: EmailToSend, _meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        self.send_one(&msg).await.map(|_| Vec::new())
    }
}
