//! An IMAP folder as a [`Source`] (`mailbox.kind = "imap"`), over implicit TLS (IMAPS, port
//! 993) with rustls.
//!
//! Positions are UIDs: the cursor holds the last UID handled and the folder's UIDVALIDITY.
//! With a cursor of the current UIDVALIDITY a pass takes the messages with a higher UID;
//! without one (the first pass), or when the server renumbered the folder (a new
//! UIDVALIDITY), a pass is a full sync of what the configured search finds (`UNSEEN` by
//! default) and the cursor then moves to the top of the folder. Messages are fetched with
//! `BODY.PEEK[]` (which leaves them unread) and published through the ledger; they get `\Seen`
//! then only with `mailbox.mark_read = "published"`. Outcomes are keywords or folders (see
//! `imap_outcomes`, `imap_folders`).
//!
//! Because UIDs mean nothing across UIDVALIDITY changes, the ledger key is the message's
//! `Message-ID` (`imap:<id>`), or the SHA-256 of the raw message when it has none: a resync
//! after renumbering finds everything already published in the ledger and only marks it seen.
//! Two copies of one message (same `Message-ID`) are one message to answer.
//!
//! With `idle = true` and a server that offers IDLE, the poller waits between passes in IDLE
//! and runs a pass as soon as the server reports a change; without IDLE, or when IDLE fails,
//! it polls every `poll_interval_ms`. Any error drops the session; the next pass reconnects.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_imap::extensions::idle::IdleResponse;
use async_imap::types::{Fetch, Flag};
use futures_util::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tracing::{debug, info, warn};

use crate::cursor::{self, Cursor, CursorKey};
use crate::imap_folders::MoveSupport;
use crate::ledger::{Claim, Fetched, Ledger, Prepared};
use crate::{ScanReport, Source, SourceError};

pub(crate) type Session = async_imap::Session<TlsStream<TcpStream>>;

/// `[mailbox.imap]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct ImapSettings {
    /// Server host name (checked against its certificate).
    #[serde(default)]
    pub host: String,
    /// IMAPS port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Login name.
    #[serde(default)]
    pub username: String,
    /// Password.
    #[serde(default = "empty_secret")]
    pub password: SecretString,
    /// The folder to read.
    #[serde(default = "default_folder")]
    pub folder: String,
    /// PEM file of the CAs to trust instead of the public web roots (a private CA, or a
    /// self-signed server certificate); empty for the public roots.
    #[serde(default)]
    pub tls_ca_file: String,
    /// `UID SEARCH` criteria of a full sync.
    #[serde(default = "default_full_sync_search")]
    pub full_sync_search: String,
    /// Wait for new mail with IDLE when the server offers it.
    #[serde(default)]
    pub idle: bool,
    /// Longest IDLE before a pass runs anyway (servers drop idle clients after 30 minutes).
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// Messages fetched per `UID FETCH`.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Connect and per-command timeout in seconds; 0 means none.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_port() -> u16 {
    993
}

fn empty_secret() -> SecretString {
    SecretString::from("")
}

fn default_folder() -> String {
    "INBOX".to_owned()
}

fn default_full_sync_search() -> String {
    "UNSEEN".to_owned()
}

fn default_idle_timeout_secs() -> u64 {
    25 * 60
}

fn default_batch_size() -> u32 {
    50
}

fn default_timeout_secs() -> u64 {
    60
}

impl ImapSettings {
    /// Settings with the defaults for everything but the server and the login.
    pub fn new(host: impl Into<String>, port: u16, username: impl Into<String>, password: SecretString) -> Self {
        Self {
            host: host.into(),
            port,
            username: username.into(),
            password,
            folder: default_folder(),
            tls_ca_file: String::new(),
            full_sync_search: default_full_sync_search(),
            idle: false,
            idle_timeout_secs: default_idle_timeout_secs(),
            batch_size: default_batch_size(),
            timeout_secs: default_timeout_secs(),
        }
    }

    fn validate(&self) -> Result<(), SourceError> {
        let missing = [
            ("host", self.host.trim().is_empty()),
            ("username", self.username.trim().is_empty()),
            ("password", self.password.expose_secret().is_empty()),
            ("folder", self.folder.trim().is_empty()),
            ("full_sync_search", self.full_sync_search.trim().is_empty()),
        ];
        match missing.iter().find(|(_, empty)| *empty) {
            Some((key, _)) => Err(SourceError::Settings(format!("mailbox.imap.{key} must be set for the imap source"))),
            None => Ok(()),
        }
    }

    fn timeout(&self) -> Duration {
        match self.timeout_secs {
            // "No timeout": a year is as good as forever and keeps the arithmetic finite.
            0 => Duration::from_secs(365 * 24 * 3600),
            secs => Duration::from_secs(secs),
        }
    }
}

/// The rustls client configuration: the CAs of `ca_file`, or the public web roots.
fn tls_config(ca_file: &str) -> Result<ClientConfig, SourceError> {
    let mut roots = RootCertStore::empty();
    if ca_file.trim().is_empty() {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        let bad = |e: &dyn Display| SourceError::Settings(format!("mailbox.imap.tls_ca_file {ca_file}: {e}"));
        for cert in CertificateDer::pem_file_iter(Path::new(ca_file.trim())).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        if roots.is_empty() {
            return Err(bad(&"holds no certificate"));
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Settings(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Runs an IMAP step with the command timeout, naming it in the error.
pub(crate) async fn timed<T, E: Display>(
    limit: Duration,
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, SourceError> {
    match tokio::time::timeout(limit, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(SourceError::Imap(format!("{what}: {e}"))),
        Err(_) => Err(SourceError::Imap(format!("{what}: no answer within {}s", limit.as_secs()))),
    }
}

/// The ledger key of a message: its `Message-ID`, which survives the server renumbering the
/// folder, with the first bytes of its [content digest](mail_mime::ParsedEmail::content_digest) after ` #`,
/// so that a sender reusing a `Message-ID` for a different email is not taken for a message
/// already handled; or a digest of the whole message when it has no `Message-ID` (or cannot be
/// parsed). Keys written before the digest was added (`imap:<id>`) are still understood.
pub fn mailbox_key(raw: &[u8]) -> String {
    let parsed = mail_mime::parse(raw).ok();
    match parsed.as_ref().and_then(|p| p.message_id.as_deref()).map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => {
            let digest = parsed.as_ref().expect("parsed, it has an id").content_digest();
            format!("imap:{id} #{}", mail_mime::hex(&digest[..8]))
        }
        None => format!("imap:sha256:{:x}", Sha256::digest(raw)),
    }
}

/// A UID set for a command: `1,5,9`.
pub(crate) fn uid_set(uids: &[u32]) -> String {
    uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// An IMAP folder as a [`Source`].
pub struct ImapSource {
    settings: ImapSettings,
    tls: TlsConnector,
    cursor_key: CursorKey,
    session: Option<Session>,
    can_idle: bool,
    moves: MoveSupport,
}

impl std::fmt::Debug for ImapSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSource")
            .field("settings", &self.settings)
            .field("connected", &self.session.is_some())
            .field("can_idle", &self.can_idle)
            .finish_non_exhaustive()
    }
}

impl ImapSource {
    /// A source for the settings' folder, read on behalf of `agent_email`. Reads the CA file;
    /// connects only on the first pass.
    pub fn new(agent_email: &str, settings: &ImapSettings) -> Result<Self, SourceError> {
        settings.validate()?;
        let tls = TlsConnector::from(Arc::new(tls_config(&settings.tls_ca_file)?));
        Ok(Self {
            settings: settings.clone(),
            tls,
            cursor_key: CursorKey::new(agent_email, "imap", settings.folder.trim()),
            session: None,
            can_idle: false,
            moves: MoveSupport::default(),
        })
    }

    /// Where the cursor is kept.
    pub fn cursor_key(&self) -> &CursorKey {
        &self.cursor_key
    }

    /// Whether the last session's server offered IDLE (and `idle` is on).
    pub fn idles(&self) -> bool {
        self.settings.idle && self.can_idle
    }

    /// Connects and logs in, selects the folder, then logs out (`mailroom doctor`).
    pub async fn check_login(&mut self) -> Result<String, SourceError> {
        let mut session = self.connect().await?;
        let limit = self.settings.timeout();
        let folder = self.settings.folder.trim().to_owned();
        let selected = timed(limit, &format!("SELECT {folder}"), session.select(&folder)).await;
        let _ = session.logout().await;
        let mailbox = selected?;
        Ok(format!(
            "logged in as {} at {}:{}; {folder} holds {} messages{}",
            self.settings.username.trim(),
            self.settings.host.trim(),
            self.settings.port,
            mailbox.exists,
            if self.can_idle { " (IDLE offered)" } else { "" }
        ))
    }

    /// TCP, TLS, greeting, login; notes whether the server can IDLE.
    async fn connect(&mut self) -> Result<Session, SourceError> {
        let limit = self.settings.timeout();
        let host = self.settings.host.trim();
        let address = format!("{host}:{}", self.settings.port);
        let tcp =
            timed(limit, &format!("connect to {address}"), TcpStream::connect((host, self.settings.port))).await?;
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| SourceError::Settings(format!("mailbox.imap.host {host:?}: {e}")))?;
        let tls = timed(limit, &format!("TLS handshake with {address}"), self.tls.connect(name, tcp)).await?;
        let mut client = async_imap::Client::new(tls);
        match timed(limit, "greeting", client.read_response()).await? {
            Some(_) => {}
            None => return Err(SourceError::Imap(format!("{address} closed the connection before its greeting"))),
        }
        let username = self.settings.username.trim();
        let login = client.login(username, self.settings.password.expose_secret());
        let mut session =
            timed(limit, &format!("login as {username}"), async { login.await.map_err(|(e, _)| e) }).await?;
        let capabilities = timed(limit, "CAPABILITY", session.capabilities()).await?;
        self.can_idle = capabilities.has_str("IDLE");
        self.moves = MoveSupport::of(&capabilities);
        if self.settings.idle && !self.can_idle {
            warn!(%address, "The IMAP server does not offer IDLE; polling instead.");
        }
        debug!(%address, username, "IMAP session open.");
        Ok(session)
    }

    /// One pass over the folder with an open session.
    async fn pass(&self, session: &mut Session, ledger: &Ledger) -> Result<ScanReport, SourceError> {
        let limit = self.settings.timeout();
        let folder = self.settings.folder.trim();
        let mailbox = timed(limit, &format!("SELECT {folder}"), session.select(folder)).await?;
        let validity = mailbox
            .uid_validity
            .ok_or_else(|| SourceError::Imap(format!("the server sent no UIDVALIDITY for {folder}")))?;
        let stored = cursor::load(ledger.pool(), &self.cursor_key).await?;
        let incremental_from = match &stored {
            Some(c) if c.validity == Some(i64::from(validity)) => {
                Some(c.position.parse::<u64>().ok().and_then(|p| u32::try_from(p).ok()).unwrap_or(0))
            }
            Some(c) => {
                warn!(
                    folder,
                    old = c.validity.unwrap_or_default(),
                    new = validity,
                    "UIDVALIDITY changed; resyncing the folder (the ledger keeps published mail from going out again)."
                );
                None
            }
            None => None,
        };
        let mut uids: Vec<u32> = match incremental_from {
            Some(last) => {
                let query = format!("UID {}:*", u64::from(last) + 1);
                let found = timed(limit, "UID SEARCH", session.uid_search(&query)).await?;
                // `n:*` always matches the highest UID, even when it is below n.
                found.into_iter().filter(|uid| *uid > last).collect()
            }
            None => {
                let query = self.settings.full_sync_search.trim();
                timed(limit, "UID SEARCH", session.uid_search(query)).await?.into_iter().collect()
            }
        };
        uids.sort_unstable();

        let mut report = ScanReport::default();
        // The highest UID up to which every message is handled, and whether another poller
        // holds one (after which the cursor must not move).
        let mut handled_to = incremental_from.unwrap_or(0);
        let mut blocked = false;
        let chunk = usize::try_from(self.settings.batch_size.clamp(1, 1000)).unwrap_or(50);
        for batch in uids.chunks(chunk) {
            let done = self.handle(session, ledger, batch, &mut report).await?;
            for uid in batch {
                if blocked || !done.contains_key(uid) {
                    blocked = true;
                } else {
                    handled_to = *uid;
                }
            }
        }

        let position = match incremental_from {
            Some(_) => Some(handled_to),
            // A full sync skipped what the search did not find on purpose, so the cursor goes to
            // the top of the folder — but only if nothing was left to another poller.
            None if blocked => None,
            None => {
                let top = match mailbox.uid_next {
                    Some(next) => next.saturating_sub(1),
                    None => timed(limit, "UID SEARCH", session.uid_search("ALL")).await?.into_iter().max().unwrap_or(0),
                };
                Some(top.max(handled_to))
            }
        };
        if let Some(position) = position {
            let cursor = Cursor { position: position.to_string(), validity: Some(i64::from(validity)) };
            if cursor::advance(ledger.pool(), &self.cursor_key, &cursor).await? {
                debug!(folder, uid = position, validity, "IMAP cursor moved.");
            }
        } else {
            info!(folder, "Some messages are claimed by another poller; the IMAP cursor stays.");
        }
        Ok(report)
    }

    /// Fetches, claims, publishes and marks seen one batch of UIDs. Returns the UIDs taken
    /// care of (published, unparseable, already done, or gone from the folder), each with its
    /// ledger key.
    async fn handle(
        &self,
        session: &mut Session,
        ledger: &Ledger,
        batch: &[u32],
        report: &mut ScanReport,
    ) -> Result<HashMap<u32, Option<String>>, SourceError> {
        let limit = self.settings.timeout();
        let fetches: Vec<Fetch> = timed(limit, "UID FETCH", async {
            session.uid_fetch(uid_set(batch), "(UID FLAGS BODY.PEEK[])").await?.try_collect().await
        })
        .await?;
        let mut messages: BTreeMap<u32, (Vec<u8>, bool)> = BTreeMap::new();
        for fetch in &fetches {
            if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                let seen = fetch.flags().any(|f| f == Flag::Seen);
                messages.insert(uid, (body.to_vec(), seen));
            }
        }

        let mut done: HashMap<u32, Option<String>> = HashMap::new();
        let mut uids_of: HashMap<String, Vec<u32>> = HashMap::new();
        let mut to_mark: Vec<String> = Vec::new();
        let mut ready = Vec::new();
        for uid in batch {
            let Some((raw, seen)) = messages.remove(uid) else {
                // Expunged since the search: nothing to do.
                done.insert(*uid, None);
                continue;
            };
            let key = mailbox_key(&raw);
            let copies = uids_of.entry(key.clone()).or_default();
            copies.push(*uid);
            if copies.len() > 1 {
                // A second copy of a message in this batch: it goes the way of the first.
                continue;
            }
            match ledger.claim(&key).await? {
                Claim::Busy => report.skipped += 1,
                // Not ours to handle: left unread, and the cursor moves past it.
                Claim::OutOfSample => {
                    done.insert(*uid, None);
                }
                Claim::AlreadyPublished => to_mark.push(key),
                // Left unread for a person; the cursor moves past it all the same.
                Claim::Unparseable => {
                    done.insert(*uid, Some(key));
                }
                Claim::Publish(message_id) => {
                    let mut labels = vec![self.settings.folder.trim().to_owned()];
                    if !seen {
                        labels.push("UNREAD".to_owned());
                    }
                    let fetched = Fetched { mailbox_id: key.clone(), raw, thread_id: None, labels };
                    match ledger.prepare(fetched, message_id).await {
                        Ok(Prepared::Ready(message)) => ready.push(*message),
                        Ok(Prepared::Unparseable) => {
                            report.unparseable += 1;
                            done.insert(*uid, Some(key));
                        }
                        // Marked as its published copy was.
                        Ok(Prepared::Duplicate { .. }) => to_mark.push(key),
                        Ok(Prepared::Released) => report.skipped += 1,
                        Err(e) => {
                            ledger.release_all(&ready).await?;
                            return Err(e.into());
                        }
                    }
                }
            }
        }
        let published = ledger.publish(ready).await?;
        report.published += published.mailbox_ids.len();
        to_mark.extend(published.mailbox_ids);
        let seen_uids: Vec<u32> =
            to_mark.iter().flat_map(|key| uids_of.get(key).into_iter().flatten().copied()).collect();
        if !seen_uids.is_empty() && ledger.settings().mark_read.at_publish() {
            timed(limit, "UID STORE", async {
                session.uid_store(uid_set(&seen_uids), "+FLAGS.SILENT (\\Seen)").await?.try_collect::<Vec<_>>().await
            })
            .await?;
        }
        if let Some(e) = published.error {
            return Err(e.into());
        }
        for key in to_mark {
            for uid in uids_of.get(&key).into_iter().flatten() {
                done.insert(*uid, Some(key.clone()));
            }
        }
        // Copies of unparseable messages are done too.
        let finished: Vec<(String, Vec<u32>)> = uids_of
            .iter()
            .filter(|(_, uids)| uids.first().is_some_and(|first| done.contains_key(first)))
            .map(|(key, uids)| (key.clone(), uids.clone()))
            .collect();
        for (key, uids) in finished {
            for uid in uids {
                done.insert(uid, Some(key.clone()));
            }
        }
        Ok(done)
    }
}

impl Source for ImapSource {
    fn kind(&self) -> &'static str {
        "imap"
    }

    async fn sync_once(&mut self, ledger: &Ledger) -> Result<ScanReport, SourceError> {
        let mut session = match self.session.take() {
            Some(session) => session,
            None => self.connect().await?,
        };
        // On error the session is dropped: it may be mid-command, and the next pass reconnects.
        let report = self.pass(&mut session, ledger).await?;
        self.session = Some(session);
        Ok(report)
    }

    async fn apply_outcomes(&mut self, ledger: &Ledger, changes: &[crate::Change]) -> Result<Vec<String>, SourceError> {
        let mut session = match self.session.take() {
            Some(session) => session,
            None => self.connect().await?,
        };
        let (folder, limit) = (self.settings.folder.trim(), self.settings.timeout());
        let done =
            crate::imap_outcomes::apply(&mut session, self.moves, folder, limit, ledger.settings(), changes).await?;
        self.session = Some(session);
        Ok(done)
    }

    async fn wait_for_mail(&mut self, interval: Duration) {
        let Some(session) = self.session.take().filter(|_| self.idles()) else {
            return tokio::time::sleep(interval).await;
        };
        let limit = self.settings.timeout();
        let mut handle = session.idle();
        if let Err(e) = timed(limit, "IDLE", handle.init()).await {
            warn!(error = %e, "IMAP IDLE failed; polling until the next pass reconnects.");
            return tokio::time::sleep(interval).await;
        }
        let idle_for = Duration::from_secs(self.settings.idle_timeout_secs.max(1));
        let outcome = {
            // Dropping `_stop` would end the IDLE at once, so it lives as long as the wait.
            let (wait, _stop) = handle.wait_with_timeout(idle_for);
            // The crate's timeout restarts with every keepalive; this one bounds the whole wait.
            tokio::time::timeout(idle_for, wait).await
        };
        match outcome {
            Ok(Ok(IdleResponse::NewData(data))) => debug!(response = ?data.parsed(), "IMAP server reported a change."),
            // Timed out (ours or the crate's): a pass runs, which also keeps the session alive.
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "IMAP IDLE failed; polling until the next pass reconnects.");
                return tokio::time::sleep(interval).await;
            }
        }
        match timed(limit, "IDLE DONE", handle.done()).await {
            Ok(session) => self.session = Some(session),
            Err(e) => warn!(error = %e, "Could not end IMAP IDLE; the next pass reconnects."),
        }
    }

    /// The folder `mailbox.sent_folder`, examined (read-only) before each pass re-selects the
    /// inbox: its newest `mailbox.sent_scan_limit` messages not recorded yet, by their headers. A
    /// mailbox without that folder has no sent mail to read.
    async fn sent_mail(
        &mut self,
        ledger: &Ledger,
    ) -> Result<Vec<mailroom_db::person_replies::SentMessage>, SourceError> {
        let mut session = match self.session.take() {
            Some(session) => session,
            None => self.connect().await?,
        };
        let limit = self.settings.timeout();
        let folder = ledger.settings().sent_folder.trim().to_owned();
        let examined = tokio::time::timeout(limit, session.examine(&folder)).await;
        let mailbox = match examined {
            Ok(Ok(mailbox)) => mailbox,
            // No such folder (a NO answer): the session is fine, there is nothing to read.
            Ok(Err(e)) => {
                debug!(folder, error = %e, "No sent folder to read.");
                self.session = Some(session);
                return Ok(Vec::new());
            }
            // Mid-command: the session is dropped and the next step reconnects.
            Err(_) => {
                return Err(SourceError::Imap(format!("EXAMINE {folder}: no answer within {}s", limit.as_secs())));
            }
        };
        let validity = mailbox.uid_validity.unwrap_or_default();
        let mut uids: Vec<u32> = timed(limit, "UID SEARCH", session.uid_search("ALL")).await?.into_iter().collect();
        uids.sort_unstable_by(|a, b| b.cmp(a));
        uids.truncate(ledger.settings().sent_scan_limit);
        let key = |uid: u32| format!("imap-sent:{validity}:{uid}");
        let unknown = crate::person::unknown(ledger, uids.iter().map(|u| key(*u)).collect()).await?;
        let wanted: Vec<u32> = uids.into_iter().filter(|u| unknown.contains(&key(*u))).collect();
        let mut sent = Vec::new();
        for chunk in wanted.chunks(50) {
            let fetches: Vec<async_imap::types::Fetch> = timed(limit, "UID FETCH", async {
                session.uid_fetch(uid_set(chunk), "(UID BODY.PEEK[HEADER])").await?.try_collect().await
            })
            .await?;
            for fetch in &fetches {
                if let (Some(uid), Some(header)) = (fetch.uid, fetch.header()) {
                    sent.push(crate::person::sent_message(key(uid), header, None));
                }
            }
        }
        self.session = Some(session);
        Ok(sent)
    }

    async fn close(&mut self) {
        if let Some(mut session) = self.session.take() {
            let _ = timed(Duration::from_secs(5), "LOGOUT", session.logout()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ledger_key_survives_renumbering_and_falls_back_to_a_digest() {
        let mail = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Hi\r\nMessage-ID: <abc@example.com>\r\n\r\nHello\r\n";
        let key = mailbox_key(mail);
        assert!(key.starts_with("imap:abc@example.com #") && key.len() == "imap:abc@example.com #".len() + 16, "{key}");
        let other_body =
            b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Hi\r\nMessage-ID: <abc@example.com>\r\n\r\nBye\r\n";
        assert_ne!(mailbox_key(other_body), key, "a reused Message-ID with another body is another message");
        let copy = b"Received: from mx2\r\nFrom: a@example.com\r\nTo: b@example.com\r\nSubject: Hi\r\nMessage-ID: <abc@example.com>\r\n\r\nHello\r\n";
        assert_eq!(mailbox_key(copy), key, "a copy with other transport headers is the same message");
        let no_id = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: Hi\r\n\r\nHello\r\n";
        let digest = mailbox_key(no_id);
        assert!(digest.starts_with("imap:sha256:") && digest.len() == "imap:sha256:".len() + 64, "{digest}");
        assert_eq!(digest, mailbox_key(no_id), "the same bytes give the same key");
        assert_ne!(mailbox_key(b"not a mail at all"), digest);
    }

    #[test]
    fn settings_are_checked_and_the_password_stays_out_of_debug_output() {
        let settings = ImapSettings::new("imap.example.com", 993, "agent", SecretString::from("hunter2-secret"));
        let source = ImapSource::new("support@example.com", &settings).expect("valid settings");
        let shown = format!("{source:?}");
        assert!(shown.contains("imap.example.com") && !shown.contains("hunter2-secret"), "{shown}");
        assert_eq!(source.cursor_key().mailbox, "INBOX");
        let no_password = ImapSettings::new("imap.example.com", 993, "agent", SecretString::from(""));
        let error = ImapSource::new("support@example.com", &no_password).expect_err("no password");
        assert!(error.to_string().contains("mailbox.imap.password"), "{error}");
        let mut bad_ca = settings;
        bad_ca.tls_ca_file = "/nonexistent/ca.pem".to_owned();
        let error = ImapSource::new("support@example.com", &bad_ca).expect_err("missing CA file");
        assert!(error.to_string().contains("tls_ca_file"), "{error}");
    }

    #[test]
    fn uid_sets_are_comma_separated() {
        assert_eq!(uid_set(&[3, 9, 10]), "3,9,10");
    }
}
