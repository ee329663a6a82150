//! One fake of the LLM providers for every test (and for `mailroom bench`): a local HTTP server
//! on 127.0.0.1 (port 0) that speaks the documented wire formats of
//! - Gemini: `POST …/models/{model}:generateContent` and `models.get` (`GET …/models/{model}`),
//! - Anthropic: the Messages API (`POST …/messages`) and the Models API (`GET …/models/{model}`,
//!   told apart from Gemini's by its `anthropic-version` header),
//! - OpenAI-compatible servers: `POST …/chat/completions` and the model list (`GET …/models`),
//!
//! with their success bodies (usage objects included) and their documented error bodies and
//! status codes ([`Failure`], or the builders of [`gemini`], [`anthropic`] and [`openai`]).
//!
//! One server answers all three, under any base path: which provider a request is for is read
//! from its path and headers ([`Call::provider`]). What it answers is scripted per call by a
//! closure given the [`Call`] (provider, operation, model, JSON mode, the call's number, the
//! recorded request): a text in the caller's format ([`Call::answer`]), a documented failure
//! ([`Call::fail`]), any [`Reply`] at all (a proxy's HTML page with a 200, say), each optionally
//! [delayed](Reply::delayed). Every request is recorded ([`FakeLlm::requests`]).

pub mod anthropic;
pub mod gemini;
pub mod http;
pub mod openai;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

pub use http::{FakeServer, Recorded, Reply};

/// Which API a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Google's Gemini API.
    Gemini,
    /// Anthropic's API.
    Anthropic,
    /// OpenAI or a server compatible with it.
    OpenAi,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A generation (`generateContent`, `messages`, `chat/completions`).
    Generate,
    /// A model lookup (`models.get`, the Models API, the model list), as `mailroom doctor` makes.
    Lookup,
}

/// A documented failure, rendered in the caller's provider's format by [`Call::fail`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A 429 rate limit that clears after the delay (Gemini's `RetryInfo`, Anthropic's
    /// `retry-after`, OpenAI's `retry-after` and `retry-after-ms`).
    RateLimited(Duration),
    /// The service is overloaded (Gemini 503 `UNAVAILABLE`, Anthropic 529 `overloaded_error`,
    /// OpenAI 503 `server_error`).
    Unavailable,
    /// The quota or credit is used up (Gemini's per-day 429, Anthropic's 400 "credit balance
    /// is too low", OpenAI's 429 `insufficient_quota`).
    QuotaExhausted,
    /// A wrong API key (Gemini 400 `INVALID_ARGUMENT`, Anthropic 401 `authentication_error`,
    /// OpenAI 401 `invalid_api_key`).
    InvalidKey,
    /// The model is not served, e.g. retired (a 404 from each).
    ModelNotFound,
}

/// One request to the fake, as its script sees it (it dereferences to the [`Recorded`]
/// request).
#[derive(Debug)]
pub struct Call<'a> {
    /// The request.
    pub request: &'a Recorded,
    /// Its number among the fake's requests, from 0.
    pub n: usize,
}

impl std::ops::Deref for Call<'_> {
    type Target = Recorded;

    fn deref(&self) -> &Recorded {
        self.request
    }
}

impl Call<'_> {
    /// The provider whose API the request's path and headers belong to (`None` for a path none
    /// of them has).
    pub fn provider(&self) -> Option<Provider> {
        self.route().map(|(provider, _)| provider)
    }

    /// Generation or model lookup (`None` when [`Call::provider`] is).
    pub fn operation(&self) -> Option<Operation> {
        self.route().map(|(_, operation)| operation)
    }

    fn route(&self) -> Option<(Provider, Operation)> {
        route(self.request)
    }

    /// The model asked for: from the path (Gemini, lookups) or the body's `model`.
    pub fn model(&self) -> String {
        if let Some((_, after)) = self.path.rsplit_once("/models/") {
            return after.split(':').next().unwrap_or_default().to_owned();
        }
        self.body["model"].as_str().unwrap_or_default().to_owned()
    }

    /// Whether a JSON answer was asked for: Gemini's `responseMimeType`, OpenAI's
    /// `response_format`; Anthropic has no JSON mode on the wire, so a system prompt that asks
    /// for JSON.
    pub fn json_mode(&self) -> bool {
        match self.provider() {
            Some(Provider::Gemini) => self.body["generationConfig"]["responseMimeType"] == "application/json",
            Some(Provider::OpenAi) => self.body.get("response_format").is_some(),
            Some(Provider::Anthropic) => self.body["system"].as_str().is_some_and(|s| s.contains("JSON")),
            None => false,
        }
    }

    /// Whether the request's body mentions `word` (case-insensitively).
    pub fn mentions(&self, word: &str) -> bool {
        self.body.to_string().to_lowercase().contains(&word.to_lowercase())
    }

    /// A 200 with `text` as the model's answer in the provider's format (usage included); for a
    /// lookup, the model asked for as served ([`Call::lookup`] with it).
    pub fn answer(&self, text: &str) -> Reply {
        match self.route() {
            Some((_, Operation::Lookup)) => self.lookup(&[&self.model()]),
            Some((Provider::Gemini, _)) => Reply::json(200, gemini::text(&[text])),
            Some((Provider::Anthropic, _)) => Reply::json(200, anthropic::text(text)),
            Some((Provider::OpenAi, _)) => Reply::json(200, openai::completion(json!(text), "stop")),
            None => self.no_route(),
        }
    }

    /// The answer to a model lookup when the provider serves `models`: OpenAI's list of them;
    /// Gemini's and Anthropic's model object, or their 404 when the model asked for is not one
    /// of them.
    pub fn lookup(&self, models: &[&str]) -> Reply {
        let model = self.model();
        match self.provider() {
            Some(Provider::OpenAi) => Reply::json(200, openai::models(models)),
            Some(_) if !models.contains(&model.as_str()) => self.fail(Failure::ModelNotFound),
            Some(Provider::Gemini) => Reply::json(200, gemini::model(&model)),
            Some(Provider::Anthropic) => Reply::json(200, anthropic::model(&model)),
            None => self.no_route(),
        }
    }

    /// `failure` as the provider documents it (status, headers, error body).
    pub fn fail(&self, failure: Failure) -> Reply {
        match self.provider() {
            Some(Provider::Gemini) => gemini_failure(&failure, &self.model()),
            Some(Provider::Anthropic) => anthropic_failure(&failure, &self.model()),
            Some(Provider::OpenAi) => openai_failure(&failure, &self.model()),
            None => self.no_route(),
        }
    }

    fn no_route(&self) -> Reply {
        Reply::text(404, &format!("the LLM fake has no route for {} {}", self.method, self.path))
    }
}

/// Which provider and operation `request` is for, from its path and headers.
fn route(request: &Recorded) -> Option<(Provider, Operation)> {
    let path = request.path.as_str();
    let get = request.method == axum::http::Method::GET;
    if path.ends_with(":generateContent") {
        Some((Provider::Gemini, Operation::Generate))
    } else if path.ends_with("/messages") {
        Some((Provider::Anthropic, Operation::Generate))
    } else if path.ends_with("/chat/completions") {
        Some((Provider::OpenAi, Operation::Generate))
    } else if get && path.ends_with("/models") {
        Some((Provider::OpenAi, Operation::Lookup))
    } else if get && path.contains("/models/") && request.header("anthropic-version").is_some() {
        Some((Provider::Anthropic, Operation::Lookup))
    } else if get && path.contains("/models/") {
        Some((Provider::Gemini, Operation::Lookup))
    } else {
        None
    }
}

fn seconds_up(delay: Duration) -> String {
    delay.as_secs().saturating_add(u64::from(delay.subsec_nanos() > 0)).to_string()
}

fn gemini_failure(failure: &Failure, model: &str) -> Reply {
    let plain =
        |code: u16, status: &str, message: &str| Reply::json(code, gemini::error(code, status, message, json!([])));
    match failure {
        Failure::RateLimited(delay) => {
            Reply::json(429, gemini::quota_429_after("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", *delay))
        }
        Failure::Unavailable => plain(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        Failure::QuotaExhausted => {
            Reply::json(429, gemini::quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier"))
        }
        Failure::InvalidKey => plain(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
        Failure::ModelNotFound => Reply::json(404, gemini::model_not_found(model)),
    }
}

fn anthropic_failure(failure: &Failure, model: &str) -> Reply {
    let error = |status: u16, kind: &str, message: &str| Reply::json(status, anthropic::error(kind, message));
    match failure {
        Failure::RateLimited(delay) => error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit; please try again later.",
        )
        .header("retry-after", &seconds_up(*delay)),
        Failure::Unavailable => error(529, "overloaded_error", "Overloaded"),
        Failure::QuotaExhausted => error(
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade \
             or purchase credits.",
        ),
        Failure::InvalidKey => error(401, "authentication_error", "invalid x-api-key"),
        Failure::ModelNotFound => error(404, "not_found_error", &format!("model: {model}")),
    }
}

fn openai_failure(failure: &Failure, model: &str) -> Reply {
    let error = |status: u16, message: &str, kind: &str, code: Option<&str>| {
        Reply::json(status, openai::error(message, kind, code))
    };
    match failure {
        Failure::RateLimited(delay) => {
            error(429, "Rate limit reached for requests", "requests", Some("rate_limit_exceeded"))
                .header("retry-after", &seconds_up(*delay))
                .header("retry-after-ms", &delay.as_millis().to_string())
        }
        Failure::Unavailable => error(503, "The server is overloaded or not ready yet.", "server_error", None),
        Failure::QuotaExhausted => error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
        Failure::InvalidKey => {
            error(401, "Incorrect API key provided.", "invalid_request_error", Some("invalid_api_key"))
        }
        Failure::ModelNotFound => error(
            404,
            &format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            Some("model_not_found"),
        ),
    }
}

/// A running fake of the three providers; see the [crate docs](crate).
pub struct FakeLlm {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    server: FakeServer,
}

impl FakeLlm {
    /// Starts a fake whose answer to each request is `script(&call)`.
    pub async fn start(script: impl Fn(&Call<'_>) -> Reply + Send + Sync + 'static) -> Self {
        let count = Arc::new(AtomicUsize::new(0));
        let server = FakeServer::start(move |request| {
            let n = count.fetch_add(1, Ordering::SeqCst);
            script(&Call { request, n })
        })
        .await;
        Self { base: server.base.clone(), server }
    }

    /// A fake whose `n`-th answer (from 0) is `replies(n)`, whatever was asked.
    pub async fn sequence(replies: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start(move |call| replies(call.n)).await
    }

    /// A fake that answers every generation with `text` (and JSON-mode ones with `json`), and
    /// every lookup with the model asked for, after `delay`: the well-behaved slow provider of
    /// the throughput benchmarks.
    pub async fn answering(text: &str, json: &Value, delay: Duration) -> Self {
        let (text, json) = (text.to_owned(), json.to_string());
        Self::start(move |call| call.answer(if call.json_mode() { &json } else { &text }).delayed(delay)).await
    }

    /// The Gemini `base_url` (`…/v1beta`).
    pub fn gemini_url(&self) -> String {
        format!("{}/v1beta", self.base)
    }

    /// The Anthropic `base_url` (`…/v1`).
    pub fn anthropic_url(&self) -> String {
        format!("{}/v1", self.base)
    }

    /// The OpenAI-compatible `base_url` (`…/v1`).
    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.base)
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.server.count()
    }

    /// How many requests so far were for `provider`'s API.
    pub fn count_for(&self, provider: Provider) -> usize {
        self.requests().iter().filter(|r| route(r).is_some_and(|(p, _)| p == provider)).count()
    }

    /// The one request made (panics if there was not exactly one).
    pub fn only_request(&self) -> Recorded {
        self.server.only_request()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    fn recorded(method: Method, path: &str, headers: &[(&str, &str)], body: Value) -> Recorded {
        Recorded {
            method,
            path: path.to_owned(),
            query: None,
            headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            body,
        }
    }

    #[test]
    fn requests_are_told_apart_by_path_and_headers() {
        let cases = [
            (
                Method::POST,
                "/v1beta/models/gemini-2.5-flash:generateContent",
                &[][..],
                Provider::Gemini,
                Operation::Generate,
            ),
            (Method::GET, "/v1beta/models/gemini-2.5-flash", &[], Provider::Gemini, Operation::Lookup),
            (Method::POST, "/v1/messages", &[], Provider::Anthropic, Operation::Generate),
            (
                Method::GET,
                "/v1/models/claude-x",
                &[("anthropic-version", "2023-06-01")],
                Provider::Anthropic,
                Operation::Lookup,
            ),
            (Method::POST, "/ollama/v1/chat/completions", &[], Provider::OpenAi, Operation::Generate),
            (Method::GET, "/v1/models", &[], Provider::OpenAi, Operation::Lookup),
        ];
        for (method, path, headers, provider, operation) in cases {
            let request = recorded(method, path, headers, Value::Null);
            assert_eq!(route(&request), Some((provider, operation)), "{path}");
        }
        assert_eq!(route(&recorded(Method::POST, "/v1/embeddings", &[], Value::Null)), None);
    }

    #[test]
    fn answers_and_failures_are_in_the_callers_format() {
        let gemini = recorded(
            Method::POST,
            "/v1beta/models/gemini-2.0-flash:generateContent",
            &[],
            json!({"generationConfig": {"responseMimeType": "application/json"}}),
        );
        let call = Call { request: &gemini, n: 0 };
        assert!(call.json_mode());
        assert_eq!(call.model(), "gemini-2.0-flash");
        assert!(call.answer("{}").body.contains("usageMetadata"));
        let missing = call.fail(Failure::ModelNotFound);
        assert_eq!(missing.status, 404);
        assert!(missing.body.contains("models/gemini-2.0-flash is not found"), "{}", missing.body);

        let openai = recorded(Method::POST, "/v1/chat/completions", &[], json!({"model": "gpt-x"}));
        let call = Call { request: &openai, n: 0 };
        assert!(!call.json_mode());
        let limited = call.fail(Failure::RateLimited(Duration::from_millis(1500)));
        assert_eq!(limited.status, 429);
        let headers: Vec<_> = limited.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert!(
            headers.contains(&("retry-after", "2")) && headers.contains(&("retry-after-ms", "1500")),
            "{headers:?}"
        );

        let anthropic = recorded(Method::POST, "/v1/messages", &[], json!({"model": "claude-x"}));
        let call = Call { request: &anthropic, n: 0 };
        assert_eq!(call.fail(Failure::Unavailable).status, 529);
        assert_eq!(call.fail(Failure::InvalidKey).status, 401);
    }
}
