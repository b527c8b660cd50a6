//! The `kanto-cm` command line (also `leda-cm ctl`): Kanto's commands, flags, defaults and
//! output, over the local gRPC API. Flags are checked before any call; every failure exits
//! non-zero with the daemon's message. `anyhow` is used here (and in `main`) only.

pub mod registry;
pub mod table;

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::api::client::{connect, ApiClient};
use crate::api::convert;
use crate::api::pb::services::containers as svc;
use crate::api::pb::types::containers as pb;
use crate::model::{self, parse, Container};

pub const DEFAULT_HOST: &str = "/run/container-management/container-management.sock";
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (leda-cm, Kanto container-management compatible)"
);

#[derive(Debug, Parser)]
#[command(name = "kanto-cm", version = VERSION, about = "Manage containers through leda-cm (Kanto-compatible CLI)")]
pub struct KantoCm {
    #[command(flatten)]
    pub global: Globals,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Kanto's global flags.
#[derive(Debug, Clone, Args)]
pub struct Globals {
    /// The daemon's gRPC address: a socket path, unix://PATH or tcp://HOST:PORT
    #[arg(long, global = true, value_name = "ADDRESS", default_value = DEFAULT_HOST)]
    pub host: String,
    /// Seconds to wait for the daemon
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// Print debug output
    #[arg(long, global = true)]
    pub debug: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container
    Create(Box<CreateArgs>),
    /// Start a container
    Start(StartArgs),
    /// Stop a container
    Stop(StopArgs),
    /// Restart a container
    Restart(RestartArgs),
    /// List all containers
    List(ListArgs),
    /// Get detailed information about a given container
    Get(Selector),
    /// Print the logs for a container
    Logs(LogsArgs),
    /// Update a container's restart policy or memory limits
    Update(UpdateArgs),
    /// Rename a container
    Rename(RenameArgs),
    /// Remove one or more containers
    Remove(RemoveArgs),
    /// Show information about the daemon and the CLI
    Sysinfo,
    /// Print shell completions
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// A container by ID (argument) or by name (`-n`).
#[derive(Debug, Clone, Args)]
pub struct Selector {
    /// The container's ID
    pub id: Option<String>,
    /// The container's name instead of its ID
    #[arg(short = 'n', long = "name", value_name = "NAME")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RestartPolicyArg {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum NetworkArg {
    Bridge,
    Host,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogDriverArg {
    #[value(name = "json-file")]
    JsonFile,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogModeArg {
    Blocking,
    NonBlocking,
}

fn size(text: &str) -> Result<String, String> {
    model::size::parse_size(text)
        .map(|_| text.to_string())
        .ok_or_else(|| format!("invalid size {text:?}, expected e.g. 200m or 1.2g"))
}

fn memory(text: &str) -> Result<String, String> {
    if text == "-1" {
        return Ok(text.into());
    }
    let bytes = model::size::parse_size(text)
        .ok_or_else(|| format!("invalid size {text:?}, expected e.g. 200m or 1.2g"))?;
    if bytes < 3 * model::size::MIB {
        return Err("the minimum allowed value is 3m".into());
    }
    Ok(text.into())
}

fn port(text: &str) -> Result<model::PortMapping, String> {
    parse::port_mapping(text).map_err(|e| e.to_string())
}

fn device(text: &str) -> Result<model::DeviceMapping, String> {
    parse::device_mapping(text).map_err(|e| e.to_string())
}

fn mount(text: &str) -> Result<model::MountPoint, String> {
    parse::mount_point(text).map_err(|e| e.to_string())
}

fn env_var(text: &str) -> Result<String, String> {
    if model::validate::valid_env(text) {
        Ok(text.into())
    } else {
        Err(format!(
            "invalid environmental variable declaration provided : {text}"
        ))
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    crate::duration::parse_go_duration(text)
}

#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The image, then the command and its arguments
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG]...",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub args: Vec<String>,
    /// The container's name
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// Enable a terminal for the container
    #[arg(long = "t")]
    pub terminal: bool,
    /// Keep stdin open (interactive)
    #[arg(long = "i")]
    pub interactive: bool,
    /// Create the container as privileged
    #[arg(long)]
    pub privileged: bool,
    /// Restart policy
    #[arg(long = "rp", value_enum)]
    pub restart_policy: Option<RestartPolicyArg>,
    /// Restart retries for on-failure
    #[arg(long = "rp-cnt", default_value_t = 1)]
    pub restart_count: i64,
    /// Seconds between restart retries for on-failure
    #[arg(long = "rp-to", default_value_t = 30)]
    pub restart_timeout: i64,
    /// Devices: host_path:container_path[:rwm]
    #[arg(long, value_delimiter = ',', value_parser = device)]
    pub devices: Vec<model::DeviceMapping>,
    /// Port mappings: [host_ip:]host_port[-host_port_end]:container_port[/proto]
    #[arg(long, value_delimiter = ',', value_parser = port)]
    pub ports: Vec<model::PortMapping>,
    /// Network mode
    #[arg(long, value_enum, default_value = "bridge")]
    pub network: NetworkArg,
    /// Extra hosts: name:IP, name:host_ip[_<iface>], name:container_<host_name>
    #[arg(long, value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// Mount points: source:destination[:propagation_mode]
    #[arg(long = "mp", value_delimiter = ',', value_parser = mount)]
    pub mount_points: Vec<model::MountPoint>,
    /// Environment variables: NAME=value (repeatable)
    #[arg(long = "e", value_parser = env_var)]
    pub env: Vec<String>,
    /// Log driver
    #[arg(long = "log-driver", value_enum, default_value = "json-file")]
    pub log_driver: LogDriverArg,
    /// Log files kept (json-file)
    #[arg(long = "log-max-files", default_value_t = 2)]
    pub log_max_files: i64,
    /// Log file size before rotation (json-file)
    #[arg(long = "log-max-size", default_value = "100M", value_parser = size)]
    pub log_max_size: String,
    /// Directory for the log files (json-file)
    #[arg(long = "log-path", default_value = "")]
    pub log_path: String,
    /// Log mode
    #[arg(long = "log-mode", value_enum, default_value = "blocking")]
    pub log_mode: LogModeArg,
    /// Log buffer size (non-blocking)
    #[arg(long = "log-max-buffer-size", default_value = "1M", value_parser = size)]
    pub log_max_buffer_size: String,
    /// Memory limit, e.g. 200m, 1.2g (at least 3m)
    #[arg(short = 'm', long, value_parser = memory)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_parser = size)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: unlimited)
    #[arg(long = "memory-swap", value_parser = memory)]
    pub memory_swap: Option<String>,
    /// Image decryption keys
    #[arg(long = "dec-keys", value_delimiter = ',')]
    pub dec_keys: Vec<String>,
    /// Image decryption recipients
    #[arg(long = "dec-recipients", value_delimiter = ',')]
    pub dec_recipients: Vec<String>,
    /// Extra Linux capabilities
    #[arg(long = "cap-add", value_delimiter = ',')]
    pub cap_add: Vec<String>,
    /// Create from a file in the internal JSON format
    #[arg(short = 'f', long = "file")]
    pub file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub sel: Selector,
    /// Attach to the container's output until it stops
    #[arg(long = "a")]
    pub attach: bool,
    /// Interactive (not supported: containers run without stdin)
    #[arg(long = "i")]
    pub interactive: bool,
}

#[derive(Debug, Clone, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub sel: Selector,
    /// Grace period before the process is killed, e.g. 15s, 1m15s (default: the daemon's)
    #[arg(short = 't', long = "time", value_parser = duration)]
    pub time: Option<Duration>,
    /// Kill at once (SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// The stop signal, by name or number
    #[arg(short = 's', long, default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, Clone, Args)]
pub struct RestartArgs {
    #[command(flatten)]
    pub sel: Selector,
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only containers with this name
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// Only the IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Filters: status=<status>, image=<image>, exitcode=<code>
    #[arg(long, value_delimiter = ',')]
    pub filter: Vec<String>,
    /// The containers as JSON (internal format) for scripts
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub sel: Selector,
    /// Lines from the end (-1: all)
    #[arg(
        short = 't',
        long,
        default_value_t = 100,
        allow_negative_numbers = true
    )]
    pub tail: i32,
}

#[derive(Debug, Clone, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub sel: Selector,
    /// New restart policy
    #[arg(long = "rp", value_enum)]
    pub restart_policy: Option<RestartPolicyArg>,
    /// Restart retries for on-failure
    #[arg(long = "rp-cnt")]
    pub restart_count: Option<i64>,
    /// Seconds between restart retries for on-failure
    #[arg(long = "rp-to")]
    pub restart_timeout: Option<i64>,
    /// Memory limit
    #[arg(short = 'm', long, value_parser = memory)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_parser = size)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: unlimited)
    #[arg(long = "memory-swap", value_parser = memory)]
    pub memory_swap: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RenameArgs {
    /// The container's ID (omit with -n), then the new name
    #[arg(num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// The container's current name instead of its ID
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RemoveArgs {
    /// The containers' IDs
    pub ids: Vec<String>,
    /// A container's name instead of IDs
    #[arg(short = 'n', long = "name")]
    pub name: Option<String>,
    /// Stop running containers first
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Grace period for the stop, e.g. 15s
    #[arg(short = 't', long = "time", value_parser = duration)]
    pub time: Option<Duration>,
}

/// Runs a `kanto-cm` invocation; returns the exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    let command = KantoCm::command();
    let parsed = command
        .clone()
        .try_get_matches_from(argv)
        .and_then(|m| KantoCm::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let Some(cmd) = cli.command else {
        let mut help = KantoCm::command();
        let _ = help.print_help();
        return 0;
    };
    if let Command::Completion { shell } = cmd {
        clap_complete::generate(
            shell,
            &mut KantoCm::command(),
            "kanto-cm",
            &mut std::io::stdout(),
        );
        return 0;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(cli.global, cmd)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

/// The daemon's message for a failed call (Kanto's clients print only the message).
fn call<T>(r: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    r.map(tonic::Response::into_inner)
        .map_err(|s| anyhow!("{}", s.message()))
}

async fn run(global: Globals, cmd: Command) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(global.timeout.max(1));
    let mut api = connect(&global.host, timeout).await?;
    match cmd {
        Command::Create(a) => create(&mut api, *a).await,
        Command::Start(a) => {
            if a.interactive {
                bail!("interactive mode is not supported: containers run without stdin");
            }
            let id = resolve(&mut api, &a.sel).await?;
            call(
                api.containers
                    .start(svc::StartContainerRequest { id: id.clone() })
                    .await,
            )?;
            if a.attach {
                attach(&mut api, &id).await?;
            }
            Ok(())
        }
        Command::Stop(a) => {
            let id = resolve(&mut api, &a.sel).await?;
            if crate::manager::parse_signal(&a.signal).is_none() {
                bail!("invalid signal = {}", a.signal);
            }
            let opts = pb::StopOptions {
                timeout: a.time.map_or(0, |d| d.as_secs().max(1) as i64),
                force: a.force,
                signal: a.signal,
            };
            call(
                api.containers
                    .stop(svc::StopContainerRequest {
                        id,
                        stop_options: Some(opts),
                    })
                    .await,
            )?;
            Ok(())
        }
        Command::Restart(a) => {
            let id = resolve(&mut api, &a.sel).await?;
            call(
                api.containers
                    .restart(svc::RestartContainerRequest { id })
                    .await,
            )?;
            Ok(())
        }
        Command::List(a) => list(&mut api, a).await,
        Command::Get(sel) => {
            let id = resolve(&mut api, &sel).await?;
            let c = call(api.containers.get(svc::GetContainerRequest { id }).await)?
                .container
                .ok_or_else(|| anyhow!("the daemon returned no container"))?;
            println!("{}", pretty(&convert::from_pb(&c)?)?);
            Ok(())
        }
        Command::Logs(a) => {
            let id = resolve(&mut api, &a.sel).await?;
            let mut stream = call(
                api.containers
                    .logs(svc::GetLogsRequest { id, tail: a.tail })
                    .await,
            )?;
            let mut out = std::io::stdout().lock();
            while let Some(msg) = stream
                .message()
                .await
                .map_err(|s| anyhow!("{}", s.message()))?
            {
                writeln!(out, "{}", msg.log)?;
            }
            Ok(())
        }
        Command::Update(a) => update(&mut api, a).await,
        Command::Rename(a) => {
            let (sel, new_name) = match (a.name, a.args.as_slice()) {
                (Some(name), [new]) => (
                    Selector {
                        id: None,
                        name: Some(name),
                    },
                    new.clone(),
                ),
                (None, [id, new]) => (
                    Selector {
                        id: Some(id.clone()),
                        name: None,
                    },
                    new.clone(),
                ),
                (Some(_), _) => bail!("with --name (-n), give only the new name"),
                (None, _) => bail!("give the container ID and the new name"),
            };
            let id = resolve(&mut api, &sel).await?;
            call(
                api.containers
                    .rename(svc::RenameContainerRequest { id, name: new_name })
                    .await,
            )?;
            Ok(())
        }
        Command::Remove(a) => {
            let mut ids = a.ids.clone();
            if let Some(name) = &a.name {
                ids.push(
                    resolve(
                        &mut api,
                        &Selector {
                            id: None,
                            name: Some(name.clone()),
                        },
                    )
                    .await?,
                );
            }
            if ids.is_empty() {
                bail!("you must provide at least one container ID or a name via --name (-n)");
            }
            let mut failed = Vec::new();
            for id in ids {
                let stop_options = a.time.map(|d| pb::StopOptions {
                    timeout: d.as_secs().max(1) as i64,
                    force: false,
                    signal: "SIGTERM".into(),
                });
                let r = api
                    .containers
                    .remove(svc::RemoveContainerRequest {
                        id: id.clone(),
                        force: a.force,
                        stop_options,
                    })
                    .await;
                if let Err(s) = r {
                    failed.push(format!("{id}: {}", s.message()));
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                bail!("{}", failed.join("; "))
            }
        }
        Command::Sysinfo => {
            let info = call(api.sysinfo.project_info(()).await)?
                .project_info
                .unwrap_or_default();
            println!(
                "Engine v{}, API v{}, (build {} {}) ",
                info.project_version, info.api_version, info.build_time, info.git_commit
            );
            let cli = crate::api::server::project_info();
            println!(
                "CLI v{}, API v{}, (build {} {}) ",
                cli.project_version, cli.api_version, cli.build_time, cli.git_commit
            );
            Ok(())
        }
        Command::Completion { .. } => Ok(()),
    }
}

/// Kanto's `get` output: the internal JSON, indented by three spaces.
pub fn pretty(c: &Container) -> anyhow::Result<String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(c, &mut ser)?;
    Ok(String::from_utf8(out)?)
}

async fn all(api: &mut ApiClient) -> anyhow::Result<Vec<Container>> {
    call(api.containers.list(svc::ListContainersRequest {}).await)?
        .containers
        .iter()
        .map(|c| convert::from_pb(c).map_err(anyhow::Error::from))
        .collect()
}

/// The ID for an ID argument or a `--name`.
async fn resolve(api: &mut ApiClient, sel: &Selector) -> anyhow::Result<String> {
    match (&sel.id, &sel.name) {
        (Some(_), Some(_)) => bail!("give either the container ID or --name (-n), not both"),
        (Some(id), None) => Ok(id.clone()),
        (None, Some(name)) => all(api)
            .await?
            .into_iter()
            .find(|c| &c.container_name == name)
            .map(|c| c.container_id)
            .ok_or_else(|| anyhow!("container with name = {name} not found")),
        (None, None) => {
            bail!("you must provide either an ID or a name for the container via --name (-n)")
        }
    }
}

async fn create(api: &mut ApiClient, a: CreateArgs) -> anyhow::Result<()> {
    let c = if let Some(file) = &a.file {
        if !a.args.is_empty() {
            bail!("no arguments are expected when creating a container from file");
        }
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        serde_json::from_str::<Container>(&text)
            .with_context(|| format!("{} is not a valid container description", file.display()))?
    } else {
        let Some((image, command)) = a.args.split_first() else {
            bail!("container image argument is expected");
        };
        container_from_flags(&a, image, command)?
    };
    let created = call(
        api.containers
            .create(svc::CreateContainerRequest {
                container: Some(convert::to_pb(&c)),
            })
            .await,
    )?;
    if let Some(c) = created.container {
        println!("{}", c.id);
    }
    Ok(())
}

/// Kanto's `create` flags as a container.
pub fn container_from_flags(
    a: &CreateArgs,
    image: &str,
    command: &[String],
) -> anyhow::Result<Container> {
    if a.privileged && !a.devices.is_empty() {
        bail!("cannot create the container as privileged and with specified devices at the same time - choose one of the options");
    }
    if a.privileged && !a.cap_add.is_empty() {
        bail!("cannot create the container as privileged and with extra capabilities at the same time - choose one of the options");
    }
    let mut c = Container {
        container_name: a.name.clone().unwrap_or_default(),
        ..Default::default()
    };
    c.image.name = image.to_string();
    if !a.dec_keys.is_empty() || !a.dec_recipients.is_empty() {
        c.image.decrypt_config = Some(model::DecryptConfig {
            keys: a.dec_keys.clone(),
            recipients: a.dec_recipients.clone(),
        });
    }
    c.config.env = a.env.clone();
    c.config.cmd = command.to_vec();
    c.mount_points = a.mount_points.clone();
    c.io_config.tty = a.terminal;
    c.io_config.open_stdin = a.interactive;
    let hc = &mut c.host_config;
    hc.privileged = a.privileged;
    hc.devices = a.devices.clone();
    hc.port_mappings = a.ports.clone();
    hc.extra_hosts = a.hosts.clone();
    hc.extra_capabilities = a.cap_add.clone();
    hc.network_mode = match a.network {
        NetworkArg::Bridge => model::NetworkMode::Bridge,
        NetworkArg::Host => model::NetworkMode::Host,
    };
    if let Some(rp) = a.restart_policy {
        hc.restart_policy = restart_policy(rp, a.restart_count, a.restart_timeout);
    }
    hc.log_config.driver_config = match a.log_driver {
        LogDriverArg::JsonFile => model::LogDriverConfig {
            driver_type: "json-file".into(),
            max_files: a.log_max_files,
            max_size: a.log_max_size.clone(),
            root_dir: a.log_path.clone(),
        },
        LogDriverArg::None => model::LogDriverConfig {
            driver_type: "none".into(),
            ..Default::default()
        },
    };
    hc.log_config.mode_config = match a.log_mode {
        LogModeArg::Blocking => model::LogModeConfig {
            mode: "blocking".into(),
            max_buffer_size: String::new(),
        },
        LogModeArg::NonBlocking => model::LogModeConfig {
            mode: "non-blocking".into(),
            max_buffer_size: a.log_max_buffer_size.clone(),
        },
    };
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        hc.resources = Some(model::Resources {
            memory: a.memory.clone().unwrap_or_default(),
            memory_reservation: a.memory_reservation.clone().unwrap_or_default(),
            memory_swap: a.memory_swap.clone().unwrap_or_default(),
        });
    }
    Ok(c)
}

fn restart_policy(rp: RestartPolicyArg, count: i64, timeout_secs: i64) -> model::RestartPolicy {
    let policy_type = match rp {
        RestartPolicyArg::No => model::RestartPolicyType::No,
        RestartPolicyArg::Always => model::RestartPolicyType::Always,
        RestartPolicyArg::UnlessStopped => model::RestartPolicyType::UnlessStopped,
        RestartPolicyArg::OnFailure => model::RestartPolicyType::OnFailure,
    };
    if policy_type == model::RestartPolicyType::OnFailure {
        model::RestartPolicy {
            maximum_retry_count: count,
            retry_timeout: timeout_secs.saturating_mul(1_000_000_000),
            policy_type,
        }
    } else {
        model::RestartPolicy {
            policy_type,
            ..Default::default()
        }
    }
}

async fn update(api: &mut ApiClient, a: UpdateArgs) -> anyhow::Result<()> {
    let id = resolve(api, &a.sel).await?;
    let current = convert::from_pb(
        &call(
            api.containers
                .get(svc::GetContainerRequest { id: id.clone() })
                .await,
        )?
        .container
        .ok_or_else(|| anyhow!("the daemon returned no container"))?,
    )?;
    let mut opts = pb::UpdateOptions::default();
    if a.restart_policy.is_some() || a.restart_count.is_some() || a.restart_timeout.is_some() {
        let cur = &current.host_config.restart_policy;
        let mut p = match a.restart_policy {
            Some(rp) => restart_policy(
                rp,
                a.restart_count.unwrap_or(1),
                a.restart_timeout.unwrap_or(30),
            ),
            None => cur.clone(),
        };
        if let Some(n) = a.restart_count {
            p.maximum_retry_count = n;
        }
        if let Some(t) = a.restart_timeout {
            p.retry_timeout = t.saturating_mul(1_000_000_000);
        }
        opts.restart_policy = Some(convert::restart_policy_to_pb(&p));
    }
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let cur = current.host_config.resources.clone().unwrap_or_default();
        opts.resources = Some(pb::Resources {
            memory: a.memory.unwrap_or(cur.memory),
            memory_reservation: a.memory_reservation.unwrap_or(cur.memory_reservation),
            memory_swap: a.memory_swap.unwrap_or_default(),
        });
    }
    call(
        api.containers
            .update(svc::UpdateContainerRequest {
                id,
                update_options: Some(opts),
            })
            .await,
    )?;
    Ok(())
}

/// Kanto's filters: status=, image=, exitcode= (case-insensitive status and image).
pub fn filter(containers: Vec<Container>, filters: &[String]) -> anyhow::Result<Vec<Container>> {
    let mut status = None;
    let mut image = None;
    let mut exit = None;
    for f in filters {
        if let Some(v) = f.strip_prefix("status=") {
            status = Some(v.to_string());
        } else if let Some(v) = f.strip_prefix("image=") {
            image = Some(v.to_string());
        } else if let Some(v) = f.strip_prefix("exitcode=") {
            exit = Some(
                v.parse::<i64>()
                    .map_err(|_| anyhow!("invalid exit code {v:?} in --filter"))?,
            );
        } else {
            bail!("no filter: {}", f.split('=').next().unwrap_or(f));
        }
    }
    Ok(containers
        .into_iter()
        .filter(|c| {
            status
                .as_ref()
                .map_or(true, |s| c.state.status.name().eq_ignore_ascii_case(s))
        })
        .filter(|c| {
            image
                .as_ref()
                .map_or(true, |i| c.image.name.eq_ignore_ascii_case(i))
        })
        .filter(|c| exit.map_or(true, |e| c.state.exit_code == e))
        .collect())
}

async fn list(api: &mut ApiClient, a: ListArgs) -> anyhow::Result<()> {
    let mut containers = all(api).await?;
    if let Some(name) = &a.name {
        containers.retain(|c| &c.container_name == name);
    }
    let containers = filter(containers, &a.filter)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let mut text = serde_json::to_string_pretty(&containers)?;
        text.push('\n');
        out.write_all(text.as_bytes())?;
    } else if a.quiet {
        let ids: Vec<&str> = containers.iter().map(|c| c.container_id.as_str()).collect();
        writeln!(out, "{}", ids.join(" "))?;
    } else if containers.is_empty() {
        writeln!(out, "No containers found.")?;
    } else {
        out.write_all(table::render(&containers).as_bytes())?;
    }
    Ok(())
}

async fn attach(api: &mut ApiClient, id: &str) -> anyhow::Result<()> {
    let first = svc::AttachContainerRequest {
        id: id.to_string(),
        ..Default::default()
    };
    let mut stream = call(
        api.containers
            .attach(futures_util::stream::iter([first]))
            .await,
    )?;
    let mut out = std::io::stdout().lock();
    while let Some(msg) = stream
        .message()
        .await
        .map_err(|s| anyhow!("{}", s.message()))?
    {
        out.write_all(&msg.read_data)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<KantoCm, clap::Error> {
        KantoCm::try_parse_from(std::iter::once("kanto-cm").chain(args.iter().copied()))
    }

    #[test]
    fn malformed_flags_are_usage_errors_naming_the_flag() {
        let cases = [
            (vec!["create", "--ports", "abc", "busybox"], "--ports"),
            (vec!["create", "--rp", "sometimes", "busybox"], "--rp"),
            (vec!["create", "-m", "1k", "busybox"], "--memory"),
            (
                vec!["create", "--devices", "/dev/x:/dev/y:rwx", "busybox"],
                "--devices",
            ),
            (vec!["create", "--e", "1BAD=x", "busybox"], "--e"),
            (vec!["stop", "x", "-t", "soon"], "--time"),
            (
                vec!["update", "x", "--memory-swap", "lots"],
                "--memory-swap",
            ),
        ];
        for (args, flag) in cases {
            let err = parse(&args).unwrap_err().to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
    }

    #[test]
    fn create_flags_become_kantos_container() {
        let cli = parse(&[
            "create",
            "-n",
            "web",
            "--ports",
            "127.0.0.1:8080:80/tcp,9000:90",
            "--e",
            "A=1",
            "--e",
            "B=2,3",
            "--rp",
            "on-failure",
            "--rp-cnt",
            "3",
            "--rp-to",
            "5",
            "--mp",
            "/data:/mnt",
            "-m",
            "10m",
            "--network",
            "host",
            "busybox",
            "sh",
            "-c",
            "echo hi",
        ])
        .unwrap();
        let Some(Command::Create(a)) = cli.command else {
            panic!()
        };
        let (image, cmd) = a.args.split_first().unwrap();
        let c = container_from_flags(&a, image, cmd).unwrap();
        assert_eq!(c.container_name, "web");
        assert_eq!(c.image.name, "busybox");
        assert_eq!(c.config.cmd, vec!["sh", "-c", "echo hi"]);
        assert_eq!(c.config.env, vec!["A=1", "B=2,3"]);
        assert_eq!(c.host_config.port_mappings.len(), 2);
        assert_eq!(c.host_config.port_mappings[0].host_ip, "127.0.0.1");
        assert_eq!(c.host_config.restart_policy.maximum_retry_count, 3);
        assert_eq!(c.host_config.restart_policy.retry_timeout, 5_000_000_000);
        assert_eq!(c.mount_points[0].propagation_mode, "rprivate");
        assert_eq!(c.host_config.resources.as_ref().unwrap().memory, "10m");
        assert_eq!(c.host_config.network_mode, model::NetworkMode::Host);
    }

    #[test]
    fn filters() {
        let mk = |name: &str, status: model::State, image: &str| Container {
            container_name: name.into(),
            state: status,
            image: model::Image {
                name: image.into(),
                decrypt_config: None,
            },
            ..Default::default()
        };
        let running = model::State::default().running(1, "t");
        let all = vec![
            mk("a", running.clone(), "x"),
            mk("b", running.exited(3, false, "t"), "y"),
        ];
        let names = |v: Vec<Container>| v.into_iter().map(|c| c.container_name).collect::<Vec<_>>();
        assert_eq!(
            names(filter(all.clone(), &["status=running".into()]).unwrap()),
            ["a"]
        );
        assert_eq!(
            names(filter(all.clone(), &["exitcode=3".into()]).unwrap()),
            ["b"]
        );
        assert_eq!(
            names(filter(all.clone(), &["image=X".into()]).unwrap()),
            ["a"]
        );
        assert!(filter(all, &["color=red".into()])
            .unwrap_err()
            .to_string()
            .contains("no filter: color"));
    }
}
