//! Hybrid retrieval: the vector search of the configured store and PostgreSQL full-text search
//! over the chunk catalogue ([`vector_store::lexical`]), both scoped to the email's agent, fused
//! with reciprocal rank fusion, behind one relevance rule.
//!
//! Reciprocal rank fusion scores a passage `Σ 1 / (RRF_K + rank)` over the lists it appears in:
//! it needs no common scale between a cosine similarity and a term-overlap score, and a passage
//! both searches rank well beats one that only one of them likes.
//!
//! Relevance: the offline hashing embedder scores unrelated passages around 0.2–0.3, above any
//! `min_similarity` that keeps real answers, so similarity alone cannot tell an off-topic
//! question. The rule is therefore: the question is answerable from the documents when some
//! passage contains at least `rag.min_lexical_score` of the question's terms (each weighted by
//! its rarity in the agent's documents; terms the documents never use count against it), or
//! when some passage's similarity reaches `rag.vector_alone_similarity` — a level only a
//! real paraphrase reaches, which lets a semantic embedder answer questions worded unlike the
//! documents. Otherwise nothing is returned and the email is escalated. `rag.min_similarity`
//! keeps its meaning: the least cosine similarity for a passage to be a vector candidate.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use sqlx::PgPool;
use vector_store::lexical::supports;
use vector_store::{LexicalSearch, SearchHit, StoreError, VectorStore};

/// The rank offset of reciprocal rank fusion (60, as in Cormack et al. and most search engines):
/// large enough that the first few ranks of either list weigh about the same.
pub const RRF_K: f32 = 60.0;

/// Which searches to run: hybrid in production; the single ones for the evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Vector search only, with `min_similarity` as the only rule (the former behaviour).
    Vector,
    /// Full-text search only, passages needing `min_lexical_score`.
    Lexical,
    /// Both, fused, with the hybrid relevance rule.
    Hybrid,
}

impl Mode {
    /// Every mode, in report order.
    pub const ALL: [Mode; 3] = [Mode::Vector, Mode::Lexical, Mode::Hybrid];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Vector => "vector",
            Mode::Lexical => "lexical",
            Mode::Hybrid => "hybrid",
        }
    }
}

/// The retrieval part of `[rag]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct RetrievalSettings {
    /// Passages returned per question.
    pub top_k: usize,
    /// Least cosine similarity of a vector candidate.
    pub min_similarity: f32,
    /// Least weighted share of the question's terms some passage must contain for the question
    /// to count as answerable.
    pub min_lexical_score: f32,
    /// Similarity at which a passage counts as relevant without lexical support.
    pub vector_alone_similarity: f32,
    /// Candidates taken from each search before fusion.
    pub candidates: usize,
    /// Weight of the vector list in the fusion (the full-text list weighs 1).
    pub vector_weight: f32,
}

/// Runs the searches and the fusion for one agent's question.
#[derive(Clone)]
pub struct Retriever {
    store: Arc<dyn VectorStore>,
    lexical: LexicalSearch,
    settings: RetrievalSettings,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Retriever {
    /// Vector search in `store`, full-text search in the `chunks` catalogue of `pool`.
    pub fn new(store: Arc<dyn VectorStore>, pool: PgPool, settings: RetrievalSettings) -> Self {
        Self { store, lexical: LexicalSearch::new(pool), settings }
    }

    /// The settings in use.
    pub fn settings(&self) -> &RetrievalSettings {
        &self.settings
    }

    /// The agent's passages for `question` (whose embedding is `vector`), best first; empty when
    /// nothing is relevant.
    pub async fn retrieve(
        &self,
        agent_email: &str,
        question: &str,
        vector: &[f32],
        mode: Mode,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let s = &self.settings;
        let pool = s.candidates.max(s.top_k);
        match mode {
            Mode::Vector => self.store.search(agent_email, vector, s.top_k, s.min_similarity).await,
            Mode::Lexical => {
                let hits = self.lexical.search(agent_email, question, pool).await?;
                // The same relevance rule as hybrid, on the lexical side alone.
                if !supports(&hits, s.min_lexical_score) {
                    return Ok(Vec::new());
                }
                Ok(hits.into_iter().take(s.top_k).collect())
            }
            Mode::Hybrid => {
                let (semantic, lexical) = tokio::try_join!(
                    self.store.search(agent_email, vector, pool, s.min_similarity),
                    self.lexical.search_with_support(agent_email, question, pool, s.min_lexical_score),
                )?;
                Ok(hybrid(semantic, lexical, s))
            }
        }
    }
}

/// The hybrid relevance rule, then the fusion (see the module documentation).
pub fn hybrid(semantic: Vec<SearchHit>, lexical: Vec<SearchHit>, settings: &RetrievalSettings) -> Vec<SearchHit> {
    let supported = supports(&lexical, settings.min_lexical_score)
        || semantic.iter().any(|h| h.score >= settings.vector_alone_similarity);
    if !supported {
        return Vec::new();
    }
    // A passage only the vector search found takes part when it is strongly similar; below
    // that, vector similarity re-ranks the full-text candidates rather than adding its own
    // (with the hashing embedder those are mostly passages sharing common words).
    let in_lexical: std::collections::HashSet<(&str, u32)> =
        lexical.iter().map(|h| (h.document_id.as_str(), h.chunk_index)).collect();
    let semantic: Vec<SearchHit> = semantic
        .into_iter()
        .filter(|h| {
            h.score >= settings.vector_alone_similarity || in_lexical.contains(&(h.document_id.as_str(), h.chunk_index))
        })
        .collect();
    fuse(&[(semantic, settings.vector_weight), (lexical, 1.0)], settings.top_k)
}

/// Weighted reciprocal rank fusion of ranked lists (each with its weight), merged by
/// `(document_id, chunk_index)`; the result keeps the first list's hit (and so its score) for a
/// passage several lists found. Ties keep the order of the first list that has the passage.
pub fn fuse(lists: &[(Vec<SearchHit>, f32)], top_k: usize) -> Vec<SearchHit> {
    let mut fused: Vec<(f32, SearchHit)> = Vec::new();
    let mut position: HashMap<(String, u32), usize> = HashMap::new();
    for (list, weight) in lists {
        for (rank, hit) in list.iter().enumerate() {
            let gain = weight / (RRF_K + rank as f32 + 1.0);
            match position.get(&(hit.document_id.clone(), hit.chunk_index)) {
                Some(&i) => fused[i].0 += gain,
                None => {
                    position.insert((hit.document_id.clone(), hit.chunk_index), fused.len());
                    fused.push((gain, hit.clone()));
                }
            }
        }
    }
    // A stable sort keeps the insertion order among equal scores.
    fused.sort_by(|a, b| b.0.total_cmp(&a.0));
    fused.into_iter().take(top_k).map(|(_, h)| h).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(doc: &str, chunk: u32, score: f32) -> SearchHit {
        SearchHit {
            document_id: doc.into(),
            chunk_index: chunk,
            source: format!("{doc}.pdf"),
            page: Some(1),
            text: String::new(),
            score,
        }
    }

    fn ids(hits: &[SearchHit]) -> Vec<(String, u32)> {
        hits.iter().map(|h| (h.document_id.clone(), h.chunk_index)).collect()
    }

    const SETTINGS: RetrievalSettings = RetrievalSettings {
        top_k: 3,
        min_similarity: 0.1,
        min_lexical_score: 0.3,
        vector_alone_similarity: 0.6,
        candidates: 10,
        vector_weight: 1.0,
    };

    #[test]
    fn a_passage_both_searches_find_wins() {
        let semantic = vec![hit("a", 0, 0.5), hit("b", 1, 0.4), hit("c", 2, 0.3)];
        let lexical = vec![hit("c", 2, 0.9), hit("d", 0, 0.8), hit("b", 1, 0.7)];
        let fused = fuse(&[(semantic, 1.0), (lexical, 1.0)], 3);
        assert_eq!(ids(&fused), [("c".into(), 2), ("b".into(), 1), ("a".into(), 0)]);
        // The vector hit is kept for a passage both found.
        assert_eq!(fused[0].score, 0.3);
    }

    #[test]
    fn fusion_merges_by_document_and_chunk_and_respects_top_k() {
        let fused = fuse(
            &[(vec![hit("a", 0, 0.5), hit("a", 1, 0.4)], 1.0), (vec![hit("b", 0, 0.5), hit("a", 1, 0.2)], 1.0)],
            2,
        );
        assert_eq!(ids(&fused), [("a".into(), 1), ("a".into(), 0)]);
        assert!(fuse(&[(Vec::new(), 1.0), (Vec::new(), 1.0)], 4).is_empty());
        // A lighter list only breaks the other's ties.
        let weighted = fuse(&[(vec![hit("a", 0, 0.5), hit("b", 0, 0.4)], 0.2), (vec![hit("b", 0, 0.9)], 1.0)], 2);
        assert_eq!(ids(&weighted), [("b".into(), 0), ("a".into(), 0)]);
    }

    #[test]
    fn without_lexical_support_or_a_strong_similarity_nothing_is_relevant() {
        // Typical off-topic question on the hashing embedder: similar-ish passages, few terms.
        let semantic = vec![hit("a", 0, 0.25), hit("b", 0, 0.22)];
        let lexical = vec![hit("a", 0, 0.12)];
        assert!(hybrid(semantic.clone(), lexical.clone(), &SETTINGS).is_empty());
        // Enough of the question's terms in one passage: answerable.
        let answered = hybrid(semantic.clone(), vec![hit("c", 0, 0.45), hit("b", 0, 0.3)], &SETTINGS);
        // b is found by both; a, weakly similar and without the question's terms, is left out.
        assert_eq!(ids(&answered), [("b".into(), 0), ("c".into(), 0)]);
        // A paraphrase a semantic embedder recognises needs no shared terms.
        assert_eq!(hybrid(vec![hit("e", 0, 0.7)], Vec::new(), &SETTINGS).len(), 1);
    }
}
