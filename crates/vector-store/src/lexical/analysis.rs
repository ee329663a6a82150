//! Text analysis for full-text search: how chunks and questions become words before PostgreSQL
//! parses them (character bigrams for scripts written without spaces, Cyrillic prefixes, the
//! parts of paths and file names, question boilerplate of Chinese and Japanese), and which
//! text-search configuration suits a text's language. Which characters make words is shared
//! with the hashing embedder (`embedders::script`).

pub use embedders::script::is_bigram_script;
use embedders::script::{Script, is_word_char, letter_script};

/// Which version of [`index_text`] a chunk's `tsv` was computed with (`chunks.text_analysis`).
/// Raise it whenever `index_text` or [`search_config`] changes what a text becomes, so that
/// [`super::reindex_outdated`] recomputes the chunks written before: a question is analysed
/// by the running code, and must meet chunks analysed the same way.
///
/// 1: until 2026-12-05 (and rows the full-text migration indexed with plain `simple`); 2: runs
/// of Han, Hiragana and Katakana are split where the script changes, Han characters are indexed
/// alone as well as in bigrams, and Cyrillic words are cut to [`CYRILLIC_PREFIX`] letters;
/// 3: a Katakana run of three or more characters is indexed whole as well as in bigrams (and
/// Vietnamese letters and the Arabic supplement count toward their scripts when [`search_config`]
/// weighs a text's scripts, now read from `embedders::script::letter_script`).
pub const ANALYSIS_VERSION: i16 = 3;

/// Letters a Cyrillic word is cut to before PostgreSQL's `russian` stemmer sees it. Snowball
/// removes inflections but not derivations: настроить "to set up" and Настройка "setting up",
/// пакет "package" and пакетирования "packaging" keep different stems, so a question and the
/// passage answering it shared only "quilt". Cutting to a prefix is the classic remedy for
/// Russian retrieval; on the evaluation set 5 and 6 letters found the same questions (one more
/// than the stemmer alone, none lost), 7 found none more, and 5 ranked them higher (MRR).
const CYRILLIC_PREFIX: usize = 5;

/// The writing system of a character of a spaceless script: a bigram across a change of
/// system (漢字 to かな) is rarely a word, as Japanese inflections and particles are written
/// in Hiragana after a Han stem (使用量を → 使用 用量 and を, not 量を).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Writing {
    Han,
    Hiragana,
    Katakana,
    Other,
}

fn writing(c: char) -> Writing {
    match u32::from(c) {
        0x3040..=0x309F => Writing::Hiragana,
        0x30A0..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F => Writing::Katakana,
        0x3005..=0x3007 | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF => Writing::Han,
        _ => Writing::Other,
    }
}

/// Whether `c` is a Cyrillic letter (the letters [`CYRILLIC_PREFIX`] applies to).
fn is_cyrillic(c: char) -> bool {
    matches!(u32::from(c), 0x0400..=0x052F)
}

/// `text` as full-text search sees it (chunks when written, questions when searched):
/// - every run of [`is_bigram_script`] characters in one writing system replaced by its
///   overlapping character bigrams, separated by spaces, Han characters also alone and
///   Katakana runs of three or more also whole ("東京タワー" → "東 京 東京 タワー タワ ワー"; a
///   run of one character stays as it is);
/// - every Cyrillic word cut to its first [`CYRILLIC_PREFIX`] letters, lower-cased;
/// - the parts of paths and file names added.
///
/// Everything else is kept.
pub fn index_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut run: Vec<char> = Vec::new();
    let flush = |run: &mut Vec<char>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        out.push(' ');
        if run.len() == 1 {
            out.push(run[0]);
        } else if writing(run[0]) == Writing::Katakana && run.len() > 2 {
            // The whole word too: katakana spells loanwords, mostly one to a run, and their
            // bigrams alone let one match another sharing a syllable pair — タイムゾーン (time
            // zone) drew passages on タイムスタンプ (timestamp) above the one on time zones.
            out.extend(run.iter());
            out.push(' ');
        } else if writing(run[0]) == Writing::Han {
            // Each Han character alone too: a character is often a word (日 "day", 量
            // "amount"), and a question and its passage often share a character where they
            // word a compound differently (定时 "timed" and 定期 "periodic"); the bigrams still
            // rank passages sharing the compound first. Indexing both is the usual choice for
            // Chinese retrieval without a dictionary.
            for c in run.iter() {
                out.push(*c);
                out.push(' ');
            }
        }
        for pair in run.windows(2) {
            out.push(pair[0]);
            out.push(pair[1]);
            out.push(' ');
        }
        out.push(' ');
        run.clear();
    };
    // Letters of the Cyrillic word being copied (past the prefix they are dropped).
    let mut cyrillic = 0usize;
    for c in text.chars() {
        if is_bigram_script(c) {
            if run.last().is_some_and(|&last| writing(last) != writing(c)) {
                flush(&mut run, &mut out);
            }
            run.push(c);
            cyrillic = 0;
            continue;
        }
        flush(&mut run, &mut out);
        if is_cyrillic(c) || (cyrillic > 0 && is_word_char(c)) {
            cyrillic += 1;
            if cyrillic <= CYRILLIC_PREFIX {
                out.extend(c.to_lowercase());
            }
        } else {
            cyrillic = 0;
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    // PostgreSQL's parser keeps a path or file name whole ("/etc/fstab", "sources.list"), so a
    // question naming just "fstab" would not match it: the parts are added too.
    let mut parts = String::new();
    for token in text.split_whitespace().filter(|t| t.contains(['/', '.', '_'])) {
        let words: Vec<&str> = token.split(|c: char| !is_word_char(c)).filter(|w| !w.is_empty()).collect();
        if words.len() > 1 {
            for word in words {
                parts.push(' ');
                if word.starts_with(is_cyrillic) {
                    parts.extend(word.chars().take(CYRILLIC_PREFIX).flat_map(char::to_lowercase));
                } else {
                    parts.push_str(word);
                }
            }
        }
    }
    if !parts.is_empty() {
        out.push_str(" \n");
        out.push_str(&parts);
    }
    out
}

/// Phrases Chinese and Japanese questions are worded with, whatever they ask ("how should I",
/// "please tell me", "I would like to"), longest first. Those languages get no stop words from
/// PostgreSQL (they are searched with `simple`), so these phrases' bigrams would count as
/// question terms: mostly absent from manuals, they lower every passage's coverage, and where a
/// manual does use one (教え, 应该) they rank passages for it. English and Russian questions
/// lose theirs ("how", "do", "как") to their configurations' stop words.
#[rustfmt::skip]
const SPACELESS_BOILERPLATE: &[&str] = &[
    // Japanese
    "どうすればいいですか", "どうすればよいですか", "どうすればいい", "どうしたらいいですか", "どうしたらいい",
    "教えてください", "ありますか", "できますか", "でしょうか", "したいです", "たいです", "ですか", "ますか",
    "ください", "したい", "どう",
    // Chinese
    "应该怎么", "有没有", "怎么样", "请问", "我想", "应该", "怎么", "怎样", "如何", "可以", "需要",
];

/// `question` with [`SPACELESS_BOILERPLATE`] phrases replaced by a space (which also keeps
/// their neighbours from forming bigrams across them).
pub fn strip_boilerplate(question: &str) -> String {
    let mut out = question.to_owned();
    for phrase in SPACELESS_BOILERPLATE {
        if out.contains(phrase) {
            out = out.replace(phrase, " ");
        }
    }
    out
}

/// The question's words for `websearch_to_tsquery`, joined by `or`: tokens of letters, digits
/// and marks (with the `.`, `_`, `/` and `-` inside file names and commands), bigrams for
/// scripts without spaces; leading `-` (websearch's negation) and quotes are dropped.
pub fn query_words(question: &str) -> String {
    let text = index_text(question);
    let inner = |c: char| is_word_char(c) || matches!(c, '.' | '_' | '/' | '-' | '+');
    let mut words: Vec<&str> = Vec::new();
    for token in text.split(|c: char| !inner(c)) {
        let token = token.trim_matches(|c: char| !is_word_char(c) && c != '/');
        if token.is_empty() || token.eq_ignore_ascii_case("or") || token.eq_ignore_ascii_case("and") {
            continue;
        }
        words.push(token);
    }
    words.join(" or ")
}

/// Common words of the Latin-script languages with a PostgreSQL configuration: a handful each,
/// chosen to be frequent in that language and rare in the others.
#[rustfmt::skip]
const LATIN_MARKERS: [(&str, &[&str]); 7] = [
    ("english", &["the", "and", "of", "to", "is", "that", "for", "with", "are", "this", "you", "be", "not", "or", "it"]),
    ("french", &["le", "la", "les", "des", "et", "est", "une", "pour", "dans", "qui", "pas", "sur", "du", "au", "vous"]),
    ("german", &["der", "die", "das", "und", "ist", "nicht", "mit", "ein", "eine", "zu", "den", "von", "sich", "auf", "für"]),
    ("spanish", &["el", "los", "las", "y", "es", "para", "una", "por", "con", "del", "se", "como", "más", "está", "puede"]),
    ("italian", &["il", "gli", "di", "che", "è", "per", "una", "con", "non", "sono", "della", "del", "alla", "nel", "questo"]),
    ("portuguese", &["o", "os", "não", "para", "uma", "com", "do", "da", "em", "é", "mais", "pelo", "pela", "você", "são"]),
    ("dutch", &["het", "een", "en", "van", "niet", "dat", "op", "te", "voor", "met", "zijn", "ook", "wordt", "naar", "bij"]),
];

/// The script most of a text's letters are in (Chinese and Japanese count three per
/// character, since one stands for about a word): `latin`, or the configuration of the others.
fn dominant_script(text: &str) -> &'static str {
    let (mut latin, mut cyrillic, mut greek, mut devanagari, mut arabic, mut spaceless) = (0, 0, 0, 0, 0, 0);
    for c in text.chars() {
        match letter_script(c) {
            Some(_) if is_bigram_script(c) => spaceless += 3,
            Some(Script::Latin) => latin += 1,
            Some(Script::Greek) => greek += 1,
            Some(Script::Cyrillic) => cyrillic += 1,
            Some(Script::Arabic) => arabic += 1,
            Some(Script::Devanagari) => devanagari += 1,
            _ => {}
        }
    }
    let scripts = [
        (spaceless, "simple"),
        (cyrillic, "russian"),
        (greek, "greek"),
        (devanagari, "hindi"),
        (arabic, "arabic"),
        (latin, "latin"),
    ];
    match scripts.iter().copied().max_by_key(|(n, _)| *n) {
        Some((n, script)) if n > 0 => script,
        _ => "simple",
    }
}

/// The text-search configuration for a text: chosen by its [`dominant_script`], then, for Latin
/// script, by which language's common words it uses; `simple` (no stemming, no stop words) when
/// no configuration suits. The writer falls back to `simple` as well when the database lacks
/// the configuration.
pub fn search_config(text: &str) -> &'static str {
    let script = dominant_script(text);
    if script != "latin" {
        return script;
    }
    let mut hits = [0usize; LATIN_MARKERS.len()];
    for word in text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty() && w.len() <= 8) {
        let word = word.to_lowercase();
        for (i, (_, markers)) in LATIN_MARKERS.iter().enumerate() {
            if markers.contains(&word.as_str()) {
                hits[i] += 1;
            }
        }
    }
    match hits.iter().enumerate().max_by_key(|(i, n)| (**n, usize::MAX - i)) {
        Some((i, &n)) if n >= 2 => LATIN_MARKERS[i].0,
        // A table of commands or a heading: English is by far the likeliest, and the same
        // configuration as the prose around it keeps its terms comparable.
        _ => "english",
    }
}

/// The configurations a question is parsed with: those of its script. A question is too short
/// to tell English from French reliably, so a Latin-script one is parsed with every Latin-script
/// configuration the agent's chunks use; parsing it with the Russian stemmer would only add
/// terms no Russian passage shares.
pub(super) fn question_configs(question: &str) -> Vec<&'static str> {
    match dominant_script(question) {
        "latin" => LATIN_MARKERS.iter().map(|(config, _)| *config).collect(),
        own => vec![own],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaceless_scripts_become_bigrams() {
        let words = |text: &str| index_text(text).split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        // Bigrams stay within one writing system: no 京タ, no のパ, no 量を. Katakana words are
        // also kept whole, so タイムゾーン and タイムスタンプ share more than タイ and イム.
        assert_eq!(words("東京タワー"), ["東", "京", "東京", "タワー", "タワ", "ワー"]);
        assert_eq!(words("Debianのパッケージ"), ["Debian", "の", "パッケージ", "パッ", "ッケ", "ケー", "ージ"]);
        assert_eq!(
            words("ディスク使用量を調べる"),
            ["ディスク", "ディ", "ィス", "スク", "使", "用", "量", "使用", "用量", "を", "調", "べる"]
        );
        assert_eq!(words("ログ"), ["ログ"]);
        assert_eq!(words("升级系统"), ["升", "级", "系", "统", "升级", "级系", "系统"]);
        assert_eq!(index_text("中").trim(), "中");
        // Greek and Devanagari are untouched.
        assert_eq!(index_text("κόσμε नमस्ते"), "κόσμε नमस्ते");
        // Paths and file names also give their parts.
        assert_eq!(index_text("see /etc/fstab."), "see /etc/fstab. \n etc fstab");
    }

    #[test]
    fn cyrillic_words_are_cut_to_a_prefix_so_derived_words_meet() {
        assert_eq!(index_text("Настройка quilt"), "настр quilt");
        assert_eq!(index_text("Как настроить пакет?"), "как настр пакет?");
        assert_eq!(index_text("пакетирования, 10Вы"), "пакет, 10вы");
        // The stemmer then sees one form where there were two.
        assert_eq!(index_text("Настройка"), index_text("настроить"));
        // A word after a run of another script starts its own count; the parts of a file name
        // are cut as well.
        assert_eq!(
            index_text("Обновление中Настройка").split_whitespace().collect::<Vec<_>>(),
            ["обнов", "中", "настр"]
        );
        assert_eq!(index_text("/etc/настройки.conf"), "/etc/настр.conf \n etc настр conf");
    }

    #[test]
    fn query_words_are_ored_and_keep_commands_and_indic_words_whole() {
        assert_eq!(
            query_words("How do I edit /etc/apt/sources.list?"),
            "How or do or I or edit or /etc/apt/sources.list or etc or apt or sources or list"
        );
        assert_eq!(query_words("apt-get -y \"upgrade\" or remove"), "apt-get or y or upgrade or remove");
        assert_eq!(query_words("नमस्ते दुनिया।"), "नमस्ते or दुनिया");
        assert_eq!(query_words("什么是包"), "什 or 么 or 是 or 包 or 什么 or 么是 or 是包");
        assert_eq!(query_words("?!"), "");
    }

    #[test]
    fn question_boilerplate_is_not_searched_for() {
        assert_eq!(query_words(&strip_boilerplate("怎么修改时区？")), "修 or 改 or 时 or 区 or 修改 or 改时 or 时区");
        assert_eq!(
            query_words(&strip_boilerplate("時刻を変更したいです。どうすればいいですか？")),
            "時 or 刻 or 時刻 or を or 変 or 更 or 変更"
        );
        // Latin and Cyrillic text is left to the configurations' stop words.
        assert_eq!(strip_boilerplate("How do I change it? Как это сделать?"), "How do I change it? Как это сделать?");
    }

    #[test]
    fn configurations_follow_the_language() {
        assert_eq!(search_config("How do I upgrade the packages of this system to the next release?"), "english");
        assert_eq!(search_config("Как собрать пакет из исходного кода?"), "russian");
        assert_eq!(search_config("Πώς μπορώ να αναβαθμίσω το σύστημα;"), "greek");
        assert_eq!(search_config("मैं पैकेज कैसे बनाऊं?"), "hindi");
        assert_eq!(search_config("パッケージをアップグレードするには apt full-upgrade を使います。"), "simple");
        assert_eq!(search_config("如何升级系统中的软件包"), "simple");
        assert_eq!(search_config("Comment mettre à jour les paquets de la distribution et du système ?"), "french");
        assert_eq!(search_config("Wie kann ich die Pakete auf dem System aktualisieren und das nicht?"), "german");
        assert_eq!(search_config("apt-get dpkg 1.2.3"), "english");
        assert_eq!(search_config("1.2.3 ..."), "simple");
        assert_eq!(search_config(""), "simple");
    }
}
