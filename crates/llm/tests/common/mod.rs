//! What the integration tests of the providers and the chain share: providers pointed at a
//! local fake server, a request, a schema, and the documented success bodies of each API
//! (with the usage object each one reports).

use std::time::Duration;

use llm::{AnthropicProvider, GeminiProvider, GenerateRequest, OpenAiProvider, ProviderSettings};
use mailroom_tests::fake_http::FakeServer;
use secrecy::SecretString;
use serde_json::{Value, json};

pub(crate) const KEY: &str = "sk-test-0123456789abcdef";
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn settings(base_url: &str, key: &str, model: &str) -> ProviderSettings {
    ProviderSettings {
        base_url: base_url.to_owned(),
        api_key: SecretString::from(key.to_owned()),
        model: model.to_owned(),
    }
}

pub(crate) fn gemini(server: &FakeServer) -> GeminiProvider {
    GeminiProvider::new(&settings(&format!("{}/v1beta", server.base), KEY, "gemini-2.0-flash"), TIMEOUT)
}

pub(crate) fn anthropic(server: &FakeServer) -> AnthropicProvider {
    AnthropicProvider::new(&settings(&format!("{}/v1", server.base), KEY, "claude-sonnet-4-20250514"), TIMEOUT)
}

pub(crate) fn openai(server: &FakeServer) -> OpenAiProvider {
    OpenAiProvider::new("openai", &settings(&format!("{}/v1", server.base), KEY, "gpt-4o-mini"), TIMEOUT)
}

pub(crate) fn request() -> GenerateRequest {
    GenerateRequest {
        system: "You classify customer support emails.".to_owned(),
        user: "<email>My invoice is wrong.</email>".to_owned(),
        max_tokens: 256,
        temperature: 0.2,
    }
}

pub(crate) fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "category": {"type": "string", "enum": ["billing", "technical", "other"], "description": "Topic"},
            "confidence": {"type": "number"}
        },
        "required": ["category", "confidence"]
    })
}

// Success bodies, as documented.

pub(crate) fn gemini_text(parts: &[&str]) -> Value {
    let parts: Vec<Value> = parts.iter().map(|t| json!({"text": t})).collect();
    json!({
        "candidates": [{
            "content": {"parts": parts, "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17},
        "modelVersion": "gemini-2.0-flash"
    })
}

pub(crate) fn anthropic_text(text: &str) -> Value {
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

pub(crate) fn openai_text(content: Value, finish_reason: &str) -> Value {
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
