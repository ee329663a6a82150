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
    let rows: Vec<(String, i64)> = sqlx::query_as(&sql).fetch_all(pool).await?;
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
