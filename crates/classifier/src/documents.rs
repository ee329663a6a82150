//! A second look, in the agent's own documents, at mail the offline model calls "not support".
//!
//! The model learnt a product company's support mail. A support team whose documents are about
//! something else gets questions it never saw: asked 20 questions about the Debian manuals in
//! English ("How do I print three collated copies of a document straight from the command
//! line?"), it took 7 for "not support" (P(support) 0.00–0.47), and they were left unanswered.
//! Whether the mailbox's documents speak about an email is evidence the model cannot have, and
//! retrieval already measures it: the relevance rule the generator answers by
//! ([`vector_store::lexical::supports`], `rag.min_lexical_score` of the question's terms in one
//! passage). When it holds, the verdict becomes support at [`crate::PERSON_FIRST_CONFIDENCE`]
//! — a draft for a person, never an automatic reply — with the reason and the passage.
//!
//! Only the offline model's verdicts get this look: the loop-safety rules' are certain, and an
//! LLM provider reads the email as a person would. `classifier.check_documents = false` turns
//! it off, for the deployment or for one registered mailbox ([`crate::thresholds`]).

use serde::Deserialize;
use sqlx::PgPool;
use vector_store::lexical::supports;
use vector_store::{LexicalSearch, SearchHit, StoreError};

/// What the check reads of `[rag]`: the generator's own relevance rule, so the classifier never
/// calls "covered" what the generator would not answer from.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct RelevanceSettings {
    /// Least weighted share of the question's terms one passage must hold.
    pub min_lexical_score: f32,
    /// Full-text candidates searched per question.
    pub candidates: usize,
}

/// Full-text search over the agent's chunks with the generator's relevance rule.
#[derive(Debug, Clone)]
pub struct DocumentCheck {
    lexical: LexicalSearch,
    relevance: RelevanceSettings,
}

impl DocumentCheck {
    /// Over the chunk catalogue of `pool` (every deployment keeps one, whatever its vector store).
    pub fn new(pool: PgPool, relevance: RelevanceSettings) -> Self {
        Self { lexical: LexicalSearch::new(pool), relevance }
    }

    /// The agent's passage that speaks most about the email's question (subject and request,
    /// [`mail_mime::quoting::question_text`], as the generator searches), when one holds at least
    /// `rag.min_lexical_score` of it; `None` when the documents do not speak about it.
    pub async fn covering_passage(
        &self,
        agent_email: &str,
        subject: &str,
        body: &str,
    ) -> Result<Option<SearchHit>, StoreError> {
        let question = mail_mime::quoting::question_text(subject, body);
        let min = self.relevance.min_lexical_score;
        let hits = self.lexical.search_with_support(agent_email, &question, self.relevance.candidates, min).await?;
        if !supports(&hits, min) {
            return Ok(None);
        }
        Ok(hits.into_iter().max_by(|a, b| a.score.total_cmp(&b.score)))
    }
}

/// Whether the sender asks something: a question mark in the subject or their own text.
pub fn asks(email: &pipeline_core::messages::EmailToClassify) -> bool {
    let asks = |text: &str| text.contains(['?', '？', '¿']);
    asks(&email.subject) || asks(&mail_mime::quoting::own_text(&email.body, QUESTION_SAMPLE))
}

/// Characters of the sender's own text [`asks`] reads.
const QUESTION_SAMPLE: usize = 8_000;

/// The reason recorded with a verdict the documents turned: the model's probability and the
/// passage, so a person sees why the draft exists.
pub fn reason(p_support: f64, passage: &SearchHit) -> String {
    let page = passage.page.map(|p| format!(", p. {p}")).unwrap_or_default();
    format!(
        "the offline model took it for not support (P(support) {p_support:.2}), but the mailbox's documents \
         speak about it ({}{page}, {:.0} % of its terms): a person decides",
        passage.source,
        f64::from(passage.score) * 100.0
    )
}
