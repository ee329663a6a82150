//! `doc-ingester`: consumes `documents.to_ingest` and makes each uploaded document searchable —
//! extract text per page (isolated, see [`extract`]), split it into overlapping chunks, embed
//! them in batches, and replace the document's chunks in the vector store — updating the
//! document's status and progress as it goes. Re-ingesting (or a redelivery) replaces the
//! chunks, so it never duplicates them.

pub mod chunking;
pub mod extract;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use embedders::{EmbedError, Embedder, EmbeddingSettings};
use mailroom_db::QueryFailed;
use mailroom_db::documents::{self, status};
use pipeline_core::messages::DocumentToIngest;
use pipeline_core::topology::DOCUMENTS_TO_INGEST;
use pipeline_core::{DeliveryMeta, Handler, HandlerError, Outgoing, Settings};
use serde::Deserialize;
use sqlx::PgPool;
use tracing::{info, warn};
use uuid::Uuid;
use vector_store::{ChunkRecord, StoreError, VectorStore, VectorStoreSettings};

use crate::chunking::Chunker;
use crate::extract::{Engine, ExtractError, Limits};

/// The binary's name: selects `[workers.doc-ingester]` and names its broker connection.
pub const WORKER_NAME: &str = "doc-ingester";

/// `[ingester]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct IngesterSettings {
    /// Chunk size in characters.
    pub chunk_size: usize,
    /// Overlap between consecutive chunks, in characters.
    pub chunk_overlap: usize,
    /// PDF extraction wall-clock limit.
    pub extract_timeout_secs: u64,
    /// PDF extraction address-space limit.
    pub extract_max_memory_mb: u64,
    /// Page limit.
    pub max_pages: usize,
    /// Extracted-text limit.
    pub max_text_mb: u64,
    /// PDF engines in the order to try them: the first is the primary, the others fall back
    /// for documents or pages it cannot read.
    pub pdf_engines: Vec<String>,
}

impl IngesterSettings {
    /// Extraction limits and engines; fails on an unknown, repeated or missing engine.
    pub fn limits(&self) -> Result<Limits, SettingsError> {
        let mut engines = Vec::new();
        for name in &self.pdf_engines {
            let engine: Engine = name.parse().map_err(SettingsError)?;
            if engines.contains(&engine) {
                return Err(SettingsError(format!("ingester.pdf_engines names {engine} twice")));
            }
            engines.push(engine);
        }
        if engines.is_empty() {
            return Err(SettingsError("ingester.pdf_engines is empty; name at least one PDF engine".into()));
        }
        Ok(Limits {
            timeout: Duration::from_secs(self.extract_timeout_secs),
            max_memory_mb: self.extract_max_memory_mb,
            max_pages: self.max_pages,
            max_text_mb: self.max_text_mb,
            engines,
        })
    }
}

/// An invalid `[ingester]` setting.
#[derive(Debug, thiserror::Error)]
#[error("invalid [ingester] settings: {0}")]
pub struct SettingsError(String);

/// The ingestion pipeline for one document, independent of the broker (the benchmark and tests
/// drive it directly).
pub struct Ingester {
    pool: PgPool,
    embedder: Arc<dyn Embedder>,
    store: Arc<dyn VectorStore>,
    chunker: Chunker,
    limits: Limits,
    batch_size: usize,
    storage_dir: PathBuf,
    extractor: PathBuf,
}

impl std::fmt::Debug for Ingester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingester").field("model", &self.embedder.model_id()).finish_non_exhaustive()
    }
}

/// Why an ingestion failed, and whether to try again.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Extraction failed (permanent).
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// No text at all (for example a scanned PDF without a text layer).
    #[error("the document contains no extractable text (scanned pages need OCR first)")]
    NoText,
    /// The message points outside the storage directory.
    #[error("file path {0} is outside the storage directory")]
    PathOutsideStorage(String),
    /// The message's document id is not a UUID.
    #[error("invalid document id {0:?}")]
    InvalidDocumentId(String),
    /// The embedder failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// The vector store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The document was deleted while it was being ingested: nothing to store.
    #[error("the document was deleted during ingestion")]
    DocumentDeleted,
}

impl IngestError {
    /// The `error_type` recorded on the document and in the dead letter.
    pub fn error_type(&self) -> &'static str {
        match self {
            IngestError::Extract(e) => e.error_type(),
            IngestError::NoText => "NoExtractableText",
            IngestError::PathOutsideStorage(_) => "PathOutsideStorage",
            IngestError::InvalidDocumentId(_) => "InvalidMessage",
            IngestError::Embed(_) => "EmbeddingFailed",
            IngestError::Store(_) => "VectorStoreFailed",
            IngestError::Db(e) => mailroom_db::error_type(e),
            IngestError::DocumentDeleted => "DocumentDeleted",
        }
    }

    /// Whether retrying can help.
    pub fn is_transient(&self) -> bool {
        match self {
            IngestError::Embed(e) => e.is_transient(),
            IngestError::Store(e) => e.is_transient(),
            IngestError::Db(e) => mailroom_db::is_transient(e),
            _ => false,
        }
    }
}

impl pipeline_core::Classify for IngestError {
    fn fate(&self) -> pipeline_core::Fate {
        pipeline_core::Fate::retry_if(self.is_transient())
    }

    fn error_type(&self) -> &'static str {
        IngestError::error_type(self)
    }
}

/// Outcome of a successful ingestion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ingested {
    /// Pages extracted (1 for text documents).
    pub pages: usize,
    /// Chunks stored.
    pub chunks: usize,
}

impl Ingester {
    /// An ingester from settings, over a migrated database.
    pub fn from_settings(settings: &Settings, pool: PgPool) -> anyhow::Result<Self> {
        let ingester: IngesterSettings = settings.section("ingester")?;
        let embeddings: EmbeddingSettings = settings.section("embeddings")?;
        let store_settings: VectorStoreSettings = settings.section("vector_store")?;
        let store = vector_store::from_settings(&store_settings, pool.clone())?;
        let embedder: Arc<dyn Embedder> = Arc::from(embedders::from_settings(&embeddings)?);
        std::fs::create_dir_all(&settings.storage.dir)?;
        Ok(Self {
            pool,
            embedder,
            store,
            chunker: Chunker::new(ingester.chunk_size, ingester.chunk_overlap)?,
            limits: ingester.limits()?,
            batch_size: embeddings.batch_size.max(1),
            storage_dir: settings.storage.dir.clone(),
            extractor: std::env::current_exe()?,
        })
    }

    /// Uses another program for PDF extraction (it must handle [`extract::CHILD_COMMAND`]); the
    /// default is the running binary.
    pub fn with_extractor(mut self, program: PathBuf) -> Self {
        self.extractor = program;
        self
    }

    /// The vector store in use.
    pub fn store(&self) -> &Arc<dyn VectorStore> {
        &self.store
    }

    /// The embedder in use.
    pub fn embedder(&self) -> &Arc<dyn Embedder> {
        &self.embedder
    }

    fn inside_storage(&self, path: &Path) -> Result<PathBuf, IngestError> {
        let outside = || IngestError::PathOutsideStorage(path.display().to_string());
        let root = self.storage_dir.canonicalize().map_err(|_| outside())?;
        match path.canonicalize() {
            Ok(p) if p.starts_with(&root) => Ok(p),
            Ok(_) => Err(outside()),
            Err(e) => Err(ExtractError::FileMissing(format!("{}: {e}", path.display())).into()),
        }
    }

    /// Ingests one document end to end, recording progress; the document row must exist.
    pub async fn ingest(&self, id: Uuid, msg: &DocumentToIngest, content_type: &str) -> Result<Ingested, IngestError> {
        let path = self.inside_storage(Path::new(&msg.file_path))?;
        documents::set_progress(&self.pool, id, status::EXTRACTING, 5).await?;
        let extraction = extract::extract(&self.extractor, &path, content_type, &self.limits).await?;
        let pages = &extraction.pages;
        let page_count = pages.iter().filter(|p| p.number.is_some()).count() + extraction.failed_pages.len();
        documents::set_page_count(&self.pool, id, i32::try_from(page_count).ok().filter(|n| *n > 0)).await?;
        let skipped: Vec<i32> =
            extraction.failed_pages.iter().map(|p| i32::try_from(p.number).unwrap_or(i32::MAX)).collect();
        let warnings = extraction.warnings();
        documents::set_warnings(&self.pool, id, &warnings, &skipped).await?;
        if !warnings.is_empty() {
            warn!(%id, engine = ?extraction.engine.map(Engine::name), ?warnings, "Extraction needed a fallback or skipped pages.");
        }
        let chunker = &self.chunker;
        let chunks = chunker.chunk(pages);
        if chunks.is_empty() {
            return Err(IngestError::NoText);
        }
        documents::set_progress(&self.pool, id, status::EMBEDDING, 20).await?;
        let mut records = Vec::with_capacity(chunks.len());
        let texts: Vec<String> = chunks.iter().map(|c| c.text.clone()).collect();
        for (batch_no, batch) in texts.chunks(self.batch_size).enumerate() {
            let vectors = self.embedder.embed(batch).await?;
            for (offset, embedding) in vectors.into_iter().enumerate() {
                let i = batch_no * self.batch_size + offset;
                records.push(ChunkRecord {
                    document_id: msg.document_id.clone(),
                    chunk_index: u32::try_from(i).unwrap_or(u32::MAX),
                    source: msg.filename.clone(),
                    page: chunks[i].page,
                    text: chunks[i].text.clone(),
                    embedding,
                });
            }
            let done = records.len() * 70 / chunks.len();
            documents::set_progress(&self.pool, id, status::EMBEDDING, 20 + i16::try_from(done).unwrap_or(70)).await?;
        }
        let count = records.len();
        // Hold the document row while its chunks are written: a delete waits for the write, and
        // a document deleted meanwhile gets no chunks (see `documents::lock_for_chunk_write`).
        let write = documents::lock_for_chunk_write(&self.pool, id).await?.ok_or(IngestError::DocumentDeleted)?;
        self.store.replace_document(&msg.agent_email, &msg.document_id, records).await?;
        write.finish().await?;
        documents::mark_ready(&self.pool, id, i32::try_from(count).unwrap_or(i32::MAX)).await?;
        Ok(Ingested { pages: pages.len(), chunks: count })
    }
}

/// The `documents.to_ingest` handler.
#[derive(Debug)]
pub struct IngestHandler {
    ingester: Ingester,
}

impl IngestHandler {
    /// Wraps an ingester.
    pub fn new(ingester: Ingester) -> Self {
        Self { ingester }
    }
}

impl Handler for IngestHandler {
    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        pipeline_core::consumer::roles::DOC_INGESTER.publishes
    }
    type Input = DocumentToIngest;

    async fn handle(&self, msg: DocumentToIngest, meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        let pool = &self.ingester.pool;
        let document_id = msg.document_id.clone();
        let Ok(id) = Uuid::parse_str(&document_id) else {
            let e = IngestError::InvalidDocumentId(document_id);
            return Err(HandlerError::permanent(e.error_type(), e));
        };
        let row = documents::get(pool, id).await.map_err(QueryFailed)?;
        let Some(row) = row else {
            // Deleted after upload: nothing to ingest, nothing to record.
            info!(%document_id, "Document was deleted before ingestion; skipping.");
            return Ok(Vec::new());
        };
        // The row, not the message, says whose document this is: nothing on a queue decides
        // which agent's knowledge a text joins.
        let msg = DocumentToIngest { agent_email: row.agent_email.clone(), ..msg };
        match self.ingester.ingest(id, &msg, &row.content_type).await {
            Ok(done) => {
                info!(%document_id, agent_email = %msg.agent_email, pages = done.pages, chunks = done.chunks, "Ingested document.");
                Ok(Vec::new())
            }
            Err(e) if matches!(e, IngestError::DocumentDeleted) || deleted(pool, id).await => {
                // Deleted while being ingested: the delete removed whatever was stored, and the
                // lock on the row kept this ingestion from writing after it.
                info!(%document_id, error = %e, "Document was deleted during ingestion; dropped.");
                Ok(Vec::new())
            }
            Err(e) => {
                let transient = e.is_transient();
                if !transient || meta.is_last_attempt() {
                    // Best effort: if the database is what failed, the dead letter still says why.
                    let _ = documents::mark_failed(pool, id, e.error_type(), &e.to_string()).await;
                }
                Err(e.into())
            }
        }
    }
}

/// Whether the document's row is gone (an unreadable database counts as not deleted, so the
/// failure takes its ordinary path).
async fn deleted(pool: &PgPool, id: Uuid) -> bool {
    matches!(documents::get(pool, id).await, Ok(None))
}

/// Runs the worker until `shutdown`: migrate, build the ingester, consume `documents.to_ingest`.
pub async fn run(settings: Settings, shutdown: impl std::future::Future<Output = ()> + Send) -> anyhow::Result<()> {
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, settings.database.max_connections).await?;
    // Chunks written by an older version of the full-text analysis would not meet questions
    // analysed by this one; they are analysed again beside the consumer (the database cannot
    // run the analysis itself, so no migration could).
    let reindex_pool = pool.clone();
    tokio::spawn(async move {
        match vector_store::lexical::reindex_outdated(&reindex_pool).await {
            Ok(0) => {}
            Ok(chunks) => info!(chunks, "Chunks analysed again for full-text search."),
            Err(error) => warn!(%error, "Analysing older chunks again failed; the next start resumes."),
        }
    });
    let ingester = Ingester::from_settings(&settings, pool)?;
    info!(embedder = ingester.embedder.model_id(), "Document ingester starting.");
    let handler = Arc::new(IngestHandler::new(ingester));
    pipeline_core::serve_worker(WORKER_NAME, &DOCUMENTS_TO_INGEST, handler, &settings, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_engines(engines: &[&str]) -> IngesterSettings {
        IngesterSettings {
            chunk_size: 1000,
            chunk_overlap: 150,
            extract_timeout_secs: 60,
            extract_max_memory_mb: 1024,
            max_pages: 5000,
            max_text_mb: 64,
            pdf_engines: engines.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    #[test]
    fn the_default_engine_order_is_pdf_oxide_then_pdf_extract() {
        let settings = Settings::load_from(None, std::iter::empty::<(String, String)>()).expect("defaults");
        let ingester: IngesterSettings = settings.section("ingester").expect("[ingester]");
        assert_eq!(ingester.limits().expect("valid").engines, [Engine::PdfOxide, Engine::PdfExtract]);
        let reordered = Settings::load_from(
            None,
            [("MAILROOM__INGESTER__PDF_ENGINES".to_owned(), "pdf-extract,pdf_oxide".to_owned())],
        )
        .expect("env");
        let ingester: IngesterSettings = reordered.section("ingester").expect("[ingester]");
        assert_eq!(ingester.limits().expect("valid").engines, [Engine::PdfExtract, Engine::PdfOxide]);
    }

    #[test]
    fn unknown_repeated_or_missing_engines_are_refused() {
        assert!(with_engines(&["pdf_oxide"]).limits().is_ok());
        for bad in [&["pdfium"][..], &["pdf_oxide", "pdf_oxide"], &[]] {
            assert!(with_engines(bad).limits().is_err(), "{bad:?}");
        }
    }
}
