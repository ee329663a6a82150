//! The send-rate limiter: a token bucket per agent mailbox in Redis, shared by every sender
//! process (the Gmail quota belongs to the mailbox, not to a worker).
//!
//! The bucket holds at most `burst` tokens and refills continuously at `(limit - burst) / window`,
//! so sending is smoothed (a morning's first `burst` replies at once, then one every
//! `window / (limit - burst)`) and no window ever sees more than `limit`: a bucket refilled at
//! `limit / window` would allow `burst + limit` in a window, over a mailbox's daily quota. A
//! burst of `limit` or more means no smoothing: `limit` at once, refilled at `limit / window`. Refill and take happen in one Lua script using
//! Redis's own clock, so several processes on several hosts agree without coordinating clocks.

use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;

use crate::LimitError;

const TAKE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return wait
";

/// The outcome of asking for one send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send now.
    Granted,
    /// Not yet: a token will be available after this long (nothing was taken).
    Wait(Duration),
}

/// A mailbox-scoped token bucket.
#[derive(Clone)]
pub struct RateLimiter {
    connection: ConnectionManager,
    script: Script,
    burst: u32,
    per_ms: f64,
    window: Duration,
    prefix: String,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").field("burst", &self.burst).field("per_ms", &self.per_ms).finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// At most `limit` sends per `window` per mailbox, at most `burst` of them at once (at least
    /// 1; see the module documentation). Keys are `<prefix>:<mailbox>`.
    pub fn new(connection: ConnectionManager, prefix: &str, limit: u32, window: Duration, burst: u32) -> Self {
        let window_ms = window.as_millis().max(1) as f64;
        let (limit, burst) = (limit.max(1), burst.max(1));
        let refill = if burst < limit { limit - burst } else { limit };
        Self {
            connection,
            script: Script::new(TAKE),
            burst,
            per_ms: f64::from(refill) / window_ms,
            window,
            prefix: prefix.to_owned(),
        }
    }

    /// Takes one token for `mailbox` if there is one.
    pub async fn try_acquire(&self, mailbox: &str) -> Result<Permit, LimitError> {
        let key = format!("{}:{}", self.prefix, mailbox.to_ascii_lowercase());
        // A bucket idle for a whole window is full again; no need to keep it longer.
        let ttl_ms = self.window.as_millis().max(1000) as u64 * 2;
        let wait_ms: u64 = self
            .script
            .key(key)
            .arg(self.burst)
            .arg(self.per_ms)
            .arg(ttl_ms)
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(if wait_ms == 0 { Permit::Granted } else { Permit::Wait(Duration::from_millis(wait_ms)) })
    }
}
