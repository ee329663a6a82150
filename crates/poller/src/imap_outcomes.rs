//! Outcomes on IMAP, shown one of two ways (`mailbox.imap_outcomes`):
//!
//! - `keywords` (the default): a keyword per outcome (`$Mailroom-Answered`, `$Mailroom-Drafted`,
//!   `$Mailroom-NeedsPerson`, `$Mailroom-NotSupport`, `$Mailroom-Failed`; the parent is
//!   `mailbox.outcome_parent`) set with `UID STORE +FLAGS`, replacing the previous outcome's
//!   keyword; the message stays in the folder. The server must allow keywords (`PERMANENTFLAGS`
//!   with `\*`, as Dovecot does).
//! - `folders`: the message is moved into a folder per outcome (`Mailroom/Answered` …; see
//!   `imap_folders`).
//!
//! Either way answered mail also gets `\Answered` and, by default, `\Seen`; other outcomes leave
//! the read state alone.
//!
//! The ledger key of an IMAP message is its `Message-ID`, so the message is found again with
//! `UID SEARCH HEADER Message-ID`, whatever its UID is now (every copy gets the outcome). A
//! message keyed by a digest (it had no `Message-ID`) is found among the folder's messages
//! without that header, whose bodies are fetched (once per batch) and hashed as the key was. Not
//! found either way are messages keyed by a digest because they could not be parsed although they
//! have a `Message-ID` header, and messages flagged `\Deleted`. A message not found (also one no
//! longer in the folder) counts as done.

use std::collections::HashMap;
use std::time::Duration;

use async_imap::types::Fetch;
use futures_util::TryStreamExt;

use crate::imap_folders::MoveSupport;
use crate::imap_source::{Session, mailbox_key, timed, uid_set};
use crate::settings::ImapOutcomes;
use crate::{Change, MailboxSettings, Outcome, SourceError};

/// The ledger keys made from a digest of the message.
const DIGEST_PREFIX: &str = "imap:sha256:";

/// Messages fetched at once when looking for digests.
const FETCH_CHUNK: usize = 50;

/// An IMAP quoted string, or `None` when the value cannot be one (line breaks, non-ASCII).
pub(crate) fn quoted(value: &str) -> Option<String> {
    if !value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return None;
    }
    Some(format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// The `UID SEARCH` criteria that find the message with ledger key `key` by its `Message-ID`, if
/// it has one that can be searched for.
fn search_for(key: &str) -> Option<String> {
    let rest = key.strip_prefix("imap:").filter(|rest| !rest.starts_with("sha256:"))?;
    let message_id = rest.rsplit_once(" #").map_or(rest, |(id, _digest)| id);
    Some(format!("UNDELETED HEADER Message-ID {}", quoted(message_id)?))
}

/// Finds messages of the selected folder by ledger key. The digests of the folder's messages
/// without a `Message-ID` are computed once, for the first key that needs them.
#[derive(Debug, Default)]
pub(crate) struct Finder {
    digests: Option<HashMap<String, Vec<u32>>>,
}

impl Finder {
    /// The UIDs, ascending, of the messages with ledger key `key`.
    pub(crate) async fn locate(
        &mut self,
        session: &mut Session,
        limit: Duration,
        key: &str,
    ) -> Result<Vec<u32>, SourceError> {
        let mut uids: Vec<u32> = if let Some(criteria) = search_for(key) {
            let found: Vec<u32> =
                timed(limit, "UID SEARCH", session.uid_search(&criteria)).await?.into_iter().collect();
            if key.contains(" #") && found.len() > 1 {
                // Several messages share the Message-ID: only those with this key's body.
                same_key(session, limit, &found, key).await?
            } else {
                found
            }
        } else if key.starts_with(DIGEST_PREFIX) {
            self.digests(session, limit).await?.get(key).cloned().unwrap_or_default()
        } else {
            Vec::new()
        };
        uids.sort_unstable();
        Ok(uids)
    }

    async fn digests(
        &mut self,
        session: &mut Session,
        limit: Duration,
    ) -> Result<&HashMap<String, Vec<u32>>, SourceError> {
        if let Some(ref digests) = self.digests {
            return Ok(digests);
        }
        let found = timed(limit, "UID SEARCH", session.uid_search("UNDELETED NOT HEADER Message-ID \"\"")).await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        uids.sort_unstable();
        let mut digests: HashMap<String, Vec<u32>> = HashMap::new();
        for chunk in uids.chunks(FETCH_CHUNK) {
            let fetches: Vec<Fetch> = timed(limit, "UID FETCH", async {
                session.uid_fetch(uid_set(chunk), "(UID BODY.PEEK[])").await?.try_collect().await
            })
            .await?;
            for fetch in &fetches {
                if let (Some(uid), Some(body)) = (fetch.uid, fetch.body()) {
                    digests.entry(mailbox_key(body)).or_default().push(uid);
                }
            }
        }
        Ok(self.digests.insert(digests))
    }
}

/// Those of `uids` whose ledger key is `key`.
async fn same_key(session: &mut Session, limit: Duration, uids: &[u32], key: &str) -> Result<Vec<u32>, SourceError> {
    let mut same = Vec::new();
    for chunk in uids.chunks(FETCH_CHUNK) {
        let fetches: Vec<Fetch> = timed(limit, "UID FETCH", async {
            session.uid_fetch(uid_set(chunk), "(UID BODY.PEEK[])").await?.try_collect().await
        })
        .await?;
        same.extend(fetches.iter().filter(|f| f.body().is_some_and(|b| mailbox_key(b) == key)).filter_map(|f| f.uid));
    }
    Ok(same)
}

/// The system flags an outcome adds: `\Answered` to answered mail, and `\Seen` when
/// `mailbox.mark_read` says so.
pub(crate) fn system_flags(outcome: Outcome, settings: &MailboxSettings) -> Vec<String> {
    let mut flags = Vec::new();
    if outcome == Outcome::Answered {
        flags.push("\\Answered".to_owned());
    }
    if settings.mark_read.on_outcome(outcome) {
        flags.push("\\Seen".to_owned());
    }
    flags
}

/// `UID STORE` of `change` (`+FLAGS.SILENT (\Seen)`) on the messages `set`.
pub(crate) async fn store(session: &mut Session, limit: Duration, set: &str, change: &str) -> Result<(), SourceError> {
    timed(limit, "UID STORE", async { session.uid_store(set, change).await?.try_collect::<Vec<_>>().await })
        .await
        .map(drop)
}

/// Applies `changes` to the messages of `folder`, the polled folder, the way
/// `mailbox.imap_outcomes` says; returns the mailbox ids done. The session has `folder` selected
/// again afterwards.
pub(crate) async fn apply(
    session: &mut Session,
    moves: MoveSupport,
    folder: &str,
    limit: Duration,
    settings: &MailboxSettings,
    changes: &[Change],
) -> Result<Vec<String>, SourceError> {
    match settings.imap_outcomes {
        ImapOutcomes::Keywords => keywords(session, folder, limit, settings, changes).await,
        ImapOutcomes::Folders => crate::imap_folders::apply(session, moves, folder, limit, settings, changes).await,
    }
}

/// Sets each change's keyword in place of the previous one.
async fn keywords(
    session: &mut Session,
    folder: &str,
    limit: Duration,
    settings: &MailboxSettings,
    changes: &[Change],
) -> Result<Vec<String>, SourceError> {
    // The pass selected it already, unless the session is new; selecting again is cheap.
    timed(limit, &format!("SELECT {folder}"), session.select(folder)).await?;
    let mut finder = Finder::default();
    for change in changes {
        let uids = finder.locate(session, limit, &change.mailbox_id).await?;
        if uids.is_empty() {
            continue;
        }
        let set = uid_set(&uids);
        let mut added = vec![change.outcome.keyword(&settings.outcome_parent)];
        added.extend(system_flags(change.outcome, settings));
        store(session, limit, &set, &format!("+FLAGS.SILENT ({})", added.join(" "))).await?;
        if let Some(previous) = change.previous.filter(|p| *p != change.outcome) {
            let remove = format!("-FLAGS.SILENT ({})", previous.keyword(&settings.outcome_parent));
            store(session, limit, &set, &remove).await?;
        }
    }
    Ok(changes.iter().map(|c| c.mailbox_id.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_found_by_message_id_and_digests_are_not_searched() {
        assert_eq!(
            search_for("imap:a1@customer.example").as_deref(),
            Some("UNDELETED HEADER Message-ID \"a1@customer.example\""),
            "a key written before the body digest"
        );
        assert_eq!(
            search_for("imap:a1@customer.example #0123456789abcdef").as_deref(),
            Some("UNDELETED HEADER Message-ID \"a1@customer.example\"")
        );
        assert_eq!(search_for("imap:we\"ird\\id").as_deref(), Some("UNDELETED HEADER Message-ID \"we\\\"ird\\\\id\""));
        assert_eq!(search_for("imap:sha256:00ff"), None);
        assert_eq!(search_for("imap:line\r\nbreak"), None);
        assert!(mailbox_key(b"To: a@example.com\r\n\r\nno id\r\n").starts_with(DIGEST_PREFIX));
    }
}
