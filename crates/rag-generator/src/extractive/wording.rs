//! The words the offline answer writes itself — greeting, the line before the quotes, the
//! closing, the sign-off and the holding reply — in the language the mailbox's policy asks for
//! (`rag.reply_language`): the customer's own language (`same`, told from the email by
//! [`detected`]), or a language named in English, in itself or by its ISO 639-1 code. The quotes
//! stay as the documents are written: translating them is a model's work, not this writer's.
//!
//! The customer's language is told by script (kana: Japanese; Han alone: Chinese; Cyrillic:
//! Russian), then by the function words of each Latin-script language ("der", "ist", "mijn",
//! "está", "jest"…). A trigram identifier (`whatlang` 0.18) was tried first and set aside: on
//! email-length text it is unreliable — "How do I reset my Lift Pro? Hello, my Lift Pro desk does
//! not respond to the buttons." came out Portuguese, "Onde está a minha encomenda?" Spanish —
//! whereas a support email nearly always holds a few function words of its language.
//!
//! Eleven languages are written: the nine the classifier is trained on (English, German,
//! French, Spanish, Dutch, Portuguese, Italian, Polish, Japanese) and the two other scripts of
//! the retrieval evaluation (Chinese, Russian). Any other language is answered in English.

use embedders::script::{Script, dominant_script};

/// One language's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wording {
    /// ISO 639-1 code.
    pub code: &'static str,
    /// English name, as `rag.reply_language` may give it.
    pub name: &'static str,
    /// The language's own name.
    pub native: &'static str,
    /// First line.
    pub greeting: &'static str,
    /// Before the quotes.
    pub intro: &'static str,
    /// After the quotes.
    pub closing: &'static str,
    /// Before the signature.
    pub regards: &'static str,
    /// The whole message of a holding reply (no passage to quote).
    pub holding: &'static str,
}

/// English, the fallback.
pub const ENGLISH: Wording = Wording {
    code: "en",
    name: "English",
    native: "English",
    greeting: "Hello,",
    intro: "Thank you for contacting us. Here is what our documentation says about your question:",
    closing: "If this does not answer your question, simply reply to this email and a member of our team will help you.",
    regards: "Best regards,",
    holding: "Thank you for contacting us. We have received your message and a member of our team will get back to you shortly.",
};

/// Every language written, English first.
pub const WORDINGS: [Wording; 11] = [
    ENGLISH,
    Wording {
        code: "de",
        name: "German",
        native: "Deutsch",
        greeting: "Guten Tag,",
        intro: "vielen Dank für Ihre Nachricht. Zu Ihrer Frage steht in unserer Dokumentation Folgendes:",
        closing: "Falls das Ihre Frage nicht beantwortet, antworten Sie einfach auf diese E-Mail; ein Mitglied unseres Teams hilft Ihnen gern weiter.",
        regards: "Mit freundlichen Grüßen",
        holding: "vielen Dank für Ihre Nachricht. Wir haben sie erhalten, und ein Mitglied unseres Teams meldet sich in Kürze bei Ihnen.",
    },
    Wording {
        code: "fr",
        name: "French",
        native: "Français",
        greeting: "Bonjour,",
        intro: "Merci de nous avoir contactés. Voici ce que dit notre documentation au sujet de votre question :",
        closing: "Si cela ne répond pas à votre question, répondez simplement à cet e-mail : un membre de notre équipe vous aidera.",
        regards: "Cordialement,",
        holding: "Merci de nous avoir contactés. Nous avons bien reçu votre message et un membre de notre équipe vous répondra rapidement.",
    },
    Wording {
        code: "es",
        name: "Spanish",
        native: "Español",
        greeting: "Hola:",
        intro: "Gracias por ponerse en contacto con nosotros. Esto es lo que dice nuestra documentación sobre su pregunta:",
        closing: "Si esto no responde a su pregunta, basta con que responda a este correo y un miembro de nuestro equipo le ayudará.",
        regards: "Saludos cordiales,",
        holding: "Gracias por ponerse en contacto con nosotros. Hemos recibido su mensaje y un miembro de nuestro equipo le responderá en breve.",
    },
    Wording {
        code: "nl",
        name: "Dutch",
        native: "Nederlands",
        greeting: "Hallo,",
        intro: "Bedankt voor uw bericht. Dit staat er in onze documentatie over uw vraag:",
        closing: "Beantwoordt dit uw vraag niet, antwoord dan gewoon op deze e-mail; een medewerker van ons team helpt u verder.",
        regards: "Met vriendelijke groet,",
        holding: "Bedankt voor uw bericht. We hebben het ontvangen en een medewerker van ons team neemt zo snel mogelijk contact met u op.",
    },
    Wording {
        code: "pt",
        name: "Portuguese",
        native: "Português",
        greeting: "Olá,",
        intro: "Obrigado por nos contactar. Eis o que a nossa documentação diz sobre a sua pergunta:",
        closing: "Se isto não responder à sua pergunta, basta responder a este e-mail e um membro da nossa equipa irá ajudá-lo.",
        regards: "Com os melhores cumprimentos,",
        holding: "Obrigado por nos contactar. Recebemos a sua mensagem e um membro da nossa equipa responderá em breve.",
    },
    Wording {
        code: "it",
        name: "Italian",
        native: "Italiano",
        greeting: "Buongiorno,",
        intro: "grazie per averci contattato. Ecco che cosa dice la nostra documentazione sulla sua domanda:",
        closing: "Se questo non risponde alla sua domanda, risponda semplicemente a questa e-mail: un membro del nostro team la aiuterà.",
        regards: "Cordiali saluti,",
        holding: "grazie per averci contattato. Abbiamo ricevuto il suo messaggio e un membro del nostro team le risponderà a breve.",
    },
    Wording {
        code: "pl",
        name: "Polish",
        native: "Polski",
        greeting: "Dzień dobry,",
        intro: "dziękujemy za wiadomość. Oto, co na ten temat mówi nasza dokumentacja:",
        closing: "Jeśli to nie odpowiada na pytanie, wystarczy odpowiedzieć na tę wiadomość, a ktoś z naszego zespołu chętnie pomoże.",
        regards: "Z poważaniem",
        holding: "dziękujemy za wiadomość. Otrzymaliśmy ją i ktoś z naszego zespołu wkrótce się odezwie.",
    },
    Wording {
        code: "ja",
        name: "Japanese",
        native: "日本語",
        greeting: "お問い合わせいただきありがとうございます。",
        intro: "ご質問について、弊社のドキュメントには次のように記載されています。",
        closing: "これでご質問の答えにならない場合は、このメールにそのままご返信ください。担当者よりご案内いたします。",
        regards: "よろしくお願いいたします。",
        holding: "メッセージを受け付けました。担当者より追ってご連絡いたします。",
    },
    Wording {
        code: "zh",
        name: "Chinese",
        native: "中文",
        greeting: "您好，",
        intro: "感谢您联系我们。关于您的问题，我们的文档中有如下说明：",
        closing: "如果以上内容没有解答您的问题，请直接回复此邮件，我们的团队成员会为您提供帮助。",
        regards: "祝好，",
        holding: "感谢您联系我们。我们已收到您的消息，团队成员会尽快回复您。",
    },
    Wording {
        code: "ru",
        name: "Russian",
        native: "Русский",
        greeting: "Здравствуйте!",
        intro: "Спасибо, что обратились к нам. Вот что говорится в нашей документации по вашему вопросу:",
        closing: "Если это не отвечает на ваш вопрос, просто ответьте на это письмо, и сотрудник нашей команды вам поможет.",
        regards: "С уважением,",
        holding: "Спасибо, что обратились к нам. Мы получили ваше сообщение, и сотрудник нашей команды скоро с вами свяжется.",
    },
];

/// The words for `reply_language` (`same`: the language of `question`). A language this writer
/// does not know, or a question whose language cannot be told, gets English.
pub fn for_reply(reply_language: &str, question: &str) -> &'static Wording {
    match reply_language.trim() {
        "" | "same" => detected(question),
        named => named_language(named).unwrap_or(&WORDINGS[0]),
    }
}

/// The wording of a language given by its English name, its own name or its ISO 639-1 code
/// (any case).
pub fn named_language(name: &str) -> Option<&'static Wording> {
    let name = name.trim();
    WORDINGS.iter().find(|w| [w.code, w.name, w.native].iter().any(|n| n.to_lowercase() == name.to_lowercase()))
}

/// The function words of each Latin-script language written: frequent, short, and telling.
const FUNCTION_WORDS: [(&str, &[&str]); 8] = [
    (
        "en",
        &[
            "the", "and", "is", "are", "my", "i", "you", "your", "to", "of", "it", "do", "does", "how", "what", "not",
            "with", "for", "this", "that", "please", "can", "have", "has", "was", "me", "we", "hello", "thanks", "why",
            "where", "when", "will", "would", "an", "hi", "could", "any", "there",
        ],
    ),
    (
        "de",
        &[
            "der", "die", "das", "und", "ist", "nicht", "ich", "mein", "meine", "meinen", "wie", "was", "mit", "für",
            "ein", "eine", "einen", "bitte", "sie", "ihre", "haben", "habe", "kann", "können", "auf", "zu", "den",
            "dem", "des", "es", "wir", "uns", "hallo", "danke", "warum", "wo", "wann", "noch", "schon", "auch", "mir",
        ],
    ),
    (
        "fr",
        &[
            "le", "la", "les", "et", "est", "je", "mon", "ma", "mes", "vous", "votre", "vos", "pas", "ne", "avec",
            "pour", "une", "un", "des", "du", "au", "que", "qui", "comment", "merci", "bonjour", "sur", "dans", "mais",
            "il", "elle", "nous", "ai", "où", "quand", "pourquoi", "ce", "cette", "j", "n", "l", "d", "c", "qu",
        ],
    ),
    (
        "es",
        &[
            "el", "la", "los", "las", "y", "es", "mi", "mis", "no", "con", "para", "por", "una", "un", "que", "qué",
            "cómo", "como", "gracias", "hola", "usted", "su", "sus", "del", "al", "pero", "está", "estoy", "tengo",
            "dónde", "cuándo", "porque", "muy", "se", "lo", "me", "de", "en", "puedo", "hay",
        ],
    ),
    (
        "nl",
        &[
            "de", "het", "een", "en", "is", "niet", "ik", "mijn", "u", "uw", "je", "met", "voor", "van", "dat", "die",
            "wat", "hoe", "waar", "wanneer", "waarom", "bedankt", "dank", "hallo", "graag", "maar", "ook", "nog",
            "heb", "heeft", "kan", "kunt", "zijn", "op", "te", "er", "we", "wij", "geen",
        ],
    ),
    (
        "pt",
        &[
            "o", "a", "os", "as", "e", "é", "meu", "minha", "não", "com", "para", "por", "uma", "um", "que", "como",
            "obrigado", "obrigada", "olá", "você", "seu", "sua", "do", "da", "dos", "das", "mas", "está", "estou",
            "tenho", "onde", "quando", "porque", "muito", "se", "no", "na", "em", "de", "ao", "posso",
        ],
    ),
    (
        "it",
        &[
            "il",
            "lo",
            "la",
            "gli",
            "le",
            "e",
            "è",
            "mio",
            "mia",
            "miei",
            "non",
            "con",
            "per",
            "una",
            "un",
            "che",
            "come",
            "grazie",
            "ciao",
            "buongiorno",
            "lei",
            "suo",
            "sua",
            "del",
            "della",
            "dei",
            "ma",
            "sono",
            "ho",
            "dove",
            "quando",
            "perché",
            "molto",
            "si",
            "nel",
            "nella",
            "di",
            "posso",
            "dov",
            "c",
        ],
    ),
    (
        "pl",
        &[
            "i",
            "w",
            "z",
            "na",
            "nie",
            "jest",
            "się",
            "to",
            "do",
            "że",
            "mój",
            "moja",
            "moje",
            "mojego",
            "jak",
            "co",
            "gdzie",
            "kiedy",
            "dlaczego",
            "dziękuję",
            "dzień",
            "dobry",
            "proszę",
            "czy",
            "mam",
            "od",
            "po",
            "ale",
            "też",
            "jeszcze",
            "przez",
            "dla",
            "o",
            "za",
            "mogę",
            "już",
        ],
    ),
];

/// The wording of the language `text` is written in, English when it cannot be told.
pub fn detected(text: &str) -> &'static Wording {
    let code = by_script(text).or_else(|| by_function_words(text)).unwrap_or("en");
    WORDINGS.iter().find(|w| w.code == code).unwrap_or(&WORDINGS[0])
}

/// Japanese (any kana), Chinese (Han without kana) or Russian (Cyrillic), when such letters
/// outnumber Latin ones.
fn by_script(text: &str) -> Option<&'static str> {
    match dominant_script(text)? {
        Script::Kana => Some("ja"),
        Script::Han => Some("zh"),
        Script::Cyrillic => Some("ru"),
        _ => None,
    }
}

/// Letters only some of the Latin-script languages use: a word holding one counts once more for
/// each language of its letter.
const LETTERS: [(&str, &str); 7] = [
    ("pl", "ąęłńśźżć"),
    ("de", "äöüß"),
    ("es", "ñ¿¡"),
    ("pt", "ãõç"),
    ("fr", "œèêëàùûîïç"),
    ("it", "òìè"),
    ("nl", "ĳ"),
];

/// The Latin-script language with the most function words (and telling letters) in `text`, if
/// one has at least two and more than any other.
fn by_function_words(text: &str) -> Option<&'static str> {
    // Hyphens join ("e-mail" is no "e"), apostrophes split ("l'ordine", "dov'è").
    let words: Vec<String> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .map(|w| w.trim_matches('-'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut scores: Vec<(usize, &str)> = FUNCTION_WORDS
        .iter()
        .map(|(code, list)| {
            let function = words.iter().filter(|w| list.contains(&w.as_str())).count();
            let letters = LETTERS
                .iter()
                .find(|(c, _)| c == code)
                .map_or(0, |(_, letters)| words.iter().filter(|w| w.chars().any(|ch| letters.contains(ch))).count());
            (function + letters, *code)
        })
        .collect();
    scores.sort_by_key(|s| std::cmp::Reverse(s.0));
    let (best, code) = scores[0];
    (best >= 2 && best > scores[1].0).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_customers_language_is_told_from_their_email() {
        let cases = [
            ("How do I reset my password? The link in the email has expired.", "en"),
            ("Wie kann ich mein Passwort zurücksetzen? Der Link in der E-Mail ist abgelaufen.", "de"),
            ("Comment puis-je réinitialiser mon mot de passe ? Le lien dans l'e-mail a expiré.", "fr"),
            ("¿Cómo puedo restablecer mi contraseña? El enlace del correo ha caducado.", "es"),
            ("Hoe kan ik mijn wachtwoord opnieuw instellen? De link in de e-mail is verlopen.", "nl"),
            ("Como posso redefinir a minha palavra-passe? O link no e-mail expirou.", "pt"),
            ("Come posso reimpostare la mia password? Il link nell'e-mail è scaduto.", "it"),
            ("Jak mogę zresetować hasło? Link w wiadomości e-mail wygasł.", "pl"),
            ("パスワードを再設定するにはどうすればいいですか？メールのリンクの有効期限が切れています。", "ja"),
            ("我该如何重置密码？邮件中的链接已经过期了。", "zh"),
            ("Как сбросить пароль? Ссылка в письме уже недействительна.", "ru"),
        ];
        for (question, code) in cases {
            assert_eq!(for_reply("same", question).code, code, "{question}");
        }
        // Short ones, as subjects and one-line emails are.
        let short = [
            ("How do I reset my Lift Pro (1)?\nHello, my Lift Pro desk does not respond to the buttons.", "en"),
            ("Where is my order?", "en"),
            ("Wo ist meine Bestellung?", "de"),
            ("Où est ma commande ?", "fr"),
            ("¿Dónde está mi pedido?", "es"),
            ("Waar is mijn bestelling?", "nl"),
            ("Onde está a minha encomenda?", "pt"),
            ("Dov'è il mio ordine?", "it"),
            ("Gdzie jest moje zamówienie?", "pl"),
            ("注文した商品はどこですか？", "ja"),
            ("我的订单在哪里？", "zh"),
            ("Где мой заказ?", "ru"),
        ];
        for (question, code) in short {
            assert_eq!(for_reply("same", question).code, code, "{question}");
        }
        assert_eq!(for_reply("same", "").code, "en", "nothing to tell from");
        assert_eq!(for_reply("same", "Order 1234").code, "en", "nothing telling");
    }

    #[test]
    fn a_named_language_wins_over_the_customers() {
        let german = "Wie kann ich mein Passwort zurücksetzen?";
        assert_eq!(for_reply("English", german).code, "en");
        for name in ["French", "french", "Français", "fr", " FR "] {
            assert_eq!(for_reply(name, german).code, "fr", "{name}");
        }
        assert_eq!(for_reply("日本語", german).code, "ja");
        assert_eq!(for_reply("Swedish", german).code, "en", "a language not written: English");
    }

    /// On the customer mail of the classifier's language-labelled corpus
    /// (crates/classifier/data/corpus: the three frozen held-out sets, the development set and
    /// the project's written mail — nine languages, subjects and bodies as customers write
    /// them), the language is told right for nearly every email. Printed per language. Only
    /// support mail is told: it is what gets a reply, and the other mail's label is the
    /// mailbox's language, not always its text's (a Polish shop's bounce is Postfix's English).
    #[test]
    fn the_language_of_the_classifiers_labelled_mail_is_told() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../classifier/data/corpus");
        let mut by_lang: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
        let mut wrong = Vec::new();
        for set in ["heldout.jsonl", "heldout-v3.jsonl", "heldout-v4.jsonl", "dev.jsonl", "written.jsonl"] {
            let text = std::fs::read_to_string(dir.join(set)).expect("corpus");
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let mail: serde_json::Value = serde_json::from_str(line).expect("json");
                if mail["label"] != "support" {
                    continue;
                }
                let lang = mail["lang"].as_str().expect("lang").to_owned();
                let question =
                    format!("{}\n{}", mail["subject"].as_str().unwrap_or(""), mail["body"].as_str().unwrap_or(""));
                let told = detected(&question).code;
                let entry = by_lang.entry(lang.clone()).or_default();
                entry.1 += 1;
                if told == lang {
                    entry.0 += 1;
                } else {
                    wrong.push(format!("{lang} told {told}: {}", mail["subject"]));
                }
            }
        }
        let (right, all) = by_lang.values().fold((0, 0), |(r, a), (x, y)| (r + x, a + y));
        for (lang, (r, a)) in &by_lang {
            eprintln!("{lang}: {r}/{a}");
        }
        eprintln!("all: {right}/{all}; wrong: {wrong:#?}");
        assert!(all > 800, "{all}");
        assert!(right as f64 >= 0.97 * all as f64, "{right}/{all}");
    }
}
