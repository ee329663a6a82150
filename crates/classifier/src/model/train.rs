//! Training: logistic regression by plain stochastic gradient descent with L2, then Platt
//! scaling on a calibration split of the training corpus (never the held-out set).
//!
//! Everything is deterministic (fixed seed, a fixed-order split by each example's `group`, so
//! the variants of one written email never straddle the split): the same corpus gives the same
//! weights, byte for byte.

use super::features::{self, EmailText, Features};
use super::{Model, sigmoid};
use crate::eval::LabelledEmail;

/// Training settings; the defaults are those of the committed weights.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// `2^bits` buckets.
    pub bits: u32,
    /// Passes over the data.
    pub epochs: usize,
    /// Initial step size (decays as t^-1/4).
    pub learning_rate: f64,
    /// L2 penalty per step.
    pub l2: f64,
    /// Every `calibration_every`-th group goes to the calibration split.
    pub calibration_every: u64,
    /// Shuffling seed.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { bits: 17, epochs: 100, learning_rate: 2.0, l2: 1e-6, calibration_every: 5, seed: 20_250_613 }
    }
}

/// Features of a labelled email for a model of `dims` buckets.
pub fn featurise(email: &LabelledEmail, dims: u32) -> Features {
    features::extract(&EmailText { from: &email.from, subject: &email.subject, body: &email.body }, dims)
}

/// A small, fixed pseudo-random generator (SplitMix64): reproducible without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Whether an example belongs to the calibration split: by a stable hash of its group.
pub fn is_calibration(email: &LabelledEmail, every: u64) -> bool {
    let key = if email.group.is_empty() { &email.id } else { &email.group };
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.is_multiple_of(every)
}

/// Fits the raw weights on `(features, label)` pairs.
fn fit(data: &[(Features, bool)], config: &TrainConfig) -> (Vec<f32>, f32) {
    let dims = 1usize << config.bits;
    let mut w = vec![0f64; dims];
    let mut bias = 0f64;
    let mut order: Vec<usize> = (0..data.len()).collect();
    let mut rng = SplitMix(config.seed);
    let mut t = 0f64;
    for _ in 0..config.epochs {
        // Fisher–Yates with the fixed generator.
        for i in (1..order.len()).rev() {
            let j = (rng.next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        for &i in &order {
            t += 1.0;
            let rate = config.learning_rate / t.sqrt().max(1.0).powf(0.5);
            let (x, y) = &data[i];
            let z = bias + x.entries.iter().map(|&(b, v)| w[b as usize] * f64::from(v)).sum::<f64>();
            let grad = sigmoid(z) - if *y { 1.0 } else { 0.0 };
            for &(b, v) in &x.entries {
                let wb = &mut w[b as usize];
                *wb -= rate * (grad * f64::from(v) + config.l2 * *wb);
            }
            bias -= rate * grad;
        }
    }
    (w.into_iter().map(|v| v as f32).collect(), bias as f32)
}

/// Platt scaling: fits `σ(a·s + b)` to the labels by Newton's method on the log-loss, with
/// Platt's smoothed targets so that a separable calibration split cannot push `a` to infinity.
pub fn fit_platt(scores: &[(f64, bool)]) -> (f64, f64) {
    let pos = scores.iter().filter(|(_, y)| *y).count() as f64;
    let neg = scores.len() as f64 - pos;
    let (t_pos, t_neg) = ((pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0));
    let (mut a, mut b) = (1.0f64, 0.0f64);
    for _ in 0..100 {
        let (mut g_a, mut g_b, mut h_aa, mut h_ab, mut h_bb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
        for &(s, y) in scores {
            let p = sigmoid(a * s + b);
            let d = p - if y { t_pos } else { t_neg };
            let q = p * (1.0 - p);
            g_a += d * s;
            g_b += d;
            h_aa += q * s * s;
            h_ab += q * s;
            h_bb += q;
        }
        let det = h_aa * h_bb - h_ab * h_ab;
        if det.abs() < 1e-12 {
            break;
        }
        let (da, db) = ((h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det);
        a -= da;
        b -= db;
        if da.abs() + db.abs() < 1e-9 {
            break;
        }
    }
    (a, b)
}

/// What training produced, with the calibration split's scores for the report.
#[derive(Debug)]
pub struct Trained {
    /// The model, weights quantised as they are saved.
    pub model: Model,
    /// Examples fitted.
    pub fitted: usize,
    /// Examples in the calibration split.
    pub calibration: usize,
}

/// Trains on `corpus`: fits on the non-calibration split, calibrates on the rest.
pub fn train(corpus: &[LabelledEmail], config: &TrainConfig) -> Trained {
    let dims = 1u32 << config.bits;
    let (mut fit_set, mut cal_set) = (Vec::new(), Vec::new());
    for email in corpus {
        let pair = (featurise(email, dims), email.is_support());
        if is_calibration(email, config.calibration_every) { cal_set.push(pair) } else { fit_set.push(pair) }
    }
    let (weights, bias) = fit(&fit_set, config);
    let raw = Model { weights, bias, platt_a: 1.0, platt_b: 0.0 };
    // Quantise before calibrating, so the scale fits the weights that are actually shipped.
    let mut model = Model::from_bytes(&raw.to_bytes()).unwrap_or(raw);
    let scores: Vec<(f64, bool)> = cal_set.iter().map(|(x, y)| (model.score(x), *y)).collect();
    let (a, b) = fit_platt(&scores);
    model.platt_a = a as f32;
    model.platt_b = b as f32;
    Trained { model, fitted: fit_set.len(), calibration: cal_set.len() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_known_scaling() {
        // Labels drawn deterministically from σ(2s − 1).
        let mut rng = SplitMix(7);
        let scores: Vec<(f64, bool)> = (0..4000)
            .map(|i| {
                let s = (i as f64 / 1000.0) - 2.0;
                let u = (rng.next() % 1_000_000) as f64 / 1e6;
                (s, u < sigmoid(2.0 * s - 1.0))
            })
            .collect();
        let (a, b) = fit_platt(&scores);
        assert!((a - 2.0).abs() < 0.3 && (b + 1.0).abs() < 0.3, "a={a} b={b}");
    }

    #[test]
    fn training_is_deterministic_and_learns() {
        let email = |id: &str, body: &str, label: &str| LabelledEmail {
            id: id.into(),
            subject: String::new(),
            body: body.into(),
            label: label.into(),
            group: id.into(),
            ..LabelledEmail::default()
        };
        let corpus: Vec<LabelledEmail> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    email(&format!("s{i}"), "my desk is broken, how do I fix it?", "support")
                } else {
                    email(&format!("n{i}"), "weekly newsletter, unsubscribe here", "not_support")
                }
            })
            .collect();
        let config = TrainConfig { bits: 12, epochs: 5, ..TrainConfig::default() };
        let a = train(&corpus, &config);
        let b = train(&corpus, &config);
        assert_eq!(a.model.to_bytes(), b.model.to_bytes());
        let p = |body: &str| a.model.probability(&EmailText { from: "", subject: "", body });
        assert!(p("my desk is broken, how do I fix it?") > 0.5);
        assert!(p("weekly newsletter, unsubscribe here") < 0.5);
    }
}
