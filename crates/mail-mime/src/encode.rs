//! Encoders for outgoing mail: quoted-printable bodies (RFC 2045 §6.7), RFC 2047 encoded words
//! for non-ASCII header text, and header folding (RFC 5322 §2.2.3).
//!
//! Only encoding lives here; decoding inbound mail is mail-parser's job, and the tests check
//! these encoders against it.

use base64::Engine as _;

/// Longest encoded line quoted-printable allows, not counting the CRLF (RFC 2045 §6.7 rule 5).
const QP_MAX_LINE: usize = 76;

/// Longest line we aim for when folding headers (RFC 5322 §2.1.1 "SHOULD be no more than 78").
pub(crate) const HEADER_SOFT_LIMIT: usize = 78;

/// Longest line the format allows at all (RFC 5322 §2.1.1 "MUST be no more than 998").
pub(crate) const HEADER_HARD_LIMIT: usize = 998;

/// Longest RFC 2047 encoded word (RFC 2047 §2).
const ENCODED_WORD_MAX: usize = 75;

/// Longest header line that holds an encoded word (RFC 2047 §2).
pub(crate) const ENCODED_LINE_MAX: usize = 76;

/// Encodes `text` as quoted-printable with CRLF line endings.
///
/// Line breaks in the input (`\n`, `\r\n` or a lone `\r`) become hard CRLF breaks; everything
/// else round-trips exactly. Lines are at most 76 characters, with `=` soft breaks that never split
/// an `=XX` escape; `=`, non-ASCII bytes and control characters are escaped, as is whitespace at the
/// end of a line (which transports may strip). A leading `.` and a leading `From ` are escaped too,
/// because SMTP dot-stuffing bugs and mbox storage mangle them.
pub fn encode_quoted_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    for (i, line) in normalized.split('\n').enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        encode_qp_line(line.as_bytes(), &mut out);
    }
    out
}

fn encode_qp_line(line: &[u8], out: &mut String) {
    let mut col = 0;
    for (i, &b) in line.iter().enumerate() {
        let last = i + 1 == line.len();
        let escape = match b {
            b'=' => true,
            b' ' | b'\t' => last,
            b'.' => i == 0,
            b'F' => i == 0 && line.starts_with(b"From "),
            33..=126 => false,
            _ => true,
        };
        let width = if escape { 3 } else { 1 };
        // Keep room for the '=' of a soft break unless this is the line's final token.
        let limit = if last { QP_MAX_LINE } else { QP_MAX_LINE - 1 };
        if col + width > limit {
            out.push_str("=\r\n");
            col = 0;
        }
        if escape {
            push_hex_escape(b, out);
        } else {
            out.push(char::from(b));
        }
        col += width;
    }
}

fn push_hex_escape(b: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('=');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0x0F)]));
}

/// Encodes `text` as a sequence of RFC 2047 `B` encoded words in UTF-8, each at most 75
/// characters and each holding whole characters, ready to be joined by folding whitespace.
///
/// Decoders ignore the whitespace between adjacent encoded words, so the words decode back to
/// exactly `text`, spaces included.
pub fn encode_words(text: &str) -> Vec<String> {
    encode_words_fitting(text, ENCODED_WORD_MAX)
}

/// Like [`encode_words`], with the first word at most `first_max` characters so that it fits on
/// the header's first line after `Name: ` (RFC 2047 §2: such lines stay within 76 characters).
/// A first word always carries at least one character, even if that overshoots a tiny budget.
pub(crate) fn encode_words_fitting(text: &str, first_max: usize) -> Vec<String> {
    const PREFIX: &str = "=?utf-8?B?";
    const SUFFIX: &str = "?=";
    // 4 base64 characters carry 3 bytes; what fits between prefix and suffix, rounded down.
    let payload = |word_max: usize| word_max.saturating_sub(PREFIX.len() + SUFFIX.len()) / 4 * 3;
    let mut words = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let max_bytes = payload(if words.is_empty() { first_max.min(ENCODED_WORD_MAX) } else { ENCODED_WORD_MAX });
        let mut end = (start + max_bytes).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end == start {
            // Budget smaller than one character: take the whole character anyway.
            end = text[start..].chars().next().map_or(text.len(), |c| start + c.len_utf8());
        }
        let chunk = &text.as_bytes()[start..end];
        words.push(format!("{PREFIX}{}{SUFFIX}", base64::engine::general_purpose::STANDARD.encode(chunk)));
        start = end;
    }
    words
}

/// Whether unstructured header text can be written as is: printable ASCII words separated by
/// single spaces, nothing that looks like an encoded word, and no word too long to fold.
pub(crate) fn is_plain_header_text(text: &str) -> bool {
    !text.is_empty()
        && text.bytes().all(|b| (33..=126).contains(&b) || b == b' ')
        && !text.contains("=?")
        && !text.starts_with(' ')
        && !text.ends_with(' ')
        && !text.contains("  ")
        && text.split(' ').all(|w| w.len() <= HEADER_SOFT_LIMIT - 12)
}

/// Words for an unstructured header value (Subject, an extra header): plain words when
/// [`is_plain_header_text`], RFC 2047 words otherwise. `used` is how much of the first line is
/// taken already (`Name: ` and any literal words before these).
pub(crate) fn unstructured_words(text: &str, used: usize) -> Vec<String> {
    if text.is_empty() {
        Vec::new()
    } else if is_plain_header_text(text) {
        text.split(' ').map(str::to_owned).collect()
    } else {
        encode_words_fitting(text, ENCODED_LINE_MAX.saturating_sub(used))
    }
}

/// Writes `Name: word word…` folded before a word wherever the line would pass 78 characters.
/// Returns `None` if a single word cannot fit in a 998-character line.
pub(crate) fn fold_header(name: &str, words: &[String]) -> Option<String> {
    let mut out = String::with_capacity(name.len() + 2 + words.iter().map(|w| w.len() + 1).sum::<usize>());
    out.push_str(name);
    out.push(':');
    let mut col = out.len();
    for word in words {
        if col + 1 + word.len() > HEADER_SOFT_LIMIT && col > name.len() + 1 {
            out.push_str("\r\n");
            col = 0;
        }
        out.push(' ');
        out.push_str(word);
        col += 1 + word.len();
        if col > HEADER_HARD_LIMIT {
            return None;
        }
    }
    out.push_str("\r\n");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qp_decode(encoded: &str) -> String {
        let bytes = mail_parser::decoders::quoted_printable::quoted_printable_decode(encoded.as_bytes())
            .expect("mail-parser accepts our quoted-printable");
        String::from_utf8(bytes).expect("utf-8").replace("\r\n", "\n")
    }

    #[test]
    fn qp_escapes_and_soft_breaks() {
        let text = format!("Grüße = 100% {}\n.dot\nFrom here\ntrailing \nx", "long ".repeat(40));
        let encoded = encode_quoted_printable(&text);
        for line in encoded.split("\r\n") {
            assert!(line.len() <= QP_MAX_LINE, "line too long: {line:?}");
            assert!(!line.ends_with(' ') && !line.ends_with('\t'), "trailing whitespace: {line:?}");
            assert!(line.bytes().all(|b| (32..=126).contains(&b)), "non-ASCII in {line:?}");
        }
        assert!(encoded.starts_with("Gr=C3=BC=C3=9Fe =3D 100% long"));
        assert!(encoded.contains("\r\n=2Edot\r\n=46rom here\r\ntrailing=20\r\nx"));
        assert_eq!(qp_decode(&encoded), text);
    }

    #[test]
    fn qp_never_splits_escapes() {
        for len in 70..80 {
            let text = format!("{}é{}", "a".repeat(len), "ü".repeat(50));
            let encoded = encode_quoted_printable(&text);
            assert!(encoded.split("\r\n").all(|l| l.len() <= QP_MAX_LINE));
            assert_eq!(qp_decode(&encoded), text);
        }
    }

    #[test]
    fn qp_line_of_exactly_76() {
        let line = "b".repeat(76);
        assert_eq!(encode_quoted_printable(&line), line);
        let line = "b".repeat(77);
        assert_eq!(encode_quoted_printable(&line), format!("{}=\r\nbb", "b".repeat(75)));
    }

    #[test]
    fn encoded_words_are_short_and_split_on_chars() {
        let text = "Grüße aus Köln — 日本語のテキスト ".repeat(5);
        let words = encode_words(&text);
        assert!(words.len() > 1);
        assert!(words.iter().all(|w| w.len() <= ENCODED_WORD_MAX && w.starts_with("=?utf-8?B?")));
        let joined: String = words
            .iter()
            .map(|w| {
                let b64 = &w["=?utf-8?B?".len()..w.len() - 2];
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).expect("b64"))
                    .expect("whole chars")
            })
            .collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn first_encoded_word_fits_the_budget() {
        let words = encode_words_fitting(&"ü".repeat(40), 76 - "Subject: Re: ".len());
        assert!(words[0].len() <= 76 - "Subject: Re: ".len());
        assert!(words[1..].iter().all(|w| w.len() <= ENCODED_WORD_MAX));
        // A budget too small for any character still makes progress, one character per word.
        let words = encode_words_fitting("🚀a", 5);
        assert_eq!(words.len(), 2);
        assert_eq!(words[0], "=?utf-8?B?8J+agA==?=");
    }

    #[test]
    fn folding() {
        let words: Vec<String> = (0..30).map(|i| format!("<id{i}@example.com>")).collect();
        let folded = fold_header("References", &words).expect("fits");
        assert!(folded.ends_with("\r\n"));
        for line in folded.trim_end().split("\r\n") {
            assert!(line.len() <= HEADER_SOFT_LIMIT, "{line:?}");
        }
        assert_eq!(folded.replace("\r\n ", " ").trim_end(), format!("References: {}", words.join(" ")));
        assert!(fold_header("X", &["a".repeat(1200)]).is_none());
    }

    #[test]
    fn plain_text_detection() {
        assert!(is_plain_header_text("Re: Cannot reset my password"));
        assert!(!is_plain_header_text("Re: Grüße"));
        assert!(!is_plain_header_text("Re: =?utf-8?Q?x?="));
        assert!(!is_plain_header_text("two  spaces"));
        assert!(!is_plain_header_text(&"x".repeat(100)));
    }
}
