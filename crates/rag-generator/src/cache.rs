//! The question-embedding cache in Redis (docs/ARCHITECTURE.md, "Redis"): keyed by the
//! embedder's model id and the SHA-256 of the text, with a TTL. The cache only saves work — if
//! Redis is unavailable the embedding is computed and the email goes on.

use embedders::{EmbedError, Embedder};
use pipeline_core::settings::RedisSettings;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tokio::sync::OnceCell;
use tracing::warn;

/// A read-through cache in front of an embedder.
pub struct EmbeddingCache {
    client: Option<redis::Client>,
    connection: OnceCell<ConnectionManager>,
    ttl_secs: u64,
}

impl std::fmt::Debug for EmbeddingCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingCache").field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

/// The cache key of a text for a model.
pub fn key(model_id: &str, text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("mailroom:emb:{model_id}:{hex}")
}

fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

impl EmbeddingCache {
    /// A cache on the Redis of `redis` (connected on first use; `rediss://` with `[redis.tls]`).
    /// Settings that make no client (a bad URL, an unreadable TLS file) only disable the cache,
    /// with a warning, like an unreachable server does.
    pub fn new(redis: &RedisSettings, ttl_secs: u64) -> Self {
        let client = match mailroom_redis::client(redis) {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "Unusable Redis settings; embeddings will not be cached.");
                None
            }
        };
        Self { client, connection: OnceCell::new(), ttl_secs }
    }

    async fn connection(&self) -> Option<ConnectionManager> {
        let client = self.client.as_ref()?;
        self.connection
            .get_or_try_init(|| async {
                // One reconnection attempt, 1 s (plus jitter) after a failure.
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(2)))
                    .set_min_delay(Duration::from_secs(1))
                    .set_number_of_retries(1);
                ConnectionManager::new_with_config(client.clone(), config).await
            })
            .await
            .map_err(|e| warn!(error = %mailroom_redis::describe(&e), "Redis unavailable; embedding without cache."))
            .ok()
            .cloned()
    }

    /// The cached embedding of `text`, or a fresh one (then cached).
    pub async fn embed(&self, embedder: &dyn Embedder, text: &str) -> Result<(Vec<f32>, bool), EmbedError> {
        let key = key(embedder.model_id(), text);
        let mut connection = self.connection().await;
        if let Some(conn) = connection.as_mut() {
            match conn.get::<_, Option<Vec<u8>>>(&key).await {
                Ok(Some(bytes)) if bytes.len() == embedder.dimension() * 4 => return Ok((decode(&bytes), true)),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "Redis read failed; embedding without cache."),
            }
        }
        let vector = embedder.embed(&[text.to_owned()]).await?.into_iter().next().unwrap_or_default();
        if let Some(conn) = connection.as_mut()
            && let Err(e) = conn.set_ex::<_, _, ()>(&key, encode(&vector), self.ttl_secs).await
        {
            warn!(error = %e, "Redis write failed; embedding not cached.");
        }
        Ok((vector, false))
    }
}
