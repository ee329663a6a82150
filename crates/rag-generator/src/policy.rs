//! Each mailbox's reply policy: its sign-off, the categories that always go to a person, what
//! to do without a relevant passage, and the language replies are written in. The deployment's
//! `[rag]` gives the defaults; a mailbox of the registry (`mailroom mailbox …`) may set its own
//! in its `rag` table, read again every `registry.refresh_secs`.

use std::collections::HashMap;
use std::sync::RwLock;

use pipeline_core::Settings;
use sqlx::PgPool;
use tracing::warn;

use crate::{NoContext, RagSettings};

/// One mailbox's reply policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Sign-off.
    pub signature: String,
    /// Classifier categories whose emails always become drafts for a person.
    pub human_categories: Vec<String>,
    /// Behaviour without relevant passages.
    pub no_context: NoContext,
    /// `same` (the language of the customer's email) or the language to write in.
    pub reply_language: String,
}

impl Policy {
    /// The policy `[rag]` sets.
    pub fn from_settings(rag: &RagSettings) -> Self {
        Self {
            signature: rag.signature.clone(),
            human_categories: rag.human_categories.clone(),
            no_context: rag.no_context,
            reply_language: rag.reply_language.clone(),
        }
    }

    /// The words the offline answer writes itself, for an email with this subject and body.
    pub fn wording(&self, subject: &str, body: &str) -> &'static crate::extractive::Wording {
        let own = mail_mime::quoting::own_text(body, 2_000);
        crate::extractive::wording::for_reply(&self.reply_language, &format!("{subject}\n{own}"))
    }

    /// The instruction appended to the generation prompt.
    pub fn language_instruction(&self) -> String {
        match self.reply_language.trim() {
            "" | "same" => "Write in the language of the customer's email.".to_owned(),
            language => format!("Write in {language}, whatever the language of the customer's email."),
        }
    }
}

/// The policies of every mailbox, by address; the default for any other.
#[derive(Debug)]
pub struct Policies {
    default: Policy,
    by_mailbox: RwLock<HashMap<String, Policy>>,
}

impl Policies {
    /// Only the default.
    pub fn new(default: Policy) -> Self {
        Self { default, by_mailbox: RwLock::new(HashMap::new()) }
    }

    /// The policy of `agent_email`'s mailbox.
    pub fn for_mailbox(&self, agent_email: &str) -> Policy {
        let agent = pipeline_core::messages::agent_address(agent_email);
        let map = self.by_mailbox.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&agent).cloned().unwrap_or_else(|| self.default.clone())
    }
}

impl mailroom_db::mailboxes::ReadsRegistry for Policies {
    type Error = sqlx::Error;
    const WHAT: &'static str = "reply policies";

    /// Reads the registry's mailboxes' policies (their `rag` tables over `settings`). A mailbox
    /// whose settings cannot be built keeps the default, with a warning.
    async fn read(&self, settings: &Settings, pool: &PgPool) -> Result<(), sqlx::Error> {
        let mut next = HashMap::new();
        for (row, rag) in mailroom_db::mailboxes::policies::<RagSettings>(pool, settings, "rag").await? {
            match rag {
                Ok(rag) => {
                    next.insert(row.address, Policy::from_settings(&rag));
                }
                Err(e) => {
                    warn!(mailbox = %row.address, error = %e, "Cannot read the mailbox's settings; it gets the default reply policy.")
                }
            }
        }
        *self.by_mailbox.write().unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        Ok(())
    }
}
