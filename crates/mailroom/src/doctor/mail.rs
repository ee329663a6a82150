//! The mail checks of `mailroom doctor`: the mailbox the poller reads (IMAP login and folder,
//! Gmail token and scopes) and the outbox the sender writes to (SMTP EHLO/TLS/AUTH, Gmail).

use pipeline_core::Settings;
use poller::{ImapSettings, ImapSource, MailboxSettings};
use sender::settings::{OutboxKind, OutboxSettings};

use super::{Check, timed};

pub(super) async fn checks(settings: &Settings) -> Vec<Check> {
    let (mailbox, outbox) = tokio::join!(
        timed("mailbox", "check the mailbox host, port and the network", mailbox(settings)),
        timed("outbox", "check the outbox host, port and the network", outbox(settings)),
    );
    [mailbox, outbox].into_iter().flatten().collect()
}

async fn mailbox(settings: &Settings) -> Vec<Check> {
    let mailbox: MailboxSettings = match settings.section("mailbox") {
        Ok(s) => s,
        Err(e) => return vec![Check::fail("mailbox", e.to_string(), "fix the [mailbox] section")],
    };
    match mailbox.kind.as_str() {
        "imap" => vec![imap(settings, &mailbox.agent_email).await],
        "maildir" => {
            let path = mailbox.maildir.display();
            // The poller creates a missing Maildir; a path that is a file cannot become one.
            vec![if mailbox.maildir.join("new").is_dir() {
                Check::ok("mailbox maildir", format!("{path} is a Maildir"))
            } else if !mailbox.maildir.exists() {
                Check::ok("mailbox maildir", format!("{path} does not exist yet; the poller creates it"))
            } else {
                Check::fail(
                    "mailbox maildir",
                    format!("{path}/new is not a directory"),
                    "set mailbox.maildir to a Maildir",
                )
            }]
        }
        other => vec![Check::skip(format!("mailbox {other}"), "checked by the Gmail checks below")],
    }
}

async fn imap(settings: &Settings, agent: &str) -> Check {
    let imap: ImapSettings = match settings.section("mailbox.imap") {
        Ok(s) => s,
        Err(e) => return Check::fail("mailbox imap", e.to_string(), "fix the [mailbox.imap] section"),
    };
    let mut source = match ImapSource::new(agent, &imap) {
        Ok(source) => source,
        Err(e) => return Check::fail("mailbox imap", e.to_string(), "fix the [mailbox.imap] section"),
    };
    match source.check_login().await {
        Ok(said) => Check::ok("mailbox imap", said),
        Err(e) => {
            let text = e.to_string();
            let fix = if text.to_lowercase().contains("login") || text.contains("AUTHENTICATIONFAILED") {
                "mailbox.imap.username or password is wrong (an app password where the provider needs one)"
            } else {
                "check mailbox.imap.host, port, tls_ca_file and folder"
            };
            Check::fail("mailbox imap", text, fix)
        }
    }
}

async fn outbox(settings: &Settings) -> Vec<Check> {
    let outbox: OutboxSettings = match settings.section("outbox") {
        Ok(s) => s,
        Err(e) => return vec![Check::fail("outbox", e.to_string(), "fix the [outbox] section")],
    };
    match outbox.kind {
        OutboxKind::Smtp => vec![match sender::sink::check_smtp(&outbox.smtp).await {
            Ok(said) => Check::ok("outbox smtp", said),
            Err(e) => Check::fail(
                "outbox smtp",
                e.to_string(),
                "check outbox.smtp.host, port, security (starttls on 587, tls on 465), ca_file, username and password",
            ),
        }],
        OutboxKind::Maildir => vec![Check::skip("outbox maildir", "replies are written to a local Maildir")],
        OutboxKind::Gmail => vec![Check::skip("outbox gmail", "checked by the Gmail checks below")],
    }
}
