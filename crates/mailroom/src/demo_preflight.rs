//! `mailroom demo`'s first step: does each service it needs answer, and how can it create its
//! vhost? Every problem is collected (not just the first) so one run tells the user everything
//! to start. The management API is not among the services: the demo works without it
//! ([`crate::broker_admin`]).

use std::time::Duration;

use pipeline_core::Settings;
use secrecy::ExposeSecret as _;

use crate::broker_admin::{AdminError, VhostAdmin};
use crate::procs::database_url;

/// A service the demo needs that did not answer.
#[derive(Debug)]
pub struct Unreachable {
    /// Which.
    pub service: &'static str,
    /// Where it was looked for (password redacted).
    pub looked_at: String,
    /// What went wrong.
    pub error: String,
    /// The command that starts it.
    pub start_with: &'static str,
}

/// Starts all three services where Docker is available.
pub const COMPOSE: &str = "docker compose -f docker-compose.rabbitmq.yml up -d";

/// Which services do not answer, and how the demo's vhost can be created (or why it cannot:
/// one line that says how to fix it).
pub async fn preflight(settings: &Settings) -> (Vec<Unreachable>, Option<Result<VhostAdmin, AdminError>>) {
    let mut problems = Vec::new();
    let timeout = Duration::from_secs(8);
    let amqp = tokio::time::timeout(timeout, pipeline_core::amqp::connect(&settings.amqp, "mailroom-demo-check")).await;
    let mut admin = None;
    match amqp {
        Ok(Ok(conn)) => {
            let _ = conn.close(200, "checked".into()).await;
            // Only worth asking once the broker answers: otherwise its absence is the message.
            admin = Some(VhostAdmin::detect(settings).await);
        }
        other => problems.push(Unreachable {
            service: "RabbitMQ (AMQP)",
            looked_at: settings.amqp.redacted_url(),
            error: match other {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 8 s".into(),
            },
            start_with: "rabbitmq-server -detached",
        }),
    }
    let server = database_url(&settings.database.url, "postgres");
    let pg = tokio::time::timeout(timeout, mailroom_db::status::connect_existing(&server)).await;
    match pg {
        Ok(Ok(pool)) => pool.close().await,
        other => problems.push(Unreachable {
            service: "PostgreSQL",
            looked_at: pipeline_core::settings::redact_url(settings.database.url.expose_secret()),
            error: match other {
                Ok(Err(e)) => e.to_string(),
                _ => "no answer within 8 s".into(),
            },
            start_with: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
        }),
    }
    let redis = async {
        let client = mailroom_redis::client(&settings.redis).map_err(|e| e.to_string())?;
        // No time-outs of the client's own (redis-rs 1.x defaults: 1 s to connect, 0.5 s for the
        // reply): the preflight's deadline below is the one reported.
        let unbounded = redis::AsyncConnectionConfig::new().set_connection_timeout(None).set_response_timeout(None);
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&unbounded)
            .await
            .map_err(|e| mailroom_redis::describe(&e))?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| mailroom_redis::describe(&e))
    };
    match tokio::time::timeout(timeout, redis).await {
        Ok(Ok(_)) => {}
        other => problems.push(Unreachable {
            service: "Redis",
            looked_at: settings.redis.redacted_url(),
            error: match other {
                Ok(Err(e)) => e,
                _ => "no answer within 8 s".into(),
            },
            start_with: "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no",
        }),
    }
    (problems, admin)
}
