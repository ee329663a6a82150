//! The one list of Mailroom's binaries and what each uses on the broker: the queue it consumes
//! (if any) and the routes it publishes to. `mailroom up` starts them, `mailroom doctor --role`
//! checks a broker user against them, the benchmark and the tests take their names from here,
//! and each stage's [`Handler`](super::Handler) declares its routes by pointing here.

use std::collections::BTreeSet;

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use crate::topology::{self, QueueSpec, RETRY_EXCHANGE, Route};

/// One binary of the pipeline.
#[derive(Debug, PartialEq, Eq)]
pub struct Binary {
    /// The binary's (and its broker role's) name.
    pub name: &'static str,
    /// The work queue it consumes; `None` for the producers (poller, upload API).
    pub consumes: Option<&'static QueueSpec>,
    /// Where it publishes its results (besides its own retries and dead letters).
    pub publishes: &'static [Route],
}

impl Binary {
    /// What it uses on the broker.
    pub fn used_topology(&self) -> UsedTopology {
        match self.consumes {
            Some(queue) => UsedTopology::consumer(queue, self.publishes),
            None => UsedTopology::producer(self.publishes),
        }
    }
}

/// Reads mailboxes, publishes new emails to be classified.
pub const POLLER: Binary = Binary { name: "poller", consumes: None, publishes: &[topology::CLASSIFY] };
/// Accepts document uploads, publishes them to be ingested.
pub const UPLOAD_API: Binary = Binary { name: "upload-api", consumes: None, publishes: &[topology::INGEST] };
/// `emails.to_classify` → `respond`.
pub const CLASSIFIER: Binary =
    Binary { name: "classifier", consumes: Some(&topology::EMAILS_TO_CLASSIFY), publishes: &[topology::RESPOND] };
/// `emails.to_respond` → `send`.
pub const RAG_GENERATOR: Binary =
    Binary { name: "rag-generator", consumes: Some(&topology::EMAILS_TO_RESPOND), publishes: &[topology::SEND] };
/// `emails.to_send`, publishes nothing.
pub const SENDER: Binary = Binary { name: "sender", consumes: Some(&topology::EMAILS_TO_SEND), publishes: &[] };
/// `documents.to_ingest`, publishes nothing.
pub const DOC_INGESTER: Binary =
    Binary { name: "doc-ingester", consumes: Some(&topology::DOCUMENTS_TO_INGEST), publishes: &[] };

/// Every binary, in the order `mailroom up` starts them: consumers before the producers that
/// feed them, the poller last.
pub const BINARIES: [&Binary; 6] = [&UPLOAD_API, &DOC_INGESTER, &CLASSIFIER, &RAG_GENERATOR, &SENDER, &POLLER];

/// The stages one email passes through, in order.
pub const MAIL_STAGES: [&Binary; 4] = [&POLLER, &CLASSIFIER, &RAG_GENERATOR, &SENDER];

/// The binary named `name`.
pub fn binary(name: &str) -> Option<&'static Binary> {
    BINARIES.into_iter().find(|b| b.name == name)
}

/// The names of [`BINARIES`].
pub fn binary_names() -> impl Iterator<Item = &'static str> {
    BINARIES.into_iter().map(|b| b.name)
}

/// The part of the topology one process uses: the queues it consumes and the exchanges it
/// publishes to. A process that may not declare checks that these exist, and only these:
/// RabbitMQ 4.2.6 and later check permissions on passive declares too (4.2.6 and 4.3.0 demand
/// configure, later releases any permission on the resource), and a role user has read on its
/// own queue and write on its exchanges, nothing on the rest.
///
/// Not checked: the retry delay queues behind `retry_exchange` and the queues behind the other
/// exchanges, on which the role has no permission. Every publish is mandatory and confirmed, so
/// a missing one still shows up, as a returned publish that the runtime retries or requeues.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsedTopology {
    /// Exchanges published to.
    pub exchanges: BTreeSet<&'static str>,
    /// Queues consumed.
    pub queues: BTreeSet<&'static str>,
}

impl UsedTopology {
    /// What a consumer of `queue` uses: the queue, `retry_exchange` (its retry ladder), the
    /// exchange its failures are dead-lettered through, and the exchanges of `publishes` (the
    /// routes its handler sends results to).
    pub fn consumer(queue: &'static QueueSpec, publishes: &[Route]) -> Self {
        let mut used = Self::producer(publishes);
        used.queues.insert(queue.name);
        used.exchanges.insert(RETRY_EXCHANGE);
        used.exchanges.insert(queue.failure_route().exchange);
        used
    }

    /// What a producer publishing to `routes` uses: their exchanges.
    pub fn producer(routes: &[Route]) -> Self {
        Self { exchanges: routes.iter().map(|r| r.exchange).collect(), queues: BTreeSet::new() }
    }

    /// Checks, without creating anything, that each exchange and queue exists (passive
    /// declares). Fails with the broker's `NOT_FOUND` (or, on a broker that wants more
    /// permission than the role has, `ACCESS_REFUSED`) for the first one that does not.
    pub async fn check_exists(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
        for exchange in &self.exchanges {
            channel.exchange_declare((*exchange).into(), ExchangeKind::Direct, passive, FieldTable::default()).await?;
        }
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        for queue in &self.queues {
            channel.queue_declare((*queue).into(), passive, FieldTable::default()).await?;
        }
        Ok(())
    }
}

/// What the binary named `worker` uses on the broker (`mailroom doctor --role` checks a broker
/// user's permissions against it); `None` for a name that is no binary.
pub fn used_by(worker: &str) -> Option<UsedTopology> {
    binary(worker).map(Binary::used_topology)
}

impl UsedTopology {
    /// Everything `workers` use together (one broker user shared by several binaries).
    pub fn union<'a>(workers: impl IntoIterator<Item = &'a str>) -> Self {
        let mut all = Self { exchanges: BTreeSet::new(), queues: BTreeSet::new() };
        for used in workers.into_iter().filter_map(used_by) {
            all.exchanges.extend(used.exchanges);
            all.queues.extend(used.queues);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_uses_its_queue_its_retry_and_dead_letter_exchanges_and_its_next_stage() {
        let classifier = CLASSIFIER.used_topology();
        assert_eq!(classifier.queues, BTreeSet::from(["emails.to_classify"]));
        assert_eq!(
            classifier.exchanges,
            BTreeSet::from(["dead_letter_exchange", "email_exchange", "retry_topic_exchange"])
        );

        let sender = SENDER.used_topology();
        assert_eq!(sender.queues, BTreeSet::from(["emails.to_send"]));
        assert_eq!(sender.exchanges, BTreeSet::from(["dead_letter_exchange", "retry_topic_exchange"]));

        let ingester = DOC_INGESTER.used_topology();
        assert_eq!(ingester.queues, BTreeSet::from(["documents.to_ingest"]));
        assert_eq!(ingester.exchanges, BTreeSet::from(["dead_letter_exchange", "retry_topic_exchange"]));

        assert_eq!(RAG_GENERATOR.publishes, [topology::SEND]);
        let poller = POLLER.used_topology();
        assert_eq!(poller.exchanges, BTreeSet::from(["email_exchange"]));
        assert!(poller.queues.is_empty(), "a producer consumes nothing");
    }

    #[test]
    fn every_binary_is_listed_once_and_found_by_name() {
        let names: BTreeSet<_> = binary_names().collect();
        assert_eq!(names.len(), BINARIES.len());
        assert!(MAIL_STAGES.iter().all(|s| binary(s.name) == Some(*s)));
        assert_eq!(BINARIES.last().map(|b| b.name), Some("poller"), "the poller starts last");
        assert_eq!(used_by("nobody"), None);
    }
}
