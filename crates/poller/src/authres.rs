//! Whether an email's sender was authenticated, from the `Authentication-Results` header
//! (RFC 8601) that the server receiving the mailbox's mail adds: the poller records the verdict
//! in the ledger ([`verdict`], stored by [`crate::Ledger::prepare`]), and the sender drafts
//! instead of sends the reply to an unauthenticated sender (`mailbox.unauthenticated`).
//!
//! # Which header counts
//!
//! Anyone can write an `Authentication-Results` header into a message, naming any server, so
//! only headers whose authserv-id (the name they start with) is one the mailbox trusts
//! (`mailbox.authserv_ids`; Gmail's `mx.google.com` for the `gmail` source by default) are read,
//! and of those only the **topmost**. A receiving server adds its header on top of the message
//! it received (RFC 8601 §5), above every header the sender wrote; everything below it was
//! already in the message when that server got it. A header with the trusted id further down
//! is either an older one of the same server (a message that came in, went out and came back)
//! or a forgery planted by the sender, and merging it in would let a sender add a `dkim=pass`
//! the real header does not have. So the topmost trusted header decides alone, even when it is
//! unreadable (then the sender is unauthenticated: falling back to a lower one would hand the
//! decision to whoever wrote it), and untrusted headers above it (a later internal filter) are
//! ignored.
//!
//! This is sound only for servers that add their header to every message they deliver to the
//! mailbox: a message that reached the mailbox without passing through one (a local delivery,
//! another route) would let a forged header be the topmost trusted one. RFC 8601 §5 also asks
//! the border server to remove or rename headers carrying its own id before adding its own;
//! Gmail and the usual milters (OpenDMARC, rspamd) do.
//!
//! # The verdict
//!
//! - `pass` when DMARC passed for the From domain (the result's `header.from`, when given, must
//!   be that domain: a message with two From fields must not pass on the other one);
//! - `fail` when DMARC failed;
//! - otherwise (no DMARC result, or `none`, `temperror`, …) `pass` when SPF or DKIM passed *for
//!   the From domain*: SPF's `smtp.mailfrom` (or `smtp.helo`) and DKIM's `header.d` (or
//!   `header.i`) must be that domain, a subdomain of it, or a parent of it — DMARC's relaxed
//!   alignment, approximated without the Public Suffix List (a parent that is a public suffix
//!   can never pass SPF or DKIM for anyone). Without this an attacker's own domain passing SPF
//!   would authenticate any From the attacker writes; a pass that names no domain counts for
//!   nothing;
//! - `fail` in every other case, with the reason: `dmarc=fail (mx.example)`, `spf=fail and
//!   dkim=fail (mx.example)`, `no Authentication-Results from mx.example`, `no trusted
//!   authserv-id is configured (mailbox.authserv_ids)`.
//!
//! # The parser
//!
//! Hand-written: the grammar needed is small (an authserv-id, an optional version, then
//! `method[/version]=result` with `reason=` and `ptype.property=value` properties, separated by
//! `;`, with RFC 5322 comments and quoted strings anywhere), while the maintained Rust crate
//! that knows the header, `mail-auth` (0.15), writes it but has no public parser for a received
//! one, brings a DNS resolver, crypto back ends and a second major version of `mail-parser`, and
//! declares no minimum Rust version. Values are read as written: the format has no encoded
//! words ([`mail_mime::ParsedEmail::authentication_results`] does not decode them either).
//! Tests include the examples of RFC 8601 Appendix B.

use mailroom_db::pipeline::SenderAuth;

/// One `Authentication-Results` field, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthResults {
    /// The server that wrote it, as written (compare case-insensitively).
    pub authserv_id: String,
    /// Its results in header order; empty for `none` (nothing was checked).
    pub results: Vec<MethodResult>,
}

impl AuthResults {
    /// The results of `method` (lower-case: `spf`, `dkim`, `dmarc`, …).
    pub fn of<'a>(&'a self, method: &'a str) -> impl Iterator<Item = &'a MethodResult> + 'a {
        self.results.iter().filter(move |r| r.method == method)
    }
}

/// One `method=result` of a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// The method, lower-case, without its version (`dkim` for `dkim/1`).
    pub method: String,
    /// The result, lower-case (`pass`, `fail`, `softfail`, `none`, …).
    pub result: String,
    /// The `reason=` given, if any.
    pub reason: Option<String>,
    /// The properties in header order: name lower-case (`smtp.mailfrom`, `header.d`), value as
    /// written.
    pub properties: Vec<(String, String)>,
}

impl MethodResult {
    /// The first value of property `name` (lower-case).
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A comment or quoted string runs to the end of the field.
    #[error("a comment or quoted string is not closed")]
    Unterminated,
    /// The field does not start with an authserv-id.
    #[error("no authserv-id")]
    NoAuthservId,
    /// A version other than 1 (RFC 8601 §2.2: such a field is not to be interpreted).
    #[error("version {0} is not the version 1 this parser reads")]
    UnknownVersion(String),
    /// Something other than a version between the authserv-id and the first `;`.
    #[error("unexpected {0:?} after the authserv-id")]
    AfterAuthservId(String),
    /// A result that is not `method=result`.
    #[error("{0:?} is not method=result")]
    NotAResult(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Semicolon,
    Equals,
}

/// A token, and whether whitespace or a comment came before it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Lexed {
    token: Token,
    spaced: bool,
}

impl Lexed {
    fn text(&self) -> &str {
        match &self.token {
            Token::Word(w) | Token::Quoted(w) => w,
            Token::Semicolon => ";",
            Token::Equals => "=",
        }
    }

    fn word(&self) -> Option<&str> {
        match &self.token {
            Token::Word(w) => Some(w),
            _ => None,
        }
    }
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Skips the rest of a comment whose `(` was read; comments nest, `\` quotes a character.
fn skip_comment(chars: &mut Chars<'_>) -> Result<(), ParseError> {
    let mut depth = 1usize;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    Err(ParseError::Unterminated)
}

/// The rest of a quoted string whose `"` was read, unquoted.
fn quoted(chars: &mut Chars<'_>) -> Result<String, ParseError> {
    let mut text = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => text.extend(chars.next()),
            '"' => return Ok(text),
            c => text.push(c),
        }
    }
    Err(ParseError::Unterminated)
}

fn is_word_end(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | '"' | ';' | '=')
}

/// Words, quoted strings, `;` and `=`, comments dropped.
fn lex(value: &str) -> Result<Vec<Lexed>, ParseError> {
    let mut out = Vec::new();
    let mut chars = value.chars().peekable();
    let mut spaced = false;
    while let Some(c) = chars.next() {
        let token = match c {
            c if c.is_whitespace() => {
                spaced = true;
                continue;
            }
            '(' => {
                skip_comment(&mut chars)?;
                spaced = true;
                continue;
            }
            '"' => Token::Quoted(quoted(&mut chars)?),
            ';' => Token::Semicolon,
            '=' => Token::Equals,
            c => {
                let mut word = String::from(c);
                while let Some(&next) = chars.peek().filter(|n| !is_word_end(**n)) {
                    word.push(next);
                    chars.next();
                }
                Token::Word(word)
            }
        };
        out.push(Lexed { token, spaced });
        spaced = false;
    }
    Ok(out)
}

/// The authserv-id a field starts with, read on its own so that a field broken further on
/// still says whose it claims to be.
pub fn authserv_id(value: &str) -> Option<String> {
    let mut chars = value.chars().peekable();
    loop {
        match *chars.peek()? {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                skip_comment(&mut chars).ok()?;
            }
            _ => break,
        }
    }
    if chars.peek() == Some(&'"') {
        chars.next();
        return quoted(&mut chars).ok().filter(|id| !id.trim().is_empty());
    }
    let id: String = chars.take_while(|c| !is_word_end(*c)).collect();
    (!id.is_empty()).then_some(id)
}

/// Parses one field's value (what follows `Authentication-Results:`).
pub fn parse(value: &str) -> Result<AuthResults, ParseError> {
    let tokens = lex(value)?;
    let mut segments = tokens.split(|t| t.token == Token::Semicolon);
    let head = segments.next().unwrap_or_default();
    let (authserv_id, rest) = match head.split_first() {
        Some((first @ Lexed { token: Token::Word(_) | Token::Quoted(_), .. }, rest)) => (first.text().to_owned(), rest),
        _ => return Err(ParseError::NoAuthservId),
    };
    match rest {
        [] => {}
        [version] if version.word().is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) => {
            if version.text().trim_start_matches('0') != "1" {
                return Err(ParseError::UnknownVersion(version.text().to_owned()));
            }
        }
        [first, ..] => return Err(ParseError::AfterAuthservId(first.text().to_owned())),
    }
    // A trailing `;` (or two in a row) is tolerated: an empty result says nothing.
    let segments: Vec<&[Lexed]> = segments.filter(|s| !s.is_empty()).collect();
    if let [[only]] = segments.as_slice()
        && only.word().is_some_and(|w| w.eq_ignore_ascii_case("none"))
    {
        return Ok(AuthResults { authserv_id, results: Vec::new() });
    }
    let results = segments.into_iter().map(resinfo).collect::<Result<_, _>>()?;
    Ok(AuthResults { authserv_id, results })
}

/// A name starting at `tokens[i]`, with the `/` of a version or the `.` of `ptype.property`
/// written apart (`dkim / 1`, `policy . expired`, comments in between) joined back; and the
/// index after it.
fn name_at(tokens: &[Lexed], mut i: usize) -> Option<(String, usize)> {
    let mut name = tokens.get(i)?.word()?.to_owned();
    i += 1;
    while let Some(next) = tokens.get(i).and_then(Lexed::word) {
        if !(name.ends_with(['/', '.']) || next.starts_with(['/', '.'])) {
            break;
        }
        name.push_str(next);
        i += 1;
    }
    Some((name, i))
}

/// One `method[/version]=result [reason=…] [ptype.property=value …]`. Anything after the
/// result that is not `name=value` is skipped.
fn resinfo(tokens: &[Lexed]) -> Result<MethodResult, ParseError> {
    let written = || {
        let text: String = tokens.iter().map(|t| format!("{}{}", if t.spaced { " " } else { "" }, t.text())).collect();
        text.trim().chars().take(80).collect::<String>()
    };
    let (method, i) = name_at(tokens, 0).ok_or_else(|| ParseError::NotAResult(written()))?;
    let method = method.split('/').next().unwrap_or_default().to_ascii_lowercase();
    let result = match (tokens.get(i).map(|t| &t.token), tokens.get(i + 1).and_then(Lexed::word)) {
        (Some(Token::Equals), Some(result)) if !method.is_empty() => result.to_ascii_lowercase(),
        _ => return Err(ParseError::NotAResult(written())),
    };
    let mut found = MethodResult { method, result, reason: None, properties: Vec::new() };
    let mut i = i + 2;
    while i < tokens.len() {
        let Some((name, after)) = name_at(tokens, i).filter(|(_, after)| {
            tokens.get(*after).is_some_and(|t| t.token == Token::Equals)
                && tokens.get(after + 1).is_some_and(|t| matches!(t.token, Token::Word(_) | Token::Quoted(_)))
        }) else {
            i += 1;
            continue;
        };
        // The value, and what is written against it without a space (`"a b"@example.com`, the
        // `=` of an unquoted base64 `header.b`).
        let mut value = tokens[after + 1].text().to_owned();
        i = after + 2;
        while let Some(next) = tokens.get(i).filter(|t| !t.spaced && t.token != Token::Semicolon) {
            value.push_str(next.text());
            i += 1;
        }
        let name = name.to_ascii_lowercase();
        if name == "reason" {
            found.reason.get_or_insert(value);
        } else {
            found.properties.push((name, value));
        }
    }
    Ok(found)
}

/// The domain of an address or domain as properties give it (`user@example.com`,
/// `@example.com`, `example.com`), lower-case.
fn domain_of(value: &str) -> String {
    let value = value.trim().trim_start_matches('<').trim_end_matches('>');
    let domain = value.rsplit_once('@').map_or(value, |(_, d)| d);
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// DMARC's relaxed alignment without the Public Suffix List: the same domain, a subdomain, or
/// a parent.
fn aligned(domain: &str, from_domain: &str) -> bool {
    !domain.is_empty()
        && !from_domain.is_empty()
        && (domain == from_domain
            || domain.ends_with(&format!(".{from_domain}"))
            || from_domain.ends_with(&format!(".{domain}")))
}

/// The identity an SPF or DKIM result vouches for.
fn identity(result: &MethodResult) -> Option<String> {
    let names: &[&str] = match result.method.as_str() {
        "spf" => &["smtp.mailfrom", "smtp.helo"],
        _ => &["header.d", "header.i"],
    };
    names.iter().filter_map(|name| result.property(name)).map(domain_of).find(|d| !d.is_empty())
}

/// What the results of `method` say, for a reason: `spf=fail`, `dkim=pass for other.example`,
/// `no dkim result`.
fn describe(results: &AuthResults, method: &str, from_domain: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for r in results.of(method) {
        let part = match (r.result.as_str(), identity(r)) {
            ("pass", Some(domain)) if !aligned(&domain, from_domain) => format!("{method}=pass for {domain}"),
            ("pass", None) => format!("{method}=pass for no stated domain"),
            (result, _) => format!("{method}={result}"),
        };
        if !parts.contains(&part) {
            parts.push(part);
        }
    }
    if parts.is_empty() { format!("no {method} result") } else { parts.join(", ") }
}

/// The verdict of one trusted header on mail From `from` (an address); see the
/// [module docs](self).
pub fn evaluate(results: &AuthResults, from: &str) -> SenderAuth {
    let by = &results.authserv_id;
    let from_domain = domain_of(from);
    let fail = |reason: String| SenderAuth::Fail { reason: format!("{reason} ({by})") };
    if results.of("dmarc").any(|r| r.result == "fail") {
        return fail("dmarc=fail".into());
    }
    if let Some(pass) = results.of("dmarc").find(|r| r.result == "pass") {
        return match pass.property("header.from").map(domain_of) {
            Some(checked) if checked != from_domain => {
                fail(format!("dmarc=pass for header.from={checked}, not the From domain {from_domain}"))
            }
            _ => SenderAuth::Pass { detail: format!("dmarc=pass ({by})") },
        };
    }
    let passed: Vec<&str> = ["spf", "dkim"]
        .into_iter()
        .filter(|method| {
            results.of(method).any(|r| r.result == "pass" && identity(r).is_some_and(|d| aligned(&d, &from_domain)))
        })
        .collect();
    if !passed.is_empty() {
        let detail = passed.iter().map(|m| format!("{m}=pass")).collect::<Vec<_>>().join(" and ");
        return SenderAuth::Pass { detail: format!("{detail} for {from_domain} ({by})") };
    }
    let dmarc: Vec<String> = results.of("dmarc").map(|r| format!("dmarc={}, ", r.result)).collect();
    let mut reason = format!(
        "{}{} and {}",
        dmarc.first().map_or("", String::as_str),
        describe(results, "spf", &from_domain),
        describe(results, "dkim", &from_domain)
    );
    if reason.contains(" for ") {
        reason.push_str(&format!(", not the From domain {from_domain}"));
    }
    fail(reason)
}

/// The verdict on an email From `from` whose `Authentication-Results` values are `fields`
/// (topmost first, as [`mail_mime::ParsedEmail::authentication_results`] has them), for a
/// mailbox that trusts the authserv-ids `trusted`; see the [module docs](self).
pub fn verdict(fields: &[String], trusted: &[String], from: &str) -> SenderAuth {
    if trusted.is_empty() {
        return SenderAuth::Fail { reason: "no trusted authserv-id is configured (mailbox.authserv_ids)".into() };
    }
    let topmost = fields.iter().find_map(|field| {
        let id = authserv_id(field)?;
        trusted.iter().any(|t| t.eq_ignore_ascii_case(&id)).then_some((id, field))
    });
    let Some((id, field)) = topmost else {
        return SenderAuth::Fail { reason: format!("no Authentication-Results from {}", trusted.join(" or ")) };
    };
    match parse(field) {
        Ok(results) => evaluate(&results, from),
        Err(e) => SenderAuth::Fail { reason: format!("unreadable Authentication-Results from {id}: {e}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(value: &str) -> AuthResults {
        parse(value).unwrap_or_else(|e| panic!("{value}: {e}"))
    }

    fn props(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    fn trusted() -> Vec<String> {
        vec!["mx.northwind.example".to_owned()]
    }

    fn fields(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    fn reason(auth: SenderAuth) -> String {
        match auth {
            SenderAuth::Fail { reason } => reason,
            pass => panic!("expected a failure, got {pass}"),
        }
    }

    #[test]
    fn rfc_8601_b2_nothing_checked() {
        let r = p("example.org 1; none");
        assert_eq!(r.authserv_id, "example.org");
        assert!(r.results.is_empty());
        assert!(p("example.org; none").results.is_empty());
    }

    #[test]
    fn rfc_8601_b3_spf() {
        let r = p("example.com; spf=pass smtp.mailfrom=example.net");
        assert_eq!(r.results.len(), 1);
        assert_eq!((r.results[0].method.as_str(), r.results[0].result.as_str()), ("spf", "pass"));
        assert_eq!(r.results[0].properties, props(&[("smtp.mailfrom", "example.net")]));
    }

    #[test]
    fn rfc_8601_b4_several_results_and_a_comment() {
        let r = p(
            "example.com;\r\n\t  auth=pass (cram-md5) smtp.auth=sender@example.net;\r\n\t  spf=pass smtp.mailfrom=example.net",
        );
        let got: Vec<(&str, &str)> = r.results.iter().map(|m| (m.method.as_str(), m.result.as_str())).collect();
        assert_eq!(got, [("auth", "pass"), ("spf", "pass")]);
        assert_eq!(r.results[0].properties, props(&[("smtp.auth", "sender@example.net")]));
        let iprev = p("example.com; iprev=pass policy.iprev=192.0.2.200");
        assert_eq!(iprev.results[0].property("policy.iprev"), Some("192.0.2.200"));
    }

    #[test]
    fn rfc_8601_b5_two_signatures() {
        let r = p("example.com;\n dkim=pass (good signature) header.d=mail-router.example.net;\n \
                   dkim=fail (bad signature) header.d=newyork.example.com");
        let dkim: Vec<(&str, Option<&str>)> =
            r.of("dkim").map(|m| (m.result.as_str(), m.property("header.d"))).collect();
        assert_eq!(dkim, [("pass", Some("mail-router.example.net")), ("fail", Some("newyork.example.com"))]);
    }

    #[test]
    fn rfc_8601_b6_reasons_in_quoted_strings() {
        let r = p("example.com; dkim=pass reason=\"good signature\" header.i=@mail-router.example.net; \
                   dkim=fail reason=\"bad signature\" header.i=@newyork.example.com");
        assert_eq!(r.results[0].reason.as_deref(), Some("good signature"));
        assert_eq!(r.results[1].reason.as_deref(), Some("bad signature"));
        assert_eq!(r.results[1].property("header.i"), Some("@newyork.example.com"));
    }

    #[test]
    fn rfc_8601_b7_comments_everywhere() {
        let r = p(
            "foo.example.net (foobar) 1 (baz);\r\n    dkim (Because I like it) / 1 (One yay) = (wait for it) fail\r\n      \
                   policy (A dot can go here) . (like that) expired\r\n      (this surprised me) = (as I wasn't expecting it) 1362471462",
        );
        assert_eq!(r.authserv_id, "foo.example.net");
        assert_eq!((r.results[0].method.as_str(), r.results[0].result.as_str()), ("dkim", "fail"));
        assert_eq!(r.results[0].properties, props(&[("policy.expired", "1362471462")]));
    }

    #[test]
    fn gmail_and_unquoted_base64_values() {
        let gmail = "mx.google.com;\r\n       dkim=pass header.i=@customer.example header.s=s1 header.b=Ab/+c9==;\r\n       \
                     spf=pass (google.com: domain of ana@customer.example designates 192.0.2.1 as permitted sender) \
                     smtp.mailfrom=ana@customer.example;\r\n       dmarc=pass (p=NONE sp=NONE dis=NONE) header.from=customer.example";
        let r = p(gmail);
        assert_eq!(r.results[0].property("header.b"), Some("Ab/+c9=="));
        assert_eq!(r.results[1].property("smtp.mailfrom"), Some("ana@customer.example"));
        assert_eq!(
            evaluate(&r, "ana@customer.example"),
            SenderAuth::Pass { detail: "dmarc=pass (mx.google.com)".into() }
        );
        // Case, quoted ids, a trailing `;`, a property quoted in part.
        let r = p("\"MX.Northwind.Example\"; SPF=Pass smtp.mailfrom=\"ana b\"@customer.example;");
        assert_eq!(r.authserv_id, "MX.Northwind.Example");
        assert_eq!((r.results[0].method.as_str(), r.results[0].result.as_str()), ("spf", "pass"));
        assert_eq!(r.results[0].property("smtp.mailfrom"), Some("ana b@customer.example"));
    }

    #[test]
    fn broken_fields_are_errors_that_still_name_their_server() {
        assert_eq!(parse("mx.example; dkim=pass (no end"), Err(ParseError::Unterminated));
        assert_eq!(authserv_id("mx.example; dkim=pass (no end").as_deref(), Some("mx.example"));
        assert_eq!(parse("mx.example 2; spf=pass"), Err(ParseError::UnknownVersion("2".into())));
        assert_eq!(parse("; spf=pass"), Err(ParseError::NoAuthservId));
        assert!(matches!(parse("mx.example; spf pass"), Err(ParseError::NotAResult(_))));
        // Outlook.com's header has no authserv-id: it names no server and cannot be trusted.
        let outlook =
            "spf=pass (sender IP is 192.0.2.1) smtp.mailfrom=customer.example; dkim=pass header.d=customer.example";
        assert!(matches!(parse(outlook), Err(ParseError::AfterAuthservId(_))));
        assert_eq!(authserv_id(" (comment) mx.example ;x").as_deref(), Some("mx.example"));
        assert_eq!(authserv_id("  "), None);
    }

    #[test]
    fn dmarc_decides_when_it_passes_or_fails() {
        let pass =
            "mx.northwind.example; spf=fail smtp.mailfrom=x@customer.example; dmarc=pass header.from=customer.example";
        assert!(verdict(&fields(&[pass]), &trusted(), "ana@customer.example").passed());
        let fail = "mx.northwind.example; spf=pass smtp.mailfrom=x@customer.example; dkim=pass header.d=customer.example; \
                    dmarc=fail (p=reject) header.from=customer.example";
        assert_eq!(
            reason(verdict(&fields(&[fail]), &trusted(), "ana@customer.example")),
            "dmarc=fail (mx.northwind.example)"
        );
        // A DMARC pass for another From (a message with two From fields) is no pass for ours.
        let other = "mx.northwind.example; dmarc=pass header.from=attacker.example";
        assert!(
            reason(verdict(&fields(&[other]), &trusted(), "ceo@bank.example"))
                .contains("not the From domain bank.example")
        );
    }

    #[test]
    fn without_dmarc_spf_or_dkim_must_pass_for_the_from_domain() {
        let v = |field: &str, from: &str| verdict(&fields(&[field]), &trusted(), from);
        assert_eq!(
            v(
                "mx.northwind.example; spf=pass smtp.mailfrom=bounce@mail.customer.example; dkim=none",
                "ana@customer.example"
            ),
            SenderAuth::Pass { detail: "spf=pass for customer.example (mx.northwind.example)".into() }
        );
        assert!(v("mx.northwind.example; dkim=pass header.i=@customer.example", "ana@customer.example").passed());
        assert!(
            v("mx.northwind.example; dmarc=none; dkim=pass header.d=customer.example", "ana@Customer.Example").passed()
        );
        assert_eq!(
            reason(v(
                "mx.northwind.example; spf=fail smtp.mailfrom=a@customer.example; dkim=fail header.d=customer.example",
                "a@customer.example"
            )),
            "spf=fail and dkim=fail (mx.northwind.example)"
        );
        assert_eq!(
            reason(v("mx.northwind.example; spf=softfail smtp.mailfrom=a@customer.example", "a@customer.example")),
            "spf=softfail and no dkim result (mx.northwind.example)"
        );
        assert_eq!(
            reason(v("mx.northwind.example; none", "a@customer.example")),
            "no spf result and no dkim result (mx.northwind.example)"
        );
        // The attacker's own domain passing says nothing about the From they wrote.
        assert_eq!(
            reason(v(
                "mx.northwind.example; dmarc=none; spf=pass smtp.mailfrom=x@attacker.example; dkim=pass header.d=attacker.example",
                "ceo@bank.example"
            )),
            "dmarc=none, spf=pass for attacker.example and dkim=pass for attacker.example, not the From domain bank.example (mx.northwind.example)"
        );
        assert!(!v("mx.northwind.example; spf=pass", "a@customer.example").passed(), "a pass for no stated domain");
        assert!(
            !v("mx.northwind.example; dkim=pass header.d=customer.example.attacker.example", "a@customer.example")
                .passed()
        );
    }

    #[test]
    fn only_the_topmost_trusted_header_counts() {
        let from = "ana@customer.example";
        // Untrusted headers are ignored wherever they are, whatever they say.
        let untrusted = fields(&["mail.attacker.example; dmarc=pass header.from=customer.example"]);
        assert_eq!(
            reason(verdict(&untrusted, &trusted(), from)),
            "no Authentication-Results from mx.northwind.example"
        );
        let below = fields(&[
            "filter.internal.example; dmarc=fail",
            "mx.northwind.example; dmarc=pass header.from=customer.example",
        ]);
        assert!(verdict(&below, &trusted(), from).passed(), "a later internal filter above it is not ours to read");
        // A header with the trusted id below the real one was in the message before our server
        // got it: the sender's own forgery. It cannot add what the real one lacks.
        let forged_below = fields(&[
            "mx.northwind.example; spf=fail smtp.mailfrom=x@attacker.example; dkim=none; dmarc=fail header.from=customer.example",
            "mail.attacker.example; spf=pass",
            "mx.northwind.example; dkim=pass header.d=customer.example; dmarc=pass header.from=customer.example",
        ]);
        assert_eq!(reason(verdict(&forged_below, &trusted(), from)), "dmarc=fail (mx.northwind.example)");
        let missing_dkim = fields(&[
            "mx.northwind.example; spf=fail smtp.mailfrom=x@customer.example",
            "mx.northwind.example; dkim=pass header.d=customer.example",
        ]);
        assert!(!verdict(&missing_dkim, &trusted(), from).passed());
        // An unreadable topmost header does not hand the decision to the one below it.
        let unreadable = fields(&[
            "mx.northwind.example; dmarc=pass (unclosed",
            "mx.northwind.example; dmarc=pass header.from=customer.example",
        ]);
        assert!(reason(verdict(&unreadable, &trusted(), from)).starts_with("unreadable Authentication-Results from"));
        // Ids compare in any case; any of several trusted ids counts.
        let upper = fields(&["MX.NORTHWIND.EXAMPLE; dmarc=pass"]);
        assert!(verdict(&upper, &["mx2.example".into(), "mx.northwind.example".into()], from).passed());
    }

    #[test]
    fn nothing_trusted_authenticates_nobody() {
        let field = fields(&["mx.northwind.example; dmarc=pass"]);
        assert_eq!(
            reason(verdict(&field, &[], "a@customer.example")),
            "no trusted authserv-id is configured (mailbox.authserv_ids)"
        );
        assert_eq!(
            reason(verdict(&[], &["a.example".into(), "b.example".into()], "x@y.example")),
            "no Authentication-Results from a.example or b.example"
        );
    }
}
