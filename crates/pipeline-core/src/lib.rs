//! `pipeline-core`: what every Mailroom process shares — the message schemas, the broker
//! topology, the confirming publisher, the consumer runtime with its retry ladder and dead-letter
//! hand-over, settings loading, and telemetry (logs, metrics, health endpoint).

pub mod amqp;
pub mod backoff;
pub mod binary;
pub mod consumer;
pub mod content;
pub mod dead_letter;
pub mod error;
pub mod http;
pub mod mailbox_overlay;
pub mod messages;
pub mod producer;
pub mod publisher;
pub mod redis_settings;
pub mod relay_bench;
pub mod settings;
pub mod settings_check;
pub mod shutdown;
pub mod telemetry;
pub mod topology;
pub mod worker_env;

pub use consumer::{DeliveryMeta, Disposition, Handler, Processor, Worker, serve_worker, serve_worker_with};
pub use error::{Classify, Fate, HandlerError};
pub use producer::{Producer, ProducerError};
pub use publisher::{Outgoing, PublishError, Publisher};
pub use settings::Settings;
pub use telemetry::Telemetry;
pub use topology::Topology;
