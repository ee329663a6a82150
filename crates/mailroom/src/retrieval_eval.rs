//! The retrieval evaluation behind `mailroom eval retrieval` and its CI test: an evaluation set
//! (questions naming the document and page that answer them, and off-topic questions that must
//! retrieve nothing) over real PDF manuals, ingested through the real pipeline code
//! ([`doc_ingester::Ingester`], with PDF extraction in the `doc-ingester` child), then every
//! question retrieved in each [`Mode`] with the production [`Retriever`].
//!
//! A question counts as found when one of the first `k` passages returned is from its document
//! and one of its pages, or from its document and contains the question's evidence phrase (a
//! page's first chunk carries over the last words of the page before, so an answer at the foot
//! of a page may come in the next page's first chunk). Recall@k is the
//! share of answerable questions found, MRR the mean of 1/rank of the first right passage (0
//! when none is in the first k); for off-topic questions the figure is the share for which
//! nothing at all is returned (and the email would be escalated).
//!
//! With `MAILROOM_EVAL_TRACE` set, each retrieval also prints (stderr) the question's best
//! similarity and best lexical coverage: the data the relevance thresholds are calibrated on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use doc_ingester::Ingester;
use embedders::Embedder;
use mailroom_db::documents::{self, NewDocument};
use pipeline_core::Settings;
use pipeline_core::messages::{DocumentMetadata, DocumentToIngest, new_message_id, now};
use rag_generator::RagSettings;
use rag_generator::retrieval::{Mode, Retriever};
use serde::Deserialize;
use sqlx::PgPool;
use uuid::Uuid;

/// An evaluation set (`tests/retrieval-eval/set.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct EvalSet {
    /// The package list for `scripts/fetch-debian-docs.sh`, relative to the set's file.
    pub packages: String,
    /// The documents, by id.
    pub documents: Vec<EvalDocument>,
    /// The questions.
    pub questions: Vec<EvalQuestion>,
}

/// One document of the set.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalDocument {
    /// How questions name it.
    pub id: String,
    /// Its path below the unpacked packages' root.
    pub path: String,
    /// Its language (ISO 639-1).
    pub language: String,
}

/// One question of the set.
#[derive(Debug, Clone, Deserialize)]
pub struct EvalQuestion {
    /// As a customer would write it.
    pub question: String,
    /// Its language (ISO 639-1), for the per-language figures.
    pub language: String,
    /// The answering document's id (absent for off-topic questions).
    #[serde(default)]
    pub document: Option<String>,
    /// The pages (1-based) that answer it.
    #[serde(default)]
    pub pages: Vec<u32>,
    /// A phrase of the answering page, checked against the ingested text.
    #[serde(default)]
    pub evidence: Option<String>,
    /// Whether the documents do not answer it at all.
    #[serde(default)]
    pub off_topic: bool,
}

impl EvalSet {
    /// Reads a set file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let set: EvalSet =
            serde_json::from_str(&text).with_context(|| format!("{} is not a valid set", path.display()))?;
        for q in &set.questions {
            let known = q.document.as_ref().is_some_and(|d| set.documents.iter().any(|doc| &doc.id == d));
            anyhow::ensure!(
                q.off_topic || (known && !q.pages.is_empty()),
                "question {:?} names no known document and page",
                q.question
            );
        }
        Ok(set)
    }
}

/// Fetches the set's packages with `scripts/fetch-debian-docs.sh` (found above the set's
/// directory) into `cache` (the script's default when `None`); returns the unpacked root.
pub fn fetch_documents(set_path: &Path, set: &EvalSet, cache: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = set_path.parent().unwrap_or(Path::new(".")).canonicalize()?;
    let script = dir
        .ancestors()
        .map(|d| d.join("scripts/fetch-debian-docs.sh"))
        .find(|p| p.is_file())
        .context("scripts/fetch-debian-docs.sh not found above the set's directory")?;
    let mut command = std::process::Command::new("bash");
    command.arg(&script).arg(dir.join(&set.packages));
    if let Some(cache) = cache {
        command.arg(cache);
    }
    let output = command.stderr(std::process::Stdio::inherit()).output()?;
    anyhow::ensure!(output.status.success(), "{} failed ({})", script.display(), output.status);
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// The figures of one mode.
#[derive(Debug, Clone)]
pub struct ModeFigures {
    /// The mode.
    pub mode: Mode,
    /// Recall@k over the answerable questions.
    pub recall: f64,
    /// Mean reciprocal rank (within the first k).
    pub mrr: f64,
    /// Per language: (recall, questions).
    pub per_language: BTreeMap<String, (f64, usize)>,
    /// Share of off-topic questions for which nothing was returned.
    pub off_topic_rejected: f64,
    /// Answerable questions not found, for the report.
    pub missed: Vec<String>,
    /// Median time of one retrieval (all questions, sequential), in milliseconds.
    pub p50_ms: f64,
    /// 99th percentile of the same, in milliseconds.
    pub p99_ms: f64,
}

/// The `q`-quantile (nearest rank) of `sorted`, 0 when empty.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// The figures of one embedder.
#[derive(Debug, Clone)]
pub struct EmbedderFigures {
    /// The embedder's model id.
    pub model: String,
    /// Passages considered per question.
    pub k: usize,
    /// Answerable questions.
    pub answerable: usize,
    /// Off-topic questions.
    pub off_topic: usize,
    /// Chunks ingested.
    pub chunks: usize,
    /// Questions whose evidence phrase was not found on their page in the ingested text.
    pub evidence_missing: Vec<String>,
    /// One entry per mode, in [`Mode::ALL`] order.
    pub modes: Vec<ModeFigures>,
}

impl EmbedderFigures {
    /// The figures of `mode`.
    pub fn mode(&self, mode: Mode) -> Option<&ModeFigures> {
        self.modes.iter().find(|m| m.mode == mode)
    }
}

/// Removes whitespace, so phrases match across line breaks and extraction differences: an
/// evidence phrase copied from pdftotext may hold spaces the chunker removes (between Chinese
/// or Japanese characters) or lack ones an engine inserts.
fn squash(text: &str) -> String {
    text.split_whitespace().collect()
}

/// Ingests the set's documents for `agent` through `ingester` and evaluates every mode.
///
/// `settings` supplies `[rag]` (with `top_k` replaced by `k`); `storage_dir` must be the
/// ingester's storage directory.
#[allow(clippy::too_many_arguments)]
pub async fn evaluate(
    settings: &Settings,
    pool: &PgPool,
    ingester: &Ingester,
    storage_dir: &Path,
    root: &Path,
    set: &EvalSet,
    agent: &str,
    k: usize,
) -> anyhow::Result<EmbedderFigures> {
    let embedder: Arc<dyn Embedder> = ingester.embedder().clone();
    let mut ids: BTreeMap<String, (String, Uuid)> = BTreeMap::new();
    let mut chunks = 0;
    // Documents of a previous run kept with --reuse (same agent, same file name, ready).
    let ready: Vec<(Uuid, String, i32)> = sqlx::query_as(
        "SELECT document_id, filename, chunk_count FROM documents WHERE agent_email = $1 AND status = 'ready'",
    )
    .bind(agent)
    .fetch_all(pool)
    .await?;
    for doc in &set.documents {
        let source = root.join(&doc.path);
        let filename = source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if let Some((id, _, count)) = ready.iter().find(|(_, name, _)| *name == filename) {
            chunks += usize::try_from(*count).unwrap_or_default();
            ids.insert(doc.id.clone(), (doc.language.clone(), *id));
            continue;
        }
        let stored = storage_dir.join(&filename);
        std::fs::copy(&source, &stored).with_context(|| format!("cannot copy {}", source.display()))?;
        let id = Uuid::new_v4();
        let size = std::fs::metadata(&stored)?.len();
        let message_id = new_message_id();
        let stored_path = stored.display().to_string();
        documents::insert(
            pool,
            &NewDocument {
                document_id: id,
                agent_email: agent,
                filename: &filename,
                stored_path: &stored_path,
                content_type: "application/pdf",
                size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
                message_id: &message_id,
            },
        )
        .await?;
        let msg = DocumentToIngest {
            message_id,
            timestamp: now(),
            document_id: id.to_string(),
            filename: filename.clone(),
            file_path: stored_path,
            file_size_bytes: size,
            uploaded_by: "mailroom eval".into(),
            agent_email: agent.to_owned(),
            metadata: DocumentMetadata {
                upload_source: Some("eval".into()),
                content_type: Some("application/pdf".into()),
            },
        };
        let done = ingester
            .ingest(id, &msg, "application/pdf")
            .await
            .with_context(|| format!("ingesting {} ({})", doc.id, doc.path))?;
        tracing::info!(document = %doc.id, pages = done.pages, chunks = done.chunks, "Ingested.");
        chunks += done.chunks;
        ids.insert(doc.id.clone(), (doc.language.clone(), id));
    }

    // The set is only as good as its page numbers: check each evidence phrase is on its page.
    let mut evidence_missing = Vec::new();
    for q in set.questions.iter().filter(|q| !q.off_topic) {
        let (Some(doc), Some(evidence)) = (&q.document, &q.evidence) else { continue };
        let id = ids[doc].1.to_string();
        let pages: Vec<i32> = q.pages.iter().map(|p| i32::try_from(*p).unwrap_or(i32::MAX)).collect();
        let texts: Vec<String> = sqlx::query_scalar(
            "SELECT text FROM chunks WHERE document_id = $1 AND page = ANY($2) ORDER BY chunk_index",
        )
        .bind(&id)
        .bind(&pages)
        .fetch_all(pool)
        .await?;
        if !texts.iter().any(|t| squash(t).contains(&squash(evidence))) {
            evidence_missing.push(q.question.clone());
        }
    }

    let mut rag: RagSettings = settings.section("rag")?;
    rag.retrieval.top_k = k;
    let retriever = Retriever::new(ingester.store().clone(), pool.clone(), rag.retrieval);
    // The full-text search alone, for the trace.
    let trace_search = vector_store::LexicalSearch::new(pool.clone());
    let texts: Vec<String> = set.questions.iter().map(|q| q.question.clone()).collect();
    let mut vectors = Vec::with_capacity(texts.len());
    for batch in texts.chunks(32) {
        vectors.extend(embedder.embed(batch).await?);
    }
    let answerable = set.questions.iter().filter(|q| !q.off_topic).count();
    let off_topic = set.questions.len() - answerable;
    let mut modes = Vec::new();
    for mode in Mode::ALL {
        let (mut found, mut reciprocal, mut rejected) = (0usize, 0.0f64, 0usize);
        let mut per_language: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let mut missed = Vec::new();
        let mut latencies = Vec::with_capacity(set.questions.len());
        // One untimed retrieval first: the first search of an agent loads its vector index,
        // which later ones reuse until the agent's documents change.
        if let (Some(q), Some(vector)) = (set.questions.first(), vectors.first()) {
            retriever.retrieve(agent, &q.question, vector, mode).await?;
        }
        for (q, vector) in set.questions.iter().zip(&vectors) {
            let started = std::time::Instant::now();
            let hits = retriever.retrieve(agent, &q.question, vector, mode).await?;
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            if std::env::var_os("MAILROOM_EVAL_TRACE").is_some() {
                let best = retriever.retrieve(agent, &q.question, vector, Mode::Vector).await?;
                let lexical = best_lexical(&trace_search, agent, &q.question).await?;
                eprintln!(
                    "trace {} off_topic={} vector={:.3} lexical={:.3} {}",
                    mode.name(),
                    q.off_topic,
                    best.first().map_or(0.0, |h| h.score),
                    lexical,
                    q.question
                );
            }
            if q.off_topic {
                rejected += usize::from(hits.is_empty());
                continue;
            }
            let want = q.document.as_ref().map(|d| ids[d].1.to_string()).unwrap_or_default();
            // The right document, and its page — or the answer's own words: a page's first chunk
            // carries the end of the page before, so an answer at the foot of a page can come in
            // the next page's first chunk.
            let evidence = q.evidence.as_deref().map(squash).filter(|e| !e.is_empty());
            let rank = hits.iter().take(k).position(|h| {
                h.document_id == want
                    && (h.page.is_some_and(|p| q.pages.contains(&p))
                        || evidence.as_ref().is_some_and(|e| squash(&h.text).contains(e.as_str())))
            });
            let entry = per_language.entry(q.language.clone()).or_default();
            entry.1 += 1;
            match rank {
                Some(r) => {
                    found += 1;
                    entry.0 += 1;
                    reciprocal += 1.0 / (r as f64 + 1.0);
                }
                None => {
                    let got: Vec<String> = hits
                        .iter()
                        .take(k)
                        .map(|h| format!("{} p.{} ({:.2})", h.source, h.page.unwrap_or_default(), h.score))
                        .collect();
                    missed.push(format!(
                        "{} [want {} p.{:?}; got {}]",
                        q.question,
                        q.document.as_deref().unwrap_or_default(),
                        q.pages,
                        if got.is_empty() { "nothing".to_owned() } else { got.join(", ") }
                    ));
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        modes.push(ModeFigures {
            mode,
            recall: found as f64 / answerable.max(1) as f64,
            mrr: reciprocal / answerable.max(1) as f64,
            per_language: per_language.into_iter().map(|(l, (f, n))| (l, (f as f64 / n.max(1) as f64, n))).collect(),
            off_topic_rejected: rejected as f64 / off_topic.max(1) as f64,
            missed,
            p50_ms: quantile(&latencies, 0.5),
            p99_ms: quantile(&latencies, 0.99),
        });
    }
    Ok(EmbedderFigures {
        model: embedder.model_id().to_owned(),
        k,
        answerable,
        off_topic,
        chunks,
        evidence_missing,
        modes,
    })
}

/// The best lexical score of a question, for `MAILROOM_EVAL_TRACE`.
async fn best_lexical(search: &vector_store::LexicalSearch, agent: &str, question: &str) -> anyhow::Result<f32> {
    let hits = search.search(agent, question, 20).await?;
    Ok(hits.iter().map(|h| h.score).fold(0.0, f32::max))
}

/// The figures as a Markdown table (the form docs/RETRIEVAL.md records).
pub fn table(figures: &EmbedderFigures) -> String {
    let languages: Vec<(String, usize)> = figures
        .modes
        .first()
        .map_or_else(Vec::new, |m| m.per_language.iter().map(|(l, (_, n))| (l.clone(), *n)).collect());
    let k = figures.k;
    let mut out = format!("| mode | recall@{k} | MRR@{k} |");
    for (language, n) in &languages {
        out.push_str(&format!(" recall@{k} {language} ({n}) |"));
    }
    out.push_str(&format!(" off-topic → nothing ({}) |\n|---|---|---|", figures.off_topic));
    out.push_str(&"---|".repeat(languages.len() + 1));
    out.push('\n');
    for m in &figures.modes {
        out.push_str(&format!("| {} | {:.2} | {:.2} |", m.mode.name(), m.recall, m.mrr));
        for (language, _) in &languages {
            let recall = m.per_language.get(language).map_or(0.0, |(r, _)| *r);
            out.push_str(&format!(" {recall:.2} |"));
        }
        out.push_str(&format!(" {:.2} |\n", m.off_topic_rejected));
    }
    out
}
