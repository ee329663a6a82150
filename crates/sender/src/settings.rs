//! The sender's settings: `[sender]` (mode, send quota, reply throttle, claim lease) and
//! `[outbox]` (which sink delivers, and its own settings).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// What the sender does with a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Deliver replies; escalations and throttled replies become drafts.
    Send,
    /// Every reply becomes a draft for a human.
    Draft,
    /// Everything happens and is logged (quota, throttle, send log) except the delivery itself:
    /// the shadow mode of a first rollout (docs/ARCHITECTURE.md, design decisions).
    DryRun,
}

impl Mode {
    /// The name used in config and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Draft => "draft",
            Self::DryRun => "dry-run",
        }
    }
}

/// `[sender]`.
#[derive(Debug, Clone, Deserialize)]
pub struct SenderSettings {
    /// `send`, `draft` or `dry-run`.
    pub mode: Mode,
    /// Display name on the reply's `From` (empty: the address alone).
    #[serde(default)]
    pub from_name: String,
    /// Sends per agent mailbox per `rate_window_secs`, shared by every sender process.
    pub rate_limit: u32,
    /// The quota's window.
    pub rate_window_secs: u64,
    /// Sends allowed at once before smoothing applies (1: evenly spaced).
    pub rate_burst: u32,
    /// Automatic replies to one address per `throttle_window_secs`; past it, a draft.
    pub throttle_max_replies: u32,
    /// The reply throttle's window.
    pub throttle_window_secs: u64,
    /// How long a claim protects a delivery in progress; an older claim belongs to a sender that
    /// died and is taken over (after asking the sink whether the reply went out).
    pub claim_lease_secs: u64,
    /// After the sink refused a reply for a configuration error (a Gmail scope missing, a
    /// refresh token refused), how long replies of that kind wait before one tries again; the
    /// others are deferred meanwhile without asking the sink.
    pub misconfigured_retry_secs: u64,
    /// Prefix of the Redis keys of the quota and the throttle.
    pub redis_prefix: String,
}

impl SenderSettings {
    /// The quota's window.
    pub fn rate_window(&self) -> Duration {
        Duration::from_secs(self.rate_window_secs.max(1))
    }

    /// The throttle's window.
    pub fn throttle_window(&self) -> Duration {
        Duration::from_secs(self.throttle_window_secs.max(1))
    }

    /// The claim lease.
    pub fn claim_lease(&self) -> Duration {
        Duration::from_secs(self.claim_lease_secs.max(1))
    }

    /// The wait after a sink configuration error.
    pub fn misconfigured_retry(&self) -> Duration {
        Duration::from_secs(self.misconfigured_retry_secs.max(1))
    }
}

/// Which sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxKind {
    /// A local Maildir (offline default).
    Maildir,
    /// An SMTP relay.
    Smtp,
    /// The Gmail API.
    Gmail,
}

/// `[outbox]`.
#[derive(Debug, Clone, Deserialize)]
pub struct OutboxSettings {
    /// `maildir`, `smtp` or `gmail`.
    pub kind: OutboxKind,
    /// The Maildir outbox (sent replies in it, drafts in its `.Drafts` folder). With the SMTP
    /// sink, drafts go to this Maildir's `.Drafts` folder, since SMTP has no drafts.
    pub maildir: PathBuf,
    /// `[outbox.smtp]`.
    pub smtp: SmtpSettings,
    /// `[outbox.gmail]`; needed only when `kind = "gmail"`.
    #[serde(default)]
    pub gmail: Option<gmail::GmailSettings>,
}

/// Transport security of the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain SMTP (a local relay only).
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587).
    Starttls,
    /// TLS from the first byte (implicit TLS, port 465).
    Tls,
}

/// `[outbox.smtp]`.
#[derive(Debug, Clone, Deserialize)]
pub struct SmtpSettings {
    /// Relay host name (also the name its certificate must carry).
    pub host: String,
    /// Relay port.
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    pub security: SmtpSecurity,
    /// AUTH user; empty: no authentication.
    #[serde(default)]
    pub username: String,
    /// AUTH password. Secret.
    #[serde(default = "empty_secret")]
    pub password: SecretString,
    /// A PEM CA certificate to trust besides the public roots (a private relay); empty: none.
    #[serde(default)]
    pub ca_file: String,
    /// Timeout of each SMTP command.
    pub timeout_secs: u64,
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}
