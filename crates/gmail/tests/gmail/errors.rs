//! How Gmail's error answers are classified: rate limits with the time from the message
//! text, exhausted quota, permanent and transient statuses, timeouts, secrets kept out of
//! errors, and the settings' defaults.

use std::time::Duration;

use gmail::{GmailClient, GmailError, GmailSettings};
use gmail_fake::{ADDRESS, CLIENT_ID, CLIENT_SECRET, FakeGmail, REFRESH_TOKEN, Reply};
use serde_json::json;

use crate::{assert_no_secrets, assert_retry_near, fake_settings, future_rfc3339, profile_error};

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
    let mut settings = fake_settings(&fake);
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
    let mut settings = fake_settings(&fake);
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
    let settings = fake_settings(&fake);
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
    let mut settings = fake_settings(&fake);
    settings.user = ADDRESS.to_owned();
    settings.api_base.push('/');
    let profile = GmailClient::new(&settings).expect("valid").get_profile().await.expect("profile");
    assert_eq!(profile.email_address, ADDRESS);
    assert_eq!(fake.last_api_request().path, format!("/gmail/v1/users/{ADDRESS}/profile"));
}
