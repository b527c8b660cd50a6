//! containerd adapter over the `containerd-client` crate (gRPC on containerd's unix socket).
//!
//! **tonic and containerd types stay inside this module**; the rest of the daemon sees plain
//! types. The connection monitor keeps the daemon up while containerd is away: it retries with
//! a bounded back-off, reports each outage once, and holds an event subscription open while
//! containerd is up, so an outage is noticed the moment the stream breaks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{events_client::EventsClient, version_client::VersionClient};
use containerd_client::services::v1::{PublishRequest, SubscribeRequest};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use tokio::sync::mpsc;

use crate::supervisor::{Pulse, Shutdown, TaskResult};

pub mod client;
pub mod events;
pub mod images;
pub mod metrics;
pub mod runtime;
pub mod tasks;

pub use client::Client;
pub use runtime::Ctrd;

/// Topic of the marker event that proves the event subscription is live.
const SUBSCRIBED_TOPIC: &str = "/leda-cm/subscribed";

/// Longest wait between two connection attempts while containerd is absent.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerdError {
    #[error("containerd unavailable at {socket}: {reason}")]
    Unavailable { socket: PathBuf, reason: String },
    #[error("containerd {call} failed: {message}")]
    Call { call: &'static str, message: String },
}

/// Where containerd listens and which namespace leda-cm works in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub socket: PathBuf,
    pub namespace: String,
}

/// What the monitor tells the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorEvent {
    /// First failed attempt of an outage (later attempts are quiet).
    Waiting {
        reason: String,
    },
    /// Connected and subscribed to events.
    Up {
        version: String,
    },
    Down {
        reason: String,
    },
    /// A task event of our namespace.
    Runtime(crate::runtime::RuntimeEvent),
}

/// A live connection: a tonic channel that reconnects on demand.
#[derive(Debug, Clone)]
pub struct Connection {
    channel: Channel,
    pub endpoint: Endpoint,
}

impl Connection {
    pub async fn open(endpoint: &Endpoint) -> Result<Connection, ContainerdError> {
        let unavailable = |reason: String| ContainerdError::Unavailable {
            socket: endpoint.socket.clone(),
            reason,
        };
        let channel =
            tokio::time::timeout(CALL_TIMEOUT, containerd_client::connect(&endpoint.socket))
                .await
                .map_err(|_| unavailable("connect timed out".into()))?
                .map_err(|e| unavailable(error_chain(&e)))?;
        Ok(Connection {
            channel,
            endpoint: endpoint.clone(),
        })
    }

    pub async fn version(&self) -> Result<String, ContainerdError> {
        let mut client = VersionClient::new(self.channel.clone());
        let reply = tokio::time::timeout(CALL_TIMEOUT, client.version(()))
            .await
            .map_err(|_| ContainerdError::Call {
                call: "version",
                message: "timed out".into(),
            })?
            .map_err(|s| ContainerdError::Call {
                call: "version",
                message: s.message().to_string(),
            })?
            .into_inner();
        Ok(reply.version)
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        if let Ok(ns) = self.endpoint.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", ns);
        }
        req
    }

    async fn publish_marker(&self) -> Result<(), containerd_client::tonic::Status> {
        EventsClient::new(self.channel.clone())
            .publish(self.request(PublishRequest {
                topic: SUBSCRIBED_TOPIC.into(),
                event: Some(prost_types::Any {
                    type_url: "leda-cm.Subscribed".into(),
                    value: Vec::new(),
                }),
            }))
            .await
            .map(|_| ())
    }

    /// Subscribes to our namespace's events, then reports `Up` (so nothing that happens
    /// after the manager looks at containerd is missed), then forwards the task events until
    /// containerd goes away (returns the reason) or shutdown (returns `None`).
    async fn watch_events(
        &self,
        version: String,
        events: &mpsc::Sender<MonitorEvent>,
        shutdown: &mut Shutdown,
        pulse: &mut Pulse,
    ) -> Option<String> {
        let mut client = EventsClient::new(self.channel.clone());
        let filter = format!("namespace=={}", self.endpoint.namespace);
        let subscribe = client.subscribe(self.request(SubscribeRequest {
            filters: vec![filter],
        }));
        tokio::pin!(subscribe);
        // containerd sends the stream's headers with its first event, so the subscription is
        // known to be live only once an event arrived: publish a marker until one does.
        let mut marker = tokio::time::interval(Duration::from_millis(200));
        let mut stream = loop {
            pulse.beat();
            tokio::select! {
                _ = shutdown.wait() => return None,
                p = pulse.wait() => pulse.handle(p).await,
                r = &mut subscribe => match r {
                    Ok(s) => break s.into_inner(),
                    Err(status) => return Some(format!("event subscription failed: {}", status.message())),
                },
                _ = marker.tick() => {
                    if let Err(status) = self.publish_marker().await {
                        return Some(format!("event publish failed: {}", status.message()));
                    }
                }
            }
        };
        if events.send(MonitorEvent::Up { version }).await.is_err() {
            return None;
        }
        loop {
            pulse.beat();
            tokio::select! {
                _ = shutdown.wait() => return None,
                p = pulse.wait() => pulse.handle(p).await,
                next = stream.message() => match next {
                    Ok(Some(envelope)) => {
                        log::trace!("containerd event {}", envelope.topic);
                        if let Some(event) = events::decode(&envelope) {
                            if events.send(MonitorEvent::Runtime(event)).await.is_err() {
                                return None;
                            }
                        }
                    }
                    Ok(None) => return Some("event stream closed".into()),
                    Err(status) => return Some(format!("event stream failed: {}", status.message())),
                },
            }
        }
    }
}

/// tonic's transport errors hide the cause (e.g. "No such file or directory") in the source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Next back-off: doubling from 50 ms up to `MAX_BACKOFF`.
pub fn next_backoff(current: Option<Duration>) -> Duration {
    match current {
        None => FIRST_BACKOFF,
        Some(d) => (d * 2).min(MAX_BACKOFF),
    }
}

/// The connection monitor task (see the module docs).
pub async fn monitor(
    endpoint: Endpoint,
    events: mpsc::Sender<MonitorEvent>,
    mut shutdown: Shutdown,
    mut pulse: Pulse,
) -> TaskResult {
    let mut backoff = None;
    let mut reported_waiting = false;
    loop {
        pulse.beat();
        if shutdown.is_set() {
            return Ok(());
        }
        let attempt = async {
            let conn = Connection::open(&endpoint).await?;
            let version = conn.version().await?;
            Ok::<_, ContainerdError>((conn, version))
        };
        tokio::pin!(attempt);
        // The attempt is never cancelled by the pulse; the loop beats while it waits.
        let result = loop {
            tokio::select! {
                _ = shutdown.wait() => return Ok(()),
                r = &mut attempt => break r,
                p = pulse.wait() => pulse.handle(p).await,
            }
        };
        match result {
            Ok((conn, version)) => {
                backoff = None;
                reported_waiting = false;
                match conn
                    .watch_events(version, &events, &mut shutdown, &mut pulse)
                    .await
                {
                    None => return Ok(()),
                    Some(reason) => {
                        if events.send(MonitorEvent::Down { reason }).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            Err(e) => {
                if !reported_waiting {
                    reported_waiting = true;
                    let reason = e.to_string();
                    if events.send(MonitorEvent::Waiting { reason }).await.is_err() {
                        return Ok(());
                    }
                }
                let delay = next_backoff(backoff);
                backoff = Some(delay);
                if !pulse.sleep(delay, &mut shutdown).await {
                    return Ok(());
                }
            }
        }
    }
}

/// For messages: the socket path as the user configured it.
pub fn describe(socket: &Path) -> String {
    socket.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_bound() {
        let mut d = None;
        let mut seen = Vec::new();
        for _ in 0..8 {
            let next = next_backoff(d);
            seen.push(next.as_millis());
            d = Some(next);
        }
        assert_eq!(seen, vec![50, 100, 200, 400, 800, 1000, 1000, 1000]);
    }
}
