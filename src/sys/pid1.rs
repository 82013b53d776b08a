//! Duties of pid 1 (SPEC section 8): mounts, the console, Ctrl-Alt-Delete,
//! and the end of the system: killing every process, `SYS/final`,
//! remounting read-only, reboot or power off (which `halt -f` asks for
//! too).

use std::time::Duration;

use crate::core::{Millis, Script, Spawn};

use super::signals::SignalPipe;
use super::spawn::Spawner;
use super::{now_ms, warn};

/// Default wait between the final SIGTERM to all processes and SIGKILL.
pub const KILL_ALL_TIMEOUT_MS: Millis = 7000;

/// Flushes every file system and asks the kernel to reboot, halt or
/// power off (`command`, an `RB_*`); returns only if it refused, with why.
pub fn sync_and_reboot(command: libc::c_int) -> std::io::Error {
    super::process::sync();
    // SAFETY: reboot takes only a command number.
    unsafe { libc::reboot(command) };
    std::io::Error::last_os_error()
}

/// Makes sure fds 0, 1 and 2 are open (started from /etc/ttys, say), so
/// that files nitro opens never land on them: `/dev/null`, or a drained
/// pipe, takes the lowest free descriptor, which is the missing one.
pub fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD only queries the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
            let _ = super::null_fd(false);
        }
    }
}

/// Whether nitro is the real pid 1 of a machine: the kernel lets it turn
/// Ctrl-Alt-Delete into SIGINT. In a pid namespace (a container) it refuses.
pub fn take_ctrl_alt_del() -> bool {
    // SAFETY: reboot with CAD_OFF only changes how Ctrl-Alt-Delete is delivered.
    unsafe { libc::reboot(libc::RB_DISABLE_CAD) == 0 }
}

pub(super) fn is_mount_point(path: &std::ffi::CStr, parent: &std::ffi::CStr) -> bool {
    // SAFETY: zeroed stat buffers are valid; paths are valid C strings.
    unsafe {
        let mut a: libc::stat = std::mem::zeroed();
        let mut b: libc::stat = std::mem::zeroed();
        if libc::stat(path.as_ptr(), &mut a) < 0 || libc::stat(parent.as_ptr(), &mut b) < 0 {
            return false;
        }
        a.st_dev != b.st_dev
    }
}

/// Set-up of any pid 1: umask, `/dev` and `/run`, the console.
/// Failures are ignored: containers usually lack the privilege.
pub fn setup() {
    // SAFETY: the calls get valid C strings and flags; failures are harmless.
    unsafe {
        libc::umask(0o022);
        if libc::access(c"/dev/null".as_ptr(), libc::F_OK) != 0 && !is_mount_point(c"/dev", c"/") {
            libc::mount(
                c"dev".as_ptr(),
                c"/dev".as_ptr(),
                c"devtmpfs".as_ptr(),
                libc::MS_NOSUID,
                c"mode=0755".as_ptr().cast(),
            );
        }
        if !is_mount_point(c"/run", c"/") {
            libc::mount(
                c"run".as_ptr(),
                c"/run".as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"mode=0755".as_ptr().cast(),
            );
        }
    }
    own_console(true);
}

/// Takes `/dev/console` as fds 0, 1 and 2 and as controlling terminal (in
/// a session of nitro's own at startup), if it can be opened.
fn own_console(new_session: bool) {
    // SAFETY: valid C string and flags; the descriptors are nitro's own.
    unsafe {
        let console = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if console < 0 {
            return;
        }
        for fd in 0..3 {
            libc::dup2(console, fd);
        }
        if console > 2 {
            libc::close(console);
        }
        if new_session {
            libc::setsid();
        }
        libc::ioctl(0, libc::TIOCSCTTY, 1);
    }
}

/// The shutdown begins: nitro takes the console back from the SYS scripts
/// that took it, and the real pid 1 gives Ctrl-Alt-Delete back to the
/// kernel, so that pressing it again reboots at once a shutdown that
/// hangs (as the C nitro does).
pub fn shutdown_begins(real_pid1: bool) {
    own_console(false);
    if real_pid1 {
        // SAFETY: reboot with CAD_ON only changes how Ctrl-Alt-Delete is delivered.
        unsafe { libc::reboot(libc::RB_ENABLE_CAD) };
    }
}

/// Reaps children for up to `ms` (a huge `ms`, from `SYS/timeout-kill`,
/// means for ever, never wrapping around to no wait at all): until the
/// child `pid` is reaped, its wait status, or, for `pid` -1, until no
/// child is left (0). `None` when the time ran out first.
fn reap_until(
    signals: &SignalPipe,
    pid: libc::pid_t,
    ms: Millis,
    mut requests: Option<Requests>,
) -> Option<i32> {
    let deadline = now_ms().saturating_add(ms);
    loop {
        let mut wstatus = 0;
        // SAFETY: waitpid writes one int.
        let reaped = unsafe { libc::waitpid(-1, &mut wstatus, libc::WNOHANG) };
        if reaped > 0 {
            if reaped == pid {
                return Some(wstatus);
            }
            continue;
        }
        if reaped < 0 {
            // No child is left.
            return (pid == -1).then_some(0);
        }
        let now = now_ms();
        if now >= deadline {
            return None;
        }
        let control = requests.as_ref().map_or(-1, |(fd, _)| *fd);
        let mut pfds = [signals.read_fd, control].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: pfds are valid pollfds (a negative fd is skipped).
        unsafe { libc::poll(pfds.as_mut_ptr(), 2, (deadline - now).min(1000) as i32) };
        signals.drain();
        if let Some((_, serve)) = requests.as_mut().filter(|_| pfds[1].revents != 0) {
            serve();
        }
    }
}

/// The control socket, and what answers the requests waiting on it.
pub type Requests<'a> = (libc::c_int, &'a mut dyn FnMut());

/// Waits up to `ms` until no child is left, reaping as they go and
/// answering requests.
fn wait_children(signals: &SignalPipe, ms: Millis, requests: &mut Requests) -> bool {
    reap_until(signals, -1, ms, Some((requests.0, &mut *requests.1))).is_some()
}

/// SIGTERM and SIGCONT to every process, SIGKILL after `grace_ms` (sent
/// from a forked child: kill(-1) can block on a process stuck in the
/// kernel; by nitro itself when it cannot fork), then up to
/// `KILL_ALL_TIMEOUT_MS` more, whatever `grace_ms` is: the dying need
/// that time before `/` is remounted read-only. Requests are answered
/// meanwhile, as the C nitro does in its loop.
pub fn kill_all(signals: &SignalPipe, grace_ms: Millis, mut requests: Requests) {
    warn(format_args!("sending SIGTERM to all processes"));
    // SAFETY: signalling every process is what pid 1 does at the end.
    unsafe {
        libc::kill(-1, libc::SIGTERM);
        libc::kill(-1, libc::SIGCONT);
    }
    if wait_children(signals, grace_ms, &mut requests) {
        return;
    }
    warn(format_args!("sending SIGKILL to all processes"));
    // SAFETY: the child only calls kill and _exit.
    unsafe {
        match libc::fork() {
            0 => {
                libc::kill(-1, libc::SIGKILL);
                libc::_exit(0);
            }
            -1 => {
                libc::kill(-1, libc::SIGKILL);
            }
            _ => {}
        }
    }
    if !wait_children(signals, KILL_ALL_TIMEOUT_MS, &mut requests) {
        warn(format_args!("some processes did not die"));
    }
}

/// Runs `SYS/final shutdown|reboot` if it exists, killing it after 30 s.
pub fn run_final(spawner: &Spawner, signals: &SignalPipe, reboot: bool) {
    if !std::path::Path::new("SYS/final").exists() {
        return;
    }
    let end: &[u8] = if reboot { b"reboot" } else { b"shutdown" };
    let args = [end];
    // From the top of the service directory, as the C nitro runs it.
    let spawn = Spawn {
        dir: b".",
        ..Spawn::sys(Script::Final, &args)
    };
    match spawner.spawn(&spawn, None) {
        // What it leaves in the background does not hold the end.
        Ok(pid) => match reap_until(signals, pid, crate::core::SYS_TIMEOUT_MS, None) {
            Some(wstatus) => warn(format_args!(
                "SYS/final finished with wait status {}",
                wstatus
            )),
            None => {
                warn(format_args!("SYS/final takes too long, killing it"));
                // SAFETY: pid is our child, not reaped yet.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                reap_until(signals, pid, 1000, None);
            }
        },
        Err(error) => warn(format_args!("SYS/final: {}", error)),
    }
}

/// The very end on a real machine: read-only root, sync, reboot or power off.
pub fn halt_machine(reboot: bool) -> ! {
    // SAFETY: remount takes valid arguments; this is the end.
    unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        );
    }
    sync_and_reboot(if reboot {
        libc::RB_AUTOBOOT
    } else {
        libc::RB_POWER_OFF
    });
    // Only reached if the kernel refused: nothing else is left to do.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
