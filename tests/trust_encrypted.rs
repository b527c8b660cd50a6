//! Encrypted images (ocicrypt) end to end: images encrypted by skopeo (Debian's 1.9) with
//! the test keys of tests/fixtures/ocicrypt, pushed to the harness registry, pulled and run
//! by the daemon configured with `containers.image_dec_keys` / `image_dec_recipients`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::{Daemon, DaemonSetup, Harness, NotifyListener};

struct Device {
    h: Harness,
    setup: DaemonSetup,
    daemon: Option<Daemon>,
    sock: PathBuf,
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ocicrypt")
        .join(name)
        .display()
        .to_string()
}

impl Device {
    fn start(test: &str, keys: &[String], recipients: &[String]) -> Device {
        let h = Harness::get();
        let mut setup = DaemonSetup::new(&h, test);
        setup.extra_config = serde_json::json!({
            "containers": {"insecure_registries": [h.registry],
                "image_dec_keys": keys, "image_dec_recipients": recipients},
            "manager": {"default_ctrs_stop_timeout": 2},
        });
        let sock = setup.runtime_dir.join("cm.sock");
        let notify = NotifyListener::new(&setup.dir);
        let daemon = setup.spawn(Some(&notify));
        assert!(
            notify.wait_ready(Duration::from_secs(15)),
            "{}",
            daemon.stderr()
        );
        Device {
            h,
            setup,
            daemon: Some(daemon),
            sock,
        }
    }

    fn kcm(&self, args: &[&str]) -> Output {
        common::kanto_cm(&self.sock, args)
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.kcm(args);
        assert!(
            out.status.success(),
            "kanto-cm {args:?} failed ({:?}): {}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str]) -> String {
        let out = self.kcm(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "kanto-cm {args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn image(&self) -> String {
        format!("{}/{}", self.h.registry, self.h.image)
    }

    fn ctr(&self, args: &[&str]) -> String {
        common::ctr(&self.h.containerd_sock, &self.setup.namespace, args)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        drop(self.daemon.take());
        common::clean_namespace(&self.h.containerd_sock, &self.setup.namespace);
    }
}

/// Encrypts the harness image with skopeo for `key` (`jwe:pub.pem`, `pkcs7:cert.pem`),
/// pushes it as `leda/enc-<tag>-<run>:1`; returns its name and its encrypted layers' digests.
fn encrypted_image(h: &Harness, tag: &str, key: &str) -> (String, Vec<String>) {
    let name = format!("{}/leda/enc-{tag}-{}:1", h.registry, h.run_id);
    let out = std::process::Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(["--encryption-key", key])
        .arg(format!("docker://{}/{}", h.registry, h.image))
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "encrypting: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = std::process::Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    let layers: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["mediaType"].as_str().unwrap().ends_with("+encrypted"))
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect();
    assert!(!layers.is_empty(), "{manifest}");
    (name, layers)
}

fn runs(d: &Device, image: &str, name: &str) {
    d.ok(&["create", "-n", name, image, "sh", "-c", "sleep 600"]);
    d.ok(&["start", "-n", name]);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = d.ctr(&["tasks", "ls"]);
        if tasks.contains("RUNNING") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{tasks}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let got: serde_json::Value = serde_json::from_str(&d.ok(&["get", "-n", name])).unwrap();
    assert_eq!(got["state"]["status"], "Running", "{got}");
}

#[test]
fn a_jwe_rsa_encrypted_image_runs_with_its_key_and_is_refused_with_another() {
    let h = Harness::get();
    let (image, layers) = encrypted_image(&h, "rsa", &format!("jwe:{}", fixture("rsa.pub.pem")));
    {
        let d = Device::start("enc-rsa", &[fixture("rsa.pem")], &[]);
        runs(&d, &image, "secret");
        let content = d.ctr(&["content", "ls", "-q"]);
        assert!(layers.iter().all(|l| content.contains(l)), "{content}");
    }
    // Another key: refused before anything is fetched; no container, no content.
    let d = Device::start("enc-rsa-wrong", &[fixture("ec.pem")], &[]);
    let err = d.fails(&["create", "-n", "secret", &image, "true"]);
    assert!(
        err.contains("not authorized") && err.contains(&layers[0]),
        "{err}"
    );
    assert_eq!(d.ctr(&["containers", "ls", "-q"]), "");
    let content = d.ctr(&["content", "ls", "-q"]);
    assert!(!layers.iter().any(|l| content.contains(l)), "{content}");
    let ingests = d.ctr(&["content", "active"]);
    assert!(!ingests.contains("leda-cm-"), "{ingests}");
    assert!(d.ok(&["list", "-q"]).trim().is_empty());
}

#[test]
fn a_jwe_ec_encrypted_image_runs_with_its_key() {
    let h = Harness::get();
    let (image, _) = encrypted_image(&h, "ec", &format!("jwe:{}", fixture("ec.pub.pem")));
    let d = Device::start("enc-ec", &[fixture("ec.pem")], &[]);
    runs(&d, &image, "secret");
}

#[test]
fn a_pkcs7_encrypted_image_runs_with_its_key_and_certificate() {
    let h = Harness::get();
    let (image, _) = encrypted_image(&h, "pkcs7", &format!("pkcs7:{}", fixture("rsa.crt.pem")));
    let d = Device::start(
        "enc-pkcs7",
        &[fixture("rsa.pem")],
        &[format!("pkcs7:{}", fixture("rsa.crt.pem"))],
    );
    runs(&d, &image, "secret");
}

/// The image in the content store (pulled by ctr) and its plaintext layers unpacked (by a
/// container of the unencrypted image): with a key that does not unwrap its layers' keys,
/// it is still refused (imgcrypt's authorization check).
#[test]
fn an_unpacked_encrypted_image_is_refused_to_a_wrong_key() {
    let h = Harness::get();
    let (image, _) = encrypted_image(&h, "auth", &format!("jwe:{}", fixture("rsa.pub.pem")));
    let d = Device::start("enc-auth", &[fixture("ec.pem")], &[]);
    d.ok(&["create", "-n", "plain", &d.image(), "true"]);
    d.ctr(&["images", "pull", "--plain-http", &image]);
    let before = d.ctr(&["containers", "ls", "-q"]);
    let err = d.fails(&["create", "-n", "secret", &image, "true"]);
    assert!(err.contains("not authorized"), "{err}");
    assert_eq!(d.ctr(&["containers", "ls", "-q"]), before);
    assert_eq!(d.ok(&["list", "-q"]).lines().count(), 1);
}
