//! Ingestion and search benchmark.
//!
//! `cargo run --release -p doc-ingester --example ingest_bench -- [MIN_PAGES] [CHUNKS]`
//!
//! 1. Ingests the sample PDFs of `examples/knowledge/` again and again until at least
//!    MIN_PAGES (default 500) pages went through the whole pipeline of the worker — isolated
//!    extraction in a child process, chunking, hashing embeddings, storing in PostgreSQL, with
//!    the document's progress updates — one document at a time as the worker does, and prints
//!    pages/s and chunks/s.
//! 2. Stores CHUNKS (default 100,000) chunks of dimension 384 for one agent and prints the
//!    p50/p99 latency of 100 searches (top 5), after one warm-up search that loads the index.
//!
//! Runs in a throw-away database (and vhost-free: no broker needed).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use doc_ingester::Ingester;
use mailroom_db::documents::{self, NewDocument};
use mailroom_tests::{TestDb, TestDir, repo_root};
use pipeline_core::messages::{DocumentMetadata, DocumentToIngest, new_message_id, now};
use pipeline_core::settings::Settings;
use uuid::Uuid;
use vector_store::{ChunkRecord, PgVectorStore, VectorStore};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(doc_ingester::extract::CHILD_COMMAND) {
        return doc_ingester::extract::child_main(&args[1..]);
    }
    let min_pages: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(500);
    let chunks: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    match runtime.block_on(bench(min_pages, chunks)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ingest_bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn bench(min_pages: usize, chunk_count: usize) -> anyhow::Result<()> {
    let db = TestDb::create().await;
    let storage = TestDir::create();
    let settings = Settings::load_from(
        None,
        [
            ("MAILROOM__DATABASE__URL".to_owned(), db.url()),
            ("MAILROOM__STORAGE__DIR".to_owned(), storage.path.display().to_string()),
        ],
    )?;
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await?;
    let ingester = Ingester::from_settings(&settings, pool.clone())?;

    let pdfs: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples/knowledge"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    let mut stored = Vec::new();
    for pdf in &pdfs {
        let target = storage.path.join(pdf.file_name().expect("name"));
        std::fs::copy(pdf, &target)?;
        stored.push(target);
    }
    println!("ingest_bench: PDFs {:?}", pdfs.iter().map(|p| p.file_name().unwrap_or_default()).collect::<Vec<_>>());

    let agent = "bench@northwind.example";
    let (mut pages, mut chunks, mut documents_done) = (0, 0, 0);
    let started = Instant::now();
    while pages < min_pages {
        for path in &stored {
            let id = Uuid::new_v4();
            let path_str = path.display().to_string();
            let filename = path.file_name().unwrap_or_default().to_string_lossy().into_owned();
            let message_id = new_message_id();
            documents::insert(
                &pool,
                &NewDocument {
                    document_id: id,
                    agent_email: agent,
                    filename: &filename,
                    stored_path: &path_str,
                    content_type: "application/pdf",
                    size_bytes: 0,
                    message_id: &message_id,
                },
            )
            .await?;
            let msg = DocumentToIngest {
                message_id,
                timestamp: now(),
                document_id: id.to_string(),
                filename,
                file_path: path_str,
                file_size_bytes: 0,
                uploaded_by: agent.to_owned(),
                agent_email: agent.to_owned(),
                metadata: DocumentMetadata { upload_source: Some("bench".into()), content_type: None },
            };
            let done = ingester.ingest(id, &msg, "application/pdf").await?;
            pages += done.pages;
            chunks += done.chunks;
            documents_done += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  ingestion: {documents_done} documents, {pages} pages, {chunks} chunks in {secs:.2} s = {:.0} pages/s, {:.0} chunks/s (target: >= 150 pages/s)",
        pages as f64 / secs,
        chunks as f64 / secs
    );

    // Search latency over a large store.
    let store = PgVectorStore::new(pool.clone());
    let dim = 384;
    let mut rng = fastrand_like(42);
    let search_agent = "search-bench@northwind.example";
    let per_document = 1000;
    let load_started = Instant::now();
    for d in 0..chunk_count.div_ceil(per_document) {
        let document_id = format!("bench-doc-{d}");
        let records: Vec<ChunkRecord> = (0..per_document.min(chunk_count - d * per_document))
            .map(|i| ChunkRecord {
                document_id: document_id.clone(),
                chunk_index: i as u32,
                source: format!("manual-{d}.pdf"),
                page: Some((i / 3) as u32 + 1),
                text: format!("Synthetic passage {i} of document {d} about desks, warranties and shipping."),
                embedding: unit_vector(&mut rng, dim),
            })
            .collect();
        store.replace_document(search_agent, &document_id, records).await?;
    }
    println!("  stored {chunk_count} chunks of dimension {dim} in {:.1} s", load_started.elapsed().as_secs_f64());
    let warm = Instant::now();
    store.search(search_agent, &unit_vector(&mut rng, dim), 5, 0.0).await?;
    println!("  first search (loads the agent's index into memory): {:.1} ms", warm.elapsed().as_secs_f64() * 1000.0);
    let mut latencies = Vec::with_capacity(100);
    for _ in 0..100 {
        let q = unit_vector(&mut rng, dim);
        let t = Instant::now();
        let hits = store.search(search_agent, &q, 5, 0.0).await?;
        latencies.push(t.elapsed());
        assert_eq!(hits.len(), 5);
    }
    latencies.sort();
    println!(
        "  search over {chunk_count} chunks: p50 {:.2} ms, p99 {:.2} ms (target: p99 < 20 ms)",
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0,
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0
    );
    pool.close().await;
    Ok(())
}

/// A tiny xorshift generator: the benchmark needs reproducible vectors, not good randomness.
struct Rng(u64);

fn fastrand_like(seed: u64) -> Rng {
    Rng(seed.max(1))
}

impl Rng {
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

fn unit_vector(rng: &mut Rng, dim: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dim).map(|_| rng.next_f32()).collect();
    embedders::normalize(&mut v);
    v
}
