//! `[mailbox]` settings: the source, the support mailbox it belongs to, priorities, the
//! rollout sample, and what the poller shows at the mailbox — which mail it marks read
//! ([`MarkRead`]) and the outcome labels ([`crate::outcome`]).

use std::path::PathBuf;

use pipeline_core::settings::DraftOrSend;
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
    /// Least time between two passes that look for new outcomes (0: every pass). Each such pass
    /// looks at every message still open, so with a short `poll_interval_ms` and thousands of
    /// emails in flight it cost more PostgreSQL time than any other statement of the pipeline;
    /// a label a second late is not seen by a person.
    #[serde(default = "default_outcome_interval_ms")]
    pub outcome_interval_ms: u64,
    /// Parent of the outcome labels, keywords and folders: Gmail labels `<parent>/Answered` …,
    /// IMAP and Maildir keywords `$<parent>-Answered` … (ASCII letters, digits, `-` and `_`),
    /// IMAP folders `<parent><delimiter>Answered` … (no control characters, `*`, `%`, `"`, `\`).
    #[serde(default = "default_outcome_parent")]
    pub outcome_parent: String,
    /// How the IMAP source shows outcomes (see [`ImapOutcomes`]).
    #[serde(default)]
    pub imap_outcomes: ImapOutcomes,
    /// The authserv-ids whose `Authentication-Results` the poller trusts (see
    /// [`trusted_authserv_ids`](Self::trusted_authserv_ids) and [`crate::authres`]).
    #[serde(default)]
    pub authserv_ids: Vec<String>,
    /// What the sender does with a reply to an unauthenticated sender; the poller only warns
    /// at start when nothing is trusted.
    #[serde(default)]
    pub unauthenticated: DraftOrSend,
    /// What the sender does with customer mail in a thread a person of the mailbox has answered;
    /// with `draft` (the default) the poller reads the mailbox's sent mail to know.
    #[serde(default)]
    pub after_person_reply: DraftOrSend,
    /// The folder of sent mail: an IMAP folder, or the Maildir++ folder `.<name>` of a Maildir
    /// (Gmail has its `SENT` label).
    #[serde(default = "default_sent_folder")]
    pub sent_folder: String,
    /// The Gmail source looks at the newest this many sent messages each pass (stopping at a
    /// page it has seen whole).
    #[serde(default = "default_sent_scan_limit")]
    pub sent_scan_limit: usize,
}

/// The authserv-id Gmail writes in its `Authentication-Results`, trusted by the `gmail` source
/// when `mailbox.authserv_ids` is empty.
pub const GMAIL_AUTHSERV_ID: &str = "mx.google.com";

fn default_sent_folder() -> String {
    "Sent".into()
}

fn default_sent_scan_limit() -> usize {
    500
}

/// `mailbox.imap_outcomes`: how the IMAP source shows a message's outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum ImapOutcomes {
    /// A keyword on the message, which stays in the folder (`$Mailroom-Answered`).
    #[default]
    Keywords,
    /// The message is moved into a folder per outcome (`Mailroom/Answered`), created when missing.
    Folders,
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

impl TryFrom<String> for ImapOutcomes {
    type Error = String;

    /// Refuses anything else, naming the key and the values it takes.
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "keywords" => Ok(Self::Keywords),
            "folders" => Ok(Self::Folders),
            other => Err(format!("mailbox.imap_outcomes must be \"keywords\" or \"folders\", not {other:?}")),
        }
    }
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
    /// The authserv-ids trusted for this mailbox: `mailbox.authserv_ids` (blank entries left
    /// out), or, when it is empty on the `gmail` source, Gmail's own ([`GMAIL_AUTHSERV_ID`]).
    pub fn trusted_authserv_ids(&self) -> Vec<String> {
        let listed: Vec<String> =
            self.authserv_ids.iter().map(|id| id.trim().to_owned()).filter(|id| !id.is_empty()).collect();
        if listed.is_empty() && self.kind == "gmail" { vec![GMAIL_AUTHSERV_ID.to_owned()] } else { listed }
    }

    /// Whether outcomes are IMAP folders (the `imap` source with `imap_outcomes = "folders"`).
    pub fn outcome_folders(&self) -> bool {
        self.kind == "imap" && self.imap_outcomes == ImapOutcomes::Folders
    }

    /// Refuses settings the outcome labels cannot work with, naming the key.
    pub fn validate(&self) -> Result<(), SourceError> {
        if self.imap_outcomes == ImapOutcomes::Folders && self.kind != "imap" {
            return Err(SourceError::Settings(format!(
                "mailbox.imap_outcomes = \"folders\" needs mailbox.kind = \"imap\" (it is {:?})",
                self.kind
            )));
        }
        let parent = self.outcome_parent.as_str();
        if self.outcome_folders() {
            // It only names folders: spaces and non-ASCII are fine (encoded in modified UTF-7).
            if parent.trim().is_empty() || parent.chars().any(|c| c.is_control() || "*%\"\\".contains(c)) {
                return Err(SourceError::Settings(format!(
                    "mailbox.outcome_parent {parent:?} must be a folder name without control characters, '*', '%', \
                     '\"' or '\\'"
                )));
            }
        } else if parent.is_empty() || !parent.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
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

fn default_outcome_interval_ms() -> u64 {
    1000
}

fn default_outcome_parent() -> String {
    "Mailroom".to_owned()
}

#[cfg(test)]
mod tests {
    use pipeline_core::Settings;

    use super::*;

    fn mailbox(env: &[(&str, &str)]) -> Result<MailboxSettings, String> {
        let env = env.iter().map(|(k, v)| (format!("MAILROOM__MAILBOX__{k}"), (*v).to_owned()));
        let settings = Settings::load_from(None, env).map_err(|e| e.to_string())?;
        let mailbox: MailboxSettings = settings.section("mailbox").map_err(|e| e.to_string())?;
        mailbox.validate().map_err(|e| e.to_string())?;
        Ok(mailbox)
    }

    #[test]
    fn trusted_authserv_ids_default_to_none_except_gmails_own_on_the_gmail_source() {
        let maildir = mailbox(&[]).expect("defaults");
        assert!(maildir.trusted_authserv_ids().is_empty());
        assert_eq!(maildir.unauthenticated, DraftOrSend::Draft, "on by default");
        assert_eq!(mailbox(&[("KIND", "gmail")]).expect("gmail").trusted_authserv_ids(), [GMAIL_AUTHSERV_ID]);
        let listed = mailbox(&[("KIND", "gmail"), ("AUTHSERV_IDS", "mx.northwind.example, ,mx2.northwind.example")])
            .expect("a list from the environment");
        assert_eq!(listed.trusted_authserv_ids(), ["mx.northwind.example", "mx2.northwind.example"]);
        assert_eq!(mailbox(&[("UNAUTHENTICATED", "send")]).expect("send").unauthenticated, DraftOrSend::Send);
        let error = mailbox(&[("UNAUTHENTICATED", "reject")]).expect_err("unknown policy");
        assert!(error.contains("mailbox.unauthenticated") && error.contains("\"send\""), "{error}");
    }

    #[test]
    fn imap_outcomes_are_keywords_unless_folders_are_asked_for() {
        assert_eq!(mailbox(&[]).expect("defaults").imap_outcomes, ImapOutcomes::Keywords);
        let folders = mailbox(&[("KIND", "imap"), ("IMAP_OUTCOMES", "folders"), ("OUTCOME_PARENT", "Équipe support")])
            .expect("folders may have spaces and non-ASCII");
        assert!(folders.outcome_folders());
        let error = mailbox(&[("KIND", "imap"), ("IMAP_OUTCOMES", "labels")]).expect_err("unknown value");
        assert!(error.contains("imap_outcomes") && error.contains("folders"), "{error}");
        let error = mailbox(&[("IMAP_OUTCOMES", "folders")]).expect_err("maildir has no folders mode");
        assert!(error.contains("mailbox.imap_outcomes") && error.contains("maildir"), "{error}");
        let error = mailbox(&[("KIND", "imap"), ("OUTCOME_PARENT", "Équipe support")]).expect_err("keyword parent");
        assert!(error.contains("mailbox.outcome_parent"), "{error}");
        let error = mailbox(&[("KIND", "imap"), ("IMAP_OUTCOMES", "folders"), ("OUTCOME_PARENT", "All*")])
            .expect_err("a LIST wildcard");
        assert!(error.contains("mailbox.outcome_parent"), "{error}");
    }
}
