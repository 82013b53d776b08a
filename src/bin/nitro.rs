//! nitro: the supervisor. Wiring only, in three parts: `set_up` (the
//! arguments, the service directory, the socket, everything the loop
//! will need), `run` (the loop: epoll → signals, children, requests,
//! readiness, deadlines → core) and `end` (the end of the system).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use nitro::core::{Config, DEFAULT_MAX_SERVICES, End, Os, Phase, Supervisor};
use nitro::proto::DATAGRAM_MAX;
use nitro::sys::control::{ControlSocket, Sender, SetupError};
use nitro::sys::os::{CGROUP_KEY, RealOs};
use nitro::sys::signals::SignalPipe;
use nitro::sys::{self, now_ms, pid1, process, sockpath};

#[global_allocator]
static ALLOCATOR: nitro::alloc_count::Counting = nitro::alloc_count::Counting;

/// Status when nitro cannot start.
const EXIT_FATAL: i32 = 111;
/// Requests handled per wake-up, so a flood cannot starve the rest.
const REQUESTS_PER_WAKEUP: usize = 64;
/// Descriptors reported per wake-up; the rest come with the next one.
const EVENTS_PER_WAKEUP: usize = 64;
/// Keys of the self-pipe and the control socket in the poller (the cgroup
/// watch's is `CGROUP_KEY`); readiness pipes are keyed by the core's
/// tokens, always below these.
const SIGNALS_KEY: u64 = u64::MAX;
const CONTROL_KEY: u64 = u64::MAX - 1;

/// Set once nitro works in its service directory, where `SYS/fatal` is.
static IN_SERVICE_DIR: AtomicBool = AtomicBool::new(false);

/// An unrecoverable startup error: `SYS/fatal` takes over, else exit 111.
fn fatal(message: std::fmt::Arguments) -> ! {
    sys::warn(message);
    if IN_SERVICE_DIR.load(Ordering::Relaxed) {
        process::exec_if_present(c"SYS/fatal");
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
    if process::is_root() {
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

/// `SYS/timeout-kill`: milliseconds between the final SIGTERM and SIGKILL.
/// Read as the services' files are: non-blocking (a FIFO there must not
/// stop pid 1) and into a buffer on the stack.
fn kill_all_timeout() -> u64 {
    let mut buf = [0u8; 24];
    let Ok(n) = sys::read_at(libc::AT_FDCWD, b"SYS", b"timeout-kill", &mut buf) else {
        return pid1::KILL_ALL_TIMEOUT_MS;
    };
    core::str::from_utf8(buf[..n].trim_ascii())
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| {
            sys::warn(format_args!(
                "bad SYS/timeout-kill, using {} ms",
                pid1::KILL_ALL_TIMEOUT_MS
            ));
            pid1::KILL_ALL_TIMEOUT_MS
        })
}

/// What the loop and the end work with, made by `set_up`.
struct Nitro {
    sup: Supervisor,
    os: RealOs,
    signals: SignalPipe,
    control: ControlSocket,
    is_pid1: bool,
    /// pid 1 of a machine, not of a container.
    real_pid1: bool,
    /// nitro's own binary and service directory, absolute, for a reboot
    /// that starts it again.
    exe: PathBuf,
    dir: PathBuf,
}

fn main() {
    let mut nitro = set_up();
    run(&mut nitro);
    end(nitro)
}

fn set_up() -> Nitro {
    pid1::ensure_std_fds();
    let nitro_pid = process::pid();
    let is_pid1 = nitro_pid == 1;
    let real_pid1 = is_pid1 && pid1::take_ctrl_alt_del();
    if is_pid1 {
        pid1::setup();
    } else {
        process::become_subreaper();
    }
    std::panic::set_hook(Box::new(|info| {
        sys::warn(format_args!("panic: {}", info));
        if IN_SERVICE_DIR.load(Ordering::Relaxed) {
            process::exec_if_present(c"SYS/fatal");
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
    let dir = std::env::current_dir().unwrap_or(dir);
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
    let mut os = RealOs::new(&control.notify_dir, control.fd).unwrap_or_else(|e| {
        control.remove();
        fatal(format_args!("cannot set up: {}", sys::IoText(&e)))
    });
    for (fd, key) in [(signals.read_fd, SIGNALS_KEY), (control.fd, CONTROL_KEY)] {
        if let Err(errno) = os.poller().add(fd, key) {
            fatal(format_args!(
                "cannot watch descriptor {}: {}",
                fd,
                sys::Errno(errno)
            ));
        }
    }
    let sup = Supervisor::new(Config {
        max_services: max_services(),
        nitro_pid,
    });
    let role = match (is_pid1, real_pid1) {
        (true, true) => "as pid 1",
        (true, false) => "as pid 1 of a container",
        (false, _) => "not as pid 1",
    };
    sys::warn(format_args!(
        "starting: pid {}, {}, services in {}, socket {}",
        nitro_pid,
        role,
        dir.display(),
        sock_path.display()
    ));
    os.set_up_cgroups(real_pid1);
    Nitro {
        sup,
        os,
        signals,
        control,
        is_pid1,
        real_pid1,
        exe,
        dir,
    }
}

/// The loop, until every service is down after a shutdown.
fn run(nitro: &mut Nitro) {
    let Nitro {
        sup,
        os,
        signals,
        control,
        is_pid1,
        real_pid1,
        ..
    } = nitro;
    // Everything the loop needs is reserved here.
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAKEUP];
    let mut keys = [0u64; EVENTS_PER_WAKEUP];
    sup.boot(os, now_ms());
    // From here on nothing is allocated; INFO shows the count.
    nitro::alloc_count::arm();
    process::shed_startup_pages();
    let mut ending = false;

    while !sup.stopped() {
        let timeout = match sup.next_deadline() {
            Some(deadline) => deadline.saturating_sub(now_ms()).min(i32::MAX as u64) as i32,
            None => -1,
        };
        os.flush_events();
        let ready = os.poller().wait(&mut events, &mut keys, timeout);
        let now = now_ms();
        // Children and signals first, then requests, then readiness.
        if ready.contains(&SIGNALS_KEY) {
            let arrived = signals.drain();
            if arrived.child {
                while let Some((pid, status)) = process::reap() {
                    sup.on_exit(os, pid, status, now);
                }
            }
            if arrived.hangup {
                sup.rescan(os, now);
            }
            // The real pid 1 ignores SIGTERM; SIGINT is Ctrl-Alt-Delete.
            if arrived.interrupt {
                let end = if *real_pid1 {
                    End::Reboot
                } else {
                    End::Shutdown
                };
                sup.shutdown(os, end, now);
            }
            if arrived.terminate && !*real_pid1 {
                sup.shutdown(os, End::Shutdown, now);
            }
        }
        if ready.contains(&CONTROL_KEY) {
            serve_requests(sup, os, control, now);
        }
        if ready.contains(&CGROUP_KEY) {
            if let Some(cgroups) = os.cgroups() {
                cgroups.drain();
            }
            sup.on_cgroup_change(os, now);
        }
        for &token in ready.iter().filter(|&&k| k < CGROUP_KEY) {
            // A pipe closed or replaced meanwhile is not read.
            sup.on_ready_fd(os, token, now);
        }
        sup.on_timers(os, now);
        if *is_pid1 && !ending && matches!(sup.phase(), Phase::SysFinish | Phase::Stopping) {
            ending = true;
            pid1::shutdown_begins(*real_pid1);
        }
    }
    os.flush_events();
}

/// Answers the requests waiting on the control socket (a flood cannot
/// starve the rest: `REQUESTS_PER_WAKEUP` at most), and carries out what
/// they ask for after their reply.
fn serve_requests(sup: &mut Supervisor, os: &mut RealOs, control: &ControlSocket, now: u64) {
    let mut datagram = [0u8; DATAGRAM_MAX];
    let mut reply = [0u8; DATAGRAM_MAX];
    let mut sender = Sender::default();
    for _ in 0..REQUESTS_PER_WAKEUP {
        let Some(n) = control.recv(&mut datagram, &mut sender) else {
            break;
        };
        if let Some(len) = sup.handle_request(os, &datagram[..n], &mut reply, now) {
            os.flush_events();
            control.reply(&sender, &reply[..len]);
        }
        let pending = sup.take_pending();
        if pending.rescan {
            sup.rescan(os, now);
        }
        if let Some(end) = pending.end {
            sup.shutdown(os, end, now);
        }
    }
}

/// Every service is down: as pid 1 every other process goes too, then
/// nitro hands over (`SYS/reincarnate`), finalizes and powers off or
/// reboots (the real pid 1), starts again (a reboot otherwise) or exits.
fn end(mut nitro: Nitro) -> ! {
    if nitro.is_pid1 {
        // Requests are still answered meanwhile (everything is DOWN; a
        // shutdown or reboot request still decides how it ends).
        let Nitro {
            sup,
            os,
            control,
            signals,
            ..
        } = &mut nitro;
        let control_fd = control.fd;
        let mut serve = || serve_requests(sup, os, control, now_ms());
        pid1::kill_all(signals, kill_all_timeout(), (control_fd, &mut serve));
    }
    let reboot = nitro.sup.end() == End::Reboot;
    for (_, service) in nitro.sup.services() {
        nitro.os.cgroup_remove(service.name.as_bytes());
    }
    nitro.control.remove();
    if nitro.real_pid1 {
        // Before handing over to SYS/reincarnate. A plain supervisor or a
        // container does not sync: that would flush every file system of
        // the host and hold up its exit.
        process::sync();
    }
    // A system handed over is not finalized: SYS/final runs only when
    // there is no SYS/reincarnate or its exec failed.
    let errno = process::exec_if_present(c"SYS/reincarnate");
    if errno != libc::ENOENT {
        sys::warn(format_args!(
            "cannot exec SYS/reincarnate: {}",
            sys::Errno(errno)
        ));
    }
    if nitro.real_pid1 {
        pid1::run_final(nitro.os.spawner(), &nitro.signals, reboot);
        sys::warn(format_args!(
            "every service is down, {}",
            if reboot { "rebooting" } else { "powering off" }
        ));
        pid1::halt_machine(reboot);
    }
    if reboot {
        sys::warn(format_args!("every service is down, starting again"));
        let errno = process::reexec(&nitro.exe, &nitro.dir);
        fatal(format_args!(
            "cannot re-exec {}: {}",
            nitro.exe.display(),
            sys::Errno(errno)
        ));
    }
    let status = nitro.sup.exit_status();
    sys::warn(format_args!(
        "every service is down, exiting with status {}",
        status
    ));
    std::process::exit(status)
}
