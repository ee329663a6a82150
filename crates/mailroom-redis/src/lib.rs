//! The one place a Redis client is made: the sender's quota and throttle, the generator's
//! embedding cache, `mailroom demo`'s preflight and the tests all call [`client`], so TLS
//! behaves the same everywhere.
//!
//! A `rediss://` URL connects over TLS (rustls over ring). The server's certificate must match
//! the URL's host name or IP address and chain to the bundled public roots (webpki-roots), or,
//! when `redis.tls.ca_file` is set, to that CA instead; `cert_file`/`key_file` add a client
//! certificate for servers that verify clients. The files are read here, once per client, so
//! a process picks up rotated files when it restarts. Connection kinds (a `ConnectionManager`
//! with its reconnection policy, a multiplexed connection) stay with the callers, who know what
//! they need.

use std::path::{Path, PathBuf};

use pipeline_core::settings::RedisSettings;
use redis::{ClientTlsConfig, IntoConnectionInfo as _, TlsCertificates};
use secrecy::ExposeSecret as _;

/// A Redis client could not be made from the settings. No message contains a password or the
/// contents of a file.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The settings contradict each other (TLS files with `redis://`, half a client identity).
    #[error("{0}")]
    Settings(String),
    /// The URL does not parse.
    #[error("invalid Redis URL {url}: {source}")]
    Url {
        /// The URL, password masked.
        url: String,
        /// The client's error.
        source: redis::RedisError,
    },
    /// A file of `[redis.tls]` could not be read.
    #[error("cannot read redis.tls.{key} {}: {source}", path.display())]
    Read {
        /// The settings key (`ca_file`, `cert_file`, `key_file`).
        key: &'static str,
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file of `[redis.tls]` holds no PEM block of the expected kind (refused here rather than
    /// failing later as an unexplained handshake error).
    #[error("redis.tls.{key} {} contains no PEM {expected}", path.display())]
    NotPem {
        /// The settings key.
        key: &'static str,
        /// The configured path.
        path: PathBuf,
        /// What was looked for (`CERTIFICATE`, `PRIVATE KEY`).
        expected: &'static str,
    },
    /// The PEM files parse as PEM but not as certificates or a key the TLS library accepts.
    #[error("unusable [redis.tls] files: {0}")]
    Tls(redis::RedisError),
}

fn read_pem(key: &'static str, path: &Path, expected: &'static str) -> Result<Vec<u8>, ClientError> {
    let bytes = std::fs::read(path).map_err(|source| ClientError::Read { key, path: path.to_owned(), source })?;
    // `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` and `BEGIN EC PRIVATE KEY` all contain this.
    let marker = format!("{expected}-----");
    if !String::from_utf8_lossy(&bytes).contains(&marker) {
        return Err(ClientError::NotPem { key, path: path.to_owned(), expected });
    }
    Ok(bytes)
}

/// A client for the Redis of `settings` (nothing is connected yet). With a `rediss://` URL and
/// `[redis.tls]` files, the client trusts the CA file and presents the client certificate.
pub fn client(settings: &RedisSettings) -> Result<redis::Client, ClientError> {
    // Also checked when settings are loaded; repeated for settings built in code.
    settings.validate().map_err(ClientError::Settings)?;
    let info = settings
        .url
        .expose_secret()
        .into_connection_info()
        .map_err(|source| ClientError::Url { url: settings.redacted_url(), source })?;
    let tls = &settings.tls;
    if !tls.is_configured() {
        return redis::Client::open(info).map_err(|source| ClientError::Url { url: settings.redacted_url(), source });
    }
    let root_cert = tls.ca_file.as_deref().map(|path| read_pem("ca_file", path, "CERTIFICATE")).transpose()?;
    let client_tls = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read_pem("cert_file", cert, "CERTIFICATE")?,
            client_key: read_pem("key_file", key, "PRIVATE KEY")?,
        }),
        // `validate` refused half an identity above.
        _ => None,
    };
    redis::Client::build_with_tls(info, TlsCertificates { client_tls, root_cert }).map_err(ClientError::Tls)
}

/// A connection error with what to do about it when it is a TLS failure: the client's message
/// names the problem in rustls' terms only ("invalid peer certificate: UnknownIssuer"). Matched
/// on the message because the rustls error reaches us wrapped in an I/O error.
pub fn describe(err: &redis::RedisError) -> String {
    const HINTS: &[(&str, &str)] = &[
        (
            "UnknownIssuer",
            " (the server's certificate is not signed by the CA of redis.tls.ca_file, or by a public root when \
             that is empty)",
        ),
        ("NotValidForName", " (the server's certificate does not name the URL's host: connect by a name it lists)"),
        ("Expired", " (the server's certificate has expired)"),
        ("CertificateRequired", " (the server requires a client certificate: set redis.tls.cert_file and key_file)"),
        ("UnknownCA", " (the server does not trust the client certificate of redis.tls.cert_file)"),
    ];
    let message = err.to_string();
    let hint = HINTS.iter().find(|(needle, _)| message.contains(needle)).map_or("", |(_, hint)| hint);
    format!("{message}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, ca: Option<&Path>) -> RedisSettings {
        let mut s = RedisSettings::from_url(url);
        s.tls.ca_file = ca.map(Path::to_owned);
        s
    }

    #[test]
    fn urls_and_files_are_checked_before_any_connection() {
        assert!(client(&RedisSettings::from_url("redis://127.0.0.1:6379")).is_ok());
        assert!(client(&RedisSettings::from_url("rediss://cache.example:6380")).is_ok(), "public roots");

        let err = client(&RedisSettings::from_url("http://:hunter2@cache:6379")).expect_err("not a Redis URL");
        assert!(err.to_string().contains("invalid Redis URL") && !err.to_string().contains("hunter2"), "{err}");

        let err = client(&settings("redis://:hunter2@cache:6379", Some(Path::new("/ca.pem"))))
            .expect_err("a CA with redis://");
        assert!(err.to_string().contains("rediss://") && !err.to_string().contains("hunter2"), "{err}");

        let dir = std::env::temp_dir().join(format!("mailroom-redis-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let missing = dir.join("missing.pem");
        let err = client(&settings("rediss://cache:6380", Some(&missing))).expect_err("a missing CA file");
        assert!(err.to_string().contains("redis.tls.ca_file") && err.to_string().contains("missing.pem"), "{err}");
        let key = dir.join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n").expect("write");
        let err = client(&settings("rediss://cache:6380", Some(&key))).expect_err("a key as the CA");
        assert!(err.to_string().contains("no PEM CERTIFICATE"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
