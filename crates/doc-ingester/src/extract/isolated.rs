//! The parent side of PDF extraction: run the child ([`super::child`]) with an empty
//! environment, under the limits, and read its one JSON report; when the child dies outright,
//! run it again with the engines after the first.

use std::path::Path;
use std::process::{ExitStatus, Stdio};

use tokio::io::AsyncReadExt as _;

use super::child::{CHILD_COMMAND, Report};
use super::{Engine, ExtractError, Extraction, Limits};

/// Runs the child on `path` with `limits.engines`; if it crashes (rather than reporting an
/// error), runs it again without the engine it started with, until no engine is left.
pub async fn extract_pdf_isolated(program: &Path, path: &Path, limits: &Limits) -> Result<Extraction, ExtractError> {
    let mut crashes = Vec::new();
    let mut engines: &[Engine] = &limits.engines;
    loop {
        match run_child(program, path, limits, engines).await {
            Err(ExtractError::Crashed(detail)) if engines.len() > 1 => {
                crashes.push(format!("{} crashed ({detail})", engines[0]));
                engines = &engines[1..];
            }
            Ok(mut done) => {
                // The engines of a run that crashed come before this run's in the fallback story.
                crashes.append(&mut done.fallbacks);
                done.fallbacks = crashes;
                return Ok(done);
            }
            Err(e) => return Err(e),
        }
    }
}

/// One run of the child.
async fn run_child(
    program: &Path,
    path: &Path,
    limits: &Limits,
    engines: &[Engine],
) -> Result<Extraction, ExtractError> {
    let engine_list: Vec<&str> = engines.iter().map(|e| e.name()).collect();
    let mut child = tokio::process::Command::new(program)
        // The child parses untrusted bytes: it gets no database or broker URL, no provider key,
        // nothing from our environment at all (it needs none).
        .env_clear()
        .arg(CHILD_COMMAND)
        .arg(path)
        .arg(limits.max_pages.to_string())
        .arg(limits.max_memory_mb.to_string())
        .arg(limits.max_text_mb.to_string())
        .arg(engine_list.join(","))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ExtractError::Crashed(format!("cannot start the extractor {}: {e}", program.display())))?;
    // The report carries the text as JSON: allow for its escaping on top of the text limit.
    let max_text = limits.max_text_mb * 1024 * 1024;
    let max_report = max_text.saturating_mul(2).saturating_add(64 * 1024);
    let stdout = child.stdout.take().ok_or_else(|| ExtractError::Crashed("no stdout".into()))?;
    let stderr = child.stderr.take().ok_or_else(|| ExtractError::Crashed("no stderr".into()))?;
    let work = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut stdout = stdout.take(max_report + 1);
        let mut stderr = stderr.take(64 * 1024);
        let (read_out, _) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        read_out.map_err(|e| ExtractError::Crashed(e.to_string()))?;
        if out.len() as u64 > max_report {
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
    if !status.success() {
        return Err(ExtractError::Crashed(describe(status, &err)));
    }
    let report: Report =
        serde_json::from_slice(&out).map_err(|e| ExtractError::Crashed(format!("unreadable extractor output: {e}")))?;
    let done = report?;
    let text_bytes: usize = done.pages.iter().map(|p| p.text.len()).sum();
    if text_bytes as u64 > max_text {
        return Err(ExtractError::TextTooLarge(limits.max_text_mb));
    }
    Ok(done)
}

/// "exit code 101: <last line of stderr>" or "killed by signal 6".
fn describe(status: ExitStatus, stderr: &[u8]) -> String {
    let detail = match status.code() {
        Some(code) => format!("exit code {code}"),
        None => {
            use std::os::unix::process::ExitStatusExt as _;
            format!("killed by signal {}", status.signal().unwrap_or_default())
        }
    };
    let stderr = String::from_utf8_lossy(stderr);
    match stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
        Some(last) => format!("{detail}: {}", last.chars().take(200).collect::<String>()),
        None => detail,
    }
}
