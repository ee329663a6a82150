//! The offline verdict: the trained [`crate::model`] decides whether an email is a support
//! inquiry and how sure it is; [`crate::topics`] names the topic of a support inquiry, because
//! the generator's `rag.human_categories` (e.g. `billing`) is keyed by it.

use embedders::script::{Script, dominant_script};
use pipeline_core::messages::EmailToClassify;

use crate::eval::{LabelledEmail, Outcome, Report};
use crate::model::{EmailText, Model, ModelError};
use crate::{rules, topics};

/// The offline classifier's verdict on one email.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalVerdict {
    /// Whether the email is a customer-support inquiry that should get an automatic reply.
    pub is_support_inquiry: bool,
    /// A [`topics::TOPICS`] name for support, `other` otherwise.
    pub category: String,
    /// The calibrated probability of the verdict given (0.5–1.0).
    pub confidence: f64,
    /// Why, when the model did not decide (mail in a script it was not trained on).
    pub reason: Option<String>,
}

impl LocalVerdict {
    /// The probability of support the verdict states.
    pub fn p_support(&self) -> f64 {
        if self.is_support_inquiry { self.confidence } else { 1.0 - self.confidence }
    }
}

/// The trained model plus the topic keywords.
pub struct OfflineClassifier {
    model: Model,
}

impl std::fmt::Debug for OfflineClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineClassifier").field("model", &self.model).finish_non_exhaustive()
    }
}

impl OfflineClassifier {
    /// Over the committed weights.
    pub fn embedded() -> Result<Self, ModelError> {
        Ok(Self::with_model(Model::embedded()?))
    }

    /// Over any model (training and tests).
    pub fn with_model(model: Model) -> Self {
        Self { model }
    }

    /// The calibrated probability that the email is a support inquiry.
    pub fn p_support(&self, from: &str, subject: &str, body: &str) -> f64 {
        self.model.probability(&EmailText { from, subject, body })
    }

    /// The verdict: support when `P(support) ≥ 0.5`; the confidence is the calibrated
    /// probability of the verdict given.
    ///
    /// Mail written in a script the model was not trained on ([`untrained_script`]) is not left
    /// to it: its probabilities there are an extrapolation (P(support) 0.08–0.30 for 20 Chinese
    /// and Russian support questions, so every one would have been ignored). Such mail is a
    /// support verdict at [`crate::PERSON_FIRST_CONFIDENCE`], below any auto-answer threshold:
    /// the generator drafts a reply and a person decides.
    pub fn classify(&self, from: &str, subject: &str, body: &str) -> LocalVerdict {
        if let Some(script) = untrained_script(subject, body) {
            return LocalVerdict {
                is_support_inquiry: true,
                category: topics::topic(subject, body).to_owned(),
                confidence: crate::PERSON_FIRST_CONFIDENCE,
                reason: Some(format!(
                    "written in {} script, which the offline model was not trained on: a person decides",
                    script.name()
                )),
            };
        }
        let p = self.p_support(from, subject, body);
        let is_support_inquiry = p >= 0.5;
        let category = if is_support_inquiry { topics::topic(subject, body) } else { "other" }.to_owned();
        LocalVerdict {
            is_support_inquiry,
            category,
            confidence: if is_support_inquiry { p } else { 1.0 - p },
            reason: None,
        }
    }
}

/// The script an email is mostly written in (subject and the sender's own text) when the
/// offline model was not trained on it: it learnt Latin-script languages and Japanese
/// (docs/CLASSIFICATION.md), so Chinese, Korean, Cyrillic, Greek, Arabic, Hebrew, Devanagari,
/// Thai, Lao, Burmese and Khmer mail is beyond it. (A Latin-script language outside its nine is
/// not told apart.)
pub fn untrained_script(subject: &str, body: &str) -> Option<Script> {
    let text = format!("{subject}\n{}", mail_mime::quoting::own_text(body, UNTRAINED_SCRIPT_SAMPLE));
    dominant_script(&text).filter(|s| !matches!(s, Script::Latin | Script::Kana))
}

/// Characters of the sender's own text [`untrained_script`] reads: enough to tell a script.
const UNTRAINED_SCRIPT_SAMPLE: usize = 2000;

/// The pipeline's message for a labelled email, addressed to a test mailbox.
pub fn to_classify(email: &LabelledEmail) -> EmailToClassify {
    EmailToClassify {
        message_id: email.id.clone(),
        timestamp: Default::default(),
        email_id: email.id.clone(),
        thread_id: None,
        from: email.from.clone(),
        to: "support@eval.example".into(),
        subject: email.subject.clone(),
        body: email.body.clone(),
        headers: email.headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        labels: Vec::new(),
        agent_email: "support@eval.example".into(),
        priority: 0,
        metadata: Default::default(),
    }
}

/// Runs a labelled set through what the worker does offline (the loop-safety rules, then the
/// model) with `min_confidence` as the auto-answer threshold.
pub fn evaluate(set: &[LabelledEmail], classifier: &OfflineClassifier, min_confidence: f64) -> Report {
    let outcomes: Vec<Outcome> = set
        .iter()
        .map(|email| {
            // P(support) as the worker's verdict states it (untrained scripts included).
            let p = || classifier.classify(&email.from, &email.subject, &email.body).p_support();
            let (predicted, p_support, provider) = match rules::decide(&to_classify(email)) {
                Some(rules::Decision::Automated(_)) => (false, 0.0, "rules"),
                Some(rules::Decision::PersonFirst(_)) => {
                    let p = p();
                    (p >= 0.5, if p >= 0.5 { p.min(crate::PERSON_FIRST_CONFIDENCE) } else { p }, "local")
                }
                None => {
                    let p = p();
                    (p >= 0.5, p, "local")
                }
            };
            Outcome {
                id: email.id.clone(),
                lang: email.lang.clone(),
                kind: email.kind.clone(),
                truth: email.is_support(),
                predicted,
                p_support,
                auto_answer: predicted && p_support >= min_confidence,
                provider: provider.into(),
                reason: None,
            }
        })
        .collect();
    Report::new(&outcomes)
}
