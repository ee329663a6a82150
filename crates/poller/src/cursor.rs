//! Where a source left off (`mailbox_cursors`): Gmail's history id, or IMAP's last UID with
//! its UIDVALIDITY, per support mailbox and source mailbox. A cursor is only written after a
//! pass handled everything before it, so a crash repeats work (which the ledger makes
//! harmless) and never skips any. It only moves forward — except when the IMAP server
//! renumbered the mailbox (a new UIDVALIDITY), where the old position means nothing.

use sqlx::PgPool;

/// A stored position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// A decimal number: Gmail history id or IMAP UID.
    pub position: String,
    /// The IMAP UIDVALIDITY the position belongs to; `None` for Gmail.
    pub validity: Option<i64>,
}

/// Identifies one cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorKey {
    /// The support mailbox (`mailbox.agent_email`).
    pub agent_email: String,
    /// `gmail` or `imap`.
    pub source: String,
    /// The Gmail user or the IMAP folder.
    pub mailbox: String,
}

impl CursorKey {
    /// A key.
    pub fn new(agent_email: &str, source: &str, mailbox: &str) -> Self {
        Self { agent_email: agent_email.to_owned(), source: source.to_owned(), mailbox: mailbox.to_owned() }
    }
}

/// The stored cursor, if a pass ever completed.
pub async fn load(pool: &PgPool, key: &CursorKey) -> Result<Option<Cursor>, sqlx::Error> {
    let row: Option<(String, Option<i64>)> = sqlx::query_as(
        "SELECT position, validity FROM mailbox_cursors WHERE agent_email = $1 AND source = $2 AND mailbox = $3",
    )
    .bind(&key.agent_email)
    .bind(&key.source)
    .bind(&key.mailbox)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(position, validity)| Cursor { position, validity }))
}

/// Stores `cursor` if it is later than the stored one (numerically: "999" < "1000") or
/// belongs to another UIDVALIDITY, and says whether it did. A position that is not a
/// decimal number is never stored. The comparison is made by the database, so two pollers
/// racing cannot move the cursor back.
pub async fn advance(pool: &PgPool, key: &CursorKey, cursor: &Cursor) -> Result<bool, sqlx::Error> {
    let mut checked = None;
    // The same rule as Gmail's client applies to history ids, reused so both agree.
    if !gmail::advance_history_cursor(&mut checked, &cursor.position) {
        return Ok(false);
    }
    let moved: Option<String> = sqlx::query_scalar(
        "INSERT INTO mailbox_cursors (agent_email, source, mailbox, position, validity) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (agent_email, source, mailbox) DO UPDATE \
         SET position = EXCLUDED.position, validity = EXCLUDED.validity, updated_at = now() \
         WHERE mailbox_cursors.validity IS DISTINCT FROM EXCLUDED.validity \
            OR mailbox_cursors.position::numeric < EXCLUDED.position::numeric \
         RETURNING position",
    )
    .bind(&key.agent_email)
    .bind(&key.source)
    .bind(&key.mailbox)
    .bind(checked.as_deref())
    .bind(cursor.validity)
    .fetch_optional(pool)
    .await?;
    Ok(moved.is_some())
}
