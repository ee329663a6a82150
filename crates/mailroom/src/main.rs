//! `mailroom`: parse flags, load settings, set up logging, run the command.

use std::process::ExitCode;

use clap::Parser;
use mailroom::Cli;
use pipeline_core::Settings;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    // The demo talks to the user itself; only problems from the libraries belong beside it.
    let mut telemetry = settings.telemetry.clone();
    if matches!(cli.command, mailroom::Command::Demo(_)) {
        telemetry.level = "warn".into();
    }
    // `status` and `dlq` declare queues passively to read their depths; the broker answers a
    // missing queue by closing the channel, which lapin logs as an ERROR per queue although the
    // command handles it and reports the queue as missing itself.
    if matches!(
        cli.command,
        mailroom::Command::Status { .. } | mailroom::Command::Dlq { .. } | mailroom::Command::Doctor { .. }
    ) {
        telemetry.level = format!("{},lapin::channel=off", telemetry.level);
    }
    // `token` migrates the database first; PostgreSQL's notices about what already exists
    // would bury the one line that matters (the token is printed once).
    if matches!(cli.command, mailroom::Command::Token { .. }) {
        telemetry.level = format!("{},sqlx::postgres::notice=warn", telemetry.level);
    }
    pipeline_core::telemetry::init_tracing(&telemetry);
    match mailroom::run(cli, settings).await {
        Ok(code) => code,
        Err(e) => {
            // One line: contexts that quote their cause would otherwise repeat it; the raw
            // chain is there for `RUST_LOG=debug`.
            tracing::debug!(chain = %pipeline_core::binary::full_chain(e.as_ref()), "Error chain.");
            eprintln!("error: {}", pipeline_core::binary::error_line(e.as_ref()));
            ExitCode::from(2)
        }
    }
}
