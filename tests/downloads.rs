//! Downloads over a bad link (issue 20): a multi-layer image of several MiB, pulled through a
//! fault-injecting proxy on loopback in front of the harness's registry. A link that breaks
//! again and again, and a daemon killed mid-download, still end in a pulled image, fetching
//! at most 1.2 times the image's size; containerd verifies every blob's digest at commit.

mod common;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::api::ApiDevice;
use common::cutproxy::{Cut, CutProxy};
use common::{run_ok, DaemonSetup, Harness};
use serde_json::{json, Value};

const LAYERS: usize = 3;
const LAYER_BYTES: usize = 2 << 20;

/// Deterministic bytes that do not compress (xorshift), so each layer's blob is ~2 MiB.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn seed(test: &str) -> u64 {
    test.bytes()
        .chain(std::process::id().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        })
}

/// Builds `<registry>/leda/downloads-<run>-<test>:v1`: the harness's busybox and three layers
/// of noise. Returns the repository path (without the registry) and the bytes a pull
/// fetches (manifest, config and layers).
fn push_big_image(h: &Harness, test: &str) -> (String, u64) {
    let dir = h.test_dir(&format!("{test}-image"));
    let out = h.lib(&format!(
        "harness_build_image '{}' big amd64",
        dir.display()
    ));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layout = dir.join("oci").display().to_string();
    let image = format!("{layout}:big");
    for i in 0..LAYERS {
        let bundle = dir.join(format!("bundle-{i}"));
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image", &image])
                .arg(&bundle),
            "umoci unpack",
        );
        fs::write(
            bundle.join(format!("rootfs/noise-{i}.bin")),
            // Layers of their own per test: tests must not meet in containerd's store.
            noise(seed(test) + i as u64, LAYER_BYTES),
        )
        .unwrap();
        run_ok(
            Command::new("umoci")
                .args(["repack", "--image", &image])
                .arg(&bundle),
            "umoci repack",
        );
        fs::remove_dir_all(&bundle).unwrap();
    }
    let repo = format!("leda/downloads-{}-{test}", h.run_id);
    run_ok(
        Command::new("skopeo").args([
            "copy",
            "-q",
            "--dest-tls-verify=false",
            &format!("oci:{image}"),
            &format!("docker://{}/{repo}:v1", h.registry),
        ]),
        "skopeo copy",
    );
    (repo, pulled_bytes(&dir.join("oci")))
}

/// Manifest + config + layers of the layout's only manifest.
fn pulled_bytes(layout: &Path) -> u64 {
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let m = &index["manifests"][0];
    let manifest: Value =
        serde_json::from_slice(&fs::read(blob(m["digest"].as_str().unwrap())).unwrap()).unwrap();
    let layers: u64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    assert_eq!(manifest["layers"].as_array().unwrap().len(), LAYERS + 1);
    m["size"].as_u64().unwrap() + manifest["config"]["size"].as_u64().unwrap() + layers
}

fn device(test: &str, proxy: &CutProxy, extra: Value) -> ApiDevice {
    let mut config = json!({
        "containers": {
            "insecure_registries": [proxy.host()],
            "download_retries": 40,
            "download_retry_delay": "20ms",
            "download_retry_delay_max": "100ms",
        },
    });
    common::merge(&mut config, extra);
    ApiDevice::start(test, config)
}

#[test]
fn a_link_that_breaks_again_and_again_still_pulls_fetching_little_more_than_the_image() {
    let h = Harness::get();
    let (repo, size) = push_big_image(&h, "cuts");
    // Cut every connection after 700 KiB: each 2 MiB layer needs several.
    let proxy = CutProxy::start(&h.registry, 700 * 1024);
    let d = device("downloads-cuts", &proxy, json!({}));
    let image = format!("{}/{repo}:v1", proxy.host());
    d.ok(&["create", "-n", "big", &image, "true"]);
    let (down, cuts) = (proxy.down(), proxy.cuts());
    println!(
        "image {size} B: fetched {down} B ({:.3} x) over {cuts} cut connections",
        down as f64 / size as f64
    );
    assert!(
        cuts >= 6,
        "only {cuts} cuts: the resume path was not exercised"
    );
    assert!(
        down as f64 <= 1.2 * size as f64,
        "fetched {down} B for an image of {size} B"
    );
    let log = d.stderr();
    assert!(log.contains("resuming at byte"), "{log}");
    // What was pulled is the image: it runs.
    d.ok(&["start", "-n", "big"]);
    d.ok(&["remove", "-f", "-n", "big"]);
}

#[test]
fn resets_on_a_link_slower_than_the_device_still_pull_fetching_little_more() {
    let h = Harness::get();
    let (repo, size) = push_big_image(&h, "resets");
    // 8 MiB/s, reset every 1 MiB: the client reads as fast as the link brings, so a reset
    // loses little of what was in flight.
    let proxy = CutProxy::with(&h.registry, 1 << 20, Cut::Reset, 8 << 20);
    let d = device("downloads-resets", &proxy, json!({}));
    let image = format!("{}/{repo}:v1", proxy.host());
    d.ok(&["create", "-n", "big", &image, "true"]);
    let (down, cuts) = (proxy.down(), proxy.cuts());
    println!(
        "image {size} B: fetched {down} B ({:.3} x) over {cuts} reset connections",
        down as f64 / size as f64
    );
    assert!(
        cuts >= 4,
        "only {cuts} resets: the resume path was not exercised"
    );
    assert!(
        down as f64 <= 1.2 * size as f64,
        "fetched {down} B for an image of {size} B"
    );
    d.ok(&["remove", "-f", "-n", "big"]);
}

#[test]
fn without_retries_a_broken_download_fails_the_pull_and_the_next_pull_resumes() {
    let h = Harness::get();
    let (repo, size) = push_big_image(&h, "noretry");
    let proxy = CutProxy::start(&h.registry, 1500 * 1024);
    // Kanto's behaviour by default: no retries.
    let d = device(
        "downloads-noretry",
        &proxy,
        json!({"containers": {"download_retries": 0}}),
    );
    let image = format!("{}/{repo}:v1", proxy.host());
    let err = d.fails(&["create", "-n", "big", &image, "true"]);
    assert!(err.contains("download of blob"), "{err}");
    assert!(d.ctr(&["containers", "ls", "-q"]).trim().is_empty());
    // The partial blob stays in containerd: the next pull (link mended) resumes from it.
    let partial = d.ctr(&["content", "active"]);
    assert!(partial.contains("leda-cm-sha256:"), "{partial}");
    proxy.set_cut_after(0);
    let before = proxy.down();
    d.ok(&["create", "-n", "big", &image, "true"]);
    let total = proxy.down();
    println!(
        "image {size} B: first pull {before} B, second {} B, together {:.3} x",
        total - before,
        total as f64 / size as f64
    );
    assert!(
        total as f64 <= 1.2 * size as f64,
        "fetched {total} B for {size} B"
    );
    assert!(d.stderr().contains("resuming at byte"));
    d.ok(&["remove", "-f", "-n", "big"]);
}

#[test]
fn a_kill_9_mid_download_resumes_after_the_restart() {
    let h = Harness::get();
    let (repo, size) = push_big_image(&h, "kill9");
    let proxy = CutProxy::start(&h.registry, 0);
    // Slow enough (1 MiB/s) to be killed in the middle.
    let mut d = device(
        "downloads-kill9",
        &proxy,
        json!({"containers": {"download_rate_limit": "1M"}}),
    );
    let image = format!("{}/{repo}:v1", proxy.host());
    let mut cli = Command::new(common::BIN)
        .arg0("kanto-cm")
        .arg("--host")
        .arg(&d.sock)
        .args(["create", "-n", "big", &image, "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once containerd holds part of a layer (its ingest is not empty).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let active = d.ctr(&["content", "active"]);
        let partial = active.lines().skip(1).any(|l| {
            l.starts_with("leda-cm-sha256:")
                && !l.split_whitespace().nth(1).is_some_and(|s| s == "0B")
        });
        if partial {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no partial download appeared: {active}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut daemon = d.daemon.take().unwrap();
    daemon.signal(libc::SIGKILL);
    daemon
        .wait_exit(Duration::from_secs(5))
        .expect("kill -9 did not end the daemon");
    let at_kill = proxy.down();
    assert!(at_kill < size, "the pull was through before the kill");
    let _ = cli.wait();

    let setup: &DaemonSetup = &d.setup;
    let second = setup.spawn_ready(2, Duration::from_secs(15));
    d.daemon = Some(second);
    d.ok(&["create", "-n", "big", &image, "true"]);
    let after = proxy.down() - at_kill;
    // Where the second daemon resumed: what containerd held of the cut blob.
    let log = d.stderr();
    let held: u64 = log
        .lines()
        .find_map(|l| {
            l.split("resuming at byte ")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("the second daemon did not resume: {log}"));
    println!(
        "image {size} B: {at_kill} B through the link before the kill (containerd held {held} B \
         of the blob in hand), {after} B after; together {:.3} x",
        (at_kill + after) as f64 / size as f64
    );
    // Not fetched again: the part containerd held (nor the blobs committed before the kill);
    // the manifest and config are fetched again (a few KiB).
    assert!(held > 0, "{log}");
    assert!(
        after + held <= size + 64 * 1024,
        "fetched {after} B after the restart for {size} B with {held} B held"
    );
    d.ok(&["start", "-n", "big"]);
    d.ok(&["remove", "-f", "-n", "big"]);
}
