//! Image trust at the manager: every container is created from an image only after the
//! configured verifier accepted it (`trust::Verifier`), whichever path asked (gRPC/CLI,
//! update agent, twin, manifests): [`Manager::ensure_image`] and [`Manager::pull_image`]
//! both end here.
//!
//! Signatures that verified are kept in `<state>/trust/<kind>/<hex>.json`, so a create from
//! an image already present verifies again (the policy, the stores or the clock may have
//! changed) without asking the registry: offline devices keep working, and the cost is the
//! cryptography alone. When the kept signatures no longer verify, or there are none, the
//! registry is asked again.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Manager, ManagerError};
use crate::registry::Reference;
use crate::runtime::{ImageInfo, Runtime};
use crate::store;
use crate::trust::{Signature, SignatureKind, Target, Verdict};

const CACHE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Cached {
    version: u32,
    signatures: Vec<Signature>,
}

/// `registry/repository` of an image name, as trust policies name scopes.
pub fn repository_of(name: &str) -> Option<String> {
    let r = Reference::parse(name).ok()?;
    Some(format!("{}/{}", r.registry(), r.repository()))
}

impl<R: Runtime> Manager<R> {
    fn trust_cache(&self, kind: SignatureKind, digest: &str) -> PathBuf {
        let hex = digest.split_once(':').map_or(digest, |(_, h)| h);
        self.settings
            .state_dir
            .join("trust")
            .join(kind.name())
            .join(format!("{hex}.json"))
    }

    /// Refuses an image the configured verifier does not accept (nothing is created).
    pub(super) async fn check_trust(&self, image: &ImageInfo) -> Result<(), ManagerError> {
        let untrusted = |reason: String| {
            ManagerError::Untrusted(crate::trust::TrustError::Untrusted {
                image: image.name.clone(),
                reason,
            })
        };
        let repository = repository_of(&image.name)
            .ok_or_else(|| untrusted("its name is not a valid image reference".into()))?;
        let Some(kind) = self.settings.trust.needs(&repository) else {
            return Ok(());
        };
        let target = Target {
            repository,
            image: image.name.clone(),
            digest: image.digest.clone(),
            media_type: image.media_type.clone(),
            size: image.size,
        };
        let now = SystemTime::now();
        let started = std::time::Instant::now();
        let cache = self.trust_cache(kind, &image.digest);
        match store::read_json::<Cached>(&cache) {
            Ok(Some(kept)) if kept.version == CACHE_VERSION => {
                if let Ok(verdict) = self.settings.trust.verify(&target, &kept.signatures, now) {
                    note(&target, &verdict, "kept", started.elapsed());
                    return Ok(());
                }
            }
            Ok(_) => {}
            Err(e) => log::warn!("ignoring the kept signatures of {}: {e}", image.name),
        }
        let signatures = self
            .rt
            .signatures(&image.name, &image.digest, kind)
            .await
            .map_err(|e| untrusted(e.to_string()))?;
        let verdict = self
            .settings
            .trust
            .verify(&target, &signatures, now)
            .map_err(ManagerError::Untrusted)?;
        note(&target, &verdict, "fetched", started.elapsed());
        if matches!(verdict, Verdict::Verified { .. }) {
            let dir = cache.parent().map(PathBuf::from).unwrap_or_default();
            let kept = Cached {
                version: CACHE_VERSION,
                signatures,
            };
            let path = cache.clone();
            let saved = store::off_thread(cache, move || {
                store::prepare_dir(&dir, 0o700, "trust cache dir")?;
                store::write_json_atomic(&path, &kept, 0o600)
            })
            .await;
            if let Err(e) = saved {
                log::warn!("cannot keep the signatures of {}: {e}", image.name);
            }
        }
        Ok(())
    }
}

fn note(target: &Target, verdict: &Verdict, source: &str, took: std::time::Duration) {
    match verdict {
        Verdict::Verified { by } => log::info!(
            "image {} ({}) verified: signed by {by} ({source} signatures, {:.1} ms)",
            target.image,
            target.digest,
            took.as_secs_f64() * 1000.0
        ),
        Verdict::Skipped => {}
        Verdict::Logged { warnings } => {
            for w in warnings {
                log::warn!(
                    "image {} ({}) used although {w}",
                    target.image,
                    target.digest
                );
            }
        }
    }
}
