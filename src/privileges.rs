//! Capabilities: which ones the configuration needs (pure), and dropping all others (the
//! adapter over the `caps` crate and `prctl`).
//!
//! containerd does the privileged work of running containers (mounts, cgroups, namespaces,
//! devices), so the daemon itself needs no capability for pulling, creating, starting,
//! stopping, logs or metrics: it talks to containerd's socket, which root owns, and writes to
//! directories root owns. Only bridge networking needs some, because the CNI plugins run as
//! the daemon's children and inherit at most its capabilities (no_new_privs is set):
//!
//! | capability     | why (bridge networking, `network.default_bridge.disable: false`)        |
//! |----------------|--------------------------------------------------------------------------|
//! | CAP_NET_ADMIN  | bridge, veth pairs, addresses, routes, iptables rules, net sysctls        |
//! | CAP_NET_RAW    | iptables (legacy back end opens a raw socket)                             |
//! | CAP_SYS_ADMIN  | setns(2) into the container's network namespace                           |
//! | CAP_SYS_PTRACE | opening `/proc/<pid>/ns/net` of a container process, whose capabilities |
//! |                | exceed the daemon's                                                      |
//!
//! With the bridge disabled (host networking only) the daemon keeps no capability at all.

use caps::{CapSet, Capability, CapsHashSet};

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
    #[error("cannot change the {set} capability set: {source}")]
    Caps {
        set: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("cannot drop {cap} from the bounding set: {source}")]
    Bounding {
        cap: Capability,
        source: caps::errors::CapsError,
    },
}

/// Why a capability is kept, for the start-up log line and the docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub cap: Capability,
    pub reason: &'static str,
}

/// The capabilities the daemon keeps for this configuration (sorted, no duplicates).
pub fn required(bridge_enabled: bool) -> Vec<Kept> {
    let mut kept = Vec::new();
    if bridge_enabled {
        kept.extend([
            Kept {
                cap: Capability::CAP_NET_ADMIN,
                reason: "bridge networking (CNI plugins)",
            },
            Kept {
                cap: Capability::CAP_NET_RAW,
                reason: "iptables (CNI plugins)",
            },
            Kept {
                cap: Capability::CAP_SYS_ADMIN,
                reason: "entering container network namespaces (CNI plugins)",
            },
            Kept {
                cap: Capability::CAP_SYS_PTRACE,
                reason: "opening container network namespaces (CNI plugins)",
            },
        ]);
    }
    kept.sort_unstable_by_key(|k| k.cap.index());
    kept
}

/// Names as `/proc/<pid>/status` decoders and systemd print them (`cap_net_admin`).
pub fn names(kept: &[Kept]) -> String {
    if kept.is_empty() {
        return "none".into();
    }
    kept.iter()
        .map(|k| k.cap.to_string().to_lowercase())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Bit mask as in `/proc/<pid>/status` (`CapEff`, `CapBnd`).
#[cfg(test)]
pub fn mask(kept: &[Kept]) -> u64 {
    kept.iter().fold(0, |m, k| m | k.cap.bitmask())
}

/// Reduces every capability set of the calling thread to `kept` and sets no_new_privs.
///
/// Must run on the main thread before any other thread exists: capabilities are per thread
/// and new threads inherit the creator's.
pub fn drop_to(kept: &[Kept]) -> Result<(), PrivilegeError> {
    let keep: CapsHashSet = kept.iter().map(|k| k.cap).collect();
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegeError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    let set = |which: CapSet, name: &'static str, value: &CapsHashSet| {
        caps::set(None, which, value).map_err(|source| PrivilegeError::Caps { set: name, source })
    };
    set(CapSet::Ambient, "ambient", &CapsHashSet::new())?;
    set(CapSet::Inheritable, "inheritable", &CapsHashSet::new())?;
    // Dropping from the bounding set needs CAP_SETPCAP, which is given up below. Under the
    // systemd unit the bounding set is already the kept set and nothing needs dropping.
    let bounding = caps::read(None, CapSet::Bounding).map_err(|source| PrivilegeError::Caps {
        set: "bounding",
        source,
    })?;
    for cap in bounding.difference(&keep) {
        caps::drop(None, CapSet::Bounding, *cap)
            .map_err(|source| PrivilegeError::Bounding { cap: *cap, source })?;
    }
    let permitted = caps::read(None, CapSet::Permitted).map_err(|source| PrivilegeError::Caps {
        set: "permitted",
        source,
    })?;
    let target: CapsHashSet = permitted.intersection(&keep).copied().collect();
    set(CapSet::Effective, "effective", &target)?;
    set(CapSet::Permitted, "permitted", &target)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_sets_per_configuration() {
        assert_eq!(names(&required(false)), "none");
        assert_eq!(mask(&required(false)), 0);
        let bridge = required(true);
        assert_eq!(
            names(&bridge),
            "cap_net_admin cap_net_raw cap_sys_ptrace cap_sys_admin"
        );
        // CAP_NET_ADMIN=12, CAP_NET_RAW=13, CAP_SYS_ADMIN=21, CAP_SYS_PTRACE=19
        assert_eq!(mask(&bridge), (1 << 12) | (1 << 13) | (1 << 19) | (1 << 21));
    }
}
