//! Sizes as Kanto writes them in log configurations (`max_size`, `max_buffer_size`):
//! `"100M"`, `"1.5 g"`, `"10k"`. Pure.
//!
//! Same rules as Kanto's `util.SizeToBytes`: a decimal number (optionally with a fraction),
//! at most one space, and a unit `k`, `m` or `g` in either case, which is required; units are
//! powers of 1024; the result is truncated to whole bytes.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("invalid size {input:?}: expected a number and a unit k, m or g, e.g. \"100M\"")]
    Invalid { input: String },
}

/// Bytes in a size string such as `"100M"` (104857600) or `"1.5k"` (1536); the one parser
/// is `model::size`, shared with the memory limits.
pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    crate::model::size::parse_size(input)
        .and_then(|b| u64::try_from(b).ok())
        .ok_or_else(|| SizeError::Invalid {
            input: input.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (input, want) in [
            ("1k", 1024),
            ("1K", 1024),
            ("10k", 10 * 1024),
            ("1m", 1 << 20),
            ("1M", 1 << 20),
            ("100M", 100 << 20),
            ("1g", 1 << 30),
            ("1G", 1 << 30),
            ("1.5G", 3 << 29),
            ("1.5k", 1536),
            // Kanto: float64 product truncated to int64.
            ("1.1m", 1_153_433),
            ("1.1M", 1_153_433),
            ("1 M", 1 << 20),
            ("0k", 0),
            ("007k", 7 * 1024),
            ("0.5k", 512),
        ] {
            assert_eq!(parse_size(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn invalid_sizes() {
        for input in [
            "",
            "k",
            "M",
            "1",
            "100",
            "1z",
            "1kb",
            "1KiB",
            "1  M",
            " 1M",
            "1M ",
            "-1M",
            "+1M",
            "1.M",
            ".5M",
            "1.2.3k",
            "1,5M",
            "1e3k",
            "ä",
            "1äk",
            "9999999999999g",
        ] {
            assert_eq!(
                parse_size(input),
                Err(SizeError::Invalid {
                    input: input.into()
                }),
                "{input:?}"
            );
        }
        assert_eq!(
            parse_size("1z").unwrap_err().to_string(),
            "invalid size \"1z\": expected a number and a unit k, m or g, e.g. \"100M\""
        );
    }
}
