//! The control socket, the wire format and events (SPEC section 7), end to
//! end, byte for byte where PROTOCOL-VECTORS.md fixes the bytes.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nitro::proto::{self, State};
use nitro::spat::{Item, Reader};
use support::*;

fn two_services(sv: &std::path::Path) {
    script(&sv.join("alpha/run"), "exec sleep 1000");
    script(&sv.join("beta@/run"), "exec sleep 1000");
    std::os::unix::fs::symlink("beta@", sv.join("beta@x")).unwrap();
}

#[test]
fn replies_have_the_c_nitro_layout() {
    let mut n = Nitro::start(two_services);
    n.wait_for("alpha", State::Up);
    let (_, pid) = n.query("alpha").unwrap();
    // QUERY: STATE, PID, WSTATUS, UPTIME first, as the C nitro.
    let q = n.request(&[0x05, 0x00, 0x7d, b'a', b'l', b'p', b'h', b'a']);
    let mut expected = vec![0x01, 0x00, 0x66, 0x04, 0x04, 0x00, 0x67];
    expected.extend_from_slice(&pid.to_le_bytes());
    expected.extend_from_slice(&[0x04, 0x00, 0x68, 0, 0, 0, 0, 0x04, 0x00, 0x69]);
    assert_eq!(q[..expected.len()], expected[..]);
    // INFO: NITRO_PID, PID (both nitro's), MAX_SERVICE = 2 services.
    let info = n.request(&[0x00, 0x00, 0x7b]);
    let nitro = n.pid().to_le_bytes();
    assert_eq!(info[..3], [0x04, 0x00, 0x6a]);
    assert_eq!(info[3..7], nitro);
    assert_eq!(info[7..10], [0x04, 0x00, 0x67]);
    assert_eq!(info[10..14], nitro);
    assert_eq!(info[14..21], [0x04, 0x00, 0x6b, 0x02, 0x00, 0x00, 0x00]);
    assert_eq!(info[21..24], [0x04, 0x00, 0x6c]);
    assert_eq!(info[28..31], [0x04, 0x00, 0x6d]);
    // DOWN, UP of an instance; SIGNAL; unknown names; unknown tags.
    assert_eq!(
        n.request(&[0x06, 0x00, 0x79, b'b', b'e', b't', b'a', b'@', b'x']),
        [0, 0, 0x50]
    );
    n.wait_for("beta@x", State::Down);
    assert_eq!(
        n.request(&[0x06, 0x00, 0x78, b'b', b'e', b't', b'a', b'@', b'x']),
        [0, 0, 0x50]
    );
    n.wait_for("beta@x", State::Starting);
    assert_eq!(
        n.request(&[0x06, 0x00, 0x81, 0x01, b'a', b'l', b'p', b'h', b'a']),
        [0, 0, 0x50]
    );
    n.wait_for("alpha", State::Down);
    n.wait_for("alpha", State::Starting);
    assert_eq!(
        n.request(&[0x06, 0x00, 0x7d, b'n', b'o', b's', b'u', b'c', b'h']),
        [0, 0, 0x51]
    );
    assert_eq!(n.request(&[0x00, 0x00, 0xc8]), [0, 0, 0x52]);
}

#[test]
fn list_frames_carry_name_state_pid_wstatus_uptime() {
    let mut n = Nitro::start(two_services);
    n.wait_for("beta@x", State::Up);
    let reply = n.request(&[0x00, 0x00, 0x7c]);
    let mut names = Vec::new();
    let mut tags_in_frame = Vec::new();
    for item in Reader::new(&reply) {
        match item.unwrap() {
            Item::Open(proto::TAG_SERVICE) => tags_in_frame.clear(),
            Item::Packet { tag, payload } => {
                tags_in_frame.push(tag);
                if tag == proto::TAG_NAME {
                    names.push(payload.to_vec());
                }
            }
            Item::Close(proto::TAG_SERVICE) => {
                assert_eq!(tags_in_frame[..5], [101, 102, 103, 104, 105])
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    names.sort();
    assert_eq!(names, [b"alpha".to_vec(), b"beta@x".to_vec()]);
}

#[test]
fn list_pages_every_service_beyond_4_kib() {
    let n = Nitro::start(|sv| {
        for i in 0..120 {
            script(
                &sv.join(format!("service-number-{i:03}/run")),
                "exec sleep 1000",
            );
        }
    });
    until("all services known", || {
        n.ctl(&["info"]).1.contains("max_service 120")
    });
    let first = n.request(&[0x00, 0x00, 0x7c]);
    assert!(first.len() <= 4096);
    let last = Reader::new(&first).last().unwrap().unwrap();
    assert!(
        matches!(
            last,
            Item::Packet {
                tag: proto::TAG_LIST_NEXT,
                ..
            }
        ),
        "{last:?}"
    );
    let (status, out, _) = n.ctl(&["list"]);
    assert_eq!(status, 0);
    let names: Vec<&str> = out.lines().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(names.len(), 120);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "sorted by name");
}

#[test]
fn malformed_datagrams_are_dropped_and_nitro_keeps_answering() {
    let n = Nitro::start(two_services);
    let raw = n.raw();
    raw.socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for bad in [
        &[][..],
        &[0x00],
        &[0x00, 0x00],
        &[0x05, 0x00, 0x79],
        &[0xff, 0x00, 0x7d, b'a'],
        // A frame marker alone: its length runs past the datagram for
        // the C nitro, which drops it.
        &[0xff, 0xff, 0x7b],
        &[0xfe, 0xff, 0x7b],
        &[0xff, 0xff, 0x7d, b'a'],
    ] {
        raw.socket.send_to(bad, &n.sock).unwrap();
        let mut buf = [0u8; 64];
        assert!(raw.socket.recv(&mut buf).is_err(), "no reply to {bad:?}");
    }
    assert_eq!(n.request(&[0x00, 0x00, 0x7b])[2], proto::TAG_NITRO_PID);
    assert_eq!(n.state("alpha").map(|s| s != State::Down), Some(true));
}

#[test]
fn names_outside_the_directory_get_esrch() {
    let n = Nitro::start(|sv| {
        two_services(sv);
        script(
            &sv.join("../decoy/run"),
            r#"touch "$T/decoy-ran"; exec sleep 1000"#,
        );
        script(
            &sv.join("../decoy@/run"),
            r#"touch "$T/decoy-ran"; exec sleep 1000"#,
        );
    });
    let long = "a".repeat(64);
    for name in [
        "../decoy",
        "alpha/../../decoy",
        "/etc",
        "../decoy@x",
        ".hidden",
        "SYS",
        "beta@",
        "beta@x@",
        "beta@@",
        "x,y",
        &long,
    ] {
        assert_eq!(n.command(proto::TAG_UP, name), [0, 0, 0x51], "{name}");
    }
    assert!(!n.path("decoy-ran").exists());
}

#[test]
fn events_go_to_all_and_named_sockets_only_and_stale_ones_are_removed() {
    let mut n = Nitro::start(two_services);
    let notify = n.sock.parent().unwrap().join("notify");
    let mine = UnixDatagram::bind(notify.join("alpha,1")).unwrap();
    let other = UnixDatagram::bind(notify.join("beta@x,1")).unwrap();
    let stale = notify.join("alpha,stale");
    drop(UnixDatagram::bind(&stale).unwrap());
    mine.set_read_timeout(Some(DEADLINE)).unwrap();
    other.set_nonblocking(true).unwrap();
    n.wait_for("alpha", State::Up);
    n.wait_for("beta@x", State::Up);
    assert_eq!(n.ctl(&["restart", "alpha"]).0, 0);
    let mut buf = [0u8; 64];
    loop {
        let len = mine.recv(&mut buf).unwrap();
        assert_eq!(&buf[3..len], b"alpha", "only alpha's events");
        assert_eq!(buf[..2], [5, 0]);
        if buf[2] == State::Restart as u8 {
            break;
        }
    }
    while let Ok(len) = other.recv(&mut buf) {
        assert_eq!(&buf[3..len], b"beta@x", "only beta@x's events");
    }
    assert!(!stale.exists(), "the stale socket is removed");
}

#[test]
fn the_events_of_a_request_come_before_its_reply() {
    // nitroctl counts only what follows the OK: the state the request
    // left the service in must come first.
    let mut n = Nitro::start(two_services);
    n.wait_for("alpha", State::Up);
    let notify = n.sock.parent().unwrap().join("notify");
    let client = UnixDatagram::bind(notify.join("alpha,order")).unwrap();
    client.set_read_timeout(Some(DEADLINE)).unwrap();
    let sock = n.sock.clone();
    let states_before_ok = |tag| {
        client
            .send_to(&nitro::client::request(tag, b"alpha"), &sock)
            .unwrap();
        let mut states = vec![];
        let mut buf = [0u8; 64];
        loop {
            let len = client.recv(&mut buf).unwrap();
            if !nitro::client::is_event(&buf[..len]) {
                assert_eq!(buf[..len], [0, 0, proto::TAG_OK]);
                return states;
            }
            states.push(buf[2]);
        }
    };
    let states = states_before_ok(proto::TAG_DOWN);
    assert_eq!(states.last(), Some(&(State::Shutdown as u8)), "{states:?}");
    n.wait_for("alpha", State::Down);
    let states = states_before_ok(proto::TAG_UP);
    assert_eq!(states.last(), Some(&(State::Starting as u8)), "{states:?}");
    // An unchanged state is echoed too.
    assert!(!states_before_ok(proto::TAG_UP).is_empty());
}

#[test]
fn events_come_from_the_control_socket() {
    let n = Nitro::start(two_services);
    let notify = n.sock.parent().unwrap().join("notify");
    let watcher = UnixDatagram::bind(notify.join("alpha,sender")).unwrap();
    watcher.set_read_timeout(Some(DEADLINE)).unwrap();
    // UP announces the current state, changed or not.
    assert_eq!(n.command(proto::TAG_UP, "alpha"), [0, 0, proto::TAG_OK]);
    let mut buf = [0u8; 64];
    let (len, from) = watcher.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[3..len], b"alpha");
    assert_eq!(
        from.as_pathname(),
        Some(n.sock.as_path()),
        "the sender is the control socket, as with the C nitro"
    );
}

#[test]
fn events_reach_a_notify_entry_too_long_for_a_socket_address() {
    use std::os::fd::AsRawFd;
    let tmp = tempfile::tempdir().unwrap();
    script(&tmp.path().join("sv/alpha/run"), "exec sleep 1000");
    // The control socket's path fits in the 108 bytes of an address; the
    // notify entry's full path does not.
    let base = tmp.path().as_os_str().len();
    let dir = tmp.path().join("d".repeat(90 - base));
    let sock = dir.join("nitro.sock");
    let receiver = "ALL,a-receiver-with-a-long-name";
    assert!(sock.as_os_str().len() < 108);
    assert!(dir.join("notify").join(receiver).as_os_str().len() > 108);
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(dir.join("notify")).unwrap();
    // The test can bind there only through its own open directory.
    let notify = std::fs::File::open(dir.join("notify")).unwrap();
    let watcher =
        UnixDatagram::bind(format!("/proc/self/fd/{}/{receiver}", notify.as_raw_fd())).unwrap();
    watcher.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut child = quiet_nitro(tmp.path().join("sv"), &sock).spawn().unwrap();
    let mut buf = [0u8; 64];
    let got = watcher.recv(&mut buf);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let len = got.expect("an event");
    assert_eq!(&buf[3..len], b"alpha");
}

#[test]
fn the_socket_directory_is_private() {
    let n = Nitro::start(|sv| {
        script(&sv.join("a/run"), "exec sleep 1000");
    });
    drop(n);
    // Let nitro create the directories itself this time.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sv")).unwrap();
    let sock = tmp.path().join("fresh/nitro.sock");
    let mut child = quiet_nitro(tmp.path().join("sv"), &sock).spawn().unwrap();
    until("the socket", || sock.exists());
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(sock.parent().unwrap()), 0o700);
    assert_eq!(mode(&sock.parent().unwrap().join("notify")), 0o700);
    assert_eq!(mode(&sock) & 0o077, 0);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(!sock.exists());
}

#[test]
fn a_second_nitro_on_the_same_socket_exits_111() {
    let n = Nitro::start(two_services);
    let status = quiet_nitro(&n.sv, &n.sock).status().unwrap();
    assert_eq!(status.code(), Some(111));
    assert_eq!(
        n.request(&[0x00, 0x00, 0x7b])[2],
        proto::TAG_NITRO_PID,
        "the first one still serves"
    );
}

#[test]
fn a_stale_socket_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("sv")).unwrap();
    std::fs::create_dir(tmp.path().join("s")).unwrap();
    let sock = tmp.path().join("s/nitro.sock");
    drop(UnixDatagram::bind(&sock).unwrap());
    let mut child = std::process::Command::new(nitro_bin())
        .arg(tmp.path().join("sv"))
        .env("NITRO_SOCK", &sock)
        .spawn()
        .unwrap();
    let client = UnixDatagram::bind(tmp.path().join("c")).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    until("nitro answers", || {
        let _ = client.send_to(&[0, 0, 0x7b], &sock);
        let mut buf = [0u8; 64];
        client.recv(&mut buf).is_ok()
    });
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn rescan_and_shutdown_requests_are_acted_on() {
    let mut n = Nitro::start(two_services);
    script(&n.sv.join("gamma/run"), "exec sleep 1000");
    assert_eq!(n.request(&[0, 0, proto::TAG_RESCAN]), [0, 0, 0x50]);
    n.wait_for("gamma", State::Starting);
    assert_eq!(n.request(&[0, 0, proto::TAG_SHUTDOWN]), [0, 0, 0x50]);
    let mut child = n.child.take().unwrap();
    until("nitro exits", || child.try_wait().unwrap().is_some());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn no_allocation_after_startup_through_churn() {
    let mut n = Nitro::start(|sv| {
        two_services(sv);
        script(&sv.join("crash/run"), "exit 1");
        script(&sv.join("ready/run"), "echo >&3; exec sleep 1000");
        file(&sv.join("ready/notification-fd"), "3");
        script(&sv.join("one/setup"), "true");
        script(&sv.join("one/finish"), "true");
    });
    n.wait_for("ready", State::Up);
    for i in 0..12 {
        assert_eq!(n.ctl(&["restart", "ready"]).0, 0);
        n.ctl(&["fast-restart", "alpha"]);
        n.ctl(&["up", &format!("beta@{i}")]);
        n.ctl(&["down", &format!("beta@{}", i.max(1) - 1)]);
        n.ctl(&["restart", "one"]);
        n.ctl(&["list"]);
        n.ctl(&["rescan"]);
        n.ctl(&["hup", "alpha"]);
    }
    let info = n.ctl(&["info"]).1;
    assert!(
        info.contains("\nallocs 0\n") || info.ends_with("allocs 0\n"),
        "{info}"
    );
}

/// nitro on `sv` serving `sock`, its messages dropped.
fn quiet_nitro(sv: impl AsRef<std::path::Path>, sock: &std::path::Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(nitro_bin());
    cmd.arg(sv.as_ref())
        .env("NITRO_SOCK", sock)
        .stderr(std::process::Stdio::null());
    cmd
}
