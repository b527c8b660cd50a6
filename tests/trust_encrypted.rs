//! Encrypted images (ocicrypt) end to end: the harness image encrypted by skopeo (Debian's
//! 1.9) for keys that openssl makes in the test's own directory, pushed to the harness
//! registry, pulled and run by the daemon configured with `containers.image_dec_keys` /
//! `image_dec_recipients`; refused, with nothing left behind, without the key.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::Harness;

const PASSWORD: &str = "enc-test-password";

type Device = common::api::ApiDevice;

fn start(test: &str, keys: &[String], recipients: &[String]) -> Device {
    Device::start(
        test,
        serde_json::json!({"containers": {
            "image_dec_keys": keys, "image_dec_recipients": recipients}}),
    )
}

impl Device {
    /// After a refused create of `image`: no container (daemon's list and containerd's), no
    /// image record, none of its encrypted layers in the content store, no ingest left, and
    /// no snapshot beyond `snapshots_before`.
    fn nothing_left(&self, image: &str, layers: &[String], snapshots_before: &str) {
        assert!(self.ok(&["list", "-q"]).trim().is_empty());
        assert_eq!(self.ctr(&["containers", "ls", "-q"]), "");
        let images = self.ctr(&["images", "ls", "-q"]);
        assert!(!images.contains(image), "{images}");
        let content = self.ctr(&["content", "ls", "-q"]);
        assert!(!layers.iter().any(|l| content.contains(l)), "{content}");
        let ingests = self.ctr(&["content", "active"]);
        assert!(ingests.lines().count() <= 1, "ingests left: {ingests}");
        assert_eq!(self.ctr(&["snapshots", "ls"]), snapshots_before);
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Test keys made by openssl in a fresh directory of the test.
struct Keys {
    dir: PathBuf,
}

impl Keys {
    fn new(h: &Harness, test: &str) -> Keys {
        let dir = h.test_dir(&format!("keys-{test}"));
        let openssl = |args: &[&str]| run(Command::new("openssl").current_dir(&dir).args(args));
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "rsa.pem",
        ]);
        openssl(&["pkey", "-in", "rsa.pem", "-pubout", "-out", "rsa.pub.pem"]);
        openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "ec.pem",
        ]);
        openssl(&["pkey", "-in", "ec.pem", "-pubout", "-out", "ec.pub.pem"]);
        // The RSA key again, password-protected the way ocicrypt reads (legacy PEM).
        openssl(&[
            "pkey",
            "-in",
            "rsa.pem",
            "-traditional",
            "-aes256",
            "-passout",
            &format!("pass:{PASSWORD}"),
            "-out",
            "rsa-enc.pem",
        ]);
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "rsa.pem",
            "-subj",
            "/CN=leda-cm test",
            "-days",
            "2",
            "-out",
            "rsa.crt.pem",
        ]);
        Keys { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

/// Encrypts the harness image with skopeo for `key` (`jwe:pub.pem`, `pkcs7:cert.pem`),
/// pushes it as `leda/enc-<tag>-<run>:1`; returns its name and its encrypted layers' digests.
fn encrypted_image(h: &Harness, tag: &str, key: &str) -> (String, Vec<String>) {
    let name = format!("{}/leda/enc-{tag}-{}:1", h.registry, h.run_id);
    run(Command::new("skopeo")
        .args([
            "copy",
            "-q",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ])
        .args(["--encryption-key", key])
        .arg(format!("docker://{}/{}", h.registry, h.image))
        .arg(format!("docker://{name}")));
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}")));
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

/// Creates (pulling the image) and starts a container of `image`, waits until its task
/// runs; returns how long the create (pull, decrypt, unpack, create) took.
fn runs(d: &Device, image: &str, name: &str) -> Duration {
    let t = Instant::now();
    d.ok(&["create", "-n", name, image, "sh", "-c", "sleep 600"]);
    let create = t.elapsed();
    d.ok(&["start", "-n", name]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let tasks = d.ctr(&["tasks", "ls"]);
        if tasks.contains("RUNNING") {
            break;
        }
        assert!(Instant::now() < deadline, "{tasks}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let got: serde_json::Value = serde_json::from_str(&d.ok(&["get", "-n", name])).unwrap();
    assert_eq!(got["state"]["running"], true, "{got}");
    create
}

/// (a) JWE with an RSA key: runs with the key (and the decrypted content is kept beside the
/// encrypted layers); with another key the create is refused and nothing is left.
#[test]
fn a_jwe_rsa_encrypted_image_runs_with_its_key_and_is_refused_with_another() {
    let h = Harness::get();
    let k = Keys::new(&h, "rsa");
    let (image, layers) = encrypted_image(&h, "rsa", &format!("jwe:{}", k.path("rsa.pub.pem")));
    {
        let d = start("enc-rsa", &[k.path("rsa.pem")], &[]);
        let encrypted = runs(&d, &image, "secret");
        let content = d.ctr(&["content", "ls", "-q"]);
        assert!(layers.iter().all(|l| content.contains(l)), "{content}");
        // The same image unencrypted, in a fresh namespace too (pulled anew): the figure to
        // compare with.
        let p = start("enc-rsa-plain", &[], &[]);
        let plain = runs(&p, &p.image(), "plain");
        eprintln!(
            "timing: pull+create encrypted (JWE RSA-OAEP) {} ms, plain {} ms",
            encrypted.as_millis(),
            plain.as_millis()
        );
        assert!(
            !d.stderr().contains("-----BEGIN"),
            "key material in the log"
        );
    }
    // Other keys, one of each type (an RSA key that does not unwrap it, an EC key).
    let other = Keys::new(&h, "rsa-other");
    let d = start(
        "enc-rsa-wrong",
        &[other.path("rsa.pem"), other.path("ec.pem")],
        &[],
    );
    let snapshots = d.ctr(&["snapshots", "ls"]);
    let err = d.fails(&["create", "-n", "secret", &image, "true"]);
    eprintln!("refused: {}", err.trim());
    assert!(
        err.contains("not authorized") && err.contains(&layers[0]),
        "{err}"
    );
    d.nothing_left(&image, &layers, &snapshots);
}

/// (b) JWE with an EC (P-256, ECDH-ES+A256KW) key.
#[test]
fn a_jwe_ec_encrypted_image_runs_with_its_key() {
    let h = Harness::get();
    let k = Keys::new(&h, "ec");
    let (image, _) = encrypted_image(&h, "ec", &format!("jwe:{}", k.path("ec.pub.pem")));
    let d = start("enc-ec", &[k.path("ec.pem")], &[]);
    runs(&d, &image, "secret");
}

/// PKCS7: the private key plus the certificate as a recipient.
#[test]
fn a_pkcs7_encrypted_image_runs_with_its_key_and_certificate() {
    let h = Harness::get();
    let k = Keys::new(&h, "pkcs7");
    let (image, _) = encrypted_image(&h, "pkcs7", &format!("pkcs7:{}", k.path("rsa.crt.pem")));
    let d = start(
        "enc-pkcs7",
        &[k.path("rsa.pem")],
        &[format!("pkcs7:{}", k.path("rsa.crt.pem"))],
    );
    runs(&d, &image, "secret");
}

/// (e) A password-protected key, `path:password`; the password is never logged.
#[test]
fn a_password_protected_key_decrypts() {
    let h = Harness::get();
    let k = Keys::new(&h, "pass");
    let (image, _) = encrypted_image(&h, "pass", &format!("jwe:{}", k.path("rsa.pub.pem")));
    let d = start(
        "enc-pass",
        &[format!("{}:{PASSWORD}", k.path("rsa-enc.pem"))],
        &[],
    );
    runs(&d, &image, "secret");
    let log = d.stderr();
    assert!(!log.contains(PASSWORD), "the password in the log:\n{log}");
}

/// (c) No key configured at all: a clear refusal, nothing pulled, unpacked or created.
#[test]
fn an_encrypted_image_is_refused_without_keys_and_leaves_nothing() {
    let h = Harness::get();
    let k = Keys::new(&h, "nokey");
    let (image, layers) = encrypted_image(&h, "nokey", &format!("jwe:{}", k.path("rsa.pub.pem")));
    let d = start("enc-nokey", &[], &[]);
    let snapshots = d.ctr(&["snapshots", "ls"]);
    let err = d.fails(&["create", "-n", "secret", &image, "true"]);
    eprintln!("refused: {}", err.trim());
    assert!(
        err.contains("encrypted") && err.contains("image_dec_keys"),
        "{err}"
    );
    d.nothing_left(&image, &layers, &snapshots);
    // The daemon is still fine: a plain image runs.
    runs(&d, &d.image(), "plain");
}

/// (d) Authorization (imgcrypt's rule): the plaintext image with the same layers created
/// (so its layers are unpacked), the encrypted image's content pulled by ctr: without a key
/// that unwraps its layers' keys, the encrypted image is still refused.
#[test]
fn an_unpacked_encrypted_image_is_refused_without_its_key() {
    let h = Harness::get();
    let k = Keys::new(&h, "auth");
    let (image, _) = encrypted_image(&h, "auth", &format!("jwe:{}", k.path("rsa.pub.pem")));
    for (test, keys) in [
        ("enc-auth-wrong", vec![k.path("ec.pem")]),
        ("enc-auth-none", vec![]),
    ] {
        let d = start(test, &keys, &[]);
        d.ok(&["create", "-n", "plain", &d.image(), "true"]);
        d.ctr(&["content", "fetch", "--plain-http", &image]);
        let images = d.ctr(&["images", "ls", "-q"]);
        assert!(images.contains(&image), "ctr did not fetch it: {images}");
        let before = d.ctr(&["containers", "ls", "-q"]);
        let err = d.fails(&["create", "-n", "secret", &image, "true"]);
        eprintln!("{test} refused: {}", err.trim());
        assert!(
            err.contains("not authorized") || err.contains("image_dec_keys"),
            "{err}"
        );
        assert_eq!(d.ctr(&["containers", "ls", "-q"]), before);
        assert_eq!(d.ok(&["list", "-q"]).lines().count(), 1);
    }
}
