//! The manager's side of bridge networking: port checks at create, the container put on the
//! bridge between task create and start, its address recorded, and taken off again when
//! the task ends or the container goes.
//!
//! A stop does not wait for the plugins' DEL (portmap's and the bridge's iptables deletions
//! and the veth's removal cost 100–200 ms, most of it the kernel's RCU grace periods): the
//! task is dead and the record persisted, with the attachment still in it, when the stop
//! returns; the DEL runs in the background and then takes the attachment out of the record.
//! Until then the container's ports and address count as taken: whatever needs them (its
//! own next start or remove, another container's create or start on one of its host ports)
//! waits for that DEL first, and a crash in between leaves a record whose attachment the next
//! start releases (`supervise::apply`).
//!
//! `/etc/hosts` follows the peers, as in Kanto: whenever a container joins or leaves the
//! bridge, every container on it whose extra hosts name a peer (`container_<host name>`)
//! gets its file rewritten from the bridge's allocations of that moment, so a peer that
//! starts later is found, and one that stops is dropped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{lock, Entry, Manager, ManagerError};
use crate::etc_files;
use crate::model::{Container, EndpointSettings, NetworkMode};
use crate::network::{self, Attachment, Network, NetworkError, PortEntry, PortRequest};
use crate::runtime::Runtime;

/// A DEL under way in the background: the attachment it releases, and `true` once the
/// plugins are through with it (its ports and address are free again).
pub(super) struct Leaving {
    att: Attachment,
    done: watch::Receiver<bool>,
}

impl<R: Runtime> Manager<R> {
    /// The network, when `c` is bridged and leda-cm runs the bridge.
    fn bridged(&self, c: &Container) -> Option<Arc<dyn Network>> {
        (c.host_config.network_mode == NetworkMode::Bridge)
            .then(|| self.net.clone())
            .flatten()
    }

    fn net_error(id: &str) -> impl Fn(NetworkError) -> ManagerError + '_ {
        move |source| ManagerError::Network {
            id: id.to_string(),
            source,
        }
    }

    /// What the other containers publish now, less those in `leaving` and less what a
    /// finished background DEL freed.
    fn published_by_others(&self, id: &str, leaving: &[String]) -> Vec<PortEntry> {
        let atts: Vec<(String, Attachment)> = lock(&self.table)
            .values()
            .map(|e| e.view())
            .filter(|o| o.container_id != id && !leaving.contains(&o.container_id))
            .filter_map(|o| Some((o.container_id, o.leda_cm?.network?)))
            .collect();
        atts.into_iter()
            .filter(|(id, att)| !self.released(id, att))
            .flat_map(|(_, a)| a.ports)
            .collect()
    }

    /// Whether the background DEL of `att` of container `id` has finished.
    fn released(&self, id: &str, att: &Attachment) -> bool {
        lock(&self.leaving)
            .get(id)
            .is_some_and(|l| l.att == *att && *l.done.borrow())
    }

    /// Waits for the background DELs of other containers (not in `leaving`, whose ports do
    /// not count) that hold a host port `requests` ask for: the port is free once they are
    /// through (and never reused before).
    async fn wait_for_ports(&self, id: &str, leaving: &[String], requests: &[PortRequest]) {
        let waits: Vec<watch::Receiver<bool>> = lock(&self.leaving)
            .iter()
            .filter(|(other, l)| *other != id && !leaving.contains(*other) && !*l.done.borrow())
            .filter(|(_, l)| {
                l.att
                    .ports
                    .iter()
                    .any(|p| requests.iter().any(|r| r.takes(p)))
            })
            .map(|(_, l)| l.done.clone())
            .collect();
        for mut done in waits {
            // A sender gone without `true` (shutdown): the port stays taken by the record.
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// At create: every host port of `c` must be free now (on the host and among the
    /// containers), so that a create that cannot run fails before anything exists. The
    /// ports of `leaving` (containers that are stopped before `c` starts: the ones an update
    /// replaces) do not count; the start checks again against every container.
    pub(super) async fn check_ports(
        &self,
        c: &Container,
        leaving: &[String],
    ) -> Result<(), ManagerError> {
        let Some(net) = self.bridged(c) else {
            return Ok(());
        };
        let requests = network::port_requests(&c.host_config.port_mappings);
        if requests.is_empty() {
            return Ok(());
        }
        self.wait_for_ports(&c.container_id, leaving, &requests)
            .await;
        net.choose_ports(
            &requests,
            &self.published_by_others(&c.container_id, leaving),
        )
        .map(|_| ())
        .map_err(Self::net_error(&c.container_id))
    }

    /// Between task create and start: `c` (task `pid`) joins the bridge, asking for the
    /// address it had; its record and `/etc/hosts` get the address.
    pub(super) async fn connect(&self, c: &mut Container, pid: u32) -> Result<(), ManagerError> {
        let Some(net) = self.bridged(c) else {
            return Ok(());
        };
        // A leftover attachment (a crash between start and exit handling) goes first.
        self.disconnect(c).await;
        let id = c.container_id.clone();
        let bridge = net.bridge().clone();
        let wanted: Option<Ipv4Addr> = c
            .network_settings
            .networks
            .get(&bridge.name)
            .and_then(|e| e.ip_address.parse().ok());
        let requests = network::port_requests(&c.host_config.port_mappings);
        self.wait_for_ports(&id, &[], &requests).await;
        let taken = self.published_by_others(&id, &[]);
        let att = {
            let net = net.clone();
            let id2 = id.clone();
            tokio::task::spawn_blocking(move || {
                let ports = net.choose_ports(&requests, &taken)?;
                net.attach(&id2, pid, wanted, &ports)
            })
            .await
            .map_err(|e| ManagerError::Io {
                id: id.clone(),
                message: format!("network set-up task: {e}"),
            })?
            .map_err(Self::net_error(&id))?
        };
        log::info!(
            "container {id} ({}) has address {} on {}{}",
            c.container_name,
            att.ip,
            bridge.name,
            ports_text(&att.ports)
        );
        c.network_settings.networks = BTreeMap::from([(
            bridge.name.clone(),
            EndpointSettings {
                id: att.host_veth.clone(),
                gateway: att.gateway.clone(),
                ip_address: att.ip.clone(),
                mac_address: att.mac.clone(),
                network_id: bridge.name.clone(),
            },
        )]);
        c.network_settings.sandbox_key = format!("/proc/{pid}/ns/net");
        c.extras_mut().network = Some(att.clone());
        if let Err(e) = self.write_hosts_files(&net, Some(c), None).await {
            self.disconnect(c).await;
            return Err(e);
        }
        Ok(())
    }

    /// Writes `/etc/hosts` of `joined` (it just got its address: an error is returned) and
    /// of every other container on the bridge whose extra hosts name a peer (an error is
    /// logged), with the extra hosts resolved against the bridge's allocations now (the
    /// addresses, before any record is committed) less `leaving`. The files are written in
    /// place (they are bind-mounted into the tasks), only when their content changes.
    async fn write_hosts_files(
        &self,
        net: &Arc<dyn Network>,
        joined: Option<&Container>,
        leaving: Option<&str>,
    ) -> Result<(), ManagerError> {
        let mut views: BTreeMap<String, Container> = lock(&self.table)
            .values()
            .map(|e| e.view())
            .map(|c| (c.container_id.clone(), c))
            .collect();
        if let Some(c) = joined {
            views.insert(c.container_id.clone(), c.clone());
        }
        let paths: BTreeMap<String, PathBuf> = views
            .keys()
            .map(|id| (id.clone(), self.records.dir_of(id).join("hosts")))
            .collect();
        let joined_id = joined.map(|c| c.container_id.clone());
        let leaving = leaving.map(str::to_string);
        let net = net.clone();
        let id = joined_id.clone().unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            // One writer at a time: each file's last write is from the latest allocations.
            static WRITES: Mutex<()> = Mutex::new(());
            let _one = lock(&WRITES);
            let on_bridge: Vec<(String, Ipv4Addr)> = net
                .allocations()
                .into_iter()
                .filter(|(_, id)| Some(id) != leaving.as_ref())
                .filter_map(|(ip, id)| Some((id, ip.parse().ok()?)))
                .collect();
            let peers: Vec<network::Peer> = on_bridge
                .iter()
                .filter_map(|(id, ip)| {
                    let c = views.get(id)?;
                    Some(network::Peer {
                        name: c.container_name.clone(),
                        host_name: c.host_name.clone(),
                        ip: *ip,
                    })
                })
                .collect();
            let gateway = net.bridge().gateway;
            let write = |c: &Container, own: Option<Ipv4Addr>| -> Result<(), String> {
                let (extra, unresolved) = network::resolve_extra_hosts(
                    &c.host_config.extra_hosts,
                    Some(gateway),
                    &|iface| net.iface_addr(iface),
                    &peers,
                );
                for (e, why) in unresolved {
                    log::warn!(
                        "container {}: extra host {e:?} cannot be resolved now ({why}); left out of /etc/hosts",
                        c.container_id
                    );
                }
                let text =
                    etc_files::hosts(&c.host_name, &c.domain_name, own.map(Into::into), &extra);
                let Some(path) = paths.get(&c.container_id) else {
                    return Ok(());
                };
                if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
                    return Ok(());
                }
                std::fs::write(path, text)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            };
            if let Some(c) = joined_id.as_ref().and_then(|id| views.get(id)) {
                let own = c
                    .leda_cm
                    .as_ref()
                    .and_then(|x| x.network.as_ref())
                    .and_then(|a| a.ip.parse().ok());
                write(c, own)?;
            }
            for (id, ip) in &on_bridge {
                if Some(id) == joined_id.as_ref() {
                    continue;
                }
                let Some(c) = views.get(id) else { continue };
                if !network::names_a_peer(&c.host_config.extra_hosts) {
                    continue;
                }
                match write(c, Some(*ip)) {
                    Ok(()) => log::debug!("container {id}: /etc/hosts follows its peers"),
                    Err(e) => log::warn!("container {id}: {e}"),
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("the /etc/hosts task: {e}"))
        .and_then(|r| r)
        .map_err(|message| ManagerError::Io { id, message })
    }

    /// Takes `c` off the bridge when it is on it (after its task ended, or before it goes).
    /// When a background DEL of that attachment is under way, waits for it instead.
    pub(super) async fn disconnect(&self, c: &mut Container) {
        let Some(net) = self.net.clone() else { return };
        let Some(att) = c.leda_cm.as_mut().and_then(|x| x.network.take()) else {
            return;
        };
        c.network_settings.sandbox_key.clear();
        let id = c.container_id.clone();
        let pending = lock(&self.leaving)
            .get(&id)
            .filter(|l| l.att == att)
            .map(|l| l.done.clone());
        if let Some(mut done) = pending {
            if done.wait_for(|d| *d).await.is_ok() {
                log::debug!("container {id}: its background DEL has run");
                return;
            }
        }
        let done = {
            let net = net.clone();
            tokio::task::spawn_blocking(move || net.detach(&id, &att)).await
        };
        match done {
            Ok(Ok(())) => log::debug!("container {} left the bridge", c.container_id),
            Ok(Err(e)) => log::warn!("taking container {} off the bridge: {e}", c.container_id),
            Err(e) => log::warn!("taking container {} off the bridge: {e}", c.container_id),
        }
        // The peers that named it drop it (as Kanto's refresh does).
        if let Err(e) = self
            .write_hosts_files(&net, None, Some(&c.container_id))
            .await
        {
            log::warn!("{e}");
        }
    }

    /// After its task ended by a stop: `c` leaves the bridge in the background. The
    /// attachment stays in `c` (so the record the caller commits names what is still to be
    /// released) and goes from the record once the DEL has run.
    pub(super) fn leave_later(self: &Arc<Self>, entry: &Arc<Entry>, c: &mut Container) {
        let Some(net) = self.net.clone() else { return };
        let Some(att) = c.leda_cm.as_ref().and_then(|x| x.network.clone()) else {
            return;
        };
        c.network_settings.sandbox_key.clear();
        let id = c.container_id.clone();
        let (tx, done) = watch::channel(false);
        lock(&self.leaving).insert(
            id.clone(),
            Leaving {
                att: att.clone(),
                done,
            },
        );
        let me = self.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            crate::fault::net_leave_stall().await;
            let r = {
                let (net, id, att) = (net.clone(), id.clone(), att.clone());
                tokio::task::spawn_blocking(move || net.detach(&id, &att)).await
            };
            match r {
                Ok(Ok(())) => log::debug!("container {id} left the bridge"),
                Ok(Err(e)) => log::warn!("taking container {id} off the bridge: {e}"),
                Err(e) => log::warn!("taking container {id} off the bridge: {e}"),
            }
            let _ = tx.send(true);
            me.left(&entry, &id, &att, &net).await;
        });
    }

    /// The end of a background DEL: the attachment goes from the record (unless the
    /// container has moved on: started again, removed), then the peers' `/etc/hosts`.
    async fn left(&self, entry: &Entry, id: &str, att: &Attachment, net: &Arc<dyn Network>) {
        {
            let mut c = entry.op.lock().await;
            let same = c.leda_cm.as_ref().and_then(|x| x.network.as_ref()) == Some(att);
            if same && !c.is_active() && !lock(&entry.control).removed {
                c.extras_mut().network = None;
                if let Err(e) = self.persist_quietly(entry, &c).await {
                    // The record still names the attachment: the next start releases it again.
                    log::warn!("{e}");
                }
            }
            let mut leaving = lock(&self.leaving);
            if leaving.get(id).is_some_and(|l| l.att == *att) {
                leaving.remove(id);
            }
        }
        if let Err(e) = self.write_hosts_files(net, None, Some(id)).await {
            log::warn!("{e}");
        }
    }

    /// An adopted running task keeps its place: its namespace is held again.
    pub(super) fn hold_network(&self, c: &Container, pid: u32) {
        if let (Some(net), true) = (
            self.net.as_ref(),
            c.leda_cm.as_ref().is_some_and(|x| x.network.is_some()),
        ) {
            net.hold(&c.container_id, pid);
        }
    }

    /// After live restore: addresses held for containers that are not running (or no longer
    /// exist) are given back, with their port mappings (after a crash or a reboot).
    pub(super) async fn release_stale(&self) {
        let Some(net) = self.net.clone() else { return };
        let views: BTreeMap<String, Container> = lock(&self.table)
            .values()
            .map(|e| e.view())
            .map(|c| (c.container_id.clone(), c))
            .collect();
        let stale: Vec<(String, String, Attachment)> = {
            let net = net.clone();
            tokio::task::spawn_blocking(move || net.allocations())
                .await
                .unwrap_or_default()
        }
        .into_iter()
        .filter_map(|(ip, id)| {
            let c = views.get(&id);
            let attached_and_live = c.is_some_and(|c| {
                c.is_active() && c.leda_cm.as_ref().is_some_and(|x| x.network.is_some())
            });
            if attached_and_live {
                return None;
            }
            let att = c
                .and_then(|c| c.leda_cm.as_ref()?.network.clone())
                .unwrap_or_default();
            Some((ip, id, att))
        })
        .collect();
        for (ip, id, att) in stale {
            log::info!("releasing address {ip} of container {id}: it is not running");
            let net = net.clone();
            let id2 = id.clone();
            match tokio::task::spawn_blocking(move || net.detach(&id2, &att)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => log::warn!("releasing address {ip} of container {id}: {e}"),
                Err(e) => log::warn!("releasing address {ip} of container {id}: {e}"),
            }
        }
    }
}

fn ports_text(ports: &[PortEntry]) -> String {
    if ports.is_empty() {
        return String::new();
    }
    let list: Vec<String> = ports
        .iter()
        .map(|p| {
            let ip = if p.host_ip.is_empty() {
                "*"
            } else {
                &p.host_ip
            };
            format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol)
        })
        .collect();
    format!(", publishing {}", list.join(" "))
}
