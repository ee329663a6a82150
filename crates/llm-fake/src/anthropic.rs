//! Anthropic's documented bodies (Messages API, Models API, and its error envelope).

use serde_json::{Value, json};

/// A Messages API answer with one text block, with its `usage` (25 input, 9 output tokens).
pub fn text(text: &str) -> Value {
    json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 25, "output_tokens": 9}
    })
}

/// Anthropic's error envelope: `kind` is e.g. `rate_limit_error`, `overloaded_error`,
/// `authentication_error`, `not_found_error`, `invalid_request_error`.
pub fn error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// The Models API's object of a served model (`GET /v1/models/{model}`).
pub fn model(model: &str) -> Value {
    json!({"type": "model", "id": model, "display_name": model, "created_at": "2025-05-14T00:00:00Z"})
}
