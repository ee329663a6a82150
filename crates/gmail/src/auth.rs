//! The OAuth2 refresh-token flow: `POST {token_url}` with the client credentials and the
//! mailbox's refresh token returns a short-lived access token (an hour at Google), cached here
//! until shortly before it expires so each API call does not cost a token request.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::GmailError;
use crate::transport::{self, RawResponse};

/// How long before its announced expiry a token is replaced: covers clock skew and the time a
/// request spends in flight, so a token is never sent just as it lapses.
const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// Lifetime assumed when the token endpoint omits `expires_in` (Google's tokens last an hour);
/// a token that dies earlier is caught by the refresh-on-401.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Gets and caches access tokens.
pub(crate) struct TokenSource {
    token_url: Url,
    client_id: String,
    client_secret: SecretString,
    refresh_token: SecretString,
    /// Held across the refresh request on purpose: concurrent callers wait for the one
    /// refresh instead of each asking the token endpoint.
    cached: Mutex<Option<CachedToken>>,
}

struct CachedToken {
    /// The scopes the token endpoint said were granted (empty when it did not say).
    scopes: Vec<String>,
    token: SecretString,
    refresh_at: Instant,
}

/// The token endpoint's success body.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
    /// The scopes granted, space-separated (Google sends them with every token).
    #[serde(default)]
    scope: Option<String>,
}

/// The token endpoint's error body (RFC 6749 §5.2).
#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl TokenSource {
    pub(crate) fn new(
        token_url: Url,
        client_id: String,
        client_secret: SecretString,
        refresh_token: SecretString,
    ) -> Self {
        Self { token_url, client_id, client_secret, refresh_token, cached: Mutex::new(None) }
    }

    /// The client secret and refresh token, for redacting messages.
    pub(crate) fn secrets(&self) -> [&str; 2] {
        [self.client_secret.expose_secret(), self.refresh_token.expose_secret()]
    }

    /// A valid access token: the cached one, or a fresh one once it is about to expire.
    pub(crate) async fn access_token(&self, http: &reqwest::Client) -> Result<SecretString, GmailError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|token| Instant::now() < token.refresh_at) {
            return Ok(token.token.clone());
        }
        let fresh = self.refresh(http).await?;
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Refreshes now (whatever is cached) and returns the scopes the token endpoint says the
    /// refresh token was granted: proves the client credentials and the refresh token.
    pub(crate) async fn granted_scopes(&self, http: &reqwest::Client) -> Result<Vec<String>, GmailError> {
        let fresh = self.refresh(http).await?;
        let scopes = fresh.scopes.clone();
        *self.cached.lock().await = Some(fresh);
        Ok(scopes)
    }

    /// Forgets `rejected` after the API refused it, unless another caller already replaced it.
    pub(crate) async fn invalidate(&self, rejected: &SecretString) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|token| token.token.expose_secret() == rejected.expose_secret()) {
            *cached = None;
        }
    }

    async fn refresh(&self, http: &reqwest::Client) -> Result<CachedToken, GmailError> {
        let secrets = self.secrets();
        // Encoded by hand rather than with reqwest's `form`, which depends on a reqwest feature
        // the workspace does not enable.
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", self.client_id.trim())
            .append_pair("client_secret", self.client_secret.expose_secret().trim())
            .append_pair("refresh_token", self.refresh_token.expose_secret().trim())
            .append_pair("grant_type", "refresh_token")
            .finish();
        let request = http
            .post(self.token_url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        let started = Instant::now();
        let response = transport::send("token refresh", request, &secrets).await?;
        if !response.is_success() {
            return Err(token_error(&response, &secrets));
        }
        let parsed: TokenResponse = serde_json::from_slice(&response.body)
            .map_err(|_| transport::unexpected_body("token refresh", &response, &secrets))?;
        if let Some(kind) = parsed.token_type.as_deref().filter(|kind| !kind.eq_ignore_ascii_case("bearer")) {
            return Err(GmailError::Permanent {
                status: Some(response.status),
                message: format!("token refresh: unsupported token type {kind:?}, expected Bearer"),
            });
        }
        let token = parsed.access_token.expose_secret().trim();
        if token.is_empty() {
            return Err(GmailError::Permanent {
                status: Some(response.status),
                message: "token refresh: the token endpoint returned an empty access token".to_owned(),
            });
        }
        let lifetime = parsed.expires_in.map_or(DEFAULT_LIFETIME, Duration::from_secs);
        // Counted from when the request left: the lifetime started no earlier than that.
        let refresh_at = started + lifetime.saturating_sub(EXPIRY_MARGIN);
        tracing::debug!(expires_in_secs = lifetime.as_secs(), "refreshed the Gmail access token");
        let scopes = parsed.scope.as_deref().map(crate::scopes::parse_list).unwrap_or_default();
        Ok(CachedToken { token: SecretString::from(token), refresh_at, scopes })
    }
}

/// Classifies a token endpoint failure: `invalid_grant` means the refresh token is dead and
/// only a human can fix it; other 4xx (bad client id or secret, wrong URL) will not fix
/// themselves either; 5xx and 429 pass.
fn token_error(response: &RawResponse, secrets: &[&str]) -> GmailError {
    if let Some(redirect) = transport::redirect_error(response, secrets) {
        return redirect;
    }
    let status = response.status;
    let parsed = serde_json::from_slice::<TokenError>(&response.body).ok();
    let detail = match &parsed {
        Some(TokenError { error, error_description: Some(description) }) => format!("{error}: {description}"),
        Some(TokenError { error, error_description: None }) => error.clone(),
        None => transport::body_excerpt(status, &response.body),
    };
    let message = transport::redact(&transport::excerpt(&detail), secrets);
    if parsed.is_some_and(|e| e.error == "invalid_grant") {
        return GmailError::ReauthorizationRequired { message };
    }
    let message = format!("token refresh: {message}");
    if transport::is_transient_status(status) {
        let retry_after = transport::retry_after(&response.headers);
        return GmailError::Transient { status: Some(status), message, retry_after };
    }
    GmailError::Permanent { status: Some(status), message }
}
