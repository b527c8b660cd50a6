//! Software artifacts over HTTP(S), for the SoftwareUpdatable feature's installs (here
//! because this module is the one that speaks HTTP). Small files only (container
//! descriptions): the body is capped.

use std::time::Duration;

use futures_util::StreamExt;

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("cannot set up the artifact download client: {0}")]
    Setup(String),
    #[error("downloading artifact {url} failed: {reason}")]
    Download { url: String, reason: String },
    #[error("artifact {url} is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
}

const ARTIFACT_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const TOTAL_TIMEOUT: Duration = Duration::from_secs(120);

/// Fetches `url` (http or https, up to 5 redirects), at most `limit` bytes.
pub async fn fetch_artifact(url: &str, limit: usize) -> Result<Vec<u8>, ArtifactError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .connect_timeout(ARTIFACT_CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("leda-cm/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ArtifactError::Setup(e.to_string()))?;
    let fail = |reason: String| ArtifactError::Download {
        url: url.to_string(),
        reason,
    };
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| fail(super::error::cause_chain(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("HTTP status {status}")));
    }
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(ArtifactError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    let mut body = Vec::new();
    let mut stream = super::throttle::paced(response.bytes_stream());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| fail(super::error::cause_chain(&e)))?;
        if body.len() + chunk.len() > limit {
            return Err(ArtifactError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
