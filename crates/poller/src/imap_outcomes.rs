//! Outcomes on IMAP: a keyword per outcome (`$Mailroom-Answered`, `$Mailroom-Drafted`,
//! `$Mailroom-NeedsPerson`, `$Mailroom-NotSupport`, `$Mailroom-Failed`; the parent is
//! `mailbox.outcome_parent`) set with `UID STORE +FLAGS`, replacing the previous outcome's
//! keyword. Answered mail also gets `\Answered` and, by default, `\Seen`; other outcomes leave
//! the read state alone. The server must allow keywords (`PERMANENTFLAGS` with `\*`, as Dovecot
//! does).
//!
//! The ledger key of an IMAP message is its `Message-ID`, so the message is found again with
//! `UID SEARCH HEADER Message-ID`, whatever its UID is now (every copy gets the keyword). A
//! message keyed by a digest (it had no `Message-ID`) cannot be searched for and gets no
//! keyword; like a message no longer in the folder, it counts as done.

use std::time::Duration;

use futures_util::TryStreamExt;

use crate::imap_source::{Session, timed};
use crate::{Change, MailboxSettings, Outcome, SourceError};

/// An IMAP quoted string, or `None` when the value cannot be one (line breaks, non-ASCII).
fn quoted(value: &str) -> Option<String> {
    if !value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return None;
    }
    Some(format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\"")))
}

/// The `UID SEARCH` criteria that find the message with ledger key `key`, if it can be found.
fn search_for(key: &str) -> Option<String> {
    let message_id = key.strip_prefix("imap:").filter(|rest| !rest.starts_with("sha256:"))?;
    Some(format!("HEADER Message-ID {}", quoted(message_id)?))
}

/// The flags an outcome adds.
fn added_flags(outcome: Outcome, settings: &MailboxSettings) -> String {
    let mut flags = vec![outcome.keyword(&settings.outcome_parent)];
    if outcome == Outcome::Answered {
        flags.push("\\Answered".to_owned());
    }
    if settings.mark_read.on_outcome(outcome) {
        flags.push("\\Seen".to_owned());
    }
    format!("({})", flags.join(" "))
}

/// Applies `changes` in `folder`; returns the mailbox ids done.
pub(crate) async fn apply(
    session: &mut Session,
    folder: &str,
    limit: Duration,
    settings: &MailboxSettings,
    changes: &[Change],
) -> Result<Vec<String>, SourceError> {
    // The pass selected it already, unless the session is new; selecting again is cheap.
    timed(limit, &format!("SELECT {folder}"), session.select(folder)).await?;
    let mut done = Vec::with_capacity(changes.len());
    for change in changes {
        let Some(criteria) = search_for(&change.mailbox_id) else {
            done.push(change.mailbox_id.clone());
            continue;
        };
        let found = timed(limit, "UID SEARCH", session.uid_search(&criteria)).await?;
        let mut uids: Vec<u32> = found.into_iter().collect();
        if uids.is_empty() {
            done.push(change.mailbox_id.clone());
            continue;
        }
        uids.sort_unstable();
        let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let add = format!("+FLAGS.SILENT {}", added_flags(change.outcome, settings));
        timed(limit, "UID STORE", async { session.uid_store(&set, &add).await?.try_collect::<Vec<_>>().await }).await?;
        if let Some(previous) = change.previous.filter(|p| *p != change.outcome) {
            let remove = format!("-FLAGS.SILENT ({})", previous.keyword(&settings.outcome_parent));
            timed(limit, "UID STORE", async { session.uid_store(&set, &remove).await?.try_collect::<Vec<_>>().await })
                .await?;
        }
        done.push(change.mailbox_id.clone());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_found_by_message_id_and_digests_are_not_searched() {
        assert_eq!(
            search_for("imap:a1@customer.example").as_deref(),
            Some("HEADER Message-ID \"a1@customer.example\"")
        );
        assert_eq!(search_for("imap:we\"ird\\id").as_deref(), Some("HEADER Message-ID \"we\\\"ird\\\\id\""));
        assert_eq!(search_for("imap:sha256:00ff"), None);
        assert_eq!(search_for("imap:line\r\nbreak"), None);
    }
}
