//! Connecting to the broker: named connections, TLS for `amqps://` URLs, and reconnection with
//! exponential backoff and jitter, so a fleet of workers does not stampede a broker that just
//! came back.
//!
//! TLS is rustls (with the `ring` provider, already in the tree for HTTPS). The broker's
//! certificate is verified against the bundled public roots plus `amqp.tls.ca_file`, and the
//! host name (or IP address) of the URL must match it; `cert_file`/`key_file` add a client
//! certificate for brokers that require mutual TLS. The files are read at every connection
//! attempt, so rotated certificates are picked up at the next reconnect without a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;

use crate::settings::{AmqpSettings, AmqpTlsSettings};

/// How long one connection attempt may take: a broker that accepts the TCP connection but does
/// not complete the handshake (overloaded, or a vhost being deleted) must not stall a worker.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long connecting, declaring the topology and opening channels may take together.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The broker refused or dropped the connection (with TLS, this includes a certificate the
    /// client does not trust, or a client certificate the broker does not).
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// The handshake did not complete in time.
    #[error("no answer from the broker within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    /// The TLS files of `[amqp.tls]` are unusable.
    #[error(transparent)]
    Tls(#[from] TlsFileError),
}

/// A file of `[amqp.tls]` could not be used. Only paths appear in the message, never contents.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    /// The file could not be read.
    #[error("cannot read amqp.tls.{key} {}: {source}", path.display())]
    Read {
        /// The settings key (`ca_file`, `cert_file`, `key_file`).
        key: &'static str,
        /// The configured path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds no PEM block of the expected kind (DER files and the like are refused here
    /// rather than failing later as an unexplained handshake error).
    #[error("amqp.tls.{key} {} contains no PEM {expected}", path.display())]
    NotPem {
        /// The settings key.
        key: &'static str,
        /// The configured path.
        path: PathBuf,
        /// What was looked for (`CERTIFICATE`, `PRIVATE KEY`).
        expected: &'static str,
    },
    /// A client certificate without its key, or the reverse.
    #[error("amqp.tls.cert_file and amqp.tls.key_file must be set together")]
    IncompleteIdentity,
}

fn read_pem(key: &'static str, path: &Path, expected: &'static str) -> Result<Vec<u8>, TlsFileError> {
    let bytes = std::fs::read(path).map_err(|source| TlsFileError::Read { key, path: path.to_owned(), source })?;
    // `BEGIN PRIVATE KEY`, `BEGIN RSA PRIVATE KEY` and `BEGIN EC PRIVATE KEY` all contain this.
    let marker = format!("{expected}-----");
    if !String::from_utf8_lossy(&bytes).contains(&marker) {
        return Err(TlsFileError::NotPem { key, path: path.to_owned(), expected });
    }
    Ok(bytes)
}

/// The TLS configuration of `[amqp.tls]`: extra trusted CAs and an optional client identity.
/// Without any file it is lapin's default (public roots, no client certificate).
pub fn tls_config(tls: &AmqpTlsSettings) -> Result<OwnedTLSConfig, TlsFileError> {
    let cert_chain = match &tls.ca_file {
        Some(path) => {
            let pem = read_pem("ca_file", path, "CERTIFICATE")?;
            Some(String::from_utf8_lossy(&pem).into_owned())
        }
        None => None,
    };
    let identity = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: read_pem("cert_file", cert, "CERTIFICATE")?,
            key: read_pem("key_file", key, "PRIVATE KEY")?,
        }),
        (None, None) => None,
        _ => return Err(TlsFileError::IncompleteIdentity),
    };
    Ok(OwnedTLSConfig { identity, cert_chain })
}

/// Opens one connection, named so operators can find it in the management UI. An `amqps://`
/// URL connects over TLS configured by `[amqp.tls]`.
pub async fn connect(settings: &AmqpSettings, connection_name: &str) -> Result<Connection, ConnectError> {
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    // `amqp://` ignores the TLS configuration; settings validation refuses TLS files with it.
    let tls = if settings.uses_tls() { tls_config(&settings.tls)? } else { OwnedTLSConfig::default() };
    let runtime = lapin::runtime::default_runtime()?;
    let attempt = Connection::connect_with_config(settings.url.expose_secret(), properties, tls, runtime);
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ConnectError::Timeout),
    }
}
