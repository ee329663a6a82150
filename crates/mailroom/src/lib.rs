//! The `mailroom` operator CLI: the one-command demo, running the workers locally, applying and
//! verifying the broker topology, migrating the database, ingesting documents, status, and dead
//! letters, the effective settings, the performance bench, the retrieval evaluation, a Gmail
//! mailbox's OAuth consent (`gmail authorize`), and the upload API's scoped tokens (`token`).

pub mod bench_cmd;
pub mod broker_admin;
pub mod classify_eval;
pub mod config_cmd;
pub mod demo_cmd;
pub mod demo_preflight;
pub mod dlq_cmd;
pub mod doctor;
pub mod eval_cmd;
pub mod gmail_cmd;
pub mod ingest_cmd;
pub mod mailbox_cmd;
pub mod procs;
pub mod retrieval_eval;
pub mod sandbox;
pub mod status_cmd;
pub mod token_cmd;
pub mod topology_cmd;
pub mod up_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pipeline_core::Settings;

/// Mailroom's operator tool.
#[derive(Debug, Parser)]
#[command(name = "mailroom", version, about = "Operate a Mailroom deployment")]
pub struct Cli {
    /// Settings file layered over config/default.toml (env MAILROOM__SECTION__KEY wins over both).
    #[arg(long, global = true, env = "MAILROOM_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on the offline defaults over the bundled examples (own vhost and
    /// database), then print what became of each email.
    Demo(demo_cmd::DemoArgs),
    /// Measure the pipeline on this machine (broker limit, offline and slow-LLM throughput,
    /// latency at half load, peak RSS per worker) in its own vhost and database.
    Bench(bench_cmd::BenchArgs),
    /// Measure retrieval (`eval retrieval`: recall@k and MRR of vector, lexical and hybrid
    /// retrieval over real PDF manuals, per language, and off-topic rejection).
    Eval {
        /// What to evaluate.
        #[command(subcommand)]
        action: eval_cmd::EvalAction,
    },
    /// Run every worker as a child process (counts from --scale or [up]); Ctrl-C stops them.
    Up(up_cmd::UpArgs),
    /// Declare or check the broker topology (exchanges, queues, bindings, retry queues).
    Topology {
        /// apply or verify.
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Create the database if missing and apply pending migrations.
    Migrate,
    /// Upload documents through the upload API and follow them until ready or failed.
    Ingest {
        /// PDF, text or Markdown files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The support mailbox the documents belong to.
        #[arg(long)]
        agent: String,
        /// Upload API base URL (default: http://<upload_api.listen>).
        #[arg(long)]
        url: Option<String>,
        /// Give up waiting after this many seconds.
        #[arg(long, default_value_t = 600)]
        timeout_secs: u64,
    },
    /// Queue depths and rates, dead letters by error type, documents and emails by state.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Print the effective settings (config/default.toml, then the file, then MAILROOM__…
    /// variables) as TOML, with every secret redacted.
    Config {
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
    /// Check every configured external service with a cheap real call (database, Redis,
    /// broker login and permissions, LLM models, embedder, Pinecone, IMAP, SMTP, Gmail); one
    /// line per check with the fix; exit 1 when one fails.
    Doctor {
        /// Check the broker permissions one binary needs (poller, upload-api, classifier,
        /// rag-generator, sender, doc-ingester), for a deployment with a broker user per role.
        #[arg(long)]
        role: Option<String>,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
    /// Inspect, replay or purge dead letters.
    Dlq {
        /// list, show, replay or purge.
        #[command(subcommand)]
        action: dlq_cmd::DlqAction,
    },
    /// The mailbox registry: the support mailboxes this deployment serves, each with its own
    /// source, sink, credentials (by reference) and sending policy.
    Mailbox {
        /// add, list, show, update, disable or enable.
        #[command(subcommand)]
        action: mailbox_cmd::MailboxAction,
    },
    /// Gmail mailboxes: `authorize` gets a refresh token through Google's consent screen.
    Gmail {
        /// authorize.
        #[command(subcommand)]
        action: gmail_cmd::GmailAction,
    },
    /// The upload API's scoped bearer tokens: create (printed once), list, revoke.
    Token {
        /// create, list or revoke.
        #[command(subcommand)]
        action: token_cmd::TokenAction,
    },
}

/// `mailroom topology …`.
#[derive(Debug, Subcommand)]
pub enum TopologyAction {
    /// Declare everything (idempotent).
    Apply,
    /// Compare the live broker with the topology; exit 1 and print the drift if they differ.
    Verify,
}

/// Runs a parsed command.
pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => demo_cmd::demo(&settings, args).await,
        Command::Bench(args) => bench_cmd::bench(&settings, args).await,
        Command::Up(args) => up_cmd::up(&settings, args).await,
        Command::Eval { action: eval_cmd::EvalAction::Retrieval(args) } => {
            eval_cmd::retrieval(&settings, cli.config.as_deref(), args).await
        }
        Command::Eval { action: eval_cmd::EvalAction::Classify(args) } => {
            classify_eval::classify(&settings, args).await
        }
        Command::Topology { action: TopologyAction::Apply } => topology_cmd::apply(&settings).await,
        Command::Topology { action: TopologyAction::Verify } => topology_cmd::verify(&settings).await,
        Command::Status { json } => status_cmd::status(&settings, json).await,
        Command::Config { json } => config_cmd::print(&settings, json),
        Command::Dlq { action } => dlq_cmd::run(&settings, action).await,
        Command::Doctor { role, json } => doctor::doctor(&settings, role.as_deref(), json).await,
        Command::Gmail { action } => gmail_cmd::run(&settings, action).await,
        Command::Mailbox { action } => mailbox_cmd::run(&settings, action).await,
        Command::Token { action } => token_cmd::run(&settings, action).await,
        Command::Ingest { files, agent, url, timeout_secs } => {
            ingest_cmd::ingest(&settings, &files, &agent, url.as_deref(), std::time::Duration::from_secs(timeout_secs))
                .await
        }
        Command::Migrate => {
            let pool = mailroom_db::connect(&settings.database.url, 2).await?;
            let before = applied_count(&pool).await;
            mailroom_db::migrate(&pool).await?;
            let after = applied_count(&pool).await;
            println!(
                "Database is up to date ({} migration(s) applied now, {} in total).",
                after.saturating_sub(before),
                after
            );
            pool.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn applied_count(pool: &sqlx_pool::PgPool) -> i64 {
    sqlx_pool::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success").fetch_one(pool).await.unwrap_or(0)
}

/// Re-export so this crate does not need its own sqlx dependency line for two calls.
mod sqlx_pool {
    pub(crate) use mailroom_db::sqlx_reexport::{PgPool, query_scalar};
}
