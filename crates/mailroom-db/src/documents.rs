//! The `documents` table: uploaded documents and their ingestion progress.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Ingestion states, in order.
pub mod status {
    /// Stored and published; waiting for the ingester.
    pub const QUEUED: &str = "queued";
    /// Text extraction running.
    pub const EXTRACTING: &str = "extracting";
    /// Chunks being embedded and stored.
    pub const EMBEDDING: &str = "embedding";
    /// Searchable.
    pub const READY: &str = "ready";
    /// Failed for good; `error_type` and `error` say why.
    pub const FAILED: &str = "failed";
}

/// A document row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Document {
    /// Id (also the stored file's name).
    pub document_id: Uuid,
    /// Owning support mailbox.
    pub agent_email: String,
    /// The user's file name (metadata only).
    pub filename: String,
    /// Where the file is stored.
    #[serde(skip)]
    pub stored_path: String,
    /// Detected content type.
    pub content_type: String,
    /// Size of the stored file.
    pub size_bytes: i64,
    /// `queued`, `extracting`, `embedding`, `ready` or `failed`.
    pub status: String,
    /// 0–100.
    pub progress: i16,
    /// Pages, once extracted (PDF only).
    pub page_count: Option<i32>,
    /// Chunks stored.
    pub chunk_count: i32,
    /// Why it failed.
    pub error_type: Option<String>,
    /// Human-readable reason.
    pub error: Option<String>,
    /// What went wrong without failing the document (skipped pages, a fallback PDF engine).
    pub warnings: Vec<String>,
    /// 1-based numbers of the PDF pages that could not be read and were skipped.
    pub skipped_pages: Vec<i32>,
    /// Id of the `documents.to_ingest` message.
    pub message_id: Option<String>,
    /// Upload time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

crate::from_row!(Document {
    document_id,
    agent_email,
    filename,
    stored_path,
    content_type,
    size_bytes,
    status,
    progress,
    page_count,
    chunk_count,
    error_type,
    error,
    warnings,
    skipped_pages,
    message_id,
    created_at,
    updated_at
});

/// What the upload API records for a new document.
#[derive(Debug, Clone)]
pub struct NewDocument<'a> {
    /// Id.
    pub document_id: Uuid,
    /// Owning support mailbox.
    pub agent_email: &'a str,
    /// The user's file name.
    pub filename: &'a str,
    /// Stored file.
    pub stored_path: &'a str,
    /// Detected content type.
    pub content_type: &'a str,
    /// Size.
    pub size_bytes: i64,
    /// Id of the ingest message.
    pub message_id: &'a str,
}

const COLUMNS: &str = "document_id, agent_email, filename, stored_path, content_type, size_bytes, status, \
                       progress, page_count, chunk_count, error_type, error, warnings, skipped_pages, message_id, \
                       created_at, updated_at";

/// Records a new document as `queued`.
pub async fn insert(pool: &PgPool, doc: &NewDocument<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO documents (document_id, agent_email, filename, stored_path, content_type, size_bytes, message_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(doc.document_id)
    .bind(doc.agent_email)
    .bind(doc.filename)
    .bind(doc.stored_path)
    .bind(doc.content_type)
    .bind(doc.size_bytes)
    .bind(doc.message_id)
    .execute(pool)
    .await
    .map(drop)
}

/// One document.
pub async fn get(pool: &PgPool, id: Uuid) -> Result<Option<Document>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM documents WHERE document_id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// An agent's documents, newest first.
pub async fn list_for_agent(pool: &PgPool, agent_email: &str) -> Result<Vec<Document>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM documents WHERE agent_email = $1 ORDER BY created_at DESC"
    )))
    .bind(agent_email)
    .fetch_all(pool)
    .await
}

/// Moves a document to `status` with `progress`, clearing any earlier error.
pub async fn set_progress(pool: &PgPool, id: Uuid, status: &str, progress: i16) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE documents SET status = $2, progress = $3, error_type = NULL, error = NULL, updated_at = now() \
         WHERE document_id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(progress)
    .execute(pool)
    .await
    .map(drop)
}

/// Records the page count once extraction is done.
pub async fn set_page_count(pool: &PgPool, id: Uuid, pages: Option<i32>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE documents SET page_count = $2, updated_at = now() WHERE document_id = $1")
        .bind(id)
        .bind(pages)
        .execute(pool)
        .await
        .map(drop)
}

/// Records the extraction's warnings and skipped pages (empty ones clear those of an earlier
/// ingestion).
pub async fn set_warnings(
    pool: &PgPool,
    id: Uuid,
    warnings: &[String],
    skipped_pages: &[i32],
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE documents SET warnings = $2, skipped_pages = $3, updated_at = now() WHERE document_id = $1")
        .bind(id)
        .bind(warnings)
        .bind(skipped_pages)
        .execute(pool)
        .await
        .map(drop)
}

/// Marks a document searchable.
pub async fn mark_ready(pool: &PgPool, id: Uuid, chunk_count: i32) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE documents SET status = 'ready', progress = 100, chunk_count = $2, error_type = NULL, error = NULL, \
         updated_at = now() WHERE document_id = $1",
    )
    .bind(id)
    .bind(chunk_count)
    .execute(pool)
    .await
    .map(drop)
}

/// Marks a document failed with a reason.
pub async fn mark_failed(pool: &PgPool, id: Uuid, error_type: &str, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE documents SET status = 'failed', error_type = $2, error = $3, updated_at = now() WHERE document_id = $1",
    )
    .bind(id)
    .bind(error_type)
    .bind(error)
    .execute(pool)
    .await
    .map(drop)
}

/// A document row held for writing its chunks (`FOR KEY SHARE`, released by [`ChunkWrite::finish`]
/// or on drop). While it is held, a delete of the document waits; once the document is deleted,
/// no write can take it. So chunks are never written for a deleted document — in PostgreSQL or
/// in an external vector store — and a document never answers 404 while its chunks are still
/// searchable. Progress updates of the row do not conflict with it.
#[derive(Debug)]
pub struct ChunkWrite {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

impl ChunkWrite {
    /// Releases the row.
    pub async fn finish(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// Takes the document row for a chunk write; `None` when the document no longer exists.
pub async fn lock_for_chunk_write(pool: &PgPool, id: Uuid) -> Result<Option<ChunkWrite>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found: Option<Uuid> =
        sqlx::query_scalar("SELECT document_id FROM documents WHERE document_id = $1 FOR KEY SHARE")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(found.map(|_| ChunkWrite { tx }))
}

/// A delete in progress: the row is locked (`FOR UPDATE`, after any chunk write in flight has
/// finished) until [`Deletion::commit`] deletes it — which cascades to its chunks in PostgreSQL.
/// Remove the document's chunks from an external store and its file before committing, so the
/// document stays visible for as long as any of its text is.
#[derive(Debug)]
pub struct Deletion {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    /// The row as it was when locked.
    pub document: Document,
}

impl Deletion {
    /// Deletes the row (and, by cascade, its chunks in PostgreSQL) and commits.
    pub async fn commit(mut self) -> Result<Document, sqlx::Error> {
        sqlx::query("DELETE FROM documents WHERE document_id = $1")
            .bind(self.document.document_id)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(self.document)
    }
}

/// Starts deleting a document: waits for any chunk write in flight, then locks the row. `None`
/// when there is no such document.
pub async fn begin_delete(pool: &PgPool, id: Uuid) -> Result<Option<Deletion>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let document: Option<Document> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM documents WHERE document_id = $1 FOR UPDATE"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(document.map(|document| Deletion { tx, document }))
}

/// Document counts by status (for `mailroom status`).
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM documents GROUP BY status ORDER BY status").fetch_all(pool).await
}
