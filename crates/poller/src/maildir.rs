//! Maildir, as mail clients and MTAs use it: new messages appear in `new/`; a reader moves each
//! to `cur/` with an info suffix (`:2,` + flags; `S` = seen, `R` = replied). The unique name
//! before `:` is the mailbox id. The poller moves what it handled to `cur/`, unread (`:2,`)
//! unless `mailbox.mark_read = "published"` (`:2,S`); outcomes are added later as keywords
//! (see `maildir_outcomes`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ledger::{Claim, Fetched, Ledger, Prepared};
use crate::{ScanReport, Source, SourceError};

/// A message waiting in `new/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The unique name (the mailbox's id for the message).
    pub id: String,
    /// Its path in `new/`.
    pub path: PathBuf,
}

/// Creates `tmp/`, `new/` and `cur/` if missing.
pub fn ensure(root: &Path) -> std::io::Result<()> {
    for dir in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(root.join(dir))?;
    }
    Ok(())
}

/// The messages in `new/`, oldest name first (Maildir names start with a timestamp).
pub fn new_messages(root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join("new"))? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let id = name.split(':').next().unwrap_or(&name).to_owned();
        out.push(Entry { id, path: entry.path() });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Moves a message to `cur/`, with the Seen flag if `seen`: out of `new/`, which is the poller's
/// cursor, but still unread for a person unless asked. A message already moved (by another
/// poller) is fine.
pub fn file_away(root: &Path, entry: &Entry, seen: bool) -> std::io::Result<()> {
    let flags = if seen { "S" } else { "" };
    let target = root.join("cur").join(format!("{}:2,{flags}", entry.id));
    match std::fs::rename(&entry.path, target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The Maildir as a [`Source`]: each pass takes everything in `new/` (in parts of
/// [`PASS_PART`], each published before the next is read), and a message leaves
/// `new/` (to `cur/`) only once the ledger says it is published or unparseable, so the
/// directory itself is the cursor.
#[derive(Debug, Clone)]
pub struct MaildirSource {
    root: PathBuf,
    /// The keyword letter of each outcome, read from (or added to) `dovecot-keywords` once.
    letters: Option<crate::maildir_outcomes::Letters>,
}

impl MaildirSource {
    /// The source for the Maildir at `root`, creating its directories if missing.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        ensure(root)?;
        Ok(Self { root: root.to_path_buf(), letters: None })
    }

    /// Claims, reads, prepares and publishes one part of a pass's listing (see
    /// [`PASS_PART`]), adding to `report`; what is not published stays in `new/`.
    async fn sync_part(&self, ledger: &Ledger, listed: &[Entry], report: &mut ScanReport) -> Result<(), SourceError> {
        let seen = ledger.settings().mark_read.at_publish();
        let mut ready = Vec::new();
        let mut entries = HashMap::new();
        let ids: Vec<String> = listed.iter().map(|e| e.id.clone()).collect();
        let claims = ledger.claim_many(&ids).await?;
        let mut pairs = listed.iter().zip(claims);
        while let Some((entry, claim)) = pairs.next() {
            match claim {
                // Out of the sample: it stays in new/ for whoever reads the mailbox today.
                Claim::Busy | Claim::OutOfSample => report.skipped += 1,
                Claim::AlreadyPublished => file_away(&self.root, entry, seen)?,
                // Unread whatever mark_read says: a person must look at it.
                Claim::Unparseable => file_away(&self.root, entry, false)?,
                Claim::Publish(message_id) => {
                    let raw = match std::fs::read(&entry.path) {
                        Ok(raw) => raw,
                        // Another poller moved it after our listing.
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => {
                            ledger.release(&entry.id, &message_id).await?;
                            ledger.release_all(&ready).await?;
                            // Claimed together with this one: released too, so the next pass
                            // takes them at once rather than after the claim timeout.
                            for (rest, claim) in pairs.by_ref() {
                                if let Claim::Publish(rest_id) = claim {
                                    ledger.release(&rest.id, &rest_id).await?;
                                }
                            }
                            return Err(e.into());
                        }
                    };
                    let labels = vec!["INBOX".to_owned(), "UNREAD".to_owned()];
                    let fetched = Fetched { mailbox_id: entry.id.clone(), raw, thread_id: None, labels };
                    match ledger.prepare(fetched, message_id).await? {
                        Prepared::Ready(message) => {
                            ready.push(*message);
                            entries.insert(entry.id.clone(), entry);
                        }
                        Prepared::Unparseable => {
                            file_away(&self.root, entry, false)?;
                            report.unparseable += 1;
                        }
                        // Filed away as its published copy was.
                        Prepared::Duplicate { .. } => file_away(&self.root, entry, seen)?,
                        // Stays in new/ for the next pass.
                        Prepared::Released => report.skipped += 1,
                    }
                }
            }
        }
        let published = ledger.publish(ready).await?;
        for id in &published.mailbox_ids {
            if let Some(entry) = entries.get(id) {
                file_away(&self.root, entry, seen)?;
            }
        }
        report.published += published.mailbox_ids.len();
        match published.error {
            // What was not published stays in new/ for the next pass.
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// New messages a Maildir pass claims, prepares and publishes together, at most: 500 prepared
/// messages are a few megabytes, whatever the backlog (a pass that prepared all of `new/` before
/// publishing held 58 MB for the bench's 5,000, and would hold ten times that for 50,000).
pub const PASS_PART: usize = 500;

impl Source for MaildirSource {
    fn kind(&self) -> &'static str {
        "maildir"
    }

    async fn sync_once(&mut self, ledger: &Ledger) -> Result<ScanReport, SourceError> {
        let mut report = ScanReport::default();
        // A backlog (mail that piled up while the poller was down) goes through in parts, each
        // claimed, read, prepared and published before the next is read: the poller holds at
        // most one part's messages, and the first replies go out while the rest is still read.
        // Each part goes out most urgent first; the queue orders by priority across parts.
        for part in new_messages(&self.root)?.chunks(PASS_PART) {
            self.sync_part(ledger, part, &mut report).await?;
        }
        Ok(report)
    }

    /// The Maildir++ folder `.<mailbox.sent_folder>` (where a mail client saves sent mail).
    async fn sent_mail(
        &mut self,
        ledger: &Ledger,
    ) -> Result<Vec<mailroom_db::person_replies::SentMessage>, SourceError> {
        let folder = self.root.join(format!(".{}", ledger.settings().sent_folder.trim()));
        let mut files = Vec::new();
        for sub in ["cur", "new"] {
            match std::fs::read_dir(folder.join(sub)) {
                Ok(entries) => files.extend(entries.filter_map(Result::ok).map(|e| e.path())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        // Keyed by the unique part of the name (before the flags), which a move to cur/ keeps.
        let key = |path: &std::path::Path| {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            format!("maildir-sent:{}", name.split(':').next().unwrap_or_default())
        };
        let unknown = crate::person::unknown(ledger, files.iter().map(|p| key(p)).collect()).await?;
        let mut sent = Vec::new();
        for path in files.iter().filter(|p| unknown.contains(&key(p))) {
            match std::fs::read(path) {
                Ok(raw) => sent.push(crate::person::sent_message(key(path), &raw, None)),
                // Moved by a mail client since the listing: read next pass.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(sent)
    }

    async fn apply_outcomes(&mut self, ledger: &Ledger, changes: &[crate::Change]) -> Result<Vec<String>, SourceError> {
        let settings = ledger.settings();
        let letters = match self.letters.take() {
            Some(letters) => letters,
            None => crate::maildir_outcomes::Letters::ensure(&self.root, &settings.outcome_parent)?,
        };
        let done = crate::maildir_outcomes::apply(&self.root, &letters, settings.mark_read, changes);
        self.letters = Some(letters);
        Ok(done?)
    }
}
