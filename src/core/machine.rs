//! The state machine of SPEC section 3. Everything that happens to a
//! service is an [`Event`], and [`Supervisor::step`] is the transition
//! table: one match on the event and the service's state. The helpers
//! below it are the side effects the table names (start, launch, stop,
//! run `finish`), none of which decides a transition of its own.

use crate::proto::{self, Failure, Program, Reason, State};

use super::{
    FINISH_TIMEOUT_MS, Leftovers, Millis, Os, READY_TIMEOUT_MS, RESPAWN_DELAY_MS, SPAWN_RETRY_MS,
    STOP_TIMEOUT_MS, Script, Spawn, SpawnError, Supervisor, Timer,
};

/// Everything that happens to a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `up`, a scan finding a new service, a writer needing its logger.
    WantUp,
    /// `down`, gone from disk, the system going down.
    WantDown,
    /// `restart`.
    WantRestart,
    /// The script running (`setup`, `run` or `finish`) exited with this
    /// wait status.
    Exited(i32),
    /// `run` is ready: a newline on its pipe, `nitroctl ready`, the timer.
    Ready,
    /// The service's deadline passed (what it means is in `timer`).
    Deadline,
    /// The end of a stop or of an exit: `finish` is over, or there was
    /// none to run.
    Over,
    /// The service's cgroup may be empty now (what its scripts left
    /// behind was being stopped).
    Emptied,
}

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

/// Failures that may go away by themselves: the process could not be
/// made, or exec failed for a lack of resources (SPEC section 3): DELAY
/// and try again, not FATAL.
pub(super) fn temporary(error: SpawnError) -> bool {
    match error {
        SpawnError::Fork(_) => true,
        SpawnError::Exec(errno) => matches!(
            errno,
            libc::EAGAIN | libc::EIO | libc::EMFILE | libc::ENOMEM | libc::ETXTBSY
        ),
    }
}

/// REASON for a script of a service (only `setup` and `run` are started
/// on the way up).
fn reason(script: Script, failure: Failure, value: i32) -> Reason {
    let program = match script {
        Script::Setup => Program::Setup,
        Script::Run | Script::Finish | Script::Final => Program::Run,
    };
    Reason {
        program,
        failure,
        value,
    }
}

/// An exit status as `finish` gets it: (status or -1, signal or 0).
fn finish_args(wstatus: i32) -> (i64, i64) {
    if libc::WIFSIGNALED(wstatus) {
        (-1, libc::WTERMSIG(wstatus) as i64)
    } else {
        (libc::WEXITSTATUS(wstatus) as i64, 0)
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
    /// The transition table: what `event` does to service `i`.
    pub(super) fn step(&mut self, os: &mut dyn Os, i: usize, event: Event, now: Millis) {
        use State::*;
        let state = self.table[i].state;
        match event {
            Event::WantUp => match state {
                _ if !self.starting_allowed() => {}
                Fatal if self.table[i].busy() => self.restart_when_over(os, i, now),
                Down | Fatal | Delay => self.start(os, i, now),
                Shutdown => {
                    self.table[i].restart_requested = true;
                    self.set_state(os, i, Restart, now);
                }
                Setup | Starting | Up | Oneshot | Restart => {}
            },
            Event::WantDown => {
                // Asked for while a main service's `finish` runs, a stop
                // takes over: the run that ended no longer ends the system.
                self.table[i].main_status = None;
                match state {
                    Setup | Starting | Up | Shutdown | Restart => self.stop(os, i, Shutdown, now),
                    Oneshot => {
                        self.set_state(os, i, Shutdown, now);
                        self.run_finish(os, i, 0, 0, now);
                    }
                    // `run` could not be executed, and its `finish` runs.
                    Fatal if self.table[i].busy() => self.set_state(os, i, Shutdown, now),
                    Fatal | Delay | Down => {
                        self.table.set_timer(i, Timer::None, 0);
                        self.set_state(os, i, Down, now);
                        self.forget_if_gone(os, i);
                    }
                }
            }
            Event::WantRestart => match state {
                _ if !self.starting_allowed() => {}
                Setup | Starting | Up | Restart | Shutdown => {
                    self.table[i].main_status = None;
                    self.stop(os, i, Restart, now);
                }
                Oneshot => {
                    self.table[i].restart_requested = true;
                    self.set_state(os, i, Restart, now);
                    self.run_finish(os, i, 0, 0, now);
                }
                Fatal if self.table[i].busy() => self.restart_when_over(os, i, now),
                Down | Fatal | Delay => {
                    self.table[i].main_status = None;
                    self.start(os, i, now);
                }
            },
            Event::Exited(wstatus) => {
                let script = self.table[i].running;
                self.set_running(i, None, 0);
                // A stop's deadline stays for what `run` left behind: the
                // SIGKILL comes `timeout-kill` after the down-signal, not
                // after `run` ended.
                if script != Some(Script::Run) || self.table[i].timer != Timer::Kill {
                    self.table.set_timer(i, Timer::None, 0);
                }
                let code = libc::WIFEXITED(wstatus).then(|| libc::WEXITSTATUS(wstatus));
                match (script, state) {
                    // A stop was asked for, or the system goes down: `run`
                    // never starts.
                    (Some(Script::Setup), Shutdown | Restart) => self.step(os, i, Event::Over, now),
                    (Some(Script::Setup), _) if !self.starting_allowed() => {
                        self.step(os, i, Event::Over, now)
                    }
                    (Some(Script::Setup), _) if code == Some(0) => self.launch(os, i, now),
                    (Some(Script::Setup), _) => {
                        self.table[i].reason =
                            Some(reason(Script::Setup, Failure::Status, wstatus));
                        let retry = (code != Some(111)).then_some(RESPAWN_DELAY_MS);
                        self.failed(os, i, retry, now);
                    }
                    (Some(Script::Run), _) => {
                        self.table[i].wstatus = wstatus;
                        // Ended on its own (not asked to stop): a main
                        // service takes the system with it, after `finish`.
                        if matches!(state, Starting | Up) && self.is_main(os, i) {
                            self.table[i].main_status = Some(match code {
                                Some(code) => code,
                                None => 128 + libc::WTERMSIG(wstatus),
                            });
                        }
                        if state == Up {
                            self.set_state(os, i, Restart, now);
                        }
                        let (status, signal) = finish_args(wstatus);
                        self.run_finish(os, i, status, signal, now);
                    }
                    (Some(Script::Finish), _) => self.step(os, i, Event::Over, now),
                    (Some(Script::Final) | None, _) => {}
                }
            }
            Event::Ready => {
                // Only a live `run` can be ready (not its `finish`). Its
                // pipe stays open until it writes a newline or closes it:
                // after `nitroctl ready` or the timer, its own newline
                // must not meet a closed pipe (SIGPIPE would kill it).
                if state == Starting && self.table[i].running == Some(Script::Run) {
                    self.table.set_timer(i, Timer::None, 0);
                    self.set_state(os, i, Up, now);
                }
            }
            Event::Deadline => {
                let timer = self.table[i].timer;
                self.table.set_timer(i, Timer::None, 0);
                match timer {
                    Timer::Ready => self.step(os, i, Event::Ready, now),
                    Timer::Respawn if state == Delay && self.starting_allowed() => {
                        self.start(os, i, now)
                    }
                    Timer::Kill => {
                        // Leftovers whose cgroup got empty unheard (its
                        // watch could not be added) are found by looking.
                        if self.table[i].leftovers.is_some() {
                            self.step(os, i, Event::Emptied, now);
                            if self.table.get(i).is_none_or(|s| s.leftovers.is_none()) {
                                return;
                            }
                        }
                        if self.table[i].pid > 0 {
                            os.kill(self.table[i].pid, libc::SIGKILL);
                        }
                        // Only `setup` or `run` and what they started are
                        // in the cgroup now: `finish` starts once it is
                        // empty.
                        os.cgroup_kill(self.table[i].name.as_bytes());
                        self.table[i].cgroup_killed = true;
                        if self.table[i].leftovers.is_some() {
                            self.table
                                .set_timer(i, Timer::Kill, now.saturating_add(KILL_AGAIN_MS));
                        }
                    }
                    Timer::KillFinish if self.table[i].pid > 0 => {
                        os.kill(self.table[i].pid, libc::SIGKILL)
                    }
                    Timer::None | Timer::Respawn | Timer::KillFinish => {}
                }
            }
            Event::Over => {
                // What the scripts left in the cgroup goes first.
                if self.stop_leftovers(os, i, Leftovers::Over, now) {
                    return;
                }
                // Taken in every case: only the run that just ended may
                // end the system, never a later one.
                let main_status = self.table[i].main_status.take();
                match state {
                    Restart | Starting | Up => {
                        self.set_state(os, i, Down, now);
                        if let Some(status) = main_status {
                            // A main service is not restarted: the system
                            // ends with it.
                            self.main_ended(os, status, now);
                        } else if self.starting_allowed() {
                            self.start_again(os, i, now);
                        }
                    }
                    Shutdown | Oneshot | Setup | Delay | Down => {
                        self.set_state(os, i, Down, now);
                        self.forget_if_gone(os, i);
                    }
                    Fatal => {
                        if let Some(status) = main_status {
                            self.main_ended(os, status, now);
                        }
                    }
                }
            }
            Event::Emptied => {
                let Some(then) = self.table[i].leftovers else {
                    return;
                };
                if self.cgroup_left(os, i) {
                    return;
                }
                self.tracking(i, |sup| sup.table[i].leftovers = None);
                self.table.set_timer(i, Timer::None, 0);
                match then {
                    Leftovers::Finish { status, signal } => {
                        self.run_finish(os, i, status, signal, now)
                    }
                    Leftovers::Over => self.step(os, i, Event::Over, now),
                    Leftovers::Failed(retry) => self.failed(os, i, retry, now),
                }
            }
        }
    }

    /// A start asked for while a FATAL service still finishes (its `run`
    /// could not be executed, and `finish` or what `setup` left is not
    /// over yet): RESTART, and the start follows at once when it is over.
    fn restart_when_over(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        self.table[i].main_status = None;
        self.table[i].restart_requested = true;
        self.set_state(os, i, State::Restart, now);
    }

    /// Whatever is left in the cgroup of service `i` once its script
    /// ended gets SIGTERM, and SIGKILL after `timeout-kill`; `then`
    /// happens once the cgroup is empty (`Event::Emptied`). False when it
    /// is empty already (or there is no cgroup).
    fn stop_leftovers(&mut self, os: &mut dyn Os, i: usize, then: Leftovers, now: Millis) -> bool {
        if !self.cgroup_left(os, i) {
            return false;
        }
        let name = self.table[i].name;
        os.cgroup_signal(name.as_bytes(), libc::SIGTERM);
        os.cgroup_signal(name.as_bytes(), libc::SIGCONT);
        self.tracking(i, |sup| sup.table[i].leftovers = Some(then));
        if self.table[i].timer != Timer::Kill {
            let timeout = self.timeout(os, i, b"timeout-kill", STOP_TIMEOUT_MS);
            self.table
                .set_timer(i, Timer::Kill, now.saturating_add(timeout));
        }
        true
    }

    /// Whether a process is left in the cgroup of service `i`. Once the
    /// system goes down nothing starts there again but a `finish`, so an
    /// empty cgroup is removed at once: the removal is the look.
    fn cgroup_left(&mut self, os: &mut dyn Os, i: usize) -> bool {
        let service = &self.table[i];
        if service.cgroup_empty {
            return false;
        }
        let name = service.name;
        let left = if self.starting_allowed() {
            os.cgroup_populated(name.as_bytes())
        } else {
            os.cgroup_release(name.as_bytes())
        };
        self.table[i].cgroup_empty = !left;
        left
    }

    /// After a stop or an exit: a requested restart at once (not
    /// counted), a `run` that ended on its own after the respawn delay if
    /// it lived less than that.
    fn start_again(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        if core::mem::take(&mut self.table[i].restart_requested) {
            self.start(os, i, now);
            return;
        }
        let service = &mut self.table[i];
        service.restarts = service.restarts.wrapping_add(1);
        if now.saturating_sub(service.run_started) < RESPAWN_DELAY_MS {
            self.delay(os, i, RESPAWN_DELAY_MS, now);
        } else {
            self.start(os, i, now);
        }
    }

    /// Signals whatever runs and moves to SHUTDOWN or RESTART; SIGKILL
    /// follows after the stop timeout. A running `finish` is left alone.
    fn stop(&mut self, os: &mut dyn Os, i: usize, target: State, now: Millis) {
        self.table[i].restart_requested = target == State::Restart;
        let (running, pid) = (self.table[i].running, self.table[i].pid);
        let signal = match running {
            Some(Script::Setup) => Some(libc::SIGTERM),
            Some(Script::Run) => Some(self.down_signal(os, i)),
            Some(Script::Finish | Script::Final) | None => None,
        };
        if let Some(signal) = signal {
            os.kill(pid, signal);
            os.kill(pid, libc::SIGCONT);
            if self.table[i].timer != Timer::Kill {
                let timeout = self.timeout(os, i, b"timeout-kill", STOP_TIMEOUT_MS);
                self.table
                    .set_timer(i, Timer::Kill, now.saturating_add(timeout));
            }
        }
        self.set_state(os, i, target, now);
        if !self.table[i].busy() {
            // Nothing to wait for (e.g. setup already gone).
            self.step(os, i, Event::Over, now);
        }
    }

    /// The signal of the `down-signal` file, SIGTERM by default.
    fn down_signal(&self, os: &mut dyn Os, i: usize) -> i32 {
        let mut buf = [0u8; 1];
        match os.read_file(self.table[i].name.dir(), b"down-signal", &mut buf) {
            Ok(1) => proto::signal_for_letter(buf[0]).unwrap_or_else(|| {
                os.warn(format_args!(
                    "{}: unknown down-signal {:?}, using SIGTERM",
                    self.table[i].name, buf[0] as char
                ));
                libc::SIGTERM
            }),
            Err(errno) if errno != libc::ENOENT => {
                self.unreadable(os, i, b"down-signal", errno, "SIGTERM");
                libc::SIGTERM
            }
            _ => libc::SIGTERM,
        }
    }

    /// One line for a file of service `i` that is there but cannot be
    /// read (no descriptor left, no permission): what is used instead.
    fn unreadable(&self, os: &mut dyn Os, i: usize, file: &[u8], errno: i32, instead: &str) {
        os.warn(format_args!(
            "{}: cannot read {}: {}, using {}",
            self.table[i].name,
            super::Bytes(file),
            super::Errno(errno),
            instead
        ));
    }

    /// A per-service timeout file in milliseconds, or `default`.
    fn timeout(&self, os: &mut dyn Os, i: usize, file: &[u8], default: Millis) -> Millis {
        let mut buf = [0u8; 24];
        let n = match os.read_file(self.table[i].name.dir(), file, &mut buf) {
            Ok(n) => n,
            Err(libc::ENOENT) => return default,
            Err(errno) => {
                self.unreadable(os, i, file, errno, "the default");
                return default;
            }
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
                    self.table[i].name,
                    core::str::from_utf8(file).unwrap_or("timeout"),
                    default
                ));
                default
            }
        }
    }

    /// start: bring up the logger chain, then `setup` or `run`.
    fn start(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        // Loggers first, walked iteratively: a chain cannot recurse and a
        // loop ends at the first service already coming up. A stopping
        // logger starts again once stopped (want up), and then brings up
        // its own logger.
        let walk = self.new_walk();
        self.table[i].walked = walk;
        let mut next = self.table[i].logger;
        // Each logger once: a chain into a loop ends where the loop closes.
        while let Some(l) = next.filter(|&l| self.table[l].walked != walk) {
            self.table[l].walked = walk;
            match self.table[l].state {
                // Still stopping or finishing: it starts when that is over.
                State::Shutdown => {
                    self.step(os, l, Event::WantUp, now);
                    break;
                }
                State::Fatal if self.table[l].busy() => {
                    self.step(os, l, Event::WantUp, now);
                    break;
                }
                State::Down | State::Fatal | State::Delay => {
                    self.start_one(os, l, now);
                    next = self.table[l].logger;
                }
                _ => break,
            }
        }
        self.start_one(os, i, now);
    }

    /// `setup`, or straight to `run` without one.
    fn start_one(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        self.table.set_timer(i, Timer::None, 0);
        let first = if os.missing(self.table[i].name.dir(), b"setup") {
            Script::Run
        } else {
            Script::Setup
        };
        // The pipe it reads (the global logger, which every service
        // without a logger writes into, or a logger with writers) and the
        // one it writes into: one that could not be made before (no
        // descriptor left) is made now, or the start waits for it, so
        // that no line goes to the console and no logger reads nothing.
        let reads =
            self.table[i].name.as_bytes() == super::scan::GLOBAL_LOGGER || self.is_logger(i);
        for l in [reads.then_some(i), self.table[i].logger]
            .into_iter()
            .flatten()
        {
            if let Err(errno) = self.ensure_log_pipe(os, l) {
                self.spawn_failed(os, i, first, SpawnError::Fork(errno), now);
                return;
            }
        }
        if first == Script::Run {
            self.launch(os, i, now);
            return;
        }
        match self.spawn(os, i, Script::Setup, &[], None) {
            Ok(pid) => {
                self.set_running(i, Some(Script::Setup), pid);
                self.set_state(os, i, State::Setup, now);
            }
            Err(error) => self.spawn_failed(os, i, Script::Setup, error, now),
        }
    }

    /// launch: `run`, or ONESHOT without one.
    fn launch(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        let dir = self.table[i].name.dir();
        if os.missing(dir, b"") {
            os.warn(format_args!(
                "{}: service directory is gone",
                self.table[i].name
            ));
            self.table[i].reason = Some(reason(Script::Run, Failure::Gone, 0));
            self.table[i].wstatus = -1;
            self.failed(os, i, None, now);
            return;
        }
        if os.missing(dir, b"run") {
            self.table[i].reason = None;
            self.set_state(os, i, State::Oneshot, now);
            return;
        }
        let readiness = match self.readiness(os, i) {
            Ok(readiness) => readiness,
            Err(errno) => {
                self.spawn_failed(os, i, Script::Run, SpawnError::Fork(errno), now);
                return;
            }
        };
        let pipe = match readiness {
            Readiness::Pipe(fd) => match os.pipe() {
                Ok((read, write)) => Some((fd, read, write)),
                Err(errno) => {
                    if self.tell_failure(i, reason(Script::Run, Failure::Spawn, errno)) {
                        os.warn(format_args!(
                            "{}: cannot create readiness pipe: {}",
                            self.table[i].name,
                            super::Errno(errno)
                        ));
                    }
                    self.failed(os, i, Some(SPAWN_RETRY_MS), now);
                    return;
                }
            },
            Readiness::Timer | Readiness::Request => None,
        };
        let notify = pipe.map(|(fd, _, write)| (fd, write));
        let result = self.spawn(os, i, Script::Run, &[], notify);
        if let Some((_, read, write)) = pipe {
            os.close(write);
            if result.is_err() {
                os.close(read);
            }
        }
        match result {
            Ok(pid) => {
                self.table[i].reason = None;
                self.set_running(i, Some(Script::Run), pid);
                self.table[i].run_started = now;
                if let Some((_, read, _)) = pipe {
                    let token = self.new_ready_token(i);
                    self.table[i].ready = Some((read, token));
                    os.watch(read, token);
                }
                self.set_state(os, i, State::Starting, now);
                if readiness == Readiness::Timer {
                    self.table
                        .set_timer(i, Timer::Ready, now.saturating_add(READY_TIMEOUT_MS));
                }
            }
            Err(error) => self.spawn_failed(os, i, Script::Run, error, now),
        }
    }

    /// How `run` tells it is ready, from `notification-fd`: a file that is
    /// absent, empty or unreadable means the timer (as in the C nitro).
    /// One that cannot be read for now (no descriptor, no memory) is a
    /// failed start (errno): a service waiting for its newline must not
    /// be taken for up after 2 s.
    fn readiness(&self, os: &mut dyn Os, i: usize) -> Result<Readiness, i32> {
        let mut buf = [0u8; 32];
        let n = match os.read_file(self.table[i].name.dir(), b"notification-fd", &mut buf) {
            Ok(n) if n > 0 => n,
            Err(errno) if super::out_of_resources(errno) => return Err(errno),
            _ => return Ok(Readiness::Timer),
        };
        let Some(fd) = digits(&buf[..n]) else {
            os.warn(format_args!(
                "{}: no number in notification-fd, waiting for nitroctl ready",
                self.table[i].name
            ));
            return Ok(Readiness::Request);
        };
        if fd == 0 {
            return Ok(Readiness::Request);
        }
        if fd < 3 || fd >= os.fd_limit().max(0) as u64 {
            os.warn(format_args!(
                "{}: unusable notification-fd {}, waiting for nitroctl ready",
                self.table[i].name, fd
            ));
            return Ok(Readiness::Request);
        }
        Ok(Readiness::Pipe(fd as i32))
    }

    /// A script could not be started: DELAY for what may pass, FATAL (and
    /// `finish` with `111 0` for `run`) for what will not.
    fn spawn_failed(
        &mut self,
        os: &mut dyn Os,
        i: usize,
        script: Script,
        error: SpawnError,
        now: Millis,
    ) {
        let (failure, verb, errno) = match error {
            SpawnError::Fork(errno) => (Failure::Spawn, "start", errno),
            SpawnError::Exec(errno) => (Failure::Exec, "exec", errno),
        };
        // What cannot pass by itself (FATAL) is told at every try: only a
        // request tries it again.
        if self.tell_failure(i, reason(script, failure, errno)) || !temporary(error) {
            os.warn(format_args!(
                "{}: cannot {} {}: {}",
                self.table[i].name,
                verb,
                script.file(),
                super::Errno(errno)
            ));
        }
        if script == Script::Run {
            // WSTATUS -1: `run` could not be executed (as the C nitro).
            self.table[i].wstatus = -1;
        }
        if temporary(error) {
            self.failed(os, i, Some(SPAWN_RETRY_MS), now);
            return;
        }
        self.set_state(os, i, State::Fatal, now);
        if script == Script::Run {
            self.run_finish(os, i, 111, 0, now);
        }
        self.fatal(os, i, now);
    }

    /// Records why a start of service `i` failed (REASON, kept until
    /// `run` is launched): whether it is new, not what the try before
    /// failed of, so that a failure that lasts and is tried again every
    /// 2 s (no process, no descriptor left) is told once per service.
    fn tell_failure(&mut self, i: usize, why: Reason) -> bool {
        self.table[i].reason.replace(why) != Some(why)
    }

    /// A start failed (`setup` failed, or `run` could not be started):
    /// once what `setup` left in the cgroup is gone, DELAY and a new try
    /// after `retry`, or FATAL without one. A stop asked for while that
    /// goes ends instead.
    fn failed(&mut self, os: &mut dyn Os, i: usize, retry: Option<Millis>, now: Millis) {
        if self.stop_leftovers(os, i, Leftovers::Failed(retry), now) {
            return;
        }
        match (self.table[i].state, retry) {
            (State::Shutdown | State::Restart, _) => self.step(os, i, Event::Over, now),
            (_, Some(ms)) => self.delay(os, i, ms, now),
            (_, None) => self.fatal(os, i, now),
        }
    }

    /// DELAY: start again after `ms`.
    fn delay(&mut self, os: &mut dyn Os, i: usize, ms: Millis, now: Millis) {
        self.set_state(os, i, State::Delay, now);
        self.table
            .set_timer(i, Timer::Respawn, now.saturating_add(ms));
    }

    /// Spawns a script of service `i` with its arguments and fds.
    fn spawn(
        &mut self,
        os: &mut dyn Os,
        i: usize,
        script: Script,
        extra: &[&[u8]],
        notify: Option<(i32, super::Fd)>,
    ) -> Result<super::Pid, SpawnError> {
        let (stdin, stdout, stderr_to_stdout) = self.stdio(i, script);
        let service = &mut self.table[i];
        service.cgroup_empty = false;
        // `setup` and `run` begin a start: their cgroup is made anew (unless
        // something is left in it), so that its accounting covers this
        // start. `finish` joins what `run` used, unless the whole cgroup got
        // SIGKILL: Linux (6.18 at least) kills every child cloned into a
        // cgroup once emptied through `cgroup.kill`. What the old one
        // counted of OOM kills is kept.
        let fresh_cgroup = matches!(script, Script::Setup | Script::Run) || service.cgroup_killed;
        if fresh_cgroup {
            service.cgroup_killed = false;
            let seen = os.cgroup_oom_kills(service.name.as_bytes());
            service.oom_kills += seen.saturating_sub(service.oom_counted);
        }
        let service = &self.table[i];
        let mut args: [&[u8]; 3] = [&[]; 3];
        let mut argc = 0;
        for arg in extra.iter().copied().chain(service.name.param()) {
            args[argc] = arg;
            argc += 1;
        }
        let result = os.spawn(&Spawn {
            dir: service.name.dir(),
            script,
            args: &args[..argc],
            stdin,
            stdout,
            stderr_to_stdout,
            notify,
            controlling_tty: false,
            cgroup: Some(service.name.as_bytes()),
            fresh_cgroup,
        });
        if fresh_cgroup {
            let service = &mut self.table[i];
            service.oom_counted = os.cgroup_oom_kills(service.name.as_bytes());
        }
        result
    }

    /// `finish` with its two status arguments; without one (or when it
    /// cannot start), straight to the end of the stop.
    fn run_finish(&mut self, os: &mut dyn Os, i: usize, status: i64, signal: i64, now: Millis) {
        self.close_ready_fd(os, i);
        self.set_running(i, None, 0);
        if self.stop_leftovers(os, i, Leftovers::Finish { status, signal }, now) {
            return;
        }
        self.table.set_timer(i, Timer::None, 0);
        if !os.missing(self.table[i].name.dir(), b"finish") {
            let mut status_buf = [0u8; 12];
            let mut signal_buf = [0u8; 12];
            let args = [
                decimal(&mut status_buf, status),
                decimal(&mut signal_buf, signal),
            ];
            match self.spawn(os, i, Script::Finish, &args, None) {
                Ok(pid) => {
                    self.set_running(i, Some(Script::Finish), pid);
                    // Announced even when the state stays (STARTING,
                    // SHUTDOWN, RESTART), as the C nitro does.
                    let service = &self.table[i];
                    os.notify(service.name.as_bytes(), service.state);
                    let timeout = self.timeout(os, i, b"timeout-finish", FINISH_TIMEOUT_MS);
                    self.table
                        .set_timer(i, Timer::KillFinish, now.saturating_add(timeout));
                    return;
                }
                Err(error) => {
                    let name = self.table[i].name;
                    os.warn(format_args!("{}: finish: {}", name, error));
                }
            }
        }
        self.step(os, i, Event::Over, now);
    }

    /// FATAL; a main service takes the system down with status 111,
    /// once its `finish` (if running) is over.
    fn fatal(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        self.set_state(os, i, State::Fatal, now);
        if self.is_main(os, i) {
            // Its `finish` runs first, also when it waits for what
            // `setup` left in the cgroup.
            if self.table[i].running == Some(Script::Finish) || self.table[i].leftovers.is_some() {
                self.table[i].main_status = Some(111);
            } else {
                self.main_ended(os, 111, now);
            }
        }
    }

    /// Whether service `i` is a main service (a `main` file).
    fn is_main(&self, os: &mut dyn Os, i: usize) -> bool {
        os.exists(self.table[i].name.dir(), b"main")
    }

    pub(super) fn close_ready_fd(&mut self, os: &mut dyn Os, i: usize) {
        if let Some((fd, _)) = self.table[i].ready.take() {
            os.close(fd);
        }
    }
}
