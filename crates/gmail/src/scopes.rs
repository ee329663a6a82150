//! Gmail's OAuth2 scopes: which of them each call this client makes accepts (from Google's
//! API reference, "Authorization scopes"), and what a set of granted scopes lets each Mailroom
//! role do. An access token carries the scopes its refresh token was granted; a call outside
//! them is refused with 403 ([`GmailError::InsufficientScope`](crate::GmailError)), and only a
//! new authorisation with another scope fixes that.
//!
//! What each role needs, exactly:
//! - the poller reads, labels and marks mail read: `gmail.modify` (or full access);
//! - the sender sends (`messages.send`: `gmail.send`, `gmail.compose` or broader) and saves
//!   drafts — escalated and throttled replies are drafts even in send mode, and every reply is
//!   one in draft mode (`drafts.create`: `gmail.compose` or broader, not `gmail.send`); after a
//!   crash it searches for the reply it may have sent (`messages.list` with `q`:
//!   `gmail.readonly` or broader — not `gmail.metadata`, with which Gmail refuses any `q`).
//!
//! So `gmail.compose` plus `gmail.readonly` covers the sender, and `gmail.modify` alone covers
//! both roles: the simplest correct grant for a mailbox the poller and the sender share.

/// Prefix of every Gmail scope but full access.
const PREFIX: &str = "https://www.googleapis.com/auth/";

/// Full access to the mailbox, including permanent deletion.
pub const FULL: &str = "https://mail.google.com/";
/// Read, compose, send and label; no permanent deletion.
pub const MODIFY: &str = "https://www.googleapis.com/auth/gmail.modify";
/// Read messages and settings.
pub const READONLY: &str = "https://www.googleapis.com/auth/gmail.readonly";
/// Create drafts and send.
pub const COMPOSE: &str = "https://www.googleapis.com/auth/gmail.compose";
/// Send only.
pub const SEND: &str = "https://www.googleapis.com/auth/gmail.send";
/// Create, read, update and delete labels only.
pub const LABELS: &str = "https://www.googleapis.com/auth/gmail.labels";
/// Headers and labels only; with it Gmail refuses every search (`q`) and raw message bodies,
/// even when a broader scope was granted too.
pub const METADATA: &str = "https://www.googleapis.com/auth/gmail.metadata";

/// The scope `mailroom gmail authorize` asks for unless told otherwise: it covers the poller
/// and the sender.
pub const RECOMMENDED: &str = MODIFY;

/// The scopes Google accepts for a call of this client, by the operation name used in errors
/// (`users.messages.send`, …); empty for a name this client does not use.
pub fn accepted_by(operation: &str) -> &'static [&'static str] {
    match operation {
        "users.getProfile" => &[FULL, MODIFY, COMPOSE, READONLY, METADATA],
        "users.labels.list" => &[FULL, MODIFY, READONLY, LABELS, METADATA],
        "users.labels.create" => &[FULL, MODIFY, LABELS],
        "users.messages.list" | "users.messages.get" | "users.history.list" => &[FULL, MODIFY, READONLY, METADATA],
        "users.messages.modify" => &[FULL, MODIFY],
        "users.messages.send" => &[FULL, MODIFY, COMPOSE, SEND],
        "users.drafts.create" => &[FULL, MODIFY, COMPOSE],
        _ => &[],
    }
}

/// `gmail.modify` for `https://www.googleapis.com/auth/gmail.modify`, `mail.google.com` for
/// full access; anything else as given.
pub fn short_name(scope: &str) -> &str {
    match scope.strip_prefix(PREFIX) {
        Some(short) => short,
        None if scope == FULL => "mail.google.com",
        None => scope,
    }
}

/// The full scope for a short name (`gmail.modify`, `mail.google.com`); a URL is returned as
/// given.
pub fn expand(scope: &str) -> String {
    let scope = scope.trim();
    if scope.contains("://") {
        scope.to_owned()
    } else if scope == "mail.google.com" || scope == "mail.google.com/" {
        FULL.to_owned()
    } else {
        format!("{PREFIX}{scope}")
    }
}

/// The scopes of a space-separated list, as the token endpoint and `WWW-Authenticate` write
/// them.
pub fn parse_list(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_owned).collect()
}

/// Short names of `scopes` joined with " or ", for messages.
pub fn describe(scopes: &[impl AsRef<str>]) -> String {
    let names: Vec<&str> = scopes.iter().map(|scope| short_name(scope.as_ref())).collect();
    names.join(" or ")
}

/// One thing a Mailroom role does with Gmail and the scopes that allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Use {
    /// What it is, for people.
    pub what: &'static str,
    /// Any one of these allows it.
    pub any_of: &'static [&'static str],
    /// Whether a search (`q`) is part of it, which `gmail.metadata` forbids.
    pub searches: bool,
}

/// Everything the poller and the sender do with Gmail.
pub const USES: [Use; 4] = [
    Use { what: "poller: read, label and mark mail read", any_of: &[FULL, MODIFY], searches: true },
    Use {
        what: "sender: send replies (sender.mode = \"send\")",
        any_of: &[FULL, MODIFY, COMPOSE, SEND],
        searches: false,
    },
    Use {
        what: "sender: save drafts (escalated and throttled replies, sender.mode = \"draft\")",
        any_of: &[FULL, MODIFY, COMPOSE],
        searches: false,
    },
    Use {
        what: "sender: find the reply of a sender that stopped mid-delivery (rfc822msgid: search)",
        any_of: &[FULL, MODIFY, READONLY],
        searches: true,
    },
];

/// The uses `granted` does not allow.
pub fn not_allowed(granted: &[impl AsRef<str>]) -> Vec<Use> {
    let has = |scope: &str| granted.iter().any(|g| g.as_ref() == scope);
    USES.into_iter().filter(|u| !u.any_of.iter().any(|s| has(s)) || (u.searches && has(METADATA))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_expand_and_shorten() {
        assert_eq!(expand("gmail.modify"), MODIFY);
        assert_eq!(expand(" mail.google.com "), FULL);
        assert_eq!(expand(SEND), SEND);
        assert_eq!(short_name(COMPOSE), "gmail.compose");
        assert_eq!(short_name(FULL), "mail.google.com");
        assert_eq!(describe(&[MODIFY, FULL]), "gmail.modify or mail.google.com");
        assert_eq!(parse_list(" a  b "), ["a", "b"]);
    }

    #[test]
    fn modify_covers_every_role_and_send_alone_does_not() {
        assert!(not_allowed(&[MODIFY]).is_empty());
        assert!(not_allowed(&[FULL]).is_empty());
        assert_eq!(not_allowed(&[COMPOSE, READONLY]).len(), 1, "the poller needs modify");
        let missing: Vec<&str> = not_allowed(&[SEND]).iter().map(|u| u.what).collect();
        assert_eq!(missing.len(), 3, "{missing:?}");
        assert!(missing.iter().any(|w| w.contains("drafts")), "{missing:?}");
        // Metadata spoils every search, whatever else was granted.
        let missing = not_allowed(&[MODIFY, METADATA]);
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(accepted_by("users.drafts.create").contains(&COMPOSE));
        assert!(!accepted_by("users.drafts.create").contains(&SEND));
        assert!(accepted_by("unknown").is_empty());
    }
}
