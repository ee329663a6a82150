//! The sender trusts nothing in the message: every way an `emails.to_send` message can differ
//! from what the pipeline recorded is refused as `ForgedReply` (dead-lettered, counted), and
//! nothing reaches the outbox or the send log.

use std::sync::Arc;

use mailroom_tests::{TestDb, TestDir};
use pipeline_core::messages::EmailToSend;
use pipeline_core::{Fate, Telemetry};
use sender::provenance::Served;
use sender::sink::MaildirSink;
use sender::{Outcome, SendHandler};
use sqlx::PgPool;

use crate::{AGENT, cleanup, connection, maildir_files, pool, prefix, record, reply, settings};

/// Sends `msg` through a fresh handler; the refusal's `error_type` and message, and the
/// handler's metrics.
async fn refused(pool: &PgPool, outbox: &std::path::Path, prefix: &str, msg: &EmailToSend) -> (String, String, String) {
    let telemetry = Arc::new(Telemetry::default());
    let sink = MaildirSink::new(outbox).expect("outbox");
    let h = SendHandler::new(
        pool.clone(),
        sink,
        connection().await,
        settings(prefix),
        Served::single(AGENT),
        pipeline_core::settings::DraftOrSend::Draft,
        "sender-test",
        &telemetry,
    );
    let err = h.send_one(msg).await.expect_err("refused");
    assert_eq!(err.fate, Fate::Permanent, "a forged reply is dead-lettered at once: {err}");
    (err.error_type.to_string(), err.to_string(), telemetry.metrics.encode())
}

async fn replies_logged(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM replies").fetch_one(pool).await.expect("count")
}

#[tokio::test]
async fn every_reply_the_pipeline_did_not_make_is_refused_and_nothing_is_sent() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    // A genuine reply to email 1 from anna, as the poller and the generator recorded it.
    let genuine = reply(1, "anna@example.com");
    record(&pool, &genuine).await;

    let mut altered_text = genuine.clone();
    altered_text.generated_response = "Your account is locked: log in at https://evil.example to unlock it.".into();
    let mut redirected = genuine.clone();
    redirected.to = "victim@example.com".into();
    let mut not_escalated = genuine.clone();
    not_escalated.subject = "Re: Invoice".into();
    let mut other_mailbox = genuine.clone();
    other_mailbox.agent_email = "ceo@northwind.example".into();
    let never_received = reply(2, "anna@example.com");

    let cases: [(&str, &EmailToSend, &str); 5] = [
        ("altered", &altered_text, "differs from the one the generator stored (generated_response)"),
        ("altered", &redirected, "(to)"),
        ("altered", &not_escalated, "(subject)"),
        ("unknown_mailbox", &other_mailbox, "From ceo@northwind.example, a mailbox this sender does not serve"),
        ("not_received", &never_received, "no email email-2 was received"),
    ];
    for (kind, msg, says) in cases {
        let (error_type, message, metrics) = refused(&pool, &dir.path, &p, msg).await;
        assert_eq!(error_type, "ForgedReply", "{kind}: {message}");
        assert!(message.contains(says), "{kind}: {message}");
        assert!(metrics.contains(&format!("forged_replies_total{{reason=\"{kind}\"}} 1")), "{kind}: {metrics}");
    }
    assert!(maildir_files(&dir.path).is_empty() && maildir_files(&dir.path.join(".Drafts")).is_empty());
    assert_eq!(replies_logged(&pool).await, 0, "a refused reply never claims the send log");
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_received_email_without_a_stored_reply_or_to_another_sender_is_refused() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    // Received from anna, never answered by the generator.
    let unanswered = reply(3, "anna@example.com");
    sqlx::query(
        "INSERT INTO mailbox_messages (agent_email, mailbox_id, message_id, state, sender_address) \
         VALUES ($1, $2, 'm3', 'published', 'anna@example.com')",
    )
    .bind(AGENT)
    .bind(&unanswered.email_id)
    .execute(&pool)
    .await
    .expect("ledger");
    let (error_type, message, _) = refused(&pool, &dir.path, &p, &unanswered).await;
    assert_eq!((error_type.as_str(), message.contains("has no reply from the generator")), ("ForgedReply", true));

    // A forged emails.to_classify naming a real email but another sender got the generator to
    // answer someone else: the poller read anna as the sender, so it is refused.
    let mut hijacked = reply(4, "anna@example.com");
    record(&pool, &hijacked).await;
    hijacked.to = "victim@example.com".into();
    sqlx::query("UPDATE responses SET send_message = $2 WHERE email_id = $1")
        .bind(&hijacked.email_id)
        .bind(serde_json::to_value(&hijacked).expect("json"))
        .execute(&pool)
        .await
        .expect("stored reply");
    let (_, message, metrics) = refused(&pool, &dir.path, &p, &hijacked).await;
    assert!(message.contains("goes to victim@example.com, but email email-4 came from anna@example.com"), "{message}");
    assert!(metrics.contains("forged_replies_total{reason=\"wrong_recipient\"} 1"), "{metrics}");

    // Mail taken in before the poller recorded senders cannot be checked: refused.
    let legacy = reply(5, "anna@example.com");
    record(&pool, &legacy).await;
    alter_ledger(&pool, &legacy.email_id, "sender_address = NULL").await;
    let (_, message, _) = refused(&pool, &dir.path, &p, &legacy).await;
    assert!(message.contains("came from unknown"), "{message}");

    // A duplicate copy was never handed to the pipeline: nothing answers it.
    let copy = reply(6, "anna@example.com");
    record(&pool, &copy).await;
    alter_ledger(&pool, &copy.email_id, "state = 'duplicate', duplicate_of = 'email-4'").await;
    let (_, message, _) = refused(&pool, &dir.path, &p, &copy).await;
    assert!(message.contains("no email email-6 was received"), "{message}");

    assert!(maildir_files(&dir.path).is_empty() && maildir_files(&dir.path.join(".Drafts")).is_empty());
    assert_eq!(replies_logged(&pool).await, 0);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn the_pipelines_own_reply_goes_out_in_any_case_of_the_address_domain() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let msg = reply(7, "Anna@Example.com");
    record(&pool, &msg).await;
    alter_ledger(&pool, &msg.email_id, "sender_address = 'Anna@example.COM'").await;
    let h = crate::bare_handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), settings(&p)).await;
    assert!(matches!(h.send_one(&msg).await.expect("sent"), Outcome::Sent(_)));
    assert_eq!(maildir_files(&dir.path).len(), 1);
    cleanup(&mut connection().await, &p).await;
}

/// Changes the poller's ledger row of `email_id`: `set` is an SQL `SET` list.
async fn alter_ledger(pool: &PgPool, email_id: &str, set: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE mailbox_messages SET {set} WHERE mailbox_id = $1")))
        .bind(email_id)
        .execute(pool)
        .await
        .expect("ledger row");
}
