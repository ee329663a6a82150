//! `classifier`: parse flags, load settings, set up telemetry, run.

fn main() -> std::process::ExitCode {
    pipeline_core::binary::main("classifier", env!("CARGO_PKG_DESCRIPTION"), classifier::run)
}
