//! The real-PDF corpus (issue 11): Debian documentation packages fetched and unpacked by
//! `scripts/fetch-debian-docs.sh` into a cache that is never committed, and poppler's
//! `pdftotext` as the reference for how much text each document holds. Used by the corpus
//! benchmark (`doc-ingester` example `pdf_corpus_bench`) and the CI subset test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::repo_root;

/// Share of the reference's text length an extraction may differ by and still agree.
pub const LENGTH_TOLERANCE: f64 = 0.15;

/// Fetches the packages named in `list` (idempotent, cached, one fetch at a time per cache;
/// `MAILROOM_DOCS_CACHE` moves the cache) and returns the root holding one tree per package.
pub fn fetch(list: &Path) -> PathBuf {
    let script = repo_root().join("scripts/fetch-debian-docs.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(list)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {} failed ({}): {}",
        script.display(),
        list.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let root = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().trim().to_owned();
    PathBuf::from(root)
}

/// Every `.pdf` file under `root`, sorted, each document once: symbolic links are skipped and
/// a file with the same bytes as an earlier one (packages ship some manuals twice) too.
pub fn pdfs(root: &Path) -> Vec<PathBuf> {
    use std::collections::HashSet;
    use std::hash::{DefaultHasher, Hash as _, Hasher as _};
    let mut seen = HashSet::new();
    all_pdfs(root)
        .into_iter()
        .filter(|p| {
            let Ok(bytes) = std::fs::read(p) else { return false };
            let mut hasher = DefaultHasher::new();
            bytes.hash(&mut hasher);
            seen.insert((bytes.len(), hasher.finish()))
        })
        .collect()
}

fn all_pdfs(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else { continue };
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|x| x.eq_ignore_ascii_case("pdf")) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Panics with instructions unless poppler's `pdftotext` is installed.
pub fn require_pdftotext() {
    let present = Command::new("pdftotext").arg("-v").output().is_ok();
    assert!(
        present,
        "pdftotext (poppler-utils) is missing: it is the reference the PDF corpus is measured against; \
         install it with `apt-get install -y poppler-utils` (.ci/run does)"
    );
}

/// Characters that are neither whitespace nor invisible format characters: the fair measure of
/// how much text two extractors found, whatever spacing, line breaks and direction marks each
/// puts between words. pdftotext wraps every right-to-left run in embedding and pop-direction
/// controls (U+202B … U+202C): 1,888 of the 10,343 non-space characters of `quran-test2.pdf`,
/// which made an extractor that found the same letters look 18 % short.
pub fn visible_chars(text: &str) -> usize {
    text.chars().filter(|c| !c.is_whitespace() && !is_format_char(*c)).count()
}

/// Whether `c` is an invisible format character (Unicode category Cf): direction marks and
/// embeddings, zero-width (non-)joiners and spaces, the soft hyphen, the byte-order mark.
fn is_format_char(c: char) -> bool {
    matches!(u32::from(c),
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x08E2 | 0x180E | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF | 0xFFF9..=0xFFFB
        | 0x110BD | 0xE0001 | 0xE0020..=0xE007F)
}

/// Whether `ours` is within [`LENGTH_TOLERANCE`] of `reference` (both from [`visible_chars`]).
pub fn agrees(ours: usize, reference: usize) -> bool {
    (ours as f64 - reference as f64).abs() <= LENGTH_TOLERANCE * reference as f64
}

/// [`visible_chars`] of what `pdftotext` extracts from `pdf` (`None` when it fails or takes
/// more than two minutes), cached next to the corpus (`<root>/../pdftotext/`) by path and size.
pub fn pdftotext_chars(root: &Path, pdf: &Path) -> Option<usize> {
    let relative = pdf.strip_prefix(root).unwrap_or(pdf).to_string_lossy().replace('/', "%");
    let size = std::fs::metadata(pdf).map(|m| m.len()).unwrap_or(0);
    let cache = root.parent().unwrap_or(root).join("pdftotext");
    // `v2`: counted without format characters (counts of the first rule are not reused).
    let entry = cache.join(format!("{relative}.{size}.v2.chars"));
    if let Ok(cached) = std::fs::read_to_string(&entry) {
        return cached.trim().parse().ok().filter(|n: &usize| *n != usize::MAX);
    }
    let out =
        Command::new("timeout").args(["120", "pdftotext", "-q", "-enc", "UTF-8"]).arg(pdf).arg("-").output().ok()?;
    let chars = out.status.success().then(|| visible_chars(&String::from_utf8_lossy(&out.stdout)));
    // A failure is cached too (as usize::MAX), so a run does not wait for it again.
    let _ = std::fs::create_dir_all(&cache);
    let tmp = cache.join(format!("{relative}.{size}.{}.tmp", std::process::id()));
    if std::fs::write(&tmp, chars.unwrap_or(usize::MAX).to_string()).is_ok() {
        let _ = std::fs::rename(&tmp, &entry);
    }
    chars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direction_marks_and_spacing_are_not_text() {
        // What pdftotext prints for a right-to-left word, and the same word without controls.
        assert_eq!(visible_chars("\u{202B}سلام\u{202C}\n a\u{00AD}b \u{200F}"), visible_chars("سلام ab"));
        assert_eq!(visible_chars("سلام ab"), 6);
    }
}
