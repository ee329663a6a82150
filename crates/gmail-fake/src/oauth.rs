//! Google's OAuth2 endpoints as the fake plays them: the authorization endpoint of the
//! installed-app flow (consent given, partly given or refused; the code sent to a loopback
//! redirect), and the token endpoint's `authorization_code` grant (PKCE checked as Google does:
//! a wrong or missing `code_verifier` is `invalid_grant`) and `refresh_token` grant. Each
//! refresh token carries the scopes it was granted, and so does every access token issued
//! from it; the token response names them in `scope`.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::http::{Recorded, Reply};
use crate::scope;

/// The fake's OAuth2 client id.
pub const CLIENT_ID: &str = "1234567890-mailroomfake.apps.googleusercontent.com";
/// The fake's OAuth2 client secret.
pub const CLIENT_SECRET: &str = "GOCSPX-fake-client-secret-0123456789";
/// The refresh token every fake starts with, granted `gmail.modify`.
pub const REFRESH_TOKEN: &str = "1//0fake-refresh-token-abcdefghijklmnopqrstuvwxyz";
/// What every access token the fake issues starts with (then a sequence number from 1).
pub const ACCESS_TOKEN_PREFIX: &str = "ya29.a0-fake-access-token-";

/// What the account owner does on the consent screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consent {
    /// Allows every scope asked for.
    Grant,
    /// Allows only these of the scopes asked for (Google's granular consent lets the owner
    /// untick some).
    GrantOnly(Vec<String>),
    /// Refuses: the redirect carries `error=access_denied`.
    Deny,
}

/// A refresh token's grant.
#[derive(Debug, Clone)]
pub(crate) struct Grant {
    pub(crate) scopes: Vec<String>,
    pub(crate) revoked: bool,
}

/// An authorization code waiting to be exchanged.
#[derive(Debug, Clone)]
struct PendingCode {
    redirect_uri: String,
    scopes: Vec<String>,
    /// (code_challenge, code_challenge_method).
    challenge: Option<(String, String)>,
    /// Whether the exchange returns a refresh token: `access_type=offline`, and either
    /// `prompt=consent` or the first consent (Google sends a refresh token once otherwise).
    refresh: bool,
    used: bool,
}

/// The client, the grants and the tokens.
#[derive(Debug)]
pub(crate) struct Auth {
    pub(crate) grants: HashMap<String, Grant>,
    /// Valid access tokens and their scopes.
    pub(crate) access: HashMap<String, Vec<String>>,
    pub(crate) issued: Vec<String>,
    pub(crate) issued_refresh: Vec<String>,
    pub(crate) expires_in: u64,
    pub(crate) consent: Consent,
    codes: HashMap<String, PendingCode>,
    consented_before: bool,
}

impl Auth {
    pub(crate) fn new() -> Self {
        let grant = Grant { scopes: vec![scope::MODIFY.to_owned()], revoked: false };
        Self {
            grants: HashMap::from([(REFRESH_TOKEN.to_owned(), grant)]),
            access: HashMap::new(),
            issued: Vec::new(),
            issued_refresh: Vec::new(),
            expires_in: 3599,
            consent: Consent::Grant,
            codes: HashMap::new(),
            consented_before: false,
        }
    }

    /// The scopes of a valid bearer access token.
    pub(crate) fn scopes_of(&self, authorization: Option<&str>) -> Option<&Vec<String>> {
        let token = authorization?.strip_prefix("Bearer ")?;
        self.access.get(token.trim())
    }

    /// `GET /o/oauth2/v2/auth`: the consent screen, decided by [`Consent`].
    pub(crate) fn authorize(&mut self, request: &Recorded) -> Reply {
        let param = |name: &str| request.param(name).unwrap_or_default();
        if param("client_id") != CLIENT_ID {
            return Reply::consent_error(401, "invalid_client", "The OAuth client was not found.");
        }
        let redirect_uri = param("redirect_uri");
        let Some(mut target) = Url::parse(redirect_uri).ok().filter(is_loopback) else {
            return Reply::consent_error(
                400,
                "redirect_uri_mismatch",
                "This app's request is invalid: a desktop client may only redirect to a loopback address.",
            );
        };
        let state = request.param("state");
        let redirect_with = |mut target: Url, pairs: &[(&str, &str)]| {
            {
                let mut query = target.query_pairs_mut();
                if let Some(state) = state {
                    query.append_pair("state", state);
                }
                for (key, value) in pairs {
                    query.append_pair(key, value);
                }
            }
            Reply::redirect(target.as_str())
        };
        if param("response_type") != "code" {
            return redirect_with(target, &[("error", "unsupported_response_type")]);
        }
        let asked: Vec<String> = param("scope").split_whitespace().map(str::to_owned).collect();
        if asked.is_empty() {
            return Reply::consent_error(400, "invalid_request", "Missing required parameter: scope");
        }
        if let Some(unknown) = asked.iter().find(|s| !scope::ALL.contains(&s.as_str())) {
            return Reply::consent_error(
                400,
                "invalid_scope",
                &format!("Some requested scopes were invalid: {unknown}"),
            );
        }
        let challenge = match (request.param("code_challenge"), request.param("code_challenge_method")) {
            (None, _) => None,
            (Some(challenge), None | Some("plain")) => Some((challenge.to_owned(), "plain".to_owned())),
            (Some(challenge), Some("S256")) => Some((challenge.to_owned(), "S256".to_owned())),
            (Some(_), Some(_)) => {
                return Reply::consent_error(400, "invalid_request", "Invalid code_challenge_method");
            }
        };
        let granted = match &self.consent {
            Consent::Deny => return redirect_with(target, &[("error", "access_denied")]),
            Consent::Grant => asked,
            Consent::GrantOnly(allowed) => asked.into_iter().filter(|s| allowed.contains(s)).collect(),
        };
        let refresh = param("access_type") == "offline" && (param("prompt") == "consent" || !self.consented_before);
        self.consented_before = true;
        let code = format!("4/0fake-authorization-code-{}", self.codes.len() + 1);
        let scope_list = granted.join(" ");
        self.codes.insert(
            code.clone(),
            PendingCode { redirect_uri: redirect_uri.to_owned(), scopes: granted, challenge, refresh, used: false },
        );
        // Google sends the owner back with the code and the scopes actually granted.
        target.set_fragment(None);
        redirect_with(target, &[("code", &code), ("scope", &scope_list)])
    }

    /// `POST /token`: the `authorization_code` and `refresh_token` grants.
    pub(crate) fn token(&mut self, request: &Recorded) -> Reply {
        let form_post =
            request.header("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if request.method != "POST" || !form_post {
            return Reply::oauth_error(400, "invalid_request", "Invalid request");
        }
        let form = request.form();
        let field = |name: &str| form.get(name).map(String::as_str);
        let grant_type = field("grant_type");
        if !matches!(grant_type, Some("refresh_token" | "authorization_code")) {
            return Reply::oauth_error(400, "unsupported_grant_type", "Invalid grant_type: ");
        }
        if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
            return Reply::oauth_error(401, "invalid_client", "Unauthorized");
        }
        if grant_type == Some("authorization_code") {
            return self.exchange_code(field("code"), field("redirect_uri"), field("code_verifier"));
        }
        let Some(refresh_token) = field("refresh_token") else {
            return Reply::oauth_error(400, "invalid_request", "Missing required parameter: refresh_token");
        };
        match self.grants.get(refresh_token).cloned() {
            None => Reply::oauth_error(400, "invalid_grant", "Bad Request"),
            Some(Grant { revoked: true, .. }) => {
                Reply::oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
            }
            Some(Grant { scopes, .. }) => {
                let (token, scope_list) = self.issue(scopes);
                Reply::json(
                    200,
                    serde_json::json!({
                        "access_token": token,
                        "expires_in": self.expires_in,
                        "scope": scope_list,
                        "token_type": "Bearer",
                    }),
                )
            }
        }
    }

    fn exchange_code(&mut self, code: Option<&str>, redirect_uri: Option<&str>, verifier: Option<&str>) -> Reply {
        let Some(pending) = code.and_then(|code| self.codes.get_mut(code)) else {
            return Reply::oauth_error(400, "invalid_grant", "Malformed auth code.");
        };
        if pending.used {
            return Reply::oauth_error(400, "invalid_grant", "Bad Request");
        }
        if redirect_uri != Some(pending.redirect_uri.as_str()) {
            return Reply::oauth_error(400, "redirect_uri_mismatch", "Bad Request");
        }
        match (&pending.challenge, verifier) {
            (None, Some(_)) => {
                return Reply::oauth_error(400, "invalid_grant", "code_verifier or verifier is not needed.");
            }
            (Some(_), None) => return Reply::oauth_error(400, "invalid_grant", "Missing code verifier."),
            (Some((challenge, method)), Some(verifier)) if !verifies(challenge, method, verifier) => {
                return Reply::oauth_error(400, "invalid_grant", "Invalid code verifier.");
            }
            _ => {}
        }
        // A code works once, whatever happens next.
        pending.used = true;
        let pending = pending.clone();
        let (access_token, scope_list) = self.issue(pending.scopes.clone());
        let mut body = serde_json::json!({
            "access_token": access_token,
            "expires_in": self.expires_in,
            "scope": scope_list,
            "token_type": "Bearer",
        });
        if pending.refresh {
            let refresh_token = format!("1//0fake-issued-refresh-token-{}", self.issued_refresh.len() + 1);
            self.grants.insert(refresh_token.clone(), Grant { scopes: pending.scopes, revoked: false });
            self.issued_refresh.push(refresh_token.clone());
            body["refresh_token"] = serde_json::Value::String(refresh_token);
        }
        Reply::json(200, body)
    }

    /// A new access token for `scopes`, and the scopes as the token response lists them.
    fn issue(&mut self, scopes: Vec<String>) -> (String, String) {
        let token = format!("{ACCESS_TOKEN_PREFIX}{}", self.issued.len() + 1);
        let scope_list = scopes.join(" ");
        self.issued.push(token.clone());
        self.access.insert(token.clone(), scopes);
        (token, scope_list)
    }
}

/// Whether a redirect URI is one Google accepts for a desktop client: http on a loopback
/// address, any port.
fn is_loopback(url: &Url) -> bool {
    url.scheme() == "http" && matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"))
}

/// RFC 7636 §4.6: the verifier (43–128 unreserved characters) hashed by the method equals the
/// challenge.
fn verifies(challenge: &str, method: &str, verifier: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    if !well_formed {
        return false;
    }
    match method {
        "S256" => URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) == challenge,
        _ => verifier == challenge,
    }
}
