//! The supervisor core: the service table and every decision nitro makes.
//!
//! The core is deterministic. It gets the time as an argument and reaches
//! the world only through the narrow [`Os`] trait (spawn, kill, pipes,
//! reading files of the service directory, sending events), so the whole
//! state machine runs in tests against a fake `Os` on a fake clock. We call
//! the trait instead of returning action values because the result of a
//! spawn (a pid, a fork error or an exec error) decides the very next
//! transition.
//!
//! - `machine`: the state machine of SPEC section 3: every event of a
//!   service goes through one transition table, `Supervisor::step`.
//! - `system`: the phases of the whole system: SYS scripts, shutdown,
//!   the main service.
//! - `scan`: directory scans, services coming and going, log wiring.
//! - `request`: control requests and their replies.
//! - `table`: the service table and its indexes (`index`).
//! - `service`: one service record.
//! - here: the `Os` trait, the supervisor's state, and the entry points
//!   the loop calls, each of which turns what happened into events.

mod index;
mod machine;
mod request;
mod scan;
mod service;
mod system;
mod table;

use crate::proto::State;
use crate::sys::Errno;

use machine::Event;
pub use service::{Bytes, Leftovers, Name, Script, Service, Timer};
use table::ServiceTable;

pub type Fd = i32;
pub type Pid = i32;
/// Milliseconds on a monotonic clock.
pub type Millis = u64;

/// `run` must be UP this long after it started when it has no
/// `notification-fd`.
pub const READY_TIMEOUT_MS: Millis = 2000;
/// A `run` that lived less than this is restarted only after as long.
pub const RESPAWN_DELAY_MS: Millis = 1000;
/// Wait after a failed fork, pipe or a temporary exec failure.
pub const SPAWN_RETRY_MS: Millis = 2000;
/// Default time from the stop signal to SIGKILL.
pub const STOP_TIMEOUT_MS: Millis = 7000;
/// Default time `finish` may run.
pub const FINISH_TIMEOUT_MS: Millis = 7000;
/// Default number of services supervised at once.
pub const DEFAULT_MAX_SERVICES: usize = 500;

/// Everything needed to start one script of a service.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    /// Directory (relative to the service directory) to run in.
    pub dir: &'a [u8],
    pub script: Script,
    /// Arguments after argv[0].
    pub args: &'a [&'a [u8]],
    /// stdin: this fd, or /dev/null.
    pub stdin: Option<Fd>,
    /// stdout: this fd, or nitro's own stdout.
    pub stdout: Option<Fd>,
    /// stderr goes where stdout goes (the global logger), not nitro's stderr.
    pub stderr_to_stdout: bool,
    /// Readiness pipe: (fd number in the child, write end in nitro).
    pub notify: Option<(i32, Fd)>,
    /// Take the console (stdin) as controlling terminal (SYS scripts).
    pub controlling_tty: bool,
    /// Start it in the cgroup of this service (its name), when nitro uses
    /// cgroups; `None` for the SYS scripts, which stay in nitro's.
    pub cgroup: Option<&'a [u8]>,
    /// Make that cgroup anew first, if nothing is left in it (else join
    /// it as it is).
    pub fresh_cgroup: bool,
}

impl<'a> Spawn<'a> {
    /// A SYS script: on the console, which it takes as controlling
    /// terminal, and in nitro's own cgroup.
    pub fn sys(script: Script, args: &'a [&'a [u8]]) -> Spawn<'a> {
        Spawn {
            dir: SYS,
            script,
            args,
            stdin: Some(0),
            stdout: None,
            stderr_to_stdout: false,
            notify: None,
            controlling_tty: true,
            cgroup: None,
            fresh_cgroup: false,
        }
    }
}

/// What a service's cgroup used, each `None` where the controller (or
/// the kernel) does not tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupStats {
    /// CPU time of all its processes, microseconds.
    pub cpu_usec: Option<u64>,
    /// Memory in use and the most ever used, bytes.
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    /// Processes now.
    pub pids_current: Option<u64>,
    /// Processes the OOM killer killed in it.
    pub oom_kills: Option<u64>,
}

/// Why a spawn failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpawnError {
    /// The process could not be created: errno.
    Fork(i32),
    /// execve failed in the child: errno.
    Exec(i32),
}

/// Whether a call failed for a lack of descriptors or memory, which may
/// pass: what it was for is tried again, not taken as absent or empty.
pub fn out_of_resources(errno: i32) -> bool {
    matches!(errno, libc::EMFILE | libc::ENFILE | libc::ENOMEM)
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            SpawnError::Fork(errno) => write!(f, "cannot start: {}", Errno(errno)),
            SpawnError::Exec(errno) => write!(f, "cannot exec: {}", Errno(errno)),
        }
    }
}

/// Result of reading a readiness pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadResult {
    Data(usize),
    Eof,
    /// Nothing there right now (EAGAIN) or an error: keep waiting.
    Nothing,
}

/// The side effects the core asks for. Paths are relative to the service
/// directory.
pub trait Os {
    fn spawn(&mut self, spawn: &Spawn) -> Result<Pid, SpawnError>;
    fn kill(&mut self, pid: Pid, signal: i32);
    /// A close-on-exec pipe: (read end, write end), or errno.
    fn pipe(&mut self) -> Result<(Fd, Fd), i32>;
    fn close(&mut self, fd: Fd);
    /// Reads what is there; only ever called on a watched descriptor.
    fn read(&mut self, fd: Fd, buf: &mut [u8]) -> ReadResult;
    /// Makes the readiness pipe `fd` non-blocking and wakes the loop with
    /// `token` when it can be read (`Supervisor::on_ready_fd`), until `fd`
    /// is closed.
    fn watch(&mut self, fd: Fd, token: u64);
    /// Announces the event `[len, 0, state, name]` to matching `notify/`
    /// sockets: at once, or held until the shell sends the events of the
    /// wake-up, in order, before any reply and before it waits.
    fn notify(&mut self, name: &[u8], state: State);
    /// One line on stderr, `- nitro: …`.
    fn warn(&mut self, message: core::fmt::Arguments);
    /// Whether `dir/file` exists (following symlinks); `file` may be empty.
    fn exists(&mut self, dir: &[u8], file: &[u8]) -> bool;
    /// Whether `dir/file` is known not to exist (ENOENT): a script that
    /// cannot even be looked at (a directory nitro may not search, a
    /// symlink loop) is tried, and its exec says why, as the C nitro does.
    fn missing(&mut self, dir: &[u8], file: &[u8]) -> bool {
        !self.exists(dir, file)
    }
    /// nitro's limit of descriptors now (it may be changed while nitro
    /// runs): notification fds at or beyond it are refused.
    fn fd_limit(&mut self) -> i32;
    /// Whether `dir` is a directory nitro may not look into.
    fn unreadable_dir(&mut self, _dir: &[u8]) -> bool {
        false
    }
    /// Reads `dir/file` into `buf`: bytes read, or errno (ENOENT: there is
    /// no such file).
    fn read_file(&mut self, dir: &[u8], file: &[u8], buf: &mut [u8]) -> Result<usize, i32>;
    /// Target of the symlink `dir/file`, `None` if it is not a symlink.
    fn read_link(&mut self, dir: &[u8], file: &[u8], buf: &mut [u8]) -> Option<usize>;
    /// Starts listing the service directory.
    fn scan_start(&mut self);
    /// The next entry name, `None` at the end.
    fn scan_next(&mut self, buf: &mut [u8; 256]) -> Option<usize>;
    /// Heap allocations since startup completed, if they are counted.
    fn allocations(&self) -> Option<u32>;

    // The cgroup of a service, named by the service (docs/cgroups.md).
    // Without cgroups there is none: never populated, nothing to do.

    /// Whether a process is left in the cgroup of `name`. Once it is
    /// empty, the loop calls `Supervisor::on_cgroup_change`.
    fn cgroup_populated(&mut self, _name: &[u8]) -> bool {
        false
    }
    /// Like `cgroup_populated`, but an empty cgroup is removed (made
    /// anew if something starts in it again).
    fn cgroup_release(&mut self, name: &[u8]) -> bool {
        self.cgroup_populated(name)
    }
    /// Sends `signal` to every process in the cgroup of `name`.
    fn cgroup_signal(&mut self, _name: &[u8], _signal: i32) {}
    /// SIGKILL to every process in the cgroup of `name`.
    fn cgroup_kill(&mut self, _name: &[u8]) {}
    /// Removes the cgroup of `name` (the service is forgotten).
    fn cgroup_remove(&mut self, _name: &[u8]) {}
    /// What the cgroup of `name` used.
    fn cgroup_stats(&mut self, _name: &[u8]) -> Option<CgroupStats> {
        None
    }
    /// Processes the OOM killer killed in the cgroup of `name` (0 without
    /// the memory controller).
    fn cgroup_oom_kills(&mut self, _name: &[u8]) -> u64 {
        0
    }
}

/// Fixed parameters of a supervisor.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub max_services: usize,
    pub nitro_pid: Pid,
}

/// Time `SYS/finish` (and `SYS/final`) may run.
pub const SYS_TIMEOUT_MS: Millis = 30_000;
/// The name SYS's scripts are reported under.
pub const SYS: &[u8] = b"SYS";

/// Where the whole system is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `SYS/setup` runs: services can be started or created down; the scan
    /// comes after.
    Boot,
    Running,
    /// `SYS/finish` runs (or a `SYS/setup` cut short is being stopped):
    /// services can be stopped, not started.
    SysFinish,
    /// Every service is being stopped.
    Stopping,
}

/// How the system ends once every service is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum End {
    #[default]
    Shutdown,
    Reboot,
}

impl End {
    /// The word SYS scripts get as their argument.
    pub fn word(self) -> &'static str {
        match self {
            End::Shutdown => "shutdown",
            End::Reboot => "reboot",
        }
    }
}

/// Work requested by a control command, done after the reply is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub rescan: bool,
    pub end: Option<End>,
}

/// The running `SYS/setup` or `SYS/finish`.
#[derive(Debug, Clone, Copy)]
struct SysScript {
    /// 0 while `SYS/setup` waits to be tried again (DELAY).
    pid: Pid,
    script: Script,
    /// When it is killed: `SYS/finish` after its time, `SYS/setup` after
    /// the stop budget once a shutdown cut it short.
    deadline: Option<Millis>,
    /// When it started.
    started: Millis,
}

pub struct Supervisor {
    config: Config,
    table: ServiceTable,
    /// Services neither stopped nor loggers: the shutdown stops the
    /// loggers once there are none.
    live_others: usize,
    /// The shutdown has asked every service to stop that it may stop yet.
    stop_swept: bool,
    phase: Phase,
    /// What happens at the end (the last request wins).
    end: End,
    sys: Option<SysScript>,
    /// nitro's exit status, set by the first main service that ends.
    exit_status: Option<i32>,
    scan_gen: u32,
    /// Counts readiness pipes, so that each has a token of its own.
    ready_gen: u32,
    /// Counts walks down chains of loggers (`Service::walked`).
    walk_gen: u32,
    pending: Pending,
    total_reaps: u32,
    total_sv_reaps: u32,
    /// The global log pipe while `LOG` is gone from the table: services
    /// started while it ran still write into it, and a `LOG` put back on
    /// disk reads it on (as the C nitro keeps one global pipe for good).
    global_pipe: Option<(Fd, Fd)>,
}

impl Supervisor {
    pub fn new(config: Config) -> Supervisor {
        Supervisor {
            config,
            table: ServiceTable::new(config.max_services),
            live_others: 0,
            stop_swept: false,
            phase: Phase::Boot,
            end: End::Shutdown,
            sys: None,
            exit_status: None,
            scan_gen: 0,
            ready_gen: 0,
            walk_gen: 0,
            pending: Pending::default(),
            total_reaps: 0,
            total_sv_reaps: 0,
            global_pipe: None,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// How the system ends: a shutdown or a reboot.
    pub fn end(&self) -> End {
        self.end
    }

    /// nitro's exit status (SPEC section 8): the main service's, else 0.
    pub fn exit_status(&self) -> i32 {
        self.exit_status.unwrap_or(0)
    }

    /// Whether requests to start things are still honoured.
    fn starting_allowed(&self) -> bool {
        matches!(self.phase, Phase::Boot | Phase::Running)
    }

    /// The services in slot order.
    pub fn services(&self) -> impl Iterator<Item = (usize, &Service)> {
        self.table.iter_from(0)
    }

    pub fn find(&self, name: &[u8]) -> Option<usize> {
        self.table.find(name)
    }

    /// A child was reaped.
    pub fn on_exit(&mut self, os: &mut dyn Os, pid: Pid, wstatus: i32, now: Millis) {
        self.total_reaps = self.total_reaps.wrapping_add(1);
        if self.sys.is_some_and(|sys| sys.pid == pid) {
            // SYS is a service to the C nitro, and counted as one.
            self.total_sv_reaps = self.total_sv_reaps.wrapping_add(1);
            self.sys_exited(os, wstatus, now);
            return;
        }
        let Some(i) = self.table.find_pid(pid) else {
            return;
        };
        self.total_sv_reaps = self.total_sv_reaps.wrapping_add(1);
        self.step(os, i, Event::Exited(wstatus), now);
        self.stop_step(os, now);
    }

    /// The earliest deadline of any service or SYS script.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.table
            .next_deadline()
            .map(|(at, _)| at)
            .into_iter()
            .chain(self.sys.and_then(|sys| sys.deadline))
            .min()
    }

    /// Fires every deadline that has passed.
    pub fn on_timers(&mut self, os: &mut dyn Os, now: Millis) {
        self.sys_timer(os, now);
        // Each service's timer fires at most once per call, even one set
        // again to `now` as it fires.
        for _ in 0..self.table.len() {
            match self.table.next_deadline() {
                Some((at, i)) if at <= now => self.step(os, i, Event::Deadline, now),
                _ => break,
            }
        }
        self.stop_step(os, now);
    }

    /// Some cgroup may have become empty: the services waiting for theirs
    /// go on.
    pub fn on_cgroup_change(&mut self, os: &mut dyn Os, now: Millis) {
        for i in 0..self.table.capacity() {
            if self.table.get(i).is_some_and(|s| s.leftovers.is_some()) {
                self.step(os, i, Event::Emptied, now);
            }
        }
        self.stop_step(os, now);
    }

    /// A new token for the readiness pipe of slot `i`: the slot in the
    /// low half, a count of pipes in the high half (below the loop's own
    /// keys). Slot and descriptor number are both reused when a `run` is
    /// replaced; the token is not.
    fn new_ready_token(&mut self, i: usize) -> u64 {
        self.ready_gen = (self.ready_gen + 1) & 0x7fff_ffff;
        (u64::from(self.ready_gen) << 32) | i as u64
    }

    /// The readiness pipe with this token can be read. Several events of
    /// one wake-up are handled in turn: the pipe may have been closed or
    /// replaced by an earlier one, and then this event is stale.
    pub fn on_ready_fd(&mut self, os: &mut dyn Os, token: u64, now: Millis) {
        let i = (token & 0xffff_ffff) as usize;
        let Some((fd, _)) = self
            .table
            .get(i)
            .and_then(|s| s.ready)
            .filter(|&(_, t)| t == token)
        else {
            return;
        };
        let mut buf = [0u8; 64];
        match os.read(fd, &mut buf) {
            ReadResult::Data(n) if buf[..n].contains(&b'\n') => {
                self.close_ready_fd(os, i);
                self.step(os, i, Event::Ready, now);
            }
            ReadResult::Data(_) | ReadResult::Nothing => {}
            ReadResult::Eof => self.close_ready_fd(os, i),
        }
    }

    /// Sets the state of service `i` and announces it.
    fn set_state(&mut self, os: &mut dyn Os, i: usize, state: State, now: Millis) {
        if self.table[i].state == state {
            return;
        }
        self.tracking(i, |sup| sup.table[i].state = state);
        let service = &mut self.table[i];
        // UPTIME counts from the last start or stop, not from readiness or
        // the stop request.
        if !matches!(state, State::Up | State::Shutdown | State::Restart) {
            service.changed_at = now;
        }
        os.notify(service.name.as_bytes(), state);
    }

    /// The script now running in slot `i` (`None` and 0 for none).
    fn set_running(&mut self, i: usize, running: Option<Script>, pid: Pid) {
        self.tracking(i, |sup| sup.table.set_running(i, running, pid));
    }

    /// Neither stopped nor a logger.
    fn is_live_other(&self, i: usize) -> bool {
        !self.table[i].is_stopped() && !self.reads_log(i)
    }

    /// Changes service `i` with `change`, keeping `live_others` true.
    fn tracking<R>(&mut self, i: usize, change: impl FnOnce(&mut Supervisor) -> R) -> R {
        let before = self.is_live_other(i);
        let result = change(self);
        let after = self.table.get(i).is_some() && self.is_live_other(i);
        match (before, after) {
            (false, true) => {
                self.live_others += 1;
                // During a shutdown only a logger can become one of the
                // others (its last writer was forgotten): the next sweep
                // must ask it to stop, as the last did not.
                self.stop_swept = false;
            }
            (true, false) => self.live_others -= 1,
            _ => {}
        }
        result
    }
}

#[cfg(test)]
impl Supervisor {
    /// Every index agrees with the table it indexes.
    fn check_indexes(&self) {
        self.table.check();
        let live_others = (0..self.table.capacity())
            .filter(|&i| self.table.get(i).is_some() && self.is_live_other(i))
            .count();
        assert_eq!(self.live_others, live_others);
    }
}

#[cfg(test)]
mod tests;
