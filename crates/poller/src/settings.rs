//! `[mailbox]` settings: the source, the support mailbox it belongs to, priorities, the
//! rollout sample, and what the poller shows at the mailbox — which mail it marks read
//! ([`MarkRead`]) and the outcome labels ([`crate::outcome`]).

use std::path::PathBuf;

use serde::Deserialize;

use crate::SourceError;
use crate::outcome::Outcome;

/// `[mailbox]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct MailboxSettings {
    /// Source kind: `maildir`, `gmail` (settings in `[mailbox.gmail]`) or `imap`
    /// (`[mailbox.imap]`).
    pub kind: String,
    /// Maildir path (`maildir` source).
    pub maildir: PathBuf,
    /// The support mailbox the messages belong to (matched case-insensitively: stored lower-case).
    #[serde(deserialize_with = "pipeline_core::messages::deserialize_agent_address")]
    pub agent_email: String,
    /// Time between passes (and the first step of the backoff after a failure).
    pub poll_interval_ms: u64,
    /// Subject words that make a message urgent.
    pub urgent_words: Vec<String>,
    /// Senders whose mail is more urgent.
    pub vip_senders: Vec<String>,
    /// Sender domains whose mail is more urgent.
    pub vip_domains: Vec<String>,
    /// A claim older than this is taken over: its poller died between claim and publish.
    pub claim_timeout_secs: u64,
    /// The longest wait between passes after repeated failures (the mailbox's own "retry
    /// after" can be longer, and is honoured).
    #[serde(default = "default_max_backoff_secs")]
    pub max_backoff_secs: u64,
    /// Rollout control: the fraction (0.0–1.0) of new mail routed through the pipeline; the
    /// rest is left untouched in the mailbox for the team's current process.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    /// Which messages the poller marks read at the mailbox (see [`MarkRead`]).
    #[serde(default)]
    pub mark_read: MarkRead,
    /// A published message with no outcome recorded by the pipeline after this long gets one
    /// anyway — `failed` when it was never classified, `needs-person` when it was a support
    /// inquiry that got no reply — so it cannot wait unseen forever.
    #[serde(default = "default_outcome_timeout_secs")]
    pub outcome_timeout_secs: u64,
    /// Parent of the outcome labels and keywords: Gmail labels `<parent>/Answered` …, IMAP and
    /// Maildir keywords `$<parent>-Answered` … (ASCII letters, digits, `-` and `_`).
    #[serde(default = "default_outcome_parent")]
    pub outcome_parent: String,
}

/// `mailbox.mark_read`: when the poller marks a message read (Gmail: removes `UNREAD`; IMAP:
/// sets `\Seen`; Maildir: the `S` flag). Whatever it says, a message a person has read stays
/// read and nothing is ever marked unread again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MarkRead {
    /// Only answered mail (a reply was sent); everything else stays unread for the team.
    #[default]
    Answered,
    /// Every message once published (the poller's behaviour before outcomes existed).
    Published,
    /// Nothing: the team's own reading alone decides.
    Never,
}

impl MarkRead {
    /// Whether a message is marked read as soon as it is published.
    pub fn at_publish(self) -> bool {
        self == Self::Published
    }

    /// Whether a message is marked read when it gets `outcome`.
    pub fn on_outcome(self, outcome: Outcome) -> bool {
        self == Self::Answered && outcome == Outcome::Answered
    }
}

impl MailboxSettings {
    /// Refuses settings the outcome labels cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), SourceError> {
        let parent = self.outcome_parent.as_str();
        if parent.is_empty() || !parent.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(SourceError::Settings(format!(
                "mailbox.outcome_parent {parent:?} must be ASCII letters, digits, '-' or '_' (it names IMAP keywords)"
            )));
        }
        Ok(())
    }
}

fn default_max_backoff_secs() -> u64 {
    300
}

fn default_sample_rate() -> f64 {
    1.0
}

fn default_outcome_timeout_secs() -> u64 {
    3600
}

fn default_outcome_parent() -> String {
    "Mailroom".to_owned()
}
