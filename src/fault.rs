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
