//! The throw-away place `mailroom demo` and `mailroom bench` run the whole pipeline in: a
//! database (dropped and migrated), a directory with a Maildir inbox, an outbox, uploads and
//! logs (emptied), an upload port and token, and the environment every worker of the run gets.
//! The vhost is the caller's: the demo creates it through whatever can manage vhosts on this
//! machine, the bench through the management API it needs anyway. Also the upload of the
//! knowledge base both start with.
//!
//! The run's mailbox trusts [`AUTHSERV_ID`], the receiving server the example mail names in its
//! `Authentication-Results` headers, so sender authentication works there as it does behind a
//! real mail server (a legitimate email is answered, a spoofed one drafted).

use std::path::{Path, PathBuf};

use pipeline_core::Settings;
use pipeline_core::worker_env::WorkerEnv;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use sqlx::PgPool;

use crate::procs::{database_url, vhost_url};

/// The authserv-id of the example mail's receiving server (`examples/mailbox/`, the bench's
/// generated mail): `mailbox.authserv_ids` of every sandbox run.
pub const AUTHSERV_ID: &str = "mx.northwind.example";

/// Where a run happens.
#[derive(Debug, Clone)]
pub struct SandboxSpec<'a> {
    /// `demo` or `bench`: names the upload token and the Redis namespace.
    pub label: &'static str,
    /// The vhost (already created by the caller).
    pub vhost: &'a str,
    /// The database, recreated.
    pub database: &'a str,
    /// The directory, created if missing; its `inbox`, `outbox`, `uploads` and `logs` emptied.
    pub dir: &'a Path,
    /// `mailbox.poll_interval_ms` of the poller.
    pub poll_interval_ms: u64,
    /// Connections of the run's own pool.
    pub max_connections: u32,
}

/// A prepared run.
#[derive(Debug)]
pub struct Sandbox {
    /// The directory, canonical.
    pub dir: PathBuf,
    /// The poller's Maildir (`tmp`, `new`, `cur` exist).
    pub inbox: PathBuf,
    /// The sender's Maildir outbox.
    pub outbox: PathBuf,
    /// Worker logs.
    pub logs: PathBuf,
    /// The run's database, migrated.
    pub pool: PgPool,
    /// The mailbox address (`mailbox.agent_email`).
    pub agent: String,
    /// The upload API's port.
    pub upload_port: u16,
    /// The upload API's bearer token.
    pub token: String,
    /// The settings every worker of the run gets; callers add their own.
    pub env: WorkerEnv,
}

impl Sandbox {
    /// Recreates the database and the directories and builds the workers' environment.
    pub async fn create(settings: &Settings, spec: &SandboxSpec<'_>) -> anyhow::Result<Self> {
        let db_url = database_url(&settings.database.url, spec.database);
        mailroom_db::drop_database(&db_url).await?;
        let pool = mailroom_db::connect_and_migrate(&db_url, spec.max_connections).await?;
        std::fs::create_dir_all(spec.dir)?;
        let dir = std::fs::canonicalize(spec.dir)?;
        for sub in ["inbox", "outbox", "uploads", "logs"] {
            let path = dir.join(sub);
            if path.exists() {
                std::fs::remove_dir_all(&path)?;
            }
        }
        let inbox = dir.join("inbox");
        for sub in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(inbox.join(sub))?;
        }
        let outbox = dir.join("outbox");
        let agent = settings.section::<Value>("mailbox")?["agent_email"]
            .as_str()
            .unwrap_or("support@northwind.example")
            .to_owned();
        let upload_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let token = format!("{}-{}", spec.label, uuid::Uuid::new_v4().simple());
        let env = WorkerEnv::new()
            .set("amqp.url", vhost_url(&settings.amqp.url, spec.vhost))
            .set("database.url", db_url.expose_secret())
            .set("upload_api.listen", format!("127.0.0.1:{upload_port}"))
            .set("upload_api.token", token.clone())
            .set("storage.dir", dir.join("uploads").display().to_string())
            .set("mailbox.kind", "maildir")
            .set("mailbox.maildir", inbox.display().to_string())
            .set("mailbox.agent_email", agent.clone())
            .set("mailbox.authserv_ids", AUTHSERV_ID)
            .set("mailbox.poll_interval_ms", spec.poll_interval_ms.to_string())
            .set("outbox.kind", "maildir")
            .set("outbox.maildir", outbox.display().to_string())
            // A fresh send quota per run, in a Redis namespace of its own.
            .set("sender.redis_prefix", format!("mailroom-{}:{}", spec.label, uuid::Uuid::new_v4().simple()));
        let logs = dir.join("logs");
        Ok(Self { dir, inbox, outbox, logs, pool, agent, upload_port, token, env })
    }

    /// The environment plus `extra` (which wins), as the owned pairs `procs::start` and
    /// [`Settings::load_from`] take.
    pub fn env_with(&self, extra: WorkerEnv) -> Vec<(String, String)> {
        self.env.clone().merge(extra).owned()
    }
}

/// The documents of a knowledge directory (every file but its `README.md`), sorted.
pub fn knowledge_files(knowledge: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut documents: Vec<PathBuf> = std::fs::read_dir(knowledge)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    documents.sort();
    Ok(documents)
}

/// Uploads `documents` for `agent` through the upload API at `base`; every one must be
/// accepted (202).
pub async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    agent: &str,
    documents: &[PathBuf],
) -> anyhow::Result<()> {
    for path in documents {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let form = reqwest::multipart::Form::new()
            .text("agent_email", agent.to_owned())
            .part("file", reqwest::multipart::Part::bytes(std::fs::read(path)?).file_name(name.clone()));
        let response = http.post(format!("{base}/documents")).bearer_auth(token).multipart(form).send().await?;
        anyhow::ensure!(response.status().as_u16() == 202, "upload of {name} refused: {}", response.text().await?);
    }
    Ok(())
}
