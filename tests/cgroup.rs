//! One cgroup per service (docs/cgroups.md), against the real kernel: each
//! test makes a cgroup v2 of its own and hands it to nitro through
//! `NITRO_CGROUP`. Needs root and a cgroup v2 mount; without them the
//! tests say why and pass (CI must have both).

mod support;

use std::path::{Path, PathBuf};

use nitro::client::request;
use nitro::proto::{self, State};
use support::*;

/// A cgroup made for one test, removed (with what nitro left) at the end.
struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    fn new(test: &str) -> Option<TestCgroup> {
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mount = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(Path::new)
            .find(|m| m.join("cgroup.subtree_control").exists());
        let Some(mount) = mount.filter(|_| root) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the cgroup tests: root and cgroup v2 are needed"
            );
            eprintln!("skipped: needs root and a cgroup v2 mount");
            return None;
        };
        let path = mount.join(format!("nitro-test-{}-{test}", std::process::id()));
        std::fs::create_dir(&path).expect("a cgroup for the test");
        Some(TestCgroup { path })
    }

    fn service(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_cgroup(&self.path);
    }
}

/// Kills what is in the cgroup at `path` and removes it, children first.
/// The kill takes a moment and the removal fails until it is over: a
/// while is given (no panic here, which could be during a panic).
fn remove_cgroup(path: &Path) {
    let _ = std::fs::write(path.join("cgroup.kill"), "1");
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten().filter(|e| e.path().is_dir()) {
            remove_cgroup(&entry.path());
        }
    }
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::fs::remove_dir(path).is_err() && path.exists() && std::time::Instant::now() < end {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn start(cgroup: &TestCgroup, setup: impl FnOnce(&Path)) -> Nitro {
    let root = cgroup.path.clone();
    Nitro::start_with(setup, move |cmd| {
        cmd.env("NITRO_CGROUP", root);
    })
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Fails unless `pid` has ended (or is a zombie), its service being
/// down. The kernel empties a cgroup as each member leaves it on its way
/// out, a moment before the process turns zombie: the last one killed
/// may still look alive for that moment, so it gets a short while (what
/// a stop misses sleeps for 1000 s).
fn assert_ended(pid: i32) {
    until_within(
        std::time::Duration::from_secs(2),
        &format!("{pid} to end with its service"),
        || !alive(pid),
    );
}

fn pids(file: &Path) -> Vec<i32> {
    read(file)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// A `run` that leaves three processes behind: a background helper, one
/// that ignores SIGTERM, and a double-forked daemon; their pids in
/// `$T/left`.
const LEAVES_THINGS: &str = r#"
sleep 1001 & echo $! >> "$T/left"
sh -c 'trap "" TERM; echo $$ >> "$T/left"; exec sleep 1002' &
(sleep 1003 & echo $! >> "$T/left") &
while [ "$(wc -l < "$T/left")" -lt 3 ]; do sleep 0.01; done
"#;

/// Service `a`: UP once it left three processes behind; what a stop
/// leaves gets 300 ms after SIGTERM.
fn leaving_things(sv: &Path) {
    script(
        &sv.join("a/run"),
        &format!("{LEAVES_THINGS}\necho ready >&3\nexec sleep 1000"),
    );
    file(&sv.join("a/notification-fd"), "3");
    file(&sv.join("a/timeout-kill"), "300");
}

/// Notes in `$T/overlap` every process listed in `$T/left` still alive.
const OVERLAP: &str = r#"
alive() { s=$(cut -d' ' -f3 /proc/$1/stat 2>/dev/null) && [ "$s" != Z ]; }
for pid in $(cat "$T/left" 2>/dev/null); do
    if alive $pid; then echo "$0: $pid alive" >> "$T/overlap"; fi
done
"#;

#[test]
fn a_stopped_service_leaves_nothing_behind() {
    let Some(cgroup) = TestCgroup::new("stop") else {
        return;
    };
    let mut n = start(&cgroup, |sv| {
        leaving_things(sv);
    });
    n.wait_for("a", State::Up);
    let left = pids(&n.path("left"));
    assert_eq!(left.len(), 3);
    let members = read(&cgroup.service("a").join("cgroup.procs"));
    for pid in &left {
        assert!(
            members.lines().any(|m| m == pid.to_string()),
            "{pid} in {members}"
        );
    }
    let (status, _, err) = n.ctl(&["stop", "a"]);
    assert_eq!(status, 0, "{err}");
    for pid in left {
        assert_ended(pid);
    }
    assert!(read(&cgroup.service("a").join("cgroup.events")).contains("populated 0"));
}

/// A root so deep that the path of a service's `cgroup.events` does not
/// fit nitro's buffer for inotify: its emptying cannot be watched (as
/// when inotify's limit of watches is reached). The stop ends all the
/// same, once `timeout-kill` is over, and nitro says why it is late.
#[test]
fn a_cgroup_that_cannot_be_watched_is_looked_at_instead() {
    let Some(cgroup) = TestCgroup::new("unwatched") else {
        return;
    };
    let root = ["x", "y", "z"]
        .iter()
        .fold(cgroup.path.clone(), |path, c| path.join(c.repeat(150)));
    std::fs::create_dir_all(&root).unwrap();
    let mut n = Nitro::start_with(leaving_things, |cmd| {
        cmd.env("NITRO_CGROUP", &root);
    });
    n.wait_for("a", State::Up);
    let left = pids(&n.path("left"));
    let (status, _, err) = n.ctl(&["-t", "15", "stop", "a"]);
    assert_eq!(status, 0, "{err}");
    for pid in left {
        assert_ended(pid);
    }
    assert!(
        n.stderr().contains("a: cannot watch its cgroup"),
        "{}",
        n.stderr()
    );
}

/// Sets nitro's soft limit of descriptors.
fn limit_fds(n: &Nitro, soft: usize) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", n.pid()))
        .arg(format!("--nofile={soft}:1024"))
        .status()
        .unwrap();
    assert!(status.success());
}

/// Out of descriptors, nitro cannot look into a service's cgroup: the
/// stop must not end while it cannot tell what is left (it ended at once,
/// everything left running, and the next start ran outside the cgroup).
/// Once descriptors are back, what is left is killed and the stop ends
/// (found by a review of exhausted resources).
#[test]
fn out_of_descriptors_a_stop_waits_until_it_sees_the_cgroup_empty() {
    let Some(cgroup) = TestCgroup::new("nofile") else {
        return;
    };
    let mut n = start(&cgroup, leaving_things);
    n.wait_for("a", State::Up);
    let left = pids(&n.path("left"));
    // No descriptor below the limit is free: every open fails.
    let open: Vec<usize> = std::fs::read_dir(format!("/proc/{}/fd", n.pid()))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let lowest_free = (0..).find(|fd| !open.contains(fd)).unwrap();
    limit_fds(&n, lowest_free);
    // Not DOWN while nitro cannot look: `timeout-kill` (300 ms) passes
    // many times over.
    let (status, _, _) = n.ctl(&["-t", "3", "stop", "a"]);
    let still: Vec<_> = left.iter().filter(|&&p| alive(p)).collect();
    limit_fds(&n, 1024);
    assert_ne!(status, 0, "DOWN with {still:?} left");
    n.wait_for("a", State::Down);
    for pid in left {
        assert_ended(pid);
    }
}

#[test]
fn what_run_leaves_is_gone_before_finish_and_before_the_next_run() {
    let Some(cgroup) = TestCgroup::new("restart") else {
        return;
    };
    let n = start(&cgroup, |sv| {
        script(
            &sv.join("a/run"),
            &format!("{OVERLAP}\n: > \"$T/left\"\n{LEAVES_THINGS}\necho gen >> \"$T/gens\""),
        );
        script(
            &sv.join("a/finish"),
            &format!("{OVERLAP}\necho finished >> \"$T/finished\""),
        );
        file(&sv.join("a/timeout-kill"), "300");
    });
    until("three generations", || {
        read(&n.path("gens")).lines().count() >= 3
    });
    // `finish` ran each time: never killed along with what `run` left.
    until("two finishes", || {
        read(&n.path("finished")).lines().count() >= 2
    });
    n.ctl(&["stop", "a"]);
    n.until_state("a", State::Down);
    assert_eq!(read(&n.path("overlap")), "", "two generations overlapped");
    for pid in pids(&n.path("left")) {
        assert_ended(pid);
    }
}

#[test]
fn what_a_failed_setup_leaves_is_gone_before_the_next_try_and_after_a_stop() {
    let Some(cgroup) = TestCgroup::new("setup") else {
        return;
    };
    let n = start(&cgroup, |sv| {
        script(
            &sv.join("a/setup"),
            &format!(
                "{OVERLAP}\n: > \"$T/left\"\n{LEAVES_THINGS}\necho try >> \"$T/tries\"\nexit 1"
            ),
        );
        script(&sv.join("a/run"), "exec sleep 1000");
        file(&sv.join("a/timeout-kill"), "300");
    });
    until("three tries", || {
        read(&n.path("tries")).lines().count() >= 3
    });
    n.ctl(&["stop", "a"]);
    n.until_state("a", State::Down);
    assert_eq!(read(&n.path("overlap")), "", "two tries overlapped");
    for pid in pids(&n.path("left")) {
        assert_ended(pid);
    }
}

#[test]
fn a_service_that_cannot_have_a_cgroup_still_works() {
    let Some(cgroup) = TestCgroup::new("nocgroup") else {
        return;
    };
    // A file of that name is in every cgroup: no directory can be made.
    let mut n = start(&cgroup, |sv| {
        script(
            &sv.join("cgroup.procs/run"),
            "echo ready >&3; exec sleep 1000",
        );
        file(&sv.join("cgroup.procs/notification-fd"), "3");
    });
    n.wait_for("cgroup.procs", State::Up);
    assert!(
        n.stderr().contains("cgroup.procs: no cgroup"),
        "{}",
        n.stderr()
    );
    let (status, _, err) = n.ctl(&["stop", "cgroup.procs"]);
    assert_eq!(status, 0, "{err}");
}

#[test]
fn nitro_cgroup_off_works_as_without_cgroups() {
    let mut n = Nitro::start_with(
        |sv| {
            script(
                &sv.join("a/run"),
                "sleep 1001 & echo $! > \"$T/left\"; echo ready >&3; exec sleep 1000",
            );
            file(&sv.join("a/notification-fd"), "3");
        },
        |cmd| {
            cmd.env("NITRO_CGROUP", "off");
        },
    );
    n.wait_for("a", State::Up);
    let (status, _, err) = n.ctl(&["stop", "a"]);
    assert_eq!(status, 0, "{err}");
    let left = pids(&n.path("left"));
    assert!(
        left.iter().all(|&pid| alive(pid)),
        "a helper is left, as today"
    );
    for pid in left {
        // SAFETY: signalling the helper the test's service started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(
        n.stderr().contains("cgroups not used: NITRO_CGROUP=off"),
        "{}",
        n.stderr()
    );
}

/// Someone else (an admin, the service itself) empties a service's
/// cgroup through `cgroup.kill`: Linux then kills every child cloned into
/// it. The `finish` that follows runs all the same, and so does the next
/// `run`.
#[test]
fn a_cgroup_killed_by_someone_else_still_runs_finish_and_the_next_run() {
    let Some(cgroup) = TestCgroup::new("foreign-kill") else {
        return;
    };
    let mut n = start(&cgroup, |sv| {
        script(&sv.join("a/run"), "echo >&3; exec sleep 1000");
        file(&sv.join("a/notification-fd"), "3");
        script(&sv.join("a/finish"), r#"echo "$@" >> "$T/finished""#);
    });
    n.wait_for("a", State::Up);
    let (_, first) = n.query("a").unwrap();
    std::fs::write(cgroup.service("a").join("cgroup.kill"), "1").unwrap();
    until("finish to run", || read(&n.path("finished")) == "-1 9\n");
    n.wait_for("a", State::Up);
    let (state, pid) = n.query("a").unwrap();
    assert_eq!(state, State::Up);
    assert_ne!(pid, first, "a new run");
}

/// A service whose programs make cgroups of their own below its cgroup
/// (a container runtime, a nested nitro): what runs there gets the
/// SIGTERM of a stop too, and the service's cgroup goes with those below
/// it when the service is forgotten.
#[test]
fn cgroups_a_service_made_below_its_own_are_stopped_and_removed() {
    let Some(cgroup) = TestCgroup::new("nested") else {
        return;
    };
    let sub = cgroup.service("nest").join("sub");
    let body = format!(
        r#"mkdir -p '{sub}/deeper'
sh -c 'echo $$ > "{sub}/cgroup.procs"; trap "echo termed >> \"$T/termed\"; exit 0" TERM; echo $$ > "$T/moved"; while :; do sleep 0.05; done' &
while ! [ -s "$T/moved" ]; do sleep 0.01; done
echo >&3; exec sleep 1000"#,
        sub = sub.display()
    );
    let mut n = start(&cgroup, |sv| {
        script(&sv.join("nest/run"), &body);
        file(&sv.join("nest/notification-fd"), "3");
        file(&sv.join("nest/timeout-kill"), "5000");
    });
    n.wait_for("nest", State::Up);
    let moved = read(&n.path("moved")).trim().to_string();
    assert!(
        read(&sub.join("cgroup.procs")).contains(&moved),
        "the helper sits below the service's cgroup"
    );
    let (status, _, err) = n.ctl(&["-t", "15", "stop", "nest"]);
    assert_eq!(status, 0, "{err}");
    assert_eq!(read(&n.path("termed")), "termed\n", "SIGTERM reached it");
    std::fs::remove_dir_all(n.sv.join("nest")).unwrap();
    assert_eq!(n.ctl(&["scan"]).0, 0);
    until("the service to be forgotten", || n.query("nest").is_none());
    assert!(
        !cgroup.service("nest").exists(),
        "its cgroup and those below it are removed"
    );
}

#[test]
fn nitro_removes_the_cgroups_it_made_when_it_exits() {
    let Some(cgroup) = TestCgroup::new("exit") else {
        return;
    };
    let mut n = start(&cgroup, |sv| {
        script(&sv.join("a/run"), "echo ready >&3; exec sleep 1000");
        file(&sv.join("a/notification-fd"), "3");
    });
    n.wait_for("a", State::Up);
    assert!(cgroup.service("a").is_dir());
    assert!(n.stop().success());
    assert!(!cgroup.service("a").exists());
}

#[test]
fn a_shutdown_ends_what_services_left_before_finish_and_exit() {
    // Once the system goes down an empty cgroup is removed at once; one
    // with something left in it is not, until that is gone.
    let Some(cgroup) = TestCgroup::new("shutdown") else {
        return;
    };
    let mut n = start(&cgroup, |sv| {
        leaving_things(sv);
        script(
            &sv.join("a/finish"),
            &format!("{OVERLAP}\necho done > \"$T/finished\""),
        );
        script(&sv.join("b/run"), "echo ready >&3; exec sleep 1000");
        file(&sv.join("b/notification-fd"), "3");
    });
    n.wait_for("a", State::Up);
    n.wait_for("b", State::Up);
    let left = pids(&n.path("left"));
    assert_eq!(left.len(), 3);
    assert!(n.stop().success(), "{}", n.stderr());
    assert_eq!(read(&n.path("finished")), "done\n", "finish ran");
    assert_eq!(read(&n.path("overlap")), "", "finish met what run left");
    for pid in left {
        assert_ended(pid);
    }
    for name in ["a", "b"] {
        assert!(
            !cgroup.service(name).exists(),
            "the cgroup of {name} is left"
        );
    }
}

/// Starts a helper that outlives its script and notes its pid.
const HELPER: &str = r#"sleep 1000 & echo $! >> "$T/helpers""#;

#[test]
fn random_starts_stops_and_failures_leave_nothing_behind() {
    let Some(cgroup) = TestCgroup::new("chaos") else {
        return;
    };
    let mut n = start(&cgroup, |sv| {
        // Ends on its own: what it left goes before finish, what finish
        // left before the next start.
        script(
            &sv.join("a/run"),
            &format!("{HELPER}\necho >&3; exec sleep 0.4"),
        );
        file(&sv.join("a/notification-fd"), "3");
        script(&sv.join("a/finish"), HELPER);
        // Its setup fails two times out of three.
        script(
            &sv.join("b/setup"),
            &format!(
                r#"{HELPER}
n=$(cat "$T/b-tries" 2>/dev/null || echo 0); echo $((n + 1)) > "$T/b-tries"
[ $((n % 3)) -eq 2 ]"#
            ),
        );
        script(
            &sv.join("b/run"),
            &format!("{HELPER}\necho >&3; exec sleep 1000"),
        );
        file(&sv.join("b/notification-fd"), "3");
        // Ignores SIGTERM, and so does what it leaves.
        script(
            &sv.join("c/run"),
            r#"trap '' TERM
sh -c 'trap "" TERM; echo $$ >> "$T/helpers"; exec sleep 1000' &
echo >&3; while :; do sleep 1; done"#,
        );
        file(&sv.join("c/notification-fd"), "3");
        file(&sv.join("c/timeout-kill"), "200");
        // Its setup leaves a helper, and its run is sometimes not
        // executable (FATAL; finish runs with 111).
        script(&sv.join("d/setup"), HELPER);
        script(
            &sv.join("d/run"),
            &format!("{HELPER}\necho >&3; exec sleep 1000"),
        );
        file(&sv.join("d/notification-fd"), "3");
        script(&sv.join("d/finish"), HELPER);
    });
    let raw = n.raw();
    let names = ["a", "b", "c", "d"];
    let mut rng = Rng(0x5eed_c6c6);
    let run_d = n.sv.join("d/run");
    for _ in 0..40 {
        match rng.below(5) {
            4 => {
                let mode = if rng.below(2) == 0 { 0o644 } else { 0o755 };
                std::fs::set_permissions(
                    &run_d,
                    std::os::unix::fs::PermissionsExt::from_mode(mode),
                )
                .unwrap();
            }
            op => {
                let tag = [
                    proto::TAG_UP,
                    proto::TAG_DOWN,
                    proto::TAG_RESTART,
                    proto::TAG_RESTART,
                ][op as usize];
                let name = names[rng.below(names.len() as u64) as usize];
                // Replies go unread.
                let _ = raw.socket.send_to(&request(tag, name.as_bytes()), &n.sock);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(rng.below(300)));
    }
    assert!(n.stop().success(), "{}", n.stderr());
    let helpers = pids(&n.path("helpers"));
    assert!(helpers.len() > 5, "{} helpers", helpers.len());
    for pid in helpers {
        assert_ended(pid);
    }
    for name in names {
        assert!(
            !cgroup.service(name).exists(),
            "the cgroup of {name} is left"
        );
    }
}

#[test]
fn cpu_time_is_in_json_metrics_and_status() {
    let Some(cgroup) = TestCgroup::new("usage") else {
        return;
    };
    let mut n = start(&cgroup, |sv| {
        script(
            &sv.join("busy/run"),
            "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; echo ready >&3; exec sleep 1000",
        );
        file(&sv.join("busy/notification-fd"), "3");
    });
    n.wait_for("busy", State::Up);
    let (status, json, err) = n.ctl(&["--json", "list", "busy"]);
    assert_eq!(status, 0, "{err}");
    let usec: u64 = json
        .split("\"cpu_usec\":")
        .nth(1)
        .and_then(|rest| rest.split([',', '}']).next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no cpu_usec in {json}"));
    assert!(usec > 0, "{json}");
    let (_, metrics, _) = n.ctl(&["metrics"]);
    assert!(
        metrics.contains("# TYPE nitro_service_cpu_seconds_total counter\n")
            && metrics.contains("nitro_service_cpu_seconds_total{service=\"busy\"} "),
        "{metrics}"
    );
    let (_, status, _) = n.ctl(&["status"]);
    assert!(
        status.lines().next().is_some_and(|h| h.contains("CPU")),
        "{status}"
    );
}
