//! `mailroom gmail authorize` with the real binary against the fake Google (`gmail-fake`): the
//! test plays the browser — it reads the consent URL the command prints, asks the fake's
//! authorization endpoint (which consents, partly consents or refuses as told, and redirects to
//! the command's loopback address) and follows the redirect. The fake's token endpoint checks
//! the PKCE verifier against the challenge as Google does.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gmail_fake::{CLIENT_ID, CLIENT_SECRET, Consent, FakeGmail, scope};
use mailroom_tests::TestDir;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use url::Url;

fn mailroom() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_mailroom"))
}

/// The command running, with the consent URL it printed.
struct Running {
    child: Child,
    url: Url,
    /// Everything printed on stderr so far, then until exit.
    stderr: tokio::task::JoinHandle<String>,
}

/// Exit code, stdout and stderr of a finished command.
struct Finished {
    code: i32,
    stdout: String,
    stderr: String,
}

fn command(fake: &FakeGmail, extra: &[&str]) -> Command {
    let mut cmd = Command::new(mailroom());
    cmd.args(["gmail", "authorize", "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
        .args(["--auth-url", &fake.auth_url(), "--token-url", &fake.token_url(), "--timeout-secs", "60"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, _) in std::env::vars() {
        if key.starts_with("MAILROOM") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Starts the command and waits for the consent URL on stderr.
async fn start(fake: &FakeGmail, extra: &[&str]) -> Running {
    let mut child = command(fake, extra).spawn().expect("spawn mailroom");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut seen = String::new();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            seen.push_str(&line);
            seen.push('\n');
            if line.starts_with(&fake.auth_url()) {
                return Url::parse(line.trim()).expect("the printed URL parses");
            }
        }
        panic!("no consent URL printed:\n{seen}");
    })
    .await
    .expect("the URL is printed promptly");
    let stderr = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    Running { child, url, stderr }
}

impl Running {
    fn param(&self, name: &str) -> String {
        self.url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap_or_default()
    }

    /// The browser asks the consent screen, which redirects: the `Location`.
    async fn consent(&self) -> Url {
        let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        let response = browser.get(self.url.clone()).send().await.expect("consent screen");
        assert_eq!(response.status(), 302, "{:?}", response.text().await);
        let location = response.headers()["location"].to_str().expect("ASCII").to_owned();
        Url::parse(&location).expect("location")
    }

    async fn finish(mut self) -> Finished {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the command ends")
            .expect("wait");
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).await.expect("stdout");
        }
        Finished { code: status.code().unwrap_or(-1), stdout, stderr: self.stderr.await.expect("stderr") }
    }
}

/// The browser follows the redirect to the command's loopback address.
async fn follow(location: &Url) -> (u16, String) {
    let response = reqwest::get(location.clone()).await.expect("loopback redirect");
    (response.status().as_u16(), response.text().await.expect("page"))
}

fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[tokio::test]
async fn the_refresh_token_is_written_to_a_0600_file_after_a_pkce_checked_exchange() {
    let fake = FakeGmail::start().await;
    let dir = TestDir::create();
    let out = dir.path.join("gmail-token");
    let run = start(&fake, &["--out", out.to_str().expect("utf-8")]).await;

    let redirect_uri = run.param("redirect_uri");
    let port: u16 = redirect_uri.strip_prefix("http://127.0.0.1:").expect("loopback").parse().expect("port");
    assert_ne!(port, 0);
    assert_eq!(run.param("scope"), scope::MODIFY, "gmail.modify by default");
    assert_eq!((run.param("response_type"), run.param("client_id")), ("code".into(), CLIENT_ID.into()));
    assert_eq!((run.param("access_type"), run.param("prompt")), ("offline".into(), "consent".into()));
    assert_eq!(run.param("code_challenge_method"), "S256");
    assert_eq!(run.param("code_challenge").len(), 43, "base64url of a SHA-256");
    assert!(run.param("state").len() >= 22, "a random state");

    let location = run.consent().await;
    assert!(location.as_str().starts_with(&redirect_uri), "{location}");
    let (status, page) = follow(&location).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("authorised"), "{page}");
    let challenge = run.param("code_challenge");
    let done = run.finish().await;
    assert_eq!(done.code, 0, "{}", done.stderr);

    let token = fake.issued_refresh_tokens().pop().expect("a refresh token was issued");
    assert_eq!(std::fs::read_to_string(&out).expect("token file"), format!("{token}\n"));
    let mode = std::fs::metadata(&out).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    assert_eq!(fake.granted(&token), Some(vec![scope::MODIFY.to_owned()]));
    assert!(done.stdout.is_empty(), "the token goes to the file only: {}", done.stdout);
    assert!(!done.stderr.contains(&token) && !done.stderr.contains(CLIENT_SECRET), "{}", done.stderr);
    assert!(done.stderr.contains("Granted: gmail.modify."), "{}", done.stderr);
    assert!(done.stderr.contains("cover the poller and the sender"), "{}", done.stderr);

    let exchange = fake.token_requests().pop().expect("the code exchange").form();
    assert_eq!(exchange["grant_type"], "authorization_code");
    assert_eq!(exchange["redirect_uri"], redirect_uri);
    assert_eq!(exchange["client_id"], CLIENT_ID);
    assert_eq!(s256(&exchange["code_verifier"]), challenge, "the verifier behind the challenge");
    assert_eq!(fake.token_requests().len(), 1);
}

#[tokio::test]
async fn the_fake_token_endpoint_checks_the_pkce_verifier_as_google_does() {
    let fake = FakeGmail::start().await;
    let verifier = "a".repeat(20) + &"B-._~".repeat(6);
    let mut url = Url::parse(&fake.auth_url()).expect("url");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", "http://127.0.0.1:9")
        .append_pair("scope", scope::COMPOSE)
        .append_pair("code_challenge", &s256(&verifier))
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "xyz")
        .append_pair("access_type", "offline");
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let location =
        browser.get(url).send().await.expect("consent").headers()["location"].to_str().expect("ascii").to_owned();
    let pairs: HashMap<String, String> = Url::parse(&location).expect("url").query_pairs().into_owned().collect();
    assert_eq!((pairs["state"].as_str(), pairs["scope"].as_str()), ("xyz", scope::COMPOSE));
    let exchange = |verifier: Option<&str>, redirect_uri: &str| {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "authorization_code")
            .append_pair("code", &pairs["code"])
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("client_id", CLIENT_ID)
            .append_pair("client_secret", CLIENT_SECRET);
        if let Some(verifier) = verifier {
            form.append_pair("code_verifier", verifier);
        }
        let request = browser
            .post(fake.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.finish());
        async move {
            let response = request.send().await.expect("token endpoint");
            (response.status().as_u16(), response.json::<serde_json::Value>().await.expect("JSON"))
        }
    };
    let wrong = "w".repeat(43);
    let refused =
        |error: &str, description: &str| (400, serde_json::json!({"error": error, "error_description": description}));
    assert_eq!(exchange(Some(&wrong), "http://127.0.0.1:9").await, refused("invalid_grant", "Invalid code verifier."));
    assert_eq!(exchange(None, "http://127.0.0.1:9").await, refused("invalid_grant", "Missing code verifier."));
    assert_eq!(exchange(Some(&verifier), "http://127.0.0.1:8").await, refused("redirect_uri_mismatch", "Bad Request"));
    let (status, token) = exchange(Some(&verifier), "http://127.0.0.1:9").await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["scope"], scope::COMPOSE);
    assert!(token["refresh_token"].as_str().is_some_and(|t| t.starts_with("1//")), "{token}");
    assert_eq!(
        exchange(Some(&verifier), "http://127.0.0.1:9").await,
        refused("invalid_grant", "Bad Request"),
        "a code works once"
    );
}

#[tokio::test]
async fn a_state_mismatch_or_a_refused_consent_fails_clearly_and_writes_nothing() {
    let fake = FakeGmail::start().await;
    let dir = TestDir::create();
    let out = dir.path.join("token");
    let out_arg = out.to_str().expect("utf-8");

    // A redirect whose state is not the one sent (a stale tab, a forged request).
    let run = start(&fake, &["--out", out_arg]).await;
    let mut location = run.consent().await;
    let pairs: Vec<(String, String)> = location
        .query_pairs()
        .into_owned()
        .map(|(k, v)| if k == "state" { (k, "forged".to_owned()) } else { (k, v) })
        .collect();
    location.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, page) = follow(&location).await;
    assert_eq!(status, 400, "{page}");
    let done = run.finish().await;
    assert_ne!(done.code, 0);
    assert!(done.stderr.contains("state does not match"), "{}", done.stderr);
    assert!(fake.token_requests().is_empty(), "the code is not exchanged");
    assert!(!out.exists(), "no token file is left behind");

    // The owner refuses on the consent screen.
    fake.set_consent(Consent::Deny);
    let run = start(&fake, &["--out", out_arg]).await;
    let location = run.consent().await;
    assert!(location.query_pairs().any(|(k, v)| k == "error" && v == "access_denied"), "{location}");
    let (status, page) = follow(&location).await;
    assert_eq!(status, 400);
    assert!(page.contains("access_denied"), "{page}");
    let done = run.finish().await;
    assert_ne!(done.code, 0);
    assert!(done.stderr.contains("access_denied") && done.stderr.contains("test users"), "{}", done.stderr);
    assert!(!out.exists());
}

#[tokio::test]
async fn fewer_scopes_than_asked_are_reported_and_the_token_printed_without_out() {
    let fake = FakeGmail::start().await;
    // Google's granular consent: the owner unticks gmail.modify.
    fake.set_consent(Consent::GrantOnly(vec![scope::SEND.to_owned()]));
    let run = start(&fake, &["--scope", "gmail.modify", "--scope", scope::SEND]).await;
    assert_eq!(run.param("scope"), format!("{} {}", scope::MODIFY, scope::SEND));
    let location = run.consent().await;
    assert_eq!(follow(&location).await.0, 200);
    let done = run.finish().await;
    assert_eq!(done.code, 0, "{}", done.stderr);
    let token = fake.issued_refresh_tokens().pop().expect("issued");
    assert_eq!(done.stdout, format!("{token}\n"), "stdout holds the token alone");
    assert!(done.stderr.contains("not granted: gmail.modify"), "{}", done.stderr);
    assert!(done.stderr.contains("not allowed with these scopes: poller"), "{}", done.stderr);
    assert!(done.stderr.contains("save drafts"), "{}", done.stderr);
}

#[tokio::test]
async fn an_existing_out_file_is_kept_unless_forced() {
    let fake = FakeGmail::start().await;
    let dir = TestDir::create();
    let out = dir.path.join("token");
    std::fs::write(&out, "old\n").expect("write");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out_arg = out.to_str().expect("utf-8");

    let output = command(&fake, &["--out", out_arg]).output().await.expect("run");
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("exists; pass --force"), "{stderr}");
    assert!(!stderr.contains(&fake.auth_url()), "refused before any consent: {stderr}");
    assert_eq!(std::fs::read_to_string(&out).expect("read"), "old\n");

    let run = start(&fake, &["--out", out_arg, "--force"]).await;
    let location = run.consent().await;
    assert_eq!(follow(&location).await.0, 200);
    let done = run.finish().await;
    assert_eq!(done.code, 0, "{}", done.stderr);
    let token = fake.issued_refresh_tokens().pop().expect("issued");
    assert_eq!(std::fs::read_to_string(&out).expect("read"), format!("{token}\n"));
    assert_eq!(std::fs::metadata(&out).expect("metadata").permissions().mode() & 0o777, 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(&dir.path).expect("dir").filter_map(Result::ok).collect();
    assert_eq!(leftovers.len(), 1, "no staging file left: {leftovers:?}");
}
