//! Simulation tests of the core: a fake `Os` records every side effect,
//! time is a number we move by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::*;
use crate::proto;
use crate::spat::{Item, Reader};

/// A recorded spawn: (dir, prog, args, stdin, stdout, pid, whether its
/// cgroup was to be made anew).
type Spawned = (
    Vec<u8>,
    Script,
    Vec<Vec<u8>>,
    Option<Fd>,
    Option<Fd>,
    Pid,
    bool,
);

#[derive(Default)]
struct FakeOs {
    /// Files by path ("dir/file"); directories are "dir/" entries.
    files: BTreeMap<Vec<u8>, Vec<u8>>,
    links: BTreeMap<Vec<u8>, Vec<u8>>,
    next_pid: Pid,
    open_fds: BTreeSet<Fd>,
    spawns: Vec<Spawned>,
    kills: Vec<(Pid, i32)>,
    events: Vec<(Vec<u8>, State)>,
    warnings: usize,
    /// exec errors to return for "dir/prog".
    exec_errors: HashMap<Vec<u8>, i32>,
    readiness: HashMap<Fd, Vec<ReadResult>>,
    /// Watched descriptors and their tokens (closing one drops it, as
    /// the kernel drops a closed descriptor from an epoll set).
    watched: BTreeMap<Fd, u64>,
    /// Descriptors made non-blocking: reading one of the others with
    /// nothing in it would block nitro forever, and fails the test.
    nonblocking: BTreeSet<Fd>,
    /// Every descriptor read, in order.
    reads: Vec<Fd>,
    /// Every readiness pipe ever watched, with its token.
    tokens: Vec<(u64, Fd)>,
    scan: Vec<Vec<u8>>,
    /// List the directory in reverse name order (readdir follows no order).
    scan_reversed: bool,
    /// Or in an order of its own, by this seed (0: by name).
    scan_seed: u64,
    /// Cgroups with processes left in them by a script that ended (a
    /// helper in the background, a daemon), by service name, with the
    /// script that left them.
    populated: BTreeMap<Vec<u8>, Script>,
    /// The scripts alive in a cgroup, by pid: a cgroup with one of them
    /// is not empty either.
    live: BTreeMap<Pid, (Vec<u8>, Script)>,
    /// Cgroups found not empty: their emptying wakes nitro up (the
    /// inotify watch on `cgroup.events`, until the cgroup is removed).
    cgroup_watches: BTreeSet<Vec<u8>>,
    /// No watch can be added (inotify's limit reached): a cgroup's
    /// emptying is never heard, only found by looking.
    cgroups_unwatched: bool,
    /// Processes that got SIGKILL, by pid or through their cgroup, and
    /// cgroups that did (what is left in them ends too): what must end
    /// even if it would never end by itself.
    killed: BTreeSet<Pid>,
    killed_cgroups: BTreeSet<Vec<u8>>,
    /// Make every fork fail with this errno.
    fork_error: Option<i32>,
    /// The limit of descriptors, 1024 unless set.
    fd_limit: Option<i32>,
    /// Every file read fails with this errno (no descriptor left).
    read_error: Option<i32>,
    /// Make every pipe fail with this errno.
    pipe_error: Option<i32>,
    /// How often a cgroup was looked at (`cgroup_populated`).
    cgroup_looks: usize,
    /// How often a link was read (`read_link`).
    link_reads: usize,
    /// Signals sent to whole cgroups (SIGKILL for `cgroup_kill`).
    cgroup_signals: Vec<(Vec<u8>, i32)>,
    /// Cgroups removed.
    removed_cgroups: Vec<Vec<u8>>,
    /// OOM kills in each service's current cgroup (`memory.events`).
    oom_kills: HashMap<Vec<u8>, u64>,
    /// The stdin and stdout each live script got.
    stdio: BTreeMap<Pid, (Option<Fd>, Option<Fd>)>,
    /// Pipes made: write end by read end.
    pipe_pairs: BTreeMap<Fd, Fd>,
    /// The last state announced for each name.
    last_event: HashMap<Vec<u8>, State>,
    /// The shutdown was asked for (by the simulation): a logger's `run`
    /// signalled now must have no writer left alive.
    shutting_down: std::cell::Cell<bool>,
    /// Ended, not reaped yet.
    zombies: BTreeSet<Pid>,
    /// A request of the user is being handled (its stops are its own).
    user_request: bool,
    /// Signals to a logger's `run` during the shutdown: (logger pid,
    /// the live scripts then writing into its pipe).
    logger_signals: std::cell::RefCell<Vec<(Pid, Writers)>>,
}

/// Live scripts writing into a pipe: pid, service, script.
type Writers = Vec<(Pid, Vec<u8>, Script)>;

fn path(dir: &[u8], file: &[u8]) -> Vec<u8> {
    let mut p = dir.to_vec();
    p.push(b'/');
    p.extend_from_slice(file);
    p
}

impl FakeOs {
    fn service(&mut self, name: &str, files: &[(&str, &str)]) {
        self.files.insert(path(name.as_bytes(), b""), vec![]);
        for (file, content) in files {
            self.files.insert(
                path(name.as_bytes(), file.as_bytes()),
                content.as_bytes().to_vec(),
            );
        }
    }

    fn remove_service(&mut self, name: &str) {
        let prefix = path(name.as_bytes(), b"");
        self.files.retain(|k, _| !k.starts_with(&prefix));
        self.links.retain(|k, _| !k.starts_with(&prefix));
    }

    fn link(&mut self, name: &str, file: &str, target: &str) {
        self.links.insert(
            path(name.as_bytes(), file.as_bytes()),
            target.as_bytes().to_vec(),
        );
    }

    fn last_spawn(&self, dir: &str, prog: Script) -> Option<&Spawned> {
        self.spawns
            .iter()
            .rev()
            .find(|s| s.0 == dir.as_bytes() && s.1 == prog)
    }

    fn pid_of(&self, dir: &str, prog: Script) -> Pid {
        self.last_spawn(dir, prog).expect("spawned").5
    }

    /// Whether a process of any kind is in the cgroup of `name`.
    fn in_cgroup(&self, name: &[u8]) -> bool {
        self.populated.contains_key(name) || self.live.values().any(|(cg, _)| cg == name)
    }

    /// The script `pid` leaves something behind in its cgroup.
    fn leave(&mut self, pid: Pid) {
        let (cgroup, script) = self.live[&pid].clone();
        self.populated.insert(cgroup, script);
    }

    fn events_of(&self, name: &str) -> Vec<State> {
        self.events
            .iter()
            .filter(|(n, _)| n == name.as_bytes())
            .map(|(_, s)| *s)
            .collect()
    }
}

impl Os for FakeOs {
    fn spawn(&mut self, spawn: &Spawn) -> Result<Pid, SpawnError> {
        match spawn.cgroup {
            None => assert_eq!(spawn.dir, SYS, "only SYS scripts run outside a cgroup"),
            Some(cgroup) => {
                assert!(cgroup.starts_with(spawn.dir), "the cgroup is the service's");
                let file = spawn.script.file();
                let name = String::from_utf8_lossy(cgroup);
                assert!(
                    !self.live.values().any(|(cg, _)| cg == cgroup),
                    "{file} started in the cgroup of {name} while another script runs there"
                );
                // What one generation left behind must never meet the next
                // one, nor `finish`; what `setup` left stays with its `run`.
                match self.populated.get(cgroup) {
                    None => {}
                    Some(Script::Setup) if spawn.script == Script::Run => {}
                    Some(_) => {
                        panic!("{file} started in the cgroup of {name} while leftovers are there")
                    }
                }
                // The kernel kills every child cloned into a cgroup once
                // emptied through `cgroup.kill`, until it is made anew.
                assert!(
                    spawn.fresh_cgroup || !self.killed_cgroups.contains(cgroup),
                    "{file} cloned into the cgroup of {name}, killed before: the kernel kills it"
                );
                if matches!(spawn.script, Script::Setup | Script::Run) {
                    assert!(spawn.fresh_cgroup, "{file} of {name} in an old cgroup");
                }
                // An empty cgroup is made anew when asked, as RealOs does.
                if spawn.fresh_cgroup && !self.in_cgroup(cgroup) {
                    self.oom_kills.remove(cgroup);
                    self.cgroup_watches.remove(cgroup);
                    self.killed_cgroups.remove(cgroup);
                }
            }
        }
        if let Some(errno) = self.fork_error {
            return Err(SpawnError::Fork(errno));
        }
        if let Some(&errno) = self
            .exec_errors
            .get(&path(spawn.dir, spawn.script.file().as_bytes()))
        {
            return Err(SpawnError::Exec(errno));
        }
        self.next_pid += 1;
        let pid = self.next_pid + 1000;
        // Only a logger's `run` reads its pipe; whatever a service's
        // script gets is open (SYS scripts get the console).
        if spawn.dir != SYS {
            assert!(
                spawn.stdin.is_none() || spawn.script == Script::Run,
                "{} reads a pipe",
                spawn.script.file()
            );
            for fd in [spawn.stdin, spawn.stdout].into_iter().flatten() {
                assert!(self.open_fds.contains(&fd), "fd {fd} handed on closed");
            }
        }
        // SYS scripts are in nitro's cgroup, named "" here.
        let cgroup = spawn.cgroup.unwrap_or_default();
        self.live.insert(pid, (cgroup.to_vec(), spawn.script));
        self.stdio.insert(pid, (spawn.stdin, spawn.stdout));
        self.spawns.push((
            spawn.dir.to_vec(),
            spawn.script,
            spawn.args.iter().map(|a| a.to_vec()).collect(),
            spawn.stdin,
            spawn.stdout,
            pid,
            spawn.fresh_cgroup,
        ));
        Ok(pid)
    }
    fn kill(&mut self, pid: Pid, signal: i32) {
        if self.shutting_down.get()
            && !self.user_request
            && signal != libc::SIGCONT
            && signal != libc::SIGKILL
            && let Some(&(Some(stdin), _)) = self.stdio.get(&pid)
            && let Some(&write) = self.pipe_pairs.get(&stdin)
            && self.live.contains_key(&pid)
        {
            let writers: Writers = self
                .live
                .iter()
                .filter(|&(&p, _)| {
                    p != pid && self.stdio.get(&p).is_some_and(|io| io.1 == Some(write))
                })
                .map(|(&p, (cg, sc))| (p, cg.clone(), *sc))
                .collect();
            self.logger_signals.borrow_mut().push((pid, writers));
        }
        self.kills.push((pid, signal));
        if signal == libc::SIGKILL {
            self.killed.insert(pid);
        }
    }
    fn pipe(&mut self) -> Result<(Fd, Fd), i32> {
        if let Some(errno) = self.pipe_error {
            return Err(errno);
        }
        // The lowest free numbers, as the kernel hands them out: a closed
        // descriptor comes straight back as the next pipe.
        let mut free = (100..).filter(|fd| !self.open_fds.contains(fd));
        let (r, w) = (free.next().unwrap(), free.next().unwrap());
        self.open_fds.insert(r);
        self.open_fds.insert(w);
        self.pipe_pairs.insert(r, w);
        Ok((r, w))
    }
    fn close(&mut self, fd: Fd) {
        assert!(
            self.open_fds.remove(&fd),
            "closing fd {fd} that is not open"
        );
        self.watched.remove(&fd);
        self.nonblocking.remove(&fd);
        self.readiness.remove(&fd);
    }
    fn watch(&mut self, fd: Fd, token: u64) {
        assert!(self.open_fds.contains(&fd), "watching fd {fd} not open");
        self.watched.insert(fd, token);
        self.nonblocking.insert(fd);
        self.tokens.push((token, fd));
    }
    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> ReadResult {
        assert!(
            self.open_fds.contains(&fd),
            "reading fd {fd} that is not open"
        );
        self.reads.push(fd);
        match self
            .readiness
            .get_mut(&fd)
            .and_then(|q| (!q.is_empty()).then(|| q.remove(0)))
        {
            Some(ReadResult::Data(n)) => {
                buf[..n].fill(b'\n');
                ReadResult::Data(n)
            }
            Some(other) => other,
            None => {
                assert!(
                    self.nonblocking.contains(&fd),
                    "read of the empty blocking fd {fd}: nitro would hang"
                );
                ReadResult::Nothing
            }
        }
    }
    fn notify(&mut self, name: &[u8], state: State) {
        let before = self.last_event.insert(name.to_vec(), state);
        // Only a STARTING `run` becomes UP.
        if state == State::Up {
            assert!(
                matches!(before, Some(State::Starting | State::Up)),
                "{} announced UP after {:?}",
                String::from_utf8_lossy(name),
                before
            );
        }
        self.events.push((name.to_vec(), state));
    }
    fn fd_limit(&mut self) -> i32 {
        self.fd_limit.unwrap_or(1024)
    }
    fn warn(&mut self, _message: core::fmt::Arguments) {
        self.warnings += 1;
    }
    fn exists(&mut self, dir: &[u8], file: &[u8]) -> bool {
        self.files.contains_key(&path(dir, file)) || self.links.contains_key(&path(dir, file))
    }
    fn read_file(&mut self, dir: &[u8], file: &[u8], buf: &mut [u8]) -> Result<usize, i32> {
        if let Some(errno) = self.read_error {
            return Err(errno);
        }
        let content = self.files.get(&path(dir, file)).ok_or(libc::ENOENT)?;
        let n = content.len().min(buf.len());
        buf[..n].copy_from_slice(&content[..n]);
        Ok(n)
    }
    fn read_link(&mut self, dir: &[u8], file: &[u8], buf: &mut [u8]) -> Option<usize> {
        self.link_reads += 1;
        let target = self.links.get(&path(dir, file))?;
        buf[..target.len()].copy_from_slice(target);
        Some(target.len())
    }
    fn scan_start(&mut self) {
        let mut names: BTreeSet<Vec<u8>> = BTreeSet::new();
        for key in self.files.keys() {
            let dir = key.split(|&b| b == b'/').next().unwrap();
            names.insert(dir.to_vec());
        }
        // `scan` is popped from the end.
        self.scan = names.into_iter().rev().collect();
        if self.scan_reversed {
            self.scan.reverse();
        }
        if self.scan_seed != 0 {
            use std::hash::{Hash, Hasher};
            let seed = self.scan_seed;
            self.scan.sort_by_key(|n| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (seed, n).hash(&mut h);
                h.finish()
            });
        }
    }
    fn scan_next(&mut self, buf: &mut [u8; 256]) -> Option<usize> {
        let name = self.scan.pop()?;
        buf[..name.len()].copy_from_slice(&name);
        Some(name.len())
    }
    fn allocations(&self) -> Option<u32> {
        Some(7)
    }
    fn cgroup_populated(&mut self, name: &[u8]) -> bool {
        self.cgroup_looks += 1;
        let populated = self.in_cgroup(name);
        if populated && !self.cgroups_unwatched {
            self.cgroup_watches.insert(name.to_vec());
        }
        populated
    }
    fn cgroup_release(&mut self, name: &[u8]) -> bool {
        let left = self.cgroup_populated(name);
        if !left {
            self.cgroup_remove(name);
        }
        left
    }
    fn cgroup_signal(&mut self, name: &[u8], signal: i32) {
        assert!(
            !self
                .live
                .values()
                .any(|(cg, s)| cg == name && *s == Script::Finish),
            "signal {signal} to the cgroup of {} hits its finish",
            String::from_utf8_lossy(name)
        );
        self.cgroup_signals.push((name.to_vec(), signal));
        if signal == libc::SIGKILL {
            self.killed_cgroups.insert(name.to_vec());
            let members = self.live.iter().filter(|(_, (cg, _))| cg == name);
            self.killed.extend(members.map(|(&pid, _)| pid));
        }
    }
    fn cgroup_kill(&mut self, name: &[u8]) {
        self.cgroup_signal(name, libc::SIGKILL);
    }
    fn cgroup_remove(&mut self, name: &[u8]) {
        assert!(
            !self.in_cgroup(name),
            "the cgroup of {} removed with processes in it",
            String::from_utf8_lossy(name)
        );
        self.removed_cgroups.push(name.to_vec());
        // What is made again under that name starts clean.
        self.cgroup_watches.remove(name);
        self.killed_cgroups.remove(name);
        self.oom_kills.remove(name);
    }
    fn cgroup_stats(&mut self, name: &[u8]) -> Option<CgroupStats> {
        let oom_kills = self.oom_kills.get(name).copied();
        oom_kills.map(|n| CgroupStats {
            oom_kills: Some(n),
            ..CgroupStats::default()
        })
    }
    fn cgroup_oom_kills(&mut self, name: &[u8]) -> u64 {
        self.oom_kills.get(name).copied().unwrap_or(0)
    }
}

const EXITED_0: i32 = 0;
/// A request for service `name`, as nitroctl sends it.
fn datagram(tag: u8, name: &str) -> Vec<u8> {
    let mut d = (name.len() as u16).to_le_bytes().to_vec();
    d.push(tag);
    d.extend_from_slice(name.as_bytes());
    d
}

fn exited(code: i32) -> i32 {
    code << 8
}
fn killed(signal: i32) -> i32 {
    signal
}

struct Sim {
    os: FakeOs,
    sup: Supervisor,
    now: Millis,
    /// Within one wake-up of the loop: its end (the timers) comes later.
    waking: bool,
    /// Services the user asked down (and not up since): none may start
    /// unless a writer needs it as its logger.
    held_down: std::cell::RefCell<BTreeSet<Vec<u8>>>,
    /// Services the user asked up (and not down since).
    held_up: std::cell::RefCell<BTreeSet<Vec<u8>>>,
    /// Check the stronger invariants (the random sequences).
    strict: bool,
}

impl Sim {
    fn new(os: FakeOs) -> Sim {
        Sim::with_max(os, 50)
    }

    fn with_max(os: FakeOs, max_services: usize) -> Sim {
        let mut sim = Sim {
            os,
            sup: Supervisor::new(Config {
                max_services,
                nitro_pid: 42,
            }),
            now: 10_000,
            waking: false,
            held_down: Default::default(),
            held_up: Default::default(),
            strict: false,
        };
        sim.sup.boot(&mut sim.os, sim.now);
        sim.check();
        sim
    }

    fn state(&self, name: &str) -> State {
        let i = self.sup.find(name.as_bytes()).expect("known service");
        self.sup.table[i].state
    }

    fn advance(&mut self, ms: Millis) {
        let end = self.now + ms;
        while let Some(deadline) = self.sup.next_deadline().filter(|&d| d <= end) {
            self.now = deadline.max(self.now);
            self.sup.on_timers(&mut self.os, self.now);
            self.check();
        }
        self.now = end;
    }

    /// What was left in the cgroup of `name` is gone.
    fn cgroup_empty(&mut self, name: &str) {
        self.os.populated.remove(name.as_bytes());
        self.cgroup_news(name.as_bytes());
    }

    /// The loop hears that the cgroup of `name` changed, if it watches
    /// it and it is empty now.
    fn cgroup_news(&mut self, name: &[u8]) {
        if self.os.cgroup_watches.contains(name) && !self.os.in_cgroup(name) {
            self.sup.on_cgroup_change(&mut self.os, self.now);
            self.wake_up_over();
        }
    }

    /// Every wake-up of the loop ends with the timers (and what the
    /// shutdown does next), as in nitro's loop.
    fn wake_up_over(&mut self) {
        if !self.waking {
            self.sup.on_timers(&mut self.os, self.now);
        }
        self.check();
    }

    /// Children that ended, then requests, in one wake-up of the loop
    /// (its order), and only then the timers.
    fn wake_up(&mut self, exits: &[(Pid, i32)], requests: &[Vec<u8>]) {
        self.waking = true;
        for &(pid, wstatus) in exits {
            self.exit(pid, wstatus);
        }
        for datagram in requests {
            self.request(datagram);
        }
        self.waking = false;
        self.wake_up_over();
    }

    fn exit(&mut self, pid: Pid, wstatus: i32) {
        self.exit_news_first(pid, wstatus, false);
    }

    /// `pid` ends. Its cgroup (maybe empty now) tells so through a file
    /// the kernel updates as the process leaves it, a moment before its
    /// parent learns of the end: the loop may hear of the cgroup first.
    fn exit_news_first(&mut self, pid: Pid, wstatus: i32, news_first: bool) {
        let cgroup = self.os.live.remove(&pid).map(|(cgroup, _)| cgroup);
        self.os.zombies.insert(pid);
        if let Some(cgroup) = cgroup.as_deref().filter(|_| news_first) {
            self.cgroup_news(cgroup);
        }
        self.os.zombies.remove(&pid);
        self.sup.on_exit(&mut self.os, pid, wstatus, self.now);
        self.wake_up_over();
        if let Some(cgroup) = cgroup.as_deref().filter(|_| !news_first) {
            self.cgroup_news(cgroup);
        }
    }

    fn request(&mut self, datagram: &[u8]) -> Vec<u8> {
        let mut reply = [0u8; 4096];
        self.os.user_request = true;
        let n = self
            .sup
            .handle_request(&mut self.os, datagram, &mut reply, self.now)
            .expect("well-formed request");
        self.os.user_request = false;
        if datagram.len() > 3 && reply.get(2) == Some(&proto::TAG_OK) {
            let name = datagram[3..].to_vec();
            match datagram[2] {
                proto::TAG_DOWN => {
                    self.held_up.borrow_mut().remove(&name);
                    self.held_down.borrow_mut().insert(name);
                }
                proto::TAG_UP | proto::TAG_RESTART => {
                    self.held_down.borrow_mut().remove(&name);
                    self.held_up.borrow_mut().insert(name);
                }
                _ => {}
            }
        }
        let pending = self.sup.take_pending();
        if pending.rescan {
            self.sup.rescan(&mut self.os, self.now);
        }
        if let Some(end) = pending.end {
            self.sup.shutdown(&mut self.os, end, self.now);
        }
        self.wake_up_over();
        reply[..n].to_vec()
    }

    fn command(&mut self, tag: u8, name: &str) -> Vec<u8> {
        self.request(&datagram(tag, name))
    }

    /// The readiness pipes the loop is asked to watch: (token, fd).
    fn watched(&self) -> impl Iterator<Item = (u64, Fd)> + '_ {
        self.os.watched.iter().map(|(&fd, &token)| (token, fd))
    }

    /// Invariants after every step.
    fn check(&self) {
        self.sup.check_indexes();
        let mut pids = BTreeSet::new();
        let mut fds = BTreeSet::new();
        let mut watched = BTreeMap::new();
        for (i, s) in self.sup.services() {
            if let Some((fd, token)) = s.ready {
                watched.insert(fd, token);
                assert_eq!(token & 0xffff_ffff, i as u64, "token of {}", s.name);
            }
            match s.state {
                State::Down | State::Fatal | State::Delay | State::Oneshot => {
                    assert_eq!(s.run_pid(), 0, "{} is {:?} with a run pid", s.name, s.state)
                }
                // `run` ended while STARTING: the state stays while what it
                // left is stopped and `finish` runs.
                State::Starting => assert!(
                    s.pid > 0 || s.leftovers.is_some(),
                    "{} is STARTING with nothing running",
                    s.name
                ),
                State::Up => assert!(s.run_pid() > 0, "{} is UP without a pid", s.name),
                // `setup` failed: the state stays while what it left is
                // stopped.
                State::Setup => assert!(
                    s.running == Some(Script::Setup) || s.leftovers.is_some(),
                    "{} is SETUP with nothing running",
                    s.name
                ),
                _ => {}
            }
            assert_eq!(s.running.is_none(), s.pid == 0);
            if s.pid != 0 {
                assert!(pids.insert(s.pid), "pid {} twice", s.pid);
            }
            for fd in [
                s.ready.map(|(fd, _)| fd),
                s.log_pipe.map(|p| p.0),
                s.log_pipe.map(|p| p.1),
            ]
            .into_iter()
            .flatten()
            {
                assert!(fds.insert(fd));
            }
            // (Once the system goes down, the timer of one still DELAY
            // passes without a start, and the shutdown takes it DOWN.)
            if s.state == State::Delay && self.sup.starting_allowed() {
                assert_eq!(s.timer, Timer::Respawn, "{} is DELAY", s.name);
            }
            // Only FATAL may still finish (its `run` could not start).
            if matches!(s.state, State::Down | State::Delay) {
                assert!(!s.busy(), "{} is {:?} and busy", s.name, s.state);
            }
            // Stop means stopped: nothing of a service that does not run
            // is left in its cgroup.
            if matches!(s.state, State::Down | State::Delay | State::Fatal)
                && s.running.is_none()
                && s.leftovers.is_none()
            {
                assert!(
                    !self.os.in_cgroup(s.name.as_bytes()),
                    "{} is {:?} with processes in its cgroup",
                    s.name,
                    s.state
                );
            }
        }
        // And the global log pipe, kept while `LOG` is gone.
        fds.extend(self.sup.global_pipe.iter().flat_map(|&(r, w)| [r, w]));
        assert_eq!(
            fds, self.os.open_fds,
            "descriptors held by services = descriptors open"
        );
        // Every script alive is one nitro waits for.
        for (pid, (cgroup, script)) in &self.os.live {
            assert!(
                pids.contains(pid) || self.sup.sys.is_some_and(|sys| sys.pid == *pid),
                "{} of {} ({pid}) is lost",
                script.file(),
                String::from_utf8_lossy(cgroup)
            );
        }
        assert_eq!(watched, self.os.watched, "readiness pipes are watched");
        if self.strict {
            self.check_strict(&pids);
        }
    }

    /// Invariants the random sequences check besides.
    fn check_strict(&self, pids: &BTreeSet<Pid>) {
        if matches!(self.sup.phase(), Phase::SysFinish | Phase::Stopping) {
            self.os.shutting_down.set(true);
        }
        for (i, s) in self.sup.services() {
            // Whatever runs or is left has a deadline that ends it.
            if s.leftovers.is_some() {
                assert_eq!(
                    s.timer,
                    Timer::Kill,
                    "{} waits for its leftovers without a deadline",
                    s.name
                );
            }
            match s.running {
                // SIGKILL was sent: the kernel ends it.
                _ if self.os.killed.contains(&s.pid) => {}
                Some(Script::Finish) => assert_eq!(
                    s.timer,
                    Timer::KillFinish,
                    "{}: finish without a deadline",
                    s.name
                ),
                Some(Script::Setup | Script::Run)
                    if matches!(s.state, State::Shutdown | State::Restart) =>
                {
                    assert_eq!(
                        s.timer,
                        Timer::Kill,
                        "{} is {:?} without a deadline",
                        s.name,
                        s.state
                    )
                }
                _ => {}
            }
            // Every change of state was announced.
            let told = self
                .os
                .last_event
                .get(s.name.as_bytes())
                .copied()
                .unwrap_or(State::Down);
            assert_eq!(
                told, s.state,
                "{} is {:?} but the last event said {:?}",
                s.name, s.state, told
            );
            // Asked down, it stays down, unless a writer needs it.
            if self.held_down.borrow().contains(s.name.as_bytes())
                && matches!(
                    s.state,
                    State::Setup
                        | State::Starting
                        | State::Up
                        | State::Oneshot
                        | State::Restart
                        | State::Delay
                )
            {
                // Brought back for a writer: that is allowed, and ends
                // the hold.
                assert!(
                    self.sup.is_logger(i),
                    "{} was asked down and is {:?}",
                    s.name,
                    s.state
                );
                self.held_down.borrow_mut().remove(s.name.as_bytes());
            }
        }
        // Asked up, it does not end DOWN by itself while the system runs
        // and its directory is there.
        for (_, s) in self.sup.services() {
            // A scan found it gone and stops it: that is a down too.
            if s.forget {
                self.held_up.borrow_mut().remove(s.name.as_bytes());
            }
        }
        if self.sup.phase() == Phase::Running {
            for (_, s) in self.sup.services() {
                if s.state == State::Down
                    && !s.forget
                    && self.held_up.borrow().contains(s.name.as_bytes())
                    && (self.os.files.contains_key(&path(s.name.dir(), b"run"))
                        || self.os.files.contains_key(&path(s.name.dir(), b"setup")))
                {
                    panic!("{} was asked up and is DOWN", s.name);
                }
            }
        }
        // Forgotten: its request history goes with it.
        self.held_down
            .borrow_mut()
            .retain(|n| self.sup.find(n).is_some());
        self.held_up
            .borrow_mut()
            .retain(|n| self.sup.find(n).is_some());
        // Every pid nitro waits for is alive.
        for pid in pids {
            assert!(
                self.os.live.contains_key(pid) || self.os.zombies.contains(pid),
                "pid {pid} waited for but gone"
            );
        }
        // A logger is stopped by the shutdown only once no writer lives.
        for (logger, writers) in self.os.logger_signals.borrow_mut().drain(..) {
            let writers: Vec<String> = writers
                .iter()
                .filter(|(_, cg, _)| {
                    // Loggers go together; their own writers are loggers too.
                    self.sup.find(cg).is_none_or(|j| !self.sup.reads_log(j))
                })
                .map(|(p, cg, sc)| format!("{}/{} ({p})", String::from_utf8_lossy(cg), sc.file()))
                .collect();
            assert!(
                writers.is_empty(),
                "logger {logger} signalled while {writers:?} still write into it"
            );
        }
    }
}

fn simple(files: &[(&str, &str)]) -> FakeOs {
    let mut os = FakeOs::default();
    os.service("a", files);
    os
}

#[test]
fn run_becomes_up_after_two_seconds_without_notification_fd() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    assert_eq!(sim.state("a"), State::Starting);
    sim.advance(1999);
    assert_eq!(sim.state("a"), State::Starting);
    sim.advance(1);
    assert_eq!(sim.state("a"), State::Up);
    assert_eq!(sim.os.events_of("a"), [State::Starting, State::Up]);
}

#[test]
fn readiness_by_pipe_needs_a_newline() {
    let mut sim = Sim::new(simple(&[("run", ""), ("notification-fd", "3\n")]));
    let (token, fd) = sim.watched().next().expect("a readiness pipe");
    sim.advance(5000);
    assert_eq!(
        sim.state("a"),
        State::Starting,
        "no default timeout with a pipe"
    );
    sim.os
        .readiness
        .insert(fd, vec![ReadResult::Nothing, ReadResult::Data(1)]);
    sim.sup.on_ready_fd(&mut sim.os, token, sim.now);
    assert_eq!(sim.state("a"), State::Starting);
    sim.sup.on_ready_fd(&mut sim.os, token, sim.now);
    assert_eq!(sim.state("a"), State::Up);
    assert_eq!(sim.watched().count(), 0, "pipe closed once ready");
    sim.check();
}

/// The wake-up that reports `run`'s exit also reports its readiness pipe
/// (end of file). The exit comes first, the restart puts a new pipe in
/// the same slot: the old event must not read the new, empty pipe
/// (blocking, that froze nitro), nor act on it at all.
#[test]
fn a_readiness_event_of_a_replaced_pipe_never_reaches_its_successor() {
    let mut sim = Sim::new(simple(&[("run", ""), ("notification-fd", "3")]));
    let (old, old_fd) = sim.watched().next().unwrap();
    sim.command(proto::TAG_RESTART, "a");
    sim.os.readiness.insert(old_fd, vec![ReadResult::Eof]);
    sim.exit(sim.os.pid_of("a", Script::Run), killed(libc::SIGTERM));
    assert_eq!(sim.state("a"), State::Starting);
    let (new, new_fd) = sim.watched().next().expect("the new run's pipe");
    assert_ne!(new, old);
    sim.os.readiness.insert(new_fd, vec![ReadResult::Data(1)]);
    let reads = sim.os.reads.len();
    sim.sup.on_ready_fd(&mut sim.os, old, sim.now);
    sim.check();
    assert_eq!(
        sim.os.reads.len(),
        reads,
        "the new pipe was read for the old one"
    );
    assert_eq!(sim.state("a"), State::Starting);
    // Its own event does.
    sim.sup.on_ready_fd(&mut sim.os, new, sim.now);
    assert_eq!(sim.state("a"), State::Up);
}

#[test]
fn readiness_pipe_closed_without_newline_stays_starting() {
    let mut sim = Sim::new(simple(&[("run", ""), ("notification-fd", "3")]));
    let (token, fd) = sim.watched().next().unwrap();
    sim.os.readiness.insert(fd, vec![ReadResult::Eof]);
    sim.sup.on_ready_fd(&mut sim.os, token, sim.now);
    assert_eq!(sim.state("a"), State::Starting);
    assert_eq!(sim.watched().count(), 0);
    sim.check();
    sim.command(proto::TAG_READY, "a");
    assert_eq!(sim.state("a"), State::Up);
}

/// `nitroctl ready` does not close the readiness pipe: the newline `run`
/// writes afterwards must not meet a closed pipe (SIGPIPE would kill it).
#[test]
fn ready_by_request_keeps_the_pipe_until_run_writes() {
    let mut sim = Sim::new(simple(&[("run", ""), ("notification-fd", "3")]));
    let (token, fd) = sim.watched().next().unwrap();
    sim.command(proto::TAG_READY, "a");
    assert_eq!(sim.state("a"), State::Up);
    assert_eq!(sim.watched().count(), 1, "the pipe is still there");
    sim.os.readiness.insert(fd, vec![ReadResult::Data(1)]);
    sim.sup.on_ready_fd(&mut sim.os, token, sim.now);
    sim.check();
    assert_eq!(sim.watched().count(), 0, "closed once run wrote");
    assert_eq!(sim.state("a"), State::Up);
}

#[test]
fn notification_fd_zero_waits_for_ready_request() {
    let mut sim = Sim::new(simple(&[("run", ""), ("notification-fd", "0")]));
    sim.advance(10_000);
    assert_eq!(sim.state("a"), State::Starting);
    assert_eq!(sim.command(proto::TAG_READY, "a"), [0, 0, proto::TAG_OK]);
    assert_eq!(sim.state("a"), State::Up);
}

/// An empty `notification-fd` reads like an absent one (as in the C
/// nitro): UP after two seconds, not STARTING forever.
#[test]
fn an_empty_notification_fd_means_up_after_two_seconds() {
    let mut sim = Sim::new(simple(&[("run", ""), ("notification-fd", "")]));
    assert_eq!(sim.watched().count(), 0);
    sim.advance(READY_TIMEOUT_MS);
    assert_eq!(sim.state("a"), State::Up);
    // A byte that is no digit reads as 0: wait for `nitroctl ready`.
    let mut sim = Sim::new(simple(&[("run", ""), ("notification-fd", "\n")]));
    sim.advance(10_000);
    assert_eq!(sim.state("a"), State::Starting);
}

#[test]
fn unusable_notification_fds_warn_and_wait_for_ready() {
    for content in ["1", "2", "99999"] {
        let mut sim = Sim::new(simple(&[("run", ""), ("notification-fd", content)]));
        assert!(sim.os.warnings > 0, "{content}");
        assert_eq!(sim.watched().count(), 0);
        sim.advance(5000);
        assert_eq!(sim.state("a"), State::Starting, "{content}");
    }
}

#[test]
fn setup_exit_status_decides() {
    for (status, state) in [
        (EXITED_0, State::Starting),
        (exited(111), State::Fatal),
        (exited(1), State::Delay),
        (killed(libc::SIGKILL), State::Delay),
    ] {
        let mut sim = Sim::new(simple(&[("setup", ""), ("run", "")]));
        assert_eq!(sim.state("a"), State::Setup);
        let setup = sim.os.pid_of("a", Script::Setup);
        sim.exit(setup, status);
        assert_eq!(sim.state("a"), state, "setup status {status}");
        if state == State::Delay {
            sim.advance(999);
            assert_eq!(sim.state("a"), State::Delay);
            sim.advance(1);
            assert_eq!(sim.state("a"), State::Setup);
        }
    }
}

#[test]
fn fast_exit_waits_the_respawn_delay_slow_exit_restarts_at_once() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.advance(500);
    sim.exit(pid, exited(3));
    assert_eq!(sim.state("a"), State::Delay);
    sim.advance(1000);
    assert_eq!(sim.state("a"), State::Starting);
    let pid = sim.os.pid_of("a", Script::Run);
    sim.advance(3000);
    sim.exit(pid, exited(3));
    assert_eq!(sim.state("a"), State::Starting, "restarted at once");
    assert_ne!(sim.os.pid_of("a", Script::Run), pid);
    assert_eq!(
        sim.os.events_of("a"),
        [
            State::Starting,
            State::Down,
            State::Delay,
            State::Starting,
            State::Up,
            State::Restart,
            State::Down,
            State::Starting
        ]
    );
}

#[test]
fn finish_gets_status_signal_and_parameter() {
    let mut os = FakeOs::default();
    os.service("t@", &[("run", ""), ("finish", "")]);
    os.files.insert(b"t@x y/".to_vec(), vec![]);
    let mut sim = Sim::new(os);
    assert_eq!(sim.state("t@x y"), State::Starting);
    let (_, _, args, ..) = sim.os.last_spawn("t@", Script::Run).unwrap().clone();
    assert_eq!(args, [b"x y".to_vec()]);
    let pid = sim.os.pid_of("t@", Script::Run);
    sim.advance(3000);
    sim.exit(pid, killed(libc::SIGTERM));
    let (_, _, args, ..) = sim.os.last_spawn("t@", Script::Finish).unwrap().clone();
    assert_eq!(args, [b"-1".to_vec(), b"15".to_vec(), b"x y".to_vec()]);
    assert_eq!(sim.state("t@x y"), State::Restart);
    let finish = sim.os.pid_of("t@", Script::Finish);
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("t@x y"), State::Starting);
    let pid = sim.os.pid_of("t@", Script::Run);
    sim.advance(3000);
    sim.exit(pid, exited(7));
    let (_, _, args, ..) = sim.os.last_spawn("t@", Script::Finish).unwrap().clone();
    assert_eq!(args, [b"7".to_vec(), b"0".to_vec(), b"x y".to_vec()]);
}

#[test]
fn exec_failure_is_fatal_or_delayed_by_errno() {
    let mut os = simple(&[("run", ""), ("finish", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::ENOEXEC);
    let mut sim = Sim::new(os);
    assert_eq!(sim.state("a"), State::Fatal);
    let (_, _, args, ..) = sim.os.last_spawn("a", Script::Finish).unwrap().clone();
    assert_eq!(args, [b"111".to_vec(), b"0".to_vec()]);
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Fatal);
    let i = sim.sup.find(b"a").unwrap();
    assert_eq!(sim.sup.table[i].wstatus, -1);

    let mut os = simple(&[("run", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::ETXTBSY);
    let mut sim = Sim::new(os);
    assert_eq!(sim.state("a"), State::Delay);
    sim.os.exec_errors.clear();
    sim.advance(1999);
    assert_eq!(sim.state("a"), State::Delay);
    sim.advance(1);
    assert_eq!(sim.state("a"), State::Starting);
}

#[test]
fn down_signals_then_kills_after_the_timeout() {
    let mut sim = Sim::new(simple(&[("run", ""), ("down-signal", "hup")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    assert_eq!(sim.state("a"), State::Shutdown);
    assert_eq!(sim.os.kills, [(pid, libc::SIGHUP), (pid, libc::SIGCONT)]);
    sim.advance(6999);
    assert_eq!(sim.os.kills.len(), 2);
    sim.advance(1);
    assert_eq!(sim.os.kills[2], (pid, libc::SIGKILL));
    sim.exit(pid, killed(libc::SIGKILL));
    assert_eq!(sim.state("a"), State::Down);
}

#[test]
fn timeout_kill_file_sets_the_budget() {
    let mut sim = Sim::new(simple(&[("run", ""), ("timeout-kill", "500\n")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.advance(500);
    assert_eq!(sim.os.kills.last(), Some(&(pid, libc::SIGKILL)));
}

/// A budget near the end of the clock never wraps around into "at once".
#[test]
fn huge_timeouts_saturate_instead_of_killing_at_once() {
    let huge = "18446744073709551000";
    let mut sim = Sim::new(simple(&[
        ("run", ""),
        ("finish", ""),
        ("timeout-kill", huge),
        ("timeout-finish", huge),
    ]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.advance(86_400_000);
    assert_eq!(sim.os.kills, [(pid, libc::SIGTERM), (pid, libc::SIGCONT)]);
    sim.exit(pid, killed(libc::SIGTERM));
    sim.advance(86_400_000);
    assert_eq!(sim.os.kills.len(), 2, "finish was killed");
    assert_eq!(sim.state("a"), State::Shutdown);
}

#[test]
fn down_from_finish_cancels_a_restart() {
    let mut sim = Sim::new(simple(&[("run", ""), ("finish", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.advance(3000);
    sim.exit(pid, exited(1));
    assert_eq!(sim.state("a"), State::Restart);
    sim.command(proto::TAG_DOWN, "a");
    assert_eq!(sim.state("a"), State::Shutdown);
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Down);
    sim.advance(10_000);
    assert_eq!(sim.state("a"), State::Down);
}

#[test]
fn oneshot_lifecycle() {
    let mut sim = Sim::new(simple(&[("setup", ""), ("finish", "")]));
    let setup = sim.os.pid_of("a", Script::Setup);
    sim.exit(setup, EXITED_0);
    assert_eq!(sim.state("a"), State::Oneshot);
    sim.command(proto::TAG_DOWN, "a");
    assert_eq!(sim.state("a"), State::Shutdown);
    let (_, _, args, ..) = sim.os.last_spawn("a", Script::Finish).unwrap().clone();
    assert_eq!(args, [b"0".to_vec(), b"0".to_vec()]);
    sim.exit(sim.os.pid_of("a", Script::Finish), EXITED_0);
    assert_eq!(sim.state("a"), State::Down);
}

#[test]
fn want_up_during_shutdown_turns_into_restart() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.command(proto::TAG_UP, "a");
    assert_eq!(sim.state("a"), State::Restart);
    sim.advance(3000);
    sim.exit(pid, killed(libc::SIGTERM));
    assert_eq!(sim.state("a"), State::Starting);
}

#[test]
fn setup_exit_after_stop_request_skips_run() {
    let mut sim = Sim::new(simple(&[("setup", ""), ("run", "")]));
    let setup = sim.os.pid_of("a", Script::Setup);
    sim.command(proto::TAG_DOWN, "a");
    assert_eq!(
        sim.os.kills,
        [(setup, libc::SIGTERM), (setup, libc::SIGCONT)]
    );
    sim.exit(setup, EXITED_0);
    assert_eq!(sim.state("a"), State::Down);
    assert!(sim.os.last_spawn("a", Script::Run).is_none());
}

#[test]
fn requests_announce_the_state_and_answer_like_the_c_nitro() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    sim.advance(2000);
    let before = sim.os.events.len();
    assert_eq!(sim.command(proto::TAG_UP, "a"), [0, 0, proto::TAG_OK]);
    assert_eq!(sim.os.events[before..], [(b"a".to_vec(), State::Up)]);
    assert_eq!(
        sim.command(proto::TAG_QUERY, "nosuch"),
        [0, 0, proto::TAG_ESRCH]
    );
    assert_eq!(sim.request(&[0, 0, 200]), [0, 0, proto::TAG_ENOSYS]);
    let query = sim.command(proto::TAG_QUERY, "a");
    let pid = sim.os.pid_of("a", Script::Run) as u32;
    let mut expected = vec![1, 0, 0x66, 4, 4, 0, 0x67];
    expected.extend_from_slice(&pid.to_le_bytes());
    expected.extend_from_slice(&[4, 0, 0x68, 0, 0, 0, 0, 4, 0, 0x69, 2, 0, 0, 0]);
    assert_eq!(&query[..expected.len()], expected, "standard packets first");
    let info = sim.request(&[0, 0, 0x7b]);
    assert_eq!(info[..7], [4, 0, 0x6a, 42, 0, 0, 0]);
    assert_eq!(
        info[35..],
        [4, 0, proto::TAG_ALLOCS, 7, 0, 0, 0],
        "ALLOCS after the standard tags"
    );
    // Malformed: dropped, no reply.
    let mut reply = [0u8; 64];
    assert_eq!(
        sim.sup
            .handle_request(&mut sim.os, &[5, 0, 0x79], &mut reply, sim.now),
        None
    );
}

#[test]
fn names_outside_the_directory_are_esrch() {
    let mut os = simple(&[("run", "")]);
    os.service("t@", &[("run", "")]);
    let mut sim = Sim::new(os);
    for name in [
        "../a",
        "a/../a",
        "/a",
        "../t@x",
        ".a",
        "SYS",
        "t@",
        "t@x/y",
        &"a".repeat(64),
    ] {
        assert_eq!(
            sim.command(proto::TAG_UP, name),
            [0, 0, proto::TAG_ESRCH],
            "{name}"
        );
    }
    assert_eq!(sim.command(proto::TAG_UP, "t@ok"), [0, 0, proto::TAG_OK]);
    assert_eq!(
        sim.command(proto::TAG_DOWN, "t@new"),
        [0, 0, proto::TAG_ESRCH],
        "DOWN does not create"
    );
}

#[test]
fn instances_on_demand_are_forgotten_on_rescan_once_down() {
    let mut os = FakeOs::default();
    os.service("t@", &[("run", "")]);
    let mut sim = Sim::new(os);
    sim.command(proto::TAG_UP, "t@1");
    assert_eq!(sim.state("t@1"), State::Starting);
    sim.command(proto::TAG_RESCAN, "");
    assert!(sim.sup.find(b"t@1").is_some(), "running instances stay");
    let pid = sim.os.pid_of("t@", Script::Run);
    sim.command(proto::TAG_DOWN, "t@1");
    sim.exit(pid, killed(libc::SIGTERM));
    assert_eq!(sim.state("t@1"), State::Down);
    sim.command(proto::TAG_RESCAN, "");
    assert!(sim.sup.find(b"t@1").is_none());
}

/// Found by the differential campaign (seed 2876): only a DOWN instance
/// is forgotten; a FATAL one stays while its template does (SPEC 4), as
/// in the C nitro.
#[test]
fn a_fatal_instance_stays_on_rescan() {
    let mut os = FakeOs::default();
    os.service("t@", &[("setup", ""), ("run", "")]);
    let mut sim = Sim::new(os);
    sim.command(proto::TAG_UP, "t@1");
    sim.exit(sim.os.pid_of("t@", Script::Setup), exited(111));
    assert_eq!(sim.state("t@1"), State::Fatal);
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.state("t@1"), State::Fatal);
}

/// A template removed or renamed takes every instance with it, however
/// the instance came to be: by a directory entry, a request or a log link.
#[test]
fn instances_are_stopped_and_forgotten_once_their_template_is_gone() {
    let mut os = FakeOs::default();
    os.service("t@", &[("run", "")]);
    os.link("", "t@entry", "t@");
    os.service("t@entry", &[]);
    os.service("lg@", &[("run", "")]);
    os.service("a", &[("run", "")]);
    os.link("a", "log", "../lg@");
    let mut sim = Sim::new(os);
    sim.command(proto::TAG_UP, "t@asked");
    for name in ["t@entry", "t@asked", "lg@a"] {
        assert_eq!(sim.state(name), State::Starting, "{name}");
    }
    // While the template exists, a running instance stays, even without
    // its entry.
    sim.os.remove_service("t@entry");
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.state("t@entry"), State::Starting);

    sim.os.remove_service("t@");
    sim.os.remove_service("lg@");
    sim.command(proto::TAG_RESCAN, "");
    for name in ["t@entry", "t@asked", "lg@a"] {
        assert_eq!(sim.state(name), State::Shutdown, "{name}");
    }
    let i = sim.sup.find(b"a").unwrap();
    assert_eq!(sim.sup.table[i].logger, None, "a no longer logs into lg@a");
    let pids: Vec<Pid> = sim
        .sup
        .services()
        .filter(|(_, s)| s.name.param().is_some())
        .map(|(_, s)| s.pid)
        .collect();
    for pid in pids {
        sim.exit(pid, killed(libc::SIGTERM));
    }
    for name in ["t@entry", "t@asked", "lg@a"] {
        assert!(
            sim.sup.find(name.as_bytes()).is_none(),
            "{name} is forgotten"
        );
    }
    assert_eq!(sim.state("a"), State::Starting);
}

#[test]
fn rescan_starts_new_and_forgets_removed_services() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    sim.os.service("b", &[("run", "")]);
    sim.os.service("c", &[("run", ""), ("down", "")]);
    sim.os.service("d", &[]);
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.state("b"), State::Starting);
    assert_eq!(sim.state("c"), State::Down);
    assert!(
        sim.sup.find(b"d").is_none(),
        "no run and no setup: not a service"
    );
    let pid = sim.os.pid_of("a", Script::Run);
    sim.os.remove_service("a");
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.exit(pid, killed(libc::SIGTERM));
    assert!(sim.sup.find(b"a").is_none());
}

#[test]
fn list_pages_hold_whole_frames_and_cover_every_service() {
    let mut os = FakeOs::default();
    for n in 0..300 {
        os.service(&format!("service-with-a-long-name-{n:03}"), &[("run", "")]);
    }
    let mut sim = Sim::with_max(os, 500);
    let mut seen = Vec::new();
    let mut start = 0u32;
    let mut pages = 0;
    loop {
        let mut d = vec![4, 0, proto::TAG_LIST];
        d.extend_from_slice(&start.to_le_bytes());
        let reply = sim.request(&d);
        assert!(reply.len() <= 4096);
        pages += 1;
        let mut next = None;
        let mut depth = 0;
        for item in Reader::new(&reply) {
            match item.expect("well-formed reply") {
                Item::Open(_) => depth += 1,
                Item::Close(_) => depth -= 1,
                Item::Packet {
                    tag: proto::TAG_NAME,
                    payload,
                } => seen.push(payload.to_vec()),
                Item::Packet {
                    tag: proto::TAG_LIST_NEXT,
                    payload,
                } => {
                    assert_eq!(depth, 0);
                    next = crate::spat::payload_u32(payload);
                }
                Item::Packet { .. } => {}
            }
        }
        assert_eq!(depth, 0, "frames are whole");
        match next {
            Some(n) => start = n,
            None => break,
        }
    }
    assert!(pages > 1);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 300);
}

#[test]
fn log_links_resolve_to_services_and_templates() {
    let mut os = FakeOs::default();
    os.service("logger@", &[("run", "")]);
    os.service("plain", &[("run", "")]);
    os.service("a", &[("run", "")]);
    os.link("a", "log", "../logger@");
    os.service("b", &[("run", "")]);
    os.link("b", "log", "/etc/nitro/plain/");
    let sim = Sim::new(os);
    assert_eq!(sim.state("logger@a"), State::Starting);
    let logger = sim.sup.find(b"logger@a").unwrap();
    let (read, write) = sim.sup.table[logger].log_pipe.unwrap();
    assert_eq!(sim.os.last_spawn("a", Script::Run).unwrap().4, Some(write));
    assert_eq!(
        sim.os.last_spawn("logger@", Script::Run).unwrap().3,
        Some(read)
    );
    let plain = sim.sup.find(b"plain").unwrap();
    assert_eq!(
        sim.sup.table[sim.sup.find(b"b").unwrap()].logger,
        Some(plain)
    );
}

#[test]
fn only_a_loggers_run_reads_its_pipe() {
    let mut os = FakeOs::default();
    os.service("logger", &[("setup", ""), ("run", ""), ("finish", "")]);
    os.service("a", &[("run", "")]);
    os.link("a", "log", "../logger");
    let mut sim = Sim::new(os);
    let logger = sim.sup.find(b"logger").unwrap();
    let (read, _) = sim.sup.table[logger].log_pipe.expect("the logger's pipe");
    // setup and finish would take lines meant for run.
    assert_eq!(sim.os.last_spawn("logger", Script::Setup).unwrap().3, None);
    sim.exit(sim.os.pid_of("logger", Script::Setup), EXITED_0);
    assert_eq!(
        sim.os.last_spawn("logger", Script::Run).unwrap().3,
        Some(read)
    );
    sim.exit(sim.os.pid_of("logger", Script::Run), exited(0));
    assert_eq!(sim.os.last_spawn("logger", Script::Finish).unwrap().3, None);
}

#[test]
fn a_logger_listed_before_its_writer_starts_with_its_pipe() {
    let mut os = FakeOs::default();
    os.service("a", &[("run", "")]);
    os.service("logger", &[("run", "")]);
    os.link("a", "log", "../logger");
    os.scan_reversed = true;
    let sim = Sim::new(os);
    let logger = sim.sup.find(b"logger").unwrap();
    let (read, write) = sim.sup.table[logger].log_pipe.expect("the logger's pipe");
    let runs: Vec<_> = sim
        .os
        .spawns
        .iter()
        .filter(|s| s.0 == b"logger" && s.1 == Script::Run)
        .map(|s| s.3)
        .collect();
    assert_eq!(runs, [Some(read)], "started once, on its pipe");
    assert_eq!(sim.os.last_spawn("a", Script::Run).unwrap().4, Some(write));
}

#[test]
fn a_stopping_logger_comes_back_when_its_writer_starts() {
    let mut os = FakeOs::default();
    os.service("logger", &[("run", ""), ("finish", "")]);
    os.service("a", &[("run", "")]);
    os.link("a", "log", "../logger");
    let mut sim = Sim::new(os);
    sim.command(proto::TAG_DOWN, "logger");
    sim.exit(sim.os.pid_of("logger", Script::Run), killed(libc::SIGTERM));
    let finish = sim.os.pid_of("logger", Script::Finish);
    assert_eq!(sim.state("logger"), State::Shutdown);
    sim.command(proto::TAG_RESTART, "a");
    sim.exit(sim.os.pid_of("a", Script::Run), killed(libc::SIGTERM));
    assert_eq!(sim.state("a"), State::Starting);
    assert_eq!(sim.state("logger"), State::Restart, "want up reached it");
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("logger"), State::Starting);
}

#[test]
fn a_service_may_log_into_itself_or_a_loop() {
    let mut os = FakeOs::default();
    os.service("a", &[("run", "")]);
    os.service("b", &[("run", "")]);
    os.service("c", &[("run", "")]);
    os.service("d", &[("run", "")]);
    os.link("a", "log", "../b");
    os.link("b", "log", "../a");
    os.link("c", "log", "../c");
    let mut sim = Sim::new(os);
    assert_eq!(sim.os.warnings, 0);
    let pipe = |sim: &Sim, name: &str| {
        let i = sim.sup.find(name.as_bytes()).unwrap();
        sim.sup.table[i].log_pipe.expect("a log pipe")
    };
    let stdio = |sim: &Sim, name: &str| {
        let spawn = sim.os.last_spawn(name, Script::Run).unwrap();
        (spawn.3, spawn.4)
    };
    let (a, b, c) = (pipe(&sim, "a"), pipe(&sim, "b"), pipe(&sim, "c"));
    assert_eq!(
        stdio(&sim, "c"),
        (Some(c.0), Some(c.1)),
        "c reads what it writes"
    );
    assert_eq!(stdio(&sim, "a"), (Some(a.0), Some(b.1)));
    assert_eq!(stdio(&sim, "b"), (Some(b.0), Some(a.1)));
    // They are loggers: stopped once the ordinary service d is down.
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    assert_eq!(sim.state("d"), State::Shutdown);
    for name in ["a", "b", "c"] {
        assert_eq!(sim.state(name), State::Starting, "{name} held back");
    }
    sim.exit(sim.os.pid_of("d", Script::Run), killed(libc::SIGTERM));
    for name in ["a", "b", "c"] {
        assert_eq!(sim.state(name), State::Shutdown, "{name} stopping");
        sim.exit(sim.os.pid_of(name, Script::Run), killed(libc::SIGTERM));
    }
    assert!(sim.sup.stopped());
}

#[test]
fn a_service_logging_into_itself_is_forgotten_once_gone() {
    let mut os = FakeOs::default();
    os.service("c", &[("run", "")]);
    os.link("c", "log", "../c");
    os.service("t@", &[("run", "")]);
    os.link("t@", "log", "../t@");
    let mut sim = Sim::new(os);
    sim.command(proto::TAG_UP, "t@x");
    let i = sim.sup.find(b"t@x").unwrap();
    assert_eq!(sim.sup.table[i].logger, Some(i), "t@x logs into itself");
    sim.command(proto::TAG_DOWN, "t@x");
    sim.exit(sim.os.pid_of("t@", Script::Run), killed(libc::SIGTERM));
    sim.os.remove_service("c");
    sim.command(proto::TAG_RESCAN, "");
    sim.exit(sim.os.pid_of("c", Script::Run), killed(libc::SIGTERM));
    assert!(sim.sup.find(b"c").is_none(), "c forgotten");
    assert!(sim.sup.find(b"t@x").is_none(), "t@x forgotten");
    assert_eq!(sim.sup.services().count(), 0);
}

/// Found by the differential campaign (seed 3845): a removed service
/// whose `log` pointed at nothing, with a `LOG@` template around. Its
/// missing directory read as "no log link", and the rescan made it a
/// `LOG@m` logger that stayed behind.
#[test]
fn a_removed_service_gets_no_new_logger() {
    let mut os = FakeOs::default();
    os.service("m", &[("run", "")]);
    os.link("m", "log", "../nosuch");
    os.service("LOG@", &[("run", "")]);
    let mut sim = Sim::new(os);
    sim.os.remove_service("m");
    sim.command(proto::TAG_RESCAN, "");
    sim.exit(sim.os.pid_of("m", Script::Run), killed(libc::SIGTERM));
    assert_eq!(sim.sup.services().count(), 0, "neither m nor a LOG@m");
}

/// Writer and logger both removed, a chain or a loop: each is forgotten
/// once stopped; none waits for a writer that is gone too.
#[test]
fn loggers_removed_with_their_writers_are_forgotten() {
    let mut os = FakeOs::default();
    for name in ["w", "l", "x", "y"] {
        os.service(name, &[("run", "")]);
    }
    os.link("w", "log", "../l");
    os.link("x", "log", "../y");
    os.link("y", "log", "../x");
    let mut sim = Sim::new(os);
    let pids: Vec<Pid> = ["w", "l", "x", "y"]
        .iter()
        .map(|n| sim.os.pid_of(n, Script::Run))
        .collect();
    for name in ["w", "l", "x", "y"] {
        sim.os.remove_service(name);
    }
    sim.command(proto::TAG_RESCAN, "");
    for pid in pids {
        sim.exit(pid, killed(libc::SIGTERM));
    }
    let left: Vec<String> = sim
        .sup
        .services()
        .map(|(_, s)| s.name.to_string())
        .collect();
    assert!(left.is_empty(), "still listed: {left:?}");
}

/// A bad `log` is told once per scan, not at each of the places that
/// read it; an entry that cannot be a service is told why.
#[test]
fn each_skipped_entry_and_bad_log_link_is_told_once_per_scan() {
    let mut os = simple(&[("run", "")]);
    os.link("a", "log", "../nosuch");
    let mut sim = Sim::new(os);
    assert_eq!(sim.os.warnings, 1, "one warning for a's log");
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.os.warnings, 2, "and one more per scan");

    let mut os = FakeOs::default();
    os.service("a,b", &[("run", "")]);
    os.service(&"x".repeat(64), &[("run", "")]);
    os.service(".hidden", &[("run", "")]);
    os.service("t@", &[("run", "")]);
    let sim = Sim::new(os);
    assert_eq!(sim.os.warnings, 2, "a,b and the long name");
    assert_eq!(sim.sup.services().count(), 0);
}

#[test]
fn shutdown_stops_loggers_last() {
    let mut os = FakeOs::default();
    os.service("logger", &[("run", "")]);
    os.service("a", &[("run", "")]);
    os.link("a", "log", "../logger");
    let mut sim = Sim::new(os);
    let a = sim.os.pid_of("a", Script::Run);
    let logger = sim.os.pid_of("logger", Script::Run);
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    assert_eq!(sim.state("a"), State::Shutdown);
    assert_eq!(sim.state("logger"), State::Starting);
    sim.exit(a, killed(libc::SIGTERM));
    assert_eq!(sim.state("logger"), State::Shutdown);
    assert!(!sim.sup.stopped());
    sim.exit(logger, killed(libc::SIGTERM));
    assert!(sim.sup.stopped());
    // Nothing starts again during shutdown.
    sim.command(proto::TAG_UP, "a");
    assert_eq!(sim.state("a"), State::Down);
}

#[test]
fn a_logger_whose_last_writer_goes_from_disk_during_the_shutdown_is_stopped_too() {
    let mut os = FakeOs::default();
    os.service("logger", &[("run", "")]);
    os.service("a", &[("run", "")]);
    os.service("b", &[("run", "")]);
    os.link("a", "log", "../logger");
    let mut sim = Sim::new(os);
    let a = sim.os.pid_of("a", Script::Run);
    let b = sim.os.pid_of("b", Script::Run);
    let logger = sim.os.pid_of("logger", Script::Run);
    sim.os.remove_service("a");
    sim.command(proto::TAG_RESCAN, "");
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    assert_eq!(sim.state("logger"), State::Starting, "held back for a");
    // `a` is forgotten; the logger keeps its pipe, so it is still one,
    // stopped once the others are down, and then the shutdown is over.
    sim.exit(a, killed(libc::SIGTERM));
    assert_eq!(sim.sup.find(b"a"), None);
    assert_eq!(sim.state("logger"), State::Starting);
    sim.exit(b, killed(libc::SIGTERM));
    assert_eq!(sim.state("logger"), State::Shutdown);
    sim.exit(logger, killed(libc::SIGTERM));
    assert!(sim.sup.stopped());
}

/// A writer whose `log` link was removed still writes into its logger
/// until it starts again: the shutdown holds that logger back until the
/// writer is down (a logger is any service with a pipe, as in the C
/// nitro), so the writer's last lines are read.
#[test]
fn the_shutdown_holds_back_a_logger_its_writer_left_while_running() {
    let mut os = simple(&[("run", "")]);
    os.service("L", &[("run", "")]);
    os.link("a", "log", "../L");
    let mut sim = Sim::new(os);
    let a = sim.os.pid_of("a", Script::Run);
    sim.os.links.remove(b"a/log".as_slice());
    sim.command(proto::TAG_RESCAN, "");
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    assert_eq!(sim.state("a"), State::Shutdown);
    assert_eq!(sim.state("L"), State::Starting, "held back while a runs");
    sim.exit(a, killed(libc::SIGTERM));
    assert_eq!(sim.state("L"), State::Shutdown);
}

#[test]
fn the_table_limit_refuses_more_services() {
    let mut os = FakeOs::default();
    for n in 0..5 {
        os.service(&format!("s{n}"), &[("run", "")]);
    }
    let sim = Sim::with_max(os, 3);
    assert_eq!(sim.sup.services().count(), 3);
    assert!(sim.os.warnings >= 2);
}

mod random {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Up(usize),
        Down(usize),
        Restart(usize),
        Ready(usize),
        /// The loop reports the n-th readiness pipe ever watched, maybe
        /// long closed or replaced: a newline, end of file, or nothing
        /// (another event of the same wake-up emptied it).
        PipeEvent(usize, u8),
        /// Exit the n-th live process with a status; maybe it leaves a
        /// process behind in its cgroup, maybe the loop hears of the
        /// cgroup before the exit.
        Exit(usize, i32, bool, bool),
        /// What is left in the n-th cgroup that has something left ends.
        Vanish(usize),
        /// `run` of the n-th service cannot be executed from now on
        /// (EACCES, for good; EAGAIN, for a while), or again can.
        ExecError(usize, i32),
        /// From now on forks fail (1), pipes fail (2), or both work (0).
        Exhaust(u8),
        /// The system goes down; the steps after it come during the
        /// shutdown.
        Shutdown,
        /// Live processes that end (by index) and requests (tag, name)
        /// that arrive in one wake-up of the loop.
        Wake(Vec<(usize, i32)>, Vec<(u8, usize)>),
        /// The `log` link of the n-th service now points at `../LOG`
        /// for the m-th of these (or is gone).
        Link(usize, usize),
        Advance(Millis),
        Rescan,
        Toggle(usize),
        /// A file of the n-th service's directory appears or goes.
        FileToggle(usize, usize),
        /// `setup` (0), `run` (1) or `finish` (2) of the n-th service
        /// cannot be executed (errno), or again can (0).
        ScriptError(usize, usize, i32),
        /// The loop wakes late: every deadline passed meanwhile fires in
        /// one call.
        Late(Millis),
        /// `cgroup.events` changed without a cgroup becoming empty.
        CgroupNoise,
        /// One wake-up in the loop's order, after `late` ms without one:
        /// exits (maybe leaving something behind), SIGHUP, SIGTERM,
        /// requests, cgroup news, readiness pipes, then the timers.
        WakeAll {
            late: Millis,
            exits: Vec<(usize, i32, bool)>,
            hup: bool,
            term: bool,
            requests: Vec<(u8, usize)>,
            cgroup: bool,
            pipes: Vec<(usize, u8)>,
        },
    }

    const FILES: [&str; 6] = ["down", "setup", "finish", "main", "notification-fd", "run"];
    const DIRS: [&str; 9] = ["a", "b", "c", "t@", "log", "one", "LOG", "LOG@", "t@x"];

    fn exec_errno() -> impl Strategy<Value = i32> {
        prop_oneof![
            Just(0),
            Just(libc::EACCES),
            Just(libc::EAGAIN),
            Just(libc::ENOENT)
        ]
    }

    fn wait_status() -> impl Strategy<Value = i32> {
        prop_oneof![Just(0), Just(256), Just(111 << 8), Just(9)]
    }

    fn request_tag() -> impl Strategy<Value = u8> {
        prop_oneof![
            3 => Just(proto::TAG_UP),
            3 => Just(proto::TAG_DOWN),
            3 => Just(proto::TAG_RESTART),
            2 => Just(proto::TAG_READY),
            2 => Just(proto::TAG_RESCAN),
            1 => Just(proto::TAG_SHUTDOWN),
        ]
    }

    /// Random sequences per run: 1000, or `PROPTEST_CASES`.
    fn sim_cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000)
    }

    /// Steps per random sequence: 80, or `SIM_STEPS` for longer runs.
    fn sim_steps() -> usize {
        std::env::var("SIM_STEPS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(80)
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..NAMES.len()).prop_map(Step::Up),
            (0..NAMES.len()).prop_map(Step::Down),
            (0..NAMES.len()).prop_map(Step::Restart),
            (0..NAMES.len()).prop_map(Step::Ready),
            (0..16usize, 0..3u8).prop_map(|(n, k)| Step::PipeEvent(n, k)),
            (
                0..8usize,
                prop_oneof![Just(0), Just(256), Just(111 << 8), Just(9), Just(15)],
                proptest::bool::weighted(0.2),
                any::<bool>(),
            )
                .prop_map(|(n, s, leave, news_first)| Step::Exit(n, s, leave, news_first)),
            (0..NAMES.len()).prop_map(Step::Vanish),
            (
                0..NAMES.len(),
                prop_oneof![Just(0), Just(libc::EACCES), Just(libc::EAGAIN)]
            )
                .prop_map(|(n, errno)| Step::ExecError(n, errno)),
            (0..3u8).prop_map(Step::Exhaust),
            Just(Step::Shutdown),
            (
                proptest::collection::vec(
                    (0..8usize, prop_oneof![Just(0), Just(256), Just(9)]),
                    0..3
                ),
                proptest::collection::vec(
                    (
                        prop_oneof![
                            Just(proto::TAG_UP),
                            Just(proto::TAG_DOWN),
                            Just(proto::TAG_RESTART)
                        ],
                        0..NAMES.len()
                    ),
                    0..3,
                ),
            )
                .prop_map(|(exits, requests)| Step::Wake(exits, requests)),
            (0..NAMES.len(), 0..4usize).prop_map(|(n, m)| Step::Link(n, m)),
            (0..9000u64).prop_map(Step::Advance),
            Just(Step::Rescan),
            (0..DIRS.len()).prop_map(Step::Toggle),
            (0..DIRS.len(), 0..FILES.len()).prop_map(|(n, f)| Step::FileToggle(n, f)),
            (0..NAMES.len(), 0..3usize, exec_errno())
                .prop_map(|(n, k, e)| Step::ScriptError(n, k, e)),
            (0..12000u64).prop_map(Step::Late),
            Just(Step::CgroupNoise),
            (
                prop_oneof![Just(0u64), 0..3000u64],
                proptest::collection::vec(
                    (0..8usize, wait_status(), proptest::bool::weighted(0.2)),
                    0..4
                ),
                proptest::bool::weighted(0.3),
                proptest::bool::weighted(0.1),
                proptest::collection::vec((request_tag(), 0..NAMES.len()), 0..3,),
                any::<bool>(),
                proptest::collection::vec((0..16usize, 0..3u8), 0..3),
            )
                .prop_map(|(late, exits, hup, term, requests, cgroup, pipes)| {
                    Step::WakeAll {
                        late,
                        exits,
                        hup,
                        term,
                        requests,
                        cgroup,
                        pipes,
                    }
                }),
        ]
    }

    const NAMES: [&str; 7] = ["a", "b", "c", "t@1", "log", "one", "LOG"];

    /// With `sys_setup`, the services wait for `SYS/setup` to end.
    fn world(sys_setup: bool) -> FakeOs {
        let mut os = FakeOs::default();
        os.service(
            "a",
            &[
                ("run", ""),
                ("finish", ""),
                ("notification-fd", "3"),
                ("timeout-kill", "500"),
                ("timeout-finish", "300"),
            ],
        );
        os.service(
            "b",
            &[
                ("setup", ""),
                ("run", ""),
                ("finish", ""),
                ("notification-fd", "3"),
            ],
        );
        // Its `run` ending on its own ends the system.
        os.service(
            "c",
            &[
                ("run", ""),
                ("notification-fd", "0"),
                ("down", ""),
                ("main", ""),
            ],
        );
        os.service("t@", &[("run", ""), ("down-signal", "h")]);
        os.service("log", &[("run", "")]);
        os.service("one", &[("setup", ""), ("finish", "")]);
        // The global logger of those without a `log` link.
        os.service("LOG", &[("run", "")]);
        if sys_setup {
            os.service("SYS", &[("setup", ""), ("finish", "")]);
        } else {
            os.service("SYS", &[("finish", "")]);
        }
        os.link("a", "log", "../log");
        os.link("t@", "log", "../log");
        os.link("c", "log", "../c");
        os
    }

    proptest! {
        // Each run tries new sequences; a thousand take a few seconds,
        // PROPTEST_CASES asks for more.
        #![proptest_config(ProptestConfig::with_cases(sim_cases()))]
        #[test]
        fn invariants_hold_and_shutdown_terminates(
            sys_setup in proptest::bool::weighted(0.2),
            scan_reversed in any::<bool>(),
            scan_seed in prop_oneof![Just(0u64), any::<u64>()],
            unwatched in proptest::bool::weighted(0.2),
            max in prop_oneof![4 => Just(50usize), 1 => 5..10usize],
            steps in proptest::collection::vec(step(), 1..sim_steps()),
        ) {
            let mut os = world(sys_setup);
            // readdir follows no order.
            os.scan_reversed = scan_reversed;
            os.scan_seed = scan_seed;
            os.cgroups_unwatched = unwatched;
            // A small table: loggers and instances may find no room.
            let mut sim = Sim::with_max(os, max);
            sim.strict = true;
            // Spawns before the shutdown was asked for.
            let mut before_shutdown = None;
            for step in steps {
                if let Some(n) = before_shutdown {
                    let started = sim.os.spawns[n..].iter().find(|s| matches!(s.1, Script::Setup | Script::Run));
                    prop_assert!(started.is_none(), "started during the shutdown: {:?}", started);
                }
                match step {
                    Step::Up(n) => { sim.command(proto::TAG_UP, NAMES[n]); }
                    Step::Down(n) => { sim.command(proto::TAG_DOWN, NAMES[n]); }
                    Step::Restart(n) => { sim.command(proto::TAG_RESTART, NAMES[n]); }
                    Step::Ready(n) => { sim.command(proto::TAG_READY, NAMES[n]); }
                    Step::PipeEvent(n, kind) => {
                        let Some(&(token, fd)) = sim.os.tokens.get(n % sim.os.tokens.len().max(1)) else { continue };
                        if sim.os.watched.get(&fd) == Some(&token) {
                            let result = [ReadResult::Data(1), ReadResult::Eof, ReadResult::Nothing][kind as usize];
                            sim.os.readiness.entry(fd).or_default().push(result);
                        }
                        sim.sup.on_ready_fd(&mut sim.os, token, sim.now);
                        sim.wake_up_over();
                    }
                    Step::Link(n, m) => {
                        let dir = NAMES[n].split('@').next().unwrap();
                        let link = path(dir.as_bytes(), b"log");
                        match ["../log", "../a", "../c", ""][m] {
                            "" => { sim.os.links.remove(&link); }
                            target => { sim.os.links.insert(link, target.as_bytes().to_vec()); }
                        }
                    }
                    Step::Wake(exits, requests) => {
                        let pids: Vec<Pid> = sim.os.live.keys().copied().collect();
                        let mut ending: Vec<(Pid, i32)> = Vec::new();
                        for (n, status) in exits {
                            if let Some(&pid) = pids.get(n % pids.len().max(1)) && !ending.iter().any(|e| e.0 == pid) {
                                ending.push((pid, status));
                            }
                        }
                        let requests: Vec<Vec<u8>> = requests.iter().map(|&(tag, n)| datagram(tag, NAMES[n])).collect();
                        sim.wake_up(&ending, &requests);
                    }
                    Step::Shutdown => {
                        sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
                        before_shutdown.get_or_insert(sim.os.spawns.len());
                    }
                    Step::Exit(n, status, leave, news_first) => {
                        let pids: Vec<Pid> = sim.sup.services().filter(|(_, s)| s.pid > 0).map(|(_, s)| s.pid)
                            .chain(sim.sup.sys.map(|sys| sys.pid)).collect();
                        if !pids.is_empty() {
                            let pid = pids[n % pids.len()];
                            let in_cgroup = sim.os.live.get(&pid).is_some_and(|(c, _)| !c.is_empty());
                            if leave && in_cgroup {
                                sim.os.leave(pid);
                            }
                            sim.exit_news_first(pid, status, news_first);
                        }
                    }
                    Step::Vanish(n) => {
                        let left: Vec<Vec<u8>> = sim.os.populated.keys().cloned().collect();
                        if !left.is_empty() {
                            let name = left[n % left.len()].clone();
                            sim.cgroup_empty(core::str::from_utf8(&name).unwrap());
                        }
                    }
                    Step::Exhaust(kind) => {
                        sim.os.fork_error = (kind == 1).then_some(libc::EAGAIN);
                        sim.os.pipe_error = (kind == 2).then_some(libc::EMFILE);
                    }
                    Step::ExecError(n, errno) => {
                        let run = path(NAMES[n].split('@').next().unwrap().as_bytes(), b"run");
                        if errno == 0 {
                            sim.os.exec_errors.remove(&run);
                        } else {
                            sim.os.exec_errors.insert(run, errno);
                        }
                    }
                    Step::Advance(ms) => sim.advance(ms),
                    Step::Rescan => { sim.command(proto::TAG_RESCAN, ""); }
                    Step::Toggle(n) => {
                        let name = DIRS[n];
                        if sim.os.exists(name.as_bytes(), b"") {
                            sim.os.remove_service(name);
                        } else {
                            sim.os.service(name, &[("run", "")]);
                        }
                    }
                    Step::FileToggle(n, f) => {
                        let dir = DIRS[n];
                        if !sim.os.exists(dir.as_bytes(), b"") { continue; }
                        let key = path(dir.as_bytes(), FILES[f].as_bytes());
                        if sim.os.files.remove(&key).is_none() {
                            let content: &[u8] =
                                if FILES[f] == "notification-fd" { b"3" } else { b"" };
                            sim.os.files.insert(key, content.to_vec());
                        }
                    }
                    Step::ScriptError(n, k, errno) => {
                        let script = [Script::Setup, Script::Run, Script::Finish][k];
                        // The last name stands for SYS, whose scripts may fail too.
                        let dir = if n == NAMES.len() - 1 && k != 1 {
                            "SYS"
                        } else {
                            NAMES[n].split('@').next().unwrap()
                        };
                        let key = path(dir.as_bytes(), script.file().as_bytes());
                        if errno == 0 {
                            sim.os.exec_errors.remove(&key);
                        } else {
                            sim.os.exec_errors.insert(key, errno);
                        }
                    }
                    Step::Late(ms) => {
                        sim.now += ms;
                        sim.sup.on_timers(&mut sim.os, sim.now);
                        sim.check();
                    }
                    Step::CgroupNoise => {
                        sim.sup.on_cgroup_change(&mut sim.os, sim.now);
                        sim.wake_up_over();
                    }
                    Step::WakeAll { late, exits, hup, term, requests, cgroup, pipes } => {
                        sim.now += late;
                        sim.waking = true;
                        let pids: Vec<Pid> = sim.os.live.keys().copied().collect();
                        let mut news = false;
                        let mut done: Vec<Pid> = Vec::new();
                        for (n, status, leave) in exits {
                            let Some(&pid) = pids.get(n % pids.len().max(1)) else { continue };
                            if done.contains(&pid) { continue; }
                            done.push(pid);
                            let in_cgroup = sim.os.live.get(&pid).is_some_and(|(c, _)| !c.is_empty());
                            if leave && in_cgroup {
                                sim.os.leave(pid);
                            }
                            let cg = sim.os.live.remove(&pid).map(|(cg, _)| cg);
                            if let Some(cg) = cg
                                && sim.os.cgroup_watches.contains(&cg)
                                && !sim.os.in_cgroup(&cg)
                            {
                                news = true;
                            }
                            sim.sup.on_exit(&mut sim.os, pid, status, sim.now);
                            sim.check();
                        }
                        if hup {
                            sim.sup.rescan(&mut sim.os, sim.now);
                            sim.check();
                        }
                        if term {
                            before_shutdown.get_or_insert(sim.os.spawns.len());
                            sim.sup.shutdown(&mut sim.os, End::Shutdown, sim.now);
                            sim.check();
                        }
                        for (tag, n) in requests {
                            if tag == proto::TAG_RESCAN || tag == proto::TAG_SHUTDOWN {
                                if tag == proto::TAG_SHUTDOWN {
                                    before_shutdown.get_or_insert(sim.os.spawns.len());
                                }
                                sim.request(&[0, 0, tag]);
                            } else {
                                sim.request(&datagram(tag, NAMES[n]));
                            }
                        }
                        if news || cgroup {
                            sim.sup.on_cgroup_change(&mut sim.os, sim.now);
                            sim.check();
                        }
                        for (n, kind) in pipes {
                            let tokens = sim.os.tokens.len().max(1);
                            let Some(&(token, fd)) = sim.os.tokens.get(n % tokens) else {
                                continue;
                            };
                            if sim.os.watched.get(&fd) == Some(&token) {
                                let result = [ReadResult::Data(1), ReadResult::Eof, ReadResult::Nothing]
                                    [kind as usize];
                                sim.os.readiness.entry(fd).or_default().push(result);
                            }
                            sim.sup.on_ready_fd(&mut sim.os, token, sim.now);
                            sim.check();
                        }
                        sim.waking = false;
                        sim.wake_up_over();
                    }
                }
            }
            sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
            // Nothing ends by itself now: only SIGKILL ends a process,
            // and what is left in a cgroup, after its timeout.
            for _ in 0..100 {
                if sim.sup.stopped() { break; }
                sim.advance(7000);
                let killed: Vec<Pid> = sim.os.live.keys().filter(|pid| sim.os.killed.contains(*pid)).copied().collect();
                for pid in killed {
                    sim.exit(pid, self::killed(libc::SIGKILL));
                }
                let killed: Vec<Vec<u8>> = sim.os.populated.keys().filter(|cg| sim.os.killed_cgroups.contains(*cg)).cloned().collect();
                for name in killed {
                    sim.cgroup_empty(core::str::from_utf8(&name).unwrap());
                }
            }
            let left: Vec<_> = sim.sup.services().filter(|(_, s)| !s.is_stopped())
                .map(|(_, s)| (s.name.to_string(), s.state, s.running, s.timer, s.leftovers)).collect();
            prop_assert!(sim.sup.stopped(), "shutdown terminates; left: {:?}", left);
            prop_assert!(sim.os.populated.is_empty(), "left behind: {:?}", sim.os.populated);
            let alive: Vec<_> = sim.os.live.iter().collect();
            prop_assert!(alive.is_empty(), "alive after the shutdown: {:?}", alive);
        }
    }
}

#[test]
fn sys_setup_runs_before_the_scan_and_can_create_services_down() {
    let mut os = simple(&[("run", "")]);
    os.service("b", &[("run", "")]);
    os.service("SYS", &[("setup", "")]);
    let mut sim = Sim::new(os);
    assert_eq!(sim.sup.phase(), Phase::Boot);
    assert_eq!(sim.os.events, [(b"SYS".to_vec(), State::Setup)]);
    assert!(
        sim.sup.find(b"a").is_none(),
        "no scan before SYS/setup ends"
    );
    assert_eq!(sim.command(proto::TAG_DOWN, "b"), [0, 0, proto::TAG_OK]);
    assert_eq!(sim.state("b"), State::Down);
    sim.exit(sim.os.pid_of("SYS", Script::Setup), exited(1));
    assert_eq!(sim.sup.phase(), Phase::Running);
    assert_eq!(sim.state("a"), State::Starting);
    assert_eq!(sim.state("b"), State::Down, "created down inside SYS/setup");
}

/// A shutdown while `SYS/setup` runs stops it like any service: SIGTERM,
/// SIGKILL after the stop budget, and the system waits for it to end
/// before `SYS/finish` and the end.
#[test]
fn a_shutdown_during_sys_setup_stops_it_and_waits_for_it() {
    let mut os = simple(&[("run", "")]);
    os.service("b", &[("run", "")]);
    os.service("SYS", &[("setup", ""), ("finish", "")]);
    let mut sim = Sim::new(os);
    let setup = sim.os.pid_of("SYS", Script::Setup);
    sim.command(proto::TAG_UP, "a");
    let run = sim.os.pid_of("a", Script::Run);
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    assert_eq!(
        sim.os.kills,
        [(setup, libc::SIGTERM), (setup, libc::SIGCONT)]
    );
    sim.advance(STOP_TIMEOUT_MS);
    assert_eq!(sim.os.kills.last(), Some(&(setup, libc::SIGKILL)));
    assert!(!sim.sup.stopped(), "SYS/setup is still there");
    assert!(sim.os.last_spawn("SYS", Script::Finish).is_none());
    sim.exit(setup, killed(libc::SIGKILL));
    let finish = sim.os.pid_of("SYS", Script::Finish);
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.exit(run, killed(libc::SIGTERM));
    assert!(sim.sup.stopped());
    assert!(sim.sup.find(b"b").is_none(), "no scan after SYS/setup ends");
}

/// Once the system goes down nothing starts: a `setup` that succeeds
/// while `SYS/finish` runs, or while the loggers are held back, ends in
/// DOWN without `run`.
#[test]
fn a_setup_that_succeeds_after_shutdown_began_does_not_start_run() {
    let mut os = simple(&[("setup", ""), ("run", "")]);
    os.service("lg", &[("setup", ""), ("run", "")]);
    os.service("w", &[("run", "")]);
    os.link("w", "log", "../lg");
    os.service("SYS", &[("finish", "")]);
    let mut sim = Sim::new(os);
    let setup = sim.os.pid_of("a", Script::Setup);
    let logger_setup = sim.os.pid_of("lg", Script::Setup);
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    sim.exit(setup, EXITED_0);
    assert_eq!(sim.state("a"), State::Down);
    sim.exit(sim.os.pid_of("SYS", Script::Finish), EXITED_0);
    sim.exit(logger_setup, EXITED_0);
    assert_eq!(sim.state("lg"), State::Down);
    assert!(sim.os.last_spawn("a", Script::Run).is_none());
    assert!(sim.os.last_spawn("lg", Script::Run).is_none());
    sim.exit(sim.os.pid_of("w", Script::Run), killed(libc::SIGTERM));
    assert!(sim.sup.stopped());
}

#[test]
fn sys_finish_is_awaited_in_full_before_services_stop() {
    let mut os = simple(&[("run", "")]);
    os.service("SYS", &[("finish", "")]);
    let mut sim = Sim::new(os);
    let run = sim.os.pid_of("a", Script::Run);
    sim.request(&[0, 0, proto::TAG_REBOOT]);
    assert_eq!(sim.sup.phase(), Phase::SysFinish);
    let (_, _, args, ..) = sim.os.last_spawn("SYS", Script::Finish).unwrap().clone();
    assert_eq!(args, [b"0".to_vec(), b"0".to_vec(), b"reboot".to_vec()]);
    // Control traffic, stray children and time do not cut it short.
    sim.request(&[0, 0, proto::TAG_LIST]);
    sim.command(proto::TAG_QUERY, "a");
    sim.exit(99_999, 0);
    sim.advance(29_000);
    assert_eq!(sim.state("a"), State::Up);
    assert!(sim.os.kills.is_empty());
    // Services can still be stopped, not started.
    sim.command(proto::TAG_DOWN, "a");
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.command(proto::TAG_UP, "a");
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.exit(sim.os.pid_of("SYS", Script::Finish), 0);
    assert_eq!(sim.sup.phase(), Phase::Stopping);
    sim.exit(run, killed(libc::SIGTERM));
    assert!(sim.sup.stopped());
    assert_eq!(sim.sup.end(), End::Reboot);
}

#[test]
fn sys_finish_is_killed_after_thirty_seconds() {
    let mut os = simple(&[("run", "")]);
    os.service("SYS", &[("finish", "")]);
    let mut sim = Sim::new(os);
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    let finish = sim.os.pid_of("SYS", Script::Finish);
    sim.advance(SYS_TIMEOUT_MS);
    assert_eq!(sim.os.kills, [(finish, libc::SIGKILL)]);
}

#[test]
fn main_service_ending_decides_the_exit_status() {
    for (wstatus, expected) in [(exited(3), 3), (killed(libc::SIGKILL), 137)] {
        let mut os = simple(&[("run", ""), ("main", ""), ("finish", "")]);
        os.service("other", &[("run", "")]);
        let mut sim = Sim::new(os);
        sim.advance(3000);
        sim.exit(sim.os.pid_of("a", Script::Run), wstatus);
        assert_eq!(sim.sup.phase(), Phase::Running, "finish runs first");
        sim.exit(sim.os.pid_of("a", Script::Finish), 0);
        assert_eq!(sim.state("a"), State::Down, "not restarted");
        assert_eq!(sim.sup.phase(), Phase::Stopping);
        assert_eq!(sim.sup.exit_status(), expected);
        sim.exit(sim.os.pid_of("other", Script::Run), killed(libc::SIGTERM));
        assert!(sim.sup.stopped());
    }
}

#[test]
fn main_service_fatal_is_111_and_requested_stops_do_not_count() {
    let mut os = simple(&[("run", ""), ("main", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::EACCES);
    let sim = Sim::new(os);
    assert_eq!(sim.sup.phase(), Phase::Stopping);
    assert_eq!(sim.sup.exit_status(), 111);

    // With a finish, the system goes down only once it is over.
    let mut os = simple(&[("run", ""), ("main", ""), ("finish", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::EACCES);
    let mut sim = Sim::new(os);
    assert_eq!(sim.sup.phase(), Phase::Running, "finish first");
    sim.exit(sim.os.pid_of("a", Script::Finish), EXITED_0);
    assert_eq!(sim.sup.phase(), Phase::Stopping);
    assert_eq!(sim.sup.exit_status(), 111);

    let mut sim = Sim::new(simple(&[("run", ""), ("main", "")]));
    let run = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_RESTART, "a");
    sim.exit(run, killed(libc::SIGTERM));
    assert_eq!(sim.sup.phase(), Phase::Running);
    assert_eq!(sim.state("a"), State::Starting);
}

/// Main service `a` beside `other`: its `run` exited 3 on its own, and
/// its `finish` (the pid returned) runs.
fn main_run_ended_with_3() -> (Sim, Pid) {
    let mut os = simple(&[("run", ""), ("main", ""), ("finish", "")]);
    os.service("other", &[("run", "")]);
    let mut sim = Sim::new(os);
    sim.advance(3000);
    sim.exit(sim.os.pid_of("a", Script::Run), exited(3));
    let finish = sim.os.pid_of("a", Script::Finish);
    (sim, finish)
}

/// A main service's `run` ended on its own; while its `finish` runs the
/// user takes over (down, start, restart). Only the run that just ended
/// may end the system, and what the user asked for since wins: the old
/// status must never shut the system down later.
#[test]
fn requests_during_a_main_services_finish_never_end_the_system_later() {
    let (mut sim, finish) = main_run_ended_with_3();
    sim.command(proto::TAG_DOWN, "a");
    sim.command(proto::TAG_UP, "a");
    sim.command(proto::TAG_RESTART, "a");
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.sup.phase(), Phase::Running, "the system went down");
    assert_eq!(sim.state("a"), State::Starting);

    // The same with a FATAL main service taken down while its finish runs,
    // then restarted by hand.
    let mut os = simple(&[("run", ""), ("main", ""), ("finish", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::EACCES);
    let mut sim = Sim::new(os);
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.command(proto::TAG_DOWN, "a");
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Down);
    sim.os.exec_errors.clear();
    sim.command(proto::TAG_UP, "a");
    sim.advance(3000);
    let run = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_RESTART, "a");
    sim.exit(run, killed(libc::SIGTERM));
    sim.exit(sim.os.pid_of("a", Script::Finish), EXITED_0);
    assert_eq!(sim.sup.phase(), Phase::Running, "the system went down");
    assert_eq!(sim.state("a"), State::Starting);
}

/// A main service's `run` ended on its own, and a shutdown comes (docker
/// stop, SIGTERM) while its `finish` runs: the service ended first, so
/// its status is nitro's, not the 0 of an orderly shutdown (found by a
/// review of pid 1's end).
#[test]
fn a_shutdown_during_a_main_services_finish_keeps_its_status() {
    let (mut sim, finish) = main_run_ended_with_3();
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    sim.exit(finish, EXITED_0);
    sim.exit(sim.os.pid_of("other", Script::Run), killed(libc::SIGTERM));
    assert!(sim.sup.stopped());
    assert_eq!(sim.sup.exit_status(), 3);
}

#[test]
fn requested_restarts_start_at_once_and_do_not_count_as_restarts() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    for _ in 0..3 {
        let run = sim.os.pid_of("a", Script::Run);
        sim.advance(10);
        sim.command(proto::TAG_RESTART, "a");
        sim.exit(run, killed(libc::SIGTERM));
        assert_eq!(sim.state("a"), State::Starting, "no respawn delay");
    }
    let i = sim.sup.find(b"a").unwrap();
    assert_eq!(sim.sup.table[i].restarts, 0);
    // A crash right after is delayed, and counted.
    sim.exit(sim.os.pid_of("a", Script::Run), exited(1));
    assert_eq!(sim.state("a"), State::Delay);
    assert_eq!(sim.sup.table[i].restarts, 1);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    /// Datagrams built to hit the edges: real tags, lengths that lie,
    /// frames, and names with every troublesome byte.
    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            Just(b"a".to_vec()),
            Just(b"t@x".to_vec()),
            Just(b"../a".to_vec()),
            Just(b"a\0b".to_vec()),
            Just(vec![b'a'; 63]),
            Just(vec![b'a'; 64]),
            Just(vec![b'a'; 300]),
            proptest::collection::vec(any::<u8>(), 0..80),
        ];
        let tag = prop_oneof![
            (80u8..=82),
            (100u8..=109),
            (120u8..=130),
            (178u8..=183),
            any::<u8>()
        ];
        let len = prop_oneof![
            Just(None),
            Just(Some(0xffffu16)),
            Just(Some(0xfffe)),
            any::<u16>().prop_map(Some)
        ];
        (tag, len, name, proptest::collection::vec(any::<u8>(), 0..8)).prop_map(
            |(tag, len, name, tail)| {
                let n = len.unwrap_or(name.len() as u16);
                let mut d = n.to_le_bytes().to_vec();
                d.push(tag);
                d.extend_from_slice(&name);
                d.extend_from_slice(&tail);
                d
            },
        )
    }

    proptest! {
        #[test]
        fn any_datagram_is_answered_or_dropped_and_nothing_breaks(
            datagrams in proptest::collection::vec(
                prop_oneof![datagram(), proptest::collection::vec(any::<u8>(), 0..40)], 1..60)
        ) {
            let mut os = simple(&[("run", "")]);
            os.service("t@", &[("run", "")]);
            let mut sim = Sim::new(os);
            for d in datagrams {
                let mut reply = [0u8; 4096];
                if let Some(n) = sim.sup.handle_request(&mut sim.os, &d, &mut reply, sim.now) {
                    // Empty only for a LIST page past the last service.
                    prop_assert!(n <= 4096);
                    for item in Reader::new(&reply[..n]) {
                        prop_assert!(item.is_ok(), "replies are well-formed");
                    }
                }
                // Acting on SHUTDOWN/RESCAN is tested elsewhere; here only
                // the request handling itself must hold up.
                sim.sup.take_pending();
                sim.check();
            }
            // Nothing outside the directory was ever touched.
            for (dir, ..) in &sim.os.spawns {
                prop_assert!(dir == b"a" || dir == b"t@");
            }
        }
    }
}

#[test]
fn timeout_finish_file_sets_the_finish_budget() {
    let mut sim = Sim::new(simple(&[
        ("run", ""),
        ("finish", ""),
        ("timeout-finish", "300"),
    ]));
    let run = sim.os.pid_of("a", Script::Run);
    sim.advance(3000);
    sim.exit(run, exited(0));
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.advance(299);
    assert!(sim.os.kills.is_empty());
    sim.advance(1);
    assert_eq!(sim.os.kills, [(finish, libc::SIGKILL)]);
    // Bad contents: a warning and the 7 s default.
    let mut sim = Sim::new(simple(&[
        ("run", ""),
        ("finish", ""),
        ("timeout-finish", "soon"),
    ]));
    let run = sim.os.pid_of("a", Script::Run);
    sim.advance(3000);
    sim.exit(run, exited(0));
    assert!(sim.os.warnings > 0);
    sim.advance(FINISH_TIMEOUT_MS - 1);
    assert!(sim.os.kills.is_empty());
    sim.advance(1);
    assert_eq!(sim.os.kills.len(), 1);
}

/// State × event: from each state a service can be put in, what each
/// event does to it, through the one transition function (SPEC section 3).
#[test]
fn state_event_table() {
    // Puts service `a` (setup + run + finish, or a one-shot) in `state`.
    fn reach(state: State) -> Sim {
        let files: &[(&str, &str)] = match state {
            State::Oneshot => &[("setup", "")],
            State::Fatal => &[("setup", ""), ("run", "")],
            _ => &[("setup", ""), ("run", ""), ("finish", "")],
        };
        let mut os = simple(files);
        os.files.insert(b"a/down".to_vec(), vec![]);
        let mut sim = Sim::new(os);
        if state == State::Down {
            return sim;
        }
        sim.command(proto::TAG_UP, "a");
        let setup = sim.os.pid_of("a", Script::Setup);
        match state {
            State::Setup => return sim,
            State::Fatal => sim.exit(setup, exited(111)),
            State::Delay => sim.exit(setup, exited(1)),
            _ => sim.exit(setup, EXITED_0),
        }
        match state {
            State::Up => sim.advance(READY_TIMEOUT_MS),
            State::Shutdown => {
                sim.command(proto::TAG_DOWN, "a");
            }
            State::Restart => {
                sim.command(proto::TAG_RESTART, "a");
            }
            _ => {}
        }
        assert_eq!(sim.state("a"), state, "setting up {state:?}");
        sim
    }
    use State::*;
    const RUN_EXITS: Event = Event::Exited(1 << 8);
    let table: &[(State, Event, State)] = &[
        (Down, Event::WantUp, Setup),
        (Down, Event::WantDown, Down),
        (Down, Event::WantRestart, Setup),
        (Setup, Event::WantUp, Setup),
        (Setup, Event::WantDown, Shutdown),
        (Setup, Event::WantRestart, Restart),
        (Starting, Event::WantUp, Starting),
        (Starting, Event::WantDown, Shutdown),
        (Starting, Event::WantRestart, Restart),
        (Starting, RUN_EXITS, Starting),
        (Up, Event::WantUp, Up),
        (Up, Event::WantDown, Shutdown),
        (Up, Event::WantRestart, Restart),
        (Up, RUN_EXITS, Restart),
        (Oneshot, Event::WantUp, Oneshot),
        (Oneshot, Event::WantDown, Down),
        (Oneshot, Event::WantRestart, Setup),
        (Shutdown, Event::WantUp, Restart),
        (Shutdown, Event::WantDown, Shutdown),
        (Shutdown, Event::WantRestart, Restart),
        (Shutdown, RUN_EXITS, Shutdown),
        (Restart, Event::WantUp, Restart),
        (Restart, Event::WantDown, Shutdown),
        (Restart, Event::WantRestart, Restart),
        (Restart, RUN_EXITS, Restart),
        (Fatal, Event::WantUp, Setup),
        (Fatal, Event::WantDown, Down),
        (Fatal, Event::WantRestart, Setup),
        (Delay, Event::WantUp, Setup),
        (Delay, Event::WantDown, Down),
        (Delay, Event::WantRestart, Setup),
        (Starting, Event::Ready, Up),
        (Up, Event::Ready, Up),
        (Shutdown, Event::Ready, Shutdown),
        (Restart, Event::Ready, Restart),
    ];
    for &(from, event, to) in table {
        let mut sim = reach(from);
        let i = sim.sup.find(b"a").unwrap();
        if let Event::Exited(_) = event {
            sim.os.live.remove(&sim.sup.table[i].pid);
        }
        sim.sup.step(&mut sim.os, i, event, sim.now);
        sim.check();
        assert_eq!(sim.state("a"), to, "{from:?} + {event:?}");
    }
}

/// The OOM_KILLS packet (tag 188) of a QUERY reply.
fn oom_kills_in(reply: &[u8]) -> Option<u64> {
    Reader::new(reply)
        .filter_map(Result::ok)
        .find_map(|item| match item {
            Item::Packet {
                tag: proto::TAG_OOM_KILLS,
                payload,
            } => payload.try_into().ok().map(u64::from_le_bytes),
            _ => None,
        })
}

#[test]
fn oom_kills_are_counted_over_every_start_of_a_service() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    let query = |sim: &mut Sim| oom_kills_in(&sim.command(proto::TAG_QUERY, "a"));
    assert_eq!(query(&mut sim), None, "no memory controller");
    sim.os.oom_kills.insert(b"a".to_vec(), 0);
    assert_eq!(query(&mut sim), Some(0));
    // The OOM killer kills a helper, then run itself.
    sim.os.oom_kills.insert(b"a".to_vec(), 1);
    assert_eq!(query(&mut sim), Some(1));
    sim.os.oom_kills.insert(b"a".to_vec(), 2);
    let pid = sim.os.pid_of("a", Script::Run);
    sim.exit(pid, killed(libc::SIGKILL));
    sim.advance(3000);
    assert_ne!(sim.os.pid_of("a", Script::Run), pid, "started again");
    assert_eq!(sim.os.cgroup_oom_kills(b"a"), 0, "in a cgroup made anew");
    assert_eq!(query(&mut sim), Some(2));
    sim.os.oom_kills.insert(b"a".to_vec(), 1);
    assert_eq!(query(&mut sim), Some(3));
}

/// The REASON packet (tag 183) ending a QUERY reply or a SERVICE frame.
fn reason_in(reply: &[u8]) -> Option<proto::Reason> {
    Reader::new(reply)
        .filter_map(Result::ok)
        .filter_map(|item| match item {
            Item::Packet {
                tag: proto::TAG_REASON,
                payload,
            } => proto::Reason::decode(payload),
            _ => None,
        })
        .last()
}

#[test]
fn the_reason_of_a_failed_start_is_sent_until_run_is_launched_again() {
    use proto::{Failure, Program, Reason};
    let mut os = simple(&[("run", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::EACCES);
    os.service("b", &[("setup", ""), ("run", "")]);
    let mut sim = Sim::new(os);
    let query = sim.command(proto::TAG_QUERY, "a");
    let exec = Reason {
        program: Program::Run,
        failure: Failure::Exec,
        value: libc::EACCES,
    };
    assert_eq!(
        query[query.len() - 9..],
        [6, 0, proto::TAG_REASON, 2, 1, 13, 0, 0, 0],
        "last, after RESTARTS"
    );
    assert_eq!(reason_in(&sim.command(proto::TAG_QUERY, "a")), Some(exec));
    let list = sim.request(&[0, 0, proto::TAG_LIST]);
    assert_eq!(reason_in(&list), Some(exec));

    let setup = sim.os.pid_of("b", Script::Setup);
    sim.exit(setup, exited(2));
    assert_eq!(sim.state("b"), State::Delay);
    let failed = |code| Reason {
        program: Program::Setup,
        failure: Failure::Status,
        value: exited(code),
    };
    assert_eq!(
        reason_in(&sim.command(proto::TAG_QUERY, "b")),
        Some(failed(2))
    );
    sim.advance(1000);
    sim.exit(sim.os.pid_of("b", Script::Setup), exited(111));
    assert_eq!(sim.state("b"), State::Fatal);
    assert_eq!(
        reason_in(&sim.command(proto::TAG_QUERY, "b")),
        Some(failed(111))
    );

    sim.os.exec_errors.clear();
    sim.command(proto::TAG_UP, "a");
    assert_eq!(sim.state("a"), State::Starting);
    assert_eq!(reason_in(&sim.command(proto::TAG_QUERY, "a")), None);
}

#[test]
fn what_run_left_is_stopped_before_finish_and_the_next_run() {
    let mut sim = Sim::new(simple(&[("run", ""), ("finish", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.advance(3000);
    sim.os.leave(pid);
    sim.exit(pid, exited(0));
    assert_eq!(sim.state("a"), State::Restart);
    assert!(sim.os.last_spawn("a", Script::Finish).is_none());
    assert_eq!(
        sim.os.cgroup_signals,
        [
            (b"a".to_vec(), libc::SIGTERM),
            (b"a".to_vec(), libc::SIGCONT)
        ]
    );
    // Nothing else wakes it: not a timer, not another cgroup.
    sim.os.service("b", &[("run", "")]);
    sim.sup.on_cgroup_change(&mut sim.os, sim.now);
    assert!(sim.os.last_spawn("a", Script::Finish).is_none());
    sim.cgroup_empty("a");
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Starting);
    assert_ne!(sim.os.pid_of("a", Script::Run), pid);
}

#[test]
fn leftovers_get_sigkill_after_timeout_kill_and_again_until_gone() {
    let mut sim = Sim::new(simple(&[("run", ""), ("timeout-kill", "500")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.os.leave(pid);
    sim.exit(pid, killed(libc::SIGTERM));
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.advance(499);
    assert_eq!(sim.os.cgroup_signals.len(), 2);
    sim.advance(1);
    assert_eq!(sim.os.cgroup_signals[2], (b"a".to_vec(), libc::SIGKILL));
    sim.advance(1000);
    assert_eq!(sim.os.cgroup_signals[3], (b"a".to_vec(), libc::SIGKILL));
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.cgroup_empty("a");
    assert_eq!(sim.state("a"), State::Down);
    sim.advance(10_000);
    assert_eq!(sim.os.cgroup_signals.len(), 4);
}

#[test]
fn the_stop_timeout_kills_the_whole_cgroup() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.advance(7000);
    assert_eq!(sim.os.kills.last(), Some(&(pid, libc::SIGKILL)));
    assert_eq!(sim.os.cgroup_signals, [(b"a".to_vec(), libc::SIGKILL)]);
}

#[test]
fn a_stop_or_restart_while_leftovers_go_keeps_waiting_for_them() {
    let mut sim = Sim::new(simple(&[("run", ""), ("finish", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.advance(3000);
    sim.os.leave(pid);
    sim.exit(pid, exited(3));
    sim.command(proto::TAG_DOWN, "a");
    sim.command(proto::TAG_RESTART, "a");
    sim.command(proto::TAG_DOWN, "a");
    assert_eq!(sim.state("a"), State::Shutdown);
    assert!(sim.os.last_spawn("a", Script::Finish).is_none());
    sim.cgroup_empty("a");
    let (_, _, args, ..) = sim.os.last_spawn("a", Script::Finish).unwrap().clone();
    assert_eq!(
        args,
        [b"3".to_vec(), b"0".to_vec()],
        "finish gets run's status"
    );
    sim.exit(sim.os.pid_of("a", Script::Finish), EXITED_0);
    assert_eq!(sim.state("a"), State::Down);
}

#[test]
fn what_finish_left_is_stopped_before_down_and_the_shutdown_waits() {
    let mut sim = Sim::new(simple(&[("setup", ""), ("finish", "")]));
    sim.exit(sim.os.pid_of("a", Script::Setup), EXITED_0);
    assert_eq!(sim.state("a"), State::Oneshot);
    sim.command(proto::TAG_SHUTDOWN, "");
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.os.leave(finish);
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Shutdown);
    assert!(!sim.sup.stopped());
    sim.cgroup_empty("a");
    assert_eq!(sim.state("a"), State::Down);
    assert!(sim.sup.stopped());
}

#[test]
fn an_empty_cgroup_is_looked_at_once_per_end() {
    // A file read in the kernel each: a shutdown of many services pays
    // for every one.
    let mut sim = Sim::new(simple(&[("run", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.exit(pid, killed(libc::SIGTERM));
    assert_eq!(sim.state("a"), State::Down);
    assert_eq!(sim.os.cgroup_looks, 1);
    // A new start may leave something behind again.
    sim.command(proto::TAG_UP, "a");
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.os.leave(pid);
    sim.exit(pid, killed(libc::SIGTERM));
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.cgroup_empty("a");
    assert_eq!(sim.state("a"), State::Down);
}

#[test]
fn a_shutdown_removes_each_cgroup_once_it_is_empty() {
    let mut sim = Sim::new(simple(&[("run", ""), ("finish", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_SHUTDOWN, "");
    sim.os.leave(pid);
    sim.exit(pid, killed(libc::SIGTERM));
    assert!(
        sim.os.removed_cgroups.is_empty(),
        "not while something is left"
    );
    sim.cgroup_empty("a");
    assert_eq!(sim.os.removed_cgroups, [b"a".to_vec()]);
    // `finish` gets a cgroup again, and it goes too.
    sim.exit(sim.os.pid_of("a", Script::Finish), EXITED_0);
    assert_eq!(sim.os.removed_cgroups, [b"a".to_vec(), b"a".to_vec()]);
    assert!(sim.sup.stopped());
}

#[test]
fn a_forgotten_service_loses_its_cgroup() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.os.remove_service("a");
    sim.command(proto::TAG_RESCAN, "");
    sim.os.leave(pid);
    sim.exit(pid, killed(libc::SIGTERM));
    assert!(sim.os.removed_cgroups.is_empty());
    sim.cgroup_empty("a");
    assert_eq!(sim.sup.find(b"a"), None);
    assert_eq!(sim.os.removed_cgroups, [b"a".to_vec()]);
}

#[test]
fn a_run_that_ends_while_starting_waits_for_its_leftovers_too() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    let pid = sim.os.pid_of("a", Script::Run);
    sim.os.leave(pid);
    sim.exit(pid, exited(1));
    assert_eq!(sim.state("a"), State::Starting);
    assert_eq!(sim.sup.table[sim.sup.find(b"a").unwrap()].run_pid(), 0);
    sim.cgroup_empty("a");
    assert_eq!(sim.state("a"), State::Delay);
}

#[test]
fn what_a_failed_setup_left_is_stopped_before_delay_and_the_next_try() {
    let mut sim = Sim::new(simple(&[("setup", ""), ("run", "")]));
    let setup = sim.os.pid_of("a", Script::Setup);
    sim.os.leave(setup);
    sim.exit(setup, exited(1));
    assert_eq!(sim.state("a"), State::Setup, "not DELAY while it goes");
    assert_eq!(
        sim.os.cgroup_signals,
        [
            (b"a".to_vec(), libc::SIGTERM),
            (b"a".to_vec(), libc::SIGCONT)
        ]
    );
    sim.cgroup_empty("a");
    assert_eq!(sim.state("a"), State::Delay);
    sim.advance(RESPAWN_DELAY_MS);
    assert_ne!(sim.os.pid_of("a", Script::Setup), setup, "tried again");

    // A stop while it goes: DOWN once it is gone, not before.
    let setup = sim.os.pid_of("a", Script::Setup);
    sim.os.leave(setup);
    sim.exit(setup, exited(111));
    sim.command(proto::TAG_DOWN, "a");
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.cgroup_empty("a");
    assert_eq!(sim.state("a"), State::Down);
}

#[test]
fn what_setup_left_stays_with_run_and_goes_when_run_cannot_start() {
    let mut os = simple(&[("setup", ""), ("run", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::EAGAIN);
    let mut sim = Sim::new(os);
    let setup = sim.os.pid_of("a", Script::Setup);
    sim.os.leave(setup);
    sim.exit(setup, EXITED_0);
    assert_eq!(sim.state("a"), State::Setup);
    sim.cgroup_empty("a");
    assert_eq!(sim.state("a"), State::Delay);

    sim.os.exec_errors.clear();
    sim.advance(SPAWN_RETRY_MS);
    let setup = sim.os.pid_of("a", Script::Setup);
    sim.os.leave(setup);
    sim.exit(setup, EXITED_0);
    assert_eq!(sim.state("a"), State::Starting, "run starts beside it");
    assert_eq!(sim.os.cgroup_signals.len(), 2);
}

#[test]
fn a_start_while_a_fatal_service_finishes_waits_for_its_finish() {
    let mut os = simple(&[("run", ""), ("finish", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::EACCES);
    let mut sim = Sim::new(os);
    assert_eq!(sim.state("a"), State::Fatal);
    let finish = sim.os.pid_of("a", Script::Finish);
    for tag in [proto::TAG_UP, proto::TAG_RESTART] {
        sim.command(tag, "a");
        assert_eq!(sim.state("a"), State::Restart);
        assert_eq!(sim.os.pid_of("a", Script::Finish), finish, "{tag}");
    }
    sim.os.exec_errors.clear();
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Starting, "started once it was over");

    // And a stop while it finishes: DOWN once it is over.
    sim.os.exec_errors.insert(b"a/run".to_vec(), libc::EACCES);
    sim.command(proto::TAG_RESTART, "a");
    let run = sim.os.pid_of("a", Script::Run);
    sim.exit(run, killed(libc::SIGTERM));
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Fatal);
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.command(proto::TAG_DOWN, "a");
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Down);
}

#[test]
fn a_writer_that_starts_while_its_fatal_logger_finishes_waits_for_it() {
    let mut os = simple(&[("run", ""), ("finish", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::EACCES);
    os.service("w", &[("run", ""), ("down", "")]);
    os.link("w", "log", "../a");
    let mut sim = Sim::new(os);
    assert_eq!(sim.state("a"), State::Fatal);
    let finish = sim.os.pid_of("a", Script::Finish);
    sim.command(proto::TAG_UP, "w");
    assert_eq!(sim.state("w"), State::Starting);
    assert_eq!(sim.state("a"), State::Restart, "the logger comes once over");
    sim.os.exec_errors.clear();
    sim.exit(finish, EXITED_0);
    assert_eq!(sim.state("a"), State::Starting);
}

#[test]
fn a_finish_after_sigkill_to_the_whole_cgroup_gets_it_made_anew() {
    let mut sim = Sim::new(simple(&[("run", ""), ("finish", "")]));
    let run = sim.os.pid_of("a", Script::Run);
    sim.advance(3000);
    // An ordinary stop: `finish` joins what `run` used.
    sim.command(proto::TAG_RESTART, "a");
    sim.exit(run, killed(libc::SIGTERM));
    assert!(!sim.os.last_spawn("a", Script::Finish).unwrap().6);
    sim.exit(sim.os.pid_of("a", Script::Finish), EXITED_0);
    // A stop that ends in SIGKILL to the whole cgroup: the kernel would
    // kill a `finish` cloned into it.
    let run = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.advance(STOP_TIMEOUT_MS);
    assert_eq!(
        sim.os.cgroup_signals.last(),
        Some(&(b"a".to_vec(), libc::SIGKILL))
    );
    sim.exit(run, killed(libc::SIGKILL));
    assert!(sim.os.last_spawn("a", Script::Finish).unwrap().6);
}

/// After `SYS/setup` the scan starts what it finds as it always does: a
/// `LOG` made DOWN inside `SYS/setup`, or with a `down` file, stays down
/// (only without `SYS/setup` is `LOG` started first, whatever it has).
#[test]
fn after_sys_setup_log_is_started_by_the_scan_like_any_service() {
    let mut os = FakeOs::default();
    os.service("LOG", &[("run", "")]);
    os.service("a", &[("run", "")]);
    os.service("SYS", &[("setup", "")]);
    let mut sim = Sim::new(os);
    assert_eq!(sim.command(proto::TAG_DOWN, "LOG"), [0, 0, proto::TAG_OK]);
    sim.exit(sim.os.pid_of("SYS", Script::Setup), EXITED_0);
    assert_eq!(sim.state("a"), State::Starting);
    assert_eq!(
        sim.state("LOG"),
        State::Down,
        "created down inside SYS/setup"
    );

    let mut os = FakeOs::default();
    os.service("LOG", &[("run", ""), ("down", "")]);
    os.service("SYS", &[("setup", "")]);
    let mut sim = Sim::new(os);
    sim.exit(sim.os.pid_of("SYS", Script::Setup), EXITED_0);
    assert_eq!(sim.state("LOG"), State::Down, "the scan honours LOG/down");

    let mut os = FakeOs::default();
    os.service("LOG", &[("run", ""), ("down", "")]);
    let sim = Sim::new(os);
    assert_eq!(sim.state("LOG"), State::Starting, "no SYS/setup: LOG first");
}

/// A service removed from disk while it stops, then asked up: its start
/// finds the directory gone, FATAL. The next scan asks it down again, and
/// it is forgotten (as the C nitro asks every service gone from disk to
/// go down at each scan); an instance of a removed template too.
#[test]
fn a_gone_service_that_became_fatal_is_forgotten_by_the_next_scan() {
    let mut os = simple(&[("run", "")]);
    os.service("t@", &[("run", "")]);
    let mut sim = Sim::new(os);
    sim.command(proto::TAG_UP, "t@x");
    sim.advance(3000);
    for (name, dir) in [("a", "a"), ("t@x", "t@")] {
        sim.os.remove_service(dir);
        sim.command(proto::TAG_RESCAN, "");
        assert_eq!(sim.state(name), State::Shutdown);
        sim.command(proto::TAG_RESTART, name);
        assert_eq!(sim.state(name), State::Restart);
        sim.exit(sim.os.pid_of(dir, Script::Run), killed(libc::SIGTERM));
        assert_eq!(sim.state(name), State::Fatal, "its directory is gone");
        sim.command(proto::TAG_RESCAN, "");
        assert!(
            sim.sup.find(name.as_bytes()).is_none(),
            "{name} still listed"
        );
    }
}

/// `LOG` removed from disk is forgotten once down, as any service; the
/// global pipe stays, and a `LOG` put back is new to the scan, started,
/// and reads the same pipe (what services wrote meanwhile is there).
#[test]
fn a_removed_log_is_forgotten_and_one_put_back_reads_the_same_pipe() {
    let mut os = simple(&[("run", "")]);
    os.service("LOG", &[("run", "")]);
    let mut sim = Sim::new(os);
    let log = sim.os.last_spawn("LOG", Script::Run).unwrap().clone();
    let pipe = log.3.expect("LOG reads the global pipe");
    sim.os.remove_service("LOG");
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.state("LOG"), State::Shutdown);
    sim.exit(log.5, killed(libc::SIGTERM));
    assert!(
        sim.sup.find(b"LOG").is_none(),
        "gone from disk, down: forgotten"
    );
    assert!(sim.os.open_fds.contains(&pipe), "the global pipe is kept");
    sim.os.service("LOG", &[("run", "")]);
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.state("LOG"), State::Starting, "new on disk: started");
    assert_eq!(sim.os.last_spawn("LOG", Script::Run).unwrap().3, Some(pipe));
}

/// A request for a service a scan found gone keeps it once down, until
/// the next scan (the C nitro marks it seen): put back and asked up while
/// its removal stopped it, then taken down, it stays, DOWN, and a scan
/// does not start it as new.
#[test]
fn a_service_asked_for_while_its_removal_stops_it_is_kept() {
    let mut sim = Sim::new(simple(&[("run", "")]));
    let run = sim.os.pid_of("a", Script::Run);
    sim.os.remove_service("a");
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.state("a"), State::Shutdown);
    sim.os.service("a", &[("run", "")]);
    sim.command(proto::TAG_UP, "a");
    assert_eq!(sim.state("a"), State::Restart);
    sim.exit(run, killed(libc::SIGTERM));
    assert_eq!(sim.state("a"), State::Starting);
    sim.command(proto::TAG_DOWN, "a");
    sim.exit(sim.os.pid_of("a", Script::Run), killed(libc::SIGTERM));
    assert!(
        sim.sup.find(b"a").is_some(),
        "on disk and asked for: listed"
    );
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(
        sim.state("a"),
        State::Down,
        "taken down, not started by a scan"
    );
}

/// A main service that becomes FATAL ends the system after its `finish`,
/// also when what `setup` left in the cgroup must go first.
#[test]
fn a_fatal_main_service_ends_the_system_after_its_finish_also_with_leftovers() {
    let mut os = simple(&[("setup", ""), ("run", ""), ("main", ""), ("finish", "")]);
    os.exec_errors.insert(b"a/run".to_vec(), libc::EACCES);
    os.service("SYS", &[("finish", "")]);
    let mut sim = Sim::new(os);
    let setup = sim.os.pid_of("a", Script::Setup);
    sim.os.leave(setup);
    sim.exit(setup, EXITED_0);
    assert_eq!(sim.state("a"), State::Fatal);
    assert_eq!(
        sim.sup.phase(),
        Phase::Running,
        "a's finish has not run yet"
    );
    assert!(sim.os.last_spawn("SYS", Script::Finish).is_none());
    sim.cgroup_empty("a");
    let finish = sim.os.pid_of("a", Script::Finish);
    assert!(sim.os.last_spawn("SYS", Script::Finish).is_none());
    sim.exit(finish, EXITED_0);
    assert_ne!(sim.sup.phase(), Phase::Running, "the system goes down now");
    assert!(sim.os.last_spawn("SYS", Script::Finish).is_some());
}

/// A stop's SIGKILL comes `timeout-kill` after the down-signal, also for
/// what `run` left behind when it ended in between: the leftovers get
/// SIGTERM then, not a deadline of their own.
#[test]
fn what_run_leaves_during_a_stop_is_killed_at_the_stops_deadline() {
    let mut sim = Sim::new(simple(&[("run", ""), ("timeout-kill", "1000")]));
    let run = sim.os.pid_of("a", Script::Run);
    sim.command(proto::TAG_DOWN, "a");
    sim.advance(800);
    sim.os.leave(run);
    sim.exit(run, exited(0));
    assert_eq!(sim.state("a"), State::Shutdown, "what it left is stopped");
    assert!(!sim.os.killed_cgroups.contains(b"a".as_slice()));
    sim.advance(200);
    assert!(
        sim.os.killed_cgroups.contains(b"a".as_slice()),
        "SIGKILL 1000 ms after the down-signal"
    );
    sim.cgroup_empty("a");
    assert_eq!(sim.state("a"), State::Down);
}

/// `SYS/finish` runs as a service's `finish` does: stdin from /dev/null
/// and stdout to the global log while `LOG` runs, not on the console
/// (only `SYS/setup` is given the console).
#[test]
fn sys_finish_reads_nothing_and_writes_to_the_global_log() {
    let mut os = simple(&[("run", "")]);
    os.service("LOG", &[("run", "")]);
    os.service("SYS", &[("finish", "")]);
    let mut sim = Sim::new(os);
    let log_stdin = sim.os.last_spawn("LOG", Script::Run).unwrap().3;
    let a_stdout = sim.os.last_spawn("a", Script::Run).unwrap().4;
    assert!(log_stdin.is_some() && a_stdout.is_some());
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    let finish = sim.os.last_spawn("SYS", Script::Finish).unwrap().clone();
    assert_eq!(finish.3, None, "stdin from /dev/null");
    assert_eq!(finish.4, a_stdout, "stdout into the global log");
}

/// While `SYS/setup` or `SYS/finish` runs, SYS is a service to LIST,
/// QUERY and INFO (as in the C nitro's table): SETUP, then SHUTDOWN, as
/// its events say; gone with its script.
#[test]
fn sys_is_listed_and_queried_while_its_scripts_run() {
    use crate::client::{decode_info, decode_list, decode_query};
    let mut os = simple(&[("run", "")]);
    os.service("SYS", &[("setup", ""), ("finish", "")]);
    let mut sim = Sim::new(os);
    let state = |sim: &mut Sim| {
        let reply = sim.command(proto::TAG_QUERY, "SYS");
        decode_query("SYS", &reply).and_then(|s| s.state)
    };
    let listed = |sim: &mut Sim| {
        let (services, _) = decode_list(&sim.request(&[0, 0, proto::TAG_LIST]));
        services
            .iter()
            .map(|s| (s.name.clone(), s.state))
            .collect::<Vec<_>>()
    };
    let count = |sim: &mut Sim| {
        decode_info(&sim.request(&[0, 0, proto::TAG_INFO]))
            .into_iter()
            .find(|(k, _)| k == "max_service")
            .and_then(|(_, v)| v)
    };
    assert_eq!(state(&mut sim), Some(State::Setup));
    assert_eq!(listed(&mut sim), [("SYS".to_string(), Some(State::Setup))]);
    assert_eq!(count(&mut sim), Some(1));
    sim.exit(sim.os.pid_of("SYS", Script::Setup), EXITED_0);
    assert_eq!(state(&mut sim), None, "gone with SYS/setup");
    assert_eq!(count(&mut sim), Some(1), "a");
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    assert_eq!(state(&mut sim), Some(State::Shutdown));
    assert_eq!(
        listed(&mut sim)[0],
        ("SYS".to_string(), Some(State::Shutdown))
    );
    assert_eq!(count(&mut sim), Some(2));
}

/// `SYS/setup` that cannot be started for now (no process can be made)
/// is tried again, as SYS in DELAY, and nothing starts before it ran (the
/// C nitro's way; before, the services started without it). One that can
/// never run (not executable) is told and passed over.
#[test]
fn sys_setup_that_cannot_start_yet_is_tried_again_before_anything() {
    use crate::client::decode_query;
    let mut os = simple(&[("run", "")]);
    os.service("SYS", &[("setup", "")]);
    os.fork_error = Some(libc::EAGAIN);
    let mut sim = Sim::new(os);
    assert_eq!(sim.os.events, [(b"SYS".to_vec(), State::Delay)]);
    let reply = sim.command(proto::TAG_QUERY, "SYS");
    assert_eq!(
        decode_query("SYS", &reply).and_then(|s| s.state),
        Some(State::Delay)
    );
    sim.advance(SPAWN_RETRY_MS);
    assert!(sim.os.last_spawn("SYS", Script::Setup).is_none());
    assert!(
        sim.os.last_spawn("a", Script::Run).is_none(),
        "a started before SYS/setup"
    );
    sim.os.fork_error = None;
    sim.advance(SPAWN_RETRY_MS);
    let setup = sim.os.pid_of("SYS", Script::Setup);
    assert!(sim.os.last_spawn("a", Script::Run).is_none());
    sim.exit(setup, EXITED_0);
    assert_eq!(sim.state("a"), State::Starting);

    // A shutdown while it waits: it never runs.
    let mut os = simple(&[("run", "")]);
    os.service("SYS", &[("setup", "")]);
    os.fork_error = Some(libc::EAGAIN);
    let mut sim = Sim::new(os);
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    sim.os.fork_error = None;
    sim.advance(SPAWN_RETRY_MS);
    assert!(sim.os.last_spawn("SYS", Script::Setup).is_none());
    assert!(sim.sup.stopped());

    // Not executable: passed over.
    let mut os = simple(&[("run", "")]);
    os.service("SYS", &[("setup", "")]);
    os.exec_errors.insert(b"SYS/setup".to_vec(), libc::EACCES);
    let sim = Sim::new(os);
    assert_eq!(sim.state("a"), State::Starting);
}

/// Out of descriptors, `notification-fd` cannot be read: the start fails
/// for now (DELAY, tried again), where `run` was started with the timer
/// instead of its pipe and taken for UP after 2 s, never having said it
/// was ready (found by a review of exhausted resources).
#[test]
fn a_notification_fd_that_cannot_be_read_for_now_delays_the_start() {
    let mut os = FakeOs {
        read_error: Some(libc::EMFILE),
        ..FakeOs::default()
    };
    os.service("r", &[("run", ""), ("notification-fd", "3")]);
    let mut sim = Sim::new(os);
    assert_eq!(sim.state("r"), State::Delay);
    assert!(sim.os.last_spawn("r", Script::Run).is_none());
    sim.os.read_error = None;
    sim.advance(SPAWN_RETRY_MS);
    assert_eq!(sim.state("r"), State::Starting);
    sim.advance(READY_TIMEOUT_MS);
    assert_eq!(sim.state("r"), State::Starting, "waits for its newline");
}

/// A failure that lasts (no process can be made) is told once per
/// service, not at every try (a line per service every 2 s, without
/// end); once `run` was launched, a new failure is told again (found by
/// a review of exhausted resources).
#[test]
fn a_lasting_start_failure_is_told_once() {
    let mut os = simple(&[("run", "")]);
    os.fork_error = Some(libc::EAGAIN);
    let mut sim = Sim::new(os);
    let told = sim.os.warnings;
    for _ in 0..5 {
        sim.advance(SPAWN_RETRY_MS);
    }
    assert_eq!(sim.state("a"), State::Delay);
    assert_eq!(sim.os.warnings, told, "told again at a retry");
    sim.os.fork_error = None;
    sim.advance(SPAWN_RETRY_MS);
    assert_eq!(sim.state("a"), State::Starting);
    sim.os.fork_error = Some(libc::EAGAIN);
    sim.advance(3000);
    sim.exit(sim.os.pid_of("a", Script::Run), exited(1));
    assert_eq!(sim.os.warnings, told + 1, "a new failure after a launch");
}

/// A log pipe that cannot be made (no descriptor left) does not send the
/// writer to the console for good, nor start its logger on nothing: the
/// link stays, the starts wait (DELAY), and once pipes can be made again
/// the writer writes into its logger's pipe (found by a review of
/// exhausted resources; the C nitro drops the link as we did).
#[test]
fn a_log_pipe_that_cannot_be_made_yet_is_made_at_the_next_start() {
    let mut os = FakeOs {
        pipe_error: Some(libc::EMFILE),
        ..FakeOs::default()
    };
    os.service("L", &[("run", "")]);
    os.service("a", &[("run", "")]);
    os.link("a", "log", "../L");
    let mut sim = Sim::new(os);
    assert_eq!(sim.state("a"), State::Delay);
    assert_eq!(sim.state("L"), State::Delay);
    assert!(sim.os.last_spawn("a", Script::Run).is_none());
    sim.os.pipe_error = None;
    sim.advance(SPAWN_RETRY_MS);
    assert_eq!(sim.state("a"), State::Starting);
    assert_eq!(sim.state("L"), State::Starting);
    let logger = sim.os.last_spawn("L", Script::Run).unwrap().clone();
    let writer = sim.os.last_spawn("a", Script::Run).unwrap().clone();
    let read = logger.3.expect("the logger reads its pipe");
    assert_eq!(writer.4, sim.os.pipe_pairs.get(&read).copied());
}

/// While `SYS/finish` runs, DOWN of a startable service nitro does not
/// know yet adds it, DOWN, as while `SYS/setup` runs (the C nitro has
/// SYS in its table then): a `nitroctl stop` of an instance in
/// `SYS/finish` succeeds instead of failing a `set -e` script.
#[test]
fn down_during_sys_finish_adds_a_startable_service_down() {
    let mut os = FakeOs::default();
    os.service("t@", &[("run", "")]);
    os.service("SYS", &[("finish", "")]);
    let mut sim = Sim::new(os);
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    assert_eq!(sim.sup.phase(), Phase::SysFinish);
    assert_eq!(sim.command(proto::TAG_DOWN, "t@q"), [0, 0, proto::TAG_OK]);
    assert_eq!(sim.state("t@q"), State::Down);
    sim.exit(sim.os.pid_of("SYS", Script::Finish), EXITED_0);
    assert!(sim.sup.stopped());
    assert_eq!(
        sim.command(proto::TAG_DOWN, "t@r"),
        [0, 0, proto::TAG_ESRCH],
        "SYS/finish is over"
    );
}

/// The limit of descriptors is read when a start needs it, not once: a
/// `notification-fd` beyond the limit nitro started with is usable once
/// the limit was raised (`prlimit` on nitro), and refused again below it
/// (found by a review of exhausted resources).
#[test]
fn the_descriptor_limit_is_read_when_a_start_needs_it() {
    let mut os = FakeOs {
        fd_limit: Some(64),
        ..FakeOs::default()
    };
    os.service("r", &[("run", ""), ("notification-fd", "100")]);
    let mut sim = Sim::new(os);
    assert!(sim.os.watched.is_empty(), "refused: no readiness pipe");
    sim.os.fd_limit = Some(1024);
    sim.command(proto::TAG_RESTART, "r");
    sim.exit(sim.os.pid_of("r", Script::Run), killed(libc::SIGTERM));
    assert_eq!(sim.os.watched.len(), 1, "a readiness pipe for fd 100");
}

/// A shutdown during `SYS/setup` cuts it short: from then on SYS is
/// SHUTDOWN to QUERY and LIST as to its event (the C nitro's state 6).
#[test]
fn sys_setup_cut_short_is_queried_as_shutdown() {
    use crate::client::{decode_list, decode_query};
    let mut os = simple(&[("run", "")]);
    os.service("SYS", &[("setup", "")]);
    let mut sim = Sim::new(os);
    sim.request(&[0, 0, proto::TAG_SHUTDOWN]);
    assert_eq!(
        sim.os.events.last(),
        Some(&(b"SYS".to_vec(), State::Shutdown))
    );
    let reply = sim.command(proto::TAG_QUERY, "SYS");
    assert_eq!(
        decode_query("SYS", &reply).and_then(|s| s.state),
        Some(State::Shutdown)
    );
    let (services, _) = decode_list(&sim.request(&[0, 0, proto::TAG_LIST]));
    assert_eq!(services[0].state, Some(State::Shutdown));
}

/// A name ending in `@` is a template, also when what follows the first
/// `@` ends in one: no request makes it a service (the C nitro refuses
/// it as a name).
#[test]
fn an_instance_whose_parameter_ends_in_at_is_no_service() {
    let mut os = FakeOs::default();
    os.service("t@", &[("run", "")]);
    os.service("SYS", &[("setup", "")]);
    let mut sim = Sim::new(os);
    for name in ["t@x@", "t@@", "t@a@"] {
        for tag in [proto::TAG_DOWN, proto::TAG_UP, proto::TAG_RESTART] {
            assert_eq!(sim.command(tag, name), [0, 0, proto::TAG_ESRCH], "{name}");
        }
    }
    sim.exit(sim.os.pid_of("SYS", Script::Setup), EXITED_0);
    for name in ["t@x@", "t@@"] {
        assert_eq!(
            sim.command(proto::TAG_UP, name),
            [0, 0, proto::TAG_ESRCH],
            "{name}"
        );
    }
    assert_eq!(sim.command(proto::TAG_UP, "t@x"), [0, 0, proto::TAG_OK]);
    assert!(sim.os.last_spawn("t@x@", Script::Run).is_none());
    assert_eq!(sim.sup.services().count(), 1);
}

/// A logger instance is forgotten in the scan that forgets its last
/// writer, whatever their slots: here the logger has the lower one, and
/// was looked at while its writer still used it (differential seed 14303).
#[test]
fn a_logger_instance_goes_with_its_last_writer_in_one_scan() {
    let mut os = FakeOs::default();
    os.service("t@", &[("run", ""), ("down", "")]);
    os.service("LOG@", &[("run", "")]);
    let mut sim = Sim::new(os);
    assert_eq!(sim.command(proto::TAG_UP, "LOG@x"), [0, 0, proto::TAG_OK]);
    sim.command(proto::TAG_DOWN, "LOG@x");
    sim.exit(
        sim.os.last_spawn("LOG@", Script::Run).unwrap().5,
        killed(libc::SIGTERM),
    );
    sim.os.service("t@x", &[]);
    sim.command(proto::TAG_RESCAN, "");
    assert!(sim.sup.find(b"LOG@x") < sim.sup.find(b"t@x"));
    sim.os.remove_service("t@x");
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.sup.find(b"t@x"), None);
    assert_eq!(sim.sup.find(b"LOG@x"), None, "forgotten with its writer");
}

/// A chain of loggers that runs into a loop it does not start from
/// (`a -> L -> M -> L`) is walked once, not once per slot of the table:
/// a scan reads each link a few times, and a start tries each logger that
/// cannot start once.
#[test]
fn a_chain_into_a_loop_of_loggers_is_walked_once() {
    let mut os = FakeOs::default();
    for name in ["L", "M", "a", "b"] {
        os.service(name, &[("run", "")]);
    }
    os.link("a", "log", "../L");
    os.link("b", "log", "../L");
    os.link("L", "log", "../M");
    os.link("M", "log", "../L");
    let mut sim = Sim::with_max(os, 10_000);
    let before = sim.os.link_reads;
    sim.command(proto::TAG_RESCAN, "");
    let reads = sim.os.link_reads - before;
    assert!(reads <= 16, "{reads} links read for one scan of 4 services");

    let mut os = FakeOs::default();
    for name in ["L", "M", "a"] {
        os.service(name, &[("run", ""), ("down", "")]);
    }
    os.link("a", "log", "../L");
    os.link("L", "log", "../M");
    os.link("M", "log", "../L");
    os.exec_errors.insert(b"L/run".to_vec(), libc::EACCES);
    os.exec_errors.insert(b"M/run".to_vec(), libc::EACCES);
    let mut sim = Sim::new(os);
    let before = sim.os.warnings;
    sim.command(proto::TAG_UP, "a");
    assert_eq!(
        sim.os.warnings - before,
        2,
        "one exec error each for L and M"
    );
    assert_eq!(sim.state("a"), State::Starting);
}

/// The global pipe kept for a `LOG` put back survives a `LOG` put back
/// with a `down` file (no pipe of its own) and removed again.
#[test]
fn the_global_pipe_survives_a_log_put_back_down_and_removed_again() {
    let mut os = simple(&[("run", "")]);
    os.service("LOG", &[("run", "")]);
    let mut sim = Sim::new(os);
    let log = sim.os.last_spawn("LOG", Script::Run).unwrap().clone();
    sim.os.remove_service("LOG");
    sim.command(proto::TAG_RESCAN, "");
    sim.exit(log.5, killed(libc::SIGTERM));
    sim.os.service("LOG", &[("run", ""), ("down", "")]);
    sim.command(proto::TAG_RESCAN, "");
    sim.os.remove_service("LOG");
    sim.command(proto::TAG_RESCAN, "");
    sim.os.service("LOG", &[("run", "")]);
    sim.command(proto::TAG_RESCAN, "");
    assert_eq!(sim.os.last_spawn("LOG", Script::Run).unwrap().3, log.3);
}
