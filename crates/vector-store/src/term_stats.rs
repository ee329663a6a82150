//! How many of an agent's chunks contain each term, per text-search configuration: the
//! document frequencies lexical search weighs a question's terms by.
//!
//! Counting them per question (one index probe and heap count per term) cost about 100 ms on a
//! few thousand chunks and grows with the agent's chunks. They change only when the agent's
//! documents do, so they are computed once per agent and kept in process, labelled with the
//! agent's `vector_index_versions` version: every write to the agent's chunks bumps it in the
//! same transaction (the PostgreSQL store and the Pinecone catalogue alike), so a query costs one
//! tiny version lookup while nothing changed — the same scheme as the in-memory vector index.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::{PgPool, Row};

use crate::StoreError;
use crate::postgres::db_error;

/// One configuration's statistics within one agent's chunks.
#[derive(Debug, Default)]
pub(crate) struct ConfigStats {
    /// Chunks written with this configuration.
    pub(crate) chunks: i64,
    /// Chunks containing each lexeme.
    pub(crate) df: HashMap<Box<str>, u32>,
}

/// An agent's statistics at one version of its chunks.
#[derive(Debug, Default)]
pub(crate) struct AgentStats {
    version: i64,
    /// By configuration name (`english`, `simple`, …).
    pub(crate) configs: HashMap<String, ConfigStats>,
}

impl AgentStats {
    /// How many chunks of `config` contain `lexeme` (0 for a configuration the agent's chunks do
    /// not use).
    pub(crate) fn df(&self, config: &str, lexeme: &str) -> i64 {
        self.configs.get(config).and_then(|c| c.df.get(lexeme)).map_or(0, |n| i64::from(*n))
    }
}

/// The per-agent cache.
#[derive(Debug, Clone, Default)]
pub(crate) struct TermStatsCache {
    agents: Arc<Mutex<HashMap<String, Arc<AgentStats>>>>,
}

impl TermStatsCache {
    fn cached(&self, agent_email: &str) -> Option<Arc<AgentStats>> {
        self.agents.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(agent_email).cloned()
    }

    /// The agent's statistics at the current version of its chunks, counting them again when
    /// the cached ones are stale.
    pub(crate) async fn get(&self, pool: &PgPool, agent_email: &str) -> Result<Arc<AgentStats>, StoreError> {
        let version = current_version(pool, agent_email).await?;
        if let Some(stats) = self.cached(agent_email).filter(|s| s.version == version) {
            return Ok(stats);
        }
        // The version and the counts from one snapshot, so the cache is labelled truthfully.
        let mut tx = pool.begin().await.map_err(db_error)?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        let version = current_version(&mut *tx, agent_email).await?;
        let mut stats = AgentStats { version, configs: HashMap::new() };
        let totals = sqlx::query(
            "SELECT search_config::text AS config, count(*) AS n FROM chunks WHERE agent_email = $1 \
             GROUP BY search_config",
        )
        .bind(agent_email)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        for row in totals {
            let config: String = row.try_get("config").map_err(db_error)?;
            let n: i64 = row.try_get("n").map_err(db_error)?;
            stats.configs.entry(config).or_default().chunks = n;
        }
        let counts = sqlx::query(
            "SELECT ch.search_config::text AS config, u.lexeme, count(*) AS df \
             FROM chunks ch CROSS JOIN LATERAL unnest(ch.tsv) u WHERE ch.agent_email = $1 \
             GROUP BY ch.search_config, u.lexeme",
        )
        .bind(agent_email)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        for row in counts {
            let config: String = row.try_get("config").map_err(db_error)?;
            let lexeme: String = row.try_get("lexeme").map_err(db_error)?;
            let df: i64 = row.try_get("df").map_err(db_error)?;
            stats
                .configs
                .entry(config)
                .or_default()
                .df
                .insert(lexeme.into_boxed_str(), u32::try_from(df).unwrap_or(u32::MAX));
        }
        let stats = Arc::new(stats);
        self.agents
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(agent_email.to_owned(), stats.clone());
        Ok(stats)
    }
}

async fn current_version<'e, E: sqlx::PgExecutor<'e>>(executor: E, agent_email: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT version FROM vector_index_versions WHERE agent_email = $1")
        .bind(agent_email)
        .fetch_optional(executor)
        .await
        .map_err(db_error)
        .map(|v: Option<i64>| v.unwrap_or(0))
}
