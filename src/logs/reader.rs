//! Reading a json-file log back: the last N entries across the rotated files, and following
//! new entries from a [`Position`]. The parsing is pure ([`parse`], [`tail_start`]); the
//! rest is a thin adapter over the files.
//!
//! Only complete lines count: a last line still being written (or torn by a killed driver)
//! is left for later, and lines that do not decode are skipped. Files are read in their
//! order, oldest rotated file first and `json.log` last.
//!
//! Following needs no inotify: a server calls [`follow`] every few hundred milliseconds
//! (from `spawn_blocking`) with the position the previous call returned. Rotation renames
//! `json.log`, so the position names its file by identity (inode and, where the file system
//! keeps one, birth time): when that file has become `json.log.N`, the rest of it and the
//! newer files are read in order. When the position's file was rotated away between two calls,
//! reading restarts at the oldest file still there (what lay between is lost).

use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::format::{decode, LogEntry};
use super::log_files;

/// Most bytes one [`follow`] call reads; it returns where it stopped.
pub const FOLLOW_CHUNK: u64 = 1 << 20;
/// Read size when scanning.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReaderError {
    #[error("cannot read log directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("cannot read log file {path}: {source}")]
    File { path: PathBuf, source: io::Error },
}

/// Where reading stopped: a file by identity and the offset after its last complete line read.
/// The default (inode 0) means "before everything".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub inode: u64,
    pub born: Option<SystemTime>,
    pub offset: u64,
}

/// What [`parse`] found in a buffer.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    pub entries: Vec<LogEntry>,
    /// Bytes of complete lines (the rest is an incomplete last line).
    pub consumed: usize,
    /// Complete lines that were not json-file entries.
    pub malformed: usize,
}

/// The entries of the complete lines in `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut parsed = Parsed::default();
    let complete = match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => &buf[..=i],
        None => return parsed,
    };
    parsed.consumed = complete.len();
    for line in complete[..complete.len() - 1].split(|&b| b == b'\n') {
        match decode(line) {
            Ok(entry) => parsed.entries.push(entry),
            Err(e) => {
                log::debug!("skipping a log line: {e}");
                parsed.malformed += 1;
            }
        }
    }
    parsed
}

/// Offset at which the last `lines` complete lines among the first `len` bytes start
/// (0 when there are fewer; with `lines` 0, the end of the last complete line).
pub fn tail_start<R: Read + Seek>(r: &mut R, len: u64, lines: usize) -> io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut newlines = 0;
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(CHUNK as u64);
        let chunk = &mut buf[..(end - start) as usize];
        r.seek(SeekFrom::Start(start))?;
        r.read_exact(chunk)?;
        for (i, _) in chunk.iter().enumerate().rev().filter(|(_, &b)| b == b'\n') {
            // The first newline ends the last complete line; the (lines + 1)-th precedes the
            // first line wanted.
            newlines += 1;
            if newlines == lines.saturating_add(1) {
                return Ok(start + i as u64 + 1);
            }
        }
        end = start;
    }
    Ok(0)
}

/// Entries of the complete lines between `from` and `to`, and the offset after the last one.
fn read_entries<R: Read + Seek>(r: &mut R, from: u64, to: u64) -> io::Result<(Vec<LogEntry>, u64)> {
    r.seek(SeekFrom::Start(from))?;
    let mut entries = Vec::new();
    let mut pending = Vec::new();
    let mut at = from;
    let mut buf = vec![0; CHUNK];
    let mut left = to.saturating_sub(from);
    while left > 0 {
        let n = r.read(&mut buf[..CHUNK.min(left as usize)])?;
        if n == 0 {
            break;
        }
        left -= n as u64;
        pending.extend_from_slice(&buf[..n]);
        let parsed = parse(&pending);
        entries.extend(parsed.entries);
        at += parsed.consumed as u64;
        pending.drain(..parsed.consumed);
    }
    Ok((entries, at))
}

/// The last `tail` entries (all with None) across the rotated files and `json.log`, oldest
/// first, and the position after them for [`follow`]. A missing directory has no entries.
pub fn read_tail(
    dir: &Path,
    tail: Option<usize>,
) -> Result<(Vec<LogEntry>, Position), ReaderError> {
    let files = log_files(dir).map_err(|source| ReaderError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut parts = Vec::new();
    let mut position = Position::default();
    let mut need = tail;
    for (i, path) in files.iter().enumerate().rev() {
        let newest = i + 1 == files.len();
        if need == Some(0) && !newest {
            break;
        }
        let Some((mut file, meta)) = open(path)? else {
            // Rotated away since the listing.
            continue;
        };
        let file_err = |source| ReaderError::File {
            path: path.clone(),
            source,
        };
        let start = match need {
            Some(n) => tail_start(&mut file, meta.len(), n).map_err(file_err)?,
            None => 0,
        };
        let (entries, end) = read_entries(&mut file, start, meta.len()).map_err(file_err)?;
        if newest {
            position = position_in(&meta, end);
        }
        need = need.map(|n| n.saturating_sub(entries.len()));
        parts.push(entries);
    }
    Ok((parts.into_iter().rev().flatten().collect(), position))
}

/// Entries written since `from` (at most [`FOLLOW_CHUNK`] bytes' worth), following rotations,
/// and the position to pass next time. Nothing new: no entries and the same position.
pub fn follow(dir: &Path, from: Position) -> Result<(Vec<LogEntry>, Position), ReaderError> {
    let files = log_files(dir).map_err(|source| ReaderError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut ids = Vec::with_capacity(files.len());
    for path in &files {
        match std::fs::metadata(path) {
            Ok(meta) => ids.push((path, position_in(&meta, 0))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ReaderError::File {
                    path: path.clone(),
                    source,
                })
            }
        }
    }
    let (mut index, mut offset) = match ids.iter().position(|(_, id)| same_file(id, &from)) {
        Some(i) => (i, from.offset),
        None => {
            if from.inode != 0 && !ids.is_empty() {
                log::warn!(
                    "log file followed in {} was rotated away, going on with the oldest",
                    dir.display()
                );
            }
            (0, 0)
        }
    };
    let mut entries = Vec::new();
    let mut position = from;
    let mut budget = FOLLOW_CHUNK;
    while let Some((path, id)) = ids.get(index) {
        let Some((mut file, meta)) = open(path)? else {
            break;
        };
        if !same_file(&position_in(&meta, 0), id) {
            // Rotated since the listing: the next call sees the new names.
            break;
        }
        let file_err = |source| ReaderError::File {
            path: (*path).clone(),
            source,
        };
        let len = meta.len();
        if len < offset {
            // Truncated, or a new file that reuses the inode number.
            offset = 0;
        }
        let to = len.min(offset + budget);
        let (new, end) = read_entries(&mut file, offset, to).map_err(file_err)?;
        entries.extend(new);
        budget -= end - offset;
        position = Position { offset: end, ..*id };
        // A rotated file gets no more lines: go on to the next once it is read to its end
        // (an incomplete last line there will never be completed).
        if index + 1 == ids.len() || to < len {
            break;
        }
        index += 1;
        offset = 0;
    }
    Ok((entries, position))
}

fn open(path: &Path) -> Result<Option<(File, Metadata)>, ReaderError> {
    let file_err = |source| ReaderError::File {
        path: path.to_path_buf(),
        source,
    };
    match File::open(path) {
        Ok(file) => {
            let meta = file.metadata().map_err(file_err)?;
            Ok(Some((file, meta)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(e)),
    }
}

fn position_in(meta: &Metadata, offset: u64) -> Position {
    Position {
        inode: meta.ino(),
        born: meta.created().ok(),
        offset,
    }
}

fn same_file(a: &Position, b: &Position) -> bool {
    a.inode == b.inode && a.born == b.born
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::format::{encode, Stream};
    use crate::logs::writer::JsonFileWriter;
    use crate::logs::{live_file, rotated_file};
    use std::fs;
    use std::io::{Cursor, Write};
    use std::time::{Duration, UNIX_EPOCH};

    fn entry(log: &str, n: u64) -> LogEntry {
        LogEntry {
            stream: if n % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            },
            log: log.into(),
            time: UNIX_EPOCH + Duration::from_secs(n),
        }
    }

    fn encoded(e: &LogEntry) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, e.stream, e.log.as_bytes(), e.time);
        out
    }

    #[test]
    fn parsing_complete_lines() {
        let (a, b) = (entry("a\n", 1), entry("b", 2));
        let (ea, eb) = (encoded(&a), encoded(&b));
        let cat = |parts: &[&[u8]]| parts.concat();
        let cases: Vec<(Vec<u8>, Vec<LogEntry>, usize, usize)> = vec![
            (vec![], vec![], 0, 0),
            (ea.clone(), vec![a.clone()], ea.len(), 0),
            (
                cat(&[&ea, &eb]),
                vec![a.clone(), b.clone()],
                ea.len() + eb.len(),
                0,
            ),
            // An incomplete last line waits.
            (cat(&[&ea, &eb[..10]]), vec![a.clone()], ea.len(), 0),
            (eb[..eb.len() - 1].to_vec(), vec![], 0, 0),
            // Garbage and empty lines are skipped, counted.
            (
                cat(&[b"junk\n", &ea, b"\n", &eb]),
                vec![a.clone(), b.clone()],
                6 + ea.len() + eb.len(),
                2,
            ),
            (
                cat(&[b"{\"log\":\"half\n", &eb]),
                vec![b.clone()],
                13 + eb.len(),
                1,
            ),
        ];
        for (buf, want, consumed, malformed) in cases {
            let got = parse(&buf);
            assert_eq!(
                got,
                Parsed {
                    entries: want,
                    consumed,
                    malformed
                },
                "{:?}",
                String::from_utf8_lossy(&buf)
            );
        }
    }

    #[test]
    fn tail_starts() {
        let text = b"l1\nl2\nl3\npartial";
        let mut c = Cursor::new(&text[..]);
        let len = text.len() as u64;
        for (lines, want) in [(0, 9), (1, 6), (2, 3), (3, 0), (4, 0), (100, 0)] {
            assert_eq!(tail_start(&mut c, len, lines).unwrap(), want, "{lines}");
        }
        assert_eq!(tail_start(&mut c, 0, 3).unwrap(), 0);
        // Any count from outside: no overflow.
        for lines in [i32::MAX as usize, usize::MAX - 1, usize::MAX] {
            assert_eq!(tail_start(&mut c, len, lines).unwrap(), 0, "{lines}");
        }
        // Across scan chunks.
        let mut big = Vec::new();
        for i in 0..50_000 {
            writeln!(big, "line {i}").unwrap();
        }
        let mut c = Cursor::new(&big);
        let start = tail_start(&mut c, big.len() as u64, 20_000).unwrap() as usize;
        assert!(big[start..].starts_with(b"line 30000\n"));
        assert_eq!(big[start - 1], b'\n');
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leda-cm-reader-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn logs(entries: &[LogEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.log.as_str()).collect()
    }

    fn write_lines(w: &mut JsonFileWriter, range: std::ops::Range<u32>) {
        for i in range {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            w.write(stream, format!("{i}\n").as_bytes(), SystemTime::now())
                .unwrap();
        }
    }

    #[test]
    fn tail_across_rotated_files() {
        let dir = tmp("tail");
        assert_eq!(
            read_tail(&dir, None).unwrap(),
            (vec![], Position::default())
        );
        // Room for 3 entries (73 bytes each) per file, 4 files: 10..22 fill json.log.3
        // (10–12) to json.log (19–21).
        let mut w = JsonFileWriter::new(&dir, Some(3 * 73), 4);
        write_lines(&mut w, 10..22);
        assert_eq!(logs(&read_tail(&dir, None).unwrap().0).len(), 12);
        assert!(rotated_file(&dir, 3).exists() && !rotated_file(&dir, 4).exists());
        let all: Vec<String> = (10..22).map(|i| format!("{i}\n")).collect();
        for (tail, want) in [
            (None, &all[..]),
            (Some(100), &all[..]),
            (Some(12), &all[..]),
            (Some(7), &all[5..]),
            (Some(3), &all[9..]),
            (Some(1), &all[11..]),
            (Some(0), &all[12..]),
        ] {
            let (entries, _) = read_tail(&dir, tail).unwrap();
            assert_eq!(logs(&entries), want, "{tail:?}");
        }
        let (entries, _) = read_tail(&dir, Some(2)).unwrap();
        assert_eq!(entries[0].stream, Stream::Stdout);
        assert_eq!(entries[1].stream, Stream::Stderr);

        // A partial last line is not returned, by the tail nor by follow, until complete.
        let mut half = encoded(&entry("late\n", 4));
        let rest = half.split_off(20);
        fs::OpenOptions::new()
            .append(true)
            .open(live_file(&dir))
            .unwrap()
            .write_all(&half)
            .unwrap();
        let (entries, pos) = read_tail(&dir, Some(2)).unwrap();
        assert_eq!(logs(&entries), ["20\n", "21\n"]);
        assert_eq!(follow(&dir, pos).unwrap(), (vec![], pos));
        fs::OpenOptions::new()
            .append(true)
            .open(live_file(&dir))
            .unwrap()
            .write_all(&rest)
            .unwrap();
        let (entries, pos2) = follow(&dir, pos).unwrap();
        assert_eq!(logs(&entries), ["late\n"]);
        assert_eq!(pos2.inode, pos.inode);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn follow_through_rotations() {
        let dir = tmp("follow");
        // Before the file exists.
        assert_eq!(
            follow(&dir, Position::default()).unwrap(),
            (vec![], Position::default())
        );
        let mut w = JsonFileWriter::new(&dir, Some(3 * 73), 4);
        let (_, start) = read_tail(&dir, Some(0)).unwrap();
        assert_eq!(start, Position::default());
        write_lines(&mut w, 0..2);
        // Inode 0 means "from the beginning".
        let (entries, pos) = follow(&dir, start).unwrap();
        assert_eq!(logs(&entries), ["0\n", "1\n"]);
        // Two rotations between calls: the rest of the old file, then the newer ones.
        write_lines(&mut w, 2..9);
        let (entries, pos) = follow(&dir, pos).unwrap();
        assert_eq!(
            logs(&entries),
            ["2\n", "3\n", "4\n", "5\n", "6\n", "7\n", "8\n"]
        );
        let (entries, pos) = follow(&dir, pos).unwrap();
        assert!(entries.is_empty());
        // The followed file rotated away (4 rotations): go on with the oldest file left.
        write_lines(&mut w, 9..24);
        let (entries, _) = follow(&dir, pos).unwrap();
        assert_eq!(logs(&entries).first(), Some(&"12\n"));
        assert_eq!(logs(&entries).last(), Some(&"23\n"));
        assert_eq!(entries.len(), 12);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn follow_reads_big_backlogs_in_chunks() {
        let dir = tmp("chunks");
        let mut w = JsonFileWriter::new(&dir, None, 1);
        let line = "y".repeat(1000) + "\n";
        for _ in 0..3000 {
            w.write(Stream::Stdout, line.as_bytes(), UNIX_EPOCH)
                .unwrap();
        }
        let mut pos = Position::default();
        let mut calls = 0;
        let mut total = 0;
        loop {
            let (entries, next) = follow(&dir, pos).unwrap();
            if entries.is_empty() {
                break;
            }
            assert!(entries.iter().all(|e| e.log == line));
            total += entries.len();
            pos = next;
            calls += 1;
        }
        assert_eq!(total, 3000);
        assert!(calls >= 3, "{calls} calls for 3 MB");
        fs::remove_dir_all(&dir).unwrap();
    }
}
