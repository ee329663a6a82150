//! One settings recipe for every binary: the compiled-in `config/default.toml`, then an optional
//! file (`--config` or `MAILROOM_CONFIG`), then `MAILROOM__SECTION__KEY` environment variables.
//! Secrets are `SecretString`s, whose `Debug` prints `[REDACTED]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use crate::redis_settings::{RedisSettings, RedisTlsSettings};

/// The defaults, compiled in so a binary works from any directory.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/default.toml");
/// Environment variable naming an optional settings file.
pub const CONFIG_ENV: &str = "MAILROOM_CONFIG";

/// Keys whose environment values are comma-separated lists (every list in
/// `config/default.toml`; a list key missing here cannot be set from the environment at all).
const LIST_KEYS: &[&str] = &[
    "topology.retry_delays_ms",
    "llm.providers",
    "rag.human_categories",
    "mailbox.urgent_words",
    "mailbox.vip_senders",
    "mailbox.vip_domains",
    "mailbox.authserv_ids",
    "ingester.pdf_engines",
];

/// Everything a Mailroom process can be configured with.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// RabbitMQ.
    pub amqp: AmqpSettings,
    /// Topology declaration and retry ladder.
    pub topology: TopologySettings,
    /// Consumer runtime defaults.
    pub consumer: ConsumerSettings,
    /// Per-worker overrides of `consumer`, by binary name.
    #[serde(default)]
    pub workers: BTreeMap<String, ConsumerOverride>,
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// Redis.
    pub redis: RedisSettings,
    /// Health and metrics endpoint.
    pub http: HttpSettings,
    /// RabbitMQ management API.
    pub management: ManagementSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
    /// Where uploaded documents are kept.
    pub storage: StorageSettings,
    /// Every layer merged, for the sections other crates own (`embeddings`, `upload_api`, …).
    #[serde(skip)]
    raw: Option<RawConfig>,
}

/// The merged configuration; its `Debug` shows nothing, as it holds every secret in clear.
#[derive(Clone, Default)]
struct RawConfig(Option<std::sync::Arc<Config>>);

impl std::fmt::Debug for RawConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawConfig([REDACTED])")
    }
}

/// `[amqp]`.
#[derive(Debug, Clone, Deserialize)]
pub struct AmqpSettings {
    /// Broker URL, vhost in the path. Contains credentials.
    pub url: SecretString,
    /// First reconnection delay.
    pub reconnect_initial_ms: u64,
    /// Longest reconnection delay.
    pub reconnect_max_ms: u64,
    /// TLS files for `amqps://` URLs (`[amqp.tls]`).
    #[serde(default)]
    pub tls: AmqpTlsSettings,
}

/// The files a TLS connection uses (`[amqp.tls]`, `[redis.tls]`). File paths are not secret and
/// may be logged; the key's contents are never read into anything that is.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TlsFiles {
    /// PEM file of the CA certificate(s) that signed the server's certificate. For the broker
    /// they are trusted in addition to the bundled public roots; for Redis instead of them (its
    /// client takes one root store). Empty: public roots only.
    #[serde(default, deserialize_with = "optional_path")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (chain) for mutual TLS. Needs `key_file`.
    #[serde(default, deserialize_with = "optional_path")]
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1). Needs
    /// `cert_file`.
    #[serde(default, deserialize_with = "optional_path")]
    pub key_file: Option<PathBuf>,
}

/// `[amqp.tls]`.
pub type AmqpTlsSettings = TlsFiles;

impl TlsFiles {
    /// Whether any TLS file is configured.
    pub fn is_configured(&self) -> bool {
        self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Rejects files that could not mean what the operator intended: a client certificate
    /// without its key (or the reverse), or TLS files with a plain URL — which would otherwise
    /// connect unencrypted while the configuration suggests otherwise. `section` is the settings
    /// section (`amqp`, `redis`), `tls_scheme` the URL scheme that means TLS.
    pub fn validate(
        &self,
        section: &str,
        url_uses_tls: bool,
        redacted_url: &str,
        tls_scheme: &str,
    ) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(format!("{section}.tls.cert_file and {section}.tls.key_file must be set together"));
        }
        if self.is_configured() && !url_uses_tls {
            return Err(format!(
                "{section}.tls.* is set but {section}.url ({redacted_url}) is not {tls_scheme}://; use {tls_scheme}:// or \
                 clear the TLS keys"
            ));
        }
        Ok(())
    }
}

/// An empty string means "not set": TOML has no null, and `config/default.toml` documents the
/// keys with empty values; the environment can also clear a key that a file set.
pub(crate) fn optional_path<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    Ok(raw.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).map(PathBuf::from))
}

impl AmqpSettings {
    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }

    /// The vhost named by the URL's path (`/` when the path is empty or `%2f`).
    pub fn vhost(&self) -> String {
        vhost_of(self.url.expose_secret())
    }

    /// Whether the URL asks for TLS (`amqps://`).
    pub fn uses_tls(&self) -> bool {
        url::Url::parse(self.url.expose_secret()).is_ok_and(|u| u.scheme() == "amqps")
    }

    /// Rejects TLS settings that could not mean what the operator intended
    /// ([`TlsFiles::validate`]).
    pub fn validate(&self) -> Result<(), String> {
        self.tls.validate("amqp", self.uses_tls(), &self.redacted_url(), "amqps")
    }
}

/// `[topology]`.
#[derive(Debug, Clone, Deserialize)]
pub struct TopologySettings {
    /// Declare at start (true) or only check passively (false).
    pub declare: bool,
    /// Retry ladder delays.
    #[serde(deserialize_with = "list_of_numbers")]
    pub retry_delays_ms: Vec<u32>,
}

/// Accepts a list, a single number, or a comma-separated string (how one value arrives from the
/// environment).
fn list_of_numbers<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Item {
        Number(u32),
        Text(String),
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<Item>),
        One(Item),
    }
    let items = match Raw::deserialize(d)? {
        Raw::List(v) => v,
        Raw::One(i) => vec![i],
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Item::Number(n) => out.push(n),
            Item::Text(t) => {
                for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    out.push(part.parse::<u32>().map_err(serde::de::Error::custom)?);
                }
            }
        }
    }
    Ok(out)
}

/// `[consumer]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConsumerSettings {
    /// AMQP prefetch count.
    pub prefetch: u16,
    /// Concurrent handlers per process.
    pub concurrency: usize,
    /// Drain deadline at shutdown.
    pub drain_timeout_secs: u64,
    /// Worker identity in dead letters; empty means derived.
    #[serde(default)]
    pub consumer_id: String,
}

impl ConsumerSettings {
    /// The drain deadline as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

/// `[workers.<name>]`: overrides of `[consumer]` for one worker.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConsumerOverride {
    /// AMQP prefetch count.
    pub prefetch: Option<u16>,
    /// Concurrent handlers per process.
    pub concurrency: Option<usize>,
    /// Drain deadline at shutdown.
    pub drain_timeout_secs: Option<u64>,
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    /// PostgreSQL URL. Contains credentials.
    pub url: SecretString,
    /// Pool size.
    pub max_connections: u32,
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
pub struct HttpSettings {
    /// Listen address of `/metrics`, `/healthz`, `/readyz`.
    pub listen: String,
}

/// `[management]`.
#[derive(Debug, Clone, Deserialize)]
pub struct ManagementSettings {
    /// Base URL of the management API.
    pub url: String,
    /// User name.
    pub username: String,
    /// Password.
    pub password: SecretString,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
pub struct StorageSettings {
    /// Directory of stored uploads (created if missing). The upload API writes there and the
    /// document ingester only reads files inside it.
    pub dir: std::path::PathBuf,
}

/// What becomes of a reply a policy holds back: `mailbox.unauthenticated` (an email whose
/// sender the receiving server did not authenticate — no DMARC pass, nor SPF or DKIM for the From
/// domain; see `poller::authres`) and `mailbox.after_person_reply` (a thread a person of the
/// mailbox has answered). The poller records what it sees, the sender applies the policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum DraftOrSend {
    /// A draft for a person, with the reason (a spoofed From must not get an automatic reply; a
    /// bot must not talk over a person).
    #[default]
    Draft,
    /// Sent like any other reply.
    Send,
}

impl DraftOrSend {
    /// The setting's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Send => "send",
        }
    }
}

impl TryFrom<String> for DraftOrSend {
    type Error = String;

    /// Refuses anything else, naming the key and the values it takes.
    fn try_from(value: String) -> Result<Self, String> {
        match value.as_str() {
            "draft" => Ok(Self::Draft),
            "send" => Ok(Self::Send),
            other => Err(format!(
                "mailbox.unauthenticated and mailbox.after_person_reply must be \"draft\" or \"send\", not {other:?}"
            )),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `[telemetry]`.
#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    /// Output format.
    pub format: LogFormat,
    /// Default filter (`RUST_LOG` wins).
    pub level: String,
}

/// Settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file could not be read or parsed, or a value has the wrong type.
    #[error("invalid settings: {0}")]
    Config(#[from] config::ConfigError),
    /// A file or an environment variable names a key that is no setting (a typo, usually).
    #[error("invalid settings: {0}")]
    Unknown(#[from] crate::settings_check::UnknownKeys),
}

impl From<crate::settings_check::CheckError> for SettingsError {
    fn from(e: crate::settings_check::CheckError) -> Self {
        match e {
            crate::settings_check::CheckError::Unknown(u) => Self::Unknown(u),
            crate::settings_check::CheckError::Parse(c) => Self::Config(c),
        }
    }
}

impl Settings {
    /// Loads the defaults, then `file` (or the file named by `MAILROOM_CONFIG`), then the
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let env_file = std::env::var_os(CONFIG_ENV).map(std::path::PathBuf::from);
        let file = file.map(Path::to_path_buf).or(env_file);
        Self::load_from(file.as_deref(), std::env::vars())
    }

    /// Like [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULT_CONFIG, FileFormat::Toml));
        if let Some(path) = file {
            builder = builder.add_source(File::from(path).required(true));
        }
        let vars: std::collections::HashMap<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with(crate::settings_check::ENV_PREFIX)).collect();
        // Before anything is merged: an unknown key would otherwise be merged and then ignored.
        let mut names: Vec<&str> = vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        crate::settings_check::check(file, names)?;
        let mut environment = Environment::with_prefix("MAILROOM")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .source(Some(vars));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let config = builder.add_source(environment).build()?;
        Self::from_config(config)
    }

    /// The settings of a merged configuration (every layer already applied).
    pub(crate) fn from_config(config: Config) -> Result<Self, SettingsError> {
        let mut settings: Settings = config.clone().try_deserialize()?;
        settings.amqp.validate().map_err(config::ConfigError::Message)?;
        settings.redis.validate().map_err(config::ConfigError::Message)?;
        settings.raw = Some(RawConfig(Some(std::sync::Arc::new(config))));
        Ok(settings)
    }

    /// The merged configuration these settings came from (for laying more over it).
    pub(crate) fn raw_config(&self) -> Option<Config> {
        self.raw.as_ref().and_then(|r| r.0.as_deref()).cloned()
    }

    /// Deserialises a section owned by another crate (its defaults are in `config/default.toml`,
    /// and the file and environment layers apply to it like to every other key).
    pub fn section<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, SettingsError> {
        let raw = self
            .raw
            .as_ref()
            .and_then(|r| r.0.as_ref())
            .ok_or_else(|| config::ConfigError::NotFound(name.to_owned()))?;
        Ok(raw.get::<T>(name)?)
    }

    /// Every setting in effect (the defaults, the file and the environment merged), with
    /// secrets replaced by [`REDACTED`] as [`redact_secrets`] does: what `mailroom config` prints.
    pub fn effective_redacted(&self) -> Result<serde_json::Value, SettingsError> {
        let raw = self
            .raw
            .as_ref()
            .and_then(|r| r.0.as_ref())
            .ok_or_else(|| config::ConfigError::NotFound("the merged settings".to_owned()))?;
        let mut value: serde_json::Value = raw.as_ref().clone().try_deserialize()?;
        redact_secrets(&mut value);
        Ok(value)
    }

    /// The consumer settings of one worker: `[consumer]` with `[workers.<name>]` applied.
    pub fn consumer_for(&self, worker: &str) -> ConsumerSettings {
        let mut merged = self.consumer.clone();
        if let Some(o) = self.workers.get(worker) {
            merged.prefetch = o.prefetch.unwrap_or(merged.prefetch);
            merged.concurrency = o.concurrency.unwrap_or(merged.concurrency);
            merged.drain_timeout_secs = o.drain_timeout_secs.unwrap_or(merged.drain_timeout_secs);
        }
        if merged.consumer_id.is_empty() {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            merged.consumer_id = format!("{worker}-{host}-{}", std::process::id());
        }
        merged
    }
}

/// What a redacted secret is shown as.
pub const REDACTED: &str = "[REDACTED]";

/// Words that make a key a secret wherever it is: `api_key`, `client_secret`, `password`,
/// `refresh_token`, `upload_api.token`. Chosen by name rather than listed so that a secret added
/// later is redacted without anyone remembering to list it; the price is that a few harmless
/// keys (`amqp.tls.key_file`, `mailbox.gmail.token_url`) are hidden too.
const SECRET_WORDS: &[&str] = &["key", "secret", "password", "token"];

/// Whether a key (its last segment, any case) names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| key.contains(w))
}

/// Redacts secrets in a settings tree, in place: every non-empty value of a key that
/// [`is_secret_key`], whatever its type, becomes [`REDACTED`]; and every string anywhere that is
/// a URL with a password (`amqp://guest:guest@…`, `postgres://app:pw@…`, `redis://:pw@…`) keeps
/// everything but the password (`***`), as [`redact_url`] does. Empty secrets stay empty, so
/// the output still shows which are unset.
pub fn redact_secrets(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                let empty = matches!(inner, Value::Null) || inner.as_str().is_some_and(str::is_empty);
                if is_secret_key(key) && !empty {
                    *inner = Value::String(REDACTED.to_owned());
                } else {
                    redact_secrets(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_secrets),
        Value::String(s) => {
            if url::Url::parse(s).is_ok_and(|u| u.password().is_some()) {
                *s = redact_url(s);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Replaces the password of a URL with `***`; anything unparsable is hidden whole.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "[unparsable URL]".to_owned(),
    }
}

/// The vhost of an AMQP URL.
pub fn vhost_of(raw: &str) -> String {
    let path = url::Url::parse(raw).map(|u| u.path().to_owned()).unwrap_or_default();
    let vhost = path.strip_prefix('/').unwrap_or(&path);
    if vhost.is_empty() {
        return "/".to_owned();
    }
    percent_encoding::percent_decode_str(vhost).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_load_and_env_overrides_win() {
        let s = Settings::load_from(None, env(&[])).expect("defaults load");
        assert_eq!(s.consumer.prefetch, 32);
        assert_eq!(s.topology.retry_delays_ms, crate::topology::DEFAULT_RETRY_DELAYS_MS.to_vec());
        let ladder_ms: u32 = s.topology.retry_delays_ms.iter().sum();
        assert!(ladder_ms >= 30 * 60 * 1000, "the default ladder rides out a 30-minute outage: {ladder_ms} ms");
        assert_eq!(s.consumer_for("doc-ingester").prefetch, 1, "the ingester takes one document at a time");
        let s = Settings::load_from(
            None,
            env(&[
                ("MAILROOM__AMQP__URL", "amqp://u:hunter2@rabbit:5672/prod"),
                ("MAILROOM__CONSUMER__PREFETCH", "7"),
                ("MAILROOM__TOPOLOGY__RETRY_DELAYS_MS", "100,200"),
                ("MAILROOM__WORKERS__CLASSIFIER__CONCURRENCY", "3"),
            ]),
        )
        .expect("env loads");
        assert_eq!(s.consumer.prefetch, 7);
        assert_eq!(s.topology.retry_delays_ms, vec![100, 200]);
        assert_eq!(s.consumer_for("classifier").concurrency, 3);
        assert_eq!(s.consumer_for("sender").concurrency, 16);
        assert_eq!(s.amqp.vhost(), "prod");
        let one = Settings::load_from(None, env(&[("MAILROOM__TOPOLOGY__RETRY_DELAYS_MS", "250")])).expect("loads");
        assert_eq!(one.topology.retry_delays_ms, vec![250]);
        assert_eq!(s.amqp.redacted_url(), "amqp://u:***@rabbit:5672/prod");
    }

    #[test]
    fn every_list_of_the_defaults_can_be_set_from_the_environment() {
        let s = Settings::load_from(
            None,
            env(&[
                ("MAILROOM__MAILBOX__VIP_DOMAINS", "vip.example"),
                ("MAILROOM__MAILBOX__VIP_SENDERS", "ceo@example.com,cfo@example.com"),
                ("MAILROOM__MAILBOX__URGENT_WORDS", "urgent,asap"),
                ("MAILROOM__RAG__HUMAN_CATEGORIES", "billing,legal"),
            ]),
        )
        .expect("env loads");
        let list = |key: &str| s.section::<Vec<String>>(key).expect(key);
        assert_eq!(list("mailbox.vip_domains"), ["vip.example"]);
        assert_eq!(list("mailbox.vip_senders"), ["ceo@example.com", "cfo@example.com"]);
        assert_eq!(list("mailbox.urgent_words"), ["urgent", "asap"]);
        assert_eq!(list("rag.human_categories"), ["billing", "legal"]);
        // Every list of the defaults is a list key: one the list misses fails to load from the
        // environment ("expected a sequence").
        for line in DEFAULT_CONFIG.lines().filter(|l| l.contains("= [")) {
            let key = line.split('=').next().unwrap_or_default().trim();
            assert!(LIST_KEYS.iter().any(|k| k.ends_with(&format!(".{key}"))), "{key} is not in LIST_KEYS");
        }
    }

    #[test]
    fn a_file_overrides_defaults() {
        let dir = std::env::temp_dir().join(format!("mailroom-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("local.toml");
        std::fs::write(&path, "[consumer]\nconcurrency = 2\n[telemetry]\nformat = \"json\"\n").expect("write");
        let s = Settings::load_from(Some(&path), env(&[])).expect("file loads");
        assert_eq!(s.consumer.concurrency, 2);
        assert_eq!(s.telemetry.format, LogFormat::Json);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let s = Settings::load_from(
            None,
            env(&[
                ("MAILROOM__AMQP__URL", "amqp://u:hunter2@rabbit:5672/prod"),
                ("MAILROOM__MANAGEMENT__PASSWORD", "s3cr3t-mgmt"),
                ("MAILROOM__DATABASE__URL", "postgres://app:pgpass99@db/mailroom"),
            ]),
        )
        .expect("loads");
        let debug = format!("{s:?}");
        for secret in ["hunter2", "s3cr3t-mgmt", "pgpass99"] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
        assert!(debug.contains("REDACTED"));
    }

    #[test]
    fn tls_files_are_optional_and_must_match_the_url() {
        let s = Settings::load_from(None, env(&[])).expect("defaults load");
        assert!(!s.amqp.tls.is_configured(), "the documented empty defaults mean unset");
        let s = Settings::load_from(
            None,
            env(&[
                ("MAILROOM__AMQP__URL", "amqps://u:p@rabbit/prod"),
                ("MAILROOM__AMQP__TLS__CA_FILE", "/etc/mailroom/ca.pem"),
            ]),
        )
        .expect("amqps with a CA loads");
        assert!(s.amqp.uses_tls());
        assert_eq!(s.amqp.tls.ca_file.as_deref(), Some(Path::new("/etc/mailroom/ca.pem")));
        assert_eq!(s.amqp.tls.cert_file, None);

        let plain = Settings::load_from(
            None,
            env(&[
                ("MAILROOM__AMQP__URL", "amqp://u:hunter2@rabbit/prod"),
                ("MAILROOM__AMQP__TLS__CA_FILE", "/ca.pem"),
            ]),
        )
        .expect_err("TLS files with amqp:// are refused")
        .to_string();
        assert!(plain.contains("amqps://") && !plain.contains("hunter2"), "{plain}");
        let half = Settings::load_from(
            None,
            env(&[("MAILROOM__AMQP__URL", "amqps://u:p@rabbit/prod"), ("MAILROOM__AMQP__TLS__KEY_FILE", "/key.pem")]),
        )
        .expect_err("a key without its certificate is refused")
        .to_string();
        assert!(half.contains("cert_file"), "{half}");
    }

    #[test]
    fn unknown_keys_fail_loading_by_name() {
        let err = Settings::load_from(None, env(&[("MAILROOM__SENDER__RATE_LIMT", "5")]))
            .expect_err("a typo is refused")
            .to_string();
        assert!(err.contains("MAILROOM__SENDER__RATE_LIMT") && err.contains("`sender.rate_limt`"), "{err}");
        assert!(err.contains("did you mean `sender.rate_limit`"), "{err}");

        let dir = std::env::temp_dir().join(format!("mailroom-settings-typo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("local.toml");
        std::fs::write(&path, "[vector_store.postgres]\nmemory_budget_mb = 8\n[rag]\ntop_kk = 3\n").expect("write");
        let err = Settings::load_from(Some(&path), env(&[("MAILROOM_CONFIG", "ignored.toml")]))
            .expect_err("a typo in a file is refused")
            .to_string();
        assert!(err.contains("`rag.top_kk`") && err.contains("local.toml") && err.contains("`rag.top_k`"), "{err}");
        std::fs::write(&path, "[vector_store.postgres]\nmemory_budget_mb = 8\n").expect("write");
        let s =
            Settings::load_from(Some(&path), env(&[("MAILROOM_CONFIG", "ignored.toml")])).expect("nested keys load");
        assert_eq!(s.section::<u64>("vector_store.postgres.memory_budget_mb").expect("key"), 8);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn the_effective_settings_hide_every_secret() {
        let s = Settings::load_from(
            None,
            env(&[
                ("MAILROOM__AMQP__URL", "amqp://u:hunter2@rabbit:5672/prod"),
                ("MAILROOM__DATABASE__URL", "postgres://app:pgpass99@db/mailroom"),
                ("MAILROOM__REDIS__URL", "redis://:redispw7@cache:6379"),
                ("MAILROOM__MANAGEMENT__PASSWORD", "s3cr3t-mgmt"),
                ("MAILROOM__LLM__OPENAI__API_KEY", "sk-live-123"),
                ("MAILROOM__MAILBOX__GMAIL__REFRESH_TOKEN", "1//refresh"),
                ("MAILROOM__UPLOAD_API__TOKEN", "upload-tok"),
                ("MAILROOM__SENDER__RATE_LIMIT", "7"),
            ]),
        )
        .expect("loads");
        let view = s.effective_redacted().expect("view");
        let text = view.to_string();
        for secret in ["hunter2", "pgpass99", "redispw7", "s3cr3t-mgmt", "sk-live-123", "1//refresh", "upload-tok"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
        assert_eq!(view["amqp"]["url"], "amqp://u:***@rabbit:5672/prod");
        assert_eq!(view["redis"]["url"], "redis://:***@cache:6379");
        assert_eq!(view["llm"]["openai"]["api_key"], REDACTED);
        assert_eq!(view["llm"]["gemini"]["api_key"], "", "an unset secret shows as unset");
        assert_eq!(view["sender"]["rate_limit"], 7, "the environment is applied");
        assert_eq!(view["consumer"]["prefetch"], 32, "the defaults are there");
    }

    #[test]
    fn secret_keys_are_found_by_name_at_any_depth() {
        let mut v = serde_json::json!({
            "a": {"b": {"Client_Secret": "x", "session_token": 5, "list": ["https://u:pw@h/", "plain"]}},
            "passwords": ["p"], "name": "https://h/no-password",
        });
        redact_secrets(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "a": {"b": {"Client_Secret": REDACTED, "session_token": REDACTED, "list": ["https://u:***@h/", "plain"]}},
                "passwords": REDACTED, "name": "https://h/no-password",
            })
        );
    }

    #[test]
    fn vhost_is_percent_decoded() {
        assert_eq!(vhost_of("amqp://g:g@h:5672/%2f"), "/");
        assert_eq!(vhost_of("amqp://g:g@h:5672"), "/");
        assert_eq!(vhost_of("amqp://g:g@h:5672/test-%2Fa"), "test-/a");
    }
}
