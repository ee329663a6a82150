//! A recording HTTP fake for provider clients' tests: every request is kept (method, path,
//! query, headers, JSON body) so a test can assert exactly what a client sent, and a responder
//! closure decides each answer (status, headers, body, delay). [`FakeLlm`](crate::FakeLlm) is
//! built on it; the embedding and Pinecone tests use it directly (as `mailroom_tests::fake_http`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: Option<String>,
    /// Headers by lowercase name.
    pub headers: HashMap<String, String>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
}

impl Recorded {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// What the fake server answers.
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body text.
    pub body: String,
    /// Wait before answering.
    pub delay: Duration,
}

impl Reply {
    /// A JSON answer.
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    /// A plain-text answer (a proxy's error page, say).
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type", "text/plain; charset=utf-8".to_owned())],
            body: body.to_owned(),
            delay: Duration::ZERO,
        }
    }

    /// Replaces the body by `body` as it is (bytes that do not parse, say), keeping the status
    /// and headers.
    pub fn raw_body(mut self, body: &str) -> Self {
        self.body = body.to_owned();
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// Answers after `delay`.
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

type Responder = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

#[derive(Clone)]
struct FakeState {
    requests: Arc<Mutex<Vec<Recorded>>>,
    responder: Responder,
}

/// A running fake on 127.0.0.1 (port 0).
pub struct FakeServer {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeServer {
    /// Starts a fake answering every request with `responder`.
    pub async fn start(responder: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("bound socket has an address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = FakeState { requests: requests.clone(), responder: Arc::new(responder) };
        let app = Router::new().fallback(handle).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.expect("fake server runs") });
        Self { base: format!("http://{addr}"), requests }
    }

    /// A server whose `n`-th answer (from 0) is `replies(n)`.
    pub async fn sequence(replies: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let count = AtomicUsize::new(0);
        Self::start(move |_| replies(count.fetch_add(1, Ordering::SeqCst))).await
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("request log not poisoned").clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.requests.lock().expect("request log not poisoned").len()
    }

    /// The one request made (panics if there was not exactly one).
    pub fn only_request(&self) -> Recorded {
        let requests = self.requests();
        assert_eq!(requests.len(), 1, "expected exactly one request, got {requests:#?}");
        requests.into_iter().next().expect("one request")
    }
}

async fn handle(State(state): State<FakeState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let recorded = Recorded {
        method,
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().expect("ASCII header").to_owned()))
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    };
    let reply = (state.responder)(&recorded);
    state.requests.lock().expect("request log not poisoned").push(recorded);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let mut response = (StatusCode::from_u16(reply.status).expect("valid status"), reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().expect("valid header value"));
    }
    response
}
