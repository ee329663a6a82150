//! Maildir, as mail clients and MTAs use it: new messages appear in `new/`; a reader moves each
//! to `cur/` with an info suffix (`:2,S` = seen). The unique name before `:` is the mailbox id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::ledger::{Claim, Fetched, Ledger};
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

/// Moves a message to `cur/` with the Seen flag. A message already moved (by another poller) is
/// fine.
pub fn mark_seen(root: &Path, entry: &Entry) -> std::io::Result<()> {
    let target = root.join("cur").join(format!("{}:2,S", entry.id));
    match std::fs::rename(&entry.path, target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The Maildir as a [`Source`]: each pass takes everything in `new/`, and a message leaves
/// `new/` (to `cur/`, seen) only once the ledger says it is published or unparseable, so the
/// directory itself is the cursor.
#[derive(Debug, Clone)]
pub struct MaildirSource {
    root: PathBuf,
}

impl MaildirSource {
    /// The source for the Maildir at `root`, creating its directories if missing.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        ensure(root)?;
        Ok(Self { root: root.to_path_buf() })
    }
}

impl Source for MaildirSource {
    fn kind(&self) -> &'static str {
        "maildir"
    }

    async fn sync_once(&mut self, ledger: &Ledger) -> Result<ScanReport, SourceError> {
        let mut report = ScanReport::default();
        let mut ready = Vec::new();
        let mut entries = HashMap::new();
        let listed = new_messages(&self.root)?;
        let ids: Vec<String> = listed.iter().map(|e| e.id.clone()).collect();
        let claims = ledger.claim_many(&ids).await?;
        let mut pairs = listed.into_iter().zip(claims);
        while let Some((entry, claim)) = pairs.next() {
            match claim {
                // Out of the sample: it stays in new/ for whoever reads the mailbox today.
                Claim::Busy | Claim::OutOfSample => report.skipped += 1,
                Claim::AlreadyPublished | Claim::Unparseable => mark_seen(&self.root, &entry)?,
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
                        Some(message) => {
                            ready.push(message);
                            entries.insert(entry.id.clone(), entry);
                        }
                        None => {
                            mark_seen(&self.root, &entry)?;
                            report.unparseable += 1;
                        }
                    }
                }
            }
        }
        let published = ledger.publish(ready).await?;
        for id in &published.mailbox_ids {
            if let Some(entry) = entries.get(id) {
                mark_seen(&self.root, entry)?;
            }
        }
        report.published += published.mailbox_ids.len();
        match published.error {
            // What was not published stays in new/ for the next pass.
            Some(e) => Err(e.into()),
            None => Ok(report),
        }
    }
}
