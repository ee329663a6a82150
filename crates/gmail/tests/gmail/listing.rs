//! Listing with search and pages, history with omitted lists and an expired cursor, raw
//! messages with and without base64 padding, labels, send and drafts.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use gmail::{GmailError, advance_history_cursor};
use gmail_fake::{ADDRESS, FakeGmail, Method, Reply};
use serde_json::json;

use crate::{add_inbox, add_message, client, rfc822, stored};

#[tokio::test]
async fn list_messages_pages_through_results() {
    let fake = FakeGmail::start().await;
    let unread: Vec<_> = (1..=5).map(|n| add_inbox(&fake, &format!("Question {n}"))).collect();
    add_message(&fake, &rfc822("Already read", "x"), &["INBOX"], None, true);
    let client = client(&fake).with_page_size(2);

    let mut ids = Vec::new();
    let mut page_token: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = client.list_messages("is:unread in:inbox", page_token.as_deref()).await.expect("page");
        pages += 1;
        assert_eq!(page.result_size_estimate, Some(5));
        assert!(page.messages.iter().all(|message| message.label_ids.is_empty()), "listing carries ids only");
        ids.extend(page.messages.iter().map(|message| (message.id.clone(), message.thread_id.clone())));
        let request = fake.last_api_request();
        assert_eq!(request.path, "/gmail/v1/users/me/messages");
        assert_eq!(request.param("q"), Some("is:unread in:inbox"));
        assert_eq!(request.param("maxResults"), Some("2"));
        assert_eq!(request.param("pageToken"), page_token.as_deref());
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<_> = unread.iter().rev().map(|message| (message.id.clone(), message.thread_id.clone())).collect();
    assert_eq!(ids, expected, "newest first, every unread message once");

    // No match: Gmail omits `messages`.
    let page = client.list_messages("label:Nonexistent", None).await.expect("empty page");
    assert!(page.messages.is_empty());
    assert_eq!(page.next_page_token, None);
    assert_eq!(page.result_size_estimate, Some(0));
}

#[tokio::test]
async fn history_pages_omitted_lists_and_expired_cursor() {
    let fake = FakeGmail::start().await;
    let client = client(&fake).with_page_size(2);
    let start = client.get_profile().await.expect("profile").history_id;

    // Nothing happened yet: Gmail omits `history`.
    let page = client.list_history(&start, None).await.expect("history");
    assert!(page.history.is_empty() && page.next_page_token.is_none());
    assert_eq!(page.history_id, start);
    let request = fake.last_api_request();
    assert_eq!(request.path, "/gmail/v1/users/me/history");
    assert_eq!(request.param("startHistoryId"), Some(start.as_str()));
    assert_eq!(request.param("historyTypes"), Some("messageAdded"));
    assert_eq!(request.param("labelId"), Some("INBOX"));

    let first = add_inbox(&fake, "First");
    add_message(&fake, &rfc822("Outgoing", "x"), &["SENT"], None, true);
    let second = add_inbox(&fake, "Second");
    let reply = add_message(&fake, &rfc822("Re: First", "more"), &["INBOX", "UNREAD"], Some(&first.thread_id), true);
    let third = add_inbox(&fake, "Third");

    let mut cursor = Some(start.clone());
    let mut added = Vec::new();
    let mut page_token: Option<String> = None;
    let mut latest;
    loop {
        let page = client.list_history(&start, page_token.as_deref()).await.expect("history page");
        assert_eq!(fake.last_api_request().param("pageToken"), page_token.as_deref());
        added.extend(page.added_messages().into_iter().cloned());
        for record in &page.history {
            assert!(record.id.parse::<u64>().expect("numeric string") > start.parse::<u64>().expect("numeric"));
        }
        latest = page.history_id.clone();
        match page.next_page_token {
            Some(token) => page_token = Some(token),
            None => break,
        }
    }
    let ids: Vec<&str> = added.iter().map(|message| message.id.as_str()).collect();
    assert_eq!(ids, [&first.id, &second.id, &reply.id, &third.id].map(String::as_str), "inbox additions, oldest first");
    assert_eq!(added[2].thread_id, first.thread_id);
    assert_eq!(added[0].label_ids, ["INBOX", "UNREAD"]);
    assert_eq!(latest, fake.history_id().to_string());
    assert!(advance_history_cursor(&mut cursor, &latest));
    assert!(!advance_history_cursor(&mut cursor, &start), "never moves back");
    assert_eq!(cursor.as_deref(), Some(latest.as_str()));

    // Gmail drops old history: the old cursor is a 404, which means "resync".
    fake.forget_history();
    let error = client.list_history(&start, None).await.expect_err("cursor expired");
    assert_eq!(error, GmailError::HistoryExpired { start_history_id: start.clone() });
    assert!(!error.is_transient());
    // The current cursor still works.
    let page = client.list_history(&latest, None).await.expect("current cursor");
    assert!(page.history.is_empty());
}

// ---------------------------------------------------------------- messages

#[tokio::test]
async fn get_raw_decodes_base64url_with_and_without_padding() {
    let fake = FakeGmail::start().await;
    let client = client(&fake);
    // Non-ASCII text and bytes that need the URL-safe alphabet (`-`, `_`).
    let mut raw = rfc822("Réclamation ???>>>", "Grüße — ça ne marche pas ~~~ ÿÿÿ");
    while raw.len() % 3 != 1 {
        raw.push(b' ');
    }
    assert!(URL_SAFE.encode(&raw).ends_with("=="), "the padded form has padding");
    assert!(STANDARD.encode(&raw).contains(['+', '/']), "the URL-safe alphabet matters");

    for padded in [true, false] {
        let stored = add_message(&fake, &raw, &["INBOX", "UNREAD"], None, padded);
        let message = client.get_raw(&stored.id).await.expect("raw message");
        assert_eq!(message.raw, raw, "padded: {padded}");
        assert_eq!(message.id, stored.id);
        assert_eq!(message.thread_id, stored.thread_id);
        assert_eq!(message.label_ids, ["INBOX", "UNREAD"]);
        assert_eq!(message.history_id.as_deref(), Some(stored.history_id.to_string().as_str()));
        assert_eq!(message.internal_date.as_deref(), Some(stored.internal_date_ms.to_string().as_str()));
        assert_eq!(message.received_at().map(|t| t.timestamp_millis()), Some(stored.internal_date_ms));
        assert_eq!(message.size_estimate, Some(raw.len() as u64));
        assert!(!message.snippet.is_empty());
        let request = fake.last_api_request();
        assert_eq!(request.path, format!("/gmail/v1/users/me/messages/{}", stored.id));
        assert_eq!(request.param("format"), Some("raw"));
    }

    // Missing and malformed ids.
    let error = client.get_raw("18f3c2a1b4d5ffff").await.expect_err("no such message");
    assert!(matches!(error, GmailError::NotFound { .. }), "{error:?}");
    assert!(!error.is_transient());
    let error = client.get_raw("not-an-id").await.expect_err("malformed id");
    assert!(matches!(error, GmailError::Permanent { status: Some(400), .. }), "{error:?}");
    let error = client.get_raw(" ").await.expect_err("empty id");
    assert!(matches!(error, GmailError::Permanent { status: None, .. }), "{error:?}");

    // A raw that is not base64url is a permanent error that says so.
    fake.inject(None, "/messages/", Reply::json(200, json!({"id": "1", "threadId": "1", "raw": "not base64!"})));
    let error = client.get_raw("18f3c2a1b4d50001").await.expect_err("bad raw");
    assert!(error.to_string().contains("base64url"), "{error}");
}

#[tokio::test]
async fn labels_are_ensured_and_modified() {
    let fake = FakeGmail::start().await;
    let client = client(&fake);
    let message = add_inbox(&fake, "Help");

    let label = client.ensure_label("Mailroom/Processed").await.expect("label created");
    assert_eq!(label.name, "Mailroom/Processed");
    assert!(label.id.starts_with("Label_"));
    let requests = fake.api_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!((requests[0].method.clone(), requests[0].path.as_str()), (Method::GET, "/gmail/v1/users/me/labels"));
    assert_eq!((requests[1].method.clone(), requests[1].path.as_str()), (Method::POST, "/gmail/v1/users/me/labels"));
    assert_eq!(
        requests[1].json(),
        json!({"name": "Mailroom/Processed", "labelListVisibility": "labelShow", "messageListVisibility": "show"})
    );

    // Existing (Gmail compares names without case): found, not created again.
    fake.clear_requests();
    assert_eq!(client.ensure_label("mailroom/processed").await.expect("label found"), label);
    assert_eq!(fake.api_requests().len(), 1);

    // Created by someone else between the listing and the creation: 409, then found.
    fake.clear_requests();
    fake.inject(
        Some(Method::GET),
        "/labels",
        Reply::json(200, json!({"labels": [{"id": "INBOX", "name": "INBOX", "type": "system"}]})),
    );
    assert_eq!(client.ensure_label("Mailroom/Processed").await.expect("label after a conflict"), label);
    let methods: Vec<Method> = fake.api_requests().into_iter().map(|request| request.method).collect();
    assert_eq!(methods, [Method::GET, Method::POST, Method::GET]);

    let updated = client.modify_labels(&message.id, &[&label.id], &["UNREAD"]).await.expect("modified");
    let request = fake.last_api_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, format!("/gmail/v1/users/me/messages/{}/modify", message.id));
    assert_eq!(request.json(), json!({"addLabelIds": [label.id], "removeLabelIds": ["UNREAD"]}));
    assert_eq!(updated.id, message.id);
    assert_eq!(updated.label_ids, ["INBOX", label.id.as_str()]);
    assert_eq!(stored(&fake, &message.id).label_ids, ["INBOX", label.id.as_str()]);

    let error = client.modify_labels(&message.id, &["Label_99"], &[]).await.expect_err("unknown label");
    assert!(matches!(error, GmailError::Permanent { status: Some(400), .. }), "{error:?}");
    assert!(error.to_string().contains("Invalid label: Label_99"), "{error}");
    let error = client.modify_labels("18f3c2a1b4d5ffff", &[], &["UNREAD"]).await.expect_err("no such message");
    assert!(matches!(error, GmailError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn send_posts_exact_raw_bytes_in_the_thread() {
    let fake = FakeGmail::start().await;
    let client = client(&fake);
    let original = add_inbox(&fake, "Where is my order?");
    let mut reply = format!(
        "From: {ADDRESS}\r\nTo: customer@example.org\r\nSubject: Re: Where is my order?\r\n\
         In-Reply-To: <18@example.org>\r\nReferences: <18@example.org>\r\n\r\nBonjour — voilà ??>> ~~~\r\n"
    )
    .into_bytes();
    reply.push(0xff);
    while reply.len() % 3 == 0 {
        reply.push(b'\n');
    }
    assert!(STANDARD.encode(&reply).contains(['+', '/']), "the URL-safe alphabet matters");

    let sent = client.send(&reply, Some(&original.thread_id)).await.expect("sent");
    let request = fake.last_api_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/gmail/v1/users/me/messages/send");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.json(), json!({"raw": URL_SAFE_NO_PAD.encode(&reply), "threadId": original.thread_id}));
    let raw = request.json()["raw"].as_str().expect("raw is a string").to_owned();
    assert!(!raw.contains(['=', '+', '/']), "base64url without padding: {raw}");
    assert_eq!(URL_SAFE_NO_PAD.decode(&raw).expect("strict base64url without padding"), reply);

    assert_eq!(sent.thread_id, original.thread_id);
    assert_eq!(sent.label_ids, ["SENT"]);
    assert_eq!(stored(&fake, &sent.id).raw, reply);

    // A new conversation: no `threadId` at all.
    let sent = client.send(b"Subject: Hi\r\n\r\nHello", None).await.expect("sent");
    assert_eq!(fake.last_api_request().json(), json!({"raw": URL_SAFE_NO_PAD.encode(b"Subject: Hi\r\n\r\nHello")}));
    assert_eq!(sent.thread_id, sent.id);

    let error = client.send(b"Subject: Hi\r\n\r\nHello", Some("ffffffffffffffff")).await.expect_err("unknown thread");
    assert!(matches!(error, GmailError::NotFound { .. }), "{error:?}");
}

#[tokio::test]
async fn drafts_are_created_in_the_thread() {
    let fake = FakeGmail::start().await;
    let client = client(&fake);
    let original = add_inbox(&fake, "Refund?");
    let body = b"Subject: Re: Refund?\r\n\r\nDraft answer \xc3\xa9";

    let draft = client.create_draft(body, Some(&original.thread_id)).await.expect("draft");
    let request = fake.last_api_request();
    assert_eq!((request.method.clone(), request.path.as_str()), (Method::POST, "/gmail/v1/users/me/drafts"));
    assert_eq!(
        request.json(),
        json!({"message": {"raw": URL_SAFE_NO_PAD.encode(body), "threadId": original.thread_id}})
    );
    assert!(draft.id.starts_with("r-"));
    assert_eq!(draft.message.thread_id, original.thread_id);
    assert_eq!(draft.message.label_ids, ["DRAFT"]);
    assert_eq!(stored(&fake, &draft.message.id).raw, body);
}
