//! A fault-injecting TCP proxy on loopback, in front of one of the harness's registries: it
//! forwards each connection and, when told to, cuts it once the registry has sent
//! `cut_after` bytes on it: a close (the body ends early) or a reset (the client's kernel
//! drops what it had received and not yet read). It can also pace what it forwards, as a
//! link slower than the device. It counts every byte it forwards from the registry, so a
//! test can say how much a pull really fetched.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
pub struct Counters {
    /// Bytes forwarded from the registry to the client, all connections.
    pub down: AtomicU64,
    /// Connections cut.
    pub cuts: AtomicU64,
    pub connections: AtomicU64,
}

/// How a connection is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The proxy closes both sides (FIN): the client reads what arrived, then an early end.
    Close,
    /// A TCP reset (SO_LINGER 0): what the client had not read yet is lost.
    Reset,
}

pub struct CutProxy {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    /// 0: never cut.
    cut_after: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CutProxy {
    /// A proxy to `target` (`host:port` on loopback), cutting each connection after
    /// `cut_after` bytes from the target (0: never).
    pub fn start(target: &str, cut_after: u64) -> CutProxy {
        CutProxy::with(target, cut_after, Cut::Close, 0)
    }

    /// As `start`, cutting by `cut` and forwarding at most `rate` bytes per second per
    /// connection (0: as fast as it can).
    pub fn with(target: &str, cut_after: u64, cut: Cut, rate: u64) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let how = cut;
        let cut = Arc::new(AtomicU64::new(cut_after));
        let stop = Arc::new(AtomicBool::new(false));
        let target = target.to_string();
        {
            let (counters, cut, stop) = (counters.clone(), cut.clone(), stop.clone());
            std::thread::spawn(move || {
                for client in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(&target) else {
                        continue;
                    };
                    counters.connections.fetch_add(1, Ordering::SeqCst);
                    let limit = cut.load(Ordering::SeqCst);
                    relay(client, server, limit, how, rate, counters.clone());
                }
            });
        }
        CutProxy {
            addr,
            counters,
            cut_after: cut,
            stop,
        }
    }

    /// `127.0.0.1:PORT`, as a registry host in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn set_cut_after(&self, bytes: u64) {
        self.cut_after.store(bytes, Ordering::SeqCst);
    }

    pub fn down(&self) -> u64 {
        self.counters.down.load(Ordering::SeqCst)
    }

    pub fn cuts(&self) -> u64 {
        self.counters.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Closes with a reset rather than a FIN: what a dropped cellular link looks like to the
/// reader (a connection reset, not a clean end of the body).
fn reset(s: &TcpStream) {
    let fd = std::os::fd::AsRawFd::as_raw_fd(s);
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on a socket this function's caller owns, with a valid struct.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Both);
}

fn relay(
    client: TcpStream,
    server: TcpStream,
    cut_after: u64,
    how: Cut,
    rate: u64,
    counters: Arc<Counters>,
) {
    let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = c_read.read(&mut buf) {
            if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = s_write.shutdown(Shutdown::Write);
    });
    std::thread::spawn(move || {
        let (mut s_read, mut c_write) = (server, client);
        // Small reads when pacing, so that the pace is smooth.
        let mut buf = vec![0u8; if rate > 0 { 4 * 1024 } else { 16 * 1024 }];
        let mut sent = 0u64;
        loop {
            let n = match s_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = if cut_after > 0 {
                n.min((cut_after - sent) as usize)
            } else {
                n
            };
            if c_write.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n as u64;
            counters.down.fetch_add(n as u64, Ordering::SeqCst);
            if rate > 0 {
                std::thread::sleep(Duration::from_secs_f64(n as f64 / rate as f64));
            }
            if cut_after > 0 && sent >= cut_after {
                counters.cuts.fetch_add(1, Ordering::SeqCst);
                match how {
                    Cut::Reset => {
                        reset(&c_write);
                        reset(&s_read);
                    }
                    Cut::Close => {
                        let _ = c_write.shutdown(Shutdown::Both);
                        let _ = s_read.shutdown(Shutdown::Both);
                    }
                }
                return;
            }
        }
        let _ = c_write.shutdown(Shutdown::Write);
    });
}
