//! Recognising uploaded documents by their content, not their name: PDFs by their magic bytes,
//! text by decoding (UTF-8, or Latin-1 for legacy files) without binary control characters.

/// Whether the bytes start like a PDF (`%PDF-` within the first KiB, as PDF readers accept).
pub fn is_pdf(head: &[u8]) -> bool {
    let head = &head[..head.len().min(1024)];
    head.windows(5).any(|w| w == b"%PDF-")
}

/// Decodes a text document: UTF-8 (a BOM is dropped), else Latin-1 when the bytes look like
/// text. Bytes with NUL or other control characters (besides tab, line breaks and form feed)
/// are binary: `None`.
pub fn decode_text(bytes: &[u8]) -> Option<String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let control = |b: &u8| *b < 0x20 && !matches!(b, b'\n' | b'\r' | b'\t' | 0x0c);
    if bytes.iter().any(control) {
        return None;
    }
    match std::str::from_utf8(bytes) {
        Ok(s) => Some(s.to_owned()),
        // Latin-1 maps every byte to the code point of the same value.
        Err(_) => Some(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_decoded_as_utf8_or_latin1_and_binary_is_refused() {
        assert_eq!(decode_text("héllo\n".as_bytes()).as_deref(), Some("héllo\n"));
        assert_eq!(decode_text(b"\xEF\xBB\xBFbom").as_deref(), Some("bom"));
        assert_eq!(decode_text(b"caf\xe9").as_deref(), Some("café"));
        assert_eq!(decode_text(b"MZ\x90\x00\x03"), None);
    }

    #[test]
    fn pdf_is_recognised_by_content() {
        assert!(is_pdf(b"%PDF-1.7\n..."));
        assert!(is_pdf(b"\n\n%PDF-1.4"));
        assert!(!is_pdf(b"MZ\x90\x00"));
        assert!(!is_pdf(b"%PD"));
    }
}
