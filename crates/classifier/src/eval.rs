//! Labelled evaluation sets and the report `mailroom eval classify`, the training example and
//! the held-out test print: confusion matrix, accuracy per language, precision of what would be
//! answered automatically, and calibration (reliability bins and expected calibration error).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Deserialize;

/// One labelled email of a `.jsonl` set (`data/corpus/*.jsonl`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LabelledEmail {
    /// Unique within the set.
    pub id: String,
    /// ISO 639-1 language code.
    pub lang: String,
    /// `support` or `not_support`.
    pub label: String,
    /// Finer kind (`auto_reply`, `billing`, …), for reading the errors.
    pub kind: String,
    /// The `From` header.
    pub from: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
    /// Headers, when the set has them.
    pub headers: HashMap<String, String>,
    /// Examples written from one snippet share a group (kept on one side of a split).
    pub group: String,
}

impl LabelledEmail {
    /// Whether the truth is "support inquiry".
    pub fn is_support(&self) -> bool {
        self.label == "support"
    }
}

/// A set that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct SetError {
    /// 1-based line number.
    pub line: usize,
    /// The JSON error.
    pub source: serde_json::Error,
}

/// Parses a `.jsonl` set; blank lines are skipped.
pub fn parse_set(text: &str) -> Result<Vec<LabelledEmail>, SetError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|source| SetError { line: i + 1, source }))
        .collect()
}

/// What the classifier said about one email.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The email's id.
    pub id: String,
    /// Its language.
    pub lang: String,
    /// Its kind.
    pub kind: String,
    /// The truth.
    pub truth: bool,
    /// The verdict.
    pub predicted: bool,
    /// The verdict's confidence in "support" (confidence, or 1 − confidence for "not support").
    pub p_support: f64,
    /// Whether it would be answered without a person (support at or above the threshold).
    pub auto_answer: bool,
    /// The provider that decided (`rules`, `local`, `gemini`…).
    pub provider: String,
    /// Why, when the verdict was not the provider's own (a rule, an untrained script, the
    /// agent's documents).
    pub reason: Option<String>,
}

/// Calibration bins.
const BINS: usize = 10;

/// Figures over a set of outcomes.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Truth support, predicted support.
    pub tp: usize,
    /// Truth support, predicted not.
    pub fn_: usize,
    /// Truth not, predicted support.
    pub fp: usize,
    /// Truth not, predicted not.
    pub tn: usize,
    /// Auto-answered emails, and how many of them were support.
    pub auto_answered: usize,
    /// See `auto_answered`.
    pub auto_answered_correct: usize,
    /// Per language: (correct, total).
    pub per_lang: BTreeMap<String, (usize, usize)>,
    /// Per bin of `p_support`: (count, mean predicted, fraction truly support).
    pub bins: Vec<(usize, f64, f64)>,
    /// Expected calibration error over the bins.
    pub ece: f64,
    /// Verdicts per provider.
    pub by_provider: BTreeMap<String, usize>,
    /// The misclassified emails, for reading.
    pub errors: Vec<Outcome>,
}

impl Report {
    /// Builds the figures.
    pub fn new(outcomes: &[Outcome]) -> Self {
        let mut r = Report::default();
        let mut sums = vec![(0usize, 0f64, 0usize); BINS];
        for o in outcomes {
            match (o.truth, o.predicted) {
                (true, true) => r.tp += 1,
                (true, false) => r.fn_ += 1,
                (false, true) => r.fp += 1,
                (false, false) => r.tn += 1,
            }
            if o.auto_answer {
                r.auto_answered += 1;
                r.auto_answered_correct += usize::from(o.truth);
            }
            let lang = r.per_lang.entry(o.lang.clone()).or_default();
            lang.0 += usize::from(o.truth == o.predicted);
            lang.1 += 1;
            // Truncation picks the bin; 1.0 belongs to the last one.
            let bin = ((o.p_support.clamp(0.0, 1.0) * BINS as f64) as usize).min(BINS - 1);
            sums[bin].0 += 1;
            sums[bin].1 += o.p_support;
            sums[bin].2 += usize::from(o.truth);
            *r.by_provider.entry(o.provider.clone()).or_default() += 1;
            if o.truth != o.predicted {
                r.errors.push(o.clone());
            }
        }
        let n = outcomes.len().max(1) as f64;
        r.bins = sums
            .iter()
            .map(|&(c, p, t)| if c == 0 { (0, 0.0, 0.0) } else { (c, p / c as f64, t as f64 / c as f64) })
            .collect();
        r.ece = r.bins.iter().map(|&(c, p, t)| c as f64 / n * (p - t).abs()).sum();
        r
    }

    /// Emails evaluated.
    pub fn total(&self) -> usize {
        self.tp + self.fn_ + self.fp + self.tn
    }

    /// Share of correct verdicts.
    pub fn accuracy(&self) -> f64 {
        (self.tp + self.tn) as f64 / self.total().max(1) as f64
    }

    /// Share of auto-answered emails that were support (1.0 when none were).
    pub fn auto_answer_precision(&self) -> f64 {
        if self.auto_answered == 0 { 1.0 } else { self.auto_answered_correct as f64 / self.auto_answered as f64 }
    }

    /// Share of support emails answered without a person.
    pub fn auto_answer_coverage(&self) -> f64 {
        self.auto_answered_correct as f64 / (self.tp + self.fn_).max(1) as f64
    }

    /// The report as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "emails: {}   accuracy: {:.3}", self.total(), self.accuracy());
        let _ = writeln!(s, "                  predicted support  predicted other");
        let _ = writeln!(s, "actual support    {:>17}  {:>15}", self.tp, self.fn_);
        let _ = writeln!(s, "actual other      {:>17}  {:>15}", self.fp, self.tn);
        let _ = writeln!(
            s,
            "auto-answered: {} (precision {:.3}, {} of {} support emails = coverage {:.3}); the rest are drafts or ignored",
            self.auto_answered,
            self.auto_answer_precision(),
            self.auto_answered_correct,
            self.tp + self.fn_,
            self.auto_answer_coverage()
        );
        let langs: Vec<String> = self
            .per_lang
            .iter()
            .map(|(l, (ok, n))| format!("{l} {:.2} ({ok}/{n})", *ok as f64 / (*n).max(1) as f64))
            .collect();
        let _ = writeln!(s, "per language: {}", langs.join(", "));
        let _ = writeln!(s, "calibration (P(support) bin: count, mean predicted, observed support):");
        for (i, (c, p, t)) in self.bins.iter().enumerate() {
            if *c > 0 {
                let _ = writeln!(s, "  {:.1}-{:.1}: {c:>4}  {p:.2}  {t:.2}", i as f64 / 10.0, (i + 1) as f64 / 10.0);
            }
        }
        let _ = writeln!(s, "expected calibration error: {:.3}", self.ece);
        let providers: Vec<String> = self.by_provider.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let _ = writeln!(s, "verdicts by provider: {}", providers.join(", "));
        for e in &self.errors {
            let _ = writeln!(
                s,
                "  miss {} [{} {}] truth={} p(support)={:.2} by {}{}",
                e.id,
                e.lang,
                e.kind,
                if e.truth { "support" } else { "other" },
                e.p_support,
                e.provider,
                e.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(truth: bool, p: f64, threshold: f64) -> Outcome {
        Outcome {
            id: "x".into(),
            lang: "en".into(),
            kind: String::new(),
            truth,
            predicted: p >= 0.5,
            p_support: p,
            auto_answer: p >= threshold,
            provider: "local".into(),
            reason: None,
        }
    }

    #[test]
    fn figures() {
        let r = Report::new(&[o(true, 0.95, 0.9), o(true, 0.6, 0.9), o(false, 0.7, 0.9), o(false, 0.1, 0.9)]);
        assert_eq!((r.tp, r.fn_, r.fp, r.tn), (2, 0, 1, 1));
        assert!((r.accuracy() - 0.75).abs() < 1e-9);
        assert_eq!((r.auto_answered, r.auto_answered_correct), (1, 1));
        assert!((r.auto_answer_precision() - 1.0).abs() < 1e-9);
        assert!(r.render().contains("accuracy: 0.750"));
        assert!(r.ece >= 0.0 && r.ece <= 1.0);
    }

    #[test]
    fn parses_sets_with_missing_fields() {
        let set = parse_set("{\"id\":\"a\",\"label\":\"support\",\"body\":\"hi\"}\n\n").expect("parses");
        assert_eq!(set.len(), 1);
        assert!(set[0].is_support());
        assert!(parse_set("{").is_err());
    }
}
