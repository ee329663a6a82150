//! The mail the fault scenarios feed: a realistic mix for one support mailbox, written into the
//! poller's Maildir the way an MTA delivers (`tmp/` then rename into `new/`).
//!
//! Most messages are support questions the sample knowledge base answers (shipping, the app),
//! some ask for an invoice (always drafted for a human: `rag.human_categories`) or for something
//! the documents do not cover (escalated), some are urgent or from a VIP domain (higher
//! priority), ~10% are newsletters and auto-replies (`List-Unsubscribe`, `Auto-Submitted`) that
//! must never be answered, and 1 in 250 is not an email at all (the poller dead-letters it).
//! Every message has its own sender, order number and wording, so no two share a reply
//! throttle bucket or an embedding-cache entry by accident.

use std::path::Path;

/// The support mailbox every scenario answers for.
pub(crate) const AGENT: &str = "support@northwind.example";
/// Mail from this domain gets the poller's VIP bonus (`MAILROOM__MAILBOX__VIP_DOMAINS`).
pub(crate) const VIP_DOMAIN: &str = "vip.example";

/// What a fed message is, and so which terminal states are acceptable for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A question the shipping FAQ or the app guide answers.
    Question,
    /// A question with an urgent word in the subject (priority 8).
    Urgent,
    /// An invoice request: a support inquiry a person must answer.
    Invoice,
    /// A support inquiry the documents do not cover.
    Unanswerable,
    /// A newsletter (`List-Unsubscribe`, `List-Id`, `Precedence: bulk`): never answered.
    Newsletter,
    /// An out-of-office reply (`Auto-Submitted: auto-replied`): never answered.
    AutoReply,
    /// Not an email (binary junk in the header block): dead-lettered by the poller.
    Malformed,
}

impl Kind {
    /// Mail the loop-safety rules must classify `automated` and that must never get a reply.
    pub(crate) fn is_automated(self) -> bool {
        matches!(self, Kind::Newsletter | Kind::AutoReply)
    }
}

/// One message fed to the pipeline.
#[derive(Debug, Clone)]
pub(crate) struct Fed {
    /// The email's id through the whole pipeline: the Maildir unique name, or the id it was
    /// published under when it skipped the mailbox.
    pub(crate) id: String,
    /// What it is.
    pub(crate) kind: Kind,
    /// Whether it came in through the poller (and so must be in its ledger); the slow-consumer
    /// scenario publishes most of its backlog directly.
    pub(crate) via_poller: bool,
    /// Subject and body, for the embedding-cache keys the generator writes.
    pub(crate) subject: String,
    pub(crate) body: String,
}

const QUESTIONS: &[(&str, &str)] = &[
    (
        "Tracking number for order {order}",
        "Hi,\n\nI ordered a Lift Pro desk last week (order {order}). When do I get my tracking number, and \
         where can I enter it? Will there be one tracking number per box?\n\nThanks,\n{name}",
    ),
    (
        "How long does shipping to {country} take?",
        "Hello,\n\nI am thinking about ordering a standing desk. How long does standard shipping to \
         {country} take and what does it cost? Order reference {order} if that helps.\n\nBest,\n{name}",
    ),
    (
        "Tracking has not updated",
        "Hello,\n\nmy tracking for order {order} has not updated for four days. What should I do, and \
         will you open a trace with the carrier?\n\n{name}",
    ),
    (
        "Do you ship to a P.O. box?",
        "Hi,\n\ncan you deliver my desk to a P.O. box or to a parcel locker? My order is {order}.\n\nRegards,\n{name}",
    ),
    (
        "App does not find my desk over Bluetooth",
        "Hello,\n\nthe Northwind Desk app does not find my desk over Bluetooth when I try to pair it. \
         How do I pair it? (order {order})\n\nThanks,\n{name}",
    ),
    (
        "White Glove delivery day",
        "Hi,\n\ncan I choose a delivery day for my desk, order {order}? I read about White Glove \
         delivery - how much does it cost and is it available everywhere?\n\n{name}",
    ),
];

const URGENT: &[(&str, &str)] = &[
    (
        "URGENT: desk delivered but one box missing",
        "Hello,\n\ntracking says delivered but I only have one of the two boxes of order {order}. \
         What should I do?\n\n{name}",
    ),
    (
        "App login broken, need help ASAP",
        "Hi,\n\nI cannot log in to the Northwind Desk app since the update and I need to pair my desk \
         today. How do I reset my password? Order {order}.\n\n{name}",
    ),
];

const COUNTRIES: &[&str] = &["Germany", "Canada", "the United Kingdom", "Norway", "Hawaii", "France"];
const NAMES: &[&str] = &["Jane", "Sam", "Ana", "Kenji", "Ola", "Priya", "Luis", "Greta", "Tom", "Mei"];

/// The `n`-th message of the mix, in RFC 5322 form: `(kind, from, subject, body, raw)`.
fn message(run: &str, n: usize) -> (Kind, String, String, String, Vec<u8>) {
    let order = format!("NW-{:07}", (n * 7919 + 1_000_003) % 10_000_000);
    let name = NAMES[n % NAMES.len()];
    let fill = |t: &str| {
        t.replace("{order}", &order).replace("{name}", name).replace("{country}", COUNTRIES[n % COUNTRIES.len()])
    };
    let slot = n % 100;
    let kind = if n % 250 == 249 {
        Kind::Malformed
    } else if slot < 5 {
        Kind::Newsletter
    } else if slot < 10 {
        Kind::AutoReply
    } else if slot < 18 {
        Kind::Invoice
    } else if slot < 24 {
        Kind::Unanswerable
    } else if slot < 34 {
        Kind::Urgent
    } else {
        Kind::Question
    };
    // Every tenth support question comes from the VIP domain (+2 priority).
    let domain = if n % 10 == 3 { VIP_DOMAIN } else { "customer.example" };
    let address = format!("{}.{n}@{domain}", name.to_lowercase());
    let from = format!("{name} <{address}>");
    let mut extra = String::new();
    let (subject, body) = match kind {
        Kind::Question => {
            let (s, b) = QUESTIONS[n % QUESTIONS.len()];
            (fill(s), fill(b))
        }
        Kind::Urgent => {
            let (s, b) = URGENT[n % URGENT.len()];
            (fill(s), fill(b))
        }
        Kind::Invoice => (
            "Invoice copy for my accountant".to_owned(),
            format!(
                "Hello,\n\ncould you please send me a copy of invoice 2026-{:04} for my accountant? Thank you.\n\n{name}",
                n % 10_000
            ),
        ),
        Kind::Unanswerable => (
            "Partnership for our office fit-out".to_owned(),
            fill(
                "Hello,\n\nwe are furnishing a new office for 40 people and would like to discuss a volume \
                  discount and a custom colour for the frames. Who should we talk to? Ref {order}.\n\n{name}",
            ),
        ),
        Kind::Newsletter => {
            extra = "List-Unsubscribe: <mailto:unsubscribe@deals.example>\r\nList-Id: Deals Weekly <weekly.deals.example>\r\nPrecedence: bulk\r\n".to_owned();
            (
                format!("Deals of the week #{n}: 40% off"),
                "Huge savings this week only. Click here to shop now.".to_owned(),
            )
        }
        Kind::AutoReply => {
            extra = "Auto-Submitted: auto-replied\r\nX-Auto-Response-Suppress: All\r\n".to_owned();
            (
                format!("Automatic reply: Your order {order}"),
                fill("I am out of the office until Monday and will reply when I am back. {name}"),
            )
        }
        Kind::Malformed => {
            let raw =
                format!("\u{0}\u{1}\u{2} not an email {run}-{n} \u{7f}\r\n\r\njust bytes a broken client wrote\r\n");
            return (kind, String::new(), String::new(), String::new(), raw.into_bytes());
        }
    };
    let (from, address) = if kind == Kind::Newsletter {
        (format!("Deals Weekly <news.{n}@deals.example>"), format!("news.{n}@deals.example"))
    } else {
        (from, address)
    };
    // The receiving server's verdict on top, as real mail has it (the scenarios trust it:
    // `mailbox.authserv_ids`), so answered mail is sent, not drafted for an unauthenticated sender.
    let raw = format!(
        "{}From: {from}\r\nTo: Northwind Support <{AGENT}>\r\nSubject: {subject}\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{run}.{n}@customer.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}\r\n{}\r\n",
        mailroom_tests::authenticated(&address),
        body.replace('\n', "\r\n")
    );
    (kind, from, subject, body, raw.into_bytes())
}

/// Writes messages `range` of the mix into `maildir` (an MTA's delivery: `tmp/`, then an atomic
/// rename into `new/`) and returns them.
pub(crate) fn deliver(maildir: &Path, run: &str, range: std::ops::Range<usize>) -> Vec<Fed> {
    let mut fed = Vec::with_capacity(range.len());
    for n in range {
        let (kind, _from, subject, body, raw) = message(run, n);
        // A standard Maildir unique name: time, a per-delivery part, the host. Sorting by name
        // (what the poller does within a pass) is delivery order.
        let id = format!("1764150000.M{n:06}P1.{run}");
        let tmp = maildir.join("tmp").join(&id);
        std::fs::write(&tmp, &raw).expect("write to tmp/");
        std::fs::rename(&tmp, maildir.join("new").join(&id)).expect("deliver into new/");
        fed.push(Fed { id, kind, via_poller: true, subject, body });
    }
    fed
}

/// Messages `range` of the mix as the poller would publish them (parsed and converted by the
/// poller's own code), each at a priority `priority(n)` picks, without going through the
/// mailbox: a backlog can be built at the broker's pace instead of the poller's. Mail that does
/// not parse is left out (only the poller can set it aside).
pub(crate) fn direct(
    run: &str,
    range: std::ops::Range<usize>,
    mut priority: impl FnMut(usize) -> u8,
) -> Vec<(Fed, pipeline_core::messages::EmailToClassify)> {
    let mut out = Vec::with_capacity(range.len());
    for n in range {
        let (kind, _from, subject, body, raw) = message(run, n);
        let Ok(parsed) = mail_mime::parse(&raw) else { continue };
        let id = format!("direct.{n:06}.{run}");
        let message = poller::to_message(AGENT, &id, parsed, priority(n));
        out.push((Fed { id, kind, via_poller: false, subject, body }, message));
    }
    out
}
