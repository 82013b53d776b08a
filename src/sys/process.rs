//! nitro's own process: who it is, its limits, reaping its children,
//! and the execs that end it (`SYS/fatal`, `SYS/reincarnate`, a reboot
//! that starts nitro again).

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::signals;
use crate::core::Pid;

pub fn pid() -> Pid {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() }
}

pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// Orphans of our services are reparented to us and reaped (when nitro
/// is not pid 1).
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// The descriptor limit (RLIMIT_NOFILE, soft).
pub fn fd_limit() -> i32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: limit is a valid rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur.min(i32::MAX as u64) as i32
}

/// Raises the soft limit of descriptors to `wanted` if it is lower (as far
/// as the hard limit allows).
pub fn want_fds(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: limit is a valid rlimit, read and then written back.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < wanted {
            limit.rlim_cur = wanted.min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// A child that has ended, with its wait status; `None` when no child
/// has ended (yet).
pub fn reap() -> Option<(Pid, i32)> {
    let mut status = 0;
    // SAFETY: status is a valid int.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some((pid, status))
}

/// Flushes every file system.
pub fn sync() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
}

/// Execs `path` (relative to the service directory) with no argument if
/// it can; returns the errno otherwise (ENOENT: there is none). The
/// program starts as a service's would: nothing ignored (SIGPIPE ignored
/// would pass to it and to everything it starts), no signal blocked; its
/// handlers an exec resets anyway, and they stay for nitro should the exec
/// fail.
pub fn exec_if_present(path: &CStr) -> i32 {
    let ignored = signals::ignored();
    signals::set_all(ignored, libc::SIG_DFL);
    signals::unblock_all();
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: argv is a NUL-terminated array of valid C strings.
    unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
    let errno = super::errno();
    signals::set_all(ignored, libc::SIG_IGN);
    errno
}

/// Execs nitro again on the same directory (a reboot when not the real
/// pid 1); returns the errno if it cannot.
pub fn reexec(exe: &Path, dir: &Path) -> i32 {
    let exe_c = CString::new(exe.as_os_str().as_bytes()).unwrap_or_default();
    let dir_c = CString::new(dir.as_os_str().as_bytes()).unwrap_or_default();
    let argv = [exe_c.as_ptr(), dir_c.as_ptr(), std::ptr::null()];
    // SAFETY: argv is a NUL-terminated array of valid C strings; the
    // environment is inherited unchanged.
    unsafe { libc::execv(exe_c.as_ptr(), argv.as_ptr()) };
    super::errno()
}

unsafe extern "C" {
    static __executable_start: u8;
    static etext: u8;
}

/// Startup touched code the loop never runs again: unmap it (it is read
/// back from the page cache if ever needed) and stop the kernel from
/// mapping neighbouring pages on each fault, so that nitro's resident
/// set is the code it actually runs.
pub fn shed_startup_pages() {
    // SAFETY: the linker defines both symbols around the text segment;
    // MADV_RANDOM and MADV_DONTNEED on a private file mapping only change
    // which pages are mapped, never their contents.
    unsafe {
        let start = (&raw const __executable_start as usize) & !4095;
        let end = &raw const etext as usize;
        let len = end - start;
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_RANDOM);
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exec that fails (no `SYS/reincarnate`, the usual case) leaves
    /// nitro as it was: its handlers and what it ignores. In a forked
    /// child, whose handlers are its own.
    #[test]
    fn a_failed_exec_leaves_nitros_signals_as_they_were() {
        // SAFETY: only async-signal-safe calls.
        unsafe {
            crate::sys::in_child(|| {
                if signals::SignalPipe::install().is_err() {
                    return 2;
                }
                let before = (signals::not_default(), signals::ignored());
                let errno = exec_if_present(c"/nonexistent/SYS/reincarnate");
                let after = (signals::not_default(), signals::ignored());
                let pipe = 1u64 << (libc::SIGPIPE - 1);
                if errno != libc::ENOENT {
                    3
                } else if before != after || after.1 & pipe == 0 {
                    1
                } else {
                    0
                }
            })
        }
    }
}
