//! Many mailboxes in one deployment: mailboxes registered with `mailroom mailbox add`, served
//! by one poller and one sender process (and the classifier and generator between them), each
//! through its own source and sink, with its own quota; a mailbox whose credentials cannot be
//! resolved or are refused is shown as failing and stops nothing else; registry changes are
//! picked up without a restart; a copy of an email is answered once; a forged reply sends
//! nothing.
//!
//! The first test runs Maildir mailboxes only; the second the acceptance scenario of issue 15:
//! a Maildir mailbox, an IMAP mailbox on a real Dovecot answered through a real SMTP server
//! (aiosmtpd), and a Gmail mailbox on the Gmail fake; a spoofed sender's reply and a reply in a
//! thread a person answered are drafts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use gmail_fake::{FakeGmail, Method, NewMessage};
use lapin::options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use mailroom_tests::dovecot::{self, Dovecot};
use mailroom_tests::smtp::SmtpServer;
use mailroom_tests::tls_servers::TestCerts;
use mailroom_tests::{
    AUTHSERV_ID, TestDb, TestDir, TestVhost, authenticated, bin_path, maildir_messages, run, spawn_logged, wait_for,
};
use pipeline_core::messages::{EmailToSend, new_message_id, now};
use pipeline_core::topology::EMAILS_TO_SEND;
use pipeline_core::worker_env::WorkerEnv;
use sqlx::PgPool;

use crate::bad_input::RedisPrefix;

const SUPPORT: &str = "support@northwind.example";
const BILLING: &str = "billing@northwind.example";
const SALES: &str = "sales@northwind.example";

/// Customer `n`'s question to `to`, with the receiving server's `Authentication-Results`
/// (a pass) on top.
fn question(n: u32, to: &str) -> String {
    format!(
        "{}From: Customer {n} <customer{n}@example.com>\r\nTo: {to}\r\nSubject: How do I reset my Lift Pro ({n})?\r\n\
         Message-ID: <q{n}@example.com>\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\r\n\
         Hello, my Lift Pro desk does not respond to the buttons. How do I reset it? Customer {n}\r\n",
        authenticated(&format!("customer{n}@example.com"))
    )
}

/// A second copy of `question(n, to)`, as an alias or a re-delivery brings it.
fn copy_of(n: u32, to: &str) -> String {
    format!("Delivered-To: help@northwind.example\r\n{}", question(n, to))
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

/// The deployment's settings the tests share: the broker, database and Redis keys of the test,
/// the registry read every second, short polls and retries, and every support email answered
/// (a holding reply when no document answers it).
fn deployment(vhost: &TestVhost, db: &TestDb, dir: &Path, redis: &RedisPrefix) -> WorkerEnv {
    let path = |name: &str| dir.join(name).display().to_string();
    WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("http.listen", "127.0.0.1:0")
        // [mailbox] and [outbox] are not served once the registry holds mailboxes.
        .set("mailbox.maildir", path("unused-in"))
        .set("outbox.maildir", path("unused-out"))
        .set("mailbox.poll_interval_ms", "200")
        // Every mailbox trusts the test's receiving server (Gmail's too, instead of mx.google.com).
        .set("mailbox.authserv_ids", AUTHSERV_ID)
        .set("registry.refresh_secs", "1")
        .set("registry.lease_secs", "6")
        .set("rag.no_context", "holding_reply")
        .set("classifier.auto_answer_min_confidence", "0")
        .set("sender.redis_prefix", redis.0.clone())
        .set("topology.retry_delays_ms", "200,400")
}

/// `mailroom topology apply` and `mailroom migrate`.
async fn prepare(env: &[(&str, String)]) {
    for args in [&["topology", "apply"][..], &["migrate"]] {
        let (code, out) = run(&bin_path("mailroom"), args, env).await;
        assert_eq!(code, 0, "mailroom {args:?}: {out}");
    }
}

/// `--set key=value` for each pair.
fn set<K: AsRef<str>>(pairs: &[(K, String)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| ["--set".to_owned(), format!("{}={v}", k.as_ref())]).collect()
}

/// `--secret key=reference` for each pair (`env:VAR` or `file:/path`).
fn secrets<K: AsRef<str>>(pairs: &[(K, &str)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, r)| ["--secret".to_owned(), format!("{}={r}", k.as_ref())]).collect()
}

/// `mailroom mailbox <action> <address> <args>`, which must succeed.
async fn mailbox(env: &[(&str, String)], action: &str, address: &str, args: Vec<String>) {
    let mut all = vec!["mailbox".to_owned(), action.to_owned(), address.to_owned()];
    all.extend(args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let (code, out) = run(&bin_path("mailroom"), &all, env).await;
    assert_eq!(code, 0, "mailroom {all:?}: {out}");
}

/// A spawned worker: its binary's name, the process (killed on drop) and its log.
type Worker = (&'static str, tokio::process::Child, PathBuf);

/// The mail stages (poller, classifier, generator, sender), one process each, their logs kept
/// (and named on stderr) for whoever reads a failure.
fn workers(env: &[(&str, String)]) -> Vec<Worker> {
    pipeline_core::consumer::MAIL_STAGES
        .iter()
        .map(|stage| {
            let (child, log) = spawn_logged(&bin_path(stage.name), &[], env);
            eprintln!("{}: {}", stage.name, log.display());
            (stage.name, child, log)
        })
        .collect()
}

/// The log file of worker `name`.
fn log_of(workers: &[Worker], name: &str) -> PathBuf {
    workers.iter().find(|(n, _, _)| *n == name).map(|(_, _, log)| log.clone()).expect("a worker of that name")
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
    let redis = RedisPrefix::new();
    let env = deployment(&vhost, &db, &dir.path, &redis).build();
    let mailroom = bin_path("mailroom");
    prepare(&env).await;
    let add = |address: &'static str, args: Vec<String>| mailbox(&env, "add", address, args);
    add(
        SUPPORT,
        set(&[
            ("mailbox.maildir", path("support-in").display().to_string()),
            ("outbox.maildir", path("support-out").display().to_string()),
            ("sender.from_name", "Northwind Support".into()),
        ]),
    )
    .await;
    // Billing may send one reply per hour, and answers in German under its own signature (the
    // generator's per-mailbox reply policy; the offline answer's own words).
    add(
        BILLING,
        set(&[
            ("mailbox.maildir", path("billing-in").display().to_string()),
            ("outbox.maildir", path("billing-out").display().to_string()),
            ("sender.rate_limit", "1".into()),
            ("sender.rate_burst", "1".into()),
            ("sender.rate_window_secs", "3600".into()),
            ("rag.reply_language", "German".into()),
            ("rag.signature", "Das Billing-Team".into()),
        ]),
    )
    .await;
    // Sales reads IMAP with a password nobody set: it cannot work, and must stop nothing else.
    let mut sales = set(&[
        ("mailbox.kind", "imap".into()),
        ("mailbox.imap.host", "127.0.0.1".into()),
        ("mailbox.imap.username", "sales".into()),
    ]);
    sales.extend(secrets(&[("mailbox.imap.password", "env:MAILROOM_TEST_SALES_PASSWORD_UNSET")]));
    add(SALES, sales).await;
    let (code, out) = run(&mailroom, &["mailbox", "list"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(BILLING) && out.contains("imap") && !out.contains("MAILROOM_TEST_SALES_PASSWORD_UNSET="),
        "{out}"
    );

    let _workers = workers(&env);
    deliver(&path("support-in"), "1764150000.s1.host", &question(1, SUPPORT));
    deliver(&path("support-in"), "1764150001.s2.host", &question(2, SUPPORT));
    // A second copy of question 1, through an alias.
    deliver(&path("support-in"), "1764150002.s1copy.host", &copy_of(1, SUPPORT));
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
        let files = maildir_messages(&path(outbox));
        assert_eq!(files.len(), count, "{outbox}: {files:?}");
        for file in files {
            let reply = mail_mime::parse(&std::fs::read(&file).expect("read")).expect("a reply");
            assert_eq!(reply.from, agent, "{}", file.display());
            assert!(reply.to.iter().all(|to| to.starts_with("customer")), "{:?}", reply.to);
            // Each mailbox's reply policy: billing's in German with its signature, support's
            // in the customer's language (English) with the deployment's.
            let (greeting, signature) =
                if agent == BILLING { ("Guten Tag,", "Das Billing-Team") } else { ("Hello,", "The Support Team") };
            assert!(reply.body.starts_with(greeting) && reply.body.trim_end().ends_with(signature), "{}", reply.body);
        }
    }
    assert!(
        !path("unused-out").join("new").exists() || maildir_messages(&path("unused-out")).is_empty(),
        "[outbox] is not used"
    );
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
    assert_eq!(maildir_messages(&path("support-out")).len(), 3);

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

/// The replies the Gmail fake was asked to send (`messages.send`), their `raw` decoded.
fn gmail_sent(fake: &FakeGmail) -> Vec<mail_mime::ParsedEmail> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == Method::POST && r.path.ends_with("/messages/send"))
        .map(|r| {
            let body = r.json();
            let raw = body["raw"].as_str().expect("raw").trim_end_matches('=').to_owned();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw).expect("base64url");
            mail_mime::parse(&bytes).expect("a reply")
        })
        .collect()
}

/// The messages a Maildir or the SMTP server holds, parsed.
fn parsed(files: &[PathBuf]) -> Vec<mail_mime::ParsedEmail> {
    files.iter().map(|f| mail_mime::parse(&std::fs::read(f).expect("read")).expect("a reply")).collect()
}

/// Asserts that `replies` are exactly one reply each to `customers`, From `agent`.
fn assert_replies(what: &str, replies: &[mail_mime::ParsedEmail], agent: &str, customers: &[u32]) {
    let mut to: Vec<String> = replies.iter().flat_map(|r| r.to.clone()).collect();
    to.sort();
    let expected: Vec<String> = customers.iter().map(|n| format!("customer{n}@example.com")).collect();
    assert_eq!(to, expected, "{what}: the recipients");
    for reply in replies {
        assert_eq!(reply.from, agent, "{what}: From of the reply to {:?}", reply.to);
        assert!(reply.subject.starts_with("Re: How do I reset my Lift Pro"), "{what}: {}", reply.subject);
    }
}

/// Every message of the dead-letter queue, taken off it: `(error type, email id)`.
async fn dead_letters(amqp_url: &str) -> Vec<(String, String)> {
    let conn = Connection::connect(amqp_url, ConnectionProperties::default()).await.expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    while let Some(m) = ch.basic_get("dead_letter_queue".into(), BasicGetOptions { no_ack: true }).await.expect("get") {
        let info = pipeline_core::dead_letter::decode(&m.delivery.properties, &m.delivery.data, false);
        out.push((info.error_type, info.email_id.unwrap_or_default()));
    }
    let _ = conn.close(200, "done".into()).await;
    out
}

/// Publishes `msg` to `emails.to_send` as any holder of a broker credential could: with lapin,
/// straight to its exchange and routing key, confirmed by the broker.
async fn publish_to_send(amqp_url: &str, msg: &EmailToSend) {
    let route = EMAILS_TO_SEND.route();
    assert_eq!((route.exchange, route.routing_key), ("email_exchange", "send"));
    let conn = Connection::connect(amqp_url, ConnectionProperties::default()).await.expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm.select");
    let props = BasicProperties::default()
        .with_message_id(msg.message_id.as_str().into())
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    let body = serde_json::to_vec(msg).expect("encode");
    let options = BasicPublishOptions { mandatory: true, ..Default::default() };
    let confirm = ch
        .basic_publish(route.exchange.into(), route.routing_key.into(), options, &body, props)
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(matches!(confirm, Confirmation::Ack(None)), "the broker took and routed it: {confirm:?}");
    let _ = conn.close(200, "done".into()).await;
}

/// The acceptance test of issue 15: three mailboxes on three kinds of provider in one
/// deployment, one poller and one sender process for all of them.
///
/// - billing@: Maildir in, Maildir outbox;
/// - sales@: IMAP on a real Dovecot (password by `env:` reference), replies through a real SMTP
///   server, aiosmtpd with STARTTLS and AUTH (password by `file:` reference);
/// - support@: Gmail in and out, on the Gmail fake (client secret and refresh token by `env:`
///   reference), allowed one reply per hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_mailboxes_on_maildir_imap_smtp_and_gmail_each_answered_through_its_own_provider() {
    let started = std::time::Instant::now();
    let (vhost, db, dir, redis) =
        (TestVhost::create().await, TestDb::create().await, TestDir::create(), RedisPrefix::new());
    let path = |name: &str| dir.path.join(name);
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(path("billing-in").join(sub)).expect("maildir");
    }
    let imap = Dovecot::start("");
    let smtp_certs = TestCerts::generate();
    let (smtp_user, smtp_password) = ("mailroom", "smtp-pw-5e2a");
    let smtp = SmtpServer::start(&smtp_certs, smtp_user, smtp_password).await;
    std::fs::write(path("smtp-password"), smtp_password).expect("password file");
    let gmail = FakeGmail::start().await;
    assert_eq!(SUPPORT, gmail_fake::ADDRESS, "the fake's mailbox");

    let mut env = deployment(&vhost, &db, &dir.path, &redis).build();
    // The secrets, where the registry's references point: the poller's and sender's environment.
    env.push(("NORTHWIND_IMAP_PASSWORD", dovecot::PASSWORD.to_owned()));
    env.push(("NORTHWIND_GMAIL_CLIENT_SECRET", gmail_fake::CLIENT_SECRET.to_owned()));
    // The refresh token in a file, as a mounted secret: rotated in place below.
    std::fs::write(path("gmail-refresh-token"), gmail_fake::REFRESH_TOKEN).expect("token file");
    let refresh_token = format!("file:{}", path("gmail-refresh-token").display());
    prepare(&env).await;
    mailbox(
        &env,
        "add",
        BILLING,
        set(&[
            ("mailbox.maildir", path("billing-in").display().to_string()),
            ("outbox.maildir", path("billing-out").display().to_string()),
        ]),
    )
    .await;
    mailbox(
        &env,
        "add",
        SALES,
        [
            set(&[
                ("mailbox.kind", "imap".into()),
                ("mailbox.imap.host", "127.0.0.1".into()),
                ("mailbox.imap.port", imap.port().to_string()),
                ("mailbox.imap.username", dovecot::USER.into()),
                ("mailbox.imap.tls_ca_file", imap.ca_file().display().to_string()),
                ("mailbox.imap.timeout_secs", "10".into()),
                ("outbox.kind", "smtp".into()),
                ("outbox.smtp.host", "localhost".into()),
                ("outbox.smtp.port", smtp.port().to_string()),
                ("outbox.smtp.username", smtp_user.into()),
                ("outbox.smtp.ca_file", smtp_certs.file("ca.pem")),
                ("outbox.smtp.timeout_secs", "10".into()),
                // SMTP has no drafts: they go to this Maildir.
                ("outbox.maildir", path("sales-drafts").display().to_string()),
            ]),
            secrets(&[
                ("mailbox.imap.password", "env:NORTHWIND_IMAP_PASSWORD"),
                ("outbox.smtp.password", format!("file:{}", path("smtp-password").display()).as_str()),
            ]),
        ]
        .concat(),
    )
    .await;
    let mut google = Vec::new();
    for table in ["mailbox", "outbox"] {
        let key = |name: &str| format!("{table}.gmail.{name}");
        google.extend(set(&[
            (key("api_base"), gmail.api_base()),
            (key("token_url"), gmail.token_url()),
            (key("client_id"), gmail_fake::CLIENT_ID.to_owned()),
        ]));
        google.extend(secrets(&[
            (key("client_secret"), "env:NORTHWIND_GMAIL_CLIENT_SECRET"),
            (key("refresh_token"), refresh_token.as_str()),
        ]));
    }
    mailbox(
        &env,
        "add",
        SUPPORT,
        [
            set(&[
                ("mailbox.kind", "gmail".into()),
                ("outbox.kind", "gmail".into()),
                // One reply per hour.
                ("sender.rate_limit", "1".into()),
                ("sender.rate_burst", "1".into()),
                ("sender.rate_window_secs", "3600".into()),
            ]),
            google,
        ]
        .concat(),
    )
    .await;
    // The registry holds references, never the secrets.
    let pool = PgPool::connect(&db.url()).await.expect("pool");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT settings::text FROM mailboxes").fetch_all(&pool).await.expect("registry");
    assert_eq!(stored.len(), 3);
    for secret in [dovecot::PASSWORD, smtp_password, gmail_fake::CLIENT_SECRET, gmail_fake::REFRESH_TOKEN] {
        assert!(stored.iter().all(|s| !s.contains(secret)), "{secret} stored: {stored:?}");
    }

    let workers = workers(&env);
    // Billing: one email. Sales: one email, twice (a copy through an alias). Support: two
    // emails, the first of them twice.
    deliver(&path("billing-in"), "1764150001.b1.host", &question(1, BILLING));
    let mut mua = dovecot::client(&imap).await;
    dovecot::append(&mut mua, "INBOX", question(2, SALES).as_bytes(), None).await;
    dovecot::append(&mut mua, "INBOX", copy_of(2, SALES).as_bytes(), None).await;
    gmail.deliver(NewMessage::new(question(3, SUPPORT), &["INBOX", "UNREAD"]).thread("18c2f00003"));
    gmail.deliver(NewMessage::new(copy_of(3, SUPPORT), &["INBOX", "UNREAD"]).thread("18c2f00003"));
    gmail.deliver(NewMessage::new(question(4, SUPPORT), &["INBOX", "UNREAD"]).thread("18c2f00004"));

    wait_for(Duration::from_secs(60), "a reply sent by each mailbox", || async {
        let sent = [replies(&pool, BILLING, "sent").await, replies(&pool, SALES, "sent").await];
        (sent == [1, 1] && replies(&pool, SUPPORT, "sent").await == 1).then_some(())
    })
    .await;
    eprintln!("first replies after {:?}", started.elapsed());
    // Support's second email was answered by the generator too; its reply waits for the quota
    // while the others go out. Copies and the waiting reply get a moment to go wrong.
    wait_for(Duration::from_secs(30), "support's second reply generated", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM responses WHERE agent_email = $1")
            .bind(SUPPORT)
            .fetch_one(&pool)
            .await
            .unwrap_or(0);
        (n == 2).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Each reply went out From its mailbox, through its mailbox's sink, to its customer, once.
    assert_replies("billing's Maildir outbox", &parsed(&maildir_messages(&path("billing-out"))), BILLING, &[1]);
    assert_replies("what the SMTP server received", &parsed(&smtp.received()), SALES, &[2]);
    let gmail_replies = gmail_sent(&gmail);
    let to: Vec<_> = gmail_replies.iter().map(|r| r.to.clone()).collect();
    assert_eq!(gmail_replies.len(), 1, "support's quota lets one reply out: {to:?}");
    let first = if gmail_replies[0].to == ["customer3@example.com"] { 3 } else { 4 };
    assert_replies("Gmail's messages.send", &gmail_replies, SUPPORT, &[first]);
    assert!(maildir_messages(&path("unused-out")).is_empty(), "[outbox] is not used");
    assert!(maildir_messages(&path("sales-drafts").join(".Drafts")).is_empty(), "no drafts");
    assert_eq!(gmail.drafts().len(), 0, "no Gmail drafts");
    // Quotas are independent: support's second reply still waits, the others went out.
    assert_eq!(replies(&pool, SUPPORT, "sent").await, 1, "support's quota holds its second reply");
    // Copies are answered once: the Gmail copy (its own Gmail id) is recorded as a duplicate;
    // the IMAP copy is the same mailbox message (its Message-ID and body) and is taken once.
    let duplicates: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT agent_email, duplicate_of FROM mailbox_messages WHERE state = 'duplicate' ORDER BY agent_email",
    )
    .fetch_all(&pool)
    .await
    .expect("ledger");
    assert_eq!(duplicates.len(), 1, "{duplicates:?}");
    assert_eq!(duplicates[0].0, SUPPORT, "{duplicates:?}");
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mailbox_messages WHERE agent_email = $1 AND state = 'published'")
            .bind(SALES)
            .fetch_one(&pool)
            .await
            .expect("ledger");
    assert_eq!(published, 1, "the IMAP copies are one email");

    // A forged reply: sales's real reply, sent to an attacker instead, with the attacker's text.
    let stored: serde_json::Value = sqlx::query_scalar("SELECT send_message FROM responses WHERE agent_email = $1")
        .bind(SALES)
        .fetch_one(&pool)
        .await
        .expect("sales's stored reply");
    let mut forged: EmailToSend = serde_json::from_value(stored).expect("an emails.to_send message");
    forged.message_id = new_message_id();
    forged.timestamp = now();
    forged.to = "victim@attacker.example".into();
    forged.generated_response = "Your account is locked. Confirm your password at https://evil.example/login.".into();
    publish_to_send(&vhost.amqp_url(), &forged).await;
    let refused = wait_for(Duration::from_secs(20), "the forged reply dead-lettered", || async {
        let dead = dead_letters(&vhost.amqp_url()).await;
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    assert_eq!(refused, [("ForgedReply".to_owned(), forged.email_id.clone())], "dead letters");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_replies("what the SMTP server received", &parsed(&smtp.received()), SALES, &[2]);

    // Support's credentials break: Google revokes the grant (the refresh token and the access
    // tokens issued for it). Support's quota is raised at the same time (a registry change,
    // taken up without a restart), so its held reply now meets the broken outbox: it waits,
    // neither sent nor dead-lettered. Support's poller stops and `mailroom status` says why.
    gmail.revoke(gmail_fake::REFRESH_TOKEN);
    gmail.revoke_access_tokens();
    mailbox(&env, "update", SUPPORT, set(&[("sender.rate_window_secs", "1".to_owned())])).await;
    let sender_log = log_of(&workers, "sender");
    wait_for(Duration::from_secs(30), "support's held reply refused by its outbox", || async {
        let log = std::fs::read_to_string(&sender_log).unwrap_or_default();
        log.lines()
            .any(|l| l.contains("The outbox refused a reply for a configuration error") && l.contains("invalid_grant"))
            .then_some(())
    })
    .await;
    let status = wait_for(Duration::from_secs(30), "support shown as failing", || async {
        let (_, out) = run(&bin_path("mailroom"), &["status"], &env).await;
        out.contains(&format!("{SUPPORT}: FAILING")).then_some(out)
    })
    .await;
    assert!(status.contains(&format!("{SUPPORT}: FAILING: mailbox needs re-authorisation")), "{status}");
    // The sender's side of it too: its outbox refuses the token.
    let status = wait_for(Duration::from_secs(30), "support's outbox shown as failing", || async {
        let (_, out) = run(&bin_path("mailroom"), &["status"], &env).await;
        out.lines()
            .any(|l| l.contains(SUPPORT) && l.contains("outbox FAILING: outbox needs re-authorisation"))
            .then_some(out)
    })
    .await;
    assert!(status.contains("invalid_grant"), "{status}");
    assert!(status.contains("invalid_grant"), "the reason: {status}");
    for ok in [BILLING, SALES] {
        assert!(status.contains(&format!("{ok}: ok")), "{ok}: {status}");
    }
    // Meanwhile billing and sales answer their new mail; support's waits.
    deliver(&path("billing-in"), "1764150005.b5.host", &question(5, BILLING));
    dovecot::append(&mut mua, "INBOX", question(6, SALES).as_bytes(), None).await;
    gmail.deliver(NewMessage::new(question(7, SUPPORT), &["INBOX", "UNREAD"]).thread("18c2f00007"));
    wait_for(Duration::from_secs(60), "billing's and sales's new mail answered", || async {
        let sent = [replies(&pool, BILLING, "sent").await, replies(&pool, SALES, "sent").await];
        (sent == [2, 2]).then_some(())
    })
    .await;
    assert_replies("billing's Maildir outbox", &parsed(&maildir_messages(&path("billing-out"))), BILLING, &[1, 5]);
    assert_replies("what the SMTP server received", &parsed(&smtp.received()), SALES, &[2, 6]);
    assert_eq!(gmail_sent(&gmail).len(), 1, "nothing more went out for support");
    assert_eq!(replies(&pool, SUPPORT, "sent").await, 1);

    // Re-authorised: the new refresh token is written over the secret file the registry points
    // at (a rotated mounted secret) — no `mailbox update`, no restart. Support's held reply and
    // its new mail go out; the copy of question 3 still has no reply of its own.
    gmail.grant("1//northwind-reauthorised", &[gmail_fake::scope::MODIFY]);
    std::fs::write(path("gmail-refresh-token"), "1//northwind-reauthorised").expect("token file");
    wait_for(Duration::from_secs(30), "support's held reply and new mail answered", || async {
        (replies(&pool, SUPPORT, "sent").await == 3).then_some(())
    })
    .await;
    assert_replies("Gmail's messages.send", &gmail_sent(&gmail), SUPPORT, &[3, 4, 7]);
    let status = wait_for(Duration::from_secs(30), "support shown as ok again", || async {
        let (_, out) = run(&bin_path("mailroom"), &["status"], &env).await;
        out.contains(&format!("{SUPPORT}: ok")).then_some(out)
    })
    .await;
    assert!(!status.contains("FAILING"), "{status}");

    // A spoofed sender: the receiving server says DMARC failed. The reply is a draft for a
    // person, with the reason (billing's quota is spent, but a draft takes none).
    let spoofed = question(8, BILLING)
        .replacen("spf=pass", "spf=fail", 1)
        .replacen("dkim=pass", "dkim=fail", 1)
        .replacen("dmarc=pass", "dmarc=fail", 1);
    deliver(&path("billing-in"), "1764150008.b8.host", &spoofed);
    // A person of support answers customer 4 in Gmail (a message under SENT in that thread,
    // which the sender did not send); customer 4's follow-up in the thread is drafted for them.
    let person = "From: Jo at Northwind <support@northwind.example>\r\nTo: customer4@example.com\r\n\
        Subject: Re: How do I reset my Lift Pro (4)?\r\nMessage-ID: <jo-4@mail.gmail.com>\r\n\
        In-Reply-To: <q4@example.com>\r\nReferences: <q4@example.com>\r\n\r\nI will call you. Jo\r\n";
    gmail.deliver(NewMessage::new(person.to_owned(), &["SENT"]).thread("18c2f00004"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let follow_up = question(9, SUPPORT)
        .replace("customer9@", "customer4@")
        .replace("Message-ID: <q9@example.com>", "Message-ID: <q9@example.com>\r\nIn-Reply-To: <jo-4@mail.gmail.com>\r\nReferences: <q4@example.com> <jo-4@mail.gmail.com>");
    gmail.deliver(NewMessage::new(follow_up, &["INBOX", "UNREAD"]).thread("18c2f00004"));
    let reasons: Vec<(String, String)> = wait_for(Duration::from_secs(60), "the two drafts", || async {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT agent_email, draft_reason FROM replies WHERE state = 'drafted' AND draft_reason IS NOT NULL ORDER BY agent_email",
        )
        .fetch_all(&pool)
        .await
        .unwrap_or_default();
        (rows.len() == 2).then_some(rows)
    })
    .await;
    assert_eq!(reasons[0].0, BILLING, "{reasons:?}");
    assert!(reasons[0].1.contains("unauthenticated sender: dmarc=fail"), "{reasons:?}");
    assert_eq!(reasons[1].0, SUPPORT, "{reasons:?}");
    assert!(reasons[1].1.contains("a person of the mailbox has replied in this thread"), "{reasons:?}");
    assert_eq!(maildir_messages(&path("billing-out").join(".Drafts")).len(), 1, "billing's draft");
    assert_eq!(gmail.drafts().len(), 1, "support's draft, in Gmail");
    assert_replies("Gmail's messages.send", &gmail_sent(&gmail), SUPPORT, &[3, 4, 7]);
    assert_eq!(dead_letters(&vhost.amqp_url()).await, [], "nothing else was dead-lettered");
    let _ = mua.logout().await;
    pool.close().await;
    eprintln!("done after {:?}", started.elapsed());
}
