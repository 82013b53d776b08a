//! Logging (SPEC section 5 and LOG/LOG@ of section 6), end to end,
//! observed through log files written by real logger scripts.

mod support;

use std::os::unix::fs::symlink;
use std::path::Path;

use nitro::proto::{State, TAG_DOWN, TAG_RESCAN, TAG_UP};
use support::*;

/// A logger that prefixes each line with `tag` and appends it to $T/`file`.
fn logger(dir: &Path, file: &str, tag: &str) {
    script(
        &dir.join("run"),
        &format!(r#"while IFS= read -r line; do echo "{tag}$line" >> "$T/{file}"; done"#),
    );
}

#[test]
fn log_links_to_a_service_a_template_and_an_instance() {
    let n = Nitro::start(|sv| {
        logger(&sv.join("plain"), "plain", "");
        script(&sv.join("a/run"), "echo from-a; exec sleep 1000");
        symlink("../plain", sv.join("a/log")).unwrap();
        script(
            &sv.join("lg@/run"),
            r#"while IFS= read -r line; do echo "$line" >> "$T/lg-$1"; done"#,
        );
        script(&sv.join("b/run"), "echo from-b; exec sleep 1000");
        symlink("/somewhere/else/lg@", sv.join("b/log")).unwrap();
        script(&sv.join("t@/run"), r#"echo "from-t-$1"; exec sleep 1000"#);
        symlink("../lg@", sv.join("t@/log")).unwrap();
        symlink("t@", sv.join("t@x")).unwrap();
        script(&sv.join("c/run"), "echo from-c; exec sleep 1000");
        symlink("../lg@fixed/", sv.join("c/log")).unwrap();
    });
    until("a's line", || read(&n.path("plain")) == "from-a\n");
    until("b's line in lg@b", || read(&n.path("lg-b")) == "from-b\n");
    until("t@x's line in lg@x", || {
        read(&n.path("lg-x")) == "from-t-x\n"
    });
    until("c's line in lg@fixed", || {
        read(&n.path("lg-fixed")) == "from-c\n"
    });
    assert!(n.state("lg@b").is_some() && n.state("lg@x").is_some());
}

#[test]
fn a_log_that_is_not_a_symlink_is_ignored_with_a_warning() {
    let n = Nitro::start(|sv| {
        logger(&sv.join("plain"), "plain", "");
        script(&sv.join("a/run"), "echo from-a; exec sleep 1000");
        file(&sv.join("a/log"), "../plain");
    });
    until("a's line on nitro's stdout", || {
        read(&n.path("stdout")).contains("from-a")
    });
    assert!(n.stderr().contains("not a symlink"), "{}", n.stderr());
    assert_eq!(read(&n.path("plain")), "");
}

#[test]
fn setup_run_and_finish_all_write_to_the_logger() {
    let n = Nitro::start(|sv| {
        logger(&sv.join("log1"), "out", "");
        script(&sv.join("a/setup"), "echo from-setup");
        script(&sv.join("a/run"), "echo from-run; sleep 1.1");
        script(&sv.join("a/finish"), "echo from-finish");
        symlink("../log1", sv.join("a/log")).unwrap();
    });
    until("all three", || {
        read(&n.path("out")).starts_with("from-setup\nfrom-run\nfrom-finish\n")
    });
}

#[test]
fn only_the_loggers_run_reads_its_pipe() {
    let n = Nitro::start(|sv| {
        // On the log pipe, these cats would block and eat the lines.
        script(&sv.join("lg/setup"), r#"cat >> "$T/eaten""#);
        script(&sv.join("lg/finish"), r#"cat >> "$T/eaten""#);
        // `read` takes one line and leaves the next in the pipe.
        script(
            &sv.join("lg/run"),
            r#"IFS= read -r line && echo "$line" >> "$T/out""#,
        );
        script(&sv.join("w/run"), "echo one; echo two; exec sleep 1000");
        symlink("../lg", sv.join("w/log")).unwrap();
    });
    until("both lines, one per run", || {
        read(&n.path("out")) == "one\ntwo\n"
    });
    assert_eq!(read(&n.path("eaten")), "");
}

#[test]
fn a_logger_listed_before_its_writer_starts_with_its_pipe() {
    let n = Nitro::start(|sv| {
        // Whichever the directory lists first becomes the logger: readdir
        // follows no order.
        std::fs::create_dir(sv.join("p")).unwrap();
        std::fs::create_dir(sv.join("q")).unwrap();
        let listed: Vec<_> = std::fs::read_dir(sv)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let (lg, w) = (sv.join(&listed[0]), sv.join(&listed[1]));
        script(
            &lg.join("run"),
            r#"echo started >> "$T/runs"; exec cat >> "$T/out""#,
        );
        script(&w.join("run"), "echo hello; exec sleep 1000");
        symlink(&lg, w.join("log")).unwrap();
    });
    until("the line", || read(&n.path("out")) == "hello\n");
    // Without its pipe, cat ends at once and the logger starts again.
    assert_eq!(read(&n.path("runs")), "started\n");
}

#[test]
fn default_template_logger_and_global_logger_together() {
    let n = Nitro::start(|sv| {
        script(
            &sv.join("LOG@/run"),
            r#"while IFS= read -r line; do echo "[$1] $line"; done"#,
        );
        script(
            &sv.join("LOG/run"),
            r#"echo "LOG's stderr" >&2; while IFS= read -r line; do echo "$line" >> "$T/global"; done"#,
        );
        script(&sv.join("a/run"), "echo from-a; exec sleep 1000");
        script(&sv.join("t@/run"), r#"echo "from-t-$1"; exec sleep 1000"#);
        symlink("t@", sv.join("t@y")).unwrap();
    });
    until("a via LOG@a into LOG", || {
        read(&n.path("global")).contains("[a] from-a\n")
    });
    until("t@y via LOG@y", || {
        read(&n.path("global")).contains("[y] from-t-y\n")
    });
    // LOG's stderr is its stdout, which is nitro's stdout.
    until("LOG's stderr", || {
        read(&n.path("stdout")).contains("LOG's stderr\n")
    });
    assert!(!n.stderr().contains("LOG's stderr"));
    assert!(n.state("LOG@LOG").is_none() && n.state("LOG@LOG@a").is_none());
}

#[test]
fn global_logger_when_running_else_nitros_stdout() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("LOG/run"),
            r#"while IFS= read -r line; do echo "$line" >> "$T/global"; done"#,
        );
        script(
            &sv.join("a/run"),
            r#"echo "a-$(cat "$T/round" 2>/dev/null)"; exec sleep 1000"#,
        );
    });
    until("a in LOG", || read(&n.path("global")).contains("a-\n"));
    assert_eq!(n.ctl(&["stop", "LOG"]).0, 0);
    file(&n.path("round"), "2");
    assert_eq!(n.ctl(&["restart", "a"]).0, 0);
    until("a on nitro's stdout", || {
        read(&n.path("stdout")).contains("a-2\n")
    });
    n.wait_for("a", State::Up);
}

#[test]
fn several_writers_and_chains() {
    let n = Nitro::start(|sv| {
        logger(&sv.join("end"), "end", "end:");
        script(
            &sv.join("mid/run"),
            r#"while IFS= read -r line; do echo "mid:$line"; done"#,
        );
        symlink("../end", sv.join("mid/log")).unwrap();
        for w in ["w1", "w2"] {
            script(
                &sv.join(w).join("run"),
                &format!("echo {w}; exec sleep 1000"),
            );
            symlink("../mid", sv.join(w).join("log")).unwrap();
        }
    });
    until("both through the chain", || {
        let end = read(&n.path("end"));
        end.contains("end:mid:w1\n") && end.contains("end:mid:w2\n")
    });
}

#[test]
fn a_service_may_log_into_itself_or_a_loop() {
    // Each reads a line from its own pipe: its own line, or its partner's.
    let reader = |name: &str| {
        format!(
            r#"echo from-{name}; IFS= read -r line; echo "$line" > "$T/{name}"; exec sleep 1000"#
        )
    };
    let mut n = Nitro::start(|sv| {
        script(&sv.join("selfish/run"), &reader("selfish"));
        symlink("../selfish", sv.join("selfish/log")).unwrap();
        script(&sv.join("x/run"), &reader("x"));
        script(&sv.join("y/run"), &reader("y"));
        symlink("../y", sv.join("x/log")).unwrap();
        symlink("../x", sv.join("y/log")).unwrap();
        script(&sv.join("plain/run"), "exec sleep 1000");
    });
    until("selfish read itself", || {
        read(&n.path("selfish")) == "from-selfish\n"
    });
    until("x read y", || read(&n.path("x")) == "from-y\n");
    until("y read x", || read(&n.path("y")) == "from-x\n");
    assert!(!n.stderr().contains("itself"), "{}", n.stderr());
    n.until_state("plain", State::Up);
    assert_eq!(n.stop().code(), Some(0), "the shutdown ends");
}

#[test]
fn a_logger_with_a_down_file_starts_with_its_writer() {
    let mut n = Nitro::start(|sv| {
        logger(&sv.join("lazy"), "lazy", "");
        file(&sv.join("lazy/down"), "");
        script(&sv.join("w/run"), "echo hello; exec sleep 1000");
        file(&sv.join("w/down"), "");
        symlink("../lazy", sv.join("w/log")).unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(n.state("lazy"), Some(State::Down));
    assert_eq!(n.ctl(&["start", "w"]).0, 0);
    n.wait_for("lazy", State::Starting);
    until("the line", || read(&n.path("lazy")) == "hello\n");
}

#[test]
fn a_stopping_logger_comes_back_when_its_writer_starts() {
    let mut n = Nitro::start(|sv| {
        logger(&sv.join("lg"), "out", "");
        script(
            &sv.join("lg/finish"),
            r#"touch "$T/finishing"; while [ ! -e "$T/go" ]; do sleep 0.05; done"#,
        );
        script(
            &sv.join("w/run"),
            r#"echo "w-$(cat "$T/round" 2>/dev/null)"; exec sleep 1000"#,
        );
        symlink("../lg", sv.join("w/log")).unwrap();
    });
    until("the first line", || read(&n.path("out")) == "w-\n");
    assert_eq!(n.ctl(&["down", "lg"]).0, 0);
    until("lg's finish", || n.path("finishing").exists());
    file(&n.path("round"), "2");
    assert_eq!(n.ctl(&["restart", "w"]).0, 0);
    n.wait_for("lg", State::Restart);
    file(&n.path("go"), "");
    until("the second line", || read(&n.path("out")) == "w-\nw-2\n");
}

#[test]
fn changed_log_links_take_effect_on_restart_and_unused_instances_are_forgotten() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("lg@/run"),
            r#"while IFS= read -r line; do echo "$line" >> "$T/lg-$1"; done"#,
        );
        script(
            &sv.join("w/run"),
            r#"echo "line-$(cat "$T/round" 2>/dev/null)"; exec sleep 1000"#,
        );
        symlink("../lg@one", sv.join("w/log")).unwrap();
    });
    until("first logger", || read(&n.path("lg-one")) == "line-\n");
    std::fs::remove_file(n.sv.join("w/log")).unwrap();
    symlink("../lg@two", n.sv.join("w/log")).unwrap();
    file(&n.path("round"), "2");
    assert_eq!(n.ctl(&["restart", "w"]).0, 0);
    until("second logger", || read(&n.path("lg-two")) == "line-2\n");
    assert_eq!(n.ctl(&["stop", "lg@one"]).0, 0);
    n.wait_for("lg@one", State::Down);
    assert_eq!(n.ctl(&["rescan"]).0, 0);
    until("lg@one forgotten", || n.state("lg@one").is_none());
    assert_eq!(n.state("lg@two").map(|s| s != State::Down), Some(true));
}

#[test]
fn on_shutdown_loggers_stop_after_everything_else() {
    let mut n = Nitro::start(|sv| {
        script(
            &sv.join("lg/run"),
            r#"trap 'echo logger-stopped >> "$T/order"; exit 0' TERM; while IFS= read -r line; do :; done"#,
        );
        script(&sv.join("w/run"), "exec sleep 1000");
        script(
            &sv.join("w/finish"),
            r#"sleep 0.5; echo writer-finished >> "$T/order""#,
        );
        symlink("../lg", sv.join("w/log")).unwrap();
        script(&sv.join("other/run"), "exec sleep 1000");
        script(
            &sv.join("other/finish"),
            r#"sleep 0.3; echo other-finished >> "$T/order""#,
        );
    });
    n.until_state("w", State::Up);
    n.until_state("lg", State::Up);
    assert_eq!(n.stop().code(), Some(0));
    let order = read(&n.path("order"));
    assert_eq!(order.lines().last(), Some("logger-stopped"), "{order}");
    assert_eq!(order.lines().count(), 3, "{order}");
}

#[test]
fn a_logger_whose_writer_went_from_disk_is_stopped_by_the_shutdown() {
    let mut n = Nitro::start(|sv| {
        script(&sv.join("lg/run"), "exec cat > /dev/null");
        // Stopping takes until the test says so.
        script(
            &sv.join("w/run"),
            r#"trap 'until [ -e "$T/go" ]; do sleep 0.02; done; exit 0' TERM
echo >&3; sleep 1000 & wait"#,
        );
        file(&sv.join("w/notification-fd"), "3");
        symlink("../lg", sv.join("w/log")).unwrap();
    });
    n.wait_for("w", State::Up);
    std::fs::remove_dir_all(n.sv.join("w")).unwrap();
    n.command(TAG_RESCAN, "");
    n.wait_for("w", State::Shutdown);
    // The shutdown holds the logger back for its writer, which is
    // forgotten once down: the logger is then one more service to stop.
    let mut child = n.child.take().unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    until("the shutdown", || n.stderr().contains("shutdown"));
    file(&n.path("go"), "");
    let mut status = None;
    until("nitro to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.unwrap().code(), Some(0));
    until("the logger's DOWN", || {
        n.seen("lg").last() == Some(&State::Down)
    });
}

/// Writer: emits `NAME N` for N from its saved position up to `count`,
/// pacing itself; on SIGTERM it saves the next N and exits, so that over
/// restarts every line is written exactly once.
const WRITER: &str = r#"
import os, signal, sys, time
name, count = sys.argv[1], int(sys.argv[2])
state = os.path.join(os.environ["T"], "pos-" + name)
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
n = int(open(state).read()) if os.path.exists(state) else 0
while n < count and not stop:
    os.write(1, ("%s %d\n" % (name, n)).encode())
    n += 1
    if n % 40 == 0:
        time.sleep(0.01)
open(state + ".tmp", "w").write(str(n))
os.rename(state + ".tmp", state)
if n >= count:
    open(state + ".done", "w").close()
    while not stop:
        signal.pause()
"#;

/// Logger: appends what it reads; on SIGTERM it exits only after writing
/// everything it has read.
const LOGGER: &str = r#"
import os, select, signal, sys
stop = False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
out = os.open(os.path.join(os.environ["T"], "log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
os.write(3, b"\n")
while not stop:
    ready, _, _ = select.select([0], [], [], 0.1)
    if ready:
        data = os.read(0, 65536)
        if not data:
            break
        os.write(out, data)
"#;

fn lossless(writers: &[&str], count: usize) {
    let n = Nitro::start(|sv| {
        file(&sv.join("../writer.py"), WRITER);
        file(&sv.join("../logger.py"), LOGGER);
        script(&sv.join("lg/run"), r#"exec python3 "$T/logger.py""#);
        file(&sv.join("lg/notification-fd"), "3");
        for w in writers {
            script(
                &sv.join(w).join("run"),
                &format!(r#"exec python3 "$T/writer.py" {w} {count}"#),
            );
            symlink("../lg", sv.join(w).join("log")).unwrap();
        }
    });
    let done = |n: &Nitro| {
        writers
            .iter()
            .all(|w| n.path(&format!("pos-{w}.done")).exists())
    };
    let mut logger_restarts = 0;
    let mut writer_restarts = 0;
    while !done(&n) || logger_restarts < 30 {
        n.until_state("lg", State::Up);
        // Let the logger live a second, so its restart is not delayed.
        std::thread::sleep(std::time::Duration::from_millis(1000));
        assert_eq!(n.ctl(&["restart", "lg"]).0, 0);
        logger_restarts += 1;
        if logger_restarts % 6 == 0 && !done(&n) {
            assert_eq!(
                n.ctl(&["restart", writers[writer_restarts % writers.len()]])
                    .0,
                0
            );
            writer_restarts += 1;
        }
        assert!(logger_restarts < 120, "the writers never finished");
    }
    assert!(writer_restarts >= 1);
    // Stop everything: the logger drains what it has read before exiting.
    for w in writers {
        assert_eq!(n.ctl(&["stop", w]).0, 0);
    }
    let expected_len: usize = writers.len() * count;
    until("the logger wrote every line", || {
        read(&n.path("log")).lines().count() >= expected_len
    });
    assert_eq!(n.ctl(&["stop", "lg"]).0, 0);
    let log = read(&n.path("log"));
    for w in writers {
        let mine: Vec<&str> = log
            .lines()
            .filter(|l| l.split(' ').next() == Some(w))
            .collect();
        assert_eq!(mine.len(), count, "{w}: every line exactly once");
        for (i, line) in mine.iter().enumerate() {
            assert_eq!(*line, format!("{w} {i}"), "{w}: in order");
        }
    }
    assert_eq!(
        log.lines().count(),
        expected_len,
        "nothing else, nothing twice"
    );
}

#[test]
fn no_line_is_lost_over_logger_and_writer_restarts() {
    lossless(&["w"], 100_000);
}

#[test]
fn no_line_is_lost_with_several_writers() {
    lossless(&["w1", "w2", "w3"], 40_000);
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[test]
fn a_thousand_logger_instances_leave_no_descriptor_behind() {
    let n = Nitro::start_with(
        |sv| {
            script(&sv.join("w@/setup"), "true");
            symlink("../lg@", sv.join("w@/log")).unwrap();
            script(&sv.join("lg@/run"), "exec cat > /dev/null");
        },
        |cmd| {
            cmd.env("NITRO_MAX_SERVICES", "400");
        },
    );
    let before = open_fds(n.pid());
    for batch in 0..10 {
        let names: Vec<String> = (0..100).map(|i| format!("w@{}", batch * 100 + i)).collect();
        for name in &names {
            assert_eq!(n.command(TAG_UP, name), [0, 0, 80]);
        }
        for name in &names {
            n.until_state(name, State::Oneshot);
            assert_eq!(n.command(TAG_DOWN, name), [0, 0, 80]);
            let logger = name.replace("w@", "lg@");
            assert_eq!(n.command(TAG_DOWN, &logger), [0, 0, 80]);
        }
        for name in &names {
            n.until_state(&name.replace("w@", "lg@"), State::Down);
        }
        assert_eq!(n.request(&[0, 0, TAG_RESCAN]), [0, 0, 80]);
        assert_eq!(n.request(&[0, 0, TAG_RESCAN]), [0, 0, 80]);
        until("instances forgotten", || n.ctl(&["list"]).1.is_empty());
    }
    assert_eq!(open_fds(n.pid()), before);
}
