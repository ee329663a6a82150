//! `upload-api`: the HTTP API agents upload their knowledge documents through
//! (docs/ARCHITECTURE.md).
//!
//! `POST /documents` (multipart: `file`, `agent_email`) streams the file to the storage
//! directory under a generated name while enforcing the size limit, recognises PDF, plain text
//! and Markdown by content, records the document as `queued`, publishes the
//! `documents.to_ingest` message with a confirm and answers 202. If anything after the file is
//! written fails, the file and the record are removed again: an upload is whole or absent.
//! `GET /documents?agent_email=…`, `GET /documents/{id}` and `DELETE /documents/{id}` manage
//! them. Every route but `/healthz`, `/readyz` and `/metrics` needs a bearer token.
//!
//! **Tokens and scopes.** A request is accepted with the configured `upload_api.token` (an admin
//! token: every route, every agent) or with a token made by `mailroom token create`
//! ([`mailroom_db::tokens`]), looked up by its hash on every request so a revocation applies at
//! once. An unknown, revoked or missing token answers 401. A known token answers 403 when it does
//! not reach what it asks for — each route judges by the agent it concerns:
//!
//! | route | agent judged | `upload` | `read` | `admin` |
//! |---|---|---|---|---|
//! | `POST /documents` | the form's `agent_email` | own agent | 403 | any |
//! | `GET /documents?agent_email=` | the query's `agent_email` | own agent | own agent | any |
//! | `GET /documents/{id}` | the document's stored agent | own agent | own agent | any |
//! | `DELETE /documents/{id}` | the document's stored agent | own agent | 403 | any |
//!
//! `upload` may delete its agent's documents: replacing a manual is a delete and an upload, and
//! whoever can upload can already fill the agent's knowledge with anything. A refused upload
//! stores nothing (a file already streamed is removed) and reads the rest of the body, within
//! the same bound as an oversized one, so the client sees the 403. A 403 for a document names
//! no other agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mailroom_db::documents::{self, Document, NewDocument};
use mailroom_db::tokens::{self, Scope};
use pipeline_core::messages::{DocumentMetadata, DocumentToIngest, agent_address, new_message_id, now};
use pipeline_core::{Producer, Settings, Telemetry};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;
use tokio::io::AsyncWriteExt as _;
use tracing::{debug, info, warn};
use uuid::Uuid;
use vector_store::VectorStore;

/// How much of an oversized upload is read and discarded before answering 413.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// The binary's name.
pub const NAME: &str = "upload-api";
/// The token shipped in `config/default.toml`; the API warns while it is in use.
pub const DEFAULT_TOKEN: &str = "mailroom-dev-token";

/// `[upload_api]` settings.
#[derive(Debug, Clone, Deserialize)]
pub struct UploadApiSettings {
    /// Listen address.
    pub listen: String,
    /// The configured admin token (an empty one accepts nothing: only the tokens of
    /// `mailroom token create` are accepted).
    pub token: SecretString,
    /// Upload size limit in MiB.
    pub max_upload_mb: u64,
}

/// Shared state of the handlers.
pub struct AppState {
    /// Database.
    pub pool: PgPool,
    /// Confirming publisher.
    pub producer: Arc<Producer>,
    /// Where chunks live (to delete them with the document).
    pub store: Arc<dyn VectorStore>,
    /// Storage directory.
    pub storage_dir: PathBuf,
    /// The configured admin token (empty: none).
    pub token: SecretString,
    /// Upload limit in bytes.
    pub max_bytes: u64,
}

/// An error answer: a status and a JSON body `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        warn!(error = %e, context, "Upload API error.");
        Self::new(StatusCode::SERVICE_UNAVAILABLE, format!("{context}; try again later"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The scope of the request's bearer token, or the 401 (503 when the token table cannot be read).
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Scope, ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing bearer token (Authorization: Bearer <token>)")
        })?;
    let invalid = || ApiError::new(StatusCode::UNAUTHORIZED, "invalid bearer token (unknown or revoked)");
    if presented.is_empty() {
        return Err(invalid());
    }
    let configured = state.token.expose_secret();
    if !configured.is_empty() && same(presented.as_bytes(), configured.as_bytes()) {
        return Ok(Scope::configured_admin());
    }
    tokens::authenticate(&state.pool, presented)
        .await
        .map_err(|e| ApiError::internal("cannot check the bearer token", e))?
        .ok_or_else(invalid)
}

async fn auth(State(state): State<Arc<AppState>>, headers: HeaderMap, mut request: Request, next: Next) -> Response {
    match authenticate(&state, &headers).await {
        Ok(scope) => {
            debug!(%scope, method = %request.method(), path = request.uri().path(), "Authenticated.");
            request.extensions_mut().insert(scope);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// What a request does with an agent's documents.
#[derive(Debug, Clone, Copy)]
enum Action {
    Upload,
    List,
    Show,
    Delete,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Upload => "upload",
            Action::List => "list",
            Action::Show => "show",
            Action::Delete => "delete",
        }
    }

    fn writes(self) -> bool {
        matches!(self, Action::Upload | Action::Delete)
    }
}

fn forbidden(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, message)
}

/// 403 unless the token's role may do `action` at all.
fn check_role(scope: &Scope, action: Action) -> Result<(), ApiError> {
    if action.writes() && !scope.may_write() {
        return Err(forbidden(format!(
            "this token's role is {}: it may list and show documents, not {} them (that needs an upload or admin token)",
            scope.role,
            action.verb()
        )));
    }
    Ok(())
}

/// 403 unless the token may do `action` on the documents of `agent`, an agent the request named
/// itself (the form field or the query), so the message may quote it.
fn check_agent(scope: &Scope, action: Action, agent: &str) -> Result<(), ApiError> {
    check_role(scope, action)?;
    if scope.reaches(agent) {
        return Ok(());
    }
    Err(forbidden(format!(
        "this token may {} only the documents of {}, not those of {agent}",
        action.verb(),
        scope.agent_email.as_deref().unwrap_or("its own agent")
    )))
}

/// 403 unless the token may do `action` on `doc`, without naming the document's agent to a
/// token of another one.
fn check_document(scope: &Scope, action: Action, doc: &Document) -> Result<(), ApiError> {
    check_role(scope, action)?;
    if scope.reaches(&doc.agent_email) {
        return Ok(());
    }
    Err(forbidden(format!(
        "document {} belongs to another agent: this token may {} only the documents of {}",
        doc.document_id,
        action.verb(),
        scope.agent_email.as_deref().unwrap_or("its own agent")
    )))
}

/// Reads and discards what is left of a multipart body (at most [`DRAIN_LIMIT`] bytes), so a
/// client still sending receives the refusal instead of a reset connection.
async fn drain(multipart: &mut Multipart) {
    let mut drained = 0u64;
    while drained < DRAIN_LIMIT {
        let Ok(Some(mut field)) = multipart.next_field().await else { return };
        while drained < DRAIN_LIMIT {
            match field.chunk().await {
                Ok(Some(c)) => drained += c.len() as u64,
                _ => break,
            }
        }
    }
}

/// The application: document routes behind the token, health and metrics open.
pub fn app(state: Arc<AppState>, telemetry: Arc<Telemetry>) -> Router {
    let documents = Router::new()
        .route("/documents", post(upload).get(list))
        .route("/documents/{id}", get(show).delete(remove))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    documents.merge(pipeline_core::http::router(telemetry))
}

/// Removes a partly written or orphaned upload unless disarmed.
struct Cleanup(Option<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Keeps only a file name's last component, without control characters: the name is metadata,
/// never a path.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(255).collect();
    let clean = clean.trim().trim_start_matches('.').to_owned();
    if clean.is_empty() { "upload".to_owned() } else { clean }
}

fn valid_agent(email: &str) -> bool {
    let email = email.trim();
    email.len() <= 254
        && email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What the content is, judged by the bytes (the file name only tells text from Markdown).
async fn detect(path: &Path, head: &[u8], filename: &str) -> Result<(&'static str, &'static str), ApiError> {
    if pipeline_core::content::is_pdf(head) {
        return Ok(("application/pdf", "pdf"));
    }
    let bytes = tokio::fs::read(path).await.map_err(|e| ApiError::internal("cannot read the upload back", e))?;
    if pipeline_core::content::decode_text(&bytes).is_none() {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported file type: upload a PDF, plain text or Markdown document",
        ));
    }
    let lower = filename.to_ascii_lowercase();
    Ok(if lower.ends_with(".md") || lower.ends_with(".markdown") {
        ("text/markdown", "md")
    } else {
        ("text/plain", "txt")
    })
}

async fn upload(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected a multipart/form-data body with `file` and `agent_email`: {e}"),
        )
    })?;
    if let Err(refused) = check_role(&scope, Action::Upload) {
        drain(&mut multipart).await;
        return Err(refused);
    }
    let bad = |e: axum::extract::multipart::MultipartError| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("malformed multipart body: {e}"))
    };
    let document_id = Uuid::new_v4();
    let part = state.storage_dir.join(format!("{document_id}.part"));
    let mut cleanup = Cleanup(None);
    let mut agent_email: Option<String> = None;
    let mut file: Option<(String, u64, Vec<u8>)> = None;
    let mut refused = None;
    while let Some(mut field) = multipart.next_field().await.map_err(bad)? {
        match field.name() {
            Some("agent_email") => {
                let mut value = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    value.extend_from_slice(&chunk);
                    if value.len() > 1024 {
                        return Err(ApiError::new(StatusCode::BAD_REQUEST, "agent_email is too long"));
                    }
                }
                let agent = agent_address(&String::from_utf8_lossy(&value));
                // Judged as soon as it is known: a refused upload stores no file, or stops
                // storing it. (An invalid address is refused with 400 after the body.)
                if valid_agent(&agent)
                    && let Err(e) = check_agent(&scope, Action::Upload, &agent)
                {
                    refused = Some(e);
                    break;
                }
                agent_email = Some(agent);
            }
            Some("file") if file.is_none() => {
                let filename = sanitize_filename(field.file_name().unwrap_or("upload"));
                let mut out = tokio::fs::File::create(&part)
                    .await
                    .map_err(|e| ApiError::internal("cannot store the upload", e))?;
                cleanup.0 = Some(part.clone());
                let mut size = 0u64;
                let mut head = Vec::with_capacity(1024);
                while let Some(chunk) = field.chunk().await.map_err(bad)? {
                    size += chunk.len() as u64;
                    if size > state.max_bytes {
                        // Read (and discard) a bounded remainder so the client, still sending,
                        // receives the 413 instead of a reset connection.
                        let mut drained = 0u64;
                        while drained < DRAIN_LIMIT {
                            match field.chunk().await {
                                Ok(Some(c)) => drained += c.len() as u64,
                                _ => break,
                            }
                        }
                        return Err(ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("file exceeds the upload limit of {} MiB", state.max_bytes / (1024 * 1024)),
                        ));
                    }
                    if head.len() < 1024 {
                        head.extend_from_slice(&chunk[..chunk.len().min(1024 - head.len())]);
                    }
                    out.write_all(&chunk).await.map_err(|e| ApiError::internal("cannot store the upload", e))?;
                }
                out.flush().await.map_err(|e| ApiError::internal("cannot store the upload", e))?;
                file = Some((filename, size, head));
            }
            // Unknown fields are ignored, like unknown JSON fields elsewhere.
            _ => while field.chunk().await.map_err(bad)?.is_some() {},
        }
    }
    if let Some(refused) = refused {
        // `cleanup` removes a file already streamed.
        drain(&mut multipart).await;
        return Err(refused);
    }
    let agent_email = agent_email
        .filter(|a| valid_agent(a))
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "`agent_email` must be the support mailbox's address"))?;
    check_agent(&scope, Action::Upload, &agent_email)?;
    let (filename, size, head) =
        file.ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "missing the `file` field"))?;
    if size == 0 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "the file is empty"));
    }
    let (content_type, extension) = detect(&part, &head, &filename).await?;
    let stored = state.storage_dir.join(format!("{document_id}.{extension}"));
    tokio::fs::rename(&part, &stored).await.map_err(|e| ApiError::internal("cannot store the upload", e))?;
    cleanup.0 = Some(stored.clone());
    let stored_path = stored.to_string_lossy().into_owned();

    let message = DocumentToIngest {
        message_id: new_message_id(),
        timestamp: now(),
        document_id: document_id.to_string(),
        filename: filename.clone(),
        file_path: stored_path.clone(),
        file_size_bytes: size,
        uploaded_by: agent_email.clone(),
        agent_email: agent_email.clone(),
        metadata: DocumentMetadata {
            upload_source: Some("upload_api".into()),
            content_type: Some(content_type.into()),
        },
    };
    let record = NewDocument {
        document_id,
        agent_email: &agent_email,
        filename: &filename,
        stored_path: &stored_path,
        content_type,
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        message_id: &message.message_id,
    };
    documents::insert(&state.pool, &record).await.map_err(|e| ApiError::internal("cannot record the document", e))?;
    if let Err(e) = state.producer.publish(&message).await {
        // Undo, so no document stays `queued` forever without a message.
        let _ = delete_document(&state.pool, state.store.as_ref(), document_id).await;
        return Err(ApiError::internal("cannot queue the document for ingestion", e));
    }
    cleanup.0 = None;
    info!(%document_id, agent_email, filename, size, content_type, token = %scope, "Accepted upload.");
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "document_id": document_id,
            "message_id": message.message_id,
            "status": documents::status::QUEUED,
            "filename": filename,
            "content_type": content_type,
            "size_bytes": size,
        })),
    ))
}

/// `GET /documents` query.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Whose documents.
    pub agent_email: Option<String>,
}

async fn list(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Vec<Document>>, ApiError> {
    let agent = query
        .agent_email
        .filter(|a| !a.trim().is_empty())
        .map(|a| agent_address(&a))
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "the agent_email query parameter is required"))?;
    check_agent(&scope, Action::List, &agent)?;
    let docs = documents::list_for_agent(&state.pool, &agent)
        .await
        .map_err(|e| ApiError::internal("cannot list documents", e))?;
    Ok(axum::Json(docs))
}

fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("{raw:?} is not a document id")))
}

async fn existing(pool: &PgPool, id: Uuid) -> Result<Document, ApiError> {
    documents::get(pool, id)
        .await
        .map_err(|e| ApiError::internal("cannot read the document", e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such document"))
}

async fn show(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    UrlPath(id): UrlPath<String>,
) -> Result<axum::Json<Document>, ApiError> {
    let doc = existing(&state.pool, parse_id(&id)?).await?;
    check_document(&scope, Action::Show, &doc)?;
    Ok(axum::Json(doc))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    Extension(scope): Extension<Scope>,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    check_role(&scope, Action::Delete)?;
    // A document's agent never changes, so judging the row read here holds for the delete.
    check_document(&scope, Action::Delete, &existing(&state.pool, id).await?)?;
    let doc = delete_document(&state.pool, state.store.as_ref(), id).await?;
    info!(document_id = %id, agent_email = %doc.agent_email, token = %scope, "Deleted document.");
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes a document, its chunks and its stored file. The row stays (locked) until its chunks
/// are gone from the vector store and its file from the disk, so `GET /documents/{id}` never
/// answers 404 while any of its text is still searchable; an ingestion in flight finishes its
/// chunk write first, and one that comes later finds the document gone and writes nothing.
/// When a step fails, nothing is committed and the delete can be repeated.
pub async fn delete_document(pool: &PgPool, store: &dyn VectorStore, id: Uuid) -> Result<Document, ApiError> {
    let deletion = documents::begin_delete(pool, id)
        .await
        .map_err(|e| ApiError::internal("cannot read the document", e))?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such document"))?;
    let doc = &deletion.document;
    store
        .delete_document(&doc.agent_email, &doc.document_id.to_string())
        .await
        .map_err(|e| ApiError::internal("cannot delete the document's chunks", e))?;
    match tokio::fs::remove_file(&doc.stored_path).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(ApiError::internal("cannot delete the stored file", e)),
    }
    deletion.commit().await.map_err(|e| ApiError::internal("cannot delete the document", e))
}

/// Runs the API until `shutdown`.
pub async fn run(
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let api: UploadApiSettings = settings.section("upload_api")?;
    if api.token.expose_secret() == DEFAULT_TOKEN {
        warn!("upload_api.token is the shipped default; set MAILROOM__UPLOAD_API__TOKEN for any shared deployment.");
    } else if api.token.expose_secret().is_empty() {
        info!("upload_api.token is empty: only tokens made with `mailroom token create` are accepted.");
    }
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, settings.database.max_connections).await?;
    let store_settings: vector_store::VectorStoreSettings = settings.section("vector_store")?;
    let store = vector_store::from_settings(&store_settings, pool.clone())?;
    tokio::fs::create_dir_all(&settings.storage.dir).await?;
    let storage_dir = settings.storage.dir.canonicalize()?;
    let telemetry = Arc::new(Telemetry::default());
    // Naming the route makes the background connect check its exchange, so a missing topology
    // shows on /readyz before the first upload.
    let producer =
        Arc::new(Producer::new(NAME, &settings, telemetry.clone()).publishing_to(&[pipeline_core::topology::INGEST]));
    // Keep the broker connection up in the background, so /readyz recovers after an outage even
    // when no upload comes in to trigger a reconnect.
    let keeper = {
        let (producer, telemetry) = (producer.clone(), telemetry.clone());
        tokio::spawn(async move {
            loop {
                // Cheap while connected: it only checks the connection's state.
                if let Err(e) = producer.connect().await {
                    warn!(error = %e, "Broker not reachable; uploads are refused until it is.");
                    telemetry.health.set_reason(e.to_string());
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
        })
    };
    let state = Arc::new(AppState {
        pool,
        producer: producer.clone(),
        store,
        storage_dir,
        token: api.token,
        max_bytes: api.max_upload_mb * 1024 * 1024,
    });
    let listener = tokio::net::TcpListener::bind(&api.listen).await?;
    let addr = listener.local_addr()?;
    telemetry.health.set_consuming(true);
    info!(%addr, "Upload API listening.");
    axum::serve(listener, app(state, telemetry)).with_graceful_shutdown(shutdown).await?;
    keeper.abort();
    producer.close().await;
    Ok(())
}
