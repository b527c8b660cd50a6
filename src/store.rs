//! File-system adapter: configuration sources, the daemon's directories, the
//! single-instance lock, atomic writes and the per-container records.
//!
//! **Every state file is written to a temp file in the same directory, fsynced, renamed over
//! the old one, and the directory fsynced**, so a crash or power cut leaves the old or the new
//! version, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Source;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read config file {path}: {source}")]
    ReadConfig { path: PathBuf, source: io::Error },
    #[error("cannot read config drop-in dir {path}: {source}")]
    ReadDropins { path: PathBuf, source: io::Error },
    #[error("cannot create {what} {path}: {source}")]
    CreateDir {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path} is not writable: {source}")]
    NotWritable {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot open lock file {path}: {source}")]
    LockOpen { path: PathBuf, source: io::Error },
    #[error("another leda-cm instance{} holds the lock {path}; only one may run per runtime dir",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning { path: PathBuf, pid: Option<u32> },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("writing {path} did not finish: {message}")]
    Blocking { path: PathBuf, message: String },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot encode {path}: {source}")]
    Encode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} is not valid: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The main configuration file. A missing file is an error only when it was asked for
/// explicitly (`--cfg-file`); otherwise the defaults apply.
pub fn read_main_config(path: &Path, required: bool) -> Result<Option<Source>, StoreError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(Source::main(path.display().to_string(), text))),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => Ok(None),
        Err(source) => Err(StoreError::ReadConfig {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The drop-ins `<dir>/*.json` in name order (none when the directory does not exist). A
/// drop-in readable by every user is named in `warnings`: drop-ins may hold credentials.
pub fn read_dropins(dir: &Path, warnings: &mut Vec<String>) -> Result<Vec<Source>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::ReadDropins {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort_unstable();
    let mut sources = Vec::new();
    for path in paths {
        let read_err = |source| StoreError::ReadConfig {
            path: path.clone(),
            source,
        };
        let meta = fs::metadata(&path).map_err(read_err)?;
        if meta.mode() & 0o004 != 0 {
            warnings.push(format!(
                "config drop-in {} is readable by every user (mode {:o}); it may hold \
                 credentials, use mode 0600",
                path.display(),
                meta.mode() & 0o777
            ));
        }
        let text = fs::read_to_string(&path).map_err(read_err)?;
        sources.push(Source::dropin(path.display().to_string(), text));
    }
    Ok(sources)
}

/// Creates `dir` (and its parents) if needed, with `mode` for what it creates, and proves it
/// is writable by creating and removing a probe file.
pub fn prepare_dir(dir: &Path, mode: u32, what: &'static str) -> Result<(), StoreError> {
    if !dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(dir)
            .map_err(|source| StoreError::CreateDir {
                what,
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let probe = dir.join(format!(".leda-cm-probe-{}", std::process::id()));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe"));
    let _ = fs::remove_file(&probe);
    result.map_err(|source| StoreError::NotWritable {
        what,
        path: dir.to_path_buf(),
        source,
    })
}

/// Held for the daemon's lifetime; the kernel releases the lock when the process ends,
/// however it ends.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}

pub fn acquire_lock(path: &Path) -> Result<InstanceLock, StoreError> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|source| StoreError::LockOpen {
            path: path.to_path_buf(),
            source,
        })?;
    // flock(2) rather than File::try_lock, which needs Rust 1.89 (leda-cm's MSRV is 1.75).
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let source = io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::EWOULDBLOCK) {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(StoreError::AlreadyRunning {
                path: path.to_path_buf(),
                pid: text.trim().parse().ok(),
            });
        }
        return Err(StoreError::LockOpen {
            path: path.to_path_buf(),
            source,
        });
    }
    let write_pid = file
        .set_len(0)
        .and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes()));
    write_pid.map_err(|source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(InstanceLock { _file: file })
}

/// Atomically replaces `path` with `bytes` (see the module docs), with file mode `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let err = |source| StoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// Removes the temp files (`.NAME.tmp-PID`, see `write_atomic`) that a writer killed before
/// its rename left under `dir` (down to `depth` levels of subdirectories), when the process
/// that wrote them is gone. Returns the paths removed. Called at start-up, under the lock.
pub fn remove_stale_temp_files(dir: &Path, depth: u32) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if depth > 0 {
                removed.extend(remove_stale_temp_files(&path, depth - 1));
            }
            continue;
        }
        let name = entry.file_name();
        let Some(pid) = temp_file_writer(&name.to_string_lossy()) else {
            continue;
        };
        let alive = pid != 0 && Path::new(&format!("/proc/{pid}")).exists();
        if (!alive || pid == std::process::id()) && fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// The PID in a `write_atomic` temp file name (`.NAME.tmp-PID`).
fn temp_file_writer(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let (_, pid) = rest.rsplit_once(".tmp-")?;
    pid.parse().ok()
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: Serialize>(
    path: &Path,
    value: &T,
    mode: u32,
) -> Result<(), StoreError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes, mode)
}

/// Removes a file and fsyncs its directory; a file already gone is fine.
pub fn remove_durably(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StoreError::Write {
                path: path.to_path_buf(),
                source,
            })
        }
    }
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    Ok(())
}

/// The per-container records: `<state dir>/containers/<id>/config.json` in Kanto's internal
/// format (with leda-cm's `leda_cm` block). The container's directory also holds its
/// generated `/etc` files and, by default, its json-file logs.
#[derive(Debug, Clone)]
pub struct ContainerRecords {
    dir: PathBuf,
}

pub const RECORD_FILE: &str = "config.json";

impl ContainerRecords {
    pub fn new(state_dir: &Path) -> ContainerRecords {
        ContainerRecords {
            dir: state_dir.join("containers"),
        }
    }

    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Every readable record; unreadable ones are reported in `warnings` and skipped.
    pub fn load_all(&self, warnings: &mut Vec<String>) -> Vec<crate::model::Container> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path().join(RECORD_FILE);
            match fs::read(&path) {
                Ok(bytes) => match crate::model::container_from_json(&bytes) {
                    Ok(c) => out.push(c),
                    Err(e) => warnings.push(format!(
                        "container record {} is not valid: {e}",
                        path.display()
                    )),
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A directory without a record belongs to no container: what a create
                    // or a removal cut short by a crash left (generated /etc files, logs).
                    if entry.path().is_dir() && fs::remove_dir_all(entry.path()).is_ok() {
                        warnings.push(format!(
                            "removed {}: no container record in it",
                            entry.path().display()
                        ));
                    }
                }
                Err(e) => warnings.push(format!(
                    "cannot read container record {}: {e}",
                    path.display()
                )),
            }
        }
        out.sort_unstable_by(|a: &crate::model::Container, b| {
            a.created
                .cmp(&b.created)
                .then(a.container_id.cmp(&b.container_id))
        });
        out
    }

    /// The container's directory, created (mode 0700) when missing.
    pub fn prepare_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.dir_of(id);
        if !dir.is_dir() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|source| StoreError::Write {
                    path: dir.clone(),
                    source,
                })?;
        }
        Ok(dir)
    }

    pub fn save(&self, c: &crate::model::Container) -> Result<(), StoreError> {
        let dir = self.prepare_dir(&c.container_id)?;
        write_json_atomic(&dir.join(RECORD_FILE), c, 0o600)
    }

    /// `save` on the blocking pool: its two fsyncs never stall the runtime's only thread.
    pub async fn save_async(&self, c: &crate::model::Container) -> Result<(), StoreError> {
        let (this, c) = (self.clone(), c.clone());
        let path = self.dir_of(&c.container_id);
        off_thread(path, move || this.save(&c)).await
    }

    /// `remove` on the blocking pool.
    pub async fn remove_async(&self, id: &str) -> Result<(), StoreError> {
        let (this, id) = (self.clone(), id.to_string());
        off_thread(self.dir_of(&id), move || this.remove(&id)).await
    }

    /// Removes the record and everything in the container's directory.
    pub fn remove(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.dir_of(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(StoreError::Write { path: dir, source }),
        }
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Write {
                path: self.dir.clone(),
                source,
            })
    }
}

/// Runs a durable write (fsyncs) on tokio's blocking pool, so the runtime's thread keeps
/// polling every loop meanwhile.
pub async fn off_thread<T: Send + 'static>(
    path: PathBuf,
    write: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(write)
        .await
        .unwrap_or_else(|e| {
            Err(StoreError::Blocking {
                path,
                message: e.to_string(),
            })
        })
}

/// Reads a JSON state file; `None` when it does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Decode {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leda-cm-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn records_are_written_off_the_runtime_thread() {
        let d = tmpdir("off-thread");
        let records = ContainerRecords::new(&d);
        let c: crate::model::Container =
            serde_json::from_value(serde_json::json!({"container_id": "x", "container_name": "x"}))
                .unwrap();
        let runtime_thread = std::thread::current().id();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let on = off_thread(d.clone(), || Ok(std::thread::current().id()))
                .await
                .unwrap();
            assert_ne!(on, runtime_thread, "the write ran on the runtime's thread");
            records.save_async(&c).await.unwrap();
            assert!(records.dir_of("x").join(RECORD_FILE).is_file());
            records.remove_async("x").await.unwrap();
            assert!(!records.dir_of("x").exists());
        });
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let d = tmpdir("atomic");
        let p = d.join("state.json");
        write_json_atomic(&p, &serde_json::json!({"version": 1}), 0o600).unwrap();
        write_json_atomic(&p, &serde_json::json!({"version": 2}), 0o600).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        assert_eq!(v["version"], 2);
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        remove_durably(&p).unwrap();
        remove_durably(&p).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn stale_temp_files_and_recordless_dirs_are_cleaned() {
        let d = tmpdir("stale");
        let records = ContainerRecords::new(&d);
        let c = crate::model::Container {
            container_id: "kept".into(),
            ..Default::default()
        };
        records.save(&c).unwrap();
        // A writer that died (no such PID), one that still runs (us: at start-up no other
        // writer of ours exists), and a live foreign one (PID 1) whose file is left alone.
        let dead = d.join("containers/kept/.config.json.tmp-4000000000");
        let ours = d.join(format!(".client-id.tmp-{}", std::process::id()));
        let live = d.join(".registries.json.tmp-1");
        for f in [&dead, &ours, &live] {
            fs::write(f, b"partial").unwrap();
        }
        fs::create_dir_all(d.join("containers/empty")).unwrap();
        fs::create_dir_all(d.join("containers/half/etc")).unwrap();
        fs::write(d.join("containers/half/hosts"), b"127.0.0.1 localhost\n").unwrap();

        let mut removed = remove_stale_temp_files(&d, 3);
        removed.sort();
        let mut want = vec![dead.clone(), ours.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(live.exists());

        let mut warnings = Vec::new();
        let loaded = records.load_all(&mut warnings);
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].container_id, "kept");
        assert!(!d.join("containers/empty").exists());
        assert!(!d.join("containers/half").exists());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(d.join("containers/kept/config.json").exists());
        assert_eq!(temp_file_writer(".x.json.tmp-12"), Some(12));
        assert_eq!(temp_file_writer("x.json.tmp-12"), None);
        assert_eq!(temp_file_writer(".x.json.tmp-abc"), None);
    }

    #[test]
    fn container_records_round_trip() {
        let d = tmpdir("records");
        let records = ContainerRecords::new(&d);
        let mut warnings = Vec::new();
        assert!(records.load_all(&mut warnings).is_empty());
        let c = crate::model::Container {
            container_id: "abc".into(),
            container_name: "web".into(),
            ..Default::default()
        };
        records.save(&c).unwrap();
        let dir = records.dir_of("abc");
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        fs::create_dir_all(d.join("containers/broken")).unwrap();
        fs::write(d.join("containers/broken/config.json"), "{not json").unwrap();
        let loaded = records.load_all(&mut warnings);
        assert_eq!(loaded, vec![c]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        records.remove("abc").unwrap();
        records.remove("abc").unwrap();
        assert!(!dir.exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn lock_is_exclusive_and_names_the_holder() {
        let d = tmpdir("lock");
        let p = d.join("x.lock");
        let first = acquire_lock(&p).unwrap();
        match acquire_lock(&p) {
            Err(StoreError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id()))
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        acquire_lock(&p).unwrap();
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn dropins_in_name_order_and_loose_modes_warned() {
        let d = tmpdir("dropins");
        let main = d.join("main.json");
        fs::write(&main, "{}").unwrap();
        let dropins = d.join("config.d");
        fs::create_dir(&dropins).unwrap();
        fs::write(dropins.join("20-b.json"), "{\"b\":1}").unwrap();
        fs::write(dropins.join("10-a.json"), "{\"a\":1}").unwrap();
        fs::write(dropins.join("ignored.txt"), "x").unwrap();
        fs::set_permissions(dropins.join("20-b.json"), fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(dropins.join("10-a.json"), fs::Permissions::from_mode(0o600)).unwrap();
        let mut warnings = Vec::new();
        let s = read_dropins(&dropins, &mut warnings).unwrap();
        let texts: Vec<_> = s.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(texts, vec!["{\"a\":1}", "{\"b\":1}"]);
        assert!(s.iter().all(|s| s.dropin));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("20-b.json"));
        assert!(read_dropins(&d.join("nope"), &mut warnings)
            .unwrap()
            .is_empty());

        assert!(read_main_config(&main, true).unwrap().is_some());
        let missing = d.join("missing.json");
        assert!(read_main_config(&missing, true).is_err());
        assert!(read_main_config(&missing, false).unwrap().is_none());
        fs::remove_dir_all(&d).unwrap();
    }
}
