//! `mailroom demo`: the whole pipeline on one machine, on the offline defaults, end to end.
//!
//! It checks that RabbitMQ, PostgreSQL and Redis answer — saying which one does not, where it
//! looked and how to start it — then creates its own vhost and database (so it never touches
//! production data; the vhost through the management API when it answers and through
//! `rabbitmqctl` on a fresh install without it, see [`crate::broker_admin`]), applies the
//! topology and the migrations, starts every worker binary as a child process, ingests
//! `examples/knowledge/` through the upload API, feeds the bundled `examples/mailbox/` through the
//! Maildir poller, follows each email until it reaches a terminal state (answered, drafted for a
//! human, not answered, dead-lettered), stops the workers gracefully and prints a summary. The exit code is 0 only if every email reached a
//! terminal state.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pipeline_core::Settings;
use pipeline_core::dead_letter::Shape;
use pipeline_core::topology::Topology;
use pipeline_core::worker_env::WorkerEnv;
use serde::Serialize;
use serde_json::Value;

use crate::demo_preflight::{COMPOSE, preflight};
use crate::dlq_cmd::DlqReader;
use crate::procs::{self, Output, WORKERS, amqp_user};
use crate::sandbox::{Sandbox, SandboxSpec};

/// `mailroom demo` options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Working directory for the demo's mailbox, outbox, uploads and logs (its subfolders are
    /// recreated on each run).
    #[arg(long, default_value = "mailroom-demo")]
    pub dir: PathBuf,
    /// The demo's own RabbitMQ vhost (recreated on each run).
    #[arg(long, default_value = "mailroom-demo")]
    pub vhost: String,
    /// The demo's own PostgreSQL database (recreated on each run).
    #[arg(long, default_value = "mailroom_demo")]
    pub database: String,
    /// Documents the agent answers from.
    #[arg(long)]
    pub knowledge: Option<PathBuf>,
    /// Emails fed to the poller.
    #[arg(long)]
    pub mailbox: Option<PathBuf>,
    /// Give up waiting for the pipeline after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Print the summary as JSON (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// The bundled examples, found from the working directory or from the source tree this binary
/// was built from.
fn example_dir(given: Option<&Path>, name: &str) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return if path.is_dir() { Ok(path.to_owned()) } else { Err(format!("{} is not a directory", path.display())) };
    }
    let candidates =
        [PathBuf::from("examples").join(name), Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)];
    candidates
        .iter()
        .find(|p| p.is_dir())
        .cloned()
        .ok_or_else(|| format!("examples/{name} not found; run from the repository root or pass --{name} DIR"))
}

fn say(line: impl AsRef<str>) {
    eprintln!("{}", line.as_ref());
}

/// How one email ended (or where it is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A reply was sent.
    Answered,
    /// A draft waits for a human.
    Drafted,
    /// Dry-run: logged, not delivered.
    DryRun,
    /// Not a support inquiry; no reply.
    NotAnswered,
    /// Failed for good; in the dead-letter queue.
    DeadLettered,
    /// Still moving.
    Pending,
}

impl Outcome {
    fn text(&self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Drafted => "drafted for a human",
            Self::DryRun => "dry-run (logged only)",
            Self::NotAnswered => "not answered",
            Self::DeadLettered => "dead-lettered",
            Self::Pending => "PENDING",
        }
    }
}

/// One email of the summary.
#[derive(Debug, Clone, Serialize)]
pub struct EmailSummary {
    /// File in the example mailbox.
    pub file: String,
    /// Sender, as parsed (empty when unparseable).
    pub from: String,
    /// Subject, as parsed.
    pub subject: String,
    /// Whether the classifier saw a support inquiry.
    pub is_support: Option<bool>,
    /// The classifier's category.
    pub category: Option<String>,
    /// Why the classifier decided as it did, when the model alone did not (a rule, a script
    /// the offline model never learnt, the mailbox's documents).
    pub classification_reason: Option<String>,
    /// Where it ended.
    pub outcome: Outcome,
    /// Why (draft reason, dead-letter error, category).
    pub reason: Option<String>,
    /// Documents the reply cited.
    pub sources: Vec<String>,
}

/// The whole summary.
#[derive(Debug, Serialize)]
pub struct DemoSummary {
    /// Per email, in mailbox order.
    pub emails: Vec<EmailSummary>,
    /// Where the replies are.
    pub outbox: String,
    /// Sent replies in the outbox.
    pub sent_files: usize,
    /// Drafts in the outbox's `.Drafts`.
    pub draft_files: usize,
    /// Worker logs.
    pub logs: String,
    /// Whether every email reached a terminal state.
    pub complete: bool,
    /// Seconds from feeding the mailbox to the last terminal state.
    pub pipeline_seconds: f64,
}

type Row = (
    String,
    String,
    Option<String>,
    Option<bool>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Reads where each fed email is: ledger, classification, send log, response, dead letters.
async fn snapshot(
    pool: &sqlx::PgPool,
    settings: &Settings,
    agent: &str,
    fed: &[(String, String)],
) -> anyhow::Result<Vec<EmailSummary>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT m.mailbox_id, m.state, m.reason, c.is_support_inquiry, c.category, r.state, r.draft_reason, \
         resp.send_message::text, c.reason FROM mailbox_messages m \
         LEFT JOIN classifications c ON c.agent_email = m.agent_email AND c.email_id = m.mailbox_id \
         LEFT JOIN replies r ON r.agent_email = m.agent_email AND r.email_id = m.mailbox_id \
         LEFT JOIN responses resp ON resp.agent_email = m.agent_email AND resp.email_id = m.mailbox_id \
         WHERE m.agent_email = $1",
    )
    .bind(agent)
    .fetch_all(pool)
    .await?;
    let by_id: HashMap<String, Row> = rows.into_iter().map(|r| (r.0.clone(), r)).collect();
    let ledger_ids: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT mailbox_id, message_id FROM mailbox_messages WHERE agent_email = $1",
    )
    .bind(agent)
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let dead = dead_letters(settings).await.unwrap_or_default();
    let mut out = Vec::new();
    for (mailbox_id, file) in fed {
        let raw = std::fs::read(file).unwrap_or_default();
        let parsed = mail_mime::parse(&raw).ok();
        let mut summary = EmailSummary {
            file: file.clone(),
            from: parsed.as_ref().map(|p| p.from.clone()).unwrap_or_default(),
            subject: parsed.as_ref().map(|p| p.subject.clone()).unwrap_or_default(),
            is_support: None,
            category: None,
            classification_reason: None,
            outcome: Outcome::Pending,
            reason: None,
            sources: Vec::new(),
        };
        let dead_letter = dead
            .get(mailbox_id)
            .or_else(|| ledger_ids.get(mailbox_id).and_then(|message_id| dead.get(message_id)))
            .cloned();
        if let Some(row) = by_id.get(mailbox_id) {
            let (
                _,
                ledger_state,
                ledger_reason,
                is_support,
                category,
                reply_state,
                draft_reason,
                send_message,
                classification_reason,
            ) = row.clone();
            summary.is_support = is_support;
            summary.classification_reason = classification_reason;
            summary.category = category.clone();
            if let Some(message) = send_message.and_then(|m| serde_json::from_str::<Value>(&m).ok()) {
                for source in
                    message["context_used"].as_array().into_iter().flatten().filter_map(|c| c["source"].as_str())
                {
                    if !summary.sources.iter().any(|s| s == source) {
                        summary.sources.push(source.to_owned());
                    }
                }
            }
            (summary.outcome, summary.reason) = match (ledger_state.as_str(), is_support, reply_state.as_deref()) {
                ("unparseable", _, _) => match dead_letter {
                    Some((error_type, _)) => {
                        (Outcome::DeadLettered, Some(format!("{error_type}: {}", ledger_reason.unwrap_or_default())))
                    }
                    None => (Outcome::Pending, ledger_reason),
                },
                (_, Some(false), _) => (Outcome::NotAnswered, category.map(|c| format!("not a support inquiry ({c})"))),
                (_, Some(true), Some("sent")) => (Outcome::Answered, None),
                (_, Some(true), Some("drafted" | "in_doubt")) => (Outcome::Drafted, draft_reason),
                (_, Some(true), Some("dry_run")) => (Outcome::DryRun, draft_reason),
                _ => match dead_letter {
                    Some((error_type, message)) => (Outcome::DeadLettered, Some(format!("{error_type}: {message}"))),
                    None => (Outcome::Pending, None),
                },
            };
        }
        out.push(summary);
    }
    Ok(out)
}

/// Dead letters by the email id (or message id) they concern: `(error_type, error_message)`.
async fn dead_letters(settings: &Settings) -> anyhow::Result<HashMap<String, (String, String)>> {
    let mut reader = DlqReader::open(settings, "demo").await?;
    let held = reader.read_all(Some(10_000)).await?;
    let mut out = HashMap::new();
    for h in &held {
        let reason = (h.info.error_type.clone(), h.info.error_message.clone());
        if h.info.shape == Shape::Envelope
            && let Ok(envelope) = serde_json::from_slice::<Value>(&h.delivery.data)
            && let Some(email_id) = envelope["original_message"]["email_id"].as_str()
        {
            out.insert(email_id.to_owned(), reason.clone());
        }
        out.insert(h.info.id.clone(), reason);
    }
    reader.close().await;
    Ok(out)
}

fn count_files(folder: &Path) -> usize {
    ["new", "cur"].iter().map(|s| std::fs::read_dir(folder.join(s)).map(|d| d.count()).unwrap_or(0)).sum()
}

/// Runs the demo.
pub async fn demo(settings: &Settings, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let bins = procs::bin_dir();
    for name in WORKERS {
        if let Err(e) = procs::worker_path(&bins, name) {
            say(format!("error: {e}"));
            return Ok(ExitCode::from(2));
        }
    }
    let (knowledge, mailbox) =
        match (example_dir(args.knowledge.as_deref(), "knowledge"), example_dir(args.mailbox.as_deref(), "mailbox")) {
            (Ok(k), Ok(m)) => (k, m),
            (Err(e), _) | (_, Err(e)) => {
                say(format!("error: {e}"));
                return Ok(ExitCode::from(2));
            }
        };

    say("Mailroom demo: checking the services…");
    let (problems, admin) = preflight(settings).await;
    let admin = match admin {
        Some(Ok(admin)) if problems.is_empty() => admin,
        admin => {
            for p in &problems {
                say(format!("  ✗ {} is not reachable at {}: {}", p.service, p.looked_at, p.error));
                say(format!("      start it with: {}", p.start_with));
            }
            if let Some(Err(e)) = admin {
                say(format!("  ✗ cannot create the demo's vhost: {e}"));
            }
            if !problems.is_empty() {
                say(format!("  (with Docker, `{COMPOSE}` starts RabbitMQ, PostgreSQL and Redis on these ports)"));
            }
            return Ok(ExitCode::from(1));
        }
    };
    say("  ✓ RabbitMQ, PostgreSQL and Redis answer.");
    say(format!("  ✓ Vhosts are managed through {}.", admin.describe()));

    // The demo's own vhost, database and directories, recreated so every run starts clean.
    admin.recreate_vhost(&args.vhost, &amqp_user(&settings.amqp.url)).await?;
    let spec = SandboxSpec {
        label: "demo",
        vhost: &args.vhost,
        database: &args.database,
        dir: &args.dir,
        poll_interval_ms: 250,
        max_connections: 5,
    };
    let sandbox = Sandbox::create(settings, &spec).await?;
    // The default quota is not overridden: its burst (25) answers the whole example mailbox at
    // once, as it would a morning's mail.
    let env = sandbox.env_with(
        WorkerEnv::new()
            .set("http.listen", "127.0.0.1:0")
            // Short retry delays so a transient hiccup does not stall the demo for a minute.
            .set("topology.retry_delays_ms", "500,1000,2000"),
    );
    let Sandbox { dir, inbox, pool, agent, upload_port, token, logs, .. } = sandbox;
    let demo_settings = Settings::load_from(None, std::env::vars().chain(env.iter().cloned()))?;
    // `rabbitmqctl` acts on its default node; a broker on another local port may not be that node.
    let connection = pipeline_core::amqp::connect(&demo_settings.amqp, "mailroom-demo").await.map_err(|e| {
        anyhow::anyhow!(
            "cannot open the demo's vhost at {} just created through {}: {e}",
            demo_settings.amqp.redacted_url(),
            admin.describe()
        )
    })?;
    let channel = connection.create_channel().await?;
    Topology::new(&demo_settings.topology.retry_delays_ms).declare(&channel).await?;
    let _ = connection.close(200, "topology applied".into()).await;
    say(format!(
        "  ✓ Vhost {:?} and database {:?} created; topology and migrations applied.",
        args.vhost, args.database
    ));

    let mut workers = Vec::new();
    for name in WORKERS {
        workers.push(procs::start(&bins, name, 1, &env, &Output::Files(logs.clone()))?);
    }
    say(format!("  ✓ Started {} (logs in {}).", WORKERS.join(", "), logs.display()));
    let result = drive(&demo_settings, &args, &pool, &agent, &knowledge, &mailbox, &inbox, upload_port, &token).await;
    say("Stopping the workers (SIGTERM; they finish what they hold)…");
    let killed = procs::stop_all(&mut workers, Duration::from_secs(40)).await;
    if !killed.is_empty() {
        say(format!("  ! had to kill {}", killed.join(", ")));
    }
    let (emails, pipeline_seconds) = match result {
        Ok(r) => r,
        Err(e) => {
            say(format!("error: {e:#}"));
            say(format!("  worker logs: {}", logs.display()));
            return Ok(ExitCode::from(1));
        }
    };
    let outbox = dir.join("outbox");
    let summary = DemoSummary {
        complete: emails.iter().all(|e| e.outcome != Outcome::Pending),
        emails,
        sent_files: count_files(&outbox),
        draft_files: count_files(&outbox.join(".Drafts")),
        outbox: outbox.display().to_string(),
        logs: logs.display().to_string(),
        pipeline_seconds,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary, &args, started.elapsed());
    }
    pool.close().await;
    Ok(if summary.complete { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Ingests the knowledge, feeds the mailbox and waits until every email settles.
#[allow(clippy::too_many_arguments)]
async fn drive(
    settings: &Settings,
    args: &DemoArgs,
    pool: &sqlx::PgPool,
    agent: &str,
    knowledge: &Path,
    mailbox: &Path,
    inbox: &Path,
    upload_port: u16,
    token: &str,
) -> anyhow::Result<(Vec<EmailSummary>, f64)> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let base = format!("http://127.0.0.1:{upload_port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    while http.get(format!("{base}/readyz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        anyhow::ensure!(Instant::now() < deadline, "the upload API did not become ready (see its log)");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let documents = crate::sandbox::knowledge_files(knowledge)?;
    say(format!("Ingesting {} documents from {} for {agent}…", documents.len(), knowledge.display()));
    crate::sandbox::upload(&http, &base, token, agent, &documents).await?;
    loop {
        let counts: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, count(*) FROM documents GROUP BY status").fetch_all(pool).await?;
        let counts: BTreeMap<String, i64> = counts.into_iter().collect();
        let settled = counts.get("ready").copied().unwrap_or(0) + counts.get("failed").copied().unwrap_or(0);
        if settled as usize >= documents.len() {
            let failed = counts.get("failed").copied().unwrap_or(0);
            say(format!(
                "  ✓ {} documents ready{}.",
                counts.get("ready").copied().unwrap_or(0),
                if failed > 0 { format!(", {failed} failed") } else { String::new() }
            ));
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "documents did not finish ingesting: {counts:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let mut files: Vec<PathBuf> = std::fs::read_dir(mailbox)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut fed = Vec::new();
    for (i, path) in files.iter().enumerate() {
        // A standard Maildir unique name; it becomes the email's id in the pipeline.
        let unique = format!("{epoch}.M{i:03}.mailroom-demo");
        std::fs::copy(path, inbox.join("tmp").join(&unique))?;
        std::fs::rename(inbox.join("tmp").join(&unique), inbox.join("new").join(&unique))?;
        fed.push((unique, path.display().to_string()));
    }
    say(format!("Fed {} emails from {} into the poller's Maildir.", fed.len(), mailbox.display()));
    let fed_at = Instant::now();
    let mut last = String::new();
    loop {
        let emails = snapshot(pool, settings, agent, &fed).await?;
        let count = |o: Outcome| emails.iter().filter(|e| e.outcome == o).count();
        let line = format!(
            "  [{:>3}s] answered {} · drafted {} · not answered {} · dead-lettered {} · in flight {}",
            fed_at.elapsed().as_secs(),
            count(Outcome::Answered),
            count(Outcome::Drafted) + count(Outcome::DryRun),
            count(Outcome::NotAnswered),
            count(Outcome::DeadLettered),
            count(Outcome::Pending)
        );
        let settled = count(Outcome::Pending) == 0;
        if line[8..] != last.get(8..).unwrap_or_default()[..] || settled {
            say(&line);
            last = line;
        }
        if settled || Instant::now() >= deadline {
            let mut emails = emails;
            for e in &mut emails {
                e.file = Path::new(&e.file).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            }
            return Ok((emails, fed_at.elapsed().as_secs_f64()));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn clip(text: &str, width: usize) -> String {
    let text: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if text.chars().count() <= width {
        text
    } else {
        format!("{}…", text.chars().take(width - 1).collect::<String>())
    }
}

fn print_summary(summary: &DemoSummary, args: &DemoArgs, elapsed: Duration) {
    println!();
    println!("{:<34} {:<28} {:<30} {:<22} sources", "email", "from", "classification", "outcome");
    println!("{}", "─".repeat(140));
    for e in &summary.emails {
        let class = match (e.is_support, &e.category) {
            (Some(true), Some(c)) => format!("support ({c})"),
            (Some(false), Some(c)) => format!("not support ({c})"),
            _ => "—".into(),
        };
        println!(
            "{:<34} {:<28} {:<30} {:<22} {}",
            clip(&e.file, 34),
            clip(&e.from, 28),
            clip(&class, 30),
            e.outcome.text(),
            e.sources.join(", ")
        );
        if let (Some(reason), Outcome::Drafted) = (&e.classification_reason, &e.outcome) {
            println!("{:<34} ↳ classified: {}", "", clip(reason, 100));
        }
        if let (Some(reason), Outcome::Drafted | Outcome::DeadLettered | Outcome::Pending) = (&e.reason, &e.outcome) {
            println!("{:<34} ↳ {}", "", clip(reason, 100));
        }
    }
    println!();
    let count = |o: Outcome| summary.emails.iter().filter(|e| e.outcome == o).count();
    println!(
        "{} emails: {} answered, {} drafted for a human, {} not answered, {} dead-lettered{} — pipeline {:.1} s, demo {:.0} s.",
        summary.emails.len(),
        count(Outcome::Answered),
        count(Outcome::Drafted) + count(Outcome::DryRun),
        count(Outcome::NotAnswered),
        count(Outcome::DeadLettered),
        match count(Outcome::Pending) {
            0 => String::new(),
            n => format!(", {n} STILL PENDING"),
        },
        summary.pipeline_seconds,
        elapsed.as_secs_f64()
    );
    println!(
        "Outbox (a Maildir any mail client opens, e.g. `mutt -f {}`): {} sent in cur/, {} drafts in .Drafts/cur/.",
        summary.outbox, summary.sent_files, summary.draft_files
    );
    println!("Worker logs: {}", summary.logs);
    println!(
        "The demo's data stays in vhost {:?} and database {:?}: `MAILROOM__AMQP__URL=amqp://guest:guest@127.0.0.1:5672/{} \
         MAILROOM__DATABASE__URL=postgres://postgres@127.0.0.1:5432/{} mailroom status` (or `mailroom dlq list`).",
        args.vhost,
        args.database,
        rabbitmq_mgmt::encode_segment(&args.vhost),
        args.database
    );
}
