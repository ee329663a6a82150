//! Splitting pages into overlapping chunks with `text-splitter`, page by page, so every chunk
//! keeps the page it came from.
//!
//! A section often starts at the foot of one page and goes on at the top of the next: its heading
//! — the words a question shares with it — would then sit only in the previous page's chunks.
//! Each page is therefore split with the last `overlap` characters of the page before it (cut at
//! a word) in front, the same overlap chunks within a page have; those chunks are cited with the
//! page that follows the carried-over words.

use embedders::script::is_han_or_kana;
use text_splitter::{ChunkConfig, TextSplitter};

use crate::extract::Page;

/// A chunk of text and its page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 1-based PDF page, when known.
    pub page: Option<u32>,
    /// The text.
    pub text: String,
}

/// Chunk size and overlap are inconsistent.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunking settings: {0}")]
pub struct ChunkSettingsError(String);

/// A reusable splitter.
pub struct Chunker {
    splitter: TextSplitter<text_splitter::Characters>,
    overlap: usize,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Chunker")
    }
}

impl Chunker {
    /// Chunks of at most `size` characters overlapping by `overlap`.
    pub fn new(size: usize, overlap: usize) -> Result<Self, ChunkSettingsError> {
        let config = ChunkConfig::new(size).with_overlap(overlap).map_err(|e| ChunkSettingsError(e.to_string()))?;
        Ok(Self { splitter: TextSplitter::new(config), overlap })
    }

    /// Splits every page; whitespace-only chunks are dropped.
    pub fn chunk(&self, pages: &[Page]) -> Vec<Chunk> {
        let mut out = Vec::new();
        let mut tail = String::new();
        for page in pages {
            let own = normalize_whitespace(&page.text);
            if !own.chars().any(char::is_alphanumeric) {
                continue;
            }
            let text = if tail.is_empty() { own.clone() } else { format!("{tail}\n\n{own}") };
            tail = last_words(&own, self.overlap);
            for piece in self.splitter.chunks(&text) {
                if piece.chars().any(char::is_alphanumeric) {
                    out.push(Chunk { page: page.number, text: piece.to_owned() });
                }
            }
        }
        out
    }
}

/// The end of `text`, at most `max` characters, starting at a word.
fn last_words(text: &str, max: usize) -> String {
    let count = text.chars().count();
    if count <= max {
        return text.to_owned();
    }
    let start: String = text.chars().skip(count - max).collect();
    // Drop the partial word the cut fell into (unless the whole tail is one word, as in Chinese
    // or Japanese text without spaces).
    match start.find(char::is_whitespace) {
        Some(i) => start[i..].trim_start().to_owned(),
        None => start,
    }
}

/// PDF text comes with ragged spacing; collapse runs of spaces and keep paragraph breaks.
///
/// Chinese and Japanese put no spaces between words, so a space or a line break between two of
/// their characters is the PDF's doing: a justified line set with letter-spacing comes out as
/// "定 期 的 に 実 行", and a line wraps wherever it is full, inside a word ("ス" / "ケジュール").
/// Both are removed, or full-text search and the embedder would see single characters and
/// broken words where the page has 定期的, 実行 and スケジュール (in the Japanese Debian Reference,
/// about one character in 45 sits at such a wrap or space).
fn normalize_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            blank_lines += 1;
            continue;
        };
        if !out.is_empty() {
            if blank_lines > 0 {
                out.push_str("\n\n");
            } else if !joins(&mut out, first) {
                out.push('\n');
            }
        }
        blank_lines = 0;
        out.push_str(first);
        for word in words {
            if !joins(&mut out, word) {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// Whether `next` continues the word `out` ends with, with nothing between them: after a
/// Chinese or Japanese character ([`between_han_or_kana`]), or after a word hyphenated at the
/// end of a PDF line ("distri-" "bution", "зарезервирова-" "но"), whose hyphen is then removed
/// from `out` — kept in a URL or path ("…/debian-" "stable"), where it is part of the name. A
/// compound split at its own hyphen loses it too ("time-" "consuming" → "timeconsuming"):
/// nothing in the extracted text tells the two apart.
fn joins(out: &mut String, next: &str) -> bool {
    if between_han_or_kana(out, next) {
        return true;
    }
    let Some(stem) = out.strip_suffix('-') else { return false };
    let last_word = stem.rsplit(char::is_whitespace).next().unwrap_or_default();
    // "pre- and post-processing", "Ein- und Ausgang": a hyphen before a conjunction stands for
    // the word's second half.
    const CONJUNCTIONS: [&str; 11] = ["and", "or", "und", "oder", "et", "ou", "y", "o", "e", "и", "или"];
    let hyphenated = next.chars().next().is_some_and(char::is_lowercase)
        && last_word.chars().rev().take(2).filter(|c| c.is_alphabetic()).count() == 2
        && !CONJUNCTIONS.contains(&next.trim_end_matches(|c: char| !c.is_alphabetic()));
    if hyphenated && !last_word.contains(['/', '.']) {
        out.pop();
    }
    hyphenated
}

/// Whether `before` ends and `after` starts with a Han or kana character, or with the
/// punctuation Chinese and Japanese write with (。、「」（）：).
fn between_han_or_kana(before: &str, after: &str) -> bool {
    let cjk = |c: char| is_han_or_kana(c) || matches!(c, '\u{3001}'..='\u{303F}' | '\u{FF01}'..='\u{FF65}');
    before.chars().next_back().is_some_and(cjk) && after.chars().next().is_some_and(cjk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_pages_respect_size_and_overlap() {
        let chunker = Chunker::new(200, 40).expect("valid");
        let long = "The desk supports 120 kg. ".repeat(30);
        let pages = vec![
            Page { number: Some(1), text: long.clone() },
            Page { number: Some(2), text: "Error E04 means the motor overheated.   \n\n\n Wait 20 minutes.".into() },
            Page { number: Some(3), text: "   \n  ".into() },
        ];
        let chunks = chunker.chunk(&pages);
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 200));
        let first_page: Vec<_> = chunks.iter().filter(|c| c.page == Some(1)).collect();
        assert!(first_page.len() >= 4);
        // Overlap: consecutive chunks share text.
        let tail: String = first_page[0].text.chars().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect();
        assert!(first_page[1].text.contains(tail.trim()), "{:?} / {:?}", first_page[0].text, first_page[1].text);
        let last = chunks.last().expect("chunks");
        assert_eq!(last.page, Some(2));
        // Page 2 starts with the end of page 1 (whole words, at most the overlap), so a section
        // running over the page break keeps its context.
        let (carried, own) = last.text.split_once("\n\n").expect("carried-over words");
        assert!(long.trim_end().ends_with(carried) && carried.chars().count() <= 40, "{carried:?}");
        assert!(carried.starts_with("The desk") || carried.starts_with("supports") || carried.starts_with("120"));
        assert_eq!(own, "Error E04 means the motor overheated.\n\nWait 20 minutes.");
        assert!(Chunker::new(100, 200).is_err());
    }

    #[test]
    fn letter_spacing_and_line_wraps_inside_chinese_and_japanese_are_removed() {
        // As the Japanese Debian Reference comes out of its PDF (p. 184): a justified line set
        // with letter-spacing, and lines wrapped inside words.
        let page = "ス ク リ プ ト を 定 期 的 に 実 行 で き ま す。 こ れ ら の\n\
                    スクリプトは /etc/cron.daily/ に置きます。ス\n\
                    ケジュール\n\
                    Debian システム\n\
                    The next line\n\
                    stays apart.\n\n\
                    定期\n\n\
                    実行 ภาษา ไทย";
        let chunks = Chunker::new(1000, 0).expect("valid").chunk(&[Page { number: Some(184), text: page.into() }]);
        assert_eq!(chunks.len(), 1);
        assert_eq!(
            chunks[0].text,
            "スクリプトを定期的に実行できます。これらのスクリプトは /etc/cron.daily/ に置きます。スケジュール\n\
             Debian システム\nThe next line\nstays apart.\n\n定期\n\n実行 ภาษา ไทย",
            // Kept: spaces and breaks next to Latin text, paragraph breaks, and Thai spaces
            // (which end phrases).
        );
    }

    #[test]
    fn words_hyphenated_at_a_line_end_are_joined() {
        // As the English Debian Reference and the Russian New Maintainers' Guide come out of
        // pdf_oxide, which joins a paragraph's lines with spaces.
        let page = "Debian distri- bution con-\nvention; В Debian это место зарезервирова- но.\n\
                    See http://security.debian.org/debian- security and pre- and post-processing, \
                    non- A or x - y.";
        let chunks = Chunker::new(1000, 0).expect("valid").chunk(&[Page { number: Some(21), text: page.into() }]);
        assert_eq!(
            chunks[0].text,
            "Debian distribution convention; В Debian это место зарезервировано.\n\
             See http://security.debian.org/debian-security and pre- and post-processing, non- A or x - y."
        );
    }
}
