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
use std::time::Duration;

use anyhow::Context as _;
use pipeline_core::Settings;
use pipeline_core::topology::Topology;
use pipeline_core::worker_env::WorkerEnv;
use serde_json::json;

use crate::procs::{self, amqp_user, vhost_url};

mod fleet;
mod report;
mod workload;

use crate::sandbox::{Sandbox, SandboxSpec};
use fleet::*;
use workload::*;

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
    let spec = SandboxSpec {
        label: "bench",
        vhost: &args.vhost,
        database: &args.database,
        dir: &args.dir,
        poll_interval_ms: args.poll_interval_ms,
        max_connections: 4,
    };
    let sandbox = Sandbox::create(settings, &spec).await?;
    let pg_version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&sandbox.pool).await?;
    let env: Vec<(String, String)> = sandbox
        .env_with(
            WorkerEnv::new()
                // The quota out of the way (the default 250/day would be the whole measurement).
                .set("sender.rate_limit", "1000000")
                .set("sender.rate_window_secs", "1")
                .set("sender.rate_burst", "1000000")
                // Every support verdict sent, not drafted: the bench measures the pipeline, not how
                // cautious the classifier is (a draft takes the same path through the sender).
                .set("classifier.auto_answer_min_confidence", "0")
                .set("telemetry.level", args.log_level.clone()),
        )
        .into_iter()
        .chain(args.env.iter().cloned())
        .collect();
    let Sandbox { dir, inbox, outbox, pool, agent, upload_port, token, .. } = sandbox;
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

    report::print(&report::Figures {
        pg_version: &pg_version,
        rabbitmq_version: overview["rabbitmq_version"].as_str().unwrap_or("?"),
        relay: &relay,
        offline: &offline,
        llm: &llm,
        latency: &latency,
        args: &args,
        peak_kib: &fleet.peak_kib,
        outbox: &outbox,
        replies,
        logs: &logs,
    });
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
    let llm_env: Vec<(String, String)> = WorkerEnv::new()
        .set("llm.providers", "openai")
        .set("llm.openai.base_url", fake.openai_url())
        .set("llm.openai.api_key", "sk-bench")
        // Prefetch twice the concurrency keeps the next deliveries at hand while calls wait.
        .set("consumer.prefetch", (concurrency * 2).to_string())
        .set("consumer.concurrency", concurrency.to_string())
        .set("workers.classifier.prefetch", (concurrency * 2).to_string())
        .set("workers.classifier.concurrency", concurrency.to_string())
        .set("database.max_connections", "20")
        .owned()
        .into_iter()
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
