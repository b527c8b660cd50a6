//! A daemon under test with a mosquitto broker of its own and a peer on that broker that
//! plays the cloud side (the update agent's and the digital twin's tests).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::mqtt::{Broker, Peer};
use super::{Daemon, DaemonSetup, Harness};

pub struct Device {
    pub h: Harness,
    pub setup: DaemonSetup,
    pub daemon: Option<Daemon>,
    pub peer: Peer,
    pub api: PathBuf,
    starts: u32,
    // Dropped last: the daemon and the peer disconnect first.
    pub broker: Broker,
}

/// The harness registry's long-running service image.
pub fn service_image(h: &Harness) -> String {
    format!(
        "{}/{}",
        h.registry,
        std::env::var("LEDA_TEST_SERVICE_IMAGE")
            .expect("LEDA_TEST_SERVICE_IMAGE (tests/harness/run)")
    )
}

impl Device {
    /// Starts the broker, a peer subscribed to `listen` (before the daemon connects, so it
    /// hears everything), and the daemon with `config` merged over the base.
    pub fn start(test: &str, config: Value, listen: &[&str]) -> Device {
        let h = Harness::get();
        let mut setup = DaemonSetup::new(&h, test);
        let broker = Broker::start(&h, &setup.dir);
        setup.extra_config = json!({
            "containers": {"insecure_registries": [h.registry]},
            "manager": {"default_ctrs_stop_timeout": 2},
            "connection": {"broker_url": broker.url()},
        });
        super::merge(&mut setup.extra_config, config);
        let peer = Peer::connect(broker.port, listen);
        let api = setup.runtime_dir.join("cm.sock");
        let mut d = Device {
            h,
            setup,
            daemon: None,
            peer,
            api,
            starts: 0,
            broker,
        };
        d.spawn();
        d
    }

    pub fn spawn(&mut self) {
        self.starts += 1;
        self.daemon = Some(self.setup.spawn_ready(self.starts, Duration::from_secs(20)));
    }

    pub fn stderr(&self) -> String {
        self.daemon.as_ref().map(|d| d.stderr()).unwrap_or_default()
    }

    /// Containers by name as the daemon lists them: (ID, the task status `ctr` reports for
    /// it or "absent", the container's JSON).
    pub fn containers(&self) -> BTreeMap<String, (String, String, Value)> {
        let out = super::kanto_cm(&self.api, &["list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let tasks = super::ctr_tasks(&self.setup.containerd_sock, &self.setup.namespace);
        list.into_iter()
            .map(|c| {
                let id = c["container_id"].as_str().unwrap().to_string();
                let status = tasks.get(&id).cloned().unwrap_or_else(|| "absent".into());
                (
                    c["container_name"].as_str().unwrap().to_string(),
                    (id, status, c),
                )
            })
            .collect()
    }

    /// Container IDs in the namespace, whatever the daemon thinks.
    pub fn ctr_ids(&self) -> Vec<String> {
        super::ctr_tasks(&self.setup.containerd_sock, &self.setup.namespace)
            .into_keys()
            .collect()
    }

    /// Exactly `names` exist, each running per `ctr`, and nothing else is in containerd.
    pub fn assert_running(&self, names: &[&str]) -> BTreeMap<String, (String, String, Value)> {
        let all = self.containers();
        let got: Vec<&str> = all.keys().map(String::as_str).collect();
        let mut want = names.to_vec();
        want.sort();
        assert_eq!(got, want, "{all:#?}");
        for (name, (id, status, _)) in &all {
            assert_eq!(status, "RUNNING", "{name} ({id}) per ctr");
        }
        assert_eq!(
            self.ctr_ids().len(),
            names.len(),
            "containers in containerd: {:?}",
            self.ctr_ids()
        );
        all
    }

    /// A `kanto-cm` command that must succeed; its stdout.
    pub fn kcm_ok(&self, args: &[&str]) -> String {
        let out = super::kanto_cm(&self.api, args);
        assert!(
            out.status.success(),
            "kanto-cm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.daemon.take();
        super::clean_namespace(&self.setup.containerd_sock, &self.setup.namespace);
    }
}
