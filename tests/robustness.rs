//! Hostile input, broken service directories, exhausted resources and
//! misbehaving children: nitro keeps running and loses nothing.

mod support;

use std::os::unix::fs::symlink;
use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use nitro::proto::{self, Request, State};
use support::*;

fn hostile_datagram(rng: &mut Rng) -> Vec<u8> {
    let names: [&[u8]; 12] = [
        b"a",
        b"b",
        b"../a",
        b"a/../../x",
        b"/etc",
        b"../x@y",
        b"a,b",
        b"a\nb",
        b"a\0b",
        &[0xff, 0xfe, 0x80],
        &[b'n'; 63],
        &[b'n'; 65],
    ];
    let mut d = Vec::new();
    match rng.below(6) {
        0 => {}
        1 => d.extend((0..rng.below(8)).map(|_| rng.next() as u8)),
        2 => d.extend((0..rng.below(5000)).map(|_| rng.next() as u8)),
        _ => {
            let name = names[rng.below(names.len() as u64) as usize];
            let tag = match rng.below(4) {
                0 => rng.next() as u8,
                1 => 100 + rng.below(10) as u8,
                _ => 120 + rng.below(11) as u8,
            };
            let len: u16 = match rng.below(5) {
                0 => 0xffff,
                1 => 0xfffe,
                2 => rng.next() as u16,
                _ => name.len() as u16,
            };
            d.extend_from_slice(&len.to_le_bytes());
            d.push(tag);
            d.extend_from_slice(name);
            let cut = rng.below(d.len() as u64 + 1) as usize;
            if rng.below(3) == 0 {
                d.truncate(cut);
            }
        }
    }
    d
}

/// Whether a datagram is a well-formed command that legitimately changes
/// a service or the system (those are tested for their effect elsewhere).
fn legitimate(d: &[u8]) -> bool {
    match proto::parse_request(d) {
        Some(Request::Up(n) | Request::Down(n) | Request::Restart(n) | Request::Ready(n)) => {
            n == b"a" || n == b"b" || n.starts_with(b"t@")
        }
        Some(Request::Signal { name, .. }) => name == b"a" || name == b"b",
        Some(Request::Shutdown | Request::Reboot | Request::Rescan) => true,
        _ => false,
    }
}

#[test]
fn a_hundred_thousand_hostile_datagrams_change_nothing() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("a/run"), "exec sleep 1000");
        script(&sv.join("b/run"), "echo >&3; exec sleep 1000");
        file(&sv.join("b/notification-fd"), "3");
    });
    n.wait_for("a", State::Up);
    n.wait_for("b", State::Up);
    let before = n.ctl(&["list"]).1;
    let dir = tempfile::tempdir().unwrap();
    let socket = UnixDatagram::bind(dir.path().join("c")).unwrap();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let mut sent = 0;
    while sent < 100_000 {
        let d = hostile_datagram(&mut rng);
        if legitimate(&d) {
            continue;
        }
        socket.send_to(&d, &n.sock).unwrap();
        sent += 1;
    }
    let strip = |list: &str| {
        list.lines()
            .map(|l| l.rsplit_once(' ').unwrap().0.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&n.ctl(&["list"]).1),
        strip(&before),
        "every service as it was"
    );
    let info = n.ctl(&["info"]).1;
    assert!(
        info.contains("max_service 2\n") && info.contains("allocs 0\n"),
        "{info}"
    );
}

#[test]
fn broken_service_directories_end_in_a_defined_state() {
    let long = "x".repeat(64);
    let n = Nitro::start(|sv| {
        file(&sv.join("noexec/run"), "#!/bin/sh\nexec sleep 1000\n");
        std::fs::create_dir_all(sv.join("rundir/run")).unwrap();
        script(
            &sv.join("dangling/run"),
            "echo dangling-output; exec sleep 1000",
        );
        symlink("../nowhere", sv.join("dangling/log")).unwrap();
        script(&sv.join("garbage-fd/run"), "exec sleep 1000");
        file(&sv.join("garbage-fd/notification-fd"), "abc");
        script(&sv.join("huge-fd/run"), "exec sleep 1000");
        file(&sv.join("huge-fd/notification-fd"), "99999999999999999999");
        script(&sv.join("stdout-fd/run"), "exec sleep 1000");
        file(&sv.join("stdout-fd/notification-fd"), "1");
        script(&sv.join("empty-signal/run"), "exec sleep 1000");
        file(&sv.join("empty-signal/down-signal"), "");
        script(&sv.join("binary-signal/run"), "exec sleep 1000");
        std::fs::write(sv.join("binary-signal/down-signal"), [0xff, 0x00]).unwrap();
        script(&sv.join(&long).join("run"), "exec sleep 1000");
        script(&sv.join("a,b/run"), "exec sleep 1000");
        script(&sv.join("healthy/run"), "exec sleep 1000");
    });
    n.until_state("noexec", State::Fatal);
    n.until_state("rundir", State::Fatal);
    n.until_state("healthy", State::Up);
    n.until_state("dangling", State::Up);
    assert!(
        n.stderr().contains("dangling: log target"),
        "{}",
        n.stderr()
    );
    until("dangling's output on nitro's stdout", || {
        read(&n.path("stdout")).contains("dangling-output")
    });
    std::thread::sleep(Duration::from_millis(2200));
    for waits_for_ready in ["garbage-fd", "huge-fd", "stdout-fd"] {
        assert_eq!(
            n.state(waits_for_ready),
            Some(State::Starting),
            "{waits_for_ready}"
        );
    }
    assert!(
        n.stderr().contains("huge-fd: unusable notification-fd"),
        "{}",
        n.stderr()
    );
    assert_eq!(
        n.ctl(&["-t", "10", "stop", "empty-signal", "binary-signal"])
            .0,
        0
    );
    assert!(n.state(&long).is_none(), "64-byte names are not services");
    // Each skipped entry and each bad `log` is told once, with the reason.
    let stderr = n.stderr();
    for (line, count) in [
        (
            format!("{long}: a name of 64 bytes or more, not a service"),
            1,
        ),
        ("a,b: a name with ',' or a newline, not a service".into(), 1),
        ("dangling: log target nowhere is not a service".into(), 1),
        ("garbage-fd: no number in notification-fd".into(), 1),
    ] {
        assert_eq!(
            stderr.matches(line.as_str()).count(),
            count,
            "{line}\n{stderr}"
        );
    }
}

#[test]
fn a_service_directory_removed_while_running_is_stopped_and_forgotten() {
    let mut n = Nitro::start(|sv| script(&sv.join("a/run"), "exec sleep 1000"));
    n.wait_for("a", State::Starting);
    std::fs::remove_dir_all(n.sv.join("a")).unwrap();
    assert_eq!(
        n.ctl(&["restart", "a", "-t", "5"]).0,
        1,
        "FATAL: its directory is gone"
    );
    assert_eq!(n.ctl(&["rescan"]).0, 0);
    until("forgotten", || n.state("a").is_none());
}

#[test]
fn more_services_than_the_limit_are_refused_and_the_rest_runs() {
    let n = Nitro::start_with(
        |sv| {
            for i in 0..8 {
                script(&sv.join(format!("s{i}/run")), "exec sleep 1000");
            }
        },
        |cmd| {
            cmd.env("NITRO_MAX_SERVICES", "5");
        },
    );
    until("five run", || n.count_listed("UP ") == 5);
    assert!(n.stderr().contains("too many services"), "{}", n.stderr());
}

#[test]
fn a_huge_or_bad_nitro_max_services_is_a_warning_not_an_end() {
    for (value, warning) in [
        ("18446744073709551615", "using 65536"),
        ("99999999999999999999999", "using 65536"),
        ("0", "using 500"),
        ("lots", "using 500"),
    ] {
        let mut n = Nitro::start_with(
            |sv| script(&sv.join("a/run"), "exec sleep 1000"),
            |cmd| {
                cmd.env("NITRO_MAX_SERVICES", value);
            },
        );
        n.wait_for("a", State::Up);
        assert!(
            n.stderr().contains(warning),
            "NITRO_MAX_SERVICES={value}: {}",
            n.stderr()
        );
        assert_eq!(n.stop().code(), Some(0));
    }
}

#[test]
fn a_log_chain_longer_than_the_limit_starts_without_hanging() {
    let n = Nitro::start_with(
        |sv| {
            for i in 0..12 {
                script(&sv.join(format!("c{i:02}/run")), "exec sleep 1000");
                symlink(format!("../c{:02}", i + 1), sv.join(format!("c{i:02}/log"))).unwrap();
            }
        },
        |cmd| {
            cmd.env("NITRO_MAX_SERVICES", "6");
        },
    );
    until("the first six run", || n.count_listed("UP ") == 6);
    assert_eq!(n.ctl(&["info"]).0, 0);
}

#[test]
fn signal_storms_coalesce_and_lose_nothing() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("a/run"), "exec sleep 1000");
        script(&sv.join("b/run"), r#"sleep 0.2; exit 0"#);
    });
    n.wait_for("a", State::Up);
    for _ in 0..5000 {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(n.pid() as i32, libc::SIGHUP) };
    }
    script(&n.sv.join("c/run"), "exec sleep 1000");
    // SAFETY: as above.
    unsafe { libc::kill(n.pid() as i32, libc::SIGHUP) };
    n.wait_for("c", State::Starting);
    let info = n.ctl(&["info"]).1;
    assert!(
        info.contains("max_service 3\n") && info.contains("allocs 0\n"),
        "{info}"
    );
    assert_eq!(n.state("a"), Some(State::Up));
}

#[test]
fn a_stopped_logger_never_blocks_nitro() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("lg/run"), "exec cat > /dev/null");
        script(&sv.join("flood/run"), "exec cat /dev/zero");
        symlink("../lg", sv.join("flood/log")).unwrap();
        script(&sv.join("other/run"), "echo >&3; exec sleep 1000");
        file(&sv.join("other/notification-fd"), "3");
    });
    n.wait_for("lg", State::Starting);
    assert_eq!(n.ctl(&["pause", "lg"]).0, 0);
    for _ in 0..20 {
        let start = Instant::now();
        assert_eq!(n.ctl(&["restart", "other"]).0, 0);
        assert!(start.elapsed() < Duration::from_secs(5), "nitro is stuck");
    }
    assert_eq!(n.ctl(&["cont", "lg"]).0, 0);
}

#[test]
fn a_crash_loop_costs_at_most_one_start_a_second() {
    let n = Nitro::start(|sv| script(&sv.join("c/run"), r#"echo x >> "$T/starts"; exit 1"#));
    until("first start", || !read(&n.path("starts")).is_empty());
    let t0 = Instant::now();
    let first = read(&n.path("starts")).lines().count();
    std::thread::sleep(Duration::from_secs(4));
    let starts = read(&n.path("starts")).lines().count() - first;
    let elapsed = t0.elapsed().as_secs_f64();
    assert!(
        starts as f64 <= elapsed + 1.0,
        "{starts} starts in {elapsed:.1} s"
    );
    let stat = read(std::path::Path::new(&format!("/proc/{}/stat", n.pid())));
    let fields: Vec<u64> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().unwrap())
        .collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    assert!(
        (fields[0] + fields[1]) * 1000 / hz < 500,
        "nitro's own CPU: {fields:?} ticks"
    );
}

#[test]
fn few_descriptors_delay_starts_and_nitro_recovers() {
    if !Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return;
    }
    let mut n = Nitro::start_with(
        |sv| {
            for i in 0..6 {
                script(&sv.join(format!("s{i}/run")), "echo >&3; exec sleep 1000");
                file(&sv.join(format!("s{i}/notification-fd")), "3");
            }
        },
        |cmd| {
            let nitro = cmd.get_program().to_owned();
            let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
            *cmd = {
                let mut p = Command::new("prlimit");
                p.arg("--nofile=13:1024").arg(nitro).args(args);
                for (k, v) in cmd.get_envs() {
                    if let Some(v) = v {
                        p.env(k, v);
                    }
                }
                p.stdout(std::process::Stdio::null());
                p.stderr(std::process::Stdio::null());
                p
            };
        },
    );
    until("some service waits for descriptors", || {
        n.ctl(&["list"]).1.contains("DELAY ")
    });
    let before = std::fs::read_dir(format!("/proc/{}/fd", n.pid()))
        .unwrap()
        .count();
    let status = Command::new("prlimit")
        .arg(format!("--pid={}", n.pid()))
        .arg("--nofile=1024")
        .status()
        .unwrap();
    assert!(status.success());
    for i in 0..6 {
        n.wait_for(&format!("s{i}"), State::Up);
    }
    let after = std::fs::read_dir(format!("/proc/{}/fd", n.pid()))
        .unwrap()
        .count();
    assert!(after <= before, "no descriptor lost: {before} -> {after}");
}

/// A command that will run as the unprivileged user `nitrotest`.
fn as_nitrotest() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nitrotest",
        "--regid=nitrotest",
        "--clear-groups",
        "--",
    ]);
    cmd
}

/// Whether commands can run as `nitrotest` (only root can switch users;
/// CI runs as root, so there a test never skips).
fn can_switch_users() -> bool {
    if as_other_user(&["true"], std::path::Path::new("/")).is_some() {
        return true;
    }
    assert!(std::env::var_os("CI").is_none(), "CI runs as root");
    eprintln!("skipped: needs root to switch users");
    false
}

/// What `nitroctl list` prints for the nitro serving `sock`.
fn list_at(sock: &std::path::Path) -> String {
    let out = Command::new(nitroctl_bin())
        .arg("list")
        .env("NITRO_SOCK", sock)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Hands a directory tree to `nitrotest`, reachable by it.
fn give_to_nitrotest(dir: &std::path::Path) {
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let chown = Command::new("chown")
        .args(["-R", "nitrotest:nitrotest"])
        .arg(dir)
        .status();
    assert!(chown.unwrap().success());
}

/// Runs a command as the unprivileged user `nitrotest` (made if missing).
fn as_other_user(args: &[&str], sock: &std::path::Path) -> Option<std::process::Output> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    if !Command::new("id")
        .arg("nitrotest")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let made = Command::new("useradd")
            .args(["--system", "--no-create-home", "nitrotest"])
            .status();
        if !made.is_ok_and(|s| s.success()) {
            return None;
        }
    }
    as_nitrotest()
        .args(args)
        .env("NITRO_SOCK", sock)
        .output()
        .ok()
}

#[test]
fn other_users_can_neither_talk_to_nitro_nor_plant_sockets() {
    let n = Nitro::start(|sv| script(&sv.join("a/run"), "exec sleep 1000"));
    n.until_state("a", State::Up);
    let Some(out) = as_other_user(&[nitroctl_bin(), "list"], &n.sock) else {
        assert!(std::env::var_os("CI").is_none(), "CI runs as root");
        eprintln!("skipped: needs root");
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = as_other_user(&[nitroctl_bin(), "stop", "a"], &n.sock).unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(n.state("a"), Some(State::Up));
    let plant = n.sock.parent().unwrap().join("notify/ALL,evil");
    let out = as_other_user(
        &[
            "python3",
            "-c",
            &format!(
                "import socket; socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).bind({:?})",
                plant.display().to_string()
            ),
        ],
        &n.sock,
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(!plant.exists());
}

#[test]
fn an_unprivileged_user_runs_its_own_nitro_with_no_configuration() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0
        || as_other_user(&["true"], std::path::Path::new("/")).is_none()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let runtime = tmp.path().join("runtime");
    let config = tmp.path().join("config");
    script(&config.join("nitro/a/run"), "exec sleep 1000");
    std::fs::create_dir(&runtime).unwrap();
    give_to_nitrotest(tmp.path());
    let mut nitro = as_nitrotest()
        .arg(nitro_bin())
        .env_remove("NITRO_SOCK")
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("XDG_CONFIG_HOME", &config)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sock = runtime.join("nitro/nitro.sock");
    until("the socket in XDG_RUNTIME_DIR", || sock.exists());
    let out = as_nitrotest()
        .args([nitroctl_bin(), "-t", "10", "wait-up", "a"])
        .env_remove("NITRO_SOCK")
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert_succeeded("nitroctl wait-up as nitrotest", &out);
    // SAFETY: signalling the nitro we started.
    unsafe { libc::kill(nitro.id() as i32, libc::SIGTERM) };
    assert_eq!(nitro.wait().unwrap().code(), Some(0));
}

#[test]
fn failed_forks_delay_starts_and_nitro_recovers() {
    // The kernel does not enforce RLIMIT_NPROC for root: run nitro as
    // another user, with room for itself and three children.
    if !can_switch_users() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sv = tmp.path().join("sv");
    for i in 0..6 {
        script(&sv.join(format!("s{i}/run")), "exec sleep 1000");
    }
    give_to_nitrotest(tmp.path());
    let sock = tmp.path().join("s/nitro.sock");
    let nitro = as_nitrotest()
        .args(["prlimit", "--nproc=4:1000"])
        .arg(nitro_bin())
        .arg(&sv)
        .env("NITRO_SOCK", &sock)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let list = || list_at(&sock);
    until("some starts wait", || list().contains("DELAY "));
    let pid = nitro.id();
    let fds_before = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    // Only the same user may change its limits (root may lack
    // CAP_SYS_RESOURCE in a sandbox).
    let raised = as_nitrotest()
        .arg("prlimit")
        .arg(format!("--pid={pid}"))
        .arg("--nproc=1000:1000")
        .status()
        .unwrap();
    assert!(raised.success());
    until("all six run", || {
        list().lines().filter(|l| l.contains("(pid ")).count() == 6
    });
    let fds_after = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    assert!(
        fds_after <= fds_before,
        "no descriptor lost: {fds_before} -> {fds_after}"
    );
    // SAFETY: signalling the nitro we started.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let out = nitro.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot start run"),
        "one line on stderr per failure"
    );
}

/// A restart replaces `run` and its readiness pipe while the old pipe's
/// end of file may still be reported in the same wake-up: that event must
/// not read the new, empty pipe (which froze nitro for good).
#[test]
fn fast_restarts_of_a_service_with_a_readiness_pipe_never_freeze_nitro() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("r/run"), "exec sleep 1000");
        file(&sv.join("r/notification-fd"), "3");
    });
    n.wait_for("r", State::Starting);
    for round in 0..60 {
        let (code, _, err) = n.ctl(&["-t", "5", "fast-restart", "r"]);
        assert_eq!(code, 0, "round {round}: {err}");
    }
    let (code, out, err) = n.ctl(&["-t", "5", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("STARTING r"), "{out}");
}

/// A directory nitro may not look into is told, not silently skipped
/// (only an unprivileged nitro can meet one: root reads everything).
#[test]
fn an_unreadable_directory_is_told_and_the_rest_runs() {
    if !can_switch_users() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sv = tmp.path().join("sv");
    script(&sv.join("closed/run"), "exec sleep 1000");
    script(&sv.join("open/run"), "exec sleep 1000");
    file(&sv.join("README"), "not a service\n");
    give_to_nitrotest(tmp.path());
    std::fs::set_permissions(
        sv.join("closed"),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let sock = tmp.path().join("s/nitro.sock");
    let mut nitro = as_nitrotest()
        .arg(nitro_bin())
        .arg(&sv)
        .env("NITRO_SOCK", &sock)
        .stderr(std::fs::File::create(tmp.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let listed = || list_at(&sock);
    until("open runs", || listed().contains(" open "));
    assert!(!listed().contains("closed"));
    // SAFETY: signalling the nitro we started.
    unsafe { libc::kill(nitro.id() as i32, libc::SIGTERM) };
    assert_eq!(nitro.wait().unwrap().code(), Some(0));
    let stderr = read(&tmp.path().join("stderr"));
    assert_eq!(
        stderr
            .matches("closed: cannot look into it, not a service")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        !stderr.contains("README"),
        "plain files are skipped silently: {stderr}"
    );
    assert!(!listed().contains("closed"));
}

/// Bytes waiting in a pipe, and its capacity.
fn pipe_fill(fd: i32) -> (i32, i32) {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int; F_GETPIPE_SZ takes no argument.
    unsafe {
        libc::ioctl(fd, libc::FIONREAD, &mut waiting);
        (waiting, libc::fcntl(fd, libc::F_GETPIPE_SZ))
    }
}

/// nitro's stderr is a pipe nobody reads, and a service sharing it has
/// filled it: nitro's own lines must not block it (its one place to
/// block is the poll), and what it could not write is told once the
/// pipe drains.
#[test]
fn a_full_stderr_never_blocks_nitro() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut n = Nitro::start_with(
        |sv| {
            script(&sv.join("noisy/run"), "exec cat /dev/zero >&2");
            file(&sv.join("noisy/down"), "");
            // Not executable: each start tells "cannot exec run".
            file(&sv.join("broken/run"), "#!/bin/sh\n");
            file(&sv.join("broken/down"), "");
        },
        |cmd| {
            cmd.stderr(writer);
        },
    );
    let fd = reader.as_raw_fd();
    assert_eq!(n.ctl(&["up", "noisy"]).0, 0);
    until("the service to fill nitro's stderr", || {
        // Full: every page of the pipe taken, the first one only by
        // nitro's first line.
        let (waiting, size) = pipe_fill(fd);
        waiting > size - 4096
    });
    for _ in 0..3 {
        assert_eq!(n.ctl(&["up", "broken"]).0, 0);
        n.wait_for("broken", State::Fatal);
        let noisy = n.state("noisy");
        assert!(
            matches!(noisy, Some(State::Starting | State::Up)),
            "{noisy:?}"
        );
    }
    assert_eq!(n.ctl(&["stop", "noisy"]).0, 0);
    // SAFETY: setting a flag on a descriptor this test owns.
    unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = vec![0u8; 1 << 16];
    while reader.read(&mut buf).is_ok_and(|k| k > 0) {}
    assert_eq!(n.ctl(&["up", "broken"]).0, 0);
    n.wait_for("broken", State::Fatal);
    let mut told = String::new();
    until("nitro's lines on stderr", || {
        if let Ok(k) = reader.read(&mut buf) {
            told.push_str(&String::from_utf8_lossy(&buf[..k]));
        }
        told.contains("broken: cannot exec run")
    });
    assert!(
        told.contains("lines lost: stderr was full\n- nitro: broken: cannot exec run"),
        "{told:?}"
    );
}

/// Event receivers that never read (an `events` pipeline stuck on its
/// output, waiting `nitroctl`s stopped with Ctrl-Z): what they hold
/// counts against the control socket's send buffer, which the replies
/// need too. Requests are still answered, and a waiting `nitroctl`
/// still sees its service come up (from the events, or from the QUERY
/// it sends each second once events are held back).
#[test]
fn receivers_that_never_read_leave_room_for_the_replies() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("a/run"), "exec sleep 1000");
        file(&sv.join("a/down"), "");
    });
    let stuck: Vec<UnixDatagram> = (0..64)
        .map(|k| UnixDatagram::bind(n.path(&format!("s/notify/ALL,stuck{k}"))).unwrap())
        .collect();
    for _ in 0..20 {
        for command in ["up", "down"] {
            let (status, _, err) = n.ctl(&["-t", "5", command, "a"]);
            assert_eq!(status, 0, "{command}: {err}");
        }
    }
    n.wait_for("a", State::Starting);
    assert_eq!(n.ctl(&["-t", "5", "start", "a"]).0, 0);
    drop(stuck);
}

/// A service directory that became unsearchable while its service ran:
/// its `run` cannot be looked at, which is not the same as no `run`. The
/// start fails (FATAL, exec failed), as in the C nitro, and the service is
/// not taken for a one-shot that came up.
#[test]
fn a_service_directory_that_cannot_be_searched_is_no_one_shot() {
    if !can_switch_users() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sv = tmp.path().join("sv");
    script(&sv.join("d/run"), "exec sleep 1000");
    give_to_nitrotest(tmp.path());
    let sock = tmp.path().join("s/nitro.sock");
    let mut nitro = as_nitrotest()
        .arg(nitro_bin())
        .arg(&sv)
        .env("NITRO_SOCK", &sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until("d runs", || list_at(&sock).contains("UP d "));
    std::fs::set_permissions(
        sv.join("d"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let restart = as_other_user(&[nitroctl_bin(), "-t", "10", "restart", "d"], &sock).unwrap();
    let listed = list_at(&sock);
    // SAFETY: signalling the nitro we started.
    unsafe { libc::kill(nitro.id() as i32, libc::SIGTERM) };
    assert_eq!(nitro.wait().unwrap().code(), Some(0));
    let stderr = String::from_utf8_lossy(&restart.stderr);
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(listed.contains("FATAL d "), "{listed}");
}
