//! `mailroom demo`, the README's first command, end to end: it must exit 0 with every email of
//! the bundled mailbox in the terminal state `examples/mailbox/expected.json` gives — questions
//! answered from the right document, the unanswerable one drafted for a human, automated mail not
//! answered, the malformed one dead-lettered — and say clearly when a service is missing.

use std::collections::BTreeMap;
use std::path::Path;

use mailroom_tests::{TestDir, bin_path, mgmt, repo_root, run};
use pipeline_core::worker_env::{WorkerEnv, env_var};
use serde_json::Value;

/// Runs `mailroom demo --json` in a fresh vhost and database of its own (removed afterwards) with
/// `env` added, and returns its exit code and output.
async fn run_demo(env: &[(&str, String)]) -> (i32, String) {
    let (code, out, _) = run_demo_with_replies(env).await;
    (code, out)
}

/// [`run_demo`], also returning the sent replies of the outbox (drafts left out), by the file of
/// the bundled mailbox they answer, as decoded body text.
async fn run_demo_with_replies(env: &[(&str, String)]) -> (i32, String, BTreeMap<String, String>) {
    let dir = TestDir::create();
    let (code, out) = demo_in(&dir.path, &[], env).await;
    let replies = sent_replies(&dir.path.join("outbox/cur"));
    (code, out, replies)
}

/// Runs `mailroom demo --json` with `dir` as its working directory, `extra` arguments and `env`
/// added, in a fresh vhost and database of its own, which it removes afterwards.
async fn demo_in(dir: &Path, extra: &[&str], env: &[(&str, String)]) -> (i32, String) {
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (vhost, database) = (format!("mailroom-test-demo-{suffix}"), format!("mailroom_test_demo_{suffix}"));
    let dir = dir.display().to_string();
    let mut args = vec!["demo", "--json", "--dir", &dir, "--vhost", &vhost, "--database", &database];
    args.extend(["--timeout-secs", "240"]);
    args.extend(extra);
    let result = run(&bin_path("mailroom"), &args, env).await;
    // The demo leaves its vhost and database for inspection; the test removes them (through the
    // shared broker's management API, which the tests may rely on even when the demo may not).
    let _ = mgmt().delete_vhost(&vhost).await;
    let _ = mailroom_db::drop_database(&format!("postgres://postgres@127.0.0.1:5432/{database}").into()).await;
    (result.0, result.1)
}

/// The JSON summary `mailroom demo --json` printed (stdout comes first in `out`, the progress on
/// stderr after it), checked to be complete.
fn summary(code: i32, out: &str) -> Value {
    assert_eq!(code, 0, "{out}");
    let json_start = out.find("{\n").unwrap_or_else(|| panic!("no JSON summary in: {out}"));
    let summary: Value = serde_json::Deserializer::from_str(&out[json_start..])
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no JSON summary in: {out}"));
    assert_eq!(summary["complete"], true, "{out}");
    summary
}

/// Replies in a Maildir folder by the bundled mailbox file whose Message-ID they reply to.
fn sent_replies(folder: &Path) -> BTreeMap<String, String> {
    let mailbox = repo_root().join("examples/mailbox");
    let mut files_by_id = BTreeMap::new();
    for entry in std::fs::read_dir(&mailbox).expect("mailbox").flatten() {
        // The malformed example does not parse; it is never answered either.
        if let Ok(email) = mail_mime::parse(&std::fs::read(entry.path()).expect("read example")) {
            let file = entry.file_name().to_string_lossy().into_owned();
            files_by_id.insert(email.message_id.unwrap_or_default(), file);
        }
    }
    let mut replies = BTreeMap::new();
    for entry in std::fs::read_dir(folder).into_iter().flatten().flatten() {
        let reply = mail_mime::parse(&std::fs::read(entry.path()).expect("read reply")).expect("reply parses");
        let answered = reply.in_reply_to.as_ref().and_then(|id| files_by_id.get(id)).expect("reply to a bundled email");
        replies.insert(answered.clone(), reply.body);
    }
    replies
}

/// The quoted sentences of an offline (extractive) reply: `"sentence" (document[, p. N])` lines.
fn quoted_sentences(body: &str) -> Vec<(String, String)> {
    body.lines()
        .filter(|l| l.starts_with('"'))
        .map(|l| {
            let end = l.rfind("\" (").unwrap_or_else(|| panic!("a quote without its citation: {l:?}"));
            (l[1..end].to_owned(), l[end + 3..].trim_end_matches(')').to_owned())
        })
        .collect()
}

/// Checks that the demo exited 0 with every bundled email in the state `expected.json` gives.
fn assert_bundled_outcomes(code: i32, out: &str) {
    let summary = summary(code, out);

    let expected: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("examples/mailbox/expected.json")).expect("expected.json"),
    )
    .expect("json");
    let emails = summary["emails"].as_array().expect("emails");
    assert_eq!(emails.len(), expected.len(), "every bundled email is in the summary");
    assert!(emails.len() >= 20);
    for email in emails {
        let file = email["file"].as_str().expect("file");
        let want = &expected[file];
        assert_eq!(email["outcome"], want["outcome"], "{file}: {email}");
        // "source": the document that must come first, or the documents any of which may (the
        // user manual's last page also states the warranty periods).
        let first = email["sources"][0].as_str().unwrap_or_default();
        match &want["source"] {
            Value::String(source) => assert_eq!(first, source, "{file} cites the right document first: {email}"),
            Value::Array(sources) => {
                assert!(sources.iter().any(|s| s == first), "{file} cites one of {sources:?} first: {email}")
            }
            _ => {}
        }
        if want["outcome"] == "not_answered" {
            assert_eq!(email["is_support"], false, "{file}");
        }
    }
    let answered = emails.iter().filter(|e| e["outcome"] == "answered").count();
    let drafted = emails.iter().filter(|e| e["outcome"] == "drafted").count();
    assert_eq!(summary["sent_files"].as_u64(), Some(answered as u64), "one outbox file per answer");
    assert_eq!(summary["draft_files"].as_u64(), Some(drafted as u64));
    // The customs question the offline model misses is drafted because the shipping FAQ speaks
    // about it, and the summary says so.
    let customs = emails.iter().find(|e| e["file"] == "09-customs-duties.eml").expect("customs");
    assert!(
        customs["classification_reason"].as_str().is_some_and(|r| r.contains("mailbox's documents speak about it")),
        "{customs}"
    );
    // The prompt injection got an answer from the agent's own documents only.
    let injection = emails.iter().find(|e| e["file"] == "16-prompt-injection.eml").expect("injection");
    let own = ["lift-pro-user-manual.pdf", "warranty-and-returns.pdf", "shipping-faq.md", "app-troubleshooting.txt"];
    assert!(injection["sources"].as_array().expect("sources").iter().all(|s| own.contains(&s.as_str().unwrap_or(""))));
}

#[tokio::test]
async fn the_demo_answers_drafts_skips_and_dead_letters_the_bundled_mailbox() {
    let (code, out) = run_demo(&[]).await;
    assert_bundled_outcomes(code, &out);
    assert!(out.contains("Vhosts are managed through the management API"), "{out}");
}

/// A fresh install has RabbitMQ's management plugin off (docs/ARCHITECTURE.md, "Machines") and the
/// README's command must work there: with nothing listening where the management API should be, the
/// demo creates its vhost with `rabbitmqctl` and ends exactly as with the API. The test needs root
/// (or the rabbitmq user) for `rabbitmqctl`, as the demo itself does on such a machine.
#[tokio::test]
async fn the_demo_works_without_the_management_api() {
    let closed = format!("http://127.0.0.1:{}", mailroom_tests::free_port());
    let (code, out) = run_demo(&[(env_var("management.url"), closed.clone())]).await;
    assert_bundled_outcomes(code, &out);
    assert!(
        out.contains(&format!("rabbitmqctl (the management API at {closed} is not reachable; not needed)")),
        "{out}"
    );
    assert!(!out.contains("management API is not reachable at"), "no preflight failure: {out}");
}

#[tokio::test]
async fn the_demo_says_which_service_is_missing_and_how_to_start_it() {
    let dir = TestDir::create();
    let closed = mailroom_tests::free_port();
    let env = WorkerEnv::new()
        .set("redis.url", format!("redis://127.0.0.1:{closed}"))
        .set("database.url", format!("postgres://postgres@127.0.0.1:{closed}/mailroom"))
        .build();
    let args =
        ["demo", "--dir", &dir.path.display().to_string(), "--vhost", "mailroom-test-never", "--database", "never"];
    let (code, out) = run(&bin_path("mailroom"), &args, &env).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("PostgreSQL is not reachable at postgres://postgres@127.0.0.1:{closed}/mailroom")),
        "{out}"
    );
    assert!(out.contains("pg_ctlcluster"), "{out}");
    assert!(out.contains(&format!("Redis is not reachable at redis://127.0.0.1:{closed}")), "{out}");
    assert!(out.contains("redis-server --daemonize yes"), "{out}");
    assert!(out.contains("docker compose -f docker-compose.rabbitmq.yml up -d"), "{out}");
    assert!(!out.contains("RabbitMQ (AMQP) is not reachable"), "the broker is up: {out}");
    assert!(!out.contains("panicked") && !out.contains("stack backtrace"), "{out}");
}

/// Issue 12 §1: the offline answers are whole sentences of the documents, cited, without
/// markup or "…" joins, and the ones asking for a fact the documents state get it.
#[tokio::test]
async fn the_demo_replies_quote_whole_clean_sentences_that_hold_the_answer() {
    let (code, out, replies) = run_demo_with_replies(&[]).await;
    assert_bundled_outcomes(code, &out);
    let expected: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("examples/mailbox/expected.json")).expect("expected.json"),
    )
    .expect("json");
    let answered: Vec<&String> = expected.iter().filter(|(_, e)| e["outcome"] == "answered").map(|(f, _)| f).collect();
    assert_eq!(replies.keys().collect::<Vec<_>>(), answered, "one sent reply per answered email");
    let own = ["lift-pro-user-manual.pdf", "warranty-and-returns.pdf", "shipping-faq.md", "app-troubleshooting.txt"];
    for (file, body) in &replies {
        let quotes = quoted_sentences(body);
        assert!(!quotes.is_empty(), "{file}: no quoted sentence in {body}");
        assert!(!body.contains('…'), "{file}: passages joined with an ellipsis: {body}");
        for (sentence, citation) in &quotes {
            let first = sentence.chars().next().unwrap_or(' ');
            let cjk = matches!(first, '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}');
            assert!(
                first.is_uppercase() || first.is_ascii_digit() || first == '"' || cjk,
                "{file}: a quote starting mid-sentence: {sentence:?}"
            );
            let end = sentence.trim_end_matches(['"', ')']);
            assert!(
                end.ends_with(['.', '!', '?', '。', '！', '？']),
                "{file}: a quote ending mid-sentence: {sentence:?}"
            );
            assert!(
                !sentence.contains("**")
                    && !sentence.contains('|')
                    && !sentence.contains("# ")
                    && !sentence.starts_with('#'),
                "{file}: Markdown in a quote: {sentence:?}"
            );
            let document = citation.split(", p. ").next().unwrap_or_default();
            assert!(own.contains(&document), "{file}: cites {citation:?}");
            if document.ends_with(".pdf") {
                assert!(citation.contains(", p. "), "{file}: a PDF quote without its page: {citation:?}");
            } else {
                assert_eq!(citation, document, "{file}: pages only for PDFs");
            }
        }
    }
    // The facts the documents give (warranty-and-returns.pdf p. 4, lift-pro-user-manual.pdf pp. 6-7).
    let refund = &replies["10-refund-timing.eml"];
    assert!(
        refund.contains("3 to 10 business days") || refund.contains("3–10 business days"),
        "card refunds take 3 to 10 business days: {refund}"
    );
    let capacity = &replies["05-weight-capacity.eml"];
    assert!(capacity.contains("120 kg") && capacity.contains("265 lb"), "the capacity is 120 kg (265 lb): {capacity}");
    let e04 = &replies["01-error-e04.eml"];
    assert!(e04.contains("communication error"), "E04 is a control panel communication error: {e04}");
    assert!(quoted_sentences(e04)[0].0.contains("E04"), "the sentence about E04 comes first: {e04}");
}

/// Chinese and Japanese support mail, written as people there write it (addressee, set
/// greeting, request, set closing, name), over the Chinese and Japanese Debian Reference
/// (Debian's PDFs, fetched as the retrieval evaluation fetches them): each question is drafted
/// with the sentence that answers it quoted from the right page, and a Chinese question the
/// manuals do not answer is drafted without passages. Before 2026-12-05 the Chinese mail was
/// taken for "not support" (the offline model never learnt Chinese) and never reached a person,
/// and the Japanese closing and name were searched as part of the question.
#[tokio::test]
async fn chinese_and_japanese_mail_is_drafted_from_the_manual_in_its_language() {
    let set_path = repo_root().join("tests/retrieval-eval/set.json");
    let set = mailroom::retrieval_eval::EvalSet::load(&set_path).expect("set");
    let root = mailroom::retrieval_eval::fetch_documents(&set_path, &set, None).expect("fetch the set's packages");
    let dir = TestDir::create();
    let (knowledge, mailbox) = (dir.path.join("knowledge"), dir.path.join("mail"));
    std::fs::create_dir_all(&knowledge).expect("knowledge dir");
    std::fs::create_dir_all(&mailbox).expect("mailbox dir");
    for id in ["debian-reference-ja", "debian-reference-zh-cn"] {
        let doc = set.documents.iter().find(|d| d.id == id).expect("document of the set");
        let from = root.join(&doc.path);
        std::fs::copy(&from, knowledge.join(from.file_name().expect("file name"))).expect("copy manual");
    }
    let emails = [
        (
            "ja-sudo.eml",
            "yamada@example.jp",
            "sudo の設定について",
            "Northwind サポートご担当者様\n\nいつもお世話になっております。\n\n\
             root のパスワードではなく自分のパスワードで sudo を使えるように設定したいです。\n\n\
             何卒よろしくお願い致します。\n山田太郎\n",
        ),
        (
            "ja-timezone.eml",
            "sato@example.jp",
            "タイムゾーンの変更について",
            "お世話になります。\nDebian のタイムゾーンを変更したいのですが、どのコマンドを使えばよいでしょうか。\n\
             よろしくお願いします。\n佐藤\n",
        ),
        ("zh-timezone.eml", "wang@example.cn", "修改时区", "您好！\n\n怎样修改 Debian 系统的时区？\n\n谢谢！\n王伟\n"),
        (
            "zh-order.eml",
            "li@example.cn",
            "订单",
            "您好，\n\n我上周订购的商品还没有收到，请问物流状态如何？\n\n谢谢\n李娜\n",
        ),
    ];
    for (file, from, subject, body) in emails {
        let raw = format!(
            "{}From: {from}\r\nTo: Northwind Support <support@northwind.example>\r\nSubject: {subject}\r\n\
             Date: Thu, 26 Nov 2026 08:35:00 +0000\r\nMessage-ID: <{file}@test>\r\nMIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}",
            mailroom_tests::authenticated(from),
            body.replace('\n', "\r\n")
        );
        std::fs::write(mailbox.join(file), raw).expect("write email");
    }
    let (k, m) = (knowledge.display().to_string(), mailbox.display().to_string());
    let (code, out) = demo_in(&dir.path.join("run"), &["--knowledge", &k, "--mailbox", &m], &[]).await;
    let summary = summary(code, &out);
    let by_file: BTreeMap<&str, &Value> =
        summary["emails"].as_array().expect("emails").iter().map(|e| (e["file"].as_str().expect("file"), e)).collect();
    assert_eq!(by_file.len(), 4, "{summary}");
    for (file, _, _, _) in emails {
        // Drafts all: the model is not sure enough of the Japanese one to answer it alone, and
        // Chinese mail always goes to a person offline.
        assert_eq!(by_file[file]["outcome"], "drafted", "{file}: {}", by_file[file]);
    }
    assert_eq!(by_file["ja-sudo.eml"]["sources"][0], "debian-reference.ja.pdf", "{summary}");
    assert_eq!(by_file["ja-timezone.eml"]["sources"][0], "debian-reference.ja.pdf", "{summary}");
    assert_eq!(by_file["zh-timezone.eml"]["sources"][0], "debian-reference.zh-cn.pdf", "{summary}");
    let unanswerable = by_file["zh-order.eml"];
    assert!(unanswerable["sources"].as_array().is_some_and(Vec::is_empty), "{unanswerable}");
    assert!(unanswerable["reason"].as_str().is_some_and(|r| r.contains("no relevant passage")), "{unanswerable}");

    // The drafts, by the email they answer.
    let drafts: BTreeMap<String, String> = mailroom_tests::maildir_messages(&dir.path.join("run/outbox/.Drafts"))
        .into_iter()
        .map(|path| {
            let draft = mail_mime::parse(&std::fs::read(&path).expect("read draft")).expect("draft parses");
            let answered = draft.in_reply_to.expect("In-Reply-To");
            (answered.trim_matches(['<', '>']).trim_end_matches("@test").to_owned(), draft.body)
        })
        .collect();
    // The sentences that answer: sudo with the user's own password, Debian Reference ja p. 33;
    // the time zone set again, ja p. 187 and zh-cn p. 172. Each comes first (the Japanese
    // time zone only since katakana words are indexed whole: before, タイムゾーン's bigrams
    // drew the passages on タイムスタンプ).
    let ja = quoted_sentences(&drafts["ja-sudo.eml"]);
    assert!(
        ja.first()
            .is_some_and(|(s, c)| s.contains("ユーザー自身のパスワード") && c == "debian-reference.ja.pdf, p. 33"),
        "{}",
        drafts["ja-sudo.eml"]
    );
    assert!(drafts["ja-sudo.eml"].starts_with("お問い合わせ"), "written in Japanese: {}", drafts["ja-sudo.eml"]);
    let ja = quoted_sentences(&drafts["ja-timezone.eml"]);
    assert!(
        ja.first().is_some_and(|(s, c)| s.contains("タイムゾーン") && c == "debian-reference.ja.pdf, p. 187"),
        "{}",
        drafts["ja-timezone.eml"]
    );
    let zh = quoted_sentences(&drafts["zh-timezone.eml"]);
    assert!(
        zh.first().is_some_and(|(s, c)| s.contains("时区") && c == "debian-reference.zh-cn.pdf, p. 172"),
        "{}",
        drafts["zh-timezone.eml"]
    );
    assert!(drafts["zh-timezone.eml"].starts_with("您好"), "written in Chinese: {}", drafts["zh-timezone.eml"]);
    assert!(quoted_sentences(&drafts["zh-order.eml"]).is_empty(), "{}", drafts["zh-order.eml"]);
}
