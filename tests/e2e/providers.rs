//! Remote LLM providers that fail, end to end: a real `classifier` and `rag-generator` over the
//! real broker, database and Redis, with the provider played by a local fake that answers in
//! the provider's documented wire format.
//!
//! - A retired model (Gemini's 404) is a configuration error reported loudly — an `ERROR` log
//!   line, a metric, a `degraded:` readiness line, an entry in `mailroom status` — while the
//!   chain still answers the email from `local`, and that offline answer becomes a draft for a
//!   person (`rag.local_fallback = "draft"`), not a reply sent in the model's place.
//! - An outage (503s) is ridden out by the retry ladder: the email is answered by the provider
//!   once it is back, and nothing is dead-lettered.

use std::time::Duration;

use lapin::options::BasicGetOptions;
use llm_fake::{Failure, FakeLlm};
use mailroom_tests::{bin_path, free_port, run, spawn_logged, wait_for};
use pipeline_core::Publisher;
use pipeline_core::messages::{EmailToClassify, EmailToSend, IncomingEmail};
use pipeline_core::worker_env::WorkerEnv;

use crate::stack::{AGENT_A, Stack, knowledge, start};

const QUESTION: &str = "How many days do I have to return the desk if I don't like it, and how do I start a return?";

fn question(id: &str) -> EmailToClassify {
    EmailToClassify::new(
        IncomingEmail {
            email_id: id.into(),
            thread_id: Some(format!("thread-{id}")),
            from: "sam@example.org".into(),
            to: AGENT_A.into(),
            subject: "Return policy".into(),
            body: QUESTION.into(),
            agent_email: AGENT_A.into(),
            ..Default::default()
        },
        5,
    )
}

async fn with_the_returns_policy() -> Stack {
    let stack = start(Vec::new()).await;
    let (status, body) = stack.upload_file(AGENT_A, &knowledge("warranty-and-returns.pdf")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["document_id"].as_str().expect("id").to_owned();
    assert_eq!(stack.settled(&id).await["status"], "ready");
    stack
}

/// Publishes `email` and waits for the reply the generator publishes to `emails.to_send`.
async fn reply_to(stack: &Stack, email: &EmailToClassify, within: Duration) -> EmailToSend {
    let conn = lapin::Connection::connect(&stack.vhost.amqp_url(), lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    Publisher::open(&conn, None).await.expect("publisher").publish(email).await.expect("publish");
    let ch = conn.create_channel().await.expect("channel");
    wait_for(within, "the reply on emails.to_send", || async {
        let got = ch.basic_get("emails.to_send".into(), BasicGetOptions { no_ack: true }).await.expect("get")?;
        Some(serde_json::from_slice::<EmailToSend>(&got.delivery.data).expect("a reply"))
    })
    .await
}

#[tokio::test]
async fn a_retired_model_is_reported_loudly_and_the_offline_answer_becomes_a_draft() {
    let stack = with_the_returns_policy().await;
    // Gemini's answer for a model it no longer serves.
    let gemini = FakeLlm::start(|call| call.fail(Failure::ModelNotFound)).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = stack.env();
    env.extend(
        WorkerEnv::new()
            .set("llm.providers", "gemini,local")
            .set("llm.gemini.base_url", gemini.gemini_url())
            .set("llm.gemini.api_key", "AIza-test-retired")
            .set("llm.gemini.model", "gemini-2.0-flash")
            .set("http.listen", listen.clone())
            .build(),
    );
    let _classifier = stack.spawn_worker("classifier", &[]);
    let (_generator, log) = spawn_logged(&bin_path("rag-generator"), &[], &env);

    let reply = reply_to(&stack, &question("retired"), Duration::from_secs(60)).await;
    assert!(gemini.count() >= 1, "the configured model was asked");
    assert!(!reply.generated_response.trim().is_empty(), "the offline model still wrote an answer");
    assert!(reply.escalate, "an offline answer in place of the configured model's goes to a person: {reply:?}");
    let reason = reply.escalation_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("rag.local_fallback"), "{reason}");

    // The readiness detail and the metric say which provider to fix, and why.
    let http = reqwest::Client::new();
    let ready = http.get(format!("http://{listen}/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200, "the worker still works");
    let body = ready.text().await.expect("body");
    assert!(
        body.contains(
            "degraded: misconfigured provider: gemini (generate) HTTP 404: models/gemini-2.0-flash is not found"
        ),
        "{body}"
    );
    let metrics =
        http.get(format!("http://{listen}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(
        metrics.contains(r#"mailroom_llm_provider_misconfigured{provider="gemini",operation="generate"} 1"#),
        "{metrics}"
    );
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(
        logged.lines().any(|l| l.contains("ERROR") && l.contains("misconfigured") && l.contains("gemini")),
        "an error line names the provider: {logged}"
    );
    assert!(!logged.contains("AIza-test-retired"), "the key is never logged");

    // `mailroom status` lists it for the operator (the row is written in the background).
    let output = wait_for(Duration::from_secs(10), "mailroom status to list the provider", || async {
        let (_, output) = run(&bin_path("mailroom"), &["status"], &stack.env()).await;
        output.contains("providers: MISCONFIGURED").then_some(output)
    })
    .await;
    assert!(
        output.contains("gemini (generate, rag-generator) HTTP 404: models/gemini-2.0-flash is not found"),
        "{output}"
    );
}

#[tokio::test]
async fn a_provider_outage_is_ridden_out_by_the_retry_ladder_without_dead_letters() {
    let stack = with_the_returns_policy().await;
    // Down for the first three calls (the email's first try and two retries), then back.
    let openai = FakeLlm::start(|call| {
        if call.n < 3 {
            call.fail(Failure::Unavailable)
        } else {
            call.answer("You can return the desk within 30 days (warranty-and-returns.pdf).")
        }
    })
    .await;
    let _classifier = stack.spawn_worker("classifier", &[]);
    let _generator = stack.spawn_worker(
        "rag-generator",
        &WorkerEnv::new()
            // No `local` entry: only the retry ladder can save the email.
            .set("llm.providers", "openai")
            .set("llm.cooldown_secs", "0")
            .set("llm.openai.base_url", openai.openai_url())
            .set("llm.openai.api_key", "sk-test-outage")
            .set("topology.retry_delays_ms", "200,400,800,1600")
            .build(),
    );

    let reply = reply_to(&stack, &question("outage"), Duration::from_secs(60)).await;
    assert_eq!(openai.count(), 4, "three failures, then the answer");
    assert!(reply.generated_response.contains("within 30 days"), "{}", reply.generated_response);
    assert!(!reply.escalate, "the configured model answered: {reply:?}");
    let (ready, _) = stack.vhost.depth("dead_letter_queue").await;
    assert_eq!(ready, 0, "nothing was dead-lettered");
}
