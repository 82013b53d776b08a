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
//! - `service`: one service record.
//! - `machine`: the state machine of SPEC section 3.
//! - `scan`: directory scans, instances and log wiring.
//! - here: the table, control requests and the system phases.

mod index;
mod machine;
mod scan;
mod service;

use crate::proto::{self, Request, State};
use crate::spat::{Full, Writer};
use crate::sys::Errno;

use index::{Deadlines, Table, hash_name, hash_pid};

pub use service::{Bytes, Leftovers, Name, Proc, Service, Timer};

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

/// Which program of a service to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prog {
    Setup,
    Run,
    Finish,
    /// `SYS/final`, run by the shell after every process is gone.
    Final,
}

impl Prog {
    pub fn file(self) -> &'static str {
        match self {
            Prog::Setup => "setup",
            Prog::Run => "run",
            Prog::Finish => "finish",
            Prog::Final => "final",
        }
    }
}

/// Everything needed to start one program of a service.
#[derive(Debug, Clone, Copy)]
pub struct Spawn<'a> {
    /// Directory (relative to the service directory) to run in.
    pub dir: &'a [u8],
    pub prog: Prog,
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
    /// Sends the event `[len, 0, state, name]` to matching `notify/` sockets.
    fn notify(&mut self, name: &[u8], state: State);
    /// One line on stderr, `- nitro: …`.
    fn warn(&mut self, message: core::fmt::Arguments);
    /// Whether `dir/file` exists (following symlinks); `file` may be empty.
    fn exists(&mut self, dir: &[u8], file: &[u8]) -> bool;
    /// Reads `dir/file` into `buf`: bytes read, `None` if it cannot be read.
    fn read_file(&mut self, dir: &[u8], file: &[u8], buf: &mut [u8]) -> Option<usize>;
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
}

/// Fixed parameters of a supervisor.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub max_services: usize,
    pub nitro_pid: Pid,
    /// Descriptor limit: notification fds at or beyond it are refused.
    pub fd_limit: i32,
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
    /// `SYS/finish` runs: services can be stopped, not started.
    Finishing,
    /// Every service is being stopped.
    Stopping,
}

/// Work requested by a control command, done after the reply is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pending {
    pub rescan: bool,
    pub shutdown: Option<bool>,
}

pub struct Supervisor {
    config: Config,
    /// Fixed-capacity slots; `None` is free. Slots never move, so a slot
    /// index names a service for logger links and LIST paging.
    slots: Vec<Option<Service>>,
    /// Slots in use.
    used: usize,
    /// No free slot below this one.
    first_free: usize,
    /// Slots by name, and by the pid of their running program.
    names: Table,
    pids: Table,
    /// Slots with a timer, by deadline.
    deadlines: Deadlines,
    /// Services neither stopped nor loggers: the shutdown stops the
    /// loggers once there are none.
    live_others: usize,
    /// The shutdown has asked every service to stop that it may stop yet.
    stop_swept: bool,
    phase: Phase,
    /// Whether the end of the shutdown is a reboot (the last request wins).
    reboot: bool,
    /// Pid of the running `SYS/setup` or `SYS/finish`, 0 when none.
    sys_pid: Pid,
    /// Which of the two it is.
    sys_prog: Prog,
    /// When it is killed: `SYS/finish` after its time, `SYS/setup` after
    /// the stop budget once a shutdown cut it short.
    sys_deadline: Option<Millis>,
    /// nitro's exit status, set by the first main service that ends.
    exit_status: Option<i32>,
    scan_gen: u32,
    /// Counts readiness pipes, so that each has a token of its own.
    ready_gen: u32,
    pending: Pending,
    total_reaps: u32,
    total_sv_reaps: u32,
}

impl Supervisor {
    pub fn new(config: Config) -> Supervisor {
        let mut slots = Vec::with_capacity(config.max_services);
        slots.resize_with(config.max_services, || None);
        let max = config.max_services;
        Supervisor {
            config,
            slots,
            used: 0,
            first_free: 0,
            names: Table::new(max),
            pids: Table::new(max),
            deadlines: Deadlines::new(max),
            live_others: 0,
            stop_swept: false,
            phase: Phase::Boot,
            reboot: false,
            sys_pid: 0,
            sys_prog: Prog::Setup,
            sys_deadline: None,
            exit_status: None,
            scan_gen: 0,
            ready_gen: 0,
            pending: Pending::default(),
            total_reaps: 0,
            total_sv_reaps: 0,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the shutdown ends in a reboot.
    pub fn reboot_requested(&self) -> bool {
        self.reboot
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
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }

    pub fn find(&self, name: &[u8]) -> Option<usize> {
        self.names.find(hash_name(name), |i| {
            self.slots[i]
                .as_ref()
                .is_some_and(|s| s.name.as_bytes() == name)
        })
    }

    /// The service whose program has this pid.
    fn find_pid(&self, pid: Pid) -> Option<usize> {
        self.pids.find(hash_pid(pid), |i| {
            self.slots[i].as_ref().is_some_and(|s| s.pid == pid)
        })
    }

    fn sv(&self, i: usize) -> &Service {
        self.slots[i].as_ref().expect("slot in use")
    }

    fn sv_mut(&mut self, i: usize) -> &mut Service {
        self.slots[i].as_mut().expect("slot in use")
    }

    /// Adds a service in state DOWN; `None` (with a warning) when the table
    /// is full or the name cannot be a service.
    fn add(&mut self, os: &mut dyn Os, name: &[u8], now: Millis) -> Option<usize> {
        let name = Name::new(name)?;
        let free = (self.first_free..self.slots.len()).find(|&i| self.slots[i].is_none());
        let Some(free) = free else {
            os.warn(format_args!(
                "too many services, not adding {} (limit {})",
                name, self.config.max_services
            ));
            return None;
        };
        let mut service = Service::new(name, now);
        service.seen = self.scan_gen;
        self.slots[free] = Some(service);
        self.names.insert(hash_name(name.as_bytes()), free);
        self.used += 1;
        self.first_free = free + 1;
        Some(free)
    }

    /// Drops a service that is DOWN, releasing its descriptors and every
    /// logger link to it.
    /// A logger gone from disk waited only for its last writer: it goes
    /// too, and so on down a chain (walked, not recursed).
    fn forget(&mut self, os: &mut dyn Os, i: usize) {
        let mut next = Some(i);
        while let Some(i) = next {
            next = self.forget_one(os, i);
        }
    }

    /// Forgets service `i`; returns its logger if that can go now.
    fn forget_one(&mut self, os: &mut dyn Os, i: usize) -> Option<usize> {
        let service = self.tracking(i, |sup| sup.slots[i].take())?;
        self.names.remove(hash_name(service.name.as_bytes()), i);
        if service.pid > 0 {
            self.pids.remove(hash_pid(service.pid), i);
        }
        self.deadlines.clear(i);
        os.cgroup_remove(service.name.as_bytes());
        self.used -= 1;
        self.first_free = self.first_free.min(i);
        for fd in [
            service.ready_fd,
            service.log_pipe.map(|p| p.0),
            service.log_pipe.map(|p| p.1),
        ]
        .into_iter()
        .flatten()
        {
            os.close(fd);
        }
        // Only a service nothing logs into is forgotten; should one be
        // all the same, no link may point at its slot.
        if service.log_users > 0 {
            for other in self.slots.iter_mut().flatten() {
                if other.logger == Some(i) {
                    other.logger = None;
                }
            }
        }
        let l = service.logger.filter(|&l| l != i)?;
        self.set_logger_users(l, -1);
        self.forgettable(l).then_some(l)
    }

    /// One writer fewer logs into `l`, which is forgotten if it was gone
    /// from disk and waited only for that writer.
    fn unlink_logger(&mut self, os: &mut dyn Os, l: usize) {
        self.set_logger_users(l, -1);
        if self.forgettable(l) {
            self.forget(os, l);
        }
    }

    /// Gone from disk, DOWN, and nothing logs into it.
    fn forgettable(&self, i: usize) -> bool {
        self.slots[i]
            .as_ref()
            .is_some_and(|s| s.forget && s.is_stopped())
            && !self.is_logger(i)
    }

    /// Neither stopped nor a logger.
    fn is_live_other(&self, i: usize) -> bool {
        !self.sv(i).is_stopped() && !self.reads_log(i)
    }

    /// Changes service `i` with `change`, keeping `live_others` true.
    fn tracking<R>(&mut self, i: usize, change: impl FnOnce(&mut Supervisor) -> R) -> R {
        let before = self.is_live_other(i);
        let result = change(self);
        let after = self.slots[i].is_some() && self.is_live_other(i);
        match (before, after) {
            (false, true) => self.live_others += 1,
            (true, false) => self.live_others -= 1,
            _ => {}
        }
        result
    }

    /// Whether a service name refers to something startable on disk.
    fn startable(&self, os: &mut dyn Os, name: &[u8]) -> bool {
        if !proto::valid_name(name) {
            return false;
        }
        match proto::split_instance(name) {
            Some((template, _)) => scan::is_service_dir(os, template),
            None => !name.ends_with(b"@") && scan::is_service_dir(os, name),
        }
    }

    /// Looks a requested name up, adding it when it is startable on disk
    /// and `create` allows.
    fn lookup(&mut self, os: &mut dyn Os, name: &[u8], create: bool, now: Millis) -> Option<usize> {
        if let Some(i) = self.find(name) {
            return Some(i);
        }
        if create && self.startable(os, name) {
            self.add(os, name, now)
        } else {
            None
        }
    }

    /// Handles one control datagram. Returns the length of the reply written
    /// into `reply`, or `None` when the datagram is dropped.
    pub fn handle_request(
        &mut self,
        os: &mut dyn Os,
        datagram: &[u8],
        reply: &mut [u8],
        now: Millis,
    ) -> Option<usize> {
        let request = proto::parse_request(datagram)?;
        let mut w = Writer::new(reply);
        // A reply always fits: replies other than LIST are a few dozen
        // bytes, and LIST pages itself.
        let _ = self.answer(os, request, &mut w, now);
        Some(w.len())
    }

    fn answer(
        &mut self,
        os: &mut dyn Os,
        request: Request,
        w: &mut Writer,
        now: Millis,
    ) -> Result<(), Full> {
        match request {
            Request::Up(name) | Request::Down(name) | Request::Restart(name) => {
                // DOWN creates services only while SYS/setup runs ("created down").
                let create = !matches!(request, Request::Down(_)) || self.phase == Phase::Boot;
                let Some(i) = self.lookup(os, name, create, now) else {
                    return w.packet(proto::TAG_ESRCH, &[]);
                };
                match request {
                    Request::Up(_) => self.want_up(os, i, now),
                    Request::Down(_) => self.want_down(os, i, now),
                    _ => self.want_restart(os, i, now),
                }
                // The service may have been forgotten on the way down.
                if let Some(service) = &self.slots[i] {
                    os.notify(service.name.as_bytes(), service.state);
                }
                w.packet(proto::TAG_OK, &[])
            }
            Request::Ready(name) => match self.find(name) {
                Some(i) => {
                    self.became_ready(os, i, now);
                    w.packet(proto::TAG_OK, &[])
                }
                None => w.packet(proto::TAG_ESRCH, &[]),
            },
            Request::Signal { signal, name } => match self.find(name) {
                Some(i) if self.sv(i).run_pid() > 0 => {
                    os.kill(self.sv(i).pid, signal as i32);
                    w.packet(proto::TAG_OK, &[])
                }
                _ => w.packet(proto::TAG_ESRCH, &[]),
            },
            Request::Query(name) => match self.find(name) {
                Some(i) => {
                    let stats = os.cgroup_stats(self.sv(i).name.as_bytes());
                    let service = self.sv(i);
                    write_status(w, service, now)?;
                    write_extensions(w, service, stats)
                }
                None => w.packet(proto::TAG_ESRCH, &[]),
            },
            Request::List { start } => self.list(os, w, start as usize, now),
            Request::Info => {
                let pid = self.config.nitro_pid as u32;
                w.u32(proto::TAG_NITRO_PID, pid)?;
                w.u32(proto::TAG_PID, pid)?;
                w.u32(proto::TAG_MAX_SERVICE, self.used as u32)?;
                w.u32(proto::TAG_TOTAL_REAPS, self.total_reaps)?;
                w.u32(proto::TAG_TOTAL_SV_REAPS, self.total_sv_reaps)?;
                match os.allocations() {
                    Some(count) => w.u32(proto::TAG_ALLOCS, count),
                    None => Ok(()),
                }
            }
            Request::Rescan => {
                self.pending.rescan = true;
                w.packet(proto::TAG_OK, &[])
            }
            Request::Shutdown | Request::Reboot => {
                self.pending.shutdown = Some(request == Request::Reboot);
                w.packet(proto::TAG_OK, &[])
            }
            Request::Unknown => w.packet(proto::TAG_ENOSYS, &[]),
        }
    }

    /// One LIST page: whole SERVICE frames from slot `start` on, then
    /// LIST_NEXT if some did not fit.
    fn list(&self, os: &mut dyn Os, w: &mut Writer, start: usize, now: Millis) -> Result<(), Full> {
        const LIST_NEXT_LEN: usize = crate::spat::HEADER_LEN + 4;
        let from = start.min(self.slots.len());
        for (i, service) in self.slots[from..]
            .iter()
            .enumerate()
            .filter_map(|(k, s)| s.as_ref().map(|s| (from + k, s)))
        {
            let before = w.len();
            let stats = os.cgroup_stats(service.name.as_bytes());
            let fits = w.remaining() >= LIST_NEXT_LEN
                && write_frame(w, service, now, stats).is_ok()
                && w.remaining() >= LIST_NEXT_LEN;
            if !fits {
                w.truncate(before);
                return w.u32(proto::TAG_LIST_NEXT, i as u32);
            }
        }
        Ok(())
    }

    /// Control commands that act after their reply went out.
    pub fn take_pending(&mut self) -> Pending {
        core::mem::take(&mut self.pending)
    }

    /// Starts the system shutdown (or changes what happens at its end):
    /// `SYS/finish`, then every service.
    pub fn shutdown(&mut self, os: &mut dyn Os, reboot: bool, now: Millis) {
        self.reboot = reboot;
        if matches!(self.phase, Phase::Finishing | Phase::Stopping) {
            return;
        }
        os.warn(format_args!(
            "{}: stopping all services",
            if reboot { "reboot" } else { "shutdown" }
        ));
        if self.phase == Phase::Boot && self.sys_pid > 0 {
            // SYS/setup is cut short and stopped like a service; the
            // shutdown goes on once it is gone.
            os.kill(self.sys_pid, libc::SIGTERM);
            os.kill(self.sys_pid, libc::SIGCONT);
            self.sys_deadline = Some(now.saturating_add(STOP_TIMEOUT_MS));
            self.phase = Phase::Finishing;
            os.notify(SYS, State::Shutdown);
            return;
        }
        self.finish_system(os, now);
    }

    /// `SYS/finish` if there is one, then every service.
    fn finish_system(&mut self, os: &mut dyn Os, now: Millis) {
        let reboot = self.reboot;
        self.enter_stopping();
        if os.exists(SYS, b"finish") {
            let end: &[u8] = if reboot { b"reboot" } else { b"shutdown" };
            match self.spawn_sys(os, Prog::Finish, &[b"0", b"0", end]) {
                Ok(pid) => {
                    self.phase = Phase::Finishing;
                    self.sys_pid = pid;
                    self.sys_prog = Prog::Finish;
                    self.sys_deadline = Some(now.saturating_add(SYS_TIMEOUT_MS));
                    os.notify(SYS, State::Shutdown);
                    return;
                }
                Err(error) => os.warn(format_args!("SYS/finish: {}", error)),
            }
        }
        self.stop_step(os, now);
    }

    /// Runs a SYS script on the console.
    fn spawn_sys(&self, os: &mut dyn Os, prog: Prog, args: &[&[u8]]) -> Result<Pid, SpawnError> {
        os.spawn(&Spawn {
            dir: SYS,
            prog,
            args,
            stdin: Some(0),
            stdout: None,
            stderr_to_stdout: false,
            notify: None,
            controlling_tty: true,
            cgroup: None,
        })
    }

    /// First start: `SYS/setup` if there is one, else straight to the scan.
    pub fn boot(&mut self, os: &mut dyn Os, now: Millis) {
        if os.exists(SYS, b"setup") {
            match self.spawn_sys(os, Prog::Setup, &[]) {
                Ok(pid) => {
                    self.sys_pid = pid;
                    self.sys_prog = Prog::Setup;
                    os.notify(SYS, State::Setup);
                    return;
                }
                Err(error) => os.warn(format_args!("SYS/setup: {}", error)),
            }
        }
        self.start_all(os, now);
    }

    /// After SYS/setup: the global logger, then everything in the directory.
    fn start_all(&mut self, os: &mut dyn Os, now: Millis) {
        self.phase = Phase::Running;
        if let Some(i) = self.lookup(os, scan::GLOBAL_LOGGER, true, now) {
            self.want_up(os, i, now);
        }
        self.rescan(os, now);
    }

    /// `SYS/setup` or `SYS/finish` ended.
    fn sys_exited(&mut self, os: &mut dyn Os, wstatus: i32, now: Millis) {
        self.sys_pid = 0;
        self.sys_deadline = None;
        os.notify(SYS, State::Down);
        match self.phase {
            Phase::Boot => {
                os.warn(format_args!(
                    "SYS/setup finished with wait status {}",
                    wstatus
                ));
                self.start_all(os, now);
            }
            Phase::Finishing if self.sys_prog == Prog::Setup => self.finish_system(os, now),
            Phase::Finishing => {
                self.enter_stopping();
                self.stop_step(os, now);
            }
            Phase::Running | Phase::Stopping => {}
        }
    }

    /// A main service ended: its status becomes nitro's, and the system
    /// goes down (the first main service to end decides).
    fn main_ended(&mut self, os: &mut dyn Os, status: i32, now: Millis) {
        if self.exit_status.is_none() && self.starting_allowed() {
            self.exit_status = Some(status);
            self.shutdown(os, false, now);
        }
    }

    fn enter_stopping(&mut self) {
        self.phase = Phase::Stopping;
        self.stop_swept = false;
    }

    /// Advances the shutdown: ordinary services first, loggers once
    /// nothing else is left.
    fn stop_step(&mut self, os: &mut dyn Os, now: Millis) {
        if self.phase != Phase::Stopping {
            return;
        }
        let others_left = self.live_others > 0;
        // Once every service but the loggers was asked to stop, nothing
        // changes until the last of them has stopped: none can start.
        if self.stop_swept && others_left {
            return;
        }
        self.stop_swept = true;
        for i in 0..self.slots.len() {
            let Some(service) = &self.slots[i] else {
                continue;
            };
            let stopping = matches!(service.state, State::Down | State::Fatal | State::Shutdown);
            // A logger with nothing running (DELAY) cannot lose data: it
            // goes DOWN at once, since it will not be started again.
            let holds_back = others_left && self.reads_log(i) && service.proc != Proc::None;
            if !stopping && !holds_back {
                self.want_down(os, i, now);
            }
        }
    }

    /// Whether the shutdown is complete: every service stopped.
    pub fn stopped(&self) -> bool {
        self.phase == Phase::Stopping && self.services().all(|(_, s)| s.is_stopped())
    }

    /// Whether some other service logs into slot `i`: it is kept while
    /// they may write, even once gone from disk or unused as an instance.
    fn is_logger(&self, i: usize) -> bool {
        let service = self.sv(i);
        let own_link = u32::from(service.logger == Some(i));
        service.log_users > own_link || service.name.as_bytes() == scan::GLOBAL_LOGGER
    }

    /// Whether some service, itself included, logs into slot `i`: the
    /// shutdown stops it with the loggers, last.
    fn reads_log(&self, i: usize) -> bool {
        let service = self.sv(i);
        service.log_users > 0 || service.name.as_bytes() == scan::GLOBAL_LOGGER
    }

    /// A child was reaped.
    pub fn on_exit(&mut self, os: &mut dyn Os, pid: Pid, wstatus: i32, now: Millis) {
        self.total_reaps = self.total_reaps.wrapping_add(1);
        if pid == self.sys_pid && pid > 0 {
            self.sys_exited(os, wstatus, now);
            return;
        }
        let Some(i) = self.find_pid(pid).filter(|_| pid > 0) else {
            return;
        };
        self.total_sv_reaps = self.total_sv_reaps.wrapping_add(1);
        self.process_exited(os, i, wstatus, now);
        self.stop_step(os, now);
    }

    /// The earliest deadline of any service.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.deadlines
            .first()
            .map(|(at, _)| at)
            .into_iter()
            .chain(self.sys_deadline)
            .min()
    }

    /// Fires every deadline that has passed.
    pub fn on_timers(&mut self, os: &mut dyn Os, now: Millis) {
        if self.sys_deadline.is_some_and(|d| d <= now) {
            self.sys_deadline = None;
            os.warn(format_args!(
                "SYS/{} takes too long, killing it",
                self.sys_prog.file()
            ));
            os.kill(self.sys_pid, libc::SIGKILL);
        }
        // Each service's timer fires at most once per call, even one set
        // again to `now` as it fires.
        for _ in 0..self.used {
            match self.deadlines.first() {
                Some((at, i)) if at <= now => self.timer_fired(os, i, now),
                _ => break,
            }
        }
        self.stop_step(os, now);
    }

    /// A new token for the readiness pipe of slot `i`: the slot in the
    /// low half, a count of pipes in the high half (below the loop's own
    /// keys). Slot and descriptor number are both reused when a `run` is
    /// replaced; the token is not.
    pub(super) fn new_ready_token(&mut self, i: usize) -> u64 {
        self.ready_gen = (self.ready_gen + 1) & 0x7fff_ffff;
        (u64::from(self.ready_gen) << 32) | i as u64
    }

    /// The readiness pipe with this token can be read. Several events of
    /// one wake-up are handled in turn: the pipe may have been closed or
    /// replaced by an earlier one, and then this event is stale.
    pub fn on_ready_fd(&mut self, os: &mut dyn Os, token: u64, now: Millis) {
        let i = (token & 0xffff_ffff) as usize;
        let Some(fd) = self
            .slots
            .get(i)
            .and_then(|s| s.as_ref())
            .filter(|s| s.ready_token == token)
            .and_then(|s| s.ready_fd)
        else {
            return;
        };
        let mut buf = [0u8; 64];
        match os.read(fd, &mut buf) {
            ReadResult::Data(n) if buf[..n].contains(&b'\n') => self.became_ready(os, i, now),
            ReadResult::Data(_) | ReadResult::Nothing => {}
            ReadResult::Eof => self.close_ready_fd(os, i),
        }
    }

    fn close_ready_fd(&mut self, os: &mut dyn Os, i: usize) {
        if let Some(fd) = self.sv_mut(i).ready_fd.take() {
            os.close(fd);
        }
    }
}

#[cfg(test)]
impl Supervisor {
    /// Every index agrees with the table it indexes.
    fn check_indexes(&self) {
        let mut used = 0;
        let mut live_others = 0;
        for (i, s) in self.services() {
            used += 1;
            assert_eq!(self.find(s.name.as_bytes()), Some(i), "{} by name", s.name);
            if s.pid > 0 {
                assert_eq!(self.find_pid(s.pid), Some(i), "{} by pid", s.name);
            }
            assert_eq!(
                self.deadlines.get(i).is_some(),
                s.timer != Timer::None,
                "{} deadline",
                s.name
            );
            live_others += usize::from(self.is_live_other(i));
        }
        for i in (0..self.slots.len()).filter(|&i| self.slots[i].is_none()) {
            assert_eq!(self.deadlines.get(i), None);
            assert!(
                i >= self.first_free,
                "free slot {i} below {}",
                self.first_free
            );
        }
        assert_eq!(self.used, used);
        assert_eq!(self.live_others, live_others);
    }
}

/// STATE, PID, WSTATUS and UPTIME of a service.
fn write_status(w: &mut Writer, service: &Service, now: Millis) -> Result<(), Full> {
    w.u8(proto::TAG_STATE, service.state as u8)?;
    w.u32(proto::TAG_PID, service.run_pid() as u32)?;
    w.i32(proto::TAG_WSTATUS, service.wstatus)?;
    let uptime = now.saturating_sub(service.changed_at) / 1000;
    w.u32(proto::TAG_UPTIME, uptime.min(u32::MAX as u64) as u32)
}

/// One SERVICE frame of a LIST reply.
fn write_frame(
    w: &mut Writer,
    service: &Service,
    now: Millis,
    stats: Option<CgroupStats>,
) -> Result<(), Full> {
    w.open(proto::TAG_SERVICE)?;
    w.packet(proto::TAG_NAME, service.name.as_bytes())?;
    write_status(w, service, now)?;
    write_extensions(w, service, stats)?;
    w.close(proto::TAG_SERVICE)
}

/// The per-service extension packets, after the standard ones: RESTARTS,
/// REASON when there is one, and what its cgroup used, as far as known.
fn write_extensions(
    w: &mut Writer,
    service: &Service,
    stats: Option<CgroupStats>,
) -> Result<(), Full> {
    w.u32(proto::TAG_RESTARTS, service.restarts)?;
    if let Some(reason) = service.reason {
        w.packet(proto::TAG_REASON, &reason.encode())?;
    }
    let stats = stats.unwrap_or_default();
    for (tag, value) in [
        (proto::TAG_CPU_USEC, stats.cpu_usec),
        (proto::TAG_MEMORY_CURRENT, stats.memory_current),
        (proto::TAG_MEMORY_PEAK, stats.memory_peak),
        (proto::TAG_PIDS_CURRENT, stats.pids_current),
        (proto::TAG_OOM_KILLS, stats.oom_kills),
    ] {
        if let Some(value) = value {
            w.u64(tag, value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
