//! Host facts the spec needs (adapter: reads `/dev` and `/etc` of the host).

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::spec::DeviceNode;

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("device {path}: {source}")]
    Device { path: String, source: io::Error },
    #[error("{path} is not a device node")]
    NotADevice { path: String },
}

fn major(rdev: u64) -> i64 {
    libc::major(rdev) as i64
}

fn minor(rdev: u64) -> i64 {
    libc::minor(rdev) as i64
}

/// The device node at `path_on_host`, to appear at `path_in_container` with `permissions`.
pub fn device(
    path_on_host: &str,
    path_in_container: &str,
    permissions: &str,
) -> Result<DeviceNode, HostError> {
    let meta = fs::metadata(path_on_host).map_err(|source| HostError::Device {
        path: path_on_host.to_string(),
        source,
    })?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        'c'
    } else if ft.is_block_device() {
        'b'
    } else {
        return Err(HostError::NotADevice {
            path: path_on_host.to_string(),
        });
    };
    Ok(DeviceNode {
        path_in_container: path_in_container.to_string(),
        kind,
        major: major(meta.rdev()),
        minor: minor(meta.rdev()),
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        permissions: permissions.to_string(),
    })
}

/// Every device node under `/dev` (for privileged containers), as runc's `HostDevices`:
/// pseudo-terminal and shared-memory subtrees are skipped.
pub fn all_devices() -> Vec<DeviceNode> {
    let mut out = Vec::new();
    walk(Path::new("/dev"), &mut out);
    out
}

fn walk(dir: &Path, out: &mut Vec<DeviceNode>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            let name = entry.file_name();
            if !matches!(
                name.to_str(),
                Some("pts" | "shm" | "mqueue" | ".lxc" | ".udev")
            ) {
                walk(&path, out);
            }
            continue;
        }
        if path == Path::new("/dev/console") {
            continue;
        }
        if ft.is_char_device() || ft.is_block_device() {
            let p = path.to_string_lossy().into_owned();
            if let Ok(d) = device(&p, &p, "rwm") {
                out.push(d);
            }
        }
    }
}

/// Received and sent bytes of the network namespace of process `pid`, all interfaces but
/// loopback (`/proc/<pid>/net/dev`).
pub fn net_dev(pid: u32) -> Option<(u64, u64)> {
    fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .ok()
        .map(|text| parse_net_dev(&text))
}

/// `/proc/net/dev`: two header lines, then `iface: rx_bytes … (8 rx fields) tx_bytes …`.
pub fn parse_net_dev(text: &str) -> (u64, u64) {
    let mut rx = 0;
    let mut tx = 0;
    for line in text.lines().skip(2) {
        let Some((iface, fields)) = line.split_once(':') else {
            continue;
        };
        if iface.trim() == "lo" {
            continue;
        }
        let nums: Vec<u64> = fields
            .split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect();
        if nums.len() >= 9 {
            rx += nums[0];
            tx += nums[8];
        }
    }
    (rx, tx)
}

/// The host's `/etc/resolv.conf` (empty when there is none).
/// The machine's CPU time over all cores (user, nice, system, idle, iowait, irq, softirq,
/// steal), nanoseconds, from `/proc/stat`.
pub fn cpu_total_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_total(&text, clock_ticks())
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

pub fn parse_cpu_total(stat: &str, ticks_per_second: u64) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Some(ticks.saturating_mul(1_000_000_000 / ticks_per_second.max(1)))
}

/// The machine's memory, bytes (`MemTotal` of `/proc/meminfo`).
pub fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

pub fn resolv_conf() -> String {
    fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

/// The host's IPv4 routes (`/proc/net/route`); empty when it cannot be read.
pub fn routes() -> Vec<crate::network::Route> {
    fs::read_to_string("/proc/net/route")
        .map(|t| crate::network::parse_routes(&t))
        .unwrap_or_default()
}

/// The first IPv4 address of interface `name` (getifaddrs(3)).
pub fn interface_ipv4(name: &str) -> Option<std::net::Ipv4Addr> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list freed below with freeifaddrs; every
    // pointer read is checked for null and only used while the list lives.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            cur = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            if i32::from((*ifa.ifa_addr).sa_family) != libc::AF_INET {
                continue;
            }
            if std::ffi::CStr::from_ptr(ifa.ifa_name).to_bytes() != name.as_bytes() {
                continue;
            }
            let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
            found = Some(std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            break;
        }
        libc::freeifaddrs(list);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_sums_all_but_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    2000      20    0    0    0     0          0         0     3000      30    0    0    0     0       0          0\n  eth1:       5       1    0    0    0     0          0         0        7       1    0    0    0     0       0          0\n";
        assert_eq!(parse_net_dev(text), (2005, 3007));
        assert!(net_dev(std::process::id()).is_some());
    }

    #[test]
    fn dev_null_is_char_1_3() {
        let d = device("/dev/null", "/dev/mynull", "rw").unwrap();
        assert_eq!((d.kind, d.major, d.minor), ('c', 1, 3));
        assert_eq!(d.path_in_container, "/dev/mynull");
        assert!(matches!(
            device("/etc/hostname", "/x", "r"),
            Err(HostError::NotADevice { .. })
        ));
        assert!(matches!(
            device("/dev/nonexistent-xyz", "/x", "r"),
            Err(HostError::Device { .. })
        ));
        assert!(all_devices()
            .iter()
            .any(|d| d.path_in_container == "/dev/null"));
    }

    #[test]
    fn cpu_and_memory_totals() {
        let stat = "cpu  10 20 30 40 50 60 70 80 90 100\ncpu0 1 2 3 4 5 6 7 8\n";
        assert_eq!(parse_cpu_total(stat, 100), Some(360 * 10_000_000));
        assert_eq!(
            parse_mem_total("MemTotal:       2027744 kB\nMemFree: 1 kB\n"),
            Some(2027744 * 1024)
        );
        assert!(cpu_total_ns().unwrap() > 0 && memory_total().unwrap() > 0);
    }
}
