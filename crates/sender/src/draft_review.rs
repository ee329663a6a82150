//! A person's reply takes the thread, drafts included: a reply the sender left as a draft and a
//! person then took up — edited, sent or discarded — makes the thread theirs, as a reply they
//! wrote themselves does (`mailbox.after_person_reply`, docs/DELIVERY.md).
//!
//! The poller sees what a person sent (the mailbox's sent mail, `poller::person`); a draft being
//! edited, or discarded, leaves nothing there. So when a customer writes again in a thread
//! where a draft was left, the sender reads that draft back from its sink before it answers:
//! - still there with the content it was left with ([`content digest`](mail_mime::ParsedEmail::content_digest)):
//!   nobody has taken it up yet, and it does not stop an automatic answer;
//! - there with another content: a person edited it;
//! - gone: a person sent it (the poller will also see it in the sent mail) or discarded it —
//!   either way a person has dealt with that email.
//!
//! A draft found taken up is recorded as a person's reply (`person_replies`, source id
//! `draft:<Message-ID>`), so it is read back once, and every later reply in the thread is a
//! draft too. Only drafts in the thread are read, only when a reply is about to be decided.

use mailroom_db::QueryFailed;
use mailroom_db::person_replies::{self, OpenDraft};
use pipeline_core::HandlerError;
use pipeline_core::messages::EmailToSend;
use sqlx::PgPool;
use tracing::{info, warn};

use crate::sink::{DraftCopy, Sink};

/// What a person did with a draft left for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// Its content is not what was left.
    Edited,
    /// It is gone from the drafts: sent or discarded.
    Gone,
}

impl Review {
    fn as_str(self) -> &'static str {
        match self {
            Self::Edited => "edited",
            Self::Gone => "sent or discarded",
        }
    }
}

/// What became of `draft`, as `copy` shows it; `None` while untouched or unreadable.
pub fn review(draft: &OpenDraft, copy: &DraftCopy) -> Option<Review> {
    match copy {
        DraftCopy::Present(raw) => {
            let digest = mail_mime::parse(raw).ok().map(|p| p.content_digest_hex());
            (digest.as_deref() != Some(draft.draft_digest.as_str())).then_some(Review::Edited)
        }
        DraftCopy::Gone => Some(Review::Gone),
        DraftCopy::Unknown => None,
    }
}

/// Why `msg`'s reply must be a draft because a person took up a draft left earlier in its
/// thread; `None` when no such draft exists. A sink that cannot be read for a while makes the
/// reply wait (transient): answering automatically could talk over a person.
pub async fn reviewed_draft<S: Sink>(
    pool: &PgPool,
    sink: &S,
    msg: &EmailToSend,
) -> Result<Option<String>, HandlerError> {
    // An email that starts its conversation (no References, and no conversation id but its own
    // Message-ID, which is what the poller gives mail without a provider thread) has no earlier
    // email in its thread, hence no draft a person could have taken up: its ids only find
    // itself. The lookup is skipped; PostgreSQL plans it anew for every email, and the planning
    // costs 20 times the execution (0.8 ms: `mailroom bench`, docs/PERFORMANCE.md).
    if msg.references.is_empty() && msg.thread_id.as_deref().is_none_or(|t| Some(t) == msg.in_reply_to.as_deref()) {
        return Ok(None);
    }
    let refs: Vec<String> = msg.in_reply_to.iter().chain(&msg.references).cloned().collect();
    let drafts = person_replies::open_drafts_in_thread(pool, &msg.agent_email, &refs, msg.thread_id.as_deref())
        .await
        .map_err(QueryFailed)?;
    for draft in drafts {
        let copy = match sink.draft(&draft.reply_message_id, draft.provider_message_id.as_deref()).await {
            Ok(copy) => copy,
            Err(e) if e.is_transient() => return Err(e.into()),
            Err(e) => {
                warn!(email_id = %draft.email_id, error = %e,
                    "Could not read back the draft left for a person; not counting it as taken up.");
                continue;
            }
        };
        let Some(review) = review(&draft, &copy) else { continue };
        person_replies::record_reviewed_draft(pool, &msg.agent_email, &draft).await.map_err(QueryFailed)?;
        info!(email_id = %msg.email_id, draft_for = %draft.email_id, review = review.as_str(),
            "A person took up the draft left earlier in this thread; the thread is theirs.");
        return Ok(Some(format!(
            "a person of the mailbox {} the draft left for an earlier email in this thread (mailbox.after_person_reply)",
            review.as_str()
        )));
    }
    Ok(None)
}
