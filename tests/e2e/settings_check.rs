//! Every worker binary refuses a settings key that does not exist, naming it, before it
//! connects to anything: a typo such as `MAILROOM__SENDER__RATE_LIMT` used to be ignored and
//! the worker ran on the default.

use mailroom_tests::{TestDir, bin_path, run};

#[tokio::test]
async fn workers_exit_on_an_unknown_variable_naming_it() {
    for worker in pipeline_core::consumer::binary_names() {
        let env = [("MAILROOM__SENDER__RATE_LIMT", "5".to_owned())];
        let (code, out) = run(&bin_path(worker), &[], &env).await;
        assert_eq!(code, 2, "{worker}: {out}");
        assert!(
            out.contains("MAILROOM__SENDER__RATE_LIMT")
                && out.contains("`sender.rate_limt`")
                && out.contains("did you mean `sender.rate_limit`"),
            "{worker}: {out}"
        );
    }
}

#[tokio::test]
async fn a_worker_exits_on_an_unknown_key_in_its_file() {
    let dir = TestDir::create();
    let file = dir.path.join("worker.toml");
    std::fs::write(&file, "[workers.sender]\nconcurency = 2\n").expect("write");
    let (code, out) = run(&bin_path("sender"), &["--config", &file.display().to_string()], &[]).await;
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("`workers.sender.concurency`") && out.contains("did you mean `workers.sender.concurrency`"),
        "{out}"
    );
}
