//! nitroctl against a fake nitro: a datagram socket at a temporary
//! NITRO_SOCK, driven step by step by each test, that checks the bytes
//! nitroctl sends and answers with the bytes the C nitro 0.8 sent
//! (PROTOCOL-VECTORS.md), or with our extensions where a test says so.
//! Passing here is what shows that our nitroctl drives the C nitro.
//!
//! Every step waits for a datagram or for nitroctl to exit; nothing
//! sleeps. The two tests that take time do so because the time is what
//! they test: the requery interval, and the 10 s a silent nitro gets.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough to never matter unless something is really wrong.
const DEADLINE: Duration = Duration::from_secs(20);

const OK: &[u8] = &[0x00, 0x00, 0x50];
const ESRCH: &[u8] = &[0x00, 0x00, 0x51];
const ENOSYS: &[u8] = &[0x00, 0x00, 0x52];

const LIST: &[u8] = &[0x00, 0x00, 0x7c];
const INFO: &[u8] = &[0x00, 0x00, 0x7b];

/// The C nitro's LIST reply: beta@x then alpha, names with their NUL.
const C_LIST: &[u8] = &[
    0xff, 0xff, 0x64, //
    0x07, 0x00, 0x65, b'b', b'e', b't', b'a', b'@', b'x', 0x00, //
    0x01, 0x00, 0x66, 0x04, //
    0x04, 0x00, 0x67, 0xa6, 0x0b, 0x00, 0x00, //
    0x04, 0x00, 0x68, 0x00, 0x00, 0x00, 0x00, //
    0x04, 0x00, 0x69, 0x03, 0x00, 0x00, 0x00, //
    0xfe, 0xff, 0x64, //
    0xff, 0xff, 0x64, 0x06, 0x00, 0x65, 0x61, 0x6c, 0x70, 0x68, 0x61, 0x00, 0x01, 0x00, 0x66, 0x04,
    0x04, 0x00, 0x67, 0xa7, 0x0b, 0x00, 0x00, 0x04, 0x00, 0x68, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
    0x69, 0x03, 0x00, 0x00, 0x00, 0xfe, 0xff, 0x64,
];

/// The C nitro's INFO reply: NITRO_PID, PID, MAX_SERVICE, TOTAL_REAPS,
/// TOTAL_SV_REAPS.
const C_INFO: &[u8] = &[
    0x04, 0x00, 0x6a, 0xa5, 0x0b, 0x00, 0x00, //
    0x04, 0x00, 0x67, 0xa5, 0x0b, 0x00, 0x00, //
    0x04, 0x00, 0x6b, 0x02, 0x00, 0x00, 0x00, //
    0x04, 0x00, 0x6c, 0x00, 0x00, 0x00, 0x00, //
    0x04, 0x00, 0x6d, 0x00, 0x00, 0x00, 0x00,
];

/// The C nitro's QUERY reply for alpha (UP, pid 2983, wstatus 0, 2 s),
/// with another state and pid.
fn query_reply(state: u8, pid: u32) -> Vec<u8> {
    let mut d = vec![0x01, 0x00, 0x66, state, 0x04, 0x00, 0x67];
    d.extend_from_slice(&pid.to_le_bytes());
    d.extend_from_slice(&[0x04, 0x00, 0x68, 0x00, 0x00, 0x00, 0x00]);
    d.extend_from_slice(&[0x04, 0x00, 0x69, 0x02, 0x00, 0x00, 0x00]);
    d
}

/// A request or event: `[len, 0, tag, name]`.
fn packet(tag: u8, name: &str) -> Vec<u8> {
    let mut d = vec![name.len() as u8, 0, tag];
    d.extend_from_slice(name.as_bytes());
    d
}

fn query(name: &str) -> Vec<u8> {
    packet(0x7d, name)
}

const UP: u8 = 4;
const DOWN: u8 = 1;
const STARTING: u8 = 3;
const SHUTDOWN: u8 = 6;
const RESTART: u8 = 7;
const FATAL: u8 = 8;

struct Fake {
    tmp: tempfile::TempDir,
    sock: PathBuf,
    notify: PathBuf,
    server: UnixDatagram,
}

impl Fake {
    fn new() -> Fake {
        Fake::in_dir(|_| "s".to_string())
    }

    /// With the socket directory named by `name(temp dir)`.
    fn in_dir(name: impl FnOnce(&Path) -> String) -> Fake {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(name(tmp.path()));
        let notify = dir.join("notify");
        std::fs::create_dir_all(&notify).unwrap();
        let sock = dir.join("nitro.sock");
        let server = UnixDatagram::bind(&sock).unwrap();
        server.set_read_timeout(Some(DEADLINE)).unwrap();
        Fake {
            tmp,
            sock,
            notify,
            server,
        }
    }

    fn ctl(&self, args: &[&str]) -> Child {
        self.ctl_in(args, self.tmp.path())
    }

    fn ctl_in(&self, args: &[&str], cwd: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_nitroctl"))
            .args(args)
            .env("NITRO_SOCK", &self.sock)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// The next datagram nitroctl sends, and where it came from.
    fn recv(&self) -> (Vec<u8>, SocketAddr) {
        let mut buf = vec![0u8; 65536];
        // A receive with a timeout fails with EINTR when the process was
        // stopped and continued meanwhile (signal(7)), even without a
        // handler: seen once on a loaded machine.
        let (n, from) = loop {
            match self.server.recv_from(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                received => break received.expect("nitroctl sent nothing"),
            }
        };
        buf.truncate(n);
        (buf, from)
    }

    /// Receives a datagram, checks it is `request`, returns the sender.
    fn expect(&self, request: &[u8]) -> SocketAddr {
        let (got, from) = self.recv();
        assert_eq!(got, request, "request bytes");
        from
    }

    fn reply(&self, to: &SocketAddr, datagram: &[u8]) {
        self.server.send_to_addr(datagram, to).unwrap();
    }

    /// Sends an event to a socket in `notify/`, as nitro does.
    fn event(&self, to: &SocketAddr, state: u8, name: &str) {
        self.reply(to, &packet(state, name));
    }

    /// What is left in `notify/`: our sockets must be gone.
    fn notify_entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.notify)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Nothing more was sent (call after nitroctl exited: whatever it sent
    /// is queued by then).
    fn assert_quiet(&self) {
        self.server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        let extra = self.server.recv(&mut buf);
        self.server.set_nonblocking(false).unwrap();
        assert!(
            extra.is_err(),
            "unexpected datagram {:?}",
            extra.map(|n| buf[..n].to_vec())
        );
    }
}

/// Waits for nitroctl: (exit status, stdout, stderr).
fn finish(child: Child) -> (i32, String, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn interrupt(child: &Child, signal: i32) {
    // SAFETY: signalling our own child, which has not been reaped.
    unsafe { libc::kill(child.id() as i32, signal) };
}

/// The file a waiting nitroctl bound for its n-th service.
fn waiter_path(fake: &Fake, child: &Child, name: &str, n: usize) -> PathBuf {
    fake.notify.join(format!("{name},{}_{n}", child.id()))
}

#[test]
fn list_sorts_the_c_reply_by_name() {
    let fake = Fake::new();
    for args in [&["list"][..], &["l"], &[]] {
        let ctl = fake.ctl(args);
        let from = fake.expect(LIST);
        fake.reply(&from, C_LIST);
        let (status, out, err) = finish(ctl);
        assert_eq!(status, 0, "{err}");
        assert_eq!(
            out,
            "UP alpha (pid 2983) (wstatus 0) 3s\nUP beta@x (pid 2982) (wstatus 0) 3s\n"
        );
    }
}

#[test]
fn list_follows_pages_until_no_list_next() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["list"]);
    let from = fake.expect(LIST);
    // Our extension: the first SERVICE frame, then LIST_NEXT 1.
    let mut page = C_LIST[..41].to_vec();
    page.extend_from_slice(&[0x04, 0x00, 0xb4, 0x01, 0x00, 0x00, 0x00]);
    fake.reply(&from, &page);
    let again = fake.expect(&[0x04, 0x00, 0x7c, 0x01, 0x00, 0x00, 0x00]);
    assert_eq!(
        format!("{again:?}"),
        format!("{from:?}"),
        "the same socket asks again"
    );
    fake.reply(&from, &C_LIST[41..]);
    let (status, out, _) = finish(ctl);
    assert_eq!(status, 0);
    assert_eq!(out.lines().count(), 2);
    assert!(out.starts_with("UP alpha ") && out.contains("\nUP beta@x "));
}

#[test]
fn list_of_named_services_in_argument_order() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["list", "beta@x", "nosuch", "alpha"]);
    let from = fake.expect(&query("beta@x"));
    fake.reply(&from, &query_reply(UP, 2982));
    fake.reply(&fake.expect(&query("nosuch")), ESRCH);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(DOWN, 0));
    let (status, out, err) = finish(ctl);
    assert_eq!(status, 111, "an unknown service");
    assert_eq!(
        out,
        "UP beta@x (pid 2982) (wstatus 0) 2s\nDOWN alpha (wstatus 0) 2s\n"
    );
    assert!(err.contains("nosuch: no such service"), "{err}");
}

#[test]
fn json_list_and_info() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["list", "--json"]);
    let from = fake.expect(LIST);
    fake.reply(&from, C_LIST);
    let (status, out, _) = finish(ctl);
    assert_eq!(status, 0);
    assert_eq!(
        out,
        "[{\"name\":\"alpha\",\"state\":\"UP\",\"pid\":2983,\"wstatus\":0,\"exit_code\":0,\
         \"signal\":null,\"uptime\":3,\"restarts\":0,\"reason\":null,\
         \"cpu_usec\":null,\"memory_current\":null,\"memory_peak\":null,\"pids_current\":null,\"oom_kills\":null},\
         {\"name\":\"beta@x\",\"state\":\"UP\",\"pid\":2982,\"wstatus\":0,\"exit_code\":0,\
         \"signal\":null,\"uptime\":3,\"restarts\":0,\"reason\":null,\
         \"cpu_usec\":null,\"memory_current\":null,\"memory_peak\":null,\"pids_current\":null,\"oom_kills\":null}]\n"
    );
    let ctl = fake.ctl(&["--json", "info"]);
    fake.reply(&fake.expect(INFO), C_INFO);
    let (status, out, _) = finish(ctl);
    assert_eq!(status, 0);
    assert_eq!(
        out,
        "{\"nitro_pid\":2981,\"pid\":2981,\"max_service\":2,\"total_reaps\":0,\"total_sv_reaps\":0}\n"
    );
    // A name that needs escaping, killed by signal 9, with RESTARTS.
    let ctl = fake.ctl(&["--json", "list", "a\"b"]);
    let mut reply = vec![0x01, 0x00, 0x66, DOWN, 0x04, 0x00, 0x67, 0, 0, 0, 0];
    reply.extend_from_slice(&[0x04, 0x00, 0x68, 0x09, 0x00, 0x00, 0x00]);
    reply.extend_from_slice(&[0x04, 0x00, 0x69, 0x05, 0x00, 0x00, 0x00]);
    reply.extend_from_slice(&[0x04, 0x00, 0xb5, 0x03, 0x00, 0x00, 0x00]);
    fake.reply(&fake.expect(&query("a\"b")), &reply);
    let (_, out, _) = finish(ctl);
    assert_eq!(
        out,
        "[{\"name\":\"a\\\"b\",\"state\":\"DOWN\",\"pid\":null,\"wstatus\":9,\"exit_code\":null,\
         \"signal\":9,\"uptime\":5,\"restarts\":3,\"reason\":null,\
         \"cpu_usec\":null,\"memory_current\":null,\"memory_peak\":null,\"pids_current\":null,\"oom_kills\":null}]\n"
    );
}

#[test]
fn info_keys_extensions_and_unknown_tags() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["info"]);
    let mut reply = C_INFO.to_vec();
    reply.extend_from_slice(&[0x04, 0x00, 0xb6, 0x05, 0x00, 0x00, 0x00]); // ALLOCS 5
    reply.extend_from_slice(&[0x00, 0x00, 0xc8]); // unknown
    fake.reply(&fake.expect(INFO), &reply);
    let (status, out, _) = finish(ctl);
    assert_eq!(status, 0);
    assert_eq!(
        out,
        "nitro_pid 2981\npid 2981\nmax_service 2\ntotal_reaps 0\ntotal_sv_reaps 0\n\
         allocs 5\n# unknown tag 0xc8\n"
    );
}

#[test]
fn metrics_print_only_what_nitro_sent() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["metrics"]);
    fake.reply(&fake.expect(LIST), C_LIST);
    fake.reply(&fake.expect(INFO), C_INFO);
    let (status, out, _) = finish(ctl);
    assert_eq!(status, 0);
    for line in [
        "# TYPE nitro_service_state gauge",
        "nitro_service_state{service=\"alpha\",state=\"UP\"} 1",
        "nitro_service_state{service=\"alpha\",state=\"DOWN\"} 0",
        "nitro_service_up{service=\"beta@x\"} 1",
        "nitro_service_uptime_seconds{service=\"alpha\"} 3",
        "nitro_service_pid{service=\"beta@x\"} 2982",
        "nitro_service_last_exit_status{service=\"alpha\"} 0",
        "nitro_services 2",
        "nitro_reaps_total 0",
        "nitro_service_reaps_total 0",
    ] {
        assert!(out.lines().any(|l| l == line), "missing {line}:\n{out}");
    }
    assert!(!out.contains("restarts"), "the C nitro sends no RESTARTS");
    assert!(!out.contains("allocations"), "nor ALLOCS");

    // Ours: RESTARTS inside each SERVICE frame, ALLOCS in INFO.
    let ctl = fake.ctl(&["metrics"]);
    let mut list = C_LIST[..38].to_vec();
    list.extend_from_slice(&[0x04, 0x00, 0xb5, 0x02, 0x00, 0x00, 0x00]);
    list.extend_from_slice(&C_LIST[38..]);
    let mut info = C_INFO.to_vec();
    info.extend_from_slice(&[0x04, 0x00, 0xb6, 0x00, 0x00, 0x00, 0x00]);
    fake.reply(&fake.expect(LIST), &list);
    fake.reply(&fake.expect(INFO), &info);
    let (_, out, _) = finish(ctl);
    assert!(out.contains("# TYPE nitro_service_restarts_total counter\n"));
    assert!(out.contains("\nnitro_service_restarts_total{service=\"beta@x\"} 2\n"));
    assert!(!out.contains("restarts_total{service=\"alpha\"}"));
    assert!(out.contains("\nnitro_allocations_since_start 0\n"));
}

#[test]
fn requests_are_the_c_bytes() {
    let fake = Fake::new();
    let cases: &[(&[&str], Vec<u8>)] = &[
        (&["down", "beta@x"], packet(0x79, "beta@x")),
        (&["d", "beta@x"], packet(0x79, "beta@x")),
        (&["up", "beta@x"], packet(0x78, "beta@x")),
        (&["u", "beta@x"], packet(0x78, "beta@x")),
        (
            &["hup", "alpha"],
            vec![0x06, 0x00, 0x81, 0x01, b'a', b'l', b'p', b'h', b'a'],
        ),
        (&["ready", "alpha"], packet(0x82, "alpha")),
        (&["scan"], vec![0x00, 0x00, 0x7e]),
        (&["s"], vec![0x00, 0x00, 0x7e]),
        (&["rescan"], vec![0x00, 0x00, 0x7e]),
        (&["Shutdown"], vec![0x00, 0x00, 0x7f]),
        (&["Reboot"], vec![0x00, 0x00, 0x80]),
    ];
    for (args, bytes) in cases {
        let ctl = fake.ctl(args);
        fake.reply(&fake.expect(bytes), OK);
        assert_eq!(finish(ctl).0, 0, "{args:?}");
    }
    let signals = [
        ("pause", libc::SIGSTOP),
        ("cont", libc::SIGCONT),
        ("hup", libc::SIGHUP),
        ("alarm", libc::SIGALRM),
        ("interrupt", libc::SIGINT),
        ("quit", libc::SIGQUIT),
        ("term", libc::SIGTERM),
        ("kill", libc::SIGKILL),
        ("1", libc::SIGUSR1),
        ("2", libc::SIGUSR2),
    ];
    for (command, signal) in signals {
        for spelling in [command, &command[..1]] {
            let ctl = fake.ctl(&[spelling, "a"]);
            fake.reply(&fake.expect(&[0x02, 0x00, 0x81, signal as u8, b'a']), OK);
            assert_eq!(finish(ctl).0, 0, "{spelling}");
        }
    }
    // Several services: one request each, in order.
    let ctl = fake.ctl(&["down", "a", "b"]);
    fake.reply(&fake.expect(&packet(0x79, "a")), OK);
    fake.reply(&fake.expect(&packet(0x79, "b")), OK);
    assert_eq!(finish(ctl).0, 0);
}

#[test]
fn refusals_exit_111() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["up", "nosuch"]);
    fake.reply(&fake.expect(&packet(0x78, "nosuch")), ESRCH);
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 111);
    assert!(err.contains("nosuch: no such service"), "{err}");
    let ctl = fake.ctl(&["Shutdown"]);
    fake.reply(&fake.expect(&[0x00, 0x00, 0x7f]), ENOSYS);
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 111);
    assert!(err.contains("not implemented"), "{err}");
    // The highest status wins; every service is still asked.
    let ctl = fake.ctl(&["term", "a", "b"]);
    fake.reply(&fake.expect(&[0x02, 0x00, 0x81, 15, b'a']), ESRCH);
    // ESRCH: unknown, or known without a process? A QUERY tells.
    fake.reply(&fake.expect(&query("a")), ESRCH);
    fake.reply(&fake.expect(&[0x02, 0x00, 0x81, 15, b'b']), OK);
    assert_eq!(finish(ctl).0, 111);
    let ctl = fake.ctl(&["term", "a"]);
    fake.reply(&fake.expect(&[0x02, 0x00, 0x81, 15, b'a']), ESRCH);
    fake.reply(&fake.expect(&query("a")), &query_reply(DOWN, 0));
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 1, "known, not running: {err}");
    assert_eq!(err, "nitroctl: a: not running\n");
}

#[test]
fn start_waits_for_up_after_the_ok() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["-v", "start", "alpha"]);
    let from = fake.expect(&packet(0x78, "alpha"));
    assert_eq!(
        from.as_pathname(),
        Some(waiter_path(&fake, &ctl, "alpha", 0).as_path()),
        "bound in notify/ as alpha,<pid>_0"
    );
    // Before the OK: a stale UP, then the echo of the request.
    fake.event(&from, UP, "alpha");
    fake.event(&from, STARTING, "alpha");
    fake.reply(&from, OK);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(STARTING, 2983));
    fake.event(&from, UP, "alpha");
    let (status, out, err) = finish(ctl);
    assert_eq!(status, 0, "{err}");
    assert_eq!(out, "UP alpha\nSTARTING alpha\nUP alpha\n");
    assert!(fake.notify_entries().is_empty());
    fake.assert_quiet();
}

#[test]
fn start_fails_on_fatal_and_stops_end_on_it() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["start", "alpha"]);
    let from = fake.expect(&packet(0x78, "alpha"));
    fake.reply(&from, OK);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(FATAL, 0));
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 1);
    assert!(err.contains("alpha: failed"), "{err}");

    for (command, states, request) in [
        ("stop", &[SHUTDOWN, FATAL][..], 0x79),
        ("stop", &[SHUTDOWN, DOWN], 0x79),
        ("fast-stop", &[SHUTDOWN], 0x79),
        ("fast-start", &[STARTING], 0x78),
        ("fast-restart", &[RESTART, STARTING], 0x7a),
        ("r", &[RESTART, UP], 0x7a),
    ] {
        let ctl = fake.ctl(&[command, "beta@x"]);
        let from = fake.expect(&packet(request, "beta@x"));
        fake.reply(&from, OK);
        fake.reply(&fake.expect(&query("beta@x")), &query_reply(states[0], 0));
        for &state in &states[1..] {
            fake.event(&from, state, "beta@x");
        }
        assert_eq!(finish(ctl).0, 0, "{command} {states:?}");
    }
    assert!(fake.notify_entries().is_empty());
}

#[test]
fn restart_asks_again_when_events_are_lost() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["restart", "alpha"]);
    let from = fake.expect(&packet(0x7a, "alpha"));
    fake.event(&from, RESTART, "alpha");
    fake.reply(&from, OK);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(RESTART, 0));
    // The STARTING and UP events were dropped: nitroctl asks again after
    // a second of silence, and the reply ends the wait.
    let silent = Instant::now();
    let again = fake.expect(&query("alpha"));
    assert!(silent.elapsed() >= Duration::from_millis(900));
    fake.reply(&again, &query_reply(UP, 3000));
    assert_eq!(finish(ctl).0, 0);
}

/// Only silence counts against nitro: a wait goes on past the 10 s after
/// which a nitro that answers nothing is given up, as long as it answers.
#[test]
fn a_wait_goes_on_while_nitro_answers() {
    let fake = Fake::new();
    let started = Instant::now();
    let ctl = fake.ctl(&["wait-up", "alpha"]);
    loop {
        let from = fake.expect(&query("alpha"));
        if started.elapsed() >= Duration::from_secs(11) {
            fake.reply(&from, &query_reply(UP, 3000));
            break;
        }
        fake.reply(&from, &query_reply(DOWN, 0));
    }
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 0, "{err}");
}

#[test]
fn several_services_at_once_the_highest_status_wins() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["start", "alpha", "beta@x", "gamma"]);
    let mut answered = 0;
    while answered < 3 {
        let (request, from) = fake.recv();
        let name = String::from_utf8(request[3..].to_vec()).unwrap();
        let n = ["alpha", "beta@x", "gamma"]
            .iter()
            .position(|s| *s == name)
            .unwrap();
        assert_eq!(
            from.as_pathname(),
            Some(waiter_path(&fake, &ctl, &name, n).as_path())
        );
        match (request[2], name.as_str()) {
            (0x78, "gamma") => {
                fake.reply(&from, ESRCH);
                answered += 1;
            }
            (0x78, _) => fake.reply(&from, OK),
            (0x7d, "alpha") => {
                fake.reply(&from, &query_reply(UP, 1));
                answered += 1;
            }
            (0x7d, "beta@x") => {
                fake.reply(&from, &query_reply(FATAL, 0));
                answered += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 111, "ESRCH (111) beats FATAL (1): {err}");
    assert!(err.contains("beta@x: failed") && err.contains("gamma: no such service"));
    assert!(fake.notify_entries().is_empty());
}

#[test]
fn waits_only_query() {
    let fake = Fake::new();
    for (command, state) in [
        ("wait-up", UP),
        ("wait-up", 5), // ONESHOT
        ("wait-down", DOWN),
        ("wait-down", FATAL),
        ("wait-starting", STARTING),
    ] {
        let ctl = fake.ctl(&[command, "alpha"]);
        fake.reply(&fake.expect(&query("alpha")), &query_reply(state, 0));
        assert_eq!(finish(ctl).0, 0, "{command} {state}");
    }
    let ctl = fake.ctl(&["wait-up", "alpha"]);
    let from = fake.expect(&query("alpha"));
    fake.reply(&from, &query_reply(DOWN, 0));
    fake.event(&from, STARTING, "alpha");
    fake.event(&from, FATAL, "alpha");
    // A FATAL event makes nitroctl ask why before it ends.
    fake.reply(&fake.expect(&query("alpha")), &query_reply(FATAL, 0));
    assert_eq!(finish(ctl).0, 1, "FATAL ends wait-up");
}

/// nitro answers without blocking, and an unread reply still counts
/// against nitro's send buffer: a nitroctl that sent all its requests
/// before reading any would make nitro drop replies past a few hundred.
#[test]
fn many_services_never_overrun_nitros_send_buffer() {
    const N: usize = 600;
    let fake = Fake::new();
    let names: Vec<String> = (0..N).map(|i| format!("s{i:03}")).collect();
    let mut args = vec!["wait-up"];
    args.extend(names.iter().map(String::as_str));
    let mut ctl = fake.ctl(&args);
    fake.server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut answered = std::collections::HashSet::new();
    let started = Instant::now();
    while ctl.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < DEADLINE, "nitroctl hangs");
        let mut buf = [0u8; 256];
        let Ok((n, from)) = fake.server.recv_from(&mut buf) else {
            continue;
        };
        assert_eq!(buf[2], 0x7d, "a QUERY");
        fake.server.set_nonblocking(true).unwrap();
        let sent = fake.server.send_to_addr(&query_reply(UP, 1), &from);
        fake.server.set_nonblocking(false).unwrap();
        let name = String::from_utf8(buf[3..n].to_vec()).unwrap();
        sent.unwrap_or_else(|e| panic!("reply to {name} dropped: {e}"));
        answered.insert(name);
    }
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 0, "{err}");
    assert_eq!(answered.len(), N);
    assert!(fake.notify_entries().is_empty());
}

/// A service decided by an event before the reply to its QUERY came no
/// longer holds a place among the requests in flight.
#[test]
fn services_decided_before_their_query_reply_free_their_place() {
    const N: usize = 150;
    let fake = Fake::new();
    let names: Vec<String> = (0..N).map(|i| format!("s{i:03}")).collect();
    let mut args = vec!["-t", "10", "restart"];
    args.extend(names.iter().map(String::as_str));
    let mut ctl = fake.ctl(&args);
    fake.server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    while ctl.try_wait().unwrap().is_none() {
        let mut buf = [0u8; 256];
        let Ok((n, from)) = fake.server.recv_from(&mut buf) else {
            continue;
        };
        // RESTART: OK, then UP at once; QUERYs are never answered.
        if buf[2] == 0x7a {
            let name = std::str::from_utf8(&buf[3..n]).unwrap();
            fake.reply(&from, OK);
            fake.event(&from, UP, name);
        }
    }
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 0, "{err}");
    assert!(fake.notify_entries().is_empty());
}

#[test]
fn timeout_exits_3_and_cleans_up() {
    let fake = Fake::new();
    let started = Instant::now();
    let ctl = fake.ctl(&["wait-up", "-t", "0.3", "alpha"]);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(DOWN, 0));
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 3);
    assert!(err.contains("alpha: timeout"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(fake.notify_entries().is_empty());
    // A nitro that does not answer at all.
    let ctl = fake.ctl(&["-t0.2", "list"]);
    fake.expect(LIST);
    let (status, _, err) = finish(ctl);
    assert_eq!(status, 3, "{err}");
}

#[test]
fn interrupted_exits_128_plus_the_signal_and_cleans_up() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["wait-up", "alpha"]);
    let from = fake.expect(&query("alpha"));
    assert!(waiter_path(&fake, &ctl, "alpha", 0).exists());
    fake.reply(&from, &query_reply(DOWN, 0));
    interrupt(&ctl, libc::SIGINT);
    assert_eq!(finish(ctl).0, 128 + libc::SIGINT);
    assert!(fake.notify_entries().is_empty());

    let ctl = fake.ctl(&["list"]);
    fake.expect(LIST);
    interrupt(&ctl, libc::SIGTERM);
    assert_eq!(finish(ctl).0, 128 + libc::SIGTERM);
}

#[test]
fn unreachable_nitro_exits_4() {
    let fake = Fake::new();
    let run = |sock: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nitroctl"))
            .args(args)
            .env("NITRO_SOCK", sock)
            .output()
            .unwrap()
            .status
            .code()
    };
    // No socket at all.
    let missing = fake.sock.with_file_name("missing.sock");
    assert_eq!(run(&missing, &["list"]), Some(4));
    assert_eq!(run(&missing, &["start", "alpha"]), Some(4));
    assert!(
        fake.notify_entries().is_empty(),
        "the waiter's socket is gone"
    );
    // A stale socket: nobody listens (ECONNREFUSED).
    let stale = fake.sock.with_file_name("stale.sock");
    drop(UnixDatagram::bind(&stale).unwrap());
    assert_eq!(run(&stale, &["info"]), Some(4));
    assert_eq!(run(&stale, &["up", "alpha"]), Some(4));
    // No socket directory: not even notify/ to bind in.
    let nowhere = fake.tmp.path().join("nowhere/nitro.sock");
    assert_eq!(run(&nowhere, &["stop", "alpha"]), Some(4));
}

#[test]
fn path_arguments_name_their_last_component() {
    let fake = Fake::new();
    let sv = fake.tmp.path().join("sv");
    std::fs::create_dir_all(sv.join("alpha")).unwrap();
    let ctl = fake.ctl_in(&["up", "."], &sv.join("alpha"));
    fake.reply(&fake.expect(&packet(0x78, "alpha")), OK);
    assert_eq!(finish(ctl).0, 0);
    let ctl = fake.ctl_in(&["down", "../alpha/"], &sv.join("alpha"));
    fake.reply(&fake.expect(&packet(0x79, "alpha")), OK);
    assert_eq!(finish(ctl).0, 0);
    let abs = sv.join("alpha");
    let ctl = fake.ctl(&["pidof", abs.to_str().unwrap()]);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(UP, 2983));
    assert_eq!(finish(ctl).1, "2983\n");
    // A path that does not exist: an error before anything is sent.
    let (status, _, err) = finish(fake.ctl(&["up", "alpha", "./no/such"]));
    assert_eq!(status, 111);
    assert!(err.contains("./no/such"), "{err}");
    fake.assert_quiet();
}

#[test]
fn pidof_and_check() {
    let fake = Fake::new();
    let ctl = fake.ctl(&["pidof", "beta@x", "alpha"]);
    fake.reply(&fake.expect(&query("beta@x")), &query_reply(UP, 2982));
    fake.reply(&fake.expect(&query("alpha")), &query_reply(UP, 2983));
    let (status, out, _) = finish(ctl);
    assert_eq!((status, out.as_str()), (0, "2982\n2983\n"));
    let ctl = fake.ctl(&["pidof", "alpha", "o"]);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(UP, 2983));
    fake.reply(&fake.expect(&query("o")), &query_reply(5, 0));
    let (status, out, err) = finish(ctl);
    assert_eq!((status, out.as_str()), (1, "2983\n"));
    assert!(err.contains("o: no process"), "{err}");
    let ctl = fake.ctl(&["check", "alpha"]);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(UP, 2983));
    assert_eq!(finish(ctl), (0, String::new(), String::new()));
    let ctl = fake.ctl(&["check", "alpha"]);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(DOWN, 0));
    assert_eq!(finish(ctl), (1, String::new(), String::new()));
}

#[test]
fn usage_errors_exit_2_before_sending() {
    let fake = Fake::new();
    for args in [
        &["bogus"][..],
        &["start"],
        &["-x", "list"],
        &["-t", "soon", "start", "a"],
        &["info", "alpha"],
    ] {
        let (status, _, err) = finish(fake.ctl(args));
        assert_eq!(status, 2, "{args:?}");
        assert!(err.contains("usage:"), "{err}");
    }
    fake.assert_quiet();
}

/// Waits until `name` exists in `dir`, woken by inotify rather than by
/// polling on a timer. The watch must exist before whatever creates it.
struct Watch {
    fd: i32,
}

impl Watch {
    fn new(dir: &Path) -> Watch {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: plain syscalls on a valid C string; the fd is ours.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        assert!(fd >= 0);
        // SAFETY: as above.
        let wd = unsafe { libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_CREATE) };
        assert!(wd >= 0);
        Watch { fd }
    }

    fn until_exists(&self, path: &Path) {
        let end = Instant::now() + DEADLINE;
        while !path.exists() {
            let left = end.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{} never appeared", path.display());
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let mut buf = [0u8; 4096];
            // SAFETY: a valid pollfd; reading into a buffer of its size.
            unsafe {
                libc::poll(&mut pfd, 1, left.as_millis() as i32);
                libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len());
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: closing our own fd once.
        unsafe { libc::close(self.fd) };
    }
}

#[test]
fn events_prints_every_event_until_interrupted() {
    let fake = Fake::new();
    let (ctl, path) = events_ctl(&fake, &["events"]);
    // The C nitro's events while beta@x was taken down and alpha got HUP.
    for event in [
        &[0x06, 0x00, 0x04, b'b', b'e', b't', b'a', b'@', b'x'][..],
        &[0x05, 0x00, 0x04, b'a', b'l', b'p', b'h', b'a'],
        &[0x00, 0x00, 0xc8], // not an event: skipped
        &[0x06, 0x00, 0x06, b'b', b'e', b't', b'a', b'@', b'x'],
        &[0x06, 0x00, 0x01, b'b', b'e', b't', b'a', b'@', b'x'],
        &[0x05, 0x00, 0x01, b'a', b'l', b'p', b'h', b'a'],
        &[0x05, 0x00, 0x03, b'a', b'l', b'p', b'h', b'a'],
    ] {
        fake.server.send_to(event, &path).unwrap();
    }
    interrupt(&ctl, libc::SIGINT);
    let (status, out, _) = finish(ctl);
    assert_eq!(status, 0, "events exits 0 when interrupted");
    assert_eq!(
        out,
        "UP beta@x\nUP alpha\nSHUTDOWN beta@x\nDOWN beta@x\nDOWN alpha\nSTARTING alpha\n"
    );
    assert!(!path.exists());
}

#[test]
fn waits_work_without_events_when_notify_paths_do_not_fit() {
    // The socket's path fits in sun_path (108 bytes), notify/<name>,<pid>_0
    // does not.
    let fake = Fake::in_dir(|tmp| "d".repeat(92 - tmp.as_os_str().len() - 1));
    assert!(fake.sock.as_os_str().len() < 108);
    let ctl = fake.ctl(&["start", "alpha"]);
    let from = fake.expect(&packet(0x78, "alpha"));
    assert_eq!(from.as_pathname(), None, "an autobound socket");
    fake.reply(&from, OK);
    fake.reply(&fake.expect(&query("alpha")), &query_reply(UP, 2983));
    assert_eq!(finish(ctl).0, 0);
}

#[test]
fn a_reader_that_goes_away_ends_events_and_its_socket() {
    let fake = Fake::new();
    let (mut ctl, path) = events_ctl(&fake, &["events"]);
    drop(ctl.stdout.take()); // as `nitroctl events | head -0` would
    // A child another test forks right now holds a copy of the pipe's
    // read end until it execs, and a line may still go into the pipe:
    // events keep coming until one finds no reader.
    let end = Instant::now() + DEADLINE;
    while ctl.try_wait().unwrap().is_none() {
        assert!(Instant::now() < end, "nitroctl events did not end");
        let _ = fake.server.send_to(&packet(UP, "alpha"), &path);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, _, err) = finish(ctl);
    assert_eq!(
        status,
        128 + libc::SIGPIPE,
        "as if killed by SIGPIPE: {err}"
    );
    assert!(!path.exists());
}

/// nitroctl events with `args`, bound and ready for events.
fn events_ctl(fake: &Fake, args: &[&str]) -> (Child, PathBuf) {
    let watch = Watch::new(&fake.notify);
    let ctl = fake.ctl(args);
    let path = fake.notify.join(format!("ALL,{}", ctl.id()));
    watch.until_exists(&path);
    (ctl, path)
}

#[test]
fn events_of_the_named_services_only_and_sigterm_ends_them_with_0() {
    let fake = Fake::new();
    let (ctl, path) = events_ctl(&fake, &["events", "alpha", "beta@x"]);
    for (state, name) in [
        (UP, "alpha"),
        (UP, "alphabet"),
        (UP, "alph"),
        (UP, "beta@"),
        (UP, "beta@y"),
        (DOWN, "beta@x"),
        (STARTING, "alpha"),
    ] {
        fake.server.send_to(&packet(state, name), &path).unwrap();
    }
    interrupt(&ctl, libc::SIGTERM);
    assert_eq!(
        finish(ctl),
        (
            0,
            "UP alpha\nDOWN beta@x\nSTARTING alpha\n".to_string(),
            String::new()
        )
    );
}

/// The UTC time now as `-T` writes it, by date(1).
fn utc_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

#[test]
fn events_with_t_start_with_the_utc_time_and_sighup_ends_them_with_0() {
    let fake = Fake::new();
    let before = utc_now();
    let (ctl, path) = events_ctl(&fake, &["-T", "events"]);
    fake.server.send_to(&packet(UP, "alpha"), &path).unwrap();
    fake.server.send_to(&packet(DOWN, "b c"), &path).unwrap();
    interrupt(&ctl, libc::SIGHUP);
    let (status, out, err) = finish(ctl);
    let after = utc_now();
    assert_eq!((status, err.as_str()), (0, ""));
    let lines: Vec<(&str, &str)> = out.lines().map(|l| l.split_once(' ').unwrap()).collect();
    assert_eq!(
        lines.iter().map(|(_, e)| *e).collect::<Vec<_>>(),
        ["UP alpha", "DOWN b c"]
    );
    for (stamp, _) in lines {
        // ISO 8601 sorts as text.
        assert!(
            before.as_str() <= stamp && stamp <= after.as_str(),
            "{before} {stamp} {after}"
        );
        assert_eq!(stamp.len(), "2026-11-24T09:05:03.042Z".len(), "{stamp}");
    }
}
