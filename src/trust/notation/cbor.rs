//! A small CBOR (RFC 8949) decoder for COSE_Sign1 envelopes: definite lengths only (what
//! go-cose writes), bounded nesting, every read bounds-checked.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value {
    /// Major types 0 and 1.
    Int(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Tag(u64, Box<Value>),
    Bool(bool),
    Null,
    /// Other simple values and floats: kept as a marker (nothing notation reads).
    Other,
}

const MAX_DEPTH: usize = 16;

/// Decodes exactly one item filling `data`.
pub(super) fn decode(data: &[u8]) -> Result<Value, String> {
    let mut d = Decoder { data, pos: 0 };
    let v = d.item(0)?;
    if d.pos != data.len() {
        return Err("trailing bytes after the CBOR item".into());
    }
    Ok(v)
}

struct Decoder<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.data.get(self.pos).ok_or("truncated CBOR")?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "CBOR length too large")?;
        let end = self.pos.checked_add(n).ok_or("CBOR length too large")?;
        let s = self.data.get(self.pos..end).ok_or("truncated CBOR")?;
        self.pos = end;
        Ok(s)
    }

    fn argument(&mut self, info: u8) -> Result<u64, String> {
        Ok(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.byte()?),
            25 => self
                .take(2)?
                .iter()
                .fold(0, |a, b| (a << 8) | u64::from(*b)),
            26 => self
                .take(4)?
                .iter()
                .fold(0, |a, b| (a << 8) | u64::from(*b)),
            27 => self
                .take(8)?
                .iter()
                .fold(0, |a, b| (a << 8) | u64::from(*b)),
            31 => return Err("indefinite-length CBOR is not supported".into()),
            _ => return Err("reserved CBOR additional information".into()),
        })
    }

    /// A count of items, each at least one byte: more than the bytes left is an error
    /// (before anything is allocated).
    fn count(&mut self, n: u64, per_item: u64) -> Result<usize, String> {
        let left = (self.data.len() - self.pos) as u64;
        if n.checked_mul(per_item).map_or(true, |need| need > left) {
            return Err("truncated CBOR".into());
        }
        usize::try_from(n).map_err(|_| "CBOR length too large".into())
    }

    fn item(&mut self, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err("CBOR nested too deeply".into());
        }
        let first = self.byte()?;
        let (major, info) = (first >> 5, first & 0x1f);
        if major == 7 {
            return Ok(match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                24 => {
                    self.byte()?;
                    Value::Other
                }
                25 => {
                    self.take(2)?;
                    Value::Other
                }
                26 => {
                    self.take(4)?;
                    Value::Other
                }
                27 => {
                    self.take(8)?;
                    Value::Other
                }
                0..=19 | 23 => Value::Other,
                _ => return Err("unsupported CBOR simple value".into()),
            });
        }
        let arg = self.argument(info)?;
        Ok(match major {
            0 => Value::Int(i128::from(arg)),
            1 => Value::Int(-1 - i128::from(arg)),
            2 => Value::Bytes(self.take(arg)?.to_vec()),
            3 => Value::Text(
                String::from_utf8(self.take(arg)?.to_vec())
                    .map_err(|_| "CBOR text is not UTF-8")?,
            ),
            4 => {
                let n = self.count(arg, 1)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.item(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let n = self.count(arg, 2)?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    let k = self.item(depth + 1)?;
                    let v = self.item(depth + 1)?;
                    if entries.iter().any(|(have, _)| *have == k) {
                        return Err("CBOR map has a duplicate key".into());
                    }
                    entries.push((k, v));
                }
                Value::Map(entries)
            }
            _ => Value::Tag(arg, Box::new(self.item(depth + 1)?)),
        })
    }
}

/// Minimal CBOR encoding of the head of an item (for the Sig_structure).
pub(super) fn head(major: u8, n: u64, out: &mut Vec<u8>) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend([m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend((n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend((n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend(n.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_cose_uses() {
        // 18([h'a10126', {33: h'01'}, h'7b7d', h'0102'])
        let data = [
            0xd2, 0x84, 0x43, 0xa1, 0x01, 0x26, 0xa1, 0x18, 0x21, 0x41, 0x01, 0x42, 0x7b, 0x7d,
            0x42, 0x01, 0x02,
        ];
        let v = decode(&data).expect("valid");
        let Value::Tag(18, inner) = v else {
            panic!("not tag 18: {v:?}")
        };
        assert_eq!(
            *inner,
            Value::Array(vec![
                Value::Bytes(vec![0xa1, 0x01, 0x26]),
                Value::Map(vec![(Value::Int(33), Value::Bytes(vec![1]))]),
                Value::Bytes(b"{}".to_vec()),
                Value::Bytes(vec![1, 2]),
            ])
        );
        assert_eq!(decode(&[0x38, 0x24]).expect("int"), Value::Int(-37));
        assert_eq!(
            decode(&[0xc1, 0x1a, 0x5e, 0x0b, 0xe1, 0x00]).expect("tag"),
            Value::Tag(1, Box::new(Value::Int(1_577_836_800)))
        );
    }

    #[test]
    fn hostile_cbor_is_an_error_not_a_panic() {
        let mut deep = vec![0x81; 100];
        deep.push(0x00);
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0x9f, 0x00, 0xff],
            vec![0x62, 0xff, 0xfe],
            vec![0xa2, 0x01, 0x02, 0x01, 0x03],
            vec![0x00, 0x00],
            vec![0x1c],
            deep,
        ];
        for c in &cases {
            assert!(decode(c).is_err(), "{c:02x?}");
        }
    }

    #[test]
    fn heads_are_minimal() {
        for (n, want) in [
            (0u64, vec![0x40]),
            (23, vec![0x57]),
            (24, vec![0x58, 24]),
            (256, vec![0x59, 1, 0]),
            (70_000, vec![0x5a, 0, 1, 0x11, 0x70]),
        ] {
            let mut out = Vec::new();
            head(2, n, &mut out);
            assert_eq!(out, want, "{n}");
        }
    }
}
