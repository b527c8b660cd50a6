//! Test-only fault hooks, compiled only with the `fault-injection` feature (never in release
//! or Yocto builds). With the feature, SIGUSR2 makes the daemon's main loop hang (an async
//! hang: the runtime and the watchdog timer keep running, only the loop stops beating), so an
//! integration test can prove that the watchdog pings stop with it.

/// Something the main loop can `recv()` on: fires once when the hang is requested.
pub struct HangRequest {
    #[cfg(feature = "fault-injection")]
    signal: Option<tokio::signal::unix::Signal>,
}

pub fn main_loop_hang() -> HangRequest {
    #[cfg(feature = "fault-injection")]
    {
        use tokio::signal::unix::{signal, SignalKind};
        HangRequest {
            signal: signal(SignalKind::user_defined2()).ok(),
        }
    }
    #[cfg(not(feature = "fault-injection"))]
    HangRequest {}
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
