//! What the later stages record about an email, written straight into their tables (the
//! classifier's through `mailroom_db`, the sender's send log by SQL, as the sender crate's
//! claim-then-complete would leave it), so the poller's outcome pass can be tested on each
//! source without running the whole pipeline. Shared by the source tests (`#[path]`).

use sqlx::PgPool;

/// The scenario every source test plays: one message per outcome, and one still in progress.
pub(crate) const SCENARIO: [(&str, Expect); 6] = [
    ("answered", Expect::Answered),
    ("drafted", Expect::Drafted),
    ("not-support", Expect::NotSupport),
    ("needs-person", Expect::NeedsPerson),
    ("failed", Expect::Failed),
    ("in-progress", Expect::Nothing),
];

/// The outcome a scenario message should end with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Answered,
    Drafted,
    NotSupport,
    NeedsPerson,
    Failed,
    Nothing,
}

impl Expect {
    /// As stored in `mailbox_messages.outcome`.
    pub(crate) fn stored(self) -> Option<&'static str> {
        match self {
            Self::Answered => Some("answered"),
            Self::Drafted => Some("drafted"),
            Self::NotSupport => Some("not-support"),
            Self::NeedsPerson => Some("needs-person"),
            Self::Failed => Some("failed"),
            Self::Nothing => None,
        }
    }
}

/// The classifier's verdict.
pub(crate) async fn classify(pool: &PgPool, agent: &str, email_id: &str, support: bool) {
    let c = mailroom_db::pipeline::NewClassification {
        agent_email: agent,
        email_id,
        message_id: "test-classify",
        correlation_id: None,
        is_support_inquiry: support,
        category: if support { "order_status" } else { "spam" },
        confidence: 0.9,
        llm_provider: "local",
        reason: None,
        respond_message_id: None,
    };
    mailroom_db::pipeline::record_classification(pool, &c).await.expect("record classification");
}

/// The sender's completed send-log row (`sent`, `drafted`, …).
pub(crate) async fn reply(pool: &PgPool, agent: &str, email_id: &str, state: &str) {
    sqlx::query(
        "INSERT INTO replies (agent_email, email_id, message_id, state, sink, recipient, subject, reply_message_id, \
         claim_token, claimed_by, completed_at) VALUES ($1, $2, 'test-send', $3, 'test', 'c@customer.example', 'Re', \
         $4, gen_random_uuid(), 'test', now()) \
         ON CONFLICT (agent_email, email_id) DO UPDATE SET state = EXCLUDED.state",
    )
    .bind(agent)
    .bind(email_id)
    .bind(state)
    .bind(format!("reply-{email_id}"))
    .execute(pool)
    .await
    .expect("record reply");
}

/// Moves the message's publication two hours back, past `outcome_timeout_secs`.
pub(crate) async fn backdate(pool: &PgPool, agent: &str, email_id: &str) {
    sqlx::query(
        "UPDATE mailbox_messages SET created_at = now() - interval '2 hours' WHERE agent_email = $1 AND mailbox_id = $2",
    )
    .bind(agent)
    .bind(email_id)
    .execute(pool)
    .await
    .expect("backdate");
}

/// Records, for the scenario's message `email_id` expecting `expect`, what the pipeline would
/// have recorded by now.
pub(crate) async fn record(pool: &PgPool, agent: &str, email_id: &str, expect: Expect) {
    match expect {
        Expect::Answered => {
            classify(pool, agent, email_id, true).await;
            reply(pool, agent, email_id, "sent").await;
        }
        Expect::Drafted => {
            classify(pool, agent, email_id, true).await;
            reply(pool, agent, email_id, "drafted").await;
        }
        Expect::NotSupport => classify(pool, agent, email_id, false).await,
        Expect::NeedsPerson => {
            // Classified as support, then the generator or sender gave up: no reply, for long.
            classify(pool, agent, email_id, true).await;
            backdate(pool, agent, email_id).await;
        }
        // Never classified (dead-lettered), for long.
        Expect::Failed => backdate(pool, agent, email_id).await,
        // Published a moment ago: the pipeline is still at it.
        Expect::Nothing => {}
    }
}

/// The outcome the ledger says was applied.
pub(crate) async fn applied(pool: &PgPool, agent: &str, email_id: &str) -> Option<String> {
    sqlx::query_scalar("SELECT outcome FROM mailbox_messages WHERE agent_email = $1 AND mailbox_id = $2")
        .bind(agent)
        .bind(email_id)
        .fetch_one(pool)
        .await
        .expect("ledger row")
}

/// The ledger key (mailbox id) of the message whose `Message-ID` is `<message_id>`.
#[allow(dead_code)] // Used by the IMAP tests only.
pub(crate) async fn key_of(pool: &PgPool, agent: &str, message_id: &str) -> String {
    sqlx::query_scalar("SELECT mailbox_id FROM mailbox_messages WHERE agent_email = $1 AND rfc_message_id = $2")
        .bind(agent)
        .bind(message_id)
        .fetch_one(pool)
        .await
        .expect("a ledger row with that Message-ID")
}

/// Records the whole [`SCENARIO`] for messages found by their `Message-ID`
/// (`<name>@customer.example`), as the IMAP tests key them.
#[allow(dead_code)] // Used by the IMAP tests only.
pub(crate) async fn record_scenario_by_message_id(pool: &PgPool, agent: &str) {
    for (name, expect) in SCENARIO {
        record(pool, agent, &key_of(pool, agent, &format!("{name}@customer.example")).await, expect).await;
    }
}
