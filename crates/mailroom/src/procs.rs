//! Worker processes for `mailroom demo` and `mailroom up`: finding the worker binaries next to
//! `mailroom`, starting them with an environment, restarting one that dies, and stopping them
//! gracefully (SIGTERM, then a kill after a deadline) so in-flight messages are drained; and the
//! URLs of the throw-away vhost and database `demo` and `bench` run them in.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};

use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Every pipeline worker binary, in start order (producers last, so consumers are ready): the
/// names of [`pipeline_core::consumer::BINARIES`].
pub const WORKERS: [&str; 6] = {
    let b = pipeline_core::consumer::BINARIES;
    [b[0].name, b[1].name, b[2].name, b[3].name, b[4].name, b[5].name]
};

/// A worker binary is missing.
#[derive(Debug, thiserror::Error)]
#[error(
    "worker binary {missing} not found in {dir}; build every binary first: \
     `cargo build --release --workspace --bins` (or without --release for target/debug)"
)]
pub struct MissingBinary {
    /// The binary's name.
    pub missing: String,
    /// Where it was looked for.
    pub dir: String,
}

/// The directory holding the worker binaries: the one `mailroom` itself runs from.
pub fn bin_dir() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_else(|| PathBuf::from("."))
}

/// The path of each worker binary, or which one is missing.
pub fn worker_path(dir: &Path, name: &str) -> Result<PathBuf, MissingBinary> {
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(MissingBinary { missing: name.to_owned(), dir: dir.display().to_string() })
    }
}

/// Where a worker's output goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// Appended to `<dir>/<name>.<n>.log`.
    Files(PathBuf),
    /// Printed on our stdout, each line prefixed with `[name.n]`.
    Prefixed,
}

/// One running worker process.
#[derive(Debug)]
pub struct Worker {
    /// Binary name.
    pub name: String,
    /// Instance number (1-based) among workers of the same binary.
    pub instance: usize,
    /// The process.
    pub child: Child,
    /// How often it was restarted.
    pub restarts: u32,
}

impl Worker {
    /// `name.instance`, as in logs.
    pub fn label(&self) -> String {
        format!("{}.{}", self.name, self.instance)
    }
}

/// Starts worker `name` (instance `instance`) with `env` added to ours.
pub fn start(
    dir: &Path,
    name: &str,
    instance: usize,
    env: &[(String, String)],
    output: &Output,
) -> std::io::Result<Worker> {
    let program = worker_path(dir, name).map_err(std::io::Error::other)?;
    let mut cmd = Command::new(program);
    cmd.envs(env.iter().cloned()).stdin(Stdio::null()).kill_on_drop(true);
    match output {
        Output::Files(logs) => {
            std::fs::create_dir_all(logs)?;
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(logs.join(format!("{name}.{instance}.log")))?;
            cmd.stdout(file.try_clone()?).stderr(file);
        }
        Output::Prefixed => {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    let mut child = cmd.spawn()?;
    if let Output::Prefixed = output {
        let label = format!("{name}.{instance}");
        if let Some(out) = child.stdout.take() {
            tokio::spawn(prefix_lines(label.clone(), BufReader::new(out)));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(prefix_lines(label, BufReader::new(err)));
        }
    }
    Ok(Worker { name: name.to_owned(), instance, child, restarts: 0 })
}

async fn prefix_lines(label: String, reader: impl tokio::io::AsyncBufRead + Unpin) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        println!("[{label:<16}] {line}");
    }
}

/// Sends SIGTERM (the workers drain in-flight messages on it).
pub fn terminate(child: &Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
    }
}

/// Stops every worker: SIGTERM to all, then waits up to `deadline` before killing stragglers.
/// Returns the labels of the ones that had to be killed.
pub async fn stop_all(workers: &mut [Worker], deadline: Duration) -> Vec<String> {
    for w in workers.iter() {
        terminate(&w.child);
    }
    let mut killed = Vec::new();
    let until = tokio::time::Instant::now() + deadline;
    for w in workers.iter_mut() {
        match tokio::time::timeout_at(until, w.child.wait()).await {
            Ok(_) => {}
            Err(_) => {
                let _ = w.child.kill().await;
                killed.push(w.label());
            }
        }
    }
    killed
}

/// `url` with its database (path) replaced by `name`.
pub fn database_url(url: &SecretString, name: &str) -> SecretString {
    let mut parsed = match url::Url::parse(url.expose_secret()) {
        Ok(u) => u,
        Err(_) => return url.clone(),
    };
    parsed.set_path(&format!("/{name}"));
    SecretString::from(parsed.to_string())
}

/// `url` with its vhost (path) replaced by `vhost`.
pub fn vhost_url(url: &SecretString, vhost: &str) -> String {
    match url::Url::parse(url.expose_secret()) {
        Ok(mut u) => {
            u.set_path(&format!("/{}", rabbitmq_mgmt::encode_segment(vhost)));
            u.to_string()
        }
        Err(_) => url.expose_secret().to_owned(),
    }
}

/// The user the workers connect as (permissions on the demo vhost are granted to it).
pub fn amqp_user(url: &SecretString) -> String {
    url::Url::parse(url.expose_secret())
        .ok()
        .map(|u| u.username().to_owned())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "guest".into())
}
