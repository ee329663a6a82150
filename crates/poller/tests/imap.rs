//! The IMAP source against a real IMAP server: Debian's Dovecot, started per test with its own
//! configuration (`mailroom_tests::dovecot`; the poller around it in `support/dovecot.rs`), with
//! the real broker and database behind the ledger. Mail is delivered with IMAP APPEND from a
//! second session, and the tests read flags back the same way. Outcomes as folders are tested
//! in `imap_folders.rs`.
//!
//! Needs `dovecot` (package dovecot-imapd; `.ci/run` installs it) and root, since Dovecot
//! stores mail as the `mail` user.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use async_imap::types::Flag;
use futures_util::TryStreamExt;
use pipeline_core::messages::EmailToClassify;
use poller::Step;

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/outcomes.rs"]
mod outcomes;

use dovecot::*;
use pipeline_core::worker_env::WorkerEnv;

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
    let mut h = Harness::start(&server, PASSWORD, WorkerEnv::new().set("mailbox.imap.batch_size", "2")).await;

    // Pass 1: a full sync of the unseen mail.
    let report = h.synced().await;
    assert_eq!((report.published, report.unparseable, report.skipped), (2, 1, 0));
    let first = h.drain().await;
    assert_eq!(ids(&first), ["imap:a1@customer.example", "imap:c1@customer.example"]);
    assert_eq!(ids(&first[..1]), ["imap:c1@customer.example"], "most urgent first");
    assert_eq!(first[0].priority, 8);
    assert_eq!(first[1].priority, 5);
    assert_eq!(first[1].thread_id.as_deref(), Some("a1@customer.example"));
    assert!(first.iter().all(|m| m.labels == [FOLDER, "UNREAD"] && m.agent_email == AGENT));
    assert_eq!(
        flags(&mut mua).await,
        [(1, true), (2, true), (3, true), (4, false)],
        "published mail is seen; unparseable mail stays unread for a person"
    );
    let (_, unparseable) = &all_flags(&mut mua).await[3];
    assert!(unparseable.iter().any(|f| f == "$Mailroom-Failed"), "found by its digest: {unparseable:?}");
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
    let env = WorkerEnv::new()
        .set("mailbox.imap.idle", "true")
        .set("mailbox.imap.idle_timeout_secs", "600")
        .set("mailbox.poll_interval_ms", "600000");
    let mut h = Harness::start(&server, PASSWORD, env).await;
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
    let env = WorkerEnv::new().set("mailbox.imap.idle", "true").set("mailbox.poll_interval_ms", "200");
    let mut h = Harness::start(&server, PASSWORD, env).await;
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
async fn a_persons_reply_in_the_sent_folder_is_recorded_before_the_inbox_is_read_and_only_once() {
    let server = Dovecot::start("");
    let mut mua = client(&server).await;
    mua.create(FOLDER).await.expect("CREATE");
    mua.create("Sent").await.expect("CREATE Sent");
    let person = b"From: Jo <support@northwind.example>\r\nTo: ida@customer.example\r\nSubject: Re: Refund\r\n\
        Message-ID: <jo-1@mail.northwind.example>\r\nIn-Reply-To: <i1@customer.example>\r\n\
        References: <i0@customer.example> <i1@customer.example>\r\n\r\nI will call you. Jo\r\n";
    mailroom_tests::dovecot::append(&mut mua, "Sent", person, Some("(\\Seen)")).await;
    append(&mut mua, &email("Ida <ida@customer.example>", "Refund again", "i2@customer.example"), None).await;
    let mut h = Harness::start(&server, PASSWORD, WorkerEnv::new()).await;
    assert_eq!(h.synced().await.published, 1);
    let pool = h.poller.ledger().pool().clone();
    let rows: Vec<(Option<String>, Vec<String>)> =
        sqlx::query_as("SELECT message_id, refs FROM person_replies").fetch_all(&pool).await.expect("person replies");
    assert_eq!(
        rows,
        [(
            Some("jo-1@mail.northwind.example".to_owned()),
            vec!["i1@customer.example".to_owned(), "i0@customer.example".to_owned(), "i1@customer.example".to_owned()]
        )]
    );
    let threads = |refs: &[&str]| {
        let refs: Vec<String> = refs.iter().map(|r| (*r).to_owned()).collect();
        let pool = pool.clone();
        async move { mailroom_db::person_replies::replied_in_thread(&pool, AGENT, &refs, None).await.expect("query") }
    };
    assert!(threads(&["jo-1@mail.northwind.example"]).await, "a follow-up to the person's reply");
    assert!(threads(&["i0@customer.example"]).await, "a follow-up elsewhere in the thread");
    assert!(!threads(&["other@customer.example"]).await, "another thread");
    assert_eq!(h.synced().await.published, 0);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM person_replies").fetch_one(&pool).await.expect("count");
    assert_eq!(count, 1, "read once");
    let _ = mua.logout().await;
    h.finish().await;
}

#[tokio::test]
async fn copies_are_published_once_and_a_reused_message_id_with_another_body_is_not_dropped() {
    let server = Dovecot::start("");
    let mut mua = client(&server).await;
    mua.create(FOLDER).await.expect("CREATE");
    let first = email("Ida <ida@customer.example>", "Refund", "i1@customer.example");
    let copy = [b"Delivered-To: refunds@northwind.example\r\n".as_slice(), &first].concat();
    let reused = String::from_utf8(first.clone()).expect("utf-8").replace("Hello, Refund.", "Cancel my order.");
    for raw in [&first, &copy, &reused.into_bytes(), &copy] {
        append(&mut mua, raw, None).await;
    }
    let mut h = Harness::start(&server, PASSWORD, WorkerEnv::new()).await;
    assert_eq!(h.synced().await.published, 2, "the email once, and the other email under its Message-ID");
    let published = h.drain().await;
    assert_eq!(ids(&published), ["imap:i1@customer.example", "imap:i1@customer.example"]);
    assert_ne!(published[0].email_id, published[1].email_id, "two ledger keys");
    assert!(published.iter().any(|m| m.body.contains("Cancel my order")));
    assert_eq!(h.synced().await.published, 0, "each once");
    let _ = mua.logout().await;
    h.finish().await;
}

#[tokio::test]
async fn a_refused_login_fails_the_pass_with_the_reason_and_backs_off() {
    let server = Dovecot::start("");
    let mut h = Harness::start(&server, "wrong-password", WorkerEnv::new()).await;
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

#[tokio::test]
async fn outcomes_are_keywords_and_only_answered_mail_is_seen() {
    use outcomes::{Expect, SCENARIO};
    let server = Dovecot::start("");
    let mut mua = client(&server).await;
    mua.create(FOLDER).await.expect("CREATE");
    for (name, _) in SCENARIO {
        append(&mut mua, &email("Cy <cy@customer.example>", name, &format!("{name}@customer.example")), None).await;
    }
    let mut h = Harness::start(&server, PASSWORD, WorkerEnv::new().set("mailbox.mark_read", "answered")).await;
    let report = h.synced().await;
    assert_eq!((report.published, report.outcomes), (SCENARIO.len(), 0));
    assert_eq!(h.drain().await.len(), SCENARIO.len());
    assert!(flags(&mut mua).await.iter().all(|(_, seen)| !seen), "published, still unread");

    let pool = h.poller.ledger().pool().clone();
    outcomes::record_scenario_by_message_id(&pool, AGENT).await;
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
        let id = outcomes::key_of(&pool, AGENT, &format!("{name}@customer.example")).await;
        assert_eq!(outcomes::applied(&pool, AGENT, &id).await.as_deref(), expect.stored(), "{name}");
    }
    assert_eq!(h.synced().await.outcomes, 0, "each outcome is applied once");

    // The failed message is answered after all (a replayed dead letter): the keyword changes.
    let failed = &outcomes::key_of(&pool, AGENT, "failed@customer.example").await;
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
