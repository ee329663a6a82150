//! Stopping and restoring the shared services — RabbitMQ, PostgreSQL, Redis — with a guard that
//! restores the service when dropped, so a scenario that fails (panics) half-way through an
//! outage never leaves the machine without its broker, database or cache for the tests after
//! it. Restoring waits until the service is healthy again: the broker's management API and AMQP
//! port answer, `pg_isready` says yes, Redis answers `PING`.
//!
//! The commands are the ones `.ci/run` and `mailroom demo` print. Start commands run under
//! `setsid` with their output discarded: the daemons they leave behind must not belong to the
//! test's process group (which the test runner may kill) nor hold its output pipes open.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A shared service the scenarios take down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// RabbitMQ: `rabbitmqctl stop_app` / `start_app` (the Erlang node stays up).
    Broker,
    /// PostgreSQL: `pg_ctlcluster <version> main stop` / `start`.
    Postgres,
    /// Redis: `redis-cli shutdown nosave` / `redis-server --daemonize yes …`.
    Redis,
}

fn pg_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .ok()
        .and_then(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).max())
        .unwrap_or_else(|| "15".to_owned())
}

/// Runs a command to completion, output discarded; whether it succeeded.
fn quiet(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command and returns its output, or panics with it.
fn checked(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).stdin(Stdio::null()).output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("{program} {args:?}: {e}"),
    }
}

impl Service {
    /// Whether the service answers.
    pub(crate) fn healthy(self) -> bool {
        match self {
            Service::Broker => {
                std::net::TcpStream::connect_timeout(&"127.0.0.1:5672".parse().expect("addr"), Duration::from_secs(2))
                    .is_ok()
                    && quiet("curl", &["-fsS", "-m", "5", "-u", "guest:guest", "http://127.0.0.1:15672/api/overview"])
            }
            Service::Postgres => quiet("pg_isready", &["-q", "-h", "127.0.0.1", "-p", "5432"]),
            Service::Redis => Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", "6379", "ping"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG"),
        }
    }

    fn stop(self) {
        match self {
            Service::Broker => checked("rabbitmqctl", &["stop_app"]),
            Service::Postgres => {
                checked("pg_ctlcluster", &["--skip-systemctl-redirect", &pg_version(), "main", "stop"])
            }
            // `shutdown nosave` closes the connection without an answer, so its exit code says
            // nothing; the check below does.
            Service::Redis => {
                quiet("redis-cli", &["-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"]);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.healthy() {
            assert!(Instant::now() < deadline, "{self:?} still answers 30 s after being stopped");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts the service (if it does not answer) and waits until it is healthy.
    fn start(self) {
        if self.healthy() {
            return;
        }
        match self {
            Service::Broker => {
                quiet("setsid", &["rabbitmqctl", "start_app"]);
            }
            Service::Postgres => {
                quiet("setsid", &["pg_ctlcluster", "--skip-systemctl-redirect", &pg_version(), "main", "start"]);
            }
            Service::Redis => {
                quiet(
                    "setsid",
                    &[
                        "redis-server",
                        "--daemonize",
                        "yes",
                        "--bind",
                        "127.0.0.1",
                        "--port",
                        "6379",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                );
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.healthy() {
            assert!(Instant::now() < deadline, "{self:?} did not come back within 120 s");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A service taken down by a scenario; restored (and waited for) when dropped, if the scenario
/// did not restore it itself.
#[derive(Debug)]
pub(crate) struct Outage {
    service: Service,
    restored: bool,
    /// When it went down.
    pub(crate) since: Instant,
}

impl Outage {
    /// Stops `service` and returns the guard that brings it back.
    pub(crate) async fn begin(service: Service) -> Self {
        let t0 = Instant::now();
        tokio::task::spawn_blocking(move || service.stop()).await.expect("stop task");
        eprintln!("[faults] {service:?} stopped ({:.1} s)", t0.elapsed().as_secs_f64());
        Self { service, restored: false, since: Instant::now() }
    }

    /// Starts the service again and waits until it is healthy; returns how long it was down.
    pub(crate) async fn end(mut self) -> Duration {
        let service = self.service;
        tokio::task::spawn_blocking(move || service.start()).await.expect("start task");
        self.restored = true;
        let down = self.since.elapsed();
        eprintln!("[faults] {service:?} healthy again after {:.1} s down", down.as_secs_f64());
        down
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.restored {
            eprintln!("[faults] restoring {:?} after a failed scenario", self.service);
            self.service.start();
        }
    }
}

/// Makes sure every shared service answers, starting any that does not, or panics (each
/// scenario's first step: a service left down — by a scenario the test runner killed
/// mid-outage, say — would make the result meaningless and fail every later test too).
pub(crate) fn assert_all_healthy() {
    for service in [Service::Broker, Service::Postgres, Service::Redis] {
        if !service.healthy() {
            eprintln!("[faults] {service:?} does not answer; starting it");
            service.start();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_that_fails_mid_outage_still_gets_its_service_back() {
    assert_all_healthy();
    // The shortest outage to provoke: Redis, whose data the scenarios do not need.
    let failed = tokio::spawn(async {
        let _outage = Outage::begin(Service::Redis).await;
        assert!(!Service::Redis.healthy(), "Redis is down during the outage");
        panic!("the scenario fails half-way through its outage");
    })
    .await;
    assert!(failed.is_err_and(|e| e.is_panic()));
    assert!(Service::Redis.healthy(), "the guard brought Redis back and waited for it");
}
