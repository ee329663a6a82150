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
    pipeline_core::telemetry::init_tracing(&settings.telemetry);
    match mailroom::run(cli, settings).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
