//! The support topic of an email (`billing`, `order_status`, …), in the nine languages the
//! classifier is trained on (en, de, fr, es, nl, pt, it, pl, ja).
//!
//! The trained [`crate::model`] decides *whether* an email is a support inquiry; this names
//! *what about*, because `rag.human_categories` (default `["billing"]`) sends whole topics to a
//! person. It is a keyword table, not a model: each topic lists words (or word beginnings) per
//! language; a keyword in the subject counts twice, one in the sender's own text once
//! ([`mail_mime::quoting::own_text`]: a thread's quoted history is not the new question), each
//! keyword once. The topic with the most evidence wins; ties go to the earlier topic in
//! [`TOPICS`], which lists `billing` first because a billing question answered from the
//! documents is the costlier mistake. No evidence is a `product_question`.
//!
//! A keyword matches at the start of a word (so `bill` is not found in `billion`), except in
//! Japanese, which has no spaces and is matched anywhere.

use embedders::script::is_han_or_kana;

/// The support topics, in tie-breaking order.
pub const TOPICS: [&str; 7] =
    ["billing", "returns_refunds", "account_access", "warranty", "technical_issue", "order_status", "product_question"];

/// Keywords of each topic in [`TOPICS`] order, lower-case, one line per language.
#[rustfmt::skip]
const KEYWORDS: [&[&str]; 7] = [
    // billing
    &[
        "invoice", "billing", "bill ", "billed", "charged", "charge ", "overcharg", "payment", "paid ", "vat ", "receipt", "reminder", "credit card", "direct debit", // en
        "rechnung", "abbuchung", "abgebucht", "zahlung", "bezahlt", "mahnung", "lastschrift", "mwst", "mehrwertsteuer", "quittung", "doppelt belastet", // de
        "facture", "factur", "paiement", "payé", "prélèvement", "prélevé", "débité", "tva", "relance", // fr
        "factura", "cobro", "cobrad", "cargo", "pago", "pagad", "iva ", "recibo", "recordatorio de pago", // es
        "factuur", "facturen", "betaling", "betaald", "afschrijving", "afgeschreven", "incasso", "btw", "aanmaning", "betalingsherinnering", // nl
        "fatura", "cobrança", "cobraram", "pagamento", "nif", // pt
        "fattura", "fatturazione", "addebit", "pagat", "ricevuta", "sollecito", // it
        "faktur", "płatnoś", "zapłac", "opłac", "obciąż", "pobrano", "pobrał", "rachun", "przypomnienie o płatności", "monit ", "monitu", // pl
        "請求", "領収書", "支払", "引き落とし", "課金", "料金", "インボイス", "二重", // ja
    ],
    // returns_refunds
    &[
        "return", "refund", "send back", "sent back", "send it back", "exchange", "rma", // en
        "rücksend", "zurücksend", "zurückgeschickt", "zurückschicken", "retour", "rückerstatt", "erstattung", "umtausch", "widerruf", // de
        "retour", "retourn", "rembours", "renvoy", "échange", // fr
        "devoluci", "devolver", "devuelto", "reembols", "cambiar", // es
        "retour", "terugstur", "terugbetal", "teruggestuurd", "ruilen", "geld terug", // nl
        "devoluç", "devolvi", "reembols", "troca", "estorno", // pt
        "reso", "restitu", "rimbors", "sostituzione", // it
        "zwrot", "zwróc", "odesł", "wymian", "odstąpien", // pl
        "返品", "返金", "交換", "返送", // ja
    ],
    // account_access
    &[
        "log in", "login", "log-in", "sign in", "password", "locked out", "locked", "2fa", "two-factor", "username", "reset link", "account", // en
        "anmeld", "einlogg", "passwort", "kennwort", "gesperrt", "konto", "zugang", "zugangsdaten", // de
        "connexion", "connecter", "mot de passe", "compte", "identifiant", "bloqué", // fr
        "iniciar sesión", "contraseña", "cuenta", "acceder", "bloquead", // es
        "inloggen", "ingelogd", "wachtwoord", "geblokkeerd", "aanmelden", // nl
        "senha", "palavra-passe", "conta ", "entrar na", "bloquead", // pt
        "accesso", "accedere", "bloccat", "credenziali", // it
        "logowa", "zalogowa", "hasło", "hasła", "konto", "konta", "zablokowan", "dostęp", // pl
        "ログイン", "パスワード", "アカウント", "ロック", "認証", // ja
    ],
    // warranty
    &[
        "warranty", "guarantee", // en
        "garantie", "gewährleistung", // de
        "garantie", // fr
        "garantía", // es
        "garantie", // nl
        "garantia", // pt
        "garanzia", // it
        "gwarancj", "reklamacj", // pl
        "保証", // ja
    ],
    // technical_issue
    &[
        "error", "not working", "doesnt work", "doesn't work", "does not work", "broken", "crash", "bug", "stopped working", "won't", "beep", "outage", "is down", "offline", "fault", // en
        "fehler", "funktioniert nicht", "defekt", "kaputt", "geht nicht", "störung", "absturz", "stürzt", // de
        "erreur", "ne fonctionne", "marche pas", "marche plus", "panne", "cassé", "plante", "hors service", // fr
        "error", "no funciona", "roto", "falla", "avería", "caído", "se cuelga", // es
        "fout", "werkt niet", "kapot", "storing", "defect", "doet het niet", // nl
        "erro", "não funciona", "avaria", "falha", "fora do ar", "em baixo", // pt
        "errore", "non funziona", "guasto", "rotto", "non va", "offline", // it
        "błąd", "nie działa", "awari", "zepsu", "usterk", "nie włącza", // pl
        "エラー", "動かない", "故障", "不具合", "表示されない", "起動しない", "繋がらない", "つながらない", // ja
    ],
    // order_status
    &[
        "order", "delivery", "deliver", "shipping", "shipment", "shipped", "tracking", "parcel", "package", "courier", "dispatch", "customs", "import duties", // en
        "bestellung", "bestellt", "lieferung", "geliefert", "versand", "sendung", "paket", "zustell", "zoll", // de
        "commande", "livraison", "livré", "colis", "expédi", "suivi", "douane", // fr
        "pedido", "envío", "entrega", "paquete", "seguimiento", "aduana", // es
        "bestelling", "besteld", "levering", "geleverd", "bezorg", "pakket", "verzending", "douane", "invoerrechten", // nl
        "encomenda", "pedido", "entrega", "envio", "pacote", "rastreio", "rastreamento", "alfândega", // pt
        "ordine", "ordinato", "consegna", "spedizion", "spedito", "pacco", "corriere", "dogana", "dogan", // it
        "zamówien", "zamówił", "dostaw", "przesył", "paczk", "kurier", "wysył", "cło ", "cła", // pl
        "注文", "配送", "発送", "配達", "荷物", "追跡", "届", "関税", // ja
    ],
    // product_question: the default; these only add evidence for it
    &[
        "compatible", "dimensions", "in stock", "available", "how many", "weight limit", // en
        "kompatibel", "maße", "lieferbar", "verfügbar", // de
        "compatible", "dimensions", "disponible", // fr
        "compatible", "medidas", "disponible", // es
        "compatibel", "afmetingen", "beschikbaar", "op voorraad", // nl
        "compatível", "medidas", "disponível", // pt
        "compatibile", "dimensioni", "disponibile", // it
        "kompatybiln", "wymiary", "dostępn", // pl
        "対応", "サイズ", "在庫", // ja
    ],
];

/// The topic of a support email: the one with the most keyword evidence, or
/// `product_question`.
pub fn topic(subject: &str, body: &str) -> &'static str {
    let subject = format!(" {} ", subject.to_lowercase());
    let body = format!(" {} ", mail_mime::quoting::own_text(body, 8_000).to_lowercase());
    let mut best = (0u32, TOPICS.len() - 1);
    for (i, words) in KEYWORDS.iter().enumerate() {
        let mut score = 0;
        // A word several languages share (`pedido`, `garantie`) is on each of their lines but
        // is one piece of evidence.
        for (_, word) in words.iter().enumerate().filter(|(k, w)| !words[..*k].contains(w)) {
            score += 2 * u32::from(contains_word(&subject, word)) + u32::from(contains_word(&body, word));
        }
        if score > best.0 {
            best = (score, i);
        }
    }
    TOPICS[best.1]
}

/// Whether `word` occurs in `text` at the start of a word; anywhere for Japanese keywords.
fn contains_word(text: &str, word: &str) -> bool {
    if !word.is_ascii() && word.chars().any(is_han_or_kana) {
        return text.contains(word);
    }
    text.match_indices(word).any(|(at, _)| !text[..at].chars().next_back().is_some_and(char::is_alphanumeric))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billing_is_named_in_nine_languages() {
        for (subject, body) in [
            ("Wrong amount", "You charged my credit card twice for the same invoice."),
            ("Frage", "Ich wurde doppelt belastet, bitte korrigieren Sie die Rechnung."),
            ("Question", "Vous m'avez débité deux fois, merci de corriger la facture."),
            ("Consulta", "Me han hecho un cobro doble, ¿pueden corregir la factura?"),
            ("Vraag", "Er is twee keer afgeschreven voor dezelfde factuur."),
            ("Dúvida", "Fui cobrado duas vezes, podem corrigir a fatura?"),
            ("Domanda", "Mi avete fatto un doppio addebito sulla stessa fattura."),
            ("Pytanie", "Obciążono mnie dwa razy za tę samą fakturę."),
            ("お問い合わせ", "同じ請求書で二重に引き落としされています。"),
        ] {
            assert_eq!(topic(subject, body), "billing", "{body}");
        }
    }

    #[test]
    fn other_topics_in_several_languages() {
        assert_eq!(topic("Return", "I'd like to send the chair back and get a refund."), "returns_refunds");
        assert_eq!(topic("Rücksendung", "Wie kann ich den Tisch zurückschicken?"), "returns_refunds");
        assert_eq!(topic("Wachtwoord", "Ik kan niet inloggen, mijn wachtwoord werkt niet meer."), "account_access");
        assert_eq!(topic("Logowanie", "Nie mogę się zalogować, konto jest zablokowane."), "account_access");
        assert_eq!(topic("Garanzia", "La sedia è rotta dopo un anno, è in garanzia?"), "warranty");
        assert_eq!(topic("Erro E04", "A secretária mostra erro E04 e não funciona."), "technical_issue");
        assert_eq!(topic("Pedido", "¿Dónde está mi pedido? El seguimiento no cambia."), "order_status");
        assert_eq!(topic("配送について", "注文した机がまだ届きません。"), "order_status");
        assert_eq!(topic("Question", "Is the frame compatible with a corner top?"), "product_question");
        assert_eq!(topic("Hello", "Quick question about your desks."), "product_question");
    }

    #[test]
    fn shipping_questions_that_mention_money_are_about_the_order() {
        // The bundled example mailbox: neither is a billing question a person must answer.
        let customs =
            "for international orders, will I pay customs duties or import VAT when the desk arrives in Sweden?";
        assert_eq!(topic("Customs duties for Sweden?", customs), "order_status");
        let weight = "what is the maximum weight capacity of the Lift Pro desk? I have three monitors and a heavy PC.";
        assert_eq!(topic("Maximum weight capacity?", weight), "product_question");
    }

    #[test]
    fn a_word_listed_for_several_languages_counts_once() {
        // `pedido` is on the Spanish and the Portuguese line; counted twice it would outweigh
        // the one billing word and win a tie that goes to billing.
        assert_eq!(topic("Consulta", "Una pregunta sobre el cobro del pedido."), "billing");
    }

    #[test]
    fn words_match_at_word_starts_and_quoted_history_is_ignored() {
        assert_eq!(topic("Hi", "We reached a billion users."), "product_question");
        let body = "Which colours are available?\n\nOn Mon, Ana wrote:\n> Your invoice is attached.";
        assert_eq!(topic("Re: colours", body), "product_question");
    }
}
