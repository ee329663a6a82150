//! The Gmail sink against the project's fake Google (`gmail-fake`: the OAuth2 token exchange,
//! `messages.send` with `threadId` and the reply inside base64url `raw`, `drafts.create`, the
//! `rfc822msgid:` search, scopes enforced as Google does): a 401 answered by one refresh, rate
//! limits that make the reply wait (no retry spent), a 400 that dead-letters, the search that
//! lets a sender taking over a crashed delivery find the reply instead of sending it twice, and
//! a token refused or short of a scope — a configuration error that holds replies up instead of
//! dead-lettering each one.

use base64::Engine as _;
use gmail_fake::{FakeGmail, Method, NewMessage, REFRESH_TOKEN, Recorded, Reply, scope};
use mailroom_tests::TestDb;
use pipeline_core::Fate;
use sender::Outcome;
use sender::settings::Mode;
use sender::sink::GmailSink;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::{AGENT, assert_reply_headers, cleanup, connection, handler, pool, prefix, reply, settings};

/// The `raw` of a send or draft body, decoded as Gmail does (base64url, padding optional).
fn raw_of(body: &Value) -> String {
    let raw = body["raw"].as_str().or_else(|| body["message"]["raw"].as_str()).expect("raw");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).expect("base64url");
    String::from_utf8(bytes).expect("utf-8")
}

/// The customer's email that `reply(n, …)` answers, in its Gmail thread.
pub(crate) fn original(fake: &FakeGmail, n: usize) {
    let raw = format!(
        "From: customer{n}@example.com\r\nTo: {AGENT}\r\nSubject: Re: Lift Pro won't pair\r\n\
         Message-ID: <CAKx{n}@mail.gmail.com>\r\n\r\nIt still does not pair.\r\n"
    );
    fake.deliver(NewMessage::new(raw, &["INBOX", "UNREAD"]).thread(&format!("18c2f{n:05}")));
}

/// A sink for the fake's mailbox with `refresh_token`.
pub(crate) fn sink(fake: &FakeGmail, refresh_token: &str) -> GmailSink {
    let mut s = gmail::GmailSettings::new(
        gmail_fake::CLIENT_ID,
        secrecy::SecretString::from(gmail_fake::CLIENT_SECRET),
        secrecy::SecretString::from(refresh_token.to_owned()),
    );
    s.api_base = fake.api_base();
    s.token_url = fake.token_url();
    GmailSink::new(&s).expect("client")
}

fn calls(fake: &FakeGmail, method: Method, path_end: &str) -> Vec<Recorded> {
    fake.requests().into_iter().filter(|r| r.method == method && r.path.ends_with(path_end)).collect()
}

async fn claims(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM replies WHERE state = 'claimed'").fetch_one(pool).await.expect("count")
}

/// A claim left by a sender that died delivering the reply to `email-1`.
async fn stale_claim(pool: &PgPool, reply_id: &str) {
    sqlx::query(
        "INSERT INTO replies (agent_email, email_id, message_id, state, sink, recipient, subject, reply_message_id, \
         claim_token, claimed_by, claimed_at) VALUES ($1, 'email-1', 'dead', 'claimed', 'gmail', 'anna@example.com', \
         's', $2, $3, 'sender-killed', now() - interval '10 minutes')",
    )
    .bind(AGENT)
    .bind(reply_id)
    .bind(uuid::Uuid::new_v4())
    .execute(pool)
    .await
    .expect("stale claim");
}

#[tokio::test]
async fn replies_go_out_in_the_customers_thread_and_escalations_become_gmail_drafts() {
    let (db, p) = (TestDb::create().await, prefix());
    let fake = FakeGmail::start().await;
    original(&fake, 1);
    original(&fake, 2);
    let h = handler(pool(&db).await, sink(&fake, REFRESH_TOKEN), settings(&p)).await;

    // The first send meets an access token Google has just expired.
    fake.inject(Some(Method::POST), "/messages/send", Reply::unauthenticated());
    let msg = reply(1, "anna@example.com");
    let Outcome::Sent(id) = h.send_one(&msg).await.expect("sent") else { panic!("not sent") };
    let sends = calls(&fake, Method::POST, "/messages/send");
    assert_eq!(sends.len(), 2, "401, then the same call again after one refresh");
    let tokens = fake.issued_tokens();
    assert_eq!(sends[0].header("authorization"), Some(format!("Bearer {}", tokens[0]).as_str()));
    assert_eq!(sends[1].header("authorization"), Some(format!("Bearer {}", tokens[1]).as_str()));
    assert_eq!(sends[1].json()["threadId"], json!(msg.thread_id.clone().expect("thread")), "filed in the thread");
    assert_reply_headers(&raw_of(&sends[1].json()), 1);
    assert_eq!(fake.token_requests().len(), 2);
    let sent = fake.message(&id).expect("the sent reply is in the mailbox");
    assert_eq!((sent.label_ids.as_slice(), sent.thread_id.as_str()), (&["SENT".to_owned()][..], "18c2f00001"));

    let mut escalated = reply(2, "bob@example.com");
    escalated.escalate = true;
    let Outcome::Drafted { id, .. } = h.send_one(&escalated).await.expect("draft") else { panic!("not a draft") };
    assert!(fake.drafts().iter().any(|(draft, _)| *draft == id), "{id} is a Gmail draft id");
    let draft = calls(&fake, Method::POST, "/drafts").pop().expect("drafts.create");
    assert_eq!(draft.json()["message"]["threadId"], json!(escalated.thread_id.clone().expect("thread")));
    assert_reply_headers(&raw_of(&draft.json()), 2);
    assert!(h.health().reason().is_empty());
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn gmail_rate_limits_make_the_reply_wait_and_a_bad_request_is_dead_lettered() {
    let (db, p) = (TestDb::create().await, prefix());
    let fake = FakeGmail::start().await;
    original(&fake, 1);
    original(&fake, 2);
    let pool = pool(&db).await;
    let h = handler(pool.clone(), sink(&fake, REFRESH_TOKEN), settings(&p)).await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let limited = Reply::google(
        429,
        "RESOURCE_EXHAUSTED",
        "rateLimitExceeded",
        "usageLimits",
        &format!("User-rate limit exceeded.  Retry after {at}"),
    );
    fake.inject(Some(Method::POST), "/messages/send", limited);
    let err = h.send_one(&reply(1, "quota@example.com")).await.expect_err("429");
    let Fate::Defer(wait) = err.fate else { panic!("a rate limit waits: {err}") };
    assert!(wait.as_secs() > 60 && wait.as_secs() <= 121, "Gmail's 'Retry after' time is honoured: {wait:?}");
    assert_eq!(err.error_type, "GmailRateLimited");
    fake.inject(Some(Method::POST), "/messages/send", Reply::invalid_argument("Invalid To header"));
    let err = h.send_one(&reply(2, "invalid@example.com")).await.expect_err("400");
    assert_eq!((err.fate, err.error_type.as_ref()), (Fate::Permanent, "GmailRejected"), "{err}");
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM replies").fetch_one(&pool).await.expect("count");
    assert_eq!(all, 0, "failed deliveries release their claims");
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn taking_over_a_crashed_delivery_searches_gmail_before_sending() {
    let (db, p) = (TestDb::create().await, prefix());
    let reply_id = sender::reply_message_id(AGENT, "email-1");
    let fake = FakeGmail::start().await;
    original(&fake, 1);
    // What the crashed sender managed to send.
    let raw = format!("From: {AGENT}\r\nTo: anna@example.com\r\nMessage-ID: <{reply_id}>\r\n\r\nHello\r\n");
    let sent = fake.deliver(NewMessage::new(raw, &["SENT"]).thread("18c2f00001"));
    let pool = pool(&db).await;
    stale_claim(&pool, &reply_id).await;
    let h = handler(pool.clone(), sink(&fake, REFRESH_TOKEN), settings(&p)).await;
    assert_eq!(h.send_one(&reply(1, "anna@example.com")).await.expect("ok"), Outcome::Sent(sent.id));
    let search = calls(&fake, Method::GET, "/messages").pop().expect("search");
    assert_eq!(search.param("q"), Some(format!("rfc822msgid:<{reply_id}> in:sent").as_str()));
    assert!(calls(&fake, Method::POST, "/messages/send").is_empty(), "found, so not sent again");
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_send_only_token_in_draft_mode_holds_replies_up_instead_of_dead_lettering_them() {
    let (db, p) = (TestDb::create().await, prefix());
    let fake = FakeGmail::start().await;
    (1..=3).for_each(|n| original(&fake, n));
    let token = "1//0send-only";
    fake.grant(token, &[scope::SEND]);
    let pool = pool(&db).await;
    let mut s = settings(&p);
    s.mode = Mode::Draft;
    s.misconfigured_retry_secs = 1;
    let h = handler(pool.clone(), sink(&fake, token), s).await;

    let err = h.send_one(&reply(1, "anna@example.com")).await.expect_err("drafts need gmail.compose");
    assert_eq!(err.fate, Fate::Defer(std::time::Duration::from_secs(1)), "{err}");
    assert_eq!(err.error_type, "GmailInsufficientScope");
    let text = err.source.to_string();
    assert!(text.contains("users.drafts.create") && text.contains("gmail.compose"), "{text}");
    let reason = h.health().reason();
    assert!(reason.starts_with("outbox needs re-authorisation") && reason.contains("gmail.compose"), "{reason}");
    assert!(reason.contains("the sender needs gmail.compose and gmail.readonly, or gmail.modify"), "{reason}");
    assert_eq!(claims(&pool).await, 0, "the claim is released for the next attempt");

    // Meanwhile the next reply waits without asking Gmail.
    let err = h.send_one(&reply(2, "bob@example.com")).await.expect_err("held up");
    assert!(matches!(err.fate, Fate::Defer(_)), "{err}");
    assert_eq!(err.error_type, "GmailInsufficientScope");
    assert_eq!(calls(&fake, Method::POST, "/drafts").len(), 1, "no second doomed call");

    // The owner grants gmail.compose too (incremental consent); once the access token is
    // renewed and the pause is over, the held-up replies go through and the problem clears.
    fake.grant(token, &[scope::SEND, scope::COMPOSE]);
    fake.revoke_access_tokens();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    for (n, to) in [(2, "bob@example.com"), (1, "anna@example.com"), (3, "cy@example.com")] {
        let outcome = h.send_one(&reply(n, to)).await.expect("drafted");
        assert!(matches!(outcome, Outcome::Drafted { .. }), "{outcome:?}");
    }
    assert_eq!(fake.drafts().len(), 3);
    assert!(h.health().reason().is_empty(), "{}", h.health().reason());
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_compose_token_drafts_and_takes_over_without_read_scope_as_an_in_doubt_draft() {
    let (db, p) = (TestDb::create().await, prefix());
    let fake = FakeGmail::start().await;
    original(&fake, 1);
    original(&fake, 2);
    let token = "1//0compose-only";
    fake.grant(token, &[scope::COMPOSE]);
    let pool = pool(&db).await;
    let reply_id = sender::reply_message_id(AGENT, "email-1");
    stale_claim(&pool, &reply_id).await;
    let h = handler(pool.clone(), sink(&fake, token), settings(&p)).await;

    // The search is refused (no read scope): the sink cannot tell whether the crashed sender
    // sent the reply, so it becomes a draft for a person, never a possible second send.
    let Outcome::InDoubt(draft) = h.send_one(&reply(1, "anna@example.com")).await.expect("in doubt") else {
        panic!("expected an in-doubt draft")
    };
    assert!(fake.drafts().iter().any(|(id, _)| *id == draft));
    assert!(calls(&fake, Method::POST, "/messages/send").is_empty());
    assert_eq!(calls(&fake, Method::GET, "/messages").len(), 1, "the search was tried");

    // Ordinary replies: gmail.compose sends and drafts.
    assert!(matches!(h.send_one(&reply(2, "bob@example.com")).await.expect("sent"), Outcome::Sent(_)));
    let mut escalated = reply(2, "bob@example.com");
    escalated.email_id = "email-2b".into();
    escalated.escalate = true;
    assert!(matches!(h.send_one(&escalated).await.expect("draft"), Outcome::Drafted { .. }));
    assert!(h.health().reason().is_empty());
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_revoked_refresh_token_holds_every_reply_up_instead_of_dead_lettering_them() {
    let (db, p) = (TestDb::create().await, prefix());
    let fake = FakeGmail::start().await;
    original(&fake, 1);
    original(&fake, 2);
    fake.revoke(REFRESH_TOKEN);
    let pool = pool(&db).await;
    let h = handler(pool.clone(), sink(&fake, REFRESH_TOKEN), settings(&p)).await;
    let err = h.send_one(&reply(1, "anna@example.com")).await.expect_err("refused refresh token");
    assert!(matches!(err.fate, Fate::Defer(_)), "{err}");
    assert_eq!(err.error_type, "GmailReauthorizationRequired");
    assert!(h.health().reason().contains("re-authorise"), "{}", h.health().reason());
    // Drafts need the same token: held up too, without another token request.
    let mut escalated = reply(2, "bob@example.com");
    escalated.escalate = true;
    let err = h.send_one(&escalated).await.expect_err("held up");
    assert_eq!((matches!(err.fate, Fate::Defer(_)), err.error_type.as_ref()), (true, "GmailReauthorizationRequired"));
    assert_eq!(fake.count(), 1, "only the refused token request");
    assert_eq!(claims(&pool).await, 0);
    cleanup(&mut connection().await, &p).await;
}
