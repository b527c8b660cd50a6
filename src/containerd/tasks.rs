//! Containers, snapshots of containers, and tasks.

use std::collections::HashMap;

use containerd_client::services::v1::container::Runtime as RuntimeSpec;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    Kind as SnapshotKind, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::ListRequest as ListLeasesRequest;
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest, GetContainerRequest, GetRequest,
    KillRequest, ListContainersRequest, ListTasksRequest, MetricsRequest, PauseTaskRequest,
    ResumeTaskRequest, StartRequest, UpdateContainerRequest, UpdateTaskRequest, WaitRequest,
};
use containerd_client::types::v1::Status as ProcStatus;
use futures_util::StreamExt;

use super::client::{map_status, time, Client, INSTANCE_LABEL, LEASE_PREFIX, SNAPSHOTTER};
use super::metrics;
use crate::runtime::{
    CreateRequest, ExitInfo, Metrics, RuntimeContainer, RuntimeError, TaskInfo, TaskIo, TaskStatus,
};

/// How long a task create waits for an earlier create of the same container (a killed
/// daemon's) to finish in containerd.
const BUNDLE_BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const RESOURCES_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

fn any(type_url: &str, value: &serde_json::Value) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.to_string(),
        value: serde_json::to_vec(value).unwrap_or_default(),
    }
}

/// The runc shim's options (containerd's `api/types/runc/options`, `containerd.runc.v1.Options`):
/// only the field leda-cm sets. containerd-client does not compile that proto.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    /// runc's root directory (`runc --root`).
    #[prost(string, tag = "7")]
    root: String,
}

const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// The container's runtime options: runc's root when one is configured (runc shims only).
fn runtime_options(runtime: &str, runc_root: Option<&str>) -> Option<prost_types::Any> {
    let root = runc_root.filter(|r| !r.is_empty())?;
    runtime
        .starts_with("io.containerd.runc.")
        .then(|| prost_types::Any {
            type_url: RUNC_OPTIONS_TYPE_URL.into(),
            value: prost::Message::encode_to_vec(&RuncOptions { root: root.into() }),
        })
}

fn what(id: &str) -> String {
    format!("container {id}")
}

fn task_what(id: &str) -> String {
    format!("task of container {id}")
}

impl Client {
    /// The container record and its writable snapshot on top of the image.
    pub async fn create_container(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        // The new snapshot is nobody's until the container record names it: a lease keeps
        // containerd's GC (run when another pull ends) from taking it meanwhile.
        let lease = self.create_lease().await?;
        let result = self.create_container_leased(req, &lease).await;
        self.delete_lease(&lease).await;
        result
    }

    async fn create_container_leased(
        &self,
        req: &CreateRequest,
        lease: &str,
    ) -> Result<(), RuntimeError> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let prepared = snapshots
            .prepare(
                self.req(
                    PrepareSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: req.id.clone(),
                        parent: req.parent_snapshot.clone(),
                        labels: req
                            .labels
                            .iter()
                            .cloned()
                            .chain([(INSTANCE_LABEL.to_string(), self.instance.clone())])
                            .collect(),
                    },
                    Some(lease),
                ),
            )
            .await;
        match prepared {
            Ok(_) => {}
            Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => {}
            Err(s) => {
                return Err(map_status(
                    "snapshot prepare",
                    &format!("snapshot {}", req.id),
                    s,
                ))
            }
        }
        let container = Container {
            id: req.id.clone(),
            labels: req.labels.iter().cloned().collect(),
            image: req.image.clone(),
            runtime: Some(RuntimeSpec {
                name: req.runtime.clone(),
                options: runtime_options(&req.runtime, self.runc_root.as_deref()),
            }),
            spec: Some(any(SPEC_TYPE_URL, &req.spec)),
            snapshotter: SNAPSHOTTER.into(),
            snapshot_key: req.id.clone(),
            ..Default::default()
        };
        let created = ContainersClient::new(self.channel.clone())
            .create(self.req(
                CreateContainerRequest {
                    container: Some(container),
                },
                None,
            ))
            .await;
        if let Err(s) = created {
            let err = map_status("container create", &what(&req.id), s);
            // Nothing half-created stays behind (unless it existed before us).
            if !matches!(err, RuntimeError::AlreadyExists { .. }) {
                let _ = self.remove_snapshot(&req.id).await;
            }
            return Err(err);
        }
        Ok(())
    }

    async fn remove_snapshot(&self, key: &str) -> Result<(), RuntimeError> {
        let removed = SnapshotsClient::new(self.channel.clone())
            .remove(self.req(
                RemoveSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.into(),
                },
                None,
            ))
            .await;
        match removed {
            Ok(_) => Ok(()),
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => Ok(()),
            Err(s) => Err(map_status("snapshot remove", &format!("snapshot {key}"), s)),
        }
    }

    pub async fn create_task(&self, id: &str, io: &TaskIo) -> Result<u32, RuntimeError> {
        let mounts = SnapshotsClient::new(self.channel.clone())
            .mounts(self.req(
                MountsRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: id.into(),
                },
                None,
            ))
            .await
            .map_err(|s| map_status("snapshot mounts", &format!("snapshot {id}"), s))?
            .into_inner()
            .mounts;
        // A create a killed daemon (or a restart of containerd) left unfinished: its bundle
        // directory exists before its task does, and a new create fails with `failed to
        // start shim: mkdir …: file exists` or `task … already exists` while the task list
        // shows none. Taken away like any leftover, within a bound.
        let deadline = tokio::time::Instant::now() + BUNDLE_BUSY_WAIT;
        loop {
            // A task left from an earlier run (exited, or created and never started) is
            // deleted first.
            if let Some(t) = self.get_task(id).await? {
                if t.status == TaskStatus::Running || t.status == TaskStatus::Paused {
                    return Err(RuntimeError::AlreadyExists {
                        what: task_what(id),
                    });
                }
                self.delete_task(id).await?;
            }
            let created = TasksClient::new(self.channel.clone())
                .create(self.req(
                    CreateTaskRequest {
                        container_id: id.into(),
                        rootfs: mounts.clone(),
                        stdin: String::new(),
                        stdout: io.stdout.clone(),
                        stderr: io.stderr.clone(),
                        terminal: io.terminal,
                        ..Default::default()
                    },
                    None,
                ))
                .await;
            match created {
                Ok(r) => return Ok(r.into_inner().pid),
                // containerd's runtime holds a task that its task list does not show: a create
                // cut short by a restart of containerd (the shim lives, the task never got its
                // process), or one still being made. Deleting it through containerd ends its
                // shim and removes its bundle; then the create is tried again.
                Err(s)
                    if (s.code() == containerd_client::tonic::Code::AlreadyExists
                        || s.message().contains("file exists"))
                        && tokio::time::Instant::now() < deadline =>
                {
                    log::info!(
                        "container {id}: containerd holds an unfinished task ({}); deleting it and creating again",
                        s.message()
                    );
                    if let Err(e) = self.delete_task(id).await {
                        log::debug!("deleting the unfinished task of {id}: {e}");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(s) => return Err(map_status("task create", &task_what(id), s)),
            }
        }
    }

    pub async fn start_created(&self, id: &str) -> Result<(), RuntimeError> {
        match TasksClient::new(self.channel.clone())
            .start(self.req(
                StartRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) => {
                let err = map_status("task start", &task_what(id), s);
                let _ = self.delete_task(id).await;
                Err(err)
            }
        }
    }

    pub async fn kill_task(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        TasksClient::new(self.channel.clone())
            .kill(self.req(
                KillRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                    signal,
                    all: false,
                },
                None,
            ))
            .await
            .map(|_| ())
            .map_err(|s| map_status("task kill", &task_what(id), s))
    }

    pub async fn wait_task(&self, id: &str) -> Result<ExitInfo, RuntimeError> {
        let r = TasksClient::new(self.channel.clone())
            .wait(self.req(
                WaitRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
            .map_err(|s| map_status("task wait", &task_what(id), s))?
            .into_inner();
        Ok(ExitInfo {
            exit_status: r.exit_status,
            exited_at: time(&r.exited_at),
        })
    }

    /// Runs `args` in the running task of `id` as the container's own process runs (its
    /// user, environment, working directory, capabilities), without stdio, and returns its
    /// exit status; after `timeout` it is killed and that is an error. The process is deleted
    /// in every case.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> Result<u32, RuntimeError> {
        let container = ContainersClient::new(self.channel.clone())
            .get(self.req(GetContainerRequest { id: id.into() }, None))
            .await
            .map_err(|s| map_status("container get", &format!("container {id}"), s))?
            .into_inner()
            .container
            .ok_or_else(|| RuntimeError::NotFound {
                what: format!("container {id}"),
            })?;
        let spec: serde_json::Value = container
            .spec
            .as_ref()
            .and_then(|a| serde_json::from_slice(&a.value).ok())
            .unwrap_or_default();
        let mut process = spec.get("process").cloned().unwrap_or_default();
        process["args"] = serde_json::json!(args);
        process["terminal"] = false.into();
        let what = format!("process {exec_id} of container {id}");
        let mut tasks = TasksClient::new(self.channel.clone());
        tasks
            .exec(self.req(
                ExecProcessRequest {
                    container_id: id.into(),
                    exec_id: exec_id.into(),
                    spec: Some(any(PROCESS_TYPE_URL, &process)),
                    ..Default::default()
                },
                None,
            ))
            .await
            .map_err(|s| map_status("task exec", &what, s))?;
        let result = async {
            // Waiting is set up before the start, so a quick exit is not missed.
            let mut waiter = TasksClient::new(self.channel.clone());
            let wait = waiter.wait(self.req(
                WaitRequest {
                    container_id: id.into(),
                    exec_id: exec_id.into(),
                },
                None,
            ));
            tasks
                .start(self.req(
                    StartRequest {
                        container_id: id.into(),
                        exec_id: exec_id.into(),
                    },
                    None,
                ))
                .await
                .map_err(|s| map_status("exec start", &what, s))?;
            match tokio::time::timeout(timeout, wait).await {
                Ok(r) => Ok(r
                    .map_err(|s| map_status("exec wait", &what, s))?
                    .into_inner()
                    .exit_status),
                Err(_) => {
                    let _ = tasks
                        .kill(self.req(
                            KillRequest {
                                container_id: id.into(),
                                exec_id: exec_id.into(),
                                signal: 9,
                                all: false,
                            },
                            None,
                        ))
                        .await;
                    Err(RuntimeError::Call {
                        call: "exec",
                        message: format!("{what} did not exit within {timeout:?}"),
                    })
                }
            }
        }
        .await;
        // Killed or exited: the process goes (a kill's exit may take a moment to land).
        for _ in 0..20 {
            let deleted = tasks
                .delete_process(self.req(
                    DeleteProcessRequest {
                        container_id: id.into(),
                        exec_id: exec_id.into(),
                    },
                    None,
                ))
                .await;
            match deleted {
                Ok(_) => break,
                Err(s) if s.code() == containerd_client::tonic::Code::NotFound => break,
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        result
    }

    pub async fn delete_task(&self, id: &str) -> Result<Option<ExitInfo>, RuntimeError> {
        match TasksClient::new(self.channel.clone())
            .delete(self.req(
                DeleteTaskRequest {
                    container_id: id.into(),
                },
                None,
            ))
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Some(ExitInfo {
                    exit_status: r.exit_status,
                    exited_at: time(&r.exited_at),
                }))
            }
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => Ok(None),
            Err(s) => Err(map_status("task delete", &task_what(id), s)),
        }
    }

    pub async fn pause_task(&self, id: &str) -> Result<(), RuntimeError> {
        TasksClient::new(self.channel.clone())
            .pause(self.req(
                PauseTaskRequest {
                    container_id: id.into(),
                },
                None,
            ))
            .await
            .map(|_| ())
            .map_err(|s| map_status("task pause", &task_what(id), s))
    }

    pub async fn resume_task(&self, id: &str) -> Result<(), RuntimeError> {
        TasksClient::new(self.channel.clone())
            .resume(self.req(
                ResumeTaskRequest {
                    container_id: id.into(),
                },
                None,
            ))
            .await
            .map(|_| ())
            .map_err(|s| map_status("task resume", &task_what(id), s))
    }

    pub async fn get_task(&self, id: &str) -> Result<Option<TaskInfo>, RuntimeError> {
        match TasksClient::new(self.channel.clone())
            .get(self.req(
                GetRequest {
                    container_id: id.into(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await
        {
            Ok(r) => Ok(r.into_inner().process.map(|p| task_info(&p))),
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => Ok(None),
            Err(s) => Err(map_status("task get", &task_what(id), s)),
        }
    }

    /// Removes the container record and its snapshot; both may already be gone.
    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        match ContainersClient::new(self.channel.clone())
            .delete(self.req(DeleteContainerRequest { id: id.into() }, None))
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => {}
            Err(s) => return Err(map_status("container delete", &what(id), s)),
        }
        self.remove_snapshot(id).await
    }

    /// What earlier runs of leda-cm left in containerd and nothing uses: their leases (a
    /// pull or create cut short) and their active snapshots (a layer being unpacked, a
    /// container's snapshot whose container was never made) that no containerd container
    /// and no ID in `keep` names; and this run's leases it has given up (their delete
    /// failed). Nothing in use is touched, so it is safe while operations run. Returns what
    /// it removed.
    pub async fn sweep_leftovers(&self, keep: &[String]) -> Result<Vec<String>, RuntimeError> {
        let mut removed = Vec::new();
        // Another run's mark: left by it. Unmarked: not leda-cm's (or older), left alone.
        let theirs = |labels: &HashMap<String, String>| {
            labels
                .get(INSTANCE_LABEL)
                .is_some_and(|i| *i != self.instance)
        };
        let leases = LeasesClient::new(self.channel.clone())
            .list(self.req(ListLeasesRequest { filters: vec![] }, None))
            .await
            .map_err(|s| map_status("lease list", "leases", s))?
            .into_inner()
            .leases;
        let live = self
            .live_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for lease in leases {
            let ours = lease.labels.get(INSTANCE_LABEL) == Some(&self.instance);
            let stale = theirs(&lease.labels) || (ours && !live.contains(&lease.id));
            if lease.id.starts_with(LEASE_PREFIX) && stale {
                // A download cut short (a crash, a broken link) waits under it for the next
                // pull to resume from; containerd's GC takes it when the lease expires.
                if self.lease_holds_ingests(&lease.id).await {
                    log::debug!("lease {} holds an unfinished download; kept", lease.id);
                    continue;
                }
                self.delete_lease(&lease.id).await;
                removed.push(format!("lease {}", lease.id));
            }
        }
        let containers = self.containers().await?;
        let mut stream = SnapshotsClient::new(self.channel.clone())
            .list(self.req(
                ListSnapshotsRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    filters: vec![],
                },
                None,
            ))
            .await
            .map_err(|s| map_status("snapshot list", "snapshots", s))?
            .into_inner();
        let mut stale = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|s| map_status("snapshot list", "snapshots", s))?;
            for info in batch.info {
                let active = info.kind == SnapshotKind::Active as i32;
                let used = containers.iter().any(|c| c.snapshot_key == info.name)
                    || keep.contains(&info.name);
                if active && !used && theirs(&info.labels) {
                    stale.push(info.name);
                }
            }
        }
        for key in stale {
            self.remove_snapshot(&key).await?;
            removed.push(format!("snapshot {key}"));
        }
        Ok(removed)
    }

    /// containerd's container records in our namespace.
    async fn containers(&self) -> Result<Vec<Container>, RuntimeError> {
        Ok(ContainersClient::new(self.channel.clone())
            .list(self.req(ListContainersRequest { filters: vec![] }, None))
            .await
            .map_err(|s| map_status("container list", "containers", s))?
            .into_inner()
            .containers)
    }

    pub async fn list_containers(&self) -> Result<Vec<RuntimeContainer>, RuntimeError> {
        let containers = self.containers().await?;
        let tasks = TasksClient::new(self.channel.clone())
            .list(self.req(
                ListTasksRequest {
                    filter: String::new(),
                },
                None,
            ))
            .await
            .map_err(|s| map_status("task list", "tasks", s))?
            .into_inner()
            .tasks;
        Ok(containers
            .into_iter()
            .map(|c| RuntimeContainer {
                task: tasks
                    .iter()
                    .find(|t| t.container_id == c.id || t.id == c.id)
                    .map(task_info),
                managed_name: c.labels.get(crate::runtime::MANAGED_LABEL).cloned(),
                id: c.id,
                image: c.image,
            })
            .collect())
    }

    pub async fn task_metrics(&self, id: &str) -> Result<Metrics, RuntimeError> {
        let mut all = self
            .metrics_where(vec![format!("id=={id}")], &task_what(id))
            .await?;
        all.pop()
            .map(|(_, m)| m)
            .ok_or_else(|| RuntimeError::NotFound {
                what: task_what(id),
            })
    }

    /// Every task's metrics in one call.
    pub async fn all_task_metrics(&self) -> Result<Vec<(String, Metrics)>, RuntimeError> {
        self.metrics_where(Vec::new(), "tasks").await
    }

    async fn metrics_where(
        &self,
        filters: Vec<String>,
        what: &str,
    ) -> Result<Vec<(String, Metrics)>, RuntimeError> {
        let list = TasksClient::new(self.channel.clone())
            .metrics(self.req(MetricsRequest { filters }, None))
            .await
            .map_err(|s| map_status("task metrics", what, s))?
            .into_inner()
            .metrics;
        let mut out = Vec::with_capacity(list.len());
        for metric in list {
            let data = metric.data.ok_or_else(|| RuntimeError::Call {
                call: "task metrics",
                message: "no data".into(),
            })?;
            let mut m =
                metrics::decode(&data.type_url, &data.value).map_err(|e| RuntimeError::Call {
                    call: "task metrics",
                    message: e,
                })?;
            m.timestamp = time(&metric.timestamp);
            out.push((metric.id, m));
        }
        Ok(out)
    }

    /// New resources for the running task, and the stored spec for later starts.
    pub async fn update_resources(
        &self,
        id: &str,
        spec: &serde_json::Value,
    ) -> Result<(), RuntimeError> {
        let mut containers = ContainersClient::new(self.channel.clone());
        let mut container = containers
            .get(self.req(GetContainerRequest { id: id.into() }, None))
            .await
            .map_err(|s| map_status("container get", &what(id), s))?
            .into_inner()
            .container
            .ok_or_else(|| RuntimeError::NotFound { what: what(id) })?;
        container.spec = Some(any(SPEC_TYPE_URL, spec));
        containers
            .update(self.req(
                UpdateContainerRequest {
                    container: Some(container),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["spec".into()],
                    }),
                },
                None,
            ))
            .await
            .map_err(|s| map_status("container update", &what(id), s))?;
        if let Some(task) = self.get_task(id).await? {
            if matches!(task.status, TaskStatus::Running | TaskStatus::Paused) {
                let resources = &spec["linux"]["resources"];
                TasksClient::new(self.channel.clone())
                    .update(self.req(
                        UpdateTaskRequest {
                            container_id: id.into(),
                            resources: Some(any(RESOURCES_TYPE_URL, resources)),
                            annotations: HashMap::new(),
                        },
                        None,
                    ))
                    .await
                    .map_err(|s| map_status("task update", &task_what(id), s))?;
            }
        }
        Ok(())
    }
}

fn task_info(p: &containerd_client::types::v1::Process) -> TaskInfo {
    let status = match ProcStatus::try_from(p.status) {
        Ok(ProcStatus::Created) => TaskStatus::Created,
        Ok(ProcStatus::Running) => TaskStatus::Running,
        Ok(ProcStatus::Stopped) => TaskStatus::Stopped,
        Ok(ProcStatus::Paused) => TaskStatus::Paused,
        Ok(ProcStatus::Pausing) => TaskStatus::Pausing,
        _ => TaskStatus::Unknown,
    };
    TaskInfo {
        pid: p.pid,
        status,
        exit_status: p.exit_status,
        exited_at: time(&p.exited_at),
        stdout: p.stdout.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runc_root_goes_into_the_runc_options_only_when_set() {
        let any = runtime_options("io.containerd.runc.v2", Some("/run/t1/runc")).unwrap();
        assert_eq!(any.type_url, "containerd.runc.v1.Options");
        // Field 7, length-delimited (0x3a), as containerd's Go proto encodes `root`.
        let mut want = vec![0x3a, 12];
        want.extend_from_slice(b"/run/t1/runc");
        assert_eq!(any.value, want);
        assert_eq!(runtime_options("io.containerd.runc.v2", None), None);
        assert_eq!(runtime_options("io.containerd.runc.v2", Some("")), None);
        // Another runtime's options are not runc's.
        assert_eq!(
            runtime_options("io.containerd.kata.v2", Some("/run/t1/runc")),
            None
        );
    }
}
