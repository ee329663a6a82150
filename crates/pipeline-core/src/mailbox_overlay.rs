//! One registered mailbox as settings. A registry entry (`mailboxes.settings`) holds only what
//! differs for that mailbox — its `mailbox`, `outbox` and `sender` tables and its reply policy in
//! `rag`, with the same keys as `config/default.toml` — and [`Settings::for_mailbox`] lays it over the process's own
//! settings, so every mailbox is read and answered by exactly the code and defaults a
//! single-mailbox deployment uses.
//!
//! Secrets are never stored: a secret key holds a reference, `{"env": "VAR"}` (an environment
//! variable of the poller and sender processes) or `{"file": "/path"}` (a file they can read,
//! such as a mounted Kubernetes secret), resolved each time the mailbox's settings are built.
//! [`validate`] refuses a literal secret, an unknown key and a table a mailbox cannot have.

use std::path::Path;

use config::{Config, File, FileFormat, Source as _};
use serde_json::{Map, Value};

use crate::settings::{Settings, SettingsError};
use crate::settings_check::Schema;

/// The tables a registry entry may set: where the mailbox's mail comes from, where its replies
/// go, its sending policy (mode, quota, throttle, `from_name`), its reply policy (the keys of
/// [`RAG_KEYS`] only) and its classifier policy ([`CLASSIFIER_KEYS`]).
pub const SECTIONS: [&str; 5] = ["mailbox", "outbox", "sender", "rag", "classifier"];

/// The keys of `[rag]` a mailbox may set: its reply policy. Retrieval and prompt limits are the
/// deployment's.
pub const RAG_KEYS: [&str; 4] = ["signature", "human_categories", "no_context", "reply_language"];

/// The keys of `[classifier]` a mailbox may set: the confidence below which its support mail
/// is drafted for a person rather than answered automatically, and whether "not support"
/// verdicts get a second look in its documents.
pub const CLASSIFIER_KEYS: [&str; 2] = ["auto_answer_min_confidence", "check_documents"];

/// The sections of which a mailbox may set only some keys, and those keys.
const POLICY_KEYS: [(&str, &[&str]); 2] = [("rag", &RAG_KEYS), ("classifier", &CLASSIFIER_KEYS)];

/// Keys whose values are secrets: in the registry only as references.
pub const SECRET_KEYS: [&str; 6] = [
    "mailbox.imap.password",
    "mailbox.gmail.client_secret",
    "mailbox.gmail.refresh_token",
    "outbox.smtp.password",
    "outbox.gmail.client_secret",
    "outbox.gmail.refresh_token",
];

/// Keys the registry sets itself (the address is the entry's key), or that are the process's,
/// not a mailbox's.
const FIXED_KEYS: [&str; 2] = ["mailbox.agent_email", "sender.redis_prefix"];

/// `[registry]`: how often the processes that serve the registry's mailboxes read it again, and
/// how long a poller's hold on a mailbox lasts.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct RegistrySettings {
    /// How often the registry is read again (changes take effect within this delay).
    pub refresh_secs: u64,
    /// How long a poller's hold on a mailbox lasts without renewal.
    pub lease_secs: u64,
}

impl RegistrySettings {
    /// `refresh_secs`, at least a second.
    pub fn refresh(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.refresh_secs.max(1))
    }
}

/// What is wrong with a registry entry.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// Not a table of tables.
    #[error("mailbox settings must be a table of the tables {SECTIONS:?}, not {0}")]
    Shape(String),
    /// A table a mailbox cannot set (`amqp`, `database`, …: the deployment's).
    #[error("`{0}` is a deployment setting; a mailbox can set only {SECTIONS:?}")]
    Section(String),
    /// A `[rag]` or `[classifier]` key that is the deployment's, not a mailbox's policy.
    #[error("`{key}` is a deployment setting; a mailbox's {section} table may set only {allowed:?}")]
    NotPolicy {
        /// The dotted key.
        key: String,
        /// Its section.
        section: &'static str,
        /// What the section allows.
        allowed: &'static [&'static str],
    },
    /// A key set by the registry itself.
    #[error("`{0}` cannot be set per mailbox (the registry sets it)")]
    Fixed(&'static str),
    /// A key that names no setting.
    #[error("{0}")]
    Unknown(#[from] crate::settings_check::UnknownKeys),
    /// A secret written in clear.
    #[error("`{0}` is a secret: give a reference, {{\"env\": \"VAR\"}} or {{\"file\": \"/path\"}}, not the value")]
    LiteralSecret(String),
    /// A reference that is neither form.
    #[error("`{key}`: a reference is {{\"env\": \"VAR\"}} or {{\"file\": \"/path\"}}, not {found}")]
    BadReference {
        /// The key.
        key: String,
        /// What it held.
        found: String,
    },
    /// A reference that cannot be resolved now (the variable is unset, the file unreadable).
    #[error("`{key}`: {reason}")]
    Unresolved {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The merged settings do not deserialise (a value of the wrong type).
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// Checks a registry entry's settings as they would be stored: tables of [`SECTIONS`] only,
/// known keys only, no key the registry fixes, secrets only as references.
pub fn validate(overlay: &Value) -> Result<(), OverlayError> {
    let Value::Object(sections) = overlay else { return Err(OverlayError::Shape(kind_of(overlay).into())) };
    for (name, table) in sections {
        if !SECTIONS.contains(&name.as_str()) {
            return Err(OverlayError::Section(name.clone()));
        }
        if !table.is_object() {
            return Err(OverlayError::Shape(format!("{} for `{name}`", kind_of(table))));
        }
    }
    let mut leaves = Vec::new();
    collect_leaves("", overlay, &mut leaves);
    for (section, allowed) in POLICY_KEYS {
        let prefix = format!("{section}.");
        if let Some((key, _)) =
            leaves.iter().find(|(k, _)| k.strip_prefix(&prefix).is_some_and(|k| !allowed.contains(&k)))
        {
            return Err(OverlayError::NotPolicy { key: key.clone(), section, allowed });
        }
    }
    if let Some(fixed) = FIXED_KEYS.iter().find(|k| leaves.iter().any(|(key, _)| key == *k)) {
        return Err(OverlayError::Fixed(fixed));
    }
    for (key, value) in &leaves {
        if SECRET_KEYS.contains(&key.as_str()) && !value.is_object() && value.as_str().is_some_and(|s| !s.is_empty()) {
            return Err(OverlayError::LiteralSecret(key.clone()));
        }
    }
    // References are tables where the schema has values: checked as values here.
    let plain = without_references(overlay)?;
    let table = File::from_str(&plain.to_string(), FileFormat::Json).collect().map_err(SettingsError::from)?;
    let unknown =
        Schema::from_defaults().map_err(SettingsError::from)?.check_table(&table, Path::new("the mailbox's settings"));
    if unknown.is_empty() { Ok(()) } else { Err(crate::settings_check::UnknownKeys(unknown).into()) }
}

/// What a registered mailbox's poller task and sender handler were built from: its entry's
/// last change and the secrets its references name now. A secret rotated in place (a new value
/// in the file a reference names; a process's own environment does not change while it runs)
/// changes the version as an edit of the entry does, so it is picked up at the next read of
/// the registry (`registry.refresh_secs`), not only after `mailroom mailbox update` or a
/// restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// The entry's `updated_at`.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// A hash of the resolved secrets (or of why one cannot be resolved), in this process.
    pub secrets: u64,
}

impl Version {
    /// The version of an entry changed at `updated_at` with settings `overlay`.
    pub fn of(updated_at: chrono::DateTime<chrono::Utc>, overlay: &Value) -> Self {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        match resolve(overlay) {
            Ok(resolved) => resolved.to_string().hash(&mut hasher),
            Err(e) => e.to_string().hash(&mut hasher),
        }
        Self { updated_at, secrets: hasher.finish() }
    }
}

impl Settings {
    /// The settings of registered mailbox `address`: these settings with the entry's tables laid
    /// over them, secret references resolved, and `mailbox.agent_email` set to `address`.
    pub fn for_mailbox(&self, address: &str, overlay: &Value) -> Result<Settings, OverlayError> {
        validate(overlay)?;
        self.laid_over(address, resolve(overlay)?)
    }

    /// [`Settings::for_mailbox`] without its secrets (each secret key empty): what a process
    /// that never uses a mailbox's credentials reads of it — the generator its reply policy, the
    /// classifier its threshold. Their environment need not hold the poller's and sender's
    /// secrets.
    pub fn policy_for_mailbox(&self, address: &str, overlay: &Value) -> Result<Settings, OverlayError> {
        validate(overlay)?;
        self.laid_over(address, without_references(overlay)?)
    }

    fn laid_over(&self, address: &str, mut resolved: Value) -> Result<Settings, OverlayError> {
        resolved
            .as_object_mut()
            .expect("validated: an object")
            .entry("mailbox")
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("validated: a table")
            .insert("agent_email".into(), Value::String(address.to_owned()));
        let base = self.raw_config().ok_or_else(|| OverlayError::Shape("settings without their sources".into()))?;
        let config = Config::builder()
            .add_source(base)
            .add_source(File::from_str(&resolved.to_string(), FileFormat::Json))
            .build()
            .map_err(SettingsError::from)?;
        Ok(Settings::from_config(config)?)
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

/// `(dotted key, value)` of every value, references counted as values.
fn collect_leaves(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) if prefix.is_empty() || !is_reference(map) => {
            for (key, inner) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                collect_leaves(&path, inner, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

fn is_reference(map: &Map<String, Value>) -> bool {
    map.len() == 1 && (map.contains_key("env") || map.contains_key("file"))
}

/// `overlay` with every reference replaced by an empty string (for the key check), refusing
/// references anywhere but on a secret key.
fn without_references(overlay: &Value) -> Result<Value, OverlayError> {
    map_references(overlay, "", &mut |key, _| {
        if SECRET_KEYS.contains(&key) {
            Ok(Value::String(String::new()))
        } else {
            Err(OverlayError::BadReference {
                key: key.to_owned(),
                found: "a reference on a key that is no secret".into(),
            })
        }
    })
}

/// `overlay` with every reference replaced by the secret it names.
fn resolve(overlay: &Value) -> Result<Value, OverlayError> {
    map_references(overlay, "", &mut |key, reference| {
        let unresolved = |reason: String| OverlayError::Unresolved { key: key.to_owned(), reason };
        match (reference.get("env"), reference.get("file")) {
            (Some(Value::String(var)), None) => std::env::var(var)
                .map(Value::String)
                .map_err(|_| unresolved(format!("environment variable {var} is not set"))),
            (None, Some(Value::String(path))) => std::fs::read_to_string(path)
                .map(|s| Value::String(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| unresolved(format!("cannot read {path}: {e}"))),
            _ => Err(OverlayError::BadReference {
                key: key.to_owned(),
                found: Value::Object(reference.clone()).to_string(),
            }),
        }
    })
}

/// What replaces a reference: given its key and the reference table.
type Replace<'a> = dyn FnMut(&str, &Map<String, Value>) -> Result<Value, OverlayError> + 'a;

fn map_references(value: &Value, prefix: &str, f: &mut Replace<'_>) -> Result<Value, OverlayError> {
    match value {
        Value::Object(map) if !prefix.is_empty() && is_reference(map) => f(prefix, map),
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, inner) in map {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                out.insert(key.clone(), map_references(inner, &path, f)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;
    use serde_json::json;

    use super::*;

    fn base() -> Settings {
        Settings::load_from(None, Vec::new()).expect("defaults")
    }

    #[test]
    fn an_entry_lays_its_tables_over_the_deployments_settings() {
        let entry = json!({
            "mailbox": {"kind": "maildir", "maildir": "/srv/mail/billing", "poll_interval_ms": 250},
            "outbox": {"maildir": "/srv/mail/billing-out"},
            "sender": {"mode": "draft", "rate_limit": 40, "from_name": "Billing"},
            "rag": {"signature": "The Billing Team", "reply_language": "German"}
        });
        let s = base().for_mailbox("billing@northwind.example", &entry).expect("settings");
        let mailbox: serde_json::Value = s.section("mailbox").expect("mailbox");
        assert_eq!(mailbox["agent_email"], "billing@northwind.example");
        assert_eq!(mailbox["maildir"], "/srv/mail/billing");
        assert_eq!(mailbox["poll_interval_ms"], 250);
        assert_eq!(
            mailbox["claim_timeout_secs"],
            base().section::<serde_json::Value>("mailbox").expect("mailbox")["claim_timeout_secs"]
        );
        let sender: serde_json::Value = s.section("sender").expect("sender");
        assert_eq!((sender["mode"].as_str(), sender["rate_limit"].as_u64()), (Some("draft"), Some(40)));
        let rag: serde_json::Value = s.section("rag").expect("rag");
        assert_eq!(
            (rag["signature"].as_str(), rag["reply_language"].as_str()),
            (Some("The Billing Team"), Some("German"))
        );
        assert_eq!(rag["top_k"], base().section::<serde_json::Value>("rag").expect("rag")["top_k"], "the deployment's");
        assert_eq!(s.database.url.expose_secret(), base().database.url.expose_secret(), "the deployment's own");
    }

    #[test]
    fn secrets_are_references_resolved_when_the_settings_are_built() {
        // A variable every test process has (setting one would need `unsafe`).
        let var = "PATH";
        let expected = std::env::var(var).expect("PATH is set");
        let dir = std::env::temp_dir().join(format!("overlay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("smtp-password");
        std::fs::write(&file, "from-file\n").expect("write");
        let entry = json!({
            "mailbox": {"kind": "imap", "imap": {"host": "imap.example", "password": {"env": var}}},
            "outbox": {"kind": "smtp", "smtp": {"password": {"file": file.display().to_string()}}}
        });
        let s = base().for_mailbox("help@example.com", &entry).expect("settings");
        let imap: serde_json::Value = s.section("mailbox.imap").expect("imap");
        assert_eq!(imap["password"], expected.as_str());
        let smtp: serde_json::Value = s.section("outbox.smtp").expect("smtp");
        assert_eq!(smtp["password"], "from-file");
        let missing = json!({"mailbox": {"imap": {"password": {"env": "MAILROOM_TEST_UNSET_VARIABLE"}}}});
        let err = base().for_mailbox("help@example.com", &missing).expect_err("unset");
        assert!(err.to_string().contains("MAILROOM_TEST_UNSET_VARIABLE is not set"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_literal_secret_an_unknown_key_or_a_deployment_table_is_refused() {
        let cases = [
            (json!({"mailbox": {"imap": {"password": "hunter2"}}}), "is a secret: give a reference"),
            (json!({"mailbox": {"imap": {"pasword": {"env": "X"}}}}), "mailbox.imap.pasword"),
            (json!({"sender": {"rate_limt": 5}}), "unknown setting `sender.rate_limt`"),
            (json!({"database": {"url": "postgres://x"}}), "`database` is a deployment setting"),
            (json!({"mailbox": {"agent_email": "x@y"}}), "`mailbox.agent_email` cannot be set per mailbox"),
            (json!({"mailbox": {"maildir": {"env": "X"}}}), "a reference on a key that is no secret"),
            (json!({"rag": {"top_k": 3}}), "`rag.top_k` is a deployment setting"),
            (json!(["mailbox"]), "must be a table"),
        ];
        for (entry, says) in cases {
            let err = validate(&entry).expect_err(&entry.to_string());
            assert!(err.to_string().contains(says), "{entry}: {err}");
        }
        assert!(validate(&json!({})).is_ok(), "an entry may change nothing");
    }

    #[test]
    fn a_secret_rotated_in_its_file_changes_the_version_as_an_edit_does() {
        let dir = std::env::temp_dir().join(format!("mailroom-version-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("refresh-token");
        std::fs::write(&file, "1//first").expect("secret");
        let entry = json!({"mailbox": {"gmail": {"refresh_token": {"file": file.display().to_string()}}}});
        let at = chrono::Utc::now();
        let first = Version::of(at, &entry);
        assert_eq!(Version::of(at, &entry), first, "nothing changed");
        std::fs::write(&file, "1//rotated\n").expect("rotate");
        let rotated = Version::of(at, &entry);
        assert_ne!(rotated, first, "a new value in the same file");
        std::fs::remove_file(&file).expect("remove");
        assert_ne!(Version::of(at, &entry), rotated, "a secret that can no longer be read");
        assert_ne!(Version::of(at + chrono::Duration::seconds(1), &json!({})), Version::of(at, &json!({})), "an edit");
        std::fs::remove_dir_all(&dir).ok();
    }
}
