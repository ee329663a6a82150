//! `mailroom token create|list|revoke`: the upload API's scoped bearer tokens
//! ([`mailroom_db::tokens`]).
//!
//! `create` prints the new token once, alone on stdout (what it is goes to stderr, so
//! `$(mailroom token create …)` captures the token and nothing else); only its hash is stored.
//! `list` shows ids, agents, roles and dates, never a secret or a hash. `revoke` makes the upload
//! API refuse a token (401) from its next request on.

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use mailroom_db::tokens::{self, Revoked, Role, TokenRow};
use pipeline_core::Settings;
use secrecy::ExposeSecret as _;

/// `mailroom token …`.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// Make a token and print it once (only its hash is stored).
    Create(CreateArgs),
    /// List the tokens (id, agent, role, label, dates; never a secret).
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: the upload API refuses it (401) from its next request on.
    Revoke {
        /// Its id, as `list` prints it.
        id: i64,
    },
}

/// `mailroom token create` flags.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The mailbox whose documents the token reaches (required for upload and read, refused
    /// for admin, which reaches every mailbox's).
    #[arg(long)]
    pub agent: Option<String>,
    /// upload (upload, list, show and delete the agent's documents), read (list and show them)
    /// or admin (everything, for every agent).
    #[arg(long, default_value = "upload")]
    pub role: Role,
    /// A note for `token list` (who or what uses it).
    #[arg(long)]
    pub label: Option<String>,
}

/// Runs a `token` subcommand.
pub async fn run(settings: &Settings, action: TokenAction) -> anyhow::Result<ExitCode> {
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 2).await?;
    let result = match action {
        TokenAction::Create(args) => create(&pool, args).await,
        TokenAction::List { json } => list(&pool, json).await,
        TokenAction::Revoke { id } => revoke(&pool, id).await,
    };
    pool.close().await;
    result
}

fn who(row: &TokenRow) -> String {
    row.agent_email.clone().unwrap_or_else(|| "every agent".to_owned())
}

async fn create(pool: &sqlx::PgPool, args: CreateArgs) -> anyhow::Result<ExitCode> {
    let (row, secret) = tokens::create(pool, args.role, args.agent.as_deref(), args.label.as_deref()).await?;
    eprintln!(
        "Created {} token {} for {}. It is shown only this once (only its hash is stored); revoke it with \
         `mailroom token revoke {}`.",
        row.role,
        row.id,
        who(&row),
        row.id
    );
    println!("{}", secret.expose_secret());
    Ok(ExitCode::SUCCESS)
}

fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
}

async fn list(pool: &sqlx::PgPool, json: bool) -> anyhow::Result<ExitCode> {
    let rows = tokens::list(pool).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No tokens (make one with `mailroom token create --agent <mailbox>`).");
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                who(r),
                r.role.clone(),
                r.label.clone().unwrap_or_else(|| "-".to_owned()),
                when(Some(r.created_at)),
                when(r.last_used_at),
                when(r.revoked_at),
            ]
        })
        .collect();
    let header = ["id", "agent", "role", "label", "created", "last used", "revoked"];
    let mut widths = header.map(str::len);
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let padded: Vec<String> = cells.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_owned()
    };
    println!("{}", line(&header));
    for row in &table {
        println!("{}", line(&row.each_ref().map(String::as_str)));
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(pool: &sqlx::PgPool, id: i64) -> anyhow::Result<ExitCode> {
    match tokens::revoke(pool, id).await? {
        Revoked::Now(row) => {
            println!("Revoked {} token {} for {}.", row.role, row.id, who(&row));
            Ok(ExitCode::SUCCESS)
        }
        Revoked::Already(row) => {
            println!("Token {} was already revoked on {}.", row.id, when(row.revoked_at));
            Ok(ExitCode::SUCCESS)
        }
        Revoked::NotFound => anyhow::bail!("no token has id {id} (see `mailroom token list`)"),
    }
}
