//! nitro as pid 1 of a container (a private pid and mount namespace made
//! with `unshare`, as container runtimes do) and as a plain child process:
//! the order of the SYS scripts and the shutdown, killing every process at
//! the end and the grace period, orphans, per-service `timeout-kill`, main
//! services and exit statuses, `SYS/fatal` (SPEC sections 6 and 8).
//!
//! The container tests need root and `unshare`; without them they print why
//! and pass, except under CI, which must run them. nitro as pid 1 takes
//! `/dev/console` for its fds 0-2, so every script here writes what it saw
//! into files of the test's own temp dir (`$T`), never to stdout.

mod support;

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nitro::proto::{self, State};
use support::{DEADLINE, file, nitro_bin, read, script, until};

/// How long nitro may take to end once it should (stop budgets included).
const END_DEADLINE: Duration = Duration::from_secs(40);

fn can_unshare() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips the test (with a reason) without root and `unshare`; CI must
/// have both.
macro_rules! require_unshare {
    () => {
        if !can_unshare() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the pid 1 tests: root and unshare are needed"
            );
            eprintln!("skipped: needs root and a working `unshare --pid --fork --mount`");
            return;
        }
    };
}

/// Fields of `/proc/PID/stat` after the command name: state, ppid, ….
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(String::from).collect())
}

/// The one-letter state of a process (`Z` for a zombie).
fn proc_state(pid: i32) -> Option<String> {
    stat_fields(pid).and_then(|f| f.first().cloned())
}

fn ppid(pid: i32) -> Option<i32> {
    stat_fields(pid).and_then(|f| f.get(1).and_then(|p| p.parse().ok()))
}

/// Arguments of a process joined by spaces (empty for a zombie).
fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Children of every thread of `pid`, as host pids.
fn children_of(pid: i32) -> Vec<i32> {
    let mut children = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return children;
    };
    for task in tasks.flatten() {
        children.extend(
            read(&task.path().join("children"))
                .split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    children
}

/// The mounts of the host on `/run` and `/dev` (mount point and type):
/// what nitro as pid 1 may mount, and must mount only in its namespace.
fn host_mounts() -> Vec<String> {
    mounts_of("self")
        .into_iter()
        .filter(|(point, _)| point == "/run" || point == "/dev")
        .map(|(point, kind)| format!("{point} {kind}"))
        .collect()
}

/// (mount point, file system type) of each mount seen by process `who`.
fn mounts_of(who: &str) -> Vec<(String, String)> {
    read(Path::new(&format!("/proc/{who}/mountinfo")))
        .lines()
        .filter_map(|line| {
            let point = line.split_whitespace().nth(4)?;
            let kind = line.split_once(" - ")?.1.split_whitespace().next()?;
            Some((point.to_string(), kind.to_string()))
        })
        .collect()
}

/// Whether `path` is a mount point of the host (a device change).
fn is_mount_point(path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(a), Ok(b)) = (std::fs::metadata(path), std::fs::metadata("/")) else {
        return false;
    };
    a.dev() != b.dev()
}

/// A process, told apart from a later one with the same pid.
type ProcId = (i32, String);

fn proc_id(pid: i32) -> Option<ProcId> {
    stat_fields(pid).and_then(|f| f.get(19).map(|start| (pid, start.clone())))
}

/// Every process of the namespace `ns` right now (nitro's included).
fn snapshot(ns: &str) -> Vec<ProcId> {
    processes_in(ns).into_iter().filter_map(proc_id).collect()
}

/// Those of `procs` that still exist (zombies included).
fn still_there(procs: &[ProcId]) -> Vec<ProcId> {
    procs
        .iter()
        .filter(|p| proc_id(p.0).as_ref() == Some(*p))
        .cloned()
        .collect()
}

/// Host pids of every process in the pid namespace `ns` (a link text of
/// `/proc/PID/ns/pid`).
fn processes_in(ns: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/pid"))
                .is_ok_and(|l| l.to_string_lossy() == ns)
        })
        .collect()
}

/// nitro as pid 1 of a fresh pid+mount namespace:
/// `unshare --pid --fork --mount --mount-proc nitro T/sv`, with
/// `NITRO_SOCK=T/s/nitro.sock` and `T` in the environment.
struct Container {
    tmp: tempfile::TempDir,
    unshare: Child,
    /// nitro's pid as the host sees it (the child of unshare).
    nitro: i32,
    /// nitro's pid namespace (`pid:[inode]`).
    ns: String,
    /// When the end of unshare was seen, and its status.
    ended: Option<(i32, Instant)>,
}

impl Container {
    /// Lets `setup` fill the service directory (its parent is `$T`), then
    /// starts nitro and waits for its control socket (or its end).
    fn start(setup: impl FnOnce(&Path)) -> Container {
        Container::start_after(setup, &[])
    }

    /// As `start`, with `prelude` (a shell command run as pid 1 of the
    /// namespace, which then execs nitro) to shape the namespace first.
    fn start_after(setup: impl FnOnce(&Path), prelude: &[&str]) -> Container {
        let tmp = tempfile::tempdir().unwrap();
        let sv = tmp.path().join("sv");
        std::fs::create_dir(&sv).unwrap();
        setup(&sv);
        let mut cmd = Command::new("unshare");
        cmd.args([
            "--pid",
            "--fork",
            "--kill-child",
            "--mount",
            "--mount-proc",
            "--propagation",
            "private",
        ]);
        if !prelude.is_empty() {
            let exec = format!("{} && exec \"$0\" \"$@\"", prelude.join(" && "));
            cmd.args(["sh", "-c", &exec]);
        }
        cmd.arg(nitro_bin())
            .arg(&sv)
            .env("NITRO_SOCK", tmp.path().join("s/nitro.sock"))
            .env("T", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(tmp.path().join("unshare.err")).unwrap());
        // SAFETY: prctl is async-signal-safe. If this test thread dies
        // without dropping the container, unshare gets SIGKILL, and
        // --kill-child passes it on to nitro, which takes the namespace.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let unshare = cmd.spawn().expect("spawn unshare");
        let mut c = Container {
            tmp,
            unshare,
            nitro: 0,
            ns: String::new(),
            ended: None,
        };
        let upid = c.unshare.id() as i32;
        until("unshare's child", || {
            c.poll_end();
            c.ended.is_some() || !children_of(upid).is_empty()
        });
        if c.ended.is_none() {
            c.nitro = children_of(upid)[0];
            c.ns = std::fs::read_link(format!("/proc/{}/ns/pid", c.nitro))
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            let sock = c.path("s/nitro.sock");
            until("the control socket, or the end of nitro", || {
                c.poll_end();
                sock.exists() || c.ended.is_some()
            });
        }
        c
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn poll_end(&mut self) {
        if self.ended.is_none()
            && let Some(status) = self.unshare.try_wait().unwrap()
        {
            self.ended = Some((status.code().unwrap_or(-1), Instant::now()));
        }
    }

    /// One request from a freshly bound socket; `None` if it cannot be
    /// sent (no socket right now) or no reply came.
    fn try_request(&self, datagram: &[u8]) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().unwrap();
        let socket = std::os::unix::net::UnixDatagram::bind(dir.path().join("c")).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        socket.send_to(datagram, self.path("s/nitro.sock")).ok()?;
        let mut buf = vec![0u8; 8192];
        let n = socket.recv(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    }

    fn request(&self, datagram: &[u8]) -> Vec<u8> {
        self.try_request(datagram)
            .unwrap_or_else(|| panic!("no reply to {datagram:?}"))
    }

    fn command(&self, tag: u8, name: &str) -> Vec<u8> {
        self.request(&nitro::client::request(tag, name.as_bytes()))
    }

    /// QUERY: the state and pid of a service, `None` if unknown.
    fn query(&self, name: &str) -> Option<(State, u32)> {
        let reply = self.try_request(&nitro::client::request(proto::TAG_QUERY, name.as_bytes()))?;
        nitro::client::decode_query(name, &reply).map(|s| (s.state.unwrap(), s.pid))
    }

    fn state(&self, name: &str) -> Option<State> {
        self.query(name).map(|(s, _)| s)
    }

    /// Whether nitro still runs (not ended, not a zombie).
    fn alive(&self) -> bool {
        proc_state(self.nitro).is_some_and(|s| s != "Z")
    }

    /// Polls `cond` until it holds; fails at the deadline, or at once if
    /// nitro ended meanwhile.
    fn until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + DEADLINE;
        while !cond() {
            assert!(
                self.alive(),
                "nitro ended while waiting for {what}; log: {:?}; unshare: {}",
                self.lines(),
                read(&self.path("unshare.err"))
            );
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; log: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn until_state(&self, name: &str, state: State) {
        self.until(&format!("{name} {}", state.name()), || {
            self.state(name) == Some(state)
        });
    }

    /// Waits for nitro (and so unshare) to end: its exit status and when.
    fn wait(&mut self) -> (i32, Instant) {
        let end = Instant::now() + END_DEADLINE;
        loop {
            self.poll_end();
            if let Some(ended) = self.ended {
                return ended;
            }
            assert!(
                Instant::now() < end,
                "nitro did not end; log: {:?}",
                self.lines()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The lines the scripts appended to `$T/order`, in order.
    fn lines(&self) -> Vec<String> {
        read(&self.path("order"))
            .lines()
            .map(String::from)
            .collect()
    }

    fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    /// Host pids of nitro's children whose arguments contain `marker`.
    fn children_marked(&self, marker: &str) -> Vec<i32> {
        children_of(self.nitro)
            .into_iter()
            .filter(|&p| cmdline(p).contains(marker))
            .collect()
    }

    /// nitro's children that are zombies.
    fn zombies(&self) -> Vec<i32> {
        children_of(self.nitro)
            .into_iter()
            .filter(|&p| proc_state(p).as_deref() == Some("Z"))
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.poll_end();
        if self.ended.is_none() {
            // unshare has not reaped nitro, so its pid is still nitro's.
            // Pid 1 of a namespace dying takes every process in it.
            if self.nitro > 0 {
                // SAFETY: signalling the nitro this test started.
                unsafe { libc::kill(self.nitro, libc::SIGKILL) };
            }
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
        }
    }
}

/// Writes a script outside the service directory (into `$T`).
fn helper(sv: &Path, name: &str, body: &str) {
    script(&sv.parent().unwrap().join(name), body);
}

/// A service that logs its start and its stop, with its trap set first.
/// (It leaves no orphan behind: a plain nitro would not kill one.)
fn logging_service(sv: &Path, name: &str) {
    script(
        &sv.join(format!("{name}/run")),
        &format!(
            r#"sleep 1000 & sleeper=$!
trap 'echo {name}-stopped >> "$T/order"; kill $sleeper; exit 0' TERM
echo {name}-up >> "$T/order"
wait"#
        ),
    );
}

/// A system with slow SYS/setup and SYS/finish, a service `a`, and a
/// service `stray` whose run double-forks a process that survives it and
/// takes a while to end when terminated. (The sleeps only widen windows,
/// so that starting services before SYS/setup ended, or not waiting for
/// SYS/finish or for the stray, shows in the order of the lines.)
fn system(sv: &Path) {
    script(
        &sv.join("SYS/setup"),
        r#"echo setup-begin >> "$T/order"; sleep 0.3; echo setup-end >> "$T/order""#,
    );
    script(
        &sv.join("SYS/finish"),
        r#"echo "finish-begin $*" >> "$T/order"; sleep 0.3; echo finish-end >> "$T/order""#,
    );
    logging_service(sv, "a");
    helper(
        sv,
        "stray.sh",
        r#"trap 'echo stray-killed >> "$T/order"; sleep 0.3; echo stray-exited >> "$T/order"; exit 0' TERM
echo $$ > "$T/stray.pid"
sleep 1000 & wait"#,
    );
    // The subshell exits at once: the stray is an orphan from the start.
    script(
        &sv.join("stray/run"),
        r#"( sh "$T/stray.sh" & ); exec sleep 1000"#,
    );
}

/// Waits until the system of `system` is up, the stray reparented to nitro.
fn system_up(c: &Container) {
    c.until("a up and the stray running", || {
        c.lines().contains(&"a-up".to_string()) && !read(&c.path("stray.pid")).is_empty()
    });
    c.until("the stray is an orphan, a child of nitro (pid 1)", || {
        !c.children_marked("stray.sh").is_empty()
    });
}

const SHUTDOWN_ORDER: [&str; 8] = [
    "setup-begin",
    "setup-end",
    "a-up",
    "finish-begin 0 0 shutdown",
    "finish-end",
    "a-stopped",
    "stray-killed",
    "stray-exited",
];

/// nitro exited 0 after the steps of SHUTDOWN_ORDER, and none of `procs`
/// (the namespace before the shutdown) is left.
fn ended_in_order(c: &mut Container, procs: &[ProcId]) {
    let (status, _) = c.wait();
    assert_eq!(status, 0, "log: {:?}", c.lines());
    assert_eq!(c.lines(), SHUTDOWN_ORDER);
    assert_eq!(
        still_there(procs),
        [],
        "every process of the namespace is gone"
    );
}

#[test]
fn sigterm_from_outside_runs_everything_in_order_and_exits_0() {
    require_unshare!();
    let mounts_before = host_mounts();
    let mut c = Container::start(system);
    system_up(&c);
    // nitro mounted a tmpfs on /run inside its namespace only.
    if !is_mount_point("/run") {
        assert!(
            mounts_of(&c.nitro.to_string())
                .iter()
                .any(|(point, kind)| point == "/run" && kind == "tmpfs"),
            "nitro as pid 1 mounts a tmpfs on /run"
        );
    }
    assert_eq!(host_mounts(), mounts_before, "a mount leaked to the host");
    let procs = snapshot(&c.ns);
    assert!(procs.len() >= 4, "the namespace is populated: {procs:?}");
    // SAFETY: signalling the nitro this test started.
    unsafe { libc::kill(c.nitro, libc::SIGTERM) };
    ended_in_order(&mut c, &procs);
    assert_eq!(host_mounts(), mounts_before, "a mount leaked to the host");
}

#[test]
fn devtmpfs_is_mounted_on_dev_when_dev_null_is_missing() {
    require_unshare!();
    let mounts_before = host_mounts();
    // Inside the namespace only, /dev becomes the bare directory of the
    // root file system, which has no `null`.
    let mut c = Container::start_after(
        |sv| {
            script(
                &sv.join("a/run"),
                r#"[ -c /dev/null ] && [ -c /dev/console ] && echo devices >> "$T/order"
echo a-up >> "$T/order"
exec sleep 1000"#,
            );
        },
        &["umount -l /dev", "! [ -e /dev/null ]"],
    );
    c.until("a up", || c.lines().contains(&"a-up".to_string()));
    assert!(
        mounts_of(&c.nitro.to_string())
            .iter()
            .any(|(point, kind)| point == "/dev" && kind == "devtmpfs"),
        "nitro mounts devtmpfs on /dev; unshare: {}",
        read(&c.path("unshare.err"))
    );
    assert_eq!(c.lines(), ["devices", "a-up"]);
    assert_eq!(host_mounts(), mounts_before, "a mount leaked to the host");
    assert!(Path::new("/dev/null").exists());
    // SAFETY: signalling the nitro this test started.
    unsafe { libc::kill(c.nitro, libc::SIGTERM) };
    assert_eq!(c.wait().0, 0);
    assert_eq!(host_mounts(), mounts_before, "a mount leaked to the host");
}

/// A `/dev` that is a mount point without `null` (a bare tmpfs): nitro
/// mounts nothing over it and has no /dev/null, and starts all the same,
/// giving its services a drained pipe as stdin.
#[test]
fn without_dev_null_services_read_a_drained_pipe() {
    require_unshare!();
    let mut c = Container::start_after(
        |sv| {
            script(
                &sv.join("a/run"),
                r#"cat > "$T/read"; echo a-up >> "$T/order"; exec sleep 1000"#,
            );
        },
        &["mount -t tmpfs none /dev", "! [ -e /dev/null ]"],
    );
    c.until("a up", || c.lines().contains(&"a-up".to_string()));
    assert_eq!(read(&c.path("read")), "", "stdin read as empty");
    // SAFETY: signalling the nitro this test started.
    unsafe { libc::kill(c.nitro, libc::SIGTERM) };
    assert_eq!(c.wait().0, 0, "unshare: {}", read(&c.path("unshare.err")));
}

#[test]
fn shutdown_datagram_runs_everything_in_order_and_exits_0() {
    require_unshare!();
    let mut c = Container::start(system);
    system_up(&c);
    let procs = snapshot(&c.ns);
    assert_eq!(
        c.request(&[0, 0, proto::TAG_SHUTDOWN]),
        [0, 0, proto::TAG_OK]
    );
    ended_in_order(&mut c, &procs);
}

#[test]
fn events_arrive_when_proc_is_not_mounted() {
    require_unshare!();
    // Bound before nitro starts, so that it sees every event from the first.
    let mut watcher = None;
    let mut c = Container::start_after(
        |sv| {
            let notify = sv.parent().unwrap().join("s/notify");
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&notify)
                .unwrap();
            watcher = Some(UnixDatagram::bind(notify.join("ALL,watcher")).unwrap());
            script(&sv.join("SYS/setup"), "exit 0");
            script(&sv.join("a/run"), "exec sleep 1000");
        },
        // An empty /proc, as a real pid 1 has before SYS/setup mounts it.
        &["mount -t tmpfs none /proc", "! [ -e /proc/self ]"],
    );
    let watcher = watcher.unwrap();
    watcher.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 128];
    while !seen.contains(&(State::Up, "a".to_string())) {
        let len = watcher.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "{e}; events so far: {seen:?}; unshare: {}",
                read(&c.path("unshare.err"))
            )
        });
        seen.extend(nitro::client::decode_event(&buf[..len]));
    }
    assert_eq!(
        seen[..2],
        [
            (State::Setup, "SYS".to_string()),
            (State::Down, "SYS".to_string())
        ],
        "{seen:?}"
    );
    // SAFETY: signalling the nitro this test started.
    unsafe { libc::kill(c.nitro, libc::SIGTERM) };
    assert_eq!(c.wait().0, 0);
}

/// A new pseudo-terminal: its master, drained by a thread so that what
/// nitro writes to it never blocks, and the path of its terminal.
fn pty() -> String {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    // SAFETY: posix_openpt returns a new descriptor we own; grantpt,
    // unlockpt and ptsname_r get that descriptor and a valid buffer.
    let (master, name) = unsafe {
        let master = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(master >= 0, "posix_openpt");
        assert_eq!(libc::grantpt(master), 0);
        assert_eq!(libc::unlockpt(master), 0);
        let mut name = [0 as libc::c_char; 64];
        assert_eq!(libc::ptsname_r(master, name.as_mut_ptr(), name.len()), 0);
        let name = std::ffi::CStr::from_ptr(name.as_ptr());
        (
            std::fs::File::from_raw_fd(master),
            name.to_string_lossy().into_owned(),
        )
    };
    std::thread::spawn(move || {
        let mut master = master;
        let mut buf = [0u8; 512];
        // Ends with EIO once nobody has the terminal open any more.
        while master.read(&mut buf).is_ok_and(|n| n > 0) {}
    });
    name
}

#[test]
fn sys_setup_takes_the_console_as_its_controlling_terminal() {
    require_unshare!();
    let console = pty();
    let bind = format!("mount --bind {console} /dev/console");
    let mut c = Container::start_after(
        |sv| {
            // Opening /dev/tty works only with a controlling terminal.
            script(
                &sv.join("SYS/setup"),
                r#"if (: < /dev/tty) 2>/dev/null; then echo setup-has-a-tty; else echo setup-has-no-tty; fi >> "$T/order""#,
            );
            script(
                &sv.join("a/run"),
                r#"echo a-up >> "$T/order"; exec sleep 1000"#,
            );
        },
        &[&bind],
    );
    c.until("a up", || c.lines().contains(&"a-up".to_string()));
    // nitro took the console first: SYS/setup has to steal it.
    assert_eq!(c.lines(), ["setup-has-a-tty", "a-up"]);
    // SAFETY: signalling the nitro this test started.
    unsafe { libc::kill(c.nitro, libc::SIGTERM) };
    assert_eq!(c.wait().0, 0);
}

#[test]
fn reboot_datagram_re_executes_nitro_in_place() {
    require_unshare!();
    let mut c = Container::start(system);
    system_up(&c);
    let first_stray = c.children_marked("stray.sh");
    assert_eq!(c.request(&[0, 0, proto::TAG_REBOOT]), [0, 0, proto::TAG_OK]);
    c.until("SYS/setup ran a second time and a is up again", || {
        c.count("setup-end") == 2 && c.count("a-up") == 2
    });
    assert_eq!(
        c.lines(),
        [
            "setup-begin",
            "setup-end",
            "a-up",
            "finish-begin 0 0 reboot",
            "finish-end",
            "a-stopped",
            "stray-killed",
            "stray-exited",
            "setup-begin",
            "setup-end",
            "a-up",
        ]
    );
    // The same process, still pid 1 of the same namespace: an exec.
    c.poll_end();
    assert!(c.ended.is_none(), "nitro exited instead of re-executing");
    assert_eq!(children_of(c.unshare.id() as i32), [c.nitro]);
    assert!(cmdline(c.nitro).contains("nitro"), "{}", cmdline(c.nitro));
    assert!(
        first_stray
            .iter()
            .all(|p| !children_of(c.nitro).contains(p)),
        "the stray of the first boot was killed"
    );
    c.until("the control socket is back", || c.state("a").is_some());
    assert_eq!(
        c.request(&[0, 0, proto::TAG_SHUTDOWN]),
        [0, 0, proto::TAG_OK]
    );
    let (status, _) = c.wait();
    assert_eq!(status, 0, "log: {:?}", c.lines());
    assert_eq!(c.count("finish-begin 0 0 shutdown"), 1);
}

#[test]
fn sys_finish_is_awaited_in_full_and_services_stay_up_meanwhile() {
    require_unshare!();
    let mut c = Container::start(|sv| {
        script(
            &sv.join("SYS/finish"),
            r#"echo "finish-begin $*" >> "$T/order"
touch "$T/finishing"
while [ ! -e "$T/go" ] && [ -d "$T" ]; do sleep 0.05; done
echo finish-end >> "$T/order""#,
        );
        logging_service(sv, "a");
        logging_service(sv, "b");
        // Created down; an `up` during SYS/finish must not start it.
        logging_service(sv, "c");
        file(&sv.join("c/down"), "");
        // A service whose run and an orphan of it exit during SYS/finish.
        script(
            &sv.join("quitter/run"),
            r#"( sh -c 'while [ ! -e "$T/quit" ] && [ -d "$T" ]; do sleep 0.05; done' & )
while [ ! -e "$T/quit" ] && [ -d "$T" ]; do sleep 0.05; done
echo quitter-exited >> "$T/order""#,
        );
    });
    for name in ["a", "b", "quitter"] {
        c.until_state(name, State::Up);
    }
    assert_eq!(
        c.request(&[0, 0, proto::TAG_SHUTDOWN]),
        [0, 0, proto::TAG_OK]
    );
    c.until("SYS/finish runs", || c.path("finishing").exists());

    // Services can be stopped while SYS/finish runs, not started.
    assert_eq!(c.command(proto::TAG_DOWN, "b"), [0, 0, proto::TAG_OK]);
    c.until_state("b", State::Down);
    c.command(proto::TAG_UP, "c");

    // For 2 s at least, with requests coming in and children exiting
    // (the quitter's run and its orphan), `a` stays UP, the quitter is
    // not restarted and c not started.
    let began = Instant::now();
    let mut quit = false;
    let mut quitter_gone = false;
    while began.elapsed() < Duration::from_secs(2) || !quitter_gone {
        assert!(began.elapsed() < DEADLINE, "the quitter never ended");
        assert_eq!(
            c.state("a"),
            Some(State::Up),
            "a stopped before SYS/finish ended"
        );
        let list = c.request(&[0, 0, proto::TAG_LIST]);
        assert!(!list.is_empty());
        if !quit && began.elapsed() > Duration::from_millis(500) {
            file(&c.path("quit"), "");
            quit = true;
        }
        let quitter = c.query("quitter").expect("quitter is known");
        if quit && quitter.1 == 0 {
            quitter_gone = true;
        }
        assert!(
            !quitter_gone || quitter.1 == 0,
            "the quitter restarted during SYS/finish: {quitter:?}"
        );
        assert_eq!(
            c.state("c"),
            Some(State::Down),
            "c started during SYS/finish"
        );
    }
    file(&c.path("go"), "");
    let (status, _) = c.wait();
    assert_eq!(status, 0);
    let lines = c.lines();
    let at = |l: &str| {
        lines
            .iter()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("{l} missing: {lines:?}"))
    };
    assert!(at("finish-begin 0 0 shutdown") < at("b-stopped"));
    assert!(at("b-stopped") < at("quitter-exited"));
    assert!(at("quitter-exited") < at("finish-end"));
    assert!(at("finish-end") < at("a-stopped"), "{lines:?}");
    assert_eq!(c.count("quitter-exited"), 1, "{lines:?}");
    assert!(!lines.contains(&"c-up".to_string()), "{lines:?}");
}

/// A stray process that ignores SIGTERM (double-forked, so an orphan), and
/// `SYS/reincarnate`, which nitro execs at the very end as pid 1: it lists
/// the processes left in the namespace into `$T/left` (shell builtins
/// only, so the list holds none of its own helpers), and whether the
/// control socket is still there into `$T/socket`.
fn stubborn_system(sv: &Path) {
    script(
        &sv.join("stray/run"),
        r#"( sh -c 'trap "" TERM; echo $$ > "$T/stubborn"; exec sleep 1000' stubborn-stray & ); exec sleep 1000"#,
    );
    script(
        &sv.join("SYS/reincarnate"),
        r#"left=
for p in /proc/[0-9]*; do left="$left ${p#/proc/}"; done
echo $left > "$T/left"
if [ -e "$T/s/nitro.sock" ]; then echo left; else echo removed; fi > "$T/socket""#,
    );
}

/// Waits for the stubborn stray: an orphan of nitro ignoring SIGTERM.
fn stubborn_running(c: &Container) -> i32 {
    c.until(
        "the stubborn stray, a child of nitro ignoring SIGTERM",
        || {
            c.children_marked("sleep 1000")
                .iter()
                .any(|&p| ignores_sigterm(p))
        },
    );
    c.children_marked("sleep 1000")
        .into_iter()
        .find(|&p| ignores_sigterm(p))
        .unwrap()
}

fn ignores_sigterm(pid: i32) -> bool {
    read(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGTERM - 1)) != 0)
}

/// Shuts the stubborn system down: how long it took, from the request to
/// the end of nitro (`SYS/reincarnate` is immediate).
fn stubborn_shutdown(c: &mut Container) -> Duration {
    let stray = stubborn_running(c);
    let asked = Instant::now();
    assert_eq!(
        c.request(&[0, 0, proto::TAG_SHUTDOWN]),
        [0, 0, proto::TAG_OK]
    );
    let (status, ended) = c.wait();
    let took = ended - asked;
    assert_eq!(status, 0, "SYS/reincarnate's status");
    assert_eq!(
        read(&c.path("left")).trim(),
        "1",
        "at the end only pid 1 is left (SYS/reincarnate ran?); unshare: {}",
        read(&c.path("unshare.err"))
    );
    assert!(
        !Path::new(&format!("/proc/{stray}")).exists(),
        "the stray is gone"
    );
    assert_eq!(
        read(&c.path("socket")).trim(),
        "removed",
        "before SYS/reincarnate"
    );
    took
}

#[test]
fn a_stray_ignoring_sigterm_is_killed_after_sys_timeout_kill() {
    require_unshare!();
    let mut c = Container::start(|sv| {
        stubborn_system(sv);
        file(&sv.join("SYS/timeout-kill"), "1000\n");
    });
    let took = stubborn_shutdown(&mut c);
    eprintln!("shutdown with SYS/timeout-kill 1000 took {took:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}: the grace is 1 s");
}

/// `SYS/timeout-kill` is the grace before SIGKILL; after it the dying
/// get up to 7 s whatever it says: with 0, the stray killed at once was
/// still there when nitro handed over (found by a review of pid 1's end).
#[test]
fn after_sigkill_processes_get_their_time_whatever_sys_timeout_kill() {
    require_unshare!();
    // nitro's lines go to the console: a file here.
    let mut c = Container::start_after(
        |sv| {
            stubborn_system(sv);
            file(&sv.join("SYS/timeout-kill"), "0\n");
        },
        &[r#"touch "$T/console" && mount --bind "$T/console" /dev/console"#],
    );
    stubborn_shutdown(&mut c);
    let said = read(&c.path("console"));
    assert!(said.contains("sending SIGKILL"), "{said}");
    assert!(!said.contains("did not die"), "{said}");
}

#[test]
fn a_stray_ignoring_sigterm_is_killed_after_7_s_by_default() {
    require_unshare!();
    let mut c = Container::start(stubborn_system);
    let took = stubborn_shutdown(&mut c);
    eprintln!("shutdown with the default grace took {took:?}");
    assert!(took >= Duration::from_secs(6), "{took:?}: the grace is 7 s");
    assert!(took < Duration::from_secs(30), "{took:?}");
}

/// The stubborn system with `SYS/timeout-kill` = `grace`, and a herald:
/// an orphan that tells when the SIGTERM to every process came.
fn heralded_system(sv: &Path, grace: &str) {
    stubborn_system(sv);
    file(&sv.join("SYS/timeout-kill"), &format!("{grace}\n"));
    helper(
        sv,
        "herald.sh",
        r#"trap 'echo termed >> "$T/order"; exit 0' TERM; sleep 1000 & wait"#,
    );
    script(
        &sv.join("herald/run"),
        r#"( sh "$T/herald.sh" & ); exec sleep 1000"#,
    );
}

/// Shuts the heralded system down until every process got its SIGTERM:
/// the stubborn stray, which ignores it.
fn until_every_process_termed(c: &Container) -> i32 {
    let stray = stubborn_running(c);
    c.until("the herald, an orphan", || {
        !c.children_marked("herald.sh").is_empty()
    });
    assert_eq!(
        c.request(&[0, 0, proto::TAG_SHUTDOWN]),
        [0, 0, proto::TAG_OK]
    );
    c.until("the SIGTERM to every process", || c.count("termed") == 1);
    stray
}

#[test]
fn a_huge_sys_timeout_kill_waits_instead_of_wrapping_around() {
    require_unshare!();
    let mut c = Container::start(|sv| heralded_system(sv, "18446744073709551000"));
    let stray = until_every_process_termed(&c);
    // The grace is practically endless: no SIGKILL, no end of nitro.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(1500) {
        assert!(
            c.alive(),
            "nitro ended; unshare: {}",
            read(&c.path("unshare.err"))
        );
        assert!(ignores_sigterm(stray), "the stray was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: killing the stray of this test's namespace.
    unsafe { libc::kill(stray, libc::SIGKILL) };
    let (status, _) = c.wait();
    assert_eq!(status, 0, "SYS/reincarnate's status");
    assert_eq!(read(&c.path("left")).trim(), "1", "only pid 1 is left");
}

/// While pid 1 waits for every process to go (the SIGTERM to all, before
/// the SIGKILL), it still answers requests, as the C nitro does in its
/// loop: everything is DOWN, and a reboot request still decides the end.
#[test]
fn requests_are_answered_while_every_process_is_given_its_time() {
    require_unshare!();
    let mut c = Container::start(|sv| heralded_system(sv, "60000"));
    let stray = until_every_process_termed(&c);
    let answered = c.try_request(&nitro::client::request(proto::TAG_QUERY, b"herald"));
    // SAFETY: killing the stray of this test's namespace.
    unsafe { libc::kill(stray, libc::SIGKILL) };
    let (status, _) = c.wait();
    assert_eq!(status, 0, "SYS/reincarnate's status");
    let reply = answered.expect("no answer while every process is given its time");
    let herald = nitro::client::decode_query("herald", &reply).expect("herald is known");
    assert_eq!(herald.state, Some(State::Down));
}

/// A FIFO where `SYS/timeout-kill` should be, with no writer: pid 1 reads
/// it at the end as it reads the services' files, without waiting for a
/// writer.
#[test]
fn a_fifo_as_sys_timeout_kill_does_not_stop_the_end() {
    use std::os::unix::ffi::OsStrExt;
    require_unshare!();
    let mut c = Container::start(|sv| {
        script(&sv.join("a/run"), "exec sleep 1000");
        std::fs::create_dir_all(sv.join("SYS")).unwrap();
        let fifo = std::ffi::CString::new(sv.join("SYS/timeout-kill").as_os_str().as_bytes());
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.unwrap().as_ptr(), 0o600) }, 0);
    });
    c.until_state("a", State::Up);
    assert_eq!(
        c.request(&[0, 0, proto::TAG_SHUTDOWN]),
        [0, 0, proto::TAG_OK]
    );
    let (status, _) = c.wait();
    assert_eq!(status, 0, "unshare: {}", read(&c.path("unshare.err")));
}

/// Ten double-forked orphans that wait for `$T/<gate>`, then exit.
fn orphans(marker: &str, gate: &str) -> String {
    format!(
        r#"for i in 1 2 3 4 5 6 7 8 9 10; do
  ( sh -c 'while [ ! -e "$T/{gate}" ] && [ -d "$T" ]; do sleep 0.1; done' {marker} & )
done"#
    )
}

#[test]
fn orphans_are_reaped_while_running_and_during_sys_finish() {
    require_unshare!();
    let mut c = Container::start(|sv| {
        script(
            &sv.join("spawner/run"),
            &format!("{}\nexec sleep 1000", orphans("orphan-running", "gate1")),
        );
        script(
            &sv.join("SYS/finish"),
            &format!(
                r#"{}
touch "$T/finishing"
while [ ! -e "$T/go" ] && [ -d "$T" ]; do sleep 0.1; done"#,
                orphans("orphan-finishing", "gate2")
            ),
        );
    });
    for (marker, gate) in [("orphan-running", "gate1"), ("orphan-finishing", "gate2")] {
        if marker == "orphan-finishing" {
            assert_eq!(
                c.request(&[0, 0, proto::TAG_SHUTDOWN]),
                [0, 0, proto::TAG_OK]
            );
            c.until("SYS/finish runs", || c.path("finishing").exists());
        }
        c.until(&format!("10 {marker} reparented to nitro"), || {
            c.children_marked(marker).len() == 10
        });
        file(&c.path(gate), "");
        let end = Instant::now() + DEADLINE;
        loop {
            let (left, zombies) = (c.children_marked(marker), c.zombies());
            if left.is_empty() && zombies.is_empty() {
                break;
            }
            assert!(
                Instant::now() < end,
                "{marker}: still there {left:?}, zombies {zombies:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(
        matches!(c.state("spawner"), Some(State::Starting | State::Up)),
        "services are up while SYS/finish runs"
    );
    file(&c.path("go"), "");
    assert_eq!(c.wait().0, 0);
}

/// How a main service ends in `main_system`.
#[derive(Clone, Copy)]
enum MainEnd {
    Exit3,
    Sigkill,
    /// `run` is not executable: FATAL.
    Fatal,
}

/// A main service `app` that ends as `how` once `$T/go` exists, a
/// `finish` for it, SYS/finish, and an ordinary service `other`.
fn main_system(sv: &Path, how: MainEnd) {
    let gate = r#"while [ ! -e "$T/go" ] && [ -d "$T" ]; do sleep 0.05; done"#;
    file(&sv.join("app/main"), "");
    match how {
        MainEnd::Exit3 => script(&sv.join("app/run"), &format!("{gate}\nexit 3")),
        MainEnd::Sigkill => script(&sv.join("app/run"), &format!("{gate}\nkill -KILL $$")),
        MainEnd::Fatal => {
            script(&sv.join("app/setup"), gate);
            file(&sv.join("app/run"), "#!/bin/sh\nexit 0\n");
        }
    }
    script(
        &sv.join("app/finish"),
        r#"echo "app-finish $1 $2" >> "$T/order"; sleep 0.3; echo app-finish-end >> "$T/order""#,
    );
    script(&sv.join("SYS/finish"), r#"echo "finish $*" >> "$T/order""#);
    logging_service(sv, "other");
}

fn expected_main_order(how: MainEnd) -> Vec<String> {
    let finish = match how {
        MainEnd::Exit3 => "app-finish 3 0",
        MainEnd::Sigkill => "app-finish -1 9",
        MainEnd::Fatal => "app-finish 111 0",
    };
    [
        "other-up",
        finish,
        "app-finish-end",
        "finish 0 0 shutdown",
        "other-stopped",
    ]
    .map(String::from)
    .to_vec()
}

fn main_service_as_pid_1(how: MainEnd, expected: i32) {
    let mut c = Container::start(|sv| main_system(sv, how));
    c.until_state("other", State::Up);
    file(&c.path("go"), "");
    let (status, _) = c.wait();
    assert_eq!(status, expected, "log: {:?}", c.lines());
    assert_eq!(c.lines(), expected_main_order(how));
}

#[test]
fn main_service_exit_3_makes_pid_1_exit_3() {
    require_unshare!();
    main_service_as_pid_1(MainEnd::Exit3, 3);
}

#[test]
fn main_service_killed_by_sigkill_makes_pid_1_exit_137() {
    require_unshare!();
    main_service_as_pid_1(MainEnd::Sigkill, 137);
}

#[test]
fn main_service_fatal_makes_pid_1_exit_111() {
    require_unshare!();
    main_service_as_pid_1(MainEnd::Fatal, 111);
}

/// nitro started directly by the test; killed if the test fails.
struct Plain {
    child: Child,
    tmp: tempfile::TempDir,
}

impl Plain {
    fn start(tmp: tempfile::TempDir, sv: &Path, sock: &Path) -> Plain {
        let child = Command::new(nitro_bin())
            .arg(sv)
            .env("NITRO_SOCK", sock)
            .env("T", tmp.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(tmp.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(tmp.path().join("stderr")).unwrap())
            .spawn()
            .expect("spawn nitro");
        Plain { child, tmp }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Exit status (-1 for a signal), within the end deadline.
    fn wait(&mut self) -> i32 {
        let end = Instant::now() + END_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < end,
                "nitro did not end; stderr: {}",
                read(&self.path("stderr"))
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        // Open the gates, then an orderly stop takes the services with it
        // (a plain nitro kills nothing else; the scripts' loops also end
        // when the temp dir is gone).
        file(&self.path("gate"), "");
        file(&self.path("go"), "");
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling the nitro this test started.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + DEADLINE;
            while self.child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn as_a_plain_child_a_main_service_sets_the_status_and_orphans_are_reaped() {
    let tmp = tempfile::tempdir().unwrap();
    let sv = tmp.path().join("sv");
    main_system(&sv, MainEnd::Exit3);
    helper(
        &sv,
        "orphan.sh",
        r#"while [ ! -e "$T/gate" ] && [ -d "$T" ]; do sleep 0.05; done"#,
    );
    // A grandchild whose parent exits at once.
    script(
        &sv.join("app/run"),
        r#"sh -c 'sh "$T/orphan.sh" & echo $! > "$T/orphan"'
while [ ! -e "$T/go" ] && [ -d "$T" ]; do sleep 0.05; done
exit 3"#,
    );
    let sock = tmp.path().join("s/nitro.sock");
    let mut nitro = Plain::start(tmp, &sv, &sock);
    let pid = nitro.child.id() as i32;
    until("the orphan", || {
        !read(&nitro.path("orphan")).trim().is_empty()
    });
    let orphan: i32 = read(&nitro.path("orphan")).trim().parse().unwrap();
    until("the orphan reparented to nitro, a child subreaper", || {
        ppid(orphan) == Some(pid)
    });
    file(&nitro.path("gate"), "");
    until("the orphan reaped by nitro", || {
        !Path::new(&format!("/proc/{orphan}")).exists()
    });
    until("other is up", || {
        read(&nitro.path("order")).contains("other-up")
    });
    file(&nitro.path("go"), "");
    assert_eq!(nitro.wait(), 3, "stderr: {}", read(&nitro.path("stderr")));
    let lines: Vec<String> = read(&nitro.path("order"))
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, expected_main_order(MainEnd::Exit3));
}

#[test]
fn timeout_kill_of_a_service_shortens_its_stop() {
    require_unshare!();
    let c = Container::start(|sv| {
        script(
            &sv.join("stubborn/run"),
            r#"trap '' TERM; touch "$T/ready"; exec sleep 1000"#,
        );
        file(&sv.join("stubborn/timeout-kill"), "500\n");
    });
    c.until("stubborn runs, ignoring SIGTERM", || {
        c.path("ready").exists()
    });
    let asked = Instant::now();
    assert_eq!(
        c.command(proto::TAG_DOWN, "stubborn"),
        [0, 0, proto::TAG_OK]
    );
    let end = asked + DEADLINE;
    loop {
        let now = Instant::now();
        if c.state("stubborn") == Some(State::Down) {
            break;
        }
        assert!(now < end, "stubborn never went down");
        std::thread::sleep(Duration::from_millis(5));
    }
    let took = asked.elapsed();
    eprintln!("stop with timeout-kill 500 took {took:?}");
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}: 500 ms, not 7 s");
}

#[test]
fn a_missing_service_directory_exits_111() {
    let tmp = tempfile::tempdir().unwrap();
    let status = Command::new(nitro_bin())
        .arg(tmp.path().join("missing"))
        .env("NITRO_SOCK", tmp.path().join("s/nitro.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(111));
    require_unshare!();
    let mut c = Container::start(|sv| std::fs::remove_dir(sv).unwrap());
    assert_eq!(c.wait().0, 111, "as pid 1");
}

/// A world-writable directory for the socket: nitro refuses it.
fn open_dir(tmp: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let open = tmp.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    open
}

#[test]
fn an_unusable_socket_exits_111_or_execs_sys_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let sv = tmp.path().join("sv");
    logging_service(&sv, "a");
    let open = open_dir(tmp.path());
    let run = || {
        let mut child = Command::new(nitro_bin())
            .arg(&sv)
            .env("NITRO_SOCK", open.join("nitro.sock"))
            .env("T", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let end = Instant::now() + END_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                // SAFETY: signalling the nitro this test started; its
                // orderly stop takes service `a` with it.
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let _ = child.wait();
                let _ = child.wait();
                panic!("nitro accepted a world-writable socket directory");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (pid, status.code())
    };
    let (_, code) = run();
    assert_eq!(code, Some(111), "no SYS/fatal");
    assert!(!open.join("nitro.sock").exists());
    script(
        &sv.join("SYS/fatal"),
        // With builtins only: a shell blocks every signal for a moment
        // while it forks, and a child reading its status then saw that.
        r#"echo $$ > "$T/fatal-ran"
while read -r line; do
    case $line in Sig[IB][gl][nk]:*) echo "$line" ;; esac
done < /proc/$$/status > "$T/fatal-signals"
exit 42"#,
    );
    let (pid, code) = run();
    assert_eq!(code, Some(42), "nitro's status is SYS/fatal's");
    // It starts as a service would: nothing nitro ignores (SIGPIPE) stays
    // ignored, nothing is blocked.
    assert_eq!(
        read(&tmp.path().join("fatal-signals")),
        "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"
    );
    assert_eq!(
        read(&tmp.path().join("fatal-ran")).trim(),
        pid.to_string(),
        "SYS/fatal replaced nitro (exec, same pid)"
    );
    assert!(!tmp.path().join("order").exists(), "no service started");
}
