//! `mailbox.unauthenticated`: a reply to a sender the receiving server did not authenticate
//! (the poller's verdict in `mailbox_messages.sender_auth`) is a draft with the reason, unless
//! the policy is `send`; an authenticated sender's reply is sent as before.

use mailroom_tests::history::set_sender_auth;
use mailroom_tests::{TestDb, TestDir};
use pipeline_core::settings::DraftOrSend;
use sender::Outcome;
use sender::sink::MaildirSink;
use sqlx::PgPool;

use crate::{AGENT, cleanup, connection, maildir_files, policy_handler, pool, prefix, record, reply, settings};

async fn draft_reason(pool: &PgPool, email_id: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT state, draft_reason FROM replies WHERE agent_email = $1 AND email_id = $2")
        .bind(AGENT)
        .bind(email_id)
        .fetch_one(pool)
        .await
        .expect("send log row")
}

#[tokio::test]
async fn a_reply_to_an_unauthenticated_sender_is_a_draft_with_the_reason_unless_the_policy_sends() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let outbox = || MaildirSink::new(&dir.path).expect("outbox");
    let drafting = policy_handler(pool.clone(), outbox(), settings(&p), DraftOrSend::Draft).await;

    // Authenticated: sent.
    let authenticated = reply(1, "anna@example.com");
    record(&pool, &authenticated).await;
    assert!(matches!(drafting.send_one(&authenticated).await.expect("sent"), Outcome::Sent(_)));

    // DMARC failed: a draft, and the reason says why, in the outcome and the send log.
    let spoofed = reply(2, "ceo@bank.example");
    record(&pool, &spoofed).await;
    set_sender_auth(&pool, AGENT, &spoofed.email_id, Some(("fail", "dmarc=fail (mx.northwind.example)"))).await;
    let Outcome::Drafted { reason, .. } = drafting.send_one(&spoofed).await.expect("drafted") else {
        panic!("a reply to an unauthenticated sender must be a draft")
    };
    assert_eq!(reason, "unauthenticated sender: dmarc=fail (mx.northwind.example)");
    assert_eq!(draft_reason(&pool, &spoofed.email_id).await, ("drafted".into(), Some(reason)));

    // Escalated as well: the person finishing the draft sees both reasons, the spoofing first.
    let mut escalated = reply(3, "bob@example.com");
    escalated.escalate = true;
    escalated.escalation_reason = Some("category \"billing\" needs a person".into());
    record(&pool, &escalated).await;
    set_sender_auth(&pool, AGENT, &escalated.email_id, Some(("fail", "spf=fail and dkim=fail (mx.northwind.example)")))
        .await;
    let Outcome::Drafted { reason, .. } = drafting.send_one(&escalated).await.expect("drafted") else {
        panic!("escalated")
    };
    assert_eq!(
        reason,
        "unauthenticated sender: spf=fail and dkim=fail (mx.northwind.example); escalated: category \"billing\" needs a person"
    );

    // Mail taken in before the poller recorded a verdict counts as unauthenticated.
    let legacy = reply(4, "carol@example.com");
    record(&pool, &legacy).await;
    set_sender_auth(&pool, AGENT, &legacy.email_id, None).await;
    let Outcome::Drafted { reason, .. } = drafting.send_one(&legacy).await.expect("drafted") else {
        panic!("no verdict, no send")
    };
    assert!(reason.contains("no authentication verdict was recorded"), "{reason}");

    // The policy "send" sends whatever the verdict.
    let sending = policy_handler(pool.clone(), outbox(), settings(&p), DraftOrSend::Send).await;
    let unauthenticated = reply(5, "dave@example.com");
    record(&pool, &unauthenticated).await;
    set_sender_auth(
        &pool,
        AGENT,
        &unauthenticated.email_id,
        Some(("fail", "no Authentication-Results from mx.example")),
    )
    .await;
    assert!(matches!(sending.send_one(&unauthenticated).await.expect("sent"), Outcome::Sent(_)));
    assert_eq!(draft_reason(&pool, &unauthenticated.email_id).await, ("sent".into(), None));

    assert_eq!(maildir_files(&dir.path).len(), 2, "the authenticated reply and the one the policy sends");
    assert_eq!(maildir_files(&dir.path.join(".Drafts")).len(), 3);
    cleanup(&mut connection().await, &p).await;
}
