//! `mailroom eval retrieval [--set FILE]`: fetches the evaluation set's PDF manuals, ingests them
//! into a throw-away database through the real ingestion code, and prints recall@k and MRR of
//! vector-only, lexical-only and hybrid retrieval, per language, and how many off-topic
//! questions retrieve nothing — on the offline defaults (hashing embedder), then with the
//! OpenAI-compatible embedder of `[embeddings.openai]` when one is configured.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use embedders::EmbeddingSettings;
use pipeline_core::Settings;
use pipeline_core::worker_env::WorkerEnv;
use secrecy::{ExposeSecret as _, SecretString};

use crate::procs::{self, database_url};
use crate::retrieval_eval::{self, EmbedderFigures, EvalSet};

/// `mailroom eval …`.
#[derive(Debug, clap::Subcommand)]
pub enum EvalAction {
    /// Retrieval quality over the evaluation set (recall@k, MRR, per language, off-topic).
    Retrieval(RetrievalArgs),
    /// Classification quality of the configured provider chain over a labelled `.jsonl` set
    /// (confusion matrix, per language, auto-answer precision, calibration, cost).
    Classify(crate::classify_eval::ClassifyArgs),
}

/// `mailroom eval retrieval`.
#[derive(Debug, clap::Args)]
pub struct RetrievalArgs {
    /// The evaluation set.
    #[arg(long, default_value = "tests/retrieval-eval/set.json")]
    pub set: PathBuf,
    /// Where the fetched Debian packages are cached (default: the fetch script's).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Passages per question (default: rag.top_k).
    #[arg(long)]
    pub k: Option<usize>,
    /// The throw-away database (dropped and recreated on each run).
    #[arg(long, default_value = "mailroom_eval")]
    pub database: String,
    /// Also list the questions each mode missed, with what it returned instead.
    #[arg(long)]
    pub show_misses: bool,
    /// Keep the database afterwards and reuse documents already ingested in it (to iterate on
    /// retrieval without re-ingesting; re-ingest after changing chunking or embeddings).
    #[arg(long)]
    pub reuse: bool,
}

/// One embedder to evaluate: `embeddings.provider` and its agent.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    /// `embeddings.provider`.
    pub name: &'static str,
    /// The agent its documents are ingested for (one per provider: vectors of different
    /// embedders must not mix in one agent's index).
    pub agent: &'static str,
}

/// The offline default.
pub const HASHING: Provider = Provider { name: "hashing", agent: "eval-hashing@retrieval.example" };
/// An OpenAI-compatible server, as configured in `[embeddings.openai]`.
pub const OPENAI: Provider = Provider { name: "openai", agent: "eval-openai@retrieval.example" };

/// Whether an OpenAI-compatible embedder is configured: a key, or `embeddings.provider` set to
/// it (local servers need no key).
pub fn openai_configured(settings: &Settings) -> anyhow::Result<bool> {
    let embeddings: EmbeddingSettings = settings.section("embeddings")?;
    Ok(!embeddings.openai.api_key.expose_secret().trim().is_empty() || embeddings.provider == "openai")
}

/// Ingests the set for `provider` into the database at `db_url` and evaluates it. The settings
/// are those of `config` (and the environment) with the database, storage directory,
/// embeddings provider and vector store replaced.
#[allow(clippy::too_many_arguments)]
pub async fn evaluate_provider(
    config: Option<&Path>,
    db_url: &SecretString,
    work_dir: &Path,
    extractor: &Path,
    root: &Path,
    set: &EvalSet,
    provider: Provider,
    k: Option<usize>,
) -> anyhow::Result<EmbedderFigures> {
    let storage = work_dir.join(provider.name);
    std::fs::create_dir_all(&storage)?;
    let overrides = WorkerEnv::new()
        .set("database.url", db_url.expose_secret())
        .set("storage.dir", storage.display().to_string())
        .set("embeddings.provider", provider.name)
        .set("vector_store.kind", "postgres")
        .owned();
    let env =
        std::env::vars().filter(|(key, _)| !overrides.iter().any(|(o, _)| o == key)).chain(overrides.iter().cloned());
    let settings = Settings::load_from(config, env)?;
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 4).await?;
    let ingester = doc_ingester::Ingester::from_settings(&settings, pool.clone())?.with_extractor(extractor.into());
    let rag: rag_generator::RagSettings = settings.section("rag")?;
    let k = k.unwrap_or(rag.retrieval.top_k);
    let figures =
        retrieval_eval::evaluate(&settings, &pool, &ingester, &settings.storage.dir, root, set, provider.agent, k)
            .await;
    pool.close().await;
    figures
}

fn print_figures(label: &str, figures: &EmbedderFigures, show_misses: bool) {
    println!(
        "\n{label}: {} — {} chunks, {} answerable questions, {} off-topic, k = {}\n",
        figures.model, figures.chunks, figures.answerable, figures.off_topic, figures.k
    );
    print!("{}", retrieval_eval::table(figures));
    println!("\nRetrieval time per question (sequential, after the first load):");
    for m in &figures.modes {
        println!("  {}: p50 {:.1} ms, p99 {:.1} ms", m.mode.name(), m.p50_ms, m.p99_ms);
    }
    if !figures.evidence_missing.is_empty() {
        println!("\nEvidence phrase not found on the named page in the ingested text (check the set):");
        for q in &figures.evidence_missing {
            println!("  - {q}");
        }
    }
    if show_misses {
        for m in &figures.modes {
            if !m.missed.is_empty() {
                println!("\nMissed by {}:", m.mode.name());
                for q in &m.missed {
                    println!("  - {q}");
                }
            }
        }
    }
}

/// Runs `mailroom eval retrieval`.
pub async fn retrieval(settings: &Settings, config: Option<&Path>, args: RetrievalArgs) -> anyhow::Result<ExitCode> {
    let set = EvalSet::load(&args.set)?;
    println!("Fetching the set's documents (scripts/fetch-debian-docs.sh)…");
    let root = retrieval_eval::fetch_documents(&args.set, &set, args.cache.as_deref())?;
    let extractor = procs::worker_path(&procs::bin_dir(), "doc-ingester")?;
    let db_url = database_url(&settings.database.url, &args.database);
    if !args.reuse {
        mailroom_db::drop_database(&db_url).await?;
    }
    let work_dir = WorkDir(std::env::temp_dir().join(format!("mailroom-eval-{}", std::process::id())));
    let mut providers = vec![("Offline default", HASHING)];
    if openai_configured(settings)? {
        providers.push(("OpenAI-compatible embedder", OPENAI));
    }
    for (label, provider) in &providers {
        println!("Ingesting {} documents with the {} embedder…", set.documents.len(), provider.name);
        let figures =
            evaluate_provider(config, &db_url, &work_dir.0, &extractor, &root, &set, *provider, args.k).await?;
        print_figures(label, &figures, args.show_misses);
    }
    if providers.len() == 1 {
        println!(
            "\nOpenAI-compatible embedder: skipped (no embeddings.openai.api_key and embeddings.provider is not \
             \"openai\"; set MAILROOM__EMBEDDINGS__OPENAI__API_KEY to include it)."
        );
    }
    if !args.reuse {
        mailroom_db::drop_database(&db_url).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A run's upload storage directory, removed when the run ends, however it ends: it is named
/// after the process, so no later run could use it (`--reuse` keeps the database, whose
/// documents are ingested already, not the uploaded files).
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
