//! The model checks of `mailroom doctor`: each remote LLM provider's model lookup, the embedder
//! and its dimension against the stored vectors, and the Pinecone index.

use embedders::{EmbedError, EmbeddingSettings};
use llm::{LlmError, LlmSettings, ProviderChain};
use pipeline_core::Settings;
use vector_store::{PineconeStore, VectorStoreSettings};

use super::{Check, timed};

/// Where each provider lists the model ids it serves and retires.
fn models_page(provider: &str) -> &'static str {
    match provider {
        "gemini" => "https://ai.google.dev/gemini-api/docs/models",
        "anthropic" => "https://platform.claude.com/docs/en/about-claude/models/overview",
        _ => "https://platform.openai.com/docs/models (or your server's model list)",
    }
}

pub(super) async fn checks(settings: &Settings) -> Vec<Check> {
    let (llm, embedder, pinecone) = tokio::join!(
        timed("llm", "check the providers' base_url and the network", llm(settings)),
        timed("embeddings", "check embeddings.*.base_url and the network", embedder(settings)),
        timed("pinecone", "check vector_store.pinecone.index_host and the network", pinecone(settings)),
    );
    [llm, embedder, pinecone].into_iter().flatten().collect()
}

async fn llm(settings: &Settings) -> Vec<Check> {
    let llm_settings: LlmSettings = match settings.section("llm") {
        Ok(s) => s,
        Err(e) => return vec![Check::fail("llm", e.to_string(), "fix the [llm] section")],
    };
    let chain = match ProviderChain::from_settings(&llm_settings) {
        Ok(chain) => chain,
        Err(e) => return vec![Check::fail("llm", e.to_string(), "fix llm.providers")],
    };
    let results = chain.check_models().await;
    if results.is_empty() {
        return vec![Check::skip("llm", "llm.providers is [\"local\"]: offline answers, no remote model to check")];
    }
    results
        .into_iter()
        .map(|(name, result)| {
            let check = format!("llm {name}");
            let model = match name.as_str() {
                "gemini" => &llm_settings.gemini.model,
                "anthropic" => &llm_settings.anthropic.model,
                _ => &llm_settings.openai.model,
            };
            let section = if matches!(name.as_str(), "gemini" | "anthropic") { name.as_str() } else { "openai" };
            match result {
                Ok(said) => Check::ok(check, format!("model {model}: {said}")),
                Err(error) => Check::fail(check, error.to_string(), llm_fix(section, model, &error)),
            }
        })
        .collect()
}

fn llm_fix(section: &str, model: &str, error: &LlmError) -> String {
    match error {
        LlmError::Misconfigured { status: Some(401), .. } => {
            format!(
                "llm.{section}.api_key is wrong or revoked: set a valid key (MAILROOM__LLM__{}__API_KEY)",
                section.to_uppercase()
            )
        }
        LlmError::Misconfigured { status: Some(403), .. } => {
            format!("the key of llm.{section} may not use model {model}: grant access or use another key")
        }
        LlmError::Misconfigured { status: Some(404), .. } => format!(
            "model {model} does not exist or was retired: set llm.{section}.model to a current id ({})",
            models_page(section)
        ),
        LlmError::Misconfigured { message, .. } if message.contains("model_not_found") => format!(
            "model {model} is not served there: set llm.{section}.model to one it lists ({})",
            models_page(section)
        ),
        LlmError::Misconfigured { .. } => format!("check llm.{section}.base_url and llm.{section}.api_key"),
        LlmError::Transient { .. } | LlmError::QuotaExhausted { .. } => {
            format!(
                "llm.{section} is unreachable or out of quota now: check llm.{section}.base_url, the network and the account"
            )
        }
        LlmError::Permanent { .. } | LlmError::InvalidOutput { .. } => {
            format!("check llm.{section}.base_url: it does not answer like the {section} API")
        }
    }
}

async fn embedder(settings: &Settings) -> Vec<Check> {
    let embedding: EmbeddingSettings = match settings.section("embeddings") {
        Ok(s) => s,
        Err(e) => return vec![Check::fail("embeddings", e.to_string(), "fix the [embeddings] section")],
    };
    let embedder = match embedders::from_settings(&embedding) {
        Ok(embedder) => embedder,
        Err(e) => return vec![Check::fail("embeddings", e.to_string(), "fix embeddings.provider")],
    };
    let name = format!("embeddings {}", embedding.provider);
    let vectors = match embedder.embed(&["mailroom doctor: is the embedder answering?".to_owned()]).await {
        Ok(vectors) => vectors,
        Err(error) => {
            let fix = embed_fix(&embedding.provider, &error);
            return vec![Check::fail(name, error.to_string(), fix)];
        }
    };
    let dimension = vectors.first().map_or(0, Vec::len);
    if dimension != embedding.dimension {
        return vec![Check::fail(
            name,
            format!(
                "{} returned {dimension} dimensions, embeddings.dimension is {}",
                embedder.model_id(),
                embedding.dimension
            ),
            "set embeddings.dimension to what the model returns (or a dimension the model supports)",
        )];
    }
    let stored = stored_dimensions(settings).await;
    let mut checks =
        vec![Check::ok(name.clone(), format!("{} answers with {dimension} dimensions", embedder.model_id()))];
    match stored {
        Ok(dims) if dims.is_empty() || dims == [dimension] => {
            let what = if dims.is_empty() {
                "no vectors stored yet".to_owned()
            } else {
                format!("stored vectors have {dimension} too")
            };
            checks.push(Check::ok("stored vectors", what));
        }
        Ok(dims) => checks.push(Check::fail(
            "stored vectors",
            format!("stored vectors have {dims:?} dimensions, the embedder gives {dimension}"),
            "re-ingest the documents with this embedder (or go back to the embedder they were made with)",
        )),
        // The database check reports the connection itself.
        Err(e) => checks.push(Check::skip("stored vectors", format!("not read: {e}"))),
    }
    checks
}

fn embed_fix(provider: &str, error: &EmbedError) -> String {
    if !error.is_misconfiguration() {
        return format!("embeddings.{provider} is unreachable now: check its base_url and the network");
    }
    match error.status() {
        Some(401) => format!("embeddings.{provider}.api_key is wrong or revoked"),
        Some(403) => format!("the key of embeddings.{provider} may not use embeddings.{provider}.model"),
        Some(404) => format!("embeddings.{provider}.model does not exist or was retired ({})", models_page(provider)),
        _ => format!("check embeddings.{provider}.base_url and embeddings.{provider}.api_key"),
    }
}

/// The dimensions of a sample of the stored vectors (empty: none stored).
async fn stored_dimensions(settings: &Settings) -> anyhow::Result<Vec<usize>> {
    let pool = mailroom_db::status::connect_existing(&settings.database.url).await?;
    if !mailroom_db::status::table_exists(&pool, "chunks").await? {
        return Ok(Vec::new());
    }
    // A sample: every vector of one store has one dimension, and a mix shows in any thousand.
    let dims: Vec<i32> = sqlx::query_scalar(
        "SELECT DISTINCT len / 4 FROM (SELECT octet_length(embedding) AS len FROM chunks \
         WHERE octet_length(embedding) > 0 LIMIT 1000) AS sample ORDER BY 1",
    )
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    Ok(dims.into_iter().filter_map(|d| usize::try_from(d).ok()).collect())
}

async fn pinecone(settings: &Settings) -> Vec<Check> {
    let store: VectorStoreSettings = match settings.section("vector_store") {
        Ok(s) => s,
        Err(e) => return vec![Check::fail("pinecone", e.to_string(), "fix the [vector_store] section")],
    };
    if store.kind != "pinecone" {
        return vec![Check::skip("pinecone", format!("vector_store.kind is {:?}", store.kind))];
    }
    let dimension = settings.section::<EmbeddingSettings>("embeddings").map(|e| e.dimension).unwrap_or_default();
    let check = match PineconeStore::new(&store.pinecone).describe().await {
        Ok(stats) if stats.dimension == dimension => Check::ok(
            "pinecone",
            format!("index of {} dimensions holds {} vectors", stats.dimension, stats.total_vector_count),
        ),
        Ok(stats) => Check::fail(
            "pinecone",
            format!("the index has {} dimensions, embeddings.dimension is {dimension}", stats.dimension),
            "use an index created with the embedder's dimension, or change embeddings.dimension and re-ingest",
        ),
        Err(e) => Check::fail(
            "pinecone",
            e.to_string(),
            "check vector_store.pinecone.index_host (the index's host from the console) and api_key",
        ),
    };
    vec![check]
}
