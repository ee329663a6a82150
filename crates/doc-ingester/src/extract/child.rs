//! The child side of PDF extraction: runs before any async runtime starts, single-threaded,
//! under an address-space limit, and prints one JSON [`Report`] on stdout.
//!
//! Engines are tried in order. A panic inside an engine (a dependency's parser asserting on
//! bad input) is caught like an error: while opening, the next engine opens the document;
//! while reading a page, the page counts as failed and the next engine retries it. Pages that
//! no engine reads are skipped and listed. What cannot be caught — a stack overflow, an
//! allocation beyond the memory limit — kills the child, and the parent starts it again
//! without the engine it began with ([`super::isolated`]).

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use super::engines::{self, PdfDocument};
use super::{Engine, ExtractError, Extraction, FailedPage, MendedPage, Page};

/// The hidden subcommand that runs extraction in the child.
pub const CHILD_COMMAND: &str = "__extract-pdf";

/// What the child prints: the extraction, or the reason there is none.
pub type Report = Result<Extraction, ExtractError>;

/// The message of the last panic, kept by the child's panic hook (which prints nothing: stderr
/// is only for the parent's crash diagnostics).
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

/// The child's panic hook: keep "message (at crate-x.y/src/file.rs:line)" for [`guarded`].
fn record_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    let location = info.location().map(|l| {
        // Registry paths are long and name this machine's home: keep them from the crate on.
        let file = l.file();
        let short =
            file.split_once("/registry/src/").and_then(|(_, rest)| rest.split_once('/')).map_or(file, |(_, r)| r);
        format!(" (at {short}:{})", l.line())
    });
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = Some(format!("{message}{}", location.unwrap_or_default()));
    }
}

/// Runs `f`, turning a panic into `Err` with the panic's message.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        let message = LAST_PANIC.lock().map(|mut m| m.take()).unwrap_or_default();
        format!("panicked: {}", message.unwrap_or_else(|| "unknown panic".into()))
    })
}

/// The child's entry point: `__extract-pdf FILE MAX_PAGES MAX_MEMORY_MB MAX_TEXT_MB ENGINES`
/// (ENGINES comma-separated). Exit 0 with a report; 2 on bad usage; anything else is a crash.
pub fn child_main(args: &[String]) -> ExitCode {
    let (Some(path), Some(max_pages), Some(max_memory_mb), Some(max_text_mb), Some(engines)) = (
        args.first().map(PathBuf::from),
        args.get(1).and_then(|s| s.parse::<usize>().ok()),
        args.get(2).and_then(|s| s.parse::<u64>().ok()),
        args.get(3).and_then(|s| s.parse::<u64>().ok()),
        args.get(4).and_then(|s| engines::parse_list(s).ok()),
    ) else {
        eprintln!("usage: {CHILD_COMMAND} FILE MAX_PAGES MAX_MEMORY_MB MAX_TEXT_MB ENGINE[,ENGINE…]");
        return ExitCode::from(2);
    };
    let bytes = max_memory_mb.saturating_mul(1024 * 1024);
    if let Err(e) = rlimit::setrlimit(rlimit::Resource::AS, bytes, bytes) {
        eprintln!("cannot set the memory limit: {e}");
        return ExitCode::from(2);
    }
    std::panic::set_hook(Box::new(record_panic));
    let report = extract_in_process(&path, max_pages, max_text_mb, &engines);
    match serde_json::to_writer(std::io::stdout().lock(), &report) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(2),
    }
}

/// Extracts a PDF in this process with `engines` in order (see the module doc). Only for the
/// child, or for tests and benchmarks of trusted files: it has no memory or time limit.
pub fn extract_in_process(path: &Path, max_pages: usize, max_text_mb: u64, engines: &[Engine]) -> Report {
    let data = std::fs::read(path).map_err(|e| ExtractError::FileMissing(e.to_string()))?;
    let max_text = usize::try_from(max_text_mb.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX);
    let mut fallbacks = Vec::new();
    let mut errors = Vec::new();
    // Page number → (engine, text), or why it could not be read; filled by the first engine
    // that opens the document, then mended by the next ones.
    let mut pages: BTreeMap<u32, PageResult> = BTreeMap::new();
    // Why the first engine could not read a page that a later one then read.
    let mut first_failures: BTreeMap<u32, String> = BTreeMap::new();
    let mut primary: Option<Engine> = None;
    let mut blank_retry = false;
    for &engine in engines {
        let opened = primary.is_some();
        let retry: Vec<u32> = if !opened {
            Vec::new()
        } else if blank(&pages) {
            // Every page read but no text (say, fonts the engine cannot map): the next one tries all.
            blank_retry = true;
            pages.keys().copied().collect()
        } else {
            pages.iter().filter(|(_, p)| p.is_err()).map(|(n, _)| *n).collect()
        };
        if opened && retry.is_empty() {
            break;
        }
        let mut doc = match guarded(|| engine.open(&data)) {
            Ok(Ok(doc)) => doc,
            Ok(Err(e)) => {
                fallbacks.push(format!("{engine} failed ({e})"));
                errors.push(e);
                continue;
            }
            Err(panic) => {
                fallbacks.push(format!("{engine} {panic}"));
                errors.push(ExtractError::Crashed(format!("{engine} {panic}")));
                continue;
            }
        };
        let numbers = doc.page_numbers();
        if numbers.len() > max_pages {
            return Err(ExtractError::TooManyPages { pages: numbers.len(), limit: max_pages });
        }
        if !opened {
            primary = Some(engine);
            read_pages(doc.as_mut(), engine, &numbers, &mut pages, max_text)?;
            continue;
        }
        // Only pages this engine has too: page trees that disagree are not merged blindly.
        let retry: Vec<u32> = retry.into_iter().filter(|n| numbers.contains(n)).collect();
        let mut again = BTreeMap::new();
        read_pages(doc.as_mut(), engine, &retry, &mut again, max_text)?;
        for (number, result) in again {
            // A failed page takes whatever this engine says (text, or its own reason); a page
            // read blank by an engine that found no text anywhere takes only real text.
            let better = match (&pages[&number], &result) {
                (Err(_), _) => true,
                (Ok(_), Ok((_, text))) => !text.trim().is_empty(),
                (Ok(_), Err(_)) => false,
            };
            if better {
                if let (Err(reason), Ok(_)) = (&pages[&number], &result) {
                    first_failures.entry(number).or_insert_with(|| reason.clone());
                }
                pages.insert(number, result);
            }
        }
    }
    let Some(primary) = primary else {
        // No engine opened it: an encrypted document is reported as such, else the first error.
        return Err(if errors.contains(&ExtractError::Encrypted) {
            ExtractError::Encrypted
        } else {
            errors.into_iter().next().unwrap_or_else(|| ExtractError::Malformed("no PDF engine configured".into()))
        });
    };
    if let Some((number, Err(reason))) = pages.iter().next().filter(|_| pages.values().all(Result::is_err)) {
        return Err(ExtractError::Malformed(format!("no page could be read (page {number}: {reason})")));
    }
    // The document's engine is the first that opened it — unless it found no text anywhere and
    // a later one did.
    let engine = if blank_retry {
        pages.values().flatten().find(|(_, text)| !text.trim().is_empty()).map_or(primary, |(e, _)| *e)
    } else {
        primary
    };
    let position = engines.iter().position(|e| *e == engine).unwrap_or(0);
    let fallbacks: Vec<String> = engines[..position]
        .iter()
        .map(|earlier| {
            fallbacks
                .iter()
                .find(|f| f.starts_with(earlier.name()))
                .cloned()
                .unwrap_or_else(|| format!("{earlier} found no text"))
        })
        .collect();
    let mut done = Extraction { engine: Some(engine), fallbacks, ..Extraction::default() };
    for (number, page) in pages {
        match page {
            Ok((reader, text)) => {
                if reader != engine
                    && let Some(reason) = first_failures.remove(&number)
                {
                    done.mended_pages.push(MendedPage { number, engine: reader, reason });
                }
                done.pages.push(Page { number: Some(number), text });
            }
            Err(reason) => done.failed_pages.push(FailedPage { number, reason }),
        }
    }
    Ok(done)
}

/// A page's text and the engine that read it, or why it could not be read.
type PageResult = Result<(Engine, String), String>;

/// Reads `numbers` into `into`, each page guarded; stops with `TextTooLarge` past `max_text`.
fn read_pages(
    doc: &mut dyn PdfDocument,
    engine: Engine,
    numbers: &[u32],
    into: &mut BTreeMap<u32, PageResult>,
    max_text: usize,
) -> Result<(), ExtractError> {
    let mut total: usize = into.values().filter_map(|p| p.as_ref().ok()).map(|(_, t)| t.len()).sum();
    for &number in numbers {
        let page = match guarded(|| doc.page_text(number)) {
            Ok(Ok(text)) => Ok((engine, text)),
            Ok(Err(e)) => Err(format!("{engine}: {e}")),
            Err(panic) => Err(format!("{engine} {panic}")),
        };
        total += page.as_ref().map_or(0, |(_, t)| t.len());
        if total > max_text {
            return Err(ExtractError::TextTooLarge(u64::try_from(max_text / (1024 * 1024)).unwrap_or(u64::MAX)));
        }
        into.insert(number, page);
    }
    Ok(())
}

/// Whether the pages read so far hold no visible text at all.
fn blank(pages: &BTreeMap<u32, PageResult>) -> bool {
    pages.values().all(|p| p.as_ref().map_or(true, |(_, t)| t.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/documents").join(name)
    }

    fn manual() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/knowledge/lift-pro-user-manual.pdf")
    }

    #[test]
    fn each_engine_reads_every_page_of_a_sound_pdf() {
        for engine in Engine::ALL {
            let done = extract_in_process(&manual(), 100, 64, &[engine]).expect("extracted");
            assert_eq!(done.pages.len(), 11, "{engine}");
            assert!(done.failed_pages.is_empty() && done.fallbacks.is_empty(), "{engine}: {done:?}");
            assert_eq!(done.engine, Some(engine));
            assert!(done.pages.iter().any(|p| p.text.contains("E04")), "{engine}");
            assert!(done.warnings().is_empty());
        }
    }

    #[test]
    fn a_page_whose_content_stream_does_not_decode_is_skipped_and_listed_by_every_engine_order() {
        for engines in
            [&[Engine::PdfOxide][..], &[Engine::PdfExtract], &Engine::ALL, &[Engine::PdfExtract, Engine::PdfOxide]]
        {
            let done = extract_in_process(&fixture("broken-page.pdf"), 100, 64, engines).expect("extracted");
            let failed: Vec<u32> = done.failed_pages.iter().map(|p| p.number).collect();
            assert_eq!(failed, [3], "{engines:?}");
            assert_eq!(done.pages.len(), 10);
            assert_eq!(done.page_count(), 11);
            assert_eq!(done.engine, Some(engines[0]), "the primary read the other pages");
            let warnings = done.warnings();
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].starts_with("1 of 11 pages could not be read and were skipped: 3 (page 3: "),
                "{warnings:?}"
            );
        }
    }

    #[test]
    fn documents_no_engine_can_open_fail_with_the_reason() {
        for engines in [&Engine::ALL[..], &[Engine::PdfExtract, Engine::PdfOxide]] {
            assert_eq!(extract_in_process(&fixture("encrypted.pdf"), 100, 64, engines), Err(ExtractError::Encrypted));
            let truncated = extract_in_process(&fixture("truncated.pdf"), 100, 64, engines);
            assert!(matches!(truncated, Err(ExtractError::Malformed(_))), "{truncated:?}");
            let many = extract_in_process(&fixture("many-pages.pdf"), 100, 64, engines);
            assert_eq!(many, Err(ExtractError::TooManyPages { pages: 20_000, limit: 100 }));
        }
    }

    #[test]
    fn a_scan_without_text_is_tried_by_every_engine_and_stays_without_text() {
        let done = extract_in_process(&fixture("empty-text.pdf"), 100, 64, &Engine::ALL).expect("extracted");
        assert_eq!(done.pages.len(), 2);
        assert!(done.pages.iter().all(|p| p.text.trim().is_empty()));
        assert_eq!(done.engine, Some(Engine::PdfOxide));
    }

    #[test]
    fn the_text_limit_stops_extraction() {
        // The manual holds about 20 KB of text: a 0 MiB limit is exceeded on the first page.
        let result = extract_in_process(&manual(), 100, 0, &Engine::ALL);
        assert_eq!(result, Err(ExtractError::TextTooLarge(0)));
    }

    #[test]
    fn a_panic_is_caught_and_reported_with_its_message() {
        std::panic::set_hook(Box::new(record_panic));
        let result: Result<(), String> = guarded(|| panic!("bad length of hexstring"));
        let _ = std::panic::take_hook();
        let message = result.expect_err("caught");
        assert!(message.starts_with("panicked: bad length of hexstring (at "), "{message}");
        assert!(message.contains("child.rs:"), "{message}");
    }
}
