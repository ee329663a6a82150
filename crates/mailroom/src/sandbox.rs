//! The throw-away place `mailroom demo` and `mailroom bench` run the whole pipeline in: a
//! database (dropped and migrated), a directory with a Maildir inbox, an outbox, uploads and
//! logs (emptied), an upload port and token, and the environment every worker of the run gets.
//! The vhost is the caller's: the demo creates it through whatever can manage vhosts on this
//! machine, the bench through the management API it needs anyway. Also the upload of the
//! knowledge base both start with.

use std::path::{Path, PathBuf};

use pipeline_core::Settings;
use secrecy::ExposeSecret as _;
use serde_json::Value;
use sqlx::PgPool;

use crate::procs::{database_url, vhost_url};

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
    /// `MAILROOM__…` variables every worker of the run gets; callers add their own.
    pub env: Vec<(String, String)>,
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
        let env = [
            ("MAILROOM__AMQP__URL", vhost_url(&settings.amqp.url, spec.vhost)),
            ("MAILROOM__DATABASE__URL", db_url.expose_secret().to_owned()),
            ("MAILROOM__UPLOAD_API__LISTEN", format!("127.0.0.1:{upload_port}")),
            ("MAILROOM__UPLOAD_API__TOKEN", token.clone()),
            ("MAILROOM__STORAGE__DIR", dir.join("uploads").display().to_string()),
            ("MAILROOM__MAILBOX__KIND", "maildir".into()),
            ("MAILROOM__MAILBOX__MAILDIR", inbox.display().to_string()),
            ("MAILROOM__MAILBOX__AGENT_EMAIL", agent.clone()),
            ("MAILROOM__MAILBOX__POLL_INTERVAL_MS", spec.poll_interval_ms.to_string()),
            ("MAILROOM__OUTBOX__KIND", "maildir".into()),
            ("MAILROOM__OUTBOX__MAILDIR", outbox.display().to_string()),
            // A fresh send quota per run, in a Redis namespace of its own.
            ("MAILROOM__SENDER__REDIS_PREFIX", format!("mailroom-{}:{}", spec.label, uuid::Uuid::new_v4().simple())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let logs = dir.join("logs");
        Ok(Self { dir, inbox, outbox, logs, pool, agent, upload_port, token, env })
    }

    /// The environment plus `extra` (which wins, being later).
    pub fn env_with(&self, extra: impl IntoIterator<Item = (&'static str, String)>) -> Vec<(String, String)> {
        self.env.iter().cloned().chain(extra.into_iter().map(|(k, v)| (k.to_owned(), v))).collect()
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
