//! Go's `time.ParseDuration` syntax, which Kanto's configuration and messages use
//! (`"744h"`, `"1m30s"`, `"0.5s"`, `"250ms"`), and its inverse for output.
//!
//! Hand-written because no maintained crate speaks exactly Go's grammar: humantime wants
//! spaces and does not take fractions; Go takes `"1.5h"` and `"1h30m"` but no spaces.

use std::time::Duration;

/// Parses a Go duration. Negative values are rejected (no Kanto setting takes them).
pub fn parse_go_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let err =
        || format!("invalid duration \"{text}\" (expected e.g. \"30s\", \"1m30s\", \"744h\")");
    if s.is_empty() {
        return Err(err());
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("negative duration \"{text}\""));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(err());
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Formats like Go's `Duration.String()` for whole units: `"1h0m0s"` → we print `"1h"`-style
/// compact forms (`"90s"` becomes `"1m30s"`), which Go parses back.
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    let nanos = d.as_nanos();
    if nanos % 1_000_000_000 != 0 {
        if nanos % 1_000_000 == 0 {
            return format!("{}ms", nanos / 1_000_000);
        }
        return format!("{nanos}ns");
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("0s", 0),
            ("30s", 30_000_000_000),
            ("744h", 744 * 3600 * 1_000_000_000),
            ("1m30s", 90_000_000_000),
            ("250ms", 250_000_000),
            ("0.5s", 500_000_000),
            ("1.5h", 5400 * 1_000_000_000),
            (
                "72h3m0.5s",
                (72 * 3600 + 3 * 60) * 1_000_000_000 + 500_000_000,
            ),
            ("10us", 10_000),
            ("10µs", 10_000),
            ("7ns", 7),
            ("+5s", 5_000_000_000),
        ];
        for (text, nanos) in cases {
            assert_eq!(
                parse_go_duration(text).unwrap(),
                Duration::from_nanos(*nanos),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for text in ["", "5", "s", "1x", "1h 30m", "-5s", "1..5s", "abc", "h1"] {
            assert!(parse_go_duration(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn formats_round_trip() {
        for secs in [0u64, 1, 59, 60, 90, 3600, 3661, 744 * 3600] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse_go_duration(&format_go_duration(d)).unwrap(), d);
        }
        assert_eq!(format_go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
    }
}
