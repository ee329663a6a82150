//! What the integration tests of the providers and the chain share: providers pointed at the
//! LLM fake, a request, a schema, and (from the fake) the documented success bodies of each
//! API (with the usage object each one reports).

use std::time::Duration;

use llm::{AnthropicProvider, GeminiProvider, GenerateRequest, OpenAiProvider, ProviderSettings};
use llm_fake::FakeLlm;
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

pub(crate) fn gemini(server: &FakeLlm) -> GeminiProvider {
    GeminiProvider::new(&settings(&server.gemini_url(), KEY, "gemini-2.0-flash"), TIMEOUT)
}

pub(crate) fn anthropic(server: &FakeLlm) -> AnthropicProvider {
    AnthropicProvider::new(&settings(&server.anthropic_url(), KEY, "claude-sonnet-4-20250514"), TIMEOUT)
}

pub(crate) fn openai(server: &FakeLlm) -> OpenAiProvider {
    OpenAiProvider::new("openai", &settings(&server.openai_url(), KEY, "gpt-4o-mini"), TIMEOUT)
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

// Success bodies, as documented: the LLM fake's.
pub(crate) use llm_fake::anthropic::text as anthropic_text;
pub(crate) use llm_fake::gemini::text as gemini_text;
pub(crate) use llm_fake::openai::completion as openai_text;
