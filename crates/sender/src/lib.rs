//! The sender stage. So far: the limits every sender process shares through Redis — the
//! per-mailbox send rate ([`ratelimit`]) and the per-recipient reply throttle ([`throttle`]).
//! The worker itself (sinks, send log, reply building) is still to come.

pub mod ratelimit;
pub mod throttle;

/// Redis could not be used.
#[derive(Debug, thiserror::Error)]
#[error("Redis unavailable: {0}")]
pub struct LimitError(#[from] pub redis::RedisError);
