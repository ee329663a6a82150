//! A small, forgiving HTML → readable text converter for HTML-only mail bodies.
//!
//! Mail HTML is rarely valid: Outlook emits Word markup, marketing tools nest tables ten deep, and
//! hostile senders send truncated tags. This converter therefore does not build a DOM. It scans the
//! input once, left to right, and only understands what matters for reading the text: which
//! elements hide their content (`script`, `style`, `head`…), which ones start a new line or a
//! paragraph, list items, `<pre>`, and character references. Anything it does not understand is
//! skipped, never rejected, and no input can make it panic (it only slices the input at ASCII
//! delimiters, which are always `char` boundaries).

/// Elements whose content is never shown to a reader.
const HIDDEN_CONTENT: &[&str] = &["script", "style", "title", "template", "xml", "noscript"];

/// Elements that start (and end) a new line.
const LINE_BLOCKS: &[&str] = &[
    "div",
    "tr",
    "dt",
    "dd",
    "dl",
    "address",
    "article",
    "aside",
    "center",
    "details",
    "summary",
    "figcaption",
    "footer",
    "header",
    "form",
    "fieldset",
    "legend",
    "main",
    "nav",
    "section",
    "option",
    "caption",
    "hgroup",
    "tbody",
    "thead",
    "tfoot",
];

/// Elements that are separated from their surroundings by a blank line.
const PARAGRAPH_BLOCKS: &[&str] =
    &["p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol", "hr", "figure"];

/// Converts an HTML document or fragment into readable plain text.
///
/// `script`, `style`, `head` and similar elements are dropped, block elements become line breaks
/// (paragraph-like ones a blank line), `<br>` is a line break, `<li>` becomes `- ` (indented by
/// list depth), table cells are separated by a space, character references (named, decimal and
/// hex) are decoded, and whitespace is collapsed except inside `<pre>`. The result has no leading
/// or trailing whitespace and at most one blank line in a row.
pub fn html_to_text(html: &str) -> String {
    let mut w = TextWriter::default();
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            // Text up to the next tag; '<' is ASCII, so the slice ends on a char boundary.
            let end = memchr(b'<', bytes, i).unwrap_or(bytes.len());
            w.text(&decode_entities(&html[i..end]));
            i = end;
            continue;
        }
        i = handle_markup(html, i, &mut w);
    }
    w.finish()
}

/// Handles the markup starting at `html[start] == '<'` and returns where scanning continues.
fn handle_markup(html: &str, start: usize, w: &mut TextWriter) -> usize {
    let bytes = html.as_bytes();
    let rest = &bytes[start..];
    if rest.starts_with(b"<!--") {
        // An unterminated comment hides the rest of the document, as in a browser.
        return find(bytes, b"-->", start + 4).map_or(bytes.len(), |end| end + 3);
    }
    let next = rest.get(1).copied().unwrap_or(b' ');
    if next == b'!' || next == b'?' {
        // Doctype, CDATA or processing instruction: never text worth reading.
        return memchr(b'>', bytes, start).map_or(bytes.len(), |end| end + 1);
    }
    let closing = next == b'/';
    let name_start = start + if closing { 2 } else { 1 };
    if !bytes.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
        // "a < b" or "<3": a literal less-than sign, not a tag.
        w.text("<");
        return start + 1;
    }
    let name_end = bytes[name_start..]
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || *b == b':' || *b == b'-'))
        .map_or(bytes.len(), |p| name_start + p);
    let name = html[name_start..name_end].to_ascii_lowercase();
    let Some(tag_end) = find_tag_end(bytes, name_end) else {
        // A tag that never closes swallows the rest of the input, as in a browser.
        return bytes.len();
    };
    let self_closing = tag_end > 0 && bytes[tag_end - 1] == b'/';
    let after = tag_end + 1;

    if !closing && !self_closing {
        if HIDDEN_CONTENT.contains(&name.as_str()) {
            let mut close = String::with_capacity(name.len() + 2);
            close.push_str("</");
            close.push_str(&name);
            return match find_ci(bytes, close.as_bytes(), after) {
                Some(pos) => find_tag_end(bytes, pos + close.len()).map_or(bytes.len(), |end| end + 1),
                // Unclosed script/style: a browser treats the rest as script too.
                None => bytes.len(),
            };
        }
        if name == "head" && !w.head_end_missing {
            // `<head>` holds no readable text, but a missing `</head>` must not hide the body, so
            // skip only up to an end tag or a `<body>`; with neither, parse it normally (its
            // title/style/script are hidden anyway).
            if let Some(pos) = find_ci(bytes, b"</head", after).or_else(|| find_ci(bytes, b"<body", after)) {
                return pos;
            }
            // Remembered so that a flood of `<head>` tags cannot make the scan quadratic.
            w.head_end_missing = true;
            return after;
        }
    }
    w.element(&name, closing);
    after
}

/// Finds the `>` that ends a tag whose attributes start at `from`, skipping quoted attribute values.
fn find_tag_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    let mut after_equals = false;
    while i < bytes.len() {
        match bytes[i] {
            b'>' => return Some(i),
            b'=' => after_equals = true,
            q @ (b'"' | b'\'') if after_equals => {
                // Only a quote right after `=` delimits a value (`title=it's` is unquoted).
                i = memchr(q, bytes, i + 1)?;
                after_equals = false;
            }
            b if b.is_ascii_whitespace() => {}
            _ => after_equals = false,
        }
        i += 1;
    }
    None
}

/// Accumulates output text, turning structure into line breaks and collapsing whitespace.
#[derive(Default)]
struct TextWriter {
    out: String,
    /// Newlines owed before the next visible text (0, 1, or 2 for a blank line).
    pending_breaks: u8,
    /// Whitespace was seen since the last visible character.
    pending_space: bool,
    pre_depth: usize,
    list_depth: usize,
    /// Neither `</head>` nor `<body>` follows a `<head>` seen earlier.
    head_end_missing: bool,
}

impl TextWriter {
    fn element(&mut self, name: &str, closing: bool) {
        match name {
            "br" => self.pending_breaks = (self.pending_breaks + 1).min(2),
            "li" => {
                self.break_at_least(1);
                if !closing {
                    self.flush_breaks();
                    for _ in 1..self.list_depth {
                        self.out.push_str("  ");
                    }
                    self.out.push_str("- ");
                    self.pending_space = false;
                }
            }
            "ul" | "ol" => {
                self.list_depth = if closing { self.list_depth.saturating_sub(1) } else { self.list_depth + 1 };
                // A nested list continues its parent item on the next line, not after a blank one.
                self.break_at_least(if self.list_depth > usize::from(!closing) { 1 } else { 2 });
            }
            "pre" => {
                self.pre_depth = if closing { self.pre_depth.saturating_sub(1) } else { self.pre_depth + 1 };
                self.break_at_least(2);
            }
            "td" | "th" => self.pending_space = true,
            _ if PARAGRAPH_BLOCKS.contains(&name) => self.break_at_least(2),
            _ if LINE_BLOCKS.contains(&name) => self.break_at_least(1),
            // Inline elements (a, span, b, font, o:p…) only separate words if the source did.
            _ => {}
        }
    }

    fn break_at_least(&mut self, n: u8) {
        self.pending_breaks = self.pending_breaks.max(n);
    }

    /// Writes owed line breaks; none at the very start of the output.
    fn flush_breaks(&mut self) {
        if self.pending_breaks == 0 {
            return;
        }
        let wanted = usize::from(self.pending_breaks);
        self.pending_breaks = 0;
        self.pending_space = false;
        if self.out.is_empty() {
            return;
        }
        trim_trailing_spaces(&mut self.out);
        let have = self.out.bytes().rev().take_while(|b| *b == b'\n').count();
        for _ in have..wanted {
            self.out.push('\n');
        }
    }

    fn at_line_start(&self) -> bool {
        self.out.is_empty() || self.out.ends_with('\n') || self.out.ends_with("- ")
    }

    fn text(&mut self, text: &str) {
        for c in text.chars() {
            if is_invisible(c) {
                continue;
            }
            if self.pre_depth > 0 {
                self.flush_breaks();
                if self.pending_space {
                    self.out.push(' ');
                    self.pending_space = false;
                }
                self.out.push(if c == '\r' { '\n' } else { c });
            } else if c.is_whitespace() {
                self.pending_space = true;
            } else {
                self.flush_breaks();
                if self.pending_space && !self.at_line_start() {
                    self.out.push(' ');
                }
                self.pending_space = false;
                self.out.push(c);
            }
        }
    }

    fn finish(self) -> String {
        // Final pass: no trailing spaces on lines, at most one blank line in a row.
        let mut result = String::with_capacity(self.out.len());
        let mut blank_run = 0;
        for line in self.out.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                blank_run += 1;
                if blank_run > 1 {
                    continue;
                }
            } else {
                blank_run = 0;
            }
            result.push_str(line);
            result.push('\n');
        }
        let trimmed = result.trim();
        if trimmed.len() == result.len() { result } else { trimmed.to_owned() }
    }
}

fn trim_trailing_spaces(s: &mut String) {
    let keep = s.trim_end_matches([' ', '\t']).len();
    s.truncate(keep);
}

/// Zero-width and soft-hyphen characters that marketing mail pads its preheaders with.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{034F}' | '\u{200B}' | '\u{200C}' | '\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Decodes HTML character references: named (`&amp;`, `&eacute;`…), decimal (`&#233;`) and hex
/// (`&#xE9;`). Unknown or malformed references are kept as written.
pub fn decode_entities(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('&') {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match decode_reference(after) {
            Some((decoded, consumed)) => {
                out.push_str(&decoded);
                rest = &after[consumed..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// Decodes the reference after an `&`; returns the text and how many bytes were consumed.
fn decode_reference(s: &str) -> Option<(String, usize)> {
    let bytes = s.as_bytes();
    if bytes.first() == Some(&b'#') {
        let (radix, digits_start) = match bytes.get(1) {
            Some(b'x' | b'X') => (16, 2),
            _ => (10, 1),
        };
        let digits_len = bytes[digits_start..].iter().take_while(|b| (**b as char).is_digit(radix)).count();
        if digits_len == 0 {
            return None;
        }
        let digits = &s[digits_start..digits_start + digits_len];
        // Absurdly long numbers are out of range anyway; parse failure maps to U+FFFD.
        let c = u32::from_str_radix(digits, radix).ok().map_or('\u{FFFD}', numeric_reference_char);
        let mut consumed = digits_start + digits_len;
        if bytes.get(consumed) == Some(&b';') {
            consumed += 1;
        }
        return Some((c.to_string(), consumed));
    }
    let name_len = bytes.iter().take(32).take_while(|b| b.is_ascii_alphanumeric()).count();
    if name_len == 0 {
        return None;
    }
    let name = &s[..name_len];
    if bytes.get(name_len) == Some(&b';') {
        return named_entity(name).map(|v| (v.to_owned(), name_len + 1));
    }
    // Legacy references that browsers (and old mail tools) accept without the semicolon.
    match name {
        "amp" | "lt" | "gt" | "quot" | "nbsp" | "copy" | "reg" => named_entity(name).map(|v| (v.to_owned(), name_len)),
        _ => None,
    }
}

/// Maps a numeric reference to a character the way HTML does: C1 controls are read as
/// Windows-1252 (`&#146;` is a right single quote in practice), invalid code points become U+FFFD.
fn numeric_reference_char(code: u32) -> char {
    const CP1252_C1: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž', '\u{8F}', '\u{90}', '‘',
        '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}', 'ž', 'Ÿ',
    ];
    match code {
        0 => '\u{FFFD}',
        0x80..=0x9F => CP1252_C1[(code - 0x80) as usize],
        _ => char::from_u32(code).unwrap_or('\u{FFFD}'),
    }
}

/// Latin-1 supplement entity names, in code point order from U+00A0.
const LATIN1_NAMES: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf", "laquo", "not", "shy",
    "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro", "para", "middot", "cedil", "sup1", "ordm",
    "raquo", "frac14", "frac12", "frac34", "iquest", "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig",
    "Ccedil", "Egrave", "Eacute", "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve",
    "Oacute", "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute", "THORN",
    "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil", "egrave", "eacute", "ecirc",
    "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde", "ograve", "oacute", "ocirc", "otilde", "ouml",
    "divide", "oslash", "ugrave", "uacute", "ucirc", "uuml", "yacute", "thorn", "yuml",
];

fn named_entity(name: &str) -> Option<&'static str> {
    let value = match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        "ensp" => "\u{2002}",
        "emsp" => "\u{2003}",
        "thinsp" => "\u{2009}",
        "zwnj" => "\u{200C}",
        "zwj" => "\u{200D}",
        "lrm" => "\u{200E}",
        "rlm" => "\u{200F}",
        "ndash" => "–",
        "mdash" => "—",
        "lsquo" => "‘",
        "rsquo" => "’",
        "sbquo" => "‚",
        "ldquo" => "“",
        "rdquo" => "”",
        "bdquo" => "„",
        "dagger" => "†",
        "Dagger" => "‡",
        "bull" => "•",
        "hellip" => "…",
        "permil" => "‰",
        "prime" => "′",
        "Prime" => "″",
        "lsaquo" => "‹",
        "rsaquo" => "›",
        "oline" => "‾",
        "euro" => "€",
        "trade" => "™",
        "larr" => "←",
        "uarr" => "↑",
        "rarr" => "→",
        "darr" => "↓",
        "harr" => "↔",
        "minus" => "−",
        "OElig" => "Œ",
        "oelig" => "œ",
        "Scaron" => "Š",
        "scaron" => "š",
        "Yuml" => "Ÿ",
        "fnof" => "ƒ",
        "circ" => "ˆ",
        "tilde" => "˜",
        "check" => "✓",
        "star" => "☆",
        _ => return latin1_entity(name),
    };
    Some(value)
}

fn latin1_entity(name: &str) -> Option<&'static str> {
    // One static string per Latin-1 code point so lookups can return `&'static str`.
    const LATIN1_CHARS: [&str; 96] = [
        "\u{A0}", "¡", "¢", "£", "¤", "¥", "¦", "§", "¨", "©", "ª", "«", "¬", "\u{AD}", "®", "¯", "°", "±", "²", "³",
        "´", "µ", "¶", "·", "¸", "¹", "º", "»", "¼", "½", "¾", "¿", "À", "Á", "Â", "Ã", "Ä", "Å", "Æ", "Ç", "È", "É",
        "Ê", "Ë", "Ì", "Í", "Î", "Ï", "Ð", "Ñ", "Ò", "Ó", "Ô", "Õ", "Ö", "×", "Ø", "Ù", "Ú", "Û", "Ü", "Ý", "Þ", "ß",
        "à", "á", "â", "ã", "ä", "å", "æ", "ç", "è", "é", "ê", "ë", "ì", "í", "î", "ï", "ð", "ñ", "ò", "ó", "ô", "õ",
        "ö", "÷", "ø", "ù", "ú", "û", "ü", "ý", "þ", "ÿ",
    ];
    LATIN1_NAMES.iter().position(|n| *n == name).map(|i| LATIN1_CHARS[i])
}

fn memchr(needle: u8, hay: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.iter().position(|b| *b == needle).map(|p| from + p)
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| from + p)
}

/// Case-insensitive search for an ASCII needle.
fn find_ci(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?.windows(needle.len()).position(|w| w.eq_ignore_ascii_case(needle)).map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs_breaks_and_lists() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
            <p>Hello&nbsp;there,</p><p>line one<br>line two</p>\
            <ul><li>first</li><li>second<ul><li>nested</li></ul></li></ul><div>after</div></body></html>";
        assert_eq!(html_to_text(html), "Hello there,\n\nline one\nline two\n\n- first\n- second\n  - nested\n\nafter");
    }

    #[test]
    fn gmail_style_divs() {
        let html = "<div dir=\"ltr\"><div>Hi,</div><div><br></div><div>Text here.</div><div>Anna</div></div>";
        assert_eq!(html_to_text(html), "Hi,\n\nText here.\nAnna");
    }

    #[test]
    fn entities() {
        assert_eq!(
            decode_entities("a &amp; b &lt;c&gt; &#233;&#xE9;&#X41; &eacute; &#146; &bogus; &amp &#0; & x"),
            "a & b <c> ééA é ’ &bogus; & \u{FFFD} & x"
        );
        assert_eq!(decode_entities("&#xFFFFFFFFFFFF; &#55296;"), "\u{FFFD} \u{FFFD}");
    }

    #[test]
    fn script_style_comments_and_doctype_are_dropped() {
        let html = "<!DOCTYPE html><!-- hidden --><script>if (a < b) { x = '</div>'; }</script>\
            <STYLE type=text/css>.a{}</STYLE>visible<noscript>no</noscript>";
        assert_eq!(html_to_text(html), "visible");
    }

    #[test]
    fn pre_keeps_whitespace() {
        assert_eq!(html_to_text("<p>x</p><pre>  a\n    b</pre><p>y   z</p>"), "x\n\n  a\n    b\n\ny z");
    }

    #[test]
    fn attribute_quotes_may_contain_gt() {
        assert_eq!(html_to_text("<a title=\"a > b\" href='x>y'>link</a> <img alt=it's>text"), "link text");
    }

    #[test]
    fn malformed_input_never_panics() {
        let cases = [
            "",
            "<",
            "<<<>>>",
            "<a",
            "<a href=\"unterminated",
            "</",
            "<!--",
            "<!",
            "&",
            "&#",
            "&#x",
            "&#x;",
            "<script>never closed",
            "<head><p>body without end of head",
            "<p>é<",
            "<é>",
            "text <3 more",
            "<ul></li></li></ul></ol>",
            "</pre></pre>x",
            "<td>a<td>b",
            "&#99999999999999999999;",
            "\u{0}<\u{0}>",
        ];
        for case in cases {
            let _ = html_to_text(case);
        }
        assert_eq!(html_to_text("text <3 more"), "text <3 more");
        assert_eq!(html_to_text("<head><p>body without end of head"), "body without end of head");
        assert_eq!(html_to_text("<td>a<td>b"), "a b");
    }

    #[test]
    fn invisible_padding_is_removed() {
        assert_eq!(html_to_text("Preheader&zwnj;&nbsp;&zwnj;&nbsp;&shy;done"), "Preheader done");
    }
}
