//! Outcomes as IMAP folders (`mailbox.imap_outcomes = "folders"`) against a real Dovecot (see
//! `support/dovecot.rs`): every outcome moves its message out of the polled folder into its own
//! folder, created and subscribed on first use, with the read state `mailbox.mark_read` decides —
//! with MOVE, and with the fallbacks of servers without it (COPY + `\Deleted` + UID EXPUNGE, or
//! + EXPUNGE without UIDPLUS).
//!
//! Needs `dovecot` (package dovecot-imapd) and root, like `imap.rs`.

use std::collections::BTreeMap;

use async_imap::types::Flag;
use futures_util::TryStreamExt;

#[path = "support/dovecot.rs"]
mod dovecot;
#[path = "support/outcomes.rs"]
mod outcomes;

use dovecot::*;
use outcomes::SCENARIO;
use pipeline_core::worker_env::WorkerEnv;

/// A parseable message without a `Message-ID`: keyed in the ledger by a digest of its bytes.
const NO_ID: &[u8] = b"From: Noa <noa@customer.example>\r\nTo: support@northwind.example\r\n\
    Subject: no-id\r\nDate: Wed, 26 Nov 2025 10:00:00 +0000\r\n\r\nNo Message-ID here.\r\n";

/// The subjects of `folder`'s messages with whether each is `\Seen` and `\Answered`, sorted.
async fn subjects(session: &mut Session, folder: &str) -> Vec<(String, bool, bool)> {
    session.select(folder).await.expect("SELECT");
    let fetches: Vec<_> =
        session.uid_fetch("1:*", "(UID FLAGS BODY.PEEK[])").await.expect("FETCH").try_collect().await.expect("FETCH");
    let mut out: Vec<(String, bool, bool)> = fetches
        .iter()
        .map(|f| {
            let raw = String::from_utf8_lossy(f.body().expect("body")).into_owned();
            let subject = raw.lines().find_map(|l| l.strip_prefix("Subject: ")).expect("a subject").to_owned();
            (subject, f.flags().any(|x| x == Flag::Seen), f.flags().any(|x| x == Flag::Answered))
        })
        .collect();
    out.sort();
    out
}

/// The outcome folders the server lists under `parent` (as on the wire), and which of them are
/// subscribed.
async fn outcome_folders(session: &mut Session, parent: &str) -> (Vec<String>, Vec<String>) {
    // The crate quotes LSUB's pattern, not LIST's.
    let pattern = format!("\"{parent}*\"");
    let names = |list: Vec<async_imap::types::Name>| {
        let mut names: Vec<String> = list.iter().map(|n| n.name().to_owned()).collect();
        names.sort();
        names
    };
    let listed = names(session.list(Some(""), Some(&pattern)).await.expect("LIST").try_collect().await.expect("LIST"));
    let subscribed = names(
        session.lsub(Some(""), Some(&format!("{parent}*"))).await.expect("LSUB").try_collect().await.expect("LSUB"),
    );
    (listed, subscribed)
}

/// The server's hierarchy delimiter.
async fn delimiter(session: &mut Session) -> String {
    let root: Vec<_> = session.list(Some(""), None).await.expect("LIST").try_collect().await.expect("LIST");
    root.iter().find_map(|n| n.delimiter().map(str::to_owned)).expect("a hierarchy delimiter")
}

/// The whole story on a Dovecot configured with `extra`, with `mailbox.outcome_parent = parent`,
/// whose name on the wire (modified UTF-7) is `wire`.
async fn outcomes_move_mail_into_folders(extra: &str, parent: &str, wire: &str) {
    let server = Dovecot::start(extra);
    let mut mua = client(&server).await;
    mua.create(FOLDER).await.expect("CREATE");
    for (name, _) in SCENARIO {
        append(&mut mua, &email("Cy <cy@customer.example>", name, &format!("{name}@customer.example")), None).await;
    }
    append(&mut mua, NO_ID, None).await;
    let env = WorkerEnv::new()
        .set("mailbox.mark_read", "answered")
        .set("mailbox.imap_outcomes", "folders")
        .set("mailbox.outcome_parent", parent);
    let mut h = Harness::start(&server, PASSWORD, env).await;
    let report = h.synced().await;
    assert_eq!((report.published, report.outcomes), (SCENARIO.len() + 1, 0));
    assert_eq!(h.drain().await.len(), SCENARIO.len() + 1);
    assert_eq!(outcome_folders(&mut mua, wire).await, (vec![], vec![]), "no folder before an outcome needs it");

    let pool = h.poller.ledger().pool().clone();
    outcomes::record_scenario_by_message_id(&pool, AGENT).await;
    let no_id = poller::imap_source::mailbox_key(NO_ID);
    assert!(no_id.starts_with("imap:sha256:"), "{no_id}");
    outcomes::classify(&pool, AGENT, &no_id, false).await;
    let report = h.synced().await;
    assert_eq!((report.published, report.outcomes), (0, 6));

    // Each outcome's folder, with the server's delimiter (Dovecot's Maildir++: ".").
    let d = delimiter(&mut mua).await;
    let folder = |name: &str| format!("{wire}{d}{name}");
    let expected: BTreeMap<String, Vec<(String, bool, bool)>> = [
        ("Answered", vec![("answered", true, true)]),
        ("Drafted", vec![("drafted", false, false)]),
        ("Failed", vec![("failed", false, false)]),
        ("Needs person", vec![("needs-person", false, false)]),
        ("Not support", vec![("no-id", false, false), ("not-support", false, false)]),
    ]
    .into_iter()
    .map(|(name, mail)| (folder(name), mail.into_iter().map(|(s, seen, ans)| (s.to_owned(), seen, ans)).collect()))
    .collect();
    for (name, mail) in &expected {
        assert_eq!(&subjects(&mut mua, name).await, mail, "{name}: only answered mail is seen");
    }
    let names: Vec<String> = expected.keys().cloned().collect();
    let (listed, subscribed) = outcome_folders(&mut mua, wire).await;
    assert!(names.iter().all(|n| listed.contains(n) && subscribed.contains(n)), "{listed:?} {subscribed:?}");
    assert_eq!(
        subjects(&mut mua, FOLDER).await,
        [("in-progress".to_owned(), false, false)],
        "the polled folder keeps only the message without an outcome"
    );
    for (name, expect) in SCENARIO {
        let id = outcomes::key_of(&pool, AGENT, &format!("{name}@customer.example")).await;
        assert_eq!(outcomes::applied(&pool, AGENT, &id).await.as_deref(), expect.stored(), "{name}");
    }
    assert_eq!(outcomes::applied(&pool, AGENT, &no_id).await.as_deref(), Some("not-support"));

    // The moves left gaps in the polled folder's UIDs: nothing is published again, the cursor
    // stays, and new mail is still found.
    let report = h.synced().await;
    assert_eq!((report.published, report.outcomes), (0, 0), "each outcome is applied once");
    assert!(h.drain().await.is_empty());
    assert_eq!(h.cursor().await.map(|c| c.0).as_deref(), Some("7"));
    append(&mut mua, &email("Eve <eve@customer.example>", "late", "late@customer.example"), None).await;
    assert_eq!(h.synced().await.published, 1);
    assert_eq!(ids(&h.drain().await), ["imap:late@customer.example"]);

    // The failed message is answered after all: it moves from Failed to Answered, read now.
    let failed = &outcomes::key_of(&pool, AGENT, "failed@customer.example").await;
    outcomes::classify(&pool, AGENT, failed, true).await;
    outcomes::reply(&pool, AGENT, failed, "sent").await;
    assert_eq!(h.synced().await.outcomes, 1);
    assert!(subjects(&mut mua, &folder("Failed")).await.is_empty());
    let answered = [("answered".to_owned(), true, true), ("failed".to_owned(), true, true)];
    assert_eq!(subjects(&mut mua, &folder("Answered")).await, answered);

    // An outcome applied again (its record lost) finds nothing to move: no error, no copy.
    sqlx::query("UPDATE mailbox_messages SET outcome = NULL WHERE rfc_message_id = 'answered@customer.example'")
        .execute(&pool)
        .await
        .expect("forget the applied outcome");
    assert_eq!(h.synced().await.outcomes, 1);
    assert_eq!(subjects(&mut mua, &folder("Answered")).await, answered);
    assert_eq!(
        subjects(&mut mua, FOLDER).await.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(),
        ["in-progress", "late"]
    );
    let _ = mua.logout().await;
    h.finish().await;
}

#[tokio::test]
async fn outcomes_move_mail_into_created_folders_with_move() {
    outcomes_move_mail_into_folders("", "Mailroom", "Mailroom").await;
}

#[tokio::test]
async fn without_move_outcomes_copy_and_uid_expunge_into_folders_with_a_non_ascii_parent() {
    let extra = "protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+ UIDPLUS\n}";
    // A parent that is not ASCII goes over the wire in modified UTF-7.
    outcomes_move_mail_into_folders(extra, "Équipe support", "&AMk-quipe support").await;
}

#[tokio::test]
async fn without_move_or_uidplus_outcomes_copy_and_expunge() {
    outcomes_move_mail_into_folders(
        "protocol imap {\n  imap_capability = IMAP4rev1 LITERAL+\n}",
        "Mailroom",
        "Mailroom",
    )
    .await;
}
