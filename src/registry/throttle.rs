//! The download rate limit (`containers.download_rate_limit`), shared by every download of
//! the process: image blobs and software artifacts. The decisions are
//! [`crate::transfer::RateLimiter`]'s; this module holds the one limiter and pauses streams.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::transfer::RateLimiter;

static LIMITER: Mutex<Option<RateLimiter>> = Mutex::new(None);

/// Sets the limit, bytes per second (0: unlimited). Called when a configuration is applied.
pub fn set_rate(rate: u64) {
    let mut l = LIMITER.lock().unwrap_or_else(|p| p.into_inner());
    match l.as_mut() {
        Some(l) => l.set_rate(rate),
        None => *l = Some(RateLimiter::new(rate)),
    }
}

/// How long to pause after `bytes` arrived.
fn pause_for(bytes: usize) -> Duration {
    LIMITER
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_mut()
        .map_or(Duration::ZERO, |l| l.pass(Instant::now(), bytes as u64))
}

/// `stream`, pausing after each chunk as the limit asks: the reader stops reading, TCP's
/// window closes and the sender slows down, so the link carries the limit on average.
pub fn paced<S, E>(stream: S) -> std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, E>> + Send>>
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: Send + 'static,
{
    Box::pin(stream.then(|item| async move {
        if let Ok(chunk) = &item {
            let pause = pause_for(chunk.len());
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        item
    }))
}
