//! leda-cm as a library: the daemon's modules, used by the binary (`src/main.rs`) and by the
//! integration tests, which drive the adapters against the real services of the harness.
//! See ARCHITECTURE.md for the map.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod containerd;
pub mod daemon;
pub mod deploy;
pub mod duration;
pub mod etc_files;
pub mod exit;
pub mod fault;
pub mod host;
pub mod liveness;
pub mod loader;
pub mod logging;
pub mod logs;
pub mod manager;
pub mod model;
pub mod mqtt;
pub mod network;
pub mod paths;
pub mod privileges;
pub mod registry;
pub mod runtime;
pub mod spec;
pub mod store;
pub mod supervisor;
pub mod systemd;
pub mod things;
pub mod transfer;
pub mod trust;
pub mod watch;
