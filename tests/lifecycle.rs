//! The service lifecycle of SPEC sections 2 and 3, end to end.

mod support;

use std::time::{Duration, Instant};

use nitro::proto::{State, TAG_DOWN, TAG_UP};
use support::*;

#[test]
fn becomes_up_two_seconds_after_start_without_notification_fd() {
    let mut n = Nitro::start(|sv| script(&sv.join("a/run"), "exec sleep 1000"));
    let starting = n.wait_for("a", State::Starting);
    let up = n.wait_for("a", State::Up);
    assert!(
        up - starting >= Duration::from_millis(1900),
        "{:?}",
        up - starting
    );
}

#[test]
fn notification_fd_pipe_readiness_needs_a_newline() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("a/run"),
            r#"printf x >&3; while [ ! -e "$T/go" ]; do sleep 0.05; done; echo >&3; exec sleep 1000"#,
        );
        file(&sv.join("a/notification-fd"), "3\n");
    });
    n.wait_for("a", State::Starting);
    // Well past the 2 s default: still STARTING without the newline.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(n.state("a"), Some(State::Starting));
    file(&n.path("go"), "");
    n.wait_for("a", State::Up);
}

#[test]
fn notification_pipe_closed_without_newline_stays_starting_until_ready() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("a/run"),
            r#"exec 3>&-; touch "$T/closed"; exec sleep 1000"#,
        );
        file(&sv.join("a/notification-fd"), "3");
        script(&sv.join("b/run"), "exec sleep 1000");
        file(&sv.join("b/notification-fd"), "0");
    });
    until("a closed its pipe", || n.path("closed").exists());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(n.state("a"), Some(State::Starting));
    assert_eq!(n.state("b"), Some(State::Starting));
    assert_eq!(n.ctl(&["ready", "b"]).0, 0);
    n.wait_for("b", State::Up);
    assert_eq!(n.ctl(&["ready", "a"]).0, 0);
    n.wait_for("a", State::Up);
}

#[test]
fn setup_status_decides_between_run_fatal_and_delay() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("ok/setup"), "exit 0");
        script(&sv.join("ok/run"), "exec sleep 1000");
        script(&sv.join("fatal/setup"), "exit 111");
        script(&sv.join("fatal/run"), "exec sleep 1000");
        script(&sv.join("retry/setup"), r#"echo x >> "$T/tries"; exit 1"#);
        script(&sv.join("retry/run"), "exec sleep 1000");
    });
    n.wait_for("ok", State::Setup);
    n.wait_for("ok", State::Starting);
    n.wait_for("fatal", State::Fatal);
    n.wait_for("retry", State::Delay);
    until("setup tried again", || {
        read(&n.path("tries")).lines().count() >= 2
    });
    assert!(!n.seen("fatal").contains(&State::Starting));
}

#[test]
fn a_one_shot_is_oneshot_and_its_finish_runs_on_down() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("o/setup"), "true");
        script(&sv.join("o/finish"), r#"echo "$@" > "$T/finish""#);
    });
    n.wait_for("o", State::Oneshot);
    assert_eq!(n.ctl(&["stop", "o"]).0, 0);
    assert_eq!(read(&n.path("finish")), "0 0\n");
    assert_eq!(n.state("o"), Some(State::Down));
}

#[test]
fn finish_gets_exit_status_signal_and_exec_failure() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("e/run"),
            r#"[ -e "$T/once" ] && exec sleep 1000; touch "$T/once"; sleep 1.2; exit 7"#,
        );
        script(&sv.join("e/finish"), r#"echo "$@" >> "$T/e""#);
        script(&sv.join("k/run"), "exec sleep 1000");
        script(&sv.join("k/finish"), r#"echo "$@" >> "$T/k""#);
        file(&sv.join("x/run"), "not executable");
        script(&sv.join("x/finish"), r#"echo "$@" >> "$T/x""#);
    });
    until("e's finish", || read(&n.path("e")) == "7 0\n");
    n.wait_for("k", State::Starting);
    assert_eq!(n.ctl(&["kill", "k"]).0, 0);
    until("k's finish", || read(&n.path("k")) == "-1 9\n");
    n.wait_for("x", State::Fatal);
    until("x's finish", || read(&n.path("x")) == "111 0\n");
    let wstatus = n.ctl(&["list", "x"]).1;
    assert!(wstatus.contains("(wstatus -1)"), "{wstatus}");
}

#[test]
fn fast_exits_wait_the_respawn_delay() {
    let mut n = Nitro::start(|sv| script(&sv.join("c/run"), r#"echo x >> "$T/runs"; exit 3"#));
    let first = n.wait_for("c", State::Starting);
    n.wait_for("c", State::Delay);
    let second = n.wait_for("c", State::Starting);
    assert!(
        second - first >= Duration::from_millis(900),
        "{:?}",
        second - first
    );
}

#[test]
fn long_runs_restart_at_once_with_down_in_between() {
    let mut n = Nitro::start(|sv| script(&sv.join("a/run"), r#"sleep 1.2; exit 0"#));
    n.wait_for("a", State::Starting);
    n.wait_for("a", State::Down);
    n.wait_for("a", State::Starting);
    let seen = n.seen("a");
    assert!(!seen[..3].contains(&State::Delay), "{seen:?}");
}

#[test]
fn stop_sends_the_down_signal_then_sigkill_after_seven_seconds() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("h/run"),
            r#"trap 'echo hup > "$T/h"; exit 0' HUP; touch "$T/h-trap"; while :; do sleep 0.05; done"#,
        );
        file(&sv.join("h/down-signal"), "h\n");
        script(
            &sv.join("stubborn/run"),
            r#"trap '' TERM; touch "$T/stubborn-trap"; while :; do sleep 0.05; done"#,
        );
    });
    // Signals only once the traps are set.
    until("the traps are set", || {
        n.path("h-trap").exists() && n.path("stubborn-trap").exists()
    });
    assert_eq!(n.ctl(&["stop", "h"]).0, 0);
    assert_eq!(read(&n.path("h")), "hup\n");
    let asked = Instant::now();
    assert_eq!(n.command(TAG_DOWN, "stubborn"), [0, 0, 80]);
    n.wait_for("stubborn", State::Shutdown);
    let down = n.wait_for("stubborn", State::Down);
    assert!(
        down - asked >= Duration::from_millis(6500),
        "{:?}",
        down - asked
    );
}

#[test]
fn down_from_finish_cancels_the_restart() {
    let n = Nitro::start(|sv| {
        script(
            &sv.join("a/run"),
            r#"echo x >> "$T/runs"; sleep 1.2; exit 1"#,
        );
        script(
            &sv.join("a/finish"),
            &format!("{} down . ; touch \"$T/finished\"", nitroctl_bin()),
        );
    });
    until("finish ran", || n.path("finished").exists());
    n.until_state("a", State::Down);
    // A restart would come at once (run lived over a second).
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(n.state("a"), Some(State::Down), "not restarted");
    // Counted from what `run` wrote: the start of `finish` is announced
    // as STARTING too, as the C nitro does.
    assert_eq!(read(&n.path("runs")), "x\n", "run started once");
}

#[test]
fn up_while_stopping_restarts() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("a/run"),
            // Stops only once the test says so: UP must come while it stops.
            r#"trap 'until [ -e "$T/go" ]; do sleep 0.05; done; exit 0' TERM; touch "$T/trapped"; while :; do sleep 0.05; done"#,
        );
    });
    n.wait_for("a", State::Starting);
    until("the trap is set", || n.path("trapped").exists());
    assert_eq!(n.command(TAG_DOWN, "a"), [0, 0, 80]);
    n.wait_for("a", State::Shutdown);
    assert_eq!(n.command(TAG_UP, "a"), [0, 0, 80]);
    n.wait_for("a", State::Restart);
    file(&n.path("go"), "");
    n.wait_for("a", State::Starting);
}

#[test]
fn restart_goes_through_restart_down_starting_up() {
    let mut n = Nitro::start(|sv| script(&sv.join("a/run"), "exec sleep 1000"));
    n.wait_for("a", State::Up);
    let (_, before) = n.query("a").unwrap();
    assert_eq!(n.ctl(&["restart", "a"]).0, 0);
    n.wait_for("a", State::Restart);
    n.wait_for("a", State::Down);
    n.wait_for("a", State::Starting);
    n.wait_for("a", State::Up);
    let (_, after) = n.query("a").unwrap();
    assert_ne!(before, after);
}

#[test]
fn children_get_default_signals_an_empty_mask_and_only_their_fds() {
    let n = Nitro::start_with(
        |sv| {
            script(
                &sv.join("a/run"),
                r#"grep -E '^Sig(Ign|Blk)' /proc/self/status > "$T/sig"; ls /proc/self/fd > "$T/fds"; echo "$PATH" > "$T/path"; exec sleep 1000"#,
            );
            file(&sv.join("a/notification-fd"), "5");
        },
        |cmd| {
            cmd.env_remove("PATH");
        },
    );
    until("the script ran", || !read(&n.path("path")).is_empty());
    let sig = read(&n.path("sig"));
    for line in sig.lines() {
        assert!(line.ends_with("0000000000000000"), "{sig}");
    }
    // ls itself opens one fd for the directory it lists.
    let fds: Vec<u32> = read(&n.path("fds"))
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(fds.starts_with(&[0, 1, 2]), "{fds:?}");
    assert!(fds.contains(&5), "{fds:?}");
    assert!(fds.len() <= 5, "{fds:?}");
    assert_eq!(read(&n.path("path")), "/usr/bin:/bin:/usr/sbin:/sbin\n");
}

#[test]
fn sigterm_stops_everything_removes_the_socket_and_exits_0() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("a/run"), "exec sleep 1000");
        script(&sv.join("a/finish"), r#"touch "$T/a-finished""#);
    });
    n.wait_for("a", State::Starting);
    let status = n.stop();
    assert_eq!(status.code(), Some(0));
    assert!(n.path("a-finished").exists());
    assert!(!n.sock.exists());
}

#[test]
fn reboot_re_executes_nitro_when_not_pid_1() {
    let n = Nitro::start(|sv| script(&sv.join("a/run"), r#"echo x >> "$T/runs"; exec sleep 1000"#));
    // STARTING is announced when `run` is spawned, before its shell
    // wrote anything: a reboot right then killed it first, and the test
    // waited in vain for a second line.
    until("the first start", || {
        read(&n.path("runs")).lines().count() == 1
    });
    let pid = n.pid();
    assert_eq!(n.ctl(&["Reboot"]).0, 0);
    let end = Instant::now() + DEADLINE;
    while read(&n.path("runs")).lines().count() < 2 {
        assert!(
            Instant::now() < end,
            "no second start; nitro said:\n{}",
            n.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        n.ctl(&["info"]).1.lines().next().unwrap(),
        format!("nitro_pid {pid}")
    );
}
