//! Container logs: the daemon's capture through fifos, the json-file log driver process, the
//! reader of their files, and Kanto's size strings.
//!
//! # Who reads a task's output
//!
//! By default the daemon itself (`capture`, `containers.log_capture: "daemon"`): each task's
//! stdout and stderr are fifos in the runtime dir, one thread per task reads them, and the
//! next daemon reads on after a restart (what a container wrote meanwhile waits in the fifo).
//! With `log_capture: "driver"`, and always for a container whose log `root_dir` is its own
//! (the daemon may write only to its state and runtime dirs), the task gets a `binary://`
//! URI instead and the shim runs `leda-cm-logd` as its log driver, as below. Both write the
//! same files through [`writer::JsonFileWriter`] and read the pipes with the same loop.
//!
//! # How the logs are captured: containerd's `binary://` log URI
//!
//! leda-cm creates a container's task with stdout = stderr = a `binary://` URI (built by
//! [`DriverOptions::to_uri`]) and no terminal. containerd's runc shim (v2) then starts that
//! binary itself, as **its** child, so capture goes on while leda-cm restarts, is killed or
//! upgraded, and while containerd restarts. What the shim of containerd 1.6 does, as seen on
//! this machine (containerd 1.6.20, `containerd-shim-runc-v2`):
//!
//! - **argv**: the URI's path is the program (`argv[0]`); each query key and its first value
//!   follow as two separate arguments, `KEY VALUE`, in **random order** (Go map iteration;
//!   a repeated key keeps its first value; `?flag` gives `flag ""`). Values arrive
//!   percent-decoded (`+` becomes a space), so every value must be percent-encoded.
//!   leda-cm therefore reads `argv[1..]` as unordered `KEY VALUE` pairs and recognises the
//!   log driver by the key `log-driver` at any key position (`src/main.rs`).
//! - **environment**: only `CONTAINER_ID` and `CONTAINER_NAMESPACE` (no `PATH`); the working
//!   directory is the task's bundle under containerd's state dir.
//! - **fds**: 0, 1 and 2 are `/dev/null`; 3 is the read end of the container's stdout pipe,
//!   4 of its stderr pipe, 5 the write end of the "ready" pipe. Capabilities are the shim's
//!   (all of root's), no_new_privs is off.
//! - **readiness**: task creation (`ctr run` / `Tasks.Create`) blocks until fd 5 is closed
//!   (or a byte written), with no time limit; the driver closes it once its log file is open.
//! - **end**: the shim keeps the pipes' write ends open after the container exits, so the
//!   driver sees EOF only when the task is **deleted**: the shim then closes the pipes,
//!   sends SIGTERM right after, waits up to 12 s for the driver to exit and then SIGKILLs it
//!   (the delete call waits for that). The driver drains both pipes to EOF and exits; SIGTERM
//!   only bounds how long it keeps waiting for EOF.
//! - **failure**: if the driver exits while the container runs, the container's writes fail
//!   with EPIPE (a busybox shell exits on it). The driver therefore never exits on a write
//!   error: it drops the line (counted) and retries opening the file.
//!
//! # Files
//!
//! Docker's json-file format, in `DIR/json.log`, one JSON object per line:
//! `{"log":"hello\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}`. A line
//! longer than 16 KiB is split into 16 KiB pieces without `\n`; a last line without newline
//! is written as is when the pipe ends. Rotation as in Kanto: when the next entry would take
//! `json.log` beyond `max-size`, `json.log.(i-1)` becomes `json.log.i` (the oldest,
//! `json.log.(max-files - 1)`, is replaced), `json.log` becomes `json.log.1` and a new
//! `json.log` starts; `max-files` counts the live file too.

pub mod capture;
pub mod driver;
pub mod format;
pub mod options;
pub mod reader;
pub mod size;
pub mod writer;

pub use driver::run_driver;
pub use format::{LogEntry, Stream};
pub use options::{DriverOptions, Mode};
pub use reader::{follow, read_tail, Position};
pub use size::parse_size;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The live log file's name in a container's log directory.
pub const LOG_FILE: &str = "json.log";

/// Longest piece of a line in one entry, as Docker (16 KiB); longer lines are split.
pub const MAX_LINE: usize = 16 * 1024;

/// `DIR/json.log`.
pub fn live_file(dir: &Path) -> PathBuf {
    dir.join(LOG_FILE)
}

/// `DIR/json.log.N`, the N-th newest rotated file (N ≥ 1).
pub fn rotated_file(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{LOG_FILE}.{n}"))
}

/// N for a file named `json.log.N` (N ≥ 1), else None.
pub fn rotation_index(file_name: &str) -> Option<u32> {
    let digits = file_name.strip_prefix(LOG_FILE)?.strip_prefix('.')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n >= 1)
}

/// The log files in `dir`, oldest first: `json.log.N` … `json.log.1`, then `json.log` if it
/// exists. A missing directory has none.
pub fn log_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other?,
    };
    let mut rotated = Vec::new();
    let mut live = None;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        match name.to_str() {
            Some(LOG_FILE) => live = Some(entry.path()),
            Some(n) => rotated.extend(rotation_index(n).map(|i| (i, entry.path()))),
            None => {}
        }
    }
    rotated.sort_unstable_by_key(|(n, _)| std::cmp::Reverse(*n));
    Ok(rotated.into_iter().map(|(_, p)| p).chain(live).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_indexes() {
        for (name, want) in [
            ("json.log.1", Some(1)),
            ("json.log.12", Some(12)),
            ("json.log", None),
            ("json.log.", None),
            ("json.log.0", None),
            ("json.log.+1", None),
            ("json.log.1.tmp", None),
            ("xjson.log.1", None),
        ] {
            assert_eq!(rotation_index(name), want, "{name}");
        }
        assert_eq!(
            rotated_file(Path::new("/d"), 3),
            PathBuf::from("/d/json.log.3")
        );
    }

    #[test]
    fn files_oldest_first() {
        let dir = std::env::temp_dir().join(format!("leda-cm-logs-{}", std::process::id()));
        assert!(log_files(&dir).unwrap().is_empty());
        fs::create_dir_all(&dir).unwrap();
        for name in [
            "json.log.2",
            "json.log",
            "json.log.10",
            "json.log.1",
            "other",
            "json.log.x",
        ] {
            fs::write(dir.join(name), "").unwrap();
        }
        let names: Vec<_> = log_files(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["json.log.10", "json.log.2", "json.log.1", "json.log"]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
