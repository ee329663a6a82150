//! The IMAP source against a real IMAP server: Debian's Dovecot, started per test with its own
//! configuration, a self-signed certificate made with the openssl CLI, a passwd-file user and a
//! free port, with the real broker and database behind the ledger. Mail is delivered with IMAP
//! APPEND from a second session, and the tests read flags back the same way.
//!
//! Needs `dovecot` (package dovecot-imapd; `.ci/run` installs it) and root, since Dovecot
//! stores mail as the `mail` user.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_imap::types::Flag;
use futures_util::TryStreamExt;
use lapin::options::BasicGetOptions;
use mailroom_tests::{TestDb, TestDir, TestVhost, free_port};
use pipeline_core::messages::EmailToClassify;
use pipeline_core::{Producer, Settings, Telemetry};
use poller::cursor::{self, CursorKey};
use poller::{ImapSettings, ImapSource, Ledger, MailboxSettings, Poller, ScanReport, Step};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

const AGENT: &str = "support@northwind.example";
const USER: &str = "agent";
const PASSWORD: &str = "s3cret-imap-pass";
const FOLDER: &str = "Support";

/// A Dovecot IMAPS server on 127.0.0.1, stopped (SIGTERM, then SIGKILL) on drop.
struct Dovecot {
    child: Child,
    port: u16,
    ca_file: PathBuf,
    dir: TestDir,
}

impl Dovecot {
    /// Starts Dovecot; `extra` is appended to its configuration.
    fn start(extra: &str) -> Self {
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

type Session = async_imap::Session<TlsStream<TcpStream>>;

/// The test's own IMAP session, as a mail client or MTA would use the server.
async fn client(server: &Dovecot) -> Session {
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

async fn append(session: &mut Session, raw: &[u8], flags: Option<&str>) {
    session.append(FOLDER, flags, None, raw).await.expect("APPEND");
}

/// `(message id header, seen)` of every message in the folder, by UID.
async fn flags(session: &mut Session) -> Vec<(u32, bool)> {
    session.select(FOLDER).await.expect("SELECT");
    let fetches: Vec<_> =
        session.uid_fetch("1:*", "(UID FLAGS)").await.expect("FETCH").try_collect().await.expect("FETCH");
    let mut out: Vec<(u32, bool)> =
        fetches.iter().map(|f| (f.uid.expect("uid"), f.flags().any(|flag| flag == Flag::Seen))).collect();
    out.sort_unstable();
    out
}

fn email(from: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {AGENT}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nDate: Wed, 26 Nov 2025 10:00:00 +0000\r\n\r\nHello, {subject}.\r\n"
    )
    .into_bytes()
}

/// The poller, a vhost and a database for one test.
struct Harness {
    // Dropped first: its connections go before the vhost and database do.
    poller: Poller<ImapSource>,
    vhost: TestVhost,
    _db: TestDb,
}

impl Harness {
    async fn start(server: &Dovecot, password: &str, extra_env: &[(&str, &str)]) -> Self {
        let vhost = TestVhost::create().await;
        let db = TestDb::create().await;
        let mut env = vec![
            ("MAILROOM__AMQP__URL".to_owned(), vhost.amqp_url()),
            ("MAILROOM__DATABASE__URL".to_owned(), db.url()),
            ("MAILROOM__MAILBOX__KIND".to_owned(), "imap".to_owned()),
            ("MAILROOM__MAILBOX__AGENT_EMAIL".to_owned(), AGENT.to_owned()),
            ("MAILROOM__MAILBOX__IMAP__HOST".to_owned(), "127.0.0.1".to_owned()),
            ("MAILROOM__MAILBOX__IMAP__PORT".to_owned(), server.port.to_string()),
            ("MAILROOM__MAILBOX__IMAP__USERNAME".to_owned(), USER.to_owned()),
            ("MAILROOM__MAILBOX__IMAP__PASSWORD".to_owned(), password.to_owned()),
            ("MAILROOM__MAILBOX__IMAP__FOLDER".to_owned(), FOLDER.to_owned()),
            ("MAILROOM__MAILBOX__IMAP__TLS_CA_FILE".to_owned(), server.ca_file.display().to_string()),
            ("MAILROOM__MAILBOX__IMAP__TIMEOUT_SECS".to_owned(), "20".to_owned()),
            // These tests of publishing keep marking mail read when published; the outcome test
            // sets the default ("answered") in `extra_env`.
            ("MAILROOM__MAILBOX__MARK_READ".to_owned(), "published".to_owned()),
        ];
        env.extend(extra_env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let settings = Settings::load_from(None, env).expect("settings");
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
    async fn synced(&mut self) -> ScanReport {
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

    async fn drain(&self) -> Vec<EmailToClassify> {
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

    async fn cursor(&self) -> Option<(String, Option<i64>)> {
        let key = CursorKey::new(AGENT, "imap", FOLDER);
        cursor::load(self.poller.ledger().pool(), &key).await.expect("cursor").map(|c| (c.position, c.validity))
    }

    async fn finish(mut self) {
        self.poller.close().await;
        self.poller.ledger().pool().close().await;
    }
}

fn ids(messages: &[EmailToClassify]) -> Vec<&str> {
    let mut ids: Vec<&str> = messages.iter().map(|m| m.email_id.as_str()).collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn uid_sync_publishes_each_message_once_marks_it_seen_and_survives_a_uidvalidity_change() {
    let server = Dovecot::start("");
    let mut mua = client(&server).await;
    mua.create(FOLDER).await.expect("CREATE");
    let ana = email("Ana <ana@customer.example>", "Where is my order", "a1@customer.example");
    let cy = email("Cy <cy@customer.example>", "URGENT: site down", "c1@customer.example");
    let read = email("Di <di@customer.example>", "Old news", "d1@customer.example");
    let no_sender = b"To: support@northwind.example\r\nSubject: who sent this\r\n\r\nnobody\r\n".to_vec();
    append(&mut mua, &ana, None).await; // UID 1
    append(&mut mua, &cy, None).await; // UID 2
    append(&mut mua, &read, Some("(\\Seen)")).await; // UID 3
    append(&mut mua, &no_sender, None).await; // UID 4
    let mut h = Harness::start(&server, PASSWORD, &[("MAILROOM__MAILBOX__IMAP__BATCH_SIZE", "2")]).await;

    // Pass 1: a full sync of the unseen mail.
    let report = h.synced().await;
    assert_eq!((report.published, report.unparseable, report.skipped), (2, 1, 0));
    let first = h.drain().await;
    assert_eq!(ids(&first), ["imap:a1@customer.example", "imap:c1@customer.example"]);
    assert_eq!(first[0].email_id, "imap:c1@customer.example", "most urgent first");
    assert_eq!(first[0].priority, 8);
    assert_eq!(first[1].priority, 5);
    assert_eq!(first[1].thread_id.as_deref(), Some("a1@customer.example"));
    assert!(first.iter().all(|m| m.labels == [FOLDER, "UNREAD"] && m.agent_email == AGENT));
    assert_eq!(
        flags(&mut mua).await,
        [(1, true), (2, true), (3, true), (4, false)],
        "published mail is seen; unparseable mail stays unread for a person"
    );
    let (position, validity) = h.cursor().await.expect("cursor stored");
    assert_eq!(position, "4");
    let first_validity = validity.expect("UIDVALIDITY stored");
    let ledger: Vec<(String, String)> = sqlx::query_as("SELECT mailbox_id, state FROM mailbox_messages ORDER BY 1")
        .fetch_all(h.poller.ledger().pool())
        .await
        .expect("ledger");
    assert_eq!(ledger.len(), 3);
    assert!(ledger.iter().any(|(id, state)| id.starts_with("imap:sha256:") && state == "unparseable"), "{ledger:?}");

    // Pass 2: new UIDs only — a new message, and a second copy of one already published.
    let eve = email("Eve <eve@customer.example>", "Refund", "e1@customer.example");
    append(&mut mua, &eve, None).await; // UID 5
    append(&mut mua, &ana, None).await; // UID 6
    let report = h.synced().await;
    assert_eq!((report.published, report.unparseable), (1, 0));
    let second = h.drain().await;
    assert_eq!(ids(&second), ["imap:e1@customer.example"]);
    assert_eq!(flags(&mut mua).await[4..], [(5, true), (6, true)], "the copy is marked seen, not published");
    assert_eq!(h.cursor().await, Some(("6".to_owned(), Some(first_validity))));

    // Pass 3: nothing new (`UID 7:*` still matches UID 6, which must not count as new).
    let report = h.synced().await;
    assert_eq!(report.published + report.unparseable + report.skipped, 0);
    assert!(h.drain().await.is_empty());

    // The folder is recreated (a new UIDVALIDITY) with old mail, unread again, and one new
    // message: the resync goes through the ledger and publishes only the new one.
    mua.select("INBOX").await.expect("SELECT INBOX");
    mua.delete(FOLDER).await.expect("DELETE");
    mua.create(FOLDER).await.expect("CREATE");
    let fay = email("Fay <fay@customer.example>", "New question", "f1@customer.example");
    for raw in [&ana, &cy, &eve, &fay] {
        append(&mut mua, raw, None).await;
    }
    let report = h.synced().await;
    assert_eq!((report.published, report.unparseable), (1, 0));
    let third = h.drain().await;
    assert_eq!(ids(&third), ["imap:f1@customer.example"]);
    let (position, validity) = h.cursor().await.expect("cursor");
    assert_ne!(validity, Some(first_validity), "the new UIDVALIDITY is stored");
    assert_eq!(position, "4", "the cursor starts over in the renumbered folder");
    assert_eq!(flags(&mut mua).await, [(1, true), (2, true), (3, true), (4, true)]);

    let all: Vec<&EmailToClassify> = first.iter().chain(&second).chain(&third).collect();
    let unique: HashSet<&str> = all.iter().map(|m| m.email_id.as_str()).collect();
    assert_eq!(unique.len(), all.len(), "nothing published twice");
    let _ = mua.logout().await;
    h.finish().await;
}

#[tokio::test]
async fn idle_runs_a_pass_as_soon_as_mail_arrives() {
    let server = Dovecot::start("");
    let mut mua = client(&server).await;
    mua.create(FOLDER).await.expect("CREATE");
    // A poll interval and an IDLE limit far longer than the test may take: only the server's
    // report of new mail can end the wait in time.
    let env = [
        ("MAILROOM__MAILBOX__IMAP__IDLE", "true"),
        ("MAILROOM__MAILBOX__IMAP__IDLE_TIMEOUT_SECS", "600"),
        ("MAILROOM__MAILBOX__POLL_INTERVAL_MS", "600000"),
    ];
    let mut h = Harness::start(&server, PASSWORD, &env).await;
    assert_eq!(h.synced().await.published, 0);
    assert!(h.poller.source().idles(), "Dovecot offers IDLE");

    let gus = email("Gus <gus@customer.example>", "Hello", "g1@customer.example");
    let deliver = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        append(&mut mua, &gus, None).await;
    };
    let started = Instant::now();
    let ((), ()) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(60), h.poller.wait(None))
                .await
                .expect("IDLE reported the new mail");
        },
        deliver
    );
    assert!(started.elapsed() >= Duration::from_millis(500), "the wait lasted until the mail came");
    assert_eq!(h.synced().await.published, 1);
    assert_eq!(ids(&h.drain().await), ["imap:g1@customer.example"]);
    let _ = mua.logout().await;
    h.finish().await;
}

#[tokio::test]
async fn without_idle_on_the_server_the_poller_polls() {
    // Dovecot announces exactly these capabilities: no IDLE.
    let server = Dovecot::start("protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ UIDPLUS\n}");
    let mut mua = client(&server).await;
    mua.create(FOLDER).await.expect("CREATE");
    let env = [("MAILROOM__MAILBOX__IMAP__IDLE", "true"), ("MAILROOM__MAILBOX__POLL_INTERVAL_MS", "200")];
    let mut h = Harness::start(&server, PASSWORD, &env).await;
    assert_eq!(h.synced().await.published, 0);
    assert!(!h.poller.source().idles(), "no IDLE offered, so none used");
    tokio::time::timeout(Duration::from_secs(30), h.poller.wait(None)).await.expect("the poll interval passed");
    append(&mut mua, &email("Hal <hal@customer.example>", "Hi", "h1@customer.example"), None).await;
    assert_eq!(h.synced().await.published, 1);
    assert_eq!(ids(&h.drain().await), ["imap:h1@customer.example"]);
    let _ = mua.logout().await;
    h.finish().await;
}

#[tokio::test]
async fn a_refused_login_fails_the_pass_with_the_reason_and_backs_off() {
    let server = Dovecot::start("");
    let mut h = Harness::start(&server, "wrong-password", &[]).await;
    let now = Instant::now();
    let Step::Failed { error, retry_in } = h.poller.step_at(now).await else { panic!("expected a failed pass") };
    let text = error.to_string();
    assert!(text.contains("login as agent") && !text.contains("wrong-password"), "{text}");
    assert!(!error.needs_operator(), "a refused login may be the server's passing trouble: retried");
    assert_eq!(retry_in, Duration::from_secs(1), "the first backoff step is the poll interval");
    assert!(matches!(h.poller.step_at(now + Duration::from_millis(900)).await, Step::BackingOff { .. }));
    let Step::Failed { retry_in, .. } = h.poller.step_at(now + retry_in).await else { panic!("expected a failure") };
    assert_eq!(retry_in, Duration::from_secs(2), "the backoff doubles");
    assert_eq!(h.cursor().await, None);
    h.finish().await;
}

#[path = "support/outcomes.rs"]
mod outcomes;

/// Every flag and keyword of each message in the folder, by UID.
async fn all_flags(session: &mut Session) -> Vec<(u32, Vec<String>)> {
    session.select(FOLDER).await.expect("SELECT");
    let fetches: Vec<_> =
        session.uid_fetch("1:*", "(UID FLAGS)").await.expect("FETCH").try_collect().await.expect("FETCH");
    let mut out: Vec<(u32, Vec<String>)> = fetches
        .iter()
        .map(|f| {
            let flags = f
                .flags()
                .map(|flag| match flag {
                    Flag::Seen => "\\Seen".to_owned(),
                    Flag::Answered => "\\Answered".to_owned(),
                    Flag::Custom(name) => name.into_owned(),
                    other => format!("{other:?}"),
                })
                .collect();
            (f.uid.expect("uid"), flags)
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn outcomes_are_keywords_and_only_answered_mail_is_seen() {
    use outcomes::{Expect, SCENARIO};
    let server = Dovecot::start("");
    let mut mua = client(&server).await;
    mua.create(FOLDER).await.expect("CREATE");
    for (name, _) in SCENARIO {
        append(&mut mua, &email("Cy <cy@customer.example>", name, &format!("{name}@customer.example")), None).await;
    }
    let mut h = Harness::start(&server, PASSWORD, &[("MAILROOM__MAILBOX__MARK_READ", "answered")]).await;
    let report = h.synced().await;
    assert_eq!((report.published, report.outcomes), (SCENARIO.len(), 0));
    assert_eq!(h.drain().await.len(), SCENARIO.len());
    assert!(flags(&mut mua).await.iter().all(|(_, seen)| !seen), "published, still unread");

    let pool = h.poller.ledger().pool().clone();
    for (name, expect) in SCENARIO {
        outcomes::record(&pool, AGENT, &format!("imap:{name}@customer.example"), expect).await;
    }
    let report = h.synced().await;
    assert_eq!((report.published, report.outcomes), (0, 5));
    let keyword = |expect: Expect| match expect {
        Expect::Answered => "$Mailroom-Answered",
        Expect::Drafted => "$Mailroom-Drafted",
        Expect::NotSupport => "$Mailroom-NotSupport",
        Expect::NeedsPerson => "$Mailroom-NeedsPerson",
        Expect::Failed => "$Mailroom-Failed",
        Expect::Nothing => "",
    };
    let now = all_flags(&mut mua).await;
    for ((uid, flags), (name, expect)) in now.iter().zip(SCENARIO) {
        let shown: Vec<&String> = flags.iter().filter(|f| f.starts_with("$Mailroom-")).collect();
        match expect {
            Expect::Nothing => assert!(shown.is_empty(), "{name} (UID {uid}): no outcome yet: {flags:?}"),
            _ => assert_eq!(shown, [keyword(expect)], "{name} (UID {uid}): {flags:?}"),
        }
        let seen = flags.iter().any(|f| f == "\\Seen");
        assert_eq!(seen, expect == Expect::Answered, "{name}: only answered mail is seen: {flags:?}");
        assert_eq!(flags.iter().any(|f| f == "\\Answered"), expect == Expect::Answered, "{name}: {flags:?}");
        let id = format!("imap:{name}@customer.example");
        assert_eq!(outcomes::applied(&pool, AGENT, &id).await.as_deref(), expect.stored(), "{name}");
    }
    assert_eq!(h.synced().await.outcomes, 0, "each outcome is applied once");

    // The failed message is answered after all (a replayed dead letter): the keyword changes.
    let failed = "imap:failed@customer.example";
    outcomes::classify(&pool, AGENT, failed, true).await;
    outcomes::reply(&pool, AGENT, failed, "sent").await;
    assert_eq!(h.synced().await.outcomes, 1);
    let (_, flags) = &all_flags(&mut mua).await[4];
    assert!(
        flags.iter().any(|f| f == "$Mailroom-Answered") && !flags.iter().any(|f| f == "$Mailroom-Failed"),
        "{flags:?}"
    );
    assert!(flags.iter().any(|f| f == "\\Seen"), "answered now, so read: {flags:?}");
    let _ = mua.logout().await;
    h.finish().await;
}
