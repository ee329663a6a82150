//! Outcomes in a Maildir: the same keywords as on IMAP (`$Mailroom-Answered` …), stored the way
//! Dovecot stores IMAP keywords in a Maildir — a lower-case letter in the file name's flags
//! (`:2,a`), with `dovecot-keywords` in the Maildir's root mapping each letter to its keyword
//! (line `0 $Mailroom-Answered`: letter `a`). A Maildir served by Dovecot therefore shows the
//! outcomes to IMAP clients as keywords; any other client sees the letters in the flags.
//!
//! The message stays in `cur/` (so counts of handled mail and every client keep finding it):
//! answered mail also gets `R` (replied) and, when `mailbox.mark_read` says so, `S` (seen);
//! other outcomes leave the read state as it is, so unanswered mail stays unread for the team.

use std::collections::{BTreeSet, HashMap};
use std::io::ErrorKind;
use std::path::Path;

use crate::{Change, MarkRead, Outcome};

/// The keywords file Dovecot keeps in a Maildir's root.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";

/// Maildir keyword letters are `a`–`z`: 26 keywords at most.
const MAX_KEYWORDS: usize = 26;

/// The keyword letter of each outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letters(HashMap<Outcome, char>);

impl Letters {
    /// The letters of the outcome keywords under `parent`, adding the missing keywords to
    /// `dovecot-keywords` (written to a temporary file and renamed over the old one, so a reader
    /// never sees half of it). Keywords someone else defined keep their letters.
    pub fn ensure(root: &Path, parent: &str) -> std::io::Result<Self> {
        let path = root.join(KEYWORDS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut slots: Vec<Option<String>> = vec![None; MAX_KEYWORDS];
        for line in text.lines() {
            let Some((index, keyword)) = line.split_once(' ') else { continue };
            if let Some(slot) = index.trim().parse::<usize>().ok().and_then(|i| slots.get_mut(i)) {
                *slot = Some(keyword.trim().to_owned());
            }
        }
        let mut letters = HashMap::new();
        let mut added = false;
        for outcome in Outcome::ALL {
            let keyword = outcome.keyword(parent);
            let index = match slots.iter().position(|s| s.as_deref() == Some(keyword.as_str())) {
                Some(index) => index,
                None => {
                    let free = slots.iter().position(Option::is_none).ok_or_else(|| {
                        std::io::Error::other(format!(
                            "{}: all {MAX_KEYWORDS} keyword letters are taken; cannot add {keyword}",
                            path.display()
                        ))
                    })?;
                    slots[free] = Some(keyword);
                    added = true;
                    free
                }
            };
            letters.insert(outcome, letter(index));
        }
        if added {
            let body: String = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|keyword| format!("{i} {keyword}\n")))
                .collect();
            let tmp = root.join("tmp").join(format!("{KEYWORDS_FILE}.{}", std::process::id()));
            std::fs::write(&tmp, body)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(Self(letters))
    }

    fn of(&self, outcome: Outcome) -> Option<char> {
        self.0.get(&outcome).copied()
    }
}

/// The letter of keyword `index` (below [`MAX_KEYWORDS`]).
fn letter(index: usize) -> char {
    char::from(b'a' + u8::try_from(index % MAX_KEYWORDS).unwrap_or(0))
}

/// The flags of a `cur/` file name (after `:2,`).
fn flags_of(name: &str) -> BTreeSet<char> {
    name.split_once(":2,").map(|(_, flags)| flags.chars().collect()).unwrap_or_default()
}

/// The mailbox id of a file name (before `:`).
fn id_of(name: &str) -> &str {
    name.split(':').next().unwrap_or(name)
}

/// The file name with the outcome applied: the previous outcome's letter replaced by the new
/// one's, `R` for answered mail and `S` when `mark_read` marks it read. Flags stay in ASCII
/// order, as the Maildir convention asks (standard flags, then keyword letters).
pub fn renamed(name: &str, letters: &Letters, mark_read: MarkRead, change: &Change) -> String {
    let mut flags = flags_of(name);
    if let Some(previous) = change.previous.and_then(|p| letters.of(p)) {
        flags.remove(&previous);
    }
    flags.extend(letters.of(change.outcome));
    if change.outcome == Outcome::Answered {
        flags.insert('R');
    }
    if mark_read.on_outcome(change.outcome) {
        flags.insert('S');
    }
    let flags: String = flags.into_iter().collect();
    format!("{}:2,{flags}", id_of(name))
}

/// Applies `changes` to the messages in `cur/`. A message still in `new/` (published, but its
/// move to `cur/` is yet to come) is left for the next pass; one found nowhere was deleted and
/// counts as done.
pub fn apply(root: &Path, letters: &Letters, mark_read: MarkRead, changes: &[Change]) -> std::io::Result<Vec<String>> {
    let wanted: HashMap<&str, &Change> = changes.iter().map(|c| (c.mailbox_id.as_str(), c)).collect();
    let mut in_cur: HashMap<String, String> = HashMap::new();
    for entry in std::fs::read_dir(root.join("cur"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if wanted.contains_key(id_of(&name)) {
            in_cur.insert(id_of(&name).to_owned(), name);
        }
    }
    let in_new: BTreeSet<String> = crate::maildir::new_messages(root)?.into_iter().map(|e| e.id).collect();
    let mut done = Vec::with_capacity(changes.len());
    for change in changes {
        let Some(name) = in_cur.get(&change.mailbox_id) else {
            if !in_new.contains(&change.mailbox_id) {
                done.push(change.mailbox_id.clone());
            }
            continue;
        };
        let target = renamed(name, letters, mark_read, change);
        if &target != name {
            match std::fs::rename(root.join("cur").join(name), root.join("cur").join(&target)) {
                // Gone since the listing (a person deleted it, a client renamed it: the next
                // pass would find it under its new name, but its outcome is as good as shown).
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        done.push(change.mailbox_id.clone());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(previous: Option<Outcome>, outcome: Outcome) -> Change {
        Change { mailbox_id: "1764150000.M1.host".into(), previous, outcome }
    }

    #[test]
    fn keywords_get_free_letters_and_keep_existing_ones() {
        let dir = std::env::temp_dir().join(format!("maildir-keywords-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tmp")).expect("tmp");
        std::fs::write(dir.join(KEYWORDS_FILE), "0 $Forwarded\n2 $Mailroom-Drafted\n").expect("keywords");
        let letters = Letters::ensure(&dir, "Mailroom").expect("letters");
        assert_eq!(letters.of(Outcome::Drafted), Some('c'), "an existing keyword keeps its letter");
        assert_eq!(letters.of(Outcome::Answered), Some('b'), "the first free letter");
        assert_eq!(letters.of(Outcome::NeedsPerson), Some('d'));
        let text = std::fs::read_to_string(dir.join(KEYWORDS_FILE)).expect("keywords");
        assert!(text.starts_with("0 $Forwarded\n1 $Mailroom-Answered\n2 $Mailroom-Drafted\n"), "{text}");
        assert_eq!(Letters::ensure(&dir, "Mailroom").expect("again"), letters, "stable");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn outcomes_replace_each_other_and_only_answered_mail_is_read() {
        let letters = Letters(Outcome::ALL.into_iter().enumerate().map(|(i, o)| (o, letter(i))).collect());
        let name = "1764150000.M1.host:2,";
        assert_eq!(
            renamed(name, &letters, MarkRead::Answered, &change(None, Outcome::NeedsPerson)),
            format!("{name}c")
        );
        assert_eq!(renamed(name, &letters, MarkRead::Answered, &change(None, Outcome::Answered)), format!("{name}RSa"));
        assert_eq!(renamed(name, &letters, MarkRead::Never, &change(None, Outcome::Answered)), format!("{name}Ra"));
        // A person read it meanwhile: it stays read; the old keyword goes.
        let read = "1764150000.M1.host:2,Se";
        let now = renamed(read, &letters, MarkRead::Answered, &change(Some(Outcome::Failed), Outcome::Answered));
        assert_eq!(now, format!("{name}RSa"));
        assert_eq!(
            renamed("1764150000.M1.host", &letters, MarkRead::Answered, &change(None, Outcome::Failed)),
            format!("{name}e")
        );
    }
}
