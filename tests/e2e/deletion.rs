//! Deleting a document while it is being ingested: no chunk may outlive the document, and the
//! document may not disappear (404) while any of its chunks is still searchable. Runs the real
//! ingestion code (the handler's single step, with the real extractor child) and the upload
//! API's delete against a real database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use doc_ingester::{IngestHandler, Ingester};
use mailroom_db::documents::{self, NewDocument};
use mailroom_tests::{TestDb, TestDir, bin_path, wait_for};
use pipeline_core::messages::{DocumentMetadata, DocumentToIngest, new_message_id, now};
use pipeline_core::worker_env::WorkerEnv;
use pipeline_core::{DeliveryMeta, Handler as _};
use sqlx::PgPool;
use uuid::Uuid;

use crate::stack::knowledge;

const AGENT: &str = "support@northwind.example";

struct Setup {
    _db: TestDb,
    storage: TestDir,
    pool: PgPool,
    settings: pipeline_core::Settings,
}

async fn setup() -> Setup {
    let db = TestDb::create().await;
    let storage = TestDir::create();
    let env =
        WorkerEnv::new().set("database.url", db.url()).set("storage.dir", storage.path.display().to_string()).owned();
    let settings = pipeline_core::Settings::load_from(None, env).expect("settings");
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 8).await.expect("database");
    Setup { _db: db, storage, pool, settings }
}

/// Stores the sample manual as a new `queued` document and returns its id and ingest message.
async fn queued_document(s: &Setup) -> (Uuid, DocumentToIngest) {
    let id = Uuid::new_v4();
    let path = s.storage.path.join(format!("{id}.pdf"));
    std::fs::copy(knowledge("lift-pro-user-manual.pdf"), &path).expect("copy");
    let path = path.display().to_string();
    let message_id = new_message_id();
    let record = NewDocument {
        document_id: id,
        agent_email: AGENT,
        filename: "lift-pro-user-manual.pdf",
        stored_path: &path,
        content_type: "application/pdf",
        size_bytes: 1,
        message_id: &message_id,
    };
    documents::insert(&s.pool, &record).await.expect("insert");
    let msg = DocumentToIngest {
        message_id,
        timestamp: now(),
        document_id: id.to_string(),
        filename: "lift-pro-user-manual.pdf".into(),
        file_path: path,
        file_size_bytes: 1,
        uploaded_by: AGENT.into(),
        agent_email: AGENT.into(),
        metadata: DocumentMetadata { upload_source: Some("test".into()), content_type: Some("application/pdf".into()) },
    };
    (id, msg)
}

async fn chunk_count(pool: &PgPool, id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM chunks WHERE document_id = $1")
        .bind(id.to_string())
        .fetch_one(pool)
        .await
        .expect("count")
}

/// Watches, in one snapshot at a time, that a document without a row has no chunk: the API
/// answers 404 only when nothing of the document can be retrieved any more.
fn watch_404_with_chunks(pool: PgPool, id: Uuid, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut violations = 0;
        while !stop.load(Ordering::Relaxed) {
            let (row, chunks): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM documents WHERE document_id = $1), \
                        (SELECT count(*) FROM chunks WHERE document_id = $1::text)",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("snapshot");
            if row == 0 && chunks > 0 {
                violations += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        violations
    })
}

#[tokio::test]
async fn deleting_during_a_slow_extraction_leaves_no_chunks_and_drops_the_ingestion() {
    let s = setup().await;
    // The real extractor, started a moment late: a large document's extraction, made
    // deterministic. (The child runs with a cleared environment, so the path is absolute.)
    let slow = s.storage.path.join("slow-extractor.sh");
    std::fs::write(&slow, format!("#!/bin/sh\n/bin/sleep 2\nexec '{}' \"$@\"\n", bin_path("doc-ingester").display()))
        .expect("script");
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let ingester = Ingester::from_settings(&s.settings, s.pool.clone()).expect("ingester").with_extractor(slow);
    let store = ingester.store().clone();
    let handler = Arc::new(IngestHandler::new(ingester));
    let (id, msg) = queued_document(&s).await;

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_404_with_chunks(s.pool.clone(), id, stop.clone());
    let ingestion = {
        let handler = handler.clone();
        tokio::spawn(async move { handler.handle(msg, &DeliveryMeta::default()).await })
    };
    wait_for(Duration::from_secs(20), "the extraction to start", || async {
        let doc = documents::get(&s.pool, id).await.expect("get").expect("row");
        (doc.status == "extracting").then_some(())
    })
    .await;
    let deleted = upload_api::delete_document(&s.pool, store.as_ref(), id).await.expect("delete");
    assert_eq!(deleted.document_id, id);

    let outcome =
        tokio::time::timeout(Duration::from_secs(60), ingestion).await.expect("ingestion ends").expect("join");
    let outgoing = outcome.expect("a deleted document is dropped, not dead-lettered or retried");
    assert!(outgoing.is_empty());
    stop.store(true, Ordering::Relaxed);
    assert_eq!(watcher.await.expect("watcher"), 0, "the document was 404 while chunks were searchable");
    assert_eq!(chunk_count(&s.pool, id).await, 0, "no chunk outlives its document");
    assert!(documents::get(&s.pool, id).await.expect("get").is_none());
}

#[tokio::test]
async fn a_delete_waits_for_a_chunk_write_in_flight_then_removes_what_it_wrote() {
    let s = setup().await;
    let ingester = Ingester::from_settings(&s.settings, s.pool.clone())
        .expect("ingester")
        .with_extractor(bin_path("doc-ingester"));
    let store = ingester.store().clone();
    let (id, msg) = queued_document(&s).await;

    // An ingester between "lock the row" and "chunks committed", as `Ingester::ingest` is.
    let write = documents::lock_for_chunk_write(&s.pool, id).await.expect("lock").expect("row exists");
    let delete = {
        let (pool, store) = (s.pool.clone(), store.clone());
        tokio::spawn(async move { upload_api::delete_document(&pool, store.as_ref(), id).await.map(drop) })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!delete.is_finished(), "the delete waits for the chunk write");
    assert!(documents::get(&s.pool, id).await.expect("get").is_some(), "still listed while its write is in flight");
    let chunk = vector_store::ChunkRecord {
        document_id: id.to_string(),
        chunk_index: 0,
        source: "lift-pro-user-manual.pdf".into(),
        page: Some(1),
        text: "E04 means the control box lost the panel.".into(),
        embedding: vec![1.0, 0.0, 0.0, 0.0],
    };
    store.replace_document(AGENT, &id.to_string(), vec![chunk]).await.expect("chunks written");
    write.finish().await.expect("release");

    tokio::time::timeout(Duration::from_secs(10), delete).await.expect("delete ends").expect("join").expect("deleted");
    assert_eq!(chunk_count(&s.pool, id).await, 0, "the delete removed the chunks written before it");
    assert!(documents::lock_for_chunk_write(&s.pool, id).await.expect("lock").is_none(), "no write after the delete");
    // An ingestion of the deleted document (a redelivery) stores nothing and is not a failure.
    let handler = IngestHandler::new(ingester);
    let outgoing = handler.handle(msg, &DeliveryMeta::default()).await.expect("dropped");
    assert!(outgoing.is_empty());
    assert_eq!(chunk_count(&s.pool, id).await, 0);
}

#[tokio::test]
async fn chunks_cannot_be_written_for_a_document_that_does_not_exist() {
    let s = setup().await;
    let store = vector_store::PgVectorStore::new(s.pool.clone());
    let orphan = vector_store::ChunkRecord {
        document_id: Uuid::new_v4().to_string(),
        chunk_index: 0,
        source: "ghost.pdf".into(),
        page: None,
        text: "orphan".into(),
        embedding: vec![1.0, 0.0],
    };
    let err = vector_store::VectorStore::replace_document(&store, AGENT, &orphan.document_id.clone(), vec![orphan])
        .await
        .expect_err("the foreign key refuses chunks of no document");
    assert!(!err.is_transient(), "{err}");
}
