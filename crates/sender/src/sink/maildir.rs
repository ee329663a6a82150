//! The offline sink: a standard Maildir outbox any mail client can open. Sent replies land in
//! `cur/` flagged seen (`:2,S`), drafts in the Maildir++ folder `.Drafts` flagged draft
//! (`:2,D`). Each file is written to `tmp/`, synced and renamed into place, so a reader or a
//! crash never sees half a message.
//!
//! Every delivery is a file of its own, named the Maildir way (`time.unique.host`):
//! `<seconds>.M<microseconds>P<pid>Q<count>_<key>.<host>`, where `<key>` is a hash of the
//! reply's `Message-ID` ([`MaildirSink::reply_key`]). The key is what [`Sink::find`] looks for
//! after a crash, and what [`MaildirSink::deliveries`] reads back, so a second delivery of one
//! reply — even within the same second, from the same process — is a second file, never an
//! overwrite of the first.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use super::{DraftCopy, Kind, Lookup, OutgoingReply, Sink, SinkError};

/// Deliveries written by this process: the `Q` part of the unique name.
static WRITTEN: AtomicU64 = AtomicU64::new(0);

/// A Maildir outbox.
#[derive(Debug, Clone)]
pub struct MaildirSink {
    root: PathBuf,
    /// This host's name as the Maildir spec wants it in file names (`/` and `:` escaped).
    host: String,
}

/// One file in a Maildir folder: a delivery, when its name carries a reply's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The reply it delivers: the key in its name ([`MaildirSink::reply_key`]); `None` for a
    /// file this sink did not name (a mail client's own message, say).
    pub key: Option<String>,
    /// The file name (what the send log records).
    pub name: String,
    /// The file, in `cur/` or `new/`.
    pub path: PathBuf,
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

/// Whether `s` is a reply key: 32 lowercase hex digits.
fn is_key(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The host part of a file name: the host name with `/` and `:` escaped (Maildir spec).
fn host_part() -> String {
    let host = hostname::get().ok().and_then(|h| h.into_string().ok()).filter(|h| !h.is_empty());
    host.unwrap_or_else(|| "localhost".to_owned()).replace('/', "\\057").replace(':', "\\072")
}

impl MaildirSink {
    /// A sink writing under `root` (created with its `.Drafts` folder when missing).
    pub fn new(root: &Path) -> Result<Self, SinkError> {
        ensure_maildir(root)?;
        ensure_maildir(&root.join(".Drafts"))?;
        Ok(Self { root: root.to_owned(), host: host_part() })
    }

    /// The Maildir folder for `kind`.
    pub fn folder(&self, kind: Kind) -> PathBuf {
        match kind {
            Kind::Send => self.root.clone(),
            Kind::Draft => self.root.join(".Drafts"),
        }
    }

    /// The key of a reply in the names of its delivery files: the first 16 bytes of SHA-256 of
    /// its `Message-ID`, in hex.
    pub fn reply_key(message_id: &str) -> String {
        let digest = Sha256::digest(message_id.as_bytes());
        mail_mime::hex(&digest[..16])
    }

    /// The reply key a delivery file's name carries, if it is one of ours: in the unique part
    /// (`…Q<count>_<key>`), or — for files written before names were unique — at the start
    /// (`<key>.<seconds>.mailroom`).
    pub fn key_in_name(name: &str) -> Option<&str> {
        let mut parts = name.split('.');
        let first = parts.next()?;
        if is_key(first) {
            return Some(first);
        }
        let (_, key) = parts.next()?.rsplit_once('_')?;
        is_key(key).then_some(key)
    }

    /// Every file of a Maildir folder (`cur/` and `new/`, where a mail client may have moved
    /// it), one entry per file: two deliveries of one reply are two entries.
    pub fn deliveries(folder: &Path) -> Result<Vec<Delivery>, SinkError> {
        let mut out = Vec::new();
        for sub in ["cur", "new"] {
            let dir = folder.join(sub);
            for entry in std::fs::read_dir(&dir).map_err(|e| io_error(&dir, e))? {
                let entry = entry.map_err(|e| io_error(&dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                let key = Self::key_in_name(&name).map(str::to_owned);
                out.push(Delivery { key, path: entry.path(), name });
            }
        }
        Ok(out)
    }

    fn write(&self, reply: &OutgoingReply, kind: Kind) -> Result<String, SinkError> {
        use std::io::Write as _;
        let folder = self.folder(kind);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let unique = format!(
            "{}.M{}P{}Q{}_{}.{}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            WRITTEN.fetch_add(1, Ordering::Relaxed),
            Self::reply_key(&reply.message_id),
            self.host
        );
        let flag = match kind {
            Kind::Send => "S",
            Kind::Draft => "D",
        };
        let tmp = folder.join("tmp").join(&unique);
        // Never another delivery's file: the name is unique, and `create_new` makes sure.
        let mut file =
            std::fs::File::options().write(true).create_new(true).open(&tmp).map_err(|e| io_error(&tmp, e))?;
        file.write_all(&reply.raw).and_then(|()| file.sync_all()).map_err(|e| io_error(&tmp, e))?;
        let name = format!("{unique}:2,{flag}");
        let target = folder.join("cur").join(&name);
        std::fs::rename(&tmp, &target).map_err(|e| io_error(&target, e))?;
        Ok(name)
    }

    fn lookup(&self, reply: &OutgoingReply, kind: Kind) -> Result<Lookup, SinkError> {
        let key = Self::reply_key(&reply.message_id);
        let found = Self::deliveries(&self.folder(kind))?.into_iter().find(|d| d.key.as_deref() == Some(key.as_str()));
        Ok(found.map_or(Lookup::Absent, |d| Lookup::Delivered(d.name)))
    }

    /// The draft file of the reply with this `Message-ID`, found by the key in its name (a mail
    /// client may have moved it to `cur/` and added flags).
    fn read_draft(&self, reply_message_id: &str) -> Result<DraftCopy, SinkError> {
        let key = Self::reply_key(reply_message_id);
        let Some(found) =
            Self::deliveries(&self.folder(Kind::Draft))?.into_iter().find(|d| d.key.as_deref() == Some(key.as_str()))
        else {
            return Ok(DraftCopy::Gone);
        };
        match std::fs::read(&found.path) {
            Ok(raw) => Ok(DraftCopy::Present(raw)),
            // Moved or deleted since the listing: a person is at it right now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DraftCopy::Gone),
            Err(e) => Err(io_error(&found.path, e)),
        }
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

    /// A mail client that edits a draft saves it as a new file (without our key in its name)
    /// and deletes ours, so an edited draft is usually [`DraftCopy::Gone`] here; one edited in
    /// place is [`DraftCopy::Present`] with another content.
    async fn draft(&self, reply_message_id: &str, _provider_id: Option<&str>) -> Result<DraftCopy, SinkError> {
        let this = self.clone();
        let id = reply_message_id.to_owned();
        tokio::task::spawn_blocking(move || this.read_draft(&id))
            .await
            .map_err(|e| SinkError::Io { path: self.root.display().to_string(), source: std::io::Error::other(e) })?
    }
}
