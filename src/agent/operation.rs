//! One update operation: the identified actions and the phases that resolve them
//! (download, update, activate, rollback, cleanup), with the feedback of each step.
//!
//! Safe replacement: a container to recreate gets its successor created next to it (as
//! `<name>.next`) during download; update renames the old one to `<name>.prev` and starts
//! stopping it; activate renames the new one to `<name>` and starts it. Rollback undoes that
//! (the new one removed, the old one renamed back and started); cleanup removes the old ones
//! once the new ones run. Every step checks what is there first, so running a phase again
//! is harmless.
//!
//! Stops run beside the starts: every old container's stop (replaced or destroyed) runs in
//! its own task from update on (update waits for none of them); activate starts each new
//! container once the old ones in its way (`overlap::gates`: the same port, device, mount,
//! host network or container) have stopped, the others at once; cleanup removes each old
//! one when its stop has ended. An action's feedback changes when its step has really ended
//! (stopped, started, removed); standalone reports each such change at once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::diff::{Change, Kind, Planned};
use super::messages::{action_status as act, status, Action, Component, Feedback};
use crate::manager::{Manager, ManagerError, StopOptions, UpdateOptions};
use crate::model::{Container, Health, HealthStatus, Status};
use crate::runtime::{Progress, ProgressFn, Runtime};

/// Where feedback goes: (activity id, feedback).
pub type Sink = Arc<dyn Fn(&str, Feedback) + Send + Sync>;

pub const NEXT: &str = ".next";
pub const PREV: &str = ".prev";

/// The stop of an old container, running in its own task: its result, for every waiter.
type Stopping = Shared<BoxFuture<'static, Result<(), String>>>;

/// Kanto's texts, and leda-cm's for what happens beside them.
const STARTED: &str = "New container instance is started.";
const STARTED_OLD_STOPPING: &str =
    "New container instance is started; the old one is still stopping.";
const STARTED_OLD_STOPPED: &str = "New container instance is started; the old one is stopped.";
const STARTED_OLD_REMOVED: &str = "New container instance is started; the old one is removed.";
const STOPPED: &str = "Old container instance is stopped.";

fn started_old_not_stopped(e: &str) -> String {
    format!("New container instance is started; the old one could not be stopped: {e}")
}

struct BoardState {
    actions: Vec<Action>,
    /// Per action: how the stop of its old container ended (None: not ended, or none).
    stops: Vec<Option<Result<(), String>>>,
    /// Status and baseline of the last feedback sent.
    last: Option<(String, String)>,
    /// Standalone: what ends between a phase's own feedback is reported at once (no update
    /// manager acts on a status said again).
    live: bool,
    /// The last feedback of the operation is out (or the operation is gone).
    closed: bool,
}

/// The feedback actions, shared with the steps running at once (the stops run in tasks of
/// their own). Feedback is sent under its lock, so the order of what is sent is the order
/// of the changes.
struct Board {
    activity_id: String,
    sink: Sink,
    state: Mutex<BoardState>,
}

/// A phase in progress: its status said again with changed actions is no new event.
fn in_progress(s: &str) -> bool {
    [
        status::IDENTIFYING,
        status::DOWNLOADING,
        status::UPDATING,
        status::ACTIVATING,
        status::ROLLBACK,
        status::CLEANUP,
    ]
    .contains(&s)
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, BoardState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set(&self, i: usize, status: &str, message: &str) {
        let mut s = self.lock();
        let a = &mut s.actions[i];
        a.status = status.to_string();
        a.message = message.to_string();
        if status != act::DOWNLOADING {
            a.progress = 0;
        }
    }

    /// As `set`, and said at once while a phase is in progress.
    fn say(&self, i: usize, status: &str, message: &str) {
        self.changed(|s| {
            let a = &mut s.actions[i];
            a.status = status.to_string();
            a.message = message.to_string();
            a.progress = 0;
            true
        });
    }

    fn progress(&self, i: usize, pct: u8) -> bool {
        let mut s = self.lock();
        let changed = s.actions[i].progress != pct;
        s.actions[i].progress = pct;
        changed
    }

    fn snapshot(&self) -> Vec<Action> {
        self.lock().actions.clone()
    }

    fn status(&self, i: usize) -> String {
        self.lock().actions[i].status.clone()
    }

    fn close(&self) {
        self.lock().closed = true;
    }

    /// Sends a feedback with the current actions.
    fn send(&self, status: &str, message: &str, baseline: &str) {
        let mut s = self.lock();
        s.last = Some((status.to_string(), baseline.to_string()));
        if [status::COMPLETED, status::INCOMPLETE, status::SUPERSEDED].contains(&status) {
            s.closed = true;
        }
        (self.sink)(
            &self.activity_id,
            Feedback {
                baseline: baseline.to_string(),
                status: status.to_string(),
                message: message.to_string(),
                actions: s.actions.clone(),
            },
        );
    }

    /// Applies `change` (which says whether it changed anything) and reports it: at once
    /// when standalone or while a phase is in progress (its last status said again),
    /// otherwise with the next feedback.
    fn changed(&self, change: impl FnOnce(&mut BoardState) -> bool) {
        let mut s = self.lock();
        if !change(&mut s) || s.closed {
            return;
        }
        let Some((status, baseline)) = s.last.clone() else {
            return;
        };
        if !s.live && !in_progress(&status) {
            return;
        }
        (self.sink)(
            &self.activity_id,
            Feedback {
                baseline,
                status,
                message: String::new(),
                actions: s.actions.clone(),
            },
        );
    }

    /// The stop of action `i`'s old container ended: noted, and said on the action when
    /// nothing else has moved it on (a replacement already activated says it in its message).
    fn stopped(&self, i: usize, kind: Kind, r: &Result<(), String>) {
        self.changed(|s| {
            s.stops[i] = Some(r.clone());
            let a = &mut s.actions[i];
            match (r, a.status.as_str()) {
                (Ok(()), act::UPDATING) => {
                    a.status = act::UPDATE_SUCCESS.into();
                    a.message = STOPPED.into();
                }
                (Err(e), act::UPDATING) => {
                    a.status = act::UPDATE_FAILURE.into();
                    a.message = e.clone();
                }
                (Ok(()), act::ACTIVATION_SUCCESS) if kind == Kind::Recreate => {
                    a.message = STARTED_OLD_STOPPED.into();
                }
                (Err(e), act::ACTIVATION_SUCCESS) if kind == Kind::Recreate => {
                    a.message = started_old_not_stopped(e);
                }
                _ => return false,
            }
            true
        })
    }

    /// A replacement's successor runs: its message says where the old one's stop is.
    fn activated(&self, i: usize) {
        let mut s = self.lock();
        let message = match &s.stops[i] {
            None => STARTED_OLD_STOPPING.to_string(),
            Some(Ok(())) => STARTED.to_string(),
            Some(Err(e)) => started_old_not_stopped(e),
        };
        let a = &mut s.actions[i];
        a.status = act::ACTIVATION_SUCCESS.into();
        a.message = message;
        a.progress = 0;
    }
}

struct Step {
    plan: Planned,
    /// The container made for this step (Create/Recreate), by ID.
    new_id: Option<String>,
    /// The steps whose old container must have stopped before this one starts a container,
    /// with why (`overlap::gates`).
    gate: Vec<(usize, String)>,
    /// The stop of this step's old container (Recreate, Destroy), once begun.
    stopping: Option<Stopping>,
}

pub struct Operation {
    pub activity_id: String,
    steps: Vec<Step>,
    board: Arc<Board>,
    /// Named baselines → their steps; "" is all.
    baselines: Vec<(String, Vec<usize>)>,
    statuses: Vec<(String, String)>,
    /// Said again in the final COMPLETED or INCOMPLETE (e.g. that the apply was resumed).
    pub note: String,
    /// The final COMPLETED or INCOMPLETE has been said.
    pub done: bool,
    /// Standalone: a failure because containerd was unavailable is not final (the caller
    /// applies the desired state again once containerd is back).
    retry_if_unavailable: bool,
}

/// What the phases reach.
pub struct Ctx<R: Runtime> {
    pub manager: Arc<Manager<R>>,
    /// Set when a step failed because containerd was unavailable (not the request's fault).
    pub unavailable: Arc<std::sync::atomic::AtomicBool>,
}

impl<R: Runtime> Clone for Ctx<R> {
    fn clone(&self) -> Self {
        Ctx {
            manager: self.manager.clone(),
            unavailable: self.unavailable.clone(),
        }
    }
}

impl<R: Runtime> Ctx<R> {
    pub fn new(manager: Arc<Manager<R>>) -> Ctx<R> {
        Ctx {
            manager,
            unavailable: Default::default(),
        }
    }

    /// The error's text; notes when containerd was unavailable.
    fn err(&self, e: ManagerError) -> String {
        if matches!(
            e,
            ManagerError::Runtime(crate::runtime::RuntimeError::Unavailable(_))
        ) {
            self.unavailable
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        e.to_string()
    }
}

impl Operation {
    pub fn new(
        activity_id: &str,
        plan: Vec<Planned>,
        domain: &str,
        versions: &dyn Fn(&str) -> String,
        baselines: Vec<(String, Vec<String>)>,
        sink: Sink,
    ) -> Operation {
        let actions = plan
            .iter()
            .map(|p| Action {
                component: Component {
                    id: format!("{domain}:{}", p.name),
                    version: versions(&p.name),
                },
                status: act::IDENTIFIED.into(),
                progress: 0,
                message: match p.kind() {
                    // Kanto's wording, and why (leda-cm's addition).
                    Kind::Recreate | Kind::Update => {
                        format!("{} Reason: {}.", p.kind().message(), p.reason)
                    }
                    _ => p.kind().message().into(),
                },
            })
            .collect();
        let mut named: Vec<(String, Vec<usize>)> = baselines
            .into_iter()
            .map(|(name, members)| {
                let idx = plan
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| members.contains(&p.name))
                    .map(|(i, _)| i)
                    .collect();
                (name, idx)
            })
            .collect();
        let removals: Vec<usize> = plan
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind() == Kind::Destroy)
            .map(|(i, _)| i)
            .collect();
        named.push((format!("{domain}:remove-components"), removals));
        let statuses = named
            .iter()
            .map(|(n, _)| (n.clone(), status::IDENTIFIED.to_string()))
            .collect();
        let gates = super::overlap::gates(&plan);
        let n = plan.len();
        Operation {
            activity_id: activity_id.to_string(),
            steps: plan
                .into_iter()
                .zip(gates)
                .map(|(plan, gate)| Step {
                    plan,
                    new_id: None,
                    gate,
                    stopping: None,
                })
                .collect(),
            board: Arc::new(Board {
                activity_id: activity_id.to_string(),
                sink,
                state: Mutex::new(BoardState {
                    actions,
                    stops: vec![None; n],
                    last: None,
                    live: false,
                    closed: false,
                }),
            }),
            baselines: named,
            statuses,
            note: String::new(),
            done: false,
            retry_if_unavailable: false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Sends a feedback with the current actions.
    pub fn feedback(&self, status: &str, message: &str, baseline: &str) {
        self.board.send(status, message, baseline);
    }

    fn key(baseline: &str) -> &str {
        if baseline == "*" {
            ""
        } else {
            baseline
        }
    }

    /// The steps of a baseline ("" or "*": all), or None when there is no such baseline.
    fn selection(&self, baseline: &str) -> Option<Vec<usize>> {
        match Self::key(baseline) {
            "" => Some((0..self.steps.len()).collect()),
            b => self
                .baselines
                .iter()
                .find(|(n, _)| n == b)
                .map(|(_, i)| i.clone()),
        }
    }

    pub fn status(&self, baseline: &str) -> String {
        let key = Self::key(baseline);
        self.statuses
            .iter()
            .find(|(n, _)| n == key)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| status::IDENTIFIED.to_string())
    }

    fn set_status(&mut self, baseline: &str, s: &str) {
        let key = Self::key(baseline).to_string();
        match self.statuses.iter_mut().find(|(n, _)| *n == key) {
            Some(slot) => slot.1 = s.to_string(),
            None => self.statuses.push((key, s.to_string())),
        }
        self.feedback(s, "", baseline);
    }

    /// Notes an action's result on the board; returns whether it succeeded.
    fn record(&self, i: usize, result: Result<&str, String>, success: &str, failure: &str) -> bool {
        match result {
            Ok(message) => {
                self.board.set(i, success, message);
                true
            }
            Err(e) => {
                self.board.set(i, failure, &e);
                false
            }
        }
    }

    /// Reports the phase's result for the baseline; returns `ok`.
    fn end_phase(&mut self, baseline: &str, ok: bool, success: &str, failure: &str) -> bool {
        self.set_status(baseline, if ok { success } else { failure });
        ok
    }

    /// Checks the command's order (Kanto's table); a command out of order gets its failure
    /// status and changes nothing. Returns the steps to run.
    pub fn admit(&self, command: &str, baseline: &str) -> Result<Vec<usize>, (String, String)> {
        let (expected, failure): (&[&str], &str) = match command {
            "DOWNLOAD" => (&[status::IDENTIFIED], status::DOWNLOAD_FAILURE),
            "UPDATE" => (&[status::DOWNLOAD_SUCCESS], status::UPDATE_FAILURE),
            "ACTIVATE" => (&[status::UPDATE_SUCCESS], status::ACTIVATION_FAILURE),
            "ROLLBACK" => (
                &[
                    status::DOWNLOAD_SUCCESS,
                    status::DOWNLOAD_FAILURE,
                    status::UPDATE_SUCCESS,
                    status::UPDATE_FAILURE,
                    status::ACTIVATION_FAILURE,
                    status::ACTIVATION_SUCCESS,
                ],
                status::ROLLBACK_FAILURE,
            ),
            "CLEANUP" => (&[], status::CLEANUP_FAILURE),
            other => {
                return Err((
                    status::IDENTIFICATION_FAILED.into(),
                    format!("unknown command {other}"),
                ))
            }
        };
        let Some(sel) = self.selection(baseline) else {
            return Err((failure.into(), format!("Unknown baseline {baseline}")));
        };
        let current = self.status(baseline);
        if !expected.is_empty() && !expected.contains(&current.as_str()) {
            return Err((
                failure.into(),
                format!(
                    "{command} is possible only after status {} is reported",
                    expected.join("|")
                ),
            ));
        }
        Ok(sel)
    }

    /// Runs `command` for `baseline` (after `admit`); returns whether it succeeded.
    pub async fn run<R: Runtime>(&mut self, ctx: &Ctx<R>, command: &str, baseline: &str) -> bool {
        let sel = match self.admit(command, baseline) {
            Ok(sel) => sel,
            Err((s, message)) => {
                self.feedback(&s, &message, baseline);
                return false;
            }
        };
        let started = std::time::Instant::now();
        let ok = match command {
            "DOWNLOAD" => self.download(ctx, &sel, baseline).await,
            "UPDATE" => self.update(ctx, &sel, baseline).await,
            "ACTIVATE" => self.activate(ctx, &sel, baseline).await,
            "ROLLBACK" => self.rollback(ctx, &sel, baseline).await,
            _ => self.cleanup(ctx, &sel, baseline).await,
        };
        log::debug!(
            "desired state {}: {command} {} in {:?}",
            self.activity_id,
            if ok { "succeeded" } else { "failed" },
            started.elapsed()
        );
        ok
    }

    async fn download<R: Runtime>(&mut self, ctx: &Ctx<R>, sel: &[usize], baseline: &str) -> bool {
        self.set_status(baseline, status::DOWNLOADING);
        let todo: Vec<(usize, Container)> = sel
            .iter()
            .filter_map(|&i| self.steps[i].plan.to_make().map(|d| (i, d.clone())))
            .collect();
        let jobs = todo.into_iter().map(|(i, desired)| {
            let step = &self.steps[i];
            let board = self.board.clone();
            let ctx = ctx.clone();
            let refresh = step.plan.refresh_image;
            let temp = if step.plan.kind() == Kind::Recreate {
                format!("{}{NEXT}", step.plan.name)
            } else {
                step.plan.name.clone()
            };
            // What it waits for is stopped before it starts: their ports are not in its way.
            let leaving: Vec<String> = step
                .gate
                .iter()
                .map(|(j, _)| self.steps[*j].plan.current_id())
                .collect();
            let sink_progress = {
                let board = board.clone();
                Arc::new(move |p: Progress| {
                    let pct = (p.done.min(p.total) * 100)
                        .checked_div(p.total)
                        .unwrap_or(0) as u8;
                    board.progress(i, pct);
                }) as ProgressFn
            };
            async move {
                board.set(
                    i,
                    act::DOWNLOADING,
                    "Downloading the image and creating the new container.",
                );
                let result =
                    create_fresh(&ctx, desired, &temp, refresh, sink_progress, &leaving).await;
                (i, result)
            }
        });
        // Progress feedback while the downloads run, at most twice a second.
        // Progress feedback while the downloads run: when one ends, and at most twice a
        // second in between (the pull's byte counts, per action).
        let mut downloads: FuturesUnordered<_> = jobs.collect();
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.reset();
        let mut last = self.board.snapshot();
        let mut results = Vec::with_capacity(downloads.len());
        loop {
            let finished = tokio::select! {
                r = downloads.next() => match r {
                    Some(r) => {
                        results.push(r);
                        downloads.is_empty()
                    }
                    None => true,
                },
                _ = tick.tick() => false,
            };
            let snap = self.board.snapshot();
            if snap != last {
                self.feedback(status::DOWNLOADING, "", baseline);
                last = snap;
            }
            if finished {
                break;
            }
        }
        let mut ok = true;
        for (i, r) in results {
            match r {
                Ok(id) => {
                    self.steps[i].new_id = Some(id);
                    self.board
                        .set(i, act::DOWNLOAD_SUCCESS, "New container created.");
                }
                Err(e) => {
                    ok = false;
                    self.board.set(i, act::DOWNLOAD_FAILURE, &e);
                }
            }
        }
        self.end_phase(
            baseline,
            ok,
            status::DOWNLOAD_SUCCESS,
            status::DOWNLOAD_FAILURE,
        )
    }

    async fn update<R: Runtime>(&mut self, ctx: &Ctx<R>, sel: &[usize], baseline: &str) -> bool {
        self.set_status(baseline, status::UPDATING);
        let mut ok = true;
        // A replaced container gives its name up before it is stopped, so that its successor
        // can take it while it stops (a stop holds the container until it ends).
        for &i in sel {
            let step = &self.steps[i];
            let Change::Recreate { current, .. } = &step.plan.change else {
                continue;
            };
            if step.stopping.is_some() {
                continue;
            }
            self.board.set(i, act::UPDATING, step.plan.kind().message());
            if let Err(e) = rename_aside(ctx, &step.plan.name, &current.container_id).await {
                self.board.set(i, act::UPDATE_FAILURE, &e);
                ok = false;
                break;
            }
        }
        if !ok {
            return self.end_phase(
                baseline,
                false,
                status::UPDATE_SUCCESS,
                status::UPDATE_FAILURE,
            );
        }
        // Every old container's stop begins at once, each in a task of its own.
        for &i in sel {
            if matches!(self.steps[i].plan.kind(), Kind::Recreate | Kind::Destroy)
                && self.steps[i].stopping.is_none()
            {
                self.begin_stop(ctx, i);
            }
        }
        for &i in sel {
            let step = &self.steps[i];
            let Change::Update {
                current,
                desired: d,
            } = &step.plan.change
            else {
                continue;
            };
            self.board.set(i, act::UPDATING, step.plan.kind().message());
            let opts = UpdateOptions {
                restart_policy: Some(d.host_config.restart_policy.clone()),
                resources: d.host_config.resources.clone(),
            };
            let result = ctx
                .manager
                .update(&current.container_id, opts)
                .await
                .map(|_| "Container instance is updated with new configuration.")
                .map_err(|e| ctx.err(e));
            if !self.record(i, result, act::UPDATE_SUCCESS, act::UPDATE_FAILURE) {
                ok = false;
                break;
            }
        }
        // The stops go on: each start waits for those in its way (activate), the rest run
        // beside the new containers, and cleanup removes each old one when it has stopped.
        self.end_phase(baseline, ok, status::UPDATE_SUCCESS, status::UPDATE_FAILURE)
    }

    /// Starts stopping step `i`'s old container in a task of its own; the board hears when
    /// it has stopped.
    fn begin_stop<R: Runtime>(&mut self, ctx: &Ctx<R>, i: usize) {
        let step = &self.steps[i];
        let kind = step.plan.kind();
        let id = step.plan.current_id();
        self.board.set(i, act::UPDATING, kind.message());
        let board = self.board.clone();
        let ctx = ctx.clone();
        let task = tokio::spawn(async move {
            let r = stop_if_live(&ctx, &id).await;
            board.stopped(i, kind, &r);
            r
        });
        let stopping = task
            .map(|joined| {
                joined.unwrap_or_else(|e| Err(format!("stopping the old container: {e}")))
            })
            .boxed()
            .shared();
        self.steps[i].stopping = Some(stopping);
    }

    async fn activate<R: Runtime>(&mut self, ctx: &Ctx<R>, sel: &[usize], baseline: &str) -> bool {
        self.set_status(baseline, status::ACTIVATING);
        let jobs = sel
            .iter()
            .copied()
            .filter(|&i| self.steps[i].plan.kind() != Kind::Destroy)
            .map(|i| {
                let step = &self.steps[i];
                let ctx = ctx.clone();
                let board = self.board.clone();
                let kind = step.plan.kind();
                let name = step.plan.name.clone();
                let current = step.plan.current().cloned();
                let new_id = step.new_id.clone();
                let gate = step.plan.to_make().and_then(|c| c.extras().health_gate);
                // The old containers it must not run beside, whose stop has begun.
                let gates: Vec<(String, String, Stopping)> = step
                    .gate
                    .iter()
                    .filter_map(|(j, why)| {
                        let s = self.steps[*j].stopping.clone()?;
                        Some((self.steps[*j].plan.name.clone(), why.clone(), s))
                    })
                    .collect();
                async move {
                    board.set(i, act::ACTIVATING, kind.message());
                    // A kept container that runs starts nothing: it waits for nobody.
                    let runs = matches!(kind, Kind::Check | Kind::Update)
                        && current
                            .as_ref()
                            .and_then(|c| ctx.manager.get(&c.container_id).ok())
                            .is_some_and(|c| c.state.running);
                    let gates = if runs { Vec::new() } else { gates };
                    for (old, why, stopping) in gates {
                        if let Err(e) = stopping.await {
                            return (
                                i,
                                Err(format!(
                                    "not started: the old container {old} could not be stopped ({why}): {e}"
                                )),
                            );
                        }
                    }
                    let r = match kind {
                        Kind::Create => start(&ctx, new_id.as_deref()).await.map(|_| STARTED),
                        Kind::Recreate => {
                            swap_and_start(&ctx, &name, current.as_ref(), new_id.as_deref())
                                .await
                                .map(|_| STARTED)
                        }
                        Kind::Check => ensure_running(&ctx, current.as_ref())
                            .await
                            .map(|_| "Existing container instance is running."),
                        Kind::Update => ensure_running(&ctx, current.as_ref())
                            .await
                            .map(|_| kind.message()),
                        Kind::Destroy => Ok(""),
                    };
                    // The new container must hold up before it counts as activated.
                    let r = match (r, &gate, new_id.as_deref()) {
                        (Ok(message), Some(gate), Some(id)) => {
                            let waiting = format!(
                                "Started; waiting for the health gate: {}.",
                                describe(gate)
                            );
                            board.say(i, act::ACTIVATING, &waiting);
                            hold_up(&ctx, id, gate).await.map(|_| message)
                        }
                        (r, _, _) => r,
                    };
                    (i, r)
                }
            });
        // Each action is said when its container runs (or fails to).
        let mut jobs: FuturesUnordered<_> = jobs.collect();
        let mut ok = true;
        while let Some((i, r)) = jobs.next().await {
            if r.is_ok() && self.steps[i].plan.kind() == Kind::Recreate {
                self.board.activated(i);
            } else {
                ok &= self.record(i, r, act::ACTIVATION_SUCCESS, act::ACTIVATION_FAILURE);
            }
            if !jobs.is_empty() {
                self.feedback(status::ACTIVATING, "", baseline);
            }
        }
        self.end_phase(
            baseline,
            ok,
            status::ACTIVATION_SUCCESS,
            status::ACTIVATION_FAILURE,
        )
    }

    /// Waits for the stop of step `i`'s old container, when it has begun.
    async fn stopped(&self, i: usize) -> Option<Result<(), String>> {
        match self.steps[i].stopping.clone() {
            Some(s) => Some(s.await),
            None => None,
        }
    }

    async fn rollback<R: Runtime>(&mut self, ctx: &Ctx<R>, sel: &[usize], baseline: &str) -> bool {
        self.set_status(baseline, status::ROLLBACK);
        // The failure that made the rollback needed stays in the action's message: the
        // rollback's outcome alone does not tell an operator why (Kanto drops it).
        let before = self.board.snapshot();
        let mut ok = true;
        for &i in sel {
            let reason = before
                .get(i)
                .filter(|a| a.status.ends_with("_FAILURE") && !a.message.is_empty())
                .map(|a| a.message.clone());
            // An old container still stopping comes back once it has stopped.
            let _ = self.stopped(i).await;
            let step = &self.steps[i];
            let name = step.plan.name.clone();
            let current = step.plan.current().cloned();
            let result: Result<&str, String> = match step.plan.kind() {
                Kind::Create => remove_by_id(ctx, step.new_id.as_deref()).await.map(|_| "Update unsuccessful, but rollback succeeded - new container instance destroyed."),
                Kind::Recreate => restore_old(ctx, &name, current.as_ref(), step.new_id.as_deref())
                    .await
                    .map(|_| "Update unsuccessful, but rollback succeeded - new container instance destroyed, old container instance restored."),
                Kind::Update => {
                    let Change::Update { current: c, .. } = &step.plan.change else {
                        continue;
                    };
                    let opts = UpdateOptions {
                        restart_policy: Some(c.host_config.restart_policy.clone()),
                        resources: c.host_config.resources.clone(),
                    };
                    match ctx.manager.update(&c.container_id, opts).await {
                        Ok(_) => ensure_running(ctx, current.as_ref()).await.map(|_| "Update unsuccessful, but rollback succeeded - container configuration restored from older instance."),
                        Err(e) => Err(ctx.err(e)),
                    }
                }
                Kind::Destroy => ensure_running(ctx, current.as_ref()).await.map(|_| "Update unsuccessful, but rollback succeeded - container kept."),
                Kind::Check => continue,
            };
            let result = result.map(|m| match &reason {
                Some(r) => format!("{m} Reason: {r}"),
                None => m.to_string(),
            });
            ok &= self.record(
                i,
                result.as_deref().map_err(Clone::clone),
                act::UPDATE_FAILURE,
                act::UPDATE_FAILURE,
            );
        }
        self.end_phase(
            baseline,
            ok,
            status::ROLLBACK_SUCCESS,
            status::ROLLBACK_FAILURE,
        )
    }

    /// Removes the replaced and destroyed containers when the baseline was activated, then
    /// says COMPLETED or INCOMPLETE once every baseline is cleaned up.
    async fn cleanup<R: Runtime>(&mut self, ctx: &Ctx<R>, sel: &[usize], baseline: &str) -> bool {
        let activated = self.status(baseline) == status::ACTIVATION_SUCCESS;
        let mut ok = true;
        // Each old container goes once its stop has ended (all at once); one not activated
        // stays, but its stop ends first, so that nothing is said after the operation's end.
        let jobs = sel
            .iter()
            .copied()
            .filter(|&i| matches!(self.steps[i].plan.kind(), Kind::Recreate | Kind::Destroy))
            .map(|i| {
                let stopping = self.steps[i].stopping.clone();
                let id = self.steps[i].plan.current_id();
                let ctx = ctx.clone();
                async move {
                    if let Some(s) = stopping {
                        // A failed stop: the removal kills it.
                        let _ = s.await;
                    }
                    if !activated {
                        return (i, id, None);
                    }
                    let r = remove_by_id(&ctx, Some(&id)).await;
                    (i, id, Some(r))
                }
            });
        let mut jobs: FuturesUnordered<_> = jobs.collect();
        while let Some((i, id, r)) = jobs.next().await {
            let Some(r) = r else {
                continue;
            };
            let destroy = self.steps[i].plan.kind() == Kind::Destroy;
            if let Err(e) = &r {
                ok = false;
                log::warn!("removing the old container {id}: {e}");
            }
            // Said once it is gone (or could not be removed).
            self.board.changed(|s| {
                let a = &mut s.actions[i];
                match (&r, destroy) {
                    (Ok(()), true) => {
                        a.status = act::REMOVAL_SUCCESS.into();
                        a.message = "Old container instance is removed.".into();
                    }
                    (Err(e), true) => {
                        a.status = act::REMOVAL_FAILURE.into();
                        a.message = e.clone();
                    }
                    (Ok(()), false) => a.message = STARTED_OLD_REMOVED.into(),
                    (Err(e), false) => {
                        a.message = format!(
                        "New container instance is started; the old one could not be removed: {e}"
                    )
                    }
                }
                true
            });
        }
        let result = if ok {
            status::CLEANUP_SUCCESS
        } else {
            status::CLEANUP_FAILURE
        };
        self.feedback(result, "", baseline);
        let key = Self::key(baseline).to_string();
        let finished = if key.is_empty() {
            self.statuses.clear();
            true
        } else {
            self.statuses.retain(|(n, _)| *n != key);
            self.statuses.iter().all(|(n, _)| n.is_empty())
        };
        if finished {
            let complete = activated && ok;
            if !complete
                && self.retry_if_unavailable
                && ctx.unavailable.load(std::sync::atomic::Ordering::SeqCst)
            {
                // Not the end: the caller applies it again once containerd is back.
                return false;
            }
            let note = self.note.clone();
            self.done = true;
            self.feedback(
                if complete {
                    status::COMPLETED
                } else {
                    status::INCOMPLETE
                },
                &note,
                "",
            );
        }
        ok && activated
    }

    /// The whole flow without an orchestrator: download, update, activate, cleanup; a
    /// failure rolls back. `superseded` is checked between phases.
    pub async fn run_standalone<R: Runtime>(
        &mut self,
        ctx: &Ctx<R>,
        superseded: &(dyn Fn() -> bool + Sync),
    ) -> Outcome {
        use std::sync::atomic::Ordering;
        ctx.unavailable.store(false, Ordering::SeqCst);
        self.retry_if_unavailable = true;
        self.board.lock().live = true;
        for phase in ["DOWNLOAD", "UPDATE", "ACTIVATE"] {
            if superseded() {
                return Outcome::Superseded;
            }
            let ok = self.run(ctx, phase, "").await;
            crate::fault::agent_stall_after(&self.status(""), superseded).await;
            if !ok {
                if ctx.unavailable.load(Ordering::SeqCst) {
                    // Rolling back needs containerd too: the caller waits for it instead.
                    return Outcome::Unavailable;
                }
                self.run(ctx, "ROLLBACK", "").await;
                self.run(ctx, "CLEANUP", "").await;
                return Outcome::Incomplete;
            }
        }
        if self.run(ctx, "CLEANUP", "").await {
            Outcome::Completed
        } else if ctx.unavailable.load(Ordering::SeqCst) {
            Outcome::Unavailable
        } else {
            Outcome::Incomplete
        }
    }

    /// containerd stayed away: roll back and clean up what can be, and end INCOMPLETE.
    pub async fn give_up<R: Runtime>(&mut self, ctx: &Ctx<R>) {
        self.retry_if_unavailable = false;
        if self.status("") != status::ACTIVATION_SUCCESS {
            self.run(ctx, "ROLLBACK", "").await;
        }
        self.run(ctx, "CLEANUP", "").await;
    }

    /// Names of the containers this operation creates or replaces.
    pub fn touched(&self) -> HashSet<String> {
        self.steps.iter().map(|s| s.plan.name.clone()).collect()
    }

    pub fn action_status(&self, i: usize) -> String {
        self.board.status(i)
    }
}

impl Drop for Operation {
    /// Stops still running say nothing for an operation that is gone.
    fn drop(&mut self) {
        self.board.close();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Incomplete,
    Superseded,
    /// A phase failed because containerd was unavailable; nothing rolled back yet.
    Unavailable,
}

/// Tidies what an interrupted replacement left (`<name>.next`, `<name>.prev`): run before
/// planning, so a resumed apply starts from what exists.
pub async fn tidy_leftovers<R: Runtime>(manager: &Arc<Manager<R>>) {
    for leftover in super::diff::leftovers(&manager.list(), NEXT, PREV) {
        let result = match &leftover {
            super::diff::Leftover::Remove { id, name } => {
                log::info!("removing {name} left by an interrupted update");
                manager.remove(id, true).await
            }
            super::diff::Leftover::RenameBack { id, to } => {
                log::info!("naming container {id} {to} again after an interrupted update");
                manager.rename(id, to).await.map(|_| ())
            }
            super::diff::Leftover::RollBack {
                new_id,
                old_id,
                name,
            } => {
                log::warn!(
                    "rolling back the update of {name} that a restart interrupted before its health gate passed: {new_id} goes, {old_id} runs again"
                );
                roll_back_unproven(manager, new_id, old_id, name).await
            }
        };
        if let Err(e) = result {
            log::warn!("tidying after an interrupted update: {e}");
        }
    }
}

async fn roll_back_unproven<R: Runtime>(
    manager: &Arc<Manager<R>>,
    new_id: &str,
    old_id: &str,
    name: &str,
) -> Result<(), ManagerError> {
    manager.remove(new_id, true).await?;
    manager.rename(old_id, name).await?;
    let old = manager.get(old_id)?;
    if old.state.paused {
        manager.resume(old_id).await?;
    } else if !old.state.running {
        manager.start(old_id).await?;
    }
    Ok(())
}

/// Creates `desired` as `name` (pulling its image again first when its tag moved),
/// replacing a leftover of that name from an interrupted run.
async fn create_fresh<R: Runtime>(
    ctx: &Ctx<R>,
    mut desired: Container,
    name: &str,
    refresh_image: bool,
    progress: ProgressFn,
    leaving: &[String],
) -> Result<String, String> {
    if refresh_image {
        ctx.manager
            .pull_image(&desired.image.name, Some(progress.clone()))
            .await
            .map_err(|e| ctx.err(e))?;
    }
    if let Ok(old) = ctx.manager.find_by_name(name) {
        ctx.manager
            .remove(&old.container_id, true)
            .await
            .map_err(|e| ctx.err(e))?;
    }
    if desired.container_name != name {
        // A successor next to its predecessor: an ID of its own (a manifest's fixed ID is
        // kept only when the container is first created).
        desired.container_id.clear();
    }
    desired.container_name = name.to_string();
    // Keep the hostname and domain of the final name, not of the temporary one.
    ctx.manager
        .create_replacing(desired, Some(progress), leaving)
        .await
        .map(|c| c.container_id)
        .map_err(|e| ctx.err(e))
}

fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// What a gate waits for, for the feedback.
fn describe(gate: &crate::model::HealthGate) -> String {
    let mut what = Vec::new();
    if gate.uptime_ms > 0 {
        what.push(format!("running for {}", seconds(gate.uptime_ms)));
    }
    if !gate.cmd.is_empty() {
        what.push(format!("{:?} exiting 0", gate.cmd.join(" ")));
    }
    what.join(" and ")
}

/// Polling period of a health gate: the manager's view is in memory.
const GATE_POLL: Duration = Duration::from_millis(100);

/// The health gate: the container just started must keep running, with the same task (not
/// restarted by its policy), for `gate.uptime_ms`, and its health command (if any) must exit
/// 0 once before `gate.retries` runs in a row have failed. What it sees is the run's health
/// in the container's state (starting, then healthy or unhealthy); a pass is persisted there
/// before this returns (before it is said: a restart keeps the container).
async fn hold_up<R: Runtime>(
    ctx: &Ctx<R>,
    id: &str,
    gate: &crate::model::HealthGate,
) -> Result<(), String> {
    let first = ctx.manager.get(id).map_err(|e| ctx.err(e))?;
    let (pid, started) = (first.state.pid, first.state.started_at.clone());
    let health = |status, failing_streak, detail: &str| Health {
        status,
        failing_streak,
        detail: detail.to_string(),
    };
    let run = started.as_str();
    let say = |h: Health| async move {
        ctx.manager
            .set_health(id, run, h)
            .await
            .map_err(|e| ctx.err(e))
    };
    say(health(HealthStatus::Starting, 0, "")).await?;
    let fail = |failures, why: String| async move {
        // Said before the gate's failure is reported; the run may be gone already.
        match say(health(HealthStatus::Unhealthy, failures, &why)).await {
            Ok(()) => Err(why),
            Err(e) => Err(format!("{why} (its health could not be recorded: {e})")),
        }
    };
    let begun = tokio::time::Instant::now();
    let deadline = begun + Duration::from_millis(gate.uptime_ms);
    let interval = Duration::from_millis(gate.interval_ms.max(1));
    let mut healthy = gate.cmd.is_empty();
    let mut failures = 0u32;
    let mut next_check = begun + interval;
    loop {
        let c = ctx.manager.get(id).map_err(|e| ctx.err(e))?;
        if !c.state.running || c.state.pid != pid || c.state.started_at != started {
            let how = if c.state.running {
                "was restarted".to_string()
            } else {
                format!("exited with code {}", c.state.exit_code)
            };
            return fail(
                failures,
                format!(
                    "health gate failed: the container {how} {} after its start; it must run for {}",
                    seconds(begun.elapsed().as_millis() as u64),
                    seconds(gate.uptime_ms)
                ),
            )
            .await;
        }
        let now = tokio::time::Instant::now();
        if !healthy && now >= next_check {
            let timeout = Duration::from_millis(gate.timeout_ms.max(1));
            let outcome = match ctx.manager.exec(id, &gate.cmd, timeout).await {
                Ok(0) => None,
                Ok(code) => Some(format!("exited with code {code}")),
                Err(e) => Some(ctx.err(e)),
            };
            match outcome {
                None => {
                    healthy = true;
                    if failures > 0 {
                        say(health(HealthStatus::Starting, 0, "")).await?;
                    }
                }
                Some(why) => {
                    failures += 1;
                    let cmd = gate.cmd.join(" ");
                    if failures >= gate.retries {
                        return fail(
                            failures,
                            format!(
                                "health gate failed: the health command {cmd:?} failed {failures} times in a row (last: {why})"
                            ),
                        )
                        .await;
                    }
                    let last = format!("the health command {cmd:?} {why}");
                    say(health(HealthStatus::Starting, failures, &last)).await?;
                }
            }
            next_check = tokio::time::Instant::now() + interval;
            continue;
        }
        if healthy && now >= deadline {
            return say(health(HealthStatus::Healthy, 0, "")).await;
        }
        let wake = if healthy { deadline } else { next_check };
        tokio::time::sleep(GATE_POLL.min(wake.saturating_duration_since(now))).await;
    }
}

async fn stop_if_live<R: Runtime>(ctx: &Ctx<R>, id: &str) -> Result<(), String> {
    match ctx.manager.get(id) {
        Ok(c) if c.is_active() => ctx
            .manager
            .stop(id, StopOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| ctx.err(e)),
        Ok(_) | Err(ManagerError::NotFound(_)) => Ok(()),
        Err(e) => Err(ctx.err(e)),
    }
}

async fn start<R: Runtime>(ctx: &Ctx<R>, id: Option<&str>) -> Result<(), String> {
    let id = id.ok_or("the new container was not created")?;
    let c = ctx.manager.get(id).map_err(|e| ctx.err(e))?;
    if c.state.status == Status::Running {
        return Ok(());
    }
    ctx.manager
        .start(id)
        .await
        .map(|_| ())
        .map_err(|e| ctx.err(e))
}

async fn ensure_running<R: Runtime>(
    ctx: &Ctx<R>,
    current: Option<&Container>,
) -> Result<(), String> {
    let c = current.ok_or("no container to check")?;
    let now = ctx.manager.get(&c.container_id).map_err(|e| ctx.err(e))?;
    if now.state.running {
        Ok(())
    } else if now.state.paused {
        ctx.manager
            .resume(&c.container_id)
            .await
            .map(|_| ())
            .map_err(|e| ctx.err(e))
    } else {
        ctx.manager
            .start(&c.container_id)
            .await
            .map(|_| ())
            .map_err(|e| ctx.err(e))
    }
}

/// The old container of a replacement named `<name>.prev`, when it still has `name`.
async fn rename_aside<R: Runtime>(ctx: &Ctx<R>, name: &str, id: &str) -> Result<(), String> {
    match ctx.manager.get(id) {
        Ok(c) if c.container_name == name => ctx
            .manager
            .rename(id, &format!("{name}{PREV}"))
            .await
            .map(|_| ())
            .map_err(|e| ctx.err(e)),
        Ok(_) | Err(ManagerError::NotFound(_)) => Ok(()),
        Err(e) => Err(ctx.err(e)),
    }
}

/// Old → `<name>.prev` (update did that already), new → `<name>`, start the new one.
async fn swap_and_start<R: Runtime>(
    ctx: &Ctx<R>,
    name: &str,
    old: Option<&Container>,
    new_id: Option<&str>,
) -> Result<(), String> {
    let new_id = new_id.ok_or("the new container was not created")?;
    if let Some(old) = old {
        rename_aside(ctx, name, &old.container_id).await?;
    }
    if ctx
        .manager
        .get(new_id)
        .map_err(|e| ctx.err(e))?
        .container_name
        != name
    {
        ctx.manager
            .rename(new_id, name)
            .await
            .map_err(|e| ctx.err(e))?;
    }
    start(ctx, Some(new_id)).await
}

async fn remove_by_id<R: Runtime>(ctx: &Ctx<R>, id: Option<&str>) -> Result<(), String> {
    match id {
        None => Ok(()),
        Some(id) => match ctx.manager.remove(id, true).await {
            Ok(()) | Err(ManagerError::NotFound(_)) => Ok(()),
            Err(e) => Err(ctx.err(e)),
        },
    }
}

/// The new one removed, the old one named `name` again and running.
async fn restore_old<R: Runtime>(
    ctx: &Ctx<R>,
    name: &str,
    old: Option<&Container>,
    new_id: Option<&str>,
) -> Result<(), String> {
    remove_by_id(ctx, new_id).await?;
    let old = old.ok_or("no old container to restore")?;
    let now = ctx.manager.get(&old.container_id).map_err(|e| ctx.err(e))?;
    if now.container_name != name {
        ctx.manager
            .rename(&old.container_id, name)
            .await
            .map_err(|e| ctx.err(e))?;
    }
    ensure_running(ctx, Some(old)).await
}
