//! Outcomes on IMAP as folders (`mailbox.imap_outcomes = "folders"`): each message is moved into
//! `<parent><delimiter><outcome>` — `Mailroom/Answered`, or `Mailroom.Needs person` on a server
//! whose hierarchy delimiter is `.` — with the parent `mailbox.outcome_parent`, the delimiter the
//! server names (`LIST "" ""`; a server without hierarchy gets `Mailroom-Answered`), and the name
//! in modified UTF-7 (RFC 3501 §5.1.3) when it is not plain ASCII. A missing folder is created
//! (`CREATE`, then `SUBSCRIBE`) the first time an outcome needs it.
//!
//! Moving is `UID MOVE` (RFC 6851) when the server offers `MOVE`; otherwise `UID COPY`, `\Deleted`
//! and `UID EXPUNGE` (with `UIDPLUS`) or else a plain `EXPUNGE`, which also removes whatever else
//! is flagged `\Deleted` in the folder, as any client's expunge would. That fallback is not
//! atomic: a session lost right after the copy leaves a second copy once the next pass repeats
//! the move; one lost after `\Deleted` leaves the original, flagged (and so no longer searched
//! for), in the polled folder. Nothing is lost either way. The flags are set before
//! the move, so the message keeps them: `\Answered` and, as `mailbox.mark_read` decides,
//! `\Seen`; other outcomes leave it as it was (unread, unless a person read it).
//!
//! A message is looked for in the polled folder first and then, when its outcome replaces an
//! earlier one (a failed message answered after all), in the earlier outcome's folder. One found
//! in neither (moved on by a person, or by an attempt whose record was lost) counts as done, so
//! an outcome applied twice moves nothing twice.
//!
//! Moving mail out of the polled folder leaves the IMAP cursor alone: UIDs only grow and the cursor
//! is the highest UID handled, so gaps below it mean nothing, and a resync after a new
//! UIDVALIDITY finds the moved mail in the ledger (keyed by `Message-ID`), not in the folder.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_imap::types::{Capabilities, Name};
use futures_util::TryStreamExt;
use tracing::{debug, info};

use crate::imap_outcomes::{Finder, quoted, store, system_flags};
use crate::imap_source::{Session, timed, uid_set};
use crate::{Change, MailboxSettings, Outcome, SourceError};

/// How the server lets mail be moved, from its `CAPABILITY` answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MoveSupport {
    /// `MOVE` (RFC 6851).
    pub(crate) uid_move: bool,
    /// `UIDPLUS` (RFC 4315), for `UID EXPUNGE`.
    pub(crate) uidplus: bool,
}

impl MoveSupport {
    /// What `capabilities` offer.
    pub(crate) fn of(capabilities: &Capabilities) -> Self {
        Self { uid_move: capabilities.has_str("MOVE"), uidplus: capabilities.has_str("UIDPLUS") }
    }
}

/// `name` in modified UTF-7 (RFC 3501 §5.1.3), the form IMAP mailbox names take on the wire:
/// printable ASCII stays (`&` becomes `&-`), anything else is UTF-16 in base64 between `&` and
/// `-`, with `,` for `/`.
pub(crate) fn utf7(name: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";
    fn flush(units: &mut Vec<u16>, out: &mut String) {
        if units.is_empty() {
            return;
        }
        let bytes: Vec<u8> = units.drain(..).flat_map(u16::to_be_bytes).collect();
        out.push('&');
        for chunk in bytes.chunks(3) {
            let bits = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[(bits >> (18 - 6 * i)) as usize & 63]));
            }
        }
        out.push('-');
    }
    let mut out = String::with_capacity(name.len());
    let mut units = Vec::new();
    for c in name.chars() {
        if (' '..='~').contains(&c) {
            flush(&mut units, &mut out);
            match c {
                '&' => out.push_str("&-"),
                c => out.push(c),
            }
        } else {
            units.extend_from_slice(c.encode_utf16(&mut [0; 2]));
        }
    }
    flush(&mut units, &mut out);
    out
}

/// The wire name of `outcome`'s folder under `parent` (already in modified UTF-7).
fn folder_name(parent: &str, delimiter: Option<&str>, outcome: Outcome) -> String {
    format!("{parent}{}{}", delimiter.unwrap_or("-"), utf7(outcome.display_name()))
}

/// The outcome folders as the server has them: the delimiter, and which exist.
#[derive(Debug)]
struct Tree {
    parent: String,
    delimiter: Option<String>,
    existing: HashSet<String>,
}

impl Tree {
    /// Asks the server for its delimiter and the folders under `parent`.
    async fn list(session: &mut Session, limit: Duration, parent: &str) -> Result<Self, SourceError> {
        let root: Vec<Name> =
            timed(limit, "LIST \"\" \"\"", async { session.list(Some(""), None).await?.try_collect().await }).await?;
        let delimiter = root.iter().find_map(|n| n.delimiter().map(str::to_owned));
        let parent = utf7(parent);
        let pattern = quoted(&format!("{parent}*"))
            .ok_or_else(|| SourceError::Settings(format!("mailbox.outcome_parent {parent:?} cannot be listed")))?;
        let names: Vec<Name> = timed(limit, &format!("LIST \"\" {pattern}"), async {
            session.list(Some(""), Some(&pattern)).await?.try_collect().await
        })
        .await?;
        let existing = names.iter().map(|n| n.name().to_owned()).collect();
        Ok(Self { parent, delimiter, existing })
    }

    fn name(&self, outcome: Outcome) -> String {
        folder_name(&self.parent, self.delimiter.as_deref(), outcome)
    }

    /// Creates and subscribes `name` unless it exists.
    async fn ensure(&mut self, session: &mut Session, limit: Duration, name: &str) -> Result<(), SourceError> {
        if self.existing.contains(name) {
            return Ok(());
        }
        match timed(limit, &format!("CREATE {name}"), session.create(name)).await {
            // Another poller or a person made it since the LIST.
            Err(e) if e.to_string().to_ascii_lowercase().contains("alreadyexists") => {}
            other => other?,
        }
        timed(limit, &format!("SUBSCRIBE {name}"), session.subscribe(name)).await?;
        info!(folder = name, "Created the IMAP outcome folder.");
        self.existing.insert(name.to_owned());
        Ok(())
    }
}

/// One batch of moves over one session.
struct Filing<'a> {
    session: &'a mut Session,
    tree: Tree,
    moves: MoveSupport,
    limit: Duration,
    settings: &'a MailboxSettings,
}

impl Filing<'_> {
    async fn select(&mut self, folder: &str) -> Result<(), SourceError> {
        timed(self.limit, &format!("SELECT {folder}"), self.session.select(folder)).await.map(drop)
    }

    /// Files the messages `uids` of the selected folder `from` under `outcome`: flags, then the move.
    async fn file(&mut self, from: &str, uids: &[u32], outcome: Outcome) -> Result<(), SourceError> {
        let (limit, set) = (self.limit, uid_set(uids));
        let flags = system_flags(outcome, self.settings);
        if !flags.is_empty() {
            store(self.session, limit, &set, &format!("+FLAGS.SILENT ({})", flags.join(" "))).await?;
        }
        let to = self.tree.name(outcome);
        if to == from {
            return Ok(());
        }
        self.tree.ensure(self.session, limit, &to).await?;
        let session = &mut *self.session;
        if self.moves.uid_move {
            timed(limit, &format!("UID MOVE to {to}"), session.uid_mv(&set, &to)).await?;
        } else {
            timed(limit, &format!("UID COPY to {to}"), session.uid_copy(&set, &to)).await?;
            store(session, limit, &set, "+FLAGS.SILENT (\\Deleted)").await?;
            if self.moves.uidplus {
                timed(limit, "UID EXPUNGE", async { session.uid_expunge(&set).await?.try_collect::<Vec<_>>().await })
                    .await?;
            } else {
                timed(limit, "EXPUNGE", async { session.expunge().await?.try_collect::<Vec<_>>().await }).await?;
            }
        }
        debug!(from, to, uids = %set, "Moved mail to its outcome folder.");
        Ok(())
    }
}

/// Moves each change's messages from `folder` (or from the previous outcome's folder) into the
/// outcome's folder; returns the mailbox ids done. The session has `folder` selected afterwards,
/// as IDLE watches the selected folder.
pub(crate) async fn apply(
    session: &mut Session,
    moves: MoveSupport,
    folder: &str,
    limit: Duration,
    settings: &MailboxSettings,
    changes: &[Change],
) -> Result<Vec<String>, SourceError> {
    let tree = Tree::list(session, limit, &settings.outcome_parent).await?;
    let mut filing = Filing { session, tree, moves, limit, settings };
    filing.select(folder).await?;
    let mut elsewhere: BTreeMap<Outcome, Vec<&Change>> = BTreeMap::new();
    let mut finder = Finder::default();
    for change in changes {
        let uids = finder.locate(filing.session, limit, &change.mailbox_id).await?;
        if !uids.is_empty() {
            filing.file(folder, &uids, change.outcome).await?;
        } else if let Some(previous) = change.previous.filter(|p| *p != change.outcome) {
            elsewhere.entry(previous).or_default().push(change);
        }
    }
    let mut reselect = false;
    for (previous, changes) in elsewhere {
        let from = filing.tree.name(previous);
        if !filing.tree.existing.contains(&from) {
            continue;
        }
        filing.select(&from).await?;
        reselect = true;
        let mut finder = Finder::default();
        for change in changes {
            let uids = finder.locate(filing.session, limit, &change.mailbox_id).await?;
            if !uids.is_empty() {
                filing.file(&from, &uids, change.outcome).await?;
            }
        }
    }
    if reselect {
        filing.select(folder).await?;
    }
    Ok(changes.iter().map(|c| c.mailbox_id.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_modified_utf7() {
        assert_eq!(utf7("Needs person"), "Needs person");
        assert_eq!(utf7("R&D"), "R&-D");
        assert_eq!(utf7("Entwürfe"), "Entw&APw-rfe");
        // RFC 3501's own example.
        assert_eq!(utf7("~peter/mail/台北/日本語"), "~peter/mail/&U,BTFw-/&ZeVnLIqe-");
        assert_eq!(utf7("😀"), "&2D3eAA-");
    }

    #[test]
    fn folders_use_the_servers_delimiter() {
        assert_eq!(folder_name("Mailroom", Some("/"), Outcome::NeedsPerson), "Mailroom/Needs person");
        assert_eq!(folder_name("Mailroom", Some("."), Outcome::NotSupport), "Mailroom.Not support");
        assert_eq!(folder_name("Mailroom", None, Outcome::Answered), "Mailroom-Answered");
        let all: HashSet<String> = Outcome::ALL.into_iter().map(|o| folder_name("M", Some("/"), o)).collect();
        assert_eq!(all.len(), Outcome::ALL.len());
    }
}
