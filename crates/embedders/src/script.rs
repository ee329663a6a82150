//! Which characters make words and which writing system a character or a text is in, shared
//! by everything that cuts or sorts text: the hashing embedder and the full-text search
//! (`vector_store::lexical`), which must cut a question and a passage alike on the two sides of
//! a hybrid search, and what tells a text's language by its script (the offline reply's
//! wording, the offline classifier's reach).

/// A writing system: of a letter ([`letter_script`]) or of most of a text ([`dominant_script`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// Latin, with its accented and Vietnamese letters.
    Latin,
    /// Hiragana and Katakana (half-width too); as a text's script, Japanese (kana, with or
    /// without Han characters).
    Kana,
    /// Han characters (and 々 〆 〇); as a text's script, Chinese (Han without kana).
    Han,
    /// Hangul (Korean).
    Hangul,
    /// Cyrillic (Russian, Ukrainian, Bulgarian…).
    Cyrillic,
    /// Greek.
    Greek,
    /// Arabic (Arabic, Persian, Urdu).
    Arabic,
    /// Hebrew.
    Hebrew,
    /// Devanagari (Hindi, Marathi, Nepali).
    Devanagari,
    /// Thai.
    Thai,
    /// Lao.
    Lao,
    /// Myanmar (Burmese).
    Myanmar,
    /// Khmer.
    Khmer,
}

impl Script {
    /// Every script, in the order [`dominant_script`] breaks ties (Latin first).
    const ALL: [Script; 13] = [
        Self::Latin,
        Self::Kana,
        Self::Han,
        Self::Hangul,
        Self::Cyrillic,
        Self::Greek,
        Self::Arabic,
        Self::Hebrew,
        Self::Devanagari,
        Self::Thai,
        Self::Lao,
        Self::Myanmar,
        Self::Khmer,
    ];

    /// The name of a text written in it, for messages: "Japanese" for kana, "Chinese" for Han,
    /// "Korean" for Hangul, else the script's own name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Latin => "Latin",
            Self::Kana => "Japanese",
            Self::Han => "Chinese",
            Self::Hangul => "Korean",
            Self::Cyrillic => "Cyrillic",
            Self::Greek => "Greek",
            Self::Arabic => "Arabic",
            Self::Hebrew => "Hebrew",
            Self::Devanagari => "Devanagari",
            Self::Thai => "Thai",
            Self::Lao => "Lao",
            Self::Myanmar => "Myanmar",
            Self::Khmer => "Khmer",
        }
    }
}

/// The writing system `c` is a letter (or sign) of, among those this project tells apart.
pub fn letter_script(c: char) -> Option<Script> {
    Some(match u32::from(c) {
        0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => Script::Latin,
        0x3040..=0x30FF          // Hiragana, Katakana
        | 0x31F0..=0x31FF        // Katakana phonetic extensions
        | 0xFF66..=0xFF9F => Script::Kana, // half-width Katakana
        0x3005..=0x3007          // 々 〆 〇
        | 0x3400..=0x4DBF        // CJK extension A
        | 0x4E00..=0x9FFF        // CJK unified ideographs
        | 0xF900..=0xFAFF        // CJK compatibility ideographs
        | 0x20000..=0x2FFFF => Script::Han, // CJK extensions B–F
        0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF => Script::Hangul,
        0x0400..=0x052F => Script::Cyrillic,
        0x0370..=0x03FF | 0x1F00..=0x1FFF => Script::Greek,
        0x0600..=0x06FF | 0x0750..=0x077F => Script::Arabic,
        0x0590..=0x05FF => Script::Hebrew,
        0x0900..=0x097F => Script::Devanagari,
        0x0E00..=0x0E7F => Script::Thai,
        0x0E80..=0x0EFF => Script::Lao,
        0x1000..=0x109F => Script::Myanmar,
        0x1780..=0x17FF => Script::Khmer,
        _ => return None,
    })
}

/// Whether `c` belongs to a script written without spaces between words (Han and kana; Thai,
/// Lao, Myanmar, Khmer), which is therefore cut into character bigrams.
pub fn is_bigram_script(c: char) -> bool {
    matches!(
        letter_script(c),
        Some(Script::Kana | Script::Han | Script::Thai | Script::Lao | Script::Myanmar | Script::Khmer)
    )
}

/// Whether `c` is Han or kana: the characters of Chinese and Japanese, which separate no words
/// with spaces (unlike Thai, Lao, Myanmar and Khmer, whose spaces end phrases).
pub fn is_han_or_kana(c: char) -> bool {
    matches!(letter_script(c), Some(Script::Kana | Script::Han))
}

/// Whether `c` continues a word: letters, digits, and the combining marks of Indic and other
/// scripts (a Devanagari virama is no letter, but splitting a word at it would break it).
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(u32::from(c), 0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05C7 | 0x0610..=0x061A
            | 0x064B..=0x065F | 0x0900..=0x0963 | 0x0966..=0x0DFF)
}

/// The writing system most of `text`'s letters are in, each letter counted once (Latin wins a
/// tie); `None` without letters of any of them. Kana and Han count together as [`Script::Kana`]
/// (Japanese) when any kana appear, since Japanese writes with both; Han alone is
/// [`Script::Han`] (Chinese).
pub fn dominant_script(text: &str) -> Option<Script> {
    let mut counts = [0usize; Script::ALL.len()];
    for script in text.chars().filter_map(letter_script) {
        counts[script as usize] += 1;
    }
    if counts[Script::Kana as usize] > 0 {
        counts[Script::Kana as usize] += std::mem::take(&mut counts[Script::Han as usize]);
    }
    // The first of the largest counts, so Latin wins a tie.
    let (best, &n) = counts.iter().enumerate().rev().max_by_key(|(_, n)| **n)?;
    (n > 0).then_some(Script::ALL[best])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dominant_script_is_the_one_most_letters_are_in() {
        let cases = [
            ("How do I reset my password?", Some(Script::Latin)),
            ("Wie setze ich mein Passwort zurück?", Some(Script::Latin)),
            ("パスワードを再設定するにはどうすればいいですか？", Some(Script::Kana)),
            ("東京都港区", Some(Script::Han)),
            ("怎样修改 Debian 系统的时区？", Some(Script::Han)),
            ("Как настроить quilt?", Some(Script::Cyrillic)),
            ("비밀번호를 재설정하려면 어떻게 해야 하나요?", Some(Script::Hangul)),
            ("Πώς αλλάζω τον κωδικό μου;", Some(Script::Greek)),
            ("كيف أعيد تعيين كلمة المرور؟", Some(Script::Arabic)),
            ("איך אני מאפס את הסיסמה?", Some(Script::Hebrew)),
            ("मैं अपना पासवर्ड कैसे रीसेट करूं?", Some(Script::Devanagari)),
            ("ฉันจะรีเซ็ตรหัสผ่านได้อย่างไร", Some(Script::Thai)),
            // A Latin email signed in another script stays Latin; a tie goes to Latin.
            ("My desk shows error E04, what can I do? 王伟", Some(Script::Latin)),
            ("ab 中文", Some(Script::Latin)),
            ("12345 !?", None),
        ];
        for (text, script) in cases {
            assert_eq!(dominant_script(text), script, "{text}");
        }
    }
}
