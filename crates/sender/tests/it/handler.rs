//! The send handler's single step with the Maildir sink: exactly one reply per email however
//! often it arrives, drafts for escalations, draft mode and throttled recipients, quota waits
//! that release the claim, dry-run, and crash recovery through the send log.

use std::time::Duration;

use mailroom_tests::{TestDb, TestDir};
use pipeline_core::Fate;
use sender::sink::{Kind, MaildirSink, SmtpSink};
use sender::{Outcome, reply_message_id};
use sqlx::PgPool;

use crate::{AGENT, assert_reply_headers, cleanup, connection, handler, maildir_files, pool, prefix, reply, settings};

async fn row(pool: &PgPool, email_id: &str) -> Option<(String, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT state, provider_message_id, draft_reason FROM replies WHERE agent_email = $1 AND email_id = $2",
    )
    .bind(AGENT)
    .bind(email_id)
    .fetch_optional(pool)
    .await
    .expect("query")
}

#[tokio::test]
async fn a_reply_is_delivered_once_with_threading_headers_however_often_it_arrives() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let sink = MaildirSink::new(&dir.path).expect("outbox");
    let h = handler(pool.clone(), sink, settings(&p)).await;
    let msg = reply(1, "anna@example.com");
    let Outcome::Sent(id) = h.send_one(&msg).await.expect("sent") else { panic!("not sent") };
    // Redelivered, republished under another message id, replayed from the dead-letter queue:
    for _ in 0..3 {
        let mut again = msg.clone();
        again.message_id = pipeline_core::messages::new_message_id();
        assert_eq!(h.send_one(&again).await.expect("duplicate"), Outcome::Duplicate("sent".into()));
    }
    let files = maildir_files(&dir.path);
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().ends_with(":2,S"), "sent replies are flagged seen: {files:?}");
    assert!(files[0].file_name().expect("name").to_string_lossy().starts_with(&id));
    assert_reply_headers(&std::fs::read_to_string(&files[0]).expect("read"), 1);
    assert!(maildir_files(&dir.path.join(".Drafts")).is_empty());
    assert_eq!(row(&pool, "email-1").await, Some(("sent".into(), Some(id), None)));
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn escalations_and_draft_mode_make_drafts_not_sends() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let h = handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), settings(&p)).await;
    let mut escalated = reply(2, "bob@example.com");
    escalated.escalate = true;
    escalated.escalation_reason = Some("no relevant passage in the agent's documents".into());
    let Outcome::Drafted { reason, .. } = h.send_one(&escalated).await.expect("drafted") else { panic!("not a draft") };
    assert!(reason.contains("no relevant passage"), "{reason}");
    assert!(maildir_files(&dir.path).is_empty(), "nothing sent");
    let drafts = maildir_files(&dir.path.join(".Drafts"));
    assert_eq!(drafts.len(), 1);
    assert!(drafts[0].to_string_lossy().ends_with(":2,D"), "drafts carry the draft flag: {drafts:?}");
    assert_reply_headers(&std::fs::read_to_string(&drafts[0]).expect("read"), 2);
    assert_eq!(row(&pool, "email-2").await.expect("row").0, "drafted");

    let mut draft_mode = settings(&p);
    draft_mode.mode = sender::settings::Mode::Draft;
    let h = handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), draft_mode).await;
    let Outcome::Drafted { reason, .. } = h.send_one(&reply(3, "carol@example.com")).await.expect("drafted") else {
        panic!("draft mode must draft")
    };
    assert!(reason.contains("draft"), "{reason}");
    assert!(maildir_files(&dir.path).is_empty());
    assert_eq!(maildir_files(&dir.path.join(".Drafts")).len(), 2);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn the_sixth_reply_to_one_address_within_the_window_becomes_a_draft() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let h = handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), settings(&p)).await;
    for n in 0..5 {
        assert!(matches!(h.send_one(&reply(n, "Loop@Example.com")).await.expect("ok"), Outcome::Sent(_)), "reply {n}");
    }
    let Outcome::Drafted { reason, .. } = h.send_one(&reply(5, "loop@example.com")).await.expect("ok") else {
        panic!("the sixth reply to the same address must be a draft")
    };
    assert!(reason.contains("reply throttle"), "{reason}");
    // Another address is not affected.
    assert!(matches!(h.send_one(&reply(6, "dave@example.com")).await.expect("ok"), Outcome::Sent(_)));
    assert_eq!(maildir_files(&dir.path).len(), 6);
    assert_eq!(maildir_files(&dir.path.join(".Drafts")).len(), 1);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_reply_over_the_quota_waits_without_holding_its_claim_and_other_mailboxes_go_on() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let mut s = settings(&p);
    (s.rate_limit, s.rate_window_secs, s.rate_burst) = (2, 3600, 2);
    let h = handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), s).await;
    for n in 0..2 {
        assert!(matches!(h.send_one(&reply(n, &format!("c{n}@example.com"))).await.expect("ok"), Outcome::Sent(_)));
    }
    let err = h.send_one(&reply(2, "c2@example.com")).await.expect_err("over quota");
    let Fate::Defer(wait) = err.fate else { panic!("a quota wait is a deferral, not a failure: {err}") };
    assert!(wait > Duration::from_secs(60) && wait <= Duration::from_secs(1800), "{wait:?}");
    assert_eq!(err.error_type, "RateLimited");
    assert_eq!(row(&pool, "email-2").await, None, "the claim is released while it waits");
    // Another agent mailbox has its own bucket.
    let mut other = reply(3, "c3@example.com");
    other.agent_email = "help@contoso.example".into();
    assert!(matches!(h.send_one(&other).await.expect("ok"), Outcome::Sent(_)));
    assert_eq!(maildir_files(&dir.path).len(), 3);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn dry_run_logs_everything_and_delivers_nothing() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let mut s = settings(&p);
    s.mode = sender::settings::Mode::DryRun;
    let h = handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), s).await;
    assert_eq!(h.send_one(&reply(1, "erin@example.com")).await.expect("ok"), Outcome::DryRun(Kind::Send));
    let mut escalated = reply(2, "erin@example.com");
    escalated.escalate = true;
    assert_eq!(h.send_one(&escalated).await.expect("ok"), Outcome::DryRun(Kind::Draft));
    assert!(maildir_files(&dir.path).is_empty() && maildir_files(&dir.path.join(".Drafts")).is_empty());
    assert_eq!(row(&pool, "email-1").await.expect("row").0, "dry_run");
    assert!(row(&pool, "email-2").await.expect("row").2.expect("reason").contains("escalated"));
    cleanup(&mut connection().await, &p).await;
}

/// What a sender that died mid-delivery leaves: a claim older than the lease.
async fn stale_claim(pool: &PgPool, n: usize, sink: &str) {
    let email_id = format!("email-{n}");
    sqlx::query(
        "INSERT INTO replies (agent_email, email_id, message_id, state, sink, recipient, subject, reply_message_id, \
         claim_token, claimed_by, claimed_at) VALUES ($1, $2, 'dead', 'claimed', $3, 'x@example.com', 's', $4, $5, \
         'sender-killed', now() - interval '10 minutes')",
    )
    .bind(AGENT)
    .bind(&email_id)
    .bind(sink)
    .bind(reply_message_id(AGENT, &email_id))
    .bind(uuid::Uuid::new_v4())
    .execute(pool)
    .await
    .expect("insert stale claim");
}

#[tokio::test]
async fn a_sender_taking_over_a_crashed_delivery_finds_the_reply_instead_of_sending_it_again() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let sink = MaildirSink::new(&dir.path).expect("outbox");
    let h = handler(pool.clone(), sink.clone(), settings(&p)).await;
    // The crashed sender had delivered email 1 (file written, log not completed)…
    let msg = reply(1, "fay@example.com");
    let built = h.build(&msg, &reply_message_id(AGENT, "email-1")).expect("builds");
    let delivered = sender::sink::Sink::deliver(&sink, &built, Kind::Send).await.expect("write");
    stale_claim(&pool, 1, "maildir").await;
    assert_eq!(h.send_one(&msg).await.expect("ok"), Outcome::Sent(delivered.clone()));
    assert_eq!(maildir_files(&dir.path).len(), 1, "found, not sent twice");
    assert_eq!(row(&pool, "email-1").await.expect("row").1, Some(delivered));
    // …but had not got to email 2: that one is delivered now.
    stale_claim(&pool, 2, "maildir").await;
    assert!(matches!(h.send_one(&reply(2, "gus@example.com")).await.expect("ok"), Outcome::Sent(_)));
    assert_eq!(maildir_files(&dir.path).len(), 2);
    // A fresh claim of a live sender is left alone: wait for it.
    sqlx::query("UPDATE replies SET state = 'claimed', claimed_at = now() WHERE email_id = 'email-2'")
        .execute(&pool)
        .await
        .expect("update");
    let err = h.send_one(&reply(2, "gus@example.com")).await.expect_err("busy");
    assert!(matches!(err.fate, Fate::Defer(_)), "{err}");
    assert_eq!(err.error_type, "ClaimedElsewhere");
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn an_smtp_delivery_that_cannot_be_checked_becomes_an_in_doubt_draft_not_a_second_send() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    // Nothing listens there: any send attempt would fail, so success proves none was made.
    let smtp = sender::settings::SmtpSettings {
        host: "127.0.0.1".into(),
        port: mailroom_tests::free_port(),
        security: sender::settings::SmtpSecurity::None,
        username: String::new(),
        password: secrecy::SecretString::from(String::new()),
        ca_file: String::new(),
        timeout_secs: 2,
    };
    let sink = SmtpSink::new(&smtp, MaildirSink::new(&dir.path).expect("drafts")).expect("sink");
    let h = handler(pool.clone(), sink, settings(&p)).await;
    stale_claim(&pool, 7, "smtp").await;
    let Outcome::InDoubt(_) = h.send_one(&reply(7, "hal@example.com")).await.expect("ok") else {
        panic!("expected an in-doubt draft")
    };
    let (state, _, reason) = row(&pool, "email-7").await.expect("row");
    assert_eq!(state, "in_doubt");
    assert!(reason.expect("reason").contains("in doubt"));
    assert_eq!(maildir_files(&dir.path.join(".Drafts")).len(), 1);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn racing_senders_deliver_each_email_once() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let mut senders = Vec::new();
    for _ in 0..4 {
        senders.push(std::sync::Arc::new(
            handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), settings(&p)).await,
        ));
    }
    let mut tasks = Vec::new();
    for n in 0..25 {
        let msg = reply(n, &format!("r{n}@example.com"));
        for h in &senders {
            let (h, msg) = (h.clone(), msg.clone());
            tasks.push(tokio::spawn(async move { h.send_one(&msg).await }));
        }
    }
    let mut sent = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(Outcome::Sent(_)) => sent += 1,
            Ok(Outcome::Duplicate(_)) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            // The loser of a race waits for the winner's claim.
            Err(e) => assert!(matches!(e.fate, Fate::Defer(_)), "{e}"),
        }
    }
    assert_eq!(sent, 25);
    assert_eq!(maildir_files(&dir.path).len(), 25);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_reply_that_cannot_be_built_is_a_permanent_failure_and_leaves_no_claim() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let h = handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), settings(&p)).await;
    let mut bad = reply(1, "victim@example.com\r\nBcc: everyone@example.com");
    bad.subject = "x".into();
    let err = h.send_one(&bad).await.expect_err("refused");
    assert_eq!(err.fate, Fate::Permanent);
    assert_eq!(err.error_type, "InvalidReply");
    assert_eq!(row(&pool, "email-1").await, None);
    assert!(maildir_files(&dir.path).is_empty());
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_message_id_the_builder_cannot_use_costs_the_threading_headers_not_the_reply() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let h = handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), settings(&p)).await;
    let mut msg = reply(1, "anna@example.com");
    msg.in_reply_to = Some("\"odd id with spaces\"@example.com".into());
    assert!(matches!(h.send_one(&msg).await.expect("sent"), Outcome::Sent(_)));
    let files = maildir_files(&dir.path);
    let raw = std::fs::read_to_string(&files[0]).expect("read");
    assert!(!raw.contains("In-Reply-To:"), "{raw}");
    // An injection attempt is still refused outright.
    let mut bad = reply(2, "anna@example.com");
    bad.in_reply_to = Some("q@example.com>\r\nBcc: victim@evil.example".into());
    assert_eq!(h.send_one(&bad).await.expect_err("refused").error_type, "InvalidReply");
    cleanup(&mut connection().await, &p).await;
}
