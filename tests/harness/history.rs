//! The pipeline's history of an email, written straight into PostgreSQL for tests that hand a
//! stage a message without running the stages before it. The sender refuses a reply the
//! pipeline did not make (`sender::provenance`): these rows are what makes a test's reply one
//! the pipeline made — the poller received the email from its sender, the generator stored the
//! reply.

use pipeline_core::messages::EmailToSend;
use sqlx::PgPool;

/// What the poller records of an email it took in: a published ledger row of `agent`'s mailbox
/// with the email's sender, whom the receiving server authenticated (`sender_auth = 'pass'`;
/// [`set_sender_auth`] changes that). Kept as it is when the row exists.
pub async fn record_received(pool: &PgPool, agent: &str, email_id: &str, sender: &str) {
    try_record_received(pool, agent, email_id, sender).await.expect("record the poller's ledger row");
}

/// [`record_received`], failing when PostgreSQL cannot store the values (a NUL in a string).
pub async fn try_record_received(pool: &PgPool, agent: &str, email_id: &str, sender: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mailbox_messages (agent_email, mailbox_id, message_id, state, sender_address, sender_auth, \
         sender_auth_detail) VALUES ($1, $2, 'test-history', 'published', $3, 'pass', 'dmarc=pass (test history)') \
         ON CONFLICT (agent_email, mailbox_id) DO NOTHING",
    )
    .bind(pipeline_core::messages::agent_address(agent))
    .bind(email_id)
    .bind(sender)
    .execute(pool)
    .await
    .map(drop)
}

/// What the generator records of its reply: `reply` as the stored `emails.to_send` body
/// (replacing an earlier one for its email), after [`record_received`] for the email it
/// answers, from `reply.to`, whose `Message-ID` is the one the reply's `In-Reply-To` names.
/// Fails when PostgreSQL cannot store the body (a NUL in a string).
pub async fn try_record_reply(pool: &PgPool, reply: &serde_json::Value) -> Result<(), sqlx::Error> {
    let text = |field: &str| reply[field].as_str().unwrap_or_default().to_owned();
    let agent = pipeline_core::messages::agent_address(&text("agent_email"));
    try_record_received(pool, &agent, &text("email_id"), &text("to")).await?;
    sqlx::query(
        "UPDATE mailbox_messages SET rfc_message_id = $3 WHERE agent_email = $1 AND mailbox_id = $2 \
         AND rfc_message_id IS NULL AND $3 <> ''",
    )
    .bind(&agent)
    .bind(text("email_id"))
    .bind(text("in_reply_to"))
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO responses (agent_email, email_id, respond_message_id, send_message_id, send_message, llm_provider) \
         VALUES ($1, $2, 'test-history', $3, $4, 'test') \
         ON CONFLICT (agent_email, email_id) DO UPDATE SET send_message = EXCLUDED.send_message",
    )
    .bind(&agent)
    .bind(text("email_id"))
    .bind(text("message_id"))
    .bind(reply)
    .execute(pool)
    .await
    .map(drop)
}

/// [`try_record_reply`] for a well-formed reply.
pub async fn record_reply(pool: &PgPool, reply: &EmailToSend) {
    let value = serde_json::to_value(reply).expect("a reply encodes");
    try_record_reply(pool, &value).await.expect("record the generator's reply");
}

/// Sets the poller's sender-authentication verdict of a recorded email: `Some(("pass" | "fail",
/// detail))`, or `None` for a row from before the poller recorded one.
pub async fn set_sender_auth(pool: &PgPool, agent: &str, email_id: &str, verdict: Option<(&str, &str)>) {
    sqlx::query(
        "UPDATE mailbox_messages SET sender_auth = $3, sender_auth_detail = $4 WHERE agent_email = $1 AND mailbox_id = $2",
    )
    .bind(pipeline_core::messages::agent_address(agent))
    .bind(email_id)
    .bind(verdict.map(|(v, _)| v))
    .bind(verdict.map(|(_, d)| d))
    .execute(pool)
    .await
    .expect("set the sender-authentication verdict");
}
