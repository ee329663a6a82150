//! Scenario a: every worker type SIGKILLed at random moments, several times per run, and
//! restarted by the test. A SIGKILL gives a process no chance to finish anything: a poller dies
//! between its claim, its publish and its ledger update; a classifier or generator between its
//! database record and its publish; a sender between writing the reply file and completing the
//! send log. The recovery paths — the poller's claim timeout and republish under the same
//! message id, the stages' stored records, the sender's lease takeover that first looks for
//! the reply file — must together lose nothing and send nothing twice.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::pipeline::{Options, Pipeline, STAGES};
use crate::services;
use crate::{EMAILS, SETTLE, seed};

/// Kills per worker type.
const ROUNDS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_workers_neither_lose_nor_repeat_a_reply() {
    services::assert_all_healthy();
    let mut rng = fastrand::Rng::with_seed(seed("kills"));
    // Two senders, so a killed sender's claims are taken over by the other one as well as by
    // its own replacement.
    let scale = [("sender", 2)].into_iter().collect();
    let mut p = Pipeline::start(Options { scale, ..Options::default() }).await;
    let started = Instant::now();

    // Every type ROUNDS times, in a random order, each at a random moment while it has work in
    // hand (a poller with mail in `new/`, a consumer with deliveries in flight). Mail arrives in
    // small deliveries, one before each kill and another whenever the victim has been idle for
    // a while; whatever is left arrives after the last kill.
    let mut schedule: Vec<&'static str> = STAGES.iter().copied().cycle().take(STAGES.len() * ROUNDS).collect();
    rng.shuffle(&mut schedule);
    let delivery = EMAILS / (schedule.len() * 2);
    let deliver = |p: &mut Pipeline| {
        let from = p.fed.len();
        p.feed(from..(from + delivery).min(EMAILS));
    };
    let mut killed: BTreeMap<&str, usize> = BTreeMap::new();
    let mut busy_kills = 0;
    for stage in &schedule {
        deliver(&mut p);
        let candidates: Vec<usize> = (0..p.procs.len()).filter(|&i| p.procs[i].stage == *stage).collect();
        let index = candidates[rng.usize(0..candidates.len())];
        // A poller's pass over one delivery takes a few hundred milliseconds.
        let at = Duration::from_millis(if *stage == "poller" { rng.u64(0..300) } else { rng.u64(0..1_500) });
        let since = Instant::now();
        let mut idle_since = Instant::now();
        let busy = loop {
            let busy = p.busy(index).await;
            if since.elapsed() >= at && busy {
                break true;
            }
            if busy {
                idle_since = Instant::now();
            } else if idle_since.elapsed() > Duration::from_secs(2) && p.fed.len() < EMAILS {
                deliver(&mut p);
                idle_since = Instant::now();
            }
            if since.elapsed() > Duration::from_secs(20) {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        busy_kills += usize::from(busy);
        p.kill_and_restart(index).await;
        *killed.entry(stage).or_default() += 1;
        eprintln!(
            "[faults] {:>5.1} s: SIGKILLed {} {stage} and restarted it (progress {:?} of {})",
            started.elapsed().as_secs_f64(),
            if busy { "a busy" } else { "an idle" },
            p.progress().await,
            p.fed.len()
        );
    }
    let from = p.fed.len();
    p.feed(from..EMAILS);
    assert_eq!(p.fed.len(), EMAILS);
    assert!(STAGES.iter().all(|s| killed.get(s) == Some(&ROUNDS)), "{killed:?}");
    // A kill of an idle process proves little; nearly all must have hit one at work.
    assert!(busy_kills + 2 >= schedule.len(), "only {busy_kills} of {} kills hit a busy process", schedule.len());

    let report = p.finish(SETTLE).await;
    // What the kills left for the recovery paths to clean up, from the workers' logs.
    let parseable = p.fed.iter().filter(|f| f.kind != crate::mailbox::Kind::Malformed).count();
    let recovered = [
        (
            "emails the poller published again",
            // The quiet mailbox's mail is published by the same poller.
            p.count_in_logs("poller", "Published email")
                .saturating_sub(parseable + crate::pipeline::REGISTERED_QUIET_MAIL),
        ),
        ("replies found after a sender died", p.count_in_logs("sender", "Found the reply a crashed sender delivered")),
        ("second deliveries suppressed by the send log", p.count_in_logs("sender", "Email already answered")),
    ];
    eprintln!(
        "[faults] kills: {killed:?}; recovery: {recovered:?}; whole scenario {:.1} s",
        started.elapsed().as_secs_f64()
    );
    report.assert_clean();
    assert!(report.terminal.get(&crate::ledger::Terminal::Sent).copied().unwrap_or(0) > EMAILS / 2, "{report:?}");
}
