//! OpenAI's documented bodies (chat completions, the model list, and its error envelope), which
//! OpenAI-compatible servers (vLLM, Ollama, LiteLLM…) reproduce.

use serde_json::{Value, json};

/// A chat completion whose one choice has `content` (a string, or `null`) and `finish_reason`,
/// with its `usage` (20 prompt, 5 completion tokens).
pub fn completion(content: Value, finish_reason: &str) -> Value {
    json!({
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": null},
            "logprobs": null,
            "finish_reason": finish_reason
        }],
        "usage": {"prompt_tokens": 20, "completion_tokens": 5, "total_tokens": 25}
    })
}

/// OpenAI's error envelope: `kind` is e.g. `invalid_request_error`, `server_error`,
/// `insufficient_quota`, `requests`; `code` e.g. `rate_limit_exceeded`, `invalid_api_key`.
pub fn error(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

/// The model list (`GET /v1/models`) with `ids`.
pub fn models(ids: &[&str]) -> Value {
    let data: Vec<Value> = ids
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 1_764_806_400u64, "owned_by": "openai"}))
        .collect();
    json!({"object": "list", "data": data})
}
