//! A person's reply takes the thread, drafts included (`sender::draft_review`): when a customer
//! writes again in a thread where a reply was left as a draft, the sender reads the draft back
//! from its sink. Untouched (even re-saved by a mail client), it does not stop an automatic
//! answer; edited, sent or discarded by a person, the thread is theirs and every later reply in
//! it is a draft. On the Maildir outbox and on the Gmail fake (`users.drafts.get`, a person's
//! edit replacing the draft's message, `drafts.send`).

use gmail_fake::{FakeGmail, REFRESH_TOKEN};
use mailroom_tests::{TestDb, TestDir};
use pipeline_core::messages::EmailToSend;
use sender::Outcome;
use sender::sink::MaildirSink;
use sqlx::PgPool;

use crate::gmail::{original, sink};
use crate::{AGENT, cleanup, connection, handler, pool, prefix, reply, settings};

/// A reply to the customer's follow-up `n` in the thread of email `first`: its `References`
/// name the first email, as a mail client threads them.
fn follow_up(n: usize, first: &EmailToSend) -> EmailToSend {
    let mut msg = reply(n, &first.to);
    msg.references = first.references.iter().cloned().chain([format!("CAKx{n}@mail.gmail.com")]).collect();
    msg.thread_id = first.thread_id.clone();
    msg
}

fn escalated(n: usize, to: &str, thread: Option<&str>) -> EmailToSend {
    let mut msg = reply(n, to);
    msg.escalate = true;
    msg.escalation_reason = Some("no relevant passage in the agent's documents".into());
    msg.thread_id = thread.map(str::to_owned);
    msg
}

/// The reason of a draft; panics on anything else.
fn drafted(outcome: Outcome) -> String {
    match outcome {
        Outcome::Drafted { reason, .. } => reason,
        other => panic!("expected a draft, got {other:?}"),
    }
}

async fn person_replies(pool: &PgPool) -> Vec<(String, Vec<String>)> {
    sqlx::query_as("SELECT source_id, refs FROM person_replies WHERE agent_email = $1 ORDER BY source_id")
        .bind(AGENT)
        .fetch_all(pool)
        .await
        .expect("person replies")
}

/// The one draft file of `n`'s reply in the outbox's `.Drafts`.
fn draft_file(outbox: &std::path::Path, n: usize) -> std::path::PathBuf {
    let key = MaildirSink::reply_key(&sender::reply_message_id(AGENT, &format!("email-{n}")));
    let found: Vec<_> = MaildirSink::deliveries(&outbox.join(".Drafts"))
        .expect("drafts")
        .into_iter()
        .filter(|d| d.key.as_deref() == Some(key.as_str()))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].path.clone()
}

#[tokio::test]
async fn a_draft_a_person_edited_or_discarded_in_the_maildir_outbox_takes_the_thread() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let pool = pool(&db).await;
    let h = handler(pool.clone(), MaildirSink::new(&dir.path).expect("outbox"), settings(&p)).await;

    // A first email escalated: a draft is left for a person.
    let first = escalated(1, "anna@example.com", None);
    drafted(h.send_one(&first).await.expect("drafted"));
    let file = draft_file(&dir.path, 1);

    // A mail client opened it and re-saved it unchanged (a header of its own, the seen flag):
    // nobody took it up, and the customer's follow-up is answered.
    let raw = std::fs::read_to_string(&file).expect("draft");
    std::fs::write(&file, format!("X-Mozilla-Draft-Info: internal/draft; vcard=0\r\n{raw}")).expect("re-save");
    let seen = file.with_file_name(format!("{}S", file.file_name().expect("name").to_string_lossy()));
    std::fs::rename(&file, &seen).expect("flag seen");
    assert!(matches!(h.send_one(&follow_up(2, &first)).await.expect("sent"), Outcome::Sent(_)));
    assert!(person_replies(&pool).await.is_empty());

    // A person edits the draft's text: the next follow-up is a draft, and says why.
    std::fs::write(&seen, raw.replace("hold the pairing button", "please send the unit back")).expect("edit");
    let reason = drafted(h.send_one(&follow_up(3, &first)).await.expect("drafted"));
    assert!(reason.contains("a person of the mailbox edited the draft left for an earlier email"), "{reason}");
    // Recorded as the person's reply in the thread, answering the first email: read back once,
    // and every later reply in the thread is a draft.
    let draft_id = sender::reply_message_id(AGENT, "email-1");
    assert_eq!(person_replies(&pool).await, vec![(format!("draft:{draft_id}"), vec!["CAKx1@mail.gmail.com".into()])]);
    let reason = drafted(h.send_one(&follow_up(4, &first)).await.expect("drafted"));
    assert!(reason.contains("has replied in this thread"), "{reason}");

    // Another thread: the person discards the draft (or a mail client saves the edit as a new
    // file and deletes ours, as Maildir clients do).
    let other = escalated(11, "bob@example.com", None);
    drafted(h.send_one(&other).await.expect("drafted"));
    std::fs::remove_file(draft_file(&dir.path, 11)).expect("discard");
    let reason = drafted(h.send_one(&follow_up(12, &other)).await.expect("drafted"));
    assert!(reason.contains("a person of the mailbox sent or discarded the draft"), "{reason}");

    // A thread whose draft nobody touched, and mail in no thread at all, are answered.
    let third = escalated(21, "carol@example.com", None);
    drafted(h.send_one(&third).await.expect("drafted"));
    assert!(matches!(h.send_one(&follow_up(22, &third)).await.expect("sent"), Outcome::Sent(_)));
    let mut unthreaded = reply(31, "dave@example.com");
    (unthreaded.in_reply_to, unthreaded.references, unthreaded.thread_id) = (None, Vec::new(), None);
    assert!(matches!(h.send_one(&unthreaded).await.expect("sent"), Outcome::Sent(_)));
    assert_eq!(person_replies(&pool).await.len(), 2);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_gmail_draft_a_person_edited_or_sent_takes_the_thread() {
    let (db, p) = (TestDb::create().await, prefix());
    let pool = pool(&db).await;
    let fake = FakeGmail::start().await;
    for n in [1, 11] {
        original(&fake, n);
    }
    let h = handler(pool.clone(), sink(&fake, REFRESH_TOKEN), settings(&p)).await;

    // Escalated: a Gmail draft in the customer's thread.
    let first = escalated(1, "anna@example.com", Some("18c2f00001"));
    let Outcome::Drafted { id: draft, .. } = h.send_one(&first).await.expect("drafted") else { panic!("draft") };
    // Untouched, it does not stop the answer to a follow-up in the thread (found by thread id
    // here: Gmail's follow-up may carry no References at all).
    let mut follow = follow_up(2, &first);
    (follow.in_reply_to, follow.references) = (None, Vec::new());
    assert!(matches!(h.send_one(&follow).await.expect("sent"), Outcome::Sent(_)));

    // A person edits it in Gmail: the draft keeps its id, its message is a new one.
    let (_, message) = fake.drafts().into_iter().find(|(id, _)| *id == draft).expect("the draft");
    let raw = String::from_utf8(fake.message(&message).expect("draft message").raw).expect("utf-8");
    assert!(fake.edit_draft(&draft, raw.replace("hold the pairing button", "please call us").as_bytes()));
    let reason = drafted(h.send_one(&follow_up(3, &first)).await.expect("drafted"));
    assert!(reason.contains("a person of the mailbox edited the draft"), "{reason}");
    let drafts_read = fake.requests().into_iter().filter(|r| r.path.ends_with(&format!("/drafts/{draft}"))).count();
    assert_eq!(drafts_read, 2, "read back once per decision, until found taken up");
    drafted(h.send_one(&follow_up(4, &first)).await.expect("drafted"));
    let drafts_read_after =
        fake.requests().into_iter().filter(|r| r.path.ends_with(&format!("/drafts/{draft}"))).count();
    assert_eq!(drafts_read_after, 2, "a draft found taken up is not read again");

    // Another thread: a person sends our draft as it is (approves it).
    let other = escalated(11, "bob@example.com", Some("18c2f00011"));
    let Outcome::Drafted { id: draft, .. } = h.send_one(&other).await.expect("drafted") else { panic!("draft") };
    assert!(fake.send_draft(&draft).is_some());
    let reason = drafted(h.send_one(&follow_up(12, &other)).await.expect("drafted"));
    assert!(reason.contains("a person of the mailbox sent or discarded the draft"), "{reason}");
    cleanup(&mut connection().await, &p).await;
}

/// An email that starts its conversation (no `References`, and no conversation id but its own
/// `Message-ID`, which is what the poller gives mail without a provider thread) can have no
/// earlier draft in its thread, so no look-up is made: with a database that cannot be reached it
/// still gets its answer, where a follow-up needs the database.
#[tokio::test]
async fn an_email_that_starts_its_conversation_looks_up_no_drafts() {
    // Nothing listens on port 1: a look-up fails after the acquire timeout.
    let unreachable = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://nobody@127.0.0.1:1/none")
        .expect("lazy pool");
    let dir = TestDir::create();
    let outbox = MaildirSink::new(&dir.path).expect("outbox");
    let mut first = reply(1, "customer@example.com");
    first.references = Vec::new();
    first.thread_id = first.in_reply_to.clone();
    let found = sender::draft_review::reviewed_draft(&unreachable, &outbox, &first).await;
    assert!(matches!(found, Ok(None)), "{found:?}");
    first.thread_id = None;
    let found = sender::draft_review::reviewed_draft(&unreachable, &outbox, &first).await;
    assert!(matches!(found, Ok(None)), "{found:?}");
    // A follow-up, or mail in a provider's conversation, is looked up.
    let follow = follow_up(2, &reply(1, "customer@example.com"));
    assert!(sender::draft_review::reviewed_draft(&unreachable, &outbox, &follow).await.is_err());
    let mut gmail = reply(3, "customer@example.com");
    gmail.references = Vec::new();
    assert!(sender::draft_review::reviewed_draft(&unreachable, &outbox, &gmail).await.is_err());
}
