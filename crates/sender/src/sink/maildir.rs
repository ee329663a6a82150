//! The offline sink: a standard Maildir outbox any mail client can open. Sent replies land in
//! `cur/` flagged seen (`:2,S`), drafts in the Maildir++ folder `.Drafts` flagged draft
//! (`:2,D`). Each file is written to `tmp/`, synced and renamed into place, so a reader or a
//! crash never sees half a message. The file name starts with a hash of the reply's
//! `Message-ID`, which is what [`Sink::find`] looks for after a crash.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::{Kind, Lookup, OutgoingReply, Sink, SinkError};

/// A Maildir outbox.
#[derive(Debug, Clone)]
pub struct MaildirSink {
    root: PathBuf,
}

fn io_error(path: &Path, source: std::io::Error) -> SinkError {
    SinkError::Io { path: path.display().to_string(), source }
}

/// `tmp`, `new` and `cur` under `dir`.
fn ensure_maildir(dir: &Path) -> Result<(), SinkError> {
    for sub in ["tmp", "new", "cur"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|e| io_error(&path, e))?;
    }
    Ok(())
}

/// The stable part of the file name for a reply.
fn key(message_id: &str) -> String {
    let digest = Sha256::digest(message_id.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

impl MaildirSink {
    /// A sink writing under `root` (created with its `.Drafts` folder when missing).
    pub fn new(root: &Path) -> Result<Self, SinkError> {
        ensure_maildir(root)?;
        ensure_maildir(&root.join(".Drafts"))?;
        Ok(Self { root: root.to_owned() })
    }

    /// The Maildir folder for `kind`.
    pub fn folder(&self, kind: Kind) -> PathBuf {
        match kind {
            Kind::Send => self.root.clone(),
            Kind::Draft => self.root.join(".Drafts"),
        }
    }

    fn write(&self, reply: &OutgoingReply, kind: Kind) -> Result<String, SinkError> {
        use std::io::Write as _;
        let folder = self.folder(kind);
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let unique = format!("{}.{secs}.mailroom", key(&reply.message_id));
        let flag = match kind {
            Kind::Send => "S",
            Kind::Draft => "D",
        };
        let tmp = folder.join("tmp").join(&unique);
        let mut file = std::fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        file.write_all(&reply.raw).and_then(|()| file.sync_all()).map_err(|e| io_error(&tmp, e))?;
        let name = format!("{unique}:2,{flag}");
        let target = folder.join("cur").join(&name);
        std::fs::rename(&tmp, &target).map_err(|e| io_error(&target, e))?;
        Ok(name)
    }

    fn lookup(&self, reply: &OutgoingReply, kind: Kind) -> Result<Lookup, SinkError> {
        let prefix = format!("{}.", key(&reply.message_id));
        let folder = self.folder(kind);
        // A mail client may have moved the file between new/ and cur/ or changed its flags.
        for sub in ["cur", "new"] {
            let dir = folder.join(sub);
            let entries = std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))?;
            for entry in entries {
                let name = entry.map_err(|e| io_error(&dir, e))?.file_name().to_string_lossy().into_owned();
                if name.starts_with(&prefix) {
                    return Ok(Lookup::Delivered(name));
                }
            }
        }
        Ok(Lookup::Absent)
    }
}

impl Sink for MaildirSink {
    fn name(&self) -> &'static str {
        "maildir"
    }

    async fn deliver(&self, reply: &OutgoingReply, kind: Kind) -> Result<String, SinkError> {
        let this = self.clone();
        let reply = reply.clone();
        tokio::task::spawn_blocking(move || this.write(&reply, kind))
            .await
            .map_err(|e| SinkError::Io { path: self.root.display().to_string(), source: std::io::Error::other(e) })?
    }

    async fn find(&self, reply: &OutgoingReply, kind: Kind) -> Result<Lookup, SinkError> {
        let this = self.clone();
        let reply = reply.clone();
        tokio::task::spawn_blocking(move || this.lookup(&reply, kind))
            .await
            .map_err(|e| SinkError::Io { path: self.root.display().to_string(), source: std::io::Error::other(e) })?
    }
}
