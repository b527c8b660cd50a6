//! The daemon: start-up in a fixed order, then the supervised tasks.
//!
//! Start-up (synchronous, on the main thread, before any other thread exists):
//! arguments → configuration (main file, drop-ins, flags) → logging → state and runtime dirs
//! → single-instance lock → log file → capabilities dropped → tokio current_thread runtime.
//! Nothing is written before the configuration has been accepted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use crate::agent::{self, Agent, Settings as AgentSettings};
use crate::config::{self, Config, ConfigError, Source};
use crate::containerd::{self, Ctrd, Endpoint, MonitorEvent};
use crate::liveness::{self, Heartbeat, Liveness};
use crate::logging::{self, LoggingError, RotatingFile};
use crate::manager::{Manager, Settings as ManagerSettings};
use crate::mqtt::Mqtt;
use crate::paths::Paths;
use crate::privileges::{self, PrivilegeError};
use crate::store::{self, StoreError};
use crate::supervisor::{
    Pulse, Shutdown, ShutdownTrigger, Supervisor, SupervisorError, TaskResult,
};
use crate::systemd;
use crate::things::{self, Things};
use crate::{deploy, watch};

/// How long the tasks get to finish the step in hand after SIGTERM. The unit's
/// `TimeoutStopSec=` is larger.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub use crate::exit;
pub use crate::loader::ConfigLoader;
use crate::loader::FLAGS_SOURCE;

/// The daemon's command line: Kanto's `container-management` flags that matter on a device
/// (parsed in `main` with pflag's rules, as Kanto's daemon parses them).
#[derive(Debug, Clone, Default)]
pub struct DaemonArgs {
    /// `--cfg-file`: configuration file (Kanto's config.json schema).
    pub cfg_file: Option<PathBuf>,
    /// `--log-level`: ERROR, WARN, INFO, DEBUG, TRACE.
    pub log_level: Option<String>,
    /// `--log-file`: log file (rotated by size); empty for stderr only.
    pub log_file: Option<String>,
    /// `--cm-home-dir`: state directory (manager.home_dir).
    pub cm_home_dir: Option<PathBuf>,
    /// `--cm-exec-root-dir`: runtime directory (manager.exec_root_dir).
    pub cm_exec_root_dir: Option<PathBuf>,
    /// `--ccl-ap`: containerd socket (containers.address_path).
    pub ccl_ap: Option<PathBuf>,
    /// `--ccl-default-ns`: containerd namespace (containers.default_ns).
    pub ccl_default_ns: Option<String>,
    /// `--grpc-serv-ap`: gRPC socket (grpc_server.address_path).
    pub grpc_serv_ap: Option<PathBuf>,
    /// `--net-tbr-disable`: disable the default bridge network (network.default_bridge.disable).
    pub net_tbr_disable: Option<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Load(#[from] crate::loader::LoadError),
    #[error(transparent)]
    Dirs(StoreError),
    #[error(transparent)]
    Lock(StoreError),
    #[error(transparent)]
    Logging(#[from] LoggingError),
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(transparent)]
    Registry(crate::registry::RegistryError),
    #[error(transparent)]
    Api(crate::api::server::ServerError),
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error("cannot keep the mqtt client id in {path}: {source}")]
    ClientId { path: PathBuf, source: StoreError },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    #[error(transparent)]
    Network(crate::network::NetworkError),
    #[error("cannot keep the bridge's subnet in {path}: {source}")]
    BridgeState { path: PathBuf, source: StoreError },
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
    #[error(transparent)]
    LogCapture(crate::logs::capture::CaptureError),
}

impl DaemonError {
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(_)
            | DaemonError::Load(_)
            | DaemonError::Mqtt(_)
            | DaemonError::Network(_)
            | DaemonError::Trust(_) => exit::CONFIG,
            DaemonError::Dirs(_) => exit::CANT_CREATE,
            DaemonError::Lock(StoreError::AlreadyRunning { .. }) => exit::TEMP_FAIL,
            _ => exit::FAILURE,
        }
    }
}

/// The flags as a configuration fragment, so they are checked and merged like a file.
fn flags_source(args: &DaemonArgs) -> Option<Source> {
    let mut v = json!({});
    let mut set = |path: &[&str], value: serde_json::Value| {
        let mut fragment = value;
        for key in path.iter().rev() {
            fragment = json!({ *key: fragment });
        }
        config::merge(&mut v, fragment);
    };
    if let Some(l) = &args.log_level {
        set(&["log", "log_level"], json!(l));
    }
    if let Some(f) = &args.log_file {
        set(&["log", "log_file"], json!(f));
    }
    if let Some(d) = &args.cm_home_dir {
        set(&["manager", "home_dir"], json!(d));
    }
    if let Some(d) = &args.cm_exec_root_dir {
        set(&["manager", "exec_root_dir"], json!(d));
    }
    if let Some(p) = &args.ccl_ap {
        set(&["containers", "address_path"], json!(p));
    }
    if let Some(ns) = &args.ccl_default_ns {
        set(&["containers", "default_ns"], json!(ns));
    }
    if let Some(p) = &args.grpc_serv_ap {
        set(&["grpc_server", "address_path"], json!(p));
    }
    if let Some(b) = args.net_tbr_disable {
        set(&["network", "default_bridge", "disable"], json!(b));
    }
    (v != json!({})).then(|| Source::main(FLAGS_SOURCE, v.to_string()))
}

/// Runs the daemon; returns the process exit code.
pub fn run(args: DaemonArgs) -> i32 {
    one_malloc_arena();
    let level_from_env = logging::init(config::LogLevel::Info);
    match start(args, level_from_env) {
        Ok(()) => {
            log::info!("stopped");
            exit::OK
        }
        Err(e) => {
            log::error!("exiting: {e}");
            e.exit_code()
        }
    }
}

fn start(args: DaemonArgs, level_from_env: bool) -> Result<(), DaemonError> {
    let loader = ConfigLoader::new(args.cfg_file.as_deref(), flags_source(&args));
    systemd::status("loading configuration");
    let (loaded, paths) = loader.load()?;
    for w in &loaded.warnings {
        log::warn!("{w}");
    }
    let config = loaded.config;
    logging::configure(config.log.log_level, level_from_env, None);
    for note in &paths.notes {
        log::info!("{note}");
    }

    let bridge = resolve_bridge(&config, &paths.state_dir)?;
    // Every configuration value is checked before anything is written.
    if config.update_agent.enable || config.things.enable {
        Mqtt::check(&config.connection)?;
    }
    // The trust policy, stores and keys are read once, here: one that cannot be used
    // refuses the configuration.
    let verifier = std::sync::Arc::new(crate::trust::Verifier::from_config(&config.containers)?);

    systemd::status("preparing state and runtime dirs");
    store::prepare_dir(&paths.state_dir, 0o700, "state dir").map_err(DaemonError::Dirs)?;
    if let Some(b) = &bridge {
        keep_bridge(&paths.state_dir, b)?;
    }
    store::prepare_dir(&paths.runtime_dir, 0o755, "runtime dir").map_err(DaemonError::Dirs)?;
    let lock = store::acquire_lock(&paths.lock_file).map_err(DaemonError::Lock)?;
    // Under the lock no other daemon writes here: temp files of killed writers go.
    for path in store::remove_stale_temp_files(&paths.state_dir, 3) {
        log::info!("removed {}, left by an interrupted write", path.display());
    }
    if let Some(path) = &paths.log_file {
        let file = RotatingFile::open(
            path,
            config.log.log_file_size.saturating_mul(1024 * 1024),
            config.log.log_file_count,
        )?;
        logging::configure(config.log.log_level, level_from_env, Some(file));
    }

    let kept = privileges::required(!config.network.default_bridge.disable);
    privileges::drop_to(&kept)?;
    log::info!(
        "leda-cm {} starting: state dir {}, runtime dir {}, capabilities kept: {}",
        env!("CARGO_PKG_VERSION"),
        paths.state_dir.display(),
        paths.runtime_dir.display(),
        privileges::names(&kept)
    );

    // One thread runs every loop; durable writes (fsync) go to a small blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(DaemonError::Runtime)?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(
        &runtime,
        serve(config, paths, loader, level_from_env, bridge, verifier),
    );
    drop(lock);
    result
}

/// Where the bridge's subnet is kept between starts (when leda-cm chose it).
const BRIDGE_STATE: &str = "network/bridge.json";

#[derive(serde::Serialize, serde::Deserialize)]
struct KeptBridge {
    version: u32,
    name: String,
    subnet: crate::network::Ipv4Net,
}

/// The bridge from the configuration, the host's routes and the subnet kept from the last
/// start; `None` when bridge networking is disabled. A bad or overlapping subnet is a
/// configuration error.
fn resolve_bridge(
    config: &Config,
    state_dir: &Path,
) -> Result<Option<crate::network::Bridge>, DaemonError> {
    let cfg = &config.network.default_bridge;
    for w in crate::network::unsupported_settings(cfg) {
        log::warn!("{w}");
    }
    if cfg.disable {
        return Ok(None);
    }
    let kept = store::read_json::<KeptBridge>(&state_dir.join(BRIDGE_STATE))
        .ok()
        .flatten()
        .filter(|k| k.name == cfg.name)
        .map(|k| k.subnet);
    let bridge = crate::network::resolve_bridge(cfg, &crate::host::routes(), kept)
        .map_err(DaemonError::Network)?;
    log::info!(
        "bridge {}: subnet {}, gateway {}",
        bridge.name,
        bridge.subnet,
        bridge.gateway
    );
    Ok(Some(bridge))
}

fn keep_bridge(state_dir: &Path, b: &crate::network::Bridge) -> Result<(), DaemonError> {
    let path = state_dir.join(BRIDGE_STATE);
    let dir = state_dir.join("network");
    store::prepare_dir(&dir, 0o700, "network state dir").map_err(DaemonError::Dirs)?;
    let kept = KeptBridge {
        version: 1,
        name: b.name.clone(),
        subnet: b.subnet,
    };
    store::write_json_atomic(&path, &kept, 0o600)
        .map_err(|source| DaemonError::BridgeState { path, source })
}

async fn serve(
    config: Config,
    paths: Paths,
    loader: ConfigLoader,
    level_from_env: bool,
    bridge: Option<crate::network::Bridge>,
    verifier: std::sync::Arc<crate::trust::Verifier>,
) -> Result<(), DaemonError> {
    let mut sup = Supervisor::new();
    let liveness = Liveness::new();
    let watchdog = systemd::watchdog_usec().map(liveness::watchdog_timing);
    let tick = liveness::tick_period(watchdog.map(|(_, max_age)| max_age));

    let endpoint = Endpoint {
        socket: config.containers.address_path.clone(),
        namespace: config.containers.default_ns.clone(),
    };
    let mut client = containerd::Client::lazy(&endpoint.socket, &endpoint.namespace);
    client.runc_root = Some(config.containers.runc_root.clone()).filter(|r| !r.is_empty());
    let ctrd = Ctrd::new(client, &config.containers).map_err(DaemonError::Registry)?;
    let net = bridge.map(|b| {
        let dirs: Vec<PathBuf> = config
            .network
            .cni_plugin_dir
            .split(':')
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .collect();
        let cni = crate::network::cni::Cni::new(b, dirs, &paths.state_dir);
        if let Err(e) = cni.check_plugins() {
            log::error!("bridged containers cannot start: {e}");
        }
        Arc::new(cni) as Arc<dyn crate::network::Network>
    });
    let mut settings = manager_settings(&config, &paths, verifier);
    if config.containers.log_capture == config::LogCapture::Daemon {
        let capture = crate::logs::capture::Capture::new(&paths.runtime_dir.join("logs"))
            .map_err(DaemonError::LogCapture)?;
        settings.log_capture = Some(capture);
    }
    let capture = settings.log_capture.clone();
    let manager = Manager::with_network(ctrd, settings, net);
    let (ctr_tx, ctr_rx) = mpsc::channel(16);
    let (restored_tx, restored_rx) = mpsc::channel(1);
    let (reload_tx, reload_rx) = mpsc::channel(1);

    sup.spawn(
        "signals",
        signals(
            sup.trigger(),
            reload_tx.clone(),
            sup.shutdown(),
            Pulse::new(&liveness, "signals", tick),
        ),
    );
    let (deploy_tx, deploy_rx) = mpsc::channel(4);
    let deploy_tx = config.deployment.enable.then_some(deploy_tx);
    if let Some(tx) = &deploy_tx {
        let settings = deploy::Settings {
            mode: config.deployment.mode,
            dir: config.deployment.ctr_dir.clone(),
            state_dir: paths.state_dir.clone(),
        };
        sup.spawn(
            "deployment",
            deploy::run(
                settings,
                manager.clone(),
                deploy_rx,
                sup.shutdown(),
                Pulse::new(&liveness, "deployment", tick),
            ),
        );
        let dropins = paths.state_dir.join(config::DROPIN_DIR);
        sup.spawn(
            "watch",
            watch_dirs(
                dropins,
                Some(config.deployment.ctr_dir.clone()),
                reload_tx,
                Some(tx.clone()),
                sup.shutdown(),
                Pulse::new(&liveness, "watch", tick),
            ),
        );
    } else {
        let dropins = paths.state_dir.join(config::DROPIN_DIR);
        sup.spawn(
            "watch",
            watch_dirs(
                dropins,
                None,
                reload_tx,
                None,
                sup.shutdown(),
                Pulse::new(&liveness, "watch", tick),
            ),
        );
    }
    sup.spawn(
        "containerd-monitor",
        containerd::monitor(
            endpoint.clone(),
            ctr_tx,
            sup.shutdown(),
            Pulse::new(&liveness, "containerd-monitor", tick),
        ),
    );
    let listener = crate::api::server::bind(
        &config.grpc_server.protocol,
        &config.grpc_server.address_path,
    )
    .map_err(DaemonError::Api)?;
    sup.spawn(
        "grpc",
        crate::api::server::serve(
            listener,
            manager.clone(),
            sup.shutdown(),
            Pulse::new(&liveness, "grpc", tick),
        ),
    );
    sup.spawn(
        "image-gc",
        image_gc(
            manager.clone(),
            sup.shutdown(),
            Pulse::new(&liveness, "image-gc", tick),
        ),
    );
    sup.spawn(
        "drift-check",
        drift_check(
            manager.clone(),
            sup.shutdown(),
            Pulse::new(&liveness, "drift-check", tick),
        ),
    );
    if config.update_agent.enable || config.things.enable {
        // One connection serves both; consumers register before its first ConnAck.
        let client_id = mqtt_client_id(&paths.state_dir)?;
        let (mqtt, events) = Mqtt::new(&config.connection, &client_id)?;
        if config.update_agent.enable {
            let agent = Agent::new(
                agent_settings(&config, &paths),
                manager.clone(),
                mqtt.clone(),
            );
            sup.spawn(
                "update-agent",
                agent.run(sup.shutdown(), Pulse::new(&liveness, "update-agent", tick)),
            );
        }
        if config.things.enable {
            let (features, unknown) = things::Features::from_names(&config.things.features);
            for name in unknown {
                log::warn!(
                    "things.features: unknown feature {name:?} ignored (known: ContainerFactory, SoftwareUpdatable, Metrics)"
                );
            }
            let settings = things::Settings {
                features,
                state_dir: paths.state_dir.clone(),
                remote: config.remote_requests.clone(),
            };
            let twin = Things::new(settings, manager.clone(), mqtt.clone());
            sup.spawn(
                "things",
                twin.run(sup.shutdown(), Pulse::new(&liveness, "things", tick)),
            );
        }
        sup.spawn(
            "mqtt",
            mqtt.event_loop(
                events,
                config.connection.broker_url.clone(),
                sup.shutdown(),
                Pulse::new(&liveness, "mqtt", tick),
            ),
        );
    }
    let main = MainLoop {
        manager,
        restored_tx,
        restored: restored_rx,
        endpoint,
        paths,
        loader,
        level_from_env,
        containerd_events: ctr_rx,
        reloads: reload_rx,
        deployment: deploy_tx,
        heartbeat: liveness.register("main"),
        tick,
        shutdown: sup.shutdown(),
        ready: false,
        containerd_version: String::new(),
    };
    sup.spawn("main", main.run());
    if let Some((period, max_age)) = watchdog {
        log::info!("systemd watchdog armed: ping every {period:?} while the loops are alive");
        sup.spawn(
            "watchdog",
            systemd::watchdog_task(liveness, period, max_age, sup.shutdown()),
        );
    }
    systemd::status(&format!(
        "waiting for containerd at {}",
        config.containers.address_path.display()
    ));
    let result = sup.run(SHUTDOWN_GRACE).await;
    if let Some(capture) = capture {
        // What the containers wrote and no thread read yet stays in the fifos for the next
        // daemon; each thread finishes the write in hand.
        capture.halt(CAPTURE_HALT);
    }
    result?;
    Ok(())
}

/// How long the log capture threads get to finish the entry in hand at shutdown.
const CAPTURE_HALT: std::time::Duration = std::time::Duration::from_millis(500);

/// glibc gives each thread that allocates an arena of its own; the daemon's few threads
/// (the runtime's and the blocking pool's) gain nothing from that and each arena keeps
/// hundreds of KB touched: one arena for all (measured with 20 containers: PSS 7.19 ->
/// 6.62 MiB). Called before any thread exists; `MALLOC_ARENA_MAX` in the environment wins.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; no other thread runs yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// The program containerd's shims start as each container's log driver: `leda-cm-logd`
/// beside this binary (one small process per container), else this multi-call binary itself,
/// which works the same but maps and dirties several times the memory per container.
fn log_driver_binary() -> PathBuf {
    let own = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/usr/bin/leda-cm"));
    let lean = own.with_file_name(LOG_DRIVER_NAME);
    if lean.is_file() {
        return lean;
    }
    log::warn!(
        "{} is missing: containers' log drivers run as {} (more memory per container)",
        lean.display(),
        own.display()
    );
    own
}

/// File name of the dedicated log driver binary (`src/bin/leda-cm-logd.rs`).
const LOG_DRIVER_NAME: &str = "leda-cm-logd";
fn manager_settings(
    config: &Config,
    paths: &Paths,
    trust: std::sync::Arc<crate::trust::Verifier>,
) -> ManagerSettings {
    let system_containers = config.update_agent.system_containers.clone();
    ManagerSettings {
        namespace: config.containers.default_ns.clone(),
        state_dir: paths.state_dir.clone(),
        default_stop_timeout: config.manager.default_ctrs_stop_timeout.0,
        log_driver_binary: log_driver_binary(),
        log_capture: None,
        system_containers,
        image_expiry: (!config.containers.image_expiry_disable)
            .then_some(config.containers.image_expiry.0),
        trust,
    }
}

fn agent_settings(config: &Config, paths: &Paths) -> AgentSettings {
    let ua = &config.update_agent;
    AgentSettings {
        domain: ua.domain.clone(),
        system_containers: ua.system_containers.clone(),
        verbose_inventory: ua.verbose_inventory_report,
        mode: match ua.mode {
            config::UpdateAgentMode::Standalone => agent::Mode::Standalone,
            config::UpdateAgentMode::Orchestrated => agent::Mode::Orchestrated,
        },
        state_dir: paths.state_dir.clone(),
        remote: config.remote_requests.clone(),
    }
}

/// The MQTT client ID, made once and kept in the state dir: the broker keeps the persistent
/// session (and what arrived while leda-cm was away) under it.
fn mqtt_client_id(state_dir: &Path) -> Result<String, DaemonError> {
    let path = state_dir.join("mqtt-client-id");
    let err = |source| DaemonError::ClientId {
        path: path.clone(),
        source,
    };
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty() && id.len() <= 64 {
            return Ok(id.to_string());
        }
    }
    let id = format!("leda-cm-{}", uuid::Uuid::new_v4().simple());
    store::write_atomic(&path, id.as_bytes(), 0o600).map_err(err)?;
    Ok(id)
}

/// Watches the configuration drop-ins (→ reload) and the manifests dir (→ a deployment
/// pass). Without inotify, SIGHUP still does both.
async fn watch_dirs(
    dropins: PathBuf,
    manifests: Option<PathBuf>,
    reload: mpsc::Sender<()>,
    deploy: Option<mpsc::Sender<()>>,
    mut shutdown: Shutdown,
    mut pulse: Pulse,
) -> TaskResult {
    let mut w = match watch::DirWatch::new() {
        Ok(w) => w,
        Err(e) => {
            log::warn!("{e}; changes apply on SIGHUP");
            shutdown.wait().await;
            return Ok(());
        }
    };
    if let Err(e) = store::prepare_dir(&dropins, 0o700, "config drop-in dir")
        .map_err(|e| e.to_string())
        .and_then(|()| {
            w.add(&dropins, watch::Watched::ConfigDropIns)
                .map_err(|e| e.to_string())
        })
    {
        log::warn!("{e}; drop-in changes apply on SIGHUP");
    }
    if let Some(dir) = &manifests {
        match w.add(dir, watch::Watched::Manifests) {
            Ok(()) => log::info!("watching {} for manifest changes", dir.display()),
            Err(e) => log::info!("{e}; manifest changes apply on SIGHUP"),
        }
    }
    loop {
        pulse.beat();
        let changed = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            p = pulse.wait() => {
                pulse.handle(p).await;
                continue;
            }
            c = w.changed() => c?,
        };
        for which in changed {
            match which {
                watch::Watched::ConfigDropIns => {
                    log::info!("configuration drop-ins changed");
                    let _ = reload.try_send(());
                }
                watch::Watched::Manifests => {
                    if let Some(tx) = &deploy {
                        let _ = tx.try_send(());
                    }
                }
            }
        }
    }
}

/// How often unused images are looked for.
const IMAGE_GC_PERIOD: Duration = Duration::from_secs(3600);

/// A periodic job's loop: every `period` (the first after one period), when `ready()` says
/// so and the previous pass has ended, `pass()` runs beside the loop, so the loop keeps
/// beating while a pass waits (for containers' locks, for containerd).
async fn periodic<F, Fut>(
    period: Duration,
    ready: impl Fn() -> bool,
    pass: F,
    mut shutdown: Shutdown,
    mut pulse: Pulse,
) -> TaskResult
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let now = tokio::time::Instant::now();
    let mut timer = tokio::time::interval_at(now.checked_add(period).unwrap_or(now), period);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        pulse.beat();
        tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            p = pulse.wait() => {
                pulse.handle(p).await;
                continue;
            }
            _ = timer.tick() => {}
        }
        if !ready() || running.as_ref().is_some_and(|t| !t.is_finished()) {
            continue;
        }
        running = Some(tokio::spawn(pass()));
    }
}

/// Removes images unused for `containers.image_expiry`, every hour.
async fn image_gc(manager: Arc<Manager<Ctrd>>, shutdown: Shutdown, pulse: Pulse) -> TaskResult {
    let pass = move || {
        let manager = manager.clone();
        async move {
            match manager.collect_images(std::time::SystemTime::now()).await {
                Ok(removed) if !removed.is_empty() => {
                    log::info!("removed unused images: {}", removed.join(", "))
                }
                Ok(_) => {}
                Err(e) => log::warn!("image clean-up failed: {e}"),
            }
        }
    };
    periodic(IMAGE_GC_PERIOD, || true, pass, shutdown, pulse).await
}

/// How often the records are compared with what containerd runs (drift behind leda-cm's
/// back, e.g. `ctr` deleting a container).
const DRIFT_PERIOD: Duration = Duration::from_secs(30);

/// The drift check, once live restore has run (it does the same at start-up).
async fn drift_check(manager: Arc<Manager<Ctrd>>, shutdown: Shutdown, pulse: Pulse) -> TaskResult {
    let restored = manager.clone();
    let pass = move || {
        let manager = manager.clone();
        async move {
            match manager.check_drift().await {
                Ok(0) => {}
                Ok(n) => log::warn!(
                    "drift check: {n} container(s) brought back in line with their records"
                ),
                // containerd away: the monitor reconciles when it is back.
                Err(e) => log::debug!("drift check skipped: {e}"),
            }
        }
    };
    periodic(
        DRIFT_PERIOD,
        move || restored.is_restored(),
        pass,
        shutdown,
        pulse,
    )
    .await
}

/// SIGTERM and SIGINT start the shutdown; SIGHUP reloads the configuration drop-ins.
async fn signals(
    trigger: ShutdownTrigger,
    reload: mpsc::Sender<()>,
    mut shutdown: Shutdown,
    mut pulse: Pulse,
) -> TaskResult {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        pulse.beat();
        let name = tokio::select! {
            _ = shutdown.wait() => return Ok(()),
            p = pulse.wait() => {
                pulse.handle(p).await;
                continue;
            }
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
            _ = hup.recv() => {
                let _ = reload.try_send(());
                continue;
            }
        };
        log::info!("received {name}; stopping within {SHUTDOWN_GRACE:?}");
        systemd::stopping("stopping");
        trigger.trigger();
        return Ok(());
    }
}

/// The daemon's main loop: it reacts to containerd coming and going and to reloads, and its
/// heartbeat is what the watchdog checks.
struct MainLoop {
    manager: Arc<Manager<Ctrd>>,
    /// The live-restore pass reports here when it is done (READY follows it).
    restored_tx: mpsc::Sender<()>,
    restored: mpsc::Receiver<()>,
    endpoint: Endpoint,
    paths: Paths,
    loader: ConfigLoader,
    level_from_env: bool,
    containerd_events: mpsc::Receiver<MonitorEvent>,
    reloads: mpsc::Receiver<()>,
    /// Asks the deployment task for a pass (SIGHUP re-reads the manifests too).
    deployment: Option<mpsc::Sender<()>>,
    heartbeat: Heartbeat,
    tick: Duration,
    shutdown: Shutdown,
    ready: bool,
    containerd_version: String,
}

impl MainLoop {
    async fn run(mut self) -> TaskResult {
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.shutdown.clone();
        let mut hang = crate::fault::loop_hang("main");
        loop {
            self.heartbeat.beat();
            tokio::select! {
                _ = shutdown.wait() => break,
                event = self.containerd_events.recv() => match event {
                    Some(event) => self.on_containerd(event),
                    // The monitor ends only at shutdown; anything else is a bug to surface.
                    None if shutdown.is_set() => break,
                    None => return Err("containerd monitor channel closed".into()),
                },
                Some(()) = self.reloads.recv() => self.reload(),
                Some(()) = self.restored.recv() => self.on_restored(),
                _ = tick.tick() => {}
                _ = hang.recv() => {
                    log::warn!("fault injection: the main loop hangs now");
                    std::future::pending::<()>().await;
                }
            }
        }
        Ok(())
    }

    fn on_containerd(&mut self, event: MonitorEvent) {
        let socket = containerd::describe(&self.endpoint.socket);
        match event {
            MonitorEvent::Waiting { reason } => {
                log::warn!("waiting for containerd: {reason}");
                systemd::status(&format!("waiting for containerd at {socket}"));
            }
            MonitorEvent::Up { version } => {
                log::info!(
                    "containerd {version} at {socket}, namespace {}",
                    self.endpoint.namespace
                );
                self.containerd_version = version;
                // Restore in the background: the loop keeps beating meanwhile.
                let manager = self.manager.clone();
                let done = self.restored_tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = manager.reconcile().await {
                        log::warn!("restoring containers failed: {e}");
                    }
                    let _ = done.send(()).await;
                });
            }
            MonitorEvent::Runtime(event) => {
                let manager = self.manager.clone();
                tokio::spawn(async move { manager.on_event(event).await });
            }
            MonitorEvent::Down { reason } => {
                log::warn!("containerd at {socket} went away ({reason}); reconnecting");
                systemd::status(&format!(
                    "containerd at {socket} went away; waiting for it to return"
                ));
            }
        }
    }

    fn on_restored(&mut self) {
        let socket = containerd::describe(&self.endpoint.socket);
        let status = format!(
            "running: containerd {} at {socket}, namespace {}, {} containers",
            self.containerd_version,
            self.endpoint.namespace,
            self.manager.list().len()
        );
        if self.ready {
            log::info!("containerd is back; containers restored");
            systemd::status(&status);
        } else {
            log::info!(
                "ready: containerd {} at {socket}, namespace {}",
                self.containerd_version,
                self.endpoint.namespace
            );
            systemd::ready(&status);
            self.ready = true;
        }
    }

    fn reload(&mut self) {
        systemd::reloading("reloading configuration drop-ins");
        match self.loader.load() {
            Ok((loaded, paths)) => {
                for w in &loaded.warnings {
                    log::warn!("{w}");
                }
                if paths.state_dir != self.paths.state_dir {
                    log::warn!("the state dir cannot change at run time; restart to apply");
                }
                if !self.level_from_env {
                    logging::set_level(loaded.config.log.log_level);
                }
                if let Err(e) = self
                    .manager
                    .runtime()
                    .set_registries(&loaded.config.containers)
                {
                    log::error!("registry settings not applied: {e}");
                }
                log::info!("configuration reloaded");
                if let Some(tx) = &self.deployment {
                    let _ = tx.try_send(());
                }
            }
            Err(e) => log::error!("configuration not reloaded, keeping the previous one: {e}"),
        }
        // systemd expects READY=1 to end a RELOADING=1.
        if self.ready {
            systemd::ready("running");
        } else {
            systemd::status(&format!(
                "waiting for containerd at {}",
                containerd::describe(&self.endpoint.socket)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_a_config_fragment() {
        assert!(flags_source(&DaemonArgs::default()).is_none());
        let args = DaemonArgs {
            log_level: Some("DEBUG".into()),
            cm_home_dir: Some("/data/cm".into()),
            net_tbr_disable: Some(true),
            ..Default::default()
        };
        let src = flags_source(&args).unwrap();
        let c = config::parse(&[src]).unwrap().config;
        assert_eq!(c.log.log_level, config::LogLevel::Debug);
        assert_eq!(c.manager.home_dir, PathBuf::from("/data/cm"));
        assert!(c.network.default_bridge.disable);
    }

    #[test]
    fn bad_flag_values_are_config_errors() {
        let args = DaemonArgs {
            log_level: Some("LOUD".into()),
            ..Default::default()
        };
        let err = config::parse(&[flags_source(&args).unwrap()]).unwrap_err();
        assert!(err.to_string().contains("log.log_level"), "{err}");
        assert_eq!(DaemonError::from(err).exit_code(), exit::CONFIG);
    }
}
