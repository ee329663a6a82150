//! The source a mailbox's settings name (`mailbox.kind`): the one place a kind becomes a
//! [`Source`], for the single mailbox of `[mailbox]` and every mailbox of the registry alike.

use std::time::Duration;

use pipeline_core::Settings;
use tracing::info;

use crate::{
    Change, GmailSource, GmailSourceSettings, ImapSettings, ImapSource, Ledger, MailboxSettings, MaildirSource,
    ScanReport, Source, SourceError,
};

/// A Maildir, Gmail or IMAP source.
#[derive(Debug)]
pub enum AnySource {
    /// `mailbox.kind = "maildir"`.
    Maildir(MaildirSource),
    /// `mailbox.kind = "gmail"` (`[mailbox.gmail]`).
    Gmail(Box<GmailSource>),
    /// `mailbox.kind = "imap"` (`[mailbox.imap]`).
    Imap(Box<ImapSource>),
}

impl AnySource {
    /// The source `mailbox` names, with its own table of `settings` (`mailbox.gmail`,
    /// `mailbox.imap`). Nothing is connected yet; settings that cannot work fail here, naming
    /// the key.
    pub fn open(settings: &Settings, mailbox: &MailboxSettings) -> Result<Self, SourceError> {
        mailbox.validate()?;
        let agent_email = mailbox.agent_email.as_str();
        let settings_error = |e: pipeline_core::settings::SettingsError| SourceError::Settings(e.to_string());
        match mailbox.kind.as_str() {
            "maildir" => {
                let source = MaildirSource::new(&mailbox.maildir).map_err(|e| {
                    SourceError::Settings(format!("mailbox.maildir {}: {e}", mailbox.maildir.display()))
                })?;
                info!(maildir = %mailbox.maildir.display(), %agent_email, "Mailbox source: Maildir.");
                Ok(Self::Maildir(source))
            }
            "gmail" => {
                let gmail = GmailSourceSettings::from_settings(settings).map_err(settings_error)?;
                let source = GmailSource::new(agent_email, &gmail)?;
                info!(user = %gmail.client.user, %agent_email, query = %gmail.client.query, "Mailbox source: Gmail.");
                Ok(Self::Gmail(Box::new(source)))
            }
            "imap" => {
                let imap: ImapSettings = settings.section("mailbox.imap").map_err(settings_error)?;
                let source = ImapSource::new(agent_email, &imap)?;
                info!(host = %imap.host, folder = %imap.folder, idle = imap.idle, %agent_email, "Mailbox source: IMAP.");
                Ok(Self::Imap(Box::new(source)))
            }
            other => Err(SourceError::Settings(format!(
                "mailbox.kind {other:?} is not supported (\"maildir\", \"gmail\" or \"imap\")"
            ))),
        }
    }
}

impl Source for AnySource {
    fn kind(&self) -> &'static str {
        match self {
            Self::Maildir(s) => s.kind(),
            Self::Gmail(s) => s.kind(),
            Self::Imap(s) => s.kind(),
        }
    }

    async fn sync_once(&mut self, ledger: &Ledger) -> Result<ScanReport, SourceError> {
        match self {
            Self::Maildir(s) => s.sync_once(ledger).await,
            Self::Gmail(s) => s.sync_once(ledger).await,
            Self::Imap(s) => s.sync_once(ledger).await,
        }
    }

    async fn wait_for_mail(&mut self, interval: Duration) {
        match self {
            Self::Maildir(s) => s.wait_for_mail(interval).await,
            Self::Gmail(s) => s.wait_for_mail(interval).await,
            Self::Imap(s) => s.wait_for_mail(interval).await,
        }
    }

    async fn apply_outcomes(&mut self, ledger: &Ledger, changes: &[Change]) -> Result<Vec<String>, SourceError> {
        match self {
            Self::Maildir(s) => s.apply_outcomes(ledger, changes).await,
            Self::Gmail(s) => s.apply_outcomes(ledger, changes).await,
            Self::Imap(s) => s.apply_outcomes(ledger, changes).await,
        }
    }

    async fn sent_mail(
        &mut self,
        ledger: &Ledger,
    ) -> Result<Vec<mailroom_db::person_replies::SentMessage>, SourceError> {
        match self {
            Self::Maildir(s) => s.sent_mail(ledger).await,
            Self::Gmail(s) => s.sent_mail(ledger).await,
            Self::Imap(s) => s.sent_mail(ledger).await,
        }
    }

    async fn close(&mut self) {
        match self {
            Self::Maildir(s) => s.close().await,
            Self::Gmail(s) => s.close().await,
            Self::Imap(s) => s.close().await,
        }
    }
}
