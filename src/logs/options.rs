//! The log driver's options: the `binary://` URI leda-cm gives containerd, and the argument
//! pairs the shim turns it into. Pure.
//!
//! The URI, every value percent-encoded (`max-buffer-size` only with `non-blocking`):
//!
//! ```text
//! binary:///usr/bin/leda-cm?log-driver=json-file&dir=DIR&max-size=BYTES&max-files=N&mode=MODE&max-buffer-size=BYTES
//! ```
//!
//! The shim passes `KEY VALUE` pairs in random order (see the module docs of `logs`), so the
//! arguments are read as unordered pairs:
//!
//! | key               | value                                                                  |
//! |-------------------|------------------------------------------------------------------------|
//! | `log-driver`      | `json-file` (required; marks the invocation as the log driver)         |
//! | `dir`             | absolute directory of `json.log` (required; created if missing)        |
//! | `max-size`        | bytes or a Kanto size (`100M`); `0` or absent: never rotate            |
//! | `max-files`       | files kept including the live one, ≥ 1 (default 1), at most 1000 (more is read as 1000) |
//! | `mode`            | `blocking` (default) or `non-blocking`                                 |
//! | `max-buffer-size` | non-blocking buffer, bytes or a Kanto size (default 1M = 1048576)      |
//!
//! Unknown keys are ignored (a newer leda-cm may pass more); a bad value is an error.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::size::parse_size;

/// The key that marks a log driver invocation.
pub const DRIVER_KEY: &str = "log-driver";
/// The only driver there is.
pub const JSON_FILE: &str = "json-file";
/// The most files a driver keeps: each rotation renames all of them (validation refuses more,
/// so only an older record can ask; it gets this many).
pub const MAX_FILES: u32 = crate::model::validate::MAX_LOG_FILES as u32;
/// Kanto's default `max_buffer_size` ("1M").
pub const DEFAULT_MAX_BUFFER: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The container waits while the file is written (Docker's and Kanto's default).
    Blocking,
    /// Lines wait in a buffer of at most `max_buffer` bytes; when it is full they are dropped
    /// so the container never waits.
    NonBlocking { max_buffer: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverOptions {
    /// Directory of `json.log` and its rotated files.
    pub dir: PathBuf,
    /// Rotate before `json.log` would grow beyond this many bytes; None: never.
    pub max_size: Option<u64>,
    /// Files kept, the live one included (≥ 1).
    pub max_files: u32,
    pub mode: Mode,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("log driver arguments must be key value pairs, got {count} arguments")]
    Odd { count: usize },
    #[error("log driver argument {key} given twice")]
    Duplicate { key: String },
    #[error("log driver argument {key} is missing")]
    Missing { key: &'static str },
    #[error("log driver argument {key} has the invalid value {value:?}: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: &'static str,
    },
}

/// Whether argv (program first) is a log driver invocation: `log-driver` at a key position,
/// and not the command-line client (`kanto-cm …`, `leda-cm ctl …`) nor `leda-cm daemon …`.
pub fn is_driver_invocation(argv: &[OsString]) -> bool {
    let args = argv.get(1..).unwrap_or_default();
    let client = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|n| n == "kanto-cm")
        || args.first().is_some_and(|a| a == "ctl" || a == "daemon");
    !client && args.len() % 2 == 0 && args.iter().step_by(2).any(|k| k == DRIVER_KEY)
}

impl DriverOptions {
    /// Options with the defaults for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> DriverOptions {
        DriverOptions {
            dir: dir.into(),
            max_size: None,
            max_files: 1,
            mode: Mode::Blocking,
        }
    }

    /// Parses the `KEY VALUE` pairs after the program name, in any order.
    pub fn from_args(args: &[OsString]) -> Result<DriverOptions, OptionsError> {
        if args.len() % 2 != 0 {
            return Err(OptionsError::Odd { count: args.len() });
        }
        let mut seen: Vec<&OsStr> = Vec::new();
        let (mut driver, mut dir, mut max_size, mut max_files, mut mode, mut buffer) =
            (None, None, None, None, None, None);
        for pair in args.chunks_exact(2) {
            let (key, value) = (pair[0].as_os_str(), pair[1].as_os_str());
            if seen.contains(&key) {
                return Err(OptionsError::Duplicate {
                    key: key.to_string_lossy().into_owned(),
                });
            }
            seen.push(key);
            let text = || value.to_str().unwrap_or("\u{fffd}");
            let invalid = |reason| OptionsError::Invalid {
                key: key.to_string_lossy().into_owned(),
                value: value.to_string_lossy().into_owned(),
                reason,
            };
            match key.to_str() {
                Some(DRIVER_KEY) if text() == JSON_FILE => driver = Some(()),
                Some(DRIVER_KEY) => return Err(invalid("the only driver is json-file")),
                Some("dir") if Path::new(value).is_absolute() => dir = Some(PathBuf::from(value)),
                Some("dir") => return Err(invalid("not an absolute path")),
                Some("max-size") => max_size = Some(bytes(text()).ok_or_else(|| invalid(SIZE))?),
                Some("max-files") => match text().parse::<u32>() {
                    Ok(n) if n >= 1 => max_files = Some(n.min(MAX_FILES)),
                    _ => return Err(invalid("not a whole number ≥ 1")),
                },
                Some("mode") => match text() {
                    "blocking" => mode = Some(false),
                    "non-blocking" => mode = Some(true),
                    _ => return Err(invalid("neither blocking nor non-blocking")),
                },
                Some("max-buffer-size") => {
                    buffer = Some(bytes(text()).ok_or_else(|| invalid(SIZE))?)
                }
                _ => log::warn!("ignoring unknown log driver argument {key:?}"),
            }
        }
        driver.ok_or(OptionsError::Missing { key: DRIVER_KEY })?;
        Ok(DriverOptions {
            dir: dir.ok_or(OptionsError::Missing { key: "dir" })?,
            max_size: max_size.filter(|&n| n > 0),
            max_files: max_files.unwrap_or(1),
            mode: match mode {
                Some(true) => Mode::NonBlocking {
                    max_buffer: buffer.unwrap_or(DEFAULT_MAX_BUFFER),
                },
                _ => Mode::Blocking,
            },
        })
    }

    /// The `binary://` URI that makes containerd's shim run `exe` as the log driver with
    /// these options; use it as the task's stdout and stderr.
    pub fn to_uri(&self, exe: &Path) -> String {
        let mut uri = String::from("binary://");
        escape(&mut uri, exe.as_os_str().as_bytes(), true);
        let mut pair = |key: &str, value: &[u8]| {
            uri.push(if uri.contains('?') { '&' } else { '?' });
            uri.push_str(key);
            uri.push('=');
            escape(&mut uri, value, false);
        };
        pair(DRIVER_KEY, JSON_FILE.as_bytes());
        pair("dir", self.dir.as_os_str().as_bytes());
        pair(
            "max-size",
            self.max_size.unwrap_or(0).to_string().as_bytes(),
        );
        pair("max-files", self.max_files.to_string().as_bytes());
        match self.mode {
            Mode::Blocking => pair("mode", b"blocking"),
            Mode::NonBlocking { max_buffer } => {
                pair("mode", b"non-blocking");
                pair("max-buffer-size", max_buffer.to_string().as_bytes());
            }
        }
        uri
    }
}

const SIZE: &str = "neither a number of bytes nor a size such as 100M";

/// A number of bytes, or a Kanto size string.
fn bytes(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().or_else(|| parse_size(text).ok())
}

/// Percent-encodes all but RFC 3986's unreserved characters (and `/` in the path), so that
/// Go's `url.Parse` and `Query()` give back exactly `bytes`.
fn escape(out: &mut String, bytes: &[u8], path: bool) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (path && b == b'/') {
            out.push(char::from(b));
        } else {
            let _ = std::fmt::Write::write_fmt(out, format_args!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    /// What containerd 1.6's shim does with a `binary://` URI (`NewBinaryCmd`): the path
    /// unescaped as program, each query key and its first value, unescaped as
    /// `url.QueryUnescape` does (`+` is a space). Order is random there; here it is reversed
    /// to show order does not matter.
    fn shim_argv(uri: &str) -> Vec<OsString> {
        fn unescape(s: &str, plus: bool) -> Vec<u8> {
            let b = s.as_bytes();
            let mut out = Vec::new();
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'%' => {
                        out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                        i += 3;
                        continue;
                    }
                    b'+' if plus => out.push(b' '),
                    c => out.push(c),
                }
                i += 1;
            }
            out
        }
        let rest = uri.strip_prefix("binary://").unwrap();
        let (path, query) = rest.split_once('?').unwrap();
        let mut argv = vec![OsString::from_vec(unescape(path, false))];
        let mut pairs: Vec<Vec<OsString>> = Vec::new();
        for part in query.split('&') {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            pairs.push(vec![
                OsString::from_vec(unescape(k, true)),
                OsString::from_vec(unescape(v, true)),
            ]);
        }
        pairs.reverse();
        argv.extend(pairs.into_iter().flatten());
        argv
    }

    #[test]
    fn uri_round_trips_through_the_shim() {
        let odd_dir = PathBuf::from(OsString::from_vec(
            b"/var/lib/leda cm/c+1&x=y;%20/\xff\xfe".to_vec(),
        ));
        for opts in [
            DriverOptions::new("/var/lib/container-management/containers/abc"),
            DriverOptions {
                dir: odd_dir,
                max_size: Some(100 << 20),
                max_files: 3,
                mode: Mode::NonBlocking { max_buffer: 4096 },
            },
        ] {
            let exe = Path::new("/usr/bin/leda cm+");
            let uri = opts.to_uri(exe);
            assert!(uri.is_ascii(), "{uri}");
            let argv = shim_argv(&uri);
            assert_eq!(argv[0], exe.as_os_str());
            assert!(is_driver_invocation(&argv));
            assert_eq!(DriverOptions::from_args(&argv[1..]), Ok(opts));
        }
        assert_eq!(
            DriverOptions {
                dir: "/d/c1".into(),
                max_size: Some(1 << 20),
                max_files: 2,
                mode: Mode::NonBlocking {
                    max_buffer: 1 << 20
                },
            }
            .to_uri(Path::new("/usr/bin/leda-cm")),
            "binary:///usr/bin/leda-cm?log-driver=json-file&dir=%2Fd%2Fc1&max-size=1048576\
             &max-files=2&mode=non-blocking&max-buffer-size=1048576"
        );
    }

    #[test]
    fn parsing_pairs_in_any_order() {
        let full = DriverOptions {
            dir: "/d".into(),
            max_size: Some(10 * 1024),
            max_files: 5,
            mode: Mode::NonBlocking { max_buffer: 1536 },
        };
        let cases: &[(&[&str], DriverOptions)] = &[
            (
                &["log-driver", "json-file", "dir", "/d"],
                DriverOptions::new("/d"),
            ),
            (
                &["dir", "/d", "log-driver", "json-file"],
                DriverOptions::new("/d"),
            ),
            (
                &[
                    "max-buffer-size",
                    "1.5k",
                    "max-files",
                    "5",
                    "mode",
                    "non-blocking",
                    "dir",
                    "/d",
                    "max-size",
                    "10k",
                    "log-driver",
                    "json-file",
                ],
                full,
            ),
            (
                &[
                    "log-driver",
                    "json-file",
                    "dir",
                    "/d",
                    "max-size",
                    "0",
                    "mode",
                    "blocking",
                    "max-buffer-size",
                    "1k",
                    "future",
                    "",
                ],
                DriverOptions::new("/d"),
            ),
            (
                &[
                    "log-driver",
                    "json-file",
                    "dir",
                    "/d",
                    "mode",
                    "non-blocking",
                ],
                DriverOptions {
                    mode: Mode::NonBlocking {
                        max_buffer: 1 << 20,
                    },
                    ..DriverOptions::new("/d")
                },
            ),
        ];
        for (list, want) in cases {
            assert_eq!(
                DriverOptions::from_args(&args(list)).as_ref(),
                Ok(want),
                "{list:?}"
            );
        }
    }

    #[test]
    fn bad_arguments() {
        let cases: &[(&[&str], &str)] = &[
            (&["log-driver"], "log driver arguments must be key value pairs, got 1 arguments"),
            (&["dir", "/d"], "log driver argument log-driver is missing"),
            (&["log-driver", "json-file"], "log driver argument dir is missing"),
            (&["log-driver", "syslog", "dir", "/d"], "log driver argument log-driver has the invalid value \"syslog\": the only driver is json-file"),
            (&["log-driver", "json-file", "dir", "d"], "log driver argument dir has the invalid value \"d\": not an absolute path"),
            (&["log-driver", "json-file", "dir", "/d", "dir", "/e"], "log driver argument dir given twice"),
            (&["log-driver", "json-file", "dir", "/d", "max-size", "10x"], "log driver argument max-size has the invalid value \"10x\": neither a number of bytes nor a size such as 100M"),
            (&["log-driver", "json-file", "dir", "/d", "max-files", "0"], "log driver argument max-files has the invalid value \"0\": not a whole number ≥ 1"),
            (&["log-driver", "json-file", "dir", "/d", "mode", "async"], "log driver argument mode has the invalid value \"async\": neither blocking nor non-blocking"),
        ];
        for (list, want) in cases {
            let err = DriverOptions::from_args(&args(list)).unwrap_err();
            assert_eq!(err.to_string(), *want, "{list:?}");
        }
    }

    #[test]
    fn driver_invocations() {
        for (argv, want) in [
            (
                &["leda-cm", "log-driver", "json-file", "dir", "/d"][..],
                true,
            ),
            (
                &["/usr/bin/leda-cm", "dir", "/d", "log-driver", "json-file"],
                true,
            ),
            (&["leda-cm", "dir", "log-driver"], false),
            (&["leda-cm", "log-driver"], false),
            (&["container-management", "log-driver", "json-file"], true),
            (&["leda-cm", "daemon", "--cfg-file", "log-driver"], false),
            (
                &["leda-cm", "daemon", "x", "log-driver", "json-file"],
                false,
            ),
            (
                &["leda-cm", "ctl", "logs", "log-driver", "json-file"],
                false,
            ),
            (
                &["/usr/bin/kanto-cm", "logs", "-f", "log-driver", "json-file"],
                false,
            ),
            (&["leda-cm"], false),
            (&[], false),
        ] {
            assert_eq!(is_driver_invocation(&args(argv)), want, "{argv:?}");
        }
    }

    /// Extreme values of the numeric options: refused naming key and value, or bounded
    /// (max-files at most [`MAX_FILES`]); never a panic.
    #[test]
    fn extreme_numbers_are_refused_or_bounded() {
        use crate::model::poison::TEXT_NUMBERS;
        for key in ["max-size", "max-files", "max-buffer-size"] {
            for value in TEXT_NUMBERS {
                let a = args(&[
                    "log-driver",
                    "json-file",
                    "dir",
                    "/d",
                    "mode",
                    "non-blocking",
                    key,
                    value,
                ]);
                match DriverOptions::from_args(&a) {
                    Ok(o) => {
                        assert!((1..=MAX_FILES).contains(&o.max_files), "{key} {value:?}");
                        assert!(o.max_size.map_or(true, |n| n > 0), "{key} {value:?}");
                        // The URI made from them parses back the same.
                        let back =
                            DriverOptions::from_args(&shim_argv(&o.to_uri(Path::new("/x")))[1..]);
                        assert_eq!(back.as_ref(), Ok(&o), "{key} {value:?}");
                    }
                    Err(e) => assert!(
                        matches!(&e, OptionsError::Invalid { key: k, .. } if k == key),
                        "{key} {value:?}: {e}"
                    ),
                }
            }
        }
        let o = DriverOptions::from_args(&args(&[
            "log-driver",
            "json-file",
            "dir",
            "/d",
            "max-files",
            "4294967295",
        ]))
        .unwrap();
        assert_eq!(o.max_files, MAX_FILES);
        let o = DriverOptions::from_args(&args(&[
            "log-driver",
            "json-file",
            "dir",
            "/d",
            "max-size",
            "18446744073709551615",
        ]))
        .unwrap();
        assert_eq!(o.max_size, Some(u64::MAX));
    }
}
