//! OAuth2: the refresh-token grant as a form post, the cached access token, the refresh
//! before expiry and after a 401, `invalid_grant`, and the token endpoint's other errors.

use std::collections::HashMap;
use std::time::Duration;

use gmail::{GmailClient, GmailError};
use gmail_fake::{
    ACCESS_TOKEN_PREFIX, ADDRESS, CLIENT_ID, CLIENT_SECRET, FIRST_HISTORY_ID, FakeGmail, Method, REFRESH_TOKEN, Reply,
};
use secrecy::SecretString;
use serde_json::json;

use crate::{assert_no_secrets, client, fake_settings};

#[tokio::test]
async fn token_is_refreshed_with_a_form_post_and_cached() {
    let fake = FakeGmail::start().await;
    let client = client(&fake);

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
    let client = client(&fake);
    client.get_profile().await.expect("profile");
    client.get_profile().await.expect("profile again");
    assert_eq!(fake.token_requests().len(), 2, "a token about to expire is not reused");
    let api = fake.api_requests();
    assert_eq!(api[1].header("authorization"), Some(format!("Bearer {ACCESS_TOKEN_PREFIX}2").as_str()));
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    let fake = FakeGmail::start().await;
    let client = client(&fake);
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

    let error = client(&fake).get_profile().await.expect_err("401 twice");
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
    fake.revoke(REFRESH_TOKEN);
    let error = client(&fake).list_messages("in:inbox", None).await.expect_err("refresh token revoked");
    assert!(matches!(error, GmailError::ReauthorizationRequired { .. }), "{error:?}");
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(text.contains("re-authorise") && text.contains("Token has been expired or revoked."), "{text}");
    assert!(fake.api_requests().is_empty(), "no API call without a token");
    assert_no_secrets(&format!("{error} {error:?}"));

    // Also when the access token was revoked at the same time: the refresh after the 401 fails.
    let fake = FakeGmail::start().await;
    let client = client(&fake);
    client.get_profile().await.expect("profile");
    fake.revoke_access_tokens();
    fake.revoke(REFRESH_TOKEN);
    let error = client.get_profile().await.expect_err("cannot refresh");
    assert!(matches!(error, GmailError::ReauthorizationRequired { .. }), "{error:?}");
}

#[tokio::test]
async fn token_endpoint_errors_are_classified() {
    let fake = FakeGmail::start().await;

    // A wrong client secret: permanent, and the secret sent is never quoted.
    let mut settings = fake_settings(&fake);
    settings.client_secret = SecretString::from("GOCSPX-wrong-secret-987654");
    let error = GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("bad client");
    assert!(matches!(error, GmailError::Permanent { status: Some(401), .. }), "{error:?}");
    assert!(error.to_string().contains("invalid_client"), "{error}");

    // Other 400s, e.g. an unknown client id.
    let mut settings = fake_settings(&fake);
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
    let error = client(&fake).get_profile().await.expect_err("token endpoint down");
    assert!(matches!(error, GmailError::Transient { status: Some(503), .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(3)));
    fake.inject(None, "/token", Reply::json(500, json!({"error": "internal_failure"})));
    let error = client(&fake).get_profile().await.expect_err("token endpoint failing");
    assert!(error.is_transient(), "{error:?}");

    // The next call works: nothing was cached from the failures.
    client(&fake).get_profile().await.expect("token endpoint back");

    // A body that is not a token.
    fake.inject(None, "/token", Reply::json(200, json!({"token": "nope"})));
    let error = client(&fake).get_profile().await.expect_err("not a token response");
    assert!(matches!(error, GmailError::Permanent { status: Some(200), .. }), "{error:?}");
}

#[tokio::test]
async fn token_endpoint_timeout_is_transient() {
    let fake = FakeGmail::start().await;
    let mut settings = fake_settings(&fake);
    settings.timeout_secs = 1;
    fake.inject(None, "/token", Reply::json(200, json!({})).delayed(Duration::from_secs(3)));
    let error = GmailClient::new(&settings).expect("valid").get_profile().await.expect_err("timed out");
    assert!(matches!(error, GmailError::Transient { status: None, .. }), "{error:?}");
    assert!(error.to_string().contains("timed out"), "{error}");
}
