//! Log capture inside the daemon: each task's stdout and stderr are fifos in the runtime dir,
//! read by one thread of the daemon per task (two in non-blocking mode) into the container's
//! json-file log. Adapter: the file system (fifos) and threads; the format and the file
//! writing are the driver's own ([`super::driver::serve`], [`JsonFileWriter`]).
//!
//! # Why it survives a daemon restart
//!
//! containerd's runc shim opens a fifo given as a task's stdout for writing **and** for
//! reading (containerd 1.6 `pkg/process/io.go`), and keeps both open until the task is
//! deleted. While no daemon reads, the container's output therefore waits in the fifo (its
//! buffer is raised to [`FIFO_BUFFER`]) and in the shim's pipe behind it; nothing is lost and
//! nothing gets EPIPE. A container that writes more than those buffers while the daemon is
//! away blocks in `write(2)` until the next daemon reopens the fifo (the task's stdout path,
//! which containerd reports) and reads on. At a halt (SIGTERM) a capture thread stops reading
//! at once and writes what it holds of an unfinished line as an entry of its own; a kill -9
//! loses at most the one read in hand (≤ 4 KiB).
//!
//! # Life of a capture
//!
//! [`Capture::prepare`] makes `DIR/ID/N.out` and `N.err` (N new each time) and opens their read
//! ends non-blocking, so the shim's open for writing does not wait; the task is created with
//! those paths; [`Prepared::start`] then starts the thread. The thread ends when the shim
//! closes the fifos (the task is deleted: poll reports a hang-up once a writer has come and
//! gone), or after [`Capture::finish`] once the fifos are quiet, or at [`Capture::halt`]; it
//! removes its fifos when the task is over (not at a halt: the next daemon needs them).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::driver::{serve, Controls};
use super::options::DriverOptions;
use super::writer::JsonFileWriter;

/// The fifo's buffer (`F_SETPIPE_SZ`): what a container may write while no daemon reads
/// before it blocks, besides the shim's own 64 KiB pipe. Kernel memory, taken only as filled.
pub const FIFO_BUFFER: i32 = 256 * 1024;
/// A capture thread's stack: reads go through a 4 KiB buffer, entries are encoded on the heap.
const THREAD_STACK: usize = 128 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot make the log fifo {path}: {source}")]
    Fifo { path: PathBuf, source: io::Error },
    #[error("cannot open the log fifo {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot start the log capture thread of container {id}: {source}")]
    Thread { id: String, source: io::Error },
    #[error("cannot make the halt pipe of the log capture: {source}")]
    Pipe { source: io::Error },
}

/// A task's fifos, made and opened for reading, before the task exists.
pub struct Prepared {
    capture: Arc<Capture>,
    id: String,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    /// The read ends; taken when the capture starts.
    files: Option<[File; 2]>,
}

impl Prepared {
    /// Starts reading the fifos: the task was just created with them.
    pub fn start(mut self, opts: &DriverOptions) -> Result<(), CaptureError> {
        let files = self.files.take().expect("a prepared capture starts once");
        self.capture
            .spawn(&self.id, self.stdout.clone(), files, opts)
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("id", &self.id)
            .field("stdout", &self.stdout)
            .finish()
    }
}

impl Drop for Prepared {
    /// Not started (the task was not created): the fifos go.
    fn drop(&mut self) {
        if self.files.is_some() {
            let _ = fs::remove_file(&self.stdout);
            let _ = fs::remove_file(&self.stderr);
        }
    }
}

struct Running {
    /// Its stdout fifo: what identifies it.
    stdout: PathBuf,
    /// A byte written here makes the thread drain and end.
    finish: OwnedFd,
}

struct Shared {
    /// Capture threads by container ID.
    running: Mutex<HashMap<String, Vec<Running>>>,
    /// Readable once the daemon halts: every thread ends at once.
    halt_r: OwnedFd,
    /// Set before `halt_r` becomes readable: an ending thread leaves its fifos.
    halted: AtomicBool,
}

/// The daemon's log capture: every running capture thread and where the fifos live.
pub struct Capture {
    dir: PathBuf,
    shared: Arc<Shared>,
    halt_w: Mutex<Option<OwnedFd>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    next: AtomicU64,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("dir", &self.dir)
            .field("running", &self.running())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    use std::os::fd::FromRawFd;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn mkfifo(path: &Path) -> Result<(), CaptureError> {
    let err = |source| CaptureError::Fifo {
        path: path.to_path_buf(),
        source,
    };
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| err(io::ErrorKind::InvalidInput.into()))?;
    // SAFETY: `c` is a valid NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        return Err(err(io::Error::last_os_error()));
    }
    Ok(())
}

/// Opens a fifo's read end without waiting for a writer.
fn open_reader(path: &Path) -> Result<File, CaptureError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| CaptureError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on an fd this function owns; failure only leaves the default size.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, FIFO_BUFFER) };
    Ok(file)
}

/// `N.err` beside `N.out`.
fn stderr_of(stdout: &Path) -> PathBuf {
    stdout.with_extension("err")
}

impl Capture {
    /// A capture whose fifos live under `dir` (in the runtime dir: fifos are for one boot).
    pub fn new(dir: &Path) -> Result<Arc<Capture>, CaptureError> {
        let (halt_r, halt_w) = pipe().map_err(|source| CaptureError::Pipe { source })?;
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        Ok(Arc::new(Capture {
            dir: dir.to_path_buf(),
            shared: Arc::new(Shared {
                running: Mutex::default(),
                halt_r,
                halted: AtomicBool::new(false),
            }),
            halt_w: Mutex::new(Some(halt_w)),
            threads: Mutex::default(),
            next: AtomicU64::new(seed),
        }))
    }

    /// Whether `path` is one of this capture's fifos (a task created with it).
    pub fn owns(&self, path: &str) -> bool {
        Path::new(path).starts_with(&self.dir) && path.ends_with(".out")
    }

    /// Makes the fifos of a task of container `id`, ready for the task to be created.
    pub fn prepare(self: &Arc<Self>, id: &str) -> Result<Prepared, CaptureError> {
        let dir = self.dir.join(id);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| CaptureError::Fifo {
                path: dir.clone(),
                source,
            })?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let stdout = dir.join(format!("{n}.out"));
        let stderr = stderr_of(&stdout);
        for p in [&stdout, &stderr] {
            let _ = fs::remove_file(p);
            mkfifo(p)?;
        }
        let files = [open_reader(&stdout)?, open_reader(&stderr)?];
        Ok(Prepared {
            capture: Arc::clone(self),
            id: id.to_string(),
            stdout,
            stderr,
            files: Some(files),
        })
    }

    /// After a daemon restart: reads on from the fifos of container `id`'s live task, whose
    /// stdout is `stdout` (as containerd reports it). Nothing when it is read already.
    pub fn resume(&self, id: &str, stdout: &str, opts: &DriverOptions) -> Result<(), CaptureError> {
        let stdout = PathBuf::from(stdout);
        if lock(&self.shared.running)
            .get(id)
            .is_some_and(|r| r.iter().any(|r| r.stdout == stdout))
        {
            return Ok(());
        }
        let files = [open_reader(&stdout)?, open_reader(&stderr_of(&stdout))?];
        log::debug!("container {id}: reading its log fifos on");
        self.spawn(id, stdout, files, opts)
    }

    /// The task of container `id` is deleted: its capture ends once the fifos are quiet (the
    /// hang-up the shim causes normally ends it first).
    pub fn finish(&self, id: &str) {
        if let Some(running) = lock(&self.shared.running).get(id) {
            for r in running {
                let _ = poke(&r.finish);
            }
        }
    }

    /// Removes fifos under the capture's dir that no thread reads and no task was created
    /// with (`live`: stdout paths of tasks that exist): what a crash left.
    pub fn sweep(&self, live: &[String]) {
        let Ok(dirs) = fs::read_dir(&self.dir) else {
            return;
        };
        let running = lock(&self.shared.running);
        for d in dirs.flatten() {
            let id = d.file_name().to_string_lossy().into_owned();
            let Ok(files) = fs::read_dir(d.path()) else {
                continue;
            };
            for f in files.flatten() {
                let path = f.path();
                let out = if path.extension().is_some_and(|e| e == "err") {
                    path.with_extension("out")
                } else {
                    path.clone()
                };
                let read = running
                    .get(&id)
                    .is_some_and(|r| r.iter().any(|r| r.stdout == out));
                if !read && !live.iter().any(|l| Path::new(l) == out) {
                    // A fifo just prepared for a create in progress is younger than this.
                    let young = f
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .map_or(true, |age| age < Duration::from_secs(60));
                    if !young {
                        let _ = fs::remove_file(&path);
                    }
                }
            }
            let _ = fs::remove_dir(d.path());
        }
    }

    /// The daemon is stopping: every capture thread stops reading now (what is unread stays
    /// in the fifos for the next daemon); waits for them up to `bound`.
    pub fn halt(&self, bound: Duration) {
        self.shared.halted.store(true, Ordering::SeqCst);
        drop(lock(&self.halt_w).take());
        let deadline = Instant::now() + bound;
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }

    /// Number of capture threads running (for tests and the log).
    pub fn running(&self) -> usize {
        lock(&self.shared.running).values().map(Vec::len).sum()
    }

    fn spawn(
        &self,
        id: &str,
        stdout: PathBuf,
        files: [File; 2],
        opts: &DriverOptions,
    ) -> Result<(), CaptureError> {
        let thread_err = |source| CaptureError::Thread {
            id: id.to_string(),
            source,
        };
        let (finish_r, finish_w) = pipe().map_err(thread_err)?;
        let shared = Arc::clone(&self.shared);
        let writer = JsonFileWriter::new(&opts.dir, opts.max_size, opts.max_files);
        let mode = opts.mode;
        let owner = id.to_string();
        let out = stdout.clone();
        // Registered before the thread can end and deregister itself.
        let mut running = lock(&self.shared.running);
        let handle = std::thread::Builder::new()
            .name(format!("log-{}", &id[..id.len().min(11)]))
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let controls = Controls {
                    drain: Some(finish_r.as_fd()),
                    halt: Some(shared.halt_r.as_fd()),
                };
                if let Err(e) = serve(files, mode, writer, controls) {
                    log::error!("container {owner}: log capture: {e}");
                }
                // Halted: the fifos stay for the next daemon.
                let halted = shared.halted.load(Ordering::SeqCst);
                let mut running = lock(&shared.running);
                if let Some(list) = running.get_mut(&owner) {
                    list.retain(|r| r.stdout != out);
                    if list.is_empty() {
                        running.remove(&owner);
                    }
                }
                drop(running);
                if !halted {
                    let _ = fs::remove_file(&out);
                    let _ = fs::remove_file(stderr_of(&out));
                    if let Some(dir) = out.parent() {
                        let _ = fs::remove_dir(dir);
                    }
                }
            })
            .map_err(thread_err)?;
        running.entry(id.to_string()).or_default().push(Running {
            stdout,
            finish: finish_w,
        });
        drop(running);
        let mut threads = lock(&self.threads);
        threads.retain(|t| !t.is_finished());
        threads.push(handle);
        Ok(())
    }
}

/// A byte into a non-blocking pipe (a full pipe is as good: it is readable already).
fn poke(fd: &OwnedFd) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: writes one byte from a valid buffer to an fd this process owns.
    let n = unsafe { libc::write(fd.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::reader::read_tail;
    use crate::logs::Stream;
    use std::io::Write;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("leda-cm-capture-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    /// What the shim does with a fifo: opens it for writing and for reading, keeps both.
    fn shim_open(path: &Path) -> (File, File) {
        let keep = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap();
        let w = OpenOptions::new().write(true).open(path).unwrap();
        (w, keep)
    }

    fn logs(dir: &Path) -> Vec<(Stream, String)> {
        read_tail(dir, None)
            .map(|(e, _)| e.into_iter().map(|e| (e.stream, e.log)).collect())
            .unwrap_or_default()
    }

    fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn reads_both_fifos_and_ends_with_the_task_removing_them() {
        let base = tmp("task");
        let capture = Capture::new(&base.join("run")).unwrap();
        let opts = DriverOptions::new(base.join("log"));
        let prepared = capture.prepare("c1").unwrap();
        let (out, err) = (prepared.stdout.clone(), prepared.stderr.clone());
        assert!(out.starts_with(base.join("run/c1")) && capture.owns(&out.display().to_string()));
        let (mut w_out, keep_out) = shim_open(&out);
        let (mut w_err, keep_err) = shim_open(&err);
        prepared.start(&opts).unwrap();
        assert_eq!(capture.running(), 1);
        w_out.write_all(b"one\ntw").unwrap();
        w_err.write_all(b"oops\n").unwrap();
        w_out.write_all(b"o\n").unwrap();
        wait_for("three entries", || logs(&opts.dir).len() == 3);
        let got = logs(&opts.dir);
        assert!(got.contains(&(Stream::Stdout, "one\n".into())));
        assert!(got.contains(&(Stream::Stdout, "two\n".into())));
        assert!(got.contains(&(Stream::Stderr, "oops\n".into())));
        // The task is deleted: the shim closes both ends of both fifos.
        drop((w_out, keep_out, w_err, keep_err));
        wait_for("the thread to end", || capture.running() == 0);
        assert!(!out.exists() && !err.exists() && !base.join("run/c1").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_halt_leaves_the_fifos_and_a_resume_reads_what_waited_in_them() {
        let base = tmp("halt");
        let opts = DriverOptions::new(base.join("log"));
        let first = Capture::new(&base.join("run")).unwrap();
        let prepared = first.prepare("c1").unwrap();
        let out = prepared.stdout.clone();
        let (mut w_out, _keep_out) = shim_open(&out);
        let (_w_err, _keep_err) = shim_open(&prepared.stderr);
        prepared.start(&opts).unwrap();
        w_out.write_all(b"before\n").unwrap();
        wait_for("the first line", || logs(&opts.dir).len() == 1);
        first.halt(Duration::from_secs(5));
        assert_eq!(first.running(), 0);
        assert!(out.exists(), "a halt removed the fifo");
        // No daemon: the lines wait in the fifo (no EPIPE: the shim keeps a reader).
        w_out.write_all(b"while away\nand a half").unwrap();
        let second = Capture::new(&base.join("run")).unwrap();
        second
            .resume("c1", &out.display().to_string(), &opts)
            .unwrap();
        // Resuming twice reads once.
        second
            .resume("c1", &out.display().to_string(), &opts)
            .unwrap();
        assert_eq!(second.running(), 1);
        w_out.write_all(b" line\n").unwrap();
        wait_for("all three lines", || logs(&opts.dir).len() == 3);
        assert_eq!(
            logs(&opts.dir),
            [
                (Stream::Stdout, "before\n".to_string()),
                (Stream::Stdout, "while away\n".to_string()),
                (Stream::Stdout, "and a half line\n".to_string()),
            ]
        );
        // finish() without the shim closing: ends once quiet.
        second.finish("c1");
        wait_for("the finished thread to end", || second.running() == 0);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_task_never_created_leaves_no_fifos_and_sweep_takes_old_leftovers_only() {
        let base = tmp("sweep");
        let capture = Capture::new(&base.join("run")).unwrap();
        let prepared = capture.prepare("gone").unwrap();
        let out = prepared.stdout.clone();
        drop(prepared);
        assert!(!out.exists());
        // A leftover of a crashed daemon, and one of a create in progress (young).
        let young = capture.prepare("young").unwrap();
        let old = base.join("run/old/1.out");
        fs::create_dir_all(old.parent().unwrap()).unwrap();
        mkfifo(&old).unwrap();
        mkfifo(&stderr_of(&old)).unwrap();
        let past = std::time::SystemTime::now() - Duration::from_secs(3600);
        for p in [&old, &stderr_of(&old)] {
            File::options()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p)
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
        // A live task's fifos are kept however old.
        let live = base.join("run/live/2.out");
        fs::create_dir_all(live.parent().unwrap()).unwrap();
        mkfifo(&live).unwrap();
        capture.sweep(&[live.display().to_string()]);
        assert!(!old.exists() && !base.join("run/old").exists());
        assert!(young.stdout.exists() && live.exists());
        fs::remove_dir_all(&base).unwrap();
    }
}
