//! The Maildir poller against the real broker and database: a mailbox of real-world-shaped
//! messages, a SIGKILL halfway, a restart — every parseable message published under exactly one
//! id, every unparseable one recorded with its reason, urgent mail first.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, repo_root, signal, spawn, wait_for};
use pipeline_core::messages::EmailToClassify;
use pipeline_core::worker_env::WorkerEnv;

const AGENT: &str = "support@northwind.example";
const COPIES: usize = 12;

#[tokio::test]
async fn every_parseable_email_is_published_once_under_one_id_and_its_copies_are_duplicates_across_a_sigkill_and_restart()
 {
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let maildir = TestDir::create();
    for dir in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.path.join(dir)).expect("maildir");
    }
    let fixtures = repo_root().join("crates/mail-mime/tests/fixtures");
    let mut parseable = HashSet::new();
    let mut unparseable = 0;
    for copy in 0..COPIES {
        for entry in std::fs::read_dir(&fixtures).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_none_or(|e| e != "eml") {
                continue;
            }
            let raw = std::fs::read(&path).expect("read");
            let stem = path.file_stem().expect("stem").to_string_lossy().replace(['.', ':'], "-");
            let id = format!("1700000000.M{copy:03}P1.{stem}");
            std::fs::write(maildir.path.join("new").join(&id), &raw).expect("write");
            if mail_mime::parse(&raw).is_ok() {
                parseable.insert(id);
            } else {
                unparseable += 1;
            }
        }
    }
    let urgent = "From: Pat <pat@example.com>\r\nTo: support@northwind.example\r\nSubject: URGENT: desk stuck at full height\r\nMessage-ID: <urgent@example.com>\r\n\r\nIt will not come down.\r\n";
    std::fs::write(maildir.path.join("new").join("1700000001.urgent"), urgent).expect("write");
    parseable.insert("1700000001.urgent".to_owned());
    assert!(unparseable > 0 && parseable.len() > 100, "{unparseable} / {}", parseable.len());

    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("mailbox.maildir", maildir.path.display().to_string())
        .set("mailbox.agent_email", AGENT.to_owned())
        .set("mailbox.poll_interval_ms", "100")
        .set("mailbox.claim_timeout_secs", "10")
        .build();
    let total = parseable.len() + unparseable;
    let cur_count = || std::fs::read_dir(maildir.path.join("cur")).map(|d| d.count()).unwrap_or(0);
    let mut poller = spawn(&bin_path("poller"), &[], &env);
    wait_for(Duration::from_secs(60), "the poller to get going", || async { (cur_count() >= 20).then_some(()) }).await;
    signal(&poller, "KILL");
    let _ = poller.wait().await;
    let done_before_kill = cur_count();
    let _poller = spawn(&bin_path("poller"), &[], &env);
    wait_for(Duration::from_secs(90), "new/ to be empty", || async {
        let left = std::fs::read_dir(maildir.path.join("new")).map(|d| d.count()).unwrap_or(1);
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(cur_count(), total, "every message moved to cur/ ({done_before_kill} before the kill)");

    let conn =
        lapin::Connection::connect(&vhost.amqp_url(), lapin::ConnectionProperties::default()).await.expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let mut published: Vec<EmailToClassify> = Vec::new();
    while let Some(m) = ch.basic_get("emails.to_classify".into(), BasicGetOptions { no_ack: true }).await.expect("get")
    {
        published.push(serde_json::from_slice(&m.delivery.data).expect("emails.to_classify body"));
    }
    // Urgent subjects get priority 8, and the priority queue hands the backlog out most urgent
    // first.
    let urgent_msg = published.iter().find(|m| m.email_id == "1700000001.urgent").expect("urgent published");
    assert_eq!(urgent_msg.priority, 8);
    assert_eq!(published[0].priority, 8);
    assert!(published.windows(2).all(|w| w[0].priority >= w[1].priority), "delivered in priority order");
    assert!(published.iter().any(|m| m.priority == 5), "ordinary mail keeps the default priority");
    let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
    for m in &published {
        assert_eq!(m.agent_email, AGENT);
        ids.entry(m.email_id.clone()).or_default().insert(m.message_id.clone());
    }
    // Each fixture was delivered COPIES times: one copy of each is published, whichever the
    // listing reached first.
    let email_of =
        |id: &str| id.split_once('.').map(|(_, rest)| rest.split_once('.').map_or(rest, |(_, s)| s).to_owned());
    let mut copies_published: HashMap<String, Vec<String>> = HashMap::new();
    for id in ids.keys() {
        assert!(parseable.contains(id), "{id} is not a parseable message");
        copies_published.entry(email_of(id).expect("an id")).or_default().push(id.clone());
    }
    let emails: HashSet<String> = parseable.iter().filter_map(|id| email_of(id)).collect();
    assert_eq!(copies_published.keys().cloned().collect::<HashSet<_>>(), emails, "every parseable email published");
    assert!(copies_published.values().all(|c| c.len() == 1), "each once: {copies_published:?}");
    assert!(ids.values().all(|set| set.len() == 1), "never published under a second id");

    let pool = sqlx::PgPool::connect(&db.url()).await.expect("pool");
    let rows: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT state, reason FROM mailbox_messages").fetch_all(&pool).await.expect("ledger");
    assert_eq!(rows.len(), total);
    let bad: Vec<_> = rows.iter().filter(|(s, _)| s == "unparseable").collect();
    assert_eq!(bad.len(), unparseable);
    assert!(bad.iter().all(|(_, reason)| reason.as_deref().is_some_and(|r| !r.is_empty())));
    assert_eq!(rows.iter().filter(|(s, _)| s == "published").count(), emails.len());
    let duplicates: Vec<(String, String)> =
        sqlx::query_as("SELECT mailbox_id, duplicate_of FROM mailbox_messages WHERE state = 'duplicate'")
            .fetch_all(&pool)
            .await
            .expect("duplicates");
    assert_eq!(duplicates.len(), parseable.len() - emails.len(), "every other copy is a duplicate");
    for (copy, of) in &duplicates {
        let email = email_of(copy).expect("an id");
        assert_eq!(copies_published[&email], std::slice::from_ref(of), "{copy} is a duplicate of the published copy");
    }
}

#[tokio::test]
async fn a_sample_rate_routes_only_that_share_of_new_mail_and_leaves_the_rest_untouched() {
    let (vhost, db, maildir) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
    for dir in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(maildir.path.join(dir)).expect("maildir");
    }
    let mut sampled = HashSet::new();
    let mut left = HashSet::new();
    for i in 0..120 {
        let id = format!("1764150000.M{i:03}P7.host");
        let raw = format!(
            "From: c{i}@example.com\r\nTo: {AGENT}\r\nSubject: Question {i}\r\nMessage-ID: <q{i}@example.com>\r\n\r\nHello?\r\n"
        );
        std::fs::write(maildir.path.join("new").join(&id), raw).expect("write");
        if poller::in_sample(0.25, &id) {
            sampled.insert(id)
        } else {
            left.insert(id)
        };
    }
    assert!(!sampled.is_empty() && left.len() > sampled.len());
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("mailbox.maildir", maildir.path.display().to_string())
        .set("mailbox.agent_email", AGENT.to_owned())
        .set("mailbox.poll_interval_ms", "100")
        .set("mailbox.sample_rate", "0.25")
        .build();
    // The queue must exist before the test reads it (a get on a missing queue closes the channel).
    let (code, out) = mailroom_tests::run(&bin_path("mailroom"), &["topology", "apply"], &env).await;
    assert_eq!(code, 0, "{out}");
    let _poller = spawn(&bin_path("poller"), &[], &env);
    let conn =
        lapin::Connection::connect(&vhost.amqp_url(), lapin::ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let mut published = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while published.len() < sampled.len() {
        assert!(std::time::Instant::now() < deadline, "only {} of {} sampled messages", published.len(), sampled.len());
        while let Ok(Some(m)) = ch.basic_get("emails.to_classify".into(), BasicGetOptions { no_ack: true }).await {
            let email: EmailToClassify = serde_json::from_slice(&m.delivery.data).expect("json");
            published.insert(email.email_id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A few more passes: nothing outside the sample is ever taken.
    tokio::time::sleep(Duration::from_millis(800)).await;
    while let Ok(Some(m)) = ch.basic_get("emails.to_classify".into(), BasicGetOptions { no_ack: true }).await {
        let email: EmailToClassify = serde_json::from_slice(&m.delivery.data).expect("json");
        published.insert(email.email_id);
    }
    assert_eq!(published, sampled);
    let still_new: HashSet<String> = std::fs::read_dir(maildir.path.join("new"))
        .expect("new")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(still_new, left, "mail outside the sample stays unread in new/");
}
