//! What the binaries print when a person or a script reads it: every worker answers `--help`
//! and `--version` and refuses an unknown flag; output sent to a pipe carries no colour codes;
//! a fatal error is one `error:` line that says its message once.

use mailroom::procs::WORKERS;
use mailroom_tests::{TestVhost, bin_path, free_port, run_split};
use pipeline_core::worker_env::env_var;

/// The start of an ANSI escape sequence (colour, cursor movement).
const ESCAPE: &str = "\x1b[";

/// An empty `NO_COLOR` counts as unset (<https://no-color.org>): a `NO_COLOR` in the test
/// runner's environment must not hide colour codes the pipe alone should have prevented.
fn colour_allowed() -> (&'static str, String) {
    ("NO_COLOR", String::new())
}

fn assert_plain(what: &str, stdout: &str, stderr: &str) {
    assert!(!stdout.contains(ESCAPE), "{what}: escape codes on piped stdout: {stdout:?}");
    assert!(!stderr.contains(ESCAPE), "{what}: escape codes on piped stderr: {stderr:?}");
}

#[tokio::test]
async fn every_worker_answers_help_and_version_and_refuses_unknown_flags() {
    let version = env!("CARGO_PKG_VERSION");
    for worker in WORKERS {
        let bin = bin_path(worker);
        let (code, stdout, stderr) = run_split(&bin, &["--help"], &[colour_allowed()]).await;
        assert_eq!(code, 0, "{worker} --help: {stdout}{stderr}");
        assert!(stdout.contains(&format!("Usage: {worker} [OPTIONS]")), "{worker} --help: {stdout}");
        assert!(stdout.contains("--config <FILE>") && stdout.contains("--version"), "{worker} --help: {stdout}");
        assert_plain(&format!("{worker} --help"), &stdout, &stderr);

        let (code, stdout, stderr) = run_split(&bin, &["--version"], &[]).await;
        assert_eq!(code, 0, "{worker} --version: {stdout}{stderr}");
        assert_eq!(stdout.trim(), format!("{worker} {version}"), "{worker} --version");

        let (code, stdout, stderr) = run_split(&bin, &["--no-such-flag"], &[colour_allowed()]).await;
        assert_eq!(code, 2, "{worker} --no-such-flag: {stdout}{stderr}");
        assert!(stderr.contains("--no-such-flag") && stderr.contains(&format!("Usage: {worker}")), "{stderr}");
        assert_plain(&format!("{worker} --no-such-flag"), &stdout, &stderr);
    }
}

#[tokio::test]
async fn doc_ingester_still_runs_as_its_own_pdf_extractor() {
    // The hidden child command is not a flag the parser knows; it must reach the extractor,
    // which answers a wrong argument count with its own usage line.
    let (code, _, stderr) = run_split(&bin_path("doc-ingester"), &[doc_ingester::extract::CHILD_COMMAND], &[]).await;
    assert_ne!(code, 0);
    assert!(stderr.contains(&format!("usage: {}", doc_ingester::extract::CHILD_COMMAND)), "{stderr}");
}

#[tokio::test]
async fn a_missing_queue_is_one_plain_line() {
    // A vhost without the topology: the dead-letter queue does not exist.
    let vhost = TestVhost::create().await;
    let env = [(env_var("amqp.url"), vhost.amqp_url()), colour_allowed()];
    let (code, stdout, stderr) = run_split(&bin_path("mailroom"), &["dlq", "list", "--json"], &env).await;
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_plain("dlq list", &stdout, &stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line, no log noise: {stderr}");
    assert!(lines[0].starts_with("error: queue ") && lines[0].contains("does not exist"), "{stderr}");
    assert_eq!(stderr.matches("NOT_FOUND").count(), 1, "the broker's answer once: {stderr}");
}

#[tokio::test]
async fn a_fatal_error_is_said_once_and_logs_in_a_pipe_are_plain() {
    // Nothing listens there: connecting fails at once.
    let port = free_port();
    let db_url = format!("postgres://postgres:postgres@127.0.0.1:{port}/mailroom");
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:{port}/");

    // The CLI, through a path that is not `dlq` or `status` (they word their own errors).
    let env = [(env_var("database.url"), db_url.clone()), colour_allowed()];
    let (code, stdout, stderr) = run_split(&bin_path("mailroom"), &["migrate"], &env).await;
    assert_ne!(code, 0, "{stdout}{stderr}");
    assert_plain("mailroom migrate", &stdout, &stderr);
    assert_once("mailroom migrate", &stderr);

    // A worker that cannot reach its database stops with one line too.
    let env = [(env_var("database.url"), db_url.clone()), (env_var("amqp.url"), amqp_url.clone()), colour_allowed()];
    let (code, stdout, stderr) = run_split(&bin_path("classifier"), &[], &env).await;
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_plain("classifier", &stdout, &stderr);
    assert_once("classifier", &stderr);

    // With every log line on, none is coloured: stderr is a pipe. (Without the terminal check
    // the formatter colours each level and field name.)
    let env = [
        (env_var("database.url"), db_url),
        (env_var("amqp.url"), amqp_url),
        ("RUST_LOG", "debug".to_owned()),
        colour_allowed(),
    ];
    for (bin, args) in [("mailroom", &["dlq", "list"][..]), ("classifier", &[])] {
        let (code, stdout, stderr) = run_split(&bin_path(bin), args, &env).await;
        assert_ne!(code, 0, "{bin}: {stdout}{stderr}");
        assert!(stderr.contains("DEBUG"), "{bin} logged at debug: {stderr}");
        assert_plain(bin, &stdout, &stderr);
    }
}

/// `stderr` is one `error: …` line whose first clause does not come back later in it.
fn assert_once(what: &str, stderr: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line: {stderr}");
    let message = lines[0].strip_prefix("error: ").unwrap_or_else(|| panic!("{what}: an error line: {stderr}"));
    let first = message.split(": ").next().expect("a message");
    assert_eq!(message.matches(first).count(), 1, "{what}: said once: {message}");
    let last = message.rsplit(": ").next().expect("a message");
    assert_eq!(message.matches(last).count(), 1, "{what}: the cause said once: {message}");
}
