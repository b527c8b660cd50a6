//! Heartbeats of the daemon's loops, and the watchdog decision (pure: clocks and atomics, no
//! I/O).
//!
//! **The watchdog is fed only while every registered loop has beaten recently.** A timer alone
//! never feeds it: if a loop hangs, the pings stop and systemd restarts the daemon.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A registered loop: its name and the time of its last beat (ms since `Liveness::start`).
type Beat = (&'static str, Arc<AtomicU64>);

/// The set of loops whose progress the watchdog checks.
#[derive(Debug, Clone)]
pub struct Liveness {
    start: Instant,
    beats: Arc<Mutex<Vec<Beat>>>,
}

/// One loop's heartbeat; `beat()` on every iteration.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Default for Liveness {
    fn default() -> Self {
        Self::new()
    }
}

impl Liveness {
    pub fn new() -> Self {
        Liveness {
            start: Instant::now(),
            beats: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn register(&self, name: &'static str) -> Heartbeat {
        let hb = Heartbeat {
            start: self.start,
            last_ms: Arc::new(AtomicU64::new(elapsed_ms(self.start, Instant::now()))),
        };
        self.beats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name, hb.last_ms.clone()));
        hb
    }

    /// The loop that beat longest ago and how long ago, at `now`.
    pub fn stalest(&self, now: Instant) -> Option<(&'static str, Duration)> {
        let now_ms = elapsed_ms(self.start, now);
        self.beats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, last)| {
                let age = now_ms.saturating_sub(last.load(Ordering::Relaxed));
                (*name, Duration::from_millis(age))
            })
            .max_by_key(|(_, age)| *age)
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        self.last_ms
            .store(elapsed_ms(self.start, Instant::now()), Ordering::Relaxed);
    }
}

fn elapsed_ms(start: Instant, now: Instant) -> u64 {
    now.saturating_duration_since(start).as_millis() as u64
}

/// What the watchdog task does at one of its periods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchdogAction {
    Ping,
    /// Withhold the ping: the named loop has not beaten for this long.
    Withhold(&'static str, Duration),
}

/// Ping only when no registered loop is older than `max_age`. With no loop registered there is
/// nothing that proves liveness, so nothing is pinged.
pub fn decide(stalest: Option<(&'static str, Duration)>, max_age: Duration) -> WatchdogAction {
    match stalest {
        Some((_, age)) if age <= max_age => WatchdogAction::Ping,
        Some((name, age)) => WatchdogAction::Withhold(name, age),
        None => WatchdogAction::Withhold("(no loop registered)", Duration::ZERO),
    }
}

/// The period of the watchdog task and the heartbeat age it accepts, from `WATCHDOG_USEC`:
/// ping every half interval, as sd_watchdog_enabled(3) advises.
pub fn watchdog_timing(watchdog_usec: Duration) -> (Duration, Duration) {
    let half = watchdog_usec / 2;
    (half, half)
}

/// How often a loop must wake to beat, given the accepted age (at least four beats per age).
pub fn tick_period(max_age: Option<Duration>) -> Duration {
    let ceiling = Duration::from_secs(1);
    match max_age {
        Some(age) => (age / 4).clamp(Duration::from_millis(10), ceiling),
        None => ceiling,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let max = Duration::from_millis(500);
        let cases = [
            (
                Some(("main", Duration::from_millis(0))),
                WatchdogAction::Ping,
            ),
            (
                Some(("main", Duration::from_millis(500))),
                WatchdogAction::Ping,
            ),
            (
                Some(("main", Duration::from_millis(501))),
                WatchdogAction::Withhold("main", Duration::from_millis(501)),
            ),
            (
                None,
                WatchdogAction::Withhold("(no loop registered)", Duration::ZERO),
            ),
        ];
        for (stalest, want) in cases {
            assert_eq!(decide(stalest, max), want, "{stalest:?}");
        }
    }

    #[test]
    fn stalest_loop_wins() {
        let l = Liveness::new();
        let a = l.register("a");
        let _b = l.register("b");
        let later = Instant::now() + Duration::from_secs(5);
        a.beat();
        let (name, age) = l.stalest(later).unwrap();
        assert_eq!(name, "b");
        assert!(age >= Duration::from_millis(4900));
    }

    #[test]
    fn timings() {
        assert_eq!(
            watchdog_timing(Duration::from_secs(10)),
            (Duration::from_secs(5), Duration::from_secs(5))
        );
        assert_eq!(
            tick_period(Some(Duration::from_secs(5))),
            Duration::from_secs(1)
        );
        assert_eq!(
            tick_period(Some(Duration::from_millis(200))),
            Duration::from_millis(50)
        );
        assert_eq!(tick_period(None), Duration::from_secs(1));
    }
}
