//! Appending entries to `DIR/json.log` and rotating it by size. Adapter: the file system.
//!
//! Each entry goes to the file in one `write(2)` on an `O_APPEND` descriptor, so a reader
//! sees whole entries except while a write is in progress. Rotation happens before an entry
//! that would take the file beyond `max_size` (an entry larger than `max_size` gets a file of
//! its own); `json.log` is renamed, never truncated, so a follower notices by its inode.
//!
//! A failed write never ends the driver (the container would get EPIPE): the file is closed,
//! the entry counted as lost, and the file reopened at the next entry, at most once a
//! second; the first entry after that is a note with the count.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::format::{encode, Stream};
use super::{live_file, rotated_file, rotation_index};

/// Wait between attempts to reopen the file after a failure.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("cannot create log directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot open log file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot write log file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot rotate log file {path}: {source}")]
    Rotate { path: PathBuf, source: io::Error },
    #[error("log file {path} is unavailable after an error, retrying within a second")]
    Unavailable { path: PathBuf },
}

/// A json-file log: `json.log` in its directory, plus up to `max_files - 1` rotated files.
#[derive(Debug)]
pub struct JsonFileWriter {
    dir: PathBuf,
    max_size: Option<u64>,
    max_files: u32,
    file: Option<File>,
    size: u64,
    /// The file ends in an incomplete entry (a driver killed mid-write): start with `\n`.
    torn: bool,
    /// After a failure, no new attempt to open before this.
    retry_at: Option<Instant>,
    /// Entries lost since the last successful write.
    lost: u64,
    buf: Vec<u8>,
}

impl JsonFileWriter {
    /// A writer for `dir`; nothing is opened yet.
    pub fn new(dir: &Path, max_size: Option<u64>, max_files: u32) -> JsonFileWriter {
        JsonFileWriter {
            dir: dir.to_path_buf(),
            max_size: max_size.filter(|&m| m > 0),
            max_files: max_files.max(1),
            file: None,
            size: 0,
            torn: false,
            retry_at: None,
            lost: 0,
            buf: Vec::new(),
        }
    }

    /// Opens (creating the directory and file if needed) unless already open, and removes
    /// rotated files beyond `max_files` left by an earlier configuration.
    pub fn open(&mut self) -> Result<(), WriterError> {
        if self.file.is_some() {
            return Ok(());
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return Err(WriterError::Unavailable {
                path: live_file(&self.dir),
            });
        }
        let result = self.open_now();
        self.retry_at = result.is_err().then(|| Instant::now() + RETRY);
        result
    }

    fn open_now(&mut self) -> Result<(), WriterError> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&self.dir)
            .map_err(|source| WriterError::Dir {
                path: self.dir.clone(),
                source,
            })?;
        self.remove_stale();
        let path = live_file(&self.dir);
        let open_err = |source| WriterError::Open {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(&path)
            .map_err(open_err)?;
        self.size = file.metadata().map_err(open_err)?.len();
        let mut last = [0u8];
        self.torn = self.size > 0
            && file.read_at(&mut last, self.size - 1).map_err(open_err)? == 1
            && last[0] != b'\n';
        self.file = Some(file);
        Ok(())
    }

    /// Rotated files numbered `max_files` or more (the configuration shrank).
    fn remove_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name
                .to_str()
                .and_then(rotation_index)
                .is_some_and(|n| n >= self.max_files)
            {
                if let Err(e) = fs::remove_file(entry.path()) {
                    log::warn!("cannot remove {}: {e}", entry.path().display());
                }
            }
        }
    }

    /// Appends one entry, rotating first if it would not fit.
    pub fn write(
        &mut self,
        stream: Stream,
        line: &[u8],
        time: SystemTime,
    ) -> Result<(), WriterError> {
        let result = self.try_write(stream, line, time);
        if result.is_err() {
            self.lost += 1;
            self.file = None;
            self.retry_at.get_or_insert_with(|| Instant::now() + RETRY);
        }
        result
    }

    fn try_write(
        &mut self,
        stream: Stream,
        line: &[u8],
        time: SystemTime,
    ) -> Result<(), WriterError> {
        self.open()?;
        if self.lost > 0 {
            let note = format!(
                "leda-cm log driver: {} log lines lost while the log file could not be written\n",
                self.lost
            );
            self.lost = 0;
            self.append(Stream::Stderr, note.as_bytes(), SystemTime::now())?;
        }
        self.append(stream, line, time)
    }

    fn append(&mut self, stream: Stream, line: &[u8], time: SystemTime) -> Result<(), WriterError> {
        self.buf.clear();
        if self.torn {
            self.buf.push(b'\n');
        }
        encode(&mut self.buf, stream, line, time);
        let len = self.buf.len() as u64;
        if self
            .max_size
            .is_some_and(|max| self.size > 0 && self.size + len > max)
        {
            self.rotate()?;
            // A fresh file: no separator needed.
            if self.buf[0] == b'\n' {
                self.buf.remove(0);
            }
        }
        let file = self.file.as_mut().ok_or_else(|| WriterError::Unavailable {
            path: live_file(&self.dir),
        })?;
        file.write_all(&self.buf)
            .map_err(|source| WriterError::Write {
                path: live_file(&self.dir),
                source,
            })?;
        self.size += self.buf.len() as u64;
        self.torn = false;
        Ok(())
    }

    /// `json.log.(i-1)` → `json.log.i` down to `json.log` → `json.log.1`, then a new
    /// `json.log`. With `max_files` 1 the live file is removed instead.
    fn rotate(&mut self) -> Result<(), WriterError> {
        self.file = None;
        let live = live_file(&self.dir);
        let rotate_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| WriterError::Rotate { path, source }
        };
        if self.max_files == 1 {
            ignore_missing(fs::remove_file(&live)).map_err(rotate_err(&live))?;
        } else {
            for i in (2..self.max_files).rev() {
                let from = rotated_file(&self.dir, i - 1);
                ignore_missing(fs::rename(&from, rotated_file(&self.dir, i)))
                    .map_err(rotate_err(&from))?;
            }
            ignore_missing(fs::rename(&live, rotated_file(&self.dir, 1)))
                .map_err(rotate_err(&live))?;
        }
        self.open_now()
    }
}

fn ignore_missing(result: io::Result<()>) -> io::Result<()> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leda-cm-writer-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| crate::logs::format::decode(l.as_bytes()).unwrap().log)
            .collect()
    }

    const T: SystemTime = UNIX_EPOCH;
    /// Length of the entry for a 3-byte line `nn\n`.
    const ENTRY: u64 = 73;

    fn rotated(dir: &Path) -> Vec<PathBuf> {
        let mut files = crate::logs::log_files(dir).unwrap();
        files.pop();
        files
    }

    #[test]
    fn rotates_before_the_limit_and_keeps_max_files() {
        let dir = tmp("rotate");
        let mut w = JsonFileWriter::new(&dir.join("sub"), Some(3 * ENTRY), 3);
        for i in 10..20 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes(), T)
                .unwrap();
        }
        let dir = dir.join("sub");
        assert_eq!(fs::metadata(live_file(&dir)).unwrap().len(), ENTRY);
        assert_eq!(lines(&live_file(&dir)), ["19\n"]);
        assert_eq!(lines(&rotated_file(&dir, 1)), ["16\n", "17\n", "18\n"]);
        assert_eq!(lines(&rotated_file(&dir, 2)), ["13\n", "14\n", "15\n"]);
        assert!(!rotated_file(&dir, 3).exists());
        let mut check = Vec::new();
        encode(&mut check, Stream::Stdout, b"nn\n", T);
        assert_eq!(check.len() as u64, ENTRY);
        for f in crate::logs::log_files(&dir).unwrap() {
            assert!(fs::metadata(f).unwrap().len() <= 3 * ENTRY);
        }
        // Reopening continues the live file; a smaller max-files removes extra rotated files.
        let mut w = JsonFileWriter::new(&dir, Some(3 * ENTRY), 2);
        w.write(Stream::Stderr, b"20\n", T).unwrap();
        assert_eq!(lines(&live_file(&dir)), ["19\n", "20\n"]);
        assert_eq!(rotated(&dir), [rotated_file(&dir, 1)]);
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn one_file_and_no_limit() {
        let dir = tmp("one");
        let mut w = JsonFileWriter::new(&dir, Some(2 * ENTRY), 1);
        for i in 10..15 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes(), T)
                .unwrap();
        }
        assert_eq!(lines(&live_file(&dir)), ["14\n"]);
        assert!(rotated(&dir).is_empty());

        let mut w = JsonFileWriter::new(&dir, None, 3);
        for i in 15..30 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes(), T)
                .unwrap();
        }
        assert_eq!(lines(&live_file(&dir)).len(), 16);
        // An entry larger than the limit gets a file of its own.
        let mut w = JsonFileWriter::new(&dir, Some(ENTRY), 3);
        w.write(Stream::Stdout, &[b'x'; 200], T).unwrap();
        w.write(Stream::Stdout, b"ab\n", T).unwrap();
        assert_eq!(lines(&live_file(&dir)), ["ab\n"]);
        assert_eq!(lines(&rotated_file(&dir, 1)), ["x".repeat(200)]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_last_entry_is_closed_and_failures_are_noted() {
        let dir = tmp("torn");
        fs::create_dir_all(&dir).unwrap();
        fs::write(live_file(&dir), "{\"log\":\"half").unwrap();
        let mut w = JsonFileWriter::new(&dir, None, 1);
        w.write(Stream::Stdout, b"whole\n", T).unwrap();
        let text = fs::read_to_string(live_file(&dir)).unwrap();
        let mut it = text.lines();
        assert_eq!(it.next(), Some("{\"log\":\"half"));
        assert_eq!(
            crate::logs::format::decode(it.next().unwrap().as_bytes())
                .unwrap()
                .log,
            "whole\n"
        );

        // The directory becomes a file: writes fail, are counted, and noted once it works.
        drop(w);
        fs::remove_dir_all(&dir).unwrap();
        fs::write(&dir, "").unwrap();
        let mut w = JsonFileWriter::new(&dir, None, 1);
        assert!(matches!(
            w.write(Stream::Stdout, b"a\n", T),
            Err(WriterError::Dir { .. })
        ));
        assert!(matches!(
            w.write(Stream::Stdout, b"b\n", T),
            Err(WriterError::Unavailable { .. })
        ));
        fs::remove_file(&dir).unwrap();
        w.retry_at = None;
        w.write(Stream::Stdout, b"c\n", T).unwrap();
        assert_eq!(
            lines(&live_file(&dir)),
            [
                "leda-cm log driver: 2 log lines lost while the log file could not be written\n",
                "c\n"
            ]
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
