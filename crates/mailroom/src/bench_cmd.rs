//! `mailroom bench`: the performance figures of the whole pipeline on this machine, in one run,
//! with the real worker binaries.
//!
//! It works in its own vhost, database and directory (recreated on every run, like `demo`) and
//! prints five figures:
//!
//! - **(a)** the broker's limit for the pipeline's shape: N persistent ~1 KiB messages through
//!   three chained relays written directly against lapin (confirms, `mandatory`, ack after
//!   confirm; [`pipeline_core::relay_bench`], shared with the `relay_bench` example);
//! - **(b)** the offline pipeline — poller (Maildir) → classifier → rag-generator → sender
//!   (Maildir outbox), one process per stage, local classifier and extractive answers over the
//!   sample knowledge base: N emails dropped into the Maildir's `new/` at once, emails per
//!   second from the first confirmed publish (the poller's ledger) to the last completed reply
//!   in the send log, and also from the drop;
//! - **(c)** the same with every LLM call answered by an in-process OpenAI-compatible fake after
//!   a fixed delay (200 ms), classifier and generator concurrency raised;
//! - **(d)** end-to-end latency (file dropped → reply completed in the send log, p50/p99) while
//!   emails arrive at a fixed rate of a fraction (50 %) of (b);
//! - **(e)** the peak RSS (`VmHWM`) of every worker process.
//!
//! The sender's quota is set out of the way (the default 250/day would measure the quota) and
//! every email comes from its own address (the reply throttle allows 5 replies per address).
//! The figures depend on the machine and on what else runs on it; the command prints them as
//! measured and says which targets they miss, it does not fail on a miss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use pipeline_core::Settings;
use pipeline_core::topology::Topology;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::procs::{self, Output, Worker, amqp_user, database_url, vhost_url};

/// The mail stages, in start order (consumers before the poller, so nothing waits).
const PIPELINE: [&str; 4] = {
    let [poller, classifier, generator, sender] = pipeline_core::consumer::MAIL_STAGES;
    [classifier.name, generator.name, sender.name, poller.name]
};

/// Stages that only ingest the knowledge base; stopped before the measurements.
const INGESTION: [&str; 2] =
    [pipeline_core::consumer::roles::UPLOAD_API.name, pipeline_core::consumer::roles::DOC_INGESTER.name];

/// Targets on the reference machine (2 cores, broker and databases on the same host).
const TARGET_OFFLINE: f64 = 1_000.0;
const TARGET_SHARE_OF_RELAY: f64 = 0.30;
const TARGET_LLM: f64 = 250.0;
const TARGET_P99_MS: f64 = 250.0;
const TARGET_RSS_MB: f64 = 64.0;

/// `mailroom bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Emails dropped at once into the Maildir for the offline throughput run (b).
    #[arg(long, default_value_t = 5_000)]
    pub emails: usize,
    /// Emails for the run with the slow LLM (c) [default: --emails].
    #[arg(long)]
    pub llm_emails: Option<usize>,
    /// Messages through the plain-lapin relays (a).
    #[arg(long, default_value_t = 20_000)]
    pub relay_messages: usize,
    /// Seconds of fixed-rate arrivals in the latency run (d).
    #[arg(long, default_value_t = 20)]
    pub latency_secs: u64,
    /// Offered load of the latency run (d), as a fraction of the throughput measured in (b).
    #[arg(long, default_value_t = 0.5)]
    pub load: f64,
    /// Delay of every answer of the LLM fake in (c), in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub llm_delay_ms: u64,
    /// Prefetch and concurrency of the classifier and the generator in (c): with a slow LLM a
    /// stage's throughput is its concurrency divided by the LLM latency.
    #[arg(long, default_value_t = 160)]
    pub llm_concurrency: usize,
    /// The poller's `mailbox.poll_interval_ms` (a Maildir has no push; the default 1000 ms would
    /// add up to a second of waiting to every email's latency).
    #[arg(long, default_value_t = 50)]
    pub poll_interval_ms: u64,
    /// The workers' log level (`telemetry.level`); `info` logs a line per email per stage.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Extra settings for every worker of every run, as `MAILROOM__SECTION__KEY=value`
    /// (repeatable), to try a tuning: `--env MAILROOM__CONSUMER__CONCURRENCY=64`.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Small runs (at most 500 relay messages, 2 s of latency run): checks that the command
    /// works; the figures mean little.
    #[arg(long)]
    pub quick: bool,
    /// Working directory for the mailbox, outbox, uploads and logs (recreated on each run).
    #[arg(long, default_value = "mailroom-bench")]
    pub dir: PathBuf,
    /// The bench's own RabbitMQ vhost (recreated; the relays use `<vhost>-relay`).
    #[arg(long, default_value = "mailroom-bench")]
    pub vhost: String,
    /// The bench's own PostgreSQL database (recreated on each run).
    #[arg(long, default_value = "mailroom_bench")]
    pub database: String,
    /// Documents the agent answers from [default: examples/knowledge].
    #[arg(long)]
    pub knowledge: Option<PathBuf>,
    /// Give up on a run that has not finished after this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if key.starts_with("MAILROOM__") => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("expected MAILROOM__SECTION__KEY=value, got {text:?}")),
    }
}

fn say(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Peak resident set size of a process, in KiB (`VmHWM`); 0 once it is gone.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// CPU time a process has used so far (user + system), in milliseconds; 0 once it is gone.
pub fn cpu_ms(pid: u32) -> f64 {
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
async fn cpu_snapshot(fleet: &Fleet, pool: &sqlx::PgPool) -> HashMap<String, f64> {
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
fn cpu_per_email(before: &HashMap<String, f64>, after: &HashMap<String, f64>, emails: usize) -> Vec<(String, f64)> {
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

/// The value at percentile `p` (0–100) of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// `1234.5` → `1,235`.
fn thousands(value: f64) -> String {
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

/// A support question the sample knowledge base answers, as subject and body.
#[derive(Debug, Clone)]
struct Question {
    subject: String,
    body: String,
}

/// The answered support questions of `examples/mailbox` (per its `expected.json`), parsed.
fn questions(mailbox: &Path) -> anyhow::Result<Vec<Question>> {
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
fn email(tag: &str, i: usize, q: &Question, agent: &str) -> (String, Vec<u8>) {
    let name = format!("{tag}.{i:07}.mailroom-bench");
    let raw = format!(
        "From: Customer {i} <customer-{tag}-{i}@example.com>\r\nTo: Northwind Support <{agent}>\r\n\
         Subject: {subject}\r\nDate: {date}\r\nMessage-ID: <{name}@example.com>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n\r\nOrder number NW-{i:07}.\r\n",
        subject = q.subject,
        date = Utc::now().to_rfc2822(),
        body = q.body.replace('\n', "\r\n"),
    );
    (name, raw.into_bytes())
}

/// Writes an email to `tmp/` and renames it into `new/`, as an MTA delivers: the poller never
/// sees half a file.
fn drop_email(inbox: &Path, name: &str, raw: &[u8]) -> std::io::Result<()> {
    let tmp = inbox.join("tmp").join(name);
    std::fs::write(&tmp, raw)?;
    std::fs::rename(&tmp, inbox.join("new").join(name))
}

fn count_files(folder: &Path) -> usize {
    std::fs::read_dir(folder.join("cur")).map(|d| d.count()).unwrap_or(0)
}

/// Where the emails of one run are.
#[derive(Debug, Default, Clone, Copy)]
struct Progress {
    sent: i64,
    drafted: i64,
    not_support: i64,
    unparseable: i64,
}

impl Progress {
    fn settled(&self) -> i64 {
        self.sent + self.drafted + self.not_support + self.unparseable
    }
}

/// Counts the run's emails (`email_id` starting with `tag.`) by terminal state, in one query:
/// the bench polls while the pipeline runs on the same two cores, so it asks little.
async fn progress(pool: &sqlx::PgPool, tag: &str) -> anyhow::Result<Progress> {
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
async fn wait_settled(pool: &sqlx::PgPool, tag: &str, n: usize, timeout: Duration) -> anyhow::Result<Progress> {
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
struct Throughput {
    emails: usize,
    progress: Progress,
    /// From the first confirmed publish to the last completed reply.
    from_publish: Duration,
    /// From dropping the files to the last completed reply.
    from_drop: Duration,
    /// CPU milliseconds per email of each worker and of PostgreSQL's backends (the broker is
    /// shared with whatever else runs; (a) stands for it).
    cpu_ms: Vec<(String, f64)>,
}

impl Throughput {
    fn rate(&self) -> f64 {
        self.emails as f64 / self.from_publish.as_secs_f64().max(1e-9)
    }

    fn rate_from_drop(&self) -> f64 {
        self.emails as f64 / self.from_drop.as_secs_f64().max(1e-9)
    }
}

/// Drops `n` emails into `new/` at once and times them through the pipeline. The span ends at
/// the last completed reply (or, for an email that needs none, its classification).
#[allow(clippy::too_many_arguments)]
async fn throughput_run(
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
struct Latency {
    rate: f64,
    emails: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    /// Emails per second that came out while the load was offered and drained.
    achieved: f64,
}

/// Offers emails at `rate` per second for `secs` seconds (dropped into `new/` on a 10 ms
/// clock) and measures each one from its drop to its completed reply.
#[allow(clippy::too_many_arguments)]
async fn latency_run(
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

/// Running workers with their health ports, and the highest peak RSS seen per binary.
struct Fleet {
    bins: PathBuf,
    logs: PathBuf,
    env: Vec<(String, String)>,
    workers: Vec<(Worker, u16)>,
    peak_kib: HashMap<String, u64>,
}

impl Fleet {
    /// Starts `names` with the common environment plus `extra`, each with its own health port,
    /// and waits until every one reports ready.
    async fn start(&mut self, names: &[&str], extra: &[(String, String)], timeout: Duration) -> anyhow::Result<()> {
        for name in names {
            let mut env = self.env.clone();
            env.extend(extra.iter().cloned());
            // Each process gets its own health port, so readiness can be asked; the upload API
            // serves its health endpoints on its own listen address, which the bench uploads to.
            let port = if *name == "upload-api" {
                env.iter()
                    .rev()
                    .find(|(k, _)| k == "MAILROOM__UPLOAD_API__LISTEN")
                    .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
                    .context("MAILROOM__UPLOAD_API__LISTEN has no port")?
            } else {
                let port = free_port()?;
                env.push(("MAILROOM__HTTP__LISTEN".to_owned(), format!("127.0.0.1:{port}")));
                port
            };
            let worker = procs::start(&self.bins, name, 1, &env, &Output::Files(self.logs.clone()))?;
            self.workers.push((worker, port));
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + timeout;
        for (worker, port) in &mut self.workers {
            loop {
                let ready = http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                if let Ok(Some(status)) = worker.child.try_wait() {
                    anyhow::bail!("{} exited during start ({status}); see {}", worker.label(), self.logs.display());
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{} did not become ready; see {}",
                    worker.label(),
                    self.logs.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Records every worker's peak RSS, then stops them all gracefully.
    async fn stop(&mut self) {
        self.sample_rss();
        let mut workers: Vec<Worker> = self.workers.drain(..).map(|(w, _)| w).collect();
        let killed = procs::stop_all(&mut workers, Duration::from_secs(40)).await;
        if !killed.is_empty() {
            say(format!("  ! had to kill {}", killed.join(", ")));
        }
    }

    /// Each consuming worker's mean handler time so far (from its `/metrics`), as
    /// `name mean-ms`: with `concurrency` handlers a stage moves at most `concurrency / mean`
    /// emails a second, which tells which stage holds the pipeline back.
    async fn handler_means(&self) -> String {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for (w, port) in &self.workers {
            let Ok(response) = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await else { continue };
            let text = response.text().await.unwrap_or_default();
            let total = |metric: &str| -> f64 {
                text.lines()
                    .filter(|l| l.starts_with(metric))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            };
            let count = total("mailroom_handler_duration_seconds_count");
            if count > 0.0 {
                out.push(format!("{} {:.1} ms", w.name, 1e3 * total("mailroom_handler_duration_seconds_sum") / count));
            }
        }
        out.join(", ")
    }

    fn sample_rss(&mut self) {
        for (w, _) in &self.workers {
            let kib = w.child.id().map_or(0, peak_rss_kib);
            let peak = self.peak_kib.entry(w.name.clone()).or_default();
            *peak = (*peak).max(kib);
        }
    }
}

/// Uploads every file of `knowledge` through the upload API and waits until all are ingested.
async fn ingest(
    pool: &sqlx::PgPool,
    knowledge: &Path,
    agent: &str,
    base: &str,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let mut documents: Vec<PathBuf> = std::fs::read_dir(knowledge)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    documents.sort();
    for path in &documents {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let form = reqwest::multipart::Form::new()
            .text("agent_email", agent.to_owned())
            .part("file", reqwest::multipart::Part::bytes(std::fs::read(path)?).file_name(name.clone()));
        let response = http.post(format!("{base}/documents")).bearer_auth(token).multipart(form).send().await?;
        anyhow::ensure!(response.status().as_u16() == 202, "upload of {name} refused: {}", response.text().await?);
    }
    let deadline = Instant::now() + timeout;
    loop {
        let (ready, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'failed') FROM documents",
        )
        .fetch_one(pool)
        .await?;
        anyhow::ensure!(failed == 0, "{failed} document(s) failed to ingest (see the doc-ingester log)");
        if ready as usize >= documents.len() {
            let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(pool).await?;
            return usize::try_from(chunks).context("chunk count");
        }
        anyhow::ensure!(Instant::now() < deadline, "documents did not finish ingesting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bundled examples, found from the working directory or from the source tree this binary
/// was built from.
fn example_dir(given: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(path.is_dir(), "{} is not a directory", path.display());
        return Ok(path.to_owned());
    }
    [PathBuf::from("examples").join(name), Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)]
        .into_iter()
        .find(|p| p.is_dir())
        .with_context(|| format!("examples/{name} not found; run from the repository root"))
}

/// Runs the bench.
pub async fn bench(settings: &Settings, mut args: BenchArgs) -> anyhow::Result<ExitCode> {
    if args.quick {
        args.relay_messages = args.relay_messages.min(500);
        args.latency_secs = args.latency_secs.min(2);
    }
    let llm_emails = args.llm_emails.unwrap_or(args.emails);
    anyhow::ensure!(args.emails > 0 && llm_emails > 0, "--emails and --llm-emails must be at least 1");
    anyhow::ensure!(args.load > 0.0, "--load must be above 0");
    let bins = procs::bin_dir();
    for name in PIPELINE.iter().chain(&INGESTION) {
        procs::worker_path(&bins, name)?;
    }
    let knowledge = example_dir(args.knowledge.as_deref(), "knowledge")?;
    let qs = questions(&example_dir(None, "mailbox")?)?;
    let mgmt = crate::topology_cmd::management(settings);
    let overview = mgmt.overview().await.context("RabbitMQ management API")?;
    let user = amqp_user(&settings.amqp.url);

    // (a) first, on a quiet machine: nothing else runs yet.
    let relay_vhost = format!("{}-relay", args.vhost);
    let _ = mgmt.delete_vhost(&relay_vhost).await;
    mgmt.create_vhost(&relay_vhost).await?;
    mgmt.set_permissions(&relay_vhost, &user, ".*", ".*", ".*").await?;
    say(format!("(a) {} messages through three plain-lapin relays…", args.relay_messages));
    let relay = pipeline_core::relay_bench::plain_figure(
        &vhost_url(&settings.amqp.url, &relay_vhost),
        args.relay_messages,
        64,
        32,
    )
    .await;
    let _ = mgmt.delete_vhost(&relay_vhost).await;
    let relay = relay?;

    // The pipeline's own vhost, database and directories, recreated so every run starts clean.
    let _ = mgmt.delete_vhost(&args.vhost).await;
    mgmt.create_vhost(&args.vhost).await?;
    mgmt.set_permissions(&args.vhost, &user, ".*", ".*", ".*").await?;
    let db_url = database_url(&settings.database.url, &args.database);
    mailroom_db::drop_database(&db_url).await?;
    let pool = mailroom_db::connect_and_migrate(&db_url, 4).await?;
    let pg_version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
    std::fs::create_dir_all(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    for sub in ["inbox", "outbox", "uploads", "logs"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
    }
    let inbox = dir.join("inbox");
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(inbox.join(sub))?;
    }
    let outbox = dir.join("outbox");
    let agent =
        settings.section::<Value>("mailbox")?["agent_email"].as_str().unwrap_or("support@northwind.example").to_owned();
    let upload_port = free_port()?;
    let token = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let env: Vec<(String, String)> = [
        ("MAILROOM__AMQP__URL", vhost_url(&settings.amqp.url, &args.vhost)),
        ("MAILROOM__DATABASE__URL", db_url.expose_secret().to_owned()),
        ("MAILROOM__UPLOAD_API__LISTEN", format!("127.0.0.1:{upload_port}")),
        ("MAILROOM__UPLOAD_API__TOKEN", token.clone()),
        ("MAILROOM__STORAGE__DIR", dir.join("uploads").display().to_string()),
        ("MAILROOM__MAILBOX__KIND", "maildir".into()),
        ("MAILROOM__MAILBOX__MAILDIR", inbox.display().to_string()),
        ("MAILROOM__MAILBOX__AGENT_EMAIL", agent.clone()),
        ("MAILROOM__MAILBOX__POLL_INTERVAL_MS", args.poll_interval_ms.to_string()),
        ("MAILROOM__OUTBOX__KIND", "maildir".into()),
        ("MAILROOM__OUTBOX__MAILDIR", outbox.display().to_string()),
        // The quota out of the way (the default 250/day would be the whole measurement), in a
        // Redis namespace of this run.
        ("MAILROOM__SENDER__REDIS_PREFIX", format!("mailroom-bench:{}", uuid::Uuid::new_v4().simple())),
        ("MAILROOM__SENDER__RATE_LIMIT", "1000000".into()),
        ("MAILROOM__SENDER__RATE_WINDOW_SECS", "1".into()),
        ("MAILROOM__SENDER__RATE_BURST", "1000000".into()),
        // Every support verdict sent, not drafted: the bench measures the pipeline, not how
        // cautious the classifier is (a draft takes the same path through the sender).
        ("MAILROOM__CLASSIFIER__AUTO_ANSWER_MIN_CONFIDENCE", "0".into()),
        ("MAILROOM__TELEMETRY__LEVEL", args.log_level.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(args.env.iter().cloned())
    .collect();
    let bench_settings = Settings::load_from(None, std::env::vars().chain(env.iter().cloned()))?;
    let connection = pipeline_core::amqp::connect(&bench_settings.amqp, "mailroom-bench").await?;
    let channel = connection.create_channel().await?;
    Topology::new(&bench_settings.topology.retry_delays_ms).declare(&channel).await?;
    let _ = channel.close(200, "topology applied".into()).await;
    let _ = connection.close(200, "topology applied".into()).await;

    let logs = dir.join("logs");
    let mut fleet = Fleet { bins, logs: logs.clone(), env, workers: Vec::new(), peak_kib: HashMap::new() };
    let result =
        measure(&mut fleet, &args, llm_emails, &pool, &knowledge, &inbox, &agent, upload_port, &token, &qs).await;
    fleet.stop().await;
    let (offline, latency, llm) = match result {
        Ok(r) => r,
        Err(e) => {
            say(format!("error: {e:#}"));
            say(format!("  worker logs: {}", logs.display()));
            return Ok(ExitCode::from(1));
        }
    };
    let replies = count_files(&outbox) + count_files(&outbox.join(".Drafts"));
    pool.close().await;

    println!(
        "mailroom bench: {} cores, RabbitMQ {}, PostgreSQL {pg_version}, workers from {}",
        std::thread::available_parallelism().map_or(0, usize::from),
        overview["rabbitmq_version"].as_str().unwrap_or("?"),
        procs::bin_dir().display()
    );
    let share = offline.rate() / relay.rate();
    println!(
        "(a) {:<42} {:>7} emails/s   {} persistent ~1 KiB messages in {:.2} s, prefetch 64, concurrency 32",
        "broker limit, plain-lapin 3-hop relay",
        thousands(relay.rate()),
        thousands(relay.messages as f64),
        relay.elapsed.as_secs_f64()
    );
    println!(
        "(b) {:<42} {:>7} emails/s   {} emails ({} sent, {} drafted, {} not support) in {:.2} s from the first publish; {} emails/s from the drop; {:.0} % of (a) — target ≥ {} and ≥ {:.0} %: {}",
        "offline pipeline, 1 process per stage",
        thousands(offline.rate()),
        thousands(offline.emails as f64),
        offline.progress.sent,
        offline.progress.drafted,
        offline.progress.not_support + offline.progress.unparseable,
        offline.from_publish.as_secs_f64(),
        thousands(offline.rate_from_drop()),
        100.0 * share,
        thousands(TARGET_OFFLINE),
        100.0 * TARGET_SHARE_OF_RELAY,
        verdict(offline.rate() >= TARGET_OFFLINE && share >= TARGET_SHARE_OF_RELAY)
    );
    println!(
        "    (b) CPU per email: {}",
        offline.cpu_ms.iter().map(|(n, ms)| format!("{n} {ms:.2} ms")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "(c) {:<42} {:>7} emails/s   {} emails in {:.2} s from the first publish, concurrency {} — target ≥ {}: {}",
        format!("pipeline with a {} ms LLM", args.llm_delay_ms),
        thousands(llm.rate()),
        thousands(llm.emails as f64),
        llm.from_publish.as_secs_f64(),
        args.llm_concurrency,
        thousands(TARGET_LLM),
        verdict(llm.rate() >= TARGET_LLM)
    );
    println!(
        "(d) {:<42} p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms   {} emails over {} s, drop → reply completed — target p99 < {} ms: {}",
        format!("latency at {} emails/s ({:.0} % of (b))", thousands(latency.rate), 100.0 * args.load),
        latency.p50_ms,
        latency.p99_ms,
        latency.max_ms,
        thousands(latency.emails as f64),
        args.latency_secs,
        TARGET_P99_MS,
        verdict(latency.p99_ms < TARGET_P99_MS)
    );
    let mut rss: Vec<(&String, &u64)> = fleet.peak_kib.iter().collect();
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
        "Outbox {} holds {} replies; latency run offered {:.0}/s and drained at {:.0}/s; worker logs in {}.",
        outbox.display(),
        replies,
        latency.rate,
        latency.achieved,
        logs.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Ingests the knowledge base, then runs (b) and (d) on the offline workers and (c) on workers
/// pointed at the LLM fake.
#[allow(clippy::too_many_arguments)]
async fn measure(
    fleet: &mut Fleet,
    args: &BenchArgs,
    llm_emails: usize,
    pool: &sqlx::PgPool,
    knowledge: &Path,
    inbox: &Path,
    agent: &str,
    upload_port: u16,
    token: &str,
    qs: &[Question],
) -> anyhow::Result<(Throughput, Latency, Throughput)> {
    let timeout = Duration::from_secs(args.timeout_secs);
    say(format!("Ingesting {} for {agent}…", knowledge.display()));
    fleet.start(&INGESTION, &[], timeout).await?;
    let base = format!("http://127.0.0.1:{upload_port}");
    let chunks = ingest(pool, knowledge, agent, &base, token, timeout).await?;
    fleet.stop().await;
    say(format!("  {chunks} chunks stored."));

    say("Starting the offline pipeline (one process per stage)…");
    fleet.start(&PIPELINE, &[], timeout).await?;
    say(format!("(b) dropping {} emails into the Maildir at once…", args.emails));
    let offline = throughput_run(fleet, pool, inbox, "b", args.emails, qs, agent, timeout).await?;
    say(format!("    {:.0} emails/s; mean handler time: {}", offline.rate(), fleet.handler_means().await));
    let rate = (offline.rate() * args.load).max(1.0);
    say(format!("(d) offering {rate:.0} emails/s for {} s…", args.latency_secs));
    let latency = latency_run(pool, inbox, "d", rate, args.latency_secs, qs, agent, timeout).await?;
    say(format!("    p50 {:.1} ms, p99 {:.1} ms", latency.p50_ms, latency.p99_ms));
    fleet.stop().await;

    // An OpenAI-compatible fake answering every call after the delay: a support verdict when
    // JSON output is asked for (classification), a short grounded reply otherwise.
    let fake = llm_fake::FakeLlm::answering(
        "Hello,\n\nAccording to lift-pro-user-manual.pdf, error E04 means the control box does not receive \
         signals from the keypad. Unplug the desk, check the keypad cable and plug it in again after 30 \
         seconds.\n\nBest regards,\nThe Support Team",
        &json!({"is_support_inquiry": true, "category": "technical_issue", "confidence": 0.9}),
        Duration::from_millis(args.llm_delay_ms),
    )
    .await;
    let concurrency = args.llm_concurrency.max(1);
    let llm_env: Vec<(String, String)> = [
        ("MAILROOM__LLM__PROVIDERS", "openai".to_owned()),
        ("MAILROOM__LLM__OPENAI__BASE_URL", fake.openai_url()),
        ("MAILROOM__LLM__OPENAI__API_KEY", "sk-bench".into()),
        // Prefetch twice the concurrency keeps the next deliveries at hand while calls wait.
        ("MAILROOM__CONSUMER__PREFETCH", (concurrency * 2).to_string()),
        ("MAILROOM__CONSUMER__CONCURRENCY", concurrency.to_string()),
        ("MAILROOM__WORKERS__CLASSIFIER__PREFETCH", (concurrency * 2).to_string()),
        ("MAILROOM__WORKERS__CLASSIFIER__CONCURRENCY", concurrency.to_string()),
        ("MAILROOM__DATABASE__MAX_CONNECTIONS", "20".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    // What the operator asked for with --env wins over the bench's own choices.
    .chain(args.env.iter().cloned())
    .collect();
    say(format!("Restarting the pipeline with an OpenAI-compatible fake answering after {} ms…", args.llm_delay_ms));
    fleet.start(&PIPELINE, &llm_env, timeout).await?;
    say(format!("(c) dropping {llm_emails} emails into the Maildir at once…"));
    let llm = throughput_run(fleet, pool, inbox, "c", llm_emails, qs, agent, timeout).await?;
    say(format!(
        "    {:.0} emails/s, {} LLM calls; mean handler time: {}",
        llm.rate(),
        fake.count(),
        fleet.handler_means().await
    ));
    fleet.stop().await;
    Ok((offline, latency, llm))
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
