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

/// A reply the sender left as a draft for a person, in a thread, not yet found reviewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenDraft {
    /// The mailbox's id for the email it answers.
    pub email_id: String,
    /// The draft's `Message-ID`.
    pub reply_message_id: String,
    /// The sink's id for the draft (Maildir file name, Gmail draft id).
    pub provider_message_id: Option<String>,
    /// The content digest of the draft as left (`replies.draft_digest`).
    pub draft_digest: String,
    /// The `Message-ID` of the email it answers.
    pub answers: Option<String>,
    /// The provider's conversation id of that email (Gmail's threadId).
    pub thread_id: Option<String>,
}

/// The drafts left for a person in the thread of an email with these `In-Reply-To`/`References`
/// ids (`refs`) and conversation id, not yet recorded as reviewed: drafts answering one of the
/// ids, or being one of them, or in the same conversation.
pub async fn open_drafts_in_thread(
    pool: &PgPool,
    agent_email: &str,
    refs: &[String],
    thread_id: Option<&str>,
) -> Result<Vec<OpenDraft>, sqlx::Error> {
    let refs: Vec<String> =
        refs.iter().map(|r| r.trim_matches(['<', '>']).to_owned()).filter(|r| !r.is_empty()).collect();
    if refs.is_empty() && thread_id.is_none() {
        return Ok(Vec::new());
    }
    type Row = (String, String, Option<String>, String, Option<String>, Option<String>);
    let rows: Vec<Row> = sqlx::query_as(
        // The thread's emails first, each by an index (migration 20261205000008), then their
        // drafts: never a scan of every draft of the mailbox.
        "WITH thread AS ( \
             SELECT mailbox_id AS email_id FROM mailbox_messages WHERE agent_email = $1 AND rfc_message_id = ANY($2) \
             UNION SELECT email_id FROM replies WHERE agent_email = $1 AND reply_message_id = ANY($2) \
             UNION SELECT email_id FROM responses WHERE agent_email = $1 AND $3::text IS NOT NULL \
                   AND send_message->>'thread_id' = $3) \
         SELECT r.email_id, r.reply_message_id, r.provider_message_id, r.draft_digest, \
                m.rfc_message_id AS answers, s.send_message->>'thread_id' AS thread_id \
         FROM thread t \
         JOIN replies r ON r.agent_email = $1 AND r.email_id = t.email_id \
         JOIN mailbox_messages m ON m.agent_email = r.agent_email AND m.mailbox_id = r.email_id \
         LEFT JOIN responses s ON s.agent_email = r.agent_email AND s.email_id = r.email_id \
         WHERE r.state IN ('drafted', 'in_doubt') AND r.draft_digest IS NOT NULL \
           AND NOT EXISTS (SELECT 1 FROM person_replies p \
                           WHERE p.agent_email = r.agent_email AND p.source_id = 'draft:' || r.reply_message_id) \
         ORDER BY r.completed_at",
    )
    .bind(agent_email)
    .bind(&refs)
    .bind(thread_id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(email_id, reply_message_id, provider_message_id, draft_digest, answers, thread_id)| OpenDraft {
            email_id,
            reply_message_id,
            provider_message_id,
            draft_digest,
            answers,
            thread_id,
        })
        .collect())
}

/// Records that a person took up `draft` (edited, sent or discarded it): a person's reply in its
/// thread, under the source id `draft:<its Message-ID>`, answering the email it was left for.
pub async fn record_reviewed_draft(pool: &PgPool, agent_email: &str, draft: &OpenDraft) -> Result<(), sqlx::Error> {
    let refs: Vec<String> = draft.answers.iter().cloned().collect();
    sqlx::query(
        "INSERT INTO person_replies (agent_email, source_id, message_id, refs, thread_id) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (agent_email, source_id) DO NOTHING",
    )
    .bind(agent_email)
    .bind(format!("draft:{}", draft.reply_message_id))
    .bind(&draft.reply_message_id)
    .bind(&refs)
    .bind(&draft.thread_id)
    .execute(pool)
    .await
    .map(drop)
}
