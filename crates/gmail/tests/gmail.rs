//! The Gmail client against a local fake Gmail: an OAuth2 token endpoint and the API over an
//! in-memory mailbox, reproducing Gmail's documented wire format (string ids and history ids,
//! lists omitted when empty, base64url with and without padding, 404 for an expired history
//! cursor, Google's error envelope, 401 for a revoked access token, `invalid_grant`). The fake
//! records every request so the tests check exactly what the client sent, and failures can be
//! injected for any path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{SecondsFormat, Utc};
use gmail::{GmailClient, GmailError, GmailSettings, advance_history_cursor};
use secrecy::SecretString;
use serde_json::{Value, json};

const CLIENT_ID: &str = "1234567890-abc.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "GOCSPX-client-secret-0123456789";
const REFRESH_TOKEN: &str = "1//0refresh-token-abcdefghijklmnopqrstuvwxyz";
const ACCESS_TOKEN_PREFIX: &str = "ya29.a0-fake-access-token-";
const ADDRESS: &str = "support@example.com";
/// Above 2^53, so a client that parsed history ids as JSON numbers (f64) would lose digits.
const FIRST_HISTORY_ID: u64 = 9_007_199_254_741_000;

/// Decodes base64url as Gmail does: padding optional.
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

// ---------------------------------------------------------------- fake Gmail

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Recorded {
    fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body).into_owned().collect()
    }

    fn is_token(&self) -> bool {
        self.path == "/token"
    }
}

/// What the fake answers.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self::text(status, "application/json; charset=UTF-8", body.to_string())
    }

    fn text(status: u16, content_type: &str, body: String) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body,
            delay: Duration::ZERO,
        }
    }

    /// Google's error envelope.
    fn google(code: u16, status: &str, reason: &str, domain: &str, message: &str) -> Self {
        Self::json(
            code,
            json!({"error": {
                "code": code,
                "message": message,
                "errors": [{"message": message, "domain": domain, "reason": reason}],
                "status": status,
            }}),
        )
    }

    fn not_found() -> Self {
        Self::google(404, "NOT_FOUND", "notFound", "global", "Requested entity was not found.")
    }

    fn invalid_argument(message: &str) -> Self {
        Self::google(400, "INVALID_ARGUMENT", "invalidArgument", "global", message)
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A reply to give instead of the mailbox's, once, to the first request that matches.
struct Injection {
    method: Option<Method>,
    path_contains: String,
    reply: Reply,
}

#[derive(Clone)]
struct FakeMessage {
    id: String,
    thread_id: String,
    label_ids: Vec<String>,
    raw: Vec<u8>,
    internal_date_ms: i64,
    history_id: u64,
    /// Whether `format=raw` serves the base64url with `=` padding.
    padded: bool,
}

struct Mailbox {
    /// In arrival order; listings are newest first.
    messages: Vec<FakeMessage>,
    /// `messageAdded` records: (history id, message id, labels when added).
    added: Vec<(u64, String, Vec<String>)>,
    history_id: u64,
    /// Cursors older than this get 404, as when Gmail has dropped the history.
    oldest_history_id: u64,
    /// (id, name, type).
    labels: Vec<(String, String, &'static str)>,
    drafts: Vec<(String, String)>,
    next_id: u64,
}

impl Mailbox {
    fn new() -> Self {
        let labels = ["INBOX", "UNREAD", "SENT", "DRAFT", "SPAM", "TRASH", "IMPORTANT"]
            .into_iter()
            .map(|name| (name.to_owned(), name.to_owned(), "system"))
            .collect();
        Self {
            messages: Vec::new(),
            added: Vec::new(),
            history_id: FIRST_HISTORY_ID,
            oldest_history_id: FIRST_HISTORY_ID,
            labels,
            drafts: Vec::new(),
            next_id: 0x18f3_c2a1_b4d5_0000,
        }
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:x}", self.next_id)
    }

    fn add(&mut self, raw: Vec<u8>, label_ids: &[&str], thread_id: Option<&str>, padded: bool) -> FakeMessage {
        let id = self.new_id();
        self.history_id += 1;
        let label_ids: Vec<String> = label_ids.iter().map(|label| (*label).to_owned()).collect();
        let message = FakeMessage {
            thread_id: thread_id.map_or_else(|| id.clone(), str::to_owned),
            id: id.clone(),
            label_ids: label_ids.clone(),
            raw,
            internal_date_ms: 1_733_500_800_000 + i64::try_from(self.messages.len()).expect("small") * 1000,
            history_id: self.history_id,
            padded,
        };
        self.messages.push(message.clone());
        self.added.push((self.history_id, id, label_ids));
        message
    }

    fn find(&self, id: &str) -> Option<&FakeMessage> {
        self.messages.iter().find(|message| message.id == id)
    }

    fn label_id(&self, name: &str) -> Option<String> {
        self.labels.iter().find(|(_, label, _)| label.eq_ignore_ascii_case(name)).map(|(id, _, _)| id.clone())
    }
}

struct Tokens {
    issued: Vec<String>,
    valid: HashSet<String>,
    expires_in: u64,
    refresh_token_valid: bool,
}

struct Fake {
    requests: Mutex<Vec<Recorded>>,
    injections: Mutex<Vec<Injection>>,
    mailbox: Mutex<Mailbox>,
    tokens: Mutex<Tokens>,
}

struct FakeGmail {
    base: String,
    fake: Arc<Fake>,
}

impl FakeGmail {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("bound socket has an address");
        let fake = Arc::new(Fake {
            requests: Mutex::new(Vec::new()),
            injections: Mutex::new(Vec::new()),
            mailbox: Mutex::new(Mailbox::new()),
            tokens: Mutex::new(Tokens {
                issued: Vec::new(),
                valid: HashSet::new(),
                expires_in: 3599,
                refresh_token_valid: true,
            }),
        });
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("fake Gmail runs") });
        Self { base: format!("http://{addr}"), fake }
    }

    fn settings(&self) -> GmailSettings {
        let mut settings =
            GmailSettings::new(CLIENT_ID, SecretString::from(CLIENT_SECRET), SecretString::from(REFRESH_TOKEN));
        settings.api_base = format!("{}/gmail/v1", self.base);
        settings.token_url = format!("{}/token", self.base);
        settings.timeout_secs = 10;
        settings
    }

    fn client(&self) -> GmailClient {
        GmailClient::new(&self.settings()).expect("valid settings")
    }

    /// Answers the next request whose path contains `path_contains` (and whose method is
    /// `method`, if given) with `reply`, once.
    fn inject(&self, method: Option<Method>, path_contains: &str, reply: Reply) {
        self.fake.injections.lock().expect("not poisoned").push(Injection {
            method,
            path_contains: path_contains.to_owned(),
            reply,
        });
    }

    fn requests(&self) -> Vec<Recorded> {
        self.fake.requests.lock().expect("not poisoned").clone()
    }

    fn token_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(Recorded::is_token).collect()
    }

    fn api_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|request| !request.is_token()).collect()
    }

    fn last_api_request(&self) -> Recorded {
        self.api_requests().pop().expect("an API request was made")
    }

    fn clear_requests(&self) {
        self.fake.requests.lock().expect("not poisoned").clear();
    }

    fn add_message(&self, raw: &[u8], labels: &[&str], thread_id: Option<&str>, padded: bool) -> FakeMessage {
        self.fake.mailbox.lock().expect("not poisoned").add(raw.to_vec(), labels, thread_id, padded)
    }

    fn add_inbox(&self, subject: &str) -> FakeMessage {
        self.add_message(&rfc822(subject, "Hello, I need help."), &["INBOX", "UNREAD"], None, true)
    }

    fn message(&self, id: &str) -> FakeMessage {
        self.fake.mailbox.lock().expect("not poisoned").find(id).cloned().expect("message exists")
    }

    fn history_id(&self) -> u64 {
        self.fake.mailbox.lock().expect("not poisoned").history_id
    }

    /// Gmail dropped the history up to now: older cursors get 404.
    fn forget_history(&self) {
        let mut mailbox = self.fake.mailbox.lock().expect("not poisoned");
        mailbox.oldest_history_id = mailbox.history_id;
    }

    fn issued_tokens(&self) -> Vec<String> {
        self.fake.tokens.lock().expect("not poisoned").issued.clone()
    }

    /// Every access token issued so far stops working, as when Google revokes them early.
    fn revoke_access_tokens(&self) {
        self.fake.tokens.lock().expect("not poisoned").valid.clear();
    }

    fn revoke_refresh_token(&self) {
        self.fake.tokens.lock().expect("not poisoned").refresh_token_valid = false;
    }

    fn set_expires_in(&self, seconds: u64) {
        self.fake.tokens.lock().expect("not poisoned").expires_in = seconds;
    }
}

fn rfc822(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Customer <customer@example.org>\r\nTo: {ADDRESS}\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.len()
    )
    .into_bytes()
}

async fn handle(State(fake): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let recorded = Recorded {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri
            .query()
            .map(|query| url::form_urlencoded::parse(query.as_bytes()).into_owned().collect())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or("<binary>").to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    fake.requests.lock().expect("not poisoned").push(recorded.clone());
    let injected = {
        let mut injections = fake.injections.lock().expect("not poisoned");
        let position = injections.iter().position(|injection| {
            recorded.path.contains(&injection.path_contains)
                && injection.method.as_ref().is_none_or(|wanted| *wanted == recorded.method)
        });
        position.map(|index| injections.remove(index).reply)
    };
    let reply = match injected {
        Some(reply) => reply,
        None if recorded.is_token() => token_endpoint(&fake, &recorded),
        None => api(&fake, &recorded),
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).expect("valid response")
}

/// Google's token endpoint, refresh-token grant only.
fn token_endpoint(fake: &Fake, request: &Recorded) -> Reply {
    let oauth_error = |status: u16, error: &str, description: &str| {
        Reply::json(status, json!({"error": error, "error_description": description}))
    };
    if request.method != Method::POST || request.header("content-type") != Some("application/x-www-form-urlencoded") {
        return oauth_error(400, "invalid_request", "Invalid request");
    }
    let form = request.form();
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some("refresh_token") {
        return oauth_error(400, "unsupported_grant_type", "Invalid grant_type");
    }
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return oauth_error(401, "invalid_client", "Unauthorized");
    }
    let mut tokens = fake.tokens.lock().expect("not poisoned");
    if field("refresh_token") != Some(REFRESH_TOKEN) || !tokens.refresh_token_valid {
        return oauth_error(400, "invalid_grant", "Token has been expired or revoked.");
    }
    let token = format!("{ACCESS_TOKEN_PREFIX}{}", tokens.issued.len() + 1);
    tokens.issued.push(token.clone());
    tokens.valid.insert(token.clone());
    Reply::json(
        200,
        json!({
            "access_token": token,
            "expires_in": tokens.expires_in,
            "scope": "https://www.googleapis.com/auth/gmail.modify https://www.googleapis.com/auth/gmail.send",
            "token_type": "Bearer",
        }),
    )
}

/// The Gmail API under `/gmail/v1/users/{user}/`.
fn api(fake: &Fake, request: &Recorded) -> Reply {
    let Some(rest) = request.path.strip_prefix("/gmail/v1/users/") else {
        return Reply::text(
            404,
            "text/html; charset=UTF-8",
            "<html><title>Error 404 (Not Found)!!1</title></html>".into(),
        );
    };
    let token = request.header("authorization").and_then(|value| value.strip_prefix("Bearer "));
    if !token.is_some_and(|token| fake.tokens.lock().expect("not poisoned").valid.contains(token)) {
        return Reply::google(
            401,
            "UNAUTHENTICATED",
            "authError",
            "global",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other \
             valid authentication credential.",
        )
        .header("www-authenticate", "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"");
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let Some((user, segments)) = segments.split_first() else {
        return Reply::not_found();
    };
    if *user != "me" && *user != ADDRESS {
        return Reply::google(
            403,
            "PERMISSION_DENIED",
            "forbidden",
            "global",
            &format!("Delegation denied for {user}"),
        );
    }
    let mut mailbox = fake.mailbox.lock().expect("not poisoned");
    let method = &request.method;
    match segments {
        ["profile"] if method == Method::GET => Reply::json(
            200,
            json!({
                "emailAddress": ADDRESS,
                "messagesTotal": mailbox.messages.len(),
                "threadsTotal": mailbox.messages.iter().map(|m| &m.thread_id).collect::<HashSet<_>>().len(),
                "historyId": mailbox.history_id.to_string(),
            }),
        ),
        ["messages"] if method == Method::GET => list_messages(&mailbox, request),
        ["messages", "send"] if method == Method::POST => {
            let body = request.json();
            store_outgoing(&mut mailbox, &body, "SENT").map_or_else(
                |reply| reply,
                |m| Reply::json(200, json!({"id": m.id, "threadId": m.thread_id, "labelIds": m.label_ids})),
            )
        }
        ["messages", id] if method == Method::GET => {
            if !id.chars().all(|c| c.is_ascii_hexdigit()) {
                return Reply::invalid_argument("Invalid id value");
            }
            let Some(message) = mailbox.find(id) else {
                return Reply::not_found();
            };
            if request.param("format") != Some("raw") {
                return Reply::invalid_argument("this fake serves format=raw only");
            }
            let raw = if message.padded { URL_SAFE.encode(&message.raw) } else { URL_SAFE_NO_PAD.encode(&message.raw) };
            let snippet: String = String::from_utf8_lossy(&message.raw).chars().rev().take(20).collect();
            Reply::json(
                200,
                json!({
                    "id": message.id,
                    "threadId": message.thread_id,
                    "labelIds": message.label_ids,
                    "snippet": snippet.chars().rev().collect::<String>().trim(),
                    "historyId": message.history_id.to_string(),
                    "internalDate": message.internal_date_ms.to_string(),
                    "sizeEstimate": message.raw.len(),
                    "raw": raw,
                }),
            )
        }
        ["messages", id, "modify"] if method == Method::POST => modify(&mut mailbox, id, &request.json()),
        ["history"] if method == Method::GET => list_history(&mailbox, request),
        ["labels"] if method == Method::GET => {
            let labels: Vec<Value> =
                mailbox.labels.iter().map(|(id, name, kind)| json!({"id": id, "name": name, "type": kind})).collect();
            Reply::json(200, json!({ "labels": labels }))
        }
        ["labels"] if method == Method::POST => {
            let body = request.json();
            let Some(name) = body["name"].as_str().filter(|name| !name.is_empty()) else {
                return Reply::invalid_argument("Invalid label name");
            };
            if mailbox.label_id(name).is_some() {
                return Reply::google(409, "ABORTED", "duplicate", "global", "Label name exists or conflicts");
            }
            let id = format!("Label_{}", mailbox.labels.len() + 1);
            mailbox.labels.push((id.clone(), name.to_owned(), "user"));
            Reply::json(
                200,
                json!({
                    "id": id,
                    "name": name,
                    "messageListVisibility": body["messageListVisibility"],
                    "labelListVisibility": body["labelListVisibility"],
                    "type": "user",
                }),
            )
        }
        ["drafts"] if method == Method::POST => {
            let body = request.json();
            match store_outgoing(&mut mailbox, &body["message"], "DRAFT") {
                Ok(message) => {
                    let draft_id = format!("r-{}", 5_823_012_345_678_901_234_u64 + mailbox.drafts.len() as u64);
                    mailbox.drafts.push((draft_id.clone(), message.id.clone()));
                    Reply::json(
                        200,
                        json!({
                            "id": draft_id,
                            "message": {"id": message.id, "threadId": message.thread_id, "labelIds": message.label_ids},
                        }),
                    )
                }
                Err(reply) => reply,
            }
        }
        _ => Reply::not_found(),
    }
}

fn list_messages(mailbox: &Mailbox, request: &Recorded) -> Reply {
    let terms: Vec<&str> = request.param("q").unwrap_or_default().split_whitespace().collect();
    let has =
        |message: &FakeMessage, label: Option<String>| label.is_some_and(|label| message.label_ids.contains(&label));
    let matching: Vec<&FakeMessage> = mailbox
        .messages
        .iter()
        .rev()
        .filter(|message| {
            terms.iter().all(|term| match *term {
                "is:unread" => has(message, Some("UNREAD".into())),
                "in:inbox" => has(message, Some("INBOX".into())),
                _ => match (term.strip_prefix("-label:"), term.strip_prefix("label:")) {
                    (Some(name), _) => !has(message, mailbox.label_id(name)),
                    (_, Some(name)) => has(message, mailbox.label_id(name)),
                    _ => true,
                },
            })
        })
        .collect();
    let (offset, size) = match page(request) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(size)
        .map(|message| json!({"id": message.id, "threadId": message.thread_id}))
        .collect();
    let mut body = json!({ "resultSizeEstimate": matching.len() });
    // Gmail omits `messages` altogether when there are none.
    if !page.is_empty() {
        body["messages"] = Value::Array(page);
    }
    if offset + size < matching.len() {
        body["nextPageToken"] = Value::String((offset + size).to_string());
    }
    Reply::json(200, body)
}

fn list_history(mailbox: &Mailbox, request: &Recorded) -> Reply {
    let Some(start) = request.param("startHistoryId") else {
        return Reply::invalid_argument("Missing required field: startHistoryId");
    };
    let Ok(start) = start.parse::<u64>() else {
        return Reply::invalid_argument("Invalid startHistoryId");
    };
    if start < mailbox.oldest_history_id {
        return Reply::not_found();
    }
    if request.param("historyTypes") != Some("messageAdded") {
        return Reply::invalid_argument("this fake records messageAdded only");
    }
    let label = request.param("labelId");
    let records: Vec<Value> = mailbox
        .added
        .iter()
        .filter(|(id, _, labels)| *id > start && label.is_none_or(|label| labels.iter().any(|l| l == label)))
        .map(|(id, message_id, labels)| {
            let thread_id = &mailbox.find(message_id).expect("recorded message exists").thread_id;
            json!({
                "id": id.to_string(),
                "messages": [{"id": message_id, "threadId": thread_id}],
                "messagesAdded": [{"message": {"id": message_id, "threadId": thread_id, "labelIds": labels}}],
            })
        })
        .collect();
    let (offset, size) = match page(request) {
        Ok(page) => page,
        Err(reply) => return reply,
    };
    let page: Vec<Value> = records.iter().skip(offset).take(size).cloned().collect();
    let mut body = json!({ "historyId": mailbox.history_id.to_string() });
    // Gmail omits `history` altogether when nothing changed.
    if !page.is_empty() {
        body["history"] = Value::Array(page);
    }
    if offset + size < records.len() {
        body["nextPageToken"] = Value::String((offset + size).to_string());
    }
    Reply::json(200, body)
}

/// (offset, page size) from `pageToken` and `maxResults`.
fn page(request: &Recorded) -> Result<(usize, usize), Reply> {
    let offset = match request.param("pageToken") {
        Some(token) => token.parse().map_err(|_| Reply::invalid_argument("Invalid pageToken"))?,
        None => 0,
    };
    let size = match request.param("maxResults") {
        Some(size) => size.parse::<usize>().map_err(|_| Reply::invalid_argument("Invalid maxResults"))?.min(500),
        None => 100,
    };
    Ok((offset, size))
}

fn modify(mailbox: &mut Mailbox, id: &str, body: &Value) -> Reply {
    let ids = |field: &str| -> Vec<String> {
        body[field]
            .as_array()
            .map(|ids| ids.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    let (add, remove) = (ids("addLabelIds"), ids("removeLabelIds"));
    for label in add.iter().chain(&remove) {
        if !mailbox.labels.iter().any(|(known, _, _)| known == label) {
            return Reply::invalid_argument(&format!("Invalid label: {label}"));
        }
    }
    mailbox.history_id += 1;
    let history_id = mailbox.history_id;
    let Some(message) = mailbox.messages.iter_mut().find(|message| message.id == id) else {
        return Reply::not_found();
    };
    message.label_ids.retain(|label| !remove.contains(label));
    for label in add {
        if !message.label_ids.contains(&label) {
            message.label_ids.push(label);
        }
    }
    message.history_id = history_id;
    Reply::json(200, json!({"id": message.id, "threadId": message.thread_id, "labelIds": message.label_ids}))
}

/// Stores a message from a `{"raw","threadId"}` resource, as send and drafts.create do.
fn store_outgoing(mailbox: &mut Mailbox, message: &Value, label: &str) -> Result<FakeMessage, Reply> {
    let raw = message["raw"].as_str().ok_or_else(|| {
        Reply::invalid_argument("'raw' RFC822 payload message string or uploading message via /upload/* URL required")
    })?;
    let raw = URL_SAFE_ANY_PADDING.decode(raw).map_err(|_| Reply::invalid_argument("Invalid value for ByteString"))?;
    let thread_id = message.get("threadId").and_then(Value::as_str);
    if let Some(thread_id) = thread_id
        && !mailbox.messages.iter().any(|message| message.thread_id == thread_id)
    {
        return Err(Reply::not_found());
    }
    Ok(mailbox.add(raw, &[label], thread_id, true))
}

// ---------------------------------------------------------------- helpers

/// The error a fresh client gets from `get_profile` when the API answers `reply`.
async fn profile_error(fake: &FakeGmail, reply: Reply) -> GmailError {
    fake.inject(None, "/profile", reply);
    fake.client().get_profile().await.expect_err("the injected reply is an error")
}

fn assert_no_secrets(text: &str) {
    for secret in [CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN_PREFIX] {
        assert!(!text.contains(secret), "{secret:?} leaked into {text:?}");
    }
}

fn future_rfc3339(seconds: i64) -> String {
    (Utc::now() + chrono::TimeDelta::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn assert_retry_near(error: &GmailError, seconds: u64) {
    let retry = error.retry_after().unwrap_or_else(|| panic!("{error:?} has a retry hint"));
    assert!(
        retry <= Duration::from_secs(seconds) && retry > Duration::from_secs(seconds.saturating_sub(20)),
        "{retry:?} is not about {seconds}s ({error:?})"
    );
}

// ---------------------------------------------------------------- OAuth2

#[tokio::test]
async fn token_is_refreshed_with_a_form_post_and_cached() {
    let fake = FakeGmail::start().await;
    let client = fake.client();

    let profile = client.get_profile().await.expect("profile");
    assert_eq!(profile.email_address, ADDRESS);
    assert_eq!(profile.history_id, FIRST_HISTORY_ID.to_string(), "string history id kept exactly (> 2^53)");
    assert_eq!(profile.messages_total, Some(0));
    client.get_profile().await.expect("profile again");

    let tokens = fake.token_requests();
    assert_eq!(tokens.len(), 1, "the token is cached: {tokens:#?}");
    let token = &tokens[0];
    assert_eq!(token.method, Method::POST);
    assert_eq!(token.header("content-type"), Some("application/x-www-form-urlencoded"));
    let expected: HashMap<String, String> = [
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", REFRESH_TOKEN),
        ("grant_type", "refresh_token"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(token.form(), expected);

    let api = fake.api_requests();
    assert_eq!(api.len(), 2);
    for request in &api {
        assert_eq!(request.method, Method::GET);
        assert_eq!(request.path, "/gmail/v1/users/me/profile");
        assert_eq!(request.header("authorization"), Some(format!("Bearer {ACCESS_TOKEN_PREFIX}1").as_str()));
    }
}

#[tokio::test]
async fn token_is_refreshed_shortly_before_it_expires() {
    let fake = FakeGmail::start().await;
    // Within the client's safety margin: the token would lapse during or right after a call.
    fake.set_expires_in(45);
    let client = fake.client();
    client.get_profile().await.expect("profile");
    client.get_profile().await.expect("profile again");
    assert_eq!(fake.token_requests().len(), 2, "a token about to expire is not reused");
    let api = fake.api_requests();
    assert_eq!(api[1].header("authorization"), Some(format!("Bearer {ACCESS_TOKEN_PREFIX}2").as_str()));
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    let fake = FakeGmail::start().await;
    let client = fake.client();
    client.get_profile().await.expect("profile");
    fake.revoke_access_tokens();
    fake.clear_requests();

    let profile = client.get_profile().await.expect("profile after a refresh");
    assert_eq!(profile.email_address, ADDRESS);
    let sequence: Vec<(String, Option<String>)> = fake
        .requests()
        .iter()
        .map(|request| (request.path.clone(), request.header("authorization").map(str::to_owned)))
        .collect();
    assert_eq!(
        sequence,
        vec![
            ("/gmail/v1/users/me/profile".to_owned(), Some(format!("Bearer {ACCESS_TOKEN_PREFIX}1"))),
            ("/token".to_owned(), None),
            ("/gmail/v1/users/me/profile".to_owned(), Some(format!("Bearer {ACCESS_TOKEN_PREFIX}2"))),
        ]
    );
    // The new token is cached in turn.
    client.get_profile().await.expect("profile");
    assert_eq!(fake.token_requests().len(), 1);
}

#[tokio::test]
async fn a_second_401_is_unauthorized_and_permanent() {
    let fake = FakeGmail::start().await;
    let unauthorized =
        Reply::google(401, "UNAUTHENTICATED", "authError", "global", "Request had invalid authentication credentials.");
    fake.inject(None, "/profile", unauthorized.clone());
    fake.inject(None, "/profile", unauthorized);

    let error = fake.client().get_profile().await.expect_err("401 twice");
    assert!(matches!(error, GmailError::Unauthorized { .. }), "{error:?}");
    assert!(!error.is_transient());
    assert_eq!(error.status(), Some(401));
    assert!(error.to_string().contains("invalid authentication credentials"), "{error}");
    assert_eq!(fake.token_requests().len(), 2, "one initial token and exactly one refresh");
    assert_eq!(fake.api_requests().len(), 2, "one retry only");
}

#[tokio::test]
async fn invalid_grant_requires_reauthorization() {
    let fake = FakeGmail::start().await;
    fake.revoke_refresh_token();
    let error = fake.client().list_messages("in:inbox", None).await.expect_err("refresh token revoked");
    assert!(matches!(error, GmailError::ReauthorizationRequired { .. }), "{error:?}");
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(text.contains("re-authorise") && text.contains("Token has been expired or revoked."), "{text}");
    assert!(fake.api_requests().is_empty(), "no API call without a token");
    assert_no_secrets(&format!("{error} {error:?}"));

    // Also when the access token was revoked at the same time: the refresh after the 401 fails.
    let fake = FakeGmail::start().await;
    let client = fake.client();
    client.get_profile().await.expect("profile");
    fake.revoke_access_tokens();
    fake.revoke_refresh_token();
    let error = client.get_profile().await.expect_err("cannot refresh");
    assert!(matches!(error, GmailError::ReauthorizationRequired { .. }), "{error:?}");
}

#[tokio::test]
async fn token_endpoint_errors_are_classified() {
    let fake = FakeGmail::start().await;

    // A wrong client secret: permanent, and the secret sent is never quoted.
    let mut settings = fake.settings();
    settings.client_secret = SecretString::from("GOCSPX-wrong-secret-987654");
    let error = GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("bad client");
    assert!(matches!(error, GmailError::Permanent { status: Some(401), .. }), "{error:?}");
    assert!(error.to_string().contains("invalid_client"), "{error}");

    // Other 400s, e.g. an unknown client id.
    let mut settings = fake.settings();
    settings.client_id = "someone-else.apps.googleusercontent.com".to_owned();
    fake.inject(
        None,
        "/token",
        Reply::json(400, json!({"error": "unauthorized_client", "error_description": "Unauthorized"})),
    );
    let error = GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("bad client");
    assert!(matches!(error, GmailError::Permanent { status: Some(400), .. }), "{error:?}");
    assert!(!error.is_transient());

    // 5xx and 429 pass.
    fake.inject(
        None,
        "/token",
        Reply::text(503, "text/html", "<html>Service Unavailable</html>".into()).header("retry-after", "3"),
    );
    let error = fake.client().get_profile().await.expect_err("token endpoint down");
    assert!(matches!(error, GmailError::Transient { status: Some(503), .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    fake.inject(None, "/token", Reply::json(500, json!({"error": "internal_failure"})));
    let error = fake.client().get_profile().await.expect_err("token endpoint failing");
    assert!(error.is_transient(), "{error:?}");

    // The next call works: nothing was cached from the failures.
    fake.client().get_profile().await.expect("token endpoint back");

    // A body that is not a token.
    fake.inject(None, "/token", Reply::json(200, json!({"token": "nope"})));
    let error = fake.client().get_profile().await.expect_err("not a token response");
    assert!(matches!(error, GmailError::Permanent { status: Some(200), .. }), "{error:?}");
}

#[tokio::test]
async fn token_endpoint_timeout_is_transient() {
    let fake = FakeGmail::start().await;
    let mut settings = fake.settings();
    settings.timeout_secs = 1;
    fake.inject(None, "/token", Reply::json(200, json!({})).delayed(Duration::from_secs(3)));
    let error = GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("timed out");
    assert!(matches!(error, GmailError::Transient { status: None, .. }), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");
}

// ---------------------------------------------------------------- listing and history

#[tokio::test]
async fn list_messages_pages_through_results() {
    let fake = FakeGmail::start().await;
    let unread: Vec<_> = (1..=5).map(|n| fake.add_inbox(&format!("Question {n}"))).collect();
    fake.add_message(&rfc822("Already read", "x"), &["INBOX"], None, true);
    let client = fake.client().with_page_size(2);

    let mut ids = Vec::new();
    let mut page_token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = client.list_messages("is:unread in:inbox", page_token.as_deref()).await.expect("page");
        pages += 1;
        assert_eq!(page.result_size_estimate, Some(5));
        assert!(page.messages.iter().all(|message| message.label_ids.is_empty()), "listing carries ids only");
        ids.extend(page.messages.iter().map(|message| (message.id.clone(), message.thread_id.clone())));
        let request = fake.last_api_request();
        assert_eq!(request.path, "/gmail/v1/users/me/messages");
        assert_eq!(request.param("q"), Some("is:unread in:inbox"));
        assert_eq!(request.param("maxResults"), Some("2"));
        assert_eq!(request.param("pageToken"), page_token.as_deref());
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<_> = unread.iter().rev().map(|message| (message.id.clone(), message.thread_id.clone())).collect();
    assert_eq!(ids, expected, "newest first, every unread message once");

    // No match: Gmail omits `messages`.
    let page = client.list_messages("label:Nonexistent", None).await.expect("empty page");
    assert!(page.messages.is_empty());
    assert_eq!(page.next_page_token, None);
    assert_eq!(page.result_size_estimate, Some(0));
}

#[tokio::test]
async fn history_pages_omitted_lists_and_expired_cursor() {
    let fake = FakeGmail::start().await;
    let client = fake.client().with_page_size(2);
    let start = client.get_profile().await.expect("profile").history_id;

    // Nothing happened yet: Gmail omits `history`.
    let page = client.list_history(&start, None).await.expect("history");
    assert!(page.history.is_empty() && page.next_page_token.is_none());
    assert_eq!(page.history_id, start);
    let request = fake.last_api_request();
    assert_eq!(request.path, "/gmail/v1/users/me/history");
    assert_eq!(request.param("startHistoryId"), Some(start.as_str()));
    assert_eq!(request.param("historyTypes"), Some("messageAdded"));
    assert_eq!(request.param("labelId"), Some("INBOX"));

    let first = fake.add_inbox("First");
    fake.add_message(&rfc822("Outgoing", "x"), &["SENT"], None, true);
    let second = fake.add_inbox("Second");
    let reply = fake.add_message(&rfc822("Re: First", "more"), &["INBOX", "UNREAD"], Some(&first.thread_id), true);
    let third = fake.add_inbox("Third");

    let mut cursor = Some(start.clone());
    let mut added = Vec::new();
    let mut page_token: Option<String> = None;
    let mut latest;
    loop {
        let page = client.list_history(&start, page_token.as_deref()).await.expect("history page");
        assert_eq!(fake.last_api_request().param("pageToken"), page_token.as_deref());
        added.extend(page.added_messages().into_iter().cloned());
        for record in &page.history {
            assert!(record.id.parse::<u64>().expect("numeric string") > start.parse::<u64>().expect("numeric"));
        }
        latest = page.history_id.clone();
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => break,
        }
    }
    let ids: Vec<&str> = added.iter().map(|message| message.id.as_str()).collect();
    assert_eq!(ids, [&first.id, &second.id, &reply.id, &third.id].map(String::as_str), "inbox additions, oldest first");
    assert_eq!(added[2].thread_id, first.thread_id);
    assert_eq!(added[0].label_ids, ["INBOX", "UNREAD"]);
    assert_eq!(latest, fake.history_id().to_string());
    assert!(advance_history_cursor(&mut cursor, &latest));
    assert!(!advance_history_cursor(&mut cursor, &start), "never moves back");
    assert_eq!(cursor.as_deref(), Some(latest.as_str()));

    // Gmail drops old history: the old cursor is a 404, which means "resync".
    fake.forget_history();
    let error = client.list_history(&start, None).await.expect_err("cursor expired");
    assert_eq!(error, GmailError::HistoryExpired { start_history_id: start.clone() });
    assert!(!error.is_transient());
    // The current cursor still works.
    let page = client.list_history(&latest, None).await.expect("current cursor");
    assert!(page.history.is_empty());
}

// ---------------------------------------------------------------- messages

#[tokio::test]
async fn get_raw_decodes_base64url_with_and_without_padding() {
    let fake = FakeGmail::start().await;
    let client = fake.client();
    // Non-ASCII text and bytes that need the URL-safe alphabet (`-`, `_`).
    let mut raw = rfc822("Réclamation ???>>>", "Grüße — ça ne marche pas ~~~ ÿÿÿ");
    while raw.len() % 3 != 1 {
        raw.push(b' ');
    }
    assert!(URL_SAFE.encode(&raw).ends_with("=="), "the padded form has padding");
    assert!(STANDARD.encode(&raw).contains(['+', '/']), "the URL-safe alphabet matters");

    for padded in [true, false] {
        let stored = fake.add_message(&raw, &["INBOX", "UNREAD"], None, padded);
        let message = client.get_raw(&stored.id).await.expect("raw message");
        assert_eq!(message.raw, raw, "padded: {padded}");
        assert_eq!(message.id, stored.id);
        assert_eq!(message.thread_id, stored.thread_id);
        assert_eq!(message.label_ids, ["INBOX", "UNREAD"]);
        assert_eq!(message.history_id.as_deref(), Some(stored.history_id.to_string().as_str()));
        assert_eq!(message.internal_date.as_deref(), Some(stored.internal_date_ms.to_string().as_str()));
        assert_eq!(message.received_at().map(|t| t.timestamp_millis()), Some(stored.internal_date_ms));
        assert_eq!(message.size_estimate, Some(raw.len() as u64));
        assert!(!message.snippet.is_empty());
        let request = fake.last_api_request();
        assert_eq!(request.path, format!("/gmail/v1/users/me/messages/{}", stored.id));
        assert_eq!(request.param("format"), Some("raw"));
    }

    // Missing and malformed ids.
    let error = client.get_raw("18f3c2a1b4d5ffff").await.expect_err("no such message");
    assert!(matches!(error, GmailError::NotFound { .. }), "{error:?}");
    assert!(!error.is_transient());
    let error = client.get_raw("not-an-id").await.expect_err("malformed id");
    assert!(matches!(error, GmailError::Permanent { status: Some(400), .. }), "{error:?}");
    let error = client.get_raw(" ").await.expect_err("empty id");
    assert!(matches!(error, GmailError::Permanent { status: None, .. }), "{error:?}");

    // A raw that is not base64url is a permanent error that says so.
    fake.inject(None, "/messages/", Reply::json(200, json!({"id": "1", "threadId": "1", "raw": "not base64!"})));
    let error = client.get_raw("18f3c2a1b4d50001").await.expect_err("bad raw");
    assert!(error.to_string().contains("base64url"), "{error}");
}

#[tokio::test]
async fn labels_are_ensured_and_modified() {
    let fake = FakeGmail::start().await;
    let client = fake.client();
    let message = fake.add_inbox("Help");

    let label = client.ensure_label("Mailroom/Processed").await.expect("label created");
    assert_eq!(label.name, "Mailroom/Processed");
    assert!(label.id.starts_with("Label_"));
    let requests = fake.api_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!((requests[0].method.clone(), requests[0].path.as_str()), (Method::GET, "/gmail/v1/users/me/labels"));
    assert_eq!((requests[1].method.clone(), requests[1].path.as_str()), (Method::POST, "/gmail/v1/users/me/labels"));
    assert_eq!(
        requests[1].json(),
        json!({"name": "Mailroom/Processed", "labelListVisibility": "labelShow", "messageListVisibility": "show"})
    );

    // Existing (Gmail compares names without case): found, not created again.
    fake.clear_requests();
    assert_eq!(client.ensure_label("mailroom/processed").await.expect("label found"), label);
    assert_eq!(fake.api_requests().len(), 1);

    // Created by someone else between the listing and the creation: 409, then found.
    fake.clear_requests();
    fake.inject(
        Some(Method::GET),
        "/labels",
        Reply::json(200, json!({"labels": [{"id": "INBOX", "name": "INBOX", "type": "system"}]})),
    );
    assert_eq!(client.ensure_label("Mailroom/Processed").await.expect("label after a conflict"), label);
    let methods: Vec<Method> = fake.api_requests().into_iter().map(|request| request.method).collect();
    assert_eq!(methods, [Method::GET, Method::POST, Method::GET]);

    let updated = client.modify_labels(&message.id, &[&label.id], &["UNREAD"]).await.expect("modified");
    let request = fake.last_api_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, format!("/gmail/v1/users/me/messages/{}/modify", message.id));
    assert_eq!(request.json(), json!({"addLabelIds": [label.id], "removeLabelIds": ["UNREAD"]}));
    assert_eq!(updated.id, message.id);
    assert_eq!(updated.label_ids, ["INBOX", label.id.as_str()]);
    assert_eq!(fake.message(&message.id).label_ids, ["INBOX", label.id.as_str()]);

    let error = client.modify_labels(&message.id, &["Label_99"], &[]).await.expect_err("unknown label");
    assert!(matches!(error, GmailError::Permanent { status: Some(400), .. }), "{error:?}");
    assert!(error.to_string().contains("Invalid label: Label_99"), "{error}");
    let error = client.modify_labels("18f3c2a1b4d5ffff", &[], &["UNREAD"]).await.expect_err("no such message");
    assert!(matches!(error, GmailError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn send_posts_exact_raw_bytes_in_the_thread() {
    let fake = FakeGmail::start().await;
    let client = fake.client();
    let original = fake.add_inbox("Where is my order?");
    let mut reply = format!(
        "From: {ADDRESS}\r\nTo: customer@example.org\r\nSubject: Re: Where is my order?\r\n\
         In-Reply-To: <18@example.org>\r\nReferences: <18@example.org>\r\n\r\nBonjour — voilà ??>> ~~~\r\n"
    )
    .into_bytes();
    reply.push(0xff);
    while reply.len() % 3 == 0 {
        reply.push(b'\n');
    }
    assert!(STANDARD.encode(&reply).contains(['+', '/']), "the URL-safe alphabet matters");

    let sent = client.send(&reply, Some(&original.thread_id)).await.expect("sent");
    let request = fake.last_api_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/gmail/v1/users/me/messages/send");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.json(), json!({"raw": URL_SAFE_NO_PAD.encode(&reply), "threadId": original.thread_id}));
    let raw = request.json()["raw"].as_str().expect("raw is a string").to_owned();
    assert!(!raw.contains(['=', '+', '/']), "base64url without padding: {raw}");
    assert_eq!(URL_SAFE_NO_PAD.decode(&raw).expect("strict base64url without padding"), reply);

    assert_eq!(sent.thread_id, original.thread_id);
    assert_eq!(sent.label_ids, ["SENT"]);
    assert_eq!(fake.message(&sent.id).raw, reply);

    // A new conversation: no `threadId` at all.
    let sent = client.send(b"Subject: Hi\r\n\r\nHello", None).await.expect("sent");
    assert_eq!(fake.last_api_request().json(), json!({"raw": URL_SAFE_NO_PAD.encode(b"Subject: Hi\r\n\r\nHello")}));
    assert_eq!(sent.thread_id, sent.id);

    let error = client.send(b"Subject: Hi\r\n\r\nHello", Some("ffffffffffffffff")).await.expect_err("unknown thread");
    assert!(matches!(error, GmailError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn drafts_are_created_in_the_thread() {
    let fake = FakeGmail::start().await;
    let client = fake.client();
    let original = fake.add_inbox("Refund?");
    let body = b"Subject: Re: Refund?\r\n\r\nDraft answer \xc3\xa9";

    let draft = client.create_draft(body, Some(&original.thread_id)).await.expect("draft");
    let request = fake.last_api_request();
    assert_eq!((request.method.clone(), request.path.as_str()), (Method::POST, "/gmail/v1/users/me/drafts"));
    assert_eq!(
        request.json(),
        json!({"message": {"raw": URL_SAFE_NO_PAD.encode(body), "threadId": original.thread_id}})
    );
    assert!(draft.id.starts_with("r-"));
    assert_eq!(draft.message.thread_id, original.thread_id);
    assert_eq!(draft.message.label_ids, ["DRAFT"]);
    assert_eq!(fake.message(&draft.message.id).raw, body);
}

// ---------------------------------------------------------------- error classification

#[tokio::test]
async fn rate_limits_carry_the_retry_time_from_the_message() {
    let fake = FakeGmail::start().await;

    // Gmail's sending limit: the time is in the message text only.
    let message = format!("User-rate limit exceeded.  Retry after {}", future_rfc3339(120));
    let error =
        profile_error(&fake, Reply::google(403, "PERMISSION_DENIED", "userRateLimitExceeded", "usageLimits", &message))
            .await;
    assert!(matches!(error, GmailError::RateLimited { status: 403, .. }), "{error:?}");
    assert!(error.is_transient());
    assert_retry_near(&error, 120);

    // The text wins over the header; it may sit in `errors[].message` only.
    let text = format!("Rate Limit Exceeded.  Retry after {}", future_rfc3339(300));
    let reply = Reply::json(
        403,
        json!({"error": {"code": 403, "message": "Rate Limit Exceeded",
            "errors": [{"message": text, "domain": "usageLimits", "reason": "rateLimitExceeded"}],
            "status": "PERMISSION_DENIED"}}),
    )
    .header("retry-after", "5");
    let error = profile_error(&fake, reply).await;
    assert!(matches!(error, GmailError::RateLimited { status: 403, .. }), "{error:?}");
    assert_retry_near(&error, 300);

    // 429 with the time in the text, with a header only, with nothing.
    let message = format!("Too many concurrent requests for user.  Retry after {}", future_rfc3339(60));
    let error =
        profile_error(&fake, Reply::google(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "usageLimits", &message))
            .await;
    assert!(matches!(error, GmailError::RateLimited { status: 429, .. }), "{error:?}");
    assert_retry_near(&error, 60);
    let reply = Reply::google(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", "usageLimits", "Too many requests")
        .header("retry-after", "7");
    let error = profile_error(&fake, reply).await;
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)), "{error:?}");
    let error = profile_error(&fake, Reply::text(429, "text/plain", String::new())).await;
    assert!(matches!(error, GmailError::RateLimited { status: 429, retry_after: None, .. }), "{error:?}");
    assert!(error.is_transient());

    // A time already past means "now".
    let message = format!("User-rate limit exceeded.  Retry after {}", future_rfc3339(-30));
    let error =
        profile_error(&fake, Reply::google(403, "PERMISSION_DENIED", "userRateLimitExceeded", "usageLimits", &message))
            .await;
    assert_eq!(error.retry_after(), Some(Duration::ZERO));
}

#[tokio::test]
async fn daily_quota_is_transient_with_a_long_retry() {
    let fake = FakeGmail::start().await;
    for reason in ["dailyLimitExceeded", "quotaExceeded"] {
        let error = profile_error(
            &fake,
            Reply::google(403, "PERMISSION_DENIED", reason, "usageLimits", "Daily Limit Exceeded"),
        )
        .await;
        assert!(matches!(error, GmailError::QuotaExhausted { status: 403, .. }), "{error:?}");
        assert!(error.is_transient());
        assert!(error.retry_after().expect("a retry time") >= Duration::from_secs(30 * 60), "{error:?}");
    }
}

#[tokio::test]
async fn permanent_and_transient_statuses() {
    let fake = FakeGmail::start().await;
    let permanent = [
        Reply::google(
            403,
            "PERMISSION_DENIED",
            "insufficientPermissions",
            "global",
            "Request had insufficient authentication scopes.",
        ),
        Reply::google(403, "PERMISSION_DENIED", "forbidden", "global", "Forbidden"),
        Reply::invalid_argument("Invalid query"),
        Reply::google(400, "FAILED_PRECONDITION", "failedPrecondition", "global", "Precondition check failed."),
        Reply::text(302, "text/html", String::new()).header("location", "https://accounts.google.com/"),
        Reply::text(200, "text/html", "<html>captive portal</html>".into()),
    ];
    for reply in permanent {
        let status = reply.status;
        let error = profile_error(&fake, reply).await;
        assert!(matches!(error, GmailError::Permanent { .. }), "{status}: {error:?}");
        assert!(!error.is_transient(), "{status}: {error:?}");
        assert_eq!(error.status(), Some(status));
        assert_eq!(error.retry_after(), None);
    }
    let error = profile_error(&fake, Reply::not_found()).await;
    assert!(matches!(error, GmailError::NotFound { .. }) && !error.is_transient(), "{error:?}");

    let transient = [
        Reply::google(500, "INTERNAL", "backendError", "global", "Backend Error"),
        Reply::text(502, "text/html", "<html><title>502 Bad Gateway</title></html>".into()),
        Reply::google(503, "UNAVAILABLE", "backendError", "global", "The service is currently unavailable.")
            .header("retry-after", "30"),
        Reply::text(504, "text/plain", String::new()),
    ];
    for reply in transient {
        let status = reply.status;
        let error = profile_error(&fake, reply).await;
        assert!(matches!(error, GmailError::Transient { .. }), "{status}: {error:?}");
        assert!(error.is_transient());
        assert_eq!(error.status(), Some(status));
        if status == 503 {
            assert_eq!(error.retry_after(), Some(Duration::from_secs(30)));
        }
    }
    // The message quotes Gmail's own text.
    let error = profile_error(&fake, Reply::google(500, "INTERNAL", "backendError", "global", "Backend Error")).await;
    assert!(error.to_string().contains("users.getProfile: Backend Error"), "{error}");
}

#[tokio::test]
async fn timeouts_and_connection_failures_are_transient() {
    let fake = FakeGmail::start().await;
    let mut settings = fake.settings();
    settings.timeout_secs = 1;
    let client = GmailClient::new(&settings).expect("valid");
    client.get_profile().await.expect("token cached");
    fake.inject(None, "/profile", Reply::json(200, json!({})).delayed(Duration::from_secs(3)));
    let error = client.get_profile().await.expect_err("timed out");
    assert!(matches!(error, GmailError::Transient { status: None, .. }), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");

    // Nothing listens: bind a port, then free it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = format!("http://{}", listener.local_addr().expect("address"));
    drop(listener);
    let mut settings = fake.settings();
    settings.api_base = format!("{closed}/gmail/v1");
    let error = GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("connection refused");
    assert!(matches!(error, GmailError::Transient { status: None, .. }), "{error:?}");
    settings.token_url = format!("{closed}/token");
    let error = GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("connection refused");
    assert!(error.is_transient(), "{error:?}");
}

#[tokio::test]
async fn secrets_never_appear_in_errors_or_debug() {
    let fake = FakeGmail::start().await;
    let settings = fake.settings();
    let client = GmailClient::new(&settings).expect("valid");
    assert_no_secrets(&format!("{settings:?} {client:?}"));
    client.get_profile().await.expect("profile");
    assert_no_secrets(&format!("{client:?}"));

    // Servers that echo credentials back.
    let mut errors = Vec::new();
    fake.inject(
        None,
        "/token",
        Reply::json(401, json!({"error": "invalid_client", "error_description": format!("client_secret {CLIENT_SECRET} for refresh token {REFRESH_TOKEN} is wrong")})),
    );
    errors.push(GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("echoed secret"));
    fake.inject(
        None,
        "/token",
        Reply::json(400, json!({"error": "invalid_grant", "error_description": format!("{REFRESH_TOKEN} revoked")})),
    );
    errors.push(GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("echoed token"));
    let token = fake.issued_tokens().pop().expect("a token was issued");
    for status in [400, 403, 500] {
        let message = format!("Bad token {token} with secret {CLIENT_SECRET}");
        fake.inject(None, "/profile", Reply::google(status, "INVALID_ARGUMENT", "invalidArgument", "global", &message));
        errors.push(client.get_profile().await.expect_err("echoed access token"));
    }
    fake.inject(None, "/profile", Reply::text(200, "text/plain", format!("token={token}")));
    errors.push(client.get_profile().await.expect_err("echoed in an unexpected body"));
    for error in &errors {
        let text = format!("{error} {error:?}");
        assert_no_secrets(&text);
        assert!(text.contains("[REDACTED]"), "{text}");
    }
    assert!(matches!(errors[1], GmailError::ReauthorizationRequired { .. }), "{:?}", errors[1]);
}

// ---------------------------------------------------------------- settings

#[tokio::test]
async fn settings_defaults_and_validation() {
    let settings: GmailSettings = serde_json::from_value(json!({
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
    }))
    .expect("settings parse");
    assert_eq!(settings.api_base, "https://gmail.googleapis.com/gmail/v1");
    assert_eq!(settings.token_url, "https://oauth2.googleapis.com/token");
    assert_eq!(settings.user, "me");
    assert_eq!(settings.query, "is:unread in:inbox");
    assert_eq!(settings.processed_label, "Mailroom/Processed");
    assert!(settings.timeout_secs > 0);
    assert_no_secrets(&format!("{settings:?}"));

    let mut bad = settings.clone();
    bad.api_base = "not a url".to_owned();
    assert!(matches!(GmailClient::new(&bad), Err(GmailError::Permanent { .. })));
    let mut bad = settings;
    bad.token_url = "ftp://example.com/token".to_owned();
    assert!(matches!(GmailClient::new(&bad), Err(GmailError::Permanent { .. })));

    // A mailbox named by address, with a trailing slash on the base.
    let fake = FakeGmail::start().await;
    let mut settings = fake.settings();
    settings.user = ADDRESS.to_owned();
    settings.api_base.push('/');
    let profile = GmailClient::new(&settings).expect("valid").get_profile().await.expect("profile");
    assert_eq!(profile.email_address, ADDRESS);
    assert_eq!(fake.last_api_request().path, format!("/gmail/v1/users/{ADDRESS}/profile"));
}
