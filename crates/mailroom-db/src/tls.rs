//! libpq's TLS parameters of the database URL, where sqlx alone falls short.
//!
//! sqlx (built with rustls over ring) already reads `sslmode`, `sslrootcert`, `sslcert` and
//! `sslkey` from the URL, and `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` from the
//! environment when the URL does not say. Two things are added here, before any connection:
//!
//! - The files are checked. sqlx reads them during the handshake and reports a missing one as a
//!   bare "No such file or directory", which does not say which file; a file that holds the wrong
//!   thing (a key given as the CA) fails later still, as a handshake error.
//! - `sslmode=require` with an `sslrootcert` verifies the server's chain (`verify-ca`), as libpq
//!   does. sqlx would ignore the CA under `require` and accept any certificate, so an operator who
//!   gave the CA would silently get no verification.
//!
//! - Rotated files are picked up without a restart. sqlx 0.9 reads the files once per set of
//!   connection options and keeps the TLS connector it built; [`RotationWatch`] looks at the
//!   files' size and modification time every few seconds and, when one changed, gives the pool
//!   fresh options, so every connection opened after that reads the new files. Connections
//!   already open keep the session they have (PostgreSQL checks a certificate at the handshake
//!   only).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sqlx::PgPool;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// A TLS file of the database URL cannot be used. Only the parameter and the path appear in the
/// message, never the file's contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file could not be read.
    #[error("cannot read {param} {} of the database URL: {source}", path.display())]
    Read {
        /// The URL parameter (`sslrootcert`, `sslcert`, `sslkey`).
        param: &'static str,
        /// The path it names.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no PEM block of the expected kind.
    #[error("{param} {} of the database URL contains no PEM {expected}", path.display())]
    NotPem {
        /// The URL parameter.
        param: &'static str,
        /// The path it names.
        path: PathBuf,
        /// What was looked for (`CERTIFICATE`, `PRIVATE KEY`).
        expected: &'static str,
    },
}

/// One TLS file parameter: its URL names (sqlx's aliases included), its environment variable,
/// and the PEM block it must contain.
struct FileParam {
    name: &'static str,
    aliases: &'static [&'static str],
    env: &'static str,
    expected: &'static str,
}

const ROOT_CERT: FileParam = FileParam {
    name: "sslrootcert",
    aliases: &["sslrootcert", "ssl-root-cert", "ssl-ca"],
    env: "PGSSLROOTCERT",
    expected: "CERTIFICATE",
};
const CLIENT_CERT: FileParam =
    FileParam { name: "sslcert", aliases: &["sslcert", "ssl-cert"], env: "PGSSLCERT", expected: "CERTIFICATE" };
// `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` and `BEGIN EC PRIVATE KEY` all contain it.
const CLIENT_KEY: FileParam =
    FileParam { name: "sslkey", aliases: &["sslkey", "ssl-key"], env: "PGSSLKEY", expected: "PRIVATE KEY" };

/// The path a parameter names: the URL's (the last occurrence wins, as in sqlx), else the
/// environment variable's.
fn path_of(url: Option<&url::Url>, param: &FileParam) -> Option<PathBuf> {
    let from_url =
        url.and_then(|u| u.query_pairs().filter(|(k, _)| param.aliases.contains(&k.as_ref())).last().map(|(_, v)| v));
    match from_url {
        Some(v) => Some(PathBuf::from(v.as_ref())),
        None => std::env::var_os(param.env).map(PathBuf::from),
    }
    .filter(|p| !p.as_os_str().is_empty())
}

fn check(param: &FileParam, path: &Path) -> Result<(), TlsFileError> {
    let bytes = std::fs::read(path).map_err(|source| TlsFileError::Read {
        param: param.name,
        path: path.to_owned(),
        source,
    })?;
    let marker = format!("{}-----", param.expected);
    if !String::from_utf8_lossy(&bytes).contains(&marker) {
        return Err(TlsFileError::NotPem { param: param.name, path: path.to_owned(), expected: param.expected });
    }
    Ok(())
}

/// The TLS files that `options` (parsed from `url`) will use, with their parameters; none when
/// TLS is off (`disable`, and `allow`, which sqlx treats as `disable`).
fn files(url: &str, options: &PgConnectOptions) -> Vec<(&'static FileParam, PathBuf)> {
    if matches!(options.get_ssl_mode(), PgSslMode::Disable | PgSslMode::Allow) {
        return Vec::new();
    }
    // sqlx accepted the URL already; a key=value connection string has no query to look at.
    let parsed = url::Url::parse(url).ok();
    [&ROOT_CERT, &CLIENT_CERT, &CLIENT_KEY]
        .into_iter()
        .filter_map(|param| path_of(parsed.as_ref(), param).map(|path| (param, path)))
        .collect()
}

/// Checks the TLS files that `options` (parsed from `url`) will use and applies libpq's
/// `require` + `sslrootcert` rule.
pub(crate) fn apply(url: &str, options: PgConnectOptions) -> Result<PgConnectOptions, TlsFileError> {
    let files = files(url, &options);
    for (param, path) in &files {
        check(param, path)?;
    }
    let root_cert = files.iter().any(|(param, _)| param.name == ROOT_CERT.name);
    if matches!(options.get_ssl_mode(), PgSslMode::Require) && root_cert {
        return Ok(options.ssl_mode(PgSslMode::VerifyCa));
    }
    Ok(options)
}

/// How often [`RotationWatch`] looks at the files in production.
pub const ROTATION_CHECK: Duration = Duration::from_secs(10);

/// What identifies one version of the TLS files: each one's size and modification time (`None`
/// while a file cannot be read, e.g. in the middle of a rename).
type Stamp = Vec<Option<(u64, SystemTime)>>;

fn stamp(paths: &[PathBuf]) -> Stamp {
    paths
        .iter()
        .map(|p| std::fs::metadata(p).ok().map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH))))
        .collect()
}

/// Keeps a pool on the current TLS files of its URL: every `every`, when a file's size or
/// modification time changed, the options are built again (the files checked as at start) and
/// handed to the pool, so that new connections use the new files. A version that does not pass
/// the checks (a key half-written) is logged and tried again at the next look; the pool keeps
/// the files it had.
pub(crate) struct RotationWatch {
    paths: Vec<PathBuf>,
    seen: Stamp,
}

impl RotationWatch {
    /// The files `options` (parsed from `url`) use, stamped now: before the pool's first
    /// handshake reads them, so that a change in between is seen (at worst it is loaded twice).
    /// `None` when the URL names no TLS file.
    pub(crate) fn new(url: &str, options: &PgConnectOptions) -> Option<Self> {
        let paths: Vec<PathBuf> = files(url, options).into_iter().map(|(_, path)| path).collect();
        (!paths.is_empty()).then(|| Self { seen: stamp(&paths), paths })
    }

    /// Spawns the watch over `pool`. The task ends when the pool is closed or the runtime stops.
    pub(crate) fn spawn(self, pool: &PgPool, url: &secrecy::SecretString, every: Duration) {
        let (pool, url) = (pool.clone(), url.clone());
        let Self { paths, mut seen } = self;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if pool.is_closed() {
                    return;
                }
                let now = stamp(&paths);
                if now == seen {
                    continue;
                }
                match crate::connect_options(&url) {
                    Ok(options) => {
                        pool.set_connect_options(options);
                        seen = now;
                        tracing::info!(files = ?paths, "The database TLS files changed; new connections use them.");
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "The database TLS files changed but cannot be used yet; keeping the previous ones."
                    ),
                }
            }
        });
    }
}

/// What to do about a TLS failure, appended to the driver's message (which names the problem
/// in rustls' or the server's terms only); empty for other errors. Matched on the message
/// because the underlying rustls error reaches us wrapped in an I/O error.
pub(crate) fn hint(message: &str) -> &'static str {
    const HINTS: &[(&str, &str)] = &[
        ("UnknownIssuer", " (the server's certificate is not signed by a trusted CA: give its CA as sslrootcert)"),
        (
            "NotValidForName",
            " (the server's certificate does not name the URL's host: connect by a name it lists, or use \
             sslmode=verify-ca)",
        ),
        ("Expired", " (the server's certificate has expired)"),
        ("no encryption", " (the server accepts only TLS: add sslmode=verify-full or sslmode=require to the URL)"),
        ("requires a valid client certificate", " (give a client certificate as sslcert and sslkey)"),
        ("UnknownCA", " (the server does not trust the client certificate of sslcert)"),
    ];
    HINTS.iter().find(|(needle, _)| message.contains(needle)).map_or("", |(_, hint)| hint)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr as _;

    use super::*;

    fn options(url: &str) -> Result<PgConnectOptions, TlsFileError> {
        apply(url, PgConnectOptions::from_str(url).expect("sqlx parses the URL"))
    }

    #[test]
    fn files_are_checked_by_parameter_and_require_with_a_ca_verifies_it() {
        let dir = std::env::temp_dir().join(format!("mailroom-db-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").expect("write");
        let key = dir.join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n").expect("write");
        let base = "postgres://app:pw@db.example:5432/mailroom";

        let o = options(&format!("{base}?sslmode=require&sslrootcert={}", ca.display())).expect("ok");
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyCa), "require with a CA verifies the chain");
        let o = options(&format!("{base}?sslmode=require")).expect("ok");
        assert!(matches!(o.get_ssl_mode(), PgSslMode::Require), "require alone stays require");
        let o = options(&format!("{base}?sslmode=verify-full&ssl-ca={}", ca.display())).expect("ok");
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));

        let missing = dir.join("missing.pem");
        let err = options(&format!("{base}?sslmode=verify-full&sslrootcert={}", missing.display()))
            .expect_err("a missing CA")
            .to_string();
        assert!(err.contains("cannot read sslrootcert") && err.contains("missing.pem"), "{err}");
        assert!(!err.contains("pw"), "the URL is not in the message: {err}");
        let err = options(&format!("{base}?sslmode=require&sslcert={}&sslkey={}", key.display(), key.display()))
            .expect_err("a key given as the certificate")
            .to_string();
        assert!(err.contains("sslcert") && err.contains("no PEM CERTIFICATE"), "{err}");
        let err = options(&format!("{base}?sslmode=require&sslcert={}&sslkey={}", ca.display(), ca.display()))
            .expect_err("a certificate given as the key")
            .to_string();
        assert!(err.contains("sslkey") && err.contains("no PEM PRIVATE KEY"), "{err}");

        // With TLS off nothing is read.
        options(&format!("{base}?sslmode=disable&sslrootcert={}", missing.display())).expect("disable reads no file");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
