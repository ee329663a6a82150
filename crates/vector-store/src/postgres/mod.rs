//! The default vector store: chunks in PostgreSQL, cosine search in Rust over a compact
//! in-memory index.
//!
//! A search uses the agent's index ([`index::AgentIndex`]: one bit per dimension per chunk,
//! about 76 bytes per chunk at 384 dimensions) to pick the `k × oversampling` most promising
//! chunks, then reads their f32 embeddings from PostgreSQL (streamed, one row at a time), scores
//! them exactly and reads the texts of the best k: the hits and their scores are exact cosines, and only which chunks make the
//! candidate set is approximate (a larger oversampling trades a bigger read for recall; when it
//! covers every chunk the result is the exact top k). Nothing but the codes stays in memory, so
//! a process serving many agents holds tens of bytes per chunk instead of kilobytes.
//!
//! The index is loaded once (rows streamed, never all held at once) and kept until the agent's
//! row in `vector_index_versions` changes (every write bumps it, in the same transaction), so
//! each query costs one tiny version lookup, a scan of the codes, one query for the
//! candidates' embeddings and one for the texts of the hits. Indexes are kept within a memory budget; past it the least recently searched
//! agents are evicted and loaded again on their next search.

mod cache;
mod index;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures_util::TryStreamExt;
use sqlx::{PgPool, Row};

use self::cache::Cache;
use self::index::{AgentIndex, IndexBuilder};
use crate::{ChunkRecord, PostgresSettings, SearchHit, StoreError};

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

/// Encodes an embedding as little-endian f32 bytes.
pub fn encode_embedding(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes little-endian f32 bytes.
pub fn decode_embedding(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Chunks in PostgreSQL with a per-agent in-memory index.
#[derive(Debug, Clone)]
pub struct PgVectorStore {
    pool: PgPool,
    cache: Arc<Mutex<Cache>>,
    /// Held while an index is loaded: one load at a time per process, so a burst of searches
    /// for an agent not in memory loads it once, and loads of different agents do not add up.
    loading: Arc<tokio::sync::Mutex<()>>,
    oversampling: usize,
    min_candidates: usize,
}

impl PgVectorStore {
    /// A store over the migrated database of `pool`, with the default settings.
    pub fn new(pool: PgPool) -> Self {
        Self::with_settings(pool, &PostgresSettings::default())
    }

    /// A store over the migrated database of `pool`, with `[vector_store.postgres]` settings.
    pub fn with_settings(pool: PgPool, settings: &PostgresSettings) -> Self {
        Self {
            pool,
            cache: Arc::new(Mutex::new(Cache::new(settings.memory_budget_mb.saturating_mul(1024 * 1024)))),
            loading: Arc::default(),
            oversampling: settings.oversampling.max(1),
            min_candidates: settings.min_candidates,
        }
    }

    /// Bytes of in-memory indexes held and the number of agents they cover.
    pub fn memory_usage(&self) -> (usize, usize) {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        (cache.bytes(), cache.len())
    }

    /// Marks the agent's chunks changed: the in-memory vector index is rebuilt on its next use.
    /// (The lexical side's term counts are kept by triggers on `chunks`; the Pinecone catalogue
    /// has no in-memory index, so it bumps nothing.)
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
        let version = self.version(agent_email).await?;
        if let Some(index) = self.cached(agent_email).filter(|i| i.version == version) {
            return Ok(index);
        }
        let _loading = self.loading.lock().await;
        // A search that held the lock before this one may have loaded it.
        if let Some(index) = self.cached(agent_email).filter(|i| i.version >= version) {
            return Ok(index);
        }
        self.load(agent_email).await
    }

    async fn version(&self, agent_email: &str) -> Result<i64, StoreError> {
        sqlx::query_scalar("SELECT version FROM vector_index_versions WHERE agent_email = $1")
            .bind(agent_email)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)
            .map(|v| v.unwrap_or(0))
    }

    /// Reads the agent's index from PostgreSQL and caches it.
    async fn load(&self, agent_email: &str) -> Result<Arc<AgentIndex>, StoreError> {
        let started = Instant::now();
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
        // The count sizes the buffers once: grown by doubling they could hold twice the memory.
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE agent_email = $1")
            .bind(agent_email)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_error)?;
        let mut builder = IndexBuilder::new(usize::try_from(count).unwrap_or_default());
        let (mut skipped, mut vector) = (0usize, Vec::new());
        {
            // Rows with an empty embedding are lexical-only (written for a store that embeds
            // elsewhere) and have nothing to rank. Streamed: the f32 vectors are never all held.
            let mut rows = sqlx::query(
                "SELECT document_id, chunk_index, embedding FROM chunks \
                 WHERE agent_email = $1 AND octet_length(embedding) > 0 ORDER BY document_id, chunk_index",
            )
            .bind(agent_email)
            .fetch(&mut *tx);
            while let Some(row) = rows.try_next().await.map_err(db_error)? {
                let bytes: &[u8] = row.try_get("embedding").map_err(db_error)?;
                vector.clear();
                vector.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                let document_id: &str = row.try_get("document_id").map_err(db_error)?;
                let chunk_index: i32 = row.try_get("chunk_index").map_err(db_error)?;
                if !builder.push(document_id, chunk_index, &vector) {
                    skipped += 1;
                }
            }
        }
        tx.commit().await.map_err(db_error)?;
        if skipped > 0 {
            // Mixed dimensions mean a provider change without a re-ingest; skip rather than
            // compare vectors of different spaces.
            tracing::warn!(
                agent_email,
                dimension = builder.dimension(),
                skipped,
                "Skipped chunks of another dimension."
            );
        }
        let index = Arc::new(builder.finish(version));
        let (evicted, bytes, agents) = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            let evicted = cache.insert(agent_email, index.clone());
            (evicted, cache.bytes(), cache.len())
        };
        tracing::debug!(
            agent_email,
            version,
            chunks = index.len(),
            index_bytes = index.heap_bytes(),
            cache_bytes = bytes,
            cache_agents = agents,
            evicted = evicted.len(),
            ms = started.elapsed().as_millis() as u64,
            "Loaded the agent's vector index."
        );
        Ok(index)
    }

    fn cached(&self, agent_email: &str) -> Option<Arc<AgentIndex>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(agent_email)
    }

    async fn find(
        &self,
        agent_email: &str,
        query: &[f32],
        k: usize,
        min_score: f32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        let index = self.index(agent_email).await?;
        if index.len() == 0 || k == 0 {
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
        let count = k.saturating_mul(self.oversampling).max(self.min_candidates);
        let mut candidates = index.candidates(&q, count);
        // Rows are in primary-key order: looked up in that order, neighbouring candidates share
        // index and heap pages.
        candidates.sort_unstable();
        let keys: HashMap<(&str, i32), usize> = candidates.iter().map(|&row| (index.id(row), row)).collect();
        let doc_ids: Vec<&str> = candidates.iter().map(|&row| index.id(row).0).collect();
        let chunk_ids: Vec<i32> = candidates.iter().map(|&row| index.id(row).1).collect();
        // Two joins on the primary key: the candidates' embeddings (a few hundred index
        // look-ups), then the texts of the best k only. The agent is checked in Rust, not in
        // SQL: with the agent in the WHERE clause the planner may prefer the agent index and
        // read every chunk of the agent.
        // Streamed and scored row by row: a search holds one candidate's embedding at a time,
        // not a megabyte of them.
        let mut scored = Vec::with_capacity(candidates.len());
        let mut vector = Vec::with_capacity(q.len());
        {
            let mut rows = sqlx::query(
                "SELECT c.document_id, c.chunk_index, c.agent_email, c.embedding \
                 FROM UNNEST($1::text[], $2::int[]) AS k(document_id, chunk_index) \
                 JOIN chunks c ON c.document_id = k.document_id AND c.chunk_index = k.chunk_index",
            )
            .bind(&doc_ids)
            .bind(&chunk_ids)
            .fetch(&self.pool);
            while let Some(row) = rows.try_next().await.map_err(db_error)? {
                let owner: &str = row.try_get("agent_email").map_err(db_error)?;
                let document_id: &str = row.try_get("document_id").map_err(db_error)?;
                let chunk_index: i32 = row.try_get("chunk_index").map_err(db_error)?;
                // A chunk deleted since the index was loaded is not found, hence not returned;
                // one replaced since is scored with its current embedding.
                let Some(&at) = keys.get(&(document_id, chunk_index)).filter(|_| owner == agent_email) else {
                    continue;
                };
                let bytes: &[u8] = row.try_get("embedding").map_err(db_error)?;
                vector.clear();
                vector.extend(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                scored.extend(index::rescore(&q, [(at, vector.as_slice())], 1, min_score));
            }
        }
        let best = index::best(scored, k);
        if best.is_empty() {
            return Ok(Vec::new());
        }
        let doc_ids: Vec<&str> = best.iter().map(|&(at, _)| index.id(at).0).collect();
        let chunk_ids: Vec<i32> = best.iter().map(|&(at, _)| index.id(at).1).collect();
        let rows = sqlx::query(
            "SELECT c.document_id, c.chunk_index, c.source, c.page, c.text, c.agent_email \
             FROM UNNEST($1::text[], $2::int[]) AS k(document_id, chunk_index) \
             JOIN chunks c ON c.document_id = k.document_id AND c.chunk_index = k.chunk_index",
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
            let owner: String = row.try_get("agent_email").map_err(db_error)?;
            if owner == agent_email {
                let page: Option<i32> = row.try_get("page").map_err(db_error)?;
                texts.insert(
                    key,
                    (
                        row.try_get::<String, _>("source").map_err(db_error)?,
                        page,
                        row.try_get::<String, _>("text").map_err(db_error)?,
                    ),
                );
            }
        }
        let mut hits = Vec::with_capacity(best.len());
        for (at, score) in best {
            let (document_id, chunk_index) = index.id(at);
            // Deleted between the two reads: not returned either.
            let Some((source, page, text)) = texts.remove(&(document_id.to_owned(), chunk_index)) else { continue };
            hits.push(SearchHit {
                document_id: document_id.to_owned(),
                chunk_index: u32::try_from(chunk_index).unwrap_or_default(),
                source,
                page: page.and_then(|p| u32::try_from(p).ok()),
                text,
                score,
            });
        }
        Ok(hits)
    }
}

crate::boxed_vector_store!(PgVectorStore);
