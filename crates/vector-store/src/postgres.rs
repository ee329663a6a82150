//! The default vector store: chunks in PostgreSQL, exact cosine search in Rust.
//!
//! A search loads the agent's embeddings once into a contiguous in-memory matrix and keeps it
//! until the agent's row in `vector_index_versions` changes (every write bumps it, in the same
//! transaction), so each query costs one tiny version lookup, a linear scan of dot products
//! (vectors are unit length, so the dot product is the cosine) and one query for the texts of
//! the top hits. Exact search keeps results reproducible and needs no extension; a scan of
//! 100,000 × 384 floats is a few milliseconds.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use sqlx::{PgPool, Row};

use crate::{ChunkRecord, SearchHit, StoreError, VectorStore};

/// Indexes at least this large are scanned by several threads.
const PARALLEL_ROWS: usize = 20_000;

pub(crate) fn db_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => {
            StoreError::Transient(e.to_string())
        }
        sqlx::Error::Database(db)
            if matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01")) =>
        {
            StoreError::Transient(e.to_string())
        }
        _ => StoreError::Permanent(e.to_string()),
    }
}

/// One agent's vectors, as loaded at one version.
///
/// Besides the exact f32 vectors it keeps an 8-bit copy (one scale per vector): a search first
/// scores the 8-bit copy — a quarter of the memory traffic, which is what bounds a scan of
/// 100,000 vectors — together with a bound on each approximate score's error, then rescores
/// exactly every vector whose upper bound could still reach the top k. The result is the exact
/// top k, not an approximation.
#[derive(Debug)]
struct AgentIndex {
    version: i64,
    dimension: usize,
    /// `ids.len() × dimension` floats, row-major.
    vectors: Vec<f32>,
    /// The same vectors quantised to 8 bits (held as i16, which SSE2's multiply-add takes
    /// directly), row-major.
    codes: Vec<i16>,
    /// Per row: the quantisation scale (`max |x| / 127`).
    scales: Vec<f32>,
    /// Per row: the L1 norm of the dequantised vector, for the error bound.
    l1: Vec<f32>,
    /// `(document_id, chunk_index)` of each row.
    ids: Vec<(String, i32)>,
}

/// Quantises to i8 with one scale; returns the codes, the scale and the dequantised L1 norm.
fn quantize(v: &[f32], codes: &mut Vec<i16>) -> (f32, f32) {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
    let mut l1 = 0i32;
    for x in v {
        // In range by construction: |x| / scale <= 127.
        let q = (x / scale).round().clamp(-127.0, 127.0) as i16;
        l1 += i32::from(q).abs();
        codes.push(q);
    }
    (scale, l1 as f32 * scale)
}

fn dot_i8(a: &[i16], b: &[i16]) -> i32 {
    let mut acc = [0i32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += i32::from(x[i]) * i32::from(y[i]);
        }
    }
    acc.iter().sum::<i32>() + ra.iter().zip(rb).map(|(x, y)| i32::from(*x) * i32::from(*y)).sum::<i32>()
}

/// Encodes an embedding as little-endian f32 bytes.
pub fn encode_embedding(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes little-endian f32 bytes.
pub fn decode_embedding(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Dot product with eight independent accumulators, which the compiler turns into SIMD.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

impl AgentIndex {
    fn new(version: i64, dimension: usize, vectors: Vec<f32>, ids: Vec<(String, i32)>) -> Self {
        let mut codes = Vec::with_capacity(vectors.len());
        let (mut scales, mut l1) = (Vec::with_capacity(ids.len()), Vec::with_capacity(ids.len()));
        for v in vectors.chunks_exact(dimension) {
            let (scale, norm) = quantize(v, &mut codes);
            scales.push(scale);
            l1.push(norm);
        }
        Self { version, dimension, vectors, codes, scales, l1, ids }
    }

    /// Indices and exact scores of the best `k` rows scoring at least `min_score`, best first.
    fn top_k(&self, query: &[f32], k: usize, min_score: f32) -> Vec<(usize, f32)> {
        let rows = self.ids.len();
        if k == 0 || rows == 0 {
            return Vec::new();
        }
        let mut query_codes = Vec::with_capacity(self.dimension);
        let (query_scale, _) = quantize(query, &mut query_codes);
        let query_l1: f32 = query.iter().map(|x| x.abs()).sum();
        // |exact − approx| ≤ |Σ (v − v̂)·q| + |Σ v̂·(q − q̂)| ≤ (s_v/2)·‖q‖₁ + (s_q/2)·‖v̂‖₁,
        // padded for float rounding.
        let mut approx = vec![0.0f32; rows];
        let mut slack = vec![0.0f32; rows];
        let score_range = |first: usize, approx: &mut [f32], slack: &mut [f32]| {
            let codes = &self.codes[first * self.dimension..(first + approx.len()) * self.dimension];
            for (i, row_codes) in codes.chunks_exact(self.dimension).enumerate() {
                let row = first + i;
                approx[i] = dot_i8(&query_codes, row_codes) as f32 * self.scales[row] * query_scale;
                let e = 0.5 * self.scales[row] * query_l1 + 0.5 * query_scale * self.l1[row];
                slack[i] = e * 1.001 + 1e-6;
            }
        };
        // Large indexes are scanned on every core: a search is latency-bound, and the halves
        // are independent.
        let threads =
            if rows >= PARALLEL_ROWS { std::thread::available_parallelism().map_or(1, |n| n.get()).min(4) } else { 1 };
        let per = rows.div_ceil(threads);
        std::thread::scope(|scope| {
            for (part, (a, e)) in approx.chunks_mut(per).zip(slack.chunks_mut(per)).enumerate() {
                let score_range = &score_range;
                if part + 1 == threads || threads == 1 {
                    score_range(part * per, a, e);
                } else {
                    scope.spawn(move || score_range(part * per, a, e));
                }
            }
        });
        // The k-th best lower bound is a floor no true top-k score can be below.
        let mut lower: Vec<f32> = approx.iter().zip(&slack).map(|(a, e)| a - e).collect();
        let floor = if rows > k {
            let (_, kth, _) = lower.select_nth_unstable_by(rows - k, f32::total_cmp);
            kth.max(min_score)
        } else {
            min_score
        };
        let mut best: Vec<(usize, f32)> = (0..rows)
            .filter(|&row| approx[row] + slack[row] >= floor)
            .map(|row| (row, dot(query, &self.vectors[row * self.dimension..(row + 1) * self.dimension])))
            .filter(|&(_, score)| score >= min_score)
            .collect();
        best.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        best.truncate(k);
        best
    }
}

/// Chunks in PostgreSQL with a per-agent in-memory index.
#[derive(Debug, Clone)]
pub struct PgVectorStore {
    pool: PgPool,
    cache: Arc<Mutex<HashMap<String, Arc<AgentIndex>>>>,
}

impl PgVectorStore {
    /// A store over the migrated database of `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, cache: Arc::default() }
    }

    /// Marks the agent's chunks changed: the in-memory vector index and the lexical term
    /// statistics are rebuilt on their next use.
    pub(crate) async fn bump_version(tx: &mut sqlx::PgConnection, agent_email: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO vector_index_versions (agent_email, version) VALUES ($1, 1) \
             ON CONFLICT (agent_email) DO UPDATE SET version = vector_index_versions.version + 1",
        )
        .bind(agent_email)
        .execute(tx)
        .await
        .map(drop)
    }

    async fn replace(&self, agent_email: &str, document_id: &str, chunks: Vec<ChunkRecord>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("DELETE FROM chunks WHERE document_id = $1")
            .bind(document_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        // The rows carry the full-text columns too, so lexical retrieval sees the same chunks.
        crate::lexical::insert_chunks(&mut tx, agent_email, document_id, &chunks, true).await.map_err(db_error)?;
        Self::bump_version(&mut tx, agent_email).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    async fn delete(&self, agent_email: &str, document_id: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("DELETE FROM chunks WHERE document_id = $1 AND agent_email = $2")
            .bind(document_id)
            .bind(agent_email)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        Self::bump_version(&mut tx, agent_email).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    /// The agent's index at the current version, loading it when the cached one is stale.
    async fn index(&self, agent_email: &str) -> Result<Arc<AgentIndex>, StoreError> {
        let version: i64 = sqlx::query_scalar("SELECT version FROM vector_index_versions WHERE agent_email = $1")
            .bind(agent_email)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?
            .unwrap_or(0);
        if let Some(index) = self.cached(agent_email).filter(|i| i.version == version) {
            return Ok(index);
        }
        // Read the version and the rows in one snapshot, so the cache is labelled truthfully.
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM vector_index_versions WHERE agent_email = $1")
            .bind(agent_email)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .unwrap_or(0);
        let rows = sqlx::query(
            "SELECT document_id, chunk_index, embedding FROM chunks WHERE agent_email = $1 \
             ORDER BY document_id, chunk_index",
        )
        .bind(agent_email)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        let mut dimension = 0;
        let mut vectors = Vec::new();
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let bytes: Vec<u8> = row.try_get("embedding").map_err(db_error)?;
            let v = decode_embedding(&bytes);
            if dimension == 0 {
                dimension = v.len();
                vectors.reserve(dimension * ids.capacity());
            }
            if v.len() != dimension {
                // Mixed dimensions mean a provider change without a re-ingest; skip rather than
                // compare vectors of different spaces.
                tracing::warn!(agent_email, dimension, found = v.len(), "Skipping chunk of another dimension.");
                continue;
            }
            vectors.extend_from_slice(&v);
            ids.push((row.try_get("document_id").map_err(db_error)?, row.try_get("chunk_index").map_err(db_error)?));
        }
        let index = Arc::new(AgentIndex::new(version, dimension.max(1), vectors, ids));
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(agent_email.to_owned(), index.clone());
        Ok(index)
    }

    fn cached(&self, agent_email: &str) -> Option<Arc<AgentIndex>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(agent_email).cloned()
    }

    async fn find(
        &self,
        agent_email: &str,
        query: &[f32],
        k: usize,
        min_score: f32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let index = self.index(agent_email).await?;
        if index.ids.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        if query.len() != index.dimension {
            return Err(StoreError::Permanent(format!(
                "query has dimension {} but the stored chunks have {}; re-ingest after changing the embedder",
                query.len(),
                index.dimension
            )));
        }
        let mut q = query.to_vec();
        let norm = q.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            return Ok(Vec::new());
        }
        q.iter_mut().for_each(|x| *x /= norm);
        let best = index.top_k(&q, k, min_score);
        if best.is_empty() {
            return Ok(Vec::new());
        }
        let doc_ids: Vec<&str> = best.iter().map(|&(row, _)| index.ids[row].0.as_str()).collect();
        let chunk_ids: Vec<i32> = best.iter().map(|&(row, _)| index.ids[row].1).collect();
        // Two `= ANY` lists match the primary key's index whatever the planner's statistics say
        // (a join against UNNEST could fall back to a scan of every chunk); the few extra
        // combinations it may return are filtered out below.
        // The agent is checked in Rust, not in SQL: with the agent in the WHERE clause the
        // planner may prefer the agent index and read every chunk of the agent.
        let rows = sqlx::query(
            "SELECT document_id, chunk_index, source, page, text, agent_email FROM chunks \
             WHERE document_id = ANY($1) AND chunk_index = ANY($2)",
        )
        .bind(&doc_ids)
        .bind(&chunk_ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        let mut texts = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: (String, i32) =
                (row.try_get("document_id").map_err(db_error)?, row.try_get("chunk_index").map_err(db_error)?);
            let source: String = row.try_get("source").map_err(db_error)?;
            let page: Option<i32> = row.try_get("page").map_err(db_error)?;
            let text: String = row.try_get("text").map_err(db_error)?;
            let owner: String = row.try_get("agent_email").map_err(db_error)?;
            if owner == agent_email {
                texts.insert(key, (source, page, text));
            }
        }
        let mut hits = Vec::with_capacity(best.len());
        for (row, score) in best {
            let key = &index.ids[row];
            // A chunk deleted since the index was loaded is simply not returned.
            if let Some((source, page, text)) = texts.remove(key) {
                hits.push(SearchHit {
                    document_id: key.0.clone(),
                    chunk_index: u32::try_from(key.1).unwrap_or_default(),
                    source,
                    page: page.and_then(|p| u32::try_from(p).ok()),
                    text,
                    score,
                });
            }
        }
        hits.sort_by(|a, b| b.score.partial_cmp(&a.score).unwrap_or(Ordering::Equal));
        Ok(hits)
    }
}

impl VectorStore for PgVectorStore {
    fn replace_document<'a>(
        &'a self,
        agent_email: &'a str,
        document_id: &'a str,
        chunks: Vec<ChunkRecord>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.replace(agent_email, document_id, chunks))
    }

    fn delete_document<'a>(
        &'a self,
        agent_email: &'a str,
        document_id: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(self.delete(agent_email, document_id))
    }

    fn search<'a>(
        &'a self,
        agent_email: &'a str,
        query: &'a [f32],
        top_k: usize,
        min_score: f32,
    ) -> BoxFuture<'a, Result<Vec<SearchHit>, StoreError>> {
        Box::pin(self.find(agent_email, query, top_k, min_score))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_and_dot_matches_naive() {
        let v: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        assert_eq!(decode_embedding(&encode_embedding(&v)), v);
        let w: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f32 = v.iter().zip(&w).map(|(a, b)| a * b).sum();
        assert!((dot(&v, &w) - naive).abs() < 1e-4);
    }

    #[test]
    fn top_k_is_sorted_bounded_and_respects_the_floor() {
        let index = AgentIndex::new(
            1,
            2,
            vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8, 0.8, 0.6, -1.0, 0.0],
            (0..5).map(|i| ("d".to_owned(), i)).collect(),
        );
        let best = index.top_k(&[1.0, 0.0], 3, 0.0);
        assert_eq!(best.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 3, 2]);
        let floor = index.top_k(&[1.0, 0.0], 10, 0.7);
        assert_eq!(floor.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 3]);
    }

    #[test]
    fn quantised_prefilter_returns_exactly_the_brute_force_top_k() {
        // Many near-ties make the 8-bit scores disagree with the exact ones; the rescoring must
        // still return the exact answer.
        let (dim, rows) = (48, 3000);
        let mut state = 7u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let mut vectors = Vec::new();
        for _ in 0..rows {
            let mut v: Vec<f32> = (0..dim).map(|_| next()).collect();
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter_mut().for_each(|x| *x /= n);
            vectors.extend(v);
        }
        let index = AgentIndex::new(1, dim, vectors.clone(), (0..rows as i32).map(|i| ("d".to_owned(), i)).collect());
        for q in 0..20 {
            let query = vectors[q * dim..(q + 1) * dim]
                .iter()
                .zip(&vectors[(q + 1) * dim..(q + 2) * dim])
                .map(|(a, b)| a + 0.9 * b)
                .collect::<Vec<f32>>();
            let mut exact: Vec<(usize, f32)> =
                (0..rows).map(|r| (r, dot(&query, &vectors[r * dim..(r + 1) * dim]))).collect();
            exact.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            exact.truncate(10);
            assert_eq!(index.top_k(&query, 10, -1.0), exact);
        }
    }
}
