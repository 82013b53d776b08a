//! Templates, instances and rescans (SPEC sections 1 and 4), end to end.

mod support;

use nitro::proto::State;
use support::*;

#[test]
fn symlinked_instances_get_their_parameter() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("greet@/run"),
            r#"echo "$1" > "$T/param-$1"; exec sleep 1000"#,
        );
        std::os::unix::fs::symlink("greet@", sv.join("greet@a b")).unwrap();
    });
    n.wait_for("greet@a b", State::Starting);
    until("the script ran", || read(&n.path("param-a b")) == "a b\n");
}

#[test]
fn instances_are_made_on_demand_and_forgotten_on_rescan_once_down() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("t@/run"),
            r#"echo "$1" >> "$T/params"; exec sleep 1000"#,
        );
        script(&sv.join("t@/finish"), r#"echo "$@" >> "$T/finish""#);
    });
    assert_eq!(n.ctl(&["start", "t@one"]).0, 0);
    assert_eq!(read(&n.path("params")), "one\n");
    assert_eq!(n.ctl(&["start", "nosuch@one"]).0, 111);
    assert_eq!(n.ctl(&["rescan"]).0, 0);
    assert!(
        n.ctl(&["list"]).1.contains(" t@one "),
        "running instances stay"
    );
    assert_eq!(n.ctl(&["stop", "t@one"]).0, 0);
    until("finish ran", || read(&n.path("finish")) == "-1 15 one\n");
    n.wait_for("t@one", State::Down);
    assert_eq!(n.ctl(&["rescan"]).0, 0);
    until("t@one forgotten", || n.state("t@one").is_none());
}

#[test]
fn rescan_starts_new_services_and_stops_removed_ones() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("old/run"), "exec sleep 1000");
        script(&sv.join("old/finish"), r#"touch "$T/old-finished""#);
    });
    n.wait_for("old", State::Starting);
    script(&n.sv.join("new/run"), "exec sleep 1000");
    script(&n.sv.join("lazy/run"), "exec sleep 1000");
    file(&n.sv.join("lazy/down"), "");
    std::fs::create_dir(n.sv.join("empty")).unwrap();
    std::fs::rename(n.sv.join("old"), n.path("old-moved")).unwrap();
    // SIGHUP rescans.
    // SAFETY: signalling our own child.
    unsafe { libc::kill(n.pid() as i32, libc::SIGHUP) };
    n.wait_for("new", State::Starting);
    n.wait_for("old", State::Shutdown);
    n.wait_for("old", State::Down);
    until("old forgotten", || n.state("old").is_none());
    assert_eq!(n.state("lazy"), Some(State::Down), "down file honoured");
    assert_eq!(n.state("empty"), None, "no run, no setup: not a service");
    assert_eq!(n.ctl(&["start", "lazy"]).0, 0);
}

#[test]
fn down_files_keep_services_down_at_boot() {
    let n = Nitro::start(|sv| {
        script(&sv.join("a/run"), "exec sleep 1000");
        file(&sv.join("a/down"), "");
        script(&sv.join("b/run"), "exec sleep 1000");
    });
    n.until_state("b", State::Up);
    assert_eq!(n.state("a"), Some(State::Down));
}

/// A template renamed or removed takes its instances with it: each one
/// is stopped and forgotten, whether a request, a directory entry or a
/// log link made it.
#[test]
fn instances_go_when_their_template_is_renamed_or_removed() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("t@/run"),
            r#"echo $$ > "$T/pid-$1"; exec sleep 1000"#,
        );
        std::os::unix::fs::symlink("t@", sv.join("t@entry")).unwrap();
        script(&sv.join("lg@/run"), "exec cat > /dev/null");
        script(&sv.join("w/run"), "exec sleep 1000");
        std::os::unix::fs::symlink("../lg@", sv.join("w/log")).unwrap();
    });
    assert_eq!(n.ctl(&["start", "t@asked"]).0, 0);
    for name in ["t@entry", "lg@w"] {
        n.wait_for(name, State::Starting);
    }
    let pids: Vec<String> = ["asked", "entry"]
        .iter()
        .map(|p| {
            until("the instance wrote its pid", || {
                !read(&n.path(&format!("pid-{p}"))).is_empty()
            });
            read(&n.path(&format!("pid-{p}"))).trim().to_string()
        })
        .collect();
    std::fs::rename(n.path("sv/t@"), n.path("sv/u@")).unwrap();
    std::fs::remove_dir_all(n.path("sv/lg@")).unwrap();
    assert_eq!(n.ctl(&["rescan"]).0, 0);
    for name in ["t@asked", "t@entry", "lg@w"] {
        until(&format!("{name} forgotten"), || n.query(name).is_none());
    }
    for pid in pids {
        until("the instance's process is gone", || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
    }
    n.wait_for("w", State::Up);
    assert_eq!(n.state("w"), Some(State::Up), "the writer runs on");
}
