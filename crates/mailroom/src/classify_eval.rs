//! `mailroom eval classify FILE.jsonl [--json] [--threshold X]`: runs a labelled set through the
//! classifier exactly as the worker would with the configured `llm.providers` chain (the
//! loop-safety rules, then each provider in turn, the offline model when the chain reaches
//! `local`), and prints the confusion matrix, per-language accuracy, the precision of what would
//! be answered automatically, calibration, and the cost: calls per provider. Providers do not
//! report token counts to the chain, so tokens are `n/a`.

use std::path::PathBuf;
use std::process::ExitCode;

use classifier::eval::{Outcome, Report, parse_set};
use classifier::offline::to_classify;
use classifier::{Classifier, ClassifierSettings, Thresholds};
use llm::{LlmMetrics, ProviderChain, ProviderHealth};
use pipeline_core::Settings;
use serde_json::json;

/// `mailroom eval classify`.
#[derive(Debug, clap::Args)]
pub struct ClassifyArgs {
    /// A labelled set, one JSON object a line: `label` (`support`/`not_support`), `subject`,
    /// `body`, optionally `from`, `headers`, `lang`, `kind`, `id`
    /// (e.g. crates/classifier/data/corpus/heldout.jsonl).
    pub file: PathBuf,
    /// Print JSON instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Auto-answer threshold (default: classifier.auto_answer_min_confidence).
    #[arg(long)]
    pub threshold: Option<f64>,
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
    let classifier = Classifier::new(chain, Thresholds::uniform(threshold))?;
    let mut outcomes = Vec::with_capacity(set.len());
    for email in &set {
        let message = to_classify(email);
        let (verdict, _) =
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
        });
    }
    let report = Report::new(&outcomes);
    let stats = classifier.chain().stats();
    let mut providers: Vec<&String> =
        stats.answered_by.keys().chain(stats.failures_by.keys()).chain(stats.skipped_by.keys()).collect();
    providers.sort();
    providers.dedup();
    let count = |m: &std::collections::HashMap<String, u64>, p: &String| m.get(p).copied().unwrap_or(0);
    if args.json {
        let cost: Vec<_> = providers
            .iter()
            .map(|p| {
                json!({"provider": p, "answered": count(&stats.answered_by, p),
                       "failed": count(&stats.failures_by, p), "skipped": count(&stats.skipped_by, p),
                       "tokens": null})
            })
            .collect();
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
            "cost": cost,
            "misses": report.errors.iter().map(|e| e.id.clone()).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("providers: {:?}   auto-answer threshold: {threshold}", classifier.chain().names());
        print!("{}", report.render());
        println!("cost (calls per provider; tokens are not reported by the providers: n/a):");
        for p in &providers {
            println!(
                "  {p}: answered {}, failed {}, skipped {}, tokens n/a",
                count(&stats.answered_by, p),
                count(&stats.failures_by, p),
                count(&stats.skipped_by, p)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
