//! The classifier's second look in the mailbox's documents (`classifier::documents`), against a
//! real PostgreSQL (a throw-away database): a question the offline model takes for "not support"
//! becomes a draft for a person when the mailbox's own documents speak about it — never when
//! they are another mailbox's, never for mail that asks nothing, never for the rules' verdicts.

use std::time::Duration;

use classifier::documents::{DocumentCheck, RelevanceSettings};
use classifier::eval::LabelledEmail;
use classifier::offline::to_classify;
use classifier::{Classifier, ClassifyHandler, PERSON_FIRST_CONFIDENCE, Thresholds};
use llm::ProviderChain;
use llm::chain::Entry;
use mailroom_db::documents::{self, NewDocument};
use mailroom_tests::TestDb;
use pipeline_core::messages::{EmailToClassify, EmailToRespond};
use pipeline_core::{DeliveryMeta, Handler};
use secrecy::SecretString;
use sqlx::PgPool;
use uuid::Uuid;
use vector_store::{ChunkRecord, PgVectorStore, VectorStore};

const HELPDESK: &str = "helpdesk@office.example";
const OTHER: &str = "sales@office.example";

/// One page of the Debian Reference (English, p. 238: printing), as extracted.
const PRINTING: &str = "The lpr(1) command sends a file to the print queue. To print three collated \
copies of a document from the command line, run \"lpr -#3 -o collate=true file.pdf\"; lpq(1) shows the \
queue and lprm(1) removes a job. The CUPS web interface at http://localhost:631/ manages printers.";

/// A question the offline model, trained on a product company's mail, takes for "not support".
fn printing_question(agent: &str) -> EmailToClassify {
    email(
        agent,
        "Question",
        "Hi,\n\nHow do I print three collated copies of a document straight from the command line?\n\nThanks,\nSam Park\n",
    )
}

fn email(agent: &str, subject: &str, body: &str) -> EmailToClassify {
    let mut message = to_classify(&LabelledEmail {
        id: Uuid::new_v4().to_string(),
        from: "Sam Park <sam.park@example.org>".into(),
        subject: subject.into(),
        body: body.into(),
        ..LabelledEmail::default()
    });
    message.agent_email = agent.into();
    message.to = agent.into();
    message
}

fn offline_classifier() -> Classifier {
    let chain = ProviderChain::new(vec![Entry::Local], Duration::from_secs(60));
    Classifier::new(chain, Thresholds::uniform(0.99).checking_documents(true)).expect("the committed model")
}

/// The generator's defaults (config/default.toml `[rag]`).
const RELEVANCE: RelevanceSettings = RelevanceSettings { min_lexical_score: 0.3, candidates: 20 };

async fn database_with_manual() -> (TestDb, PgPool) {
    let db = TestDb::create().await;
    let pool = mailroom_db::connect_and_migrate(&SecretString::from(db.url()), 4).await.expect("migrate");
    let id = Uuid::new_v4();
    documents::insert(
        &pool,
        &NewDocument {
            document_id: id,
            agent_email: HELPDESK,
            filename: "debian-reference.en.pdf",
            stored_path: "/nonexistent/debian-reference.en.pdf",
            content_type: "application/pdf",
            size_bytes: 1,
            message_id: "m",
        },
    )
    .await
    .expect("document row");
    let chunks = [PRINTING, "Use adduser(8) to add a user account and passwd(1) to change its password."]
        .iter()
        .enumerate()
        .map(|(i, text)| ChunkRecord {
            document_id: id.to_string(),
            chunk_index: u32::try_from(i).expect("small"),
            source: "debian-reference.en.pdf".into(),
            page: Some(238 + u32::try_from(i).expect("small")),
            text: (*text).to_owned(),
            embedding: vec![1.0, 0.0, 0.0, 0.0],
        })
        .collect();
    PgVectorStore::new(pool.clone()).replace_document(HELPDESK, &id.to_string(), chunks).await.expect("chunks");
    (db, pool)
}

#[tokio::test]
async fn a_question_the_documents_speak_about_is_drafted_for_a_person() {
    let (_db, pool) = database_with_manual().await;
    // Without the look, the model leaves the question alone: what this feature is for.
    let (alone, _) = offline_classifier().classify(&printing_question(HELPDESK)).await.expect("verdict");
    assert!(!alone.is_support_inquiry, "the model alone must miss it for this test to mean anything: {alone:?}");

    let classifier = offline_classifier().with_documents(DocumentCheck::new(pool.clone(), RELEVANCE));
    let (verdict, reason) = classifier.classify(&printing_question(HELPDESK)).await.expect("verdict");
    assert!(verdict.is_support_inquiry, "{verdict:?}");
    assert_eq!(verdict.confidence, PERSON_FIRST_CONFIDENCE);
    assert!(verdict.needs_review, "never answered without a person");
    assert_eq!(verdict.llm_provider, "local");
    let reason = reason.expect("a reason");
    assert!(
        reason.contains("offline model took it for not support") && reason.contains("debian-reference.en.pdf, p. 238"),
        "{reason}"
    );

    // Turned off (for the deployment here; a registry entry does it for one mailbox, see
    // `mailbox_policies`), the look is not taken.
    let chain = ProviderChain::new(vec![Entry::Local], Duration::from_secs(60));
    let off = Classifier::new(chain, Thresholds::uniform(0.99).checking_documents(false))
        .expect("model")
        .with_documents(DocumentCheck::new(pool.clone(), RELEVANCE));
    let (unlooked, _) = off.classify(&printing_question(HELPDESK)).await.expect("verdict");
    assert!(!unlooked.is_support_inquiry, "{unlooked:?}");

    // Another mailbox of the deployment has no such documents: the helpdesk's never count.
    let (elsewhere, _) = classifier.classify(&printing_question(OTHER)).await.expect("verdict");
    assert!(!elsewhere.is_support_inquiry, "{elsewhere:?}");

    // Mail that asks nothing is not looked up, however much of it the documents cover.
    let statement = email(
        HELPDESK,
        "Printing",
        "FYI: three collated copies of the document were printed from the command line with lpr.\n",
    );
    let (plain, _) = offline_classifier().classify(&statement).await.expect("verdict");
    assert!(!plain.is_support_inquiry, "{plain:?}");
    let (looked, reason) = classifier.classify(&statement).await.expect("verdict");
    assert!(!looked.is_support_inquiry && reason.is_none(), "{looked:?} {reason:?}");

    // The loop-safety rules' verdicts stand: an auto-reply asking the same is still automated.
    let mut auto = printing_question(HELPDESK);
    auto.headers.insert("Auto-Submitted".into(), "auto-replied".into());
    let (automated, _) = classifier.classify(&auto).await.expect("verdict");
    assert_eq!((automated.is_support_inquiry, automated.llm_provider.as_str()), (false, "rules"));
}

#[tokio::test]
async fn the_worker_records_the_reason_and_passes_the_email_on_for_review() {
    let (_db, pool) = database_with_manual().await;
    let classifier = offline_classifier().with_documents(DocumentCheck::new(pool.clone(), RELEVANCE));
    let handler = ClassifyHandler::new(pool.clone(), classifier);
    let email = printing_question(HELPDESK);
    let out = handler.handle(email.clone(), &DeliveryMeta::default()).await.expect("handled");
    assert_eq!(out.len(), 1, "passed on to the generator");
    let respond: EmailToRespond = serde_json::from_slice(&out[0].body).expect("an emails.to_respond message");
    assert!(respond.classification.is_support_inquiry && respond.classification.needs_review);
    let (support, reason): (bool, Option<String>) =
        sqlx::query_as("SELECT is_support_inquiry, reason FROM classifications WHERE email_id = $1")
            .bind(&email.email_id)
            .fetch_one(&pool)
            .await
            .expect("recorded");
    assert!(support);
    assert!(reason.is_some_and(|r| r.contains("mailbox's documents speak about it")));
}
