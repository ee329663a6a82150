//! `mailroom bench` cannot rot: its flags parse, and a tiny run over the debug binaries goes
//! through every measurement and prints every figure line. The figures of such a run mean
//! nothing (debug builds, 50 emails); docs/PERFORMANCE.md has the release ones.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use mailroom_tests::{TestDb, TestDir, TestVhost, mgmt_url, run};
use pipeline_core::worker_env::env_var;

fn mailroom() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom"))
}

#[tokio::test]
async fn bench_help_lists_its_options() {
    let (code, out) = run(mailroom(), &["bench", "--help"], &[]).await;
    assert_eq!(code, 0, "{out}");
    for flag in
        ["--emails", "--llm-emails", "--relay-messages", "--latency-secs", "--load", "--llm-delay-ms", "--quick"]
    {
        assert!(out.contains(flag), "{flag} missing from:\n{out}");
    }
}

#[tokio::test]
async fn a_quick_bench_runs_every_measurement_and_prints_the_figures() {
    // The bench recreates (and so owns) the vhost and database it is given; the harness
    // removes them afterwards, and the bench removes its own `<vhost>-relay`.
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let dir = TestDir::create();
    let mut cmd = tokio::process::Command::new(mailroom());
    for (key, _) in std::env::vars() {
        if key.starts_with("MAILROOM") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["bench", "--emails", "50", "--quick", "--latency-secs", "2", "--timeout-secs", "240"])
        .arg("--vhost")
        .arg(&vhost.name)
        .arg("--database")
        .arg(&db.name)
        .arg("--dir")
        .arg(&dir.path)
        .env(env_var("amqp.url"), vhost.amqp_url())
        .env(env_var("database.url"), db.url())
        .env(env_var("management.url"), mgmt_url())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(300), cmd.output())
        .await
        .expect("the quick bench finished within 5 minutes")
        .expect("mailroom bench ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}", out.status);
    let line = |tag: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(tag))
            .unwrap_or_else(|| panic!("no {tag} line in:\n{stdout}\nstderr:\n{stderr}"))
            .to_owned()
    };
    assert!(line("(a) ").contains("emails/s"), "{stdout}");
    let offline = line("(b) ");
    assert!(offline.contains("emails/s") && offline.contains("50 emails (50 sent"), "{stdout}");
    assert!(line("(c) ").contains("emails/s"), "{stdout}");
    let latency = line("(d) ");
    assert!(latency.contains("p50") && latency.contains("p99"), "{stdout}");
    let rss = line("(e) ");
    for worker in pipeline_core::consumer::binary_names() {
        assert!(rss.contains(&format!("{worker} ")), "{worker} missing: {rss}");
    }
    // Every email of the throughput runs got a real reply file in the outbox.
    let sent = std::fs::read_dir(dir.path.join("outbox/cur")).map(|d| d.count()).unwrap_or(0);
    assert!(sent >= 100, "only {sent} replies in the outbox");
}
