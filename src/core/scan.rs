//! The service directory: scans, instances and the wiring of log pipes
//! (SPEC sections 1, 4 and 5).

use crate::proto::{self, State};

use super::{Fd, Millis, Os, Phase, Prog, Supervisor};

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
            if !proto::valid_name(name) || name.ends_with(b"@") {
                continue;
            }
            let dir = match proto::split_instance(name) {
                Some((template, _)) => template,
                None => name,
            };
            if !is_service_dir(os, dir) {
                continue;
            }
            if let Some(i) = self.find(name) {
                let service = self.sv_mut(i);
                service.seen = generation;
                service.forget = false;
            } else if let Some(i) = self.add(os, name, now)
                && !os.exists(dir, b"down")
            {
                self.sv_mut(i).start_after_scan = true;
            }
        }
        // Gone from disk: a service whose entry is gone, an instance whose
        // template is gone (however the instance came to be). Marked first,
        // so that no log link is made to them below.
        for i in 0..self.slots.len() {
            let Some(service) = &self.slots[i] else {
                continue;
            };
            let gone = match service.name.param() {
                Some(_) => !is_service_dir(os, service.name.dir()),
                None => service.seen != generation,
            };
            if gone && !service.forget {
                self.sv_mut(i).forget = true;
                self.want_down(os, i, now);
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i].is_none() {
                continue;
            }
            let relinked = self.resolve_logger(os, i, now);
            if relinked
                && !self.sv(i).is_stopped()
                && let Some(l) = self.sv(i).logger.filter(|&l| l != i)
            {
                self.want_up(os, l, now);
            }
        }
        for i in 0..self.slots.len() {
            if let Some(service) = &mut self.slots[i]
                && core::mem::take(&mut service.start_after_scan)
            {
                self.want_up(os, i, now);
            }
        }
        // An instance that is DOWN and neither listed nor used as a logger.
        for i in 0..self.slots.len() {
            if self.slots[i]
                .as_ref()
                .is_some_and(|s| s.is_instance() && s.seen != generation && s.is_stopped())
                && !self.is_logger(i)
            {
                self.forget(os, i);
            }
        }
    }

    pub(super) fn set_logger_users(&mut self, l: usize, delta: i32) {
        self.tracking(l, |sup| {
            let service = sup.sv_mut(l);
            service.log_users = service.log_users.saturating_add_signed(delta);
        });
    }

    /// Reads the `log` link of service `i` (or the `LOG@` default) and
    /// links the service to its logger, creating the logger's pipe and, for
    /// a template, the instance. Returns whether the logger changed.
    pub(super) fn resolve_logger(&mut self, os: &mut dyn Os, i: usize, now: Millis) -> bool {
        let mut name_buf = [0u8; 128];
        let wanted = self.logger_name(os, i, &mut name_buf);
        let logger = wanted.and_then(|name| {
            let found = self
                .lookup(os, name, true, now)
                .filter(|&l| !self.sv(l).forget);
            if found.is_none() {
                os.warn(format_args!(
                    "{}: log target {} is not a service, ignored",
                    self.sv(i).name,
                    super::service::Bytes(name)
                ));
            }
            found
        });
        let logger = logger.filter(|&l| self.ensure_log_pipe(os, l).is_some());
        let old = self.sv(i).logger;
        if old == logger {
            return false;
        }
        if let Some(l) = logger {
            self.set_logger_users(l, 1);
        }
        self.sv_mut(i).logger = logger;
        if let Some(l) = old {
            self.unlink_logger(os, l);
        }
        true
    }

    /// The name of the logger service `i` should write into, if any.
    fn logger_name<'b>(
        &self,
        os: &mut dyn Os,
        i: usize,
        buf: &'b mut [u8; 128],
    ) -> Option<&'b [u8]> {
        let name = self.sv(i).name;
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
                // logger, reading back what it writes.
                match logger {
                    Some(l) if proto::valid_name(l) => Some(l),
                    _ => {
                        os.warn(format_args!("{}: bad log target, ignored", name));
                        None
                    }
                }
            }
            None => {
                if os.exists(name.dir(), b"log") {
                    os.warn(format_args!("{}: log is not a symlink, ignored", name));
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
    pub(super) fn ensure_log_pipe(&mut self, os: &mut dyn Os, l: usize) -> Option<(Fd, Fd)> {
        if let Some(pipe) = self.sv(l).log_pipe {
            return Some(pipe);
        }
        match os.pipe() {
            Ok(pipe) => {
                self.sv_mut(l).log_pipe = Some(pipe);
                Some(pipe)
            }
            Err(errno) => {
                os.warn(format_args!(
                    "{}: cannot create log pipe: {}",
                    self.sv(l).name,
                    crate::sys::Errno(errno)
                ));
                None
            }
        }
    }

    /// stdin, stdout and whether stderr follows stdout, for program `prog`
    /// of service `i`.
    pub(super) fn stdio(&self, i: usize, prog: Prog) -> (Option<Fd>, Option<Fd>, bool) {
        let service = self.sv(i);
        // Only a logger's `run` reads its pipe: a `setup` or `finish`
        // reading it would take lines meant for `run`.
        let stdin = match prog {
            Prog::Run => service.log_pipe.map(|(read, _)| read),
            Prog::Setup | Prog::Finish | Prog::Final => None,
        };
        let is_global = service.name.as_bytes() == GLOBAL_LOGGER;
        let stdout = match service.logger {
            Some(l) => self.sv(l).log_pipe.map(|(_, write)| write),
            None if !is_global => self
                .find(GLOBAL_LOGGER)
                .map(|g| self.sv(g))
                .filter(|g| matches!(g.state, State::Starting | State::Up))
                .and_then(|g| g.log_pipe.map(|(_, write)| write)),
            None => None,
        };
        (stdin, stdout, is_global)
    }
}
