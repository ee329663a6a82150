//! Read-only counts for `mailroom status`: documents by ingestion status and emails by stage.
//!
//! Every query first checks that its table exists (`to_regclass`), because `status` must work
//! against a database that is older or newer than this binary — one not migrated yet, or one
//! whose send log (`replies`) another release added — and report what it finds instead of
//! failing on the first missing table. Nothing here writes, and connecting never creates the
//! database (unlike [`crate::connect`]): looking must not change what is looked at.

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgPool};

use crate::DbError;

/// Counts of one table, grouped by a state column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    /// Pipeline stage the table records (`mailbox`, `classified`, `responses`, `replies`).
    pub stage: &'static str,
    /// Table the counts come from.
    pub table: &'static str,
    /// Count per state; `None` when the table does not exist in this database.
    pub counts: Option<BTreeMap<String, i64>>,
}

/// Connects to an existing database with a small pool, without creating it.
///
/// A short acquire timeout keeps `mailroom status` responsive when the server is down: it
/// reports the unreachable database instead of hanging.
pub async fn connect_existing(url: &SecretString) -> Result<PgPool, DbError> {
    let options = crate::connect_options(url)?;
    // One direct connection first: when it fails it says why (refused, no such database, bad
    // password), where a pool only reports that it timed out waiting.
    let probe = options
        .connect()
        .await
        .map_err(|source| DbError::Connect { url: crate::redact(url.expose_secret()), source })?;
    let _ = probe.close().await;
    PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|source| DbError::Connect { url: crate::redact(url.expose_secret()), source })
}

/// Whether a table (or view) is visible on the search path.
pub async fn table_exists(pool: &PgPool, table: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(table).fetch_one(pool).await
}

/// Documents by status; `None` when the `documents` table does not exist.
pub async fn document_counts(pool: &PgPool) -> Result<Option<BTreeMap<String, i64>>, sqlx::Error> {
    if !table_exists(pool, "documents").await? {
        return Ok(None);
    }
    crate::documents::count_by_status(pool).await.map(|rows| Some(rows.into_iter().collect()))
}

/// Groups `table` by the SQL expression `state`; `None` when the table does not exist.
async fn grouped(
    pool: &PgPool,
    table: &'static str,
    state: &str,
) -> Result<Option<BTreeMap<String, i64>>, sqlx::Error> {
    if !table_exists(pool, table).await? {
        return Ok(None);
    }
    // `table` and `state` are compile-time constants of this module, never user input.
    let sql = format!("SELECT ({state})::text AS state, count(*) FROM {table} GROUP BY 1 ORDER BY 1");
    let rows: Vec<(String, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(&*sql)).fetch_all(pool).await?;
    Ok(Some(rows.into_iter().collect()))
}

/// Emails by stage: taken from the mailbox (`mailbox_messages.state`), classified (support or
/// not), answered (`responses`, drafted or escalated) and delivered (`replies.state`, the
/// sender's send log).
pub async fn email_counts(pool: &PgPool) -> Result<Vec<StateCounts>, sqlx::Error> {
    let mut out = Vec::new();
    for (stage, table, state) in [
        ("mailbox", "mailbox_messages", "state"),
        ("classified", "classifications", "CASE WHEN is_support_inquiry THEN 'support' ELSE 'not_support' END"),
        ("responses", "responses", "CASE WHEN escalate THEN 'escalated' ELSE 'drafted' END"),
        ("replies", "replies", "state"),
    ] {
        out.push(StateCounts { stage, table, counts: grouped(pool, table, state).await? });
    }
    Ok(out)
}

/// One mailbox as `mailroom status` shows it: the registry's entry (when there is one), its
/// poller, and its mail.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MailboxState {
    /// The support address.
    pub address: String,
    /// Whether it is registered (`false`: the mailbox of `[mailbox]`, or mail of a mailbox
    /// no longer registered).
    pub registered: bool,
    /// Whether it is served (registered and enabled).
    pub enabled: bool,
    /// The poller process holding its lease, while the lease runs.
    pub poller: Option<String>,
    /// The last completed pass of a registry poller.
    pub last_pass_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why its last pass failed (refused credentials, unreachable), if it did.
    pub last_error: Option<String>,
    /// What a sender found wrong with its sending side (settings that cannot work, an outbox
    /// refusing its credentials), if anything, in the last minute.
    pub sender_problem: Option<String>,
    /// Messages published from it.
    pub published: i64,
    /// Copies recorded as duplicates of an email already published.
    pub duplicates: i64,
    /// Messages set aside as unparseable.
    pub unparseable: i64,
    /// Replies sent, and drafts made.
    pub sent: i64,
    /// Drafts saved for a person.
    pub drafted: i64,
}

crate::from_row!(MailboxState {
    address,
    registered,
    enabled,
    poller,
    last_pass_at,
    last_error,
    sender_problem,
    published,
    duplicates,
    unparseable,
    sent,
    drafted,
});

/// Every mailbox the registry holds or the ledger has mail of; `None` before the registry's
/// migration.
pub async fn mailbox_states(pool: &PgPool) -> Result<Option<Vec<MailboxState>>, sqlx::Error> {
    if !table_exists(pool, "mailboxes").await? {
        return Ok(None);
    }
    sqlx::query_as(
        "WITH addresses AS (SELECT address FROM mailboxes UNION SELECT DISTINCT agent_email FROM mailbox_messages), \
         ledger AS (SELECT agent_email, count(*) FILTER (WHERE state = 'published') AS published, \
           count(*) FILTER (WHERE state = 'duplicate') AS duplicates, \
           count(*) FILTER (WHERE state = 'unparseable') AS unparseable FROM mailbox_messages GROUP BY 1), \
         sends AS (SELECT agent_email, count(*) FILTER (WHERE state = 'sent') AS sent, \
           count(*) FILTER (WHERE state = 'drafted') AS drafted FROM replies GROUP BY 1) \
         SELECT a.address, m.address IS NOT NULL AS registered, COALESCE(m.enabled, false) AS enabled, \
           CASE WHEN p.lease_until > now() THEN p.owner END AS poller, p.last_pass_at, p.last_error, \
           (SELECT string_agg(DISTINCT problem, '; ') FROM mailbox_senders ms WHERE ms.address = a.address \
             AND ms.problem IS NOT NULL AND ms.updated_at > now() - interval '1 minute') AS sender_problem, \
           COALESCE(l.published, 0) AS published, COALESCE(l.duplicates, 0) AS duplicates, \
           COALESCE(l.unparseable, 0) AS unparseable, COALESCE(s.sent, 0) AS sent, COALESCE(s.drafted, 0) AS drafted \
         FROM addresses a LEFT JOIN mailboxes m ON m.address = a.address \
         LEFT JOIN mailbox_pollers p ON p.address = a.address LEFT JOIN ledger l ON l.agent_email = a.address \
         LEFT JOIN sends s ON s.agent_email = a.address ORDER BY a.address",
    )
    .fetch_all(pool)
    .await
    .map(Some)
}
