//! Token usage: each provider reads its API's usage object from the wire (unusable answers
//! included, as they are billed too), a response without one is unknown rather than free, and
//! the chain adds the figures up per entry in its stats and in `mailroom_llm_tokens_total`.

use std::time::Duration;

use llm::chain::Entry;
use llm::metrics::SharedMetric;
use llm::{ChainOutcome, LlmError, LlmMetrics, LlmProvider, OpenAiProvider, ProviderChain, TokenStats, Usage};
use llm_fake::{FakeLlm, Reply};
use serde_json::{Value, json};

mod common;
use common::*;

fn usage(input_tokens: u64, output_tokens: u64) -> Option<Usage> {
    Some(Usage { input_tokens, output_tokens })
}

/// The usage an unusable answer carried.
fn invalid_usage(error: &LlmError) -> Option<Usage> {
    match error {
        LlmError::InvalidOutput { usage, .. } => *usage,
        other => panic!("expected an unusable-answer error, got {other:?}"),
    }
}

/// An OpenAI-compatible answer from a server that sends no `usage` (some local servers).
fn openai_text_without_usage(content: &str) -> Value {
    let mut body = openai_text(json!(content), "stop");
    body.as_object_mut().expect("an object").remove("usage");
    body
}

#[tokio::test]
async fn gemini_reports_usage_metadata_with_thoughts_as_output() {
    let server = FakeLlm::start(|_| Reply::json(200, gemini_text(&["Hello"]))).await;
    let answer = gemini(&server).generate(&request()).await.expect("generation succeeds");
    assert_eq!((answer.value.as_str(), answer.usage), ("Hello", usage(12, 5)));

    // A thinking model bills its thoughts as output.
    let server = FakeLlm::start(|_| {
        let mut body = gemini_text(&["{\"category\": \"billing\", \"confidence\": 0.9}"]);
        body["usageMetadata"] =
            json!({"promptTokenCount": 40, "candidatesTokenCount": 11, "thoughtsTokenCount": 120, "totalTokenCount": 171});
        Reply::json(200, body)
    })
    .await;
    let answer = gemini(&server).generate_json(&request(), &schema()).await.expect("JSON generation succeeds");
    assert_eq!(answer.usage, usage(40, 131));

    // A blocked prompt is unusable, but its prompt was counted (and billed).
    let server = FakeLlm::start(|_| {
        Reply::json(
            200,
            json!({"promptFeedback": {"blockReason": "SAFETY"},
                   "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}}),
        )
    })
    .await;
    let error = gemini(&server).generate(&request()).await.expect_err("blocked");
    assert_eq!(invalid_usage(&error), usage(12, 0));
}

#[tokio::test]
async fn anthropic_reports_usage_with_the_prompt_cache_as_input() {
    let server = FakeLlm::start(|_| Reply::json(200, anthropic_text("Hello"))).await;
    let answer = anthropic(&server).generate(&request()).await.expect("generation succeeds");
    assert_eq!(answer.usage, usage(25, 9));

    let server = FakeLlm::start(|_| {
        let mut body = anthropic_text("{\"category\": \"other\", \"confidence\": 0.4}");
        body["usage"] = json!({"input_tokens": 25, "cache_creation_input_tokens": 1000,
                               "cache_read_input_tokens": 200, "output_tokens": 14});
        Reply::json(200, body)
    })
    .await;
    let answer = anthropic(&server).generate_json(&request(), &schema()).await.expect("JSON generation succeeds");
    assert_eq!(answer.usage, usage(1225, 14));

    // An answer that holds no JSON was still paid for.
    let server = FakeLlm::start(|_| Reply::json(200, anthropic_text("I cannot answer in JSON."))).await;
    let error = anthropic(&server).generate_json(&request(), &schema()).await.expect_err("no JSON");
    assert_eq!(invalid_usage(&error), usage(25, 9));
}

#[tokio::test]
async fn openai_reports_usage_and_a_server_without_it_is_unknown() {
    let server = FakeLlm::start(|_| Reply::json(200, openai_text(json!("Hello"), "stop"))).await;
    let answer = openai(&server).generate(&request()).await.expect("generation succeeds");
    assert_eq!(answer.usage, usage(20, 5));

    let server = FakeLlm::start(|_| Reply::json(200, openai_text_without_usage("Hello"))).await;
    let answer = openai(&server).generate(&request()).await.expect("generation succeeds");
    assert_eq!((answer.value.as_str(), answer.usage), ("Hello", None));

    let server = FakeLlm::start(|_| {
        let mut body = openai_text(json!("{\"category\": \"billing\", \"confidence\": 1}"), "stop");
        body["usage"] = Value::Null;
        Reply::json(200, body)
    })
    .await;
    let answer = openai(&server).generate_json(&request(), &schema()).await.expect("JSON generation succeeds");
    assert_eq!(answer.usage, None);
}

#[tokio::test]
async fn chain_stats_and_metrics_add_up_tokens_per_provider_across_calls() {
    let telemetry = pipeline_core::Telemetry::default();
    let metrics = LlmMetrics::default();
    metrics.register(&|name: &str, help: &str, metric: SharedMetric| telemetry.metrics.register(name, help, metric));

    // Gemini answers a category validation rejects, Anthropic prose without JSON (both billed,
    // both unusable), OpenAI a good verdict.
    let gemini_server =
        FakeLlm::start(|_| Reply::json(200, gemini_text(&["{\"category\": \"weather\", \"confidence\": 0.9}"]))).await;
    let anthropic_server = FakeLlm::start(|_| Reply::json(200, anthropic_text("Sorry, no JSON today."))).await;
    let openai_server = FakeLlm::start(|_| {
        Reply::json(200, openai_text(json!("{\"category\": \"billing\", \"confidence\": 0.8}"), "stop"))
    })
    .await;
    let chain = ProviderChain::new(
        vec![
            Entry::Remote(Box::new(gemini(&gemini_server))),
            Entry::Remote(Box::new(anthropic(&anthropic_server))),
            Entry::Remote(Box::new(openai(&openai_server))),
        ],
        Duration::from_secs(60),
    )
    .with_metrics(&metrics, "classify");
    let known = |value: &Value| match value["category"].as_str() {
        Some("billing" | "technical" | "other") => Ok(()),
        other => Err(format!("unknown category {other:?}")),
    };
    for _ in 0..3 {
        let outcome = chain.generate_json(&request(), &schema(), &known).await.expect("openai answers");
        assert!(matches!(outcome, ChainOutcome::Answered { ref provider, .. } if provider == "openai"), "{outcome:?}");
    }

    let stats = chain.stats();
    let tokens = |name: &str| stats.tokens_by[name];
    assert_eq!(tokens("gemini"), TokenStats { input_tokens: 36, output_tokens: 15, reported: 3, unreported: 0 });
    assert_eq!(tokens("anthropic"), TokenStats { input_tokens: 75, output_tokens: 27, reported: 3, unreported: 0 });
    assert_eq!(tokens("openai"), TokenStats { input_tokens: 60, output_tokens: 15, reported: 3, unreported: 0 });
    assert_eq!((stats.failures_by["gemini"], stats.failures_by["anthropic"], stats.answered_by["openai"]), (3, 3, 3));

    // A local server that sends no usage, then fails: its tokens are unknown, not zero; the
    // failed request adds nothing; `local` spends none.
    let ollama_server = FakeLlm::sequence(|n| {
        if n == 0 {
            Reply::json(200, openai_text_without_usage("Hello"))
        } else {
            Reply::json(503, json!({"error": "model is loading"}))
        }
    })
    .await;
    let ollama = OpenAiProvider::new("ollama", &settings(&format!("{}/v1", ollama_server.base), "", "llama3"), TIMEOUT);
    let local_chain = ProviderChain::new(vec![Entry::Remote(Box::new(ollama)), Entry::Local], Duration::from_secs(60))
        .with_metrics(&metrics, "generate");
    let answered = ChainOutcome::Answered { value: "Hello".to_owned(), provider: "ollama".to_owned() };
    assert_eq!(local_chain.generate(&request()).await.expect("ollama answers"), answered);
    assert_eq!(local_chain.generate(&request()).await.expect("local takes over"), ChainOutcome::UseLocal);
    let stats = local_chain.stats();
    let ollama = stats.tokens_by["ollama"];
    assert_eq!((ollama.input(), ollama.output(), ollama.reported, ollama.unreported), (None, None, 0, 1));
    let local = stats.tokens_by["local"];
    assert_eq!((local.input(), local.output()), (Some(0), Some(0)));
    assert_eq!((stats.answered_by["ollama"], stats.failures_by["ollama"], stats.answered_by["local"]), (1, 1, 1));

    let text = telemetry.metrics.encode();
    let lines: Vec<&str> = text.lines().collect();
    for expected in [
        "# TYPE mailroom_llm_tokens counter",
        r#"mailroom_llm_tokens_total{provider="gemini",operation="classify",direction="input"} 36"#,
        r#"mailroom_llm_tokens_total{provider="gemini",operation="classify",direction="output"} 15"#,
        r#"mailroom_llm_tokens_total{provider="anthropic",operation="classify",direction="input"} 75"#,
        r#"mailroom_llm_tokens_total{provider="anthropic",operation="classify",direction="output"} 27"#,
        r#"mailroom_llm_tokens_total{provider="openai",operation="classify",direction="input"} 60"#,
        r#"mailroom_llm_tokens_total{provider="openai",operation="classify",direction="output"} 15"#,
    ] {
        assert!(lines.contains(&expected), "missing {expected:?} in:\n{text}");
    }
    // Unknown usage is not reported as zero, and `local` is no provider request.
    assert!(!text.contains(r#"mailroom_llm_tokens_total{provider="ollama""#), "{text}");
    assert!(!text.contains(r#"mailroom_llm_tokens_total{provider="local""#), "{text}");
}
