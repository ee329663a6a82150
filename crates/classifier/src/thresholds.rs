//! The classifier's policy for each mailbox: its auto-answer threshold — the confidence below
//! which a support verdict is passed on flagged `needs_review`, so its reply becomes a draft for
//! a person — and whether "not support" verdicts get a second look in its documents
//! ([`crate::documents`]).
//!
//! The threshold, in order: a registered mailbox's own (`classifier.auto_answer_min_confidence`
//! in its registry entry, `mailroom mailbox add|update --set`, read again every
//! `registry.refresh_secs`), then its entry in the deployment's
//! `classifier.auto_answer_min_confidence_by_mailbox` (for deployments without the registry),
//! then `classifier.auto_answer_min_confidence`. The second look: a registered mailbox's own
//! `classifier.check_documents`, then the deployment's.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use pipeline_core::Settings;
use sqlx::PgPool;
use tracing::warn;

/// `[classifier]` settings.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifierSettings {
    /// Support verdicts below this confidence become drafts for a person.
    pub auto_answer_min_confidence: f64,
    /// Per-mailbox thresholds (`agent_email` → threshold) that replace the default one.
    #[serde(default)]
    pub auto_answer_min_confidence_by_mailbox: BTreeMap<String, f64>,
    /// Whether mail the offline model calls "not support" is looked up in the agent's documents
    /// and, when they speak about it, drafted for a person ([`crate::documents`]).
    pub check_documents: bool,
}

/// `value` if it is a share (0..=1), else why not, naming `what`.
fn share(what: &str, value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) { Ok(value) } else { Err(format!("{what} = {value} is not between 0 and 1")) }
}

impl ClassifierSettings {
    /// The thresholds, checked: each within 0..=1.
    pub fn thresholds(&self) -> Result<Thresholds, String> {
        let default = share("classifier.auto_answer_min_confidence", self.auto_answer_min_confidence)?;
        let per_mailbox = self
            .auto_answer_min_confidence_by_mailbox
            .iter()
            .map(|(mailbox, v)| {
                share(&format!("classifier.auto_answer_min_confidence_by_mailbox.\"{mailbox}\""), *v)
                    .map(|v| (mailbox.trim().to_lowercase(), v))
            })
            .collect::<Result<_, _>>()?;
        Ok(Thresholds { default, per_mailbox, check_documents: self.check_documents, registered: Arc::default() })
    }
}

/// The auto-answer threshold and the second look of each mailbox. Clones share what was read
/// from the registry.
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    /// For mailboxes without their own.
    pub default: f64,
    /// Lower-case `agent_email` → threshold, from the deployment's settings.
    pub per_mailbox: HashMap<String, f64>,
    /// The deployment's `classifier.check_documents`, for mailboxes without their own (set by
    /// [`ClassifierSettings::thresholds`] or [`Thresholds::checking_documents`]).
    check_documents: bool,
    /// What registered mailboxes set themselves, as last read from the registry.
    registered: Arc<RwLock<HashMap<String, Registered>>>,
}

/// What a registry entry sets of `[classifier]`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Registered {
    threshold: Option<f64>,
    check_documents: Option<bool>,
}

impl Thresholds {
    /// One threshold for every mailbox, and no second look in documents.
    pub fn uniform(default: f64) -> Self {
        Self { default, ..Self::default() }
    }

    /// With the deployment's second look in documents on or off.
    pub fn checking_documents(mut self, on: bool) -> Self {
        self.check_documents = on;
        self
    }

    /// The threshold for mail received by `agent_email`.
    pub fn for_mailbox(&self, agent_email: &str) -> f64 {
        let agent = agent_email.trim().to_lowercase();
        self.registered(&agent).threshold.or_else(|| self.per_mailbox.get(&agent).copied()).unwrap_or(self.default)
    }

    /// Whether mail received by `agent_email` that the offline model calls "not support" gets
    /// a second look in that mailbox's documents.
    pub fn checks_documents(&self, agent_email: &str) -> bool {
        self.registered(&agent_email.trim().to_lowercase()).check_documents.unwrap_or(self.check_documents)
    }

    fn registered(&self, agent: &str) -> Registered {
        self.registered.read().unwrap_or_else(PoisonError::into_inner).get(agent).copied().unwrap_or_default()
    }
}

impl mailroom_db::mailboxes::ReadsRegistry for Thresholds {
    type Error = sqlx::Error;
    const WHAT: &'static str = "classifier policies (auto-answer thresholds, second looks in documents)";

    /// Reads the thresholds and second looks the registry's enabled mailboxes set (their
    /// `classifier` table over `settings`, secrets left out: the classifier never holds a
    /// mailbox's credentials). An entry that cannot be read keeps the deployment's, with a
    /// warning.
    async fn read(&self, settings: &Settings, pool: &PgPool) -> Result<(), sqlx::Error> {
        let mut next = HashMap::new();
        for (row, own) in mailroom_db::mailboxes::policies::<ClassifierSettings>(pool, settings, "classifier").await? {
            let sets = |key: &str| row.settings.pointer(&format!("/classifier/{key}")).is_some();
            let (sets_threshold, sets_check) = (sets("auto_answer_min_confidence"), sets("check_documents"));
            if !sets_threshold && !sets_check {
                continue;
            }
            let read = own.and_then(|c| {
                let threshold = share("classifier.auto_answer_min_confidence", c.auto_answer_min_confidence)?;
                Ok(Registered {
                    threshold: sets_threshold.then_some(threshold),
                    check_documents: sets_check.then_some(c.check_documents),
                })
            });
            match read {
                Ok(registered) => {
                    next.insert(row.address.trim().to_lowercase(), registered);
                }
                Err(e) => warn!(mailbox = %row.address, error = %e,
                    "Cannot read the mailbox's classifier policy; it gets the deployment's."),
            }
        }
        *self.registered.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(default: f64, per_mailbox: &[(&str, f64)]) -> ClassifierSettings {
        ClassifierSettings {
            check_documents: true,
            auto_answer_min_confidence: default,
            auto_answer_min_confidence_by_mailbox: per_mailbox.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    #[test]
    fn a_mailbox_threshold_replaces_the_default_for_that_mailbox_only() {
        let t = settings(0.8, &[("Billing@Example.com", 0.95)]).thresholds().expect("valid thresholds");
        assert_eq!(t.for_mailbox("billing@example.com"), 0.95);
        assert_eq!(t.for_mailbox(" BILLING@example.COM"), 0.95);
        assert_eq!(t.for_mailbox("support@example.com"), 0.8);
    }

    #[test]
    fn thresholds_outside_zero_to_one_are_refused_by_name() {
        let err = settings(0.8, &[("billing@example.com", 1.5)]).thresholds().expect_err("out of range");
        assert!(err.contains("billing@example.com") && err.contains("1.5"), "{err}");
        assert!(settings(-0.1, &[]).thresholds().expect_err("out of range").contains("auto_answer_min_confidence"));
    }
}
