//! systemd adapter over `sd-notify` (no libsystemd): READY, STATUS, STOPPING and the watchdog.
//!
//! Without `$NOTIFY_SOCKET` every call is a no-op, so the daemon runs the same by hand.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

use crate::liveness::{self, Liveness, WatchdogAction};
use crate::supervisor::{Shutdown, TaskResult};

fn send(states: &[NotifyState]) {
    // false: keep $NOTIFY_SOCKET, every later notification needs it.
    if let Err(e) = sd_notify::notify(false, states) {
        log::debug!("sd_notify failed: {e}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

pub fn reloading(status: &str) {
    let now = sd_notify::NotifyState::monotonic_usec_now();
    match now {
        Ok(ts) => send(&[NotifyState::Reloading, ts, NotifyState::Status(status)]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status(status)]),
    }
}

/// `WATCHDOG_USEC` when the watchdog is armed for this process.
pub fn watchdog_usec() -> Option<Duration> {
    watchdog_from(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// sd_watchdog_enabled(3)'s rule: `WATCHDOG_USEC` arms it, and `WATCHDOG_PID`, when set,
/// must name this process. (sd-notify 0.4's `watchdog_enabled` also insists on the PID,
/// which systemd sets but a manager that only sets `WATCHDOG_USEC` does not.)
fn watchdog_from(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok()?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != me {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings every `period` while the loops registered in `liveness` are fresh (see
/// `liveness::decide`); withholds the ping, and says why once, when one is stale.
pub async fn watchdog_task(
    liveness: Liveness,
    period: Duration,
    max_age: Duration,
    mut shutdown: Shutdown,
) -> TaskResult {
    let mut timer = tokio::time::interval(period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut withholding = false;
    loop {
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            _ = timer.tick() => {}
        }
        match liveness::decide(liveness.stalest(Instant::now()), max_age) {
            WatchdogAction::Ping => {
                if withholding {
                    log::warn!("all loops beat again; resuming watchdog pings");
                    withholding = false;
                }
                send(&[NotifyState::Watchdog]);
            }
            WatchdogAction::Withhold(name, age) => {
                if !withholding {
                    log::error!(
                        "loop {name} has not beaten for {age:?} (limit {max_age:?}); \
                         withholding watchdog pings so systemd restarts the daemon"
                    );
                    withholding = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_environment() {
        let ms = |n| Some(Duration::from_millis(n));
        let cases = [
            (Some("400000"), None, ms(400)),
            (Some("400000"), Some("7"), ms(400)),
            (Some("400000"), Some("8"), None),
            (Some("0"), None, None),
            (Some("soon"), None, None),
            (None, Some("7"), None),
            (Some("400000"), Some("x"), None),
        ];
        for (usec, pid, want) in cases {
            assert_eq!(watchdog_from(usec, pid, 7), want, "{usec:?} {pid:?}");
        }
    }
}
