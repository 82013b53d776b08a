//! nitroctl: the control client of nitro (SPEC section 9), and its other
//! names halt, poweroff, reboot and init.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nitro::client::{self, Client, Status};
use nitro::proto::{self, State};
use nitro::sys::sockpath;

const EXIT_FAILED: i32 = 1;
const EXIT_USAGE: i32 = 2;
const EXIT_TIMEOUT: i32 = 3;
const EXIT_UNREACHABLE: i32 = 4;
const EXIT_OTHER: i32 = 111;
/// Ask again when no event came for this long: events are best-effort.
const REQUERY: Duration = Duration::from_secs(1);
/// How long a plain request waits for its reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "usage: nitroctl [-t SECONDS] [-v] [--json] [COMMAND [SERVICE...]]";

/// The signal that interrupted us, 0 if none.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);
/// Self-pipe: the handler writes here, so a poll wakes up whatever moment
/// the signal arrives.
static SIGNAL_PIPE: [AtomicI32; 2] = [AtomicI32::new(-1), AtomicI32::new(-1)];

extern "C" fn on_signal(signal: libc::c_int) {
    INTERRUPTED.store(signal, Ordering::Relaxed);
    let byte = 0u8;
    // SAFETY: write is async-signal-safe; the pipe is non-blocking.
    unsafe {
        libc::write(
            SIGNAL_PIPE[1].load(Ordering::Relaxed),
            (&byte as *const u8).cast(),
            1,
        )
    };
}

/// The read end of the self-pipe, for poll.
fn signal_fd() -> i32 {
    SIGNAL_PIPE[0].load(Ordering::Relaxed)
}

/// SIGINT, SIGTERM and SIGHUP interrupt waiting, and we clean up our
/// sockets.
fn catch_signals() {
    let mut fds = [-1i32; 2];
    // SAFETY: fds is a valid array of two ints.
    unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    SIGNAL_PIPE[0].store(fds[0], Ordering::Relaxed);
    SIGNAL_PIPE[1].store(fds[1], Ordering::Relaxed);
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores into an atomic.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

fn fail(status: i32, message: std::fmt::Arguments) -> ! {
    eprintln!("nitroctl: {message}");
    exit(status)
}

struct Options {
    timeout: Option<Duration>,
    verbose: bool,
    json: bool,
    args: Vec<String>,
}

/// Options may stand anywhere among the arguments, as with GNU getopt.
fn parse_options(argv: impl Iterator<Item = String>) -> Options {
    let mut options = Options {
        timeout: None,
        verbose: false,
        json: false,
        args: Vec::new(),
    };
    let mut argv = argv.peekable();
    let mut only_args = false;
    while let Some(arg) = argv.next() {
        if only_args || arg == "-" || !arg.starts_with('-') {
            options.args.push(arg);
            continue;
        }
        match arg.as_str() {
            "--" => only_args = true,
            "--json" => options.json = true,
            "-v" => options.verbose = true,
            "-t" => options.timeout = Some(seconds(argv.next())),
            t if t.starts_with("-t") => options.timeout = Some(seconds(Some(t[2..].to_string()))),
            _ => fail(EXIT_USAGE, format_args!("unknown option {arg}\n{USAGE}")),
        }
    }
    options
}

fn seconds(arg: Option<String>) -> Duration {
    arg.as_deref()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|| {
            fail(
                EXIT_USAGE,
                format_args!("-t needs a number of seconds\n{USAGE}"),
            )
        })
}

/// A service argument: a name, or an existing path meaning its last
/// component (`.` inside a service directory, `/etc/nitro/sshd/`).
fn service_name(arg: &str) -> String {
    if !arg.contains('/') && arg != "." && arg != ".." {
        return arg.to_string();
    }
    let path = Path::new(arg);
    if !path.exists() {
        fail(EXIT_OTHER, format_args!("{arg}: no such file or directory"));
    }
    let last = match path.file_name() {
        Some(name) if name != "." && name != ".." => PathBuf::from(name),
        _ => std::fs::canonicalize(path)
            .ok()
            .and_then(|p| p.file_name().map(PathBuf::from))
            .unwrap_or_else(|| fail(EXIT_OTHER, format_args!("{arg}: cannot name a service"))),
    };
    last.to_string_lossy().into_owned()
}

struct Ctl {
    server: PathBuf,
    notify_dir: PathBuf,
    options: Options,
}

impl Ctl {
    /// A socket for requests that need no events.
    fn client(&self) -> Client {
        Client::new(&self.server, None)
            .unwrap_or_else(|e| fail(EXIT_OTHER, format_args!("socket: {e}")))
    }

    /// A request and its reply; exits 4 when nitro cannot be reached.
    fn call(&self, client: &Client, datagram: &[u8]) -> Vec<u8> {
        match client.call(datagram, REPLY_TIMEOUT) {
            Ok(reply) => reply,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                fail(
                    EXIT_UNREACHABLE,
                    format_args!("no reply from nitro at {}", self.server.display()),
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => interrupted(),
            Err(e) => fail(
                EXIT_UNREACHABLE,
                format_args!("cannot reach nitro at {}: {e}", self.server.display()),
            ),
        }
    }

    fn list_all(&self) -> Vec<Status> {
        let client = self.client();
        let mut all = Vec::new();
        let mut start = 0u32;
        loop {
            let payload = start.to_le_bytes();
            let request = if start == 0 {
                client::request(proto::TAG_LIST, &[])
            } else {
                client::request(proto::TAG_LIST, &payload)
            };
            let (page, next) = client::decode_list(&self.call(&client, &request));
            all.extend(page);
            match next {
                Some(n) if n > start => start = n,
                _ => break,
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn query(&self, client: &Client, name: &str) -> Option<Status> {
        client::decode_query(
            name,
            &self.call(client, &client::request(proto::TAG_QUERY, name.as_bytes())),
        )
    }

    /// Statuses of the named services in argument order; unknown ones are
    /// reported and make the exit status 111.
    fn query_all(&self, names: &[String]) -> (Vec<Status>, i32) {
        let client = self.client();
        let mut status = 0;
        let mut found = Vec::new();
        for name in names {
            match self.query(&client, name) {
                Some(s) => found.push(s),
                None => {
                    eprintln!("nitroctl: {name}: no such service");
                    status = EXIT_OTHER;
                }
            }
        }
        (found, status)
    }

    fn info(&self) -> Vec<(String, Option<u32>)> {
        let client = self.client();
        client::decode_info(&self.call(&client, &client::request(proto::TAG_INFO, &[])))
    }

    /// Sends a command for each service; OK is success, ESRCH "no such
    /// service".
    fn each(&self, names: &[String], request: impl Fn(&str) -> Vec<u8>) -> i32 {
        let client = self.client();
        let mut status = 0;
        for name in names {
            let reply = self.call(&client, &request(name));
            if reply.get(2) != Some(&proto::TAG_OK) {
                eprintln!("nitroctl: {name}: no such service");
                status = status.max(EXIT_OTHER);
            }
        }
        status
    }

    fn system(&self, tag: u8) -> i32 {
        let client = self.client();
        match self.call(&client, &client::request(tag, &[])).get(2) {
            Some(&proto::TAG_OK) => 0,
            _ => fail(EXIT_OTHER, format_args!("not implemented by this nitro")),
        }
    }
}

fn interrupted() -> ! {
    exit(128 + INTERRUPTED.load(Ordering::Relaxed))
}

/// What a waiting command sends and which states end the wait.
#[derive(Clone, Copy)]
struct Wait {
    request: Option<u8>,
    done: fn(State) -> bool,
    /// FATAL ends the wait with a failure.
    fatal_fails: bool,
    /// Only count states after the service left UP (restart).
    needs_change: bool,
}

fn wait_spec(command: &str) -> Option<Wait> {
    let up = |s| matches!(s, State::Up | State::Oneshot);
    let starting = |s| matches!(s, State::Starting | State::Up | State::Oneshot);
    let down = |s| matches!(s, State::Down | State::Fatal);
    let stopping = |s| matches!(s, State::Shutdown | State::Down | State::Fatal);
    let w = |request, done: fn(State) -> bool, fatal_fails, needs_change| Wait {
        request,
        done,
        fatal_fails,
        needs_change,
    };
    Some(match command {
        "start" => w(Some(proto::TAG_UP), up, true, false),
        "stop" => w(Some(proto::TAG_DOWN), down, false, false),
        "restart" => w(Some(proto::TAG_RESTART), up, true, true),
        "fast-start" => w(Some(proto::TAG_UP), starting, true, false),
        "fast-restart" | "r" => w(Some(proto::TAG_RESTART), starting, true, true),
        "fast-stop" => w(Some(proto::TAG_DOWN), stopping, false, false),
        // A one-shot is "up" once ONESHOT (SPEC section 3), as for start.
        "wait-up" => w(None, up, true, false),
        "wait-down" => w(None, down, false, false),
        "wait-starting" => w(None, starting, true, false),
        _ => return None,
    })
}

/// One service being waited for.
struct Waiter {
    name: String,
    client: Client,
    /// The request was answered (so later states are its consequences).
    answered: bool,
    changed: bool,
    last_heard: Instant,
    result: Option<i32>,
}

impl Waiter {
    fn see(&mut self, state: State, wait: &Wait, verbose: bool) {
        if verbose {
            println!("{} {}", state.name(), self.name);
        }
        if wait.needs_change && !matches!(state, State::Up | State::Oneshot) {
            self.changed = true;
        }
        if wait.needs_change && !self.changed {
            return;
        }
        if (wait.done)(state) {
            self.result = Some(0);
        } else if state == State::Fatal && wait.fatal_fails {
            eprintln!("nitroctl: {}: failed", self.name);
            self.result = Some(EXIT_FAILED);
        }
    }

    /// Handles one datagram: an event, a reply to the request or a QUERY.
    fn receive(&mut self, datagram: &[u8], wait: &Wait, verbose: bool) {
        self.last_heard = Instant::now();
        if let Some((state, name)) = client::is_event(datagram)
            .then(|| client::decode_event(datagram))
            .flatten()
        {
            if name == self.name && (self.answered || wait.request.is_none() || wait.needs_change) {
                self.see(state, wait, verbose);
            }
            return;
        }
        match datagram.get(2) {
            Some(&proto::TAG_OK) => self.answered = true,
            Some(&proto::TAG_ESRCH) => {
                eprintln!("nitroctl: {}: no such service", self.name);
                self.result = Some(EXIT_OTHER);
            }
            Some(&proto::TAG_STATE) => {
                self.answered = true;
                if let Some(status) = client::decode_query(&self.name, datagram) {
                    self.see(status.state.expect("decoded"), wait, verbose);
                }
            }
            _ => {}
        }
    }
}

fn wait_for(ctl: &Ctl, names: &[String], wait: Wait) -> i32 {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut waiters: Vec<Waiter> = names
        .iter()
        .enumerate()
        .map(|(n, name)| {
            let path = ctl.notify_dir.join(format!("{name},{pid}_{n}"));
            let client = Client::new(&ctl.server, Some(path))
                .and_then(|c| c.socket.set_write_timeout(Some(REPLY_TIMEOUT)).map(|_| c))
                .unwrap_or_else(|e| {
                    fail(
                        EXIT_UNREACHABLE,
                        format_args!("cannot bind in {}: {e}", ctl.notify_dir.display()),
                    )
                });
            Waiter {
                name: name.clone(),
                client,
                answered: false,
                changed: false,
                last_heard: Instant::now(),
                result: None,
            }
        })
        .collect();
    for w in &waiters {
        let request = match wait.request {
            Some(tag) => client::request(tag, w.name.as_bytes()),
            None => client::request(proto::TAG_QUERY, w.name.as_bytes()),
        };
        // Blocking (up to REPLY_TIMEOUT): nitro's queue holds only a few
        // datagrams, and many services at once must wait for room.
        if let Err(e) = w.client.send(&request) {
            fail(
                EXIT_UNREACHABLE,
                format_args!("cannot reach nitro at {}: {e}", ctl.server.display()),
            );
        }
        let _ = w.client.socket.set_nonblocking(true);
    }
    let deadline = ctl.options.timeout.map(|t| Instant::now() + t);
    let mut buf = vec![0u8; 65536];
    loop {
        let pending: Vec<usize> = (0..waiters.len())
            .filter(|&i| waiters[i].result.is_none())
            .collect();
        if pending.is_empty() {
            break;
        }
        if INTERRUPTED.load(Ordering::Relaxed) != 0 {
            drop(waiters);
            interrupted();
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            for &i in &pending {
                eprintln!("nitroctl: {}: timeout", waiters[i].name);
                waiters[i].result = Some(EXIT_TIMEOUT);
            }
            break;
        }
        for &i in &pending {
            if now.duration_since(waiters[i].last_heard) >= REQUERY {
                waiters[i].last_heard = now;
                let _ = waiters[i].client.send(&client::request(
                    proto::TAG_QUERY,
                    waiters[i].name.as_bytes(),
                ));
            }
        }
        let mut pollfds: Vec<libc::pollfd> = pending
            .iter()
            .map(|&i| waiters[i].client.socket.as_raw_fd())
            .chain([signal_fd()])
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let mut timeout = REQUERY;
        if let Some(d) = deadline {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        // SAFETY: pollfds is a valid array of its length.
        unsafe {
            libc::poll(
                pollfds.as_mut_ptr(),
                pollfds.len() as libc::nfds_t,
                timeout.as_millis() as i32 + 1,
            )
        };
        for (k, &i) in pending.iter().enumerate() {
            if pollfds[k].revents == 0 {
                continue;
            }
            // Non-blocking: read what is there, then back to poll.
            while let Ok(n) = waiters[i].client.socket.recv(&mut buf) {
                waiters[i].receive(&buf[..n], &wait, ctl.options.verbose);
                if waiters[i].result.is_some() {
                    break;
                }
            }
        }
    }
    waiters.iter().filter_map(|w| w.result).max().unwrap_or(0)
}

/// `events`: print every state change until interrupted (then exit 0).
fn events(ctl: &Ctl) -> i32 {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let client = Client::new(&ctl.server, Some(ctl.notify_dir.join(format!("ALL,{pid}"))))
        .unwrap_or_else(|e| {
            fail(
                EXIT_UNREACHABLE,
                format_args!("cannot bind in {}: {e}", ctl.notify_dir.display()),
            )
        });
    let _ = client.socket.set_nonblocking(true);
    let mut buf = vec![0u8; 65536];
    loop {
        let mut pollfds = [client.socket.as_raw_fd(), signal_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: pollfds is a valid array of its length.
        unsafe { libc::poll(pollfds.as_mut_ptr(), 2, -1) };
        // Print what has arrived, even when interrupted: those events
        // happened before the interruption.
        while let Ok(n) = client.socket.recv(&mut buf) {
            if let Some((state, name)) = client::decode_event(&buf[..n]) {
                println!("{} {}", state.name(), name);
            }
        }
        if INTERRUPTED.load(Ordering::Relaxed) != 0 {
            return 0;
        }
    }
}

fn signal_for(command: &str) -> Option<libc::c_int> {
    proto::SIGNAL_LETTERS
        .iter()
        .find(|(letter, name, _)| {
            *name == command || (command.len() == 1 && command.as_bytes()[0] == *letter)
        })
        .map(|&(_, _, signal)| signal)
}

fn run(ctl: &Ctl, command: &str, names: &[String]) -> i32 {
    let need_names = || {
        if names.is_empty() {
            fail(
                EXIT_USAGE,
                format_args!("{command} needs a service\n{USAGE}"),
            );
        }
    };
    if let Some(wait) = wait_spec(command) {
        need_names();
        return wait_for(ctl, names, wait);
    }
    match command {
        "list" | "l" => {
            let (services, status) = if names.is_empty() {
                (ctl.list_all(), 0)
            } else {
                ctl.query_all(names)
            };
            if ctl.options.json {
                let items: Vec<String> = services.iter().map(Status::json).collect();
                println!("[{}]", items.join(","));
            } else {
                for s in &services {
                    println!("{}", s.line());
                }
            }
            status
        }
        "info" => {
            let info = ctl.info();
            if ctl.options.json {
                println!("{}", client::info_json(&info));
            } else {
                for (key, value) in info {
                    match value {
                        Some(v) => println!("{key} {v}"),
                        None => println!("{key}"),
                    }
                }
            }
            0
        }
        "metrics" => {
            let services = ctl.list_all();
            print!("{}", client::metrics(&services, &ctl.info()));
            0
        }
        "scan" | "s" | "rescan" => ctl.system(proto::TAG_RESCAN),
        "Shutdown" => ctl.system(proto::TAG_SHUTDOWN),
        "Reboot" => ctl.system(proto::TAG_REBOOT),
        "up" | "u" | "down" | "d" | "ready" => {
            need_names();
            let tag = match command {
                "up" | "u" => proto::TAG_UP,
                "down" | "d" => proto::TAG_DOWN,
                _ => proto::TAG_READY,
            };
            ctl.each(names, |name| client::request(tag, name.as_bytes()))
        }
        "pidof" | "check" => {
            need_names();
            let (services, mut status) = ctl.query_all(names);
            for s in &services {
                if s.pid == 0 {
                    if command == "pidof" {
                        eprintln!("nitroctl: {}: no process", s.name);
                    }
                    status = status.max(EXIT_FAILED);
                } else if command == "pidof" {
                    println!("{}", s.pid);
                }
            }
            status
        }
        "events" => events(ctl),
        _ => match signal_for(command) {
            Some(signal) => {
                need_names();
                ctl.each(names, |name| {
                    let mut payload = vec![signal as u8];
                    payload.extend_from_slice(name.as_bytes());
                    client::request(proto::TAG_SIGNAL, &payload)
                })
            }
            None => fail(
                EXIT_USAGE,
                format_args!("unknown command {command}\n{USAGE}"),
            ),
        },
    }
}

/// `halt`, `poweroff`, `reboot`: ask nitro, or with -f the kernel; -w/-B
/// only write a wtmp record.
fn halt_personality(name: &str, args: &[String]) -> i32 {
    let (mut force, mut record) = (false, None);
    for arg in args {
        for flag in arg.trim_start_matches('-').chars() {
            match flag {
                'f' => force = true,
                'w' => record = Some(false),
                'B' => record = Some(true),
                _ => fail(EXIT_USAGE, format_args!("usage: {name} [-f] [-w] [-B]")),
            }
        }
    }
    if let Some(boot) = record {
        return write_wtmp(boot);
    }
    let reboot = name == "reboot";
    if force {
        // SAFETY: sync and reboot; this is what -f asks for.
        unsafe {
            libc::sync();
            libc::reboot(match name {
                "reboot" => libc::RB_AUTOBOOT,
                "halt" => libc::RB_HALT_SYSTEM,
                _ => libc::RB_POWER_OFF,
            });
        }
        fail(
            EXIT_OTHER,
            format_args!("reboot: {}", std::io::Error::last_os_error()),
        );
    }
    with_ctl(Vec::new(), |ctl| {
        ctl.system(if reboot {
            proto::TAG_REBOOT
        } else {
            proto::TAG_SHUTDOWN
        })
    })
}

unsafe extern "C" {
    /// glibc: appends a record to a wtmp file.
    fn updwtmpx(file: *const libc::c_char, record: *const libc::utmpx);
}

/// Appends a shutdown (`boot` false) or boot record to /var/log/wtmp.
fn write_wtmp(boot: bool) -> i32 {
    // SAFETY: a zeroed utmpx is valid; the strings copied in are short
    // literals; updwtmpx gets a valid path and record.
    unsafe {
        let mut record: libc::utmpx = std::mem::zeroed();
        record.ut_type = if boot { libc::BOOT_TIME } else { libc::RUN_LVL };
        for (dst, src) in record.ut_line.iter_mut().zip(b"~\0") {
            *dst = *src as libc::c_char;
        }
        let user: &[u8] = if boot { b"reboot\0" } else { b"shutdown\0" };
        for (dst, src) in record.ut_user.iter_mut().zip(user) {
            *dst = *src as libc::c_char;
        }
        let mut now = libc::timeval {
            tv_sec: 0,
            tv_usec: 0,
        };
        libc::gettimeofday(&mut now, std::ptr::null_mut());
        record.ut_tv.tv_sec = now.tv_sec as i32;
        record.ut_tv.tv_usec = now.tv_usec as i32;
        updwtmpx(c"/var/log/wtmp".as_ptr(), &record);
    }
    0
}

/// `init`: as pid 1 become nitro; otherwise `init 0|6|q`.
fn init_personality(args: &[String]) -> i32 {
    // SAFETY: getpid has no preconditions.
    if unsafe { libc::getpid() } == 1 {
        let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
        let nitro = exe.with_file_name("nitro");
        let candidates = [
            nitro.as_path(),
            Path::new("/sbin/nitro"),
            Path::new("/usr/sbin/nitro"),
            Path::new("/bin/nitro"),
        ];
        for candidate in candidates {
            let err = std::os::unix::process::CommandExt::exec(
                std::process::Command::new(candidate).args(args),
            );
            eprintln!("nitroctl: cannot exec {}: {err}", candidate.display());
        }
        return EXIT_OTHER;
    }
    let tag = match args.first().map(String::as_str) {
        Some("0") => proto::TAG_SHUTDOWN,
        Some("6") => proto::TAG_REBOOT,
        Some("q" | "Q") => proto::TAG_RESCAN,
        _ => fail(EXIT_USAGE, format_args!("usage: init 0|6|q")),
    };
    with_ctl(Vec::new(), |ctl| ctl.system(tag))
}

fn with_ctl(args: Vec<String>, f: impl FnOnce(&Ctl) -> i32) -> i32 {
    let options = parse_options(args.into_iter());
    let server =
        sockpath::socket_path().unwrap_or_else(|e| fail(EXIT_UNREACHABLE, format_args!("{e}")));
    let notify_dir = server.parent().unwrap_or(Path::new(".")).join("notify");
    f(&Ctl {
        server,
        notify_dir,
        options,
    })
}

fn main() {
    catch_signals();
    let mut argv = std::env::args();
    let argv0 = argv.next().unwrap_or_default();
    let personality = Path::new(&argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let rest: Vec<String> = argv.collect();
    let status = match personality.as_str() {
        "halt" | "poweroff" | "reboot" => halt_personality(&personality, &rest),
        "init" => init_personality(&rest),
        _ => with_ctl(rest, |ctl| {
            let mut args = ctl.options.args.iter();
            let command = args.next().map_or("list", String::as_str);
            let names: Vec<String> = args.map(|a| service_name(a)).collect();
            run(ctl, command, &names)
        }),
    };
    exit(status)
}
