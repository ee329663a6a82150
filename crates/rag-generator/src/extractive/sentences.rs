//! Sentences of a retrieved passage, fit to be quoted to a customer.
//!
//! A passage is a chunk of a document as ingested: Markdown with headings, emphasis, bullets and
//! tables; plain text wrapped at 80 columns with underlined headings; PDF text whose headings run
//! into the paragraph after them ("Weight capacity The Lift Pro lifts …") and whose list items
//! sit inline ("… position. 2. Press and hold ▼."). Chunks also start and end wherever the
//! chunker cut, often mid-sentence. [`sentences`] turns such a passage into plain sentences,
//! marking which are whole — starting at a sentence boundary and ending with terminal
//! punctuation — and leaving out boilerplate (copyright and trademark lines, document numbers,
//! tables of contents) that answers no question.

use embedders::script::{Script, is_han_or_kana, letter_script};

/// A sentence of a passage, markup removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// The text, whitespace collapsed.
    pub text: String,
    /// Starts at a sentence boundary and ends with terminal punctuation: not a piece cut off by
    /// chunking, a heading or a table row.
    pub whole: bool,
}

/// Words that end a sentence only when a number does not follow ("No. 5", "p. 4", "rev. C").
const ABBREVIATIONS_BEFORE_NUMBERS: &[&str] = &["no", "nr", "p", "pp", "fig", "ch", "sec", "vol", "art", "ref", "rev"];
/// Words that never end a sentence.
const ABBREVIATIONS: &[&str] = &["vs", "mr", "mrs", "ms", "dr", "st", "approx", "ca", "incl", "cf", "inc", "ltd"];

/// Capitalised words that start the body of a section in PDF text, where the heading before them
/// lost its line break: "Duty cycle The motors may run …", "3. Assembly Work on a soft surface".
/// Only words that are capitalised mid-sentence almost never (articles, pronouns, conjunctions).
const SECTION_STARTERS: &[&str] = &[
    "The", "To", "When", "If", "Try", "A", "An", "By", "This", "These", "Most", "Your", "You", "We", "Our", "It",
    "Work", "Damaged", "Remove", "Treat", "Some", "Every", "Each", "All",
];

/// Words a quotable sentence has at most: a longer "sentence" is a flattened table or list
/// that reads as a wall of text.
const MAX_SENTENCE_WORDS: usize = 80;

/// Words a heading that ran into its paragraph may have at most.
const MAX_HEADING_WORDS: usize = 8;

/// The sentences of `passage` in order, boilerplate left out.
pub fn sentences(passage: &str) -> Vec<Sentence> {
    let mut out = Vec::new();
    for unit in units(passage) {
        // A copyright notice takes its paragraph with it: the policy-may-change and trademark
        // sentences around it are the same legal footer.
        if is_copyright(&unit) {
            continue;
        }
        let unit = strip_inline_markup(&unit);
        // PDF bullets come inline: "Conditions • The return must be … • The desk must be …".
        for item in unit.split('•') {
            let item = strip_heading_prefix(item.trim());
            for text in split(item) {
                if text.is_empty() || is_boilerplate(&text) {
                    continue;
                }
                // "Yes." or "No." says nothing without the question it answered.
                let words = text.split_whitespace().count() + text.chars().filter(|&c| is_cjk(c)).count() / 2;
                let whole =
                    starts_at_boundary(&text) && ends_with_terminal(&text) && (3..=MAX_SENTENCE_WORDS).contains(&words);
                out.push(Sentence { text, whole });
            }
        }
    }
    out
}

/// Paragraphs and list items of a passage, with Markdown headings, table rows, rules and
/// underlined (setext) headings left out and wrapped lines joined.
fn units(passage: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let flush = |current: &mut String, out: &mut Vec<String>| {
        if !current.trim().is_empty() {
            out.push(current.trim().to_owned());
        }
        current.clear();
    };
    for line in passage.lines() {
        let line = line.trim();
        if line.is_empty() {
            flush(&mut current, &mut out);
        } else if line.len() >= 3 && line.chars().all(|c| matches!(c, '=' | '-' | '_' | '*' | '~')) {
            // An underline makes the line above it a heading; a rule separates.
            current.clear();
        } else if line.starts_with('#') || line.starts_with('|') {
            flush(&mut current, &mut out);
        } else if let Some(rest) = list_item(line) {
            flush(&mut current, &mut out);
            current.push_str(rest);
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
    }
    flush(&mut current, &mut out);
    out
}

/// The text of a line that starts a list item ("- ", "* ", "• ", "1. ", "2) "), else `None`.
fn list_item(line: &str) -> Option<&str> {
    for marker in ["- ", "* ", "+ ", "• "] {
        if let Some(rest) = line.strip_prefix(marker) {
            return Some(rest.trim_start());
        }
    }
    let digits = line.chars().take_while(char::is_ascii_digit).count();
    let rest = &line[digits..];
    let rest = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") "))?;
    (1..=3).contains(&digits).then(|| rest.trim_start())
}

/// `text` without Markdown emphasis and code marks, links reduced to their text, whitespace
/// collapsed.
fn strip_inline_markup(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' | '`' => {}
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
            }
            ']' if chars.peek() == Some(&'(') => {
                // "[text](url)": keep the text, drop the address.
                for c in chars.by_ref() {
                    if c == ')' {
                        break;
                    }
                }
            }
            '[' => {}
            _ => out.push(c),
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `item` without a section heading that PDF extraction ran into it: "5. Height range, weight
/// capacity and daily use" before the first sentence, or "Weight capacity" before "The Lift
/// Pro lifts …". Text that does not look like a heading followed by a sentence is returned whole.
fn strip_heading_prefix(item: &str) -> &str {
    let item = strip_section_number(item);
    let words: Vec<(usize, &str)> = word_offsets(item).collect();
    for i in 1..words.len().min(MAX_HEADING_WORDS + 1) {
        let before = words[i - 1].1;
        if before.ends_with(['.', '!', '?', ';', ',']) || !words[0].1.starts_with(|c: char| c.is_uppercase()) {
            return item;
        }
        if SECTION_STARTERS.contains(&words[i].1) {
            return &item[words[i].0..];
        }
    }
    item
}

/// `text` without a leading section or list number ("6. ", "2.1 ") before a capitalised word.
fn strip_section_number(text: &str) -> &str {
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let (number, rest) = text.split_at(end);
    let rest = rest.trim_start();
    let numbered = !number.is_empty()
        && number
            .trim_end_matches('.')
            .split('.')
            .all(|p| !p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit()))
        && (number.ends_with('.') || number.contains('.'));
    if numbered && rest.starts_with(|c: char| c.is_uppercase()) { rest } else { text }
}

fn word_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.split_whitespace().map(move |w| (w.as_ptr() as usize - text.as_ptr() as usize, w))
}

/// Splits text into sentences at `.`, `!`, `?` followed by a space and a sentence start (not after
/// "e.g.", "No. 5", "U.S.", …), at CJK full stops, and before inline list numbers.
fn split(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // "Saving a preset 1. Move the desk …": a number with a full stop after a heading or a
        // finished sentence starts a list item; the marker is dropped.
        if c.is_ascii_digit() && (i == 0 || chars[i - 1] == ' ') && current.split_whitespace().count() <= 6 {
            let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits <= 2
                && chars.get(i + digits) == Some(&'.')
                && chars.get(i + digits + 1) == Some(&' ')
                && chars.get(i + digits + 2).is_some_and(|c| c.is_uppercase())
            {
                push_trimmed(&mut out, &mut current);
                i += digits + 2;
                continue;
            }
        }
        current.push(c);
        i += 1;
        let cjk = matches!(c, '。' | '！' | '？');
        if !cjk && !matches!(c, '.' | '!' | '?') {
            continue;
        }
        // Keep further terminators and closing quotes or brackets with the sentence.
        while let Some(&n) = chars.get(i) {
            if matches!(n, '.' | '!' | '?' | '"' | '\'' | '”' | '’' | ')' | '」' | '』' | '。' | '！' | '？') {
                current.push(n);
                i += 1;
            } else {
                break;
            }
        }
        if cjk {
            push_trimmed(&mut out, &mut current);
            continue;
        }
        let Some(next) = chars.get(i) else { continue };
        if !next.is_whitespace() {
            continue;
        }
        let Some(start) = chars[i..].iter().copied().find(|c| !c.is_whitespace()) else { continue };
        let next_word: String =
            chars[i..].iter().skip_while(|c| c.is_whitespace()).take_while(|c| !c.is_whitespace()).collect();
        if is_sentence_start(start) && !(c == '.' && is_abbreviation(&current, &next_word)) {
            push_trimmed(&mut out, &mut current);
        }
    }
    push_trimmed(&mut out, &mut current);
    out
}

fn push_trimmed(out: &mut Vec<String>, current: &mut String) {
    let t = current.trim();
    if !t.is_empty() {
        out.push(t.to_owned());
    }
    current.clear();
}

/// Whether the full stop ending `sentence` belongs to an abbreviation, given the word after it.
fn is_abbreviation(sentence: &str, next_word: &str) -> bool {
    let last = sentence.trim_end_matches(['.', ')', '"', '\'']).rsplit([' ', '(']).next().unwrap_or_default();
    let lower = last.to_lowercase();
    // Dotted abbreviations: "e.g.", "i.e.", "U.S.", "a.m.", "P.O." (not a version like "2.4.1.").
    let dotted = lower.contains('.')
        && lower.split('.').all(|p| !p.is_empty() && p.len() <= 3 && p.chars().all(char::is_alphabetic));
    let before_number = next_word.starts_with(|c: char| c.is_ascii_digit())
        || (lower == "rev" && next_word.trim_end_matches('.').chars().count() == 1);
    dotted
        || ABBREVIATIONS.contains(&lower.as_str())
        || (before_number && ABBREVIATIONS_BEFORE_NUMBERS.contains(&lower.as_str()))
}

/// Han, kana or Hangul: letters without capitals, so any of them may start a sentence.
fn is_cjk(c: char) -> bool {
    is_han_or_kana(c) || letter_script(c) == Some(Script::Hangul)
}

fn is_sentence_start(c: char) -> bool {
    c.is_uppercase() || c.is_ascii_digit() || is_cjk(c) || matches!(c, '"' | '\'' | '“' | '‘' | '(' | '「' | '¿' | '¡')
}

/// Starts as a sentence does: a capital letter, a digit, a quote or a CJK character.
pub(super) fn starts_at_boundary(text: &str) -> bool {
    text.chars()
        .next()
        .is_some_and(|c| c.is_uppercase() || c.is_ascii_digit() || is_cjk(c) || matches!(c, '"' | '“' | '「'))
}

/// Ends with terminal punctuation, possibly inside closing quotes or brackets.
pub(super) fn ends_with_terminal(text: &str) -> bool {
    let t = text.trim_end_matches(['"', '\'', '”', '’', ')', '」', '』']);
    // "Searching..." ends a phrase, not a sentence.
    t.ends_with(['.', '!', '?', '。', '！', '？']) && !t.ends_with("...")
}

fn is_copyright(text: &str) -> bool {
    text.contains('©') || text.to_lowercase().contains("all rights reserved")
}

/// Copyright and trademark notices, document numbers, "last updated" lines and tables of
/// contents: text in every document that answers nothing.
fn is_boilerplate(text: &str) -> bool {
    let lower = text.to_lowercase();
    if is_copyright(text)
        || lower.contains("are trademarks of")
        || lower.contains("subject to change without notice")
        || lower.starts_with("last updated")
        || text.contains("....")
        || text.contains("……")
        || text.contains(". . .")
    {
        return true;
    }
    // "Document NW-LP2-UM-EN rev. C.", "Document: NW-APP-TS-EN, revision 7, …".
    let mut words = text.split_whitespace();
    if words.next().is_some_and(|w| w.trim_end_matches(':').eq_ignore_ascii_case("document"))
        && words.next().is_some_and(|w| w.contains('-') && w.chars().any(|c| c.is_ascii_uppercase()))
    {
        return true;
    }
    // A table of contents: mostly bare page or chapter numbers.
    let tokens = text.split_whitespace().count();
    let numbers =
        text.split_whitespace().filter(|w| w.trim_end_matches('.').chars().all(|c| c.is_ascii_digit())).count();
    numbers >= 3 && numbers * 3 >= tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(passage: &str) -> Vec<String> {
        sentences(passage).into_iter().filter(|s| s.whole).map(|s| s.text).collect()
    }

    #[test]
    fn splits_at_terminators_but_not_abbreviations_decimals_or_versions() {
        let text = "Orders placed before 1:00 p.m. Pacific Time leave the same day. We ship to the U.S. \
                    and Canada, e.g. Toronto. See No. 5 and p. 4 of the manual! The firmware is 2.4.1 (released \
                    8 January 2024). The display shows 62.0. Is it 2.5 cm? Yes, it is.";
        assert_eq!(
            whole(text),
            [
                "Orders placed before 1:00 p.m. Pacific Time leave the same day.",
                "We ship to the U.S. and Canada, e.g. Toronto.",
                "See No. 5 and p. 4 of the manual!",
                "The firmware is 2.4.1 (released 8 January 2024).",
                "The display shows 62.0.",
                "Is it 2.5 cm?",
                "Yes, it is.",
            ]
        );
    }

    #[test]
    fn splits_cjk_full_stops_and_keeps_closing_quotes() {
        assert_eq!(
            whole("返品は30日以内です。返金は5営業日以内に完了します！"),
            ["返品は30日以内です。", "返金は5営業日以内に完了します！"]
        );
        assert_eq!(
            whole("The display shows \"bt.\" Then enter the code in the app."),
            ["The display shows \"bt.\"", "Then enter the code in the app."]
        );
    }

    #[test]
    fn bullets_and_numbered_items_are_sentences_of_their_own() {
        // app-troubleshooting.txt, section 4.2 as chunked (wrapped lines, "- " bullets).
        let text = "4.2 The reset email does not arrive\n\n- Check the spam folder and the \"Promotions\" or \
                    \"Updates\" tab in Gmail.\n- Make sure you use the same email address that you used to register. If you\n\
                    ordered as a guest, you may not have an account yet; tap \"Create account\" instead.\n\
                    - You can request at most 5 reset links per hour.";
        assert_eq!(
            whole(text),
            [
                "Check the spam folder and the \"Promotions\" or \"Updates\" tab in Gmail.",
                "Make sure you use the same email address that you used to register.",
                "If you ordered as a guest, you may not have an account yet; tap \"Create account\" instead.",
                "You can request at most 5 reset links per hour.",
            ]
        );
        // lift-pro-user-manual.pdf p. 8 as extracted: inline numbers and bullets.
        let text = "Saving a preset 1. Move the desk to the height you want with ▲ or ▼. 2. Press M once. \
                    The display shows \"S-\". Conditions • The return must be requested within 30 days of delivery. \
                    • Original packaging is preferred.";
        assert_eq!(
            whole(text),
            [
                "Move the desk to the height you want with ▲ or ▼.",
                "Press M once.",
                "The display shows \"S-\".",
                "The return must be requested within 30 days of delivery.",
                "Original packaging is preferred.",
            ]
        );
    }

    #[test]
    fn walls_of_text_are_not_whole() {
        let wall = format!("{}end.", "Component warranty period 2 years ".repeat(30));
        assert!(!sentences(&wall)[0].whole);
    }

    #[test]
    fn fragments_cut_by_chunking_are_not_whole() {
        // app-troubleshooting.txt chunk 5 begins and chunk 4 ends mid-sentence.
        let s = sentences(
            "is switched on.\n- Unplug the desk for 30 seconds and plug it in again. This restarts the Bluetooth",
        );
        let texts: Vec<(&str, bool)> = s.iter().map(|s| (s.text.as_str(), s.whole)).collect();
        assert_eq!(
            texts,
            [
                ("is switched on.", false),
                ("Unplug the desk for 30 seconds and plug it in again.", true),
                ("This restarts the Bluetooth", false),
            ]
        );
    }

    #[test]
    fn markdown_headings_emphasis_and_tables_are_stripped() {
        // shipping-faq.md chunk as ingested.
        let text = "### When do I get my tracking number?\n\nYou receive a shipping confirmation email from \
                    **orders@northwind.example** within 24 hours of\ndispatch. It contains one tracking number \
                    **per box**—so usually two numbers for a desk. Enter them under *Account → Orders*.\n\n\
                    | Region | Standard shipping |\n|---|---|\n| Canada | 6–9 business days |\n\n## Tracking your order";
        assert_eq!(
            whole(text),
            [
                "You receive a shipping confirmation email from orders@northwind.example within 24 hours of dispatch.",
                "It contains one tracking number per box—so usually two numbers for a desk.",
                "Enter them under Account → Orders.",
            ]
        );
        let all = sentences(text);
        assert!(all.iter().all(|s| !s.text.contains(['#', '|', '*'])), "{all:?}");
        // Underlined plain-text headings.
        assert_eq!(whole("3. FIRMWARE UPDATES\n-------------------\n\nUpdates are free."), ["Updates are free."]);
    }

    #[test]
    fn pdf_headings_run_into_their_paragraph_are_dropped() {
        // lift-pro-user-manual.pdf p. 6 and warranty-and-returns.pdf p. 3 as extracted.
        assert_eq!(
            whole("Weight capacity The Lift Pro lifts a maximum of 120 kg (265 lb), evenly distributed."),
            ["The Lift Pro lifts a maximum of 120 kg (265 lb), evenly distributed."]
        );
        assert_eq!(
            whole("5. The 30-Day Stand-Up Guarantee (returns) Try the Lift Pro at home for 30 days."),
            ["Try the Lift Pro at home for 30 days."]
        );
        assert_eq!(
            whole("6. Refunds\n\nWhen do I get my money back? When the return arrives, we inspect it."),
            ["When do I get my money back?", "When the return arrives, we inspect it."]
        );
        // A sentence is not mistaken for a heading.
        assert_eq!(
            whole("Northwind Desk Co. ships the desk. If the box is lost, we ship a replacement."),
            ["Northwind Desk Co. ships the desk.", "If the box is lost, we ship a replacement."]
        );
    }

    #[test]
    fn boilerplate_is_left_out() {
        // The last chunk of lift-pro-user-manual.pdf and the head of app-troubleshooting.txt.
        let text = "We answer emails within one business day.\n\n© 2024 Northwind Desk Co. All rights reserved. \
                    Northwind, Lift Pro and the Northwind logo are trademarks of Northwind Desk Co. Specifications \
                    are subject to change without notice. Document NW-LP2-UM-EN rev. C.";
        let all = sentences(text);
        assert_eq!(
            all.iter().map(|s| s.text.as_str()).collect::<Vec<_>>(),
            ["We answer emails within one business day."]
        );
        // The last chunk of warranty-and-returns.pdf: the footer paragraph goes as a whole.
        let text = "Returns address (only with an RMA number): Northwind Desk Co. Returns, 4455 Mill Street, Dock 7, \
                    Reno, NV 89502, USA.\n\n© 2024 Northwind Desk Co. This policy may change; the version valid on \
                    the date of your order applies. Document NW-POL-WR-EN 2024-02.";
        assert!(sentences(text).iter().all(|s| !s.text.contains("policy may change")), "{:?}", sentences(text));
        assert!(sentences("Document: NW-APP-TS-EN, revision 7, updated 20 February 2024").is_empty());
        // A dotted leader is dropped with what it leads from; the sentence after it stays.
        let texts: Vec<String> = sentences("\"Pairing code incorrect\" ........ The code was mistyped or has expired.")
            .into_iter()
            .map(|s| s.text)
            .collect();
        assert_eq!(texts, ["The code was mistyped or has expired."]);
        assert!(sentences("Chapter Title 1 Safety instructions 2 What is in the box 3 Assembly 4 5 6 7.").is_empty());
    }
}
