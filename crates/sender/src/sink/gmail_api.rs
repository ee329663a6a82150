//! Delivery through the Gmail API: `users.messages.send` with the customer's `threadId` so the
//! reply lands in the conversation, or `users.drafts.create` for a human to review. After a
//! crash, Gmail's search (`rfc822msgid:`) says whether our reply already exists.

use gmail::{GmailClient, GmailSettings};

use super::{Kind, Lookup, OutgoingReply, Sink, SinkError};

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
        let page = self.client.list_messages(&query, None).await?;
        Ok(page.messages.into_iter().next().map_or(Lookup::Absent, |m| Lookup::Delivered(m.id)))
    }
}
