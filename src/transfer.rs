//! Download policy, pure: how long to wait before the next attempt of a broken download, and
//! how long a download must pause to stay under a rate limit. No clocks of their own: the
//! caller gives the time and the randomness, so every decision is a plain function.

use std::time::{Duration, Instant};

/// Retries of a broken blob download (`containers.download_retries` and the delays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts after the first; 0: a broken download fails the pull (Kanto's behaviour).
    pub retries: u32,
    /// Delay before the first retry; doubles with each one.
    pub delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 0,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (1 for the first), with `jitter` in [0, 1)
    /// spreading it over [½, 1] of the exponential delay, so that devices cut off at the
    /// same moment do not all come back at the same moment. `None`: no retries left.
    pub fn delay_before(&self, attempt: u32, jitter: f64) -> Option<Duration> {
        if attempt == 0 || attempt > self.retries {
            return None;
        }
        let doubled = self
            .delay
            .checked_mul(1u32.checked_shl(attempt - 1).unwrap_or(u32::MAX))
            .unwrap_or(self.max_delay);
        let full = doubled.min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        Some(full.mul_f64(0.5 + 0.5 * jitter))
    }
}

/// A byte-rate limit shared by every download (`containers.download_rate_limit`): the
/// generic cell rate algorithm, which lets `burst` worth of time run ahead and then holds
/// the average at `rate`.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// Bytes per second; 0 means unlimited.
    rate: u64,
    /// How far ahead of the schedule a download may run before it pauses.
    burst: Duration,
    /// When the bytes passed so far would be through at exactly `rate`.
    schedule: Option<Instant>,
}

/// The default burst: short against the seconds a download takes (each download that starts
/// after a pause gets this much free, so it must be small for the average to hold: measured
/// with 100 ms, four blobs at 4 MiB/s came out 15 % fast), long against one chunk's worth at
/// the rates that matter (16 KiB at 1 MiB/s is 16 ms).
pub const BURST: Duration = Duration::from_millis(20);

impl RateLimiter {
    pub fn new(rate: u64) -> RateLimiter {
        RateLimiter::with_burst(rate, BURST)
    }

    pub fn with_burst(rate: u64, burst: Duration) -> RateLimiter {
        RateLimiter {
            rate,
            burst,
            schedule: None,
        }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Changes the rate (a reload); the schedule starts again.
    pub fn set_rate(&mut self, rate: u64) {
        if rate != self.rate {
            self.rate = rate;
            self.schedule = None;
        }
    }

    /// `bytes` have just arrived at `now`: how long the download pauses before reading on.
    pub fn pass(&mut self, now: Instant, bytes: u64) -> Duration {
        if self.rate == 0 || bytes == 0 {
            return Duration::ZERO;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.rate as f64);
        // Idle time is not saved up beyond the burst.
        let start = match self.schedule {
            Some(s) if s + self.burst > now => s.max(now.checked_sub(self.burst).unwrap_or(now)),
            _ => now,
        };
        let due = start + cost;
        self.schedule = Some(due);
        due.saturating_duration_since(now + self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_with_jitter_up_to_the_bound() {
        let p = RetryPolicy {
            retries: 6,
            delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(4),
        };
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis() as u64);
        for (attempt, jitter, want) in [
            (0, 0.0, None),
            (1, 1.0, Some(500)),
            (1, 0.0, Some(250)),
            (2, 1.0, Some(1000)),
            (3, 0.5, Some(1500)),
            (4, 1.0, Some(4000)),
            (5, 1.0, Some(4000)),
            (6, 0.0, Some(2000)),
            (7, 0.0, None),
            // Out of range jitter is clamped.
            (1, 7.0, Some(500)),
            (1, -1.0, Some(250)),
        ] {
            assert_eq!(
                ms(p.delay_before(attempt, jitter)),
                want,
                "{attempt} {jitter}"
            );
        }
        assert_eq!(RetryPolicy::default().delay_before(1, 0.5), None);
        // A huge attempt number does not overflow.
        let many = RetryPolicy {
            retries: u32::MAX,
            ..p
        };
        assert_eq!(ms(many.delay_before(200, 1.0)), Some(4000));
    }

    #[test]
    fn the_limiter_holds_the_average_and_allows_a_short_burst() {
        let t0 = Instant::now();
        let burst = Duration::from_millis(100);
        let mut l = RateLimiter::with_burst(1_000_000, burst);
        // Within the burst (100 ms = 100 kB at 1 MB/s): no pause.
        assert_eq!(l.pass(t0, 50_000), Duration::ZERO);
        assert_eq!(l.pass(t0, 50_000), Duration::ZERO);
        // Beyond it: the pause brings the schedule back to burst ahead.
        assert_eq!(l.pass(t0, 100_000), Duration::from_millis(100));
        // A steady reader: 1 MB in 64 kB chunks, pausing as told, takes ~1 s.
        let mut l = RateLimiter::with_burst(1_000_000, burst);
        let mut now = t0;
        let mut sent = 0u64;
        while sent < 1_000_000 {
            let pause = l.pass(now, 64_000);
            sent += 64_000;
            now += pause;
        }
        let took = now - t0;
        assert!(
            took >= Duration::from_millis(880) && took <= Duration::from_millis(1000),
            "{took:?}"
        );
        // Idle time is not saved up: after 10 s idle only the burst is free.
        let later = now + Duration::from_secs(10);
        assert_eq!(l.pass(later, 100_000), Duration::ZERO);
        assert_eq!(l.pass(later, 100_000), Duration::from_millis(100));
        // Unlimited never pauses; a new rate restarts the schedule.
        let mut free = RateLimiter::with_burst(0, burst);
        assert_eq!(free.pass(t0, u64::MAX), Duration::ZERO);
        free.set_rate(1000);
        assert_eq!(free.pass(t0, 100), Duration::ZERO);
        assert_eq!(free.pass(t0, 1000), Duration::from_millis(1000));
    }
}
