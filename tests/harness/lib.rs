//! Test harness shared by every crate's integration tests: a throw-away RabbitMQ vhost and a
//! throw-away PostgreSQL database per test (both removed afterwards, even when the test fails),
//! real binaries spawned with the environment pointing at them, and polling with a deadline.
//!
//! Defaults match the machines of docs/ARCHITECTURE.md ("Machines"); `MAILROOM_TEST_AMQP_HOST`,
//! `MAILROOM_TEST_MGMT_URL` and `MAILROOM_TEST_PG_URL` point the tests elsewhere.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use sqlx::{Connection, PgConnection};
use tokio::process::{Child, Command};

mod binaries;
pub mod corpus;
pub mod dovecot;
pub mod history;
pub mod smtp;
pub mod tls_servers;

pub use binaries::{bin_path, example_path, target_dir};

/// The recording HTTP fake (it lives with the LLM fake, which is built on it).
pub use llm_fake::http as fake_http;

pub use rabbitmq_mgmt;

/// The receiving mail server the tests' mail names in its `Authentication-Results` (the demo's,
/// `mailroom::sandbox::AUTHSERV_ID`): set `mailbox.authserv_ids` to it where replies must be
/// sent, since a reply to an unauthenticated sender is a draft (`mailbox.unauthenticated`).
pub const AUTHSERV_ID: &str = "mx.northwind.example";

/// The `Authentication-Results` field, CRLF included, in which [`AUTHSERV_ID`] says the sender
/// `from` (an address) passed SPF, DKIM and DMARC; goes on top of a test email's header.
pub fn authenticated(from: &str) -> String {
    let domain = from.rsplit_once('@').map_or(from, |(_, d)| d).trim_end_matches('>');
    format!(
        "Authentication-Results: {AUTHSERV_ID};\r\n\tspf=pass smtp.mailfrom={from};\r\n\t\
         dkim=pass header.d={domain} header.s=test;\r\n\tdmarc=pass (p=none) header.from={domain}\r\n"
    )
}

/// Management API base URL.
pub fn mgmt_url() -> String {
    std::env::var("MAILROOM_TEST_MGMT_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned())
}

/// A management client with the guest account.
pub fn mgmt() -> rabbitmq_mgmt::Client {
    rabbitmq_mgmt::Client::new(&mgmt_url(), "guest", SecretString::from("guest"))
}

fn amqp_host() -> String {
    std::env::var("MAILROOM_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".to_owned())
}

fn pg_server_url() -> String {
    std::env::var("MAILROOM_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Runs an async cleanup from `Drop`, on a thread of its own (Drop cannot await).
fn cleanup_blocking<F, Fut>(f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
            rt.block_on(f());
        }
    })
    .join();
}

/// A fresh vhost with full permissions for guest; deleted on drop.
#[derive(Debug)]
pub struct TestVhost {
    /// The vhost's name.
    pub name: String,
}

impl TestVhost {
    /// Creates `mailroom-test-<random>`.
    pub async fn create() -> Self {
        let name = format!("mailroom-test-{}", short_id());
        let client = mgmt();
        client.create_vhost(&name).await.expect("create vhost (is rabbitmq_management enabled?)");
        client.set_permissions(&name, "guest", ".*", ".*", ".*").await.expect("grant guest");
        Self { name }
    }

    /// AMQP URL of the vhost, as guest.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/{}", amqp_host(), rabbitmq_mgmt::encode_segment(&self.name))
    }

    /// Messages in a queue of this vhost (ready, unacked).
    pub async fn depth(&self, queue: &str) -> (u64, u64) {
        let q = mgmt().queue(&self.name, queue).await.expect("queue info");
        (q.messages_ready, q.messages_unacknowledged)
    }

    /// Takes every message now in `queue` off it (no acknowledgement needed), each body parsed
    /// as JSON.
    pub async fn drain<T: serde::de::DeserializeOwned>(&self, queue: &str) -> Vec<T> {
        let conn = lapin::Connection::connect(&self.amqp_url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = conn.create_channel().await.expect("channel");
        let mut out = Vec::new();
        while let Some(m) =
            ch.basic_get(queue.into(), lapin::options::BasicGetOptions { no_ack: true }).await.expect("basic.get")
        {
            out.push(serde_json::from_slice(&m.delivery.data).unwrap_or_else(|e| panic!("a {queue} body: {e}")));
        }
        let _ = conn.close(200, "drained".into()).await;
        out
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        let name = self.name.clone();
        cleanup_blocking(move || async move {
            let _ = mgmt().delete_vhost(&name).await;
        });
    }
}

/// A fresh, empty database; dropped (with its connections) on drop.
#[derive(Debug)]
pub struct TestDb {
    /// The database's name.
    pub name: String,
}

impl TestDb {
    /// Creates `mailroom_test_<random>`.
    pub async fn create() -> Self {
        let name = format!("mailroom_test_{}", short_id());
        let mut conn = PgConnection::connect(&format!("{}/postgres", pg_server_url())).await.expect("postgres");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let _ = conn.close().await;
        Self { name }
    }

    /// URL of the database.
    pub fn url(&self) -> String {
        format!("{}/{}", pg_server_url(), self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        cleanup_blocking(move || async move {
            let url = format!("{}/{name}", pg_server_url());
            let _ = mailroom_db::drop_database(&url.into()).await;
        });
    }
}

/// Where spawned processes write their output (a pipe nobody reads would block a chatty
/// process once its buffer is full).
pub fn log_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("mailroom-test-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Spawns a program with `env` added to a clean Mailroom environment (inherited `MAILROOM_*`
/// variables are removed so the developer's shell cannot leak into a test). Its output goes to
/// a file under [`log_dir`]; the process is killed when the handle is dropped.
pub fn spawn(program: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Child {
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let log = log_dir().join(format!("{name}-{}.log", short_id()));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = command(program, args, env);
    cmd.stdout(file.try_clone().expect("log file")).stderr(file);
    cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()))
}

fn command(program: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("MAILROOM") {
            cmd.env_remove(key);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a program to completion and returns its exit code and stdout+stderr.
pub async fn run(program: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let (code, stdout, stderr) = run_split(program, args, env).await;
    (code, format!("{stdout}{stderr}"))
}

/// Runs a program to completion, both outputs piped, and returns its exit code, stdout and
/// stderr apart.
pub async fn run_split(program: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = command(program, args, env);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("command finished in time")
        .expect("command ran");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// Sends a signal to a child process (`kill -<signal> <pid>`).
pub fn signal(child: &Child, signal: &str) {
    let pid = child.id().expect("child still running");
    let status =
        std::process::Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status().expect("kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Polls `check` every 50 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sleeps until just after the system clock's next whole second, so that what a test does next
/// (two deliveries of one reply, say) happens within one second of the clock.
pub async fn start_of_next_second() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970");
    tokio::time::sleep(Duration::from_nanos(u64::from(1_000_000_000 - now.subsec_nanos())) + Duration::from_millis(5))
        .await;
}

/// A fresh directory under the system temp dir; removed (with its contents) on drop.
#[derive(Debug)]
pub struct TestDir {
    /// The directory.
    pub path: PathBuf,
}

impl TestDir {
    /// Creates `mailroom-test-<random>`.
    pub fn create() -> Self {
        let path = std::env::temp_dir().join(format!("mailroom-test-{}", short_id()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self { path }
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The messages of a Maildir folder (`new/` and `cur/`, not `tmp/`), sorted.
pub fn maildir_messages(folder: &std::path::Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(folder.join(sub)).into_iter().flatten())
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// A TCP port that was free a moment ago (for binaries that need a fixed listen address).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// AMQP URL of `vhost` as another user than guest (the role users of
/// `deploy/rabbitmq/definitions.json`). Contains the password: never log it.
pub fn amqp_url_as(vhost: &str, user: &str, password: &str) -> String {
    format!(
        "amqp://{}:{}@{}/{}",
        rabbitmq_mgmt::encode_segment(user),
        rabbitmq_mgmt::encode_segment(password),
        amqp_host(),
        rabbitmq_mgmt::encode_segment(vhost)
    )
}

/// Like [`spawn`], and also returns the path of the process's log file, for tests that check
/// what a process logged (a readiness reason, or that a secret never appears).
pub fn spawn_logged(program: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> (Child, PathBuf) {
    let name = program.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let log = log_dir().join(format!("{name}-{}.log", short_id()));
    let file = std::fs::File::create(&log).expect("log file");
    let mut cmd = command(program, args, env);
    cmd.stdout(file.try_clone().expect("log file")).stderr(file);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
    (child, log)
}
