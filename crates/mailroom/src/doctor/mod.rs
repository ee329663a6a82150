//! `mailroom doctor`: checks each configured external service with a cheap real call and prints
//! one line per check, with what to fix when it fails.
//!
//! What it checks, each only when the configuration uses it:
//! - PostgreSQL (connect, server version) and Redis (`PING`);
//! - the broker: login and vhost, the topology the roles use (passive declares), and the
//!   user's permissions — a publish nobody receives to each exchange the roles write to, a
//!   consumer opened and cancelled on each queue they read (`--role` narrows it to one binary's
//!   needs, for deployments with one broker user per role);
//! - each remote LLM provider of `llm.providers`: its model lookup, which proves the endpoint,
//!   the key and the model id without spending tokens (a retired model is a 404);
//! - the embedder: one short text embedded, its dimension against `embeddings.dimension` and
//!   the dimension of the vectors already stored; Pinecone's index (`describe_index_stats`);
//! - the mailbox: IMAP login and folder, Gmail token refresh and granted scopes, and what its
//!   sender-authentication settings do (a warning when no server is trusted, so every reply
//!   becomes a draft, or when replies to unauthenticated senders are sent);
//! - the outbox: SMTP EHLO, TLS and AUTH, Gmail token refresh and granted scopes.
//!
//! The exit code is 1 when a check fails (0 when all pass, warn or are skipped); `--json` prints
//! the checks as a JSON array for scripts.

mod broker;
mod mail;
mod models;

use std::process::ExitCode;
use std::time::Duration;

use pipeline_core::Settings;
use serde::Serialize;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The service answered as configured.
    Ok,
    /// It did not; `fix` says what to change.
    Fail,
    /// It works, but likely not as the operator wants; `fix` says what to change. Does not fail
    /// the command.
    Warn,
    /// Not configured, so not checked.
    Skip,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`llm gemini`, `broker permissions`, …).
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// What the service said.
    pub detail: String,
    /// What to change when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A check that passed.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), outcome: Outcome::Ok, detail: detail.into(), fix: None }
    }

    /// A check that failed, with the fix.
    pub fn fail(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name: name.into(), outcome: Outcome::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }

    /// A check that passed with a caveat, and what to change.
    pub fn warn(name: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name: name.into(), outcome: Outcome::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }

    /// A check that was not made.
    pub fn skip(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { name: name.into(), outcome: Outcome::Skip, detail: detail.into(), fix: None }
    }
}

/// Runs `check` within [`CHECK_TIMEOUT`]; a check that takes longer fails with `fix`.
pub(crate) async fn timed(name: &str, fix: &str, check: impl std::future::Future<Output = Vec<Check>>) -> Vec<Check> {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(checks) => checks,
        Err(_) => vec![Check::fail(name, format!("no answer within {} s", CHECK_TIMEOUT.as_secs()), fix)],
    }
}

/// Every check, in report order. `role` narrows the broker permission check to one binary.
pub async fn run_checks(settings: &Settings, role: Option<&str>) -> Vec<Check> {
    let (infra, broker, models, mail) = tokio::join!(
        broker::services(settings),
        broker::broker(settings, role),
        models::checks(settings),
        mail::checks(settings),
    );
    [infra, broker, models, mail].into_iter().flatten().collect()
}

/// Prints the human-readable report.
pub fn print(checks: &[Check]) {
    let width = checks.iter().map(|c| c.name.len()).max().unwrap_or(8);
    for check in checks {
        let mark = match check.outcome {
            Outcome::Ok => "ok  ",
            Outcome::Fail => "FAIL",
            Outcome::Warn => "WARN",
            Outcome::Skip => "skip",
        };
        println!("{mark}  {:<width$}  {}", check.name, check.detail);
        if let Some(fix) = &check.fix {
            println!("      {:<width$}  fix: {fix}", "");
        }
    }
    let failed = checks.iter().filter(|c| c.outcome == Outcome::Fail).count();
    let passed = checks.iter().filter(|c| c.outcome == Outcome::Ok).count();
    let warned = checks.iter().filter(|c| c.outcome == Outcome::Warn).count();
    println!();
    println!("{passed} passed, {failed} failed, {warned} warned, {} skipped", checks.len() - passed - failed - warned);
}

/// `mailroom doctor [--role R] [--json]`: exit 1 when a check failed.
pub async fn doctor(settings: &Settings, role: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    if let Some(role) = role
        && pipeline_core::consumer::used_by(role).is_none()
    {
        let known: Vec<_> = pipeline_core::consumer::binary_names().collect();
        anyhow::bail!("unknown --role {role:?}; one of {}", known.join(", "));
    }
    let checks = run_checks(settings, role).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
    } else {
        print(&checks);
    }
    let failed = checks.iter().any(|c| c.outcome == Outcome::Fail);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
