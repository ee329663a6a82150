//! Scenario d: the remote LLMs misbehave for the whole run. The chain is
//! `anthropic,openai,local`: Anthropic points at a closed port (down for the whole run), the
//! OpenAI-compatible provider at [`fake_llm`](crate::fake_llm), which answers about 30% of calls
//! with 429 or 503 and some with a body that is not JSON or a verdict cut off mid-object. The
//! chain's cool-down is 0 s so that every call walks it — the dead provider, then the flaky
//! one, then the local model — instead of skipping the remote ones after their first failure.
//!
//! What must hold: every failure is classified (rate limit and overload transient, garbage an
//! unusable answer) and fails over to the next entry, never into a lost or half-handled email;
//! the flaky provider answers a share of the emails, the local model the rest, the dead one
//! none.

use std::time::Instant;

use crate::pipeline::{Options, Pipeline};
use crate::{EMAILS, SETTLE, fake_llm, seed, services};
use pipeline_core::worker_env::WorkerEnv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_llm_and_a_dead_one_fail_over_without_losing_an_email() {
    services::assert_all_healthy();
    let (fake, served) = fake_llm::start(seed("llm")).await;
    let dead = format!("http://127.0.0.1:{}/v1", mailroom_tests::free_port());
    let env = WorkerEnv::new()
        .set("llm.providers", "anthropic,openai,local")
        .set("llm.cooldown_secs", "0")
        .set("llm.timeout_secs", "10")
        .set("llm.anthropic.base_url", dead)
        .set("llm.anthropic.api_key", "sk-ant-faults")
        .set("llm.openai.base_url", fake.openai_url())
        .set("llm.openai.api_key", "sk-faults")
        .build();
    let mut p = Pipeline::start(Options { env, ..Options::default() }).await;
    let started = Instant::now();
    p.feed(0..EMAILS);
    let report = p.finish(SETTLE).await;
    let (ok, rate_limited, unavailable, malformed) = served.counts();
    let total = ok + rate_limited + unavailable + malformed;
    let generated: Vec<(String, i64)> = sqlx::query_as(
        "SELECT llm_provider, count(*) FROM responses WHERE agent_email = $1 GROUP BY llm_provider ORDER BY 1",
    )
    .bind(crate::mailbox::AGENT)
    .fetch_all(&p.pool)
    .await
    .expect("responses by provider");
    eprintln!(
        "[faults] llm: fake served {total} calls: {ok} answers, {rate_limited} × 429, {unavailable} × 503, \
         {malformed} malformed; replies written by {generated:?}; whole scenario {:.1} s",
        started.elapsed().as_secs_f64()
    );
    report.assert_clean();

    // The faults really happened, at about the advertised rates. (A 429's `retry-after-ms`
    // cools the provider down for that long, so not every email reaches the fake.)
    assert!(total > EMAILS as u64 / 4, "the fake was asked for a good share of the emails: {total}");
    for stage in ["classifier", "rag-generator"] {
        let dead = p.count_in_logs(stage, "LLM provider failed; trying the next one provider=\"anthropic\"");
        eprintln!("[faults] llm: {stage} failed over from the dead provider {dead} times");
        assert!(dead > EMAILS / 4, "{stage} tried the dead provider and failed over: {dead} times");
    }
    let failed = (rate_limited + unavailable) as f64 / total as f64;
    assert!((0.2..0.4).contains(&failed), "429/503 share {failed:.2}");
    assert!(malformed > 0, "malformed answers were served");
    // Classifications: the flaky provider and the local model share them, the dead one has none.
    let by = |name: &str| report.providers.get(name).copied().unwrap_or(0);
    assert!(by("openai") > 0 && by("local") > 0, "{:?}", report.providers);
    assert_eq!(by("anthropic"), 0, "{:?}", report.providers);
    assert!(by("rules") > 0, "automated mail is decided by the rules, before any model");
    let written = |name: &str| generated.iter().find(|(p, _)| p == name).map_or(0, |(_, n)| *n);
    assert!(written("openai") > 0 && written("local") > 0, "{generated:?}");
    assert_eq!(written("anthropic"), 0, "{generated:?}");
}
