//! The service directory and the life of table entries: scans, services
//! and instances coming and going, and the wiring of log pipes (SPEC
//! sections 1, 4 and 5).

use crate::proto::{self, State};

use super::machine::Event;
use super::{Errno, Fd, Millis, Os, Phase, Script, Service, Supervisor, service::Name};

/// The global logger.
pub(super) const GLOBAL_LOGGER: &[u8] = b"LOG";
/// The default template logger.
const DEFAULT_LOGGER: &[u8] = b"LOG@";

/// A directory with a `run` or a `setup` is a service.
pub(super) fn is_service_dir(os: &mut dyn Os, dir: &[u8]) -> bool {
    os.exists(dir, b"run") || os.exists(dir, b"setup")
}

/// `prefix` followed by `suffix` in `buf`, if it is a possible name.
fn concat<'b>(buf: &'b mut [u8; 128], prefix: &[u8], suffix: &[u8]) -> Option<&'b [u8]> {
    let len = prefix.len() + suffix.len();
    if len >= proto::NAME_MAX {
        return None;
    }
    buf[..prefix.len()].copy_from_slice(prefix);
    buf[prefix.len()..len].copy_from_slice(suffix);
    Some(&buf[..len])
}

impl Supervisor {
    /// Rescan: start services new on disk, stop and forget those gone,
    /// forget unused instances, re-read log links. Every entry is read and
    /// every link wired before anything starts: the directory lists a
    /// logger before its writer as often as after.
    pub fn rescan(&mut self, os: &mut dyn Os, now: Millis) {
        if self.phase != Phase::Running {
            return;
        }
        self.scan_gen = self.scan_gen.wrapping_add(1);
        let generation = self.scan_gen;
        let mut buf = [0u8; 256];
        os.scan_start();
        while let Some(n) = os.scan_next(&mut buf) {
            let name = &buf[..n];
            // Hidden entries, SYS and templates are not services, by design.
            if name.starts_with(b".") || name == b"SYS" || name.ends_with(b"@") {
                continue;
            }
            if !proto::valid_name(name) {
                let why = if name.len() >= proto::NAME_MAX {
                    "a name of 64 bytes or more"
                } else {
                    "a name with ',' or a newline"
                };
                os.warn(format_args!(
                    "{}: {}, not a service",
                    super::service::Bytes(name),
                    why
                ));
                continue;
            }
            let dir = match proto::split_instance(name) {
                Some((template, _)) => template,
                None => name,
            };
            if !is_service_dir(os, dir) {
                if os.unreadable_dir(dir) {
                    os.warn(format_args!(
                        "{}: cannot look into it, not a service",
                        super::service::Bytes(dir)
                    ));
                }
                continue;
            }
            if let Some(i) = self.table.find(name) {
                let service = &mut self.table[i];
                service.seen = generation;
                service.forget = false;
            } else if let Some(i) = self.add(os, name, now)
                && !os.exists(dir, b"down")
            {
                self.table[i].start_after_scan = true;
            }
        }
        // Gone from disk: a service whose entry is gone, an instance whose
        // template is gone (however the instance came to be). Marked first,
        // so that no log link is made to them below.
        for i in 0..self.table.capacity() {
            let Some(service) = self.table.get(i) else {
                continue;
            };
            let gone = match service.name.param() {
                Some(_) => !is_service_dir(os, service.name.dir()),
                None => service.seen != generation,
            };
            // Again for one that became FATAL since (a start asked for
            // while it stopped found its directory gone), as the C nitro
            // asks every service gone from disk to go down at each scan.
            if gone && (!service.forget || service.state == State::Fatal) {
                self.table[i].forget = true;
                self.step(os, i, Event::WantDown, now);
            }
        }
        for i in 0..self.table.capacity() {
            if self.table.get(i).is_none() {
                continue;
            }
            // A new link takes effect when the writer next starts, and
            // starts its logger then (as in the C nitro): a running
            // writer still writes where it did. Down the chain, so that
            // a logger instance made here is wired too.
            self.resolve_logger_chain(os, i, now);
        }
        for i in 0..self.table.capacity() {
            if self.table.get(i).is_some() && core::mem::take(&mut self.table[i].start_after_scan) {
                self.step(os, i, Event::WantUp, now);
            }
        }
        // An instance that is DOWN and neither listed nor used as a logger
        // (a FATAL one stays while its template does, as in the C nitro).
        // Again until none goes: forgetting a writer may leave its logger
        // instance unused, in whatever slot it is.
        let mut forgot = true;
        while forgot {
            forgot = false;
            for i in 0..self.table.capacity() {
                if self.table.get(i).is_some_and(|s| {
                    s.name.param().is_some()
                        && s.seen != generation
                        && s.state == proto::State::Down
                        && s.is_stopped()
                }) && !self.is_logger(i)
                {
                    self.forget(os, i);
                    forgot = true;
                }
            }
        }
    }

    fn set_logger_users(&mut self, l: usize, delta: i32) {
        self.tracking(l, |sup| {
            let service = &mut sup.table[l];
            service.log_users = service.log_users.saturating_add_signed(delta);
        });
    }

    /// Whether a service name refers to something startable on disk.
    /// A name ending in `@` is a template, never a service, also when
    /// its parameter would end in `@` (`t@x@`).
    fn startable(&self, os: &mut dyn Os, name: &[u8]) -> bool {
        if !proto::valid_name(name) || name.ends_with(b"@") {
            return false;
        }
        let dir = proto::split_instance(name).map_or(name, |(template, _)| template);
        is_service_dir(os, dir)
    }

    /// Looks a name up, adding it when it is startable on disk and
    /// `create` allows.
    pub(super) fn lookup(
        &mut self,
        os: &mut dyn Os,
        name: &[u8],
        create: bool,
        now: Millis,
    ) -> Option<usize> {
        if let Some(i) = self.table.find(name) {
            return Some(i);
        }
        if create && self.startable(os, name) {
            self.add(os, name, now)
        } else {
            None
        }
    }

    /// Adds a service in state DOWN; `None` (with a warning) when the table
    /// is full or the name cannot be a service.
    fn add(&mut self, os: &mut dyn Os, name: &[u8], now: Millis) -> Option<usize> {
        let name = Name::new(name)?;
        let mut service = Service::new(name, now);
        service.seen = self.scan_gen;
        let added = self.table.insert(service);
        if added.is_none() {
            os.warn(format_args!(
                "too many services, not adding {} (limit {})",
                name,
                self.table.capacity()
            ));
        }
        added
    }

    /// Drops a service that is DOWN, releasing its descriptors and every
    /// logger link to it. A logger gone from disk waited only for its
    /// last writer: it goes too, and so on down a chain (walked, not
    /// recursed).
    pub(super) fn forget(&mut self, os: &mut dyn Os, i: usize) {
        let mut next = Some(i);
        while let Some(i) = next {
            next = self.forget_one(os, i);
        }
    }

    /// Forgets service `i`; returns its logger if that can go now.
    fn forget_one(&mut self, os: &mut dyn Os, i: usize) -> Option<usize> {
        let mut service = self.tracking(i, |sup| sup.table.remove(i))?;
        os.cgroup_remove(service.name.as_bytes());
        if service.name.as_bytes() == GLOBAL_LOGGER
            && let Some(pipe) = service.log_pipe.take()
        {
            self.global_pipe = Some(pipe);
        }
        for fd in [
            service.ready.map(|(fd, _)| fd),
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
            for l in 0..self.table.capacity() {
                if self.table.get(l).is_some_and(|s| s.logger == Some(i)) {
                    self.table[l].logger = None;
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
        self.forget_if_gone(os, l);
    }

    /// Gone from disk, DOWN, and nothing logs into it.
    fn forgettable(&self, i: usize) -> bool {
        self.table
            .get(i)
            .is_some_and(|s| s.forget && s.is_stopped())
            && !self.is_logger(i)
    }

    /// A service gone from disk is forgotten once it is DOWN.
    pub(super) fn forget_if_gone(&mut self, os: &mut dyn Os, i: usize) {
        if self.forgettable(i) {
            self.forget(os, i);
        }
    }

    /// Whether some other service logs into slot `i`: it is kept while
    /// they may write, even once gone from disk or unused as an instance.
    pub(super) fn is_logger(&self, i: usize) -> bool {
        let service = &self.table[i];
        let own_link = u32::from(service.logger == Some(i));
        service.log_users > own_link
    }

    /// Whether slot `i` is a logger to the shutdown, which stops it with
    /// the loggers, last: it has a pipe (made once, kept), so some service
    /// may still write into it, also one whose `log` link changed since it
    /// started (as the C nitro holds back every service with a pipe).
    pub(super) fn reads_log(&self, i: usize) -> bool {
        let service = &self.table[i];
        service.log_pipe.is_some() || service.name.as_bytes() == GLOBAL_LOGGER
    }

    /// Reads the `log` link of service `i` (or the `LOG@` default) and
    /// links the service to its logger, creating the logger's pipe and, for
    /// a template, the instance.
    pub(super) fn resolve_logger(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        let mut name_buf = [0u8; 128];
        // Gone from disk, on its way out: no new logger (its missing `log`
        // would make a `LOG@` instance for it), and one that goes too is
        // let go.
        let logger = if self.table[i].forget {
            self.table[i].logger.filter(|&l| !self.table[l].forget)
        } else if let Some(name) = self.logger_name(os, i, &mut name_buf) {
            let found = self
                .lookup(os, name, true, now)
                .filter(|&l| !self.table[l].forget);
            if found.is_none() {
                let service = self.table[i].name;
                self.warn_log(
                    os,
                    i,
                    format_args!(
                        "{}: log target {} is not a service, ignored",
                        service,
                        super::service::Bytes(name)
                    ),
                );
            }
            found
        } else {
            None
        };
        // Linked even when its pipe cannot be made now (no descriptor
        // left): the writer's next start makes it, or waits for it.
        if let Some(l) = logger {
            let _ = self.ensure_log_pipe(os, l);
        }
        let old = self.table[i].logger;
        if old == logger {
            return;
        }
        if let Some(l) = logger {
            self.set_logger_users(l, 1);
        }
        self.table[i].logger = logger;
        if let Some(l) = old {
            self.unlink_logger(os, l);
        }
    }

    /// Reads the `log` links of service `i` and of its loggers down the
    /// chain again, as the C nitro does at a rescan and for a request that
    /// may create a service (the only times links are read: a service
    /// that restarts on its own keeps its logger): a new logger appears
    /// DOWN, and starts with its writer's next start.
    pub(super) fn resolve_logger_chain(&mut self, os: &mut dyn Os, i: usize, now: Millis) {
        let walk = self.new_walk();
        let mut next = Some(i);
        // Each service once: a loop ends where it closes, wherever that is.
        while let Some(writer) = next.filter(|&w| self.table[w].walked != walk) {
            self.table[writer].walked = walk;
            self.resolve_logger(os, writer, now);
            next = self.table[writer].logger;
        }
    }

    /// A new walk down a chain of loggers (`Service::walked`).
    pub(super) fn new_walk(&mut self) -> u32 {
        self.walk_gen = self.walk_gen.wrapping_add(1).max(1);
        self.walk_gen
    }

    /// A warning about the `log` of service `i`, once per scan: the link
    /// is read again by requests in between, and down every chain.
    fn warn_log(&mut self, os: &mut dyn Os, i: usize, message: core::fmt::Arguments) {
        if self.table[i].log_warned != Some(self.scan_gen) {
            self.table[i].log_warned = Some(self.scan_gen);
            os.warn(message);
        }
    }

    /// The name of the logger service `i` should write into, if any.
    fn logger_name<'b>(
        &mut self,
        os: &mut dyn Os,
        i: usize,
        buf: &'b mut [u8; 128],
    ) -> Option<&'b [u8]> {
        let name = self.table[i].name;
        let completion = name.param().unwrap_or(name.as_bytes());
        let mut link = [0u8; 256];
        match os.read_link(name.dir(), b"log", &mut link) {
            Some(n) => {
                let target = link[..n].trim_ascii_end();
                let target = {
                    let mut t = target;
                    while let [rest @ .., b'/'] = t {
                        t = rest;
                    }
                    t
                };
                let last = target.rsplit(|&b| b == b'/').next().unwrap_or(target);
                let logger = if last.ends_with(b"@") {
                    concat(buf, last, completion)
                } else {
                    concat(buf, last, b"")
                };
                // The name may be the service's own: it is then its own
                // logger, reading back what it writes. A link to LOG is
                // the global log, as no link is (as in the C nitro): its
                // writers do not start LOG.
                match logger {
                    Some(GLOBAL_LOGGER) => None,
                    Some(l) if proto::valid_name(l) => Some(l),
                    _ => {
                        self.warn_log(os, i, format_args!("{}: bad log target, ignored", name));
                        None
                    }
                }
            }
            None => {
                if os.exists(name.dir(), b"log") {
                    self.warn_log(
                        os,
                        i,
                        format_args!("{}: log is not a symlink, ignored", name),
                    );
                }
                let exempt =
                    name.as_bytes() == GLOBAL_LOGGER || name.as_bytes().starts_with(DEFAULT_LOGGER);
                if !exempt && is_service_dir(os, DEFAULT_LOGGER) {
                    concat(buf, DEFAULT_LOGGER, completion)
                } else {
                    None
                }
            }
        }
    }

    /// The log pipe of service `l`, created on first use and kept.
    pub(super) fn ensure_log_pipe(&mut self, os: &mut dyn Os, l: usize) -> Result<(Fd, Fd), i32> {
        if let Some(pipe) = self.table[l].log_pipe {
            return Ok(pipe);
        }
        // `LOG` takes the global pipe kept since an earlier `LOG` went.
        let kept = (self.table[l].name.as_bytes() == GLOBAL_LOGGER)
            .then(|| self.global_pipe.take())
            .flatten();
        match kept.map_or_else(|| os.pipe(), Ok) {
            Ok(pipe) => {
                self.tracking(l, |sup| sup.table[l].log_pipe = Some(pipe));
                Ok(pipe)
            }
            Err(errno) => {
                os.warn(format_args!(
                    "{}: cannot create log pipe: {}",
                    self.table[l].name,
                    Errno(errno)
                ));
                Err(errno)
            }
        }
    }

    /// stdin, stdout and whether stderr follows stdout, for program `prog`
    /// of service `i`.
    pub(super) fn stdio(&self, i: usize, script: Script) -> (Option<Fd>, Option<Fd>, bool) {
        let service = &self.table[i];
        // Only a logger's `run` reads its pipe: a `setup` or `finish`
        // reading it would take lines meant for `run`.
        let stdin = match script {
            Script::Run => service.log_pipe.map(|(read, _)| read),
            Script::Setup | Script::Finish | Script::Final => None,
        };
        let is_global = service.name.as_bytes() == GLOBAL_LOGGER;
        let stdout = match service.logger {
            Some(l) => self.table[l].log_pipe.map(|(_, write)| write),
            None if !is_global => self.global_log(),
            None => None,
        };
        (stdin, stdout, is_global)
    }

    /// The global log pipe's write end while `LOG` runs (else a program
    /// without a logger writes to nitro's own stdout).
    pub(super) fn global_log(&self) -> Option<Fd> {
        self.find(GLOBAL_LOGGER)
            .map(|g| &self.table[g])
            .filter(|g| matches!(g.state, State::Starting | State::Up))
            .and_then(|g| g.log_pipe.map(|(_, write)| write))
    }
}
