//! `mailroom up`: the workers as child processes, a dead one restarted, all stopped on Ctrl-C.

use std::time::Duration;

use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, mgmt, signal, wait_for};
use pipeline_core::worker_env::WorkerEnv;

/// Pids of the running children of `parent` whose command line contains `name`.
fn children(parent: u32, name: &str) -> Vec<u32> {
    let out =
        std::process::Command::new("pgrep").args(["-P", &parent.to_string(), "-f", name]).output().expect("pgrep");
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect()
}

async fn consumers(vhost: &TestVhost) -> Option<u64> {
    mgmt().queue(&vhost.name, "emails.to_classify").await.ok().map(|q| q.consumers)
}

#[tokio::test]
async fn up_runs_the_scaled_workers_restarts_a_dead_one_and_stops_them_all() {
    let (vhost, db, dir) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("mailbox.maildir", dir.path.join("inbox").display().to_string())
        .set("outbox.maildir", dir.path.join("outbox").display().to_string())
        .build();
    let args = [
        "up",
        "--scale",
        "classifier=2",
        "--scale",
        "upload-api=0",
        "--scale",
        "doc-ingester=0",
        "--scale",
        "rag-generator=0",
        "--scale",
        "sender=0",
        "--scale",
        "poller=0",
    ];
    let up = mailroom_tests::spawn(&bin_path("mailroom"), &args, &env);
    let pid = up.id().expect("pid");
    wait_for(Duration::from_secs(60), "two classifiers consuming", || async {
        (consumers(&vhost).await == Some(2)).then_some(())
    })
    .await;
    let running = children(pid, "classifier");
    assert_eq!(running.len(), 2, "{running:?}");

    // One dies hard; `up` starts it again.
    let status = std::process::Command::new("kill").args(["-KILL", &running[0].to_string()]).status().expect("kill");
    assert!(status.success());
    wait_for(Duration::from_secs(60), "the killed classifier to be replaced", || async {
        let now = children(pid, "classifier");
        (now.len() == 2 && !now.contains(&running[0]) && consumers(&vhost).await == Some(2)).then_some(())
    })
    .await;

    // Ctrl-C stops every worker and then `up` itself.
    signal(&up, "INT");
    let mut up = up;
    let exit = tokio::time::timeout(Duration::from_secs(60), up.wait()).await.expect("up exits").expect("status");
    assert!(exit.success(), "{exit}");
    assert!(children(pid, "classifier").is_empty());
    wait_for(Duration::from_secs(30), "no consumers left", || async {
        (consumers(&vhost).await == Some(0)).then_some(())
    })
    .await;
}
