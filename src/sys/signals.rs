//! Signals through the loop: handlers only write the signal number into a
//! self-pipe; the loop reads it back when epoll says it can.

use std::sync::atomic::{AtomicI32, Ordering};

static SELF_PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

/// Signals nitro handles.
pub const HANDLED: [i32; 4] = [libc::SIGCHLD, libc::SIGHUP, libc::SIGTERM, libc::SIGINT];

extern "C" fn on_signal(signal: libc::c_int) {
    // SAFETY: errno is saved and restored around write, which is
    // async-signal-safe; the fd is a non-blocking pipe, so a full pipe just
    // drops the byte (the loop is already awake then).
    unsafe {
        let errno = *libc::__errno_location();
        let byte = signal as u8;
        libc::write(
            SELF_PIPE_WRITE.load(Ordering::Relaxed),
            (&byte as *const u8).cast(),
            1,
        );
        *libc::__errno_location() = errno;
    }
}

/// Signals that arrived since the last `drain`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Arrived {
    pub child: bool,
    pub hangup: bool,
    pub terminate: bool,
    pub interrupt: bool,
}

/// The read end of the self-pipe, with handlers installed.
pub struct SignalPipe {
    pub read_fd: i32,
}

impl SignalPipe {
    pub fn install() -> std::io::Result<SignalPipe> {
        let mut fds = [0i32; 2];
        // SAFETY: fds is a valid array of two ints.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        SELF_PIPE_WRITE.store(fds[1], Ordering::Relaxed);
        for signal in HANDLED {
            // SAFETY: a zeroed sigaction is valid; the handler is an
            // extern "C" fn that only does async-signal-safe work.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as usize;
                action.sa_flags = libc::SA_RESTART | libc::SA_NOCLDSTOP;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut());
            }
        }
        // SAFETY: ignoring SIGPIPE has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        Ok(SignalPipe { read_fd: fds[0] })
    }

    /// Reads every pending signal byte.
    pub fn drain(&self) -> Arrived {
        let mut arrived = Arrived::default();
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: buf is a valid writable buffer.
            let n = unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                break;
            }
            for &signal in &buf[..n as usize] {
                match signal as i32 {
                    libc::SIGCHLD => arrived.child = true,
                    libc::SIGHUP => arrived.hangup = true,
                    libc::SIGTERM => arrived.terminate = true,
                    libc::SIGINT => arrived.interrupt = true,
                    _ => {}
                }
            }
        }
        arrived
    }
}

/// Blocks every signal, returning the previous mask (around fork, so no
/// handler runs in the child before it resets them).
pub fn block_all() -> libc::sigset_t {
    // SAFETY: the sets are valid, zero-initialised sigset_t values.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, &mut old);
        old
    }
}

/// Restores a mask saved by `block_all`.
pub fn restore(mask: &libc::sigset_t) {
    // SAFETY: mask is a valid sigset_t.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}
