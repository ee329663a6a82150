//! A real IMAP server: Debian's Dovecot, started per test with its own configuration, a
//! certificate of [`TestCerts`], a passwd-file user and a free port; and a test's own IMAP
//! session with it (a mail client's or an MTA's: delivering with APPEND, reading flags back).
//! Used by the poller's IMAP tests and the end-to-end tests of several mailboxes.
//!
//! Needs `dovecot` (package dovecot-imapd; `.ci/run` installs it) and root, since Dovecot
//! stores mail as the `mail` user.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::tls_servers::TestCerts;
use crate::{TestDir, free_port};

/// The server's one user.
pub const USER: &str = "agent";
/// [`USER`]'s password.
pub const PASSWORD: &str = "s3cret-imap-pass";

/// A Dovecot IMAPS server on 127.0.0.1 (its certificate for `localhost` and `127.0.0.1`, signed
/// by the CA of [`Dovecot::ca_file`]), stopped (SIGTERM, then SIGKILL) on drop.
pub struct Dovecot {
    child: Child,
    port: u16,
    certs: TestCerts,
    dir: TestDir,
}

impl Dovecot {
    /// Starts Dovecot with user [`USER`]; `extra` is appended to its configuration.
    pub fn start(extra: &str) -> Self {
        let dovecot = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("dovecot is not installed: apt-get install -y dovecot-imapd (.ci/run does)");
        let certs = TestCerts::generate();
        let dir = TestDir::create();
        let root = dir.path.clone();
        let run = |program: &str, args: &[&str]| {
            let out = Command::new(program).args(args).current_dir(&root).output().expect("run helper");
            assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        // Dovecot's unprivileged processes must reach the files.
        run("chmod", &["755", "."]);
        std::fs::write(root.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).expect("passwd file");
        for sub in ["mail", "run", "state"] {
            std::fs::create_dir_all(root.join(sub)).expect("dovecot dirs");
        }
        // Dovecot refuses to store mail as root; the system `mail` user owns the mail store.
        let uid: u32 = run("id", &["-u", "mail"]).parse().expect("uid of mail");
        let gid: u32 = run("id", &["-g", "mail"]).parse().expect("gid of mail");
        std::os::unix::fs::chown(root.join("mail"), Some(uid), Some(gid))
            .expect("chown the mail store to `mail` (the IMAP tests need root)");
        let port = free_port();
        let d = root.display();
        let (cert, key) = (certs.file("server.pem"), certs.file("server-key.pem"));
        let config = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\nprotocols = imap\n\
             listen = 127.0.0.1\nssl = required\nssl_cert = <{cert}\nssl_key = <{key}\n\
             auth_mechanisms = plain\nfirst_valid_uid = 1\nmail_location = maildir:{d}/mail/%u\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {d}/passwd\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={d}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    port = 0\n  }}\n  inet_listener imaps {{\n    \
             port = {port}\n    ssl = yes\n  }}\n}}\n{extra}\n"
        );
        std::fs::write(root.join("dovecot.conf"), config).expect("dovecot.conf");
        let log = std::fs::File::create(root.join("foreground.log")).expect("log file");
        let child = Command::new(dovecot)
            .args(["-F", "-c"])
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("spawn dovecot");
        let server = Self { child, port, certs, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "dovecot did not listen on {port}: {}", server.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The IMAPS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The PEM file of the CA that signed the server's certificate (`mailbox.imap.tls_ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.certs.path("ca.pem")
    }

    /// What Dovecot logged (its own log and its standard output), for a failing test's message.
    pub fn log(&self) -> String {
        ["foreground.log", "dovecot.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self.dir.path.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its login, auth and imap processes with it.
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A logged-in IMAP session over TLS.
pub type Session = async_imap::Session<TlsStream<TcpStream>>;

/// The test's own session as [`USER`], as a mail client or MTA would use the server.
pub async fn client(server: &Dovecot) -> Session {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.ca_file()).expect("ca.pem") {
        roots.add(cert.expect("certificate")).expect("root");
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS");
    let mut client = async_imap::Client::new(tls);
    client.read_response().await.expect("greeting").expect("greeting");
    client.login(USER, PASSWORD).await.map_err(|(e, _)| e).expect("login")
}

/// Delivers `raw` into `folder` with IMAP APPEND, with `flags` such as `(\Seen)`.
pub async fn append(session: &mut Session, folder: &str, raw: &[u8], flags: Option<&str>) {
    session.append(folder, flags, None, raw).await.expect("APPEND");
}
