//! The seam between the container manager and the container runtime (containerd): a trait
//! over plain types. The daemon uses the containerd adapter (`crate::containerd::Ctrd`);
//! the manager's decisions are unit-tested with an in-memory fake.

use std::future::Future;
use std::time::SystemTime;

use crate::spec::ImageProcess;
use crate::trust::{Signature, SignatureKind};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error("containerd unavailable: {0}")]
    Unavailable(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("pulling image {image} failed: {reason}")]
    Pull { image: String, reason: String },
    #[error("containerd {call} failed: {message}")]
    Call { call: &'static str, message: String },
}

/// A locally present image, unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub name: String,
    /// Digest of the image record's target (manifest or index).
    pub digest: String,
    /// Media type and size of that target: what a signature names with the digest.
    pub media_type: String,
    pub size: u64,
    pub process: ImageProcess,
    /// Chain ID of the top layer: the parent of a container's snapshot.
    pub top_layer: String,
}

/// Bytes of a pull so far (`total` is known once the manifest is read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// Receives pull progress; must be cheap (called per chunk).
pub type ProgressFn = std::sync::Arc<dyn Fn(Progress) + Send + Sync>;

/// What is needed to create a container in containerd.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateRequest {
    pub id: String,
    pub image: String,
    /// The OCI runtime spec as JSON.
    pub spec: serde_json::Value,
    pub runtime: String,
    /// Parent snapshot (the image's top layer chain ID).
    pub parent_snapshot: String,
    pub labels: Vec<(String, String)>,
}

/// Where a task's output goes: a containerd IO URI (`binary://…`) or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskIo {
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Created,
    Running,
    Stopped,
    Paused,
    Pausing,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub pid: u32,
    pub status: TaskStatus,
    pub exit_status: u32,
    pub exited_at: Option<SystemTime>,
    /// The stdout the task was created with (a fifo of the daemon's log capture, a
    /// `binary://` URI, or empty).
    pub stdout: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub exit_status: u32,
    pub exited_at: Option<SystemTime>,
}

/// The containerd label leda-cm puts on every container it creates (value: the name).
pub const MANAGED_LABEL: &str = "io.leda-cm.name";

/// A container record in containerd's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub id: String,
    pub image: String,
    pub task: Option<TaskInfo>,
    /// The value of `MANAGED_LABEL`, when leda-cm created it.
    pub managed_name: Option<String>,
}

/// Raw counters of one container at one moment (rates are computed by consumers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    pub timestamp: Option<SystemTime>,
    /// CPU time used, nanoseconds.
    pub cpu_total_ns: u64,
    pub memory_used: u64,
    /// 0 when unlimited.
    pub memory_limit: u64,
    pub io_read_bytes: u64,
    pub io_write_bytes: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
    pub pids: u64,
}

/// Events from containerd's event stream that the manager acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeEvent {
    TaskExit {
        id: String,
        pid: u32,
        exit_status: u32,
        exited_at: Option<SystemTime>,
    },
    TaskOom {
        id: String,
    },
    /// The connection to containerd came back: state may have changed meanwhile.
    Reconnected,
}

/// The operations the manager needs. All calls are idempotent where containerd allows it
/// (e.g. removing what is already gone is `Ok`).
pub trait Runtime: Send + Sync + 'static {
    /// The image if present locally (and unpacked, unpacking it if needed).
    fn image(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<ImageInfo>, RuntimeError>> + Send;
    /// Pulls and unpacks the image.
    fn pull(
        &self,
        name: &str,
        progress: Option<ProgressFn>,
    ) -> impl Future<Output = Result<ImageInfo, RuntimeError>> + Send;
    /// The digest the registry now serves for the image's tag.
    fn remote_digest(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;
    /// The signatures of `kind` the image's registry holds for the manifest `digest` of the
    /// image `name` (empty when there are none).
    fn signatures(
        &self,
        name: &str,
        digest: &str,
        kind: SignatureKind,
    ) -> impl Future<Output = Result<Vec<Signature>, RuntimeError>> + Send;
    fn images(&self) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
    fn remove_image(&self, name: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    fn create(&self, req: &CreateRequest) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Creates the task (its process exists, stopped before the container's program, in its
    /// own namespaces); returns its PID. An exited task left from before is deleted first.
    fn create_task(
        &self,
        id: &str,
        io: &TaskIo,
    ) -> impl Future<Output = Result<u32, RuntimeError>> + Send;
    /// Starts the created task's program; on failure the task is deleted.
    fn start_created(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn kill(&self, id: &str, signal: u32) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    /// Waits for the task to exit.
    fn wait(&self, id: &str) -> impl Future<Output = Result<ExitInfo, RuntimeError>> + Send;
    /// Runs `args` in the running task (as its process runs, no stdio) and returns the exit
    /// status; killed after `timeout`, which is an error.
    fn exec(
        &self,
        id: &str,
        exec_id: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> impl Future<Output = Result<u32, RuntimeError>> + Send;
    /// Deletes the (exited) task; `None` when there was none.
    fn delete_task(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ExitInfo>, RuntimeError>> + Send;
    fn pause(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn resume(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn task(&self, id: &str)
        -> impl Future<Output = Result<Option<TaskInfo>, RuntimeError>> + Send;
    /// Removes the container record and its snapshot.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn list(&self) -> impl Future<Output = Result<Vec<RuntimeContainer>, RuntimeError>> + Send;
    /// Removes what earlier runs of the daemon left behind and nothing uses (leases, work
    /// snapshots), sparing the containers in `keep`; returns what it removed.
    fn sweep_leftovers(
        &self,
        keep: &[String],
    ) -> impl Future<Output = Result<Vec<String>, RuntimeError>> + Send;
    fn metrics(&self, id: &str) -> impl Future<Output = Result<Metrics, RuntimeError>> + Send;
    /// The metrics of every task of the namespace, in one call.
    fn all_metrics(
        &self,
    ) -> impl Future<Output = Result<Vec<(String, Metrics)>, RuntimeError>> + Send;
    /// Applies new memory limits to the running task and the stored spec.
    fn update_resources(
        &self,
        id: &str,
        spec: &serde_json::Value,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
}
