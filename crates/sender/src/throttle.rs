//! The reply throttle against reply storms and mail loops: at most `max` automatic replies to
//! one address per `window` (default 5 per 24 h); past it a reply becomes a draft for a human.
//!
//! Each address has a sorted set of the emails answered, scored by time; counting and recording
//! happen in one Lua script. Recording is keyed by email id, so a redelivered email does not
//! count twice.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use crate::LimitError;

const RECORD: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= max then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 1
";

/// Per-recipient reply counter.
#[derive(Clone)]
pub struct ReplyThrottle {
    connection: ConnectionManager,
    script: Script,
    max: u32,
    window: Duration,
    prefix: String,
}

impl std::fmt::Debug for ReplyThrottle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyThrottle").field("max", &self.max).field("window", &self.window).finish_non_exhaustive()
    }
}

impl ReplyThrottle {
    /// At most `max` automatic replies per recipient per `window`; keys are
    /// `<prefix>:<mailbox>:<recipient>`.
    pub fn new(connection: ConnectionManager, prefix: &str, max: u32, window: Duration) -> Self {
        Self { connection, script: Script::new(RECORD), max, window, prefix: prefix.to_owned() }
    }

    /// Records an automatic reply to `recipient` for `email_id` if the recipient is under the
    /// limit; `false` means the reply must become a draft. Asking again for the same email gives
    /// the same answer without counting it twice.
    pub async fn allow(&self, mailbox: &str, recipient: &str, email_id: &str) -> Result<bool, LimitError> {
        let key = format!("{}:{}:{}", self.prefix, mailbox.to_ascii_lowercase(), recipient.to_ascii_lowercase());
        let allowed: i64 = self
            .script
            .key(key)
            .arg(self.window.as_millis() as u64)
            .arg(self.max)
            .arg(email_id)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(allowed == 1)
    }
}
