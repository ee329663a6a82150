//! The Gmail API as a [`Source`] (`mailbox.kind = "gmail"`).
//!
//! The first pass (and any pass after Gmail forgot our place) is a full sync: the mailbox's
//! current history id is read first, then every page of `messages.list` for the configured
//! query, then the listed messages are handled, and only when all of them are done is that
//! history id stored as the cursor — mail arriving during the listing is therefore in the
//! history after it. Later passes read every page of `history.list` from the cursor, handle the
//! messages added, and move the cursor to the history id of the last page; Gmail answering 404
//! for an expired cursor starts a full sync. Listings are read whole before anything is
//! labelled, because labelling changes what a query like `is:unread` matches and so what
//! Gmail's later pages hold. Each
//! message goes through the same ledger claim as any other source (the ledger key is Gmail's
//! message id), is fetched raw only when the claim is ours, is published with Gmail's
//! `threadId` (the sender replies in that thread) and its labels (`IMPORTANT` raises the
//! priority), and then gets the processed label; it loses `UNREAD` there only with
//! `mailbox.mark_read = "published"`. A message that does not parse is recorded as such and
//! labelled, but stays unread for a person.
//!
//! Outcomes are labels under `mailbox.outcome_parent` (`Mailroom/Answered`, `Mailroom/Drafted`,
//! `Mailroom/Needs person`, `Mailroom/Not support`, `Mailroom/Failed`), created when missing; a
//! new outcome's label replaces the previous one's, and by default only answered mail loses
//! `UNREAD`.
//!
//! Any Gmail error ends the pass without moving the cursor; the [`Poller`](crate::Poller)
//! waits as long as Gmail asked (rate limits) or backs off, and stops polling when Google
//! refused the refresh token or the token lacks a scope a call needs (the poller needs
//! `gmail.modify`: it reads, labels and marks mail read), since only a new authorisation helps
//! then.

use std::collections::{HashMap, HashSet};

use gmail::{GmailClient, GmailError, GmailSettings, MessageRef};
use pipeline_core::Settings;
use pipeline_core::settings::SettingsError;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{debug, info, warn};

use crate::cursor::{self, Cursor, CursorKey};
use crate::ledger::{Claim, Fetched, Ledger, Prepared};
use crate::{Change, Outcome, ScanReport, Source, SourceError};

/// Labels whose messages are never support mail to answer: our own replies and drafts (a
/// reply sent to the agent's own address also lands in the inbox), spam and deleted mail.
const IGNORED_LABELS: [&str; 4] = ["SENT", "DRAFT", "SPAM", "TRASH"];

/// Where this source's settings are.
const SECTION: &str = "mailbox.gmail";

/// `[mailbox.gmail]` settings: the API client's own ([`GmailSettings`], the same type the
/// sender reads from `[outbox.gmail]`) and the keys only the poller reads.
#[derive(Debug, Clone)]
pub struct GmailSourceSettings {
    /// Where the API is, the OAuth2 client and refresh token, the mailbox, the full-sync query
    /// and the processed label.
    pub client: GmailSettings,
    /// `false` keeps every message unread whatever `mailbox.mark_read` says (the same as
    /// `mark_read = "never"` for this source).
    pub remove_unread: bool,
    /// Results per listing page (1–500).
    pub page_size: u32,
}

/// The keys of `[mailbox.gmail]` that are not the client's.
#[derive(Deserialize)]
struct SourceOnly {
    #[serde(default = "default_remove_unread")]
    remove_unread: bool,
    #[serde(default = "default_page_size")]
    page_size: u32,
}

fn default_remove_unread() -> bool {
    true
}

fn default_page_size() -> u32 {
    gmail::DEFAULT_PAGE_SIZE
}

impl GmailSourceSettings {
    /// Settings with the defaults for everything but the OAuth2 client and refresh token.
    pub fn new(client_id: impl Into<String>, client_secret: SecretString, refresh_token: SecretString) -> Self {
        Self {
            client: GmailSettings::new(client_id, client_secret, refresh_token),
            remove_unread: default_remove_unread(),
            page_size: default_page_size(),
        }
    }

    /// The `[mailbox.gmail]` section of `settings`.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let client: GmailSettings = settings.section(SECTION)?;
        let own: SourceOnly = settings.section(SECTION)?;
        Ok(Self { client, remove_unread: own.remove_unread, page_size: own.page_size })
    }

    /// Refuses settings that cannot work, naming the key to fix.
    fn validate(&self) -> Result<(), SourceError> {
        let client = &self.client;
        let missing = [
            ("client_id", client.client_id.trim().is_empty()),
            ("client_secret", client.client_secret.expose_secret().trim().is_empty()),
            ("refresh_token", client.refresh_token.expose_secret().trim().is_empty()),
            ("processed_label", client.processed_label.trim().is_empty()),
        ];
        match missing.iter().find(|(_, empty)| *empty) {
            Some((key, _)) => Err(SourceError::Settings(format!("{SECTION}.{key} must be set for the gmail source"))),
            None => Ok(()),
        }
    }
}

/// A Gmail mailbox as a [`Source`].
#[derive(Debug)]
pub struct GmailSource {
    client: GmailClient,
    settings: GmailSourceSettings,
    cursor_key: CursorKey,
    /// The processed label's id, looked up (or created) once per process.
    processed_label_id: Option<String>,
    /// The outcome labels' ids, looked up (or created) when first needed.
    outcome_label_ids: HashMap<Outcome, String>,
}

impl GmailSource {
    /// A source for the settings' mailbox, read on behalf of `agent_email`. Makes no request.
    pub fn new(agent_email: &str, settings: &GmailSourceSettings) -> Result<Self, SourceError> {
        settings.validate()?;
        let client = GmailClient::new(&settings.client)?.with_page_size(settings.page_size);
        let user = settings.client.user.trim();
        let user = if user.is_empty() { gmail::DEFAULT_USER } else { user };
        Ok(Self {
            client,
            settings: settings.clone(),
            cursor_key: CursorKey::new(agent_email, "gmail", user),
            processed_label_id: None,
            outcome_label_ids: HashMap::new(),
        })
    }

    /// Where the cursor is kept.
    pub fn cursor_key(&self) -> &CursorKey {
        &self.cursor_key
    }

    async fn processed_label_id(&mut self) -> Result<String, SourceError> {
        if let Some(id) = &self.processed_label_id {
            return Ok(id.clone());
        }
        let label = self.client.ensure_label(&self.settings.client.processed_label).await?;
        debug!(label_id = %label.id, name = %label.name, "Processed label ready.");
        self.processed_label_id = Some(label.id.clone());
        Ok(label.id)
    }

    /// The id of an outcome's label, created when missing.
    async fn outcome_label_id(&mut self, outcome: Outcome, parent: &str) -> Result<String, SourceError> {
        if let Some(id) = self.outcome_label_ids.get(&outcome) {
            return Ok(id.clone());
        }
        let label = self.client.ensure_label(&outcome.label(parent)).await?;
        debug!(label_id = %label.id, name = %label.name, "Outcome label ready.");
        self.outcome_label_ids.insert(outcome, label.id.clone());
        Ok(label.id)
    }

    /// Labels each message with its outcome, removing the previous outcome's label, and
    /// removes `UNREAD` where `mailbox.mark_read` says so.
    async fn apply(&mut self, ledger: &Ledger, changes: &[Change]) -> Result<Vec<String>, SourceError> {
        let settings = ledger.settings();
        let mut done = Vec::with_capacity(changes.len());
        for change in changes {
            let add = self.outcome_label_id(change.outcome, &settings.outcome_parent).await?;
            let mut remove = Vec::new();
            if let Some(previous) = change.previous.filter(|p| *p != change.outcome) {
                remove.push(self.outcome_label_id(previous, &settings.outcome_parent).await?);
            }
            if self.settings.remove_unread && settings.mark_read.on_outcome(change.outcome) {
                remove.push("UNREAD".to_owned());
            }
            let remove: Vec<&str> = remove.iter().map(String::as_str).collect();
            match self.client.modify_labels(&change.mailbox_id, &[add.as_str()], &remove).await {
                Ok(_) => {}
                Err(GmailError::NotFound { .. }) => {
                    debug!(mailbox_id = %change.mailbox_id, "Message deleted before its outcome was shown.")
                }
                Err(e) => return Err(e.into()),
            }
            done.push(change.mailbox_id.clone());
        }
        Ok(done)
    }

    /// One pass: incremental from the stored cursor, or a full sync.
    async fn sync(&mut self, ledger: &Ledger) -> Result<ScanReport, SourceError> {
        let label_id = self.processed_label_id().await?;
        let mut report = ScanReport::default();
        if let Some(stored) = cursor::load(ledger.pool(), &self.cursor_key).await? {
            match self.incremental(ledger, &label_id, &stored.position, &mut report).await {
                Err(SourceError::Gmail(GmailError::HistoryExpired { start_history_id })) => {
                    warn!(%start_history_id, "Gmail no longer has the history from the stored cursor; doing a full resync.");
                }
                other => return other.map(|()| report),
            }
        }
        self.full_sync(ledger, &label_id, &mut report).await?;
        Ok(report)
    }

    /// Incremental sync from `start`; the cursor moves to the last page's history id once
    /// every message is handled.
    async fn incremental(
        &self,
        ledger: &Ledger,
        label_id: &str,
        start: &str,
        report: &mut ScanReport,
    ) -> Result<(), SourceError> {
        let mut page_token: Option<String> = None;
        let mut refs = Vec::new();
        let mut seen = HashSet::new();
        let latest = loop {
            let page = self.client.list_history(start, page_token.as_deref()).await?;
            refs.extend(
                page.added_messages().into_iter().filter(|m| wanted(m, label_id) && seen.insert(m.id.clone())).cloned(),
            );
            match page.next_page_token.filter(|t| !t.trim().is_empty()) {
                Some(token) => page_token = Some(token),
                None => break page.history_id,
            }
        };
        let complete = self.handle_all(ledger, label_id, refs, report).await?;
        self.store_cursor(ledger, complete, &latest).await
    }

    /// Full sync: every message matching the query, then the cursor at the history id read
    /// before the listing.
    async fn full_sync(&self, ledger: &Ledger, label_id: &str, report: &mut ScanReport) -> Result<(), SourceError> {
        let profile = self.client.get_profile().await?;
        let mut page_token: Option<String> = None;
        let mut refs = Vec::new();
        let mut seen = HashSet::new();
        loop {
            let page = self.client.list_messages(&self.settings.client.query, page_token.as_deref()).await?;
            refs.extend(page.messages.into_iter().filter(|m| seen.insert(m.id.clone())));
            match page.next_page_token.filter(|t| !t.trim().is_empty()) {
                Some(token) => page_token = Some(token),
                None => break,
            }
        }
        // Gmail lists newest first; within a priority the oldest should go first.
        refs.reverse();
        let complete = self.handle_all(ledger, label_id, refs, report).await?;
        info!(history_id = %profile.history_id, published = report.published, "Gmail full sync done.");
        self.store_cursor(ledger, complete, &profile.history_id).await
    }

    /// Handles the listed messages a page at a time. The whole listing is read before any
    /// message is labelled: labelling takes messages out of a query like `is:unread`, and
    /// Gmail's later pages would then skip some.
    async fn handle_all(
        &self,
        ledger: &Ledger,
        label_id: &str,
        refs: Vec<MessageRef>,
        report: &mut ScanReport,
    ) -> Result<bool, SourceError> {
        let mut complete = true;
        let chunk = usize::try_from(self.settings.page_size.clamp(1, 500)).unwrap_or(100);
        for batch in refs.chunks(chunk) {
            complete &= self.handle(ledger, label_id, batch.to_vec(), report).await?;
        }
        Ok(complete)
    }

    async fn store_cursor(&self, ledger: &Ledger, complete: bool, history_id: &str) -> Result<(), SourceError> {
        if !complete {
            // A message another poller holds is not ours to skip past: the next pass reads
            // from the same place and finds it published or free.
            info!(history_id, "Some messages are claimed by another poller; the Gmail cursor stays.");
            return Ok(());
        }
        let cursor = Cursor { position: history_id.to_owned(), validity: None };
        if cursor::advance(ledger.pool(), &self.cursor_key, &cursor).await? {
            debug!(history_id, "Gmail cursor moved.");
        }
        Ok(())
    }

    /// Claims, fetches, publishes and labels a page of messages. Returns whether every message
    /// was taken care of (none left to another poller).
    async fn handle(
        &self,
        ledger: &Ledger,
        label_id: &str,
        refs: Vec<MessageRef>,
        report: &mut ScanReport,
    ) -> Result<bool, SourceError> {
        let mut complete = true;
        let mut ready = Vec::new();
        // (message id, whether it may lose UNREAD)
        let mut to_label: Vec<(String, bool)> = Vec::new();
        for message in refs {
            match ledger.claim(&message.id).await? {
                Claim::Busy => {
                    complete = false;
                    report.skipped += 1;
                }
                // Not ours to handle: no label, still unread; the cursor may move past it.
                Claim::OutOfSample => {}
                // A crash or failure came between publish and label: label it now.
                Claim::AlreadyPublished => to_label.push((message.id, true)),
                Claim::Unparseable => to_label.push((message.id, false)),
                Claim::Publish(message_id) => {
                    let raw = match self.client.get_raw(&message.id).await {
                        Ok(raw) => raw,
                        Err(GmailError::NotFound { .. }) => {
                            debug!(mailbox_id = %message.id, "Message deleted since it was listed.");
                            ledger.forget(&message.id, &message_id).await?;
                            continue;
                        }
                        Err(e) => {
                            ledger.release(&message.id, &message_id).await?;
                            ledger.release_all(&ready).await?;
                            return Err(e.into());
                        }
                    };
                    let fetched = Fetched {
                        mailbox_id: raw.id,
                        raw: raw.raw,
                        thread_id: Some(raw.thread_id).filter(|t| !t.trim().is_empty()),
                        labels: raw.label_ids,
                    };
                    let mailbox_id = fetched.mailbox_id.clone();
                    match ledger.prepare(fetched, message_id).await {
                        Ok(Prepared::Ready(prepared)) => ready.push(*prepared),
                        Ok(Prepared::Unparseable) => {
                            report.unparseable += 1;
                            to_label.push((mailbox_id, false));
                        }
                        // Labelled as its published copy was.
                        Ok(Prepared::Duplicate { .. }) => to_label.push((mailbox_id, true)),
                        Ok(Prepared::Released) => {
                            complete = false;
                            report.skipped += 1;
                        }
                        Err(e) => {
                            ledger.release_all(&ready).await?;
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        let published = ledger.publish(ready).await?;
        report.published += published.mailbox_ids.len();
        to_label.extend(published.mailbox_ids.into_iter().map(|id| (id, true)));
        // Label what was published even when the batch failed part way: the labels are what
        // a person sees in Gmail.
        let labelled = self.label(label_id, &to_label, ledger.settings().mark_read.at_publish()).await;
        if let Some(e) = published.error {
            return Err(e.into());
        }
        labelled?;
        Ok(complete)
    }

    /// Puts the processed label on each message (and removes `UNREAD` where allowed, when
    /// `mark_read` is on).
    async fn label(&self, label_id: &str, messages: &[(String, bool)], mark_read: bool) -> Result<(), SourceError> {
        for (id, may_lose_unread) in messages {
            let remove: &[&str] =
                if *may_lose_unread && mark_read && self.settings.remove_unread { &["UNREAD"] } else { &[] };
            match self.client.modify_labels(id, &[label_id], remove).await {
                Ok(_) => {}
                Err(GmailError::NotFound { .. }) => debug!(mailbox_id = %id, "Message deleted before it was labelled."),
                Err(e) => {
                    warn!(mailbox_id = %id, error = %e, "Could not label a handled message; it is labelled next pass.");
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }
}

/// Whether a message from the history is one to take: not already labelled by us, and not
/// one of the kinds in [`IGNORED_LABELS`]. Gmail omits labels in some listings; such messages
/// are taken (the ledger keeps them from being published twice).
fn wanted(message: &MessageRef, processed_label_id: &str) -> bool {
    !message.label_ids.iter().any(|l| l == processed_label_id || IGNORED_LABELS.contains(&l.as_str()))
}

impl Source for GmailSource {
    fn kind(&self) -> &'static str {
        "gmail"
    }

    async fn sync_once(&mut self, ledger: &Ledger) -> Result<ScanReport, SourceError> {
        let result = self.sync(ledger).await;
        if let Err(SourceError::Gmail(GmailError::Permanent { .. })) = &result {
            // Someone may have deleted or renamed the label (Gmail then refuses its id): look it
            // up again next pass rather than failing on a stale id forever.
            self.processed_label_id = None;
        }
        result
    }

    /// The messages under `SENT`, newest first, until `sent_scan_limit` or a page with nothing new.
    async fn sent_mail(
        &mut self,
        ledger: &Ledger,
    ) -> Result<Vec<mailroom_db::person_replies::SentMessage>, SourceError> {
        let limit = ledger.settings().sent_scan_limit;
        let (mut sent, mut seen, mut page_token) = (Vec::new(), 0, None);
        loop {
            let page = self.client.list_messages("in:sent", page_token.as_deref()).await?;
            seen += page.messages.len();
            let ids: Vec<String> = page.messages.iter().map(|m| format!("gmail-sent:{}", m.id)).collect();
            let unknown = crate::person::unknown(ledger, ids).await?;
            for message in page.messages.iter().filter(|m| unknown.contains(&format!("gmail-sent:{}", m.id))) {
                match self.client.get_raw(&message.id).await {
                    Ok(raw) => sent.push(crate::person::sent_message(
                        format!("gmail-sent:{}", raw.id),
                        &raw.raw,
                        Some(raw.thread_id).filter(|t| !t.is_empty()),
                    )),
                    Err(GmailError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            page_token = page.next_page_token;
            if unknown.is_empty() || seen >= limit || page_token.is_none() {
                return Ok(sent);
            }
        }
    }

    async fn apply_outcomes(&mut self, ledger: &Ledger, changes: &[Change]) -> Result<Vec<String>, SourceError> {
        let result = self.apply(ledger, changes).await;
        if let Err(SourceError::Gmail(GmailError::Permanent { .. })) = &result {
            // As for the processed label: an outcome label may have been deleted or renamed.
            self.outcome_label_ids.clear();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let settings = GmailSourceSettings::new(
            "client.apps.googleusercontent.com",
            SecretString::from("GOCSPX-client-secret"),
            SecretString::from("1//refresh-token"),
        );
        let shown = format!("{settings:?}");
        assert!(shown.contains("client.apps.googleusercontent.com"), "{shown}");
        assert!(!shown.contains("GOCSPX-client-secret") && !shown.contains("1//refresh-token"), "{shown}");
        let source = GmailSource::new("support@example.com", &settings).expect("valid settings");
        let shown = format!("{source:?}");
        assert!(!shown.contains("GOCSPX-client-secret") && !shown.contains("1//refresh-token"), "{shown}");
    }

    #[test]
    fn missing_credentials_are_named() {
        let settings = GmailSourceSettings::new("id", SecretString::from("secret"), SecretString::from(" "));
        let error = GmailSource::new("support@example.com", &settings).expect_err("no refresh token");
        assert!(error.to_string().contains("mailbox.gmail.refresh_token"), "{error}");
        assert!(error.needs_operator());
    }

    #[test]
    fn own_and_labelled_messages_are_not_taken() {
        let message = |labels: &[&str]| MessageRef {
            id: "18c".into(),
            thread_id: "18c".into(),
            label_ids: labels.iter().map(|l| (*l).to_owned()).collect(),
        };
        assert!(wanted(&message(&["INBOX", "UNREAD", "IMPORTANT"]), "Label_7"));
        assert!(wanted(&message(&[]), "Label_7"));
        assert!(!wanted(&message(&["INBOX", "Label_7"]), "Label_7"));
        assert!(!wanted(&message(&["INBOX", "SENT"]), "Label_7"));
        assert!(!wanted(&message(&["SPAM"]), "Label_7"));
    }
}
