//! `upload-api`: parse flags, load settings, set up telemetry, run.

fn main() -> std::process::ExitCode {
    pipeline_core::binary::main("upload-api", upload_api::run)
}
