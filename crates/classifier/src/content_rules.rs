//! Content rules: automation that announces itself in the text, in the nine languages the
//! classifier is trained on (en, de, fr, es, nl, pt, it, pl, ja).
//!
//! The header rules ([`crate::rules`]) catch machines that say what they are. Forwarders,
//! ticket systems and some mail servers strip those headers, so three things are also
//! recognised from the text, before any model is asked:
//! - **auto-replies**: the subject starts with a mail client's or server's auto-reply prefix
//!   ("Automatic reply:", "Automatische Antwort:", "Réponse automatique :", "自動返信" …);
//! - **bounces**: the subject starts with a delivery-report prefix ("Undeliverable:",
//!   "Unzustellbar:", "Non remis :", "配信不能" …) — machine-made phrases a person does not
//!   open a subject with;
//! - **phishing look-alikes**: the sender's own text asks the reader for credentials or a
//!   payment (second person: "verify your account", "aktualisieren Sie Ihre Zahlungsdaten"),
//!   with a deadline or threat ("within 24 hours", "sofort", "suspendu") *and* a link or a
//!   "click". All three are required: a customer who cannot log in writes about *their*
//!   account in the first person and rarely with a link.
//!
//! Only the start of the subject counts, so a customer forwarding a bounce or an auto-reply
//! ("Fwd: Undeliverable: …", "WG: Automatische Antwort") is not matched; the phishing rule
//! reads only the sender's own text ([`mail_mime::quoting::own_text`]), so a customer quoting
//! a phishing mail to ask whether it is real is still judged by the model.

/// Subject prefixes of auto-replies and out-of-office notices, lower-case.
const AUTO_REPLY_PREFIXES: &[&str] = &[
    // en
    "automatic reply:",
    "auto reply:",
    "auto-reply:",
    "autoreply:",
    "auto response:",
    "autoresponse:",
    "out of office:",
    "out of office reply",
    "out of office autoreply",
    "out of the office:",
    // de
    "automatische antwort",
    "autom. antwort",
    "abwesenheitsnotiz",
    "abwesend:",
    // fr
    "réponse automatique",
    "reponse automatique",
    "absence du bureau",
    "message d'absence",
    "absent(e) du bureau",
    // es
    "respuesta automática",
    "respuesta automatica",
    "fuera de la oficina:",
    "ausente:",
    // nl
    "automatisch antwoord",
    "afwezigheidsbericht",
    "afwezig:",
    // pt
    "resposta automática",
    "resposta automatica",
    "fora do escritório:",
    "ausência:",
    // it
    "risposta automatica",
    "fuori ufficio:",
    "assente:",
    // pl
    "automatyczna odpowiedź",
    "odpowiedź automatyczna",
    "autoodpowiedź",
    "poza biurem:",
    "nieobecność:",
    // ja
    "自動返信",
    "自動応答",
    "不在通知",
    "不在のお知らせ",
];

/// Subject prefixes of delivery reports (bounces), lower-case.
const BOUNCE_PREFIXES: &[&str] = &[
    // en
    "undeliverable:",
    "undelivered mail returned to sender",
    "undeliverable mail",
    "delivery status notification (failure)",
    "delivery status notification (delay)",
    "mail delivery failed",
    "mail delivery failure",
    "returned mail:",
    "failure notice",
    "delivery failure:",
    // de
    "unzustellbar:",
    "nicht zustellbar:",
    "unzustellbare nachricht",
    "benachrichtigung zum übermittlungsstatus",
    // fr
    "non remis :",
    "non remis:",
    "non distribuable :",
    "non distribuable:",
    "échec de la remise",
    "notification d'état de remise",
    // es
    "no se puede entregar:",
    "no entregado:",
    "notificación de estado de entrega",
    // nl
    "onbestelbaar:",
    "kan niet worden bezorgd:",
    "onbestelbaar bericht",
    // pt
    "não é possível entregar:",
    "não entregue:",
    "notificação de status de entrega",
    // it
    "impossibile recapitare:",
    "non recapitabile:",
    "notifica stato recapito",
    // pl
    "niedostarczalne:",
    "niedostarczona wiadomość",
    "nie można dostarczyć:",
    // ja
    "配信不能",
    "配信エラー",
    "配送不能",
];

/// Second-person requests for credentials or money, lower-case.
const CREDENTIAL_OR_PAYMENT: &[&str] = &[
    // en
    "verify your account",
    "verify your identity",
    "verify your email account",
    "verify your mailbox",
    "confirm your account",
    "confirm your identity",
    "confirm your password",
    "enter your password",
    "re-enter your password",
    "validate your account",
    "update your payment",
    "update your billing",
    "update your card",
    "update your bank",
    "pay the customs fee",
    "pay the outstanding",
    "pay a small fee",
    // de
    "bestätigen sie ihr konto",
    "verifizieren sie ihr konto",
    "bestätigen sie ihre identität",
    "verifizieren sie ihre identität",
    "geben sie ihr passwort",
    "aktualisieren sie ihre zahlungs",
    "aktualisieren sie ihre bank",
    "zahlungsdaten aktualisieren",
    "zahlungsinformationen aktualisieren",
    "bankdaten aktualisieren",
    "zollgebühr",
    // fr
    "vérifier votre compte",
    "vérifiez votre compte",
    "confirmer votre compte",
    "confirmez votre compte",
    "confirmez votre identité",
    "confirmer votre identité",
    "saisissez votre mot de passe",
    "mettre à jour vos informations de paiement",
    "mettez à jour vos informations de paiement",
    "mettre à jour vos coordonnées bancaires",
    "mettez à jour vos coordonnées bancaires",
    "frais de douane",
    // es
    "verifique su cuenta",
    "verificar su cuenta",
    "verifica tu cuenta",
    "confirme su identidad",
    "confirma tu identidad",
    "introduzca su contraseña",
    "actualice sus datos de pago",
    "actualiza tus datos de pago",
    "actualice sus datos bancarios",
    "tasas de aduana",
    // nl
    "verifieer uw account",
    "verifieer je account",
    "bevestig uw account",
    "bevestig uw identiteit",
    "bevestig je identiteit",
    "voer uw wachtwoord in",
    "werk uw betaalgegevens bij",
    "uw betaalgegevens bijwerken",
    "uw bankgegevens bijwerken",
    "invoerrechten",
    // pt
    "verifique sua conta",
    "verifique a sua conta",
    "confirme sua identidade",
    "confirme a sua identidade",
    "insira sua senha",
    "introduza a sua palavra-passe",
    "atualize seus dados de pagamento",
    "atualize os seus dados de pagamento",
    "atualize seus dados bancários",
    "taxa alfandegária",
    // it
    "verifica il tuo account",
    "verificare il tuo account",
    "conferma la tua identità",
    "confermare la tua identità",
    "inserisci la tua password",
    "aggiorna i tuoi dati di pagamento",
    "aggiornare i dati di pagamento",
    "aggiorna i dati di pagamento",
    "aggiorna i tuoi dati bancari",
    "spese doganali",
    // pl
    "zweryfikuj swoje konto",
    "zweryfikuj konto",
    "potwierdź swoje konto",
    "potwierdź swoją tożsamość",
    "potwierdź tożsamość",
    "wprowadź swoje hasło",
    "podaj swoje hasło",
    "zaktualizuj dane płatności",
    "zaktualizuj swoje dane płatnicze",
    "zaktualizuj dane karty",
    "opłatę celną",
    "dopłatę",
    // ja: imperative forms only ("…してください"), because a customer writes about their
    // own 本人確認 or locked account too.
    "アカウントを確認してください",
    "本人確認を行ってください",
    "本人確認をしてください",
    "本人確認を完了してください",
    "パスワードを入力してください",
    "お支払い情報を更新してください",
    "カード情報を更新してください",
    "関税をお支払いください",
];

/// Deadlines and threats, lower-case.
const URGENCY: &[&str] = &[
    // en
    "within 24 hours",
    "within 48 hours",
    "within 12 hours",
    "immediately",
    "urgent",
    "suspended",
    "suspension",
    "will be deleted",
    "will be closed",
    "will be locked",
    "final notice",
    "last warning",
    // de
    "innerhalb von 24 stunden",
    "innerhalb von 48 stunden",
    "sofort",
    "umgehend",
    "dringend",
    "gesperrt",
    "gelöscht",
    "letzte mahnung",
    // fr
    "dans les 24 heures",
    "sous 24 heures",
    "sous 24h",
    "immédiatement",
    "urgent",
    "suspendu",
    "supprimé",
    "bloqué",
    "dernier avertissement",
    // es
    "en 24 horas",
    "en las próximas 24 horas",
    "inmediatamente",
    "urgente",
    "suspendida",
    "bloqueada",
    "eliminada",
    // nl
    "binnen 24 uur",
    "binnen 48 uur",
    "onmiddellijk",
    "dringend",
    "geblokkeerd",
    "opgeschort",
    "verwijderd",
    // pt
    "em 24 horas",
    "nas próximas 24 horas",
    "imediatamente",
    "urgente",
    "suspensa",
    "bloqueada",
    // it
    "entro 24 ore",
    "entro 48 ore",
    "immediatamente",
    "urgente",
    "sospeso",
    "bloccato",
    "sospensione",
    // pl
    "w ciągu 24 godzin",
    "w ciągu 48 godzin",
    "natychmiast",
    "pilne",
    "zablokowane",
    "zawieszone",
    "zablokowanie",
    // ja
    "24時間以内",
    "48時間以内",
    "至急",
    "直ちに",
    "ただちに",
    "停止",
    "ロック",
    "凍結",
];

/// A link or an instruction to click, lower-case.
const LINK: &[&str] = &[
    "http://",
    "https://",
    "www.",
    "click",
    "klicken sie",
    "cliquez",
    "cliquer",
    "haga clic",
    "pulse aquí",
    "haz clic",
    "klik op",
    "klik hier",
    "clique aqui",
    "clique no",
    "clicca",
    "kliknij",
    "クリック",
    "リンク",
];

/// What the content rules found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentSignal {
    /// An auto-reply subject prefix.
    AutoReply(&'static str),
    /// A delivery-report subject prefix.
    Bounce(&'static str),
    /// A credential or payment request with urgency and a link.
    Phishing {
        /// The request phrase that matched.
        request: &'static str,
        /// The urgency phrase that matched.
        urgency: &'static str,
    },
}

impl ContentSignal {
    /// A short reason for logs and the dashboard.
    pub fn reason(&self) -> String {
        match self {
            Self::AutoReply(p) => format!("auto-reply subject ({p:?})"),
            Self::Bounce(p) => format!("delivery-report subject ({p:?})"),
            Self::Phishing { request, urgency } => {
                format!("phishing look-alike (asks to {request:?}, {urgency:?}, with a link)")
            }
        }
    }
}

/// The first content rule that fires for this subject and body.
pub fn signal(subject: &str, body: &str) -> Option<ContentSignal> {
    let subject = subject.trim_start().to_lowercase();
    if let Some(p) = AUTO_REPLY_PREFIXES.iter().find(|p| subject.starts_with(*p)) {
        return Some(ContentSignal::AutoReply(p));
    }
    if let Some(p) = BOUNCE_PREFIXES.iter().find(|p| subject.starts_with(*p)) {
        return Some(ContentSignal::Bounce(p));
    }
    let own = mail_mime::quoting::own_text(body, 8_000).to_lowercase();
    let text = format!("{subject}\n{own}");
    let request = CREDENTIAL_OR_PAYMENT.iter().find(|p| text.contains(*p))?;
    let urgency = URGENCY.iter().find(|p| text.contains(*p))?;
    LINK.iter().any(|p| text.contains(p)).then_some(ContentSignal::Phishing { request, urgency })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_reply_and_bounce_prefixes_in_nine_languages() {
        for subject in [
            "Automatic reply: your order",
            "Automatische Antwort: Ihre Anfrage",
            "Réponse automatique : absent",
            "Respuesta automática: RE: pedido",
            "Automatisch antwoord: vraag",
            "Resposta automática: encomenda",
            "Risposta automatica: ordine",
            "Automatyczna odpowiedź: zamówienie",
            "自動返信: ご注文について",
        ] {
            assert!(matches!(signal(subject, "…"), Some(ContentSignal::AutoReply(_))), "{subject}");
        }
        for subject in [
            "Undeliverable: order 5521",
            "Unzustellbar: Rechnung",
            "Non remis : commande",
            "No se puede entregar: pedido",
            "Onbestelbaar: bestelling",
            "Não é possível entregar: pedido",
            "Impossibile recapitare: ordine",
            "Niedostarczalne: zamówienie",
            "配信不能のお知らせ",
        ] {
            assert!(matches!(signal(subject, "…"), Some(ContentSignal::Bounce(_))), "{subject}");
        }
    }

    #[test]
    fn a_forwarded_bounce_or_auto_reply_is_not_matched() {
        for subject in
            ["Fwd: Undeliverable: order 5521", "WG: Automatische Antwort", "RE: Réponse automatique", "TR: Non remis"]
        {
            assert_eq!(signal(subject, "I got this back, where do I send my return?"), None, "{subject}");
        }
    }

    #[test]
    fn phishing_needs_a_request_urgency_and_a_link() {
        let phish =
            "Dear customer, verify your account within 24 hours or it will be closed: https://secure-login.example";
        assert!(matches!(signal("Security alert", phish), Some(ContentSignal::Phishing { .. })));
        let de = "Ihr Konto wurde gesperrt. Bitte bestätigen Sie Ihr Konto, klicken Sie dazu auf den Link.";
        assert!(matches!(signal("Sicherheitswarnung", de), Some(ContentSignal::Phishing { .. })));
        let pl = "Twoja przesyłka czeka. Prosimy o dopłatę 1,99 zł w ciągu 24 godzin: kliknij tutaj.";
        assert!(matches!(signal("Przesyłka", pl), Some(ContentSignal::Phishing { .. })));
        let ja = "お客様のアカウントは停止されました。24時間以内にこちらをクリックして本人確認を行ってください。";
        assert!(matches!(signal("重要なお知らせ", ja), Some(ContentSignal::Phishing { .. })));
        // A customer who cannot log in: first person, no link.
        let customer = "URGENT: I can't log in since this morning and the reset link expired immediately. Please help.";
        assert_eq!(signal("Locked out", customer), None);
        // A customer quoting a phishing mail to ask whether it is real.
        let quoted = "Is this really from you?\n\n> Verify your account within 24 hours: https://evil.example";
        assert_eq!(signal("Is this you?", quoted), None);
    }
}
