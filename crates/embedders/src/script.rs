//! Which characters make words, shared by everything that cuts text into terms: the hashing
//! embedder and the full-text search (`vector_store::lexical`). Both must agree, or a question
//! and a passage would be cut differently on the two sides of a hybrid search.

/// Whether `c` belongs to a script written without spaces between words (Han and kana; Thai,
/// Lao, Myanmar, Khmer), which is therefore cut into character bigrams.
pub fn is_bigram_script(c: char) -> bool {
    matches!(u32::from(c),
        0x3005..=0x3007          // 々 〆 〇
        | 0x3040..=0x30FF        // Hiragana, Katakana
        | 0x31F0..=0x31FF        // Katakana phonetic extensions
        | 0x3400..=0x4DBF        // CJK extension A
        | 0x4E00..=0x9FFF        // CJK unified ideographs
        | 0xF900..=0xFAFF        // CJK compatibility ideographs
        | 0xFF66..=0xFF9F        // half-width Katakana
        | 0x20000..=0x2FFFF      // CJK extensions B–F
        | 0x0E00..=0x0E7F        // Thai
        | 0x0E80..=0x0EFF        // Lao
        | 0x1000..=0x109F        // Myanmar
        | 0x1780..=0x17FF        // Khmer
    )
}

/// Whether `c` is Han or kana: the characters of Chinese and Japanese, which separate no words
/// with spaces (unlike Thai, Lao, Myanmar and Khmer, whose spaces end phrases).
pub fn is_han_or_kana(c: char) -> bool {
    is_bigram_script(c) && !matches!(u32::from(c), 0x0E00..=0x0EFF | 0x1000..=0x109F | 0x1780..=0x17FF)
}

/// Whether `c` continues a word: letters, digits, and the combining marks of Indic and other
/// scripts (a Devanagari virama is no letter, but splitting a word at it would break it).
pub fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(u32::from(c), 0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05C7 | 0x0610..=0x061A
            | 0x064B..=0x065F | 0x0900..=0x0963 | 0x0966..=0x0DFF)
}
