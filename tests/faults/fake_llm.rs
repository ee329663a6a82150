//! A misbehaving OpenAI-compatible provider, scripted on the LLM fake: roughly 30% of calls get
//! a 429 (with a short `retry-after-ms`) or a 503 (a proxy's plain-text page), about 7% a
//! `200 OK` whose body is not JSON or whose JSON answer is cut off mid-object, and the rest a
//! proper answer — a classification verdict for JSON-mode requests (`response_format`), a short
//! reply otherwise. Which call gets what comes from a seeded generator, so a run can be
//! repeated.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use llm_fake::{Failure, FakeLlm, Reply};
use serde_json::json;

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

/// Starts the fake on a free port; returns it (its `openai_url` is the base URL) and the
/// counters.
pub(crate) async fn start(seed: u64) -> (FakeLlm, Arc<Served>) {
    let served = Arc::new(Served::default());
    let rng = Mutex::new(fastrand::Rng::with_seed(seed));
    let counters = served.clone();
    let fake = FakeLlm::start(move |call| {
        let roll = rng.lock().expect("rng").u32(0..100);
        let json_mode = call.json_mode();
        match roll {
            0..15 => {
                counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                call.fail(Failure::RateLimited(Duration::from_millis(100)))
            }
            15..30 => {
                counters.unavailable.fetch_add(1, Ordering::Relaxed);
                Reply::text(503, "upstream overloaded")
            }
            30..34 => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                // A proxy's error page with a 200.
                Reply::json(200, json!({})).raw_body("<html>Bad gateway</html>")
            }
            34..37 => {
                counters.malformed.fetch_add(1, Ordering::Relaxed);
                // Valid envelope, the model's JSON cut off.
                call.answer(if json_mode { r#"{"is_support_inquiry": tr"# } else { "" })
            }
            _ => {
                counters.ok.fetch_add(1, Ordering::Relaxed);
                if json_mode {
                    let category = if call.mentions("invoice") { "billing" } else { "order_status" };
                    call.answer(
                        &json!({"is_support_inquiry": true, "category": category, "confidence": 0.9}).to_string(),
                    )
                } else {
                    call.answer(
                        "Hello,\n\naccording to shipping-faq.md you receive one tracking number per box within 24 \
                         hours of dispatch.\n\nBest regards,\nThe Support Team",
                    )
                }
            }
        }
    })
    .await;
    (fake, served)
}
