//! A misbehaving OpenAI-compatible chat completions server: roughly 30% of calls get a 429
//! (with a short `retry-after-ms`) or a 503, about 7% a `200 OK` whose body is not JSON or
//! whose JSON answer is cut off mid-object, and the rest a proper answer — a classification
//! verdict for JSON-mode requests (`response_format`), a short reply otherwise. Which call gets
//! what comes from a seeded generator, so a run can be repeated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::post};
use serde_json::{Value, json};

/// What the fake answered, by kind.
#[derive(Debug, Default)]
pub(crate) struct Served {
    pub(crate) ok: AtomicU64,
    pub(crate) rate_limited: AtomicU64,
    pub(crate) unavailable: AtomicU64,
    pub(crate) malformed: AtomicU64,
}

impl Served {
    /// `(ok, 429, 503, malformed)`.
    pub(crate) fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.rate_limited.load(Ordering::Relaxed),
            self.unavailable.load(Ordering::Relaxed),
            self.malformed.load(Ordering::Relaxed),
        )
    }
}

fn completion(content: &str) -> Value {
    json!({"id": "chatcmpl-faults", "object": "chat.completion", "created": 0, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}})
}

/// Starts the fake on a free port; returns its base URL (`http://127.0.0.1:<port>/v1`) and the
/// counters.
pub(crate) async fn start(seed: u64) -> (String, Arc<Served>) {
    let served = Arc::new(Served::default());
    let rng = Arc::new(Mutex::new(fastrand::Rng::with_seed(seed)));
    let counters = served.clone();
    let app = Router::new().route(
        "/v1/chat/completions",
        post(move |Json(body): Json<Value>| {
            let (served, rng) = (counters.clone(), rng.clone());
            async move {
                let roll = rng.lock().expect("rng").u32(0..100);
                let json_mode = body.get("response_format").is_some();
                let prompt = body.to_string().to_lowercase();
                let response: Response = match roll {
                    0..15 => {
                        served.rate_limited.fetch_add(1, Ordering::Relaxed);
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [("retry-after-ms", "100")],
                            Json(json!({"error": {"message": "Rate limit reached for requests", "type": "requests",
                                "code": "rate_limit_exceeded"}})),
                        )
                            .into_response()
                    }
                    15..30 => {
                        served.unavailable.fetch_add(1, Ordering::Relaxed);
                        (StatusCode::SERVICE_UNAVAILABLE, "upstream overloaded").into_response()
                    }
                    30..34 => {
                        served.malformed.fetch_add(1, Ordering::Relaxed);
                        // A proxy's error page with a 200.
                        (StatusCode::OK, [("content-type", "application/json")], "<html>Bad gateway</html>")
                            .into_response()
                    }
                    34..37 => {
                        served.malformed.fetch_add(1, Ordering::Relaxed);
                        // Valid envelope, the model's JSON cut off.
                        let content = if json_mode { r#"{"is_support_inquiry": tr"# } else { "" };
                        Json(completion(content)).into_response()
                    }
                    _ => {
                        served.ok.fetch_add(1, Ordering::Relaxed);
                        let content = if json_mode {
                            let category = if prompt.contains("invoice") { "billing" } else { "order_status" };
                            json!({"is_support_inquiry": true, "category": category, "confidence": 0.9}).to_string()
                        } else {
                            "Hello,\n\naccording to shipping-faq.md you receive one tracking number per box within 24 hours \
                             of dispatch.\n\nBest regards,\nThe Support Team"
                                .to_owned()
                        };
                        Json(completion(&content)).into_response()
                    }
                };
                response
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/v1", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, served)
}
