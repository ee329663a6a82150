//! `rag-generator`: parse flags, load settings, set up telemetry, run.

fn main() -> std::process::ExitCode {
    pipeline_core::binary::main("rag-generator", env!("CARGO_PKG_DESCRIPTION"), rag_generator::run)
}
