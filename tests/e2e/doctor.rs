//! `mailroom doctor` against real services and the providers' fakes: a retired model, a wrong
//! key and a broker user without the permissions of its role are each one failed line with the
//! fix, the exit code says so, and `--json` carries the same.

use lapin::ConnectionProperties;
use llm_fake::{Failure, FakeLlm};
use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, run, run_split};
use pipeline_core::topology::{DEFAULT_RETRY_DELAYS_MS, Topology};
use pipeline_core::worker_env::{WorkerEnv, env_var};
use serde_json::Value;

use crate::broker_security::user_with;

/// A vhost with the topology and a migrated database.
async fn deployment() -> (TestVhost, TestDb, TestDir) {
    let vhost = TestVhost::create().await;
    let connection =
        lapin::Connection::connect(&vhost.amqp_url(), ConnectionProperties::default()).await.expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    Topology::new(&DEFAULT_RETRY_DELAYS_MS).declare(&channel).await.expect("declare");
    let db = TestDb::create().await;
    let url = secrecy::SecretString::from(db.url());
    mailroom_db::connect_and_migrate(&url, 2).await.expect("migrate").close().await;
    (vhost, db, TestDir::create())
}

fn env(vhost: &TestVhost, db: &TestDb, dir: &TestDir) -> Vec<(&'static str, String)> {
    WorkerEnv::new()
        .set("amqp.url", vhost.amqp_url())
        .set("database.url", db.url())
        .set("mailbox.maildir", dir.path.join("mailbox").display().to_string())
        .build()
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

#[tokio::test]
async fn a_retired_model_and_a_wrong_key_fail_with_the_fix_and_a_served_model_passes() {
    let (vhost, db, dir) = deployment().await;
    let gemini = FakeLlm::start(|call| {
        assert_eq!(call.method, axum::http::Method::GET, "a lookup, not a generation");
        call.fail(Failure::ModelNotFound)
    })
    .await;
    let anthropic = FakeLlm::start(|call| call.fail(Failure::InvalidKey)).await;
    let openai = FakeLlm::start(|call| {
        assert_eq!(call.path, "/v1/models");
        call.lookup(&["gpt-6-luna", "text-embedding-3-small"])
    })
    .await;
    let mut env = env(&vhost, &db, &dir);
    env.extend(
        WorkerEnv::new()
            .set("llm.providers", "gemini,anthropic,openai,local")
            .set("llm.gemini.base_url", gemini.gemini_url())
            .set("llm.gemini.api_key", "AIza-doctor-secret")
            .set("llm.gemini.model", "gemini-2.0-flash")
            .set("llm.anthropic.base_url", anthropic.anthropic_url())
            .set("llm.anthropic.api_key", "sk-ant-doctor-secret")
            .set("llm.openai.base_url", openai.openai_url())
            .set("llm.openai.api_key", "sk-doctor-secret")
            .build(),
    );

    let (code, stdout, stderr) = run_split(&bin_path("mailroom"), &["doctor", "--json"], &env).await;
    assert_eq!(code, 1, "a failed check fails the command: {stdout}{stderr}");
    let checks: Vec<Value> = serde_json::from_str(&stdout).expect("--json prints the checks");
    let gemini_check = check(&checks, "llm gemini");
    assert_eq!(gemini_check["outcome"], "fail");
    assert!(gemini_check["detail"].as_str().expect("detail").contains("HTTP 404"), "{gemini_check}");
    let fix = gemini_check["fix"].as_str().expect("a fix");
    assert!(fix.contains("retired") && fix.contains("llm.gemini.model"), "{fix}");
    let anthropic_check = check(&checks, "llm anthropic");
    assert_eq!(anthropic_check["outcome"], "fail");
    assert!(anthropic_check["fix"].as_str().expect("a fix").contains("llm.anthropic.api_key"), "{anthropic_check}");
    let openai_check = check(&checks, "llm openai");
    assert_eq!(openai_check["outcome"], "ok", "{openai_check}");
    assert!(openai_check["detail"].as_str().expect("detail").contains("gpt-6-luna"));
    for name in ["postgresql", "redis", "broker", "broker topology", "broker permissions", "embeddings hashing"] {
        assert_eq!(check(&checks, name)["outcome"], "ok", "{:#}", check(&checks, name));
    }
    assert_eq!(check(&checks, "pinecone")["outcome"], "skip");
    for secret in ["AIza-doctor-secret", "sk-ant-doctor-secret", "sk-doctor-secret"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} leaked");
    }
    // The fakes saw the providers' own authentication headers.
    assert_eq!(anthropic.only_request().header("x-api-key"), Some("sk-ant-doctor-secret"));
    assert_eq!(openai.only_request().header("authorization"), Some("Bearer sk-doctor-secret"));

    // With only the served model configured, every check passes: one line each, exit 0.
    env.push((env_var("llm.providers"), "openai,local".to_owned()));
    let (code, output) = run(&bin_path("mailroom"), &["doctor"], &env).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.lines().any(|l| l.starts_with("ok") && l.contains("llm openai")), "{output}");
    assert!(!output.contains("FAIL"), "{output}");
}

#[tokio::test]
async fn a_broker_user_without_its_roles_permissions_is_named_with_what_it_lacks() {
    let (vhost, db, dir) = deployment().await;
    // A classifier user that may not publish its verdicts to email_exchange.
    let (url, _user) = user_with(
        &vhost.name,
        "doctor",
        "^$",
        "^(retry_topic_exchange|dead_letter_exchange)$",
        "^emails\\.to_classify$",
    )
    .await;
    let mut env = env(&vhost, &db, &dir);
    env.push((env_var("amqp.url"), url));

    let (code, output) = run(&bin_path("mailroom"), &["doctor", "--role", "classifier"], &env).await;
    assert_eq!(code, 1, "{output}");
    let line = output.lines().find(|l| l.contains("broker permissions")).expect("a permissions line");
    assert!(
        line.starts_with("FAIL") && line.contains("write email_exchange") && line.contains("ACCESS_REFUSED"),
        "{output}"
    );
    assert!(!line.contains("retry_topic_exchange"), "what it may do is not listed as refused: {line}");
    assert!(output.contains("grant the classifier user"), "{output}");

    // The sender's needs are a different set: reading emails.to_send is refused.
    let (code, output) = run(&bin_path("mailroom"), &["doctor", "--role", "sender"], &env).await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("read emails.to_send"), "{output}");

    let (code, output) = run(&bin_path("mailroom"), &["doctor", "--role", "mailman"], &env).await;
    assert_eq!(code, 2, "{output}");
    assert!(output.contains("unknown --role \"mailman\""), "{output}");
}

/// The Gmail settings of one role (`MAILBOX` or `OUTBOX`) against the fake Google.
fn gmail_env(fake: &gmail_fake::FakeGmail, section: &str, refresh_token: &str) -> Vec<(&'static str, String)> {
    let key = |name: &str| env_var(&format!("{section}.gmail.{name}").to_lowercase());
    vec![
        (key("API_BASE"), fake.api_base()),
        (key("TOKEN_URL"), fake.token_url()),
        (key("CLIENT_ID"), gmail_fake::CLIENT_ID.to_owned()),
        (key("CLIENT_SECRET"), gmail_fake::CLIENT_SECRET.to_owned()),
        (key("REFRESH_TOKEN"), refresh_token.to_owned()),
    ]
}

#[tokio::test]
async fn missing_gmail_scopes_and_a_revoked_token_are_named_per_role() {
    use gmail_fake::scope;
    let (vhost, db, dir) = deployment().await;
    let fake = gmail_fake::FakeGmail::start().await;
    fake.grant("1//poller-readonly", &[scope::READONLY]);
    fake.grant("1//sender-send-only", &[scope::SEND]);
    fake.grant("1//modify", &[scope::MODIFY]);
    fake.grant("1//revoked", &[scope::MODIFY]);
    fake.revoke("1//revoked");
    let doctor = |poller: &str, sender: &str| {
        let mut env = env(&vhost, &db, &dir);
        env.push((env_var("mailbox.kind"), "gmail".to_owned()));
        env.push((env_var("outbox.kind"), "gmail".to_owned()));
        env.extend(gmail_env(&fake, "MAILBOX", poller));
        env.extend(gmail_env(&fake, "OUTBOX", sender));
        async move { run(&bin_path("mailroom"), &["doctor", "--json"], &env).await }
    };

    let (code, output) = doctor("1//poller-readonly", "1//sender-send-only").await;
    assert_eq!(code, 1, "{output}");
    let checks: Vec<Value> = serde_json::from_str(output.trim_end()).expect("--json");
    let mailbox = check(&checks, "mailbox gmail");
    assert_eq!(mailbox["outcome"], "fail", "{mailbox}");
    let detail = mailbox["detail"].as_str().expect("detail");
    assert!(detail.contains("granted gmail.readonly") && detail.contains("poller: read, label"), "{detail}");
    assert!(mailbox["fix"].as_str().expect("fix").contains("mailroom gmail authorize"), "{mailbox}");
    let outbox = check(&checks, "outbox gmail");
    assert_eq!(outbox["outcome"], "fail", "{outbox}");
    let detail = outbox["detail"].as_str().expect("detail");
    assert!(detail.contains("save drafts") && detail.contains("gmail.compose"), "drafts need compose: {detail}");
    assert!(!detail.contains("send replies"), "gmail.send may send: {detail}");

    let (code, output) = doctor("1//modify", "1//revoked").await;
    assert_eq!(code, 1, "{output}");
    let checks: Vec<Value> = serde_json::from_str(output.trim_end()).expect("--json");
    assert_eq!(check(&checks, "mailbox gmail")["outcome"], "ok", "{output}");
    let outbox = check(&checks, "outbox gmail");
    assert_eq!(outbox["outcome"], "fail");
    assert!(outbox["fix"].as_str().expect("fix").contains("revoked"), "{outbox}");

    let (code, output) = doctor("1//modify", "1//modify").await;
    assert_eq!(code, 0, "{output}");
}
