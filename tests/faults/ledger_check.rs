//! The ledger check must be able to fail: after a clean run it passes, and each of the faults
//! the scenarios exist to catch, injected by hand, makes it fail with a violation naming the
//! email — a reply lost from the outbox, a reply delivered twice within one second past the
//! send log (two real deliveries through the sender's Maildir sink), a missing
//! send-log row, a message whose ack was dropped (left unacknowledged, then stranded in its
//! queue) and an email dead-lettered on top of being answered (a second publish of the same
//! email that bypassed the stages' records). After each, the damage is undone and the check
//! passes again, so every failure is the injected fault's and nothing else's.
//!
//! This is a test of the check, not of the pipeline: 500 emails make enough replies, drafts,
//! not-support verdicts and dead letters to tamper with.

use std::path::PathBuf;
use std::time::Duration;

use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, types::FieldTable};
use pipeline_core::dead_letter::{DeadLetter, FailureInfo};
use pipeline_core::topology::FAILED_EMAILS;

use sender::sink::{Kind, MaildirSink, OutgoingReply, Sink as _};

use crate::ledger::{self, Report, Snapshot, Terminal};
use crate::mailbox::AGENT;
use crate::pipeline::{Options, Pipeline};
use crate::services;

const EMAILS: usize = 500;

/// Snapshot and check now; `settle` waits for the management API's queue statistics to reach
/// zero first (they lag by a few seconds), which a case that leaves a message behind skips.
async fn check_now(p: &Pipeline, settle: bool) -> Report {
    let mut snapshot = Snapshot::read(&p.pool, &p.inbox(), &p.outbox()).await;
    snapshot.dead_letters = ledger::read_dead_letters(&p.vhost.amqp_url(), None).await;
    snapshot.queues = if settle {
        p.settled_depths(snapshot.dead_letters.len()).await
    } else {
        ledger::queue_depths(&p.vhost.name, &p.vhost.amqp_url()).await
    };
    ledger::check(&p.fed, &snapshot)
}

/// Asserts the check failed, and that a violation names `needle`.
fn assert_caught(report: &Report, case: &str, needle: &str) {
    assert!(!report.violations.is_empty(), "{case}: the check passed");
    assert!(
        report.violations.iter().any(|v| v.contains(needle)),
        "{case}: no violation mentions {needle:?}: {:#?}",
        report.violations
    );
    eprintln!("[faults] ledger check caught {case}: {}", report.violations.join(" | "));
}

fn sent_file(p: &Pipeline, email_id: &str) -> PathBuf {
    let key = ledger::outbox_key(email_id);
    let files = MaildirSink::deliveries(&p.outbox()).expect("outbox");
    files.into_iter().find(|f| f.key.as_ref() == Some(&key)).expect("the reply file").path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_check_fails_on_a_lost_or_repeated_reply_a_dropped_ack_or_a_second_terminal_state() {
    services::assert_all_healthy();
    let mut p = Pipeline::start(Options::default()).await;
    p.feed(0..EMAILS);
    let report = p.finish(crate::SETTLE).await;
    report.assert_clean();
    let sent: Vec<String> =
        sqlx::query_scalar("SELECT email_id FROM replies WHERE agent_email = $1 AND state = 'sent' ORDER BY email_id")
            .bind(crate::mailbox::AGENT)
            .fetch_all(&p.pool)
            .await
            .expect("sent replies");
    assert!(sent.len() >= 3, "{}", report.summary());
    assert!(report.terminal.contains_key(&Terminal::DeadLettered), "the run had dead letters: {}", report.summary());
    let (lost, twice, unlogged) = (&sent[0], &sent[1], &sent[2]);

    // 1. A reply lost from the outbox.
    let file = sent_file(&p, lost);
    let aside = p.dir.path.join("aside");
    std::fs::rename(&file, &aside).expect("hide the reply");
    assert_caught(&check_now(&p, true).await, "a lost reply", &format!("{lost}: 0 sent reply file(s)"));
    std::fs::rename(&aside, &file).expect("put it back");
    check_now(&p, true).await.assert_clean();

    // 2. The same reply delivered twice within one second, past the send log, by the sender's
    //    own sink (two real deliveries: same Message-ID, so the same key). The pipeline's file
    //    is set aside meanwhile, so the two are all the outbox holds of that reply.
    let file = sent_file(&p, twice);
    let reply = OutgoingReply {
        message_id: sender::reply_message_id(AGENT, twice),
        raw: std::fs::read(&file).expect("read the reply"),
        from: AGENT.into(),
        to: "customer@example.com".into(),
        thread_id: None,
    };
    std::fs::rename(&file, &aside).expect("set the reply aside");
    let sink = MaildirSink::new(&p.outbox()).expect("the outbox");
    mailroom_tests::start_of_next_second().await;
    let copies = [
        sink.deliver(&reply, Kind::Send).await.expect("deliver"),
        sink.deliver(&reply, Kind::Send).await.expect("deliver again"),
    ];
    let second_of = |name: &str| name.split('.').next().unwrap_or_default().to_owned();
    assert_eq!(second_of(&copies[0]), second_of(&copies[1]), "delivered within one second: {copies:?}");
    assert_caught(&check_now(&p, true).await, "a reply sent twice", &format!("{twice}: 2 sent reply file(s)"));
    for name in &copies {
        std::fs::remove_file(p.outbox().join("cur").join(name)).expect("remove a copy");
    }
    std::fs::rename(&aside, &file).expect("put it back");
    check_now(&p, true).await.assert_clean();

    // 3. A send-log row gone (the reply went out but nothing says so).
    sqlx::query("CREATE TABLE replies_aside AS SELECT * FROM replies WHERE email_id = $1")
        .bind(unlogged)
        .execute(&p.pool)
        .await
        .expect("set the row aside");
    sqlx::query("DELETE FROM replies WHERE email_id = $1").bind(unlogged).execute(&p.pool).await.expect("delete");
    assert_caught(&check_now(&p, true).await, "a missing send-log row", &format!("{unlogged}: stuck"));
    sqlx::query("INSERT INTO replies SELECT * FROM replies_aside").execute(&p.pool).await.expect("restore the row");
    sqlx::query("DROP TABLE replies_aside").execute(&p.pool).await.expect("drop");
    check_now(&p, true).await.assert_clean();

    // 4. A dropped ack: a consumer takes a message and never acknowledges it. While its channel
    //    is open the message is unacknowledged; once the channel is gone it is back, ready, with
    //    no one to take it (the workers are stopped): stranded.
    let conn =
        lapin::Connection::connect(&p.vhost.amqp_url(), lapin::ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_publish(
        "email_exchange".into(),
        "send".into(),
        BasicPublishOptions::default(),
        br#"{"dropped": "ack"}"#,
        BasicProperties::default().with_delivery_mode(2),
    )
    .await
    .expect("publish")
    .await
    .expect("confirm");
    let held = ch.basic_get("emails.to_send".into(), BasicGetOptions { no_ack: false }).await.expect("get");
    assert!(held.is_some(), "took the message");
    let vhost = p.vhost.name.clone();
    mailroom_tests::wait_for(Duration::from_secs(20), "the broker to report the unacknowledged message", || {
        let vhost = vhost.clone();
        async move {
            let q = mailroom_tests::mgmt().queue(&vhost, "emails.to_send").await.ok()?;
            (q.messages_unacknowledged == 1).then_some(())
        }
    })
    .await;
    assert_caught(&check_now(&p, false).await, "a dropped ack", "queue emails.to_send: 0 ready, 1 unacknowledged");
    drop(held);
    let _ = conn.close(200, "gone without acking".into()).await;
    assert_caught(&check_now(&p, false).await, "a stranded message", "queue emails.to_send: 1 ready");
    let conn =
        lapin::Connection::connect(&p.vhost.amqp_url(), lapin::ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    ch.basic_get("emails.to_send".into(), BasicGetOptions { no_ack: true }).await.expect("get").expect("take it");
    let _ = conn.close(200, "done".into()).await;
    check_now(&p, true).await.assert_clean();

    // 5. An email answered and also dead-lettered: a second publish of it that bypassed the
    //    stages' records failed for good.
    let info = FailureInfo {
        error_message: "injected by the ledger check's own test".into(),
        error_type: "Injected".into(),
        retry_count: 0,
        stack_trace: String::new(),
        consumer_id: "faults".into(),
    };
    let body = serde_json::json!({"email_id": twice, "message_id": "injected"}).to_string();
    let envelope = DeadLetter::new("emails.to_send", body.as_bytes(), info);
    let conn =
        lapin::Connection::connect(&p.vhost.amqp_url(), lapin::ConnectionProperties::default()).await.expect("amqp");
    let publisher = pipeline_core::Publisher::open(&conn, None).await.expect("publisher");
    publisher
        .send_raw(
            FAILED_EMAILS.exchange,
            FAILED_EMAILS.routing_key,
            &serde_json::to_vec(&envelope).expect("json"),
            BasicProperties::default().with_delivery_mode(2).with_headers(FieldTable::default()),
        )
        .await
        .expect("dead-letter it");
    let _ = conn.close(200, "done".into()).await;
    assert_caught(&check_now(&p, true).await, "a second terminal state", &format!("{twice}: 2 terminal states"));
    ledger::read_dead_letters(&p.vhost.amqp_url(), Some(&envelope.message_id)).await;
    check_now(&p, true).await.assert_clean();
}
