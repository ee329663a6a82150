//! What the CLI asks of RabbitMQ beyond publishing and consuming, done so that it works on a fresh
//! install, where the management plugin (the HTTP API on 15672) is off (docs/ARCHITECTURE.md,
//! "Machines") and `mailroom demo` must still work as the README promises.
//!
//! - **Vhosts and permissions** ([`VhostAdmin`]): through the management API when it answers;
//!   otherwise, for a broker on this machine, through `rabbitmqctl`, which talks to the node over
//!   Erlang distribution rather than HTTP and so needs no plugin — only the node's Erlang cookie
//!   (readable by root and the `rabbitmq` user). A remote broker without the API cannot be
//!   administered from here, and the error says how to enable it.
//! - **Queue depths** ([`queue_depths`]): over AMQP itself. A passive `queue.declare` answers with
//!   the queue's ready-message and consumer counts, exactly and at once (the management API's
//!   counters lag by seconds), on the connection every command has anyway. Unacked counts and
//!   rates exist only in the management API; `mailroom status` adds them when it answers.
//! - [`management_needed`]: the one line a command prints when it truly needs the API (queue
//!   arguments for `topology verify`, rates for `status`) and cannot reach it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use pipeline_core::Settings;
use pipeline_core::settings::AmqpSettings;
use rabbitmq_mgmt::MgmtError;
use secrecy::{ExposeSecret as _, SecretString};

/// The command that turns the management API on.
pub const ENABLE_MANAGEMENT: &str = "rabbitmq-plugins enable rabbitmq_management";

/// How long the management API may take to answer before it counts as unreachable (a firewall
/// that drops packets would otherwise hold the demo for the HTTP client's own timeout).
const MANAGEMENT_TIMEOUT: Duration = Duration::from_secs(8);

/// One `rabbitmqctl` call starts an Erlang VM (about a second); a minute means it is stuck.
const RABBITMQCTL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where `rabbitmqctl` lives when `sbin` is not on the PATH (it usually is not for non-root
/// users, and Debian installs it there).
const RABBITMQCTL_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/usr/lib/rabbitmq/bin"];

/// Vhost administration failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No management API, and `rabbitmqctl` cannot reach a broker on another machine.
    #[error(
        "the RabbitMQ management API at {url} is not reachable and the broker ({host}) is not on this \
         machine, so rabbitmqctl cannot stand in for it; enable the API on the broker: `{ENABLE_MANAGEMENT}`"
    )]
    RemoteBroker {
        /// Management API base URL.
        url: String,
        /// The broker's host, from `amqp.url`.
        host: String,
    },
    /// No management API and no `rabbitmqctl`.
    #[error(
        "the RabbitMQ management API at {url} is not reachable and rabbitmqctl was not found (PATH, \
         /usr/sbin, /usr/local/sbin); enable the API: `{ENABLE_MANAGEMENT}`"
    )]
    NoRabbitmqctl {
        /// Management API base URL.
        url: String,
    },
    /// `rabbitmqctl` is there but failed.
    #[error(
        "the RabbitMQ management API at {url} is not reachable and `rabbitmqctl {command}` failed ({detail}); \
         run as root or as the rabbitmq user (rabbitmqctl needs the node's Erlang cookie), or enable the API: \
         `sudo {ENABLE_MANAGEMENT}`"
    )]
    Rabbitmqctl {
        /// Management API base URL.
        url: String,
        /// The arguments.
        command: String,
        /// The gist of its output.
        detail: String,
    },
    /// The management API answered, with an error.
    #[error(transparent)]
    Management(#[from] MgmtError),
}

/// The one line to print when something needs the management API and `error` says it is not
/// reachable; `None` for other errors (a refused login, say), which speak for themselves.
/// `needs` is the subject and verb: "`mailroom topology verify` needs".
pub fn management_needed(needs: &str, error: &MgmtError) -> Option<String> {
    match error {
        MgmtError::Unreachable { url, .. } => Some(format!(
            "{needs} the RabbitMQ management API, which is not reachable at {url}; enable it with \
             `{ENABLE_MANAGEMENT}`"
        )),
        _ => None,
    }
}

/// Creates and deletes vhosts, through whichever of the two ways this broker offers.
#[derive(Debug)]
pub enum VhostAdmin {
    /// The management API answers.
    Management(rabbitmq_mgmt::Client),
    /// It does not; the broker is local and `rabbitmqctl` works.
    Rabbitmqctl {
        /// The program.
        program: PathBuf,
        /// The management API that did not answer (for messages).
        management_url: String,
    },
}

impl VhostAdmin {
    /// Picks the management API if it answers, else `rabbitmqctl` if the broker of `amqp.url`
    /// is on this machine and `rabbitmqctl` can talk to it (checked by listing the vhosts).
    pub async fn detect(settings: &Settings) -> Result<Self, AdminError> {
        let client = crate::topology_cmd::management(settings);
        match tokio::time::timeout(MANAGEMENT_TIMEOUT, client.overview()).await {
            Ok(Ok(_)) => return Ok(Self::Management(client)),
            Ok(Err(MgmtError::Unreachable { .. })) | Err(_) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
        let url = client.base_url().to_owned();
        let host = broker_host(&settings.amqp.url);
        if !is_local(&host) {
            return Err(AdminError::RemoteBroker { url, host });
        }
        let program = find_rabbitmqctl(std::env::var_os("PATH").as_deref())
            .ok_or_else(|| AdminError::NoRabbitmqctl { url: url.clone() })?;
        let admin = Self::Rabbitmqctl { program, management_url: url };
        admin.vhosts().await?;
        Ok(admin)
    }

    /// How vhosts are administered, for the user.
    pub fn describe(&self) -> String {
        match self {
            Self::Management(client) => format!("the management API at {}", client.base_url()),
            Self::Rabbitmqctl { program, management_url } => {
                format!("{} (the management API at {management_url} is not reachable; not needed)", program.display())
            }
        }
    }

    /// Deletes `vhost` if it exists, creates it afresh and grants `user` everything on it.
    pub async fn recreate_vhost(&self, vhost: &str, user: &str) -> Result<(), AdminError> {
        self.delete_vhost(vhost).await?;
        match self {
            Self::Management(client) => {
                client.create_vhost(vhost).await?;
                client.set_permissions(vhost, user, ".*", ".*", ".*").await?;
            }
            Self::Rabbitmqctl { .. } => {
                self.ctl(&["add_vhost", vhost]).await?;
                self.ctl(&["set_permissions", "-p", vhost, user, ".*", ".*", ".*"]).await?;
            }
        }
        Ok(())
    }

    /// Deletes `vhost` and everything in it; a missing vhost is not an error.
    pub async fn delete_vhost(&self, vhost: &str) -> Result<(), AdminError> {
        match self {
            Self::Management(client) => Ok(client.delete_vhost(vhost).await?),
            // `delete_vhost` of a missing vhost fails with the same status as a real failure,
            // so look first.
            Self::Rabbitmqctl { .. } => {
                if self.vhosts().await?.iter().any(|v| v == vhost) {
                    self.ctl(&["delete_vhost", vhost]).await?;
                }
                Ok(())
            }
        }
    }

    /// The vhosts' names, through `rabbitmqctl` (only that variant needs them: the management
    /// API's delete already treats a missing vhost as done).
    async fn vhosts(&self) -> Result<Vec<String>, AdminError> {
        // `-s` (silent) prints the names alone, one a line, without a header.
        let out = self.ctl(&["-s", "list_vhosts", "name"]).await?;
        Ok(out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
    }

    /// Runs `rabbitmqctl ARGS`, returning its stdout.
    async fn ctl(&self, args: &[&str]) -> Result<String, AdminError> {
        let Self::Rabbitmqctl { program, management_url } = self else {
            unreachable!("ctl is only called for the rabbitmqctl variant");
        };
        let failed =
            |detail: String| AdminError::Rabbitmqctl { url: management_url.clone(), command: args.join(" "), detail };
        let run = tokio::process::Command::new(program).args(args).stdin(Stdio::null()).kill_on_drop(true).output();
        let output = match tokio::time::timeout(RABBITMQCTL_TIMEOUT, run).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed(format!("no answer within {} s", RABBITMQCTL_TIMEOUT.as_secs()))),
        };
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let text = format!("{}\n{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
        Err(failed(gist(&text, output.status.code())))
    }
}

/// One short line out of `rabbitmqctl`'s error output, which can run to dozens of lines of
/// Erlang terms: the line that names the error, clipped.
fn gist(text: &str, code: Option<i32>) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let line = if text.contains(".erlang.cookie") || text.contains("Authentication failed") {
        "cannot use the node's Erlang cookie".to_owned()
    } else {
        // "Error:" often stands alone with the message on the next line.
        match lines.iter().position(|l| l.starts_with("Error")) {
            Some(i) if lines[i].ends_with(':') && i + 1 < lines.len() => format!("{} {}", lines[i], lines[i + 1]),
            Some(i) => lines[i].to_owned(),
            None => lines.last().copied().unwrap_or("no output").to_owned(),
        }
    };
    let clipped: String = line.chars().take(200).collect();
    match code {
        Some(code) => format!("exit status {code}: {clipped}"),
        None => format!("killed: {clipped}"),
    }
}

/// The host of an AMQP URL (`127.0.0.1` when it has none, as the AMQP URI spec says).
pub fn broker_host(url: &SecretString) -> String {
    url::Url::parse(url.expose_secret())
        .ok()
        .and_then(|u| u.host_str().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_owned())
}

/// Whether `host` is this machine, as far as the URL tells.
pub fn is_local(host: &str) -> bool {
    matches!(host, "localhost" | "::1") || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// `rabbitmqctl` on `path`, or in the usual sbin directories.
fn find_rabbitmqctl(path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let on_path = path.map(|p| std::env::split_paths(p).collect::<Vec<_>>()).unwrap_or_default();
    on_path
        .into_iter()
        .chain(RABBITMQCTL_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("rabbitmqctl"))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Ready messages and consumers of one queue, as a passive `queue.declare` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Messages ready for delivery (unacked ones are not counted by AMQP).
    pub ready: u32,
    /// Consumers attached.
    pub consumers: u32,
}

/// Reading queue depths over AMQP failed.
#[derive(Debug, thiserror::Error)]
pub enum DepthError {
    /// The broker could not be reached.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        /// Redacted AMQP URL.
        url: String,
        /// Why.
        #[source]
        source: pipeline_core::amqp::ConnectError,
    },
    /// A channel operation failed for another reason than a missing queue.
    #[error("broker error while reading queue depths: {0}")]
    Amqp(#[from] lapin::Error),
}

/// The depth of each of `queues` in the vhost of `amqp.url`, `None` for a queue that does not
/// exist. Declaring passively never creates or changes a queue.
pub async fn queue_depths(amqp: &AmqpSettings, queues: &[&str]) -> Result<Vec<Option<Depth>>, DepthError> {
    let connection = pipeline_core::amqp::connect(amqp, "mailroom-queue-depths")
        .await
        .map_err(|source| DepthError::Connect { url: amqp.redacted_url(), source })?;
    let result = depths_on(&connection, queues).await;
    let _ = connection.close(200, "read".into()).await;
    result
}

async fn depths_on(connection: &lapin::Connection, queues: &[&str]) -> Result<Vec<Option<Depth>>, DepthError> {
    let passive = QueueDeclareOptions { passive: true, ..Default::default() };
    let mut channel = connection.create_channel().await?;
    let mut out = Vec::with_capacity(queues.len());
    for &name in queues {
        match channel.queue_declare(name.into(), passive, FieldTable::default()).await {
            Ok(q) => out.push(Some(Depth { ready: q.message_count(), consumers: q.consumer_count() })),
            // The broker closes the channel on NOT_FOUND; the next queue needs a new one.
            Err(e) if matches!(e.kind(), lapin::ErrorKind::ProtocolError(a) if a.get_id() == 404) => {
                out.push(None);
                channel = connection.create_channel().await?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let _ = channel.close(200, "read".into()).await;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_local() {
        for host in ["127.0.0.1", "127.0.1.1", "localhost", "::1"] {
            assert!(is_local(host), "{host}");
        }
        for host in ["10.0.0.5", "rabbit.internal", "192.0.2.1", "::2"] {
            assert!(!is_local(host), "{host}");
        }
    }

    #[test]
    fn the_broker_host_comes_from_the_amqp_url() {
        let host = |u: &str| broker_host(&SecretString::from(u.to_owned()));
        assert_eq!(host("amqp://guest:guest@127.0.0.1:5672/%2f"), "127.0.0.1");
        assert_eq!(host("amqps://u:p@rabbit.internal/v"), "rabbit.internal");
        assert_eq!(host("amqp://guest:guest@[::1]:5672/"), "::1");
        assert_eq!(host("amqp://"), "127.0.0.1");
    }

    #[test]
    fn the_gist_of_rabbitmqctl_output_is_one_short_line() {
        let cookie = "21:03:39 [error] Failed to create cookie file '/nonexistent/.erlang.cookie': enoent\n\n\
                      Distribution failed: {{:shutdown, ...}}";
        assert_eq!(gist(cookie, Some(78)), "exit status 78: cannot use the node's Erlang cookie");
        let missing = "Error:\nVirtual host 'x' does not exist\n";
        assert_eq!(gist(missing, Some(65)), "exit status 65: Error: Virtual host 'x' does not exist");
        assert_eq!(gist(&"x".repeat(500), Some(1)).len(), "exit status 1: ".len() + 200);
    }

    #[test]
    fn rabbitmqctl_is_found_on_the_path_first() {
        let dir = std::env::temp_dir().join(format!("mailroom-ctl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let fake = dir.join("rabbitmqctl");
        std::fs::write(&fake, "#!/bin/sh\n").expect("write");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(find_rabbitmqctl(Some(dir.as_os_str())), Some(fake.clone()));
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_ne!(find_rabbitmqctl(Some(dir.as_os_str())), Some(fake));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
