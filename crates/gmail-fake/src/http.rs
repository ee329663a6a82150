//! The fake's view of HTTP: each [`Recorded`] request, and the [`Reply`] it gets, with the
//! error bodies Google's servers send (the JSON error envelope of its APIs, RFC 6749 errors of
//! the token endpoint, the 401 and 403 with their `WWW-Authenticate` challenges).

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path, without the query.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// The query's parameters, decoded, in order.
    pub params: Vec<(String, String)>,
    /// Headers by lowercase name.
    pub headers: HashMap<String, String>,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first query parameter called `name`, decoded.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The body as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// Whether it went to the OAuth2 token endpoint.
    pub fn is_token(&self) -> bool {
        self.path == crate::TOKEN_PATH
    }

    /// Whether it went to the Gmail API.
    pub fn is_api(&self) -> bool {
        self.path.starts_with(crate::API_PATH)
    }

    /// `METHOD path?query`, for assertions on sequences of calls.
    pub fn line(&self) -> String {
        match &self.query {
            Some(query) => format!("{} {}?{query}", self.method, self.path),
            None => format!("{} {}", self.method, self.path),
        }
    }
}

/// What the fake answers.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: Vec<(String, String)>,
    /// Body text.
    pub body: String,
    /// Wait before answering.
    pub delay: Duration,
}

/// Google's message for a missing, expired or revoked access token.
pub const UNAUTHENTICATED_MESSAGE: &str = "Request had invalid authentication credentials. Expected OAuth 2 access \
     token, login cookie or other valid authentication credential. See \
     https://developers.google.com/identity/sign-in/web/devconsole-project.";

impl Reply {
    /// A JSON answer, with Google's content type.
    pub fn json(status: u16, body: Value) -> Self {
        Self::text(status, "application/json; charset=UTF-8", body.to_string())
    }

    /// Any other body.
    pub fn text(status: u16, content_type: &str, body: String) -> Self {
        Self {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body,
            delay: Duration::ZERO,
        }
    }

    /// Google's API error envelope with one item.
    pub fn google(code: u16, status: &str, reason: &str, domain: &str, message: &str) -> Self {
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

    /// 404 for a message, label, thread or history that does not exist.
    pub fn not_found() -> Self {
        Self::google(404, "NOT_FOUND", "notFound", "global", "Requested entity was not found.")
    }

    /// 400 for a bad argument.
    pub fn invalid_argument(message: &str) -> Self {
        Self::google(400, "INVALID_ARGUMENT", "invalidArgument", "global", message)
    }

    /// 401 for a missing, expired or revoked access token.
    pub fn unauthenticated() -> Self {
        Self::json(
            401,
            json!({"error": {
                "code": 401,
                "message": UNAUTHENTICATED_MESSAGE,
                "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError",
                    "location": "Authorization", "locationType": "header"}],
                "status": "UNAUTHENTICATED",
            }}),
        )
        .header("www-authenticate", "Bearer realm=\"https://accounts.google.com/\", error=\"invalid_token\"")
    }

    /// 403 for an access token without any of the `accepted` scopes, as Gmail answers it for
    /// the RPC `method` (`caribou.api.proto.MailboxService.SendMessage`).
    pub fn insufficient_scope(method: &str, accepted: &[&str]) -> Self {
        Self::json(
            403,
            json!({"error": {
                "code": 403,
                "message": "Request had insufficient authentication scopes.",
                "errors": [{"message": "Insufficient Permission", "domain": "global", "reason": "insufficientPermissions"}],
                "status": "PERMISSION_DENIED",
                "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                    "metadata": {"service": "gmail.googleapis.com", "method": method},
                }],
            }}),
        )
        .header(
            "www-authenticate",
            &format!(
                "Bearer realm=\"https://accounts.google.com/\", error=\"insufficient_scope\", scope=\"{}\"",
                accepted.join(" ")
            ),
        )
    }

    /// 403 for what `gmail.metadata` forbids (a search, a raw body), whatever else was granted.
    pub fn metadata_forbidden(message: &str) -> Self {
        Self::google(403, "PERMISSION_DENIED", "forbidden", "global", message)
    }

    /// An RFC 6749 §5.2 error of the token endpoint.
    pub fn oauth_error(status: u16, error: &str, description: &str) -> Self {
        Self::json(status, json!({"error": error, "error_description": description}))
    }

    /// Google's HTML error page of the authorization endpoint ("Error 400: redirect_uri_mismatch").
    pub fn consent_error(status: u16, error: &str, explanation: &str) -> Self {
        Self::text(
            status,
            "text/html; charset=utf-8",
            format!(
                "<!doctype html><html><head><title>Error {status}: {error}</title></head><body>\
                 <h1>Access blocked: authorisation error</h1><p>{explanation}</p>\
                 <p>Error {status}: {error}</p></body></html>"
            ),
        )
    }

    /// A redirect to `location`.
    pub fn redirect(location: &str) -> Self {
        Self::text(302, "text/html; charset=UTF-8", String::new()).header("location", location)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}
