//! Connecting to the broker: named connections and reconnection with exponential backoff and
//! jitter, so a fleet of workers does not stampede a broker that just came back.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use secrecy::ExposeSecret;

use crate::settings::AmqpSettings;

/// Exponential backoff with "equal jitter": each delay is uniformly drawn from
/// `[d/2, d]` where `d` doubles from `initial` up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max: max.max(initial), attempt: 0 }
    }

    /// The broker settings' backoff.
    pub fn from_settings(settings: &AmqpSettings) -> Self {
        Self::new(
            Duration::from_millis(settings.reconnect_initial_ms),
            Duration::from_millis(settings.reconnect_max_ms),
        )
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// How long one connection attempt may take: a broker that accepts the TCP connection but does
/// not complete the handshake (overloaded, or a vhost being deleted) must not stall a worker.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long connecting, declaring the topology and opening channels may take together.
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The broker refused or dropped the connection.
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    /// The handshake did not complete in time.
    #[error("no answer from the broker within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
}

/// Opens one connection, named so operators can find it in the management UI.
pub async fn connect(settings: &AmqpSettings, connection_name: &str) -> Result<Connection, ConnectError> {
    let properties = ConnectionProperties::default().with_connection_name(connection_name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(settings.url.expose_secret(), properties)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ConnectError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        let delays: Vec<_> = (0..10).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(1000)));
        assert!(delays.iter().skip(5).all(|d| *d >= Duration::from_millis(500)));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
