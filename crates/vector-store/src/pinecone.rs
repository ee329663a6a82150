//! Pinecone's data-plane REST API (serverless index) as a [`VectorStore`].
//!
//! Each agent is one namespace (named by the agent's email), so agents are isolated by the
//! index itself; search results are still checked against the `agent_email` metadata as a
//! second line of defence. A chunk's vector ID is `<document_id>#<chunk_index>`.
//!
//! Serverless indexes cannot delete by metadata filter, so a document is deleted by listing its
//! IDs by prefix (`GET /vectors/list?prefix=<document_id>%23`, following the pagination token)
//! and deleting them by ID (`POST /vectors/delete`, at most 1000 IDs per call). Replacing a
//! document deletes its existing vectors first and then upserts the new ones (at most 100
//! vectors and about 2 MB per request), so re-ingesting a document with fewer chunks leaves no
//! stale higher-index chunks behind.
//!
//! Requests go through [`provider_http`], like every other provider client: a client that
//! follows no redirects (reqwest would carry the custom `Api-Key` header to another host) and
//! refuses TLS below 1.2, the key in a header marked sensitive, the whole body read before it
//! is judged.
//!
//! Errors: the statuses [`provider_http::is_transient_status`] names (408, 425, 429, 5xx but
//! 501/505), timeouts and connection failures are [`StoreError::Transient`]; a redirect (a
//! wrong `index_host`) and other statuses are [`StoreError::Permanent`]. Messages carry
//! Pinecone's own error message (`{"code":N,"message":..}` or `{"error":{"code":..,"message":..}}`,
//! else the raw body) and never the API key.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{ChunkRecord, PineconeSettings, SearchHit, StoreError};

/// Most vectors per upsert request (Pinecone accepts 1000; 100 is its recommendation).
const UPSERT_BATCH_VECTORS: usize = 100;
/// Largest upsert body we send; Pinecone rejects requests above 2 MB.
const UPSERT_BATCH_BYTES: usize = 2_000_000;
/// Most IDs per delete request (Pinecone's limit).
const DELETE_BATCH_IDS: usize = 1000;
/// Page size of `GET /vectors/list` (Pinecone's maximum).
const LIST_PAGE_SIZE: &str = "100";
/// Longest raw response body quoted in an error message.
const MAX_QUOTED_CHARS: usize = 500;

/// A [`VectorStore`] over one Pinecone serverless index, one namespace per agent.
#[derive(Debug, Clone)]
pub struct PineconeStore {
    /// The error is kept until the first call: constructors are infallible by interface.
    client: Result<reqwest::Client, String>,
    /// Scheme and host, without a trailing slash.
    base_url: String,
    api_key: SecretString,
    api_version: String,
}

impl PineconeStore {
    /// A store for the index at `settings.index_host` (with or without an `http://` or
    /// `https://` prefix; `https` when there is none). A `timeout_secs` of 0 disables the
    /// per-request timeout.
    pub fn new(settings: &PineconeSettings) -> Self {
        Self {
            client: provider_http::build_client(Duration::from_secs(settings.timeout_secs)),
            base_url: base_url(&settings.index_host),
            api_key: settings.api_key.clone(),
            api_version: settings.api_version.clone(),
        }
    }

    /// A request to `path` with the authentication, version and content-type headers.
    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, StoreError> {
        let client = self.client.as_ref().map_err(|e| StoreError::Permanent(format!("pinecone: {e}")))?;
        let key = provider_http::secret_header(self.api_key.expose_secret().trim())
            .map_err(|_| StoreError::Permanent("the Pinecone API key is not a valid HTTP header value".to_owned()))?;
        Ok(client
            .request(method, format!("{}{path}", self.base_url))
            .header("Api-Key", key)
            .header("X-Pinecone-Api-Version", self.api_version.as_str())
            .header(CONTENT_TYPE, "application/json"))
    }

    /// The index's vector dimension and vector count (`POST /describe_index_stats`): a cheap
    /// call that proves the host and the key (`mailroom doctor`).
    pub async fn describe(&self) -> Result<IndexStats, StoreError> {
        let builder = self.request(Method::POST, "/describe_index_stats")?.body("{}");
        self.send_json("describe_index_stats", builder).await
    }

    /// Sends a request and returns the body of a 2xx response; any other outcome is an error.
    async fn send(&self, op: &str, builder: RequestBuilder) -> Result<String, StoreError> {
        let key = self.api_key.expose_secret();
        let response = provider_http::send(builder, key).await.map_err(|e| {
            let message = self.redact(format!("pinecone {op}: {e}"));
            if e.is_transient() { StoreError::Transient(message) } else { StoreError::Permanent(message) }
        })?;
        if let Some(redirect) = provider_http::redirect_message(&response, key) {
            return Err(StoreError::Permanent(self.redact(format!("pinecone {op}: {redirect}"))));
        }
        let body = String::from_utf8_lossy(&response.body).into_owned();
        let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if response.is_success() { Ok(body) } else { Err(self.status_error(op, status, &body)) }
    }

    /// [`Self::send`], then decodes the JSON body.
    async fn send_json<T: DeserializeOwned>(&self, op: &str, builder: RequestBuilder) -> Result<T, StoreError> {
        let body = self.send(op, builder).await?;
        serde_json::from_str(&body).map_err(|e| {
            StoreError::Permanent(
                self.redact(format!(
                    "pinecone {op}: unexpected response ({e}): {}",
                    quote(&body).unwrap_or("empty body")
                )),
            )
        })
    }

    /// Maps a non-2xx response to a [`StoreError`].
    fn status_error(&self, op: &str, status: StatusCode, body: &str) -> StoreError {
        let message = self.redact(format!("pinecone {op}: HTTP {}: {}", status.as_u16(), error_message(status, body)));
        tracing::debug!(op, status = status.as_u16(), %message, "pinecone request failed");
        if provider_http::is_transient_status(status.as_u16()) {
            StoreError::Transient(message)
        } else {
            StoreError::Permanent(message)
        }
    }

    /// Removes the API key from a message, should anything (a server echoing it) have put it there.
    fn redact(&self, message: String) -> String {
        let key = self.api_key.expose_secret();
        if !key.is_empty() && message.contains(key) { message.replace(key, "[redacted]") } else { message }
    }

    /// Every vector ID of `document_id` in `namespace`, following the pagination token.
    async fn list_document_ids(&self, namespace: &str, document_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = format!("{document_id}#");
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("namespace", namespace), ("prefix", prefix.as_str()), ("limit", LIST_PAGE_SIZE)];
            if let Some(token) = token.as_deref() {
                query.push(("paginationToken", token));
            }
            let builder = self.request(Method::GET, "/vectors/list")?.query(&query);
            let page: ListResponse = self.send_json("list", builder).await?;
            // The prefix `doc#` also matches the chunks of a document named `doc#x`; keep only
            // IDs of the form `doc#<index>`.
            ids.extend(
                page.vectors.unwrap_or_default().into_iter().map(|v| v.id).filter(|id| is_chunk_id(id, &prefix)),
            );
            match page.pagination.and_then(|p| p.next).filter(|next| !next.is_empty()) {
                Some(next) if token.as_deref() == Some(next.as_str()) => {
                    return Err(StoreError::Permanent("pinecone list: pagination token did not advance".to_owned()));
                }
                Some(next) => token = Some(next),
                None => return Ok(ids),
            }
        }
    }

    /// Deletes vectors by ID, at most [`DELETE_BATCH_IDS`] per request.
    async fn delete_ids(&self, namespace: &str, ids: &[String]) -> Result<(), StoreError> {
        for batch in ids.chunks(DELETE_BATCH_IDS) {
            let builder = self.request(Method::POST, "/vectors/delete")?.json(&DeleteRequest { ids: batch, namespace });
            self.send("delete", builder).await?;
        }
        Ok(())
    }

    /// Deletes every vector of a document.
    async fn delete_all_chunks(&self, namespace: &str, document_id: &str) -> Result<usize, StoreError> {
        let ids = self.list_document_ids(namespace, document_id).await?;
        self.delete_ids(namespace, &ids).await?;
        Ok(ids.len())
    }

    /// Upserts the chunks of a document in batches of at most [`UPSERT_BATCH_VECTORS`] vectors
    /// and about [`UPSERT_BATCH_BYTES`] bytes.
    async fn upsert(&self, namespace: &str, document_id: &str, chunks: &[ChunkRecord]) -> Result<(), StoreError> {
        let namespace_json = serde_json::to_string(namespace).map_err(encode_error)?;
        // `{"vectors":[` + `],"namespace":` + namespace + `}`
        let overhead = 27 + namespace_json.len();
        let mut batch: Vec<String> = Vec::new();
        let mut batch_bytes = overhead;
        for chunk in chunks {
            let vector = serde_json::to_string(&UpsertVector {
                id: format!("{document_id}#{}", chunk.chunk_index),
                values: &chunk.embedding,
                metadata: ChunkMetadata {
                    document_id,
                    chunk_index: chunk.chunk_index,
                    source: &chunk.source,
                    page: chunk.page,
                    text: &chunk.text,
                    agent_email: namespace,
                },
            })
            .map_err(encode_error)?;
            let full = batch.len() >= UPSERT_BATCH_VECTORS || batch_bytes + vector.len() + 1 > UPSERT_BATCH_BYTES;
            if !batch.is_empty() && full {
                self.upsert_batch(&namespace_json, &batch).await?;
                batch.clear();
                batch_bytes = overhead;
            }
            batch_bytes += vector.len() + 1;
            batch.push(vector);
        }
        if !batch.is_empty() {
            self.upsert_batch(&namespace_json, &batch).await?;
        }
        Ok(())
    }

    /// One `POST /vectors/upsert` of already-serialised vectors.
    async fn upsert_batch(&self, namespace_json: &str, vectors: &[String]) -> Result<(), StoreError> {
        let body = format!(r#"{{"vectors":[{}],"namespace":{namespace_json}}}"#, vectors.join(","));
        let builder = self.request(Method::POST, "/vectors/upsert")?.body(body);
        let response: UpsertResponse = self.send_json("upsert", builder).await?;
        if response.upserted_count.is_some_and(|n| n != vectors.len() as u64) {
            tracing::warn!(
                sent = vectors.len(),
                upserted = response.upserted_count,
                "pinecone upserted fewer vectors than sent"
            );
        }
        Ok(())
    }

    async fn replace(&self, agent_email: &str, document_id: &str, chunks: Vec<ChunkRecord>) -> Result<(), StoreError> {
        check_scope(agent_email, document_id)?;
        if let Some(chunk) =
            chunks.iter().find(|c| c.embedding.is_empty() || c.embedding.iter().any(|x| !x.is_finite()))
        {
            return Err(StoreError::Permanent(format!(
                "chunk {} of document {document_id:?} has an empty or non-finite embedding",
                chunk.chunk_index
            )));
        }
        let deleted = self.delete_all_chunks(agent_email, document_id).await?;
        self.upsert(agent_email, document_id, &chunks).await?;
        tracing::debug!(agent_email, document_id, deleted, upserted = chunks.len(), "pinecone document replaced");
        Ok(())
    }

    async fn delete(&self, agent_email: &str, document_id: &str) -> Result<(), StoreError> {
        check_scope(agent_email, document_id)?;
        let deleted = self.delete_all_chunks(agent_email, document_id).await?;
        tracing::debug!(agent_email, document_id, deleted, "pinecone document deleted");
        Ok(())
    }

    async fn find(
        &self,
        agent_email: &str,
        query: &[f32],
        top_k: usize,
        min_score: f32,
    ) -> Result<Vec<SearchHit>, StoreError> {
        check_agent(agent_email)?;
        if top_k == 0 {
            return Ok(Vec::new());
        }
        if query.is_empty() || query.iter().any(|x| !x.is_finite()) {
            return Err(StoreError::Permanent("the query vector is empty or not finite".to_owned()));
        }
        let request = QueryRequest {
            namespace: agent_email,
            vector: query,
            top_k,
            include_metadata: true,
            include_values: false,
        };
        let builder = self.request(Method::POST, "/query")?.json(&request);
        let response: QueryResponse = self.send_json("query", builder).await?;
        let matches = response.matches.unwrap_or_default();
        let returned = matches.len();
        let mut hits: Vec<SearchHit> = matches
            .into_iter()
            .filter(|m| m.score >= min_score)
            .filter_map(|m| {
                let hit = hit_from_match(&m, agent_email);
                if hit.is_none() {
                    tracing::warn!(agent_email, id = %m.id, "pinecone match without this agent's chunk metadata dropped");
                }
                hit
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(top_k);
        tracing::debug!(agent_email, top_k, returned, kept = hits.len(), "pinecone query");
        Ok(hits)
    }
}

crate::boxed_vector_store!(PineconeStore);

/// `https://` + host unless the host already names its scheme; no trailing slash.
/// What `describe_index_stats` says of the index.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexStats {
    /// The index's vector dimension.
    pub dimension: usize,
    /// Vectors in all namespaces.
    #[serde(default)]
    pub total_vector_count: u64,
}

fn base_url(index_host: &str) -> String {
    let host = index_host.trim().trim_end_matches('/');
    let lower = host.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        host.to_owned()
    } else {
        format!("https://{host}")
    }
}

/// The empty namespace is Pinecone's default namespace, shared by everything: never use it.
fn check_agent(agent_email: &str) -> Result<(), StoreError> {
    if agent_email.is_empty() {
        return Err(StoreError::Permanent(
            "agent_email must not be empty (it names the Pinecone namespace)".to_owned(),
        ));
    }
    Ok(())
}

fn check_scope(agent_email: &str, document_id: &str) -> Result<(), StoreError> {
    check_agent(agent_email)?;
    if document_id.is_empty() {
        return Err(StoreError::Permanent("document_id must not be empty".to_owned()));
    }
    Ok(())
}

/// Whether `id` is `<prefix><decimal chunk index>`.
fn is_chunk_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix).is_some_and(|index| !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()))
}

fn encode_error(e: serde_json::Error) -> StoreError {
    StoreError::Permanent(format!("pinecone: cannot encode the request: {e}"))
}

/// The trimmed body, shortened to [`MAX_QUOTED_CHARS`]; `None` when empty.
fn quote(body: &str) -> Option<&str> {
    let body = body.trim();
    if body.is_empty() {
        return None;
    }
    Some(body.char_indices().nth(MAX_QUOTED_CHARS).map_or(body, |(end, _)| &body[..end]))
}

/// Pinecone's error message from an error body, else the raw body, else the status reason.
fn error_message(status: StatusCode, body: &str) -> String {
    if let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) {
        let detail = match parsed {
            ErrorBody::Nested { error } => error,
            ErrorBody::Flat(detail) => detail,
        };
        let code = match &detail.code {
            Some(Value::Number(n)) => n.as_u64().map(|n| match grpc_code_name(n) {
                Some(name) => name.to_owned(),
                None => format!("code {n}"),
            }),
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let message = quote(&detail.message).unwrap_or("no message");
        return match code {
            Some(code) => format!("{code}: {message}"),
            None => message.to_owned(),
        };
    }
    match quote(body) {
        Some(raw) => raw.to_owned(),
        None => status.canonical_reason().unwrap_or("no response body").to_owned(),
    }
}

/// The gRPC status name Pinecone's numeric error codes follow.
fn grpc_code_name(code: u64) -> Option<&'static str> {
    Some(match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return None,
    })
}

/// A metadata number as `u32`; Pinecone stores numbers as floats, so `3.0` is accepted.
fn metadata_u32(value: &Value) -> Option<u32> {
    if let Some(n) = value.as_u64() {
        return u32::try_from(n).ok();
    }
    let f = value.as_f64()?;
    (f >= 0.0 && f <= f64::from(u32::MAX) && f.fract() == 0.0).then_some(f as u32)
}

/// The [`SearchHit`] of a match whose metadata describes a chunk of `agent_email`.
fn hit_from_match(m: &QueryMatch, agent_email: &str) -> Option<SearchHit> {
    let metadata = m.metadata.as_ref()?;
    let text = |key: &str| metadata.get(key).and_then(Value::as_str);
    if text("agent_email")? != agent_email {
        return None;
    }
    let page = match metadata.get("page") {
        None | Some(Value::Null) => None,
        Some(page) => Some(metadata_u32(page)?),
    };
    Some(SearchHit {
        document_id: text("document_id")?.to_owned(),
        chunk_index: metadata_u32(metadata.get("chunk_index")?)?,
        source: text("source")?.to_owned(),
        page,
        text: text("text")?.to_owned(),
        score: m.score,
    })
}

/// One vector of an upsert request.
#[derive(Serialize)]
struct UpsertVector<'a> {
    id: String,
    values: &'a [f32],
    metadata: ChunkMetadata<'a>,
}

/// Metadata stored with each vector; read back by [`hit_from_match`].
#[derive(Serialize)]
struct ChunkMetadata<'a> {
    document_id: &'a str,
    chunk_index: u32,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    page: Option<u32>,
    text: &'a str,
    agent_email: &'a str,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpsertResponse {
    #[serde(default)]
    upserted_count: Option<u64>,
}

#[derive(Deserialize)]
struct ListResponse {
    #[serde(default)]
    vectors: Option<Vec<ListedVector>>,
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct ListedVector {
    id: String,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default)]
    next: Option<String>,
}

#[derive(Serialize)]
struct DeleteRequest<'a> {
    ids: &'a [String],
    namespace: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueryRequest<'a> {
    namespace: &'a str,
    vector: &'a [f32],
    top_k: usize,
    include_metadata: bool,
    include_values: bool,
}

#[derive(Deserialize)]
struct QueryResponse {
    #[serde(default)]
    matches: Option<Vec<QueryMatch>>,
}

#[derive(Deserialize)]
struct QueryMatch {
    id: String,
    #[serde(default)]
    score: f32,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

/// Pinecone's two error body shapes.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorBody {
    /// `{"error":{"code":"...","message":"..."}}`
    Nested { error: ErrorDetail },
    /// `{"code":N,"message":"...","details":[]}`
    Flat(ErrorDetail),
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<Value>,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_defaults_to_https_and_drops_trailing_slash() {
        assert_eq!(base_url("docs-abc.svc.pinecone.io"), "https://docs-abc.svc.pinecone.io");
        assert_eq!(base_url(" https://docs-abc.svc.pinecone.io/ "), "https://docs-abc.svc.pinecone.io");
        assert_eq!(base_url("http://127.0.0.1:5080"), "http://127.0.0.1:5080");
        assert_eq!(base_url("HTTPS://Docs.example"), "HTTPS://Docs.example");
    }

    #[test]
    fn error_bodies_of_both_shapes_are_parsed() {
        let flat =
            r#"{"code":3,"message":"Vector dimension 3 does not match the dimension of the index 4","details":[]}"#;
        assert_eq!(
            error_message(StatusCode::BAD_REQUEST, flat),
            "INVALID_ARGUMENT: Vector dimension 3 does not match the dimension of the index 4"
        );
        let nested = r#"{"error":{"code":"NOT_FOUND","message":"Resource not found"},"status":404}"#;
        assert_eq!(error_message(StatusCode::NOT_FOUND, nested), "NOT_FOUND: Resource not found");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, "  upstream connect error \n"), "upstream connect error");
        assert_eq!(error_message(StatusCode::SERVICE_UNAVAILABLE, ""), "Service Unavailable");
        let long = "x".repeat(2000);
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, &long).len(), MAX_QUOTED_CHARS);
    }

    #[test]
    fn chunk_ids_must_end_in_a_decimal_index() {
        assert!(is_chunk_id("doc#0", "doc#"));
        assert!(is_chunk_id("doc#117", "doc#"));
        assert!(!is_chunk_id("doc#", "doc#"));
        assert!(!is_chunk_id("doc#appendix#0", "doc#"));
        assert!(!is_chunk_id("doc-2#0", "doc#"));
    }

    #[test]
    fn metadata_numbers_may_be_floats() {
        assert_eq!(metadata_u32(&serde_json::json!(3)), Some(3));
        assert_eq!(metadata_u32(&serde_json::json!(3.0)), Some(3));
        assert_eq!(metadata_u32(&serde_json::json!(3.5)), None);
        assert_eq!(metadata_u32(&serde_json::json!(-1.0)), None);
        assert_eq!(metadata_u32(&serde_json::json!("3")), None);
    }
}
