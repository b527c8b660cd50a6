//! Test-only fault hooks, compiled only with the `fault-injection` feature (never in release
//! or Yocto builds). With the feature, SIGUSR2 makes one of the daemon's loops hang (the
//! main loop, or the one `LEDA_CM_FAULT_HANG_LOOP` names; an async hang: the runtime and the
//! watchdog timer keep running, only that loop stops beating), so an integration test can
//! prove that the watchdog pings stop with any of them.

/// Something the main loop can `recv()` on: fires once when the hang is requested.
pub struct HangRequest {
    #[cfg(feature = "fault-injection")]
    signal: Option<tokio::signal::unix::Signal>,
}

/// The hang request of the loop `name`: SIGUSR2 hangs the loop that
/// `LEDA_CM_FAULT_HANG_LOOP` names (`main` when unset), and no other.
pub fn loop_hang(name: &str) -> HangRequest {
    #[cfg(feature = "fault-injection")]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let chosen = std::env::var("LEDA_CM_FAULT_HANG_LOOP").unwrap_or_else(|_| "main".into());
        HangRequest {
            signal: (chosen == name)
                .then(|| signal(SignalKind::user_defined2()).ok())
                .flatten(),
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    {
        let _ = name;
        HangRequest {}
    }
}

impl HangRequest {
    pub async fn recv(&mut self) {
        #[cfg(feature = "fault-injection")]
        if let Some(s) = self.signal.as_mut() {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

/// With the feature and `LEDA_CM_FAULT_AGENT_STALL_AFTER=<status>` set, a standalone apply
/// stalls once a phase has reported that status, as a very long step would, until
/// `released()` (shutdown, or a newer desired state): a test can kill or stop the daemon at a
/// known point of an apply. Without the feature: never.
pub async fn agent_stall_after(status: &str, released: &(dyn Fn() -> bool + Sync)) {
    #[cfg(feature = "fault-injection")]
    if std::env::var("LEDA_CM_FAULT_AGENT_STALL_AFTER").is_ok_and(|s| s == status) {
        log::warn!("fault injection: the update agent stalls after {status}");
        while !released() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    let _ = (status, released);
}

/// With the feature and `LEDA_CM_FAULT_MQTT_QUEUE=<n>` set: the outgoing mqtt queue's size
/// (the mqtt adapter then also allows one message in flight), so that a broker which takes
/// nothing (stopped) fills the queue after a few messages. Without the feature: `None`.
pub fn mqtt_queue() -> Option<usize> {
    #[cfg(feature = "fault-injection")]
    if let Some(n) = std::env::var("LEDA_CM_FAULT_MQTT_QUEUE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        log::warn!("fault injection: an outgoing mqtt queue of {n}, one message in flight");
        return Some(n);
    }
    None
}

/// With the feature and `LEDA_CM_FAULT_NET_LEAVE_STALL` set, the background DEL after a stop
/// never runs (it waits for ever), so that a test can kill the daemon between a stop and its
/// DEL. Without the feature: returns at once.
pub async fn net_leave_stall() {
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("LEDA_CM_FAULT_NET_LEAVE_STALL").is_some() {
        log::warn!("fault injection: the DEL after a stop stalls");
        std::future::pending::<()>().await;
    }
}
