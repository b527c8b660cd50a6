//! The container manager: lifecycle operations, supervision (exits, OOM, restart policies),
//! persistence of every change, and live restore.
//!
//! Concurrency: each container has an async lock held for the length of one operation, so
//! operations on one container are serialised and operations on different containers run
//! concurrently; a committed copy of each container is readable at any time without waiting
//! (list and get never block behind a slow stop). **Every change is persisted before the
//! operation returns.** The manager never blocks the daemon's loops: containerd events are
//! handed to spawned tasks.

#[cfg(test)]
pub(crate) mod fake;
mod net;
mod ops;
mod supervise;
#[cfg(test)]
mod tests;
pub mod trust;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast;

use crate::host::HostError;
use crate::model::validate::ValidationError;
use crate::model::Container;
use crate::network::{Network, NetworkError};
use crate::runtime::{Runtime, RuntimeError};
use crate::spec::SpecError;
use crate::store::{ContainerRecords, StoreError};

pub use ops::{parse_signal, StopOptions, UpdateOptions};

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// Kanto's words for an unknown ID (every operation but `Get`, which answers an empty
    /// container as Kanto does).
    #[error("no such container with id = {0} exists")]
    NotFound(String),
    #[error("container with name = {0} not found")]
    NameNotFound(String),
    #[error("container with id = {0} already exists")]
    AlreadyExists(String),
    /// leda-cm's own refusal: Kanto accepts a name twice.
    #[error("container name {name} is already used by container {id}")]
    NameInUse { name: String, id: String },
    /// Kanto's text where Kanto refuses the same input, else `field: message`.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// The operation does not fit the container's state, or its options are invalid
    /// (message as Kanto words it).
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot persist container {id}: {source}")]
    Store { id: String, source: StoreError },
    #[error("container {id}: {source}")]
    Spec { id: String, source: SpecError },
    #[error("container {id}: {source}")]
    Host { id: String, source: HostError },
    #[error("container {id}: {message}")]
    Io { id: String, message: String },
    #[error("container {id}: {source}")]
    Network { id: String, source: NetworkError },
    /// The configured image verifier refused the image (signatures, policy).
    #[error(transparent)]
    Untrusted(crate::trust::TrustError),
}

/// What changed, for the things and update-agent publishers.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Created(Box<Container>),
    Updated(Box<Container>),
    Removed(Box<Container>),
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// containerd namespace (first part of the cgroup path).
    pub namespace: String,
    pub state_dir: PathBuf,
    pub default_stop_timeout: Duration,
    /// The binary containerd's shims start as the log driver (`leda-cm log-driver`) of a
    /// task whose logs the daemon does not capture itself.
    pub log_driver_binary: PathBuf,
    /// The daemon's own capture of tasks' output through fifos (`logs::capture`); `None`: every
    /// task gets the log driver. A container with a log `root_dir` of its own always gets
    /// the driver (the daemon may write only to its state and runtime dirs).
    pub log_capture: Option<Arc<crate::logs::capture::Capture>>,
    /// Names of containers the update agent never removes and whose images are kept.
    pub system_containers: Vec<String>,
    /// Unused images are removed after this long; `None` disables it.
    pub image_expiry: Option<Duration>,
    /// What an image must show before a container is created from it.
    pub trust: Arc<crate::trust::Verifier>,
}

/// Per-container control state next to the record.
#[derive(Debug, Default)]
struct Control {
    /// Bumped by every operation that supersedes a pending restart.
    generation: u64,
    /// The back-off used for the last restart.
    backoff: Duration,
    /// An OOM event arrived for the live task.
    oom: bool,
    /// The container was removed: nothing may write its record or tell of it again (an
    /// exit handler or a pending restart that took the entry before the removal).
    removed: bool,
}

struct Entry {
    /// Held for the length of an operation on this container.
    op: Arc<tokio::sync::Mutex<Container>>,
    /// The last committed state, readable without waiting.
    view: Mutex<Container>,
    control: Mutex<Control>,
}

impl Entry {
    fn new(c: Container) -> Arc<Entry> {
        Arc::new(Entry {
            view: Mutex::new(c.clone()),
            op: Arc::new(tokio::sync::Mutex::new(c)),
            control: Mutex::new(Control::default()),
        })
    }

    fn view(&self) -> Container {
        lock(&self.view).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub struct Manager<R: Runtime> {
    rt: R,
    settings: Settings,
    records: ContainerRecords,
    table: Mutex<BTreeMap<String, Arc<Entry>>>,
    changes: broadcast::Sender<Change>,
    /// Set once the records have been reconciled with containerd (live restore done).
    restored: tokio::sync::watch::Sender<bool>,
    net: Option<Arc<dyn Network>>,
    /// Containers whose DEL runs in the background (after a stop), by ID.
    leaving: Mutex<BTreeMap<String, net::Leaving>>,
    /// Held for each read-modify-write of the image use file (written off the thread).
    image_use: tokio::sync::Mutex<()>,
}

pub fn now() -> String {
    crate::model::timestamp(SystemTime::now())
}

impl<R: Runtime> Manager<R> {
    /// Loads the records from the state dir (containerd is not asked yet: see `reconcile`).
    pub fn new(rt: R, settings: Settings) -> Arc<Manager<R>> {
        Manager::with_network(rt, settings, None)
    }

    /// With bridge networking (`None`: bridged containers get a namespace with loopback
    /// only).
    pub fn with_network(
        rt: R,
        settings: Settings,
        net: Option<Arc<dyn Network>>,
    ) -> Arc<Manager<R>> {
        let records = ContainerRecords::new(&settings.state_dir);
        let mut warnings = Vec::new();
        let loaded = records.load_all(&mut warnings);
        for w in warnings {
            log::warn!("{w}");
        }
        let mut table = BTreeMap::new();
        for mut c in loaded {
            log::debug!("loaded container {} ({})", c.container_id, c.container_name);
            c.state = c.state.reloaded();
            table.insert(c.container_id.clone(), Entry::new(c));
        }
        let (changes, _) = broadcast::channel(256);
        Arc::new(Manager {
            rt,
            settings,
            records,
            table: Mutex::new(table),
            changes,
            restored: tokio::sync::watch::Sender::new(false),
            net,
            leaving: Mutex::new(BTreeMap::new()),
            image_use: tokio::sync::Mutex::new(()),
        })
    }

    pub fn runtime(&self) -> &R {
        &self.rt
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Waits until the first live restore is done: before it, the table may not match what
    /// runs, so nothing that diffs against it (the update agent) may act.
    pub async fn wait_restored(&self) {
        let mut rx = self.restored.subscribe();
        let _ = rx.wait_for(|done| *done).await;
    }

    pub fn is_restored(&self) -> bool {
        *self.restored.borrow()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Every container, in creation order.
    pub fn list(&self) -> Vec<Container> {
        let mut all: Vec<Container> = lock(&self.table).values().map(|e| e.view()).collect();
        all.sort_by(|a, b| {
            a.created
                .cmp(&b.created)
                .then(a.container_id.cmp(&b.container_id))
        });
        all
    }

    pub fn get(&self, id: &str) -> Result<Container, ManagerError> {
        self.entry(id).map(|e| e.view())
    }

    pub fn find_by_name(&self, name: &str) -> Result<Container, ManagerError> {
        lock(&self.table)
            .values()
            .map(|e| e.view())
            .find(|c| c.container_name == name)
            .ok_or_else(|| ManagerError::NameNotFound(name.to_string()))
    }

    fn entry(&self, id: &str) -> Result<Arc<Entry>, ManagerError> {
        lock(&self.table)
            .get(id)
            .cloned()
            .ok_or_else(|| ManagerError::NotFound(id.to_string()))
    }

    /// Persists `c`, then publishes it as the committed view, then tells subscribers
    /// (persist, acknowledge, broadcast): a change that could not be saved is neither shown
    /// nor told. A removed container is never written again (`NotFound`).
    /// The record is written on the blocking pool (`ContainerRecords::save_async`).
    async fn commit(&self, entry: &Entry, c: &Container) -> Result<(), ManagerError> {
        if lock(&entry.control).removed {
            return Err(ManagerError::NotFound(c.container_id.clone()));
        }
        self.save_record(c).await?;
        // A removal cannot have begun meanwhile: it takes the container's lock, which the
        // caller holds.
        *lock(&entry.view) = c.clone();
        let _ = self.changes.send(Change::Updated(Box::new(c.clone())));
        Ok(())
    }

    /// Saves what only leda-cm reads (the record's bridge attachment once it is released):
    /// the committed view follows, nobody is told (nothing they see changed).
    async fn persist_quietly(&self, entry: &Entry, c: &Container) -> Result<(), ManagerError> {
        if lock(&entry.control).removed {
            return Ok(());
        }
        self.save_record(c).await?;
        *lock(&entry.view) = c.clone();
        Ok(())
    }

    async fn save_record(&self, c: &Container) -> Result<(), ManagerError> {
        self.records
            .save_async(c)
            .await
            .map_err(|source| ManagerError::Store {
                id: c.container_id.clone(),
                source,
            })
    }

    /// Whether `name` belongs to a system container (never removed by a desired state,
    /// image never collected).
    pub fn is_system(&self, c: &Container) -> bool {
        c.extras().system || self.settings.system_containers.contains(&c.container_name)
    }
}
