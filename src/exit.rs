//! The process exit codes of the daemon and the CLI (sysexits.h). The unit lists USAGE and
//! CONFIG in `RestartPreventExitStatus=`: restarting cannot fix them.

pub const OK: i32 = 0;
pub const FAILURE: i32 = 1;
pub const USAGE: i32 = 64;
pub const CANT_CREATE: i32 = 73;
pub const TEMP_FAIL: i32 = 75;
pub const CONFIG: i32 = 78;
