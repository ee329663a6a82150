//! A Gmail API client for the mailbox poller and the sender, over Gmail's real wire format:
//! the OAuth2 refresh-token flow (the access token is cached until shortly before it expires
//! and refreshed once when the API answers 401), `users.messages.list`, `users.history.list`
//! (incremental sync; an expired cursor is [`GmailError::HistoryExpired`]), raw message fetch,
//! label changes, `users.messages.send` and `users.drafts.create`. [`scopes`] says which OAuth
//! scopes each call accepts and what each Mailroom role needs.
//!
//! Gmail encodes ids and history ids as strings holding 64-bit numbers; they stay strings here
//! and [`advance_history_cursor`] compares them numerically. Every failure is a typed
//! [`GmailError`] that says whether it is worth retrying and after how long; secrets (client
//! secret, refresh and access tokens) never appear in errors or `Debug` output.

use secrecy::SecretString;
use serde::Deserialize;

mod auth;
mod client;
mod error;
pub mod scopes;
mod transport;
mod types;

pub use client::{DEFAULT_PAGE_SIZE, GmailClient};
pub use error::GmailError;
pub use types::{
    Draft, HistoryPage, HistoryRecord, Label, MessageAdded, MessageRef, MessagesPage, Profile, RawDraft, RawMessage,
    advance_history_cursor,
};

/// Gmail's public API root.
pub const DEFAULT_API_BASE: &str = "https://gmail.googleapis.com/gmail/v1";
/// Google's OAuth2 token endpoint.
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// The mailbox of the authorised account.
pub const DEFAULT_USER: &str = "me";
/// What the poller reads on a full sync.
pub const DEFAULT_QUERY: &str = "is:unread in:inbox";
/// The label put on messages once they are handled.
pub const DEFAULT_PROCESSED_LABEL: &str = "Mailroom/Processed";
/// Per-request timeout when none is configured.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;

/// `[gmail]` settings: where the API and the token endpoint are, the OAuth2 client and the
/// mailbox's refresh token.
#[derive(Debug, Clone, Deserialize)]
pub struct GmailSettings {
    /// API root, [`DEFAULT_API_BASE`] unless pointed at a test server.
    #[serde(default = "default_api_base")]
    pub api_base: String,
    /// OAuth2 token endpoint, [`DEFAULT_TOKEN_URL`] unless pointed at a test server.
    #[serde(default = "default_token_url")]
    pub token_url: String,
    /// OAuth2 client id (not secret).
    pub client_id: String,
    /// OAuth2 client secret.
    pub client_secret: SecretString,
    /// The mailbox owner's long-lived refresh token. `gmail.modify` covers everything this
    /// client does; see [`scopes`] for what each role needs.
    pub refresh_token: SecretString,
    /// Mailbox owner, `me` for the authorised account (or its address, with domain-wide
    /// delegation).
    #[serde(default = "default_user")]
    pub user: String,
    /// Gmail search query for a full sync.
    #[serde(default = "default_query")]
    pub query: String,
    /// Name of the label marking handled messages (created when missing).
    #[serde(default = "default_processed_label")]
    pub processed_label: String,
    /// Per-request timeout in seconds; 0 means none.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

impl GmailSettings {
    /// Settings with the defaults for everything but the OAuth2 client and refresh token.
    pub fn new(client_id: impl Into<String>, client_secret: SecretString, refresh_token: SecretString) -> Self {
        Self {
            api_base: default_api_base(),
            token_url: default_token_url(),
            client_id: client_id.into(),
            client_secret,
            refresh_token,
            user: default_user(),
            query: default_query(),
            processed_label: default_processed_label(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }
}

fn default_api_base() -> String {
    DEFAULT_API_BASE.to_owned()
}

fn default_token_url() -> String {
    DEFAULT_TOKEN_URL.to_owned()
}

fn default_user() -> String {
    DEFAULT_USER.to_owned()
}

fn default_query() -> String {
    DEFAULT_QUERY.to_owned()
}

fn default_processed_label() -> String {
    DEFAULT_PROCESSED_LABEL.to_owned()
}

fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}
