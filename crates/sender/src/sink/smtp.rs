//! SMTP delivery with lettre: implicit TLS or mandatory STARTTLS (plain only when configured,
//! for a local relay), optional AUTH, and an extra trusted CA for a private relay. SMTP has no
//! drafts, so drafts go to the Maildir outbox's `.Drafts` folder for a human to pick up; and an
//! SMTP relay keeps nothing we can query, so [`Sink::find`] answers [`Lookup::Unknown`] for sent
//! replies.

use std::time::Duration;

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use secrecy::ExposeSecret as _;

use super::{DraftCopy, Kind, Lookup, MaildirSink, OutgoingReply, Sink, SinkError};
use crate::settings::{SmtpSecurity, SmtpSettings};

/// An SMTP relay (and a Maildir for drafts).
pub struct SmtpSink {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    drafts: MaildirSink,
    endpoint: String,
}

impl std::fmt::Debug for SmtpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSink").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl SmtpSink {
    /// A sink for the relay in `settings`; drafts go to `drafts`.
    pub fn new(settings: &SmtpSettings, drafts: MaildirSink) -> Result<Self, SinkError> {
        Ok(Self { transport: transport(settings)?, drafts, endpoint: endpoint(settings) })
    }
}

/// Connects to the relay in `settings`, says EHLO, negotiates TLS and logs in as a delivery
/// would, then quits without sending (`mailroom doctor`).
pub async fn check(settings: &SmtpSettings) -> Result<String, SinkError> {
    let endpoint = endpoint(settings);
    match transport(settings)?.test_connection().await? {
        true => Ok(format!("{endpoint} accepted EHLO, {:?} and the login", settings.security)),
        false => Err(SinkError::Config(format!("{endpoint} did not answer NOOP after the login"))),
    }
}

fn endpoint(settings: &SmtpSettings) -> String {
    format!("{}:{}", settings.host, settings.port)
}

/// The transport for the relay in `settings`.
fn transport(settings: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, SinkError> {
    let tls = match settings.security {
        SmtpSecurity::None => Tls::None,
        SmtpSecurity::Starttls => Tls::Required(tls_parameters(settings)?),
        SmtpSecurity::Tls => Tls::Wrapper(tls_parameters(settings)?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
        .port(settings.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(settings.timeout_secs.max(1))));
    if !settings.username.is_empty() {
        builder = builder
            .credentials(Credentials::new(settings.username.clone(), settings.password.expose_secret().to_owned()));
    }
    Ok(builder.build())
}

fn tls_parameters(settings: &SmtpSettings) -> Result<TlsParameters, SinkError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if !settings.ca_file.is_empty() {
        let pem = std::fs::read(&settings.ca_file)
            .map_err(|e| SinkError::Config(format!("cannot read outbox.smtp.ca_file {}: {e}", settings.ca_file)))?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            SinkError::Config(format!("outbox.smtp.ca_file {} is not a PEM certificate: {e}", settings.ca_file))
        })?;
        builder = builder.add_root_certificate(cert);
    }
    builder.build_rustls().map_err(|e| SinkError::Config(format!("SMTP TLS setup: {e}")))
}

impl Sink for SmtpSink {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn deliver(&self, reply: &OutgoingReply, kind: Kind) -> Result<String, SinkError> {
        if kind == Kind::Draft {
            return self.drafts.deliver(reply, kind).await;
        }
        let from = reply.from.parse().map_err(|e| SinkError::Envelope(format!("sender {:?}: {e}", reply.from)))?;
        let to = reply.to.parse().map_err(|e| SinkError::Envelope(format!("recipient {:?}: {e}", reply.to)))?;
        let envelope = Envelope::new(Some(from), vec![to]).map_err(|e| SinkError::Envelope(e.to_string()))?;
        let response = self.transport.send_raw(&envelope, &reply.raw).await?;
        // The relay's answer ("2.0.0 Ok: queued as 4F3A…") names its queue id, the closest thing
        // SMTP has to a provider message id.
        let text = response.message().collect::<Vec<_>>().join(" ");
        Ok(if text.is_empty() { reply.message_id.clone() } else { text })
    }

    async fn find(&self, reply: &OutgoingReply, kind: Kind) -> Result<Lookup, SinkError> {
        match kind {
            Kind::Draft => self.drafts.find(reply, kind).await,
            Kind::Send => Ok(Lookup::Unknown),
        }
    }

    /// Drafts are in the Maildir outbox, since SMTP has none.
    async fn draft(&self, reply_message_id: &str, provider_id: Option<&str>) -> Result<DraftCopy, SinkError> {
        self.drafts.draft(reply_message_id, provider_id).await
    }
}
