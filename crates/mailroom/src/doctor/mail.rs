//! The mail checks of `mailroom doctor`: the mailbox the poller reads (IMAP login and folder,
//! Gmail token and scopes, which senders count as authenticated) and the outbox the sender
//! writes to (SMTP EHLO/TLS/AUTH, Gmail).

use gmail::{GmailClient, GmailError, GmailSettings, scopes};
use pipeline_core::Settings;
use poller::{GmailSourceSettings, ImapSettings, ImapSource, MailboxSettings};
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
    let authentication = match poller::authentication_warning(&mailbox) {
        (said, None) => Check::ok("mailbox authentication", said),
        (said, Some(fix)) => Check::warn("mailbox authentication", said, fix),
    };
    let mut checks = source(settings, &mailbox).await;
    checks.push(authentication);
    checks
}

/// The source's own check: can the poller read it.
async fn source(settings: &Settings, mailbox: &MailboxSettings) -> Vec<Check> {
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
        "gmail" => vec![match GmailSourceSettings::from_settings(settings) {
            Ok(gmail) => gmail_check("mailbox gmail", &gmail.client, Role::Poller).await,
            Err(e) => Check::fail("mailbox gmail", e.to_string(), "fix the [mailbox.gmail] section"),
        }],
        other => vec![Check::fail(format!("mailbox {other}"), "unknown mailbox.kind", "set maildir, imap or gmail")],
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
        OutboxKind::Gmail => vec![match &outbox.gmail {
            Some(gmail) => gmail_check("outbox gmail", gmail, Role::Sender).await,
            None => Check::fail(
                "outbox gmail",
                "no [outbox.gmail] section",
                "add client_id, client_secret and refresh_token",
            ),
        }],
    }
}

/// Which role's Gmail uses a refresh token must allow.
#[derive(Clone, Copy)]
enum Role {
    Poller,
    Sender,
}

impl Role {
    fn prefix(self) -> &'static str {
        match self {
            Role::Poller => "poller:",
            Role::Sender => "sender:",
        }
    }
}

/// Refreshes the token (client id, secret and refresh token) and checks the granted scopes
/// against what the role does with Gmail ([`scopes::USES`]).
async fn gmail_check(name: &str, settings: &GmailSettings, role: Role) -> Check {
    let client = match GmailClient::new(settings) {
        Ok(client) => client,
        Err(e) => return Check::fail(name, e.to_string(), "fix api_base and token_url"),
    };
    let granted = match client.granted_scopes().await {
        Ok(granted) => granted,
        Err(e) => {
            let fix = match &e {
                GmailError::ReauthorizationRequired { .. } => {
                    "the refresh token was revoked or expired: run `mailroom gmail authorize` and set the new one"
                }
                _ => "check client_id, client_secret, refresh_token and token_url",
            };
            return Check::fail(name, e.to_string(), fix);
        }
    };
    if granted.is_empty() {
        return Check::ok(name, "token refreshed; the token endpoint did not list the granted scopes");
    }
    let missing: Vec<_> =
        scopes::not_allowed(&granted).into_iter().filter(|u| u.what.starts_with(role.prefix())).collect();
    let shown = granted.iter().map(|s| scopes::short_name(s)).collect::<Vec<_>>().join(", ");
    if missing.is_empty() {
        return Check::ok(name, format!("token refreshed; granted {shown}"));
    }
    let lacking: Vec<String> =
        missing.iter().map(|u| format!("{} (needs {})", u.what, scopes::describe(u.any_of))).collect();
    Check::fail(
        name,
        format!("granted {shown}; not allowed: {}", lacking.join("; ")),
        format!(
            "re-authorise with the scopes the role needs (`mailroom gmail authorize --scope {}`)",
            scopes::short_name(scopes::RECOMMENDED)
        ),
    )
}
