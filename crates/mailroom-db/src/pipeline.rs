//! The classifier's and generator's records: one classification and one drafted reply per
//! email, which make redeliveries idempotent.

use sqlx::PgPool;

/// A stored classification.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassificationRow {
    /// Support mailbox.
    pub agent_email: String,
    /// Mailbox id of the email.
    pub email_id: String,
    /// Whether it is a support inquiry.
    pub is_support_inquiry: bool,
    /// Category.
    pub category: String,
    /// Confidence 0–1.
    pub confidence: f64,
    /// Who decided (`rules`, `local`, `gemini`, …).
    pub llm_provider: String,
    /// Why, for rule-based decisions.
    pub reason: Option<String>,
    /// Id of the `emails.to_respond` message published for it, if any.
    pub respond_message_id: Option<String>,
}

crate::from_row!(ClassificationRow {
    agent_email,
    email_id,
    is_support_inquiry,
    category,
    confidence,
    llm_provider,
    reason,
    respond_message_id,
});

/// A classification to record.
#[derive(Debug, Clone)]
pub struct NewClassification<'a> {
    /// Support mailbox.
    pub agent_email: &'a str,
    /// Mailbox id of the email.
    pub email_id: &'a str,
    /// Id of the `emails.to_classify` message.
    pub message_id: &'a str,
    /// Correlation id.
    pub correlation_id: Option<&'a str>,
    /// Whether it is a support inquiry.
    pub is_support_inquiry: bool,
    /// Category.
    pub category: &'a str,
    /// Confidence.
    pub confidence: f64,
    /// Who decided.
    pub llm_provider: &'a str,
    /// Why, for rule-based decisions.
    pub reason: Option<&'a str>,
    /// Id of the `emails.to_respond` message to publish, if any.
    pub respond_message_id: Option<&'a str>,
}

/// The stored classification of an email.
pub async fn get_classification(
    pool: &PgPool,
    agent_email: &str,
    email_id: &str,
) -> Result<Option<ClassificationRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT agent_email, email_id, is_support_inquiry, category, confidence, llm_provider, reason, \
         respond_message_id FROM classifications WHERE agent_email = $1 AND email_id = $2",
    )
    .bind(agent_email)
    .bind(email_id)
    .fetch_optional(pool)
    .await
}

/// Records a classification unless the email already has one; returns the one that is stored
/// (a concurrent or earlier delivery's, if it won). The insert returns the new row, so only a
/// lost race costs a second query.
pub async fn record_classification(pool: &PgPool, c: &NewClassification<'_>) -> Result<ClassificationRow, sqlx::Error> {
    let inserted: Option<ClassificationRow> = sqlx::query_as(
        "INSERT INTO classifications (agent_email, email_id, message_id, correlation_id, is_support_inquiry, \
         category, confidence, llm_provider, reason, respond_message_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (agent_email, email_id) DO NOTHING \
         RETURNING agent_email, email_id, is_support_inquiry, category, confidence, llm_provider, reason, \
         respond_message_id",
    )
    .bind(c.agent_email)
    .bind(c.email_id)
    .bind(c.message_id)
    .bind(c.correlation_id)
    .bind(c.is_support_inquiry)
    .bind(c.category)
    .bind(c.confidence)
    .bind(c.llm_provider)
    .bind(c.reason)
    .bind(c.respond_message_id)
    .fetch_optional(pool)
    .await?;
    match inserted {
        Some(row) => Ok(row),
        None => get_classification(pool, c.agent_email, c.email_id).await?.ok_or(sqlx::Error::RowNotFound),
    }
}

/// The stored reply (`emails.to_send` body) of an email, if drafted.
pub async fn get_response(
    pool: &PgPool,
    agent_email: &str,
    email_id: &str,
) -> Result<Option<serde_json::Value>, sqlx::Error> {
    sqlx::query_scalar("SELECT send_message FROM responses WHERE agent_email = $1 AND email_id = $2")
        .bind(agent_email)
        .bind(email_id)
        .fetch_optional(pool)
        .await
}

/// A drafted reply to record.
#[derive(Debug, Clone)]
pub struct NewResponse<'a> {
    /// Support mailbox.
    pub agent_email: &'a str,
    /// Mailbox id of the email.
    pub email_id: &'a str,
    /// Id of the `emails.to_respond` message answered.
    pub respond_message_id: &'a str,
    /// Id of the `emails.to_send` message.
    pub send_message_id: &'a str,
    /// The `emails.to_send` body.
    pub send_message: &'a serde_json::Value,
    /// Who wrote it.
    pub llm_provider: &'a str,
    /// Whether it is for a human to finish.
    pub escalate: bool,
}

/// Records a drafted reply unless the email already has one; returns the stored one (only a
/// lost race reads it back).
pub async fn record_response(pool: &PgPool, r: &NewResponse<'_>) -> Result<serde_json::Value, sqlx::Error> {
    let inserted: Option<i32> = sqlx::query_scalar(
        "INSERT INTO responses (agent_email, email_id, respond_message_id, send_message_id, send_message, \
         llm_provider, escalate) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (agent_email, email_id) DO NOTHING \
         RETURNING 1",
    )
    .bind(r.agent_email)
    .bind(r.email_id)
    .bind(r.respond_message_id)
    .bind(r.send_message_id)
    .bind(r.send_message)
    .bind(r.llm_provider)
    .bind(r.escalate)
    .fetch_optional(pool)
    .await?;
    // Ours is what is stored: the value we sent, without reading it back.
    if inserted.is_some() {
        return Ok(r.send_message.clone());
    }
    get_response(pool, r.agent_email, r.email_id).await?.ok_or(sqlx::Error::RowNotFound)
}

/// Whether an email's sender was authenticated, as the poller read it from the receiving
/// server's `Authentication-Results` (`poller::authres`), stored in `mailbox_messages`
/// (`sender_auth`, `sender_auth_detail`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderAuth {
    /// DMARC passed, or (no DMARC result) SPF or DKIM passed for the From domain.
    Pass {
        /// What passed, and where: `dmarc=pass (mx.northwind.example)`.
        detail: String,
    },
    /// Not authenticated.
    Fail {
        /// Why: `dmarc=fail (mx.northwind.example)`, `spf=fail and dkim=fail (…)`, `no
        /// Authentication-Results from mx.northwind.example`.
        reason: String,
    },
}

impl SenderAuth {
    /// The `sender_auth` column: `pass` or `fail`.
    pub fn verdict(&self) -> &'static str {
        match self {
            Self::Pass { .. } => "pass",
            Self::Fail { .. } => "fail",
        }
    }

    /// The `sender_auth_detail` column.
    pub fn detail(&self) -> &str {
        match self {
            Self::Pass { detail } => detail,
            Self::Fail { reason } => reason,
        }
    }

    /// Whether the sender was authenticated.
    pub fn passed(&self) -> bool {
        matches!(self, Self::Pass { .. })
    }

    /// The verdict as stored; `None` for rows written before it was recorded (or with a value
    /// this version does not know, which counts as no verdict).
    pub fn from_columns(verdict: Option<&str>, detail: Option<String>) -> Option<Self> {
        let detail = detail.unwrap_or_default();
        match verdict? {
            "pass" => Some(Self::Pass { detail }),
            "fail" => Some(Self::Fail { reason: detail }),
            _ => None,
        }
    }
}

impl std::fmt::Display for SenderAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.verdict(), self.detail())
    }
}

/// What the pipeline recorded about an email, for the sender to check a reply against
/// (`sender::provenance`).
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// The address the poller read as the email's sender; `None` for mail taken in before it
    /// was recorded.
    pub sender_address: Option<String>,
    /// Whether that sender was authenticated; `None` for mail taken in before the poller
    /// recorded it.
    pub sender_auth: Option<SenderAuth>,
    /// The reply the generator stored (`emails.to_send` body), if it answered.
    pub response: Option<serde_json::Value>,
}

/// The provenance of email `email_id` of `agent_email`, when the poller took it in: published,
/// or claimed (the poller records `published` after the broker's confirm, and the pipeline can
/// answer before that). An unparseable or duplicate message was never handed to the pipeline:
/// `None`.
pub async fn provenance(pool: &PgPool, agent_email: &str, email_id: &str) -> Result<Option<Provenance>, sqlx::Error> {
    type Row = (Option<String>, Option<String>, Option<String>, Option<serde_json::Value>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT m.sender_address, m.sender_auth, m.sender_auth_detail, r.send_message FROM mailbox_messages m \
         LEFT JOIN responses r ON r.agent_email = m.agent_email AND r.email_id = m.mailbox_id \
         WHERE m.agent_email = $1 AND m.mailbox_id = $2 AND m.state IN ('claimed', 'published')",
    )
    .bind(agent_email)
    .bind(email_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(sender_address, verdict, detail, response)| Provenance {
        sender_address,
        sender_auth: SenderAuth::from_columns(verdict.as_deref(), detail),
        response,
    }))
}
