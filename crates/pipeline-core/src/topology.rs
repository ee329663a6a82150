//! The broker topology as data: the exchanges, queues, arguments and bindings of the contract in
//! docs/ARCHITECTURE.md, plus the retry delay queues. Every other part of Mailroom names queues and
//! exchanges through the constants here, so a name is spelled exactly once.
//!
//! Argument types matter to RabbitMQ's equivalence check, so numbers are declared as signed
//! 32-bit integers and names as long strings — what Python's pika sends for these
//! `queue_declare` calls — so any client written from that contract can re-declare our queues.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

/// Direct exchange routing emails between stages.
pub const EMAIL_EXCHANGE: &str = "email_exchange";
/// Direct exchange routing uploaded documents to ingestion.
pub const DOCUMENT_EXCHANGE: &str = "document_exchange";
/// Direct exchange every failed message is dead-lettered through.
pub const DEAD_LETTER_EXCHANGE: &str = "dead_letter_exchange";
/// Topic exchange feeding the retry delay queues (Mailroom's only exchange beyond the contract).
/// A topic exchange, although every binding is an exact name, because RabbitMQ authorises
/// routing keys only on topic exchanges: `deploy/rabbitmq/definitions.json` lets each worker role
/// publish only its own queue's retry keys, so no role but the sender's can route a message into
/// `emails.to_send` through a retry.
pub const RETRY_EXCHANGE: &str = "retry_topic_exchange";
/// The direct retry exchange of earlier versions, whose permissions could not be narrowed to a
/// queue. `mailroom topology apply` deletes it (its bindings into the work queues with it).
pub const LEGACY_RETRY_EXCHANGE: &str = "retry_exchange";

/// The type of one of our exchanges: `topic` for [`RETRY_EXCHANGE`], `direct` for the others.
pub fn exchange_type(name: &str) -> &'static str {
    if name == RETRY_EXCHANGE { "topic" } else { "direct" }
}

fn exchange_kind(name: &str) -> ExchangeKind {
    if exchange_type(name) == "topic" { ExchangeKind::Topic } else { ExchangeKind::Direct }
}

/// An exchange and routing key: where a message is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Route {
    /// Exchange name.
    pub exchange: &'static str,
    /// Routing key.
    pub routing_key: &'static str,
}

/// New emails, to the classifier.
pub const CLASSIFY: Route = Route { exchange: EMAIL_EXCHANGE, routing_key: "classify" };
/// Support inquiries, to the RAG generator.
pub const RESPOND: Route = Route { exchange: EMAIL_EXCHANGE, routing_key: "respond" };
/// Drafted replies, to the sender.
pub const SEND: Route = Route { exchange: EMAIL_EXCHANGE, routing_key: "send" };
/// Uploaded documents, to the ingester.
pub const INGEST: Route = Route { exchange: DOCUMENT_EXCHANGE, routing_key: "ingest" };
/// Failed emails, to the dead-letter queue.
pub const FAILED_EMAILS: Route = Route { exchange: DEAD_LETTER_EXCHANGE, routing_key: "failed_emails" };
/// Failed documents, to the dead-letter queue.
pub const FAILED_DOCUMENTS: Route = Route { exchange: DEAD_LETTER_EXCHANGE, routing_key: "failed_documents" };
/// Mail the poller cannot parse, to the dead-letter queue. It goes through `email_exchange`
/// because that is the only exchange the poller may publish to (least privilege).
pub const UNPARSEABLE_EMAILS: Route = Route { exchange: EMAIL_EXCHANGE, routing_key: "unparseable" };

/// One of the contract's queues (the work queues and the dead-letter queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSpec {
    /// Queue name.
    pub name: &'static str,
    /// `x-max-priority`, for priority queues.
    pub max_priority: Option<i32>,
    /// `x-message-ttl` in milliseconds.
    pub message_ttl_ms: Option<i32>,
    /// `x-dead-letter-exchange` / `x-dead-letter-routing-key`.
    pub dead_letter: Option<Route>,
    /// The routes bound to this queue; the first is where messages for it are published.
    pub bound_from: &'static [Route],
}

impl QueueSpec {
    /// The route producers publish to for this queue.
    pub fn route(&self) -> Route {
        self.bound_from[0]
    }

    /// The route failures of this queue's messages are dead-lettered through.
    pub fn failure_route(&self) -> Route {
        self.dead_letter.unwrap_or(FAILED_EMAILS)
    }

    /// Looks one of the contract's queues up by name.
    pub fn by_name(name: &str) -> Option<&'static QueueSpec> {
        WORK_QUEUES.iter().copied().chain([&DEAD_LETTER_QUEUE]).find(|q| q.name == name)
    }
}

/// `emails.to_classify`: new emails, priority 1–10, one hour.
pub const EMAILS_TO_CLASSIFY: QueueSpec = QueueSpec {
    name: "emails.to_classify",
    max_priority: Some(10),
    message_ttl_ms: Some(3_600_000),
    dead_letter: Some(FAILED_EMAILS),
    bound_from: &[CLASSIFY],
};
/// `emails.to_respond`: support inquiries, two hours.
pub const EMAILS_TO_RESPOND: QueueSpec = QueueSpec {
    name: "emails.to_respond",
    max_priority: None,
    message_ttl_ms: Some(7_200_000),
    dead_letter: Some(FAILED_EMAILS),
    bound_from: &[RESPOND],
};
/// `emails.to_send`: drafted replies, one hour.
pub const EMAILS_TO_SEND: QueueSpec = QueueSpec {
    name: "emails.to_send",
    max_priority: None,
    message_ttl_ms: Some(3_600_000),
    dead_letter: Some(FAILED_EMAILS),
    bound_from: &[SEND],
};
/// `documents.to_ingest`: uploaded documents, thirty minutes.
pub const DOCUMENTS_TO_INGEST: QueueSpec = QueueSpec {
    name: "documents.to_ingest",
    max_priority: None,
    message_ttl_ms: Some(1_800_000),
    dead_letter: Some(FAILED_DOCUMENTS),
    bound_from: &[INGEST],
};
/// `dead_letter_queue`: everything that failed for good; no TTL, no DLX.
pub const DEAD_LETTER_QUEUE: QueueSpec = QueueSpec {
    name: "dead_letter_queue",
    max_priority: None,
    message_ttl_ms: None,
    dead_letter: None,
    bound_from: &[FAILED_EMAILS, FAILED_DOCUMENTS, UNPARSEABLE_EMAILS],
};

/// The queues workers consume from.
pub const WORK_QUEUES: [&QueueSpec; 4] =
    [&EMAILS_TO_CLASSIFY, &EMAILS_TO_RESPOND, &EMAILS_TO_SEND, &DOCUMENTS_TO_INGEST];

/// Default retry ladder (`topology.retry_delays_ms`): six steps, 51 minutes in all, so a
/// provider outage of half an hour is ridden out without dead letters.
pub const DEFAULT_RETRY_DELAYS_MS: [u32; 6] = [1_000, 10_000, 60_000, 300_000, 900_000, 1_800_000];

/// A queue argument value, typed as pika would send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    /// A signed 32-bit integer (`I` in AMQP field tables).
    Int(i32),
    /// A long string (`S`).
    Str(String),
}

impl ArgValue {
    fn to_amqp(&self) -> AMQPValue {
        match self {
            ArgValue::Int(n) => AMQPValue::LongInt(*n),
            ArgValue::Str(s) => AMQPValue::LongString(LongString::from(s.as_str())),
        }
    }

    fn matches_json(&self, value: &serde_json::Value) -> bool {
        match self {
            ArgValue::Int(n) => value.as_i64() == Some(i64::from(*n)),
            ArgValue::Str(s) => value.as_str() == Some(s.as_str()),
        }
    }
}

impl fmt::Display for ArgValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgValue::Int(n) => write!(f, "{n}"),
            ArgValue::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A queue to declare: name and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDecl {
    /// Queue name.
    pub name: String,
    /// `x-…` arguments, sorted by name.
    pub arguments: BTreeMap<String, ArgValue>,
}

impl QueueDecl {
    fn field_table(&self) -> FieldTable {
        let mut table = FieldTable::default();
        for (key, value) in &self.arguments {
            table.insert(key.as_str().into(), value.to_amqp());
        }
        table
    }
}

/// A binding to declare.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BindingDecl {
    /// Source exchange.
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// Destination queue.
    pub queue: String,
}

/// One rung of the retry ladder for one work queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryStep {
    /// The delay queue's name (`<queue>.retry.<ms>ms`).
    pub queue: String,
    /// How long a message waits there before returning to the work queue.
    pub delay: Duration,
}

/// The whole topology: what `mailroom topology apply` declares and `verify` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Durable direct exchanges.
    pub exchanges: Vec<String>,
    /// Durable queues.
    pub queues: Vec<QueueDecl>,
    /// Bindings.
    pub bindings: Vec<BindingDecl>,
    retry_delays_ms: Vec<u32>,
}

fn retry_queue_name(queue: &str, delay_ms: u32) -> String {
    format!("{queue}.retry.{delay_ms}ms")
}

impl Topology {
    /// The contract's topology plus one delay queue per retry step and work queue.
    ///
    /// Delay queues are named after their delay, so changing the ladder adds new queues instead
    /// of re-declaring old ones with another TTL (which the broker would refuse).
    pub fn new(retry_delays_ms: &[u32]) -> Self {
        let mut queues = Vec::new();
        let mut bindings = Vec::new();
        for spec in WORK_QUEUES.iter().copied().chain([&DEAD_LETTER_QUEUE]) {
            let mut arguments = BTreeMap::new();
            if let Some(p) = spec.max_priority {
                arguments.insert("x-max-priority".to_owned(), ArgValue::Int(p));
            }
            if let Some(ttl) = spec.message_ttl_ms {
                arguments.insert("x-message-ttl".to_owned(), ArgValue::Int(ttl));
            }
            if let Some(dl) = spec.dead_letter {
                arguments.insert("x-dead-letter-exchange".to_owned(), ArgValue::Str(dl.exchange.to_owned()));
                arguments.insert("x-dead-letter-routing-key".to_owned(), ArgValue::Str(dl.routing_key.to_owned()));
            }
            queues.push(QueueDecl { name: spec.name.to_owned(), arguments });
            for route in spec.bound_from {
                bindings.push(BindingDecl {
                    exchange: route.exchange.to_owned(),
                    routing_key: route.routing_key.to_owned(),
                    queue: spec.name.to_owned(),
                });
            }
        }
        for spec in WORK_QUEUES {
            let back = spec.route();
            for &delay in retry_delays_ms {
                let name = retry_queue_name(spec.name, delay);
                let arguments = BTreeMap::from([
                    ("x-message-ttl".to_owned(), ArgValue::Int(i32::try_from(delay).unwrap_or(i32::MAX))),
                    ("x-dead-letter-exchange".to_owned(), ArgValue::Str(back.exchange.to_owned())),
                    ("x-dead-letter-routing-key".to_owned(), ArgValue::Str(back.routing_key.to_owned())),
                ]);
                bindings.push(BindingDecl {
                    exchange: RETRY_EXCHANGE.to_owned(),
                    routing_key: name.clone(),
                    queue: name.clone(),
                });
                queues.push(QueueDecl { name, arguments });
            }
        }
        let exchanges =
            [EMAIL_EXCHANGE, DOCUMENT_EXCHANGE, DEAD_LETTER_EXCHANGE, RETRY_EXCHANGE].map(str::to_owned).to_vec();
        Self { exchanges, queues, bindings, retry_delays_ms: retry_delays_ms.to_vec() }
    }

    /// The retry ladder of one work queue, first step first.
    pub fn retry_ladder(&self, queue: &QueueSpec) -> Vec<RetryStep> {
        self.retry_delays_ms
            .iter()
            .map(|&ms| RetryStep {
                queue: retry_queue_name(queue.name, ms),
                delay: Duration::from_millis(u64::from(ms)),
            })
            .collect()
    }

    /// Declares everything (idempotent: re-declaring identical entities is a no-op).
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        for exchange in &self.exchanges {
            channel
                .exchange_declare(exchange.as_str().into(), exchange_kind(exchange), durable, FieldTable::default())
                .await?;
        }
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        for queue in &self.queues {
            channel.queue_declare(queue.name.as_str().into(), durable, queue.field_table()).await?;
        }
        for b in &self.bindings {
            channel
                .queue_bind(
                    b.queue.as_str().into(),
                    b.exchange.as_str().into(),
                    b.routing_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Checks, without creating anything, that every exchange and queue exists (passive
    /// declares). For workers that run without configure permission.
    pub async fn check_exists(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let passive = ExchangeDeclareOptions { passive: true, ..Default::default() };
        for exchange in &self.exchanges {
            channel
                .exchange_declare(exchange.as_str().into(), exchange_kind(exchange), passive, FieldTable::default())
                .await?;
        }
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        for queue in &self.queues {
            channel.queue_declare(queue.name.as_str().into(), passive, FieldTable::default()).await?;
        }
        Ok(())
    }

    /// Compares a live broker's state with this topology; an empty result means no drift.
    /// Entities that are not ours (other queues in the vhost) are ignored.
    pub fn diff(&self, live: &LiveTopology) -> Vec<Drift> {
        let mut drift = Vec::new();
        for name in &self.exchanges {
            match live.exchanges.iter().find(|e| &e.name == name) {
                None => drift.push(Drift::MissingExchange(name.clone())),
                Some(e) if e.kind != exchange_type(name) || !e.durable => drift.push(Drift::ExchangeDiffers {
                    name: name.clone(),
                    found: format!("type {}, durable {}", e.kind, e.durable),
                }),
                Some(_) => {}
            }
        }
        for queue in &self.queues {
            let Some(found) = live.queues.iter().find(|q| q.name == queue.name) else {
                drift.push(Drift::MissingQueue(queue.name.clone()));
                continue;
            };
            if !found.durable {
                drift.push(Drift::QueueNotDurable(queue.name.clone()));
            }
            for (key, expected) in &queue.arguments {
                match found.arguments.get(key) {
                    Some(value) if expected.matches_json(value) => {}
                    other => drift.push(Drift::QueueArgument {
                        queue: queue.name.clone(),
                        argument: key.clone(),
                        expected: Some(expected.to_string()),
                        found: other.map(ToString::to_string),
                    }),
                }
            }
            for (key, value) in &found.arguments {
                // Newer brokers report the default queue type explicitly; that is not drift.
                let default_type = key == "x-queue-type" && value.as_str() == Some("classic");
                if !queue.arguments.contains_key(key) && !default_type {
                    drift.push(Drift::QueueArgument {
                        queue: queue.name.clone(),
                        argument: key.clone(),
                        expected: None,
                        found: Some(value.to_string()),
                    });
                }
            }
        }
        for binding in &self.bindings {
            if !live.bindings.contains(binding) {
                drift.push(Drift::MissingBinding(binding.clone()));
            }
        }
        drift
    }
}

/// An exchange as the broker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveExchange {
    /// Name.
    pub name: String,
    /// Type (`direct`, `topic`, …).
    pub kind: String,
    /// Durability.
    pub durable: bool,
}

/// A queue as the broker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveQueue {
    /// Name.
    pub name: String,
    /// Durability.
    pub durable: bool,
    /// Declared arguments.
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// What a broker vhost holds, as read from the management API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveTopology {
    /// Exchanges.
    pub exchanges: Vec<LiveExchange>,
    /// Queues.
    pub queues: Vec<LiveQueue>,
    /// Exchange-to-queue bindings.
    pub bindings: Vec<BindingDecl>,
}

/// One difference between the expected and the live topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// An exchange does not exist.
    MissingExchange(String),
    /// An exchange exists with another type or durability.
    ExchangeDiffers {
        /// Exchange name.
        name: String,
        /// What the broker has.
        found: String,
    },
    /// A queue does not exist.
    MissingQueue(String),
    /// A queue is not durable.
    QueueNotDurable(String),
    /// A queue argument is missing, different or unexpected.
    QueueArgument {
        /// Queue name.
        queue: String,
        /// Argument name.
        argument: String,
        /// What the topology declares (`None`: not declared by us).
        expected: Option<String>,
        /// What the broker has (`None`: absent).
        found: Option<String>,
    },
    /// A binding does not exist.
    MissingBinding(BindingDecl),
}

impl fmt::Display for Drift {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Drift::MissingExchange(name) => write!(f, "- exchange {name}: missing"),
            Drift::ExchangeDiffers { name, found } => {
                write!(f, "~ exchange {name}: expected type direct, durable true; found {found}")
            }
            Drift::MissingQueue(name) => write!(f, "- queue {name}: missing"),
            Drift::QueueNotDurable(name) => write!(f, "~ queue {name}: not durable"),
            Drift::QueueArgument { queue, argument, expected, found } => {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".to_owned());
                write!(f, "~ queue {queue}: argument {argument} expected {} found {}", show(expected), show(found))
            }
            Drift::MissingBinding(b) => {
                write!(f, "- binding {} --[{}]--> {}: missing", b.exchange, b.routing_key, b.queue)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live_from(topology: &Topology) -> LiveTopology {
        LiveTopology {
            exchanges: topology
                .exchanges
                .iter()
                .map(|n| LiveExchange { name: n.clone(), kind: exchange_type(n).into(), durable: true })
                .collect(),
            queues: topology
                .queues
                .iter()
                .map(|q| LiveQueue {
                    name: q.name.clone(),
                    durable: true,
                    arguments: q
                        .arguments
                        .iter()
                        .map(|(k, v)| {
                            let json = match v {
                                ArgValue::Int(n) => serde_json::json!(n),
                                ArgValue::Str(s) => serde_json::json!(s),
                            };
                            (k.clone(), json)
                        })
                        .collect(),
                })
                .collect(),
            bindings: topology.bindings.clone(),
        }
    }

    #[test]
    fn seed_queues_have_the_seed_arguments() {
        let t = Topology::new(&DEFAULT_RETRY_DELAYS_MS);
        let classify = t.queues.iter().find(|q| q.name == "emails.to_classify").expect("declared");
        assert_eq!(classify.arguments["x-max-priority"], ArgValue::Int(10));
        assert_eq!(classify.arguments["x-message-ttl"], ArgValue::Int(3_600_000));
        assert_eq!(classify.arguments["x-dead-letter-exchange"], ArgValue::Str("dead_letter_exchange".into()));
        assert_eq!(classify.arguments["x-dead-letter-routing-key"], ArgValue::Str("failed_emails".into()));
        let docs = t.queues.iter().find(|q| q.name == "documents.to_ingest").expect("declared");
        assert_eq!(docs.arguments["x-dead-letter-routing-key"], ArgValue::Str("failed_documents".into()));
        let dlq = t.queues.iter().find(|q| q.name == "dead_letter_queue").expect("declared");
        assert!(dlq.arguments.is_empty());
        // 5 seed queues + one delay queue per step for each of the 4 work queues.
        assert_eq!(t.queues.len(), 5 + 4 * DEFAULT_RETRY_DELAYS_MS.len());
        let retry = t.retry_ladder(&EMAILS_TO_RESPOND);
        assert_eq!(retry[0].queue, "emails.to_respond.retry.1000ms");
        let step = t.queues.iter().find(|q| q.name == retry[0].queue).expect("declared");
        assert_eq!(step.arguments["x-dead-letter-routing-key"], ArgValue::Str("respond".into()));
    }

    #[test]
    fn diff_is_empty_for_a_matching_broker_and_names_each_drift() {
        let t = Topology::new(&[500]);
        let mut live = live_from(&t);
        assert!(t.diff(&live).is_empty());
        live.queues.retain(|q| q.name != "emails.to_send");
        let q = live.queues.iter_mut().find(|q| q.name == "emails.to_classify").expect("present");
        q.arguments.insert("x-message-ttl".into(), serde_json::json!(60_000));
        q.arguments.insert("x-queue-type".into(), serde_json::json!("classic"));
        live.bindings.retain(|b| b.routing_key != "failed_documents");
        let drift: Vec<String> = t.diff(&live).iter().map(ToString::to_string).collect();
        assert!(drift.contains(&"- queue emails.to_send: missing".to_owned()), "{drift:?}");
        assert!(
            drift.contains(
                &"~ queue emails.to_classify: argument x-message-ttl expected 3600000 found 60000".to_owned()
            ),
            "{drift:?}"
        );
        assert!(drift.iter().any(|d| d.contains("failed_documents")), "{drift:?}");
        assert_eq!(drift.len(), 3, "{drift:?}");
    }
}
