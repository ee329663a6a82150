//! The embedding cache against the real Redis.

use embedders::{Embedder, HashingEmbedder};
use pipeline_core::settings::RedisSettings;
use rag_generator::cache::{EmbeddingCache, key};
use redis::AsyncCommands as _;

#[tokio::test]
async fn question_embeddings_are_cached_in_redis_with_a_ttl() {
    let url = std::env::var("MAILROOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let embedder = HashingEmbedder::new(64);
    // A text no other test uses, so the first lookup is a miss.
    let text = format!("How do I reset my desk? {}", std::process::id() as u64 * 7919 + 13);
    let cache = EmbeddingCache::new(&RedisSettings::from_url(&url), 120);
    let (first, cached) = cache.embed(&embedder, &text).await.expect("embed");
    assert!(!cached, "first lookup computes");
    let (second, cached) = cache.embed(&embedder, &text).await.expect("embed");
    assert!(cached, "second lookup is served by Redis");
    assert_eq!(first, second);
    assert_eq!(first, embedder.embed(std::slice::from_ref(&text)).await.expect("embed").remove(0));

    let client = mailroom_redis::client(&RedisSettings::from_url(&url)).expect("url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let k = key(embedder.model_id(), &text);
    assert!(k.starts_with("mailroom:emb:hashing-v2-64:"), "{k}");
    let ttl: i64 = conn.ttl(&k).await.expect("ttl");
    assert!(ttl > 0 && ttl <= 120, "ttl {ttl}");
    let _: () = conn.del(&k).await.expect("cleanup");
}

#[tokio::test]
async fn an_unreachable_redis_only_disables_the_cache() {
    let embedder = HashingEmbedder::new(16);
    let cache = EmbeddingCache::new(&RedisSettings::from_url("redis://127.0.0.1:9"), 60);
    let (v, cached) = cache.embed(&embedder, "Where is my order?").await.expect("still embeds");
    assert!(!cached);
    assert_eq!(v.len(), 16);
}
