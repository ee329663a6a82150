//! The retrieval evaluation as a test: the set's Debian PDF manuals (fetched by
//! `scripts/fetch-debian-docs.sh` into its cache, so the test needs Debian's mirrors the first
//! time) ingested through the real ingestion code, with PDF extraction in the real
//! `doc-ingester` binary, then every question retrieved in each mode on the offline defaults.
//!
//! The target is hybrid recall@4 ≥ 0.9 in every language of the 62-question set
//! (docs/RETRIEVAL.md has the table). English, Russian and Chinese reach it (0.91, 0.90, 0.90)
//! and are held at it, with no margin: one more miss fails. Japanese does not (0.70) and is held
//! at 0.6, overall recall at 0.85 (0.87 measured): floors one question below today's figures,
//! a guard against regressions rather than the target. The evaluation is deterministic (ties
//! are broken by file name and position), so the figures do not move between runs.
//!
//! The held-out set (`heldout.json`, 80 questions written blind to the system) is far below the
//! target in every language (hybrid 0.51); it is held one question per language below today's
//! figures, so that tuning on `set.json` cannot quietly lose questions nobody tuned on.

use std::path::Path;

use mailroom::eval_cmd::{HASHING, evaluate_provider};
use mailroom::retrieval_eval::{self, EmbedderFigures, EvalSet};
use mailroom_tests::{TestDb, TestDir, bin_path};
use rag_generator::retrieval::Mode;
use secrecy::SecretString;

/// Ingests the set's documents into a fresh database and evaluates its questions at k = 4.
async fn evaluate(set_file: &str) -> EmbedderFigures {
    // This crate's own directory (the harness's repo_root() may be compiled elsewhere).
    let set_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("retrieval-eval").join(set_file);
    let set = EvalSet::load(&set_path).expect("set");
    let root = retrieval_eval::fetch_documents(&set_path, &set, None).expect("fetch the set's packages");
    let db = TestDb::create().await;
    let work = TestDir::create();
    let figures = evaluate_provider(
        None,
        &SecretString::from(db.url()),
        Path::new(&work.path),
        &bin_path("doc-ingester"),
        &root,
        &set,
        HASHING,
        Some(4),
    )
    .await
    .expect("evaluation");
    println!("{}", retrieval_eval::table(&figures));
    assert!(figures.evidence_missing.is_empty(), "evidence not on its page: {:?}", figures.evidence_missing);
    figures
}

#[tokio::test]
async fn hybrid_retrieval_over_real_manuals_meets_its_floors() {
    let figures = evaluate("set.json").await;
    assert!(figures.answerable >= 60 && figures.off_topic >= 10);
    // Every language's figure rests on at least ten questions (one miss is 0.1, not 0.17).
    let hybrid = figures.mode(Mode::Hybrid).expect("hybrid");
    assert!(hybrid.per_language.values().all(|(_, n)| *n >= 10), "{:?}", hybrid.per_language);
    let vector = figures.mode(Mode::Vector).expect("vector");
    assert!(hybrid.recall >= 0.85, "hybrid recall@4 {:.2}; missed: {:#?}", hybrid.recall, hybrid.missed);
    assert!(hybrid.recall > vector.recall + 0.2, "hybrid {:.2} vs vector {:.2}", hybrid.recall, vector.recall);
    for (language, (recall, n)) in &hybrid.per_language {
        let floor = if language == "ja" { 0.6 } else { 0.9 };
        assert!(*recall >= floor, "{language}: hybrid recall@4 {recall:.2} over {n} questions (floor {floor})");
    }
    // Off-topic questions must retrieve nothing (and so escalate); vector similarity alone
    // cannot tell them.
    assert!(hybrid.off_topic_rejected >= 0.8, "off-topic rejected {:.2}", hybrid.off_topic_rejected);
}

#[tokio::test]
async fn held_out_questions_keep_their_floors() {
    let figures = evaluate("heldout.json").await;
    assert!(figures.answerable >= 80 && figures.off_topic >= 12);
    let hybrid = figures.mode(Mode::Hybrid).expect("hybrid");
    let vector = figures.mode(Mode::Vector).expect("vector");
    assert!(hybrid.per_language.values().all(|(_, n)| *n >= 20), "{:?}", hybrid.per_language);
    assert!(hybrid.recall >= 0.48, "hybrid recall@4 {:.2}; missed: {:#?}", hybrid.recall, hybrid.missed);
    assert!(hybrid.recall > vector.recall + 0.2, "hybrid {:.2} vs vector {:.2}", hybrid.recall, vector.recall);
    // Measured 2026-12-05: en 0.60, ja 0.60, ru 0.40, zh 0.45.
    for (language, (recall, n)) in &hybrid.per_language {
        let floor = match language.as_str() {
            "en" | "ja" => 0.55,
            "ru" => 0.35,
            _ => 0.40,
        };
        assert!(*recall >= floor, "{language}: hybrid recall@4 {recall:.2} over {n} questions (floor {floor})");
    }
    // 8 of 12 measured.
    assert!(hybrid.off_topic_rejected >= 0.58, "off-topic rejected {:.2}", hybrid.off_topic_rejected);
}
