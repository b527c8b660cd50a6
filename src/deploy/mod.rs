//! Deployment: the containers of the manifests dir (`deployment.ctr_dir`, Kanto's internal
//! format), created at start and kept as the manifests say. Leda provisions its system
//! containers this way.
//!
//! - Mode `update` (default): on every start, and whenever a manifest changes at run time
//!   (inotify, or SIGHUP), create what is missing and recreate or update what changed;
//!   never remove, never touch a container whose manifest did not change.
//! - Mode `init`: only on the very first start (a marker in the state dir).
//! - It runs after the live restore and does not hold READY back; STATUS says what it does.
//! - Changed containers are replaced safely (the update agent's phases: the successor is
//!   created and started before the predecessor goes, and a successor that fails gives way
//!   to the predecessor again).
//! - A manifest marked `"leda_cm": {"system": true}` deploys a system container: a desired
//!   state never removes it and its image is never collected.

pub mod manifest;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::agent::diff::Kind;
use crate::agent::messages::{Action, ActionOutcome, ActionStatus, Feedback};
use crate::agent::operation::{self, Ctx, Operation, Outcome, Sink};
use crate::config::DeploymentMode;
use crate::manager::Manager;
use crate::runtime::Runtime;
use crate::supervisor::{Pulse, Shutdown, TaskResult};
use crate::systemd;
use manifest::Manifest;

const MARKER: &str = "deployment/initialized";

#[derive(Debug, Clone)]
pub struct Settings {
    pub mode: DeploymentMode,
    pub dir: PathBuf,
    pub state_dir: PathBuf,
}

/// What one deployment pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub manifests: usize,
    pub created: usize,
    pub recreated: usize,
    pub updated: usize,
    pub failed: Vec<String>,
}

impl Summary {
    pub fn describe(&self) -> String {
        format!(
            "{} manifests: {} created, {} recreated, {} updated, {} failed",
            self.manifests,
            self.created,
            self.recreated,
            self.updated,
            self.failed.len()
        )
    }
}

/// Reads the manifests dir: the valid manifests, and the reasons for the others.
pub fn read_manifests(dir: &std::path::Path) -> (Vec<Manifest>, Vec<String>) {
    let mut names: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return (
                Vec::new(),
                vec![format!(
                    "cannot read the manifests dir {}: {e}",
                    dir.display()
                )],
            )
        }
    };
    names.sort_unstable();
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for path in names {
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read(&path) {
            Ok(bytes) => match manifest::parse(&file, &bytes) {
                Ok(m) => ok.push(m),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(format!("manifest {file}: cannot read it: {e}")),
        }
    }
    let (ok, dup) = manifest::unique(ok);
    errors.extend(dup);
    (ok, errors)
}

/// One deployment pass over the manifests dir.
pub async fn deploy<R: Runtime>(manager: &Arc<Manager<R>>, dir: &std::path::Path) -> Summary {
    let (manifests, errors) = read_manifests(dir);
    let mut summary = Summary {
        manifests: manifests.len() + errors.len(),
        failed: errors,
        ..Default::default()
    };
    for e in &summary.failed {
        log::error!("deployment: {e}; skipped");
    }
    operation::tidy_leftovers(manager).await;
    let plan = manifest::plan(&manifests, &manager.list());
    if plan.is_empty() {
        return summary;
    }
    for p in &plan {
        log::info!(
            "deployment: {} from its manifest: {:?} ({})",
            p.name,
            p.kind(),
            p.reason
        );
        match p.kind() {
            Kind::Create => summary.created += 1,
            Kind::Recreate => summary.recreated += 1,
            _ => summary.updated += 1,
        }
    }
    let sink: Sink = Arc::new(|_: &str, fb: Feedback| {
        for a in failed_actions(&fb) {
            log::warn!("deployment: {}: {} {}", a.component.id, a.status, a.message);
        }
    });
    let names: Vec<String> = plan.iter().map(|p| p.name.clone()).collect();
    let mut op = Operation::new(
        "deployment",
        plan,
        "containers",
        &|_| String::new(),
        Vec::new(),
        sink,
    );
    let ctx = Ctx::new(manager.clone());
    if op.run_standalone(&ctx, &|| false).await != Outcome::Completed {
        // Which ones failed is in the log lines above; the rest stand.
        summary
            .failed
            .extend(failures(&names, |i| op.action_status(i)));
    }
    summary
}

/// The actions of a feedback that failed (their typed status says so).
fn failed_actions(fb: &Feedback) -> impl Iterator<Item = &Action> {
    fb.actions
        .iter()
        .filter(|a| a.typed_status().map(ActionStatus::outcome) == Some(ActionOutcome::Failed))
}

/// `name: STATUS` of every planned container whose action ended failed; `status(i)` is the
/// operation's status of the i-th. A status that is not one of Kanto's counts as failed (and
/// is named), so that nothing unexpected passes for a success.
fn failures(names: &[String], status: impl Fn(usize) -> String) -> Vec<String> {
    names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let text = status(i);
            match ActionStatus::parse(&text).map(ActionStatus::outcome) {
                Some(ActionOutcome::Failed) => Some(format!("{name}: {text}")),
                Some(_) => None,
                None => Some(format!("{name}: unknown status {text:?}")),
            }
        })
        .collect()
}

/// The deployment task: the first pass after the live restore, then one per trigger
/// (manifest change or SIGHUP) in update mode.
pub async fn run<R: Runtime>(
    settings: Settings,
    manager: Arc<Manager<R>>,
    mut triggers: mpsc::Receiver<()>,
    mut shutdown: Shutdown,
    mut pulse: Pulse,
) -> TaskResult {
    {
        let restored = manager.wait_restored();
        tokio::pin!(restored);
        loop {
            pulse.beat();
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                p = pulse.wait() => pulse.handle(p).await,
                () = &mut restored => break,
            }
        }
    }
    let marker = settings.state_dir.join(MARKER);
    let dir = settings.dir.clone();
    let first = match settings.mode {
        DeploymentMode::Init if marker.exists() => {
            log::info!(
                "deployment (init mode): done at the first start; {} is not applied again",
                dir.display()
            );
            false
        }
        _ => true,
    };
    if first {
        beating(&mut pulse, pass(&manager, &dir)).await;
        if settings.mode == DeploymentMode::Init {
            if let Some(parent) = marker.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            if let Err(e) = crate::store::write_atomic(&marker, b"deployed\n", 0o600) {
                log::error!(
                    "deployment: cannot write its marker {}: {e}",
                    marker.display()
                );
            }
        }
    }
    loop {
        pulse.beat();
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            p = pulse.wait() => {
                pulse.handle(p).await;
                continue;
            }
            t = triggers.recv() => if t.is_none() { return Ok(()) },
        }
        // A burst of changes (an editor's save, a copy of several files) is one pass.
        if !pulse.sleep(Duration::from_millis(300), &mut shutdown).await {
            return Ok(());
        }
        while triggers.try_recv().is_ok() {}
        if settings.mode == DeploymentMode::Init {
            log::info!(
                "deployment (init mode): manifest changes are not applied after the first start"
            );
            continue;
        }
        beating(&mut pulse, pass(&manager, &dir)).await;
    }
}

/// Runs a pass while the loop keeps beating (a pass waits for pulls and containers).
async fn beating(pulse: &mut Pulse, work: impl std::future::Future<Output = ()>) {
    tokio::pin!(work);
    loop {
        tokio::select! {
            () = &mut work => return,
            p = pulse.wait() => pulse.handle(p).await,
        }
    }
}

async fn pass<R: Runtime>(manager: &Arc<Manager<R>>, dir: &std::path::Path) {
    systemd::status(&format!(
        "deployment: applying the manifests of {}",
        dir.display()
    ));
    let summary = deploy(manager, dir).await;
    let text = format!("deployment of {}: {}", dir.display(), summary.describe());
    if summary.failed.is_empty() {
        log::info!("{text}");
    } else {
        log::warn!("{text}");
    }
    systemd::status(&format!("running; {text}"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::messages::action_status as a;

    #[test]
    fn failures_are_read_from_typed_statuses() {
        let names: Vec<String> = ["web", "db", "cache", "mqtt", "odd"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let statuses = [
            a::ACTIVATION_SUCCESS,
            a::UPDATE_FAILURE,
            a::DOWNLOAD_FAILURE,
            a::UPDATING,
            "SOMETHING_ELSE",
        ];
        assert_eq!(
            failures(&names, |i| statuses[i].to_string()),
            [
                "db: UPDATE_FAILURE",
                "cache: DOWNLOAD_FAILURE",
                "odd: unknown status \"SOMETHING_ELSE\""
            ]
        );
        assert!(failures(&names, |_| a::ACTIVATION_SUCCESS.to_string()).is_empty());

        let action = |id: &str, status: &str| Action {
            component: crate::agent::messages::Component {
                id: id.into(),
                version: String::new(),
            },
            status: status.into(),
            ..Default::default()
        };
        let fb = Feedback {
            actions: vec![
                action("web", a::ACTIVATION_FAILURE),
                action("db", a::REMOVAL_SUCCESS),
                action("cache", a::REMOVAL_FAILURE),
                // Not a status of Kanto's: not taken for a failure by its suffix.
                action("odd", "NOT_A_FAILURE"),
            ],
            ..Default::default()
        };
        let failed: Vec<&str> = failed_actions(&fb)
            .map(|a| a.component.id.as_str())
            .collect();
        assert_eq!(failed, ["web", "cache"]);
    }
}
