//! The broker over TLS (`amqps://` with `[amqp.tls]`): certificate verification both ways, and a
//! worker that processes messages over TLS and refuses a broker it cannot trust.

use super::*;

/// The files and listener `tests/tls/setup.sh` provides.
struct Tls {
    dir: PathBuf,
    host: String,
}

impl Tls {
    /// Fails the test, pointing at the setup script, when the listener or a file is missing.
    fn require() -> Self {
        let dir =
            PathBuf::from(std::env::var("MAILROOM_TLS_DIR").unwrap_or_else(|_| "/var/tmp/mailroom-tls".to_owned()));
        let host = std::env::var("MAILROOM_TEST_AMQPS_HOST").unwrap_or_else(|_| "127.0.0.1:5671".to_owned());
        let setup = repo_root().join("tests/tls/setup.sh");
        for file in
            ["ca.pem", "client.pem", "client-key.pem", "wrong-ca.pem", "wrong-client.pem", "wrong-client-key.pem"]
        {
            assert!(
                dir.join(file).is_file(),
                "TLS test files missing: {} not found. Run {} (as root; .ci/run does) to generate the test \
                 certificates and give RabbitMQ its TLS listener.",
                dir.join(file).display(),
                setup.display()
            );
        }
        let addr: std::net::SocketAddr = host.parse().expect("MAILROOM_TEST_AMQPS_HOST is ip:port");
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).is_ok(),
            "no RabbitMQ TLS listener on {host}. Run {} (as root; .ci/run does) to add it.",
            setup.display()
        );
        Self { dir, host }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// `amqps://` URL of a test vhost, as guest (allowed: the TLS listener is on loopback).
    fn url(&self, vhost: &TestVhost) -> String {
        format!("amqps://guest:guest@{}/{}", self.host, rabbitmq_mgmt::encode_segment(&vhost.name))
    }
}

/// Settings connecting to `url` with the given `[amqp.tls]` keys.
fn tls_settings(url: &str, tls: &[(&str, String)]) -> Result<Settings, pipeline_core::settings::SettingsError> {
    let env = tls.iter().fold(WorkerEnv::new().set("amqp.url", url), |env, (k, v)| {
        env.set(&format!("amqp.tls.{}", k.to_lowercase()), v.clone())
    });
    Settings::load_from(None, env.owned())
}

async fn tls_connect(url: &str, tls: &[(&str, String)]) -> Result<Connection, pipeline_core::amqp::ConnectError> {
    let settings = tls_settings(url, tls).expect("settings");
    pipeline_core::amqp::connect(&settings.amqp, "mailroom-tls-probe").await
}

/// The broker's view of a vhost's connections: (TLS?, client certificate subject).
async fn tls_connections(vhost: &str) -> Vec<(bool, String)> {
    Api::new()
        .connections(vhost)
        .await
        .iter()
        .map(|c| (c["ssl"].as_bool().unwrap_or(false), c["peer_cert_subject"].as_str().unwrap_or_default().to_owned()))
        .collect()
}

#[tokio::test]
async fn connections_verify_the_broker_certificate_and_present_a_client_certificate() {
    let tls = Tls::require();
    let vhost = TestVhost::create().await;
    let url = tls.url(&vhost);

    // The test CA: connected, and really over TLS (the broker says so).
    let conn = tls_connect(&url, &[("CA_FILE", tls.file("ca.pem"))]).await.expect("amqps with the test CA");
    let channel = conn.create_channel().await.expect("channel over TLS");
    Topology::new(&[200]).declare(&channel).await.expect("declare over TLS");
    let seen = wait_for(Duration::from_secs(10), "the broker to list the TLS connection", || async {
        Some(tls_connections(&vhost.name).await).filter(|c| !c.is_empty())
    })
    .await;
    assert_eq!(seen, [(true, String::new())], "one TLS connection, without a client certificate");
    conn.close(200, "done".into()).await.expect("close");

    // Mutual TLS: the broker sees the client certificate.
    let client = [
        ("CA_FILE", tls.file("ca.pem")),
        ("CERT_FILE", tls.file("client.pem")),
        ("KEY_FILE", tls.file("client-key.pem")),
    ];
    let conn = tls_connect(&url, &client).await.expect("amqps with a client certificate");
    let seen = wait_for(Duration::from_secs(10), "the broker to list the mutual-TLS connection", || async {
        Some(tls_connections(&vhost.name).await).filter(|c| c.iter().any(|(_, subject)| !subject.is_empty()))
    })
    .await;
    assert!(seen.iter().any(|(ssl, subject)| *ssl && subject.contains("mailroom-test-client")), "{seen:?}");
    conn.close(200, "done".into()).await.expect("close");

    // A broker certificate from a CA we do not trust is refused, and the error says why.
    let err = tls_connect(&url, &[("CA_FILE", tls.file("wrong-ca.pem"))]).await.expect_err("the wrong CA is refused");
    assert!(err.to_string().to_lowercase().contains("certificate"), "the error mentions the certificate: {err}");
    // Without the CA at all (public roots only) the private CA is not trusted either.
    let err = tls_connect(&url, &[]).await.expect_err("the private CA is not a public root");
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");

    // A client certificate the broker does not trust is refused by the broker.
    let wrong_client = [
        ("CA_FILE", tls.file("ca.pem")),
        ("CERT_FILE", tls.file("wrong-client.pem")),
        ("KEY_FILE", tls.file("wrong-client-key.pem")),
    ];
    let err = tls_connect(&url, &wrong_client).await.expect_err("a client certificate of another CA is refused");
    // With TLS 1.3 the client finishes its side of the handshake before the broker checks the
    // client certificate, so the refusal arrives as an alert or a reset, depending on timing.
    let text = err.to_string();
    assert!(!text.contains("invalid peer certificate"), "the broker refused, not the client: {text}");

    // Files that cannot be used are reported by key and path, before any connection attempt.
    let err = tls_connect(&url, &[("CA_FILE", tls.file("missing.pem"))]).await.expect_err("a missing CA file");
    assert!(err.to_string().contains("amqp.tls.ca_file") && err.to_string().contains("missing.pem"), "{err}");
    let err = tls_connect(&url, &[("CA_FILE", tls.file("ca-key.pem"))]).await.expect_err("a key is not a certificate");
    assert!(err.to_string().contains("no PEM CERTIFICATE"), "{err}");

    // TLS files with a plain URL, or half a client identity, are configuration errors.
    let err = tls_settings(&vhost.amqp_url(), &[("CA_FILE", tls.file("ca.pem"))]).expect_err("TLS keys with amqp://");
    assert!(err.to_string().contains("amqps://"), "{err}");
    assert!(!err.to_string().contains("guest:guest"), "the password is redacted: {err}");
    let err = tls_settings(&url, &[("CERT_FILE", tls.file("client.pem"))]).expect_err("a certificate without its key");
    assert!(err.to_string().contains("key_file"), "{err}");
}

#[tokio::test]
async fn a_worker_processes_messages_over_tls_and_refuses_an_untrusted_broker() {
    let tls = Tls::require();
    let vhost = TestVhost::create().await;
    let db = TestDb::create().await;
    // Declared over plain AMQP by the test, so the message below is routed whatever the worker's
    // timing; the worker re-declares the same topology over TLS.
    let plain = connect(&vhost.amqp_url()).await;
    let channel = plain.create_channel().await.expect("channel");
    Topology::new(&topology::DEFAULT_RETRY_DELAYS_MS).declare(&channel).await.expect("declare");

    let worker_env = |ca: &str, listen: &str| {
        WorkerEnv::new()
            .set("amqp.url", tls.url(&vhost))
            .set("amqp.tls.ca_file", tls.file(ca))
            .set("amqp.reconnect_initial_ms", "100")
            .set("amqp.reconnect_max_ms", "500")
            .set("database.url", db.url())
            .set("http.listen", listen.to_owned())
            .build()
    };
    let http = reqwest::Client::new();

    // An untrusted broker: the worker stays up, not ready, and says it is the certificate.
    let listen = format!("127.0.0.1:{}", free_port());
    let (untrusting, untrusting_log) = spawn_logged(&bin_path("classifier"), &[], &worker_env("wrong-ca.pem", &listen));
    let base = format!("http://{listen}");
    let (status, body) = wait_for(Duration::from_secs(60), "the wrong-CA classifier to report why", || async {
        readyz(&http, &base).await.filter(|(_, body)| body.contains("cannot connect"))
    })
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_lowercase().contains("certificate"), "the reason mentions the certificate: {body}");
    assert!(body.contains("amqps://guest:***@"), "the URL is shown with its password masked: {body}");
    drop(untrusting);

    // The right CA: ready, and a support inquiry goes through to emails.to_respond.
    let listen = format!("127.0.0.1:{}", free_port());
    let (_classifier, log) = spawn_logged(&bin_path("classifier"), &[], &worker_env("ca.pem", &listen));
    let base = format!("http://{listen}");
    wait_for(Duration::from_secs(60), "the classifier to be ready over TLS", || async {
        readyz(&http, &base).await.filter(|(status, _)| *status == 200)
    })
    .await;
    let publisher = Publisher::open(&plain, None).await.expect("publisher");
    publisher.publish(&support_email("tls-e04")).await.expect("publish");
    let out = wait_for(Duration::from_secs(60), "the classified email in emails.to_respond", || async {
        let got = channel
            .basic_get(EMAILS_TO_RESPOND.name.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get");
        got.map(|m| serde_json::from_slice::<EmailToRespond>(&m.delivery.data).expect("EmailToRespond"))
    })
    .await;
    assert_eq!(out.email_id, "tls-e04");
    assert!(out.classification.is_support_inquiry);
    // The management API's connection list lags by a statistics interval.
    wait_for(Duration::from_secs(30), "the broker to list the classifier's TLS connection", || async {
        tls_connections(&vhost.name).await.iter().any(|(ssl, _)| *ssl).then_some(())
    })
    .await;

    for path in [log, untrusting_log] {
        let logged = std::fs::read_to_string(&path).expect("log");
        assert!(!logged.contains("guest:guest"), "a broker password was logged in {}: {logged}", path.display());
    }
}
