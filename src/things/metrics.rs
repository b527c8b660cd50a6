//! The Metrics feature's decisions (pure): the `request` argument (frequency and filter),
//! which measurements a filter lets through, CPU utilisation from two samples, and the
//! `data` message's value. As Kanto: percentages of the whole machine, timestamp in seconds,
//! a filter id matching by prefix once `*` is trimmed from its ends; counters (bytes, pids)
//! are JSON integers and so is an integral percentage, as Go writes Kanto's float64 values.

use std::time::Duration;

use serde_json::{json, Value};

use super::ditto::{go_number, ThingError};
use crate::duration::parse_go_duration;
use crate::runtime::Metrics;

pub const METRICS_DEFINITION: &str = "com.bosch.iot.suite.edge.metric:Metrics:1.0.0";
pub const MIN_FREQUENCY: Duration = Duration::from_secs(1);
/// The longest period a request may ask for (a day): anything from outside is bounded, and
/// the timer arithmetic then cannot overflow.
pub const MAX_FREQUENCY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub ids: Vec<String>,
    /// `Container:<id>`, or empty for every originator.
    pub originator: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Request {
    /// Zero stops the reports.
    pub frequency: Duration,
    pub filter: Vec<Filter>,
}

/// Parses `request`'s value: `frequency` a Go duration or a number of seconds (≤ 0 stops,
/// below 1 s is 1 s), `filter` a list of `{id: [...], originator}`.
pub fn parse_request(value: &Value) -> Result<Request, ThingError> {
    let bad = |m: String| ThingError::invalid(format!("request: {m}"));
    let obj = match value {
        Value::Object(o) => o,
        Value::Null => return Ok(Request::default()),
        other => return Err(bad(format!("expected an object, not {other}"))),
    };
    for key in obj.keys() {
        if key != "frequency" && key != "filter" {
            return Err(bad(format!("unknown field {key}")));
        }
    }
    let frequency = match obj.get("frequency") {
        None | Some(Value::Null) => Duration::ZERO,
        Some(Value::String(s)) if s.trim_start().starts_with('-') => Duration::ZERO,
        Some(Value::String(s)) => parse_go_duration(s)
            .map_err(|e| bad(format!("frequency: invalid duration {s:?}: {e}")))?,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(secs) if secs > MAX_FREQUENCY.as_secs_f64() && secs.is_finite() => {
                return Err(bad(format!(
                    "frequency: {n} s is more than the longest period, {} s",
                    MAX_FREQUENCY.as_secs()
                )))
            }
            Some(secs) if secs >= 1.0 && secs.is_finite() => {
                Duration::from_secs(secs.trunc() as u64)
            }
            Some(secs) if secs.is_finite() => {
                if secs > 0.0 {
                    MIN_FREQUENCY
                } else {
                    Duration::ZERO
                }
            }
            _ => return Err(bad(format!("frequency: invalid number {n}"))),
        },
        Some(other) => {
            return Err(bad(format!(
                "frequency: expected a duration such as \"5s\", not {other}"
            )))
        }
    };
    if frequency > MAX_FREQUENCY {
        return Err(bad(format!(
            "frequency: {frequency:?} is more than the longest period, {MAX_FREQUENCY:?}"
        )));
    }
    let frequency = if frequency.is_zero() {
        frequency
    } else {
        frequency.max(MIN_FREQUENCY)
    };
    let mut filter = Vec::new();
    match obj.get("filter") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let Value::Object(f) = item else {
                    return Err(bad(format!("filter[{i}]: expected an object")));
                };
                let ids = match f.get("id") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(ids)) => ids
                        .iter()
                        .map(|id| id.as_str().map(String::from))
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad(format!("filter[{i}].id: expected strings")))?,
                    Some(_) => {
                        return Err(bad(format!(
                            "filter[{i}].id: expected a list of metric ids"
                        )))
                    }
                };
                let originator = match f.get("originator") {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(o)) => o.clone(),
                    Some(_) => {
                        return Err(bad(format!("filter[{i}].originator: expected a string")))
                    }
                };
                filter.push(Filter { ids, originator });
            }
        }
        Some(_) => return Err(bad("filter: expected a list".into())),
    }
    Ok(Request { frequency, filter })
}

fn id_matches(filter_id: &str, metric: &str) -> bool {
    filter_id == metric || metric.starts_with(filter_id.trim_matches('*'))
}

/// Whether the request wants `metric` of `originator`.
pub fn wanted(filter: &[Filter], originator: &str, metric: &str) -> bool {
    filter.is_empty()
        || filter.iter().any(|f| {
            (f.originator.is_empty() || f.originator == originator)
                && (f.ids.is_empty() || f.ids.iter().any(|id| id_matches(id, metric)))
        })
}

/// Whether the request wants anything of `originator` (its CPU baseline is then kept).
pub fn wants_originator(filter: &[Filter], originator: &str) -> bool {
    filter.is_empty()
        || filter
            .iter()
            .any(|f| f.originator.is_empty() || f.originator == originator)
}

/// A CPU sample: the container's CPU time and the machine's (all cores), nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSample {
    pub container_ns: u64,
    pub host_ns: u64,
}

/// The container's share of the whole machine between two samples, in percent (0–100).
pub fn cpu_utilization(before: CpuSample, now: CpuSample) -> Option<f64> {
    let host = now.host_ns.checked_sub(before.host_ns).filter(|d| *d > 0)?;
    let used = now.container_ns.saturating_sub(before.container_ns);
    Some((used as f64 / host as f64 * 100.0).clamp(0.0, 100.0))
}

/// One measured value: a counter, or a percentage.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reading {
    Count(u64),
    Percent(f64),
}

impl Reading {
    pub fn as_f64(self) -> f64 {
        match self {
            Reading::Count(n) => n as f64,
            Reading::Percent(p) => p,
        }
    }

    /// A counter as a JSON integer (`"pids": 2`), a percentage as Go writes a float64.
    pub fn to_json(self) -> Value {
        match self {
            Reading::Count(n) => json!(n),
            Reading::Percent(p) => go_number(p),
        }
    }
}

/// One container's measurements, in Kanto's order, the ones the filter lets through.
pub fn measurements(
    originator: &str,
    m: &Metrics,
    cpu: Option<f64>,
    host_memory: u64,
    has_network: bool,
    filter: &[Filter],
) -> Vec<(&'static str, Reading)> {
    use Reading::{Count, Percent};
    let total = match (m.memory_limit, host_memory) {
        (0, h) => h,
        (l, 0) => l,
        (l, h) => l.min(h),
    };
    let mut out = Vec::with_capacity(9);
    if let Some(c) = cpu {
        out.push(("cpu.utilization", Percent(c)));
    }
    out.push(("memory.total", Count(total)));
    out.push(("memory.used", Count(m.memory_used)));
    if total > 0 {
        out.push((
            "memory.utilization",
            Percent((m.memory_used as f64 / total as f64 * 100.0).clamp(0.0, 100.0)),
        ));
    }
    out.push(("io.readBytes", Count(m.io_read_bytes)));
    out.push(("io.writeBytes", Count(m.io_write_bytes)));
    if has_network {
        out.push(("net.readBytes", Count(m.net_rx_bytes)));
        out.push(("net.writeBytes", Count(m.net_tx_bytes)));
    }
    if m.pids > 0 {
        out.push(("pids", Count(m.pids)));
    }
    out.retain(|(id, _)| wanted(filter, originator, id));
    out
}

/// The `data` message's value; None when nothing was measured (no message then).
pub fn data(
    snapshot: Vec<(String, Vec<(&'static str, Reading)>)>,
    unix_seconds: u64,
) -> Option<Value> {
    let items: Vec<Value> = snapshot
        .into_iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(originator, m)| {
            json!({
                "originator": originator,
                "measurements": m.into_iter().map(|(id, value)| json!({"id": id, "value": value.to_json()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    (!items.is_empty()).then(|| json!({"snapshot": items, "timestamp": unix_seconds}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/container-metrics-request.json"
        ))
        .unwrap();
        assert_eq!(
            parse_request(&fixture["value"]).unwrap().frequency,
            Duration::from_secs(5)
        );
        let cases = [
            (json!({"frequency": "0s"}), Duration::ZERO),
            (json!({"frequency": "-1s"}), Duration::ZERO),
            (json!({"frequency": 0}), Duration::ZERO),
            (json!({"frequency": "250ms"}), MIN_FREQUENCY),
            (json!({"frequency": 0.5}), MIN_FREQUENCY),
            (json!({"frequency": 2.7}), Duration::from_secs(2)),
            (json!({"frequency": "1m"}), Duration::from_secs(60)),
            (json!({"frequency": 86400}), MAX_FREQUENCY),
            (json!({"frequency": "24h"}), MAX_FREQUENCY),
            (json!({"frequency": -1e300}), Duration::ZERO),
            (json!({}), Duration::ZERO),
        ];
        for (v, want) in cases {
            assert_eq!(parse_request(&v).unwrap().frequency, want, "{v}");
        }
        for (v, needle) in [
            (
                json!({"frequency": "fast"}),
                "frequency: invalid duration \"fast\"",
            ),
            (json!({"frequency": true}), "frequency: expected a duration"),
            (json!({"filter": "cpu"}), "filter: expected a list"),
            (json!({"filter": [{"id": "cpu"}]}), "filter[0].id"),
            (json!({"often": 1}), "unknown field often"),
            (json!([1]), "expected an object"),
            // Bounded: a huge period would overflow the timer (it once aborted the daemon).
            (json!({"frequency": 1e19}), "more than the longest period"),
            (json!({"frequency": 86401}), "more than the longest period"),
            (
                json!({"frequency": "2562047h"}),
                "more than the longest period",
            ),
            (json!({"frequency": "25h"}), "more than the longest period"),
            (
                json!({"frequency": f64::MAX}),
                "more than the longest period",
            ),
        ] {
            let e = parse_request(&v).unwrap_err();
            assert_eq!(e.status, 400);
            assert!(e.message.contains(needle), "{v}: {}", e.message);
        }
    }

    #[test]
    fn filters() {
        let f = parse_request(&json!({"frequency": "1s", "filter": [
            {"id": ["cpu.*", "memory.used"], "originator": "Container:a"},
            {"id": ["pids"]}
        ]}))
        .unwrap()
        .filter;
        assert!(wanted(&f, "Container:a", "cpu.utilization"));
        assert!(wanted(&f, "Container:a", "memory.used"));
        assert!(!wanted(&f, "Container:a", "memory.total"));
        assert!(!wanted(&f, "Container:b", "cpu.utilization"));
        assert!(wanted(&f, "Container:b", "pids"));
        assert!(wanted(&[], "Container:b", "io.readBytes"));
        let star = [Filter {
            ids: vec!["*".into()],
            originator: String::new(),
        }];
        assert!(wanted(&star, "Container:x", "net.readBytes"));
        // Kanto's prefix rule: a bare prefix matches too, a leading-wildcard suffix does not.
        let memory = [Filter {
            ids: vec!["memory".into(), "*.utilization".into()],
            originator: String::new(),
        }];
        assert!(wanted(&memory, "Container:x", "memory.utilization"));
        assert!(!wanted(&memory, "Container:x", "cpu.utilization"));
        assert!(!wants_originator(&f[..1], "Container:b"));
    }

    #[test]
    fn cpu_and_snapshot() {
        let a = CpuSample {
            container_ns: 1_000,
            host_ns: 10_000,
        };
        let b = CpuSample {
            container_ns: 1_500,
            host_ns: 20_000,
        };
        assert_eq!(cpu_utilization(a, b), Some(5.0));
        assert_eq!(cpu_utilization(b, b), None);
        let m = Metrics {
            cpu_total_ns: 0,
            memory_used: 1_941_504,
            memory_limit: 0,
            pids: 5,
            net_rx_bytes: 3074,
            net_tx_bytes: 3944,
            ..Default::default()
        };
        let got = measurements("Container:x", &m, Some(0.06), 2_076_409_856, true, &[]);
        let ids: Vec<&str> = got.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            [
                "cpu.utilization",
                "memory.total",
                "memory.used",
                "memory.utilization",
                "io.readBytes",
                "io.writeBytes",
                "net.readBytes",
                "net.writeBytes",
                "pids"
            ]
        );
        let util = got
            .iter()
            .find(|(id, _)| *id == "memory.utilization")
            .unwrap()
            .1
            .as_f64();
        assert!((util - 0.0935029).abs() < 1e-4, "{util}");
        let v = data(
            vec![("Container:x".into(), got), ("Container:y".into(), vec![])],
            1_675_431_034,
        )
        .unwrap();
        // The shape of the seed's metrics message.
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/container-metrics-response.json"
        ))
        .unwrap();
        assert_eq!(v["timestamp"], fixture["value"]["timestamp"]);
        assert_eq!(v["snapshot"].as_array().unwrap().len(), 1);
        // Counters are integers, as Kanto (Go) writes them: `"pids": 5`, never `5.0`.
        let text = v.to_string();
        assert!(text.contains(r#"{"id":"pids","value":5}"#), "{text}");
        assert!(
            text.contains(r#"{"id":"memory.used","value":1941504}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{"id":"net.writeBytes","value":3944}"#),
            "{text}"
        );
        assert!(
            text.contains(r#"{"id":"cpu.utilization","value":0.06}"#),
            "{text}"
        );
        for m in v["snapshot"][0]["measurements"].as_array().unwrap() {
            let id = m["id"].as_str().unwrap();
            if !id.ends_with("utilization") {
                assert!(m["value"].is_u64(), "{m}");
            }
        }
        // An integral percentage is an integer too (Go writes 100.0 as 100).
        let full = data(
            vec![(
                "Container:z".into(),
                vec![("cpu.utilization", Reading::Percent(100.0))],
            )],
            1,
        )
        .unwrap();
        assert_eq!(
            full["snapshot"][0]["measurements"][0]["value"].to_string(),
            "100"
        );
        assert!(data(vec![("Container:y".into(), vec![])], 1).is_none());
    }

    /// Extreme frequencies in a real Metrics request (the fixture's envelope through the
    /// Ditto parser): refused with a 400, or a period from 0 to a day that the timer can add
    /// to now; never a panic (1e19 used to abort the daemon).
    #[test]
    fn extreme_frequencies_are_refused_or_bounded() {
        use crate::model::poison;
        let fixture: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/leda-docs/container-metrics-request.json"
        ))
        .unwrap();
        let thing = crate::things::ditto::Thing {
            namespace: "dummy-namespace".into(),
            name: "dummy-gateway:dummy-device-id:edge:containers".into(),
            tenant: String::new(),
        };
        let topic =
            "command//dummy-namespace:dummy-gateway:dummy-device-id:edge:containers/req/r1/request";
        let mut cases: Vec<String> = poison::JSON_NUMBERS
            .iter()
            .map(|raw| poison::with_raw(&fixture, "/value/frequency", raw))
            .collect();
        cases.extend(
            poison::TEXT_NUMBERS
                .iter()
                .map(|t| poison::with_text(&fixture, "/value/frequency", t)),
        );
        let (mut accepted, mut refused) = (0, 0);
        let now = std::time::Instant::now();
        for text in &cases {
            let request = match crate::things::ditto::parse_request(topic, text.as_bytes(), &thing)
            {
                Ok(r) => r,
                Err(e) => {
                    assert_eq!(e.1.status, 400, "{text}");
                    refused += 1;
                    continue;
                }
            };
            assert_eq!(request.feature, "Metrics");
            match parse_request(&request.value) {
                Ok(r) => {
                    accepted += 1;
                    assert!(r.frequency <= MAX_FREQUENCY, "{text}: {:?}", r.frequency);
                    assert!(
                        r.frequency.is_zero() || r.frequency >= MIN_FREQUENCY,
                        "{text}"
                    );
                    assert!(now.checked_add(r.frequency).is_some());
                }
                Err(e) => {
                    refused += 1;
                    assert_eq!(e.status, 400, "{text}");
                    assert!(e.message.starts_with("request: "), "{text}: {}", e.message);
                }
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{accepted} accepted, {refused} refused"
        );
    }

    /// Extreme samples from containerd: percentages stay within 0–100, no panic.
    #[test]
    fn extreme_samples_stay_in_range() {
        let values = [0, 1, u64::MAX / 2, u64::MAX - 1, u64::MAX];
        for &a in &values {
            for &b in &values {
                for &c in &values {
                    for &d in &values {
                        let before = CpuSample {
                            container_ns: a,
                            host_ns: b,
                        };
                        let now = CpuSample {
                            container_ns: c,
                            host_ns: d,
                        };
                        if let Some(p) = cpu_utilization(before, now) {
                            assert!((0.0..=100.0).contains(&p), "{p}");
                        }
                    }
                }
                let m = Metrics {
                    memory_used: a,
                    memory_limit: b,
                    pids: a,
                    ..Default::default()
                };
                for host in values {
                    for (id, v) in measurements("Container:x", &m, Some(100.0), host, true, &[]) {
                        let v = v.as_f64();
                        assert!(v.is_finite() && v >= 0.0, "{id} {v}");
                        if id.ends_with("utilization") {
                            assert!(v <= 100.0, "{id} {v}");
                        }
                    }
                }
            }
        }
        assert!(data(
            vec![(
                "Container:x".into(),
                vec![("pids", Reading::Count(u64::MAX))]
            )],
            u64::MAX
        )
        .is_some());
    }
}
