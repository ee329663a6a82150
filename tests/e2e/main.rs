//! Cross-crate end-to-end tests with real binaries. This file holds the harness's own checks:
//! a test must clean up what it created, so the throw-away vhosts and databases really go away.

mod bad_input;
mod broker_security;
mod classifier_documents;
mod deletion;
mod demo;
mod dependencies;
mod deploy;
mod doctor;
mod extraction;
mod ingestion;
mod mailbox_policies;
mod mailboxes;
mod output;
mod pipeline;
mod poller;
mod providers;
mod retrieval;
mod secrets;
mod sender;
mod settings_check;
mod stack;
mod tls_datastores;
mod up;

use mailroom_tests::{TestDb, TestVhost, bin_path, mgmt, run};
use pipeline_core::worker_env::WorkerEnv;

#[tokio::test]
async fn throw_away_vhosts_and_databases_are_removed_after_use() {
    let vhost = TestVhost::create().await;
    let name = vhost.name.clone();
    let client = mgmt();
    assert!(client.queues(&name).await.is_ok(), "the vhost exists while in use");
    drop(vhost);
    let err = client.queues(&name).await.expect_err("the vhost is gone after drop");
    assert!(err.to_string().contains("404"), "{err}");

    let db = TestDb::create().await;
    let url = db.url();
    let db_name = db.name.clone();
    {
        use sqlx::Connection as _;
        let conn = sqlx::PgConnection::connect(&url).await.expect("the database exists while in use");
        conn.close().await.expect("close");
    }
    drop(db);
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(&url.replace(&db_name, "postgres")).await.expect("postgres");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&db_name)
        .fetch_one(&mut admin)
        .await
        .expect("query");
    assert_eq!(left, 0, "the database is gone after drop");
}

#[tokio::test]
async fn the_operator_cli_applies_the_topology_a_worker_then_uses() {
    // `mailroom topology apply` then `verify` from the real binary, and `migrate` into a fresh
    // database — the first steps of any deployment.
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    let env = WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("management.url", mailroom_tests::mgmt_url())
        .build();
    let mailroom = bin_path("mailroom");
    for args in [&["topology", "apply"][..], &["topology", "verify"], &["migrate"]] {
        let (code, out) = run(&mailroom, args, &env).await;
        assert_eq!(code, 0, "mailroom {args:?}: {out}");
    }
    let queues = mgmt().queues(&vhost.name).await.expect("queues");
    assert!(queues.iter().any(|q| q.name == "emails.to_classify"));
}
