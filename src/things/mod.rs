//! The cloud digital twin (Eclipse Ditto over the local broker): once the cloud connector
//! names the device (`edge/thing/request` → `edge/thing/response`), leda-cm publishes its
//! containers into the `<deviceId>:edge:containers` thing and serves the features' live
//! messages: ContainerFactory, `Container:<id>`, SoftwareUpdatable and Metrics.
//!
//! - The identity is kept in the state dir: after a restart the twin is served at once
//!   under it; the handshake is redone on every (re)connection, and a new identity moves
//!   everything under the new thing.
//! - The twin follows every container change, sending only what changed (name, config or
//!   state of a `Container:<id>` feature; the feature added or deleted; the installed
//!   dependencies), and in full after each handshake. Features of containers that went
//!   away while leda-cm was offline are deleted then.
//! - Requests run in their own tasks (a 10 s stop does not hold the others up); their
//!   answers go to `command//<thing>/res/<id>/<status>`.
//! - Installs and removals run one at a time in the background; an install that fails
//!   leaves nothing behind (Kanto keeps what it had created).
//! - A metrics request survives reconnections (Kanto drops it).

pub mod convert;
pub mod ditto;
pub mod metrics;
pub mod software;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::manager::{Change, Manager, ManagerError};
use crate::model::Container;
use crate::mqtt::{Consumer, Incoming, Mqtt};
use crate::runtime::Runtime;
use crate::store;
use crate::supervisor::{Pulse, Shutdown, TaskResult};
use ditto::{Identity, Request, Thing, ThingError};
use software::{status as su, Install, OperationStatus, Remove};

pub const FACTORY_DEFINITION: &str = "com.bosch.iot.suite.edge.containers:ContainerFactory:1.3.0";
/// An install's artifact is a container description: a few KiB.
const ARTIFACT_LIMIT: usize = 1 << 20;
const STATE_FILE: &str = "things/twin.json";

/// Which features are served (`things.features`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    pub container_factory: bool,
    pub software_updatable: bool,
    pub metrics: bool,
}

impl Features {
    /// From `things.features`; unknown names are returned to be warned about.
    pub fn from_names(names: &[String]) -> (Features, Vec<String>) {
        let has = |n: &str| names.iter().any(|x| x == n);
        let unknown = names
            .iter()
            .filter(|n| !["ContainerFactory", "SoftwareUpdatable", "Metrics"].contains(&n.as_str()))
            .cloned()
            .collect();
        (
            Features {
                container_factory: has("ContainerFactory"),
                software_updatable: has("SoftwareUpdatable"),
                metrics: has("Metrics"),
            },
            unknown,
        )
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub features: Features,
    pub state_dir: PathBuf,
    /// What a twin command may ask for (`remote_requests`).
    pub remote: crate::config::RemoteRequestsConfig,
}

/// What is kept in `<state>/things/twin.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Persisted {
    version: u32,
    identity: Option<Identity>,
    /// IDs of the containers whose features the twin has.
    containers: Vec<String>,
}

#[derive(Default)]
struct SuState {
    last: Option<OperationStatus>,
    last_failed: Option<OperationStatus>,
}

struct Shared<R: Runtime> {
    settings: Settings,
    manager: Arc<Manager<R>>,
    mqtt: Mqtt,
    thing: Mutex<Option<Thing>>,
    su: Mutex<SuState>,
    /// Installs and removals run one at a time.
    su_jobs: tokio::sync::Mutex<()>,
    metrics_requests: mpsc::UnboundedSender<metrics::Request>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl<R: Runtime> Shared<R> {
    fn thing(&self) -> Option<Thing> {
        lock(&self.thing).clone()
    }

    async fn send(&self, topic: &str, envelope: &Value) {
        if let Err(e) = self
            .mqtt
            .publish(topic, false, envelope.to_string().into_bytes())
        {
            log::warn!("{e}");
        }
    }

    async fn modify(&self, path: &str, value: Value) {
        if let Some(t) = self.thing() {
            self.send(&t.event_topic(), &t.modify(path, value)).await;
        }
    }

    async fn delete(&self, path: &str) {
        if let Some(t) = self.thing() {
            self.send(&t.event_topic(), &t.delete(path)).await;
        }
    }

    /// Reports an install or removal step (a failure goes to `lastFailedOperation` too).
    async fn report(&self, op: OperationStatus) {
        let failed = op.is_failure();
        {
            let mut s = lock(&self.su);
            if failed {
                s.last_failed = Some(op.clone());
            }
            s.last = Some(op.clone());
        }
        let base = "/features/SoftwareUpdatable/properties/status";
        if failed {
            self.modify(&format!("{base}/lastFailedOperation"), json!(op))
                .await;
        }
        self.modify(&format!("{base}/lastOperation"), json!(op))
            .await;
    }
}

pub struct Things<R: Runtime> {
    shared: Arc<Shared<R>>,
    consumer: Consumer,
    inbound: mpsc::Receiver<Incoming>,
    metrics_requests: mpsc::UnboundedReceiver<metrics::Request>,
    persisted: Persisted,
}

impl<R: Runtime> Things<R> {
    /// Registers the subscriptions (the handshake's, and the remembered thing's commands).
    pub fn new(settings: Settings, manager: Arc<Manager<R>>, mqtt: Mqtt) -> Things<R> {
        let (consumer, inbound) = mqtt.consumer(256);
        mqtt.subscribe(&consumer, ditto::HANDSHAKE_RESPONSE);
        let path = settings.state_dir.join(STATE_FILE);
        let persisted = match store::read_json::<Persisted>(&path) {
            Ok(p) => p.unwrap_or_default(),
            Err(e) => {
                log::warn!("the twin state is unreadable, starting afresh: {e}");
                Persisted::default()
            }
        };
        let thing = persisted.identity.as_ref().map(Identity::thing);
        if let Some(t) = &thing {
            mqtt.subscribe(&consumer, &t.command_filter());
            log::info!("digital twin: thing {} (remembered)", t.id());
        }
        let (tx, metrics_requests) = mpsc::unbounded_channel();
        Things {
            shared: Arc::new(Shared {
                settings,
                manager,
                mqtt,
                thing: Mutex::new(thing),
                su: Mutex::default(),
                su_jobs: tokio::sync::Mutex::new(()),
                metrics_requests: tx,
            }),
            consumer,
            inbound,
            metrics_requests,
            persisted,
        }
    }

    /// Written on the blocking pool, awaited (so writes stay in order).
    async fn persist(&self) {
        let path = self.shared.settings.state_dir.join(STATE_FILE);
        let mut p = self.persisted.clone();
        p.version = 1;
        let at = path.clone();
        let written = store::off_thread(path, move || {
            if let Some(dir) = at.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            store::write_json_atomic(&at, &p, 0o600)
        })
        .await;
        if let Err(e) = written {
            log::error!("cannot keep the twin state: {e}");
        }
    }

    /// The twin task.
    pub async fn run(mut self, mut shutdown: Shutdown, mut pulse: Pulse) -> TaskResult {
        let shared = self.shared.clone();
        let manager = shared.manager.clone();
        let mut restored = Box::pin(manager.wait_restored());
        let mut is_restored = false;
        let mut twin = Twin::default();
        let mut changes = manager.subscribe();
        let mut meter = Meter::default();
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            pulse.beat();
            tokio::select! {
                _ = shutdown.wait() => break,
                p = pulse.wait() => pulse.handle(p).await,
                () = &mut restored, if !is_restored => {
                    is_restored = true;
                    if shared.thing().is_some() {
                        self.publish_all(&mut twin).await;
                    }
                }
                Some(incoming) = self.inbound.recv() => match incoming {
                    Incoming::Connected { .. } => {
                        if let Err(e) = shared
                            .mqtt
                            .publish(ditto::HANDSHAKE_REQUEST, false, ditto::HANDSHAKE_PAYLOAD.as_bytes().to_vec())
                        {
                            log::warn!("{e}");
                        }
                        if is_restored && shared.thing().is_some() {
                            self.publish_all(&mut twin).await;
                        }
                    }
                    Incoming::Disconnected => {}
                    Incoming::Message(m) => {
                        if m.topic == ditto::HANDSHAKE_RESPONSE {
                            self.on_identity(&m.payload, is_restored, &mut twin).await;
                        } else {
                            self.on_command(&m.topic, &m.payload);
                        }
                        shared.mqtt.ack(&m).await;
                    }
                },
                change = changes.recv() => match change {
                    Ok(c) if is_restored => self.on_change(c, &mut twin).await,
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        log::warn!("digital twin: {n} container changes missed, publishing the twin again");
                        if is_restored {
                            self.publish_all(&mut twin).await;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {}
                },
                Some(request) = self.metrics_requests.recv() => {
                    meter.set(request, &manager).await;
                    if !meter.request.frequency.is_zero() {
                        // parse_request bounds the period; checked_add all the same.
                        let now = tokio::time::Instant::now();
                        tick = tokio::time::interval_at(
                            now.checked_add(meter.request.frequency).unwrap_or(now),
                            meter.request.frequency,
                        );
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                _ = tick.tick() => {
                    if !meter.request.frequency.is_zero() && shared.settings.features.metrics {
                        if let (Some(t), Some(value)) = (shared.thing(), meter.report(&manager).await) {
                            shared.send(&t.event_topic(), &t.outbox_message("Metrics", "data", value)).await;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    async fn on_identity(&mut self, payload: &[u8], is_restored: bool, twin: &mut Twin) {
        let identity = match Identity::parse(payload) {
            Ok(i) => i,
            Err(e) => {
                log::warn!("{e}");
                return;
            }
        };
        let thing = identity.thing();
        let old = self.shared.thing();
        if old.as_ref() == Some(&thing) && self.persisted.identity.as_ref() == Some(&identity) {
            return;
        }
        if let Some(old) = &old {
            if *old != thing {
                self.shared.mqtt.unsubscribe(&old.command_filter());
                log::info!(
                    "digital twin: the device is now {} (was {})",
                    thing.id(),
                    old.id()
                );
                // Everything moves: the new thing gets every feature.
                self.persisted.containers.clear();
            }
        }
        if old.as_ref() != Some(&thing) {
            self.shared
                .mqtt
                .subscribe(&self.consumer, &thing.command_filter());
            log::info!("digital twin: thing {}", thing.id());
        }
        *lock(&self.shared.thing) = Some(thing);
        self.persisted.identity = Some(identity);
        self.persist().await;
        if is_restored {
            self.publish_all(twin).await;
        }
    }

    fn on_command(&self, topic: &str, payload: &[u8]) {
        let Some(thing) = self.shared.thing() else {
            return;
        };
        let shared = self.shared.clone();
        let parsed = ditto::parse_request(topic, payload, &thing);
        let topic = topic.to_string();
        tokio::spawn(async move {
            let (reply, result) = match parsed {
                Ok(request) => {
                    let reply = request.reply.clone();
                    let result = handle(&shared, request).await;
                    (reply, result)
                }
                Err(failed) => {
                    let (reply, e) = *failed;
                    (reply, Err(e))
                }
            };
            if let Err(e) = &result {
                log::warn!("digital twin request {topic}: {} {}", e.status, e.message);
            }
            if let Some((topic, envelope)) = ditto::response(&reply, &result) {
                shared.send(&topic, &envelope).await;
            }
        });
    }

    /// Every feature in full, and the deletion of container features whose containers
    /// went away meanwhile.
    async fn publish_all(&mut self, twin: &mut Twin) {
        let shared = self.shared.clone();
        let f = shared.settings.features;
        let containers = shared.manager.list();
        if f.container_factory {
            shared
                .modify(
                    "/features/ContainerFactory",
                    json!({"definition": [FACTORY_DEFINITION]}),
                )
                .await;
        }
        if f.software_updatable {
            let status = {
                let s = lock(&shared.su);
                software::su_status(&containers, s.last.as_ref(), s.last_failed.as_ref())
            };
            twin.dependencies = status
                .get("installedDependencies")
                .cloned()
                .unwrap_or(Value::Null);
            shared
                .modify(
                    "/features/SoftwareUpdatable",
                    json!({"definition": [software::SU_DEFINITION], "properties": {"status": status}}),
                )
                .await;
        }
        if f.metrics {
            shared
                .modify(
                    "/features/Metrics",
                    json!({"definition": [metrics::METRICS_DEFINITION]}),
                )
                .await;
        }
        twin.containers.clear();
        if f.container_factory {
            let now: HashSet<&str> = containers.iter().map(|c| c.container_id.as_str()).collect();
            for gone in self
                .persisted
                .containers
                .iter()
                .filter(|id| !now.contains(id.as_str()))
            {
                shared
                    .delete(&format!("/features/{}", convert::feature_id(gone)))
                    .await;
            }
            for c in &containers {
                shared
                    .modify(
                        &format!("/features/{}", convert::feature_id(&c.container_id)),
                        convert::feature(c),
                    )
                    .await;
                twin.containers
                    .insert(c.container_id.clone(), convert::status(c));
            }
        }
        self.persisted.containers = containers.iter().map(|c| c.container_id.clone()).collect();
        self.persist().await;
    }

    async fn on_change(&mut self, change: Change, twin: &mut Twin) {
        let shared = self.shared.clone();
        if shared.thing().is_none() {
            return;
        }
        let f = shared.settings.features;
        let (c, removed) = match change {
            Change::Created(c) | Change::Updated(c) => (c, false),
            Change::Removed(c) => (c, true),
        };
        let feature = format!("/features/{}", convert::feature_id(&c.container_id));
        if f.container_factory {
            let status = convert::status(&c);
            match twin.containers.get(&c.container_id) {
                _ if removed => {
                    shared
                        .modify(
                            &format!("{feature}/properties/status/state"),
                            status["state"].clone(),
                        )
                        .await;
                    shared.delete(&feature).await;
                    twin.containers.remove(&c.container_id);
                }
                None => {
                    shared.modify(&feature, convert::feature(&c)).await;
                    twin.containers.insert(c.container_id.clone(), status);
                }
                Some(before) => {
                    for part in ["name", "config", "state"] {
                        if before.get(part) != status.get(part) {
                            let value = status.get(part).cloned().unwrap_or(Value::Null);
                            shared
                                .modify(&format!("{feature}/properties/status/{part}"), value)
                                .await;
                        }
                    }
                    twin.containers.insert(c.container_id.clone(), status);
                }
            }
        }
        if f.software_updatable {
            let containers = shared.manager.list();
            let deps = json!(software::installed_dependencies(&containers));
            let deps = if deps.as_object().is_some_and(|m| m.is_empty()) {
                Value::Null
            } else {
                deps
            };
            if deps != twin.dependencies {
                // The last one gone: the property goes (as in the full status, where Kanto
                // omits an empty map; Ditto's envelope allows no null value).
                let path = "/features/SoftwareUpdatable/properties/status/installedDependencies";
                if deps.is_null() {
                    shared.delete(path).await;
                } else {
                    shared.modify(path, deps.clone()).await;
                }
                twin.dependencies = deps;
            }
        }
        let ids: Vec<String> = shared
            .manager
            .list()
            .into_iter()
            .map(|c| c.container_id)
            .collect();
        if ids != self.persisted.containers {
            self.persisted.containers = ids;
            self.persist().await;
        }
    }
}

/// What the twin was last told.
#[derive(Default)]
struct Twin {
    /// Container ID → its `status` property.
    containers: BTreeMap<String, Value>,
    dependencies: Value,
}

/// The Metrics feature's running request and CPU baselines.
/// How long the twin's loop waits for containerd's metrics (it must keep beating: the
/// watchdog's limit on a device is WatchdogSec/2).
const METRICS_CALL: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Meter {
    request: metrics::Request,
    baselines: HashMap<String, metrics::CpuSample>,
}

impl Meter {
    async fn set<R: Runtime>(&mut self, request: metrics::Request, manager: &Manager<R>) {
        self.request = request;
        self.baselines.clear();
        if self.request.frequency.is_zero() {
            return;
        }
        // The first report already has a CPU figure: the baseline is taken now.
        let host = crate::host::cpu_total_ns().unwrap_or(0);
        if let Ok(Ok(all)) = tokio::time::timeout(METRICS_CALL, manager.all_metrics()).await {
            for (c, m) in all {
                self.baselines.insert(
                    c.container_id,
                    metrics::CpuSample {
                        container_ns: m.cpu_total_ns,
                        host_ns: host,
                    },
                );
            }
        }
    }

    async fn report<R: Runtime>(&mut self, manager: &Manager<R>) -> Option<Value> {
        let host_cpu = crate::host::cpu_total_ns().unwrap_or(0);
        let host_memory = crate::host::memory_total().unwrap_or(0);
        let all = match tokio::time::timeout(METRICS_CALL, manager.all_metrics()).await {
            Ok(Ok(all)) => all,
            Ok(Err(e)) => {
                log::warn!("metrics: {e}");
                return None;
            }
            Err(_) => {
                log::warn!(
                    "metrics: containerd did not answer within {METRICS_CALL:?}; report skipped"
                );
                return None;
            }
        };
        let filter = &self.request.filter;
        let mut snapshot = Vec::with_capacity(all.len());
        let mut seen = HashSet::new();
        for (c, m) in all {
            let originator = convert::feature_id(&c.container_id);
            if !metrics::wants_originator(filter, &originator) {
                continue;
            }
            let now = metrics::CpuSample {
                container_ns: m.cpu_total_ns,
                host_ns: host_cpu,
            };
            let cpu = self
                .baselines
                .get(&c.container_id)
                .and_then(|before| metrics::cpu_utilization(*before, now));
            self.baselines.insert(c.container_id.clone(), now);
            seen.insert(c.container_id.clone());
            let has_network = c.host_config.network_mode == crate::model::NetworkMode::Bridge;
            let values =
                metrics::measurements(&originator, &m, cpu, host_memory, has_network, filter);
            snapshot.push((originator, values));
        }
        self.baselines.retain(|id, _| seen.contains(id));
        metrics::data(snapshot, unix_seconds())
    }
}

/// ManagerError → the answer's error: bad input 400, unknown container 404, else 500.
fn thing_error(e: ManagerError) -> ThingError {
    match e {
        ManagerError::NotFound(_) | ManagerError::NameNotFound(_) => {
            ThingError::not_found(e.to_string())
        }
        ManagerError::Invalid(_) => ThingError::invalid(e.to_string()),
        ManagerError::Untrusted(_) => ThingError::forbidden(e.to_string()),
        _ => ThingError::failed(e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Create {
    #[serde(default)]
    image_ref: String,
    #[serde(default)]
    start: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateWithConfig {
    #[serde(default)]
    image_ref: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    config: Option<convert::Config>,
    #[serde(default)]
    start: bool,
}

async fn handle<R: Runtime>(
    shared: &Arc<Shared<R>>,
    r: Request,
) -> Result<Option<Value>, ThingError> {
    let f = shared.settings.features;
    let unsupported = || {
        Err(ThingError::not_found(format!(
            "unsupported operation {}",
            r.operation
        )))
    };
    match r.feature.as_str() {
        "ContainerFactory" if f.container_factory => match r.operation.as_str() {
            "create" => {
                let a: Create = convert::arg("create", &r.value)?;
                let mut c = Container::default();
                c.image.name = a.image_ref.clone();
                create(shared, &a.image_ref, c, a.start).await
            }
            "createWithConfig" => {
                let a: CreateWithConfig = convert::arg("createWithConfig", &r.value)?;
                let c =
                    convert::container_from(&a.image_ref, &a.name, &a.config.unwrap_or_default())?;
                create(shared, &a.image_ref, c, a.start).await
            }
            _ => unsupported(),
        },
        feature if f.container_factory && feature.starts_with("Container:") => {
            let id = &feature["Container:".len()..];
            container_operation(shared, id, &r.operation, &r.value).await
        }
        "SoftwareUpdatable" if f.software_updatable => match r.operation.as_str() {
            "install" => {
                let i: Install = convert::arg("install", &r.value)?;
                software::validate_install(&i)?;
                let s = shared.clone();
                tokio::spawn(async move { install(&s, i).await });
                Ok(None)
            }
            "remove" => {
                let rm: Remove = convert::arg("remove", &r.value)?;
                software::validate_remove(&rm)?;
                let s = shared.clone();
                tokio::spawn(async move { remove(&s, rm).await });
                Ok(None)
            }
            _ => unsupported(),
        },
        "Metrics" if f.metrics => match r.operation.as_str() {
            "request" => {
                let request = metrics::parse_request(&r.value)?;
                shared
                    .metrics_requests
                    .send(request)
                    .map_err(|_| ThingError::failed("metrics feature is disposed"))?;
                Ok(None)
            }
            _ => unsupported(),
        },
        other => Err(ThingError::not_found(format!("feature {other} not found"))),
    }
}

/// Creates (and starts) a container; a start that fails removes it again.
async fn create<R: Runtime>(
    shared: &Shared<R>,
    image_ref: &str,
    c: Container,
    start: bool,
) -> Result<Option<Value>, ThingError> {
    if image_ref.trim().is_empty() {
        return Err(ThingError::invalid("imageRef must be set"));
    }
    let refused = crate::model::policy::violations(&c, &shared.settings.remote);
    if !refused.is_empty() {
        return Err(ThingError::forbidden(refused.join("; ")));
    }
    let m = &shared.manager;
    let created = m.create(c, None).await.map_err(thing_error)?;
    let id = created.container_id.clone();
    if start {
        if let Err(e) = m.start(&id).await {
            let _ = m.remove(&id, true).await;
            return Err(ThingError::failed(format!(
                "container {id} was created but could not start, and was removed: {e}"
            )));
        }
    }
    Ok(Some(json!(id)))
}

async fn container_operation<R: Runtime>(
    shared: &Shared<R>,
    id: &str,
    op: &str,
    value: &Value,
) -> Result<Option<Value>, ThingError> {
    let m = &shared.manager;
    m.get(id).map_err(thing_error)?;
    let done = match op {
        "start" => m.start(id).await.map(|_| ()),
        "stop" => m.stop(id, Default::default()).await.map(|_| ()),
        "stopWithOptions" => {
            let o: convert::Stop = if value.is_null() {
                convert::Stop::default()
            } else {
                convert::arg("stopWithOptions", value)?
            };
            m.stop(id, convert::stop_options(&o)?).await.map(|_| ())
        }
        "pause" => m.pause(id).await.map(|_| ()),
        "resume" => m.resume(id).await.map(|_| ()),
        "rename" => {
            let name: String = convert::arg("rename", value)?;
            m.rename(id, &name).await.map(|_| ())
        }
        "update" => {
            let u: convert::Update = convert::arg("update", value)?;
            m.update(id, convert::update_options(&u)?).await.map(|_| ())
        }
        "remove" => {
            let force: Option<bool> = convert::arg("remove", value)?;
            m.remove(id, force.unwrap_or(false)).await
        }
        _ => return Err(ThingError::not_found(format!("unsupported operation {op}"))),
    };
    done.map(|()| None).map_err(thing_error)
}

fn op_status(
    correlation_id: &str,
    status: &str,
    module: Option<&software::Module>,
    message: &str,
) -> OperationStatus {
    OperationStatus {
        correlation_id: correlation_id.to_string(),
        status: status.to_string(),
        software_module: module.cloned(),
        software: Vec::new(),
        message: message.to_string(),
    }
}

/// Installs each software module: its artifacts downloaded and checked, their images
/// pulled, the containers created and started. A failure removes what this module created.
async fn install<R: Runtime>(shared: &Arc<Shared<R>>, i: Install) {
    let _one_at_a_time = shared.su_jobs.lock().await;
    let id = &i.correlation_id;
    for module in &i.software_modules {
        let sm = Some(&module.software_module);
        let report = |status: &'static str, message: String| {
            let op = op_status(id, status, sm, &message);
            async move { shared.report(op).await }
        };
        report(su::STARTED, String::new()).await;
        report(su::DOWNLOADING, String::new()).await;
        let mut containers = Vec::new();
        let mut rejected = None;
        let mut failed = None;
        for a in &module.artifacts {
            let url = software::artifact_url(a).unwrap_or_default();
            let bytes = match crate::registry::fetch_artifact(url, ARTIFACT_LIMIT).await {
                Ok(b) => b,
                Err(e) => {
                    failed = Some(e.to_string());
                    break;
                }
            };
            if let Err(e) = software::verify_checksums(&bytes, &a.checksums) {
                rejected = Some(format!("artifact {}: {e}", a.filename));
                break;
            }
            match software::container_from_artifact(&bytes) {
                Ok(c) => {
                    let refused = crate::model::policy::violations(&c, &shared.settings.remote);
                    if !refused.is_empty() {
                        rejected = Some(format!("artifact {}: {}", a.filename, refused.join("; ")));
                        break;
                    }
                    containers.push(c)
                }
                Err(e) => {
                    rejected = Some(format!("artifact {}: {e}", a.filename));
                    break;
                }
            }
        }
        if rejected.is_none() && failed.is_none() {
            for c in &containers {
                if let Err(e) = shared.manager.ensure_image(&c.image.name, None).await {
                    failed = Some(e.to_string());
                    break;
                }
            }
        }
        if let Some(m) = rejected {
            report(su::FINISHED_REJECTED, m).await;
            continue;
        }
        if let Some(m) = failed {
            report(su::FINISHED_ERROR, m).await;
            continue;
        }
        report(su::DOWNLOADED, String::new()).await;
        report(su::INSTALLING, String::new()).await;
        let mut created: Vec<String> = Vec::new();
        let mut outcome: Result<(), (&'static str, String)> = Ok(());
        for c in containers {
            match shared.manager.create(c, None).await {
                Ok(c) => created.push(c.container_id),
                Err(e @ ManagerError::Invalid(_)) => {
                    outcome = Err((su::FINISHED_REJECTED, e.to_string()));
                    break;
                }
                Err(e) => {
                    outcome = Err((su::FINISHED_ERROR, e.to_string()));
                    break;
                }
            }
        }
        if outcome.is_ok() {
            report(su::INSTALLED, String::new()).await;
            for cid in &created {
                if let Err(e) = shared.manager.start(cid).await {
                    outcome = Err((su::FINISHED_ERROR, e.to_string()));
                    break;
                }
            }
        }
        match outcome {
            Ok(()) => report(su::FINISHED_SUCCESS, String::new()).await,
            Err((status, message)) => {
                for cid in &created {
                    if let Err(e) = shared.manager.remove(cid, true).await {
                        log::warn!("install {id}: removing container {cid} again: {e}");
                    }
                }
                report(status, message).await;
            }
        }
    }
}

/// Removes the named containers (a dependency's name is the container ID). Without
/// `forced`, the ones after a failure are rejected, untried (as Kanto).
async fn remove<R: Runtime>(shared: &Arc<Shared<R>>, r: Remove) {
    let _one_at_a_time = shared.su_jobs.lock().await;
    let (mut ok, mut errors, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    let mut messages = Vec::new();
    let status =
        |status: &str, software: Vec<software::Dependency>, message: String| OperationStatus {
            correlation_id: r.correlation_id.clone(),
            status: status.to_string(),
            software_module: None,
            software,
            message,
        };
    for d in &r.software {
        if !r.forced && !errors.is_empty() {
            rejected.push(d.clone());
            continue;
        }
        shared
            .report(status(su::REMOVING, vec![d.clone()], String::new()))
            .await;
        match shared.manager.remove(&d.name, true).await {
            Ok(()) => {
                shared
                    .report(status(su::REMOVED, vec![d.clone()], String::new()))
                    .await;
                ok.push(d.clone());
            }
            Err(e) => {
                messages.push(e.to_string());
                errors.push(d.clone());
            }
        }
    }
    if !rejected.is_empty() {
        let m = "not tried after an earlier failure (not forced)".to_string();
        shared
            .report(status(su::FINISHED_REJECTED, rejected, m))
            .await;
    }
    if !errors.is_empty() {
        shared
            .report(status(su::FINISHED_ERROR, errors, messages.join("; ")))
            .await;
    }
    if !ok.is_empty() {
        shared
            .report(status(su::FINISHED_SUCCESS, ok, String::new()))
            .await;
    }
}
