//! Telling the user what is going on, against the real binaries:
//! `nitroctl status` with and without a terminal, what a waiting command
//! says while a service crash-loops and when it times out, the REASON
//! extension (tag 183) in `--json` and `metrics`, and nitro's own words.

mod support;

use std::process::Command;

use nitro::proto::State;
use support::*;

/// A healthy service, one that exits 3 at once (forever), one whose `run`
/// cannot be executed, and one whose `setup` exits 111.
fn services(sv: &std::path::Path) {
    script(&sv.join("healthy/run"), "exec sleep 1000");
    script(&sv.join("crashy/run"), "exit 3");
    file(&sv.join("noexec/run"), "#!/bin/sh\nexec sleep 1000\n");
    script(&sv.join("fatal/setup"), "exit 111");
    script(&sv.join("fatal/run"), "exec sleep 1000");
    file(&sv.join("fatal/notification-fd"), "3");
}

/// Runs nitroctl under a pseudo-terminal (`script`), so that its stdout
/// and stderr are a terminal; both come back mixed, in `script`'s stdout.
fn ctl_on_a_terminal(n: &Nitro, args: &str, no_color: bool) -> String {
    let mut command = Command::new("script");
    command
        .args(["-qec", &format!("{} {args}", nitroctl_bin()), "/dev/null"])
        .env("NITRO_SOCK", &n.sock)
        .env_remove("NO_COLOR");
    if no_color {
        command.env("NO_COLOR", "1");
    }
    let out = command.output().unwrap();
    String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n")
}

/// The cells of an aligned table: every row must start its cells exactly
/// where the header starts its titles.
fn cells(table: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = table.lines().collect();
    let header = lines[0];
    let starts: Vec<usize> = (0..header.len())
        .filter(|&i| {
            let b = header.as_bytes();
            b[i] != b' ' && (i == 0 || (i >= 2 && &b[i - 2..i] == b"  "))
        })
        .collect();
    lines
        .iter()
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(k, &start)| {
                    let end = starts.get(k + 1).copied().unwrap_or(line.len());
                    let cell = &line[start..end.min(line.len())];
                    if k > 0 {
                        assert_eq!(&line[start - 2..start], "  ", "aligned: {table}");
                    }
                    if k + 1 < starts.len() {
                        assert!(cell.ends_with("  "), "aligned: {table}");
                    }
                    cell.trim_end().to_string()
                })
                .collect()
        })
        .collect()
}

fn pid_of(n: &Nitro, name: &str) -> String {
    let (status, out, err) = n.ctl(&["pidof", name]);
    assert_eq!(status, 0, "{err}");
    out.trim().to_string()
}

fn is_seconds(cell: &str) -> bool {
    cell.strip_suffix('s')
        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
}

#[test]
fn status_of_a_healthy_a_crashing_an_unexecutable_and_a_fatal_service() {
    let mut n = Nitro::start(services);
    n.wait_for("healthy", State::Up);
    n.wait_for("noexec", State::Fatal);
    n.wait_for("fatal", State::Fatal);
    until("crashy restarted", || {
        n.ctl(&["--json", "list", "crashy"])
            .1
            .contains("\"restarts\":2")
    });
    let (status, out, err) = n.ctl(&["status"]);
    assert_eq!((status, err.as_str()), (0, ""));
    let rows = cells(&out);
    assert_eq!(
        rows[0],
        [
            "NAME",
            "STATE",
            "PID",
            "UPTIME",
            "RESTARTS",
            "READY",
            "LOG",
            "LAST EXIT"
        ]
    );
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["crashy", "fatal", "healthy", "noexec"]);
    let crashy = &rows[1];
    assert!(
        ["DELAY", "STARTING", "DOWN"].contains(&crashy[1].as_str()),
        "{out}"
    );
    assert!(crashy[4].parse::<u32>().unwrap() >= 2, "{out}");
    assert_eq!(crashy[5..], ["after 2s", "console", "exited 3"], "{out}");
    assert_eq!(rows[2][1..3], ["FATAL", "-"], "{out}");
    assert_eq!(
        rows[2][4..],
        ["0", "fd 3", "console", "setup exited 111"],
        "{out}"
    );
    let healthy = &rows[3];
    assert_eq!(healthy[1], "UP");
    assert_eq!(healthy[2], pid_of(&n, "healthy"));
    assert!(is_seconds(&healthy[3]), "{out}");
    assert_eq!(healthy[4..], ["0", "after 2s", "console", "-"], "{out}");
    assert_eq!(
        rows[4][4..],
        [
            "0",
            "after 2s",
            "console",
            "could not exec run: Permission denied"
        ],
        "{out}"
    );
    assert!(!out.contains('\x1b'), "no colour off a terminal");

    // Named services come in argument order; an unknown one is 111.
    let (status, out, err) = n.ctl(&["status", "noexec", "healthy", "nosuch"]);
    assert_eq!(status, 111);
    assert_eq!(err, "nitroctl: nosuch: no such service\n");
    let rows = cells(&out);
    assert_eq!(
        (rows[1][0].as_str(), rows[2][0].as_str()),
        ("noexec", "healthy")
    );

    if !have("script") {
        assert!(std::env::var_os("CI").is_none(), "CI has script");
        eprintln!("skipped the terminal part: no script(1)");
        return;
    }
    let painted = ctl_on_a_terminal(&n, "status healthy fatal", false);
    let healthy_row = painted.lines().nth(1).unwrap();
    assert!(
        healthy_row.starts_with("healthy  \x1b[32mUP\x1b[0m     "),
        "{painted:?}"
    );
    let fatal_row = painted.lines().nth(2).unwrap();
    assert!(
        fatal_row.starts_with("fatal    \x1b[31mFATAL\x1b[0m  -    "),
        "{painted:?}"
    );
    let plain = ctl_on_a_terminal(&n, "status healthy fatal", true);
    assert!(!plain.contains('\x1b'), "NO_COLOR: {plain:?}");
    assert_eq!(cells(&plain)[2][1], "FATAL");
}

#[test]
fn natural_order_in_list_and_status() {
    let n = Nitro::start(|sv| {
        for name in ["svc-10", "svc-2", "svc-1"] {
            script(&sv.join(name).join("run"), "exec sleep 1000");
        }
    });
    until("all three listed", || {
        n.ctl(&["list"]).1.lines().count() == 3
    });
    let names = |out: &str, column: usize| -> Vec<String> {
        out.lines()
            .map(|l| l.split_whitespace().nth(column).unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&n.ctl(&["list"]).1, 1), ["svc-1", "svc-2", "svc-10"]);
    assert_eq!(
        names(&n.ctl(&["status"]).1, 0),
        ["NAME", "svc-1", "svc-2", "svc-10"]
    );
}

#[test]
fn waiting_commands_tell_what_they_see() {
    let n = Nitro::start(services);
    // Off a terminal and without -v: only the timeout, which names the
    // last state, exit and restarts.
    let (status, _, err) = n.ctl(&["-t", "3", "start", "crashy"]);
    assert_eq!(status, 3);
    let last = err.lines().last().unwrap();
    let rest = last
        .strip_prefix("nitroctl: crashy: timeout after 3s: ")
        .unwrap_or_else(|| panic!("{err}"));
    let (state, rest) = rest.split_once(", exited 3, ").expect(&err);
    assert!(["DELAY", "STARTING", "DOWN"].contains(&state), "{err}");
    let restarts = rest.strip_suffix(" restarts").expect(&err);
    assert!(restarts.parse::<u32>().unwrap() >= 2, "{err}");
    assert_eq!(err.lines().count(), 1, "nothing else: {err}");

    // With -v: one line per end on the way up.
    let (status, _, err) = n.ctl(&["-v", "-t", "2.5", "start", "crashy"]);
    assert_eq!(status, 3);
    let ends: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("crashy: exited 3, restarting in 1s (restart "))
        .collect();
    assert!(!ends.is_empty(), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("nitroctl: crashy: timeout after 2.5s: "),
        "{err}"
    );

    // A failure says why.
    let (status, _, err) = n.ctl(&["start", "noexec"]);
    assert_eq!(
        (status, err.as_str()),
        (
            1,
            "nitroctl: noexec: failed: could not exec run: Permission denied\n"
        )
    );
    let (status, _, err) = n.ctl(&["start", "fatal"]);
    assert_eq!(
        (status, err.as_str()),
        (1, "nitroctl: fatal: failed: setup exited 111\n")
    );

    if !have("script") {
        assert!(std::env::var_os("CI").is_none(), "CI has script");
        eprintln!("skipped the terminal part: no script(1)");
        return;
    }
    // On a terminal, without -v: the same lines.
    let out = ctl_on_a_terminal(&n, "-t 2.5 start crashy", true);
    assert!(
        out.lines()
            .any(|l| l.starts_with("crashy: exited 3, restarting in 1s (restart ")),
        "{out:?}"
    );
}

#[test]
fn the_reason_is_in_json_and_metrics_and_nitro_says_it_in_words() {
    let mut n = Nitro::start(services);
    n.wait_for("noexec", State::Fatal);
    n.wait_for("fatal", State::Fatal);
    let (status, out, _) = n.ctl(&["--json", "list", "noexec", "fatal", "healthy"]);
    assert_eq!(status, 0);
    assert!(
        out.contains("\"reason\":{\"program\":\"run\",\"failure\":\"exec\",\"value\":13,\"text\":\"could not exec run: Permission denied\"}"),
        "{out}"
    );
    assert!(
        out.contains("\"reason\":{\"program\":\"setup\",\"failure\":\"status\",\"value\":28416,\"text\":\"setup exited 111\"}"),
        "{out}"
    );
    assert!(
        out.contains("\"reason\":null,\"cpu_usec\":null"),
        "healthy has none: {out}"
    );
    let (_, metrics, _) = n.ctl(&["metrics"]);
    assert!(
        metrics.contains(
            "nitro_service_start_failure{service=\"noexec\",program=\"run\",failure=\"exec\",text=\"could not exec run: Permission denied\"} 13\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "nitro_service_start_failure{service=\"fatal\",program=\"setup\",failure=\"status\",text=\"setup exited 111\"} 28416\n"
        ),
        "{metrics}"
    );
    assert!(
        !metrics.contains("service=\"healthy\",program"),
        "{metrics}"
    );

    let stderr = n.stderr();
    assert!(
        stderr.contains("- nitro: noexec: cannot exec run: Permission denied\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("errno"), "{stderr}");
    let first = stderr.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "- nitro: starting: pid {}, not as pid 1, services in ",
            n.pid()
        )),
        "{stderr}"
    );
    assert!(
        first.ends_with(&format!(", socket {}", n.sock.display())),
        "{stderr}"
    );
    n.stop();
    assert!(
        n.stderr()
            .ends_with("- nitro: every service is down, exiting with status 0\n"),
        "{}",
        n.stderr()
    );
}

/// The READY and LOG columns say what nitro does: a `log` link to what is
/// not a service, and a `LOG@` that is not one, are no loggers (the
/// console then); a `notification-fd` beyond nitro's limit of
/// descriptors means `nitroctl ready`.
#[test]
fn ready_and_log_columns_follow_nitro() {
    let n = Nitro::start(|sv| {
        script(&sv.join("badlog/run"), "exec sleep 1000");
        std::os::unix::fs::symlink("../nonexistent", sv.join("badlog/log")).unwrap();
        script(&sv.join("bigfd/run"), "exec sleep 1000");
        file(&sv.join("bigfd/notification-fd"), "1999999");
        std::fs::create_dir(sv.join("LOG@")).unwrap();
    });
    n.until_state("badlog", State::Up);
    let (status, out, err) = n.ctl(&["status", "badlog", "bigfd"]);
    assert_eq!((status, err.as_str()), (0, ""));
    let rows = cells(&out);
    assert_eq!(rows[1][5..7], ["after 2s", "console"], "{out}");
    assert_eq!(rows[2][5..7], ["nitroctl ready", "console"], "{out}");
}
