//! Refuses settings keys that do not exist, so a typo fails the start instead of being silently
//! ignored (`MAILROOM__SENDER__RATE_LIMT=5` used to leave the quota at its default).
//!
//! The schema is `config/default.toml` itself: it documents every setting, so a key is known iff
//! its dotted path is a value there. Two kinds of keys cannot be written into that file and are
//! declared here instead: tables keyed by names the operator chooses (`[workers.<binary>]`), and
//! optional tables whose mere presence changes behaviour (`[outbox.gmail]`: present with empty
//! credentials would no longer be reported as missing).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use config::{File, FileFormat, Map, Source, Value, ValueKind};

use crate::settings::DEFAULT_CONFIG;

/// Prefix of the environment variables that are settings (`MAILROOM_CONFIG`, with one
/// underscore, names a file and is not one).
pub const ENV_PREFIX: &str = "MAILROOM__";

/// Tables whose entries are named by the operator, with the keys each entry may hold (those of
/// `ConsumerOverride`).
const NAMED_ENTRIES: &[(&str, &[&str])] = &[("workers", &["prefetch", "concurrency", "drain_timeout_secs"])];

/// Optional tables absent from `config/default.toml` (documented there in comments), with their
/// keys (those of `gmail::GmailSettings` the sender uses; `query` and `processed_label` only
/// matter to the poller, so setting them here would do nothing).
const OPTIONAL_TABLES: &[(&str, &[&str])] = &[(
    "outbox.gmail",
    &["api_base", "token_url", "client_id", "client_secret", "refresh_token", "user", "timeout_secs"],
)];

/// Where an unknown key was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A settings file.
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

/// One key that names no setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The dotted key (`sender.rate_limt`).
    pub key: String,
    /// Where it was set.
    pub origin: KeyOrigin,
    /// The closest known key, when one is close enough to be the intended one.
    pub suggestion: Option<String>,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            KeyOrigin::File(path) => write!(f, "unknown setting `{}` in {}", self.key, path.display())?,
            KeyOrigin::Env(var) => write!(f, "unknown setting `{}` from environment variable {var}", self.key)?,
        }
        if let Some(s) = &self.suggestion {
            match &self.origin {
                KeyOrigin::File(_) => write!(f, " (did you mean `{s}`?)")?,
                KeyOrigin::Env(_) => write!(f, " (did you mean `{s}`, {}?)", env_var_of(s))?,
            }
        }
        Ok(())
    }
}

/// Settings named keys that do not exist. Every unknown key is listed, so that one run shows
/// all the typos.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}; every setting is documented in config/default.toml", list(.0))]
pub struct UnknownKeys(pub Vec<UnknownKey>);

fn list(keys: &[UnknownKey]) -> String {
    keys.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// A settings file or the defaults could not be read for checking.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Some keys are unknown.
    #[error(transparent)]
    Unknown(#[from] UnknownKeys),
    /// The file could not be parsed (the same error loading it would give).
    #[error(transparent)]
    Parse(#[from] config::ConfigError),
}

/// The known keys.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Dotted paths of every value (leaf) of the defaults and the optional tables.
    leaves: BTreeSet<String>,
    /// Dotted paths of every table.
    tables: BTreeSet<String>,
}

impl Schema {
    /// The schema of the compiled-in `config/default.toml`.
    pub fn from_defaults() -> Result<Self, config::ConfigError> {
        Self::from_toml(DEFAULT_CONFIG)
    }

    /// The schema described by a defaults file.
    pub fn from_toml(text: &str) -> Result<Self, config::ConfigError> {
        let root = File::from_str(text, FileFormat::Toml).collect()?;
        let mut schema = Self { leaves: BTreeSet::new(), tables: BTreeSet::new() };
        schema.add_table("", &root);
        for (table, keys) in OPTIONAL_TABLES {
            schema.tables.insert((*table).to_owned());
            schema.leaves.extend(keys.iter().map(|k| format!("{table}.{k}")));
        }
        for (table, _) in NAMED_ENTRIES {
            schema.tables.insert((*table).to_owned());
        }
        Ok(schema)
    }

    fn add_table(&mut self, prefix: &str, table: &Map<String, Value>) {
        for (key, value) in table {
            let path = join(prefix, key);
            if let ValueKind::Table(inner) = &value.kind {
                self.tables.insert(path.clone());
                self.add_table(&path, inner);
            } else {
                self.leaves.insert(path);
            }
        }
    }

    /// Whether `path` names a setting (a value, not a table).
    pub fn is_known(&self, path: &str) -> bool {
        if self.leaves.contains(path) {
            return true;
        }
        // `workers.<any name>.<entry key>`: the name is the operator's, the key is not.
        NAMED_ENTRIES.iter().any(|(table, keys)| {
            path.strip_prefix(table)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(name, key)| !name.is_empty() && keys.contains(&key))
        })
    }

    /// Checks every key of a parsed settings file.
    pub fn check_table(&self, table: &Map<String, Value>, origin: &Path) -> Vec<UnknownKey> {
        let mut unknown = Vec::new();
        self.walk("", table, origin, &mut unknown);
        // The parsed table's order is a hash map's; the report should not change between runs.
        unknown.sort_by(|a, b| a.key.cmp(&b.key));
        unknown
    }

    fn walk(&self, prefix: &str, table: &Map<String, Value>, origin: &Path, unknown: &mut Vec<UnknownKey>) {
        for (key, value) in table {
            let path = join(prefix, key);
            let is_named_entry = NAMED_ENTRIES.iter().any(|(t, _)| *t == prefix);
            match &value.kind {
                // A table where the schema has one (or an operator-named entry): check inside.
                ValueKind::Table(inner) if self.tables.contains(&path) || is_named_entry => {
                    self.walk(&path, inner, origin, unknown);
                }
                // A value where the schema has a value. One of the wrong type (a table for a
                // value, a value for a table) is left to deserialisation, which names the type.
                _ if self.is_known(&path) || self.tables.contains(&path) => {}
                // An unknown table is reported once, as a table: its keys are unknown anyway.
                ValueKind::Table(_) => unknown.push(UnknownKey {
                    suggestion: self.suggest_table(&path),
                    key: path,
                    origin: KeyOrigin::File(origin.to_path_buf()),
                }),
                _ => unknown.push(UnknownKey {
                    suggestion: self.suggest(&path),
                    key: path,
                    origin: KeyOrigin::File(origin.to_path_buf()),
                }),
            }
        }
    }

    /// Checks the `MAILROOM__…` variables among `vars`, keyed the way the `config` crate keys
    /// them: prefix removed, lower-cased, `__` between levels.
    pub fn check_env<'a>(&self, vars: impl IntoIterator<Item = &'a str>) -> Vec<UnknownKey> {
        let mut unknown = Vec::new();
        for var in vars {
            let Some(key) = env_key(var) else { continue };
            if !self.is_known(&key) {
                unknown.push(UnknownKey {
                    suggestion: self.suggest(&key),
                    key,
                    origin: KeyOrigin::Env(var.to_owned()),
                });
            }
        }
        unknown
    }

    /// The known table closest to `path`.
    fn suggest_table(&self, path: &str) -> Option<String> {
        closest(path, self.tables.iter().cloned())
    }

    /// The known key closest to `path`.
    fn suggest(&self, path: &str) -> Option<String> {
        let named = NAMED_ENTRIES.iter().filter_map(|(table, keys)| {
            let name = path.strip_prefix(table)?.strip_prefix('.')?.split('.').next()?;
            Some(keys.iter().map(move |k| format!("{table}.{name}.{k}")))
        });
        closest(path, self.leaves.iter().cloned().chain(named.flatten()))
    }
}

/// The candidate closest to `path`, if it is within a few edits (a typo, not another word).
fn closest(path: &str, candidates: impl Iterator<Item = String>) -> Option<String> {
    let limit = (path.chars().count() / 5).clamp(1, 3);
    candidates
        .map(|candidate| (edit_distance(path, &candidate), candidate))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, candidate)| candidate)
}

/// The settings key of an environment variable, or `None` when the variable is not a setting.
pub fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?;
    Some(rest.to_lowercase().replace("__", "."))
}

/// The environment variable that sets `key`.
pub fn env_var_of(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_uppercase().replace('.', "__"))
}

/// Checks a settings file and the environment against the defaults.
pub fn check<'a>(file: Option<&Path>, env_vars: impl IntoIterator<Item = &'a str>) -> Result<(), CheckError> {
    let schema = Schema::from_defaults()?;
    let mut unknown = Vec::new();
    if let Some(path) = file {
        let table = File::from(path).required(true).collect()?;
        unknown.extend(schema.check_table(&table, path));
    }
    unknown.extend(schema.check_env(env_vars));
    if unknown.is_empty() { Ok(()) } else { Err(UnknownKeys(unknown).into()) }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::from_defaults().expect("the defaults parse")
    }

    fn file_keys(text: &str) -> Vec<UnknownKey> {
        let table = File::from_str(text, FileFormat::Toml).collect().expect("test TOML parses");
        schema().check_table(&table, Path::new("local.toml"))
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("rate_limit", "rate_limit"), 0);
        assert_eq!(edit_distance("rate_limt", "rate_limit"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn every_default_key_and_nested_table_is_known() {
        let s = schema();
        for key in ["sender.rate_limit", "vector_store.postgres.memory_budget_mb", "amqp.tls.ca_file", "up.upload-api"]
        {
            assert!(s.is_known(key), "{key}");
        }
        // Tables are not values: `MAILROOM__SENDER=5` sets nothing that exists.
        assert!(!s.is_known("sender"));
        assert!(!s.is_known("vector_store.postgres"));
        assert!(!s.is_known("sender.rate_limt"));
        let ok = file_keys(
            "[sender]\nrate_limit = 5\n[vector_store.postgres]\nmemory_budget_mb = 10\n\
             [mailbox]\nvip_senders = [\"a@b.c\"]\n[outbox.gmail]\nclient_id = \"x\"\nrefresh_token = \"y\"\n",
        );
        assert_eq!(ok, vec![]);
    }

    #[test]
    fn a_typo_in_a_file_is_named_with_a_suggestion() {
        let unknown = file_keys("[sender]\nrate_limt = 5\n[vector_store.postgres]\nmemory_budget = 1\n");
        let keys: Vec<_> = unknown.iter().map(|u| (u.key.as_str(), u.suggestion.as_deref())).collect();
        assert_eq!(
            keys,
            [
                ("sender.rate_limt", Some("sender.rate_limit")),
                ("vector_store.postgres.memory_budget", Some("vector_store.postgres.memory_budget_mb"))
            ]
        );
    }

    #[test]
    fn unknown_sections_and_misplaced_keys_are_reported() {
        let unknown = file_keys("[sendr]\nrate_limit = 5\n[mailbox]\nrate_limit = 5\n");
        let keys: Vec<_> = unknown.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(keys, ["mailbox.rate_limit", "sendr"]);
        assert_eq!(unknown[0].suggestion, None, "no mailbox key is one typo from rate_limit");
        assert_eq!(unknown[1].suggestion.as_deref(), Some("sender"));
        let message = UnknownKeys(unknown).to_string();
        assert!(message.contains("unknown setting `sendr` in local.toml (did you mean `sender`?)"), "{message}");
    }

    #[test]
    fn an_env_typo_names_the_variable_and_the_key() {
        let unknown = schema().check_env(["MAILROOM__SENDER__RATE_LIMT", "MAILROOM__SENDER__RATE_LIMIT"]);
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        let message = unknown[0].to_string();
        assert_eq!(
            message,
            "unknown setting `sender.rate_limt` from environment variable MAILROOM__SENDER__RATE_LIMT \
             (did you mean `sender.rate_limit`, MAILROOM__SENDER__RATE_LIMIT?)"
        );
    }

    #[test]
    fn variables_that_are_not_settings_are_ignored() {
        let unknown = schema().check_env(["MAILROOM_CONFIG", "MAILROOM_FOO", "PATH", "RUST_LOG"]);
        assert_eq!(unknown, vec![]);
    }

    #[test]
    fn worker_entries_take_any_name_but_only_override_keys() {
        let s = schema();
        assert!(s.is_known("workers.my-worker.prefetch"));
        assert!(s.is_known("workers.sender.drain_timeout_secs"));
        assert!(!s.is_known("workers.sender.consumer_id"), "not an override");
        assert!(!s.is_known("workers.sender"));
        let unknown = file_keys("[workers.sender]\nconcurrency = 2\nprefech = 3\n[workers.new-one]\nprefetch = 1\n");
        assert_eq!(unknown.len(), 1, "{unknown:?}");
        assert_eq!(unknown[0].key, "workers.sender.prefech");
        assert_eq!(unknown[0].suggestion.as_deref(), Some("workers.sender.prefetch"));
        let env =
            s.check_env(["MAILROOM__WORKERS__CLASSIFIER__CONCURRENCY", "MAILROOM__WORKERS__CLASSIFIER__CONCURENCY"]);
        assert_eq!(env.len(), 1, "{env:?}");
        assert_eq!(env[0].suggestion.as_deref(), Some("workers.classifier.concurrency"));
    }

    #[test]
    fn the_keys_declared_here_are_documented_and_real() {
        // The optional tables are documented in comments of the defaults; keep both in step.
        for (table, keys) in OPTIONAL_TABLES {
            let doc = DEFAULT_CONFIG
                .lines()
                .skip_while(|l| !l.starts_with(&format!("# [{table}]")))
                .take_while(|l| l.starts_with('#'))
                .collect::<Vec<_>>()
                .join(" ");
            for key in *keys {
                assert!(doc.contains(key), "{table}.{key} is not in the comment of config/default.toml: {doc}");
            }
        }
        // Every worker entry key changes what `consumer_for` gives.
        for (table, keys) in NAMED_ENTRIES {
            assert_eq!(*table, "workers");
            for key in *keys {
                let var = env_var_of(&format!("workers.any-name.{key}"));
                let s = crate::Settings::load_from(None, [(var, "3".to_owned())]).expect(key);
                let c = s.consumer_for("any-name");
                let value = match *key {
                    "prefetch" => u64::from(c.prefetch),
                    "concurrency" => c.concurrency as u64,
                    "drain_timeout_secs" => c.drain_timeout_secs,
                    other => panic!("{other} is not a consumer override"),
                };
                assert_eq!(value, 3, "{key}");
            }
        }
    }

    #[test]
    fn far_away_keys_get_no_suggestion() {
        let unknown = schema().check_env(["MAILROOM__COMPLETELY__DIFFERENT"]);
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].suggestion, None);
    }

    #[test]
    fn env_keys_follow_the_config_crate() {
        assert_eq!(
            env_key("MAILROOM__VECTOR_STORE__POSTGRES__MEMORY_BUDGET_MB").as_deref(),
            Some("vector_store.postgres.memory_budget_mb")
        );
        assert_eq!(env_key("MAILROOM_CONFIG"), None);
        assert_eq!(env_var_of("upload_api.token"), "MAILROOM__UPLOAD_API__TOKEN");
    }
}
