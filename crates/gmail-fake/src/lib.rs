//! One fake of Google for every test that talks to Gmail (the client's, the poller's, the
//! sender's and `mailroom gmail authorize`'s): a local HTTP server on 127.0.0.1 (port 0) that
//! reproduces the documented wire format, status codes and error bodies of
//! - the OAuth2 authorization endpoint of the installed-app flow (`GET /o/oauth2/v2/auth`,
//!   redirecting to a loopback address with a code, or with `error=access_denied`),
//! - the token endpoint (`POST /token`: `authorization_code` with PKCE, `refresh_token`;
//!   `invalid_grant` for a revoked refresh token or a wrong verifier; `scope` in every answer),
//! - the Gmail API calls the project makes (`/gmail/v1/users/{user}/…`: profile, labels,
//!   messages list/get/modify/send, history, drafts), each refusing an access token without
//!   one of the scopes the method accepts with Google's 403 and `WWW-Authenticate` challenge.
//!
//! Every refresh token is granted a set of scopes ([`FakeGmail::grant`]); the default one,
//! [`REFRESH_TOKEN`], has `gmail.modify`. The fake records every request, and a test can
//! replace the next answer to a path with any [`Reply`] ([`FakeGmail::inject`]).

mod api;
mod http;
mod mailbox;
mod oauth;

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

pub use axum::http::Method;
pub use http::{Recorded, Reply, UNAUTHENTICATED_MESSAGE};
pub use mailbox::{FIRST_HISTORY_ID, FakeLabel, FakeMessage, NewMessage};
pub use oauth::{ACCESS_TOKEN_PREFIX, CLIENT_ID, CLIENT_SECRET, Consent, REFRESH_TOKEN};

use mailbox::Mailbox;
use oauth::{Auth, Grant};

/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/token";
/// The authorization endpoint's path.
pub const AUTH_PATH: &str = "/o/oauth2/v2/auth";
/// The Gmail API's root path.
pub const API_PATH: &str = "/gmail/v1";
/// The mailbox's address (`users/me` and `users/{ADDRESS}` both reach it).
pub const ADDRESS: &str = "support@northwind.example";

/// Gmail's OAuth2 scopes, spelled here once for the fake (independently of the client's list,
/// so the tests check the client against Google's documentation, not against itself).
pub mod scope {
    /// Full access.
    pub const FULL: &str = "https://mail.google.com/";
    /// Read, compose, send, label.
    pub const MODIFY: &str = "https://www.googleapis.com/auth/gmail.modify";
    /// Read only.
    pub const READONLY: &str = "https://www.googleapis.com/auth/gmail.readonly";
    /// Drafts and send.
    pub const COMPOSE: &str = "https://www.googleapis.com/auth/gmail.compose";
    /// Send only.
    pub const SEND: &str = "https://www.googleapis.com/auth/gmail.send";
    /// Labels only.
    pub const LABELS: &str = "https://www.googleapis.com/auth/gmail.labels";
    /// Headers and labels; no search, no bodies.
    pub const METADATA: &str = "https://www.googleapis.com/auth/gmail.metadata";
    /// Insert and import only.
    pub const INSERT: &str = "https://www.googleapis.com/auth/gmail.insert";
    /// Every scope the consent screen accepts.
    pub const ALL: [&str; 11] =
        [FULL, MODIFY, READONLY, COMPOSE, SEND, LABELS, METADATA, INSERT, "openid", "email", "profile"];
}

/// A reply to give instead of the fake's own, once, to the first request that matches.
#[derive(Debug)]
struct Injection {
    method: Option<Method>,
    path_contains: String,
    reply: Reply,
}

/// Everything the fake knows, behind one lock.
#[derive(Debug)]
struct State {
    requests: Vec<Recorded>,
    injections: Vec<Injection>,
    mailbox: Mailbox,
    auth: Auth,
}

/// A running fake Google. Cheap to share: clones see the same state.
#[derive(Debug, Clone)]
pub struct FakeGmail {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl FakeGmail {
    /// Starts a fake with an empty mailbox (system labels only) and [`REFRESH_TOKEN`] granted
    /// `gmail.modify`.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("bound socket has an address");
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            injections: Vec::new(),
            mailbox: Mailbox::new(),
            auth: Auth::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        tokio::spawn(async move {
            // Runs until the test's runtime ends.
            let _ = axum::serve(listener, app).await;
        });
        Self { base: format!("http://{addr}"), state }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock leaves usable state behind.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The API root to configure (`api_base`).
    pub fn api_base(&self) -> String {
        format!("{}{API_PATH}", self.base)
    }

    /// The token endpoint to configure (`token_url`).
    pub fn token_url(&self) -> String {
        format!("{}{TOKEN_PATH}", self.base)
    }

    /// The authorization endpoint (`mailroom gmail authorize --auth-url`).
    pub fn auth_url(&self) -> String {
        format!("{}{AUTH_PATH}", self.base)
    }

    // ------------------------------------------------------------ OAuth2

    /// Grants `refresh_token` exactly these scopes (creating it if new).
    pub fn grant(&self, refresh_token: &str, scopes: &[&str]) {
        let grant = Grant { scopes: scopes.iter().map(|s| (*s).to_owned()).collect(), revoked: false };
        self.lock().auth.grants.insert(refresh_token.to_owned(), grant);
    }

    /// The scopes `refresh_token` was granted, if the fake knows it.
    pub fn granted(&self, refresh_token: &str) -> Option<Vec<String>> {
        self.lock().auth.grants.get(refresh_token).map(|grant| grant.scopes.clone())
    }

    /// Google refuses `refresh_token` from now on (`invalid_grant`, "Token has been expired or
    /// revoked.").
    pub fn revoke(&self, refresh_token: &str) {
        if let Some(grant) = self.lock().auth.grants.get_mut(refresh_token) {
            grant.revoked = true;
        }
    }

    /// Every access token issued so far stops working (401), as when Google revokes them early.
    pub fn revoke_access_tokens(&self) {
        self.lock().auth.access.clear();
    }

    /// The access tokens issued so far, in order.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().auth.issued.clone()
    }

    /// The refresh tokens issued by code exchanges so far, in order.
    pub fn issued_refresh_tokens(&self) -> Vec<String> {
        self.lock().auth.issued_refresh.clone()
    }

    /// The `expires_in` of the next access tokens (3599 by default).
    pub fn set_expires_in(&self, seconds: u64) {
        self.lock().auth.expires_in = seconds;
    }

    /// What the account owner does on the next consent screens.
    pub fn set_consent(&self, consent: Consent) {
        self.lock().auth.consent = consent;
    }

    // ------------------------------------------------------------ requests

    /// Answers the next request whose path contains `path_contains` (and whose method is
    /// `method`, if given) with `reply`, once, before any check of the fake's own.
    pub fn inject(&self, method: Option<Method>, path_contains: &str, reply: Reply) {
        self.lock().injections.push(Injection { method, path_contains: path_contains.to_owned(), reply });
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.lock().requests.len()
    }

    /// The token endpoint's requests.
    pub fn token_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(Recorded::is_token).collect()
    }

    /// The Gmail API's requests.
    pub fn api_requests(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(Recorded::is_api).collect()
    }

    /// The last Gmail API request (panics if there was none).
    pub fn last_api_request(&self) -> Recorded {
        self.api_requests().pop().expect("an API request was made")
    }

    /// Forgets the requests so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    // ------------------------------------------------------------ mailbox

    /// Puts a message in the mailbox, with a `messageAdded` history record.
    pub fn deliver(&self, message: NewMessage) -> FakeMessage {
        self.lock().mailbox.add(message)
    }

    /// Another `messageAdded` record for a message already there; false if there is none.
    pub fn readd(&self, id: &str) -> bool {
        self.lock().mailbox.readd(id)
    }

    /// A message by id.
    pub fn message(&self, id: &str) -> Option<FakeMessage> {
        self.lock().mailbox.find(id).cloned()
    }

    /// Every message, in arrival order.
    pub fn messages(&self) -> Vec<FakeMessage> {
        self.lock().mailbox.messages.clone()
    }

    /// The drafts: (draft id, message id).
    pub fn drafts(&self) -> Vec<(String, String)> {
        self.lock().mailbox.drafts.clone()
    }

    /// A person edits a draft in Gmail: its message is replaced by one holding `raw` (a new
    /// message id, the same draft id and thread). False if there is no such draft.
    pub fn edit_draft(&self, draft_id: &str, raw: &[u8]) -> bool {
        self.lock().mailbox.edit_draft(draft_id, raw.to_vec())
    }

    /// A person sends a draft from Gmail: the draft is gone and its message is in `SENT`.
    /// Returns the message id, `None` if there is no such draft.
    pub fn send_draft(&self, draft_id: &str) -> Option<String> {
        self.lock().mailbox.send_draft(draft_id)
    }

    /// The labels, system and user.
    pub fn labels(&self) -> Vec<FakeLabel> {
        self.lock().mailbox.labels.clone()
    }

    /// Creates a user label, as someone using Gmail would; returns its id.
    pub fn add_label(&self, name: &str) -> String {
        let mut state = self.lock();
        let id = format!("Label_{}", 40 + state.mailbox.labels.len());
        state.mailbox.labels.push(FakeLabel { id: id.clone(), name: name.to_owned(), kind: "user" });
        id
    }

    /// A label's id by name (without regard to case).
    pub fn label_id(&self, name: &str) -> Option<String> {
        self.lock().mailbox.label_id(name)
    }

    /// The mailbox's current history id.
    pub fn history_id(&self) -> u64 {
        self.lock().mailbox.history_id
    }

    /// Moves the mailbox's history id (and the oldest history kept) to `history_id`.
    pub fn set_history_id(&self, history_id: u64) {
        let mut state = self.lock();
        state.mailbox.history_id = history_id;
        state.mailbox.oldest_history_id = history_id;
    }

    /// Gmail drops the history up to now: cursors older than the current history id get 404.
    pub fn forget_history(&self) {
        let mut state = self.lock();
        state.mailbox.oldest_history_id = state.mailbox.history_id;
    }
}

async fn handle(
    AxumState(state): AxumState<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        params: uri
            .query()
            .map(|query| url::form_urlencoded::parse(query.as_bytes()).into_owned().collect())
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or("<binary>").to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    let reply = {
        let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.requests.push(recorded.clone());
        let injected = state.injections.iter().position(|injection| {
            recorded.path.contains(&injection.path_contains)
                && injection.method.as_ref().is_none_or(|wanted| *wanted == recorded.method)
        });
        match injected {
            Some(index) => state.injections.remove(index).reply,
            None if recorded.path == TOKEN_PATH => state.auth.token(&recorded),
            None if recorded.path == AUTH_PATH => state.auth.authorize(&recorded),
            None => {
                let State { mailbox, auth, .. } = &mut *state;
                let granted = auth.scopes_of(recorded.header("authorization"));
                api::answer(mailbox, granted, &recorded)
            }
        }
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response.body(Body::from(reply.body)).unwrap_or_else(|_| Response::new(Body::from("invalid fake reply")))
}
