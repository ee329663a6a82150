//! Lexical retrieval against a real PostgreSQL (a throw-away database per test): the chunk rows
//! written by the stores carry a configuration suited to their language and a tsvector with
//! CJK bigrams, questions in each script find their passage, agents never see each other's
//! chunks, and a Pinecone deployment (its data plane faked on 127.0.0.1) still writes the
//! catalogue rows, with empty embeddings, that lexical search reads.

use mailroom_db::documents::{self, NewDocument};
use mailroom_tests::TestDb;
use mailroom_tests::fake_http::{FakeServer, Reply};
use secrecy::SecretString;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;
use vector_store::{
    Catalogued, ChunkRecord, LexicalSearch, PgVectorStore, PineconeSettings, PineconeStore, VectorStore,
};

const ALICE: &str = "alice@support.example";
const BOB: &str = "bob@support.example";

/// The passages of one agent's documents, one language each.
const PASSAGES: [&str; 7] = [
    "To change the time zone of the system, run dpkg-reconfigure tzdata and pick your region.",
    "Mount options of disks are set in /etc/fstab; a UUID may identify the block device.",
    "Debian システムが使うタイムゾーンは以下のようにして再設定できます。dpkg-reconfigure tzdata",
    "下面是重新配置 Debian 系统使用的时区。",
    "Программа quilt предлагает простой способ записи изменений в исходном коде пакетов.",
    "Για να αλλάξετε τη ζώνη ώρας του συστήματος, εκτελέστε την εντολή dpkg-reconfigure.",
    "सिस्टम का समय क्षेत्र बदलने के लिए यह आदेश चलाएँ।",
];

async fn database() -> (TestDb, PgPool) {
    let db = TestDb::create().await;
    let pool = mailroom_db::connect_and_migrate(&SecretString::from(db.url()), 4).await.expect("migrate");
    (db, pool)
}

/// A documents row (chunks belong to a document) and its chunks, without embeddings' meaning.
async fn document(pool: &PgPool, agent: &str, texts: &[&str]) -> (String, Vec<ChunkRecord>) {
    let id = Uuid::new_v4();
    documents::insert(
        pool,
        &NewDocument {
            document_id: id,
            agent_email: agent,
            filename: "manual.pdf",
            stored_path: "/nonexistent/manual.pdf",
            content_type: "application/pdf",
            size_bytes: 1,
            message_id: "m",
        },
    )
    .await
    .expect("document row");
    let chunks = texts
        .iter()
        .enumerate()
        .map(|(i, text)| ChunkRecord {
            document_id: id.to_string(),
            chunk_index: u32::try_from(i).expect("small"),
            source: "manual.pdf".into(),
            page: Some(u32::try_from(i).expect("small") + 1),
            text: (*text).to_owned(),
            embedding: vec![1.0, 0.0, 0.0, 0.0],
        })
        .collect();
    (id.to_string(), chunks)
}

#[tokio::test]
async fn each_language_finds_its_passage_and_agents_stay_apart() {
    let (_db, pool) = database().await;
    let store = PgVectorStore::new(pool.clone());
    let (doc, chunks) = document(&pool, ALICE, &PASSAGES).await;
    store.replace_document(ALICE, &doc, chunks).await.expect("replace");
    // Bob's document says the same about time zones: Alice must never get it.
    let (bob_doc, bob_chunks) = document(&pool, BOB, &[PASSAGES[0]]).await;
    store.replace_document(BOB, &bob_doc, bob_chunks).await.expect("replace");

    let configs: Vec<(i32, String)> =
        sqlx::query_as("SELECT chunk_index, search_config::text FROM chunks WHERE document_id = $1 ORDER BY 1")
            .bind(&doc)
            .fetch_all(&pool)
            .await
            .expect("configs");
    let configs: Vec<&str> = configs.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(configs, ["english", "english", "simple", "simple", "russian", "greek", "hindi"]);

    let search = LexicalSearch::new(pool.clone());
    for (question, page) in [
        ("How do I change the time zone of my system?", 1),
        ("Can fstab use the UUID of a disk?", 2),
        ("タイムゾーンを変更したい", 3),
        ("如何修改系统的时区？", 4),
        ("Как с quilt сохранить изменения в исходном коде?", 5),
        ("Ποια εντολή αλλάζει τη ζώνη ώρας του συστήματος;", 6),
        ("सिस्टम का समय क्षेत्र कैसे बदलें?", 7),
    ] {
        let hits = search.search(ALICE, question, 3).await.expect("search");
        assert_eq!(hits.first().and_then(|h| h.page), Some(page), "{question}: {hits:?}");
        assert!(hits[0].score > 0.3, "{question}: weak support {}", hits[0].score);
        assert!(hits.iter().all(|h| h.document_id == doc), "{question}: another agent's chunk: {hits:?}");
    }
    let bob = search.search(BOB, "How do I change the time zone of my system?", 10).await.expect("search");
    assert_eq!(bob.len(), 1, "{bob:?}");
    assert_eq!(bob[0].document_id, bob_doc);

    // A NUL in a customer's email is no error.
    let nul = search.search(ALICE, "time\0zone of the system", 3).await.expect("a NUL is searched as a space");
    assert_eq!(nul.first().and_then(|h| h.page), Some(1), "{nul:?}");
    // A question the documents do not speak about finds at best weak support.
    let off_topic = search.search(ALICE, "Where is the refund for my damaged blender order?", 3).await.expect("search");
    assert!(off_topic.iter().all(|h| h.score < 0.3), "{off_topic:?}");
    // Deleting the document removes its rows from lexical search too.
    store.delete_document(ALICE, &doc).await.expect("delete");
    assert!(search.search(ALICE, "How do I change the time zone of my system?", 3).await.expect("search").is_empty());
}

#[tokio::test]
async fn a_pinecone_deployment_keeps_the_catalogue_for_lexical_search() {
    let (_db, pool) = database().await;
    // Enough of Pinecone's data plane for a replace and a delete: nothing listed, upserts counted.
    let fake = FakeServer::start(|request| match request.path.as_str() {
        "/vectors/list" => Reply::json(200, json!({"vectors": [], "namespace": ALICE})),
        "/vectors/upsert" => {
            Reply::json(200, json!({"upsertedCount": request.body["vectors"].as_array().map_or(0, Vec::len)}))
        }
        _ => Reply::json(200, json!({})),
    })
    .await;
    let pinecone = PineconeStore::new(&PineconeSettings {
        index_host: fake.base.clone(),
        api_key: SecretString::from("pcsk_test"),
        api_version: "2025-04".into(),
        timeout_secs: 5,
    });
    let store = Catalogued::new(pinecone, pool.clone());
    let (doc, chunks) = document(&pool, ALICE, &PASSAGES[..2]).await;
    store.replace_document(ALICE, &doc, chunks).await.expect("replace");
    let upserted: usize = fake
        .requests()
        .iter()
        .filter(|r| r.path == "/vectors/upsert")
        .map(|r| r.body["vectors"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(upserted, 2, "the vectors went to Pinecone");
    let lengths: Vec<i32> =
        sqlx::query_scalar("SELECT length(embedding) FROM chunks WHERE document_id = $1 ORDER BY chunk_index")
            .bind(&doc)
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(lengths, [0, 0], "catalogue rows carry no embedding");

    let search = LexicalSearch::new(pool.clone());
    let hits = search.search(ALICE, "UUID in fstab?", 3).await.expect("search");
    assert_eq!(hits.first().map(|h| (h.document_id.as_str(), h.page)), Some((doc.as_str(), Some(2))));
    assert!(search.search(BOB, "UUID in fstab?", 3).await.expect("search").is_empty(), "scoped by agent");
    // A catalogue write counts the new document's terms at once (the triggers on `chunks`), or
    // they would weigh as absent and find nothing.
    let (japanese, chunks) = document(&pool, ALICE, &PASSAGES[2..3]).await;
    store.replace_document(ALICE, &japanese, chunks).await.expect("replace");
    let hits = search.search(ALICE, "タイムゾーンを変更したい", 3).await.expect("search");
    assert_eq!(hits.first().map(|h| h.document_id.as_str()), Some(japanese.as_str()), "{hits:?}");

    store.delete_document(ALICE, &japanese).await.expect("delete");
    store.delete_document(ALICE, &doc).await.expect("delete");
    assert!(search.search(ALICE, "UUID in fstab?", 3).await.expect("search").is_empty());
}

/// The term counts PostgreSQL keeps for lexical search, next to the same counts taken from the
/// chunks themselves; they must be equal after every kind of write.
async fn counts_match_the_chunks(pool: &PgPool) -> usize {
    let kept: Vec<(String, String, String, i64)> =
        sqlx::query_as("SELECT agent_email, search_config, lexeme, chunks FROM chunk_term_counts ORDER BY 1, 2, 3")
            .fetch_all(pool)
            .await
            .expect("kept counts");
    let counted: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT c.agent_email, c.search_config::text, u.lexeme, count(*) FROM chunks c \
         CROSS JOIN LATERAL unnest(c.tsv) u GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await
    .expect("counted");
    assert_eq!(kept, counted, "chunk_term_counts drifted from the chunks");
    let kept: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT agent_email, search_config, chunks FROM chunk_config_counts ORDER BY 1, 2")
            .fetch_all(pool)
            .await
            .expect("kept configs");
    let counted: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT agent_email, search_config::text, count(*) FROM chunks GROUP BY 1, 2 ORDER BY 1, 2")
            .fetch_all(pool)
            .await
            .expect("counted configs");
    assert_eq!(kept, counted, "chunk_config_counts drifted from the chunks");
    counted.len()
}

#[tokio::test]
async fn term_counts_follow_every_write_including_concurrent_ones_and_cascades() {
    let (_db, pool) = database().await;
    let store = PgVectorStore::new(pool.clone());
    // Eight documents of one agent written at once: they share their common terms' rows.
    let mut written = Vec::new();
    for i in 0..8 {
        let (doc, chunks) = document(&pool, ALICE, &PASSAGES[i % 3..i % 3 + 4]).await;
        written.push((doc, chunks));
    }
    let writes = written.iter().map(|(doc, chunks)| store.replace_document(ALICE, doc, chunks.clone()));
    for result in futures_util::future::join_all(writes).await {
        result.expect("concurrent replace");
    }
    assert!(counts_match_the_chunks(&pool).await >= 3, "several configurations counted");
    let tzdata: i64 = sqlx::query_scalar(
        "SELECT sum(chunks)::bigint FROM chunk_term_counts WHERE agent_email = $1 AND lexeme = 'tzdata'",
    )
    .bind(ALICE)
    .fetch_one(&pool)
    .await
    .expect("tzdata");
    assert!(tzdata >= 8, "every document's tzdata passages counted: {tzdata}");

    // Re-ingestion replaces a document's chunks: its old terms leave the counts.
    let (doc, _) = &written[0];
    let fewer = document(&pool, ALICE, &[PASSAGES[4]]).await.1;
    let fewer: Vec<ChunkRecord> = fewer.into_iter().map(|c| ChunkRecord { document_id: doc.clone(), ..c }).collect();
    store.replace_document(ALICE, doc, fewer).await.expect("replace");
    counts_match_the_chunks(&pool).await;
    // The store's delete, and a document row deleted with its chunks by the cascade.
    store.delete_document(ALICE, &written[1].0).await.expect("delete");
    counts_match_the_chunks(&pool).await;
    let cascaded = Uuid::parse_str(&written[2].0).expect("uuid");
    sqlx::query("DELETE FROM documents WHERE document_id = $1").bind(cascaded).execute(&pool).await.expect("cascade");
    counts_match_the_chunks(&pool).await;
    // Everything gone: nothing left counted, so a search finds nothing and costs nothing.
    for (doc, _) in &written {
        sqlx::query("DELETE FROM documents WHERE document_key = $1").bind(doc).execute(&pool).await.expect("delete");
    }
    assert_eq!(counts_match_the_chunks(&pool).await, 0);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM chunk_term_counts").fetch_one(&pool).await.expect("left");
    assert_eq!(left, 0, "no zero rows are left behind");
    let hits = LexicalSearch::new(pool.clone()).search(ALICE, "time zone tzdata", 4).await.expect("search");
    assert!(hits.is_empty());
}

/// Each chunk's configuration and full-text terms, in order.
async fn analysed(pool: &PgPool, doc: &str) -> Vec<(String, String)> {
    sqlx::query_as("SELECT search_config::text, tsv::text FROM chunks WHERE document_id = $1 ORDER BY chunk_index")
        .bind(doc)
        .fetch_all(pool)
        .await
        .expect("chunks' analysis")
}

#[tokio::test]
async fn chunks_of_an_older_analysis_are_analysed_again_and_then_found() {
    let (_db, pool) = database().await;
    let store = PgVectorStore::new(pool.clone());
    let (doc, chunks) = document(&pool, ALICE, &PASSAGES).await;
    store.replace_document(ALICE, &doc, chunks).await.expect("replace");
    let written = analysed(&pool, &doc).await;
    // As the rows the full-text migration indexed (plain `simple`, no bigrams), marked as
    // written by the first analysis.
    sqlx::query("UPDATE chunks SET search_config = 'simple', tsv = to_tsvector('simple', text), text_analysis = 1")
        .execute(&pool)
        .await
        .expect("age the rows");
    counts_match_the_chunks(&pool).await;
    let search = LexicalSearch::new(pool.clone());
    let japanese = "タイムゾーンを変更したい";
    let before = search.search(ALICE, japanese, 3).await.expect("search");
    assert!(before.iter().all(|h| h.page != Some(3)), "a whole sentence is one word to `simple`: {before:?}");

    // Two ingesters starting at once share the rows.
    let (a, b) =
        tokio::join!(vector_store::lexical::reindex_outdated(&pool), vector_store::lexical::reindex_outdated(&pool));
    assert_eq!(a.expect("reindex") + b.expect("reindex"), PASSAGES.len() as u64);
    assert_eq!(vector_store::lexical::reindex_outdated(&pool).await.expect("again"), 0, "nothing left to do");

    let again = analysed(&pool, &doc).await;
    assert_eq!(again, written, "analysed again exactly as a fresh write is");
    let versions: Vec<i16> =
        sqlx::query_scalar("SELECT DISTINCT text_analysis FROM chunks").fetch_all(&pool).await.expect("versions");
    assert_eq!(versions, [vector_store::lexical::ANALYSIS_VERSION]);
    counts_match_the_chunks(&pool).await;
    let after = search.search(ALICE, japanese, 3).await.expect("search");
    assert_eq!(after.first().and_then(|h| h.page), Some(3), "{after:?}");
}
