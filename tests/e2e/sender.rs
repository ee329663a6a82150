//! The sender as real processes: the shared send quota across three senders with one killed
//! mid-run (no email answered twice, none lost — counted by outbox file, and a reply delivered
//! twice in one second is two files), the reply throttle, and the mail-loop guard — our own
//! reply fed back into the poller's mailbox never produces another reply.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mailroom_tests::{
    AUTHSERV_ID, TestDb, TestDir, TestVhost, authenticated, bin_path, history, run, signal, spawn, wait_for,
};
use pipeline_core::Publisher;
use pipeline_core::messages::{EmailToSend, new_message_id, now};
use pipeline_core::worker_env::WorkerEnv;
use sender::sink::{Kind, MaildirSink, OutgoingReply, Sink as _};
use sqlx::PgPool;

const AGENT: &str = "support@northwind.example";

fn files(folder: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(folder.join(sub)) {
            out.extend(entries.filter_map(Result::ok).map(|e| e.path()));
        }
    }
    out
}

/// The files of a Maildir folder, and the replies they deliver (the reply key in each name).
/// Every delivery is a file of its own, so a reply delivered twice — even twice in one second —
/// shows as more files than replies.
fn files_and_replies(folder: &Path) -> (usize, usize) {
    let files = MaildirSink::deliveries(folder).expect("read the outbox");
    let replies: HashSet<&String> = files.iter().filter_map(|f| f.key.as_ref()).collect();
    (files.len(), replies.len())
}

fn to_send(n: usize, to: &str) -> EmailToSend {
    EmailToSend {
        message_id: new_message_id(),
        timestamp: now(),
        original_message_id: new_message_id(),
        email_id: format!("email-{n:04}"),
        thread_id: None,
        to: to.to_owned(),
        reply_to: AGENT.into(),
        subject: format!("Re: Question {n}"),
        generated_response: format!("Answer {n}."),
        context_used: Vec::new(),
        agent_email: AGENT.into(),
        escalate: false,
        escalation_reason: None,
        in_reply_to: Some(format!("q{n}@customer.example")),
        references: Vec::new(),
        original_subject: Some(format!("Question {n}")),
    }
}

async fn counts(pool: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'sent'), count(*) FILTER (WHERE state = 'drafted'), \
         count(*) FILTER (WHERE state = 'claimed') FROM replies",
    )
    .fetch_one(pool)
    .await
    .unwrap_or((0, 0, 0))
}

#[tokio::test]
async fn three_senders_share_the_quota_and_a_killed_one_neither_loses_nor_repeats_a_reply() {
    let (vhost, db, outbox) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
    let prefix = format!("mailroom-test:{}", uuid::Uuid::new_v4().simple());
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("http.listen", "127.0.0.1:0")
        .set("outbox.maildir", outbox.path.display().to_string())
        // 100 per 5-second window stands in for 100 per hour.
        .set("sender.rate_limit", "100")
        .set("sender.rate_window_secs", "5")
        .set("sender.rate_burst", "1")
        .set("sender.claim_lease_secs", "2")
        .set("sender.redis_prefix", prefix.clone())
        .set("topology.retry_delays_ms", "250,1000,5000")
        .build();
    let (code, out) = run(&bin_path("mailroom"), &["topology", "apply"], &env).await;
    assert_eq!(code, 0, "{out}");
    let mut senders: Vec<_> = (0..3).map(|_| spawn(&bin_path("sender"), &[], &env)).collect();
    let conn =
        lapin::Connection::connect(&vhost.amqp_url(), lapin::ConnectionProperties::default()).await.expect("amqp");
    let publisher = Publisher::open(&conn, None).await.expect("publisher");
    let pool = mailroom_db::connect_and_migrate(&secrecy::SecretString::from(db.url()), 4).await.expect("pool");
    // 494 customers once each, and one address that writes six times (a reply storm); each
    // reply recorded as the pipeline would have made it (the sender refuses any other).
    for n in 0..500 {
        let to = if n % 90 == 0 { "storm@example.com".to_owned() } else { format!("customer{n}@example.com") };
        let reply = to_send(n, &to);
        history::record_reply(&pool, &reply).await;
        publisher.publish(&reply).await.expect("publish");
    }

    // Kill one sender with SIGKILL once the run is well under way, and start it again.
    wait_for(Duration::from_secs(60), "150 replies", || async { (counts(&pool).await.0 >= 150).then_some(()) }).await;
    signal(&senders[0], "KILL");
    let _ = senders[0].wait().await;
    senders[0] = spawn(&bin_path("sender"), &[], &env);

    wait_for(Duration::from_secs(120), "every email answered", || async {
        let (sent, drafted, _) = counts(&pool).await;
        (sent + drafted == 500).then_some(())
    })
    .await;
    let (sent, drafted, claimed) = counts(&pool).await;
    assert_eq!((sent, drafted, claimed), (499, 1, 0));
    let storm: Vec<(String,)> =
        sqlx::query_as("SELECT state FROM replies WHERE recipient = 'storm@example.com' ORDER BY state")
            .fetch_all(&pool)
            .await
            .expect("storm");
    assert_eq!(storm.iter().filter(|(s,)| s == "drafted").count(), 1, "the sixth reply to one address is a draft");

    // Exactly one file per answered email: none twice, none lost.
    assert_eq!(files_and_replies(&outbox.path), (499, 499), "one sent file per email");
    assert_eq!(files(&outbox.path.join(".Drafts")).len(), 1);

    // The quota: at most the limit in any window (the burst comes out of it), and the whole run
    // paced by it.
    let times: Vec<(DateTime<Utc>,)> =
        sqlx::query_as("SELECT completed_at FROM replies WHERE state = 'sent' ORDER BY completed_at")
            .fetch_all(&pool)
            .await
            .expect("times");
    let first = times[0].0;
    let in_first_window = times.iter().filter(|(t,)| *t < first + chrono::Duration::seconds(5)).count();
    assert!((80..=102).contains(&in_first_window), "sent in the first window: {in_first_window}");
    let span = times[times.len() - 1].0 - first;
    assert!(span >= chrono::Duration::seconds(23), "499 sends at 20/s take about 25 s, took {span}");
    let most_in_any_window = (0..times.len())
        .map(|i| times[i..].iter().take_while(|(t,)| *t < times[i].0 + chrono::Duration::seconds(5)).count())
        .max()
        .unwrap_or(0);
    assert!(most_in_any_window <= 102, "at most ~101 sends in any 5 s window, saw {most_in_any_window}");

    // Nothing left behind in the queues.
    wait_for(Duration::from_secs(15), "queues to drain", || async {
        let work = vhost.depth("emails.to_send").await;
        let dead = vhost.depth("dead_letter_queue").await;
        (work == (0, 0) && dead == (0, 0)).then_some(())
    })
    .await;
    for s in &senders {
        signal(s, "TERM");
    }
    for mut s in senders {
        let _ = tokio::time::timeout(Duration::from_secs(30), s.wait()).await;
    }
    let mut redis = redis::aio::ConnectionManager::new_with_config(
        mailroom_redis::client(&pipeline_core::settings::RedisSettings::from_url("redis://127.0.0.1:6379"))
            .expect("url"),
        sender::redis_config(),
    )
    .await
    .expect("redis");
    let keys: Vec<String> = redis::AsyncCommands::keys(&mut redis, format!("{prefix}:*")).await.expect("keys");
    for k in keys {
        let _: () = redis::AsyncCommands::del(&mut redis, k).await.expect("del");
    }
}

/// The takeover test's count is not fooled by the case it exists for: a reply delivered a
/// second time (a sender taking over a claim while the first is still delivering), within the
/// same second, through the sender's own sink.
#[tokio::test]
async fn the_takeover_count_sees_a_reply_delivered_twice_in_one_second() {
    let outbox = TestDir::create();
    let sink = MaildirSink::new(&outbox.path).expect("outbox");
    let reply = |email_id: &str| OutgoingReply {
        message_id: sender::reply_message_id(AGENT, email_id),
        raw: format!("Subject: Re: Question\r\n\r\nAnswer to {email_id}.\r\n").into_bytes(),
        from: AGENT.into(),
        to: "customer@example.com".into(),
        thread_id: None,
    };
    sink.deliver(&reply("email-0001"), Kind::Send).await.expect("deliver");
    assert_eq!(files_and_replies(&outbox.path), (1, 1));
    mailroom_tests::start_of_next_second().await;
    let twice = [
        sink.deliver(&reply("email-0002"), Kind::Send).await.expect("deliver"),
        sink.deliver(&reply("email-0002"), Kind::Send).await.expect("deliver again"),
    ];
    let second_of = |name: &str| name.split('.').next().unwrap_or_default().to_owned();
    assert_eq!(second_of(&twice[0]), second_of(&twice[1]), "delivered within one second: {twice:?}");
    assert_eq!(files_and_replies(&outbox.path), (3, 2), "the second delivery is a file of its own");
}

/// One Maildir mailbox answered by every stage of the pipeline, running: no documents, so every
/// question gets a holding reply, sent unless something makes it a draft.
struct MaildirPipeline {
    /// The mailbox the poller reads.
    maildir: std::path::PathBuf,
    /// The sender's Maildir outbox.
    outbox: std::path::PathBuf,
    /// The stage processes (stopped when dropped).
    workers: Vec<tokio::process::Child>,
}

async fn maildir_pipeline(vhost: &TestVhost, db: &TestDb, dir: &TestDir) -> MaildirPipeline {
    let (maildir, outbox) = (dir.path.join("inbox"), dir.path.join("outbox"));
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("http.listen", "127.0.0.1:0")
        .set("mailbox.maildir", maildir.display().to_string())
        .set("mailbox.agent_email", AGENT.to_owned())
        .set("mailbox.poll_interval_ms", "200")
        .set("mailbox.authserv_ids", AUTHSERV_ID)
        .set("outbox.maildir", outbox.display().to_string())
        .set("rag.no_context", "holding_reply")
        .set("sender.redis_prefix", format!("mailroom-test:{}", uuid::Uuid::new_v4().simple()))
        .set("topology.retry_delays_ms", "200,400")
        .build();
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.join(sub)).expect("maildir");
    }
    let (code, out) = run(&bin_path("mailroom"), &["topology", "apply"], &env).await;
    assert_eq!(code, 0, "{out}");
    let workers =
        pipeline_core::consumer::MAIL_STAGES.iter().map(|stage| spawn(&bin_path(stage.name), &[], &env)).collect();
    MaildirPipeline { maildir, outbox, workers }
}

#[tokio::test]
async fn our_own_reply_fed_back_into_the_mailbox_is_never_answered() {
    let (vhost, db, dir) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
    // The workers run until `_workers` is dropped at the end of the test.
    let MaildirPipeline { maildir, outbox, workers: _workers } = maildir_pipeline(&vhost, &db, &dir).await;
    let question = authenticated("anna@customer.example")
        + "From: Anna Schmidt <anna@customer.example>\r\nTo: support@northwind.example\r\n\
        Subject: How do I reset my Lift Pro?\r\nMessage-ID: <q1@customer.example>\r\n\
        Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\nHello, my Lift Pro does not respond. How do I reset it? Anna\r\n";
    std::fs::write(maildir.join("new/1764150000.q1.host"), question).expect("write");
    let reply =
        wait_for(Duration::from_secs(60), "our reply in the outbox", || async { files(&outbox).into_iter().next() })
            .await;
    // The reply comes back: a bounce, a CC to ourselves, or a customer's auto-forward.
    std::fs::copy(&reply, maildir.join("new/1764150100.loop.host")).expect("feed back");
    let pool = PgPool::connect(&db.url()).await.expect("pool");
    let verdicts: Vec<(String, bool, String)> = wait_for(Duration::from_secs(60), "both verdicts", || async {
        let rows: Vec<(String, bool, String)> =
            sqlx::query_as("SELECT email_id, is_support_inquiry, category FROM classifications ORDER BY created_at")
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert!(verdicts[0].1, "the customer's question is support: {verdicts:?}");
    assert!(!verdicts[1].1, "our own auto-reply is not: {verdicts:?}");
    // Give the pipeline time to do the wrong thing before checking it did not.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let replies: i64 = sqlx::query_scalar("SELECT count(*) FROM replies").fetch_one(&pool).await.expect("count");
    assert_eq!(replies, 1, "exactly one reply: to the customer");
    assert_eq!(files(&outbox).len(), 1);
    assert_eq!(vhost.depth("emails.to_send").await, (0, 0));
}

/// Issue 15 item 6 through the real pipeline: the poller reads the trusted server's
/// `Authentication-Results`, and the sender sends the reply to the authenticated customer but
/// drafts, with the reason, the replies to a DMARC failure and to a sender whose forged
/// "pass" header sits below the real, failing one.
#[tokio::test]
async fn replies_to_unauthenticated_senders_become_drafts_with_the_reason() {
    let (vhost, db, dir) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
    let MaildirPipeline { maildir, outbox, workers: _workers } = maildir_pipeline(&vhost, &db, &dir).await;
    let question = |n: usize, from: &str, results: &str| {
        format!(
            "{results}From: {from}\r\nTo: {AGENT}\r\nSubject: How do I reset my Lift Pro? ({n})\r\n\
             Message-ID: <auth{n}@customer.example>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n\
             Hello, my Lift Pro desk does not respond to the buttons. How do I reset it?\r\n"
        )
    };
    let emails = [
        ("1764150000.a1.host", question(1, "Anna <anna@customer.example>", &authenticated("anna@customer.example"))),
        (
            "1764150001.a2.host",
            question(
                2,
                "CEO <ceo@bank.example>",
                &format!(
                    "Authentication-Results: {AUTHSERV_ID}; spf=pass smtp.mailfrom=x@attacker.example;\r\n\t\
                     dkim=none; dmarc=fail (p=reject) header.from=bank.example\r\n"
                ),
            ),
        ),
        (
            "1764150002.a3.host",
            question(
                3,
                "Bo <bo@customer.example>",
                &format!(
                    "Authentication-Results: {AUTHSERV_ID}; spf=fail smtp.mailfrom=bo@customer.example; dkim=none\r\n\
                     Received: from relay.attacker.example by {AUTHSERV_ID}\r\n{}",
                    authenticated("bo@customer.example")
                ),
            ),
        ),
    ];
    for (id, raw) in &emails {
        std::fs::write(maildir.join("new").join(id), raw).expect("deliver");
    }
    let pool = PgPool::connect(&db.url()).await.expect("pool");
    let replies: Vec<(String, String, Option<String>)> = wait_for(Duration::from_secs(90), "three replies", || async {
        let rows: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT email_id, state, draft_reason FROM replies WHERE state <> 'claimed' ORDER BY email_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        (rows.len() == 3).then_some(rows)
    })
    .await;
    assert_eq!(
        replies,
        vec![
            (emails[0].0.to_owned(), "sent".to_owned(), None),
            (
                emails[1].0.to_owned(),
                "drafted".to_owned(),
                Some("unauthenticated sender: dmarc=fail (mx.northwind.example)".to_owned())
            ),
            (
                emails[2].0.to_owned(),
                "drafted".to_owned(),
                Some("unauthenticated sender: spf=fail and dkim=none (mx.northwind.example)".to_owned())
            ),
        ]
    );
    assert_eq!(files(&outbox).len(), 1, "one reply sent");
    assert_eq!(files(&outbox.join(".Drafts")).len(), 2, "two drafts");
}
