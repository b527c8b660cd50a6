//! The registry client against real registries: the harness's open and basic-auth
//! docker-registry, and, started here, a multi-arch image and a registry that demands a TLS
//! client certificate. Bearer tokens are covered by the unit tests of `registry::auth` only:
//! docker-registry's token auth needs a token server that is not available here.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use leda_cm::config::ContainersConfig;
use leda_cm::registry::{
    host_platform, select_manifest, sha256_digest, DigestVerifier, ManifestKind, Reference,
    RegistryClient, RegistryError, Resolved, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST,
};
use oci_spec::image::{Arch, Descriptor, Digest, ImageConfiguration, ImageManifest, Os, Platform};
use serde_json::json;

use common::Harness;

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// A configuration as Kanto's config.json would hold it.
fn config(containers: serde_json::Value) -> ContainersConfig {
    serde_json::from_value(containers).unwrap()
}

fn client(containers: serde_json::Value) -> RegistryClient {
    RegistryClient::new(&config(containers)).unwrap()
}

fn reference(registry: &str, image: &str) -> Reference {
    Reference::parse(&format!("{registry}/{image}")).unwrap()
}

/// The digest the OCI layout at `layout` gives its image `tag`.
fn layout_digest(layout: &Path, tag: &str) -> Descriptor {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no {tag} in {}", layout.display()))
        .clone();
    serde_json::from_value(entry).unwrap()
}

struct Pulled {
    resolved: Resolved,
    manifest: ImageManifest,
    config: ImageConfiguration,
    bytes: u64,
}

/// What the container manager will do: resolve, manifest (through the index), config, and
/// every blob streamed through a DigestVerifier.
async fn pull(client: &RegistryClient, r: &Reference) -> Result<Pulled, RegistryError> {
    let resolved = client.resolve(r).await?;
    let mut manifest = client.fetch_manifest(r, resolved.digest.as_ref()).await?;
    assert_eq!(manifest.digest, resolved.digest);
    assert_eq!(manifest.media_type, resolved.media_type);
    assert_eq!(manifest.bytes.len() as u64, resolved.size);
    if manifest.kind() == ManifestKind::Index {
        let index = manifest.index()?;
        let chosen = select_manifest(r, &index, &host_platform())?;
        manifest = client.fetch_manifest(r, chosen.digest().as_ref()).await?;
    }
    let image = manifest.image()?;
    let config = client.fetch_blob_bytes(r, image.config()).await?;
    let config: ImageConfiguration = serde_json::from_slice(&config).unwrap();
    let mut bytes = 0;
    for d in std::iter::once(image.config()).chain(image.layers()) {
        let mut verifier = DigestVerifier::for_descriptor(d)?;
        let mut stream = client.fetch_blob(r, d).await?;
        while let Some(chunk) = stream.next().await {
            verifier.update(&chunk?)?;
        }
        bytes += verifier.bytes();
        verifier.finish()?;
    }
    Ok(Pulled {
        resolved,
        manifest: image,
        config,
        bytes,
    })
}

fn assert_busybox(p: &Pulled) {
    assert!(!p.manifest.layers().is_empty());
    let sizes: u64 =
        p.manifest.layers().iter().map(|l| l.size()).sum::<u64>() + p.manifest.config().size();
    assert_eq!(p.bytes, sizes);
    assert!(
        p.bytes > 500_000,
        "busybox is bigger than {} bytes",
        p.bytes
    );
    assert_eq!(p.config.os(), &Os::Linux);
    assert_eq!(p.config.architecture(), &Arch::Amd64);
    let cmd = p.config.config().as_ref().and_then(|c| c.cmd().clone());
    assert_eq!(cmd, Some(vec!["/bin/sh".to_string()]));
}

fn layout() -> PathBuf {
    std::env::var("LEDA_TEST_OCI_LAYOUT").unwrap().into()
}

#[test]
fn pulls_an_image_from_the_open_registry() {
    let h = Harness::get();
    // "127.0.0.1" without a port covers the registry's port.
    let c = client(json!({"insecure_registries": ["127.0.0.1"]}));
    let r = reference(&h.registry, &h.image);
    let p = block_on(pull(&c, &r)).unwrap();
    assert_busybox(&p);
    assert_eq!(p.resolved.media_type, OCI_MANIFEST);
    // The registry serves the manifest the image was built with, byte for byte.
    assert_eq!(
        p.resolved.digest,
        *layout_digest(&layout(), "busybox").digest()
    );

    // Fetched by tag the digest is computed; by digest it is checked.
    let by_tag = block_on(c.fetch_manifest(&r, "1.0")).unwrap();
    assert_eq!(by_tag.digest, p.resolved.digest);
    assert_eq!(sha256_digest(&by_tag.bytes), p.resolved.digest.to_string());
    let pinned = r.with_digest(p.resolved.digest.clone());
    assert_eq!(block_on(c.resolve(&pinned)).unwrap(), p.resolved);
}

#[test]
fn pulls_a_docker_schema2_image() {
    let h = Harness::get();
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--format", "v2s2", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:busybox", layout().display()))
        .arg(format!("docker://{}/leda/busybox-v2s2:1.0", h.registry))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = client(json!({"insecure_registries": [h.registry]}));
    let p = block_on(pull(&c, &reference(&h.registry, "leda/busybox-v2s2:1.0"))).unwrap();
    assert_eq!(p.resolved.media_type, DOCKER_MANIFEST);
    assert_busybox(&p);
}

fn auth_config(h: &Harness, password: Option<&str>) -> serde_json::Value {
    let mut c = json!({"insecure_registries": [h.registry_auth]});
    if let Some(password) = password {
        c["registry_configurations"] = json!({
            h.registry_auth.clone(): {
                "credentials": {"user_id": h.registry_user, "password": password}
            }
        });
    }
    c
}

#[test]
fn pulls_through_basic_auth_with_configured_credentials() {
    let h = Harness::get();
    let c = client(auth_config(&h, Some(&h.registry_pass)));
    let r = reference(&h.registry_auth, &h.image);
    let p = block_on(pull(&c, &r)).unwrap();
    assert_busybox(&p);
    // The same image as in the open registry.
    let open = client(json!({"insecure_registries": [h.registry]}));
    let open_digest = block_on(open.resolve(&reference(&h.registry, &h.image))).unwrap();
    assert_eq!(p.resolved.digest, open_digest.digest);
}

#[test]
fn wrong_password_is_refused_naming_the_registry() {
    let h = Harness::get();
    let wrong = format!("{}-wrong", h.registry_pass);
    let c = client(auth_config(&h, Some(&wrong)));
    let r = reference(&h.registry_auth, &h.image);
    let err = block_on(c.resolve(&r)).unwrap_err();
    let RegistryError::Unauthorized {
        registry,
        repository,
        credentials_configured,
        ..
    } = &err
    else {
        panic!("not Unauthorized: {err:?}");
    };
    assert_eq!(registry, &h.registry_auth);
    assert_eq!(repository, "leda/busybox");
    assert!(credentials_configured);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "registry {} refused access to leda/busybox: UNAUTHORIZED: ",
            h.registry_auth
        )),
        "{msg}"
    );
    assert!(
        msg.ends_with("the configured credentials were not accepted"),
        "{msg}"
    );
    assert!(!msg.contains(&wrong) && !format!("{err:?}").contains(&wrong));
}

#[test]
fn no_credentials_is_refused() {
    let h = Harness::get();
    let c = client(auth_config(&h, None));
    let r = reference(&h.registry_auth, &h.image);
    for err in [
        block_on(c.resolve(&r)).unwrap_err(),
        block_on(c.fetch_manifest(&r, "1.0")).unwrap_err(),
    ] {
        assert!(
            matches!(&err, RegistryError::Unauthorized { credentials_configured: false, registry, .. }
                if *registry == h.registry_auth),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .ends_with("no credentials are configured for it"),
            "{err}"
        );
    }
    // Blobs are guarded too.
    let blob = layout_digest(&layout(), "busybox");
    let err = block_on(c.fetch_blob(&r, &blob)).err().unwrap();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err:?}");
}

#[test]
fn unknown_repository_tag_or_blob_is_not_found() {
    let h = Harness::get();
    let c = client(json!({"insecure_registries": ["127.0.0.1"]}));
    for image in ["leda/nope:1.0", "leda/busybox:nope"] {
        let r = reference(&h.registry, image);
        let err = block_on(c.resolve(&r)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "image {}/{image} not found in registry {}",
                h.registry, h.registry
            )
        );
        let err = block_on(c.fetch_manifest(&r, r.tag_or_digest())).unwrap_err();
        assert!(matches!(err, RegistryError::NotFound { .. }), "{err:?}");
    }
    let r = reference(&h.registry, &h.image);
    let missing = Descriptor::new(
        OCI_MANIFEST.into(),
        3,
        sha256_digest(b"nothing").parse::<Digest>().unwrap(),
    );
    let err = block_on(c.fetch_blob(&r, &missing)).err().unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "blob {} of image {r} not found in registry {}",
            missing.digest(),
            h.registry
        )
    );
}

#[test]
fn closed_port_is_unreachable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let registry = format!("127.0.0.1:{port}");
    let c = client(json!({"insecure_registries": [registry]}));
    let started = Instant::now();
    let err = block_on(c.resolve(&reference(&registry, "leda/busybox:1.0"))).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("registry {registry} unreachable: ")),
        "{msg}"
    );
    assert!(msg.contains("Connection refused"), "{msg}");
}

#[test]
fn https_to_a_plain_http_registry_is_a_tls_error() {
    let h = Harness::get();
    // Not listed as insecure: spoken to over TLS, which the registry does not speak.
    let c = client(json!({"insecure_registries": []}));
    let err = block_on(c.resolve(&reference(&h.registry, &h.image))).unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with(&format!("tls error with registry {}: ", h.registry)),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("list it in containers.insecure_registries"),
        "{err}"
    );
}

#[test]
fn corrupted_digests_and_sizes_are_caught() {
    let h = Harness::get();
    let c = client(json!({"insecure_registries": ["127.0.0.1"]}));
    let r = reference(&h.registry, &h.image);
    let manifest = block_on(c.fetch_manifest(&r, "1.0"))
        .unwrap()
        .image()
        .unwrap();
    let layer = manifest.layers()[0].clone();
    let actual = layer.digest().to_string();
    // The expected digest with its last hex digit changed.
    let mut corrupted = actual.clone();
    let last = corrupted.pop().unwrap();
    corrupted.push(if last == '0' { '1' } else { '0' });
    let corrupted: Digest = corrupted.parse().unwrap();

    let mut verifier = DigestVerifier::new(&corrupted, layer.size()).unwrap();
    block_on(async {
        let mut stream = c.fetch_blob(&r, &layer).await.unwrap();
        while let Some(chunk) = stream.next().await {
            verifier.update(&chunk.unwrap()).unwrap();
        }
    });
    assert_eq!(verifier.bytes(), layer.size());
    let err = verifier.finish().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("digest mismatch for {corrupted}: got {actual}")
    );

    // A descriptor that understates the size: more bytes arrive than it allows.
    let mut short = manifest.config().clone();
    short.set_size(short.size() - 1);
    let err = block_on(c.fetch_blob_bytes(&r, &short)).unwrap_err();
    assert!(matches!(err, RegistryError::SizeMismatch { .. }), "{err:?}");
}

/// Runs a bash script, failing the test with its output when it fails.
fn sh(script: &str) {
    let out = Command::new("bash").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn multi_arch_index_selects_the_host_or_the_asked_platform() {
    let h = Harness::get();
    let dir = h.test_dir("registry-multiarch");
    let images = dir.display();
    h.lib(&format!(
        "harness_build_image '{images}' img-amd64 amd64 /bin/sh && \
         harness_build_image '{images}' img-arm64 arm64 /bin/sh"
    ));
    let oci = dir.join("oci");
    let amd64 = layout_digest(&oci, "img-amd64");
    let arm64 = layout_digest(&oci, "img-arm64");
    let entry = |d: &Descriptor, platform: serde_json::Value, annotations: serde_json::Value| {
        json!({"mediaType": d.media_type(), "digest": d.digest(), "size": d.size(),
               "platform": platform, "annotations": annotations})
    };
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            entry(&amd64, json!({"os": "unknown", "architecture": "unknown"}),
                json!({"vnd.docker.reference.type": "attestation-manifest",
                       "vnd.docker.reference.digest": amd64.digest()})),
            entry(&arm64, json!({"os": "linux", "architecture": "arm64", "variant": "v8"}), json!({})),
            entry(&amd64, json!({"os": "linux", "architecture": "amd64"}), json!({})),
        ],
    }))
    .unwrap();
    let index_digest = sha256_digest(&index);
    let hex = index_digest.trim_start_matches("sha256:");
    fs::write(oci.join("blobs/sha256").join(hex), &index).unwrap();
    let mut layout_index: serde_json::Value =
        serde_json::from_slice(&fs::read(oci.join("index.json")).unwrap()).unwrap();
    layout_index["manifests"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "mediaType": OCI_INDEX, "digest": index_digest, "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }));
    fs::write(oci.join("index.json"), layout_index.to_string()).unwrap();
    sh(&format!(
        "skopeo copy -q --all --dest-tls-verify=false oci:{}:multi docker://{}/leda/multi:1.0",
        oci.display(),
        h.registry
    ));

    let c = client(json!({"insecure_registries": [h.registry]}));
    let r = reference(&h.registry, "leda/multi:1.0");
    let resolved = block_on(c.resolve(&r)).unwrap();
    assert_eq!(resolved.media_type, OCI_INDEX);
    assert_eq!(resolved.digest.to_string(), index_digest);
    let fetched = block_on(c.fetch_manifest(&r, resolved.digest.as_ref())).unwrap();
    assert_eq!(fetched.kind(), ManifestKind::Index);
    let index = fetched.index().unwrap();

    let chosen = select_manifest(&r, &index, &host_platform()).unwrap();
    #[cfg(target_arch = "x86_64")]
    assert_eq!(chosen.digest(), amd64.digest());
    let mut want_arm64 = Platform::default();
    want_arm64.set_os(Os::Linux);
    want_arm64.set_architecture(Arch::ARM64);
    let chosen_arm = select_manifest(&r, &index, &want_arm64).unwrap();
    assert_eq!(chosen_arm.digest(), arm64.digest());
    let mut riscv = want_arm64.clone();
    riscv.set_architecture(Arch::RISCV64);
    assert_eq!(
        select_manifest(&r, &index, &riscv).unwrap_err().to_string(),
        format!(
            "image {r} has no manifest for linux/riscv64 (it has: linux/arm64/v8, linux/amd64)"
        )
    );

    // The arm64 manifest and its config come through the same client.
    let arm = block_on(c.fetch_manifest(&r, chosen_arm.digest().as_ref())).unwrap();
    let arm = arm.image().unwrap();
    let config = block_on(c.fetch_blob_bytes(&r, arm.config())).unwrap();
    let config: ImageConfiguration = serde_json::from_slice(&config).unwrap();
    assert_eq!(config.architecture(), &Arch::ARM64);
    // And the whole pull picks the host's.
    #[cfg(target_arch = "x86_64")]
    assert_busybox(&block_on(pull(&c, &r)).unwrap());

    // A tag that moves: resolve sees the new digest.
    let moving = format!("{}/leda/moving:1", h.registry);
    let moving_ref = Reference::parse(&moving).unwrap();
    h.lib(&format!("harness_push '{images}' img-amd64 {moving}"));
    assert_eq!(
        block_on(c.resolve(&moving_ref)).unwrap().digest,
        *amd64.digest()
    );
    h.lib(&format!("harness_push '{images}' img-arm64 {moving}"));
    assert_eq!(
        block_on(c.resolve(&moving_ref)).unwrap().digest,
        *arm64.digest()
    );
}

/// A docker-registry serving TLS that requires a client certificate signed by its CA.
struct MtlsRegistry {
    child: Child,
    addr: String,
    certs: PathBuf,
}

impl MtlsRegistry {
    fn start(dir: &Path) -> MtlsRegistry {
        let certs = dir.join("certs");
        fs::create_dir_all(&certs).unwrap();
        let ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        sh(&format!(
            "set -e; cd '{c}'
             openssl req -x509 {ec} -keyout ca.key -out ca.crt -days 2 -subj /CN=leda-test-ca \
                 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
             for who in server client; do
                 openssl req {ec} -keyout $who.key -out $who.csr -subj /CN=leda-test-$who 2>/dev/null
             done
             printf 'subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n' >server.ext
             printf 'extendedKeyUsage=clientAuth\\n' >client.ext
             for who in server client; do
                 openssl x509 -req -in $who.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
                     -days 2 -extfile $who.ext -out $who.crt 2>/dev/null
             done
             # skopeo's cert dir: ca.crt, client.cert, client.key
             mkdir skopeo; cp ca.crt skopeo/; cp client.crt skopeo/client.cert; cp client.key skopeo/",
            c = certs.display()
        ));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = certs.display();
        fs::write(
            dir.join("config.yml"),
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\n\
                 http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {c}/server.crt\n    key: {c}/server.key\n\
                 \x20   clientcas:\n      - {c}/ca.crt\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("registry.log")).unwrap())
            .spawn()
            .unwrap();
        let reg = MtlsRegistry {
            child,
            addr: format!("127.0.0.1:{port}"),
            certs,
        };
        // Up when the registry started here listens on the port (lib.sh harness_listens),
        // not when anything answers there.
        let h = Harness::get();
        let deadline = Instant::now() + Duration::from_secs(10);
        let listens = format!(
            ". '{}/lib.sh'; harness_listens {} {port}",
            h.scripts.display(),
            reg.child.id()
        );
        while !Command::new("bash")
            .arg("-c")
            .arg(&listens)
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "the mTLS registry did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        reg
    }

    fn transport(&self, ca: bool, client: bool) -> serde_json::Value {
        let f = |name: &str| self.certs.join(name).display().to_string();
        let mut t = json!({});
        if ca {
            t["root_ca"] = f("ca.crt").into();
        }
        if client {
            t["client_cert"] = f("client.crt").into();
            t["client_key"] = f("client.key").into();
        }
        json!({"registry_configurations": {self.addr.clone(): {"transport": t}}})
    }
}

impl Drop for MtlsRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn client_certificate_per_registry_host() {
    let h = Harness::get();
    let reg = MtlsRegistry::start(&h.test_dir("registry-mtls"));
    sh(&format!(
        "skopeo copy -q --dest-cert-dir '{}' oci:{}:busybox docker://{}/leda/busybox:1.0",
        reg.certs.join("skopeo").display(),
        layout().display(),
        reg.addr
    ));
    let r = reference(&reg.addr, "leda/busybox:1.0");

    // root_ca + client_cert + client_key: the whole pull works.
    let p = block_on(pull(&client(reg.transport(true, true)), &r)).unwrap();
    assert_busybox(&p);

    // Without the client certificate the registry ends the handshake.
    let err = block_on(client(reg.transport(true, false)).resolve(&r)).unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("tls error with registry {}: ", reg.addr)),
        "{msg}"
    );
    assert!(
        msg.contains("BadCertificate") && msg.contains("client_cert"),
        "{msg}"
    );

    // Without its CA the registry's certificate is not trusted.
    let err = block_on(client(reg.transport(false, true)).resolve(&r)).unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("UnknownIssuer") && msg.contains("root_ca"),
        "{msg}"
    );

    // Unusable files: named in the error of pulls from that host only.
    let mut bad = reg.transport(true, true);
    bad["registry_configurations"][&reg.addr]["transport"]["client_key"] =
        "/nonexistent/client.key".into();
    bad["insecure_registries"] = json!([h.registry]);
    let c = client(bad);
    let err = block_on(c.resolve(&r)).unwrap_err();
    assert!(matches!(err, RegistryError::TlsConfig { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "invalid tls configuration for registry {}: cannot read client_key /nonexistent/client.key: \
             No such file or directory (os error 2)",
            reg.addr
        )
    );
    block_on(c.resolve(&reference(&h.registry, &h.image))).expect("other hosts unaffected");
}
