//! Integration tests: every fixture mailbox message parses to the fields listed in
//! `tests/fixtures/README.md`, malformed input fails with a reason, large bodies stay fast, and a
//! built reply parses back to what was put in, with no way to inject a header.

use std::path::PathBuf;

use chrono::{TimeZone, Utc};
use mail_mime::{
    BodySource, BuildError, ParseError, ParsedEmail, ReplySpec, build_reply, build_reply_at, parse, parse_with_limit,
};

/// Recognises the error variant a case expects.
type IsExpected<E> = fn(&E) -> bool;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures_dir().join(name)).expect("fixture exists")
}

fn parsed(name: &str) -> ParsedEmail {
    parse(&fixture(name)).unwrap_or_else(|e| panic!("{name} should parse: {e}"))
}

fn header<'a>(email: &'a ParsedEmail, name: &str) -> &'a str {
    email.headers.get(name).map(String::as_str).unwrap_or_else(|| panic!("header {name} missing: {:?}", email.headers))
}

#[test]
fn fixture_set_is_complete_and_documented() {
    let readme = std::fs::read_to_string(fixtures_dir().join("README.md")).expect("fixtures README");
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .expect("fixtures dir")
        .map(|e| e.expect("dir entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    names.sort();
    assert!(names.len() >= 14, "only {} fixtures", names.len());
    for name in &names {
        assert!(readme.contains(name.as_str()), "{name} is not described in tests/fixtures/README.md");
    }
}

#[test]
fn multipart_alternative_prefers_plain_text() {
    let email = parsed("01-multipart-alternative.eml");
    assert_eq!(email.subject, "Cannot reset my password");
    assert_eq!(email.from, "Anna.Schmidt@gmail.com", "domain lowercased, local part kept");
    assert_eq!(email.from_name.as_deref(), Some("Anna Schmidt"));
    assert_eq!(email.to, ["support@mailroom.example"]);
    assert_eq!(email.message_id.as_deref(), Some("CAJ8k2vX9aQ+Lm1p3dS0xYt7uQ@mail.gmail.com"));
    assert_eq!(email.body_source, BodySource::Plain);
    assert!(email.body.starts_with("Hi,\n\nI requested a password reset link three times today but the email never\n"));
    assert!(email.body.ends_with("Thanks,\nAnna"));
    assert!(!email.body.contains('<'), "HTML alternative must not leak in");
    assert!(!email.has_attachments);
    assert_eq!(email.date, Some(Utc.with_ymd_and_hms(2024, 5, 14, 9, 12, 31).single().expect("date")));
    // Repeated Received headers are joined in message order.
    let received: Vec<&str> = header(&email, "Received").split('\n').collect();
    assert_eq!(received.len(), 2);
    assert!(received[0].starts_with("from mail-ej1-f49.google.com"));
    assert!(received[1].starts_with("by mail-ej1-f49.google.com"));
    assert_eq!(header(&email, "Return-Path"), "<anna.schmidt@gmail.com>");
    assert!(header(&email, "DKIM-Signature").starts_with("v=1; a=rsa-sha256;"));
}

#[test]
fn html_only_is_converted() {
    let email = parsed("02-html-only.eml");
    assert_eq!(email.body_source, BodySource::HtmlConverted);
    assert_eq!(email.from, "paul.lefevre@contoso.example");
    assert_eq!(email.from_name.as_deref(), Some("Lefevre, Paul"));
    assert_eq!(
        email.body,
        "Hello,\n\nOur invoice #2024-0117 lists the VAT number FR 40 123456789 but ours is FR 40 987654321.\n\
         Could you please:\n\n- re-issue the invoice,\n- confirm the change & send a credit note – if needed.\n\n\
         Price shown: 1 200 € <excl. VAT>\n\nBest regards,\nPaul Lefévre"
    );
    for hidden in ["Internal draft title", "Font Definitions", "tracking", "MsoNormal"] {
        assert!(!email.body.contains(hidden), "{hidden:?} leaked into the body");
    }
    assert_eq!(header(&email, "X-MS-Has-Attach"), "");
    assert_eq!(header(&email, "Thread-Topic"), "Invoice #2024-0117 shows the wrong VAT number");
}

#[test]
fn quoted_printable_utf8() {
    let email = parsed("03-quoted-printable.eml");
    assert_eq!(email.subject, "Pedido nº 5531 no llegó");
    assert_eq!(email.from_name.as_deref(), Some("José García"));
    assert!(email.body.contains(
        "El seguimiento dice \"entregado\" desde el lunes, pero no recibí nada. ¿Pueden revisar con la empresa"
    ));
    assert!(email.body.contains("Precio pagado: 49,90 €\n"));
    assert!(!email.body.contains('\r'), "line endings are normalised to \\n");
    assert!(!email.body.contains("=\n"), "soft line breaks are removed");
}

#[test]
fn base64_body() {
    let email = parsed("04-base64-body.eml");
    assert_eq!(email.subject, "Export to CSV does nothing after update");
    assert!(email.body.contains("Steps: Reports → Monthly → Export → CSV."));
    assert_eq!(email.date, Some(Utc.with_ymd_and_hms(2024, 5, 17, 1, 0, 0).single().expect("date")));
    assert_eq!(header(&email, "User-Agent"), "Mozilla Thunderbird");
}

#[test]
fn iso_8859_1_subject_and_body() {
    let email = parsed("05-iso-8859-1.eml");
    assert_eq!(email.subject, "Problème de facturation à régler");
    assert_eq!(email.from_name.as_deref(), Some("François Bélanger"));
    assert!(email.body.contains("J'ai été facturé deux fois ce mois-ci."));
    assert!(email.body.ends_with("François Bélanger"));
}

#[test]
fn windows_1252_smart_quotes() {
    let email = parsed("06-windows-1252.eml");
    assert_eq!(email.subject, "“Save” button doesn’t work");
    assert!(email.body.contains("The “Save” button doesn’t work – it just spins… I’ve tried Chrome and Edge."));
    assert!(email.body.contains("€120 of lost time ™"));
}

#[test]
fn koi8_r() {
    let email = parsed("07-koi8-r.eml");
    assert_eq!(email.subject, "Не могу войти в личный кабинет");
    assert_eq!(email.from_name.as_deref(), Some("Иван Петров"));
    assert!(email.body.contains("После смены пароля я не могу войти в личный кабинет."));
}

#[test]
fn shift_jis_and_iso_2022_jp() {
    let email = parsed("08-shift-jis.eml");
    assert_eq!(email.subject, "請求書の再発行について");
    assert_eq!(email.from_name.as_deref(), Some("山田太郎"));
    assert!(email.body.contains("先月分の請求書を再発行していただけますか。"));
}

#[test]
fn gb2312() {
    let email = parsed("09-gb2312.eml");
    assert_eq!(email.subject, "账户无法登录");
    assert!(email.body.contains("提示“账户已锁定”"));
}

#[test]
fn utf16_with_bom() {
    let email = parsed("10-utf-16.eml");
    assert_eq!(email.body, "Hello,\nplease delete my account and all data (GDPR Art. 17).\nDanke — Jürgen");
}

#[test]
fn multipart_mixed_with_pdf() {
    let email = parsed("11-attachment-pdf.eml");
    assert!(email.has_attachments);
    assert_eq!(email.body_source, BodySource::Plain);
    assert!(email.body.starts_with("Hello,\n\nPlease find the receipt for order 77120 attached."));
    assert!(!email.body.contains("JVBERi0"), "the base64 PDF must not end up in the body");
    assert!(!email.body.contains("multi-part message in MIME format"), "the preamble is not body text");
    assert_eq!(header(&email, "Cc"), "billing@acme-corp.example");
}

#[test]
fn reply_threading_ids() {
    let email = parsed("12-reply-thread.eml");
    assert_eq!(email.subject, "Re: Re: Cannot reset my password");
    assert_eq!(email.message_id.as_deref(), Some("CAJ8k2vZ7bQ+Rn4q9eT1yZu8vR@mail.gmail.com"));
    assert_eq!(email.in_reply_to.as_deref(), Some("5c1f7a2e-9b3d-4e8f-a1c2-d3e4f5a6b7c8@mailroom.example"));
    assert_eq!(
        email.references,
        ["CAJ8k2vX9aQ+Lm1p3dS0xYt7uQ@mail.gmail.com", "5c1f7a2e-9b3d-4e8f-a1c2-d3e4f5a6b7c8@mailroom.example"]
    );
    assert!(email.body.contains("\n> Hello Anna,\n"));
}

#[test]
fn auto_reply_headers_are_kept() {
    let email = parsed("13-auto-reply.eml");
    assert_eq!(email.subject, "Automatische Antwort: Ihre Anfrage # 4471");
    assert_eq!(email.from_name.as_deref(), Some("Thomas Müller"));
    assert_eq!(header(&email, "Auto-Submitted"), "auto-replied");
    assert_eq!(header(&email, "X-Auto-Response-Suppress"), "All");
    assert_eq!(header(&email, "Precedence"), "auto_reply");
    assert_eq!(email.in_reply_to.as_deref(), Some("0b7e9c1d-2f3a-4b5c-8d6e-7f8091a2b3c4@mailroom.example"));
}

#[test]
fn newsletter_list_headers() {
    let email = parsed("14-newsletter.eml");
    assert_eq!(email.subject, "🚀 This week: 10 tips for faster support");
    assert_eq!(email.from_name.as_deref(), Some("Product Weekly"));
    assert_eq!(
        header(&email, "List-Unsubscribe"),
        "<https://productweekly.example/unsubscribe?u=abc123&id=def456>, \
         <mailto:unsubscribe@productweekly.example?subject=unsubscribe>"
    );
    assert_eq!(header(&email, "List-ID"), "Product Weekly <weekly.productweekly.example>");
    assert_eq!(header(&email, "List-Unsubscribe-Post"), "List-Unsubscribe=One-Click");
    assert_eq!(header(&email, "Precedence"), "bulk");
    assert_eq!(header(&email, "Feedback-ID"), "12345:67890:mc");
    assert_eq!(email.body_source, BodySource::Plain);
    assert!(email.body.contains("1. Use saved replies."));
}

#[test]
fn bounce_report() {
    let email = parsed("15-bounce.eml");
    assert_eq!(email.from, "MAILER-DAEMON@mx.mailroom.example");
    assert_eq!(email.from_name.as_deref(), Some("Mail Delivery System"));
    assert_eq!(email.subject, "Undelivered Mail Returned to Sender");
    assert_eq!(header(&email, "Return-Path"), "<>");
    assert_eq!(header(&email, "Auto-Submitted"), "auto-replied");
    assert!(header(&email, "Content-Type").starts_with("multipart/report; report-type=delivery-status;"));
    assert_eq!(email.message_id.as_deref(), Some("20240530100005.4F2A13E0B5@mx.mailroom.example"));
    assert!(email.has_attachments, "delivery-status and the returned message are attachments");
    assert!(email.body.starts_with("This is the mail system at host mx.mailroom.example."));
    assert!(email.body.contains("550 5.1.1 <no-such-user@customer.example>"));
    assert!(!email.body.contains("Reporting-MTA"), "the machine-readable report is not the body");
    assert!(!email.body.contains("your order ships tomorrow"), "the returned message is not the body");
}

#[test]
fn folded_headers_are_unfolded() {
    let email = parsed("16-folded-headers.eml");
    assert_eq!(email.subject, "Request for quotation: 250 annual licences, volume discount and payment terms – urgent");
    assert_eq!(email.from, "Carmen.Rivera@partner.example");
    assert_eq!(email.from_name.as_deref(), Some("Rivera, Carmen (Procurement)"));
    assert_eq!(email.to, ["support@mailroom.example", "sales@mailroom.example", "ops@mailroom.example"]);
    assert_eq!(email.message_id.as_deref(), Some("RFQ-2024-05-31-0042@partner.example"));
    assert_eq!(email.date, Some(Utc.with_ymd_and_hms(2024, 5, 31, 9, 0, 0).single().expect("date")));
    assert_eq!(header(&email, "X-Custom-Tracking"), "first part of a long custom header value");
    assert_eq!(header(&email, "Content-Type"), "text/plain; charset=\"utf-8\"; format=flowed");
    assert_eq!(header(&email, "Received").lines().count(), 2);
    for value in email.headers.values() {
        assert!(!value.contains('\r') && !value.contains('\t'), "folding left in {value:?}");
    }
}

#[test]
fn very_long_line_is_kept_whole() {
    let email = parsed("17-long-line.eml");
    let long = email.body.lines().nth(1).expect("second line");
    assert_eq!(long.len(), 2000 * 10 - 1);
    assert!(long.starts_with("word00000 word00001") && long.ends_with("word01999"));
    assert!(email.body.ends_with("\nEND OF TRACE"));
    assert_eq!(email.from_name, None);
}

#[test]
fn malformed_fixtures_fail_with_a_reason() {
    let cases: [(&str, IsExpected<ParseError>, &str); 4] = [
        ("18-malformed-missing-from.eml", |e| matches!(e, ParseError::MissingFrom(_)), "no From header"),
        ("19-malformed-broken-boundary.eml", |e| matches!(e, ParseError::BrokenMime(_)), "declared-boundary-123"),
        ("20-malformed-garbage.eml", |e| matches!(e, ParseError::NotAnEmail(_)), "binary"),
        ("21-malformed-no-headers.eml", |e| matches!(e, ParseError::NoHeaders), "no headers"),
    ];
    for (name, is_expected, reason) in cases {
        let err = parse(&fixture(name)).expect_err(name);
        assert!(is_expected(&err), "{name}: unexpected error {err:?}");
        assert!(err.to_string().contains(reason), "{name}: reason {err} does not mention {reason:?}");
    }
}

#[test]
fn other_invalid_inputs() {
    assert_eq!(parse(b""), Err(ParseError::Empty));
    assert_eq!(parse(b" \r\n\t\n"), Err(ParseError::Empty));
    assert_eq!(parse(b"just one line"), Err(ParseError::NoHeaders));
    assert!(matches!(parse(b"From: Someone\n\nno address"), Err(ParseError::MissingFrom(_))));
    assert!(matches!(parse(b"From: <>\n\nnull address"), Err(ParseError::MissingFrom(_))));
    assert!(matches!(
        parse(b"From: a@b.example\nContent-Type: multipart/mixed\n\n--x\n\nbody\n"),
        Err(ParseError::BrokenMime(_))
    ));
    // Garbage without NUL bytes: whatever happens, it is an error and not a panic.
    let mut seed = 0x2545_f491_u32;
    let noise: Vec<u8> = (0..4096)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 255) as u8 + 1
        })
        .collect();
    assert!(parse(&noise).is_err());
}

#[test]
fn minimal_and_odd_but_valid_messages() {
    let email = parse(b"From: a@B.Example\r\n\r\n").expect("headers only");
    assert_eq!(email.from, "a@b.example");
    assert_eq!((email.body.as_str(), email.body_source), ("", BodySource::Empty));
    assert_eq!(email.subject, "");
    assert_eq!(email.date, None);

    let email = parse(b"From: a@b.example\nDate: not a date\nSubject: =?bogus-charset?Q?x?=\n\nhi").expect("lenient");
    assert_eq!(email.date, None);
    assert_eq!(email.body, "hi");

    // A truncated multipart (no closing delimiter) still yields its text.
    let email = parse(
        b"From: a@b.example\nContent-Type: multipart/alternative; boundary=zz\n\n--zz\nContent-Type: text/plain\n\n\
          cut off here",
    )
    .expect("truncated multipart");
    assert_eq!(email.body, "cut off here");
}

#[test]
fn hostile_nesting_does_not_crash() {
    // Tens of thousands of nested message/rfc822 parts: mail-parser's recursive Drop would
    // overflow the (2 MiB) test-thread stack without the crate's flat teardown.
    let mut raw = String::from("From: a@b.example\r\nSubject: nest\r\n");
    for _ in 0..20_000 {
        raw.push_str("Content-Type: message/rfc822\r\n\r\nFrom: x@y.example\r\n");
    }
    raw.push_str("\r\ninner\r\n");
    let email = parse(raw.as_bytes()).expect("parses");
    assert!(email.has_attachments);

    let mut raw = String::from("From: a@b.example\r\n");
    for i in 0..20_000 {
        raw.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\ninner\r\n");
    assert!(parse(raw.as_bytes()).is_ok());
}

/// A `text/plain` message whose body is `body`, base64-encoded as a real client would send 5 MiB.
fn big_message(body: &str, content_type: &str) -> Vec<u8> {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    let mut raw = format!(
        "From: big@sender.example\r\nTo: support@mailroom.example\r\nSubject: big\r\nMIME-Version: 1.0\r\n\
         Content-Type: {content_type}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    )
    .into_bytes();
    for chunk in encoded.as_bytes().chunks(76) {
        raw.extend_from_slice(chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw
}

#[test]
fn five_mib_body_parses_within_the_limit() {
    const SIZE: usize = 5 * 1024 * 1024;
    let line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit — ünïcödé 12345\n";
    let mut body = line.repeat(SIZE / line.len() + 1);
    body.truncate(body.char_indices().take_while(|(i, _)| *i < SIZE).last().map_or(0, |(i, _)| i));
    let body = body.trim_end().to_owned();
    let raw = big_message(&body, "text/plain");

    let email = parse(&raw).expect("5 MiB parses");
    assert!(!email.body_truncated, "5 MiB is within the default limit");
    assert_eq!(email.body.len(), body.len());
    assert!(email.body == body);

    let email = parse_with_limit(&raw, 1000).expect("parses with a small limit");
    assert!(email.body_truncated);
    assert_eq!(email.body.chars().count(), 1000);
    assert!(body.starts_with(&email.body));
}

#[test]
fn five_mib_html_body_converts() {
    let paragraph = "<p>Paragraph with <b>bold</b> &amp; <a href=\"https://x.example\">link</a></p>\n";
    let html = format!("<html><body>{}</body></html>", paragraph.repeat(5 * 1024 * 1024 / paragraph.len()));
    let email = parse(&big_message(&html, "text/html")).expect("parses");
    assert_eq!(email.body_source, BodySource::HtmlConverted);
    assert!(email.body.starts_with("Paragraph with bold & link\n\nParagraph with bold & link"));
}

fn spec() -> ReplySpec {
    ReplySpec {
        from: "support@Mailroom.Example".to_owned(),
        from_name: Some("Mailroom Support".to_owned()),
        to: "anna.schmidt@gmail.com".to_owned(),
        subject: "Cannot reset my password".to_owned(),
        body: "Hello Anna,\n\nplease check your spam folder.\n\nMailroom".to_owned(),
        in_reply_to: Some("<CAJ8k2vX9aQ+Lm1p3dS0xYt7uQ@mail.gmail.com>".to_owned()),
        references: Vec::new(),
        extra_headers: Vec::new(),
        message_id: None,
    }
}

#[test]
fn a_given_message_id_is_used_and_validated() {
    let reply = build_reply(ReplySpec { message_id: Some("<mailroom-1a2b@mailroom.example>".into()), ..spec() })
        .expect("builds");
    assert_eq!(reply.message_id, "mailroom-1a2b@mailroom.example");
    assert!(String::from_utf8_lossy(&reply.raw).contains("Message-ID: <mailroom-1a2b@mailroom.example>\r\n"));
    let err = build_reply(ReplySpec { message_id: Some("x\r\nBcc: v@evil.example".into()), ..spec() })
        .expect_err("an id with a line break is refused");
    assert!(matches!(err, BuildError::InvalidMessageId { field: "message_id", .. }), "{err}");
}

/// Checks the wire format every reply must have: CRLF only, no over-long lines, header block first.
fn assert_wire_format(raw: &[u8]) {
    let text = std::str::from_utf8(raw).expect("a built reply is ASCII");
    assert!(text.is_ascii(), "non-ASCII must be encoded");
    assert!(text.ends_with("\r\n"));
    let bytes = raw;
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' {
            assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at byte {i}");
        }
        if *b == b'\r' {
            assert_eq!(bytes.get(i + 1), Some(&b'\n'), "bare CR at byte {i}");
        }
    }
    let (head, body) = text.split_once("\r\n\r\n").expect("header/body separator");
    for line in head.split("\r\n") {
        assert!(line.len() <= 78, "header line over 78 characters: {line:?}");
    }
    for line in body.split("\r\n") {
        assert!(line.len() <= 76, "body line over 76 characters: {line:?}");
    }
}

#[test]
fn reply_round_trip_with_non_ascii_and_long_lines() {
    let long_line = format!("{} Ende.", "Sehr geehrte Kundin, vielen Dank für Ihre Geduld — ".repeat(12));
    let body = format!(
        "Grüße aus Köln! 日本語も大丈夫です。 🚀\n\n{long_line}\nLine with trailing spaces   \n\
         .a line starting with a dot\nFrom the start of a line\nEquals = signs == and a tab\there\n\
         Windows\r\nline endings and a\rlone CR\n\n-- \nMailroom"
    );
    let original_refs = vec![
        "<thread-root@mail.gmail.com>".to_owned(),
        "reply-1@mailroom.example".to_owned(),
        "<reply-2@mail.gmail.com>".to_owned(),
    ];
    let reply = build_reply(ReplySpec {
        subject: "RE: Aw: Re: Grüße — Bestellung nº 5531 ist nicht angekommen, bitte um schnelle Hilfe 🙏".to_owned(),
        from_name: Some("Kundendienst Müller & Söhne".to_owned()),
        body: body.clone(),
        in_reply_to: Some("<orig-42@mail.gmail.com>".to_owned()),
        references: original_refs,
        ..spec()
    })
    .expect("builds");
    assert_wire_format(&reply.raw);

    let email = parse(&reply.raw).expect("our own reply parses");
    assert_eq!(email.subject, "Re: Grüße — Bestellung nº 5531 ist nicht angekommen, bitte um schnelle Hilfe 🙏");
    assert_eq!(email.body, body.replace("\r\n", "\n").replace('\r', "\n"), "body must round-trip exactly");
    assert_eq!(email.body_source, BodySource::Plain);
    assert_eq!(email.from, "support@mailroom.example");
    assert_eq!(email.from_name.as_deref(), Some("Kundendienst Müller & Söhne"));
    assert_eq!(email.to, ["anna.schmidt@gmail.com"]);
    assert_eq!(email.message_id.as_deref(), Some(reply.message_id.as_str()));
    assert!(reply.message_id.ends_with("@mailroom.example"), "{}", reply.message_id);
    assert!(uuid::Uuid::parse_str(reply.message_id.split('@').next().expect("local")).is_ok());
    assert_eq!(email.in_reply_to.as_deref(), Some("orig-42@mail.gmail.com"));
    assert_eq!(
        email.references,
        ["thread-root@mail.gmail.com", "reply-1@mailroom.example", "reply-2@mail.gmail.com", "orig-42@mail.gmail.com"]
    );
    assert_eq!(header(&email, "Auto-Submitted"), "auto-replied");
    assert_eq!(header(&email, "X-Mailroom-Auto-Reply"), "yes");
    assert_eq!(header(&email, "MIME-Version"), "1.0");
    assert_eq!(header(&email, "Content-Type"), "text/plain; charset=utf-8");
    assert_eq!(header(&email, "Content-Transfer-Encoding"), "quoted-printable");
    assert!(email.date.is_some_and(|d| (Utc::now() - d).num_seconds().abs() < 60));
}

#[test]
fn reply_to_a_parsed_fixture_threads_correctly() {
    let original = parsed("12-reply-thread.eml");
    let reply = build_reply_at(
        ReplySpec {
            from: "support@mailroom.example".to_owned(),
            from_name: None,
            to: original.from.clone(),
            subject: original.subject.clone(),
            body: "Glad it works!".to_owned(),
            in_reply_to: original.message_id.clone(),
            references: original.references.clone(),
            extra_headers: vec![("Reply-To".to_owned(), "support@mailroom.example".to_owned())],
            message_id: None,
        },
        Utc.with_ymd_and_hms(2024, 5, 14, 11, 0, 0).single().expect("date"),
    )
    .expect("builds");
    let text = String::from_utf8(reply.raw.clone()).expect("ascii");
    assert!(text.starts_with("Date: Tue, 14 May 2024 11:00:00 +0000\r\nFrom: <support@mailroom.example>\r\n"));
    assert!(text.contains("\r\nSubject: Re: Cannot reset my password\r\n"));
    assert!(text.contains("\r\nIn-Reply-To: <CAJ8k2vZ7bQ+Rn4q9eT1yZu8vR@mail.gmail.com>\r\n"));
    assert!(text.contains("\r\nReply-To: support@mailroom.example\r\n"));

    let email = parse(&reply.raw).expect("parses");
    assert_eq!(email.subject, "Re: Cannot reset my password");
    assert_eq!(email.to, ["anna.schmidt@gmail.com"]);
    let mut expected = original.references.clone();
    expected.push(original.message_id.clone().expect("id"));
    assert_eq!(email.references, expected);
    assert_eq!(email.date, Some(Utc.with_ymd_and_hms(2024, 5, 14, 11, 0, 0).single().expect("date")));
}

#[test]
fn long_reference_chains_are_folded() {
    let references: Vec<String> =
        (0..30).map(|i| format!("<message-{i:03}.{}@mail.example.com>", "x".repeat(20))).collect();
    let reply = build_reply(ReplySpec { references: references.clone(), ..spec() }).expect("builds");
    assert_wire_format(&reply.raw);
    let email = parse(&reply.raw).expect("parses");
    assert_eq!(email.references.len(), 31);
    assert_eq!(email.references[0], references[0].trim_matches(['<', '>']));
    assert_eq!(email.references[30], "CAJ8k2vX9aQ+Lm1p3dS0xYt7uQ@mail.gmail.com");
}

#[test]
fn reply_without_thread_or_body() {
    let reply = build_reply(ReplySpec { in_reply_to: None, body: String::new(), subject: "re: re:".into(), ..spec() })
        .expect("builds");
    let text = String::from_utf8(reply.raw.clone()).expect("ascii");
    assert!(!text.contains("In-Reply-To:") && !text.contains("References:"));
    let email = parse(&reply.raw).expect("parses");
    assert_eq!(email.subject, "Re:");
    assert_eq!(email.body_source, BodySource::Empty);
}

#[test]
fn header_injection_is_impossible() {
    // Subject and display name: line breaks are neutralised, the reply still goes out.
    let reply = build_reply(ReplySpec {
        subject: "Hello\r\nBcc: victim@evil.example\r\n\r\nInjected body".to_owned(),
        from_name: Some("Support\nBcc: victim@evil.example".to_owned()),
        ..spec()
    })
    .expect("sanitised, not rejected");
    assert_wire_format(&reply.raw);
    let email = parse(&reply.raw).expect("parses");
    assert!(!email.headers.contains_key("Bcc"), "{:?}", email.headers);
    assert_eq!(email.subject, "Re: Hello  Bcc: victim@evil.example    Injected body");
    assert_eq!(email.body, "Hello Anna,\n\nplease check your spam folder.\n\nMailroom");

    // An encoded word hiding CR LF in a customer's subject cannot break out either.
    let hostile =
        parse(b"From: x@evil.example\nSubject: =?utf-8?Q?Hi=0D=0ABcc:_victim@evil.example?=\n\nhi").expect("parses");
    assert!(hostile.subject.contains('\n'), "the decoded subject really holds a line break");
    let reply = build_reply(ReplySpec { subject: hostile.subject, ..spec() }).expect("builds");
    let email = parse(&reply.raw).expect("parses");
    assert!(!email.headers.contains_key("Bcc"));

    // Addresses, ids and extra headers are rejected outright.
    let cases: Vec<(ReplySpec, IsExpected<BuildError>)> = vec![
        (ReplySpec { to: "a@b.example\r\nBcc: v@evil.example".into(), ..spec() }, |e| {
            matches!(e, BuildError::InvalidAddress { field: "to", .. })
        }),
        (ReplySpec { from: "support@mailroom.example\n".into(), ..spec() }, |e| {
            matches!(e, BuildError::InvalidAddress { field: "from", .. })
        }),
        (ReplySpec { in_reply_to: Some("<id@x>\r\nBcc: v@evil.example".into()), ..spec() }, |e| {
            matches!(e, BuildError::InvalidMessageId { field: "in_reply_to", .. })
        }),
        (ReplySpec { references: vec!["<a@x>".into(), "<b@x>\nBcc: v@evil.example".into()], ..spec() }, |e| {
            matches!(e, BuildError::InvalidMessageId { field: "references", .. })
        }),
        (ReplySpec { extra_headers: vec![("X-Ticket".into(), "1\r\nBcc: v@evil.example".into())], ..spec() }, |e| {
            matches!(e, BuildError::HeaderInjection(_))
        }),
        (ReplySpec { extra_headers: vec![("X-Ticket\r\nBcc".into(), "v@evil.example".into())], ..spec() }, |e| {
            matches!(e, BuildError::HeaderInjection(_))
        }),
        (ReplySpec { extra_headers: vec![("Bad Name".into(), "x".into())], ..spec() }, |e| {
            matches!(e, BuildError::InvalidHeaderName(_))
        }),
        (ReplySpec { extra_headers: vec![("bcc".into(), "v@evil.example".into())], ..spec() }, |e| {
            matches!(e, BuildError::ReservedHeader(_))
        }),
        (ReplySpec { extra_headers: vec![("auto-submitted".into(), "no".into())], ..spec() }, |e| {
            matches!(e, BuildError::ReservedHeader(_))
        }),
    ];
    for (spec, is_expected) in cases {
        let err = build_reply(spec.clone()).expect_err("must be rejected");
        assert!(is_expected(&err), "{spec:?} gave {err:?}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn non_ascii_extra_header_values_are_encoded() {
    let reply = build_reply(ReplySpec {
        extra_headers: vec![("X-Ticket-Title".into(), "Rückerstattung für Bestellung 5531".into())],
        ..spec()
    })
    .expect("builds");
    assert_wire_format(&reply.raw);
    let email = parse(&reply.raw).expect("parses");
    assert_eq!(header(&email, "X-Ticket-Title"), "Rückerstattung für Bestellung 5531");
}

#[test]
fn nul_characters_decoded_from_encoded_words_or_qp_are_dropped() {
    let raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: =?utf-8?q?Desk=00question?=\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nHello=00 there\r\n";
    let email = mail_mime::parse(raw).expect("parses");
    assert_eq!(email.subject, "Deskquestion");
    assert!(!email.body.contains('\0') && email.body.contains("Hello there"), "{:?}", email.body);
    assert!(email.headers.values().all(|v| !v.contains('\0')));
}
