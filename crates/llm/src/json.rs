//! Getting a JSON value out of a model's answer. Models asked for "only JSON" still wrap it in
//! Markdown code fences or put a sentence before and after it; [`extract_json`] accepts those
//! shapes but never repairs JSON (a trailing comma or a truncated object is an error), because
//! a repaired answer may not mean what the model meant.

use serde_json::Value;

/// How much of an unusable answer an error quotes.
const MAX_QUOTED_CHARS: usize = 200;

/// Extracts one JSON value from a model's answer, trying in order:
///
/// 1. the whole text (after trimming whitespace and a byte-order mark);
/// 2. the content of each Markdown code fence (```` ```json … ``` ```` or ```` ``` … ``` ````);
/// 3. the first balanced `{…}` or `[…]` in the text that parses, where braces inside JSON
///    strings (and escaped quotes) do not count. A balanced candidate that does not parse is
///    skipped as a whole rather than searched for a smaller value inside it, so that
///    `{"a": [1], }` is an error instead of the inner `[1]`.
///
/// The error says what was wrong and quotes the start of the text.
pub fn extract_json(text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err("the answer is empty".to_owned());
    }
    let whole_error = match serde_json::from_str::<Value>(trimmed) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    for block in fenced_blocks(trimmed) {
        if let Ok(value) = serde_json::from_str::<Value>(block.trim()) {
            return Ok(value);
        }
    }
    if let Some(value) = first_embedded_value(trimmed) {
        return Ok(value);
    }
    Err(format!("no valid JSON found in the answer ({whole_error}): {}", quote(trimmed)))
}

/// The contents of the Markdown code fences in `text`, in order. The info string after the
/// opening fence (`json`, `JSON`, nothing) is skipped; an unclosed fence runs to the end, as
/// happens when the answer hit the token limit.
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = rest[open..].trim_start_matches('`');
        // The info string ends at the line break; a fence without one (```{"a":1}```) starts
        // its content right after the backticks unless the first word is a language tag.
        let content = match after.find('\n') {
            Some(newline) if !after[..newline].contains(['{', '[']) => &after[newline + 1..],
            _ => after.trim_start_matches(|c: char| c.is_ascii_alphanumeric()),
        };
        match content.find("```") {
            Some(close) => {
                blocks.push(&content[..close]);
                rest = content[close..].trim_start_matches('`');
            }
            None => {
                blocks.push(content);
                break;
            }
        }
    }
    blocks
}

/// The first balanced object or array in `text` that parses.
fn first_embedded_value(text: &str) -> Option<Value> {
    let mut from = 0;
    while let Some(offset) = text[from..].find(['{', '[']) {
        let start = from + offset;
        match balanced_end(&text[start..]) {
            Some(len) => {
                if let Ok(value) = serde_json::from_str::<Value>(&text[start..start + len]) {
                    return Some(value);
                }
                // Skip the whole candidate: see `extract_json` on why not to look inside it.
                from = start + len;
            }
            // Unbalanced from here (a stray brace in prose): try the next opener.
            None => from = start + 1,
        }
    }
    None
}

/// The byte length of the balanced `{…}` or `[…]` that `text` starts with, or `None` when the
/// brackets do not balance (or close in the wrong order). Quotes start JSON strings, whose
/// content (including escaped quotes) is not bracket structure.
fn balanced_end(text: &str) -> Option<usize> {
    let mut expected: Vec<u8> = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for (i, byte) in text.bytes().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' => expected.push(b'}'),
            b'[' => expected.push(b']'),
            b'}' | b']' => {
                if expected.pop() != Some(byte) {
                    return None;
                }
                if expected.is_empty() {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

fn quote(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// The instruction appended to the system prompt of providers without native schema support
/// (Anthropic; OpenAI's `json_object` mode, which also insists the word "JSON" appears in the
/// messages).
pub(crate) fn schema_instruction(schema: &Value) -> String {
    let schema = serde_json::to_string_pretty(schema).unwrap_or_else(|_| schema.to_string());
    format!(
        "Answer with only a JSON object that matches the following JSON Schema. Do not wrap it in \
         code fences and do not add any text before or after it.\n\nJSON Schema:\n{schema}"
    )
}

/// `system` with the JSON instruction appended (or alone when there is no system prompt).
pub(crate) fn system_with_schema(system: &str, schema: &Value) -> String {
    let instruction = schema_instruction(schema);
    if system.trim().is_empty() { instruction } else { format!("{}\n\n{instruction}", system.trim_end()) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ok(text: &str) -> Value {
        extract_json(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    #[test]
    fn plain_json() {
        assert_eq!(
            ok(r#"{"category": "billing", "confidence": 0.9}"#),
            json!({"category": "billing", "confidence": 0.9})
        );
        assert_eq!(ok("  \n[1, 2, 3]\n"), json!([1, 2, 3]));
        assert_eq!(ok("\u{feff}{\"a\": null}"), json!({"a": null}));
        // Scalars are JSON too; the caller's schema check decides whether they are useful.
        assert_eq!(ok("42"), json!(42));
    }

    #[test]
    fn json_in_code_fences() {
        assert_eq!(ok("```json\n{\"a\": 1}\n```"), json!({"a": 1}));
        assert_eq!(ok("```JSON\n{\"a\": 1}\n```"), json!({"a": 1}));
        assert_eq!(ok("```\n[\"x\"]\n```"), json!(["x"]));
        assert_eq!(
            ok("Here you go:\n\n```json\n{\"a\": {\"b\": [1, 2]}}\n```\n\nHope this helps!"),
            json!({"a": {"b": [1, 2]}})
        );
        assert_eq!(ok("```json{\"a\": 1}```"), json!({"a": 1}));
        assert_eq!(ok("```{\"a\": 1}```"), json!({"a": 1}));
        // A first fence with prose in it does not hide the second with the answer.
        assert_eq!(ok("```text\nnot json\n```\n```json\n{\"a\": 2}\n```"), json!({"a": 2}));
        // Cut off by the token limit before the closing fence, but the JSON itself is complete.
        assert_eq!(ok("```json\n{\"a\": 3}\n"), json!({"a": 3}));
    }

    #[test]
    fn json_surrounded_by_prose() {
        assert_eq!(
            ok("Sure! The classification is {\"category\": \"refund\", \"urgent\": true}. Let me know."),
            json!({"category": "refund", "urgent": true})
        );
        assert_eq!(ok("The ids are [3, 4] as requested."), json!([3, 4]));
        // Braces and quotes inside strings are not structure.
        assert_eq!(
            ok(r#"Result: {"reply": "Use {braces} and ] and \"quotes\" freely", "n": 1} done"#),
            json!({"reply": "Use {braces} and ] and \"quotes\" freely", "n": 1})
        );
        // Brace-like prose before the value is skipped.
        assert_eq!(ok("Note {this is not json} and :-{ then {\"a\": 1}"), json!({"a": 1}));
        assert_eq!(ok("Mismatched ( [ } then {\"b\": 2}"), json!({"b": 2}));
    }

    #[test]
    fn trailing_commas_are_rejected() {
        for text in [
            r#"{"a": 1,}"#,
            "[1, 2,]",
            "```json\n{\"a\": [1, 2], }\n```",
            r#"The answer: {"a": [1, 2],} ok"#,
            r#"{"a": {"b": 1,}}"#,
        ] {
            let error = extract_json(text).expect_err(text);
            assert!(error.contains("no valid JSON"), "{error}");
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for text in ["", "   ", "I cannot help with that.", "{\"a\": 1", "{'a': 1}", "```json\n```", "{a: 1}", "]["] {
            assert!(extract_json(text).is_err(), "{text:?} should not parse");
        }
        let error = extract_json(&"x".repeat(1000)).expect_err("garbage");
        assert!(error.len() < 400, "long answers are quoted briefly: {error}");
    }

    #[test]
    fn schema_instruction_mentions_json_and_the_schema() {
        let schema = json!({"type": "object", "properties": {"category": {"type": "string"}}});
        let system = system_with_schema("Classify the email.", &schema);
        assert!(system.starts_with("Classify the email.\n\n"), "{system}");
        assert!(system.contains("JSON"), "{system}");
        assert!(system.contains("\"category\""), "{system}");
        assert!(system_with_schema("", &schema).starts_with("Answer with only a JSON object"));
    }
}
