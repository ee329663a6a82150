//! The infrastructure checks of `mailroom doctor`: PostgreSQL, Redis and the broker — login,
//! topology and the permissions of the configured user.

use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use pipeline_core::Settings;
use pipeline_core::consumer::{UsedTopology, binary_names};
use pipeline_core::settings::redact_url;
use secrecy::ExposeSecret as _;

use super::{Check, timed};

/// The routing key of the permission probe: bound to no queue, so the broker drops the message.
const PROBE_ROUTING_KEY: &str = "mailroom.doctor.permission-probe";

/// PostgreSQL and Redis.
pub(super) async fn services(settings: &Settings) -> Vec<Check> {
    let (db, redis) = tokio::join!(
        timed("postgresql", "check database.url and that PostgreSQL runs", database(settings)),
        timed("redis", "check redis.url and that Redis runs", redis(settings)),
    );
    [db, redis].into_iter().flatten().collect()
}

async fn database(settings: &Settings) -> Vec<Check> {
    let url = redact_url(settings.database.url.expose_secret());
    let check = async {
        let pool = mailroom_db::status::connect_existing(&settings.database.url).await?;
        let version: String = sqlx::query_scalar("SHOW server_version").fetch_one(&pool).await?;
        let migrated = mailroom_db::status::table_exists(&pool, "documents").await?;
        pool.close().await;
        Ok::<_, anyhow::Error>((version, migrated))
    };
    vec![match check.await {
        Ok((version, true)) => Check::ok("postgresql", format!("PostgreSQL {version} at {url}, schema present")),
        Ok((version, false)) => Check::fail(
            "postgresql",
            format!("PostgreSQL {version} at {url} has no Mailroom schema"),
            "run `mailroom migrate` (every worker also migrates at start)",
        ),
        Err(e) => Check::fail(
            "postgresql",
            pipeline_core::binary::error_line(e.as_ref()),
            "check database.url (sslmode, password, database name) and that PostgreSQL runs",
        ),
    }]
}

async fn redis(settings: &Settings) -> Vec<Check> {
    let url = redact_url(settings.redis.url.expose_secret());
    let check = async {
        let client = mailroom_redis::client(&settings.redis).map_err(|e| e.to_string())?;
        // No time-outs of the client's own (redis-rs 1.x would give up after 1 s connecting and
        // 0.5 s waiting for the reply): the check's deadline (`timed`) is the one reported.
        let unbounded = redis::AsyncConnectionConfig::new().set_connection_timeout(None).set_response_timeout(None);
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&unbounded)
            .await
            .map_err(|e| mailroom_redis::describe(&e))?;
        redis::cmd("PING").query_async::<String>(&mut connection).await.map_err(|e| mailroom_redis::describe(&e))
    };
    vec![match check.await {
        Ok(pong) => Check::ok("redis", format!("{url} answered {pong}")),
        Err(e) => Check::fail(
            "redis",
            format!("{url}: {e}"),
            "check redis.url (password; rediss:// with [redis.tls] ca_file) and that Redis runs",
        ),
    }]
}

/// The broker: login, topology, permissions of `role` (every binary's when `None`).
pub(super) async fn broker(settings: &Settings, role: Option<&str>) -> Vec<Check> {
    timed("broker", "check amqp.url and that RabbitMQ runs", broker_checks(settings, role)).await
}

async fn broker_checks(settings: &Settings, role: Option<&str>) -> Vec<Check> {
    let url = settings.amqp.redacted_url();
    let connection = match pipeline_core::amqp::connect(&settings.amqp, "mailroom doctor").await {
        Ok(connection) => connection,
        Err(e) => {
            return vec![Check::fail(
                "broker",
                format!("{url}: {e}"),
                "check amqp.url (user, password, vhost; amqps:// needs [amqp.tls]) and that RabbitMQ runs",
            )];
        }
    };
    let mut checks = vec![Check::ok("broker", format!("logged in at {url}"))];
    let roles: Vec<&str> = role.map_or_else(|| binary_names().collect(), |r| vec![r]);
    let used = UsedTopology::union(roles.iter().copied());
    let who = role.map_or_else(|| "every binary".to_owned(), |r| format!("the {r}"));
    let topology = topology(&connection, &used, &who).await;
    let complete = topology.outcome == super::Outcome::Ok;
    checks.push(topology);
    // Probing a missing exchange or queue says NOT_FOUND, nothing about permissions.
    checks.push(if complete {
        permissions(&connection, &used, &who, role).await
    } else {
        Check::skip("broker permissions", "not checked until the topology exists")
    });
    let _ = connection.close(200, "doctor done".into()).await;
    checks
}

async fn topology(connection: &Connection, used: &UsedTopology, who: &str) -> Check {
    let result = async {
        let channel = connection.create_channel().await?;
        used.check_exists(&channel).await?;
        let _ = channel.close(200, "ok".into()).await;
        Ok::<_, lapin::Error>(())
    };
    match result.await {
        Ok(()) => Check::ok(
            "broker topology",
            format!("{} exchanges and {} queues {who} uses exist", used.exchanges.len(), used.queues.len()),
        ),
        Err(e) => Check::fail(
            "broker topology",
            format!("missing what {who} uses: {e}"),
            "run `mailroom topology apply` (or start a worker with topology.declare = true)",
        ),
    }
}

async fn permissions(connection: &Connection, used: &UsedTopology, who: &str, role: Option<&str>) -> Check {
    // Each probe gets its own channel: a refused one closes its channel.
    let mut refused = Vec::new();
    for exchange in &used.exchanges {
        if let Err(e) = probe_write(connection, exchange).await {
            refused.push(format!("write {exchange}: {}", first_line(&e.to_string())));
        }
    }
    for queue in &used.queues {
        if let Err(e) = probe_read(connection, queue).await {
            refused.push(format!("read {queue}: {}", first_line(&e.to_string())));
        }
    }
    if refused.is_empty() {
        return Check::ok(
            "broker permissions",
            format!(
                "the user can write to {} and read {}, as {who} needs",
                used.exchanges.iter().copied().collect::<Vec<_>>().join(", "),
                used.queues.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        );
    }
    let role_hint = match role {
        Some(role) => format!("grant the {role} user those permissions (deploy/rabbitmq/definitions.json)"),
        None => "grant them, or run `mailroom doctor --role <binary>` with each role's own user".to_owned(),
    };
    Check::fail("broker permissions", refused.join("; "), role_hint)
}

/// Publishes an empty message with a routing key nothing is bound to, confirmed: the broker
/// drops it after checking the user's write permission on `exchange`.
async fn probe_write(connection: &Connection, exchange: &str) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let confirm = channel
        .basic_publish(
            exchange.into(),
            PROBE_ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            b"",
            BasicProperties::default().with_app_id("mailroom-doctor".into()),
        )
        .await?;
    confirm.await?;
    close(channel).await
}

/// Opens a consumer on `queue` (read permission) with room for no message in hand, and cancels
/// it: anything delivered meanwhile returns to the queue when the channel closes.
async fn probe_read(connection: &Connection, queue: &str) -> Result<(), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(1, BasicQosOptions::default()).await?;
    let consumer = channel
        .basic_consume(queue.into(), "mailroom-doctor".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    channel.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await?;
    close(channel).await
}

async fn close(channel: Channel) -> Result<(), lapin::Error> {
    channel.close(200, "probe done".into()).await
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}
