//! The difference between the desired and the current containers (pure): per container
//! Create, Recreate, Update, Check or Destroy, with the reason. Kanto's rules (by container
//! name): Recreate when the image name, mounts, env (as a set), cmd, tty or stdin, privileged,
//! network, devices, extra hosts, capabilities, ports or log config differ; Update when only
//! the resources or the restart policy differ; else Check. Beyond Kanto: also Recreate when
//! the image's tag now resolves to a new digest. Containers not desired are destroyed, except
//! system containers, which a desired state never touches.

use std::collections::{BTreeSet, HashSet};

use crate::model::Container;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Create,
    Recreate,
    Update,
    Check,
    Destroy,
}

impl Kind {
    /// Kanto's action messages.
    pub fn message(self) -> &'static str {
        match self {
            Kind::Check => {
                "No changes detected, existing container will be check only if it is running."
            }
            Kind::Create => "New container will be created and started.",
            Kind::Recreate => "Existing container will be destroyed and replaced by a new one.",
            Kind::Update => "Existing container will be updated with new configuration.",
            Kind::Destroy => "Existing container will be destroyed, no longer needed.",
        }
    }
}

/// What a step does, with the containers it needs: a create has only the desired one, a
/// removal only the current one, the rest both. The phases match on it (no `Option`s).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Create {
        desired: Container,
    },
    Recreate {
        current: Container,
        desired: Container,
    },
    Update {
        current: Container,
        desired: Container,
    },
    Check {
        current: Container,
        desired: Container,
    },
    Destroy {
        current: Container,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub name: String,
    pub reason: String,
    pub change: Change,
    /// The image is pulled again even though it is present (its tag moved).
    pub refresh_image: bool,
}

impl Planned {
    pub fn kind(&self) -> Kind {
        match self.change {
            Change::Create { .. } => Kind::Create,
            Change::Recreate { .. } => Kind::Recreate,
            Change::Update { .. } => Kind::Update,
            Change::Check { .. } => Kind::Check,
            Change::Destroy { .. } => Kind::Destroy,
        }
    }

    /// The container there is now (none for a create).
    pub fn current(&self) -> Option<&Container> {
        match &self.change {
            Change::Create { .. } => None,
            Change::Recreate { current, .. }
            | Change::Update { current, .. }
            | Change::Check { current, .. }
            | Change::Destroy { current } => Some(current),
        }
    }

    /// The container to make (a create or a recreate).
    pub fn to_make(&self) -> Option<&Container> {
        match &self.change {
            Change::Create { desired } | Change::Recreate { desired, .. } => Some(desired),
            _ => None,
        }
    }

    /// The ID of the container there is now ("" when there is none).
    pub fn current_id(&self) -> String {
        self.current()
            .map(|c| c.container_id.clone())
            .unwrap_or_default()
    }
}

fn set<T: Ord + Clone>(v: &[T]) -> BTreeSet<T> {
    v.iter().cloned().collect()
}

fn same_set<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
    a.len() == b.len() && set(a) == set(b)
}

/// Whether `a` and `b` hold the same elements by `key`, order aside.
fn same_by<T, K: Ord>(a: &[T], b: &[T], key: impl Fn(&T) -> K) -> bool {
    let keys = |v: &[T]| v.iter().map(&key).collect::<BTreeSet<K>>();
    a.len() == b.len() && keys(a) == keys(b)
}

/// Why `current` must be replaced to become `desired`, if it must.
pub fn recreate_reason(current: &Container, desired: &Container) -> Option<String> {
    let (c, d) = (&current.host_config, &desired.host_config);
    let checks: [(bool, &str); 12] = [
        (current.image.name == desired.image.name, "image"),
        (
            same_by(&current.mount_points, &desired.mount_points, |m| {
                (
                    m.source.clone(),
                    m.destination.clone(),
                    m.propagation_mode.clone(),
                )
            }),
            "mounts",
        ),
        (current.config.cmd == desired.config.cmd, "cmd"),
        (same_set(&current.config.env, &desired.config.env), "env"),
        (
            current.io_config.tty == desired.io_config.tty
                && current.io_config.open_stdin == desired.io_config.open_stdin,
            "terminal or interactive",
        ),
        (c.privileged == d.privileged, "privileged"),
        (c.network_mode == d.network_mode, "network"),
        (
            same_by(&c.devices, &d.devices, |x| {
                (
                    x.path_on_host.clone(),
                    x.path_in_container.clone(),
                    x.cgroup_permissions.clone(),
                )
            }),
            "devices",
        ),
        (same_set(&c.extra_hosts, &d.extra_hosts), "extra hosts"),
        (
            same_set(&c.extra_capabilities, &d.extra_capabilities),
            "capabilities",
        ),
        (
            same_by(&c.port_mappings, &d.port_mappings, |p| {
                (
                    p.proto.clone(),
                    p.container_port,
                    p.host_ip.clone(),
                    p.host_port,
                    p.host_port_end,
                )
            }),
            "ports",
        ),
        (c.log_config == d.log_config, "log config"),
    ];
    let changed: Vec<&str> = checks
        .iter()
        .filter(|(same, _)| !same)
        .map(|(_, what)| *what)
        .collect();
    if changed.is_empty() {
        None
    } else if changed == ["image"] {
        Some(format!(
            "image changed from {} to {}",
            current.image.name, desired.image.name
        ))
    } else {
        Some(format!("{} changed", changed.join(", ")))
    }
}

fn update_reason(current: &Container, desired: &Container) -> Option<String> {
    let mut changed = Vec::new();
    if current.host_config.resources != desired.host_config.resources {
        changed.push("resources");
    }
    if current.host_config.restart_policy != desired.host_config.restart_policy {
        changed.push("restart policy");
    }
    (!changed.is_empty()).then(|| format!("{} changed", changed.join(", ")))
}

/// The plan: desired containers in their order, then the ones to destroy. `new_digests`
/// names containers whose image tag now resolves to another digest than they run.
pub fn plan(
    desired: &[Container],
    current: &[Container],
    system: &[String],
    new_digests: &HashSet<String>,
) -> Vec<Planned> {
    let is_system = |name: &str| system.iter().any(|s| s == name);
    let mut out = Vec::new();
    for d in desired {
        if is_system(&d.container_name) {
            log::warn!(
                "[{}] system container cannot be updated with desired state",
                d.container_name
            );
            continue;
        }
        let c = current
            .iter()
            .find(|c| c.container_name == d.container_name);
        let moved = new_digests.contains(&d.container_name);
        let (change, reason) = match c {
            None => (
                Change::Create { desired: d.clone() },
                "not present".to_string(),
            ),
            Some(c) => {
                let (current, desired) = (c.clone(), d.clone());
                if let Some(r) = recreate_reason(c, d) {
                    (Change::Recreate { current, desired }, r)
                } else if moved {
                    (
                        Change::Recreate { current, desired },
                        format!("image {} has a new digest", d.image.name),
                    )
                } else if let Some(r) = update_reason(c, d) {
                    (Change::Update { current, desired }, r)
                } else {
                    (Change::Check { current, desired }, "unchanged".to_string())
                }
            }
        };
        let refresh_image = moved && matches!(change, Change::Recreate { .. });
        out.push(Planned {
            name: d.container_name.clone(),
            reason,
            change,
            refresh_image,
        });
    }
    for c in current {
        if is_system(&c.container_name)
            || desired.iter().any(|d| d.container_name == c.container_name)
        {
            continue;
        }
        out.push(Planned {
            name: c.container_name.clone(),
            reason: "not in the desired state".into(),
            change: Change::Destroy { current: c.clone() },
            refresh_image: false,
        });
    }
    out
}

/// What an interrupted replacement left behind, to tidy before diffing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A successor never activated (`<name>.next`), or a predecessor already replaced
    /// (`<name>.prev` while `<name>` exists): removed, the diff makes what is still needed.
    Remove { id: String, name: String },
    /// A predecessor renamed away while its successor never took the name: named back.
    RenameBack { id: String, to: String },
    /// A successor that took the name but whose health gate never passed, beside its
    /// predecessor: the update is rolled back (successor removed, predecessor named back and
    /// started); the desired state, applied again, decides anew.
    RollBack {
        new_id: String,
        old_id: String,
        name: String,
    },
}

/// Finds the leftovers of safe replacement among `current` (pure).
pub fn leftovers(current: &[Container], next_suffix: &str, prev_suffix: &str) -> Vec<Leftover> {
    let exists = |name: &str| current.iter().any(|c| c.container_name == name);
    let mut out = Vec::new();
    for c in current {
        let name = &c.container_name;
        if name.strip_suffix(next_suffix).is_some() {
            out.push(Leftover::Remove {
                id: c.container_id.clone(),
                name: name.clone(),
            });
        } else if let Some(base) = name.strip_suffix(prev_suffix) {
            let unproven = current.iter().find(|n| {
                n.container_name == base && {
                    let x = n.extras();
                    x.health_gate.is_some() && !x.health_passed
                }
            });
            if let Some(new) = unproven {
                out.push(Leftover::RollBack {
                    new_id: new.container_id.clone(),
                    old_id: c.container_id.clone(),
                    name: base.to_string(),
                });
            } else if exists(base) {
                out.push(Leftover::Remove {
                    id: c.container_id.clone(),
                    name: name.clone(),
                });
            } else {
                out.push(Leftover::RenameBack {
                    id: c.container_id.clone(),
                    to: base.to_string(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::desired::parse_desired;
    use crate::agent::messages::{DesiredState, Envelope};
    use crate::model::defaults::fill_defaults;

    fn desired() -> Vec<Container> {
        let e: Envelope<DesiredState> = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/leda-desired-state.json"
        ))
        .unwrap();
        parse_desired(&e.payload, "containers")
            .unwrap()
            .containers
            .into_iter()
            .map(|(_, c)| c)
            .collect()
    }

    /// What the manager holds after creating `d`: defaults filled, an ID, a state.
    fn created(d: &Container) -> Container {
        let mut c = d.clone();
        fill_defaults(&mut c, || format!("id-{}", d.container_name));
        c.state = c.state.running(10, "t");
        c
    }

    fn kinds(p: &[Planned]) -> Vec<(String, Kind)> {
        p.iter().map(|a| (a.name.clone(), a.kind())).collect()
    }

    #[test]
    fn the_leda_fixture_against_nothing_creates_everything() {
        let p = plan(&desired(), &[], &[], &HashSet::new());
        assert!(
            p.iter().all(|a| a.kind() == Kind::Create),
            "{:?}",
            kinds(&p)
        );
        assert_eq!(p.len(), 5);
    }

    #[test]
    fn table() {
        let want = desired();
        let mut current: Vec<Container> = want.iter().map(created).collect();
        // Unchanged: all Check.
        assert!(plan(&want, &current, &[], &HashSet::new())
            .iter()
            .all(|a| a.kind() == Kind::Check));

        // env as a set: order does not matter.
        current[0].config.env.reverse();
        assert_eq!(
            plan(&want, &current, &[], &HashSet::new())[0].kind(),
            Kind::Check
        );
        // env changed → Recreate, naming it.
        current[0].config.env.push("EXTRA=1".into());
        let p = plan(&want, &current, &[], &HashSet::new());
        assert_eq!(
            (p[0].kind(), p[0].reason.as_str()),
            (Kind::Recreate, "env changed")
        );
        current[0] = created(&want[0]);
        // image name changed.
        current[1].image.name = "old/image:0.1".into();
        let p = plan(&want, &current, &[], &HashSet::new());
        assert_eq!(p[1].kind(), Kind::Recreate);
        assert!(
            p[1].reason.starts_with("image changed from old/image:0.1"),
            "{}",
            p[1].reason
        );
        current[1] = created(&want[1]);
        // only resources / restart policy → Update.
        current[2].host_config.resources = Some(crate::model::Resources {
            memory: "64M".into(),
            memory_swap: "128M".into(),
            ..Default::default()
        });
        current[3].host_config.restart_policy.policy_type = crate::model::RestartPolicyType::Always;
        let p = plan(&want, &current, &[], &HashSet::new());
        assert_eq!(
            (p[2].kind(), p[2].reason.as_str()),
            (Kind::Update, "resources changed")
        );
        assert_eq!(
            (p[3].kind(), p[3].reason.as_str()),
            (Kind::Update, "restart policy changed")
        );
        current[2] = created(&want[2]);
        current[3] = created(&want[3]);
        // a new digest behind the same tag.
        let p = plan(
            &want,
            &current,
            &[],
            &HashSet::from(["cloudconnector".to_string()]),
        );
        assert_eq!(p[4].kind(), Kind::Recreate);
        assert!(p[4].reason.contains("has a new digest"));
        assert!(p[4].refresh_image && !p[3].refresh_image);
    }

    #[test]
    fn destroys_what_is_not_desired_but_never_system_containers() {
        let want = desired();
        let mut current: Vec<Container> = want.iter().map(created).collect();
        let mut extra = created(&want[0]);
        extra.container_name = "old-app".into();
        let mut sua = created(&want[0]);
        sua.container_name = "sua".into();
        current.push(extra);
        current.push(sua);
        let p = plan(&want[1..], &current, &["sua".into()], &HashSet::new());
        let k = kinds(&p);
        assert!(k.contains(&("databroker".into(), Kind::Destroy)), "{k:?}");
        assert!(k.contains(&("old-app".into(), Kind::Destroy)), "{k:?}");
        assert!(!k.iter().any(|(n, _)| n == "sua"), "{k:?}");
        // A system container in the desired state is skipped, not touched.
        let p = plan(
            &want,
            &current,
            &["databroker".into(), "sua".into()],
            &HashSet::new(),
        );
        assert!(!p.iter().any(|a| a.name == "databroker"));
    }

    #[test]
    fn leftovers_of_an_interrupted_replacement() {
        let named = |name: &str| {
            let mut c = created(&desired()[0]);
            c.container_name = name.into();
            c.container_id = format!("id-{name}");
            c
        };
        let current = [
            named("a"),
            named("a.next"),
            named("b.prev"),
            named("c"),
            named("c.prev"),
        ];
        let got = leftovers(&current, ".next", ".prev");
        assert_eq!(
            got,
            [
                Leftover::Remove {
                    id: "id-a.next".into(),
                    name: "a.next".into()
                },
                Leftover::RenameBack {
                    id: "id-b.prev".into(),
                    to: "b".into()
                },
                Leftover::Remove {
                    id: "id-c.prev".into(),
                    name: "c.prev".into()
                },
            ]
        );
        assert!(leftovers(&[named("a"), named("b")], ".next", ".prev").is_empty());

        // A successor with a health gate: rolled back until the gate passed, then kept.
        let gated = |passed: bool| {
            let mut c = named("d");
            c.extras_mut().health_gate = Some(crate::model::HealthGate {
                uptime_ms: 1000,
                ..Default::default()
            });
            c.extras_mut().health_passed = passed;
            c
        };
        assert_eq!(
            leftovers(&[gated(false), named("d.prev")], ".next", ".prev"),
            [Leftover::RollBack {
                new_id: "id-d".into(),
                old_id: "id-d.prev".into(),
                name: "d".into()
            }]
        );
        assert_eq!(
            leftovers(&[gated(true), named("d.prev")], ".next", ".prev"),
            [Leftover::Remove {
                id: "id-d.prev".into(),
                name: "d.prev".into()
            }]
        );
    }
}
