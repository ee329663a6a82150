//! The offline default embedder: signed feature hashing of words, word bigrams and character
//! trigrams into a fixed number of buckets.
//!
//! Chinese and Japanese (and Thai, Lao, Khmer, Burmese) put no spaces between words: a run of
//! those characters is tokenised into overlapping character bigrams ("東京タワー" → 東京, 京タ,
//! タワ, ワー), which match across word boundaries without a dictionary. Combining marks
//! (a Devanagari virama, for one) belong to the word they are in. (v2; v1 split CJK text only
//! at punctuation and Indic words at their marks.)
//!
//! The vectors are persisted next to the chunks they describe and compared against query
//! vectors computed later, possibly by another process on another machine, so everything
//! here must be a pure function of the text: a fixed hash (FNV-1a 64 finished with the
//! MurmurHash3 mixer), no `RandomState`, no platform-dependent iteration order. Any change to
//! tokenisation, features, weights or hashing changes the vectors and therefore needs a new
//! `model_id` version (`hashing-v2-…`), otherwise old and new vectors would silently mix.

use futures_util::future::BoxFuture;

use crate::script::{is_bigram_script, is_word_char};
use crate::{EmbedError, Embedder, normalize};

/// Feature kinds, stored in the low two bits of each feature key so that equal strings of
/// different kinds (the word "the" and the trigram "the") never count as one feature.
const KIND_WORD: u64 = 0;
const KIND_BIGRAM: u64 = 1;
const KIND_CHAR: u64 = 2;

/// Per-kind weight, indexed by kind. Words carry the meaning; bigrams reward matching phrases;
/// trigrams only smooth over inflections and typos ("passwords", "pasword"), and a word yields
/// several of them, so each must weigh much less than the word itself.
const KIND_WEIGHT: [f64; 4] = [1.0, 0.6, 0.25, 0.0];

/// Tokens longer than this are usually identifiers, hashes or encoded blobs, whose trigrams
/// would only add noise.
const MAX_CHAR_NGRAM_TOKEN_CHARS: usize = 32;

/// Function words that appear in almost every text and so only add noise to the similarity.
/// Negations ("not", "no") are deliberately absent: "payment not received" is a different
/// question than "payment received".
#[rustfmt::skip]
fn is_stopword(word: &str) -> bool {
    // A `match` on string literals compiles to a length switch plus a few comparisons, several
    // times faster than a binary search over a sorted slice; this runs for every token.
    matches!(
        word,
        "a" | "about" | "am" | "an" | "and" | "any" | "are" | "as" | "at" | "be" | "been" | "being"
        | "but" | "by" | "can" | "could" | "did" | "do" | "does" | "for" | "from" | "had" | "has" | "have"
        | "he" | "her" | "here" | "hi" | "his" | "how" | "i" | "if" | "in" | "into" | "is" | "it" | "its"
        | "just" | "me" | "my" | "of" | "on" | "or" | "our" | "please" | "she" | "should" | "so" | "than"
        | "that" | "the" | "their" | "them" | "then" | "there" | "these" | "they" | "this" | "those" | "to"
        | "us" | "was" | "we" | "were" | "what" | "when" | "where" | "which" | "who" | "will" | "with"
        | "would" | "you" | "your"
    )
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Separates the two words of a bigram; 0xFF never occurs in UTF-8, so ("ab", "c") and
/// ("a", "bc") cannot collide.
const BIGRAM_SEPARATOR: &[u8] = &[0xFF];

/// Deterministic, normalised feature-hashing embedder; needs no network and no model files.
#[derive(Debug, Clone)]
pub struct HashingEmbedder {
    dimension: usize,
    model_id: String,
}

impl HashingEmbedder {
    /// An embedder producing `dimension`-long vectors (a dimension of 0 yields empty vectors).
    pub fn new(dimension: usize) -> Self {
        Self { dimension, model_id: format!("hashing-v2-{dimension}") }
    }

    /// Embeds one text synchronously; the result is L2-normalised, or all zeros when the text
    /// has no content words.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        self.embed_with(text, &mut Scratch::default())
    }

    fn embed_with(&self, text: &str, scratch: &mut Scratch) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dimension];
        if self.dimension == 0 {
            return vector;
        }
        scratch.collect_features(text);
        // Sorting groups equal features so term frequencies come from run lengths without a
        // hash map, and fixes the summation order so results are bit-for-bit reproducible.
        scratch.keys.sort_unstable();
        let dimension = self.dimension as u64;
        for run in scratch.keys.chunk_by(|a, b| a == b) {
            let key = run[0];
            // Sublinear term frequency, 1 + ln(tf). Most features occur once, so skipping `ln`
            // for them saves real time; the rest is computed in f64 and rounded once so that
            // libm differences in the last bit of `ln` cannot change the stored f32.
            let tf_weight = if run.len() == 1 { 1.0 } else { 1.0 + (run.len() as f64).ln() };
            let weight = (KIND_WEIGHT[(key & 0b11) as usize] * tf_weight) as f32;
            // Bucket and sign come from disjoint bits of a well-mixed hash, so they are
            // independent; multiply-shift avoids a division and any modulo bias.
            let bucket = ((((key >> 2) & 0xFFFF_FFFF) * dimension) >> 32) as usize;
            if key >> 63 == 1 {
                vector[bucket] -= weight;
            } else {
                vector[bucket] += weight;
            }
        }
        normalize(&mut vector);
        vector
    }
}

impl Embedder for HashingEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move {
            let mut scratch = Scratch::default();
            Ok(texts.iter().map(|text| self.embed_with(text, &mut scratch)).collect())
        })
    }
}

/// Buffers reused across the texts of a batch, so embedding allocates only the output vector.
#[derive(Default)]
struct Scratch {
    /// The lowercased content characters of the text, tokens back to back.
    lower: String,
    /// Byte ranges of the content tokens in `lower` (the bigrams of a spaceless run overlap).
    tokens: Vec<(usize, usize)>,
    /// Byte offsets of the character boundaries of the current token.
    bounds: Vec<usize>,
    /// One key per feature occurrence: mixed hash with the kind in the low two bits.
    keys: Vec<u64>,
}

impl Scratch {
    fn collect_features(&mut self, text: &str) {
        self.tokenize(text);
        self.keys.clear();
        let Scratch { lower, tokens, bounds, keys } = self;
        let mut previous: Option<&str> = None;
        for &(start, end) in tokens.iter() {
            let word = &lower[start..end];
            keys.push(key(fnv1a(FNV_OFFSET, word.as_bytes()), KIND_WORD));
            if let Some(prev) = previous {
                let h = fnv1a(fnv1a(fnv1a(FNV_OFFSET, prev.as_bytes()), BIGRAM_SEPARATOR), word.as_bytes());
                keys.push(key(h, KIND_BIGRAM));
            }
            previous = Some(word);
            // A bigram of a spaceless script is already a character n-gram.
            if !word.chars().next().is_some_and(is_bigram_script) {
                push_char_trigrams(word, bounds, keys);
            }
        }
    }

    /// Splits on anything that is not a Unicode letter, digit or combining mark, lowercases,
    /// drops stopwords, and turns runs of spaceless scripts into character bigrams.
    fn tokenize(&mut self, text: &str) {
        self.lower.clear();
        self.tokens.clear();
        let mut start = None;
        // Start in `lower` of the previous character of the current spaceless run, and the
        // run's length so far.
        let mut run: Option<(usize, usize)> = None;
        let mut rest = text;
        while let Some(&byte) = rest.as_bytes().first() {
            // Support mail is mostly ASCII; handling it bytewise skips UTF-8 decoding and the
            // Unicode property tables.
            let (content, width) = if byte.is_ascii() {
                if byte.is_ascii_alphanumeric() {
                    start.get_or_insert(self.lower.len());
                    self.lower.push(char::from(byte.to_ascii_lowercase()));
                }
                (byte.is_ascii_alphanumeric(), 1)
            } else {
                let c = rest.chars().next().unwrap_or_default();
                if is_bigram_script(c) {
                    if let Some(s) = start.take() {
                        self.push_token(s);
                    }
                    let here = self.lower.len();
                    self.lower.push(c);
                    run = match run {
                        Some((previous, len)) => {
                            self.tokens.push((previous, self.lower.len()));
                            Some((here, len + 1))
                        }
                        None => Some((here, 1)),
                    };
                    rest = &rest[c.len_utf8()..];
                    continue;
                }
                if is_word_char(c) {
                    start.get_or_insert(self.lower.len());
                    self.lower.extend(c.to_lowercase());
                }
                (is_word_char(c), c.len_utf8())
            };
            // A lone character of a spaceless script is a token by itself.
            if let Some((previous, 1)) = run.take() {
                self.push_lone(previous);
            }
            if !content && let Some(s) = start.take() {
                self.push_token(s);
            }
            rest = &rest[width..];
        }
        if let Some((previous, 1)) = run {
            self.push_lone(previous);
        }
        if let Some(s) = start {
            self.push_token(s);
        }
    }

    /// The one-character token of a spaceless run of length one starting at `at` in `lower`.
    fn push_lone(&mut self, at: usize) {
        let width = self.lower[at..].chars().next().map_or(0, char::len_utf8);
        self.tokens.push((at, at + width));
    }

    fn push_token(&mut self, start: usize) {
        let end = self.lower.len();
        if !is_stopword(&self.lower[start..end]) {
            self.tokens.push((start, end));
        } else {
            // Dropping the stopword's text keeps `lower` from growing with text that no
            // feature refers to.
            self.lower.truncate(start);
        }
    }
}

/// Adds the trigrams of `<word>`, `<` and `>` marking the word boundaries so that prefixes and
/// suffixes are features of their own ("<pa", "rd>").
fn push_char_trigrams(word: &str, bounds: &mut Vec<usize>, keys: &mut Vec<u64>) {
    // Numbers share trigrams without sharing meaning (order 48213 vs 48299).
    if word.bytes().all(|b| b.is_ascii_digit()) {
        return;
    }
    bounds.clear();
    bounds.extend(word.char_indices().map(|(i, _)| i));
    let chars = bounds.len();
    if chars > MAX_CHAR_NGRAM_TOKEN_CHARS {
        return;
    }
    bounds.push(word.len());
    // Padded position p holds '<' at 0, the word's characters at 1..=chars and '>' at
    // chars + 1; trigram k covers padded positions k..=k + 2.
    for k in 0..chars {
        let first = k.max(1) - 1;
        let last = (k + 2).min(chars);
        let mut h = FNV_OFFSET;
        if k == 0 {
            h = fnv1a(h, b"<");
        }
        h = fnv1a(h, &word.as_bytes()[bounds[first]..bounds[last]]);
        if k + 1 == chars {
            h = fnv1a(h, b">");
        }
        keys.push(key(h, KIND_CHAR));
    }
}

/// FNV-1a 64, continuing from `h` so features can be hashed piecewise without building strings.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// FNV's low bits are poorly mixed for short inputs; MurmurHash3's finaliser spreads every
/// input bit over the bits used for the bucket and the sign.
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^= k >> 33;
    k
}

fn key(hash: u64, kind: u64) -> u64 {
    (fmix64(hash) & !0b11) | kind
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Published FNV-1a 64 test vectors: a change here changes every stored vector.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
        // Piecewise hashing must equal hashing the concatenation.
        assert_eq!(fnv1a(fnv1a(FNV_OFFSET, b"foo"), b"bar"), fnv1a(FNV_OFFSET, b"foobar"));
    }

    #[test]
    fn same_text_gives_identical_vector() {
        let embedder = HashingEmbedder::new(384);
        let text = "My order #48213 hasn't arrived yet — could you check the tracking number?";
        let a = embedder.embed_one(text);
        let b = HashingEmbedder::new(384).embed_one(text);
        assert_eq!(a, b);
        // Scratch reuse across a batch must not leak state from one text into the next.
        let mut scratch = Scratch::default();
        let _ = embedder.embed_with("something completely different", &mut scratch);
        assert_eq!(embedder.embed_with(text, &mut scratch), a);
    }

    #[test]
    fn vectors_are_stable_across_builds() {
        // Golden values pin the exact feature set and hashing: vectors are stored in the
        // database, so if this fails the change needs a new model_id version.
        let v = HashingEmbedder::new(16).embed_one("Reset password");
        assert_eq!(v.len(), 16);
        for (i, (got, want)) in v.iter().zip(&GOLDEN_RESET_PASSWORD_16).enumerate() {
            assert!((got - want).abs() < 1e-6, "component {i}: got {got}, want {want}; full vector {v:?}");
        }
    }

    const GOLDEN_RESET_PASSWORD_16: [f32; 16] = [
        0.0,
        0.35158128,
        0.0,
        0.0,
        -0.17579064,
        0.0,
        0.87895316,
        0.0,
        0.17579064,
        0.0,
        0.0,
        -0.17579064,
        0.0,
        0.10547436,
        0.0,
        0.0,
    ];

    #[test]
    fn vectors_are_unit_length() {
        let embedder = HashingEmbedder::new(256);
        for text in ["hello", "To reset your password, open Settings > Account.", "Ünïcödé straße 東京 123"] {
            let v = embedder.embed_one(text);
            assert!((norm(&v) - 1.0).abs() < 1e-5, "{text:?} has norm {}", norm(&v));
        }
    }

    #[test]
    fn related_texts_score_higher_than_unrelated() {
        let embedder = HashingEmbedder::new(384);
        let query = embedder.embed_one("How do I reset my password?");
        let related = embedder.embed_one("To reset your password, open Settings > Account and choose Reset password.");
        let unrelated =
            embedder.embed_one("Standard shipping takes 3-5 business days; express orders arrive within 48 hours.");
        let (rel, unrel) = (cosine(&query, &related), cosine(&query, &unrelated));
        assert!(rel > 0.4, "related cosine too low: {rel}");
        assert!(rel > unrel + 0.3, "related {rel} should clearly beat unrelated {unrel}");
    }

    #[test]
    fn inflections_still_match_through_char_ngrams() {
        let embedder = HashingEmbedder::new(384);
        let query = embedder.embed_one("passwords");
        let inflected = embedder.embed_one("password");
        let other = embedder.embed_one("shipping");
        assert!(cosine(&query, &inflected) > 0.2);
        assert!(cosine(&query, &inflected) > cosine(&query, &other) + 0.2);
    }

    #[test]
    fn case_and_punctuation_do_not_matter() {
        let embedder = HashingEmbedder::new(128);
        assert_eq!(embedder.embed_one("Reset PASSWORD!!"), embedder.embed_one("reset, password"));
    }

    #[test]
    fn unicode_letters_and_digits_are_content() {
        let embedder = HashingEmbedder::new(128);
        assert_eq!(embedder.embed_one("GRÖSSE Ärger"), embedder.embed_one("grösse ärger"));
        for text in ["東京", "Ärger", "48213"] {
            assert!((norm(&embedder.embed_one(text)) - 1.0).abs() < 1e-5, "{text:?} should have features");
        }
        // "é" is a letter, not a separator: "café" must not degrade to "caf".
        assert_ne!(embedder.embed_one("café"), embedder.embed_one("caf"));
    }

    fn tokens(text: &str) -> Vec<String> {
        let mut scratch = Scratch::default();
        scratch.tokenize(text);
        scratch.tokens.iter().map(|&(a, b)| scratch.lower[a..b].to_owned()).collect()
    }

    #[test]
    fn spaceless_scripts_are_tokenised_into_bigrams() {
        assert_eq!(tokens("東京タワーへ行く"), ["東京", "京タ", "タワ", "ワー", "ーへ", "へ行", "行く"]);
        assert_eq!(tokens("Debianのapt"), ["debian", "の", "apt"]);
        assert_eq!(tokens("第2章 包"), ["第", "2", "章", "包"]);
        assert_eq!(tokens("ภาษาไทย"), ["ภา", "าษ", "ษา", "าไ", "ไท", "ทย"]);
    }

    #[test]
    fn indic_greek_and_cyrillic_words_stay_whole() {
        // The virama (U+094D) in नमस्ते is a combining mark, not a separator.
        assert_eq!(tokens("नमस्ते दुनिया। पैकेज"), ["नमस्ते", "दुनिया", "पैकेज"]);
        assert_eq!(tokens("Καλημέρα κόσμε"), ["καλημέρα", "κόσμε"]);
        assert_eq!(tokens("Собрать ПАКЕТ"), ["собрать", "пакет"]);
    }

    #[test]
    fn a_chinese_question_finds_its_passage() {
        let embedder = HashingEmbedder::new(384);
        let query = embedder.embed_one("如何设置系统的时区？");
        let related = embedder.embed_one("使用 dpkg-reconfigure tzdata 命令可以设置系统的时区。");
        let unrelated = embedder.embed_one("软件包管理系统使用 apt 命令安装新的软件包。");
        let (rel, unrel) = (cosine(&query, &related), cosine(&query, &unrelated));
        assert!(rel > unrel + 0.2, "related {rel} should clearly beat unrelated {unrel}");
    }

    #[test]
    fn dimension_is_respected() {
        for dimension in [1, 7, 384, 1536] {
            let embedder = HashingEmbedder::new(dimension);
            assert_eq!(embedder.dimension(), dimension);
            assert_eq!(embedder.model_id(), format!("hashing-v2-{dimension}"));
            assert_eq!(embedder.embed_one("refund for a damaged parcel").len(), dimension);
        }
        assert!(HashingEmbedder::new(0).embed_one("anything").is_empty());
    }

    #[test]
    fn empty_or_stopword_only_text_gives_zero_vector() {
        let embedder = HashingEmbedder::new(64);
        for text in ["", "   \n\t", "?!.,", "how do I"] {
            let v = embedder.embed_one(text);
            assert_eq!(v.len(), 64);
            assert!(v.iter().all(|x| *x == 0.0), "{text:?} gave {v:?}");
        }
    }

    #[tokio::test]
    async fn embed_batch_matches_embed_one() {
        let embedder = HashingEmbedder::new(96);
        let texts = vec!["first text".to_owned(), String::new(), "third text".to_owned()];
        let vectors = embedder.embed(&texts).await.expect("hashing never fails");
        assert_eq!(vectors.len(), 3);
        for (text, vector) in texts.iter().zip(&vectors) {
            assert_eq!(vector, &embedder.embed_one(text));
        }
    }
}
