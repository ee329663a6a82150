//! The PostgreSQL store against a real, throw-away database: agent scoping, cache invalidation
//! by version, chunks deleted behind the cache, lexical-only rows, dimension mismatches, the
//! memory budget's evictions, and exactness when the candidates cover every chunk.

use mailroom_tests::TestDb;
use secrecy::SecretString;
use sqlx::PgPool;
use vector_store::{ChunkRecord, PgVectorStore, PostgresSettings, VectorStore};

const DIM: usize = 32;

/// Document names the tests use; each gets a `documents` row, since chunks belong to one.
const DOCUMENTS: [&str; 11] =
    ["doc", "doc-a", "doc-b", "doc-b2", "lexical", "doc-0", "doc-1", "doc-2", "doc-3", "doc-4", "doc-5"];

/// The document id of a test document name (a UUID derived from the name).
fn id(name: &str) -> String {
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    uuid::Uuid::from_u64_pair(hash, hash.rotate_left(17)).to_string()
}

async fn pool(db: &TestDb) -> PgPool {
    let pool = mailroom_db::connect_and_migrate(&SecretString::from(db.url()), 4).await.expect("database");
    for name in DOCUMENTS {
        sqlx::query(
            "INSERT INTO documents (document_id, agent_email, filename, stored_path, content_type, size_bytes) \
             VALUES ($1::uuid, 'a@x', $2, '', 'text/plain', 0)",
        )
        .bind(id(name))
        .bind(name)
        .execute(&pool)
        .await
        .expect("document row");
    }
    pool
}

/// Reproducible unit vectors.
struct Rng(u64);

impl Rng {
    fn vector(&mut self) -> Vec<f32> {
        let mut v: Vec<f32> = (0..DIM)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= n);
        v
    }
}

fn chunks(document_id: &str, vectors: &[Vec<f32>]) -> Vec<ChunkRecord> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| ChunkRecord {
            document_id: document_id.to_owned(),
            chunk_index: i as u32,
            source: format!("{document_id}.pdf"),
            page: Some(i as u32 + 1),
            text: format!("chunk {i} of {document_id}"),
            embedding: v.clone(),
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn searches_stay_within_the_agent_and_follow_every_write() {
    let db = TestDb::create().await;
    let store = PgVectorStore::new(pool(&db).await);
    let mut rng = Rng(3);
    let a: Vec<Vec<f32>> = (0..40).map(|_| rng.vector()).collect();
    let b: Vec<Vec<f32>> = (0..40).map(|_| rng.vector()).collect();
    store.replace_document("a@x", &id("doc-a"), chunks(&id("doc-a"), &a)).await.expect("store a");
    store.replace_document("b@x", &id("doc-b"), chunks(&id("doc-b"), &b)).await.expect("store b");

    let hits = store.search("a@x", &b[0], 100, -1.0).await.expect("search");
    assert_eq!(hits.len(), 40);
    assert!(hits.iter().all(|h| h.document_id == id("doc-a")), "agent a sees only its chunks");
    let hits = store.search("b@x", &b[0], 3, -1.0).await.expect("search");
    assert_eq!((hits[0].document_id.clone(), hits[0].chunk_index), (id("doc-b"), 0));
    assert!((hits[0].score - 1.0).abs() < 1e-5, "exact cosine: {}", hits[0].score);
    let doc_b = id("doc-b");
    assert_eq!(
        (hits[0].source.clone(), hits[0].page, hits[0].text.clone()),
        (format!("{doc_b}.pdf"), Some(1), format!("chunk 0 of {doc_b}"))
    );
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));

    // A write bumps the version: the cached index is replaced, the new chunk is found.
    let fresh = rng.vector();
    store
        .replace_document("b@x", &id("doc-b2"), chunks(&id("doc-b2"), std::slice::from_ref(&fresh)))
        .await
        .expect("store");
    let hits = store.search("b@x", &fresh, 1, -1.0).await.expect("search");
    assert_eq!(hits[0].document_id, id("doc-b2"));
    store.delete_document("b@x", &id("doc-b2")).await.expect("delete");
    let hits = store.search("b@x", &fresh, 5, -1.0).await.expect("search");
    assert!(hits.iter().all(|h| h.document_id == id("doc-b")), "{hits:?}");
    // The floor and k.
    assert!(store.search("b@x", &b[1], 40, 0.99).await.expect("search").len() == 1);
    assert!(store.search("b@x", &b[1], 0, -1.0).await.expect("search").is_empty());
    assert!(store.search("nobody@x", &b[1], 5, -1.0).await.expect("search").is_empty());
}

#[tokio::test]
async fn a_chunk_deleted_since_the_load_is_not_returned_and_one_replaced_is_rescored() {
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let store = PgVectorStore::new(pool.clone());
    let mut rng = Rng(5);
    let vectors: Vec<Vec<f32>> = (0..20).map(|_| rng.vector()).collect();
    store.replace_document("a@x", &id("doc"), chunks(&id("doc"), &vectors)).await.expect("store");
    assert_eq!(store.search("a@x", &vectors[4], 1, -1.0).await.expect("search")[0].chunk_index, 4);
    // Behind the cache's back (no version bump): the index still lists the chunk.
    sqlx::query("DELETE FROM chunks WHERE document_id = $1 AND chunk_index = 4")
        .bind(id("doc"))
        .execute(&pool)
        .await
        .expect("delete");
    let opposite: Vec<f32> = vectors[7].iter().map(|x| -x).collect();
    sqlx::query("UPDATE chunks SET embedding = $1 WHERE document_id = $2 AND chunk_index = 7")
        .bind(vector_store::postgres::encode_embedding(&opposite))
        .bind(id("doc"))
        .execute(&pool)
        .await
        .expect("update");
    let hits = store.search("a@x", &vectors[4], 20, -1.0).await.expect("search");
    assert_eq!(hits.len(), 19);
    assert!(hits.iter().all(|h| h.chunk_index != 4), "{hits:?}");
    let hits = store.search("a@x", &vectors[7], 20, -1.0).await.expect("search");
    let seven = hits.iter().find(|h| h.chunk_index == 7).expect("chunk 7");
    assert!((seven.score + 1.0).abs() < 1e-5, "scored with its current embedding: {}", seven.score);
}

#[tokio::test]
async fn lexical_only_rows_are_skipped_and_a_dimension_mismatch_is_permanent() {
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let store = PgVectorStore::new(pool.clone());
    let mut rng = Rng(9);
    let vectors: Vec<Vec<f32>> = (0..10).map(|_| rng.vector()).collect();
    store.replace_document("a@x", &id("doc"), chunks(&id("doc"), &vectors)).await.expect("store");
    // A row with no embedding (written for a deployment that embeds elsewhere).
    sqlx::query(
        "INSERT INTO chunks (agent_email, document_id, chunk_index, source, page, text, embedding, tsv) \
         VALUES ('a@x', $1, 0, 'l.txt', NULL, 'words only', ''::bytea, to_tsvector('simple', 'words only'))",
    )
    .bind(id("lexical"))
    .execute(&pool)
    .await
    .expect("insert");
    sqlx::query("UPDATE vector_index_versions SET version = version + 1").execute(&pool).await.expect("bump");
    let hits = store.search("a@x", &vectors[2], 20, -1.0).await.expect("search");
    assert_eq!(hits.len(), 10);
    assert!(hits.iter().all(|h| h.document_id == id("doc")));

    let error = store.search("a@x", &[1.0; 7], 5, -1.0).await.expect_err("mismatch");
    assert!(!error.is_transient(), "{error}");
    assert!(error.to_string().contains("dimension 7"), "{error}");
}

#[tokio::test]
async fn candidates_covering_every_chunk_give_the_exact_result() {
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    let all = PostgresSettings { memory_budget_mb: 96, oversampling: 1, min_candidates: 1_000_000 };
    let exact = PgVectorStore::with_settings(pool.clone(), &all);
    let mut rng = Rng(11);
    let vectors: Vec<Vec<f32>> = (0..600).map(|_| rng.vector()).collect();
    for (d, part) in vectors.chunks(100).enumerate() {
        exact
            .replace_document("a@x", &id(&format!("doc-{d}")), chunks(&id(&format!("doc-{d}")), part))
            .await
            .expect("store");
    }
    for q in 0..20 {
        let query = rng.vector();
        let mut brute: Vec<(String, u32, f32)> = vectors
            .iter()
            .enumerate()
            .map(|(r, v)| (id(&format!("doc-{}", r / 100)), (r % 100) as u32, dot(&query, v)))
            .collect();
        brute.sort_by(|x, y| y.2.total_cmp(&x.2));
        let hits = exact.search("a@x", &query, 10, -1.0).await.expect("search");
        let got: Vec<(String, u32)> = hits.iter().map(|h| (h.document_id.clone(), h.chunk_index)).collect();
        let want: Vec<(String, u32)> = brute[..10].iter().map(|b| (b.0.clone(), b.1)).collect();
        assert_eq!(got, want, "query {q}");
        for (hit, b) in hits.iter().zip(&brute) {
            assert!((hit.score - b.2).abs() < 1e-5);
        }
    }
    // With few candidates (here 10 of 600 for random, unclustered vectors) the codes alone
    // decide, and the result is approximate: the setting matters.
    let few = PgVectorStore::with_settings(
        pool,
        &PostgresSettings { memory_budget_mb: 96, oversampling: 1, min_candidates: 0 },
    );
    let mut misses = 0;
    for _ in 0..20 {
        let query = rng.vector();
        let a = few.search("a@x", &query, 10, -1.0).await.expect("search");
        let b = exact.search("a@x", &query, 10, -1.0).await.expect("search");
        misses += b.iter().filter(|h| !a.contains(h)).count();
    }
    assert!(misses > 0, "ten candidates of 600 should miss some of the exact top 10");
}

#[tokio::test]
async fn past_the_memory_budget_agents_are_evicted_and_reloaded() {
    let db = TestDb::create().await;
    let pool = pool(&db).await;
    // A zero budget keeps only the agent searched last.
    let store = PgVectorStore::with_settings(
        pool,
        &PostgresSettings { memory_budget_mb: 0, oversampling: 16, min_candidates: 160 },
    );
    let mut rng = Rng(13);
    let a: Vec<Vec<f32>> = (0..30).map(|_| rng.vector()).collect();
    let b: Vec<Vec<f32>> = (0..30).map(|_| rng.vector()).collect();
    store.replace_document("a@x", &id("doc-a"), chunks(&id("doc-a"), &a)).await.expect("store");
    store.replace_document("b@x", &id("doc-b"), chunks(&id("doc-b"), &b)).await.expect("store");
    for round in 0..3 {
        for (agent, vectors, doc) in [("a@x", &a, "doc-a"), ("b@x", &b, "doc-b")] {
            let hits = store.search(agent, &vectors[round], 1, -1.0).await.expect("search");
            assert_eq!((hits[0].document_id.clone(), hits[0].chunk_index), (id(doc), round as u32));
            assert_eq!(store.memory_usage().1, 1, "one agent in memory");
        }
    }
    let (bytes, _) = store.memory_usage();
    assert!(bytes > 0 && bytes < 30 * 100, "a compact index: {bytes} bytes for 30 chunks");
}
