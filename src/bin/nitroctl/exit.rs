//! How nitroctl ends: its exit statuses, the signals that interrupt it, the
//! sockets it must remove whatever way it leaves, and output that cannot
//! panic on a closed pipe nor hold up an interruption.

use std::path::PathBuf;
use std::sync::Mutex;

use nitro::sys::{self, signals};

pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_TIMEOUT: i32 = 3;
pub const EXIT_UNREACHABLE: i32 = 4;
pub const EXIT_OTHER: i32 = 111;

/// Socket files we bound, removed by `leave` whatever the way out.
static BOUND: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// SIGINT, SIGTERM and SIGHUP interrupt whatever nitroctl does; the main
/// flow then leaves through `leave`, which removes our sockets.
pub fn catch_signals() {
    signals::catch_interruptions(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP]);
}

/// Leaves with 128 + N if signal N arrived.
pub fn leave_if_interrupted() {
    if let Some(signal) = signals::interruption() {
        leave(128 + signal)
    }
}

/// Remembers a socket file to remove on the way out.
pub fn bound(path: PathBuf) {
    BOUND.lock().unwrap_or_else(|e| e.into_inner()).push(path);
}

/// The only way out: removes every socket we bound.
pub fn leave(status: i32) -> ! {
    for path in BOUND.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = std::fs::remove_file(path);
    }
    std::process::exit(status)
}

/// Prints `nitroctl: message` on stderr and leaves with `status`.
pub fn fail(status: i32, message: std::fmt::Arguments) -> ! {
    tell(&format!("nitroctl: {message}"));
    leave(status)
}

/// Writes `text` to `fd`. A signal that interrupts us ends a write that
/// would wait for a reader who reads nothing (`nitroctl events | stuck`):
/// after it, only what goes out at once is written.
fn put(fd: i32, text: &str) -> Result<(), i32> {
    sys::write_all(fd, text.as_bytes(), &|| {
        signals::interruption().is_some() && !sys::has_room(fd)
    })
}

/// One line on stdout. A reader that went away (`nitroctl events | head`),
/// or no stdout at all, ends us as SIGPIPE would (128 + 13), but through
/// `leave`, so our sockets are removed; Rust ignores SIGPIPE, and
/// `println!` would panic.
pub fn say(line: &str) {
    match put(1, &format!("{line}\n")) {
        Ok(()) | Err(libc::EINTR) => {}
        Err(libc::EPIPE | libc::EBADF) => leave(128 + libc::SIGPIPE),
        Err(errno) => fail(EXIT_OTHER, format_args!("stdout: {}", sys::Errno(errno))),
    }
}

/// One line on stderr; there is nowhere to tell that it failed.
pub fn tell(line: &str) {
    let _ = put(2, &format!("{line}\n"));
}
