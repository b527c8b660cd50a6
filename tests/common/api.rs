//! A daemon under test reached through its local API only (no broker): the CLI's, the gRPC
//! clients' and the image-trust tests. Its containerd namespace is cleaned when it drops.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{json, Value};

use super::{Daemon, DaemonSetup, Harness, NotifyListener};

pub struct ApiDevice {
    pub h: Harness,
    pub setup: DaemonSetup,
    pub daemon: Option<Daemon>,
    /// The API socket, an absolute path as on every device.
    pub sock: PathBuf,
    /// The CLI that `kcm` runs: leda-cm as `kanto-cm` when None, else that binary (Kanto's).
    pub cli: Option<PathBuf>,
}

impl ApiDevice {
    /// Starts the daemon with `config` merged over the base (the harness registry as an
    /// insecure one, a 2 s stop timeout) and waits until it says READY.
    pub fn start(test: &str, config: Value) -> ApiDevice {
        let h = Harness::get();
        let mut setup = DaemonSetup::new(&h, test);
        setup.extra_config = json!({
            "containers": {"insecure_registries": [h.registry]},
            "manager": {"default_ctrs_stop_timeout": 2},
        });
        super::merge(&mut setup.extra_config, config);
        ApiDevice::spawn(h, setup)
    }

    /// Starts the daemon of a setup the test prepared itself (files in its dir, its
    /// configuration complete) and waits until it says READY.
    pub fn spawn(h: Harness, setup: DaemonSetup) -> ApiDevice {
        let sock = setup.runtime_dir.join("cm.sock");
        assert!(sock.is_absolute(), "{}", sock.display());
        let notify = NotifyListener::new(&setup.dir);
        let daemon = setup.spawn(Some(&notify));
        assert!(
            notify.wait_ready(Duration::from_secs(15)),
            "{}",
            daemon.stderr()
        );
        ApiDevice {
            h,
            setup,
            daemon: Some(daemon),
            sock,
            cli: None,
        }
    }

    /// Runs the CLI against this daemon.
    pub fn kcm(&self, args: &[&str]) -> Output {
        match &self.cli {
            None => super::kanto_cm(&self.sock, args),
            Some(bin) => Command::new(bin)
                .arg("--host")
                .arg(&self.sock)
                .args(args)
                .output()
                .unwrap_or_else(|e| panic!("run {}: {e}", bin.display())),
        }
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kcm(args);
        assert!(
            out.status.success(),
            "kanto-cm {args:?} failed ({:?}): {}{}\ndaemon: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.stderr()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail as Kanto's CLI fails (exit code 1); returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kcm(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "kanto-cm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// The harness registry's test image.
    pub fn image(&self) -> String {
        format!("{}/{}", self.h.registry, self.h.image)
    }

    /// `ctr` in this daemon's containerd namespace.
    pub fn ctr(&self, args: &[&str]) -> String {
        super::ctr(&self.h.containerd_sock, &self.setup.namespace, args)
    }

    pub fn stderr(&self) -> String {
        self.daemon.as_ref().map(|d| d.stderr()).unwrap_or_default()
    }
}

impl Drop for ApiDevice {
    fn drop(&mut self) {
        drop(self.daemon.take());
        super::clean_namespace(&self.h.containerd_sock, &self.setup.namespace);
    }
}
