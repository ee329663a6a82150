//! PDF extraction that survives real-world PDFs (issue 11): a page no engine can read is
//! skipped and listed while the document becomes ready; a document the primary engine cannot
//! read is read by the fallback; the extraction child starts with an empty environment; and a
//! fixed subset of the real-PDF corpus is ingested and agrees with poppler's `pdftotext`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use doc_ingester::extract::{self, Limits};
use doc_ingester::{Ingester, IngesterSettings};
use mailroom_db::documents::{self, NewDocument};
use mailroom_tests::{TestDb, TestDir, bin_path, corpus, repo_root};
use pipeline_core::messages::{DocumentMetadata, DocumentToIngest, new_message_id, now};
use pipeline_core::settings::Settings;
use pipeline_core::worker_env::{WorkerEnv, env_var};
use serde_json::Value;
use uuid::Uuid;

use crate::stack::{AGENT_A, fixture, start};

/// The default `[ingester]` limits and engines, as the worker runs them.
fn default_limits() -> Limits {
    let settings = Settings::load_from(None, std::iter::empty::<(String, String)>()).expect("defaults load");
    let ingester: IngesterSettings = settings.section("ingester").expect("[ingester]");
    ingester.limits().expect("valid engines")
}

#[tokio::test]
async fn a_pdf_with_one_broken_page_becomes_ready_with_that_page_listed() {
    let stack = start(Vec::new()).await;
    // The 11-page sample manual with page 3's content stream replaced by random bytes.
    let (status, body) = stack.upload_file(AGENT_A, &fixture("broken-page.pdf")).await;
    assert_eq!(status, 202, "{body}");
    let doc = stack.settled(body["document_id"].as_str().expect("id")).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["page_count"], 11, "{doc}");
    assert_eq!(doc["skipped_pages"], serde_json::json!([3]), "{doc}");
    let warnings: Vec<&str> = doc["warnings"].as_array().expect("warnings").iter().filter_map(Value::as_str).collect();
    assert!(warnings.iter().any(|w| w.contains("1 of 11 pages could not be read and were skipped: 3")), "{warnings:?}");
    // The other pages are searchable, with their page numbers; page 3 has no chunk.
    let pool = stack.pool().await;
    let pages: Vec<Option<i32>> =
        sqlx::query_scalar("SELECT DISTINCT page FROM chunks WHERE document_id = $1 ORDER BY page")
            .bind(doc["document_id"].as_str().expect("id"))
            .fetch_all(&pool)
            .await
            .expect("pages");
    assert!(!pages.contains(&Some(3)) && pages.contains(&Some(2)) && pages.contains(&Some(4)), "{pages:?}");

    // `mailroom ingest` shows the warning.
    let file = fixture("broken-page.pdf").display().to_string();
    let (code, out) = mailroom_tests::run(
        &bin_path("mailroom"),
        &["ingest", &file, "--agent", AGENT_A, "--url", &stack.base],
        &stack.env(),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ready,") && out.contains("warning: 1 of 11 pages could not be read and were skipped: 3"),
        "{out}"
    );
}

#[tokio::test]
async fn the_extraction_child_starts_with_an_empty_environment() {
    let db = TestDb::create().await;
    let storage = TestDir::create();
    let settings = Settings::load_from(
        None,
        WorkerEnv::new().set("database.url", db.url()).set("storage.dir", storage.path.display().to_string()).owned(),
    )
    .expect("settings");
    let pool = mailroom_db::connect_and_migrate(&settings.database.url, 2).await.expect("database");
    // An extractor that records the environment it was started with (its own /proc environ,
    // which the shell cannot have added to) and answers like the real child.
    let scratch = TestDir::create();
    let recorded = scratch.path.join("environ");
    let script = scratch.path.join("extractor.sh");
    let report = r#"{"Ok":{"pages":[{"number":1,"text":"Northwind desks ship in five days."}],"failed_pages":[],"mended_pages":[],"engine":"pdf_oxide","fallbacks":[]}}"#;
    std::fs::write(
        &script,
        format!("#!/bin/sh\ncat /proc/$$/environ > '{}'\nprintf '%s' '{report}'\n", recorded.display()),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ingester = Ingester::from_settings(&settings, pool.clone()).expect("ingester").with_extractor(script);

    let pdf = storage.path.join("manual.pdf");
    std::fs::copy(fixture("broken-page.pdf"), &pdf).expect("copy");
    let id = Uuid::new_v4();
    let path = pdf.display().to_string();
    let message_id = new_message_id();
    let agent = AGENT_A;
    documents::insert(
        &pool,
        &NewDocument {
            document_id: id,
            agent_email: agent,
            filename: "manual.pdf",
            stored_path: &path,
            content_type: "application/pdf",
            size_bytes: 1,
            message_id: &message_id,
        },
    )
    .await
    .expect("insert");
    let msg = DocumentToIngest {
        message_id,
        timestamp: now(),
        document_id: id.to_string(),
        filename: "manual.pdf".into(),
        file_path: path,
        file_size_bytes: 1,
        uploaded_by: agent.into(),
        agent_email: agent.into(),
        metadata: DocumentMetadata { upload_source: Some("test".into()), content_type: None },
    };
    let done = ingester.ingest(id, &msg, "application/pdf").await.expect("ingested");
    assert_eq!(done.pages, 1);
    // The test process has PATH, HOME, CARGO_* and more; the child must see none of it.
    assert!(std::env::var_os("PATH").is_some());
    let environ = std::fs::read(&recorded).expect("the extractor ran");
    let vars: Vec<String> =
        environ.split(|b| *b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    assert!(vars.is_empty(), "the extraction child inherited {vars:?}");
}

/// The Debian manual of issue 11 (MetaPost's, 114 pages): `pdf-extract` panics in its CMap
/// parser ("bad length of hexstring") on 53 of its pages; `pdf_oxide` reads them all.
const METAPOST_MANUAL: &str = "texlive-metapost-doc/usr/share/doc/texlive-doc/metapost/base/mpman.pdf";

/// The CI subset: its packages are fetched (cached) and its documents listed, one per line.
fn ci_corpus() -> (PathBuf, Vec<PathBuf>) {
    corpus::require_pdftotext();
    let root = corpus::fetch(&repo_root().join("tests/corpus/ci-pdf-packages.txt"));
    let list = std::fs::read_to_string(repo_root().join("tests/corpus/ci-pdf-documents.txt")).expect("document list");
    let documents: Vec<PathBuf> = list
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| root.join(l))
        .collect();
    for d in &documents {
        assert!(d.is_file(), "{} is not in the fetched packages (tests/corpus/ci-pdf-packages.txt)", d.display());
    }
    (root, documents)
}

/// Generous limits for real documents under debug builds on a busy CI machine.
fn real_document_limits() -> Vec<(&'static str, String)> {
    WorkerEnv::new().set("ingester.extract_timeout_secs", "120").set("ingester.extract_max_memory_mb", "1024").build()
}

#[tokio::test]
async fn the_ci_subset_of_real_pdfs_becomes_ready_with_text_agreeing_with_pdftotext() {
    let (root, documents) = ci_corpus();
    assert!(documents.len() >= 20, "{} documents in the CI subset", documents.len());
    let program = bin_path("doc-ingester");
    let limits = default_limits();
    let mut outside = Vec::new();
    for pdf in &documents {
        let name = pdf.strip_prefix(&root).unwrap_or(pdf).display().to_string();
        let reference = corpus::pdftotext_chars(&root, pdf).unwrap_or_else(|| panic!("pdftotext cannot read {name}"));
        let done = extract::extract_pdf_isolated(&program, pdf, &limits)
            .await
            .unwrap_or_else(|e| panic!("{name}: {} ({e})", e.error_type()));
        let chars: usize = done.pages.iter().map(|p| corpus::visible_chars(&p.text)).sum();
        assert!(chars > 0, "{name}: no text");
        assert!(done.failed_pages.is_empty(), "{name}: skipped {:?}", done.failed_pages);
        if !corpus::agrees(chars, reference) {
            outside.push(format!("{name}: {chars} characters, pdftotext {reference}"));
        }
    }
    // The corpus target: at least 95 % of the documents within 15 % of pdftotext's length.
    let agreeing = documents.len() - outside.len();
    assert!(
        agreeing * 100 >= documents.len() * 95,
        "{agreeing} of {} agree; outside 15 %: {outside:#?}",
        documents.len()
    );

    // Through the real pipeline, each ends ready (the MetaPost manual included, which used to
    // be dead-lettered as ExtractionCrashed).
    let stack = start(real_document_limits()).await;
    let mut ids = Vec::new();
    for pdf in &documents {
        let (status, body) = stack.upload_file(AGENT_A, pdf).await;
        assert_eq!(status, 202, "{}: {body}", pdf.display());
        ids.push((pdf, body["document_id"].as_str().expect("id").to_owned()));
    }
    for (pdf, id) in &ids {
        let doc = stack.settled(id).await;
        assert_eq!(doc["status"], "ready", "{}: {doc}", pdf.display());
        assert!(doc["chunk_count"].as_i64().unwrap_or(0) > 0, "{doc}");
    }
}

#[tokio::test]
async fn a_real_pdf_the_primary_engine_panics_on_is_read_by_the_fallback() {
    let (root, _) = ci_corpus();
    let manual = root.join(METAPOST_MANUAL);
    // pdf-extract first: it panics on 53 pages, which pdf_oxide then reads.
    let mut env = real_document_limits();
    env.push((env_var("ingester.pdf_engines"), "pdf-extract,pdf_oxide".to_owned()));
    let stack = start(env).await;
    let (status, body) = stack.upload_file(AGENT_A, &manual).await;
    assert_eq!(status, 202, "{body}");
    let doc = stack.settled(body["document_id"].as_str().expect("id")).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    assert_eq!(doc["page_count"], 114, "{doc}");
    assert_eq!(doc["skipped_pages"], serde_json::json!([]), "{doc}");
    let warnings = doc["warnings"].to_string();
    assert!(
        warnings.contains("pages were read by the fallback engine pdf_oxide because pdf-extract could not read them"),
        "{warnings}"
    );
    assert!(warnings.contains("panicked: bad length of hexstring"), "{warnings}");

    // pdf-extract alone cannot read those pages: they are skipped and listed, and the rest is
    // still ingested.
    let mut env = real_document_limits();
    env.push((env_var("ingester.pdf_engines"), "pdf-extract".to_owned()));
    let alone = start(env).await;
    let (_, body) = alone.upload_file(AGENT_A, &manual).await;
    let doc = alone.settled(body["document_id"].as_str().expect("id")).await;
    assert_eq!(doc["status"], "ready", "{doc}");
    let skipped = doc["skipped_pages"].as_array().expect("skipped").len();
    assert!(skipped > 0 && skipped < 114, "{doc}");
}
