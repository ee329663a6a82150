//! The Gmail source against a fake Gmail API that answers in Gmail's documented shapes
//! (string-encoded 64-bit ids, lists omitted when empty, base64url `raw` with and without
//! padding, Google's error envelope with its reasons and "Retry after" texts), with the real
//! broker (a throw-away vhost) and database (a throw-away database) behind the ledger. Each
//! test drives the poller one pass at a time and checks what reached `emails.to_classify`,
//! what the ledger and cursor say, and what the poller asked Gmail.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use lapin::options::BasicGetOptions;
use mailroom_tests::fake_http::{FakeServer, Recorded, Reply};
use mailroom_tests::{TestDb, TestVhost};
use pipeline_core::messages::EmailToClassify;
use pipeline_core::{Producer, Settings, Telemetry};
use poller::cursor::{self, Cursor, CursorKey};
use poller::{GmailSource, GmailSourceSettings, Ledger, MailboxSettings, Poller, SourceError, Step};
use serde_json::{Value, json};

const AGENT: &str = "support@northwind.example";
const API: &str = "/gmail/v1/users/me";
const CLIENT_SECRET: &str = "GOCSPX-fake-client-secret";
const REFRESH_TOKEN: &str = "1//fake-refresh-token";

/// A message in the fake mailbox.
struct FakeMessage {
    id: String,
    thread_id: String,
    labels: Vec<String>,
    /// `raw` exactly as the fake sends it.
    raw: String,
    history_id: u64,
}

/// A canned answer for the next request matching `method` and a path ending in `path_end`.
struct Fault {
    method: &'static str,
    path_end: String,
    reply: Reply,
}

/// The fake mailbox and what it has handed out.
#[derive(Default)]
struct FakeGmail {
    /// Oldest first.
    messages: Vec<FakeMessage>,
    /// `(history id, message id)` of each messageAdded record, oldest first.
    history: Vec<(u64, String)>,
    history_id: u64,
    /// History from before this id is gone: Gmail answers 404.
    history_floor: u64,
    labels: Vec<(String, String)>,
    tokens_issued: u32,
    valid_token: Option<String>,
    /// Google refuses the refresh token.
    refresh_revoked: bool,
    faults: VecDeque<Fault>,
}

impl FakeGmail {
    /// Adds a message to the inbox as Gmail would: a new history id (Gmail's grow in uneven
    /// steps) and a messageAdded record.
    fn deliver(&mut self, id: &str, thread_id: &str, labels: &[&str], raw: String) {
        self.history_id += 7;
        self.messages.push(FakeMessage {
            id: id.to_owned(),
            thread_id: thread_id.to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            raw,
            history_id: self.history_id,
        });
        self.history.push((self.history_id, id.to_owned()));
    }

    fn message(&self, id: &str) -> Option<&FakeMessage> {
        self.messages.iter().find(|m| m.id == id)
    }

    fn message_ref(m: &FakeMessage, with_labels: bool) -> Value {
        let mut v = json!({ "id": m.id, "threadId": m.thread_id });
        if with_labels {
            v["labelIds"] = json!(m.labels);
        }
        v
    }

    fn answer(&mut self, req: &Recorded) -> Reply {
        let method = req.method.as_str();
        if req.path == "/token" {
            return self.token();
        }
        let authorised =
            self.valid_token.as_ref().is_some_and(|t| req.header("authorization") == Some(&format!("Bearer {t}")));
        if !authorised {
            return google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                "authError",
                "UNAUTHENTICATED",
            );
        }
        if let Some(i) = self.faults.iter().position(|f| f.method == method && req.path.ends_with(&f.path_end)) {
            return self.faults.remove(i).expect("fault at position").reply;
        }
        let Some(rest) = req.path.strip_prefix(API) else {
            return Reply::json(404, json!({"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}}));
        };
        let segments: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("GET", ["profile"]) => Reply::json(
                200,
                json!({
                    "emailAddress": AGENT,
                    "messagesTotal": self.messages.len(),
                    "threadsTotal": self.messages.len(),
                    "historyId": self.history_id.to_string(),
                }),
            ),
            ("GET", ["labels"]) => {
                let mut labels = vec![json!({"id": "INBOX", "name": "INBOX", "type": "system"})];
                labels.extend(self.labels.iter().map(|(id, name)| json!({"id": id, "name": name, "type": "user"})));
                Reply::json(200, json!({ "labels": labels }))
            }
            ("POST", ["labels"]) => {
                let name = req.body["name"].as_str().expect("label name").to_owned();
                let id = format!("Label_{}", 40 + self.labels.len());
                self.labels.push((id.clone(), name.clone()));
                Reply::json(
                    200,
                    json!({"id": id, "name": name, "messageListVisibility": "show", "labelListVisibility": "labelShow", "type": "user"}),
                )
            }
            ("GET", ["messages"]) => {
                // What `is:unread in:inbox` matches, newest first.
                let matching: Vec<&FakeMessage> = self
                    .messages
                    .iter()
                    .rev()
                    .filter(|m| m.labels.iter().any(|l| l == "UNREAD") && m.labels.iter().any(|l| l == "INBOX"))
                    .collect();
                let (page, next) = paginate(&matching, req);
                let mut body = json!({ "resultSizeEstimate": matching.len() });
                if !page.is_empty() {
                    body["messages"] = json!(page.iter().map(|m| Self::message_ref(m, false)).collect::<Vec<_>>());
                }
                if let Some(next) = next {
                    body["nextPageToken"] = json!(next);
                }
                Reply::json(200, body)
            }
            ("GET", ["messages", id]) => match self.message(id) {
                Some(m) => Reply::json(
                    200,
                    json!({
                        "id": m.id,
                        "threadId": m.thread_id,
                        "labelIds": m.labels,
                        "snippet": "",
                        "sizeEstimate": m.raw.len(),
                        "historyId": m.history_id.to_string(),
                        "internalDate": "1764150000000",
                        "raw": m.raw,
                    }),
                ),
                None => google_error(404, "Requested entity was not found.", "notFound", "NOT_FOUND"),
            },
            ("POST", ["messages", id, "modify"]) => {
                let add: Vec<String> = strings(&req.body["addLabelIds"]);
                let remove: Vec<String> = strings(&req.body["removeLabelIds"]);
                let Some(m) = self.messages.iter_mut().find(|m| m.id == *id) else {
                    return google_error(404, "Requested entity was not found.", "notFound", "NOT_FOUND");
                };
                m.labels.retain(|l| !remove.contains(l));
                for label in add {
                    if !m.labels.contains(&label) {
                        m.labels.push(label);
                    }
                }
                Reply::json(200, Self::message_ref(m, true))
            }
            ("GET", ["history"]) => {
                let start: u64 =
                    query_param(req, "startHistoryId").and_then(|s| s.parse().ok()).expect("startHistoryId");
                if start < self.history_floor {
                    return google_error(404, "Requested entity was not found.", "notFound", "NOT_FOUND");
                }
                let records: Vec<(u64, &FakeMessage)> = self
                    .history
                    .iter()
                    .filter(|(hid, _)| *hid > start)
                    .filter_map(|(hid, id)| Some((*hid, self.message(id)?)))
                    .collect();
                let (page, next) = paginate(&records, req);
                let mut body = json!({ "historyId": self.history_id.to_string() });
                if !page.is_empty() {
                    body["history"] = json!(
                        page.iter()
                            .map(|(hid, m)| json!({
                                "id": hid.to_string(),
                                "messages": [Self::message_ref(m, false)],
                                "messagesAdded": [{ "message": Self::message_ref(m, true) }],
                            }))
                            .collect::<Vec<_>>()
                    );
                }
                if let Some(next) = next {
                    body["nextPageToken"] = json!(next);
                }
                Reply::json(200, body)
            }
            _ => google_error(400, "Invalid request", "invalidArgument", "INVALID_ARGUMENT"),
        }
    }

    fn token(&mut self) -> Reply {
        if self.refresh_revoked {
            return Reply::json(
                400,
                json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
            );
        }
        self.tokens_issued += 1;
        let token = format!("ya29.fake-{}", self.tokens_issued);
        self.valid_token = Some(token.clone());
        Reply::json(
            200,
            json!({"access_token": token, "expires_in": 3599, "scope": "https://www.googleapis.com/auth/gmail.modify", "token_type": "Bearer"}),
        )
    }
}

/// Google's error envelope.
fn google_error(code: u16, message: &str, reason: &str, status: &str) -> Reply {
    Reply::json(
        code,
        json!({"error": {"code": code, "message": message, "errors": [{"message": message, "domain": "global", "reason": reason}], "status": status}}),
    )
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn query_param(req: &Recorded, name: &str) -> Option<String> {
    req.query.as_deref()?.split('&').find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// A page of `items` by the request's `maxResults` and `pageToken` (an offset here; Gmail's
/// tokens are opaque). Offsets shift when labelling takes messages out of the query, so a
/// poller that labelled between pages would skip mail here.
fn paginate<'a, T>(items: &'a [T], req: &Recorded) -> (&'a [T], Option<String>) {
    let size: usize = query_param(req, "maxResults").and_then(|s| s.parse().ok()).unwrap_or(100);
    let from: usize = query_param(req, "pageToken").and_then(|s| s.parse().ok()).unwrap_or(0);
    let to = (from + size).min(items.len());
    let next = (to < items.len()).then(|| to.to_string());
    (&items[from.min(to)..to], next)
}

fn email(from: &str, subject: &str, message_id: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: {AGENT}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\nDate: Wed, 26 Nov 2025 10:00:00 +0000\r\n\r\nHello, {subject}.\r\n"
    )
    .into_bytes()
}

fn padded(raw: &[u8]) -> String {
    URL_SAFE.encode(raw)
}

fn unpadded(raw: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(raw)
}

/// One `messages.modify` request: the label ids added and removed.
type LabelChange = (Vec<String>, Vec<String>);

/// Everything one test needs: the fake, a vhost, a database, and the poller.
struct Harness {
    // Dropped first: its connections go before the vhost and database do.
    poller: Poller<GmailSource>,
    gmail: Arc<Mutex<FakeGmail>>,
    fake: FakeServer,
    vhost: TestVhost,
    _db: TestDb,
}

impl Harness {
    async fn start(gmail: FakeGmail) -> Self {
        let gmail = Arc::new(Mutex::new(gmail));
        let state = gmail.clone();
        let fake = FakeServer::start(move |req| state.lock().expect("fake state").answer(req)).await;
        let vhost = TestVhost::create().await;
        let db = TestDb::create().await;
        // Through the real configuration layers, as the binary would read them.
        let env = [
            ("MAILROOM__AMQP__URL", vhost.amqp_url()),
            ("MAILROOM__DATABASE__URL", db.url()),
            ("MAILROOM__MAILBOX__KIND", "gmail".to_owned()),
            ("MAILROOM__MAILBOX__AGENT_EMAIL", AGENT.to_owned()),
            ("MAILROOM__MAILBOX__GMAIL__API_BASE", format!("{}/gmail/v1", fake.base)),
            ("MAILROOM__MAILBOX__GMAIL__TOKEN_URL", format!("{}/token", fake.base)),
            ("MAILROOM__MAILBOX__GMAIL__CLIENT_ID", "1234-fake.apps.googleusercontent.com".to_owned()),
            ("MAILROOM__MAILBOX__GMAIL__CLIENT_SECRET", CLIENT_SECRET.to_owned()),
            ("MAILROOM__MAILBOX__GMAIL__REFRESH_TOKEN", REFRESH_TOKEN.to_owned()),
            // Small pages, so every listing spans several.
            ("MAILROOM__MAILBOX__GMAIL__PAGE_SIZE", "2".to_owned()),
        ];
        let settings =
            Settings::load_from(None, env.iter().map(|(k, v)| ((*k).to_owned(), v.clone()))).expect("settings");
        let mailbox: MailboxSettings = settings.section("mailbox").expect("[mailbox]");
        let gmail_settings: GmailSourceSettings = settings.section("mailbox.gmail").expect("[mailbox.gmail]");
        assert_eq!(gmail_settings.query, "is:unread in:inbox");
        assert_eq!(gmail_settings.processed_label, "Mailroom/Processed");
        let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await.expect("database");
        let producer = Producer::new("poller-gmail-test", &settings, Arc::new(Telemetry::default()));
        // Declares the topology, so the test can read the queue even before anything is published.
        producer.connect().await.expect("broker");
        let source = GmailSource::new(AGENT, &gmail_settings).expect("gmail source");
        let poller = Poller::new(source, Ledger::new(pool, producer, mailbox));
        Self { poller, gmail, fake, vhost, _db: db }
    }

    fn gmail(&self) -> MutexGuard<'_, FakeGmail> {
        self.gmail.lock().expect("fake state")
    }

    async fn synced(&mut self) -> poller::ScanReport {
        match self.poller.step().await {
            Step::Synced(report) => report,
            other => panic!("expected a completed pass, got {other:?}"),
        }
    }

    /// Everything in `emails.to_classify` now (taken off the queue).
    async fn drain(&self) -> Vec<EmailToClassify> {
        let conn = lapin::Connection::connect(&self.vhost.amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        let mut out = Vec::new();
        while let Some(m) =
            ch.basic_get("emails.to_classify".into(), BasicGetOptions { no_ack: true }).await.expect("basic.get")
        {
            out.push(serde_json::from_slice(&m.delivery.data).expect("emails.to_classify body"));
        }
        let _ = conn.close(200, "done".into()).await;
        out
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
        self.fake.requests()[from..]
            .iter()
            .map(|r| match &r.query {
                Some(q) => format!("{} {}?{q}", r.method, r.path),
                None => format!("{} {}", r.method, r.path),
            })
            .collect()
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
                    .push((strings(&r.body["addLabelIds"]), strings(&r.body["removeLabelIds"])));
            }
        }
        out
    }

    async fn finish(mut self) {
        self.poller.close().await;
        self.poller.ledger().pool().close().await;
    }
}

#[tokio::test]
async fn full_sync_then_history_publishes_every_message_once_with_gmail_threads_and_priorities() {
    let mut gmail = FakeGmail { history_id: 4_000_000_000_000_000_000, ..FakeGmail::default() };
    let raw_plain = email("Ana <ana@customer.example>", "Where is my order", "a1@customer.example");
    gmail.deliver(
        "18c9f0a1b2c3d4e1",
        "18c9f0a1b2c3d4e1",
        &["INBOX", "UNREAD", "CATEGORY_PERSONAL"],
        padded(&raw_plain),
    );
    let raw_important = email("Ben <ben@customer.example>", "Invoice question", "b1@customer.example");
    gmail.deliver("18c9f0a1b2c3d4e2", "18c9f0a1b2c30002", &["INBOX", "UNREAD", "IMPORTANT"], unpadded(&raw_important));
    let raw_urgent = email("Cy <cy@customer.example>", "URGENT: site down", "c1@customer.example");
    gmail.deliver("18c9f0a1b2c3d4e3", "18c9f0a1b2c30003", &["INBOX", "UNREAD", "IMPORTANT"], unpadded(&raw_urgent));
    let no_sender = b"To: support@northwind.example\r\nSubject: who sent this\r\n\r\nnobody\r\n".to_vec();
    gmail.deliver("18c9f0a1b2c3d4e4", "18c9f0a1b2c30004", &["INBOX", "UNREAD"], padded(&no_sender));
    let raw_read = email("Di <di@customer.example>", "Already read", "d1@customer.example");
    gmail.deliver("18c9f0a1b2c3d4e5", "18c9f0a1b2c30005", &["INBOX"], padded(&raw_read));
    let mut h = Harness::start(gmail).await;

    // Pass 1: a full sync over two pages of the query's matches.
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
    let history_at_pass_1 = h.gmail().history_id.to_string();
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_1.as_str()), "cursor at the profile's history id");
    let (state, _, reason) = h.ledger_row("18c9f0a1b2c3d4e4").await;
    assert_eq!(state, "unparseable");
    assert!(reason.is_some_and(|r| r.contains("sender")), "the reason is kept");
    assert_eq!(h.raw_fetches("18c9f0a1b2c3d4e5"), 0, "read mail is not part of the query");
    let label = h.gmail().labels.first().expect("processed label created").clone();
    assert_eq!(label.1, "Mailroom/Processed");
    let mods = h.modifications();
    for id in ["18c9f0a1b2c3d4e1", "18c9f0a1b2c3d4e2", "18c9f0a1b2c3d4e3"] {
        assert_eq!(mods[id], vec![(vec![label.0.clone()], vec!["UNREAD".to_owned()])], "{id}");
    }
    assert_eq!(
        mods["18c9f0a1b2c3d4e4"],
        vec![(vec![label.0.clone()], vec![])],
        "unparseable mail is labelled but stays unread for a person"
    );

    // Pass 2: incremental. A follow-up in the first thread, our own reply (SENT) and a second
    // messageAdded record for a message already published.
    let before = h.fake.count();
    {
        let mut g = h.gmail();
        let follow_up = email("Ana <ana@customer.example>", "Re: Where is my order", "a2@customer.example");
        g.deliver(
            "18c9f0a1b2c3d4f6",
            "18c9f0a1b2c3d4e1",
            &["INBOX", "UNREAD", "CATEGORY_PERSONAL"],
            unpadded(&follow_up),
        );
        let ours = email(&format!("Support <{AGENT}>"), "Re: Where is my order", "reply@northwind.example");
        g.deliver("18c9f0a1b2c3d4f7", "18c9f0a1b2c3d4e1", &["INBOX", "SENT"], padded(&ours));
        g.history_id += 7;
        let again = g.history_id;
        g.history.push((again, "18c9f0a1b2c3d4e1".to_owned()));
    }
    // Labelling the follow-up fails once (Gmail 503) after it was published: the pass fails,
    // the cursor stays, and the retry finds it published in the ledger and only labels it.
    h.gmail().faults.push_back(Fault {
        method: "POST",
        path_end: "/messages/18c9f0a1b2c3d4f6/modify".to_owned(),
        reply: google_error(503, "The service is currently unavailable.", "backendError", "UNAVAILABLE"),
    });
    let now = Instant::now();
    let Step::Failed { error, retry_in } = h.poller.step_at(now).await else { panic!("expected a failed pass") };
    assert!(matches!(error, SourceError::Gmail(gmail::GmailError::Transient { status: Some(503), .. })), "{error}");
    assert_eq!(retry_in, Duration::from_secs(1), "the poll interval is the first backoff step");
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_1.as_str()), "the cursor waits for the labels");
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
    let history_at_pass_2 = h.gmail().history_id.to_string();
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_2.as_str()));
    assert_ne!(history_at_pass_1, history_at_pass_2);

    // Pass 3: nothing new (Gmail omits `history`); the cursor stays.
    let report = h.synced().await;
    assert_eq!(report.published + report.unparseable, 0);
    assert_eq!(h.cursor().await.as_deref(), Some(history_at_pass_2.as_str()));

    // Pass 4: Gmail has forgotten the history before the cursor (404): a full resync, which
    // finds one new message and the still-unread unparseable one.
    {
        let mut g = h.gmail();
        let late = email("Eve <eve@customer.example>", "Refund", "e1@customer.example");
        g.deliver("18c9f0a1b2c3d4f8", "18c9f0a1b2c3d4f8", &["INBOX", "UNREAD"], padded(&late));
        g.history_floor = g.history_id + 1;
    }
    let report = h.synced().await;
    assert_eq!((report.published, report.unparseable), (1, 0));
    let third = h.drain().await;
    assert_eq!(third.iter().map(|m| m.email_id.as_str()).collect::<Vec<_>>(), ["18c9f0a1b2c3d4f8"]);
    assert_eq!(h.raw_fetches("18c9f0a1b2c3d4e4"), 1, "the ledger remembers unparseable mail: not fetched again");
    let history_at_pass_4 = h.gmail().history_id.to_string();
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
    let mut gmail = FakeGmail { history_id: 9_000, ..FakeGmail::default() };
    for (n, id) in ["18d000000000000a", "18d000000000000b"].into_iter().enumerate() {
        let raw = email("Fay <fay@customer.example>", &format!("Question {n}"), &format!("f{n}@customer.example"));
        gmail.deliver(id, id, &["INBOX", "UNREAD"], unpadded(&raw));
    }
    // 429 on the second fetch (Gmail lists newest first; the poller takes the oldest first),
    // with the time in the message text as Gmail writes it.
    let until = chrono::Utc::now() + chrono::Duration::hours(2);
    let text =
        format!("Too many concurrent requests for user.  Retry after {}", until.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
    gmail.faults.push_back(Fault {
        method: "GET",
        path_end: "/messages/18d000000000000b".to_owned(),
        reply: google_error(429, &text, "rateLimitExceeded", "RESOURCE_EXHAUSTED"),
    });
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
    {
        let mut g = h.gmail();
        let raw = email("Gus <gus@customer.example>", "Another", "g1@customer.example");
        g.deliver("18d000000000000c", "18d000000000000c", &["INBOX", "UNREAD"], padded(&raw));
        let until = chrono::Utc::now() + chrono::Duration::minutes(30);
        let text = format!("User-rate limit exceeded.  Retry after {}", until.format("%Y-%m-%dT%H:%M:%S%.3fZ"));
        g.faults.push_back(Fault {
            method: "GET",
            path_end: "/history".to_owned(),
            reply: google_error(403, &text, "userRateLimitExceeded", "PERMISSION_DENIED"),
        });
    }
    let start = Instant::now();
    let Step::Failed { error, retry_in } = h.poller.step_at(start).await else { panic!("expected a failed pass") };
    assert!(matches!(error, SourceError::Gmail(gmail::GmailError::RateLimited { status: 403, .. })), "{error}");
    assert!(retry_in > Duration::from_secs(1750) && retry_in <= Duration::from_secs(1800), "{retry_in:?}");
    let count = h.fake.count();
    assert!(matches!(h.poller.step_at(start + Duration::from_secs(1700)).await, Step::BackingOff { .. }));
    assert_eq!(h.fake.count(), count, "no request while backing off");

    // A 429 with only a Retry-After header.
    h.gmail().faults.push_back(Fault {
        method: "GET",
        path_end: "/history".to_owned(),
        reply: google_error(
            429,
            "Resource has been exhausted (e.g. check quota).",
            "rateLimitExceeded",
            "RESOURCE_EXHAUSTED",
        )
        .header("retry-after", "120"),
    });
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
    let mut gmail = FakeGmail { history_id: 500, ..FakeGmail::default() };
    let raw = email("Hal <hal@customer.example>", "Login fails", "h1@customer.example");
    gmail.deliver("18e0000000000001", "18e0000000000001", &["INBOX", "UNREAD"], padded(&raw));
    let mut h = Harness::start(gmail).await;
    assert_eq!(h.synced().await.published, 1);

    // Google revokes the access token early (it would otherwise be cached for an hour).
    let before = h.fake.count();
    {
        let mut g = h.gmail();
        g.valid_token = None;
        let raw = email("Hal <hal@customer.example>", "Re: Login fails", "h2@customer.example");
        g.deliver("18e0000000000002", "18e0000000000001", &["INBOX", "UNREAD"], unpadded(&raw));
    }
    // A message deleted between the listing and the fetch is dropped from the ledger, not
    // left claimed, and does not hold the cursor back.
    {
        let mut g = h.gmail();
        let raw = email("Hal <hal@customer.example>", "Never mind", "h3@customer.example");
        g.deliver("18e0000000000003", "18e0000000000001", &["INBOX", "UNREAD"], padded(&raw));
        g.faults.push_back(Fault {
            method: "GET",
            path_end: "/messages/18e0000000000003".to_owned(),
            reply: google_error(404, "Requested entity was not found.", "notFound", "NOT_FOUND"),
        });
    }
    let report = h.synced().await;
    assert_eq!(report.published, 1);
    let gone: i64 = sqlx::query_scalar("SELECT count(*) FROM mailbox_messages WHERE mailbox_id = '18e0000000000003'")
        .fetch_one(h.poller.ledger().pool())
        .await
        .expect("count");
    assert_eq!(gone, 0);
    assert_eq!(h.cursor().await, Some(h.gmail().history_id.to_string()));
    let requests = &h.fake.requests()[before..];
    let summary: Vec<(String, Option<&str>)> =
        requests.iter().take(3).map(|r| (format!("{} {}", r.method, r.path), r.header("authorization"))).collect();
    assert_eq!(
        summary,
        vec![
            (format!("GET {API}/history"), Some("Bearer ya29.fake-1")),
            ("POST /token".to_owned(), None),
            (format!("GET {API}/history"), Some("Bearer ya29.fake-2")),
        ]
    );
    let published = h.drain().await;
    assert_eq!(published.len(), 2);
    assert!(published.iter().all(|m| m.thread_id.as_deref() == Some("18e0000000000001")));
    h.finish().await;
}

#[tokio::test]
async fn a_revoked_refresh_token_stops_polling_with_a_reauthorisation_error() {
    let mut gmail = FakeGmail { history_id: 77, refresh_revoked: true, ..FakeGmail::default() };
    let raw = email("Ida <ida@customer.example>", "Hello", "i1@customer.example");
    gmail.deliver("18f0000000000001", "18f0000000000001", &["INBOX", "UNREAD"], padded(&raw));
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
