//! The worker processes of a `mailroom bench` run, and the knowledge base they answer from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use pipeline_core::worker_env::env_var;

use super::*;
use crate::procs::{self, Output, Worker};

/// Running workers with their health ports, and the highest peak RSS seen per binary.
pub(super) struct Fleet {
    pub(super) bins: PathBuf,
    pub(super) logs: PathBuf,
    pub(super) env: Vec<(String, String)>,
    pub(super) workers: Vec<(Worker, u16)>,
    pub(super) peak_kib: HashMap<String, u64>,
}

impl Fleet {
    /// Starts `names` with the common environment plus `extra`, each with its own health port,
    /// and waits until every one reports ready.
    pub(super) async fn start(
        &mut self,
        names: &[&str],
        extra: &[(String, String)],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        for name in names {
            let mut env = self.env.clone();
            env.extend(extra.iter().cloned());
            // Each process gets its own health port, so readiness can be asked; the upload API
            // serves its health endpoints on its own listen address, which the bench uploads to.
            let port = if *name == "upload-api" {
                let listen = env_var("upload_api.listen");
                env.iter()
                    .rev()
                    .find(|(k, _)| k == listen)
                    .and_then(|(_, v)| v.rsplit(':').next()?.parse().ok())
                    .with_context(|| format!("{listen} has no port"))?
            } else {
                let port = free_port()?;
                env.extend(WorkerEnv::new().set("http.listen", format!("127.0.0.1:{port}")).owned());
                port
            };
            let worker = procs::start(&self.bins, name, 1, &env, &Output::Files(self.logs.clone()))?;
            self.workers.push((worker, port));
        }
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        let deadline = Instant::now() + timeout;
        for (worker, port) in &mut self.workers {
            loop {
                let ready = http
                    .get(format!("http://127.0.0.1:{port}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                if let Ok(Some(status)) = worker.child.try_wait() {
                    anyhow::bail!("{} exited during start ({status}); see {}", worker.label(), self.logs.display());
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "{} did not become ready; see {}",
                    worker.label(),
                    self.logs.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Records every worker's peak RSS, then stops them all gracefully.
    pub(super) async fn stop(&mut self) {
        self.sample_rss();
        let mut workers: Vec<Worker> = self.workers.drain(..).map(|(w, _)| w).collect();
        let killed = procs::stop_all(&mut workers, Duration::from_secs(40)).await;
        if !killed.is_empty() {
            say(format!("  ! had to kill {}", killed.join(", ")));
        }
    }

    /// Each consuming worker's mean handler time so far (from its `/metrics`), as
    /// `name mean-ms`: with `concurrency` handlers a stage moves at most `concurrency / mean`
    /// emails a second, which tells which stage holds the pipeline back.
    pub(super) async fn handler_means(&self) -> String {
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for (w, port) in &self.workers {
            let Ok(response) = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await else { continue };
            let text = response.text().await.unwrap_or_default();
            let total = |metric: &str| -> f64 {
                text.lines()
                    .filter(|l| l.starts_with(metric))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            };
            let count = total("mailroom_handler_duration_seconds_count");
            if count > 0.0 {
                out.push(format!("{} {:.1} ms", w.name, 1e3 * total("mailroom_handler_duration_seconds_sum") / count));
            }
        }
        out.join(", ")
    }

    pub(super) fn sample_rss(&mut self) {
        for (w, _) in &self.workers {
            let kib = w.child.id().map_or(0, peak_rss_kib);
            let peak = self.peak_kib.entry(w.name.clone()).or_default();
            *peak = (*peak).max(kib);
        }
    }
}

/// Uploads every file of `knowledge` through the upload API and waits until all are ingested.
pub(super) async fn ingest(
    pool: &sqlx::PgPool,
    knowledge: &Path,
    agent: &str,
    base: &str,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let documents = crate::sandbox::knowledge_files(knowledge)?;
    crate::sandbox::upload(&http, base, token, agent, &documents).await?;
    let deadline = Instant::now() + timeout;
    loop {
        let (ready, failed): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'ready'), count(*) FILTER (WHERE status = 'failed') FROM documents",
        )
        .fetch_one(pool)
        .await?;
        anyhow::ensure!(failed == 0, "{failed} document(s) failed to ingest (see the doc-ingester log)");
        if ready as usize >= documents.len() {
            let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM chunks").fetch_one(pool).await?;
            return usize::try_from(chunks).context("chunk count");
        }
        anyhow::ensure!(Instant::now() < deadline, "documents did not finish ingesting");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The bundled examples, found from the working directory or from the source tree this binary
/// was built from.
pub(super) fn example_dir(given: Option<&Path>, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        anyhow::ensure!(path.is_dir(), "{} is not a directory", path.display());
        return Ok(path.to_owned());
    }
    [PathBuf::from("examples").join(name), Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name)]
        .into_iter()
        .find(|p| p.is_dir())
        .with_context(|| format!("examples/{name} not found; run from the repository root"))
}
