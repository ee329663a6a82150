//! The figures `mailroom bench` prints, against their targets.

use std::collections::HashMap;
use std::path::Path;

use pipeline_core::relay_bench::RelayFigure;

use super::workload::{Latency, Throughput};
use crate::procs;

use super::{BenchArgs, TARGET_LLM, TARGET_OFFLINE, TARGET_P99_MS, TARGET_RSS_MB, TARGET_SHARE_OF_RELAY};

/// Everything one run measured.
pub(super) struct Figures<'a> {
    pub(super) pg_version: &'a str,
    pub(super) rabbitmq_version: &'a str,
    pub(super) relay: &'a RelayFigure,
    pub(super) offline: &'a Throughput,
    pub(super) llm: &'a Throughput,
    pub(super) latency: &'a Latency,
    pub(super) args: &'a BenchArgs,
    pub(super) peak_kib: &'a HashMap<String, u64>,
    pub(super) outbox: &'a Path,
    pub(super) replies: usize,
    pub(super) logs: &'a Path,
}

/// Prints (a) to (e), each with its target and whether it was met.
pub(super) fn print(f: &Figures<'_>) {
    println!(
        "mailroom bench: {} cores, RabbitMQ {}, PostgreSQL {}, workers from {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        f.rabbitmq_version,
        f.pg_version,
        procs::bin_dir().display()
    );
    let share = f.offline.rate() / f.relay.rate();
    println!(
        "(a) {:<42} {:>7} emails/s   {} persistent ~1 KiB messages in {:.2} s, prefetch 64, concurrency 32",
        "broker limit, plain-lapin 3-hop relay",
        thousands(f.relay.rate()),
        thousands(f.relay.messages as f64),
        f.relay.elapsed.as_secs_f64()
    );
    println!(
        "(b) {:<42} {:>7} emails/s   {} emails ({} sent, {} drafted, {} not support) in {:.2} s from the first publish; {} emails/s from the drop; {:.0} % of (a) — target ≥ {} and ≥ {:.0} %: {}",
        "f.offline pipeline, 1 process per stage",
        thousands(f.offline.rate()),
        thousands(f.offline.emails as f64),
        f.offline.progress.sent,
        f.offline.progress.drafted,
        f.offline.progress.not_support + f.offline.progress.unparseable,
        f.offline.from_publish.as_secs_f64(),
        thousands(f.offline.rate_from_drop()),
        100.0 * share,
        thousands(TARGET_OFFLINE),
        100.0 * TARGET_SHARE_OF_RELAY,
        verdict(f.offline.rate() >= TARGET_OFFLINE && share >= TARGET_SHARE_OF_RELAY)
    );
    println!(
        "    (b) CPU per email: {}",
        f.offline.cpu_ms.iter().map(|(n, ms)| format!("{n} {ms:.2} ms")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "(c) {:<42} {:>7} emails/s   {} emails in {:.2} s from the first publish, concurrency {} — target ≥ {}: {}",
        format!("pipeline with a {} ms LLM", f.args.llm_delay_ms),
        thousands(f.llm.rate()),
        thousands(f.llm.emails as f64),
        f.llm.from_publish.as_secs_f64(),
        f.args.llm_concurrency,
        thousands(TARGET_LLM),
        verdict(f.llm.rate() >= TARGET_LLM)
    );
    println!(
        "(d) {:<42} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms   {} emails over {} s, drop → reply completed — target p99 < {} ms: {}",
        format!("f.latency at {} emails/s ({:.0} % of (b))", thousands(f.latency.rate), 100.0 * f.args.load),
        f.latency.p50_ms,
        f.latency.p99_ms,
        f.latency.max_ms,
        thousands(f.latency.emails as f64),
        f.args.latency_secs,
        TARGET_P99_MS,
        verdict(f.latency.p99_ms < TARGET_P99_MS)
    );
    let mut rss: Vec<(&String, &u64)> = f.peak_kib.iter().collect();
    rss.sort();
    let worst = rss.iter().map(|(_, k)| **k as f64 / 1024.0).fold(0.0, f64::max);
    println!(
        "(e) {:<42} {} — target < {} MB: {}",
        "peak RSS per worker (VmHWM)",
        rss.iter().map(|(n, k)| format!("{n} {:.1} MB", **k as f64 / 1024.0)).collect::<Vec<_>>().join(", "),
        TARGET_RSS_MB,
        verdict(worst < TARGET_RSS_MB)
    );
    println!(
        "Outbox {} holds {} replies; f.latency run offered {:.0}/s and drained at {:.0}/s; worker f.logs in {}.",
        f.outbox.display(),
        f.replies,
        f.latency.rate,
        f.latency.achieved,
        f.logs.display()
    );
}

/// The value at percentile `p` (0–100) of sorted samples (nearest rank).
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `1234.5` → `1,235`.
pub(super) fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

#[cfg(test)]
mod tests {
    use super::{percentile, thousands};

    #[test]
    fn figures_are_formatted_and_ranked() {
        assert_eq!(thousands(1234.4), "1,234");
        assert_eq!(thousands(999.6), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 51.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
