//! Reading `dead_letter_queue`: every message read is held unacknowledged until it is acked or
//! the reader closes, and decoded with [`pipeline_core::dead_letter::decode`].

use std::collections::BTreeMap;

use lapin::message::Delivery;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use pipeline_core::Settings;
use pipeline_core::dead_letter::{DeadLetterInfo, decode};
use pipeline_core::topology::DEAD_LETTER_QUEUE;
use serde::Serialize;

/// A dead-letter command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The broker could not be reached.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        /// Redacted AMQP URL.
        url: String,
        /// Why.
        source: pipeline_core::amqp::ConnectError,
    },
    /// The dead-letter queue does not exist.
    #[error("queue {queue} does not exist in vhost {vhost:?} (run `mailroom topology apply`): {source}")]
    NoQueue {
        /// Queue name.
        queue: &'static str,
        /// Vhost.
        vhost: String,
        /// The broker's answer.
        source: lapin::Error,
    },
    /// A channel operation failed.
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
}

/// A dead letter read and not yet settled.
#[derive(Debug)]
pub struct Held {
    /// What it is.
    pub info: DeadLetterInfo,
    /// The delivery, to ack.
    pub delivery: Delivery,
}

/// Reads `dead_letter_queue` on one channel, holding every message unacked until it is acked
/// or the reader is closed.
pub struct DlqReader {
    connection: Connection,
    channel: Channel,
    budget: u32,
    queued: u32,
}

impl DlqReader {
    /// Connects (the connection is named `mailroom-dlq-<purpose>`, visible in the management
    /// UI) and notes how many messages the queue holds now: no more than that are read.
    pub async fn open(settings: &Settings, purpose: &str) -> Result<Self, DlqError> {
        let connection = pipeline_core::amqp::connect(&settings.amqp, &format!("mailroom-dlq-{purpose}"))
            .await
            .map_err(|source| DlqError::Connect { url: settings.amqp.redacted_url(), source })?;
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        let queue =
            channel.queue_declare(DEAD_LETTER_QUEUE.name.into(), passive, FieldTable::default()).await.map_err(
                |source| DlqError::NoQueue { queue: DEAD_LETTER_QUEUE.name, vhost: settings.amqp.vhost(), source },
            )?;
        let queued = queue.message_count();
        Ok(Self { connection, channel, budget: queued, queued })
    }

    /// Messages ready in the queue when the reader opened.
    pub fn queued(&self) -> u32 {
        self.queued
    }

    /// The reader's connection (replay publishes on a channel of its own on it).
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// The next dead letter, or `None` when the messages present at the start are all read.
    pub async fn next(&mut self) -> Result<Option<Held>, DlqError> {
        if self.budget == 0 {
            return Ok(None);
        }
        let got = self.channel.basic_get(DEAD_LETTER_QUEUE.name.into(), BasicGetOptions { no_ack: false }).await?;
        let Some(got) = got else {
            self.budget = 0;
            return Ok(None);
        };
        self.budget -= 1;
        let delivery = got.delivery;
        let info = decode(&delivery.properties, &delivery.data, delivery.redelivered);
        Ok(Some(Held { info, delivery }))
    }

    /// Reads everything (up to `limit`) without settling anything.
    pub async fn read_all(&mut self, limit: Option<usize>) -> Result<Vec<Held>, DlqError> {
        let mut out = Vec::new();
        while limit.is_none_or(|l| out.len() < l) {
            match self.next().await? {
                Some(held) => out.push(held),
                None => break,
            }
        }
        Ok(out)
    }

    /// Returns every unacked message to the queue (closing the channel requeues them in their
    /// original order, in one step) and disconnects.
    pub async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// Dead letters grouped by original queue and error type, for `mailroom status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetterSummary {
    /// Messages ready in the queue.
    pub total: u64,
    /// How many were read to count them (at most the limit).
    pub examined: u64,
    /// `(original queue, error type) → count`, sorted.
    pub by_error_type: Vec<DeadLetterCount>,
}

/// One group of [`DeadLetterSummary`].
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetterCount {
    /// Queue the messages failed in (`?` when unknown).
    pub original_queue: String,
    /// Error type.
    pub error_type: String,
    /// How many.
    pub count: u64,
}

/// Reads up to `limit` dead letters, counts them by queue and error type, and returns them all.
pub async fn summarize(settings: &Settings, limit: usize) -> Result<DeadLetterSummary, DlqError> {
    let mut reader = DlqReader::open(settings, "status").await?;
    let read = reader.read_all(Some(limit)).await;
    let total = u64::from(reader.queued());
    reader.close().await;
    let held = read?;
    let mut groups: BTreeMap<(String, String), u64> = BTreeMap::new();
    for h in &held {
        let queue = h.info.original_queue.clone().unwrap_or_else(|| "?".to_owned());
        *groups.entry((queue, h.info.error_type.clone())).or_default() += 1;
    }
    Ok(DeadLetterSummary {
        total,
        examined: held.len() as u64,
        by_error_type: groups
            .into_iter()
            .map(|((original_queue, error_type), count)| DeadLetterCount { original_queue, error_type, count })
            .collect(),
    })
}
