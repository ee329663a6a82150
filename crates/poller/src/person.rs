//! A person's reply takes the thread: the poller reads the mailbox's sent mail each pass (a
//! Maildir's or an IMAP mailbox's Sent folder, Gmail's `SENT`)
//! ([`Source::sent_mail`]) and records the messages a person sent — those the sender did not
//! send itself — in `person_replies`, before it publishes new mail, so that the sender drafts
//! (rather than sends) the reply to a customer's later mail in that thread
//! (`mailbox.after_person_reply`).

use mail_mime::ParsedEmail;
use mailroom_db::person_replies::SentMessage;
use pipeline_core::settings::DraftOrSend;

use crate::{Ledger, Source, SourceError};

/// Records the person replies of the mailbox's sent mail not recorded yet; how many there were.
/// Nothing is read when the policy does not need it.
pub async fn record<S: Source>(source: &mut S, ledger: &Ledger) -> Result<usize, SourceError> {
    if ledger.settings().after_person_reply != DraftOrSend::Draft {
        return Ok(0);
    }
    let sent = source.sent_mail(ledger).await?;
    if sent.is_empty() {
        return Ok(0);
    }
    Ok(mailroom_db::person_replies::record(ledger.pool(), &ledger.settings().agent_email, &sent).await?)
}

/// What is kept of a sent message: its ids and what it answers.
pub fn sent_message(source_id: String, raw: &[u8], thread_id: Option<String>) -> SentMessage {
    let parsed: Option<ParsedEmail> = mail_mime::parse(raw).ok();
    let (message_id, refs) = match parsed {
        Some(p) => (p.message_id, p.in_reply_to.into_iter().chain(p.references).collect()),
        None => (None, Vec::new()),
    };
    SentMessage { source_id, message_id, refs, thread_id }
}

/// Of `ids`, those `person_replies` does not hold yet.
pub async fn unknown(ledger: &Ledger, ids: Vec<String>) -> Result<Vec<String>, SourceError> {
    if ids.is_empty() {
        return Ok(ids);
    }
    let known = mailroom_db::person_replies::known(ledger.pool(), &ledger.settings().agent_email, &ids).await?;
    Ok(ids.into_iter().filter(|id| !known.contains(id)).collect())
}
