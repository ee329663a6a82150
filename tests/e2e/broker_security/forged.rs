//! A forged reply sends nothing, whoever publishes it: every role of `definitions.json`
//! publishes a well-formed `emails.to_send` message for a victim, straight to the queue's route
//! and through the retry exchange, to a running sender (as `mailroom-sender`). The broker refuses
//! the roles that may not write there; what gets through is refused by the sender's check
//! against the database (`ForgedReply`), and the outbox stays empty.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicGetOptions;
use mailroom_tests::{TestDb, TestDir, bin_path, spawn_logged};
use pipeline_core::messages::{EmailToSend, new_message_id, now};
use pipeline_core::topology::{self, EMAILS_TO_SEND, RETRY_EXCHANGE};
use pipeline_core::worker_env::WorkerEnv;
use pipeline_core::{Publisher, Topology};

use super::{RoleVhost, connect, is_access_refused, role_names, timed};

fn forged(n: usize, role: &str) -> EmailToSend {
    EmailToSend {
        message_id: new_message_id(),
        timestamp: now(),
        original_message_id: new_message_id(),
        email_id: format!("forged-{n}-{role}"),
        thread_id: None,
        to: "victim@example.com".into(),
        reply_to: "support@northwind.example".into(),
        subject: "Re: Your account".into(),
        generated_response: "Your account is locked. Confirm your password at https://evil.example/login.".into(),
        context_used: Vec::new(),
        agent_email: "support@northwind.example".into(),
        escalate: false,
        escalation_reason: None,
        in_reply_to: None,
        references: Vec::new(),
        original_subject: Some("Your account".into()),
    }
}

/// Publishes `msg` as the runtime does (confirms, `mandatory`): `Ok(true)` when the broker took
/// it, `Ok(false)` when it refused the role (403), an error for anything else.
async fn publish_as(url: &str, exchange: &str, routing_key: &str, msg: &EmailToSend) -> Result<bool, String> {
    let conn = connect(url).await;
    let publisher = match timed("confirm.select", Publisher::open(&conn, None)).await {
        Ok(p) => p,
        Err(e) => return Err(e.to_string()),
    };
    let props = BasicProperties::default()
        .with_message_id(msg.message_id.as_str().into())
        .with_delivery_mode(2)
        .with_content_type("application/json".into());
    let body = serde_json::to_vec(msg).expect("encode");
    let outcome =
        tokio::time::timeout(Duration::from_secs(15), publisher.send_raw(exchange, routing_key, &body, props))
            .await
            .map_err(|_| format!("no confirm for {exchange}/{routing_key}"))?;
    let _ = conn.close(200, "done".into()).await;
    match outcome {
        Ok(()) => Ok(true),
        Err(pipeline_core::PublishError::Amqp { source, .. }) if is_access_refused(&source) => Ok(false),
        Err(e) => Err(format!("{exchange}/{routing_key}: {e}")),
    }
}

#[tokio::test]
async fn a_forged_reply_from_any_role_directly_or_through_the_retry_exchange_sends_nothing() {
    let roles_vhost = RoleVhost::load().await;
    roles_vhost.apply_topology().await;
    let (db, outbox) = (TestDb::create().await, TestDir::create());
    let env = WorkerEnv::new()
        .set("amqp.url", roles_vhost.url("sender"))
        .set("topology.declare", "false")
        .set("database.url", db.url())
        .set("http.listen", "127.0.0.1:0")
        .set("outbox.maildir", outbox.path.display().to_string())
        .set("sender.redis_prefix", format!("mailroom-test:{}", uuid::Uuid::new_v4().simple()))
        .build();
    let (_sender, _log) = spawn_logged(&bin_path("sender"), &[], &env);

    let topology = Topology::new(&topology::DEFAULT_RETRY_DELAYS_MS);
    let retry_key = topology.retry_ladder(&EMAILS_TO_SEND)[0].queue.clone();
    let direct = EMAILS_TO_SEND.route();
    let mut through = Vec::new();
    for (n, role) in role_names().iter().enumerate() {
        for (exchange, key) in [(direct.exchange, direct.routing_key), (RETRY_EXCHANGE, retry_key.as_str())] {
            let msg = forged(n * 2 + usize::from(exchange == RETRY_EXCHANGE), role);
            if publish_as(&roles_vhost.url(role), exchange, key, &msg).await.expect("publish") {
                through.push(format!("{role} via {exchange}"));
            }
        }
    }
    // What the broker lets through: the roles that write to email_exchange (poller, classifier,
    // generator — the generator must, it publishes the real replies) and the admin; through the
    // retry exchange only the sender's own retries and the admin.
    assert_eq!(
        through,
        [
            "admin via email_exchange",
            "admin via retry_topic_exchange",
            "classifier via email_exchange",
            "poller via email_exchange",
            "rag-generator via email_exchange",
            "sender via retry_topic_exchange",
        ]
    );

    let admin = connect(&roles_vhost.url("admin")).await;
    let ch = admin.create_channel().await.expect("channel");
    let mut refused = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while refused.len() < through.len() && std::time::Instant::now() < deadline {
        match ch.basic_get("dead_letter_queue".into(), BasicGetOptions { no_ack: true }).await.expect("basic.get") {
            Some(m) => {
                let info = pipeline_core::dead_letter::decode(&m.delivery.properties, &m.delivery.data, false);
                refused.push((info.error_type, info.email_id.unwrap_or_default()));
            }
            None => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    // Anything more would arrive within a retry step.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Some(m) = ch.basic_get("dead_letter_queue".into(), BasicGetOptions { no_ack: true }).await.expect("get") {
        let info = pipeline_core::dead_letter::decode(&m.delivery.properties, &m.delivery.data, false);
        refused.push((info.error_type, info.email_id.unwrap_or_default()));
    }
    assert_eq!(refused.len(), through.len(), "{refused:?}");
    assert!(refused.iter().all(|(t, _)| t == "ForgedReply"), "{refused:?}");
    let delivered: Vec<_> = ["new", "cur", ".Drafts/new", ".Drafts/cur"]
        .iter()
        .flat_map(|d| std::fs::read_dir(outbox.path.join(d)).into_iter().flatten())
        .collect();
    assert!(delivered.is_empty(), "nothing reached the outbox");
    let pool = sqlx::PgPool::connect(&db.url()).await.expect("pool");
    let logged: i64 = sqlx::query_scalar("SELECT count(*) FROM replies").fetch_one(&pool).await.expect("send log");
    assert_eq!(logged, 0, "a forged reply never claims the send log");
    let _ = admin.close(200, "done".into()).await;
}
