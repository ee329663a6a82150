//! The full-text side of the relevance rule: whether an agent's documents speak about a
//! question at all — some passage holds at least a given share of its terms (each weighted by
//! its rarity, [`LexicalSearch::search`]). The generator answers only such questions; the
//! classifier takes a second look at mail its offline model called "not support" when they are.

use super::LexicalSearch;
use crate::{SearchHit, StoreError};

/// Most sentences of one email searched on their own for support.
const MAX_SENTENCES: usize = 6;

/// The sentences of a question worth searching on their own: at least three words long (or six
/// characters of a script written without spaces).
fn sentences(question: &str) -> Vec<&str> {
    question
        .split(['.', '?', '!', '\n', '。', '？', '！'])
        .map(str::trim)
        .filter(|s| s.split_whitespace().count() >= 3 || s.chars().filter(|c| !c.is_ascii()).count() >= 6)
        .take(MAX_SENTENCES)
        .collect()
}

impl LexicalSearch {
    /// The `candidates` best chunks of `agent_email` for `question` ([`LexicalSearch::search`]),
    /// with the sentences' support: when no chunk holds `min_score` of the whole question, each
    /// sentence gets a chance, since an email mixing languages ("Bonjour, je voudrais… Can I
    /// change my shipping address?") or wrapping its question in pleasantries dilutes the share
    /// of its terms any passage contains. The first sentence whose best chunk reaches `min_score`
    /// raises that chunk's score in the list (or adds it), so [`supports`] sees it.
    pub async fn search_with_support(
        &self,
        agent_email: &str,
        question: &str,
        candidates: usize,
        min_score: f32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let mut hits = self.search(agent_email, question, candidates).await?;
        if supports(&hits, min_score) {
            return Ok(hits);
        }
        let all = sentences(question);
        if all.len() < 2 {
            return Ok(hits);
        }
        for sentence in all {
            let found = self.search(agent_email, sentence, candidates).await?;
            let Some(best) = found.into_iter().max_by(|a, b| a.score.total_cmp(&b.score)) else { continue };
            if best.score < min_score {
                continue;
            }
            match hits.iter_mut().find(|h| h.document_id == best.document_id && h.chunk_index == best.chunk_index) {
                Some(hit) => hit.score = hit.score.max(best.score),
                None => hits.push(best),
            }
            break;
        }
        Ok(hits)
    }
}

/// Whether some hit of a full-text search holds at least `min_score` of the question's terms.
pub fn supports(hits: &[SearchHit], min_score: f32) -> bool {
    hits.iter().any(|h| h.score >= min_score)
}

#[cfg(test)]
mod tests {
    use super::sentences;

    #[test]
    fn sentences_worth_a_search_of_their_own() {
        assert_eq!(
            sentences("Bonjour,\nje voudrais changer mon adresse. Can I change my address? Merci"),
            ["je voudrais changer mon adresse", "Can I change my address"]
        );
        assert_eq!(sentences("怎样修改 Debian 系统的时区？谢谢"), ["怎样修改 Debian 系统的时区"]);
    }
}
