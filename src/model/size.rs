//! Kanto's size strings (`"100M"`, `"1.5G"`, `"10 k"`): a number, an optional space and one
//! of k/m/g (either case), in powers of 1024. Used for memory limits and log sizes.

pub const KIB: i64 = 1024;
pub const MIB: i64 = 1024 * KIB;
pub const GIB: i64 = 1024 * MIB;

/// Bytes in `text`, or `None` when it is not a size Kanto would accept.
pub fn parse_size(text: &str) -> Option<i64> {
    let (number, unit) = split(text)?;
    let value: f64 = number.parse().ok()?;
    let multiplier = match unit.to_ascii_lowercase() {
        'k' => KIB,
        'm' => MIB,
        'g' => GIB,
        _ => return None,
    };
    let bytes = value * multiplier as f64;
    (bytes.is_finite() && bytes < i64::MAX as f64).then_some(bytes as i64)
}

/// Kanto's `SizeRecalculate`: applies `f` to the number and keeps the unit (`"1M"` × 2 →
/// `"2M"`), rounded to four decimals.
pub fn recalculate(text: &str, f: impl Fn(f64) -> f64) -> Option<String> {
    let (number, unit) = split(text)?;
    let value: f64 = number.parse().ok()?;
    let result = (f(value) * 10000.0).round() / 10000.0;
    Some(format!("{result}{unit}"))
}

fn split(text: &str) -> Option<(&str, char)> {
    let unit = text.chars().last()?;
    if !matches!(unit.to_ascii_lowercase(), 'k' | 'm' | 'g') {
        return None;
    }
    let number = text[..text.len() - 1]
        .strip_suffix(' ')
        .unwrap_or(&text[..text.len() - 1]);
    // `\d+(\.\d+)*` as in Kanto: digits, optionally dotted groups of digits.
    let valid = !number.is_empty()
        && number
            .split('.')
            .all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_digit()));
    valid.then_some((number, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        let cases: &[(&str, Option<i64>)] = &[
            ("100M", Some(100 * MIB)),
            ("1M", Some(MIB)),
            ("3m", Some(3 * MIB)),
            ("10k", Some(10 * KIB)),
            ("10 K", Some(10 * KIB)),
            ("1.5G", Some(3 * GIB / 2)),
            ("2g", Some(2 * GIB)),
            ("1k", Some(1024)),
            ("", None),
            ("M", None),
            ("100", None),
            ("100MB", None),
            ("-1M", None),
            ("1.M", None),
            ("abc", None),
            ("1  M", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text), *want, "{text:?}");
        }
    }

    #[test]
    fn recalculation_keeps_the_unit() {
        assert_eq!(recalculate("1M", |x| x * 2.0).as_deref(), Some("2M"));
        assert_eq!(recalculate("1.5G", |x| x * 2.0).as_deref(), Some("3G"));
        assert_eq!(recalculate("100m", |x| x * 2.0).as_deref(), Some("200m"));
        assert_eq!(recalculate("x", |x| x), None);
    }
}
