//! A small client for the RabbitMQ management HTTP API: what `mailroom` needs to verify the
//! topology, show queue depths and read dead letters, and what the tests need to create a
//! throw-away vhost each and to close a worker's connection from the broker side.

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A management API call failed.
#[derive(Debug, thiserror::Error)]
pub enum MgmtError {
    /// The API could not be reached.
    #[error("cannot reach the RabbitMQ management API at {url}: {source} (is the rabbitmq_management plugin enabled?)")]
    Unreachable {
        /// Base URL.
        url: String,
        /// The HTTP error.
        source: reqwest::Error,
    },
    /// The API answered with an error status.
    #[error("management API {method} {path} answered {status}: {body}")]
    Status {
        /// HTTP method.
        method: &'static str,
        /// Path.
        path: String,
        /// Status code.
        status: u16,
        /// Response body.
        body: String,
    },
    /// The answer did not decode.
    #[error("unexpected answer from the management API: {0}")]
    Decode(reqwest::Error),
}

/// A queue as the API reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueInfo {
    /// Name.
    pub name: String,
    /// Durability.
    #[serde(default)]
    pub durable: bool,
    /// Declared arguments.
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
    /// Messages ready plus unacknowledged.
    #[serde(default)]
    pub messages: u64,
    /// Messages ready for delivery.
    #[serde(default)]
    pub messages_ready: u64,
    /// Messages delivered and not yet acknowledged.
    #[serde(default)]
    pub messages_unacknowledged: u64,
    /// Consumers.
    #[serde(default)]
    pub consumers: u64,
    /// Rates and counters, when the broker has collected them.
    #[serde(default)]
    pub message_stats: Option<serde_json::Value>,
}

impl QueueInfo {
    /// Messages published into the queue per second, as last sampled by the broker; `None`
    /// until the broker has collected statistics for the queue (new or idle queues).
    pub fn publish_rate(&self) -> Option<f64> {
        self.rate("publish_details")
    }

    /// Messages handed to consumers or fetched with `basic.get` per second (acked or not).
    pub fn deliver_rate(&self) -> Option<f64> {
        self.rate("deliver_get_details")
    }

    /// Acknowledgements per second.
    pub fn ack_rate(&self) -> Option<f64> {
        self.rate("ack_details")
    }

    fn rate(&self, details: &str) -> Option<f64> {
        self.message_stats.as_ref()?.get(details)?.get("rate")?.as_f64()
    }
}

/// An exchange as the API reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct ExchangeInfo {
    /// Name (empty for the default exchange).
    pub name: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Durability.
    #[serde(default)]
    pub durable: bool,
}

/// A binding as the API reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct BindingInfo {
    /// Source exchange.
    pub source: String,
    /// Destination queue or exchange.
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: String,
    /// Routing key.
    pub routing_key: String,
}

/// A client connection as the API reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectionInfo {
    /// Broker-side connection name (used to close it).
    pub name: String,
    /// Vhost.
    #[serde(default)]
    pub vhost: String,
    /// Properties the client sent, including `connection_name`.
    #[serde(default)]
    pub client_properties: serde_json::Value,
}

impl ConnectionInfo {
    /// The name the client gave the connection, if any.
    pub fn client_name(&self) -> Option<&str> {
        self.client_properties.get("connection_name").and_then(|v| v.as_str())
    }
}

/// Management API client.
#[derive(Clone)]
pub struct Client {
    base: String,
    username: String,
    password: SecretString,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("base", &self.base).field("username", &self.username).finish_non_exhaustive()
    }
}

/// Everything but RFC 3986's unreserved characters.
const SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes one path segment (vhost names contain `/`).
pub fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

impl Client {
    /// A client for the API at `base` (e.g. `http://127.0.0.1:15672`).
    pub fn new(base: &str, username: &str, password: SecretString) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self { base: base.trim_end_matches('/').to_owned(), username: username.to_owned(), password, http }
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, MgmtError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/api/{path}", self.base))
            .basic_auth(&self.username, Some(self.password.expose_secret()));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response =
            request.send().await.map_err(|source| MgmtError::Unreachable { url: self.base.clone(), source })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        let method = match method {
            reqwest::Method::PUT => "PUT",
            reqwest::Method::DELETE => "DELETE",
            reqwest::Method::POST => "POST",
            _ => "GET",
        };
        Err(MgmtError::Status { method, path: path.to_owned(), status: status.as_u16(), body })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, MgmtError> {
        self.call(reqwest::Method::GET, path, None).await?.json().await.map_err(MgmtError::Decode)
    }

    /// Checks that the API answers with these credentials.
    pub async fn overview(&self) -> Result<serde_json::Value, MgmtError> {
        self.get("overview").await
    }

    /// Creates a vhost (idempotent).
    pub async fn create_vhost(&self, vhost: &str) -> Result<(), MgmtError> {
        self.call(reqwest::Method::PUT, &format!("vhosts/{}", encode_segment(vhost)), None).await.map(drop)
    }

    /// Deletes a vhost and everything in it; a missing vhost is not an error.
    pub async fn delete_vhost(&self, vhost: &str) -> Result<(), MgmtError> {
        match self.call(reqwest::Method::DELETE, &format!("vhosts/{}", encode_segment(vhost)), None).await {
            Ok(_) | Err(MgmtError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Grants `user` configure/write/read permissions (regexes) on `vhost`.
    pub async fn set_permissions(
        &self,
        vhost: &str,
        user: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> Result<(), MgmtError> {
        let path = format!("permissions/{}/{}", encode_segment(vhost), encode_segment(user));
        let body = serde_json::json!({ "configure": configure, "write": write, "read": read });
        self.call(reqwest::Method::PUT, &path, Some(body)).await.map(drop)
    }

    /// Queues of a vhost.
    pub async fn queues(&self, vhost: &str) -> Result<Vec<QueueInfo>, MgmtError> {
        self.get(&format!("queues/{}", encode_segment(vhost))).await
    }

    /// One queue.
    pub async fn queue(&self, vhost: &str, name: &str) -> Result<QueueInfo, MgmtError> {
        self.get(&format!("queues/{}/{}", encode_segment(vhost), encode_segment(name))).await
    }

    /// Deletes a queue.
    pub async fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), MgmtError> {
        let path = format!("queues/{}/{}", encode_segment(vhost), encode_segment(name));
        self.call(reqwest::Method::DELETE, &path, None).await.map(drop)
    }

    /// Exchanges of a vhost.
    pub async fn exchanges(&self, vhost: &str) -> Result<Vec<ExchangeInfo>, MgmtError> {
        self.get(&format!("exchanges/{}", encode_segment(vhost))).await
    }

    /// Bindings of a vhost.
    pub async fn bindings(&self, vhost: &str) -> Result<Vec<BindingInfo>, MgmtError> {
        self.get(&format!("bindings/{}", encode_segment(vhost))).await
    }

    /// Client connections to a vhost.
    pub async fn connections(&self, vhost: &str) -> Result<Vec<ConnectionInfo>, MgmtError> {
        self.get(&format!("vhosts/{}/connections", encode_segment(vhost))).await
    }

    /// Closes a client connection from the broker side.
    pub async fn close_connection(&self, name: &str) -> Result<(), MgmtError> {
        self.call(reqwest::Method::DELETE, &format!("connections/{}", encode_segment(name)), None).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_read_from_message_stats_and_absent_without_them() {
        let json = serde_json::json!({
            "name": "emails.to_classify", "messages_ready": 3, "messages_unacknowledged": 1, "consumers": 2,
            "message_stats": {"publish": 10, "publish_details": {"rate": 2.5},
                              "deliver_get_details": {"rate": 1.0}}
        });
        let q: QueueInfo = serde_json::from_value(json).expect("decodes");
        assert_eq!((q.messages_ready, q.messages_unacknowledged, q.consumers), (3, 1, 2));
        assert_eq!(q.publish_rate(), Some(2.5));
        assert_eq!(q.deliver_rate(), Some(1.0));
        assert_eq!(q.ack_rate(), None);
        let idle: QueueInfo = serde_json::from_value(serde_json::json!({"name": "q"})).expect("decodes");
        assert_eq!(idle.publish_rate(), None);
    }

    #[test]
    fn vhost_names_are_percent_encoded() {
        assert_eq!(encode_segment("/"), "%2F");
        assert_eq!(encode_segment("mailroom-test.a_b~"), "mailroom-test.a_b~");
    }
}
