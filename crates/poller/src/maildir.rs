//! Maildir, as mail clients and MTAs use it: new messages appear in `new/`; a reader moves each
//! to `cur/` with an info suffix (`:2,S` = seen). The unique name before `:` is the mailbox id.

use std::path::{Path, PathBuf};

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
