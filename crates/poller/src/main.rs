//! `poller`: parse flags, load settings, set up telemetry, run.

fn main() -> std::process::ExitCode {
    pipeline_core::binary::main("poller", env!("CARGO_PKG_DESCRIPTION"), poller::run)
}
