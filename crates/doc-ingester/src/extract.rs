//! Text extraction, per page.
//!
//! PDFs are parsed in a child process — the ingester binary re-executed with a hidden
//! subcommand — under an address-space limit, a wall-clock timeout and a cap on the text it may
//! return. A malformed, encrypted, hostile or simply huge PDF can then crash, hang or exhaust
//! memory only in the child; the worker reports a clear `error_type` and carries on.
//! Plain text and Markdown are decoded in-process (UTF-8, or Latin-1 when not UTF-8).

use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use pipeline_core::content::decode_text;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

/// The hidden subcommand that runs extraction in the child.
pub const CHILD_COMMAND: &str = "__extract-pdf";

/// One page of extracted text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    /// 1-based PDF page number; `None` for text documents.
    pub number: Option<u32>,
    /// The page's text.
    pub text: String,
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

/// Limits of one extraction.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock limit.
    pub timeout: Duration,
    /// Address-space limit of the child, in MiB.
    pub max_memory_mb: u64,
    /// Page limit.
    pub max_pages: usize,
    /// Limit on the extracted text, in MiB.
    pub max_text_mb: u64,
}

/// Extracts the pages of a stored document. `content_type` is what the upload API detected.
pub async fn extract(
    program: &Path,
    path: &Path,
    content_type: &str,
    limits: &Limits,
) -> Result<Vec<Page>, ExtractError> {
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
            Ok(pages
                .into_iter()
                .enumerate()
                .map(|(i, t)| Page {
                    number: numbered.then(|| u32::try_from(i + 1).unwrap_or(u32::MAX)),
                    text: t.to_owned(),
                })
                .collect())
        }
        other => Err(ExtractError::Unsupported(other.to_owned())),
    }
}

/// Runs [`child_main`] in a child process and collects its answer within the limits.
pub async fn extract_pdf_isolated(program: &Path, path: &Path, limits: &Limits) -> Result<Vec<Page>, ExtractError> {
    let mut child = tokio::process::Command::new(program)
        .arg(CHILD_COMMAND)
        .arg(path)
        .arg(limits.max_pages.to_string())
        .arg(limits.max_memory_mb.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ExtractError::Crashed(format!("cannot start the extractor {}: {e}", program.display())))?;
    let max_bytes = limits.max_text_mb * 1024 * 1024;
    let stdout = child.stdout.take().ok_or_else(|| ExtractError::Crashed("no stdout".into()))?;
    let stderr = child.stderr.take().ok_or_else(|| ExtractError::Crashed("no stderr".into()))?;
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take(max_bytes + 1);
        let mut stderr = stderr.take(64 * 1024);
        let (read_out, _) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        read_out.map_err(|e| ExtractError::Crashed(e.to_string()))?;
        if out.len() as u64 > max_bytes {
            return Err(ExtractError::TextTooLarge(limits.max_text_mb));
        }
        let status = child.wait().await.map_err(|e| ExtractError::Crashed(e.to_string()))?;
        Ok((status, out, err))
    };
    let (status, out, err) = match tokio::time::timeout(limits.timeout, work).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(ExtractError::Timeout(limits.timeout.as_secs())),
    };
    if status.success() {
        return serde_json::from_slice::<Vec<Page>>(&out)
            .map_err(|e| ExtractError::Crashed(format!("unreadable extractor output: {e}")));
    }
    if let Ok(known) = serde_json::from_slice::<ExtractError>(&err) {
        return Err(known);
    }
    let detail = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt as _;
            format!("killed by signal {}", status.signal().unwrap_or_default())
        }
    };
    Err(ExtractError::Crashed(detail))
}

/// The child side: parse the PDF and print its pages as JSON on stdout; on a known failure
/// print the [`ExtractError`] as JSON on stderr and exit 3. Runs before any async runtime
/// starts, single-threaded, under an address-space limit.
pub fn child_main(args: &[String]) -> ExitCode {
    let (Some(path), Some(max_pages), Some(max_memory_mb)) = (
        args.first().map(PathBuf::from),
        args.get(1).and_then(|s| s.parse::<usize>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: {CHILD_COMMAND} FILE MAX_PAGES MAX_MEMORY_MB");
        return ExitCode::from(2);
    };
    let bytes = max_memory_mb.saturating_mul(1024 * 1024);
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes) {
        eprintln!("cannot set the memory limit: {e}");
        return ExitCode::from(2);
    }
    match pdf_pages(&path, max_pages) {
        Ok(pages) => match serde_json::to_writer(std::io::stdout().lock(), &pages) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(2),
        },
        Err(e) => {
            let _ = serde_json::to_writer(std::io::stderr().lock(), &e);
            ExitCode::from(3)
        }
    }
}

/// Parses a PDF and extracts each page's text (in-process: only for the child, or for tests of
/// well-formed files).
pub fn pdf_pages(path: &Path, max_pages: usize) -> Result<Vec<Page>, ExtractError> {
    use pdf_extract::{Document, PlainTextOutput, output_doc_page};
    let data = std::fs::read(path).map_err(|e| ExtractError::FileMissing(e.to_string()))?;
    let mut doc = Document::load_mem(&data).map_err(|e| ExtractError::Malformed(e.to_string()))?;
    if doc.is_encrypted() && doc.decrypt("").is_err() {
        return Err(ExtractError::Encrypted);
    }
    let numbers: Vec<u32> = doc.get_pages().keys().copied().collect();
    if numbers.len() > max_pages {
        return Err(ExtractError::TooManyPages { pages: numbers.len(), limit: max_pages });
    }
    let mut pages = Vec::with_capacity(numbers.len());
    for number in numbers {
        let mut text = String::new();
        {
            let mut output = PlainTextOutput::new(&mut text);
            output_doc_page(&doc, &mut output, number)
                .map_err(|e| ExtractError::Malformed(format!("page {number}: {e}")))?;
        }
        pages.push(Page { number: Some(number), text });
    }
    Ok(pages)
}
