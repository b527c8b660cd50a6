//! The CLI's side of the local API: a tonic channel to the daemon's socket (`/path` or
//! `unix:///path`) or TCP address (`tcp://host:port`), connected eagerly so that an absent
//! daemon is reported at once.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::pb::services::containers::containers_client::ContainersClient;
use super::pb::services::sysinfo::system_info_client::SystemInfoClient;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach container management at {address}: {reason}")]
    Unreachable { address: String, reason: String },
}

#[derive(Clone)]
pub struct ApiClient {
    pub containers: ContainersClient<Channel>,
    pub sysinfo: SystemInfoClient<Channel>,
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

pub async fn connect(host: &str, timeout: Duration) -> Result<ApiClient, ClientError> {
    let unreachable = |reason: String| ClientError::Unreachable {
        address: host.to_string(),
        reason,
    };
    let channel = if let Some(addr) = host.strip_prefix("tcp://") {
        Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| unreachable(chain(&e)))?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect()
            .await
            .map_err(|e| unreachable(chain(&e)))?
    } else {
        let path = host.strip_prefix("unix://").unwrap_or(host).to_string();
        let endpoint = Endpoint::from_static("http://[::]")
            .connect_timeout(timeout)
            .timeout(timeout);
        let connect = endpoint.connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }));
        tokio::time::timeout(timeout, connect)
            .await
            .map_err(|_| unreachable(format!("no answer within {timeout:?}")))?
            .map_err(|e| unreachable(chain(&e)))?
    };
    Ok(ApiClient {
        containers: ContainersClient::new(channel.clone()),
        sysinfo: SystemInfoClient::new(channel),
    })
}
