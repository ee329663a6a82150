//! What a message says, as one hash: its sender and its body as decoded text, with line endings
//! and trailing blanks evened out. Two copies of one email that differ only in transport
//! (`Received`, `Delivered-To`, the transfer encoding) share it; so do a draft and the same
//! draft after a mail client re-saved it unchanged. The poller uses it to tell copies of one
//! email apart from different mail under one `Message-ID`; the sender to tell whether a person
//! edited a draft it left.

use sha2::{Digest as _, Sha256};

use crate::ParsedEmail;

impl ParsedEmail {
    /// The SHA-256 of the sender (any case) and the body, each line without trailing blanks.
    pub fn content_digest(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(self.from.trim().to_lowercase().as_bytes());
        hash.update([0]);
        for line in self.body.trim().lines() {
            hash.update(line.trim_end().as_bytes());
            hash.update(b"\n");
        }
        hash.finalize().into()
    }

    /// [`ParsedEmail::content_digest`] in lower-case hex.
    pub fn content_digest_hex(&self) -> String {
        hex(&self.content_digest())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    fn digest(text: &str) -> String {
        crate::parse(text.replace('\n', "\r\n").as_bytes()).expect("parses").content_digest_hex()
    }

    const DRAFT: &str = "From: Support <support@northwind.example>\nTo: ana@customer.example\n\
        Subject: Re: Order 1234\nMessage-ID: <r1@northwind.example>\n\nYour order ships today.\n\nThe Support Team\n";

    #[test]
    fn transport_and_encoding_do_not_change_it() {
        let resaved = "X-Mozilla-Draft-Info: internal/draft; vcard=0\nFrom: support@Northwind.example\n\
            To: ana@customer.example\nSubject: Re: Order 1234\nMessage-ID: <r1@northwind.example>\n\
            Content-Transfer-Encoding: quoted-printable\n\nYour order ships today.   \n\nThe Support Team\n\n";
        assert_eq!(digest(resaved), digest(DRAFT));
        assert_eq!(digest(DRAFT).len(), 64);
    }

    #[test]
    fn an_edited_body_or_another_sender_changes_it() {
        assert_ne!(digest(&DRAFT.replace("ships today", "ships tomorrow")), digest(DRAFT));
        assert_ne!(digest(&DRAFT.replace("support@northwind", "billing@northwind")), digest(DRAFT));
    }
}
