//! Images in containerd without its Transfer service (containerd 1.6 has none): content
//! fetched by the registry adapter is streamed into the content store under a lease and
//! verified as it goes, the image record is created, and the layers are unpacked into
//! snapshots named by their chain IDs, so that `ctr images ls` and `ctr run` see a normal,
//! unpacked image. Blobs already in the content store are not fetched again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AbortRequest, ApplyRequest, CreateImageRequest, CreateRequest as CreateLeaseRequest,
    DeleteImageRequest, DeleteRequest as DeleteLeaseRequest, GetImageRequest, Image,
    Info as ContentInfo, InfoRequest, ListImagesRequest, ReadContentRequest, UpdateImageRequest,
    UpdateRequest as UpdateContentRequest, WriteAction, WriteContentRequest,
};
use containerd_client::tonic::Code;
use containerd_client::types::Descriptor as CtrdDescriptor;
use futures_util::StreamExt;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use super::client::{map_status, Client, INSTANCE_LABEL, LEASE_PREFIX, SNAPSHOTTER};
use crate::registry::{
    host_platform, manifest_kind, select_manifest, DigestVerifier, ManifestKind, Reference,
    RegistryClient,
};
use crate::runtime::{ImageInfo, Progress, ProgressFn, RuntimeError};
use crate::spec::ImageProcess;
use crate::trust::ocicrypt;

const GC_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.overlayfs";
const GC_CONFIG: &str = "containerd.io/gc.ref.content.config";
const UNCOMPRESSED: &str = "containerd.io/uncompressed";
/// Bytes per content write message.
const CHUNK: usize = 1 << 20;
/// A lease outlives a pull that was cut short (crash) by this much, then containerd's GC
/// takes what it protected.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// Chain IDs of a layer stack (OCI image spec): the first is the first diff ID, each next
/// one `sha256(previous + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => crate::registry::sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

fn ctrd_descriptor(d: &Descriptor) -> CtrdDescriptor {
    CtrdDescriptor {
        media_type: d.media_type().to_string(),
        digest: d.digest().to_string(),
        size: d.size() as i64,
        annotations: HashMap::new(),
    }
}

/// The unwrapped keys of the layers encrypted by ocicrypt (media type `…+encrypted`),
/// `None` for plain layers: the authorization check (imgcrypt's `CheckAuthorization`: every
/// encrypted layer's key unwraps with a configured key). Without keys, or when a key does
/// not unwrap, the image is refused with the layer named, also when its plaintext layers
/// happen to be unpacked already (that would skip the key check).
fn layer_keys(
    layers: &[Descriptor],
    keys: &ocicrypt::Keys,
) -> Result<Vec<Option<ocicrypt::LayerKey>>, String> {
    let none = HashMap::new();
    layers
        .iter()
        .map(|l| {
            let media = l.media_type().to_string();
            if !ocicrypt::is_encrypted(&media) {
                return Ok(None);
            }
            if keys.is_empty() {
                return Err(format!(
                    "layer {} is encrypted ({media}); no key for encrypted images is configured (containers.image_dec_keys)",
                    l.digest()
                ));
            }
            keys.unwrap_layer(l.annotations().as_ref().unwrap_or(&none))
                .map(Some)
                .map_err(|e| format!("layer {} is encrypted ({media}): {e}", l.digest()))
        })
        .collect()
}

/// The GC label by which a manifest keeps its `i`th layer's decrypted content.
fn decrypted_label(i: usize) -> String {
    format!("containerd.io/gc.ref.content.decrypted.{i}")
}

fn pull_error(image: &str, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Pull {
        image: image.to_string(),
        reason: reason.to_string(),
    }
}

/// The process settings of an image config.
fn process(config: &ImageConfiguration) -> ImageProcess {
    let Some(c) = config.config() else {
        return ImageProcess::default();
    };
    ImageProcess {
        env: c.env().clone().unwrap_or_default(),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        working_dir: c.working_dir().clone().unwrap_or_default(),
        user: c.user().clone().unwrap_or_default(),
    }
}

/// Why an attempt at a blob failed, and whether another may succeed.
#[derive(Debug)]
struct Attempt {
    message: String,
    transient: bool,
}

impl Attempt {
    fn fatal(message: impl std::fmt::Display) -> Attempt {
        Attempt {
            message: message.to_string(),
            transient: false,
        }
    }

    fn from_registry(e: crate::registry::RegistryError) -> Attempt {
        Attempt {
            transient: e.is_transient(),
            message: e.to_string(),
        }
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Counts pulled bytes across blobs and reports them.
struct Counter {
    done: AtomicU64,
    total: u64,
    sink: Option<ProgressFn>,
}

impl Counter {
    fn add(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(sink) = &self.sink {
            sink(Progress {
                done,
                total: self.total,
            });
        }
    }
}

impl Client {
    /// A lease protecting what is made under it from containerd's GC until it is deleted
    /// (or expires, after a crash).
    pub(crate) async fn create_lease(&self) -> Result<String, RuntimeError> {
        let id = format!("{LEASE_PREFIX}{}", uuid::Uuid::new_v4());
        let expire =
            humantime::format_rfc3339_seconds(SystemTime::now() + LEASE_EXPIRY).to_string();
        LeasesClient::new(self.channel.clone())
            .create(self.req(
                CreateLeaseRequest {
                    id: id.clone(),
                    labels: HashMap::from([
                        ("containerd.io/gc.expire".to_string(), expire),
                        (INSTANCE_LABEL.to_string(), self.instance.clone()),
                    ]),
                },
                None,
            ))
            .await
            .map_err(|s| map_status("lease create", "lease", s))?;
        self.live_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone());
        Ok(id)
    }

    /// Whether the lease protects an unfinished download (a containerd ingest).
    pub(crate) async fn lease_holds_ingests(&self, id: &str) -> bool {
        LeasesClient::new(self.channel.clone())
            .list_resources(self.req(
                containerd_client::services::v1::ListResourcesRequest { id: id.to_string() },
                None,
            ))
            .await
            .map(|r| {
                r.into_inner()
                    .resources
                    .iter()
                    .any(|r| r.r#type == "ingests")
            })
            .unwrap_or(false)
    }

    /// This run gives the lease up but leaves it to expire in containerd.
    fn forget_lease(&self, id: &str) {
        self.live_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    pub(crate) async fn delete_lease(&self, id: &str) {
        // Given up either way: if the delete fails, the next sweep takes it.
        self.forget_lease(id);
        let deleted = LeasesClient::new(self.channel.clone())
            .delete(self.req(
                DeleteLeaseRequest {
                    id: id.to_string(),
                    sync: false,
                },
                None,
            ))
            .await;
        if let Err(e) = deleted {
            log::warn!("deleting lease {id} failed: {}", e.message());
        }
    }

    async fn content_info(&self, digest: &str) -> Result<Option<ContentInfo>, RuntimeError> {
        match ContentClient::new(self.channel.clone())
            .info(self.req(
                InfoRequest {
                    digest: digest.into(),
                },
                None,
            ))
            .await
        {
            Ok(r) => Ok(r.into_inner().info),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(map_status("content info", &format!("content {digest}"), s)),
        }
    }

    /// A whole blob from the content store (manifests and configs: small).
    pub async fn read_content(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let mut stream = ContentClient::new(self.channel.clone())
            .read(self.req(
                ReadContentRequest {
                    digest: digest.into(),
                    offset: 0,
                    size: 0,
                },
                None,
            ))
            .await
            .map_err(|s| map_status("content read", &format!("content {digest}"), s))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream
            .message()
            .await
            .map_err(|s| map_status("content read", &format!("content {digest}"), s))?
        {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// Adds labels to existing content (e.g. the GC reference to the unpacked snapshot).
    async fn label_content(
        &self,
        digest: &str,
        labels: &HashMap<String, String>,
    ) -> Result<(), RuntimeError> {
        ContentClient::new(self.channel.clone())
            .update(self.req(
                UpdateContentRequest {
                    info: Some(ContentInfo {
                        digest: digest.into(),
                        labels: labels.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
                    }),
                },
                None,
            ))
            .await
            .map(|_| ())
            .map_err(|s| map_status("content update", &format!("content {digest}"), s))
    }

    /// Streams `chunks` (all of the blob, from its first byte) into the content store as
    /// `desc`, verifying digest and size on the way; commits only verified content, aborts
    /// what does not verify. Content that exists already is `Ok`.
    async fn write_content<S, E>(
        &self,
        lease: &str,
        desc: &Descriptor,
        chunks: S,
        labels: HashMap<String, String>,
        counter: &Counter,
    ) -> Result<(), String>
    where
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let from_start = |_: u64| std::future::ready(Ok((chunks, 0)));
        self.write_resumable(lease, desc, labels, counter, &mut 0, from_start, |_| false)
            .await
            .map_err(|a| a.message)
    }

    /// Fetches `desc` from the registry into the content store unless it is there already.
    /// A download that breaks is retried as `containers.download_retries` allows, each
    /// attempt resuming from the bytes containerd holds of it (its ingest, also one an earlier
    /// pull or an earlier daemon left); containerd verifies the digest over the whole blob
    /// when it is committed.
    async fn fetch_into_store(
        &self,
        registry: &RegistryClient,
        reference: &Reference,
        lease: &str,
        desc: &Descriptor,
        labels: HashMap<String, String>,
        counter: &Counter,
    ) -> Result<(), Attempt> {
        let digest = desc.digest().to_string();
        let _writer = self.blob_locks.lock(&digest).await;
        if self
            .present(desc, labels.clone(), counter)
            .await
            .map_err(Attempt::fatal)?
        {
            return Ok(());
        }
        let policy = registry.retry_policy();
        let mut counted = 0u64;
        let mut attempt = 0u32;
        loop {
            let fetch = |offset: u64| async move {
                registry
                    .fetch_blob_from(reference, desc, offset)
                    .await
                    .map_err(Attempt::from_registry)
            };
            let err = match self
                .write_resumable(
                    lease,
                    desc,
                    labels.clone(),
                    counter,
                    &mut counted,
                    fetch,
                    crate::registry::RegistryError::is_transient,
                )
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if !e.transient => return Err(e),
                Err(e) => e,
            };
            attempt += 1;
            let jitter = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1e6;
            let Some(wait) = policy.delay_before(attempt, jitter) else {
                let retried = attempt - 1;
                return Err(Attempt {
                    message: if retried > 0 {
                        format!("{} (after {retried} retries)", err.message)
                    } else {
                        err.message
                    },
                    transient: true,
                });
            };
            log::warn!(
                "{}; {counted} of {} bytes are in; retry {attempt} of {} in {:.1} s",
                err.message,
                desc.size(),
                policy.retries,
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt at `desc`: asks containerd how much of it its ingest holds, fetches the
    /// rest (`fetch(offset)` gives the stream and where it really starts), streams it in and
    /// commits. A broken download leaves the ingest for the next attempt (transient); content
    /// that does not verify is aborted (fatal). `counted`: bytes of this blob already in the
    /// progress counter.
    #[allow(clippy::too_many_arguments)]
    async fn write_resumable<F, Fut, S, E>(
        &self,
        lease: &str,
        desc: &Descriptor,
        labels: HashMap<String, String>,
        counter: &Counter,
        counted: &mut u64,
        fetch: F,
        transient: fn(&E) -> bool,
    ) -> Result<(), Attempt>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<(S, u64), Attempt>>,
        S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let digest = desc.digest().to_string();
        let reference = format!("leda-cm-{digest}");
        let total = desc.size() as i64;
        let (tx, rx) = tokio::sync::mpsc::channel::<WriteContentRequest>(4);
        let requests =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let store_err = |s: containerd_client::tonic::Status| {
            Attempt::fatal(format!("content store: {}", s.message()))
        };
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total,
            expected: digest.clone(),
            ..Default::default()
        };
        let _ = tx.send(stat).await;
        let mut content = ContentClient::new(self.channel.clone());
        let mut responses = match content.write(self.req(requests, Some(lease))).await {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(store_err(s)),
        };
        let held = match responses.message().await {
            Ok(Some(r)) => r.offset.max(0) as u64,
            Ok(None) => return Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
            Err(s) => return Err(store_err(s)),
        };
        // More than the blob: not this blob's bytes; a write at 0 starts it again.
        let offset = if held > desc.size() { 0 } else { held };
        if offset > 0 {
            log::info!(
                "blob {digest}: resuming at byte {offset} of {}",
                desc.size()
            );
        } else {
            log::debug!("blob {digest}: containerd holds none of it (ingest {reference})");
        }
        // All of it is there (an attempt cut short before its commit, or the blob in another
        // namespace of this containerd): only the commit is left.
        let (chunks, start) = if offset == desc.size() {
            (None, offset)
        } else {
            let (chunks, start) = fetch(offset).await?;
            (Some(chunks), start)
        };
        if start > *counted {
            counter.add(start - *counted);
            *counted = start;
        }
        // From the start the whole blob passes here and is verified on the way; resumed, the
        // bytes before `start` are in containerd, which hashes them again and checks the whole
        // blob against `expected` at commit.
        let mut verifier = if start == 0 {
            Some(DigestVerifier::for_descriptor(desc).map_err(|e| Attempt::fatal(e.to_string()))?)
        } else {
            None
        };
        enum Sent {
            Closed,
            Failed(Attempt),
        }
        let producer = async {
            let mut chunks = chunks;
            let mut position = start;
            while let Some(chunk) = match chunks.as_mut() {
                Some(c) => c.next().await,
                None => None,
            } {
                let chunk = chunk.map_err(|e| {
                    Sent::Failed(Attempt {
                        transient: transient(&e),
                        message: e.to_string(),
                    })
                })?;
                if let Some(v) = verifier.as_mut() {
                    v.update(&chunk)
                        .map_err(|e| Sent::Failed(Attempt::fatal(e.to_string())))?;
                }
                if position + chunk.len() as u64 > desc.size() {
                    return Err(Sent::Failed(Attempt::fatal(format!(
                        "blob {digest}: more than its {} bytes",
                        desc.size()
                    ))));
                }
                for piece in chunk.chunks(CHUNK) {
                    let msg = WriteContentRequest {
                        action: WriteAction::Write as i32,
                        r#ref: reference.clone(),
                        offset: position as i64,
                        data: piece.to_vec(),
                        ..Default::default()
                    };
                    let end = position + piece.len() as u64;
                    if end > *counted {
                        counter.add(end - (*counted).max(position));
                        *counted = end;
                    }
                    position = end;
                    tx.send(msg).await.map_err(|_| Sent::Closed)?;
                }
            }
            if let Some(v) = verifier.take() {
                v.finish()
                    .map_err(|e| Sent::Failed(Attempt::fatal(e.to_string())))?;
            } else if position != desc.size() {
                return Err(Sent::Failed(Attempt {
                    message: format!(
                        "blob {digest}: the download ended at byte {position} of {}",
                        desc.size()
                    ),
                    transient: true,
                }));
            }
            let commit = WriteContentRequest {
                action: WriteAction::Commit as i32,
                r#ref: reference.clone(),
                total,
                expected: digest.clone(),
                offset: position as i64,
                labels,
                ..Default::default()
            };
            tx.send(commit).await.map_err(|_| Sent::Closed)?;
            drop(tx);
            Ok::<(), Sent>(())
        };
        let consumer = async {
            loop {
                match responses.message().await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(s) if s.code() == Code::AlreadyExists => return Ok(()),
                    Err(s) => return Err(s),
                }
            }
        };
        let (sent, received) = tokio::join!(producer, consumer);
        let result = match (sent, received) {
            (Err(Sent::Failed(e)), _) => Err(e),
            // containerd refused the commit: what it holds does not hash to the digest.
            (_, Err(s)) if s.code() == Code::FailedPrecondition => Err(Attempt::fatal(format!(
                "blob {digest} does not match its digest: {}",
                s.message()
            ))),
            (_, Err(s)) => Err(store_err(s)),
            (Ok(()) | Err(Sent::Closed), Ok(())) => Ok(()),
        };
        if matches!(&result, Err(e) if !e.transient) {
            let _ = content
                .abort(self.req(
                    AbortRequest {
                        r#ref: reference.clone(),
                    },
                    None,
                ))
                .await;
        }
        result
    }

    /// Whether `desc` is in the content store already; then it gets the labels it lacks.
    async fn present(
        &self,
        desc: &Descriptor,
        labels: HashMap<String, String>,
        counter: &Counter,
    ) -> Result<bool, String> {
        let digest = desc.digest().to_string();
        let Some(info) = self
            .content_info(&digest)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(false);
        };
        counter.add(desc.size());
        let missing: HashMap<_, _> = labels
            .into_iter()
            .filter(|(k, v)| info.labels.get(k) != Some(v))
            .collect();
        if !missing.is_empty() {
            self.label_content(&digest, &missing)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(true)
    }

    /// Writes bytes already in memory (manifests, configs) unless present.
    async fn store_bytes(
        &self,
        lease: &str,
        desc: &Descriptor,
        bytes: Bytes,
        labels: HashMap<String, String>,
        counter: &Counter,
    ) -> Result<(), String> {
        let _writer = self.blob_locks.lock(desc.digest().as_ref()).await;
        if self.present(desc, labels.clone(), counter).await? {
            return Ok(());
        }
        let stream = futures_util::stream::iter([Ok::<Bytes, String>(bytes)]);
        self.write_content(lease, desc, stream, labels, counter)
            .await
    }

    /// The layers to unpack: each encrypted one decrypted from the content store into it
    /// (streaming; under its plaintext digest, media type without `+encrypted`, size
    /// unchanged: CTR), committed only when both its HMAC and its digest hold; else the
    /// ingest is aborted and the error names the layer.
    async fn decrypt_layers(
        &self,
        lease: &str,
        layers: &[Descriptor],
        keys: &[Option<ocicrypt::LayerKey>],
        diff_ids: &[String],
    ) -> Result<Vec<Descriptor>, String> {
        let mut out = Vec::with_capacity(layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let Some(key) = keys.get(i).and_then(Option::as_ref) else {
                out.push(layer.clone());
                continue;
            };
            let fail =
                |e: &dyn std::fmt::Display| format!("decrypting layer {}: {e}", layer.digest());
            let media = layer.media_type().to_string();
            let plain: Descriptor = serde_json::from_value(serde_json::json!({
                "mediaType": ocicrypt::decrypted_media_type(&media),
                "digest": key.digest(),
                "size": layer.size(),
            }))
            .map_err(|e| fail(&format!("the layer options name no valid digest: {e}")))?;
            let labels = HashMap::from([(
                UNCOMPRESSED.to_string(),
                diff_ids.get(i).cloned().unwrap_or_default(),
            )]);
            let counter = Counter {
                done: AtomicU64::new(0),
                total: 0,
                sink: None,
            };
            let _writer = self.blob_locks.lock(plain.digest().as_ref()).await;
            if self.present(&plain, labels.clone(), &counter).await? {
                out.push(plain);
                continue;
            }
            let digest = layer.digest().to_string();
            let encrypted = ContentClient::new(self.channel.clone())
                .read(self.req(
                    ReadContentRequest {
                        digest: digest.clone(),
                        offset: 0,
                        size: 0,
                    },
                    None,
                ))
                .await
                .map_err(|s| fail(&s.message()))?
                .into_inner();
            let stream = futures_util::stream::unfold(
                (encrypted, Some(key.decryptor())),
                |(mut encrypted, mut decryptor)| async move {
                    decryptor.as_ref()?;
                    match encrypted.message().await {
                        Ok(Some(chunk)) => {
                            let mut data = chunk.data;
                            if let Some(d) = decryptor.as_mut() {
                                d.update(&mut data);
                            }
                            Some((Ok(Bytes::from(data)), (encrypted, decryptor)))
                        }
                        Ok(None) => match decryptor.take()?.finish() {
                            Ok(()) => None,
                            Err(e) => Some((Err(e.to_string()), (encrypted, None))),
                        },
                        Err(s) => Some((
                            Err(format!("reading the encrypted layer: {}", s.message())),
                            (encrypted, None),
                        )),
                    }
                },
            );
            self.write_content(lease, &plain, Box::pin(stream), labels, &counter)
                .await
                .map_err(|e| fail(&e))?;
            out.push(plain);
        }
        Ok(out)
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool, RuntimeError> {
        match SnapshotsClient::new(self.channel.clone())
            .stat(self.req(
                StatSnapshotRequest {
                    snapshotter: SNAPSHOTTER.into(),
                    key: key.into(),
                },
                None,
            ))
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(map_status("snapshot stat", &format!("snapshot {key}"), s)),
        }
    }

    /// Applies every layer not yet unpacked onto its parent; returns the top chain ID.
    async fn unpack(
        &self,
        lease: Option<&str>,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<String, String> {
        if layers.len() != diff_ids.len() {
            return Err(format!(
                "the manifest has {} layers but the config {} diff IDs",
                layers.len(),
                diff_ids.len()
            ));
        }
        let chains = chain_ids(diff_ids);
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        for (i, layer) in layers.iter().enumerate() {
            let chain = &chains[i];
            if self
                .snapshot_exists(chain)
                .await
                .map_err(|e| e.to_string())?
            {
                continue;
            }
            let parent = if i == 0 {
                String::new()
            } else {
                chains[i - 1].clone()
            };
            let key = format!("extract-{}-{chain}", uuid::Uuid::new_v4().simple());
            let mounts = snapshots
                .prepare(self.req(
                    PrepareSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: key.clone(),
                        parent,
                        labels: HashMap::from([(
                            INSTANCE_LABEL.to_string(),
                            self.instance.clone(),
                        )]),
                    },
                    lease,
                ))
                .await
                .map_err(|s| {
                    format!(
                        "preparing snapshot for layer {}: {}",
                        layer.digest(),
                        s.message()
                    )
                })?
                .into_inner()
                .mounts;
            let applied = DiffClient::new(self.channel.clone())
                .apply(self.req(
                    ApplyRequest {
                        diff: Some(ctrd_descriptor(layer)),
                        mounts,
                        payloads: HashMap::new(),
                        sync_fs: false,
                    },
                    lease,
                ))
                .await;
            let remove_key = || {
                let mut s = SnapshotsClient::new(self.channel.clone());
                let req = self.req(
                    RemoveSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        key: key.clone(),
                    },
                    lease,
                );
                async move {
                    let _ = s.remove(req).await;
                }
            };
            let applied = match applied {
                Ok(r) => r.into_inner().applied.map(|d| d.digest).unwrap_or_default(),
                Err(s) => {
                    remove_key().await;
                    return Err(format!(
                        "unpacking layer {}: {}",
                        layer.digest(),
                        s.message()
                    ));
                }
            };
            if applied != diff_ids[i] {
                remove_key().await;
                return Err(format!(
                    "layer {} unpacked to {applied}, but the config says {}",
                    layer.digest(),
                    diff_ids[i]
                ));
            }
            let committed = snapshots
                .commit(self.req(
                    CommitSnapshotRequest {
                        snapshotter: SNAPSHOTTER.into(),
                        name: chain.clone(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    },
                    lease,
                ))
                .await;
            match committed {
                Ok(_) => {}
                // Unpacked concurrently by someone else: theirs is as good.
                Err(s) if s.code() == Code::AlreadyExists => remove_key().await,
                Err(s) => {
                    remove_key().await;
                    return Err(format!(
                        "committing layer {}: {}",
                        layer.digest(),
                        s.message()
                    ));
                }
            }
        }
        chains
            .last()
            .cloned()
            .ok_or_else(|| "the image has no layers".to_string())
    }

    async fn image_record(&self, name: &str) -> Result<Option<Image>, RuntimeError> {
        match ImagesClient::new(self.channel.clone())
            .get(self.req(GetImageRequest { name: name.into() }, None))
            .await
        {
            Ok(r) => Ok(r.into_inner().image),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(map_status("image get", &format!("image {name}"), s)),
        }
    }

    async fn put_image(
        &self,
        name: &str,
        target: CtrdDescriptor,
        lease: &str,
    ) -> Result<(), RuntimeError> {
        let image = Image {
            name: name.into(),
            target: Some(target),
            ..Default::default()
        };
        let mut images = ImagesClient::new(self.channel.clone());
        match images
            .create(self.req(
                CreateImageRequest {
                    image: Some(image.clone()),
                    source_date_epoch: None,
                },
                Some(lease),
            ))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => images
                .update(self.req(
                    UpdateImageRequest {
                        image: Some(image),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["target".into()],
                        }),
                        source_date_epoch: None,
                    },
                    Some(lease),
                ))
                .await
                .map(|_| ())
                .map_err(|s| map_status("image update", &format!("image {name}"), s)),
            Err(s) => Err(map_status("image create", &format!("image {name}"), s)),
        }
    }

    pub async fn list_images(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(ImagesClient::new(self.channel.clone())
            .list(self.req(ListImagesRequest { filters: vec![] }, None))
            .await
            .map_err(|s| map_status("image list", "images", s))?
            .into_inner()
            .images
            .into_iter()
            .map(|i| i.name)
            .collect())
    }

    pub async fn delete_image(&self, name: &str) -> Result<(), RuntimeError> {
        match ImagesClient::new(self.channel.clone())
            .delete(self.req(
                DeleteImageRequest {
                    name: name.into(),
                    sync: false,
                    target: None,
                },
                None,
            ))
            .await
        {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(map_status("image delete", &format!("image {name}"), s)),
        }
    }

    /// A locally present image (e.g. pre-loaded with `ctr image import`), unpacked when it is
    /// not yet; `None` when there is no such image or its content is incomplete.
    pub async fn local_image(
        &self,
        name: &str,
        keys: &ocicrypt::Keys,
    ) -> Result<Option<ImageInfo>, RuntimeError> {
        let Some(record) = self.image_record(name).await? else {
            return Ok(None);
        };
        let Some(target) = record.target else {
            return Ok(None);
        };
        let manifest_bytes = match self.read_content(&target.digest).await {
            Ok(b) => b,
            Err(RuntimeError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut manifest_digest = target.digest.clone();
        let manifest_bytes = if manifest_kind(&target.media_type) == Some(ManifestKind::Index) {
            let index: ImageIndex = serde_json::from_slice(&manifest_bytes)
                .map_err(|e| pull_error(name, format!("stored index is not valid: {e}")))?;
            let reference = Reference::parse(name).map_err(|e| pull_error(name, e))?;
            let chosen = select_manifest(&reference, &index, &host_platform())
                .map_err(|e| pull_error(name, e))?;
            manifest_digest = chosen.digest().to_string();
            match self.read_content(chosen.digest().as_ref()).await {
                Ok(b) => b,
                Err(RuntimeError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            manifest_bytes
        };
        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| pull_error(name, format!("stored manifest is not valid: {e}")))?;
        let layer_keys = layer_keys(manifest.layers(), keys).map_err(|e| pull_error(name, e))?;
        let config_bytes = match self.read_content(manifest.config().digest().as_ref()).await {
            Ok(b) => b,
            Err(RuntimeError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| pull_error(name, format!("stored config is not valid: {e}")))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        let chains = chain_ids(&diff_ids);
        let top = chains
            .last()
            .cloned()
            .ok_or_else(|| pull_error(name, "the image has no layers"))?;
        if !self.snapshot_exists(&top).await? {
            // Imported but not unpacked: unpack from the content store (encrypted layers
            // decrypted into it first).
            for (layer, key) in manifest.layers().iter().zip(&layer_keys) {
                if key.is_some() && self.content_info(layer.digest().as_ref()).await?.is_none() {
                    return Ok(None);
                }
            }
            let lease = self.create_lease().await?;
            let result = match self
                .decrypt_layers(&lease, manifest.layers(), &layer_keys, &diff_ids)
                .await
            {
                Ok(plain) => {
                    let labels: HashMap<String, String> = plain
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| layer_keys.get(*i).is_some_and(Option::is_some))
                        .map(|(i, d)| (decrypted_label(i), d.digest().to_string()))
                        .collect();
                    let labelled = if labels.is_empty() {
                        Ok(())
                    } else {
                        self.label_content(&manifest_digest, &labels)
                            .await
                            .map_err(|e| e.to_string())
                    };
                    match labelled {
                        Ok(()) => self.unpack(Some(&lease), &plain, &diff_ids).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(e),
            };
            if result.is_ok() {
                let labels = HashMap::from([(GC_SNAPSHOT.to_string(), top.clone())]);
                let _ = self
                    .label_content(manifest.config().digest().as_ref(), &labels)
                    .await;
            }
            self.delete_lease(&lease).await;
            result.map_err(|e| pull_error(name, e))?;
        }
        Ok(Some(ImageInfo {
            name: name.to_string(),
            digest: target.digest,
            media_type: target.media_type,
            size: u64::try_from(target.size).unwrap_or_default(),
            process: process(&config),
            top_layer: top,
        }))
    }

    /// Pulls `name` with `registry` into the content store, records the image and unpacks it.
    pub async fn pull_image(
        &self,
        registry: &RegistryClient,
        name: &str,
        progress: Option<ProgressFn>,
        keys: &ocicrypt::Keys,
    ) -> Result<ImageInfo, RuntimeError> {
        let reference = Reference::parse(name).map_err(|e| pull_error(name, e))?;
        let lease = self.create_lease().await?;
        let result = self
            .pull_under_lease(registry, &reference, name, &lease, progress, keys)
            .await;
        // The image record and the GC labels keep what it needs; the lease goes, but for a
        // pull that broke off with a partial blob in containerd: the lease keeps that for the
        // next pull to resume from, until it expires (or this run's sweeps let it go).
        if result.is_err() && self.lease_holds_ingests(&lease).await {
            log::info!(
                "pull of {name}: keeping what was downloaded (lease {lease}) for the next attempt"
            );
            self.forget_lease(&lease);
        } else {
            self.delete_lease(&lease).await;
        }
        result
    }

    async fn pull_under_lease(
        &self,
        registry: &RegistryClient,
        reference: &Reference,
        name: &str,
        lease: &str,
        progress: Option<ProgressFn>,
        keys: &ocicrypt::Keys,
    ) -> Result<ImageInfo, RuntimeError> {
        let fail = |e: &dyn std::fmt::Display| pull_error(name, e);
        let resolved = registry.resolve(reference).await.map_err(|e| fail(&e))?;
        let root = registry
            .fetch_manifest(reference, resolved.digest.as_ref())
            .await
            .map_err(|e| fail(&e))?;
        let (manifest, index) = match root.kind() {
            ManifestKind::Index => {
                let index = root.index().map_err(|e| fail(&e))?;
                let chosen =
                    select_manifest(reference, &index, &host_platform()).map_err(|e| fail(&e))?;
                let m = registry
                    .fetch_manifest(reference, chosen.digest().as_ref())
                    .await
                    .map_err(|e| fail(&e))?;
                let position = index
                    .manifests()
                    .iter()
                    .position(|d| d.digest() == chosen.digest())
                    .unwrap_or(0);
                (m, Some(position))
            }
            ManifestKind::Image => (root.clone(), None),
        };
        let image = manifest.image().map_err(|e| fail(&e))?;
        // Before anything is fetched: every encrypted layer's key must unwrap.
        let layer_keys = layer_keys(image.layers(), keys).map_err(|e| fail(&e))?;
        let counter = Counter {
            done: AtomicU64::new(0),
            total: image.layers().iter().map(|l| l.size()).sum::<u64>()
                + image.config().size()
                + manifest.bytes.len() as u64
                + if index.is_some() {
                    root.bytes.len() as u64
                } else {
                    0
                },
            sink: progress,
        };
        let config_bytes = registry
            .fetch_blob_bytes(reference, image.config())
            .await
            .map_err(|e| fail(&e))?;
        let config: ImageConfiguration = serde_json::from_slice(&config_bytes)
            .map_err(|e| fail(&format!("image config is not valid: {e}")))?;
        let diff_ids = config.rootfs().diff_ids().clone();
        let chains = chain_ids(&diff_ids);
        let top = chains
            .last()
            .cloned()
            .ok_or_else(|| fail(&"the image has no layers"))?;
        if diff_ids.len() != image.layers().len() {
            return Err(fail(&format!(
                "the manifest has {} layers but the config {} diff IDs",
                image.layers().len(),
                diff_ids.len()
            )));
        }

        // Children before parents, so each parent's GC labels point at stored content.
        for ((layer, diff_id), key) in image.layers().iter().zip(&diff_ids).zip(&layer_keys) {
            // An encrypted blob's uncompressed form is its decrypted blob's.
            let labels = match key {
                None => HashMap::from([(UNCOMPRESSED.to_string(), diff_id.clone())]),
                Some(_) => HashMap::new(),
            };
            self.fetch_into_store(registry, reference, lease, layer, labels, &counter)
                .await
                .map_err(|e| fail(&e))?;
        }
        let plain = self
            .decrypt_layers(lease, image.layers(), &layer_keys, &diff_ids)
            .await
            .map_err(|e| fail(&e))?;
        let config_labels = HashMap::from([(GC_SNAPSHOT.to_string(), top.clone())]);
        self.store_bytes(lease, image.config(), config_bytes, config_labels, &counter)
            .await
            .map_err(|e| fail(&e))?;
        let mut manifest_labels =
            HashMap::from([(GC_CONFIG.to_string(), image.config().digest().to_string())]);
        for (i, l) in image.layers().iter().enumerate() {
            manifest_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest().to_string(),
            );
            if layer_keys.get(i).is_some_and(Option::is_some) {
                if let Some(d) = plain.get(i) {
                    manifest_labels.insert(decrypted_label(i), d.digest().to_string());
                }
            }
        }
        self.store_bytes(
            lease,
            &manifest.descriptor(),
            manifest.bytes.clone(),
            manifest_labels,
            &counter,
        )
        .await
        .map_err(|e| fail(&e))?;
        if let Some(position) = index {
            let labels = HashMap::from([(
                format!("containerd.io/gc.ref.content.m.{position}"),
                manifest.digest.to_string(),
            )]);
            self.store_bytes(
                lease,
                &root.descriptor(),
                root.bytes.clone(),
                labels,
                &counter,
            )
            .await
            .map_err(|e| fail(&e))?;
        }
        self.unpack(Some(lease), &plain, &diff_ids)
            .await
            .map_err(|e| fail(&e))?;
        self.put_image(name, ctrd_descriptor(&root.descriptor()), lease)
            .await?;
        Ok(ImageInfo {
            name: name.to_string(),
            digest: root.digest.to_string(),
            media_type: root.media_type.clone(),
            size: root.bytes.len() as u64,
            process: process(&config),
            top_layer: top,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypted_layers_are_named() {
        let layer = |media: &str| -> Descriptor {
            serde_json::from_value(serde_json::json!({
                "mediaType": media, "size": 1,
                "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000"
            }))
            .unwrap()
        };
        let plain = layer("application/vnd.oci.image.layer.v1.tar+gzip");
        let docker = layer("application/vnd.docker.image.rootfs.diff.tar.gzip");
        let none = ocicrypt::Keys::default();
        let keys = layer_keys(&[plain.clone(), docker], &none).unwrap();
        assert!(keys.iter().all(Option::is_none));
        for media in [
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
            "application/vnd.oci.image.layer.v1.tar+zstd+encrypted",
            "application/vnd.oci.image.layer.v1.tar+encrypted",
        ] {
            let why = layer_keys(&[plain.clone(), layer(media)], &none).expect_err(media);
            assert!(
                why.contains(media) && why.contains("encrypted images"),
                "{why}"
            );
        }
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let chains = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chains[0], a);
        assert_eq!(
            chains[1],
            crate::registry::sha256_digest(b"sha256:aaaa sha256:bbbb")
        );
        assert!(chain_ids(&[]).is_empty());
    }
}
