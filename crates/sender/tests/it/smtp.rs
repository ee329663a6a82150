//! SMTP delivery against a real SMTP server process (aiosmtpd, started by each test with its
//! own certificate authority): STARTTLS with AUTH, the reply headers as received, and RFC 5321
//! failure typing — 5yz permanent, 4yz transient, an untrusted certificate refused.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use mailroom_tests::{TestDb, TestDir, free_port};
use pipeline_core::Fate;
use sender::Outcome;
use sender::settings::{SmtpSecurity, SmtpSettings};
use sender::sink::{MaildirSink, SmtpSink};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::{assert_reply_headers, cleanup, connection, handler, maildir_files, pool, prefix, reply, settings};

const PASSWORD: &str = "smtp-pw-8c1d";

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for localhost/127.0.0.1 signed by it, in `dir`.
fn certificates(dir: &Path, ca_name: &str) -> PathBuf {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{ca_name}.key"),
            "-out",
            &format!("{ca_name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={ca_name}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    if !dir.join("server.key").exists() {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                &format!("{ca_name}.pem"),
                "-CAkey",
                &format!("{ca_name}.key"),
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        );
    }
    dir.join(format!("{ca_name}.pem"))
}

/// Starts the SMTP server and waits until it listens.
async fn smtp_server(dir: &Path, port: u16) -> Child {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/smtp_server.py");
    let mut child = Command::new("python3")
        .arg(script)
        .args(["--port", &port.to_string(), "--mode", "starttls", "--password", PASSWORD])
        .arg("--maildir")
        .arg(dir.join("received"))
        .arg("--cert")
        .arg(dir.join("server.pem"))
        .arg("--key")
        .arg(dir.join("server.key"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 with aiosmtpd (pip install aiosmtpd; .ci/run installs it)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line()).await;
    assert!(
        matches!(ready, Ok(Ok(Some(ref l))) if l == "READY"),
        "the SMTP server did not start (is aiosmtpd installed? `pip install aiosmtpd`): {ready:?}"
    );
    child
}

fn smtp_settings(port: u16, ca: &Path, password: &str) -> SmtpSettings {
    SmtpSettings {
        host: "localhost".into(),
        port,
        security: SmtpSecurity::Starttls,
        username: "mailroom".into(),
        password: secrecy::SecretString::from(password.to_owned()),
        ca_file: ca.display().to_string(),
        timeout_secs: 10,
    }
}

#[tokio::test]
async fn replies_reach_a_real_smtp_server_over_starttls_with_their_reply_headers() {
    let (db, dir, p) = (TestDb::create().await, TestDir::create(), prefix());
    let ca = certificates(&dir.path, "mailroom-test-ca");
    let port = free_port();
    let _server = smtp_server(&dir.path, port).await;
    let pool = pool(&db).await;
    let outbox = dir.path.join("outbox");
    let sink =
        SmtpSink::new(&smtp_settings(port, &ca, PASSWORD), MaildirSink::new(&outbox).expect("drafts")).expect("sink");
    let h = handler(pool.clone(), sink, settings(&p)).await;

    let Outcome::Sent(id) = h.send_one(&reply(1, "anna@example.com")).await.expect("sent") else { panic!("not sent") };
    assert!(id.contains("queued as"), "the relay's queue id is the provider id: {id}");
    let received = maildir_files(&dir.path.join("received"));
    assert_eq!(received.len(), 1);
    assert_reply_headers(&std::fs::read_to_string(&received[0]).expect("read"), 1);
    // Redelivery sends nothing more.
    assert_eq!(h.send_one(&reply(1, "anna@example.com")).await.expect("dup"), Outcome::Duplicate("sent".into()));
    assert_eq!(maildir_files(&dir.path.join("received")).len(), 1);
    // Drafts stay local: SMTP has none.
    let mut escalated = reply(2, "bob@example.com");
    escalated.escalate = true;
    assert!(matches!(h.send_one(&escalated).await.expect("draft"), Outcome::Drafted { .. }));
    assert_eq!(maildir_files(&dir.path.join("received")).len(), 1);
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
    let ca = certificates(&dir.path, "mailroom-test-ca");
    let other_ca = certificates(&dir.path, "some-other-ca");
    let port = free_port();
    let _server = smtp_server(&dir.path, port).await;
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
    assert!(maildir_files(&dir.path.join("received")).is_empty());
    cleanup(&mut connection().await, &p).await;
}
