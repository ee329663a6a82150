//! The committed weights against the blind held-out set and the behaviours the pipeline
//! relies on: targets that fail CI on a regression, automation in nine languages never
//! answered, quoted automation still support.

use classifier::eval::parse_set;
use classifier::model::Model;
use classifier::offline::{OfflineClassifier, evaluate};

/// The shipped default of `classifier.auto_answer_min_confidence`, read from the defaults file
/// so the test checks what operators get.
fn default_threshold() -> f64 {
    include_str!("../../../config/default.toml")
        .lines()
        .find_map(|l| l.strip_prefix("auto_answer_min_confidence = "))
        .and_then(|v| v.trim().parse().ok())
        .expect("classifier.auto_answer_min_confidence in config/default.toml")
}

fn classifier() -> OfflineClassifier {
    OfflineClassifier::embedded().expect("committed weights")
}

/// The blind held-out set, as frozen (see `data/corpus/HELDOUT-V5.md`), with its sha256 when it
/// was committed, before any training on anything new (`PREREGISTRATION-V5.md`).
const HELDOUT_V5: &str = include_str!("../data/corpus/heldout-v5.jsonl");
const HELDOUT_V5_SHA256: &str = "580e4af8426f4f96f6c39addaa12bfcf7d91e6de8f37de0689707db41099084b";

/// The blind sets of earlier rounds, retired once evaluated and now training mail: unchanged
/// since they were frozen, so the figures recorded for them still describe these emails.
const RETIRED: [(&str, &str); 3] = [
    (include_str!("../data/corpus/heldout.jsonl"), "27d7a7c81bc56882616e6f00bf560ac279d8d10d75df2aa33d665129228354f3"),
    (
        include_str!("../data/corpus/heldout-v3.jsonl"),
        "b2b74848df944c1bddaf03d8cfaf81e7249a6ed1950df4ce55954be4e41bd9e2",
    ),
    (
        include_str!("../data/corpus/heldout-v4.jsonl"),
        "5105f7542fcc113aa51c42f45f8699f65bdc9d035151b4ae3324715be3293152",
    ),
];

/// The targets: accuracy 0.9, precision 0.97 of what is answered automatically.
const TARGET_ACCURACY: f64 = 0.9;
const TARGET_PRECISION: f64 = 0.97;

fn report(set: &str) -> classifier::eval::Report {
    let set = parse_set(set).expect("labelled set");
    let report = evaluate(&set, &classifier(), default_threshold());
    println!("{}", report.render());
    assert!(report.total() >= 150);
    assert_eq!(report.per_lang.len(), 9, "all nine languages: {:?}", report.per_lang.keys());
    report
}

#[test]
fn development_set_meets_the_targets() {
    // The first held-out set, looked at while the training mail was written: a development set
    // now, so meeting the targets here is necessary, not sufficient.
    let report = report(include_str!("../data/corpus/dev.jsonl"));
    assert!(report.accuracy() >= TARGET_ACCURACY, "development accuracy {:.3}", report.accuracy());
    assert!(
        report.auto_answer_precision() >= TARGET_PRECISION,
        "development precision {:.3}",
        report.auto_answer_precision()
    );
}

#[test]
fn the_blind_held_out_set_meets_the_targets() {
    // heldout-v5, evaluated once with the committed weights and default threshold (0.99) after
    // both were final (docs/CLASSIFICATION.md): accuracy 0.926, auto-answer precision 1.000 (13 of
    // 13), coverage 0.137. The floors are the targets; the coverage floor keeps a model
    // that stops answering anything automatically (precision of nothing) from passing.
    let report = report(HELDOUT_V5);
    assert!(report.accuracy() >= TARGET_ACCURACY, "heldout-v5: accuracy {:.3}", report.accuracy());
    assert!(
        report.auto_answer_precision() >= TARGET_PRECISION,
        "heldout-v5: auto-answer precision {:.3}",
        report.auto_answer_precision()
    );
    assert!(report.auto_answer_coverage() >= 0.13, "heldout-v5: coverage {:.3}", report.auto_answer_coverage());
}

#[test]
fn held_out_sets_are_frozen_and_apart_from_training() {
    use sha2::Digest;
    let sha256 =
        |set: &str| -> String { sha2::Sha256::digest(set.as_bytes()).iter().map(|b| format!("{b:02x}")).collect() };
    assert_eq!(sha256(HELDOUT_V5), HELDOUT_V5_SHA256, "the blind held-out set changed after it was frozen");
    for (set, frozen) in RETIRED {
        assert_eq!(sha256(set), frozen, "a retired held-out set changed after it was frozen");
    }
    let train = parse_set(include_str!("../data/corpus/train.jsonl")).expect("training set");
    let dev = parse_set(include_str!("../data/corpus/dev.jsonl")).expect("development set");
    let blind = parse_set(HELDOUT_V5).expect("held-out set");
    for h in blind.iter().chain(&dev) {
        assert!(!train.iter().any(|t| t.body == h.body && t.subject == h.subject), "{} is in training", h.id);
    }
    assert!(train.len() >= 500);
}

#[test]
fn multilingual_auto_replies_and_bounces_are_never_answered() {
    let threshold = default_threshold();
    let c = classifier();
    // Written for this test: none is in the training, development or held-out set, and none carries headers,
    // so the model (not the header rules) has to recognise them.
    let automated = [
        (
            "Out of office",
            "I am out of the office until 3 June and have no access to my email. Your message will be read on my return.",
        ),
        (
            "Undeliverable: order 5521",
            "Delivery to the following recipients failed permanently: the mailbox does not exist. This message was generated automatically.",
        ),
        (
            "Abwesend bis Montag",
            "Ich bin bis Montag nicht im Büro und lese meine E-Mails nicht. In dringenden Fällen wenden Sie sich an meine Kollegin.",
        ),
        (
            "Unzustellbar",
            "Die Nachricht konnte nicht zugestellt werden. Empfängeradresse unbekannt. Dies ist eine automatisch generierte Nachricht.",
        ),
        (
            "Réponse automatique : absent",
            "Je suis absente du bureau jusqu'au 5 juin, sans accès à mes emails. Pour toute urgence, contactez l'accueil.",
        ),
        (
            "Respuesta automática",
            "Estoy fuera de la oficina hasta el lunes y no tengo acceso al correo. Para urgencias llame a recepción.",
        ),
        (
            "Automatisch antwoord",
            "Ik ben afwezig tot maandag en lees mijn e-mail niet. Voor dringende zaken kunt u de receptie bellen.",
        ),
        (
            "Resposta automática",
            "Estou fora do escritório até segunda-feira, sem acesso ao email. Para urgências contacte a receção.",
        ),
        (
            "Risposta automatica",
            "Sono fuori ufficio fino a lunedì senza accesso alla posta. Per urgenze contattate la reception.",
        ),
        (
            "Odpowiedź automatyczna",
            "Jestem poza biurem do poniedziałku bez dostępu do poczty. W pilnych sprawach proszę dzwonić do recepcji.",
        ),
        ("自動返信", "月曜日まで不在にしており、メールを確認できません。お急ぎの方は受付までご連絡ください。"),
        (
            "配信不能のお知らせ",
            "お送りいただいたメールは配信できませんでした。宛先が存在しません。このメールは自動送信です。",
        ),
    ];
    for (subject, body) in automated {
        let p = c.p_support("", subject, body);
        assert!(p < threshold, "{subject}: P(support) {p:.2} would be answered automatically");
    }
}

#[test]
fn a_customer_forwarding_a_bounce_is_still_support() {
    let c = classifier();
    let body = "Hello, I tried to send you the photos of the damaged desk and got this back. Where can I send them? \
                I still need the replacement.\n\n---------- Forwarded message ---------\nFrom: Mail Delivery Subsystem\n\
                Subject: Delivery Status Notification (Failure)\nYour message could not be delivered.";
    let verdict = c.classify("maya@example.com", "Fwd: Delivery Status Notification (Failure)", body);
    assert!(verdict.is_support_inquiry, "{verdict:?}");
}

#[test]
fn mail_in_a_script_the_model_never_learnt_goes_to_a_person() {
    // The retrieval evaluation's Chinese and Russian questions (tests/retrieval-eval/set.json):
    // the model, trained on Latin-script languages and Japanese, gave each P(support) 0.08–0.30.
    let c = classifier();
    for (subject, body, script) in [
        ("修改时区", "您好！\n怎样修改 Debian 系统的时区？\n谢谢\n王伟", "Chinese"),
        ("", "我想让一个脚本每天定时自动运行，应该怎么设置？", "Chinese"),
        ("Пакет", "Как собрать пакет в чистом окружении chroot?", "Cyrillic"),
        ("", "비밀번호를 재설정하려면 어떻게 해야 하나요?", "Korean"),
    ] {
        let v = c.classify("customer@example.net", subject, body);
        assert!(v.is_support_inquiry && v.confidence == classifier::PERSON_FIRST_CONFIDENCE, "{body}: {v:?}");
        assert!(v.reason.as_deref().is_some_and(|r| r.contains(script)), "{body}: {v:?}");
    }
    // Japanese, and Latin-script mail quoting or signed in another script, stay with the model.
    for (subject, body) in [
        ("返品", "返品はできますか？"),
        ("Re: 修改时区", "Thanks, that worked!\n\nOn Mon, Support wrote:\n> 怎样修改 Debian 系统的时区？"),
        ("E04", "My desk shows E04, what now?\n王伟"),
    ] {
        let v = c.classify("customer@example.net", subject, body);
        assert!(v.reason.is_none(), "{body}: {v:?}");
        let p = c.p_support("customer@example.net", subject, body);
        assert_eq!(v.is_support_inquiry, p >= 0.5, "{body}: {v:?}");
    }
}

#[test]
fn confidence_is_the_calibrated_probability_of_the_verdict() {
    let c = classifier();
    for (subject, body) in [("E04", "My desk shows E04, what now?"), ("Sale", "50% off today only, shop now")] {
        let v = c.classify("", subject, body);
        let p = c.p_support("", subject, body);
        assert!((0.5..=1.0).contains(&v.confidence), "{v:?}");
        assert!((v.confidence - if v.is_support_inquiry { p } else { 1.0 - p }).abs() < 1e-12);
    }
}

#[test]
fn the_committed_weights_are_what_training_produces() {
    // Reproducibility: training on the committed corpus gives the committed bytes.
    let corpus = parse_set(include_str!("../data/corpus/train.jsonl")).expect("training set");
    let trained = classifier::model::train::train(&corpus, &Default::default());
    assert!(trained.model.to_bytes() == classifier::model::EMBEDDED, "run the train example and commit data/model.bin");
    assert!(Model::embedded().is_ok());
}
