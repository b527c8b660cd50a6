//! Supervision: task exits and OOM kills from containerd's event stream, restart policies
//! with back-off, live restore (reconcile with what containerd has), metrics and image
//! clean-up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{lock, now, Manager, ManagerError};
use crate::model::reconcile::{self, Action, Observed};
use crate::model::restart::{self, Decision, Exit};
use crate::model::{timestamp, Container};
use crate::runtime::{Metrics, Runtime, RuntimeEvent, TaskStatus};
use crate::store;

/// Last time each image was in use, for the expiry (`<state>/images.json`).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ImageUse {
    version: u32,
    /// Image name → seconds since the epoch.
    last_used: BTreeMap<String, u64>,
}

const IMAGE_USE_FILE: &str = "images.json";

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ran_for(c: &Container, until: SystemTime) -> Duration {
    humantime::parse_rfc3339_weak(&c.state.started_at)
        .ok()
        .and_then(|start| until.duration_since(start).ok())
        .unwrap_or_default()
}

impl<R: Runtime> Manager<R> {
    /// Handles one event (spawned per event by the daemon; waits for the container's lock).
    pub async fn on_event(self: &Arc<Self>, event: RuntimeEvent) {
        match event {
            RuntimeEvent::TaskOom { id } => {
                if let Ok(entry) = self.entry(&id) {
                    lock(&entry.control).oom = true;
                    log::warn!("container {id} ran out of memory");
                }
            }
            RuntimeEvent::TaskExit {
                id,
                pid,
                exit_status,
                exited_at,
            } => {
                self.on_exit(
                    &id,
                    pid,
                    exit_status as i64,
                    exited_at.unwrap_or_else(SystemTime::now),
                )
                .await
            }
            RuntimeEvent::Reconnected => {
                if let Err(e) = self.reconcile().await {
                    log::warn!("reconciling with containerd failed: {e}");
                }
            }
        }
    }

    async fn on_exit(self: &Arc<Self>, id: &str, pid: u32, exit_code: i64, at: SystemTime) {
        let Ok(entry) = self.entry(id) else { return };
        let mut c = entry.op.lock().await;
        // A stop or remove already handled it, or it is an old task's exit.
        if lock(&entry.control).removed || !c.is_active() || (pid != 0 && c.state.pid != pid as i64)
        {
            return;
        }
        if let Err(e) = self.delete_task(id).await {
            log::warn!("collecting the exited task of container {id} failed: {e}");
        }
        self.disconnect(&mut c).await;
        let oom = std::mem::take(&mut lock(&entry.control).oom);
        let ran = ran_for(&c, at);
        c.state = c.state.exited(exit_code, oom, &timestamp(at));
        log::info!(
            "container {id} ({}) exited with code {exit_code}{} after {ran:?}",
            c.container_name,
            if oom { " (OOM killed)" } else { "" }
        );
        self.schedule_restart(&entry, &mut c, ran);
        if let Err(e) = self.commit(&entry, &c).await {
            log::error!("{e}");
        }
    }

    /// Applies the restart policy to an exited `c` (under its lock).
    fn schedule_restart(
        self: &Arc<Self>,
        entry: &Arc<super::Entry>,
        c: &mut Container,
        ran: Duration,
    ) {
        let (decision, generation) = {
            let ctl = lock(&entry.control);
            let d = restart::decide(
                &c.host_config.restart_policy,
                Exit {
                    exit_code: c.state.exit_code,
                    manually_stopped: c.manually_stopped,
                    ran_for: ran,
                    restarts: c.restart_count,
                    previous_backoff: ctl.backoff,
                },
            );
            (d, ctl.generation)
        };
        let Decision::RestartAfter(delay) = decision else {
            return;
        };
        lock(&entry.control).backoff = delay;
        c.state = c.state.restarting();
        let me = self.clone();
        let id = c.container_id.clone();
        log::debug!("restarting container {id} in {delay:?}");
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            me.restart_after_exit(&id, generation).await;
        });
    }

    async fn restart_after_exit(self: &Arc<Self>, id: &str, generation: u64) {
        let Ok(entry) = self.entry(id) else { return };
        let mut c = entry.op.lock().await;
        if lock(&entry.control).removed
            || lock(&entry.control).generation != generation
            || !c.state.restarting
            || c.manually_stopped
        {
            return;
        }
        c.restart_count += 1;
        match self.start_task(&mut c).await {
            Ok(pid) => {
                c.state = c.state.running(pid, &now());
                c.started_successfully_before = true;
                log::info!(
                    "restarted container {id} ({}), restart {}, pid {pid}",
                    c.container_name,
                    c.restart_count
                );
            }
            Err(e) => {
                log::warn!("restarting container {id} failed: {e}");
                c.state = c.state.exited(127, false, &now());
                c.state.error = e.to_string();
                self.schedule_restart(&entry, &mut c, Duration::ZERO);
            }
        }
        if let Err(e) = self.commit(&entry, &c).await {
            log::error!("{e}");
        }
    }

    /// Removes a container leda-cm created but has no record of (task, container, snapshot).
    async fn remove_orphan(&self, id: &str, name: &str) {
        log::warn!(
            "container {id} ({name}) has no record (a create or removal was cut short); removing it"
        );
        if let Err(e) = self.end_task(id).await {
            log::warn!("ending the task of orphan container {id} failed: {e}");
        }
        if let Err(e) = self.rt.remove(id).await {
            log::warn!("removing orphan container {id} failed: {e}");
        }
    }

    /// Whatever task containerd has of `id`, whatever the record says: thawed, killed
    /// (waited for at most 10 s) and deleted.
    async fn end_task(&self, id: &str) -> Result<(), ManagerError> {
        let Some(task) = self.rt.task(id).await? else {
            return Ok(());
        };
        if matches!(
            task.status,
            TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing
        ) {
            if task.status != TaskStatus::Running {
                let _ = self.rt.resume(id).await;
            }
            if let Err(e) = self.rt.kill(id, 9).await {
                log::debug!("killing the task of container {id}: {e}");
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), self.rt.wait(id)).await;
        }
        self.delete_task(id).await?;
        Ok(())
    }

    /// Drift made behind leda-cm's back (`ctr` deleted a container, a task was killed while
    /// the event stream missed it): every container whose record and containerd disagree is
    /// brought in line as live restore would, and reported. Decides twice: first from the
    /// committed view without waiting, then again under the container's lock from a fresh
    /// listing, so an operation in hand (a create not in containerd yet) is never mistaken
    /// for drift. An exit younger than `EXIT_GRACE` is left to the event stream (with its
    /// restart back-off). Returns how many containers were brought back in line.
    pub async fn check_drift(self: &Arc<Self>) -> Result<usize, ManagerError> {
        const EXIT_GRACE: Duration = Duration::from_secs(10);
        let seen_in = |list: &[crate::runtime::RuntimeContainer], id: &str| match list
            .iter()
            .find(|o| o.id == id)
        {
            None => Observed::Missing,
            Some(o) => Observed::Present(o.task.clone()),
        };
        let observed = self.rt.list().await?;
        let entries: Vec<_> = lock(&self.table).values().cloned().collect();
        let mut fixed = 0;
        for entry in entries {
            let view = entry.view();
            // Being created, or exited with its restart scheduled (the back-off applies):
            // the manager knows; not drift.
            if view.state.status == crate::model::Status::Creating
                || view.state.restarting
                || reconcile::decide(&view, &seen_in(&observed, &view.container_id))
                    == Action::Nothing
            {
                continue;
            }
            let mut c = entry.op.lock().await;
            if lock(&entry.control).removed || c.state.restarting {
                continue;
            }
            let id = c.container_id.clone();
            let fresh = self.rt.list().await?;
            let seen = seen_in(&fresh, &id);
            let action = reconcile::decide(&c, &seen);
            let recent_exit = matches!(&seen, Observed::Present(Some(t))
                if t.exited_at.is_some_and(|at| at.elapsed().unwrap_or_default() < EXIT_GRACE));
            if action == Action::Nothing || (matches!(action, Action::Exited { .. }) && recent_exit)
            {
                continue;
            }
            log::warn!(
                "container {id} ({}) changed behind leda-cm's back (containerd: {}); {action:?}",
                c.container_name,
                match &seen {
                    Observed::Missing => "no such container".to_string(),
                    Observed::Present(None) => "no task".to_string(),
                    Observed::Present(Some(t)) => format!("task {:?}", t.status),
                }
            );
            if let Err(e) = self.apply(&entry, &mut c, action).await {
                log::warn!("bringing container {id} back in line failed: {e}");
                c.state = c.state.dead(&e.to_string());
            }
            if lock(&entry.control).removed {
                continue;
            }
            if let Err(e) = self.commit(&entry, &c).await {
                log::error!("{e}");
            }
            fixed += 1;
        }
        Ok(fixed)
    }

    /// Live restore: brings every record in line with what containerd has, adopting live
    /// tasks without restarting them. Runs at start-up and whenever containerd returns.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), ManagerError> {
        let observed = self.rt.list().await?;
        let entries: Vec<_> = lock(&self.table).values().cloned().collect();
        for entry in entries {
            let mut c = entry.op.lock().await;
            if lock(&entry.control).removed {
                continue;
            }
            let id = c.container_id.clone();
            let seen = match observed.iter().find(|o| o.id == id) {
                None => Observed::Missing,
                Some(o) => Observed::Present(o.task.clone()),
            };
            if let Observed::Present(Some(task)) = &seen {
                self.resume_capture(&c, &task.stdout);
            }
            let action = reconcile::decide(&c, &seen);
            if action != Action::Nothing {
                log::info!("container {id} ({}): {action:?}", c.container_name);
            }
            let intent = matches!(action, Action::FinishRemoval | Action::RollBackCreate);
            if let Err(e) = self.apply(&entry, &mut c, action).await {
                if intent {
                    // The record keeps the intent: the next start tries again.
                    log::warn!("finishing the interrupted operation on container {id} failed: {e}");
                    continue;
                }
                log::warn!("restoring container {id} failed: {e}");
                c.state = c.state.dead(&e.to_string());
            }
            if lock(&entry.control).removed {
                continue;
            }
            if let Err(e) = self.commit(&entry, &c).await {
                log::error!("{e}");
            }
        }
        let known = lock(&self.table).keys().cloned().collect::<Vec<_>>();
        for o in observed.iter().filter(|o| !known.contains(&o.id)) {
            match &o.managed_name {
                // leda-cm made it and holds no record of it: a create (or a removal) that a
                // crash cut short. Nobody knows of it, so it goes.
                Some(name) => self.remove_orphan(&o.id, name).await,
                None => log::info!(
                    "container {} in namespace {} is not managed by leda-cm; left alone",
                    o.id,
                    self.settings.namespace
                ),
            }
        }
        if let Some(capture) = &self.settings.log_capture {
            let live: Vec<String> = observed
                .iter()
                .filter_map(|o| o.task.as_ref().map(|t| t.stdout.clone()))
                .collect();
            capture.sweep(&live);
        }
        // Leases and work snapshots of earlier runs that nothing uses (a pull or a create
        // that a crash cut short); this run's own are never touched.
        let keep = lock(&self.table).keys().cloned().collect::<Vec<_>>();
        match self.rt.sweep_leftovers(&keep).await {
            Ok(removed) => {
                for what in removed {
                    log::info!("removed {what}, left by an earlier run");
                }
            }
            Err(e) => log::warn!("sweeping leftovers of earlier runs failed: {e}"),
        }
        self.release_stale().await;
        self.restored.send_replace(true);
        Ok(())
    }

    /// A task that outlived a daemon (or containerd) and writes to the daemon's fifos: they
    /// are read on (what the container wrote meanwhile waited in them), also when the task
    /// has exited and is about to be deleted.
    fn resume_capture(&self, c: &Container, stdout: &str) {
        let Some(capture) = self.settings.log_capture.as_deref() else {
            return;
        };
        if !capture.owns(stdout) {
            return;
        }
        let id = &c.container_id;
        let resumed = match self.log_options(c) {
            Ok(Some(options)) => capture
                .resume(id, stdout, &options)
                .map_err(|e| e.to_string()),
            Ok(None) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = resumed {
            log::error!("container {id}: its output cannot be read on: {e}");
        }
    }

    async fn apply(
        self: &Arc<Self>,
        entry: &Arc<super::Entry>,
        c: &mut Container,
        action: Action,
    ) -> Result<(), ManagerError> {
        let id = c.container_id.clone();
        match action {
            Action::Nothing => {
                if c.state.running || c.state.paused {
                    self.hold_network(c, c.state.pid as u32);
                } else {
                    // Stopped with its attachment still recorded: the background DEL of a
                    // stop that a crash cut short (or one under way: it is waited for).
                    self.disconnect(c).await;
                }
            }
            Action::Adopt { pid, paused } => {
                let started = if c.state.started_at.is_empty() {
                    now()
                } else {
                    c.state.started_at.clone()
                };
                c.state = c.state.running(pid, &started);
                self.hold_network(c, pid);
                if paused {
                    c.state = c.state.paused();
                }
            }
            Action::DeleteTask => {
                self.delete_task(&id).await?;
                self.disconnect(c).await;
            }
            Action::Exited { exit_code, start } => {
                let exit = self.delete_task(&id).await?;
                self.disconnect(c).await;
                let at = exit
                    .and_then(|e| e.exited_at)
                    .unwrap_or_else(SystemTime::now);
                c.state = c.state.exited(exit_code, false, &timestamp(at));
                if start {
                    self.boot_start(entry, c).await?;
                }
            }
            Action::Lost { start } => {
                self.disconnect(c).await;
                if c.is_active() {
                    let code = c.state.exit_code;
                    c.state = c.state.exited(code, false, &now());
                    c.state.error = "the task ended while leda-cm was not running".into();
                }
                if start {
                    self.boot_start(entry, c).await?;
                }
            }
            Action::FinishRemoval | Action::RollBackCreate => {
                // Whatever containerd has of it goes: the task, the container, its snapshot.
                self.end_task(&id).await?;
                self.disconnect(c).await;
                self.rt.remove(&id).await?;
                let finishing = action == Action::FinishRemoval;
                self.forget(entry, c, finishing).await?;
                log::info!(
                    "{} container {id} ({}) that a crash cut short",
                    if finishing {
                        "finished the removal of"
                    } else {
                        "rolled back the create of"
                    },
                    c.container_name
                );
            }
            Action::Recreate { start } => {
                self.disconnect(c).await;
                self.rt.remove(&id).await?;
                self.create_in_runtime(c, None).await?;
                if c.is_active() {
                    c.state = c.state.exited(c.state.exit_code, false, &now());
                }
                if start {
                    self.boot_start(entry, c).await?;
                }
            }
        }
        Ok(())
    }

    async fn boot_start(
        &self,
        entry: &Arc<super::Entry>,
        c: &mut Container,
    ) -> Result<(), ManagerError> {
        lock(&entry.control).generation += 1;
        let pid = self.start_task(c).await?;
        c.state = c.state.running(pid, &now());
        c.started_successfully_before = true;
        log::info!(
            "started container {} ({}) again, pid {pid}",
            c.container_id,
            c.container_name
        );
        Ok(())
    }

    /// Raw counters of a live container.
    pub async fn metrics(&self, id: &str) -> Result<Metrics, ManagerError> {
        let c = self.get(id)?;
        if !c.is_active() {
            return Err(ManagerError::State(format!(
                "container with id = {id} is not running - current status is {}",
                c.state.status
            )));
        }
        let mut m = self.rt.metrics(id).await?;
        if c.host_config.network_mode == crate::model::NetworkMode::Bridge && c.state.pid > 0 {
            if let Some((rx, tx)) = crate::host::net_dev(c.state.pid as u32) {
                m.net_rx_bytes = rx;
                m.net_tx_bytes = tx;
            }
        }
        Ok(m)
    }

    /// The metrics of every running or paused container, in one runtime call (the Metrics
    /// feature's periodic snapshot).
    pub async fn all_metrics(&self) -> Result<Vec<(Container, Metrics)>, ManagerError> {
        let all = self.rt.all_metrics().await?;
        let mut out = Vec::with_capacity(all.len());
        for (id, mut m) in all {
            let Ok(c) = self.get(&id) else { continue };
            if !c.is_active() {
                continue;
            }
            if c.host_config.network_mode == crate::model::NetworkMode::Bridge && c.state.pid > 0 {
                if let Some((rx, tx)) = crate::host::net_dev(c.state.pid as u32) {
                    m.net_rx_bytes = rx;
                    m.net_tx_bytes = tx;
                }
            }
            out.push((c, m));
        }
        Ok(out)
    }

    /// The last `tail` log entries (all with `None`), across rotated files, and the position
    /// to follow from.
    pub async fn logs(
        &self,
        id: &str,
        tail: Option<usize>,
    ) -> Result<(Vec<crate::logs::LogEntry>, crate::logs::Position), ManagerError> {
        let c = self.get(id)?;
        if c.state.status == crate::model::Status::Created {
            return Err(ManagerError::State(format!(
                "there are no logs for container with status \"{}\"",
                c.state.status
            )));
        }
        if c.host_config.log_config.driver_config.driver_type
            != crate::model::defaults::LOG_DRIVER_JSON_FILE
        {
            return Err(ManagerError::State(format!(
                "there are not any logs for container {id} with log type {}",
                c.host_config.log_config.driver_config.driver_type
            )));
        }
        let dir = self.log_dir(&c);
        tokio::task::spawn_blocking(move || crate::logs::read_tail(&dir, tail))
            .await
            .map_err(|e| ManagerError::Io {
                id: id.to_string(),
                message: e.to_string(),
            })?
            .map_err(|e| ManagerError::Io {
                id: id.to_string(),
                message: e.to_string(),
            })
    }

    fn image_use_path(&self) -> std::path::PathBuf {
        self.settings.state_dir.join(IMAGE_USE_FILE)
    }

    fn load_image_use(&self) -> ImageUse {
        match store::read_json::<ImageUse>(&self.image_use_path()) {
            Ok(Some(u)) => u,
            Ok(None) => ImageUse::default(),
            Err(e) => {
                log::warn!("{e}; starting the image use record over");
                ImageUse::default()
            }
        }
    }

    async fn save_image_use(&self, mut u: ImageUse) {
        u.version = 1;
        let path = self.image_use_path();
        let at = path.clone();
        let written =
            store::off_thread(path, move || store::write_json_atomic(&at, &u, 0o600)).await;
        if let Err(e) = written {
            log::warn!("{e}");
        }
    }

    /// Records that a container of `image` went away (its expiry counts from now).
    pub(super) async fn note_image_released(&self, image: &str, at: SystemTime) {
        let _one_writer = self.image_use.lock().await;
        let mut u = self.load_image_use();
        u.last_used.insert(image.to_string(), secs(at));
        self.save_image_use(u).await;
    }

    /// Removes images no container has used for the expiry; never those of existing or
    /// system containers. Returns the names removed.
    pub async fn collect_images(&self, now: SystemTime) -> Result<Vec<String>, ManagerError> {
        let Some(expiry) = self.settings.image_expiry else {
            return Ok(Vec::new());
        };
        let in_use: Vec<String> = self.list().into_iter().map(|c| c.image.name).collect();
        let _one_writer = self.image_use.lock().await;
        let mut u = self.load_image_use();
        let mut removed = Vec::new();
        for image in self.rt.images().await? {
            if in_use.contains(&image) {
                u.last_used.insert(image, secs(now));
                continue;
            }
            let last = *u
                .last_used
                .entry(image.clone())
                .or_insert_with(|| secs(now));
            if secs(now).saturating_sub(last) >= expiry.as_secs() {
                match self.rt.remove_image(&image).await {
                    Ok(()) => {
                        log::info!("removed image {image}, unused for {expiry:?}");
                        u.last_used.remove(&image);
                        removed.push(image);
                    }
                    Err(e) => log::warn!("removing unused image {image} failed: {e}"),
                }
            }
        }
        self.save_image_use(u).await;
        Ok(removed)
    }
}
