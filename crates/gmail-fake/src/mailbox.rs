//! The fake's mailbox: messages with Gmail's string ids, labels (system and user), drafts, the
//! `messageAdded` history with a history id that grows in uneven steps on every change, and a
//! subset of Gmail's search language — enough for the queries the project sends
//! (`is:unread in:inbox`, `rfc822msgid:<id> in:sent`, `label:`, free words).

/// The history id of a new fake mailbox: above 2^53, so a client that parsed history ids as
/// JSON numbers (f64) would lose digits.
pub const FIRST_HISTORY_ID: u64 = 9_007_199_254_741_000;

/// Gmail's system labels.
const SYSTEM_LABELS: [&str; 14] = [
    "INBOX",
    "UNREAD",
    "SENT",
    "DRAFT",
    "SPAM",
    "TRASH",
    "IMPORTANT",
    "STARRED",
    "CHAT",
    "CATEGORY_PERSONAL",
    "CATEGORY_SOCIAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_UPDATES",
    "CATEGORY_FORUMS",
];

/// A message in the fake mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMessage {
    /// Gmail's id (hex digits).
    pub id: String,
    /// Its thread's id.
    pub thread_id: String,
    /// Label ids.
    pub label_ids: Vec<String>,
    /// The RFC 822 bytes.
    pub raw: Vec<u8>,
    /// `internalDate`, in ms since the epoch.
    pub internal_date_ms: i64,
    /// The history id of its last change.
    pub history_id: u64,
    /// Whether `format=raw` serves it base64url with `=` padding (Gmail's own answers vary).
    pub padded: bool,
}

/// A message to put in the mailbox: received mail, or anything else a test needs there.
#[derive(Debug, Clone)]
pub struct NewMessage {
    raw: Vec<u8>,
    labels: Vec<String>,
    id: Option<String>,
    thread_id: Option<String>,
    padded: bool,
}

impl NewMessage {
    /// `raw` with these label ids; a new id and thread, served padded.
    pub fn new(raw: impl Into<Vec<u8>>, labels: &[&str]) -> Self {
        Self {
            raw: raw.into(),
            labels: labels.iter().map(|label| (*label).to_owned()).collect(),
            id: None,
            thread_id: None,
            padded: true,
        }
    }

    /// Uses this id (hex digits, as Gmail's).
    pub fn id(mut self, id: &str) -> Self {
        self.id = Some(id.to_owned());
        self
    }

    /// Files it in this thread.
    pub fn thread(mut self, thread_id: &str) -> Self {
        self.thread_id = Some(thread_id.to_owned());
        self
    }

    /// Serves its `raw` without base64 padding.
    pub fn unpadded(mut self) -> Self {
        self.padded = false;
        self
    }

    /// Serves its `raw` with or without base64 padding.
    pub fn padded(mut self, padded: bool) -> Self {
        self.padded = padded;
        self
    }
}

/// A label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeLabel {
    /// `INBOX`, `Label_41`, …
    pub id: String,
    /// Display name.
    pub name: String,
    /// `system` or `user`.
    pub kind: &'static str,
}

/// A `messageAdded` history record.
#[derive(Debug, Clone)]
pub(crate) struct Added {
    pub(crate) history_id: u64,
    pub(crate) message_id: String,
    /// The labels the message had when added.
    pub(crate) labels: Vec<String>,
}

/// Everything in the mailbox.
#[derive(Debug)]
pub(crate) struct Mailbox {
    /// In arrival order; listings are newest first.
    pub(crate) messages: Vec<FakeMessage>,
    pub(crate) added: Vec<Added>,
    pub(crate) history_id: u64,
    /// Cursors older than this get 404, as after Gmail dropped old history.
    pub(crate) oldest_history_id: u64,
    pub(crate) labels: Vec<FakeLabel>,
    /// (draft id, message id).
    pub(crate) drafts: Vec<(String, String)>,
    drafts_made: u64,
    next_id: u64,
    changes: u64,
}

impl Mailbox {
    pub(crate) fn new() -> Self {
        let labels = SYSTEM_LABELS
            .into_iter()
            .map(|name| FakeLabel { id: name.to_owned(), name: name.to_owned(), kind: "system" })
            .collect();
        Self {
            messages: Vec::new(),
            added: Vec::new(),
            history_id: FIRST_HISTORY_ID,
            oldest_history_id: FIRST_HISTORY_ID,
            labels,
            drafts: Vec::new(),
            drafts_made: 0,
            next_id: 0x18f3_c2a1_b4d5_0000,
            changes: 0,
        }
    }

    /// A change happened: the history id grows, by uneven steps as Gmail's does.
    pub(crate) fn bump(&mut self) -> u64 {
        self.changes += 1;
        self.history_id += 1 + self.changes % 5;
        self.history_id
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{:x}", self.next_id)
    }

    pub(crate) fn add(&mut self, new: NewMessage) -> FakeMessage {
        let id = new.id.unwrap_or_else(|| self.new_id());
        let history_id = self.bump();
        let count = i64::try_from(self.messages.len()).unwrap_or(i64::MAX);
        let message = FakeMessage {
            thread_id: new.thread_id.unwrap_or_else(|| id.clone()),
            id: id.clone(),
            label_ids: new.labels.clone(),
            raw: new.raw,
            internal_date_ms: 1_733_500_800_000 + count * 1000,
            history_id,
            padded: new.padded,
        };
        self.messages.push(message.clone());
        self.added.push(Added { history_id, message_id: id, labels: new.labels });
        message
    }

    /// Another `messageAdded` record for a message already there (Gmail's history repeats
    /// messages).
    pub(crate) fn readd(&mut self, id: &str) -> bool {
        let Some(labels) = self.find(id).map(|message| message.label_ids.clone()) else {
            return false;
        };
        let history_id = self.bump();
        self.added.push(Added { history_id, message_id: id.to_owned(), labels });
        true
    }

    /// Makes message `message_id` a draft; returns the draft's id (`r-` and digits, as Gmail's).
    pub(crate) fn new_draft(&mut self, message_id: &str) -> String {
        self.drafts_made += 1;
        let id = format!("r-{}", 5_823_012_345_678_901_234_u64 + self.drafts_made);
        self.drafts.push((id.clone(), message_id.to_owned()));
        id
    }

    /// A person edits draft `draft_id` in Gmail: its message is replaced by a new one (a new
    /// message id, the same thread and draft id) holding `raw`. False if there is no such draft.
    pub(crate) fn edit_draft(&mut self, draft_id: &str, raw: Vec<u8>) -> bool {
        let Some(index) = self.drafts.iter().position(|(id, _)| id == draft_id) else {
            return false;
        };
        let old = self.drafts[index].1.clone();
        let thread = self.find(&old).map(|m| m.thread_id.clone());
        self.messages.retain(|m| m.id != old);
        let mut new = NewMessage::new(raw, &["DRAFT"]);
        if let Some(thread) = thread {
            new = new.thread(&thread);
        }
        let message = self.add(new);
        self.drafts[index].1 = message.id;
        true
    }

    /// A person sends draft `draft_id` (`users.drafts.send`): the draft is gone and its message
    /// is a sent one. Returns the message id, `None` if there is no such draft.
    pub(crate) fn send_draft(&mut self, draft_id: &str) -> Option<String> {
        let index = self.drafts.iter().position(|(id, _)| id == draft_id)?;
        let (_, message_id) = self.drafts.remove(index);
        let history_id = self.bump();
        let message = self.find_mut(&message_id)?;
        message.label_ids.retain(|l| l != "DRAFT");
        message.label_ids.push("SENT".to_owned());
        message.history_id = history_id;
        Some(message_id)
    }

    pub(crate) fn find(&self, id: &str) -> Option<&FakeMessage> {
        self.messages.iter().find(|message| message.id == id)
    }

    pub(crate) fn find_mut(&mut self, id: &str) -> Option<&mut FakeMessage> {
        self.messages.iter_mut().find(|message| message.id == id)
    }

    /// A label's id by name, compared without regard to case as Gmail does.
    pub(crate) fn label_id(&self, name: &str) -> Option<String> {
        self.labels.iter().find(|label| label.name.eq_ignore_ascii_case(name)).map(|label| label.id.clone())
    }

    pub(crate) fn has_thread(&self, thread_id: &str) -> bool {
        self.messages.iter().any(|message| message.thread_id == thread_id)
    }

    /// The messages matching a Gmail search, newest first. Spam and trash only when asked
    /// for (`in:spam`, `in:trash`, `in:anywhere` or `includeSpamTrash`).
    pub(crate) fn search(&self, query: &str, include_spam_trash: bool) -> Vec<&FakeMessage> {
        let terms: Vec<&str> = query.split_whitespace().collect();
        let wants_hidden = include_spam_trash
            || terms
                .iter()
                .any(|term| matches!(term.to_ascii_lowercase().as_str(), "in:spam" | "in:trash" | "in:anywhere"));
        self.messages
            .iter()
            .rev()
            .filter(|message| {
                wants_hidden || !message.label_ids.iter().any(|label| label == "SPAM" || label == "TRASH")
            })
            .filter(|message| terms.iter().all(|term| self.matches(message, term)))
            .collect()
    }

    fn matches(&self, message: &FakeMessage, term: &str) -> bool {
        if let Some(negated) = term.strip_prefix('-').filter(|rest| !rest.is_empty()) {
            return !self.matches(message, negated);
        }
        let has = |label: &str| message.label_ids.iter().any(|l| l == label);
        let (operator, value) = term.split_once(':').unwrap_or(("", term));
        match (operator.to_ascii_lowercase().as_str(), value.to_ascii_lowercase().as_str()) {
            ("is", "unread") => has("UNREAD"),
            ("is", "read") => !has("UNREAD"),
            ("is", "starred") => has("STARRED"),
            ("is", "important") => has("IMPORTANT"),
            ("in", "inbox") => has("INBOX"),
            ("in", "sent") => has("SENT"),
            ("in", "drafts" | "draft") => has("DRAFT"),
            ("in", "spam") => has("SPAM"),
            ("in", "trash") => has("TRASH"),
            ("in", "anywhere") => true,
            ("label", _) => self.label_id(value).is_some_and(|id| has(&id)),
            ("rfc822msgid", _) => message_id_header(&message.raw)
                .is_some_and(|id| id == value.trim_start_matches('<').trim_end_matches('>')),
            // Free text: Gmail's full-text search, approximated by a substring of the message.
            _ => String::from_utf8_lossy(&message.raw).to_lowercase().contains(&term.to_lowercase()),
        }
    }
}

/// The `Message-ID` of a raw message, without angle brackets.
pub(crate) fn message_id_header(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    // The header ends at the first empty line.
    text.lines().take_while(|line| !line.is_empty()).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("message-id")
            .then(|| value.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}
