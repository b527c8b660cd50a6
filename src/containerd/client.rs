//! The containerd client the manager uses: a lazily connecting tonic channel (calls fail
//! with `Unavailable` while containerd is away and work again when it returns), the
//! namespace and lease metadata on every request, and gRPC statuses mapped to
//! `RuntimeError`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use containerd_client::tonic::transport::{Channel, Endpoint};
use containerd_client::tonic::{Code, Request, Status};

use crate::runtime::RuntimeError;

/// The snapshotter leda-cm uses (the one `ctr` uses by default).
pub const SNAPSHOTTER: &str = "overlayfs";

#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) channel: Channel,
    pub namespace: String,
    pub socket: PathBuf,
    /// One writer per blob at a time: containerd locks a content ref per writer.
    pub(crate) blob_locks: Arc<KeyedLocks>,
    /// runc's state root for new containers (`containers.runc_root`); `None`: runc's default.
    pub runc_root: Option<String>,
    /// This daemon process's mark on the leases and work snapshots it makes
    /// (`INSTANCE_LABEL`): what carries another mark was left by an earlier run.
    pub(crate) instance: String,
    /// This run's leases still in use (made, not yet given up): any other lease of this run
    /// is one whose delete failed (containerd away) and goes at the next sweep.
    pub(crate) live_leases: Arc<Mutex<std::collections::HashSet<String>>>,
}

/// Label of the leases and active snapshots leda-cm makes: the daemon run that made them.
pub const INSTANCE_LABEL: &str = "io.leda-cm.instance";
/// Prefix of the IDs of leda-cm's leases.
pub const LEASE_PREFIX: &str = "leda-cm-";

/// Async locks by key, dropped when nobody holds or waits for them.
#[derive(Debug, Default)]
pub struct KeyedLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, w| w.strong_count() > 0);
            match map.get(key).and_then(Weak::upgrade) {
                Some(l) => l,
                None => {
                    let l = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key.to_string(), Arc::downgrade(&l));
                    l
                }
            }
        };
        lock.lock_owned().await
    }
}

impl Client {
    /// A client that connects on first use, and again after containerd restarts.
    pub fn lazy(socket: &Path, namespace: &str) -> Client {
        let path = socket.to_path_buf();
        // The URI is ignored: every connection dials the unix socket.
        let channel = Endpoint::from_static("http://[::]")
            .connect_timeout(Duration::from_secs(5))
            .connect_with_connector_lazy(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            }));
        Client {
            channel,
            namespace: namespace.to_string(),
            socket: socket.to_path_buf(),
            blob_locks: Arc::default(),
            runc_root: None,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            live_leases: Arc::default(),
        }
    }

    /// A request in our namespace, optionally under a lease.
    pub(crate) fn req<T>(&self, message: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(message);
        let md = req.metadata_mut();
        if let Ok(ns) = self.namespace.parse() {
            md.insert("containerd-namespace", ns);
        }
        if let Some(lease) = lease.and_then(|l| l.parse().ok()) {
            md.insert("containerd-lease", lease);
        }
        req
    }
}

/// Maps a gRPC status of `call` on `what` to the manager's error.
pub(crate) fn map_status(call: &'static str, what: &str, status: Status) -> RuntimeError {
    match status.code() {
        Code::NotFound => RuntimeError::NotFound {
            what: what.to_string(),
        },
        Code::AlreadyExists => RuntimeError::AlreadyExists {
            what: what.to_string(),
        },
        Code::Unavailable | Code::Cancelled => RuntimeError::Unavailable(status_text(&status)),
        Code::Unknown if status.message().contains("transport error") => {
            RuntimeError::Unavailable(status_text(&status))
        }
        _ => RuntimeError::Call {
            call,
            message: status_text(&status),
        },
    }
}

fn status_text(status: &Status) -> String {
    let mut text = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&t);
        }
        source = s.source();
    }
    if text.is_empty() {
        text = format!("{:?}", status.code());
    }
    text
}

pub(crate) fn time(ts: &Option<prost_types::Timestamp>) -> Option<SystemTime> {
    let ts = ts.as_ref()?;
    if ts.seconds <= 0 {
        return None;
    }
    // Whatever containerd sends: no overflow (a time past what SystemTime holds is none).
    let nanos = ts.nanos.clamp(0, 999_999_999) as u32;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(ts.seconds as u64, nanos))
}

#[cfg(test)]
mod tests {
    #[test]
    fn containerd_times_never_overflow() {
        use prost_types::Timestamp;
        let t = |seconds, nanos| super::time(&Some(Timestamp { seconds, nanos }));
        assert_eq!(t(0, 5), None);
        assert_eq!(t(-1, 0), None);
        assert!(t(1_700_000_000, 1).is_some());
        assert!(t(1_700_000_000, i32::MAX).is_some());
        let _ = t(i64::MAX, i32::MAX); // none or a time: never a panic
        assert_eq!(super::time(&None), None);
    }
}
