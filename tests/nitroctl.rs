//! nitroctl's commands, options, outputs and exit statuses (SPEC section 9),
//! against the real nitro.

mod support;

use std::time::{Duration, Instant};

use nitro::proto::State;
use support::*;

fn services(sv: &std::path::Path) {
    script(
        &sv.join("a/run"),
        r#"trap 'echo usr1 >> "$T/a-signals"' USR1; touch "$T/a-trap"; while :; do sleep 0.05; done"#,
    );
    file(&sv.join("a/notification-fd"), "0");
    script(&sv.join("b/run"), "echo >&3; exec sleep 1000");
    file(&sv.join("b/notification-fd"), "3");
    script(&sv.join("o/setup"), "true");
    script(&sv.join("f/run"), "exit 1");
    script(&sv.join("f/setup"), "exit 111");
    file(&sv.join("f/down"), "");
}

#[test]
fn list_info_and_their_formats() {
    let mut n = Nitro::start(services);
    n.wait_for("b", State::Up);
    n.wait_for("o", State::Oneshot);
    let (status, out, _) = n.ctl(&[]);
    assert_eq!(status, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(lines[0].starts_with("STARTING a (pid "), "{out}");
    assert!(lines[0].contains(") (wstatus 0) "), "{out}");
    assert!(lines[2].starts_with("DOWN f (wstatus 0) "), "{out}");
    assert!(
        lines[3].starts_with("ONESHOT o (wstatus 0) ") && lines[3].ends_with('s'),
        "{out}"
    );
    assert_eq!(n.ctl(&["l"]).1, out);
    let (status, out, _) = n.ctl(&["list", "o", "b"]);
    assert_eq!(status, 0);
    assert!(
        out.starts_with("ONESHOT o ") && out.lines().nth(1).unwrap().starts_with("UP b "),
        "{out}"
    );
    let (_, info, _) = n.ctl(&["info"]);
    let keys: Vec<&str> = info.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "nitro_pid",
            "pid",
            "max_service",
            "total_reaps",
            "total_sv_reaps",
            "allocs"
        ]
    );
}

#[test]
fn json_output_parses() {
    let mut n = Nitro::start(services);
    n.wait_for("b", State::Up);
    let (status, out, _) = n.ctl(&["--json", "list"]);
    assert_eq!(status, 0);
    assert!(
        out.starts_with("[{\"name\":\"a\",\"state\":\"STARTING\",\"pid\":"),
        "{out}"
    );
    assert!(out.contains("{\"name\":\"f\",\"state\":\"DOWN\",\"pid\":null,\"wstatus\":0,\"exit_code\":0,\"signal\":null,"), "{out}");
    let checked = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys; d=json.load(sys.stdin); assert len(d)==4 and d[1]['state']=='UP'",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(out.as_bytes())?;
            c.wait()
        });
    if let Ok(status) = checked {
        assert!(status.success(), "python3 could not parse {out}");
    }
    let (_, info, _) = n.ctl(&["info", "--json"]);
    assert!(
        info.starts_with(&format!("{{\"nitro_pid\":{},", n.pid())),
        "{info}"
    );
}

#[test]
fn start_stop_restart_and_fatal() {
    let mut n = Nitro::start(services);
    assert_eq!(n.ctl(&["start", "b", "o"]).0, 0);
    assert_eq!(n.ctl(&["stop", "b", "o"]).0, 0);
    assert_eq!(n.state("b"), Some(State::Down));
    assert_eq!(n.state("o"), Some(State::Down));
    let (status, _, err) = n.ctl(&["start", "f"]);
    assert_eq!(status, 1, "FATAL while starting");
    assert!(err.contains('f'), "{err}");
    assert_eq!(n.ctl(&["start", "b"]).0, 0);
    let (_, before) = n.query("b").unwrap();
    assert_eq!(n.ctl(&["restart", "b"]).0, 0);
    let (state, after) = n.query("b").unwrap();
    assert_eq!(state, State::Up);
    assert_ne!(before, after);
    n.wait_for("b", State::Up);
}

#[test]
fn fast_variants_and_waits() {
    let mut n = Nitro::start(services);
    n.wait_for("a", State::Starting);
    assert_eq!(n.ctl(&["fast-start", "a"]).0, 0);
    assert_eq!(n.ctl(&["wait-starting", "a"]).0, 0);
    assert_eq!(n.ctl(&["-t", "0.3", "wait-up", "a"]).0, 3);
    assert_eq!(n.ctl(&["ready", "a"]).0, 0);
    assert_eq!(n.ctl(&["wait-up", "a"]).0, 0);
    assert_eq!(n.ctl(&["r", "a"]).0, 0);
    assert_eq!(n.state("a"), Some(State::Starting));
    assert_eq!(n.ctl(&["fast-stop", "a"]).0, 0);
    assert_eq!(n.ctl(&["wait-down", "a"]).0, 0);
}

#[test]
fn up_down_and_exit_statuses() {
    let n = Nitro::start(services);
    assert_eq!(n.ctl(&["down", "b"]).0, 0);
    n.until_state("b", State::Down);
    assert_eq!(n.ctl(&["u", "b"]).0, 0);
    n.until_state("b", State::Up);
    assert_eq!(n.ctl(&["d", "b"]).0, 0);
    assert_eq!(n.ctl(&["up", "nosuch"]).0, 111);
    assert_eq!(n.ctl(&["bogus-command", "b"]).0, 2);
    assert_eq!(n.ctl(&["-x"]).0, 2);
    assert_eq!(n.ctl(&["start"]).0, 2);
    assert_eq!(n.ctl(&["start", "./does/not/exist"]).0, 111);
    let unreachable = std::process::Command::new(nitroctl_bin())
        .arg("list")
        .env("NITRO_SOCK", n.path("nothing-here.sock"))
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(4));
}

#[test]
fn timeout_and_options_anywhere() {
    let n = Nitro::start(services);
    let start = Instant::now();
    let (status, _, err) = n.ctl(&["wait-up", "f", "-t", "0.5"]);
    assert_eq!(status, 3);
    assert!(err.contains("timeout"), "{err}");
    assert!(start.elapsed() >= Duration::from_millis(450));
    let (status, out, _) = n.ctl(&["start", "-v", "b"]);
    assert_eq!(status, 0);
    assert!(out.lines().any(|l| l == "UP b"), "{out}");
}

#[test]
fn several_services_at_once_the_highest_status_wins() {
    let n = Nitro::start(services);
    let (status, _, err) = n.ctl(&["-t", "10", "start", "b", "f", "nosuch"]);
    assert_eq!(status, 111, "{err}");
    assert_eq!(n.state("b"), Some(State::Up));
}

#[test]
fn pidof_and_check() {
    let mut n = Nitro::start(services);
    n.wait_for("b", State::Up);
    let (_, b) = n.query("b").unwrap();
    let (_, a) = n.query("a").unwrap();
    let (status, out, _) = n.ctl(&["pidof", "b", "a"]);
    assert_eq!(status, 0);
    assert_eq!(out, format!("{b}\n{a}\n"), "argument order");
    assert_eq!(n.ctl(&["pidof", "o"]).0, 1);
    assert_eq!(n.ctl(&["check", "a", "b"]).0, 0);
    assert_eq!(n.ctl(&["check", "a", "f"]).0, 1);
}

#[test]
fn signals_by_name_and_letter() {
    let mut n = Nitro::start(services);
    until("the trap is set", || n.path("a-trap").exists());
    assert_eq!(n.ctl(&["1", "a"]).0, 0);
    until("a got SIGUSR1", || read(&n.path("a-signals")) == "usr1\n");
    assert_eq!(n.ctl(&["pause", "a"]).0, 0);
    assert_eq!(n.ctl(&["c", "a"]).0, 0);
    assert_eq!(n.ctl(&["k", "a"]).0, 0);
    n.wait_for("a", State::Down);
    let (status, _, err) = n.ctl(&["term", "o"]);
    assert_eq!((status, err.as_str()), (1, "nitroctl: o: not running\n"));
    let (status, _, err) = n.ctl(&["term", "nosuch"]);
    assert_eq!(
        (status, err.as_str()),
        (111, "nitroctl: nosuch: no such service\n")
    );
}

#[test]
fn path_arguments_name_the_last_component() {
    let mut n = Nitro::start(services);
    n.wait_for("b", State::Up);
    let (status, _, _) = n.ctl_in(&["stop", "."], &n.sv.join("b"));
    assert_eq!(status, 0);
    assert_eq!(n.state("b"), Some(State::Down));
    let abs = format!("{}/", n.sv.join("b").display());
    assert_eq!(n.ctl(&["start", &abs]).0, 0);
    assert_eq!(n.ctl_in(&["stop", "../b"], &n.sv.join("a")).0, 0);
}

#[test]
fn events_prints_changes_until_interrupted() {
    let n = Nitro::start(services);
    // Quiet first: events are best-effort, and the kernel queues only ten
    // datagrams per socket, so a burst of boot events could crowd ours out.
    n.until_state("b", State::Up);
    n.until_state("o", State::Oneshot);
    let events = std::process::Command::new(nitroctl_bin())
        .arg("events")
        .env("NITRO_SOCK", &n.sock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let notify = n.sock.parent().unwrap().join("notify");
    until("events bound its socket", || {
        std::fs::read_dir(&notify)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy() == format!("ALL,{}", events.id()))
    });
    assert_eq!(n.ctl(&["restart", "b"]).0, 0);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(events.id() as i32, libc::SIGINT) };
    let out = events.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("RESTART b\n"), "{text}");
    assert!(
        text.contains("STARTING b\n") || text.contains("UP b\n"),
        "{text}"
    );
}

#[test]
fn interrupted_waits_exit_128_plus_the_signal_and_clean_up() {
    let n = Nitro::start(services);
    let child = std::process::Command::new(nitroctl_bin())
        .args(["wait-up", "f"])
        .env("NITRO_SOCK", &n.sock)
        .spawn()
        .unwrap();
    let notify = n.sock.parent().unwrap().join("notify");
    let name = format!("f,{}_0", child.id());
    until("the wait is bound", || notify.join(&name).exists());
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(128 + 15));
    assert!(!notify.join(&name).exists());
}

#[test]
fn shutdown_via_nitroctl() {
    let mut n = Nitro::start(services);
    assert_eq!(n.ctl(&["Shutdown"]).0, 0);
    let mut child = n.child.take().unwrap();
    until("nitro exits", || child.try_wait().unwrap().is_some());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn metrics_exposition() {
    let mut n = Nitro::start(services);
    n.wait_for("b", State::Up);
    n.wait_for("o", State::Oneshot);
    let (status, out, _) = n.ctl(&["metrics"]);
    assert_eq!(status, 0);
    for needed in [
        "# TYPE nitro_service_state gauge",
        "nitro_service_state{service=\"b\",state=\"UP\"} 1",
        "nitro_service_state{service=\"b\",state=\"DOWN\"} 0",
        "nitro_service_up{service=\"o\"} 1",
        "nitro_service_pid{service=\"o\"} 0",
        "# TYPE nitro_service_restarts_total counter",
        "nitro_services 4",
        "# TYPE nitro_reaps_total counter",
        "nitro_allocations_since_start 0",
    ] {
        assert!(out.lines().any(|l| l == needed), "missing {needed}:\n{out}");
    }
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    // What a scraper sees: the reference parser of the text format.
    let parser = "import sys; from prometheus_client.parser import text_string_to_metric_families as p; \
                  f = {m.name: m for m in p(sys.stdin.read())}; \
                  assert f['nitro_service_up'].type == 'gauge' and len(f['nitro_service_up'].samples) == 4; \
                  assert f['nitro_service_restarts'].type == 'counter'";
    let mut child = std::process::Command::new("python3")
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(out.as_bytes())
            .unwrap();
    }
    let parsed = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&parsed.stderr);
    if err.contains("No module named 'prometheus_client'") {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs prometheus_client"
        );
        return;
    }
    assert!(parsed.status.success(), "{err}");
}

#[test]
fn a_hundred_services_in_one_call() {
    let n = Nitro::start(|sv| {
        for i in 0..100 {
            script(
                &sv.join(format!("s{i:03}/run")),
                "echo >&3; exec sleep 1000",
            );
            file(&sv.join(format!("s{i:03}/notification-fd")), "3");
        }
    });
    let names: Vec<String> = (0..100).map(|i| format!("s{i:03}")).collect();
    let mut args = vec!["-t", "30", "wait-up"];
    args.extend(names.iter().map(String::as_str));
    // More requests than nitro's socket queues: they must wait for room.
    let (status, _, err) = n.ctl(&args);
    assert_eq!(status, 0, "{err}");
    args[2] = "restart";
    let (status, _, err) = n.ctl(&args);
    assert_eq!(status, 0, "{err}");
}

/// A nitroctl whose stderr the test reads.
fn spawn_ctl(n: &Nitro, args: &[&str]) -> std::process::Child {
    std::process::Command::new(nitroctl_bin())
        .args(args)
        .env("NITRO_SOCK", &n.sock)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits at most `limit` for a nitroctl to exit: (status, stderr). One
/// that still runs then is killed (it would wait forever) and fails the
/// test.
fn exit_within(mut child: std::process::Child, limit: Duration) -> (i32, String) {
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("nitroctl still runs after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ends nitro with `signal` (SIGKILL leaves its socket behind, refused;
/// SIGTERM is an orderly exit that removes it) and waits for it.
fn end_nitro(n: &mut Nitro, signal: i32) {
    let mut child = n.child.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    child.wait().unwrap();
}

/// Well under the 10 s after which a silent nitro counts as gone: a nitro
/// that is gone is noticed by the next QUERY, a second after the last news.
const NOTICED: Duration = Duration::from_secs(7);

#[test]
fn waits_end_with_4_when_nitro_is_gone() {
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let mut n = Nitro::start(|sv| {
            // Never ready: STARTING until nitro goes.
            script(&sv.join("slow/run"), "exec sleep 1000");
            file(&sv.join("slow/notification-fd"), "3");
            file(&sv.join("slow/down"), "");
        });
        let start = spawn_ctl(&n, &["start", "slow"]);
        // STARTING shows nitro applied the request: nitroctl now waits.
        n.until_state("slow", State::Starting);
        let wait = spawn_ctl(&n, &["wait-up", "slow"]);
        let notify = n.sock.parent().unwrap().join("notify");
        until("wait-up is bound", || {
            notify.join(format!("slow,{}_0", wait.id())).exists()
        });
        let (_, pid) = n.query("slow").unwrap();
        end_nitro(&mut n, signal);
        if signal == libc::SIGKILL {
            // The service outlives a killed nitro (SIGTERM takes it
            // along); nitroctl has nothing to learn from it.
            // SAFETY: a process this test made nitro start.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        for child in [start, wait] {
            let (status, err) = exit_within(child, NOTICED);
            assert_eq!(status, 4, "signal {signal}: {err}");
            assert!(err.contains("cannot reach nitro"), "{err}");
        }
    }
}

#[test]
fn events_ends_with_4_when_nitro_is_gone() {
    for signal in [libc::SIGKILL, libc::SIGTERM] {
        let mut n = Nitro::start(|sv| script(&sv.join("o/setup"), "true"));
        n.wait_for("o", State::Oneshot);
        let events = spawn_ctl(&n, &["events"]);
        let notify = n.sock.parent().unwrap().join("notify");
        until("events is bound", || {
            notify.join(format!("ALL,{}", events.id())).exists()
        });
        end_nitro(&mut n, signal);
        let (status, err) = exit_within(events, NOTICED);
        assert_eq!(status, 4, "signal {signal}: {err}");
        assert!(err.contains("cannot reach nitro"), "{err}");
    }
}

/// `count` service names: `s000`, `s001`, …
fn numbered(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("s{i:03}")).collect()
}

/// Services named `names` that sleep once started, DOWN at first.
fn down_services(sv: &std::path::Path, names: &[String]) {
    for name in names {
        script(&sv.join(name).join("run"), "exec sleep 1000");
        file(&sv.join(name).join("down"), "");
    }
}

/// A wait on more services than nitro's socket queue holds lasts as long
/// as it takes: their QUERYs, each second, go out together and must wait
/// for room, not be dropped (a waiter whose QUERYs are all dropped hears
/// no reply, and took nitro for gone after 10 s).
#[test]
fn a_long_wait_on_many_services_lasts_as_long_as_it_takes() {
    let names = numbered(30);
    let n = Nitro::start(|sv| down_services(sv, &names));
    let mut args = vec!["wait-up"];
    args.extend(names.iter().map(String::as_str));
    let mut wait = spawn_ctl(&n, &args);
    let notify = n.sock.parent().unwrap().join("notify");
    until("wait-up is bound", || {
        notify.join(format!("s029,{}_29", wait.id())).exists()
    });
    // Past the 10 s after which a silent nitro counts as gone.
    let waiting = Instant::now();
    while waiting.elapsed() < Duration::from_millis(12_500) {
        assert!(
            wait.try_wait().unwrap().is_none(),
            "wait-up ended after {:?}",
            waiting.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut up = vec!["up"];
    up.extend(names.iter().map(String::as_str));
    assert_eq!(n.ctl(&up).0, 0);
    let (status, err) = exit_within(wait, DEADLINE);
    assert_eq!(status, 0, "{err}");
}

#[test]
fn a_wait_gives_up_on_a_nitro_that_answers_nothing() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("x/run"), "exec sleep 1000");
        file(&sv.join("x/down"), "");
    });
    let wait = spawn_ctl(&n, &["wait-up", "x"]);
    let notify = n.sock.parent().unwrap().join("notify");
    until("wait-up is bound", || {
        notify.join(format!("x,{}_0", wait.id())).exists()
    });
    let pid = n.pid() as i32;
    // SAFETY: signalling our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = Instant::now();
    let outcome = std::panic::catch_unwind(|| exit_within(wait, DEADLINE));
    // SAFETY: as above; a stopped nitro could not be stopped in order.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let (status, err) = outcome.unwrap_or_else(|e| std::panic::resume_unwind(e));
    assert_eq!(status, 4, "{err}");
    assert!(err.contains("cannot reach nitro"), "{err}");
    // The same 10 s as a plain request, counted from the first QUERY left
    // unanswered: sent after nitro stopped, or a moment before.
    assert!(stopped.elapsed() >= Duration::from_secs(9), "{err}");
    n.stop();
}

/// nitroctl with stdout and stderr pipes whose reader is gone (closed
/// before anything is written): it must end as SIGPIPE would, or with its
/// own status, never panic (101).
#[test]
fn closed_output_ends_with_141_or_the_status_never_a_panic() {
    let run = |args: &[&str], stdout: bool| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = std::process::Command::new(nitroctl_bin());
        cmd.args(args).env("NITRO_SOCK", "/nonexistent/nitro.sock");
        if stdout {
            cmd.stdout(writer).stderr(std::process::Stdio::null());
        } else {
            cmd.stderr(writer).stdout(std::process::Stdio::null());
        }
        cmd.status().unwrap().code()
    };
    assert_eq!(run(&["-h"], true), Some(141), "help into a closed pipe");
    assert_eq!(
        run(&["bogus-command"], false),
        Some(2),
        "usage on a closed stderr"
    );
    assert_eq!(
        run(&["info"], false),
        Some(4),
        "unreachable, told on a closed stderr"
    );
}

/// `events` whose reader reads nothing more still ends on SIGTERM.
#[test]
fn events_ends_on_a_signal_even_with_a_stuck_reader() {
    let names = numbered(40);
    let n = Nitro::start(|sv| down_services(sv, &names));
    let notify = n.sock.parent().unwrap().join("notify");
    // Its reader never reads: the pipe fills, and its write waits.
    let (reader, writer) = std::io::pipe().unwrap();
    let stuck = std::process::Command::new(nitroctl_bin())
        .arg("events")
        .env("NITRO_SOCK", &n.sock)
        .stdout(writer)
        .spawn()
        .unwrap();
    let socket = notify.join(format!("ALL,{}", stuck.id()));
    until("events bound its socket", || socket.exists());
    let mut up = vec!["up"];
    up.extend(names.iter().map(String::as_str));
    let mut down = up.clone();
    down[0] = "down";
    // Each round makes 80 lines (two a service) of about 12 bytes: some
    // 70 rounds fill the pipe, and nitroctl then waits in its write (the
    // system call it sleeps in is the first field of /proc/PID/syscall:
    // 1, write, on x86_64).
    let syscall = format!("/proc/{}/syscall", stuck.id());
    until("events to wait in its write", || {
        n.ctl(&up);
        n.ctl(&down);
        read(std::path::Path::new(&syscall)).starts_with("1 ")
    });
    // SAFETY: signalling our own child.
    unsafe { libc::kill(stuck.id() as i32, libc::SIGTERM) };
    let (status, _) = exit_within(stuck, DEADLINE);
    assert_eq!(status, 0);
    assert!(!socket.exists(), "its socket is removed");
    drop(reader);
}

/// A `-t` too long for the clock waits without limit; `status` reads a
/// FIFO as `notification-fd` without waiting for a writer; a wait on more
/// services than the soft limit of descriptors allows still works.
#[test]
fn odd_limits_and_files_do_not_stop_nitroctl() {
    let names = numbered(150);
    let n = Nitro::start(|sv| {
        script(&sv.join("fifo/run"), "exec sleep 1000");
        down_services(sv, &names);
    });
    let fifo = std::ffi::CString::new(
        n.sv.join("fifo/notification-fd")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let (status, _, err) = n.ctl(&["-t", "1e19", "info"]);
    assert_eq!(status, 0, "{err}");
    let (status, out, err) = exit_within_output(&n, &["-t", "5", "status", "fifo"]);
    assert_eq!(status, 0, "{err}");
    assert!(out.contains("fifo"), "{out}");
    let list = names.join(" ");
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("ulimit -S -n 100 && exec \"$0\" -t 1 wait-up {list}"),
            nitroctl_bin(),
        ])
        .env("NITRO_SOCK", &n.sock)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a timeout, nothing else: {err}");
}

/// Runs nitroctl, killing it (and failing) if it takes longer than
/// `DEADLINE`: (status, stdout, stderr).
fn exit_within_output(n: &Nitro, args: &[&str]) -> (i32, String, String) {
    let child = std::process::Command::new(nitroctl_bin())
        .args(args)
        .env("NITRO_SOCK", &n.sock)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id() as i32;
    let watchdog = std::thread::spawn(move || {
        let end = Instant::now() + DEADLINE;
        // SAFETY: kill(pid, 0) only checks.
        while Instant::now() < end && unsafe { libc::kill(id, 0) } == 0 {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: ends nitroctl if it still runs (a zombie ignores it).
        unsafe { libc::kill(id, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An argument that is not UTF-8 (a service directory may be named so)
/// is refused with a usage error, not a panic.
#[test]
fn an_argument_that_is_not_utf8_is_refused_not_a_panic() {
    use std::os::unix::ffi::OsStrExt;
    let out = std::process::Command::new(nitroctl_bin())
        .args(["list".as_ref(), std::ffi::OsStr::from_bytes(b"bad\xffname")])
        .env("NITRO_SOCK", "/nonexistent/nitro.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not UTF-8"));
}
