//! `Runtime` on containerd: the client for containers and tasks, plus the registry client
//! for pulls (replaced when the registry configuration changes at run time).

use std::sync::{Arc, RwLock};

use super::client::Client;
use crate::config::ContainersConfig;
use crate::registry::{Reference, RegistryClient};
use crate::runtime::{
    CreateRequest, ExitInfo, ImageInfo, Metrics, ProgressFn, Runtime, RuntimeContainer,
    RuntimeError, TaskInfo, TaskIo,
};
use crate::trust::{Signature, SignatureKind};

pub struct Ctrd {
    pub client: Client,
    registry: RwLock<Arc<RegistryClient>>,
    /// One pull per image at a time; a second waits and then finds the image present.
    pulls: super::client::KeyedLocks,
    /// The decryption keys of encrypted images (`containers.image_dec_keys`).
    keys: crate::trust::ocicrypt::Keys,
}

impl Ctrd {
    pub fn new(
        client: Client,
        containers: &ContainersConfig,
    ) -> Result<Ctrd, crate::registry::RegistryError> {
        // The configuration check loaded these already and refused what cannot be used;
        // failing now (a file gone since) leaves no key: encrypted images are refused.
        let keys = crate::trust::ocicrypt::Keys::load(
            &containers.image_dec_keys,
            &containers.image_dec_recipients,
        )
        .unwrap_or_else(|e| {
            log::error!("{e}: encrypted images will be refused");
            Default::default()
        });
        Ok(Ctrd {
            client,
            registry: RwLock::new(Arc::new(RegistryClient::new(containers)?)),
            pulls: Default::default(),
            keys,
        })
    }

    /// New registry settings (credentials, TLS, insecure hosts); pulls under way keep the
    /// settings they started with.
    pub fn set_registries(
        &self,
        containers: &ContainersConfig,
    ) -> Result<(), crate::registry::RegistryError> {
        let next = Arc::new(RegistryClient::new(containers)?);
        *self.registry.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    fn registry(&self) -> Arc<RegistryClient> {
        self.registry
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Runtime for Ctrd {
    async fn image(&self, name: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        self.client.local_image(name, &self.keys).await
    }

    async fn pull(
        &self,
        name: &str,
        progress: Option<ProgressFn>,
    ) -> Result<ImageInfo, RuntimeError> {
        let _one_at_a_time = self.pulls.lock(name).await;
        let registry = self.registry();
        self.client
            .pull_image(&registry, name, progress, &self.keys)
            .await
    }

    async fn signatures(
        &self,
        name: &str,
        digest: &str,
        kind: SignatureKind,
    ) -> Result<Vec<Signature>, RuntimeError> {
        let fail = |e: &dyn std::fmt::Display| RuntimeError::Pull {
            image: name.to_string(),
            reason: format!("its {} signatures cannot be read: {e}", kind.name()),
        };
        let reference = Reference::parse(name).map_err(|e| fail(&e))?;
        self.registry()
            .signatures(&reference, digest, kind)
            .await
            .map_err(|e| fail(&e))
    }

    async fn remote_digest(&self, name: &str) -> Result<String, RuntimeError> {
        let fail = |e: &dyn std::fmt::Display| RuntimeError::Pull {
            image: name.to_string(),
            reason: e.to_string(),
        };
        let reference = Reference::parse(name).map_err(|e| fail(&e))?;
        let resolved = self
            .registry()
            .resolve(&reference)
            .await
            .map_err(|e| fail(&e))?;
        Ok(resolved.digest.to_string())
    }

    async fn images(&self) -> Result<Vec<String>, RuntimeError> {
        self.client.list_images().await
    }

    async fn remove_image(&self, name: &str) -> Result<(), RuntimeError> {
        self.client.delete_image(name).await
    }

    async fn create(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        self.client.create_container(req).await
    }

    async fn create_task(&self, id: &str, io: &TaskIo) -> Result<u32, RuntimeError> {
        self.client.create_task(id, io).await
    }

    async fn start_created(&self, id: &str) -> Result<(), RuntimeError> {
        self.client.start_created(id).await
    }

    async fn kill(&self, id: &str, signal: u32) -> Result<(), RuntimeError> {
        self.client.kill_task(id, signal).await
    }

    async fn wait(&self, id: &str) -> Result<ExitInfo, RuntimeError> {
        self.client.wait_task(id).await
    }

    async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        args: &[String],
        timeout: std::time::Duration,
    ) -> Result<u32, RuntimeError> {
        self.client.exec(id, exec_id, args, timeout).await
    }

    async fn delete_task(&self, id: &str) -> Result<Option<ExitInfo>, RuntimeError> {
        self.client.delete_task(id).await
    }

    async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.client.pause_task(id).await
    }

    async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.client.resume_task(id).await
    }

    async fn task(&self, id: &str) -> Result<Option<TaskInfo>, RuntimeError> {
        self.client.get_task(id).await
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.client.remove_container(id).await
    }

    async fn list(&self) -> Result<Vec<RuntimeContainer>, RuntimeError> {
        self.client.list_containers().await
    }

    async fn sweep_leftovers(&self, keep: &[String]) -> Result<Vec<String>, RuntimeError> {
        self.client.sweep_leftovers(keep).await
    }

    async fn metrics(&self, id: &str) -> Result<Metrics, RuntimeError> {
        self.client.task_metrics(id).await
    }

    async fn all_metrics(&self) -> Result<Vec<(String, Metrics)>, RuntimeError> {
        self.client.all_task_metrics().await
    }

    async fn update_resources(
        &self,
        id: &str,
        spec: &serde_json::Value,
    ) -> Result<(), RuntimeError> {
        self.client.update_resources(id, spec).await
    }
}
