//! Live restore (pure): what to do with a container leda-cm has a record of, given what
//! containerd has now. Runs when the daemon starts and whenever containerd comes back.

use super::restart;
use super::{Container, Status};
use crate::runtime::{TaskInfo, TaskStatus};

/// containerd's view of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// No container record in containerd (e.g. its state was wiped).
    Missing,
    /// The container exists, with this task (or none).
    Present(Option<TaskInfo>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Record and runtime agree.
    Nothing,
    /// A live task: take it over as it is (never restart it).
    Adopt { pid: u32, paused: bool },
    /// The task ended while nobody watched: collect it, record the exit, then maybe start.
    Exited { exit_code: i64, start: bool },
    /// The record says it ran, but there is no task at all (reboot): maybe start.
    Lost { start: bool },
    /// A task that exists but is not live and not wanted: delete it.
    DeleteTask,
    /// containerd lost the container: create it again, then maybe start.
    Recreate { start: bool },
    /// The record is the intent of a create that a crash cut short (never acknowledged):
    /// whatever containerd has of it goes, and the record too.
    RollBackCreate,
    /// The record is the intent of a removal that a crash cut short: finish it.
    FinishRemoval,
}

pub fn decide(c: &Container, observed: &Observed) -> Action {
    // Intents first: neither an interrupted removal nor an interrupted create comes back.
    if c.leda_cm.as_ref().is_some_and(|e| e.removing) {
        return Action::FinishRemoval;
    }
    if c.state.status == Status::Creating {
        return Action::RollBackCreate;
    }
    let was_running = c.is_active() || c.state.restarting;
    let policy = &c.host_config.restart_policy;
    let boot = |running: bool| {
        restart::start_on_boot(
            policy,
            running,
            c.manually_stopped,
            c.started_successfully_before,
        )
    };
    match observed {
        Observed::Missing => Action::Recreate {
            start: boot(was_running),
        },
        Observed::Present(Some(task)) => match task.status {
            TaskStatus::Running | TaskStatus::Pausing => {
                if c.state.running && c.state.pid == task.pid as i64 {
                    Action::Nothing
                } else {
                    Action::Adopt {
                        pid: task.pid,
                        paused: false,
                    }
                }
            }
            TaskStatus::Paused => {
                if c.state.paused && c.state.pid == task.pid as i64 {
                    Action::Nothing
                } else {
                    Action::Adopt {
                        pid: task.pid,
                        paused: true,
                    }
                }
            }
            TaskStatus::Stopped if was_running => {
                let exit_code = task.exit_status as i64;
                let start = !c.manually_stopped
                    && match policy.policy_type {
                        super::RestartPolicyType::OnFailure => {
                            exit_code != 0
                                && (policy.maximum_retry_count == 0
                                    || c.restart_count < policy.maximum_retry_count)
                        }
                        _ => boot(true),
                    };
                Action::Exited { exit_code, start }
            }
            // Created but never started (crash in between), or a stopped task of a
            // container that was not running: clean up, then as if there were none.
            TaskStatus::Created | TaskStatus::Stopped | TaskStatus::Unknown => {
                if was_running {
                    Action::Exited {
                        exit_code: task.exit_status as i64,
                        start: boot(true),
                    }
                } else {
                    Action::DeleteTask
                }
            }
        },
        Observed::Present(None) => {
            if was_running {
                Action::Lost { start: boot(true) }
            } else if c.state.status != Status::Created && boot(false) {
                Action::Lost { start: true }
            } else {
                Action::Nothing
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RestartPolicyType, State};

    fn container(policy: RestartPolicyType, state: State, manual: bool, before: bool) -> Container {
        let mut c = Container {
            container_id: "c".into(),
            ..Default::default()
        };
        c.host_config.restart_policy.policy_type = policy;
        c.state = state;
        c.manually_stopped = manual;
        c.started_successfully_before = before;
        c
    }

    fn task(status: TaskStatus, pid: u32, exit: u32) -> Observed {
        Observed::Present(Some(TaskInfo {
            pid,
            status,
            exit_status: exit,
            exited_at: None,
            stdout: String::new(),
        }))
    }

    #[test]
    fn table() {
        use RestartPolicyType::*;
        let running = State::default().running(10, "t");
        let paused = running.paused();
        let exited = running.exited(1, false, "t");
        let stopped = running.stopped(0, "t");
        let created = State::default();
        let cases = [
            // same live task: nothing; another pid: adopt
            (
                container(UnlessStopped, running.clone(), false, true),
                task(TaskStatus::Running, 10, 0),
                Action::Nothing,
            ),
            (
                container(UnlessStopped, running.clone(), false, true),
                task(TaskStatus::Running, 11, 0),
                Action::Adopt {
                    pid: 11,
                    paused: false,
                },
            ),
            (
                container(No, created.clone(), false, false),
                task(TaskStatus::Running, 12, 0),
                Action::Adopt {
                    pid: 12,
                    paused: false,
                },
            ),
            (
                container(No, paused.clone(), false, true),
                task(TaskStatus::Paused, 10, 0),
                Action::Nothing,
            ),
            (
                container(No, running.clone(), false, true),
                task(TaskStatus::Paused, 10, 0),
                Action::Adopt {
                    pid: 10,
                    paused: true,
                },
            ),
            // died while the daemon was away
            (
                container(UnlessStopped, running.clone(), false, true),
                task(TaskStatus::Stopped, 10, 3),
                Action::Exited {
                    exit_code: 3,
                    start: true,
                },
            ),
            (
                container(No, running.clone(), false, true),
                task(TaskStatus::Stopped, 10, 3),
                Action::Exited {
                    exit_code: 3,
                    start: false,
                },
            ),
            (
                container(OnFailure, running.clone(), false, true),
                task(TaskStatus::Stopped, 10, 0),
                Action::Exited {
                    exit_code: 0,
                    start: false,
                },
            ),
            (
                container(OnFailure, running.clone(), false, true),
                task(TaskStatus::Stopped, 10, 2),
                Action::Exited {
                    exit_code: 2,
                    start: true,
                },
            ),
            // leftovers of stopped containers are cleaned
            (
                container(UnlessStopped, stopped.clone(), true, true),
                task(TaskStatus::Stopped, 10, 0),
                Action::DeleteTask,
            ),
            (
                container(UnlessStopped, created.clone(), false, false),
                task(TaskStatus::Created, 10, 0),
                Action::DeleteTask,
            ),
            // reboot: no tasks at all
            (
                container(UnlessStopped, running.clone(), false, true),
                Observed::Present(None),
                Action::Lost { start: true },
            ),
            (
                container(UnlessStopped, stopped.clone(), true, true),
                Observed::Present(None),
                Action::Nothing,
            ),
            (
                container(Always, stopped.clone(), true, true),
                Observed::Present(None),
                Action::Lost { start: true },
            ),
            (
                container(Always, created.clone(), false, false),
                Observed::Present(None),
                Action::Nothing,
            ),
            (
                container(No, running.clone(), false, true),
                Observed::Present(None),
                Action::Lost { start: false },
            ),
            (
                container(OnFailure, exited.clone().restarting(), false, true),
                Observed::Present(None),
                Action::Lost { start: true },
            ),
            // containerd lost it
            (
                container(UnlessStopped, running.clone(), false, true),
                Observed::Missing,
                Action::Recreate { start: true },
            ),
            (
                container(UnlessStopped, created.clone(), false, false),
                Observed::Missing,
                Action::Recreate { start: false },
            ),
            // intents: an interrupted removal is finished (even of a live task), an
            // interrupted create rolled back, whatever containerd has
            (
                {
                    let mut c = container(Always, running.clone(), false, true);
                    c.extras_mut().removing = true;
                    c
                },
                task(TaskStatus::Running, 10, 0),
                Action::FinishRemoval,
            ),
            (
                {
                    let mut c = container(Always, stopped.clone(), false, true);
                    c.extras_mut().removing = true;
                    c
                },
                Observed::Missing,
                Action::FinishRemoval,
            ),
            (
                {
                    let mut c = container(Always, created.clone(), false, false);
                    c.state.status = Status::Creating;
                    c
                },
                Observed::Present(None),
                Action::RollBackCreate,
            ),
            (
                {
                    let mut c = container(Always, created.clone(), false, false);
                    c.state.status = Status::Creating;
                    c
                },
                Observed::Missing,
                Action::RollBackCreate,
            ),
        ];
        for (c, observed, want) in cases {
            assert_eq!(
                decide(&c, &observed),
                want,
                "{:?} {:?} {observed:?}",
                c.host_config.restart_policy.policy_type,
                c.state.status
            );
        }
    }
}
