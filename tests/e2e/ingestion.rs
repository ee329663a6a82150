//! Document ingestion end to end: the real `upload-api` and `doc-ingester` binaries, the real
//! broker and database, the sample knowledge base and a corpus of bad and hostile uploads.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use embedders::{Embedder, HashingEmbedder};
use mailroom_tests::{TestVhost, bin_path, signal, wait_for};
use pipeline_core::worker_env::{WorkerEnv, env_var};
use serde_json::Value;
use vector_store::{PgVectorStore, VectorStore};

use crate::stack::{AGENT_A, AGENT_B, TOKEN, fixture, knowledge, start};

#[tokio::test]
async fn three_documents_for_two_agents_become_searchable_only_by_their_agent() {
    let stack = start(Vec::new()).await;
    let mut ids = Vec::new();
    for (agent, file) in
        [(AGENT_A, "lift-pro-user-manual.pdf"), (AGENT_A, "shipping-faq.md"), (AGENT_B, "warranty-and-returns.pdf")]
    {
        let (status, body) = stack.upload_file(agent, &knowledge(file)).await;
        assert_eq!(status, 202, "{file}: {body}");
        assert!(body["message_id"].is_string());
        ids.push((agent, file, body["document_id"].as_str().expect("id").to_owned()));
    }
    for (_, file, id) in &ids {
        let doc = stack.settled(id).await;
        assert_eq!(doc["status"], "ready", "{file}: {doc}");
        assert_eq!(doc["progress"], 100);
        assert!(doc["chunk_count"].as_i64().expect("count") > 0);
    }
    let manual = stack.document(&ids[0].2).await;
    assert_eq!(manual["page_count"], 11);
    assert_eq!(manual["content_type"], "application/pdf");

    // Retrieval, the way the generator will do it.
    let store = PgVectorStore::new(stack.pool().await);
    let embedder = HashingEmbedder::new(384);
    let query = vec!["Control panel communication error: the control box does not receive signals".to_owned()];
    let q = embedder.embed(&query).await.expect("embed").remove(0);
    let hits = store.search(AGENT_A, &q, 5, 0.0).await.expect("search");
    assert_eq!(hits[0].source, "lift-pro-user-manual.pdf", "{hits:?}");
    assert!(hits[0].text.contains("E04"), "{}", hits[0].text);
    assert!(hits[0].page.is_some());
    let other = store.search(AGENT_B, &q, 50, -1.0).await.expect("search");
    assert!(!other.is_empty(), "agent B has its own document");
    assert!(other.iter().all(|h| h.source == "warranty-and-returns.pdf"), "agent B sees only its text: {other:?}");

    // Listing is per agent; deleting removes file, record and chunks.
    let list = stack.list(AGENT_A).await;
    assert_eq!(list.len(), 2);
    let stored = stack.storage.path.read_dir().expect("storage").count();
    let r = stack
        .http
        .delete(format!("{}/documents/{}", stack.base, ids[0].2))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 204);
    let r =
        stack.http.get(format!("{}/documents/{}", stack.base, ids[0].2)).bearer_auth(TOKEN).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(stack.storage.path.read_dir().expect("storage").count(), stored - 1);
    let hits = store.search(AGENT_A, &q, 5, 0.0).await.expect("search");
    assert!(hits.iter().all(|h| h.source != "lift-pro-user-manual.pdf"), "{hits:?}");
}

#[tokio::test]
async fn bad_and_hostile_uploads_are_refused_or_fail_with_a_reason_and_nothing_crashes() {
    let mut stack = start(Vec::new()).await;
    let http = &stack.http;
    let url = format!("{}/documents", stack.base);

    // Authentication.
    let r = http.get(format!("{url}?agent_email={AGENT_A}")).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let r = http.get(format!("{url}?agent_email={AGENT_A}")).bearer_auth("wrong").send().await.expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.expect("json error body");
    assert!(body["error"].is_string());

    // Refused at upload.
    let r = http.post(&url).bearer_auth(TOKEN).send().await.expect("empty body");
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.json::<Value>().await.expect("json")["error"].as_str().expect("msg").contains("multipart"));
    let (status, body) = stack.upload(AGENT_A, "empty.txt", Vec::new()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("the file is empty")));
    let (status, body) = stack.upload(AGENT_A, "huge.txt", vec![b'a'; 30 * 1024 * 1024]).await;
    assert_eq!(status, 413, "{body}");
    let (status, body) = stack.upload_file(AGENT_A, &fixture("not-a-pdf.pdf")).await;
    assert_eq!(status, 415, "{body}");
    let (status, _) = stack.upload_file(AGENT_A, &fixture("binary-garbage.txt")).await;
    assert_eq!(status, 415);
    let (status, _) = stack.upload("not an address", "a.txt", b"hello".to_vec()).await;
    assert_eq!(status, 400);

    // A path in the file name is only metadata.
    let (status, body) = stack.upload(AGENT_A, "../../etc/passwd", b"root:x:0:0 is not our business".to_vec()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["filename"], "passwd");
    let passwd_id = body["document_id"].as_str().expect("id").to_owned();
    let stored: Vec<PathBuf> = stack.storage.path.read_dir().expect("dir").map(|e| e.expect("entry").path()).collect();
    assert!(stored.iter().all(|p| p.starts_with(&stack.storage.path)));
    assert!(stored.iter().any(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&passwd_id))));

    // Accepted, then failed by the ingester with a reason.
    let mut expectations = Vec::new();
    for (file, error_types) in [
        ("truncated.pdf", &["MalformedPdf"][..]),
        ("encrypted.pdf", &["EncryptedPdf"]),
        ("zero-pages.pdf", &["NoExtractableText"]),
        ("empty-text.pdf", &["NoExtractableText"]),
        ("many-pages.pdf", &["TooManyPages"]),
        // The parser reads this page's text without touching the nested object: ready is fine
        // too, as long as nothing crashes or hangs.
        ("deep-nesting.pdf", &["ready", "NoExtractableText", "MalformedPdf", "ExtractionCrashed"]),
        ("decompression-bomb.pdf", &["ExtractionCrashed", "ExtractionTimeout", "ExtractedTextTooLarge"]),
    ] {
        let (status, body) = stack.upload_file(AGENT_A, &fixture(file)).await;
        assert_eq!(status, 202, "{file}: {body}");
        expectations.push((file, error_types, body["document_id"].as_str().expect("id").to_owned()));
    }
    let mut failures = 0;
    for (file, outcomes, id) in &expectations {
        let doc = stack.settled(id).await;
        if doc["status"] == "ready" && outcomes.contains(&"ready") {
            continue;
        }
        assert_eq!(doc["status"], "failed", "{file}: {doc}");
        let error_type = doc["error_type"].as_str().expect("error_type");
        assert!(outcomes.contains(&error_type), "{file}: {error_type} ({doc})");
        assert!(!doc["error"].as_str().expect("reason").is_empty());
        failures += 1;
    }
    assert!(stack.ingester.try_wait().expect("status").is_none(), "the ingester is still running");

    // Good documents afterwards are ingested normally (Latin-1 text included).
    assert_eq!(stack.settled(&passwd_id).await["status"], "ready");
    let (_, body) = stack.upload_file(AGENT_A, &fixture("latin1.txt")).await;
    assert_eq!(stack.settled(body["document_id"].as_str().expect("id")).await["status"], "ready");
    let (_, body) = stack.upload_file(AGENT_A, &knowledge("app-troubleshooting.txt")).await;
    let doc = stack.settled(body["document_id"].as_str().expect("id")).await;
    assert_eq!(doc["status"], "ready", "{doc}");

    // Every failure is also a dead letter naming its reason.
    let pool = stack.pool().await;
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM documents WHERE status = 'failed'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(failed, failures);
    let conn = lapin_connect(&stack.vhost).await;
    let ch = conn.create_channel().await.expect("channel");
    let mut dead = Vec::new();
    while let Some(m) = ch.basic_get("dead_letter_queue".into(), Default::default()).await.expect("get") {
        dead.push(serde_json::from_slice::<Value>(&m.delivery.data).expect("envelope"));
    }
    assert_eq!(dead.len() as i64, failures);
    assert!(
        dead.iter()
            .all(|d| d["original_queue"] == "documents.to_ingest" && d["failure_info"]["error_type"].is_string())
    );
    let _ = stack.api.kill().await;
}

async fn lapin_connect(vhost: &TestVhost) -> lapin::Connection {
    lapin::Connection::connect(&vhost.amqp_url(), lapin::ConnectionProperties::default()).await.expect("connect")
}

/// An OpenAI-compatible embeddings server that answers slowly, so an ingestion takes long
/// enough to be killed halfway.
async fn slow_embeddings_server(delay: Duration, calls: Arc<AtomicU64>) -> String {
    use axum::{Json, Router, routing::post};
    let app = Router::new().route(
        "/v1/embeddings",
        post(move |Json(body): Json<Value>| {
            let calls = calls.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let inputs = body["input"].as_array().cloned().unwrap_or_default();
                let embedder = HashingEmbedder::new(384);
                let texts: Vec<String> = inputs.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect();
                let vectors = embedder.embed(&texts).await.expect("hash");
                let data: Vec<Value> = vectors
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| serde_json::json!({"object": "embedding", "index": i, "embedding": v}))
                    .collect();
                Json(serde_json::json!({"object": "list", "data": data, "model": "fake",
                    "usage": {"prompt_tokens": 1, "total_tokens": 1}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn an_ingester_killed_mid_document_finishes_it_after_restart_without_duplicate_chunks() {
    let calls = Arc::new(AtomicU64::new(0));
    let base_url = slow_embeddings_server(Duration::from_millis(150), calls.clone()).await;
    let mut stack = start(
        WorkerEnv::new()
            .set("embeddings.provider", "openai")
            .set("embeddings.openai.base_url", base_url)
            .set("embeddings.batch_size", "2")
            .build(),
    )
    .await;
    let (status, body) = stack.upload_file(AGENT_A, &knowledge("lift-pro-user-manual.pdf")).await;
    assert_eq!(status, 202);
    let id = body["document_id"].as_str().expect("id").to_owned();
    wait_for(Duration::from_secs(60), "embedding to be under way", || async {
        let doc = stack.document(&id).await;
        (doc["status"] == "embedding" && doc["progress"].as_i64().unwrap_or(0) > 25).then_some(())
    })
    .await;
    signal(&stack.ingester, "KILL");
    let _ = stack.ingester.wait().await;
    let doc = stack.document(&id).await;
    assert_eq!(doc["status"], "embedding", "killed mid-document: {doc}");
    let calls_before = calls.load(Ordering::SeqCst);

    stack.ingester = stack.spawn_ingester();
    let doc = stack.settled(&id).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["progress"], 100);
    assert!(calls.load(Ordering::SeqCst) > calls_before, "the redelivered message was ingested again");
    let pool = stack.pool().await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT chunk_index) FROM chunks WHERE document_id = $1")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(rows, doc["chunk_count"].as_i64().expect("chunk_count"));
    assert_eq!(rows, distinct, "no duplicate chunks");
    let indexes: HashSet<i32> = sqlx::query_scalar("SELECT chunk_index FROM chunks WHERE document_id = $1")
        .bind(&id)
        .fetch_all(&pool)
        .await
        .expect("indexes")
        .into_iter()
        .collect();
    assert_eq!(indexes, (0..rows as i32).collect::<HashSet<_>>());
}

#[tokio::test]
async fn agent_addresses_match_case_insensitively_from_upload_to_retrieval() {
    let stack = start(Vec::new()).await;
    let (status, body) = stack.upload_file("  Support@NorthWind.Example ", &knowledge("shipping-faq.md")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["document_id"].as_str().expect("id").to_owned();
    let doc = stack.settled(&id).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["agent_email"], AGENT_A, "stored in its canonical (lower-case) form");
    let list = stack.list("SUPPORT@northwind.EXAMPLE").await;
    assert_eq!(list.len(), 1, "listed whatever the case of the query: {list:?}");
    // Mail to `support@…` finds what was uploaded for `Support@…`: the generator searches with
    // the message's agent, which every message body canonicalises.
    let msg: pipeline_core::messages::DocumentToIngest = serde_json::from_value(serde_json::json!({
        "message_id": "m", "timestamp": "2025-12-06T17:00:00Z", "document_id": id, "filename": "f",
        "file_path": "/x", "file_size_bytes": 1, "uploaded_by": "u", "agent_email": "SUPPORT@Northwind.example",
        "metadata": {}
    }))
    .expect("message");
    let store = PgVectorStore::new(stack.pool().await);
    let q =
        HashingEmbedder::new(384).embed(&["How long does shipping take?".to_owned()]).await.expect("embed").remove(0);
    let hits = store.search(&msg.agent_email, &q, 3, 0.0).await.expect("search");
    assert!(!hits.is_empty() && hits.iter().all(|h| h.source == "shipping-faq.md"), "{hits:?}");
}

#[tokio::test]
async fn mailroom_ingest_uploads_and_follows_documents_until_settled() {
    let stack = start(Vec::new()).await;
    let mailroom = bin_path("mailroom");
    let files = [knowledge("shipping-faq.md"), knowledge("app-troubleshooting.txt")];
    let mut args = vec!["ingest"];
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    args.extend(["--agent", AGENT_B, "--url", &stack.base]);
    let (code, out) = mailroom_tests::run(&mailroom, &args, &stack.env()).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("ready,") && l.contains("chunks")).count(), 2, "{out}");

    let bad = fixture("not-a-pdf.pdf").display().to_string();
    let (code, out) =
        mailroom_tests::run(&mailroom, &["ingest", &bad, "--agent", AGENT_B, "--url", &stack.base], &stack.env()).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rejected (415"), "{out}");
}

#[tokio::test]
async fn mailroom_ingest_with_a_token_from_mailroom_token_create_uploads_for_its_agent_only() {
    let stack = start(Vec::new()).await;
    let mailroom = bin_path("mailroom");
    let (code, token, said) =
        mailroom_tests::run_split(&mailroom, &["token", "create", "--agent", AGENT_A], &stack.env()).await;
    assert_eq!(code, 0, "{token}{said}");
    // The CLI sends the `upload_api.token` of its own settings.
    let mut env = stack.env();
    env.retain(|(key, _)| *key != env_var("upload_api.token"));
    env.push((env_var("upload_api.token"), token.trim().to_owned()));
    let file = knowledge("shipping-faq.md").display().to_string();
    let (code, out) =
        mailroom_tests::run(&mailroom, &["ingest", &file, "--agent", AGENT_A, "--url", &stack.base], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ready,"), "{out}");
    let (code, out) =
        mailroom_tests::run(&mailroom, &["ingest", &file, "--agent", AGENT_B, "--url", &stack.base], &env).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("rejected (403 Forbidden)") && out.contains(AGENT_B), "{out}");
    assert_eq!(stack.list(AGENT_A).await.len(), 1);
    assert!(stack.list(AGENT_B).await.is_empty(), "nothing stored for the other agent");
}

/// The full-text terms of a document's chunks, in order.
async fn full_text_terms(pool: &sqlx::PgPool, id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT tsv::text FROM chunks WHERE document_id = $1 ORDER BY chunk_index")
        .bind(id)
        .fetch_all(pool)
        .await
        .expect("chunks' terms")
}

#[tokio::test]
async fn an_ingester_starting_analyses_chunks_of_an_older_full_text_analysis_again() {
    let mut stack = start(Vec::new()).await;
    let (status, body) = stack.upload_file(AGENT_A, &knowledge("shipping-faq.md")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["document_id"].as_str().expect("id").to_owned();
    assert_eq!(stack.settled(&id).await["status"], "ready");
    let pool = stack.pool().await;
    let fresh = full_text_terms(&pool, &id).await;
    // As a release with an older analysis left them.
    signal(&stack.ingester, "KILL");
    let _ = stack.ingester.wait().await;
    sqlx::query("UPDATE chunks SET tsv = to_tsvector('simple', text), text_analysis = 1 WHERE document_id = $1")
        .bind(&id)
        .execute(&pool)
        .await
        .expect("age the rows");
    let aged = full_text_terms(&pool, &id).await;
    assert_ne!(aged, fresh, "`simple` keeps stop words and does not stem");

    stack.ingester = stack.spawn_ingester();
    wait_for(Duration::from_secs(60), "the chunks to be analysed again", || async {
        let outdated: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks WHERE text_analysis < $1")
            .bind(vector_store::lexical::ANALYSIS_VERSION)
            .fetch_one(&pool)
            .await
            .expect("count");
        (outdated == 0).then_some(())
    })
    .await;
    let again = full_text_terms(&pool, &id).await;
    assert_eq!(again, fresh);
}
