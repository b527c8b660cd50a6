//! Docker's json-file lines: encoding an entry, decoding one, the timestamp, and cutting a
//! pipe's bytes into lines of at most [`MAX_LINE`] bytes. Pure.
//!
//! An entry is `{"log":"<text>","stream":"stdout|stderr","time":"<RFC 3339, 9 digits, Z>"}`
//! and a newline, byte for byte as Docker's json-file driver writes it: the string escapes
//! `"`, `\`, `\n`, `\r`, `\t`, other control characters as `\u00XX`, `<`, `>` and `&` as
//! `\u003c`, `\u003e`, `\u0026`, U+2028/U+2029 as `\u2028`/`\u2029`, and every byte that is
//! not valid UTF-8 as `\ufffd`.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::MAX_LINE;

/// Which pipe a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One entry of a json-file log: `log` holds the line with its `\n` (none on a piece of a
/// split long line or on a last line that had none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    pub log: String,
    pub time: SystemTime,
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a json-file log entry: {source}")]
    Json { source: serde_json::Error },
    #[error("unknown stream {stream:?} in a log entry")]
    Stream { stream: String },
    #[error("bad time {time:?} in a log entry: {source}")]
    Time {
        time: String,
        source: humantime::TimestampError,
    },
}

/// Length of `2006-01-02T15:04:05.000000000Z`.
pub const TIME_LEN: usize = 30;

/// Latest time humantime formats: 9999-12-31T23:59:59.999999999Z.
const MAX_TIME: Duration = Duration::new(253_402_300_799, 999_999_999);

/// `time` in UTC as RFC 3339 with nine fraction digits (Docker's `RFC3339NanoFixed`), in a
/// fixed-capacity buffer. Times outside 1970–9999 are clamped.
pub fn format_time(time: SystemTime) -> heapless::String<TIME_LEN> {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let time = UNIX_EPOCH + since.min(MAX_TIME);
    let mut out = heapless::String::new();
    // Cannot fail: the clamped time always formats to exactly TIME_LEN bytes.
    let _ = write!(out, "{}", humantime::format_rfc3339_nanos(time));
    out
}

/// Appends the entry for `line` (raw bytes, any encoding) and a newline to `out`.
pub fn encode(out: &mut Vec<u8>, stream: Stream, line: &[u8], time: SystemTime) {
    out.extend_from_slice(b"{\"log\":");
    json_string(out, line);
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(format_time(time).as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// `bytes` as a JSON string with Docker's escaping (see the module docs).
fn json_string(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut rest = bytes;
    while !rest.is_empty() {
        // (`<[u8]>::utf8_chunks` needs Rust 1.79; this is the same walk for 1.75.)
        let (valid, invalid) = match std::str::from_utf8(rest) {
            Ok(s) => (s, 0),
            Err(e) => {
                let n = e.valid_up_to();
                let bad = e.error_len().unwrap_or(rest.len() - n);
                (std::str::from_utf8(&rest[..n]).unwrap_or_default(), bad)
            }
        };
        rest = &rest[valid.len() + invalid..];
        for c in valid.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c if c < ' ' || c == '<' || c == '>' || c == '&' => {
                    let b = c as u8;
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                c => {
                    let mut utf8 = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        // Docker writes one replacement character per invalid byte.
        for _ in 0..invalid {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

#[derive(Deserialize)]
struct RawEntry<'a> {
    // Kanto leaves out an empty "log".
    #[serde(borrow, default)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// Decodes one line of a json-file log (without or with its trailing newline). Accepts
/// Docker's and Kanto's files (Kanto trims trailing zeros of the fraction).
pub fn decode(line: &[u8]) -> Result<LogEntry, FormatError> {
    let raw: RawEntry =
        serde_json::from_slice(line).map_err(|source| FormatError::Json { source })?;
    let stream = match &*raw.stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        other => {
            return Err(FormatError::Stream {
                stream: other.to_owned(),
            })
        }
    };
    let time = humantime::parse_rfc3339(&raw.time).map_err(|source| FormatError::Time {
        time: raw.time.to_string(),
        source,
    })?;
    Ok(LogEntry {
        stream,
        log: raw.log.into_owned(),
        time,
    })
}

/// Cuts a pipe's byte stream into log lines: a line with its `\n`, or a piece of exactly
/// [`MAX_LINE`] bytes of a longer line (without `\n`), or at the end whatever is left.
///
/// A line of at most `MAX_LINE` bytes plus its newline stays whole; the fixed buffer holds
/// at most one line in the making, so memory does not depend on what the container writes.
#[derive(Debug, Default)]
pub struct LineAssembler {
    buf: heapless::Vec<u8, { MAX_LINE + 1 }>,
}

impl LineAssembler {
    pub fn new() -> LineAssembler {
        LineAssembler::default()
    }

    /// Feeds bytes read from the pipe; `emit` gets each finished line or piece, in order.
    pub fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = MAX_LINE - self.buf.len();
            // A newline within the next `room + 1` bytes ends a line that fits.
            let window = &data[..data.len().min(room + 1)];
            let (take, line_done) = match window.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None if data.len() > room => (room, true),
                None => (data.len(), false),
            };
            let (head, rest) = data.split_at(take);
            data = rest;
            if !line_done {
                // `head` fits: take ≤ room.
                let _ = self.buf.extend_from_slice(head);
            } else if self.buf.is_empty() {
                emit(head);
            } else {
                // buf + head ≤ MAX_LINE + 1 (the newline).
                let _ = self.buf.extend_from_slice(head);
                emit(&self.buf);
                self.buf.clear();
            }
        }
    }

    /// The pipe ended: emits a last line that has no newline.
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            emit(&self.buf);
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn timestamps() {
        for (time, want) in [
            (at(0, 0), "1970-01-01T00:00:00.000000000Z"),
            (
                at(1_714_557_600, 123_456_789),
                "2024-05-01T10:00:00.123456789Z",
            ),
            (at(1_714_557_600, 5), "2024-05-01T10:00:00.000000005Z"),
            (
                UNIX_EPOCH - Duration::from_secs(5),
                "1970-01-01T00:00:00.000000000Z",
            ),
            (at(300_000_000_000, 0), "9999-12-31T23:59:59.999999999Z"),
        ] {
            assert_eq!(format_time(time).as_str(), want);
            assert_eq!(format_time(time).len(), TIME_LEN);
        }
    }

    #[test]
    fn encoding_as_docker() {
        let t = at(1_714_557_600, 123_456_789);
        let line = |bytes: &[u8], stream| {
            let mut out = Vec::new();
            encode(&mut out, stream, bytes, t);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            line(b"hello\n", Stream::Stdout),
            "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2024-05-01T10:00:00.123456789Z\"}\n"
        );
        for (input, want) in [
            (&b""[..], r#""""#),
            (b"a\"b\\c", r#""a\"b\\c""#),
            (b"\r\t\n", r#""\r\t\n""#),
            // DEL is not a control character for JSON: raw, as Docker writes it.
            (b"\x00\x1b\x7f", "\"\\u0000\\u001b\x7f\""),
            (b"<a href=x&y>", r#""\u003ca href=x\u0026y\u003e""#),
            ("grüße €".as_bytes(), "\"grüße €\""),
            ("\u{2028}\u{2029}".as_bytes(), r#""\u2028\u2029""#),
            (b"a\xffb\xc3", r#""a\ufffdb\ufffd""#),
            (b"\xe2\x82", r#""\ufffd\ufffd""#),
            (b"/", r#""/""#),
        ] {
            let got = line(input, Stream::Stderr);
            let want = format!(
                "{{\"log\":{want},\"stream\":\"stderr\",\"time\":\"2024-05-01T10:00:00.123456789Z\"}}\n"
            );
            assert_eq!(got, want, "{input:?}");
            // Whatever the bytes, the line is valid JSON and decodes to their lossy text,
            // except that Docker replaces each invalid byte.
            let entry = decode(got.as_bytes()).unwrap();
            assert_eq!(entry.stream, Stream::Stderr);
            assert_eq!(entry.time, t);
            if std::str::from_utf8(input).is_ok() {
                assert_eq!(entry.log.as_bytes(), input);
            }
        }
    }

    #[test]
    fn decoding() {
        let ok = [
            (
                r#"{"log":"hi\n","stream":"stdout","time":"2024-05-01T10:00:00.123456789Z"}"#,
                Stream::Stdout,
                "hi\n",
                at(1_714_557_600, 123_456_789),
            ),
            // Kanto: "stream" first, trimmed fraction.
            (
                "{\"stream\":\"stderr\",\"log\":\"x\",\"time\":\"2024-05-01T10:00:00.5Z\"}\n",
                Stream::Stderr,
                "x",
                at(1_714_557_600, 500_000_000),
            ),
            (
                r#"{"stream":"stdout","time":"2024-05-01T10:00:00Z"}"#,
                Stream::Stdout,
                "",
                at(1_714_557_600, 0),
            ),
            (
                r#"{"log":"\u003c\u2028","stream":"stdout","time":"2024-05-01T10:00:00Z","attrs":{}}"#,
                Stream::Stdout,
                "<\u{2028}",
                at(1_714_557_600, 0),
            ),
        ];
        for (line, stream, log, time) in ok {
            let entry = decode(line.as_bytes()).unwrap();
            assert_eq!(
                entry,
                LogEntry {
                    stream,
                    log: log.into(),
                    time
                },
                "{line}"
            );
        }
        for (line, want) in [
            (
                r#"{"log":"x","stream":"stdout","time":"2024-05-01T10:00:00.12"#,
                "not a json-file log entry",
            ),
            (
                r#"{"log":"x","time":"2024-05-01T10:00:00Z"}"#,
                "not a json-file log entry",
            ),
            ("", "not a json-file log entry"),
            (
                r#"{"log":"x","stream":"stdin","time":"2024-05-01T10:00:00Z"}"#,
                "unknown stream \"stdin\"",
            ),
            (
                r#"{"log":"x","stream":"stdout","time":"yesterday"}"#,
                "bad time \"yesterday\"",
            ),
            (
                r#"{"log":"x","stream":"stdout","time":"2024-05-01T10:00:00+02:00"}"#,
                "bad time",
            ),
        ] {
            let err = decode(line.as_bytes()).unwrap_err().to_string();
            assert!(err.starts_with(want), "{line}: {err}");
        }
    }

    /// Feeds `chunks` and returns what was emitted, `|` after each emitted piece.
    fn assemble(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut a = LineAssembler::new();
        let mut out = Vec::new();
        for chunk in chunks {
            a.feed(chunk, |l| out.push(l.to_vec()));
        }
        a.finish(|l| out.push(l.to_vec()));
        out
    }

    /// Chunks fed, and the lines emitted.
    type Case = (&'static [&'static [u8]], Vec<Vec<u8>>);

    #[test]
    fn lines() {
        let v = |s: &str| s.as_bytes().to_vec();
        let cases: &[Case] = &[
            (&[], vec![]),
            (&[b""], vec![]),
            (&[b"a\nb\n"], vec![v("a\n"), v("b\n")]),
            (&[b"a", b"b\nc", b"\n"], vec![v("ab\n"), v("c\n")]),
            (&[b"\n\n"], vec![v("\n"), v("\n")]),
            (&[b"last"], vec![v("last")]),
            (&[b"x\nlast", b" bit"], vec![v("x\n"), v("last bit")]),
        ];
        for (chunks, want) in cases {
            assert_eq!(&assemble(chunks), want, "{chunks:?}");
        }
    }

    #[test]
    fn long_lines_split_at_16k() {
        let long = |n: usize| vec![b'x'; n];
        let with_nl = |n: usize| {
            let mut l = long(n);
            l.push(b'\n');
            l
        };
        // Exactly MAX_LINE plus newline stays whole, whether the newline comes later or not.
        assert_eq!(assemble(&[&with_nl(MAX_LINE)]), vec![with_nl(MAX_LINE)]);
        assert_eq!(assemble(&[&long(MAX_LINE), b"\n"]), vec![with_nl(MAX_LINE)]);
        assert_eq!(
            assemble(&[&long(MAX_LINE - 3), b"xxx", b"\n"]),
            vec![with_nl(MAX_LINE)]
        );
        // One byte more: a full piece, then the rest.
        assert_eq!(
            assemble(&[&with_nl(MAX_LINE + 1)]),
            vec![long(MAX_LINE), v_nl("x")]
        );
        assert_eq!(
            assemble(&[&long(MAX_LINE), b"x\n"]),
            vec![long(MAX_LINE), v_nl("x")]
        );
        // 100 KiB in odd chunk sizes: six pieces of 16 KiB, the rest with the newline.
        let big = with_nl(100 * 1024);
        let chunks: Vec<&[u8]> = big.chunks(7_000).collect();
        let out = assemble(&chunks);
        assert_eq!(out.len(), 7);
        assert!(out[..6].iter().all(|p| *p == long(MAX_LINE)));
        assert_eq!(out[6], with_nl(100 * 1024 - 6 * MAX_LINE));
        // A long line without newline at EOF.
        assert_eq!(
            assemble(&[&long(MAX_LINE * 2 + 1)]),
            vec![long(MAX_LINE), long(MAX_LINE), long(1)]
        );
    }

    fn v_nl(s: &str) -> Vec<u8> {
        format!("{s}\n").into_bytes()
    }
}
