//! `[redis]` and `[redis.tls]`: the Redis URL and the files a `rediss://` connection uses.
//!
//! Only the settings live here (every binary loads and validates them); the client that uses
//! them is `mailroom-redis`, so that binaries without Redis do not link the redis crate.

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::settings::{TlsFiles, redact_url};

/// `[redis]`.
#[derive(Debug, Clone, Deserialize)]
pub struct RedisSettings {
    /// Redis URL. May contain credentials.
    pub url: SecretString,
    /// TLS files for `rediss://` URLs (`[redis.tls]`).
    #[serde(default)]
    pub tls: RedisTlsSettings,
}

/// `[redis.tls]`. Unlike `[amqp.tls]`, a CA file here *replaces* the bundled public roots (the
/// redis client takes a single root store), which is what a private CA wants anyway.
pub type RedisTlsSettings = TlsFiles;

impl RedisSettings {
    /// Settings for `url` without TLS files (plain `redis://`, or `rediss://` trusting the public
    /// roots): what tests and tools that only have a URL use.
    pub fn from_url(url: &str) -> Self {
        Self { url: SecretString::from(url.to_owned()), tls: RedisTlsSettings::default() }
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(self.url.expose_secret())
    }

    /// Whether the URL asks for TLS: `rediss://`, or `valkeys://`, which the client also takes.
    pub fn uses_tls(&self) -> bool {
        url::Url::parse(self.url.expose_secret()).is_ok_and(|u| matches!(u.scheme(), "rediss" | "valkeys"))
    }

    /// Rejects TLS settings that could not mean what the operator intended
    /// ([`TlsFiles::validate`]).
    pub fn validate(&self) -> Result<(), String> {
        self.tls.validate("redis", self.uses_tls(), &self.redacted_url(), "rediss")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::Settings;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn redis_tls_files_are_optional_and_must_match_the_url() {
        let s = Settings::load_from(None, env(&[])).expect("defaults load");
        assert!(!s.redis.tls.is_configured(), "the documented empty defaults mean unset");
        assert!(!s.redis.uses_tls());

        let s = Settings::load_from(
            None,
            env(&[
                ("MAILROOM__REDIS__URL", "rediss://:pw@cache.example:6380"),
                ("MAILROOM__REDIS__TLS__CA_FILE", "/etc/mailroom/redis-ca.pem"),
            ]),
        )
        .expect("rediss with a CA loads");
        assert!(s.redis.uses_tls());
        assert_eq!(s.redis.tls.ca_file.as_deref(), Some(Path::new("/etc/mailroom/redis-ca.pem")));
        assert_eq!(s.redis.redacted_url(), "rediss://:***@cache.example:6380");

        let plain = Settings::load_from(
            None,
            env(&[
                ("MAILROOM__REDIS__URL", "redis://:hunter2@cache:6379"),
                ("MAILROOM__REDIS__TLS__CA_FILE", "/ca.pem"),
            ]),
        )
        .expect_err("TLS files with redis:// are refused")
        .to_string();
        assert!(plain.contains("rediss://") && !plain.contains("hunter2"), "{plain}");

        let half = Settings::load_from(
            None,
            env(&[("MAILROOM__REDIS__URL", "rediss://cache:6380"), ("MAILROOM__REDIS__TLS__CERT_FILE", "/client.pem")]),
        )
        .expect_err("a certificate without its key is refused")
        .to_string();
        assert!(half.contains("key_file"), "{half}");
    }
}
