use super::*;

/// A test vector: a block, the fields it decodes to, the table size after.
type Vector<'a> = (&'a str, &'a [Pair<'a>], usize);
type Pair<'a> = (&'a str, &'a str);

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn f(name: &str, value: &str) -> Field {
    Field {
        name: name.into(),
        value: value.into(),
        sensitive: false,
    }
}

fn pairs(fields: &[Field]) -> Vec<(String, String)> {
    fields
        .iter()
        .map(|f| {
            (
                String::from_utf8(f.name.clone()).unwrap(),
                String::from_utf8(f.value.clone()).unwrap(),
            )
        })
        .collect()
}

fn p(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The code of a symbol, rebuilt canonically from HUFFMAN_BY_LENGTH.
fn code_of(sym: u16) -> (u32, u8) {
    let mut first = 0u32;
    let mut at = 0u8;
    for (l, syms) in HUFFMAN_BY_LENGTH {
        first <<= l - at;
        at = l;
        if let Some(i) = syms.iter().position(|&s| s == sym) {
            return (first + i as u32, l);
        }
        first += syms.len() as u32;
    }
    panic!("no code for {sym}")
}

#[test]
fn huffman_codes_match_the_rfc() {
    // Every symbol once; Kraft's sum exactly 1 (a complete code); RFC 7541 Appendix B rows.
    let mut seen = [false; 257];
    let mut kraft = 0u64;
    for (l, syms) in HUFFMAN_BY_LENGTH {
        for &s in syms {
            assert!(!seen[s as usize], "{s} twice");
            seen[s as usize] = true;
            kraft += 1 << (30 - l);
        }
    }
    assert!(seen.iter().all(|&s| s));
    assert_eq!(kraft, 1 << 30);
    for (sym, code, len) in [
        (0, 0x1ff8, 13),
        (1, 0x7fffd8, 23),
        (9, 0xffffea, 24),
        (10, 0x3ffffffc, 30),
        (b' ' as u16, 0x14, 6),
        (b'0' as u16, 0x0, 5),
        (b'a' as u16, 0x3, 5),
        (b':' as u16, 0x5c, 7),
        (b'&' as u16, 0xf8, 8),
        (255, 0x3ffffee, 26),
        (EOS, 0x3fffffff, 30),
    ] {
        assert_eq!(code_of(sym), (code, len), "symbol {sym}");
    }
}

#[test]
fn huffman_strings() {
    let cases: &[(&str, &str)] = &[
        // RFC 7541 C.4.1 / C.4.2 / C.4.3 / C.6.1
        ("f1e3 c2e5 f23a 6ba0 ab90 f4ff", "www.example.com"),
        ("a8eb 1064 9cbf", "no-cache"),
        ("25a8 49e9 5ba9 7d7f", "custom-key"),
        ("25a8 49e9 5bb8 e8b4 bf", "custom-value"),
        ("6402", "302"),
        ("aec3 771a 4b", "private"),
        (
            "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff",
            "Mon, 21 Oct 2013 20:13:21 GMT",
        ),
        (
            "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3",
            "https://www.example.com",
        ),
        ("", ""),
    ];
    for (input, want) in cases {
        let mut out = Vec::new();
        huffman_decode(&hex(input), &mut out, 1000).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), *want);
    }
    let bad: &[(&str, &str)] = &[
        ("ff", "padding of 8 bits"),
        ("00", "padding not ones ('0' then 3 zero bits)"),
        ("ffff ffff", "EOS"),
        ("fe", "padding not a prefix of EOS"),
    ];
    for (input, why) in bad {
        let mut out = Vec::new();
        assert!(
            huffman_decode(&hex(input), &mut out, 1000).is_err(),
            "{why}"
        );
    }
    let mut out = Vec::new();
    assert!(huffman_decode(&hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"), &mut out, 5).is_err());
}

#[test]
fn integers() {
    // RFC 7541 C.1: 10 with a 5-bit prefix, 1337 with a 5-bit prefix, 42 at an octet boundary.
    for (bytes, n, value) in [
        (vec![0x0a], 5, 10),
        (vec![0x1f, 0x9a, 0x0a], 5, 1337),
        (vec![0x2a], 8, 42),
        (vec![0x7f, 0x00], 7, 127),
        (vec![0x0f, 0x80, 0x80, 0x80, 0x7f], 4, 15 + (0x7f << 21)),
    ] {
        let mut pos = 0;
        assert_eq!(decode_int(&bytes, &mut pos, n).unwrap(), value);
        assert_eq!(pos, bytes.len());
        if n < 8 {
            let mut out = Vec::new();
            encode_int(&mut out, 0, n, value);
            assert_eq!(out, bytes);
        }
    }
    for bad in [
        vec![0x1f],
        vec![0x1f, 0x80],
        vec![0x1f, 0xff, 0xff, 0xff, 0xff, 0x01],
    ] {
        assert!(decode_int(&bad, &mut 0, 5).is_err(), "{bad:?}");
    }
}

#[test]
fn rfc_7541_appendix_c_requests() {
    // C.2.1 - C.2.4, each with a fresh decoder: (block, fields, table size after).
    let singles: &[Vector] = &[
        (
            "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
            &[("custom-key", "custom-header")],
            55,
        ),
        (
            "040c 2f73 616d 706c 652f 7061 7468",
            &[(":path", "/sample/path")],
            0,
        ),
        (
            "1008 7061 7373 776f 7264 0673 6563 7265 74",
            &[("password", "secret")],
            0,
        ),
        ("82", &[(":method", "GET")], 0),
    ];
    for (block, want, size) in singles {
        let mut d = Decoder::new(4096);
        let fields = d.decode(&hex(block)).unwrap();
        assert_eq!(pairs(&fields), p(want));
        assert_eq!(d.table_size(), *size);
    }
    let mut d = Decoder::new(4096);
    assert!(
        d.decode(&hex("1008 7061 7373 776f 7264 0673 6563 7265 74"))
            .unwrap()[0]
            .sensitive
    );

    // C.3 (plain) and C.4 (Huffman): three requests on one connection each.
    let first = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ];
    let second = [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
        ("cache-control", "no-cache"),
    ];
    let third = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ];
    for blocks in [
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    ] {
        let mut d = Decoder::new(4096);
        for (block, (want, size)) in
            blocks
                .iter()
                .zip([(&first[..], 57), (&second[..], 110), (&third[..], 164)])
        {
            assert_eq!(pairs(&d.decode(&hex(block)).unwrap()), p(want));
            assert_eq!(d.table_size(), size);
        }
    }
}

#[test]
fn rfc_7541_appendix_c_6_responses_with_eviction() {
    // C.6: Huffman, a 256-octet table, entries evicted.
    let mut d = Decoder::new(256);
    let date1 = "Mon, 21 Oct 2013 20:13:21 GMT";
    let loc = "https://www.example.com";
    let blocks: [(&str, Vec<Pair>, usize); 3] = [
        (
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            vec![
                (":status", "302"),
                ("cache-control", "private"),
                ("date", date1),
                ("location", loc),
            ],
            222,
        ),
        (
            "4883 640e ffc1 c0bf",
            vec![
                (":status", "307"),
                ("cache-control", "private"),
                ("date", date1),
                ("location", loc),
            ],
            222,
        ),
        (
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            vec![
                (":status", "200"),
                ("cache-control", "private"),
                ("date", "Mon, 21 Oct 2013 20:13:22 GMT"),
                ("location", loc),
                ("content-encoding", "gzip"),
                (
                    "set-cookie",
                    "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
                ),
            ],
            215,
        ),
    ];
    for (block, want, size) in blocks {
        assert_eq!(pairs(&d.decode(&hex(block)).unwrap()), p(&want));
        assert_eq!(d.table_size(), size);
    }
}

#[test]
fn size_updates_and_bad_blocks() {
    let mut d = Decoder::new(4096);
    d.decode(&hex(
        "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
    ))
    .unwrap();
    assert_eq!(d.table_size(), 55);
    // Size update to 0 empties the table; then back to 4096 (two updates at the start).
    assert!(d.decode(&hex("20")).unwrap().is_empty());
    assert_eq!(d.table_size(), 0);
    assert!(d.decode(&hex("be")).is_err(), "index 62 is gone");
    d.decode(&hex("20 3fe1 1f")).unwrap();
    let bad: &[(&str, &str)] = &[
        ("80", "index 0"),
        ("be", "index beyond the tables"),
        ("82 20", "size update after a field"),
        ("3fe2 1f", "size update to 4097"),
        ("4085", "truncated string"),
        ("400a 6375", "truncated string"),
        ("ff", "truncated integer"),
        (
            "408c f1e3 c2e5 f23a 6ba0 ab90 f4ff",
            "Huffman string one octet short",
        ),
    ];
    for (block, why) in bad {
        let mut d = Decoder::new(4096);
        assert!(d.decode(&hex(block)).is_err(), "{why}");
    }
    // A header list over the bound.
    let mut big = vec![0x00];
    encode_string(&mut big, b"x-big");
    encode_string(&mut big, &vec![b'a'; MAX_HEADER_LIST]);
    assert!(Decoder::new(4096).decode(&big).is_err());
    // One 3 KiB entry referred to by one octet many times: the decoded list is bounded.
    let mut d = Decoder::new(4096);
    let mut entry = vec![0x40];
    encode_string(&mut entry, b"x-amp");
    encode_string(&mut entry, &[b'a'; 3000]);
    d.decode(&entry).unwrap();
    assert!(d.decode(&[0xbe; 30]).is_err());
    assert_eq!(d.decode(&[0xbe; 20]).unwrap().len(), 20);
    // An entry larger than the whole table empties it and is not added.
    let mut d = Decoder::new(64);
    d.decode(&hex("4003 6162 6303 6465 66")).unwrap(); // abc: def, 38 octets
    assert_eq!(d.table_size(), 38);
    let mut huge = vec![0x40];
    encode_string(&mut huge, b"name");
    encode_string(&mut huge, &[b'v'; 40]);
    d.decode(&huge).unwrap();
    assert_eq!(d.table_size(), 0);
}

#[test]
fn authorities_h2_refuses_become_localhost() {
    for (given, served) in [
        (
            "/run/container-management/container-management.sock",
            "localhost",
        ),
        // http (so h2) refuses '%' in an authority too.
        (
            "%2Frun%2Fcontainer-management%2Fcontainer-management.sock",
            "localhost",
        ),
        ("", "localhost"),
        ("localhost", "localhost"),
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        ("[::1]:8080", "[::1]:8080"),
        ("tonic", "tonic"),
        ("a b", "localhost"),
        ("unix:/run/x.sock", "localhost"),
    ] {
        let out = served_authority(given.as_bytes());
        assert_eq!(std::str::from_utf8(out).unwrap(), served, "{given:?}");
        // Whatever is served is what h2 accepts.
        assert!(http::uri::Authority::try_from(out).is_ok(), "{given:?}");
    }
}

#[test]
fn encoded_blocks_use_the_static_table_only() {
    let fields = vec![
        f(":method", "POST"),
        f(":scheme", "http"),
        f(":path", "/svc/Method"),
        f(":authority", "localhost"),
        f("content-type", "application/grpc"),
        f("te", "trailers"),
        Field {
            name: b"authorization".to_vec(),
            value: b"secret".to_vec(),
            sensitive: true,
        },
    ];
    let block = encode_block(&fields);
    assert_eq!(&block[..2], &[0x83, 0x86]);
    let mut d = Decoder::new(4096);
    assert_eq!(d.decode(&block).unwrap(), fields);
    assert_eq!(d.table_size(), 0, "nothing entered the receiver's table");
    // Long names and values: multi-octet lengths.
    let long = vec![f(&"n".repeat(300), &"v".repeat(20_000))];
    let block = encode_block(&long);
    assert_eq!(Decoder::new(4096).decode(&block).unwrap(), long);
}

// ---- frames

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    FrameHeader {
        len: payload.len(),
        kind,
        flags,
        stream,
    }
    .write(&mut out);
    out.extend_from_slice(payload);
    out
}

/// Splits what the rewriter produced into frames (after the preface).
fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    assert_eq!(&bytes[..24], PREFACE);
    let mut rest = &bytes[24..];
    let mut out = Vec::new();
    while !rest.is_empty() {
        let h = FrameHeader::parse(&rest[..9]);
        out.push((h.kind, h.flags, h.stream, rest[9..9 + h.len].to_vec()));
        rest = &rest[9 + h.len..];
    }
    out
}

fn grpc_go_like_request(authority: &str) -> Vec<u8> {
    // What grpc-go sends: literals with incremental indexing, Huffman where it is shorter.
    let mut block = vec![0x83, 0x86];
    block.push(0x44); // :path, indexed name, incremental indexing
    encode_string(&mut block, b"/svc.Sysinfo/ProjectInfo");
    block.push(0x41); // :authority
    encode_string(&mut block, authority.as_bytes());
    block.push(0x5f); // content-type (31), incremental indexing
    encode_string(&mut block, b"application/grpc");
    block.push(0x40);
    encode_string(&mut block, b"te");
    encode_string(&mut block, b"trailers");
    block
}

fn settings() -> Vec<u8> {
    frame(0x4, 0, 0, &[0, 4, 0, 0x40, 0, 0])
}

#[test]
fn a_request_with_a_socket_path_authority_gets_localhost_and_the_rest_passes() {
    let mut input = PREFACE.to_vec();
    input.extend(settings());
    let block1 = grpc_go_like_request("/run/x.sock");
    // HEADERS padded and with priority, the block split over a CONTINUATION.
    let mut payload = vec![3u8];
    payload.extend_from_slice(&[0x80, 0, 0, 0, 15]);
    payload.extend_from_slice(&block1[..10]);
    payload.extend_from_slice(&[0, 0, 0]);
    input.extend(frame(HEADERS, PADDED | PRIORITY, 1, &payload));
    input.extend(frame(CONTINUATION, END_HEADERS, 1, &block1[10..]));
    let data = frame(0x0, END_STREAM, 1, &[0, 0, 0, 0, 0]);
    input.extend(&data);
    // The second request refers to the first one's entries (dynamic table, 62..).
    let block2 = hex("8386 c1 c0 bf be");
    input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &block2));
    let window = frame(0x8, 0, 0, &[0, 0, 0x10, 0]);
    input.extend(&window);

    // Fed whole, and one octet at a time: the same.
    let mut whole = Vec::new();
    let mut r = Rewriter::new();
    r.feed(&input, &mut whole).unwrap();
    assert_eq!(
        r.counts,
        Counts {
            blocks: 2,
            rewritten: 2
        }
    );
    let mut bytewise = Vec::new();
    let mut r = Rewriter::new();
    for b in &input {
        r.feed(std::slice::from_ref(b), &mut bytewise).unwrap();
    }
    assert_eq!(whole, bytewise);

    let fs = frames(&whole);
    assert_eq!(fs.len(), 5);
    assert_eq!(frame(fs[0].0, fs[0].1, fs[0].2, &fs[0].3), settings());
    let (kind, flags, stream, payload) = &fs[1];
    assert_eq!(
        (*kind, *flags, *stream),
        (HEADERS, END_HEADERS | PRIORITY, 1)
    );
    assert_eq!(&payload[..5], &[0x80, 0, 0, 0, 15], "priority kept");
    let mut h2 = Decoder::new(4096);
    let want = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/svc.Sysinfo/ProjectInfo"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    assert_eq!(pairs(&h2.decode(&payload[5..]).unwrap()), p(&want));
    assert_eq!(frame(fs[2].0, fs[2].1, fs[2].2, &fs[2].3), data);
    let (kind, flags, stream, payload) = &fs[3];
    assert_eq!(
        (*kind, *flags, *stream),
        (HEADERS, END_HEADERS | END_STREAM, 3)
    );
    assert_eq!(pairs(&h2.decode(payload).unwrap()), p(&want));
    assert_eq!(h2.table_size(), 0);
    assert_eq!(frame(fs[4].0, fs[4].1, fs[4].2, &fs[4].3), window);
}

#[test]
fn valid_authorities_and_huffman_pass_as_they_are() {
    let mut block = vec![0x83, 0x86, 0x84, 0x41, 0x8c];
    block.extend(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff")); // www.example.com, Huffman
    let mut input = PREFACE.to_vec();
    input.extend(frame(HEADERS, END_HEADERS, 1, &block));
    let mut out = Vec::new();
    let mut r = Rewriter::new();
    r.feed(&input, &mut out).unwrap();
    assert_eq!(
        r.counts,
        Counts {
            blocks: 1,
            rewritten: 0
        }
    );
    let fs = frames(&out);
    let fields = Decoder::new(4096).decode(&fs[0].3).unwrap();
    assert_eq!(fields[3], f(":authority", "www.example.com"));
}

#[test]
fn blocks_larger_than_a_frame_are_split_into_continuations() {
    // 40 KiB of header values (plain, so re-encoded at the same size) over three frames in.
    let mut block = vec![0x83, 0x86, 0x84];
    for i in 0..4 {
        block.push(0x00);
        encode_string(&mut block, format!("x-{i}").as_bytes());
        encode_string(&mut block, &[b'a' + i; 10_000]);
    }
    let mut input = PREFACE.to_vec();
    let chunks: Vec<_> = block.chunks(MAX_FRAME_SIZE).collect();
    for (i, c) in chunks.iter().enumerate() {
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let last = i + 1 == chunks.len();
        let mut flags = if last { END_HEADERS } else { 0 };
        if i == 0 {
            flags |= END_STREAM;
        }
        input.extend(frame(kind, flags, 5, c));
    }
    let mut out = Vec::new();
    Rewriter::new().feed(&input, &mut out).unwrap();
    let fs = frames(&out);
    assert_eq!(fs.len(), 3);
    assert!(fs.iter().all(|f| f.3.len() <= MAX_FRAME_SIZE && f.2 == 5));
    assert_eq!(fs[0].0, HEADERS);
    assert_eq!(fs[0].1, END_STREAM);
    assert_eq!((fs[1].0, fs[1].1), (CONTINUATION, 0));
    assert_eq!((fs[2].0, fs[2].1), (CONTINUATION, END_HEADERS));
    let joined: Vec<u8> = fs.iter().flat_map(|f| f.3.clone()).collect();
    assert_eq!(Decoder::new(4096).decode(&joined).unwrap().len(), 7);
}

#[test]
fn malformed_connections_end() {
    let ok_block = grpc_go_like_request("x");
    let cases: Vec<(Vec<u8>, Malformed)> = vec![
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), Malformed::Preface),
        (
            frame(HEADERS, END_HEADERS, 1, &vec![0; MAX_FRAME_SIZE + 1]),
            Malformed::FrameSize(MAX_FRAME_SIZE + 1),
        ),
        (
            frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82]),
            Malformed::Padding,
        ),
        (
            frame(HEADERS, END_HEADERS | PADDED, 1, &[]),
            Malformed::Padding,
        ),
        (
            frame(CONTINUATION, END_HEADERS, 1, &[0x82]),
            Malformed::Continuation,
        ),
        (
            [frame(HEADERS, 0, 1, &ok_block), frame(0x0, 0, 1, &[1])].concat(),
            Malformed::Continuation,
        ),
        (
            [
                frame(HEADERS, 0, 1, &ok_block),
                frame(CONTINUATION, END_HEADERS, 3, &[]),
            ]
            .concat(),
            Malformed::Continuation,
        ),
        (
            [
                frame(HEADERS, 0, 1, &ok_block),
                frame(HEADERS, END_HEADERS, 3, &[]),
            ]
            .concat(),
            Malformed::Continuation,
        ),
        (
            frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]),
            Malformed::PushPromise,
        ),
        (
            frame(HEADERS, END_HEADERS, 1, &[0x80]),
            Malformed::Hpack("index 0"),
        ),
        (
            {
                let mut v = frame(HEADERS, 0, 1, &[0x00, 0x01, b'x', 0x7f, 0xff, 0x7f]);
                for _ in 0..4 {
                    v.extend(frame(CONTINUATION, 0, 1, &vec![b'a'; MAX_FRAME_SIZE]));
                }
                v
            },
            Malformed::BlockTooLarge,
        ),
    ];
    for (frames, want) in cases {
        let mut input = if want == Malformed::Preface {
            Vec::new()
        } else {
            PREFACE.to_vec()
        };
        input.extend(frames);
        let mut r = Rewriter::new();
        let mut out = Vec::new();
        assert_eq!(r.feed(&input, &mut out), Err(want.clone()));
        // And it stays failed.
        assert_eq!(r.feed(b"x", &mut out), Err(want));
    }
}

#[test]
fn the_adapter_rewrites_reads_and_passes_writes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(64);
        let mut wrapped = Rewrite::new(server);
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &grpc_go_like_request("/run/x.sock"),
        ));
        let writer = tokio::spawn(async move {
            client.write_all(&input).await.unwrap();
            let mut back = [0u8; 5];
            client.read_exact(&mut back).await.unwrap();
            assert_eq!(&back, b"hello");
        });
        let mut got = vec![0u8; 24 + 9];
        wrapped.read_exact(&mut got).await.unwrap();
        let len = FrameHeader::parse(&got[24..]).len;
        let mut payload = vec![0u8; len];
        wrapped.read_exact(&mut payload).await.unwrap();
        let fields = Decoder::new(4096).decode(&payload).unwrap();
        assert_eq!(fields[3], f(":authority", "localhost"));
        wrapped.write_all(b"hello").await.unwrap();
        writer.await.unwrap();
        // A malformed stream reads as InvalidData.
        let (mut client, server) = tokio::io::duplex(64);
        let mut wrapped = Rewrite::new(server);
        client.write_all(b"HELLO").await.unwrap();
        let e = wrapped.read(&mut [0u8; 10]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    });
}

/// Cost per request of the rewrite (a grpc-go-like HEADERS block plus a small DATA frame):
/// `cargo test --release --lib authority::tests::rewrite_cost -- --ignored --nocapture`.
#[test]
#[ignore]
fn rewrite_cost() {
    let block = grpc_go_like_request("/run/container-management/container-management.sock");
    let mut one = frame(HEADERS, END_HEADERS, 1, &block);
    one.extend(frame(0x0, END_STREAM, 1, &[0; 64]));
    let n = 200_000u32;
    let mut input = PREFACE.to_vec();
    for i in 0..n {
        let mut f = one.clone();
        let stream = (2 * i + 1).to_be_bytes();
        f[5..9].copy_from_slice(&stream);
        f[9 + block.len() + 5..9 + block.len() + 9].copy_from_slice(&stream);
        input.extend(f);
    }
    let mut r = Rewriter::new();
    let mut out = Vec::with_capacity(input.len() * 2);
    let t = std::time::Instant::now();
    for chunk in input.chunks(16 * 1024) {
        r.feed(chunk, &mut out).unwrap();
    }
    let per = t.elapsed() / n;
    assert_eq!(r.counts.rewritten, u64::from(n));
    println!("rewrite: {per:?} per request ({} octets in)", one.len());
}

#[test]
fn hostile_input_never_panics() {
    // Random octets, alone and behind a valid preface and frame header, fed in random chunks:
    // errors are fine, panics and unbounded growth are not.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let len = (next() % 300) as usize;
        let noise: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let mut input = Vec::new();
        if round % 3 != 0 {
            input.extend_from_slice(PREFACE);
            let kind = if round % 3 == 1 {
                HEADERS
            } else {
                CONTINUATION
            };
            let flags = next() as u8;
            input.extend(frame(kind, flags, 1, &noise));
        }
        input.extend(&noise);
        let mut r = Rewriter::new();
        let mut out = Vec::new();
        let mut rest = &input[..];
        while !rest.is_empty() {
            let n = 1 + (next() % 40) as usize;
            let (chunk, after) = rest.split_at(n.min(rest.len()));
            if r.feed(chunk, &mut out).is_err() {
                break;
            }
            rest = after;
        }
        assert!(out.len() <= 2 * input.len() + 64);
        let _ = Decoder::new(4096).decode(&noise);
    }
}
