//! The `main` every Mailroom binary shares: parse `[--config FILE]`, load the settings, set up
//! logging, then run the binary's `run(settings, shutdown)` on a multi-threaded runtime with
//! SIGTERM/SIGINT as the shutdown signal. Errors are logged and turned into the exit code.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use crate::settings::{Settings, config_arg};

/// The shutdown future handed to `run`.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a binary: exit 2 for bad flags or settings, 1 when `run` fails, 0 after a clean stop.
pub fn main<F, Fut, E>(name: &str, run: F) -> ExitCode
where
    F: FnOnce(Settings, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let args: Vec<String> = std::env::args().skip(1).collect();
    let settings = match config_arg(&args).and_then(|path| Settings::load(path.as_deref()).map_err(|e| e.to_string())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    crate::telemetry::init_tracing(&settings.telemetry);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, Box::pin(crate::shutdown::signal()))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(binary = name, error = %format!("{e:#}"), "Stopped with an error.");
            ExitCode::FAILURE
        }
    }
}
