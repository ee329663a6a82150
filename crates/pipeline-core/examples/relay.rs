//! A minimal worker on the consumer runtime: consumes `emails.to_classify` and publishes each
//! email to `emails.to_respond`, after an optional artificial delay. The runtime's process-level
//! tests (SIGTERM drain, broker-closed connections) drive it as a real process.
//!
//! `cargo run -p pipeline-core --example relay -- --delay-ms 100` (settings as every binary).

use std::sync::Arc;
use std::time::Duration;

use pipeline_core::messages::{Classification, EmailToClassify, EmailToRespond};
use pipeline_core::topology::EMAILS_TO_CLASSIFY;
use pipeline_core::{DeliveryMeta, Handler, HandlerError, Outgoing, Settings};

struct Relay {
    delay: Duration,
}

impl Handler for Relay {
    type Input = EmailToClassify;

    fn publishes(&self) -> &'static [pipeline_core::topology::Route] {
        // Stands in for the classifier.
        pipeline_core::consumer::roles::CLASSIFIER.publishes
    }

    async fn handle(&self, email: EmailToClassify, _meta: &DeliveryMeta) -> Result<Vec<Outgoing>, HandlerError> {
        tokio::time::sleep(self.delay).await;
        let verdict = Classification {
            is_support_inquiry: true,
            category: "relay".into(),
            confidence: 1.0,
            llm_provider: "relay".into(),
            needs_review: false,
        };
        let out = EmailToRespond::new(&email, verdict);
        Ok(vec![Outgoing::message(&out).map_err(|e| HandlerError::permanent("EncodeError", e))?])
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut delay_ms = 0;
    while let Some(arg) = args.next() {
        if arg == "--delay-ms" {
            delay_ms = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    let settings = Settings::load(None)?;
    pipeline_core::telemetry::init_tracing(&settings.telemetry);
    let handler = Arc::new(Relay { delay: Duration::from_millis(delay_ms) });
    pipeline_core::serve_worker("relay", &EMAILS_TO_CLASSIFY, handler, &settings, pipeline_core::shutdown::signal())
        .await?;
    Ok(())
}
