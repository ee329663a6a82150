//! `classifier`: parse flags, load settings, set up telemetry, run.

use std::process::ExitCode;

use pipeline_core::settings::{Settings, config_arg};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match config_arg(&args).and_then(|path| Settings::load(path.as_deref()).map_err(|e| e.to_string())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("classifier: {e}");
            return ExitCode::from(2);
        }
    };
    pipeline_core::telemetry::init_tracing(&settings.telemetry);
    match classifier::run(settings, pipeline_core::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "classifier failed.");
            ExitCode::FAILURE
        }
    }
}
