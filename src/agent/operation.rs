//! One update operation: the identified actions and the phases that resolve them
//! (download, update, activate, rollback, cleanup), with the feedback of each step.
//!
//! Safe replacement: a container to recreate gets its successor created next to it (as
//! `<name>.next`) during download; update stops the old one; activate renames the old one to
//! `<name>.prev`, the new one to `<name>`, and starts it. Rollback undoes that (the new one
//! removed, the old one renamed back and started); cleanup removes the old ones once the new
//! ones run. Every step checks what is there first, so running a phase again is harmless.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use futures_util::stream::{FuturesUnordered, StreamExt};

use super::diff::{Change, Kind, Planned};
use super::messages::{action_status as act, status, Action, Component, Feedback};
use crate::manager::{Manager, ManagerError, StopOptions, UpdateOptions};
use crate::model::{Container, Status};
use crate::runtime::{Progress, ProgressFn, Runtime};

/// Where feedback goes: (activity id, feedback).
pub type Sink = Arc<dyn Fn(&str, Feedback) + Send + Sync>;

pub const NEXT: &str = ".next";
pub const PREV: &str = ".prev";

/// The feedback actions, shared with the steps running at once.
#[derive(Default)]
struct Board {
    actions: Mutex<Vec<Action>>,
}

impl Board {
    fn set(&self, i: usize, status: &str, message: &str) {
        let mut a = self.actions.lock().unwrap_or_else(|p| p.into_inner());
        a[i].status = status.to_string();
        a[i].message = message.to_string();
        if status != act::DOWNLOADING {
            a[i].progress = 0;
        }
    }

    fn progress(&self, i: usize, pct: u8) -> bool {
        let mut a = self.actions.lock().unwrap_or_else(|p| p.into_inner());
        let changed = a[i].progress != pct;
        a[i].progress = pct;
        changed
    }

    fn snapshot(&self) -> Vec<Action> {
        self.actions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn status(&self, i: usize) -> String {
        self.actions.lock().unwrap_or_else(|p| p.into_inner())[i]
            .status
            .clone()
    }
}

struct Step {
    plan: Planned,
    /// The container made for this step (Create/Recreate), by ID.
    new_id: Option<String>,
}

pub struct Operation {
    pub activity_id: String,
    steps: Vec<Step>,
    board: Arc<Board>,
    /// Named baselines → their steps; "" is all.
    baselines: Vec<(String, Vec<usize>)>,
    statuses: Vec<(String, String)>,
    sink: Sink,
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
        Operation {
            activity_id: activity_id.to_string(),
            steps: plan
                .into_iter()
                .map(|plan| Step { plan, new_id: None })
                .collect(),
            board: Arc::new(Board {
                actions: Mutex::new(actions),
            }),
            baselines: named,
            statuses,
            sink,
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
        (self.sink)(
            &self.activity_id,
            Feedback {
                baseline: baseline.to_string(),
                status: status.to_string(),
                message: message.to_string(),
                actions: self.board.snapshot(),
            },
        );
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
                let result = create_fresh(&ctx, desired, &temp, refresh, sink_progress).await;
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
        for &i in sel {
            let step = &self.steps[i];
            let result = match &step.plan.change {
                Change::Recreate { current, .. } | Change::Destroy { current } => {
                    self.board.set(i, act::UPDATING, step.plan.kind().message());
                    stop_if_live(ctx, &current.container_id)
                        .await
                        .map(|_| "Old container instance is stopped.")
                }
                Change::Update {
                    current,
                    desired: d,
                } => {
                    self.board.set(i, act::UPDATING, step.plan.kind().message());
                    let id = current.container_id.clone();
                    let opts = UpdateOptions {
                        restart_policy: Some(d.host_config.restart_policy.clone()),
                        resources: d.host_config.resources.clone(),
                    };
                    ctx.manager
                        .update(&id, opts)
                        .await
                        .map(|_| "Container instance is updated with new configuration.")
                        .map_err(|e| ctx.err(e))
                }
                _ => continue,
            };
            if !self.record(i, result, act::UPDATE_SUCCESS, act::UPDATE_FAILURE) {
                ok = false;
                break;
            }
        }
        self.end_phase(baseline, ok, status::UPDATE_SUCCESS, status::UPDATE_FAILURE)
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
                async move {
                    board.set(i, act::ACTIVATING, kind.message());
                    let r = match kind {
                        Kind::Create => start(&ctx, new_id.as_deref())
                            .await
                            .map(|_| "New container instance is started."),
                        Kind::Recreate => {
                            swap_and_start(&ctx, &name, current.as_ref(), new_id.as_deref())
                                .await
                                .map(|_| "New container instance is started.")
                        }
                        Kind::Check => ensure_running(&ctx, current.as_ref())
                            .await
                            .map(|_| "Existing container instance is running."),
                        Kind::Update => ensure_running(&ctx, current.as_ref())
                            .await
                            .map(|_| kind.message()),
                        Kind::Destroy => Ok(""),
                    };
                    (i, r)
                }
            });
        let mut ok = true;
        for (i, r) in join_all(jobs).await {
            ok &= self.record(i, r, act::ACTIVATION_SUCCESS, act::ACTIVATION_FAILURE);
        }
        self.end_phase(
            baseline,
            ok,
            status::ACTIVATION_SUCCESS,
            status::ACTIVATION_FAILURE,
        )
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
        if activated {
            for &i in sel {
                let step = &self.steps[i];
                if !matches!(step.plan.kind(), Kind::Recreate | Kind::Destroy) {
                    continue;
                }
                let id = step.plan.current_id();
                let r = match ctx.manager.remove(&id, true).await {
                    Ok(()) | Err(ManagerError::NotFound(_)) => Ok(()),
                    Err(e) => Err(ctx.err(e)),
                };
                if step.plan.kind() == Kind::Destroy {
                    match r {
                        Ok(()) => self.board.set(
                            i,
                            act::REMOVAL_SUCCESS,
                            "Old container instance is removed.",
                        ),
                        Err(e) => {
                            ok = false;
                            self.board.set(i, act::REMOVAL_FAILURE, &e);
                        }
                    }
                } else if let Err(e) = r {
                    ok = false;
                    log::warn!("removing the replaced container {id}: {e}");
                }
            }
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
        };
        if let Err(e) = result {
            log::warn!("tidying after an interrupted update: {e}");
        }
    }
}

/// Creates `desired` as `name` (pulling its image again first when its tag moved),
/// replacing a leftover of that name from an interrupted run.
async fn create_fresh<R: Runtime>(
    ctx: &Ctx<R>,
    mut desired: Container,
    name: &str,
    refresh_image: bool,
    progress: ProgressFn,
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
        .create(desired, Some(progress))
        .await
        .map(|c| c.container_id)
        .map_err(|e| ctx.err(e))
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

/// Old → `<name>.prev`, new → `<name>`, start the new one.
async fn swap_and_start<R: Runtime>(
    ctx: &Ctx<R>,
    name: &str,
    old: Option<&Container>,
    new_id: Option<&str>,
) -> Result<(), String> {
    let new_id = new_id.ok_or("the new container was not created")?;
    if let Some(old) = old {
        if ctx
            .manager
            .get(&old.container_id)
            .map(|c| c.container_name == name)
            .unwrap_or(false)
        {
            ctx.manager
                .rename(&old.container_id, &format!("{name}{PREV}"))
                .await
                .map_err(|e| ctx.err(e))?;
        }
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
