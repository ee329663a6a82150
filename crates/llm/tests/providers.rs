//! The providers and the failover chain against local fake servers that reproduce the
//! documented Gemini, Anthropic and OpenAI wire formats (success and error bodies), recording
//! every request so the tests check exactly what was sent.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::http::Method;
use llm::chain::{Entry, UnknownProvider};
use llm::metrics::SharedMetric;
use llm::{
    AnthropicProvider, ChainError, ChainOutcome, GeminiProvider, GenerateRequest, LlmError, LlmMetrics, LlmProvider,
    LlmSettings, OpenAiProvider, ProviderChain,
};
use llm_fake::anthropic::error as anthropic_error;
use llm_fake::gemini::{error as gemini_error, quota_429 as gemini_429};
use llm_fake::openai::error as openai_error;
use llm_fake::{FakeLlm, Reply};
use serde_json::{Value, json};

mod common;
use common::*;

// ---------------------------------------------------------------- helpers

fn assert_key_hidden(error: &LlmError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(KEY), "API key leaked: {shown}");
}

fn expect_transient(error: &LlmError) -> (Option<u16>, &str, Option<Duration>) {
    match error {
        LlmError::Transient { status, message, retry_after, .. } => (*status, message, *retry_after),
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn expect_quota(error: &LlmError) -> (Option<u16>, &str) {
    match error {
        LlmError::QuotaExhausted { status, message, .. } => (*status, message),
        other => panic!("expected quota exhaustion, got {other:?}"),
    }
}

fn expect_permanent(error: &LlmError) -> (Option<u16>, &str) {
    match error {
        LlmError::Permanent { status, message, .. } => (*status, message),
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn expect_misconfigured(error: &LlmError) -> (Option<u16>, &str) {
    match error {
        LlmError::Misconfigured { status, message, .. } => (*status, message),
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

fn expect_invalid(error: &LlmError) -> &str {
    match error {
        LlmError::InvalidOutput { message, .. } => message,
        other => panic!("expected an unusable-answer error, got {other:?}"),
    }
}

/// Calls `provider` once against a server that always answers `reply()`; checks that exactly
/// one request was made and that the key is not in the error.
async fn error_for<P: LlmProvider>(
    make: impl Fn(&FakeLlm) -> P,
    reply: impl Fn() -> Reply + Send + Sync + 'static,
) -> LlmError {
    let server = FakeLlm::start(move |_| reply()).await;
    let error = make(&server).generate(&request()).await.expect_err("the server answered with an error");
    assert_eq!(server.count(), 1, "errors must not be retried inside the provider");
    assert_key_hidden(&error);
    error
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    listener.local_addr().expect("bound socket has an address").port()
}

// ---------------------------------------------------------------- Gemini wire format

#[tokio::test]
async fn gemini_sends_the_documented_request_and_concatenates_parts() {
    let server = FakeLlm::start(|_| Reply::json(200, gemini_text(&["Hello, ", "world."]))).await;
    let provider = gemini(&server);
    assert_eq!(provider.name(), "gemini");

    let text = provider.generate(&request()).await.expect("generation succeeds").value;

    assert_eq!(text, "Hello, world.");
    let sent = server.only_request();
    assert_eq!(sent.method, Method::POST);
    assert_eq!(sent.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(sent.query, None, "the key must never travel in the URL");
    assert_eq!(sent.header("x-goog-api-key"), Some(KEY));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.body,
        json!({
            "systemInstruction": {"parts": [{"text": "You classify customer support emails."}]},
            "contents": [{"role": "user", "parts": [{"text": "<email>My invoice is wrong.</email>"}]}],
            "generationConfig": {"maxOutputTokens": 256, "temperature": 0.2}
        })
    );
}

#[tokio::test]
async fn gemini_json_mode_sends_a_converted_response_schema() {
    let server =
        FakeLlm::start(|_| Reply::json(200, gemini_text(&["{\"category\": \"billing\", ", "\"confidence\": 0.9}"])))
            .await;
    // A `models/` prefix on the configured model is tolerated.
    let provider =
        GeminiProvider::new(&settings(&format!("{}/v1beta/", server.base), KEY, "models/gemini-2.5-pro"), TIMEOUT);

    let value = provider.generate_json(&request(), &schema()).await.expect("JSON generation succeeds").value;

    assert_eq!(value, json!({"category": "billing", "confidence": 0.9}));
    let sent = server.only_request();
    assert_eq!(sent.path, "/v1beta/models/gemini-2.5-pro:generateContent");
    assert_eq!(
        sent.body["generationConfig"],
        json!({
            "maxOutputTokens": 256,
            "temperature": 0.2,
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "OBJECT",
                "properties": {
                    "category": {"type": "STRING", "enum": ["billing", "technical", "other"], "description": "Topic"},
                    "confidence": {"type": "NUMBER"}
                },
                "required": ["category", "confidence"]
            }
        })
    );
    // The instructions stay where they were; the schema travels natively, not in the prompt.
    assert_eq!(sent.body["systemInstruction"], json!({"parts": [{"text": "You classify customer support emails."}]}));
}

#[tokio::test]
async fn gemini_429_with_retry_info_is_transient_even_though_it_mentions_billing() {
    let error =
        error_for(gemini, || Reply::json(429, gemini_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")))
            .await;
    let (status, message, retry_after) = expect_transient(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("exceeded your current quota") && message.contains("RESOURCE_EXHAUSTED"), "{message}");
    assert_eq!(retry_after, Some(Duration::from_secs(37)));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(37)));
}

#[tokio::test]
async fn gemini_429_without_retry_info_uses_the_retry_after_header() {
    let error = error_for(gemini, || {
        Reply::json(429, gemini_error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted", json!([])))
            .header("retry-after", "12")
    })
    .await;
    assert_eq!(expect_transient(&error).2, Some(Duration::from_secs(12)));
}

#[tokio::test]
async fn gemini_429_per_day_quota_is_exhausted() {
    let error =
        error_for(gemini, || Reply::json(429, gemini_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier"))).await;
    let (status, message) = expect_quota(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("GenerateRequestsPerDayPerProjectPerModel-FreeTier"), "{message}");
    assert_eq!(error.retry_after(), None, "a daily quota does not clear in 37s");
}

#[tokio::test]
async fn gemini_429_spending_cap_is_exhausted() {
    let error = error_for(gemini, || {
        Reply::json(
            429,
            gemini_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Your project has exceeded its monthly spending cap. Please go to AI Studio to manage your spend cap.",
                json!([]),
            ),
        )
    })
    .await;
    assert_eq!(expect_quota(&error).0, Some(429));
}

#[tokio::test]
async fn gemini_5xx_is_transient() {
    for (status, rpc) in [(500, "INTERNAL"), (503, "UNAVAILABLE"), (504, "DEADLINE_EXCEEDED")] {
        let error = error_for(gemini, move || {
            Reply::json(
                status,
                gemini_error(status, rpc, "The model is overloaded. Please try again later.", json!([])),
            )
        })
        .await;
        let (got, message, retry_after) = expect_transient(&error);
        assert_eq!(got, Some(status));
        assert!(message.contains("overloaded") && message.contains(rpc), "{message}");
        assert_eq!(retry_after, None);
    }
}

#[tokio::test]
async fn gemini_4xx_is_permanent_or_misconfiguration_and_never_shows_the_key() {
    let cases = [
        (400, "INVALID_ARGUMENT", format!("API key not valid. Please pass a valid API key: {KEY}")),
        (400, "FAILED_PRECONDITION", "User location is not supported for the API use.".to_owned()),
        (401, "UNAUTHENTICATED", "Request had invalid authentication credentials.".to_owned()),
        (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.".to_owned()),
        (404, "NOT_FOUND", "models/gemini-9 is not found for API version v1beta.".to_owned()),
    ];
    for (status, rpc, message) in cases {
        let error =
            error_for(gemini, move || Reply::json(status, gemini_error(status, rpc, &message, json!([])))).await;
        // A wrong key (even as a 400), a permission and a retired model fail every request.
        let configuration = status != 400 || rpc == "INVALID_ARGUMENT";
        let (got, shown) = if configuration { expect_misconfigured(&error) } else { expect_permanent(&error) };
        assert_eq!(got, Some(status));
        assert!(shown.contains(rpc), "{shown}");
        if status == 400 && rpc == "INVALID_ARGUMENT" {
            assert!(shown.contains("valid API key: [REDACTED]"), "{shown}");
        }
    }
}

#[tokio::test]
async fn gemini_blocked_prompt_and_safety_stop_are_unusable_answers() {
    let blocked = json!({
        "promptFeedback": {
            "blockReason": "PROHIBITED_CONTENT",
            "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]
        },
        "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12},
        "modelVersion": "gemini-2.0-flash"
    });
    let error = error_for(gemini, move || Reply::json(200, blocked.clone())).await;
    assert!(expect_invalid(&error).contains("PROHIBITED_CONTENT"), "{error}");

    let stopped = json!({
        "candidates": [{"content": {"role": "model"}, "finishReason": "SAFETY", "index": 0}],
        "modelVersion": "gemini-2.0-flash"
    });
    let error = error_for(gemini, move || Reply::json(200, stopped.clone())).await;
    assert!(expect_invalid(&error).contains("SAFETY"), "{error}");

    let recitation = json!({"candidates": [{"content": {"parts": [{"text": ""}]}, "finishReason": "RECITATION"}]});
    let error = error_for(gemini, move || Reply::json(200, recitation.clone())).await;
    assert!(expect_invalid(&error).contains("RECITATION"), "{error}");
}

// ---------------------------------------------------------------- Anthropic wire format

#[tokio::test]
async fn anthropic_sends_the_documented_request() {
    let server = FakeLlm::start(|_| {
        let mut body = anthropic_text("Hello");
        // Several text blocks (and non-text blocks) are concatenated text-only.
        body["content"] = json!([
            {"type": "thinking", "thinking": "hmm", "signature": "x"},
            {"type": "text", "text": "Hello"},
            {"type": "text", "text": ", world"}
        ]);
        Reply::json(200, body)
    })
    .await;
    let provider = anthropic(&server);
    assert_eq!(provider.name(), "anthropic");

    let text = provider.generate(&request()).await.expect("generation succeeds").value;

    assert_eq!(text, "Hello, world");
    let sent = server.only_request();
    assert_eq!(sent.method, Method::POST);
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert!(sent.header("authorization").is_none(), "{:?}", sent.headers);
    assert_eq!(
        sent.body,
        json!({
            "model": "claude-sonnet-4-20250514",
            "max_tokens": 256,
            "temperature": 0.2,
            "system": "You classify customer support emails.",
            "messages": [{"role": "user", "content": "<email>My invoice is wrong.</email>"}]
        })
    );
}

#[tokio::test]
async fn anthropic_json_puts_the_schema_in_the_system_prompt_and_parses_fences_and_prose() {
    let answers = [
        "```json\n{\"category\": \"billing\", \"confidence\": 0.8}\n```",
        "Here is the classification: {\"category\": \"technical\", \"confidence\": 0.6} — hope it helps.",
    ];
    let server = FakeLlm::sequence(move |n| Reply::json(200, anthropic_text(answers[n % 2]))).await;
    let provider = anthropic(&server);

    let first = provider.generate_json(&request(), &schema()).await.expect("fenced JSON parses").value;
    let second = provider.generate_json(&request(), &schema()).await.expect("JSON in prose parses").value;

    assert_eq!(first, json!({"category": "billing", "confidence": 0.8}));
    assert_eq!(second, json!({"category": "technical", "confidence": 0.6}));
    let sent = &server.requests()[0];
    let system = sent.body["system"].as_str().expect("system is a string");
    assert!(system.starts_with("You classify customer support emails.\n\n"), "{system}");
    assert!(system.contains("only a JSON object"), "{system}");
    assert!(system.contains("\"additionalProperties\": false"), "the schema is included verbatim: {system}");
    assert_eq!(sent.body["messages"], json!([{"role": "user", "content": "<email>My invoice is wrong.</email>"}]));
}

#[tokio::test]
async fn anthropic_answer_without_json_is_unusable() {
    let server = FakeLlm::start(|_| Reply::json(200, anthropic_text("I'm sorry, I can't classify this."))).await;
    let error = anthropic(&server).generate_json(&request(), &schema()).await.expect_err("no JSON in the answer");
    assert!(expect_invalid(&error).contains("no valid JSON"), "{error}");
    // A trailing comma is not repaired.
    let server = FakeLlm::start(|_| Reply::json(200, anthropic_text("{\"category\": \"billing\",}"))).await;
    let error = anthropic(&server).generate_json(&request(), &schema()).await.expect_err("trailing comma");
    expect_invalid(&error);
}

#[tokio::test]
async fn anthropic_429_honours_retry_after() {
    let error = error_for(anthropic, || {
        Reply::json(
            429,
            anthropic_error(
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit; please try again later.",
            ),
        )
        .header("retry-after", "7")
    })
    .await;
    let (status, message, retry_after) = expect_transient(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("per-minute rate limit") && message.contains("rate_limit_error"), "{message}");
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn anthropic_overloaded_and_api_errors_are_transient() {
    for (status, kind) in [(529, "overloaded_error"), (500, "api_error")] {
        let error = error_for(anthropic, move || Reply::json(status, anthropic_error(kind, "Overloaded"))).await;
        let (got, message, _) = expect_transient(&error);
        assert_eq!(got, Some(status));
        assert!(message.contains(kind), "{message}");
    }
}

#[tokio::test]
async fn anthropic_client_errors_are_permanent_or_misconfiguration_except_credit_exhaustion() {
    let cases = [
        (400, "invalid_request_error", "messages: text content blocks must be non-empty".to_owned()),
        (401, "authentication_error", format!("invalid x-api-key {KEY}")),
        (403, "permission_error", "Your API key does not have permission to use the specified resource.".to_owned()),
        (404, "not_found_error", "model: claude-9".to_owned()),
    ];
    for (status, kind, message) in cases {
        let error = error_for(anthropic, move || Reply::json(status, anthropic_error(kind, &message))).await;
        let (got, shown) = if status == 400 { expect_permanent(&error) } else { expect_misconfigured(&error) };
        assert_eq!(got, Some(status));
        assert!(shown.contains(kind), "{shown}");
        if status == 401 {
            assert!(shown.contains("invalid x-api-key [REDACTED]"), "{shown}");
        }
    }

    let error = error_for(anthropic, || {
        Reply::json(
            400,
            anthropic_error(
                "invalid_request_error",
                "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade \
                 or purchase credits.",
            ),
        )
    })
    .await;
    let (status, message) = expect_quota(&error);
    assert_eq!(status, Some(400));
    assert!(message.contains("credit balance is too low"), "{message}");
}

// ---------------------------------------------------------------- OpenAI wire format

#[tokio::test]
async fn openai_sends_the_documented_request() {
    let server = FakeLlm::start(|_| Reply::json(200, openai_text(json!("Hello there"), "stop"))).await;
    let provider = openai(&server);
    assert_eq!(provider.name(), "openai");

    let text = provider.generate(&request()).await.expect("generation succeeds").value;

    assert_eq!(text, "Hello there");
    let sent = server.only_request();
    assert_eq!(sent.method, Method::POST);
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(sent.header("content-type"), Some("application/json"));
    assert_eq!(
        sent.body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You classify customer support emails."},
                {"role": "user", "content": "<email>My invoice is wrong.</email>"}
            ],
            "max_tokens": 256,
            "temperature": 0.2
        })
    );
}

#[tokio::test]
async fn openai_compatible_server_without_key_gets_no_authorization_and_keeps_its_name() {
    let server = FakeLlm::start(|_| Reply::json(200, openai_text(json!("hi"), "stop"))).await;
    let provider = OpenAiProvider::new("ollama", &settings(&format!("{}/v1", server.base), "", "llama3.2"), TIMEOUT);
    assert_eq!(provider.name(), "ollama");
    assert_eq!(provider.generate(&request()).await.expect("generation succeeds").value, "hi");
    let sent = server.only_request();
    assert!(sent.header("authorization").is_none(), "no key, no Authorization header: {:?}", sent.headers);
    assert_eq!(sent.body["model"], "llama3.2");
}

#[tokio::test]
async fn openai_json_mode_uses_json_object_and_mentions_json() {
    let server = FakeLlm::start(|_| {
        Reply::json(200, openai_text(json!("{\"category\": \"other\", \"confidence\": 0.4}"), "stop"))
    })
    .await;

    let value = openai(&server).generate_json(&request(), &schema()).await.expect("JSON generation succeeds").value;

    assert_eq!(value, json!({"category": "other", "confidence": 0.4}));
    let sent = server.only_request();
    assert_eq!(sent.body["response_format"], json!({"type": "json_object"}));
    assert_eq!(sent.body["max_tokens"], 256);
    let system = sent.body["messages"][0]["content"].as_str().expect("system message");
    assert_eq!(sent.body["messages"][0]["role"], "system");
    assert!(system.starts_with("You classify customer support emails."), "{system}");
    assert!(system.contains("JSON"), "OpenAI requires the word JSON in the messages: {system}");
    assert!(system.contains("\"category\""), "the schema is included: {system}");
    assert_eq!(sent.body["messages"][1], json!({"role": "user", "content": "<email>My invoice is wrong.</email>"}));
}

#[tokio::test]
async fn openai_429_honours_retry_after_and_retry_after_ms() {
    let rate_limited = || {
        Reply::json(429, openai_error("Rate limit reached for gpt-4o-mini", "requests", Some("rate_limit_exceeded")))
    };
    let error = error_for(openai, move || rate_limited().header("retry-after", "7")).await;
    let (status, message, retry_after) = expect_transient(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("Rate limit reached"), "{message}");
    assert_eq!(retry_after, Some(Duration::from_secs(7)));

    let error =
        error_for(openai, move || rate_limited().header("retry-after", "7").header("retry-after-ms", "1500")).await;
    assert_eq!(expect_transient(&error).2, Some(Duration::from_millis(1500)));
}

#[tokio::test]
async fn openai_insufficient_quota_is_exhausted() {
    let error = error_for(openai, || {
        Reply::json(
            429,
            openai_error(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
        )
        .header("retry-after", "20")
    })
    .await;
    let (status, message) = expect_quota(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("exceeded your current quota"), "{message}");
    assert_eq!(error.retry_after(), None);
}

#[tokio::test]
async fn openai_5xx_is_transient_and_4xx_a_wrong_key() {
    for status in [500, 502, 503, 504] {
        let error = error_for(openai, move || {
            Reply::json(
                status,
                openai_error("The server had an error while processing your request.", "server_error", None),
            )
        })
        .await;
        assert_eq!(expect_transient(&error).0, Some(status));
    }
    for status in [400, 401, 403, 404, 422] {
        let error = error_for(openai, move || {
            Reply::json(
                status,
                openai_error(
                    &format!("Incorrect API key provided: {KEY}."),
                    "invalid_request_error",
                    Some("invalid_api_key"),
                ),
            )
        })
        .await;
        let (got, message) = expect_misconfigured(&error);
        assert_eq!(got, Some(status));
        assert!(message.contains("Incorrect API key provided: [REDACTED]") && message.contains("invalid_api_key"));
    }
}

#[tokio::test]
async fn openai_null_empty_or_filtered_content_is_unusable() {
    for (content, finish_reason, expected) in [
        (Value::Null, "stop", "no content"),
        (json!(""), "length", "finish_reason length"),
        (json!("partial"), "content_filter", "content_filter"),
    ] {
        let body = openai_text(content, finish_reason);
        let error = error_for(openai, move || Reply::json(200, body.clone())).await;
        assert!(expect_invalid(&error).contains(expected), "{error}");
    }
}

// ---------------------------------------------------------------- transport

#[tokio::test]
async fn connection_failures_and_timeouts_are_transient() {
    let dead = settings(&format!("http://127.0.0.1:{}/v1", closed_port()), KEY, "m");
    let providers: Vec<Box<dyn LlmProvider>> = vec![
        Box::new(GeminiProvider::new(&dead, TIMEOUT)),
        Box::new(AnthropicProvider::new(&dead, TIMEOUT)),
        Box::new(OpenAiProvider::new("openai", &dead, TIMEOUT)),
    ];
    for provider in providers {
        let error = provider.generate(&request()).await.expect_err("nothing listens");
        let (status, _, _) = expect_transient(&error);
        assert_eq!(status, None);
        assert_eq!(error.provider(), provider.name());
        assert_key_hidden(&error);
    }

    let server =
        FakeLlm::start(|_| Reply::json(200, openai_text(json!("late"), "stop")).delayed(Duration::from_secs(5))).await;
    let slow = OpenAiProvider::new("openai", &settings(&server.base, KEY, "m"), Duration::from_millis(200));
    let error = slow.generate(&request()).await.expect_err("the server is too slow");
    assert!(expect_transient(&error).1.contains("timed out"), "{error}");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let server = FakeLlm::start(|_| Reply::json(307, json!({})).header("location", "http://evil.example/steal")).await;
    let error = anthropic(&server).generate(&request()).await.expect_err("a redirect is an error");
    let (status, message) = expect_misconfigured(&error);
    assert_eq!(status, Some(307));
    assert!(message.contains("http://evil.example/steal") && message.contains("base_url"), "{message}");
    assert_eq!(server.count(), 1, "the redirect must not be followed");
}

#[tokio::test]
async fn debug_output_never_shows_the_key() {
    let config = settings("http://127.0.0.1:1", KEY, "m");
    let shown = format!(
        "{:?} {:?} {:?} {:?}",
        GeminiProvider::new(&config, TIMEOUT),
        AnthropicProvider::new(&config, TIMEOUT),
        OpenAiProvider::new("openai", &config, TIMEOUT),
        config
    );
    assert!(!shown.contains(KEY), "{shown}");
}

// ---------------------------------------------------------------- chain

fn accept_all(_: &Value) -> Result<(), String> {
    Ok(())
}

#[tokio::test]
async fn chain_fails_over_cools_down_and_comes_back() {
    // Gemini is rate limited once (retry in 0.4s), then healthy.
    let gemini_server = FakeLlm::sequence(|n| {
        if n == 0 {
            let mut body = gemini_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier");
            body["error"]["details"][2]["retryDelay"] = json!("0.4s");
            Reply::json(429, body)
        } else {
            Reply::json(200, gemini_text(&["from gemini"]))
        }
    })
    .await;
    let anthropic_server = FakeLlm::start(|_| Reply::json(200, anthropic_text("from anthropic"))).await;
    let chain = ProviderChain::new(
        vec![Entry::Remote(Box::new(gemini(&gemini_server))), Entry::Remote(Box::new(anthropic(&anthropic_server)))],
        Duration::from_millis(100),
    );
    assert_eq!(chain.names(), ["gemini", "anthropic"]);

    let outcome = chain.generate(&request()).await.expect("the second provider answers");
    assert_eq!(
        outcome,
        ChainOutcome::Answered { value: "from anthropic".to_owned(), provider: "anthropic".to_owned() }
    );
    assert_eq!((gemini_server.count(), anthropic_server.count()), (1, 1));

    // Cooling down for max(0.1s, 0.4s): Gemini is not even asked.
    let outcome = chain.generate(&request()).await.expect("the second provider answers again");
    assert_eq!(
        outcome,
        ChainOutcome::Answered { value: "from anthropic".to_owned(), provider: "anthropic".to_owned() }
    );
    assert_eq!((gemini_server.count(), anthropic_server.count()), (1, 2));

    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = chain.generate(&request()).await.expect("the first provider is back");
    assert_eq!(outcome, ChainOutcome::Answered { value: "from gemini".to_owned(), provider: "gemini".to_owned() });
    assert_eq!((gemini_server.count(), anthropic_server.count()), (2, 2));

    let stats = chain.stats();
    assert_eq!(stats.answered_by, HashMap::from([("gemini".to_owned(), 1), ("anthropic".to_owned(), 2)]));
    assert_eq!(stats.failures_by, HashMap::from([("gemini".to_owned(), 1), ("anthropic".to_owned(), 0)]));
    assert_eq!(stats.skipped_by["gemini"], 1);
}

#[tokio::test]
async fn chain_uses_local_after_remote_failures() {
    let failing = FakeLlm::start(|_| Reply::json(503, gemini_error(503, "UNAVAILABLE", "overloaded", json!([])))).await;
    let never = FakeLlm::start(|_| Reply::json(200, openai_text(json!("unreachable"), "stop"))).await;
    let chain = ProviderChain::new(
        vec![Entry::Remote(Box::new(gemini(&failing))), Entry::Local, Entry::Remote(Box::new(openai(&never)))],
        Duration::from_secs(60),
    );
    assert_eq!(chain.names(), ["gemini", "local", "openai"]);

    assert_eq!(chain.generate(&request()).await.expect("local takes over"), ChainOutcome::UseLocal);
    let outcome = chain.generate_json(&request(), &schema(), &accept_all).await.expect("local takes over");
    assert_eq!(outcome, ChainOutcome::UseLocal);

    assert_eq!(failing.count(), 1, "cooling down after the 503");
    assert_eq!(never.count(), 0, "entries after local are never asked");
    assert_eq!(chain.stats().answered_by["local"], 2);
}

#[tokio::test]
async fn chain_all_failing_is_a_transient_quota_error() {
    let gemini_server =
        FakeLlm::start(|_| Reply::json(429, gemini_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"))).await;
    let anthropic_server =
        FakeLlm::start(|_| Reply::json(529, anthropic_error("overloaded_error", "Overloaded"))).await;
    let openai_server = FakeLlm::start(|_| {
        Reply::json(429, openai_error("Rate limit reached", "requests", Some("rate_limit_exceeded")))
            .header("retry-after", "7")
    })
    .await;
    let chain = ProviderChain::new(
        vec![
            Entry::Remote(Box::new(gemini(&gemini_server))),
            Entry::Remote(Box::new(anthropic(&anthropic_server))),
            Entry::Remote(Box::new(openai(&openai_server))),
        ],
        Duration::from_secs(1),
    );

    let error = chain.generate(&request()).await.expect_err("nobody answers");
    assert!(matches!(error, ChainError::AllFailed { .. }), "{error:?}");
    assert_eq!(error.error_type(), "QuotaExceededError");
    assert!(error.is_transient());
    assert!(error.to_string().starts_with("LLM quota exceeded for all providers"), "{error}");
    // The smallest of the providers' hints (anthropic gave none).
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
    let providers: Vec<&str> = error.errors().iter().map(LlmError::provider).collect();
    assert_eq!(providers, ["gemini", "anthropic", "openai"]);
    assert_eq!(error.errors()[0].retry_after(), Some(Duration::from_secs(37)));
    assert_eq!(error.errors()[2].retry_after(), Some(Duration::from_secs(7)));

    // Everyone cools down now (37s, 1s, 7s): the next call asks nobody and says when to retry.
    let error = chain.generate(&request()).await.expect_err("everyone cools down");
    assert_eq!(error.error_type(), "QuotaExceededError");
    assert_eq!((gemini_server.count(), anthropic_server.count(), openai_server.count()), (1, 1, 1));
    let hint = error.retry_after().expect("cool-downs give a hint");
    assert!(hint > Duration::from_millis(500) && hint <= Duration::from_secs(1), "{hint:?}");
    assert!(error.errors().iter().all(|e| e.to_string().contains("cooling down")), "{error}");
}

#[tokio::test]
async fn chain_with_every_provider_rejecting_the_request_is_permanent() {
    let anthropic_server = FakeLlm::start(|_| {
        Reply::json(400, anthropic_error("invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"))
    })
    .await;
    let openai_server = FakeLlm::start(|_| {
        Reply::json(
            400,
            openai_error(
                "This model's maximum context length is 128000 tokens.",
                "invalid_request_error",
                Some("context_length_exceeded"),
            ),
        )
    })
    .await;
    let chain = ProviderChain::new(
        vec![Entry::Remote(Box::new(anthropic(&anthropic_server))), Entry::Remote(Box::new(openai(&openai_server)))],
        Duration::from_secs(60),
    );

    let error = chain.generate(&request()).await.expect_err("both reject");
    assert!(matches!(error, ChainError::Rejected { .. }), "{error:?}");
    assert_eq!(error.error_type(), "LlmRequestRejected");
    assert!(!error.is_transient());
    assert_eq!(error.retry_after(), None);
    assert_eq!(error.errors().len(), 2);

    // A 400 is about the request, not the provider: no cool-down, the next request is sent.
    let error = chain.generate(&request()).await.expect_err("both reject again");
    assert_eq!(error.error_type(), "LlmRequestRejected");
    assert_eq!((anthropic_server.count(), openai_server.count()), (2, 2));
}

#[tokio::test]
async fn chain_cools_down_exhausted_quota_longer_and_misconfiguration_normally() {
    let openai_server = FakeLlm::start(|_| {
        Reply::json(
            429,
            openai_error("You exceeded your current quota.", "insufficient_quota", Some("insufficient_quota")),
        )
    })
    .await;
    let anthropic_server =
        FakeLlm::start(|_| Reply::json(401, anthropic_error("authentication_error", "invalid x-api-key"))).await;
    let chain = ProviderChain::new(
        vec![Entry::Remote(Box::new(openai(&openai_server))), Entry::Remote(Box::new(anthropic(&anthropic_server)))],
        Duration::from_secs(2),
    );

    let error = chain.generate(&request()).await.expect_err("nobody answers");
    assert_eq!(error.error_type(), "QuotaExceededError", "quota and a wrong key are not the request's fault");
    expect_quota(&error.errors()[0]);
    expect_misconfigured(&error.errors()[1]);

    let error = chain.generate(&request()).await.expect_err("both cool down");
    assert_eq!((openai_server.count(), anthropic_server.count()), (1, 1));
    let remaining: Vec<Duration> = error.errors().iter().map(|e| e.retry_after().expect("cool-down hint")).collect();
    assert!(
        remaining[0] > Duration::from_secs(19) && remaining[0] <= Duration::from_secs(20),
        "10× cool-down: {remaining:?}"
    );
    assert!(remaining[1] > Duration::from_secs(1) && remaining[1] <= Duration::from_secs(2), "{remaining:?}");
}

#[tokio::test]
async fn chain_moves_on_from_invalid_json_without_cooling_down() {
    let anthropic_server = FakeLlm::start(|_| Reply::json(200, anthropic_text("Sorry, I can't do JSON today."))).await;
    let openai_server = FakeLlm::start(|_| {
        Reply::json(200, openai_text(json!("{\"category\": \"billing\", \"confidence\": 0.7}"), "stop"))
    })
    .await;
    let chain = ProviderChain::new(
        vec![Entry::Remote(Box::new(anthropic(&anthropic_server))), Entry::Remote(Box::new(openai(&openai_server)))],
        Duration::from_secs(60),
    );

    for _ in 0..2 {
        let outcome = chain.generate_json(&request(), &schema(), &accept_all).await.expect("the second answers");
        assert_eq!(
            outcome,
            ChainOutcome::Answered {
                value: json!({"category": "billing", "confidence": 0.7}),
                provider: "openai".to_owned()
            }
        );
    }
    assert_eq!(anthropic_server.count(), 2, "an unusable answer does not cool the provider down");
}

#[tokio::test]
async fn chain_moves_on_when_validation_rejects_the_answer() {
    let gemini_server =
        FakeLlm::start(|_| Reply::json(200, gemini_text(&["{\"category\": \"weather\", \"confidence\": 0.9}"]))).await;
    let openai_server = FakeLlm::start(|_| {
        Reply::json(200, openai_text(json!("{\"category\": \"technical\", \"confidence\": 0.5}"), "stop"))
    })
    .await;
    let chain = ProviderChain::new(
        vec![Entry::Remote(Box::new(gemini(&gemini_server))), Entry::Remote(Box::new(openai(&openai_server)))],
        Duration::from_secs(60),
    );
    let seen = Mutex::new(Vec::new());
    let validate = |value: &Value| {
        seen.lock().expect("not poisoned").push(value.clone());
        match value["category"].as_str() {
            Some("billing" | "technical" | "other") => Ok(()),
            other => Err(format!("unknown category {other:?}")),
        }
    };

    let outcome = chain.generate_json(&request(), &schema(), &validate).await.expect("the second passes validation");

    assert_eq!(
        outcome,
        ChainOutcome::Answered {
            value: json!({"category": "technical", "confidence": 0.5}),
            provider: "openai".to_owned()
        }
    );
    assert_eq!(seen.lock().expect("not poisoned").len(), 2, "both answers were validated");
    assert_eq!(chain.stats().failures_by["gemini"], 1);

    // When no provider's answer passes, the failure is transient: another try may do better.
    let picky = |_: &Value| Err("never good enough".to_owned());
    let error = chain.generate_json(&request(), &schema(), &picky).await.expect_err("nothing passes");
    assert_eq!(error.error_type(), "QuotaExceededError");
    assert!(error.errors().iter().all(|e| expect_invalid(e).contains("never good enough")), "{error}");
}

fn llm_settings(providers: &[&str]) -> LlmSettings {
    LlmSettings {
        providers: providers.iter().map(|p| (*p).to_owned()).collect(),
        cooldown_secs: 60,
        timeout_secs: 30,
        gemini: settings("", KEY, "gemini-2.0-flash"),
        anthropic: settings("", KEY, "claude-sonnet-4-20250514"),
        openai: settings("", KEY, "gpt-4o-mini"),
    }
}

#[test]
fn chain_from_settings() {
    let chain = ProviderChain::from_settings(&llm_settings(&["gemini", " Anthropic ", "openai", "local"]))
        .expect("known providers");
    assert_eq!(chain.names(), ["gemini", "anthropic", "openai", "local"]);
    assert!(!format!("{chain:?}").contains(KEY));

    let error = ProviderChain::from_settings(&llm_settings(&["gemini", "mistral"])).expect_err("unknown provider");
    assert_eq!(error, UnknownProvider::Name { name: "mistral".to_owned() });
    assert!(error.to_string().contains("mistral"), "{error}");

    let error = ProviderChain::from_settings(&llm_settings(&[])).expect_err("empty list");
    assert_eq!(error, UnknownProvider::Empty);
}

#[tokio::test]
async fn chain_metrics_count_outcomes_skips_and_failovers_in_the_worker_registry() {
    // Registered the way the classifier and the RAG generator do: in the worker's telemetry, so
    // the lines below are what their /metrics shows.
    let telemetry = pipeline_core::Telemetry::default();
    let metrics = LlmMetrics::default();
    metrics.register(&|name: &str, help: &str, metric: SharedMetric| telemetry.metrics.register(name, help, metric));

    // Gemini is rate limited (and then cools down); Anthropic answers twice, then is overloaded.
    let gemini_server =
        FakeLlm::start(|_| Reply::json(429, gemini_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"))).await;
    let anthropic_server = FakeLlm::sequence(|n| {
        if n < 2 {
            Reply::json(200, anthropic_text("from anthropic"))
        } else {
            Reply::json(529, anthropic_error("overloaded_error", "Overloaded"))
        }
    })
    .await;
    let chain = ProviderChain::new(
        vec![
            Entry::Remote(Box::new(gemini(&gemini_server))),
            Entry::Remote(Box::new(anthropic(&anthropic_server))),
            Entry::Local,
        ],
        Duration::from_secs(60),
    )
    .with_metrics(&metrics, "generate");
    let answered = ChainOutcome::Answered { value: "from anthropic".to_owned(), provider: "anthropic".to_owned() };
    assert_eq!(chain.generate(&request()).await.expect("anthropic answers"), answered);
    assert_eq!(chain.generate(&request()).await.expect("anthropic answers again"), answered);
    assert_eq!(chain.generate(&request()).await.expect("local takes over"), ChainOutcome::UseLocal);
    assert_eq!((gemini_server.count(), anthropic_server.count()), (1, 3));

    // A second chain on the same metrics, for another operation, where nobody is left.
    let openai_server = FakeLlm::start(|_| {
        Reply::json(400, openai_error("Invalid 'max_tokens'.", "invalid_request_error", Some("invalid_value")))
    })
    .await;
    let classify = ProviderChain::new(vec![Entry::Remote(Box::new(openai(&openai_server)))], Duration::from_secs(60))
        .with_metrics(&metrics, "classify");
    let error = classify.generate_json(&request(), &schema(), &accept_all).await.expect_err("rejected");
    assert!(matches!(error, ChainError::Rejected { .. }), "{error:?}");

    let text = telemetry.metrics.encode();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "# TYPE mailroom_llm_requests counter",
        r#"mailroom_llm_requests_total{provider="gemini",operation="generate",outcome="rate_limited"} 1"#,
        r#"mailroom_llm_requests_total{provider="anthropic",operation="generate",outcome="ok"} 2"#,
        r#"mailroom_llm_requests_total{provider="anthropic",operation="generate",outcome="unavailable"} 1"#,
        r#"mailroom_llm_requests_total{provider="openai",operation="classify",outcome="rejected"} 1"#,
        "# TYPE mailroom_llm_request_duration_seconds histogram",
        r#"mailroom_llm_request_duration_seconds_count{provider="gemini",operation="generate"} 1"#,
        r#"mailroom_llm_request_duration_seconds_count{provider="anthropic",operation="generate"} 3"#,
        r#"mailroom_llm_request_duration_seconds_count{provider="openai",operation="classify"} 1"#,
        // Cooling down after the 429, Gemini was not asked by the second and third walks.
        r#"mailroom_llm_skipped_total{provider="gemini",operation="generate"} 2"#,
        "# TYPE mailroom_llm_failovers counter",
        r#"mailroom_llm_failovers_total{from="gemini",to="anthropic"} 1"#,
        r#"mailroom_llm_failovers_total{from="anthropic",to="local"} 1"#,
        r#"mailroom_llm_failovers_total{from="openai",to="none"} 1"#,
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    // A walk that went straight to a healthy provider (the second one) is no failover, and the
    // runtime's own metrics are still there beside the chain's.
    assert_eq!(lines.iter().filter(|l| l.starts_with("mailroom_llm_failovers_total{")).count(), 3, "{text}");
    assert!(text.contains("# TYPE mailroom_amqp_reconnects counter"), "{text}");
}

#[tokio::test]
async fn empty_chain_fails_transiently() {
    let chain = ProviderChain::new(Vec::new(), Duration::from_secs(1));
    let error = chain.generate(&request()).await.expect_err("nobody to ask");
    assert_eq!(error.error_type(), "QuotaExceededError");
    assert_eq!(error.retry_after(), None);
}

/// Callers spawn chain calls on a multi-threaded runtime, so the futures must be `Send`; this
/// only has to compile.
#[allow(dead_code)]
fn chain_futures_are_send(chain: &ProviderChain, request: &GenerateRequest, schema: &Value) {
    fn assert_send<T: Send>(_: T) {}
    assert_send(chain.generate(request));
    assert_send(chain.generate_json(request, schema, &accept_all));
}

#[tokio::test]
async fn a_wrong_key_or_retired_model_is_reported_until_the_provider_answers_again() {
    let telemetry = pipeline_core::Telemetry::default();
    let metrics = LlmMetrics::default();
    metrics.register(&|name: &str, help: &str, metric: SharedMetric| telemetry.metrics.register(name, help, metric));
    let health = provider_http::ProviderHealth::default();
    // A retired model first (Gemini's 404), then a wrong key, then the operator fixed it.
    let server = FakeLlm::sequence(|n| match n {
        0 => Reply::json(
            404,
            gemini_error(404, "NOT_FOUND", "models/gemini-2.0-flash is not found for API version v1beta.", json!([])),
        ),
        1 => Reply::json(
            401,
            gemini_error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.", json!([])),
        ),
        _ => Reply::json(200, gemini_text(&["fixed"])),
    })
    .await;
    // No cool-down, so each call reaches the provider.
    let chain = ProviderChain::new(vec![Entry::Remote(Box::new(gemini(&server))), Entry::Local], Duration::ZERO)
        .with_metrics(&metrics, "generate")
        .with_health(&health, "generate");

    // The walk still falls back to `local` for this email…
    assert_eq!(chain.generate(&request()).await.expect("local answers"), ChainOutcome::UseLocal);
    // …but the problem is kept, with what to fix.
    let problems = health.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!((problems[0].provider.as_str(), problems[0].operation.as_str()), ("gemini", "generate"));
    assert_eq!(problems[0].status, Some(404));
    assert!(problems[0].message.contains("models/gemini-2.0-flash is not found"), "{problems:?}");
    let shown = telemetry.metrics.encode();
    assert!(
        shown.contains(r#"mailroom_llm_provider_misconfigured{provider="gemini",operation="generate"} 1"#),
        "{shown}"
    );
    assert!(
        shown.contains(
            r#"mailroom_llm_requests_total{provider="gemini",operation="generate",outcome="misconfigured"} 1"#
        ),
        "{shown}"
    );

    assert_eq!(chain.generate(&request()).await.expect("local answers"), ChainOutcome::UseLocal);
    let problems = health.problems();
    assert_eq!((problems[0].status, problems[0].occurrences), (Some(401), 2));
    assert!(health.summary().expect("a readiness detail").contains("gemini (generate) HTTP 401"));

    let answered = ChainOutcome::Answered { value: "fixed".to_owned(), provider: "gemini".to_owned() };
    assert_eq!(chain.generate(&request()).await.expect("gemini answers"), answered);
    assert!(health.problems().is_empty(), "an answer clears the problem");
    assert!(
        telemetry
            .metrics
            .encode()
            .contains(r#"mailroom_llm_provider_misconfigured{provider="gemini",operation="generate"} 0"#)
    );
}
