//! `sender`: parse flags, load settings, set up telemetry, run.

fn main() -> std::process::ExitCode {
    pipeline_core::binary::main(sender::NAME, env!("CARGO_PKG_DESCRIPTION"), sender::run)
}
