//! Many mailboxes in one deployment: mailboxes registered with `mailroom mailbox add`, served
//! by one poller and one sender process (and the classifier and generator between them), each
//! through its own Maildir source and outbox, with its own quota; a mailbox whose credentials
//! cannot be resolved is shown as failing and stops nothing else; registry changes are picked up
//! without a restart; a copy of an email is answered once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailroom_tests::{AUTHSERV_ID, TestDb, TestDir, TestVhost, authenticated, bin_path, run, spawn, wait_for};
use pipeline_core::worker_env::WorkerEnv;
use sqlx::PgPool;

const SUPPORT: &str = "support@northwind.example";
const BILLING: &str = "billing@northwind.example";
const SALES: &str = "sales@northwind.example";

/// Sent replies (`new/`, `cur/`) of a Maildir outbox.
fn sent(outbox: &Path) -> Vec<PathBuf> {
    ["new", "cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(outbox.join(d)).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect()
}

fn question(n: u32, to: &str) -> String {
    format!(
        "{}From: Customer {n} <customer{n}@example.com>\r\nTo: {to}\r\nSubject: How do I reset my Lift Pro ({n})?\r\n\
         Message-ID: <q{n}@example.com>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n\
         Hello, my Lift Pro desk does not respond to the buttons. How do I reset it? Customer {n}\r\n",
        authenticated(&format!("customer{n}@example.com"))
    )
}

fn deliver(inbox: &Path, name: &str, text: &str) {
    std::fs::write(inbox.join("new").join(name), text).expect("deliver");
}

async fn replies(pool: &PgPool, agent: &str, state: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM replies WHERE agent_email = $1 AND state = $2")
        .bind(agent)
        .bind(state)
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

#[tokio::test]
async fn registered_mailboxes_are_served_by_one_poller_and_one_sender_each_through_its_own_outbox() {
    let (vhost, db, dir) = (TestVhost::create().await, TestDb::create().await, TestDir::create());
    let path = |name: &str| dir.path.join(name);
    for inbox in ["support-in", "billing-in"] {
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(path(inbox).join(sub)).expect("maildir");
        }
    }
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("http.listen", "127.0.0.1:0")
        // [mailbox] and [outbox] are not served once the registry holds mailboxes.
        .set("mailbox.maildir", path("unused-in").display().to_string())
        .set("outbox.maildir", path("unused-out").display().to_string())
        .set("mailbox.poll_interval_ms", "200")
        // Every mailbox inherits the deployment's trusted receiving server.
        .set("mailbox.authserv_ids", AUTHSERV_ID)
        .set("registry.refresh_secs", "1")
        .set("registry.lease_secs", "6")
        .set("rag.no_context", "holding_reply")
        .set("classifier.auto_answer_min_confidence", "0")
        .set("sender.redis_prefix", format!("mailroom-test:{}", uuid::Uuid::new_v4().simple()))
        .set("topology.retry_delays_ms", "200,400")
        .build();
    let mailroom = bin_path("mailroom");
    for args in [&["topology", "apply"][..], &["migrate"]] {
        let (code, out) = run(&mailroom, args, &env).await;
        assert_eq!(code, 0, "mailroom {args:?}: {out}");
    }
    let add = |address: &'static str, extra: Vec<String>| {
        let env = env.clone();
        let mailroom = mailroom.clone();
        async move {
            let mut args = vec!["mailbox".to_owned(), "add".to_owned(), address.to_owned()];
            args.extend(extra);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, out) = run(&mailroom, &args, &env).await;
            assert_eq!(code, 0, "mailbox add {address}: {out}");
        }
    };
    let set = |pairs: &[(&str, String)]| {
        pairs.iter().flat_map(|(k, v)| ["--set".to_owned(), format!("{k}={v}")]).collect::<Vec<_>>()
    };
    add(
        SUPPORT,
        set(&[
            ("mailbox.maildir", path("support-in").display().to_string()),
            ("outbox.maildir", path("support-out").display().to_string()),
            ("sender.from_name", "Northwind Support".into()),
        ]),
    )
    .await;
    // Billing may send one reply per hour.
    add(
        BILLING,
        set(&[
            ("mailbox.maildir", path("billing-in").display().to_string()),
            ("outbox.maildir", path("billing-out").display().to_string()),
            ("sender.rate_limit", "1".into()),
            ("sender.rate_burst", "1".into()),
            ("sender.rate_window_secs", "3600".into()),
        ]),
    )
    .await;
    // Sales reads IMAP with a password nobody set: it cannot work, and must stop nothing else.
    let mut sales = set(&[
        ("mailbox.kind", "imap".into()),
        ("mailbox.imap.host", "127.0.0.1".into()),
        ("mailbox.imap.username", "sales".into()),
    ]);
    sales.extend(["--secret".to_owned(), "mailbox.imap.password=env:MAILROOM_TEST_SALES_PASSWORD_UNSET".to_owned()]);
    add(SALES, sales).await;
    let (code, out) = run(&mailroom, &["mailbox", "list"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(BILLING) && out.contains("imap") && !out.contains("MAILROOM_TEST_SALES_PASSWORD_UNSET="),
        "{out}"
    );

    let _workers: Vec<_> =
        pipeline_core::consumer::MAIL_STAGES.iter().map(|stage| spawn(&bin_path(stage.name), &[], &env)).collect();
    deliver(&path("support-in"), "1764150000.s1.host", &question(1, SUPPORT));
    deliver(&path("support-in"), "1764150001.s2.host", &question(2, SUPPORT));
    // A second copy of question 1, through an alias.
    deliver(
        &path("support-in"),
        "1764150002.s1copy.host",
        &format!("Delivered-To: help@northwind.example\r\n{}", question(1, SUPPORT)),
    );
    deliver(&path("billing-in"), "1764150003.b3.host", &question(3, BILLING));
    deliver(&path("billing-in"), "1764150004.b4.host", &question(4, BILLING));

    let pool = PgPool::connect(&db.url()).await.expect("pool");
    wait_for(Duration::from_secs(90), "support's two replies and billing's one", || async {
        let (s, b) = (replies(&pool, SUPPORT, "sent").await, replies(&pool, BILLING, "sent").await);
        (s == 2 && b == 1).then_some(())
    })
    .await;
    // Each reply went out From its own mailbox, through its own outbox.
    for (outbox, agent, count) in [("support-out", SUPPORT, 2), ("billing-out", BILLING, 1)] {
        let files = sent(&path(outbox));
        assert_eq!(files.len(), count, "{outbox}: {files:?}");
        for file in files {
            let reply = mail_mime::parse(&std::fs::read(&file).expect("read")).expect("a reply");
            assert_eq!(reply.from, agent, "{}", file.display());
            assert!(reply.to.iter().all(|to| to.starts_with("customer")), "{:?}", reply.to);
        }
    }
    assert!(!path("unused-out").join("new").exists() || sent(&path("unused-out")).is_empty(), "[outbox] is not used");
    // Billing's quota is spent: its second reply waits, support's went out regardless.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replies(&pool, BILLING, "sent").await, 1, "billing's quota holds its second reply");
    // The copy of question 1 was recorded as a duplicate, not answered.
    let duplicates: i64 = sqlx::query_scalar("SELECT count(*) FROM mailbox_messages WHERE state = 'duplicate'")
        .fetch_one(&pool)
        .await
        .expect("ledger");
    assert_eq!(duplicates, 1);

    // `mailroom status` shows every mailbox, sales failing with the reason.
    let (_, out) = run(&mailroom, &["status"], &env).await;
    assert!(
        out.contains(&format!("{SALES}: FAILING")) && out.contains("MAILROOM_TEST_SALES_PASSWORD_UNSET is not set"),
        "{out}"
    );
    assert!(out.contains(&format!("{SUPPORT}: ok")), "{out}");

    // Disabled: its new mail is left alone; enabled again: answered, without a restart.
    let (code, out) = run(&mailroom, &["mailbox", "disable", SUPPORT], &env).await;
    assert_eq!(code, 0, "{out}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    deliver(&path("support-in"), "1764150005.s5.host", &question(5, SUPPORT));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(path("support-in").join("new/1764150005.s5.host").exists(), "a disabled mailbox is not polled");
    let (code, out) = run(&mailroom, &["mailbox", "enable", SUPPORT], &env).await;
    assert_eq!(code, 0, "{out}");
    wait_for(Duration::from_secs(60), "the enabled mailbox's new mail answered", || async {
        (replies(&pool, SUPPORT, "sent").await == 3).then_some(())
    })
    .await;
    assert_eq!(sent(&path("support-out")).len(), 3);

    // A person of the support team answers customer 2 from their mail client (saved in the
    // Maildir's .Sent folder); customer 2's follow-up in that thread is drafted for them, not
    // answered automatically. Customer 1's follow-up, in a thread no person answered, is sent.
    let person = "From: Jo at Northwind <support@northwind.example>\r\nTo: customer2@example.com\r\n\
        Subject: Re: How do I reset my Lift Pro (2)?\r\nMessage-ID: <jo-1@mail.northwind.example>\r\n\
        In-Reply-To: <q2@example.com>\r\nReferences: <q2@example.com>\r\n\r\nHi, I will call you today. Jo\r\n";
    std::fs::create_dir_all(path("support-in").join(".Sent/cur")).expect(".Sent");
    std::fs::write(path("support-in").join(".Sent/cur/1764150010.jo1.host:2,S"), person).expect("person's reply");
    let follow_up = |n: u32, answered: &str| {
        question(n, SUPPORT)
            .replace(
                &format!("Message-ID: <q{n}@example.com>"),
                &format!("Message-ID: <q{n}@example.com>\r\nIn-Reply-To: <{answered}>\r\nReferences: <{answered}>"),
            )
            .replace(&format!("customer{n}@"), &format!("customer{}@", &answered[1..2]))
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    deliver(&path("support-in"), "1764150011.s6.host", &follow_up(6, "q2@example.com"));
    deliver(&path("support-in"), "1764150012.s7.host", &follow_up(7, "q1@example.com"));
    let drafted: Vec<String> = wait_for(Duration::from_secs(60), "both follow-ups handled", || async {
        let rows: Vec<(String, Option<String>)> =
            sqlx::query_as("SELECT state, draft_reason FROM replies WHERE agent_email = $1 AND recipient = 'customer2@example.com' AND state = 'drafted'")
                .bind(SUPPORT)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
        let sent_to_1: i64 = sqlx::query_scalar("SELECT count(*) FROM replies WHERE agent_email = $1 AND recipient = 'customer1@example.com' AND state = 'sent'")
            .bind(SUPPORT)
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        (rows.len() == 1 && sent_to_1 == 2).then(|| rows.into_iter().filter_map(|(_, r)| r).collect())
    })
    .await;
    assert!(drafted[0].contains("a person of the mailbox has replied in this thread"), "{drafted:?}");
}
