//! A minimal DER reader for the few structures ocicrypt's PKCS7 key wrapping needs
//! (CMS EnvelopedData, the issuer and serial number of an X.509 certificate). Definite
//! lengths only (Go's `encoding/asn1` writes DER); every read is bounds-checked.

pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const INTEGER: u8 = 0x02;
pub const OCTET_STRING: u8 = 0x04;
pub const OID: u8 = 0x06;
/// `[0]` constructed (EXPLICIT tagging, or an IMPLICIT constructed type).
pub const CONTEXT_0: u8 = 0xa0;
/// `[0]` primitive (IMPLICIT OCTET STRING).
pub const CONTEXT_0_PRIMITIVE: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed DER: {0}")]
pub struct DerError(pub &'static str);

/// One element: its tag, its contents, and its whole encoding (tag, length, contents).
#[derive(Debug, Clone, Copy)]
pub struct Tlv<'a> {
    pub tag: u8,
    pub content: &'a [u8],
    pub raw: &'a [u8],
}

/// Reads consecutive elements from a byte string.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { rest: data }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The tag of the next element, without reading it.
    pub fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    pub fn next(&mut self) -> Result<Tlv<'a>, DerError> {
        let data = self.rest;
        let (&tag, after_tag) = data.split_first().ok_or(DerError("unexpected end"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("multi-byte tags are not used here"));
        }
        let (&first, after_len) = after_tag.split_first().ok_or(DerError("missing length"))?;
        let (len, after_len) = if first < 0x80 {
            (usize::from(first), after_len)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 {
                return Err(DerError("indefinite length (BER) is not DER"));
            }
            if n > 4 {
                return Err(DerError("length too large"));
            }
            let bytes = after_len.get(..n).ok_or(DerError("truncated length"))?;
            let len = bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, after_len.get(n..).unwrap_or_default())
        };
        let content = after_len.get(..len).ok_or(DerError("truncated contents"))?;
        let header = data.len() - after_len.len();
        let raw = data
            .get(..header + len)
            .ok_or(DerError("truncated contents"))?;
        self.rest = after_len.get(len..).unwrap_or_default();
        Ok(Tlv { tag, content, raw })
    }

    /// The next element, which must have `tag`.
    pub fn expect(&mut self, tag: u8, what: &'static str) -> Result<Tlv<'a>, DerError> {
        let tlv = self.next().map_err(|_| DerError(what))?;
        if tlv.tag != tag {
            return Err(DerError(what));
        }
        Ok(tlv)
    }

    /// A reader over the contents of the next element, which must have `tag`.
    pub fn enter(&mut self, tag: u8, what: &'static str) -> Result<Reader<'a>, DerError> {
        Ok(Reader::new(self.expect(tag, what)?.content))
    }
}

/// An INTEGER's contents without redundant leading zero bytes (for comparing serials).
pub fn integer_value(content: &[u8]) -> &[u8] {
    let mut c = content;
    while c.len() > 1 && c.first() == Some(&0) {
        c = c.get(1..).unwrap_or_default();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_short_and_long_lengths_and_refuses_bad_ones() {
        let mut long = vec![OCTET_STRING, 0x81, 200];
        long.extend(std::iter::repeat(7).take(200));
        let data = [&[SEQUENCE, 3, INTEGER, 1, 5][..], &long].concat();
        let mut r = Reader::new(&data);
        let mut seq = r.enter(SEQUENCE, "seq").unwrap();
        assert_eq!(seq.expect(INTEGER, "int").unwrap().content, [5]);
        assert!(seq.is_empty());
        let s = r.expect(OCTET_STRING, "octets").unwrap();
        assert_eq!(s.content.len(), 200);
        assert_eq!(s.raw.len(), 203);
        assert!(r.is_empty());
        for bad in [
            &[][..],
            &[SEQUENCE],
            &[SEQUENCE, 5, 1],
            &[SEQUENCE, 0x80, 0, 0],
            &[SEQUENCE, 0x85, 1, 1, 1, 1, 1],
            &[SEQUENCE, 0x82, 1],
            &[0x1f, 1, 0],
        ] {
            assert!(Reader::new(bad).next().is_err(), "{bad:?}");
        }
        assert_eq!(integer_value(&[0, 0, 0x80]), [0x80]);
        assert_eq!(integer_value(&[0]), [0]);
    }
}
