//! `mailroom ingest FILE… --agent EMAIL`: uploads documents through the upload API and follows
//! each one until it is `ready` or `failed`, with a progress bar per document, and the
//! document's warnings (pages skipped, a fallback PDF engine) when it is ready with some.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use pipeline_core::Settings;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

/// `[upload_api]` as the CLI needs it.
#[derive(Debug, Deserialize)]
struct UploadApi {
    listen: String,
    token: SecretString,
}

#[derive(Debug, Deserialize)]
struct Accepted {
    document_id: String,
}

#[derive(Debug, Deserialize)]
struct DocumentStatus {
    status: String,
    progress: i16,
    chunk_count: i32,
    error: Option<String>,
    /// Skipped pages or a fallback PDF engine (absent from an older API: none).
    #[serde(default)]
    warnings: Vec<String>,
}

struct Tracked {
    name: String,
    id: Option<String>,
    line: String,
    done: bool,
    failed: bool,
}

fn bar(progress: i16) -> String {
    let filled = usize::try_from(progress.clamp(0, 100)).unwrap_or(0) / 5;
    format!("[{}{}] {progress:>3}%", "#".repeat(filled), "-".repeat(20 - filled))
}

/// Uploads `files` for `agent` to the API at `url` (default: `upload_api.listen`) and waits.
pub async fn ingest(
    settings: &Settings,
    files: &[PathBuf],
    agent: &str,
    url: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let api: UploadApi = settings.section("upload_api")?;
    let base = url.map(str::to_owned).unwrap_or_else(|| format!("http://{}", api.listen));
    let base = base.trim_end_matches('/').to_owned();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let auth = format!("Bearer {}", api.token.expose_secret());
    let mut tracked = Vec::new();
    for path in files {
        let name =
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string());
        let bytes = match tokio::fs::read(path).await {
            Ok(b) => b,
            Err(e) => {
                tracked.push(Tracked { name, id: None, line: format!("cannot read: {e}"), done: true, failed: true });
                continue;
            }
        };
        let form = reqwest::multipart::Form::new()
            .text("agent_email", agent.to_owned())
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name.clone()));
        let response = client
            .post(format!("{base}/documents"))
            .header("authorization", &auth)
            .multipart(form)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the upload API at {base}: {e} (is `upload-api` running?)"))?;
        let status = response.status();
        if status.is_success() {
            let accepted: Accepted = response.json().await?;
            tracked.push(Tracked { name, id: Some(accepted.document_id), line: bar(0), done: false, failed: false });
        } else {
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            let reason = body["error"].as_str().unwrap_or("rejected").to_owned();
            tracked.push(Tracked {
                name,
                id: None,
                line: format!("rejected ({status}): {reason}"),
                done: true,
                failed: true,
            });
        }
    }
    let tty = std::io::stdout().is_terminal();
    let width = tracked.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let started = Instant::now();
    let mut printed = 0;
    loop {
        for t in tracked.iter_mut().filter(|t| !t.done) {
            let Some(id) = &t.id else { continue };
            let response = client.get(format!("{base}/documents/{id}")).header("authorization", &auth).send().await?;
            if !response.status().is_success() {
                continue;
            }
            let doc: DocumentStatus = response.json().await?;
            let line = match doc.status.as_str() {
                "ready" if doc.warnings.is_empty() => format!("{} ready, {} chunks", bar(100), doc.chunk_count),
                "ready" => {
                    format!("{} ready, {} chunks; warning: {}", bar(100), doc.chunk_count, doc.warnings.join("; "))
                }
                "failed" => format!("failed: {}", doc.error.unwrap_or_default()),
                other => format!("{} {other}", bar(doc.progress)),
            };
            t.done = matches!(doc.status.as_str(), "ready" | "failed");
            t.failed = doc.status == "failed";
            if !tty && line != t.line {
                println!("{:<width$}  {line}", t.name);
            }
            t.line = line;
        }
        if tty {
            let mut out = std::io::stdout().lock();
            if printed > 0 {
                write!(out, "\x1b[{printed}A")?;
            }
            for t in &tracked {
                writeln!(out, "\x1b[2K{:<width$}  {}", t.name, t.line)?;
            }
            out.flush()?;
            printed = tracked.len();
        }
        if tracked.iter().all(|t| t.done) {
            break;
        }
        if started.elapsed() > timeout {
            println!("Gave up waiting after {} s; documents still in progress keep going.", timeout.as_secs());
            return Ok(ExitCode::from(1));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if !tty {
        // Rejected uploads never changed state in the loop; report them once at the end.
        for t in tracked.iter().filter(|t| t.id.is_none()) {
            println!("{:<width$}  {}", t.name, t.line);
        }
    }
    Ok(if tracked.iter().any(|t| t.failed) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
