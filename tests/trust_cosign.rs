//! cosign key-based image verification (`image_verifier_type: "cosign"`, issue 17 item 2),
//! black box: images signed by the real `cosign` (v2.6.5, built from the Go module proxy
//! into a cache under target/ when missing) and pushed to the harness registry; the real
//! daemon with the public key refuses what that key did not sign, through the CLI and the
//! update agent, and leaves nothing of a refused container behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::device::Device;
use common::{run_ok, Harness};
use serde_json::{json, Value};

const COSIGN: &str = "github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5";
const PASSWORD: &str = "leda-cm-test";

/// The cosign binary: built once per target dir (about 3 minutes on 2 cores), `None` when
/// there is no Go toolchain (the test then says so).
fn cosign() -> Option<&'static Path> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go");
        let bin = cache.join("bin/cosign");
        if bin.exists() {
            return Some(bin);
        }
        let go = Command::new("go").arg("version").output();
        if !go.is_ok_and(|o| o.status.success()) {
            return None;
        }
        let started = Instant::now();
        run_ok(
            Command::new("go")
                .args(["install", COSIGN])
                .env("GOBIN", cache.join("bin"))
                .env("GOMODCACHE", cache.join("mod"))
                .env("GOCACHE", cache.join("cache"))
                .env("GOPATH", cache.join("path"))
                .env("GOFLAGS", "-mod=mod -buildvcs=false")
                .env("GOTOOLCHAIN", "local"),
            "go install cosign",
        );
        eprintln!("built {COSIGN} in {:?}", started.elapsed());
        Some(bin)
    })
    .as_deref()
}

/// A key pair made by `cosign generate-key-pair` in `dir` (`NAME.key`, `NAME.pub`).
fn key_pair(cosign: &Path, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    run_ok(
        Command::new(cosign)
            .args(["generate-key-pair", "--output-key-prefix", name])
            .current_dir(dir)
            .env("COSIGN_PASSWORD", PASSWORD),
        "cosign generate-key-pair",
    );
    (
        dir.join(format!("{name}.key")),
        dir.join(format!("{name}.pub")),
    )
}

/// The images of one test: each its own busybox build (its own command, so its own
/// manifest digest) in its own repository of the open harness registry.
struct Images {
    h: Harness,
    dir: PathBuf,
    repo: String,
}

impl Images {
    fn new(h: &Harness, dir: &Path, test: &str) -> Images {
        let dir = dir.join("images");
        std::fs::create_dir_all(&dir).unwrap();
        Images {
            h: h.clone(),
            repo: format!("{}/trust-{}-{test}", h.registry, h.tag()),
            dir,
        }
    }

    /// Builds and pushes `name` (running `sleep`, with a marker telling builds apart);
    /// returns its tag reference and its manifest digest.
    fn push(&self, name: &str) -> (String, String) {
        let d = self.dir.display();
        self.h.lib(&format!(
            "harness_build_image '{d}' {name} amd64 /bin/sh -c 'echo {name}; exec sleep 600'"
        ));
        let reference = format!("{}/{name}:1.0", self.repo);
        self.h
            .lib(&format!("harness_push '{d}' {name} '{reference}'"));
        let digest = run_ok(
            Command::new("skopeo").args([
                "inspect",
                "--tls-verify=false",
                "--format",
                "{{.Digest}}",
                &format!("docker://{reference}"),
            ]),
            "skopeo inspect",
        );
        (reference, digest.trim().to_string())
    }

    fn by_digest(&self, reference: &str, digest: &str) -> String {
        let repo = reference.rsplit_once(':').unwrap().0;
        format!("{repo}@{digest}")
    }

    /// `cosign sign --key` without the transparency log (offline), over plain HTTP.
    fn sign(&self, cosign: &Path, key: &Path, reference: &str, digest: &str) {
        run_ok(
            Command::new(cosign)
                .arg("sign")
                .arg("--key")
                .arg(key)
                .args([
                    "--tlog-upload=false",
                    "--allow-http-registry",
                    "--allow-insecure-registry",
                    "--yes",
                    &self.by_digest(reference, digest),
                ])
                .env("COSIGN_PASSWORD", PASSWORD)
                .env("HOME", &self.dir),
            "cosign sign",
        );
    }

    /// Copies the signature tag of `from` onto `to`'s digest: a signature of other content.
    fn graft_signature(&self, from: &(String, String), to: &(String, String)) {
        let tag = |(reference, digest): &(String, String)| {
            let repo = reference.rsplit_once(':').unwrap().0.to_string();
            format!("docker://{repo}:{}.sig", digest.replace(':', "-"))
        };
        run_ok(
            Command::new("skopeo").args([
                "copy",
                "-q",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                &tag(from),
                &tag(to),
            ]),
            "skopeo copy of a signature",
        );
    }
}

fn cosign_device(test: &str, public_key: &Path) -> Device {
    Device::start(
        test,
        json!({
            "containers": {
                "image_verifier_type": "cosign",
                "image_verifier_config": {"key": public_key},
            },
            "update_agent": {"enable": true},
        }),
        &["containersupdate/#"],
    )
}

fn images_in(d: &Device) -> String {
    common::ctr(
        &d.setup.containerd_sock,
        &d.setup.namespace,
        &["images", "ls", "-q"],
    )
}

/// `kanto-cm create` that must be refused: exit 1, the reason on stderr, no container.
fn refused(d: &Device, name: &str, image: &str, why: &str) -> String {
    let out = common::kanto_cm(&d.api, &["create", "-n", name, image]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "create of {image} ({why}) was not refused: {}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("is not trusted"), "{why}: {stderr}");
    assert!(!d.containers().contains_key(name), "{why}: {stderr}");
    assert!(d.ctr_ids().is_empty(), "{why}: {:?}", d.ctr_ids());
    stderr
}

#[test]
fn only_images_signed_by_the_configured_key_are_created() {
    let Some(cosign) = cosign() else {
        eprintln!("SKIPPED: no `go` on PATH to build {COSIGN}");
        return;
    };
    let h = Harness::get();
    let dir = h.test_dir("cosign-keys");
    let (key, public) = key_pair(cosign, &dir, "device");
    let (other_key, _) = key_pair(cosign, &dir, "other");
    let images = Images::new(&h, &dir, "cli");
    let signed = images.push("signed");
    let unsigned = images.push("unsigned");
    let stranger = images.push("stranger");
    let grafted = images.push("grafted");
    let present = images.push("present");
    images.sign(cosign, &key, &signed.0, &signed.1);
    images.sign(cosign, &other_key, &stranger.0, &stranger.1);
    images.graft_signature(&signed, &grafted);

    let d = cosign_device("cosign-cli", &public);

    // Signed by the device's key: created and started. The first create asks the registry
    // for the signatures; the second verifies the kept ones.
    let t = Instant::now();
    let id = d.kcm_ok(&["create", "-n", "ok", &signed.0]);
    let first = t.elapsed();
    let id = id.trim().to_string();
    d.kcm_ok(&["start", "-n", "ok"]);
    d.assert_running(&["ok"]);
    assert!(d.stderr().contains("verified: signed by"), "{}", d.stderr());
    let t = Instant::now();
    d.kcm_ok(&["create", "-n", "ok-again", &signed.0]);
    let kept = t.elapsed();
    eprintln!("create of a cosign-signed image: {first:?} (signatures fetched), {kept:?} (kept signatures)");
    assert!(
        d.stderr().contains("(kept signatures, "),
        "the second create verifies the kept signatures: {}",
        d.stderr()
    );
    for line in d
        .stderr()
        .lines()
        .filter(|l| l.contains("verified: signed by"))
    {
        eprintln!("daemon: {line}");
    }
    d.kcm_ok(&["remove", "-n", "ok-again", "-f"]);
    d.kcm_ok(&["remove", "-n", "ok", "-f"]);
    assert!(!d.containers().contains_key("ok"), "{id}");

    // Refused: nothing created, and the image pulled for it is gone again.
    let before = images_in(&d);
    for (name, image, why) in [
        ("nosig", &unsigned.0, "no signature"),
        ("stranger", &stranger.0, "signed by another key"),
        ("grafted", &grafted.0, "a signature of other content"),
    ] {
        let err = refused(&d, name, image, why);
        eprintln!("{why}: {}", err.trim());
        assert_eq!(images_in(&d), before, "{why}: the refused image stays");
    }

    // Already in the content store (pulled by hand): refused all the same, and left as it
    // was (leda-cm did not pull it).
    common::ctr(
        &d.setup.containerd_sock,
        &d.setup.namespace,
        &["images", "pull", "--plain-http", &present.0],
    );
    assert!(images_in(&d).contains(&present.0), "{}", images_in(&d));
    refused(&d, "present", &present.0, "present, unsigned");
    assert!(images_in(&d).contains(&present.0), "{}", images_in(&d));

    // The daemon answered every refusal and still serves.
    d.kcm_ok(&["list"]);
}

#[test]
fn the_update_agent_reports_an_untrusted_image_and_creates_nothing_of_it() {
    let Some(cosign) = cosign() else {
        eprintln!("SKIPPED: no `go` on PATH to build {COSIGN}");
        return;
    };
    let h = Harness::get();
    let dir = h.test_dir("cosign-agent");
    let (key, public) = key_pair(cosign, &dir, "device");
    let images = Images::new(&h, &dir, "agent");
    let signed = images.push("signed");
    let unsigned = images.push("unsigned");
    images.sign(cosign, &key, &signed.0, &signed.1);
    let d = cosign_device("cosign-agent", &public);

    let component = |name: &str, image: &str| json!({"id": name, "version": "1.0", "config": [{"key": "image", "value": image}]});
    let send = |activity: &str, components: Value| {
        d.peer.publish(
            "containersupdate/desiredstate",
            &json!({"activityId": activity, "timestamp": 1, "payload": {
                "domains": [{"id": "containers", "config": [], "components": components}]}}),
        );
    };
    let wait = |activity: &str, statuses: &[&str]| -> Value {
        d.peer
            .wait(
                "containersupdate/desiredstatefeedback",
                Duration::from_secs(60),
                |j| {
                    j["activityId"] == activity
                        && statuses.iter().any(|s| j["payload"]["status"] == *s)
                },
            )
            .unwrap_or_else(|| panic!("no {statuses:?} for {activity}\n{}", d.stderr()))
            .json
            .unwrap()["payload"]
            .clone()
    };

    send(
        "signed-and-unsigned",
        json!([component("good", &signed.0), component("bad", &unsigned.0)]),
    );
    // The download phase names the refusal on the untrusted image's action...
    let failed = wait("signed-and-unsigned", &["DOWNLOAD_FAILURE"]);
    let action = |f: &Value, id: &str| -> Value {
        f["actions"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["component"]["id"] == id).cloned())
            .unwrap_or_else(|| panic!("no action for {id}: {f:#}"))
    };
    let bad = action(&failed, "containers:bad");
    assert_eq!(bad["status"], "DOWNLOAD_FAILURE", "{failed:#}");
    assert!(
        bad["message"].as_str().unwrap().contains("is not trusted"),
        "{failed:#}"
    );
    // ...and the end of the apply (rolled back) still says why.
    let end = wait(
        "signed-and-unsigned",
        &["COMPLETED", "INCOMPLETE", "FAILED"],
    );
    assert_eq!(end["status"], "INCOMPLETE", "{end:#}");
    let bad = action(&end, "containers:bad");
    assert!(
        bad["message"].as_str().unwrap().contains("is not trusted"),
        "{end:#}"
    );
    // The signed one is the only container there is.
    let all = d.containers();
    assert!(!all.contains_key("bad"), "{all:#?}");

    // A desired state of the signed image alone converges on the same daemon.
    send("signed-only", json!([component("good", &signed.0)]));
    let end = wait("signed-only", &["COMPLETED", "INCOMPLETE", "FAILED"]);
    assert_eq!(end["status"], "COMPLETED", "{end:#}\n{}", d.stderr());
    d.assert_running(&["good"]);
}

#[test]
fn a_cosign_key_that_cannot_be_read_stops_the_start() {
    let h = Harness::get();
    let mut setup = common::DaemonSetup::new(&h, "cosign-nokey");
    let missing = setup.dir.join("missing.pub");
    let garbage = setup.dir.join("garbage.pub");
    std::fs::write(
        &garbage,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .unwrap();
    for key in [missing, garbage] {
        setup.extra_config = json!({"containers": {
            "image_verifier_type": "cosign",
            "image_verifier_config": {"key": key},
        }});
        let mut daemon = setup.spawn(None);
        let status = daemon
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("still running with {}", key.display()));
        assert_eq!(status.code(), Some(78), "{}", daemon.stderr());
        assert!(
            daemon.stderr().contains("image_verifier_config"),
            "{}",
            daemon.stderr()
        );
        assert!(
            !setup.runtime_dir.join("cm.sock").exists(),
            "nothing served before the refusal"
        );
    }
}
