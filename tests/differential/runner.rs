//! Runs a scenario against one supervisor (the C nitro built from
//! `../shared/reference/nitro-c`, or ours) and records what a user can
//! observe: every event from `notify/ALL,diff`, each command's exit status,
//! `nitroctl list` once the system is quiet after each step, the scripts
//! that ran (with their arguments), what loggers received, how nitro ended
//! and which processes were left.
//!
//! Both supervisors are driven by OUR `nitroctl`: one client for both means
//! that every difference comes from the supervisors; the protocol is
//! byte-compatible (a promise of the spec, exercised here too), and the C
//! `nitroctl` would print its list unsorted and stop at one 4 KiB reply.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use nitro::client::{self, Client};
use nitro::proto::{self, State};

use super::scenario::{self, SHORT_WAIT_MS, Scenario, Step};

/// Quiet: this long without an event, a busy script, or a service in a
/// state that a timer will end.
const QUIET: Duration = Duration::from_millis(300);
/// A step that has not settled after this long is recorded as unsettled
/// (the longest legitimate wait: 7 s to SIGKILL plus a long finish).
const SETTLE_CAP: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    C,
    Ours,
}

impl Impl {
    fn binary(self) -> PathBuf {
        match self {
            Impl::C => c_nitro().to_path_buf(),
            Impl::Ours => PathBuf::from(env!("CARGO_BIN_EXE_nitro")),
        }
    }
}

/// The C nitro, built once per test process from a copy of the reference
/// sources (the shared directory is read-only). Panics if it cannot be
/// built: the differential test never silently skips.
pub fn c_nitro() -> &'static Path {
    static BUILT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = BUILT.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/nitro-c");
        let tmp = tempfile::tempdir().expect("temp dir for the C nitro");
        for file in ["nitro.c", "nitro.h", "Makefile"] {
            std::fs::copy(src.join(file), tmp.path().join(file)).unwrap_or_else(|e| {
                panic!(
                    "cannot copy the C nitro's {file} from {}: {e} \
                     (the differential test needs ../shared/reference/nitro-c)",
                    src.display()
                )
            });
        }
        let out = Command::new("make")
            .arg("nitro")
            .current_dir(tmp.path())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run make to build the C nitro: {e} (install make and cc)")
            });
        assert!(
            out.status.success(),
            "building the C nitro failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let bin = tmp.path().join("nitro");
        assert!(bin.exists(), "make succeeded but built no C nitro");
        (tmp, bin)
    });
    path
}

/// One line of `nitroctl list`, minus what legitimately differs (pid
/// values, uptimes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub state: String,
    pub has_pid: bool,
    pub wstatus: i32,
}

pub type Snapshot = BTreeMap<String, Entry>;

/// One event: the step it arrived in (0 = boot, `steps + 1` = shutdown),
/// the state, the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub step: usize,
    pub state: State,
    pub name: String,
}

#[derive(Clone, Debug, Default)]
pub struct Trace {
    pub events: Vec<Event>,
    /// Per step: the exit status of its `nitroctl` command.
    pub statuses: Vec<Option<i32>>,
    /// After boot (index 0) and after each step: `nitroctl list` once quiet.
    pub snapshots: Vec<Option<Snapshot>>,
    /// After boot and after each step: the services whose current `run`
    /// found its readiness pipe closed by nitro (EPIPE).
    pub lost_ready: Vec<BTreeSet<String>>,
    /// Whether the system became quiet after boot and after each step.
    pub settled: Vec<bool>,
    /// Per service: the scripts that ran, with their arguments.
    pub runs: BTreeMap<String, Vec<String>>,
    /// Per logger: the lines it received (sorted: writers interleave).
    pub logs: BTreeMap<String, Vec<String>>,
    /// nitro's exit status after `nitroctl Shutdown`.
    pub exit: Option<i32>,
    /// Processes of the scenario still alive after nitro ended.
    pub leftovers: Vec<String>,
    pub stderr: String,
}

type EventLog = Arc<Mutex<(Vec<Event>, Instant, usize)>>;

/// Binds `path` and collects events into `log` until `stop`. The socket is
/// made in a network namespace of its own where the datagram queue is long:
/// the default queue of 10 datagrams overflows on a busy machine when a dozen
/// services change at once, and nitro (rightly) drops what does not fit.
fn listen(path: PathBuf, log: EventLog, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        // SAFETY: unshare of the network namespace affects only this thread.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
            let _ = std::fs::write("/proc/sys/net/unix/max_dgram_qlen", "4096");
        } else {
            warn_once(
                "cannot make a network namespace (not root?): events may be dropped under load",
            );
        }
        let socket = UnixDatagram::bind(&path).expect("bind the event socket");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 512];
        while !stop.load(Ordering::Relaxed) {
            if let Ok(n) = socket.recv(&mut buf)
                && let Some((state, name)) = client::decode_event(&buf[..n])
            {
                let mut log = log.lock().unwrap();
                let step = log.2;
                log.0.push(Event { step, state, name });
                log.1 = Instant::now();
            }
        }
    });
    rx.recv().expect("the event listener started");
    handle
}

fn warn_once(msg: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        eprintln!("differential: {msg}");
    }
}

struct Run<'a> {
    tmp: &'a Path,
    sv: PathBuf,
    sock: PathBuf,
    state: PathBuf,
    log: EventLog,
    /// Per directory: whether its `run` becomes ready by the 2 s timer
    /// (remembered, for directories removed since).
    timer_ready: HashMap<String, bool>,
}

impl Run<'_> {
    fn nitroctl(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_nitroctl"))
            .arg("-t")
            .arg("5")
            .args(args)
            .env("NITRO_SOCK", &self.sock)
            .stdin(Stdio::null())
            .output()
            .expect("run nitroctl");
        let code = out
            .status
            .code()
            .or_else(|| out.status.signal().map(|s| 128 + s));
        (code, String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn snapshot(&self) -> Option<Snapshot> {
        let (code, out) = self.nitroctl(&["list"]);
        if code != Some(0) {
            return None;
        }
        let mut snap = Snapshot::new();
        for line in out.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 2 {
                continue;
            }
            let wstatus = line
                .split("(wstatus ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            snap.insert(
                words[1].to_string(),
                Entry {
                    state: words[0].to_string(),
                    has_pid: line.contains("(pid "),
                    wstatus,
                },
            );
        }
        Some(snap)
    }

    /// Whether a live process holds a busy marker (stale ones are removed).
    fn busy(&self) -> bool {
        let mut busy = false;
        if let Ok(dir) = std::fs::read_dir(self.state.join("busy")) {
            for entry in dir.flatten() {
                let pid = entry.file_name().to_string_lossy().into_owned();
                let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
                    .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'));
                if alive {
                    busy = true;
                } else {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        busy
    }

    fn is_timer_ready(&mut self, name: &str) -> bool {
        let dir = match name.find('@') {
            Some(at) => &name[..=at],
            None => name,
        };
        let path = self.sv.join(dir);
        if path.is_dir() {
            let timer = !path.join("notification-fd").exists();
            self.timer_ready.insert(dir.to_string(), timer);
            timer
        } else {
            *self.timer_ready.get(dir).unwrap_or(&true)
        }
    }

    /// Whether some service is in a state a timer or a script will end.
    fn transient(&mut self) -> bool {
        let Ok(client) = Client::new(&self.sock, None) else {
            return true;
        };
        let mut reply = vec![0u8; 65536];
        let answered = client
            .send(&client::request(proto::TAG_LIST, &[]))
            .and_then(|()| client.socket.set_read_timeout(Some(Duration::from_secs(2))))
            .and_then(|()| client.socket.recv(&mut reply));
        let Ok(n) = answered else {
            return true;
        };
        reply.truncate(n);
        let (services, _) = client::decode_list(&reply);
        services.iter().any(|s| match s.state {
            Some(State::Setup | State::Shutdown | State::Restart | State::Delay) => true,
            Some(State::Starting) => self.is_timer_ready(&s.name),
            _ => false,
        })
    }

    /// Waits until quiet; false if it never was within `SETTLE_CAP`.
    fn settle(&mut self, nitro: &mut std::process::Child) -> bool {
        let start = Instant::now();
        let mut last_activity = start;
        loop {
            std::thread::sleep(Duration::from_millis(50));
            if nitro.try_wait().ok().flatten().is_some() {
                return false;
            }
            let now = Instant::now();
            let last_event = self.log.lock().unwrap().1;
            last_activity = last_activity.max(last_event);
            if self.busy() || self.transient() {
                last_activity = now;
            }
            if now.duration_since(last_activity) >= QUIET {
                return true;
            }
            if now.duration_since(start) > SETTLE_CAP {
                return false;
            }
        }
    }

    /// Services whose current run could not write its readiness (EPIPE).
    fn lost_ready(&self) -> BTreeSet<String> {
        let mut lost = BTreeSet::new();
        for entry in std::fs::read_dir(self.state.join("epipe"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            let run = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let now = std::fs::read_to_string(self.state.join(format!("count/{name}.run")))
                .unwrap_or_default();
            if run.trim() == now.trim() {
                lost.insert(name);
            }
        }
        lost
    }

    fn set_step(&self, step: usize) {
        self.log.lock().unwrap().2 = step;
    }

    fn read_dir_lines(&self, sub: &str, sort: bool) -> BTreeMap<String, Vec<String>> {
        let mut map = BTreeMap::new();
        if let Ok(dir) = std::fs::read_dir(self.state.join(sub)) {
            for entry in dir.flatten() {
                let mut lines: Vec<String> = std::fs::read_to_string(entry.path())
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_string)
                    .collect();
                if sort {
                    lines.sort();
                }
                map.insert(entry.file_name().to_string_lossy().into_owned(), lines);
            }
        }
        map
    }

    /// Processes whose environment carries this run's state directory.
    fn processes(&self) -> Vec<(i32, String)> {
        let marker = format!("DIFF_STATE={}\0", self.state.display());
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(env) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if env.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
                {
                    continue;
                }
                found.push((pid, comm.trim().to_string()));
            }
        }
        found
    }
}

/// Where the two runs of a scenario wait for each other before each
/// step, so that each step starts at the same moment for both: a rule
/// on time (a `run` that lived less than a second is restarted after a
/// delay) then meets services of the same age, even where one nitro took
/// longer to settle (the C nitro sits in DELAY after a requested restart
/// where we do not; seed 7425). A run that does not come within
/// `MEET_CAP`, or that has ended (it panicked), is not waited for.
#[derive(Default)]
struct Meeting {
    state: Mutex<Meetings>,
    arrived: std::sync::Condvar,
}

#[derive(Default)]
struct Meetings {
    /// Arrivals at the current meeting.
    arrived: usize,
    /// Meetings held so far.
    held: usize,
    /// A run has ended: nobody waits any more.
    over: bool,
}

const MEET_CAP: Duration = Duration::from_secs(60);

impl Meeting {
    fn wait(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let held = state.held;
        state.arrived += 1;
        if state.over || state.arrived == 2 {
            state.arrived = 0;
            state.held += 1;
            self.arrived.notify_all();
            return;
        }
        let (mut state, timeout) = self
            .arrived
            .wait_timeout_while(state, MEET_CAP, |s| s.held == held && !s.over)
            .unwrap_or_else(|e| e.into_inner());
        if timeout.timed_out() {
            state.arrived = 0;
            state.held += 1;
        }
    }
}

/// Ends the meetings when a run ends, also by a panic.
struct Leaving<'a>(&'a Meeting);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.over = true;
        self.0.arrived.notify_all();
    }
}

/// Runs `scenario` against `which` and returns what was observed.
fn run(scenario: &Scenario, which: Impl, meeting: &Meeting) -> Trace {
    let _leaving = Leaving(meeting);
    let tmp = tempfile::tempdir().expect("temp dir");
    let sv = tmp.path().join("sv");
    let sockdir = tmp.path().join("s");
    let state = tmp.path().join("state");
    std::fs::create_dir(&sv).unwrap();
    for sub in ["runs", "count", "busy", "logs", "epipe"] {
        std::fs::create_dir_all(state.join(sub)).unwrap();
    }
    let private = |p: &Path| std::fs::DirBuilder::new().mode(0o700).create(p).unwrap();
    private(&sockdir);
    private(&sockdir.join("notify"));
    for svc in &scenario.services {
        scenario::write_service(&sv, svc);
    }

    let log: EventLog = Arc::new(Mutex::new((Vec::new(), Instant::now(), 0)));
    let stop = Arc::new(AtomicBool::new(false));
    let listener = listen(sockdir.join("notify/ALL,diff"), log.clone(), stop.clone());

    let sock = sockdir.join("nitro.sock");
    let mut nitro = Command::new(which.binary())
        .arg(&sv)
        .env("NITRO_SOCK", &sock)
        .env("DIFF_STATE", &state)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(tmp.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(tmp.path().join("stderr")).unwrap())
        .spawn()
        .expect("spawn nitro");
    let mut r = Run {
        tmp: tmp.path(),
        sv: sv.clone(),
        sock: sock.clone(),
        state: state.clone(),
        log: log.clone(),
        timer_ready: HashMap::new(),
    };
    let started = Instant::now();
    while !sock.exists() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut trace = Trace::default();
    let settled = r.settle(&mut nitro);
    trace.settled.push(settled);
    trace.snapshots.push(r.snapshot());
    trace.lost_ready.push(r.lost_ready());

    for (i, step) in scenario.steps.iter().enumerate() {
        meeting.wait();
        r.set_step(i + 1);
        let status = match &step.step {
            // `restart` waits for UP: `fast-restart` only until starting,
            // which the vocabulary reaches within about 2 s.
            Step::Ctl(verb, name) if verb == "restart" => r.nitroctl(&["fast-restart", name]).0,
            Step::Ctl(verb, name) => r.nitroctl(&[verb, name]).0,
            Step::Rescan => r.nitroctl(&["rescan"]).0,
            Step::Pause(ms) => {
                std::thread::sleep(Duration::from_millis(*ms as u64));
                None
            }
            fs => {
                scenario::apply_fs(&sv, fs);
                None
            }
        };
        trace.statuses.push(status);
        if matches!(step.step, Step::Pause(_)) {
            trace.settled.push(false);
            trace.snapshots.push(None);
        } else if step.settle {
            let settled = r.settle(&mut nitro);
            trace.settled.push(settled);
            trace.snapshots.push(r.snapshot());
        } else {
            std::thread::sleep(Duration::from_millis(SHORT_WAIT_MS));
            trace.settled.push(false);
            trace.snapshots.push(None);
        }
        trace.lost_ready.push(r.lost_ready());
    }

    // Settle before reading what the scripts and loggers left.
    r.settle(&mut nitro);
    trace.runs = r.read_dir_lines("runs", false);
    trace.logs = r.read_dir_lines("logs", true);

    r.set_step(scenario.steps.len() + 1);
    let _ = r.nitroctl(&["Shutdown"]);
    let end = Instant::now() + Duration::from_secs(40);
    trace.exit = loop {
        if let Some(status) = nitro.try_wait().unwrap() {
            break status.code().or_else(|| status.signal().map(|s| 128 + s));
        }
        if Instant::now() > end {
            let _ = nitro.kill();
            let _ = nitro.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Events still in flight.
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    listener.join().unwrap();

    // Scripts killed mid-sleep leave a `sleep` that ends by itself soon.
    let end = Instant::now() + Duration::from_secs(3);
    let mut left = r.processes();
    while !left.is_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
        left = r.processes();
    }
    for (pid, _) in &left {
        // SAFETY: plain kill of a process of this scenario.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    trace.leftovers = left.into_iter().map(|(_, comm)| comm).collect();
    trace.leftovers.sort();
    trace.events = std::mem::take(&mut log.lock().unwrap().0);
    trace.stderr = std::fs::read_to_string(r.tmp.join("stderr")).unwrap_or_default();
    trace
}

/// Runs a scenario against both supervisors at once.
pub fn run_both(scenario: &Scenario) -> (Trace, Trace) {
    let meeting = Meeting::default();
    std::thread::scope(|s| {
        let c = s.spawn(|| run(scenario, Impl::C, &meeting));
        let ours = run(scenario, Impl::Ours, &meeting);
        (c.join().expect("the C run panicked"), ours)
    })
}
