//! `mailroom topology apply|verify`: declare the topology over AMQP, and compare the live broker
//! with it through the management API (which, unlike AMQP, reports queue arguments).

use std::process::ExitCode;

use pipeline_core::Settings;
use pipeline_core::topology::{BindingDecl, LiveExchange, LiveQueue, LiveTopology, Topology};

/// The management client of these settings.
pub fn management(settings: &Settings) -> rabbitmq_mgmt::Client {
    rabbitmq_mgmt::Client::new(
        &settings.management.url,
        &settings.management.username,
        settings.management.password.clone(),
    )
}

/// Declares the topology in the vhost of `amqp.url`.
pub async fn apply(settings: &Settings) -> anyhow::Result<ExitCode> {
    let topology = Topology::new(&settings.topology.retry_delays_ms);
    let connection = pipeline_core::amqp::connect(&settings.amqp, "mailroom-topology-apply")
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to RabbitMQ at {}: {e}", settings.amqp.redacted_url()))?;
    let channel = connection.create_channel().await?;
    topology.declare(&channel).await?;
    // The retry exchange of earlier versions routes into every work queue and its permissions
    // cannot be narrowed to one queue: gone, with its bindings (deleting an absent exchange is
    // a no-op).
    channel.exchange_delete(pipeline_core::topology::LEGACY_RETRY_EXCHANGE.into(), Default::default()).await?;
    connection.close(200, "done".into()).await?;
    println!(
        "Applied {} exchanges, {} queues and {} bindings to vhost {:?}.",
        topology.exchanges.len(),
        topology.queues.len(),
        topology.bindings.len(),
        settings.amqp.vhost()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads what the vhost holds.
pub async fn live_topology(client: &rabbitmq_mgmt::Client, vhost: &str) -> anyhow::Result<LiveTopology> {
    let exchanges = client
        .exchanges(vhost)
        .await?
        .into_iter()
        .map(|e| LiveExchange { name: e.name, kind: e.kind, durable: e.durable })
        .collect();
    let queues = client
        .queues(vhost)
        .await?
        .into_iter()
        .map(|q| LiveQueue { name: q.name, durable: q.durable, arguments: q.arguments })
        .collect();
    let bindings = client
        .bindings(vhost)
        .await?
        .into_iter()
        .filter(|b| b.destination_type == "queue")
        .map(|b| BindingDecl { exchange: b.source, routing_key: b.routing_key, queue: b.destination })
        .collect();
    Ok(LiveTopology { exchanges, queues, bindings })
}

/// Prints the drift and exits 1 when the broker differs from the topology.
pub async fn verify(settings: &Settings) -> anyhow::Result<ExitCode> {
    let topology = Topology::new(&settings.topology.retry_delays_ms);
    let vhost = settings.amqp.vhost();
    let live = match live_topology(&management(settings), &vhost).await {
        Ok(live) => live,
        Err(e) => {
            // Only the management API reports queue arguments; say that in one line, not as the
            // HTTP client's error chain.
            let needed = e.downcast_ref::<rabbitmq_mgmt::MgmtError>().and_then(|m| {
                crate::broker_admin::management_needed("`mailroom topology verify` (queue arguments) needs", m)
            });
            match needed {
                Some(line) => {
                    eprintln!("error: {line}");
                    return Ok(ExitCode::from(2));
                }
                None => return Err(e),
            }
        }
    };
    let drift = topology.diff(&live);
    if drift.is_empty() {
        println!(
            "Topology of vhost {vhost:?} matches: {} exchanges, {} queues, {} bindings.",
            topology.exchanges.len(),
            topology.queues.len(),
            topology.bindings.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("Topology of vhost {vhost:?} has drifted ({} difference(s)):", drift.len());
    for d in &drift {
        println!("  {d}");
    }
    println!("Run `mailroom topology apply` for what is missing; a queue with other arguments must be deleted first.");
    Ok(ExitCode::from(1))
}
