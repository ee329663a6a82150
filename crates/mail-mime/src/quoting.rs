//! What the sender of an email wrote, without the conversation below it: quoted (`>`) lines,
//! `On … wrote:` attributions (English, German, French, Spanish, wrapped or not), Outlook's
//! "Original Message" and `From:`/`Sent:` blocks, and the signature are removed. The classifier
//! reads only these lines, and the generator retrieves with and prompts with only these lines,
//! so both see the same email.

/// The sender's own text of `body` (see [`own_lines`]), cut after `max_chars` characters: what a
/// model is given of an email. Long pastes and old threads cost tokens and latency, and only
/// dilute the question.
pub fn own_text(body: &str, max_chars: usize) -> String {
    let text = own_lines(body).join("\n");
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => text[..cut].to_owned(),
        None => text.to_owned(),
    }
}

/// The lines of `body` the sender wrote: quoted text, earlier messages and the signature removed.
pub fn own_lines(body: &str) -> Vec<&str> {
    let lines: Vec<&str> = body.lines().collect();
    let mut kept: Vec<&str> = Vec::with_capacity(lines.len());
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if line.starts_with('>') {
            i += 1;
            continue;
        }
        let next = lines.get(i + 1).map_or("", |l| l.trim());
        if let Some(span) = attribution_span(line, next) {
            if kept.iter().any(|l| !l.trim().is_empty()) {
                // Top-posted reply: everything below is the earlier conversation.
                break;
            }
            // Bottom-posted reply: skip the attribution, the `>` lines are skipped above.
            i += span;
            continue;
        }
        if lines[i] == "-- " || line == "--" || is_earlier_message_separator(line, next) {
            break;
        }
        kept.push(lines[i]);
        i += 1;
    }
    kept
}

/// How many lines an `On … wrote:` style attribution spans (clients wrap long ones), if any.
fn attribution_span(line: &str, next: &str) -> Option<usize> {
    const OPENERS: [&str; 4] = ["on ", "am ", "le ", "el "];
    let is_end = |s: &str| {
        (s.ends_with(':') || s.ends_with(": "))
            && (contains_ignore_ascii_case(s, "wrote")
                || s.contains("schrieb")
                || s.contains("écrit")
                || s.contains("ecrit")
                || s.contains("escribió")
                || s.contains("escribio"))
    };
    let opens = OPENERS.iter().any(|o| starts_with_ignore_ascii_case(line, o));
    if is_end(line) && (opens || line.contains('@')) {
        Some(1)
    } else if opens && line.len() < 200 && is_end(next) {
        Some(2)
    } else {
        None
    }
}

/// Outlook-style separators before an earlier message.
fn is_earlier_message_separator(line: &str, next: &str) -> bool {
    const ORIGINAL: [&str; 4] =
        ["original message", "ursprüngliche nachricht", "message d'origine", "mensaje original"];
    if line.starts_with("---") && ORIGINAL.iter().any(|o| contains_ignore_ascii_case(line, o)) {
        return true;
    }
    if line.len() >= 10 && line.bytes().all(|b| b == b'_') {
        return true;
    }
    // `From:` followed by `Sent:` is Outlook's quoted header block; a forward (`From:` then
    // `Date:` or `Subject:`) is kept on purpose.
    const FROM: [&str; 3] = ["from:", "von:", "de :"];
    const SENT: [&str; 3] = ["sent:", "gesendet:", "envoyé :"];
    FROM.iter().any(|f| starts_with_ignore_ascii_case(line, f))
        && SENT.iter().any(|s| starts_with_ignore_ascii_case(next, s))
}

/// Whether `s` starts with `prefix`, ASCII letters compared case-insensitively.
pub fn starts_with_ignore_ascii_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// Whether `haystack` contains `needle`, ASCII letters compared case-insensitively.
pub fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    haystack.as_bytes().windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_history_in_several_languages_is_removed() {
        let top_posted = "Where is my order?\n\nOn Mon, 5 May 2025, Support <s@x> wrote:\n> old text";
        assert_eq!(own_lines(top_posted), ["Where is my order?", ""]);
        let german = "Wo bleibt meine Bestellung?\nAm 05.05.2025 um 10:00 schrieb Support <s@x>:\n> alt";
        assert_eq!(own_lines(german), ["Wo bleibt meine Bestellung?"]);
        let outlook = "Still broken.\n-----Original Message-----\nFrom: s@x\nolder";
        assert_eq!(own_lines(outlook), ["Still broken."]);
        let signed = "It beeps.\n-- \nJane Doe\nACME";
        assert_eq!(own_lines(signed), ["It beeps."]);
    }

    #[test]
    fn own_text_is_capped_on_a_character_boundary() {
        assert_eq!(own_text("héllo wörld\n> quoted", 7), "héllo w");
        assert_eq!(own_text("  short  ", 100), "short");
        assert_eq!(own_text(&"é".repeat(50), 10).chars().count(), 10);
    }
}
