//! Mailroom's PostgreSQL layer: connecting (creating the database when it is missing) and
//! applying the migrations under `migrations/`, which are compiled into every binary.
//!
//! Every connection is configured by [`connect_options`], which honours libpq's TLS parameters
//! of the URL (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`; see [`tls`]).

pub mod documents;
pub mod mailboxes;
pub mod person_replies;
pub mod pipeline;
pub mod provider_problems;
pub mod status;
pub mod tls;
pub mod tokens;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use std::borrow::Cow;

use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr as _;

include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The schema: [`MIGRATIONS`], embedded at compile time by `build.rs`, as sqlx's migrator runs
/// them (checksums are the SHA-384 of the SQL, as `sqlx::migrate!` computes them, so databases
/// migrated by earlier releases validate).
pub async fn migrator() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded).await
}

/// The embedded migrations as a source for [`Migrator::new`].
#[derive(Debug)]
struct Embedded;

impl<'s> MigrationSource<'s> for Embedded {
    fn resolve(self) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 's>> {
        let migrations = MIGRATIONS
            .iter()
            .map(|&(version, description, sql)| {
                // sqlx's directive for a migration that must run outside a transaction.
                let no_tx = sql.starts_with("-- no-transaction");
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    no_tx,
                )
            })
            .collect();
        Box::pin(std::future::ready(Ok(migrations)))
    }
}

/// Implements [`sqlx::FromRow`] for a struct by reading each named field from the column of
/// the same name (what `#[derive(FromRow)]` does, without sqlx's proc-macro crate).
#[macro_export]
macro_rules! from_row {
    ($ty:ty { $($field:ident),+ $(,)? }) => {
        impl<'r> ::sqlx::FromRow<'r, ::sqlx::postgres::PgRow> for $ty {
            fn from_row(row: &'r ::sqlx::postgres::PgRow) -> ::std::result::Result<Self, ::sqlx::Error> {
                use ::sqlx::Row as _;
                Ok(Self { $($field: row.try_get(stringify!($field))?),+ })
            }
        }
    };
}

/// A database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL does not parse.
    #[error("invalid database URL: {0}")]
    Url(sqlx::Error),
    /// A TLS file named by the URL (or a `PGSSL*` variable) cannot be read.
    #[error(transparent)]
    TlsFile(#[from] tls::TlsFileError),
    /// The server could not be reached or refused us.
    #[error("cannot connect to PostgreSQL at {url}: {source}{}", tls::hint(&source.to_string()))]
    Connect {
        /// Redacted URL.
        url: String,
        /// The driver error.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error: {0}")]
    Query(#[from] sqlx::Error),
}

impl DbError {
    /// Whether waiting and retrying can help (the server is down or restarting).
    pub fn is_transient(&self) -> bool {
        match self {
            DbError::Connect { .. } => true,
            DbError::Query(e) => is_transient(e),
            _ => false,
        }
    }
}

/// A query that failed, with its fate: the one mapping of database errors every worker uses.
///
/// Transient (`DatabaseUnavailable`, climbs the retry ladder): I/O, TLS, pool exhaustion, the
/// server shutting down or refusing connections, serialisation failures and deadlocks (see
/// [`is_transient`]). Anything else (`DatabaseError`: a constraint, a bad query, a type
/// mismatch) will fail the same way on every retry and is dead-lettered.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct QueryFailed(#[from] pub sqlx::Error);

impl pipeline_core::Classify for QueryFailed {
    fn fate(&self) -> pipeline_core::Fate {
        pipeline_core::Fate::retry_if(is_transient(&self.0))
    }

    fn error_type(&self) -> &'static str {
        error_type(&self.0)
    }
}

/// `DatabaseUnavailable` for a [transient](is_transient) driver error, else `DatabaseError`.
pub fn error_type(e: &sqlx::Error) -> &'static str {
    if is_transient(e) { "DatabaseUnavailable" } else { "DatabaseError" }
}

/// Whether a driver error is worth retrying: I/O, pool exhaustion, or the server shutting down.
pub fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Tls(_) => true,
        // 57P01 admin_shutdown, 57P03 cannot_connect_now, 53300 too_many_connections,
        // 40001 serialization_failure, 40P01 deadlock_detected.
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"))
        }
        _ => false,
    }
}

pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "[unparsable URL]".to_owned(),
    }
}

/// The connection options of `url`: sqlx's parsing (URL parameters, then `PG*` environment
/// variables), with the TLS files checked and libpq's `require` + `sslrootcert` rule applied
/// (see [`tls::apply`]). Every connection of this crate is made from these.
pub fn connect_options(url: &SecretString) -> Result<PgConnectOptions, DbError> {
    let options = PgConnectOptions::from_str(url.expose_secret()).map_err(DbError::Url)?;
    Ok(tls::apply(url.expose_secret(), options)?)
}

/// Creates the database named by `url` if it does not exist, connecting to the server's
/// `postgres` database to do so.
pub async fn create_database_if_missing(url: &SecretString) -> Result<(), DbError> {
    let options = connect_options(url)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let admin = options.clone().database("postgres");
    let mut conn =
        admin.connect().await.map_err(|source| DbError::Connect { url: redact(url.expose_secret()), source })?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        let sql = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
        match sqlx::raw_sql(sqlx::AssertSqlSafe(&*sql)).execute(&mut conn).await {
            Ok(_) => tracing::info!(database = %name, "Created database."),
            // Another process created it between our check and our CREATE.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    conn.close().await?;
    Ok(())
}

/// Drops a database (used by tests and the demo to clean up their own databases).
pub async fn drop_database(url: &SecretString) -> Result<(), DbError> {
    let options = connect_options(url)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut conn = options
        .database("postgres")
        .connect()
        .await
        .map_err(|source| DbError::Connect { url: redact(url.expose_secret()), source })?;
    let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", name.replace('"', "\"\""));
    sqlx::raw_sql(sqlx::AssertSqlSafe(&*sql)).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

/// Connects a pool, creating the database if needed. Rotated TLS files are picked up within
/// [`tls::ROTATION_CHECK`].
pub async fn connect(url: &SecretString, max_connections: u32) -> Result<PgPool, DbError> {
    connect_watching_tls(url, max_connections, tls::ROTATION_CHECK).await
}

/// [`connect`], looking at the TLS files every `tls_check` (tests shorten it).
pub async fn connect_watching_tls(
    url: &SecretString,
    max_connections: u32,
    tls_check: Duration,
) -> Result<PgPool, DbError> {
    create_database_if_missing(url).await?;
    let options = connect_options(url)?;
    let rotation = tls::RotationWatch::new(url.expose_secret(), &options);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection it hands out by default: a second round trip for each
        // statement, the largest share of a worker's database time under load (`mailroom
        // bench`). Only a connection idle for a while is checked now; one in steady use shows a
        // broken link by failing its statement, which the handlers treat as transient.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > Duration::from_secs(1) {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .map_err(|source| DbError::Connect { url: redact(url.expose_secret()), source })?;
    if let Some(rotation) = rotation {
        rotation.spawn(&pool, url, tls_check);
    }
    Ok(pool)
}

/// Applies pending migrations (idempotent; safe when several processes start at once, as sqlx
/// takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    migrator().await?.run(pool).await?;
    Ok(())
}

/// Connects, creating the database if needed, and migrates: what every worker does at start.
pub async fn connect_and_migrate(url: &SecretString, max_connections: u32) -> Result<PgPool, DbError> {
    let pool = connect(url, max_connections).await?;
    migrate(&pool).await?;
    Ok(pool)
}

/// The parts of sqlx the binaries use, so they share this crate's version and features.
pub mod sqlx_reexport {
    pub use sqlx::{PgPool, query, query_as, query_scalar};
}

#[cfg(test)]
mod tests {
    use pipeline_core::{Fate, HandlerError};

    use super::QueryFailed;

    #[test]
    fn an_outage_retries_and_a_refused_query_is_dead_lettered() {
        // The classifier used to mark every database error transient, and the sender named both
        // kinds `DatabaseError`; every worker now goes through this one mapping.
        let outage: HandlerError = QueryFailed(sqlx::Error::Io(std::io::Error::other("reset"))).into();
        assert_eq!((outage.fate, outage.error_type.as_ref()), (Fate::Transient, "DatabaseUnavailable"));
        let refused: HandlerError = QueryFailed(sqlx::Error::ColumnNotFound("x".into())).into();
        assert_eq!((refused.fate, refused.error_type.as_ref()), (Fate::Permanent, "DatabaseError"));
        assert_eq!(refused.source.to_string(), sqlx::Error::ColumnNotFound("x".into()).to_string());
    }
}
