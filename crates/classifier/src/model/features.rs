//! Feature extraction for the trained classifier: hashed word and character n-grams plus a few
//! header-like signals, as a sparse L2-normalised vector.
//!
//! Only the sender's own text is read (quoted history is removed with the same helper the rest
//! of the pipeline uses), so a customer who forwards a bounce or quotes an auto-reply is judged
//! on what they wrote above it. Character n-grams (3–5, within and across word boundaries) let
//! one model cover inflected languages and Japanese, which has no spaces; word unigrams and
//! bigrams carry the phrases. Subject features are hashed apart from body features because a
//! subject is the sender's own summary of the mail.

use mail_mime::quoting::own_lines;

/// Longest stretch of own body text read; the intent of an email is near its top, and a
/// newsletter's thousandth line adds nothing but cost.
const MAX_BODY_CHARS: usize = 2_000;

/// A sparse feature vector: bucket indices with their values (duplicates already summed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    /// `(bucket, value)`, sorted by bucket.
    pub entries: Vec<(u32, f32)>,
}

/// The text fields of one email that the model reads.
#[derive(Debug, Clone, Copy)]
pub struct EmailText<'a> {
    /// The `From` header (display name and address).
    pub from: &'a str,
    /// The subject line.
    pub subject: &'a str,
    /// The plain-text body.
    pub body: &'a str,
}

/// FNV-1a: stable across runs and platforms, which the committed weights depend on.
fn fnv1a(prefix: &[u8], text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in prefix.iter().chain(text.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Lowercases and keeps letters and digits; everything else becomes a word boundary. Accents
/// are kept (`é` and `e` are different evidence in French and Polish), case is not.
pub fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last_space = true;
    for c in text.chars() {
        if c.is_alphanumeric() {
            out.extend(c.to_lowercase());
            last_space = false;
        } else if !last_space {
            out.push(' ');
            last_space = true;
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// Whether `c` belongs to a script written without spaces between words (kana, CJK).
///
/// Not `embedders::script::is_han_or_kana` on purpose: these ranges define the features the
/// committed weights were trained on (that one also takes 々, the phonetic extensions and the
/// rarer Han planes), so changing them means training again.
fn is_unspaced(c: char) -> bool {
    matches!(c as u32, 0x3040..=0x30ff | 0x3400..=0x4dbf | 0x4e00..=0x9fff | 0xf900..=0xfaff | 0xff66..=0xff9f)
}

/// Adds the n-grams of one field, hashed under `prefix` into `dims` buckets.
fn add_text(prefix: &[u8], text: &str, dims: u32, out: &mut Vec<u32>) {
    let norm = normalise(text);
    let mask = u64::from(dims - 1);
    let mut push = |kind: &[u8], s: &str| {
        let mut p = Vec::with_capacity(prefix.len() + kind.len());
        p.extend_from_slice(prefix);
        p.extend_from_slice(kind);
        // Masking keeps the low bits; `dims` is a power of two, checked by the model.
        out.push((fnv1a(&p, s) & mask) as u32);
    };
    let words: Vec<&str> = norm.split(' ').filter(|w| !w.is_empty()).collect();
    for w in &words {
        push(b"w:", w);
    }
    for pair in words.windows(2) {
        push(b"b:", &format!("{} {}", pair[0], pair[1]));
    }
    // Character n-grams over the text with a space at both ends, so word starts and ends show.
    let chars: Vec<char> = std::iter::once(' ').chain(norm.chars()).chain(std::iter::once(' ')).collect();
    for n in 3..=5 {
        for gram in chars.windows(n) {
            push(b"c:", &gram.iter().collect::<String>());
        }
    }
    // Unspaced scripts: single characters and pairs are words there.
    let cjk: Vec<char> = norm.chars().filter(|&c| is_unspaced(c)).collect();
    for c in &cjk {
        push(b"j1:", &c.to_string());
    }
    for pair in cjk.windows(2) {
        push(b"j2:", &pair.iter().collect::<String>());
    }
}

/// The sender's local part (before `@`), lowercased, from `Name <addr@host>` or `addr@host`.
fn sender_local(from: &str) -> String {
    let addr = from.rsplit('<').next().unwrap_or(from).trim_end_matches('>').trim();
    addr.split('@').next().unwrap_or("").to_lowercase()
}

/// Extracts the features of one email into a sorted, L2-normalised sparse vector of `dims`
/// buckets (`dims` a power of two).
pub fn extract(email: &EmailText<'_>, dims: u32) -> Features {
    let mut buckets = Vec::new();
    let subject = email.subject.trim();
    // Reply and forward prefixes, in the languages we read, are one signal of their own and
    // are then removed so the subject's words are the same as in a fresh mail.
    let lower = subject.to_lowercase();
    let is_reply = ["re:", "aw:", "sv:", "r:", "res:", "odp:", "antw:"].iter().any(|p| lower.starts_with(p));
    let is_forward =
        ["fwd:", "fw:", "wg:", "tr:", "rv:", "i:", "enc:", "pd:", "doorst:"].iter().any(|p| lower.starts_with(p));
    let mask = dims - 1;
    if is_reply {
        buckets.push((fnv1a(b"h:", "reply") as u32) & mask);
    }
    if is_forward {
        buckets.push((fnv1a(b"h:", "forward") as u32) & mask);
    }
    add_text(b"s:", subject, dims, &mut buckets);
    let own: String = own_lines(email.body).join("\n");
    let body: String = own.chars().take(MAX_BODY_CHARS).collect();
    add_text(b"t:", &body, dims, &mut buckets);
    let local = sender_local(email.from);
    if !local.is_empty() {
        // The sender's role name as a word ("noreply", "newsletter", "billing"): evidence, not
        // a rule, since a web form also sends from a no-reply address.
        for part in normalise(&local).split(' ').filter(|p| !p.is_empty()) {
            buckets.push((fnv1a(b"f:", part) as u32) & mask);
        }
    }
    if !email.body.contains('?') && !email.subject.contains('?') && !email.body.contains('？') {
        buckets.push((fnv1a(b"h:", "no-question-mark") as u32) & mask);
    }
    buckets.sort_unstable();
    // Counts per bucket, then log-damped and normalised: a long email's repetition should not
    // outweigh a short one's single strong phrase.
    let mut entries: Vec<(u32, f32)> = Vec::new();
    for b in buckets {
        match entries.last_mut() {
            Some((last, v)) if *last == b => *v += 1.0,
            _ => entries.push((b, 1.0)),
        }
    }
    for (_, v) in &mut entries {
        *v = 1.0 + v.ln();
    }
    let norm = entries.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, v) in &mut entries {
            *v /= norm;
        }
    }
    Features { entries }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_and_punctuation_but_keeps_accents() {
        assert_eq!(normalise("Réponse automatique : ABSENT!!"), "réponse automatique absent");
        assert_eq!(normalise("  "), "");
    }

    #[test]
    fn features_are_normalised_sorted_and_deterministic() {
        let email =
            EmailText { from: "Ann <ann@x.com>", subject: "Re: E04", body: "ログインできません。help?" };
        let a = extract(&email, 1 << 16);
        assert_eq!(a, extract(&email, 1 << 16));
        assert!(a.entries.windows(2).all(|w| w[0].0 < w[1].0));
        let norm: f32 = a.entries.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        assert!(a.entries.iter().all(|(b, _)| *b < 1 << 16));
    }

    #[test]
    fn quoted_text_is_not_read() {
        let own = EmailText { from: "", subject: "s", body: "Thanks, it works now." };
        let quoted =
            EmailText { from: "", subject: "s", body: "Thanks, it works now.\n> Out of office until Monday\n> bounce" };
        assert_eq!(extract(&own, 1 << 16), extract(&quoted, 1 << 16));
    }

    #[test]
    fn sender_local_part() {
        assert_eq!(sender_local("Web Form <No-Reply@site.com>"), "no-reply");
        assert_eq!(sender_local("ann@x.com"), "ann");
        assert_eq!(sender_local(""), "");
    }
}
