//! The Gmail source against the project's fake Google (`gmail-fake`: Gmail's wire format —
//! string-encoded 64-bit ids, lists omitted when empty, base64url `raw` with and without
//! padding, Google's error envelope with its reasons and "Retry after" texts — with scopes
//! enforced as Google does), with the real broker (a throw-away vhost) and database (a
//! throw-away database) behind the ledger. Each test drives the poller one pass at a time and
//! checks what reached `emails.to_classify`, what the ledger and cursor say, and what the
//! poller asked Gmail.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gmail_fake::{
    ACCESS_TOKEN_PREFIX, CLIENT_ID, CLIENT_SECRET, FakeGmail, Method, NewMessage, REFRESH_TOKEN, Reply, scope,
};
use mailroom_tests::{TestDb, TestVhost};
use pipeline_core::messages::EmailToClassify;
use pipeline_core::worker_env::WorkerEnv;
use pipeline_core::{Producer, Settings, Telemetry};
use poller::cursor::{self, Cursor, CursorKey};
use poller::{GmailSource, GmailSourceSettings, Ledger, MailboxSettings, Poller, SourceError, Step};
use serde_json::Value;

const AGENT: &str = "support@northwind.example";
const API: &str = "/gmail/v1/users/me";

/// Google's error envelope, as Gmail writes it for these failures.
fn google_error(code: u16, message: &str, reason: &str, status: &str) -> Reply {
    Reply::google(code, status, reason, "global", message)
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// Delivers `raw` into the fake's mailbox under Gmail id `id` in thread `thread_id`, served
/// with or without base64 padding.
fn deliver(fake: &FakeGmail, id: &str, thread_id: &str, labels: &[&str], raw: Vec<u8>, padded: bool) {
    fake.deliver(NewMessage::new(raw, labels).id(id).thread(thread_id).padded(padded));
}

/// The poller over the fake with `refresh_token`, on `vhost` and `db`, through the real
/// configuration layers as the binary reads them.
async fn poller(
    fake: &FakeGmail,
    vhost: &TestVhost,
    db: &TestDb,
    refresh_token: &str,
    mark_read: &str,
) -> Poller<GmailSource> {
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("mailbox.kind", "gmail")
        .set("mailbox.agent_email", AGENT.to_owned())
        .set("mailbox.gmail.api_base", fake.api_base())
        .set("mailbox.gmail.token_url", fake.token_url())
        .set("mailbox.gmail.client_id", CLIENT_ID.to_owned())
        .set("mailbox.gmail.client_secret", CLIENT_SECRET.to_owned())
        .set("mailbox.gmail.refresh_token", refresh_token.to_owned())
        // Small pages, so every listing spans several.
        .set("mailbox.gmail.page_size", "2")
        // These tests step pass by pass and expect each to apply what was recorded before it.
        .set("mailbox.outcome_interval_ms", "0")
        .set("mailbox.mark_read", mark_read.to_owned())
        // These tests follow the inbox sync call by call; the scan of SENT for a person's
        // replies (`mailbox.after_person_reply`) is tested end to end in tests/e2e/mailboxes.rs.
        .set("mailbox.after_person_reply", "send")
        .build();
    let settings = Settings::load_from(None, env.iter().map(|(k, v)| ((*k).to_owned(), v.clone()))).expect("settings");
    let mailbox: MailboxSettings = settings.section("mailbox").expect("[mailbox]");
    let gmail_settings = GmailSourceSettings::from_settings(&settings).expect("[mailbox.gmail]");
    assert_eq!(gmail_settings.client.query, "is:unread in:inbox");
    assert_eq!(gmail_settings.client.processed_label, "Mailroom/Processed");
    assert_eq!(gmail_settings.page_size, 2);
    assert!(gmail_settings.remove_unread);
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await.expect("database");
    let producer = Producer::new("poller-gmail-test", &settings, Arc::new(Telemetry::default()));
    // Declares the topology, so the test can read the queue even before anything is published.
    producer.connect().await.expect("broker");
    let source = GmailSource::new(AGENT, &gmail_settings).expect("gmail source");
    Poller::new(source, Ledger::new(pool, producer, mailbox))
}

/// One `messages.modify` request: the label ids added and removed.
type LabelChange = (Vec<String>, Vec<String>);

/// Everything one test needs: the fake, a vhost, a database, and the poller.
struct Harness {
    // Dropped first: its connections go before the vhost and database do.
    poller: Poller<GmailSource>,
    fake: FakeGmail,
    /// `mailbox.mark_read`: these tests of publishing keep the behaviour of marking mail read
    /// when published; the outcome test uses the default.
    mark_read: &'static str,
    vhost: TestVhost,
    db: TestDb,
}

impl Harness {
    async fn start(fake: FakeGmail) -> Self {
        Self::start_with(fake, REFRESH_TOKEN).await
    }

    async fn start_with(fake: FakeGmail, refresh_token: &str) -> Self {
        Self::start_marking(fake, refresh_token, "published").await
    }

    async fn start_marking(fake: FakeGmail, refresh_token: &str, mark_read: &'static str) -> Self {
        let vhost = TestVhost::create().await;
        let db = TestDb::create().await;
        let poller = poller(&fake, &vhost, &db, refresh_token, mark_read).await;
        Self { poller, fake, mark_read, vhost, db }
    }

    /// A new poller process on the same mailbox, broker and database, with `refresh_token`.
    async fn restart_with(&mut self, refresh_token: &str) {
        let fresh = poller(&self.fake, &self.vhost, &self.db, refresh_token, self.mark_read).await;
        let mut old = std::mem::replace(&mut self.poller, fresh);
        old.close().await;
        old.ledger().pool().close().await;
    }

    async fn synced(&mut self) -> poller::ScanReport {
        match self.poller.step().await {
            Step::Synced(report) => report,
            other => panic!("expected a completed pass, got {other:?}"),
        }
    }
    /// Everything in `emails.to_classify` now (taken off the queue).
    async fn drain(&self) -> Vec<EmailToClassify> {
        self.vhost.drain("emails.to_classify").await
    }

    async fn cursor(&self) -> Option<String> {
        let key = CursorKey::new(AGENT, "gmail", "me");
        cursor::load(self.poller.ledger().pool(), &key).await.expect("cursor").map(|c| c.position)
    }

    async fn ledger_row(&self, mailbox_id: &str) -> (String, String, Option<String>) {
        sqlx::query_as(
            "SELECT state, message_id, reason FROM mailbox_messages WHERE agent_email = $1 AND mailbox_id = $2",
        )
        .bind(AGENT)
        .bind(mailbox_id)
        .fetch_one(self.poller.ledger().pool())
        .await
        .expect("ledger row")
    }

    /// Requests made from index `from` on, as "METHOD path?query".
    fn requests_since(&self, from: usize) -> Vec<String> {
        self.fake.requests()[from..].iter().map(gmail_fake::Recorded::line).collect()
    }

    fn raw_fetches(&self, id: &str) -> usize {
        let path = format!("{API}/messages/{id}");
        self.fake.requests().iter().filter(|r| r.method == "GET" && r.path == path).count()
    }

    /// The label changes asked for each message, in order.
    fn modifications(&self) -> HashMap<String, Vec<LabelChange>> {
        let mut out: HashMap<String, Vec<_>> = HashMap::new();
        for r in self.fake.requests() {
            if let Some(id) = r.path.strip_prefix(&format!("{API}/messages/")).and_then(|p| p.strip_suffix("/modify")) {
                out.entry(id.to_owned())
                    .or_default()
                    .push((strings(&r.json()["addLabelIds"]), strings(&r.json()["removeLabelIds"])));
            }
        }
        out
    }

    async fn finish(mut self) {
        self.poller.close().await;
        self.poller.ledger().pool().close().await;
    }
}

fn email(from: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {AGENT}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nDate: Wed, 26 Nov 2025 10:00:00 +0000\r\n\r\nHello, {subject}.\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn full_sync_then_history_publishes_every_message_once_with_gmail_threads_and_priorities() {
    let gmail = FakeGmail::start().await;
    gmail.set_history_id(4_000_000_000_000_000_000);
    let raw_plain = email("Ana <ana@customer.example>", "Where is my order", "a1@customer.example");
    deliver(&gmail, "18c9f0a1b2c3d4e1", "18c9f0a1b2c3d4e1", &["INBOX", "UNREAD", "CATEGORY_PERSONAL"], raw_plain, true);
    let raw_important = email("Ben <ben@customer.example>", "Invoice question", "b1@customer.example");
    deliver(&gmail, "18c9f0a1b2c3d4e2", "18c9f0a1b2c30002", &["INBOX", "UNREAD", "IMPORTANT"], raw_important, false);
    let raw_urgent = email("Cy <cy@customer.example>", "URGENT: site down", "c1@customer.example");
    deliver(&gmail, "18c9f0a1b2c3d4e3", "18c9f0a1b2c30003", &["INBOX", "UNREAD", "IMPORTANT"], raw_urgent, false);
    let no_sender = b"To: support@northwind.example\r\nSubject: who sent this\r\n\r\nnobody\r\n".to_vec();
    deliver(&gmail, "18c9f0a1b2c3d4e4", "18c9f0a1b2c30004", &["INBOX", "UNREAD"], no_sender, true);
    let raw_read = email("Di <di@customer.example>", "Already read", "d1@customer.example");
    deliver(&gmail, "18c9f0a1b2c3d4e5", "18c9f0a1b2c30005", &["INBOX"], raw_read, true);
    let mut h = Harness::start(gmail).await;

    // Pass 1: a full sync over two pages of the query's matches. The cursor is the history id
    // the profile gave before the listing (labelling moves Gmail's history id on).
    let history_at_pass_1 = h.fake.history_id().to_string();
    let report = h.synced().await;
    assert_eq!((report.published, report.unparseable, report.skipped), (3, 1, 0));
    let first = h.drain().await;
    let by_id: HashMap<&str, &EmailToClassify> = first.iter().map(|m| (m.email_id.as_str(), m)).collect();
    assert_eq!(by_id.len(), 3, "{first:#?}");
    let plain = by_id["18c9f0a1b2c3d4e1"];
    assert_eq!((plain.thread_id.as_deref(), plain.priority), (Some("18c9f0a1b2c3d4e1"), 5));
    assert_eq!(plain.subject, "Where is my order");
    let important = by_id["18c9f0a1b2c3d4e2"];
    assert_eq!((important.thread_id.as_deref(), important.priority), (Some("18c9f0a1b2c30002"), 7));
    assert!(important.labels.contains(&"IMPORTANT".to_owned()));
    let urgent = by_id["18c9f0a1b2c3d4e3"];
    assert_eq!((urgent.thread_id.as_deref(), urgent.priority), (Some("18c9f0a1b2c30003"), 10));
    assert_eq!(first[0].email_id, "18c9f0a1b2c3d4e3", "the priority queue hands out the most urgent first");
    assert!(first.iter().all(|m| m.agent_email == AGENT));
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_1.as_str()), "cursor at the profile's history id");
    assert!(h.fake.history_id().to_string() > history_at_pass_1, "labelling is history too");
    let (state, _, reason) = h.ledger_row("18c9f0a1b2c3d4e4").await;
    assert_eq!(state, "unparseable");
    assert!(reason.is_some_and(|r| r.contains("sender")), "the reason is kept");
    assert_eq!(h.raw_fetches("18c9f0a1b2c3d4e5"), 0, "read mail is not part of the query");
    let label_id = h.fake.label_id("Mailroom/Processed").expect("processed label created");
    let mods = h.modifications();
    for id in ["18c9f0a1b2c3d4e1", "18c9f0a1b2c3d4e2", "18c9f0a1b2c3d4e3"] {
        assert_eq!(mods[id], vec![(vec![label_id.clone()], vec!["UNREAD".to_owned()])], "{id}");
    }
    let failed_id = h.fake.label_id("Mailroom/Failed").expect("outcome label created");
    assert_eq!(
        mods["18c9f0a1b2c3d4e4"],
        vec![(vec![label_id.clone()], vec![]), (vec![failed_id], vec![])],
        "unparseable mail is labelled, then gets the Failed outcome, but stays unread for a person"
    );

    // Pass 2: incremental. A follow-up in the first thread, our own reply (SENT) and a second
    // messageAdded record for a message already published.
    let before = h.fake.count();
    let follow_up = email("Ana <ana@customer.example>", "Re: Where is my order", "a2@customer.example");
    deliver(
        &h.fake,
        "18c9f0a1b2c3d4f6",
        "18c9f0a1b2c3d4e1",
        &["INBOX", "UNREAD", "CATEGORY_PERSONAL"],
        follow_up,
        false,
    );
    let ours = email(&format!("Support <{AGENT}>"), "Re: Where is my order", "reply@northwind.example");
    deliver(&h.fake, "18c9f0a1b2c3d4f7", "18c9f0a1b2c3d4e1", &["INBOX", "SENT"], ours, true);
    assert!(h.fake.readd("18c9f0a1b2c3d4e1"));
    // Labelling the follow-up fails once (Gmail 503) after it was published: the pass fails,
    // the cursor stays, and the retry finds it published in the ledger and only labels it.
    h.fake.inject(
        Some(Method::POST),
        "/messages/18c9f0a1b2c3d4f6/modify",
        google_error(503, "The service is currently unavailable.", "backendError", "UNAVAILABLE"),
    );
    let now = Instant::now();
    let Step::Failed { error, retry_in } = h.poller.step_at(now).await else { panic!("expected a failed pass") };
    assert!(matches!(error, SourceError::Gmail(gmail::GmailError::Transient { status: Some(503), .. })), "{error}");
    assert_eq!(retry_in, Duration::from_secs(1), "the poll interval is the first backoff step");
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_1.as_str()), "the cursor waits for the labels");
    let history_at_pass_2 = h.fake.history_id().to_string();
    let Step::Synced(report) = h.poller.step_at(now + retry_in).await else { panic!("expected a pass") };
    assert_eq!((report.published, report.unparseable), (0, 0), "already published: only labelled");
    assert_eq!(h.modifications()["18c9f0a1b2c3d4f6"].len(), 2, "labelled on the retry");
    let second = h.drain().await;
    assert_eq!(second.len(), 1, "{second:#?}");
    assert_eq!(second[0].email_id, "18c9f0a1b2c3d4f6");
    assert_eq!(second[0].thread_id.as_deref(), Some("18c9f0a1b2c3d4e1"), "Gmail's thread, for the sender's reply");
    let calls = h.requests_since(before);
    assert!(
        calls.iter().any(|c| c.contains("/history?") && c.contains(&format!("startHistoryId={history_at_pass_1}"))),
        "{calls:#?}"
    );
    assert!(!calls.iter().any(|c| c.ends_with("/profile") || c.contains("/messages?")), "no full sync: {calls:#?}");
    assert_eq!(h.raw_fetches("18c9f0a1b2c3d4f7"), 0, "our own reply is not taken");
    assert_eq!(h.raw_fetches("18c9f0a1b2c3d4e1"), 1, "a published message is not fetched again");
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_2.as_str()), "the last history page's id");
    assert_ne!(history_at_pass_1, history_at_pass_2);

    // Pass 3: nothing new (Gmail omits `history`); the cursor moves to Gmail's history id,
    // which the labelling of pass 2 moved on.
    let history_at_pass_3 = h.fake.history_id().to_string();
    let report = h.synced().await;
    assert_eq!(report.published + report.unparseable, 0);
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_3.as_str()));

    // Pass 4: Gmail has forgotten the history before the cursor (404): a full resync, which
    // finds one new message and the still-unread unparseable one.
    let late = email("Eve <eve@customer.example>", "Refund", "e1@customer.example");
    deliver(&h.fake, "18c9f0a1b2c3d4f8", "18c9f0a1b2c3d4f8", &["INBOX", "UNREAD"], late, true);
    h.fake.forget_history();
    let history_at_pass_4 = h.fake.history_id().to_string();
    let report = h.synced().await;
    assert_eq!((report.published, report.unparseable), (1, 0));
    let third = h.drain().await;
    assert_eq!(third.iter().map(|m| m.email_id.as_str()).collect::<Vec<_>>(), ["18c9f0a1b2c3d4f8"]);
    assert_eq!(h.raw_fetches("18c9f0a1b2c3d4e4"), 1, "the ledger remembers unparseable mail: not fetched again");
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_4.as_str()));
    let numeric = |s: &str| s.parse::<u64>().expect("numeric history id");
    assert!(numeric(&history_at_pass_4) > numeric(&history_at_pass_2), "the cursor only moves forward");

    // Across the four passes and the resync: each message exactly once, under one id each.
    let all: Vec<&EmailToClassify> = first.iter().chain(&second).chain(&third).collect();
    let ids: HashSet<&str> = all.iter().map(|m| m.email_id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "nothing published twice");
    for m in &all {
        let (state, message_id, _) = h.ledger_row(&m.email_id).await;
        assert_eq!((state.as_str(), message_id.as_str()), ("published", m.message_id.as_str()));
    }
    assert!(!h.fake.requests().iter().any(|r| r.headers.values().any(|v| v.contains(REFRESH_TOKEN))));
    h.finish().await;
}

#[tokio::test]
async fn rate_limits_are_waited_out_for_as_long_as_gmail_says() {
    let gmail = FakeGmail::start().await;
    gmail.set_history_id(9_000);
    for (n, id) in ["18d000000000000a", "18d000000000000b"].into_iter().enumerate() {
        let raw = email("Fay <fay@customer.example>", &format!("Question {n}"), &format!("f{n}@customer.example"));
        deliver(&gmail, id, id, &["INBOX", "UNREAD"], raw, false);
    }
    // 429 on the second fetch (Gmail lists newest first; the poller takes the oldest first),
    // with the time in the message text as Gmail writes it.
    let until = chrono::Utc::now() + chrono::Duration::hours(2);
    let text =
        format!("Too many concurrent requests for user.  Retry after {}", until.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
    gmail.inject(
        Some(Method::GET),
        "/messages/18d000000000000b",
        google_error(429, &text, "rateLimitExceeded", "RESOURCE_EXHAUSTED"),
    );
    let mut h = Harness::start(gmail).await;

    let start = Instant::now();
    let Step::Failed { error, retry_in } = h.poller.step_at(start).await else { panic!("expected a failed pass") };
    assert!(matches!(error, SourceError::Gmail(gmail::GmailError::RateLimited { status: 429, .. })), "{error}");
    assert!(retry_in > Duration::from_secs(7150) && retry_in <= Duration::from_secs(7200), "{retry_in:?}");
    let requests = h.fake.requests();
    let last = requests.last().expect("requests");
    assert_eq!(last.path, format!("{API}/messages/18d000000000000b"), "the pass stopped at the 429");
    assert!(h.drain().await.is_empty(), "nothing published from the aborted page");
    assert_eq!(h.cursor().await, None);

    // Asked again before the time is up, the poller does not call Gmail at all.
    let count = h.fake.count();
    for later in [Duration::ZERO, Duration::from_secs(60), Duration::from_secs(7000)] {
        let Step::BackingOff { remaining } = h.poller.step_at(start + later).await else { panic!("expected backoff") };
        assert_eq!(remaining, retry_in - later);
    }
    assert_eq!(h.fake.count(), count, "no request while backing off");

    // Once it is, the pass runs and both messages go out, each once, under the ids claimed
    // before the 429 (the claims were released, not lost).
    let (_, claimed_before, _) = h.ledger_row("18d000000000000a").await;
    let Step::Synced(report) = h.poller.step_at(start + retry_in).await else { panic!("expected a pass") };
    assert_eq!(report.published, 2);
    let published = h.drain().await;
    assert_eq!(published.len(), 2);
    let first = published.iter().find(|m| m.email_id == "18d000000000000a").expect("published");
    assert_eq!(first.message_id, claimed_before);

    // 403 userRateLimitExceeded on history.list: same, with Gmail's time.
    let raw = email("Gus <gus@customer.example>", "Another", "g1@customer.example");
    deliver(&h.fake, "18d000000000000c", "18d000000000000c", &["INBOX", "UNREAD"], raw, true);
    let until = chrono::Utc::now() + chrono::Duration::minutes(30);
    let text = format!("User-rate limit exceeded.  Retry after {}", until.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
    h.fake.inject(
        Some(Method::GET),
        "/history",
        google_error(403, &text, "userRateLimitExceeded", "PERMISSION_DENIED"),
    );
    let start = Instant::now();
    let Step::Failed { error, retry_in } = h.poller.step_at(start).await else { panic!("expected a failed pass") };
    assert!(matches!(error, SourceError::Gmail(gmail::GmailError::RateLimited { status: 403, .. })), "{error}");
    assert!(retry_in > Duration::from_secs(1750) && retry_in <= Duration::from_secs(1800), "{retry_in:?}");
    let count = h.fake.count();
    assert!(matches!(h.poller.step_at(start + Duration::from_secs(1700)).await, Step::BackingOff { .. }));
    assert_eq!(h.fake.count(), count, "no request while backing off");

    // A 429 with only a Retry-After header.
    h.fake.inject(
        Some(Method::GET),
        "/history",
        google_error(429, "Resource has been exhausted (e.g. check quota).", "rateLimitExceeded", "RESOURCE_EXHAUSTED")
            .header("retry-after", "120"),
    );
    let start = start + retry_in;
    let Step::Failed { retry_in, .. } = h.poller.step_at(start).await else { panic!("expected a failed pass") };
    assert_eq!(retry_in, Duration::from_secs(120), "Retry-After, longer than the exponential backoff (2 s)");
    let Step::Synced(report) = h.poller.step_at(start + retry_in).await else { panic!("expected a pass") };
    assert_eq!(report.published, 1);
    assert_eq!(h.drain().await.iter().map(|m| m.email_id.clone()).collect::<Vec<_>>(), ["18d000000000000c"]);
    h.finish().await;
}

#[tokio::test]
async fn a_refused_access_token_is_refreshed_and_the_call_repeated() {
    let gmail = FakeGmail::start().await;
    gmail.set_history_id(500);
    let raw = email("Hal <hal@customer.example>", "Login fails", "h1@customer.example");
    deliver(&gmail, "18e0000000000001", "18e0000000000001", &["INBOX", "UNREAD"], raw, true);
    let mut h = Harness::start(gmail).await;
    assert_eq!(h.synced().await.published, 1);

    // Google revokes the access token early (it would otherwise be cached for an hour).
    let before = h.fake.count();
    h.fake.revoke_access_tokens();
    let raw = email("Hal <hal@customer.example>", "Re: Login fails", "h2@customer.example");
    deliver(&h.fake, "18e0000000000002", "18e0000000000001", &["INBOX", "UNREAD"], raw, false);
    // A message deleted between the listing and the fetch is dropped from the ledger, not
    // left claimed, and does not hold the cursor back.
    let raw = email("Hal <hal@customer.example>", "Never mind", "h3@customer.example");
    deliver(&h.fake, "18e0000000000003", "18e0000000000001", &["INBOX", "UNREAD"], raw, true);
    h.fake.inject(Some(Method::GET), "/messages/18e0000000000003", Reply::not_found());
    let history_before = h.fake.history_id().to_string();
    let report = h.synced().await;
    assert_eq!(report.published, 1);
    let gone: i64 = sqlx::query_scalar("SELECT count(*) FROM mailbox_messages WHERE mailbox_id = '18e0000000000003'")
        .fetch_one(h.poller.ledger().pool())
        .await
        .expect("count");
    assert_eq!(gone, 0);
    assert_eq!(h.cursor().await, Some(history_before));
    let requests = &h.fake.requests()[before..];
    let summary: Vec<(String, Option<&str>)> =
        requests.iter().take(3).map(|r| (format!("{} {}", r.method, r.path), r.header("authorization"))).collect();
    assert_eq!(
        summary,
        vec![
            (format!("GET {API}/history"), Some(format!("Bearer {ACCESS_TOKEN_PREFIX}1").as_str())),
            ("POST /token".to_owned(), None),
            (format!("GET {API}/history"), Some(format!("Bearer {ACCESS_TOKEN_PREFIX}2").as_str())),
        ]
    );
    let published = h.drain().await;
    assert_eq!(published.len(), 2);
    assert!(published.iter().all(|m| m.thread_id.as_deref() == Some("18e0000000000001")));
    h.finish().await;
}

#[tokio::test]
async fn a_revoked_refresh_token_stops_polling_with_a_reauthorisation_error() {
    let gmail = FakeGmail::start().await;
    gmail.set_history_id(77);
    gmail.revoke(REFRESH_TOKEN);
    let raw = email("Ida <ida@customer.example>", "Hello", "i1@customer.example");
    deliver(&gmail, "18f0000000000001", "18f0000000000001", &["INBOX", "UNREAD"], raw, true);
    let mut h = Harness::start(gmail).await;

    let Step::Stopped { reason } = h.poller.step().await else { panic!("expected the poller to stop") };
    assert!(reason.contains("re-authoris"), "{reason}");
    assert!(!reason.contains(REFRESH_TOKEN) && !reason.contains(CLIENT_SECRET), "{reason}");
    assert_eq!(h.fake.count(), 1, "only the token request");
    // No hot loop: later steps (even far in the future) ask nobody anything.
    for later in [Duration::ZERO, Duration::from_secs(86_400)] {
        assert!(matches!(h.poller.step_at(Instant::now() + later).await, Step::Stopped { .. }));
    }
    assert_eq!(h.fake.count(), 1);
    assert!(h.drain().await.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_token_without_gmail_modify_stops_polling_like_a_revoked_one() {
    // Send-only (the sender's scope given to the poller by mistake): the first call is refused.
    let gmail = FakeGmail::start().await;
    gmail.grant("1//0send-only", &[scope::SEND]);
    let raw = email("Joe <joe@customer.example>", "Hello", "j1@customer.example");
    deliver(&gmail, "18f1000000000001", "18f1000000000001", &["INBOX", "UNREAD"], raw, true);
    let mut h = Harness::start_with(gmail, "1//0send-only").await;
    let Step::Stopped { reason } = h.poller.step().await else { panic!("expected the poller to stop") };
    assert!(reason.starts_with("mailbox needs re-authorisation"), "{reason}");
    assert!(reason.contains("users.labels.list") && reason.contains("the poller needs gmail.modify"), "{reason}");
    let count = h.fake.count();
    assert_eq!(count, 2, "the token and the one refused call");
    for later in [Duration::ZERO, Duration::from_secs(86_400)] {
        assert!(matches!(h.poller.step_at(Instant::now() + later).await, Step::Stopped { .. }));
    }
    assert_eq!(h.fake.count(), count, "no crash loop, no retry loop: nothing more is asked");
    assert!(h.drain().await.is_empty());
    h.finish().await;
}

#[tokio::test]
async fn a_read_only_token_publishes_once_then_stops_at_labelling_and_a_new_token_resumes() {
    let gmail = FakeGmail::start().await;
    // The label exists already (created by someone in Gmail), so a read-only token gets as far
    // as labelling.
    let label_id = gmail.add_label("Mailroom/Processed");
    gmail.grant("1//0read-only", &[scope::READONLY]);
    let raw = email("Kim <kim@customer.example>", "Broken", "k1@customer.example");
    deliver(&gmail, "18f2000000000001", "18f2000000000001", &["INBOX", "UNREAD"], raw, true);
    let mut h = Harness::start_with(gmail, "1//0read-only").await;

    let Step::Stopped { reason } = h.poller.step().await else { panic!("expected the poller to stop") };
    assert!(reason.contains("users.messages.modify") && reason.contains("gmail.modify"), "{reason}");
    assert_eq!(h.drain().await.len(), 1, "published before the labelling was refused");
    assert_eq!(h.cursor().await, None, "the cursor waits for the labels");

    // The operator re-authorises with gmail.modify and restarts the poller: the message is
    // labelled and marked read, not published again.
    let token = "1//0modify";
    h.fake.grant(token, &[scope::MODIFY]);
    h.restart_with(token).await;
    let report = h.synced().await;
    assert_eq!((report.published, report.unparseable), (0, 0));
    assert!(h.drain().await.is_empty(), "nothing published twice");
    let message = h.fake.message("18f2000000000001").expect("message");
    assert_eq!(message.label_ids, ["INBOX", label_id.as_str()]);
    h.finish().await;
}

#[tokio::test]
async fn cursors_only_move_forward_unless_the_uidvalidity_changes() {
    let db = TestDb::create().await;
    let pool = mailroom_db::connect_and_migrate(&db.url().into(), 2).await.expect("database");
    let key = CursorKey::new(AGENT, "gmail", "me");
    let at = |p: &str| Cursor { position: p.to_owned(), validity: None };
    assert!(cursor::advance(&pool, &key, &at("999")).await.expect("store"));
    assert!(cursor::advance(&pool, &key, &at("1000")).await.expect("store"), "1000 > 999 though it sorts first");
    assert!(!cursor::advance(&pool, &key, &at("999")).await.expect("store"));
    assert!(!cursor::advance(&pool, &key, &at("1000")).await.expect("store"));
    assert!(!cursor::advance(&pool, &key, &at("not a number")).await.expect("store"));
    assert!(cursor::advance(&pool, &key, &at("18446744073709551615")).await.expect("store"), "the whole u64 range");
    assert_eq!(cursor::load(&pool, &key).await.expect("load"), Some(at("18446744073709551615")));

    let imap = CursorKey::new(AGENT, "imap", "INBOX");
    let uid = |p: &str, v: i64| Cursor { position: p.to_owned(), validity: Some(v) };
    assert!(cursor::advance(&pool, &imap, &uid("50", 7)).await.expect("store"));
    assert!(!cursor::advance(&pool, &imap, &uid("40", 7)).await.expect("store"));
    assert!(cursor::advance(&pool, &imap, &uid("3", 8)).await.expect("store"), "a new UIDVALIDITY starts over");
    assert_eq!(cursor::load(&pool, &imap).await.expect("load"), Some(uid("3", 8)));
    assert_eq!(cursor::load(&pool, &key).await.expect("load"), Some(at("18446744073709551615")), "keys independent");
    pool.close().await;
}

#[path = "support/outcomes.rs"]
mod outcomes;

#[tokio::test]
async fn outcomes_are_labels_under_mailroom_and_only_answered_mail_loses_unread() {
    use outcomes::{Expect, SCENARIO};
    let gmail = FakeGmail::start().await;
    let ids: Vec<String> = (0..SCENARIO.len()).map(|i| format!("18fa00000000000{i}")).collect();
    for (id, (name, _)) in ids.iter().zip(SCENARIO) {
        let raw = email("Cy <cy@customer.example>", name, &format!("{name}@customer.example"));
        deliver(&gmail, id, id, &["INBOX", "UNREAD"], raw, true);
    }
    // The default mailbox.mark_read: "answered".
    let mut h = Harness::start_marking(gmail, REFRESH_TOKEN, "answered").await;
    let labels = |h: &Harness, id: &str| h.fake.message(id).expect("message").label_ids;

    let report = h.synced().await;
    assert_eq!((report.published, report.outcomes), (SCENARIO.len(), 0), "nothing to show yet");
    assert_eq!(h.drain().await.len(), SCENARIO.len());
    let processed = h.fake.label_id("Mailroom/Processed").expect("processed label");
    for id in &ids {
        let now = labels(&h, id);
        assert!(now.contains(&"UNREAD".to_owned()) && now.contains(&processed), "published, still unread: {now:?}");
    }

    // The later stages record what became of each email.
    let pool = h.poller.ledger().pool().clone();
    for (id, (_, expect)) in ids.iter().zip(SCENARIO) {
        outcomes::record(&pool, AGENT, id, expect).await;
    }
    let report = h.synced().await;
    assert_eq!((report.published, report.outcomes), (0, 5));
    let fake = h.fake.clone();
    let label_of = |expect: Expect| {
        let name = match expect {
            Expect::Answered => "Answered",
            Expect::Drafted => "Drafted",
            Expect::NotSupport => "Not support",
            Expect::NeedsPerson => "Needs person",
            Expect::Failed => "Failed",
            Expect::Nothing => unreachable!("no label"),
        };
        fake.label_id(&format!("Mailroom/{name}")).unwrap_or_else(|| panic!("label Mailroom/{name} created"))
    };
    let outcome_labels: Vec<String> =
        SCENARIO.iter().filter(|(_, e)| *e != Expect::Nothing).map(|(_, e)| label_of(*e)).collect();
    for (id, (name, expect)) in ids.iter().zip(SCENARIO) {
        let now = labels(&h, id);
        let shown: Vec<&String> = now.iter().filter(|l| outcome_labels.contains(l)).collect();
        match expect {
            Expect::Nothing => assert!(shown.is_empty(), "{name}: no outcome yet: {now:?}"),
            _ => assert_eq!(shown, [&label_of(expect)], "{name}: one outcome label: {now:?}"),
        }
        let unread = now.contains(&"UNREAD".to_owned());
        assert_eq!(unread, expect != Expect::Answered, "{name}: only answered mail is read: {now:?}");
        assert!(now.contains(&"INBOX".to_owned()), "{name}: stays in the inbox");
        assert_eq!(outcomes::applied(&pool, AGENT, id).await.as_deref(), expect.stored(), "{name}");
    }
    let before = h.fake.count();
    assert_eq!(h.synced().await.outcomes, 0, "each outcome is applied once");
    assert!(
        h.requests_since(before).iter().all(|r| !r.contains("/modify")),
        "no label change without a new outcome: {:?}",
        h.requests_since(before)
    );

    // The failed message's dead letter is replayed and answered: its label changes.
    let failed = &ids[4];
    outcomes::classify(&pool, AGENT, failed, true).await;
    outcomes::reply(&pool, AGENT, failed, "sent").await;
    assert_eq!(h.synced().await.outcomes, 1);
    let now = labels(&h, failed);
    assert!(now.contains(&label_of(Expect::Answered)) && !now.contains(&label_of(Expect::Failed)), "{now:?}");
    assert!(!now.contains(&"UNREAD".to_owned()), "answered now, so read: {now:?}");
    assert_eq!(outcomes::applied(&pool, AGENT, failed).await.as_deref(), Some("answered"));
    h.finish().await;
}
