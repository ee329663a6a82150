//! The IMAP source's tests against a real IMAP server (`mailroom_tests::dovecot`: Debian's
//! Dovecot, started per test): the poller with the real broker and database behind the ledger,
//! and mail delivered into [`FOLDER`]. Shared by the IMAP test files (`#[path]`).
//!
//! Needs `dovecot` (package dovecot-imapd; `.ci/run` installs it) and root, since Dovecot
//! stores mail as the `mail` user.

use std::sync::Arc;
use std::time::Instant;

pub(crate) use mailroom_tests::dovecot::{Dovecot, PASSWORD, Session, client};
use mailroom_tests::{TestDb, TestVhost};
use pipeline_core::messages::EmailToClassify;
use pipeline_core::worker_env::WorkerEnv;
use pipeline_core::{Producer, Settings, Telemetry};
use poller::cursor::{self, CursorKey};
use poller::{ImapSettings, ImapSource, Ledger, MailboxSettings, Poller, ScanReport, Step};

pub(crate) const AGENT: &str = "support@northwind.example";
pub(crate) const FOLDER: &str = "Support";

/// Delivers `raw` into [`FOLDER`].
pub(crate) async fn append(session: &mut Session, raw: &[u8], flags: Option<&str>) {
    mailroom_tests::dovecot::append(session, FOLDER, raw, flags).await;
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
            .set("mailbox.imap.port", server.port().to_string())
            .set("mailbox.imap.username", mailroom_tests::dovecot::USER.to_owned())
            .set("mailbox.imap.password", password.to_owned())
            .set("mailbox.imap.folder", FOLDER.to_owned())
            .set("mailbox.imap.tls_ca_file", server.ca_file().display().to_string())
            .set("mailbox.imap.timeout_secs", "20")
            // These tests step pass by pass and expect each to apply what was recorded before it.
            .set("mailbox.outcome_interval_ms", "0")
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
        self.vhost.drain("emails.to_classify").await
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
