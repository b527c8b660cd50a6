//! Where the daemon writes (pure: decided from the configuration and the environment).
//!
//! **The daemon writes only to its state dir, its runtime dir and its log file.** The root
//! file system is read-only on a Leda device; systemd provides the two directories as
//! `$STATE_DIRECTORY` and `$RUNTIME_DIRECTORY`, which win over `manager.home_dir` and
//! `manager.exec_root_dir`.

use std::path::{Path, PathBuf};

use crate::config::{Config, DROPIN_DIR};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Persistent state: container records, drop-ins, markers.
    pub state_dir: PathBuf,
    /// Volatile state: the single-instance lock, sockets.
    pub runtime_dir: PathBuf,
    /// Configuration drop-ins written at run time (`<state>/config.d`).
    pub dropin_dir: PathBuf,
    pub lock_file: PathBuf,
    pub log_file: Option<PathBuf>,
    /// Notes for the log: where the environment overrode the configuration.
    pub notes: Vec<String>,
}

/// The first absolute entry of a systemd `*_DIRECTORY` variable (colon-separated list).
fn systemd_dir(value: Option<&str>) -> Option<PathBuf> {
    value?
        .split(':')
        .map(Path::new)
        .find(|p| p.is_absolute())
        .map(Path::to_path_buf)
}

pub fn resolve(
    config: &Config,
    state_directory: Option<&str>,
    runtime_directory: Option<&str>,
) -> Paths {
    let mut notes = Vec::new();
    let mut pick = |env: Option<PathBuf>, configured: &Path, what: &str, var: &str| match env {
        Some(dir) => {
            if dir != configured {
                notes.push(format!(
                    "{what} is {} (from ${var}); the configured {} is not used",
                    dir.display(),
                    configured.display()
                ));
            }
            dir
        }
        None => configured.to_path_buf(),
    };
    let state_dir = pick(
        systemd_dir(state_directory),
        &config.manager.home_dir,
        "state dir",
        "STATE_DIRECTORY",
    );
    let runtime_dir = pick(
        systemd_dir(runtime_directory),
        &config.manager.exec_root_dir,
        "runtime dir",
        "RUNTIME_DIRECTORY",
    );
    let log_file = (!config.log.log_file.is_empty()).then(|| {
        let p = PathBuf::from(&config.log.log_file);
        if p.is_absolute() {
            p
        } else {
            state_dir.join(p)
        }
    });
    Paths {
        dropin_dir: state_dir.join(DROPIN_DIR),
        lock_file: runtime_dir.join("leda-cm.lock"),
        state_dir,
        runtime_dir,
        log_file,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolution_table() {
        let mut config = Config::default();
        let p = resolve(&config, None, None);
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/container-management"));
        assert_eq!(
            p.runtime_dir,
            PathBuf::from("/var/run/container-management")
        );
        assert_eq!(
            p.dropin_dir,
            PathBuf::from("/var/lib/container-management/config.d")
        );
        assert_eq!(
            p.lock_file,
            PathBuf::from("/var/run/container-management/leda-cm.lock")
        );
        assert_eq!(p.log_file, None);
        assert!(p.notes.is_empty());

        let p = resolve(&config, Some("/data/cm:/other"), Some("relative:/run/cm"));
        assert_eq!(p.state_dir, PathBuf::from("/data/cm"));
        assert_eq!(p.runtime_dir, PathBuf::from("/run/cm"));
        assert_eq!(p.notes.len(), 2);

        config.log.log_file = "log/cm.log".into();
        let p = resolve(&config, Some("/data/cm"), None);
        assert_eq!(p.log_file, Some(PathBuf::from("/data/cm/log/cm.log")));
        config.log.log_file = "/var/log/cm/cm.log".into();
        let p = resolve(&config, None, None);
        assert_eq!(p.log_file, Some(PathBuf::from("/var/log/cm/cm.log")));

        // The same directory from systemd and config: no note.
        let p = resolve(&config, Some("/var/lib/container-management"), Some(""));
        assert!(p.notes.is_empty());
        assert_eq!(
            p.runtime_dir,
            PathBuf::from("/var/run/container-management")
        );
    }
}
