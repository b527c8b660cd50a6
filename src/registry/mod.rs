//! Registry adapter: an OCI / Docker registry v2 client, the half of pulling images that
//! speaks to registries (containerd 1.6 has no Transfer service, so leda-cm pulls itself and
//! writes what it fetched into containerd's content store).
//!
//! **reqwest, rustls and http-auth stay inside this module**; callers see [`Reference`],
//! [`RegistryClient`], oci-spec's image types and [`RegistryError`].
//!
//! Pulling an image:
//! 1. [`Reference::parse`] the image name, [`RegistryClient::resolve`] it: the digest tells
//!    whether the tag moved since the last pull.
//! 2. [`RegistryClient::fetch_manifest`] by that digest. An index ([`ManifestKind::Index`]):
//!    [`select_manifest`] for [`host_platform`], then fetch that manifest by its digest.
//! 3. The image manifest names the config and the layers: [`RegistryClient::fetch_blob`]
//!    each (or [`RegistryClient::fetch_blob_bytes`] for the small config), checking the
//!    stream with a [`DigestVerifier`] while writing it, before committing it.
//!
//! Configuration (Kanto's keys): `containers.registry_configurations.<host>` gives
//! credentials (basic auth, or for the token service) and `transport` (`root_ca` added to
//! the system's roots, `client_cert` + `client_key` presented to that host);
//! `containers.insecure_registries` lists hosts reached over plain HTTP. See [`hosts`] for how
//! hosts match. Credentials go only to the registry itself and to the token service it names
//! over https; redirects (to object stores) never carry the `Authorization` header.
//!
//! Why hand-written and not `oci-client`: oci-client 0.18 cannot present a TLS client
//! certificate per registry host, which Kanto's
//! `containers.registry_configurations.<host>.transport{root_ca, client_cert, client_key}`
//! requires. Each distinct `transport` setting here gets its own reqwest client.
//!
//! [`fetch_artifact`] downloads the SoftwareUpdatable feature's artifacts (plain HTTP(S)
//! files, not registry blobs).
//!
//! The pure parts (`reference`, `platform`, `auth`, `hosts`, `protocol`, `digest`) do no I/O
//! and are unit-tested beside the code; `client` does the HTTP.

mod artifact;
mod auth;
mod client;
pub mod digest;
mod error;
pub mod hosts;
pub mod platform;
mod protocol;
pub mod reference;
pub mod throttle;

pub use artifact::{fetch_artifact, ArtifactError};
pub use client::{BlobStream, Manifest, RegistryClient, Resolved, CONNECT_TIMEOUT, READ_TIMEOUT};
pub use digest::{sha256_digest, DigestVerifier};
pub use error::RegistryError;
pub use hosts::{host_settings, HostSettings};
pub use platform::{host_platform, platform_string, select_manifest};
pub use protocol::{
    error_message, manifest_kind, ManifestKind, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX,
    OCI_MANIFEST,
};
pub use reference::Reference;
