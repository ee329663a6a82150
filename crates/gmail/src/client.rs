//! [`GmailClient`]: the Gmail API calls the poller and the sender make, each one authorised
//! with a cached access token that is refreshed once when the API answers 401.

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

use crate::auth::TokenSource;
use crate::error::api_error;
use crate::transport::{self, RawResponse};
use crate::types::{Draft, HistoryPage, Label, MessageRef, MessagesPage, Profile, RawDraft, RawMessage};
use crate::{DEFAULT_API_BASE, DEFAULT_TOKEN_URL, DEFAULT_USER, GmailError, GmailSettings};

/// Results per page unless [`GmailClient::with_page_size`] says otherwise (Gmail's own
/// default; its maximum is 500).
pub const DEFAULT_PAGE_SIZE: u32 = 100;
const MAX_PAGE_SIZE: u32 = 500;

/// A client for one mailbox. Cheap to share behind an `Arc`; calls may run concurrently and
/// share one access token.
pub struct GmailClient {
    http: reqwest::Client,
    api_base: Url,
    user: String,
    page_size: u32,
    auth: TokenSource,
}

impl fmt::Debug for GmailClient {
    // Written by hand so the token cache and the credentials can never end up in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GmailClient")
            .field("api_base", &self.api_base.as_str())
            .field("user", &self.user)
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

/// `users.labels.list` answer.
#[derive(Deserialize)]
struct LabelList {
    #[serde(default)]
    labels: Vec<Label>,
}

impl GmailClient {
    /// A client for the settings' mailbox. Fails only on unusable settings (a URL that does
    /// not parse or is not http(s)); no request is made until the first call.
    pub fn new(settings: &GmailSettings) -> Result<Self, GmailError> {
        let api_base = parse_url("api_base", &settings.api_base, DEFAULT_API_BASE)?;
        let token_url = parse_url("token_url", &settings.token_url, DEFAULT_TOKEN_URL)?;
        let user = settings.user.trim();
        let user = if user.is_empty() { DEFAULT_USER } else { user };
        Ok(Self {
            http: transport::build_client(Duration::from_secs(settings.timeout_secs))?,
            api_base,
            user: user.to_owned(),
            page_size: DEFAULT_PAGE_SIZE,
            auth: TokenSource::new(
                token_url,
                settings.client_id.clone(),
                settings.client_secret.clone(),
                settings.refresh_token.clone(),
            ),
        })
    }

    /// Refreshes the access token and returns the scopes Google granted the refresh token
    /// (`mailroom doctor`): proves the client id, secret and refresh token without reading mail.
    pub async fn granted_scopes(&self) -> Result<Vec<String>, GmailError> {
        self.auth.granted_scopes(&self.http).await
    }

    /// Sets `maxResults` for listings, clamped to Gmail's 1–500.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// One page of the messages matching a Gmail search `query` (`users.messages.list`),
    /// newest first; pass the previous page's `next_page_token` for the next.
    pub async fn list_messages(&self, query: &str, page_token: Option<&str>) -> Result<MessagesPage, GmailError> {
        let mut url = self.url(&["messages"]);
        {
            let mut pairs = url.query_pairs_mut();
            if !query.trim().is_empty() {
                pairs.append_pair("q", query);
            }
            pairs.append_pair("maxResults", &self.page_size.to_string());
            if let Some(token) = non_empty(page_token) {
                pairs.append_pair("pageToken", token);
            }
        }
        self.call("users.messages.list", Method::GET, url, None).await
    }

    /// One page of the messages added to the inbox since `start_history_id`
    /// (`users.history.list`). Once the last page is handled, the page's `history_id` is the
    /// next cursor (see [`advance_history_cursor`](crate::advance_history_cursor)).
    ///
    /// Gmail keeps history for a limited time: an older cursor is
    /// [`GmailError::HistoryExpired`], and the caller does a full sync with
    /// [`list_messages`](Self::list_messages).
    pub async fn list_history(
        &self,
        start_history_id: &str,
        page_token: Option<&str>,
    ) -> Result<HistoryPage, GmailError> {
        let mut url = self.url(&["history"]);
        url.query_pairs_mut()
            .append_pair("startHistoryId", start_history_id.trim())
            .append_pair("historyTypes", "messageAdded")
            .append_pair("labelId", "INBOX")
            .append_pair("maxResults", &self.page_size.to_string());
        if let Some(token) = non_empty(page_token) {
            url.query_pairs_mut().append_pair("pageToken", token);
        }
        match self.call("users.history.list", Method::GET, url, None).await {
            // Gmail's documented signal that the cursor is too old: the history list itself
            // always exists.
            Err(GmailError::NotFound { .. }) => {
                Err(GmailError::HistoryExpired { start_history_id: start_history_id.trim().to_owned() })
            }
            other => other,
        }
    }

    /// The full RFC 822 message (`users.messages.get?format=raw`), decoded.
    pub async fn get_raw(&self, id: &str) -> Result<RawMessage, GmailError> {
        let mut url = self.url(&["messages", require_id("message", id)?]);
        url.query_pairs_mut().append_pair("format", "raw");
        self.call("users.messages.get", Method::GET, url, None).await
    }

    /// The mailbox's address, counts and current history id (`users.getProfile`).
    pub async fn get_profile(&self) -> Result<Profile, GmailError> {
        self.call("users.getProfile", Method::GET, self.url(&["profile"]), None).await
    }

    /// Adds and removes label ids on a message (`users.messages.modify`), e.g. adds the
    /// processed label and removes `UNREAD`. Returns the message with its new labels.
    pub async fn modify_labels(&self, id: &str, add: &[&str], remove: &[&str]) -> Result<MessageRef, GmailError> {
        let url = self.url(&["messages", require_id("message", id)?, "modify"]);
        let body = json!({ "addLabelIds": add, "removeLabelIds": remove });
        self.call("users.messages.modify", Method::POST, url, Some(&body)).await
    }

    /// Every label of the mailbox, system and user (`users.labels.list`).
    pub async fn list_labels(&self) -> Result<Vec<Label>, GmailError> {
        let list: LabelList = self.call("users.labels.list", Method::GET, self.url(&["labels"]), None).await?;
        Ok(list.labels)
    }

    /// The label called `name`, created (shown in the label list and on messages) when
    /// missing. Gmail compares label names without regard to case, and so does this.
    pub async fn ensure_label(&self, name: &str) -> Result<Label, GmailError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(GmailError::Permanent { status: None, message: "the label name is empty".to_owned() });
        }
        if let Some(label) = find_label(self.list_labels().await?, name) {
            return Ok(label);
        }
        let body = json!({ "name": name, "labelListVisibility": "labelShow", "messageListVisibility": "show" });
        match self.call("users.labels.create", Method::POST, self.url(&["labels"]), Some(&body)).await {
            // Another poller created it since the listing: Gmail answers 409 "Label name
            // exists or conflicts", and the label is there to use.
            Err(conflict @ GmailError::Permanent { status: Some(409), .. }) => {
                find_label(self.list_labels().await?, name).ok_or(conflict)
            }
            other => other,
        }
    }

    /// Sends an RFC 822 message (`users.messages.send`). With `thread_id`, Gmail files it in
    /// that thread — provided its `Subject` matches and it carries `In-Reply-To`/`References`
    /// headers, which the caller writes. Returns the sent message (label `SENT`).
    pub async fn send(&self, raw_rfc822: &[u8], thread_id: Option<&str>) -> Result<MessageRef, GmailError> {
        let body = message_body(raw_rfc822, thread_id);
        self.call("users.messages.send", Method::POST, self.url(&["messages", "send"]), Some(&body)).await
    }

    /// Saves an RFC 822 message as a draft (`users.drafts.create`), for replies a person
    /// reviews before sending.
    pub async fn create_draft(&self, raw_rfc822: &[u8], thread_id: Option<&str>) -> Result<Draft, GmailError> {
        let body = json!({ "message": message_body(raw_rfc822, thread_id) });
        self.call("users.drafts.create", Method::POST, self.url(&["drafts"]), Some(&body)).await
    }

    /// A draft with its message as it is now (`users.drafts.get?format=raw`), decoded; a draft
    /// that was sent or deleted is [`GmailError::NotFound`].
    pub async fn get_draft(&self, id: &str) -> Result<RawDraft, GmailError> {
        let mut url = self.url(&["drafts", require_id("draft", id)?]);
        url.query_pairs_mut().append_pair("format", "raw");
        self.call("users.drafts.get", Method::GET, url, None).await
    }

    /// `{api_base}/users/{user}/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api_base.clone();
        // `new` rejected bases that cannot take path segments, so this always applies.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("users").push(&self.user).extend(segments);
        }
        url
    }

    /// Makes an authorised call and parses the success body. A 401 drops the cached token and
    /// the call is made once more with a fresh one: the token may have been revoked or have
    /// expired early, and a second 401 means the credentials lack something a refresh cannot
    /// fix.
    async fn call<T: DeserializeOwned>(
        &self,
        operation: &'static str,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, GmailError> {
        let mut refreshed = false;
        loop {
            let token = self.auth.access_token(&self.http).await?;
            let [client_secret, refresh_token] = self.auth.secrets();
            let secrets = [token.expose_secret(), client_secret, refresh_token];
            let bearer = transport::secret_header(&format!("Bearer {}", token.expose_secret().trim()))?;
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, bearer)
                .header(ACCEPT, "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = transport::send(operation, request, &secrets).await?;
            if response.status == 401 {
                let message = match api_error(operation, &response, &secrets) {
                    GmailError::Permanent { message, .. } => message,
                    other => other.to_string(),
                };
                if refreshed {
                    return Err(GmailError::Unauthorized { message });
                }
                tracing::info!(operation, "Gmail refused the access token; refreshing it and retrying once");
                self.auth.invalidate(&token).await;
                refreshed = true;
                continue;
            }
            if !response.is_success() {
                return Err(api_error(operation, &response, &secrets));
            }
            return parse(operation, &response, &secrets);
        }
    }
}

/// The success body as `T`; a body of another shape is a permanent error that says why.
fn parse<T: DeserializeOwned>(operation: &str, response: &RawResponse, secrets: &[&str]) -> Result<T, GmailError> {
    serde_json::from_slice(&response.body).map_err(|e| match transport::unexpected_body(operation, response, secrets) {
        GmailError::Permanent { status, message } => {
            GmailError::Permanent { status, message: transport::redact(&format!("{message} ({e})"), secrets) }
        }
        other => other,
    })
}

/// The `message` resource for send and drafts: base64url without padding, as Gmail documents,
/// and the thread only when there is one (an empty `threadId` is an error at Gmail).
fn message_body(raw_rfc822: &[u8], thread_id: Option<&str>) -> Value {
    let mut body = json!({ "raw": URL_SAFE_NO_PAD.encode(raw_rfc822) });
    if let Some(thread_id) = non_empty(thread_id) {
        body["threadId"] = Value::String(thread_id.to_owned());
    }
    body
}

fn find_label(labels: Vec<Label>, name: &str) -> Option<Label> {
    let wanted = name.to_lowercase();
    labels.into_iter().find(|label| label.name.trim().to_lowercase() == wanted)
}

fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

/// An id for a path segment; an empty one would silently turn `messages/{id}` into the
/// listing, so it is refused.
fn require_id<'a>(what: &str, id: &'a str) -> Result<&'a str, GmailError> {
    non_empty(Some(id))
        .ok_or_else(|| GmailError::Permanent { status: None, message: format!("the {what} id is empty") })
}

/// Parses a configured URL; an empty one means Google's public endpoint.
fn parse_url(setting: &str, value: &str, default: &str) -> Result<Url, GmailError> {
    let value = value.trim();
    let value = if value.is_empty() { default } else { value };
    let invalid = |why: String| GmailError::Permanent { status: None, message: format!("gmail.{setting} {why}") };
    let url = Url::parse(value).map_err(|e| invalid(format!("is not a URL ({e}): {value}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(invalid(format!("must be an http(s) URL: {value}")));
    }
    Ok(url)
}
