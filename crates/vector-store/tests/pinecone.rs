//! `PineconeStore` against an in-process fake of Pinecone's serverless data plane.
//!
//! The fake (axum on 127.0.0.1:0) keeps vectors per namespace in memory and implements
//! `POST /vectors/upsert`, `GET /vectors/list` (prefix, `limit`, opaque `paginationToken`),
//! `POST /vectors/delete` (by IDs only, as on serverless) and `POST /query` (cosine), with
//! Pinecone's limits (1000 vectors / 2 MB per upsert, 1000 IDs per delete, list limit ≤ 100),
//! its header checks and its error bodies. Like Pinecone it stores metadata numbers as floats.
//! It records every request, so the tests assert exactly what the client sent, and can be told
//! to answer the next requests with an injected failure or after a delay.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use vector_store::{ChunkRecord, PineconeSettings, PineconeStore, SearchHit, StoreError, VectorStore};

const API_KEY: &str = "pcsk_test_5f3a9c1e7b2d4a6f";
const API_VERSION: &str = "2025-04";
const DIMENSION: usize = 4;
const MAX_REQUEST_BYTES: usize = 2 * 1024 * 1024;
const ALICE: &str = "alice+support@example.com";
const BOB: &str = "bob@example.com";

// ---------------------------------------------------------------------------------------------
// The fake data plane
// ---------------------------------------------------------------------------------------------

/// One request as the fake received it.
#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    /// The raw (still percent-encoded) query string.
    raw_query: Option<String>,
    /// The decoded query parameters.
    query: HashMap<String, String>,
    api_key: Option<String>,
    api_version: Option<String>,
    content_type: Option<String>,
    body_bytes: usize,
    body: Option<Value>,
}

#[derive(Debug, Clone)]
struct StoredVector {
    values: Vec<f32>,
    metadata: Option<Value>,
}

/// What to do with one upcoming request: `None` serves it normally.
type Injected = Option<(StatusCode, String)>;

#[derive(Default)]
struct FakeState {
    namespaces: HashMap<String, BTreeMap<String, StoredVector>>,
    requests: Vec<Recorded>,
    injected: VecDeque<Injected>,
    delay: Option<Duration>,
}

type Shared = Arc<Mutex<FakeState>>;

struct FakePinecone {
    addr: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakePinecone {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakePinecone {
    async fn start() -> Self {
        let state = Shared::default();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Pinecone");
        let addr = listener.local_addr().expect("fake Pinecone address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve the fake Pinecone");
        });
        Self { addr, state, server }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake state lock")
    }

    fn host(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn store(&self) -> PineconeStore {
        store_for(&self.host(), API_KEY, API_VERSION, 10)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Answers the next request with `status` and `body` (after any earlier injections).
    fn fail_next(&self, status: StatusCode, body: &str) {
        self.lock().injected.push_back(Some((status, body.to_owned())));
    }

    /// Serves the next request normally (to place a failure later in a sequence).
    fn pass_next(&self) {
        self.lock().injected.push_back(None);
    }

    fn set_delay(&self, delay: Duration) {
        self.lock().delay = Some(delay);
    }

    /// The IDs stored in a namespace, sorted.
    fn ids(&self, namespace: &str) -> Vec<String> {
        self.lock().namespaces.get(namespace).map(|ns| ns.keys().cloned().collect()).unwrap_or_default()
    }

    fn vector(&self, namespace: &str, id: &str) -> Option<StoredVector> {
        self.lock().namespaces.get(namespace).and_then(|ns| ns.get(id)).cloned()
    }

    /// Puts a vector straight into a namespace, bypassing the client.
    fn seed(&self, namespace: &str, id: &str, values: Vec<f32>, metadata: Value) {
        self.lock()
            .namespaces
            .entry(namespace.to_owned())
            .or_default()
            .insert(id.to_owned(), StoredVector { values, metadata: Some(metadata) });
    }
}

fn store_for(host: &str, key: &str, version: &str, timeout_secs: u64) -> PineconeStore {
    PineconeStore::new(&PineconeSettings {
        index_host: host.to_owned(),
        api_key: SecretString::from(key),
        api_version: version.to_owned(),
        timeout_secs,
    })
}

fn pinecone_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"code": code, "message": message, "details": []}).to_string(),
    )
        .into_response()
}

fn invalid(message: &str) -> Response {
    pinecone_error(StatusCode::BAD_REQUEST, 3, message)
}

fn ok_json(value: Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn handle(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let header_value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let json_body: Option<Value> = serde_json::from_slice(&body).ok();
    let recorded = Recorded {
        method: method.clone(),
        path: uri.path().to_owned(),
        raw_query: uri.query().map(str::to_owned),
        query: query.clone(),
        api_key: header_value("api-key"),
        api_version: header_value("x-pinecone-api-version"),
        content_type: header_value("content-type"),
        body_bytes: body.len(),
        body: json_body.clone(),
    };
    let (injected, delay) = {
        let mut s = state.lock().expect("fake state lock");
        s.requests.push(recorded.clone());
        (s.injected.pop_front().flatten(), s.delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if let Some((status, body)) = injected {
        return (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    }
    if recorded.api_key.as_deref() != Some(API_KEY) {
        return pinecone_error(StatusCode::UNAUTHORIZED, 16, "Invalid API Key");
    }
    if recorded.api_version.as_deref() != Some(API_VERSION) {
        let message = format!("Unsupported API version: {}", recorded.api_version.unwrap_or_default());
        return invalid(&message);
    }
    if body.len() > MAX_REQUEST_BYTES {
        return invalid(&format!("Request size {}MB exceeds the maximum supported size of 2MB", body.len() >> 20));
    }
    let mut s = state.lock().expect("fake state lock");
    match (method, uri.path()) {
        (Method::POST, "/vectors/upsert") => match json_body {
            Some(body) => upsert(&mut s, &body),
            None => invalid("Invalid JSON body"),
        },
        (Method::POST, "/vectors/delete") => match json_body {
            Some(body) => delete(&mut s, &body),
            None => invalid("Invalid JSON body"),
        },
        (Method::POST, "/query") => match json_body {
            Some(body) => query_vectors(&s, &body),
            None => invalid("Invalid JSON body"),
        },
        (Method::GET, "/vectors/list") => list(&s, &query),
        _ => pinecone_error(StatusCode::NOT_FOUND, 5, "Not Found"),
    }
}

fn namespace_of(body: &Value) -> String {
    body.get("namespace").and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// A vector of the index's dimension, else Pinecone's error message.
fn parse_values(value: Option<&Value>) -> Result<Vec<f32>, String> {
    let values: Vec<f32> = value
        .and_then(Value::as_array)
        .ok_or("Missing values")?
        .iter()
        .map(|v| v.as_f64().map(|f| f as f32).ok_or("Values must be numbers"))
        .collect::<Result<_, _>>()?;
    if values.len() != DIMENSION {
        return Err(format!("Vector dimension {} does not match the dimension of the index {DIMENSION}", values.len()));
    }
    Ok(values)
}

/// Pinecone keeps metadata numbers as 64-bit floats.
fn numbers_as_floats(value: &Value) -> Value {
    match value {
        Value::Number(n) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), numbers_as_floats(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().map(numbers_as_floats).collect()),
        other => other.clone(),
    }
}

fn upsert(s: &mut FakeState, body: &Value) -> Response {
    let Some(vectors) = body.get("vectors").and_then(Value::as_array) else {
        return invalid("Missing vectors");
    };
    if vectors.is_empty() || vectors.len() > 1000 {
        return invalid(&format!("Upsert request must contain 1 to 1000 vectors, got {}", vectors.len()));
    }
    let mut parsed = Vec::new();
    for vector in vectors {
        let Some(id) = vector.get("id").and_then(Value::as_str).filter(|id| !id.is_empty()) else {
            return invalid("Vector ID must not be empty");
        };
        let values = match parse_values(vector.get("values")) {
            Ok(values) => values,
            Err(message) => return invalid(&message),
        };
        let metadata = vector.get("metadata").map(numbers_as_floats);
        parsed.push((id.to_owned(), StoredVector { values, metadata }));
    }
    let count = parsed.len();
    s.namespaces.entry(namespace_of(body)).or_default().extend(parsed);
    ok_json(json!({"upsertedCount": count}))
}

fn list(s: &FakeState, query: &HashMap<String, String>) -> Response {
    let namespace = query.get("namespace").cloned().unwrap_or_default();
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let limit = match query.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(limit)) if (1..=100).contains(&limit) => limit,
        Some(_) => return invalid("limit must be between 1 and 100"),
    };
    let after = match query.get("paginationToken") {
        None => None,
        Some(token) => match token.strip_prefix("pt:/") {
            Some(last) => Some(last.to_owned()),
            None => return invalid("Invalid pagination token"),
        },
    };
    let empty = BTreeMap::new();
    let stored = s.namespaces.get(&namespace).unwrap_or(&empty);
    let mut matching =
        stored.keys().filter(|id| id.starts_with(&prefix)).filter(|id| after.as_ref().is_none_or(|last| *id > last));
    let page: Vec<&String> = matching.by_ref().take(limit).collect();
    let more = matching.next().is_some();
    let mut response = json!({"namespace": namespace, "usage": {"readUnits": 1}});
    if !page.is_empty() {
        response["vectors"] = page.iter().map(|id| json!({"id": id})).collect();
    }
    if more && let Some(last) = page.last() {
        // An opaque token with characters that must be percent-encoded in a query string.
        response["pagination"] = json!({"next": format!("pt:/{last}")});
    }
    ok_json(response)
}

fn delete(s: &mut FakeState, body: &Value) -> Response {
    if body.get("filter").is_some() {
        return invalid("Serverless and Starter indexes do not support deleting with metadata filtering");
    }
    let namespace = namespace_of(body);
    if body.get("deleteAll").and_then(Value::as_bool) == Some(true) {
        s.namespaces.remove(&namespace);
        return ok_json(json!({}));
    }
    let Some(ids) = body.get("ids").and_then(Value::as_array) else {
        return invalid("Delete request must specify ids, deleteAll or filter");
    };
    if ids.len() > 1000 {
        return invalid(&format!("Delete request may contain at most 1000 ids, got {}", ids.len()));
    }
    if let Some(stored) = s.namespaces.get_mut(&namespace) {
        for id in ids.iter().filter_map(Value::as_str) {
            stored.remove(id);
        }
    }
    ok_json(json!({}))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let denominator = norm(a) * norm(b);
    if denominator == 0.0 { 0.0 } else { dot / denominator }
}

fn query_vectors(s: &FakeState, body: &Value) -> Response {
    let vector = match parse_values(body.get("vector")) {
        Ok(vector) => vector,
        Err(message) => return invalid(&message),
    };
    let top_k = match body.get("topK").and_then(Value::as_u64) {
        Some(k) if (1..=10_000).contains(&k) => k as usize,
        _ => return invalid("topK must be between 1 and 10000"),
    };
    let include_metadata = body.get("includeMetadata").and_then(Value::as_bool).unwrap_or(false);
    let include_values = body.get("includeValues").and_then(Value::as_bool).unwrap_or(false);
    let namespace = namespace_of(body);
    let mut scored: Vec<(f32, &String, &StoredVector)> = s
        .namespaces
        .get(&namespace)
        .map(|ns| ns.iter().map(|(id, v)| (cosine(&vector, &v.values), id, v)).collect())
        .unwrap_or_default();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let matches: Vec<Value> = scored
        .into_iter()
        .take(top_k)
        .map(|(score, id, v)| {
            let mut m = json!({"id": id, "score": score, "values": []});
            if include_values {
                m["values"] = json!(v.values);
            }
            if include_metadata && let Some(metadata) = &v.metadata {
                m["metadata"] = metadata.clone();
            }
            m
        })
        .collect();
    ok_json(json!({"matches": matches, "namespace": namespace, "usage": {"readUnits": 5}}))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn unit(v: [f32; DIMENSION]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

fn chunk(document_id: &str, chunk_index: u32, page: Option<u32>, text: &str, embedding: Vec<f32>) -> ChunkRecord {
    ChunkRecord {
        document_id: document_id.to_owned(),
        chunk_index,
        source: format!("{document_id}.pdf"),
        page,
        text: text.to_owned(),
        embedding,
    }
}

/// `n` chunks with distinct, deterministic embeddings.
fn many_chunks(document_id: &str, n: u32) -> Vec<ChunkRecord> {
    (0..n)
        .map(|i| {
            let x = i as f32;
            let embedding = unit([1.0 + (x * 0.37).sin().abs(), (x * 0.11).cos().abs(), x % 7.0 + 0.5, 0.25]);
            chunk(document_id, i, Some(i / 10 + 1), &format!("{document_id} chunk {i}"), embedding)
        })
        .collect()
}

/// A vector as it reads once sent as JSON (f32 digits, parsed back as f64).
fn as_sent(vector: &[f32]) -> Value {
    serde_json::from_str(&serde_json::to_string(vector).expect("encode vector")).expect("decode vector")
}

fn ids(document_id: &str, n: u32) -> Vec<String> {
    let mut ids: Vec<String> = (0..n).map(|i| format!("{document_id}#{i}")).collect();
    ids.sort();
    ids
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn body_ids(request: &Recorded) -> Vec<String> {
    let body = request.body.as_ref().expect("delete request has a JSON body");
    body["ids"]
        .as_array()
        .expect("ids is an array")
        .iter()
        .map(|id| id.as_str().expect("ids are strings").to_owned())
        .collect()
}

fn upserted_count(request: &Recorded) -> usize {
    request.body.as_ref().expect("upsert has a JSON body")["vectors"].as_array().expect("vectors array").len()
}

fn of_path<'a>(requests: &'a [Recorded], method: &Method, path: &str) -> Vec<&'a Recorded> {
    requests.iter().filter(|r| r.method == *method && r.path == path).collect()
}

/// Every request carries the key, the API version and the JSON content type.
fn assert_headers(requests: &[Recorded]) {
    assert!(!requests.is_empty(), "no requests were sent");
    for request in requests {
        assert_eq!(request.api_key.as_deref(), Some(API_KEY), "Api-Key of {} {}", request.method, request.path);
        assert_eq!(request.api_version.as_deref(), Some(API_VERSION), "version of {} {}", request.method, request.path);
        assert_eq!(request.content_type.as_deref(), Some("application/json"), "content type of {}", request.path);
    }
}

/// The key appears neither in the error's message nor in its debug form.
fn assert_no_key(error: &StoreError) {
    assert!(!error.to_string().contains(API_KEY), "API key leaked in {error}");
    assert!(!format!("{error:?}").contains(API_KEY), "API key leaked in {error:?}");
}

fn permanent_message(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(error @ StoreError::Permanent(_)) => {
            assert_no_key(&error);
            error.to_string()
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn transient_message(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(error @ StoreError::Transient(_)) => {
            assert_no_key(&error);
            error.to_string()
        }
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn list_query(namespace_encoded: &str, prefix_encoded: &str) -> String {
    format!("namespace={namespace_encoded}&prefix={prefix_encoded}&limit=100")
}

// ---------------------------------------------------------------------------------------------
// Behaviour
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn replace_sends_exact_requests_and_search_returns_best_chunk_first() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    let chunks = vec![
        chunk("doc-1", 0, Some(1), "Refunds take 5 business days.", unit([1.0, 0.0, 0.0, 0.0])),
        chunk("doc-1", 1, Some(2), "Reset your password from the login page.", unit([0.0, 1.0, 0.0, 0.0])),
        chunk("doc-1", 2, None, "Shipping is free above 50 EUR.", unit([0.0, 0.0, 1.0, 0.0])),
    ];
    store.replace_document(ALICE, "doc-1", chunks).await.expect("replace doc-1");

    let requests = fake.requests();
    assert_headers(&requests);
    assert_eq!(requests.len(), 2, "one list (nothing to delete) and one upsert: {requests:?}");
    assert_eq!((&requests[0].method, requests[0].path.as_str()), (&Method::GET, "/vectors/list"));
    assert_eq!(
        requests[0].raw_query.as_deref(),
        Some(list_query("alice%2Bsupport%40example.com", "doc-1%23").as_str())
    );
    assert_eq!(requests[0].query.get("namespace").map(String::as_str), Some(ALICE));
    assert_eq!(requests[0].query.get("prefix").map(String::as_str), Some("doc-1#"));
    assert_eq!((&requests[1].method, requests[1].path.as_str()), (&Method::POST, "/vectors/upsert"));
    assert_eq!(
        requests[1].body,
        Some(json!({
            "vectors": [
                {"id": "doc-1#0", "values": [1.0, 0.0, 0.0, 0.0], "metadata": {
                    "document_id": "doc-1", "chunk_index": 0, "source": "doc-1.pdf", "page": 1,
                    "text": "Refunds take 5 business days.", "agent_email": ALICE}},
                {"id": "doc-1#1", "values": [0.0, 1.0, 0.0, 0.0], "metadata": {
                    "document_id": "doc-1", "chunk_index": 1, "source": "doc-1.pdf", "page": 2,
                    "text": "Reset your password from the login page.", "agent_email": ALICE}},
                {"id": "doc-1#2", "values": [0.0, 0.0, 1.0, 0.0], "metadata": {
                    "document_id": "doc-1", "chunk_index": 2, "source": "doc-1.pdf",
                    "text": "Shipping is free above 50 EUR.", "agent_email": ALICE}},
            ],
            "namespace": ALICE,
        }))
    );
    assert_eq!(fake.ids(ALICE), ids("doc-1", 3));

    fake.clear_requests();
    let query = unit([0.1, 0.9, 0.2, 0.0]);
    let hits = store.search(ALICE, &query, 3, 0.0).await.expect("search");
    let requests = fake.requests();
    assert_headers(&requests);
    assert_eq!(requests.len(), 1);
    assert_eq!((&requests[0].method, requests[0].path.as_str()), (&Method::POST, "/query"));
    assert_eq!(
        requests[0].body,
        Some(
            json!({"namespace": ALICE, "vector": as_sent(&query), "topK": 3, "includeMetadata": true, "includeValues": false})
        )
    );

    assert_eq!(hits.len(), 3, "{hits:?}");
    let best = &hits[0];
    assert_eq!(
        (best.document_id.as_str(), best.chunk_index, best.source.as_str(), best.page, best.text.as_str()),
        ("doc-1", 1, "doc-1.pdf", Some(2), "Reset your password from the login page.")
    );
    assert!((best.score - cosine(&query, &unit([0.0, 1.0, 0.0, 0.0]))).abs() < 1e-5, "score {}", best.score);
    assert_eq!(hits[1].chunk_index, 2, "shipping is second: {hits:?}");
    assert_eq!(hits[1].page, None, "a chunk without a page comes back without one");
    assert_eq!(hits[2].chunk_index, 0);
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score), "best first: {hits:?}");
}

#[tokio::test]
async fn search_applies_min_score_and_top_k() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    let chunks = vec![
        chunk("doc-1", 0, None, "a", unit([1.0, 0.0, 0.0, 0.0])),
        chunk("doc-1", 1, None, "b", unit([1.0, 1.0, 0.0, 0.0])),
        chunk("doc-1", 2, None, "c", unit([0.0, 0.0, 1.0, 0.0])),
        chunk("doc-1", 3, None, "d", unit([0.0, 0.0, 0.0, 1.0])),
    ];
    store.replace_document(ALICE, "doc-1", chunks).await.expect("replace");
    let query = unit([1.0, 0.0, 0.0, 0.0]);

    let hits = store.search(ALICE, &query, 10, 0.5).await.expect("search");
    let found: Vec<(u32, &str)> = hits.iter().map(|h| (h.chunk_index, h.text.as_str())).collect();
    assert_eq!(found, vec![(0, "a"), (1, "b")], "orthogonal chunks score 0 and are dropped");
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    assert!((hits[1].score - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-5);

    let hits = store.search(ALICE, &query, 1, 0.0).await.expect("search top 1");
    assert_eq!(hits.iter().map(|h| h.chunk_index).collect::<Vec<_>>(), vec![0]);

    fake.clear_requests();
    assert_eq!(store.search(ALICE, &query, 0, 0.0).await.expect("top_k 0"), Vec::<SearchHit>::new());
    assert!(fake.requests().is_empty(), "top_k 0 needs no request");
}

#[tokio::test]
async fn search_of_an_empty_namespace_returns_nothing() {
    let fake = FakePinecone::start().await;
    let hits = fake.store().search(BOB, &unit([1.0, 0.0, 0.0, 0.0]), 5, 0.0).await.expect("search");
    assert!(hits.is_empty());
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body.as_ref().map(|b| b["namespace"].clone()), Some(json!(BOB)));
}

#[tokio::test]
async fn replace_with_fewer_chunks_leaves_no_stale_vectors() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    // A document whose ID extends ours ("doc-1" is a prefix of "doc-10") must survive.
    store.replace_document(ALICE, "doc-10", many_chunks("doc-10", 2)).await.expect("replace doc-10");

    fake.clear_requests();
    store.replace_document(ALICE, "doc-1", many_chunks("doc-1", 1050)).await.expect("replace with 1050 chunks");
    let requests = fake.requests();
    assert_headers(&requests);
    let upserts = of_path(&requests, &Method::POST, "/vectors/upsert");
    assert_eq!(upserts.iter().map(|r| upserted_count(r)).collect::<Vec<_>>(), [vec![100; 10], vec![50]].concat());
    assert_eq!(sorted(fake.ids(ALICE)), sorted([ids("doc-1", 1050), ids("doc-10", 2)].concat()));

    fake.clear_requests();
    let fewer = vec![
        chunk("doc-1", 0, Some(1), "new first chunk", unit([0.0, 0.0, 0.0, 1.0])),
        chunk("doc-1", 1, Some(1), "new second chunk", unit([0.0, 0.0, 1.0, 0.0])),
        chunk("doc-1", 2, Some(2), "new third chunk", unit([0.0, 1.0, 0.0, 0.0])),
    ];
    store.replace_document(ALICE, "doc-1", fewer).await.expect("replace with 3 chunks");
    let requests = fake.requests();
    assert_headers(&requests);

    // Listing follows the pagination token through 11 pages of 100 (the last has 50).
    let lists = of_path(&requests, &Method::GET, "/vectors/list");
    assert_eq!(lists.len(), 11, "{lists:?}");
    assert_eq!(lists[0].raw_query.as_deref(), Some(list_query("alice%2Bsupport%40example.com", "doc-1%23").as_str()));
    assert!(!lists[0].query.contains_key("paginationToken"));
    for page in &lists[1..] {
        let raw = page.raw_query.as_deref().expect("query string");
        assert!(raw.starts_with(&list_query("alice%2Bsupport%40example.com", "doc-1%23")), "{raw}");
        assert!(raw.contains("&paginationToken=pt%3A%2Fdoc-1%23"), "token is percent-encoded: {raw}");
    }
    // Deletion: every old ID exactly once, at most 1000 per request, and nothing of doc-10.
    let deletes = of_path(&requests, &Method::POST, "/vectors/delete");
    assert_eq!(deletes.iter().map(|r| body_ids(r).len()).collect::<Vec<_>>(), vec![1000, 50]);
    for delete in &deletes {
        assert_eq!(delete.body.as_ref().map(|b| b["namespace"].clone()), Some(json!(ALICE)));
        assert_eq!(delete.body.as_ref().and_then(Value::as_object).map(Map::len), Some(2), "only ids + namespace");
    }
    let deleted: Vec<String> = deletes.iter().flat_map(|r| body_ids(r)).collect();
    assert_eq!(sorted(deleted), ids("doc-1", 1050));
    // Delete strictly before upsert.
    let order: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    let last_delete = order.iter().rposition(|p| *p == "/vectors/delete").expect("a delete");
    let first_upsert = order.iter().position(|p| *p == "/vectors/upsert").expect("an upsert");
    assert!(last_delete < first_upsert, "{order:?}");
    assert_eq!(of_path(&requests, &Method::POST, "/vectors/upsert").len(), 1);

    assert_eq!(fake.ids(ALICE), sorted([ids("doc-1", 3), ids("doc-10", 2)].concat()));
    let hits = store.search(ALICE, &unit([1.0, 1.0, 1.0, 1.0]), 100, -1.0).await.expect("search");
    let mut doc1: Vec<(u32, String)> =
        hits.iter().filter(|h| h.document_id == "doc-1").map(|h| (h.chunk_index, h.text.clone())).collect();
    doc1.sort();
    assert_eq!(
        doc1,
        vec![(0, "new first chunk".to_owned()), (1, "new second chunk".to_owned()), (2, "new third chunk".to_owned())]
    );
    assert_eq!(hits.iter().filter(|h| h.document_id == "doc-10").count(), 2);
}

#[tokio::test]
async fn upserts_are_split_to_stay_under_two_megabytes() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    // 100 chunks of ~30 KB text: ~3 MB, too much for one request even though it is 100 vectors.
    let chunks: Vec<ChunkRecord> = many_chunks("big", 100)
        .into_iter()
        .map(|mut c| {
            c.text = format!("{} {}", c.chunk_index, "é".repeat(15_000));
            c
        })
        .collect();
    store.replace_document(ALICE, "big", chunks).await.expect("replace big document");
    let requests = fake.requests();
    let upserts = of_path(&requests, &Method::POST, "/vectors/upsert");
    assert!(upserts.len() >= 2, "{} upsert requests", upserts.len());
    let sizes: Vec<usize> = upserts.iter().map(|r| r.body_bytes).collect();
    assert!(sizes.iter().all(|&size| size <= 2_000_000), "sizes {sizes:?}");
    assert_eq!(upserts.iter().map(|r| upserted_count(r)).sum::<usize>(), 100);
    assert_eq!(fake.ids(ALICE), ids("big", 100));
    let stored = fake.vector(ALICE, "big#42").expect("chunk 42 stored");
    assert_eq!(stored.metadata.as_ref().and_then(|m| m["text"].as_str()).map(|t| t.chars().count()), Some(15_003));
}

#[tokio::test]
async fn delete_document_removes_all_its_chunks_and_nothing_else() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    store.replace_document(ALICE, "doc-1", many_chunks("doc-1", 120)).await.expect("replace doc-1");
    store.replace_document(ALICE, "doc-2", many_chunks("doc-2", 3)).await.expect("replace doc-2");
    // Listed by the prefix "doc-1#" but not a chunk of doc-1.
    fake.seed(
        ALICE,
        "doc-1#appendix#0",
        unit([1.0, 0.0, 0.0, 0.0]),
        json!({"document_id": "doc-1#appendix", "chunk_index": 0, "source": "a.pdf", "text": "t", "agent_email": ALICE}),
    );
    store.replace_document(BOB, "doc-1", many_chunks("doc-1", 2)).await.expect("replace bob's doc-1");

    fake.clear_requests();
    store.delete_document(ALICE, "doc-1").await.expect("delete doc-1");
    let requests = fake.requests();
    assert_headers(&requests);
    assert_eq!(of_path(&requests, &Method::GET, "/vectors/list").len(), 2, "two pages of ids");
    let deletes = of_path(&requests, &Method::POST, "/vectors/delete");
    assert_eq!(deletes.len(), 1);
    assert_eq!(sorted(body_ids(deletes[0])), ids("doc-1", 120));
    assert!(of_path(&requests, &Method::POST, "/vectors/upsert").is_empty());

    assert_eq!(fake.ids(ALICE), sorted([ids("doc-1#appendix", 1), ids("doc-2", 3)].concat()));
    assert_eq!(fake.ids(BOB), ids("doc-1", 2), "bob's namespace is untouched");
    let hits = store.search(ALICE, &unit([1.0, 1.0, 1.0, 1.0]), 100, -1.0).await.expect("search");
    assert!(hits.iter().all(|h| h.document_id != "doc-1"), "{hits:?}");

    // Deleting what is not there sends no delete and succeeds.
    fake.clear_requests();
    store.delete_document(ALICE, "doc-1").await.expect("delete again");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/vectors/list");
}

#[tokio::test]
async fn agents_are_isolated_by_namespace() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    let embedding = unit([1.0, 0.0, 0.0, 0.0]);
    store
        .replace_document(ALICE, "doc-1", vec![chunk("doc-1", 0, None, "alice's secret", embedding.clone())])
        .await
        .expect("alice replace");
    store
        .replace_document(BOB, "doc-1", vec![chunk("doc-1", 0, None, "bob's text", embedding.clone())])
        .await
        .expect("bob replace");

    let alice = store.search(ALICE, &embedding, 10, 0.0).await.expect("alice search");
    assert_eq!(alice.iter().map(|h| h.text.as_str()).collect::<Vec<_>>(), vec!["alice's secret"]);
    let bob = store.search(BOB, &embedding, 10, 0.0).await.expect("bob search");
    assert_eq!(bob.iter().map(|h| h.text.as_str()).collect::<Vec<_>>(), vec!["bob's text"]);
    let carol = store.search("carol@example.com", &embedding, 10, 0.0).await.expect("carol search");
    assert!(carol.is_empty(), "{carol:?}");

    store.delete_document(BOB, "doc-1").await.expect("bob delete");
    assert!(fake.ids(BOB).is_empty());
    assert_eq!(fake.ids(ALICE), vec!["doc-1#0".to_owned()]);

    // The empty namespace is Pinecone's shared default one: refused before any request.
    fake.clear_requests();
    permanent_message(store.search("", &embedding, 10, 0.0).await);
    permanent_message(store.replace_document("", "doc-1", Vec::new()).await);
    permanent_message(store.delete_document("", "doc-1").await);
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn matches_of_another_agent_are_dropped() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    let embedding = unit([1.0, 0.0, 0.0, 0.0]);
    store
        .replace_document(ALICE, "doc-1", vec![chunk("doc-1", 0, None, "alice's text", unit([1.0, 0.2, 0.0, 0.0]))])
        .await
        .expect("replace");
    // Misplaced vectors in alice's namespace: another agent's chunk (the best match) and one
    // without metadata.
    fake.seed(
        ALICE,
        "doc-9#0",
        embedding.clone(),
        json!({"document_id": "doc-9", "chunk_index": 0, "source": "m.pdf", "text": "mallory's", "agent_email": "mallory@example.com"}),
    );
    fake.lock()
        .namespaces
        .get_mut(ALICE)
        .expect("alice namespace")
        .insert("doc-8#0".to_owned(), StoredVector { values: embedding.clone(), metadata: None });

    let hits = store.search(ALICE, &embedding, 10, 0.0).await.expect("search");
    assert_eq!(hits.iter().map(|h| h.text.as_str()).collect::<Vec<_>>(), vec!["alice's text"]);
}

#[tokio::test]
async fn a_failed_replace_converges_when_retried() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    store.replace_document(ALICE, "doc-1", many_chunks("doc-1", 150)).await.expect("first replace");

    // list (2 pages) and delete pass; the first upsert batch passes, the second fails.
    for _ in 0..4 {
        fake.pass_next();
    }
    fake.fail_next(StatusCode::SERVICE_UNAVAILABLE, r#"{"code":14,"message":"Service is unavailable","details":[]}"#);
    let message = transient_message(store.replace_document(ALICE, "doc-1", many_chunks("doc-1", 130)).await);
    assert!(message.contains("Service is unavailable"), "{message}");
    assert_eq!(fake.ids(ALICE), ids("doc-1", 100), "the first batch landed before the failure");

    store.replace_document(ALICE, "doc-1", many_chunks("doc-1", 130)).await.expect("retried replace");
    assert_eq!(fake.ids(ALICE), ids("doc-1", 130));
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limit_is_transient() {
    let fake = FakePinecone::start().await;
    fake.fail_next(
        StatusCode::TOO_MANY_REQUESTS,
        r#"{"code":8,"message":"Request rate limit exceeded for index docs","details":[]}"#,
    );
    let message = transient_message(fake.store().search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    assert!(message.contains("429"), "{message}");
    assert!(message.contains("RESOURCE_EXHAUSTED: Request rate limit exceeded for index docs"), "{message}");
}

#[tokio::test]
async fn a_redirect_is_a_permanent_error_and_the_key_never_leaves_for_the_other_host() {
    // A second fake on another port stands for "another host": it records every request.
    let elsewhere = FakePinecone::start().await;
    let location = format!("{}/query", elsewhere.host());
    let app = Router::new().fallback(move || {
        let location = location.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response() }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the redirecting host");
    let addr = listener.local_addr().expect("redirecting host address");
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve the redirecting host");
    });
    let store = store_for(&format!("http://{addr}"), API_KEY, API_VERSION, 10);
    let message = permanent_message(store.search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    server.abort();
    assert!(message.contains("redirect") && message.contains(&elsewhere.host()), "{message}");
    assert!(!message.contains(API_KEY), "{message}");
    assert!(elsewhere.requests().is_empty(), "the redirect was followed: {:?}", elsewhere.requests());
}

#[tokio::test]
async fn server_errors_are_transient() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    fake.fail_next(StatusCode::SERVICE_UNAVAILABLE, "upstream connect error or disconnect/reset before headers");
    let message = transient_message(store.replace_document(ALICE, "doc-1", many_chunks("doc-1", 2)).await);
    assert!(message.contains("503") && message.contains("upstream connect error"), "{message}");

    fake.fail_next(StatusCode::INTERNAL_SERVER_ERROR, r#"{"error":{"code":"INTERNAL","message":"Internal error"}}"#);
    let message = transient_message(store.delete_document(ALICE, "doc-1").await);
    assert!(message.contains("500") && message.contains("INTERNAL: Internal error"), "{message}");
}

#[tokio::test]
async fn bad_requests_are_permanent_with_pinecone_message() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    // A real 400 from the fake: the embedding does not match the index dimension.
    let wrong_dimension = vec![chunk("doc-1", 0, None, "x", vec![0.6, 0.8, 0.0])];
    let message = permanent_message(store.replace_document(ALICE, "doc-1", wrong_dimension).await);
    assert!(message.contains("400"), "{message}");
    assert!(
        message.contains("INVALID_ARGUMENT: Vector dimension 3 does not match the dimension of the index 4"),
        "{message}"
    );

    // The other error shape.
    fake.fail_next(
        StatusCode::BAD_REQUEST,
        r#"{"error":{"code":"INVALID_ARGUMENT","message":"topK must be between 1 and 10000"}}"#,
    );
    let message = permanent_message(store.search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    assert!(message.contains("INVALID_ARGUMENT: topK must be between 1 and 10000"), "{message}");

    fake.fail_next(StatusCode::NOT_FOUND, r#"{"code":5,"message":"Namespace not found","details":[]}"#);
    let message = permanent_message(store.delete_document(ALICE, "doc-1").await);
    assert!(message.contains("404") && message.contains("NOT_FOUND: Namespace not found"), "{message}");

    fake.fail_next(StatusCode::FORBIDDEN, r#"{"code":7,"message":"Forbidden","details":[]}"#);
    let message = permanent_message(store.search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    assert!(message.contains("403") && message.contains("PERMISSION_DENIED: Forbidden"), "{message}");
}

#[tokio::test]
async fn invalid_key_or_api_version_is_permanent() {
    let fake = FakePinecone::start().await;
    let wrong_key = "pcsk_wrong_0000111122223333";
    let store = store_for(&fake.host(), wrong_key, API_VERSION, 10);
    let message = permanent_message(store.search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    assert!(message.contains("401") && message.contains("UNAUTHENTICATED: Invalid API Key"), "{message}");
    assert!(!message.contains(wrong_key), "{message}");
    let message = permanent_message(store.replace_document(ALICE, "doc-1", many_chunks("doc-1", 1)).await);
    assert!(message.contains("Invalid API Key") && !message.contains(wrong_key), "{message}");
    assert_eq!(fake.requests()[0].api_key.as_deref(), Some(wrong_key));

    let store = store_for(&fake.host(), API_KEY, "1999-01", 10);
    let message = permanent_message(store.search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    assert!(message.contains("Unsupported API version: 1999-01"), "{message}");
    assert!(fake.ids(ALICE).is_empty());
}

#[tokio::test]
async fn an_echoed_key_is_redacted() {
    let fake = FakePinecone::start().await;
    let body = json!({"code": 16, "message": format!("API key {API_KEY} is revoked"), "details": []}).to_string();
    fake.fail_next(StatusCode::UNAUTHORIZED, &body);
    let message = permanent_message(fake.store().delete_document(ALICE, "doc-1").await);
    assert!(message.contains("API key [redacted] is revoked"), "{message}");
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let store = store_for(&format!("http://{addr}"), API_KEY, API_VERSION, 5);
    transient_message(store.search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    transient_message(store.replace_document(ALICE, "doc-1", many_chunks("doc-1", 1)).await);
    transient_message(store.delete_document(ALICE, "doc-1").await);
}

#[tokio::test]
async fn a_timeout_is_transient() {
    let fake = FakePinecone::start().await;
    fake.set_delay(Duration::from_secs(5));
    let store = store_for(&fake.host(), API_KEY, API_VERSION, 1);
    let started = Instant::now();
    let message = transient_message(store.search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    assert!(started.elapsed() < Duration::from_secs(4), "gave up after {:?}", started.elapsed());
    assert!(message.to_lowercase().contains("timed out") || message.contains("timeout"), "{message}");
}

#[tokio::test]
async fn an_unparseable_success_body_is_permanent() {
    let fake = FakePinecone::start().await;
    fake.fail_next(StatusCode::OK, "<html>not pinecone</html>");
    let message = permanent_message(fake.store().search(ALICE, &unit([1.0, 0.0, 0.0, 0.0]), 3, 0.0).await);
    assert!(message.contains("unexpected response") && message.contains("not pinecone"), "{message}");
}

#[tokio::test]
async fn non_finite_embeddings_are_refused_before_sending() {
    let fake = FakePinecone::start().await;
    let store = fake.store();
    let chunks = vec![chunk("doc-1", 0, None, "x", vec![f32::NAN, 0.0, 0.0, 1.0])];
    let message = permanent_message(store.replace_document(ALICE, "doc-1", chunks).await);
    assert!(message.contains("chunk 0"), "{message}");
    permanent_message(store.search(ALICE, &[f32::INFINITY, 0.0, 0.0, 0.0], 3, 0.0).await);
    assert!(fake.requests().is_empty());
}
