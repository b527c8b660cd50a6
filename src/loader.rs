//! Loading the configuration from the file system (the adapter beside the pure `config`):
//! the main file, the drop-ins of the state dir, the command-line flags. Shared by the
//! daemon and the CLI commands that edit drop-ins, which need nothing else of the daemon.

use std::path::{Path, PathBuf};

use crate::config::{self, ConfigError, Loaded, Source, DEFAULT_CONFIG_FILE};
use crate::paths::{self, Paths};
use crate::store::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Read(StoreError),
    #[error(transparent)]
    Parse(#[from] ConfigError),
}

/// Loads the configuration the same way for the daemon and for the CLI commands that edit
/// drop-ins: the main file, then `<state dir>/config.d/*.json`, then command-line flags.
#[derive(Debug, Clone)]
pub struct ConfigLoader {
    main_file: PathBuf,
    main_required: bool,
    flags: Option<Source>,
}

impl ConfigLoader {
    pub fn new(cfg_file: Option<&Path>, flags: Option<Source>) -> ConfigLoader {
        ConfigLoader {
            main_file: cfg_file
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE)),
            main_required: cfg_file.is_some(),
            flags,
        }
    }

    /// Reads and parses everything; returns the configuration, the paths derived from it, and
    /// warnings to log.
    pub fn load(&self) -> Result<(Loaded, Paths), LoadError> {
        let main = store::read_main_config(&self.main_file, self.main_required)
            .map_err(LoadError::Read)?;
        let mut primary: Vec<Source> = main.into_iter().collect();
        primary.extend(self.flags.clone());
        // The state dir (hence the drop-in dir) comes from the main file and the flags only.
        let first = config::parse(&primary)?;
        let state_env = std::env::var("STATE_DIRECTORY").ok();
        let runtime_env = std::env::var("RUNTIME_DIRECTORY").ok();
        let paths = paths::resolve(&first.config, state_env.as_deref(), runtime_env.as_deref());
        let mut warnings = Vec::new();
        let dropins =
            store::read_dropins(&paths.dropin_dir, &mut warnings).map_err(LoadError::Read)?;
        if dropins.is_empty() {
            let mut loaded = first;
            loaded.warnings.extend(warnings);
            return Ok((loaded, paths));
        }
        let mut all: Vec<Source> = primary.iter().filter(|s| !is_flags(s)).cloned().collect();
        all.extend(dropins);
        all.extend(self.flags.clone());
        let mut loaded = config::parse(&all)?;
        loaded.warnings.extend(warnings);
        let paths = paths::resolve(&loaded.config, state_env.as_deref(), runtime_env.as_deref());
        Ok((loaded, paths))
    }
}

pub const FLAGS_SOURCE: &str = "command-line flags";

fn is_flags(s: &Source) -> bool {
    s.name == FLAGS_SOURCE
}
