//! Adapter: directory changes through Linux inotify (`libc`), for the configuration
//! drop-ins and the deployment manifests, so that an integrator's change applies without a
//! restart. Only `*.json` names count (atomic writes rename a temporary name into place).

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start watching for file changes: {0}")]
    Init(io::Error),
    #[error("cannot watch {path}: {source}")]
    Add { path: String, source: io::Error },
    #[error("reading file change events: {0}")]
    Read(io::Error),
}

/// Which watched directory changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Watched {
    ConfigDropIns,
    Manifests,
}

pub struct DirWatch {
    fd: AsyncFd<OwnedFd>,
    dirs: HashMap<i32, Watched>,
}

const MASK: u32 = libc::IN_CLOSE_WRITE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM | libc::IN_DELETE;

impl DirWatch {
    pub fn new() -> Result<DirWatch, WatchError> {
        // SAFETY: inotify_init1 has no preconditions; the result is checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(WatchError::Init(io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: the AsyncFd owns the OwnedFd, which stays open and keeps its descriptor
        // until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE) }
            .map_err(|e| WatchError::Init(io::Error::other(e.to_string())))?;
        Ok(DirWatch {
            fd,
            dirs: HashMap::new(),
        })
    }

    pub fn add(&mut self, dir: &Path, which: Watched) -> Result<(), WatchError> {
        let err = |source| WatchError::Add {
            path: dir.display().to_string(),
            source,
        };
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(|e| err(io::Error::other(e)))?;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        let wd =
            unsafe { libc::inotify_add_watch(self.fd.get_ref().as_raw_fd(), c.as_ptr(), MASK) };
        if wd < 0 {
            return Err(err(io::Error::last_os_error()));
        }
        self.dirs.insert(wd, which);
        Ok(())
    }

    /// Waits for changes to `*.json` files; returns the directories that changed.
    pub async fn changed(&mut self) -> Result<Vec<Watched>, WatchError> {
        loop {
            let mut guard = self.fd.readable().await.map_err(WatchError::Read)?;
            let mut buf = [0u8; 4096];
            let n = match guard.try_io(|fd| {
                // SAFETY: reading into a buffer we own, of its length.
                let n = unsafe {
                    libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            }) {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(WatchError::Read(e)),
                Err(_would_block) => continue,
            };
            let found = parse_events(&buf[..n], &self.dirs);
            if !found.is_empty() {
                return Ok(found);
            }
        }
    }
}

/// The watched dirs named by a buffer of `inotify_event`s, for `*.json` names only.
fn parse_events(buf: &[u8], dirs: &HashMap<i32, Watched>) -> Vec<Watched> {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= buf.len() {
        // SAFETY: the kernel wrote a whole inotify_event header here; read unaligned.
        let ev: libc::inotify_event =
            unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
        let name_len = ev.len as usize;
        let name_end = (at + HEADER + name_len).min(buf.len());
        let name = &buf[at + HEADER..name_end];
        let name = name.split(|b| *b == 0).next().unwrap_or(&[]);
        if name.ends_with(b".json") {
            if let Some(w) = dirs.get(&ev.wd) {
                if !out.contains(w) {
                    out.push(*w);
                }
            }
        }
        at += HEADER + name_len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_json_files_only() {
        let dir = std::env::temp_dir().join(format!("leda-cm-watch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let mut w = DirWatch::new().unwrap();
                w.add(&dir, Watched::Manifests).unwrap();
                std::fs::write(dir.join("ignored.tmp"), "x").unwrap();
                std::fs::write(dir.join("app.json.tmp"), "{}").unwrap();
                std::fs::rename(dir.join("app.json.tmp"), dir.join("app.json")).unwrap();
                let got = tokio::time::timeout(std::time::Duration::from_secs(5), w.changed())
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(got, [Watched::Manifests]);
                assert!(w.add(&dir.join("missing"), Watched::ConfigDropIns).is_err());
            });
    }
}
