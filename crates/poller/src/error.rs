//! [`SourceError`]: why a sync pass stopped, and what the poller should do about it — wait and
//! try again (almost everything), wait as long as the mailbox said (rate limits), or stop
//! polling the mailbox until an operator acts (a revoked Gmail authorisation, or one without
//! the scope a call needs).

use std::time::Duration;

use gmail::GmailError;
use pipeline_core::ProducerError;

/// A sync pass failed. Nothing is lost either way: claims of unpublished messages are released
/// and the cursor only moves once a pass has handled everything before it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The ledger or cursor table could not be read or written.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The Maildir could not be read or a message could not be moved.
    #[error("mailbox I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A message could not be published (broker unreachable, publish not confirmed). Boxed:
    /// the publisher's error is large and every pass returns this type.
    #[error("publish: {0}")]
    Publish(Box<ProducerError>),
    /// The Gmail API failed.
    #[error(transparent)]
    Gmail(#[from] GmailError),
    /// The IMAP server failed or answered something unusable.
    #[error("IMAP: {0}")]
    Imap(String),
    /// The `[mailbox]` settings cannot work.
    #[error("mailbox settings: {0}")]
    Settings(String),
}

impl From<ProducerError> for SourceError {
    fn from(e: ProducerError) -> Self {
        Self::Publish(Box::new(e))
    }
}

impl SourceError {
    /// Whether only an operator can fix this (Google refused the refresh token, the token was
    /// not granted a scope a call needs, or the settings are unusable): retrying would only
    /// repeat the same error.
    pub fn needs_operator(&self) -> bool {
        match self {
            Self::Gmail(e) => e.needs_reauthorization(),
            Self::Settings(_) => true,
            _ => false,
        }
    }

    /// How long the mailbox asked us to wait before the next request, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Gmail(e) => e.retry_after(),
            _ => None,
        }
    }
}
