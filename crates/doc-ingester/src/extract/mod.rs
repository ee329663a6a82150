//! Text extraction, per page.
//!
//! PDFs are parsed in a child process — the ingester binary re-executed with a hidden
//! subcommand ([`child`]) — with an empty environment, under an address-space limit, a
//! wall-clock timeout and a cap on the text it may return ([`isolated`]). A malformed,
//! encrypted, hostile or simply huge PDF can then crash, hang or exhaust memory only in the
//! child; the worker reports a clear `error_type` and carries on.
//!
//! The child tries the PDF engines of `ingester.pdf_engines` in order ([`engines`]): when the
//! primary cannot open a document (an error or a panic), the next one reads it; when single
//! pages fail, the next engine retries just those, and pages no engine can read are skipped
//! and reported ([`Extraction::failed_pages`]) while the rest of the document is ingested. If
//! the child dies outright (a stack overflow or allocation failure aborts it), the parent runs
//! it again with the remaining engines.
//!
//! Plain text and Markdown are decoded in-process (UTF-8, or Latin-1 when not UTF-8).

pub mod child;
pub mod engines;
pub mod isolated;

use std::path::Path;
use std::time::Duration;

use pipeline_core::content::decode_text;
use serde::{Deserialize, Serialize};

pub use child::{CHILD_COMMAND, child_main, extract_in_process};
pub use engines::Engine;
pub use isolated::extract_pdf_isolated;

/// One page of extracted text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// 1-based PDF page number; `None` for text documents.
    pub number: Option<u32>,
    /// The page's text.
    pub text: String,
}

/// A page that no engine could read (it is skipped; the rest of the document is ingested).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedPage {
    /// 1-based page number.
    pub number: u32,
    /// What the last engine that tried it said.
    pub reason: String,
}

/// A page the document's engine could not read and a later engine did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MendedPage {
    /// 1-based page number.
    pub number: u32,
    /// The engine that read it.
    pub engine: Engine,
    /// What the document's engine said.
    pub reason: String,
}

/// The text of a document and how it was obtained.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extraction {
    /// The pages that were read, in order.
    pub pages: Vec<Page>,
    /// Pages skipped because no engine could read them, in order.
    pub failed_pages: Vec<FailedPage>,
    /// Pages the document's engine could not read that a later engine read, in order.
    pub mended_pages: Vec<MendedPage>,
    /// The engine that read the document: the first that opened it, unless it found no text
    /// anywhere and a later one did (`None` for text documents).
    pub engine: Option<Engine>,
    /// Why engines before [`Self::engine`] were not used, one line each (for the warnings).
    pub fallbacks: Vec<String>,
}

impl Extraction {
    /// Pages in the document, read or not.
    pub fn page_count(&self) -> usize {
        self.pages.len() + self.failed_pages.len()
    }

    /// Human-readable warnings for the document record: skipped pages, and engines that failed
    /// before the one that read it. Empty when extraction went as planned.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if !self.failed_pages.is_empty() {
            let numbers: Vec<String> = self.failed_pages.iter().map(|p| p.number.to_string()).collect();
            let first = &self.failed_pages[0];
            warnings.push(format!(
                "{} of {} pages could not be read and were skipped: {} (page {}: {})",
                self.failed_pages.len(),
                self.page_count(),
                numbers.join(", "),
                first.number,
                first.reason
            ));
        }
        if let (Some(first), Some(engine)) = (self.mended_pages.first(), self.engine) {
            let numbers: Vec<String> = self.mended_pages.iter().map(|p| p.number.to_string()).collect();
            warnings.push(format!(
                "{} of {} pages were read by the fallback engine {} because {engine} could not read them: {} (page {}: {})",
                self.mended_pages.len(),
                self.page_count(),
                first.engine,
                numbers.join(", "),
                first.number,
                first.reason
            ));
        }
        if let (Some(engine), false) = (self.engine, self.fallbacks.is_empty()) {
            warnings.push(format!("text extracted with the fallback engine {engine}: {}", self.fallbacks.join("; ")));
        }
        warnings
    }
}

/// Why a document's text could not be extracted. Each is permanent: the same bytes fail the
/// same way every time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ExtractError {
    /// The stored file is gone.
    #[error("stored file is missing: {0}")]
    FileMissing(String),
    /// The file is not a PDF, text or Markdown document.
    #[error("unsupported document type: {0}")]
    Unsupported(String),
    /// The PDF is password-protected.
    #[error("the PDF is encrypted; upload an unprotected copy")]
    Encrypted,
    /// The PDF does not parse.
    #[error("malformed PDF: {0}")]
    Malformed(String),
    /// More pages than allowed.
    #[error("the PDF has {pages} pages, more than the limit of {limit}")]
    TooManyPages {
        /// Pages in the document.
        pages: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Extraction took longer than allowed.
    #[error("text extraction did not finish within {0} s")]
    Timeout(u64),
    /// The extractor died (memory limit, stack overflow on deep nesting, a crash in the parser).
    #[error("text extraction crashed ({0}); the PDF is probably hostile or corrupt")]
    Crashed(String),
    /// The extracted text is larger than allowed.
    #[error("extracted text exceeds {0} MiB")]
    TextTooLarge(u64),
    /// The text document is not valid text.
    #[error("the file is not readable text")]
    NotText,
}

impl ExtractError {
    /// The `error_type` recorded on the document and in the dead letter.
    pub fn error_type(&self) -> &'static str {
        match self {
            ExtractError::FileMissing(_) => "FileMissing",
            ExtractError::Unsupported(_) => "UnsupportedDocument",
            ExtractError::Encrypted => "EncryptedPdf",
            ExtractError::Malformed(_) => "MalformedPdf",
            ExtractError::TooManyPages { .. } => "TooManyPages",
            ExtractError::Timeout(_) => "ExtractionTimeout",
            ExtractError::Crashed(_) => "ExtractionCrashed",
            ExtractError::TextTooLarge(_) => "ExtractedTextTooLarge",
            ExtractError::NotText => "NotText",
        }
    }
}

/// Limits and engines of one extraction.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock limit of one run of the child.
    pub timeout: Duration,
    /// Address-space limit of the child, in MiB.
    pub max_memory_mb: u64,
    /// Page limit.
    pub max_pages: usize,
    /// Limit on the extracted text, in MiB.
    pub max_text_mb: u64,
    /// PDF engines, in the order to try them (at least one).
    pub engines: Vec<Engine>,
}

/// Extracts the pages of a stored document. `content_type` is what the upload API detected.
pub async fn extract(
    program: &Path,
    path: &Path,
    content_type: &str,
    limits: &Limits,
) -> Result<Extraction, ExtractError> {
    if !path.exists() {
        return Err(ExtractError::FileMissing(path.display().to_string()));
    }
    match content_type {
        "application/pdf" => extract_pdf_isolated(program, path, limits).await,
        "text/plain" | "text/markdown" => {
            let bytes = tokio::fs::read(path).await.map_err(|e| ExtractError::FileMissing(e.to_string()))?;
            let text = decode_text(&bytes).ok_or(ExtractError::NotText)?;
            // Form feeds are page breaks in plain text.
            let pages: Vec<&str> = text.split('\u{0c}').collect();
            let numbered = pages.len() > 1;
            let pages = pages
                .into_iter()
                .enumerate()
                .map(|(i, t)| Page {
                    number: numbered.then(|| u32::try_from(i + 1).unwrap_or(u32::MAX)),
                    text: t.to_owned(),
                })
                .collect();
            Ok(Extraction { pages, ..Extraction::default() })
        }
        other => Err(ExtractError::Unsupported(other.to_owned())),
    }
}
