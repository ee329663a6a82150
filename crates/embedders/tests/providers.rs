//! The HTTP embedders against local fake servers that reproduce the documented OpenAI and
//! Gemini wire formats (the error envelopes are the LLM fake's: the APIs share them), recording
//! every request so the tests check exactly what was sent.

use std::time::Duration;

use axum::http::Method;
use embedders::{
    EmbedError, Embedder, EmbeddingSettings, GeminiEmbedder, OpenAiEmbedder, ProviderSettings, from_settings,
};
use llm_fake::gemini::error as gemini_error;
use llm_fake::openai::error as openai_error;
use mailroom_tests::fake_http::{FakeServer, Recorded, Reply};
use secrecy::SecretString;
use serde_json::{Value, json};

const KEY: &str = "sk-test-0123456789abcdef";
const TIMEOUT: Duration = Duration::from_secs(10);

fn provider(base_url: &str, key: &str, model: &str) -> ProviderSettings {
    ProviderSettings {
        base_url: base_url.to_owned(),
        api_key: SecretString::from(key.to_owned()),
        model: model.to_owned(),
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A 4-dimensional, deliberately unnormalised vector that identifies input `i`: 3 at `i % 4`
/// and 4 at `(i + 1) % 4`, so after normalisation 0.6 and 0.8.
fn marker_vector(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; 4];
    v[i % 4] = 3.0;
    v[(i + 1) % 4] = 4.0;
    v
}

fn assert_marker(vector: &[f32], i: usize) {
    assert_eq!(vector.len(), 4);
    assert!((vector[i % 4] - 0.6).abs() < 1e-6 && (vector[(i + 1) % 4] - 0.8).abs() < 1e-6, "vector {i}: {vector:?}");
}

fn assert_key_hidden(error: &EmbedError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains(KEY), "API key leaked: {shown}");
}

/// A port nothing listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
    listener.local_addr().expect("bound socket has an address").port()
}

fn expect_transient(error: &EmbedError) -> (Option<u16>, &str, Option<Duration>) {
    match error {
        EmbedError::Transient { status, message, retry_after, .. } => (*status, message, *retry_after),
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn expect_permanent(error: &EmbedError) -> (Option<u16>, &str) {
    match error {
        EmbedError::Permanent { status, message, .. } => (*status, message),
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

// ---------------------------------------------------------------- OpenAI

/// Answers like the real API, listing the embeddings in reverse order (with correct `index`
/// values) to prove the client does not rely on array order.
fn openai_success(request: &Recorded) -> Reply {
    let inputs = request.body["input"].as_array().expect("input is an array").len();
    let data: Vec<Value> =
        (0..inputs).rev().map(|i| json!({"object": "embedding", "index": i, "embedding": marker_vector(i)})).collect();
    Reply::json(
        200,
        json!({
            "object": "list",
            "data": data,
            "model": request.body["model"],
            "usage": {"prompt_tokens": 8, "total_tokens": 8},
        }),
    )
}

async fn openai_error_for(reply: impl Fn() -> Reply + Send + Sync + 'static) -> EmbedError {
    let server = FakeServer::start(move |_| reply()).await;
    let embedder =
        OpenAiEmbedder::new(&provider(&format!("{}/v1", server.base), KEY, "text-embedding-3-small"), Some(4), TIMEOUT);
    let error = embedder.embed(&texts(&["hello"])).await.expect_err("the server answered with an error");
    assert_eq!(server.requests().len(), 1, "errors must not be retried inside the embedder");
    assert_key_hidden(&error);
    error
}

#[tokio::test]
async fn openai_sends_the_documented_request_and_orders_by_index() {
    let server = FakeServer::start(openai_success).await;
    // A trailing slash on base_url must not produce `//embeddings`.
    let settings = provider(&format!("{}/v1/", server.base), KEY, "text-embedding-3-small");
    let embedder = OpenAiEmbedder::new(&settings, Some(4), TIMEOUT);
    assert_eq!(embedder.model_id(), "openai-text-embedding-3-small-4");
    assert_eq!(embedder.dimension(), 4);

    let vectors = embedder.embed(&texts(&["first", "second", "third"])).await.expect("embedding succeeds");

    assert_eq!(vectors.len(), 3);
    for (i, vector) in vectors.iter().enumerate() {
        assert_marker(vector, i);
    }
    let request = server.only_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/v1/embeddings");
    assert_eq!(request.headers.get("authorization").map(String::as_str), Some(format!("Bearer {KEY}").as_str()));
    assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(
        request.body,
        json!({
            "model": "text-embedding-3-small",
            "input": ["first", "second", "third"],
            "encoding_format": "float",
            "dimensions": 4,
        })
    );
}

#[tokio::test]
async fn openai_without_key_or_dimensions_omits_them() {
    let server = FakeServer::start(openai_success).await;
    let embedder = OpenAiEmbedder::new(&provider(&server.base, "", "nomic-embed-text"), None, TIMEOUT);
    // Unknown model and no requested size: the size is learned from the first response.
    assert_eq!(embedder.model_id(), "openai-nomic-embed-text-native");
    assert_eq!(embedder.dimension(), 0);

    let vectors = embedder.embed(&texts(&["only"])).await.expect("embedding succeeds");

    assert_marker(&vectors[0], 0);
    assert_eq!(embedder.dimension(), 4);
    let request = server.only_request();
    assert_eq!(request.path, "/embeddings");
    assert!(!request.headers.contains_key("authorization"), "no key, no Authorization header: {:?}", request.headers);
    assert_eq!(request.body, json!({"model": "nomic-embed-text", "input": ["only"], "encoding_format": "float"}));
}

#[tokio::test]
async fn openai_blank_texts_are_not_sent_and_get_zero_vectors() {
    let server = FakeServer::start(openai_success).await;
    let embedder = OpenAiEmbedder::new(&provider(&server.base, KEY, "text-embedding-3-small"), Some(4), TIMEOUT);

    let vectors = embedder.embed(&texts(&["", "real text", "  \n"])).await.expect("embedding succeeds");

    assert_eq!(vectors.len(), 3);
    assert_eq!(vectors[0], vec![0.0; 4]);
    assert_marker(&vectors[1], 0);
    assert_eq!(vectors[2], vec![0.0; 4]);
    assert_eq!(server.only_request().body["input"], json!(["real text"]));

    // Nothing to embed: no request at all.
    let vectors = embedder.embed(&texts(&[" "])).await.expect("nothing to send");
    assert_eq!(vectors, vec![vec![0.0; 4]]);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn openai_429_with_retry_after_is_transient() {
    let error = openai_error_for(|| {
        Reply::json(
            429,
            openai_error("Rate limit reached for text-embedding-3-small", "requests", Some("rate_limit_exceeded")),
        )
        .header("retry-after", "2")
    })
    .await;
    let (status, message, retry_after) = expect_transient(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("Rate limit reached"), "{message}");
    assert_eq!(retry_after, Some(Duration::from_secs(2)));
    assert!(error.is_transient());
    assert_eq!(error.retry_after(), Some(Duration::from_secs(2)));
}

#[tokio::test]
async fn openai_429_prefers_retry_after_ms() {
    let error = openai_error_for(|| {
        Reply::json(429, openai_error("Rate limit reached", "requests", Some("rate_limit_exceeded")))
            .header("retry-after", "2")
            .header("retry-after-ms", "1500")
    })
    .await;
    assert_eq!(expect_transient(&error).2, Some(Duration::from_millis(1500)));
}

#[tokio::test]
async fn openai_429_insufficient_quota_is_permanent() {
    let error = openai_error_for(|| {
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
    let (status, message) = expect_permanent(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("exceeded your current quota"), "{message}");
    assert_eq!(error.retry_after(), None);
}

#[tokio::test]
async fn openai_quota_codes_are_the_ones_the_llm_client_knows() {
    // Drift found by issue 14: the embedder only knew `insufficient_quota`, the LLM client also
    // `billing_hard_limit_reached` and `billing_not_active`; both now read provider_http's list.
    for code in ["billing_hard_limit_reached", "billing_not_active"] {
        let error = openai_error_for(move || {
            Reply::json(429, openai_error("You have reached your hard limit.", code, Some(code)))
                .header("retry-after", "20")
        })
        .await;
        let (status, message) = expect_permanent(&error);
        assert_eq!(status, Some(429));
        assert!(message.contains(code), "{message}");
    }
}

#[tokio::test]
async fn openai_400_is_permanent_with_the_providers_message() {
    let error = openai_error_for(|| {
        Reply::json(
            400,
            openai_error("This model does not support specifying dimensions.", "invalid_request_error", None),
        )
    })
    .await;
    let (status, message) = expect_permanent(&error);
    assert_eq!(status, Some(400));
    assert!(message.contains("This model does not support specifying dimensions."), "{message}");
    assert!(error.to_string().contains("HTTP 400"), "{error}");
}

#[tokio::test]
async fn openai_401_is_permanent_and_never_shows_the_key() {
    // The fake echoes the full key, as a careless server might; the error must not repeat it.
    let error = openai_error_for(|| {
        Reply::json(
            401,
            openai_error(
                &format!(
                    "Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com."
                ),
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
        )
    })
    .await;
    let (status, message) = expect_permanent(&error);
    assert_eq!(status, Some(401));
    assert!(message.contains("Incorrect API key provided: [REDACTED]"), "{message}");
    assert!(message.contains("invalid_api_key"), "{message}");
}

#[tokio::test]
async fn openai_403_404_422_are_permanent() {
    for status in [403, 404, 422] {
        let error = openai_error_for(move || {
            Reply::json(status, openai_error("The model `nope` does not exist", "invalid_request_error", None))
        })
        .await;
        assert_eq!(expect_permanent(&error).0, Some(status));
    }
}

#[tokio::test]
async fn openai_5xx_is_transient() {
    for status in [500, 502, 503, 504] {
        let error = openai_error_for(move || {
            Reply::json(status, openai_error("The server is overloaded or not ready yet.", "server_error", None))
        })
        .await;
        let (got, message, retry_after) = expect_transient(&error);
        assert_eq!(got, Some(status));
        assert!(message.contains("overloaded"), "{message}");
        assert_eq!(retry_after, None);
    }
}

#[tokio::test]
async fn openai_non_json_error_body_is_quoted() {
    let error = openai_error_for(|| Reply {
        status: 502,
        headers: vec![("content-type", "text/html".to_owned())],
        body: "<html><body>502 Bad Gateway (nginx)</body></html>".to_owned(),
        delay: Duration::ZERO,
    })
    .await;
    let (status, message, _) = expect_transient(&error);
    assert_eq!(status, Some(502));
    assert!(message.contains("502 Bad Gateway (nginx)"), "{message}");
}

#[tokio::test]
async fn openai_dimension_mismatch_is_permanent() {
    let server = FakeServer::start(openai_success).await;
    // The fake returns 4 values per vector, as a server ignoring `dimensions` would.
    let embedder = OpenAiEmbedder::new(&provider(&server.base, KEY, "text-embedding-3-small"), Some(8), TIMEOUT);
    let error = embedder.embed(&texts(&["hello"])).await.expect_err("wrong size must be refused");
    let (_, message) = expect_permanent(&error);
    assert!(message.contains("4-dimensional") && message.contains('8'), "{message}");
}

#[tokio::test]
async fn openai_wrong_embedding_count_is_permanent() {
    let server = FakeServer::start(|request| {
        let mut reply = openai_success(request);
        let mut body: Value = serde_json::from_str(&reply.body).expect("valid JSON");
        body["data"].as_array_mut().expect("data array").pop();
        reply.body = body.to_string();
        reply
    })
    .await;
    let embedder = OpenAiEmbedder::new(&provider(&server.base, KEY, "text-embedding-3-small"), Some(4), TIMEOUT);
    let error = embedder.embed(&texts(&["a", "b"])).await.expect_err("one embedding missing");
    assert!(expect_permanent(&error).1.contains("1 embeddings for 2 inputs"), "{error}");
}

#[tokio::test]
async fn openai_connection_refused_is_transient() {
    let base = format!("http://127.0.0.1:{}/v1", closed_port());
    let embedder = OpenAiEmbedder::new(&provider(&base, KEY, "text-embedding-3-small"), Some(4), TIMEOUT);
    let error = embedder.embed(&texts(&["hello"])).await.expect_err("nobody listens");
    let (status, _, retry_after) = expect_transient(&error);
    assert_eq!((status, retry_after), (None, None));
    assert_key_hidden(&error);
}

#[tokio::test]
async fn openai_timeout_is_transient() {
    let server = FakeServer::start(|request| {
        let mut reply = openai_success(request);
        reply.delay = Duration::from_secs(5);
        reply
    })
    .await;
    let settings = provider(&server.base, KEY, "text-embedding-3-small");
    let embedder = OpenAiEmbedder::new(&settings, Some(4), Duration::from_millis(200));
    let error = embedder.embed(&texts(&["slow"])).await.expect_err("the server is too slow");
    let (status, message, _) = expect_transient(&error);
    assert_eq!(status, None);
    assert!(message.contains("timed out"), "{message}");
}

#[tokio::test]
async fn https_speaks_tls_and_never_sends_the_key_in_clear() {
    // A reqwest without a TLS backend would send the request, key included, as plain text to
    // an https URL. The fake server listens in plain text, so it would record that request;
    // with TLS the handshake fails before any HTTP is sent.
    let server = FakeServer::start(openai_success).await;
    let base = server.base.replacen("http://", "https://", 1);
    let embedder = OpenAiEmbedder::new(&provider(&base, KEY, "text-embedding-3-small"), Some(4), TIMEOUT);
    let error = embedder.embed(&texts(&["hello"])).await.expect_err("the server does not speak TLS");
    assert_eq!(expect_transient(&error).0, None);
    assert_key_hidden(&error);
    assert!(server.requests().is_empty(), "a plain-text request went out: {:?}", server.requests());
}

#[tokio::test]
async fn invalid_base_url_is_permanent() {
    let embedder = OpenAiEmbedder::new(&provider("api.openai.com/v1", KEY, "text-embedding-3-small"), Some(4), TIMEOUT);
    let error = embedder.embed(&texts(&["hello"])).await.expect_err("no scheme");
    assert!(expect_permanent(&error).1.contains("check base_url"), "{error}");
}

// ---------------------------------------------------------------- Gemini

fn gemini_success(request: &Recorded) -> Reply {
    let requests = request.body["requests"].as_array().expect("requests is an array").len();
    let embeddings: Vec<Value> = (0..requests).map(|i| json!({"values": marker_vector(i)})).collect();
    Reply::json(200, json!({"embeddings": embeddings}))
}

async fn gemini_error_for(reply: impl Fn() -> Reply + Send + Sync + 'static) -> EmbedError {
    let server = FakeServer::start(move |_| reply()).await;
    let embedder =
        GeminiEmbedder::new(&provider(&format!("{}/v1beta", server.base), KEY, "text-embedding-004"), Some(4), TIMEOUT);
    let error = embedder.embed(&texts(&["hello"])).await.expect_err("the server answered with an error");
    assert_eq!(server.requests().len(), 1);
    assert_key_hidden(&error);
    error
}

#[tokio::test]
async fn gemini_sends_the_documented_request() {
    let server = FakeServer::start(gemini_success).await;
    let settings = provider(&format!("{}/v1beta", server.base), KEY, "text-embedding-004");
    let embedder = GeminiEmbedder::new(&settings, Some(4), TIMEOUT);
    assert_eq!(embedder.model_id(), "gemini-text-embedding-004-4");
    assert_eq!(embedder.dimension(), 4);

    let vectors = embedder.embed(&texts(&["first", "second"])).await.expect("embedding succeeds");

    assert_marker(&vectors[0], 0);
    assert_marker(&vectors[1], 1);
    let request = server.only_request();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/v1beta/models/text-embedding-004:batchEmbedContents");
    assert_eq!(request.query, None, "the key must not travel in the URL");
    assert_eq!(request.headers.get("x-goog-api-key").map(String::as_str), Some(KEY));
    assert!(!request.headers.contains_key("authorization"));
    assert_eq!(request.headers.get("content-type").map(String::as_str), Some("application/json"));
    assert_eq!(
        request.body,
        json!({"requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "first"}]},
                "taskType": "RETRIEVAL_DOCUMENT",
                "outputDimensionality": 4,
            },
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "second"}]},
                "taskType": "RETRIEVAL_DOCUMENT",
                "outputDimensionality": 4,
            },
        ]})
    );
}

#[tokio::test]
async fn gemini_accepts_models_prefix_and_omits_unset_dimensionality() {
    let server = FakeServer::start(gemini_success).await;
    let settings = provider(&server.base, KEY, "models/text-embedding-004");
    let embedder = GeminiEmbedder::new(&settings, None, TIMEOUT);
    // The model's native size is known up front.
    assert_eq!(embedder.model_id(), "gemini-text-embedding-004-768");
    assert_eq!(embedder.dimension(), 768);

    let error = embedder.embed(&texts(&["x"])).await.expect_err("the fake returns 4 values, not 768");
    assert!(expect_permanent(&error).1.contains("4-dimensional"), "{error}");

    let request = server.only_request();
    assert_eq!(request.path, "/models/text-embedding-004:batchEmbedContents");
    assert_eq!(
        request.body,
        json!({"requests": [{
            "model": "models/text-embedding-004",
            "content": {"parts": [{"text": "x"}]},
            "taskType": "RETRIEVAL_DOCUMENT",
        }]})
    );
}

#[tokio::test]
async fn gemini_splits_batches_over_the_api_limit() {
    let server = FakeServer::start(gemini_success).await;
    let embedder = GeminiEmbedder::new(&provider(&server.base, KEY, "text-embedding-004"), Some(4), TIMEOUT);
    let inputs: Vec<String> = (0..150).map(|i| format!("text {i}")).collect();

    let vectors = embedder.embed(&inputs).await.expect("embedding succeeds");

    assert_eq!(vectors.len(), 150);
    // The fake numbers embeddings per request, so the second request restarts at 0.
    assert_marker(&vectors[99], 99);
    assert_marker(&vectors[100], 0);
    let requests = server.requests();
    let sizes: Vec<usize> = requests.iter().map(|r| r.body["requests"].as_array().expect("array").len()).collect();
    assert_eq!(sizes, [100, 50]);
    assert_eq!(requests[1].body["requests"][0]["content"]["parts"][0]["text"], "text 100");
}

#[tokio::test]
async fn gemini_429_uses_retry_info_delay() {
    let error = gemini_error_for(|| {
        Reply::json(
            429,
            gemini_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                json!([
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaMetric": "generativelanguage.googleapis.com/embed_content_free_tier_requests"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
                ]),
            ),
        )
    })
    .await;
    let (status, message, retry_after) = expect_transient(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("Resource has been exhausted") && message.contains("RESOURCE_EXHAUSTED"), "{message}");
    assert_eq!(retry_after, Some(Duration::from_secs(37)));
}

#[tokio::test]
async fn gemini_a_per_day_quota_is_permanent_like_for_the_llm_client() {
    // Drift found by issue 14: the embedder retried an exhausted per-day quota every few
    // seconds, while the LLM client already knew it will not clear for hours.
    let error = gemini_error_for(|| {
        Reply::json(
            429,
            gemini_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded for quota metric 'Embed content requests' and limit 'per day'.",
                json!([
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "EmbedContentRequestsPerDayPerProjectPerModel-FreeTier"}]},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "37s"},
                ]),
            ),
        )
    })
    .await;
    let (status, message) = expect_permanent(&error);
    assert_eq!(status, Some(429));
    assert!(message.contains("[quota EmbedContentRequestsPerDayPerProjectPerModel-FreeTier]"), "{message}");
    assert_eq!(error.retry_after(), None);
}

#[tokio::test]
async fn gemini_retry_info_accepts_fractional_seconds() {
    let error = gemini_error_for(|| {
        Reply::json(
            429,
            gemini_error(
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}]),
            ),
        )
    })
    .await;
    assert_eq!(expect_transient(&error).2, Some(Duration::from_millis(1500)));
}

#[tokio::test]
async fn gemini_503_is_transient_and_honours_retry_after_header() {
    let error = gemini_error_for(|| {
        Reply::json(
            503,
            gemini_error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.", json!([])),
        )
        .header("retry-after", "5")
    })
    .await;
    let (status, message, retry_after) = expect_transient(&error);
    assert_eq!(status, Some(503));
    assert!(message.contains("overloaded"), "{message}");
    assert_eq!(retry_after, Some(Duration::from_secs(5)));
}

#[tokio::test]
async fn gemini_500_and_504_are_transient() {
    for (code, status) in [(500, "INTERNAL"), (504, "DEADLINE_EXCEEDED")] {
        let error = gemini_error_for(move || {
            Reply::json(code, gemini_error(code, status, "An internal error has occurred.", json!([])))
        })
        .await;
        assert_eq!(expect_transient(&error).0, Some(code));
    }
}

#[tokio::test]
async fn gemini_400_is_permanent_with_the_providers_message() {
    let error = gemini_error_for(|| {
        Reply::json(400, gemini_error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", json!([])))
    })
    .await;
    let (status, message) = expect_permanent(&error);
    assert_eq!(status, Some(400));
    assert!(
        message.contains("Request contains an invalid argument.") && message.contains("INVALID_ARGUMENT"),
        "{message}"
    );
}

#[tokio::test]
async fn gemini_auth_and_not_found_errors_are_permanent() {
    let cases = [
        (400, "FAILED_PRECONDITION", "User location is not supported for the API use."),
        (401, "UNAUTHENTICATED", "Request had invalid authentication credentials."),
        (403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."),
        (404, "NOT_FOUND", "models/nope is not found for API version v1beta."),
    ];
    for (code, status, text) in cases {
        let error = gemini_error_for(move || Reply::json(code, gemini_error(code, status, text, json!([])))).await;
        let (got, message) = expect_permanent(&error);
        assert_eq!(got, Some(code));
        assert!(message.contains(text), "{message}");
    }
}

#[tokio::test]
async fn gemini_never_shows_the_key_even_if_echoed() {
    let error = gemini_error_for(|| {
        Reply::json(
            400,
            gemini_error(
                400,
                "INVALID_ARGUMENT",
                &format!("API key not valid: {KEY}"),
                json!([
                    {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
                ]),
            ),
        )
    })
    .await;
    assert!(expect_permanent(&error).1.contains("API key not valid: [REDACTED]"), "{error}");
}

#[tokio::test]
async fn gemini_wrong_embedding_count_is_permanent() {
    let server =
        FakeServer::start(|_| Reply::json(200, json!({"embeddings": [{"values": [1.0, 0.0, 0.0, 0.0]}]}))).await;
    let embedder = GeminiEmbedder::new(&provider(&server.base, KEY, "text-embedding-004"), Some(4), TIMEOUT);
    let error = embedder.embed(&texts(&["a", "b"])).await.expect_err("one embedding missing");
    assert!(expect_permanent(&error).1.contains("1 embeddings for 2 inputs"), "{error}");
}

#[tokio::test]
async fn gemini_connection_refused_is_transient() {
    let base = format!("http://127.0.0.1:{}/v1beta", closed_port());
    let embedder = GeminiEmbedder::new(&provider(&base, KEY, "text-embedding-004"), Some(4), TIMEOUT);
    let error = embedder.embed(&texts(&["hello"])).await.expect_err("nobody listens");
    assert_eq!(expect_transient(&error).0, None);
    assert_key_hidden(&error);
}

// ---------------------------------------------------------------- from_settings

fn settings(provider_name: &str, openai_base: &str, gemini_base: &str) -> EmbeddingSettings {
    EmbeddingSettings {
        provider: provider_name.to_owned(),
        dimension: 4,
        batch_size: 64,
        timeout_secs: 10,
        openai: provider(openai_base, KEY, "text-embedding-3-small"),
        gemini: provider(gemini_base, KEY, "text-embedding-004"),
    }
}

#[tokio::test]
async fn from_settings_builds_each_provider() {
    let openai = FakeServer::start(openai_success).await;
    let gemini = FakeServer::start(gemini_success).await;

    let hashing = from_settings(&settings("hashing", &openai.base, &gemini.base)).expect("known provider");
    assert_eq!((hashing.model_id(), hashing.dimension()), ("hashing-v2-4", 4));
    let vectors = hashing.embed(&texts(&["reset password"])).await.expect("hashing never fails");
    assert_eq!(vectors[0].len(), 4);
    assert!(openai.requests().is_empty() && gemini.requests().is_empty());

    let embedder = from_settings(&settings("openai", &openai.base, &gemini.base)).expect("known provider");
    assert_eq!((embedder.model_id(), embedder.dimension()), ("openai-text-embedding-3-small-4", 4));
    assert_marker(&embedder.embed(&texts(&["q"])).await.expect("openai embeds")[0], 0);
    assert_eq!(openai.only_request().body["dimensions"], 4);

    let embedder = from_settings(&settings("gemini", &openai.base, &gemini.base)).expect("known provider");
    assert_eq!((embedder.model_id(), embedder.dimension()), ("gemini-text-embedding-004-4", 4));
    assert_marker(&embedder.embed(&texts(&["q"])).await.expect("gemini embeds")[0], 0);
    assert_eq!(gemini.only_request().body["requests"][0]["outputDimensionality"], 4);

    let error = from_settings(&settings("cohere", &openai.base, &gemini.base)).err().expect("unknown provider");
    assert!(error.to_string().contains("cohere"), "{error}");
}
