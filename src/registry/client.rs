//! The I/O half: HTTP(S) to registries with per-host TLS, authentication and redirects.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt, TryStreamExt};
use oci_spec::image::{Descriptor, Digest, ImageIndex, ImageManifest};
use reqwest::header::{
    HeaderMap, ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{self, BearerToken, Challenge};
use super::digest::{sha256_digest, DigestVerifier};
use super::error::{cause_chain, chain};
use super::hosts::host_settings;
use super::protocol::{api_url, error_message, manifest_kind, same_origin, MANIFEST_ACCEPT};
use super::{ManifestKind, Reference, RegistryError};
use crate::config::{ContainersConfig, Credentials, TlsConfig};
use crate::trust::{Signature, SignatureKind, COSIGN_MEDIA_TYPE, NOTATION_ARTIFACT_TYPE};

/// Time allowed to open a connection (TCP and TLS).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest silence while waiting for an answer or the next chunk of a body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest manifest accepted (containerd's limit too).
const MANIFEST_MAX: usize = 4 << 20;
/// Largest blob [`RegistryClient::fetch_blob_bytes`] keeps in memory.
const SMALL_BLOB_MAX: u64 = 16 << 20;
/// Largest error body or token answer read.
const SMALL_BODY_MAX: usize = 64 << 10;
const MAX_REDIRECTS: usize = 10;
/// Most signatures of one image read (each is a manifest and a blob).
pub const MAX_SIGNATURES: usize = 16;

/// What a tag (or digest) stands for now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Digest of the manifest or index.
    pub digest: Digest,
    /// Its media type (see [`super::manifest_kind`]).
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A manifest or index as the registry sent it, digest verified.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The exact bytes (what the digest is over; store these, not a re-serialisation).
    pub bytes: Bytes,
    /// One of the four manifest media types.
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The reference it was fetched for, pinned to `digest`.
    pub reference: Reference,
}

impl Manifest {
    /// Index (choose a platform) or image manifest.
    pub fn kind(&self) -> ManifestKind {
        // fetch_manifest accepts only media types with a kind.
        manifest_kind(&self.media_type).unwrap_or(ManifestKind::Image)
    }

    /// The manifest as an image index (or Docker manifest list).
    pub fn index(&self) -> Result<ImageIndex, RegistryError> {
        self.parse()
    }

    /// The manifest as an image manifest.
    pub fn image(&self) -> Result<ImageManifest, RegistryError> {
        self.parse()
    }

    fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, RegistryError> {
        serde_json::from_slice(&self.bytes).map_err(|e| RegistryError::Protocol {
            registry: self.reference.registry().to_string(),
            what: format!("manifest {}", self.digest),
            reason: format!("it is not a valid {}: {e}", self.media_type),
        })
    }

    /// A descriptor of this manifest (media type, digest, size).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor::new(
            self.media_type.as_str().into(),
            self.bytes.len() as u64,
            self.digest.clone(),
        )
    }
}

/// A blob's content as it arrives, chunk by chunk.
pub type BlobStream = Pin<Box<dyn Stream<Item = Result<Bytes, RegistryError>> + Send>>;

/// How a registry accepted us last time, per registry and repository.
#[derive(Clone)]
enum Auth {
    Basic,
    Bearer(BearerToken),
}

/// Everything needed to talk to one registry.
struct Endpoint {
    /// As in references, for messages and the auth cache.
    registry: String,
    /// `http(s)://<api host>/`
    base: Url,
    http: reqwest::Client,
    credentials: Option<Credentials>,
}

/// Client for the registries of one configuration. Build it once from the configuration and
/// share it (`Arc`); when the configuration changes, build a new one (in-flight pulls keep
/// the old). Tokens are cached per registry and repository until shortly before they expire.
pub struct RegistryClient {
    config: ContainersConfig,
    /// For registries without a `transport`: the system's root CAs, no client certificate.
    default_http: reqwest::Client,
    /// One per distinct `transport` setting, or why it cannot be used.
    tls_http: HashMap<TlsKey, Result<reqwest::Client, String>>,
    auth: Mutex<HashMap<(String, String), Auth>>,
}

type TlsKey = (String, String, String);

fn tls_key(t: &TlsConfig) -> TlsKey {
    (
        t.root_ca.clone(),
        t.client_cert.clone(),
        t.client_key.clone(),
    )
}

fn tls_is_empty(t: &TlsConfig) -> bool {
    t.root_ca.is_empty() && t.client_cert.is_empty() && t.client_key.is_empty()
}

impl RegistryClient {
    /// A client for the registries `config` describes. TLS files are read now; a host whose
    /// files cannot be used is logged and its pulls fail with [`RegistryError::TlsConfig`].
    pub fn new(config: &ContainersConfig) -> Result<RegistryClient, RegistryError> {
        // rustls needs a process-wide crypto provider; ring is the one compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let default_http = http_client(None).map_err(|reason| RegistryError::Setup { reason })?;
        let mut tls_http = HashMap::new();
        for (host, rc) in &config.registry_configurations {
            let Some(tls) = rc.transport.as_ref().filter(|t| !tls_is_empty(t)) else {
                continue;
            };
            if host_settings(config, host).insecure {
                log::warn!(
                    "registry {host}: its transport settings are ignored because it is an insecure registry (plain http)"
                );
                continue;
            }
            let client = http_client(Some(tls));
            if let Err(reason) = &client {
                log::warn!("registry {host}: {reason}; pulls from it will fail");
            }
            tls_http.insert(tls_key(tls), client);
        }
        super::throttle::set_rate(config.download_rate_limit.0);
        Ok(RegistryClient {
            config: config.clone(),
            default_http,
            tls_http,
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// How broken blob downloads are retried (`containers.download_retries` and delays).
    pub fn retry_policy(&self) -> crate::transfer::RetryPolicy {
        crate::transfer::RetryPolicy {
            retries: self.config.download_retries,
            delay: self.config.download_retry_delay.0,
            max_delay: self.config.download_retry_delay_max.0,
        }
    }

    /// The digest, media type and size of the manifest `reference` names now (HEAD, falling
    /// back to GET when the registry does not say). Compare the digest with the one pulled
    /// before to learn whether a tag moved.
    pub async fn resolve(&self, reference: &Reference) -> Result<Resolved, RegistryError> {
        let ep = self.endpoint(reference)?;
        let url = self.url(&ep, reference, "manifests", reference.tag_or_digest())?;
        let what = format!("image {reference}");
        match self
            .request(
                &ep,
                reference,
                Method::HEAD,
                url,
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await
        {
            Ok(resp) => {
                if let Some(resolved) = resolved_from_headers(reference, resp.headers())? {
                    return Ok(resolved);
                }
                log::debug!(
                    "registry {}: HEAD {what} lacks digest headers, using GET",
                    ep.registry
                );
            }
            // A HEAD answer has no body: ask again with GET for the registry's explanation.
            Err(RegistryError::Unauthorized { .. } | RegistryError::Status { .. }) => {}
            Err(e) => return Err(e),
        }
        let m = self
            .fetch_manifest(reference, reference.tag_or_digest())
            .await?;
        Ok(Resolved {
            size: m.bytes.len() as u64,
            digest: m.digest,
            media_type: m.media_type,
        })
    }

    /// The manifest or index of `reference`'s repository with tag or digest
    /// `tag_or_digest`. Fetched by digest, the content is verified against it.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        tag_or_digest: &str,
    ) -> Result<Manifest, RegistryError> {
        let ep = self.endpoint(reference)?;
        let url = self.url(&ep, reference, "manifests", tag_or_digest)?;
        let what = if tag_or_digest == reference.tag_or_digest() {
            format!("image {reference}")
        } else {
            format!("manifest {tag_or_digest} of image {reference}")
        };
        let resp = self
            .request(
                &ep,
                reference,
                Method::GET,
                url,
                Some(MANIFEST_ACCEPT),
                &what,
            )
            .await?;
        let header_type = header_str(resp.headers(), CONTENT_TYPE)
            .map(|t| t.split(';').next().unwrap_or("").trim().to_string());
        let bytes = read_limited(resp, MANIFEST_MAX)
            .await
            .map_err(|cause| transfer_error(&ep, &what, cause))?;
        let media_type = header_type
            .filter(|t| manifest_kind(t).is_some())
            .or_else(|| media_type_field(&bytes))
            .unwrap_or_default();
        if manifest_kind(&media_type).is_none() {
            return Err(RegistryError::UnexpectedMediaType {
                reference: reference.to_string(),
                media_type: if media_type.is_empty() {
                    "(none)".into()
                } else {
                    media_type
                },
            });
        }
        if tag_or_digest.contains(':') {
            // Tags cannot hold ':': this is a digest.
            let expected: Digest =
                tag_or_digest
                    .parse()
                    .map_err(|_| RegistryError::InvalidReference {
                        reference: reference.to_string(),
                        reason: format!("\"{tag_or_digest}\" is not a digest"),
                    })?;
            let mut verifier = DigestVerifier::new(&expected, bytes.len() as u64)?;
            verifier.update(&bytes)?;
            verifier.finish()?;
        }
        let actual = sha256_digest(&bytes);
        let digest: Digest = actual.parse().expect("sha256_digest yields a valid digest");
        Ok(Manifest {
            reference: reference.with_digest(digest.clone()),
            bytes,
            media_type,
            digest,
        })
    }

    /// The content of the blob `descriptor` names (config or layer), as it arrives. Redirects
    /// (to object stores) are followed. The caller checks it with a [`DigestVerifier`] before
    /// committing it.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<BlobStream, RegistryError> {
        Ok(self.fetch_blob_from(reference, descriptor, 0).await?.0)
    }

    /// The blob's bytes from `offset` on (HTTP `Range`), paced by the download rate limit.
    /// Returns where the stream really starts: `offset`, or 0 when the registry (or a proxy
    /// in between) ignored the range and sends the whole blob.
    pub async fn fetch_blob_from(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<(BlobStream, u64), RegistryError> {
        let ep = self.endpoint(reference)?;
        let digest = descriptor.digest().to_string();
        let url = self.url(&ep, reference, "blobs", &digest)?;
        let what = format!("blob {digest} of image {reference}");
        let mut range = (offset > 0).then_some(offset);
        let resp = match self
            .request_from(&ep, reference, Method::GET, url.clone(), None, &what, range)
            .await
        {
            // The registry cannot serve that range (it disagrees about the size): all of it.
            Err(RegistryError::Status { status: 416, .. }) if range.is_some() => {
                range = None;
                self.request_from(&ep, reference, Method::GET, url, None, &what, None)
                    .await?
            }
            other => other?,
        };
        let start = if range.is_some() && resp.status() == StatusCode::PARTIAL_CONTENT {
            offset
        } else {
            0
        };
        let registry = ep.registry;
        let stream = resp
            .bytes_stream()
            .map_err(move |e| RegistryError::Transfer {
                what: what.clone(),
                registry: registry.clone(),
                cause: cause_chain(&e.without_url()),
            });
        Ok((super::throttle::paced(Box::pin(stream)), start))
    }

    /// A small blob (the image config) in memory, verified against `descriptor`.
    pub async fn fetch_blob_bytes(
        &self,
        reference: &Reference,
        descriptor: &Descriptor,
    ) -> Result<Bytes, RegistryError> {
        if descriptor.size() > SMALL_BLOB_MAX {
            return Err(RegistryError::Protocol {
                registry: reference.registry().to_string(),
                what: format!("blob {} of image {reference}", descriptor.digest()),
                reason: format!(
                    "{} bytes is too large to hold in memory (at most {SMALL_BLOB_MAX})",
                    descriptor.size()
                ),
            });
        }
        let mut verifier = DigestVerifier::for_descriptor(descriptor)?;
        let mut stream = self.fetch_blob(reference, descriptor).await?;
        let mut buf = BytesMut::with_capacity(descriptor.size() as usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            verifier.update(&chunk)?;
            buf.extend_from_slice(&chunk);
        }
        verifier.finish()?;
        Ok(buf.freeze())
    }

    /// The signatures of the manifest `digest` in `reference`'s repository, of `kind`:
    /// - notation: the referrers with the Notary Project's artifact type, through the OCI
    ///   referrers API, falling back to the `sha256-<hex>` tag schema where the registry has
    ///   no such API; each signature manifest's first layer is the envelope.
    /// - cosign: the layers of the manifest tagged `sha256-<hex>.sig`.
    ///
    /// No signature at all is an empty list (the verifier decides what that means); at most
    /// [`MAX_SIGNATURES`] are read.
    pub async fn signatures(
        &self,
        reference: &Reference,
        digest: &str,
        kind: SignatureKind,
    ) -> Result<Vec<Signature>, RegistryError> {
        let tag = digest.replacen(':', "-", 1);
        match kind {
            SignatureKind::Notation => {
                let referrers = match self.referrers(reference, digest).await? {
                    Some(list) => list,
                    None => match self.fetch_manifest(reference, &tag).await {
                        Ok(m) => m.index()?.manifests().clone(),
                        Err(RegistryError::NotFound { .. }) => Vec::new(),
                        Err(e) => return Err(e),
                    },
                };
                let mut out = Vec::new();
                for d in referrers
                    .iter()
                    .filter(|d| {
                        d.artifact_type().as_ref().map(|t| t.to_string()).as_deref()
                            == Some(NOTATION_ARTIFACT_TYPE)
                    })
                    .take(MAX_SIGNATURES)
                {
                    let m = self
                        .fetch_manifest(reference, d.digest().as_ref())
                        .await?
                        .image()?;
                    let Some(envelope) = m.layers().first() else {
                        continue;
                    };
                    out.push(
                        self.signature(reference, envelope, m.annotations().as_ref())
                            .await?,
                    );
                }
                Ok(out)
            }
            SignatureKind::Cosign => {
                let m = match self.fetch_manifest(reference, &format!("{tag}.sig")).await {
                    Ok(m) => m.image()?,
                    Err(RegistryError::NotFound { .. }) => return Ok(Vec::new()),
                    Err(e) => return Err(e),
                };
                let mut out = Vec::new();
                for layer in m
                    .layers()
                    .iter()
                    .filter(|l| l.media_type().to_string() == COSIGN_MEDIA_TYPE)
                    .take(MAX_SIGNATURES)
                {
                    out.push(
                        self.signature(reference, layer, layer.annotations().as_ref())
                            .await?,
                    );
                }
                Ok(out)
            }
        }
    }

    /// One signature: the blob of `layer`, with its media type and `annotations`.
    async fn signature(
        &self,
        reference: &Reference,
        layer: &Descriptor,
        annotations: Option<&HashMap<String, String>>,
    ) -> Result<Signature, RegistryError> {
        let blob = self.fetch_blob_bytes(reference, layer).await?;
        Ok(Signature {
            media_type: layer.media_type().to_string(),
            blob: blob.to_vec(),
            annotations: annotations
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })
    }

    /// The OCI referrers API's list for `digest` (filtered by notation's artifact type), or
    /// `None` when the registry does not implement the API (404): then the tag schema.
    async fn referrers(
        &self,
        reference: &Reference,
        digest: &str,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let ep = self.endpoint(reference)?;
        let mut url = self.url(&ep, reference, "referrers", digest)?;
        url.query_pairs_mut()
            .append_pair("artifactType", NOTATION_ARTIFACT_TYPE);
        let what = format!("referrers of {digest} of image {reference}");
        let resp = match self
            .request(
                &ep,
                reference,
                Method::GET,
                url,
                Some("application/vnd.oci.image.index.v1+json"),
                &what,
            )
            .await
        {
            Ok(resp) => resp,
            Err(RegistryError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bytes = read_limited(resp, MANIFEST_MAX)
            .await
            .map_err(|cause| transfer_error(&ep, &what, cause))?;
        let index: ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                registry: ep.registry.clone(),
                what: what.clone(),
                reason: format!("it is not an image index: {e}"),
            })?;
        Ok(Some(index.manifests().clone()))
    }

    fn endpoint(&self, reference: &Reference) -> Result<Endpoint, RegistryError> {
        let registry = reference.registry();
        let settings = host_settings(&self.config, registry);
        let scheme = if settings.insecure { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{}/", reference.api_host())).map_err(|e| {
            RegistryError::InvalidReference {
                reference: reference.to_string(),
                reason: format!("registry {registry} is not a valid host: {e}"),
            }
        })?;
        let tls = settings
            .tls
            .as_ref()
            .filter(|t| !settings.insecure && !tls_is_empty(t));
        let http = match tls.and_then(|t| self.tls_http.get(&tls_key(t))) {
            Some(Ok(client)) => client.clone(),
            Some(Err(reason)) => {
                return Err(RegistryError::TlsConfig {
                    registry: registry.to_string(),
                    reason: reason.clone(),
                })
            }
            None => self.default_http.clone(),
        };
        Ok(Endpoint {
            registry: registry.to_string(),
            base,
            http,
            credentials: settings.credentials,
        })
    }

    fn url(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        kind: &str,
        tag_or_digest: &str,
    ) -> Result<Url, RegistryError> {
        api_url(&ep.base, reference.repository(), kind, tag_or_digest).map_err(|reason| {
            RegistryError::InvalidReference {
                reference: reference.to_string(),
                reason,
            }
        })
    }

    /// Sends a request, authenticating when challenged, and turns failures into errors.
    async fn request(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        method: Method,
        url: Url,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response, RegistryError> {
        self.request_from(ep, reference, method, url, accept, what, None)
            .await
    }

    /// As `request`, asking for the bytes from `range_from` on (`Range: bytes=N-`).
    #[allow(clippy::too_many_arguments)]
    async fn request_from(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        method: Method,
        url: Url,
        accept: Option<&str>,
        what: &str,
        range_from: Option<u64>,
    ) -> Result<Response, RegistryError> {
        let repository = reference.repository();
        let key = (ep.registry.clone(), repository.to_string());
        let mut auth = self.cached_auth(&key);
        let mut challenged = false;
        loop {
            let resp = self
                .send(
                    ep,
                    method.clone(),
                    url.clone(),
                    accept,
                    auth.as_ref(),
                    range_from,
                )
                .await?;
            let status = resp.status();
            if status.is_success() {
                return Ok(resp);
            }
            if status == StatusCode::UNAUTHORIZED && !challenged {
                challenged = true;
                self.auth.lock().unwrap().remove(&key);
                if let Some(new) = self.answer_challenge(ep, repository, &resp).await? {
                    self.auth.lock().unwrap().insert(key.clone(), new.clone());
                    auth = Some(new);
                    continue;
                }
            }
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    self.auth.lock().unwrap().remove(&key);
                    RegistryError::Unauthorized {
                        registry: ep.registry.clone(),
                        repository: repository.to_string(),
                        message: response_message(resp).await,
                        credentials_configured: ep.credentials.is_some(),
                    }
                }
                StatusCode::NOT_FOUND => RegistryError::NotFound {
                    what: what.to_string(),
                    registry: ep.registry.clone(),
                },
                _ => RegistryError::Status {
                    registry: ep.registry.clone(),
                    what: what.to_string(),
                    status: status.as_u16(),
                    message: response_message(resp).await,
                },
            });
        }
    }

    fn cached_auth(&self, key: &(String, String)) -> Option<Auth> {
        let mut cache = self.auth.lock().unwrap();
        match cache.get(key) {
            Some(Auth::Bearer(t)) if !t.is_fresh(Instant::now()) => {
                cache.remove(key);
                None
            }
            other => other.cloned(),
        }
    }

    /// How to answer a 401: `None` when there is nothing to try (the 401 stands).
    async fn answer_challenge(
        &self,
        ep: &Endpoint,
        repository: &str,
        resp: &Response,
    ) -> Result<Option<Auth>, RegistryError> {
        let Some(header) = header_str(resp.headers(), WWW_AUTHENTICATE) else {
            return Ok(None);
        };
        let challenge =
            auth::parse_challenge(&header).map_err(|reason| RegistryError::Protocol {
                registry: ep.registry.clone(),
                what: format!("access to {repository}"),
                reason,
            })?;
        match challenge {
            Challenge::Basic if ep.credentials.is_some() => Ok(Some(Auth::Basic)),
            Challenge::Basic => Ok(None),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let token = self
                    .fetch_token(ep, repository, &realm, service.as_deref(), scope.as_deref())
                    .await?;
                Ok(Some(Auth::Bearer(token)))
            }
        }
    }

    async fn fetch_token(
        &self,
        ep: &Endpoint,
        repository: &str,
        realm: &str,
        service: Option<&str>,
        scope: Option<&str>,
    ) -> Result<BearerToken, RegistryError> {
        let what = format!("a token for {repository}");
        let protocol = |reason: String| RegistryError::Protocol {
            registry: ep.registry.clone(),
            what: what.clone(),
            reason,
        };
        let url = auth::token_url(realm, service, scope, repository).map_err(protocol)?;
        let mut req = ep.http.get(url.clone());
        match &ep.credentials {
            Some(c) if auth::may_send_credentials(&url, &ep.base) => {
                req = req.basic_auth(&c.user_id, Some(c.password.expose()));
            }
            Some(_) => log::warn!(
                "registry {}: not sending credentials to the token service {} (not https); asking anonymously",
                ep.registry,
                url.origin().ascii_serialization()
            ),
            None => {}
        }
        log::debug!(
            "registry {}: getting a token for {repository} from {}",
            ep.registry,
            url.origin().ascii_serialization()
        );
        let resp = req.send().await.map_err(|e| transport_error(ep, e))?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: ep.registry.clone(),
                repository: repository.to_string(),
                message: response_message(resp).await,
                credentials_configured: ep.credentials.is_some(),
            });
        }
        if !status.is_success() {
            return Err(RegistryError::Status {
                registry: ep.registry.clone(),
                what,
                status: status.as_u16(),
                message: response_message(resp).await,
            });
        }
        let body = read_limited(resp, SMALL_BODY_MAX)
            .await
            .map_err(|cause| transfer_error(ep, &what, cause))?;
        auth::parse_token_response(&body, Instant::now()).map_err(protocol)
    }

    /// One request, following redirects; the `Authorization` header goes only to the
    /// registry's own origin, never to a host it redirects to.
    async fn send(
        &self,
        ep: &Endpoint,
        method: Method,
        mut url: Url,
        accept: Option<&str>,
        auth: Option<&Auth>,
        range_from: Option<u64>,
    ) -> Result<Response, RegistryError> {
        for _ in 0..=MAX_REDIRECTS {
            let mut req = ep.http.request(method.clone(), url.clone());
            if let Some(accept) = accept {
                req = req.header(ACCEPT, accept);
            }
            if let Some(from) = range_from {
                req = req.header(reqwest::header::RANGE, format!("bytes={from}-"));
            }
            if same_origin(&url, &ep.base) {
                req = match (auth, &ep.credentials) {
                    (Some(Auth::Basic), Some(c)) => {
                        req.basic_auth(&c.user_id, Some(c.password.expose()))
                    }
                    (Some(Auth::Bearer(t)), _) => req.bearer_auth(t.value()),
                    _ => req,
                };
            }
            log::debug!("registry {}: {method} {}", ep.registry, url.path());
            let resp = req.send().await.map_err(|e| transport_error(ep, e))?;
            let location = header_str(resp.headers(), LOCATION);
            match location {
                Some(location) if resp.status().is_redirection() => {
                    url = url.join(&location).map_err(|e| RegistryError::Protocol {
                        registry: ep.registry.clone(),
                        what: format!("{method} {}", url.path()),
                        reason: format!("invalid redirect location: {e}"),
                    })?;
                    log::debug!(
                        "registry {}: redirected to {}",
                        ep.registry,
                        url.origin().ascii_serialization()
                    );
                }
                _ => return Ok(resp),
            }
        }
        Err(RegistryError::Protocol {
            registry: ep.registry.clone(),
            what: format!("{method} {}", url.path()),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

/// The reqwest client for one TLS setting (or the default one).
fn http_client(tls: Option<&TlsConfig>) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("leda-cm/", env!("CARGO_PKG_VERSION")));
    if let Some(tls) = tls {
        let read = |what: &str, path: &str| {
            std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
        };
        if !tls.root_ca.is_empty() {
            let pem = read("root_ca", &tls.root_ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("root_ca {}: {}", tls.root_ca, cause_chain(&e)))?;
            if certs.is_empty() {
                return Err(format!("root_ca {} holds no PEM certificate", tls.root_ca));
            }
            builder = builder.tls_certs_merge(certs);
        }
        match (tls.client_cert.is_empty(), tls.client_key.is_empty()) {
            (true, true) => {}
            (false, false) => {
                let mut pem = read("client_cert", &tls.client_cert)?;
                pem.push(b'\n');
                pem.extend(read("client_key", &tls.client_key)?);
                let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    format!(
                        "client_cert {} with client_key {}: {}",
                        tls.client_cert,
                        tls.client_key,
                        cause_chain(&e)
                    )
                })?;
                builder = builder.identity(identity);
            }
            _ => return Err("client_cert and client_key must be given together".into()),
        }
    }
    builder.build().map_err(|e| cause_chain(&e))
}

fn resolved_from_headers(
    reference: &Reference,
    headers: &HeaderMap,
) -> Result<Option<Resolved>, RegistryError> {
    let media_type = header_str(headers, CONTENT_TYPE)
        .map(|t| t.split(';').next().unwrap_or("").trim().to_string());
    let digest =
        header_str(headers, "docker-content-digest").and_then(|d| d.parse::<Digest>().ok());
    let size = header_str(headers, CONTENT_LENGTH).and_then(|s| s.parse::<u64>().ok());
    let (Some(media_type), Some(digest), Some(size)) = (media_type, digest, size) else {
        return Ok(None);
    };
    if manifest_kind(&media_type).is_none() {
        // Some registries answer HEAD with a generic type; GET reads the manifest itself.
        if media_type == "application/json" || media_type == "application/octet-stream" {
            return Ok(None);
        }
        return Err(RegistryError::UnexpectedMediaType {
            reference: reference.to_string(),
            media_type,
        });
    }
    if let Some(pinned) = reference.digest() {
        if *pinned != digest {
            return Err(RegistryError::DigestMismatch {
                expected: pinned.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    Ok(Some(Resolved {
        digest,
        media_type,
        size,
    }))
}

/// The `mediaType` field of a manifest body, for registries that send a generic type.
fn media_type_field(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Head>(body).ok()?.media_type
}

fn header_str(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A body of at most `limit` bytes.
async fn read_limited(resp: Response, limit: usize) -> Result<Bytes, String> {
    let mut body = BytesMut::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| cause_chain(&e.without_url()))?;
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The registry's explanation of a refused request.
async fn response_message(resp: Response) -> String {
    let status = resp.status();
    let reason = status.canonical_reason().unwrap_or("");
    let body = read_limited(resp, SMALL_BODY_MAX).await.unwrap_or_default();
    error_message(status.as_u16(), reason, &body)
}

fn transfer_error(ep: &Endpoint, what: &str, cause: String) -> RegistryError {
    RegistryError::Transfer {
        what: what.to_string(),
        registry: ep.registry.clone(),
        cause,
    }
}

/// A request that got no answer: TLS trouble, or the registry could not be reached.
fn transport_error(ep: &Endpoint, err: reqwest::Error) -> RegistryError {
    // reqwest's own "error sending request" says nothing the variant does not.
    let cause = match std::error::Error::source(&err) {
        Some(source) => cause_chain(source),
        None => err.to_string(),
    };
    match chain(&err).find_map(|e| e.downcast_ref::<rustls::Error>()) {
        Some(tls) => RegistryError::Tls {
            registry: ep.registry.clone(),
            cause: match tls_hint(tls) {
                Some(hint) => format!("{cause} ({hint})"),
                None => cause,
            },
        },
        None => RegistryError::Unreachable {
            registry: ep.registry.clone(),
            cause,
        },
    }
}

/// What the user can do about a TLS failure, where that is clear.
fn tls_hint(err: &rustls::Error) -> Option<&'static str> {
    use rustls::AlertDescription as A;
    match err {
        rustls::Error::InvalidMessage(_) => Some(
            "the registry does not answer in tls; if it serves plain http, list it in containers.insecure_registries",
        ),
        rustls::Error::InvalidCertificate(_) => Some(
            "if the registry's certificate is issued by a private ca, set its transport.root_ca in containers.registry_configurations",
        ),
        rustls::Error::AlertReceived(A::BadCertificate | A::CertificateRequired | A::UnknownCA) => Some(
            "the registry may require a client certificate: set its transport.client_cert and client_key in containers.registry_configurations",
        ),
        _ => None,
    }
}
