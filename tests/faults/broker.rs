//! Scenario b: the broker takes the workers' connections away twice over. First it closes every
//! client connection of the vhost (management API `DELETE /api/connections/{name}`, what an
//! operator or a broker under memory pressure does), three times at short intervals; later the
//! whole broker application stops and starts again (`rabbitmqctl stop_app` / `start_app`),
//! taking every connection, channel and unconfirmed publish with it for several seconds.
//!
//! What must hold: unacknowledged deliveries come back (redelivered, handled idempotently),
//! publishes whose confirm was lost are repeated under the same message id (the poller
//! releases its claims; the stages republish their stored records), persistent messages in the
//! durable queues survive the restart, and every worker reconnects by itself.

use std::time::{Duration, Instant};

use crate::pipeline::{Options, Pipeline};
use crate::services::{self, Outage, Service};
use crate::{EMAILS, RECOVERY, SETTLE, seed};

/// Closes every client connection of `vhost` from the broker's side, once the four workers'
/// connections are there (after the previous round they reconnect, and the management API
/// lists a new connection a few seconds late); returns how many it closed.
async fn close_every_connection(vhost: &str) -> usize {
    let mgmt = mailroom_tests::mgmt();
    let connections = mailroom_tests::wait_for(Duration::from_secs(60), "the workers' connections", || {
        let mgmt = mgmt.clone();
        async move { mgmt.connections(vhost).await.ok().filter(|c| c.len() >= 4) }
    })
    .await;
    let mut closed = 0;
    for c in &connections {
        if mgmt.close_connection(&c.name).await.is_ok() {
            closed += 1;
        }
    }
    closed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_by_the_broker_and_a_broker_restart_lose_nothing() {
    services::assert_all_healthy();
    let mut rng = fastrand::Rng::with_seed(seed("broker"));
    let mut p = Pipeline::start(Options::default()).await;
    let started = Instant::now();
    p.feed(0..EMAILS);

    for round in 0..3 {
        let at = EMAILS * (15 + 10 * round) / 100 + rng.usize(0..EMAILS / 20);
        assert!(p.wait_progress(at, SETTLE).await, "progress {at} before closing connections");
        let closed = close_every_connection(&p.vhost.name).await;
        eprintln!(
            "[faults] {:>5.1} s: broker closed {closed} connections (progress {:?})",
            started.elapsed().as_secs_f64(),
            p.progress().await
        );
        assert!(closed >= 4, "the workers' connections were there to close: {closed}");
    }

    let at = EMAILS * 60 / 100 + rng.usize(0..EMAILS / 20);
    assert!(p.wait_progress(at, SETTLE).await, "progress {at} before the broker restart");
    eprintln!(
        "[faults] {:>5.1} s: stopping the broker (progress {:?})",
        started.elapsed().as_secs_f64(),
        p.progress().await
    );
    let outage = Outage::begin(Service::Broker).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let down = outage.end().await;
    eprintln!("[faults] {:>5.1} s: broker back after {:.1} s", started.elapsed().as_secs_f64(), down.as_secs_f64());

    // Once the service is back, the pipeline must catch up by itself within RECOVERY: the
    // longest retry delay plus the work still queued, not a reconnection backoff of minutes.
    let back = Instant::now();
    let caught_up = p.wait_progress(EMAILS, SETTLE).await;
    let recovery = back.elapsed();
    eprintln!("[faults] broker: settled {:.1} s after the service came back", recovery.as_secs_f64());
    let report = p.finish(SETTLE).await;
    eprintln!("[faults] broker: whole scenario {:.1} s", started.elapsed().as_secs_f64());
    report.assert_clean();
    assert!(caught_up && recovery < RECOVERY, "settled {recovery:?} after the outage (allowed: {RECOVERY:?})");
}
