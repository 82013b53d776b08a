//! nitro: the supervisor. Wiring only: arguments, set-up, and the loop
//! poll → signals, children, requests, readiness, deadlines → core.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nitro::core::{Config, DEFAULT_MAX_SERVICES, Phase, Supervisor};
use nitro::proto::DATAGRAM_MAX;
use nitro::sys::control::{ControlSocket, Sender, SetupError};
use nitro::sys::os::RealOs;
use nitro::sys::signals::SignalPipe;
use nitro::sys::{self, now_ms, sockpath};

/// Status when nitro cannot start.
const EXIT_FATAL: i32 = 111;
/// Requests handled per wake-up, so a flood cannot starve the rest.
const REQUESTS_PER_WAKEUP: usize = 64;

fn fatal(message: std::fmt::Arguments) -> ! {
    sys::warn(message);
    std::process::exit(EXIT_FATAL)
}

/// The service directory: the argument, else `/etc/nitro` for root and
/// `${XDG_CONFIG_HOME:-$HOME/.config}/nitro` for other users.
fn service_dir() -> PathBuf {
    if let Some(dir) = std::env::args_os().nth(1) {
        return PathBuf::from(dir);
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        return PathBuf::from("/etc/nitro");
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    match config {
        Some(config) => config.join("nitro"),
        None => fatal(format_args!("no service directory: give one, or set HOME")),
    }
}

fn max_services() -> usize {
    match std::env::var("NITRO_MAX_SERVICES") {
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => fatal(format_args!("bad NITRO_MAX_SERVICES: {:?}", v)),
        },
        Err(_) => DEFAULT_MAX_SERVICES,
    }
}

fn fd_limit() -> i32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: limit is a valid rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    limit.rlim_cur.min(i32::MAX as u64) as i32
}

/// Re-executes nitro for a reboot when it is not the real pid 1.
fn reexec(exe: &Path, dir: &Path) -> ! {
    let exe_c = CString::new(exe.as_os_str().as_bytes()).unwrap_or_default();
    let dir_c = CString::new(dir.as_os_str().as_bytes()).unwrap_or_default();
    let argv = [exe_c.as_ptr(), dir_c.as_ptr(), std::ptr::null()];
    // SAFETY: argv is a NUL-terminated array of valid C strings; the
    // environment is inherited unchanged.
    unsafe { libc::execv(exe_c.as_ptr(), argv.as_ptr()) };
    fatal(format_args!(
        "cannot re-exec {}: {}",
        exe.display(),
        std::io::Error::last_os_error()
    ))
}

fn main() {
    let dir = service_dir();
    if let Err(e) = std::env::set_current_dir(&dir) {
        fatal(format_args!(
            "cannot use service directory {}: {}",
            dir.display(),
            e
        ));
    }
    // Resolved now, so that a reboot can re-exec with absolute paths.
    let abs_dir = std::env::current_dir().unwrap_or_else(|_| dir.clone());
    let exe = std::fs::read_link("/proc/self/exe")
        .unwrap_or_else(|_| PathBuf::from(OsString::from_vec(b"/proc/self/exe".to_vec())));
    // SAFETY: getpid has no preconditions.
    let nitro_pid = unsafe { libc::getpid() };
    if nitro_pid != 1 {
        // Orphans of our services are reparented to us and reaped.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }

    let signals = SignalPipe::install().unwrap_or_else(|e| fatal(format_args!("signals: {}", e)));
    let sock_path = sockpath::socket_path().unwrap_or_else(|e| fatal(format_args!("{}", e)));
    let control = match ControlSocket::bind(&sock_path) {
        Ok(control) => control,
        Err(SetupError::Taken) => fatal(format_args!(
            "{} is served by another nitro",
            sock_path.display()
        )),
        Err(SetupError::Other(message)) => fatal(format_args!("{}", message)),
    };
    let mut os = RealOs::new(&control.notify_dir).unwrap_or_else(|e| {
        control.remove();
        fatal(format_args!("cannot set up: {}", e))
    });
    let max = max_services();
    let mut sup = Supervisor::new(Config {
        max_services: max,
        nitro_pid,
        fd_limit: fd_limit(),
    });

    // Everything the loop needs is reserved here.
    let mut pollfds: Vec<libc::pollfd> = Vec::with_capacity(max + 2);
    let mut ready_slots: Vec<usize> = Vec::with_capacity(max);
    let mut datagram = [0u8; DATAGRAM_MAX];
    let mut reply = [0u8; DATAGRAM_MAX];
    let mut sender = Sender::default();

    sup.boot(&mut os, now_ms());

    loop {
        if sup.stopped() {
            break;
        }
        pollfds.clear();
        ready_slots.clear();
        for fd in [signals.read_fd, control.fd] {
            pollfds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for (slot, fd) in sup.ready_fds() {
            pollfds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            ready_slots.push(slot);
        }
        let timeout = match sup.next_deadline() {
            Some(deadline) => deadline.saturating_sub(now_ms()).min(i32::MAX as u64) as i32,
            None => -1,
        };
        // SAFETY: pollfds is a valid array of its length.
        let ready =
            unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timeout) };
        let now = now_ms();
        if ready > 0 {
            if pollfds[0].revents != 0 {
                let arrived = signals.drain();
                if arrived.child {
                    loop {
                        let mut status = 0;
                        // SAFETY: status is a valid int.
                        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                        if pid <= 0 {
                            break;
                        }
                        sup.on_exit(&mut os, pid, status, now);
                    }
                }
                if arrived.hangup {
                    sup.rescan(&mut os, now);
                }
                if arrived.terminate || arrived.interrupt {
                    sup.shutdown(&mut os, false, now);
                }
            }
            if pollfds[1].revents != 0 {
                for _ in 0..REQUESTS_PER_WAKEUP {
                    let Some(n) = control.recv(&mut datagram, &mut sender) else {
                        break;
                    };
                    if let Some(len) = sup.handle_request(&mut os, &datagram[..n], &mut reply, now)
                    {
                        control.reply(&sender, &reply[..len]);
                    }
                    let pending = sup.take_pending();
                    if pending.rescan {
                        sup.rescan(&mut os, now);
                    }
                    if let Some(reboot) = pending.shutdown {
                        sup.shutdown(&mut os, reboot, now);
                    }
                }
            }
            for (k, &slot) in ready_slots.iter().enumerate() {
                if pollfds[k + 2].revents != 0 {
                    sup.on_ready_fd(&mut os, slot, now);
                }
            }
        }
        sup.on_timers(&mut os, now);
    }

    control.remove();
    if sup.phase() == (Phase::Stopping { reboot: true }) {
        reexec(&exe, &abs_dir);
    }
    std::process::exit(0)
}
