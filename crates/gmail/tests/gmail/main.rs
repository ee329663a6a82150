//! The Gmail client against the project's fake Google (`gmail-fake`): the OAuth2 token
//! endpoint and the Gmail API over an in-memory mailbox, in Gmail's documented wire format and
//! with scopes enforced as Google does. The fake records every request, so the tests check
//! exactly what the client sent, and any answer can be replaced to inject a failure.

mod errors;
mod listing;
mod oauth;
mod scopes;

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use gmail::{GmailClient, GmailError, GmailSettings};
use gmail_fake::{
    ACCESS_TOKEN_PREFIX, ADDRESS, CLIENT_ID, CLIENT_SECRET, FakeGmail, FakeMessage, NewMessage, REFRESH_TOKEN, Reply,
};
use secrecy::SecretString;

/// Settings for the fake's mailbox with `refresh_token`.
fn settings_for(fake: &FakeGmail, refresh_token: &str) -> GmailSettings {
    let mut settings =
        GmailSettings::new(CLIENT_ID, SecretString::from(CLIENT_SECRET), SecretString::from(refresh_token.to_owned()));
    settings.api_base = fake.api_base();
    settings.token_url = fake.token_url();
    settings.timeout_secs = 10;
    settings
}

/// Settings with the fake's default refresh token (`gmail.modify`).
fn fake_settings(fake: &FakeGmail) -> GmailSettings {
    settings_for(fake, REFRESH_TOKEN)
}

fn client(fake: &FakeGmail) -> GmailClient {
    GmailClient::new(&fake_settings(fake)).expect("valid settings")
}

fn rfc822(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Customer <customer@example.org>\r\nTo: {ADDRESS}\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.org>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n",
        subject.len()
    )
    .into_bytes()
}

fn add_message(fake: &FakeGmail, raw: &[u8], labels: &[&str], thread_id: Option<&str>, padded: bool) -> FakeMessage {
    let mut new = NewMessage::new(raw, labels).padded(padded);
    if let Some(thread_id) = thread_id {
        new = new.thread(thread_id);
    }
    fake.deliver(new)
}

fn add_inbox(fake: &FakeGmail, subject: &str) -> FakeMessage {
    add_message(fake, &rfc822(subject, "Hello, I need help."), &["INBOX", "UNREAD"], None, true)
}

fn stored(fake: &FakeGmail, id: &str) -> FakeMessage {
    fake.message(id).expect("message exists")
}

/// The error a fresh client gets from `get_profile` when the API answers `reply`.
async fn profile_error(fake: &FakeGmail, reply: Reply) -> GmailError {
    fake.inject(None, "/profile", reply);
    client(fake).get_profile().await.expect_err("the injected reply is an error")
}

fn assert_no_secrets(text: &str) {
    for secret in [CLIENT_SECRET, REFRESH_TOKEN, ACCESS_TOKEN_PREFIX] {
        assert!(!text.contains(secret), "{secret:?} leaked into {text:?}");
    }
}

fn future_rfc3339(seconds: i64) -> String {
    (Utc::now() + chrono::TimeDelta::seconds(seconds)).to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn assert_retry_near(error: &GmailError, seconds: u64) {
    let retry = error.retry_after().unwrap_or_else(|| panic!("{error:?} has a retry hint"));
    assert!(
        retry <= Duration::from_secs(seconds) && retry > Duration::from_secs(seconds.saturating_sub(20)),
        "{retry:?} is not about {seconds}s ({error:?})"
    );
}
