//! SMTP delivery against a real SMTP server process (`mailroom_tests::smtp`: aiosmtpd, started
//! by each test with its own certificate authority): STARTTLS with AUTH, the reply headers as
//! received, and RFC 5321 failure typing — 5yz permanent, 4yz transient, an untrusted
//! certificate refused.

use std::path::Path;

use mailroom_tests::smtp::SmtpServer;
use mailroom_tests::tls_servers::TestCerts;
use mailroom_tests::{TestDb, TestDir};
use pipeline_core::Fate;
use sender::Outcome;
use sender::settings::{SmtpSecurity, SmtpSettings};
use sender::sink::{MaildirSink, SmtpSink};

use crate::{assert_reply_headers, cleanup, connection, handler, maildir_files, pool, prefix, reply, settings};

const USER: &str = "mailroom";
const PASSWORD: &str = "smtp-pw-8c1d";

fn smtp_settings(port: u16, ca: &Path, password: &str) -> SmtpSettings {
    SmtpSettings {
        host: "localhost".into(),
        port,
        security: SmtpSecurity::Starttls,
        username: USER.into(),
        password: secrecy::SecretString::from(password.to_owned()),
        ca_file: ca.display().to_string(),
        timeout_secs: 10,
    }
}

#[tokio::test]
async fn replies_reach_a_real_smtp_server_over_starttls_with_their_reply_headers() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let certs = TestCerts::generate();
    let server = SmtpServer::start(&certs, USER, PASSWORD).await;
    let pool = pool(&db).await;
    let outbox = dir.path.join("outbox");
    let sink = SmtpSink::new(
        &smtp_settings(server.port(), &certs.path("ca.pem"), PASSWORD),
        MaildirSink::new(&outbox).expect("drafts"),
    )
    .expect("sink");
    let h = handler(pool.clone(), sink, settings(&p)).await;

    let Outcome::Sent(id) = h.send_one(&reply(1, "anna@example.com")).await.expect("sent") else { panic!("not sent") };
    assert!(id.contains("queued as"), "the relay's queue id is the provider id: {id}");
    let received = server.received();
    assert_eq!(received.len(), 1);
    assert_reply_headers(&std::fs::read_to_string(&received[0]).expect("read"), 1);
    // Redelivery sends nothing more.
    assert_eq!(h.send_one(&reply(1, "anna@example.com")).await.expect("dup"), Outcome::Duplicate("sent".into()));
    assert_eq!(server.received().len(), 1);
    // Drafts stay local: SMTP has none.
    let mut escalated = reply(2, "bob@example.com");
    escalated.escalate = true;
    assert!(matches!(h.send_one(&escalated).await.expect("draft"), Outcome::Drafted { .. }));
    assert_eq!(server.received().len(), 1);
    assert_eq!(maildir_files(&outbox.join(".Drafts")).len(), 1);

    // 550 is permanent, 451 transient (RFC 5321); neither leaves a claim behind.
    let err = h.send_one(&reply(3, "rejected@example.com")).await.expect_err("550");
    assert_eq!((err.fate, err.error_type.as_ref()), (Fate::Permanent, "SmtpRejected"), "{err}");
    assert!(err.source.to_string().contains("User unknown"), "{err}");
    let err = h.send_one(&reply(4, "greylisted@example.com")).await.expect_err("451");
    assert_eq!(err.fate, Fate::Transient, "{err}");
    assert!(err.source.to_string().contains("Greylisted"), "{err}");
    let claims: i64 = sqlx::query_scalar("SELECT count(*) FROM replies WHERE state = 'claimed'")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(claims, 0);
    cleanup(&mut connection().await, &p).await;
}

#[tokio::test]
async fn a_wrong_password_or_an_untrusted_certificate_is_refused() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let certs = TestCerts::generate();
    let (ca, other_ca) = (certs.path("ca.pem"), certs.path("wrong-ca.pem"));
    let server = SmtpServer::start(&certs, USER, PASSWORD).await;
    let port = server.port();
    let pool = pool(&db).await;
    let outbox = dir.path.join("outbox");

    let sink =
        SmtpSink::new(&smtp_settings(port, &ca, "wrong"), MaildirSink::new(&outbox).expect("drafts")).expect("sink");
    let h = handler(pool.clone(), sink, settings(&p)).await;
    let err = h.send_one(&reply(1, "anna@example.com")).await.expect_err("535");
    assert_eq!((err.fate, err.error_type.as_ref()), (Fate::Permanent, "SmtpRejected"), "{err}");

    let sink = SmtpSink::new(&smtp_settings(port, &other_ca, PASSWORD), MaildirSink::new(&outbox).expect("drafts"))
        .expect("sink");
    let h = handler(pool.clone(), sink, settings(&p)).await;
    let err = h.send_one(&reply(2, "anna@example.com")).await.expect_err("untrusted");
    assert_eq!(err.fate, Fate::Permanent, "{err}");
    assert_eq!(err.error_type, "SmtpTlsError", "{err}");
    assert!(server.received().is_empty());
    cleanup(&mut connection().await, &p).await;
}
