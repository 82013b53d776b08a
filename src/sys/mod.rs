//! The system layer: every system call of both programs lives below here,
//! each `unsafe` block with the reason it is sound.

pub mod alloc_count;
pub mod cgroup;
pub mod control;
pub mod os;
pub mod pid1;
pub mod poller;
pub mod process;
pub mod signals;
pub mod sockpath;
pub mod spawn;
pub mod wtmp;

use std::ffi::CStr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The calling thread's errno.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// An errno shown as the C library's text for it (`Permission denied`),
/// formatted into a stack buffer: nothing is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut buf = [0u8; 128];
        // SAFETY: buf is writable for its length; the XSI strerror_r (the
        // one the libc crate binds) always NUL-terminates what it writes.
        let rc = unsafe { libc::strerror_r(self.0, buf.as_mut_ptr().cast(), buf.len()) };
        let text = CStr::from_bytes_until_nul(&buf)
            .ok()
            .and_then(|t| t.to_str().ok())
            .filter(|t| rc == 0 && !t.is_empty());
        match text {
            Some(text) => f.write_str(text),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// An `io::Error` as `Errno` shows it, without the `(os error N)` that
/// std appends.
pub struct IoText<'a>(pub &'a std::io::Error);

impl core::fmt::Display for IoText<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.raw_os_error() {
            Some(errno) => Errno(errno).fmt(f),
            None => self.0.fmt(f),
        }
    }
}

/// Milliseconds on the monotonic clock, which does not count suspend and
/// does not move with the wall clock.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// A zeroed byte buffer on the heap, for the buffers reserved at
/// startup: the allocator's fresh pages stay out of nitro's resident set
/// until used (a zeroed array built in a frame and moved would touch
/// every page, and the frame's stack would stay resident too).
pub fn zeroed_bytes<const N: usize>() -> Box<[u8; N]> {
    const { assert!(N > 0) };
    let layout = std::alloc::Layout::new::<[u8; N]>();
    // SAFETY: the layout is not zero-sized; all zeroes is a valid byte
    // array, and the pointer comes from the global allocator with the
    // layout of the Box's type.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout);
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(p.cast())
    }
}

/// Closes a descriptor we own; errors (EINTR, EBADF) leave nothing to do.
pub fn close(fd: i32) {
    // SAFETY: closing an fd has no memory-safety preconditions.
    unsafe { libc::close(fd) };
}

/// Builds `dir/file` (or just `dir` when `file` is empty) as a C string in
/// `buf`; `None` if it does not fit or contains a NUL.
pub fn join_path<'b>(buf: &'b mut [u8], dir: &[u8], file: &[u8]) -> Option<&'b CStr> {
    let sep = usize::from(!file.is_empty());
    let len = dir.len() + sep + file.len();
    if len + 1 > buf.len() {
        return None;
    }
    buf[..dir.len()].copy_from_slice(dir);
    if sep == 1 {
        buf[dir.len()] = b'/';
    }
    buf[dir.len() + sep..len].copy_from_slice(file);
    buf[len] = 0;
    CStr::from_bytes_with_nul(&buf[..=len]).ok()
}

/// Opens the directory `path` (relative to `at`), close-on-exec.
pub fn open_dir(at: i32, path: &CStr) -> Option<i32> {
    // SAFETY: path is a valid C string relative to `at`.
    let fd = unsafe {
        libc::openat(
            at,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    (fd >= 0).then_some(fd)
}

/// `/dev/null` open for reading and writing, or where there is none (a
/// bare `/dev`, a kernel without devtmpfs) a drained pipe: the read end
/// of a pipe whose write end is closed, which reads as empty. With
/// `cloexec` it stays out of children.
pub fn null_fd(cloexec: bool) -> std::io::Result<crate::core::Fd> {
    let flags = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: a valid C string and flags.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | flags) };
    if fd >= 0 {
        return Ok(fd);
    }
    let mut fds = [-1i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), flags) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    close(fds[1]);
    Ok(fds[0])
}

/// Runs `child` in a forked child, whose signal handlers are its own, and
/// fails the test unless it returns 0 (its exit status).
///
/// # Safety
/// `child` may make only async-signal-safe calls (the test process has
/// other threads).
#[cfg(test)]
pub unsafe fn in_child(child: impl FnOnce() -> i32) {
    // SAFETY: the child runs only `child`, then _exit.
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::_exit(child());
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert_eq!(libc::WEXITSTATUS(status), 0, "status {status:#x}");
    }
}

/// Reads raw directory entries into a fixed buffer, which it is given: no
/// allocation after startup (nitro's scans keep theirs on the heap, so
/// that no frame carries it).
pub struct DirReader<B> {
    fd: crate::core::Fd,
    buf: B,
    len: usize,
    at: usize,
}

impl<B: AsRef<[u8]> + AsMut<[u8]>> DirReader<B> {
    pub fn new(buf: B) -> DirReader<B> {
        DirReader {
            fd: -1,
            buf,
            len: 0,
            at: 0,
        }
    }

    /// Starts over at the first entry of `fd`.
    pub fn rewind(&mut self, fd: crate::core::Fd) {
        self.fd = fd;
        self.len = 0;
        self.at = 0;
        // SAFETY: lseek on a directory fd we own.
        unsafe { libc::lseek(fd, 0, libc::SEEK_SET) };
    }

    /// The next entry name other than `.` and `..`.
    pub fn next_name(&mut self) -> Option<&[u8]> {
        let (_, start, len) = self.next_entry()?;
        Some(&self.buf.as_ref()[start..start + len])
    }

    /// The next subdirectory (by the entry's type, which cgroupfs gives).
    pub fn next_dir(&mut self) -> Option<&[u8]> {
        loop {
            let (kind, start, len) = self.next_entry()?;
            if kind == libc::DT_DIR {
                return Some(&self.buf.as_ref()[start..start + len]);
            }
        }
    }

    /// The type, and where the name is in the buffer, of the next entry
    /// other than `.` and `..`.
    fn next_entry(&mut self) -> Option<(u8, usize, usize)> {
        loop {
            if self.at >= self.len {
                let buf = self.buf.as_mut();
                // SAFETY: buf is valid for its length; fd is a directory.
                let n = unsafe {
                    libc::syscall(libc::SYS_getdents64, self.fd, buf.as_mut_ptr(), buf.len())
                };
                if n <= 0 {
                    return None;
                }
                self.len = n as usize;
                self.at = 0;
            }
            // linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
            let entry = &self.buf.as_ref()[self.at..self.len];
            if entry.len() < 20 {
                self.at = self.len;
                continue;
            }
            let reclen = u16::from_ne_bytes([entry[16], entry[17]]) as usize;
            if reclen < 20 || reclen > entry.len() {
                self.at = self.len;
                continue;
            }
            let kind = entry[18];
            let raw = &entry[19..reclen];
            let name_len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            let start = self.at + 19;
            self.at += reclen;
            if name_len == 0 || &raw[..name_len] == b"." || &raw[..name_len] == b".." {
                continue;
            }
            return Some((kind, start, name_len));
        }
    }
}

/// Reads `dir/file` relative to the directory `at` into `buf`: bytes
/// read, or errno. Non-blocking, so that a FIFO where a file should be
/// cannot stall nitro.
pub fn read_at(at: crate::core::Fd, dir: &[u8], file: &[u8], buf: &mut [u8]) -> Result<usize, i32> {
    let mut path = [0u8; 256];
    let path = join_path(&mut path, dir, file).ok_or(libc::ENAMETOOLONG)?;
    // SAFETY: path is a valid C string.
    let fd = unsafe {
        libc::openat(
            at,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NONBLOCK | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: buf is valid for its length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    let read_errno = errno();
    close(fd);
    usize::try_from(n).map_err(|_| read_errno)
}

/// How long a line may take to reach stderr before it is given up.
const STDERR_PATIENCE_MS: u64 = 100;
/// Lines not written because stderr was full, told with the next line
/// that gets through.
static LOST_LINES: AtomicUsize = AtomicUsize::new(0);

/// Whether `fd` takes a write now: a pipe nobody reads or a stopped
/// terminal does not. An error means "try": the write then fails at once.
pub fn has_room(fd: i32) -> bool {
    let mut fd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: fd is one valid pollfd; a zero timeout never blocks.
    unsafe { libc::poll(&mut fd, 1, 0) != 0 }
}

/// Writes all of `bytes` to `fd`, going on after a signal until `stop`
/// says to give up (EINTR then); the errno of a failed write otherwise.
pub fn write_all(fd: i32, bytes: &[u8], stop: &dyn Fn() -> bool) -> Result<(), i32> {
    let mut rest = bytes;
    while !rest.is_empty() {
        if stop() {
            return Err(libc::EINTR);
        }
        // SAFETY: rest is a valid readable slice.
        let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            return Err(if n < 0 { errno() } else { libc::EIO });
        }
        rest = &rest[n as usize..];
    }
    Ok(())
}

/// Writes a whole message to nitro's stderr; false if some of it stayed
/// unwritten. nitro must not wait for stderr (poll is its one place to
/// block): `warn` writes only when `has_room` says so, and another writer
/// of the same pipe (a service shares nitro's stderr) can fill it in
/// between: the write is given up after `STDERR_PATIENCE_MS` then.
fn write_stderr(bytes: &[u8]) -> bool {
    signals::with_alarm(STDERR_PATIENCE_MS, |rang| write_all(2, bytes, rang).is_ok())
}

/// Formats one line `- nitro: …` into a stack buffer and writes it to
/// stderr in one write, without allocating; false if it did not get
/// through whole.
fn write_line(message: core::fmt::Arguments) -> bool {
    struct Line {
        buf: [u8; 512],
        len: usize,
    }
    impl core::fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let room = self.buf.len() - 1 - self.len;
            let n = s.len().min(room);
            self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut line = Line {
        buf: [0; 512],
        len: 0,
    };
    let _ = core::fmt::write(&mut line, format_args!("- nitro: {}", message));
    line.buf[line.len] = b'\n';
    write_stderr(&line.buf[..=line.len])
}

/// Tells one line on stderr, never waiting for a full one: a line that
/// cannot be written now is counted, and the count told first once
/// stderr takes lines again.
pub fn warn(message: core::fmt::Arguments) {
    if !has_room(2) {
        LOST_LINES.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let lost = LOST_LINES.swap(0, Ordering::Relaxed);
    if lost > 0 && !write_line(format_args!("{} lines lost: stderr was full", lost)) {
        LOST_LINES.fetch_add(lost + 1, Ordering::Relaxed);
        return;
    }
    if !write_line(message) {
        LOST_LINES.fetch_add(1, Ordering::Relaxed);
    }
}
