//! The mailbox registry (`mailboxes`) and the poller leases (`mailbox_pollers`): which support
//! mailboxes one deployment serves, with their own settings, and which poller process reads
//! each of them.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A registered mailbox.
#[derive(Debug, Clone, PartialEq)]
pub struct MailboxRow {
    /// The support address (`agent_email`), lower-case.
    pub address: String,
    /// Whether it is served.
    pub enabled: bool,
    /// Its own `mailbox` / `outbox` / `sender` tables, secrets as references.
    pub settings: serde_json::Value,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it last changed (a change restarts its poller and sender).
    pub updated_at: DateTime<Utc>,
}

crate::from_row!(MailboxRow { address, enabled, settings, created_at, updated_at });

const COLUMNS: &str = "address, enabled, settings, created_at, updated_at";

/// Every registered mailbox, by address.
pub async fn list(pool: &PgPool) -> Result<Vec<MailboxRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM mailboxes ORDER BY address")))
        .fetch_all(pool)
        .await
}

/// One mailbox.
pub async fn get(pool: &PgPool, address: &str) -> Result<Option<MailboxRow>, sqlx::Error> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM mailboxes WHERE address = $1")))
        .bind(address)
        .fetch_optional(pool)
        .await
}

/// Registers a mailbox; `false` when the address is registered already.
pub async fn add(
    pool: &PgPool,
    address: &str,
    enabled: bool,
    settings: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO mailboxes (address, enabled, settings) VALUES ($1, $2, $3) ON CONFLICT (address) DO NOTHING",
    )
    .bind(address)
    .bind(enabled)
    .bind(settings)
    .execute(pool)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Replaces a mailbox's settings; `false` when it is not registered.
pub async fn set_settings(pool: &PgPool, address: &str, settings: &serde_json::Value) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query("UPDATE mailboxes SET settings = $2, updated_at = now() WHERE address = $1")
        .bind(address)
        .bind(settings)
        .execute(pool)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Enables or disables a mailbox; `false` when it is not registered.
pub async fn set_enabled(pool: &PgPool, address: &str, enabled: bool) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query("UPDATE mailboxes SET enabled = $2, updated_at = now() WHERE address = $1")
        .bind(address)
        .bind(enabled)
        .execute(pool)
        .await?;
    Ok(updated.rows_affected() == 1)
}

/// Takes or renews the lease on reading `address` for `owner`, unless another poller holds a
/// lease that has not run out. Whether `owner` holds it now.
pub async fn lease(pool: &PgPool, address: &str, owner: &str, ttl_secs: u64) -> Result<bool, sqlx::Error> {
    let held: Option<String> = sqlx::query_scalar(
        "INSERT INTO mailbox_pollers (address, owner, lease_until) VALUES ($1, $2, now() + make_interval(secs => $3)) \
         ON CONFLICT (address) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, \
         updated_at = now() WHERE mailbox_pollers.owner = EXCLUDED.owner OR mailbox_pollers.lease_until < now() \
         RETURNING owner",
    )
    .bind(address)
    .bind(owner)
    .bind(ttl_secs as f64)
    .fetch_optional(pool)
    .await?;
    Ok(held.is_some())
}

/// Gives the lease up (at shutdown, or when the mailbox was disabled), so another poller may
/// take the mailbox at once.
pub async fn release(pool: &PgPool, address: &str, owner: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mailbox_pollers SET lease_until = '-infinity', updated_at = now() WHERE address = $1 AND owner = $2",
    )
    .bind(address)
    .bind(owner)
    .execute(pool)
    .await
    .map(drop)
}

/// Records how `owner`'s pass over `address` went: `None` for a completed pass, or why it
/// failed (the mailbox's credentials were refused, it cannot be reached, …).
pub async fn record_pass(pool: &PgPool, address: &str, owner: &str, error: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE mailbox_pollers SET last_error = $3, \
         last_pass_at = CASE WHEN $3 IS NULL THEN now() ELSE last_pass_at END, updated_at = now() \
         WHERE address = $1 AND owner = $2",
    )
    .bind(address)
    .bind(owner)
    .bind(error)
    .execute(pool)
    .await
    .map(drop)
}

/// The poller side of one mailbox, for `mailroom status`.
#[derive(Debug, Clone, PartialEq)]
pub struct PollerRow {
    /// The mailbox.
    pub address: String,
    /// The poller process holding (or last holding) its lease.
    pub owner: String,
    /// Whether that lease is still running.
    pub leased: bool,
    /// The last completed pass.
    pub last_pass_at: Option<DateTime<Utc>>,
    /// Why the last pass failed, if it did.
    pub last_error: Option<String>,
}

crate::from_row!(PollerRow { address, owner, leased, last_pass_at, last_error });

/// The poller side of every mailbox a poller has read.
pub async fn pollers(pool: &PgPool) -> Result<Vec<PollerRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT address, owner, lease_until > now() AS leased, last_pass_at, last_error FROM mailbox_pollers \
         ORDER BY address",
    )
    .fetch_all(pool)
    .await
}

/// Records what sender process `sender` found wrong with `address`'s sending side (`None`:
/// nothing), for `mailroom status`.
pub async fn record_sender(
    pool: &PgPool,
    address: &str,
    sender: &str,
    problem: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO mailbox_senders (address, sender, problem) VALUES ($1, $2, $3) \
         ON CONFLICT (address, sender) DO UPDATE SET problem = EXCLUDED.problem, updated_at = now()",
    )
    .bind(address)
    .bind(sender)
    .bind(problem)
    .execute(pool)
    .await
    .map(drop)
}

/// Each enabled mailbox with its `section` laid over `settings` without its secrets — what a
/// process that never holds a mailbox's credentials reads of it (its reply policy, its
/// threshold) — or why that cannot be read.
pub async fn policies<T: serde::de::DeserializeOwned>(
    pool: &PgPool,
    settings: &pipeline_core::Settings,
    section: &str,
) -> Result<Vec<(MailboxRow, Result<T, String>)>, sqlx::Error> {
    Ok(list(pool)
        .await?
        .into_iter()
        .filter(|row| row.enabled)
        .map(|row| {
            let read = settings
                .policy_for_mailbox(&row.address, &row.settings)
                .map_err(|e| e.to_string())
                .and_then(|s| s.section::<T>(section).map_err(|e| e.to_string()));
            (row, read)
        })
        .collect())
}

/// What a process takes from the registry and keeps current: the generator's reply policies and
/// the classifier's thresholds (read without the mailboxes' secrets), the sender's handlers.
pub trait ReadsRegistry: Send + Sync + 'static {
    /// What it is, for the warning when a read fails.
    const WHAT: &'static str;
    /// Why a read failed.
    type Error: std::fmt::Display;

    /// Reads the registry's mailboxes again, laid over the deployment's `settings`.
    fn read(
        &self,
        settings: &pipeline_core::Settings,
        pool: &PgPool,
    ) -> impl std::future::Future<Output = Result<(), Self::Error>> + Send;
}

/// Reads the registry into `reader` every `registry.refresh_secs`, in a task of its own, for as
/// long as the process runs; the caller makes the first read at start. A failed read keeps what
/// was read before.
pub fn keep_reading<R: ReadsRegistry>(
    reader: std::sync::Arc<R>,
    settings: pipeline_core::Settings,
    pool: PgPool,
    registry: &pipeline_core::mailbox_overlay::RegistrySettings,
) -> tokio::task::JoinHandle<()> {
    let every = registry.refresh();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = reader.read(&settings, &pool).await {
                tracing::warn!(error = %e, "Cannot read the mailbox registry; keeping the {} as they are.", R::WHAT);
            }
        }
    })
}

/// Reads the registry into `reader` now (a failure only warns: the deployment's settings apply
/// meanwhile), then [`keep_reading`].
pub async fn read_and_keep_reading<R: ReadsRegistry>(
    reader: std::sync::Arc<R>,
    settings: pipeline_core::Settings,
    pool: PgPool,
    registry: &pipeline_core::mailbox_overlay::RegistrySettings,
) -> tokio::task::JoinHandle<()> {
    if let Err(e) = reader.read(&settings, &pool).await {
        tracing::warn!(error = %e, "Cannot read the mailbox registry; the deployment's {} apply until it can.", R::WHAT);
    }
    keep_reading(reader, settings, pool, registry)
}
