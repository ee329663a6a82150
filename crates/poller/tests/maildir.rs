//! The Maildir source's outcomes, in a temporary Maildir with the real broker (a throw-away
//! vhost) and database (a throw-away database) behind the ledger: published mail leaves `new/`
//! unread, each outcome becomes a keyword letter (mapped in `dovecot-keywords`, as Dovecot keeps
//! IMAP keywords in a Maildir), and only answered mail gets `S` (and `R`).

#[path = "support/outcomes.rs"]
mod outcomes;

use std::collections::BTreeMap;
use std::sync::Arc;

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
    match poller.step().await {
        Step::Synced(report) => report,
        other => panic!("expected a completed pass, got {other:?}"),
    }
}

#[tokio::test]
async fn outcomes_are_keyword_flags_and_only_answered_mail_is_seen() {
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let dir = TestDir::create();
    let root = dir.path.join("mailbox");
    poller::maildir::ensure(&root).expect("maildir");
    // Dovecot (or a person) already uses one keyword: ours take the next letters.
    std::fs::write(root.join(KEYWORDS_FILE), "0 $Forwarded\n").expect("keywords file");
    let ids: Vec<String> = (0..SCENARIO.len()).map(|i| format!("176415000{i}.M{i}P1.host")).collect();
    for (id, (name, _)) in ids.iter().zip(SCENARIO) {
        std::fs::write(root.join("new").join(id), email(name, &format!("{name}@customer.example"))).expect("deliver");
    }
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("mailbox.agent_email", AGENT.to_owned())
        .set("mailbox.maildir", root.display().to_string())
        .build();
    let settings = Settings::load_from(None, env.iter().map(|(k, v)| ((*k).to_owned(), v.clone()))).expect("settings");
    let mailbox: MailboxSettings = settings.section("mailbox").expect("[mailbox]");
    assert_eq!(mailbox.mark_read, poller::MarkRead::Answered, "the default");
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await.expect("database");
    let producer = Producer::new("poller-maildir-test", &settings, Arc::new(Telemetry::default()));
    producer.connect().await.expect("broker");
    let mut poller =
        Poller::new(MaildirSource::new(&root).expect("source"), Ledger::new(pool.clone(), producer, mailbox));

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
