//! A real IMAP server for the IMAP source's tests: Debian's Dovecot, started per test with its
//! own configuration, a self-signed certificate made with the openssl CLI, a passwd-file user and
//! a free port; a test's own IMAP session (a mail client's, delivering with APPEND and reading
//! flags back); and the poller with the real broker and database behind the ledger. Shared by
//! the IMAP test files (`#[path]`).
//!
//! Needs `dovecot` (package dovecot-imapd; `.ci/run` installs it) and root, since Dovecot
//! stores mail as the `mail` user.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use mailroom_tests::{TestDb, TestDir, TestVhost, free_port};
use pipeline_core::messages::EmailToClassify;
use pipeline_core::worker_env::WorkerEnv;
use pipeline_core::{Producer, Settings, Telemetry};
use poller::cursor::{self, CursorKey};
use poller::{ImapSettings, ImapSource, Ledger, MailboxSettings, Poller, ScanReport, Step};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

pub(crate) const AGENT: &str = "support@northwind.example";
pub(crate) const USER: &str = "agent";
pub(crate) const PASSWORD: &str = "s3cret-imap-pass";
pub(crate) const FOLDER: &str = "Support";

/// A Dovecot IMAPS server on 127.0.0.1, stopped (SIGTERM, then SIGKILL) on drop.
pub(crate) struct Dovecot {
    child: Child,
    port: u16,
    ca_file: PathBuf,
    dir: TestDir,
}

impl Dovecot {
    /// Starts Dovecot; `extra` is appended to its configuration.
    pub(crate) fn start(extra: &str) -> Self {
        let dovecot = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("dovecot is not installed: apt-get install -y dovecot-imapd (.ci/run does)");
        let dir = TestDir::create();
        let root = dir.path.clone();
        let run = |program: &str, args: &[&str]| {
            let out = Command::new(program).args(args).current_dir(&root).output().expect("run helper");
            assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        // Dovecot's unprivileged processes must reach the files.
        run("chmod", &["755", "."]);
        // A throw-away CA and a server certificate it signs (rustls, like browsers, refuses a
        // CA certificate as the server's own).
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let ca = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Mailroom test CA"];
        run("openssl", &[&["req", "-x509"][..], &ec, &ca].concat());
        std::fs::write(
            root.join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("extensions file");
        let csr = ["-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=localhost"];
        run("openssl", &[&["req"][..], &ec, &csr].concat());
        run(
            "openssl",
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "cert.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
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
        let config = format!(
            "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\nprotocols = imap\n\
             listen = 127.0.0.1\nssl = required\nssl_cert = <{d}/cert.pem\nssl_key = <{d}/key.pem\n\
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
        let server = Self { child, port, ca_file: root.join("ca.pem"), dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(server.dir.path.join("foreground.log")).unwrap_or_default();
            assert!(Instant::now() < deadline, "dovecot did not listen on {port}: {log}");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
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

pub(crate) type Session = async_imap::Session<TlsStream<TcpStream>>;

/// The test's own IMAP session, as a mail client or MTA would use the server.
pub(crate) async fn client(server: &Dovecot) -> Session {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&server.ca_file).expect("cert.pem") {
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

pub(crate) async fn append(session: &mut Session, raw: &[u8], flags: Option<&str>) {
    session.append(FOLDER, flags, None, raw).await.expect("APPEND");
}

pub(crate) fn email(from: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {AGENT}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nDate: Wed, 26 Nov 2025 10:00:00 +0000\r\n\r\nHello, {subject}.\r\n"
    )
    .into_bytes()
}

/// The poller, a vhost and a database for one test.
pub(crate) struct Harness {
    // Dropped first: its connections go before the vhost and database do.
    pub(crate) poller: Poller<ImapSource>,
    vhost: TestVhost,
    _db: TestDb,
}

impl Harness {
    pub(crate) async fn start(server: &Dovecot, password: &str, extra_env: WorkerEnv) -> Self {
        let vhost = TestVhost::create().await;
        let db = TestDb::create().await;
        let env = WorkerEnv::new()
            .set("amqp.url", vhost.amqp_url())
            .set("database.url", db.url())
            .set("mailbox.kind", "imap")
            .set("mailbox.agent_email", AGENT.to_owned())
            .set("mailbox.imap.host", "127.0.0.1")
            .set("mailbox.imap.port", server.port.to_string())
            .set("mailbox.imap.username", USER.to_owned())
            .set("mailbox.imap.password", password.to_owned())
            .set("mailbox.imap.folder", FOLDER.to_owned())
            .set("mailbox.imap.tls_ca_file", server.ca_file.display().to_string())
            .set("mailbox.imap.timeout_secs", "20")
            // These tests of publishing keep marking mail read when published; the outcome test
            // sets the default ("answered") in `extra_env`.
            .set("mailbox.mark_read", "published")
            .merge(extra_env);
        let settings = Settings::load_from(None, env.owned()).expect("settings");
        let mailbox: MailboxSettings = settings.section("mailbox").expect("[mailbox]");
        let imap: ImapSettings = settings.section("mailbox.imap").expect("[mailbox.imap]");
        let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await.expect("database");
        let producer = Producer::new("poller-imap-test", &settings, Arc::new(Telemetry::default()));
        // Declares the topology, so the test can read the queue even before anything is published.
        producer.connect().await.expect("broker");
        let source = ImapSource::new(AGENT, &imap).expect("imap source");
        Self { poller: Poller::new(source, Ledger::new(pool, producer, mailbox)), vhost, _db: db }
    }

    /// One pass that must succeed; a pass that finds the session gone (the server closes
    /// sessions on a deleted folder) is followed by one more, which reconnects.
    pub(crate) async fn synced(&mut self) -> ScanReport {
        let now = Instant::now();
        match self.poller.step_at(now).await {
            Step::Synced(report) => report,
            Step::Failed { error, retry_in } => match self.poller.step_at(now + retry_in).await {
                Step::Synced(report) => report,
                other => panic!("expected a completed pass after {error}, got {other:?}"),
            },
            other => panic!("expected a completed pass, got {other:?}"),
        }
    }

    pub(crate) async fn drain(&self) -> Vec<EmailToClassify> {
        let conn = lapin::Connection::connect(&self.vhost.amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        let mut out = Vec::new();
        while let Some(m) =
            ch.basic_get("emails.to_classify".into(), BasicGetOptions { no_ack: true }).await.expect("basic.get")
        {
            out.push(serde_json::from_slice(&m.delivery.data).expect("emails.to_classify body"));
        }
        let _ = conn.close(200, "done".into()).await;
        out
    }

    pub(crate) async fn cursor(&self) -> Option<(String, Option<i64>)> {
        let key = CursorKey::new(AGENT, "imap", FOLDER);
        cursor::load(self.poller.ledger().pool(), &key).await.expect("cursor").map(|c| (c.position, c.validity))
    }

    pub(crate) async fn finish(mut self) {
        self.poller.close().await;
        self.poller.ledger().pool().close().await;
    }
}

/// The `imap:<Message-ID>` part of each message's ledger key, sorted (the body digest after
/// ` #` is `mailbox_key`'s unit tests' business).
pub(crate) fn ids(messages: &[EmailToClassify]) -> Vec<&str> {
    let mut ids: Vec<&str> =
        messages.iter().map(|m| m.email_id.rsplit_once(" #").map_or(m.email_id.as_str(), |(id, _)| id)).collect();
    ids.sort_unstable();
    ids
}
