//! What the sender of an email wrote, without the conversation below it: quoted (`>`) lines,
//! `On … wrote:` attributions (English, German, French, Spanish, wrapped or not), Outlook's
//! "Original Message" and `From:`/`Sent:` blocks, and the signature are removed. The classifier
//! reads only these lines, and the generator retrieves with and prompts with only these lines,
//! so both see the same email.
//!
//! [`request_text`] goes one step further for retrieval: without the greeting before the request
//! and the closing and name after it. "Hello", "Thanks" and "Sam" are words no passage answers;
//! counted as question terms they only dilute how much of the question a passage covers.

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

/// The request of an email: [`own_lines`] without the greeting lines before it and the closing
/// and name lines after it (see [`is_greeting`], [`is_closing`]), joined and cut after
/// `max_chars` characters. An email that is nothing but a greeting and a name keeps its text.
pub fn request_text(body: &str, max_chars: usize) -> String {
    let lines = own_lines(body);
    let mut start = 0;
    let mut end = lines.len();
    while start < end && (lines[start].trim().is_empty() || is_greeting(lines[start])) {
        start += 1;
    }
    while end > start && (lines[end - 1].trim().is_empty() || is_closing(lines[end - 1])) {
        end -= 1;
    }
    if start == end {
        return own_text(body, max_chars);
    }
    own_text(&lines[start..end].join("\n"), max_chars)
}

/// Opening words of a greeting line, lower case.
#[rustfmt::skip]
const GREETINGS: &[&str] = &[
    "hello", "hi", "hey", "dear", "good morning", "good afternoon", "good evening", "greetings",
    "hallo", "guten tag", "guten morgen", "liebe", "lieber", "sehr geehrte", "moin", "servus",
    "bonjour", "bonsoir", "salut", "madame", "monsieur", "hola", "buenos días", "buenas", "estimado", "estimada",
    "ciao", "buongiorno", "salve", "gentile", "olá", "ola", "bom dia", "boa tarde", "prezado", "prezada",
    "hej", "hei", "goedemorgen", "goedemiddag", "beste",
    "здравствуйте", "привет", "добрый день", "добрый вечер", "уважаемый", "уважаемая",
    "こんにちは", "お世話になっております", "您好", "你好",
];

/// Opening words of a closing line, lower case.
#[rustfmt::skip]
const CLOSINGS: &[&str] = &[
    "thanks", "thank you", "thx", "many thanks", "regards", "best", "kind regards", "best regards", "cheers",
    "sincerely", "yours", "all the best", "br", "danke", "vielen dank", "viele grüße", "grüße", "gruß", "mfg",
    "liebe grüße", "beste grüße", "mit freundlichen grüßen", "freundliche grüße", "merci", "cordialement", "bien à vous", "bonne journée", "gracias", "saludos",
    "un saludo", "atentamente", "grazie", "saluti", "cordiali saluti", "distinti saluti", "obrigado", "obrigada",
    "atenciosamente", "abraços", "tack", "mvh", "hilsen", "groeten", "met vriendelijke groet",
    "спасибо", "с уважением", "заранее спасибо", "よろしくお願いします", "よろしくお願いいたします", "谢谢", "感谢", "此致",
];

/// Whether `line` is a greeting: short, and opening with a greeting word or ending with a
/// comma ("Hi team,", "Dear Ms Ito,").
fn is_greeting(line: &str) -> bool {
    let line = line.trim();
    let lower = line.to_lowercase();
    short_line(line, 6)
        && !line.ends_with('?')
        && (GREETINGS.iter().any(|g| opens_with_word(&lower, g)) || (line.ends_with(',') && short_line(line, 4)))
}

/// Whether `line` is a closing ("Thanks in advance,", "Best regards") or the sender's name
/// below it: one to three capitalised words of letters only ("Sam", "Jane Doe").
fn is_closing(line: &str) -> bool {
    let line = line.trim();
    let lower = line.to_lowercase();
    if !short_line(line, 6) || line.ends_with('?') {
        return false;
    }
    if CLOSINGS.iter().any(|c| opens_with_word(&lower, c)) {
        return true;
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    (1..=3).contains(&words.len())
        && words.iter().all(|w| {
            w.chars().next().is_some_and(char::is_uppercase)
                && w.chars().all(|c| c.is_alphabetic() || matches!(c, '.' | '-' | '\''))
        })
}

/// At most `words` words and 60 characters.
fn short_line(line: &str, words: usize) -> bool {
    line.chars().count() <= 60 && line.split_whitespace().count() <= words
}

/// Whether `lower` starts with `word` followed by a non-letter (or nothing): "hi," and "hi team"
/// open with "hi", "his order" does not. Scripts without spaces need no boundary.
fn opens_with_word(lower: &str, word: &str) -> bool {
    lower
        .strip_prefix(word)
        .is_some_and(|rest| rest.chars().next().is_none_or(|c| !c.is_alphabetic() || !c.is_ascii() && !word.is_ascii()))
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
    fn the_request_is_without_greeting_closing_and_name() {
        let body = "Hello,\n\nhow many days do I have to return the desk?\n\nThanks in advance,\nSam Park\n";
        assert_eq!(request_text(body, 1000), "how many days do I have to return the desk?");
        let german = "Sehr geehrte Damen und Herren,\nmein Tisch zeigt E04.\nMit freundlichen Grüßen\nJ. Weber";
        assert_eq!(request_text(german, 1000), "mein Tisch zeigt E04.");
        let russian = "Здравствуйте!\nКак сбросить пароль?\nСпасибо";
        assert_eq!(request_text(russian, 1000), "Как сбросить пароль?");
        // Lines that only look like a name or greeting at first sight stay: a code, a question,
        // a word that merely starts like a greeting, a longer sentence.
        assert_eq!(request_text("The display shows\nError E04", 1000), "The display shows\nError E04");
        assert_eq!(request_text("History of my order?\nHi there?", 1000), "History of my order?\nHi there?");
        assert_eq!(
            request_text("Hi, the desk wobbles when it is fully raised, what can I do", 1000),
            "Hi, the desk wobbles when it is fully raised, what can I do"
        );
        // Nothing but pleasantries: the text is kept rather than nothing searched for.
        assert_eq!(request_text("Hi,\nThanks\nSam", 1000), "Hi,\nThanks\nSam");
        assert_eq!(
            request_text("こんにちは。\n返品はできますか？\nよろしくお願いします。", 1000),
            "返品はできますか？"
        );
    }

    #[test]
    fn own_text_is_capped_on_a_character_boundary() {
        assert_eq!(own_text("héllo wörld\n> quoted", 7), "héllo w");
        assert_eq!(own_text("  short  ", 100), "short");
        assert_eq!(own_text(&"é".repeat(50), 10).chars().count(), 10);
    }
}
