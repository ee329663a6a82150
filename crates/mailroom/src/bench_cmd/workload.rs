//! The workload of `mailroom bench`: emails made from the example mailbox's questions, dropped
//! into the Maildir, and the measurements of a run (throughput, latency, CPU and memory of the
//! workers) read from the database and `/proc`.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::report::percentile;
use super::*;

/// Peak resident set size of a process, in KiB (`VmHWM`); 0 once it is gone.
pub(super) fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// CPU time a process has used so far (user + system), in milliseconds; 0 once it is gone.
pub(super) fn cpu_ms(pid: u32) -> f64 {
    // Fields 14 and 15 of /proc/<pid>/stat, counted after the command name (which may contain
    // spaces, hence the split at its closing parenthesis), in USER_HZ ticks: 100 on Linux.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 * 10.0)
        })
        .unwrap_or(0.0)
}

/// CPU time used so far by each worker and, summed as `postgres`, by the PostgreSQL backends
/// serving the bench's database.
pub(super) async fn cpu_snapshot(fleet: &Fleet, pool: &sqlx::PgPool) -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for (w, _) in &fleet.workers {
        *out.entry(w.name.clone()).or_default() += w.child.id().map_or(0.0, cpu_ms);
    }
    let backends: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        .fetch_all(pool)
        .await
        .unwrap_or_default();
    for pid in backends {
        // Backends are keyed by pid so that one opened during the run counts from zero.
        out.insert(format!("postgres:{pid}"), u32::try_from(pid).map_or(0.0, cpu_ms));
    }
    out
}

/// CPU milliseconds per email between two snapshots, per worker and for PostgreSQL.
pub(super) fn cpu_per_email(
    before: &HashMap<String, f64>,
    after: &HashMap<String, f64>,
    emails: usize,
) -> Vec<(String, f64)> {
    let mut by_name: HashMap<String, f64> = HashMap::new();
    for (key, end) in after {
        let delta = (end - before.get(key).copied().unwrap_or(0.0)).max(0.0);
        let name = key.split(':').next().unwrap_or(key).to_owned();
        *by_name.entry(name).or_default() += delta;
    }
    let mut out: Vec<(String, f64)> = by_name.into_iter().map(|(k, v)| (k, v / emails.max(1) as f64)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A support question the sample knowledge base answers, as subject and body.
#[derive(Debug, Clone)]
pub(super) struct Question {
    pub(super) subject: String,
    pub(super) body: String,
}

/// The answered support questions of `examples/mailbox` (per its `expected.json`), parsed.
pub(super) fn questions(mailbox: &Path) -> anyhow::Result<Vec<Question>> {
    let expected: Value = serde_json::from_slice(&std::fs::read(mailbox.join("expected.json"))?)?;
    let mut names: Vec<&String> = expected
        .as_object()
        .map(|o| o.iter().filter(|(_, v)| v["outcome"] == "answered").map(|(k, _)| k).collect())
        .unwrap_or_default();
    names.sort();
    let mut out = Vec::new();
    for name in names {
        let parsed = mail_mime::parse(&std::fs::read(mailbox.join(name))?)?;
        // A thread or an HTML-only message would work as well; plain questions keep it simple.
        if parsed.references.is_empty() && !parsed.body.trim().is_empty() {
            out.push(Question { subject: parsed.subject, body: parsed.body });
        }
    }
    anyhow::ensure!(!out.is_empty(), "no answered support question found in {}", mailbox.display());
    Ok(out)
}

/// One bench email: its Maildir unique name (the pipeline's `email_id`) and its bytes. Every
/// email has its own sender (the reply throttle allows 5 replies per address) and its own
/// order number, so no two questions embed the same (the embedding cache would hide the work).
/// Each carries the receiving server's `Authentication-Results`, as real mail does, so the
/// poller's check of it is part of what is measured.
pub(super) fn email(tag: &str, i: usize, q: &Question, agent: &str) -> (String, Vec<u8>) {
    let name = format!("{tag}.{i:07}.mailroom-bench");
    let sender = format!("customer-{tag}-{i}@example.com");
    let raw = format!(
        "Authentication-Results: {authserv_id};\r\n\tspf=pass smtp.mailfrom={sender};\r\n\t\
         dkim=pass header.d=example.com header.s=s2026;\r\n\tdmarc=pass (p=none) header.from=example.com\r\n\
         From: Customer {i} <{sender}>\r\nTo: Northwind Support <{agent}>\r\n\
         Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <{name}@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\r\nOrder number NW-{i:07}.\r\n",
        authserv_id = crate::sandbox::AUTHSERV_ID,
        subject = q.subject,
        date = Utc::now().to_rfc2822(),
        body = q.body.replace('\n', "\r\n"),
    );
    (name, raw.into_bytes())
}

/// Writes an email to `tmp/` and renames it into `new/`, as an MTA delivers: the poller never
/// sees half a file.
pub(super) fn drop_email(inbox: &Path, name: &str, raw: &[u8]) -> std::io::Result<()> {
    let tmp = inbox.join("tmp").join(name);
    std::fs::write(&tmp, raw)?;
    std::fs::rename(&tmp, inbox.join("new").join(name))
}

pub(super) fn count_files(folder: &Path) -> usize {
    std::fs::read_dir(folder.join("cur")).map(|d| d.count()).unwrap_or(0)
}

/// Where the emails of one run are.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Progress {
    pub(super) sent: i64,
    pub(super) drafted: i64,
    pub(super) not_support: i64,
    pub(super) unparseable: i64,
}

impl Progress {
    pub(super) fn settled(&self) -> i64 {
        self.sent + self.drafted + self.not_support + self.unparseable
    }
}

/// Counts the run's emails (`email_id` starting with `tag.`) by terminal state, in one query:
/// the bench polls while the pipeline runs on the same two cores, so it asks little.
pub(super) async fn progress(pool: &sqlx::PgPool, tag: &str) -> anyhow::Result<Progress> {
    let (sent, drafted, not_support, unparseable): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM replies WHERE email_id LIKE $1 AND state = 'sent'), \
         (SELECT count(*) FROM replies WHERE email_id LIKE $1 AND state IN ('drafted', 'in_doubt', 'dry_run')), \
         (SELECT count(*) FROM classifications WHERE email_id LIKE $1 AND NOT is_support_inquiry), \
         (SELECT count(*) FROM mailbox_messages WHERE mailbox_id LIKE $1 AND state = 'unparseable')",
    )
    .bind(format!("{tag}.%"))
    .fetch_one(pool)
    .await?;
    Ok(Progress { sent, drafted, not_support, unparseable })
}

/// Waits until all `n` emails of run `tag` settled; reports progress every few seconds.
pub(super) async fn wait_settled(
    pool: &sqlx::PgPool,
    tag: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Progress> {
    let started = Instant::now();
    let mut last_report = Instant::now();
    loop {
        let p = progress(pool, tag).await?;
        if p.settled() >= n as i64 {
            return Ok(p);
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            say(format!("    … {} of {n} settled after {:.0} s", p.settled(), started.elapsed().as_secs_f64()));
            last_report = Instant::now();
        }
        anyhow::ensure!(
            started.elapsed() < timeout,
            "run {tag:?}: only {} of {n} emails settled after {} s (see the worker logs)",
            p.settled(),
            timeout.as_secs()
        );
        // The figures come from the database's timestamps, not from when this loop looks.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A throughput run's result.
#[derive(Debug, Clone)]
pub(super) struct Throughput {
    pub(super) emails: usize,
    pub(super) progress: Progress,
    /// From the first confirmed publish to the last completed reply.
    pub(super) from_publish: Duration,
    /// From dropping the files to the last completed reply.
    pub(super) from_drop: Duration,
    /// CPU milliseconds per email of each worker and of PostgreSQL's backends (the broker is
    /// shared with whatever else runs; (a) stands for it).
    pub(super) cpu_ms: Vec<(String, f64)>,
}

impl Throughput {
    pub(super) fn rate(&self) -> f64 {
        self.emails as f64 / self.from_publish.as_secs_f64().max(1e-9)
    }

    pub(super) fn rate_from_drop(&self) -> f64 {
        self.emails as f64 / self.from_drop.as_secs_f64().max(1e-9)
    }
}

/// Drops `n` emails into `new/` at once and times them through the pipeline. The span ends at
/// the last completed reply (or, for an email that needs none, its classification).
#[allow(clippy::too_many_arguments)]
pub(super) async fn throughput_run(
    fleet: &Fleet,
    pool: &sqlx::PgPool,
    inbox: &Path,
    tag: &str,
    n: usize,
    qs: &[Question],
    agent: &str,
    timeout: Duration,
) -> anyhow::Result<Throughput> {
    let emails: Vec<(String, Vec<u8>)> = (0..n).map(|i| email(tag, i, &qs[i % qs.len()], agent)).collect();
    // Written to tmp/ first, then renamed in one sweep: "at once" as far as the poller can tell.
    for (name, raw) in &emails {
        std::fs::write(inbox.join("tmp").join(name), raw)?;
    }
    let cpu_before = cpu_snapshot(fleet, pool).await;
    let dropped: DateTime<Utc> = Utc::now();
    for (name, _) in &emails {
        std::fs::rename(inbox.join("tmp").join(name), inbox.join("new").join(name))?;
    }
    let progress = wait_settled(pool, tag, n, timeout).await?;
    let cpu_ms = cpu_per_email(&cpu_before, &cpu_snapshot(fleet, pool).await, n);
    let like = format!("{tag}.%");
    type Stamp = Option<DateTime<Utc>>;
    let (first_publish, last_reply, last_class): (Stamp, Stamp, Stamp) = sqlx::query_as(
        "SELECT (SELECT min(updated_at) FROM mailbox_messages WHERE mailbox_id LIKE $1 AND state = 'published'), \
             (SELECT max(completed_at) FROM replies WHERE email_id LIKE $1), \
             (SELECT max(created_at) FROM classifications WHERE email_id LIKE $1 AND NOT is_support_inquiry)",
    )
    .bind(&like)
    .fetch_one(pool)
    .await?;
    let end = last_reply.max(last_class).context("no email of the run reached the end")?;
    let first = first_publish.unwrap_or(dropped);
    let span = |from: DateTime<Utc>| (end - from).to_std().unwrap_or_default();
    Ok(Throughput { emails: n, progress, from_publish: span(first), from_drop: span(dropped), cpu_ms })
}

/// A latency run's result.
#[derive(Debug, Clone)]
pub(super) struct Latency {
    pub(super) rate: f64,
    pub(super) emails: usize,
    pub(super) p50_ms: f64,
    pub(super) p99_ms: f64,
    pub(super) max_ms: f64,
    /// Emails per second that came out while the load was offered and drained.
    pub(super) achieved: f64,
}

/// Offers emails at `rate` per second for `secs` seconds (dropped into `new/` on a 10 ms
/// clock) and measures each one from its drop to its completed reply.
#[allow(clippy::too_many_arguments)]
pub(super) async fn latency_run(
    pool: &sqlx::PgPool,
    inbox: &Path,
    tag: &str,
    rate: f64,
    secs: u64,
    qs: &[Question],
    agent: &str,
    timeout: Duration,
) -> anyhow::Result<Latency> {
    let n = ((rate * secs as f64).round() as usize).max(1);
    let emails: Vec<(String, Vec<u8>)> = (0..n).map(|i| email(tag, i, &qs[i % qs.len()], agent)).collect();
    let mut dropped_at: HashMap<String, DateTime<Utc>> = HashMap::with_capacity(n);
    let started = Instant::now();
    let mut clock = tokio::time::interval(Duration::from_millis(10));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = 0;
    while next < n {
        clock.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate).floor() as usize + 1).min(n);
        while next < due {
            let (name, raw) = &emails[next];
            drop_email(inbox, name, raw)?;
            dropped_at.insert(name.clone(), Utc::now());
            next += 1;
        }
    }
    let progress = wait_settled(pool, tag, n, timeout).await?;
    let drained = started.elapsed();
    anyhow::ensure!(progress.settled() == progress.sent + progress.drafted, "run {tag:?}: some emails got no reply");
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT email_id, completed_at FROM replies WHERE email_id LIKE $1 AND completed_at IS NOT NULL",
    )
    .bind(format!("{tag}.%"))
    .fetch_all(pool)
    .await?;
    let mut ms: Vec<f64> = rows
        .iter()
        .filter_map(|(id, done)| dropped_at.get(id).map(|d| (*done - *d).num_microseconds().unwrap_or(0) as f64 / 1e3))
        .collect();
    ms.sort_by(f64::total_cmp);
    Ok(Latency {
        rate,
        emails: n,
        p50_ms: percentile(&ms, 50.0),
        p99_ms: percentile(&ms, 99.0),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        achieved: n as f64 / drained.as_secs_f64().max(1e-9),
    })
}
