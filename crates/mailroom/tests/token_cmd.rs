//! `mailroom token create|list|revoke` with the real binary against a throw-away database: the
//! secret is printed once and stored only as its hash, `list` never shows a secret, and the
//! tokens it makes are the ones the upload API accepts (or, revoked, refuses).

use std::path::Path;

use mailroom_db::tokens::{self, Role};
use mailroom_tests::{TestDb, run, run_split};
use pipeline_core::worker_env::env_var;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;

fn mailroom() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom"))
}

/// Runs `mailroom token …` and returns the token printed on stdout (checked to be alone there).
async fn create(env: &[(&'static str, String)], args: &[&str]) -> (String, String) {
    let mut full = vec!["token", "create"];
    full.extend_from_slice(args);
    let (code, stdout, stderr) = run_split(mailroom(), &full, env).await;
    assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    let token = stdout.trim().to_owned();
    assert!(token.starts_with("mrt_") && token.len() == 47, "stdout holds only the token: {stdout:?}");
    assert!(!stderr.contains(&token), "the token is printed once: {stderr}");
    (token, stderr)
}

#[tokio::test]
async fn tokens_are_printed_once_stored_as_hashes_listed_without_secrets_and_revoked() {
    let db = TestDb::create().await;
    let env = vec![(env_var("database.url"), db.url())];

    let (upload, said) = create(&env, &["--agent", "Support@Northwind.example", "--label", "docs team"]).await;
    assert!(said.contains("upload token 1 for support@northwind.example"), "{said}");
    let (read, _) = create(&env, &["--agent", "help@contoso.example", "--role", "read"]).await;
    let (admin, said) = create(&env, &["--role", "admin"]).await;
    assert!(said.contains("admin token 3 for every agent"), "{said}");
    let secrets = [&upload, &read, &admin];

    // Refused: a scoped token without an agent, an admin token with one, an unknown role, a
    // non-address. Nothing is stored for them.
    for (args, expected) in [
        (&["--role", "upload"][..], "--agent"),
        (&["--role", "read"][..], "--agent"),
        (&["--role", "admin", "--agent", "support@northwind.example"][..], "names none"),
        (&["--agent", "support@northwind.example", "--role", "owner"][..], "unknown role"),
        (&["--agent", "support"][..], "not a mailbox address"),
    ] {
        let mut full = vec!["token", "create"];
        full.extend_from_slice(args);
        let (code, out) = run(mailroom(), &full, &env).await;
        assert_eq!(code, 2, "{args:?}: {out}");
        assert!(out.contains(expected), "{args:?}: {out}");
        assert!(!out.contains("mrt_"), "{args:?}: {out}");
    }

    // The table holds the SHA-256 of each secret and nothing else of it.
    let pool = PgPool::connect(&db.url()).await.expect("pool");
    let rows: Vec<(i64, Option<String>, String, String, String)> =
        sqlx::query_as("SELECT id, agent_email, role, token_hash, row_to_json(t)::text FROM api_tokens t ORDER BY id")
            .fetch_all(&pool)
            .await
            .expect("rows");
    assert_eq!(rows.len(), 3, "the refused creations stored nothing");
    let expected = [
        (1, Some("support@northwind.example"), "upload"),
        (2, Some("help@contoso.example"), "read"),
        (3, None, "admin"),
    ];
    for ((id, agent, role, hash, json), (secret, (want_id, want_agent, want_role))) in
        rows.iter().zip(secrets.iter().zip(expected))
    {
        assert_eq!((*id, agent.as_deref(), role.as_str()), (want_id, want_agent, want_role));
        assert_eq!(*hash, format!("{:x}", Sha256::digest(secret.as_bytes())), "token {id}");
        assert!(!json.contains(secret.as_str()), "row {id} holds the secret: {json}");
        assert!(!json.contains(&secret["mrt_".len()..]), "row {id} holds the secret: {json}");
    }

    // They are what the upload API accepts, with their scope.
    let scope = tokens::authenticate(&pool, &upload).await.expect("lookup").expect("accepted");
    assert_eq!((scope.role, scope.agent_email.as_deref()), (Role::Upload, Some("support@northwind.example")));
    let scope = tokens::authenticate(&pool, &read).await.expect("lookup").expect("accepted");
    assert_eq!((scope.role, scope.agent_email.as_deref()), (Role::Read, Some("help@contoso.example")));
    let scope = tokens::authenticate(&pool, &admin).await.expect("lookup").expect("accepted");
    assert_eq!((scope.role, scope.agent_email), (Role::Admin, None));

    // `list`: ids, agents, roles, labels, never a secret or a hash.
    let hashes: Vec<&str> = rows.iter().map(|r| r.3.as_str()).collect();
    let (code, table, stderr) = run_split(mailroom(), &["token", "list"], &env).await;
    assert_eq!(code, 0, "{table}{stderr}");
    let (code, json, stderr) = run_split(mailroom(), &["token", "list", "--json"], &env).await;
    assert_eq!(code, 0, "{json}{stderr}");
    for out in [&table, &json] {
        for secret in secrets {
            assert!(!out.contains(secret.as_str()) && !out.contains(&secret["mrt_".len()..]), "{out}");
        }
        for hash in &hashes {
            assert!(!out.contains(hash), "{out}");
        }
    }
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("id") && lines[0].contains("revoked"), "{table}");
    assert!(lines[1].starts_with('1') && lines[1].contains("support@northwind.example"), "{table}");
    assert!(lines[1].contains("upload") && lines[1].contains("docs team"), "{table}");
    assert!(lines[3].contains("every agent") && lines[3].contains("admin"), "{table}");
    let listed: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(3));
    assert_eq!(listed[0]["agent_email"], "support@northwind.example");
    assert_eq!(listed[2]["agent_email"], serde_json::Value::Null);
    assert!(listed[0].get("token_hash").is_none(), "{json}");

    // `revoke`: the token is refused from then on; revoking again says so; an unknown id fails.
    let (code, out) = run(mailroom(), &["token", "revoke", "1"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("Revoked upload token 1"), "{out}");
    assert!(tokens::authenticate(&pool, &upload).await.expect("lookup").is_none(), "a revoked token is refused");
    assert!(tokens::authenticate(&pool, &read).await.expect("lookup").is_some(), "the others still work");
    let (code, out) = run(mailroom(), &["token", "revoke", "1"], &env).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already revoked"), "{out}");
    let (code, out) = run(mailroom(), &["token", "revoke", "99"], &env).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("no token has id 99"), "{out}");
    let listed: serde_json::Value =
        serde_json::from_str(&run_split(mailroom(), &["token", "list", "--json"], &env).await.1).expect("JSON");
    assert!(listed[0]["revoked_at"].is_string() && listed[1]["revoked_at"].is_null(), "{listed}");
    pool.close().await;
}
