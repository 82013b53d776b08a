//! nitro's resource promises (SPEC section 8, last paragraph): no wake-ups
//! when idle, bounded descriptors, capacity.

mod support;

use std::time::Duration;

use nitro::proto::{State, TAG_RESCAN};
use support::*;

fn context_switches(pid: u32) -> u64 {
    read(std::path::Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .map(|l| l.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn two_hundred_idle_services_cost_no_wake_up() {
    let n = Nitro::start(|sv| {
        for i in 0..200 {
            let dir = sv.join(format!("s{i:03}"));
            script(&dir.join("run"), "echo >&3; exec sleep 1000");
            file(&dir.join("notification-fd"), "3");
        }
    });
    until("all up", || {
        let list = n.ctl(&["list"]).1;
        list.lines().count() == 200 && list.lines().all(|l| l.starts_with("UP "))
    });
    let before = context_switches(n.pid());
    // A measurement window, not synchronisation: nothing happens in it.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        context_switches(n.pid()),
        before,
        "nitro woke up while idle"
    );
}

#[test]
fn descriptors_stay_within_the_bound_through_churn() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("lg@/run"), "exec cat > /dev/null");
        for i in 0..20 {
            let dir = sv.join(format!("w{i}"));
            script(&dir.join("run"), "sleep 0.3; exit 1");
            std::os::unix::fs::symlink("../lg@", dir.join("log")).unwrap();
        }
        script(
            &sv.join("slow@/run"),
            r#"while [ ! -e "$T/ready" ]; do sleep 0.05; done; echo >&3; exec sleep 1000"#,
        );
        file(&sv.join("slow@/notification-fd"), "3");
    });
    n.wait_for("lg@w0", State::Starting);
    let bound = |n: &Nitro| {
        let list = n.ctl(&["list"]).1;
        let loggers = list.lines().filter(|l| l.contains(" lg@")).count();
        let waiting = list
            .lines()
            .filter(|l| l.starts_with("STARTING slow@"))
            .count();
        // 0-2, /dev/null, self-pipe, control socket, service dir, notify
        // dir, event socket, epoll; a little slack for a spawn in flight.
        13 + 2 * loggers + waiting
    };
    for round in 0..5 {
        for i in 0..10 {
            n.ctl(&["up", &format!("slow@{round}-{i}")]);
        }
        n.request(&[0, 0, TAG_RESCAN]);
        let fds = open_fds(n.pid());
        assert!(fds <= bound(&n), "{fds} descriptors > bound {}", bound(&n));
        for i in 0..10 {
            n.ctl(&["down", &format!("slow@{round}-{i}")]);
        }
    }
    file(&n.path("ready"), "");
    // A rescan forgets the instances that are down by then.
    until("slow instances forgotten", || {
        n.request(&[0, 0, TAG_RESCAN]);
        !n.ctl(&["list"]).1.contains("slow@")
    });
    let fds = open_fds(n.pid());
    assert!(fds <= bound(&n), "{fds} descriptors > bound {}", bound(&n));
}

#[test]
fn five_thousand_services_boot_list_and_shut_down() {
    let mut n = Nitro::start_with(
        |sv| {
            for i in 0..5000 {
                script(&sv.join(format!("service-{i:04}/setup")), "exit 0");
            }
        },
        |cmd| {
            cmd.env("NITRO_MAX_SERVICES", "5000");
        },
    );
    until_within(Duration::from_secs(300), "all 5000 are ONESHOT", || {
        let list = n.ctl(&["list"]).1;
        list.lines().count() == 5000 && list.lines().all(|l| l.starts_with("ONESHOT "))
    });
    let info = n.ctl(&["info"]).1;
    assert!(info.contains("max_service 5000\n"), "{info}");
    assert!(info.contains("allocs 0\n"), "{info}");
    assert_eq!(n.stop().code(), Some(0));
}
