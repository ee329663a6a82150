//! The chunk catalogue beside an external vector store: with Pinecone the vectors live in the
//! index, but lexical retrieval ([`crate::lexical`]) runs in PostgreSQL, so every write also
//! replaces the document's rows in `chunks` — text, page and full-text columns, with an empty
//! embedding (the in-memory vector index skips those rows).

use sqlx::PgPool;

use crate::postgres::db_error;
use crate::{ChunkRecord, SearchHit, StoreError, VectorStore};

/// A [`VectorStore`] that also keeps the chunk catalogue in PostgreSQL.
#[derive(Debug, Clone)]
pub struct Catalogued<S> {
    inner: S,
    pool: PgPool,
}

impl<S: VectorStore> Catalogued<S> {
    /// `inner` for the vectors, `pool`'s `chunks` table for the catalogue.
    pub fn new(inner: S, pool: PgPool) -> Self {
        Self { inner, pool }
    }

    async fn replace(&self, agent_email: &str, document_id: &str, chunks: Vec<ChunkRecord>) -> Result<(), StoreError> {
        let rows: Vec<ChunkRecord> =
            chunks.iter().map(|c| ChunkRecord { embedding: Vec::new(), text: c.text.clone(), ..c.clone() }).collect();
        // Vectors first: should the catalogue write fail, the redelivered ingestion rewrites both,
        // and until then the lexical side simply lacks the document.
        self.inner.replace_document(agent_email, document_id, chunks).await?;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("DELETE FROM chunks WHERE document_id = $1")
            .bind(document_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        crate::lexical::insert_chunks(&mut tx, agent_email, document_id, &rows, false).await.map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }

    /// Searches are the inner store's own.
    async fn find(
        &self,
        agent_email: &str,
        query: &[f32],
        top_k: usize,
        min_score: f32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        self.inner.search(agent_email, query, top_k, min_score).await
    }

    async fn delete(&self, agent_email: &str, document_id: &str) -> Result<(), StoreError> {
        self.inner.delete_document(agent_email, document_id).await?;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query("DELETE FROM chunks WHERE document_id = $1 AND agent_email = $2")
            .bind(document_id)
            .bind(agent_email)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)
    }
}

crate::boxed_vector_store!(Catalogued<S> where S: VectorStore);
