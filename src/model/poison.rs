//! Test-only: extreme values for every numeric field that comes from outside (desired
//! states, Ditto commands, the local API, manifests, log driver options), and the check
//! that a container accepted with them is within the documented bounds and goes through
//! every pure consumer without a panic. The release profile is `panic = "abort"`: one panic
//! anywhere takes the daemon down.

use std::time::Duration;

use super::validate::{MAX_LOG_FILES, MAX_RETRY_TIMEOUT_NS};
use super::{restart, size, Container};

/// Extreme JSON numbers (and numbers in the wrong JSON type), as raw JSON text so that
/// what `serde_json::Value` cannot hold (`1e400`, `-0.0`) reaches the real parser.
pub const JSON_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-0.0",
    "0.0",
    "-1",
    "1",
    "0.5",
    "1.5",
    "-1.5",
    "65535",
    "65536",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "1e19",
    "-1e19",
    "1e308",
    "-1e308",
    "1e400",
    "-1e400",
    "1e-400",
    "5e-324",
    "\"1\"",
    "\"-1\"",
    "\"1e19\"",
    "\"NaN\"",
    "\"Infinity\"",
    "\"-Infinity\"",
    "\"\"",
    "null",
    "true",
    "[]",
    "{}",
];

/// Extreme numbers written as text (the desired state's config values, sizes, durations).
pub const TEXT_NUMBERS: &[&str] = &[
    "",
    " ",
    "0",
    "-0",
    "+0",
    "-0.0",
    "-1",
    "1",
    "1.5",
    "0.5",
    " 5 ",
    "0x10",
    "1_000",
    "65535",
    "65536",
    "2147483648",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "1e19",
    "1e308",
    "1e400",
    "-1e400",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "१",
    "１",
    "0M",
    "0.0000001k",
    "1.5.5M",
    "-1M",
    "1e3M",
    "8589934591G",
    "8589934592G",
    "9999999999G",
    "18446744073709551615k",
    "99999999999999999999999999999g",
    "9999999999h",
    "2562047h",
    "2562048h",
    "1e400s",
    "-1s",
    "0s",
    "1.5s",
];

const MARK: &str = "@@poison@@";

/// `base` as JSON text with the value at `pointer` (`/a/0/b`; missing objects and array
/// slots are made) replaced by the raw JSON text `raw`.
pub fn with_raw(base: &serde_json::Value, pointer: &str, raw: &str) -> String {
    let mut v = base.clone();
    let mut at = &mut v;
    for key in pointer.split('/').skip(1) {
        at = match key.parse::<usize>() {
            Ok(i) => {
                if !at.is_array() {
                    *at = serde_json::Value::Array(Vec::new());
                }
                let items = at.as_array_mut().unwrap();
                while items.len() <= i {
                    items.push(serde_json::json!({}));
                }
                &mut items[i]
            }
            Err(_) => {
                if !at.is_object() {
                    *at = serde_json::json!({});
                }
                at.as_object_mut()
                    .unwrap()
                    .entry(key)
                    .or_insert(serde_json::Value::Null)
            }
        };
    }
    *at = serde_json::Value::String(MARK.into());
    v.to_string().replace(&format!("\"{MARK}\""), raw)
}

/// `base` with the string at `pointer` set to `text` (JSON-escaped).
pub fn with_text(base: &serde_json::Value, pointer: &str, text: &str) -> String {
    with_raw(
        base,
        pointer,
        &serde_json::Value::String(text.into()).to_string(),
    )
}

/// A container that got through parsing and validation: every bounded field is within its
/// bound, and the pure code that reads it (restart decisions, the record's JSON, the local
/// API's and the twin's views, the inventory, the OCI spec, port requests) does not panic.
pub fn check_accepted(c: &Container, what: &str) {
    let hc = &c.host_config;
    let driver = &hc.log_config.driver_config;
    assert!(
        driver.max_files <= MAX_LOG_FILES,
        "{what}: max_files {}",
        driver.max_files
    );
    let rp = &hc.restart_policy;
    // Negative is the default back-off (refused for on-failure, as Kanto does).
    assert!(
        rp.retry_timeout <= MAX_RETRY_TIMEOUT_NS,
        "{what}: retry_timeout {}",
        rp.retry_timeout
    );
    assert!(
        rp.maximum_retry_count >= 0 || rp.policy_type != super::RestartPolicyType::OnFailure,
        "{what}: maximum_retry_count {}",
        rp.maximum_retry_count
    );
    for text in [&driver.max_size, &hc.log_config.mode_config.max_buffer_size] {
        assert!(
            text.is_empty() || size::parse_size(text).is_some_and(|b| b >= 0),
            "{what}: size {text:?}"
        );
    }
    if let Some(r) = &hc.resources {
        for text in [&r.memory, &r.memory_reservation, &r.memory_swap] {
            assert!(
                text.is_empty() || text == "-1" || size::parse_size(text).is_some(),
                "{what}: memory {text:?}"
            );
        }
    }
    exercise(c);
}

/// Runs `c` through the pure consumers of its numbers.
pub fn exercise(c: &Container) {
    let day = Duration::from_secs(24 * 3600);
    assert!(restart::max_backoff(&c.host_config.restart_policy) <= day);
    for previous in [Duration::ZERO, day, Duration::MAX] {
        let _ = restart::decide(
            &c.host_config.restart_policy,
            restart::Exit {
                exit_code: i64::MIN,
                manually_stopped: false,
                ran_for: Duration::ZERO,
                restarts: i64::MAX,
                previous_backoff: previous,
            },
        );
    }
    let record = serde_json::to_vec(c).unwrap();
    let back: Container = serde_json::from_slice(&record).unwrap();
    assert_eq!(&back, c, "the record reads back");
    let _ = crate::api::convert::from_pb(&crate::api::convert::to_pb(c));
    let _ = crate::things::convert::feature(c);
    let _ = crate::agent::inventory::container_node("containers", c, true);
    let _ = crate::network::port_requests(&c.host_config.port_mappings);
    let image = crate::spec::ImageProcess {
        cmd: vec!["/bin/sh".into()],
        ..Default::default()
    };
    let _ = crate::spec::build(&crate::spec::SpecInput {
        container: c,
        image: &image,
        namespace: "kanto-cm",
        devices: &[],
        etc_files: None,
        netns_path: None,
    });
}

/// Numeric fields of the internal container JSON (manifests, SoftwareUpdatable artifacts,
/// records).
pub const INTERNAL_NUMBERS: &[&str] = &[
    "/restart_count",
    "/hooks/0/timeout",
    "/hooks/0/type",
    "/host_config/restart_policy/maximum_retry_count",
    "/host_config/restart_policy/retry_timeout",
    "/host_config/port_mappings/0/container_port",
    "/host_config/port_mappings/0/host_port",
    "/host_config/port_mappings/0/host_port_end",
    "/host_config/log_config/driver_config/max_files",
    "/state/pid",
    "/state/exit_code",
    "/state/status",
    "/leda_cm/schema_version",
    "/leda_cm/network/prefix",
    "/leda_cm/network/ports/0/hostPort",
];

/// Numbers carried as text in the internal container JSON (sizes, Go durations).
pub const INTERNAL_TEXTS: &[&str] = &[
    "/host_config/log_config/driver_config/max_size",
    "/host_config/log_config/mode_config/max_buffer_size",
    "/host_config/resources/memory",
    "/host_config/resources/memory_reservation",
    "/host_config/resources/memory_swap",
    "/host_config/restart_policy/retry_timeout",
];

/// Every (label, JSON text) of the internal format with one extreme value, based on Leda's
/// databroker manifest made on-failure and non-blocking (so that every number is read).
pub fn internal_format_cases() -> Vec<(String, String)> {
    let mut base: serde_json::Value = serde_json::from_str(
        super::MANIFESTS
            .iter()
            .find(|(n, _)| *n == "core_databroker.json")
            .unwrap()
            .1,
    )
    .unwrap();
    base["host_config"]["restart_policy"]["type"] = "on-failure".into();
    base["host_config"]["log_config"]["mode_config"]["mode"] = "non-blocking".into();
    let mut out = Vec::new();
    for pointer in INTERNAL_NUMBERS {
        for raw in JSON_NUMBERS {
            out.push((format!("{pointer} = {raw}"), with_raw(&base, pointer, raw)));
        }
    }
    for pointer in INTERNAL_TEXTS {
        for text in TEXT_NUMBERS {
            out.push((
                format!("{pointer} = {text:?}"),
                with_text(&base, pointer, text),
            ));
        }
    }
    out
}

/// Extreme integers of the local API's int64/int32 fields.
pub const INTEGERS: &[i64] = &[
    0,
    -1,
    1,
    1000,
    1001,
    65_535,
    65_536,
    86_400,
    86_401,
    i32::MAX as i64,
    i32::MIN as i64,
    u32::MAX as i64,
    9_223_372_036,
    9_223_372_037,
    i64::MAX / 1_000_000_000,
    i64::MAX,
    i64::MIN,
    i64::MIN + 1,
];
