//! `doc-ingester`: parse flags, load settings, set up telemetry, run. The same binary, started
//! with a hidden subcommand, is the isolated PDF extractor (before any runtime starts).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(doc_ingester::extract::CHILD_COMMAND) {
        return doc_ingester::extract::child_main(&args[1..]);
    }
    pipeline_core::binary::main("doc-ingester", env!("CARGO_PKG_DESCRIPTION"), doc_ingester::run)
}
