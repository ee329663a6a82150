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
//! The files are read again at every new connection (sqlx reads them per handshake), so
//! rotated certificates are picked up without a restart.

use std::path::{Path, PathBuf};

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

/// Checks the TLS files that `options` (parsed from `url`) will use and applies libpq's
/// `require` + `sslrootcert` rule. Files are not looked at when TLS is off (`disable`, and
/// `allow`, which sqlx treats as `disable`).
pub(crate) fn apply(url: &str, options: PgConnectOptions) -> Result<PgConnectOptions, TlsFileError> {
    let mode = options.get_ssl_mode();
    if matches!(mode, PgSslMode::Disable | PgSslMode::Allow) {
        return Ok(options);
    }
    // sqlx accepted the URL already; a key=value connection string has no query to look at.
    let parsed = url::Url::parse(url).ok();
    let mut root_cert = None;
    for param in [&ROOT_CERT, &CLIENT_CERT, &CLIENT_KEY] {
        if let Some(path) = path_of(parsed.as_ref(), param) {
            check(param, &path)?;
            if param.name == ROOT_CERT.name {
                root_cert = Some(path);
            }
        }
    }
    if matches!(mode, PgSslMode::Require) && root_cert.is_some() {
        return Ok(options.ssl_mode(PgSslMode::VerifyCa));
    }
    Ok(options)
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
