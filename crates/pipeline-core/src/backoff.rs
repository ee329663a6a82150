//! Exponential backoff, the one helper for every "wait longer after each failure": the broker
//! reconnect loop (jittered, [`Backoff`]) and the poller's per-mailbox retry ([`exponential`]).

use std::time::Duration;

/// `base` doubled `attempt` times, at most `cap` (and never less than `base`): attempt 0 waits
/// `base`. Deterministic; [`Backoff`] adds jitter on top.
pub fn exponential(base: Duration, cap: Duration, attempt: u32) -> Duration {
    base.saturating_mul(2u32.saturating_pow(attempt.min(20))).min(cap.max(base))
}

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
    pub fn from_settings(settings: &crate::settings::AmqpSettings) -> Self {
        Self::new(
            Duration::from_millis(settings.reconnect_initial_ms),
            Duration::from_millis(settings.reconnect_max_ms),
        )
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = exponential(self.initial, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(fastrand::f64())
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_doubles_from_the_base_up_to_the_cap() {
        let (base, cap) = (Duration::from_secs(1), Duration::from_secs(60));
        let waits: Vec<u64> = (0..8).map(|a| exponential(base, cap, a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(exponential(base, Duration::ZERO, 5), base, "a cap below the base is the base");
        assert_eq!(exponential(base, Duration::MAX, u32::MAX), base * (1 << 20));
    }

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
