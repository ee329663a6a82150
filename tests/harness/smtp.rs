//! A real SMTP server: aiosmtpd (`harness/smtp_server.py`), started per test on a free port
//! with STARTTLS required (the server certificate of a [`TestCerts`], for `localhost` and
//! `127.0.0.1`) and AUTH PLAIN/LOGIN for one user. Every accepted message is stored in a
//! Maildir ([`SmtpServer::received`]). Two recipients are refused as real servers refuse them:
//! `rejected@…` gets 550 (permanent), `greylisted@…` 451 (transient). Used by the sender's SMTP
//! tests and the end-to-end tests of several mailboxes.
//!
//! Needs python3 with aiosmtpd (`pip install aiosmtpd`; `.ci/run` installs it).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::tls_servers::TestCerts;
use crate::{TestDir, free_port, maildir_messages};

/// The aiosmtpd process (killed on drop) and the Maildir of what it accepted (deleted on drop).
pub struct SmtpServer {
    _child: Child,
    port: u16,
    dir: TestDir,
}

impl SmtpServer {
    /// Starts the server with `certs`' `server.pem`, accepting AUTH as `user` with `password`
    /// only, and waits until it listens.
    pub async fn start(certs: &TestCerts, user: &str, password: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness/smtp_server.py");
        let (dir, port) = (TestDir::create(), free_port());
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", &port.to_string(), "--mode", "starttls", "--user", user, "--password", password])
            .arg("--maildir")
            .arg(dir.path.join("received"))
            .arg("--cert")
            .arg(certs.path("server.pem"))
            .arg("--key")
            .arg(certs.path("server-key.pem"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with aiosmtpd (pip install aiosmtpd; .ci/run installs it)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
        assert!(
            matches!(ready, Ok(Ok(Some(ref l))) if l == "READY"),
            "the SMTP server did not start (is aiosmtpd installed? `pip install aiosmtpd`): {ready:?}"
        );
        Self { _child: child, port, dir }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The messages accepted so far, as files of the server's Maildir (sorted).
    pub fn received(&self) -> Vec<PathBuf> {
        maildir_messages(&self.dir.path.join("received"))
    }
}
