//! Any `:authority` a gRPC client sends is served (issue 18): a layer between the socket and
//! hyper's HTTP/2 server that rewrites the header blocks clients send.
//!
//! grpc-go, grpc-java, grpc-python and grpcurl send the unix socket's path (or a
//! percent-encoded path, or nothing) as `:authority`. h2 parses it as a URI authority and
//! resets every stream whose authority does not parse (`/` is not allowed in one). This layer
//! reads the client→server byte stream frame by frame: every frame but HEADERS and
//! CONTINUATION passes through unchanged (its payload streamed, never buffered); each header
//! block is HPACK-decoded with the client's compression context, an `:authority` that
//! `http::uri::Authority` (what h2 uses) would refuse becomes `localhost`, and the block is
//! encoded again for h2 with the static table only (no dynamic-table entries, no size
//! updates, no Huffman), split into frames of at most [`MAX_FRAME_SIZE`], which the server
//! advertises (server.rs sets it). The server→client direction is untouched.
//!
//! Pure parts: [`Decoder`] (RFC 7541: integers, strings, Huffman, static and dynamic table,
//! size updates), [`encode_block`], [`Rewriter`] (frames in, frames out). [`Rewrite`] wraps
//! the tokio stream. Malformed input (what h2 would answer with a connection error: a bad
//! preface, a frame too large, a broken block, PUSH_PROMISE from a client) ends the
//! connection. Everything is bounded: a header block's size, the decoded header list, the
//! dynamic table (4096 octets, the size h2 advertises).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The largest frame payload the server accepts (its SETTINGS_MAX_FRAME_SIZE; the protocol's
/// default, which server.rs sets explicitly on hyper's builder).
pub const MAX_FRAME_SIZE: usize = 16_384;
/// The dynamic table size the server allows the client's encoder (h2's default
/// SETTINGS_HEADER_TABLE_SIZE, never changed by hyper's server).
pub const MAX_TABLE_SIZE: usize = 4096;
/// A header block (HEADERS and its CONTINUATIONs, as sent) larger than this ends the
/// connection. hyper refuses header lists over 16 KiB itself (per stream); this is the bound
/// on what is held in memory.
pub const MAX_BLOCK: usize = 64 * 1024;
/// Bound on a decoded header list (RFC 7541 sizes: name + value + 32 per field).
pub const MAX_HEADER_LIST: usize = 64 * 1024;

/// What the client's side of the connection begins with (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Why a connection is ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("not an HTTP/2 connection preface")]
    Preface,
    #[error("frame of {0} octets exceeds the maximum frame size")]
    FrameSize(usize),
    #[error("bad padding")]
    Padding,
    #[error("CONTINUATION out of place or other frame inside a header block")]
    Continuation,
    #[error("PUSH_PROMISE from a client")]
    PushPromise,
    #[error("header block over {MAX_BLOCK} octets")]
    BlockTooLarge,
    #[error("HPACK: {0}")]
    Hpack(&'static str),
}

// ---------------------------------------------------------------------------------------
// HPACK (RFC 7541)

/// RFC 7541 Appendix A.
const STATIC: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The Huffman code of RFC 7541 Appendix B is canonical: codes are assigned in order of
/// length, then symbol. So it is given here as the symbols of each code length (the table's
/// `len` column); 256 is EOS. `huffman_codes_match_the_rfc` checks codes against the RFC's.
const HUFFMAN_BY_LENGTH: [(u8, &[u16]); 21] = [
    (5, &[48, 49, 50, 97, 99, 101, 105, 111, 115, 116]),
    (
        6,
        &[
            32, 37, 45, 46, 47, 51, 52, 53, 54, 55, 56, 57, 61, 65, 95, 98, 100, 102, 103, 104,
            108, 109, 110, 112, 114, 117,
        ],
    ),
    (
        7,
        &[
            58, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86,
            87, 89, 106, 107, 113, 118, 119, 120, 121, 122,
        ],
    ),
    (8, &[38, 42, 44, 59, 88, 90]),
    (10, &[33, 34, 40, 41, 63]),
    (11, &[39, 43, 124]),
    (12, &[35, 62]),
    (13, &[0, 36, 64, 91, 93, 126]),
    (14, &[94, 125]),
    (15, &[60, 96, 123]),
    (19, &[92, 195, 208]),
    (20, &[128, 130, 131, 162, 184, 194, 224, 226]),
    (
        21,
        &[
            153, 161, 167, 172, 176, 177, 179, 209, 216, 217, 227, 229, 230,
        ],
    ),
    (
        22,
        &[
            129, 132, 133, 134, 136, 146, 154, 156, 160, 163, 164, 169, 170, 173, 178, 181, 185,
            186, 187, 189, 190, 196, 198, 228, 232, 233,
        ],
    ),
    (
        23,
        &[
            1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157, 158, 165, 166,
            168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239,
        ],
    ),
    (
        24,
        &[9, 142, 144, 145, 148, 159, 171, 206, 215, 225, 236, 237],
    ),
    (25, &[199, 207, 234, 235]),
    (
        26,
        &[
            192, 193, 200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242, 243, 255,
        ],
    ),
    (
        27,
        &[
            203, 204, 211, 212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252,
            253, 254,
        ],
    ),
    (
        28,
        &[
            2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28,
            29, 30, 31, 127, 220, 249,
        ],
    ),
    (30, &[10, 13, 22, 256]),
];

const EOS: u16 = 256;

/// Canonical Huffman decoding (one bit at a time, per code length: the first code and the
/// number of codes). Padding must be < 8 bits and all ones (a prefix of EOS); EOS itself in
/// the string is an error (RFC 7541 §5.2).
pub fn huffman_decode(input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Malformed> {
    let mut code: u32 = 0; // the bits of the code read so far
    let mut len: u8 = 0; // how many
    let mut ones = true; // all of them 1
    for byte in input {
        for shift in (0..8).rev() {
            let bit = u32::from((byte >> shift) & 1);
            code = (code << 1) | bit;
            len += 1;
            ones &= bit == 1;
            if let Some(sym) = huffman_symbol(code, len) {
                if sym == EOS {
                    return Err(Malformed::Hpack("EOS in a Huffman string"));
                }
                if out.len() >= limit {
                    return Err(Malformed::Hpack("string too long"));
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
                ones = true;
            } else if len >= 30 {
                return Err(Malformed::Hpack("bad Huffman code"));
            }
        }
    }
    if len > 7 || !ones {
        return Err(Malformed::Hpack("bad Huffman padding"));
    }
    Ok(())
}

/// The symbol whose code is the `len` bits of `code`, if there is one.
fn huffman_symbol(code: u32, len: u8) -> Option<u16> {
    // first: the first code of the current length; canonical codes of length n + 1 start
    // at (last code of length n + 1) << 1.
    let mut first: u32 = 0;
    let mut at_len: u8 = 0;
    for (l, symbols) in HUFFMAN_BY_LENGTH {
        first <<= l - at_len;
        at_len = l;
        if l == len {
            let i = code.checked_sub(first)? as usize;
            return symbols.get(i).copied();
        }
        if l > len {
            return None;
        }
        first += symbols.len() as u32;
    }
    None
}

/// Decodes an integer with an `n`-bit prefix (RFC 7541 §5.1) from `buf[*pos..]`.
fn decode_int(buf: &[u8], pos: &mut usize, n: u8) -> Result<usize, Malformed> {
    let truncated = Malformed::Hpack("truncated integer");
    let mask = (1u16 << n) as usize - 1;
    let first = *buf.get(*pos).ok_or(truncated.clone())? as usize & mask;
    *pos += 1;
    if first < mask {
        return Ok(first);
    }
    let mut value = mask;
    for shift in (0..).step_by(7).take(4) {
        let b = *buf.get(*pos).ok_or(truncated.clone())?;
        *pos += 1;
        value += ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    // More than 4 continuation octets (> 2^28): no bound here is that large.
    Err(Malformed::Hpack("integer too large"))
}

/// Encodes an integer with an `n`-bit prefix; `first` holds the representation's high bits.
fn encode_int(out: &mut Vec<u8>, first: u8, n: u8, mut value: usize) {
    let mask = (1usize << n) - 1;
    if value < mask {
        out.push(first | value as u8);
        return;
    }
    out.push(first | mask as u8);
    value -= mask;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn decode_string(buf: &[u8], pos: &mut usize, limit: usize) -> Result<Vec<u8>, Malformed> {
    let huffman = buf.get(*pos).is_some_and(|b| b & 0x80 != 0);
    let len = decode_int(buf, pos, 7)?;
    let end = pos
        .checked_add(len)
        .filter(|&e| e <= buf.len())
        .ok_or(Malformed::Hpack("truncated string"))?;
    let raw = &buf[*pos..end];
    *pos = end;
    if huffman {
        let mut out = Vec::with_capacity(len.min(limit));
        huffman_decode(raw, &mut out, limit)?;
        Ok(out)
    } else if len > limit {
        Err(Malformed::Hpack("string too long"))
    } else {
        Ok(raw.to_vec())
    }
}

/// A decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: Vec<u8>,
    pub value: Vec<u8>,
    /// Sent as "never indexed" (RFC 7541 §6.2.3): kept so when encoded again.
    pub sensitive: bool,
}

fn entry_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

/// The decoding context of one direction of a connection (RFC 7541 §2.3).
pub struct Decoder {
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max_size: usize,
    limit: usize,
}

impl Decoder {
    /// `limit`: the largest dynamic table size the encoder may ask for (what the peer was
    /// told in SETTINGS_HEADER_TABLE_SIZE).
    pub fn new(limit: usize) -> Decoder {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
        }
    }

    /// Dynamic table size in RFC 7541 octets.
    pub fn table_size(&self) -> usize {
        self.size
    }

    fn evict(&mut self, room: usize) {
        while self.size + room > self.max_size {
            match self.table.pop_back() {
                Some((n, v)) => self.size -= entry_size(&n, &v),
                None => break,
            }
        }
    }

    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = entry_size(name, value);
        self.evict(size);
        // An entry larger than the table empties it and is not added (§4.4).
        if size <= self.max_size {
            self.table.push_front((name.to_vec(), value.to_vec()));
            self.size += size;
        }
    }

    fn get(&self, index: usize) -> Result<(&[u8], &[u8]), Malformed> {
        match index {
            0 => Err(Malformed::Hpack("index 0")),
            1..=61 => Ok(STATIC[index - 1]),
            _ => self
                .table
                .get(index - 62)
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .ok_or(Malformed::Hpack("index beyond the tables")),
        }
    }

    /// Decodes one complete header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<Field>, Malformed> {
        let mut fields = Vec::new();
        let mut list_size = 0usize;
        let mut pos = 0;
        while pos < block.len() {
            let b = block[pos];
            let field = if b & 0x80 != 0 {
                let i = decode_int(block, &mut pos, 7)?;
                let (n, v) = self.get(i)?;
                Field {
                    name: n.to_vec(),
                    value: v.to_vec(),
                    sensitive: false,
                }
            } else if b & 0xe0 == 0x20 {
                // Size updates only before the first field (§4.2), within the limit.
                if !fields.is_empty() {
                    return Err(Malformed::Hpack("table size update after a field"));
                }
                let size = decode_int(block, &mut pos, 5)?;
                if size > self.limit {
                    return Err(Malformed::Hpack("table size update over the limit"));
                }
                self.max_size = size;
                self.evict(0);
                continue;
            } else {
                // 01xxxxxx incremental indexing, 0001xxxx never indexed, 0000xxxx without.
                let (n, indexing, sensitive) = if b & 0x40 != 0 {
                    (6, true, false)
                } else {
                    (4, false, b & 0x10 != 0)
                };
                let i = decode_int(block, &mut pos, n)?;
                let left = MAX_HEADER_LIST.saturating_sub(list_size);
                let name = if i == 0 {
                    decode_string(block, &mut pos, left)?
                } else {
                    self.get(i)?.0.to_vec()
                };
                let value = decode_string(block, &mut pos, left)?;
                if indexing {
                    self.insert(&name, &value);
                }
                Field {
                    name,
                    value,
                    sensitive,
                }
            };
            list_size += entry_size(&field.name, &field.value);
            if list_size > MAX_HEADER_LIST {
                return Err(Malformed::Hpack("header list too large"));
            }
            fields.push(field);
        }
        Ok(fields)
    }
}

fn encode_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// Encodes fields with the static table only: an exact static match indexed, otherwise a
/// literal without indexing (never indexed when it came so), name indexed when the static
/// table has it. The result does not depend on, or change, the receiver's dynamic table.
pub fn encode_block(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        let exact = STATIC
            .iter()
            .position(|&(n, v)| n == f.name.as_slice() && v == f.value.as_slice());
        match exact {
            Some(i) if !f.sensitive => encode_int(&mut out, 0x80, 7, i + 1),
            _ => {
                let first = if f.sensitive { 0x10 } else { 0x00 };
                match STATIC.iter().position(|&(n, _)| n == f.name.as_slice()) {
                    Some(i) => encode_int(&mut out, first, 4, i + 1),
                    None => {
                        out.push(first);
                        encode_string(&mut out, &f.name);
                    }
                }
                encode_string(&mut out, &f.value);
            }
        }
    }
    out
}

/// The authority h2 gets: the client's when h2 accepts it (it parses as a URI authority, as
/// h2 parses it), else `localhost`.
pub fn served_authority(value: &[u8]) -> &[u8] {
    if http::uri::Authority::try_from(value).is_ok() {
        value
    } else {
        b"localhost"
    }
}

/// Rewrites the fields of one block; true when something changed.
pub fn rewrite_fields(fields: &mut [Field]) -> bool {
    let mut changed = false;
    for f in fields.iter_mut().filter(|f| f.name == b":authority") {
        let served = served_authority(&f.value);
        if served != f.value.as_slice() {
            f.value = served.to_vec();
            changed = true;
        }
    }
    changed
}

// ---------------------------------------------------------------------------------------
// Frames (RFC 9113 §4, §6.2, §6.10)

#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHeader {
    fn parse(b: &[u8]) -> FrameHeader {
        FrameHeader {
            len: (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize,
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let len = self.len as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&self.stream.to_be_bytes());
    }
}

enum Reading {
    /// The first bytes: this many of the preface seen.
    Preface(usize),
    /// A frame header (9 octets, gathered in `held`).
    Header,
    /// This many payload octets of a frame that passes through.
    Passing(usize),
    /// The payload of a HEADERS or CONTINUATION frame (gathered in `held`).
    Block(FrameHeader),
}

/// A header block being gathered.
struct Block {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

/// Stats for tests and debug logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub blocks: u64,
    pub rewritten: u64,
}

/// The client→server byte stream transformer: bytes in, bytes for h2 out.
pub struct Rewriter {
    reading: Reading,
    held: Vec<u8>,
    block: Option<Block>,
    decoder: Decoder,
    failed: Option<Malformed>,
    pub counts: Counts,
}

impl Default for Rewriter {
    fn default() -> Self {
        Rewriter::new()
    }
}

impl Rewriter {
    pub fn new() -> Rewriter {
        Rewriter {
            reading: Reading::Preface(0),
            held: Vec::new(),
            block: None,
            decoder: Decoder::new(MAX_TABLE_SIZE),
            failed: None,
            counts: Counts::default(),
        }
    }

    /// Takes the next bytes from the client and appends what h2 is to read to `out`. After
    /// an error every call fails.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        while !input.is_empty() {
            if let Err(e) = self.step(&mut input, out) {
                self.failed = Some(e.clone());
                return Err(e);
            }
        }
        Ok(())
    }

    fn step(&mut self, input: &mut &[u8], out: &mut Vec<u8>) -> Result<(), Malformed> {
        match self.reading {
            Reading::Preface(seen) => {
                let n = (PREFACE.len() - seen).min(input.len());
                if input[..n] != PREFACE[seen..seen + n] {
                    return Err(Malformed::Preface);
                }
                out.extend_from_slice(&input[..n]);
                *input = &input[n..];
                self.reading = if seen + n == PREFACE.len() {
                    Reading::Header
                } else {
                    Reading::Preface(seen + n)
                };
            }
            Reading::Header => {
                let n = (9 - self.held.len()).min(input.len());
                self.held.extend_from_slice(&input[..n]);
                *input = &input[n..];
                if self.held.len() == 9 {
                    let h = FrameHeader::parse(&self.held);
                    self.held.clear();
                    self.frame_start(h, out)?;
                }
            }
            Reading::Passing(left) => {
                let n = left.min(input.len());
                out.extend_from_slice(&input[..n]);
                *input = &input[n..];
                self.reading = if n == left {
                    Reading::Header
                } else {
                    Reading::Passing(left - n)
                };
            }
            Reading::Block(h) => {
                let n = (h.len - self.held.len()).min(input.len());
                self.held.extend_from_slice(&input[..n]);
                *input = &input[n..];
                if self.held.len() == h.len {
                    let payload = std::mem::take(&mut self.held);
                    self.reading = Reading::Header;
                    self.block_frame(h, &payload, out)?;
                }
            }
        }
        Ok(())
    }

    fn frame_start(&mut self, h: FrameHeader, out: &mut Vec<u8>) -> Result<(), Malformed> {
        let in_block = self.block.is_some();
        match h.kind {
            HEADERS | CONTINUATION => {
                if (h.kind == HEADERS) == in_block {
                    return Err(Malformed::Continuation);
                }
                if h.len > MAX_FRAME_SIZE {
                    return Err(Malformed::FrameSize(h.len));
                }
                self.reading = Reading::Block(h);
                if h.len == 0 {
                    self.reading = Reading::Header;
                    self.block_frame(h, &[], out)?;
                }
            }
            PUSH_PROMISE => return Err(Malformed::PushPromise),
            _ if in_block => return Err(Malformed::Continuation),
            _ => {
                h.write(out);
                self.reading = if h.len == 0 {
                    Reading::Header
                } else {
                    Reading::Passing(h.len)
                };
            }
        }
        Ok(())
    }

    fn block_frame(
        &mut self,
        h: FrameHeader,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed> {
        let mut fragment = payload;
        if h.kind == HEADERS {
            if h.flags & PADDED != 0 {
                let (&pad, rest) = fragment.split_first().ok_or(Malformed::Padding)?;
                let keep = rest
                    .len()
                    .checked_sub(pad as usize)
                    .ok_or(Malformed::Padding)?;
                fragment = &rest[..keep];
            }
            let mut priority = None;
            if h.flags & PRIORITY != 0 {
                if fragment.len() < 5 {
                    return Err(Malformed::FrameSize(h.len));
                }
                let mut p = [0u8; 5];
                p.copy_from_slice(&fragment[..5]);
                priority = Some(p);
                fragment = &fragment[5..];
            }
            self.block = Some(Block {
                stream: h.stream,
                end_stream: h.flags & END_STREAM != 0,
                priority,
                fragment: Vec::new(),
            });
        }
        let block = self.block.as_mut().ok_or(Malformed::Continuation)?;
        if block.stream != h.stream {
            return Err(Malformed::Continuation);
        }
        if block.fragment.len() + fragment.len() > MAX_BLOCK {
            return Err(Malformed::BlockTooLarge);
        }
        block.fragment.extend_from_slice(fragment);
        if h.flags & END_HEADERS != 0 {
            let block = self.block.take().expect("checked above");
            self.finish(block, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, block: Block, out: &mut Vec<u8>) -> Result<(), Malformed> {
        let mut fields = self.decoder.decode(&block.fragment)?;
        self.counts.blocks += 1;
        if rewrite_fields(&mut fields) {
            self.counts.rewritten += 1;
        }
        let encoded = encode_block(&fields);
        let mut first = true;
        let mut rest: &[u8] = &encoded;
        loop {
            let room = if first && block.priority.is_some() {
                MAX_FRAME_SIZE - 5
            } else {
                MAX_FRAME_SIZE
            };
            let (chunk, after) = rest.split_at(room.min(rest.len()));
            let mut flags = if after.is_empty() { END_HEADERS } else { 0 };
            let mut len = chunk.len();
            let kind = if first {
                if block.end_stream {
                    flags |= END_STREAM;
                }
                if block.priority.is_some() {
                    flags |= PRIORITY;
                    len += 5;
                }
                HEADERS
            } else {
                CONTINUATION
            };
            FrameHeader {
                len,
                kind,
                flags,
                stream: block.stream,
            }
            .write(out);
            if first {
                if let Some(p) = block.priority {
                    out.extend_from_slice(&p);
                }
            }
            out.extend_from_slice(chunk);
            first = false;
            rest = after;
            if rest.is_empty() {
                return Ok(());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The adapter

/// A connection whose client→server bytes pass through a [`Rewriter`]; writes go straight
/// to the inner stream. A malformed stream reads as an `InvalidData` error, which ends the
/// connection.
pub struct Rewrite<IO> {
    inner: IO,
    rewriter: Rewriter,
    /// Bytes for h2 not yet read, from `start`.
    ready: Vec<u8>,
    start: usize,
    scratch: Box<[u8]>,
}

impl<IO> Rewrite<IO> {
    pub fn new(inner: IO) -> Rewrite<IO> {
        Rewrite {
            inner,
            rewriter: Rewriter::new(),
            ready: Vec::new(),
            start: 0,
            scratch: vec![0u8; 16 * 1024].into_boxed_slice(),
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewrite<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.start < this.ready.len() {
                let n = (this.ready.len() - this.start).min(buf.remaining());
                buf.put_slice(&this.ready[this.start..this.start + n]);
                this.start += n;
                if this.start == this.ready.len() {
                    this.ready.clear();
                    this.start = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut scratch = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut scratch) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let filled = scratch.filled();
                    if filled.is_empty() {
                        return Poll::Ready(Ok(())); // end of stream
                    }
                    if let Err(e) = this.rewriter.feed(filled, &mut this.ready) {
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                    }
                    // A frame header or block still incomplete: read on.
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewrite<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
