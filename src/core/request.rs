//! Control requests (SPEC section 7): each datagram is answered at once;
//! rescans and the end of the system wait until the reply went out.

use crate::proto::{self, Request, State};
use crate::spat::{Full, Writer};

use super::machine::Event;
use super::service::Name;
use super::{CgroupStats, End, Millis, Os, Pending, Phase, SYS, Script, Service, Supervisor};

impl Supervisor {
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
            Request::Up(name)
            | Request::Down(name)
            | Request::Restart(name)
            | Request::Ready(name) => {
                // DOWN creates services only while SYS/setup or SYS/finish
                // runs (SYS is in the C nitro's table then): "created
                // down", and a `stop` in SYS/finish of an instance never
                // started succeeds; READY never does.
                let create = match request {
                    Request::Up(_) | Request::Restart(_) => true,
                    Request::Down(_) => self.sys.is_some(),
                    _ => false,
                };
                let Some(i) = self.lookup(os, name, create, now) else {
                    return w.packet(proto::TAG_ESRCH, &[]);
                };
                // Asked for, it is kept once down, even if a scan found
                // it gone from disk (until the next scan), as in the C
                // nitro.
                self.table[i].forget = false;
                // Links are read again only while the service's directory
                // (its template's) is there, as in the C nitro: a writer
                // that cannot start gets no new logger.
                if create && os.exists(self.table[i].name.dir(), b"") {
                    self.resolve_logger_chain(os, i, now);
                }
                let event = match request {
                    Request::Up(_) => Event::WantUp,
                    Request::Down(_) => Event::WantDown,
                    Request::Restart(_) => Event::WantRestart,
                    _ => Event::Ready,
                };
                self.step(os, i, event, now);
                // Every request is echoed with the service's state, even
                // unchanged, as the C nitro does. The service may have been
                // forgotten on the way down.
                if let Some(service) = self.table.get(i) {
                    os.notify(service.name.as_bytes(), service.state);
                }
                w.packet(proto::TAG_OK, &[])
            }
            Request::Signal { signal, name } => match self.table.find(name) {
                Some(i) if self.table[i].run_pid() > 0 => {
                    os.kill(self.table[i].pid, signal as i32);
                    w.packet(proto::TAG_OK, &[])
                }
                _ => w.packet(proto::TAG_ESRCH, &[]),
            },
            Request::Query(name) => match self.table.find(name) {
                Some(i) => {
                    let stats = os.cgroup_stats(self.table[i].name.as_bytes());
                    let service = &self.table[i];
                    write_status(w, service, now)?;
                    write_extensions(w, service, stats)
                }
                None => match self.sys_service().filter(|_| name == SYS) {
                    Some(sys) => write_status(w, &sys, now),
                    None => w.packet(proto::TAG_ESRCH, &[]),
                },
            },
            Request::List { start } => self.list(os, w, start as usize, now),
            Request::Info => {
                let pid = self.config.nitro_pid as u32;
                w.u32(proto::TAG_NITRO_PID, pid)?;
                w.u32(proto::TAG_PID, pid)?;
                let sys = u32::from(self.sys.is_some());
                w.u32(proto::TAG_MAX_SERVICE, self.table.len() as u32 + sys)?;
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
                self.pending.end = Some(match request {
                    Request::Reboot => End::Reboot,
                    _ => End::Shutdown,
                });
                w.packet(proto::TAG_OK, &[])
            }
            Request::Unknown => w.packet(proto::TAG_ENOSYS, &[]),
        }
    }

    /// One LIST page: whole SERVICE frames from slot `start` on, then
    /// LIST_NEXT if some did not fit.
    fn list(&self, os: &mut dyn Os, w: &mut Writer, start: usize, now: Millis) -> Result<(), Full> {
        const LIST_NEXT_LEN: usize = crate::spat::HEADER_LEN + 4;
        // SYS comes first in the first page (a page holds far more).
        if let Some(sys) = self.sys_service().filter(|_| start == 0) {
            write_frame(w, &sys, now, None)?;
        }
        for (i, service) in self.table.iter_from(start) {
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

    /// SYS while `SYS/setup` or `SYS/finish` runs, as LIST, QUERY and
    /// INFO show it (the C nitro has it in its table then): SETUP or
    /// SHUTDOWN, as its events say, no pid of a `run`.
    fn sys_service(&self) -> Option<Service> {
        let sys = self.sys?;
        let mut service = Service::new(Name::new(SYS)?, sys.started);
        // A shutdown cuts SYS/setup short: SHUTDOWN from then on.
        service.state = match (sys.script, self.phase) {
            (Script::Setup, Phase::Boot) if sys.pid == 0 => State::Delay,
            (Script::Setup, Phase::Boot) => State::Setup,
            _ => State::Shutdown,
        };
        Some(service)
    }

    /// Control commands that act after their reply went out.
    pub fn take_pending(&mut self) -> Pending {
        core::mem::take(&mut self.pending)
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
    let mut stats = stats.unwrap_or_default();
    // Over the life of the service, not only its current cgroup.
    if stats.oom_kills.is_some() || service.oom_kills > 0 {
        let current = stats
            .oom_kills
            .unwrap_or(0)
            .saturating_sub(service.oom_counted);
        stats.oom_kills = Some(service.oom_kills + current);
    }
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
