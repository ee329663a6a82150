//! `mailroom gmail authorize`: gets a mailbox's refresh token with Google's OAuth2 flow for
//! installed apps (RFC 8252), so nobody has to copy tokens out of a playground.
//!
//! The command listens on a loopback address (127.0.0.1, any port), prints the consent URL —
//! `access_type=offline` and `prompt=consent` so Google returns a refresh token, a random
//! `state` against forged redirects, and a PKCE S256 challenge (RFC 7636) so an intercepted
//! code is useless — and waits for the browser to come back with the code. It checks the
//! state, exchanges the code (with the verifier) at the token endpoint, says which scopes were
//! granted and which Mailroom roles they do not cover (Google's granular consent lets the
//! owner untick scopes), and writes the refresh token to a file created with mode 0600, or
//! prints it on stdout (everything else goes to stderr, so `$(mailroom gmail authorize …)`
//! captures the token alone).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use gmail::scopes;
use pipeline_core::Settings;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tokio::net::TcpListener;
use url::Url;

mod loopback;

use loopback::receive_code;
pub use loopback::{Callback, parse_callback};

/// Google's authorization endpoint.
pub const DEFAULT_AUTH_URL: &str = "https://accounts.google.com/o/oauth2/v2/auth";

/// How long the token exchange may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(30);

/// `mailroom gmail …`.
#[derive(Debug, Subcommand)]
pub enum GmailAction {
    /// Get a refresh token for a mailbox: open the printed URL, consent, and the token is
    /// written to --out (mode 0600) or printed.
    Authorize(AuthorizeArgs),
}

/// `mailroom gmail authorize` flags.
#[derive(Debug, Args)]
pub struct AuthorizeArgs {
    /// OAuth2 client id (a "Desktop app" client); default: mailbox.gmail.client_id, then
    /// outbox.gmail.client_id.
    #[arg(long, env = "MAILROOM_GMAIL_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The client's secret; default: mailbox.gmail.client_secret, then outbox.gmail's.
    #[arg(long, env = "MAILROOM_GMAIL_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// A scope to ask for, as a URL or a short name (gmail.modify, gmail.compose,
    /// gmail.readonly, gmail.send, mail.google.com); repeat for several. gmail.modify covers the
    /// poller and the sender.
    #[arg(long = "scope", default_value = scopes::RECOMMENDED)]
    pub scopes: Vec<String>,
    /// Google's authorization endpoint.
    #[arg(long, default_value = DEFAULT_AUTH_URL)]
    pub auth_url: String,
    /// The token endpoint; default: mailbox.gmail.token_url (Google's).
    #[arg(long)]
    pub token_url: Option<String>,
    /// Write the refresh token to this file (created with mode 0600) instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long, requires = "out")]
    pub force: bool,
    /// Loopback port to receive the redirect on; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Give up waiting for the redirect after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
    /// Also try to open the URL in the default browser (xdg-open, or open on macOS).
    #[arg(long)]
    pub open: bool,
}

/// Why the authorization did not produce a refresh token.
#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    /// No client id anywhere.
    #[error("no OAuth client id: pass --client-id, set MAILROOM_GMAIL_CLIENT_ID or mailbox.gmail.client_id")]
    MissingClientId,
    /// No client secret anywhere.
    #[error(
        "no OAuth client secret: pass --client-secret, set MAILROOM_GMAIL_CLIENT_SECRET or mailbox.gmail.client_secret"
    )]
    MissingClientSecret,
    /// A URL flag is not an http(s) URL.
    #[error("--{flag} is not an http(s) URL: {value}")]
    BadUrl {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
    },
    /// `--out` exists and `--force` was not given.
    #[error("{0} exists; pass --force to replace it")]
    OutExists(PathBuf),
    /// A file could not be created or written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The loopback port could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}: {source}")]
    Listen {
        /// The port asked for.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// The operating system gave no random bytes for the verifier and state.
    #[error("no random numbers from the operating system: {0}")]
    Random(String),
    /// No redirect arrived in time.
    #[error("no answer from Google's redirect within {0} s; run the command again (--timeout-secs sets the wait)")]
    TimedOut(u64),
    /// Ctrl-C while waiting.
    #[error("interrupted before Google's redirect arrived")]
    Interrupted,
    /// The redirect's `state` is not ours.
    #[error(
        "the redirect's state does not match the one this command sent, so it does not answer this authorization \
         (a stale browser tab, or a forged request); nothing was exchanged — run the command again"
    )]
    StateMismatch,
    /// Google sent the browser back with an error.
    #[error("Google did not authorise: {error}{}", hint(error, description.as_deref()))]
    Denied {
        /// OAuth error code (`access_denied`, …).
        error: String,
        /// Google's description, if any.
        description: Option<String>,
    },
    /// The token endpoint could not be reached or answered something else than OAuth JSON.
    #[error("token endpoint: {0}")]
    Transport(String),
    /// The token endpoint refused the code.
    #[error("the token endpoint refused the code (HTTP {status}): {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Exchange {
        /// HTTP status.
        status: u16,
        /// OAuth error code (`invalid_grant`, …).
        error: String,
        /// Its description.
        description: Option<String>,
    },
    /// The exchange worked but gave no refresh token.
    #[error(
        "the token endpoint returned no refresh token (Google sends one only with access_type=offline and a fresh \
         consent; remove the app's access at https://myaccount.google.com/permissions and run the command again)"
    )]
    NoRefreshToken,
}

fn hint(error: &str, description: Option<&str>) -> String {
    let described = description.map(|d| format!(" ({d})")).unwrap_or_default();
    let advice = match error {
        "access_denied" => {
            "; the consent was refused — or, while the OAuth consent screen is in Testing, the account is not one of \
             its test users"
        }
        _ => "",
    };
    format!("{described}{advice}")
}

/// `[mailbox.gmail]` / `[outbox.gmail]` as far as this command reads them.
#[derive(Debug, Default, Deserialize)]
struct ConfiguredClient {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    token_url: String,
}

/// The token endpoint's answer (success or RFC 6749 §5.2 error).
#[derive(Debug, Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    refresh_token: Option<SecretString>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

/// A PKCE pair (RFC 7636): the verifier stays here, the challenge goes in the URL.
#[derive(Debug)]
pub struct Pkce {
    /// 86 characters of base64url from 64 random bytes (43–128 allowed).
    pub verifier: String,
    /// base64url(SHA-256(verifier)), method S256.
    pub challenge: String,
}

impl Pkce {
    /// The challenge for `verifier`.
    pub fn from_verifier(verifier: String) -> Self {
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Self { verifier, challenge }
    }
}

/// `n` random bytes from the operating system, base64url.
fn random_token(n: usize) -> Result<String, AuthorizeError> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| AuthorizeError::Random(e.to_string()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The consent URL.
pub fn consent_url(
    auth_url: &Url,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[String],
    challenge: &str,
    state: &str,
) -> Url {
    let mut url = auth_url.clone();
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent");
    url
}

/// Exchanges the code at the token endpoint.
async fn exchange(
    token_url: &Url,
    form: &[(&str, &str)],
    client_secret: &str,
) -> Result<(SecretString, Option<String>), AuthorizeError> {
    let redact = |text: String| if client_secret.is_empty() { text } else { text.replace(client_secret, "[REDACTED]") };
    let transport = |e: reqwest::Error| AuthorizeError::Transport(redact(e.to_string()));
    let http = reqwest::Client::builder()
        .timeout(EXCHANGE_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(transport)?;
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in form {
        body.append_pair(key, value);
    }
    let response = http
        .post(token_url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body.finish())
        .send()
        .await
        .map_err(transport)?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(transport)?;
    let answer: TokenAnswer = serde_json::from_str(&text).map_err(|_| {
        let excerpt: String = text.chars().take(200).collect();
        AuthorizeError::Transport(redact(format!("HTTP {status}, not an OAuth answer: {excerpt}")))
    })?;
    if let Some(error) = answer.error.filter(|_| !(200..300).contains(&status)) {
        return Err(AuthorizeError::Exchange { status, error, description: answer.error_description.map(redact) });
    }
    if !(200..300).contains(&status) {
        return Err(AuthorizeError::Transport(format!("HTTP {status} without an OAuth error")));
    }
    let token = answer.refresh_token.filter(|t| !t.expose_secret().trim().is_empty());
    Ok((token.ok_or(AuthorizeError::NoRefreshToken)?, answer.scope))
}

/// Where the refresh token goes: created (empty, mode 0600) before the flow starts, so a path
/// that cannot be written fails before the consent rather than after it, and removed again if
/// the flow fails.
struct TokenFile {
    path: PathBuf,
    /// With `--force`, the token is written to this sibling and renamed over `path`.
    staging: Option<PathBuf>,
    file: Option<std::fs::File>,
    done: bool,
}

impl TokenFile {
    fn create(path: &Path, force: bool) -> Result<Self, AuthorizeError> {
        if path.exists() && !force {
            return Err(AuthorizeError::OutExists(path.to_owned()));
        }
        let staging = force.then(|| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
        });
        let target = staging.as_deref().unwrap_or(path);
        let mut options = std::fs::OpenOptions::new();
        // `create_new`: never follows or reuses a file someone put there.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write_error = |source| AuthorizeError::Write { path: target.to_owned(), source };
        let file = options.open(target).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists if staging.is_none() => AuthorizeError::OutExists(path.to_owned()),
            _ => write_error(e),
        })?;
        Ok(Self { path: path.to_owned(), staging, file: Some(file), done: false })
    }

    fn write(mut self, token: &str) -> Result<(), AuthorizeError> {
        let target = self.staging.clone().unwrap_or_else(|| self.path.clone());
        let write_error = |source| AuthorizeError::Write { path: target.clone(), source };
        let mut file = self.file.take().ok_or_else(|| write_error(std::io::Error::other("already written")))?;
        file.write_all(format!("{token}\n").as_bytes()).map_err(write_error)?;
        file.sync_all().map_err(write_error)?;
        if let Some(staging) = &self.staging {
            std::fs::rename(staging, &self.path)
                .map_err(|source| AuthorizeError::Write { path: self.path.clone(), source })?;
        }
        self.done = true;
        Ok(())
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(self.staging.as_deref().unwrap_or(&self.path));
        }
    }
}

fn http_url(flag: &'static str, value: &str) -> Result<Url, AuthorizeError> {
    Url::parse(value.trim())
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base())
        .ok_or_else(|| AuthorizeError::BadUrl { flag, value: value.to_owned() })
}

/// Runs `mailroom gmail …`.
pub async fn run(settings: &Settings, action: GmailAction) -> anyhow::Result<ExitCode> {
    match action {
        GmailAction::Authorize(args) => {
            authorize(settings, args).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The whole flow; progress and the URL on stderr, the token on stdout or in `--out`.
pub async fn authorize(settings: &Settings, args: AuthorizeArgs) -> Result<(), AuthorizeError> {
    let configured: ConfiguredClient = settings.section("mailbox.gmail").unwrap_or_default();
    let outbox: ConfiguredClient = settings.section("outbox.gmail").unwrap_or_default();
    let non_empty = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    let client_id = args
        .client_id
        .as_deref()
        .and_then(non_empty)
        .or_else(|| non_empty(&configured.client_id))
        .or_else(|| non_empty(&outbox.client_id))
        .ok_or(AuthorizeError::MissingClientId)?;
    let secret_of = |c: &ConfiguredClient| c.client_secret.as_ref().and_then(|s| non_empty(s.expose_secret()));
    let client_secret = args
        .client_secret
        .as_deref()
        .and_then(non_empty)
        .or_else(|| secret_of(&configured))
        .or_else(|| secret_of(&outbox))
        .ok_or(AuthorizeError::MissingClientSecret)?;
    let auth_url = http_url("auth-url", &args.auth_url)?;
    let token_url = match args.token_url.as_deref().and_then(non_empty).or_else(|| non_empty(&configured.token_url)) {
        Some(url) => http_url("token-url", &url)?,
        None => http_url("token-url", gmail::DEFAULT_TOKEN_URL)?,
    };
    let mut requested: Vec<String> =
        args.scopes.iter().filter(|s| !s.trim().is_empty()).map(|s| scopes::expand(s)).collect();
    let mut seen = std::collections::HashSet::new();
    requested.retain(|scope| seen.insert(scope.clone()));
    let out = args.out.as_deref().map(|path| TokenFile::create(path, args.force)).transpose()?;

    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|source| AuthorizeError::Listen { port: args.port, source })?;
    let port = listener.local_addr().map_err(|source| AuthorizeError::Listen { port: args.port, source })?.port();
    let redirect_uri = format!("http://127.0.0.1:{port}");
    let pkce = Pkce::from_verifier(random_token(64)?);
    let state = random_token(24)?;
    let url = consent_url(&auth_url, &client_id, &redirect_uri, &requested, &pkce.challenge, &state);

    eprintln!("Open this URL in a browser signed in as the mailbox's Google account, and allow access:\n");
    eprintln!("{url}\n");
    eprintln!("Waiting up to {} s for Google to send the browser back to {redirect_uri} …", args.timeout_secs);
    if args.open {
        open_browser(url.as_str());
    }
    // Ctrl-C ends the wait through the normal error path, so the placeholder of --out goes too.
    let wait = async {
        tokio::select! {
            received = receive_code(&listener, &state) => received,
            _ = tokio::signal::ctrl_c() => Err(AuthorizeError::Interrupted),
        }
    };
    let (code, redirect_scope) = tokio::time::timeout(Duration::from_secs(args.timeout_secs), wait)
        .await
        .map_err(|_| AuthorizeError::TimedOut(args.timeout_secs))??;
    drop(listener);
    eprintln!("Authorization received; exchanging the code at {token_url}.");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect_uri.as_str()),
        ("client_id", client_id.as_str()),
        ("client_secret", client_secret.as_str()),
        ("code_verifier", pkce.verifier.as_str()),
    ];
    let (refresh_token, token_scope) = exchange(&token_url, &form, &client_secret).await?;

    let granted = token_scope.or(redirect_scope).map(|s| scopes::parse_list(&s)).unwrap_or_else(|| requested.clone());
    report_scopes(&requested, &granted);
    match out {
        Some(file) => {
            let path = file.path.clone();
            file.write(refresh_token.expose_secret())?;
            eprintln!(
                "Refresh token written to {} (mode 0600). Set it as mailbox.gmail.refresh_token and/or \
                 outbox.gmail.refresh_token (MAILROOM__MAILBOX__GMAIL__REFRESH_TOKEN, \
                 MAILROOM__OUTBOX__GMAIL__REFRESH_TOKEN).",
                path.display()
            );
        }
        None => println!("{}", refresh_token.expose_secret()),
    }
    Ok(())
}

/// Says which scopes were granted, which asked-for ones were not, and which Mailroom roles the
/// grant does not cover.
fn report_scopes(requested: &[String], granted: &[String]) {
    eprintln!("Granted: {}.", granted.iter().map(|s| scopes::short_name(s)).collect::<Vec<_>>().join(", "));
    let refused: Vec<&str> = requested.iter().filter(|s| !granted.contains(s)).map(|s| scopes::short_name(s)).collect();
    if !refused.is_empty() {
        eprintln!("warning: fewer scopes were granted than asked for; not granted: {}.", refused.join(", "));
    }
    let gaps = scopes::not_allowed(granted);
    if gaps.is_empty() {
        eprintln!("These scopes cover the poller and the sender.");
    }
    for gap in gaps {
        eprintln!("warning: not allowed with these scopes: {} (needs {}).", gap.what, scopes::describe(gap.any_of));
    }
}

/// Best effort: the URL is printed anyway.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    let started = std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = started {
        eprintln!("(could not start {opener}: {e}; open the URL yourself)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        let pkce = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned());
        assert_eq!(pkce.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let verifier = random_token(64).expect("random");
        assert!((43..=128).contains(&verifier.len()), "{}", verifier.len());
        assert!(verifier.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(verifier, random_token(64).expect("random"));
    }

    #[test]
    fn the_consent_url_asks_for_offline_access_with_pkce() {
        let base = Url::parse(DEFAULT_AUTH_URL).expect("url");
        let scopes = vec![scopes::MODIFY.to_owned(), scopes::SEND.to_owned()];
        let url = consent_url(&base, "id.apps", "http://127.0.0.1:5000", &scopes, "chal", "st4te");
        let pairs: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs["response_type"], "code");
        assert_eq!(pairs["redirect_uri"], "http://127.0.0.1:5000");
        assert_eq!(pairs["scope"], format!("{} {}", scopes::MODIFY, scopes::SEND));
        assert_eq!((pairs["code_challenge"].as_str(), pairs["code_challenge_method"].as_str()), ("chal", "S256"));
        assert_eq!((pairs["access_type"].as_str(), pairs["prompt"].as_str()), ("offline", "consent"));
        assert_eq!(pairs["state"], "st4te");
    }
}
