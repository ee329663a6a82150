//! What the sender trusts: nothing in the message. Any holder of a broker credential can
//! publish to `emails.to_send` (directly, or through the retry exchange), so before a reply is
//! sent or drafted its every delivery-relevant field is checked against what the pipeline
//! itself recorded in PostgreSQL ([`verify`]):
//!
//! 1. the reply is From a mailbox this sender serves ([`Served`]);
//! 2. the email it answers was received by that mailbox through the poller (a row of the
//!    poller's ledger, `mailbox_messages`, that the poller published or is publishing — the
//!    pipeline can be faster than the poller's record of the broker's confirm);
//! 3. the generator answered it, and the stored reply (`responses`) is the one about to go out:
//!    same recipient, subject, text, threading headers and escalation;
//! 4. the recipient is the address the poller read as that email's sender.
//!
//! Anything else is a [`Forgery`]: dead-lettered as `ForgedReply`, counted, and nothing is
//! sent. An attacker who can write to the broker but not to the database can therefore only
//! re-send the pipeline's own replies to their own recipients, which the send log makes a
//! no-op.
//!
//! A reply that passes is [`Verified`], with what the poller recorded about its recipient:
//! whether the receiving server authenticated them (`poller::authres`), which the sender's
//! `mailbox.unauthenticated` policy acts on.

use mailroom_db::pipeline::{Provenance, SenderAuth};
use pipeline_core::messages::EmailToSend;
use sqlx::PgPool;

/// The mailboxes a sender sends as. Today one: `[mailbox].agent_email` (stored lower-case, as
/// every message's `agent_email` is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    agents: Vec<String>,
}

impl Served {
    /// A sender for the one mailbox `agent_email`.
    pub fn single(agent_email: &str) -> Self {
        Self { agents: vec![pipeline_core::messages::agent_address(agent_email)] }
    }

    /// A sender for each of `agent_emails`.
    pub fn many<'a>(agent_emails: impl IntoIterator<Item = &'a str>) -> Self {
        Self { agents: agent_emails.into_iter().map(pipeline_core::messages::agent_address).collect() }
    }

    /// Whether replies may go out From `agent_email`.
    pub fn serves(&self, agent_email: &str) -> bool {
        self.agents.iter().any(|a| a.eq_ignore_ascii_case(agent_email))
    }
}

/// Why a reply is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Forgery {
    /// From a mailbox this sender does not serve.
    #[error("the reply would go out From {agent}, a mailbox this sender does not serve")]
    UnknownMailbox {
        /// The message's `agent_email`.
        agent: String,
    },
    /// No email with this id was received through the poller.
    #[error("no email {email_id} was received by {agent} through the poller")]
    NotReceived {
        /// The mailbox.
        agent: String,
        /// The message's `email_id`.
        email_id: String,
    },
    /// The email is known but the generator never answered it.
    #[error("email {email_id} of {agent} has no reply from the generator")]
    NotAnswered {
        /// The mailbox.
        agent: String,
        /// The message's `email_id`.
        email_id: String,
    },
    /// The message differs from the reply the generator stored.
    #[error("the reply to email {email_id} differs from the one the generator stored ({field})")]
    Altered {
        /// The message's `email_id`.
        email_id: String,
        /// The first field that differs.
        field: &'static str,
    },
    /// The recipient is not the sender of the email being answered.
    #[error("the reply goes to {to}, but email {email_id} came from {sender}")]
    WrongRecipient {
        /// The message's `email_id`.
        email_id: String,
        /// The message's `to`.
        to: String,
        /// What the poller read as the sender (`unknown` for mail taken in before it was recorded).
        sender: String,
    },
}

impl Forgery {
    /// The metric label: `unknown_mailbox`, `not_received`, `not_answered`, `altered`,
    /// `wrong_recipient`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownMailbox { .. } => "unknown_mailbox",
            Self::NotReceived { .. } => "not_received",
            Self::NotAnswered { .. } => "not_answered",
            Self::Altered { .. } => "altered",
            Self::WrongRecipient { .. } => "wrong_recipient",
        }
    }
}

/// The first delivery-relevant field in which `msg` differs from `stored`, the reply the
/// generator recorded. The ids of the message itself (`message_id`, `timestamp`) and the
/// passages shown to a reviewer (`context_used`) do not reach the recipient.
pub fn first_difference(msg: &EmailToSend, stored: &EmailToSend) -> Option<&'static str> {
    let fields: [(&'static str, bool); 10] = [
        ("agent_email", msg.agent_email.eq_ignore_ascii_case(&stored.agent_email)),
        ("email_id", msg.email_id == stored.email_id),
        ("to", msg.to == stored.to),
        ("subject", msg.subject == stored.subject && msg.original_subject == stored.original_subject),
        ("generated_response", msg.generated_response == stored.generated_response),
        ("in_reply_to", msg.in_reply_to == stored.in_reply_to),
        ("references", msg.references == stored.references),
        ("thread_id", msg.thread_id == stored.thread_id),
        ("escalate", msg.escalate == stored.escalate && msg.escalation_reason == stored.escalation_reason),
        ("reply_to", msg.reply_to == stored.reply_to),
    ];
    fields.into_iter().find(|(_, same)| !same).map(|(name, _)| name)
}

/// What the database says about a reply that matches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Whether the email's sender (the reply's recipient) was authenticated by the receiving
    /// server; `None` for mail taken in before the poller recorded it.
    pub sender_auth: Option<SenderAuth>,
}

/// Checks `msg` against the database; see the [module docs](self).
pub async fn verify(
    pool: &PgPool,
    served: &Served,
    msg: &EmailToSend,
) -> Result<Result<Verified, Forgery>, sqlx::Error> {
    let (agent, email_id) = (&msg.agent_email, &msg.email_id);
    if !served.serves(agent) {
        return Ok(Err(Forgery::UnknownMailbox { agent: agent.clone() }));
    }
    let Some(Provenance { sender_address, sender_auth, response }) =
        mailroom_db::pipeline::provenance(pool, agent, email_id).await?
    else {
        return Ok(Err(Forgery::NotReceived { agent: agent.clone(), email_id: email_id.clone() }));
    };
    let Some(stored) = response.and_then(|value| serde_json::from_value::<EmailToSend>(value).ok()) else {
        return Ok(Err(Forgery::NotAnswered { agent: agent.clone(), email_id: email_id.clone() }));
    };
    if let Some(field) = first_difference(msg, &stored) {
        return Ok(Err(Forgery::Altered { email_id: email_id.clone(), field }));
    }
    if !sender_address.as_deref().is_some_and(|sender| same_address(sender, &msg.to)) {
        return Ok(Err(Forgery::WrongRecipient {
            email_id: email_id.clone(),
            to: msg.to.clone(),
            sender: sender_address.unwrap_or_else(|| "unknown".into()),
        }));
    }
    Ok(Ok(Verified { sender_auth }))
}

/// Whether two bare addresses are one mailbox: the domain in any case; the local part as
/// written (RFC 5321 leaves its case to the receiving host), as the parser keeps it.
fn same_address(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        // A bare local part (mail from inside the receiving host) is only itself.
        (None, None) => !a.is_empty() && a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_compare_by_domain_in_any_case_and_local_part_as_written() {
        assert!(same_address("Ana@Customer.Example", "Ana@customer.example"));
        assert!(!same_address("ana@customer.example", "Ana@customer.example"));
        assert!(!same_address("ana@customer.example", "ana@customer.example.attacker.example"));
        assert!(!same_address("", ""), "nothing is not an address");
        assert!(same_address("localpart", "localpart") && !same_address("localpart", "localpart@x.example"));
    }

    #[test]
    fn the_sender_serves_its_mailbox_in_any_case_and_nothing_else() {
        let served = Served::single("Support@Northwind.example");
        assert!(served.serves("support@northwind.example"));
        assert!(!served.serves("billing@northwind.example"));
    }
}
