//! nitro frozen and thawed at random moments (SIGSTOP, SIGCONT) while its
//! services restart, signal readiness and log, and requests pile up: when
//! it runs again, everything that happened meanwhile arrives in one
//! wake-up. After every round it must answer at once, and at the end no
//! service may be stuck.

mod support;

use std::os::unix::fs::symlink;
use std::time::Duration;

use nitro::client::request;
use nitro::proto::{State, TAG_DOWN, TAG_LIST, TAG_RESCAN, TAG_RESTART, TAG_UP};
use support::*;

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

const ROUNDS: usize = 25;
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

#[test]
fn nitro_stopped_and_continued_at_random_moments_stays_responsive() {
    let n = Nitro::start(|sv| {
        // Ready through its pipe at once.
        script(&sv.join("ready/run"), "echo >&3; exec sleep 1000");
        file(&sv.join("ready/notification-fd"), "3");
        // Never ready; its `run` ends after a second and comes back with
        // a new pipe in the same slot.
        script(&sv.join("flaky/run"), "exec sleep 1.1");
        file(&sv.join("flaky/notification-fd"), "3");
        // UP by the timer.
        script(&sv.join("tick/run"), "exec sleep 1000");
        // A writer and its logger.
        script(&sv.join("lg/run"), "exec cat > /dev/null");
        script(
            &sv.join("chatty/run"),
            "while :; do echo line; sleep 0.01; done",
        );
        symlink("../lg", sv.join("chatty/log")).unwrap();
        // A crash loop.
        script(&sv.join("crash/run"), "exit 3");
    });
    let pid = n.pid();
    let raw = n.raw();
    let targets = ["ready", "flaky", "tick", "lg", "chatty", "crash"];
    let mut rng = Rng(SEED);
    for round in 0..ROUNDS {
        signal(pid, libc::SIGSTOP);
        // While nitro sleeps its children exit, write to their pipes and
        // requests queue up; all of it is there when it wakes.
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        for _ in 0..rng.below(4) {
            let name = targets[rng.below(targets.len() as u64) as usize];
            let tag = [TAG_RESTART, TAG_RESTART, TAG_UP, TAG_DOWN][rng.below(4) as usize];
            // Replies go unread: nitro must never wait for a reader.
            let _ = raw.socket.send_to(&request(tag, name.as_bytes()), &n.sock);
        }
        signal(pid, libc::SIGCONT);
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        let probe = n.raw();
        probe
            .socket
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        probe.socket.send_to(&[0, 0, TAG_LIST], &n.sock).unwrap();
        let mut buf = [0u8; 4096];
        assert!(
            probe.socket.recv(&mut buf).is_ok(),
            "round {round}: nitro did not answer LIST within a second"
        );
    }
    // Nothing is stuck: every service comes (back) up.
    let (code, _, err) = n.ctl(&["-t", "20", "start", "ready", "tick", "lg", "chatty"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = n.ctl(&["-t", "20", "restart", "ready", "tick", "lg"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = n.ctl(&["-t", "20", "fast-restart", "flaky"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(n.ctl(&["up", "crash"]).0, 0);
    n.until_state("flaky", State::Starting);
    until("crash keeps trying", || {
        matches!(n.state("crash"), Some(State::Delay | State::Starting))
    });
}

/// Writes service `name` into `sv` (again, after a removal).
fn make(sv: &std::path::Path, name: &str) {
    match name {
        "lg" | "LOG" => script(&sv.join(name).join("run"), "exec cat > /dev/null"),
        "a" => {
            script(&sv.join("a/run"), "exec sleep 1000");
            script(&sv.join("a/finish"), "sleep 1");
        }
        "b" => {
            script(
                &sv.join("b/run"),
                "trap 'sleep 1; exit 0' TERM; echo >&3; sleep 1000 & wait",
            );
            file(&sv.join("b/notification-fd"), "3");
        }
        "c" => script(&sv.join("c/run"), "echo crash; exit 1"),
        "t@" => script(&sv.join("t@/run"), "echo hello; exec sleep 1000"),
        _ => unreachable!(),
    }
}

#[test]
fn random_requests_and_changes_of_the_directory_then_a_shutdown_that_ends() {
    for round in 0..ROUNDS_OF_CHANGES {
        changes_then_a_shutdown(SEED ^ round);
    }
}

const ROUNDS_OF_CHANGES: u64 = 6;

fn changes_then_a_shutdown(seed: u64) {
    let dirs = ["a", "b", "c", "lg", "t@", "LOG"];
    let mut n = Nitro::start(|sv| {
        for name in dirs {
            make(sv, name);
        }
        symlink("../lg", sv.join("a/log")).unwrap();
        symlink("../lg", sv.join("t@/log")).unwrap();
        symlink("../c", sv.join("c/log")).unwrap();
    });
    let raw = n.raw();
    let names = ["a", "b", "c", "lg", "t@1", "t@2", "LOG"];
    let mut rng = Rng(seed);
    for _ in 0..30 {
        match rng.below(8) {
            0..=3 => {
                let tag = [TAG_UP, TAG_DOWN, TAG_RESTART, TAG_RESTART][rng.below(4) as usize];
                let name = names[rng.below(names.len() as u64) as usize];
                // Replies go unread.
                let _ = raw.socket.send_to(&request(tag, name.as_bytes()), &n.sock);
            }
            4 => {
                let dir = n.sv.join(dirs[rng.below(dirs.len() as u64) as usize]);
                let _ = std::fs::remove_dir_all(dir);
            }
            5 => {
                let name = dirs[rng.below(dirs.len() as u64) as usize];
                if !n.sv.join(name).exists() {
                    make(&n.sv, name);
                }
            }
            6 => {
                let writer = n.sv.join(["a", "b", "t@"][rng.below(3) as usize]);
                let link = writer.join("log");
                let _ = std::fs::remove_file(&link);
                if writer.exists() && rng.below(2) == 0 {
                    let target = ["../lg", "../b", "../c"][rng.below(3) as usize];
                    let _ = symlink(target, link);
                }
            }
            _ => {
                let _ = raw.socket.send_to(&request(TAG_RESCAN, b""), &n.sock);
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below(150)));
    }
    // A service removed and still stopping as the shutdown begins.
    let _ = std::fs::remove_dir_all(n.sv.join(["a", "b"][rng.below(2) as usize]));
    let _ = raw.socket.send_to(&request(TAG_RESCAN, b""), &n.sock);
    std::thread::sleep(Duration::from_millis(100));
    // Whatever the sequence left, the shutdown ends (within the harness's
    // deadline), with every service down.
    assert_eq!(n.stop().code(), Some(0), "seed {seed}: {}", n.stderr());
}
