//! What the classifier and the generator read of the mailbox registry: each mailbox's
//! auto-answer threshold (`classifier.auto_answer_min_confidence`), second look in its documents
//! (`classifier.check_documents`) and reply policy (`rag`),
//! without the mailbox's secrets — those processes never hold the poller's and the sender's
//! credentials, so an entry whose secret variables are unset in their environment must still
//! give them its policy.

use classifier::ClassifierSettings;
use mailroom_db::mailboxes::ReadsRegistry as _;
use mailroom_tests::TestDb;
use pipeline_core::Settings;
use rag_generator::policy::{Policies, Policy};
use serde_json::json;
use sqlx::PgPool;

const BILLING: &str = "billing@northwind.example";
const SALES: &str = "sales@northwind.example";
const LEGAL: &str = "legal@northwind.example";
const SUPPORT: &str = "support@northwind.example";

#[tokio::test]
async fn the_classifier_and_the_generator_read_each_mailboxs_policy_without_its_secrets() {
    let db = TestDb::create().await;
    let pool: PgPool =
        mailroom_db::connect_and_migrate(&secrecy::SecretString::from(db.url()), 2).await.expect("database");
    // Billing: its own threshold and German replies; its IMAP password a variable no process
    // here has.
    let billing = json!({
        "mailbox": {"kind": "imap", "imap": {"host": "imap.example", "password": {"env": "MAILROOM_TEST_BILLING_PASSWORD_UNSET"}}},
        "classifier": {"auto_answer_min_confidence": 0.97},
        "rag": {"reply_language": "German", "signature": "Das Billing-Team"}
    });
    // Sales sets no threshold (its entry in the deployment's map applies), but turns the second
    // look in its documents off.
    let sales = json!({"sender": {"rate_limit": 5}, "classifier": {"check_documents": false}});
    // Legal's threshold is out of range: the deployment's default applies, with a warning.
    let legal = json!({"classifier": {"auto_answer_min_confidence": 1.5}});
    for (address, entry, enabled) in [(BILLING, &billing, true), (SALES, &sales, true), (LEGAL, &legal, true)] {
        assert!(mailroom_db::mailboxes::add(&pool, address, enabled, entry).await.expect("add"));
    }
    // A disabled mailbox's threshold is not used.
    let disabled = json!({"classifier": {"auto_answer_min_confidence": 0.2}});
    assert!(mailroom_db::mailboxes::add(&pool, SUPPORT, false, &disabled).await.expect("add"));

    let settings = Settings::load_from(None, Vec::new()).expect("defaults");
    let mut classifier: ClassifierSettings = settings.section("classifier").expect("classifier");
    let default = classifier.auto_answer_min_confidence;
    classifier.auto_answer_min_confidence_by_mailbox = [(BILLING.to_owned(), 0.5), (SALES.to_owned(), 0.8)].into();
    let thresholds = classifier.thresholds().expect("valid");
    assert_eq!(thresholds.for_mailbox(BILLING), 0.5, "the deployment's map, before the registry is read");
    thresholds.read(&settings, &pool).await.expect("registry");
    let shared = thresholds.clone();
    assert_eq!(shared.for_mailbox("Billing@Northwind.example"), 0.97, "the entry's own wins over the map");
    assert_eq!(shared.for_mailbox(SALES), 0.8, "no threshold of its own: the map");
    assert_eq!(shared.for_mailbox(LEGAL), default, "unreadable: the default");
    assert_eq!(shared.for_mailbox(SUPPORT), default, "disabled: the default");
    assert!(!shared.checks_documents(SALES), "its own second look");
    assert!(shared.checks_documents(BILLING) && shared.checks_documents(SUPPORT), "the deployment's");

    // Changed in the registry: read again.
    let lowered = json!({"classifier": {"auto_answer_min_confidence": 0.93}});
    assert!(mailroom_db::mailboxes::set_settings(&pool, BILLING, &lowered).await.expect("update"));
    thresholds.read(&settings, &pool).await.expect("registry");
    assert_eq!(shared.for_mailbox(BILLING), 0.93);

    // The generator's reply policy, from the same entries, also without the secret.
    assert!(mailroom_db::mailboxes::set_settings(&pool, BILLING, &billing).await.expect("update"));
    let rag = settings.section("rag").expect("rag");
    let policies = Policies::new(Policy::from_settings(&rag));
    policies.read(&settings, &pool).await.expect("registry");
    let policy = policies.for_mailbox(BILLING);
    assert_eq!((policy.reply_language.as_str(), policy.signature.as_str()), ("German", "Das Billing-Team"));
    assert_eq!(policies.for_mailbox(SALES).reply_language, "same");
    pool.close().await;
}
