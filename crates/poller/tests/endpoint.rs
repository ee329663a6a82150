//! The poller binary's `/metrics`, `/healthz` and `/readyz`, against the real broker (a
//! throw-away vhost) and database: ready once it is connected and a pass has succeeded, its
//! counters follow what it published, and a mailbox it cannot read turns it not-ready with the
//! reason, until the mailbox is back.

use std::time::Duration;

use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, free_port, spawn, wait_for};
use pipeline_core::messages::EmailToClassify;
use pipeline_core::worker_env::WorkerEnv;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const AGENT: &str = "support@northwind.example";

fn email(n: u32) -> String {
    format!(
        "From: Pat <pat@example.com>\r\nTo: {AGENT}\r\nSubject: Desk question {n}\r\n\
         Message-ID: <desk-{n}@example.com>\r\n\r\nMy Lift Pro desk shows E04.\r\n"
    )
}

/// `GET path` over plain HTTP/1.1: the status and the body, or `None` while nothing listens.
async fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

/// The value of the sample `series` (name with its labels, exactly as rendered) in a
/// Prometheus text exposition.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn the_poller_serves_readiness_and_metrics_and_says_why_it_is_not_ready() {
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let maildir = TestDir::create();
    for dir in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.path.join(dir)).expect("maildir");
    }
    std::fs::write(maildir.path.join("new").join("1700000000.M1P1.desk"), email(1)).expect("write");
    let addr = format!("127.0.0.1:{}", free_port());
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("http.listen", addr.clone())
        .set("mailbox.maildir", maildir.path.display().to_string())
        .set("mailbox.agent_email", AGENT.to_owned())
        .set("mailbox.poll_interval_ms", "100")
        // Recovery after the broken mailbox below is seen within a second.
        .set("mailbox.max_backoff_secs", "1")
        .build();
    let _poller = spawn(&bin_path("poller"), &[], &env);

    wait_for(Duration::from_secs(60), "the poller to become ready", || async {
        get(&addr, "/readyz").await.filter(|(status, _)| *status == 200)
    })
    .await;
    assert_eq!(get(&addr, "/healthz").await, Some((200, "ok\n".to_owned())));
    let metrics = wait_for(Duration::from_secs(30), "the message to be counted as published", || async {
        let (_, body) = get(&addr, "/metrics").await?;
        (sample(&body, "mailroom_poller_published_total") == Some(1.0)).then_some(body)
    })
    .await;
    let confirmed = r#"mailroom_messages_published_total{exchange="email_exchange",routing_key="classify"}"#;
    assert_eq!(sample(&metrics, confirmed), Some(1.0), "the publisher's own count agrees:\n{metrics}");
    assert!(sample(&metrics, "mailroom_poller_passes_total").is_some_and(|n| n >= 1.0), "{metrics}");
    assert_eq!(sample(&metrics, "mailroom_poller_unparseable_total"), Some(0.0), "{metrics}");
    assert!(sample(&metrics, "mailroom_poller_last_success_timestamp_seconds").is_some_and(|t| t > 1.7e9), "{metrics}");
    assert!(metrics.contains("# TYPE mailroom_poller_backlog gauge"), "{metrics}");

    let published: Vec<EmailToClassify> = vhost.drain("emails.to_classify").await;
    assert_eq!(published.len(), 1, "the message reached emails.to_classify");
    assert_eq!(published[0].subject, "Desk question 1");

    // The mailbox goes away: not ready, saying why, and the failure is counted.
    std::fs::remove_dir_all(maildir.path.join("new")).expect("remove new/");
    let (status, body) = wait_for(Duration::from_secs(30), "the poller to report the broken mailbox", || async {
        get(&addr, "/readyz").await.filter(|(_, body)| body.contains("mailbox unreachable"))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("No such file or directory"), "the reason carries the mailbox's error: {body}");
    let (_, metrics) = get(&addr, "/metrics").await.expect("metrics");
    let failures = sample(&metrics, r#"mailroom_poller_pass_failures_total{kind="mailbox"}"#);
    assert!(failures.is_some_and(|n| n >= 1.0), "{metrics}");
    assert_eq!(get(&addr, "/healthz").await.map(|(status, _)| status), Some(200), "not ready is not dead");

    // Back, with new mail: ready again without a restart, and the counter goes on.
    std::fs::create_dir_all(maildir.path.join("new")).expect("new/");
    std::fs::write(maildir.path.join("new").join("1700000001.M2P1.desk"), email(2)).expect("write");
    wait_for(Duration::from_secs(30), "the poller to be ready again", || async {
        get(&addr, "/readyz").await.filter(|(status, _)| *status == 200)
    })
    .await;
    wait_for(Duration::from_secs(30), "the second message to be counted", || async {
        let (_, body) = get(&addr, "/metrics").await?;
        (sample(&body, "mailroom_poller_published_total") == Some(2.0)).then_some(())
    })
    .await;
}
