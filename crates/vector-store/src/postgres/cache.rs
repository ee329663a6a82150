//! The per-process cache of agent indexes, bounded by a memory budget: when a newly loaded
//! index brings the total over it, the least recently searched agents are evicted (their next
//! search loads them again from PostgreSQL).

use std::collections::HashMap;
use std::sync::Arc;

use super::index::AgentIndex;

#[derive(Debug)]
struct Entry {
    index: Arc<AgentIndex>,
    bytes: usize,
    last_used: u64,
}

/// Agent indexes by agent, with their sizes and a use clock.
#[derive(Debug)]
pub(super) struct Cache {
    entries: HashMap<String, Entry>,
    /// Sum of the entries' `bytes`.
    bytes: usize,
    /// Incremented on every use; an entry's `last_used` is the clock of its last use.
    clock: u64,
    budget: usize,
}

impl Cache {
    /// An empty cache that keeps at most `budget` bytes of indexes (but always the last one
    /// inserted, however large: an agent larger than the budget is still served).
    pub(super) fn new(budget: usize) -> Self {
        Self { entries: HashMap::new(), bytes: 0, clock: 0, budget }
    }

    /// The cached index of `agent`, marked as used.
    pub(super) fn get(&mut self, agent: &str) -> Option<Arc<AgentIndex>> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(agent).map(|e| {
            e.last_used = clock;
            e.index.clone()
        })
    }

    /// Stores `index` for `agent` (replacing an older one), then evicts least recently used
    /// agents until the total is within the budget. Returns the agents evicted.
    pub(super) fn insert(&mut self, agent: &str, index: Arc<AgentIndex>) -> Vec<String> {
        self.clock += 1;
        let bytes = index.heap_bytes() + agent.len();
        if let Some(old) = self.entries.insert(agent.to_owned(), Entry { index, bytes, last_used: self.clock }) {
            self.bytes -= old.bytes;
        }
        self.bytes += bytes;
        let mut evicted = Vec::new();
        while self.bytes > self.budget && self.entries.len() > 1 {
            let Some(oldest) = self
                .entries
                .iter()
                .filter(|(name, _)| name.as_str() != agent)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(name, _)| name.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
            }
            evicted.push(oldest);
        }
        evicted
    }

    /// Bytes of indexes held.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of agents held.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::index::IndexBuilder;
    use super::*;

    fn index(rows: usize) -> Arc<AgentIndex> {
        let mut builder = IndexBuilder::new(rows);
        for r in 0..rows {
            builder.push("d", r as i32, &[1.0, r as f32]);
        }
        Arc::new(builder.finish(1))
    }

    #[test]
    fn the_least_recently_used_agents_are_evicted_past_the_budget() {
        let size = index(100).heap_bytes() + 1;
        let mut cache = Cache::new(3 * size);
        for agent in ["a", "b", "c"] {
            assert!(cache.insert(agent, index(100)).is_empty());
        }
        assert!(cache.get("a").is_some(), "a is now more recent than b");
        assert_eq!(cache.insert("d", index(100)), vec!["b".to_owned()]);
        assert!(cache.get("b").is_none());
        assert_eq!((cache.len(), cache.bytes()), (3, 3 * size));
        // Replacing an agent's index (a new version) does not count it twice.
        assert!(cache.insert("a", index(100)).is_empty());
        assert_eq!(cache.bytes(), 3 * size);
        // An agent larger than the budget evicts every other but is kept.
        let evicted = cache.insert("huge", index(10_000));
        assert_eq!(evicted.len(), 3);
        assert!(cache.get("huge").is_some());
        assert_eq!(cache.len(), 1);
    }
}
