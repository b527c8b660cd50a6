//! Lifecycle operations: create, start, stop, pause, resume, restart, rename, update, remove.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{lock, now, Change, Entry, Manager, ManagerError};
use crate::etc_files;
use crate::host;
use crate::logs::capture::Prepared;
use crate::model::defaults::{fill_defaults, LOG_DRIVER_JSON_FILE};
use crate::model::validate::{valid_name, validate};
use crate::model::{Container, NetworkMode, Resources, RestartPolicy, State, Status};
use crate::runtime::{CreateRequest, ImageInfo, ProgressFn, Runtime, RuntimeError, TaskIo};
use crate::spec::{self, EtcFiles, SpecInput};
use crate::store;

/// How to stop a container (Kanto's StopOpts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StopOptions {
    /// Grace period before SIGKILL; the configured default when `None`.
    pub timeout: Option<Duration>,
    /// Signal name or number; SIGTERM when `None`.
    pub signal: Option<String>,
    /// SIGKILL at once.
    pub force: bool,
}

/// What `update` may change (Kanto's UpdateOpts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOptions {
    pub restart_policy: Option<RestartPolicy>,
    pub resources: Option<Resources>,
}

/// Signal numbers by name (with or without `SIG`), or a number.
pub fn parse_signal(text: &str) -> Option<u32> {
    if let Ok(n) = text.parse::<u32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let name = text.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Some(match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "TRAP" => 5,
        "ABRT" => 6,
        "BUS" => 7,
        "FPE" => 8,
        "KILL" => 9,
        "USR1" => 10,
        "SEGV" => 11,
        "USR2" => 12,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "CHLD" => 17,
        "CONT" => 18,
        "STOP" => 19,
        "TSTP" => 20,
        "WINCH" => 28,
        _ => return None,
    })
}

const SIGKILL: u32 = 9;
/// How long to wait for a task to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl<R: Runtime> Manager<R> {
    /// Validates, pulls the image when it is not present, creates the container in
    /// containerd and records it. Nothing is left behind when any step fails.
    pub async fn create(
        self: &Arc<Self>,
        c: Container,
        progress: Option<ProgressFn>,
    ) -> Result<Container, ManagerError> {
        self.create_replacing(c, progress, &[]).await
    }

    /// `create`, for a container that starts only once the containers of `leaving` have
    /// stopped (the update agent's successors): their host ports do not count as taken at
    /// create (its start checks them again).
    pub async fn create_replacing(
        self: &Arc<Self>,
        mut c: Container,
        progress: Option<ProgressFn>,
        leaving: &[String],
    ) -> Result<Container, ManagerError> {
        fill_defaults(&mut c, || uuid::Uuid::new_v4().to_string());
        // Server-side fields start fresh, whatever the input said.
        c.state = State::default();
        c.created = now();
        c.restart_count = 0;
        c.manually_stopped = false;
        c.started_successfully_before = false;
        c.network_settings = Default::default();
        c.extras_mut().schema_version = crate::model::SCHEMA_VERSION;
        validate(&c)?;
        self.check_ports(&c, leaving).await?;

        // Reserve the ID and the name, and hold the new container's lock while creating.
        let entry = Entry::new(c.clone());
        let mut guard = entry.op.clone().lock_owned().await;
        {
            let mut table = lock(&self.table);
            if table.contains_key(&c.container_id) {
                return Err(ManagerError::AlreadyExists(c.container_id.clone()));
            }
            if let Some(other) = table
                .values()
                .map(|e| e.view())
                .find(|o| o.container_name == c.container_name)
            {
                return Err(ManagerError::NameInUse {
                    name: c.container_name.clone(),
                    id: other.container_id,
                });
            }
            let mut placeholder = c.clone();
            placeholder.state.status = Status::Creating;
            *lock(&entry.view) = placeholder;
            table.insert(c.container_id.clone(), entry.clone());
        }
        // The intent, durable before containerd is asked for anything: a crash from here on
        // leaves a record that the next start rolls back (with whatever containerd made).
        let mut intent = c.clone();
        intent.state.status = Status::Creating;
        if let Err(e) = self.records.save_async(&intent).await {
            lock(&entry.control).removed = true;
            lock(&self.table).remove(&c.container_id);
            let _ = self.records.remove_async(&c.container_id).await;
            return Err(ManagerError::Store {
                id: c.container_id.clone(),
                source: e,
            });
        }
        match self.create_in_runtime(&mut c, progress).await {
            Ok(()) => {
                if let Err(e) = self.records.save_async(&c).await {
                    // Without a record the container would be unknown after a restart.
                    lock(&entry.control).removed = true;
                    self.discard(&c.container_id).await;
                    return Err(ManagerError::Store {
                        id: c.container_id.clone(),
                        source: e,
                    });
                }
                *guard = c.clone();
                *lock(&entry.view) = c.clone();
                let _ = self.changes.send(Change::Created(Box::new(c.clone())));
                log::info!(
                    "created container {} ({}) from {}",
                    c.container_id,
                    c.container_name,
                    c.image.name
                );
                Ok(c)
            }
            Err(e) => {
                log::warn!(
                    "creating container {} ({}) failed: {e}",
                    c.container_id,
                    c.container_name
                );
                // A reconcile waiting for this entry's lock must not recreate it.
                lock(&entry.control).removed = true;
                self.discard(&c.container_id).await;
                Err(e)
            }
        }
    }

    /// The end of a removal, under the container's lock, once containerd has nothing of it:
    /// its custom log dir and its record go, then its entry. Still under the lock, an exit
    /// handler or restart waiting for it sees the removal and neither writes the record again
    /// nor tells of the container. `announce`: subscribers are told (a create rolled back
    /// was never told of).
    pub(super) async fn forget(
        &self,
        entry: &Entry,
        c: &Container,
        announce: bool,
    ) -> Result<(), ManagerError> {
        let id = &c.container_id;
        if !c.host_config.log_config.driver_config.root_dir.is_empty() {
            let _ = std::fs::remove_dir_all(self.log_dir(c));
        }
        self.records
            .remove_async(id)
            .await
            .map_err(|source| ManagerError::Store {
                id: id.clone(),
                source,
            })?;
        lock(&entry.control).removed = true;
        lock(&self.table).remove(id);
        if announce {
            self.note_image_released(&c.image.name, SystemTime::now())
                .await;
            let _ = self.changes.send(Change::Removed(Box::new(c.clone())));
        }
        Ok(())
    }

    /// A removal's work in containerd and on the bridge: the task killed (or its leftover
    /// deleted), the container and its snapshot deleted.
    async fn take_down(&self, c: &mut Container) -> Result<(), ManagerError> {
        let id = c.container_id.clone();
        if c.is_active() {
            c.manually_stopped = true;
            self.terminate(c, SIGKILL, KILL_WAIT).await?;
        } else {
            self.delete_task(&id).await?;
        }
        self.disconnect(c).await;
        self.rt.remove(&id).await?;
        Ok(())
    }

    /// Undoes a failed create: containerd objects, files and the table entry.
    async fn discard(&self, id: &str) {
        if let Err(e) = self.rt.remove(id).await {
            log::warn!("cleaning up container {id} in containerd failed: {e}");
        }
        if let Err(e) = self.records.remove_async(id).await {
            log::warn!("cleaning up files of container {id} failed: {e}");
        }
        lock(&self.table).remove(id);
    }

    pub(super) async fn create_in_runtime(
        &self,
        c: &mut Container,
        progress: Option<ProgressFn>,
    ) -> Result<(), ManagerError> {
        let image = self.ensure_image(&c.image.name, progress).await?;
        c.extras_mut().image_digest = image.digest.clone();
        self.records
            .prepare_dir(&c.container_id)
            .map_err(|source| ManagerError::Store {
                id: c.container_id.clone(),
                source,
            })?;
        let spec = self.spec_for(c, &image)?;
        let req = CreateRequest {
            id: c.container_id.clone(),
            image: c.image.name.clone(),
            spec,
            runtime: c.host_config.runtime.clone(),
            parent_snapshot: image.top_layer.clone(),
            labels: vec![(
                crate::runtime::MANAGED_LABEL.into(),
                c.container_name.clone(),
            )],
        };
        self.rt.create(&req).await?;
        Ok(())
    }

    /// The image, pulled when it is not present locally (Kanto's default policy), once the
    /// configured verifier accepted it (also when it was present).
    pub async fn ensure_image(
        &self,
        name: &str,
        progress: Option<ProgressFn>,
    ) -> Result<ImageInfo, ManagerError> {
        if let Some(image) = self.rt.image(name).await? {
            self.check_trust(&image).await?;
            return Ok(image);
        }
        self.pull_verified(name, progress, false).await
    }

    /// Pulls the image even when it is present (the tag may now name another digest), and
    /// verifies it.
    pub async fn pull_image(
        &self,
        name: &str,
        progress: Option<ProgressFn>,
    ) -> Result<ImageInfo, ManagerError> {
        let present = self.rt.image(name).await.ok().flatten().is_some();
        self.pull_verified(name, progress, present).await
    }

    async fn pull_verified(
        &self,
        name: &str,
        progress: Option<ProgressFn>,
        was_present: bool,
    ) -> Result<ImageInfo, ManagerError> {
        log::info!("pulling image {name}");
        let started = std::time::Instant::now();
        let image = self.rt.pull(name, progress).await?;
        log::info!(
            "pulled image {name} ({}) in {:?}",
            image.digest,
            started.elapsed()
        );
        if let Err(e) = self.check_trust(&image).await {
            // What this pull brought in goes again: an untrusted image is not kept.
            if !was_present {
                if let Err(r) = self.rt.remove_image(name).await {
                    log::warn!("removing the refused image {name} failed: {r}");
                }
            }
            return Err(e);
        }
        Ok(image)
    }

    /// Writes the container's generated `/etc` files (bridge mode) and builds its spec.
    fn spec_for(
        &self,
        c: &Container,
        image: &ImageInfo,
    ) -> Result<serde_json::Value, ManagerError> {
        let id = c.container_id.clone();
        let hc = &c.host_config;
        let devices = if hc.privileged {
            host::all_devices()
        } else {
            hc.devices
                .iter()
                .map(|d| host::device(&d.path_on_host, &d.path_in_container, &d.cgroup_permissions))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| ManagerError::Host {
                    id: id.clone(),
                    source,
                })?
        };
        let etc_files = if hc.network_mode == NetworkMode::Bridge {
            Some(self.write_etc_files(c)?)
        } else {
            None
        };
        let s = spec::build(&SpecInput {
            container: c,
            image: &image.process,
            namespace: &self.settings.namespace,
            devices: &devices,
            etc_files,
            netns_path: None,
        })
        .map_err(|source| ManagerError::Spec {
            id: id.clone(),
            source,
        })?;
        serde_json::to_value(&s).map_err(|e| ManagerError::Io {
            id,
            message: e.to_string(),
        })
    }

    fn write_etc_files(&self, c: &Container) -> Result<EtcFiles, ManagerError> {
        let dir = self.records.dir_of(&c.container_id);
        let write = |name: &str, text: String| -> Result<String, ManagerError> {
            let path = dir.join(name);
            store::write_atomic(&path, text.as_bytes(), 0o644).map_err(|source| {
                ManagerError::Store {
                    id: c.container_id.clone(),
                    source,
                }
            })?;
            Ok(path.display().to_string())
        };
        let extra = etc_files::literal_extra_hosts(&c.host_config.extra_hosts);
        Ok(EtcFiles {
            hosts: write(
                "hosts",
                etc_files::hosts(&c.host_name, &c.domain_name, None, &extra),
            )?,
            resolv_conf: write("resolv.conf", etc_files::resolv_conf(&host::resolv_conf()))?,
            hostname: Some(write("hostname", etc_files::hostname(&c.host_name))?),
        })
    }

    /// Where the container's output goes.
    /// The json-file log's options of `c` (its dir created), `None` when it logs nothing.
    pub(super) fn log_options(
        &self,
        c: &Container,
    ) -> Result<Option<crate::logs::DriverOptions>, ManagerError> {
        let driver = &c.host_config.log_config.driver_config;
        if driver.driver_type != LOG_DRIVER_JSON_FILE {
            return Ok(None);
        }
        let dir = self.log_dir(c);
        std::fs::create_dir_all(&dir).map_err(|e| ManagerError::Io {
            id: c.container_id.clone(),
            message: format!("cannot create log dir {}: {e}", dir.display()),
        })?;
        let size = |s: &str| crate::model::size::parse_size(s).map(|b| b.max(0) as u64);
        let mode_config = &c.host_config.log_config.mode_config;
        Ok(Some(crate::logs::DriverOptions {
            dir,
            max_size: size(&driver.max_size).filter(|b| *b > 0),
            max_files: driver.max_files.clamp(1, u32::MAX as i64) as u32,
            mode: if mode_config.mode == crate::model::defaults::LOG_MODE_NON_BLOCKING {
                crate::logs::Mode::NonBlocking {
                    max_buffer: size(&mode_config.max_buffer_size).unwrap_or(1 << 20),
                }
            } else {
                crate::logs::Mode::Blocking
            },
        }))
    }

    /// The daemon's capture, when it is the one to read `c`'s output.
    fn capture_for(&self, c: &Container) -> Option<&Arc<crate::logs::capture::Capture>> {
        let own_root = !c.host_config.log_config.driver_config.root_dir.is_empty();
        self.settings
            .log_capture
            .as_ref()
            .filter(|_| !own_root && !c.io_config.tty)
    }

    /// Where the task's output goes: the daemon's fifos (returned, to be read once the task
    /// exists), the log driver's `binary://` URI, or nowhere.
    fn task_io(
        &self,
        c: &Container,
    ) -> Result<(TaskIo, Option<(Prepared, crate::logs::DriverOptions)>), ManagerError> {
        let Some(options) = self.log_options(c)? else {
            return Ok((
                TaskIo {
                    terminal: c.io_config.tty,
                    ..Default::default()
                },
                None,
            ));
        };
        if let Some(capture) = self.capture_for(c) {
            let prepared = capture
                .prepare(&c.container_id)
                .map_err(|e| ManagerError::Io {
                    id: c.container_id.clone(),
                    message: e.to_string(),
                })?;
            let io = TaskIo {
                stdout: prepared.stdout.display().to_string(),
                stderr: prepared.stderr.display().to_string(),
                terminal: false,
            };
            return Ok((io, Some((prepared, options))));
        }
        let uri = options.to_uri(&self.settings.log_driver_binary);
        Ok((
            TaskIo {
                stdout: uri.clone(),
                stderr: uri,
                terminal: c.io_config.tty,
            },
            None,
        ))
    }

    /// Runs `args` in the container's running task (a health command): its exit status.
    pub async fn exec(
        &self,
        id: &str,
        args: &[String],
        timeout: Duration,
    ) -> Result<u32, ManagerError> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let exec_id = format!("leda-cm-health-{}-{n}", std::process::id());
        Ok(self.rt.exec(id, &exec_id, args, timeout).await?)
    }

    /// Deletes the task and ends the daemon's capture of its output.
    pub(super) async fn delete_task(
        &self,
        id: &str,
    ) -> Result<Option<crate::runtime::ExitInfo>, RuntimeError> {
        let deleted = self.rt.delete_task(id).await;
        if deleted.is_ok() {
            if let Some(capture) = &self.settings.log_capture {
                capture.finish(id);
            }
        }
        deleted
    }

    /// `<root_dir>/<id>` when the container sets a root dir, else its state directory.
    pub fn log_dir(&self, c: &Container) -> std::path::PathBuf {
        let root = &c.host_config.log_config.driver_config.root_dir;
        if root.is_empty() {
            self.records.dir_of(&c.container_id)
        } else {
            std::path::Path::new(root).join(&c.container_id)
        }
    }

    /// Creates and starts the task; recreates the containerd container first when
    /// containerd lost it.
    /// A bridged container joins the bridge between the two.
    pub(super) async fn start_task(&self, c: &mut Container) -> Result<u32, ManagerError> {
        let (io, capture) = self.task_io(c)?;
        let id = c.container_id.clone();
        let pid = match self.rt.create_task(&id, &io).await {
            Err(RuntimeError::NotFound { what })
                if what.starts_with("snapshot") || what.starts_with("container") =>
            {
                log::warn!("containerd has no {what}; creating it again");
                self.rt.remove(&id).await?;
                self.create_in_runtime(c, None).await?;
                self.rt.create_task(&id, &io).await?
            }
            other => other?,
        };
        if let Some((prepared, options)) = capture {
            if let Err(e) = prepared.start(&options) {
                // Nobody would read its output: the container would block on its first lines.
                if let Err(e) = self.delete_task(&id).await {
                    log::warn!("deleting the created task of container {id} failed: {e}");
                }
                return Err(ManagerError::Io {
                    id,
                    message: e.to_string(),
                });
            }
        }
        if let Err(e) = self.connect(c, pid).await {
            if let Err(e) = self.delete_task(&id).await {
                log::warn!("deleting the created task of container {id} failed: {e}");
            }
            return Err(e);
        }
        if let Err(e) = self.rt.start_created(&id).await {
            self.disconnect(c).await;
            return Err(e.into());
        }
        Ok(pid)
    }

    pub async fn start(self: &Arc<Self>, id: &str) -> Result<Container, ManagerError> {
        let entry = self.entry(id)?;
        let mut c = entry.op.lock().await;
        match c.state.status {
            Status::Running => return Err(ManagerError::State(format!("the container with id = {id} is already running"))),
            Status::Paused => {
                return Err(ManagerError::State(format!(
                    "the container with id = {id} is paused - cannot start it - try unpausing it instead"
                )))
            }
            _ => {}
        }
        {
            let mut ctl = lock(&entry.control);
            ctl.generation += 1;
            ctl.backoff = Duration::ZERO;
            ctl.oom = false;
        }
        c.manually_stopped = false;
        c.restart_count = 0;
        let pid = match self.start_task(&mut c).await {
            Ok(pid) => pid,
            Err(e) => {
                c.state = c.state.exited(127, false, &now());
                c.state.error = e.to_string();
                self.commit(&entry, &c).await?;
                return Err(e);
            }
        };
        c.state = c.state.running(pid, &now());
        c.started_successfully_before = true;
        self.commit(&entry, &c).await?;
        log::info!("started container {id} ({}), pid {pid}", c.container_name);
        Ok(c.clone())
    }

    /// Signals the task, waits up to the timeout, then kills it; the container is marked
    /// stopped by hand (no restart).
    pub async fn stop(
        self: &Arc<Self>,
        id: &str,
        opts: StopOptions,
    ) -> Result<Container, ManagerError> {
        let entry = self.entry(id)?;
        // The options first, as Kanto checks them.
        let signal = match &opts.signal {
            Some(s) if !s.is_empty() => parse_signal(s)
                .ok_or_else(|| ManagerError::State(format!("invalid signal = {s}")))?,
            _ => 15,
        };
        let mut c = entry.op.lock().await;
        lock(&entry.control).generation += 1;
        if !c.is_active() {
            if c.state.restarting {
                // A restart was pending: cancelling it is the stop.
                c.manually_stopped = true;
                let code = c.state.exit_code;
                c.state = c.state.stopped(code, &now());
                self.commit(&entry, &c).await?;
                return Ok(c.clone());
            }
            return Err(ManagerError::State(format!(
                "cannot perform stop operation for container: {id}, with state: {}",
                c.state.status
            )));
        }
        c.manually_stopped = true;
        let timeout = opts.timeout.unwrap_or(self.settings.default_stop_timeout);
        let exit = self
            .terminate(&c, if opts.force { SIGKILL } else { signal }, timeout)
            .await?;
        // The caller does not wait for the plugins' DEL (net.rs): its record keeps the
        // attachment until the DEL has run.
        self.leave_later(&entry, &mut c);
        c.state = c.state.stopped(exit, &now());
        self.commit(&entry, &c).await?;
        log::info!(
            "stopped container {id} ({}), exit code {exit}",
            c.container_name
        );
        Ok(c.clone())
    }

    /// Ends the live task of `c`: `signal`, then SIGKILL after `timeout`; collects it.
    async fn terminate(
        &self,
        c: &Container,
        signal: u32,
        timeout: Duration,
    ) -> Result<i64, ManagerError> {
        let id = &c.container_id;
        if c.state.paused {
            // A frozen task handles no signal; thaw it first.
            if let Err(e) = self.rt.resume(id).await {
                log::warn!("resuming container {id} before stopping it failed: {e}");
            }
        }
        match self.rt.kill(id, signal).await {
            Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let exited = tokio::time::timeout(timeout, self.rt.wait(id)).await;
        if !matches!(exited, Ok(Ok(_))) {
            if signal != SIGKILL {
                log::info!("container {id} did not stop within {timeout:?}; killing it");
            }
            match self.rt.kill(id, SIGKILL).await {
                Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
            if tokio::time::timeout(KILL_WAIT, self.rt.wait(id))
                .await
                .is_err()
            {
                return Err(ManagerError::State(format!(
                    "container with id = {id} did not exit after SIGKILL"
                )));
            }
        }
        let exit = self.delete_task(id).await?;
        Ok(exit.map_or(137, |e| e.exit_status as i64))
    }

    pub async fn pause(self: &Arc<Self>, id: &str) -> Result<Container, ManagerError> {
        let entry = self.entry(id)?;
        let mut c = entry.op.lock().await;
        if !c.state.running {
            return Err(ManagerError::State(format!(
                "container with id = {id} is not running - current status is {}",
                c.state.status
            )));
        }
        self.rt.pause(id).await?;
        c.state = c.state.paused();
        self.commit(&entry, &c).await?;
        Ok(c.clone())
    }

    pub async fn resume(self: &Arc<Self>, id: &str) -> Result<Container, ManagerError> {
        let entry = self.entry(id)?;
        let mut c = entry.op.lock().await;
        if !c.state.paused {
            return Err(ManagerError::State(format!(
                // Kanto's text, its trailing space included.
                "container id = {id} is not paused - cannot unpause it "
            )));
        }
        self.rt.resume(id).await?;
        c.state = c.state.unpaused();
        self.commit(&entry, &c).await?;
        Ok(c.clone())
    }

    /// Stops (when live) and starts again; the restart policy state starts over.
    pub async fn restart(
        self: &Arc<Self>,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<Container, ManagerError> {
        let entry = self.entry(id)?;
        let mut c = entry.op.lock().await;
        {
            let mut ctl = lock(&entry.control);
            ctl.generation += 1;
            ctl.backoff = Duration::ZERO;
        }
        if c.is_active() {
            let exit = self
                .terminate(
                    &c,
                    15,
                    timeout.unwrap_or(self.settings.default_stop_timeout),
                )
                .await?;
            c.state = c.state.stopped(exit, &now());
        }
        c.manually_stopped = false;
        c.restart_count = 0;
        let pid = self.start_task(&mut c).await?;
        c.state = c.state.running(pid, &now());
        c.started_successfully_before = true;
        self.commit(&entry, &c).await?;
        Ok(c.clone())
    }

    /// Records what the health gate of the run that began at `started_at` saw (shown in its
    /// state); `Healthy` also records that its gate passed (see `Extras::health_passed`). A
    /// later run is left alone: the verdict was about an earlier one.
    pub async fn set_health(
        self: &Arc<Self>,
        id: &str,
        started_at: &str,
        health: crate::model::Health,
    ) -> Result<(), ManagerError> {
        let entry = self.entry(id)?;
        let mut c = entry.op.lock().await;
        if c.state.started_at != started_at || c.state.health.as_ref() == Some(&health) {
            return Ok(());
        }
        if health.status == crate::model::HealthStatus::Healthy {
            c.extras_mut().health_passed = true;
        }
        c.state.health = Some(health);
        self.commit(&entry, &c).await
    }

    /// An empty name is refused (Kanto ignores it and answers OK).
    pub async fn rename(self: &Arc<Self>, id: &str, name: &str) -> Result<Container, ManagerError> {
        let entry = self.entry(id)?;
        if !valid_name(name) {
            return Err(ManagerError::Invalid(crate::model::validate::kanto(
                "container_name",
                format!("invalid container name format : {name}"),
            )));
        }
        let mut c = entry.op.lock().await;
        {
            let table = lock(&self.table);
            if let Some(other) = table
                .values()
                .map(|e| e.view())
                .find(|o| o.container_name == name && o.container_id != id)
            {
                return Err(ManagerError::NameInUse {
                    name: name.to_string(),
                    id: other.container_id,
                });
            }
            // Reserve it at once so a concurrent rename or create sees it.
            lock(&entry.view).container_name = name.to_string();
        }
        c.container_name = name.to_string();
        self.commit(&entry, &c).await?;
        Ok(c.clone())
    }

    pub async fn update(
        self: &Arc<Self>,
        id: &str,
        opts: UpdateOptions,
    ) -> Result<Container, ManagerError> {
        let entry = self.entry(id)?;
        let mut c = entry.op.lock().await;
        let mut next = c.clone();
        if let Some(p) = opts.restart_policy {
            next.host_config.restart_policy = p;
        }
        let resources_changed = opts.resources.is_some();
        if let Some(r) = opts.resources {
            // No limits at all is no resources (as Kanto keeps it).
            next.host_config.resources = (r != Resources::default()).then_some(r);
            // The swap default (twice the memory) follows the new memory value.
            let mut tmp = next.clone();
            fill_defaults(&mut tmp, String::new);
            next.host_config.resources = tmp.host_config.resources;
        }
        validate(&next)?;
        if resources_changed {
            let image = self.ensure_image(&next.image.name, None).await?;
            let spec = self.spec_for(&next, &image)?;
            self.rt.update_resources(id, &spec).await?;
        }
        *c = next;
        self.commit(&entry, &c).await?;
        Ok(c.clone())
    }

    /// Removes the container (killing its task when `force`), its containerd objects and
    /// its files.
    pub async fn remove(self: &Arc<Self>, id: &str, force: bool) -> Result<(), ManagerError> {
        let entry = self.entry(id)?;
        let mut c = entry.op.lock().await;
        if c.is_active() && !force {
            return Err(ManagerError::State(format!(
                "container with id = {id} is not stopped - must set the force flag to true to remove it"
            )));
        }
        lock(&entry.control).generation += 1;
        // The intent, durable before anything is taken down: a crash from here on is
        // finished at the next start (never a container that comes back).
        let mut intent = c.clone();
        intent.extras_mut().removing = true;
        self.records
            .save_async(&intent)
            .await
            .map_err(|source| ManagerError::Store {
                id: id.to_string(),
                source,
            })?;
        if let Err(e) = self.take_down(&mut c).await {
            // Not removed after all (the caller is told): the record says so again.
            if let Err(e) = self.records.save_async(&c).await {
                log::error!(
                    "container {id}: the removal failed and its record could not be put back: {e}"
                );
            }
            return Err(e);
        }
        self.forget(&entry, &c, true).await?;
        log::info!("removed container {id} ({})", c.container_name);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        let cases = [
            ("SIGTERM", Some(15)),
            ("term", Some(15)),
            ("KILL", Some(9)),
            ("9", Some(9)),
            ("SIGHUP", Some(1)),
            ("0", None),
            ("65", None),
            ("SIGNOPE", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_signal(text), want, "{text}");
        }
    }
}
