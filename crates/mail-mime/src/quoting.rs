//! What the sender of an email wrote, without the conversation below it: quoted (`>`) lines,
//! `On … wrote:` attributions (English, German, French, Spanish, wrapped or not), Outlook's
//! "Original Message" and `From:`/`Sent:` blocks, and the signature are removed. The classifier
//! reads only these lines, and the generator retrieves with and prompts with only these lines,
//! so both see the same email.
//!
//! [`request_text`] goes one step further for retrieval: without the greeting before the request
//! and the closing and name after it. "Hello", "Thanks" and "Sam" are words no passage answers
//! (nor ご担当者様, お世話になっております, よろしくお願いいたします and 山田 in Japanese mail, which
//! would even find passages: manuals say お願いします too); counted as question terms they only
//! dilute how much of the question a passage covers.

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
    while end > start {
        let line = lines[end - 1];
        // A name in a script without capitals (山田太郎, 王伟) looks like a short request line;
        // only the closing above it tells it apart.
        let signed = || {
            is_uncased_name(line)
                && lines[start..end - 1].iter().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| is_closing(l))
        };
        if !(line.trim().is_empty() || is_closing(line) || signed()) {
            break;
        }
        end -= 1;
    }
    if start == end {
        return own_text(body, max_chars);
    }
    own_text(&lines[start..end].join("\n"), max_chars)
}

/// The question an email asks, as retrieval searches for it (the generator for its passages,
/// the classifier to see whether the agent's documents speak about it): the subject (unless it
/// names no topic: "Question", "お問い合わせ", see [`is_generic_subject`]) and the
/// [`request_text`] of the body, at most [`QUESTION_MAX_CHARS`] characters.
pub fn question_text(subject: &str, body: &str) -> String {
    // Retrieval needs the gist, not a 10 MiB paste: re-ranking compares every question word with
    // every passage, so a huge email would cost seconds for nothing.
    let subject = if is_generic_subject(subject) { "" } else { subject.trim() };
    let text = format!("{subject}\n{}", request_text(body, QUESTION_MAX_CHARS));
    own_text(&text, QUESTION_MAX_CHARS)
}

/// Longest question text used for retrieval and re-ranking.
pub const QUESTION_MAX_CHARS: usize = 4000;

/// Whether a subject line names no topic: nothing but words saying that the email is a
/// question or a request ("Question", "Help!", "Re: Anfrage", "Вопрос", "お問い合わせ", "咨询"),
/// reply and forward prefixes, and punctuation. Searched with the question, such a word is
/// rare in manuals and so weighs much: it drew passages about "questions" (a FAQ) above the
/// answer. A subject with anything else — a product, an error code, an order number — is kept.
pub fn is_generic_subject(subject: &str) -> bool {
    let mut rest = subject.trim();
    while let Some(stripped) = crate::build::strip_reply_prefix(rest) {
        rest = stripped.trim_start();
    }
    rest.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .all(|w| GENERIC_SUBJECT_WORDS.contains(&w.to_lowercase().as_str()))
}

/// The words of [`is_generic_subject`], lower case: the forward prefixes and the other clients'
/// reply prefixes that `reply_subject` leaves alone (it strips `Re:`, `Aw:`, `Sv:`), then
/// "question", "help", "request", "urgent" and the like in the languages the classifier or
/// retrieval knows.
#[rustfmt::skip]
const GENERIC_SUBJECT_WORDS: &[&str] = &[
    "fwd", "fw", "wg", "vs", "antw", "tr", "rif", "r",
    "question", "questions", "help", "inquiry", "enquiry", "query", "request", "support", "urgent", "please",
    "problem", "issue", "info", "information", "hello", "hi", "a", "quick", "small",
    "frage", "fragen", "hilfe", "anfrage", "dringend", "kurze", "eine",
    "demande", "aide", "renseignement", "renseignements", "une",
    "pregunta", "consulta", "ayuda", "urgente", "problema", "una",
    "vraag", "hulp", "verzoek", "een",
    "domanda", "richiesta", "aiuto", "informazioni",
    "pergunta", "dúvida", "duvida", "ajuda", "pedido",
    "pytanie", "pomoc", "prośba", "zapytanie", "pilne",
    "вопрос", "помощь", "помогите", "обращение", "запрос", "срочно", "проблема",
    "お問い合わせ", "問い合わせ", "質問", "ご質問", "相談", "ご相談", "至急",
    "咨询", "问题", "求助", "请教", "紧急",
];

/// Opening words of a greeting line, lower case.
#[rustfmt::skip]
const GREETINGS: &[&str] = &[
    "hello", "hi", "hey", "dear", "good morning", "good afternoon", "good evening", "greetings",
    "hallo", "guten tag", "guten morgen", "liebe", "lieber", "sehr geehrte", "moin", "servus",
    "bonjour", "bonsoir", "salut", "madame", "monsieur", "hola", "buenos días", "buenas", "estimado", "estimada",
    "ciao", "buongiorno", "salve", "gentile", "olá", "ola", "bom dia", "boa tarde", "prezado", "prezada",
    "hej", "hei", "goedemorgen", "goedemiddag", "beste",
    "здравствуйте", "привет", "добрый день", "добрый вечер", "уважаемый", "уважаемая",
    "こんにちは", "お世話になっております", "いつもお世話になっております", "お世話になります",
    "いつもお世話になります", "您好", "你好", "尊敬的",
];

/// Opening words of a closing line, lower case.
#[rustfmt::skip]
const CLOSINGS: &[&str] = &[
    "thanks", "thank you", "thx", "many thanks", "regards", "best", "kind regards", "best regards", "cheers",
    "sincerely", "yours", "all the best", "br", "danke", "vielen dank", "viele grüße", "grüße", "gruß", "mfg",
    "liebe grüße", "beste grüße", "mit freundlichen grüßen", "freundliche grüße", "merci", "cordialement", "bien à vous", "bonne journée", "gracias", "saludos",
    "un saludo", "atentamente", "grazie", "saluti", "cordiali saluti", "distinti saluti", "obrigado", "obrigada",
    "atenciosamente", "abraços", "tack", "mvh", "hilsen", "groeten", "met vriendelijke groet",
    "спасибо", "с уважением", "заранее спасибо",
    // Japanese: "よろしくお願い" opens します, いたします and 致します alike (no word boundary needed).
    "よろしくお願い", "宜しくお願い", "何卒よろしく", "何卒宜しく", "以上、よろしく", "以上よろしく",
    "ありがとうございます", "ありがとうございました",
    "谢谢", "多谢", "非常感谢", "感谢", "此致", "敬礼", "祝好",
];

/// Whether `line` is a greeting: short, and opening with a greeting word, or naming whom it
/// is addressed to: ending with a comma ("Hi team,", "Dear Ms Ito,"), a Chinese full-width
/// colon (客服部：) or a Japanese honorific (ご担当者様, サポート御中).
fn is_greeting(line: &str) -> bool {
    let line = line.trim();
    let lower = line.to_lowercase();
    let addressee = line.ends_with([',', '，', '：']) || line.ends_with('様') || line.ends_with("御中");
    short_line(line, 6)
        && !line.ends_with('?')
        && (GREETINGS.iter().any(|g| opens_with_word(&lower, g)) || (addressee && short_line(line, 4)))
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

/// Whether `line` could be a name in a script without capital letters (Chinese, Japanese, and
/// likewise Arabic or Hebrew): one to three words of such letters, at most eight letters in all.
fn is_uncased_name(line: &str) -> bool {
    let line = line.trim();
    let letters = line.chars().filter(|c| !c.is_whitespace()).count();
    (1..=8).contains(&letters)
        && line.split_whitespace().count() <= 3
        && line.chars().all(|c| c.is_whitespace() || (c.is_alphabetic() && !c.is_uppercase() && !c.is_lowercase()))
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
    fn the_question_drops_quoted_history_greeting_and_name_and_is_capped() {
        let q = question_text("Desk shows E04", "Hi,\nit beeps.\n> old quoted text\nOn Mon, Bob wrote:\nolder");
        assert_eq!(q, "Desk shows E04\nit beeps.");
        let q = question_text("Return policy", "Hello,\n\nhow do I start a return?\n\nSam");
        assert_eq!(q, "Return policy\nhow do I start a return?");
        let q = question_text("Вопрос", "Здравствуйте!\nКак собрать пакет в chroot?\nС уважением,\nИван Петров");
        assert_eq!(q, "Как собрать пакет в chroot?");
        let huge = "é".repeat(3 * QUESTION_MAX_CHARS);
        assert_eq!(question_text("s", &huge).chars().count(), QUESTION_MAX_CHARS);
    }

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
    fn chinese_and_japanese_letters_lose_their_addressee_greeting_closing_and_name() {
        // As Japanese and Chinese business mail is written: the addressee, a set greeting, the
        // request, a set closing, then the name alone on its line.
        let japanese = "Northwind サポートご担当者様\n\nいつもお世話になっております。\n\n\
                        Debian のタイムゾーンを変更したいのですが、どのコマンドを使えばよいでしょうか。\n\n\
                        何卒よろしくお願い致します。\n山田太郎\n";
        assert_eq!(
            request_text(japanese, 1000),
            "Debian のタイムゾーンを変更したいのですが、どのコマンドを使えばよいでしょうか。"
        );
        let chinese = "尊敬的客服：\n您好！\n怎样修改 Debian 系统的时区？\n非常感谢！\n此致\n敬礼\n王伟";
        assert_eq!(request_text(chinese, 1000), "怎样修改 Debian 系统的时区？");
        // A short last line without a closing above it may be the request itself: it stays.
        assert_eq!(request_text("お世話になります。\n返品可能", 1000), "返品可能");
    }

    #[test]
    fn a_subject_that_only_says_question_names_no_topic() {
        for generic in ["Question", "Help!", "Re: Anfrage", "Fwd: Quick question", "Вопрос", "お問い合わせ", "咨询", ""]
        {
            assert!(is_generic_subject(generic), "{generic:?}");
        }
        for topical in
            ["Question about E04", "Order 48213", "Frage zur Rückgabe", "Вопрос о quilt", "返品について", "修改时区"]
        {
            assert!(!is_generic_subject(topical), "{topical:?}");
        }
    }

    #[test]
    fn own_text_is_capped_on_a_character_boundary() {
        assert_eq!(own_text("héllo wörld\n> quoted", 7), "héllo w");
        assert_eq!(own_text("  short  ", 100), "short");
        assert_eq!(own_text(&"é".repeat(50), 10).chars().count(), 10);
    }
}
