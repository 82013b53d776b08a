//! Signals through a self-pipe: handlers only record the signal in a flag
//! and write a byte into the pipe, so a wait on the read end wakes up
//! whatever moment it arrives. nitro's loop empties the pipe and takes the
//! flags when epoll says it can: the flags, not the bytes, say what came,
//! since a full pipe drops bytes (a flood of SIGHUP while nitro is busy
//! must not take a SIGCHLD with it). nitroctl only needs to know that it
//! was interrupted, and by which signal.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static SELF_PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// Set once nitro handles SIGALRM (before, it would end the process).
static ALARM_HANDLED: AtomicBool = AtomicBool::new(false);
/// Set by the handler when the alarm armed last went off.
static ALARM_RANG: AtomicBool = AtomicBool::new(false);

/// Signals nitro handles.
pub const HANDLED: [i32; 4] = [libc::SIGCHLD, libc::SIGHUP, libc::SIGTERM, libc::SIGINT];
/// Set by the handler of `HANDLED[k]`, taken by `drain`.
static CAME: [AtomicBool; HANDLED.len()] = [const { AtomicBool::new(false) }; HANDLED.len()];

/// Writes the signal number into the self-pipe, from a handler.
fn wake(signal: libc::c_int) {
    // SAFETY: errno is saved and restored around write, which is
    // async-signal-safe; the fd is a non-blocking pipe, so a full pipe just
    // drops the byte (the reader is already awake then), and a missing one
    // (fd -1) fails harmlessly.
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

/// The flag of a handled signal.
fn came(signal: libc::c_int) -> Option<&'static AtomicBool> {
    HANDLED.iter().position(|&h| h == signal).map(|k| &CAME[k])
}

extern "C" fn on_signal(signal: libc::c_int) {
    if let Some(flag) = came(signal) {
        flag.store(true, Ordering::Relaxed);
    }
    wake(signal);
}

extern "C" fn on_alarm(_: libc::c_int) {
    ALARM_RANG.store(true, Ordering::Relaxed);
}

/// Sets the real-time interval timer to go off once, `ms` from now (0:
/// never).
fn set_alarm(ms: u64) {
    let timer = libc::itimerval {
        it_interval: libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        },
        it_value: libc::timeval {
            tv_sec: (ms / 1000) as _,
            tv_usec: ((ms % 1000) * 1000) as _,
        },
    };
    // SAFETY: timer is a valid itimerval; the old value is not wanted.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &timer, std::ptr::null_mut()) };
}

/// Runs `write` with SIGALRM due `ms` from now, so that a system call in
/// it that blocks past then returns EINTR (the handler has no
/// SA_RESTART). `write` gets a function telling whether the alarm went
/// off. Without the handler (before `SignalPipe::install`, and in
/// nitroctl) nothing is armed and nothing ever goes off.
pub fn with_alarm<T>(ms: u64, write: impl FnOnce(&dyn Fn() -> bool) -> T) -> T {
    if !ALARM_HANDLED.load(Ordering::Relaxed) {
        return write(&|| false);
    }
    ALARM_RANG.store(false, Ordering::Relaxed);
    set_alarm(ms);
    let result = write(&|| ALARM_RANG.load(Ordering::Relaxed));
    set_alarm(0);
    result
}

/// Makes the self-pipe (non-blocking, close-on-exec), whose write end the
/// handlers use; returns its read end.
fn self_pipe() -> std::io::Result<i32> {
    let mut fds = [-1i32; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    SELF_PIPE_WRITE.store(fds[1], Ordering::Relaxed);
    Ok(fds[0])
}

/// Installs `handler` for `signal` with `flags`, blocking nothing more
/// while it runs.
fn set_handler(signal: libc::c_int, handler: extern "C" fn(libc::c_int), flags: libc::c_int) {
    // SAFETY: a zeroed sigaction is valid; the handlers given here are
    // extern "C" fns that only do async-signal-safe work.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = flags;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut());
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
        let read_fd = self_pipe()?;
        for signal in HANDLED {
            set_handler(signal, on_signal, libc::SA_RESTART | libc::SA_NOCLDSTOP);
        }
        set_handler(libc::SIGALRM, on_alarm, 0);
        ALARM_HANDLED.store(true, Ordering::Relaxed);
        // SAFETY: ignoring SIGPIPE has no preconditions.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        Ok(SignalPipe { read_fd })
    }

    /// Empties the pipe, then takes what came: a signal arriving in
    /// between leaves its byte for the next wake-up, which finds nothing
    /// new, never the other way round.
    pub fn drain(&self) -> Arrived {
        let mut buf = [0u8; 64];
        // SAFETY: buf is a valid writable buffer.
        while unsafe { libc::read(self.read_fd, buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
        let take = |signal| came(signal).is_some_and(|flag| flag.swap(false, Ordering::Relaxed));
        Arrived {
            child: take(libc::SIGCHLD),
            hangup: take(libc::SIGHUP),
            terminate: take(libc::SIGTERM),
            interrupt: take(libc::SIGINT),
        }
    }
}

/// The signal that interrupted nitroctl, 0 if none.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);
/// The read end of nitroctl's self-pipe, -1 if it could not be made.
static INTERRUPT_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_interrupt(signal: libc::c_int) {
    INTERRUPTED.store(signal, Ordering::Relaxed);
    wake(signal);
}

/// nitroctl: `signals` interrupt whatever it does. The handler only
/// records the signal and wakes a poll on `interrupt_fd`. No SA_RESTART:
/// a blocking send or receive returns EINTR instead of carrying on.
pub fn catch_interruptions(signals: &[libc::c_int]) {
    if let Ok(read_fd) = self_pipe() {
        INTERRUPT_FD.store(read_fd, Ordering::Relaxed);
    }
    for &signal in signals {
        set_handler(signal, on_interrupt, 0);
    }
}

/// The read end of nitroctl's self-pipe, for poll: readable for good once
/// a signal arrived (-1, which poll skips, if the pipe could not be made).
pub fn interrupt_fd() -> i32 {
    INTERRUPT_FD.load(Ordering::Relaxed)
}

/// The signal that interrupted nitroctl, if one did.
pub fn interruption() -> Option<i32> {
    match INTERRUPTED.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// `struct sigaction` as the kernel's rt_sigaction takes it (x86_64).
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: libc::sighandler_t,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

/// The disposition of `signal`, `None` if it cannot be read.
fn disposition(signal: i32) -> Option<libc::sighandler_t> {
    let mut old = KernelSigaction::default();
    // SAFETY: only reads the disposition into `old`.
    let read = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            std::ptr::null::<KernelSigaction>(),
            &mut old as *mut KernelSigaction,
            8,
        )
    };
    (read == 0).then_some(old.handler)
}

/// The signals (bit `n - 1` for signal `n`) whose disposition `is`.
fn signals_whose(is: impl Fn(Option<libc::sighandler_t>) -> bool) -> u64 {
    (1..=64)
        .filter(|&signal| is(disposition(signal)))
        .fold(0, |mask, signal| mask | 1u64 << (signal - 1))
}

/// The signals whose disposition is not the default: handled or ignored,
/// by nitro or since before it.
pub fn not_default() -> u64 {
    signals_whose(|handler| handler != Some(libc::SIG_DFL))
}

/// The signals ignored, by nitro (SIGPIPE) or since before it: an exec
/// keeps them ignored.
pub fn ignored() -> u64 {
    signals_whose(|handler| handler == Some(libc::SIG_IGN))
}

/// Gives the signals of `mask` the disposition `handler`: SIG_DFL before
/// an exec, so that nothing nitro ignores stays ignored in the program,
/// SIG_IGN again after an exec that failed. Async-signal-safe, for the
/// child of a spawn. The raw system
/// call: the C library's sigaction refuses the real-time signals it keeps
/// for itself (32-34 in musl, 32-33 in glibc).
pub fn set_all(mask: u64, handler: libc::sighandler_t) {
    let action = KernelSigaction {
        handler,
        ..KernelSigaction::default()
    };
    for signal in (1..=64).filter(|n| mask & (1u64 << (n - 1)) != 0) {
        // SAFETY: sets a valid disposition, reads nothing back.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                &action as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8,
            )
        };
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

/// Blocks no signal (async-signal-safe).
pub fn unblock_all() {
    // SAFETY: the set is a valid, emptied sigset_t.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
}

/// Restores a mask saved by `block_all`.
pub fn restore(mask: &libc::sigset_t) {
    // SAFETY: mask is a valid sigset_t.
    unsafe { libc::sigprocmask(libc::SIG_SETMASK, mask, std::ptr::null_mut()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe full of SIGHUP bytes (nitro busy, a flood of them) drops
    /// the byte of a SIGCHLD that comes next: the child's exit must be
    /// known all the same. In a forked child, whose handlers are its own.
    #[test]
    fn a_full_self_pipe_loses_no_signal() {
        // SAFETY: only async-signal-safe calls (pipe2, sigaction, kill,
        // read).
        unsafe {
            crate::sys::in_child(|| {
                let Ok(pipe) = SignalPipe::install() else {
                    return 2;
                };
                let size = libc::fcntl(SELF_PIPE_WRITE.load(Ordering::Relaxed), libc::F_GETPIPE_SZ);
                for _ in 0..size + 1 {
                    libc::kill(libc::getpid(), libc::SIGHUP);
                }
                libc::kill(libc::getpid(), libc::SIGCHLD);
                let arrived = pipe.drain();
                let again = pipe.drain();
                if !arrived.child || !arrived.hangup {
                    1
                } else if again.child || again.hangup {
                    3
                } else {
                    0
                }
            })
        }
    }
}
