//! `mailroom::broker_admin` against the real broker, with the management API pointed at a closed
//! port as on a fresh install: vhosts created and deleted through `rabbitmqctl`, queue depths read
//! over AMQP, and one clear line when neither way is open. The shared broker's management plugin
//! is never touched; only the URL the code is given is wrong.
//!
//! The `rabbitmqctl` test needs to run as root or as the `rabbitmq` user, as the demo does.

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mailroom::broker_admin::{AdminError, Depth, VhostAdmin, queue_depths};
use mailroom_tests::{TestVhost, free_port, mgmt, mgmt_url};
use pipeline_core::Settings;
use pipeline_core::worker_env::env_var;

fn settings(amqp_url: &str, management_url: &str) -> Settings {
    let env = [(env_var("amqp.url"), amqp_url), (env_var("management.url"), management_url)];
    Settings::load_from(None, env.map(|(k, v)| (k.to_owned(), v.to_owned()))).expect("settings")
}

fn closed_management_url() -> String {
    format!("http://127.0.0.1:{}", free_port())
}

fn vhost_url(vhost: &str) -> String {
    format!("amqp://guest:guest@127.0.0.1:5672/{}", mailroom_tests::rabbitmq_mgmt::encode_segment(vhost))
}

/// Settings for `vhost` with the management API closed.
fn settings_for(vhost: &str) -> Settings {
    settings(&vhost_url(vhost), &closed_management_url())
}

async fn opens(vhost: &str) -> bool {
    match Connection::connect(&vhost_url(vhost), ConnectionProperties::default()).await {
        Ok(c) => {
            let _ = c.close(200, "checked".into()).await;
            true
        }
        Err(_) => false,
    }
}

/// Deletes the vhost through the (working) management API even when an assertion failed.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async { mgmt().delete_vhost(&name).await.ok() });
        })
        .join();
    }
}

#[tokio::test]
async fn without_the_management_api_a_local_broker_s_vhosts_are_made_with_rabbitmqctl() {
    let vhost = format!("mailroom-test-ctl-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let _cleanup = Cleanup(vhost.clone());
    let settings = settings("amqp://guest:guest@127.0.0.1:5672/%2f", &closed_management_url());
    let admin = VhostAdmin::detect(&settings).await.expect("rabbitmqctl works here (run as root)");
    assert!(matches!(admin, VhostAdmin::Rabbitmqctl { .. }), "{admin:?}");
    assert!(admin.describe().contains("rabbitmqctl"), "{}", admin.describe());

    admin.recreate_vhost(&vhost, "guest").await.expect("created");
    assert!(opens(&vhost).await, "guest may use the new vhost");
    // Recreating empties it: a queue declared in between is gone afterwards.
    let conn = Connection::connect(&vhost_url(&vhost), ConnectionProperties::default()).await.expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare("left-over".into(), QueueDeclareOptions::default(), FieldTable::default()).await.expect("q");
    let _ = conn.close(200, "bye".into()).await;
    admin.recreate_vhost(&vhost, "guest").await.expect("recreated");
    let amqp = settings_for(&vhost);
    assert_eq!(queue_depths(&amqp.amqp, &["left-over"]).await.expect("depths"), vec![None]);

    admin.delete_vhost(&vhost).await.expect("deleted");
    assert!(!opens(&vhost).await, "the vhost is gone");
    admin.delete_vhost(&vhost).await.expect("deleting a missing vhost is not an error");
}

#[tokio::test]
async fn with_the_management_api_it_is_used() {
    let admin = VhostAdmin::detect(&settings("amqp://guest:guest@127.0.0.1:5672/%2f", &mgmt_url())).await;
    assert!(matches!(admin, Ok(VhostAdmin::Management(_))), "{admin:?}");
}

#[tokio::test]
async fn a_remote_broker_without_the_management_api_gets_one_line_with_the_fix() {
    let management = closed_management_url();
    let settings = settings("amqp://guest:guest@rabbit.example.invalid:5672/%2f", &management);
    let err = VhostAdmin::detect(&settings).await.expect_err("no way to administer it");
    assert!(matches!(err, AdminError::RemoteBroker { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&management) && text.contains("rabbit.example.invalid"), "{text}");
    assert!(text.contains("rabbitmq-plugins enable rabbitmq_management"), "{text}");
    assert!(!text.contains('\n'), "one line: {text}");
}

#[tokio::test]
async fn queue_depths_come_over_amqp_exactly_and_missing_queues_are_none() {
    let vhost = TestVhost::create().await;
    let conn = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await.expect("connect");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare("depth-a".into(), QueueDeclareOptions::default(), FieldTable::default()).await.expect("a");
    ch.queue_declare("depth-b".into(), QueueDeclareOptions::default(), FieldTable::default()).await.expect("b");
    for _ in 0..3 {
        ch.basic_publish("".into(), "depth-a".into(), BasicPublishOptions::default(), b"x", BasicProperties::default())
            .await
            .expect("publish")
            .await
            .expect("sent");
    }
    // A consumer on b, so the consumer count is not trivially zero.
    let consumer_ch = conn.create_channel().await.expect("channel");
    let _consumer = consumer_ch
        .basic_consume("depth-b".into(), "t".into(), Default::default(), FieldTable::default())
        .await
        .expect("consume");
    let settings = settings(&vhost.amqp_url(), &closed_management_url());
    // The publishes are unconfirmed; the broker has them once a round trip on the same
    // connection came back, which a passive declare of the same queue is, but allow a moment.
    let mut depths = Vec::new();
    for _ in 0..50 {
        depths = queue_depths(&settings.amqp, &["depth-a", "missing", "depth-b"]).await.expect("depths");
        if depths[0].is_some_and(|d| d.ready == 3) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        depths,
        vec![Some(Depth { ready: 3, consumers: 0 }), None, Some(Depth { ready: 0, consumers: 1 })],
        "a queue after a missing one is still read (the closed channel is replaced)"
    );
    let _ = conn.close(200, "bye".into()).await;
}
