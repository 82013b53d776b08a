//! One supervised service: its name, state and the process it runs.

use crate::proto::{self, NAME_MAX, State};

use super::{Fd, Millis, Pid};

/// A service name in a fixed buffer: nothing is allocated per service.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name {
    bytes: [u8; NAME_MAX],
    len: u8,
}

impl Name {
    /// `None` if `name` does not fit (64 bytes or more).
    pub fn new(name: &[u8]) -> Option<Name> {
        if name.len() >= NAME_MAX {
            return None;
        }
        let mut bytes = [0; NAME_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Some(Name {
            bytes,
            len: name.len() as u8,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The directory holding this service's files: the template's for an
    /// instance, its own otherwise.
    pub fn dir(&self) -> &[u8] {
        match proto::split_instance(self.as_bytes()) {
            Some((template, _)) => template,
            None => self.as_bytes(),
        }
    }

    /// The instance parameter, if this is an instance.
    pub fn param(&self) -> Option<&[u8]> {
        proto::split_instance(self.as_bytes()).map(|(_, param)| param)
    }
}

impl core::fmt::Display for Name {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        Bytes(self.as_bytes()).fmt(f)
    }
}

/// Shows bytes as text without allocating, invalid UTF-8 as U+FFFD.
pub struct Bytes<'a>(pub &'a [u8]);

impl core::fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for chunk in self.0.utf8_chunks() {
            f.write_str(chunk.valid())?;
            if !chunk.invalid().is_empty() {
                f.write_str("\u{fffd}")?;
            }
        }
        Ok(())
    }
}

/// One of a service's scripts (or `SYS/final`, which the shell runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    Setup,
    Run,
    Finish,
    Final,
}

impl Script {
    /// Its file in the service directory (`SYS/final` is run from the
    /// top of the directory, as the C nitro runs it).
    pub fn file(self) -> &'static str {
        match self {
            Script::Setup => "setup",
            Script::Run => "run",
            Script::Finish => "finish",
            Script::Final => "SYS/final",
        }
    }
}

/// What the service's one deadline means when it passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    None,
    /// No `notification-fd`: UP this long after `run` started.
    Ready,
    /// DELAY is over: start again.
    Respawn,
    /// The stop signal went unheeded: SIGKILL.
    Kill,
    /// `finish` ran too long: SIGKILL.
    KillFinish,
}

/// What a service does once its cgroup is empty: what `run` (or
/// `setup`) left behind is stopped before `finish` runs and before the
/// service is DOWN, so two generations never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Run `finish` with these arguments.
    Finish { status: i64, signal: i64 },
    /// The end of the stop or exit (`Event::Over`): DOWN, or start again.
    Over,
    /// A start that failed: DELAY and a new try after this long, or FATAL
    /// (`None`).
    Failed(Option<super::Millis>),
}

pub struct Service {
    pub name: Name,
    pub state: State,
    /// The script running now, if any.
    pub running: Option<Script>,
    /// Its pid, 0 when none.
    pub pid: Pid,
    /// Raw wait status of the last `run` (-1: exec failed).
    pub wstatus: i32,
    /// When the service last started or stopped (for UPTIME).
    pub changed_at: Millis,
    /// When `run` was last launched (for the respawn delay).
    pub run_started: Millis,
    /// What the service's deadline (kept in the supervisor's heap) means.
    pub timer: Timer,
    /// The readiness pipe while waiting for a newline: its read end, and
    /// the token the loop reports it with.
    pub ready: Option<(Fd, u64)>,
    /// This service's own log pipe (read, write) once something logs to it.
    pub log_pipe: Option<(Fd, Fd)>,
    /// Slot of the service this one logs into.
    pub logger: Option<usize>,
    /// How many services log into this one.
    pub log_users: u32,
    /// Scan generation in which the directory entry was last seen.
    pub seen: u32,
    /// Forget the service once it is DOWN (gone from disk).
    pub forget: bool,
    /// New in the running scan and not `down`: started once the scan has
    /// wired every log link, so that no logger starts without its pipe.
    pub start_after_scan: bool,
    /// The scan in which the last warning about its `log` was given.
    pub log_warned: Option<u32>,
    /// The last walk down a chain of loggers that passed here
    /// (`Supervisor::walk_gen`): each walk visits a service once, loops
    /// and chains into loops alike.
    pub walked: u32,
    /// Automatic restarts since the service was added.
    pub restarts: u32,
    /// OOM kills in the cgroups of its earlier starts (each start gets a
    /// cgroup made anew), and how many of the current cgroup's are in it:
    /// OOM_KILLS counts over the whole life of the service.
    pub oom_kills: u64,
    pub oom_counted: u64,
    /// Why the service could not be started the last time, until `run` is
    /// launched again (REASON, tag 183).
    pub reason: Option<proto::Reason>,
    /// The stop in progress was a requested restart: start again at once.
    pub restart_requested: bool,
    /// A main service's `run` ended on its own with this exit status;
    /// the system goes down once `finish` is over.
    pub main_status: Option<i32>,
    /// Waiting for the cgroup to be empty, and what comes next.
    pub leftovers: Option<Leftovers>,
    /// The cgroup was found empty and nothing was started in it since:
    /// no need to look again (a look costs the kernel a file read).
    pub cgroup_empty: bool,
    /// The whole cgroup got SIGKILL since it was made: nothing may start
    /// in it again before it is made anew.
    pub cgroup_killed: bool,
}

impl Service {
    pub fn new(name: Name, now: Millis) -> Service {
        Service {
            name,
            state: State::Down,
            running: None,
            pid: 0,
            wstatus: 0,
            changed_at: now,
            run_started: now,
            timer: Timer::None,
            ready: None,
            log_pipe: None,
            logger: None,
            log_users: 0,
            seen: 0,
            forget: false,
            start_after_scan: false,
            log_warned: None,
            walked: 0,
            restarts: 0,
            oom_kills: 0,
            oom_counted: 0,
            reason: None,
            restart_requested: false,
            main_status: None,
            leftovers: None,
            cgroup_empty: false,
            cgroup_killed: false,
        }
    }

    /// The pid shown to clients: the `run` process only.
    pub fn run_pid(&self) -> Pid {
        if self.running == Some(Script::Run) {
            self.pid
        } else {
            0
        }
    }

    /// A script runs, or what one left in the cgroup is being stopped.
    pub fn busy(&self) -> bool {
        self.running.is_some() || self.leftovers.is_some()
    }

    /// Down for good or for now: nothing runs and nothing is pending.
    pub fn is_stopped(&self) -> bool {
        matches!(self.state, State::Down | State::Fatal) && !self.busy()
    }
}
