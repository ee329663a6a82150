//! Publishing with publisher confirms and `mandatory`: a publish succeeds only when the broker
//! has confirmed it, and a nack or an unroutable (returned) message is an error, never a silent
//! drop. Properties follow docs/ARCHITECTURE.md ("Messages").

use std::sync::Arc;

use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};

use crate::messages::PipelineMessage;
use crate::telemetry::{RouteLabels, Telemetry};
use crate::topology::Route;

/// AMQP header carrying Mailroom's own retry count (RabbitMQ 4 ignores client-set `x-death`).
pub const RETRY_COUNT_HEADER: &str = "x-mailroom-retry-count";

/// A publish that did not get confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The channel or connection failed.
    #[error("broker error while publishing to {exchange}/{routing_key}: {source}")]
    Amqp {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The client error.
        source: lapin::Error,
    },
    /// The broker refused to take responsibility for the message.
    #[error("broker nacked the publish to {exchange}/{routing_key}")]
    Nacked {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
    /// No queue is bound for the routing key.
    #[error("unroutable publish to {exchange}/{routing_key}: {reply_text}")]
    Unroutable {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
        /// The broker's reason (`NO_ROUTE`).
        reply_text: String,
    },
    /// The body could not be serialised.
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A message ready to publish: route, body and the properties that vary per message.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Where it goes.
    pub route: Route,
    /// JSON body.
    pub body: Vec<u8>,
    /// AMQP `message_id` (the body's `message_id`).
    pub message_id: String,
    /// AMQP priority, for `emails.to_classify`.
    pub priority: Option<u8>,
    /// AMQP `correlation_id`; the consumer runtime fills it from the input when `None`.
    pub correlation_id: Option<String>,
    /// Extra headers.
    pub headers: FieldTable,
}

impl Outgoing {
    /// Serialises a pipeline message for its queue's route.
    pub fn message<M: PipelineMessage>(message: &M) -> Result<Self, serde_json::Error> {
        Ok(Self {
            route: M::ROUTE,
            body: serde_json::to_vec(message)?,
            message_id: message.message_id().to_owned(),
            priority: message.priority(),
            correlation_id: None,
            headers: FieldTable::default(),
        })
    }

    /// Sets the correlation id (the id of the email's first message).
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// The AMQP properties of docs/ARCHITECTURE.md ("Messages").
    pub fn properties(&self) -> BasicProperties {
        let correlation = self.correlation_id.as_deref().unwrap_or(&self.message_id);
        let mut props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(ShortString::from(self.message_id.as_str()))
            .with_correlation_id(ShortString::from(correlation))
            .with_timestamp(u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default())
            .with_app_id("mailroom".into());
        if let Some(p) = self.priority {
            props = props.with_priority(p);
        }
        if !self.headers.inner().is_empty() {
            props = props.with_headers(self.headers.clone());
        }
        props
    }
}

/// Reads an integer header whatever integer type the sender used.
pub fn int_header(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    match headers?.inner().get(name)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        _ => None,
    }
}

/// A confirm-mode channel. Cheap to clone; concurrent publishes are confirmed independently.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    telemetry: Option<Arc<Telemetry>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("channel", &self.channel.id()).finish()
    }
}

impl Publisher {
    /// Opens a channel on `connection` and puts it in confirm mode.
    pub async fn open(connection: &Connection, telemetry: Option<Arc<Telemetry>>) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(Self { channel, telemetry })
    }

    /// The underlying channel.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes a pipeline message to its route and waits for the confirm.
    pub async fn publish<M: PipelineMessage>(&self, message: &M) -> Result<(), PublishError> {
        self.send(&Outgoing::message(message)?).await
    }

    /// Publishes and waits for the confirm.
    pub async fn send(&self, out: &Outgoing) -> Result<(), PublishError> {
        self.send_raw(out.route.exchange, out.route.routing_key, &out.body, out.properties()).await
    }

    /// Publishes raw bytes with explicit properties and waits for the confirm.
    pub async fn send_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let result = self.confirm(exchange, routing_key, body, properties).await;
        if let Some(m) = self.telemetry.as_ref().map(|t| &t.metrics) {
            let labels = RouteLabels { exchange: exchange.to_owned(), routing_key: routing_key.to_owned() };
            match &result {
                Ok(()) => m.published.get_or_create(&labels).inc(),
                Err(_) => m.publish_failures.get_or_create(&labels).inc(),
            };
        }
        result
    }

    async fn confirm(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let amqp =
            |source| PublishError::Amqp { exchange: exchange.to_owned(), routing_key: routing_key.to_owned(), source };
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let confirm = self
            .channel
            .basic_publish(exchange.into(), routing_key.into(), options, body, properties)
            .await
            .map_err(amqp)?;
        match confirm.await.map_err(amqp)? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(PublishError::Unroutable {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
                reply_text: returned.reply_text.to_string(),
            }),
            Confirmation::Nack(_) | Confirmation::NotRequested => {
                Err(PublishError::Nacked { exchange: exchange.to_owned(), routing_key: routing_key.to_owned() })
            }
        }
    }
}
