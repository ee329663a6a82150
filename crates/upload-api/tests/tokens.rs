//! Scoped tokens against the real upload API (run in-process on a free port, with a throw-away
//! vhost, database and storage directory): a token reaches only its own agent's documents on
//! every route (403 otherwise), `read` only reads, `admin` and the configured token reach every
//! agent, and a revoked or unknown token is refused with 401.

use std::time::Duration;

use mailroom_db::tokens::{self, Role};
use mailroom_tests::{TestDb, TestDir, TestVhost, free_port, wait_for};
use pipeline_core::worker_env::WorkerEnv;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use sqlx::PgPool;
use tokio::sync::oneshot;

const AGENT_A: &str = "support@northwind.example";
const AGENT_B: &str = "help@contoso.example";

struct Api {
    _vhost: TestVhost,
    _db: TestDb,
    storage: TestDir,
    base: String,
    http: reqwest::Client,
    pool: PgPool,
    stop: Option<oneshot::Sender<()>>,
    server: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

/// Starts the upload API with `configured` as `upload_api.token` and waits until it is ready
/// (its database migrated).
async fn start(configured: &str) -> Api {
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let storage = TestDir::create();
    let listen = format!("127.0.0.1:{}", free_port());
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("storage.dir", storage.path.display().to_string())
        .set("upload_api.listen", listen.clone())
        .set("upload_api.token", configured)
        .owned();
    let settings = pipeline_core::Settings::load_from(None, env).expect("settings");
    let (stop, stopped) = oneshot::channel::<()>();
    // On a thread and runtime of its own: `run`'s future is not provably `Send` to the compiler
    // (sqlx's higher-ranked executor bounds), as `tokio::spawn` would need.
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        runtime.block_on(upload_api::run(settings, async move {
            let _ = stopped.await;
        }))
    });
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(60), "the upload API to be ready", || {
        let (http, url) = (http.clone(), format!("{base}/readyz"));
        async move { http.get(url).send().await.ok().filter(|r| r.status().is_success()).map(drop) }
    })
    .await;
    let pool = PgPool::connect(&db.url()).await.expect("pool");
    Api { _vhost: vhost, _db: db, storage, base, http, pool, stop: Some(stop), server: Some(server) }
}

impl Api {
    async fn token(&self, role: Role, agent: Option<&str>) -> String {
        let (_, secret) = tokens::create(&self.pool, role, agent, None).await.expect("create token");
        secret.expose_secret().to_owned()
    }

    /// `POST /documents`, the `agent_email` field before the file or after it.
    async fn upload(&self, token: &str, agent: &str, bytes: Vec<u8>, agent_first: bool) -> (u16, Value) {
        let file = || reqwest::multipart::Part::bytes(bytes.clone()).file_name("manual.txt");
        let form = if agent_first {
            reqwest::multipart::Form::new().text("agent_email", agent.to_owned()).part("file", file())
        } else {
            reqwest::multipart::Form::new().part("file", file()).text("agent_email", agent.to_owned())
        };
        let request = self.http.post(format!("{}/documents", self.base)).bearer_auth(token).multipart(form);
        answer(request).await
    }

    async fn upload_text(&self, token: &str, agent: &str) -> (u16, Value) {
        self.upload(token, agent, b"Opening hours: 9 to 5.".to_vec(), true).await
    }

    async fn list(&self, token: &str, agent: &str) -> (u16, Value) {
        answer(self.http.get(format!("{}/documents", self.base)).query(&[("agent_email", agent)]).bearer_auth(token))
            .await
    }

    async fn show(&self, token: &str, id: &str) -> (u16, Value) {
        answer(self.http.get(format!("{}/documents/{id}", self.base)).bearer_auth(token)).await
    }

    async fn delete(&self, token: &str, id: &str) -> (u16, Value) {
        answer(self.http.delete(format!("{}/documents/{id}", self.base)).bearer_auth(token)).await
    }

    async fn documents_of(&self, agent: &str) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM documents WHERE agent_email = $1")
            .bind(agent)
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// The files in the storage directory.
    fn stored_files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.storage.path)
            .expect("storage")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let server = self.server.take().expect("running");
        tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(move || server.join()))
            .await
            .expect("the API stops")
            .expect("join")
            .expect("the API did not panic")
            .expect("the API ran without error");
        self.pool.close().await;
    }
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Asserts a JSON error answer with `status`, and returns its message.
fn refused(what: &str, (status, body): (u16, Value), expected: u16) -> String {
    assert_eq!(status, expected, "{what}: {body}");
    body["error"].as_str().unwrap_or_else(|| panic!("{what}: no JSON error: {body}")).to_owned()
}

fn id_of(what: &str, (status, body): (u16, Value)) -> String {
    assert_eq!(status, 202, "{what}: {body}");
    body["document_id"].as_str().expect("document_id").to_owned()
}

#[tokio::test]
async fn an_upload_token_reaches_only_its_own_agents_documents_on_every_route() {
    let api = start("configured-token-93b1").await;
    // Made for a differently written address: the agent is stored in its canonical form.
    let a = api.token(Role::Upload, Some(" Support@Northwind.example")).await;
    let b = api.token(Role::Upload, Some(AGENT_B)).await;

    // Own agent: upload, also written differently.
    let doc_a = id_of("a uploads for its agent", api.upload_text(&a, AGENT_A).await);
    let doc_a2 = id_of("a uploads for SUPPORT@…", api.upload_text(&a, "SUPPORT@northwind.example").await);
    let doc_b = id_of("b uploads for its agent", api.upload_text(&b, AGENT_B).await);
    assert_eq!(api.stored_files().len(), 3);

    // Upload for another agent: 403, whether the agent comes before the file (a 3 MiB one,
    // read and discarded so the client sees the answer) or after it (the file already streamed
    // is removed again).
    let big = "Opening hours: 9 to 5.\n".repeat(3 * 1024 * 1024 / 23).into_bytes();
    let message = refused("a uploads for b, agent first", api.upload(&a, AGENT_B, big, true).await, 403);
    assert!(message.contains(AGENT_A) && message.contains(AGENT_B), "{message}");
    let bytes = b"Contoso returns policy.".to_vec();
    refused("a uploads for b, agent last", api.upload(&a, AGENT_B, bytes, false).await, 403);
    refused("b uploads for a", api.upload_text(&b, "Support@Northwind.example").await, 403);
    assert_eq!(api.documents_of(AGENT_B).await, 1, "no document recorded for b by a");
    assert_eq!(api.documents_of(AGENT_A).await, 2);
    let files = api.stored_files();
    assert_eq!(files.len(), 3, "nothing stored by the refused uploads: {files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".part")), "{files:?}");

    // List.
    let (status, listed) = api.list(&a, "Support@Northwind.example").await;
    assert_eq!(status, 200, "{listed}");
    let mut ids: Vec<&str> =
        listed.as_array().expect("array").iter().map(|d| d["document_id"].as_str().unwrap_or("")).collect();
    ids.sort_unstable();
    let mut expected = vec![doc_a.as_str(), doc_a2.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    refused("a lists b", api.list(&a, AGENT_B).await, 403);
    refused("b lists a", api.list(&b, AGENT_A).await, 403);

    // Show.
    let (status, shown) = api.show(&a, &doc_a).await;
    assert_eq!((status, shown["agent_email"].as_str()), (200, Some(AGENT_A)), "{shown}");
    let message = refused("a shows b's document", api.show(&a, &doc_b).await, 403);
    assert!(!message.contains(AGENT_B), "a 403 for a document names no other agent: {message}");
    refused("b shows a's document", api.show(&b, &doc_a).await, 403);
    refused("a shows a missing document", api.show(&a, "00000000-0000-4000-8000-000000000000").await, 404);

    // Delete.
    refused("a deletes b's document", api.delete(&a, &doc_b).await, 403);
    assert_eq!(api.show(&b, &doc_b).await.0, 200, "b's document is still there");
    assert_eq!(api.documents_of(AGENT_B).await, 1);
    assert_eq!(api.delete(&a, &doc_a).await.0, 204, "a deletes its own document");
    refused("a shows its deleted document", api.show(&a, &doc_a).await, 404);
    assert_eq!(api.stored_files().len(), 2);
    api.stop().await;
}

#[tokio::test]
async fn a_read_token_only_reads_and_admin_tokens_and_the_configured_one_reach_every_agent() {
    // The shipped default still works, as an admin token.
    let configured = upload_api::DEFAULT_TOKEN;
    let api = start(configured).await;
    let read = api.token(Role::Read, Some(AGENT_A)).await;
    let admin = api.token(Role::Admin, None).await;

    // The configured token uploads for any agent.
    let doc_a = id_of("configured uploads for a", api.upload_text(configured, AGENT_A).await);
    let doc_b = id_of("configured uploads for b", api.upload_text(configured, AGENT_B).await);

    // read: list and show its agent's documents, nothing else.
    let (status, listed) = api.list(&read, AGENT_A).await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(1)), "{listed}");
    assert_eq!(api.show(&read, &doc_a).await.0, 200);
    let message = refused("read uploads for its agent", api.upload_text(&read, AGENT_A).await, 403);
    assert!(message.contains("read"), "{message}");
    refused("read deletes its agent's document", api.delete(&read, &doc_a).await, 403);
    refused("read lists b", api.list(&read, AGENT_B).await, 403);
    refused("read shows b's document", api.show(&read, &doc_b).await, 403);
    assert_eq!(api.documents_of(AGENT_A).await, 1, "read stored and deleted nothing");

    // admin (made with `token create --role admin`): every route, every agent.
    assert_eq!(api.list(&admin, AGENT_B).await.0, 200);
    assert_eq!(api.show(&admin, &doc_b).await.0, 200);
    let doc_b2 = id_of("admin uploads for b", api.upload_text(&admin, AGENT_B).await);
    assert_eq!(api.delete(&admin, &doc_b).await.0, 204);
    assert_eq!(api.delete(&admin, &doc_b2).await.0, 204);

    // The configured token lists, shows and deletes for any agent too.
    let (status, listed) = api.list(configured, AGENT_A).await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(1)), "{listed}");
    assert_eq!(api.show(configured, &doc_a).await.0, 200);
    assert_eq!(api.delete(configured, &doc_a).await.0, 204);
    assert_eq!(api.documents_of(AGENT_A).await + api.documents_of(AGENT_B).await, 0);
    assert!(api.stored_files().is_empty());

    // Their use is recorded.
    let rows = tokens::list(&api.pool).await.expect("list");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.last_used_at.is_some()), "{rows:?}");
    api.stop().await;
}

#[tokio::test]
async fn revoked_and_unknown_tokens_are_refused_with_401_and_an_empty_configured_token_admits_none() {
    // No configured token: only made tokens are accepted.
    let api = start("").await;
    let a = api.token(Role::Upload, Some(AGENT_A)).await;
    let admin = api.token(Role::Admin, None).await;
    let doc = id_of("a uploads", api.upload_text(&a, AGENT_A).await);
    assert_eq!(api.list(&admin, AGENT_A).await.0, 200);

    let rows = tokens::list(&api.pool).await.expect("list");
    for row in &rows {
        assert!(matches!(tokens::revoke(&api.pool, row.id).await.expect("revoke"), tokens::Revoked::Now(_)));
    }
    let stored_hash: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens ORDER BY id LIMIT 1")
        .fetch_one(&api.pool)
        .await
        .expect("hash");
    let unknown = tokens::generate().expect("random");
    let http = &api.http;
    let url = format!("{}/documents", api.base);
    let attempts = [
        ("revoked upload token lists", http.get(&url).query(&[("agent_email", AGENT_A)]).bearer_auth(&a)),
        ("revoked upload token shows", http.get(format!("{url}/{doc}")).bearer_auth(&a)),
        ("revoked upload token deletes", http.delete(format!("{url}/{doc}")).bearer_auth(&a)),
        ("revoked admin token lists", http.get(&url).query(&[("agent_email", AGENT_A)]).bearer_auth(&admin)),
        ("unknown token", http.get(&url).query(&[("agent_email", AGENT_A)]).bearer_auth(unknown.expose_secret())),
        ("the stored hash as a token", http.get(&url).query(&[("agent_email", AGENT_A)]).bearer_auth(&stored_hash)),
        ("an empty token", http.get(&url).query(&[("agent_email", AGENT_A)]).header("authorization", "Bearer ")),
        (
            "the shipped default",
            http.get(&url).query(&[("agent_email", AGENT_A)]).bearer_auth(upload_api::DEFAULT_TOKEN),
        ),
    ];
    for (what, request) in attempts {
        let response = request.send().await.expect("request");
        assert_eq!(response.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"), "{what}");
        let message = refused(what, (response.status().as_u16(), response.json().await.unwrap_or_default()), 401);
        // (An empty token reaches the API as `Bearer`, without the space: a missing one.)
        assert!(message.contains("bearer token"), "{what}: {message}");
        assert!(what == "an empty token" || message.contains("invalid bearer token"), "{what}: {message}");
    }
    refused("revoked upload token uploads", api.upload_text(&a, AGENT_A).await, 401);
    assert_eq!(api.documents_of(AGENT_A).await, 1, "the revoked token stored and deleted nothing");
    assert_eq!(api.stored_files().len(), 1);
    api.stop().await;
}
