//! Classification and generation throughput with a slow LLM.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! cargo run --release -p mailroom-tests --example llm_bench -- [EMAILS] [CONCURRENCY] [RATE]
//! ```
//!
//! Starts an OpenAI-compatible fake that answers every call after 200 ms, ingests the sample
//! knowledge base into a throw-away database, starts ONE `classifier` and ONE `rag-generator`
//! process (release builds) configured to use the fake, publishes EMAILS support questions
//! to `emails.to_classify` at RATE per second (default 300) and counts the replies arriving in `emails.to_send`. Prints emails/s,
//! p50/p99 latency per stage (from the database's timestamps) and end to end, and each
//! process's peak RSS (VmHWM).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use llm_fake::FakeLlm;
use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, repo_root, spawn};
use pipeline_core::Publisher;
use pipeline_core::messages::{EmailToClassify, EmailToSend, IncomingEmail};
use pipeline_core::worker_env::WorkerEnv;
use serde_json::json;

const AGENT: &str = "support@northwind.example";

fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((p / 100.0) * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map(|a| a.parse()).transpose()?.unwrap_or(3000);
    let concurrency: usize = args.get(1).map(|a| a.parse()).transpose()?.unwrap_or(128);
    let rate: f64 = args.get(2).map(|a| a.parse()).transpose()?.unwrap_or(300.0);
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let storage = TestDir::create();
    let llm = FakeLlm::answering(
        "Hello,\n\nAccording to lift-pro-user-manual.pdf, error E04 means the control box does not receive signals from the keypad. Unplug the desk, check the keypad cable and plug it in again after 30 seconds.\n\nBest regards,\nThe Support Team",
        &json!({"is_support_inquiry": true, "category": "technical_issue", "confidence": 0.9}),
        Duration::from_millis(200),
    )
    .await;

    let env: Vec<(&str, String)> = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("database.max_connections", "20")
        .set("storage.dir", storage.path.display().to_string())
        .set("llm.providers", "openai")
        .set("llm.openai.base_url", llm.openai_url())
        .set("llm.openai.api_key", "sk-bench")
        .set("consumer.prefetch", (concurrency * 2).to_string())
        .set("consumer.concurrency", concurrency.to_string())
        .set("workers.classifier.prefetch", (concurrency * 2).to_string())
        .set("workers.classifier.concurrency", concurrency.to_string())
        .set("telemetry.level", "warn")
        .build();
    eprintln!("  ingesting the sample knowledge base…");
    // The knowledge base, through the real ingestion code.
    let settings = pipeline_core::Settings::load_from(None, env.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))?;
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await?;
    let ingester =
        doc_ingester::Ingester::from_settings(&settings, pool.clone())?.with_extractor(bin_path("doc-ingester"));
    for file in ["lift-pro-user-manual.pdf", "warranty-and-returns.pdf", "shipping-faq.md", "app-troubleshooting.txt"] {
        let src = repo_root().join("examples/knowledge").join(file);
        let dst = storage.path.join(file);
        std::fs::copy(&src, &dst)?;
        let id = uuid::Uuid::new_v4();
        let kind = if file.ends_with(".pdf") { "application/pdf" } else { "text/plain" };
        let message_id = pipeline_core::messages::new_message_id();
        let path = dst.display().to_string();
        mailroom_db::documents::insert(
            &pool,
            &mailroom_db::documents::NewDocument {
                document_id: id,
                agent_email: AGENT,
                filename: file,
                stored_path: &path,
                content_type: kind,
                size_bytes: 0,
                message_id: &message_id,
            },
        )
        .await?;
        let msg = pipeline_core::messages::DocumentToIngest {
            message_id,
            timestamp: pipeline_core::messages::now(),
            document_id: id.to_string(),
            filename: file.into(),
            file_path: path,
            file_size_bytes: 0,
            uploaded_by: AGENT.into(),
            agent_email: AGENT.into(),
            metadata: pipeline_core::messages::DocumentMetadata { upload_source: None, content_type: None },
        };
        ingester.ingest(id, &msg, kind).await?;
    }

    eprintln!("  starting the workers (logs in {})…", mailroom_tests::log_dir().display());
    let mut classifier = spawn(&bin_path("classifier"), &[], &env);
    let mut generator = spawn(&bin_path("rag-generator"), &[], &env);
    let conn = lapin::Connection::connect(&vhost.amqp_url(), lapin::ConnectionProperties::default()).await?;
    // Wait until both consume (their queues have a consumer each).
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    loop {
        // A failed passive declare closes its channel, so each attempt gets a fresh one.
        let ch = conn.create_channel().await?;
        let a = ch.queue_declare("emails.to_classify".into(), passive, FieldTable::default()).await;
        let b = ch.queue_declare("emails.to_respond".into(), passive, FieldTable::default()).await;
        if let (Ok(a), Ok(b)) = (a, b)
            && a.consumer_count() > 0
            && b.consumer_count() > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ch = conn.create_channel().await?;
    ch.basic_qos(1000, BasicQosOptions::default()).await?;
    let mut sink = ch
        .basic_consume("emails.to_send".into(), "bench".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;

    let publisher = Publisher::open(&conn, None).await?;
    let questions = [
        "My Lift Pro shows E04 on the display and will not move. What should I do?",
        "How do I reset the control box of my desk?",
        "How many days do I have to return the desk?",
        "The app does not find my desk over Bluetooth, how do I pair it?",
        "How long does shipping to Germany take?",
    ];
    println!(
        "llm_bench: {n} support emails offered at {rate}/s, LLM fake latency 200 ms, 1 classifier + 1 rag-generator, concurrency {concurrency}"
    );
    let started = Instant::now();
    let mut published_at: HashMap<String, Instant> = HashMap::with_capacity(n);
    let mut published_utc: HashMap<String, DateTime<Utc>> = HashMap::with_capacity(n);
    let publish = async {
        for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
            let batch: Vec<EmailToClassify> = chunk
                .iter()
                .map(|i| {
                    EmailToClassify::new(
                        IncomingEmail {
                            email_id: format!("bench-{i}"),
                            from: format!("customer{i}@example.com"),
                            to: AGENT.into(),
                            subject: "Question about my desk".into(),
                            body: questions[i % questions.len()].into(),
                            agent_email: AGENT.into(),
                            ..Default::default()
                        },
                        5,
                    )
                })
                .collect();
            let now = Instant::now();
            for e in &batch {
                published_at.insert(e.email_id.clone(), now);
                published_utc.insert(e.email_id.clone(), Utc::now());
            }
            for r in futures_util::future::join_all(batch.iter().map(|e| publisher.publish(e))).await {
                r.expect("publish");
            }
            // Pace the load to what the system is asked to sustain, not faster.
            tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate)).await;
        }
    };
    let mut arrivals: HashMap<String, Instant> = HashMap::with_capacity(n);
    let receive = async {
        while arrivals.len() < n {
            let Some(Ok(d)) = sink.next().await else { break };
            let reply: EmailToSend = serde_json::from_slice(&d.data).expect("reply");
            arrivals.entry(reply.email_id).or_insert_with(Instant::now);
            d.acker.ack(BasicAckOptions::default()).await.expect("ack");
        }
    };
    tokio::join!(publish, receive);
    let elapsed = started.elapsed().as_secs_f64();
    let rss = (peak_rss_kib(classifier.id().unwrap_or(0)), peak_rss_kib(generator.id().unwrap_or(0)));

    let mut e2e: Vec<f64> = arrivals.iter().map(|(id, t)| (*t - published_at[id]).as_secs_f64() * 1000.0).collect();
    e2e.sort_by(f64::total_cmp);
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT c.email_id, c.created_at, r.created_at FROM classifications c JOIN responses r USING (agent_email, email_id)",
    )
    .fetch_all(&pool)
    .await?;
    let mut classify: Vec<f64> = rows
        .iter()
        .map(|(id, c, _)| (*c - published_utc[id]).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect();
    let mut generate: Vec<f64> =
        rows.iter().map(|(_, c, r)| (*r - *c).num_microseconds().unwrap_or(0) as f64 / 1000.0).collect();
    classify.sort_by(f64::total_cmp);
    generate.sort_by(f64::total_cmp);
    println!(
        "  throughput      {:>8.0} emails/s ({} replies in {elapsed:.1} s; target >= 250)",
        arrivals.len() as f64 / elapsed,
        arrivals.len()
    );
    println!(
        "  classify stage  p50 {:>7.1} ms  p99 {:>7.1} ms (publish → classification recorded)",
        pct(&classify, 50.0),
        pct(&classify, 99.0)
    );
    println!(
        "  generate stage  p50 {:>7.1} ms  p99 {:>7.1} ms (classification → reply recorded)",
        pct(&generate, 50.0),
        pct(&generate, 99.0)
    );
    println!(
        "  end to end      p50 {:>7.1} ms  p99 {:>7.1} ms (publish → reply in emails.to_send)",
        pct(&e2e, 50.0),
        pct(&e2e, 99.0)
    );
    println!(
        "  peak RSS        classifier {:.1} MB, rag-generator {:.1} MB (target < 64 MB)",
        rss.0 as f64 / 1024.0,
        rss.1 as f64 / 1024.0
    );
    println!("  LLM calls       {}", llm.count());
    let _ = classifier.kill().await;
    let _ = generator.kill().await;
    Ok(())
}
