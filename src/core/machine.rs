//! The state machine of SPEC section 3: every transition of a service goes
//! through the functions here.

use crate::proto::{self, Failure, Program, Reason, State};
use crate::sys::Errno;

use super::{
    FINISH_TIMEOUT_MS, Leftovers, Millis, Os, Proc, Prog, READY_TIMEOUT_MS, RESPAWN_DELAY_MS,
    SPAWN_RETRY_MS, STOP_TIMEOUT_MS, Spawn, SpawnError, Supervisor, Timer,
};

/// Between two SIGKILLs to a cgroup that is not empty yet (the kernel
/// may lack `cgroup.kill`, and a process may fork while killed one by
/// one).
const KILL_AGAIN_MS: Millis = 1000;

/// How a `run` becomes UP (SPEC section 2, `notification-fd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    /// By itself, `READY_TIMEOUT_MS` after it started.
    Timer,
    /// Only through `nitroctl ready`.
    Request,
    /// By a newline on this descriptor of a pipe.
    Pipe(i32),
}

/// exec errors that may go away by themselves: DELAY, not FATAL.
fn temporary_exec_error(errno: i32) -> bool {
    matches!(
        errno,
        libc::EAGAIN | libc::EIO | libc::EMFILE | libc::ENOMEM | libc::ETXTBSY
    )
}

/// REASON for a program of a service (only `setup` and `run` are started
/// on the way up).
fn reason(prog: Prog, failure: Failure, value: i32) -> Reason {
    let program = match prog {
        Prog::Setup => Program::Setup,
        Prog::Run | Prog::Finish | Prog::Final => Program::Run,
    };
    Reason {
        program,
        failure,
        value,
    }
}

/// Writes a decimal number into `buf`, returning the digits.
fn decimal(buf: &mut [u8; 12], value: i64) -> &[u8] {
    let mut n = value.unsigned_abs();
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buf[at] = b'-';
    }
    &buf[at..]
}

/// Parses the digits of a file the way the C nitro does: other bytes are
/// skipped; `None` when there is no digit at all.
pub(super) fn digits(bytes: &[u8]) -> Option<u64> {
    let mut value: Option<u64> = None;
    for &b in bytes.iter().filter(|b| b.is_ascii_digit()) {
        value = Some(
            value
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add((b - b'0') as u64),
        );
    }
    value
}

impl Supervisor {
    pub(super) fn set_state(&mut self, os: &mut dyn Os, i: usize, state: State, now: Millis) {
        if self.sv(i).state == state {
            return;
        }
        self.tracking(i, |sup| sup.sv_mut(i).state = state);
        let service = self.sv_mut(i);
        // UPTIME counts from the last start or stop, not from readiness or
        // the stop request.
        if !matches!(state, State::Up | State::Shutdown | State::Restart) {
            service.changed_at = now;
        }
        os.notify(service.name.as_bytes(), state);
    }

    fn set_timer(&mut self, i: usize, timer: Timer, at: Millis) {
        self.sv_mut(i).timer = timer;
        if timer == Timer::None {
            self.deadlines.clear(i);
        } else {
            self.deadlines.set(i, at);
        }
    }

    /// The program now running (`Proc::None` and 0 for none).
    fn set_proc(&mut self, i: usize, proc: Proc, pid: super::Pid) {
        let old = self.sv(i).pid;
        if old > 0 {
            self.pids.remove(super::index::hash_pid(old), i);
        }
        if pid > 0 {
            self.pids.insert(super::index::hash_pid(pid), i);
        }
        self.tracking(i, |sup| {
            let service = sup.sv_mut(i);
            service.proc = proc;
            service.pid = pid;
        });
    }

    /// want up: `up`, a new service found by a scan, a logger needed.
    pub(super) fn want_up(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        if !self.starting_allowed() {
            return;
        }
        match self.sv(i).state {
            State::Down | State::Fatal | State::Delay => self.start(os, i, now),
            State::Shutdown => {
                self.sv_mut(i).restart_requested = true;
                self.set_state(os, i, State::Restart, now);
            }
            _ => {}
        }
    }

    /// want down: `down`, gone from disk, shutdown.
    pub(super) fn want_down(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        // A stop asked for while a main service's `finish` runs takes over:
        // the run that ended no longer ends the system.
        self.sv_mut(i).main_status = None;
        match self.sv(i).state {
            State::Setup | State::Starting | State::Up | State::Shutdown | State::Restart => {
                self.stop(os, i, State::Shutdown, now)
            }
            State::Oneshot => {
                self.set_state(os, i, State::Shutdown, now);
                self.run_finish(os, i, 0, 0, now);
            }
            State::Fatal | State::Delay | State::Down => {
                if self.sv(i).proc == Proc::None && self.sv(i).leftovers.is_none() {
                    self.set_timer(i, Timer::None, 0);
                }
                self.set_state(os, i, State::Down, now);
                self.maybe_forget(os, i);
            }
        }
    }

    /// want restart.
    pub(super) fn want_restart(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        if !self.starting_allowed() {
            return;
        }
        self.sv_mut(i).main_status = None;
        match self.sv(i).state {
            State::Setup | State::Starting | State::Up | State::Restart | State::Shutdown => {
                self.stop(os, i, State::Restart, now)
            }
            State::Oneshot => {
                self.sv_mut(i).restart_requested = true;
                self.set_state(os, i, State::Restart, now);
                self.run_finish(os, i, 0, 0, now);
            }
            State::Down | State::Fatal | State::Delay => self.start(os, i, now),
        }
    }

    /// Signals whatever runs and moves to SHUTDOWN or RESTART; SIGKILL
    /// follows after the stop timeout. A running `finish` is left alone.
    fn stop(&mut self, os: &mut dyn Os, i: usize, target: State, now: Millis) {
        self.sv_mut(i).restart_requested = target == State::Restart;
        let (proc, pid) = (self.sv(i).proc, self.sv(i).pid);
        match proc {
            Proc::Setup => {
                os.kill(pid, libc::SIGTERM);
                os.kill(pid, libc::SIGCONT);
            }
            Proc::Run => {
                let signal = self.down_signal(os, i);
                os.kill(pid, signal);
                os.kill(pid, libc::SIGCONT);
            }
            Proc::Finish | Proc::None => {}
        }
        if matches!(proc, Proc::Setup | Proc::Run) && self.sv(i).timer != Timer::Kill {
            let timeout = self.timeout(os, i, b"timeout-kill", STOP_TIMEOUT_MS);
            self.set_timer(i, Timer::Kill, now.saturating_add(timeout));
        }
        self.set_state(os, i, target, now);
        if proc == Proc::None && self.sv(i).leftovers.is_none() {
            // Nothing to wait for (e.g. setup already gone).
            self.finished(os, i, now);
        }
    }

    /// The signal of the `down-signal` file, SIGTERM by default.
    fn down_signal(&self, os: &mut dyn Os, i: usize) -> i32 {
        let mut buf = [0u8; 1];
        match os.read_file(self.sv(i).name.dir(), b"down-signal", &mut buf) {
            Some(1) => proto::signal_for_letter(buf[0]).unwrap_or_else(|| {
                os.warn(format_args!(
                    "{}: unknown down-signal {:?}, using SIGTERM",
                    self.sv(i).name,
                    buf[0] as char
                ));
                libc::SIGTERM
            }),
            _ => libc::SIGTERM,
        }
    }

    /// A per-service timeout file in milliseconds, or `default`.
    fn timeout(&self, os: &mut dyn Os, i: usize, file: &[u8], default: Millis) -> Millis {
        let mut buf = [0u8; 24];
        let Some(n) = os.read_file(self.sv(i).name.dir(), file, &mut buf) else {
            return default;
        };
        let text = buf[..n].trim_ascii();
        match core::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<Millis>().ok())
        {
            Some(ms) => ms,
            None => {
                os.warn(format_args!(
                    "{}: bad {}, using {} ms",
                    self.sv(i).name,
                    core::str::from_utf8(file).unwrap_or("timeout"),
                    default
                ));
                default
            }
        }
    }

    /// start: bring up the logger chain, then `setup` or `run`.
    pub(super) fn start(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        self.set_timer(i, Timer::None, 0);
        self.resolve_logger(os, i, now);
        // Loggers first, walked iteratively: a chain cannot recurse and a
        // loop ends at the first service already coming up. A stopping
        // logger starts again once stopped (want up), and then brings up
        // its own logger.
        let mut next = self.sv(i).logger;
        for _ in 0..self.slots.len() {
            let Some(l) = next.filter(|&l| l != i) else {
                break;
            };
            match self.sv(l).state {
                State::Down | State::Fatal | State::Delay => {
                    self.resolve_logger(os, l, now);
                    self.start_one(os, l, now);
                    next = self.sv(l).logger;
                }
                State::Shutdown => {
                    self.want_up(os, l, now);
                    break;
                }
                _ => break,
            }
        }
        self.start_one(os, i, now);
    }

    fn start_one(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        self.set_timer(i, Timer::None, 0);
        if self.sv(i).name.as_bytes() == super::scan::GLOBAL_LOGGER {
            // The global logger reads its own pipe, which every service
            // without a logger writes into while it runs.
            self.ensure_log_pipe(os, i);
        }
        if !os.exists(self.sv(i).name.dir(), b"setup") {
            self.launch(os, i, now);
            return;
        }
        match self.spawn(os, i, Prog::Setup, &[], None) {
            Ok(pid) => {
                self.set_proc(i, Proc::Setup, pid);
                self.set_state(os, i, State::Setup, now);
            }
            Err(error) => self.spawn_failed(os, i, Prog::Setup, error, now),
        }
    }

    /// launch: `run`, or ONESHOT without one.
    fn launch(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        self.sv_mut(i).reason = None;
        let dir = self.sv(i).name.dir();
        if !os.exists(dir, b"") {
            os.warn(format_args!(
                "{}: service directory is gone",
                self.sv(i).name
            ));
            self.sv_mut(i).reason = Some(reason(Prog::Run, Failure::Gone, 0));
            self.fatal(os, i, now);
            return;
        }
        if !os.exists(dir, b"run") {
            self.set_state(os, i, State::Oneshot, now);
            return;
        }
        let readiness = self.readiness(os, i);
        let notify_fd = match readiness {
            Readiness::Pipe(fd) => Some(fd),
            Readiness::Timer | Readiness::Request => None,
        };
        let pipe = match notify_fd {
            Some(_) => match os.pipe() {
                Ok(pipe) => Some(pipe),
                Err(errno) => {
                    os.warn(format_args!(
                        "{}: cannot create readiness pipe: {}",
                        self.sv(i).name,
                        Errno(errno)
                    ));
                    self.sv_mut(i).reason = Some(reason(Prog::Run, Failure::Spawn, errno));
                    self.delay(os, i, SPAWN_RETRY_MS, now);
                    return;
                }
            },
            None => None,
        };
        let notify = notify_fd.zip(pipe).map(|(n, (_, write))| (n, write));
        let result = self.spawn(os, i, Prog::Run, &[], notify);
        if let Some((read, write)) = pipe {
            os.close(write);
            if result.is_err() {
                os.close(read);
            }
        }
        match result {
            Ok(pid) => {
                self.set_proc(i, Proc::Run, pid);
                let token = self.new_ready_token(i);
                let service = self.sv_mut(i);
                service.run_started = now;
                service.ready_fd = pipe.map(|(read, _)| read);
                service.ready_token = token;
                if let Some((read, _)) = pipe {
                    os.watch(read, token);
                }
                self.set_state(os, i, State::Starting, now);
                if readiness == Readiness::Timer {
                    self.set_timer(i, Timer::Ready, now.saturating_add(READY_TIMEOUT_MS));
                }
            }
            Err(error) => self.spawn_failed(os, i, Prog::Run, error, now),
        }
    }

    /// How `run` tells it is ready, from `notification-fd`: a file that is
    /// absent, empty or unreadable means the timer (as in the C nitro).
    fn readiness(&self, os: &mut dyn Os, i: usize) -> Readiness {
        let mut buf = [0u8; 32];
        let n = match os.read_file(self.sv(i).name.dir(), b"notification-fd", &mut buf) {
            Some(n) if n > 0 => n,
            _ => return Readiness::Timer,
        };
        let fd = digits(&buf[..n]).unwrap_or(0);
        if fd == 0 {
            return Readiness::Request;
        }
        if fd < 3 || fd >= self.config.fd_limit.max(0) as u64 {
            os.warn(format_args!(
                "{}: unusable notification-fd {}, waiting for nitroctl ready",
                self.sv(i).name,
                fd
            ));
            return Readiness::Request;
        }
        Readiness::Pipe(fd as i32)
    }

    fn spawn_failed(
        &mut self,
        os: &mut dyn Os,
        i: usize,
        prog: Prog,
        error: SpawnError,
        now: Millis,
    ) {
        let name = self.sv(i).name;
        let what = prog.file();
        self.sv_mut(i).reason = Some(match error {
            SpawnError::Fork(errno) => reason(prog, Failure::Spawn, errno),
            SpawnError::Exec(errno) => reason(prog, Failure::Exec, errno),
        });
        match error {
            SpawnError::Fork(errno) => {
                os.warn(format_args!(
                    "{}: cannot start {}: {}",
                    name,
                    what,
                    Errno(errno)
                ));
                self.delay(os, i, SPAWN_RETRY_MS, now);
            }
            SpawnError::Exec(errno) if temporary_exec_error(errno) => {
                os.warn(format_args!(
                    "{}: cannot exec {}: {}",
                    name,
                    what,
                    Errno(errno)
                ));
                self.delay(os, i, SPAWN_RETRY_MS, now);
            }
            SpawnError::Exec(errno) => {
                os.warn(format_args!(
                    "{}: cannot exec {}: {}",
                    name,
                    what,
                    Errno(errno)
                ));
                self.set_state(os, i, State::Fatal, now);
                if prog == Prog::Run {
                    self.sv_mut(i).wstatus = -1;
                    self.run_finish(os, i, 111, 0, now);
                }
                self.fatal(os, i, now);
            }
        }
    }

    /// DELAY: start again after `ms`.
    fn delay(&mut self, os: &mut dyn Os, i: usize, ms: Millis, now: Millis) {
        self.set_state(os, i, State::Delay, now);
        self.set_timer(i, Timer::Respawn, now.saturating_add(ms));
    }

    /// Spawns a program of service `i` with its arguments and fds.
    fn spawn(
        &mut self,
        os: &mut dyn Os,
        i: usize,
        prog: Prog,
        extra: &[&[u8]],
        notify: Option<(i32, super::Fd)>,
    ) -> Result<super::Pid, SpawnError> {
        let (stdin, stdout, stderr_to_stdout) = self.stdio(i, prog);
        let service = self.sv(i);
        let mut args: [&[u8]; 3] = [&[]; 3];
        let mut argc = 0;
        for arg in extra.iter().copied().chain(service.name.param()) {
            args[argc] = arg;
            argc += 1;
        }
        os.spawn(&Spawn {
            dir: service.name.dir(),
            prog,
            args: &args[..argc],
            stdin,
            stdout,
            stderr_to_stdout,
            notify,
            controlling_tty: false,
            cgroup: Some(service.name.as_bytes()),
        })
    }

    /// `finish` with its two status arguments, or straight to its end.
    fn run_finish(&mut self, os: &mut dyn Os, i: usize, status: i64, signal: i64, now: Millis) {
        self.close_ready_fd(os, i);
        self.set_proc(i, Proc::None, 0);
        if self.stop_leftovers(os, i, Leftovers::Finish { status, signal }, now) {
            return;
        }
        if os.exists(self.sv(i).name.dir(), b"finish") {
            let mut status_buf = [0u8; 12];
            let mut signal_buf = [0u8; 12];
            let args = [
                decimal(&mut status_buf, status),
                decimal(&mut signal_buf, signal),
            ];
            match self.spawn(os, i, Prog::Finish, &args, None) {
                Ok(pid) => {
                    self.set_proc(i, Proc::Finish, pid);
                    let timeout = self.timeout(os, i, b"timeout-finish", FINISH_TIMEOUT_MS);
                    self.set_timer(i, Timer::KillFinish, now.saturating_add(timeout));
                    return;
                }
                Err(error) => {
                    let name = self.sv(i).name;
                    os.warn(format_args!("{}: finish: {}", name, error));
                }
            }
        }
        self.finished(os, i, now);
    }

    /// A process of service `i` ended with `wstatus`.
    pub(super) fn process_exited(&mut self, os: &mut dyn Os, i: usize, wstatus: i32, now: Millis) {
        let proc = self.sv(i).proc;
        self.set_proc(i, Proc::None, 0);
        match proc {
            Proc::Setup => {
                self.set_timer(i, Timer::None, 0);
                // A stop was asked for, or the system goes down: `run`
                // never starts.
                if matches!(self.sv(i).state, State::Shutdown | State::Restart)
                    || !self.starting_allowed()
                {
                    self.finished(os, i, now);
                } else if libc::WIFEXITED(wstatus) && libc::WEXITSTATUS(wstatus) == 0 {
                    self.launch(os, i, now);
                } else if libc::WIFEXITED(wstatus) && libc::WEXITSTATUS(wstatus) == 111 {
                    self.sv_mut(i).reason = Some(reason(Prog::Setup, Failure::Status, wstatus));
                    self.fatal(os, i, now);
                } else {
                    self.sv_mut(i).reason = Some(reason(Prog::Setup, Failure::Status, wstatus));
                    self.delay(os, i, RESPAWN_DELAY_MS, now);
                }
            }
            Proc::Run => {
                self.set_timer(i, Timer::None, 0);
                self.sv_mut(i).wstatus = wstatus;
                let on_its_own = matches!(self.sv(i).state, State::Starting | State::Up);
                if on_its_own && self.is_main(os, i) {
                    self.sv_mut(i).main_status = Some(if libc::WIFSIGNALED(wstatus) {
                        128 + libc::WTERMSIG(wstatus)
                    } else {
                        libc::WEXITSTATUS(wstatus)
                    });
                }
                if self.sv(i).state == State::Up {
                    self.set_state(os, i, State::Restart, now);
                }
                let (status, signal) = if libc::WIFSIGNALED(wstatus) {
                    (-1, libc::WTERMSIG(wstatus) as i64)
                } else {
                    (libc::WEXITSTATUS(wstatus) as i64, 0)
                };
                self.run_finish(os, i, status, signal, now);
            }
            Proc::Finish => {
                self.set_timer(i, Timer::None, 0);
                self.finished(os, i, now);
            }
            Proc::None => {}
        }
    }

    /// The end of `finish` (or of the stop, when there is none).
    fn finished(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        if self.stop_leftovers(os, i, Leftovers::Finished, now) {
            return;
        }
        // Taken in every case: only the run that just ended may end the
        // system, never a later one.
        let main_status = self.sv_mut(i).main_status.take();
        match self.sv(i).state {
            State::Restart | State::Starting | State::Up => {
                self.set_state(os, i, State::Down, now);
                if let Some(status) = main_status {
                    // A main service is not restarted: the system ends with it.
                    self.main_ended(os, status, now);
                    return;
                }
                if !self.starting_allowed() {
                    return;
                }
                // A requested restart starts at once; only a `run` that
                // ended by itself counts as a restart and may be delayed.
                if std::mem::take(&mut self.sv_mut(i).restart_requested) {
                    self.start(os, i, now);
                    return;
                }
                self.sv_mut(i).restarts = self.sv(i).restarts.wrapping_add(1);
                if now.saturating_sub(self.sv(i).run_started) < RESPAWN_DELAY_MS {
                    self.delay(os, i, RESPAWN_DELAY_MS, now);
                } else {
                    self.start(os, i, now);
                }
            }
            State::Shutdown | State::Oneshot | State::Setup | State::Delay | State::Down => {
                self.set_state(os, i, State::Down, now);
                self.maybe_forget(os, i);
            }
            State::Fatal => {
                if let Some(status) = main_status {
                    self.main_ended(os, status, now);
                }
            }
        }
    }

    /// FATAL; a main service takes the system down with status 111,
    /// once its `finish` (if running) is over.
    fn fatal(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        self.set_state(os, i, State::Fatal, now);
        if self.is_main(os, i) {
            if self.sv(i).proc == Proc::Finish {
                self.sv_mut(i).main_status = Some(111);
            } else {
                self.main_ended(os, 111, now);
            }
        }
    }

    /// Whether service `i` is a main service (a `main` file).
    fn is_main(&self, os: &mut dyn Os, i: usize) -> bool {
        os.exists(self.sv(i).name.dir(), b"main")
    }

    /// A service gone from disk is forgotten once it is DOWN.
    fn maybe_forget(&mut self, os: &mut dyn Os, i: usize) {
        if self.forgettable(i) {
            self.forget(os, i);
        }
    }

    /// A STARTING service signalled readiness.
    pub(super) fn became_ready(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        self.close_ready_fd(os, i);
        // Only a live `run` can be ready (not its `finish`).
        if self.sv(i).state == State::Starting && self.sv(i).proc == Proc::Run {
            self.set_timer(i, Timer::None, 0);
            self.set_state(os, i, State::Up, now);
        }
    }

    pub(super) fn timer_fired(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        let timer = self.sv(i).timer;
        self.set_timer(i, Timer::None, 0);
        match timer {
            Timer::None => {}
            Timer::Ready => self.became_ready(os, i, now),
            Timer::Respawn => {
                if self.sv(i).state == State::Delay && self.starting_allowed() {
                    self.start(os, i, now);
                }
            }
            Timer::Kill => {
                let pid = self.sv(i).pid;
                if pid > 0 {
                    os.kill(pid, libc::SIGKILL);
                }
                // Only `setup` or `run` and what they started are in the
                // cgroup now: `finish` starts once it is empty.
                os.cgroup_kill(self.sv(i).name.as_bytes());
                if self.sv(i).leftovers.is_some() {
                    self.set_timer(i, Timer::Kill, now.saturating_add(KILL_AGAIN_MS));
                }
            }
            Timer::KillFinish => {
                let pid = self.sv(i).pid;
                if pid > 0 {
                    os.kill(pid, libc::SIGKILL);
                }
            }
        }
    }

    /// Whatever is left in the cgroup of service `i` once its program
    /// ended gets SIGTERM, and SIGKILL after `timeout-kill`; `then`
    /// happens once the cgroup is empty (`on_cgroup_change`). False
    /// when it is empty already (or there is no cgroup).
    fn stop_leftovers(&mut self, os: &mut dyn Os, i: usize, then: Leftovers, now: Millis) -> bool {
        let name = self.sv(i).name;
        if !os.cgroup_populated(name.as_bytes()) {
            return false;
        }
        os.cgroup_signal(name.as_bytes(), libc::SIGTERM);
        os.cgroup_signal(name.as_bytes(), libc::SIGCONT);
        self.tracking(i, |sup| sup.sv_mut(i).leftovers = Some(then));
        let timeout = self.timeout(os, i, b"timeout-kill", STOP_TIMEOUT_MS);
        self.set_timer(i, Timer::Kill, now.saturating_add(timeout));
        true
    }

    /// Some cgroup may have become empty: the services waiting for theirs
    /// go on.
    pub fn on_cgroup_change(&mut self, os: &mut dyn Os, now: Millis) {
        for i in 0..self.slots.len() {
            let Some(then) = self.slots[i].as_ref().and_then(|s| s.leftovers) else {
                continue;
            };
            if os.cgroup_populated(self.sv(i).name.as_bytes()) {
                continue;
            }
            self.tracking(i, |sup| sup.sv_mut(i).leftovers = None);
            self.set_timer(i, Timer::None, 0);
            match then {
                Leftovers::Finish { status, signal } => self.run_finish(os, i, status, signal, now),
                Leftovers::Finished => self.finished(os, i, now),
            }
        }
        self.stop_step(os, now);
    }
}
