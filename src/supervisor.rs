//! Named long-lived tasks under one supervisor, and the shutdown signal every loop watches.
//!
//! **Any task that ends while the daemon is not shutting down takes the daemon down loudly**
//! (exit code 1, systemd restarts it). On shutdown every loop sees the signal, finishes the
//! step in hand and returns; the supervisor waits for them up to a bound.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

pub type TaskError = Box<dyn std::error::Error + Send + Sync>;
pub type TaskResult = Result<(), TaskError>;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("task {task} exited unexpectedly")]
    Exited { task: &'static str },
    #[error("task {task} failed: {error}")]
    Failed {
        task: &'static str,
        error: TaskError,
    },
    #[error("task {task} panicked: {message}")]
    Panicked { task: String, message: String },
    #[error("tasks still running {bound:?} after shutdown began: {tasks}")]
    ShutdownTimeout { bound: Duration, tasks: String },
}

/// Clonable view of the shutdown state, for the loops.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// Resolves once shutdown has begun (at once if it already has).
    pub async fn wait(&mut self) {
        // An error means the sender is gone: the supervisor ended, which is shutdown too.
        let _ = self.0.wait_for(|down| *down).await;
    }

    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }
}

/// Starts the shutdown; clonable so signal handlers and the supervisor share it.
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(std::sync::Arc<watch::Sender<bool>>);

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

/// A shutdown signal outside a supervisor (tools and tests).
pub fn shutdown_channel() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger(std::sync::Arc::new(tx)), Shutdown(rx))
}

pub struct Supervisor {
    tasks: JoinSet<(&'static str, TaskResult)>,
    names: Vec<(tokio::task::Id, &'static str)>,
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
}

impl Default for Supervisor {
    fn default() -> Self {
        Self::new()
    }
}

impl Supervisor {
    pub fn new() -> Self {
        let (trigger, shutdown) = shutdown_channel();
        Supervisor {
            tasks: JoinSet::new(),
            names: Vec::new(),
            trigger,
            shutdown,
        }
    }

    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn trigger(&self) -> ShutdownTrigger {
        self.trigger.clone()
    }

    pub fn spawn<F>(&mut self, name: &'static str, task: F)
    where
        F: Future<Output = TaskResult> + 'static,
    {
        log::debug!("starting task {name}");
        // Boxed: tokio's task machinery is instantiated once for all tasks, not per task type.
        let task: std::pin::Pin<Box<dyn Future<Output = TaskResult>>> = Box::pin(task);
        let handle = self.tasks.spawn_local(async move { (name, task.await) });
        self.names.push((handle.id(), name));
    }

    fn name_of(&self, id: tokio::task::Id) -> String {
        self.names
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| format!("{id}"))
    }

    /// Runs until every task has ended. Returns the first unexpected end, if any.
    pub async fn run(mut self, grace: Duration) -> Result<(), SupervisorError> {
        let mut first_failure: Option<SupervisorError> = None;
        let mut shutdown = self.shutdown.clone();
        // Phase 1: until shutdown begins or a task ends.
        tokio::select! {
            _ = shutdown.wait() => {}
            joined = self.tasks.join_next_with_id() => {
                let Some(joined) = joined else { return Ok(()) };
                if let Some(f) = self.failure(joined) {
                    log::error!("{f}; shutting down");
                    first_failure = Some(f);
                }
                self.trigger.trigger();
            }
        }
        // Phase 2: every loop has the signal; wait for them within the bound.
        let drain = async {
            while let Some(joined) = self.tasks.join_next_with_id().await {
                match joined {
                    Ok((_, (name, Ok(())))) => log::debug!("task {name} stopped"),
                    other => {
                        if let Some(f) = self.failure(other) {
                            if first_failure.is_some() {
                                log::error!("{f}");
                            } else {
                                first_failure = Some(f);
                            }
                        }
                    }
                }
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            let ids: Vec<_> = self.names.iter().map(|(_, n)| *n).collect();
            let left = self.tasks.len();
            self.tasks.abort_all();
            return Err(SupervisorError::ShutdownTimeout {
                bound: grace,
                tasks: format!("{left} of {}", ids.join(", ")),
            });
        }
        match first_failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Classifies a task's end: `None` when it ended cleanly during shutdown.
    fn failure(
        &self,
        joined: Result<(tokio::task::Id, (&'static str, TaskResult)), tokio::task::JoinError>,
    ) -> Option<SupervisorError> {
        match joined {
            Ok((_, (name, Ok(())))) if self.shutdown.is_set() => {
                log::debug!("task {name} stopped");
                None
            }
            Ok((_, (task, Ok(())))) => Some(SupervisorError::Exited { task }),
            Ok((_, (task, Err(error)))) => Some(SupervisorError::Failed { task, error }),
            Err(e) => {
                let task = self.name_of(e.id());
                let message = if e.is_panic() {
                    let p = e.into_panic();
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown panic".into())
                } else {
                    "cancelled".into()
                };
                Some(SupervisorError::Panicked { task, message })
            }
        }
    }
}

/// A long-lived loop's pulse: its heartbeat (`liveness`) and the ticker that keeps an idle
/// loop beating. The loop calls `beat()` at the top of every iteration and has `wait()` as a
/// `select!` arm: a loop stuck in one iteration's body stops beating, and the watchdog sees it.
/// (With the `fault-injection` feature, `wait()` is also where SIGUSR2 hangs the loop, see
/// `fault::loop_hang`.)
pub struct Pulse {
    name: &'static str,
    heartbeat: crate::liveness::Heartbeat,
    tick: tokio::time::Interval,
    hang: crate::fault::HangRequest,
}

impl Pulse {
    pub fn new(
        liveness: &crate::liveness::Liveness,
        name: &'static str,
        period: Duration,
    ) -> Pulse {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Pulse {
            name,
            heartbeat: liveness.register(name),
            tick,
            hang: crate::fault::loop_hang(name),
        }
    }

    pub fn beat(&self) {
        self.heartbeat.beat();
    }

    /// Resolves at the next tick (or when a fault-injection hang is asked for); the loop
    /// hands the result to `handle` in the arm's body.
    pub async fn wait(&mut self) -> PulseEvent {
        tokio::select! {
            _ = self.tick.tick() => PulseEvent::Tick,
            () = self.hang.recv() => PulseEvent::Hang,
        }
    }

    /// Sleeps `delay` while beating; false when shutdown began meanwhile.
    pub async fn sleep(&mut self, delay: Duration, shutdown: &mut Shutdown) -> bool {
        // tokio's sleep saturates a delay past the clock's end (`Instant + Duration` panics).
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = shutdown.wait() => return false,
                _ = &mut sleep => return true,
                p = self.wait() => self.handle(p).await,
            }
        }
    }

    /// Beats on a tick; on a fault-injection hang, never returns (the loop stops beating).
    pub async fn handle(&self, event: PulseEvent) {
        match event {
            PulseEvent::Tick => self.heartbeat.beat(),
            PulseEvent::Hang => {
                log::warn!("fault injection: the {} loop hangs now", self.name);
                std::future::pending::<()>().await;
            }
        }
    }
}

/// What `Pulse::wait` saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PulseEvent {
    Tick,
    Hang,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_local<F: Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, f)
    }

    #[test]
    fn a_task_that_ends_takes_the_daemon_down() {
        let result = run_local(async {
            let mut sup = Supervisor::new();
            let mut sd = sup.shutdown();
            sup.spawn("loop", async move {
                sd.wait().await;
                Ok(())
            });
            sup.spawn("quitter", async { Ok(()) });
            sup.run(Duration::from_secs(5)).await
        });
        assert!(
            matches!(result, Err(SupervisorError::Exited { task: "quitter" })),
            "{result:?}"
        );
    }

    #[test]
    fn a_failing_task_is_named_with_its_error() {
        let result = run_local(async {
            let mut sup = Supervisor::new();
            sup.spawn("broken", async { Err("disk on fire".into()) });
            sup.run(Duration::from_secs(5)).await
        });
        let text = result.unwrap_err().to_string();
        assert_eq!(text, "task broken failed: disk on fire");
    }

    #[test]
    fn shutdown_reaches_every_loop_and_is_clean() {
        let result = run_local(async {
            let mut sup = Supervisor::new();
            for name in ["a", "b", "c"] {
                let mut sd = sup.shutdown();
                sup.spawn(name, async move {
                    sd.wait().await;
                    Ok(())
                });
            }
            let trigger = sup.trigger();
            tokio::task::spawn_local(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                trigger.trigger();
            });
            sup.run(Duration::from_secs(5)).await
        });
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn shutdown_is_bounded() {
        let result = run_local(async {
            let mut sup = Supervisor::new();
            sup.spawn("stuck", std::future::pending());
            sup.trigger().trigger();
            sup.run(Duration::from_millis(50)).await
        });
        assert!(
            matches!(result, Err(SupervisorError::ShutdownTimeout { .. })),
            "{result:?}"
        );
    }
}
