//! Trains the offline classifier from `data/corpus/train.jsonl`, writes `data/model.bin`, and
//! prints the figures of the calibration split and of the development set (`dev.jsonl`), the
//! two sets tuning may look at. The blind held-out set (`heldout-v5.jsonl`) is not read here: it is
//! evaluated with `mailroom eval classify`, once the weights are final.
//!
//! `cargo run -p classifier --example train --release` (deterministic: same corpus, same bytes).
//! `--threshold X` sets the auto-answer threshold used in the report (default: the
//! `classifier.auto_answer_min_confidence` of config/default.toml); `--dry-run` does not write the weights.
//! `TRAIN_VALIDATE=w-360..w-640` (cross-writer validation) trains without one writer's batch
//! of `written.jsonl` (its `group`s `w-360` to `w-639`) and reports on that batch instead.

use std::path::Path;

use classifier::eval::parse_set;
use classifier::model::train::{TrainConfig, is_calibration, train};
use classifier::offline::{OfflineClassifier, evaluate};

/// Calibration-split precision the default auto-answer threshold must reach.
const PRECISION_FOR_THRESHOLD: f64 = 0.99;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let threshold = args
        .iter()
        .position(|a| a == "--threshold")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse::<f64>())
        .transpose()?;
    // The report's default is what operators get: the shipped settings' threshold.
    let threshold = match threshold {
        Some(t) => t,
        None => {
            let settings = pipeline_core::Settings::load_from(None, Vec::new())?;
            settings.section::<classifier::ClassifierSettings>("classifier")?.auto_answer_min_confidence
        }
    };
    let dry_run = args.iter().any(|a| a == "--dry-run");
    let env_f64 = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<f64>().ok());
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let corpus = parse_set(&std::fs::read_to_string(data.join("corpus/train.jsonl"))?)?;
    let mut config = TrainConfig::default();
    // Overrides for experiments; the committed weights use the defaults.
    if let Some(v) = env_f64("TRAIN_EPOCHS") {
        config.epochs = v as usize;
    }
    if let Some(v) = env_f64("TRAIN_LR") {
        config.learning_rate = v;
    }
    if let Some(v) = env_f64("TRAIN_L2") {
        config.l2 = v;
    }
    // Cross-writer validation: `TRAIN_VALIDATE=w-360..w-640` trains without the `written`
    // emails of those groups (one writer's batch) and reports on them, then stops.
    if let Ok(range) = std::env::var("TRAIN_VALIDATE") {
        let (from, to) = range.split_once("..").ok_or_else(|| anyhow::anyhow!("TRAIN_VALIDATE=w-A..w-B"))?;
        let n = |g: &str| g.strip_prefix("w-").and_then(|v| v.parse::<usize>().ok());
        let (from, to) = (n(from).unwrap_or(0), n(to).unwrap_or(usize::MAX));
        let held = |e: &classifier::eval::LabelledEmail| n(&e.group).is_some_and(|i| (from..to).contains(&i));
        let (validate, rest): (Vec<_>, Vec<_>) = corpus.iter().cloned().partition(held);
        let trained = train(&rest, &config);
        let classifier = OfflineClassifier::with_model(trained.model);
        println!(
            "== validation: {} emails of another writer ==\n{}",
            validate.len(),
            evaluate(&validate, &classifier, threshold).render()
        );
        return Ok(());
    }
    let trained = train(&corpus, &config);
    println!(
        "trained on {} emails, calibrated on {} (Platt a={:.3} b={:.3})",
        trained.fitted, trained.calibration, trained.model.platt_a, trained.model.platt_b
    );
    let bytes = trained.model.to_bytes();
    let classifier = OfflineClassifier::with_model(trained.model);
    let calibration: Vec<_> = corpus.iter().filter(|e| is_calibration(e, config.calibration_every)).cloned().collect();
    println!(
        "\n== calibration split (threshold {threshold}) ==\n{}",
        evaluate(&calibration, &classifier, threshold).render()
    );
    // The default auto-answer threshold is chosen here, on the calibration split only
    // (data/corpus/PREREGISTRATION-V4.md): the smallest of 0.90, 0.91, …, 0.99 at which the
    // split's auto-answer precision reaches PRECISION_FOR_THRESHOLD; 0.99 if none does.
    println!("auto-answer threshold on the calibration split:");
    let mut chosen = None;
    for step in 90..=99 {
        let t = f64::from(step) / 100.0;
        let e = evaluate(&calibration, &classifier, t);
        let (precision, coverage) = (e.auto_answer_precision(), e.auto_answer_coverage());
        println!("  {t:.2}: precision {precision:.3}, coverage {coverage:.3}");
        if chosen.is_none() && precision >= PRECISION_FOR_THRESHOLD {
            chosen = Some(t);
        }
    }
    println!("chosen: {:.2} (classifier.auto_answer_min_confidence)\n", chosen.unwrap_or(0.99));
    let dev = parse_set(&std::fs::read_to_string(data.join("corpus/dev.jsonl"))?)?;
    println!("== development set (threshold {threshold}) ==\n{}", evaluate(&dev, &classifier, threshold).render());
    if !dry_run {
        std::fs::write(data.join("model.bin"), &bytes)?;
        println!("wrote data/model.bin ({} bytes)", bytes.len());
    }
    Ok(())
}
