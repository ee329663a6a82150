//! PostgreSQL and Redis over TLS (managed services force it): throw-away servers that accept
//! only TLS (`mailroom_tests::tls_servers`), reached through the same code the workers use —
//! `mailroom_db::connect` with the URL's `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, and
//! `mailroom_redis::client` with `[redis.tls]` — and then the real sender and `mailroom`
//! binaries configured only through the environment.

use std::time::Duration;

use mailroom_tests::tls_servers::{CERT_USER, ClientCerts, TestCerts, TlsPostgres, TlsRedis};
use mailroom_tests::{TestDir, TestVhost, bin_path, free_port, run, run_split, spawn, spawn_logged, wait_for};
use pipeline_core::messages::{EmailToSend, new_message_id, now};
use pipeline_core::settings::RedisSettings;
use pipeline_core::worker_env::WorkerEnv;
use secrecy::SecretString;
use sender::ratelimit::{Permit, RateLimiter};
use sqlx::PgPool;

fn secret(url: String) -> SecretString {
    SecretString::from(url)
}

/// Whether the pool's connection is encrypted, and the client certificate's DN the server saw.
async fn ssl_of(pool: &PgPool) -> (bool, String) {
    sqlx::query_as("SELECT ssl, coalesce(client_dn, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("pg_stat_ssl")
}

/// A connection error as the operator sees it: one line, naming the certificate problem.
fn assert_clear(err: &str, mentions: &str) {
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(err.to_lowercase().contains(mentions), "the error mentions {mentions:?}: {err}");
}

#[tokio::test]
async fn tls_postgres_is_verified_by_sslmode_and_sslrootcert_and_takes_client_certificates() {
    let certs = TestCerts::generate();
    let pg = TlsPostgres::start(&certs).await;
    let (ca, wrong_ca) = (certs.file("ca.pem"), certs.file("wrong-ca.pem"));

    // verify-full with the test CA: the database is created and migrated over TLS.
    let url = secret(pg.url("mailroom_tls", &format!("sslmode=verify-full&sslrootcert={ca}")));
    let pool = mailroom_db::connect_and_migrate(&url, 2).await.unwrap_or_else(|e| panic!("{e}\n{}", pg.log()));
    assert_eq!(ssl_of(&pool).await, (true, String::new()), "encrypted, no client certificate");
    let migrated: i64 =
        sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(&pool).await.expect("migrations");
    assert!(migrated > 0, "the migrations ran");
    pool.close().await;
    // What `mailroom status` uses.
    mailroom_db::status::connect_existing(&url).await.expect("status connects over verify-full").close().await;

    // require: encrypted, the certificate not checked (no CA given).
    let pool = mailroom_db::connect(&secret(pg.url("mailroom_tls", "sslmode=require")), 1).await.expect("require");
    assert!(ssl_of(&pool).await.0);
    pool.close().await;

    // A server certificate from a CA we do not trust: refused, in one line saying why, with the
    // redacted URL.
    let wrong = secret(pg.url("mailroom_tls", &format!("sslmode=verify-full&sslrootcert={wrong_ca}")));
    let err = mailroom_db::connect(&wrong, 1).await.expect_err("the wrong CA is refused").to_string();
    assert_clear(&err, "certificate");
    assert!(err.contains(&format!("127.0.0.1:{}/mailroom_tls", pg.port)), "{err}");
    assert!(err.contains("not signed by a trusted CA"), "the error says what to do: {err}");
    // As in libpq, require with a CA checks the chain (verify-ca) rather than ignoring the CA.
    let wrong = secret(pg.url("mailroom_tls", &format!("sslmode=require&sslrootcert={wrong_ca}")));
    let err = mailroom_db::connect(&wrong, 1).await.expect_err("require with the wrong CA").to_string();
    assert_clear(&err, "certificate");
    // Without any CA, the test CA is not among the bundled public roots.
    let err = mailroom_db::connect(&secret(pg.url("mailroom_tls", "sslmode=verify-full")), 1)
        .await
        .expect_err("a private CA is not a public root")
        .to_string();
    assert_clear(&err, "certificate");
    // A CA file that is not there is named, before any connection.
    let missing = secret(pg.url("mailroom_tls", &format!("sslmode=verify-full&sslrootcert={ca}.missing")));
    let err = mailroom_db::connect(&missing, 1).await.expect_err("a missing CA file").to_string();
    assert_clear(&err, "sslrootcert");
    assert!(err.contains("ca.pem.missing"), "{err}");

    // The server takes TLS only: a plain connection is refused by pg_hba.
    let err = mailroom_db::connect(&secret(pg.url("mailroom_tls", "sslmode=disable")), 1)
        .await
        .expect_err("plain connections are refused")
        .to_string();
    assert_clear(&err, "no encryption");
    assert!(err.contains("add sslmode=verify-full"), "the error says what to do: {err}");

    // Client certificates (pg_hba: clientcert=verify-full for CERT_USER).
    let ca_param = format!("sslmode=verify-full&sslrootcert={ca}");
    let err = mailroom_db::connect(&secret(pg.url_as(CERT_USER, "mailroom_cert", &ca_param)), 1)
        .await
        .expect_err("the role needs a client certificate")
        .to_string();
    assert_clear(&err, "certificate");
    let with_cert = format!("{ca_param}&sslcert={}&sslkey={}", certs.file("client.pem"), certs.file("client-key.pem"));
    let pool = mailroom_db::connect_and_migrate(&secret(pg.url_as(CERT_USER, "mailroom_cert", &with_cert)), 1)
        .await
        .unwrap_or_else(|e| panic!("client certificate: {e}\n{}", pg.log()));
    let (ssl, dn) = ssl_of(&pool).await;
    assert!(ssl && dn.contains(CERT_USER), "the server saw the client certificate: {dn}");
    pool.close().await;
    // A client certificate from another CA is refused by the server.
    let wrong_cert =
        format!("{ca_param}&sslcert={}&sslkey={}", certs.file("wrong-client.pem"), certs.file("wrong-client-key.pem"));
    let err = mailroom_db::connect(&secret(pg.url_as(CERT_USER, "mailroom_cert", &wrong_cert)), 1)
        .await
        .expect_err("a client certificate of another CA is refused");
    assert!(!err.to_string().contains('\n'), "{err}");
}

/// The serial of the client certificate the server saw on the pool's next connection.
async fn client_serial(pool: &PgPool) -> String {
    sqlx::query_scalar("SELECT coalesce(client_serial::text, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(pool)
        .await
        .expect("pg_stat_ssl")
}

#[tokio::test]
async fn a_rotated_client_certificate_is_used_by_new_connections_without_a_restart() {
    let certs = TestCerts::generate();
    let pg = TlsPostgres::start(&certs).await;
    let dir = TestDir::create();
    // The mounted-secret layout: one path for the certificate and one for the key, whose
    // contents are replaced on rotation (written aside, then renamed over, as kubelet does).
    let (cert, key) = (dir.path.join("tls.crt"), dir.path.join("tls.key"));
    let install = |name: &str| {
        for (from, to) in [(format!("{name}-key.pem"), &key), (format!("{name}.pem"), &cert)] {
            let aside = to.with_extension("new");
            std::fs::copy(certs.path(&from), &aside).expect("copy");
            std::fs::rename(&aside, to).expect("rename");
        }
    };
    install("client");
    let query = format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        certs.file("ca.pem"),
        cert.display(),
        key.display()
    );
    let url = secret(pg.url_as(CERT_USER, "mailroom_cert", &query));
    let pool = mailroom_db::connect_watching_tls(&url, 1, Duration::from_millis(100))
        .await
        .unwrap_or_else(|e| panic!("client certificate: {e}\n{}", pg.log()));
    let first = client_serial(&pool).await;
    assert!(!first.is_empty(), "the server saw a client certificate");

    // The serial the rotated certificate carries, as the server reports it.
    let next_query = format!(
        "sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        certs.file("ca.pem"),
        certs.file("client-next.pem"),
        certs.file("client-next-key.pem")
    );
    let direct = mailroom_db::connect(&secret(pg.url_as(CERT_USER, "mailroom_cert", &next_query)), 1)
        .await
        .expect("the next certificate is valid");
    let next = client_serial(&direct).await;
    direct.close().await;
    assert_ne!(first, next, "two certificates, two serials");

    // Rotate in place. The open connection keeps its session; a new one presents the new
    // certificate, with no restart and no new pool.
    install("client-next");
    let mut seen = first.clone();
    for _ in 0..100 {
        // Retire the pool's connection so that the next query opens a new one.
        pool.acquire().await.expect("acquire").close().await.expect("close");
        seen = client_serial(&pool).await;
        if seen == next {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, next, "new connections present the rotated certificate (first was {first})");
    pool.close().await;
}

fn redis_settings(url: &str, tls: &[(&str, &std::path::Path)]) -> RedisSettings {
    let mut s = RedisSettings::from_url(url);
    for (key, path) in tls {
        let path = Some(path.to_path_buf());
        match *key {
            "ca" => s.tls.ca_file = path,
            "cert" => s.tls.cert_file = path,
            "key" => s.tls.key_file = path,
            other => panic!("unknown TLS key {other}"),
        }
    }
    s
}

async fn ping(settings: &RedisSettings) -> Result<String, String> {
    let client = mailroom_redis::client(settings).map_err(|e| e.to_string())?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| mailroom_redis::describe(&e))?;
    redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| mailroom_redis::describe(&e))
}

#[tokio::test]
async fn tls_redis_serves_the_rate_limiter_and_the_embedding_cache_with_the_ca_file() {
    let certs = TestCerts::generate();
    let server = TlsRedis::start(&certs, ClientCerts::Optional).await;
    let settings = redis_settings(&server.url(), &[("ca", &certs.path("ca.pem"))]);

    // The sender's shared quota: the connection the worker makes, over TLS (the server has no
    // plain port).
    let conn = sender::redis_connection(&settings).await.expect("rediss with the CA file");
    let limiter = RateLimiter::new(conn, "mailroom-test", 2, Duration::from_secs(60), 2);
    assert_eq!(limiter.try_acquire("support@a.example").await.expect("redis"), Permit::Granted);
    assert_eq!(limiter.try_acquire("support@a.example").await.expect("redis"), Permit::Granted);
    assert!(matches!(limiter.try_acquire("support@a.example").await.expect("redis"), Permit::Wait(_)));

    // The generator's embedding cache.
    let embedder = embedders::HashingEmbedder::new(16);
    let cache = rag_generator::cache::EmbeddingCache::new(&settings, 60);
    let (first, cached) = cache.embed(&embedder, "How do I reset my desk?").await.expect("embed");
    assert!(!cached);
    let (second, cached) = cache.embed(&embedder, "How do I reset my desk?").await.expect("embed");
    assert!(cached, "the second lookup is served by Redis over TLS");
    assert_eq!(first, second);

    // A server certificate from a CA we do not trust: refused, saying why, in one line.
    let wrong = redis_settings(&server.url(), &[("ca", &certs.path("wrong-ca.pem"))]);
    let err = ping(&wrong).await.expect_err("the wrong CA is refused");
    assert_clear(&err, "certificate");
    // The worker's connection says the same, with the URL.
    let Err(err) = sender::redis_connection(&wrong).await else { panic!("the sender's connection is refused too") };
    let err = err.to_string();
    assert_clear(&err, "certificate");
    assert!(err.contains(&server.url()), "{err}");
    // Without a CA file the bundled public roots are used, which do not hold the test CA.
    let err = ping(&RedisSettings::from_url(&server.url())).await.expect_err("a private CA is not a public root");
    assert_clear(&err, "certificate");
    // The cache only saves work: with the wrong CA it is off and embeddings are still computed.
    let cache = rag_generator::cache::EmbeddingCache::new(&wrong, 60);
    let (again, cached) = cache.embed(&embedder, "How do I reset my desk?").await.expect("embed without cache");
    assert!(!cached);
    assert_eq!(again, first);
}

#[tokio::test]
async fn tls_redis_client_certificates_are_presented_when_the_server_requires_them() {
    let certs = TestCerts::generate();
    let server = TlsRedis::start(&certs, ClientCerts::Required).await;
    let ca = certs.path("ca.pem");

    let without = redis_settings(&server.url(), &[("ca", &ca)]);
    let err = ping(&without).await.expect_err("the server requires a client certificate");
    assert!(err.contains("redis.tls.cert_file"), "the error says what to set: {err}");
    let with = redis_settings(
        &server.url(),
        &[("ca", &ca), ("cert", &certs.path("client.pem")), ("key", &certs.path("client-key.pem"))],
    );
    assert_eq!(ping(&with).await.unwrap_or_else(|e| panic!("{e}\n{}", server.log())), "PONG");
    let other_ca = redis_settings(
        &server.url(),
        &[("ca", &ca), ("cert", &certs.path("wrong-client.pem")), ("key", &certs.path("wrong-client-key.pem"))],
    );
    let err = ping(&other_ca).await.expect_err("a client certificate of another CA is refused");
    assert!(!err.contains("invalid peer certificate"), "the server refused, not the client: {err}");
    // Half an identity is a configuration error, not a connection without a certificate.
    let half = redis_settings(&server.url(), &[("ca", &ca), ("cert", &certs.path("client.pem"))]);
    let err = ping(&half).await.expect_err("a certificate without its key");
    assert!(err.contains("key_file"), "{err}");
}

/// A reply for the sender, answering an email of the default agent mailbox.
fn to_send() -> EmailToSend {
    EmailToSend {
        message_id: new_message_id(),
        timestamp: now(),
        original_message_id: new_message_id(),
        email_id: "tls-email-1".into(),
        thread_id: None,
        to: "customer@example.com".into(),
        reply_to: AGENT.into(),
        subject: "Re: Question".into(),
        generated_response: "Answer.".into(),
        context_used: Vec::new(),
        agent_email: AGENT.into(),
        escalate: false,
        escalation_reason: None,
        in_reply_to: Some("q1@customer.example".into()),
        references: Vec::new(),
        original_subject: Some("Question".into()),
    }
}

const AGENT: &str = "support@northwind.example";

async fn readyz(http: &reqwest::Client, base: &str) -> Option<u16> {
    Some(http.get(format!("{base}/readyz")).send().await.ok()?.status().as_u16())
}

#[tokio::test]
async fn tls_only_postgres_and_redis_serve_the_sender_and_the_operator_cli() {
    let certs = TestCerts::generate();
    let (pg, redis) = (TlsPostgres::start(&certs).await, TlsRedis::start(&certs, ClientCerts::Optional).await);
    let (vhost, outbox) = (TestVhost::create().await, TestDir::create());
    let ca = certs.file("ca.pem");
    let db_url = pg.url("mailroom_e2e", &format!("sslmode=verify-full&sslrootcert={ca}"));
    let listen = format!("127.0.0.1:{}", free_port());
    let env = |db_url: &str, redis_ca: &str, listen: &str| {
        WorkerEnv::new()
            .set("amqp.url", vhost.amqp_url())
            .set("management.url", mailroom_tests::mgmt_url())
            .set("database.url", db_url.to_owned())
            .set("redis.url", redis.url())
            .set("redis.tls.ca_file", redis_ca.to_owned())
            .set("http.listen", listen.to_owned())
            .set("outbox.maildir", outbox.path.display().to_string())
            .build()
    };
    let good = env(&db_url, &ca, &listen);
    let mailroom = bin_path("mailroom");
    for args in [&["topology", "apply"][..], &["migrate"]] {
        let (code, out) = run(&mailroom, args, &good).await;
        assert_eq!(code, 0, "mailroom {args:?}: {out}");
    }

    // The sender connects to both over TLS, becomes ready and sends a reply: the send log is in
    // the TLS-only PostgreSQL and the quota in the TLS-only Redis.
    let _sender = spawn(&bin_path("sender"), &[], &good);
    let http = reqwest::Client::new();
    let base = format!("http://{listen}");
    wait_for(Duration::from_secs(60), "the sender to be ready over TLS", || async {
        readyz(&http, &base).await.filter(|s| *s == 200)
    })
    .await;
    let conn =
        lapin::Connection::connect(&vhost.amqp_url(), lapin::ConnectionProperties::default()).await.expect("amqp");
    let publisher = pipeline_core::Publisher::open(&conn, None).await.expect("publisher");
    let msg = to_send();
    let pool = mailroom_db::connect(&secret(db_url.clone()), 1).await.expect("pool");
    mailroom_tests::history::record_reply(&pool, &msg).await;
    publisher.publish(&msg).await.expect("publish");
    wait_for(Duration::from_secs(60), "the reply in the send log", || async {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM replies WHERE email_id = $1")
            .bind(&msg.email_id)
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
        state.filter(|s| s == "sent")
    })
    .await;
    let quota_keys = redis_keys(&redis, &ca).await;
    assert!(quota_keys.iter().any(|k| k.contains("quota")), "the quota lives in the TLS Redis: {quota_keys:?}");

    // `mailroom status` reads the TLS-only database.
    let (code, out) = run(&mailroom, &["status"], &good).await;
    assert_eq!(code, 0, "mailroom status: {out}");

    // A database certificate from a CA the process does not trust: a one-line error that says so.
    let wrong_db = pg.url("mailroom_e2e", &format!("sslmode=verify-full&sslrootcert={}", certs.file("wrong-ca.pem")));
    let (code, _, stderr) = run_split(&mailroom, &["migrate"], &env(&wrong_db, &ca, &listen)).await;
    assert_ne!(code, 0);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert_clear(lines[0], "certificate");

    // A Redis certificate from a CA the sender does not trust: it stays up, not ready, and logs
    // why.
    let listen = format!("127.0.0.1:{}", free_port());
    let (_untrusting, log) =
        spawn_logged(&bin_path("sender"), &[], &env(&db_url, &certs.file("wrong-ca.pem"), &listen));
    let line = wait_for(Duration::from_secs(60), "the sender to log the Redis certificate problem", || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.lines()
            .find(|l| l.contains("Redis unavailable") && l.to_lowercase().contains("certificate"))
            .map(str::to_owned)
    })
    .await;
    assert!(line.contains(&redis.url()), "{line}");
    assert_ne!(readyz(&http, &format!("http://{listen}")).await, Some(200), "not ready without Redis");
}

/// Keys of the TLS Redis (a fresh server: only what the test's sender wrote).
async fn redis_keys(redis: &TlsRedis, ca: &str) -> Vec<String> {
    let settings = redis_settings(&redis.url(), &[("ca", std::path::Path::new(ca))]);
    let client = mailroom_redis::client(&settings).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis over TLS");
    redis::AsyncCommands::keys(&mut conn, "*").await.expect("keys")
}
