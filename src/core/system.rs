//! The whole system (SPEC sections 6 and 8): `SYS/setup` at boot, then
//! the scan; a shutdown or reboot: `SYS/finish`, then every service,
//! loggers last; and the one rule by which a service ends the system, the
//! main service.

use crate::proto::State;

use super::machine::{Event, temporary};
use super::{
    End, Millis, Os, Phase, SPAWN_RETRY_MS, STOP_TIMEOUT_MS, SYS, SYS_TIMEOUT_MS, Script, Spawn,
    Supervisor, SysScript, scan,
};

impl Supervisor {
    /// First start: `SYS/setup` if there is one, else straight to the scan.
    /// A `SYS/setup` that could not be started for now (no process, no
    /// memory) is tried again after `SPAWN_RETRY_MS` (DELAY), as the C
    /// nitro does: nothing starts before it ran.
    pub fn boot(&mut self, os: &mut dyn Os, now: Millis) {
        if os.exists(SYS, b"setup") {
            let (pid, state, deadline) = match os.spawn(&Spawn::sys(Script::Setup, &[])) {
                Ok(pid) => (pid, State::Setup, None),
                Err(error) if temporary(error) => {
                    os.warn(format_args!("SYS/setup: {}, trying again", error));
                    (0, State::Delay, Some(now.saturating_add(SPAWN_RETRY_MS)))
                }
                Err(error) => {
                    os.warn(format_args!("SYS/setup: {}", error));
                    self.start_all(os, true, now);
                    return;
                }
            };
            self.sys = Some(SysScript {
                pid,
                script: Script::Setup,
                deadline,
                started: now,
            });
            os.notify(SYS, state);
            return;
        }
        self.start_all(os, true, now);
    }

    /// Everything in the directory, as a scan finds it. Without
    /// `SYS/setup` the global logger comes first (`logger_first`),
    /// whatever its `down` file says, as in the C nitro; after it, a
    /// service it made DOWN stays down, `LOG` as any other.
    fn start_all(&mut self, os: &mut dyn Os, logger_first: bool, now: Millis) {
        self.phase = Phase::Running;
        if logger_first && let Some(i) = self.lookup(os, scan::GLOBAL_LOGGER, true, now) {
            self.step(os, i, Event::WantUp, now);
        }
        self.rescan(os, now);
    }

    /// Starts the system shutdown (or changes what happens at its end):
    /// `SYS/finish`, then every service.
    pub fn shutdown(&mut self, os: &mut dyn Os, end: End, now: Millis) {
        self.end = end;
        if matches!(self.phase, Phase::SysFinish | Phase::Stopping) {
            return;
        }
        // A main service whose `run` ended on its own, its `finish` still
        // running, ended the system first: its status stays nitro's.
        if self.exit_status.is_none() {
            let ended = self.services().find_map(|(_, s)| s.main_status);
            self.exit_status = ended;
        }
        os.warn(format_args!("{}: stopping all services", end.word()));
        if self.sys.is_some_and(|sys| sys.pid == 0) {
            // SYS/setup waited to be tried again: it never runs.
            self.sys = None;
            os.notify(SYS, State::Down);
        }
        if let Some(sys) = &mut self.sys {
            // SYS/setup is cut short and stopped like a service; the
            // shutdown goes on once it is gone.
            os.kill(sys.pid, libc::SIGTERM);
            os.kill(sys.pid, libc::SIGCONT);
            sys.deadline = Some(now.saturating_add(STOP_TIMEOUT_MS));
            self.phase = Phase::SysFinish;
            os.notify(SYS, State::Shutdown);
            return;
        }
        self.go_down(os, now);
    }

    /// `SYS/finish` if there is one, then every service.
    fn go_down(&mut self, os: &mut dyn Os, now: Millis) {
        self.enter_stopping();
        if os.exists(SYS, b"finish") {
            let end = self.end.word().as_bytes();
            // As a service's `finish` (the C nitro's too): stdin from
            // /dev/null, stdout to the global log while `LOG` runs; the
            // console is `SYS/setup`'s only.
            let args: [&[u8]; 3] = [b"0", b"0", end];
            let spawn = Spawn {
                stdin: None,
                stdout: self.global_log(),
                controlling_tty: false,
                ..Spawn::sys(Script::Finish, &args)
            };
            match os.spawn(&spawn) {
                Ok(pid) => {
                    self.phase = Phase::SysFinish;
                    self.sys = Some(SysScript {
                        pid,
                        script: Script::Finish,
                        deadline: Some(now.saturating_add(SYS_TIMEOUT_MS)),
                        started: now,
                    });
                    os.notify(SYS, State::Shutdown);
                    return;
                }
                Err(error) => os.warn(format_args!("SYS/finish: {}", error)),
            }
        }
        self.stop_step(os, now);
    }

    /// `SYS/setup` or `SYS/finish` ended.
    pub(super) fn sys_exited(&mut self, os: &mut dyn Os, wstatus: i32, now: Millis) {
        let Some(sys) = self.sys.take() else {
            return;
        };
        os.notify(SYS, State::Down);
        match (self.phase, sys.script) {
            (Phase::Boot, _) => {
                os.warn(format_args!(
                    "SYS/setup finished with wait status {}",
                    wstatus
                ));
                self.start_all(os, false, now);
            }
            (Phase::SysFinish, Script::Setup) => self.go_down(os, now),
            (Phase::SysFinish, _) => {
                self.enter_stopping();
                self.stop_step(os, now);
            }
            (Phase::Running | Phase::Stopping, _) => {}
        }
    }

    /// Kills a SYS script whose time is up, or tries `SYS/setup` again.
    pub(super) fn sys_timer(&mut self, os: &mut dyn Os, now: Millis) {
        let Some(sys) = &mut self.sys else {
            return;
        };
        if sys.pid == 0 && sys.deadline.is_some_and(|d| d <= now) {
            self.sys = None;
            self.boot(os, now);
            return;
        }
        if sys.deadline.is_some_and(|d| d <= now) {
            sys.deadline = None;
            os.warn(format_args!(
                "SYS/{} takes too long, killing it",
                sys.script.file()
            ));
            os.kill(sys.pid, libc::SIGKILL);
        }
    }

    /// A main service ended (its `run` on its own, or FATAL): its status
    /// becomes nitro's, and the system goes down; the first main service
    /// to end decides.
    pub(super) fn main_ended(&mut self, os: &mut dyn Os, status: i32, now: Millis) {
        if self.exit_status.is_none() && self.starting_allowed() {
            self.exit_status = Some(status);
            self.shutdown(os, End::Shutdown, now);
        }
    }

    fn enter_stopping(&mut self) {
        self.phase = Phase::Stopping;
        self.stop_swept = false;
    }

    /// Advances the shutdown: ordinary services first, loggers once
    /// nothing else is left.
    pub(super) fn stop_step(&mut self, os: &mut dyn Os, now: Millis) {
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
        for i in 0..self.table.capacity() {
            let Some(service) = self.table.get(i) else {
                continue;
            };
            let stopping = matches!(service.state, State::Down | State::Fatal | State::Shutdown);
            // A logger with nothing running (DELAY) cannot lose data: it
            // goes DOWN at once, since it will not be started again.
            let holds_back = others_left && self.reads_log(i) && service.running.is_some();
            if !stopping && !holds_back {
                self.step(os, i, Event::WantDown, now);
            }
        }
    }

    /// Whether the shutdown is complete: every service stopped.
    pub fn stopped(&self) -> bool {
        self.phase == Phase::Stopping && self.services().all(|(_, s)| s.is_stopped())
    }
}
