//! notation verification end to end: the daemon with `image_verifier_type: "notation"`
//! (Kanto's configuration: `configDir` with `trustpolicy.json` and `truststore/`) pulls from
//! the harness registry images signed by notation-go (tests/signers/notation, built once
//! under target/ with the local Go toolchain; its modules come through GOPROXY). Each case
//! has an image of its own (its own digest): signatures are per manifest.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{DaemonSetup, Harness};

const ZERO_DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/notation");

use common::run_ok;

/// The signer, built when missing or older than its source.
fn signer() -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/signers/notation");
    let go = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go");
    let bin = go.join("notation-signer");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let newest_src = ["main.go", "go.mod", "go.sum"]
        .iter()
        .filter_map(|f| mtime(&src.join(f)))
        .max();
    if mtime(&bin).is_none() || mtime(&bin) < newest_src {
        common::go_build(
            &src,
            ".",
            &bin,
            &go,
            "-mod=mod -buildvcs=false",
            "go build tests/signers/notation",
        );
    }
    bin
}

struct Env {
    d: common::api::ApiDevice,
    layout: PathBuf,
    signer: PathBuf,
    /// Repositories of this run: `<registry>/leda/notation-<run>-<pid>`.
    base: String,
}

impl Env {
    /// Pushes an image of its own (the harness's busybox with `CASE=<name>` in its
    /// environment) to `<base>/<repository>:<name>`; returns the reference.
    fn push(&self, repository: &str, name: &str) -> String {
        let reference = format!("{}/{repository}:{name}", self.base);
        let layout = self.layout.display().to_string();
        run_ok(
            Command::new("umoci").args([
                "config",
                "--image",
                &format!("{layout}:busybox"),
                "--tag",
                name,
                "--config.env",
                &format!("CASE={name}"),
            ]),
            "umoci config",
        );
        run_ok(
            Command::new("skopeo").args([
                "copy",
                "-q",
                "--dest-tls-verify=false",
                &format!("oci:{layout}:{name}"),
                &format!("docker://{reference}"),
            ]),
            "skopeo copy",
        );
        reference
    }

    /// Signs `reference` with the fixture key `leaf` (chain `<leaf>.chain.pem`).
    fn sign(&self, reference: &str, leaf: &str, extra: &[&str]) {
        run_ok(
            Command::new(&self.signer)
                .args(["-ref", reference])
                .arg("-key")
                .arg(Path::new(FIXTURES).join(format!("{leaf}.key")))
                .arg("-cert")
                .arg(Path::new(FIXTURES).join(format!("{leaf}.chain.pem")))
                .args(extra),
            "notation-signer",
        );
    }

    /// `kanto-cm create` must be refused as untrusted; nothing may be left behind.
    fn refused(&self, name: &str, reference: &str, reason: &str) {
        let before = self.d.ctr(&["containers", "ls", "-q"]);
        let out = self.d.kcm(&["create", "-n", name, reference, "true"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(
            err.contains("is not trusted") && err.contains(reason),
            "{name}: want {reason:?} in {err}"
        );
        assert_eq!(self.d.ctr(&["containers", "ls", "-q"]), before, "{name}");
        let images = self.d.ctr(&["images", "ls", "-q"]);
        assert!(
            !images.contains(reference),
            "{name}: pulled image left: {images}"
        );
        let listed = String::from_utf8_lossy(&self.d.kcm(&["list", "-q"]).stdout).into_owned();
        assert!(!listed.contains(name), "{name}: {listed}");
    }

    /// Creating through the gRPC API (tonic, as kanto-auto-deployer): the status code and
    /// message.
    fn grpc_create(&self, reference: &str) -> (tonic::Code, String) {
        use leda_cm::api::pb::services::containers::{
            self as svc, containers_client::ContainersClient,
        };
        use leda_cm::api::pb::types::containers as pb;
        let sock = self.d.sock.clone();
        let reference = reference.to_string();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let channel = common::api_channel(sock).await;
                let container = pb::Container {
                    name: "grpc".into(),
                    image: Some(pb::Image {
                        name: reference,
                        decrypt_config: None,
                    }),
                    ..Default::default()
                };
                match ContainersClient::new(channel)
                    .create(svc::CreateContainerRequest {
                        container: Some(container),
                    })
                    .await
                {
                    Ok(_) => (tonic::Code::Ok, String::new()),
                    Err(status) => (status.code(), status.message().to_string()),
                }
            })
    }

    /// `kanto-cm create` and `start` must succeed and the container run.
    fn runs(&self, name: &str, reference: &str) {
        let out = self
            .d
            .kcm(&["create", "-n", name, reference, "sleep", "600"]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let out = self.d.kcm(&["start", "-n", name]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tasks = common::ctr_tasks(&self.d.h.containerd_sock, &self.d.setup.namespace);
        assert_eq!(
            tasks.get(&id).map(String::as_str),
            Some("RUNNING"),
            "{name}: {tasks:?}"
        );
    }
}

/// One daemon, one trust policy: `*` strict; per-repository statements for the other levels.
#[test]
fn notation_signatures_decide_which_images_run() {
    if !common::have("go") {
        eprintln!("SKIPPED: no `go` on PATH (the notation-go signer of tests/signers/notation needs Go 1.26)");
        return;
    }
    let h = Harness::get();
    let signer = signer();
    let mut setup = DaemonSetup::new(&h, "notation");
    let base = format!(
        "{}/leda/notation-{}-{}",
        h.registry,
        h.tag(),
        std::process::id()
    );

    // notation's layout under configDir.
    let config_dir = setup.dir.join("notation");
    let store = config_dir.join("truststore/x509/ca/tests");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::copy(Path::new(FIXTURES).join("root.crt"), store.join("root.crt")).unwrap();
    let statement = |name: &str, scope: &str, level: &str, identity: &str| {
        serde_json::json!({
            "name": name,
            "registryScopes": [scope],
            "signatureVerification": {"level": level},
            "trustStores": ["ca:tests"],
            "trustedIdentities": [identity],
        })
    };
    let policy = serde_json::json!({
        "version": "1.0",
        "trustPolicies": [
            statement("default", "*", "strict", "*"),
            statement("audit", &format!("{base}/audit-unsigned"), "audit", "*"),
            statement("permissive", &format!("{base}/permissive-expired"), "permissive", "*"),
            statement("identity", &format!("{base}/identity"), "strict",
                "x509.subject: C=US, ST=WA, O=leda-cm tests, CN=signer rsa"),
            {"name": "skip", "registryScopes": [format!("{base}/skipped")],
                "signatureVerification": {"level": "skip"}},
        ],
    });
    std::fs::write(
        config_dir.join("trustpolicy.json"),
        serde_json::to_vec_pretty(&policy).unwrap(),
    )
    .unwrap();

    // The images, each its own digest; the layout is the harness's, copied.
    let layout = setup.dir.join("oci");
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(std::env::var("LEDA_TEST_OCI_LAYOUT").expect("LEDA_TEST_OCI_LAYOUT"))
            .arg(&layout),
        "copy the OCI layout",
    );

    setup.extra_config = serde_json::json!({
        "containers": {
            "insecure_registries": [h.registry],
            "image_verifier_type": "notation",
            "image_verifier_config": {"configDir": config_dir},
        },
        "manager": {"default_ctrs_stop_timeout": 2},
    });
    let env = Env {
        d: common::api::ApiDevice::spawn(h, setup),
        layout,
        signer,
        base,
    };

    // Signed by a certificate of the trust store: JWS (P-256) and COSE (RSA-PSS).
    let r = env.push("signed", "jws");
    env.sign(&r, "leaf-ec", &["-format", "jws"]);
    env.runs("signed-jws", &r);
    let r = env.push("signed", "cose");
    env.sign(&r, "leaf-rsa", &["-format", "cose"]);
    env.runs("signed-cose", &r);
    // Unsigned.
    let r = env.push("unsigned", "unsigned");
    env.refused("unsigned", &r, "no notation signature");
    // As Kanto's daemon answers a refused verification: code Unknown, the reason in the text.
    let (code, message) = env.grpc_create(&r);
    assert_eq!(code, tonic::Code::Unknown, "{message}");
    assert!(
        message.starts_with("image ")
            && message.contains(&format!("{r} is not trusted: "))
            && message.contains("no notation signature"),
        "{message}"
    );
    assert!(!env.d.ctr(&["images", "ls", "-q"]).contains(&r));
    // Signed under another root.
    let r = env.push("other-ca", "other-ca");
    env.sign(&r, "other-leaf", &[]);
    env.refused("other-ca", &r, "authenticity");
    // A signature that names another manifest.
    let r = env.push("mismatch", "mismatch");
    env.sign(&r, "leaf-ec", &["-claim-digest", ZERO_DIGEST]);
    env.refused(
        "mismatch",
        &r,
        "integrity: the signature is for sha256:0000",
    );
    // The identity statement trusts the RSA signer only.
    let r = env.push("identity", "rsa");
    env.sign(&r, "leaf-rsa", &[]);
    env.runs("identity-rsa", &r);
    let r = env.push("identity", "ec");
    env.sign(&r, "leaf-ec", &[]);
    env.refused("identity-ec", &r, "not a trusted identity");
    // Expired since (signed in 2020, when it was valid): strict refuses...
    let r = env.push("expired", "expired");
    env.sign(
        &r,
        "leaf-expired",
        &["-signing-time", "2020-06-01T00:00:00Z"],
    );
    env.refused("expired", &r, "authenticTimestamp");
    // ...permissive lets it through with a warning.
    let r = env.push("permissive-expired", "permissive-expired");
    env.sign(
        &r,
        "leaf-expired",
        &["-signing-time", "2020-06-01T00:00:00Z"],
    );
    env.runs("permissive-expired", &r);
    // audit lets an unsigned image through, logged.
    let r = env.push("audit-unsigned", "audit-unsigned");
    env.runs("audit-unsigned", &r);
    // skip verifies nothing.
    let r = env.push("skipped", "skipped");
    env.runs("skipped", &r);

    let log = env.d.stderr();
    // What let the permissive and audit images through is in the log, as warnings
    // (`<4>`: the daemon prefixes syslog priorities).
    let line = |needles: &[&str]| {
        log.lines()
            .any(|l| l.starts_with("<4>") && needles.iter().all(|n| l.contains(n)))
    };
    assert!(
        log.contains(
            "verified: signed by C=US, ST=WA, O=leda-cm tests, L=Seattle, OU=signing, CN=signer ec"
        ),
        "{log}"
    );
    assert!(
        line(&["permissive-expired", "used although", "authenticTimestamp"]),
        "{log}"
    );
    assert!(
        line(&[
            "audit-unsigned",
            "used although",
            "no notation signature found"
        ]),
        "{log}"
    );
}
