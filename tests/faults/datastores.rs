//! Scenario c: the data stores fail under the running pipeline. PostgreSQL stops for 20 s
//! (`pg_ctlcluster … stop`, fast shutdown: every session is terminated mid-query) and starts
//! again; later Redis shuts down without saving — the send quota, the reply throttle and the
//! embedding cache are gone — and a fresh one starts.
//!
//! What must hold: a database outage shorter than the retry ladder costs no email (transient
//! failures wait in the delay queues; the poller backs off; a sender that delivered but could
//! not complete its send-log row leaves a claim that the lease takeover resolves by finding the
//! reply file), and losing Redis only costs time (the cache is optional; the quota and throttle
//! errors are transient).

use std::time::{Duration, Instant};

use crate::pipeline::{Options, Pipeline};
use crate::services::{self, Outage, Service};
use crate::{EMAILS, RECOVERY, SETTLE, seed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_and_a_redis_restart_lose_nothing() {
    services::assert_all_healthy();
    let mut rng = fastrand::Rng::with_seed(seed("datastores"));
    let mut p = Pipeline::start(Options::default()).await;
    let started = Instant::now();
    p.feed(0..EMAILS);

    let at = EMAILS * 20 / 100 + rng.usize(0..EMAILS / 20);
    assert!(p.wait_progress(at, SETTLE).await, "progress {at} before the database outage");
    eprintln!(
        "[faults] {:>5.1} s: stopping PostgreSQL (progress {:?})",
        started.elapsed().as_secs_f64(),
        p.progress().await
    );
    let outage = Outage::begin(Service::Postgres).await;
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(outage.since.elapsed())).await;
    let down = outage.end().await;
    eprintln!("[faults] {:>5.1} s: PostgreSQL back after {:.1} s", started.elapsed().as_secs_f64(), down.as_secs_f64());
    assert!(down >= Duration::from_secs(20));

    let at = EMAILS * 60 / 100 + rng.usize(0..EMAILS / 20);
    assert!(p.wait_progress(at, SETTLE).await, "progress {at} before the Redis restart");
    eprintln!(
        "[faults] {:>5.1} s: stopping Redis (progress {:?})",
        started.elapsed().as_secs_f64(),
        p.progress().await
    );
    let outage = Outage::begin(Service::Redis).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let down = outage.end().await;
    eprintln!("[faults] {:>5.1} s: Redis back after {:.1} s", started.elapsed().as_secs_f64(), down.as_secs_f64());

    // Once the service is back, the pipeline must catch up by itself within RECOVERY: the
    // longest retry delay plus the work still queued, not a reconnection backoff of minutes.
    let back = Instant::now();
    let caught_up = p.wait_progress(EMAILS, SETTLE).await;
    let recovery = back.elapsed();
    eprintln!("[faults] datastores: settled {:.1} s after the service came back", recovery.as_secs_f64());
    let report = p.finish(SETTLE).await;
    eprintln!("[faults] datastores: whole scenario {:.1} s", started.elapsed().as_secs_f64());
    report.assert_clean();
    assert!(caught_up && recovery < RECOVERY, "settled {recovery:?} after the outage (allowed: {RECOVERY:?})");
}
