//! `mailroom eval classify FILE.jsonl [--json] [--threshold X] [--documents-of AGENT]`: runs a
//! labelled set through the classifier exactly as the worker would with the configured
//! `llm.providers` chain (the loop-safety rules, then each provider in turn, the offline model
//! when the chain reaches `local`; with `--documents-of`, the second look in that mailbox's
//! documents), and prints the confusion matrix, per-language accuracy, the precision of what would
//! be answered automatically, calibration, and the cost: per provider, the calls answered,
//! failed and skipped and the input and output tokens the provider reported (`n/a` when its
//! responses carried no usage; `local` is free).

use std::path::PathBuf;
use std::process::ExitCode;

use classifier::documents::DocumentCheck;
use classifier::eval::{Outcome, Report, parse_set};
use classifier::offline::to_classify;
use classifier::{Classifier, ClassifierSettings, Thresholds};
use llm::chain::LOCAL;
use llm::{ChainStats, LlmMetrics, ProviderChain, ProviderHealth, TokenStats};
use pipeline_core::Settings;
use serde_json::{Value, json};

/// `mailroom eval classify`.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// A labelled set, one JSON object a line: `label` (`support`/`not_support`), `subject`,
    /// `body`, optionally `from`, `headers`, `lang`, `kind`, `id`
    /// (e.g. crates/classifier/data/corpus/heldout-v5.jsonl).
    pub file: PathBuf,
    /// Print JSON instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Auto-answer threshold (default: classifier.auto_answer_min_confidence).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Send the set to this mailbox, whose documents are in the configured database, and give
    /// "not support" verdicts the worker's second look in them (`classifier.check_documents`).
    /// Without it the set goes to a mailbox with no documents and nothing is looked up.
    #[arg(long, value_name = "AGENT_EMAIL")]
    pub documents_of: Option<String>,
}

/// Runs the evaluation.
pub async fn classify(settings: &Settings, args: ClassifyArgs) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let set = parse_set(&text)?;
    let llm_settings: llm::LlmSettings = settings.section("llm")?;
    let classifier_settings: ClassifierSettings = settings.section("classifier")?;
    let threshold = args.threshold.unwrap_or(classifier_settings.auto_answer_min_confidence);
    let chain =
        ProviderChain::for_worker(&llm_settings, "classify", &LlmMetrics::default(), &ProviderHealth::default())?;
    let thresholds = Thresholds::uniform(threshold).checking_documents(args.documents_of.is_some());
    let mut classifier = Classifier::new(chain, thresholds)?;
    if args.documents_of.is_some() {
        let pool = mailroom_db::connect_and_migrate(&settings.database.url, settings.database.max_connections).await?;
        classifier = classifier.with_documents(DocumentCheck::new(pool, settings.section("rag")?));
    }
    let mut outcomes = Vec::with_capacity(set.len());
    for email in &set {
        let mut message = to_classify(email);
        if let Some(agent) = &args.documents_of {
            message.agent_email = agent.trim().to_lowercase();
            message.to = agent.clone();
        }
        let (verdict, reason) =
            classifier.classify(&message).await.map_err(|e| anyhow::anyhow!("classifying {}: {e}", email.id))?;
        let p_support = if verdict.is_support_inquiry { verdict.confidence } else { 1.0 - verdict.confidence };
        outcomes.push(Outcome {
            id: email.id.clone(),
            lang: email.lang.clone(),
            kind: email.kind.clone(),
            truth: email.is_support(),
            predicted: verdict.is_support_inquiry,
            p_support,
            auto_answer: classifier.auto_answer(&message.agent_email, &verdict),
            provider: verdict.llm_provider.clone(),
            reason,
        });
    }
    let report = Report::new(&outcomes);
    let costs = costs(&classifier.chain().stats());
    if args.json {
        let out = json!({
            "emails": report.total(),
            "accuracy": report.accuracy(),
            "confusion": {"tp": report.tp, "fn": report.fn_, "fp": report.fp, "tn": report.tn},
            "threshold": threshold,
            "auto_answered": report.auto_answered,
            "auto_answer_precision": report.auto_answer_precision(),
            "auto_answer_coverage": report.auto_answer_coverage(),
            "per_language": report.per_lang.iter()
                .map(|(l, (ok, n))| (l.clone(), json!({"correct": ok, "total": n})))
                .collect::<serde_json::Map<_, _>>(),
            "ece": report.ece,
            "verdicts_by_provider": report.by_provider,
            "cost": costs.iter().map(Cost::to_json).collect::<Vec<_>>(),
            "misses": report.errors.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("providers: {:?}   auto-answer threshold: {threshold}", classifier.chain().names());
        print!("{}", report.render());
        println!("cost (calls and tokens per provider; n/a: the provider reported no usage):");
        for cost in &costs {
            println!("  {}", cost.render());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One provider's cost: its calls and the tokens it reported.
#[derive(Debug, Clone, PartialEq)]
struct Cost {
    provider: String,
    answered: u64,
    failed: u64,
    skipped: u64,
    tokens: TokenStats,
}

/// The cost of every entry of the chain, by name.
fn costs(stats: &ChainStats) -> Vec<Cost> {
    let mut providers: Vec<&String> = stats
        .answered_by
        .keys()
        .chain(stats.failures_by.keys())
        .chain(stats.skipped_by.keys())
        .chain(stats.tokens_by.keys())
        .collect();
    providers.sort();
    providers.dedup();
    let count = |by: &std::collections::HashMap<String, u64>, p: &String| by.get(p).copied().unwrap_or(0);
    providers
        .into_iter()
        .map(|p| Cost {
            provider: p.clone(),
            answered: count(&stats.answered_by, p),
            failed: count(&stats.failures_by, p),
            skipped: count(&stats.skipped_by, p),
            tokens: stats.tokens_by.get(p).copied().unwrap_or_default(),
        })
        .collect()
}

impl Cost {
    /// The offline model, which spends no tokens.
    fn is_free(&self) -> bool {
        self.provider == LOCAL
    }

    /// `--json`: tokens are numbers, or `null` when the provider reported no usage.
    fn to_json(&self) -> Value {
        json!({
            "provider": self.provider,
            "answered": self.answered,
            "failed": self.failed,
            "skipped": self.skipped,
            "input_tokens": self.tokens.input(),
            "output_tokens": self.tokens.output(),
            "answers_without_usage": self.tokens.unreported,
            "free": self.is_free(),
        })
    }

    /// One line of the text report.
    fn render(&self) -> String {
        let tokens = match (self.tokens.input(), self.tokens.output()) {
            _ if self.is_free() => "tokens 0 (local model: free)".to_owned(),
            (Some(input), Some(output)) if self.tokens.unreported > 0 => {
                format!("tokens in {input} / out {output} (+{} answers without usage: n/a)", self.tokens.unreported)
            }
            (Some(input), Some(output)) => format!("tokens in {input} / out {output}"),
            _ => "tokens n/a (no usage reported)".to_owned(),
        };
        format!(
            "{}: answered {}, failed {}, skipped {}, {tokens}",
            self.provider, self.answered, self.failed, self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn by(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(name, n)| ((*name).to_owned(), *n)).collect()
    }

    #[test]
    fn the_cost_table_shows_tokens_unknown_usage_and_the_free_local_model() {
        let tokens = |input_tokens, output_tokens, reported, unreported| TokenStats {
            input_tokens,
            output_tokens,
            reported,
            unreported,
        };
        let stats = ChainStats {
            answered_by: by(&[("gemini", 3), ("ollama", 1), ("openai", 2), ("local", 4)]),
            failures_by: by(&[("gemini", 1), ("ollama", 0), ("openai", 0), ("local", 0)]),
            skipped_by: by(&[("gemini", 2), ("ollama", 0), ("openai", 0), ("local", 0)]),
            tokens_by: HashMap::from([
                ("gemini".to_owned(), tokens(1200, 300, 4, 0)),
                ("ollama".to_owned(), tokens(0, 0, 0, 1)),
                ("openai".to_owned(), tokens(40, 10, 1, 1)),
                ("local".to_owned(), TokenStats::default()),
            ]),
        };
        let costs = costs(&stats);
        let lines: Vec<String> = costs.iter().map(Cost::render).collect();
        assert_eq!(
            lines,
            [
                "gemini: answered 3, failed 1, skipped 2, tokens in 1200 / out 300",
                "local: answered 4, failed 0, skipped 0, tokens 0 (local model: free)",
                "ollama: answered 1, failed 0, skipped 0, tokens n/a (no usage reported)",
                "openai: answered 2, failed 0, skipped 0, tokens in 40 / out 10 (+1 answers without usage: n/a)",
            ]
        );
        let json: Vec<Value> = costs.iter().map(Cost::to_json).collect();
        assert_eq!(
            json[0],
            json!({"provider": "gemini", "answered": 3, "failed": 1, "skipped": 2, "input_tokens": 1200,
                   "output_tokens": 300, "answers_without_usage": 0, "free": false})
        );
        assert_eq!((&json[1]["input_tokens"], &json[1]["free"]), (&json!(0), &json!(true)));
        assert_eq!((&json[2]["input_tokens"], &json[2]["output_tokens"]), (&Value::Null, &Value::Null));
        assert_eq!(json[3]["answers_without_usage"], 1);
    }
}
