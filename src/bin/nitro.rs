//! nitro: the supervisor. Wiring only: arguments, set-up, the loop
//! epoll → signals, children, requests, readiness, deadlines → core, and
//! the end of the system.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nitro::core::{Config, DEFAULT_MAX_SERVICES, Os, Supervisor};
use nitro::proto::DATAGRAM_MAX;
use nitro::sys::cgroup::Cgroups;
use nitro::sys::control::{ControlSocket, Sender, SetupError};
use nitro::sys::os::RealOs;
use nitro::sys::signals::SignalPipe;
use nitro::sys::{self, now_ms, pid1, sockpath};

#[global_allocator]
static ALLOCATOR: nitro::alloc_count::Counting = nitro::alloc_count::Counting;

/// Status when nitro cannot start.
const EXIT_FATAL: i32 = 111;
/// Requests handled per wake-up, so a flood cannot starve the rest.
const REQUESTS_PER_WAKEUP: usize = 64;
/// Descriptors reported per wake-up; the rest come with the next one.
const EVENTS_PER_WAKEUP: usize = 64;
/// Keys of the self-pipe, the control socket and the cgroup watch in the
/// poller; readiness pipes are keyed by the core's tokens, always below
/// these.
const SIGNALS_KEY: u64 = u64::MAX;
const CONTROL_KEY: u64 = u64::MAX - 1;
const CGROUP_KEY: u64 = u64::MAX - 2;

/// Execs `path` (relative to the service directory) if it exists.
fn exec_if_present(path: &std::ffi::CStr) {
    let argv = [path.as_ptr(), std::ptr::null()];
    // SAFETY: argv is a NUL-terminated array of valid C strings.
    unsafe { libc::execv(path.as_ptr(), argv.as_ptr()) };
}

/// Set once nitro works in its service directory, where `SYS/fatal` is.
static IN_SERVICE_DIR: AtomicBool = AtomicBool::new(false);

/// An unrecoverable startup error: `SYS/fatal` takes over, else exit 111.
fn fatal(message: std::fmt::Arguments) -> ! {
    sys::warn(message);
    if IN_SERVICE_DIR.load(Ordering::Relaxed) {
        exec_if_present(c"SYS/fatal");
    }
    std::process::exit(EXIT_FATAL)
}

/// The service directory: the argument (`S`/`single` mean the single-user
/// directory to the real pid 1), else `/etc/nitro` for root and
/// `${XDG_CONFIG_HOME:-$HOME/.config}/nitro` for other users.
fn service_dir(pid1: bool) -> PathBuf {
    if let Some(dir) = std::env::args_os().nth(1) {
        if pid1 && (dir == "S" || dir == "single") {
            return PathBuf::from("/etc/nitro.single");
        }
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

/// The most services `NITRO_MAX_SERVICES` may ask for: storage for all of
/// them is reserved at startup (about 150 bytes a slot, 10 MiB here), and
/// a value from the environment must never exhaust memory or kill pid 1.
const MAX_SERVICES_LIMIT: usize = 65536;

/// `NITRO_MAX_SERVICES`; a bad value is a warning, never the end of nitro.
fn max_services() -> usize {
    let Some(value) = std::env::var_os("NITRO_MAX_SERVICES") else {
        return DEFAULT_MAX_SERVICES;
    };
    let text = value.to_string_lossy();
    let (max, why) = match text.trim().parse::<usize>() {
        Ok(n) if n > MAX_SERVICES_LIMIT => (MAX_SERVICES_LIMIT, "too large"),
        Ok(n) if n > 0 => return n,
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => {
            (MAX_SERVICES_LIMIT, "too large")
        }
        _ => (DEFAULT_MAX_SERVICES, "not a positive number"),
    };
    sys::warn(format_args!(
        "NITRO_MAX_SERVICES={:?} is {}, using {}",
        text, why, max
    ));
    max
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

/// `SYS/timeout-kill`: milliseconds between the final SIGTERM and SIGKILL.
fn kill_all_timeout() -> u64 {
    match std::fs::read_to_string("SYS/timeout-kill") {
        Ok(text) => text.trim().parse().unwrap_or_else(|_| {
            sys::warn(format_args!(
                "bad SYS/timeout-kill, using {} ms",
                pid1::KILL_ALL_TIMEOUT_MS
            ));
            pid1::KILL_ALL_TIMEOUT_MS
        }),
        Err(_) => pid1::KILL_ALL_TIMEOUT_MS,
    }
}

/// Re-executes nitro (a reboot when not the real pid 1).
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
        sys::Errno(sys::errno())
    ))
}

unsafe extern "C" {
    static __executable_start: u8;
    static etext: u8;
}

/// Startup touched code the loop never runs again: unmap it (it is read
/// back from the page cache if ever needed) and stop the kernel from
/// mapping neighbouring pages on each fault, so that nitro's resident
/// set is the code it actually runs.
fn shed_startup_pages() {
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

fn main() {
    pid1::ensure_std_fds();
    // SAFETY: getpid has no preconditions.
    let nitro_pid = unsafe { libc::getpid() };
    let is_pid1 = nitro_pid == 1;
    let real_pid1 = is_pid1 && pid1::take_ctrl_alt_del();
    if is_pid1 {
        pid1::setup();
    } else {
        // Orphans of our services are reparented to us and reaped.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    std::panic::set_hook(Box::new(|info| {
        sys::warn(format_args!("panic: {}", info));
        if IN_SERVICE_DIR.load(Ordering::Relaxed) {
            exec_if_present(c"SYS/fatal");
        }
    }));

    let dir = service_dir(real_pid1);
    if let Err(e) = std::env::set_current_dir(&dir) {
        fatal(format_args!(
            "cannot use service directory {}: {}",
            dir.display(),
            sys::IoText(&e)
        ));
    }
    IN_SERVICE_DIR.store(true, Ordering::Relaxed);
    // Resolved now, so that a reboot can re-exec with absolute paths.
    let abs_dir = std::env::current_dir().unwrap_or_else(|_| dir.clone());
    let exe =
        std::fs::read_link("/proc/self/exe").unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));

    let signals = SignalPipe::install()
        .unwrap_or_else(|e| fatal(format_args!("signals: {}", sys::IoText(&e))));
    let sock_path = sockpath::socket_path().unwrap_or_else(|e| fatal(format_args!("{}", e)));
    let control = match ControlSocket::bind(&sock_path) {
        Ok(control) => control,
        Err(SetupError::Taken) => {
            sys::warn(format_args!(
                "{} is served by another nitro",
                sock_path.display()
            ));
            std::process::exit(EXIT_FATAL)
        }
        Err(SetupError::Other(message)) => fatal(format_args!("{}", message)),
    };
    // Said once nitro has said it is starting.
    let (cgroups, cgroup_words) = match Cgroups::setup(real_pid1) {
        Ok(cgroups) => {
            let words = format!(
                "services run in cgroups below {}",
                cgroups.root().to_string_lossy()
            );
            (Some(cgroups), words)
        }
        Err(unused) => (None, format!("cgroups not used: {}", unused.0)),
    };
    let mut os = RealOs::new(&control.notify_dir, control.fd, cgroups).unwrap_or_else(|e| {
        control.remove();
        fatal(format_args!("cannot set up: {}", sys::IoText(&e)))
    });
    let max = max_services();
    let mut sup = Supervisor::new(Config {
        max_services: max,
        nitro_pid,
        fd_limit: fd_limit(),
    });

    // Everything the loop needs is reserved here.
    let poller = os.poller();
    let cgroup_watch = os.cgroups().map(|c| (c.inotify_fd(), CGROUP_KEY));
    for (fd, key) in [(signals.read_fd, SIGNALS_KEY), (control.fd, CONTROL_KEY)]
        .into_iter()
        .chain(cgroup_watch)
    {
        if let Err(errno) = poller.add(fd, key) {
            fatal(format_args!(
                "cannot watch descriptor {}: {}",
                fd,
                sys::Errno(errno)
            ));
        }
    }
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAKEUP];
    let mut keys = [0u64; EVENTS_PER_WAKEUP];
    let mut datagram = [0u8; DATAGRAM_MAX];
    let mut reply = [0u8; DATAGRAM_MAX];
    let mut sender = Sender::default();

    let role = match (is_pid1, real_pid1) {
        (true, true) => "as pid 1",
        (true, false) => "as pid 1 of a container",
        (false, _) => "not as pid 1",
    };
    sys::warn(format_args!(
        "starting: pid {}, {}, services in {}, socket {}",
        nitro_pid,
        role,
        abs_dir.display(),
        sock_path.display()
    ));
    sys::warn(format_args!("{}", cgroup_words));
    sup.boot(&mut os, now_ms());
    // From here on nothing is allocated; INFO shows the count.
    nitro::alloc_count::arm();
    shed_startup_pages();

    while !sup.stopped() {
        let timeout = match sup.next_deadline() {
            Some(deadline) => deadline.saturating_sub(now_ms()).min(i32::MAX as u64) as i32,
            None => -1,
        };
        let ready = os.poller().wait(&mut events, &mut keys, timeout);
        let now = now_ms();
        // Children and signals first, then requests, then readiness.
        if ready.contains(&SIGNALS_KEY) {
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
            // The real pid 1 ignores SIGTERM; SIGINT is Ctrl-Alt-Delete.
            if arrived.interrupt {
                sup.shutdown(&mut os, real_pid1, now);
            }
            if arrived.terminate && !real_pid1 {
                sup.shutdown(&mut os, false, now);
            }
        }
        if ready.contains(&CONTROL_KEY) {
            for _ in 0..REQUESTS_PER_WAKEUP {
                let Some(n) = control.recv(&mut datagram, &mut sender) else {
                    break;
                };
                if let Some(len) = sup.handle_request(&mut os, &datagram[..n], &mut reply, now) {
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
        if ready.contains(&CGROUP_KEY) {
            if let Some(cgroups) = os.cgroups() {
                cgroups.drain();
            }
            sup.on_cgroup_change(&mut os, now);
        }
        for &token in ready.iter().filter(|&&k| k < CGROUP_KEY) {
            // A pipe closed or replaced meanwhile is not read.
            sup.on_ready_fd(&mut os, token, now);
        }
        sup.on_timers(&mut os, now);
    }

    let reboot = sup.reboot_requested();
    if is_pid1 {
        pid1::kill_all(&signals, kill_all_timeout());
    }
    for (_, service) in sup.services() {
        os.cgroup_remove(service.name.as_bytes());
    }
    control.remove();
    if real_pid1 {
        // Before handing over to SYS/reincarnate. A plain supervisor or a
        // container does not sync: that would flush every file system of
        // the host and hold up its exit.
        // SAFETY: sync has no preconditions.
        unsafe { libc::sync() };
    }
    // A system handed over is not finalized: SYS/final runs only when
    // there is no SYS/reincarnate or its exec failed.
    exec_if_present(c"SYS/reincarnate");
    let exec_errno = sys::errno();
    if exec_errno != libc::ENOENT {
        sys::warn(format_args!(
            "cannot exec SYS/reincarnate: {}",
            sys::Errno(exec_errno)
        ));
    }
    if real_pid1 {
        pid1::run_final(os.spawner(), &signals, reboot);
        sys::warn(format_args!(
            "every service is down, {}",
            if reboot { "rebooting" } else { "powering off" }
        ));
        pid1::halt_machine(reboot);
    }
    if reboot {
        sys::warn(format_args!("every service is down, starting again"));
        reexec(&exe, &abs_dir);
    }
    sys::warn(format_args!(
        "every service is down, exiting with status {}",
        sup.exit_status()
    ));
    std::process::exit(sup.exit_status())
}
