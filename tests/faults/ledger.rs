//! The ledger check: after a run, every fed email must have reached exactly one terminal state,
//! no reply may exist twice, and nothing may be left in any queue.
//!
//! A [`Snapshot`] gathers what the system holds once the workers have stopped — the database
//! rows of every stage, the files in the outbox, the dead letters (read off the queue) and the
//! depth of every queue of the vhost (management API, and the exact ready count by a passive
//! declare) — and [`check`] judges it without side effects, so the negative test can tamper
//! with a snapshot's sources and watch the check fail.
//!
//! Terminal states:
//! - **sent** — `replies.state = 'sent'` and exactly one file in the outbox (`cur/` or `new/`)
//!   whose name carries the key of the reply's `Message-ID` (the sender derives it from the
//!   email id, so a second delivery of the same reply has the same key, and — every delivery
//!   being a file of its own, even within one second — is a second file);
//! - **drafted** — `replies.state = 'drafted'` and exactly one file in `.Drafts`;
//! - **not support** — `classifications.is_support_inquiry = false`, and nothing downstream;
//! - **dead-lettered** — an envelope in `dead_letter_queue` naming the email (or, for mail the
//!   poller cannot parse, `mailbox_messages.state = 'unparseable'` with its reason and the
//!   poller's envelope under the ledger's message id), with an error type and message.
//!
//! Anything else is a violation: an email in no terminal state (lost or stuck — a `claimed`
//! row, an email still in `new/`), in two (say, answered *and* dead-lettered), a second reply
//! file, a reply or record for an email nobody sent, a message left ready or unacknowledged in
//! a work or retry delay queue, a dead-letter queue holding anything but the dead letters
//! accounted for, and — for the loop-safety rules — an automated email that got anything but
//! "not support".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use sender::sink::MaildirSink;
use sqlx::PgPool;

use crate::mailbox::{AGENT, Fed, Kind};

/// One terminal state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Terminal {
    /// Answered: one reply in the outbox.
    Sent,
    /// Drafted for a human: one draft in `.Drafts`.
    Drafted,
    /// Classified as not a support inquiry.
    NotSupport,
    /// Dead-lettered with a reason.
    DeadLettered,
}

/// A dead letter read off `dead_letter_queue`.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter {
    /// The envelope's `message_id` (for the poller's unparseable mail: the ledger's id).
    pub(crate) message_id: String,
    /// `original_message.email_id`, when the original was a pipeline message.
    pub(crate) email_id: Option<String>,
    /// `original_queue`.
    pub(crate) queue: String,
    /// `failure_info.error_type`.
    pub(crate) error_type: String,
    /// `failure_info.error_message`.
    pub(crate) error_message: String,
}

/// Everything the check looks at.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    /// `mailbox_messages`: id → (state, reason, message id).
    pub(crate) mailbox: HashMap<String, (String, Option<String>, String)>,
    /// `classifications`: id → (support?, category, provider).
    pub(crate) classifications: HashMap<String, (bool, String, String)>,
    /// `responses`: id → escalated?
    pub(crate) responses: HashMap<String, bool>,
    /// `replies`: id → state.
    pub(crate) replies: HashMap<String, String>,
    /// Sent reply files by the reply key in their names (of the reply's `Message-ID`).
    pub(crate) sent_files: HashMap<String, usize>,
    /// Draft files by reply key.
    pub(crate) draft_files: HashMap<String, usize>,
    /// Dead letters.
    pub(crate) dead_letters: Vec<DeadLetter>,
    /// Every queue of the vhost: name → (ready, unacknowledged).
    pub(crate) queues: BTreeMap<String, (u64, u64)>,
    /// Files still in the inbox's `new/`.
    pub(crate) inbox_new: usize,
}

/// What the check found.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Emails per terminal state.
    pub(crate) terminal: BTreeMap<Terminal, usize>,
    /// Dead letters per error type.
    pub(crate) dead_letters: BTreeMap<String, usize>,
    /// Classifications per provider.
    pub(crate) providers: BTreeMap<String, usize>,
    /// Everything wrong, one line each.
    pub(crate) violations: Vec<String>,
}

impl Report {
    /// A one-line summary.
    pub(crate) fn summary(&self) -> String {
        format!(
            "terminal {:?}; dead letters {:?}; classified by {:?}; {} violation(s)",
            self.terminal,
            self.dead_letters,
            self.providers,
            self.violations.len()
        )
    }

    /// Panics with the first violations when there is any.
    pub(crate) fn assert_clean(&self) {
        if !self.violations.is_empty() {
            let shown: Vec<&String> = self.violations.iter().take(25).collect();
            panic!(
                "ledger check failed: {} violation(s); first ones:\n  {}\n{}",
                self.violations.len(),
                shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
                self.summary()
            );
        }
    }
}

/// The key in the outbox file names of the reply to `email_id` ([`MaildirSink::reply_key`] of
/// the `Message-ID` that [`sender::reply_message_id`] derives from the answered email).
pub(crate) fn outbox_key(email_id: &str) -> String {
    MaildirSink::reply_key(&sender::reply_message_id(AGENT, email_id))
}

/// The files of a Maildir folder (`cur/` and `new/`) counted by the reply key in their names:
/// every delivery is a file, so a reply delivered twice counts two. A file whose name carries
/// no key is counted under [`NOT_A_REPLY`], which no fed email answers to.
pub(crate) fn files_by_key(folder: &Path) -> HashMap<String, usize> {
    let files = MaildirSink::deliveries(folder).unwrap_or_else(|e| panic!("read the outbox: {e}"));
    let mut out = HashMap::new();
    for file in files {
        *out.entry(file.key.unwrap_or_else(|| NOT_A_REPLY.to_owned())).or_default() += 1;
    }
    out
}

/// Where [`files_by_key`] counts files that are not the sender's.
const NOT_A_REPLY: &str = "(no reply key)";

/// Reads every dead letter of the vhost without taking it: each is fetched unacknowledged and
/// all are given back (in their order) when the channel closes, so `dead_letter_queue` keeps
/// them — a dead letter is a terminal state an operator acts on, not something to clean up.
/// `take`, when given, names one envelope (`message_id`) to acknowledge, i.e. remove.
pub(crate) async fn read_dead_letters(amqp_url: &str, take: Option<&str>) -> Vec<DeadLetter> {
    let conn = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    while let Some(m) =
        ch.basic_get("dead_letter_queue".into(), BasicGetOptions { no_ack: false }).await.expect("basic.get")
    {
        // The one decoder the operator's commands use (envelopes and broker dead letters alike).
        let info = pipeline_core::dead_letter::decode(&m.delivery.properties, &m.delivery.data, m.delivery.redelivered);
        let letter = DeadLetter {
            message_id: info.id,
            email_id: info.email_id,
            queue: info.original_queue.unwrap_or_default(),
            error_type: info.error_type,
            error_message: info.error_message,
        };
        if take == Some(letter.message_id.as_str()) {
            m.delivery.acker.ack(BasicAckOptions::default()).await.expect("ack");
        } else {
            out.push(letter);
        }
    }
    // Closing the channel returns everything not acknowledged to the queue.
    let _ = ch.close(200, "read".into()).await;
    let _ = conn.close(200, "read".into()).await;
    out
}

/// Depth of every queue of the vhost: the management API's ready and unacknowledged counts
/// (which the broker refreshes every few seconds), and the exact ready count of a passive
/// declare, whichever is higher.
pub(crate) async fn queue_depths(vhost: &str, amqp_url: &str) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let queues = mailroom_tests::mgmt().queues(vhost).await.expect("management API: queues");
    let conn = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await.expect("amqp");
    for q in queues {
        let ch = conn.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let exact = ch
            .queue_declare(q.name.as_str().into(), passive, FieldTable::default())
            .await
            .map(|ok| u64::from(ok.message_count()))
            .unwrap_or(0);
        let _ = ch.close(200, "ok".into()).await;
        out.insert(q.name.clone(), (q.messages_ready.max(exact), q.messages_unacknowledged));
    }
    let _ = conn.close(200, "ok".into()).await;
    out
}

impl Snapshot {
    /// Reads the database, the outbox and the inbox; `dead_letters` and `queues` are filled by
    /// the caller ([`read_dead_letters`], [`queue_depths`]).
    /// Only the scenario's mailbox ([`AGENT`]) is read; the pipeline's other mailbox is checked
    /// on its own (`Pipeline::finish`).
    pub(crate) async fn read(pool: &PgPool, inbox: &Path, outbox: &Path) -> Self {
        let mailbox: Vec<(String, String, Option<String>, String)> =
            sqlx::query_as("SELECT mailbox_id, state, reason, message_id FROM mailbox_messages WHERE agent_email = $1")
                .bind(AGENT)
                .fetch_all(pool)
                .await
                .expect("mailbox_messages");
        let classifications: Vec<(String, bool, String, String)> = sqlx::query_as(
            "SELECT email_id, is_support_inquiry, category, llm_provider FROM classifications WHERE agent_email = $1",
        )
        .bind(AGENT)
        .fetch_all(pool)
        .await
        .expect("classifications");
        let responses: Vec<(String, bool)> =
            sqlx::query_as("SELECT email_id, escalate FROM responses WHERE agent_email = $1")
                .bind(AGENT)
                .fetch_all(pool)
                .await
                .expect("responses");
        let replies: Vec<(String, String)> =
            sqlx::query_as("SELECT email_id, state FROM replies WHERE agent_email = $1")
                .bind(AGENT)
                .fetch_all(pool)
                .await
                .expect("replies");
        Self {
            mailbox: mailbox.into_iter().map(|(id, s, r, m)| (id, (s, r, m))).collect(),
            classifications: classifications.into_iter().map(|(id, s, c, p)| (id, (s, c, p))).collect(),
            responses: responses.into_iter().collect(),
            replies: replies.into_iter().collect(),
            sent_files: files_by_key(outbox),
            draft_files: files_by_key(&outbox.join(".Drafts")),
            dead_letters: Vec::new(),
            queues: BTreeMap::new(),
            inbox_new: std::fs::read_dir(inbox.join("new")).map(|d| d.count()).unwrap_or(0),
        }
    }
}

/// Judges a snapshot against what was fed.
pub(crate) fn check(fed: &[Fed], snap: &Snapshot) -> Report {
    let mut report = Report::default();
    let v = &mut report.violations;
    let ids: HashSet<&str> = fed.iter().map(|f| f.id.as_str()).collect();

    // Dead letters by the email they concern.
    let mut dead_by_email: HashMap<&str, Vec<&DeadLetter>> = HashMap::new();
    let by_ledger_id: HashMap<&str, &str> =
        snap.mailbox.iter().map(|(id, (_, _, message_id))| (message_id.as_str(), id.as_str())).collect();
    for d in &snap.dead_letters {
        *report.dead_letters.entry(d.error_type.clone()).or_default() += 1;
        let email = d.email_id.as_deref().or_else(|| by_ledger_id.get(d.message_id.as_str()).copied());
        match email {
            Some(id) if ids.contains(id) => dead_by_email.entry(id).or_default().push(d),
            _ => v.push(format!(
                "dead letter {} ({}: {}) from {} concerns no fed email",
                d.message_id, d.error_type, d.error_message, d.queue
            )),
        }
        if d.error_type.is_empty() || d.error_message.is_empty() {
            v.push(format!("dead letter {} has no reason", d.message_id));
        }
    }
    for (_, (_, _, provider)) in snap.classifications.iter().filter(|(id, _)| ids.contains(id.as_str())) {
        *report.providers.entry(provider.clone()).or_default() += 1;
    }

    let mut keys: HashMap<String, &str> = HashMap::with_capacity(fed.len());
    for email in fed {
        let id = email.id.as_str();
        let key = outbox_key(id);
        let mut states: Vec<Terminal> = Vec::new();
        let mut stuck: Option<String> = None;
        match snap.mailbox.get(id) {
            None if !email.via_poller => {
                v.push(format!("{id}: published directly without the history the sender checks"))
            }
            None => stuck = Some("never taken in by the poller".into()),
            // A directly published email's receipt, recorded by the test as the poller would
            // (`mailroom_tests::history`), since the sender refuses replies to mail nobody received.
            Some((_, _, message_id)) if !email.via_poller && message_id == "test-history" => {}
            Some(_) if !email.via_poller => v.push(format!("{id}: in the poller's ledger but never in the mailbox")),
            Some((state, reason, _)) if state == "unparseable" => {
                if reason.as_deref().is_none_or(str::is_empty) {
                    v.push(format!("{id}: unparseable without a reason"));
                }
                if dead_by_email.get(id).is_none_or(|d| !d.iter().any(|d| d.error_type == "UnparseableEmail")) {
                    v.push(format!("{id}: unparseable but its dead letter is missing"));
                }
            }
            Some((state, _, _)) if state == "published" => {}
            Some((state, _, _)) => stuck = Some(format!("mailbox_messages.state = {state:?}")),
        }
        // The poller publishes an unparseable message's dead letter before it records the
        // message (at least once: a database outage in between publishes it again), under the
        // ledger's message id; copies with one envelope id are one dead letter. A worker's dead
        // letters get a fresh id each, so a message dead-lettered twice still counts twice.
        let dead =
            dead_by_email.get(id).map_or(0, |d| d.iter().map(|d| d.message_id.as_str()).collect::<HashSet<_>>().len());
        states.extend(std::iter::repeat_n(Terminal::DeadLettered, dead));
        let classification = snap.classifications.get(id);
        match classification {
            Some((false, _, _)) => states.push(Terminal::NotSupport),
            Some((true, _, _)) => {}
            None if stuck.is_none() && dead == 0 => stuck = Some("published but never classified".into()),
            None => {}
        }
        let response = snap.responses.get(id);
        if response.is_some() && !classification.is_some_and(|c| c.0) {
            v.push(format!("{id}: a reply was drafted for an email not classified as support"));
        }
        if classification.is_some_and(|c| c.0) && response.is_none() && dead == 0 {
            stuck = Some("classified as support but no reply was ever drafted".into());
        }
        match snap.replies.get(id).map(String::as_str) {
            Some("sent") => states.push(Terminal::Sent),
            Some("drafted") => states.push(Terminal::Drafted),
            Some(other) => stuck = Some(format!("replies.state = {other:?}")),
            None if response.is_some() && dead == 0 => stuck = Some("a reply was drafted but never delivered".into()),
            None => {}
        }
        if snap.replies.contains_key(id) && response.is_none() {
            v.push(format!("{id}: the send log has a row but the generator never drafted a reply"));
        }
        let sent = snap.sent_files.get(&key).copied().unwrap_or(0);
        let drafts = snap.draft_files.get(&key).copied().unwrap_or(0);
        let want_sent = usize::from(states.contains(&Terminal::Sent));
        let want_drafts = usize::from(states.contains(&Terminal::Drafted));
        if sent != want_sent {
            v.push(format!("{id}: {sent} sent reply file(s) in the outbox, expected {want_sent}"));
        }
        if drafts != want_drafts {
            v.push(format!("{id}: {drafts} draft file(s) in the outbox, expected {want_drafts}"));
        }
        match (states.len(), stuck) {
            (1, None) => {}
            (0, None) => v.push(format!("{id}: lost: no terminal state")),
            (0, Some(why)) => v.push(format!("{id}: stuck: {why}")),
            (_, Some(why)) => v.push(format!("{id}: terminal states {states:?} but also stuck: {why}")),
            (_, None) => v.push(format!("{id}: {} terminal states {states:?}, expected exactly one", states.len())),
        }
        // The loop-safety rules and the poller's own judgement are part of the contract.
        if email.kind.is_automated() && states != [Terminal::NotSupport] {
            v.push(format!("{id}: automated mail ({:?}) must be classified not-support, got {states:?}", email.kind));
        }
        if email.kind == Kind::Malformed && states != [Terminal::DeadLettered] {
            v.push(format!("{id}: malformed mail must be dead-lettered by the poller, got {states:?}"));
        }
        if let [one] = states.as_slice() {
            *report.terminal.entry(one.clone()).or_default() += 1;
        }
        keys.insert(key, id);
    }

    // Nothing that was never fed.
    for (table, rows) in [
        ("mailbox_messages", snap.mailbox.keys().collect::<Vec<_>>()),
        ("classifications", snap.classifications.keys().collect()),
        ("responses", snap.responses.keys().collect()),
        ("replies", snap.replies.keys().collect()),
    ] {
        for id in rows.into_iter().filter(|id| !ids.contains(id.as_str())) {
            v.push(format!("{table} has a row for {id}, which was never fed"));
        }
    }
    for (folder, files) in [("outbox", &snap.sent_files), ("outbox/.Drafts", &snap.draft_files)] {
        for (key, n) in files.iter().filter(|(k, _)| !keys.contains_key(*k)) {
            v.push(format!("{folder}: {n} file(s) with key {key} answer no fed email"));
        }
    }
    if snap.inbox_new > 0 {
        v.push(format!("{} message(s) still in the inbox's new/", snap.inbox_new));
    }
    if snap.queues.is_empty() {
        v.push("no queue depths were read".into());
    }
    // Work and retry queues empty; the dead-letter queue holds exactly the dead letters read.
    for (queue, (ready, unacked)) in &snap.queues {
        let expected = if queue == "dead_letter_queue" { snap.dead_letters.len() as u64 } else { 0 };
        if *ready != expected || *unacked > 0 {
            v.push(format!(
                "queue {queue}: {ready} ready, {unacked} unacknowledged at the end (expected {expected} ready)"
            ));
        }
    }
    report
}
