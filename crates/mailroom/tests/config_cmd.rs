//! `mailroom config` with the real binary: the effective settings with secrets redacted, and
//! unknown keys refused by name before any command runs.

use std::path::Path;

use mailroom_tests::{TestDir, run};
use pipeline_core::worker_env::env_var;

fn mailroom() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom"))
}

/// Settings key, value, and the part of the value that is secret (the password of a URL).
const SECRETS: &[(&str, &str, &str)] = &[
    ("amqp.url", "amqp://ops:amqp-pw-4711@rabbit.internal:5672/prod", "amqp-pw-4711"),
    ("database.url", "postgres://app:pg-pw-4712@db.internal/mailroom", "pg-pw-4712"),
    ("redis.url", "redis://:redis-pw-4713@cache.internal:6379", "redis-pw-4713"),
    ("management.password", "mgmt-pw-4714", "mgmt-pw-4714"),
    ("llm.anthropic.api_key", "sk-ant-4715", "sk-ant-4715"),
    ("mailbox.gmail.client_secret", "gmail-secret-4716", "gmail-secret-4716"),
    ("mailbox.imap.password", "imap-pw-4717", "imap-pw-4717"),
    ("upload_api.token", "upload-token-4718", "upload-token-4718"),
];

fn secret_env() -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = SECRETS.iter().map(|(k, v, _)| (env_var(k), (*v).to_owned())).collect();
    env.push((env_var("sender.rate_limit"), "42".to_owned()));
    env
}

#[tokio::test]
async fn config_prints_the_effective_settings_with_secrets_redacted() {
    let (code, out) = run(mailroom(), &["config"], &secret_env()).await;
    assert_eq!(code, 0, "{out}");
    for (var, _, secret) in SECRETS {
        assert!(!out.contains(secret), "{var}: {secret} leaked:\n{out}");
    }
    let parsed: toml::Value = toml::from_str(&out).unwrap_or_else(|e| panic!("not TOML ({e}):\n{out}"));
    let get = |path: &str| {
        path.split('.').fold(&parsed, |v, k| v.get(k).unwrap_or_else(|| panic!("{path} missing:\n{out}"))).clone()
    };
    assert_eq!(get("sender.rate_limit").as_integer(), Some(42), "the environment applies");
    assert_eq!(get("consumer.prefetch").as_integer(), Some(32), "the defaults are shown");
    assert_eq!(get("amqp.url").as_str(), Some("amqp://ops:***@rabbit.internal:5672/prod"));
    assert_eq!(get("management.password").as_str(), Some("[REDACTED]"));
    assert_eq!(get("llm.openai.api_key").as_str(), Some(""), "an unset secret shows as unset");

    let (code, json) = run(mailroom(), &["config", "--json"], &secret_env()).await;
    assert_eq!(code, 0, "{json}");
    let value: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(value["upload_api"]["token"], "[REDACTED]");
    assert!(!json.contains("upload-token-4718"));
}

#[tokio::test]
async fn a_typo_in_a_variable_or_a_file_stops_the_cli_naming_the_key() {
    let (code, out) = run(mailroom(), &["config"], &[("MAILROOM__SENDER__RATE_LIMT", "5".to_owned())]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("MAILROOM__SENDER__RATE_LIMT") && out.contains("`sender.rate_limt`"), "{out}");
    assert!(out.contains("did you mean `sender.rate_limit`"), "{out}");

    let dir = TestDir::create();
    let file = dir.path.join("local.toml");
    std::fs::write(&file, "[sender]\nrate_limit = 5\n[mailbox]\nagent_emial = \"a@b.c\"\n").expect("write");
    let (code, out) = run(mailroom(), &["--config", &file.display().to_string(), "config"], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("`mailbox.agent_emial`") && out.contains("did you mean `mailbox.agent_email`"), "{out}");

    // MAILROOM_CONFIG (one underscore) names the file; it is not a setting.
    std::fs::write(&file, "[sender]\nrate_limit = 5\n").expect("write");
    let (code, out) = run(mailroom(), &["config"], &[("MAILROOM_CONFIG", file.display().to_string())]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("rate_limit = 5"), "{out}");
}
