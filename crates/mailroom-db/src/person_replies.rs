//! The replies a person of a mailbox sent (`person_replies`): recorded by the poller from the
//! mailbox's sent mail, read by the sender, which drafts instead of sending in a thread a person
//! has answered.

use sqlx::PgPool;

/// A message from the mailbox's sent mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The source's id for it (Maildir file name, IMAP key, Gmail id): the row's key.
    pub source_id: String,
    /// Its `Message-ID`.
    pub message_id: Option<String>,
    /// Its `In-Reply-To` and `References`.
    pub refs: Vec<String>,
    /// The provider's conversation id, if it has one.
    pub thread_id: Option<String>,
}

/// Of `source_ids`, those already recorded (or set aside) for `agent_email`.
pub async fn known(pool: &PgPool, agent_email: &str, source_ids: &[String]) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT source_id FROM person_replies WHERE agent_email = $1 AND source_id = ANY($2)")
        .bind(agent_email)
        .bind(source_ids)
        .fetch_all(pool)
        .await
}

/// Records the messages of `sent` a person sent: those whose `Message-ID` is not a reply the
/// sender sent (or is sending) itself. A draft of ours that a person sent counts as theirs.
/// Our own are recorded too, with no thread, so that they are not read again. Returns how many
/// were a person's.
pub async fn record(pool: &PgPool, agent_email: &str, sent: &[SentMessage]) -> Result<usize, sqlx::Error> {
    let mut persons = 0;
    for m in sent {
        let ours: bool = match &m.message_id {
            Some(id) => {
                sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM replies WHERE agent_email = $1 AND reply_message_id = $2 \
                 AND state IN ('sent', 'claimed'))",
                )
                .bind(agent_email)
                .bind(id.trim_matches(['<', '>']))
                .fetch_one(pool)
                .await?
            }
            None => false,
        };
        let (refs, thread_id) = if ours { (Vec::new(), None) } else { (m.refs.clone(), m.thread_id.clone()) };
        sqlx::query(
            "INSERT INTO person_replies (agent_email, source_id, message_id, refs, thread_id) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (agent_email, source_id) DO NOTHING",
        )
        .bind(agent_email)
        .bind(&m.source_id)
        .bind(if ours { None } else { m.message_id.as_deref() })
        .bind(&refs)
        .bind(&thread_id)
        .execute(pool)
        .await?;
        persons += usize::from(!ours);
    }
    Ok(persons)
}

/// Whether a person of `agent_email`'s mailbox has replied in the thread of an email with
/// these `In-Reply-To`/`References` ids (`refs`) and conversation id: their reply is one of the
/// ids, or answers one of them, or is in the same conversation.
pub async fn replied_in_thread(
    pool: &PgPool,
    agent_email: &str,
    refs: &[String],
    thread_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let refs: Vec<String> =
        refs.iter().map(|r| r.trim_matches(['<', '>']).to_owned()).filter(|r| !r.is_empty()).collect();
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM person_replies WHERE agent_email = $1 AND message_id IS NOT NULL \
         AND (message_id = ANY($2) OR refs && $2 OR (thread_id IS NOT NULL AND thread_id = $3)))",
    )
    .bind(agent_email)
    .bind(&refs)
    .bind(thread_id)
    .fetch_one(pool)
    .await
}
