//! The Gmail sink against a local fake of the Gmail API reproducing its wire format: the
//! OAuth2 token exchange (and a 401 answered by one refresh), `messages.send` with `threadId` and
//! the reply inside base64url `raw`, `drafts.create` for escalations, rate limits that make the
//! reply wait (no retry spent), a 400 that dead-letters, and the `rfc822msgid:` search that lets a
//! sender taking over a crashed delivery find the reply instead of sending it twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use mailroom_tests::TestDb;
use mailroom_tests::fake_http::{FakeServer, Recorded, Reply};
use pipeline_core::Fate;
use sender::Outcome;
use sender::sink::GmailSink;
use serde_json::{Value, json};

use crate::{AGENT, assert_reply_headers, cleanup, connection, handler, pool, prefix, reply, settings};

/// The `raw` of a send or draft body, decoded as Gmail does (base64url, padding optional).
fn raw_of(body: &Value) -> String {
    let raw = body["raw"].as_str().or_else(|| body["message"]["raw"].as_str()).expect("raw");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).expect("base64url");
    String::from_utf8(bytes).expect("utf-8")
}

fn google_error(code: u16, status: &str, reason: &str, message: &str) -> Reply {
    Reply::json(
        code,
        json!({"error": {"code": code, "message": message, "status": status,
            "errors": [{"message": message, "domain": "usageLimits", "reason": reason}]}}),
    )
}

/// The fake: a token endpoint, send/drafts/list, and a few recipients that fail.
async fn fake_gmail(already_sent: Option<String>) -> FakeServer {
    let expired_once = Arc::new(AtomicBool::new(false));
    FakeServer::start(move |r: &Recorded| {
        if r.path == "/token" {
            let token = if expired_once.load(Ordering::SeqCst) { "ya29.second" } else { "ya29.first" };
            return Reply::json(200, json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer",
                "scope": "https://www.googleapis.com/auth/gmail.send"}));
        }
        let path = r.path.trim_start_matches("/gmail/v1/users/me");
        match (r.method.as_str(), path) {
            ("GET", "/messages") => {
                let q = r.query.clone().unwrap_or_default();
                match &already_sent {
                    Some(id) if q.contains("rfc822msgid") => Reply::json(
                        200,
                        json!({"messages": [{"id": "18c3a0000000000f", "threadId": "18c2f00001"}], "resultSizeEstimate": 1}),
                    )
                    .header("x-matched-id", id),
                    // Gmail omits `messages` when nothing matches.
                    _ => Reply::json(200, json!({"resultSizeEstimate": 0})),
                }
            }
            ("POST", "/messages/send") | ("POST", "/drafts") => {
                let raw = raw_of(&r.body);
                // The first call meets an expired access token.
                if !expired_once.swap(true, Ordering::SeqCst) {
                    return google_error(401, "UNAUTHENTICATED", "authError", "Request had invalid authentication credentials.");
                }
                if raw.contains("\r\nTo: quota@") {
                    let at = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
                    return google_error(429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", &format!("User-rate limit exceeded.  Retry after {at}"));
                }
                if raw.contains("\r\nTo: invalid@") {
                    return google_error(400, "INVALID_ARGUMENT", "invalidArgument", "Invalid To header");
                }
                if path == "/drafts" {
                    Reply::json(200, json!({"id": "r-5512044907", "message": {"id": "18c3a00000000d01", "threadId": r.body["message"]["threadId"]}}))
                } else {
                    Reply::json(200, json!({"id": "18c3a00000000501", "threadId": r.body["threadId"], "labelIds": ["SENT"]}))
                }
            }
            _ => google_error(404, "NOT_FOUND", "notFound", "Requested entity was not found."),
        }
    })
    .await
}

fn sink(fake: &FakeServer) -> GmailSink {
    let mut s = gmail::GmailSettings::new(
        "1234-test.apps.googleusercontent.com",
        secrecy::SecretString::from("client-secret-x".to_owned()),
        secrecy::SecretString::from("1//refresh-token-y".to_owned()),
    );
    s.api_base = format!("{}/gmail/v1", fake.base);
    s.token_url = format!("{}/token", fake.base);
    GmailSink::new(&s).expect("client")
}

#[tokio::test]
async fn replies_go_out_in_the_customers_thread_and_escalations_become_gmail_drafts() {
    let (db, p) = (TestDb::create().await, prefix());
    let fake = fake_gmail(None).await;
    let h = handler(pool(&db).await, sink(&fake), settings(&p)).await;

    let msg = reply(1, "anna@example.com");
    assert_eq!(h.send_one(&msg).await.expect("sent"), Outcome::Sent("18c3a00000000501".into()));
    let sends: Vec<Recorded> = fake.requests().into_iter().filter(|r| r.path.ends_with("/messages/send")).collect();
    assert_eq!(sends.len(), 2, "401, then the same call again after one refresh");
    assert_eq!(sends[0].header("authorization"), Some("Bearer ya29.first"));
    assert_eq!(sends[1].header("authorization"), Some("Bearer ya29.second"));
    assert_eq!(sends[1].body["threadId"], json!(msg.thread_id.clone().expect("thread")), "filed in the thread");
    assert_reply_headers(&raw_of(&sends[1].body), 1);
    assert_eq!(fake.requests().iter().filter(|r| r.path == "/token").count(), 2);

    let mut escalated = reply(2, "bob@example.com");
    escalated.escalate = true;
    let Outcome::Drafted { id, .. } = h.send_one(&escalated).await.expect("draft") else { panic!("not a draft") };
    assert_eq!(id, "r-5512044907");
    let draft = fake.requests().into_iter().find(|r| r.path.ends_with("/drafts")).expect("drafts.create");
    assert_eq!(draft.body["message"]["threadId"], json!(escalated.thread_id.clone().expect("thread")));
    assert_reply_headers(&raw_of(&draft.body), 2);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn gmail_rate_limits_make_the_reply_wait_and_a_bad_request_is_dead_lettered() {
    let (db, p) = (TestDb::create().await, prefix());
    let fake = fake_gmail(None).await;
    let pool = pool(&db).await;
    let h = handler(pool.clone(), sink(&fake), settings(&p)).await;
    let err = h.send_one(&reply(1, "quota@example.com")).await.expect_err("429");
    let Fate::Defer(wait) = err.fate else { panic!("a rate limit waits: {err}") };
    assert!(wait.as_secs() > 60 && wait.as_secs() <= 121, "Gmail's 'Retry after' time is honoured: {wait:?}");
    assert_eq!(err.error_type, "GmailRateLimited");
    let err = h.send_one(&reply(2, "invalid@example.com")).await.expect_err("400");
    assert_eq!((err.fate, err.error_type.as_ref()), (Fate::Permanent, "GmailRejected"), "{err}");
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM replies").fetch_one(&pool).await.expect("count");
    assert_eq!(claims, 0, "failed deliveries release their claims");
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn taking_over_a_crashed_delivery_searches_gmail_before_sending() {
    let (db, p) = (TestDb::create().await, prefix());
    let reply_id = sender::reply_message_id(AGENT, "email-1");
    let fake = fake_gmail(Some(reply_id.clone())).await;
    let pool = pool(&db).await;
    sqlx::query(
        "INSERT INTO replies (agent_email, email_id, message_id, state, sink, recipient, subject, reply_message_id, \
         claim_token, claimed_by, claimed_at) VALUES ($1, 'email-1', 'dead', 'claimed', 'gmail', 'anna@example.com', \
         's', $2, $3, 'sender-killed', now() - interval '10 minutes')",
    )
    .bind(AGENT)
    .bind(&reply_id)
    .bind(uuid::Uuid::new_v4())
    .execute(&pool)
    .await
    .expect("stale claim");
    let h = handler(pool.clone(), sink(&fake), settings(&p)).await;
    assert_eq!(h.send_one(&reply(1, "anna@example.com")).await.expect("ok"), Outcome::Sent("18c3a0000000000f".into()));
    let requests = fake.requests();
    let search = requests.iter().find(|r| r.path.ends_with("/messages")).expect("search");
    let query: String = url::form_urlencoded::parse(search.query.as_deref().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
        .expect("q");
    assert_eq!(query, format!("rfc822msgid:<{reply_id}> in:sent"));
    assert!(!requests.iter().any(|r| r.path.ends_with("/messages/send")), "found, so not sent again");
    cleanup(&mut connection().await, &p).await;
}
