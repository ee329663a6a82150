//! Fault injection: "no email lost, none answered twice, nothing stuck", proved on the real
//! broker, database and cache with the real worker binaries.
//!
//! Each scenario starts the whole email path — Maildir `poller` → `classifier` →
//! `rag-generator` → `sender` with its Maildir outbox — on the offline providers, with the
//! sample knowledge base ingested through the upload API and the document ingester
//! ([`pipeline`]). It feeds at least 2,000 emails of a realistic mix ([`mailbox`]), breaks
//! something mid-run, and then checks the ledger ([`ledger`]): every email in exactly one
//! terminal state (replied once, drafted once, classified not-support, or dead-lettered with a
//! reason), exactly one outbox file per reply, and every queue of the vhost — work, retry delay
//! and dead-letter — empty at the end.
//!
//! - [`kills`]: every worker type SIGKILLed at random moments, several times, and restarted;
//! - [`broker`]: the broker closes every connection (management API), then restarts
//!   (`rabbitmqctl stop_app` / `start_app`);
//! - [`datastores`]: PostgreSQL down for 20 s, then Redis restarted (its data gone);
//! - [`llm`]: a remote LLM that answers 30% of calls with 429/503 and some with malformed JSON,
//!   behind a provider that is down for the whole run;
//! - [`backlog`]: a backlog of over 10,000 emails in `emails.to_classify` for a classifier that
//!   starts late, drained most urgent first;
//! - [`ledger_check`]: the check itself fails when one reply is deleted or delivered twice
//!   within one second, one send log row goes missing, one ack is dropped or one email is dead-lettered on top of being
//!   answered.
//!
//! The scenarios stop and restart services every other test uses, so this binary runs on its own,
//! after the rest of the suite and one test at a time (`--test-threads 1`; docs/TESTING.md,
//! "Running the tests"). Each outage is a guard ([`services::Outage`]) that brings its service
//! back, and waits until it is healthy, even when the scenario fails half-way (tested in
//! [`services`]).
//!
//! Randomness (which worker is killed when) comes from one seed per scenario, printed at the
//! start; `MAILROOM_FAULTS_SEED=<n>` repeats a run. Worker logs are in the harness's log
//! directory (`$TMPDIR/mailroom-test-logs`) and listed when a check fails.

mod backlog;
mod broker;
mod datastores;
mod fake_llm;
mod kills;
mod ledger;
mod ledger_check;
mod llm;
mod mailbox;
mod pipeline;
mod services;

use std::time::Duration;

/// Emails per scenario: the floor the resilience requirement sets.
pub(crate) const EMAILS: usize = 2_000;

/// How long a scenario may take to settle once everything is fed.
pub(crate) const SETTLE: Duration = Duration::from_secs(300);

/// How long the pipeline may take to settle after the last outage of a scenario ended: the
/// longest retry delay (20 s) plus the work still queued. A worker that needs longer is stuck
/// in some backoff of its own.
pub(crate) const RECOVERY: Duration = Duration::from_secs(45);

/// The scenario's random seed: `MAILROOM_FAULTS_SEED`, or the clock.
pub(crate) fn seed(scenario: &str) -> u64 {
    let seed = std::env::var("MAILROOM_FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
    });
    eprintln!("[faults] {scenario}: seed {seed} (MAILROOM_FAULTS_SEED={seed} repeats it)");
    seed
}
