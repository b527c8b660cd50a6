//! The `log` facade's back end: stderr with journald priority prefixes (`<3>` … `<7>`, see
//! sd-daemon(3)), and optionally a log file rotated by size and count.
//!
//! Adapter for the file system (the log file) and the process's stderr. Nothing here formats
//! secrets: they are `config::Secret`, whose Debug prints `***`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::LogLevel;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot open log file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot create the directory of log file {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
}

struct Logger {
    /// Prefix lines with `<N>` for journald; plain level names on a terminal.
    journal_prefix: bool,
    file: Mutex<Option<RotatingFile>>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Installs the logger (stderr only) at the level from `RUST_LOG`, or `default` when unset.
/// Idempotent. Returns whether `RUST_LOG` decided the level (it then wins over the config).
pub fn init(default: LogLevel) -> bool {
    let from_env = std::env::var("RUST_LOG").ok().and_then(|v| env_level(&v));
    let logger = LOGGER.get_or_init(|| Logger {
        journal_prefix: !io::stderr().is_terminal(),
        file: Mutex::new(None),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(filter(from_env.unwrap_or(default)));
    }
    from_env.is_some()
}

/// `RUST_LOG=debug` or `RUST_LOG=leda_cm=debug` (the last level named wins).
fn env_level(value: &str) -> Option<LogLevel> {
    value
        .split(',')
        .filter_map(|part| LogLevel::parse(part.rsplit('=').next().unwrap_or(part)))
        .next_back()
}

fn filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::Error => LevelFilter::Error,
        LogLevel::Warn => LevelFilter::Warn,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Trace => LevelFilter::Trace,
    }
}

/// Applies the configured level (unless `RUST_LOG` set it) and log file.
pub fn configure(level: LogLevel, level_from_env: bool, file: Option<RotatingFile>) {
    if !level_from_env {
        log::set_max_level(filter(level));
    }
    if let Some(logger) = LOGGER.get() {
        *logger.file.lock().unwrap_or_else(|p| p.into_inner()) = file;
    }
}

/// Sets the level at run time (configuration reload).
pub fn set_level(level: LogLevel) {
    log::set_max_level(filter(level));
}

fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journal_prefix {
            format!("<{}>{}\n", priority(record.level()), record.args())
        } else {
            format!("{:<5} {}\n", record.level(), record.args())
        };
        // A failed write to stderr has nowhere to be reported.
        let _ = io::stderr().lock().write_all(line.as_bytes());
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = file.as_mut() {
            let stamped = format!(
                "{} {:<5} {}\n",
                humantime::format_rfc3339_millis(SystemTime::now()),
                record.level(),
                record.args()
            );
            if let Err(e) = f.write_line(stamped.as_bytes()) {
                let _ = writeln!(io::stderr(), "<4>log file {}: {e}", f.path.display());
            }
        }
    }

    fn flush(&self) {}
}

/// A log file that is rotated to `<name>.1` … `<name>.<count>` once it reaches `max_bytes`.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    pub fn open(path: &Path, max_bytes: u64, keep: u32) -> Result<Self, LoggingError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|source| LoggingError::Dir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let file = Self::open_file(path)?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            size,
            max_bytes: max_bytes.max(4096),
            keep,
        })
    }

    fn open_file(path: &Path) -> Result<File, LoggingError> {
        use std::os::unix::fs::OpenOptionsExt;
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)
            .map_err(|source| LoggingError::Open {
                path: path.to_path_buf(),
                source,
            })
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file.set_len(0)?;
        } else {
            let _ = fs::remove_file(self.rotated(self.keep));
            for n in (1..self.keep).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    fs::rename(&from, self.rotated(n + 1))?;
                }
            }
            fs::rename(&self.path, self.rotated(1))?;
            self.file = Self::open_file(&self.path).map_err(io::Error::other)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_levels() {
        assert_eq!(env_level("debug"), Some(LogLevel::Debug));
        assert_eq!(env_level("leda_cm=trace"), Some(LogLevel::Trace));
        assert_eq!(env_level("h2=info,leda_cm=warn"), Some(LogLevel::Warn));
        assert_eq!(env_level("nonsense"), None);
    }

    #[test]
    fn rotation_keeps_count_files_below_size() {
        let dir = std::env::temp_dir().join(format!("leda-cm-logtest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("sub/cm.log");
        let mut f = RotatingFile::open(&path, 4096, 2).unwrap();
        let line = [b'x'; 1000];
        for _ in 0..20 {
            f.write_line(&line).unwrap();
        }
        let mut names: Vec<_> = fs::read_dir(dir.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, vec!["cm.log", "cm.log.1", "cm.log.2"]);
        for name in &names {
            let len = fs::metadata(dir.join("sub").join(name)).unwrap().len();
            assert!(len <= 4096, "{name} is {len} bytes");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
