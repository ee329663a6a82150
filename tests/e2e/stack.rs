//! A running Mailroom for end-to-end tests: a throw-away vhost, database and storage directory,
//! the upload API and the document ingester as real processes, and helpers to upload and wait.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, free_port, repo_root, spawn, wait_for};
use pipeline_core::worker_env::WorkerEnv;
use serde_json::Value;
use tokio::process::Child;

pub(crate) const TOKEN: &str = "test-token-5f1c";
pub(crate) const AGENT_A: &str = "support@northwind.example";
pub(crate) const AGENT_B: &str = "help@contoso.example";

pub(crate) struct Stack {
    pub(crate) vhost: TestVhost,
    pub(crate) db: TestDb,
    pub(crate) storage: TestDir,
    pub(crate) base: String,
    pub(crate) api: Child,
    pub(crate) ingester: Child,
    pub(crate) http: reqwest::Client,
    pub(crate) extra: Vec<(&'static str, String)>,
}

impl Stack {
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        env(&self.vhost, &self.db, &self.storage.path, &self.base, &self.extra)
    }

    pub(crate) fn spawn_ingester(&self) -> Child {
        spawn(&bin_path("doc-ingester"), &[], &self.env())
    }

    pub(crate) async fn upload(&self, agent: &str, filename: &str, bytes: Vec<u8>) -> (u16, Value) {
        let form = reqwest::multipart::Form::new()
            .text("agent_email", agent.to_owned())
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(filename.to_owned()));
        let r = self
            .http
            .post(format!("{}/documents", self.base))
            .bearer_auth(TOKEN)
            .multipart(form)
            .send()
            .await
            .expect("upload request");
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn upload_file(&self, agent: &str, path: &Path) -> (u16, Value) {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        self.upload(agent, &name, std::fs::read(path).expect("read fixture")).await
    }

    pub(crate) async fn document(&self, id: &str) -> Value {
        let r = self.http.get(format!("{}/documents/{id}", self.base)).bearer_auth(TOKEN).send().await.expect("get");
        assert_eq!(r.status().as_u16(), 200, "GET /documents/{id}");
        r.json().await.expect("json")
    }

    /// `GET /documents?agent_email=…`.
    pub(crate) async fn list(&self, agent: &str) -> Vec<Value> {
        let r = self.http.get(format!("{}/documents", self.base)).query(&[("agent_email", agent)]).bearer_auth(TOKEN);
        r.send().await.expect("list").json().await.expect("json")
    }

    /// Waits until the document is `ready` or `failed` and returns it.
    pub(crate) async fn settled(&self, id: &str) -> Value {
        wait_for(Duration::from_secs(90), &format!("document {id} to settle"), || async {
            let doc = self.document(id).await;
            matches!(doc["status"].as_str(), Some("ready" | "failed")).then_some(doc)
        })
        .await
    }

    pub(crate) async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.db.url()).await.expect("pool")
    }
}

pub(crate) fn env(
    vhost: &TestVhost,
    db: &TestDb,
    storage: &Path,
    base: &str,
    extra: &[(&'static str, String)],
) -> Vec<(&'static str, String)> {
    let mut env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("storage.dir", storage.display().to_string())
        .set("upload_api.listen", base.trim_start_matches("http://").to_owned())
        .set("upload_api.token", TOKEN.to_owned())
        .set("topology.retry_delays_ms", "200,400")
        .set("ingester.extract_timeout_secs", "20")
        .set("ingester.extract_max_memory_mb", "384")
        .set("ingester.max_pages", "2000")
        .build();
    env.extend(extra.iter().cloned());
    env
}

pub(crate) async fn start(extra: Vec<(&'static str, String)>) -> Stack {
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let storage = TestDir::create();
    let base = format!("http://127.0.0.1:{}", free_port());
    let env = env(&vhost, &db, &storage.path, &base, &extra);
    let api = spawn(&bin_path("upload-api"), &[], &env);
    let ingester = spawn(&bin_path("doc-ingester"), &[], &env);
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(90), "the upload API to be ready", || {
        let http = http.clone();
        let url = format!("{base}/readyz");
        async move { http.get(url).send().await.ok().filter(|r| r.status().is_success()).map(drop) }
    })
    .await;
    Stack { vhost, db, storage, base, api, ingester, http, extra }
}

pub(crate) fn knowledge(name: &str) -> PathBuf {
    repo_root().join("examples/knowledge").join(name)
}

pub(crate) fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/documents").join(name)
}

impl Stack {
    /// Spawns another worker binary with the stack's environment plus `extra`.
    pub(crate) fn spawn_worker(&self, name: &str, extra: &[(&'static str, String)]) -> Child {
        let mut env = self.env();
        env.extend(extra.iter().cloned());
        spawn(&bin_path(name), &[], &env)
    }
}
