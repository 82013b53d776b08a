//! nitro as pid 1 of a container (a private pid and mount namespace made
//! with `unshare`, as container runtimes do) and as a plain child process:
//! SYS scripts, the shutdown order, orphans, stop budgets, main services and
//! exit statuses (SPEC sections 6 and 8). Needs root and unshare; the tests
//! say so and pass without them (CI runs as root).

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

fn can_unshare() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--mount-proc", "true"])
        .status()
        .is_ok_and(|s| s.success())
}

macro_rules! require_unshare {
    () => {
        if !can_unshare() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the pid 1 tests"
            );
            eprintln!("skipped: needs root and unshare");
            return;
        }
    };
}

/// nitro as pid 1 of a fresh pid+mount namespace.
struct Container {
    tmp: tempfile::TempDir,
    unshare: Child,
}

impl Container {
    fn start(setup: impl FnOnce(&Path)) -> Container {
        let tmp = tempfile::tempdir().unwrap();
        let sv = tmp.path().join("sv");
        std::fs::create_dir(&sv).unwrap();
        setup(&sv);
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--mount-proc"])
            .arg(nitro_bin())
            .arg(&sv)
            .env("NITRO_SOCK", tmp.path().join("s/nitro.sock"))
            .env("T", tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut c = Container { tmp, unshare };
        let sock = c.path("s/nitro.sock");
        until("the control socket, or the end", || {
            sock.exists() || c.unshare.try_wait().ok().flatten().is_some()
        });
        c
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.tmp.path().join(rel)
    }

    /// nitro's pid as the host sees it: the child of unshare.
    fn nitro_pid(&self) -> i32 {
        let pid = self.unshare.id();
        let children = read(Path::new(&format!("/proc/{pid}/task/{pid}/children")));
        children
            .split_whitespace()
            .next()
            .expect("nitro runs")
            .parse()
            .unwrap()
    }

    fn request(&self, datagram: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let socket = std::os::unix::net::UnixDatagram::bind(dir.path().join("c")).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        socket.send_to(datagram, self.path("s/nitro.sock")).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = socket.recv(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn state(&self, name: &str) -> Option<nitro::proto::State> {
        let reply = self.request(&nitro::client::request(
            nitro::proto::TAG_QUERY,
            name.as_bytes(),
        ));
        nitro::client::decode_query(name, &reply).and_then(|s| s.state)
    }

    /// Waits for nitro (and so the namespace) to end; its exit status.
    fn wait(&mut self) -> i32 {
        let end = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.unshare.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < end, "nitro did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.unshare.try_wait().ok().flatten().is_none() {
            // Killing pid 1 of the namespace kills everything in it.
            let pid = self.unshare.id();
            for child in
                read(Path::new(&format!("/proc/{pid}/task/{pid}/children"))).split_whitespace()
            {
                // SAFETY: signalling a process we started.
                unsafe { libc::kill(child.parse().unwrap(), libc::SIGKILL) };
            }
            let _ = self.unshare.kill();
            let _ = self.unshare.wait();
        }
    }
}

fn order(c: &Container) -> Vec<String> {
    read(&c.path("order")).lines().map(String::from).collect()
}

fn system(sv: &Path) {
    script(&sv.join("SYS/setup"), r#"echo setup >> "$T/order""#);
    script(&sv.join("SYS/finish"), r#"echo "finish $*" >> "$T/order""#);
    script(
        &sv.join("a/run"),
        r#"echo a-up >> "$T/order"; trap 'echo a-stopped >> "$T/order"; exit 0' TERM; while :; do sleep 0.05; done"#,
    );
    // A stray process that outlives its service.
    script(
        &sv.join("stray/run"),
        r#"sh -c 'trap "echo stray-killed >> \"$T/order\"; exit 0" TERM; while :; do sleep 0.05; done' & exec sleep 1000"#,
    );
}

#[test]
fn sigterm_from_outside_stops_everything_in_order_and_exits_0() {
    require_unshare!();
    let mounts_before = read(Path::new("/proc/self/mountinfo"));
    let mut c = Container::start(system);
    until("a is up", || order(&c).contains(&"a-up".to_string()));
    until("stray runs", || c.state("stray").is_some());
    // nitro mounted /run (and maybe /dev) in its own namespace only.
    assert_eq!(read(Path::new("/proc/self/mountinfo")), mounts_before);
    // SAFETY: signalling the nitro we started.
    unsafe { libc::kill(c.nitro_pid(), libc::SIGTERM) };
    assert_eq!(c.wait(), 0);
    assert_eq!(
        order(&c),
        [
            "setup",
            "a-up",
            "finish 0 0 shutdown",
            "a-stopped",
            "stray-killed"
        ]
    );
}

#[test]
fn shutdown_request_exits_0_and_reboot_re_executes() {
    require_unshare!();
    let mut c = Container::start(system);
    until("a is up", || order(&c).contains(&"a-up".to_string()));
    assert_eq!(c.request(&[0, 0, nitro::proto::TAG_REBOOT]), [0, 0, 80]);
    until("SYS/setup ran again", || {
        order(&c).iter().filter(|l| *l == "setup").count() == 2
    });
    assert!(order(&c).contains(&"finish 0 0 reboot".to_string()));
    until("a is up again", || {
        order(&c).iter().filter(|l| *l == "a-up").count() == 2
    });
    until("the socket is back", || {
        c.path("s/nitro.sock").exists() && c.state("a").is_some()
    });
    assert_eq!(c.request(&[0, 0, nitro::proto::TAG_SHUTDOWN]), [0, 0, 80]);
    assert_eq!(c.wait(), 0);
}

#[test]
fn sys_finish_is_awaited_in_full_despite_requests_and_exits() {
    require_unshare!();
    let mut c = Container::start(|sv| {
        script(
            &sv.join("SYS/finish"),
            r#"touch "$T/finishing"; while [ ! -e "$T/go" ]; do sleep 0.05; done"#,
        );
        script(&sv.join("a/run"), "exec sleep 1000");
        script(&sv.join("blinker/run"), "sleep 0.2; exit 0");
    });
    until("a is up", || c.state("a") == Some(nitro::proto::State::Up));
    assert_eq!(c.request(&[0, 0, nitro::proto::TAG_SHUTDOWN]), [0, 0, 80]);
    until("SYS/finish runs", || c.path("finishing").exists());
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        assert_eq!(
            c.state("a"),
            Some(nitro::proto::State::Up),
            "services wait for SYS/finish"
        );
        c.request(&[0, 0, nitro::proto::TAG_LIST]);
    }
    file(&c.path("go"), "");
    assert_eq!(c.wait(), 0);
}

#[test]
fn a_stray_ignoring_sigterm_is_killed_after_the_grace_period() {
    require_unshare!();
    let mut c = Container::start(|sv| {
        file(&sv.join("SYS/timeout-kill"), "1000");
        script(
            &sv.join("stray/run"),
            r#"sh -c 'trap "" TERM; touch "$T/stubborn"; while :; do sleep 0.05; done' & exec sleep 1000"#,
        );
    });
    until("the stubborn process runs", || c.path("stubborn").exists());
    let asked = Instant::now();
    assert_eq!(c.request(&[0, 0, nitro::proto::TAG_SHUTDOWN]), [0, 0, 80]);
    assert_eq!(c.wait(), 0);
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

/// Zombie children of `pid`.
fn zombies_of(pid: i32) -> usize {
    read(Path::new(&format!("/proc/{pid}/task/{pid}/children")))
        .split_whitespace()
        .filter(|child| {
            let stat = read(Path::new(&format!("/proc/{child}/stat")));
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| rest.trim_start().starts_with('Z'))
        })
        .count()
}

#[test]
fn orphans_are_reaped_as_pid_1() {
    require_unshare!();
    let c = Container::start(|sv| {
        script(
            &sv.join("spawner/run"),
            r#"for i in 1 2 3 4 5 6 7 8 9 10; do sh -c 'sleep 0.1 & exit 0'; done; touch "$T/spawned"; exec sleep 1000"#,
        );
    });
    until("orphans made", || c.path("spawned").exists());
    let nitro = c.nitro_pid();
    until("no zombie left", || {
        std::thread::sleep(Duration::from_millis(200));
        zombies_of(nitro) == 0
    });
}

fn main_service(sv: &Path, run: &str) {
    script(&sv.join("SYS/finish"), r#"echo "finish $*" >> "$T/order""#);
    script(&sv.join("app/run"), run);
    file(&sv.join("app/main"), "");
    script(
        &sv.join("other/run"),
        r#"trap 'echo other-stopped >> "$T/order"; exit 0' TERM; while :; do sleep 0.05; done"#,
    );
}

#[test]
fn main_service_status_becomes_the_exit_status() {
    require_unshare!();
    for (run, expected) in [("sleep 0.5; exit 3", 3), ("kill -KILL $$", 137)] {
        let mut c = Container::start(|sv| main_service(sv, run));
        assert_eq!(c.wait(), expected, "{run}");
        assert_eq!(order(&c), ["finish 0 0 shutdown", "other-stopped"], "{run}");
    }
    let mut c = Container::start(|sv| {
        main_service(sv, "");
        file(&sv.join("app/run"), "not executable");
    });
    assert_eq!(c.wait(), 111);
}

#[test]
fn timeout_kill_shortens_the_stop() {
    require_unshare!();
    let c = Container::start(|sv| {
        script(
            &sv.join("stubborn/run"),
            r#"trap '' TERM; touch "$T/ready"; while :; do sleep 0.05; done"#,
        );
        file(&sv.join("stubborn/timeout-kill"), "500");
    });
    until("running", || c.path("ready").exists());
    let asked = Instant::now();
    assert_eq!(
        c.request(&nitro::client::request(nitro::proto::TAG_DOWN, b"stubborn")),
        [0, 0, 80]
    );
    until("down", || {
        c.state("stubborn") == Some(nitro::proto::State::Down)
    });
    let took = asked.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn as_a_plain_child_main_services_and_the_subreaper_work_too() {
    let tmp = tempfile::tempdir().unwrap();
    let sv = tmp.path().join("sv");
    script(
        &sv.join("app/run"),
        r#"sh -c 'sleep 30 & echo $! > "$T/orphan"'; while [ ! -e "$T/go" ]; do sleep 0.05; done; exit 3"#,
    );
    file(&sv.join("app/main"), "");
    let mut nitro = Command::new(nitro_bin())
        .arg(&sv)
        .env("NITRO_SOCK", tmp.path().join("s/nitro.sock"))
        .env("T", tmp.path())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    until("the orphan exists", || {
        !read(&tmp.path().join("orphan")).is_empty()
    });
    let orphan = read(&tmp.path().join("orphan")).trim().to_string();
    let ppid = || {
        let stat = read(Path::new(&format!("/proc/{orphan}/stat")));
        stat.rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .map(String::from)
    };
    until("reparented to nitro", || {
        ppid() == Some(nitro.id().to_string())
    });
    file(&tmp.path().join("go"), "");
    let status = nitro.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    // SAFETY: cleaning up the orphan we made.
    unsafe { libc::kill(orphan.parse().unwrap(), libc::SIGKILL) };
}

#[test]
fn missing_directory_exits_111_and_sys_fatal_takes_over() {
    let tmp = tempfile::tempdir().unwrap();
    let status = Command::new(nitro_bin())
        .arg(tmp.path().join("missing"))
        .env("NITRO_SOCK", tmp.path().join("s/nitro.sock"))
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(111));
    // A socket directory others can write to is refused: SYS/fatal runs.
    let sv = tmp.path().join("sv");
    script(&sv.join("SYS/fatal"), r#"touch "$T/fatal-ran""#);
    let open = tmp.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let status = Command::new(nitro_bin())
        .arg(&sv)
        .env("NITRO_SOCK", open.join("nitro.sock"))
        .env("T", tmp.path())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "SYS/fatal's status");
    assert!(tmp.path().join("fatal-ran").exists());
}
