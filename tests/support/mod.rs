//! Harness for end-to-end tests: runs the real `nitro` in a temporary
//! service directory and watches it the way outside tools do, through
//! `nitroctl`, raw datagrams and an event socket in `notify/`.
#![allow(dead_code)]

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nitro::proto::State;

/// Long enough to never matter unless something is really wrong.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub fn nitro_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nitro")
}

pub fn nitroctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nitroctl")
}

/// Whether a command is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Writes an executable shell script.
pub fn script(path: &Path, body: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Writes a plain file.
pub fn file(path: &Path, content: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Fails the test, showing the command's stderr, unless it exited 0.
pub fn assert_succeeded(what: &str, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `cond` until it holds, failing the test after the deadline.
pub fn until(what: &str, cond: impl FnMut() -> bool) {
    until_within(DEADLINE, what, cond)
}

/// `until` with a deadline of its own, for work that is slow on a busy
/// machine (thousands of processes), not for measuring it.
pub fn until_within(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Events seen so far, with the time each arrived.
#[derive(Default)]
pub struct Events {
    pub list: Vec<(State, String, Instant)>,
}

pub struct Nitro {
    pub tmp: tempfile::TempDir,
    pub sv: PathBuf,
    pub sock: PathBuf,
    pub child: Option<Child>,
    events: Arc<(Mutex<Events>, Condvar)>,
    /// Per service: index into the event list up to which `wait_for`
    /// has consumed its events.
    cursors: std::collections::HashMap<String, usize>,
}

/// A bound datagram socket for raw requests.
pub struct Raw {
    pub socket: UnixDatagram,
    _dir: tempfile::TempDir,
}

impl Nitro {
    /// Populates a service directory with `setup`, then starts nitro on it.
    pub fn start(setup: impl FnOnce(&Path)) -> Nitro {
        Nitro::start_with(setup, |_| {})
    }

    /// As `start`, with a hook to adjust nitro's command.
    pub fn start_with(setup: impl FnOnce(&Path), adjust: impl FnOnce(&mut Command)) -> Nitro {
        let tmp = tempfile::tempdir().unwrap();
        let sv = tmp.path().join("sv");
        std::fs::create_dir(&sv).unwrap();
        setup(&sv);
        let sockdir = tmp.path().join("s");
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&sockdir)
            .unwrap();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(sockdir.join("notify"))
            .unwrap();
        let events = Arc::new((Mutex::new(Events::default()), Condvar::new()));
        let listener = UnixDatagram::bind(sockdir.join("notify/ALL,harness")).unwrap();
        let sink = events.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = listener.recv(&mut buf) {
                if let Some((state, name)) = nitro::client::decode_event(&buf[..n]) {
                    let (lock, cvar) = &*sink;
                    let mut events = lock.lock().unwrap_or_else(|e| e.into_inner());
                    events.list.push((state, name, Instant::now()));
                    cvar.notify_all();
                }
            }
        });
        let sock = sockdir.join("nitro.sock");
        let mut cmd = Command::new(nitro_bin());
        cmd.arg(&sv)
            .env("NITRO_SOCK", &sock)
            .env("T", tmp.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(tmp.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(tmp.path().join("stderr")).unwrap());
        adjust(&mut cmd);
        let child = cmd.spawn().expect("spawn nitro");
        let nitro = Nitro {
            tmp,
            sv,
            sock,
            child: Some(child),
            events,
            cursors: Default::default(),
        };
        nitro.until_serving();
        nitro
    }

    /// Waits until nitro answers a request, or has ended. The socket is
    /// bound before nitro has opened the rest of its descriptors, so
    /// its mere existence says nothing about the end of the start-up
    /// (a descriptor count taken then came out 4 short under load).
    pub fn until_serving(&self) {
        until("the control socket", || self.sock.exists());
        let raw = self.raw();
        raw.socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 512];
        until("nitro to answer", || {
            raw.socket
                .send_to(&[0, 0, nitro::proto::TAG_INFO], &self.sock)
                .is_err()
                || raw.socket.recv(&mut buf).is_ok()
        });
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// Runs nitroctl: (exit status, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        self.ctl_in(args, self.tmp.path())
    }

    pub fn ctl_in(&self, args: &[&str], cwd: &Path) -> (i32, String, String) {
        let out = Command::new(nitroctl_bin())
            .args(args)
            .env("NITRO_SOCK", &self.sock)
            .current_dir(cwd)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A socket bound in a private directory, for raw requests.
    pub fn raw(&self) -> Raw {
        let dir = tempfile::tempdir().unwrap();
        let socket = UnixDatagram::bind(dir.path().join("c")).unwrap();
        socket.set_read_timeout(Some(DEADLINE)).unwrap();
        Raw { socket, _dir: dir }
    }

    /// Sends one raw request and returns the reply.
    pub fn request(&self, datagram: &[u8]) -> Vec<u8> {
        let raw = self.raw();
        raw.socket.send_to(datagram, &self.sock).unwrap();
        let mut buf = vec![0u8; 8192];
        // A receive with a timeout fails with EINTR when the process was
        // stopped and continued meanwhile (signal(7)).
        let n = loop {
            match raw.socket.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                received => break received.expect("a reply"),
            }
        };
        buf.truncate(n);
        buf
    }

    pub fn command(&self, tag: u8, name: &str) -> Vec<u8> {
        self.request(&nitro::client::request(tag, name.as_bytes()))
    }

    /// The current state and pid of a service, `None` if unknown.
    pub fn query(&self, name: &str) -> Option<(State, u32)> {
        let reply = self.command(nitro::proto::TAG_QUERY, name);
        nitro::client::decode_query(name, &reply).map(|s| (s.state.unwrap(), s.pid))
    }

    /// How many lines of `nitroctl list` start with `prefix` (a state).
    pub fn count_listed(&self, prefix: &str) -> usize {
        self.ctl(&["list"])
            .1
            .lines()
            .filter(|l| l.starts_with(prefix))
            .count()
    }

    pub fn state(&self, name: &str) -> Option<State> {
        self.query(name).map(|(s, _)| s)
    }

    /// Waits for the event `state` of `name` after the ones already
    /// consumed; returns when it arrived. Falls back to QUERY, since the
    /// kernel may drop events when the receiver is slow.
    pub fn wait_for(&mut self, name: &str, state: State) -> Instant {
        let end = Instant::now() + DEADLINE;
        let (lock, cvar) = &*self.events.clone();
        let mut events = lock.lock().unwrap_or_else(|e| e.into_inner());
        let cursor = self.cursors.entry(name.to_string()).or_default();
        loop {
            if let Some(k) = events.list[*cursor..]
                .iter()
                .position(|(s, n, _)| *s == state && n == name)
            {
                *cursor += k + 1;
                return events.list[*cursor - 1].2;
            }
            let now = Instant::now();
            assert!(
                now < end,
                "timed out waiting for {} {name}; events: {:?}",
                state.name(),
                events
                    .list
                    .iter()
                    .map(|(s, n, _)| format!("{} {n}", s.name()))
                    .collect::<Vec<_>>()
            );
            events = cvar
                .wait_timeout(events, Duration::from_millis(500))
                .unwrap()
                .0;
        }
    }

    /// The states of `name` seen so far, in order.
    pub fn seen(&self, name: &str) -> Vec<State> {
        let events = self.events.0.lock().unwrap_or_else(|e| e.into_inner());
        events
            .list
            .iter()
            .filter(|(_, n, _)| n == name)
            .map(|(s, _, _)| *s)
            .collect()
    }

    /// Waits until a QUERY shows `state`.
    pub fn until_state(&self, name: &str, state: State) {
        until(&format!("{name} to be {}", state.name()), || {
            self.state(name) == Some(state)
        });
    }

    /// Sends SIGTERM and waits for nitro to exit; returns its status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < end, "nitro did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nitro {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            // An orderly stop takes the services with it.
            // SAFETY: signalling our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Reads a file, empty if missing.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A small deterministic generator (xorshift), so that a failure
/// reproduces from its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
