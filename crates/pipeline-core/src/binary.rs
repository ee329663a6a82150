//! The `main` every Mailroom worker shares: parse the flags (`--config FILE`, `--help`,
//! `--version`), load the settings, set up logging, then run the binary's `run(settings,
//! shutdown)` on a multi-threaded runtime with SIGTERM/SIGINT as the shutdown signal. Errors are
//! reported as one line and turned into the exit code.
//!
//! Also the one-line rendering of an error chain ([`error_line`]) the `mailroom` CLI uses too.

use std::error::Error;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser};

use crate::settings::{LogFormat, Settings};

/// The shutdown future handed to `run`.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a worker's settings come from, shown under its `--help`.
const SETTINGS_HELP: &str = "Settings: the compiled-in config/default.toml, then --config FILE (or $MAILROOM_CONFIG), \
                             then MAILROOM__SECTION__KEY environment variables. Logs go to stderr; RUST_LOG \
                             overrides [telemetry] level.";

/// The flags every worker accepts.
#[derive(Debug, Parser)]
#[command(version, after_help = SETTINGS_HELP)]
pub struct WorkerArgs {
    /// Settings file layered over config/default.toml (default: $MAILROOM_CONFIG; MAILROOM__SECTION__KEY
    /// variables win over both).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl WorkerArgs {
    /// Parses `args` (the program name first) for the worker `name`, described by `about`.
    /// `--help` and `--version` are errors of kind `DisplayHelp`/`DisplayVersion`; clap's
    /// `Error::exit` prints them on stdout with exit 0, and bad flags with usage and exit 2.
    pub fn try_parse_for<I, T>(name: &'static str, about: &'static str, args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        // The name is the binary's, not pipeline-core's, in usage and `--version`; the version is
        // the workspace's, which every crate shares.
        let mut command = Self::command().name(name).bin_name(name).about(about);
        let matches = command.try_get_matches_from_mut(args)?;
        Self::from_arg_matches(&matches).map_err(|e| e.format(&mut command))
    }
}

/// Runs a worker: `--help`/`--version` exit 0, bad flags or settings exit 2, a failing `run`
/// exits 1, a clean stop 0. `about` is the worker's one-line description for `--help`.
pub fn main<F, Fut, E>(name: &'static str, about: &'static str, run: F) -> ExitCode
where
    F: FnOnce(Settings, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: AsRef<dyn Error + 'static>,
{
    let args = WorkerArgs::try_parse_for(name, about, std::env::args_os()).unwrap_or_else(|e| e.exit());
    let settings = match Settings::load(args.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {}", error_line(&e));
            return ExitCode::from(2);
        }
    };
    let format = settings.telemetry.format;
    crate::telemetry::init_tracing(&settings.telemetry);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings, Box::pin(crate::shutdown::signal()))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report_fatal(name, format, e.as_ref());
            ExitCode::FAILURE
        }
    }
}

/// Reports the error a worker stopped with. JSON logs get it as one log event, so a log
/// collector sees it like every other line; human output gets the plain `error: …` line a
/// person reads first. The whole chain, repetitions included, is a debug event (`RUST_LOG`).
fn report_fatal(name: &str, format: LogFormat, error: &(dyn Error + 'static)) {
    tracing::debug!(binary = name, chain = %full_chain(error), "Error chain.");
    let line = error_line(error);
    match format {
        LogFormat::Json => tracing::error!(binary = name, error = %line, "Stopped with an error."),
        LogFormat::Human => eprintln!("error: {line}"),
    }
}

/// An error and its causes as one line, `outer: cause: root`, leaving out a cause whose text
/// the line already holds. Errors that quote their source (`#[error("…: {0}")]` with
/// `#[source]`/`#[from]`), wrapped again as context, otherwise print the same message two or
/// three times over.
pub fn error_line(error: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    for link in chain(error) {
        let text = link.to_string();
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}

/// Every link of the chain joined with `: `, nothing left out (what `{:#}` of `anyhow` shows).
pub fn full_chain(error: &(dyn Error + 'static)) -> String {
    chain(error).map(|e| e.to_string()).collect::<Vec<_>>().join(": ")
}

fn chain<'a>(error: &'a (dyn Error + 'static)) -> impl Iterator<Item = &'a (dyn Error + 'static)> {
    std::iter::successors(Some(error), |e| (*e).source())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message with an optional source, like a `thiserror` error or an `anyhow` context.
    #[derive(Debug)]
    struct Link(String, Option<Box<Link>>);

    impl std::fmt::Display for Link {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl Error for Link {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn Error + 'static))
        }
    }

    fn links(texts: &[&str]) -> Link {
        texts.iter().rev().fold(None, |source, text| Some(Link((*text).to_owned(), source.map(Box::new)))).expect("one")
    }

    #[test]
    fn a_cause_the_message_already_quotes_is_left_out() {
        let root = "NOT_FOUND - no queue 'x' in vhost 'v'";
        let error = links(&[&format!("queue not found: {root}"), &format!("queue not found: {root}"), root]);
        assert_eq!(error_line(&error), format!("queue not found: {root}"));
        assert_eq!(full_chain(&error).matches(root).count(), 3, "the raw chain repeats it");
    }

    #[test]
    fn distinct_causes_are_all_kept_in_order() {
        let error = links(&["cannot start the consumer", "cannot connect to RabbitMQ", "connection refused"]);
        assert_eq!(error_line(&error), "cannot start the consumer: cannot connect to RabbitMQ: connection refused");
    }

    #[test]
    fn help_and_version_are_answered_and_unknown_flags_rejected() {
        let parse = |args: &[&str]| WorkerArgs::try_parse_for("classifier", "Classifies.", args.iter().copied());
        let help = parse(&["classifier", "--help"]).expect_err("help is printed, not run");
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
        assert_eq!(help.exit_code(), 0);
        let text = help.render().to_string();
        assert!(text.contains("Usage: classifier") && text.contains("--config <FILE>"), "{text}");
        let version = parse(&["classifier", "--version"]).expect_err("version is printed, not run");
        assert_eq!(version.render().to_string().trim(), format!("classifier {}", env!("CARGO_PKG_VERSION")));
        let unknown = parse(&["classifier", "--frobnicate"]).expect_err("unknown flag");
        assert_eq!(unknown.exit_code(), 2);
        assert!(unknown.render().to_string().contains("Usage: classifier"));
        let args = parse(&["classifier", "--config", "x.toml"]).expect("config");
        assert_eq!(args.config.as_deref(), Some(std::path::Path::new("x.toml")));
    }
}
