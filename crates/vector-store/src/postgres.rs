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

/// Rows per INSERT when storing a document's chunks.
const INSERT_BATCH: usize = 1000;

fn db_error(e: sqlx::Error) -> StoreError {
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
#[derive(Debug)]
struct AgentIndex {
    version: i64,
    dimension: usize,
    /// `ids.len() × dimension` floats, row-major.
    vectors: Vec<f32>,
    /// `(document_id, chunk_index)` of each row.
    ids: Vec<(String, i32)>,
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
    /// Indices and scores of the best `k` rows scoring at least `min_score`, best first.
    fn top_k(&self, query: &[f32], k: usize, min_score: f32) -> Vec<(usize, f32)> {
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
        let mut floor = min_score;
        for (row, v) in self.vectors.chunks_exact(self.dimension).enumerate() {
            let score = dot(query, v);
            if score < floor || (best.len() == k && score <= floor) {
                continue;
            }
            let at = best.partition_point(|&(_, s)| s >= score);
            best.insert(at, (row, score));
            if best.len() > k {
                best.pop();
            }
            if best.len() == k {
                floor = floor.max(best[k - 1].1);
            }
        }
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

    async fn bump_version(tx: &mut sqlx::PgConnection, agent_email: &str) -> Result<(), sqlx::Error> {
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
        for batch in chunks.chunks(INSERT_BATCH) {
            let indexes: Vec<i32> = batch.iter().map(|c| i32::try_from(c.chunk_index).unwrap_or(i32::MAX)).collect();
            let sources: Vec<&str> = batch.iter().map(|c| c.source.as_str()).collect();
            let pages: Vec<Option<i32>> =
                batch.iter().map(|c| c.page.map(|p| i32::try_from(p).unwrap_or(i32::MAX))).collect();
            let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
            let embeddings: Vec<Vec<u8>> = batch.iter().map(|c| encode_embedding(&c.embedding)).collect();
            sqlx::query(
                "INSERT INTO chunks (agent_email, document_id, chunk_index, source, page, text, embedding) \
                 SELECT $1, $2, * FROM UNNEST($3::int[], $4::text[], $5::int[], $6::text[], $7::bytea[])",
            )
            .bind(agent_email)
            .bind(document_id)
            .bind(&indexes)
            .bind(&sources)
            .bind(&pages)
            .bind(&texts)
            .bind(&embeddings)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        }
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
        let index = Arc::new(AgentIndex { version, dimension: dimension.max(1), vectors, ids });
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).insert(agent_email.to_owned(), index.clone());
        Ok(index)
    }

    fn cached(&self, agent_email: &str) -> Option<Arc<AgentIndex>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(agent_email).cloned()
    }

    async fn find(&self, agent_email: &str, query: &[f32], k: usize, min_score: f32) -> Result<Vec<SearchHit>, StoreError> {
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
        let rows = sqlx::query(
            "SELECT c.document_id, c.chunk_index, c.source, c.page, c.text \
             FROM chunks c JOIN UNNEST($2::text[], $3::int[]) AS k(document_id, chunk_index) \
             USING (document_id, chunk_index) WHERE c.agent_email = $1",
        )
        .bind(agent_email)
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
            texts.insert(key, (source, page, text));
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

    fn delete_document<'a>(&'a self, agent_email: &'a str, document_id: &'a str) -> BoxFuture<'a, Result<(), StoreError>> {
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
        let index = AgentIndex {
            version: 1,
            dimension: 2,
            vectors: vec![1.0, 0.0, 0.0, 1.0, 0.6, 0.8, 0.8, 0.6, -1.0, 0.0],
            ids: (0..5).map(|i| ("d".to_owned(), i)).collect(),
        };
        let best = index.top_k(&[1.0, 0.0], 3, 0.0);
        assert_eq!(best.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 3, 2]);
        let floor = index.top_k(&[1.0, 0.0], 10, 0.7);
        assert_eq!(floor.iter().map(|b| b.0).collect::<Vec<_>>(), vec![0, 3]);
    }
}
