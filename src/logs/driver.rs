//! The log driver process, `leda-cm log-driver json-file dir DIR …`, started by containerd's
//! shim with a container's stdout and stderr pipes (the protocol is in the module docs of
//! `logs`, the arguments in `options`).
//!
//! In order: take fds 3–5 (closing any other inherited ones), drop every capability and set
//! no_new_privs, parse the arguments, block SIGTERM/SIGINT into a signalfd, open the log
//! file, close fd 5 (ready). Then one thread polls both pipes and the signalfd and cuts what
//! it reads into lines. In blocking mode it writes each entry itself, so a slow disk makes
//! the container wait; in non-blocking mode it hands the lines to a writer thread through a
//! queue bounded in bytes and drops what does not fit (counted; a note goes into the log when
//! dropping starts and a count at the end). It exits when both pipes are at EOF, which the
//! shim causes when the task is deleted; after SIGTERM it waits for EOF only until the pipes
//! have been quiet for [`DRAIN_QUIET_MS`].
//!
//! Bad arguments make it exit before signalling readiness; the task is still created and the
//! container's writes then fail with EPIPE. leda-cm builds the URI with
//! [`DriverOptions::to_uri`], so that is a bug, not a configuration error.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use super::format::{LineAssembler, Stream};
use super::options::{DriverOptions, Mode, OptionsError};
use super::writer::JsonFileWriter;
use crate::config::LogLevel;
use crate::privileges::{self, PrivilegeError};

/// The container's stdout pipe, its stderr pipe and the ready pipe, as the shim passes them.
const STDOUT_FD: RawFd = 3;
const STDERR_FD: RawFd = 4;
const READY_FD: RawFd = 5;
/// After SIGTERM, exit once the pipes have been quiet this long (the shim kills at 12 s).
pub const DRAIN_QUIET_MS: i32 = 1000;
/// One read(2) from a pipe: the shim's pipe buffer is 64 KiB, a line may be 16 KiB; a small
/// chunk keeps the driver's stack (private memory, one driver per container) small.
const READ_CHUNK: usize = 4096;
/// The writer thread's stack: entries are encoded on the heap.
const WRITER_STACK: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("fd {fd} ({what}) is not open: the log driver is started by containerd's shim")]
    MissingFd { fd: RawFd, what: &'static str },
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    #[error(transparent)]
    Options(#[from] OptionsError),
    #[error("cannot set up signal handling: {source}")]
    Signals { source: io::Error },
    #[error("cannot poll the container's pipes: {source}")]
    Poll { source: io::Error },
    #[error("cannot start the writer thread: {source}")]
    Thread { source: io::Error },
}

impl DriverError {
    fn exit_code(&self) -> i32 {
        match self {
            DriverError::MissingFd { .. } | DriverError::Options(_) => 64,
            _ => 1,
        }
    }
}

/// Entry point of `leda-cm log-driver …`; `args` is the whole argv. Returns the exit code.
pub fn run_driver(args: Vec<OsString>) -> i32 {
    // Under the shim stderr is /dev/null; by hand this shows what went wrong.
    crate::logging::init(LogLevel::Warn);
    match run(&args) {
        Ok(()) => 0,
        Err(e) => {
            log::error!("log driver: {e}");
            e.exit_code()
        }
    }
}

fn run(args: &[OsString]) -> Result<(), DriverError> {
    // Taken before anything else can open a file and be given one of these numbers.
    let stdout = inherited(STDOUT_FD).ok_or(DriverError::MissingFd {
        fd: STDOUT_FD,
        what: "the container's stdout",
    })?;
    let stderr = inherited(STDERR_FD).ok_or(DriverError::MissingFd {
        fd: STDERR_FD,
        what: "the container's stderr",
    })?;
    let ready = inherited(READY_FD);
    // Whatever else containerd and the shim let through (seen: fds their own parents leaked)
    // is not the driver's to keep open for the container's lifetime.
    // SAFETY: no fd above READY_FD is owned by anything in this process yet.
    // (The raw system call: musl's libc has no close_range wrapper.)
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            READY_FD as libc::c_uint + 1,
            libc::c_uint::MAX,
            0 as libc::c_uint,
        )
    };
    privileges::drop_to(&[])?;
    let opts = DriverOptions::from_args(args.get(1..).unwrap_or_default())?;
    // Before any thread exists, so that every thread has them blocked.
    let signals = termination_signals().map_err(|source| DriverError::Signals { source })?;
    let mut writer = JsonFileWriter::new(&opts.dir, opts.max_size, opts.max_files);
    if let Err(e) = writer.open() {
        // Lines are counted as lost and the file retried; exiting would break the container.
        log::error!("log driver: {e}");
    }
    // Task creation waits for this.
    drop(ready);
    let pipes = [File::from(stdout), File::from(stderr)];
    let controls = Controls {
        drain: Some(signals.as_fd()),
        halt: None,
    };
    serve(pipes, opts.mode, writer, controls)
}

/// What ends a [`serve`] other than EOF on both pipes. Each is an fd that becomes readable.
#[derive(Clone, Copy)]
pub(super) struct Controls<'a> {
    /// Drain: go on until both pipes are at EOF or quiet for [`DRAIN_QUIET_MS`], then end
    /// (the driver's SIGTERM; the daemon's "this task was deleted").
    pub drain: Option<BorrowedFd<'a>>,
    /// Halt: end now and leave what is unread in the pipes, for the next reader (the
    /// daemon's shutdown: the next daemon reopens the fifos and reads on).
    pub halt: Option<BorrowedFd<'a>>,
}

/// Reads both pipes into `writer` until they end (see [`Controls`]): in blocking mode the
/// entries are written by this thread, so a slow disk makes the container wait; in
/// non-blocking mode through a queue bounded in bytes to a writer thread, dropping what does
/// not fit.
pub(super) fn serve(
    pipes: [File; 2],
    mode: Mode,
    mut writer: JsonFileWriter,
    controls: Controls<'_>,
) -> Result<(), DriverError> {
    match mode {
        Mode::Blocking => pump(pipes, controls, |stream, line| {
            if let Err(e) = writer.write(stream, line, SystemTime::now()) {
                log::warn!("log driver: {e}");
            }
        }),
        Mode::NonBlocking { max_buffer } => {
            let queue = Arc::new(Queue::new(max_buffer));
            let consumer = Arc::clone(&queue);
            let thread = std::thread::Builder::new()
                .name("log-writer".into())
                .stack_size(WRITER_STACK)
                .spawn(move || consumer.drain_into(&mut writer))
                .map_err(|source| DriverError::Thread { source })?;
            let result = pump(pipes, controls, |stream, line| queue.push(stream, line));
            queue.close();
            let _ = thread.join();
            result
        }
    }
}

/// Ownership of an fd this process inherited, if it is open.
fn inherited(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_GETFD only queries the descriptor.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the shim hands fds 3–5 to this process for the driver alone, and they are taken
    // before anything in the process opens a file, so nothing else owns them.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Blocks SIGTERM and SIGINT for the calling thread and returns a signalfd for them.
fn termination_signals() -> io::Result<OwnedFd> {
    // SAFETY: plain libc calls on a local, initialised sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Reads both pipes until both are at EOF (or, after `controls.drain`, quiet for
/// [`DRAIN_QUIET_MS`]; or at once after `controls.halt`), giving `emit` every line or piece of
/// a long line in order per stream. The pipes may be non-blocking (the daemon's fifos).
fn pump(
    mut pipes: [File; 2],
    controls: Controls<'_>,
    mut emit: impl FnMut(Stream, &[u8]),
) -> Result<(), DriverError> {
    const STREAMS: [Stream; 2] = [Stream::Stdout, Stream::Stderr];
    let raw = |fd: Option<BorrowedFd<'_>>| fd.map_or(-1, |fd| fd.as_raw_fd());
    let (drain, halt) = (raw(controls.drain), raw(controls.halt));
    let mut open = [true, true];
    // On the heap: only the pages a partial line reaches are touched (private memory).
    let mut lines: [Box<LineAssembler>; 2] = [Box::default(), Box::default()];
    let mut buf = [0u8; READ_CHUNK];
    let mut draining = false;
    while open.iter().any(|&o| o) {
        let pollfd = |fd: RawFd, active: bool| libc::pollfd {
            // A negative fd is skipped by poll(2).
            fd: if active { fd } else { -1 },
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [
            pollfd(pipes[0].as_raw_fd(), open[0]),
            pollfd(pipes[1].as_raw_fd(), open[1]),
            pollfd(drain, !draining),
            pollfd(halt, true),
        ];
        let timeout = if draining { DRAIN_QUIET_MS } else { -1 };
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(DriverError::Poll { source: e });
        }
        if n == 0 {
            log::warn!("log driver: pipes quiet while draining, ending");
            break;
        }
        if fds[3].revents != 0 {
            break;
        }
        for i in 0..2 {
            if !open[i] || fds[i].revents == 0 {
                continue;
            }
            let stream = STREAMS[i];
            match pipes[i].read(&mut buf) {
                Ok(0) => {
                    open[i] = false;
                    lines[i].finish(|line| emit(stream, line));
                }
                Ok(n) => lines[i].feed(&buf[..n], |line| emit(stream, line)),
                Err(e)
                    if e.kind() == io::ErrorKind::Interrupted
                        || e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    log::error!("log driver: cannot read the {} pipe: {e}", stream.as_str());
                    open[i] = false;
                    lines[i].finish(|line| emit(stream, line));
                }
            }
        }
        if fds[2].revents != 0 {
            draining = true;
        }
    }
    for (i, assembler) in lines.iter_mut().enumerate() {
        assembler.finish(|line| emit(STREAMS[i], line));
    }
    Ok(())
}

/// Lines on their way from the pipe reader to the writer thread, at most `max_bytes` of them.
struct Queue {
    state: Mutex<QueueState>,
    changed: Condvar,
    max_bytes: u64,
}

#[derive(Default)]
struct QueueState {
    lines: VecDeque<(Stream, SystemTime, Box<[u8]>)>,
    bytes: u64,
    dropped: u64,
    /// Dropping has started and the note about it is not written yet.
    note_due: bool,
    closed: bool,
}

impl Queue {
    fn new(max_bytes: u64) -> Queue {
        Queue {
            state: Mutex::default(),
            changed: Condvar::new(),
            max_bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a line, or drops it when the buffer is full. Never waits for the writer.
    fn push(&self, stream: Stream, line: &[u8]) {
        let time = SystemTime::now();
        let mut state = self.lock();
        let len = line.len() as u64;
        if state.bytes + len > self.max_bytes {
            if state.dropped == 0 {
                state.note_due = true;
            }
            state.dropped += 1;
        } else {
            state.lines.push_back((stream, time, line.into()));
            state.bytes += len;
        }
        drop(state);
        self.changed.notify_one();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_one();
    }

    /// The writer thread: writes queued lines until the queue is closed and empty.
    fn drain_into(&self, writer: &mut JsonFileWriter) {
        let mut write = |stream: Stream, line: &[u8], time: SystemTime| {
            if let Err(e) = writer.write(stream, line, time) {
                log::warn!("log driver: {e}");
            }
        };
        loop {
            let mut state = self.lock();
            while state.lines.is_empty() && !state.note_due && !state.closed {
                state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            let note_due = std::mem::take(&mut state.note_due);
            let next = state.lines.pop_front();
            if let Some((_, _, line)) = &next {
                state.bytes -= line.len() as u64;
            }
            let (closed, dropped) = (state.closed, state.dropped);
            drop(state);
            if note_due {
                let note = format!(
                    "leda-cm log driver: the buffer of {} bytes is full, dropping log lines \
                     (non-blocking mode)\n",
                    self.max_bytes
                );
                write(Stream::Stderr, note.as_bytes(), SystemTime::now());
            }
            match next {
                Some((stream, time, line)) => write(stream, &line, time),
                None if closed => {
                    if dropped > 0 {
                        let note = format!(
                            "leda-cm log driver: {dropped} log lines dropped in non-blocking mode\n"
                        );
                        write(Stream::Stderr, note.as_bytes(), SystemTime::now());
                    }
                    return;
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::reader::read_tail;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn tmp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("leda-cm-driver-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn queue_drops_when_full_and_notes_it() {
        let dir = tmp("queue");
        let queue = Queue::new(10);
        // No writer yet: the first two fit (4 + 6 bytes), the rest is dropped.
        for line in ["abc\n", "defgh\n", "x\n", "y\n"] {
            queue.push(Stream::Stdout, line.as_bytes());
        }
        queue.close();
        let mut writer = JsonFileWriter::new(&dir, None, 1);
        queue.drain_into(&mut writer);
        let (entries, _) = read_tail(&dir, None).unwrap();
        let logs: Vec<_> = entries.iter().map(|e| e.log.as_str()).collect();
        assert_eq!(
            logs,
            [
                "leda-cm log driver: the buffer of 10 bytes is full, dropping log lines (non-blocking mode)\n",
                "abc\n",
                "defgh\n",
                "leda-cm log driver: 2 log lines dropped in non-blocking mode\n",
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn pump_reads_both_streams_to_eof() {
        let (mut out_w, out_r) = UnixStream::pair().unwrap();
        let (mut err_w, err_r) = UnixStream::pair().unwrap();
        let (_sig_w, sig_r) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            out_w.write_all(b"one\ntw").unwrap();
            err_w.write_all(b"oops\n").unwrap();
            out_w.write_all(b"o\nlast").unwrap();
        });
        let mut got = Vec::new();
        let sig_r = OwnedFd::from(sig_r);
        pump(
            [
                File::from(OwnedFd::from(out_r)),
                File::from(OwnedFd::from(err_r)),
            ],
            Controls {
                drain: Some(sig_r.as_fd()),
                halt: None,
            },
            |s, l| got.push((s, String::from_utf8(l.to_vec()).unwrap())),
        )
        .unwrap();
        writer.join().unwrap();
        let stdout: Vec<_> = got
            .iter()
            .filter(|(s, _)| *s == Stream::Stdout)
            .map(|(_, l)| l.as_str())
            .collect();
        let stderr: Vec<_> = got
            .iter()
            .filter(|(s, _)| *s == Stream::Stderr)
            .map(|(_, l)| l.as_str())
            .collect();
        assert_eq!(stdout, ["one\n", "two\n", "last"]);
        assert_eq!(stderr, ["oops\n"]);
    }
}
