//! Delivery through the Gmail API: `users.messages.send` with the customer's `threadId` so the
//! reply lands in the conversation, or `users.drafts.create` for a human to review. After a
//! crash, Gmail's search (`rfc822msgid:`) says whether our reply already exists.
//!
//! Scopes: sending needs `gmail.send`, `gmail.compose` or broader; drafts (escalated and
//! throttled replies in send mode, every reply in draft mode) need `gmail.compose` or broader;
//! the search needs read access (`gmail.readonly` or broader). Without read access a takeover
//! cannot tell whether the reply went out: it is then [`Lookup::Unknown`], as with SMTP, and
//! becomes an in-doubt draft instead of a possible second send.

use gmail::{GmailClient, GmailError, GmailSettings};
use tracing::warn;

use super::{DraftCopy, Kind, Lookup, OutgoingReply, Sink, SinkError};

/// The Gmail API sink.
#[derive(Debug)]
pub struct GmailSink {
    client: GmailClient,
}

impl GmailSink {
    /// A sink for the mailbox in `settings`.
    pub fn new(settings: &GmailSettings) -> Result<Self, SinkError> {
        Ok(Self { client: GmailClient::new(settings)? })
    }
}

impl Sink for GmailSink {
    fn name(&self) -> &'static str {
        "gmail"
    }

    async fn deliver(&self, reply: &OutgoingReply, kind: Kind) -> Result<String, SinkError> {
        let thread = reply.thread_id.as_deref();
        Ok(match kind {
            Kind::Send => self.client.send(&reply.raw, thread).await?.id,
            Kind::Draft => self.client.create_draft(&reply.raw, thread).await?.id,
        })
    }

    async fn find(&self, reply: &OutgoingReply, kind: Kind) -> Result<Lookup, SinkError> {
        let scope = match kind {
            Kind::Send => "in:sent",
            Kind::Draft => "in:drafts",
        };
        let query = format!("rfc822msgid:<{}> {scope}", reply.message_id);
        match self.client.list_messages(&query, None).await {
            Ok(page) => Ok(page.messages.into_iter().next().map_or(Lookup::Absent, |m| Lookup::Delivered(m.id))),
            Err(e @ GmailError::InsufficientScope { .. }) => {
                warn!(message_id = %reply.message_id, error = %e,
                    "Cannot search Gmail for the reply of a sender that stopped mid-delivery (no read scope); \
                     treating it as in doubt. Grant gmail.readonly or gmail.modify to avoid in-doubt drafts.");
                Ok(Lookup::Unknown)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// `users.drafts.get` by the draft id saved at delivery: a person's edit keeps the draft id
    /// and changes its message; sending or discarding it deletes the draft (404).
    async fn draft(&self, reply_message_id: &str, provider_id: Option<&str>) -> Result<DraftCopy, SinkError> {
        let Some(id) = provider_id else {
            return Ok(DraftCopy::Unknown);
        };
        match self.client.get_draft(id).await {
            Ok(draft) => Ok(DraftCopy::Present(draft.message.raw)),
            Err(GmailError::NotFound { .. }) => Ok(DraftCopy::Gone),
            Err(e @ GmailError::InsufficientScope { .. }) => {
                warn!(message_id = %reply_message_id, error = %e,
                    "Cannot read back the draft left for a person (no scope to read drafts); not knowing whether \
                     a person took the thread up. Grant gmail.compose or gmail.modify.");
                Ok(DraftCopy::Unknown)
            }
            Err(e) => Err(e.into()),
        }
    }
}
