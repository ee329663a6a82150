//! The trained offline classifier: a logistic regression over hashed word and character
//! n-grams ([`features`]), with Platt-scaled probabilities.
//!
//! The weights are trained by [`train`] from `data/corpus/train.jsonl` (see
//! docs/CLASSIFICATION.md) and committed as `data/model.bin`, which the binary embeds,
//! so the classifier needs no file or network at run time and every build answers alike.
//!
//! # Weight file (`MRCLS001`, little-endian)
//! magic (8 bytes) · `bits` u32 (the model has `2^bits` buckets) · bias f32 · Platt `a` f32 ·
//! Platt `b` f32 · quantisation `scale` f32 · `2^bits` weights as i16 (weight = i16 × scale).
//! Sixteen-bit weights halve the file against f32 at no measurable cost in accuracy.

pub mod features;
pub mod train;

pub use features::{EmailText, Features};

/// The committed weights, trained by `cargo run -p classifier --example train --release`.
pub const EMBEDDED: &[u8] = include_bytes!("../../data/model.bin");

const MAGIC: &[u8; 8] = b"MRCLS001";
const HEADER_LEN: usize = 8 + 4 * 5;

/// A weight file that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    /// Not a weight file of this version.
    #[error("not a classifier weight file (bad magic)")]
    BadMagic,
    /// The bucket count is out of range.
    #[error("unsupported bucket count 2^{0}")]
    BadBits(u32),
    /// The file is shorter or longer than its header says.
    #[error("weight file has {actual} bytes, expected {expected}")]
    BadLength {
        /// Bytes the header implies.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
}

/// A loaded model.
#[derive(Clone, PartialEq)]
pub struct Model {
    /// Weights per bucket (`2^bits` of them).
    pub weights: Vec<f32>,
    /// The intercept.
    pub bias: f32,
    /// Platt scaling: `P(support) = σ(a · score + b)`.
    pub platt_a: f32,
    /// See `platt_a`.
    pub platt_b: f32,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("buckets", &self.weights.len())
            .field("bias", &self.bias)
            .field("platt_a", &self.platt_a)
            .field("platt_b", &self.platt_b)
            .finish()
    }
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Model {
    /// The committed model.
    pub fn embedded() -> Result<Self, ModelError> {
        Self::from_bytes(EMBEDDED)
    }

    /// Buckets, a power of two.
    pub fn dims(&self) -> u32 {
        // The length is 2^bits with bits ≤ 24, checked when loading or training.
        u32::try_from(self.weights.len()).unwrap_or(u32::MAX)
    }

    /// Parses a weight file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        if bytes.len() < HEADER_LEN || &bytes[..8] != MAGIC {
            return Err(ModelError::BadMagic);
        }
        let word = |i: usize| [bytes[8 + 4 * i], bytes[9 + 4 * i], bytes[10 + 4 * i], bytes[11 + 4 * i]];
        let bits = u32::from_le_bytes(word(0));
        if !(8..=24).contains(&bits) {
            return Err(ModelError::BadBits(bits));
        }
        let n = 1usize << bits;
        let expected = HEADER_LEN + 2 * n;
        if bytes.len() != expected {
            return Err(ModelError::BadLength { expected, actual: bytes.len() });
        }
        let scale = f32::from_le_bytes(word(4));
        let weights =
            bytes[HEADER_LEN..].chunks_exact(2).map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) * scale).collect();
        Ok(Self {
            weights,
            bias: f32::from_le_bytes(word(1)),
            platt_a: f32::from_le_bytes(word(2)),
            platt_b: f32::from_le_bytes(word(3)),
        })
    }

    /// Serialises the model, quantising weights to i16.
    pub fn to_bytes(&self) -> Vec<u8> {
        let bits = self.weights.len().trailing_zeros();
        let max = self.weights.iter().fold(0f32, |m, w| m.max(w.abs()));
        let scale = if max > 0.0 { max / f32::from(i16::MAX) } else { 1.0 };
        let mut out = Vec::with_capacity(HEADER_LEN + 2 * self.weights.len());
        out.extend_from_slice(MAGIC);
        for v in [bits.to_le_bytes(), self.bias.to_le_bytes(), self.platt_a.to_le_bytes()] {
            out.extend_from_slice(&v);
        }
        out.extend_from_slice(&self.platt_b.to_le_bytes());
        out.extend_from_slice(&scale.to_le_bytes());
        for w in &self.weights {
            // Rounded and clamped into i16 by construction of `scale`.
            let q = (w / scale).round().clamp(f32::from(i16::MIN), f32::from(i16::MAX)) as i16;
            out.extend_from_slice(&q.to_le_bytes());
        }
        out
    }

    /// The raw score (log-odds before calibration).
    pub fn score(&self, features: &Features) -> f64 {
        let dot: f32 =
            features.entries.iter().map(|&(b, v)| self.weights.get(b as usize).copied().unwrap_or(0.0) * v).sum();
        f64::from(dot + self.bias)
    }

    /// The calibrated probability that the email is a support inquiry.
    pub fn probability(&self, email: &EmailText<'_>) -> f64 {
        let features = features::extract(email, self.dims());
        self.calibrate(self.score(&features))
    }

    /// Platt scaling of a raw score.
    pub fn calibrate(&self, score: f64) -> f64 {
        sigmoid(f64::from(self.platt_a) * score + f64::from(self.platt_b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_bytes() {
        let model = Model {
            weights: [0.5, -1.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0].repeat(32),
            bias: 0.1,
            platt_a: 2.0,
            platt_b: -0.3,
        };
        let back = Model::from_bytes(&model.to_bytes()).expect("valid");
        assert_eq!(back.weights.len(), 256);
        assert!(back.weights.iter().zip(&model.weights).all(|(a, b)| (a - b).abs() < 1e-3));
        assert_eq!((back.bias, back.platt_a, back.platt_b), (0.1, 2.0, -0.3));
    }

    #[test]
    fn rejects_broken_files() {
        assert_eq!(Model::from_bytes(b"nope"), Err(ModelError::BadMagic));
        let mut bytes = Model { weights: vec![0.0; 256], bias: 0.0, platt_a: 1.0, platt_b: 0.0 }.to_bytes();
        bytes.pop();
        assert!(matches!(Model::from_bytes(&bytes), Err(ModelError::BadLength { .. })));
    }

    #[test]
    fn embedded_model_loads_and_is_small() {
        let model = Model::embedded().expect("the committed weights load");
        assert!(EMBEDDED.len() <= 300 * 1024, "weights must stay small: {} bytes", EMBEDDED.len());
        assert!(model.platt_a > 0.0, "calibration keeps the score's direction");
    }
}
