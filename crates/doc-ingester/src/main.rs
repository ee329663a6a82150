//! `doc-ingester`: parse flags, load settings, set up telemetry, run. The same binary, started
//! with a hidden subcommand, is the isolated PDF extractor (before any runtime starts).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(doc_ingester::extract::CHILD_COMMAND) {
        return doc_ingester::extract::child_main(&args[1..]);
    }
    let loaded = pipeline_core::settings::config_arg(&args)
        .and_then(|path| pipeline_core::Settings::load(path.as_deref()).map_err(|e| e.to_string()));
    let settings = match loaded {
        Ok(s) => s,
        Err(e) => {
            eprintln!("doc-ingester: {e}");
            return ExitCode::from(2);
        }
    };
    pipeline_core::telemetry::init_tracing(&settings.telemetry);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(doc_ingester::run(settings, pipeline_core::shutdown::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "doc-ingester failed.");
            ExitCode::FAILURE
        }
    }
}
