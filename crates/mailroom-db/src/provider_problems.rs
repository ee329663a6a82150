//! The `provider_problems` table: each remote provider's current configuration error, written
//! by the workers that meet it and read by `mailroom status` (and `mailroom doctor`).
//!
//! [`worker_health`] connects a worker's [`ProviderHealth`] to the table and to its readiness detail:
//! every occurrence upserts the row (the health registry already folds repeated log lines, and a
//! misconfigured provider is asked at most once per cool-down), a recovery deletes it. Writes
//! run in the background so a slow database never delays the email being handled; a failed
//! write is logged and the next occurrence writes again.

use chrono::{DateTime, Utc};
use provider_http::{HealthEvent, ProviderHealth};
use serde::Serialize;
use sqlx::PgPool;

/// One row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProviderProblemRow {
    /// The provider (`gemini`, `anthropic`, `openai`, …).
    pub provider: String,
    /// What it was used for (`classify`, `generate`, `embed`).
    pub operation: String,
    /// The worker binary that met it last.
    pub worker: String,
    /// HTTP status of the last occurrence.
    pub status: Option<i32>,
    /// The provider's message (redacted by the client).
    pub message: String,
    /// Occurrences since it appeared.
    pub occurrences: i64,
    /// When it appeared.
    pub first_seen: DateTime<Utc>,
    /// When it was last seen.
    pub last_seen: DateTime<Utc>,
}

crate::from_row!(ProviderProblemRow {
    provider,
    operation,
    worker,
    status,
    message,
    occurrences,
    first_seen,
    last_seen
});

/// Records one occurrence.
pub async fn record(
    pool: &PgPool,
    worker: &str,
    provider: &str,
    operation: &str,
    status: Option<u16>,
    message: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO provider_problems (provider, operation, worker, status, message)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (provider, operation) DO UPDATE
         SET worker = EXCLUDED.worker, status = EXCLUDED.status, message = EXCLUDED.message,
             occurrences = provider_problems.occurrences + 1, last_seen = now()",
    )
    .bind(provider)
    .bind(operation)
    .bind(worker)
    .bind(status.map(i32::from))
    .bind(message)
    .execute(pool)
    .await
    .map(drop)
}

/// Forgets the problem of `provider` for `operation` (it answered again).
pub async fn clear(pool: &PgPool, provider: &str, operation: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM provider_problems WHERE provider = $1 AND operation = $2")
        .bind(provider)
        .bind(operation)
        .execute(pool)
        .await
        .map(drop)
}

/// The current problems, most recent first; `None` when the table does not exist (a database
/// older than this binary).
pub async fn list(pool: &PgPool) -> Result<Option<Vec<ProviderProblemRow>>, sqlx::Error> {
    if !crate::status::table_exists(pool, "provider_problems").await? {
        return Ok(None);
    }
    sqlx::query_as("SELECT * FROM provider_problems ORDER BY last_seen DESC, provider, operation")
        .fetch_all(pool)
        .await
        .map(Some)
}

/// A worker's provider health, kept in step with the table and its readiness detail: `detail`
/// is called with the current one-line summary (or `None` once every provider is fine) after
/// each event. Must be called inside a Tokio runtime.
pub fn worker_health(
    pool: PgPool,
    worker: &'static str,
    detail: impl Fn(Option<String>) + Send + Sync + 'static,
) -> ProviderHealth {
    let health = ProviderHealth::default();
    health.on_event(move |health, event| {
        detail(health.summary());
        let pool = pool.clone();
        // Owned copies: the write outlives the event.
        let problem = match event {
            HealthEvent::Misconfigured(problem) => Ok(problem.clone()),
            HealthEvent::Recovered { provider, operation } => Err((provider.to_owned(), operation.to_owned())),
        };
        tokio::spawn(async move {
            let written = match &problem {
                Ok(p) => record(&pool, worker, &p.provider, &p.operation, p.status, &p.message).await,
                Err((provider, operation)) => clear(&pool, provider, operation).await,
            };
            if let Err(error) = written {
                tracing::warn!(%error, "could not record a provider's configuration error in provider_problems");
            }
        });
    });
    health
}
