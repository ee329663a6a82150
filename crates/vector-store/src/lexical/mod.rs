//! Lexical retrieval: PostgreSQL full-text search over the `chunks` catalogue, beside the
//! vector search, whatever the vector store (Pinecone deployments keep the chunk rows too, with
//! an empty embedding, see [`crate::catalog`]).
//!
//! Writing a chunk picks a text-search configuration suited to its language
//! ([`search_config`]: by script, then by common words for Latin-script languages; `simple`
//! when nothing fits) and stores `to_tsvector(config, index_text(text))`. Chinese and Japanese
//! (and Thai, Lao, Khmer, Burmese) write no spaces between words, so PostgreSQL's parser would
//! see a whole sentence as one word; [`index_text`] rewrites every run of those characters as
//! overlapping character bigrams, which both the chunks and the questions go through.
//!
//! A search parses the question once per configuration the agent's chunks use, with
//! `websearch_to_tsquery` over the question's words joined by `or` (a customer's question has
//! many words no single passage contains all of), and scores each matching chunk by the share
//! of the question's terms it contains, each term weighted by its rarity among the agent's
//! chunks (BM25's inverse document frequency). How many of the agent's chunks contain each term
//! is kept by PostgreSQL itself (`chunk_term_counts`, maintained by triggers on `chunks` in the
//! writing transaction), so a search reads only its own terms' counts, and no searching process
//! holds or recounts any agent's statistics. Terms the agent's documents never use still
//! count in the total, so the score is also a measure of how much of the question the
//! documents speak about at all: an off-topic question scores low everywhere. Every query is
//! scoped to one agent.

use sqlx::{PgConnection, PgPool, Row};

use crate::postgres::db_error;
use crate::{ChunkRecord, SearchHit, StoreError};

mod analysis;
mod support;

use analysis::question_configs;
pub use analysis::{ANALYSIS_VERSION, index_text, is_bigram_script, query_words, search_config, strip_boilerplate};
pub use support::supports;

/// The SQL that turns the configuration name `u.l` of a row being written into the `regconfig`
/// `cfg.c`, falling back to `simple` when the database lacks that configuration.
macro_rules! config_of_l {
    () => {
        "CROSS JOIN LATERAL (SELECT COALESCE((SELECT k.oid::regconfig FROM pg_ts_config k \
         WHERE k.cfgname = u.l LIMIT 1), 'simple'::regconfig) AS c) cfg"
    };
}

/// Rows per INSERT when storing a document's chunks.
const INSERT_BATCH: usize = 1000;

/// Writes chunk rows with their full-text columns; `with_embeddings` false stores empty
/// embeddings (the catalogue of a deployment whose vectors live elsewhere).
pub(crate) async fn insert_chunks(
    conn: &mut PgConnection,
    agent_email: &str,
    document_id: &str,
    chunks: &[ChunkRecord],
    with_embeddings: bool,
) -> Result<(), sqlx::Error> {
    for batch in chunks.chunks(INSERT_BATCH) {
        let indexes: Vec<i32> = batch.iter().map(|c| i32::try_from(c.chunk_index).unwrap_or(i32::MAX)).collect();
        let sources: Vec<&str> = batch.iter().map(|c| c.source.as_str()).collect();
        let pages: Vec<Option<i32>> =
            batch.iter().map(|c| c.page.map(|p| i32::try_from(p).unwrap_or(i32::MAX))).collect();
        let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
        let embeddings: Vec<Vec<u8>> = batch
            .iter()
            .map(|c| if with_embeddings { crate::postgres::encode_embedding(&c.embedding) } else { Vec::new() })
            .collect();
        let configs: Vec<&str> = batch.iter().map(|c| search_config(&c.text)).collect();
        let indexed: Vec<String> = batch.iter().map(|c| index_text(&c.text)).collect();
        sqlx::query(concat!(
            "INSERT INTO chunks (agent_email, document_id, chunk_index, source, page, text, embedding, \
             search_config, tsv, text_analysis) \
             SELECT $1, $2, u.i, u.s, u.p, u.t, u.e, cfg.c, to_tsvector(cfg.c, u.x), $10 \
             FROM UNNEST($3::int[], $4::text[], $5::int[], $6::text[], $7::bytea[], $8::text[], $9::text[]) \
                  AS u(i, s, p, t, e, l, x) ",
            config_of_l!()
        ))
        .bind(agent_email)
        .bind(document_id)
        .bind(&indexes)
        .bind(&sources)
        .bind(&pages)
        .bind(&texts)
        .bind(&embeddings)
        .bind(&configs)
        .bind(&indexed)
        .bind(ANALYSIS_VERSION)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Rows per transaction when [`reindex_outdated`] analyses chunks again.
const REINDEX_BATCH: i64 = 500;

/// Analyses again the chunks written by an older [`ANALYSIS_VERSION`] (`chunks.text_analysis`
/// below it), so that they meet questions analysed by the running code; returns how many.
///
/// Batches of [`REINDEX_BATCH`] rows, each in its own transaction with its rows locked
/// (`SKIP LOCKED`: several ingesters starting at once share the work), so searches and writes
/// go on meanwhile and an interrupted run resumes where it stopped. The `chunks` triggers keep
/// the term counts right as each batch is written.
pub async fn reindex_outdated(pool: &PgPool) -> Result<u64, StoreError> {
    let mut done = 0u64;
    loop {
        let mut tx = pool.begin().await.map_err(db_error)?;
        let rows = sqlx::query(
            "SELECT document_id, chunk_index, text FROM chunks \
             WHERE text_analysis < $1 ORDER BY agent_email LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(ANALYSIS_VERSION)
        .bind(REINDEX_BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        if rows.is_empty() {
            tx.commit().await.map_err(db_error)?;
            return Ok(done);
        }
        let (mut ids, mut indexes, mut configs, mut indexed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for row in &rows {
            let text: &str = row.try_get("text").map_err(db_error)?;
            ids.push(row.try_get::<String, _>("document_id").map_err(db_error)?);
            indexes.push(row.try_get::<i32, _>("chunk_index").map_err(db_error)?);
            configs.push(search_config(text));
            indexed.push(index_text(text));
        }
        sqlx::query(concat!(
            "UPDATE chunks ch SET search_config = cfg.c, tsv = to_tsvector(cfg.c, u.x), text_analysis = $5 \
             FROM UNNEST($1::text[], $2::int[], $3::text[], $4::text[]) AS u(d, i, l, x) ",
            config_of_l!(),
            " WHERE ch.document_id = u.d AND ch.chunk_index = u.i"
        ))
        .bind(&ids)
        .bind(&indexes)
        .bind(&configs)
        .bind(&indexed)
        .bind(ANALYSIS_VERSION)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        done += rows.len() as u64;
    }
}

/// Full-text search over an agent's chunks in PostgreSQL.
#[derive(Debug, Clone)]
pub struct LexicalSearch {
    pool: PgPool,
}

/// One of the question's terms under one configuration, with its weights.
#[derive(Debug, Clone, PartialEq)]
struct Term {
    config: String,
    lexeme: String,
    /// Inverse document frequency, for the BM25 ranking.
    idf: f32,
    /// Share of the question's total weight, for the coverage score.
    weight: f32,
    /// Chunks containing it.
    df: i64,
}

/// BM25's term-frequency saturation: the second occurrence of a term adds less than the first.
/// Chunks all have about the same length (`ingester.chunk_size`), so there is no length
/// normalisation (BM25's b = 0).
const BM25_K1: f32 = 1.2;

/// BM25's inverse document frequency of a term found in `df` of `n` chunks.
fn idf(n: i64, df: i64) -> f64 {
    let (n, df) = (n as f64, df as f64);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// Weight, relative to a word's, with which a character bigram no chunk contains counts in the
/// total: about half the bigrams of a Chinese or Japanese question straddle a word boundary and
/// occur nowhere, whatever the question, yet the others — 退款 "refund" — say as much as an
/// absent word does.
const ABSENT_BIGRAM_WEIGHT: f64 = 0.5;

/// Weight with which a word the documents never use counts in the total (fully: half as much let
/// 3 of 10 off-topic questions of the evaluation set through instead of 1). Emails mixing
/// languages are handled sentence by sentence by the retriever instead.
const ABSENT_WORD_WEIGHT: f64 = 1.0;

/// Normalises the weights per configuration so a chunk containing every term scores 1. A term
/// the agent's documents never use still counts in the total (a question about refunds to a
/// documentation set that never mentions them is off-topic), with [`ABSENT_WORD_WEIGHT`]; an
/// absent character bigram counts [`ABSENT_BIGRAM_WEIGHT`].
fn weigh(rows: Vec<(String, i64, String, i64)>) -> Vec<Term> {
    let share = |lexeme: &str, df: i64| match df {
        0 if lexeme.chars().next().is_some_and(is_bigram_script) => ABSENT_BIGRAM_WEIGHT,
        0 => ABSENT_WORD_WEIGHT,
        _ => 1.0,
    };
    let mut totals: std::collections::HashMap<String, f64> = std::collections::HashMap::new();
    for (config, n, lexeme, df) in &rows {
        *totals.entry(config.clone()).or_default() += share(lexeme, *df) * idf(*n, *df);
    }
    rows.into_iter()
        // Terms no chunk contains cannot match; they only weigh in the totals.
        .filter(|(_, _, _, df)| *df > 0)
        .map(|(config, n, lexeme, df)| {
            let total = totals.get(&config).copied().unwrap_or(1.0).max(f64::MIN_POSITIVE);
            let idf = idf(n, df);
            Term { idf: idf as f32, weight: (idf / total) as f32, config, lexeme, df }
        })
        .collect()
}

/// Candidates are found by the question's rarer terms only; the others still count in every
/// candidate's coverage and BM25. An `or` of all of them matched most of an agent's chunks for a
/// question with "change", "time" and "system" in it, and each was scored (half the agent's
/// chunks at 20,000 chunks a question). Together the probing terms occur in at most this many
/// chunks, however many the agent has, shared among the question's configurations in proportion
/// to their chunks (and at least two terms of each probe, however common): scoring costs about
/// 0.05 ms a candidate at a million chunks, so the budget bounds the search's time
/// (docs/PERFORMANCE.md). On the evaluation set, probing terms occurring in 250 or 500 chunks of
/// 3,855 found every question the `or` of all terms found; 100 lost five (docs/RETRIEVAL.md).
/// There each question's script has one main configuration (English 2,552 chunks beside a
/// dozen detected as other Latin-script languages; `simple`; `russian`), so the shares changed
/// no figure.
const PROBE_BUDGET: i64 = 500;

/// Which terms find the candidates (the rest only score them): per configuration the rarest
/// first, while together they occur in at most `budget(config)` chunks, and at least two.
fn probe_terms(terms: &[Term], budget: impl Fn(&str) -> i64) -> Vec<bool> {
    let mut order: Vec<usize> = (0..terms.len()).collect();
    order.sort_by(|&a, &b| terms[a].config.cmp(&terms[b].config).then(terms[a].df.cmp(&terms[b].df)));
    let mut probe = vec![false; terms.len()];
    let (mut config, mut taken, mut total): (Option<&str>, usize, i64) = (None, 0, 0);
    for i in order {
        if config != Some(terms[i].config.as_str()) {
            (config, taken, total) = (Some(terms[i].config.as_str()), 0, 0);
        }
        if taken < 2 || total + terms[i].df <= budget(&terms[i].config) {
            probe[i] = true;
            taken += 1;
            total += terms[i].df;
        }
    }
    probe
}

/// A passage sharing a single term with a question of several is no support for it, however
/// rare the term: 收到 ("received") alone does not make a refund question about Debian.
const MIN_MATCHED_TERMS: i64 = 2;

impl LexicalSearch {
    /// Searches the chunks of the migrated database of `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The `top_k` chunks of `agent_email` that best match `question`, ranked by BM25; each
    /// hit's score is the (rarity-weighted) share of the question's terms it contains, between 0
    /// and 1 — so the best-ranked hit need not have the highest score.
    pub async fn search(&self, agent_email: &str, question: &str, top_k: usize) -> Result<Vec<SearchHit>, StoreError> {
        // PostgreSQL text cannot hold NUL, and a customer's email may (the vector search never
        // sends the question to the database; this search must not fail where it did not).
        let question = &strip_boilerplate(&question.replace('\0', " "));
        let words = query_words(question);
        if words.is_empty() || top_k == 0 {
            return Ok(Vec::new());
        }
        // The question's terms under each configuration the agent's chunks use, with how many
        // of those chunks there are and how many contain each term (kept by PostgreSQL, see the
        // module comment), each count looked up by its full key: as a join, a planner without
        // statistics yet (a new database) read every count of the configuration for each term
        // instead (684,000 rows, 200 ms, for a Chinese question). Lexemes are matched as quoted
        // tsquery literals; a lexeme with a backslash would need E'' quoting that tsquery input
        // does not read.
        let configs = question_configs(question);
        let rows = sqlx::query(
            "SELECT k.search_config AS config, k.chunks AS n, l.lexeme, \
                    COALESCE((SELECT t.chunks FROM chunk_term_counts t WHERE t.agent_email = k.agent_email \
                                AND t.search_config = k.search_config AND t.lexeme = l.lexeme), 0) AS df \
             FROM chunk_config_counts k \
             CROSS JOIN LATERAL unnest(tsvector_to_array(to_tsvector(k.search_config::regconfig, $2))) AS l(lexeme) \
             WHERE k.agent_email = $1 AND k.search_config = ANY($3) AND k.chunks > 0 \
               AND strpos(l.lexeme, E'\\\\') = 0",
        )
        .bind(agent_email)
        .bind(index_text(question))
        .bind(&configs)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        // Per configuration: the agent's chunks under it, and the question's terms.
        let mut per_config: std::collections::HashMap<String, (i64, usize)> = std::collections::HashMap::new();
        let mut parsed = Vec::with_capacity(rows.len());
        for row in rows {
            let config: String = row.try_get("config").map_err(db_error)?;
            let n: i64 = row.try_get("n").map_err(db_error)?;
            let lexeme: String = row.try_get("lexeme").map_err(db_error)?;
            let df: i64 = row.try_get("df").map_err(db_error)?;
            per_config.entry(config.clone()).or_insert((n, 0)).1 += 1;
            parsed.push((config, n, lexeme, df));
        }
        let terms = weigh(parsed);
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let configs: Vec<&str> = terms.iter().map(|t| t.config.as_str()).collect();
        let lexemes: Vec<&str> = terms.iter().map(|t| t.lexeme.as_str()).collect();
        let weights: Vec<f32> = terms.iter().map(|t| t.weight).collect();
        let idfs: Vec<f32> = terms.iter().map(|t| t.idf).collect();
        // The budget is shared among the configurations in proportion to their chunks: a
        // configuration few of the agent's chunks use (the odd passage detected as French in an
        // English manual) would otherwise have every term probe and all its chunks scored.
        let all_chunks: i64 = per_config.values().map(|(n, _)| n).sum::<i64>().max(1);
        let probes =
            probe_terms(&terms, |config| PROBE_BUDGET * per_config.get(config).map_or(0, |(n, _)| *n) / all_chunks);
        // The websearch query finds the candidates one configuration at a time; they are ranked
        // by BM25 over the candidate's term frequencies (the positions the tsvector keeps), and
        // scored by the coverage weights of the terms they contain. Cost matters here (every
        // email runs this): the tsquery is built once per configuration in a materialised CTE
        // (inline, PostgreSQL parsed it again for every chunk it tested: half the query's
        // time), and each candidate's tsvector is first cut down to the question's lexemes in C,
        // instead of unnesting all of its ~150 lexemes: `setweight` marks the question's lexemes
        // (chunks are indexed with the default weight D only) and `ts_filter` keeps the marked
        // ones; each one's weights are then read from the configuration's arrays by position.
        // Deleting every other lexeme with `ts_delete` and joining the terms gave the same rows
        // but built an array and a hash table per candidate: 17–20 µs a candidate against 8
        // (docs/PERFORMANCE.md).
        // Equal scores (the same passage in two documents: the Japanese Debian Reference keeps
        // English chapters) are ordered by file name and position, not by the random document
        // id, so the same documents give the same results whenever they were ingested.
        let rows = sqlx::query(
            "WITH w AS (SELECT * FROM UNNEST($2::text[], $3::text[], $4::float4[], $5::float4[], $9::bool[]) \
                          AS w(config, lexeme, weight, idf, probe)), \
                  c AS MATERIALIZED (SELECT config, config::regconfig AS cfg, array_agg(lexeme) AS lexemes, \
                                            array_agg(weight) AS weights, array_agg(idf) AS idfs, \
                                            websearch_to_tsquery(config::regconfig, $6) AS q, \
                                            string_agg(quote_literal(lexeme), ' | ') FILTER (WHERE probe)::tsquery AS p \
                                     FROM w GROUP BY config) \
             SELECT m.document_id, m.chunk_index, m.source, m.page, m.text, s.coverage, s.matched, s.bm25 \
             FROM c CROSS JOIN LATERAL ( \
                 SELECT ch.document_id, ch.chunk_index, ch.source, ch.page, ch.text, ch.tsv FROM chunks ch \
                 WHERE ch.agent_email = $1 AND ch.search_config::oid = c.cfg::oid \
                   AND ch.tsv @@ c.p AND ch.tsv @@ c.q) m \
             CROSS JOIN LATERAL ( \
                 SELECT sum(c.weights[i])::float4 AS coverage, count(*) AS matched, \
                        sum(c.idfs[i] * cardinality(u.positions) * ($7 + 1) / (cardinality(u.positions) + $7))::float4 \
                          AS bm25 \
                 FROM unnest(ts_filter(setweight(m.tsv, 'A', c.lexemes), '{a}')) u \
                 CROSS JOIN LATERAL array_position(c.lexemes, u.lexeme) AS i) s \
             ORDER BY s.bm25 DESC NULLS LAST, m.source, m.chunk_index, m.document_id \
             LIMIT $8",
        )
        .bind(agent_email)
        .bind(&configs)
        .bind(&lexemes)
        .bind(&weights)
        .bind(&idfs)
        .bind(&words)
        .bind(BM25_K1)
        .bind(i64::try_from(top_k).unwrap_or(i64::MAX))
        .bind(&probes)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        // Questions of one term (per configuration) need only that one.
        let config_terms = per_config.values().map(|(_, terms)| *terms).max().unwrap_or(1);
        let needed = MIN_MATCHED_TERMS.min(i64::try_from(config_terms).unwrap_or(i64::MAX));
        let mut hits = Vec::with_capacity(rows.len());
        for row in rows {
            let matched: i64 = row.try_get("matched").map_err(db_error)?;
            let coverage: f32 = row.try_get::<Option<f32>, _>("coverage").map_err(db_error)?.unwrap_or(0.0);
            let coverage = if matched >= needed { coverage } else { 0.0 };
            let page: Option<i32> = row.try_get("page").map_err(db_error)?;
            let chunk_index: i32 = row.try_get("chunk_index").map_err(db_error)?;
            hits.push(SearchHit {
                document_id: row.try_get("document_id").map_err(db_error)?,
                chunk_index: u32::try_from(chunk_index).unwrap_or_default(),
                source: row.try_get("source").map_err(db_error)?,
                page: page.and_then(|p| u32::try_from(p).ok()),
                text: row.try_get("text").map_err(db_error)?,
                score: coverage,
            });
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rarest_terms_find_the_candidates() {
        let term = |config: &str, lexeme: &str, df: i64| Term {
            config: config.into(),
            lexeme: lexeme.into(),
            idf: 1.0,
            weight: 0.1,
            df,
        };
        let terms = [
            term("english", "time", 900),
            term("english", "zone", 40),
            term("english", "chang", 700),
            term("english", "tzdata", 3),
            term("english", "system", 2000),
            term("simple", "時区", 5),
        ];
        // 3 + 40 + 700 fit in 1,000; 900 would not; the lone `simple` term still probes.
        assert_eq!(probe_terms(&terms, |_| 1000), [false, true, true, true, false, true]);
        // At least two terms per configuration, however common.
        assert_eq!(probe_terms(&terms, |_| 0), [false, true, false, true, false, true]);
    }

    #[test]
    fn weights_favour_rare_terms_and_absent_terms_dilute_them() {
        let rows = vec![
            ("english".to_owned(), 100, "debian".to_owned(), 90),
            ("english".to_owned(), 100, "fstab".to_owned(), 2),
            ("english".to_owned(), 100, "refund".to_owned(), 0),
        ];
        let terms = weigh(rows);
        assert_eq!(terms.len(), 2, "a term no chunk contains is not searched for");
        let (common, rare) = (terms[0].weight, terms[1].weight);
        assert!(rare > 5.0 * common, "rare {rare} vs common {common}");
        assert!(common + rare < 0.7, "the absent term keeps its share of the total: {}", common + rare);
    }
}
