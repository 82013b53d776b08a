//! How nitroctl ends: its exit statuses, the signals that interrupt it, the
//! sockets it must remove whatever way it leaves, and output that cannot
//! panic on a closed pipe.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, Ordering};

pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_TIMEOUT: i32 = 3;
pub const EXIT_UNREACHABLE: i32 = 4;
pub const EXIT_OTHER: i32 = 111;

/// The signal that interrupted us, 0 if none.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);
/// Self-pipe: the handler writes here, so a poll wakes up whatever moment
/// the signal arrives.
static SIGNAL_PIPE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];
/// Socket files we bound, removed by `leave` whatever the way out.
static BOUND: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

extern "C" fn on_signal(signal: libc::c_int) {
    INTERRUPTED.store(signal, Ordering::Relaxed);
    let byte = 0u8;
    // SAFETY: write is async-signal-safe; the pipe is non-blocking, and a
    // failed write (full pipe, or no pipe: fd -1) is harmless.
    unsafe {
        libc::write(
            SIGNAL_PIPE[1].load(Ordering::Relaxed),
            (&byte as *const u8).cast(),
            1,
        )
    };
}

/// SIGINT, SIGTERM and SIGHUP interrupt whatever nitroctl does; the
/// handler only records the signal and wakes the poll, and the main flow
/// leaves through `leave`, which removes our sockets. No SA_RESTART: a
/// blocking send or receive returns EINTR instead of carrying on.
pub fn catch_signals() {
    let mut fds = [-1i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == 0 {
        SIGNAL_PIPE[0].store(fds[0], Ordering::Relaxed);
        SIGNAL_PIPE[1].store(fds[1], Ordering::Relaxed);
    }
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: a zeroed sigaction is valid; the handler is
        // async-signal-safe (an atomic store and a write).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The read end of the self-pipe, for poll (-1, which poll ignores, if the
/// pipe could not be made).
pub fn signal_fd() -> i32 {
    SIGNAL_PIPE[0].load(Ordering::Relaxed)
}

/// The signal that interrupted us, if one did.
pub fn interruption() -> Option<i32> {
    match INTERRUPTED.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// Leaves with 128 + N if signal N arrived.
pub fn leave_if_interrupted() {
    if let Some(signal) = interruption() {
        leave(128 + signal)
    }
}

/// Remembers a socket file to remove on the way out.
pub fn bound(path: PathBuf) {
    BOUND.lock().unwrap_or_else(|e| e.into_inner()).push(path);
}

/// The only way out: flushes stdout and removes every socket we bound.
pub fn leave(status: i32) -> ! {
    let _ = std::io::stdout().flush();
    for path in BOUND.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = std::fs::remove_file(path);
    }
    std::process::exit(status)
}

/// Prints `nitroctl: message` on stderr and leaves with `status`.
pub fn fail(status: i32, message: std::fmt::Arguments) -> ! {
    eprintln!("nitroctl: {message}");
    leave(status)
}

/// One line on stdout. A reader that went away (`nitroctl events | head`)
/// ends us as SIGPIPE would (128 + 13), but through `leave`, so our
/// sockets are removed; Rust ignores SIGPIPE, and `println!` would panic.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}") {
        drop(out);
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            leave(128 + libc::SIGPIPE)
        }
        fail(EXIT_OTHER, format_args!("stdout: {e}"))
    }
}
