//! nitro frozen and thawed at random moments (SIGSTOP, SIGCONT) while its
//! services restart, signal readiness and log, and requests pile up: when
//! it runs again, everything that happened meanwhile arrives in one
//! wake-up. After every round it must answer at once, and at the end no
//! service may be stuck.

mod support;

use std::os::unix::fs::symlink;
use std::time::Duration;

use nitro::client::request;
use nitro::proto::{State, TAG_DOWN, TAG_LIST, TAG_RESTART, TAG_UP};
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
