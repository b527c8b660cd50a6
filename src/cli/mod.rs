//! The `kanto-cm` command line (also `leda-cm ctl`): Kanto's commands, flags, defaults, help
//! texts, error texts and exit codes, over the local gRPC API. The command tree is a table
//! (`tree`) run by `command` (cobra's rules) and `flags` (pflag's); as with Kanto, flags and
//! argument counts are checked first, then the daemon is dialled, then each command checks
//! its values and asks the daemon. Every failure prints `Error: <text>` and exits 1 (usage
//! errors too, as cobra); daemon errors read as Go's gRPC status text
//! `rpc error: code = <Code> desc = <message>`. `anyhow` is used here (and in `main`) only.

pub mod command;
pub mod completion;
pub mod flags;
pub mod registry;
pub mod table;

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

use self::command::{Args, Cmd, Outcome};
use self::flags::{Flag, Kind, Parsed};
use crate::api::client::{connect, ApiClient, ClientError};
use crate::api::convert;
use crate::api::pb::services::containers as svc;
use crate::api::pb::types::containers as pb;
use crate::model::{self, parse, Container};

pub const DEFAULT_HOST: &str = "/run/container-management/container-management.sock";

const BANNER: &str = "


         ~~~~~~~~~~~~~
        ~~,   ~~~~~~ ~~
       ~~:   ~~~~~    ~~
      ~~:   ~:~       :~~      ,,,                            ,
     :~~   :       :::::~~     ,,,                           :,
     ~~         ::::::::::~    ,,,  ,,,  ,,,,,,,  ,,,,,,,,  ,,,,,,  ,,,,,,,
    ::       ::::::::::::::~   ,,, ,,,         ,, ,,,    ,,  ,,    ,,,   ,,,
    ::         ::::::::::::    ,,,,,      ,,,,,,, ,,,    ,,  ,,    ,,     ,,
     ::           ,,,,,,,,     ,,, ,,    ,,    ,, ,,,    ,,  ,,    ,,     ,,
      ::    ,       ,,,,,      ,,,  ,,   ,,   ,,, ,,,    ,,  ,,,   ,,,   ,,,
       ::    ,,,      ,,       ,,,   ,,  ,,,,, ,, ,,,    ,,   ,,,,  ,,,,,,,
        ,,    ,,,,,  ,,
         ,,,,,,,,,,,,,


Eclipse Kanto - Container Management
";

/// `CLI v…, API v…, (build <commit> <time>) ` as Kanto prints it (root help, sysinfo).
fn cli_version_line() -> String {
    let info = crate::api::server::project_info();
    let or_unknown = |s: String| {
        if s.is_empty() {
            "unknown".to_string()
        } else {
            s
        }
    };
    format!(
        "CLI v{}, API v{}, (build {} {}) ",
        info.project_version,
        info.api_version,
        or_unknown(info.git_commit),
        or_unknown(info.build_time)
    )
}

const STOP_TIME: &str = "Sets the timeout period to gracefully stop the container as duration string, e.g. 15s or 1m15s. When timeout expires the container process would be forcibly killed. If not specified the daemon default container stop timeout will be used.";

fn s(name: &'static str, usage: &'static str) -> Flag {
    Flag::new(name, Kind::Str, "", usage)
}

fn b(name: &'static str, usage: &'static str) -> Flag {
    Flag::new(name, Kind::Bool, "false", usage)
}

fn strings(name: &'static str, usage: &'static str) -> Flag {
    Flag::new(name, Kind::Strings, "[]", usage)
}

fn cmd(
    name: &'static str,
    use_line: &'static str,
    short: &'static str,
    long: &str,
    example: &'static str,
    args: Args,
    flags: Vec<Flag>,
) -> Cmd {
    let mut c = Cmd::new(name, use_line, short);
    c.long = long.to_string();
    c.example = example;
    c.args = args;
    c.flags = flags;
    c
}

/// Kanto's command tree (containerm/cli), its texts as Kanto writes them, plus leda-cm's
/// `restart` and `list --json`; cobra's `help` and `completion` commands.
pub fn tree() -> Cmd {
    let mut root = Cmd::new(
        "kanto-cm",
        "kanto-cm",
        "Eclipse Kanto - Container Management CLI",
    );
    root.long = format!("{BANNER}{}\n", cli_version_line());
    root.runnable = false;
    root.silence_usage = false;
    root.persistent = vec![
        Flag::new(
            "host",
            Kind::Str,
            DEFAULT_HOST,
            "Specify the address path to the Eclipse Kanto container management",
        ),
        Flag::new(
            "timeout",
            Kind::Int,
            "30",
            "Specify the connection timeout in seconds to the Eclipse Kanto container management",
        ),
        b("debug", "Switch commands log level to DEBUG mode"),
    ];
    let name = |usage: &'static str| s("name", usage).short('n');
    let mut create = cmd(
        "create",
        "create [option]... [container-image-id] [command] [command-arg]...",
        "Create a container.",
        "Create a container.",
        "create container-image-id",
        Args::Any,
        vec![
            name("Create a container with a specific name. A valid name must start with an uppercase or a lowercase letter, a digit or an underscore and not exceed 32 symbols. It can also contain a dot and a hyphen."),
            b("t", "Enable terminal for the current container"),
            b("i", "Enable interaction with the current container"),
            b("privileged", "Create the container as privileged"),
            s("rp", "Sets the restart policy for the container.Supported restart policies are - no, always, unless-stopped (the default), always. \nno - no attempts to restart the container for any reason will be made \nalways - an attempt to restart the container will be me made each time the container exits regardless of the exit code \nunless-stopped - restart attempts will be made only if the container has not been stopped by the user \non-failure - restart attempts will be made if the container exits with an exit code != 0; \nthe additional flags (--rp-cnt and --rp-to) apply only for this policy; if max retry count if not provided - the system will retry until it succeeds endlessly \n"),
            Flag::new("rp-cnt", Kind::Int, "1", "Sets the number of retries that will be made to restart the container on exit if the policy is set to Always"),
            Flag::new("rp-to", Kind::Int64, "30", "Sets the time out period in seconds for each retry that will be made to restart the container on exit if the policy is set to Always"),
            strings("devices", "Devices to be made available in the current container and optional cgroups permissions configuration. Both path on host and in container must be set. Possible cgroup permissions options are \"r\" (read), \"w\" (write), \"m\" (mknod) and all combinations of the three are possible. If not set, \"rwm\" is default device configuration. Example: \n--devices=/dev/ttyACM0:/dev/ttyUSB0[:rwm]"),
            strings("ports", "Ports to be mapped from the host to the container instance. Template: \n--ports=[<host-ip>:]<host-port>:<container-port>[-<range>][/<proto>] \nMost common use-case: \n--ports=80:80\nMapping the container's 80 port to a host port in the 5000-6000 range: \n--ports=5000-6000:80/udp\nSpecifying port protocol (default is tcp): \n--ports=80:80/udp\nBy default the port mappings will set on all network interfaces, but this is also manageable. Example with two mappings including an optional host port range and udp: \n--ports=0.0.0.0:80-100:80/udp"),
            Flag::new("network", Kind::Str, "bridge", "Sets the networking mode for the container. Possible options are:\nbridge - the container is connected to the default bridge network interface of the engine and is assigned an IP (this is the default)\nhost - the container shares the network stack of the host (use with caution as this breaks the network's isolation!)"),
            strings("hosts", "Extra hosts to be added in the current container's /etc/hosts file. Example: \n--hosts=\"hostname1:<IP1>, hostname2:<IP2>..\" \nIf the IP of the host machine is to be added to the container's hosts file the reserved host_ip[_<network-interface>] must be provided. Example:\n--hosts=\"local.host.machine.ip.custom.if:host_ip_myNetIf0\" \nthis will automatically resolve the host's IP on the myNetIf0 network interface and add it to the container's hosts file \n--hosts=\"local.host.machine.ip.default.bridge:host_ip\" \nthis will automatically resolve the host's IP on the default bridge network interface for containerm (the default configuration is kanto-cm0) and add it to the container's hosts file if the container is configured to use it\nIf the IP of a container in the same bridge network is to be added to the hosts file the reserved container_<container-host_name> must be provided. Example:\n--hosts=\"service:container_service-host\""),
            strings("mp", "Sets mount points so a source directory on the host can be accessed via a destination directory in the container. Example:\n--mp=\"source1:destination1:propagation_mode, source2:destination2\" \nIf the propagation mode parameter is omitted, 'rprivate' will be set by default.  \nAvailable propagation modes are: rprivate, private, rshared, shared, rslave, slave"),
            Flag::new("e", Kind::StringArray, "[]", "Sets the provided environment variables in the root container's process environment. Example:\n--e=VAR1=2 --e=VAR2=\"a bc\"\nIf --e=VAR1= is used, the environment variable would be set to empty.\nIf --e=VAR1 is used, the environment variable would be removed from the container environment inherited from the image."),
            Flag::new("log-driver", Kind::Str, "json-file", "Sets the type of the log driver to be used for the container - json-file (default), none"),
            Flag::new("log-max-files", Kind::Int, "2", "Sets the max number of log files to be rotated - applicable for json-file log driver only"),
            Flag::new("log-max-size", Kind::Str, "100M", "Sets the max size of the logs files for rotation in the form of 1, 1.2m,1g, etc. - applicable for json-file log driver only"),
            s("log-path", "Sets the path to the directory where the log files will be stored - applicable for json-file log driver only"),
            Flag::new("log-mode", Kind::Str, "blocking", "Sets the mode of the logger - blocking (default), non-blocking"),
            Flag::new("log-max-buffer-size", Kind::Str, "1M", "Sets the max size of the logger buffer in the form of 1, 1.2m - applicable for non-blocking mode only"),
            s("memory", "Sets the max amount of memory the container can use in the form of 200m, 1.2g. The minimum allowed value is 3m\nBy default, a container has no memory constraints.").short('m'),
            s("memory-reservation", "Sets a soft memory limitation in the form of 200m, 1.2g. Must be smaller than --memory.\nWhen the system detects memory contention or low memory, control groups are pushed back to their soft limits.\nThere is no guarantee that the container memory usage will not exceed the soft limit."),
            s("memory-swap", "Sets the total amount of memory + swap that the container can use in the form of 200m, 1.2g.\nIf set must not be smaller than --memory. If equal to --memory, than the container will not have access to swap.\nIf not set and --memory is set, than the container can use as much swap as the --memory setting.\nIf set to -1, the container can use unlimited swap, up to the amount available on the host."),
            strings("dec-keys", "Sets a list of private keys filenames (GPG private key ring, JWE and PKCS7 private key). Each entry can include an optional password separated by a colon after the filename."),
            strings("dec-recipients", "Sets a recipients certificates list of the image (used only for PKCS7 and must be an x509)"),
            strings("cap-add", "Add Linux capabilities to the container"),
            s("file", "Creates a container with a predefined config given by the user.").short('f'),
        ],
    );
    create.interspersed = false;
    let start = cmd(
        "start",
        "start <container-id>",
        "Start a container.",
        "Start a container.",
        "start <container-id>\n start --name <container-name>\n start -n <container-name>",
        Args::Max(1),
        vec![
            b(
                "a",
                "Attach to the container's process STDOUT/STDERR and forward signals",
            ),
            b("i", "Enable interaction with the current container"),
            name("Start a container with a specific name."),
        ],
    );
    let stop = cmd(
        "stop",
        "stop <container-id>",
        "Stop a container.",
        "Stop a container.",
        " stop <container-id>\n stop --name <container-name>\n stop -n <container-name>",
        Args::Max(1),
        vec![
            s("time", STOP_TIME).short('t'),
            name("Stop a container with a specific name."),
            b("force", "Whether to send a SIGKILL signal to the container's process if it does not finish within the timeout specified.").short('f'),
            Flag::new("signal", Kind::Str, "SIGTERM", "Stop a container using a specific signal. Signals could be specified by using their names or numbers, e.g. SIGINT or 2.").short('s'),
        ],
    );
    let restart = cmd(
        "restart",
        "restart <container-id>",
        "Restart a container.",
        "Restart a container (leda-cm; Kanto has no restart command).",
        "restart <container-id>\n restart --name <container-name>\n restart -n <container-name>",
        Args::Max(1),
        vec![name("Restart a container with a specific name.")],
    );
    let list_cmd = cmd(
        "list",
        "list",
        "List all containers.",
        "List all containers.",
        " list\n list --name <container-name>\n list --quiet\n list --filter status=created",
        Args::None,
        vec![
            name("List all containers with a specific name."),
            b("quiet", "List only container IDs.").short('q'),
            strings("filter", "Lists only containers with a specified filter. The containers can be filtered by their status, image and exitcode."),
            b("json", "List the containers in the internal JSON format (leda-cm).",),
        ],
    );
    let get = cmd(
        "get",
        "get <container-id>",
        "Get detailed information about a given container.",
        "Get detailed information about a given container.",
        "get <container-id>\n get --name <container-name>\n get -n <container-name>",
        Args::Max(1),
        vec![name(
            "Get the information about a container with a specific name.",
        )],
    );
    let logs = cmd(
        "logs",
        "logs <container-id>",
        "Print the logs for a container.",
        "Print the logs for a container.",
        "logs <container-id>\nlogs --name <container-name>\nlogs -n <container-name>",
        Args::Max(1),
        vec![
            name("Print the logs of a container with a specific name."),
            Flag::new(
                "tail",
                Kind::Int32,
                "100",
                "Lines of recent log file to display. Setting it to -1 will return all logs.",
            )
            .short('t'),
        ],
    );
    let update = cmd(
        "update",
        "update <container-id>",
        "Update a container.",
        "Update a container without recreating it. The provided configurations will be merged with the current one.",
        "update <container-id>\nupdate -n <container-name>\n",
        Args::Max(1),
        vec![
            name("Updates the container with a specific name."),
            s("rp", "Updates the restart policy for the container. The policy will be applied when the container exits. Supported restart policies are - no, always, unless-stopped, on-failure. \nno - no attempts to restart the container for any reason will be made \nalways - an attempt to restart the container will be made each time the container exits regardless of the exit code \nunless-stopped - restart attempts will be made only if the container has not been stopped by the user \non-failure - restart attempts will be made if the container exits with an exit code != 0; \nthe additional flags (--rp-cnt and --rp-to) apply only for this policy; if max retry count is not provided - the system will retry until it succeeds endlessly \n"),
            Flag::new("rp-cnt", Kind::Int, "-2147483648", "Updates the number of retries that will be made to restart the container on exit if the policy is on-failure"),
            Flag::new("rp-to", Kind::Int64, "-9223372036854775808", "Updates the time out period in seconds for each retry that will be made to restart the container on exit if the policy is set to on-failure"),
            s("memory", "Updates the max amount of memory the container can use in the form of 200m, 1.2g.\nUse -1, to remove the memory usage limit.").short('m'),
            s("memory-reservation", "Updates the soft memory limitation in the form of 200m, 1.2g.\nUse -1, to remove the reservation memory limit."),
            s("memory-swap", "Updates the total amount of memory + swap that the container can use in the form of 200m, 1.2g.\nUse -1, to remove the swap memory limit."),
        ],
    );
    let rename = cmd(
        "rename",
        "rename <container-id> <container-new-name>",
        "Renames a given container.",
        "Renames a given container.",
        "rename <container-id> <container-new-name>\n rename --name <container-name> <container-new-name>\n rename -n <container-name> <container-new-name>",
        Args::Max(2),
        vec![name("Renames a container with a specific name.")],
    );
    let remove = cmd(
        "remove",
        "remove <container-id> ...",
        "Remove one or more containers.",
        "Remove one or more containers and frees the associated resources.",
        " remove <container-id>\n remove <container-id> <container-id> \n remove --name <container-name>\n remove -n <container-name>",
        Args::Legacy,
        vec![
            b("force", "Force stopping before removing a container").short('f'),
            name("Remove a container with a specific name."),
            s("time", STOP_TIME).short('t'),
        ],
    );
    let sysinfo = cmd(
        "sysinfo",
        "sysinfo",
        "Show information about the container management runtime and its environment.",
        "Show information about the container management runtime and its environment.",
        "sysinfo",
        Args::None,
        vec![],
    );
    let mut help = cmd(
        "help",
        "help [command]",
        "Help about any command",
        "Help provides help for any command in the application.\nSimply type kanto-cm help [path to command] for full details.",
        "",
        Args::Legacy,
        vec![],
    );
    help.flags_in_use_line = true;
    help.silence_usage = false;
    root.subs = vec![
        create,
        remove,
        start,
        stop,
        restart,
        list_cmd,
        get,
        sysinfo,
        update,
        rename,
        logs,
        completion::command(),
        help,
    ];
    root
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicyArg {
    No,
    Always,
    UnlessStopped,
    OnFailure,
}

impl RestartPolicyArg {
    fn parse(text: &str) -> Option<RestartPolicyArg> {
        Some(match text {
            "no" => RestartPolicyArg::No,
            "always" => RestartPolicyArg::Always,
            "unless-stopped" => RestartPolicyArg::UnlessStopped,
            "on-failure" => RestartPolicyArg::OnFailure,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkArg {
    Bridge,
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDriverArg {
    JsonFile,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogModeArg {
    Blocking,
    NonBlocking,
}

/// `create`'s values, checked.
#[derive(Debug, Clone)]
pub struct CreateArgs {
    pub args: Vec<String>,
    pub name: Option<String>,
    pub terminal: bool,
    pub interactive: bool,
    pub privileged: bool,
    pub restart_policy: Option<RestartPolicyArg>,
    pub restart_count: i64,
    pub restart_timeout: i64,
    pub devices: Vec<model::DeviceMapping>,
    pub ports: Vec<model::PortMapping>,
    pub network: NetworkArg,
    pub hosts: Vec<String>,
    pub mount_points: Vec<model::MountPoint>,
    pub env: Vec<String>,
    pub log_driver: LogDriverArg,
    pub log_max_files: i64,
    pub log_max_size: String,
    pub log_path: String,
    pub log_mode: LogModeArg,
    pub log_max_buffer_size: String,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    pub dec_keys: Vec<String>,
    pub dec_recipients: Vec<String>,
    pub cap_add: Vec<String>,
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

fn opt(
    p: &Parsed,
    name: &str,
    check: fn(&str) -> Result<String, String>,
) -> Result<Option<String>, String> {
    match p.opt_string(name).filter(|v| !v.is_empty()) {
        Some(v) => check(&v).map(Some).map_err(|e| format!("--{name}: {e}")),
        None => Ok(None),
    }
}

fn each<T>(values: Vec<String>, f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    values.iter().map(|v| f(v)).collect()
}

/// `create`'s flags as values; the errors Kanto's parsers give (the model's texts), and
/// leda-cm refuses the restart policies, network modes, log drivers and modes Kanto drops.
pub fn create_args(p: &Parsed) -> Result<CreateArgs, String> {
    let rp = match p.opt_string("rp").filter(|v| !v.is_empty()) {
        Some(v) => Some(RestartPolicyArg::parse(&v).ok_or_else(|| {
            format!(
                "unsupported restart policy {v:?}: use no, always, unless-stopped or on-failure"
            )
        })?),
        None => None,
    };
    let network = match p.string("network", "bridge").as_str() {
        "bridge" => NetworkArg::Bridge,
        "host" => NetworkArg::Host,
        other => return Err(format!("unsupported network mode {other}")),
    };
    let log_driver = match p.string("log-driver", "json-file").as_str() {
        "json-file" => LogDriverArg::JsonFile,
        "none" => LogDriverArg::None,
        other => {
            return Err(format!(
                "unsupported log driver {other}: use json-file or none"
            ))
        }
    };
    let log_mode = match p.string("log-mode", "blocking").as_str() {
        "blocking" => LogModeArg::Blocking,
        "non-blocking" => LogModeArg::NonBlocking,
        other => {
            return Err(format!(
                "unsupported log mode {other}: use blocking or non-blocking"
            ))
        }
    };
    let env = p.list("e");
    if let Some(bad) = env.iter().find(|e| !model::validate::valid_env(e)) {
        return Err(format!(
            "invalid environmental variable declaration provided : {bad}"
        ));
    }
    Ok(CreateArgs {
        args: p.args.clone(),
        name: p.opt_string("name").filter(|n| !n.is_empty()),
        terminal: p.bool("t"),
        interactive: p.bool("i"),
        privileged: p.bool("privileged"),
        restart_policy: rp,
        restart_count: p.int("rp-cnt", 1),
        restart_timeout: p.int("rp-to", 30),
        devices: each(p.list("devices"), |d| {
            parse::device_mapping(d).map_err(|e| e.to_string())
        })?,
        ports: each(p.list("ports"), |d| {
            parse::port_mapping(d).map_err(|e| e.to_string())
        })?,
        network,
        hosts: p.list("hosts"),
        mount_points: each(p.list("mp"), |d| {
            parse::mount_point(d).map_err(|e| e.to_string())
        })?,
        env,
        log_driver,
        log_max_files: p.int("log-max-files", 2),
        log_max_size: size(&p.string("log-max-size", "100M"))
            .map_err(|e| format!("--log-max-size: {e}"))?,
        log_path: p.string("log-path", ""),
        log_mode,
        log_max_buffer_size: size(&p.string("log-max-buffer-size", "1M"))
            .map_err(|e| format!("--log-max-buffer-size: {e}"))?,
        memory: opt(p, "memory", memory)?,
        memory_reservation: opt(p, "memory-reservation", size)?,
        memory_swap: opt(p, "memory-swap", memory)?,
        dec_keys: p.list("dec-keys"),
        dec_recipients: p.list("dec-recipients"),
        cap_add: p.list("cap-add"),
    })
}

/// Runs a `kanto-cm` invocation; returns the exit code.
pub fn main(argv: Vec<OsString>) -> i32 {
    let args: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let root = tree();
    let (path, parsed) = match command::execute(&root, &args) {
        Outcome::Print {
            stdout,
            stderr,
            code,
        } => {
            print!("{stdout}");
            eprint!("{stderr}");
            let _ = std::io::stdout().flush();
            return code;
        }
        Outcome::Run { path, parsed } => (path, parsed),
    };
    if path.first() == Some(&"completion") {
        let shell = path.get(1).copied().unwrap_or("bash");
        return match completion::script(&root, shell, !parsed.bool("no-descriptions")) {
            Ok(text) => {
                print!("{text}");
                0
            }
            Err(e) => {
                eprintln!("Error: {e}");
                1
            }
        };
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
    match runtime.block_on(run(path[0], parsed)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    }
}

/// logrus' text format, as Kanto's CLI logs (`time="…" level=… msg=…`).
fn logrus_line(level: &str, msg: &str) -> String {
    let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    // Go's RFC3339Nano drops trailing zeros of the fraction.
    let now = match now.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => now,
    };
    let plain = !msg.is_empty()
        && msg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/@^+".contains(c));
    let msg = if plain {
        msg.to_string()
    } else {
        flags::go_quote(msg)
    };
    format!("time=\"{now}\" level={level} msg={msg}")
}

/// Go's gRPC status error text: `rpc error: code = <Code> desc = <message>`.
pub fn status_text(s: &tonic::Status) -> String {
    use tonic::Code;
    let code = match s.code() {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    };
    format!("rpc error: code = {code} desc = {}", s.message())
}

/// The answer of a call, or its status as Kanto's client prints it.
fn call<T>(r: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<T> {
    r.map(tonic::Response::into_inner)
        .map_err(|s| anyhow!("{}", status_text(&s)))
}

/// Go's `time.ParseDuration` and Kanto's rounding to whole seconds (`-t`/`--time`).
fn stop_seconds(text: &str) -> anyhow::Result<i64> {
    if text.is_empty() {
        return Ok(0);
    }
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let d = crate::duration::parse_go_duration(body)
        .ok()
        .filter(|_| !body.starts_with(['+', '-']))
        .ok_or_else(|| anyhow!("time: invalid duration {}", flags::go_quote(text)))?;
    let secs = ((d.as_millis() + 500) / 1000) as i64;
    Ok(if negative { -secs } else { secs })
}

async fn run(name: &str, p: Parsed) -> anyhow::Result<()> {
    let host = p.string("host", DEFAULT_HOST);
    let debug = p.bool("debug");
    if debug {
        eprintln!("{}", logrus_line("info", "start client at debug level"));
    }
    let timeout = Duration::from_secs(p.int("timeout", 30).max(1) as u64);
    let mut api = match connect(&host, timeout).await {
        Ok(api) => api,
        Err(ClientError::Unreachable { reason, .. }) => {
            eprintln!(
                "{}",
                logrus_line("fatal", &format!("error while dialing {host}: {reason}"))
            );
            std::process::exit(1);
        }
    };
    let api = &mut api;
    let name_flag = p.string("name", "");
    match name {
        "create" => create(api, &p).await,
        "start" => {
            let c = resolve(api, &p.args, &name_flag).await?;
            if c.state.dead {
                bail!(
                    "the container with ID = {} is dead and to be removed - cannot start it",
                    c.container_id
                );
            }
            if c.state.running {
                bail!(
                    "the container with ID = {} is already running - cannot start it again",
                    c.container_id
                );
            }
            if c.state.paused {
                bail!(
                    "the container with ID = {} is paused - cannot start it - use unpause instead",
                    c.container_id
                );
            }
            if p.bool("i") {
                bail!("interactive mode is not supported: containers run without stdin");
            }
            let id = c.container_id;
            call(
                api.containers
                    .start(svc::StartContainerRequest { id: id.clone() })
                    .await,
            )?;
            if p.bool("a") {
                attach(api, &id).await?;
            }
            Ok(())
        }
        "stop" => {
            let c = resolve(api, &p.args, &name_flag).await?;
            let timeout = stop_seconds(&p.string("time", ""))?;
            let signal = p.string("signal", "SIGTERM");
            if timeout < 0 {
                bail!("the timeout = {timeout} shouldn't be negative");
            }
            if crate::manager::parse_signal(&signal).is_none() {
                bail!("invalid signal = {signal}");
            }
            let opts = pb::StopOptions {
                timeout,
                force: p.bool("force"),
                signal,
            };
            call(
                api.containers
                    .stop(svc::StopContainerRequest {
                        id: c.container_id,
                        stop_options: Some(opts),
                    })
                    .await,
            )?;
            Ok(())
        }
        "restart" => {
            let c = resolve(api, &p.args, &name_flag).await?;
            call(
                api.containers
                    .restart(svc::RestartContainerRequest { id: c.container_id })
                    .await,
            )?;
            Ok(())
        }
        "list" => list(api, &p).await,
        "get" => {
            let c = resolve(api, &p.args, &name_flag).await?;
            println!("{}", pretty(&c)?);
            Ok(())
        }
        "logs" => {
            let c = resolve(api, &p.args, &name_flag).await?;
            let tail = p.int("tail", 100) as i32;
            let mut stream = call(
                api.containers
                    .logs(svc::GetLogsRequest {
                        id: c.container_id,
                        tail,
                    })
                    .await,
            )?;
            let mut out = std::io::stdout().lock();
            while let Some(msg) = stream
                .message()
                .await
                .map_err(|s| anyhow!("{}", status_text(&s)))?
            {
                writeln!(out, "{}", msg.log)?;
            }
            Ok(())
        }
        "update" => update(api, &p).await,
        "rename" => {
            let (ids, new_name) = match p.args.as_slice() {
                [id, new] => (vec![id.clone()], new.clone()),
                [new] => (Vec::new(), new.clone()),
                _ => bail!("accepts between 1 and 2 arg(s), received 0"),
            };
            if !new_name.is_empty() && !model::validate::valid_name(&new_name) {
                bail!("invalid container name format : {new_name}");
            }
            let c = resolve(api, &ids, &name_flag).await?;
            if new_name == c.container_name {
                bail!("the new name = {new_name} shouldn't be the same");
            }
            call(
                api.containers
                    .rename(svc::RenameContainerRequest {
                        id: c.container_id,
                        name: new_name,
                    })
                    .await,
            )?;
            Ok(())
        }
        "remove" => remove(api, &p).await,
        "sysinfo" => {
            let info = call(api.sysinfo.project_info(()).await)?
                .project_info
                .unwrap_or_default();
            println!(
                "Engine v{}, API v{}, (build {} {}) ",
                info.project_version, info.api_version, info.git_commit, info.build_time
            );
            println!("{}", cli_version_line());
            Ok(())
        }
        other => bail!("unknown command {other:?}"),
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

/// Kanto's `ValidateContainerByNameArgsSingle`: the container of an ID argument (asked with
/// Get: an unknown ID is an empty answer, or NotFound) or of `--name` (one of List).
async fn resolve(api: &mut ApiClient, args: &[String], name: &str) -> anyhow::Result<Container> {
    if args.is_empty() && name.is_empty() {
        bail!("You must provide either an ID or a name for the container via --name (-n) ");
    }
    if args.len() == 1 && !name.is_empty() {
        bail!("Container ID and --name (-n) cannot be provided at the same time - use only one of them");
    }
    if let Some(id) = args.first() {
        let not_found = || anyhow!("The requested container with ID = {id} was not found.");
        let answer = api
            .containers
            .get(svc::GetContainerRequest { id: id.clone() })
            .await;
        return match answer {
            Err(s) if s.code() == tonic::Code::NotFound => Err(not_found()),
            Err(s) => Err(anyhow!("{}", status_text(&s))),
            Ok(r) => match r.into_inner().container {
                Some(c) if !c.id.is_empty() => Ok(convert::from_pb(&c)?),
                _ => Err(not_found()),
            },
        };
    }
    let mut found: Vec<Container> = all(api)
        .await?
        .into_iter()
        .filter(|c| c.container_name == name)
        .collect();
    match found.len() {
        0 => bail!(
            "The requested container with name = {name} was not found. Try using an ID instead."
        ),
        1 => Ok(found.remove(0)),
        _ => {
            bail!("There are more than one containers with name = {name}. Try using an ID instead.")
        }
    }
}

async fn create(api: &mut ApiClient, p: &Parsed) -> anyhow::Result<()> {
    let file = p.string("file", "");
    let c = if !file.is_empty() {
        if !p.args.is_empty() {
            bail!("no arguments are expected when creating a container from file");
        }
        if p.set
            .iter()
            .any(|(n, _)| !["file", "host", "timeout", "debug"].contains(n))
        {
            bail!("no other flags are expected when creating a container from file");
        }
        let text = std::fs::read(&file).with_context(|| format!("open {file}"))?;
        model::container_from_json(&text)
            .with_context(|| format!("{file} is not a valid container description"))?
    } else {
        let a = create_args(p).map_err(|e| anyhow!(e))?;
        let Some((image, command)) = a.args.split_first() else {
            bail!("container image argument is expected");
        };
        if let Some(n) = &a.name {
            if !model::validate::valid_name(n) {
                bail!("invalid container name format : {n}");
            }
        }
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

async fn remove(api: &mut ApiClient, p: &Parsed) -> anyhow::Result<()> {
    let name = p.string("name", "");
    let force = p.bool("force");
    let time = p.string("time", "");
    // As Kanto: a grace period only with --force.
    let stop_options = if force && !time.is_empty() {
        Some(pb::StopOptions {
            timeout: stop_seconds(&time)?,
            force: true,
            signal: "SIGTERM".into(),
        })
    } else {
        None
    };
    let client = api.clone();
    let remove_one = |id: String| {
        let mut api = client.clone();
        let stop_options = stop_options.clone();
        async move {
            call(
                api.containers
                    .remove(svc::RemoveContainerRequest {
                        id,
                        force,
                        stop_options,
                    })
                    .await,
            )
            .map(|_| ())
        }
    };
    if p.args.is_empty() {
        let c = resolve(api, &[], &name).await?;
        return remove_one(c.container_id).await;
    }
    let mut errors = Vec::new();
    for arg in &p.args {
        let r = match resolve(api, std::slice::from_ref(arg), &name).await {
            Ok(c) => remove_one(c.container_id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = r {
            errors.push(format!("{e:#}"));
        }
    }
    match errors.len() {
        0 => Ok(()),
        1 => bail!("{}", errors[0]),
        _ => {
            let items: Vec<String> = errors.iter().map(|e| format!("* {e}")).collect();
            bail!(
                "containers couldn't be removed due to the following reasons: \n\n{}",
                items.join("\n")
            )
        }
    }
}

async fn update(api: &mut ApiClient, p: &Parsed) -> anyhow::Result<()> {
    let current = resolve(api, &p.args, &p.string("name", "")).await?;
    let mut opts = pb::UpdateOptions::default();
    let kind = p.string("rp", "");
    if !kind.is_empty() || p.changed("rp-cnt") || p.changed("rp-to") {
        let cur = &current.host_config.restart_policy;
        let mut policy = if kind.is_empty() {
            model::RestartPolicy {
                policy_type: cur.policy_type,
                ..Default::default()
            }
        } else {
            let rp = RestartPolicyArg::parse(&kind).ok_or_else(|| {
                anyhow!("unsupported restart policy {kind:?}: use no, always, unless-stopped or on-failure")
            })?;
            restart_policy(rp, 0, 0)
        };
        if policy.policy_type == model::RestartPolicyType::OnFailure {
            policy.maximum_retry_count = cur.maximum_retry_count;
            policy.retry_timeout = cur.retry_timeout;
        }
        if p.changed("rp-cnt") {
            policy.maximum_retry_count = p.int("rp-cnt", 0);
        }
        if p.changed("rp-to") {
            policy.retry_timeout = p.int("rp-to", 0).saturating_mul(1_000_000_000);
        }
        opts.restart_policy = Some(convert::restart_policy_to_pb(&policy));
    }
    let given =
        |flag: &str, check: fn(&str) -> Result<String, String>| -> anyhow::Result<Option<String>> {
            match p.opt_string(flag).filter(|v| !v.is_empty()) {
                Some(v) if v == "-1" => Ok(Some(v)),
                Some(v) => check(&v).map(Some).map_err(|e| anyhow!("--{flag}: {e}")),
                None => Ok(None),
            }
        };
    let (m, r, sw) = (
        given("memory", memory)?,
        given("memory-reservation", size)?,
        given("memory-swap", memory)?,
    );
    if m.is_some() || r.is_some() || sw.is_some() {
        // As Kanto: without limits so far, the values as given; else a new value replaces,
        // -1 removes the limit, no value keeps the current one.
        let had = current.host_config.resources.is_some();
        let cur = current.host_config.resources.clone().unwrap_or_default();
        let merge = |new: Option<String>, cur: String| match new {
            Some(v) if v == "-1" && had => String::new(),
            Some(v) => v,
            None => cur,
        };
        opts.resources = Some(pb::Resources {
            memory: merge(m, cur.memory),
            memory_reservation: merge(r, cur.memory_reservation),
            memory_swap: merge(sw, cur.memory_swap),
        });
    }
    call(
        api.containers
            .update(svc::UpdateContainerRequest {
                id: current.container_id,
                update_options: Some(opts),
            })
            .await,
    )?;
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
            exit = Some(v.parse::<i64>().map_err(|_| {
                anyhow!(
                    "strconv.Atoi: parsing {}: invalid syntax",
                    flags::go_quote(v)
                )
            })?);
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

async fn list(api: &mut ApiClient, p: &Parsed) -> anyhow::Result<()> {
    let mut containers = all(api).await?;
    let name = p.string("name", "");
    if !name.is_empty() {
        containers.retain(|c| c.container_name == name);
    }
    let containers = filter(containers, &p.list("filter"))?;
    let mut out = std::io::stdout().lock();
    if p.bool("json") {
        let mut text = serde_json::to_string_pretty(&containers)?;
        text.push('\n');
        out.write_all(text.as_bytes())?;
    } else if p.bool("quiet") {
        // As Kanto: the IDs on one line; nothing at all when there are none.
        if !containers.is_empty() {
            let ids: Vec<&str> = containers.iter().map(|c| c.container_id.as_str()).collect();
            writeln!(out, "{}", ids.join(" "))?;
        }
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
        .map_err(|s| anyhow!("{}", status_text(&s)))?
    {
        out.write_all(&msg.read_data)?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Parsed {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match command::execute(&tree(), &args) {
            Outcome::Run { parsed, .. } => parsed,
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn malformed_values_name_the_flag() {
        let cases = [
            (vec!["create", "--rp", "sometimes", "busybox"], "sometimes"),
            (vec!["create", "-m", "1k", "busybox"], "--memory"),
            (vec!["create", "--ports", "abc", "busybox"], "abc"),
            (
                vec!["create", "--devices", "/dev/x:/dev/y:rwx", "busybox"],
                "rwx",
            ),
            (vec!["create", "--e", "1BAD=x", "busybox"], "1BAD=x"),
            (vec!["create", "--network", "none", "busybox"], "none"),
        ];
        for (args, what) in cases {
            let err = create_args(&parse(&args)).unwrap_err();
            assert!(err.contains(what), "{args:?}: {err}");
        }
        assert_eq!(
            stop_seconds("later").unwrap_err().to_string(),
            "time: invalid duration \"later\""
        );
        assert_eq!(stop_seconds("1m15s").unwrap(), 75);
        assert_eq!(stop_seconds("1.5s").unwrap(), 2);
        assert_eq!(stop_seconds("-5s").unwrap(), -5);
        assert_eq!(stop_seconds("").unwrap(), 0);
    }

    #[test]
    fn create_flags_become_kantos_container() {
        let p = parse(&[
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
        ]);
        let a = create_args(&p).unwrap();
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
    fn global_flags_anywhere_and_the_last_wins() {
        let p = parse(&[
            "--host",
            "/a.sock",
            "list",
            "--host",
            "/b.sock",
            "--timeout=5",
            "-q",
        ]);
        assert_eq!(p.string("host", ""), "/b.sock");
        assert_eq!(p.int("timeout", 30), 5);
        assert!(p.bool("quiet"));
        // create stops at the image: the rest is the container's command line.
        let p = parse(&["create", "--privileged", "img", "--host", "-n", "x"]);
        assert_eq!(p.args, ["img", "--host", "-n", "x"]);
        assert_eq!(p.string("host", DEFAULT_HOST), DEFAULT_HOST);
    }

    #[test]
    fn status_texts_are_go_grpcs() {
        let s = tonic::Status::new(tonic::Code::Unknown, "boom");
        assert_eq!(status_text(&s), "rpc error: code = Unknown desc = boom");
        let s = tonic::Status::new(tonic::Code::Cancelled, "x");
        assert_eq!(status_text(&s), "rpc error: code = Canceled desc = x");
        let line = logrus_line("fatal", "error while dialing /x: refused");
        assert!(
            line.starts_with("time=\"")
                && line.ends_with("Z\" level=fatal msg=\"error while dialing /x: refused\""),
            "{line}"
        );
        assert!(logrus_line("info", "plain").ends_with(" level=info msg=plain"));
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
        assert_eq!(
            filter(all.clone(), &["exitcode=x".into()])
                .unwrap_err()
                .to_string(),
            "strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert!(filter(all, &["color=red".into()])
            .unwrap_err()
            .to_string()
            .contains("no filter: color"));
    }
}
