//! Chunk storage and similarity search behind one trait. `postgres` (the default) keeps chunks
//! and their embeddings in PostgreSQL and searches in Rust over one agent's chunks (a compact
//! in-memory index picks candidates, their exact cosines rank them); `pinecone` uses Pinecone's data-plane REST API with the agent as namespace. Every
//! operation is scoped to one `agent_email`: no agent ever retrieves another agent's text.
//!
//! Whatever the store, the chunks are also catalogued in PostgreSQL's `chunks` table with
//! full-text columns, and [`lexical`] searches them there (the other half of hybrid retrieval).

use futures_util::future::BoxFuture;
use secrecy::SecretString;
use serde::Deserialize;

pub mod catalog;
pub mod lexical;
pub mod pinecone;
pub mod postgres;

pub use catalog::Catalogued;
pub use lexical::LexicalSearch;
pub use pinecone::PineconeStore;
pub use postgres::PgVectorStore;

/// One chunk of a document, with its embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRecord {
    /// Document the chunk belongs to.
    pub document_id: String,
    /// Position of the chunk in the document (0-based).
    pub chunk_index: u32,
    /// The document's file name, cited as the source.
    pub source: String,
    /// PDF page the chunk starts on (1-based); `None` for plain text.
    pub page: Option<u32>,
    /// The chunk's text.
    pub text: String,
    /// L2-normalised embedding.
    pub embedding: Vec<f32>,
}

/// A search result.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    /// Document the chunk belongs to.
    pub document_id: String,
    /// Position of the chunk in the document.
    pub chunk_index: u32,
    /// The document's file name.
    pub source: String,
    /// PDF page, when known.
    pub page: Option<u32>,
    /// The chunk's text.
    pub text: String,
    /// Cosine similarity with the query (vector search), or the weighted share of the
    /// question's terms the chunk contains (lexical search, 0–1).
    pub score: f32,
}

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Worth retrying: database or service unavailable, 429/5xx.
    #[error("vector store temporarily unavailable: {0}")]
    Transient(String),
    /// Will never succeed as sent: bad request, bad key, dimension mismatch.
    #[error("vector store refused the request: {0}")]
    Permanent(String),
}

/// Every store failure is recorded as `VectorStoreFailed`, retried when transient.
impl pipeline_core::Classify for StoreError {
    fn fate(&self) -> pipeline_core::Fate {
        pipeline_core::Fate::retry_if(self.is_transient())
    }

    fn error_type(&self) -> &'static str {
        "VectorStoreFailed"
    }
}

impl StoreError {
    /// Whether retrying can help.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Transient(_))
    }
}

/// Where chunks live and how they are searched.
pub trait VectorStore: Send + Sync {
    /// Replaces every chunk of `document_id` with `chunks` (atomic where the backend allows),
    /// so re-ingesting a document — or a redelivered ingestion — never duplicates chunks.
    fn replace_document<'a>(
        &'a self,
        agent_email: &'a str,
        document_id: &'a str,
        chunks: Vec<ChunkRecord>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes every chunk of a document.
    fn delete_document<'a>(
        &'a self,
        agent_email: &'a str,
        document_id: &'a str,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The `top_k` chunks of `agent_email` most similar to `query` with a score of at least
    /// `min_score`, best first.
    fn search<'a>(
        &'a self,
        agent_email: &'a str,
        query: &'a [f32],
        top_k: usize,
        min_score: f32,
    ) -> BoxFuture<'a, Result<Vec<SearchHit>, StoreError>>;
}

/// Implements [`VectorStore`] for a type with inherent `async fn replace`, `delete` and `find`
/// of the trait's arguments: the boxing the trait needs (it is used as `dyn VectorStore`),
/// written once for every store.
macro_rules! boxed_vector_store {
    ($t:ty $(where $g:ident: $bound:path)?) => {
        impl$(<$g: $bound>)? $crate::VectorStore for $t {
            fn replace_document<'a>(
                &'a self,
                agent_email: &'a str,
                document_id: &'a str,
                chunks: Vec<$crate::ChunkRecord>,
            ) -> futures_util::future::BoxFuture<'a, Result<(), $crate::StoreError>> {
                Box::pin(self.replace(agent_email, document_id, chunks))
            }

            fn delete_document<'a>(
                &'a self,
                agent_email: &'a str,
                document_id: &'a str,
            ) -> futures_util::future::BoxFuture<'a, Result<(), $crate::StoreError>> {
                Box::pin(self.delete(agent_email, document_id))
            }

            fn search<'a>(
                &'a self,
                agent_email: &'a str,
                query: &'a [f32],
                top_k: usize,
                min_score: f32,
            ) -> futures_util::future::BoxFuture<'a, Result<Vec<$crate::SearchHit>, $crate::StoreError>> {
                Box::pin(self.find(agent_email, query, top_k, min_score))
            }
        }
    };
}
pub(crate) use boxed_vector_store;

/// `[vector_store]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct VectorStoreSettings {
    /// `postgres` (default) or `pinecone`.
    pub kind: String,
    /// The PostgreSQL store's in-memory index.
    #[serde(default)]
    pub postgres: PostgresSettings,
    /// Pinecone data plane.
    pub pinecone: PineconeSettings,
}

/// `[vector_store.postgres]`: how much of the index a process keeps and how many candidates a
/// search scores exactly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSettings {
    /// Memory for agents' in-memory indexes, in MiB (about 76 bytes per 384-dimension chunk);
    /// past it the least recently searched agents are evicted and reloaded when next searched.
    pub memory_budget_mb: usize,
    /// A search for `k` chunks scores `k × oversampling` candidates exactly (at least
    /// `min_candidates`), reading their embeddings from PostgreSQL.
    pub oversampling: usize,
    /// The least number of candidates scored exactly, whatever `k`.
    pub min_candidates: usize,
}

impl Default for PostgresSettings {
    /// The values of `config/default.toml`.
    fn default() -> Self {
        Self { memory_budget_mb: 96, oversampling: 40, min_candidates: 256 }
    }
}

/// `[vector_store.pinecone]`.
#[derive(Debug, Clone, Deserialize)]
pub struct PineconeSettings {
    /// The index host, e.g. `https://docs-abc123.svc.aped-1234.pinecone.io`.
    pub index_host: String,
    /// API key (secret).
    pub api_key: SecretString,
    /// Value of the `X-Pinecone-Api-Version` header.
    pub api_version: String,
    /// Per-request timeout.
    pub timeout_secs: u64,
}

/// `vector_store.kind` names no known store.
#[derive(Debug, thiserror::Error)]
#[error("unknown vector_store.kind {0:?} (expected postgres or pinecone)")]
pub struct UnknownStore(pub String);

/// Builds the configured store (`postgres` over `pool`, or `pinecone` with its chunk catalogue
/// in `pool` for lexical search).
pub fn from_settings(
    settings: &VectorStoreSettings,
    pool: sqlx::PgPool,
) -> Result<std::sync::Arc<dyn VectorStore>, UnknownStore> {
    match settings.kind.as_str() {
        "postgres" => Ok(std::sync::Arc::new(PgVectorStore::with_settings(pool, &settings.postgres))),
        "pinecone" => Ok(std::sync::Arc::new(Catalogued::new(PineconeStore::new(&settings.pinecone), pool))),
        other => Err(UnknownStore(other.to_owned())),
    }
}
