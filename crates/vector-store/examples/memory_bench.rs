//! Memory, latency and recall of the PostgreSQL vector store serving many agents.
//!
//! `cargo run --release -p vector-store --example memory_bench -- CHUNKS AGENTS [QUERIES] [--keep]`
//!
//! 1. In database `mailroom_bench_memory` (recreated unless it already holds this data set),
//!    a child process writes CHUNKS chunks spread evenly over AGENTS agents: synthetic support
//!    documentation (a Zipf-distributed common vocabulary, a vocabulary per agent and a few
//!    topic words per document), 100 chunks of about 90 words per document, embedded with the
//!    default hashing embedder (`[embeddings]`: 384 dimensions), one `documents` row per
//!    document and the chunks through `PgVectorStore::replace_document` (which also writes
//!    their full-text columns). It writes QUERIES (default 20 per agent) customer questions — a
//!    few words of one chunk among common and topic words — with their exact top 10 (brute
//!    force over the agent's f32 vectors). The child does this so that its memory is not
//!    counted.
//! 2. This process then searches as the rag-generator does: the store built by
//!    `vector_store::from_settings` from `config/default.toml`, the question embedded by the
//!    hashing embedder, `top_k × 4` = 16 candidates with `rag.min_similarity`, the questions of
//!    every agent interleaved at random. It prints the first search per agent (index loads),
//!    p50/p99 of the searches one at a time and 16 at a time (the generator's concurrency),
//!    recall@10 against the exact top 10, then the production full-text search
//!    (`vector_store::LexicalSearch`, `rag.candidates` passages) and the hybrid search (both
//!    at once, as `rag_generator::retrieval::Retriever` runs them; the fusion itself is a few
//!    microseconds of sorting), one at a time, after a first search per agent (the first read
//!    of its pages), and its peak RSS (`VmHWM`).
//!
//! `--keep` leaves the database for another run (which then skips step 1); otherwise it is
//! dropped at the end.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use embedders::HashingEmbedder;
use mailroom_db::documents::{self, NewDocument};
use pipeline_core::settings::Settings;
use secrecy::SecretString;
use sqlx::Row;
use vector_store::{ChunkRecord, PgVectorStore, VectorStore, VectorStoreSettings};

const DATABASE: &str = "mailroom_bench_memory";
const DIMENSION: usize = 384;
const CHUNKS_PER_DOCUMENT: usize = 100;
/// What the rag-generator asks for: `rag.top_k` (4) × its re-rank pool (4).
const SEARCH_K: usize = 16;
const RECALL_AT: usize = 10;
/// What the rag-generator takes from each search before fusion (`rag.candidates`).
const CANDIDATES: usize = 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let result = if args.first().map(String::as_str) == Some("load") {
        let n = |i: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(0);
        runtime.block_on(load(n(1), n(2), n(3)))
    } else {
        let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
        let chunks = numbers.first().copied().unwrap_or(1_000_000);
        let agents = numbers.get(1).copied().unwrap_or(50).max(1);
        let queries = numbers.get(2).copied().unwrap_or(agents * 20);
        runtime.block_on(bench(chunks, agents, queries, args.iter().any(|a| a == "--keep")))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memory_bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn server_url() -> String {
    std::env::var("MAILROOM_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn database_url() -> SecretString {
    SecretString::from(format!("{}/{DATABASE}", server_url()))
}

fn agent(a: usize) -> String {
    format!("agent-{a:03}@bench.example")
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Whether the database already holds this data set.
async fn loaded(chunks: usize, agents: usize, queries: usize) -> bool {
    let Ok(pool) = mailroom_db::connect(&database_url(), 1).await else { return false };
    let meta: Result<(i64, i64, i64), _> =
        sqlx::query_as("SELECT chunks, agents, queries FROM bench_meta").fetch_one(&pool).await;
    pool.close().await;
    matches!(meta, Ok(m) if m == (chunks as i64, agents as i64, queries as i64))
}

async fn bench(chunks: usize, agents: usize, queries: usize, keep: bool) -> anyhow::Result<()> {
    println!("memory_bench: {chunks} chunks, {agents} agents, {queries} questions, dimension {DIMENSION}");
    if !loaded(chunks, agents, queries).await {
        mailroom_db::drop_database(&database_url()).await?;
        let started = Instant::now();
        let status = std::process::Command::new(std::env::current_exe()?)
            .args(["load", &chunks.to_string(), &agents.to_string(), &queries.to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "the loading child failed: {status}");
        println!("  data set written in {:.0} s (by a child process)", started.elapsed().as_secs_f64());
    } else {
        println!("  data set already in {DATABASE}");
    }
    let result = search(agents).await;
    if !keep {
        mailroom_db::drop_database(&database_url()).await?;
    }
    result
}

/// One question with its exact answer.
struct Question {
    agent: String,
    text: String,
    /// Keys of the exact top 10, best first, and the 10th score.
    truth: HashSet<(String, i32)>,
    tenth: f32,
}

async fn search(agents: usize) -> anyhow::Result<()> {
    let baseline = status_kb("VmRSS:");
    // Built exactly as the rag-generator builds it.
    // MAILROOM__* variables apply, to try other settings (MAILROOM__VECTOR_STORE__POSTGRES__…).
    let database = ("MAILROOM__DATABASE__URL".to_owned(), format!("{}/{DATABASE}", server_url()));
    let settings = Settings::load_from(None, std::env::vars().chain([database]))?;
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, settings.database.max_connections).await?;
    let store_settings: VectorStoreSettings = settings.section("vector_store")?;
    anyhow::ensure!(store_settings.kind == "postgres", "vector_store.kind must be postgres");
    // What `vector_store::from_settings` builds for `postgres`; kept concrete for its memory figure.
    let pg = PgVectorStore::with_settings(pool.clone(), &store_settings.postgres);
    let store: Arc<dyn VectorStore> = Arc::new(pg.clone());
    let min_score: f32 = settings.section::<f32>("rag.min_similarity")?;
    let embedder = HashingEmbedder::new(DIMENSION);

    let rows = sqlx::query(
        "SELECT agent_email, text, truth_documents, truth_chunks, tenth FROM bench_queries ORDER BY position",
    )
    .fetch_all(&pool)
    .await?;
    let mut questions = Vec::with_capacity(rows.len());
    for row in rows {
        let documents: Vec<String> = row.try_get("truth_documents")?;
        let chunks: Vec<i32> = row.try_get("truth_chunks")?;
        questions.push(Question {
            agent: row.try_get("agent_email")?,
            text: row.try_get("text")?,
            truth: documents.into_iter().zip(chunks).collect(),
            tenth: row.try_get("tenth")?,
        });
    }
    let vectors: Vec<Vec<f32>> = questions.iter().map(|q| embedder.embed_one(&q.text)).collect();

    // First search of every agent: loads its index.
    let mut loads = Vec::with_capacity(agents);
    for a in 0..agents {
        let q = questions.iter().position(|q| q.agent == agent(a)).unwrap_or(0);
        let t = Instant::now();
        store.search(&agent(a), &vectors[q], SEARCH_K, min_score).await?;
        loads.push(t.elapsed());
    }
    loads.sort();
    let total: Duration = loads.iter().sum();
    println!(
        "  first search per agent (loads its index): total {:.1} s, p50 {:.0} ms, max {:.0} ms",
        total.as_secs_f64(),
        percentile(&loads, 50.0),
        percentile(&loads, 100.0)
    );

    // One at a time, every agent's questions interleaved.
    let mut latencies = Vec::with_capacity(questions.len());
    let (mut found, mut expected) = (0usize, 0usize);
    for (q, vector) in questions.iter().zip(&vectors) {
        let t = Instant::now();
        let hits = store.search(&q.agent, vector, SEARCH_K, min_score).await?;
        latencies.push(t.elapsed());
        // Recall of the top 10 against the exact top 10 above the same floor; a hit tied with
        // the exact 10th counts as found.
        let wanted = if q.tenth >= min_score { RECALL_AT } else { q.truth.len().min(RECALL_AT) };
        expected += wanted;
        found += hits
            .iter()
            .take(wanted)
            .filter(|h| q.truth.contains(&(h.document_id.clone(), h.chunk_index as i32)) || h.score >= q.tenth)
            .count();
    }
    latencies.sort();
    println!(
        "  vector search, one at a time ({} questions over {agents} agents, k = {SEARCH_K}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 100.0)
    );
    println!(
        "  recall@{RECALL_AT} against exact search: {:.4} ({found}/{expected})",
        found as f64 / expected.max(1) as f64
    );

    // Sixteen at a time, as the generator's handlers do.
    let questions = Arc::new(questions);
    let vectors = Arc::new(vectors);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for _ in 0..16 {
        let (store, questions, vectors, next) = (store.clone(), questions.clone(), vectors.clone(), next.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(q) = questions.get(i) else { break };
                let t = Instant::now();
                store.search(&q.agent, &vectors[i], SEARCH_K, min_score).await?;
                mine.push(t.elapsed());
            }
            Ok::<_, vector_store::StoreError>(mine)
        });
    }
    let mut concurrent = Vec::new();
    while let Some(done) = tasks.join_next().await {
        concurrent.extend(done??);
    }
    concurrent.sort();
    println!(
        "  vector search, 16 at a time: {:.0} searches/s, p50 {:.2} ms, p99 {:.2} ms",
        concurrent.len() as f64 / started.elapsed().as_secs_f64(),
        percentile(&concurrent, 50.0),
        percentile(&concurrent, 99.0)
    );

    let lexical = vector_store::LexicalSearch::new(pool.clone());
    hybrid(&store, &lexical, &questions, &vectors, agents, min_score).await?;
    let (bytes, cached) = pg.memory_usage();
    println!(
        "  in-memory indexes: {:.1} MB for {cached} agents (memory_budget_mb = {}, oversampling = {}, min_candidates = {})",
        bytes as f64 / 1048576.0,
        store_settings.postgres.memory_budget_mb,
        store_settings.postgres.oversampling,
        store_settings.postgres.min_candidates
    );
    println!(
        "  memory of this process: VmHWM {:.1} MB (peak), VmRSS {:.1} MB now, {:.1} MB before connecting",
        status_kb("VmHWM:") as f64 / 1024.0,
        status_kb("VmRSS:") as f64 / 1024.0,
        baseline as f64 / 1024.0
    );
    pool.close().await;
    Ok(())
}

/// The production full-text search alone, then both searches at once (hybrid), one question at
/// a time, every agent's questions interleaved; the first search of each agent (the first read of
/// its pages) is reported on its own, as for the vector index.
async fn hybrid(
    store: &Arc<dyn VectorStore>,
    lexical: &vector_store::LexicalSearch,
    questions: &[Question],
    vectors: &[Vec<f32>],
    agents: usize,
    min_score: f32,
) -> anyhow::Result<()> {
    let mut loads = Vec::with_capacity(agents);
    for a in 0..agents {
        let Some(q) = questions.iter().find(|q| q.agent == agent(a)) else { continue };
        let t = Instant::now();
        lexical.search(&q.agent, &q.text, CANDIDATES).await?;
        loads.push(t.elapsed());
    }
    loads.sort();
    println!(
        "  first full-text search per agent: p50 {:.0} ms, max {:.0} ms",
        percentile(&loads, 50.0),
        percentile(&loads, 100.0)
    );
    let (mut text_only, mut both, mut empty) = (Vec::new(), Vec::new(), 0usize);
    for (q, vector) in questions.iter().zip(vectors) {
        let t = Instant::now();
        let hits = lexical.search(&q.agent, &q.text, CANDIDATES).await?;
        text_only.push(t.elapsed());
        empty += usize::from(hits.is_empty());
        let t = Instant::now();
        tokio::try_join!(
            store.search(&q.agent, vector, CANDIDATES, min_score),
            lexical.search(&q.agent, &q.text, CANDIDATES)
        )?;
        both.push(t.elapsed());
    }
    text_only.sort();
    both.sort();
    println!(
        "  full-text search (vector_store::LexicalSearch, {} questions, {CANDIDATES} candidates), one at a time: p50 {:.2} ms, p99 {:.2} ms ({empty} with no match)",
        text_only.len(),
        percentile(&text_only, 50.0),
        percentile(&text_only, 99.0)
    );
    println!(
        "  hybrid search (vector and full-text at once), one at a time: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&both, 50.0),
        percentile(&both, 99.0),
        percentile(&both, 100.0)
    );
    Ok(())
}

/// Step 1, in a child process: the data set, the questions and their exact answers.
async fn load(chunks: usize, agents: usize, queries: usize) -> anyhow::Result<()> {
    let url = database_url();
    mailroom_db::create_database_if_missing(&url).await?;
    let pool = mailroom_db::connect_and_migrate(&url, 5).await?;
    sqlx::query(
        "CREATE TABLE bench_queries (position INT PRIMARY KEY, agent_email TEXT NOT NULL, text TEXT NOT NULL, \
         truth_documents TEXT[] NOT NULL, truth_chunks INT[] NOT NULL, tenth REAL NOT NULL)",
    )
    .execute(&pool)
    .await?;
    let store = PgVectorStore::new(pool.clone());
    let embedder = HashingEmbedder::new(DIMENSION);
    let corpus = Corpus::new();
    let mut rng = Rng(0x5eed);
    let started = Instant::now();
    let mut position: i32 = 0;
    for a in 0..agents {
        let agent_email = agent(a);
        let count = chunks / agents + usize::from(a < chunks % agents);
        let topic: Vec<usize> = (0..2000).map(|_| rng.below(corpus.words.len())).collect();
        let mut vectors: Vec<f32> = Vec::with_capacity(count * DIMENSION);
        let mut texts = Vec::with_capacity(count);
        let mut keys = Vec::with_capacity(count);
        let mut inserts = tokio::task::JoinSet::new();
        for d in 0..count.div_ceil(CHUNKS_PER_DOCUMENT) {
            let document_id = uuid::Uuid::new_v4();
            let filename = format!("manual-{a}-{d}.pdf");
            documents::insert(
                &pool,
                &NewDocument {
                    document_id,
                    agent_email: &agent_email,
                    filename: &filename,
                    stored_path: "/dev/null",
                    content_type: "application/pdf",
                    size_bytes: 0,
                    message_id: &format!("bench-{document_id}"),
                },
            )
            .await?;
            let own: Vec<usize> = (0..30).map(|_| topic[rng.below(topic.len())]).collect();
            let mut records = Vec::new();
            for i in 0..CHUNKS_PER_DOCUMENT.min(count - d * CHUNKS_PER_DOCUMENT) {
                let len = 70 + rng.below(40);
                let text = corpus.passage(&mut rng, &topic, &own, len);
                let embedding = embedder.embed_one(&text);
                vectors.extend_from_slice(&embedding);
                keys.push((document_id.to_string(), i as i32));
                texts.push(text.clone());
                records.push(ChunkRecord {
                    document_id: document_id.to_string(),
                    chunk_index: i as u32,
                    source: filename.clone(),
                    page: Some(i as u32 / 3 + 1),
                    text,
                    embedding,
                });
            }
            if inserts.len() >= 3 {
                inserts.join_next().await.expect("a task")??;
            }
            let (store, agent_email) = (store.clone(), agent_email.clone());
            inserts.spawn(async move { store.replace_document(&agent_email, &document_id.to_string(), records).await });
        }
        while let Some(done) = inserts.join_next().await {
            done??;
        }
        // The agent's questions and their exact answers.
        let per_agent = queries / agents + usize::from(a < queries % agents);
        for _ in 0..per_agent {
            let source = rng.below(count);
            let words: Vec<&str> = texts[source].split(' ').collect();
            let start = rng.below(words.len().saturating_sub(6).max(1));
            let mut question: Vec<String> = (0..4).map(|_| corpus.common(&mut rng).to_owned()).collect();
            question.extend(words[start..(start + 6).min(words.len())].iter().map(|w| (*w).to_owned()));
            question.extend((0..3).map(|_| corpus.words[topic[rng.below(topic.len())]].clone()));
            question.push(corpus.common(&mut rng).to_owned());
            let text = question.join(" ");
            let q = embedder.embed_one(&text);
            let mut scored: Vec<(usize, f32)> = vectors
                .chunks_exact(DIMENSION)
                .enumerate()
                .map(|(row, v)| (row, v.iter().zip(&q).map(|(x, y)| x * y).sum()))
                .collect();
            scored.sort_unstable_by(|x, y| y.1.total_cmp(&x.1));
            scored.truncate(RECALL_AT);
            sqlx::query(
                "INSERT INTO bench_queries (position, agent_email, text, truth_documents, truth_chunks, tenth) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(position)
            .bind(&agent_email)
            .bind(&text)
            .bind(scored.iter().map(|(row, _)| keys[*row].0.clone()).collect::<Vec<_>>())
            .bind(scored.iter().map(|(row, _)| keys[*row].1).collect::<Vec<_>>())
            .bind(scored.last().map_or(0.0, |s| s.1))
            .execute(&pool)
            .await?;
            position += 1;
        }
        if a % 10 == 9 || a + 1 == agents {
            eprintln!("  loader: {} agents written in {:.0} s", a + 1, started.elapsed().as_secs_f64());
        }
    }
    // Questions interleaved across agents, in a fixed random order.
    sqlx::query("UPDATE bench_queries SET position = -1 - position").execute(&pool).await?;
    sqlx::query(
        "UPDATE bench_queries b SET position = r.n FROM \
         (SELECT position, row_number() OVER (ORDER BY md5(position::text)) - 1 AS n FROM bench_queries) r \
         WHERE b.position = r.position",
    )
    .execute(&pool)
    .await?;
    let t = Instant::now();
    sqlx::query("VACUUM ANALYZE chunks").execute(&pool).await?;
    eprintln!("  loader: VACUUM ANALYZE in {:.0} s", t.elapsed().as_secs_f64());
    sqlx::query("CREATE TABLE bench_meta AS SELECT $1::bigint AS chunks, $2::bigint AS agents, $3::bigint AS queries")
        .bind(chunks as i64)
        .bind(agents as i64)
        .bind(queries as i64)
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}

/// Synthetic support documentation: pseudo-words with Zipf frequencies.
struct Corpus {
    words: Vec<String>,
    /// Cumulative Zipf weights of `words`.
    cumulative: Vec<f64>,
}

impl Corpus {
    fn new() -> Self {
        const SYLLABLES: [&str; 24] = [
            "ka", "to", "ri", "sen", "mo", "la", "vi", "dor", "pe", "nu", "shi", "gra", "te", "bo", "lin", "fa", "qu",
            "zo", "mer", "da", "ple", "cor", "ti", "wan",
        ];
        let mut rng = Rng(0xc0ffee);
        let mut seen = HashSet::new();
        let mut words = Vec::new();
        while words.len() < 30_000 {
            let n = 1 + rng.below(4);
            let w: String = (0..n).map(|_| SYLLABLES[rng.below(SYLLABLES.len())]).collect();
            if seen.insert(w.clone()) {
                words.push(w);
            }
        }
        let mut total = 0.0;
        let cumulative = (0..words.len())
            .map(|r| {
                total += 1.0 / (r as f64 + 1.0).powf(1.05);
                total
            })
            .collect();
        Self { words, cumulative }
    }

    /// A word of the common vocabulary, Zipf-distributed.
    fn common(&self, rng: &mut Rng) -> &str {
        let x = rng.unit() * self.cumulative.last().copied().unwrap_or(1.0);
        let i = self.cumulative.partition_point(|c| *c < x);
        &self.words[i.min(self.words.len() - 1)]
    }

    /// About `len` words: half common, a third from the agent's vocabulary, the rest from the
    /// document's own topic words.
    fn passage(&self, rng: &mut Rng, topic: &[usize], own: &[usize], len: usize) -> String {
        let mut out = Vec::with_capacity(len);
        for _ in 0..len {
            let roll = rng.below(6);
            out.push(match roll {
                0..=2 => self.common(rng),
                3 | 4 => &self.words[topic[rng.below(topic.len())]],
                _ => &self.words[own[rng.below(own.len())]],
            });
        }
        out.join(" ")
    }
}

/// A tiny xorshift generator: the benchmark needs reproducible data, not good randomness.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
