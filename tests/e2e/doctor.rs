//! `mailroom doctor` against real services and the providers' fakes: a retired model, a wrong
//! key and a broker user without the permissions of its role are each one failed line with the
//! fix, the exit code says so, and `--json` carries the same.

use lapin::ConnectionProperties;
use mailroom_tests::fake_http::{FakeServer, Reply};
use mailroom_tests::{TestDb, TestDir, TestVhost, bin_path, run, run_split};
use pipeline_core::topology::{DEFAULT_RETRY_DELAYS_MS, Topology};
use serde_json::{Value, json};

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
    vec![
        ("MAILROOM__AMQP__URL", vhost.amqp_url()),
        ("MAILROOM__DATABASE__URL", db.url()),
        ("MAILROOM__MAILBOX__MAILDIR", dir.path.join("mailbox").display().to_string()),
    ]
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

#[tokio::test]
async fn a_retired_model_and_a_wrong_key_fail_with_the_fix_and_a_served_model_passes() {
    let (vhost, db, dir) = deployment().await;
    let gemini = FakeServer::start(|request| {
        assert_eq!(request.method, axum::http::Method::GET, "a lookup, not a generation");
        Reply::json(
            404,
            json!({"error": {"code": 404, "status": "NOT_FOUND",
                "message": "models/gemini-2.0-flash is not found for API version v1beta, or is not supported for generateContent."}}),
        )
    })
    .await;
    let anthropic = FakeServer::start(|_| {
        Reply::json(
            401,
            json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"},
                "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}),
        )
    })
    .await;
    let openai = FakeServer::start(|request| {
        assert_eq!(request.path, "/v1/models");
        Reply::json(
            200,
            json!({"object": "list", "data": [
                {"id": "gpt-6-luna", "object": "model", "created": 1_764_806_400u64, "owned_by": "openai"},
                {"id": "text-embedding-3-small", "object": "model", "created": 1_705_948_997u64, "owned_by": "system"}]}),
        )
    })
    .await;
    let mut env = env(&vhost, &db, &dir);
    env.extend([
        ("MAILROOM__LLM__PROVIDERS", "gemini,anthropic,openai,local".to_owned()),
        ("MAILROOM__LLM__GEMINI__BASE_URL", format!("{}/v1beta", gemini.base)),
        ("MAILROOM__LLM__GEMINI__API_KEY", "AIza-doctor-secret".to_owned()),
        ("MAILROOM__LLM__GEMINI__MODEL", "gemini-2.0-flash".to_owned()),
        ("MAILROOM__LLM__ANTHROPIC__BASE_URL", format!("{}/v1", anthropic.base)),
        ("MAILROOM__LLM__ANTHROPIC__API_KEY", "sk-ant-doctor-secret".to_owned()),
        ("MAILROOM__LLM__OPENAI__BASE_URL", format!("{}/v1", openai.base)),
        ("MAILROOM__LLM__OPENAI__API_KEY", "sk-doctor-secret".to_owned()),
    ]);

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
    env.push(("MAILROOM__LLM__PROVIDERS", "openai,local".to_owned()));
    let (code, output) = run(&bin_path("mailroom"), &["doctor"], &env).await;
    assert_eq!(code, 0, "{output}");
    assert!(output.lines().any(|l| l.starts_with("ok") && l.contains("llm openai")), "{output}");
    assert!(!output.contains("FAIL"), "{output}");
}

#[tokio::test]
async fn a_broker_user_without_its_roles_permissions_is_named_with_what_it_lacks() {
    let (vhost, db, dir) = deployment().await;
    // A classifier user that may not publish its verdicts to email_exchange.
    let (url, _user) =
        user_with(&vhost.name, "doctor", "^$", "^(retry_exchange|dead_letter_exchange)$", "^emails\\.to_classify$")
            .await;
    let mut env = env(&vhost, &db, &dir);
    env.push(("MAILROOM__AMQP__URL", url));

    let (code, output) = run(&bin_path("mailroom"), &["doctor", "--role", "classifier"], &env).await;
    assert_eq!(code, 1, "{output}");
    let line = output.lines().find(|l| l.contains("broker permissions")).expect("a permissions line");
    assert!(
        line.starts_with("FAIL") && line.contains("write email_exchange") && line.contains("ACCESS_REFUSED"),
        "{output}"
    );
    assert!(!line.contains("retry_exchange"), "what it may do is not listed as refused: {line}");
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
    let key =
        |name: &str| -> &'static str { Box::leak(format!("MAILROOM__{section}__GMAIL__{name}").into_boxed_str()) };
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
        env.push(("MAILROOM__MAILBOX__KIND", "gmail".to_owned()));
        env.push(("MAILROOM__OUTBOX__KIND", "gmail".to_owned()));
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
