//! One email, one answer: what makes two mailbox messages the same email.
//!
//! A message can reach a mailbox more than once — through an alias, a re-delivery, a mailing
//! list that also copies the mailbox, or two sources feeding one mailbox. Each copy has its own
//! mailbox id, so the ledger alone would publish (and the pipeline answer) every one. The
//! [`fingerprint`] names the email instead of the copy: the sender, the RFC `Message-ID`, and
//! the body as decoded text. Copies that differ only in transport headers (`Received`,
//! `Delivered-To`, the transfer encoding) share it; the ledger publishes the first and records
//! the others as duplicates of it ([`Ledger::prepare`](crate::Ledger::prepare)).
//!
//! The body is part of the fingerprint on purpose: a sender that reuses a `Message-ID` for
//! genuinely different mail (some ticketing systems and broken clients do) sends a different
//! email, and it is answered on its own rather than dropped as a copy. Mail without a
//! `Message-ID` is fingerprinted by sender, subject and body.

use mail_mime::ParsedEmail;
use sha2::{Digest as _, Sha256};

/// The hex SHA-256 of what makes `email` one email: the sender (any case), its `Message-ID`
/// (or, without one, its subject) and its body with line endings and trailing blanks evened
/// out.
pub fn fingerprint(email: &ParsedEmail) -> String {
    let mut hash = Sha256::new();
    hash.update(email.from.trim().to_lowercase().as_bytes());
    hash.update([0]);
    match email.message_id.as_deref().map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) => {
            hash.update(b"message-id\0");
            hash.update(id.as_bytes());
        }
        None => {
            hash.update(b"subject\0");
            hash.update(email.subject.trim().as_bytes());
        }
    }
    hash.update([0]);
    hash.update(email.content_digest());
    mail_mime::hex(&hash.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> ParsedEmail {
        mail_mime::parse(text.replace('\n', "\r\n").as_bytes()).expect("parses")
    }

    const FIRST: &str = "From: Ana <Ana@Customer.example>\nTo: support@northwind.example\n\
        Subject: Order 1234\nMessage-ID: <a1@customer.example>\n\nWhere is my order?\n";

    #[test]
    fn copies_that_differ_in_transport_share_the_fingerprint() {
        let alias = format!("Received: from mx2\nDelivered-To: help@northwind.example\n{FIRST}");
        let encoded = "From: ana@customer.example\nTo: help@northwind.example\nSubject: Order 1234\n\
            Message-ID: <a1@customer.example>\nContent-Transfer-Encoding: quoted-printable\n\n\
            Where is my order?   \n\n";
        let fp = fingerprint(&parse(FIRST));
        assert_eq!(fingerprint(&parse(&alias)), fp);
        assert_eq!(fingerprint(&parse(encoded)), fp, "sender case, encoding and trailing blanks");
    }

    #[test]
    fn a_reused_message_id_with_another_body_or_sender_is_another_email() {
        let fp = fingerprint(&parse(FIRST));
        let other_body = FIRST.replace("Where is my order?", "Please cancel it.");
        let other_sender = FIRST.replace("Ana@Customer.example", "eve@attacker.example");
        assert_ne!(fingerprint(&parse(&other_body)), fp);
        assert_ne!(fingerprint(&parse(&other_sender)), fp);
    }

    #[test]
    fn without_a_message_id_the_subject_counts() {
        let bare = FIRST.replace("Message-ID: <a1@customer.example>\n", "");
        let fp = fingerprint(&parse(&bare));
        assert_eq!(fingerprint(&parse(&format!("Received: from mx2\n{bare}"))), fp);
        assert_ne!(fingerprint(&parse(&bare.replace("Order 1234", "Order 1235"))), fp);
        assert_ne!(fp, fingerprint(&parse(FIRST)), "an id and no id never collide");
    }
}
