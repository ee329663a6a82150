//! `upload-api`: parse flags, load settings, set up telemetry, serve.

use std::process::ExitCode;

use pipeline_core::settings::{Settings, config_arg};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match config_arg(&args).and_then(|path| Settings::load(path.as_deref()).map_err(|e| e.to_string())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("upload-api: {e}");
            return ExitCode::from(2);
        }
    };
    pipeline_core::telemetry::init_tracing(&settings.telemetry);
    match upload_api::run(settings, pipeline_core::shutdown::signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "upload-api failed.");
            ExitCode::FAILURE
        }
    }
}
