//! Splitting pages into overlapping chunks with `text-splitter`, page by page, so every chunk
//! keeps the page it came from.

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
        Ok(Self { splitter: TextSplitter::new(config) })
    }

    /// Splits every page; whitespace-only chunks are dropped.
    pub fn chunk(&self, pages: &[Page]) -> Vec<Chunk> {
        let mut out = Vec::new();
        for page in pages {
            let text = normalize_whitespace(&page.text);
            for piece in self.splitter.chunks(&text) {
                if piece.chars().any(char::is_alphanumeric) {
                    out.push(Chunk { page: page.number, text: piece.to_owned() });
                }
            }
        }
        out
    }
}

/// PDF text comes with ragged spacing; collapse runs of spaces and keep paragraph breaks.
fn normalize_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank_lines = 0;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank_lines += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_lines > 0 { "\n\n" } else { "\n" });
        }
        blank_lines = 0;
        out.push_str(&line);
    }
    out
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
        assert_eq!(last.text, "Error E04 means the motor overheated.\n\nWait 20 minutes.");
        assert!(Chunker::new(100, 200).is_err());
    }
}
