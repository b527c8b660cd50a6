//! The OCI runtime spec of a container (pure: model + image config + host facts in, spec out).
//!
//! It follows containerd's default Linux spec (what `ctr run` produces) and Kanto's
//! additions: process from the image config with `config.cmd`/`config.env` overrides,
//! hostname and domain name, the default mounts plus `mount_points` with their propagation,
//! devices with cgroup permissions, `privileged`, `extra_capabilities`, memory limits, the
//! cgroup path `/<namespace>/<id>` and the namespaces for the network mode.

use std::collections::HashSet;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceBuilder,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder,
    PosixRlimitType, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::model::size::parse_size;
use crate::model::{Container, NetworkMode};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command to run: neither the image {image} nor the container sets one")]
    NoCommand { image: String },
    #[error("image user {user:?} is not numeric (uid[:gid]); named users are not supported")]
    User { user: String },
    #[error("unknown capability {0}")]
    Capability(String),
    #[error("cannot build the runtime spec: {0}")]
    Build(#[from] oci_spec::OciSpecError),
}

/// The process settings of an image's config blob.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageProcess {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
}

/// A device node on the host, resolved by the caller (stat of the path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path_in_container: String,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Cgroup permissions (`rwm`).
    pub permissions: String,
}

/// Files bind-mounted over the container's `/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcFiles {
    pub hosts: String,
    pub resolv_conf: String,
    pub hostname: Option<String>,
}

pub struct SpecInput<'a> {
    pub container: &'a Container,
    pub image: &'a ImageProcess,
    /// containerd namespace, the first element of the cgroup path.
    pub namespace: &'a str,
    /// The mapped devices, or every host device for a privileged container.
    pub devices: &'a [DeviceNode],
    pub etc_files: Option<EtcFiles>,
    /// A network namespace to join (bridge networking); `None` makes a new one, which has
    /// only loopback.
    pub netns_path: Option<String>,
}

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// containerd's default capability set.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| SpecError::Capability(name.to_string()))
}

/// Every capability oci-spec knows (for privileged containers).
fn all_capabilities() -> HashSet<Capability> {
    crate::model::validate::CAPABILITIES
        .iter()
        .filter_map(|c| capability(c).ok())
        .collect()
}

/// `uid[:gid]` as numbers (empty and `root` are 0).
fn user(text: &str) -> Result<(u32, u32), SpecError> {
    let err = || SpecError::User {
        user: text.to_string(),
    };
    if text.is_empty() || text == "root" {
        return Ok((0, 0));
    }
    let (u, g) = text.split_once(':').unwrap_or((text, ""));
    let uid: u32 = u.parse().map_err(|_| err())?;
    let gid: u32 = if g.is_empty() {
        0
    } else {
        g.parse().map_err(|_| err())?
    };
    Ok((uid, gid))
}

/// Image environment, overridden by the container's by variable name, as containerd's
/// `WithEnv` does; PATH is added when the image has none.
fn merge_env(image: &[String], container: &[String]) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut env: Vec<String> = image.to_vec();
    for e in container {
        let k = key(e);
        env.retain(|x| key(x) != k);
        env.push(e.clone());
    }
    if !env.iter().any(|e| key(e) == "PATH") {
        env.insert(0, DEFAULT_PATH.into());
    }
    env
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn default_mounts() -> Result<Vec<Mount>, SpecError> {
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        )?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ])
}

/// containerd's default device cgroup rules: deny all, allow the standard nodes.
fn default_device_rules() -> Result<Vec<oci_spec::runtime::LinuxDeviceCgroup>, SpecError> {
    let rule = |allow: bool,
                typ: LinuxDeviceType,
                major: Option<i64>,
                minor: Option<i64>,
                access: &str| {
        let mut b = LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(typ)
            .access(access);
        if let Some(m) = major {
            b = b.major(m);
        }
        if let Some(m) = minor {
            b = b.minor(m);
        }
        b.build()
    };
    use LinuxDeviceType::{A, B, C};
    Ok(vec![
        rule(false, A, None, None, "rwm")?,
        rule(true, C, None, None, "m")?,
        rule(true, B, None, None, "m")?,
        rule(true, C, Some(1), Some(3), "rwm")?,
        rule(true, C, Some(1), Some(8), "rwm")?,
        rule(true, C, Some(1), Some(7), "rwm")?,
        rule(true, C, Some(5), Some(0), "rwm")?,
        rule(true, C, Some(1), Some(5), "rwm")?,
        rule(true, C, Some(1), Some(9), "rwm")?,
        rule(true, C, Some(5), Some(1), "rwm")?,
        rule(true, C, Some(136), None, "rwm")?,
        rule(true, C, Some(5), Some(2), "rwm")?,
        rule(true, C, Some(10), Some(200), "rwm")?,
    ])
}

pub fn build(input: &SpecInput) -> Result<Spec, SpecError> {
    let c = input.container;
    let img = input.image;
    let hc = &c.host_config;

    let cmd = if c.config.cmd.is_empty() {
        &img.cmd
    } else {
        &c.config.cmd
    };
    let args: Vec<String> = img.entrypoint.iter().chain(cmd.iter()).cloned().collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand {
            image: c.image.name.clone(),
        });
    }
    let mut env = merge_env(&img.env, &c.config.env);
    env.push(format!("HOSTNAME={}", c.host_name));
    if c.io_config.tty {
        env.push("TERM=xterm".into());
    }
    let (uid, gid) = user(&img.user)?;

    let caps: HashSet<Capability> = if hc.privileged {
        all_capabilities()
    } else {
        let mut set: HashSet<Capability> = DEFAULT_CAPS
            .iter()
            .map(|n| capability(n))
            .collect::<Result<_, _>>()?;
        for extra in &hc.extra_capabilities {
            set.insert(capability(extra)?);
        }
        set
    };
    let process = ProcessBuilder::default()
        .terminal(c.io_config.tty)
        .user(UserBuilder::default().uid(uid).gid(gid).build()?)
        .args(args)
        .env(env)
        .cwd(if img.working_dir.is_empty() {
            "/"
        } else {
            img.working_dir.as_str()
        })
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()?,
        )
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()?])
        .no_new_privileges(false)
        .build()?;

    let mut mounts = default_mounts()?;
    if hc.privileged {
        for m in &mut mounts {
            if m.destination().as_os_str() == "/sys"
                || m.destination().as_os_str() == "/sys/fs/cgroup"
            {
                let opts: Vec<String> = m
                    .options()
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|o| o != "ro")
                    .collect();
                m.set_options(Some(opts));
            }
        }
    }
    for mp in &c.mount_points {
        mounts.push(mount(
            &mp.destination,
            "bind",
            &mp.source,
            &["rbind", &mp.propagation_mode],
        )?);
    }
    match (&input.etc_files, hc.network_mode) {
        (Some(files), _) => {
            mounts.push(mount(
                "/etc/hosts",
                "bind",
                &files.hosts,
                &["rbind", "rprivate"],
            )?);
            mounts.push(mount(
                "/etc/resolv.conf",
                "bind",
                &files.resolv_conf,
                &["rbind", "rprivate"],
            )?);
            if let Some(h) = &files.hostname {
                mounts.push(mount("/etc/hostname", "bind", h, &["rbind", "rprivate"])?);
            }
        }
        (None, NetworkMode::Host) => {
            mounts.push(mount(
                "/etc/hosts",
                "bind",
                "/etc/hosts",
                &["rbind", "rprivate", "ro"],
            )?);
            mounts.push(mount(
                "/etc/resolv.conf",
                "bind",
                "/etc/resolv.conf",
                &["rbind", "rprivate", "ro"],
            )?);
        }
        (None, NetworkMode::Bridge) => {}
    }
    mounts.retain(|m| m.destination().as_os_str() != "/run");

    let mut namespaces = Vec::new();
    for typ in [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
    ] {
        namespaces.push(LinuxNamespaceBuilder::default().typ(typ).build()?);
    }
    if hc.network_mode == NetworkMode::Bridge {
        let mut ns = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
        if let Some(path) = &input.netns_path {
            ns = ns.path(path);
        }
        namespaces.push(ns.build()?);
    }

    let mut device_rules = default_device_rules()?;
    let mut devices = Vec::new();
    if hc.privileged {
        device_rules = vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwm")
            .build()?];
    }
    for d in input.devices {
        let typ = if d.kind == 'b' {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        };
        devices.push(
            LinuxDeviceBuilder::default()
                .path(&d.path_in_container)
                .typ(typ)
                .major(d.major)
                .minor(d.minor)
                .file_mode(d.file_mode)
                .uid(d.uid)
                .gid(d.gid)
                .build()?,
        );
        if !hc.privileged {
            device_rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(typ)
                    .major(d.major)
                    .minor(d.minor)
                    .access(d.permissions.clone())
                    .build()?,
            );
        }
    }
    let mut resources = LinuxResourcesBuilder::default().devices(device_rules);
    if let Some(r) = &hc.resources {
        let size = |s: &str| parse_size(s).filter(|_| !s.is_empty());
        let mut memory = LinuxMemoryBuilder::default();
        if let Some(v) = size(&r.memory) {
            memory = memory.limit(v);
        }
        if let Some(v) = size(&r.memory_reservation) {
            memory = memory.reservation(v);
        }
        if let Some(v) = size(&r.memory_swap) {
            memory = memory.swap(v);
        }
        resources = resources.memory(memory.build()?);
    }
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources.build()?)
        .cgroups_path(format!("/{}/{}", input.namespace, c.container_id))
        .devices(devices);
    // Privileged containers see everything: no masked or read-only paths.
    let (masked, readonly): (&[&str], &[&str]) = if hc.privileged {
        (&[], &[])
    } else {
        (MASKED_PATHS, READONLY_PATHS)
    };
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    linux = linux
        .masked_paths(strings(masked))
        .readonly_paths(strings(readonly));

    Ok(SpecBuilder::default()
        .version("1.0.2-dev")
        .process(process)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(false)
                .build()?,
        )
        .hostname(c.host_name.clone())
        .domainname(c.domain_name.clone())
        .mounts(mounts)
        .linux(linux.build()?)
        .build()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::defaults::fill_defaults;

    fn container(json: serde_json::Value) -> Container {
        let mut base = serde_json::json!({"container_name": "web", "image": {"name": "busybox"}});
        crate::config::merge(&mut base, json);
        let mut c: Container = serde_json::from_value(base).unwrap();
        fill_defaults(&mut c, || "id-1".into());
        c
    }

    fn image() -> ImageProcess {
        ImageProcess {
            env: vec!["PATH=/bin".into(), "A=image".into()],
            entrypoint: vec![],
            cmd: vec!["/bin/sh".into()],
            working_dir: String::new(),
            user: String::new(),
        }
    }

    fn spec_json(c: &Container, img: &ImageProcess, devices: &[DeviceNode]) -> serde_json::Value {
        let input = SpecInput {
            container: c,
            image: img,
            namespace: "kanto-cm",
            devices,
            etc_files: None,
            netns_path: None,
        };
        serde_json::to_value(build(&input).unwrap()).unwrap()
    }

    #[test]
    fn process_from_image_with_overrides() {
        let c = container(
            serde_json::json!({"config": {"env": ["A=ctr", "B=2"], "cmd": ["echo", "hi"]}}),
        );
        let mut img = image();
        img.entrypoint = vec!["/entry".into()];
        img.working_dir = "/work".into();
        img.user = "1000:100".into();
        let s = spec_json(&c, &img, &[]);
        let p = &s["process"];
        assert_eq!(p["args"], serde_json::json!(["/entry", "echo", "hi"]));
        assert_eq!(
            p["env"],
            serde_json::json!(["PATH=/bin", "A=ctr", "B=2", "HOSTNAME=web-host"])
        );
        assert_eq!(p["cwd"], "/work");
        assert_eq!(p["user"]["uid"], 1000);
        assert_eq!(p["user"]["gid"], 100);
        assert_eq!(p["terminal"], false);
        assert_eq!(s["hostname"], "web-host");
        assert_eq!(s["domainname"], "web-domain");
        assert_eq!(s["linux"]["cgroupsPath"], "/kanto-cm/id-1");
        assert_eq!(s["root"]["path"], "rootfs");
        let caps = p["capabilities"]["bounding"].as_array().unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        assert!(!caps.contains(&serde_json::json!("CAP_SYS_ADMIN")));
    }

    #[test]
    fn namespaces_follow_the_network_mode() {
        let types = |s: &serde_json::Value| -> Vec<String> {
            s["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["type"].as_str().unwrap().to_string())
                .collect()
        };
        let bridge = spec_json(&container(serde_json::json!({})), &image(), &[]);
        assert_eq!(types(&bridge), ["pid", "ipc", "uts", "mount", "network"]);
        let host = spec_json(
            &container(serde_json::json!({"host_config": {"network_mode": "host"}})),
            &image(),
            &[],
        );
        assert_eq!(types(&host), ["pid", "ipc", "uts", "mount"]);
        let dests: Vec<_> = host["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert!(dests.contains(&"/etc/resolv.conf") && dests.contains(&"/etc/hosts"));
    }

    #[test]
    fn mounts_devices_memory_caps_and_privileged() {
        let c = container(serde_json::json!({
            "mount_points": [{"source": "/data", "destination": "/mnt", "propagation_mode": "rshared"}],
            "host_config": {
                "devices": [{"path_on_host": "/dev/ttyS0", "cgroup_permissions": "rw"}],
                "extra_capabilities": ["CAP_SYS_TIME"],
                "resources": {"memory": "10M", "memory_reservation": "5M"}
            }
        }));
        let dev = DeviceNode {
            path_in_container: "/dev/ttyS0".into(),
            kind: 'c',
            major: 4,
            minor: 64,
            file_mode: 0o660,
            uid: 0,
            gid: 20,
            permissions: "rw".into(),
        };
        let s = spec_json(&c, &image(), std::slice::from_ref(&dev));
        let m = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/mnt")
            .unwrap();
        assert_eq!(m["options"], serde_json::json!(["rbind", "rshared"]));
        assert_eq!(s["linux"]["devices"][0]["path"], "/dev/ttyS0");
        assert_eq!(s["linux"]["devices"][0]["major"], 4);
        let rules = s["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules[0]["allow"], false);
        assert!(rules
            .iter()
            .any(|r| r["major"] == 4 && r["minor"] == 64 && r["access"] == "rw"));
        let mem = &s["linux"]["resources"]["memory"];
        assert_eq!(mem["limit"], 10 * 1024 * 1024);
        assert_eq!(mem["reservation"], 5 * 1024 * 1024);
        assert_eq!(mem["swap"], 20 * 1024 * 1024);
        let caps = s["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        assert!(caps.contains(&serde_json::json!("CAP_SYS_TIME")));
        assert!(s["linux"]["maskedPaths"].as_array().is_some());

        let p = container(serde_json::json!({"host_config": {"privileged": true}}));
        let s = spec_json(&p, &image(), std::slice::from_ref(&dev));
        let caps = s["process"]["capabilities"]["bounding"].as_array().unwrap();
        assert!(caps.contains(&serde_json::json!("CAP_SYS_ADMIN")));
        assert_eq!(
            s["linux"]["resources"]["devices"],
            serde_json::json!([{"allow": true, "access": "rwm"}])
        );
        assert_eq!(s["linux"]["maskedPaths"], serde_json::json!([]));
        assert_eq!(s["linux"]["readonlyPaths"], serde_json::json!([]));
        let sys = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(!sys["options"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("ro")));
    }

    #[test]
    fn bad_inputs() {
        let c = container(serde_json::json!({}));
        let mut img = image();
        img.cmd.clear();
        let input = SpecInput {
            container: &c,
            image: &img,
            namespace: "ns",
            devices: &[],
            etc_files: None,
            netns_path: None,
        };
        assert!(matches!(build(&input), Err(SpecError::NoCommand { .. })));
        let mut img = image();
        img.user = "nobody".into();
        let input = SpecInput {
            image: &img,
            ..input
        };
        assert!(matches!(build(&input), Err(SpecError::User { .. })));
        assert_eq!(user("0").unwrap(), (0, 0));
        assert_eq!(user("5:6").unwrap(), (5, 6));
        assert!(capability("sys_time").is_ok());
        assert!(capability("CAP_FLY").is_err());
    }
}
