//! Where replies go: one [`Sink`] trait with three implementations — a local Maildir outbox
//! (the offline default), an SMTP relay, and the Gmail API — and the typed [`SinkError`] whose
//! kind decides between retrying and dead-lettering.

mod gmail_api;
mod maildir;
mod smtp;

use std::future::Future;
use std::time::Duration;

pub use gmail_api::GmailSink;
pub use maildir::{Delivery, MaildirSink};
pub use smtp::{SmtpSink, check as check_smtp};

use crate::settings::{OutboxKind, OutboxSettings};

/// Deliver as a sent reply, or leave as a draft for a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Send it.
    Send,
    /// Save it as a draft.
    Draft,
}

impl Kind {
    /// `send` or `draft`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Draft => "draft",
        }
    }
}

/// A built reply and where it goes.
#[derive(Debug, Clone)]
pub struct OutgoingReply {
    /// Our `Message-ID`, without angle brackets (stable per answered email).
    pub message_id: String,
    /// The RFC 5322 message.
    pub raw: Vec<u8>,
    /// Envelope sender (the agent mailbox).
    pub from: String,
    /// Envelope recipient (the customer).
    pub to: String,
    /// The mailbox's thread to file it in (Gmail).
    pub thread_id: Option<String>,
}

/// Whether a reply was delivered, as far as the sink can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// It is there, under this provider id.
    Delivered(String),
    /// It is not there.
    Absent,
    /// The sink cannot tell (SMTP keeps no record we can read).
    Unknown,
}

/// A draft left for a person, read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftCopy {
    /// It is there, holding this message (as a person may have edited it).
    Present(Vec<u8>),
    /// It is not there any more: a person sent or discarded it.
    Gone,
    /// The sink cannot read its drafts (no read access).
    Unknown,
}

/// A delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing the Maildir failed (disk full, permissions).
    #[error("outbox Maildir {path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The SMTP relay refused or could not be reached.
    #[error("SMTP delivery failed: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// The reply's addresses are not acceptable to the SMTP envelope.
    #[error("SMTP envelope refused: {0}")]
    Envelope(String),
    /// The Gmail API refused or could not be reached.
    #[error(transparent)]
    Gmail(#[from] gmail::GmailError),
    /// The sink is misconfigured.
    #[error("outbox configuration: {0}")]
    Config(String),
}

impl pipeline_core::Classify for SinkError {
    fn fate(&self) -> pipeline_core::Fate {
        pipeline_core::Fate::retry_if(self.is_transient())
    }

    fn error_type(&self) -> &'static str {
        SinkError::error_type(self)
    }
}

impl SinkError {
    /// Whether a later attempt may succeed. SMTP follows RFC 5321 (4yz transient, 5yz
    /// permanent; no answer at all — connection or timeout — transient); Gmail's HTTP answers
    /// follow the Gmail client (quota and 5xx transient, other 4xx permanent).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Io { .. } => true,
            Self::Smtp(e) => !(e.is_permanent() || e.is_client() || smtp_tls_failure(e)),
            Self::Gmail(e) => e.is_transient(),
            Self::Envelope(_) | Self::Config(_) => false,
        }
    }

    /// Whether the sink's configuration is wrong for every reply, not this one: Google refused
    /// the refresh token, or the token lacks the scope the call needs. Such a failure holds the
    /// replies up until an operator re-authorises the mailbox; dead-lettering them would lose
    /// every email answered meanwhile.
    pub fn needs_operator(&self) -> bool {
        matches!(self, Self::Gmail(e) if e.needs_reauthorization())
    }

    /// Whether the whole sink is unusable (a refused refresh token), not only one kind of
    /// delivery (a scope that allows sending but not drafts).
    pub fn blocks_every_kind(&self) -> bool {
        matches!(self, Self::Gmail(gmail::GmailError::ReauthorizationRequired { .. }))
    }

    /// How long the provider asked us to wait, when it said (Gmail quota and rate limits).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Gmail(e) => e.retry_after(),
            _ => None,
        }
    }

    /// `failure_info.error_type` for a dead letter.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Io { .. } => "OutboxIoError",
            Self::Smtp(e) if e.is_permanent() => "SmtpRejected",
            Self::Smtp(e) if smtp_tls_failure(e) => "SmtpTlsError",
            Self::Smtp(_) => "SmtpUnavailable",
            Self::Envelope(_) => "InvalidRecipient",
            Self::Gmail(gmail::GmailError::ReauthorizationRequired { .. }) => "GmailReauthorizationRequired",
            Self::Gmail(gmail::GmailError::InsufficientScope { .. }) => "GmailInsufficientScope",
            Self::Gmail(gmail::GmailError::RateLimited { .. }) => "GmailRateLimited",
            Self::Gmail(gmail::GmailError::QuotaExhausted { .. }) => "QuotaExceededError",
            Self::Gmail(e) if e.is_transient() => "GmailUnavailable",
            Self::Gmail(_) => "GmailRejected",
            Self::Config(_) => "OutboxMisconfigured",
        }
    }
}

/// Whether an SMTP error is a failed TLS handshake (an untrusted or mismatched certificate),
/// which no retry fixes. lettre reports those as connection errors; the TLS library's error
/// travels as an `InvalidData` I/O error in the source chain.
fn smtp_tls_failure(e: &lettre::transport::smtp::Error) -> bool {
    if e.is_tls() {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData) {
            return true;
        }
        cause = c.source();
    }
    false
}

/// A place replies are delivered to.
pub trait Sink: Send + Sync + 'static {
    /// `maildir`, `smtp` or `gmail`, for the send log and logs.
    fn name(&self) -> &'static str;

    /// Delivers the reply as `kind`; returns the provider's id for it.
    fn deliver(&self, reply: &OutgoingReply, kind: Kind) -> impl Future<Output = Result<String, SinkError>> + Send;

    /// Whether a reply with this `Message-ID` was already delivered as `kind` (used when a
    /// sender takes over the claim of one that died mid-delivery).
    fn find(&self, reply: &OutgoingReply, kind: Kind) -> impl Future<Output = Result<Lookup, SinkError>> + Send;

    /// The draft of the reply with this `Message-ID`, which the sink saved under `provider_id`,
    /// as it is now (used to tell whether a person took it up).
    fn draft(
        &self,
        reply_message_id: &str,
        provider_id: Option<&str>,
    ) -> impl Future<Output = Result<DraftCopy, SinkError>> + Send;
}

/// The sink chosen by `outbox.kind`.
#[derive(Debug)]
pub enum AnySink {
    /// Maildir outbox.
    Maildir(MaildirSink),
    /// SMTP relay.
    Smtp(SmtpSink),
    /// Gmail API.
    Gmail(GmailSink),
}

impl AnySink {
    /// Builds the configured sink.
    pub fn from_settings(settings: &OutboxSettings) -> Result<Self, SinkError> {
        Ok(match settings.kind {
            OutboxKind::Maildir => Self::Maildir(MaildirSink::new(&settings.maildir)?),
            OutboxKind::Smtp => Self::Smtp(SmtpSink::new(&settings.smtp, MaildirSink::new(&settings.maildir)?)?),
            OutboxKind::Gmail => {
                let gmail = settings.gmail.as_ref().ok_or_else(|| {
                    SinkError::Config(
                        "outbox.kind = \"gmail\" needs [outbox.gmail] client_id, client_secret and refresh_token"
                            .into(),
                    )
                })?;
                Self::Gmail(GmailSink::new(gmail)?)
            }
        })
    }
}

impl Sink for AnySink {
    fn name(&self) -> &'static str {
        match self {
            Self::Maildir(s) => s.name(),
            Self::Smtp(s) => s.name(),
            Self::Gmail(s) => s.name(),
        }
    }

    async fn deliver(&self, reply: &OutgoingReply, kind: Kind) -> Result<String, SinkError> {
        match self {
            Self::Maildir(s) => s.deliver(reply, kind).await,
            Self::Smtp(s) => s.deliver(reply, kind).await,
            Self::Gmail(s) => s.deliver(reply, kind).await,
        }
    }

    async fn find(&self, reply: &OutgoingReply, kind: Kind) -> Result<Lookup, SinkError> {
        match self {
            Self::Maildir(s) => s.find(reply, kind).await,
            Self::Smtp(s) => s.find(reply, kind).await,
            Self::Gmail(s) => s.find(reply, kind).await,
        }
    }

    async fn draft(&self, reply_message_id: &str, provider_id: Option<&str>) -> Result<DraftCopy, SinkError> {
        match self {
            Self::Maildir(s) => s.draft(reply_message_id, provider_id).await,
            Self::Smtp(s) => s.draft(reply_message_id, provider_id).await,
            Self::Gmail(s) => s.draft(reply_message_id, provider_id).await,
        }
    }
}
