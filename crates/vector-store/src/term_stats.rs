//! How many of an agent's chunks contain each term, per text-search configuration: the
//! document frequencies lexical search weighs a question's terms by.
//!
//! Counting them per question (one index probe and heap count per term) cost about 100 ms on a
//! few thousand chunks and grows with the agent's chunks. They change only when the agent's
//! documents do, so they are computed once per agent and kept in process, labelled with the
//! agent's `vector_index_versions` version: every write to the agent's chunks bumps it in the
//! same transaction (the PostgreSQL store and the Pinecone catalogue alike), so a query costs one
//! tiny version lookup while nothing changed — the same scheme as the in-memory vector index.
//!
//! Like that index, the cache has a memory budget: one deployment serves many mailboxes, and a
//! few thousand chunks already carry tens of thousands of distinct lexemes (about 50 bytes each
//! here). Past the budget the least recently searched agents are dropped and counted again by
//! their next search (tens to hundreds of milliseconds, once); an agent larger than the budget
//! on its own is still served, and kept until another agent is searched.

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
    /// Approximate heap size, for the budget.
    bytes: usize,
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

/// Approximate heap cost of one lexeme's entry beyond its text: the boxed string's pointer and
/// length, the count, the hash table's control byte and spare capacity, the allocation's header.
const ENTRY_OVERHEAD: usize = 48;

/// The per-agent cache, least recently used first out past its budget.
#[derive(Debug, Clone)]
pub(crate) struct TermStatsCache {
    inner: Arc<Mutex<Lru>>,
}

#[derive(Debug)]
struct Lru {
    budget: usize,
    bytes: usize,
    tick: u64,
    /// Agent → (statistics, tick of its last use).
    agents: HashMap<String, (Arc<AgentStats>, u64)>,
}

impl TermStatsCache {
    /// A cache holding about `budget` bytes of statistics.
    pub(crate) fn new(budget: usize) -> Self {
        Self { inner: Arc::new(Mutex::new(Lru { budget, bytes: 0, tick: 0, agents: HashMap::new() })) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, agent_email: &str) -> Option<Arc<AgentStats>> {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        lru.agents.get_mut(agent_email).map(|(stats, used)| {
            *used = tick;
            stats.clone()
        })
    }

    /// Approximate bytes held, and how many agents.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let lru = self.lock();
        (lru.bytes, lru.agents.len())
    }

    fn insert(&self, agent_email: &str, stats: Arc<AgentStats>) {
        let mut lru = self.lock();
        lru.tick += 1;
        let tick = lru.tick;
        let added = stats.bytes;
        if let Some((old, _)) = lru.agents.insert(agent_email.to_owned(), (stats, tick)) {
            lru.bytes -= old.bytes;
        }
        lru.bytes += added;
        while lru.bytes > lru.budget && lru.agents.len() > 1 {
            let Some(oldest) =
                lru.agents.iter().filter(|(a, _)| a.as_str() != agent_email).min_by_key(|(_, (_, used))| *used)
            else {
                break;
            };
            let oldest = oldest.0.clone();
            if let Some((evicted, _)) = lru.agents.remove(&oldest) {
                lru.bytes -= evicted.bytes;
            }
        }
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
        let mut stats = AgentStats { version, bytes: 0, configs: HashMap::new() };
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
            stats.bytes += lexeme.len() + ENTRY_OVERHEAD;
            stats
                .configs
                .entry(config)
                .or_default()
                .df
                .insert(lexeme.into_boxed_str(), u32::try_from(df).unwrap_or(u32::MAX));
        }
        let stats = Arc::new(stats);
        self.insert(agent_email, stats.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(bytes: usize) -> Arc<AgentStats> {
        Arc::new(AgentStats { version: 1, bytes, configs: HashMap::new() })
    }

    #[test]
    fn least_recently_searched_agents_leave_past_the_budget() {
        let cache = TermStatsCache::new(100);
        cache.insert("a", stats(40));
        cache.insert("b", stats(40));
        assert_eq!(cache.usage(), (80, 2));
        // a is searched again, so b is the least recently used when c arrives.
        assert!(cache.cached("a").is_some());
        cache.insert("c", stats(40));
        assert_eq!(cache.usage(), (80, 2));
        assert!(cache.cached("b").is_none());
        assert!(cache.cached("a").is_some() && cache.cached("c").is_some());
        // An agent over the budget on its own is still kept (and served), alone.
        cache.insert("huge", stats(500));
        assert_eq!(cache.usage(), (500, 1));
        assert!(cache.cached("huge").is_some());
        // Replacing an agent's statistics (a new version) counts only the new ones.
        cache.insert("huge", stats(60));
        assert_eq!(cache.usage(), (60, 1));
    }
}
