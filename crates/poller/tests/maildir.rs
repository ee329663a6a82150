//! The Maildir source's outcomes, in a temporary Maildir with the real broker (a throw-away
//! vhost) and database (a throw-away database) behind the ledger: published mail leaves `new/`
//! unread, each outcome becomes a keyword letter (mapped in `dovecot-keywords`, as Dovecot keeps
//! IMAP keywords in a Maildir), and only answered mail gets `S` (and `R`).

#[path = "support/outcomes.rs"]
mod outcomes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailroom_tests::{TestDb, TestDir, TestVhost};
use outcomes::{Expect, SCENARIO};
use pipeline_core::worker_env::WorkerEnv;
use pipeline_core::{Producer, Settings, Telemetry};
use poller::maildir_outcomes::KEYWORDS_FILE;
use poller::{Ledger, MailboxSettings, MaildirSource, Poller, ScanReport, Step};

const AGENT: &str = "support@northwind.example";

fn email(subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: Cy <cy@customer.example>\r\nTo: {AGENT}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Wed, 26 Nov 2025 10:00:00 +0000\r\n\r\nHello, {subject}.\r\n"
    )
    .into_bytes()
}

/// Mailbox id → file name, of every file in `cur/`.
fn cur(root: &std::path::Path) -> BTreeMap<String, String> {
    std::fs::read_dir(root.join("cur"))
        .expect("cur/")
        .map(|e| {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            (name.split(':').next().unwrap_or_default().to_owned(), name)
        })
        .collect()
}

/// The flags of a `cur/` file name.
fn flags(name: &str) -> &str {
    name.split_once(":2,").map(|(_, f)| f).unwrap_or_default()
}

async fn synced(poller: &mut Poller<MaildirSource>) -> ScanReport {
    synced_at(poller, Instant::now()).await
}

async fn synced_at(poller: &mut Poller<MaildirSource>, at: Instant) -> ScanReport {
    match poller.step_at(at).await {
        Step::Synced(report) => report,
        other => panic!("expected a completed pass, got {other:?}"),
    }
}

/// What one test runs against: a vhost, a database and a Maildir of its own, removed when it is
/// dropped.
struct TestMailbox {
    vhost: TestVhost,
    db: TestDb,
    _dir: TestDir,
    /// The Maildir, created empty.
    root: std::path::PathBuf,
}

impl TestMailbox {
    async fn create() -> Self {
        let (vhost, db, dir) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
        let root = dir.path.join("mailbox");
        poller::maildir::ensure(&root).expect("maildir");
        Self { vhost, db, _dir: dir, root }
    }

    /// A poller of [`AGENT`]'s Maildir (with `extra` on top of the defaults), connected to the
    /// broker, and its migrated database.
    async fn start(&self, extra: WorkerEnv) -> (Poller<MaildirSource>, sqlx::PgPool) {
        let env = WorkerEnv::new()
            .set("amqp.url", self.vhost.amqp_url())
            .set("database.url", self.db.url())
            .set("mailbox.agent_email", AGENT.to_owned())
            .set("mailbox.maildir", self.root.display().to_string())
            // These tests step pass by pass and expect each to apply what was recorded before it.
            .set("mailbox.outcome_interval_ms", "0")
            .merge(extra)
            .build();
        let settings =
            Settings::load_from(None, env.iter().map(|(k, v)| ((*k).to_owned(), v.clone()))).expect("settings");
        let mailbox: MailboxSettings = settings.section("mailbox").expect("[mailbox]");
        let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await.expect("database");
        let producer = Producer::new("poller-maildir-test", &settings, Arc::new(Telemetry::default()));
        producer.connect().await.expect("broker");
        let source = MaildirSource::new(&self.root).expect("source");
        (Poller::new(source, Ledger::new(pool.clone(), producer, mailbox)), pool)
    }
}

#[tokio::test]
async fn outcomes_are_keyword_flags_and_only_answered_mail_is_seen() {
    let mailbox = TestMailbox::create().await;
    let root = mailbox.root.clone();
    // Dovecot (or a person) already uses one keyword: ours take the next letters.
    std::fs::write(root.join(KEYWORDS_FILE), "0 $Forwarded\n").expect("keywords file");
    let ids: Vec<String> = (0..SCENARIO.len()).map(|i| format!("176415000{i}.M{i}P1.host")).collect();
    for (id, (name, _)) in ids.iter().zip(SCENARIO) {
        std::fs::write(root.join("new").join(id), email(name, &format!("{name}@customer.example"))).expect("deliver");
    }
    let (mut poller, pool) = mailbox.start(WorkerEnv::new()).await;
    assert_eq!(poller.ledger().settings().mark_read, poller::MarkRead::Answered, "the default");

    let report = synced(&mut poller).await;
    assert_eq!((report.published, report.outcomes), (SCENARIO.len(), 0));
    assert_eq!(std::fs::read_dir(root.join("new")).expect("new/").count(), 0, "new/ is the poller's cursor");
    assert!(cur(&root).values().all(|name| flags(name).is_empty()), "published, still unread: {:?}", cur(&root));
    assert_eq!(synced(&mut poller).await.published, 0, "left unread, not published again");

    for (id, (_, expect)) in ids.iter().zip(SCENARIO) {
        outcomes::record(&pool, AGENT, id, expect).await;
    }
    let report = synced(&mut poller).await;
    assert_eq!((report.published, report.outcomes), (0, 5));
    let keywords = std::fs::read_to_string(root.join(KEYWORDS_FILE)).expect("keywords file");
    assert_eq!(
        keywords,
        "0 $Forwarded\n1 $Mailroom-Answered\n2 $Mailroom-Drafted\n3 $Mailroom-NeedsPerson\n\
         4 $Mailroom-NotSupport\n5 $Mailroom-Failed\n"
    );
    let expected = |expect: Expect| match expect {
        Expect::Answered => "RSb",
        Expect::Drafted => "c",
        Expect::NeedsPerson => "d",
        Expect::NotSupport => "e",
        Expect::Failed => "f",
        Expect::Nothing => "",
    };
    let files = cur(&root);
    for (id, (name, expect)) in ids.iter().zip(SCENARIO) {
        assert_eq!(flags(&files[id]), expected(expect), "{name}: {}", files[id]);
        assert_eq!(outcomes::applied(&pool, AGENT, id).await.as_deref(), expect.stored(), "{name}");
    }
    assert_eq!(synced(&mut poller).await.outcomes, 0, "each outcome is applied once");

    // A person reads the failed message; later its dead letter is replayed and answered.
    let failed = &ids[4];
    let before = root.join("cur").join(&files[failed]);
    std::fs::rename(&before, root.join("cur").join(format!("{failed}:2,Sf"))).expect("read by a person");
    outcomes::classify(&pool, AGENT, failed, true).await;
    outcomes::reply(&pool, AGENT, failed, "sent").await;
    assert_eq!(synced(&mut poller).await.outcomes, 1);
    assert_eq!(flags(&cur(&root)[failed]), "RSb", "the Failed keyword replaced by Answered");
    assert_eq!(cur(&root).len(), SCENARIO.len(), "every message stays in cur/");

    poller.close().await;
    pool.close().await;
}

#[tokio::test]
async fn outcomes_are_applied_at_most_once_per_outcome_interval() {
    let mailbox = TestMailbox::create().await;
    let root = mailbox.root.clone();
    let id = "1764150000.M0P1.host";
    std::fs::write(root.join("new").join(id), email("answered", "answered@customer.example")).expect("deliver");
    let hour = Duration::from_secs(3600);
    let extra = WorkerEnv::new().set("mailbox.outcome_interval_ms", hour.as_millis().to_string());
    let (mut poller, pool) = mailbox.start(extra).await;
    let step = async |poller: &mut Poller<MaildirSource>, at: Instant| {
        let report = synced_at(poller, at).await;
        (report.published, report.outcomes)
    };

    let start = Instant::now();
    assert_eq!(step(&mut poller, start).await, (1, 0), "the first pass looks for outcomes (none yet)");
    outcomes::record(&pool, AGENT, id, Expect::Answered).await;
    assert_eq!(step(&mut poller, start + Duration::from_secs(1)).await, (0, 0), "not due for an hour");
    assert_eq!(outcomes::applied(&pool, AGENT, id).await, None);
    assert_eq!(step(&mut poller, start + hour).await, (0, 1), "due: the answer is shown");
    assert_eq!(flags(&cur(&root)[id]), "RSa", "read, replied, and its keyword");
    assert_eq!(outcomes::applied(&pool, AGENT, id).await.as_deref(), Some("answered"));

    poller.close().await;
    pool.close().await;
}

#[tokio::test]
async fn a_backlog_of_several_parts_is_published_in_one_pass_each_email_once() {
    let mailbox = TestMailbox::create().await;
    let root = mailbox.root.clone();
    let backlog = 2 * poller::maildir::PASS_PART + 7;
    for i in 0..backlog {
        let id = format!("17641{i:05}.M{i}P1.host");
        std::fs::write(root.join("new").join(id), email(&format!("question {i}"), &format!("q{i}@customer.example")))
            .expect("deliver");
    }
    let (mut poller, pool) = mailbox.start(WorkerEnv::new()).await;

    let report = synced(&mut poller).await;
    assert_eq!((report.published, report.unparseable, report.skipped), (backlog, 0, 0));
    assert_eq!(std::fs::read_dir(root.join("new")).expect("new/").count(), 0);
    assert_eq!(cur(&root).len(), backlog);
    let published: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT message_id) FROM mailbox_messages WHERE state = 'published'")
            .fetch_one(&pool)
            .await
            .expect("ledger");
    assert_eq!(published, i64::try_from(backlog).expect("small"), "one publication each");
    assert_eq!(synced(&mut poller).await.published, 0, "nothing left to publish");

    poller.close().await;
    pool.close().await;
}

/// `(mailbox_id, state, duplicate_of, sender_address)` of every ledger row, by mailbox id.
async fn ledger_rows(pool: &sqlx::PgPool) -> Vec<(String, String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT mailbox_id, state, duplicate_of, sender_address FROM mailbox_messages WHERE agent_email = $1 \
         ORDER BY mailbox_id",
    )
    .bind(AGENT)
    .fetch_all(pool)
    .await
    .expect("ledger")
}

#[tokio::test]
async fn copies_of_one_email_are_published_once_and_show_its_outcome() {
    let mailbox = TestMailbox::create().await;
    let root = mailbox.root.clone();
    let original = email("where is my order", "order@customer.example");
    let with = |prefix: &str| [prefix.as_bytes(), &original].concat();
    // The email, a copy through an alias, a re-delivery, the same text quoted-printable; the
    // same Message-ID with another body; and another email.
    let delivered: [(&str, Vec<u8>); 6] = [
        ("1764150001.M1P1.host", original.clone()),
        ("1764150002.M2P1.host", with("Delivered-To: help@northwind.example\r\n")),
        ("1764150003.M3P1.host", with("Received: from mx2.northwind.example\r\n")),
        (
            "1764150004.M4P1.host",
            String::from_utf8(original.clone())
                .expect("utf-8")
                .replace("\r\n\r\n", "\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
                .replace("Hello, where is my order.", "Hello, where is my =\r\norder.")
                .into_bytes(),
        ),
        (
            "1764150005.M5P1.host",
            String::from_utf8(original.clone()).expect("utf-8").replace("Hello,", "Cancel it,").into_bytes(),
        ),
        ("1764150006.M6P1.host", email("invoice copy", "invoice@customer.example")),
    ];
    for (id, raw) in &delivered {
        std::fs::write(root.join("new").join(id), raw).expect("deliver");
    }
    let (mut poller, pool) = mailbox.start(WorkerEnv::new()).await;

    let report = synced(&mut poller).await;
    assert_eq!(report.published, 3, "the email once, the other body, the other email: {report:?}");
    assert_eq!(std::fs::read_dir(root.join("new")).expect("new/").count(), 0, "every copy is filed away");
    let first = delivered[0].0.to_owned();
    let duplicate =
        |id: &str| (id.to_owned(), "duplicate".to_owned(), Some(first.clone()), Some("cy@customer.example".to_owned()));
    let published = |id: &str| (id.to_owned(), "published".to_owned(), None, Some("cy@customer.example".to_owned()));
    assert_eq!(
        ledger_rows(&pool).await,
        vec![
            published(delivered[0].0),
            duplicate(delivered[1].0),
            duplicate(delivered[2].0),
            duplicate(delivered[3].0),
            published(delivered[4].0),
            published(delivered[5].0),
        ]
    );

    // A copy arriving after the email was published is a duplicate too.
    std::fs::write(root.join("new").join("1764150007.M7P1.host"), with("X-Resent: yes\r\n")).expect("deliver");
    assert_eq!(synced(&mut poller).await.published, 0);
    assert_eq!(ledger_rows(&pool).await[6], duplicate("1764150007.M7P1.host"));

    // The email is answered: every copy shows it.
    outcomes::classify(&pool, AGENT, &first, true).await;
    outcomes::reply(&pool, AGENT, &first, "sent").await;
    assert_eq!(synced(&mut poller).await.outcomes, 5, "the email and its four copies");
    let files = cur(&root);
    for id in [delivered[0].0, delivered[1].0, delivered[2].0, delivered[3].0, "1764150007.M7P1.host"] {
        assert_eq!(flags(&files[id]), "RSa", "{id}: {}", files[id]);
    }
    assert_eq!(flags(&files[delivered[4].0]), "", "the other body is its own email, still open");
    poller.close().await;
    pool.close().await;
}

#[tokio::test]
async fn a_copy_prepared_while_another_is_being_published_is_its_duplicate_unless_that_claim_is_stale() {
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("mailbox.agent_email", AGENT.to_owned())
        .build();
    let settings = Settings::load_from(None, env.iter().map(|(k, v)| ((*k).to_owned(), v.clone()))).expect("settings");
    let mailbox: MailboxSettings = settings.section("mailbox").expect("[mailbox]");
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await.expect("database");
    // Two pollers share the ledger; each prepares one copy.
    let producer = || Producer::new("poller-ledger-test", &settings, Arc::new(Telemetry::default()));
    let (a, b) =
        (Ledger::new(pool.clone(), producer(), mailbox.clone()), Ledger::new(pool.clone(), producer(), mailbox));
    let raw = email("refund", "refund@customer.example");
    let fetched =
        |id: &str| poller::Fetched { mailbox_id: id.into(), raw: raw.clone(), thread_id: None, labels: vec![] };
    let poller::Claim::Publish(id_a) = a.claim("copy-a").await.expect("claim") else { panic!("claim a") };
    let poller::Claim::Publish(id_b) = b.claim("copy-b").await.expect("claim") else { panic!("claim b") };
    let poller::Prepared::Ready(message) = a.prepare(fetched("copy-a"), id_a).await.expect("prepare a") else {
        panic!("a prepares first")
    };
    assert_eq!(
        b.prepare(fetched("copy-b"), id_b).await.expect("prepare b"),
        poller::Prepared::Duplicate { of: "copy-a".into() },
        "a copy of an email another poller is publishing"
    );
    assert_eq!(b.claim("copy-b").await.expect("claim"), poller::Claim::AlreadyPublished, "acknowledged as its copy");
    assert!(a.publish(vec![*message]).await.expect("publish").error.is_none());

    // A third copy, while the first copy of another email sits in a claim nobody finished.
    let other = email("warranty", "warranty@customer.example");
    let fetched_other =
        |id: &str| poller::Fetched { mailbox_id: id.into(), raw: other.clone(), thread_id: None, labels: vec![] };
    let poller::Claim::Publish(id_c) = a.claim("copy-c").await.expect("claim") else { panic!("claim c") };
    assert!(matches!(a.prepare(fetched_other("copy-c"), id_c).await.expect("prepare c"), poller::Prepared::Ready(_)));
    let poller::Claim::Publish(id_e) = b.claim("copy-e").await.expect("claim") else { panic!("claim e") };
    assert_eq!(
        b.prepare(fetched_other("copy-e"), id_e).await.expect("prepare e"),
        poller::Prepared::Duplicate { of: "copy-c".into() }
    );
    sqlx::query("UPDATE mailbox_messages SET updated_at = now() - interval '1 day' WHERE mailbox_id = 'copy-c'")
        .execute(&pool)
        .await
        .expect("the poller died");
    let poller::Claim::Publish(id_d) = b.claim("copy-d").await.expect("claim") else { panic!("claim d") };
    assert!(
        matches!(b.prepare(fetched_other("copy-d"), id_d).await.expect("prepare d"), poller::Prepared::Ready(_)),
        "a stale claim's fingerprint is taken over"
    );
    let of_e: Option<String> =
        sqlx::query_scalar("SELECT duplicate_of FROM mailbox_messages WHERE mailbox_id = 'copy-e'")
            .fetch_one(&pool)
            .await
            .expect("copy-e");
    assert_eq!(of_e.as_deref(), Some("copy-d"), "its duplicates follow the fingerprint");
    pool.close().await;
}

/// An email from `from` with `Authentication-Results` values `results`, topmost first.
fn authenticated_email(n: usize, from: &str, results: &[&str]) -> Vec<u8> {
    let fields: String = results.iter().map(|r| format!("Authentication-Results: {r}\r\n")).collect();
    format!(
        "{fields}From: {from}\r\nTo: {AGENT}\r\nSubject: Question {n}\r\nMessage-ID: <auth{n}@customer.example>\r\n\
         Date: Wed, 26 Nov 2025 10:00:00 +0000\r\n\r\nHello, question {n}.\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn the_verdict_on_each_senders_authentication_is_stored_from_the_trusted_header_only() {
    let mailbox = TestMailbox::create().await;
    let root = mailbox.root.clone();
    let ours = "mx.northwind.example";
    let delivered: [(&str, Vec<u8>); 5] = [
        (
            "1764150001.M1P1.host",
            authenticated_email(
                1,
                "Ana <ana@customer.example>",
                &[&format!(
                    "{ours}; spf=pass smtp.mailfrom=ana@customer.example; dkim=pass header.d=customer.example; \
                     dmarc=pass (p=reject) header.from=customer.example"
                )],
            ),
        ),
        (
            "1764150002.M2P1.host",
            authenticated_email(
                2,
                "CEO <ceo@bank.example>",
                &[&format!(
                    "{ours}; spf=pass smtp.mailfrom=x@attacker.example; dkim=none; dmarc=fail header.from=bank.example"
                )],
            ),
        ),
        // The sender's own headers, one naming our server: below ours, so not read.
        (
            "1764150003.M3P1.host",
            authenticated_email(
                3,
                "Bo <bo@customer.example>",
                &[
                    &format!("{ours}; spf=fail smtp.mailfrom=bo@customer.example; dkim=fail header.d=customer.example"),
                    "mail.attacker.example; dmarc=pass",
                    &format!("{ours}; dmarc=pass header.from=customer.example"),
                ],
            ),
        ),
        (
            "1764150004.M4P1.host",
            authenticated_email(4, "Cy <cy@customer.example>", &["mail.attacker.example; dmarc=pass"]),
        ),
        ("1764150005.M5P1.host", authenticated_email(5, "Di <di@customer.example>", &[])),
    ];
    for (id, raw) in &delivered {
        std::fs::write(root.join("new").join(id), raw).expect("deliver");
    }
    let (mut poller, pool) = mailbox.start(WorkerEnv::new().set("mailbox.authserv_ids", ours.to_owned())).await;
    assert_eq!(poller.ledger().settings().trusted_authserv_ids(), [ours]);
    assert_eq!(synced(&mut poller).await.published, 5);

    let rows: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT mailbox_id, sender_auth, sender_auth_detail FROM mailbox_messages WHERE agent_email = $1 ORDER BY mailbox_id",
    )
    .bind(AGENT)
    .fetch_all(&pool)
    .await
    .expect("ledger");
    let row = |verdict: &str, detail: &str| (Some(verdict.to_owned()), Some(detail.to_owned()));
    let got: Vec<(Option<String>, Option<String>)> = rows.into_iter().map(|(_, v, d)| (v, d)).collect();
    assert_eq!(
        got,
        vec![
            row("pass", "dmarc=pass (mx.northwind.example)"),
            row("fail", "dmarc=fail (mx.northwind.example)"),
            row("fail", "spf=fail and dkim=fail (mx.northwind.example)"),
            row("fail", "no Authentication-Results from mx.northwind.example"),
            row("fail", "no Authentication-Results from mx.northwind.example"),
        ]
    );
    // What the sender reads back.
    let provenance =
        mailroom_db::pipeline::provenance(&pool, AGENT, delivered[1].0).await.expect("query").expect("row");
    assert_eq!(
        provenance.sender_auth,
        Some(mailroom_db::pipeline::SenderAuth::Fail { reason: "dmarc=fail (mx.northwind.example)".into() })
    );
}
