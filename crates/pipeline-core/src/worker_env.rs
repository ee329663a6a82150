//! The environment of a spawned worker, by settings key: `WorkerEnv::new().set("amqp.url", url)`
//! gives `MAILROOM__AMQP__URL=url`. For whatever starts workers with settings of its own — the
//! `mailroom` CLI's sandboxes (demo, bench, eval) and the integration-test harness — so that no
//! caller spells a `MAILROOM__…` variable by hand.
//!
//! Every key is checked against `config/default.toml` (the same check a worker makes at start,
//! [`crate::settings_check`], so nested tables such as `workers.classifier.prefetch` and the
//! optional `outbox.gmail` are known too), and a key that names no setting panics at once, with
//! the closest known key, instead of leaving the worker to run with a default nobody meant. The
//! keys are fixed in the caller's code, so such a panic is a programming error, found by the first
//! run of that code path.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::settings_check::{check, env_var_of};

/// The environment variable that sets `key` (`"llm.openai.base_url"` gives
/// `"MAILROOM__LLM__OPENAI__BASE_URL"`).
///
/// # Panics
///
/// When `key` is not a setting of `config/default.toml`.
pub fn env_var(key: &str) -> &'static str {
    static KNOWN: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut known = KNOWN.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(var) = known.get(key) {
        return var;
    }
    let var = env_var_of(key);
    if let Err(error) = check(None, [var.as_str()]) {
        panic!("WorkerEnv: `{key}` is not a setting: {error}");
    }
    // Leaked once per distinct key (a handful, all written in code): the names live as long as the
    // process, like literals.
    let var: &'static str = Box::leak(var.into_boxed_str());
    known.insert(key.to_owned(), var);
    var
}

/// A worker's `MAILROOM__…` variables, set by settings key; see the [module docs](self).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkerEnv {
    vars: Vec<(&'static str, String)>,
}

impl WorkerEnv {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `key` (dotted, as in `config/default.toml`) to `value`, replacing an earlier value.
    ///
    /// # Panics
    ///
    /// When `key` is not a setting.
    pub fn set(mut self, key: &str, value: impl Into<String>) -> Self {
        self.insert(key, value);
        self
    }

    /// [`WorkerEnv::set`] in place.
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        let var = env_var(key);
        self.vars.retain(|(name, _)| *name != var);
        self.vars.push((var, value.into()));
    }

    /// `self` with every variable of `other` set on top (replacing the same settings).
    pub fn merge(mut self, other: WorkerEnv) -> Self {
        for (var, value) in other.vars {
            self.vars.retain(|(name, _)| *name != var);
            self.vars.push((var, value));
        }
        self
    }

    /// The variables, in the order they were set (for `Command::envs` and the test harness's `spawn`).
    pub fn build(self) -> Vec<(&'static str, String)> {
        self.vars
    }

    /// The variables as owned pairs, for [`Settings::load_from`](crate::Settings::load_from).
    pub fn owned(self) -> Vec<(String, String)> {
        self.vars.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
    }
}

impl std::ops::Deref for WorkerEnv {
    type Target = [(&'static str, String)];

    fn deref(&self) -> &Self::Target {
        &self.vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_the_variables_a_worker_reads() {
        let env = WorkerEnv::new()
            .set("amqp.url", "amqp://x")
            .set("rag.local_fallback", "send")
            .set("workers.classifier.prefetch", "4")
            .set("llm.providers", "openai,local")
            .set("outbox.gmail.refresh_token", "1//t")
            .set("amqp.url", "amqp://y");
        assert_eq!(
            env.build(),
            [
                ("MAILROOM__RAG__LOCAL_FALLBACK", "send".to_owned()),
                ("MAILROOM__WORKERS__CLASSIFIER__PREFETCH", "4".to_owned()),
                ("MAILROOM__LLM__PROVIDERS", "openai,local".to_owned()),
                ("MAILROOM__OUTBOX__GMAIL__REFRESH_TOKEN", "1//t".to_owned()),
                ("MAILROOM__AMQP__URL", "amqp://y".to_owned()),
            ]
        );
    }

    #[test]
    #[should_panic(expected = "`sender.rate_limt` is not a setting")]
    fn an_unknown_key_is_refused() {
        let _ = WorkerEnv::new().set("sender.rate_limt", "5");
    }

    #[test]
    #[should_panic(expected = "`llm` is not a setting")]
    fn a_table_is_not_a_key() {
        let _ = env_var("llm");
    }
}
