//! Restart decisions (pure): whether an exited container is started again, and after which
//! back-off. Kanto's rules: back-off from 100 ms doubling up to the policy's retry timeout
//! (default 1 min), reset after 10 s of running; `no` never, `always` always,
//! `unless-stopped` unless stopped by hand, `on-failure` on a non-zero exit code up to
//! `maximum_retry_count` restarts (0 = no limit).

use std::time::Duration;

use super::validate::MAX_RETRY_TIMEOUT_NS;
use super::{RestartPolicy, RestartPolicyType};

pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A run this long counts as a success: the back-off starts over.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i64,
    pub manually_stopped: bool,
    /// How long the task ran before it exited.
    pub ran_for: Duration,
    /// Restarts already performed (the container's `restart_count`).
    pub restarts: i64,
    /// The back-off used for the previous restart (zero when none).
    pub previous_backoff: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Stay,
    /// Start again after this delay; it becomes the next `previous_backoff`.
    RestartAfter(Duration),
}

/// The policy's retry timeout as the back-off's bound, at most a day
/// ([`MAX_RETRY_TIMEOUT_NS`]: validation refuses more; an older record is clamped).
pub fn max_backoff(policy: &RestartPolicy) -> Duration {
    if policy.retry_timeout > 0 {
        Duration::from_nanos(
            policy
                .retry_timeout
                .min(MAX_RETRY_TIMEOUT_NS)
                .unsigned_abs(),
        )
    } else {
        DEFAULT_MAX_BACKOFF
    }
}

pub fn decide(policy: &RestartPolicy, exit: Exit) -> Decision {
    let restart = match policy.policy_type {
        RestartPolicyType::No => false,
        RestartPolicyType::Always => !exit.manually_stopped,
        RestartPolicyType::UnlessStopped => !exit.manually_stopped,
        RestartPolicyType::OnFailure => {
            let max = policy.maximum_retry_count;
            !exit.manually_stopped && exit.exit_code != 0 && (max == 0 || exit.restarts < max)
        }
    };
    if !restart {
        return Decision::Stay;
    }
    let max = max_backoff(policy);
    let previous = if exit.ran_for >= RESET_AFTER {
        Duration::ZERO
    } else {
        exit.previous_backoff
    };
    let next = if previous.is_zero() {
        FIRST_BACKOFF
    } else {
        previous.saturating_mul(2)
    };
    Decision::RestartAfter(next.min(max))
}

/// Whether a container is started when the daemon (re)starts and finds no live task for it:
/// after a device reboot, a daemon crash or while containerd was away.
///
/// `was_running`: it was running, paused or waiting for a restart. Then every policy but
/// `no` starts it again unless it was stopped by hand (an unknown exit counts as a failure
/// for `on-failure`). Besides, `always` brings back a container that ran before even after a
/// manual stop, as Docker's daemon does; a container never started stays created.
pub fn start_on_boot(
    policy: &RestartPolicy,
    was_running: bool,
    manually_stopped: bool,
    started_before: bool,
) -> bool {
    match policy.policy_type {
        RestartPolicyType::No => false,
        RestartPolicyType::Always => (was_running && !manually_stopped) || started_before,
        RestartPolicyType::UnlessStopped | RestartPolicyType::OnFailure => {
            was_running && !manually_stopped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(t: RestartPolicyType, max: i64, timeout: Duration) -> RestartPolicy {
        RestartPolicy {
            maximum_retry_count: max,
            retry_timeout: timeout.as_nanos() as i64,
            policy_type: t,
        }
    }

    fn exit(code: i64, manual: bool, ran: u64, restarts: i64, prev_ms: u64) -> Exit {
        Exit {
            exit_code: code,
            manually_stopped: manual,
            ran_for: Duration::from_secs(ran),
            restarts,
            previous_backoff: Duration::from_millis(prev_ms),
        }
    }

    #[test]
    fn decisions_table() {
        use Decision::*;
        use RestartPolicyType::*;
        let ms = Duration::from_millis;
        let d0 = Duration::ZERO;
        let cases = [
            (policy(No, 0, d0), exit(1, false, 0, 0, 0), Stay),
            (
                policy(Always, 0, d0),
                exit(0, false, 0, 0, 0),
                RestartAfter(ms(100)),
            ),
            (policy(Always, 0, d0), exit(0, true, 0, 0, 0), Stay),
            (
                policy(UnlessStopped, 0, d0),
                exit(137, false, 1, 5, 100),
                RestartAfter(ms(200)),
            ),
            (policy(UnlessStopped, 0, d0), exit(0, true, 1, 0, 0), Stay),
            (
                policy(OnFailure, 3, d0),
                exit(1, false, 0, 0, 0),
                RestartAfter(ms(100)),
            ),
            (
                policy(OnFailure, 3, d0),
                exit(1, false, 0, 2, 200),
                RestartAfter(ms(400)),
            ),
            (policy(OnFailure, 3, d0), exit(1, false, 0, 3, 400), Stay),
            (policy(OnFailure, 3, d0), exit(0, false, 0, 0, 0), Stay),
            (
                policy(OnFailure, 0, d0),
                exit(2, false, 0, 1000, 0),
                RestartAfter(ms(100)),
            ),
            // Doubling stops at the retry timeout…
            (
                policy(Always, 0, ms(300)),
                exit(0, false, 0, 3, 200),
                RestartAfter(ms(300)),
            ),
            (
                policy(Always, 0, d0),
                exit(0, false, 0, 9, 40_000),
                RestartAfter(ms(60_000)),
            ),
            // …and starts over after a run of 10 s.
            (
                policy(Always, 0, d0),
                exit(0, false, 10, 9, 40_000),
                RestartAfter(ms(100)),
            ),
        ];
        for (p, e, want) in cases {
            assert_eq!(decide(&p, e), want, "{p:?} {e:?}");
        }
    }

    #[test]
    fn boot_table() {
        use RestartPolicyType::*;
        let d0 = Duration::ZERO;
        // (policy, was_running, manually_stopped, started_before) -> start?
        let cases = [
            (No, true, false, true, false),
            (Always, true, false, true, true),
            (Always, false, true, true, true),
            (Always, false, true, false, false),
            (Always, false, false, false, false),
            (UnlessStopped, true, false, true, true),
            (UnlessStopped, false, true, true, false),
            (UnlessStopped, true, true, true, false),
            (UnlessStopped, false, false, true, false),
            (OnFailure, true, false, true, true),
            (OnFailure, false, false, true, false),
        ];
        for (t, running, manual, before, want) in cases {
            assert_eq!(
                start_on_boot(&policy(t, 0, d0), running, manual, before),
                want,
                "{t:?} running={running} manual={manual} before={before}"
            );
        }
    }

    /// Extreme policies and exits (from records or requests): no panic, the back-off stays
    /// within a day.
    #[test]
    fn extreme_values_neither_panic_nor_exceed_a_day() {
        use RestartPolicyType::*;
        let day = Duration::from_secs(24 * 3600);
        for t in [No, Always, UnlessStopped, OnFailure] {
            for timeout in [i64::MIN, -1, 0, 1, MAX_RETRY_TIMEOUT_NS, i64::MAX] {
                for max in [i64::MIN, -1, 0, 1, i64::MAX] {
                    let p = RestartPolicy {
                        maximum_retry_count: max,
                        retry_timeout: timeout,
                        policy_type: t,
                    };
                    assert!(max_backoff(&p) <= day, "{p:?}");
                    for restarts in [i64::MIN, -1, 0, i64::MAX] {
                        for previous in [Duration::ZERO, day, Duration::MAX] {
                            for code in [i64::MIN, -1, 0, 1, i64::MAX] {
                                let e = Exit {
                                    exit_code: code,
                                    manually_stopped: false,
                                    ran_for: Duration::ZERO,
                                    restarts,
                                    previous_backoff: previous,
                                };
                                if let Decision::RestartAfter(d) = decide(&p, e) {
                                    assert!(d <= day, "{p:?} {e:?}: {d:?}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
