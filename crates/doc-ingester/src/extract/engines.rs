//! The PDF engines the extraction child can use, behind one small interface: open a document,
//! list its pages, read one page's text. Only the child calls them (they parse untrusted bytes).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::ExtractError;

/// A PDF text-extraction library. `ingester.pdf_engines` lists them in the order to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Engine {
    /// `pdf_oxide`: the primary (faster, and reads fonts `pdf-extract` gets wrong).
    #[serde(rename = "pdf_oxide")]
    PdfOxide,
    /// `pdf-extract` (on `lopdf`): the fallback.
    #[serde(rename = "pdf-extract")]
    PdfExtract,
}

impl Engine {
    /// Every engine, in the default order.
    pub const ALL: [Engine; 2] = [Engine::PdfOxide, Engine::PdfExtract];

    /// The name used in settings, on the child's command line and in warnings.
    pub fn name(self) -> &'static str {
        match self {
            Engine::PdfOxide => "pdf_oxide",
            Engine::PdfExtract => "pdf-extract",
        }
    }

    /// Parses a document with this engine (in-process: only the child should call it).
    pub fn open(self, data: &[u8]) -> Result<Box<dyn PdfDocument>, ExtractError> {
        match self {
            Engine::PdfOxide => oxide::open(data),
            Engine::PdfExtract => lopdf::open(data),
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Engine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|e| e.name() == s.trim())
            .ok_or_else(|| format!("unknown PDF engine {s:?} (known: pdf_oxide, pdf-extract)"))
    }
}

/// Parses a comma-separated engine list, as the child receives it.
pub fn parse_list(s: &str) -> Result<Vec<Engine>, String> {
    s.split(',').filter(|p| !p.trim().is_empty()).map(str::parse).collect()
}

/// An opened document.
pub trait PdfDocument {
    /// 1-based numbers of its pages, in order.
    fn page_numbers(&self) -> Vec<u32>;
    /// The text of one page; `Err` says why it cannot be read.
    fn page_text(&mut self, number: u32) -> Result<String, String>;
}

mod oxide {
    use pdf_oxide::PdfDocument as Doc;
    use pdf_oxide::error::Error;

    use super::{ExtractError, PdfDocument};

    pub(super) struct Oxide {
        doc: Doc,
        pages: u32,
    }

    fn classify(e: Error) -> ExtractError {
        match e {
            Error::EncryptedPdf => ExtractError::Encrypted,
            other => ExtractError::Malformed(other.to_string()),
        }
    }

    pub(super) fn open(data: &[u8]) -> Result<Box<dyn PdfDocument>, ExtractError> {
        let doc = Doc::from_bytes(data.to_vec()).map_err(classify)?;
        // Opening already tried the empty user password; anything else needs one we do not have.
        if doc.is_encrypted() && !doc.authenticate(b"").unwrap_or(false) {
            return Err(ExtractError::Encrypted);
        }
        let pages = doc.page_count().map_err(classify)?;
        let pages = u32::try_from(pages).map_err(|_| ExtractError::Malformed(format!("{pages} pages")))?;
        Ok(Box::new(Oxide { doc, pages }))
    }

    impl PdfDocument for Oxide {
        fn page_numbers(&self) -> Vec<u32> {
            (1..=self.pages).collect()
        }

        fn page_text(&mut self, number: u32) -> Result<String, String> {
            let index = usize::try_from(number.saturating_sub(1)).map_err(|e| e.to_string())?;
            // Text extraction reads a content stream that does not decode as an empty page;
            // decoding it first (the result is cached for the extraction) tells a broken page
            // from a blank one.
            self.doc.get_page_content_data(index).map_err(|e| format!("content stream: {e}"))?;
            // Lines top to bottom, without table detection: the column-aware default prints a
            // table column by column and so parts an error code from its meaning in the chunks.
            let options = pdf_oxide::converters::ConversionOptions {
                extract_tables: false,
                reading_order_mode: pdf_oxide::converters::ReadingOrderMode::TopToBottomLeftToRight,
                ..Default::default()
            };
            self.doc.to_plain_text(index, &options).map_err(|e| e.to_string())
        }
    }
}

mod lopdf {
    use pdf_extract::{Document, PlainTextOutput, output_doc_page};

    use super::{ExtractError, PdfDocument};

    pub(super) struct Lopdf {
        doc: Document,
    }

    pub(super) fn open(data: &[u8]) -> Result<Box<dyn PdfDocument>, ExtractError> {
        let mut doc = Document::load_mem(data).map_err(|e| ExtractError::Malformed(e.to_string()))?;
        if doc.is_encrypted() && doc.decrypt("").is_err() {
            return Err(ExtractError::Encrypted);
        }
        Ok(Box::new(Lopdf { doc }))
    }

    impl PdfDocument for Lopdf {
        fn page_numbers(&self) -> Vec<u32> {
            self.doc.get_pages().keys().copied().collect()
        }

        fn page_text(&mut self, number: u32) -> Result<String, String> {
            // pdf-extract reads a content stream that does not decode as raw bytes (an empty
            // page, or garbage); decoding each first tells a broken page from a blank one.
            if let Some(page) = self.doc.get_pages().get(&number).copied() {
                for id in self.doc.get_page_contents(page) {
                    if let Ok(stream) = self.doc.get_object(id).and_then(|o| o.as_stream()) {
                        let decoded = stream
                            .decompressed_content()
                            .map_err(|e| format!("content stream {} {}: {e}", id.0, id.1))?;
                        // lopdf answers a deflate stream that does not inflate with no bytes
                        // rather than an error; an empty page deflates to 8 bytes, so more than
                        // twice that inflating to nothing is a broken stream.
                        if decoded.is_empty() && stream.content.len() > 16 && stream.filters().is_ok() {
                            return Err(format!("content stream {} {} does not decode", id.0, id.1));
                        }
                    }
                }
            }
            let mut text = String::new();
            {
                let mut output = PlainTextOutput::new(&mut text);
                output_doc_page(&self.doc, &mut output, number).map_err(|e| e.to_string())?;
            }
            Ok(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_lists_parse_by_name_and_unknown_names_are_refused() {
        assert_eq!(parse_list("pdf_oxide,pdf-extract"), Ok(vec![Engine::PdfOxide, Engine::PdfExtract]));
        assert_eq!(parse_list(" pdf-extract "), Ok(vec![Engine::PdfExtract]));
        assert!(parse_list("pdfium").expect_err("unknown").contains("pdfium"));
        for engine in Engine::ALL {
            assert_eq!(engine.name().parse(), Ok(engine));
            assert_eq!(serde_json::to_string(&engine).expect("json"), format!("\"{engine}\""));
        }
    }
}
