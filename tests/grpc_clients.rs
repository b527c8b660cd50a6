//! Other gRPC stacks against the real daemon over its unix socket (issue 18): grpc-go (as
//! Kanto's kanto-cm dials: the socket's absolute path is the `:authority`), grpcio from PyPI,
//! and hand-built HTTP/2 frames with authorities h2 refuses. The clients also check what a
//! Kanto client observes from Kanto's daemon: a failed operation is code Unknown with
//! Kanto's text, `Get` of an unknown ID is OK without a container. Go and pip builds are cached
//! under target/ (`CARGO_TARGET_TMPDIR`). A test whose toolchain is missing says so and
//! passes; a build that fails fails the test.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use leda_cm::api::authority::{Decoder, PREFACE};

type Device = common::api::ApiDevice;

impl Device {
    /// Runs a client that prints "ok ..." lines; asserts it succeeded.
    fn run_client(&self, what: &str, mut cmd: Command, name: &str) -> String {
        let out = cmd
            .arg(&self.sock)
            .arg(self.image())
            .arg(name)
            .output()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("{what}:\n{stdout}");
        assert!(
            out.status.success(),
            "{what} failed:\n{stdout}{}\ndaemon:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.stderr()
        );
        stdout
    }
}

/// The client saw what a Kanto client sees from Kanto's daemon: failures as code Unknown
/// with Kanto's texts, Get of a removed container OK without a container.
fn kanto_answers(out: &str) {
    for line in KANTO_ANSWERS {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
}

const KANTO_ANSWERS: [&str; 3] = [
    "ok Stop of a created container: Unknown",
    "ok Start of an unknown ID: Unknown",
    "ok Get of the removed container: OK without a container",
];

fn cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

#[test]
fn grpc_go_with_the_socket_path_as_authority() {
    if !common::have("go") {
        eprintln!("SKIPPED: no `go` on PATH (the grpc-go client of tests/grpc-go needs Go 1.26)");
        return;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc-go");
    let go = cache().join("go");
    let bin = go.join("grpc-go-client");
    common::go_build(
        &src,
        ".",
        &bin,
        &go,
        "-mod=readonly -buildvcs=false",
        "go build tests/grpc-go",
    );
    let d = Device::start("grpc-go", serde_json::json!({}));
    let out = d.run_client("grpc-go client", Command::new(&bin), "grpc-go");
    kanto_answers(&out);
    for line in [
        "ok unknown service: Unimplemented",
        "ok unknown method: Unimplemented",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
}

#[test]
fn grpcio_from_pypi_over_the_unix_socket() {
    if !common::have("python3") {
        eprintln!("SKIPPED: no python3 (the grpcio client of tests/grpc-python needs it)");
        return;
    }
    let venv = cache().join("grpc-python-venv");
    let python = venv.join("bin/python");
    let importable = |p: &Path| {
        Command::new(p)
            .args(["-c", "import grpc"])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !importable(&python) {
        common::run_ok(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        );
        common::run_ok(
            Command::new(venv.join("bin/pip")).args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "grpcio",
            ]),
            "pip install grpcio",
        );
    }
    let d = Device::start("grpcio", serde_json::json!({}));
    let mut cmd = Command::new(&python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/grpc-python/client.py"));
    let out = d.run_client("grpcio client", cmd, "grpcio");
    kanto_answers(&out);
}

// ---- hand-built HTTP/2, no HTTP/2 library on the client side

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend([kind, flags]);
    out.extend(stream.to_be_bytes());
    out.extend(payload);
    out
}

fn literal(out: &mut Vec<u8>, name: &str, value: &str) {
    // Literal without indexing, new name, no Huffman (lengths < 127).
    out.push(0x00);
    out.push(name.len() as u8);
    out.extend(name.as_bytes());
    out.push(value.len() as u8);
    out.extend(value.as_bytes());
}

#[test]
fn hand_built_requests_with_authorities_h2_refuses_are_answered() {
    let d = Device::start("grpc-raw", serde_json::json!({}));
    let mut s = UnixStream::connect(&d.sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = PREFACE.to_vec();
    req.extend(frame(0x4, 0, 0, &[]));
    let authorities = ["/run/x.sock", "", "%2Frun%2Fx.sock", "localhost"];
    for (i, authority) in authorities.iter().enumerate() {
        let stream = 1 + 2 * i as u32;
        let mut block = Vec::new();
        literal(&mut block, ":method", "POST");
        literal(&mut block, ":scheme", "http");
        literal(
            &mut block,
            ":path",
            "/github.com.eclipse_kanto.container_management.containerm.api.services.sysinfo.SystemInfo/ProjectInfo",
        );
        literal(&mut block, ":authority", authority);
        literal(&mut block, "content-type", "application/grpc");
        literal(&mut block, "te", "trailers");
        // The first request padded, the block split over a CONTINUATION.
        if i == 0 {
            let mut payload = vec![4u8];
            payload.extend(&block[..7]);
            payload.extend([0; 4]);
            req.extend(frame(0x1, 0x8, stream, &payload));
            req.extend(frame(0x9, 0x4, stream, &block[7..]));
        } else {
            req.extend(frame(0x1, 0x4, stream, &block));
        }
        req.extend(frame(0x0, 0x1, stream, &[0, 0, 0, 0, 0]));
    }
    s.write_all(&req).unwrap();

    // Read the server's frames until every stream has its trailers.
    let mut decoder = Decoder::new(4096);
    let mut done = vec![false; authorities.len()];
    let mut data = vec![0usize; authorities.len()];
    let mut header = [0u8; 9];
    while done.iter().any(|d| !d) {
        s.read_exact(&mut header).unwrap();
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let (kind, flags) = (header[3], header[4]);
        let stream = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).unwrap();
        let i = (stream.max(1) as usize - 1) / 2;
        match kind {
            0x3 => panic!("stream {stream} ({:?}) reset: {payload:?}", authorities[i]),
            0x7 => panic!("GOAWAY: {payload:?}"),
            0x0 => data[i] += len,
            0x1 => {
                assert_eq!(flags & 0x4, 0x4, "response headers in one frame");
                let fields = decoder.decode(&payload).unwrap();
                let get = |n: &str| {
                    fields
                        .iter()
                        .find(|f| f.name == n.as_bytes())
                        .map(|f| String::from_utf8_lossy(&f.value).to_string())
                };
                if let Some(status) = get(":status") {
                    assert_eq!(status, "200", "{:?}", authorities[i]);
                }
                if let Some(code) = get("grpc-status") {
                    assert_eq!(code, "0", "{:?}: {:?}", authorities[i], get("grpc-message"));
                    done[i] = true;
                }
            }
            _ => {}
        }
    }
    // Each got a ProjectInfoResponse (a gRPC message of more than its 5-octet prefix).
    assert!(data.iter().all(|&n| n > 5), "{data:?}");
}
