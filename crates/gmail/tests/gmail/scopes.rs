//! Scopes: a refresh token granted too little gets Google's 403 `insufficientPermissions`,
//! which the client reports as [`GmailError::InsufficientScope`] naming the call and the
//! scopes it accepts — a configuration error, never retried, distinct from every other 403.

use gmail::{GmailClient, GmailError, scopes};
use gmail_fake::{FakeGmail, Method, Reply, scope};
use serde_json::json;

use crate::{add_inbox, settings_for};

/// A client whose refresh token was granted exactly `granted`.
fn client_granted(fake: &FakeGmail, granted: &[&str]) -> GmailClient {
    let token = format!("1//0scoped-{}", granted.iter().map(|s| scopes::short_name(s)).collect::<Vec<_>>().join("+"));
    fake.grant(&token, granted);
    GmailClient::new(&settings_for(fake, &token)).expect("valid settings")
}

fn assert_scope_error(error: &GmailError, operation: &str, accepted: &[&str]) {
    let GmailError::InsufficientScope { operation: refused, accepted: listed, .. } = error else {
        panic!("not a scope error: {error:?}");
    };
    assert_eq!(refused, operation, "{error}");
    assert_eq!(listed, accepted, "{error}");
    assert!(!error.is_transient() && error.needs_reauthorization(), "{error:?}");
    assert_eq!((error.status(), error.retry_after()), (Some(403), None));
    let text = error.to_string();
    assert!(text.contains(operation) && text.contains("re-authorise"), "{text}");
}

#[tokio::test]
async fn a_send_only_token_sends_but_cannot_draft_or_search() {
    let fake = FakeGmail::start().await;
    let original = add_inbox(&fake, "Refund?");
    let client = client_granted(&fake, &[scope::SEND]);

    client.send(b"Subject: Re: Refund?\r\n\r\nYes.", Some(&original.thread_id)).await.expect("gmail.send sends");

    let error = client.create_draft(b"Subject: Re: Refund?\r\n\r\nMaybe.", None).await.expect_err("no draft");
    assert_scope_error(&error, "users.drafts.create", &[scope::FULL, scope::MODIFY, scope::COMPOSE]);
    assert!(error.to_string().contains("gmail.compose"), "the message names a scope to grant: {error}");
    // Exactly Google's answer, challenge included.
    let error = client.list_messages("rfc822msgid:<x@example.org> in:sent", None).await.expect_err("no search");
    assert_scope_error(&error, "users.messages.list", &[scope::FULL, scope::MODIFY, scope::READONLY, scope::METADATA]);
    assert_eq!(fake.drafts().len(), 0);
}

#[tokio::test]
async fn a_compose_token_drafts_and_sends_but_a_readonly_one_cannot_label() {
    let fake = FakeGmail::start().await;
    let original = add_inbox(&fake, "Where is my order?");
    let compose = client_granted(&fake, &[scope::COMPOSE]);
    compose.get_profile().await.expect("getProfile accepts gmail.compose");
    compose.create_draft(b"Subject: Re\r\n\r\nDraft", Some(&original.thread_id)).await.expect("draft");
    compose.send(b"Subject: Re\r\n\r\nSent", Some(&original.thread_id)).await.expect("send");
    let error = compose.get_raw(&original.id).await.expect_err("no reading");
    assert!(matches!(&error, GmailError::InsufficientScope { operation, .. } if operation == "users.messages.get"));

    let readonly = client_granted(&fake, &[scope::READONLY]);
    let page = readonly.list_messages("is:unread in:inbox", None).await.expect("search");
    assert_eq!(page.messages.len(), 1);
    readonly.get_raw(&original.id).await.expect("read");
    let error = readonly.modify_labels(&original.id, &[], &["UNREAD"]).await.expect_err("no labelling");
    assert_scope_error(&error, "users.messages.modify", &[scope::FULL, scope::MODIFY]);
    let error = readonly.ensure_label("Mailroom/Processed").await.expect_err("no label creation");
    assert_scope_error(&error, "users.labels.create", &[scope::FULL, scope::MODIFY, scope::LABELS]);
    let error = readonly.send(b"Subject: x\r\n\r\ny", None).await.expect_err("no sending");
    assert_scope_error(&error, "users.messages.send", &[scope::FULL, scope::MODIFY, scope::COMPOSE, scope::SEND]);
}

#[tokio::test]
async fn gmail_metadata_forbids_searches_and_raw_bodies_even_beside_modify() {
    let fake = FakeGmail::start().await;
    let original = add_inbox(&fake, "Hello");
    let client = client_granted(&fake, &[scope::MODIFY, scope::METADATA]);
    // Without `q` the listing works.
    assert_eq!(client.list_messages(" ", None).await.expect("plain listing").messages.len(), 1);
    let error = client.list_messages("is:unread", None).await.expect_err("no search");
    assert_scope_error(&error, "users.messages.list", &[scope::FULL, scope::MODIFY, scope::READONLY]);
    let text = error.to_string();
    assert!(text.contains("Metadata scope does not support 'q' parameter") && text.contains("without it"), "{text}");
    let error = client.get_raw(&original.id).await.expect_err("no raw body");
    assert!(error.to_string().contains("doesn't allow format RAW"), "{error}");
    assert!(error.needs_reauthorization());
}

#[tokio::test]
async fn a_403_without_the_challenge_header_names_the_reference_scopes() {
    let fake = FakeGmail::start().await;
    let reply = Reply::google(
        403,
        "PERMISSION_DENIED",
        "insufficientPermissions",
        "global",
        "Request had insufficient authentication scopes.",
    );
    fake.inject(Some(Method::POST), "/drafts", reply);
    let error = crate::client(&fake).create_draft(b"Subject: x\r\n\r\ny", None).await.expect_err("403");
    assert_scope_error(&error, "users.drafts.create", scopes::accepted_by("users.drafts.create"));

    // Other 403s stay what they were: a delegation refusal is permanent, not a scope error.
    fake.inject(None, "/profile", Reply::google(403, "PERMISSION_DENIED", "forbidden", "global", "Delegation denied"));
    let error = crate::client(&fake).get_profile().await.expect_err("403");
    assert!(matches!(error, GmailError::Permanent { status: Some(403), .. }), "{error:?}");
    assert!(!error.needs_reauthorization());
}

#[tokio::test]
async fn the_token_response_names_the_granted_scopes() {
    let fake = FakeGmail::start().await;
    fake.grant("1//0two-scopes", &[scope::COMPOSE, scope::READONLY]);
    let body = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", gmail_fake::CLIENT_ID)
        .append_pair("client_secret", gmail_fake::CLIENT_SECRET)
        .append_pair("refresh_token", "1//0two-scopes")
        .append_pair("grant_type", "refresh_token")
        .finish();
    let response = reqwest::Client::new()
        .post(fake.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token endpoint");
    assert_eq!(response.status(), 200);
    let token: serde_json::Value = response.json().await.expect("JSON");
    assert_eq!(token["scope"], json!(format!("{} {}", scope::COMPOSE, scope::READONLY)));
    assert_eq!(token["token_type"], "Bearer");
    assert!(token.get("refresh_token").is_none(), "a refresh grant returns no new refresh token");
}
