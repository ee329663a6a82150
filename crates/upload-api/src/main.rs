//! `upload-api`: parse flags, load settings, set up telemetry, run.

fn main() -> std::process::ExitCode {
    pipeline_core::binary::main("upload-api", env!("CARGO_PKG_DESCRIPTION"), upload_api::run)
}
