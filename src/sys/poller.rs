//! The descriptors the loop waits on, in one epoll set: registered once
//! when they are made (a readiness pipe when its `run` starts), dropped
//! by the kernel when they are closed. Waiting costs the same with five
//! or five thousand pipes open.

use crate::core::Fd;

pub struct Poller {
    fd: Fd,
}

impl Poller {
    pub fn new() -> std::io::Result<Poller> {
        // SAFETY: epoll_create1 takes only flags.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Poller { fd })
    }

    /// Watches `fd` for input; `key` comes back with its events. Errno on
    /// failure.
    pub fn add(&self, fd: Fd, key: u64) -> Result<(), i32> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: key,
        };
        // SAFETY: event is a valid epoll_event.
        if unsafe { libc::epoll_ctl(self.fd, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            return Err(super::errno());
        }
        Ok(())
    }

    /// Waits up to `timeout_ms` (-1: no limit) and returns the keys of the
    /// descriptors that have input, in `keys`.
    pub fn wait<'k>(
        &self,
        events: &mut [libc::epoll_event],
        keys: &'k mut [u64],
        timeout_ms: i32,
    ) -> &'k [u64] {
        let room = events.len().min(keys.len());
        // SAFETY: events is valid for `room` entries.
        let n = unsafe { libc::epoll_wait(self.fd, events.as_mut_ptr(), room as i32, timeout_ms) };
        let n = n.max(0) as usize;
        for (key, event) in keys.iter_mut().zip(&events[..n]) {
            *key = event.u64;
        }
        &keys[..n]
    }
}
