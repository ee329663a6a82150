//! The sender's tests against the real PostgreSQL and Redis (and, for SMTP, a real SMTP server
//! process; for Gmail, a local fake of the Gmail API). Each test has its own database, outbox
//! directory and Redis key prefix, and removes them.

mod authentication;
mod draft_review;
mod gmail;
mod handler;
mod limits;
mod maildir;
mod provenance;
mod smtp;

use std::sync::Arc;

use pipeline_core::Telemetry;
use pipeline_core::messages::{EmailToSend, new_message_id, now};
use pipeline_core::settings::DraftOrSend;
use redis::AsyncCommands as _;
use redis::aio::ConnectionManager;
use sender::SendHandler;
use sender::provenance::Served;
use sender::settings::{Mode, SenderSettings};
use sender::sink::Sink;
use sqlx::PgPool;

pub(crate) const AGENT: &str = "support@northwind.example";

pub(crate) async fn connection() -> ConnectionManager {
    let url = std::env::var("MAILROOM_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let client = mailroom_redis::client(&pipeline_core::settings::RedisSettings::from_url(&url)).expect("url");
    // The sender's own reconnection policy and time-outs, as `sender::run` connects.
    ConnectionManager::new_with_config(client, sender::redis_config()).await.expect("redis")
}

pub(crate) fn prefix() -> String {
    format!("mailroom-test:{}", uuid::Uuid::new_v4().simple())
}

pub(crate) async fn cleanup(conn: &mut ConnectionManager, prefix: &str) {
    let keys: Vec<String> = conn.keys(format!("{prefix}:*")).await.expect("keys");
    for k in keys {
        let _: () = conn.del(k).await.expect("del");
    }
}

/// Sender settings for tests: a generous quota unless a test narrows it.
pub(crate) fn settings(prefix: &str) -> SenderSettings {
    SenderSettings {
        mode: Mode::Send,
        from_name: "Northwind Support".into(),
        rate_limit: 10_000,
        rate_window_secs: 60,
        rate_burst: 10_000,
        throttle_max_replies: 5,
        throttle_window_secs: 86_400,
        claim_lease_secs: 60,
        misconfigured_retry_secs: 60,
        redis_prefix: prefix.to_owned(),
    }
}

/// A migrated pool on a fresh database.
pub(crate) async fn pool(db: &mailroom_tests::TestDb) -> PgPool {
    mailroom_db::connect_and_migrate(&secrecy::SecretString::from(db.url()), 5).await.expect("database")
}

/// A bare handler: it refuses every reply the database has no record of
/// (`sender::provenance`), and drafts replies to unauthenticated senders (the default policy).
pub(crate) async fn bare_handler<S: Sink>(pool: PgPool, sink: S, settings: SenderSettings) -> SendHandler<S> {
    policy_handler(pool, sink, settings, DraftOrSend::Draft).await
}

/// [`bare_handler`] with the `mailbox.unauthenticated` policy `policy`.
pub(crate) async fn policy_handler<S: Sink>(
    pool: PgPool,
    sink: S,
    settings: SenderSettings,
    policy: DraftOrSend,
) -> SendHandler<S> {
    // The second mailbox is the quota test's other mailbox.
    let served = Served::many([AGENT, "help@contoso.example"]);
    let telemetry = Arc::new(Telemetry::default());
    SendHandler::new(pool, sink, connection().await, settings, served, policy, "sender-test", &telemetry)
}

/// A handler whose `send_one` first records each message as the pipeline would have (the
/// poller received the email from `to`, the generator stored this reply), so that the tests
/// of delivery need not build the pipeline's history by hand. The provenance tests use
/// [`bare_handler`].
pub(crate) async fn handler<S: Sink>(pool: PgPool, sink: S, settings: SenderSettings) -> Recorded<S> {
    Recorded { handler: bare_handler(pool.clone(), sink, settings).await, pool }
}

/// See [`handler`].
pub(crate) struct Recorded<S> {
    handler: SendHandler<S>,
    pool: PgPool,
}

impl<S: Sink> Recorded<S> {
    /// Records `msg` as the pipeline's own reply (replacing an earlier one for its email), then
    /// hands it to the sender.
    pub(crate) async fn send_one(&self, msg: &EmailToSend) -> Result<sender::Outcome, pipeline_core::HandlerError> {
        record(&self.pool, msg).await;
        self.handler.send_one(msg).await
    }
}

impl<S> std::ops::Deref for Recorded<S> {
    type Target = SendHandler<S>;

    fn deref(&self) -> &SendHandler<S> {
        &self.handler
    }
}

/// What the poller and the generator record for the email `msg` answers: a published ledger
/// row whose sender is `msg.to` (authenticated), and `msg` as the stored reply.
pub(crate) async fn record(pool: &PgPool, msg: &EmailToSend) {
    mailroom_tests::history::record_reply(pool, msg).await;
}

/// An `emails.to_send` message answering email `n` from `to`.
pub(crate) fn reply(n: usize, to: &str) -> EmailToSend {
    EmailToSend {
        message_id: new_message_id(),
        timestamp: now(),
        original_message_id: new_message_id(),
        email_id: format!("email-{n}"),
        thread_id: Some(format!("18c2f{n:05}")),
        to: to.to_owned(),
        reply_to: AGENT.into(),
        subject: "Re: Re: Lift Pro won't pair".into(),
        generated_response: format!("Hello,\n\nhold the pairing button for 5 seconds (answer {n}).\n\nNorthwind"),
        context_used: Vec::new(),
        agent_email: AGENT.into(),
        escalate: false,
        escalation_reason: None,
        in_reply_to: Some(format!("CAKx{n}@mail.gmail.com")),
        references: vec![format!("root{n}@mail.example"), format!("CAKx{n}@mail.gmail.com")],
        original_subject: Some("RE: Lift Pro won't pair".into()),
    }
}

/// Files in a Maildir folder's `new/` and `cur/`.
pub(crate) use mailroom_tests::maildir_messages as maildir_files;

/// Asserts the reply headers every delivered reply must carry, for email `n`.
pub(crate) fn assert_reply_headers(raw: &str, n: usize) {
    let parsed = mail_mime::parse(raw.as_bytes()).expect("the reply parses");
    assert_eq!(parsed.subject, "Re: Lift Pro won't pair", "Re: without stacking");
    assert_eq!(parsed.in_reply_to.as_deref(), Some(format!("CAKx{n}@mail.gmail.com").as_str()), "{raw}");
    assert_eq!(
        parsed.references,
        vec![format!("root{n}@mail.example"), format!("CAKx{n}@mail.gmail.com")],
        "References keep the thread"
    );
    assert_eq!(parsed.message_id.as_deref(), Some(sender::reply_message_id(AGENT, &format!("email-{n}")).as_str()));
    assert!(raw.contains("\r\nAuto-Submitted: auto-replied\r\n"), "{raw}");
    assert!(parsed.body.contains(&format!("answer {n}")), "{}", parsed.body);
}
