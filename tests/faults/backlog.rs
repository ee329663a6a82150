//! Scenario e: a slow consumer. The classifier is not running while mail piles up in
//! `emails.to_classify` — 6,000 emails through the poller, in six deliveries (priorities 5, 7,
//! 8 and 10 from its urgent-word and VIP rules; each pass publishes its batch most urgent first,
//! so across passes the queue receives the priorities interleaved), and 5,000 more published
//! straight to the queue at random priorities 1–10, the levels the poller never assigns
//! included — until it holds over 10,000. Then the classifier starts and the whole backlog
//! drains through the rest of the pipeline.
//!
//! What must hold: the ledger, as everywhere, and the priority order: among emails queued
//! together (here, all of them), a higher priority is classified before a lower one. The
//! classifier holds at most `prefetch` (8) deliveries and handles `concurrency` (8) at once, so
//! an email may see at most that many lower-priority emails classified before it; the order is
//! read from `classifications.created_at`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::pipeline::{Options, Pipeline};
use crate::{EMAILS, SETTLE, seed, services};

/// Emails through the poller.
const POLLED: usize = 3 * EMAILS;
/// Emails published straight to the queue on top of those.
const DIRECT: usize = 5_000;
/// The classifier's prefetch plus concurrency (`[workers.classifier]` in the defaults): how far
/// out of priority order handling may complete.
const WINDOW: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_ten_thousand_drains_most_urgent_first() {
    services::assert_all_healthy();
    let mut rng = fastrand::Rng::with_seed(seed("backlog"));
    let mut p = Pipeline::start(Options { delayed: vec!["classifier"], ..Options::default() }).await;
    let started = Instant::now();

    // The poller's share first, delivery by delivery (each taken in before the next arrives).
    let deliveries = 6;
    for wave in 0..deliveries {
        let range = wave * POLLED / deliveries..(wave + 1) * POLLED / deliveries;
        let want = range.end;
        p.feed(range);
        let pool = p.pool.clone();
        mailroom_tests::wait_for(Duration::from_secs(120), "the poller to take in a delivery", || {
            let pool = pool.clone();
            async move {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM mailbox_messages WHERE agent_email = $1 AND state <> 'claimed'",
                )
                .bind(crate::mailbox::AGENT)
                .fetch_one(&pool)
                .await
                .ok()?;
                (n as usize >= want).then_some(())
            }
        })
        .await;
    }
    let polled_at = started.elapsed();
    let mut priorities: HashMap<String, u8> = p.publish_direct(POLLED..POLLED + DIRECT, |_| rng.u8(1..=10)).await;
    let rows: Vec<(String, Option<i16>)> = sqlx::query_as(
        "SELECT mailbox_id, priority FROM mailbox_messages WHERE agent_email = $1 AND state = 'published' \
             AND message_id <> 'test-history'",
    )
    .bind(crate::mailbox::AGENT)
    .fetch_all(&p.pool)
    .await
    .expect("poller priorities");
    for (id, priority) in rows {
        priorities.insert(id, u8::try_from(priority.unwrap_or(0)).unwrap_or(0));
    }
    let backlog = p.exact_depth("emails.to_classify").await.expect("queue depth");
    eprintln!(
        "[faults] backlog: {backlog} emails waiting in emails.to_classify after {:.1} s (the poller's {POLLED} in {:.1} s)",
        started.elapsed().as_secs_f64(),
        polled_at.as_secs_f64()
    );
    assert!(backlog >= 10_000, "the backlog is over 10,000: {backlog}");

    let drain_started = Instant::now();
    p.spawn("classifier");
    p.fed_at = Some(drain_started);
    let report = p.finish(SETTLE * 2).await;
    eprintln!(
        "[faults] backlog: {} emails drained in {:.1} s after the classifier started; whole scenario {:.1} s",
        p.fed.len(),
        drain_started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    report.assert_clean();

    // Priority order, from the order the classifier recorded its verdicts.
    let order: Vec<(String,)> =
        sqlx::query_as("SELECT email_id FROM classifications WHERE agent_email = $1 ORDER BY created_at, email_id")
            .bind(crate::mailbox::AGENT)
            .fetch_all(&p.pool)
            .await
            .expect("classification order");
    // The backlog held the quiet mailbox's few emails too.
    assert_eq!(
        order.len() + crate::pipeline::REGISTERED_QUIET_MAIL,
        backlog as usize,
        "every queued email classified once"
    );
    let mut seen = [0usize; 11];
    let mut worst = (0usize, String::new());
    for (id,) in &order {
        let priority = usize::from(priorities[id]);
        let overtaken_by_lower: usize = seen[1..priority].iter().sum();
        if overtaken_by_lower > worst.0 {
            worst = (overtaken_by_lower, id.clone());
        }
        seen[priority] += 1;
    }
    eprintln!(
        "[faults] backlog: per priority {:?}; at most {} lower-priority emails classified before a higher one ({})",
        &seen[1..],
        worst.0,
        worst.1
    );
    assert!(
        worst.0 <= WINDOW,
        "{} lower-priority emails were classified before {} (allowed: {WINDOW}, the classifier's prefetch + concurrency)",
        worst.0,
        worst.1
    );
}
